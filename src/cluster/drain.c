#include "cluster/drain.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "core/journal.h"
#include "core/peer.h"
#include "migrate/migrate.h"
#include "vm/vm.h"

#define DRAIN_POLL_MS 500
#define MAX_CANDIDATES MAX_PEERS

struct candidate {
    char name[64];
    char addr[80];
    struct peer_conn *peer;
    bool answered, usable;
    long long free_mib;
    long long assigned_mib;
    char why[256];
};

struct drain_item {
    char vm[64];
    char to[64];
    long long mib;
    int64_t job;               /* child migrate job, 0 if none */
    bool finished;             /* the child job ended (or never started) */
    char state[16];
    json_t *error;
};

struct drain {
    struct drain *next;
    struct agent *agent;
    struct job *job;
    struct candidate cand[MAX_CANDIDATES];
    int n_cand, pending;
    struct drain_item *items;
    int n_items;
    struct event *timer;
    uint64_t t_start;
    json_t *tuning;
    char user[96];             /* who asked for the drain (its moves run as this host) */
};

static void drain_free(struct drain *d)
{
    for (struct drain **p = &d->agent->drains; *p; p = &(*p)->next)
        if (*p == d) {
            *p = d->next;
            break;
        }
    for (int i = 0; i < d->n_cand; i++)
        peer_close(d->cand[i].peer);
    for (int i = 0; i < d->n_items; i++)
        json_decref(d->items[i].error);
    if (d->timer)
        event_free(d->timer);
    json_decref(d->tuning);
    free(d->items);
    free(d);
}

void drain_free_all(struct agent *a)
{
    while (a->drains)
        drain_free(a->drains);
}

static json_t *items_json(struct drain *d)
{
    json_t *arr = json_array();
    for (int i = 0; i < d->n_items; i++) {
        struct drain_item *it = &d->items[i];
        json_t *o = json_pack("{s:s, s:s, s:I, s:s}", "vm", it->vm, "to", it->to, "job", (json_int_t)it->job,
                              "state", it->state);
        struct job *child = it->job ? job_find(d->agent, it->job) : NULL;
        if (child) {
            json_object_set_new(o, "phase", json_string(child->phase));
            json_t *pct = json_object_get(child->progress, "percent");
            if (pct)
                json_object_set(o, "percent", pct);
            json_t *wait = json_object_get(child->progress, "waiting_for");
            if (wait)
                json_object_set(o, "waiting_for", wait);
        }
        if (it->error)
            json_object_set(o, "error", it->error);
        json_array_append_new(arr, o);
    }
    return arr;
}

static void drain_finish(struct drain *d)
{
    int ok = 0, failed = 0;
    for (int i = 0; i < d->n_items; i++)
        strcmp(d->items[i].state, "succeeded") ? failed++ : ok++;
    json_t *res = json_pack("{s:s, s:i, s:i, s:I, s:o}", "host", d->agent->name, "moved", ok, "failed", failed,
                            "total_ms", (json_int_t)(now_ms() - d->t_start), "vms", items_json(d));
    journal_event(d->agent->journal, NULL, "host.drained", res);
    struct job *job = d->job;
    drain_free(d);
    if (failed) {
        json_t *err = proto_error(ERR_QEMU, "see the per-VM errors; the host stays drained",
                                  "%d of %d VMs could not be moved off", failed, ok + failed);
        json_object_set_new(err, "result", res);
        job_fail(job, err);
    } else
        job_succeed(job, res);
}

/* Follow the child migrations. */
static void drain_on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct drain *d = arg;
    int running = 0, done = 0;
    for (int i = 0; i < d->n_items; i++) {
        struct drain_item *it = &d->items[i];
        if (it->finished)
            continue;
        if (!it->job) {          /* could not even be submitted */
            it->finished = true;
            continue;
        }
        if (job_find(d->agent, it->job)) {
            running++;
            continue;
        }
        json_t *rec = journal_job_get(d->agent->journal, it->job);
        const char *st = json_string_value(json_object_get(rec, "state"));
        snprintf(it->state, sizeof it->state, "%s", st ? st : "failed");
        if (!it->error && json_object_get(rec, "error"))
            it->error = json_incref(json_object_get(rec, "error"));
        it->finished = true;
        json_decref(rec);
    }
    for (int i = 0; i < d->n_items; i++)
        done += d->items[i].finished;
    job_set_progress(d->job, json_pack("{s:i, s:i, s:i, s:I, s:o}", "total", d->n_items, "done", done,
                                       "running", running, "elapsed_ms", (json_int_t)(now_ms() - d->t_start),
                                       "vms", items_json(d)));
    if (done == d->n_items) {
        drain_finish(d);
        return;
    }
    struct timeval tv = {0, DRAIN_POLL_MS * 1000};
    evtimer_add(d->timer, &tv);
}

