/* vmove cluster create | join | leave | show | events, vmove vm set | ha-clear */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "cli/cmd-table.h"
#include "common/util.h"

static int cluster_call_print(struct cli *c, const char *method, json_t *p, void (*print)(json_t *))
{
    int code;
    json_t *r = cli_call(c, method, p, NULL, NULL, &code);
    if (r && c->json)
        cli_print_json(r);
    else if (r)
        print(r);
    json_decref(r);
    return r ? 0 : code;
}

static void print_setup(json_t *r)
{
    printf("host %s %s cluster %s (lease TTL %lld s)\n", json_string_value(json_object_get(r, "host")),
           json_is_true(json_object_get(r, "created")) ? "created" : "joined",
           json_string_value(json_object_get(r, "cluster")),
           (long long)json_integer_value(json_object_get(r, "ttl_s")));
}

static int setup(struct cli *c, const struct cli_args *a, const char *method)
{
    json_t *p = json_pack("{s:s, s:s, s:b}", "cluster", a->argv[0], "etcd", cli_opt(a, "etcd"),
                          "insecure_http", cli_flag_set(a, "insecure-http"));
    long long ttl = 0;
    if (!cli_opt_number(c, a, "ttl", 2, &ttl)) {
        json_decref(p);
        return EXIT_USAGE;
    }
    if (ttl)
        json_object_set_new(p, "ttl_s", json_integer(ttl));
    json_t *dirs = json_object_get(a->opts, "shared-dir");
    if (dirs) {
        json_t *list = json_array();
        json_t *in = json_is_array(dirs) ? json_incref(dirs) : json_pack("[O]", dirs);
        size_t i;
        json_t *d;
        json_array_foreach(in, i, d)
            json_array_append_new(list, cli_absolute_path(json_string_value(d)));
        json_decref(in);
        json_object_set_new(p, "shared_dirs", list);
    }
    return cluster_call_print(c, method, p, print_setup);
}

static int cmd_cluster_create_exec(struct cli *c, const struct cli_args *a) { return setup(c, a, "cluster.create"); }
static int cmd_cluster_join_exec(struct cli *c, const struct cli_args *a) { return setup(c, a, "cluster.join"); }

static void print_left(json_t *r)
{
    printf("host %s left cluster %s\n", json_string_value(json_object_get(r, "host")),
           json_string_value(json_object_get(r, "cluster")));
}

static int cmd_cluster_leave_exec(struct cli *c, const struct cli_args *a)
{
    (void)a;
    return cluster_call_print(c, "cluster.leave", json_object(), print_left);
}

static const char *str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "-";
}

static void print_show(json_t *r)
{
    printf("cluster:     %s (etcd %s, revision %lld, lease TTL %lld s)\n", str(r, "cluster"), str(r, "etcd"),
           (long long)json_integer_value(json_object_get(r, "revision")),
           (long long)json_integer_value(json_object_get(r, "ttl_s")));
    if (json_object_get(r, "warning"))
        printf("WARNING:     %s\n", str(r, "warning"));
    printf("coordinator: %s\n", str(r, "coordinator"));
    printf("\n%-16s %-12s %-10s %-12s %s\n", "HOST", "STATE", "LEASE AGE", "FREE MEMORY", "ADDRESS");
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(r, "members"), i, m) {
        char age[32] = "-", mem[32] = "-";
        if (json_object_get(m, "lease_age_s"))
            snprintf(age, sizeof age, "%lld s", (long long)json_integer_value(json_object_get(m, "lease_age_s")));
        if (json_object_get(m, "mem_free_mib"))
            snprintf(mem, sizeof mem, "%lld MiB", (long long)json_integer_value(json_object_get(m, "mem_free_mib")));
        printf("%-16s %-12s %-10s %-12s %s\n", str(m, "host"), str(m, "state"), age, mem, str(m, "addr"));
    }
    json_t *vms = json_object_get(r, "ha_vms");
    printf("\n%-16s %-16s %-13s %-5s %s\n", "HA VM", "OWNER", "STATE", "GEN", "REASON");
    json_array_foreach(vms, i, m)
        printf("%-16s %-16s %-13s %-5lld %s\n", str(m, "vm"), str(m, "host"), str(m, "state"),
               (long long)json_integer_value(json_object_get(m, "gen")), str(m, "reason"));
    if (!json_array_size(vms))
        printf("(none: `vmove vm set NAME --ha on` makes one)\n");
    /* Say it for every VM the cluster would not restart after a host loss. */
    json_array_foreach(vms, i, m)
        if (json_is_false(json_object_get(m, "restart_on_host_loss")))
            printf("note: %s is %snot restarted automatically if its host is lost (%s)\n", str(m, "vm"),
                   !strcmp(str(m, "state"), "isolated") ? "isolated and " : "", str(m, "no_restart_why"));
}

static int cmd_cluster_show_exec(struct cli *c, const struct cli_args *a)
{
    (void)a;
    return cluster_call_print(c, "cluster.show", json_object(), print_show);
}

