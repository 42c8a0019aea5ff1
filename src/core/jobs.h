/* Jobs: long operations (start, stop, and later migrations) that a client
 * can list, watch and cancel, possibly from another connection.
 *
 * State machine:  queued -> running -> succeeded | failed | cancelled
 * Every transition and phase change is written to the journal before
 * watchers are told, so `jobs show` after a vmoved restart tells the truth. */
#ifndef VMOVE_JOBS_H
#define VMOVE_JOBS_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct agent;

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_SUCCEEDED, JOB_FAILED, JOB_CANCELLED };

struct job;
struct job_ops {
    const char *kind;                 /* "vm.start", "vm.stop", "migrate", ... */
    /* Asked to stop; the job finishes (cancelled or otherwise) when it can. */
    void (*cancel)(struct job *j);
};

struct job_watcher;

struct job {
    struct job *next;
    struct agent *agent;
    int64_t id;
    const struct job_ops *ops;
    void *priv;
    char *vm;
    char *owner;                      /* who asked for it ("user:alice"), NULL for the host's own work */
    enum job_state state;
    char *phase;
    json_t *params;
    json_t *progress;
    json_t *result;
    json_t *error;
    uint64_t created_ms, finished_ms;
    uint64_t last_journal_ms;
    bool cancel_requested;
    struct job_watcher *watchers;
    int notifying;                    /* depth of update() calls under way: unsubscribing then only marks */
};

struct job *job_create(struct agent *a, const struct job_ops *ops, const char *vm, json_t *params);
/* The same, starting in the given state (JOB_QUEUED for work that waits for a slot). */
struct job *job_create_in(struct agent *a, const struct job_ops *ops, const char *vm, json_t *params,
                          enum job_state state);
/* queued -> running (journaled). */
void job_set_running(struct job *j);
/* A queued job's place: position in the queue and the host it waits for. */
void job_set_waiting(struct job *j, int position, const char *waiting_for);
/* The same, with why it waits in words (the last peer error, e.g.
 * "connection refused at 10.0.0.2:7070"), shown by move and jobs list/show. */
void job_set_waiting_why(struct job *j, int position, const char *waiting_for, const char *reason);
void job_set_phase(struct job *j, const char *phase);
/* Progress is journaled at most once a second; watchers get every update. */
void job_set_progress(struct job *j, json_t *progress);
void job_succeed(struct job *j, json_t *result);
void job_fail(struct job *j, json_t *error);
json_t *job_to_json(const struct job *j);
/* The principal a job counts against (docs/SECURITY.md, "Resource limits"). */
void job_set_owner(struct job *j, const char *owner);
/* Jobs queued or running: all of them (owner NULL), or those of owner. */
int jobs_count(struct agent *a, const char *owner);
const char *job_state_name(enum job_state s);

struct job *job_find(struct agent *a, int64_t id);
/* The job for this VM that is still running, if any. */
struct job *job_active_for_vm(struct agent *a, const char *vm);
/* Someone following a job (a client's `jobs watch`, a drain following its
 * migrations): update() after every change, then exactly one of ended()
 * (the job finished; j is freed right after) or dropped() (vmoved is
 * shutting down; error is the caller's to free or pass on). */
struct job_subscriber_ops {
    void (*update)(void *arg, const struct job *j);
    void (*ended)(void *arg, const struct job *j);
    void (*dropped)(void *arg, json_t *error);
};
void job_subscribe(struct job *j, const struct job_subscriber_ops *ops, void *arg);
/* Stop following j: none of ops is called for arg again.  Safe while j's
 * watchers are being told of a change. */
void job_unsubscribe(struct job *j, const struct job_subscriber_ops *ops, void *arg);
/* Ask the job to stop (its module's cancel); the job may be finished and
 * freed before this returns.  -1 with *err if this kind cannot be cancelled. */
int job_request_cancel(struct job *j, json_t **err);
/* Only mark it (a queued job that its owner will drop when it is its turn). */
void job_mark_cancel_requested(struct job *j);
/* Re-create a job that the journal says was running, so that its module can
 * finish it after a restart.  NULL if it is not (or no longer) running. */
struct job *job_adopt(struct agent *a, const struct job_ops *ops, int64_t id);
/* Jobs that the journal says were running when vmoved last stopped, and that
 * no module adopted: marked failed. */
void jobs_recover(struct agent *a);
void jobs_free_all(struct agent *a);
/* Told of every job's creation, change and end (with the job's record at
 * that moment); fn may unobserve itself while it is told. */
void jobs_observe(void (*fn)(void *arg, const struct job *j), void *arg);
void jobs_unobserve(void (*fn)(void *arg, const struct job *j), void *arg);
#endif
