/* The pre-flight check of a live migration, source side (check.h): the
 * checks migrate_submit, the reservation and the prepare step make here,
 * then the destination's own (migrate.check, dst-check.c), then what only
 * the two answers together tell (the route, the destination's certificate). */
#include "migrate/check.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "block/image.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/acl.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "core/limits.h"
#include "core/paths.h"
#include "core/peer.h"
#include "migrate/migrate_net.h"
#include "migrate/src.h"
#include "migrate/tuning.h"
#include "vm/compat.h"
#include "vm/vm.h"

#define ADD compat_preflight_add
#define CHECK_TIMEOUT_MS 10000

struct check_run {
    struct agent *agent;
    json_t *items;
    char *dst;                 /* as the user named it */
    char *addr;
    bool quick;
    struct peer_conn *peer;
    migrate_check_fn done;
    void *arg;
    /* shared-nothing: the request waits for qemu-img info of each disk */
    json_t *request, *ids, *paths, *sizes, *alloc;
    char *with_storage, *peer_name;
    size_t next;
};

static void check_run_end(struct check_run *c)
{
    json_t *items = c->items;
    migrate_check_fn done = c->done;
    void *arg = c->arg;
    peer_close(c->peer);
    free(c->dst);
    free(c->addr);
    json_decref(c->request), json_decref(c->ids), json_decref(c->paths);
    json_decref(c->sizes), json_decref(c->alloc);
    free(c->with_storage), free(c->peer_name);
    free(c);
    done(arg, items);
}

/* The VM: there, running, not busy, movable as asked. */
static bool check_vm(struct agent *a, const char *name, const struct migrate_tuning *t, json_t *items)
{
    struct vm *vm = vm_find(a, name);
    if (!vm) {
        ADD(items, "vm", COMPAT_PROBLEM, a->name, NULL, "`vmove vm list` shows the VMs here", "no VM named \"%s\" on "
            "host %s", name, a->name);
        return false;
    }
    struct job *busy = job_active_for_vm(a, name);
    if (vm->state != VM_RUNNING && vm->state != VM_PAUSED) {
        char fix[160];
        snprintf(fix, sizeof fix, "vmove vm start %s", name);
        ADD(items, "vm", COMPAT_PROBLEM, a->name, vm->state == VM_STOPPED || vm->state == VM_CRASHED ? fix : NULL,
            NULL, "VM %s is %s: a live migration moves a running VM", name, vm_state_name(vm->state));
    } else if (busy)
        ADD(items, "vm", COMPAT_PROBLEM, a->name, NULL, "wait for it, or `vmove jobs cancel ID`", "VM %s is busy with "
            "job %lld (%s)", name, (long long)busy->id, busy->ops->kind);
    else if (t->with_storage[0] && vm_config_checkpoint_count(&vm->cfg))
        ADD(items, "vm", COMPAT_PROBLEM, a->name, NULL, "move it without --with-storage, or delete its checkpoints "
            "(`vmove checkpoint delete`)", "VM %s has %zu checkpoint(s): a shared-nothing move would flatten them",
            name, vm_config_checkpoint_count(&vm->cfg));
    else
        ADD(items, "vm", COMPAT_OK, a->name, NULL, NULL, "VM %s is %s on %s", name, vm_state_name(vm->state), a->name);
    return true;
}

/* This host's side: switches, identity, rights, slots. */
static void check_source(struct agent *a, const struct migrate_check_req *q, const struct migrate_tuning *t,
                         json_t *items)
{
    if (a->settings.migration_outgoing)
        ADD(items, "migration.outgoing", COMPAT_OK, a->name, NULL, NULL, "outgoing migration is on on %s", a->name);
    else
        ADD(items, "migration.outgoing", COMPAT_PROBLEM, a->name, "vmove host set --migration-outgoing on", NULL,
            "outgoing migration is off on %s", a->name);
    if (t->converge == CONVERGE_POSTCOPY && !a->settings.allow_postcopy)
        ADD(items, "postcopy", COMPAT_PROBLEM, a->name, "vmove host set --postcopy allow", NULL,
            "post-copy is not allowed on %s", a->name);
    if (!a->tls_client)
        ADD(items, "tls", COMPAT_PROBLEM, a->name, NULL, "start vmoved with --listen ADDR:PORT and --tls-dir DIR",
            "host %s has no TLS identity to talk to other hosts", a->name);
    if (q->user)
        ADD(items, "rights.user", COMPAT_OK, a->name, NULL, NULL, "%s has migrate.out on %s", q->user, a->name);
    else
        ADD(items, "rights.user", COMPAT_OK, a->name, NULL, NULL, "root on %s's local socket moves as the host, with "
            "every right there", a->name);
    int used = limits_in_use(a, SLOT_LIVE), max = limits_max(a, SLOT_LIVE);
    if (used >= max)
        ADD(items, "limits", COMPAT_WARNING, a->name, NULL, "it starts when a slot frees", "%s runs %d of its %d live "
            "migrations: the move will wait in its queue", a->name, used, max);
}

