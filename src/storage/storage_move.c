#include "storage/storage_move.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/image.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/acl.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "core/journal.h"
#include "qemu/monitor.h"
#include "storage/storage_plan.h"
#include "vm/vm.h"

#define POLL_MS 250
#define QMP_TIMEOUT_MS 30000
#define CANCEL_WAIT_MS 60000     /* QEMU normally drops a cancelled mirror at once */

enum phase { PH_PREPARING, PH_MIRRORING, PH_PIVOTING, PH_CLEANUP, PH_ROLLBACK, PH_RECOVERING };
static const char *phase_names[] = {"preparing", "mirroring", "pivoting", "cleanup", "rolling back", "recovering"};

struct storage_move;

struct sm_disk {
    struct storage_move *sm;         /* a reply's arg is the disk: its move */
    char *id, *source, *target;
    char *node, *file_node;          /* target nodes: <id>-m<job>, <id>-file-m<job> */
    char *old_node, *old_file_node;  /* what the device uses before its pivot */
    char *job_id;                    /* QEMU block job: mirror-<id> */
    uint64_t vsize;
    bool created;                    /* we created the target file (O_EXCL) */
    bool file_added, fmt_added;      /* target nodes exist in QEMU */
    bool mirroring;                  /* blockdev-mirror accepted */
    bool ready;
    bool pivot_requested, pivoted;
    bool old_released;               /* QEMU closed the source (blockdev-del ok) */
    uint64_t offset, len, last_offset, last_ms, t_ready, t_pivot, pivot_ms;
    double rate;
};

struct storage_move {
    struct storage_move *next;
    struct agent *agent;
    struct job *job;
    struct vm *vm;
    char *name;
    struct sm_disk *disks;
    size_t n;
    bool keep_source;
    char *config_to;                 /* --config-to DIR, or NULL */
    long long speed;                 /* blockdev-mirror "speed", bytes/s, 0 = unlimited */
    enum phase phase;
    struct event *timer;
    struct qmon_owner owner;         /* replies in flight; ended by sm_release */
    int batch;                       /* replies the current step still waits for */
    void (*after_batch)(struct storage_move *sm);
    size_t cur;                      /* disk being pivoted */
    bool checking;                   /* query-block for a pivot in flight */
    uint64_t t_start, t_mirror, rollback_since, last_cancel_ms;
    bool paused_for_cancel;          /* we stopped the vCPUs to cancel safely */
    json_t *failure;
    json_t *notes;                   /* what the user must know: kept files, ... */
};

/* One vmoved per process: the moves in flight. */
static struct storage_move *moves;

static void poll_soon(struct storage_move *sm, int ms);
static void rollback(struct storage_move *sm);
static void start_pivot(struct storage_move *sm);
static void adopt_pivot(struct storage_move *sm, struct sm_disk *d);

/* ---- lifetime ---------------------------------------------------------- */

/* The owner's release: the last reference (ours or a reply's) is gone. */
static void sm_free(void *obj)
{
    struct storage_move *sm = obj;
    for (size_t i = 0; i < sm->n; i++) {
        struct sm_disk *d = &sm->disks[i];
        free(d->id), free(d->source), free(d->target), free(d->node), free(d->file_node);
        free(d->old_node), free(d->old_file_node), free(d->job_id);
    }
    free(sm->disks);
    json_decref(sm->failure);
    json_decref(sm->notes);
    free(sm->name);
    free(sm->config_to);
    free(sm);
}

/* The move is over (or vmoved stops): QMP replies may still be on their
 * way, and they carry sm, so it is freed only once they have arrived. */
static void sm_release(struct storage_move *sm)
{
    for (struct storage_move **p = &moves; *p; p = &(*p)->next)
        if (*p == sm) {
            *p = sm->next;
            break;
        }
    if (sm->timer)
        event_free(sm->timer);
    sm->timer = NULL;
    if (sm->vm && sm->vm->hooks.arg == sm)
        vm_set_hooks(sm->vm, NULL);
    sm->vm = NULL;
    sm->job = NULL;
    qmon_owner_end(&sm->owner);
}

static struct storage_move *sm_new(struct agent *a, struct vm *vm, struct job *job, size_t n)
{
    struct storage_move *sm = xcalloc(1, sizeof *sm);
    sm->agent = a;
    sm->vm = vm;
    sm->job = job;
    sm->name = xstrdup(vm->name);
    sm->disks = xcalloc(n, sizeof *sm->disks);
    sm->n = n;
    for (size_t i = 0; i < n; i++)
        sm->disks[i].sm = sm;
    qmon_owner_init(&sm->owner, sm, sm_free);
    sm->notes = json_array();
    sm->t_start = now_ms();
    sm->next = moves;
    moves = sm;
    return sm;
}

/* ---- QMP plumbing -------------------------------------------------------- */

/* Every command holds a reference on sm->owner while its reply is on its
 * way, so sm stays valid inside a callback whatever it does; replies that
 * arrive after sm_release are dropped.  A per-disk reply carries its
 * sm_disk as arg, the others sm. */

/* NULL once the move is released or the VM gone: qmon_* then refuse. */
static qmp_t *sm_mon(const struct storage_move *sm) { return sm->vm ? sm->vm->qmp : NULL; }

/* Batched commands: their callbacks only record results; the step's
 * after_batch decides what comes next once every reply is in.  A batched
 * call counts itself when qmon_* accepted it (rc 0). */
