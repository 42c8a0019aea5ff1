/* host.show, host.set */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <arpa/inet.h>

#include "common/proto.h"
#include "api/methods.h"
#include "cluster/cluster.h"
#include "common/log.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/acl.h"
#include "api/api.h"
#include "core/journal.h"
#include "core/limits.h"
#include "core/paths.h"
#include "core/peer.h"
#include "vm/vm.h"

static json_t *memory_json(void)
{
    struct sysinfo si;
    sysinfo(&si);
    return json_pack("{s:I, s:I}", "total_mib", (json_int_t)((uint64_t)si.totalram * si.mem_unit >> 20),
                     "free_mib", (json_int_t)((uint64_t)(si.freeram + si.bufferram) * si.mem_unit >> 20));
}

/* {KIND: {"dirs": [...], "default": bool}}: the policy in effect. */
static json_t *allowed_dirs_json(const struct agent *a)
{
    struct path_policy pol;
    paths_policy_init(&pol, &a->settings, a->state_dir);
    json_t *o = json_object();
    for (int k = 0; k < N_DIR_KINDS; k++) {
        json_t *dirs = json_array();
        for (size_t i = 0; i < pol.n[k]; i++)
            json_array_append_new(dirs, json_string(pol.roots[k][i]));
        json_object_set_new(o, dir_kind_name((enum dir_kind)k),
                            json_pack("{s:o, s:b}", "dirs", dirs, "default", !a->settings.allowed[k].set));
    }
    return o;
}

static void host_show(struct api_req *r)
{
    struct agent *a = r->agent;
    int n_vms = 0, n_running = 0;
    VM_FOREACH(a, vm) {
        n_vms++;
        n_running += vm->state == VM_RUNNING || vm->state == VM_PAUSED;
    }
    json_t *accel = json_pack("{s:s, s:s, s:s}", "setting", accel_setting_name(a->settings.accel),
                              "effective", accel_kind_name(a->accel.kind), "reason", a->accel.reason);
    json_t *qemu = json_pack("{s:s, s:s, s:s}", "binary", a->caps.qemu_binary, "version",
                             a->caps.qemu_version, "default_machine", a->caps.default_machine);
    json_t *settings = host_settings_to_json(&a->settings);
    char nets[512];
    settings_migration_networks_str(&a->settings, nets, sizeof nets);
    json_t *migration = json_pack("{s:b, s:b, s:O, s:s, s:b, s:b, s:{s:i, s:i}, s:{s:i, s:i}}",
                                  "incoming", a->settings.migration_incoming,
                                  "outgoing", a->settings.migration_outgoing, "networks",
                                  json_object_get(settings, "migration_networks"), "networks_text", nets,
                                  "unsafe_any_network", a->settings.migration_any, "drained", a->settings.drained,
                                  "live", "max", a->settings.max_live_migrations, "in_use", limits_in_use(a, SLOT_LIVE),
                                  "storage", "max", a->settings.max_storage_migrations, "in_use",
                                  limits_in_use(a, SLOT_STORAGE));
    if (a->settings.migration_any)
        json_object_set_new(migration, "warning", json_string(
            "UNSAFE: migration traffic may use any network; restrict it with --migration-network CIDR"));
    json_object_set_new(migration, "allow_insecure", json_boolean(a->settings.allow_insecure_migration));
    if (a->settings.allow_insecure_migration)
        json_object_set_new(migration, "insecure_warning", json_string(
            "UNSAFE: plaintext migration streams allowed (with peers that allow them too)"));
    json_object_set_new(migration, "postcopy", json_string(a->settings.allow_postcopy ? "allow" : "deny"));
    json_t *peers = json_incref(json_object_get(settings, "peers"));
    /* The server (src/server/) applies a change within a second. */
    json_t *console = json_pack("{s:b, s:i, s:b}", "enabled", a->settings.console, "port", a->settings.console_port,
                                "available", a->tls_server != NULL && a->listen_addr != NULL);
    json_object_set(migration, "allow_delegation_from", json_object_get(settings, "allow_delegation_from"));
    json_decref(settings);
    api_reply(r, json_pack("{s:s, s:s, s:s?, s:b, s:o, s:o, s:o, s:i, s:i, s:I, s:o, s:o, s:o, s:o}", "name", a->name,
                           "state_dir", a->state_dir, "listen", a->listen_addr, "tls",
                           a->tls_server != NULL, "accel", accel, "qemu", qemu, "memory",
                           memory_json(), "vms", n_vms, "vms_running", n_running, "uptime_ms",
                           (json_int_t)(now_ms() - a->started_ms), "migration", migration, "peers", peers, "allowed_dirs",
                           allowed_dirs_json(a), "console", console));
}

