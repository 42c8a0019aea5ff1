/* `vmove checkpoint delete`: merge a checkpoint's own layer into its
 * frozen image and delete the layer (see checkpoint/checkpoint.h).
 *
 * Over 600 lines because the merge, its pivot and the take-over of a merge
 * that a restarted vmoved finds running are one crash-safe machine whose
 * invariants (below) must be read together.
 *
 * Checkpoint C with frozen image A (per disk) and one child X (a
 * checkpoint, or "now"): X's image T has backing A and holds the changes
 * since C.  Deleting C commits T into A, points X (or vm.json's active
 * layer) at A and deletes T.  A leaf C (no child) just loses its A.  A C
 * with several children is refused (merging would change the others).
 *
 * Crash safety, per disk, the tree entry being "deleting" with the job id
 * (vm.json) and every step in the journal's events:
 *   - before the merge ends, X's image is still T: reads through T over A
 *     give X's data whatever part of T has reached A (the commit copies
 *     T's data, it never changes T);
 *   - an active commit pivots with the vCPUs stopped, and vm.json names A
 *     before they run again: no guest write lands in the window where the
 *     two readings differ;
 *   - a restarted vmoved asks QEMU: the job still listed is adopted, T
 *     still in the chain means the commit starts again (idempotent), T gone
 *     from the chain means QEMU finished it -- then only vm.json and the
 *     files are left to do.  Offline (qemu-img) steps are simply re-run. */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/commit.h"
#include "block/image.h"
#include "checkpoint/checkpoint.h"
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
#define RECOVER_WAIT_POLLS 300     /* x 100 ms for QEMU's monitor after a restart */

struct ck_del {
    struct ck_del *next;
    struct agent *agent;
    char *vm, *name;
    struct job *job;
    struct qmon_owner owner;
    size_t disk;                   /* index into the VM's disks */
    char *top, *base;              /* T and A of the disk being merged */
    char *dev_node;                /* the disk's top node now */
    struct block_commit *bc;
    bool active, paused_for_pivot;
    bool verifying;                /* the commit ended: is T out of the chain? */
    struct event *timer;
    int polls;
    uint64_t t0, pause_t0, pause_ms;
    long long speed;
    struct image_op *op;           /* offline: the qemu-img commit or rebase running */
    json_t *rebase_todo;           /* images still to rebase onto base */
};

static struct ck_del *deletes;
static const struct job_ops delete_ops = {"checkpoint.delete", NULL};

static void del_free(void *obj)
{
    struct ck_del *d = obj;
    free(d->vm), free(d->name), free(d->top), free(d->base), free(d->dev_node);
    json_decref(d->rebase_todo);
    free(d);
}

static void del_release(struct ck_del *d)
{
    for (struct ck_del **p = &deletes; *p; p = &(*p)->next)
        if (*p == d) {
            *p = d->next;
            break;
        }
    block_commit_free(d->bc);
    d->bc = NULL;
    image_op_cancel(d->op);   /* vmoved stopping: the helper goes too */
    d->op = NULL;
    if (d->timer)
        event_free(d->timer);
    d->timer = NULL;
    d->job = NULL;
    qmon_owner_end(&d->owner);
}

static struct vm *del_vm(struct ck_del *d) { return vm_find(d->agent, d->vm); }

static qmp_t *del_mon(void *arg)
{
    struct ck_del *d = arg;
    struct vm *vm = del_vm(d);
    return vm && ck_vm_live(vm) ? vm->qmp : NULL;
}

static void step(struct ck_del *d, const char *what)
{
    json_t *ev = json_pack("{s:s, s:s, s:s?, s:s?, s:s?}", "checkpoint", d->name, "step", what, "disk",
                           del_vm(d) ? del_vm(d)->cfg.disks[d->disk].id : NULL, "top", d->top, "base", d->base);
    journal_event(d->agent->journal, d->vm, "checkpoint.delete", ev);
    json_decref(ev);
    if (d->job)
        job_set_phase(d->job, what);
}