static void batch_sent(struct storage_move *sm, int rc)
{
    if (rc == 0)
        sm->batch++;
}

/* First thing in a batched callback: true if it is the step's last reply. */
static bool batch_reply(struct storage_move *sm) { return --sm->batch == 0; }

/* Last thing in a batched callback: the next step, once every reply is in
 * (and unless the callback ended the move). */
static void batch_next(struct storage_move *sm, bool last)
{
    if (!last || !qmon_owner_alive(&sm->owner) || !sm->after_batch)
        return;
    void (*next)(struct storage_move *) = sm->after_batch;
    sm->after_batch = NULL;
    next(sm);
}

/* Run next once every batched command issued so far has been answered. */
static void then(struct storage_move *sm, void (*next)(struct storage_move *))
{
    if (sm->batch == 0)
        next(sm);
    else
        sm->after_batch = next;
}

static struct sm_disk *disk_by_job(struct storage_move *sm, const char *job_id)
{
    for (size_t i = 0; job_id && i < sm->n; i++)
        if (!strcmp(sm->disks[i].job_id, job_id))
            return &sm->disks[i];
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

static bool qemu_gone(const struct storage_move *sm)
{
    return !sm->vm || sm->vm->state == VM_STOPPED || sm->vm->state == VM_CRASHED;
}

/* ---- persistence ------------------------------------------------------------ */

static json_t *record_json(const struct storage_move *sm)
{
    json_t *disks = json_array();
    for (size_t i = 0; i < sm->n; i++) {
        const struct sm_disk *d = &sm->disks[i];
        json_array_append_new(disks, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:s?, s:s, s:b, s:b, s:b}",
            "id", d->id, "source", d->source, "target", d->target, "node", d->node, "file_node", d->file_node,
            "old_node", d->old_node, "old_file_node", d->old_file_node, "job_id", d->job_id,
            "created", d->created, "pivot_requested", d->pivot_requested, "pivoted", d->pivoted));
    }
    return json_pack("{s:I, s:b, s:o}", "job", (json_int_t)(sm->job ? sm->job->id : 0), "keep_source",
                     sm->keep_source, "disks", disks);
}

/* runtime.json first, so a restarted vmoved knows what to undo. */
static void save_record(struct storage_move *sm)
{
    if (sm->vm)
        vm_set_storage_move(sm->vm, record_json(sm));
}

/* vm.json follows QEMU after each pivot: a copy is saved atomically and
 * only then replaces the config in memory. */
static int save_disk_path(struct vm *vm, const char *id, const char *path, char *err, size_t errlen)
{
    struct vm_config c;
    vm_config_copy(&c, &vm->cfg);
    for (size_t i = 0; i < c.n_disks; i++)
        if (!strcmp(c.disks[i].id, id)) {
            free(c.disks[i].path);
            c.disks[i].path = xstrdup(path);
        }
    char *p = xasprintf("%s/vm.json", vm->dir);
    int rc = vm_config_save(p, &c, err, errlen);
    free(p);
    if (rc < 0) {
        vm_config_free(&c);
        return -1;
    }
    vm_config_free(&vm->cfg);
    vm->cfg = c;
    return 0;
}

static void note(struct storage_move *sm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct storage_move *sm, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_warn("%s: storage move: %s", sm->name, msg);
    json_array_append_new(sm->notes, json_string(msg));
}

static void set_phase(struct storage_move *sm, enum phase ph)
{
    sm->phase = ph;
    if (sm->job)
        job_set_phase(sm->job, phase_names[ph]);
}

/* ---- endings ------------------------------------------------------------------ */

static void sm_fail(struct storage_move *sm, json_t *error)
{
    if (!sm->failure)
        sm->failure = error;
    else
        json_decref(error);
    if (sm->phase == PH_ROLLBACK || sm->phase == PH_RECOVERING)
        return;
    log_warn("%s: storage move failing: %s", sm->name, json_string_value(json_object_get(sm->failure, "message")));
    rollback(sm);
}

static void end_failed(struct storage_move *sm)
{
    json_t *err = sm->failure ? sm->failure : proto_error(ERR_INTERNAL, NULL, "storage move failed");
    sm->failure = NULL;
    if (json_array_size(sm->notes))
        json_object_set(err, "notes", sm->notes);
    if (sm->vm)
        vm_set_storage_move(sm->vm, NULL);
    journal_event(sm->agent->journal, sm->name, "storage.move.failed", err);
    struct job *job = sm->job;
    sm_release(sm);
    if (job)
        job_fail(job, err);
    else
        json_decref(err);
}

static json_t *result_json(struct storage_move *sm)
{
    json_t *disks = json_array();
    uint64_t bytes = 0, mirror_ms = 0;
    for (size_t i = 0; i < sm->n; i++) {
        struct sm_disk *d = &sm->disks[i];
        uint64_t ms = d->t_ready > sm->t_mirror ? d->t_ready - sm->t_mirror : 0;
        bytes += d->len;
        mirror_ms = ms > mirror_ms ? ms : mirror_ms;
        json_array_append_new(disks, json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}", "id", d->id, "from", d->source,
                                               "to", d->target, "bytes", (json_int_t)d->len, "mirror_ms",
                                               (json_int_t)ms, "pivot_ms", (json_int_t)d->pivot_ms));
    }
    return json_pack("{s:o, s:I, s:I, s:I, s:f, s:b, s:O, s:s*}", "disks", disks, "total_ms",
                     (json_int_t)(now_ms() - sm->t_start), "mirror_ms", (json_int_t)mirror_ms, "bytes",
                     (json_int_t)bytes, "rate_Bps", mirror_ms ? (double)bytes * 1000.0 / (double)mirror_ms : 0.0,
                     "kept_source", sm->keep_source, "notes", sm->notes, "config_to", sm->config_to);
}

