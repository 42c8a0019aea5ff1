/* Owner records, from this host's side (the "local resource manager").
 *
 * owners/UUID says which host runs an HA VM, with which lease, in which
 * state (running, starting, stopped, pending, start-failed, error).  Every
 * write compares the record's mod_revision with the one the writer read,
 * so two writers never both win.  This host reads the records every
 * poll_ms and:
 *   - starts the VMs the coordinator assigned to it (state starting, its
 *     host and current lease), then marks them running;
 *   - reports its own VMs that stopped (stopped) or died (pending: the
 *     coordinator places them again);
 *   - kills a local copy of a VM that the record gives to another host or to
 *     an old lease of this one (the shims have normally done so already).
 * A VM is HA when its vm.json says flags.ha and the host is a member. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "cluster/cluster.h"
#include "cluster/cluster_internal.h"
#include "cluster/etcd.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "conf/vm_config.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "qemu/qemu_proc.h"
#include "vm/vm.h"

#define CALL_MS 1500
#define MEMBERS_EVERY_NS (2500ull * 1000 * 1000)   /* the members' addresses: docs/CLUSTER.md */

struct ha_start {
    struct ha_start *next;
    struct cluster *c;
    char *uuid, *name;
    int64_t assign_rev, gen;
    json_t *event;            /* the failover's event record, if any */
    char *event_key;
    uint64_t qemu_started_ms;
};

bool owner_vm_is_ha(const struct vm *vm) { return vm->cfg.ha && vm->agent->cluster; }

bool owner_vm_fenced(const struct vm *vm) { return vm_config_fenced(&vm->cfg) && vm->agent->cluster; }

