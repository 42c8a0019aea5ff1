/* The one mirror state machine (see block/mirror.h).  Grew out of the
 * storage move's: the batching, the rollback and its QEMU 7.2 workarounds
 * are that code's, the NBD target and the stall watch the migration's.
 *
 * Over 600 lines for now: start, follow, pivot and rollback all drive the
 * same per-disk state; the rollback (about a third) is the part to move to
 * its own file next, once it no longer carries QEMU 7.2's workarounds. */
#include "block/mirror.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/image.h"
#include "block/job.h"
#include "block/nbd.h"
#include "common/log.h"
#include "common/util.h"

#define POLL_MS 250
#define ROLLBACK_POLL_MS 200
#define FINISH_POLL_MS 20        /* the guest is stopped: every ms counts */
#define RECANCEL_MS 10000

enum state { BM_IDLE, BM_PREPARING, BM_MIRRORING, BM_READY, BM_PIVOTING, BM_FINISHING, BM_ROLLBACK, BM_FAILED,
             BM_DONE };

struct block_mirror {
    struct event_base *base;
    struct qmon_owner *owner;
    struct block_mirror_config cfg;   /* strings owned */
    const struct block_mirror_ops *ops;
    void *arg;
    struct block_mirror_disk *disks;
    size_t n;
    struct block_jobs jobs;           /* our jobs as QEMU last listed them */
    enum state state;
    struct event *timer;
    int batch;                        /* replies the current step still waits for */
    void (*after_batch)(struct block_mirror *bm);
    size_t cur;                       /* disk being pivoted */
    bool checking;                    /* query-block for a pivot in flight */
    uint64_t rollback_since, last_cancel_ms;
    bool paused_for_cancel;           /* we stopped the vCPUs to cancel safely */
    uint64_t last_copied, last_progress_ms;   /* the stall watch */
    struct image_op *create_op;       /* FILE: qemu-img create of disks[creating] */
    size_t creating;
};

static void poll_soon(struct block_mirror *bm, int ms);
static void pivot_next(struct block_mirror *bm);
static void adopt_pivot(struct block_mirror *bm, struct block_mirror_disk *d);

/* ---- lifetime and accessors ---------------------------------------------- */

static char *copy_or_null(const char *s) { return s ? xstrdup(s) : NULL; }

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void mirror_tick(evutil_socket_t fd, short what, void *arg);

struct block_mirror *block_mirror_new(struct event_base *base, struct qmon_owner *owner,
                                      const struct block_mirror_config *cfg, const struct block_mirror_ops *ops,
                                      void *arg, size_t n)
{
    struct block_mirror *bm = xcalloc(1, sizeof *bm);
    bm->base = base;
    bm->owner = owner;
    bm->cfg = *cfg;
    bm->cfg.name = xstrdup(cfg->name ? cfg->name : "?");
    bm->cfg.host = copy_or_null(cfg->host);
    bm->cfg.tls_creds = copy_or_null(cfg->tls_creds);
    bm->cfg.tls_hostname = copy_or_null(cfg->tls_hostname);
    bm->ops = ops;
    bm->arg = arg;
    bm->n = n;
    bm->disks = xcalloc(n ? n : 1, sizeof *bm->disks);
    for (size_t i = 0; i < n; i++)
        bm->disks[i].bm = bm;
    bm->timer = evtimer_new(base, mirror_tick, bm);
    return bm;
}

/* A target's qemu-img create still running: killed (the caller removes
 * the file, which d->created names). */
static void stop_create(struct block_mirror *bm)
{
    image_op_cancel(bm->create_op);
    bm->create_op = NULL;
}

void block_mirror_stop(struct block_mirror *bm)
{
    if (!bm)
        return;
    stop_create(bm);
    bm->state = BM_DONE;
    if (bm->timer)
        event_free(bm->timer);
    bm->timer = NULL;
}

void block_mirror_free(struct block_mirror *bm)
{
    if (!bm)
        return;
    block_mirror_stop(bm);
    for (size_t i = 0; i < bm->n; i++) {
        struct block_mirror_disk *d = &bm->disks[i];
        free(d->id), free(d->source), free(d->target), free(d->export_name), free(d->node), free(d->file_node);
        free(d->old_node), free(d->old_file_node), free(d->job_id), free(d->target_backing);
        free_strv(d->old_chain, d->n_old_chain);
    }
    free(bm->disks);
    block_jobs_free(&bm->jobs);
    free((char *)bm->cfg.name), free((char *)bm->cfg.host);
    free((char *)bm->cfg.tls_creds), free((char *)bm->cfg.tls_hostname);
    free(bm);
}

size_t block_mirror_count(const struct block_mirror *bm) { return bm->n; }

struct block_mirror_disk *block_mirror_disk(struct block_mirror *bm, size_t i) { return &bm->disks[i]; }