/* One setting through the host.json parser, so that `host set` and the
 * file follow the same rules.  Only tmp's fields for key are meaningful. */
static int parse_one_setting(const char *key, json_t *v, struct host_settings *tmp, char *err, size_t errlen)
{
    json_t *wrap = json_pack("{s:O}", key, v);
    int rc = host_settings_from_json(wrap, tmp, err, errlen);
    json_decref(wrap);
    return rc;
}

/* An unset kind starts from its defaults, so that allowing one directory
 * keeps the others. */
static void materialize_defaults(struct agent *a, struct host_settings *next, enum dir_kind k)
{
    if (next->allowed[k].set)
        return;
    struct path_policy pol;
    char err[512];
    paths_policy_init(&pol, next, a->state_dir);
    next->allowed[k] = (struct allowed_dirs){.set = true};
    for (size_t i = 0; i < pol.n[k]; i++)
        if (settings_allow_dir(next, k, pol.roots[k][i], err, sizeof err) < 0)
            log_warn("default allowed directory skipped: %s", err);
}

/* One "KIND=DIR" of --allow-dir (DIR must exist in its canonical
 * spelling: the policy compares canonical paths) or --disallow-dir. */
static int change_allowed_dir(struct agent *a, struct host_settings *next, const char *spec, bool allow, char *err,
                              size_t errlen)
{
    const char *eq = spec ? strchr(spec, '=') : NULL;
    char kind[16], canon[PATH_MAX];
    enum dir_kind k;
    if (!eq || (size_t)(eq - spec) >= sizeof kind) {
        snprintf(err, errlen, "%s: expected KIND=DIR (KIND: images, kernels, storage or state), got \"%s\"",
                 allow ? "allow_dir" : "disallow_dir", spec ? spec : "?");
        return -1;
    }
    snprintf(kind, sizeof kind, "%.*s", (int)(eq - spec), spec);
    if (dir_kind_parse(kind, &k) < 0) {
        snprintf(err, errlen, "%s: unknown kind \"%s\" (images, kernels, storage or state)",
                 allow ? "allow_dir" : "disallow_dir", kind);
        return -1;
    }
    const char *dir = eq + 1;
    struct stat st;
    if (allow && (!realpath(dir, canon) || stat(canon, &st) < 0)) {
        snprintf(err, errlen, "allow_dir %s=%s: %s", kind, dir, strerror(errno));
        return -1;
    }
    if (allow && !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "allow_dir %s=%s: not a directory", kind, dir);
        return -1;
    }
    if (allow && strcmp(canon, dir)) {
        snprintf(err, errlen, "allow_dir %s=%s: not canonical: give %s=%s", kind, dir, kind, canon);
        return -1;
    }
    materialize_defaults(a, next, k);
    return allow ? settings_allow_dir(next, k, dir, err, errlen) : settings_disallow_dir(next, k, dir, err, errlen);
}

static int change_allowed_dirs(struct agent *a, struct host_settings *next, json_t *v, bool allow, char *err,
                               size_t errlen)
{
    size_t i;
    json_t *e;
    if (!json_is_array(v)) {
        snprintf(err, errlen, "%s: expected a list of KIND=DIR", allow ? "allow_dir" : "disallow_dir");
        return -1;
    }
    json_array_foreach(v, i, e) if (change_allowed_dir(a, next, json_string_value(e), allow, err, errlen) < 0)
        return -1;
    return 0;
}