static void del_fail(struct ck_del *d, json_t *e)
{
    struct vm *vm = del_vm(d);
    if (d->paused_for_pivot && vm && vm->qmp)
        qmon_cont(vm->qmp, NULL, QMP_TIMEOUT_MS, NULL, NULL);
    log_warn("%s: checkpoint %s delete failed: %s", d->vm, d->name, json_string_value(json_object_get(e, "message")));
    journal_event(d->agent->journal, d->vm, "checkpoint.delete.failed", e);
    /* The entry stays "deleting": the VM's current data is intact, and
     * only the same delete (which resumes) may touch it again. */
    struct job *job = d->job;
    del_release(d);
    if (job)
        job_fail(job, e);
    else
        json_decref(e);
}

/* ---- the tree ------------------------------------------------------------ */

/* X (child checkpoint) or NULL for "now"; -1 if C has not exactly one. */
static int only_child(json_t *tree, const char *name, json_t **x)
{
    bool now;
    size_t n = ckpt_children(tree, name, x, &now);
    if (now)
        *x = NULL;
    return n == 1 ? 0 : -1;
}

/* The image above A for disk id: X's frozen image or the active layer. */
static const char *child_image(struct vm *vm, json_t *x, const char *id)
{
    if (x)
        return ckpt_disk(x, id);
    const struct vm_disk *disk = vm_config_find_disk(&vm->cfg, id);
    return disk ? disk->path : NULL;
}

/* X's image (or the active layer) for this disk is A now: saved at once. */
static int point_child_at_base(struct ck_del *d, char *err, size_t errlen)
{
    struct vm *vm = del_vm(d);
    json_t *tree = ck_tree_copy(vm), *x;
    const char *id = vm->cfg.disks[d->disk].id;
    json_t *paths = NULL;
    only_child(tree, d->name, &x);
    if (x)
        json_object_set_new(json_object_get(x, "disks"), id, json_string(d->base));
    else
        paths = json_pack("{s:s}", id, d->base);
    json_object_del(ckpt_find(tree, d->name), "paused_for_pivot");   /* cont follows at once */
    int rc = ck_save(vm, tree, paths, err, errlen);
    json_decref(tree), json_decref(paths);
    return rc;
}

/* Images other than the live one whose backing file is T: the frozen
 * images of X's children off the current path (and the active layer when
 * QEMU is not running it).  Their headers are to be rewritten to A. */
static json_t *images_to_rebase(struct ck_del *d, bool live)
{
    struct vm *vm = del_vm(d);
    json_t *tree = vm->cfg.checkpoints, *x;
    const char *id = vm->cfg.disks[d->disk].id;
    json_t *todo = json_array();
    if (only_child(tree, d->name, &x) < 0 || !x)
        return todo;
    const char *xname = json_string_value(json_object_get(x, "name"));
    size_t i;
    json_t *y;
    json_array_foreach(ckpt_list(tree), i, y) {
        const char *p = ckpt_parent(y);
        if (!p || strcmp(p, xname) || (live && ckpt_on_current_path(tree, json_string_value(json_object_get(y, "name")))))
            continue;
        json_array_append_new(todo, json_string(ckpt_disk(y, id) ? ckpt_disk(y, id) : ""));
    }
    const char *cur = ckpt_current(tree);
    if (!live && cur && !strcmp(cur, xname)) {
        const struct vm_disk *disk = vm_config_find_disk(&vm->cfg, id);
        json_array_append_new(todo, json_string(disk->path));
    }
    return todo;
}

/* ---- one disk after another ------------------------------------------------ */

static void next_disk(struct ck_del *d);

static void rebase_next(struct ck_del *d);

static void on_rebased(void *arg, const char *err)
{
    struct ck_del *d = arg;
    d->op = NULL;
    if (err) {
        del_fail(d, proto_error(ERR_INTERNAL, NULL, "cannot rebase onto %s: %s", d->base, err));
        return;
    }
    json_array_remove(d->rebase_todo, 0);
    rebase_next(d);
}

/* One qemu-img rebase after the other, each in a child the loop does not
 * wait for; then T goes. */
