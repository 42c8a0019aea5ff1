/* vmove host show | set | events */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static void print_host(json_t *h)
{
    json_t *accel = json_object_get(h, "accel"), *qemu = json_object_get(h, "qemu"),
           *mem = json_object_get(h, "memory");
    printf("host:        %s\n", json_string_value(json_object_get(h, "name")));
    printf("state dir:   %s\n", json_string_value(json_object_get(h, "state_dir")));
    printf("listen:      %s\n", json_string_value(json_object_get(h, "listen")) ?
                                    json_string_value(json_object_get(h, "listen")) : "(local socket only)");
    printf("accel:       %s (setting %s)\n", json_string_value(json_object_get(accel, "effective")),
           json_string_value(json_object_get(accel, "setting")));
    printf("             %s\n", json_string_value(json_object_get(accel, "reason")));
    printf("qemu:        %s %s, default machine %s\n", json_string_value(json_object_get(qemu, "binary")),
           json_string_value(json_object_get(qemu, "version")),
           json_string_value(json_object_get(qemu, "default_machine")));
    printf("memory:      %lld MiB free of %lld MiB\n", (long long)json_integer_value(json_object_get(mem, "free_mib")),
           (long long)json_integer_value(json_object_get(mem, "total_mib")));
    printf("vms:         %lld (%lld running)\n", (long long)json_integer_value(json_object_get(h, "vms")),
           (long long)json_integer_value(json_object_get(h, "vms_running")));
}

static int host_call(struct cli *c, const char *method, json_t *params, bool print_as_host)
{
    int code;
    json_t *r = cli_call(c, method, params, NULL, NULL, &code);
    if (!r)
        return code;
    if (c->json)
        cli_print_json(r);
    else if (print_as_host)
        print_host(r);
    else {
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(r, "events"), i, e) {
            char *d = json_dumps(json_object_get(e, "detail"), JSON_COMPACT | JSON_ENCODE_ANY);
            printf("%lld  %-10s %-12s %s\n", (long long)json_integer_value(json_object_get(e, "ts_ms")),
                   json_string_value(json_object_get(e, "vm")) ? json_string_value(json_object_get(e, "vm")) : "-",
                   json_string_value(json_object_get(e, "kind")), d);
            free(d);
        }
    }
    json_decref(r);
    return 0;
}

int cmd_host(struct cli *c, int argc, char **argv)
{
    static const struct cli_flag set_flags[] = {{"accel", 0, true, false}, {NULL, 0, false, false}};
    static const struct cli_flag ev_flags[] = {{"vm", 0, true, false}, {"limit", 0, true, false},
                                               {NULL, 0, false, false}};
    const char *verb = argc ? argv[0] : "show";
    struct cli_args a;
    int rc = EXIT_USAGE;
    if (!strcmp(verb, "show")) {
        if (cli_parse(argc ? argc - 1 : 0, argv + 1, NULL, &a) == 0 && a.argc == 0)
            rc = host_call(c, "host.show", NULL, true);
        else
            fprintf(stderr, "vmove: usage: vmove host show\n");
    } else if (!strcmp(verb, "set")) {
        if (cli_parse(argc - 1, argv + 1, set_flags, &a) == 0 && a.argc == 0 && json_object_size(a.opts))
            rc = host_call(c, "host.set", json_deep_copy(a.opts), true);
        else
            fprintf(stderr, "vmove: usage: vmove host set --accel auto|kvm|tcg\n");
    } else if (!strcmp(verb, "events")) {
        if (cli_parse(argc - 1, argv + 1, ev_flags, &a) == 0 && a.argc == 0) {
            json_t *p = json_object();
            if (cli_opt(&a, "vm"))
                json_object_set_new(p, "vm", json_string(cli_opt(&a, "vm")));
            if (cli_opt(&a, "limit"))
                json_object_set_new(p, "limit", json_integer(atoll(cli_opt(&a, "limit"))));
            rc = host_call(c, "host.events", p, false);
        }
    } else {
        cli_error(c, "unknown host command \"%s\" (show, set, events)", verb);
        return EXIT_USAGE;
    }
    cli_args_free(&a);
    return rc;
}