static void host_set(struct api_req *r)
{
    struct agent *a = r->agent;
    struct host_settings next = a->settings;
    const char *key;
    json_t *v;
    /* Validate everything first: a bad value changes nothing. */
    json_object_foreach(r->params, key, v) {
        char err[PATH_MAX + 1024];
        if (!strcmp(key, "accel")) {
            if (!json_is_string(v) || accel_setting_parse(json_string_value(v), &next.accel) < 0) {
                api_failf(r, ERR_INVALID, NULL, "accel: expected auto, kvm or tcg");
                return;
            }
        } else if (!strcmp(key, "migration_incoming") || !strcmp(key, "migration_outgoing") ||
                   !strcmp(key, "allow_insecure_migration")) {
            if (!json_is_boolean(v)) {
                api_failf(r, ERR_INVALID, NULL, "%s: expected on or off", key);
                return;
            }
            *(!strcmp(key, "migration_incoming")   ? &next.migration_incoming
              : !strcmp(key, "migration_outgoing") ? &next.migration_outgoing
                                                   : &next.allow_insecure_migration) = json_is_true(v);
        } else if (!strcmp(key, "postcopy")) {
            const char *pv = json_string_value(v);
            if (!pv || (strcmp(pv, "allow") && strcmp(pv, "deny"))) {
                api_failf(r, ERR_INVALID, NULL, "postcopy: expected allow or deny");
                return;
            }
            next.allow_postcopy = !strcmp(pv, "allow");
        } else if (!strcmp(key, "max_live_migrations") || !strcmp(key, "max_storage_migrations")) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > MAX_SIMULTANEOUS_MIGRATIONS) {
                api_failf(r, ERR_INVALID, NULL, "%s: expected a whole number from 1 to %d", key,
                          MAX_SIMULTANEOUS_MIGRATIONS);
                return;
            }
            *(!strcmp(key, "max_live_migrations") ? &next.max_live_migrations : &next.max_storage_migrations) =
                (int)json_integer_value(v);
        } else if (!strcmp(key, "console") || !strcmp(key, "console_port")) {
            struct host_settings tmp;
            if (parse_one_setting(key, v, &tmp, err, sizeof err) < 0) {
                api_failf(r, ERR_INVALID, NULL, "%s", err);
                return;
            }
            if (!strcmp(key, "console"))
                next.console = tmp.console;
            else
                next.console_port = tmp.console_port;
        } else if (!strcmp(key, "allow_delegation_from")) {
            struct host_settings tmp;
            if (parse_one_setting(key, v, &tmp, err, sizeof err) < 0) {
                api_failf(r, ERR_INVALID, NULL, "%s", err);
                return;
            }
            next.n_delegation_from = tmp.n_delegation_from;
            memcpy(next.delegation_from, tmp.delegation_from, sizeof next.delegation_from);
        } else if (!strcmp(key, "allow_dir") || !strcmp(key, "disallow_dir")) {
            if (change_allowed_dirs(a, &next, v, !strcmp(key, "allow_dir"), err, sizeof err) < 0) {
                api_failf(r, ERR_INVALID, NULL, "%s", err);
                return;
            }
        } else if (!strcmp(key, "migration_networks")) {
            struct host_settings tmp;
            if (parse_one_setting(key, v, &tmp, err, sizeof err) < 0) {
                api_failf(r, ERR_INVALID, NULL, "%s", err);
                return;
            }
            next.migration_any = tmp.migration_any;
            next.n_migration_networks = tmp.n_migration_networks;
            memcpy(next.migration_networks, tmp.migration_networks, sizeof next.migration_networks);
        } else {
            api_failf(r, ERR_INVALID, "`vmove host set --help` lists the settings",
                      "unknown host setting \"%s\"", key);
            return;
        }
    }
    struct host_settings prev = a->settings;
    a->settings = next;
    char err[512];
    if (agent_save_settings(a, err, sizeof err) < 0) {
        a->settings = prev;
        api_failf(r, ERR_INTERNAL, NULL, "%s", err);
        return;
    }
    agent_update_accel(a);
    limits_kick(a);        /* a raised limit takes effect at once */
    host_show(r);
}

static void host_events(struct api_req *r)
{
    long long limit;
    if (api_param_int(r, "limit", 50, &limit) < 0 || api_limit_check(r, limit) < 0)
        return;
    /* A mistyped "vm" is answered by api_param_str, which frees r (and
     * params): whether it was given is decided before. */
    json_t *v = json_object_get(r->params, "vm");
    bool given = v && !json_is_null(v);
    const char *vm = api_param_str(r, "vm", false);
    if (!vm && given)
        return;
    api_reply(r, json_pack("{s:o}", "events", journal_events(r->agent->journal, vm, (int)limit)));
}

