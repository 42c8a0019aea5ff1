/* Live migration inside a cluster: the owner record of an HA VM moves to
 * the destination in the same step that commits the move there, before the
 * guest resumes (src/migrate/dst-finish.c calls in through agent->hooks).
 *
 * The destination writes owners/UUID = {itself, its lease, running} in a
 * transaction that compares the record's revision and its own alive key's
 * lease.  If the transaction fails, the move is aborted and the VM stays
 * on the source, which still owns it.  If etcd's answer is lost, the record
 * is read again until it says who won: resuming on a guess could run the
 * VM twice (the record names us) or lose it (the record names the source
 * while we run it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "cluster/cluster_internal.h"
#include "cluster/etcd.h"
#include "common/log.h"
#include "common/util.h"
#include "core/agent.h"
#include "vm/vm.h"

#define CALL_MS 1000
#define MAX_READS 6
#define REREAD_MS 300

struct handoff {
    struct handoff *next;
    struct cluster *c;
    char *vm, *uuid, *source;
    agent_handoff_done_fn done;
    void *arg;
    bool cancelled, wrote;
    int reads;
    struct event *later;
};

static void handoff_end(struct handoff *h, const char *error)
{
    for (struct handoff **p = &h->c->handoffs; *p; p = &(*p)->next)
        if (*p == h) {
            *p = h->next;
            break;
        }
    if (!h->cancelled) {
        if (error)
            log_warn("cluster: %s stays on %s: %s", h->vm, h->source, error);
        else
            log_info("cluster: HA VM %s is owned here now (moved live from %s)", h->vm, h->source);
        h->done(h->arg, error);
    }
    if (h->later)
        event_free(h->later);
    free(h->vm);
    free(h->uuid);
    free(h->source);
    free(h);
}

static void handoff_read_owner(struct handoff *h);

static void written(void *arg, json_t *reply, const char *err)
{
    struct handoff *h = arg;
    if (h->cancelled || h->c->destroying) {
        handoff_end(h, "cancelled");
        return;
    }
    if (reply && etcd_txn_succeeded(reply)) {
        handoff_end(h, NULL);
        return;
    }
    if (!reply)
        log_warn("cluster: handing %s over: %s: reading the record again", h->vm, err);
    handoff_read_owner(h);          /* lost answer or lost compare: the record decides */
}

static void take(struct handoff *h, const struct etcd_kv *kv, json_t *o)
{
    struct cluster *c = h->c;
    int64_t gen = etcd_int(json_object_get(o, "gen")) + 1;
    char reason[128];
    snprintf(reason, sizeof reason, "moved here live from %s", h->source);
    json_t *v = cluster_owner_value(h->vm, c->agent->name, c->lease, "running", gen, reason);
    char *text = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    char *ok = cluster_key(c, "owners/%s", h->uuid), *ak = cluster_key(c, "alive/%s", c->agent->name);
    json_t *cmp = json_pack("[o, o]", etcd_cmp(ok, "MOD", "EQUAL", kv->mod_rev),
                            etcd_cmp(ak, "LEASE", "EQUAL", c->lease));
    json_t *ops = json_pack("[o]", etcd_op_put(ok, text, 0));
    h->wrote = true;
    etcd_post(c->kv_etcd, "/v3/kv/txn", etcd_txn_body(cmp, ops, NULL), CALL_MS, written, h);
    free(text);
    free(ok);
    free(ak);
}

static void reread_cb(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd;
    (void)ev;
    handoff_read_owner(arg);
}

static void owner_read(void *arg, json_t *reply, const char *err)
{
    struct handoff *h = arg;
    struct cluster *c = h->c;
    if (h->cancelled || c->destroying) {
        handoff_end(h, "cancelled");
        return;
    }
    if (!reply) {
        if (!h->wrote || h->reads >= MAX_READS) {
            char why[300];
            snprintf(why, sizeof why, "cannot read its owner record in etcd: %s", err);
            /* Never written, or written and never readable: if it was
             * written, our lease lapses and the coordinator restarts the VM
             * from disk; the source still has it paused. */
            handoff_end(h, why);
            return;
        }
        if (!h->later)
            h->later = evtimer_new(c->agent->base, reread_cb, h);
        struct timeval tv = {0, REREAD_MS * 1000};
        evtimer_add(h->later, &tv);
        return;
    }
    struct etcd_kv *kvs;
    size_t n = etcd_kvs(reply, &kvs);
    json_t *o = n ? json_loads(kvs[0].value, 0, NULL) : NULL;
    const char *host = json_string_value(json_object_get(o, "host")) ?: "";
    int64_t lease = etcd_int(json_object_get(o, "lease"));
    if (!strcmp(host, c->agent->name) && lease == c->lease)
        handoff_end(h, NULL);                           /* ours already */
    else if (!o)
        handoff_end(h, "it has no owner record in the cluster");
    else if (strcmp(host, h->source) || h->wrote) {
        char why[256];
        snprintf(why, sizeof why, "the cluster gives it to %s, not to this host", host);
        handoff_end(h, why);
    } else
        take(h, &kvs[0], o);
    json_decref(o);
    etcd_kvs_free(kvs, n);
}

static void handoff_read_owner(struct handoff *h)
{
    h->reads++;
    char *k = cluster_key(h->c, "owners/%s", h->uuid);
    etcd_post(h->c->kv_etcd, "/v3/kv/range", etcd_range_body(k, false), CALL_MS, owner_read, h);
    free(k);
}

static void before_incoming_commit(struct agent *a, struct vm *vm, const char *source,
                                   agent_handoff_done_fn done, void *arg)
{
    struct cluster *c = a->cluster;
    if (!c || !cluster_lease_fresh(c)) {
        done(arg, "this host has no fresh cluster lease: an HA VM may not run here now");
        return;
    }
    struct handoff *h = xcalloc(1, sizeof *h);
    *h = (struct handoff){.c = c, .vm = xstrdup(vm->name), .uuid = xstrdup(vm->cfg.uuid),
                          .source = xstrdup(source), .done = done, .arg = arg};
    h->next = c->handoffs;
    c->handoffs = h;
    handoff_read_owner(h);
}

static void cancel_incoming_commit(struct agent *a, void *arg)
{
    for (struct handoff *h = a->cluster ? a->cluster->handoffs : NULL; h; h = h->next)
        if (h->arg == arg)
            h->cancelled = true;
}

void handoff_install(struct cluster *c)
{
    c->agent->hooks.before_incoming_commit = before_incoming_commit;
    c->agent->hooks.cancel_incoming_commit = cancel_incoming_commit;
    c->agent->hooks.member_addr = owner_member_addr;
}

void handoff_remove(struct cluster *c)
{
    c->agent->hooks.before_incoming_commit = NULL;
    c->agent->hooks.cancel_incoming_commit = NULL;
    c->agent->hooks.member_addr = NULL;
    /* Their etcd calls are answered (with an error) when the client goes;
     * nobody is told any more. */
    for (struct handoff *h = c->handoffs; h; h = h->next)
        h->cancelled = true;
}