/* A quick migration writes the guest's memory into --state-dir (or next to
 * the first disk): the checks src-quick.c and vm.move make, plus whether it
 * is writable with room for the memory, which the save would find out only
 * after pausing the guest. */
static void check_state_dir(struct agent *a, const struct vm *vm, const struct migrate_tuning *t, json_t *items)
{
    char *copy = NULL;
    const char *dir = t->state_dir;
    bool given = dir[0] != 0;
    if (!given) {
        if (!vm->cfg.n_disks) {
            ADD(items, "state.dir", COMPAT_PROBLEM, a->name, NULL, "give a shared directory with --state-dir DIR",
                "VM %s has no disk on shared storage to save its state next to", vm->name);
            return;
        }
        copy = xstrdup(vm->cfg.disks[0].path);
        dir = dirname(copy);
    }
    struct path_policy pol;
    struct path_info pi;
    char why[PATH_MAX + 512], fix[PATH_MAX + 64];
    paths_policy_init(&pol, &a->settings, a->state_dir);
    if (strchr(dir, ','))
        ADD(items, "state.dir", COMPAT_PROBLEM, a->name, NULL, "give another directory with --state-dir DIR",
            "the state directory %s has a comma in its path, which QEMU cannot take", dir);
    else if (given && paths_check_dir(&pol, DIR_STATE, dir, &pi, why, sizeof why) < 0) {
        snprintf(fix, sizeof fix, "vmove host set --allow-dir state=%s", dir);
        bool policy = strstr(why, "--allow-dir") != NULL;
        ADD(items, "state.dir", COMPAT_PROBLEM, a->name, policy ? fix : NULL, policy ? NULL : "create it, or give "
            "another directory with --state-dir DIR", "--state-dir %s on %s: %s", dir, a->name, why);
    } else if (access(dir, W_OK | X_OK) < 0)
        ADD(items, "state.dir", COMPAT_PROBLEM, a->name, NULL, "give a writable shared directory with --state-dir DIR",
            "the state directory %s on %s is not writable: %s", dir, a->name, strerror(errno));
    else {
        struct statvfs vfs;
        uint64_t avail = statvfs(dir, &vfs) == 0 ? (uint64_t)vfs.f_bavail * vfs.f_frsize : 0;
        uint64_t need = vm->cfg.memory_mib << 20;   /* at most: the guest's RAM, written at fixed offsets */
        char n[32], f[32];
        format_size(need, n, sizeof n);
        format_size(avail, f, sizeof f);
        if (need > avail)
            ADD(items, "state.space", COMPAT_PROBLEM, a->name, NULL, "free space there, or give another directory "
                "with --state-dir DIR", "the state directory %s on %s has %s free; the memory of %s needs up to %s",
                dir, a->name, f, vm->name, n);
        else
            ADD(items, "state.dir", COMPAT_OK, a->name, NULL, NULL, "the state directory %s on %s is writable with "
                "%s free for up to %s of memory", dir, a->name, f, n);
    }
    free(copy);
}

static json_t *networks_of(const struct host_settings *s)
{
    json_t *nets = json_array();
    for (int i = 0; i < s->n_migration_networks; i++) {
        char c[32];
        cidr_format(&s->migration_networks[i], c, sizeof c);
        json_array_append_new(nets, json_string(c));
    }
    return nets;
}

/* What the destination is asked: the prepare request it would get. */
static json_t *dst_request(struct agent *a, const struct vm *vm, const struct migrate_check_req *q,
                           const struct migrate_tuning *t, const char *addr)
{
    const char *colon = strrchr(addr, ':');
    char via[64];
    snprintf(via, sizeof via, "%.*s", colon ? (int)(colon - addr) : 0, addr);
    return json_pack("{s:s, s:o, s:o, s:s, s:s, s:b, s:n, s:s*, s:o, s:s*, s:O*}", "vm", vm->name, "config",
                     vm_config_to_json(&vm->cfg), "tuning", tuning_to_json(t), "accel", accel_kind_name(a->accel.kind),
                     "via", via, "quick", t->quick, "storage", "postcopy",
                     t->converge == CONVERGE_POSTCOPY ? "required" : NULL, "networks", networks_of(&a->settings),
                     "qemu_version", a->caps.qemu_version, "check_token", q->check_token);
}

