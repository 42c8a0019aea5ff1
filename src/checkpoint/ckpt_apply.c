/* Checkpoint apply and list (see checkpoint/checkpoint.h): apply reverts the
 * VM to a checkpoint (a memory checkpoint through QEMU's -incoming load, a
 * disk-only one by a restart on new overlays); list reports the tree with
 * each layer's size.  Create is checkpoint.c, delete ckpt_delete.c. */
#include "checkpoint/checkpoint.h"

#include <event2/event.h>
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

/* ---- apply --------------------------------------------------------------- */

struct ck_apply {
    struct agent *agent;
    char *vm, *name;
    struct job *job;
    bool restart;
    char *vmstate;               /* a memory checkpoint: QEMU loads it */
    struct event *poll;
    uint64_t t0;
};

static const struct job_ops apply_ops = {"checkpoint.apply", NULL};

static void apply_free(struct ck_apply *p)
{
    if (p->poll)
        event_free(p->poll);
    free(p->vm), free(p->name), free(p->vmstate);
    free(p);
}

/* ---- a memory checkpoint: QEMU starts -incoming and loads the image -------- */

static void apply_mem_failed(struct ck_apply *p, const char *what, const char *desc)
{
    struct vm *vm = vm_find(p->agent, p->vm);
    if (vm) {
        vm->stop_expected = true;   /* its exit is ours, not a crash */
        vm_kill_qemu(vm);
    }
    job_fail(p->job, proto_error(ERR_QEMU, "the VM's disks are the checkpoint's; `vmove vm start` boots them fresh",
                                 "%s of checkpoint %s: %s", what, p->name, desc));
    apply_free(p);
}

static void on_apply_cont(void *arg, const qmp_error_t *err)
{
    struct ck_apply *p = arg;
    struct vm *vm = vm_find(p->agent, p->vm);
    if (err || !vm) {
        apply_mem_failed(p, "cannot resume the guest", err ? err->desc : "the VM is gone");
        return;
    }
    vm->started_ms = wall_ms();
    vm_set_state(vm, VM_RUNNING, "resumed from a memory checkpoint");
    json_t *res = json_pack("{s:s, s:s, s:b, s:I}", "vm", p->vm, "checkpoint", p->name, "resumed", 1, "ms",
                            (json_int_t)(now_ms() - p->t0));
    journal_event(p->agent->journal, p->vm, "checkpoint.applied", res);
    job_succeed(p->job, res);
    apply_free(p);
}

static void apply_poll_later(struct ck_apply *p);

static void on_apply_load(void *arg, const struct qmon_migrate_stats *s, const qmp_error_t *err)
{
    struct ck_apply *p = arg;
    if (err || s->status == QMON_MIG_FAILED || s->status == QMON_MIG_CANCELLED) {
        apply_mem_failed(p, "QEMU could not load the memory", err ? err->desc : s->error_desc ? s->error_desc : "failed");
        return;
    }
    if (s->status != QMON_MIG_COMPLETED) {
        apply_poll_later(p);
        return;
    }
    struct vm *vm = vm_find(p->agent, p->vm);
    if (!vm || qmon_cont(vm->qmp, NULL, QMP_TIMEOUT_MS, on_apply_cont, p) < 0)
        apply_mem_failed(p, "cannot resume the guest", "QEMU's monitor is gone");
}

static void on_apply_poll(evutil_socket_t fd, short what, void *arg)
{
    struct ck_apply *p = arg;
    struct vm *vm = vm_find(p->agent, p->vm);
    if (!vm || qmon_query_migrate(vm->qmp, NULL, QMP_TIMEOUT_MS, on_apply_load, p) < 0)
        apply_mem_failed(p, "cannot follow the load", "QEMU's monitor is gone");
}

static void apply_poll_later(struct ck_apply *p)
{
    if (!p->poll)
        p->poll = evtimer_new(p->agent->base, on_apply_poll, p);
    struct timeval tv = {0, 100 * 1000};
    evtimer_add(p->poll, &tv);
}

static void on_apply_incoming(void *arg, const qmp_error_t *err)
{
    struct ck_apply *p = arg;
    if (err) {
        apply_mem_failed(p, "QEMU refused to load the memory", err->desc);
        return;
    }
    apply_poll_later(p);
}

