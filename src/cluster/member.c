/* Membership: this host's etcd lease, its renewals, and the fence.
 *
 * Every keepalive_ms one renewal is sent (never two at once).  A renewal
 * sent at t_s and answered with TTL T proves the lease alive until at least
 * t_s + T, on etcd's side, whenever the answer arrives.  So the deadlines
 * count from the send, not from the answer:
 *   pause at t_s + T - pause_margin: vmoved pauses the HA guests;
 *   kill  at t_s + T - kill_margin:  their shims SIGKILL them (also when
 *                                    vmoved is dead or frozen).
 * A later renewal of the same lease moves both deadlines and resumes what
 * the pause stopped: a blip costs a stall, not a restart.  An answer without
 * TTL means the lease is gone: the HA guests are killed at once and the
 * host registers again with a new lease. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "cluster/cluster_internal.h"
#include "cluster/etcd.h"
#include "common/log.h"
#include "common/util.h"
#include "core/agent.h"
#include "qemu/qemu_proc.h"
#include "vm/vm.h"

#define NS_PER_MS 1000000ull
/* A renewal must answer in time to be of use; etcd gets the same deadline. */
#define RENEW_TIMEOUT_MS 400
#define LOAD_EVERY 8            /* renewals between two load reports */
#define RETRY_MS 100            /* after a failed renewal */
#define MAX_RENEWALS 6          /* in flight at once: a fresh one at least every keepalive */

static void member_schedule(struct event *ev, uint64_t in_ms)
{
    struct timeval tv = {(time_t)(in_ms / 1000), (suseconds_t)((in_ms % 1000) * 1000)};
    evtimer_add(ev, &tv);
}

static void arm_deadline_timer(struct cluster *c)
{
    uint64_t now = cluster_mono_ns();
    uint64_t due = c->state == MEMBER_SUSPECT ? c->kill_ns : c->pause_ns;
    evtimer_del(c->deadline_ev);
    if (!due)
        return;
    member_schedule(c->deadline_ev, due > now ? (due - now) / NS_PER_MS + 1 : 0);
}

void member_arm_fences(struct cluster *c)
{
    /* A keep VM's shim is written "none" every time too: a fence left armed
     * from before `vm set --isolation keep` must not fire. */
    VM_FOREACH(c->agent, vm)
        if (owner_vm_is_ha(vm) && qemu_pid_alive(vm))
            qemu_proc_fence_set(vm->dir, owner_vm_fenced(vm) ? c->agent->fence_kill_ns : 0);
}

static void set_deadlines(struct cluster *c, uint64_t sent_ns, int64_t ttl_s)
{
    uint64_t ttl_ns = (uint64_t)ttl_s * 1000 * NS_PER_MS;
    /* The margins scale with the TTL (30 % and 10 %: 0.9 s and 0.3 s at
     * TTL 3), so a longer TTL also buys a longer stall before a kill. */
    c->pause_margin_ms = (int)(ttl_s * 300);
    c->kill_margin_ms = (int)(ttl_s * 100);
    c->last_renew_sent_ns = sent_ns;
    c->pause_ns = sent_ns + ttl_ns - (uint64_t)c->pause_margin_ms * NS_PER_MS;
    c->kill_ns = sent_ns + ttl_ns - (uint64_t)c->kill_margin_ms * NS_PER_MS;
    c->agent->fence_kill_ns = c->kill_ns;
    member_arm_fences(c);
}

/* No valid lease: an HA guest started now would be killed at once. */
static void lease_gone(struct cluster *c, const char *why)
{
    log_warn("cluster %s: lease %llx is gone (%s): killing the HA guests, registering again",
             c->name, (unsigned long long)c->lease, why);
    c->agent->fence_kill_ns = 1;
    member_arm_fences(c);
    owner_kill_ha_guests(c, why);
    c->lease = 0;
    c->state = MEMBER_JOINING;
    c->pause_ns = c->kill_ns = 0;
    coord_reset(c);
}

