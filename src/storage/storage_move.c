/* The live storage move (see storage/storage_move.h): the job, its record,
 * vm.json and the notes around the one mirror machine of block/mirror.h,
 * which does the QEMU side (targets, mirrors, pivots, rollback), and the
 * chain copy of storage/storage_chain.h before it for a VM with
 * checkpoints.
 *
 * A little over 600 lines: every ending (done, rolled back, QEMU gone,
 * recovered) must settle the mirror targets and the chain copies together,
 * and keeping them beside each other is what makes that checkable. */
#include "storage/storage_move.h"

#include <errno.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/mirror.h"
#include "block/mirror_progress.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/acl.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "core/journal.h"
#include "qemu/monitor.h"
#include "storage/storage_chain.h"
#include "storage/storage_plan.h"
#include "vm/vm.h"

#define QMP_TIMEOUT_MS 30000

enum phase { PH_COPYING, PH_PREPARING, PH_MIRRORING, PH_PIVOTING, PH_CLEANUP, PH_ROLLBACK, PH_RECOVERING };
static const char *phase_names[] = {"copying layers", "preparing", "mirroring", "pivoting", "cleanup",
                                    "rolling back", "recovering"};

struct storage_move {
    struct storage_move *next;
    struct agent *agent;
    struct job *job;
    struct vm *vm;
    char *name;
    struct block_mirror *bm;         /* the disks and their QEMU side */
    struct chain_copy *chain;        /* checkpoint layers copied first (NULL: the VM has none) */
    uint64_t copy_ms;
    bool keep_source;
    char *config_to;                 /* --config-to DIR, or NULL */
    enum phase phase;
    struct event *timer;             /* recovery: waiting for QEMU's monitor */
    struct qmon_owner owner;         /* replies in flight; ended by sm_release */
    uint64_t t_start, t_mirror;
    json_t *failure;
    json_t *notes;                   /* what the user must know: kept files, ... */
};

/* One vmoved per process: the moves in flight. */
static struct storage_move *moves;

static const struct block_mirror_ops mirror_ops;
static const struct chain_copy_ops chain_ops;

#define DISK_FOREACH(sm, i, d) \
    for (size_t i = 0; i < block_mirror_count((sm)->bm) && ((d) = block_mirror_disk((sm)->bm, i)); i++)

/* ---- lifetime ---------------------------------------------------------- */

/* The owner's release: the last reference (ours or a reply's) is gone, so
 * no reply can reach the mirror machine any more. */
static void sm_free(void *obj)
{
    struct storage_move *sm = obj;
    block_mirror_free(sm->bm);
    chain_copy_free(sm->chain);
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
    block_mirror_stop(sm->bm);
    chain_copy_stop(sm->chain);
    if (sm->vm && sm->vm->hooks.arg == sm)
        vm_set_hooks(sm->vm, NULL);
    sm->vm = NULL;
    sm->job = NULL;
    qmon_owner_end(&sm->owner);
}

static struct storage_move *sm_new(struct agent *a, struct vm *vm, struct job *job, size_t n, int64_t speed)
{
    struct storage_move *sm = xcalloc(1, sizeof *sm);
    sm->agent = a;
    sm->vm = vm;
    sm->job = job;
    sm->name = xstrdup(vm->name);
    qmon_owner_init(&sm->owner, sm, sm_free);
    struct block_mirror_config cfg = {.name = sm->name, .kind = BLOCK_MIRROR_FILE, .timeout_ms = QMP_TIMEOUT_MS,
                                      .speed = speed, .explicit_auto = true};
    sm->bm = block_mirror_new(a->base, &sm->owner, &cfg, &mirror_ops, sm, n);
    sm->notes = json_array();
    sm->t_start = now_ms();
    sm->next = moves;
    moves = sm;
    return sm;
}

static bool sm_qemu_gone(void *arg)
{
    const struct storage_move *sm = arg;
    return !sm->vm || sm->vm->state == VM_STOPPED || sm->vm->state == VM_CRASHED;
}

/* NULL once the move is released or the VM gone: qmon_* then refuse. */
static qmp_t *sm_mon(void *arg)
{
    const struct storage_move *sm = arg;
    return sm->vm ? sm->vm->qmp : NULL;
}

/* ---- persistence ------------------------------------------------------------ */

static json_t *record_json(struct storage_move *sm)
{
    json_t *disks = json_array();
    struct block_mirror_disk *d;
    DISK_FOREACH(sm, i, d)
        json_array_append_new(disks, block_mirror_disk_record(d));
    return json_pack("{s:I, s:b, s:o, s:o}", "job", (json_int_t)(sm->job ? sm->job->id : 0), "keep_source",
                     sm->keep_source, "disks", disks, "copies", chain_copy_record(sm->chain));
}

