/* jobs.list, jobs.show, jobs.watch, jobs.cancel */
#include "api/methods.h"

#include <stdlib.h>
#include <string.h>

#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/acl.h"
#include "api/api.h"
#include "core/jobs.h"
#include "core/journal.h"

/* ---- streams: requests that stay open while jobs change ------------------ */

/* Every open stream (jobs.watch, a job-starting request that waits, and
 * jobs.follow), for the quotas.  One agent per process. */
struct stream {
    struct stream *next;
    struct api_req *r;
    int64_t job;                 /* the job it watches; 0: jobs.follow (all jobs) */
};
static struct stream *streams;
static const struct job_subscriber_ops request_watcher;

static void stream_add(struct api_req *r, int64_t job)
{
    struct stream *s = xcalloc(1, sizeof *s);
    s->r = r;
    s->job = job;
    s->next = streams;
    streams = s;
}

static void stream_remove(struct api_req *r)
{
    for (struct stream **p = &streams; *p; p = &(*p)->next)
        if ((*p)->r == r) {
            struct stream *s = *p;
            *p = s->next;
            free(s);
            return;
        }
}

/* A watch whose client hung up is closed here, not when its job ends: the
 * job may run for hours, and the stream would hold its quota place all that
 * time (jobs.follow streams are closed by their connection's close hook). */
static void streams_prune(struct agent *a)
{
    for (struct stream **p = &streams; *p;) {
        struct stream *s = *p;
        if (!s->job || api_req_connected(s->r)) {
            p = &s->next;
            continue;
        }
        struct job *j = job_find(a, s->job);
        if (j)
            job_unsubscribe(j, &request_watcher, s->r);
        *p = s->next;
        api_fail(s->r, proto_error(ERR_UNAVAILABLE, NULL, "the client went away"));   /* dropped: closed */
        free(s);
    }
}

/* Open streams: all (who NULL), or those of who. */
static int streams_count(const struct principal *who)
{
    int n = 0;
    for (const struct stream *s = streams; s; s = s->next)
        n += !who || (s->r->who.kind == who->kind && !strcmp(s->r->who.name, who->name));
    return n;
}

static bool over(struct api_req *r, int have, int max, const char *fmt, const char *subject, const char *hint)
{
    if (have < max)
        return false;
    char msg[400];
    snprintf(msg, sizeof msg, fmt, subject, have, max);
    /* The CLI starts a job, then watches it: say that the job is not lost. */
    json_t *id = json_object_get(r->params, "id");
    struct job *j = !strcmp(r->method, "jobs.watch") && json_is_integer(id) ? job_find(r->agent, json_integer_value(id)) : NULL;
    if (j)
        api_failf(r, ERR_UNAVAILABLE, hint, "%s; job %lld (%s) goes on, unfollowed: `vmove jobs show %lld` tells "
                  "how it ends", msg, (long long)j->id, j->ops->kind, (long long)j->id);
    else
        api_fail(r, proto_error(ERR_UNAVAILABLE, hint, "%s", msg));
    return true;
}

bool api_quota_admit(struct api_req *r, unsigned flags)
{
    if (r->who.kind == PRINCIPAL_LOCAL_ROOT)
        return true;   /* the host's admin: counted, never refused */
    const struct agent_quotas *q = &r->agent->quotas;
    char who[96], host[96];
    principal_describe(&r->who, who, sizeof who);
    snprintf(host, sizeof host, "host %s", r->agent->name);
    static const char jobs_hint[] = "wait for some to end, or cancel one: `vmove jobs list`, `vmove jobs cancel ID`";
    static const char streams_hint[] = "close a `vmove jobs watch` (or a command waiting for its job), or run "
                                       "the command with --no-wait and follow it with `vmove jobs show ID`";
    if ((flags & API_JOB) &&
        (over(r, jobs_count(r->agent, NULL), q->max_jobs,
              "%s has %d jobs queued or running, the most it takes (%d)", host, jobs_hint) ||
         over(r, jobs_count(r->agent, who), q->max_jobs_per_principal,
              "%s has %d jobs queued or running here, the most one principal may (%d)", who, jobs_hint)))
        return false;
    bool stream = (flags & API_STREAM) || ((flags & API_JOB) && !json_is_false(json_object_get(r->params, "wait")));
    if (stream)
        streams_prune(r->agent);
    return !stream ||
           !(over(r, streams_count(NULL), q->max_streams,
                  "%s has %d job streams open, the most it serves (%d)", host, streams_hint) ||
             over(r, streams_count(&r->who), q->max_streams_per_principal,
                  "%s has %d job streams open here, the most one principal may (%d)", who, streams_hint));
}

/* ---- following a job: a client's request as a job subscriber ------------ */

static void watcher_update(void *arg, const struct job *j) { api_event(arg, "job", job_to_json(j)); }

static void watcher_ended(void *arg, const struct job *j)
{
    stream_remove(arg);
    api_reply(arg, job_to_json(j));
}

static void watcher_dropped(void *arg, json_t *error)
{
    stream_remove(arg);
    api_fail(arg, error);
}

static const struct job_subscriber_ops request_watcher = {
    .update = watcher_update,
    .ended = watcher_ended,
    .dropped = watcher_dropped,
};

