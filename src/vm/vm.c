/* The VM object and its state machine: allocation and free, the persisted
 * runtime state (runtime.json), the JSON view, QMP events and QEMU's exit.
 * The inventory is in inventory.c, start/stop in lifecycle.c, the guest
 * channel in guest.c; what they share is declared in vm_internal.h. */
#include "vm/vm.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "core/journal.h"
#include "qemu/monitor.h"
#include "qemu/qemu_argv.h"
#include "qemu/qemu_proc.h"
#include "vm/vm_internal.h"

#define QMP_CONNECT_TIMEOUT_MS 30000
#define EXIT_POLL_MS 50
#define EXIT_POLL_MAX 100          /* 5 s for the shim to record QEMU's exit */

static const char *state_names[] = {"stopped", "starting", "running", "paused", "stopping",
                                    "crashed", "broken", "migrating", "incoming"};

const char *vm_state_name(enum vm_state s) { return state_names[s]; }

bool vm_state_parse(const char *name, enum vm_state *out)
{
    bool found = false;
    for (size_t i = 0; name && i < ARRAY_LEN(state_names); i++)
        if (!strcmp(name, state_names[i])) {
            *out = (enum vm_state)i;
            found = true;
        }
    return found;
}

/* ---- persistence ------------------------------------------------------ */

void vm_save_runtime(struct vm *vm)
{
    json_t *j = json_pack("{s:s, s:i, s:i, s:b, s:I, s:O?, s:O*, s:O*}", "state", state_names[vm->state],
                          "qemu_pid", (int)vm->qemu_pid, "shim_pid", (int)vm->shim_pid,
                          "stop_expected", vm->stop_expected, "started_ms",
                          (json_int_t)vm->started_ms, "last_exit", vm->last_exit,
                          "migration", vm->migration, "storage_move", vm->storage_move);
    char *text = json_dumps(j, JSON_INDENT(2));
    char *path = xasprintf("%s/runtime.json", vm->dir);
    if (write_file_atomic(path, text, strlen(text), 0600) < 0)
        log_error("%s: cannot write %s: %s", vm->name, path, strerror(errno));
    free(path);
    free(text);
    json_decref(j);
}

void vm_set_state(struct vm *vm, enum vm_state st, const char *why)
{
    if (vm->state == st)
        return;
    log_info("vm %s: %s -> %s%s%s", vm->name, state_names[vm->state], state_names[st],
             why ? ": " : "", why ? why : "");
    json_t *detail = json_pack("{s:s, s:s, s:s?}", "from", state_names[vm->state], "to",
                               state_names[st], "why", why);
    journal_event(vm->agent->journal, vm->name, "vm.state", detail);
    json_decref(detail);
    vm->state = st;
    vm_save_runtime(vm);
}

/* ---- the object ------------------------------------------------------- */

/* A hook (a migration's event handler) may delete the VM it was called
 * for; the caller still holds the pointer, so the free waits for it. */
void vm_free(struct vm *vm)
{
    if (vm->depth > 0) {
        vm->doomed = true;
        return;
    }
    vm_guest_cancel_all(vm, "vmoved is shutting down");
    if (vm->qmp)
        qmp_free(vm->qmp);
    if (vm->timer)
        event_free(vm->timer);
    vm_config_free(&vm->cfg);
    json_decref(vm->last_exit);
    json_decref(vm->migration);
    json_decref(vm->storage_move);
    free(vm->broken_reason);
    free(vm->name);
    free(vm->dir);
    free(vm);
}

json_t *vm_exit_info(struct vm *vm)
{
    json_t *rec = qemu_proc_exit_record(vm->dir);
    char *desc = qemu_proc_describe_exit(rec);
    char *log = qemu_proc_log_tail(vm->dir, "qemu.log", 2048);
    char *console = qemu_proc_log_tail(vm->dir, "console.log", 2048);
    json_t *info = json_pack("{s:s, s:o, s:s, s:s, s:I}", "description", desc, "record",
                             rec ? rec : json_null(), "qemu_log_tail", log, "console_tail",
                             console, "ts_ms", (json_int_t)wall_ms());
    free(desc);
    free(log);
    free(console);
    return info;
}

/* ---- JSON view -------------------------------------------------------- */