/* This host's side of the route to the address the destination would
 * listen on; the fix adds the network of the address this host would use. */
static void check_route(struct agent *a, const char *dst, const char *listen_ip, json_t *items)
{
    char src_ip[64], nets[512];
    settings_migration_networks_str(&a->settings, nets, sizeof nets);
    if (!listen_ip) {
        if (!a->settings.n_migration_networks && !a->settings.migration_any)
            ADD(items, "migration.network", COMPAT_PROBLEM, a->name, NULL, "allow the network both hosts' migration "
                "addresses are on: vmove host set --migration-network CIDR", "host %s has no migration network", a->name);
        else
            ADD(items, "migration.network", COMPAT_OK, a->name, NULL, NULL, "%s's migration networks: %s (the route "
                "is checked once %s can listen)", a->name, nets, dst);
        return;
    }
    if (migrate_net_route_source(listen_ip, src_ip, sizeof src_ip) < 0) {
        ADD(items, "migration.network", COMPAT_PROBLEM, a->name, NULL, "fix the routes between the migration networks",
            "no route from %s to %s's migration address %s", a->name, dst, listen_ip);
        return;
    }
    if (settings_migration_allowed(&a->settings, migrate_net_ip(src_ip))) {
        ADD(items, "migration.network", COMPAT_OK, a->name, NULL, NULL, "the migration goes %s -> %s, inside %s's "
            "networks (%s)", src_ip, listen_ip, a->name, nets);
        return;
    }
    char cidr[32], fix[1024];
    int n = snprintf(fix, sizeof fix, "vmove host set");
    for (int i = 0; i < a->settings.n_migration_networks && (size_t)n < sizeof fix; i++) {
        char c[32];
        cidr_format(&a->settings.migration_networks[i], c, sizeof c);
        n += snprintf(fix + n, sizeof fix - (size_t)n, " --migration-network %s", c);
    }
    bool known = migrate_net_iface_cidr(src_ip, cidr, sizeof cidr) == 0;
    if (known && (size_t)n < sizeof fix)
        snprintf(fix + n, sizeof fix - (size_t)n, " --migration-network %s", cidr);
    ADD(items, "migration.network", COMPAT_PROBLEM, a->name, known ? fix : NULL, known ? NULL : "allow the network "
        "with `vmove host set --migration-network CIDR`, or fix the routes", "the migration would go %s -> %s, outside "
        "%s's migration networks (%s)", src_ip, listen_ip, a->name, nets);
}

static void on_dst_checked(void *arg, json_t *result, json_t *error)
{
    struct check_run *c = arg;
    struct agent *a = c->agent;
    if (error) {
        const char *code = json_string_value(json_object_get(error, "code"));
        const char *msg = json_string_value(json_object_get(error, "message"));
        bool old = code && !strcmp(code, ERR_UNKNOWN_CMD);
        ADD(c->items, "peer", COMPAT_PROBLEM, c->dst, NULL, old ? "upgrade vmove there" :
            json_string_value(json_object_get(error, "hint")), "%s%s", old ? "host %s runs a vmoved without "
            "migrate.check: " : "", old ? c->dst : msg ? msg : "no answer");
        ADD(c->items, "destination", COMPAT_UNCHECKED, c->dst, NULL, "fix the peer first", "%s's side of the move: "
            "not checked, it did not answer", c->dst);
        if (!c->quick)
            check_route(a, c->dst, NULL, c->items);
        check_run_end(c);
        return;
    }
    const char *verified = peer_verified_name(c->peer), *host = json_string_value(json_object_get(result, "host"));
    if (!verified || !host || strcmp(verified, host))
        ADD(c->items, "peer", COMPAT_PROBLEM, c->dst, NULL, "check the peer's address: vmove peer list", "the "
            "certificate at %s is host %s's, but it calls itself %s", c->addr, verified ? verified : "?",
            host ? host : "?");
    else
        ADD(c->items, "peer", COMPAT_OK, c->dst, NULL, NULL, "%s answers at %s; its certificate names %s", c->dst,
            c->addr, verified);
    char p[96], fix[160];
    snprintf(p, sizeof p, "host:%s", verified ? verified : "?");
    snprintf(fix, sizeof fix, "vmove acl grant %s migrate.out", p);
    if (verified && acl_allows(a, p, RIGHT_MIGRATE_OUT))
        ADD(c->items, "rights.host", COMPAT_OK, a->name, NULL, NULL, "%s may receive VMs from %s (migrate.out)", p,
            a->name);
    else
        ADD(c->items, "rights.host", COMPAT_PROBLEM, a->name, verified ? fix : NULL, NULL, "%s lacks migrate.out on "
            "%s: %s does not send VMs to it", p, a->name, a->name);
    if (!c->quick)
        check_route(a, host ? host : c->dst, json_string_value(json_object_get(result, "listen_ip")), c->items);
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(result, "items"), i, it) if (json_is_object(it))
        json_array_append(c->items, it);
    check_run_end(c);
}