static void member_ignore_answer(void *arg, json_t *reply, const char *err)
{
    (void)arg;
    (void)reply;
    (void)err;
}

/* What the coordinator places by: this host's free memory. */
static void publish_load(struct cluster *c)
{
    FILE *f = fopen("/proc/meminfo", "r");
    unsigned long long avail_kb = 0;
    char line[128];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &avail_kb) == 1)
            break;
    if (f)
        fclose(f);
    json_t *v = json_pack("{s:I, s:I}", "mem_free_mib", (json_int_t)(avail_kb / 1024), "vms",
                          (json_int_t)vm_count(c->agent));
    char *text = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    char *k = cluster_key(c, "load/%s", c->agent->name);
    json_t *op = etcd_op_put(k, text, c->lease);
    json_t *body = json_incref(json_object_get(op, "request_put"));
    json_decref(op);
    etcd_post(c->kv_etcd, "/v3/kv/put", body, 1000, member_ignore_answer, NULL);
    free(k);
    free(text);
}

/* ---- registering alive/HOST ---- */

static void registered(void *arg, json_t *reply, const char *err)
{
    struct cluster *c = arg;
    c->registering = false;
    if (!reply) {
        cluster_set_error(c, "cannot register: %s", err);
        return;
    }
    if (!etcd_txn_succeeded(reply)) {
        /* alive/HOST exists: ours (a restart that re-adopted its lease), or
         * another vmoved's that calls itself by our name. */
        json_t *r = json_array_get(json_object_get(reply, "responses"), 0);
        struct etcd_kv *kvs;
        size_t n = etcd_kvs(json_object_get(r, "response_range"), &kvs);
        bool ours = n && kvs[0].lease == c->lease;
        int64_t other = n ? kvs[0].lease : 0;
        etcd_kvs_free(kvs, n);
        if (!ours) {
            cluster_set_error(c, "another vmoved holds host %s's membership (lease %llx): not "
                              "registering until that lease expires", c->agent->name,
                              (unsigned long long)other);
            return;
        }
    }
    if (c->state != MEMBER_UP)
        log_info("cluster %s: member %s is up (lease %llx, TTL %d s)", c->name, c->agent->name,
                 (unsigned long long)c->lease, c->ttl_s);
    c->state = MEMBER_UP;
    free(c->last_error);
    c->last_error = NULL;
    publish_load(c);
    coord_reset(c);
}

static void register_alive(struct cluster *c)
{
    c->registering = true;
    char *k = cluster_key(c, "alive/%s", c->agent->name);
    json_t *v = json_pack("{s:s, s:i, s:I}", "host", c->agent->name, "pid", (int)getpid(),
                          "since_ms", (json_int_t)wall_ms());
    char *text = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    json_t *cmp = json_pack("[o]", etcd_cmp(k, "CREATE", "EQUAL", 0));
    json_t *ok = json_pack("[o]", etcd_op_put(k, text, c->lease));
    json_t *no = json_pack("[o]", etcd_op_range(k, false));
    etcd_post(c->kv_etcd, "/v3/kv/txn", etcd_txn_body(cmp, ok, no), 1000, registered, c);
    free(text);
    free(k);
}

/* ---- renewals ---- */

struct renewal {
    struct cluster *c;
    uint64_t sent_ns;
    int64_t lease;
};

