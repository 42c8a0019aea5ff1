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
    json_t *m = json_object_get(h, "migration");
    printf("migration:   incoming %s, outgoing %s, networks %s\n",
           json_is_true(json_object_get(m, "incoming")) ? "on" : "off",
           json_is_true(json_object_get(m, "outgoing")) ? "on" : "off",
           json_string_value(json_object_get(m, "networks_text")));
    if (json_object_get(m, "warning"))
        printf("             %s\n", json_string_value(json_object_get(m, "warning")));
    printf("encryption:  %s\n", json_is_true(json_object_get(m, "allow_insecure"))
                                     ? json_string_value(json_object_get(m, "insecure_warning"))
                                     : "migration and NBD streams use TLS (host certificates, peer verified)");
    json_t *live = json_object_get(m, "live"), *stor = json_object_get(m, "storage");
    printf("limits:      live migrations %lld/%lld, storage migrations %lld/%lld (in use/max)\n",
           (long long)json_integer_value(json_object_get(live, "in_use")),
           (long long)json_integer_value(json_object_get(live, "max")),
           (long long)json_integer_value(json_object_get(stor, "in_use")),
           (long long)json_integer_value(json_object_get(stor, "max")));
    json_t *dl = json_object_get(m, "allow_delegation_from");
    if (json_array_size(dl)) {
        printf("delegation:  hosts that may act for users here:");
        size_t k;
        json_t *x;
        json_array_foreach(dl, k, x) printf(" %s", json_string_value(x));
        printf("\n");
    }
    if (json_is_true(json_object_get(m, "drained")))
        printf("maintenance: DRAINED: nothing new is placed here (vmove host resume ends it)\n");
    const char *name;
    json_t *addr;
    json_object_foreach(json_object_get(h, "peers"), name, addr)
        printf("peer:        %s at %s\n", name, json_string_value(addr));
}

static int on_off(struct cli *c, const char *flag, const char *v, json_t *p, const char *key)
{
    if (!v)
        return 0;
    if (strcmp(v, "on") && strcmp(v, "off")) {
        cli_error(c, "--%s: expected on or off, got \"%s\"", flag, v);
        return -1;
    }
    json_object_set_new(p, key, json_boolean(!strcmp(v, "on")));
    return 0;
}

static json_t *set_params(struct cli *c, const struct cli_args *a)
{
    json_t *p = json_object();
    if (cli_opt(a, "accel"))
        json_object_set_new(p, "accel", json_string(cli_opt(a, "accel")));
    if (on_off(c, "migration-incoming", cli_opt(a, "migration-incoming"), p, "migration_incoming") < 0 ||
        on_off(c, "migration-outgoing", cli_opt(a, "migration-outgoing"), p, "migration_outgoing") < 0 ||
        on_off(c, "allow-insecure-migration", cli_opt(a, "allow-insecure-migration"), p, "allow_insecure_migration") < 0) {
        json_decref(p);
        return NULL;
    }
    json_t *nets = json_object_get(a->opts, "migration-network");
    if (nets)
        json_object_set(p, "migration_networks", nets);
    json_t *deleg = json_object_get(a->opts, "allow-delegation-from");
    if (deleg)
        json_object_set(p, "allow_delegation_from", deleg);
    const char *lim[][2] = {{"max-live-migrations", "max_live_migrations"},
                            {"max-storage-migrations", "max_storage_migrations"}};
    for (size_t i = 0; i < 2; i++) {
        const char *v = cli_opt(a, lim[i][0]);
        char *end;
        if (!v)
            continue;
        long n = strtol(v, &end, 10);
        if (*end || end == v) {
            cli_error(c, "--%s \"%s\": expected a whole number", lim[i][0], v);
            json_decref(p);
            return NULL;
        }
        json_object_set_new(p, lim[i][1], json_integer(n));
    }
    return p;
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

static void print_drain(json_t *res)
{
    char t[32];
    printf("drained %s: %lld moved, %lld failed, total time %s\n", json_string_value(json_object_get(res, "host")),
           (long long)json_integer_value(json_object_get(res, "moved")),
           (long long)json_integer_value(json_object_get(res, "failed")),
           fmt_duration_ms((double)json_integer_value(json_object_get(res, "total_ms")), t, sizeof t));
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(res, "vms"), i, v) {
        json_t *err = json_object_get(v, "error");
        printf("  %-20s -> %-10s %s%s%s\n", json_string_value(json_object_get(v, "vm")),
               json_string_value(json_object_get(v, "to")), json_string_value(json_object_get(v, "state")),
               err ? ": " : "", err ? json_string_value(json_object_get(err, "message")) : "");
    }
}