/* --config-to: rename the VM's directory into DIR and leave a symlink in the
 * inventory.  Paths vmoved and the QEMU supervisor know (STATE/vms/NAME/...)
 * keep resolving through the link. */
static void move_config(struct storage_move *sm)
{
    char *real = realpath(sm->vm->dir, NULL);
    char *target = xasprintf("%s/%s", sm->config_to, sm->name);
    char *tmp = xasprintf("%s.vmove-link", sm->vm->dir);
    if (!real || rename(real, target) < 0) {
        note(sm, "the VM's files were NOT moved to %s: %s", target, strerror(errno));
    } else {
        unlink(tmp);
        /* A fresh symlink renamed over the old path: atomic if the old path
         * was itself a link; else the directory was just renamed away. */
        if (symlink(target, tmp) < 0 || rename(tmp, sm->vm->dir) < 0)
            note(sm, "moved the VM's files to %s but could not link %s to them: %s", target, sm->vm->dir,
                 strerror(errno));
        else
            log_info("%s: VM files moved to %s", sm->name, target);
    }
    free(real);
    free(target);
    free(tmp);
}

/* Every disk runs from its new file and vm.json says so: drop the sources. */
static void cleanup(struct storage_move *sm)
{
    set_phase(sm, PH_CLEANUP);
    for (size_t i = 0; i < sm->n && !sm->keep_source; i++) {
        struct sm_disk *d = &sm->disks[i];
        if (!d->old_released)
            note(sm, "kept %s: QEMU did not close it (blockdev-del failed)", d->source);
        else if (unlink(d->source) < 0)
            note(sm, "could not delete %s: %s", d->source, strerror(errno));
    }
    if (sm->config_to)
        move_config(sm);
    json_t *res = result_json(sm);
    vm_set_storage_move(sm->vm, NULL);
    journal_event(sm->agent->journal, sm->name, "storage.move.succeeded", res);
    log_info("%s: storage move done in %lld ms", sm->name, (long long)json_integer_value(json_object_get(res, "total_ms")));
    struct job *job = sm->job;
    sm_release(sm);
    job_succeed(job, res);
}

/* QEMU is gone: nobody writes any of the files now.  Targets of disks that
 * never pivoted hold nothing the guest needs. */
static void end_qemu_gone(struct storage_move *sm)
{
    const char *desc = json_string_value(json_object_get(sm->vm ? sm->vm->last_exit : NULL, "description"));
    if (!sm->failure)
        sm->failure = proto_error(ERR_QEMU, "the VM's disks are the ones vm.json names (`vmove vm show`)",
                                  "the VM's QEMU exited during the storage move (%s)", desc ? desc : "?");
    else   /* an earlier failure (cancel, interrupted) stays the headline */
        note(sm, "the VM's QEMU exited during the storage move (%s)", desc ? desc : "?");
    for (size_t i = 0; i < sm->n; i++) {
        struct sm_disk *d = &sm->disks[i];
        if (d->pivoted)
            note(sm, "disk %s had moved to %s; %s was kept", d->id, d->target, d->source);
        else if (d->pivot_requested)
            note(sm, "disk %s: QEMU exited while pivoting to %s; both files kept, vm.json names %s: check which "
                     "one is current before deleting either", d->id, d->target, d->source);
        else if (d->created && unlink(d->target) < 0 && errno != ENOENT)
            note(sm, "could not delete %s: %s", d->target, strerror(errno));
    }
    end_failed(sm);
}

/* ---- rollback: every disk not yet pivoted stays on its source ------------------- */

static void remove_targets(struct storage_move *sm)
{
    for (size_t i = 0; i < sm->n; i++) {
        struct sm_disk *d = &sm->disks[i];
        if (d->pivoted) {
            note(sm, "disk %s had already moved to %s (vm.json updated); %s was kept", d->id, d->target, d->source);
            continue;
        }
        if (d->pivot_requested) {
            note(sm, "disk %s: could not learn whether QEMU switched to %s; both files kept, vm.json names %s",
                 d->id, d->target, d->source);
            continue;
        }
        if (d->created && unlink(d->target) < 0 && errno != ENOENT)
            note(sm, "could not delete %s: %s", d->target, strerror(errno));
    }
    end_failed(sm);
}

static void on_node_del(void *arg, const qmp_error_t *err)
{
    struct sm_disk *d = arg;
    bool last = batch_reply(d->sm);
    if (err)
        log_warn("%s: blockdev-del during rollback of %s: %s", d->sm->name, d->id, err->desc);
    batch_next(d->sm, last);
}

/* blockdev-del of one of d's nodes, as part of the current batch. */
static void del_node(struct sm_disk *d, const char *node, qmon_done_fn cb)
{
    batch_sent(d->sm, qmon_blockdev_del(sm_mon(d->sm), &d->sm->owner, node, QMP_TIMEOUT_MS, cb, d));
}

/* The mirrors are gone: delete the target nodes, so QEMU closes the files. */
static void delete_target_nodes(struct storage_move *sm)
{
    for (size_t i = 0; i < sm->n; i++) {
        struct sm_disk *d = &sm->disks[i];
        if (d->pivoted || d->pivot_requested)
            continue;
        if (d->fmt_added)
            del_node(d, d->node, on_node_del);
        if (d->file_added)
            del_node(d, d->file_node, on_node_del);
    }
    then(sm, remove_targets);
}

