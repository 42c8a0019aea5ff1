/* Start and stop: preflight checks, launching QEMU (also for an incoming
 * migration), wiring the taps, pause/resume, cancel. */
#include "vm/vm.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/spawn.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "qemu/monitor.h"
#include "qemu/qemu_argv.h"
#include "qemu/qemu_proc.h"
#include "vm/vm_internal.h"

/* ---- start ------------------------------------------------------------ */

static bool bridge_exists(const char *name)
{
    char *p = xasprintf("/sys/class/net/%s/bridge", name);
    bool r = path_exists(p);
    free(p);
    return r;
}

static json_t *check_startable(struct vm *vm)
{
    const struct vm_config *c = &vm->cfg;
    json_t *problems = json_array();
    if (c->boot.kind == VM_BOOT_KERNEL) {
        if (access(c->boot.kernel, R_OK) < 0)
            json_array_append_new(problems, json_sprintf("kernel %s: %s", c->boot.kernel, strerror(errno)));
        if (c->boot.initrd && access(c->boot.initrd, R_OK) < 0)
            json_array_append_new(problems, json_sprintf("initrd %s: %s", c->boot.initrd, strerror(errno)));
    }
    for (size_t i = 0; i < c->n_disks; i++)
        if (access(c->disks[i].path, R_OK | W_OK) < 0)
            json_array_append_new(problems, json_sprintf("disk %s (%s): %s", c->disks[i].id,
                                                         c->disks[i].path, strerror(errno)));
    for (size_t i = 0; i < c->n_nics; i++)
        if (!bridge_exists(c->nics[i].switch_name))
            json_array_append_new(problems, json_sprintf(
                "switch %s (nic %zu) does not exist on host %s", c->nics[i].switch_name, i,
                vm->agent->name));
    if (json_array_size(problems) == 0) {
        json_decref(problems);
        return NULL;
    }
    char *text = json_dumps(problems, JSON_COMPACT);
    json_t *err = proto_error(ERR_INVALID, "fix the paths or create the bridge (ip link add NAME type bridge)",
                              "VM %s cannot start: %s", vm->name, text);
    json_object_set_new(err, "problems", problems);
    free(text);
    return err;
}

static void remove_sockets(const char *dir)
{
    char *paths[] = {qemu_qmp_path(dir), qemu_console_path(dir), qemu_guest_path(dir)};
    for (size_t i = 0; i < ARRAY_LEN(paths); i++) {
        unlink(paths[i]);
        free(paths[i]);
    }
}

void vm_kill_qemu(struct vm *vm)
{
    if (vm->qemu_pid > 0 && qemu_proc_is_ours(vm->qemu_pid, vm->cfg.uuid))
        kill(vm->qemu_pid, SIGKILL);
}

/* Abort a start: QEMU is killed, and the exit path reports the failure. */
static void start_abort(struct vm *vm, json_t *err)
{
    vm_finish_job_err(vm, err);
    vm->stop_expected = true;
    vm->state = VM_STOPPING;
    vm_save_runtime(vm);
    vm_kill_qemu(vm);
}

static void on_start_cont(void *arg, const qmp_error_t *err)
{
    struct vm *vm = arg;
    if (err) {
        start_abort(vm, proto_error(ERR_QEMU, NULL, "QEMU refused to start the guest: %s", err->desc));
        return;
    }
    vm->started_ms = wall_ms();
    vm_set_state(vm, VM_RUNNING, "started");
    vm_finish_job_ok(vm);
}

static int attach_taps(struct vm *vm, char *err, size_t errlen)
{
    for (size_t i = 0; i < vm->cfg.n_nics; i++) {
        char tap[16];
        qemu_tap_name(&vm->cfg, i, tap);
        char *argv[] = {"ip", "link", "set", "dev", tap, "master", vm->cfg.nics[i].switch_name,
                        "up", NULL};
        char *out = NULL;
        int rc = run_capture(argv, 5000, &out);
        if (rc != 0) {
            snprintf(err, errlen, "cannot attach %s to switch %s: %s", tap,
                     vm->cfg.nics[i].switch_name, out ? out : "?");
            free(out);
            return -1;
        }
        free(out);
    }
    return 0;
}

