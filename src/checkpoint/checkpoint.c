/* Checkpoint create and the recovery of an interrupted one (see
 * checkpoint/checkpoint.h), and what the checkpoint files share
 * (ckpt_internal.h); apply and list are ckpt_apply.c, delete ckpt_delete.c.
 *
 * Over 600 lines because create is one state machine with two paths that
 * share their rollback: disk-only (one snapshot transaction) and --memory
 * (QEMU's background snapshot around the same transaction); splitting them
 * would put the rollback's invariants in two files. */
#include "checkpoint/checkpoint.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/image.h"
#include "checkpoint/ckpt_internal.h"
#include "checkpoint/ckpt_model.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "core/journal.h"
#include "qemu/monitor.h"
#include "vm/vm.h"

#define QMP_TIMEOUT_MS 30000

/* ---- shared helpers ---------------------------------------------------- */

json_t *ck_tree_copy(const struct vm *vm)
{
    if (vm->cfg.checkpoints)
        return json_deep_copy(vm->cfg.checkpoints);
    return json_pack("{s:n, s:[]}", "current", "list");
}

int ck_save(struct vm *vm, json_t *tree, json_t *paths, char *err, size_t errlen)
{
    struct vm_config c;
    vm_config_copy(&c, &vm->cfg);
    json_decref(c.checkpoints);
    c.checkpoints = json_deep_copy(tree);
    for (size_t i = 0; i < c.n_disks; i++) {
        const char *p = json_string_value(json_object_get(paths, c.disks[i].id));
        if (p) {
            free(c.disks[i].path);
            c.disks[i].path = xstrdup(p);
        }
    }
    char *file = xasprintf("%s/vm.json", vm->dir);
    int rc = vm_config_save(file, &c, err, errlen);
    free(file);
    if (rc < 0) {
        vm_config_free(&c);
        return -1;
    }
    vm_config_free(&vm->cfg);
    vm->cfg = c;
    return 0;
}

bool ck_vm_live(const struct vm *vm) { return vm->state == VM_RUNNING || vm->state == VM_PAUSED; }

json_t *ck_busy(struct agent *a, struct vm *vm)
{
    if (vm->migration || vm->storage_move || job_active_for_vm(a, vm->name) || vm->job)
        return proto_error(ERR_STATE, "wait for it to end (`vmove jobs list`)",
                           "VM %s has an operation in progress", vm->name);
    if (vm->state != VM_STOPPED && !ck_vm_live(vm))
        return proto_error(ERR_STATE, "checkpoints need a running, paused or stopped VM",
                           "VM %s is %s", vm->name, vm_state_name(vm->state));
    json_t *tree = vm->cfg.checkpoints;
    json_t *u = ckpt_unsettled(tree);
    if (u)
        return proto_error(ERR_STATE, "it is settled when vmoved restarts or its job ends",
                           "checkpoint %s of VM %s is %s", json_string_value(json_object_get(u, "name")), vm->name,
                           json_string_value(json_object_get(u, "state")));
    return NULL;
}

const char *ck_base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int ck_unlink(const char *vm, const char *path)
{
    if (unlink(path) == 0 || errno == ENOENT)
        return 0;
    log_warn("%s: cannot delete %s: %s", vm, path, strerror(errno));
    return -1;
}

struct ck_deferred {
    void (*fn)(void *arg);
    void *arg;
};

static void on_deferred(evutil_socket_t fd, short what, void *arg)
{
    struct ck_deferred *d = arg;
    d->fn(d->arg);
    free(d);
}

void ck_defer(struct agent *a, void (*fn)(void *arg), void *arg)
{
    struct ck_deferred *d = xcalloc(1, sizeof *d);
    d->fn = fn, d->arg = arg;
    struct timeval tv = {0, 0};
    if (event_base_once(a->base, -1, EV_TIMEOUT, on_deferred, d, &tv) < 0)
        abort();   /* only on OOM */
}

struct vm *ck_find_vm(struct agent *a, const char *name, json_t **err)
{
    struct vm *vm = vm_find(a, name);
    if (!vm)
        *err = proto_error(ERR_NOT_FOUND, "`vmove vm list` shows the VMs of this host", "no VM named \"%s\" on host %s",
                           name, a->name);
    return vm;
}