static void owner_schedule(struct event *ev, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

static void owner_ignore_answer(void *arg, json_t *reply, const char *err)
{
    (void)arg;
    (void)reply;
    if (err)
        log_debug("cluster: %s", err);
}

/* ---- fencing the local guests ---- */

static void paused_done(void *arg, json_t *result, json_t *error)
{
    char *name = arg;
    if (error)
        log_warn("cluster fence: cannot pause %s: %s", name,
                 json_string_value(json_object_get(error, "message")));
    json_decref(result);
    json_decref(error);
    free(name);
}

void owner_pause_ha_guests(struct cluster *c)
{
    VM_FOREACH(c->agent, vm) {
        if (!owner_vm_fenced(vm) || vm->state != VM_RUNNING)
            continue;
        char *name = xstrdup(vm->name);
        json_t *err = vm_pause(vm, paused_done, name);
        if (err) {        /* done is never called: the name is ours again */
            log_warn("cluster fence: cannot pause %s: %s", vm->name,
                     json_string_value(json_object_get(err, "message")));
            json_decref(err);
            free(name);
            continue;
        }
        json_array_append_new(c->paused_by_fence, json_string(vm->name));
    }
}

void owner_resume_ha_guests(struct cluster *c)
{
    size_t i;
    json_t *name;
    json_array_foreach(c->paused_by_fence, i, name) {
        struct vm *vm = vm_find(c->agent, json_string_value(name));
        if (!vm || vm->state != VM_PAUSED || !qemu_pid_alive(vm))
            continue;
        char *vname = xstrdup(vm->name);
        json_t *err = vm_resume(vm, paused_done, vname);
        if (err) {        /* done is never called: the name is ours again */
            log_warn("cluster fence: cannot resume %s: %s", vm->name,
                     json_string_value(json_object_get(err, "message")));
            json_decref(err);
            free(vname);
        }
    }
    json_array_clear(c->paused_by_fence);
}

void owner_kill_ha_guests(struct cluster *c, const char *why)
{
    VM_FOREACH(c->agent, vm)
        if (owner_vm_fenced(vm) && qemu_pid_alive(vm)) {
            log_warn("cluster fence: killing HA guest %s (%s)", vm->name, why);
            vm_kill_qemu(vm);
        }
    json_array_clear(c->paused_by_fence);
}

/* ---- writing a record ---- */

/* Put owners/UUID = value if its mod_revision is still rev (+ extra ops). */
static void owner_write(struct cluster *c, const char *uuid, int64_t rev, json_t *value,
                        json_t *extra_ops, etcd_done_fn done, void *arg)
{
    char *k = cluster_key(c, "owners/%s", uuid);
    char *text = json_dumps(value, JSON_COMPACT);
    json_decref(value);
    json_t *ops = extra_ops ? extra_ops : json_array();
    json_array_insert_new(ops, 0, etcd_op_put(k, text, 0));
    json_t *cmp = json_pack("[o]", etcd_cmp(k, "MOD", "EQUAL", rev));
    etcd_post(c->kv_etcd, "/v3/kv/txn", etcd_txn_body(cmp, ops, NULL), CALL_MS,
              done ? done : owner_ignore_answer, arg);
    free(text);
    free(k);
}

static json_t *parse_value(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    return json_is_object(j) ? j : (json_decref(j), NULL);
}

/* ---- starting a VM assigned here ---- */

static struct ha_start *find_start(struct cluster *c, const char *uuid)
{
    for (struct ha_start *s = c->starts; s; s = s->next)
        if (!strcmp(s->uuid, uuid))
            return s;
    return NULL;
}

static void start_free(struct ha_start *s)
{
    struct ha_start **pp = s->c ? &s->c->starts : NULL;
    while (pp && *pp && *pp != s)
        pp = &(*pp)->next;
    if (pp && *pp)
        *pp = s->next;
    free(s->uuid);
    free(s->name);
    free(s->event_key);
    json_decref(s->event);
    free(s);
}

static void start_report(struct ha_start *s, const char *state, const char *reason)
{
    struct cluster *c = s->c;
    json_t *v = cluster_owner_value(s->name, c->agent->name, c->lease, state, s->gen, reason);
    json_t *ops = json_array();
    if (s->event && s->event_key) {
        json_object_set_new(s->event, "qemu_started_ms", json_integer((json_int_t)s->qemu_started_ms));
        json_object_set_new(s->event, !strcmp(state, "running") ? "running_ms" : "failed_ms",
                            json_integer((json_int_t)wall_ms()));
        json_object_set_new(s->event, "result", json_string(state));
        if (reason)
            json_object_set_new(s->event, "result_reason", json_string(reason));
        char *text = json_dumps(s->event, JSON_COMPACT);
        json_array_append_new(ops, etcd_op_put(s->event_key, text, 0));
        free(text);
    }
    log_info("cluster %s: HA VM %s %s here%s%s", c->name, s->name, state, reason ? ": " : "",
             reason ? reason : "");
    owner_write(c, s->uuid, s->assign_rev, v, ops, NULL, NULL);
    start_free(s);
}

static void start_ended(void *arg, const struct job *j)
{
    struct ha_start *s = arg;
    if (!s->c) {              /* the cluster went (left, or vmoved stops) */
        start_free(s);
        return;
    }
    if (j->state == JOB_SUCCEEDED) {
        start_report(s, "running", NULL);
        return;
    }
    const char *msg = json_string_value(json_object_get(j->error, "message"));
    start_report(s, "start-failed", msg ? msg : "the start failed");
}

static void start_update(void *arg, const struct job *j)
{
    struct ha_start *s = arg;
    if (!s->qemu_started_ms && j->phase && strcmp(j->phase, "launching"))
        s->qemu_started_ms = wall_ms();
}

static void start_dropped(void *arg, json_t *error)
{
    json_decref(error);
    start_free(arg);      /* vmoved stops: the record stays "starting" for the next run */
}

static const struct job_subscriber_ops start_watch = {start_update, start_ended, start_dropped};
static const struct job_ops ha_start_ops = {"ha.start", NULL};

/* The local VM for an assigned record, defined or refreshed from the spec. */
static struct vm *local_vm_from_spec(struct cluster *c, const char *name, const char *uuid,
                                     json_t *spec, char *err, size_t errlen)
{
    struct vm_config cfg = {0};
    json_t *jc = json_object_get(spec, "config");
    if (!jc || vm_config_from_json(jc, &cfg, err, errlen) < 0 || strcmp(cfg.uuid, uuid) ||
        strcmp(cfg.name, name)) {
        if (jc && !err[0])
            snprintf(err, errlen, "the spec of %s names another VM", name);
        vm_config_free(&cfg);
        return NULL;
    }
    struct vm *vm = vm_find(c->agent, name);
    if (vm && strcmp(vm->cfg.uuid, uuid)) {
        snprintf(err, errlen, "a different VM called %s exists on this host", name);
        vm_config_free(&cfg);
        return NULL;
    }
    if (!vm) {
        json_t *e = NULL;
        vm = vm_define_in_state(c->agent, &cfg, &e);
        if (!vm) {
            snprintf(err, errlen, "%s", json_string_value(json_object_get(e, "message")));
            json_decref(e);
            vm_config_free(&cfg);
            return NULL;
        }
        return vm;
    }
    /* The spec is authoritative for HA VMs: this copy may be older. */
    vm_config_free(&vm->cfg);
    vm->cfg = cfg;
    vm_save_config(vm, err, errlen);
    return vm;
}

struct spec_read {
    struct cluster *c;
    char *uuid, *name;
    int64_t rev, gen;
};

static void spec_answered(void *arg, json_t *reply, const char *err)
{
    struct spec_read *r = arg;
    struct cluster *c = r->c;
    char msg[512] = "";
    struct etcd_kv *kvs = NULL;
    size_t n = 0;
    if (!reply) {
        log_warn("cluster %s: cannot read the spec of %s: %s", c->name, r->name, err);
        goto out;
    }
    json_t *resp = json_object_get(json_array_get(json_object_get(reply, "responses"), 1),
                                   "response_range");
    n = etcd_kvs(json_object_get(json_array_get(json_object_get(reply, "responses"), 0),
                                 "response_range"), &kvs);
    json_t *spec = n ? parse_value(kvs[0].value) : NULL;
    struct etcd_kv *ev;
    size_t nev = etcd_kvs(resp, &ev);
    struct ha_start *s = xcalloc(1, sizeof *s);
    *s = (struct ha_start){.c = c, .uuid = xstrdup(r->uuid), .name = xstrdup(r->name),
                           .assign_rev = r->rev, .gen = r->gen};
    if (nev) {
        s->event = parse_value(ev[0].value);
        s->event_key = xstrdup(ev[0].key);
    }
    etcd_kvs_free(ev, nev);
    s->next = c->starts;
    c->starts = s;
    struct vm *vm = spec ? local_vm_from_spec(c, r->name, r->uuid, spec, msg, sizeof msg) : NULL;
    json_decref(spec);
    if (!vm) {
        start_report(s, "start-failed", msg[0] ? msg : "the cluster has no spec for this VM");
        goto out;
    }
    if (job_active_for_vm(c->agent, vm->name) || (vm->state != VM_STOPPED && vm->state != VM_CRASHED)) {
        if (vm->state == VM_RUNNING && qemu_pid_alive(vm)) {
            /* Already here (a migration that committed): nothing to start. */
            start_report(s, "running", NULL);
        } else {
            start_free(s);    /* busy (an incoming migration ending): next round */
        }
        goto out;
    }
    log_info("cluster %s: starting HA VM %s (assigned at revision %lld)", c->name, vm->name,
             (long long)r->rev);
    struct job *job = job_create(c->agent, &ha_start_ops, vm->name, NULL);
    job_subscribe(job, &start_watch, s);
    vm_start(vm, job);
out:
    etcd_kvs_free(kvs, n);
    free(r->uuid);
    free(r->name);
    free(r);
}

static void begin_start(struct cluster *c, const char *uuid, const char *name, int64_t rev,
                        int64_t gen)
{
    if (find_start(c, uuid))
        return;
    struct spec_read *r = xcalloc(1, sizeof *r);
    *r = (struct spec_read){c, xstrdup(uuid), xstrdup(name), rev, gen};
    char *sk = cluster_key(c, "specs/%s", uuid);
    char *ek = cluster_key(c, "events/%s/%010lld", uuid, (long long)gen);
    json_t *ops = json_pack("[o, o]", etcd_op_range(sk, false), etcd_op_range(ek, false));
    etcd_post(c->kv_etcd, "/v3/kv/txn", etcd_txn_body(json_array(), ops, NULL), CALL_MS,
              spec_answered, r);
    free(sk);
    free(ek);
}

/* ---- the round ---- */

static bool vm_busy_moving(const struct vm *vm)
{
    return vm->state == VM_MIGRATING || vm->state == VM_INCOMING || vm->migration ||
           vm->storage_move;
}

/* An isolation-keep VM's record still names this host, with a lease it
 * lost (state running, or isolated once the coordinator saw the lease
 * gone).  Nobody else may have started it meanwhile: the coordinator never
 * restarts such a VM elsewhere, and a start by hand elsewhere is refused
 * until `vm ha-clear`, which moves the record to pending.  So if it still
 * runs here, the record takes this host's new lease again, and if it does
 * not, it is placed like any VM that died on its host.  The write compares
 * the record's revision: if the coordinator or an admin changed it since
 * this read, it fails and the next round re-reads. */
static void readopt(struct cluster *c, const struct etcd_kv *kv, json_t *o, struct vm *vm, bool here)
{
    const char *uuid = strrchr(kv->key, '/') + 1;
    int64_t gen = etcd_int(json_object_get(o, "gen")) + 1;
    if (vm_busy_moving(vm) || job_active_for_vm(c->agent, vm->name) || find_start(c, uuid))
        return;
    const char *state = here ? "running" : vm->state == VM_STOPPED ? "stopped" : "pending";
    const char *why = here ? "re-adopted: it kept running here (isolation keep) while this host's lease was lost"
                      : vm->state == VM_STOPPED ? "stopped on its host while isolated"
                                                : "its QEMU was gone when its isolated host returned";
    /* Its own event, after the coordinator's "isolated" one (if it came
     * first): `cluster events` tells the whole story. */
    char *ek = cluster_key(c, "events/%s/%010lld", uuid, (long long)gen);
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:I, s:s}", "vm", vm->name, "uuid", uuid,
                           "from", c->agent->name, "to", c->agent->name, "gen", (json_int_t)gen, "decision",
                           here ? "re-adopted" : state, "reason", why, "result", here ? "running" : state,
                           "decided_ms", (json_int_t)wall_ms(), "coordinator", c->agent->name);
    json_object_set_new(ev, "lease", json_sprintf("%llx", (unsigned long long)c->lease));
    char *text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    json_t *ops = json_pack("[o]", etcd_op_put(ek, text, 0));
    free(text);
    free(ek);
    log_info("cluster %s: HA VM %s: %s (lease %llx)", c->name, vm->name, why, (unsigned long long)c->lease);
    owner_write(c, uuid, kv->mod_rev, cluster_owner_value(vm->name, c->agent->name, c->lease, state, gen, why),
                ops, NULL, NULL);
}