/* No mirror is left: QEMU's ground truth says which disks pivoted (a pivot
 * may have been in flight, or have happened while vmoved was down). */
static void on_rollback_block(void *arg, const struct qmon_block_device *devs, size_t n, const qmp_error_t *err)
{
    struct storage_move *sm = arg;
    bool last = batch_reply(sm);
    for (size_t i = 0; i < sm->n; i++) {
        struct sm_disk *d = &sm->disks[i];
        const char *node = err ? NULL : device_node(devs, n, d->id);
        if (d->pivoted)
            continue;
        if (node && !strcmp(node, d->node))
            adopt_pivot(sm, d);
        else if (err && d->pivot_requested)
            continue;   /* unknown: remove_targets keeps both files and says so */
        else
            d->pivot_requested = false;
    }
    batch_next(sm, last);
}

/* Rollback waits here until QEMU lists none of our mirrors (cancelled with
 * force: a plain cancel of a READY mirror would complete it instead). */
/* Lift the throttle, then cancel with force (fire and forget: the next
 * query-block-jobs tells whether the job went). */
static void cancel_job(struct storage_move *sm, const struct sm_disk *d)
{
    qmon_block_job_set_speed(sm_mon(sm), &sm->owner, d->job_id, 0, QMP_TIMEOUT_MS, NULL, NULL);
    qmon_block_job_cancel(sm_mon(sm), &sm->owner, d->job_id, true, QMP_TIMEOUT_MS, NULL, NULL);
}

static void on_rollback_jobs(void *arg, const struct qmon_block_job *jobs, size_t n, const qmp_error_t *err)
{
    struct storage_move *sm = arg;
    if (qemu_gone(sm)) {
        end_qemu_gone(sm);
        return;
    }
    size_t listed = 0;
    /* One cancel per job (again only if it lingers for 10 s): QEMU 7.2
     * corrupts its heap ("corrupted double-linked list") when a throttled
     * write-blocking mirror is cancelled repeatedly.  The throttle is lifted
     * first, so the cancel does not wait for a rate-limited sleep. */
    bool resend = !sm->last_cancel_ms || now_ms() - sm->last_cancel_ms >= 10000;
    /* QEMU 7.2 also corrupts its heap when an active mirror is torn down
     * while guest writes go through it: stop the vCPUs (which drains the
     * guest's in-flight I/O) for the moment of the cancel. */
    if (resend && !sm->last_cancel_ms && sm->vm->state == VM_RUNNING && n) {
        qmon_stop(sm_mon(sm), &sm->owner, QMP_TIMEOUT_MS, NULL, NULL);
        sm->paused_for_cancel = true;
    }
    for (size_t i = 0; i < n; i++) {
        struct sm_disk *d = disk_by_job(sm, jobs[i].device);
        if (!d || d->pivoted)
            continue;
        listed++;
        if (resend)
            cancel_job(sm, d);
    }
    if (resend)
        sm->last_cancel_ms = now_ms();
    if (!err && listed == 0 && sm->batch == 0) {
        if (sm->paused_for_cancel) {
            sm->paused_for_cancel = false;
            qmon_cont(sm_mon(sm), &sm->owner, QMP_TIMEOUT_MS, NULL, NULL);
        }
        batch_sent(sm, qmon_query_block(sm_mon(sm), &sm->owner, QMP_TIMEOUT_MS, on_rollback_block, sm));
        then(sm, delete_target_nodes);
        return;
    }
    if (now_ms() - sm->rollback_since > CANCEL_WAIT_MS) {
        note(sm, "QEMU did not drop the mirror jobs within %d s; target files left in place", CANCEL_WAIT_MS / 1000);
        if (sm->paused_for_cancel) {
            sm->paused_for_cancel = false;
            /* the guest runs again, whatever the jobs do */
            qmon_cont(sm_mon(sm), &sm->owner, QMP_TIMEOUT_MS, NULL, NULL);
        }
        for (size_t k = 0; k < sm->n; k++)
            sm->disks[k].created = false;
        end_failed(sm);
        return;
    }
    poll_soon(sm, 200);
}

static void rollback(struct storage_move *sm)
{
    set_phase(sm, PH_ROLLBACK);
    sm->rollback_since = now_ms();
    sm->last_cancel_ms = 0;
    if (qemu_gone(sm)) {
        end_qemu_gone(sm);
        return;
    }
    poll_soon(sm, 0);
}

/* ---- progress -------------------------------------------------------------------- */

/* offset and len from query-block-jobs or a BLOCK_JOB_READY event. */
static void update_disk(struct sm_disk *d, uint64_t offset, uint64_t len, bool ready)
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

static void publish_progress(struct storage_move *sm)
{
    json_t *disks = json_array();
    uint64_t done = 0, total = 0;
    for (size_t i = 0; i < sm->n; i++) {
        struct sm_disk *d = &sm->disks[i];
        done += d->offset;
        total += d->len;
        json_array_append_new(disks, json_pack("{s:s, s:I, s:I, s:f, s:b, s:b}", "id", d->id, "done",
                                               (json_int_t)d->offset, "total", (json_int_t)d->len, "rate_Bps",
                                               d->rate, "ready", d->ready, "pivoted", d->pivoted));
    }
    job_set_progress(sm->job, json_pack("{s:s, s:o, s:I, s:I, s:f, s:I}", "phase", phase_names[sm->phase], "disks",
                                        disks, "bytes_done", (json_int_t)done, "bytes_total", (json_int_t)total,
                                        "percent", total ? 100.0 * (double)done / (double)total : 0.0,
                                        "elapsed_ms", (json_int_t)(now_ms() - sm->t_start)));
}