json_t *vm_to_json(const struct vm *vm, bool detail)
{
    json_t *j = json_pack("{s:s, s:s}", "name", vm->name, "state", state_names[vm->state]);
    if (vm->state == VM_BROKEN) {
        json_object_set_new(j, "error", json_string(vm->broken_reason));
        json_object_set_new(j, "dir", json_string(vm->dir));
        return j;
    }
    json_object_set_new(j, "uuid", json_string(vm->cfg.uuid));
    json_object_set_new(j, "memory_mib", json_integer((json_int_t)vm->cfg.memory_mib));
    json_object_set_new(j, "cpus", json_integer(vm->cfg.cpus));
    json_object_set_new(j, "ha", json_boolean(vm->cfg.ha));
    if (vm->cfg.ha)
        json_object_set_new(j, "isolation", json_string(vm->cfg.ha_keep ? "keep" : "stop"));
    bool active = vm->state != VM_STOPPED && vm->state != VM_CRASHED;
    if (active) {
        json_object_set_new(j, "pid", json_integer(vm->qemu_pid));
        if (vm->started_ms)
            json_object_set_new(j, "uptime_ms", json_integer((json_int_t)(wall_ms() - vm->started_ms)));
    }
    if (vm->last_exit && vm->state == VM_CRASHED)
        json_object_set_new(j, "crash", json_incref(vm->last_exit));
    if (detail) {
        json_object_set_new(j, "dir", json_string(vm->dir));
        json_object_set_new(j, "config", vm_config_to_json(&vm->cfg));
        if (vm->last_exit)
            json_object_set_new(j, "last_exit", json_incref(vm->last_exit));
        json_object_set_new(j, "qmp_connected", json_boolean(vm->qmp && qmp_is_ready(vm->qmp)));
    }
    return j;
}

/* ---- QEMU exit handling ----------------------------------------------- */

void vm_finish_job_ok(struct vm *vm)
{
    struct job *job = vm->job;
    vm->job = NULL;
    if (job)
        job_succeed(job, vm_to_json(vm, false));
}

void vm_finish_job_err(struct vm *vm, json_t *err)
{
    struct job *job = vm->job;
    vm->job = NULL;
    if (job)
        job_fail(job, err);
    else
        json_decref(err);
}

/* QEMU is gone: decide between stopped and crashed, and settle the job. */
static void qemu_gone(struct vm *vm)
{
    if (vm->timer) {
        event_free(vm->timer);
        vm->timer = NULL;
    }
    json_decref(vm->last_exit);
    vm->last_exit = vm_exit_info(vm);
    const char *desc = json_string_value(json_object_get(vm->last_exit, "description"));
    bool starting = vm->state == VM_STARTING;
    vm->qemu_pid = 0;
    vm->started_ms = 0;
    if (vm->launch_cb) {
        vm_launch_fn cb = vm->launch_cb;
        vm->launch_cb = NULL;
        char *tail = qemu_proc_log_tail(vm->dir, "qemu.log", 600);
        json_t *err = proto_error(ERR_QEMU, NULL, "QEMU exited while starting for an incoming migration (%s): %s",
                                  desc, tail);
        free(tail);
        cb(vm, err, vm->launch_arg);
        json_decref(err);
        return;
    }
    if (vm->hooks.on_gone) {
        /* A migration owns this VM's fate: it decides what the exit means. */
        struct vm_hooks h = vm->hooks;
        memset(&vm->hooks, 0, sizeof vm->hooks);
        vm_guest_cancel_all(vm, "QEMU exited");
        h.on_gone(h.arg, vm->last_exit);
        return;
    }
    if (starting) {
        char *tail = qemu_proc_log_tail(vm->dir, "qemu.log", 600);
        vm_set_state(vm, VM_STOPPED, "QEMU exited during start");
        vm_finish_job_err(vm, proto_error(ERR_QEMU, "see the QEMU log in the VM directory (qemu.log)",
                                       "QEMU exited during start (%s): %s", desc, tail));
        free(tail);
    } else if (vm->stop_expected) {
        vm_set_state(vm, VM_STOPPED, desc);
        vm_finish_job_ok(vm);
    } else {
        char *why = xasprintf("QEMU exited unexpectedly: %s", desc);
        vm_set_state(vm, VM_CRASHED, why);
        journal_event(vm->agent->journal, vm->name, "vm.crashed", vm->last_exit);
        vm_finish_job_err(vm, proto_error(ERR_QEMU, "`vmove vm show` has the log tail", "%s", why));
        free(why);
    }
    vm->stop_expected = false;
    vm_save_runtime(vm);
    vm_guest_cancel_all(vm, "the VM is no longer running");
}