void block_mirror_set_disk(struct block_mirror *bm, size_t i, const char *id, const char *source,
                           const char *target, const char *export_name, uint64_t vsize, const char *node,
                           const char *file_node, const char *job_id)
{
    struct block_mirror_disk *d = &bm->disks[i];
    d->id = xstrdup(id);
    d->source = copy_or_null(source);
    d->target = copy_or_null(target);
    d->export_name = copy_or_null(export_name);
    d->vsize = vsize;
    d->node = xstrdup(node);
    d->file_node = copy_or_null(file_node);
    d->job_id = xstrdup(job_id);
    block_jobs_track(&bm->jobs, job_id);
}

void block_mirror_set_target_backing(struct block_mirror *bm, size_t i, const char *backing)
{
    free(bm->disks[i].target_backing);
    bm->disks[i].target_backing = copy_or_null(backing);
}

json_t *block_mirror_disk_record(const struct block_mirror_disk *d)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:s?, s:s, s:b, s:b, s:b}", "id", d->id, "source", d->source,
                     "target", d->target, "node", d->node, "file_node", d->file_node, "old_node", d->old_node,
                     "old_file_node", d->old_file_node, "job_id", d->job_id, "created", d->created,
                     "pivot_requested", d->pivot_requested, "pivoted", d->pivoted);
}

static char *rec_str(json_t *j, const char *key, bool null_ok)
{
    const char *s = json_string_value(json_object_get(j, key));
    return s ? xstrdup(s) : null_ok ? NULL : xstrdup("");
}

void block_mirror_disk_restore(struct block_mirror *bm, size_t i, json_t *j)
{
    struct block_mirror_disk *d = &bm->disks[i];
    d->id = rec_str(j, "id", false), d->source = rec_str(j, "source", false);
    d->target = rec_str(j, "target", false), d->node = rec_str(j, "node", false);
    d->file_node = rec_str(j, "file_node", false), d->job_id = rec_str(j, "job_id", false);
    d->old_node = rec_str(j, "old_node", true), d->old_file_node = rec_str(j, "old_file_node", true);
    d->created = json_is_true(json_object_get(j, "created"));
    d->pivot_requested = json_is_true(json_object_get(j, "pivot_requested"));
    d->pivoted = json_is_true(json_object_get(j, "pivoted"));
    block_jobs_track(&bm->jobs, d->job_id);
}

bool block_mirror_all_ready(const struct block_mirror *bm)
{
    for (size_t i = 0; i < bm->n; i++)
        if (!bm->disks[i].ready)
            return false;
    return true;
}

void block_mirror_totals(const struct block_mirror *bm, uint64_t *done, uint64_t *total)
{
    *done = *total = 0;
    for (size_t i = 0; i < bm->n; i++) {
        *done += bm->disks[i].offset;
        *total += bm->disks[i].len;
    }
}

int block_mirror_disk_remove(const struct block_mirror_disk *d)
{
    if (!d->created || !d->target)
        return 0;
    return unlink(d->target) < 0 && errno != ENOENT ? -1 : 0;
}

/* ---- plumbing ------------------------------------------------------------ */

/* NULL once QEMU is gone: qmon_* then refuse. */
static qmp_t *mon(const struct block_mirror *bm) { return bm->ops->mon(bm->arg); }

static bool alive(const struct block_mirror *bm) { return qmon_owner_alive(bm->owner) && bm->state != BM_DONE; }

static void state_changed(struct block_mirror *bm)
{
    if (bm->ops->on_state)
        bm->ops->on_state(bm->arg);
}

/* The owner hears of the first failure of a step; later ones (other
 * disks' replies) and those during a rollback add nothing. */
static void fail(struct block_mirror *bm, const struct block_mirror_failure *f)
{
    if (bm->state == BM_ROLLBACK || bm->state == BM_FAILED || bm->state == BM_DONE)
        return;
    bm->state = BM_FAILED;
    bm->ops->on_failed(bm->arg, f);
}

static void fail_simple(struct block_mirror *bm, enum block_mirror_fail what, const struct block_mirror_disk *d,
                        const char *desc)
{
    fail(bm, &(struct block_mirror_failure){.what = what, .disk = d, .desc = desc});
}

/* Batched commands: their callbacks only record results; the step's
 * after_batch decides what comes next once every reply is in.  A batched
 * call counts itself when qmon_* accepted it (rc 0). */
static void batch_sent(struct block_mirror *bm, int rc)
{
    if (rc == 0)
        bm->batch++;
}

/* First thing in a batched callback: true if it is the step's last reply. */
static bool batch_reply(struct block_mirror *bm) { return --bm->batch == 0; }

/* Last thing in a batched callback: the next step, once every reply is in
 * (and unless the callback ended the owner). */
static void batch_next(struct block_mirror *bm, bool last)
{
    if (!last || !qmon_owner_alive(bm->owner) || !bm->after_batch)
        return;
    void (*next)(struct block_mirror *) = bm->after_batch;
    bm->after_batch = NULL;
    next(bm);
}

/* Run next once every batched command issued so far has been answered. */
static void then(struct block_mirror *bm, void (*next)(struct block_mirror *))
{
    if (bm->batch == 0)
        next(bm);
    else
        bm->after_batch = next;
}