static bool all_ready(const struct storage_move *sm)
{
    for (size_t i = 0; i < sm->n; i++)
        if (!sm->disks[i].ready)
            return false;
    return true;
}

static void pivot_check(struct storage_move *sm);

static void on_jobs(void *arg, const struct qmon_block_job *jobs, size_t n, const qmp_error_t *err)
{
    struct storage_move *sm = arg;
    if (sm->phase != PH_MIRRORING && sm->phase != PH_PIVOTING)
        return;
    if (err) {   /* a reconnect, or QEMU going away: the next poll tells */
        poll_soon(sm, POLL_MS);
        return;
    }
    bool *listed = xcalloc(sm->n, sizeof *listed);
    for (size_t i = 0; i < n; i++) {
        struct sm_disk *d = disk_by_job(sm, jobs[i].device);
        if (d) {
            listed[d - sm->disks] = true;
            update_disk(d, jobs[i].offset, jobs[i].len, jobs[i].ready);
        }
    }
    bool vanished = false, pivot_gone = false;
    for (size_t k = 0; k < sm->n; k++) {
        struct sm_disk *d = &sm->disks[k];
        if (!listed[k] && d->mirroring && !d->pivot_requested)
            vanished = true;
        if (!listed[k] && d->pivot_requested && !d->pivoted)
            pivot_gone = true;
    }
    free(listed);
    publish_progress(sm);
    if (vanished) {
        sm_fail(sm, proto_error(ERR_QEMU, "see qemu.log in the VM directory", "a mirror job ended before its pivot"));
        return;
    }
    if (pivot_gone)
        pivot_check(sm);
    if (sm->phase == PH_MIRRORING && all_ready(sm))
        start_pivot(sm);
    poll_soon(sm, POLL_MS);
}

/* ---- pivot, one disk at a time ------------------------------------------------------- */

static void on_old_del(void *arg, const qmp_error_t *err)
{
    struct sm_disk *d = arg;
    bool last = batch_reply(d->sm);
    if (err) {
        log_warn("%s: blockdev-del of the old nodes of %s: %s", d->sm->name, d->id, err->desc);
        d->old_released = false;
    }
    batch_next(d->sm, last);
}

/* QEMU runs disk d from its target now: vm.json, the record, then the old
 * nodes (qcow2, then its file; -blockdev added them, so they are ours to
 * close) as a batch. */
static void adopt_pivot(struct storage_move *sm, struct sm_disk *d)
{
    char err[512];
    d->pivoted = true;
    d->pivot_ms = d->t_pivot ? now_ms() - d->t_pivot : 0;
    log_info("%s: disk %s now runs on %s (pivot %llu ms)", sm->name, d->id, d->target,
             (unsigned long long)d->pivot_ms);
    if (save_disk_path(sm->vm, d->id, d->target, err, sizeof err) < 0) {
        /* QEMU uses the target now; keep every file and say so loudly. */
        sm->keep_source = true;
        note(sm, "QEMU runs disk %s from %s but vm.json could not be updated: %s", d->id, d->target, err);
    }
    save_record(sm);
    d->old_released = d->old_node && d->old_file_node;
    if (d->old_node)
        del_node(d, d->old_node, on_old_del);
    if (d->old_file_node)
        del_node(d, d->old_file_node, on_old_del);
}

static void pivot_done(struct storage_move *sm, struct sm_disk *d)
{
    adopt_pivot(sm, d);
    then(sm, start_pivot);
}

static void on_pivot_block(void *arg, const struct qmon_block_device *devs, size_t n, const qmp_error_t *err)
{
    struct storage_move *sm = arg;
    sm->checking = false;
    struct sm_disk *d = &sm->disks[sm->cur];
    if (sm->phase != PH_PIVOTING || d->pivoted)
        return;
    if (err) {
        poll_soon(sm, POLL_MS);   /* the poll calls pivot_check again */
        return;
    }
    const char *node = device_node(devs, n, d->id);
    if (node && !strcmp(node, d->node)) {
        pivot_done(sm, d);
        return;
    }
    /* The job ended but the device kept its old node: the pivot failed. */
    d->pivot_requested = false;
    d->mirroring = false;
    sm_fail(sm, proto_error(ERR_QEMU, "see qemu.log in the VM directory",
                            "QEMU did not switch disk %s to %s (it still uses node %s)", d->id, d->target,
                            node ? node : "?"));
}

static void pivot_check(struct storage_move *sm)
{
    if (sm->checking)
        return;
    sm->checking = true;
    if (qmon_query_block(sm_mon(sm), &sm->owner, QMP_TIMEOUT_MS, on_pivot_block, sm) < 0)
        sm->checking = false;
}

static void on_complete_sent(void *arg, const qmp_error_t *err)
{
    struct sm_disk *d = arg;
    struct storage_move *sm = d->sm;
    if (!err || d->pivoted)
        return;
    d->pivot_requested = false;
    save_record(sm);
    sm_fail(sm, proto_error(ERR_QEMU, NULL, "QEMU refused to pivot disk %s: %s", d->id, err->desc));
}