json_t *ck_find(struct vm *vm, const char *name, json_t **err)
{
    json_t *ck = ckpt_find(vm->cfg.checkpoints, name);
    if (!ck)
        *err = proto_error(ERR_NOT_FOUND, "`vmove checkpoint list VM` shows them", "VM %s has no checkpoint \"%s\"",
                           vm->name, name);
    return ck;
}

/* The memory image goes next to the first disk's layers, so that it is on
 * the same (shared) storage: DIR/VM.NAME.vmstate, claimed with O_EXCL. */
static char *claim_vmstate(const struct vm *vm, const char *name, char *err, size_t errlen)
{
    char *dir = xstrdup(vm->cfg.disks[0].path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    char *p = xasprintf("%s/%s.%s.vmstate", dir, vm->name, name);
    free(dir);
    int fd = open(p, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create the memory image %s: %s", p, strerror(errno));
        free(p);
        return NULL;
    }
    close(fd);
    return p;
}

json_t *ck_active_paths(const struct vm *vm)
{
    json_t *o = json_object();
    for (size_t i = 0; i < vm->cfg.n_disks; i++)
        json_object_set_new(o, vm->cfg.disks[i].id, json_string(vm->cfg.disks[i].path));
    return o;
}

/* ---- create -------------------------------------------------------------- */

struct ck_create {
    struct agent *agent;
    char *vm, *name;
    struct job *job;
    struct qmon_owner owner;
    json_t *old_tree, *old_paths, *overlays;   /* for the rollback */
    size_t n;
    char **top, **node, **file_node;         /* per disk */
    int pending;
    json_t *error;
    uint64_t t0;
    /* --memory: QEMU's background snapshot into vmstate */
    bool memory, caps_on, disks_switched;
    char *vmstate;
    struct event *poll;
    uint64_t t_stop, t_resume;       /* stop sent, cont answered: the guest's pause (an upper bound) */
    bool resumed, seen_active;
    uint64_t first_transferred;
    json_int_t qemu_downtime_ms, mem_total_ms;
    bool live;                       /* QEMU ran the VM when the create was asked */
    checkpoint_started_fn started;   /* the request hears of its job (or error) */
    void *started_arg;
};

static const struct job_ops create_ops = {"checkpoint.create", NULL};

static void create_free(void *obj)
{
    struct ck_create *c = obj;
    for (size_t i = 0; i < c->n; i++)
        free(c->top[i]), free(c->node[i]), free(c->file_node[i]);
    free(c->top), free(c->node), free(c->file_node);
    json_decref(c->old_tree), json_decref(c->old_paths), json_decref(c->overlays), json_decref(c->error);
    if (c->poll)
        event_free(c->poll);
    free(c->vm), free(c->name), free(c->vmstate);
    free(c);
}

static qmp_t *create_mon(struct ck_create *c)
{
    struct vm *vm = vm_find(c->agent, c->vm);
    return vm && ck_vm_live(vm) ? vm->qmp : NULL;
}

static void create_end(struct ck_create *c, json_t *result)
{
    struct job *job = c->job;
    c->job = NULL;
    struct vm *vm = vm_find(c->agent, c->vm);
    if (vm && vm->hooks.arg == c)
        vm_set_hooks(vm, NULL);
    if (c->vmstate && !result)
        ck_unlink(c->vm, c->vmstate);
    if (result) {
        journal_event(c->agent->journal, c->vm, "checkpoint.created", result);
        job_succeed(job, result);
    } else {
        json_t *e = c->error ? c->error : proto_error(ERR_INTERNAL, NULL, "checkpoint create failed");
        c->error = NULL;
        journal_event(c->agent->journal, c->vm, "checkpoint.create.failed", e);
        job_fail(job, e);
    }
    qmon_owner_end(&c->owner);
}

static void create_fail(struct ck_create *c, json_t *e)
{
    if (!c->error)
        c->error = e;
    else
        json_decref(e);
}

/* Back to the tree and layers before the create: QEMU never switched. */
static void create_rollback(struct ck_create *c)
{
    struct vm *vm = vm_find(c->agent, c->vm);
    qmp_t *q = create_mon(c);
    for (size_t i = 0; q && i < c->n; i++) {
        qmon_blockdev_del(q, NULL, c->node[i], QMP_TIMEOUT_MS, NULL, NULL);
        qmon_blockdev_del(q, NULL, c->file_node[i], QMP_TIMEOUT_MS, NULL, NULL);
    }
    char err[512];
    if (vm && ck_save(vm, c->old_tree, c->old_paths, err, sizeof err) < 0)
        log_warn("%s: checkpoint rollback: %s", c->vm, err);
    const char *k;
    json_t *v;
    json_object_foreach(c->overlays, k, v) ck_unlink(c->vm, json_string_value(v));
    create_end(c, NULL);
}

static json_t *create_result(struct ck_create *c, const char *how)
{
    json_t *r = json_pack("{s:s, s:s, s:s, s:s, s:O, s:I}", "vm", c->vm, "checkpoint", c->name, "kind",
                          c->memory ? "memory" : "disk-only", "how", how, "layers", c->overlays, "ms",
                          (json_int_t)(now_ms() - c->t0));
    if (c->memory) {
        /* The guest's pause: from vmoved sending stop to QEMU answering
         * cont (an upper bound: QMP round trips included). */
        json_object_set_new(r, "vmstate", json_string(c->vmstate));
        json_object_set_new(r, "qemu_downtime_ms", json_integer(c->qemu_downtime_ms));
        json_object_set_new(r, "paused_ms", json_integer(c->t_resume >= c->t_stop && c->t_stop ?
                                                         (json_int_t)(c->t_resume - c->t_stop) : -1));
        json_object_set_new(r, "memory_save_ms", json_integer(c->mem_total_ms));
    }
    return r;
}

static void create_commit(struct ck_create *c, const char *how)
{
    struct vm *vm = vm_find(c->agent, c->vm);
    json_t *tree = vm ? ck_tree_copy(vm) : NULL;
    json_t *ck = ckpt_find(tree, c->name);
    char err[512] = "the VM is gone";
    if (ck) {
        json_object_set_new(ck, "state", json_string("ok"));
        json_object_del(ck, "job");
        if (c->memory && !c->error) {
            json_object_set_new(ck, "kind", json_string("memory"));
            json_object_set_new(ck, "vmstate", json_string(c->vmstate));
        }
    }
    if (!ck || ck_save(vm, tree, NULL, err, sizeof err) < 0)
        log_warn("%s: checkpoint %s taken but its state not saved (%s); vmoved settles it at restart", c->vm,
                 c->name, err);
    json_decref(tree);
    log_info("%s: checkpoint %s created (%s)", c->vm, c->name, how);
    /* A memory save that failed after the disks switched: the checkpoint
     * stays, disk-only, and the job says why it is not what was asked. */
    create_end(c, c->error ? NULL : create_result(c, how));
}

/* ---- --memory: QEMU's background snapshot ---------------------------------- */

static void set_bg_caps(struct ck_create *c, bool on, qmon_done_fn cb)
{
    /* Capabilities a background snapshot refuses to run with are off
     * (an incoming migration may have left multifd on). */
    struct qmon_cap_state caps[] = {{QMON_CAP_MULTIFD, false}, {QMON_CAP_POSTCOPY_RAM, false},
                                    {QMON_CAP_MAPPED_RAM, false}, {QMON_CAP_AUTO_CONVERGE, false},
                                    {QMON_CAP_BACKGROUND_SNAPSHOT, on}};
    const struct qmon_cap_state *list = on ? caps : &caps[4];
    size_t n = on ? ARRAY_LEN(caps) : 1;
    if (qmon_migrate_set_capabilities(create_mon(c), cb ? &c->owner : NULL, list, n, QMP_TIMEOUT_MS, cb, c) < 0 && cb)
        cb(c, &(qmp_error_t){.kind = QMP_ERR_DISCONNECTED, .desc = "monitor gone"});
}

static void mem_failed(struct ck_create *c, json_t *e)
{
    create_fail(c, e);
    if (c->caps_on)
        set_bg_caps(c, false, NULL);
    struct vm *vm = vm_find(c->agent, c->vm);
    if (vm && vm->qmp && vm->state == VM_PAUSED)
        qmon_cont(vm->qmp, NULL, QMP_TIMEOUT_MS, NULL, NULL);   /* never leave the guest stopped */
    if (c->disks_switched)
        create_commit(c, "disks switched; memory not saved");
    else
        create_rollback(c);
}

static void poll_mem_later(struct ck_create *c);
static void resume_guest(struct ck_create *c);

static void on_mem_progress(void *arg, const struct qmon_migrate_stats *s, const qmp_error_t *err)
{
    struct ck_create *c = arg;
    if (err || s->status == QMON_MIG_FAILED || s->status == QMON_MIG_CANCELLED) {
        mem_failed(c, proto_error(ERR_QEMU, "it was kept as a disk-only checkpoint", "QEMU could not save the memory "
                                  "of %s: %s", c->vm, err ? err->desc : s->error_desc ? s->error_desc : s->status_name));
        return;
    }
    uint64_t sent = s->has_ram ? s->ram.transferred : 0;
    bool iterating = c->seen_active && sent > c->first_transferred;
    if (s->status == QMON_MIG_ACTIVE && !c->seen_active)
        c->seen_active = true, c->first_transferred = sent;
    if (!c->resumed && (iterating || s->status == QMON_MIG_COMPLETED)) {
        resume_guest(c);
        if (s->status != QMON_MIG_COMPLETED)
            return;      /* polling goes on after cont */
    }
    if (s->status != QMON_MIG_COMPLETED || !c->resumed || !c->t_resume) {
        poll_mem_later(c);
        return;
    }
    c->qemu_downtime_ms = s->downtime;
    c->mem_total_ms = s->total_time;
    set_bg_caps(c, false, NULL);
    c->caps_on = false;
    create_commit(c, "live: background snapshot of memory, one blockdev-snapshot transaction for every disk");
}

/* QEMU 10 keeps a VM that was paused when the background snapshot began
 * paused until the RAM is saved.  vmoved paused it (the disks switch at
 * that instant), so it resumes the guest itself -- but only once RAM pages
 * are flowing: the snapshot thread has then saved the devices' state and
 * write-protected the RAM (userfaultfd), so the guest's writes from now on
 * are copied before they land, and the image stays of the stop instant. */
static void on_mem_cont(void *arg, const qmp_error_t *err)
{
    struct ck_create *c = arg;
    if (err) {
        mem_failed(c, proto_error(ERR_QEMU, NULL, "QEMU cannot resume the guest after the snapshot: %s", err->desc));
        return;
    }
    c->t_resume = now_ms();
    poll_mem_later(c);
}

static void resume_guest(struct ck_create *c)
{
    c->resumed = true;
    if (qmon_cont(create_mon(c), &c->owner, QMP_TIMEOUT_MS, on_mem_cont, c) < 0)
        on_mem_cont(c, &(qmp_error_t){.kind = QMP_ERR_DISCONNECTED, .desc = "monitor gone"});
}

static void on_mem_poll(evutil_socket_t fd, short what, void *arg)
{
    struct ck_create *c = arg;
    if (qmon_query_migrate(create_mon(c), &c->owner, QMP_TIMEOUT_MS, on_mem_progress, c) < 0)
        mem_failed(c, proto_error(ERR_UNAVAILABLE, NULL, "QEMU's monitor of %s is gone", c->vm));
}

static void poll_mem_later(struct ck_create *c)
{
    if (!c->poll)
        c->poll = evtimer_new(c->agent->base, on_mem_poll, c);
    struct timeval tv = {0, (c->resumed ? 50 : 2) * 1000};   /* the guest waits for the first */
    evtimer_add(c->poll, &tv);
}

static void on_mem_migrate(void *arg, const qmp_error_t *err)
{
    struct ck_create *c = arg;
    if (err) {
        mem_failed(c, proto_error(ERR_QEMU, "it was kept as a disk-only checkpoint", "QEMU refused to save the memory "
                                  "of %s: %s", c->vm, err->desc));
        return;
    }
    poll_mem_later(c);
}

/* Disks switched while the vCPUs are stopped: now the RAM, from this
 * instant, written while the guest runs again (QEMU resumes it). */
static void on_mem_snapshot(void *arg, const qmp_error_t *err)
{
    struct ck_create *c = arg;
    if (err) {
        mem_failed(c, proto_error(ERR_QEMU, NULL, "QEMU refused the snapshot transaction: %s", err->desc));
        return;
    }
    c->disks_switched = true;
    char *uri = xasprintf("file:%s", c->vmstate);
    if (qmon_migrate(create_mon(c), &c->owner, uri, QMP_TIMEOUT_MS, on_mem_migrate, c) < 0)
        on_mem_migrate(c, &(qmp_error_t){.kind = QMP_ERR_DISCONNECTED, .desc = "monitor gone"});
    free(uri);
}

static void on_mem_stopped(void *arg, const qmp_error_t *err)
{
    struct ck_create *c = arg;
    if (err) {
        mem_failed(c, proto_error(ERR_QEMU, NULL, "QEMU cannot stop the guest: %s", err->desc));
        return;
    }
    struct qmon_snapshot *s = xcalloc(c->n, sizeof *s);
    for (size_t i = 0; i < c->n; i++)
        s[i] = (struct qmon_snapshot){c->top[i], c->node[i]};
    if (qmon_blockdev_snapshot(create_mon(c), &c->owner, s, c->n, QMP_TIMEOUT_MS, on_mem_snapshot, c) < 0)
        on_mem_snapshot(c, &(qmp_error_t){.kind = QMP_ERR_DISCONNECTED, .desc = "monitor gone"});
    free(s);
}

static void on_bg_caps(void *arg, const qmp_error_t *err)
{
    struct ck_create *c = arg;
    if (err) {
        mem_failed(c, proto_error(ERR_QEMU, "take a disk-only checkpoint (without --memory)",
                                  "QEMU cannot take a background snapshot here: %s", err->desc));
        return;
    }
    c->caps_on = true;
    c->t_stop = now_ms();
    if (qmon_stop(create_mon(c), &c->owner, QMP_TIMEOUT_MS, on_mem_stopped, c) < 0)
        on_mem_stopped(c, &(qmp_error_t){.kind = QMP_ERR_DISCONNECTED, .desc = "monitor gone"});
}


static void on_snapshot(void *arg, const qmp_error_t *err)
{
    struct ck_create *c = arg;
    if (err) {
        create_fail(c, proto_error(ERR_QEMU, NULL, "QEMU refused the snapshot transaction: %s", err->desc));
        create_rollback(c);
        return;
    }
    create_commit(c, "live: one blockdev-snapshot transaction for every disk");
}

static void on_node_added(void *arg, const qmp_error_t *err)
{
    struct ck_create *c = arg;
    if (err)
        create_fail(c, proto_error(ERR_QEMU, NULL, "QEMU cannot open a new overlay: %s", err->desc));
    if (--c->pending > 0)
        return;
    if (c->error) {
        create_rollback(c);
        return;
    }
    if (c->memory) {
        set_bg_caps(c, true, on_bg_caps);
        return;
    }
    struct qmon_snapshot *s = xcalloc(c->n, sizeof *s);
    for (size_t i = 0; i < c->n; i++)
        s[i] = (struct qmon_snapshot){c->top[i], c->node[i]};
    if (qmon_blockdev_snapshot(create_mon(c), &c->owner, s, c->n, QMP_TIMEOUT_MS, on_snapshot, c) < 0) {
        create_fail(c, proto_error(ERR_UNAVAILABLE, NULL, "QEMU's monitor of %s is gone", c->vm));
        create_rollback(c);
    }
    free(s);
}

static void ckpt_on_block(void *arg, const struct qmon_block_device *devs, size_t n, const qmp_error_t *err)
{
    struct ck_create *c = arg;
    struct vm *vm = vm_find(c->agent, c->vm);
    qmp_t *q = create_mon(c);
    if (err || !vm || !q) {
        create_fail(c, proto_error(ERR_QEMU, NULL, "QEMU cannot list its block devices: %s", err ? err->desc : "gone"));
        create_rollback(c);
        return;
    }
    for (size_t i = 0; i < c->n; i++) {
        char *qdev = xasprintf("%s-dev", vm->cfg.disks[i].id);
        const struct qmon_block_device *d = qmon_block_by_qdev(devs, n, qdev);
        free(qdev);
        if (!d || !d->node_name) {
            create_fail(c, proto_error(ERR_STATE, NULL, "QEMU has no disk %s", vm->cfg.disks[i].id));
            create_rollback(c);
            return;
        }
        c->top[i] = xstrdup(d->node_name);
    }
    c->pending = (int)(2 * c->n);
    for (size_t i = 0; i < c->n; i++) {
        const char *path = json_string_value(json_object_get(c->overlays, vm->cfg.disks[i].id));
        struct qmon_blockdev f = {.driver = QMON_BLOCKDEV_FILE, .node_name = c->file_node[i], .filename = path,
                                  .discard_unmap = true};
        struct qmon_blockdev o = {.driver = QMON_BLOCKDEV_QCOW2, .node_name = c->node[i], .file = c->file_node[i],
                                  .discard_unmap = true, .no_backing = true};
        /* A refused send has no callback: counted here, settled below. */
        if (qmon_blockdev_add(q, &c->owner, &f, QMP_TIMEOUT_MS, on_node_added, c) < 0)
            c->pending--;
        if (qmon_blockdev_add(q, &c->owner, &o, QMP_TIMEOUT_MS, on_node_added, c) < 0)
            c->pending--;
    }
    if (c->pending < (int)(2 * c->n))
        create_fail(c, proto_error(ERR_UNAVAILABLE, NULL, "QEMU's monitor of %s is gone", c->vm));
    if (c->pending == 0)
        create_rollback(c);
}

static void create_begin(void *arg)
{
    struct ck_create *c = arg;
    struct vm *vm = vm_find(c->agent, c->vm);
    json_t *ck = vm ? ckpt_find(vm->cfg.checkpoints, c->name) : NULL;
    const char *st = json_string_value(json_object_get(ck, "state"));
    if (st && !strcmp(st, "ok"))
        create_commit(c, "offline: qemu-img create");
    else if (!vm || !vm->qmp || qmon_query_block(vm->qmp, &c->owner, QMP_TIMEOUT_MS, ckpt_on_block, c) < 0) {
        create_fail(c, proto_error(ERR_UNAVAILABLE, NULL, "QEMU's monitor of %s is not connected", c->vm));
        create_rollback(c);
    }
}

static json_t *check_new_name(struct vm *vm, const char *name)
{
    if (!name || !valid_name(name) || strlen(name) > 64)
        return proto_error(ERR_INVALID, "letters, digits, '-', '_' and '.', at most 64", "\"%s\" is not a valid checkpoint name",
                           name ? name : "");
    if (ckpt_find(vm->cfg.checkpoints, name))
        return proto_error(ERR_EXISTS, "pick another name, or delete the old one first",
                           "VM %s already has a checkpoint \"%s\"", vm->name, name);
    if (vm->cfg.n_disks == 0)
        return proto_error(ERR_INVALID, NULL, "VM %s has no disks to checkpoint", vm->name);
    return NULL;
}

/* The overlays exist (or not): the tree and vm.json, then the request
 * hears of its job, and the snapshot starts from the loop. */
static void on_overlays(void *arg, json_t *overlays, const char *why_overlays)
{
    struct ck_create *c = arg;
    struct vm *vm = vm_find(c->agent, c->vm);
    char why[1024];
    json_t *e = NULL;
    if (!overlays)
        e = proto_error(ERR_INTERNAL, NULL, "%s", why_overlays);
    else if (!vm)
        e = proto_error(ERR_NOT_FOUND, NULL, "VM %s is gone", c->vm);
    if (!e) {
        json_t *tree = ck_tree_copy(vm);
        json_array_append_new(ckpt_list(tree),
                              json_pack("{s:s, s:O, s:I, s:s, s:s, s:I, s:O}", "name", c->name, "parent",
                                        json_object_get(tree, "current"), "created_ms", (json_int_t)wall_ms(),
                                        "kind", "disk-only", "state", c->live ? "creating" : "ok", "job",
                                        (json_int_t)c->job->id, "disks", c->old_paths));
        json_object_set_new(tree, "current", json_string(c->name));
        /* Write-ahead: the new layers are empty overlays of the old ones, so
         * vm.json naming them is right whether or not QEMU switches. */
        if (ck_save(vm, tree, overlays, why, sizeof why) < 0)
            e = proto_error(ERR_INTERNAL, NULL, "cannot save vm.json: %s", why);
        json_decref(tree);
    }
    if (e) {
        const char *k;
        json_t *v;
        json_object_foreach(overlays, k, v) unlink(json_string_value(v));
        json_decref(overlays);
        if (c->vmstate)
            unlink(c->vmstate);
        job_fail(c->job, json_incref(e));
        c->started(c->started_arg, NULL, e);
        create_free(c);
        return;
    }
    c->overlays = overlays;
    c->t0 = now_ms();
    qmon_owner_init(&c->owner, c, create_free);
    job_set_phase(c->job, c->live ? "snapshotting" : "creating overlays");
    c->started(c->started_arg, c->job, NULL);
    ck_defer(c->agent, create_begin, c);
}

int checkpoint_create(struct agent *a, const char *name_vm, const char *name, bool memory,
                      checkpoint_started_fn started, void *arg, json_t **err)
{
    struct vm *vm = ck_find_vm(a, name_vm, err);
    if (!vm)
        return -1;
    if ((*err = check_new_name(vm, name)) || (*err = ck_busy(a, vm)))
        return -1;
    if (memory && vm->state != VM_RUNNING) {
        *err = proto_error(ERR_STATE, "start or resume it, or take a disk-only checkpoint (without --memory)",
                           "VM %s is %s: a memory checkpoint saves a running guest", vm->name,
                           vm_state_name(vm->state));
        return -1;
    }
    char why[1024];
    char *vmstate = NULL;
    if (memory && !(vmstate = claim_vmstate(vm, name, why, sizeof why))) {
        *err = proto_error(ERR_INTERNAL, NULL, "%s", why);
        return -1;
    }
    struct ck_create *c = xcalloc(1, sizeof *c);
    c->agent = a, c->vm = xstrdup(vm->name), c->name = xstrdup(name);
    c->memory = memory, c->vmstate = vmstate, c->live = ck_vm_live(vm);
    c->started = started, c->started_arg = arg;
    c->old_paths = ck_active_paths(vm);
    c->old_tree = ck_tree_copy(vm);
    /* The job first: the VM is busy (ck_busy) while its overlays are made. */
    c->job = job_create(a, &create_ops, vm->name, json_pack("{s:s}", "checkpoint", name));
    job_set_phase(c->job, "creating overlays");
    c->n = vm->cfg.n_disks;
    c->top = xcalloc(c->n, sizeof *c->top), c->node = xcalloc(c->n, sizeof *c->node);
    c->file_node = xcalloc(c->n, sizeof *c->file_node);
    for (size_t i = 0; i < c->n; i++) {
        c->node[i] = xasprintf("%s-ck%lld", vm->cfg.disks[i].id, (long long)c->job->id);
        c->file_node[i] = xasprintf("%s-file-ck%lld", vm->cfg.disks[i].id, (long long)c->job->id);
    }
    ck_make_overlays(a, vm, c->old_paths, c->live, on_overlays, c);
    return 0;
}

/* ---- recovery ------------------------------------------------------------------ */

/* A create interrupted by the restart: QEMU switched to the overlays or it
 * did not.  vm.json already names the overlays, which read the same data
 * either way, so the checkpoint is kept (its frozen layers may hold writes
 * of the moment between the write-ahead and the crash: said in the log). */
static void settle_create(struct agent *a, struct vm *vm, json_t *ck)
{
    json_t *tree = ck_tree_copy(vm);
    json_t *mine = ckpt_find(tree, json_string_value(json_object_get(ck, "name")));
    json_int_t id = json_integer_value(json_object_get(mine, "job"));
    json_object_set_new(mine, "state", json_string("ok"));
    json_object_del(mine, "job");
    char err[512];
    if (ck_save(vm, tree, NULL, err, sizeof err) < 0)
        log_warn("%s: %s", vm->name, err);
    log_warn("vm %s: checkpoint %s was being created when vmoved stopped; kept (its layers read the VM's data "
             "either way)", vm->name, json_string_value(json_object_get(mine, "name")));
    struct job *job = job_adopt(a, &create_ops, id);
    if (job)
        job_succeed(job, json_pack("{s:s, s:s}", "checkpoint", json_string_value(json_object_get(mine, "name")),
                                   "note", "settled after a vmoved restart"));
    json_decref(tree);
}

void checkpoint_recover(struct agent *a)
{
    VM_FOREACH(a, vm) {
        char err[256];
        if (vm->cfg.checkpoints && ckpt_validate(vm->cfg.checkpoints, err, sizeof err) < 0) {
            log_warn("vm %s: %s", vm->name, err);
            continue;
        }
        json_t *u = ckpt_unsettled(vm->cfg.checkpoints);
        const char *st = json_string_value(json_object_get(u, "state"));
        if (st && !strcmp(st, "creating"))
            settle_create(a, vm, u);
        else if (st && !strcmp(st, "deleting"))
            ck_delete_resume(a, vm, u);
    }
}

void checkpoint_free_all(struct agent *a)
{
    (void)a;
    ck_delete_free_all();
}