static void rebase_next(struct ck_del *d)
{
    if (json_array_size(d->rebase_todo)) {
        d->op = image_rebase_unsafe_async(d->agent->base, json_string_value(json_array_get(d->rebase_todo, 0)),
                                          ck_base_name(d->base), on_rebased, d);
        return;
    }
    step(d, "removing layer");
    ck_unlink(d->vm, d->top);
    d->disk++;
    next_disk(d);
}

/* T is out of every chain and nothing names it: delete it. */
static void disk_merged(struct ck_del *d, bool live)
{
    char err[1024];
    if (point_child_at_base(d, err, sizeof err) < 0) {
        del_fail(d, proto_error(ERR_INTERNAL, NULL, "cannot save vm.json: %s", err));
        return;
    }
    struct vm *vm = del_vm(d);
    if (d->paused_for_pivot && vm && vm->qmp) {
        qmon_cont(vm->qmp, NULL, QMP_TIMEOUT_MS, NULL, NULL);
        d->pause_ms = now_ms() - d->pause_t0;
        d->paused_for_pivot = false;
    }
    json_decref(d->rebase_todo);
    d->rebase_todo = images_to_rebase(d, live);
    rebase_next(d);
}

/* ---- live: QEMU merges ---------------------------------------------------------- */

struct chain_view {
    const char *top_image;
    bool has_top;                     /* T is still in the disk's chain */
    const char *top_node, *base_node; /* qcow2 nodes of T and A */
};

/* The disk's chain from its top node down, by the backing files QEMU
 * reports: which nodes read T and A. */
static void read_chain(const struct qmon_named_node *nodes, size_t n, const char *dev_node, const char *t,
                       const char *a, struct chain_view *v)
{
    *v = (struct chain_view){0};
    const struct qmon_named_node *cur = NULL;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(nodes[i].node_name, dev_node))
            cur = &nodes[i];
    v->top_image = cur ? cur->image : NULL;
    for (size_t hops = 0; cur && hops < 64; hops++) {
        if (cur->image && !strcmp(cur->image, t))
            v->has_top = true, v->top_node = cur->node_name;
        if (cur->image && !strcmp(cur->image, a))
            v->base_node = cur->node_name;
        const char *b = cur->backing_file;
        cur = NULL;
        for (size_t i = 0; b && i < n; i++)
            if (!strcmp(nodes[i].drv, "qcow2") && nodes[i].image && !strcmp(nodes[i].image, b))
                cur = &nodes[i];
    }
}

/* Close every node still reading T (ours from blockdev-add, or the
 * command line's; implicit backing nodes went with the chain). */
static void drop_nodes(struct ck_del *d, const struct qmon_named_node *nodes, size_t n)
{
    qmp_t *q = del_mon(d);
    for (int pass = 0; q && pass < 2; pass++)
        for (size_t i = 0; i < n; i++) {
            bool fmt = strcmp(nodes[i].drv, "file") != 0;
            if (nodes[i].image && !strcmp(nodes[i].image, d->top) && fmt == (pass == 0) && nodes[i].node_name[0] != '#')
                qmon_blockdev_del(q, NULL, nodes[i].node_name, QMP_TIMEOUT_MS, NULL, NULL);
        }
}

static void start_commit(struct ck_del *d, const struct chain_view *v);
static void ckdel_on_block(void *arg, const struct qmon_block_device *devs, size_t n, const qmp_error_t *err);

static void on_nodes_after(void *arg, const struct qmon_named_node *nodes, size_t n, const qmp_error_t *err)
{
    struct ck_del *d = arg;
    if (err) {
        del_fail(d, proto_error(ERR_QEMU, NULL, "QEMU cannot list its block nodes: %s", err->desc));
        return;
    }
    struct chain_view v;
    d->verifying = false;
    read_chain(nodes, n, d->dev_node, d->top, d->base, &v);
    if (!v.base_node) {
        del_fail(d, proto_error(ERR_STATE, "nothing was deleted; see qemu.log", "QEMU's chain of disk %s does not "
                                "reach %s after the merge", del_vm(d)->cfg.disks[d->disk].id, d->base));
        return;
    }
    if (v.has_top) {
        del_fail(d, proto_error(ERR_QEMU, "run the same delete again to retry; the VM's data is intact",
                                "the merge of %s into %s did not complete (see qemu.log)", d->top, d->base));
        return;
    }
    drop_nodes(d, nodes, n);
    disk_merged(d, true);
}

