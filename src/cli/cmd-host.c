/* vmove host show | set | events | drain | resume, vmove peer add | remove | list */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cmd-table.h"

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
    printf("post-copy:   %s\n", !strcmp(json_string_value(json_object_get(m, "postcopy")) ?
                                             json_string_value(json_object_get(m, "postcopy")) : "deny", "allow")
                                     ? "allowed (with peers that allow it too): a host or link dying during "
                                       "post-copy loses the VM"
                                     : "denied (vmove host set --postcopy allow)");
    json_t *live = json_object_get(m, "live"), *stor = json_object_get(m, "storage");
    printf("limits:      live migrations %lld/%lld, storage migrations %lld/%lld (in use/max)\n",
           (long long)json_integer_value(json_object_get(live, "in_use")),
           (long long)json_integer_value(json_object_get(live, "max")),
           (long long)json_integer_value(json_object_get(stor, "in_use")),
           (long long)json_integer_value(json_object_get(stor, "max")));
    json_t *con = json_object_get(h, "console");
    printf("console:     %s\n", !json_is_true(json_object_get(con, "enabled")) ? "off (vmove host set --console on)"
                               : json_is_true(json_object_get(con, "available")) ? "on" : "on, but not served: needs --listen");
    if (json_is_true(json_object_get(con, "enabled")))
        printf("             https port %lld (vmove ui login)\n", (long long)json_integer_value(json_object_get(con, "port")));
    json_t *dl = json_object_get(m, "allow_delegation_from");
    if (json_array_size(dl)) {
        printf("delegation:  hosts that may act for users here:");
        size_t k;
        json_t *x;
        json_array_foreach(dl, k, x) printf(" %s", json_string_value(x));
        printf("\n");
    }
    const char *kind;
    json_t *ad;
    json_object_foreach(json_object_get(h, "allowed_dirs"), kind, ad) {
        printf("allowed:     %-8s", kind);
        size_t k;
        json_t *x;
        json_array_foreach(json_object_get(ad, "dirs"), k, x) printf("%s%s", k ? ", " : " ", json_string_value(x));
        printf("%s\n", json_is_true(json_object_get(ad, "default")) ? " (default)" : "");
    }
    if (json_is_true(json_object_get(m, "drained")))
        printf("maintenance: DRAINED: nothing new is placed here (vmove host resume ends it)\n");
    const char *name;
    json_t *addr;
    json_object_foreach(json_object_get(h, "peers"), name, addr)
        printf("peer:        %s at %s\n", name, json_string_value(addr));
}