static void print_ms_since(const char *label, json_t *e, const char *key, long long t0)
{
    json_t *v = json_object_get(e, key);
    if (v)
        printf("  %-22s +%lld ms\n", label, (long long)json_integer_value(v) - t0);
}

static void print_events(json_t *r)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(r, "events"), i, e) {
        /* A re-adoption (isolation keep) has no lost lease of its own to count from. */
        long long t0 = (long long)json_integer_value(json_object_get(e, "lease_gone_seen_ms") ?: json_object_get(e, "decided_ms"));
        time_t secs = (time_t)(t0 / 1000);
        char when[32];
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", localtime(&secs));
        printf("%s  %s: %s -> %s (%s), gen %lld\n", when, str(e, "vm"), str(e, "from"), str(e, "to"),
               str(e, "decision"), (long long)json_integer_value(json_object_get(e, "gen")));
        printf("  reason: %s\n  proof: etcd revision %lld (coordinator %s)\n", str(e, "reason"),
               (long long)json_integer_value(json_object_get(e, "proof_revision")), str(e, "coordinator"));
        print_ms_since("lease gone seen at", e, "lease_gone_seen_ms", t0);
        print_ms_since("restart decided at", e, "decided_ms", t0);
        print_ms_since("QEMU started at", e, "qemu_started_ms", t0);
        print_ms_since("guest running at", e, "running_ms", t0);
        print_ms_since("start failed at", e, "failed_ms", t0);
        if (!strcmp(str(e, "result"), "not-restarted"))
            printf("  not restarted:         isolation keep (the VM may still run on %s)\n", str(e, "from"));
    }
    if (!json_array_size(json_object_get(r, "events")))
        printf("no failover yet\n");
}

static int cmd_cluster_events_exec(struct cli *c, const struct cli_args *a)
{
    (void)a;
    return cluster_call_print(c, "cluster.events", json_object(), print_events);
}

static void print_ha(json_t *r)
{
    printf("VM %s: HA %s", str(r, "vm"), json_is_true(json_object_get(r, "ha")) ? "on" : "off");
    if (json_is_true(json_object_get(r, "ha")))
        printf(", priority %s, isolation %s%s", str(r, "priority"), str(r, "isolation"),
               !strcmp(str(r, "isolation"), "keep") ? " (never fenced; not restarted elsewhere if its host is lost)"
                                                    : "");
    printf("\n");
}

/* vm set: the config flags (a stopped VM, cmd-vm.c) or the HA ones (here). */
static int cmd_vm_set_exec(struct cli *c, const struct cli_args *a)
{
    static const char *const config_flags[] = {"memory", "cpus", "add-disk", "remove-disk", "add-nic", "remove-nic"};
    bool config = false;
    for (size_t i = 0; i < sizeof config_flags / sizeof *config_flags; i++)
        config |= cli_flag_set(a, config_flags[i]);
    bool ha_flags = cli_flag_set(a, "ha") || cli_flag_set(a, "priority") || cli_flag_set(a, "preferred-hosts") ||
                    cli_flag_set(a, "isolation");
    if (config && ha_flags) {
        cli_usage_error(c, a->cmd, "--ha, --priority, --preferred-hosts and --isolation go in a `vm set` of their own");
        return EXIT_USAGE;
    }
    if (config)
        return cli_vm_set_config(c, a);
    const char *ha = cli_opt(a, "ha");
    if (!ha && cli_opt(a, "isolation")) {
        cli_usage_error(c, a->cmd, "--isolation goes with --ha on");
        return EXIT_USAGE;
    }
    if (!ha || (strcmp(ha, "on") && strcmp(ha, "off"))) {
        cli_usage_error(c, a->cmd, "nothing to change: give --memory, --cpus, --add-disk, --remove-disk, --add-nic, "
                                   "--remove-nic, or --ha on|off");
        return EXIT_USAGE;
    }
    const char *iso = cli_opt(a, "isolation");
    if (iso && (strcmp(iso, "keep") && strcmp(iso, "stop"))) {
        cli_usage_error(c, a->cmd, "--isolation takes keep or stop");
        return EXIT_USAGE;
    }
    if (iso && strcmp(ha, "on")) {
        cli_usage_error(c, a->cmd, "--isolation goes with --ha on");
        return EXIT_USAGE;
    }
    json_t *p = json_pack("{s:s, s:b}", "name", a->argv[0], "ha", !strcmp(ha, "on"));
    if (iso)
        json_object_set_new(p, "isolation", json_string(iso));
    if (cli_opt(a, "priority"))
        json_object_set_new(p, "priority", json_string(cli_opt(a, "priority")));
    if (cli_opt(a, "preferred-hosts")) {
        json_t *list = json_array();
        char *copy = xstrdup(cli_opt(a, "preferred-hosts")), *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
            json_array_append_new(list, json_string(t));
        free(copy);
        json_object_set_new(p, "preferred_hosts", list);
    }
    return cluster_call_print(c, "vm.set-ha", p, print_ha);
}

static void print_cleared(json_t *r)
{
    printf("VM %s: cleared; the cluster places it again\n", str(r, "vm"));
}