void vm_start_continue(struct vm *vm)
{
    char err[512];
    job_set_phase(vm->job, "wiring");
    if (attach_taps(vm, err, sizeof err) < 0) {
        start_abort(vm, proto_error(ERR_INVALID, NULL, "%s", err));
        return;
    }
    job_set_phase(vm->job, "resuming");
    qmon_cont(vm->qmp, NULL, 10000, on_start_cont, vm);
}

static int launch_qemu(struct vm *vm, bool incoming, char *err, size_t errlen)
{
    struct agent *a = vm->agent;
    remove_sockets(vm->dir);
    struct qemu_argv_opts o = {.qemu_binary = a->caps.qemu_binary, .vm_dir = vm->dir,
                               .accel = a->accel.kind, .incoming = incoming ? "defer" : NULL,
                               .no_image_locking = getenv("VMOVE_TEST_NO_IMAGE_LOCKING") != NULL};
    /* An HA guest is fenced with its host's lease from its first instant;
     * any other VM, and an HA VM with isolation keep, is never. */
    uint64_t fence = vm_config_fenced(&vm->cfg) ? a->fence_kill_ns : 0;
    if (qemu_proc_fence_set(vm->dir, fence) < 0) {
        snprintf(err, errlen, "cannot write the fence deadline in %s", vm->dir);
        return -1;
    }
    char **argv = qemu_build_argv(&vm->cfg, &o);
    int rc = qemu_proc_start(vm->dir, argv, &vm->shim_pid, &vm->qemu_pid, err, errlen);
    qemu_argv_free(argv);
    if (rc == 0)
        vm->stop_expected = false;
    return rc;
}

void vm_start(struct vm *vm, struct job *job)
{
    vm->job = job;
    json_t *problem = check_startable(vm);
    if (problem) {
        vm_finish_job_err(vm, problem);
        return;
    }
    char err[512];
    job_set_phase(job, "launching");
    if (launch_qemu(vm, false, err, sizeof err) < 0) {
        vm_finish_job_err(vm, proto_error(ERR_INTERNAL, NULL, "%s", err));
        return;
    }
    vm_set_state(vm, VM_STARTING, NULL);
    job_set_phase(job, "connecting");
    vm_attach_qmp(vm);
}

void vm_launch_incoming(struct vm *vm, vm_launch_fn cb, void *arg)
{
    json_t *problem = check_startable(vm);
    char err[512];
    if (!problem && launch_qemu(vm, true, err, sizeof err) < 0)
        problem = proto_error(ERR_INTERNAL, NULL, "%s", err);
    if (problem) {
        cb(vm, problem, arg);
        json_decref(problem);
        return;
    }
    vm->launch_cb = cb;
    vm->launch_arg = arg;
    vm_set_state(vm, VM_INCOMING, "waiting for the incoming migration");
    vm_attach_qmp(vm);
}

void vm_incoming_continue(struct vm *vm)
{
    vm_launch_fn cb = vm->launch_cb;
    vm->launch_cb = NULL;
    char err[512];
    json_t *error = NULL;
    if (attach_taps(vm, err, sizeof err) < 0)
        error = proto_error(ERR_INVALID, NULL, "%s", err);
    cb(vm, error, vm->launch_arg);
    json_decref(error);
}

/* ---- stop ------------------------------------------------------------- */

static void on_stop_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct vm *vm = arg;
    event_free(vm->timer);
    vm->timer = NULL;
    if (vm->stop_expected && vm->job && !strcmp(vm->job->ops->kind, "vm.force-stop")) {
        log_warn("vm %s: QEMU ignored quit; killing it", vm->name);
        vm_kill_qemu(vm);
        return;
    }
    int secs = (int)json_integer_value(json_object_get(vm->job->params, "timeout"));
    vm->stop_expected = false;
    vm_set_state(vm, VM_RUNNING, "graceful stop timed out");
    vm_finish_job_err(vm, proto_error(ERR_TIMEOUT, "use `vmove vm stop --force` to power it off",
                                   "the guest did not power off within %d s; VM %s is still running",
                                   secs, vm->name));
}