static void on_exit_poll(evutil_socket_t fd, short what, void *arg)
{
    struct vm *vm = arg;
    bool alive = qemu_proc_is_ours(vm->qemu_pid, vm->cfg.uuid);
    json_t *rec = qemu_proc_exit_record(vm->dir);
    bool recorded = rec != NULL;
    json_decref(rec);
    if (!alive && (recorded || ++vm->exit_polls > EXIT_POLL_MAX / 5)) {
        qemu_gone(vm);
        return;
    }
    if (alive && ++vm->exit_polls > EXIT_POLL_MAX) {
        /* The monitor connection broke but QEMU lives on: reconnect. */
        log_warn("vm %s: QMP connection lost but QEMU pid %d is alive; reconnecting", vm->name,
                 (int)vm->qemu_pid);
        event_free(vm->timer);
        vm->timer = NULL;
        vm_attach_qmp(vm);
        return;
    }
    struct timeval tv = {0, EXIT_POLL_MS * 1000};
    evtimer_add(vm->timer, &tv);
}

static void watch_for_exit(struct vm *vm)
{
    if (vm->timer)
        event_free(vm->timer);
    vm->exit_polls = 0;
    vm->timer = evtimer_new(vm->agent->base, on_exit_poll, vm);
    struct timeval tv = {0, 0};
    evtimer_add(vm->timer, &tv);
}

/* ---- QMP wiring ------------------------------------------------------- */

static void on_qmp_event(void *arg, const char *name, json_t *data)
{
    struct vm *vm = arg;
    if (vm->hooks.on_event) {
        vm->depth++;
        vm->hooks.on_event(vm->hooks.arg, name, data);
        if (--vm->depth == 0 && vm->doomed) {
            vm_free(vm);
            return;
        }
    }
    if (vm->state == VM_MIGRATING || vm->state == VM_INCOMING)
        return;   /* STOP/RESUME during a migration are the migration's business */
    if (!strcmp(name, "STOP") && vm->state == VM_RUNNING)
        vm_set_state(vm, VM_PAUSED, "QEMU reported STOP");
    else if (!strcmp(name, "RESUME") && vm->state == VM_PAUSED)
        vm_set_state(vm, VM_RUNNING, "QEMU reported RESUME");
    else if (!strcmp(name, "SHUTDOWN")) {
        /* The guest powered off, or we asked QEMU to quit: either way an
         * orderly exit follows, not a crash. */
        vm->stop_expected = true;
        if (vm->state == VM_RUNNING || vm->state == VM_PAUSED)
            vm_set_state(vm, VM_STOPPING, json_is_true(json_object_get(data, "guest"))
                                           ? "the guest powered off" : "QEMU is shutting down");
        else
            vm_save_runtime(vm);
    }
}

static void on_status(void *arg, const struct qmon_status *st, const qmp_error_t *err)
{
    struct vm *vm = arg;
    if (err || vm->state == VM_STARTING || vm->state == VM_MIGRATING || vm->state == VM_INCOMING)
        return;
    if (st->running)
        vm_set_state(vm, VM_RUNNING, "re-attached");
    else if (vm->state != VM_STOPPING)
        vm_set_state(vm, VM_PAUSED, "re-attached");
}

static void on_qmp_state(void *arg, bool ready, const char *reason)
{
    struct vm *vm = arg;
    if (ready) {
        if (vm->launch_cb)
            vm_incoming_continue(vm);
        else if (vm->state == VM_STARTING && vm->job)
            vm_start_continue(vm);
        else
            qmon_query_status(vm->qmp, NULL, 10000, on_status, vm);
        return;
    }
    log_info("vm %s: QMP closed: %s", vm->name, reason);
    watch_for_exit(vm);
}

void vm_attach_qmp(struct vm *vm)
{
    if (vm->qmp)
        qmp_free(vm->qmp);
    vm->qmp = qmp_new(vm->agent->base, on_qmp_event, on_qmp_state, vm);
    char *path = qemu_qmp_path(vm->dir);
    if (qmp_connect_unix(vm->qmp, path, QMP_CONNECT_TIMEOUT_MS) < 0)
        watch_for_exit(vm);
    free(path);
}

void vm_set_hooks(struct vm *vm, const struct vm_hooks *hooks)
{
    if (hooks)
        vm->hooks = *hooks;
    else
        memset(&vm->hooks, 0, sizeof vm->hooks);
}

void vm_set_migration(struct vm *vm, json_t *record)
{
    json_decref(vm->migration);
    vm->migration = record;
    vm_save_runtime(vm);
}

void vm_set_storage_move(struct vm *vm, json_t *record)
{
    json_decref(vm->storage_move);
    vm->storage_move = record;
    vm_save_runtime(vm);
}
