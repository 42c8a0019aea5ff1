/* One block-commit followed to its end (see block/commit.h). */
#include "block/commit.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "block/job.h"
#include "common/log.h"
#include "common/util.h"

#define QMP_TIMEOUT_MS 30000
#define POLL_MS 200
#define POLL_PIVOT_MS 5            /* after the pivot: the guest is paused until it ends */

struct block_commit {
    struct event_base *base;
    struct qmon_owner *owner;
    struct block_commit_config cfg;       /* strings owned */
    const struct block_commit_ops *ops;
    void *arg;
    struct block_jobs jobs;
    struct event *timer;
    bool started;                         /* block-commit accepted, or the job adopted */
    bool ready_told, finalize_sent, pivot_sent, ended;
};

static char *dup0(const char *s) { return s ? xstrdup(s) : NULL; }

struct block_commit *block_commit_new(struct event_base *base, struct qmon_owner *owner,
                                      const struct block_commit_config *cfg, const struct block_commit_ops *ops,
                                      void *arg)
{
    struct block_commit *bc = xcalloc(1, sizeof *bc);
    bc->base = base;
    bc->owner = owner;
    bc->cfg = (struct block_commit_config){dup0(cfg->job_id), dup0(cfg->device), dup0(cfg->top_node),
                                           dup0(cfg->base_node), dup0(cfg->backing_file), cfg->active, cfg->speed};
    bc->ops = ops;
    bc->arg = arg;
    block_jobs_track(&bc->jobs, cfg->job_id);
    return bc;
}

void block_commit_free(struct block_commit *bc)
{
    if (!bc)
        return;
    if (bc->timer)
        event_free(bc->timer);
    block_jobs_free(&bc->jobs);
    free((char *)bc->cfg.job_id), free((char *)bc->cfg.device), free((char *)bc->cfg.top_node);
    free((char *)bc->cfg.base_node), free((char *)bc->cfg.backing_file);
    free(bc);
}

static void end(struct block_commit *bc, const char *error)
{
    if (bc->ended)
        return;
    bc->ended = true;
    bc->ops->on_done(bc->arg, error);
}

static void poll_later(struct block_commit *bc);

static void on_finalized(void *arg, const qmp_error_t *err)
{
    struct block_commit *bc = arg;
    if (err)
        end(bc, err->desc);
}

/* A tracked job's status decides the next step; its absence ends it. */
static void commit_on_jobs(void *arg, const struct qmon_block_job *jobs, size_t n, const qmp_error_t *err)
{
    struct block_commit *bc = arg;
    if (err) {
        end(bc, err->desc);
        return;
    }
    block_jobs_update(&bc->jobs, jobs, n);
    const struct block_job_state *s = block_jobs_get(&bc->jobs, bc->cfg.job_id);
    if (!s->listed) {
        end(bc, NULL);
        return;
    }
    if (bc->cfg.active && s->ready && !bc->ready_told) {
        bc->ready_told = true;
        bc->ops->on_ready(bc->arg);
    } else if (!bc->cfg.active && s->status && !strcmp(s->status, "pending") && !bc->finalize_sent) {
        bc->finalize_sent = true;
        if (qmon_job_finalize(bc->ops->mon(bc->arg), bc->owner, bc->cfg.job_id, QMP_TIMEOUT_MS, on_finalized,
                              bc) < 0) {
            end(bc, "QEMU's monitor is gone");
            return;
        }
    }
    if (!bc->ended)
        poll_later(bc);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    struct block_commit *bc = arg;
    if (qmon_query_block_jobs(bc->ops->mon(bc->arg), bc->owner, QMP_TIMEOUT_MS, commit_on_jobs, bc) < 0)
        end(bc, "QEMU's monitor is gone");
}

static void poll_later(struct block_commit *bc)
{
    if (!bc->timer)
        bc->timer = evtimer_new(bc->base, on_poll, bc);
    struct timeval tv = {0, (bc->pivot_sent ? POLL_PIVOT_MS : POLL_MS) * 1000};
    evtimer_add(bc->timer, &tv);
}

static void on_commit(void *arg, const qmp_error_t *err)
{
    struct block_commit *bc = arg;
    if (err) {
        end(bc, err->desc);
        return;
    }
    bc->started = true;
    poll_later(bc);
}

/* Adopt a job QEMU still runs (a restart mid-merge), or start it. */
static void on_first_jobs(void *arg, const struct qmon_block_job *jobs, size_t n, const qmp_error_t *err)
{
    struct block_commit *bc = arg;
    if (err) {
        end(bc, err->desc);
        return;
    }
    block_jobs_update(&bc->jobs, jobs, n);
    if (block_jobs_get(&bc->jobs, bc->cfg.job_id)->listed) {
        log_info("block-commit %s: adopting the job QEMU still runs", bc->cfg.job_id);
        bc->started = true;
        commit_on_jobs(bc, jobs, n, NULL);
        return;
    }
    struct qmon_commit c = {.job_id = bc->cfg.job_id, .device = bc->cfg.device, .top_node = bc->cfg.top_node,
                            .base_node = bc->cfg.base_node, .backing_file = bc->cfg.active ? NULL : bc->cfg.backing_file,
                            .has_auto_finalize = !bc->cfg.active, .auto_finalize = false, .speed = bc->cfg.speed};
    if (qmon_block_commit(bc->ops->mon(bc->arg), bc->owner, &c, QMP_TIMEOUT_MS, on_commit, bc) < 0)
        end(bc, "QEMU's monitor is gone");
}

void block_commit_start(struct block_commit *bc)
{
    if (qmon_query_block_jobs(bc->ops->mon(bc->arg), bc->owner, QMP_TIMEOUT_MS, on_first_jobs, bc) < 0)
        end(bc, "QEMU's monitor is gone");
}

static void on_completed(void *arg, const qmp_error_t *err)
{
    struct block_commit *bc = arg;
    if (err)
        end(bc, err->desc);
    else
        poll_later(bc);
}

void block_commit_pivot(struct block_commit *bc)
{
    if (bc->pivot_sent)
        return;
    bc->pivot_sent = true;
    if (bc->timer)
        event_del(bc->timer);   /* the next look comes right after the answer */
    if (qmon_block_job_complete(bc->ops->mon(bc->arg), bc->owner, bc->cfg.job_id, QMP_TIMEOUT_MS, on_completed,
                                bc) < 0)
        end(bc, "QEMU's monitor is gone");
}