static void on_apply_launched(struct vm *vm, json_t *error, void *arg)
{
    struct ck_apply *p = arg;
    if (error) {
        job_fail(p->job, json_incref(error));
        apply_free(p);
        return;
    }
    char *uri = xasprintf("file:%s", p->vmstate);
    if (qmon_migrate_incoming(vm->qmp, NULL, uri, QMP_TIMEOUT_MS, on_apply_incoming, p) < 0)
        apply_mem_failed(p, "cannot load the memory", "QEMU's monitor is gone");
    free(uri);
}

static void on_apply_overlays(void *arg, json_t *overlays, const char *why_overlays);

/* QEMU is down: fresh overlays on the checkpoint's frozen images become
 * the active layers (made by qemu-img in children the loop does not wait
 * for); the old active layers (the state since) go. */
static void apply_offline(struct ck_apply *p)
{
    struct vm *vm = vm_find(p->agent, p->vm);
    json_t *ck = vm ? ckpt_find(vm->cfg.checkpoints, p->name) : NULL;
    if (!ck) {
        job_fail(p->job, proto_error(ERR_INTERNAL, "the VM kept its current disks", "cannot apply checkpoint %s: %s",
                                     p->name, "it is gone"));
        apply_free(p);
        return;
    }
    ck_make_overlays(p->agent, vm, json_object_get(ck, "disks"), false, on_apply_overlays, p);
}

static void on_apply_overlays(void *arg, json_t *overlays, const char *why_overlays)
{
    struct ck_apply *p = arg;
    struct vm *vm = vm_find(p->agent, p->vm);
    char why[1024];
    json_t *tree = vm ? ck_tree_copy(vm) : NULL;
    json_t *ck = ckpt_find(tree, p->name);
    struct job *job = p->job;
    if (!overlays || !ck) {
        const char *k;
        json_t *v;
        json_object_foreach(overlays, k, v) unlink(json_string_value(v));
        json_decref(overlays);
        job_fail(job, proto_error(ERR_INTERNAL, "the VM kept its current disks", "cannot apply checkpoint %s: %s",
                                  p->name, ck ? why_overlays : "it is gone"));
        json_decref(tree);
        apply_free(p);
        return;
    }
    json_t *old = ck_active_paths(vm);
    json_object_set_new(tree, "current", json_string(p->name));
    if (ck_save(vm, tree, overlays, why, sizeof why) < 0) {
        const char *k;
        json_t *v;
        json_object_foreach(overlays, k, v) unlink(json_string_value(v));
        job_fail(job, proto_error(ERR_INTERNAL, "the VM kept its current disks", "cannot save vm.json: %s", why));
    } else {
        /* The old active layers are no checkpoint's frozen image. */
        const char *k;
        json_t *v;
        json_object_foreach(old, k, v) ck_unlink(p->vm, json_string_value(v));
        json_t *ev = json_pack("{s:s, s:O, s:b}", "checkpoint", p->name, "layers", overlays, "restarted", p->restart);
        journal_event(p->agent->journal, p->vm, "checkpoint.applied", ev);
        log_info("%s: checkpoint %s applied", p->vm, p->name);
        const char *vmstate = json_string_value(json_object_get(ck, "vmstate"));
        if (vmstate) {
            /* The guest resumes where it was: QEMU starts waiting for the
             * memory image, and nothing runs before it is loaded. */
            p->vmstate = xstrdup(vmstate);
            job_set_phase(job, "loading memory");
            json_decref(ev), json_decref(old), json_decref(overlays), json_decref(tree);
            vm_launch_incoming(vm, on_apply_launched, p);
            return;
        }
        if (p->restart)
            vm_start(vm, job);     /* a disk-only checkpoint boots fresh; the start ends the job */
        else
            job_succeed(job, ev), ev = NULL;
        json_decref(ev);
    }
    json_decref(old), json_decref(overlays), json_decref(tree);
    apply_free(p);
}

static void apply_on_gone(void *arg, json_t *exit_info)
{
    struct ck_apply *p = arg;
    struct vm *vm = vm_find(p->agent, p->vm);
    if (vm) {
        vm->stop_expected = false;
        vm_set_state(vm, VM_STOPPED, "stopped to apply a checkpoint");
    }
    job_set_phase(p->job, "applying");
    apply_offline(p);
}