static struct block_mirror_disk *disk_by_job(struct block_mirror *bm, const char *job_id)
{
    for (size_t i = 0; job_id && i < bm->n; i++)
        if (!strcmp(bm->disks[i].job_id, job_id))
            return &bm->disks[i];
    return NULL;
}

/* query-block entry of the virtio-blk device <id>-dev (its qdev path is
 * /machine/peripheral/<id>-dev/virtio-backend), NULL if none or no medium. */
static const struct qmon_block_device *block_entry(const struct qmon_block_device *devs, size_t n, const char *id)
{
    char *qdev_id = xasprintf("%s-dev", id);
    const struct qmon_block_device *b = qmon_block_by_qdev(devs, n, qdev_id);
    free(qdev_id);
    return b && b->inserted ? b : NULL;
}

/* The node disk id runs on now, as QEMU says. */
static const char *device_node(const struct qmon_block_device *devs, size_t n, const char *id)
{
    const struct qmon_block_device *b = block_entry(devs, n, id);
    return b ? b->node_name : NULL;
}

static bool bm_qemu_gone(const struct block_mirror *bm) { return bm->ops->qemu_gone && bm->ops->qemu_gone(bm->arg); }

static void poll_soon(struct block_mirror *bm, int ms)
{
    if (!alive(bm) || !bm->timer)
        return;   /* ended from inside the caller's callback */
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(bm->timer, &tv);
}

/* ---- progress ------------------------------------------------------------ */

/* offset and len from query-block-jobs or a BLOCK_JOB_READY event. */
static void update_disk(struct block_mirror_disk *d, uint64_t offset, uint64_t len, bool ready)
{
    uint64_t now = now_ms();
    d->offset = offset;
    d->len = len;
    if (d->last_ms && now > d->last_ms) {
        double inst = (double)(d->offset - (d->offset >= d->last_offset ? d->last_offset : d->offset)) * 1000.0 /
                      (double)(now - d->last_ms);
        d->rate = d->rate > 0 ? 0.7 * d->rate + 0.3 * inst : inst;
    }
    d->last_offset = d->offset;
    d->last_ms = now;
    if (ready && !d->ready) {
        d->ready = true;
        d->t_ready = now;
    }
}

/* Every disk in sync: the owner decides (pivot, or keep them so). */
static void check_ready(struct block_mirror *bm)
{
    if (bm->state != BM_MIRRORING || !block_mirror_all_ready(bm))
        return;
    bm->state = BM_READY;
    bm->ops->on_ready(bm->arg);
}

/* Copying disks that stop moving (or a QEMU that stops answering) means a
 * link is gone: the mirror would wait for TCP to give up, for many minutes,
 * with the guest's writes blocked behind it. */
static bool stalled(struct block_mirror *bm, const qmp_error_t *err, uint64_t copied)
{
    if (!bm->cfg.stall_ms || (err && err->kind != QMP_ERR_TIMEOUT))
        return false;
    if (!err && (copied != bm->last_copied || !bm->last_progress_ms)) {
        bm->last_copied = copied;
        bm->last_progress_ms = now_ms();
        return false;
    }
    return bm->last_progress_ms && now_ms() - bm->last_progress_ms > (uint64_t)bm->cfg.stall_ms;
}

static void pivot_check(struct block_mirror *bm);

/* Which of our jobs QEMU lists; a job that is gone before its pivot failed,
 * one gone after block-job-complete is checked with query-block. */
static void scan_jobs(struct block_mirror *bm, const struct qmon_block_job *jobs, size_t n, bool *vanished,
                      bool *pivot_gone)
{
    block_jobs_update(&bm->jobs, jobs, n);
    *vanished = *pivot_gone = false;
    for (size_t k = 0; k < bm->n; k++) {
        struct block_mirror_disk *d = &bm->disks[k];
        const struct block_job_state *st = block_jobs_get(&bm->jobs, d->job_id);
        bool listed = st && st->listed;
        if (listed)
            update_disk(d, st->offset, st->len, st->ready);
        if (!listed && d->mirroring && !d->pivot_requested)
            *vanished = true;
        if (!listed && d->pivot_requested && !d->pivoted)
            *pivot_gone = true;
    }
}

static void on_jobs(void *arg, const struct qmon_block_job *jobs, size_t n, const qmp_error_t *err)
{
    struct block_mirror *bm = arg;
    if (bm->state != BM_MIRRORING && bm->state != BM_PIVOTING)
        return;
    if (err) {   /* a reconnect, or QEMU going away: the next poll tells */
        if (stalled(bm, err, 0))
            fail_simple(bm, BLOCK_MIRROR_FAIL_STALLED, NULL, err->desc);
        else
            poll_soon(bm, POLL_MS);
        return;
    }
    bool vanished, pivot_gone;
    scan_jobs(bm, jobs, n, &vanished, &pivot_gone);
    if (bm->ops->on_progress)
        bm->ops->on_progress(bm->arg);
    if (!qmon_owner_alive(bm->owner))
        return;
    uint64_t done, total;
    block_mirror_totals(bm, &done, &total);
    if (vanished) {
        fail_simple(bm, BLOCK_MIRROR_FAIL_VANISHED, NULL, NULL);
        return;
    }
    if (bm->state == BM_MIRRORING && stalled(bm, NULL, done)) {
        fail_simple(bm, BLOCK_MIRROR_FAIL_STALLED, NULL, NULL);
        return;
    }
    if (pivot_gone)
        pivot_check(bm);
    check_ready(bm);
    if (bm->state == BM_MIRRORING || bm->state == BM_PIVOTING)
        poll_soon(bm, POLL_MS);
}

