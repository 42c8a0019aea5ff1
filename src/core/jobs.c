#include "core/jobs.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/journal.h"
#include "core/metrics.h"

struct job_watcher {
    struct job_watcher *next;
    const struct job_subscriber_ops *ops;
    void *arg;
};

const char *job_state_name(enum job_state s)
{
    static const char *names[] = {"queued", "running", "succeeded", "failed", "cancelled"};
    return names[s];
}

json_t *job_to_json(const struct job *j)
{
    return json_pack("{s:I, s:s, s:s*, s:s*, s:s, s:s*, s:O*, s:O*, s:O*, s:O*, s:I, s:o*, s:b}",
                     "id", (json_int_t)j->id, "kind", j->ops->kind, "vm", j->vm, "owner", j->owner,
                     "state", job_state_name(j->state), "phase", j->phase,
                     "params", j->params, "progress", j->progress, "result", j->result,
                     "error", j->error, "created_ms", (json_int_t)j->created_ms,
                     "finished_ms", j->finished_ms ? json_integer((json_int_t)j->finished_ms) : NULL,
                     "cancel_requested", j->cancel_requested);
}

static void journal_write(struct job *j)
{
    json_t *rec = job_to_json(j);
    journal_job_update(j->agent->journal, j->id, rec);
    json_decref(rec);
    j->last_journal_ms = now_ms();
}

/* Followers of every job (the console's live jobs page, `jobs.follow`). */
struct job_observer {
    struct job_observer *next;
    void (*fn)(void *arg, const struct job *j);
    void *arg;
};
static struct job_observer *observers;

void jobs_observe(void (*fn)(void *arg, const struct job *j), void *arg)
{
    struct job_observer *o = xcalloc(1, sizeof *o);
    o->fn = fn;
    o->arg = arg;
    o->next = observers;
    observers = o;
}

void jobs_unobserve(void (*fn)(void *arg, const struct job *j), void *arg)
{
    for (struct job_observer **p = &observers; *p; p = &(*p)->next)
        if ((*p)->fn == fn && (*p)->arg == arg) {
            struct job_observer *o = *p;
            *p = o->next;
            free(o);
            return;
        }
}

/* An observer may unobserve itself (its client went away) while told. */
static void tell_observers(const struct job *j)
{
    for (struct job_observer *o = observers, *next; o; o = next) {
        next = o->next;
        o->fn(o->arg, j);
    }
}

/* Watchers unsubscribed while they were being told (ops NULL) are freed
 * once no update() call is under way. */
static void drop_unsubscribed(struct job *j)
{
    for (struct job_watcher **p = &j->watchers; *p;) {
        struct job_watcher *w = *p;
        if (w->ops) {
            p = &w->next;
            continue;
        }
        *p = w->next;
        free(w);
    }
}

static void notify(struct job *j)
{
    j->notifying++;
    for (struct job_watcher *w = j->watchers; w; w = w->next)
        if (w->ops)
            w->ops->update(w->arg, j);
    if (--j->notifying == 0)
        drop_unsubscribed(j);
    tell_observers(j);
}

struct job *job_create(struct agent *a, const struct job_ops *ops, const char *vm, json_t *params)
{
    return job_create_in(a, ops, vm, params, JOB_RUNNING);
}

struct job *job_create_in(struct agent *a, const struct job_ops *ops, const char *vm, json_t *params,
                          enum job_state state)
{
    struct job *j = xcalloc(1, sizeof *j);
    j->agent = a;
    j->ops = ops;
    j->vm = vm ? xstrdup(vm) : NULL;
    j->state = state;
    j->phase = xstrdup(state == JOB_QUEUED ? "queued" : "starting");
    j->params = params ? params : json_object();
    j->created_ms = wall_ms();
    json_t *rec = job_to_json(j);
    j->id = journal_job_insert(a->journal, rec);
    json_decref(rec);
    j->next = a->jobs;
    a->jobs = j;
    metrics_job_started(j);
    tell_observers(j);
    log_info("job %lld (%s%s%s) started", (long long)j->id, ops->kind, vm ? " " : "", vm ? vm : "");
    return j;
}

void job_set_phase(struct job *j, const char *phase)
{
    free(j->phase);
    j->phase = xstrdup(phase);
    journal_write(j);
    notify(j);
}

void job_set_running(struct job *j)
{
    j->state = JOB_RUNNING;
    json_decref(j->progress);
    j->progress = NULL;
    journal_write(j);
    notify(j);
}

void job_set_waiting(struct job *j, int position, const char *waiting_for)
{
    job_set_waiting_why(j, position, waiting_for, NULL);
}

void job_set_waiting_why(struct job *j, int position, const char *waiting_for, const char *reason)
{
    json_t *p = json_pack("{s:i, s:s, s:s?}", "queue_position", position, "waiting_for", waiting_for, "reason", reason);
    if (j->progress && json_equal(j->progress, p)) {
        json_decref(p);
        return;
    }
    json_decref(j->progress);
    j->progress = p;
    journal_write(j);
    notify(j);
}

void job_set_progress(struct job *j, json_t *progress)
{
    json_decref(j->progress);
    j->progress = progress;
    if (now_ms() - j->last_journal_ms >= 1000)
        journal_write(j);
    notify(j);
}

static void unlink_job(struct job *j)
{
    for (struct job **p = &j->agent->jobs; *p; p = &(*p)->next)
        if (*p == j) {
            *p = j->next;
            return;
        }
}

void job_set_owner(struct job *j, const char *owner)
{
    free(j->owner);
    j->owner = owner ? xstrdup(owner) : NULL;
    journal_write(j);
}