static void on_commit_done(void *arg, const char *error)
{
    struct ck_del *d = arg;
    block_commit_free(d->bc);
    d->bc = NULL;
    if (error) {
        del_fail(d, proto_error(ERR_QEMU, "run the same delete again to retry; the VM's data is intact",
                                "QEMU refused the merge of %s: %s", d->top, error));
        return;
    }
    /* QEMU's graph is the truth (after a pivot the device's top node is A's). */
    d->verifying = true;
    step(d, "verifying");
    struct vm *vm = del_vm(d);
    if (!vm || !vm->qmp || qmon_query_block(vm->qmp, &d->owner, QMP_TIMEOUT_MS, ckdel_on_block, d) < 0)
        del_fail(d, proto_error(ERR_UNAVAILABLE, NULL, "QEMU's monitor of %s is gone", d->vm));
}

static void on_pivot_stop(void *arg, const qmp_error_t *err)
{
    struct ck_del *d = arg;
    if (err) {
        d->paused_for_pivot = false;
        del_fail(d, proto_error(ERR_QEMU, NULL, "QEMU cannot pause the guest for the pivot: %s", err->desc));
        return;
    }
    step(d, "pivoting");
    if (d->bc)
        block_commit_pivot(d->bc);
}

/* Active commit in sync: pause the vCPUs across the pivot so that no
 * guest write falls between QEMU switching and vm.json saying so. */
static void on_commit_ready(void *arg)
{
    struct ck_del *d = arg;
    struct vm *vm = del_vm(d);
    json_t *tree = ck_tree_copy(vm);
    bool was_running = vm->state == VM_RUNNING;
    json_object_set_new(ckpt_find(tree, d->name), "paused_for_pivot", json_boolean(was_running));
    char err[512];
    if (ck_save(vm, tree, NULL, err, sizeof err) < 0)
        log_warn("%s: %s", d->vm, err);
    json_decref(tree);
    if (!was_running) {
        step(d, "pivoting");
        block_commit_pivot(d->bc);
        return;
    }
    d->paused_for_pivot = true;
    d->pause_t0 = now_ms();
    if (qmon_stop(vm->qmp, &d->owner, QMP_TIMEOUT_MS, on_pivot_stop, d) < 0)
        on_pivot_stop(d, &(qmp_error_t){.kind = QMP_ERR_DISCONNECTED, .desc = "monitor gone"});
}

static const struct block_commit_ops commit_ops = {del_mon, on_commit_ready, on_commit_done};

static void start_commit(struct ck_del *d, const struct chain_view *v)
{
    struct vm *vm = del_vm(d);
    d->active = v->top_node && !strcmp(v->top_node, d->dev_node);
    char *job_id = xasprintf("ckdel-%s", vm->cfg.disks[d->disk].id);
    struct block_commit_config cfg = {.job_id = job_id, .device = d->dev_node, .top_node = v->top_node,
                                      .base_node = v->base_node, .backing_file = ck_base_name(d->base),
                                      .active = d->active, .speed = d->speed};
    d->bc = block_commit_new(d->agent->base, &d->owner, &cfg, &commit_ops, d);
    free(job_id);
    step(d, d->active ? "merging (active commit)" : "merging (intermediate commit)");
    block_commit_start(d->bc);
}

static void on_nodes_before(void *arg, const struct qmon_named_node *nodes, size_t n, const qmp_error_t *err)
{
    struct ck_del *d = arg;
    if (err) {
        del_fail(d, proto_error(ERR_QEMU, NULL, "QEMU cannot list its block nodes: %s", err->desc));
        return;
    }
    struct chain_view v;
    read_chain(nodes, n, d->dev_node, d->top, d->base, &v);
    /* Only a chain that reaches A can say T has left it: a walk that got
     * lost must never make vmove delete a layer QEMU reads. */
    if (!v.base_node) {
        del_fail(d, proto_error(ERR_STATE, "nothing was changed", "QEMU does not read %s in the chain of disk %s",
                                d->base, del_vm(d)->cfg.disks[d->disk].id));
        return;
    }
    if (!v.has_top) {   /* QEMU finished it before a restart */
        log_info("%s: %s is no longer in the chain: the merge was done", d->vm, d->top);
        drop_nodes(d, nodes, n);
        disk_merged(d, true);
        return;
    }
    start_commit(d, &v);
}