static int pick(struct drain *d, long long mib)
{
    int best = -1;
    for (int i = 0; i < d->n_cand; i++) {
        struct candidate *c = &d->cand[i];
        long long left = c->free_mib - c->assigned_mib;
        if (!c->usable || left < mib + 128)
            continue;
        if (best < 0 || left > d->cand[best].free_mib - d->cand[best].assigned_mib)
            best = i;
    }
    return best;
}

static void start_moves(struct drain *d)
{
    struct agent *a = d->agent;
    job_set_phase(d->job, "migrating");
    for (int i = 0; i < d->n_items; i++) {
        struct drain_item *it = &d->items[i];
        int c = pick(d, it->mib);
        if (c < 0) {
            snprintf(it->state, sizeof it->state, "failed");
            it->error = proto_error(ERR_UNAVAILABLE, NULL, "no destination has %lld MiB free for %s", it->mib, it->vm);
            continue;
        }
        d->cand[c].assigned_mib += it->mib;
        snprintf(it->to, sizeof it->to, "%s", d->cand[c].name);
        json_t *err = NULL;
        struct job *child = migrate_submit(a, it->vm, d->cand[c].name, d->tuning, d->user, NULL, &err);
        if (!child) {
            snprintf(it->state, sizeof it->state, "failed");
            it->error = err;
            continue;
        }
        it->job = child->id;
        snprintf(it->state, sizeof it->state, "queued");
    }
    drain_on_tick(-1, 0, d);
}

static void on_candidate(void *arg, json_t *result, json_t *error)
{
    struct candidate *c = arg;
    c->answered = true;
    if (error)
        snprintf(c->why, sizeof c->why, "%s", json_string_value(json_object_get(error, "message")));
    else {
        c->free_mib = json_integer_value(json_object_get(result, "free_mib"));
        c->usable = json_is_true(json_object_get(result, "incoming")) && !json_is_true(json_object_get(result, "drained"));
        if (!c->usable)
            snprintf(c->why, sizeof c->why, "host %s does not accept incoming migrations now", c->name);
    }
}

static struct drain *drain_of(struct agent *a, struct candidate *c)
{
    for (struct drain *d = a->drains; d; d = d->next)
        if (c >= d->cand && c < d->cand + MAX_CANDIDATES)
            return d;
    return NULL;
}

struct cand_ref {
    struct agent *agent;
    struct candidate *c;
};

static void on_candidate_ref(void *arg, json_t *result, json_t *error)
{
    struct cand_ref *ref = arg;
    struct drain *d = drain_of(ref->agent, ref->c);
    if (d) {
        on_candidate(ref->c, result, error);
        if (--d->pending == 0) {
            for (int i = 0; i < d->n_cand; i++)
                if (!d->cand[i].usable)
                    log_warn("drain: not using %s: %s", d->cand[i].name, d->cand[i].why);
            start_moves(d);
        }
    }
    free(ref);
}

static int add_candidates(struct drain *d, json_t *to, char *err, size_t errlen)
{
    struct agent *a = d->agent;
    size_t i;
    json_t *v;
    /* cand[] holds MAX_CANDIDATES: a longer list (the same peer named again
     * and again) ran past its end. */
    if (json_array_size(to) > MAX_CANDIDATES) {
        snprintf(err, errlen, "at most %d target hosts", MAX_CANDIDATES);
        return -1;
    }
    if (json_array_size(to)) {
        json_array_foreach(to, i, v) {
            const struct peer_entry *p = settings_find_peer(&a->settings, json_string_value(v));
            if (!p) {
                snprintf(err, errlen, "%s is not a known peer of %s (vmove peer add HOST ADDR:PORT)",
                         json_string_value(v) ? json_string_value(v) : "?", a->name);
                return -1;
            }
            struct candidate *c = &d->cand[d->n_cand++];
            snprintf(c->name, sizeof c->name, "%s", p->name);
            snprintf(c->addr, sizeof c->addr, "%s", p->addr);
        }
    } else
        for (int k = 0; k < a->settings.n_peers; k++) {
            struct candidate *c = &d->cand[d->n_cand++];
            snprintf(c->name, sizeof c->name, "%s", a->settings.peers[k].name);
            snprintf(c->addr, sizeof c->addr, "%s", a->settings.peers[k].addr);
        }
    if (!d->n_cand) {
        snprintf(err, errlen, "host %s has no peers to drain to (vmove peer add HOST ADDR:PORT)", a->name);
        return -1;
    }
    return 0;
}

