/* The coordinator: one member, elected through etcd, places the HA VMs
 * whose owner is gone.
 *
 * Election (etcd's recipe, by hand): each member puts
 * coordinator/LEASEHEX with its own lease if absent; the key with the
 * lowest create_revision leads.  A leader's every decision is a
 * transaction that also compares its own key's create_revision, so a
 * deposed, paused or partitioned leader (whose key went with its lease)
 * cannot apply a decision any more.
 *
 * A round (every poll_ms on the leader) reads, in one transaction and so
 * from one revision R, the alive keys, owner records, specs, loads and
 * members.  An owner record needs a new host when
 *   - its host's alive key is absent, or carries another lease than the
 *     record (the old lease expired: the old host's shims killed the guest
 *     before that could happen), or
 *   - its state is pending or start-failed (died, or failed to start).
 * Each such VM is placed by priority, preferred hosts and free memory, at
 * most STARTS_PER_HOST at once per host, and assigned in a transaction
 * that compares the record's mod_revision and, for a lost host, that the
 * alive key still does not carry the old lease.  R, the revision that
 * proved the old owner gone, is written into the failover's event. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "cluster/cluster_internal.h"
#include "cluster/etcd.h"
#include "common/log.h"
#include "common/util.h"
#include "core/agent.h"

#define CALL_MS 1500
#define STARTS_PER_HOST 4
#define MAX_ATTEMPTS 3          /* a VM that failed to start on 3 hosts goes to error */

static void coord_schedule(struct event *ev, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

static const char *tail(const char *k)
{
    const char *s = strrchr(k, '/');
    return s ? s + 1 : k;
}

static json_t *value_of(const struct etcd_kv *kv)
{
    json_t *j = json_loads(kv->value, 0, NULL);
    return json_is_object(j) ? j : (json_decref(j), json_object());
}

/* ---- election ---- */

static void campaigned(void *arg, json_t *reply, const char *err)
{
    struct cluster *c = arg;
    c->campaigning = false;
    if (!reply) {
        log_debug("cluster %s: campaign: %s", c->name, err);
        return;
    }
    if (etcd_txn_succeeded(reply)) {
        c->coord_rev = etcd_revision(reply);
    } else {
        json_t *r = json_array_get(json_object_get(reply, "responses"), 0);
        struct etcd_kv *kvs;
        size_t n = etcd_kvs(json_object_get(r, "response_range"), &kvs);
        c->coord_rev = n ? kvs[0].create_rev : 0;
        etcd_kvs_free(kvs, n);
    }
    c->coord_lease = c->coord_rev ? c->lease : 0;
}

static void campaign(struct cluster *c)
{
    c->campaigning = true;
    char *k = cluster_key(c, "coordinator/%llx", (unsigned long long)c->lease);
    json_t *v = json_pack("{s:s}", "host", c->agent->name);
    char *text = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    json_t *cmp = json_pack("[o]", etcd_cmp(k, "CREATE", "EQUAL", 0));
    json_t *ok = json_pack("[o]", etcd_op_put(k, text, c->lease));
    json_t *no = json_pack("[o]", etcd_op_range(k, false));
    etcd_post(c->kv_etcd, "/v3/kv/txn", etcd_txn_body(cmp, ok, no), CALL_MS, campaigned, c);
    free(text);
    free(k);
}

void coord_reset(struct cluster *c)
{
    c->coord_rev = 0;
    c->coord_lease = 0;
    if (c->leader)
        log_info("cluster %s: no longer the coordinator (lease changed)", c->name);
    c->leader = false;
}

/* ---- a round ---- */

struct host_view {
    const char *name;
    int64_t lease;
    int64_t mem_free_mib;
    int starting;               /* VMs assigned and not yet running */
    bool maintenance;
};

struct round {
    struct cluster *c;
    int64_t revision;
    struct host_view *hosts;
    size_t n_hosts;
    int pending;                /* decisions in flight */
};

static struct host_view *host_find(struct round *r, const char *name)
{
    for (size_t i = 0; i < r->n_hosts; i++)
        if (!strcmp(r->hosts[i].name, name))
            return &r->hosts[i];
    return NULL;
}

static int priority_rank(const char *p)
{
    return !p || !strcmp(p, "medium") ? 1 : !strcmp(p, "high") ? 0 : !strcmp(p, "low") ? 2 : 3;
}

/* isolation keep: never fenced on its host, so never restarted elsewhere
 * while that host may still run it (docs/CLUSTER.md).  Either half of the
 * spec saying keep is enough: the safe reading wins. */
static bool spec_keep(json_t *spec)
{
    json_t *flags = json_object_get(json_object_get(spec, "config"), "flags");
    return !strcmp(json_string_value(json_object_get(json_object_get(spec, "ha"), "isolation")) ?: "", "keep") ||
           !strcmp(json_string_value(json_object_get(flags, "isolation")) ?: "", "keep");
}

static bool tried(json_t *owner, const char *host)
{
    size_t i;
    json_t *h;
    json_array_foreach(json_object_get(owner, "tried"), i, h)
        if (!strcmp(json_string_value(h) ?: "", host))
            return true;
    return false;
}

/* The host for a VM: its preferred hosts in order, else the most free
 * memory; alive, not in maintenance, not tried, with room. */
static struct host_view *place(struct round *r, json_t *owner, json_t *spec)
{
    json_t *ha = json_object_get(spec, "ha");
    int64_t need = json_integer_value(json_object_get(json_object_get(spec, "config"), "memory_mib"));
    struct host_view *best = NULL;
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(ha, "preferred_hosts"), i, p) {
        struct host_view *h = host_find(r, json_string_value(p) ?: "");
        if (h && h->lease && !h->maintenance && !tried(owner, h->name) &&
            h->starting < STARTS_PER_HOST && h->mem_free_mib >= need)
            return h;
    }
    for (size_t k = 0; k < r->n_hosts; k++) {
        struct host_view *h = &r->hosts[k];
        if (!h->lease || h->maintenance || tried(owner, h->name) || h->starting >= STARTS_PER_HOST ||
            h->mem_free_mib < need)
            continue;
        if (!best || h->mem_free_mib > best->mem_free_mib)
            best = h;
    }
    return best;
}