/* ---- pivot, one disk at a time (FILE) ------------------------------------ */

static void on_old_del(void *arg, const qmp_error_t *err)
{
    struct block_mirror_disk *d = arg;
    bool last = batch_reply(d->bm);
    if (err) {
        log_warn("%s: blockdev-del of the old nodes of %s: %s", d->bm->cfg.name, d->id, err->desc);
        d->old_released = false;
    }
    batch_next(d->bm, last);
}

/* blockdev-del of one of d's nodes, as part of the current batch. */
static void del_node(struct block_mirror_disk *d, const char *node, qmon_done_fn cb)
{
    batch_sent(d->bm, qmon_blockdev_del(mon(d->bm), d->bm->owner, node, d->bm->cfg.timeout_ms, cb, d));
}

/* QEMU runs disk d from its target now: the owner (its config), the
 * record, then the old nodes (qcow2, then its file; -blockdev added them,
 * so they are ours to close) as a batch. */
static void adopt_pivot(struct block_mirror *bm, struct block_mirror_disk *d)
{
    d->pivoted = true;
    d->pivot_ms = d->t_pivot ? now_ms() - d->t_pivot : 0;
    bm->ops->on_pivoted(bm->arg, d);
    state_changed(bm);
    d->old_released = d->old_node && d->old_file_node;
    if (d->old_node)
        del_node(d, d->old_node, on_old_del);
    if (d->old_file_node)
        del_node(d, d->old_file_node, on_old_del);
    /* In chain order: each node is free once the one above it is gone
     * (QMP runs commands in order). */
    for (size_t k = 0; k < d->n_old_chain; k++)
        del_node(d, d->old_chain[k], on_old_del);
}

static void on_pivot_block(void *arg, const struct qmon_block_device *devs, size_t n, const qmp_error_t *err)
{
    struct block_mirror *bm = arg;
    bm->checking = false;
    struct block_mirror_disk *d = &bm->disks[bm->cur];
    if (bm->state != BM_PIVOTING || d->pivoted)
        return;
    if (err) {
        poll_soon(bm, POLL_MS);   /* the poll calls pivot_check again */
        return;
    }
    const char *node = device_node(devs, n, d->id);
    if (node && !strcmp(node, d->node)) {
        adopt_pivot(bm, d);
        then(bm, pivot_next);
        return;
    }
    /* The job ended but the device kept its old node: the pivot failed. */
    d->pivot_requested = false;
    d->mirroring = false;
    fail(bm, &(struct block_mirror_failure){.what = BLOCK_MIRROR_FAIL_PIVOT_NODE, .disk = d, .node = node});
}

static void pivot_check(struct block_mirror *bm)
{
    if (bm->checking)
        return;
    bm->checking = true;
    if (qmon_query_block(mon(bm), bm->owner, bm->cfg.timeout_ms, on_pivot_block, bm) < 0)
        bm->checking = false;
}

static void on_complete_sent(void *arg, const qmp_error_t *err)
{
    struct block_mirror_disk *d = arg;
    if (!err || d->pivoted)
        return;
    d->pivot_requested = false;
    state_changed(d->bm);
    fail_simple(d->bm, BLOCK_MIRROR_FAIL_PIVOT_REFUSED, d, err->desc);
}

/* Pivots happen only once every mirror is READY, so a failure in one pivot
 * leaves at most the disks already pivoted on new files, each recorded by
 * the owner before the next pivot starts. */
static void pivot_next(struct block_mirror *bm)
{
    if (bm->state != BM_PIVOTING)
        return;
    size_t i = 0;
    while (i < bm->n && bm->disks[i].pivoted)
        i++;
    if (i == bm->n) {
        bm->state = BM_DONE;
        bm->ops->on_done(bm->arg);
        return;
    }
    struct block_mirror_disk *d = &bm->disks[i];
    bm->cur = i;
    d->pivot_requested = true;
    d->t_pivot = now_ms();
    state_changed(bm);
    if (qmon_block_job_complete(mon(bm), bm->owner, d->job_id, bm->cfg.timeout_ms, on_complete_sent, d) < 0) {
        d->pivot_requested = false;
        fail_simple(bm, BLOCK_MIRROR_FAIL_NO_MONITOR, d, NULL);
    }
}

void block_mirror_pivot(struct block_mirror *bm)
{
    if (bm->state != BM_READY && bm->state != BM_MIRRORING)
        return;
    bm->state = BM_PIVOTING;
    pivot_next(bm);
}

/* ---- finish (NBD): the switch-over ---------------------------------------- */

/* The guest is stopped, so cancelling a ready mirror leaves the destination
 * a complete copy (QEMU reports it COMPLETED). */