static void on_apply_quit(void *arg, const qmp_error_t *err)
{
    struct ck_apply *p = arg;
    struct vm *vm = vm_find(p->agent, p->vm);
    if (err && err->kind != QMP_ERR_DISCONNECTED && vm)
        vm_kill_qemu(vm);
}

static void apply_begin(void *arg)
{
    struct ck_apply *p = arg;
    struct vm *vm = vm_find(p->agent, p->vm);
    if (!p->restart)
        apply_offline(p);
    else if (!vm->qmp || qmon_quit(vm->qmp, NULL, 5000, on_apply_quit, p) < 0)
        vm_kill_qemu(vm);
}

struct job *checkpoint_apply(struct agent *a, const char *name_vm, const char *name, json_t **err)
{
    struct vm *vm = ck_find_vm(a, name_vm, err);
    if (!vm || !ck_find(vm, name, err) || (*err = ck_busy(a, vm)))
        return NULL;
    struct ck_apply *p = xcalloc(1, sizeof *p);
    p->agent = a, p->vm = xstrdup(vm->name), p->name = xstrdup(name), p->t0 = now_ms();
    p->restart = ck_vm_live(vm);
    p->job = job_create(a, &apply_ops, vm->name, json_pack("{s:s, s:b}", "checkpoint", name, "restart", p->restart));
    struct job *job = p->job;
    job_set_phase(job, p->restart ? "stopping QEMU" : "applying");
    if (p->restart) {
        /* QEMU cannot switch a running guest to older disks: it quits, and
         * the VM boots again from the checkpoint.  The state is STOPPING
         * at once, so no other request starts meanwhile. */
        vm_set_hooks(vm, &(struct vm_hooks){NULL, apply_on_gone, p});
        vm->stop_expected = true;
        vm_set_state(vm, VM_STOPPING, "applying a checkpoint");
    }
    ck_defer(a, apply_begin, p);
    return job;
}

/* ---- list ------------------------------------------------------------------ */

/* Each layer's allocated bytes, as qemu-img info's actual-size counts them
 * (st_blocks): a stat, not a helper, so a list never waits for qemu-img. */
static json_t *layer_sizes(json_t *disks, uint64_t *total)
{
    json_t *o = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(disks, k, v) {
        struct stat st;
        json_int_t sz = -1;
        const char *path = json_string_value(v);
        if (path && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            sz = (json_int_t)st.st_blocks * 512;
            *total += (uint64_t)sz;
        }
        json_object_set_new(o, k, json_pack("{s:O, s:I}", "path", v, "bytes", sz));
    }
    return o;
}

json_t *checkpoint_list(struct agent *a, const char *name_vm, json_t **err)
{
    struct vm *vm = ck_find_vm(a, name_vm, err);
    if (!vm)
        return NULL;
    json_t *tree = vm->cfg.checkpoints;
    json_t *list = json_array();
    size_t i;
    json_t *c;
    json_array_foreach(ckpt_list(tree), i, c) {
        uint64_t total = 0;
        json_t *e = json_deep_copy(c);
        json_object_set_new(e, "layers", layer_sizes(json_object_get(c, "disks"), &total));
        json_object_del(e, "disks");
        json_object_set_new(e, "bytes", json_integer((json_int_t)total));
        json_object_set_new(e, "current", json_boolean(ckpt_current(tree) && !strcmp(ckpt_current(tree),
                                                                                      json_string_value(json_object_get(c, "name")))));
        json_array_append_new(list, e);
    }
    uint64_t now_total = 0;
    json_t *paths = ck_active_paths(vm);
    json_t *now = json_pack("{s:O, s:o}", "parent", json_object_get(tree, "current") ? json_object_get(tree, "current") : json_null(),
                            "layers", layer_sizes(paths, &now_total));
    json_object_set_new(now, "bytes", json_integer((json_int_t)now_total));
    json_decref(paths);
    return json_pack("{s:s, s:O, s:o, s:o}", "vm", vm->name, "current",
                     json_object_get(tree, "current") ? json_object_get(tree, "current") : json_null(), "checkpoints",
                     list, "now", now);
}