static void cancel_drain(struct job *job)
{
    for (struct drain *d = job->agent->drains; d; d = d->next)
        if (d->job == job)
            for (int i = 0; i < d->n_items; i++) {
                struct job *child = d->items[i].finished ? NULL : job_find(job->agent, d->items[i].job);
                json_t *err = NULL;
                if (child && job_request_cancel(child, &err) < 0)
                    json_decref(err);   /* a kind that cannot be cancelled: it runs to its end */
            }
}

static const struct job_ops drain_ops = {"drain", cancel_drain};

static int set_drained(struct agent *a, bool on, char *err, size_t errlen)
{
    bool prev = a->settings.drained;
    a->settings.drained = on;
    if (agent_save_settings(a, err, errlen) < 0) {
        a->settings.drained = prev;
        return -1;
    }
    json_t *d = json_pack("{s:b}", "drained", on);
    journal_event(a->journal, NULL, "host.drain", d);
    json_decref(d);
    return 0;
}

struct job *drain_create(struct agent *a, json_t *to, json_t *tuning, const char *user, json_t **err)
{
    if (a->drains) {
        *err = proto_error(ERR_STATE, NULL, "host %s is already being drained (job %lld)", a->name,
                           (long long)a->drains->job->id);
        return NULL;
    }
    struct drain *d = xcalloc(1, sizeof *d);
    d->agent = a;
    d->t_start = now_ms();
    char msg[512];
    if (add_candidates(d, to, msg, sizeof msg) < 0) {
        free(d);
        *err = proto_error(ERR_INVALID, NULL, "%s", msg);
        return NULL;
    }
    if (set_drained(a, true, msg, sizeof msg) < 0) {
        free(d);
        *err = proto_error(ERR_INTERNAL, NULL, "%s", msg);
        return NULL;
    }
    d->tuning = json_incref(tuning);
    snprintf(d->user, sizeof d->user, "%s", user);
    VM_FOREACH(a, vm)
        if (vm->state == VM_RUNNING || vm->state == VM_PAUSED)
            d->n_items++;
    d->items = xcalloc((size_t)d->n_items + 1, sizeof *d->items);
    int k = 0;
    VM_FOREACH(a, vm)
        if (vm->state == VM_RUNNING || vm->state == VM_PAUSED) {
            snprintf(d->items[k].vm, sizeof d->items[k].vm, "%s", vm->name);
            d->items[k].mib = (long long)vm->cfg.memory_mib;
            snprintf(d->items[k].state, sizeof d->items[k].state, "planned");
            k++;
        }
    d->job = job_create(a, &drain_ops, NULL, json_pack("{s:s, s:O?}", "host", a->name, "to", to));
    d->next = a->drains;
    a->drains = d;
    d->timer = evtimer_new(a->base, drain_on_tick, d);
    return d->job;
}

void drain_begin(struct agent *a)
{
    struct drain *d = a->drains;
    job_set_phase(d->job, "choosing destinations");
    d->pending = d->n_cand;
    for (int i = 0; i < d->n_cand; i++) {
        struct cand_ref *ref = xcalloc(1, sizeof *ref);
        ref->agent = a;
        ref->c = &d->cand[i];
        d->cand[i].peer = peer_connect(a, d->cand[i].name, d->cand[i].addr, NULL, NULL);
        /* Asked as a would-be source of VMs: the candidate checks that we
         * may bring VMs in, as a drain's migrations (this host's own moves,
         * with no user token) will be checked. */
        peer_call(d->cand[i].peer, "migrate.capacity", json_object(), 10000, on_candidate_ref,
                  ref);
    }
}

json_t *drain_resume(struct agent *a)
{
    if (a->drains)
        return proto_error(ERR_STATE, "cancel it first: vmove jobs cancel ID", "host %s is being drained by job %lld",
                           a->name, (long long)a->drains->job->id);
    char msg[512];
    if (set_drained(a, false, msg, sizeof msg) < 0)
        return proto_error(ERR_INTERNAL, NULL, "%s", msg);
    return NULL;
}