/* Pivots happen only once every mirror is READY, so a failure in one
 * pivot leaves at most the disks already pivoted on new files, each
 * recorded in vm.json before the next pivot starts. */
static void start_pivot(struct storage_move *sm)
{
    if (sm->phase == PH_ROLLBACK)
        return;
    if (sm->phase != PH_PIVOTING) {
        log_info("%s: all mirrors ready after %llu ms; pivoting", sm->name,
                 (unsigned long long)(now_ms() - sm->t_mirror));
        set_phase(sm, PH_PIVOTING);
    }
    size_t i = 0;
    while (i < sm->n && sm->disks[i].pivoted)
        i++;
    if (i == sm->n) {
        cleanup(sm);
        return;
    }
    struct sm_disk *d = &sm->disks[i];
    sm->cur = i;
    d->pivot_requested = true;
    d->t_pivot = now_ms();
    save_record(sm);
    if (qmon_block_job_complete(sm_mon(sm), &sm->owner, d->job_id, QMP_TIMEOUT_MS, on_complete_sent, d) < 0) {
        d->pivot_requested = false;
        sm_fail(sm, proto_error(ERR_UNAVAILABLE, NULL, "QEMU monitor of %s is not connected", sm->name));
    }
}

/* ---- QEMU events ------------------------------------------------------------------------ */

static void on_vm_event(void *arg, const char *name, json_t *data)
{
    struct storage_move *sm = arg;
    if (strncmp(name, "BLOCK_JOB_", 10))
        return;
    struct sm_disk *d = disk_by_job(sm, json_string_value(json_object_get(data, "device")));
    if (!d)
        return;
    const char *error = json_string_value(json_object_get(data, "error"));
    if (!strcmp(name, "BLOCK_JOB_READY")) {
        update_disk(d, (uint64_t)json_integer_value(json_object_get(data, "offset")),
                    (uint64_t)json_integer_value(json_object_get(data, "len")), true);
        d->ready = true;
        if (!d->t_ready)
            d->t_ready = now_ms();
        if (sm->phase == PH_MIRRORING && all_ready(sm))
            start_pivot(sm);
    } else if (!strcmp(name, "BLOCK_JOB_ERROR")) {
        log_warn("%s: mirror of %s: I/O error (%s)", sm->name, d->id,
                 json_string_value(json_object_get(data, "operation")));
    } else if (!strcmp(name, "BLOCK_JOB_COMPLETED") || !strcmp(name, "BLOCK_JOB_CANCELLED")) {
        if (d->pivot_requested && !d->pivoted && sm->phase == PH_PIVOTING)
            pivot_check(sm);
        else if (sm->phase == PH_MIRRORING || sm->phase == PH_PREPARING)
            sm_fail(sm, proto_error(ERR_QEMU, "see qemu.log in the VM directory", "the mirror of disk %s stopped: %s",
                                    d->id, error ? error : name));
    }
}

/* ---- the poll timer ------------------------------------------------------------------- */

static void recover_begin(struct storage_move *sm);

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct storage_move *sm = arg;
    if (sm->phase == PH_RECOVERING) {
        if (qemu_gone(sm))
            end_qemu_gone(sm);
        else if (sm->vm->qmp && qmp_is_ready(sm->vm->qmp))
            recover_begin(sm);
        else
            poll_soon(sm, 100);
        return;
    }
    if (qemu_gone(sm)) {
        end_qemu_gone(sm);
        return;
    }
    qmon_block_jobs_fn fn = sm->phase == PH_ROLLBACK ? on_rollback_jobs : on_jobs;
    if (qmon_query_block_jobs(sm_mon(sm), &sm->owner, QMP_TIMEOUT_MS, fn, sm) < 0)
        poll_soon(sm, POLL_MS);   /* monitor reconnecting */
}

static void poll_soon(struct storage_move *sm, int ms)
{
    if (!qmon_owner_alive(&sm->owner))
        return;   /* ended from inside the caller's callback */
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(sm->timer, &tv);
}

/* ---- preparing ------------------------------------------------------------------------- */

static void on_mirror_started(void *arg, const qmp_error_t *err)
{
    struct sm_disk *d = arg;
    bool last = batch_reply(d->sm);
    if (err)
        sm_fail(d->sm, proto_error(ERR_QEMU, NULL, "QEMU refused to mirror disk %s: %s", d->id, err->desc));
    else
        d->mirroring = true;
    batch_next(d->sm, last);
}

static void after_mirrors(struct storage_move *sm)
{
    if (sm->phase != PH_PREPARING)
        return;
    set_phase(sm, PH_MIRRORING);
    sm->t_mirror = now_ms();
    poll_soon(sm, 0);
}

static void start_mirror(struct storage_move *sm, struct sm_disk *d)
{
    /* write-blocking: once a region is copied, guest writes to it reach both
     * files before they complete, so the mirror converges whatever the
     * guest's write rate. */
    struct qmon_mirror m = {.job_id = d->job_id, .device = d->old_node, .target = d->node, .sync = QMON_SYNC_FULL,
                            .write_blocking = true, .has_auto_finalize = true, .auto_finalize = true,
                            .has_auto_dismiss = true, .auto_dismiss = true, .speed = sm->speed};
    batch_sent(sm, qmon_blockdev_mirror(sm_mon(sm), &sm->owner, &m, QMP_TIMEOUT_MS, on_mirror_started, d));
}