int jobs_count(struct agent *a, const char *owner)
{
    int n = 0;
    for (const struct job *j = a->jobs; j; j = j->next)
        n += !owner || (j->owner && !strcmp(j->owner, owner));
    return n;
}

static void job_free(struct job *j)
{
    free(j->vm);
    free(j->owner);
    free(j->phase);
    json_decref(j->params);
    json_decref(j->progress);
    json_decref(j->result);
    json_decref(j->error);
    free(j);
}

static void job_finish_in(struct job *j, enum job_state st)
{
    j->state = st;
    j->finished_ms = wall_ms();
    journal_write(j);
    log_info("job %lld (%s) %s", (long long)j->id, j->ops->kind, job_state_name(st));
    unlink_job(j);
    metrics_job_ended(j);
    tell_observers(j);
    struct job_watcher *w = j->watchers;
    j->watchers = NULL;
    while (w) {
        struct job_watcher *next = w->next;
        if (w->ops)
            w->ops->ended(w->arg, j);
        free(w);
        w = next;
    }
    job_free(j);
}

void job_succeed(struct job *j, json_t *result)
{
    j->result = result;
    job_finish_in(j, JOB_SUCCEEDED);
}

void job_fail(struct job *j, json_t *error)
{
    j->error = error;
    const char *code = json_string_value(json_object_get(error, "code"));
    job_finish_in(j, code && !strcmp(code, ERR_CANCELLED) ? JOB_CANCELLED : JOB_FAILED);
}

struct job *job_find(struct agent *a, int64_t id)
{
    for (struct job *j = a->jobs; j; j = j->next)
        if (j->id == id)
            return j;
    return NULL;
}

struct job *job_active_for_vm(struct agent *a, const char *vm)
{
    for (struct job *j = a->jobs; j; j = j->next)
        if (j->vm && !strcmp(j->vm, vm))
            return j;
    return NULL;
}

void job_subscribe(struct job *j, const struct job_subscriber_ops *ops, void *arg)
{
    struct job_watcher *w = xcalloc(1, sizeof *w);
    w->ops = ops;
    w->arg = arg;
    w->next = j->watchers;
    j->watchers = w;
}

void job_unsubscribe(struct job *j, const struct job_subscriber_ops *ops, void *arg)
{
    for (struct job_watcher **p = &j->watchers; *p; p = &(*p)->next) {
        struct job_watcher *w = *p;
        if (w->ops != ops || w->arg != arg)
            continue;
        if (j->notifying) {
            w->ops = NULL;
        } else {
            *p = w->next;
            free(w);
        }
        return;
    }
}

int job_request_cancel(struct job *j, json_t **err)
{
    if (!j->ops->cancel) {
        *err = proto_error(ERR_STATE, NULL, "job %lld (%s) cannot be cancelled", (long long)j->id, j->ops->kind);
        return -1;
    }
    j->cancel_requested = true;
    j->ops->cancel(j);   /* may job_finish_in (and free) the job */
    return 0;
}

void job_mark_cancel_requested(struct job *j) { j->cancel_requested = true; }

struct job *job_adopt(struct agent *a, const struct job_ops *ops, int64_t id)
{
    json_t *rec = journal_job_get(a->journal, id);
    const char *state = json_string_value(json_object_get(rec, "state"));
    if (!rec || !state || (strcmp(state, "running") && strcmp(state, "queued"))) {
        json_decref(rec);
        return NULL;
    }
    struct job *j = xcalloc(1, sizeof *j);
    j->agent = a;
    j->ops = ops;
    j->id = id;
    const char *vm = json_string_value(json_object_get(rec, "vm"));
    j->vm = vm ? xstrdup(vm) : NULL;
    const char *owner = json_string_value(json_object_get(rec, "owner"));
    j->owner = owner ? xstrdup(owner) : NULL;
    j->state = !strcmp(state, "queued") ? JOB_QUEUED : JOB_RUNNING;
    j->phase = xstrdup(j->state == JOB_QUEUED ? "queued" : "recovering");
    j->params = json_incref(json_object_get(rec, "params"));
    if (!j->params)
        j->params = json_object();
    j->created_ms = (uint64_t)json_integer_value(json_object_get(rec, "created_ms"));
    json_decref(rec);
    j->next = a->jobs;
    a->jobs = j;
    journal_write(j);
    return j;
}

void jobs_recover(struct agent *a)
{
    static const char *const live[] = {"running", "queued", NULL};
    json_t *recs = journal_jobs(a->journal, live, 100000);
    size_t i;
    json_t *rec;
    json_array_foreach(recs, i, rec) {
        json_int_t id = json_integer_value(json_object_get(rec, "id"));
        if (job_find(a, id))
            continue;   /* adopted by its module (e.g. a migration being resolved) */
        json_object_set_new(rec, "state", json_string("failed"));
        json_object_set_new(rec, "finished_ms", json_integer((json_int_t)wall_ms()));
        json_object_set_new(rec, "error",
            proto_error(ERR_INTERNAL, "check the VM's state with `vmove vm show` and retry",
                        "interrupted: vmoved stopped while the job ran"));
        journal_job_update(a->journal, id, rec);
        log_warn("job %lld was interrupted by a vmoved restart; marked failed", (long long)id);
    }
    json_decref(recs);
}

void jobs_free_all(struct agent *a)
{
    while (a->jobs) {
        struct job *j = a->jobs;
        a->jobs = j->next;
        struct job_watcher *w = j->watchers;
        while (w) {
            struct job_watcher *next = w->next;
            if (w->ops)
                w->ops->dropped(w->arg, proto_error(ERR_UNAVAILABLE, "retry once vmoved is back",
                                                    "vmoved is shutting down"));
            free(w);
            w = next;
        }
        job_free(j);
    }
}
