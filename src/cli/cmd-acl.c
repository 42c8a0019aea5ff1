/* vmove acl grant|revoke PRINCIPAL RIGHT... | acl list | acl group add|remove GROUP MEMBER
 * vmove audit [--limit N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"

static void print_acl(json_t *r)
{
    const char *p;
    json_t *v;
    printf("ACL of host %s\n", json_string_value(json_object_get(r, "host")) ? json_string_value(json_object_get(r, "host")) : "");
    json_object_foreach(json_object_get(r, "grants"), p, v) {
        printf("  %-24s", p);
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) printf(" %s", json_string_value(x));
        printf("\n");
    }
    json_object_foreach(json_object_get(r, "groups"), p, v) {
        printf("  group %-18s", p);
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) printf(" %s", json_string_value(x));
        printf("\n");
    }
}

static int call_print(struct cli *c, const char *method, json_t *params)
{
    int code;
    json_t *r = cli_call(c, method, params, NULL, NULL, &code);
    if (!r)
        return code;
    if (c->json)
        cli_print_json(r);
    else
        print_acl(r);
    json_decref(r);
    return 0;
}

int cmd_acl(struct cli *c, int argc, char **argv)
{
    const char *verb = argc ? argv[0] : "list";
    if ((!strcmp(verb, "grant") || !strcmp(verb, "revoke")) && argc >= 3) {
        json_t *rights = json_array();
        for (int i = 2; i < argc; i++)
            json_array_append_new(rights, json_string(argv[i]));
        return call_print(c, !strcmp(verb, "grant") ? "acl.grant" : "acl.revoke",
                          json_pack("{s:s, s:o}", "principal", argv[1], "rights", rights));
    }
    if (!strcmp(verb, "list") && argc <= 1)
        return call_print(c, "acl.list", NULL);
    if (!strcmp(verb, "group") && argc == 4 && (!strcmp(argv[1], "add") || !strcmp(argv[1], "remove")))
        return call_print(c, !strcmp(argv[1], "add") ? "acl.group-add" : "acl.group-remove",
                          json_pack("{s:s, s:s}", "group", argv[2], "member", argv[3]));
    cli_error(c, "usage: vmove acl grant|revoke user:NAME|host:NAME|group:NAME RIGHT... | acl list | "
                 "acl group add|remove GROUP user:NAME|host:NAME  (rights: vm.read vm.manage migrate.out "
                 "migrate.in storage.move host.admin)");
    return EXIT_USAGE;
}

int cmd_audit(struct cli *c, int argc, char **argv)
{
    long limit = 50;
    if (argc == 2 && !strcmp(argv[0], "--limit"))
        limit = atol(argv[1]);
    else if (argc) {
        cli_error(c, "usage: vmove audit [--limit N]");
        return EXIT_USAGE;
    }
    int code;
    json_t *r = cli_call(c, "audit.list", json_pack("{s:i}", "limit", (int)limit), NULL, NULL, &code);
    if (!r)
        return code;
    if (c->json)
        cli_print_json(r);
    else {
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(r, "records"), i, e) {
            time_t t = (time_t)(json_integer_value(json_object_get(e, "ts_ms")) / 1000);
            char ts[32];
            strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
            const char *vm = json_string_value(json_object_get(e, "vm"));
            const char *reason = json_string_value(json_object_get(e, "reason"));
            printf("%s %-7s %-18s %-18s vm=%-10s from=%s%s%s\n", ts, json_string_value(json_object_get(e, "verdict")),
                   json_string_value(json_object_get(e, "who")), json_string_value(json_object_get(e, "action")),
                   vm ? vm : "-", json_string_value(json_object_get(e, "from")) ? json_string_value(json_object_get(e, "from")) : "-",
                   reason ? "  " : "", reason ? reason : "");
        }
    }
    json_decref(r);
    return 0;
}