static void round_unref(struct round *r)
{
    if (--r->pending > 0)
        return;
    r->c->coord_busy = false;
    free(r->hosts);
    free(r);
}

static void decided(void *arg, json_t *reply, const char *err)
{
    struct round *r = arg;
    if (!reply)
        log_warn("cluster %s: a failover decision was not applied: %s", r->c->name, err);
    else if (!etcd_txn_succeeded(reply))
        log_info("cluster %s: a failover decision lost its compare (state changed, or this host "
                 "is no longer the coordinator): re-read next round", r->c->name);
    round_unref(r);
}

struct candidate {
    const struct etcd_kv *owner_kv;
    json_t *owner, *spec;
    int rank;
    bool host_lost;
};

static int by_rank(const void *a, const void *b)
{
    const struct candidate *x = a, *y = b;
    return x->rank - y->rank;
}

/* Assign (or give up on) one VM, in one transaction with its event. */
static void decide(struct round *r, struct candidate *cand)
{
    struct cluster *c = r->c;
    const char *uuid = tail(cand->owner_kv->key);
    const char *name = json_string_value(json_object_get(cand->owner, "vm")) ?: "?";
    const char *old_host = json_string_value(json_object_get(cand->owner, "host")) ?: "";
    int64_t old_lease = etcd_int(json_object_get(cand->owner, "lease"));
    int64_t gen = etcd_int(json_object_get(cand->owner, "gen")) + 1;
    json_t *old_tried = json_object_get(cand->owner, "tried");
    json_t *triedv = json_is_array(old_tried) ? json_copy(old_tried) : json_array();
    const char *old_state = json_string_value(json_object_get(cand->owner, "state")) ?: "";
    if (!strcmp(old_state, "start-failed") && !tried(cand->owner, old_host))
        json_array_append_new(triedv, json_string(old_host));
    if (cand->host_lost)
        json_array_clear(triedv);     /* a new failure: every survivor may try */
    struct host_view *to = NULL;
    char reason[256];
    const char *new_state = "starting";
    if (cand->host_lost && spec_keep(cand->spec)) {
        /* Its host lost its lease but did not fence it: it may still run
         * there, cut off.  A restart here would be a second copy. */
        new_state = "isolated";
        json_array_clear(triedv);
        snprintf(reason, sizeof reason, "not restarted automatically (isolation keep): host %s lost its lease "
                 "(gone at revision %lld) and does not fence this VM, so it may still run there; it is "
                 "re-adopted when %s returns; if %s is off, `vmove vm ha-clear %s` restarts it elsewhere",
                 old_host, (long long)r->revision, old_host, old_host, name);
    } else if (priority_rank(json_string_value(json_object_get(json_object_get(cand->spec, "ha"), "priority"))) == 3) {
        new_state = "pending";
        snprintf(reason, sizeof reason, "priority manual: start it by hand");
        if (!strcmp(old_state, "pending") && !cand->host_lost) {
            json_decref(triedv);
            return;          /* already said */
        }
    } else if (json_array_size(triedv) >= MAX_ATTEMPTS) {
        new_state = "error";
        snprintf(reason, sizeof reason, "failed to start on %zu hosts (last: %s): %s; "
                 "`vmove vm ha-clear %s` lets it be placed again", json_array_size(triedv), old_host,
                 json_string_value(json_object_get(cand->owner, "reason")) ?: "", name);
    } else {
        /* A VM whose source died mid-move goes to its destination, which
         * may hold it running already (the move committed). */
        const char *dest = json_string_value(json_object_get(cand->owner, "to"));
        struct host_view *d = dest && !strcmp(old_state, "migrating") ? host_find(r, dest) : NULL;
        json_t *probe = json_pack("{s:O}", "tried", triedv);
        to = d && d->lease ? d : place(r, probe, cand->spec);
        json_decref(probe);
        if (!to) {
            json_decref(triedv);
            log_debug("cluster %s: no host can take HA VM %s now", c->name, name);
            return;
        }
        if (cand->host_lost)
            snprintf(reason, sizeof reason, "failover: the lease of %s was gone at revision %lld",
                     old_host, (long long)r->revision);
        else
            snprintf(reason, sizeof reason, "restart after %s on %s", old_state, old_host);
        to->starting++;
    }
    json_t *v = cluster_owner_value(name, to ? to->name : old_host, to ? to->lease : old_lease,
                                    new_state, gen, reason);
    json_object_set_new(v, "tried", triedv);
    char *vtext = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    json_t *event = json_pack("{s:s, s:s, s:s, s:s?, s:I, s:s, s:s, s:I, s:I, s:I}", "vm", name,
                              "uuid", uuid, "from", old_host, "to", to ? to->name : NULL, "gen",
                              (json_int_t)gen, "decision", new_state, "reason", reason,
                              "proof_revision", (json_int_t)r->revision, "lease_gone_seen_ms",
                              (json_int_t)wall_ms(), "decided_ms", (json_int_t)wall_ms());
    json_object_set_new(event, "coordinator", json_string(c->agent->name));
    if (!strcmp(new_state, "isolated")) {     /* the decision is the whole story until the host returns */
        json_object_set_new(event, "result", json_string("not-restarted"));
        json_object_set_new(event, "result_reason", json_string("isolation keep"));
    }
    char *etext = json_dumps(event, JSON_COMPACT);
    json_decref(event);
    char *ok = cluster_key(c, "owners/%s", uuid);
    char *ek = cluster_key(c, "events/%s/%010lld", uuid, (long long)gen);
    char *me = cluster_key(c, "coordinator/%llx", (unsigned long long)c->coord_lease);
    json_t *cmp = json_array();
    json_array_append_new(cmp, etcd_cmp(me, "CREATE", "EQUAL", c->coord_rev));
    json_array_append_new(cmp, etcd_cmp(ok, "MOD", "EQUAL", cand->owner_kv->mod_rev));
    if (cand->host_lost) {
        char *ak = cluster_key(c, "alive/%s", old_host);
        json_array_append_new(cmp, etcd_cmp(ak, "LEASE", "NOT_EQUAL", old_lease));
        free(ak);
    }
    json_t *ops = json_pack("[o, o]", etcd_op_put(ok, vtext, 0), etcd_op_put(ek, etext, 0));
    log_info("cluster %s: HA VM %s: %s -> %s (%s)", c->name, name, old_host,
             to ? to->name : new_state, reason);
    r->pending++;
    etcd_post(c->kv_etcd, "/v3/kv/txn", etcd_txn_body(cmp, ops, NULL), CALL_MS, decided, r);
    free(vtext);
    free(etext);
    free(ok);
    free(ek);
    free(me);
}