void api_job_watch(struct agent *a, int64_t id, struct api_req *r)
{
    struct job *j = job_find(a, id);
    if (!j) {
        json_t *rec = journal_job_get(a->journal, id);
        if (!rec) {
            api_failf(r, ERR_NOT_FOUND, "`vmove jobs list` shows the jobs", "no job %lld", (long long)id);
            return;
        }
        api_reply(r, rec);
        return;
    }
    job_subscribe(j, &request_watcher, r);
    stream_add(r, id);
    api_event(r, "job", job_to_json(j));
}

void api_job_answer(struct job *j, struct api_req *r, bool wait)
{
    char who[96];
    principal_describe(&r->who, who, sizeof who);
    job_set_owner(j, who);
    if (wait)
        api_job_watch(j->agent, j->id, r);
    else
        api_reply(r, json_pack("{s:I}", "job", (json_int_t)j->id));
}

static void jobs_list(struct api_req *r)
{
    long long limit;
    bool all;
    if (api_param_int(r, "limit", 50, &limit) < 0 || api_limit_check(r, limit) < 0 ||
        api_param_bool(r, "all", false, &all) < 0)
        return;
    static const char *const live[] = {"running", "queued", NULL};
    json_t *recs = journal_jobs(r->agent->journal, all ? NULL : live, (int)limit);
    /* Live jobs: the in-memory record is fresher than the journal's. */
    size_t i;
    json_t *rec;
    json_array_foreach(recs, i, rec) {
        struct job *j = job_find(r->agent, json_integer_value(json_object_get(rec, "id")));
        if (j)
            json_array_set_new(recs, i, job_to_json(j));
    }
    api_reply(r, json_pack("{s:o}", "jobs", recs));
}

static int job_id_param(struct api_req *r, long long *id)
{
    if (api_param_int(r, "id", -1, id) < 0)
        return -1;
    if (*id < 0) {
        api_failf(r, ERR_INVALID, NULL, "missing job id");
        return -1;
    }
    return 0;
}

static void jobs_show(struct api_req *r)
{
    long long id;
    if (job_id_param(r, &id) < 0)
        return;
    struct job *j = job_find(r->agent, id);
    json_t *rec = j ? job_to_json(j) : journal_job_get(r->agent->journal, id);
    if (!rec) {
        api_failf(r, ERR_NOT_FOUND, "`vmove jobs list --all` shows the jobs", "no job %lld", id);
        return;
    }
    /* vm.read, or the host that relayed this job for a user may follow it. */
    char who[96];
    principal_describe(&r->who, who, sizeof who);
    const char *by = json_string_value(json_object_get(json_object_get(rec, "params"), "delegated_by"));
    if (!acl_allows_who(r->agent, &r->who, RIGHT_VM_READ) && !(by && !strcmp(by, who))) {
        json_decref(rec);
        api_fail(r, acl_denial(r->agent, who, RIGHT_VM_READ));
        return;
    }
    api_reply(r, rec);
}

static void jobs_watch(struct api_req *r)
{
    long long id;
    if (job_id_param(r, &id) < 0)
        return;
    api_job_watch(r->agent, id, r);
}

/* Every job's changes as "job" events until the client goes away: the
 * console's live jobs page (Server-Sent Events).  It never replies. */
static void follow_update(void *arg, const struct job *j)
{
    struct api_req *r = arg;
    if (api_req_connected(r))
        api_event(r, "job", job_to_json(j));
}

static void follow_closed(void *arg)
{
    struct api_req *r = arg;
    jobs_unobserve(follow_update, r);
    stream_remove(r);
    api_fail(r, proto_error(ERR_UNAVAILABLE, NULL, "the client went away"));   /* dropped: closed */
}

static void jobs_follow(struct api_req *r)
{
    jobs_observe(follow_update, r);
    stream_add(r, 0);
    api_sink_on_close(r->sink, follow_closed, r);
}

static void jobs_cancel(struct api_req *r)
{
    long long id;
    if (job_id_param(r, &id) < 0)
        return;
    struct job *j = job_find(r->agent, id);
    if (!j) {
        json_t *rec = journal_job_get(r->agent->journal, id);
        if (!rec)
            api_failf(r, ERR_NOT_FOUND, NULL, "no job %lld", id);
        else {
            api_failf(r, ERR_STATE, NULL, "job %lld has already finished (%s)", id,
                      json_string_value(json_object_get(rec, "state")));
            json_decref(rec);
        }
        return;
    }
    if (!j->ops->cancel) {
        api_failf(r, ERR_STATE, NULL, "job %lld (%s) cannot be cancelled", id, j->ops->kind);
        return;
    }
    /* The record as it was when asked: the cancel may finish the job. */
    job_mark_cancel_requested(j);
    json_t *rec = job_to_json(j), *err = NULL;
    if (job_request_cancel(j, &err) < 0) {
        json_decref(rec);
        api_fail(r, err);
        return;
    }
    api_reply(r, rec);
}

const struct api_method api_job_methods[] = {
    {"jobs.list", jobs_list, RIGHT_VM_READ, 0},
    {"jobs.show", jobs_show, 0, API_HOST_OK},   /* a relaying host follows its job */
    {"jobs.watch", jobs_watch, RIGHT_VM_READ, API_STREAM},
    {"jobs.follow", jobs_follow, RIGHT_VM_READ, API_STREAM},
    {"jobs.cancel", jobs_cancel, RIGHT_VM_MANAGE, 0},
    {NULL, NULL, 0, 0},
};