static void renewed(void *arg, json_t *reply, const char *err)
{
    struct renewal *r = arg;
    struct cluster *c = r->c;
    c->renewing--;
    if (r->lease != c->lease || (c->lease && r->sent_ns < c->last_renew_sent_ns)) {
        free(r);          /* for a lease given up meanwhile, or overtaken by a newer one */
        return;
    }
    if (!reply) {
        c->lost_renewals++;
        cluster_set_error(c, "lease renewal failed: %s", err);
        /* Try again soon, on the next member: the deadlines count from the
         * last good send, so every attempt that succeeds earlier helps. */
        if (!c->destroying)
            member_schedule(c->renew_ev, RETRY_MS);
        free(r);
        return;
    }
    int64_t ttl = etcd_int(json_object_get(reply, "TTL"));
    int64_t granted = etcd_int(json_object_get(reply, "ID"));
    if (granted && !c->lease) {        /* an answer to a grant */
        c->lease = granted;
        char e[256];
        if (cluster_save(c, e, sizeof e) < 0)
            cluster_set_error(c, "%s", e);
    }
    if (ttl <= 0) {
        lease_gone(c, "etcd says it expired");
        free(r);
        return;
    }
    set_deadlines(c, r->sent_ns, ttl);
    if (c->state == MEMBER_SUSPECT) {
        log_info("cluster %s: lease %llx renewed in time: resuming the HA guests", c->name,
                 (unsigned long long)c->lease);
        c->state = MEMBER_UP;
        owner_resume_ha_guests(c);
    }
    if (c->state == MEMBER_JOINING && !c->registering)
        register_alive(c);
    arm_deadline_timer(c);
    free(r);
}

static void renew_tick(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd;
    (void)ev;
    struct cluster *c = arg;
    member_schedule(c->renew_ev, (uint64_t)c->keepalive_ms);
    if (c->state == MEMBER_UP && ++c->ticks % LOAD_EVERY == 0)
        publish_load(c);
    /* A renewal stuck on a dead member must not hold up one through a live
     * one: a few may be in flight, each with its own short deadline. */
    if (c->renewing >= MAX_RENEWALS || c->leaving || (!c->lease && c->renewing))
        return;
    struct renewal *r = xcalloc(1, sizeof *r);
    *r = (struct renewal){c, cluster_mono_ns(), c->lease};
    c->renewing++;
    if (c->lease)
        etcd_post(c->lease_etcd, "/v3/lease/keepalive",
                  json_pack("{s:o}", "ID", json_sprintf("%lld", (long long)c->lease)),
                  RENEW_TIMEOUT_MS, renewed, r);
    else
        etcd_post(c->lease_etcd, "/v3/lease/grant", json_pack("{s:i}", "TTL", c->ttl_s), 1000,
                  renewed, r);
}

/* The pause deadline passed without a renewal, then the kill deadline. */
static void deadline_tick(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd;
    (void)ev;
    struct cluster *c = arg;
    uint64_t now = cluster_mono_ns();
    if (c->state == MEMBER_UP && c->pause_ns && now >= c->pause_ns) {
        log_warn("cluster %s: no renewal of lease %llx for %llu ms: pausing the HA guests",
                 c->name, (unsigned long long)c->lease,
                 (unsigned long long)((now - c->last_renew_sent_ns) / NS_PER_MS));
        c->state = MEMBER_SUSPECT;
        owner_pause_ha_guests(c);
    }
    if (c->state == MEMBER_SUSPECT && c->kill_ns && now >= c->kill_ns) {
        /* The shims kill them too; this covers a shim that lost its fifo.
         * The lease itself may live on (etcd without a leader revokes
         * nothing): renewals go on, and etcd's answer decides. */
        log_warn("cluster %s: kill deadline of lease %llx passed: the HA guests are fenced",
                 c->name, (unsigned long long)c->lease);
        owner_kill_ha_guests(c, "not renewed before the kill deadline");
        c->kill_ns = 0;
        return;
    }
    arm_deadline_timer(c);
}

void member_start(struct cluster *c)
{
    struct event_base *base = c->agent->base;
    c->state = MEMBER_JOINING;
    /* Until the first renewal answers, an HA guest may not run. */
    c->agent->fence_kill_ns = 1;
    c->renew_ev = evtimer_new(base, renew_tick, c);
    c->deadline_ev = evtimer_new(base, deadline_tick, c);
    member_schedule(c->renew_ev, 0);
}

void member_stop(struct cluster *c)
{
    if (c->renew_ev)
        event_free(c->renew_ev);
    if (c->deadline_ev)
        event_free(c->deadline_ev);
    c->renew_ev = c->deadline_ev = NULL;
}