static void ckdel_on_block(void *arg, const struct qmon_block_device *devs, size_t n, const qmp_error_t *err)
{
    struct ck_del *d = arg;
    struct vm *vm = del_vm(d);
    if (err || !vm) {
        del_fail(d, proto_error(ERR_QEMU, NULL, "QEMU cannot list its block devices: %s", err ? err->desc : "gone"));
        return;
    }
    char *qdev = xasprintf("%s-dev", vm->cfg.disks[d->disk].id);
    const struct qmon_block_device *b = qmon_block_by_qdev(devs, n, qdev);
    free(qdev);
    if (!b || !b->node_name) {
        del_fail(d, proto_error(ERR_STATE, NULL, "QEMU has no disk %s", vm->cfg.disks[d->disk].id));
        return;
    }
    free(d->dev_node);
    d->dev_node = xstrdup(b->node_name);
    if (qmon_query_named_block_nodes(vm->qmp, &d->owner, QMP_TIMEOUT_MS, d->verifying ? on_nodes_after : on_nodes_before,
                                     d) < 0)
        del_fail(d, proto_error(ERR_UNAVAILABLE, NULL, "QEMU's monitor of %s is gone", d->vm));
}

/* ---- offline: qemu-img merges ----------------------------------------------------- */

static void on_committed(void *arg, const char *err)
{
    struct ck_del *d = arg;
    d->op = NULL;
    if (err) {
        del_fail(d, proto_error(ERR_INTERNAL, "run the same delete again to retry", "qemu-img commit of %s: %s", d->top,
                                err));
        return;
    }
    disk_merged(d, false);
}

/* qemu-img commit in a child the loop does not wait for (T may be big, on
 * slow storage). */
static void merge_offline(struct ck_del *d)
{
    step(d, "merging (qemu-img commit)");
    if (access(d->top, F_OK) == 0)
        d->op = image_commit_async(d->agent->base, d->top, d->base, on_committed, d);
    else
        disk_merged(d, false);
}

/* ---- the end ----------------------------------------------------------------------- */

static void ckdel_finish(struct ck_del *d)
{
    struct vm *vm = del_vm(d);
    if (d->paused_for_pivot && vm && vm->qmp) {   /* a restart after the pivot, before cont */
        qmon_cont(vm->qmp, NULL, QMP_TIMEOUT_MS, NULL, NULL);
        d->paused_for_pivot = false;
    }
    json_t *tree = ck_tree_copy(vm), *x;
    json_t *ck = ckpt_find(tree, d->name);
    json_t *parent = json_incref(json_object_get(ck, "parent"));
    json_t *frozen = json_incref(json_object_get(ck, "disks"));
    char *vmstate = json_string_value(json_object_get(ck, "vmstate")) ? xstrdup(json_string_value(json_object_get(ck, "vmstate"))) : NULL;
    bool leaf = ckpt_children(tree, d->name, &x, &(bool){false}) == 0;
    only_child(tree, d->name, &x);
    if (x)
        json_object_set(x, "parent", parent);
    const char *cur = ckpt_current(tree);
    if (cur && !strcmp(cur, d->name))
        json_object_set(tree, "current", parent);
    size_t i;
    json_t *c;
    json_array_foreach(ckpt_list(tree), i, c) if (c == ck) {
        json_array_remove(ckpt_list(tree), i);
        break;
    }
    char err[512];
    int rc = ck_save(vm, tree, NULL, err, sizeof err);
    json_decref(tree), json_decref(parent);
    if (vmstate && rc == 0)
        ck_unlink(d->vm, vmstate);   /* its memory image goes with it */
    free(vmstate);
    if (rc < 0) {
        json_decref(frozen);
        del_fail(d, proto_error(ERR_INTERNAL, NULL, "cannot save vm.json: %s", err));
        return;
    }
    /* A leaf's frozen images held only its own state. */
    const char *k;
    json_t *v;
    if (leaf)
        json_object_foreach(frozen, k, v) ck_unlink(d->vm, json_string_value(v));
    json_decref(frozen);
    json_t *res = json_pack("{s:s, s:s, s:I, s:I}", "vm", d->vm, "checkpoint", d->name, "ms",
                            (json_int_t)(now_ms() - d->t0), "pivot_pause_ms", (json_int_t)d->pause_ms);
    journal_event(d->agent->journal, d->vm, "checkpoint.deleted", res);
    log_info("%s: checkpoint %s deleted", d->vm, d->name);
    struct job *job = d->job;
    del_release(d);
    if (job)
        job_succeed(job, res);
    else
        json_decref(res);
}