static size_t part(json_t *reply, size_t i, struct etcd_kv **kvs)
{
    json_t *resp = json_array_get(json_object_get(reply, "responses"), i);
    return etcd_kvs(json_object_get(resp, "response_range"), kvs);
}

static bool needs_home(struct round *r, json_t *owner, bool *host_lost)
{
    const char *state = json_string_value(json_object_get(owner, "state")) ?: "";
    const char *host = json_string_value(json_object_get(owner, "host")) ?: "";
    int64_t lease = etcd_int(json_object_get(owner, "lease"));
    struct host_view *h = host_find(r, host);
    *host_lost = false;
    if (!strcmp(state, "running") || !strcmp(state, "starting") || !strcmp(state, "migrating")) {
        *host_lost = !h || h->lease != lease;
        return *host_lost;
    }
    if (!strcmp(state, "start-failed"))
        return true;
    /* pending: needs a host; a manual one is only re-said after a loss. */
    return !strcmp(state, "pending") && strcmp(json_string_value(json_object_get(owner, "reason")) ?: "",
                                               "priority manual: start it by hand");
}

static void round_answered(void *arg, json_t *reply, const char *err)
{
    struct round *r = arg;
    struct cluster *c = r->c;
    if (!reply || !c->leader) {
        if (!reply)
            log_debug("cluster %s: coordinator round: %s", c->name, err);
        r->pending = 1;
        round_unref(r);
        return;
    }
    r->revision = etcd_revision(reply);
    struct etcd_kv *alive, *owners, *specs, *loads, *members;
    size_t na = part(reply, 0, &alive), no = part(reply, 1, &owners), ns = part(reply, 2, &specs),
           nl = part(reply, 3, &loads), nm = part(reply, 4, &members);
    r->hosts = xcalloc(nm + 1, sizeof *r->hosts);
    for (size_t i = 0; i < nm; i++) {
        struct host_view *h = &r->hosts[r->n_hosts++];
        h->name = tail(members[i].key);
        json_t *m = value_of(&members[i]);
        h->maintenance = json_is_true(json_object_get(m, "maintenance"));
        json_decref(m);
        for (size_t k = 0; k < na; k++)
            if (!strcmp(tail(alive[k].key), h->name))
                h->lease = alive[k].lease;
        for (size_t k = 0; k < nl; k++)
            if (!strcmp(tail(loads[k].key), h->name)) {
                json_t *l = value_of(&loads[k]);
                h->mem_free_mib = json_integer_value(json_object_get(l, "mem_free_mib"));
                json_decref(l);
            }
    }
    struct candidate *cands = xcalloc(no + 1, sizeof *cands);
    size_t nc = 0;
    for (size_t i = 0; i < no; i++) {
        json_t *o = value_of(&owners[i]);
        const char *st = json_string_value(json_object_get(o, "state")) ?: "";
        struct host_view *h = host_find(r, json_string_value(json_object_get(o, "host")) ?: "");
        if (h && !strcmp(st, "starting"))
            h->starting++;
        bool lost;
        if (!needs_home(r, o, &lost)) {
            json_decref(o);
            continue;
        }
        json_t *spec = NULL;
        for (size_t k = 0; k < ns && !spec; k++)
            if (!strcmp(tail(specs[k].key), tail(owners[i].key)))
                spec = value_of(&specs[k]);
        if (!spec) {
            json_decref(o);
            continue;
        }
        cands[nc++] = (struct candidate){&owners[i], o, spec,
            priority_rank(json_string_value(json_object_get(json_object_get(spec, "ha"), "priority"))), lost};
    }
    qsort(cands, nc, sizeof *cands, by_rank);
    r->pending = 1;                  /* this function's own reference */
    for (size_t i = 0; i < nc; i++)
        decide(r, &cands[i]);
    for (size_t i = 0; i < nc; i++) {
        json_decref(cands[i].owner);
        json_decref(cands[i].spec);
    }
    free(cands);
    etcd_kvs_free(alive, na);
    etcd_kvs_free(specs, ns);
    etcd_kvs_free(loads, nl);
    etcd_kvs_free(members, nm);
    /* Host names in r->hosts point into members: copied out before the free. */
    for (size_t i = 0; i < r->n_hosts; i++)
        r->hosts[i].name = NULL;
    etcd_kvs_free(owners, no);
    round_unref(r);
}