/* runtime.json first, so a restarted vmoved knows what to undo. */
static void save_record(void *arg)
{
    struct storage_move *sm = arg;
    if (sm->vm)
        vm_set_storage_move(sm->vm, record_json(sm));
}

/* vm.json follows QEMU after each pivot: a copy is saved atomically and
 * only then replaces the config in memory. */
static int save_disk_path(struct vm *vm, const struct chain_copy *chain, const char *id, const char *path,
                          char *err, size_t errlen)
{
    struct vm_config c;
    vm_config_copy(&c, &vm->cfg);
    /* The checkpoints' layers of this disk are its copies from now on: the
     * same write as the disk's path. */
    if (c.checkpoints)
        chain_copy_retarget(chain, id, c.checkpoints);
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

static void note_cb(void *arg, const char *msg) { note(arg, "%s", msg); }

static void set_phase(struct storage_move *sm, enum phase ph)
{
    sm->phase = ph;
    if (sm->job)
        job_set_phase(sm->job, phase_names[ph]);
}

/* ---- endings ------------------------------------------------------------------ */

static void end_failed(struct storage_move *sm);

static void sm_fail(struct storage_move *sm, json_t *error)
{
    if (!sm->failure)
        sm->failure = error;
    else
        json_decref(error);
    if (sm->phase == PH_ROLLBACK || sm->phase == PH_RECOVERING)
        return;
    log_warn("%s: storage move failing: %s", sm->name, json_string_value(json_object_get(sm->failure, "message")));
    if (sm->phase == PH_COPYING) {   /* QEMU has seen nothing of the move yet */
        chain_copy_stop(sm->chain);
        chain_copy_remove(sm->chain, NULL, note_cb, sm);
        end_failed(sm);
        return;
    }
    set_phase(sm, PH_ROLLBACK);
    block_mirror_abort(sm->bm);
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
    struct block_mirror_disk *d;
    DISK_FOREACH(sm, i, d) {
        uint64_t ms = d->t_ready > sm->t_mirror ? d->t_ready - sm->t_mirror : 0;
        bytes += d->len;
        mirror_ms = ms > mirror_ms ? ms : mirror_ms;
        json_array_append_new(disks, json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}", "id", d->id, "from", d->source,
                                               "to", d->target, "bytes", (json_int_t)d->len, "mirror_ms",
                                               (json_int_t)ms, "pivot_ms", (json_int_t)d->pivot_ms));
    }
    return json_pack("{s:o, s:I, s:I, s:I, s:f, s:b, s:O, s:s*, s:o, s:I, s:I}", "disks", disks, "total_ms",
                     (json_int_t)(now_ms() - sm->t_start), "mirror_ms", (json_int_t)mirror_ms, "bytes",
                     (json_int_t)bytes, "rate_Bps", mirror_ms ? (double)bytes * 1000.0 / (double)mirror_ms : 0.0,
                     "kept_source", sm->keep_source, "notes", sm->notes, "config_to", sm->config_to, "disk_copy",
                     block_mirror_progress(sm->bm, true), "files_copied", (json_int_t)chain_copy_count(sm->chain),
                     "copy_ms", (json_int_t)sm->copy_ms);
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

/* Every disk runs from its new file and vm.json says so: drop the sources
 * (the mirror machine's on_done). */