static void on_quit(void *arg, const qmp_error_t *err)
{
    struct vm *vm = arg;
    if (err && err->kind != QMP_ERR_DISCONNECTED)
        vm_kill_qemu(vm);
}

void vm_stop(struct vm *vm, struct job *job, bool force, int timeout_s)
{
    vm->job = job;
    vm->stop_expected = true;
    vm_set_state(vm, VM_STOPPING, force ? "forced stop" : "stop requested");
    job_set_phase(job, force ? "quitting QEMU" : "waiting for the guest to power off");
    if (vm->timer)
        event_free(vm->timer);
    vm->timer = evtimer_new(vm->agent->base, on_stop_timeout, vm);
    struct timeval tv = {force ? 10 : timeout_s, 0};
    evtimer_add(vm->timer, &tv);
    if (!vm->qmp || !qmp_is_ready(vm->qmp)) {
        vm_kill_qemu(vm);
        return;
    }
    if (force)
        qmon_quit(vm->qmp, NULL, 5000, on_quit, vm);
    else
        qmon_system_powerdown(vm->qmp, NULL, 5000, NULL, NULL);
}

/* ---- pause / resume --------------------------------------------------- */

struct simple_cmd {
    struct vm *vm;
    vm_done_fn done;
    void *arg;
    enum vm_state then;
};

static void on_simple(void *arg, const qmp_error_t *err)
{
    struct simple_cmd *c = arg;
    if (err)
        c->done(c->arg, NULL, proto_error(ERR_QEMU, NULL, "QEMU: %s", err->desc));
    else {
        vm_set_state(c->vm, c->then, c->then == VM_PAUSED ? "paused" : "resumed");
        c->done(c->arg, vm_to_json(c->vm, false), NULL);
    }
    free(c);
}

typedef int (*run_state_cmd_fn)(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_done_fn cb, void *arg);

/* stop or cont: the VM's state follows once QEMU confirmed. */
static json_t *simple_command(struct vm *vm, run_state_cmd_fn send, enum vm_state then, vm_done_fn done, void *arg)
{
    struct simple_cmd *c = xcalloc(1, sizeof *c);
    *c = (struct simple_cmd){vm, done, arg, then};
    if (send(vm->qmp, NULL, 10000, on_simple, c) < 0) {
        free(c);
        return proto_error(ERR_UNAVAILABLE, NULL, "VM %s: QEMU monitor is not connected", vm->name);
    }
    return NULL;
}

json_t *vm_pause(struct vm *vm, vm_done_fn done, void *arg) { return simple_command(vm, qmon_stop, VM_PAUSED, done, arg); }
json_t *vm_resume(struct vm *vm, vm_done_fn done, void *arg) { return simple_command(vm, qmon_cont, VM_RUNNING, done, arg); }

/* ---- cancel ----------------------------------------------------------- */

void vm_cancel_job(struct vm *vm)
{
    if (!vm->job)
        return;
    if (vm->state == VM_STARTING) {
        start_abort(vm, proto_error(ERR_CANCELLED, NULL, "start of %s cancelled", vm->name));
        return;
    }
    if (vm->state == VM_STOPPING && strcmp(vm->job->ops->kind, "vm.force-stop") != 0) {
        if (vm->timer) {
            event_free(vm->timer);
            vm->timer = NULL;
        }
        vm->stop_expected = false;
        vm_set_state(vm, VM_RUNNING, "stop cancelled");
        vm_finish_job_err(vm, proto_error(ERR_CANCELLED, NULL, "stop of %s cancelled; it keeps running",
                                       vm->name));
    }
}

void vm_acknowledge_crash(struct vm *vm)
{
    if (vm->state == VM_CRASHED)
        vm_set_state(vm, VM_STOPPED, "crash acknowledged");
}

bool qemu_pid_alive(const struct vm *vm)
{
    return qemu_proc_is_ours(vm->qemu_pid, vm->cfg.uuid);
}