static int on_off(struct cli *c, const struct cli_args *a, const char *flag, json_t *p, const char *key)
{
    const char *v = cli_opt(a, flag);
    if (!v)
        return 0;
    if (strcmp(v, "on") && strcmp(v, "off")) {
        cli_usage_error(c, a->cmd, "--%s: expected on or off, got \"%s\"", flag, v);
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
    if (on_off(c, a, "migration-incoming", p, "migration_incoming") < 0 ||
        on_off(c, a, "migration-outgoing", p, "migration_outgoing") < 0 ||
        on_off(c, a, "allow-insecure-migration", p, "allow_insecure_migration") < 0 ||
        on_off(c, a, "console", p, "console") < 0) {
        json_decref(p);
        return NULL;
    }
    const char *pc = cli_opt(a, "postcopy");
    if (pc && strcmp(pc, "allow") && strcmp(pc, "deny")) {
        cli_usage_error(c, a->cmd, "--postcopy: expected allow or deny, got \"%s\"", pc);
        json_decref(p);
        return NULL;
    }
    if (pc)
        json_object_set_new(p, "postcopy", json_string(pc));
    json_t *nets = json_object_get(a->opts, "migration-network");
    if (nets)
        json_object_set(p, "migration_networks", nets);
    json_t *deleg = json_object_get(a->opts, "allow-delegation-from");
    if (deleg)
        json_object_set(p, "allow_delegation_from", deleg);
    const char *dirs[][2] = {{"allow-dir", "allow_dir"}, {"disallow-dir", "disallow_dir"}};
    for (size_t i = 0; i < 2; i++)
        if (json_object_get(a->opts, dirs[i][0]))
            json_object_set(p, dirs[i][1], json_object_get(a->opts, dirs[i][0]));
    const char *lim[][2] = {{"max-live-migrations", "max_live_migrations"},
                            {"max-storage-migrations", "max_storage_migrations"}, {"console-port", "console_port"}};
    for (size_t i = 0; i < 3; i++) {
        /* Any number: vmoved says which range it takes. */
        long long n = LLONG_MIN;
        if (!cli_opt_number(c, a, lim[i][0], LLONG_MIN, &n)) {
            json_decref(p);
            return NULL;
        }
        if (n != LLONG_MIN)
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
            char when[32];
            printf("%s  %-10s %-12s %s\n",
                   progress_fmt_time((long long)json_integer_value(json_object_get(e, "ts_ms")), when, sizeof when),
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

static int cmd_host_show_exec(struct cli *c, const struct cli_args *a)
{
    return host_call(c, "host.show", NULL, true);
}

static int cmd_host_set_exec(struct cli *c, const struct cli_args *a)
{
    if (!json_object_size(a->opts)) {
        cli_usage_error(c, a->cmd, "nothing to set: give at least one option");
        return EXIT_USAGE;
    }
    json_t *p = set_params(c, a);
    return p ? host_call(c, "host.set", p, true) : EXIT_USAGE;
}

static int cmd_host_events_exec(struct cli *c, const struct cli_args *a)
{
    json_t *p = json_object();
    if (cli_opt(a, "vm"))
        json_object_set_new(p, "vm", json_string(cli_opt(a, "vm")));
    if (cli_opt(a, "limit"))
        json_object_set_new(p, "limit", json_integer(atoll(cli_opt(a, "limit"))));
    return host_call(c, "host.events", p, false);
}

/* {"host": HOST} or {} for this host. */
static json_t *host_param(const struct cli_args *a)
{
    return a->argc ? json_pack("{s:s}", "host", a->argv[0]) : json_object();
}

static int cmd_host_resume_exec(struct cli *c, const struct cli_args *a)
{
    int code;
    json_t *r = cli_call(c, "host.resume", host_param(a), NULL, NULL, &code);
    if (r && c->json)
        cli_print_json(r);
    else if (r)
        printf("host %s resumed: it takes new work again\n", json_string_value(json_object_get(r, "host")));
    json_decref(r);
    return r ? 0 : code;
}

static int cmd_host_drain_exec(struct cli *c, const struct cli_args *a)
{
    json_t *p = host_param(a);
    if (json_object_get(a->opts, "to"))
        json_object_set(p, "to", json_object_get(a->opts, "to"));
    json_object_set_new(p, "wait", json_false());
    int code;
    json_t *r = cli_call(c, "host.drain", p, NULL, NULL, &code);
    if (!r)
        return code;
    json_int_t id = json_integer_value(json_object_get(r, "job"));
    if (cli_flag_set(a, "no-wait")) {
        cli_print_accepted(c, r);   /* with --json too, as every command */
        json_decref(r);
        return 0;
    }
    json_decref(r);
    json_t *final = NULL;
    int rc = cli_follow_job_result(c, json_pack("{s:I}", "id", id), &final);
    json_t *res = json_object_get(final, "result");
    if (!res)
        res = json_object_get(json_object_get(final, "error"), "result");
    if (c->json && final)
        cli_print_final(final, rc == 0);
    else if (res)
        print_drain(res);
    json_decref(final);
    return rc;
}

static const struct cli_flag host_set_flags[] = {
    {"accel", 0, "auto|kvm|tcg", NULL, NULL, "the accelerator for VMs started from now on (auto: KVM if usable)", 0},
    {"migration-incoming", 0, "on|off", NULL, NULL, "accept live migrations to this host", 0},
    {"migration-outgoing", 0, "on|off", NULL, NULL, "allow live migrations from this host", 0},
    {"migration-network", 0, "CIDR|any", NULL, NULL,
     "the networks migration streams may use; the list given replaces the old one", CLI_REPEAT},
    {"max-live-migrations", 0, "N", NULL, NULL, "live migrations at a time; more wait in a queue", 0},
    {"max-storage-migrations", 0, "N", NULL, NULL, "storage migrations at a time; more wait in a queue", 0},
    {"allow-insecure-migration", 0, "on|off", NULL, NULL,
     "let migration and NBD streams go without TLS (both hosts must allow it)", 0},
    {"postcopy", 0, "allow|deny", "deny", NULL,
     "let live migrations switch to post-copy (both hosts must allow it); a host or link dying during "
     "post-copy loses the VM", 0},
    {"allow-delegation-from", 0, "host:NAME|group:NAME|none", NULL, NULL,
     "hosts that may act here for a user who signed a delegation token; the list replaces the old one",
     CLI_REPEAT},
    {"allow-dir", 0, "KIND=DIR", NULL, NULL,
     "let requests name files in DIR (canonical) for KIND: images (disks), kernels (kernel, initrd), storage "
     "(move-storage, --with-storage targets) or state (--state-dir); a kind never set allows STATE/images and "
     "/srv/vmove", CLI_REPEAT},
    {"disallow-dir", 0, "KIND=DIR", NULL, NULL, "remove DIR from KIND's allowed directories", CLI_REPEAT},
    {"console", 0, "on|off", "off", NULL,
     "serve the web console and /metrics over HTTPS on the --listen address (docs/CONSOLE.md; `vmove ui login`)", 0},
    {"console-port", 0, "N", "7443", NULL, "the web console's TCP port", 0},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};
static const struct cli_flag host_events_flags[] = {
    {"vm", 0, "NAME", NULL, NULL, "only the events of this VM", 0},
    {"limit", 0, "N", "50", NULL, "the newest N events", 0},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};
static const struct cli_flag host_drain_flags[] = {
    {"to", 0, "HOST", "every peer", NULL, "a host the VMs may go to", CLI_REPEAT},
    {"no-wait", 0, NULL, NULL, NULL, "print the job id at once; follow with `vmove jobs watch ID`", 0},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_host_show_entry = {
    .noun = "host", .verb = "show", .summary = "show this host: accelerator, QEMU, memory, migration settings, peers",
    .args = "", .max_args = 0, .is_default = true, .fn = cmd_host_show_exec,
};
const struct cli_cmd cmd_host_set_entry = {
    .noun = "host", .verb = "set", .summary = "change this host's settings (kept in STATE/host.json)",
    .args = "", .flags = host_set_flags, .max_args = 0, .fn = cmd_host_set_exec,
};
const struct cli_cmd cmd_host_events_entry = {
    .noun = "host", .verb = "events", .summary = "show the host's event journal",
    .args = "", .flags = host_events_flags, .max_args = 0, .fn = cmd_host_events_exec,
};
const struct cli_cmd cmd_host_drain_entry = {
    .noun = "host", .verb = "drain",
    .summary = "move every running VM off this host and place nothing new on it until `host resume` "
               "(HOST, if given, must be this host's name)",
    .args = "[HOST]", .flags = host_drain_flags, .max_args = 1, .fn = cmd_host_drain_exec,
};
const struct cli_cmd cmd_host_resume_entry = {
    .noun = "host", .verb = "resume", .summary = "end the maintenance of this drained host: it takes new work again",
    .args = "[HOST]", .max_args = 1, .fn = cmd_host_resume_exec,
};

/* ---- peers --------------------------------------------------------------- */

static void print_peer(const char *name, json_t *addr, json_t *st, const char *from)
{
    char where[128] = "";
    if (from)
        snprintf(where, sizeof where, " (from cluster %s)", from);
    if (!st)
        printf("%-20s %s%s\n", name, json_string_value(addr), where);
    else if (json_is_true(json_object_get(st, "reachable")))
        printf("%-20s %-22s reachable (TLS verified in %lld ms)%s\n", name, json_string_value(addr),
               (long long)json_integer_value(json_object_get(st, "probe_ms")), where);
    else
        printf("%-20s %-22s unreachable: %s%s\n", name, json_string_value(addr),
               json_string_value(json_object_get(st, "reason")), where);
}

/* NAME ADDR, and with peer list's probe whether it answers now; the
 * members of this host's cluster that are no peer entry are peers too. */
static void print_peers(json_t *r)
{
    const char *name;
    json_t *addr;
    json_t *status = json_object_get(r, "status");
    json_object_foreach(json_object_get(r, "peers"), name, addr)
        print_peer(name, addr, json_object_get(status, name), NULL);
    const char *cluster = json_string_value(json_object_get(r, "cluster"));
    json_object_foreach(json_object_get(r, "cluster_peers"), name, addr)
        print_peer(name, addr, json_object_get(status, name), cluster ? cluster : "?");
}

static int peer_request(struct cli *c, const char *method, json_t *params)
{
    return cli_call_and_print(c, method, params, print_peers);
}

static int cmd_peer_add_exec(struct cli *c, const struct cli_args *a)
{
    return peer_request(c, "peer.add", json_pack("{s:s, s:s, s:b}", "name", a->argv[0], "addr", a->argv[1], "verify",
                                                 !cli_flag_set(a, "no-verify")));
}

static int cmd_peer_remove_exec(struct cli *c, const struct cli_args *a)
{
    return peer_request(c, "peer.remove", json_pack("{s:s}", "name", a->argv[0]));
}

static int cmd_peer_list_exec(struct cli *c, const struct cli_args *a)
{
    return peer_request(c, "peer.list", json_pack("{s:b}", "probe", 1));
}

static const struct cli_flag peer_add_flags[] = {
    {"no-verify", 0, NULL, "connect and verify first", NULL,
     "record the peer without connecting to it (a host that is not up yet)", 0},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_peer_add_entry = {
    .noun = "peer", .verb = "add", .summary = "know host HOST at ADDR:PORT: connects and checks that its certificate carries that name, "
               "and records it only then",
    .args = "HOST ADDR:PORT", .flags = peer_add_flags, .min_args = 2, .max_args = 2, .fn = cmd_peer_add_exec,
};
const struct cli_cmd cmd_peer_remove_entry = {
    .noun = "peer", .verb = "remove", .summary = "forget host HOST",
    .args = "HOST", .min_args = 1, .max_args = 1, .fn = cmd_peer_remove_exec,
};
const struct cli_cmd cmd_peer_list_entry = {
    .noun = "peer", .verb = "list", .summary = "list the known hosts (peer entries, and the members of this host's cluster) and whether each "
               "answers now (probed at once, 3 s at most)",
    .args = "", .max_args = 0, .is_default = true, .fn = cmd_peer_list_exec,
};