void block_mirror_finish(struct block_mirror *bm)
{
    bm->state = BM_FINISHING;
    for (size_t i = 0; i < bm->n; i++)
        qmon_block_job_cancel(mon(bm), bm->owner, bm->disks[i].job_id, false, bm->cfg.timeout_ms, NULL, NULL);
    poll_soon(bm, FINISH_POLL_MS);
}

/* A failed query counts as "none left", as it always has: the switch-over
 * must not wait on a monitor that went away. */
static void on_finish_jobs(void *arg, const struct qmon_block_job *jobs, size_t n, const qmp_error_t *err)
{
    struct block_mirror *bm = arg;
    if (bm->state != BM_FINISHING)
        return;
    if (!err)
        block_jobs_update(&bm->jobs, jobs, n);
    if (!err && block_jobs_listed(&bm->jobs)) {
        poll_soon(bm, FINISH_POLL_MS);
        return;
    }
    bm->state = BM_DONE;
    for (size_t i = 0; i < bm->n; i++)
        qmon_blockdev_del(mon(bm), bm->owner, bm->disks[i].node, bm->cfg.timeout_ms, NULL, NULL);
    bm->ops->on_done(bm->arg);
}

void block_mirror_drop(struct block_mirror *bm)
{
    stop_create(bm);
    bm->state = BM_DONE;
    for (size_t i = 0; i < bm->n; i++)
        qmon_block_job_cancel(mon(bm), bm->owner, bm->disks[i].job_id, true, bm->cfg.timeout_ms, NULL, NULL);
}

/* ---- rollback: every disk not yet pivoted stays on its source ------------- */

static void rollback_done(struct block_mirror *bm)
{
    bm->state = BM_DONE;
    bm->ops->on_rolled_back(bm->arg, false);
}

static void on_node_del(void *arg, const qmp_error_t *err)
{
    struct block_mirror_disk *d = arg;
    bool last = batch_reply(d->bm);
    if (err)
        log_warn("%s: blockdev-del during rollback of %s: %s", d->bm->cfg.name, d->id, err->desc);
    batch_next(d->bm, last);
}

/* The mirrors are gone: delete the target nodes, so QEMU closes the files. */
static void delete_target_nodes(struct block_mirror *bm)
{
    for (size_t i = 0; i < bm->n; i++) {
        struct block_mirror_disk *d = &bm->disks[i];
        if (d->pivoted || d->pivot_requested)
            continue;
        if (d->fmt_added)
            del_node(d, d->node, on_node_del);
        if (d->file_added && d->file_node)
            del_node(d, d->file_node, on_node_del);
    }
    then(bm, rollback_done);
}

/* No mirror is left: QEMU's ground truth says which disks pivoted (a pivot
 * may have been in flight, or have happened while vmoved was down). */
static void on_rollback_block(void *arg, const struct qmon_block_device *devs, size_t n, const qmp_error_t *err)
{
    struct block_mirror *bm = arg;
    bool last = batch_reply(bm);
    for (size_t i = 0; i < bm->n; i++) {
        struct block_mirror_disk *d = &bm->disks[i];
        const char *node = err ? NULL : device_node(devs, n, d->id);
        if (d->pivoted)
            continue;
        if (node && !strcmp(node, d->node))
            adopt_pivot(bm, d);
        else if (err && d->pivot_requested)
            continue;   /* unknown: the owner keeps both files and says so */
        else
            d->pivot_requested = false;
    }
    batch_next(bm, last);
}

/* Lift the throttle, then cancel with force (fire and forget: the next
 * query-block-jobs tells whether the job went; a plain cancel of a READY
 * mirror would complete it instead). */
static void cancel_job(struct block_mirror *bm, const struct block_mirror_disk *d)
{
    qmon_block_job_set_speed(mon(bm), bm->owner, d->job_id, 0, bm->cfg.timeout_ms, NULL, NULL);
    qmon_block_job_cancel(mon(bm), bm->owner, d->job_id, true, bm->cfg.timeout_ms, NULL, NULL);
}

static void resume_guest(struct block_mirror *bm)
{
    if (!bm->paused_for_cancel)
        return;
    bm->paused_for_cancel = false;
    qmon_cont(mon(bm), bm->owner, bm->cfg.timeout_ms, NULL, NULL);
}

/* One cancel per job (again only if it lingers for 10 s): QEMU 7.2
 * corrupts its heap ("corrupted double-linked list") when a throttled
 * write-blocking mirror is cancelled repeatedly.  QEMU 7.2 also corrupts
 * its heap when an active mirror is torn down while guest writes go
 * through it: the vCPUs are stopped (which drains the guest's in-flight
 * I/O) for the moment of the cancel.  Returns how many of ours are listed. */