static int cmd_vm_ha_clear_exec(struct cli *c, const struct cli_args *a)
{
    return cluster_call_print(c, "vm.ha-clear", json_pack("{s:s}", "name", a->argv[0]), print_cleared);
}

static const struct cli_flag setup_flags[] = {
    {"etcd", 0, "URL[,URL...]", NULL, NULL, "the etcd members (https://IP:2379; 3 or 5 members in production)",
     CLI_REQUIRED},
    {"insecure-http", 0, NULL, NULL, NULL,
     "allow http:// etcd URLs (labs only: `cluster show` marks the cluster unsafe)", 0},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};
static const struct cli_flag create_flags[] = {
    {"etcd", 0, "URL[,URL...]", NULL, NULL, "the etcd members (https://IP:2379; 3 or 5 members in production)",
     CLI_REQUIRED},
    {"insecure-http", 0, NULL, NULL, NULL,
     "allow http:// etcd URLs (labs only: `cluster show` marks the cluster unsafe)", 0},
    {"shared-dir", 0, "DIR", NULL, NULL, "storage every member sees at the same path: HA disks must be under one",
     CLI_REPEAT},
    {"ttl", 0, "SECONDS", "3", "s", "the members' lease TTL: a dead host's HA VMs restart about this long after", 0},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};
static const struct cli_flag vm_set_flags[] = {
    {"memory", 'm', "SIZE", NULL, "MiB", "guest memory (stopped VM): 2G, 512M, or a bare number of MiB", 0},
    {"cpus", 'c', "N", NULL, NULL, "virtual CPUs (stopped VM)", 0},
    {"add-disk", 0, "SIZE|PATH|PATH,size=SIZE", NULL, NULL,
     "add a disk (stopped VM): new qcow2 of SIZE in the VM's directory, an existing qcow2 at PATH, or a new one at "
     "PATH", CLI_REPEAT},
    {"remove-disk", 0, "ID|PATH", NULL, NULL, "detach a disk (stopped VM); its file stays", CLI_REPEAT},
    {"add-nic", 0, "SWITCH", NULL, NULL, "add a NIC on the host's bridge SWITCH, with a new MAC (stopped VM)",
     CLI_REPEAT},
    {"remove-nic", 0, "MAC|ID|SWITCH", NULL, NULL, "remove a NIC (stopped VM): by MAC, id (net0) or its switch",
     CLI_REPEAT},
    {"ha", 0, "on|off", NULL, NULL, "high availability: restart the VM on another member if its host dies", 0},
    {"priority", 0, "high|medium|low|manual", "medium", NULL,
     "restart order after a failure; manual: not restarted automatically", 0},
    {"preferred-hosts", 0, "H1,H2,...", NULL, NULL, "where to restart it first, in order", 0},
    {"isolation", 0, "stop|keep", "stop", NULL,
     "when its host loses the cluster lease: stop (paused, then killed, and restarted on a survivor) or keep "
     "(never fenced, so never restarted elsewhere automatically: re-adopted when the host returns)", 0},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_cluster_create_entry = {
    .noun = "cluster", .verb = "create", .summary = "create cluster NAME on etcd, with this host as its first member",
    .args = "NAME", .flags = create_flags, .min_args = 1, .max_args = 1, .fn = cmd_cluster_create_exec,
};
const struct cli_cmd cmd_cluster_join_entry = {
    .noun = "cluster", .verb = "join", .summary = "make this host a member of cluster NAME",
    .args = "NAME", .flags = setup_flags, .min_args = 1, .max_args = 1, .fn = cmd_cluster_join_exec,
};
const struct cli_cmd cmd_cluster_leave_entry = {
    .noun = "cluster", .verb = "leave", .summary = "take this host out of its cluster (it must run no HA VM)",
    .fn = cmd_cluster_leave_exec,
};
const struct cli_cmd cmd_cluster_show_entry = {
    .noun = "cluster", .verb = "show", .is_default = true,
    .summary = "the members with their state and lease age, the coordinator, and the HA VMs",
    .fn = cmd_cluster_show_exec,
};
const struct cli_cmd cmd_cluster_events_entry = {
    .noun = "cluster", .verb = "events", .summary = "every failover with its timeline and the etcd revision that proved the old owner gone",
    .fn = cmd_cluster_events_exec,
};
const struct cli_cmd cmd_vm_set_entry = {
    .noun = "vm", .verb = "set",
    .summary = "change a stopped VM's memory, CPUs, disks and NICs, or a VM's HA setting, restart priority, "
               "preferred hosts and isolation",
    .args = "NAME", .flags = vm_set_flags, .min_args = 1, .max_args = 1, .fn = cmd_vm_set_exec,
};
const struct cli_cmd cmd_vm_ha_clear_entry = {
    .noun = "vm", .verb = "ha-clear",
    .summary = "let the cluster place an HA VM again after it went to error, or an isolated one (isolation keep) "
               "once you know its host is off",
    .args = "NAME", .min_args = 1, .max_args = 1, .fn = cmd_vm_ha_clear_exec,
};