/* vmove host drain HOST [--to HOST]... [--no-wait] | vmove host resume HOST */
static int host_drain_cmd(struct cli *c, const char *verb, int argc, char **argv)
{
    static const struct cli_flag flags[] = {{"to", 0, true, true}, {"no-wait", 0, false, false},
                                            {NULL, 0, false, false}};
    struct cli_args a;
    if (cli_parse(argc, argv, flags, &a) < 0 || a.argc > 1) {
        cli_args_free(&a);
        cli_error(c, "usage: vmove host drain [HOST] [--to HOST]... [--no-wait] | vmove host resume [HOST]");
        return EXIT_USAGE;
    }
    json_t *p = json_object();
    if (a.argc)
        json_object_set_new(p, "host", json_string(a.argv[0]));
    int code, rc;
    if (!strcmp(verb, "resume")) {
        json_t *r = cli_call(c, "host.resume", p, NULL, NULL, &code);
        if (r && c->json)
            cli_print_json(r);
        else if (r)
            printf("host %s resumed: it takes new work again\n", json_string_value(json_object_get(r, "host")));
        rc = r ? 0 : code;
        json_decref(r);
        cli_args_free(&a);
        return rc;
    }
    if (json_object_get(a.opts, "to"))
        json_object_set(p, "to", json_object_get(a.opts, "to"));
    json_object_set_new(p, "wait", json_false());
    json_t *r = cli_call(c, "host.drain", p, NULL, NULL, &code);
    if (!r) {
        cli_args_free(&a);
        return code;
    }
    json_int_t id = json_integer_value(json_object_get(r, "job"));
    if (cli_flag_set(&a, "no-wait")) {
        cli_print_accepted(c, r);   /* with --json too, as every command */
        json_decref(r);
        cli_args_free(&a);
        return 0;
    }
    json_decref(r);
    json_t *final = NULL;
    rc = cli_follow_job_result(c, json_pack("{s:I}", "id", id), &final);
    json_t *res = json_object_get(final, "result");
    if (!res)
        res = json_object_get(json_object_get(final, "error"), "result");
    if (c->json && final)
        cli_print_json(final);
    else if (res)
        print_drain(res);
    json_decref(final);
    cli_args_free(&a);
    return rc;
}

int cmd_host(struct cli *c, int argc, char **argv)
{
    static const struct cli_flag set_flags[] = {
        {"accel", 0, true, false}, {"migration-incoming", 0, true, false}, {"migration-outgoing", 0, true, false},
        {"migration-network", 0, true, true}, {"max-live-migrations", 0, true, false},
        {"max-storage-migrations", 0, true, false}, {"allow-insecure-migration", 0, true, false},
        {"allow-delegation-from", 0, true, true},
        {NULL, 0, false, false}};
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
        json_t *p;
        if (cli_parse(argc - 1, argv + 1, set_flags, &a) == 0 && a.argc == 0 && json_object_size(a.opts)) {
            if ((p = set_params(c, &a)))
                rc = host_call(c, "host.set", p, true);
        } else
            fprintf(stderr, "vmove: usage: vmove host set [--accel auto|kvm|tcg] [--migration-incoming on|off]\n"
                            "       [--migration-outgoing on|off] [--migration-network CIDR|any]...\n"
                            "       [--max-live-migrations N] [--max-storage-migrations N] [--allow-insecure-migration on|off]\n"
                            "       [--allow-delegation-from host:NAME|group:NAME|none]...\n");
    } else if (!strcmp(verb, "events")) {
        if (cli_parse(argc - 1, argv + 1, ev_flags, &a) == 0 && a.argc == 0) {
            json_t *p = json_object();
            if (cli_opt(&a, "vm"))
                json_object_set_new(p, "vm", json_string(cli_opt(&a, "vm")));
            if (cli_opt(&a, "limit"))
                json_object_set_new(p, "limit", json_integer(atoll(cli_opt(&a, "limit"))));
            rc = host_call(c, "host.events", p, false);
        }
    } else if (!strcmp(verb, "drain") || !strcmp(verb, "resume")) {
        return host_drain_cmd(c, verb, argc - 1, argv + 1);
    } else {
        cli_error(c, "unknown host command \"%s\" (show, set, events, drain, resume)", verb);
        return EXIT_USAGE;
    }
    cli_args_free(&a);
    return rc;
}

/* vmove peer add HOST ADDR:PORT | remove HOST | list */
int cmd_peer(struct cli *c, int argc, char **argv)
{
    const char *verb = argc ? argv[0] : "list";
    json_t *p = NULL;
    const char *method = NULL;
    if (!strcmp(verb, "add") && argc == 3) {
        method = "peer.add";
        p = json_pack("{s:s, s:s}", "name", argv[1], "addr", argv[2]);
    } else if (!strcmp(verb, "remove") && argc == 2) {
        method = "peer.remove";
        p = json_pack("{s:s}", "name", argv[1]);
    } else if (!strcmp(verb, "list") && argc <= 1)
        method = "peer.list";
    else {
        cli_error(c, "usage: vmove peer add HOST ADDR:PORT | peer remove HOST | peer list");
        return EXIT_USAGE;
    }
    int code;
    json_t *r = cli_call(c, method, p, NULL, NULL, &code);
    if (!r)
        return code;
    if (c->json)
        cli_print_json(r);
    else {
        const char *name;
        json_t *addr;
        json_object_foreach(json_object_get(r, "peers"), name, addr) printf("%-20s %s\n", name, json_string_value(addr));
    }
    json_decref(r);
    return 0;
}