static void leader_answered(void *arg, json_t *reply, const char *err)
{
    struct cluster *c = arg;
    if (!reply) {
        c->coord_busy = false;
        log_debug("cluster %s: election: %s", c->name, err);
        return;
    }
    struct etcd_kv *kvs;
    size_t n = etcd_kvs(reply, &kvs);
    const struct etcd_kv *lead = NULL;
    for (size_t i = 0; i < n; i++)
        if (!lead || kvs[i].create_rev < lead->create_rev)
            lead = &kvs[i];
    bool me = lead && c->coord_rev && lead->create_rev == c->coord_rev && lead->lease == c->lease;
    json_t *lv = lead ? value_of(lead) : NULL;
    free(c->leader_host);
    c->leader_host = lv && json_string_value(json_object_get(lv, "host"))
                         ? xstrdup(json_string_value(json_object_get(lv, "host"))) : NULL;
    json_decref(lv);
    if (me != c->leader)
        log_info("cluster %s: %s the coordinator", c->name, me ? "this host is now" : "this host is no longer");
    c->leader = me;
    etcd_kvs_free(kvs, n);
    if (!me || c->state != MEMBER_UP) {
        c->coord_busy = false;
        return;
    }
    struct round *r = xcalloc(1, sizeof *r);
    r->c = c;
    static const char *const parts[] = {"alive/", "owners/", "specs/", "load/", "members/"};
    json_t *ops = json_array();
    for (size_t i = 0; i < ARRAY_LEN(parts); i++) {
        char *k = cluster_key(c, "%s", parts[i]);
        json_array_append_new(ops, etcd_op_range(k, true));
        free(k);
    }
    etcd_post(c->kv_etcd, "/v3/kv/txn", etcd_txn_body(json_array(), ops, NULL), CALL_MS,
              round_answered, r);
}

static void coord_tick(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd;
    (void)ev;
    struct cluster *c = arg;
    coord_schedule(c->coord_ev, c->poll_ms);
    if (c->state != MEMBER_UP || !cluster_lease_fresh(c) || c->campaigning || c->coord_busy)
        return;
    if (!c->coord_rev || c->coord_lease != c->lease) {
        campaign(c);
        return;
    }
    c->coord_busy = true;
    char *k = cluster_key(c, "coordinator/");
    etcd_post(c->kv_etcd, "/v3/kv/range", etcd_range_body(k, true), CALL_MS, leader_answered, c);
    free(k);
}

void coord_start(struct cluster *c)
{
    c->coord_ev = evtimer_new(c->agent->base, coord_tick, c);
    coord_schedule(c->coord_ev, c->poll_ms);
}

void coord_stop(struct cluster *c)
{
    if (c->coord_ev)
        event_free(c->coord_ev);
    c->coord_ev = NULL;
}