static void start_mirrors(struct storage_move *sm)
{
    if (sm->phase != PH_PREPARING)
        return;
    if (sm->job->cancel_requested) {
        sm_fail(sm, proto_error(ERR_CANCELLED, NULL, "storage move of %s cancelled", sm->name));
        return;
    }
    for (size_t i = 0; i < sm->n; i++)
        start_mirror(sm, &sm->disks[i]);
    then(sm, after_mirrors);
}

static void on_target_added(void *arg, const qmp_error_t *err)
{
    struct sm_disk *d = arg;
    bool last = batch_reply(d->sm);
    if (err)
        sm_fail(d->sm, proto_error(ERR_QEMU, NULL, "QEMU cannot open %s: %s", d->target, err->desc));
    else if (d->file_added)
        d->fmt_added = true;
    else
        d->file_added = true;
    batch_next(d->sm, last);
}

static void add_node(struct sm_disk *d, const struct qmon_blockdev *b)
{
    batch_sent(d->sm, qmon_blockdev_add(sm_mon(d->sm), &d->sm->owner, b, QMP_TIMEOUT_MS, on_target_added, d));
}

/* Two nodes per target, as for every disk (src/qemu/qemu_argv.c).  QMP runs
 * commands in order, so the qcow2 node finds its file node. */
static void add_targets(struct storage_move *sm)
{
    for (size_t i = 0; i < sm->n; i++) {
        struct sm_disk *d = &sm->disks[i];
        add_node(d, &(struct qmon_blockdev){.driver = QMON_BLOCKDEV_FILE, .node_name = d->file_node,
                                            .discard_unmap = true, .filename = d->target});
        add_node(d, &(struct qmon_blockdev){.driver = QMON_BLOCKDEV_QCOW2, .node_name = d->node,
                                            .discard_unmap = true, .file = d->file_node});
    }
    then(sm, start_mirrors);
}

/* The file node under a qcow2 node, by vmove's naming: vda -> vda-file,
 * vda-m17 -> vda-file-m17. */
static char *file_node_of(const char *id, const char *node)
{
    size_t n = strlen(id);
    if (!strcmp(node, id))
        return xasprintf("%s-file", id);
    if (!strncmp(node, id, n) && !strncmp(node + n, "-m", 2))
        return xasprintf("%s-file%s", id, node + n);
    return NULL;
}

static void on_prepare_block(void *arg, const struct qmon_block_device *devs, size_t n, const qmp_error_t *err)
{
    struct storage_move *sm = arg;
    if (err) {
        sm_fail(sm, proto_error(ERR_QEMU, NULL, "QEMU cannot list its block devices: %s", err->desc));
        return;
    }
    for (size_t i = 0; i < sm->n; i++) {
        struct sm_disk *d = &sm->disks[i];
        const struct qmon_block_device *b = block_entry(devs, n, d->id);
        const char *node = b ? b->node_name : NULL;
        const char *file = b ? b->file : NULL;
        if (!node || !file || strcmp(file, d->source)) {
            sm_fail(sm, proto_error(ERR_STATE, NULL, "QEMU has disk %s open as %s, vm.json says %s", d->id,
                                    file ? file : "nothing", d->source));
            return;
        }
        d->old_node = xstrdup(node);
        d->old_file_node = file_node_of(d->id, node);
    }
    save_record(sm);
    add_targets(sm);
}

/* O_EXCL first: the file is ours even if someone creates the same name
 * between the check and now; qemu-img then formats our empty file. */
static int create_target(struct sm_disk *d, char *err, size_t errlen)
{
    int fd = open(d->target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", d->target, strerror(errno));
        return -1;
    }
    close(fd);
    d->created = true;
    char why[512];
    if (image_create(d->target, d->vsize, NULL, NULL, why, sizeof why) == 0)
        return 0;
    snprintf(err, errlen, "qemu-img create %s failed: %s", d->target, why);
    return -1;
}

static void start_move(struct storage_move *sm)
{
    set_phase(sm, PH_PREPARING);
    vm_set_hooks(sm->vm, &(struct vm_hooks){on_vm_event, NULL, sm});
    char err[1024];
    for (size_t i = 0; i < sm->n; i++)
        if (create_target(&sm->disks[i], err, sizeof err) < 0) {
            save_record(sm);
            sm_fail(sm, proto_error(ERR_INTERNAL, NULL, "%s", err));
            return;
        }
    save_record(sm);
    if (qmon_query_block(sm_mon(sm), &sm->owner, QMP_TIMEOUT_MS, on_prepare_block, sm) < 0)
        sm_fail(sm, proto_error(ERR_UNAVAILABLE, NULL, "QEMU monitor of %s is not connected", sm->name));
}

/* ---- API and cancel ------------------------------------------------------------------------ */

static void cancel_move(struct job *job)
{
    for (struct storage_move *sm = moves; sm; sm = sm->next) {
        if (sm->job != job)
            continue;
        if (sm->phase == PH_PREPARING || sm->phase == PH_MIRRORING)
            sm_fail(sm, proto_error(ERR_CANCELLED, NULL, "storage move of %s cancelled; it keeps running on its "
                                                         "original disks", sm->name));
        else
            log_warn("%s: cancel refused: the storage move is %s", sm->name, phase_names[sm->phase]);
        return;
    }
}

static const struct job_ops storage_ops = {"storage.move", cancel_move};