/* One record against what runs here. */
static void reconcile(struct cluster *c, const struct etcd_kv *kv)
{
    json_t *o = parse_value(kv->value);
    const char *uuid = strrchr(kv->key, '/') + 1;
    const char *name = json_string_value(json_object_get(o, "vm"));
    const char *host = json_string_value(json_object_get(o, "host"));
    const char *state = json_string_value(json_object_get(o, "state"));
    if (!name || !host || !state) {
        json_decref(o);
        return;
    }
    int64_t lease = etcd_int(json_object_get(o, "lease"));
    int64_t gen = etcd_int(json_object_get(o, "gen"));
    const char *to = json_string_value(json_object_get(o, "to"));
    struct vm *vm = vm_find(c->agent, name);
    if (vm && strcmp(vm->cfg.uuid, uuid))
        vm = NULL;
    bool mine = !strcmp(host, c->agent->name) && lease == c->lease;
    bool here = vm && qemu_pid_alive(vm);
    if (!mine && !strcmp(host, c->agent->name) && vm && vm->cfg.ha && vm->cfg.ha_keep &&
        (!strcmp(state, "running") || !strcmp(state, "isolated"))) {
        readopt(c, kv, o, vm, here);
    } else if (mine && !strcmp(state, "starting")) {
        begin_start(c, uuid, name, kv->mod_rev, gen);
    } else if (mine && !strcmp(state, "running") && vm && !here && !vm_busy_moving(vm) &&
               !job_active_for_vm(c->agent, name) && !find_start(c, uuid)) {
        /* Stopped here (by an admin or the guest), or died. */
        bool clean = vm->state == VM_STOPPED;
        json_t *v = cluster_owner_value(name, host, lease, clean ? "stopped" : "pending", gen,
                                        clean ? "stopped on its host"
                                              : "its QEMU died on its host");
        owner_write(c, uuid, kv->mod_rev, v, NULL, NULL, NULL);
    } else if (mine && !strcmp(state, "migrating") && vm && here && !vm_busy_moving(vm)) {
        /* The move ended with the VM still here (failed or cancelled). */
        owner_write(c, uuid, kv->mod_rev,
                    cluster_owner_value(name, host, lease, "running", gen, "the move did not happen"),
                    NULL, NULL, NULL);
    } else if (!mine && here && !vm_busy_moving(vm) && vm->cfg.ha &&
               !(to && !strcmp(to, c->agent->name))) {
        log_warn("cluster %s: HA VM %s runs here but belongs to %s (lease %llx): killing this copy",
                 c->name, name, host, (unsigned long long)lease);
        vm_kill_qemu(vm);
    } else if (!mine && here && to && !strcmp(to, c->agent->name) && !vm_busy_moving(vm) &&
               !strcmp(state, "migrating")) {
        /* A move to here committed: the record follows the VM. */
        owner_write(c, uuid, kv->mod_rev,
                    cluster_owner_value(name, c->agent->name, c->lease, "running", gen,
                                        "moved here live"), NULL, NULL, NULL);
    }
    json_decref(o);
}