/* The next disk whose T is not merged yet, or the end. */
static void next_disk(struct ck_del *d)
{
    struct vm *vm = del_vm(d);
    if (!vm) {
        del_fail(d, proto_error(ERR_STATE, NULL, "VM %s is gone", d->vm));
        return;
    }
    json_t *tree = vm->cfg.checkpoints, *x;
    json_t *ck = ckpt_find(tree, d->name);
    bool leaf = ckpt_children(tree, d->name, &x, &(bool){false}) == 0;
    for (; !leaf && d->disk < vm->cfg.n_disks; d->disk++) {
        only_child(tree, d->name, &x);
        const char *id = vm->cfg.disks[d->disk].id;
        const char *t = child_image(vm, x, id), *a = ckpt_disk(ck, id);
        if (!t || !a || !strcmp(t, a))
            continue;   /* merged before a restart, or no such layer */
        free(d->top), free(d->base), free(d->dev_node);
        d->top = xstrdup(t), d->base = xstrdup(a), d->dev_node = NULL;
        bool live = ck_vm_live(vm) && (!x || ckpt_on_current_path(tree, json_string_value(json_object_get(x, "name"))));
        if (!live) {
            merge_offline(d);
            return;
        }
        if (!vm->qmp || qmon_query_block(vm->qmp, &d->owner, QMP_TIMEOUT_MS, ckdel_on_block, d) < 0)
            del_fail(d, proto_error(ERR_UNAVAILABLE, NULL, "QEMU's monitor of %s is not connected", d->vm));
        return;
    }
    ckdel_finish(d);
}

static void next_disk_cb(void *arg) { next_disk(arg); }

/* ---- starting and resuming ----------------------------------------------------------- */

static struct ck_del *del_new(struct agent *a, struct vm *vm, const char *name, struct job *job)
{
    struct ck_del *d = xcalloc(1, sizeof *d);
    d->agent = a, d->vm = xstrdup(vm->name), d->name = xstrdup(name), d->job = job, d->t0 = now_ms();
    qmon_owner_init(&d->owner, d, del_free);
    d->next = deletes;
    deletes = d;
    return d;
}

/* Which children C has, in words, for the refusal. */
static char *children_text(json_t *tree, const char *name)
{
    char *s = xstrdup("");
    size_t i;
    json_t *c;
    json_array_foreach(ckpt_list(tree), i, c) {
        const char *p = ckpt_parent(c);
        if (p && !strcmp(p, name)) {
            char *t = xasprintf("%s%s%s", s, *s ? ", " : "", json_string_value(json_object_get(c, "name")));
            free(s);
            s = t;
        }
    }
    if (ckpt_current(tree) && !strcmp(ckpt_current(tree), name)) {
        char *t = xasprintf("%s%sthe current state", s, *s ? ", " : "");
        free(s);
        s = t;
    }
    return s;
}