static void cleanup(void *arg)
{
    struct storage_move *sm = arg;
    set_phase(sm, PH_CLEANUP);
    struct block_mirror_disk *d;
    DISK_FOREACH(sm, i, d) {
        if (sm->keep_source)
            break;
        if (!d->old_released) {
            note(sm, "kept %s: QEMU did not close it (blockdev-del failed)", d->source);
            continue;
        }
        if (unlink(d->source) < 0)
            note(sm, "could not delete %s: %s", d->source, strerror(errno));
        chain_copy_unlink_sources(sm->chain, d->id, note_cb, sm);   /* the old checkpoint layers */
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
static void end_qemu_gone(void *arg)
{
    struct storage_move *sm = arg;
    const char *desc = json_string_value(json_object_get(sm->vm ? sm->vm->last_exit : NULL, "description"));
    if (!sm->failure)
        sm->failure = proto_error(ERR_QEMU, "the VM's disks are the ones vm.json names (`vmove vm show`)",
                                  "the VM's QEMU exited during the storage move (%s)", desc ? desc : "?");
    else   /* an earlier failure (cancel, interrupted) stays the headline */
        note(sm, "the VM's QEMU exited during the storage move (%s)", desc ? desc : "?");
    struct block_mirror_disk *d;
    DISK_FOREACH(sm, i, d) {
        if (d->pivoted)
            note(sm, "disk %s had moved to %s; %s was kept", d->id, d->target, d->source);
        else if (d->pivot_requested)
            note(sm, "disk %s: QEMU exited while pivoting to %s; both files kept, vm.json names %s: check which "
                     "one is current before deleting either", d->id, d->target, d->source);
        else {
            if (block_mirror_disk_remove(d) < 0)
                note(sm, "could not delete %s: %s", d->target, strerror(errno));
            chain_copy_remove(sm->chain, d->id, note_cb, sm);
        }
    }
    end_failed(sm);
}

/* The rollback is over: every disk not pivoted stays on its source. */
static void sm_rolled_back(void *arg, bool timed_out)
{
    struct storage_move *sm = arg;
    if (timed_out) {
        note(sm, "QEMU did not drop the mirror jobs within %d s; target files left in place",
             BLOCK_MIRROR_CANCEL_WAIT_MS / 1000);
        end_failed(sm);
        return;
    }
    struct block_mirror_disk *d;
    DISK_FOREACH(sm, i, d) {
        if (d->pivoted) {
            note(sm, "disk %s had already moved to %s (vm.json updated); %s was kept", d->id, d->target, d->source);
            continue;
        }
        if (d->pivot_requested) {
            note(sm, "disk %s: could not learn whether QEMU switched to %s; both files kept, vm.json names %s",
                 d->id, d->target, d->source);
            continue;
        }
        if (block_mirror_disk_remove(d) < 0)
            note(sm, "could not delete %s: %s", d->target, strerror(errno));
        chain_copy_remove(sm->chain, d->id, note_cb, sm);
    }
    end_failed(sm);
}

/* ---- the mirror machine's reports --------------------------------------------------------- */

/* The disk copy: the same keys as the shared-nothing move's (block/mirror_progress.h). */
static void sm_publish_progress(void *arg)
{
    struct storage_move *sm = arg;
    json_t *p = block_mirror_progress(sm->bm, false);
    json_object_set_new(p, "phase", json_string(phase_names[sm->phase]));
    json_object_set_new(p, "elapsed_ms", json_integer((json_int_t)(now_ms() - sm->t_start)));
    job_set_progress(sm->job, p);
}

static void sm_on_mirroring(void *arg)
{
    struct storage_move *sm = arg;
    set_phase(sm, PH_MIRRORING);
    sm->t_mirror = now_ms();
}

/* Pivots start only once every mirror is READY. */
static void sm_on_ready(void *arg)
{
    struct storage_move *sm = arg;
    log_info("%s: all mirrors ready after %llu ms; pivoting", sm->name, (unsigned long long)(now_ms() - sm->t_mirror));
    set_phase(sm, PH_PIVOTING);
    block_mirror_pivot(sm->bm);
}

/* QEMU runs disk d from its target now: vm.json says so before the next
 * pivot (the machine then saves the record and closes the old nodes). */
static void sm_on_pivoted(void *arg, struct block_mirror_disk *d)
{
    struct storage_move *sm = arg;
    char err[512];
    log_info("%s: disk %s now runs on %s (pivot %llu ms)", sm->name, d->id, d->target,
             (unsigned long long)d->pivot_ms);
    if (save_disk_path(sm->vm, sm->chain, d->id, d->target, err, sizeof err) < 0) {
        /* QEMU uses the target now; keep every file and say so loudly. */
        sm->keep_source = true;
        note(sm, "QEMU runs disk %s from %s but vm.json could not be updated: %s", d->id, d->target, err);
    }
}

static json_t *failure_error(struct storage_move *sm, const struct block_mirror_failure *f)
{
    const struct block_mirror_disk *d = f->disk;
    const char *qemu_log = "see qemu.log in the VM directory";
    switch (f->what) {
    case BLOCK_MIRROR_FAIL_CREATE:
        return proto_error(ERR_INTERNAL, NULL, "%s", f->desc);
    case BLOCK_MIRROR_FAIL_NO_MONITOR:
        return proto_error(ERR_UNAVAILABLE, NULL, "QEMU monitor of %s is not connected", sm->name);
    case BLOCK_MIRROR_FAIL_QUERY:
        return proto_error(ERR_QEMU, NULL, "QEMU cannot list its block devices: %s", f->desc);
    case BLOCK_MIRROR_FAIL_SOURCE:
        return proto_error(ERR_STATE, NULL, "QEMU has disk %s open as %s, vm.json says %s", d->id,
                           f->file ? f->file : "nothing", d->source);
    case BLOCK_MIRROR_FAIL_TARGET:
        return proto_error(ERR_QEMU, NULL, "QEMU cannot open %s: %s", d->target, f->desc);
    case BLOCK_MIRROR_FAIL_MIRROR:
        return proto_error(ERR_QEMU, NULL, "QEMU refused to mirror disk %s: %s", d->id, f->desc);
    case BLOCK_MIRROR_FAIL_STOPPED:
        return proto_error(ERR_QEMU, qemu_log, "the mirror of disk %s stopped: %s", d->id, f->desc);
    case BLOCK_MIRROR_FAIL_PIVOT_REFUSED:
        return proto_error(ERR_QEMU, NULL, "QEMU refused to pivot disk %s: %s", d->id, f->desc);
    case BLOCK_MIRROR_FAIL_PIVOT_NODE:
        return proto_error(ERR_QEMU, qemu_log, "QEMU did not switch disk %s to %s (it still uses node %s)", d->id,
                           d->target, f->node ? f->node : "?");
    case BLOCK_MIRROR_FAIL_VANISHED:
    case BLOCK_MIRROR_FAIL_STALLED:
        break;
    }
    return proto_error(ERR_QEMU, qemu_log, "a mirror job ended before its pivot");
}

static void sm_on_failed(void *arg, const struct block_mirror_failure *f)
{
    struct storage_move *sm = arg;
    sm_fail(sm, failure_error(sm, f));
}

static bool sm_guest_running(void *arg)
{
    const struct storage_move *sm = arg;
    return sm->vm && sm->vm->state == VM_RUNNING;
}

static const struct block_mirror_ops mirror_ops = {
    .mon = sm_mon, .on_state = save_record, .on_mirroring = sm_on_mirroring, .on_progress = sm_publish_progress,
    .on_ready = sm_on_ready, .on_pivoted = sm_on_pivoted, .on_done = cleanup, .on_failed = sm_on_failed,
    .on_rolled_back = sm_rolled_back, .qemu_gone = sm_qemu_gone, .on_qemu_gone = end_qemu_gone,
    .guest_running = sm_guest_running,
};

static void on_vm_event(void *arg, const char *name, json_t *data)
{
    struct storage_move *sm = arg;
    block_mirror_event(sm->bm, name, data);
}

/* ---- the checkpoint layers, copied before the mirror ----------------------------------------- */

static void chain_progress(void *arg, size_t done, size_t total, const char *current)
{
    struct storage_move *sm = arg;
    job_set_progress(sm->job, json_pack("{s:s, s:I, s:I, s:s, s:I}", "phase", phase_names[sm->phase], "files_done",
                                        (json_int_t)done, "files_total", (json_int_t)total, "copying", current,
                                        "elapsed_ms", (json_int_t)(now_ms() - sm->t_start)));
}

/* Every frozen file has its copy: the mirror of the active layers
 * (sync=top onto targets backed by the copies) starts. */
static void chain_copied(void *arg, const char *err)
{
    struct storage_move *sm = arg;
    if (err) {
        sm_fail(sm, proto_error(ERR_INTERNAL, "nothing was changed; the VM runs on its original disks",
                                "storage move of %s: %s", sm->name, err));
        return;
    }
    sm->copy_ms = now_ms() - sm->t_start;
    log_info("%s: %zu checkpoint file(s) copied in %llu ms", sm->name, chain_copy_count(sm->chain),
             (unsigned long long)sm->copy_ms);
    set_phase(sm, PH_PREPARING);
    block_mirror_start(sm->bm);
}

static const struct chain_copy_ops chain_ops = {save_record, chain_progress, chain_copied};

/* ---- API and cancel ------------------------------------------------------------------------ */

static void cancel_move(struct job *job)
{
    for (struct storage_move *sm = moves; sm; sm = sm->next) {
        if (sm->job != job)
            continue;
        if (sm->phase == PH_COPYING || sm->phase == PH_PREPARING || sm->phase == PH_MIRRORING)
            sm_fail(sm, proto_error(ERR_CANCELLED, NULL, "storage move of %s cancelled; it keeps running on its "
                                                         "original disks", sm->name));
        else
            log_warn("%s: cancel refused: the storage move is %s", sm->name, phase_names[sm->phase]);
        return;
    }
}

static const struct job_ops storage_ops = {"storage.move", cancel_move};

static void fill_disk(struct storage_move *sm, size_t i, int64_t job_id, const struct plan_disk *p)
{
    char *node = xasprintf("%s-m%lld", p->id, (long long)job_id);
    char *file_node = xasprintf("%s-file-m%lld", p->id, (long long)job_id);
    char *job = xasprintf("mirror-%s", p->id);
    block_mirror_set_disk(sm->bm, i, p->id, p->source, p->target, NULL, p->virtual_size, node, file_node, job);
    block_mirror_set_target_backing(sm->bm, i, p->backing);
    free(node), free(file_node), free(job);
}

static json_t *job_params(const struct storage_plan *p, bool keep, long long speed)
{
    json_t *disks = json_array();
    for (size_t i = 0; i < p->n; i++)
        json_array_append_new(disks, json_pack("{s:s, s:s, s:s}", "id", p->disks[i].id, "from",
                                               p->disks[i].source, "to", p->disks[i].target));
    return json_pack("{s:o, s:b, s:I}", "disks", disks, "keep_source", keep, "bandwidth", (json_int_t)speed);
}

struct storage_move *storage_move_create(struct agent *a, const char *name, json_t *params, json_t *facts,
                                        json_t **err)
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
    json_t *problem = storage_plan_make(vm, params, facts, &plan);
    if (problem) {
        *err = problem;
        return NULL;
    }
    struct job *job = job_create(a, &storage_ops, name, job_params(&plan, keep, speed));
    struct storage_move *sm = sm_new(a, vm, job, plan.n, speed);
    sm->keep_source = keep;
    const char *cto = json_string_value(json_object_get(params, "config_to"));
    sm->config_to = cto ? xstrdup(cto) : NULL;
    for (size_t i = 0; i < plan.n; i++)
        fill_disk(sm, i, job->id, &plan.disks[i]);
    if (plan.n_copies)
        sm->chain = chain_copy_new(a->base, plan.copies, plan.n_copies, &chain_ops, sm);
    storage_plan_free(&plan);
    return sm;
}

struct job *storage_move_job(const struct storage_move *sm) { return sm->job; }

void storage_move_begin(struct storage_move *sm)
{
    vm_set_hooks(sm->vm, &(struct vm_hooks){on_vm_event, NULL, sm});
    if (sm->chain) {
        set_phase(sm, PH_COPYING);
        chain_copy_start(sm->chain);
        return;
    }
    set_phase(sm, PH_PREPARING);
    block_mirror_start(sm->bm);
}

/* ---- recovery after a vmoved restart --------------------------------------------------------- */

/* QEMU lives and its monitor is back: roll back like a cancel (the
 * rollback's query-block adopts pivots QEMU made while we were away). */
static void on_recover_timer(evutil_socket_t fd, short what, void *arg)
{
    struct storage_move *sm = arg;
    if (sm_qemu_gone(sm)) {
        end_qemu_gone(sm);
    } else if (sm->vm->qmp && qmp_is_ready(sm->vm->qmp)) {
        set_phase(sm, PH_ROLLBACK);
        block_mirror_recover(sm->bm);
    } else {
        struct timeval tv = {0, 100 * 1000};
        evtimer_add(sm->timer, &tv);
    }
}

static struct storage_move *sm_from_record(struct agent *a, struct vm *vm, struct job *job)
{
    json_t *disks = json_object_get(vm->storage_move, "disks");
    struct storage_move *sm = sm_new(a, vm, job, json_array_size(disks), 0);
    sm->keep_source = true;   /* an interrupted move never deletes sources */
    size_t i;
    json_t *j;
    json_array_foreach(disks, i, j)
        block_mirror_disk_restore(sm->bm, i, j);
    json_t *copies = json_object_get(vm->storage_move, "copies");
    if (json_array_size(copies))
        sm->chain = chain_copy_restore(a->base, copies);
    return sm;
}

void storage_recover(struct agent *a)
{
    VM_FOREACH(a, vm) {
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
        sm->timer = evtimer_new(a->base, on_recover_timer, sm);
        vm_set_hooks(vm, &(struct vm_hooks){on_vm_event, NULL, sm});
        set_phase(sm, PH_RECOVERING);
        struct timeval tv = {0, 0};
        evtimer_add(sm->timer, &tv);
    }
}

void storage_free_all(struct agent *a)
{
    (void)a;
    while (moves)
        sm_release(moves);   /* jobs_free_all answers the watchers */
}