static size_t cancel_listed(struct block_mirror *bm, const struct qmon_block_job *jobs, size_t n)
{
    size_t listed = 0;
    bool resend = !bm->last_cancel_ms || now_ms() - bm->last_cancel_ms >= RECANCEL_MS;
    bool running = bm->ops->guest_running && bm->ops->guest_running(bm->arg);
    if (resend && !bm->last_cancel_ms && running && n) {
        qmon_stop(mon(bm), bm->owner, bm->cfg.timeout_ms, NULL, NULL);
        bm->paused_for_cancel = true;
    }
    for (size_t i = 0; i < n; i++) {
        struct block_mirror_disk *d = disk_by_job(bm, jobs[i].device);
        if (!d || d->pivoted)
            continue;
        listed++;
        if (resend)
            cancel_job(bm, d);
    }
    if (resend)
        bm->last_cancel_ms = now_ms();
    return listed;
}

static void on_rollback_jobs(void *arg, const struct qmon_block_job *jobs, size_t n, const qmp_error_t *err)
{
    struct block_mirror *bm = arg;
    if (bm->state != BM_ROLLBACK)
        return;
    if (bm_qemu_gone(bm)) {
        bm->state = BM_DONE;
        bm->ops->on_qemu_gone(bm->arg);
        return;
    }
    size_t listed = cancel_listed(bm, jobs, n);
    if (!err && listed == 0 && bm->batch == 0) {
        resume_guest(bm);
        batch_sent(bm, qmon_query_block(mon(bm), bm->owner, bm->cfg.timeout_ms, on_rollback_block, bm));
        then(bm, delete_target_nodes);
        return;
    }
    if (now_ms() - bm->rollback_since > BLOCK_MIRROR_CANCEL_WAIT_MS) {
        resume_guest(bm);   /* the guest runs again, whatever the jobs do */
        for (size_t k = 0; k < bm->n; k++)
            bm->disks[k].created = false;   /* QEMU may still write them */
        bm->state = BM_DONE;
        bm->ops->on_rolled_back(bm->arg, true);
        return;
    }
    poll_soon(bm, ROLLBACK_POLL_MS);
}

void block_mirror_abort(struct block_mirror *bm)
{
    if (bm->state == BM_ROLLBACK || bm->state == BM_DONE)
        return;
    stop_create(bm);   /* a cancel while a target is being made kills its qemu-img */
    bm->state = BM_ROLLBACK;
    bm->rollback_since = now_ms();
    bm->last_cancel_ms = 0;
    if (bm_qemu_gone(bm)) {
        bm->state = BM_DONE;
        bm->ops->on_qemu_gone(bm->arg);
        return;
    }
    poll_soon(bm, 0);
}

void block_mirror_recover(struct block_mirror *bm)
{
    for (size_t i = 0; i < bm->n; i++) {
        struct block_mirror_disk *d = &bm->disks[i];
        if (!d->pivoted)
            d->file_added = d->fmt_added = d->mirroring = true;
    }
    block_mirror_abort(bm);
}

/* ---- the poll timer ------------------------------------------------------- */

static void mirror_tick(evutil_socket_t fd, short what, void *arg)
{
    struct block_mirror *bm = arg;
    if (!alive(bm))
        return;
    if (bm_qemu_gone(bm) && bm->state != BM_FINISHING) {
        bm->state = BM_DONE;
        bm->ops->on_qemu_gone(bm->arg);
        return;
    }
    qmon_block_jobs_fn fn = bm->state == BM_ROLLBACK ? on_rollback_jobs
                            : bm->state == BM_FINISHING ? on_finish_jobs
                            : bm->state == BM_MIRRORING || bm->state == BM_PIVOTING ? on_jobs : NULL;
    if (fn && qmon_query_block_jobs(mon(bm), bm->owner, bm->cfg.timeout_ms, fn, bm) < 0)
        poll_soon(bm, POLL_MS);   /* monitor reconnecting */
}

/* ---- QEMU events ---------------------------------------------------------- */

void block_mirror_event(struct block_mirror *bm, const char *name, json_t *data)
{
    if (!alive(bm) || strncmp(name, "BLOCK_JOB_", 10))
        return;
    struct block_mirror_disk *d = disk_by_job(bm, json_string_value(json_object_get(data, "device")));
    if (!d)
        return;
    const char *error = json_string_value(json_object_get(data, "error"));
    if (!strcmp(name, "BLOCK_JOB_READY")) {
        update_disk(d, (uint64_t)json_integer_value(json_object_get(data, "offset")),
                    (uint64_t)json_integer_value(json_object_get(data, "len")), true);
        check_ready(bm);
    } else if (!strcmp(name, "BLOCK_JOB_ERROR")) {
        log_warn("%s: mirror of %s: I/O error (%s)", bm->cfg.name, d->id,
                 json_string_value(json_object_get(data, "operation")));
    } else if (!strcmp(name, "BLOCK_JOB_COMPLETED") || !strcmp(name, "BLOCK_JOB_CANCELLED")) {
        if (d->pivot_requested && !d->pivoted && bm->state == BM_PIVOTING)
            pivot_check(bm);
        else if (bm->state == BM_MIRRORING || bm->state == BM_PREPARING)
            fail_simple(bm, BLOCK_MIRROR_FAIL_STOPPED, d, error ? error : name);
    }
}

/* ---- preparing ------------------------------------------------------------ */