const struct api_method api_host_methods[] = {
    {"host.show", host_show, RIGHT_VM_READ, 0},
    {"host.set", host_set, RIGHT_HOST_ADMIN, 0},
    {"host.events", host_events, RIGHT_VM_READ, 0},
    {NULL, NULL, 0, 0},
};

/* ---- peers ------------------------------------------------------------ */

static void save_and_reply(struct api_req *r, struct host_settings *next)
{
    struct agent *a = r->agent;
    struct host_settings prev = a->settings;
    a->settings = *next;
    char err[512];
    if (agent_save_settings(a, err, sizeof err) < 0) {
        a->settings = prev;
        api_failf(r, ERR_INTERNAL, NULL, "%s", err);
        return;
    }
    json_t *s = host_settings_to_json(&a->settings);
    api_reply(r, json_pack("{s:O}", "peers", json_object_get(s, "peers")));
    json_decref(s);
}

/* name and addr as given, checked; -1 (answered) if not. */
static int peer_args(struct api_req *r, const char **name, const char **addr)
{
    *name = api_param_str(r, "name", true);
    *addr = *name ? api_param_str(r, "addr", true) : NULL;
    if (!*addr)
        return -1;
    char ip[64];
    const char *colon = strrchr(*addr, ':');
    struct in_addr tmp;
    snprintf(ip, sizeof ip, "%.*s", colon ? (int)(colon - *addr) : 0, *addr);
    if (!valid_name(*name) || !colon || atoi(colon + 1) <= 0 || atoi(colon + 1) > 65535 ||
        inet_pton(AF_INET, ip, &tmp) != 1 || strlen(*addr) >= sizeof r->agent->settings.peers[0].addr) {
        api_failf(r, ERR_INVALID, NULL, "expected: peer add HOST IPV4:PORT (got %s %s)", *name, *addr);
        return -1;
    }
    return 0;
}

/* Records the peer in the settings as they are now (a probe may have
 * taken seconds) and answers. */
static void peer_record(struct api_req *r, const char *name, const char *addr)
{
    struct host_settings next = r->agent->settings;
    int i;
    for (i = 0; i < next.n_peers && strcmp(next.peers[i].name, name); i++)
        ;
    if (i == next.n_peers) {
        if (next.n_peers == MAX_PEERS) {
            api_failf(r, ERR_INVALID, NULL, "too many peers (max %d)", MAX_PEERS);
            return;
        }
        next.n_peers++;
    }
    snprintf(next.peers[i].name, sizeof next.peers[i].name, "%s", name);
    snprintf(next.peers[i].addr, sizeof next.peers[i].addr, "%s", addr);
    save_and_reply(r, &next);
}

#define PEER_ADD_PROBE_MS 5000
#define PEER_LIST_PROBE_MS 3000

static void peer_add_probed(void *arg, bool ok, const char *reason, int64_t took_ms)
{
    struct api_req *r = arg;
    const char *name = json_string_value(json_object_get(r->params, "name"));
    const char *addr = json_string_value(json_object_get(r->params, "addr"));
    if (ok) {
        peer_record(r, name, addr);
        return;
    }
    api_failf(r, ERR_UNAVAILABLE,
              "check that vmoved runs there with a host certificate from this host's CA naming it, and the "
              "address; for a host that is not up yet: vmove peer add HOST ADDR:PORT --no-verify",
              "host %s at %s not verified, nothing recorded: %s", name, addr, reason);
}

/* The peer is recorded only once it has proved itself (the TLS handshake
 * with this host's identity, its certificate naming it), unless the caller
 * says it is not up yet ("verify": false). */
static void peer_add(struct api_req *r)
{
    const char *name, *addr;
    bool verify;
    if (peer_args(r, &name, &addr) < 0 || api_param_bool(r, "verify", true, &verify) < 0)
        return;
    if (!verify) {
        peer_record(r, name, addr);
        return;
    }
    peer_probe(r->agent, name, addr, PEER_ADD_PROBE_MS, peer_add_probed, r);
}

static void peer_remove(struct api_req *r)
{
    const char *name = api_param_str(r, "name", true);
    if (!name)
        return;
    struct host_settings next = r->agent->settings;
    int i;
    for (i = 0; i < next.n_peers && strcmp(next.peers[i].name, name); i++)
        ;
    if (i == next.n_peers) {
        api_failf(r, ERR_NOT_FOUND, NULL, "%s is not a peer of %s", name, r->agent->name);
        return;
    }
    next.peers[i] = next.peers[--next.n_peers];
    save_and_reply(r, &next);
}