static void owners_answered(void *arg, json_t *reply, const char *err)
{
    struct cluster *c = arg;
    c->owner_busy = false;
    if (!reply) {
        log_debug("cluster %s: cannot read owners: %s", c->name, err);
        return;
    }
    if (c->state != MEMBER_UP)
        return;
    struct etcd_kv *kvs;
    size_t n = etcd_kvs(reply, &kvs);
    for (size_t i = 0; i < n; i++)
        reconcile(c, &kvs[i]);
    etcd_kvs_free(kvs, n);
}

static void members_answered(void *arg, json_t *reply, const char *err)
{
    struct cluster *c = arg;
    (void)err;
    c->members_busy = false;
    if (!reply)
        return;
    struct etcd_kv *kvs;
    size_t n = etcd_kvs(reply, &kvs);
    json_t *addrs = json_object();
    for (size_t i = 0; i < n; i++) {
        json_t *m = parse_value(kvs[i].value);
        const char *addr = json_string_value(json_object_get(m, "addr"));
        if (addr)
            json_object_set_new(addrs, strrchr(kvs[i].key, '/') + 1, json_string(addr));
        json_decref(m);
    }
    etcd_kvs_free(kvs, n);
    json_decref(c->member_addrs);
    c->member_addrs = addrs;
}