struct job *checkpoint_delete(struct agent *a, const char *name_vm, const char *name, long long speed, json_t **err)
{
    if (speed < 0) {
        *err = proto_error(ERR_INVALID, NULL, "bandwidth must not be negative");
        return NULL;
    }
    struct vm *vm = vm_find(a, name_vm);
    if (!vm) {
        *err = proto_error(ERR_NOT_FOUND, "`vmove vm list` shows the VMs of this host", "no VM named \"%s\" on host %s",
                           name_vm, a->name);
        return NULL;
    }
    json_t *ck = ckpt_find(vm->cfg.checkpoints, name);
    if (!ck) {
        *err = proto_error(ERR_NOT_FOUND, "`vmove checkpoint list VM` shows them", "VM %s has no checkpoint \"%s\"",
                           vm->name, name ? name : "");
        return NULL;
    }
    const char *st = json_string_value(json_object_get(ck, "state"));
    bool resume = st && !strcmp(st, "deleting");   /* a failed delete is retried */
    json_t *busy = ck_busy(a, vm);
    if (busy && !(resume && !job_active_for_vm(a, vm->name) && !vm->job && !vm->migration && !vm->storage_move &&
                  (vm->state == VM_STOPPED || ck_vm_live(vm)))) {
        *err = busy;
        return NULL;
    }
    json_decref(busy);
    json_t *x;
    bool now;
    size_t n = ckpt_children(vm->cfg.checkpoints, name, &x, &now);
    if (n > 1) {
        char *kids = children_text(vm->cfg.checkpoints, name);
        *err = proto_error(ERR_STATE, "delete all but one of them first (or apply another checkpoint)",
                           "checkpoint %s of VM %s cannot be merged safely: it has %zu children (%s), and merging "
                           "its layer into one would change the others", name, vm->name, n, kids);
        free(kids);
        return NULL;
    }
    struct job *job = job_create(a, &delete_ops, vm->name, json_pack("{s:s}", "checkpoint", name));
    json_t *tree = ck_tree_copy(vm);
    json_t *mine = ckpt_find(tree, name);
    json_object_set_new(mine, "state", json_string("deleting"));
    json_object_set_new(mine, "job", json_integer((json_int_t)job->id));
    char why[512];
    int rc = ck_save(vm, tree, NULL, why, sizeof why);
    json_decref(tree);
    if (rc < 0) {
        *err = proto_error(ERR_INTERNAL, NULL, "cannot save vm.json: %s", why);
        job_fail(job, json_incref(*err));
        return NULL;
    }
    struct ck_del *d = del_new(a, vm, name, job);
    d->speed = speed;
    step(d, "starting");
    ck_defer(a, next_disk_cb, d);
    return job;
}

/* After a restart: wait for QEMU's monitor (a running VM), then go on. */
static void on_resume_timer(evutil_socket_t fd, short what, void *arg)
{
    struct ck_del *d = arg;
    struct vm *vm = del_vm(d);
    bool ready = vm && (!ck_vm_live(vm) || (vm->qmp && qmp_is_ready(vm->qmp)));
    if (!ready && vm && vm->state == VM_STARTING)
        ready = false;
    if (ready || ++d->polls > RECOVER_WAIT_POLLS) {
        event_free(d->timer);
        d->timer = NULL;
        json_t *ck = vm ? ckpt_find(vm->cfg.checkpoints, d->name) : NULL;
        d->paused_for_pivot = json_is_true(json_object_get(ck, "paused_for_pivot")) && vm && vm->state == VM_PAUSED;
        d->pause_t0 = now_ms();
        next_disk(d);
        return;
    }
    struct timeval tv = {0, 100 * 1000};
    evtimer_add(d->timer, &tv);
}

void ck_delete_resume(struct agent *a, struct vm *vm, json_t *ck)
{
    const char *name = json_string_value(json_object_get(ck, "name"));
    json_int_t id = json_integer_value(json_object_get(ck, "job"));
    struct job *job = job_adopt(a, &delete_ops, id);
    if (!job)
        job = job_create(a, &delete_ops, vm->name, json_pack("{s:s}", "checkpoint", name));
    log_warn("vm %s: finishing the delete of checkpoint %s interrupted by a vmoved restart (job %lld)", vm->name, name,
             (long long)job->id);
    struct ck_del *d = del_new(a, vm, name, job);
    step(d, "recovering");
    d->timer = evtimer_new(a->base, on_resume_timer, d);
    struct timeval tv = {0, 0};
    evtimer_add(d->timer, &tv);
}

void ck_delete_free_all(void)
{
    while (deletes)
        del_release(deletes);
}