/* peer.list with "probe": every peer probed at once; the answer waits
 * for the last (at most PEER_LIST_PROBE_MS), never the loop. */
struct peer_listing {
    struct api_req *r;
    json_t *status;          /* {NAME: {"reachable", "reason"?, "probe_ms"}} */
    int left;
};

struct peer_listing_one {
    struct peer_listing *l;
    char name[64];
};

/* The members of this host's cluster that are no configured peer: a move
 * to one resolves through the cluster (migrate_src_resolve_target), a peer
 * entry of the same name wins.  NULL outside a cluster. */
static json_t *cluster_only_peers(const struct agent *a, json_t *configured)
{
    json_t *m = cluster_member_peers((struct agent *)a);
    const char *name;
    json_t *addr;
    void *tmp;
    json_object_foreach_safe(m, tmp, name, addr)
        if (json_object_get(configured, name))
            json_object_del(m, name);
    return m;
}

/* {"peers", "cluster_peers"?, "cluster"?} (+ "status" when probed). */
static json_t *peer_list_doc(const struct agent *a)
{
    json_t *s = host_settings_to_json(&a->settings);
    json_t *peers = json_incref(json_object_get(s, "peers"));
    json_decref(s);
    json_t *doc = json_pack("{s:o}", "peers", peers);
    json_t *members = cluster_only_peers(a, peers);
    if (members) {
        json_object_set_new(doc, "cluster_peers", members);
        json_object_set_new(doc, "cluster", json_string(cluster_name(a)));
    }
    return doc;
}

static void peer_list_answer(struct peer_listing *l)
{
    json_t *doc = peer_list_doc(l->r->agent);
    json_object_set_new(doc, "status", l->status);
    api_reply(l->r, doc);
    free(l);
}

static void peer_list_probed(void *arg, bool ok, const char *reason, int64_t took_ms)
{
    struct peer_listing_one *one = arg;
    struct peer_listing *l = one->l;
    json_t *st = json_pack("{s:b, s:I}", "reachable", ok, "probe_ms", (json_int_t)took_ms);
    if (!ok)
        json_object_set_new(st, "reason", json_string(reason));
    json_object_set_new(l->status, one->name, st);
    free(one);
    if (--l->left == 0)
        peer_list_answer(l);
}

static void peer_list(struct api_req *r)
{
    bool probe;
    if (api_param_bool(r, "probe", false, &probe) < 0)
        return;
    const struct host_settings *hs = &r->agent->settings;
    json_t *doc = peer_list_doc(r->agent);
    json_t *members = json_object_get(doc, "cluster_peers");
    size_t total = (size_t)hs->n_peers + json_object_size(members);
    if (!probe || total == 0) {
        api_reply(r, doc);
        return;
    }
    struct peer_listing *l = xcalloc(1, sizeof *l);
    l->r = r;
    l->status = json_object();
    l->left = (int)total;
    /* The names and addresses are copied before the first probe: a probe
     * that fails at once still answers from the loop, never in here.  A
     * member is probed as exactly as a peer: its certificate must name it. */
    for (int i = 0; i < hs->n_peers; i++) {
        struct peer_listing_one *one = xcalloc(1, sizeof *one);
        one->l = l;
        snprintf(one->name, sizeof one->name, "%s", hs->peers[i].name);
        peer_probe(r->agent, hs->peers[i].name, hs->peers[i].addr, PEER_LIST_PROBE_MS, peer_list_probed, one);
    }
    const char *name;
    json_t *addr;
    json_object_foreach(members, name, addr) {
        struct peer_listing_one *one = xcalloc(1, sizeof *one);
        one->l = l;
        snprintf(one->name, sizeof one->name, "%s", name);
        peer_probe(r->agent, one->name, json_string_value(addr), PEER_LIST_PROBE_MS, peer_list_probed, one);
    }
    json_decref(doc);
}

const struct api_method api_peer_methods[] = {
    {"peer.add", peer_add, RIGHT_HOST_ADMIN, 0},
    {"peer.remove", peer_remove, RIGHT_HOST_ADMIN, 0},
    {"peer.list", peer_list, RIGHT_VM_READ, 0},
    {NULL, NULL, 0, 0},
};