static void fill_disk(struct sm_disk *d, int64_t job_id, const char *id, const char *source, const char *target)
{
    d->id = xstrdup(id);
    d->source = xstrdup(source);
    d->target = xstrdup(target);
    d->node = xasprintf("%s-m%lld", id, (long long)job_id);
    d->file_node = xasprintf("%s-file-m%lld", id, (long long)job_id);
    d->job_id = xasprintf("mirror-%s", id);
}

static json_t *job_params(const struct storage_plan *p, bool keep, long long speed)
{
    json_t *disks = json_array();
    for (size_t i = 0; i < p->n; i++)
        json_array_append_new(disks, json_pack("{s:s, s:s, s:s}", "id", p->disks[i].id, "from",
                                               p->disks[i].source, "to", p->disks[i].target));
    return json_pack("{s:o, s:b, s:I}", "disks", disks, "keep_source", keep, "bandwidth", (json_int_t)speed);
}

struct storage_move *storage_move_create(struct agent *a, const char *name, json_t *params, json_t **err)
{
    struct vm *vm = vm_find(a, name);
    if (!vm) {
        *err = proto_error(ERR_NOT_FOUND, NULL, "no VM named \"%s\" on host %s", name, a->name);
        return NULL;
    }
    bool keep = json_is_true(json_object_get(params, "keep_source"));
    json_int_t speed = json_integer_value(json_object_get(params, "bandwidth"));
    if (speed < 0) {
        *err = proto_error(ERR_INVALID, NULL, "bandwidth must not be negative");
        return NULL;
    }
    struct storage_plan plan;
    json_t *problem = storage_plan_make(vm, params, &plan);
    if (problem) {
        *err = problem;
        return NULL;
    }
    struct job *job = job_create(a, &storage_ops, name, job_params(&plan, keep, speed));
    struct storage_move *sm = sm_new(a, vm, job, plan.n);
    sm->keep_source = keep;
    sm->speed = speed;
    const char *cto = json_string_value(json_object_get(params, "config_to"));
    sm->config_to = cto ? xstrdup(cto) : NULL;
    sm->timer = evtimer_new(a->base, on_timer, sm);
    for (size_t i = 0; i < plan.n; i++) {
        fill_disk(&sm->disks[i], job->id, plan.disks[i].id, plan.disks[i].source, plan.disks[i].target);
        sm->disks[i].vsize = plan.disks[i].virtual_size;
    }
    storage_plan_free(&plan);
    return sm;
}

struct job *storage_move_job(const struct storage_move *sm) { return sm->job; }

void storage_move_begin(struct storage_move *sm) { start_move(sm); }

/* ---- recovery after a vmoved restart --------------------------------------------------------- */

/* QEMU lives and its monitor is back: roll back like a cancel.  Anything
 * that may exist is undone (errors for what does not are harmless); the
 * rollback's query-block adopts pivots QEMU made while we were away. */
static void recover_begin(struct storage_move *sm)
{
    for (size_t i = 0; i < sm->n; i++) {
        struct sm_disk *d = &sm->disks[i];
        if (!d->pivoted)
            d->file_added = d->fmt_added = d->mirroring = true;
    }
    rollback(sm);
}

static struct storage_move *sm_from_record(struct agent *a, struct vm *vm, struct job *job)
{
    json_t *disks = json_object_get(vm->storage_move, "disks");
    struct storage_move *sm = sm_new(a, vm, job, json_array_size(disks));
    sm->keep_source = true;   /* an interrupted move never deletes sources */
    size_t i;
    json_t *j;
    json_array_foreach(disks, i, j) {
        struct sm_disk *d = &sm->disks[i];
        const char *s;
#define STR(field, key) d->field = (s = json_string_value(json_object_get(j, key))) ? xstrdup(s) : xstrdup("")
        STR(id, "id"); STR(source, "source"); STR(target, "target"); STR(node, "node");
        STR(file_node, "file_node"); STR(job_id, "job_id");
#undef STR
        s = json_string_value(json_object_get(j, "old_node"));
        d->old_node = s ? xstrdup(s) : NULL;
        s = json_string_value(json_object_get(j, "old_file_node"));
        d->old_file_node = s ? xstrdup(s) : NULL;
        d->created = json_is_true(json_object_get(j, "created"));
        d->pivot_requested = json_is_true(json_object_get(j, "pivot_requested"));
        d->pivoted = json_is_true(json_object_get(j, "pivoted"));
    }
    return sm;
}

void storage_recover(struct agent *a)
{
    for (struct vm *vm = a->vms; vm; vm = vm->next) {
        if (!vm->storage_move)
            continue;
        json_int_t id = json_integer_value(json_object_get(vm->storage_move, "job"));
        struct job *job = job_adopt(a, &storage_ops, id);
        if (!job)
            job = job_create(a, &storage_ops, vm->name, NULL);
        struct storage_move *sm = sm_from_record(a, vm, job);
        log_warn("vm %s: settling a storage move interrupted by a vmoved restart (job %lld)", vm->name,
                 (long long)job->id);
        sm->failure = proto_error(ERR_INTERNAL, "the VM runs on the disks vm.json names; retry the move",
                                  "the storage move was interrupted by a vmoved restart");
        sm->timer = evtimer_new(a->base, on_timer, sm);
        vm_set_hooks(vm, &(struct vm_hooks){on_vm_event, NULL, sm});
        set_phase(sm, PH_RECOVERING);
        poll_soon(sm, 0);
    }
}

void storage_free_all(struct agent *a)
{
    (void)a;
    while (moves)
        sm_release(moves);   /* jobs_free_all answers the watchers */
}
