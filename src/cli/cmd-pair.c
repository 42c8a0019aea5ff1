/* vmove [-H A] host pair B [--user U] [--migration-network CIDR]...: make two
 * hosts ready to move VMs to each other in one command, through this CLI's
 * connection to A and a second one to B (the same --identity): each knows
 * the other as a peer, grants it migrate.in and migrate.out, has migration
 * on in both directions and a migration network; optionally user U gets
 * migrate.in and migrate.out at both ends.  Only what is missing is changed,
 * and each change is printed, so running it again changes nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cmd-table.h"

struct pair_side {
    struct cli c;       /* its own connection */
    json_t *show;       /* host.show */
    json_t *acl;        /* acl.list */
    const char *name;
};

static int pair__load(struct pair_side *s)
{
    int code;
    s->show = cli_call(&s->c, "host.show", json_object(), NULL, NULL, &code);
    if (!s->show)
        return code;
    s->acl = cli_call(&s->c, "acl.list", json_object(), NULL, NULL, &code);
    if (!s->acl)
        return code;
    s->name = json_string_value(json_object_get(s->show, "name"));
    if (!json_string_value(json_object_get(s->show, "listen"))) {
        cli_error(&s->c, "host %s does not listen for other hosts: start its vmoved with --listen ADDR:PORT and "
                         "--tls-dir DIR", s->name ? s->name : s->c.host);
        return EXIT_FAIL;
    }
    return 0;
}

/* One change on side s, said as the command that would make it. */
static int pair__apply(struct pair_side *s, json_t *changes, const char *method, json_t *params, const char *said)
{
    int code;
    json_t *r = cli_call(&s->c, method, params, NULL, NULL, &code);
    if (!r)
        return code;
    json_decref(r);
    json_array_append_new(changes, json_pack("{s:s, s:s}", "host", s->name, "change", said));
    if (!s->c.json)
        printf("on %s: %s\n", s->name, said);
    return 0;
}

static bool pair__has_rights(const struct pair_side *s, const char *principal)
{
    json_t *rights = json_object_get(json_object_get(s->acl, "grants"), principal);
    bool in = false, out = false;
    size_t i;
    json_t *x;
    json_array_foreach(rights, i, x) {
        in |= !strcmp(json_string_value(x), "migrate.in");
        out |= !strcmp(json_string_value(x), "migrate.out");
    }
    return in && out;
}

static int pair__grant(struct pair_side *s, json_t *changes, const char *principal)
{
    if (pair__has_rights(s, principal))
        return 0;
    char said[256];
    snprintf(said, sizeof said, "vmove acl grant %s migrate.in migrate.out", principal);
    return pair__apply(s, changes, "acl.grant",
                       json_pack("{s:s, s:[s,s]}", "principal", principal, "rights", "migrate.in", "migrate.out"), said);
}

/* Everything side s needs to move VMs to and from side o. */
static int pair__side(struct pair_side *s, const struct pair_side *o, const struct cli_args *a, json_t *changes)
{
    const char *addr = json_string_value(json_object_get(o->show, "listen"));
    const char *known = json_string_value(json_object_get(json_object_get(s->show, "peers"), o->name));
    char said[512], principal[160];
    int rc = 0;
    if (!known || strcmp(known, addr)) {
        snprintf(said, sizeof said, "vmove peer add %s %s", o->name, addr);
        rc = pair__apply(s, changes, "peer.add", json_pack("{s:s, s:s}", "name", o->name, "addr", addr), said);
    }
    snprintf(principal, sizeof principal, "host:%s", o->name);
    if (!rc)
        rc = pair__grant(s, changes, principal);
    snprintf(principal, sizeof principal, "user:%s", cli_opt(a, "user") ? cli_opt(a, "user") : "");
    if (!rc && cli_opt(a, "user"))
        rc = pair__grant(s, changes, principal);
    json_t *mig = json_object_get(s->show, "migration");
    if (!rc && (!json_is_true(json_object_get(mig, "incoming")) || !json_is_true(json_object_get(mig, "outgoing"))))
        rc = pair__apply(s, changes, "host.set", json_pack("{s:b, s:b}", "migration_incoming", 1, "migration_outgoing", 1),
                         "vmove host set --migration-incoming on --migration-outgoing on");
    json_t *nets = json_object_get(a->opts, "migration-network");
    if (!rc && nets && !json_equal(nets, json_object_get(mig, "networks"))) {
        int n = snprintf(said, sizeof said, "vmove host set");
        size_t i;
        json_t *x;
        json_array_foreach(nets, i, x) {
            if ((size_t)n >= sizeof said)
                break;   /* the message is cut, the change is whole */
            n += snprintf(said + n, sizeof said - (size_t)n, " --migration-network %s", json_string_value(x));
        }
        rc = pair__apply(s, changes, "host.set", json_pack("{s:O}", "migration_networks", nets), said);
    } else if (!rc && !json_array_size(json_object_get(mig, "networks")) &&
               !json_is_true(json_object_get(mig, "unsafe_any_network"))) {
        cli_error(&s->c, "host %s has no migration network, so it can neither send nor receive a VM: run this again "
                         "with --migration-network CIDR (the network both hosts' migration addresses are on)", s->name);
        rc = EXIT_FAIL;
    }
    return rc;
}

static int cmd_host_pair_exec(struct cli *c, const struct cli_args *a)
{
    struct pair_side s[2] = {{.c = *c}, {.c = *c}};
    s[1].c.host = a->argv[0];
    s[1].c.conn = NULL;
    json_t *changes = json_array();
    int rc = pair__load(&s[0]);
    if (!rc)
        rc = pair__load(&s[1]);
    if (!rc && !strcmp(s[0].name, s[1].name)) {
        cli_error(c, "both connections reach host %s: give the other host's address", s[0].name);
        rc = EXIT_USAGE;
    }
    for (int i = 0; i < 2 && !rc; i++)
        rc = pair__side(&s[i], &s[1 - i], a, changes);
    if (!rc && c->json) {
        json_t *out = json_pack("{s:[s,s], s:O}", "hosts", s[0].name, s[1].name, "changed", changes);
        cli_print_json(out);
        json_decref(out);
    } else if (!rc)
        printf(json_array_size(changes) ? "hosts %s and %s are paired for migration\n"
                                        : "hosts %s and %s were already paired: nothing changed\n", s[0].name,
               s[1].name);
    json_decref(changes);
    for (int i = 0; i < 2; i++) {
        json_decref(s[i].show);
        json_decref(s[i].acl);
    }
    c->conn = s[0].c.conn;   /* the caller's connection, opened here or before, closed by the caller */
    cli_disconnect(&s[1].c);
    return rc;
}

static const struct cli_flag pair_flags[] = {
    {"user", 0, "NAME", NULL, NULL, "also grant user NAME migrate.in and migrate.out on both (root's own moves "
                                    "over the local socket need none: they run with the host's rights)", 0},
    {"migration-network", 0, "CIDR", "leave as set", NULL,
     "set both hosts' migration networks to these (needed once on fresh hosts)", CLI_REPEAT},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_host_pair_entry = {
    .noun = "host", .verb = "pair",
    .summary = "make this host and host OTHER (-H syntax: unix:PATH, HOST[:PORT], NAME@ADDR[:PORT]) ready to move VMs "
               "to each other: peers, host rights, migration on, networks; idempotent; needs host.admin on both",
    .args = "OTHER", .flags = pair_flags, .min_args = 1, .max_args = 1, .fn = cmd_host_pair_exec,
};
