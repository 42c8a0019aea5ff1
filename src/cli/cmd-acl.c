/* vmove acl grant|revoke PRINCIPAL RIGHT... | acl list | acl group add|remove GROUP MEMBER
 * vmove audit [--limit N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/cmd-table.h"

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

/* grant and revoke: PRINCIPAL RIGHT... */
static json_t *rights_params(const struct cli_args *a)
{
    json_t *rights = json_array();
    for (int i = 1; i < a->argc; i++)
        json_array_append_new(rights, json_string(a->argv[i]));
    return json_pack("{s:s, s:o}", "principal", a->argv[0], "rights", rights);
}

static int cmd_acl_grant_exec(struct cli *c, const struct cli_args *a)
{
    return cli_call_and_print(c, "acl.grant", rights_params(a), print_acl);
}

static int cmd_acl_revoke_exec(struct cli *c, const struct cli_args *a)
{
    return cli_call_and_print(c, "acl.revoke", rights_params(a), print_acl);
}

static int cmd_acl_list_exec(struct cli *c, const struct cli_args *a)
{
    return cli_call_and_print(c, "acl.list", NULL, print_acl);
}

static int cmd_acl_group_exec(struct cli *c, const struct cli_args *a)
{
    const char *op = a->argv[0];
    if (strcmp(op, "add") && strcmp(op, "remove")) {
        cli_usage_error(c, a->cmd, "expected add or remove, got \"%s\"", op);
        return EXIT_USAGE;
    }
    return cli_call_and_print(c, !strcmp(op, "add") ? "acl.group-add" : "acl.group-remove",
                              json_pack("{s:s, s:s}", "group", a->argv[1], "member", a->argv[2]), print_acl);
}

#define RIGHTS "vm.read vm.manage migrate.out migrate.in storage.move host.admin"

const struct cli_cmd cmd_acl_grant_entry = {
    .noun = "acl", .verb = "grant", .summary = "give a principal (user:NAME, host:NAME or group:NAME) rights: " RIGHTS,
    .args = "PRINCIPAL RIGHT...", .min_args = 2, .max_args = -1, .fn = cmd_acl_grant_exec,
};
const struct cli_cmd cmd_acl_revoke_entry = {
    .noun = "acl", .verb = "revoke", .summary = "take rights from a principal (user:NAME, host:NAME or group:NAME)",
    .args = "PRINCIPAL RIGHT...", .min_args = 2, .max_args = -1, .fn = cmd_acl_revoke_exec,
};
const struct cli_cmd cmd_acl_list_entry = {
    .noun = "acl", .verb = "list", .summary = "show this host's grants and groups",
    .args = "", .max_args = 0, .is_default = true, .fn = cmd_acl_list_exec,
};
const struct cli_cmd cmd_acl_group_entry = {
    .noun = "acl", .verb = "group", .summary = "add a member (user:NAME or host:NAME) to a group, or remove one",
    .args = "add|remove GROUP MEMBER", .min_args = 3, .max_args = 3, .fn = cmd_acl_group_exec,
};

static int cmd_audit_exec(struct cli *c, const struct cli_args *a)
{
    long limit = cli_opt(a, "limit") ? atol(cli_opt(a, "limit")) : 50;
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

static const struct cli_flag audit_flags[] = {
    {"limit", 0, "N", "50", NULL, "the newest N records", 0},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_audit_entry = {
    .noun = "audit", .summary = "show the audit log: who asked for what, and whether it was allowed",
    .args = "", .flags = audit_flags, .max_args = 0, .fn = cmd_audit_exec,
};