static void on_mirror_started(void *arg, const qmp_error_t *err)
{
    struct block_mirror_disk *d = arg;
    bool last = batch_reply(d->bm);
    if (err)
        fail_simple(d->bm, BLOCK_MIRROR_FAIL_MIRROR, d, err->desc);
    else {
        d->mirroring = true;
        d->t_mirror = now_ms();
    }
    batch_next(d->bm, last);
}

static void after_mirrors(struct block_mirror *bm)
{
    if (bm->state != BM_PREPARING)
        return;
    bm->state = BM_MIRRORING;
    if (bm->ops->on_mirroring)
        bm->ops->on_mirroring(bm->arg);
    poll_soon(bm, 0);
}

/* write-blocking: once a region is copied, guest writes to it reach both
 * sides before they complete, so the mirror converges whatever the guest's
 * write rate. */
static void start_mirror(struct block_mirror *bm, struct block_mirror_disk *d)
{
    struct qmon_mirror m = {.job_id = d->job_id, .device = d->old_node, .target = d->node,
                            .sync = d->target_backing ? QMON_SYNC_TOP : QMON_SYNC_FULL,
                            .write_blocking = true, .has_auto_finalize = bm->cfg.explicit_auto,
                            .auto_finalize = true, .has_auto_dismiss = bm->cfg.explicit_auto,
                            .auto_dismiss = true, .speed = bm->cfg.speed};
    batch_sent(bm, qmon_blockdev_mirror(mon(bm), bm->owner, &m, bm->cfg.timeout_ms, on_mirror_started, d));
}

static void start_mirrors(struct block_mirror *bm)
{
    if (bm->state != BM_PREPARING)
        return;
    for (size_t i = 0; i < bm->n; i++)
        start_mirror(bm, &bm->disks[i]);
    then(bm, after_mirrors);
}

static void on_target_added(void *arg, const qmp_error_t *err)
{
    struct block_mirror_disk *d = arg;
    bool last = batch_reply(d->bm);
    if (err)
        fail_simple(d->bm, BLOCK_MIRROR_FAIL_TARGET, d, err->desc);
    else if (d->file_added || !d->file_node)
        d->fmt_added = true;
    else
        d->file_added = true;
    batch_next(d->bm, last);
}

/* FILE: two nodes per target, as for every disk (src/qemu/qemu_argv.c);
 * QMP runs commands in order, so the qcow2 node finds its file node.
 * NBD: one client node. */
static void add_target(struct block_mirror *bm, struct block_mirror_disk *d)
{
    qmp_t *q = mon(bm);
    int t = bm->cfg.timeout_ms;
    if (bm->cfg.kind == BLOCK_MIRROR_NBD) {
        struct block_nbd_client c = {d->node, bm->cfg.host, bm->cfg.port, d->export_name, bm->cfg.tls_creds,
                                     bm->cfg.tls_hostname};
        batch_sent(bm, block_nbd_client_add(q, bm->owner, &c, t, on_target_added, d));
        return;
    }
    struct qmon_blockdev file = {.driver = QMON_BLOCKDEV_FILE, .node_name = d->file_node, .discard_unmap = true,
                                 .filename = d->target};
    struct qmon_blockdev fmt = {.driver = QMON_BLOCKDEV_QCOW2, .node_name = d->node, .discard_unmap = true,
                                .file = d->file_node};
    batch_sent(bm, qmon_blockdev_add(q, bm->owner, &file, t, on_target_added, d));
    batch_sent(bm, qmon_blockdev_add(q, bm->owner, &fmt, t, on_target_added, d));
}

/* The file node under a qcow2 node, by vmove's naming: vda -> vda-file,
 * vda-m17 -> vda-file-m17 (a storage move's), vda-ck5 -> vda-file-ck5 (a
 * checkpoint's overlay). */
static char *file_node_of(const char *id, const char *node)
{
    size_t n = strlen(id);
    if (!strcmp(node, id))
        return xasprintf("%s-file", id);
    if (!strncmp(node, id, n) && (!strncmp(node + n, "-m", 2) || !strncmp(node + n, "-ck", 3)))
        return xasprintf("%s-file%s", id, node + n);
    return NULL;
}

static void add_targets(struct block_mirror *bm)
{
    for (size_t i = 0; i < bm->n; i++)
        add_target(bm, &bm->disks[i]);
    then(bm, start_mirrors);
}

static const struct qmon_named_node *named_qcow2(const struct qmon_named_node *nodes, size_t n, const char *image)
{
    for (size_t i = 0; image && i < n; i++)
        if (!strcmp(nodes[i].drv, "qcow2") && nodes[i].image && !strcmp(nodes[i].image, image))
            return &nodes[i];
    return NULL;
}

/* The named nodes of d's chain below its top (a checkpoint taken live
 * leaves the older layers' nodes named, so they outlive the top's
 * blockdev-del; implicit "#block" nodes go with their parent), top first,
 * each layer's format node before its file node. */