static void ask_destination(struct check_run *c)
{
    json_t *req = c->request;
    c->request = NULL;
    /* Connected only now: a slow qemu-img must not idle the connection out. */
    c->peer = peer_connect(c->agent, c->peer_name, c->addr, NULL, NULL);
    peer_call(c->peer, "migrate.check", req, CHECK_TIMEOUT_MS, on_dst_checked, c);
}

static void probe_next_disk(struct check_run *c);

static void on_disk_info(void *arg, const struct image_info *info, const char *err)
{
    struct check_run *c = arg;
    const char *id = json_string_value(json_array_get(c->ids, c->next));
    json_object_set_new(c->sizes, id, json_integer(info ? (json_int_t)info->layers[0].virtual_size : 0));
    json_object_set_new(c->alloc, id, json_integer(info ? (json_int_t)image_info_chain_actual(info) : 0));
    c->next++;
    probe_next_disk(c);
}

/* Shared-nothing: where the copies go, with each disk's virtual size and
 * the bytes it holds (what the destination needs free), learnt by qemu-img
 * info --backing-chain in children the loop does not wait for. */
static void probe_next_disk(struct check_run *c)
{
    if (c->next < json_array_size(c->paths)) {
        image_info_chain_async(c->agent->base, json_string_value(json_array_get(c->paths, c->next)), NULL, true,
                               on_disk_info, c);
        return;
    }
    json_object_set_new(c->request, "storage", json_pack("{s:s, s:O, s:O}", "dir", c->with_storage, "sizes", c->sizes,
                                                         "alloc", c->alloc));
    ask_destination(c);
}

void migrate_check(struct agent *a, const struct migrate_check_req *q, migrate_check_fn done, void *arg)
{
    struct check_run *c = xcalloc(1, sizeof *c);
    c->agent = a;
    c->items = json_array();
    c->dst = xstrdup(q->to);
    c->done = done;
    c->arg = arg;
    struct migrate_tuning t;
    char msg[512];
    const char *name = NULL, *addr = NULL;
    json_t *err = NULL;
    if (tuning_from_json(q->tuning, &t, msg, sizeof msg) < 0) {
        ADD(c->items, "tuning", COMPAT_PROBLEM, a->name, NULL, NULL, "%s", msg);
        check_run_end(c);
        return;
    }
    c->quick = t.quick;
    bool vm_here = check_vm(a, q->vm, &t, c->items);
    check_source(a, q, &t, c->items);
    if (vm_here && t.quick)
        check_state_dir(a, vm_find(a, q->vm), &t, c->items);
    if ((err = migrate_src_resolve_target(a, q->to, &name, &addr))) {
        ADD(c->items, "peer", COMPAT_PROBLEM, a->name, NULL, "add it: vmove peer add HOST ADDR:PORT (or pair the "
            "hosts: vmove host pair)", "%s", json_string_value(json_object_get(err, "message")));
        json_decref(err);
    } else if (name && !strcmp(name, a->name))
        ADD(c->items, "peer", COMPAT_PROBLEM, a->name, NULL, "name another host", "VM %s is already on host %s", q->vm,
            a->name);
    if (err || (name && !strcmp(name, a->name)) || !vm_here || !a->tls_client) {
        ADD(c->items, "destination", COMPAT_UNCHECKED, q->to, NULL, "fix the problems above first", "%s's side of "
            "the move: not checked", q->to);
        check_run_end(c);
        return;
    }
    c->addr = xstrdup(addr);
    c->peer_name = name ? xstrdup(name) : NULL;
    const struct vm *vm = vm_find(a, q->vm);
    c->request = dst_request(a, vm, q, &t, addr);
    if (!t.with_storage[0]) {
        ask_destination(c);
        return;
    }
    c->with_storage = xstrdup(t.with_storage);
    c->ids = json_array(), c->paths = json_array(), c->sizes = json_object(), c->alloc = json_object();
    for (size_t i = 0; i < vm->cfg.n_disks; i++) {
        json_array_append_new(c->ids, json_string(vm->cfg.disks[i].id));
        json_array_append_new(c->paths, json_string(vm->cfg.disks[i].path));
    }
    probe_next_disk(c);
}