const char *owner_member_addr(struct agent *a, const char *host)
{
    if (!a->cluster || !strcmp(host, a->name))
        return NULL;
    return json_string_value(json_object_get(a->cluster->member_addrs, host));
}

json_t *cluster_member_peers(struct agent *a)
{
    if (!a->cluster)
        return NULL;
    json_t *out = json_object();
    const char *host;
    json_t *addr;
    json_object_foreach(a->cluster->member_addrs, host, addr)
        if (strcmp(host, a->name))
            json_object_set(out, host, addr);
    return out;
}

/* The members' addresses, every MEMBERS_EVERY_NS by its own clock: not
 * gated on the owners' read, which a slow etcd keeps busy for whole
 * rounds, nor on another timer's counter, whose phase drifts. */
static void members_read_maybe(struct cluster *c)
{
    uint64_t now = cluster_mono_ns();
    if (c->members_busy || (c->member_addrs && now - c->members_read_ns < MEMBERS_EVERY_NS))
        return;
    c->members_busy = true;
    c->members_read_ns = now;
    char *mk = cluster_key(c, "members/");
    etcd_post(c->kv_etcd, "/v3/kv/range", etcd_range_body(mk, true), CALL_MS, members_answered, c);
    free(mk);
}

static void owner_tick(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd;
    (void)ev;
    struct cluster *c = arg;
    owner_schedule(c->owner_ev, c->poll_ms);
    if (c->state != MEMBER_UP || !cluster_lease_fresh(c))
        return;
    members_read_maybe(c);
    if (c->owner_busy)
        return;
    c->owner_busy = true;
    char *k = cluster_key(c, "owners/");
    etcd_post(c->kv_etcd, "/v3/kv/range", etcd_range_body(k, true), CALL_MS, owners_answered, c);
    free(k);
}

void owner_start(struct cluster *c)
{
    c->owner_ev = evtimer_new(c->agent->base, owner_tick, c);
    owner_schedule(c->owner_ev, c->poll_ms);
}

void owner_stop(struct cluster *c)
{
    if (c->owner_ev)
        event_free(c->owner_ev);
    c->owner_ev = NULL;
    /* Starts in progress belong to their jobs now: detached, freed when
     * the job tells them it ended or was dropped. */
    for (struct ha_start *s = c->starts, *next; s; s = next) {
        next = s->next;
        s->c = NULL;
        s->next = NULL;
    }
    c->starts = NULL;
}