static void collect_old_chain(struct block_mirror_disk *d, const struct qmon_named_node *nodes, size_t n)
{
    const struct qmon_named_node *cur = NULL;
    for (size_t i = 0; i < n; i++)
        if (d->old_node && nodes[i].node_name && !strcmp(nodes[i].node_name, d->old_node))
            cur = &nodes[i];
    free_strv(d->old_chain, d->n_old_chain);
    d->old_chain = xcalloc(2 * n + 1, sizeof *d->old_chain);
    d->n_old_chain = 0;
    for (size_t hops = 0; cur && hops < 64; hops++) {
        cur = named_qcow2(nodes, n, cur->backing_file);
        for (int pass = 0; cur && pass < 2; pass++)
            for (size_t i = 0; i < n && d->n_old_chain < 2 * n; i++) {
                const struct qmon_named_node *x = &nodes[i];
                bool fmt = !strcmp(x->drv, "qcow2");
                if (x->node_name && x->node_name[0] != '#' && x->image && !strcmp(x->image, cur->image) &&
                    fmt == (pass == 0))
                    d->old_chain[d->n_old_chain++] = xstrdup(x->node_name);
            }
    }
}

static void on_prepare_nodes(void *arg, const struct qmon_named_node *nodes, size_t n, const qmp_error_t *err)
{
    struct block_mirror *bm = arg;
    if (bm->state != BM_PREPARING)
        return;
    if (err) {
        fail_simple(bm, BLOCK_MIRROR_FAIL_QUERY, NULL, err->desc);
        return;
    }
    for (size_t i = 0; i < bm->n; i++)
        if (bm->disks[i].target_backing)
            collect_old_chain(&bm->disks[i], nodes, n);
    add_targets(bm);
}

static void on_prepare_block(void *arg, const struct qmon_block_device *devs, size_t n, const qmp_error_t *err)
{
    struct block_mirror *bm = arg;
    if (bm->state != BM_PREPARING)
        return;
    if (err) {
        fail_simple(bm, BLOCK_MIRROR_FAIL_QUERY, NULL, err->desc);
        return;
    }
    for (size_t i = 0; i < bm->n; i++) {
        struct block_mirror_disk *d = &bm->disks[i];
        const struct qmon_block_device *b = block_entry(devs, n, d->id);
        const char *node = b ? b->node_name : NULL;
        const char *file = b ? b->file : NULL;
        if (!node || !file || (d->source && strcmp(file, d->source))) {
            fail(bm, &(struct block_mirror_failure){.what = BLOCK_MIRROR_FAIL_SOURCE, .disk = d, .file = file});
            return;
        }
        free(d->old_node), free(d->old_file_node);
        d->old_node = xstrdup(node);
        d->old_file_node = file_node_of(d->id, node);
    }
    state_changed(bm);
    for (size_t i = 0; i < bm->n; i++)
        if (bm->disks[i].target_backing) {
            if (qmon_query_named_block_nodes(mon(bm), bm->owner, bm->cfg.timeout_ms, on_prepare_nodes, bm) < 0)
                fail_simple(bm, BLOCK_MIRROR_FAIL_NO_MONITOR, NULL, NULL);
            return;
        }
    add_targets(bm);
}

static void create_next(struct block_mirror *bm);

static void on_target_created(void *arg, const char *err)
{
    struct block_mirror_disk *d = arg;
    struct block_mirror *bm = d->bm;
    bm->create_op = NULL;
    if (bm->state != BM_PREPARING)
        return;
    if (err) {
        char msg[1024];
        snprintf(msg, sizeof msg, "qemu-img create %s failed: %s", d->target, err);
        fail_simple(bm, BLOCK_MIRROR_FAIL_CREATE, d, msg);
        return;
    }
    bm->creating++;
    create_next(bm);
}

/* O_EXCL first: the file is ours even if someone creates the same name
 * between the check and now (and the record says so before qemu-img runs,
 * so that a restart removes it); qemu-img then formats our empty file, in
 * a child the loop does not wait for (the target may sit on slow storage).
 * One disk after the other; then QEMU's side. */
static void create_next(struct block_mirror *bm)
{
    if (bm->creating == bm->n) {
        if (qmon_query_block(mon(bm), bm->owner, bm->cfg.timeout_ms, on_prepare_block, bm) < 0)
            fail_simple(bm, BLOCK_MIRROR_FAIL_NO_MONITOR, NULL, NULL);
        return;
    }
    struct block_mirror_disk *d = &bm->disks[bm->creating];
    int fd = open(d->target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        char msg[1024];
        snprintf(msg, sizeof msg, "cannot create %s: %s", d->target, strerror(errno));
        state_changed(bm);
        fail_simple(bm, BLOCK_MIRROR_FAIL_CREATE, d, msg);
        return;
    }
    close(fd);
    d->created = true;
    state_changed(bm);
    bm->create_op = image_create_async(bm->base, d->target, d->vsize, d->target_backing,
                                       d->target_backing ? "qcow2" : NULL, on_target_created, d);
}

void block_mirror_start(struct block_mirror *bm)
{
    bm->state = BM_PREPARING;
    bm->creating = bm->cfg.kind == BLOCK_MIRROR_FILE ? 0 : bm->n;
    if (bm->creating == bm->n)
        state_changed(bm);
    create_next(bm);
}
