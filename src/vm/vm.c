#include "vm/vm.h"

#include <dirent.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/spawn.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "core/journal.h"
#include "qemu/monitor.h"
#include "qemu/qemu_argv.h"
#include "qemu/qemu_proc.h"

#define QMP_CONNECT_TIMEOUT_MS 30000
#define EXIT_POLL_MS 50
#define EXIT_POLL_MAX 100          /* 5 s for the shim to record QEMU's exit */

static const char *state_names[] = {"stopped", "starting", "running", "paused", "stopping",
                                    "crashed", "broken", "migrating", "incoming"};

const char *vm_state_name(enum vm_state s) { return state_names[s]; }

static void vm_attach_qmp(struct vm *vm);

/* ---- persistence ------------------------------------------------------ */

static void save_runtime(struct vm *vm)
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
    save_runtime(vm);
}

/* ---- inventory -------------------------------------------------------- */

static struct vm *vm_alloc(struct agent *a, const char *name, const char *dir)
{
    struct vm *vm = xcalloc(1, sizeof *vm);
    vm->agent = a;
    vm->name = xstrdup(name);
    vm->dir = xstrdup(dir);
    vm->state = VM_STOPPED;
    /* Keep the list sorted by name: `vm list` reads it in order. */
    struct vm **p = &a->vms;
    while (*p && strcmp((*p)->name, name) < 0)
        p = &(*p)->next;
    vm->next = *p;
    *p = vm;
    return vm;
}

struct vm *vm_find(struct agent *a, const char *name)
{
    for (struct vm *vm = a->vms; vm; vm = vm->next)
        if (!strcmp(vm->name, name))
            return vm;
    return NULL;
}

static void load_runtime(struct vm *vm)
{
    char *path = xasprintf("%s/runtime.json", vm->dir);
    json_t *rt = json_load_file(path, 0, NULL);
    free(path);
    if (!rt)
        return;
    const char *st = json_string_value(json_object_get(rt, "state"));
    for (size_t i = 0; st && i < ARRAY_LEN(state_names); i++)
        if (!strcmp(st, state_names[i]))
            vm->state = (enum vm_state)i;
    vm->qemu_pid = (pid_t)json_integer_value(json_object_get(rt, "qemu_pid"));
    vm->stop_expected = json_is_true(json_object_get(rt, "stop_expected"));
    vm->started_ms = (uint64_t)json_integer_value(json_object_get(rt, "started_ms"));
    vm->last_exit = json_incref(json_object_get(rt, "last_exit"));
    vm->migration = json_incref(json_object_get(rt, "migration"));
    vm->storage_move = json_incref(json_object_get(rt, "storage_move"));
    json_decref(rt);
}

static json_t *exit_info(struct vm *vm)
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

/* Re-attach after a vmoved restart: the QEMU is either still ours or gone. */
static void reattach(struct vm *vm)
{
    bool was_active = vm->state == VM_STARTING || vm->state == VM_RUNNING ||
                      vm->state == VM_PAUSED || vm->state == VM_STOPPING ||
                      vm->state == VM_MIGRATING || vm->state == VM_INCOMING;
    if (!was_active)
        return;
    if (qemu_proc_is_ours(vm->qemu_pid, vm->cfg.uuid)) {
        log_info("vm %s: re-attaching to QEMU pid %d", vm->name, (int)vm->qemu_pid);
        vm_attach_qmp(vm);
        return;
    }
    json_decref(vm->last_exit);
    vm->last_exit = exit_info(vm);
    const char *desc = json_string_value(json_object_get(vm->last_exit, "description"));
    if (vm->migration)
        return;   /* the migration code resolves it after loading the inventory */
    if (vm->stop_expected)
        vm_set_state(vm, VM_STOPPED, "QEMU exited while vmoved was down (stop requested)");
    else {
        char *why = xasprintf("QEMU exited while vmoved was down: %s", desc);
        vm_set_state(vm, VM_CRASHED, why);
        free(why);
    }
}

void vm_inventory_load(struct agent *a)
{
    DIR *d = opendir(a->vms_dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *dir = xasprintf("%s/%s", a->vms_dir, e->d_name);
        char *cfgpath = xasprintf("%s/vm.json", dir);
        char err[512];
        struct vm_config cfg;
        if (!path_exists(cfgpath)) {
            free(dir);
            free(cfgpath);
            continue;
        }
        struct vm *vm;
        if (vm_config_load(cfgpath, &cfg, err, sizeof err) < 0) {
            vm = vm_alloc(a, e->d_name, dir);
            vm->state = VM_BROKEN;
            vm->broken_reason = xstrdup(err);
            log_error("vm %s: %s", e->d_name, err);
        } else if (strcmp(cfg.name, e->d_name) != 0) {
            vm = vm_alloc(a, e->d_name, dir);
            vm->state = VM_BROKEN;
            vm->broken_reason = xasprintf("%s: name \"%s\" does not match its directory \"%s\"",
                                          cfgpath, cfg.name, e->d_name);
            log_error("vm %s: %s", e->d_name, vm->broken_reason);
            vm_config_free(&cfg);
        } else {
            vm = vm_alloc(a, cfg.name, dir);
            vm->cfg = cfg;
            load_runtime(vm);
            reattach(vm);
        }
        free(dir);
        free(cfgpath);
    }
    closedir(d);
}

static void guest_cancel_all(struct vm *vm, const char *why);

/* A hook (a migration's event handler) may delete the VM it was called
 * for; the caller still holds the pointer, so the free waits for it. */
static void vm_free(struct vm *vm)
{
    if (vm->depth > 0) {
        vm->doomed = true;
        return;
    }
    guest_cancel_all(vm, "vmoved is shutting down");
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

void vm_inventory_free(struct agent *a)
{
    while (a->vms) {
        struct vm *vm = a->vms;
        a->vms = vm->next;
        vm_free(vm);
    }
}

struct vm *vm_define(struct agent *a, struct vm_config *cfg, const char *dir, json_t **err)
{
    char msg[512];
    if (vm_config_validate(cfg, msg, sizeof msg) < 0) {
        *err = proto_error(ERR_INVALID, NULL, "%s", msg);
        return NULL;
    }
    char *path = xasprintf("%s/vm.json", dir);
    int rc = vm_config_save(path, cfg, msg, sizeof msg);
    free(path);
    if (rc < 0) {
        *err = proto_error(ERR_INTERNAL, NULL, "%s", msg);
        return NULL;
    }
    struct vm *vm = vm_alloc(a, cfg->name, dir);
    vm->cfg = *cfg;
    memset(cfg, 0, sizeof *cfg);
    save_runtime(vm);
    json_t *detail = json_pack("{s:s}", "uuid", vm->cfg.uuid);
    journal_event(a->journal, vm->name, "vm.defined", detail);
    json_decref(detail);
    return vm;
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

static void finish_job_ok(struct vm *vm)
{
    struct job *job = vm->job;
    vm->job = NULL;
    if (job)
        job_succeed(job, vm_to_json(vm, false));
}

static void finish_job_err(struct vm *vm, json_t *err)
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
    vm->last_exit = exit_info(vm);
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
        guest_cancel_all(vm, "QEMU exited");
        h.on_gone(h.arg, vm->last_exit);
        return;
    }
    if (starting) {
        char *tail = qemu_proc_log_tail(vm->dir, "qemu.log", 600);
        vm_set_state(vm, VM_STOPPED, "QEMU exited during start");
        finish_job_err(vm, proto_error(ERR_QEMU, "see the QEMU log in the VM directory (qemu.log)",
                                       "QEMU exited during start (%s): %s", desc, tail));
        free(tail);
    } else if (vm->stop_expected) {
        vm_set_state(vm, VM_STOPPED, desc);
        finish_job_ok(vm);
    } else {
        char *why = xasprintf("QEMU exited unexpectedly: %s", desc);
        vm_set_state(vm, VM_CRASHED, why);
        journal_event(vm->agent->journal, vm->name, "vm.crashed", vm->last_exit);
        finish_job_err(vm, proto_error(ERR_QEMU, "`vmove vm show` has the log tail", "%s", why));
        free(why);
    }
    vm->stop_expected = false;
    save_runtime(vm);
    guest_cancel_all(vm, "the VM is no longer running");
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
            save_runtime(vm);
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

static void start_continue(struct vm *vm);
static void incoming_continue(struct vm *vm);

static void on_qmp_state(void *arg, bool ready, const char *reason)
{
    struct vm *vm = arg;
    if (ready) {
        if (vm->launch_cb)
            incoming_continue(vm);
        else if (vm->state == VM_STARTING && vm->job)
            start_continue(vm);
        else
            qmon_query_status(vm->qmp, NULL, 10000, on_status, vm);
        return;
    }
    log_info("vm %s: QMP closed: %s", vm->name, reason);
    watch_for_exit(vm);
}

static void vm_attach_qmp(struct vm *vm)
{
    if (vm->qmp)
        qmp_free(vm->qmp);
    vm->qmp = qmp_new(vm->agent->base, on_qmp_event, on_qmp_state, vm);
    char *path = qemu_qmp_path(vm->dir);
    if (qmp_connect_unix(vm->qmp, path, QMP_CONNECT_TIMEOUT_MS) < 0)
        watch_for_exit(vm);
    free(path);
}

/* ---- start ------------------------------------------------------------ */

static bool bridge_exists(const char *name)
{
    char *p = xasprintf("/sys/class/net/%s/bridge", name);
    bool r = path_exists(p);
    free(p);
    return r;
}

json_t *vm_check_startable(struct vm *vm)
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
    finish_job_err(vm, err);
    vm->stop_expected = true;
    vm->state = VM_STOPPING;
    save_runtime(vm);
    vm_kill_qemu(vm);
}

static void on_cont(void *arg, const qmp_error_t *err)
{
    struct vm *vm = arg;
    if (err) {
        start_abort(vm, proto_error(ERR_QEMU, NULL, "QEMU refused to start the guest: %s", err->desc));
        return;
    }
    vm->started_ms = wall_ms();
    vm_set_state(vm, VM_RUNNING, "started");
    finish_job_ok(vm);
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

static void start_continue(struct vm *vm)
{
    char err[512];
    job_set_phase(vm->job, "wiring");
    if (attach_taps(vm, err, sizeof err) < 0) {
        start_abort(vm, proto_error(ERR_INVALID, NULL, "%s", err));
        return;
    }
    job_set_phase(vm->job, "resuming");
    qmon_cont(vm->qmp, NULL, 10000, on_cont, vm);
}

static int launch_qemu(struct vm *vm, bool incoming, char *err, size_t errlen)
{
    struct agent *a = vm->agent;
    remove_sockets(vm->dir);
    struct qemu_argv_opts o = {.qemu_binary = a->caps.qemu_binary, .vm_dir = vm->dir,
                               .accel = a->accel.kind, .incoming = incoming ? "defer" : NULL};
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
    json_t *problem = vm_check_startable(vm);
    if (problem) {
        finish_job_err(vm, problem);
        return;
    }
    char err[512];
    job_set_phase(job, "launching");
    if (launch_qemu(vm, false, err, sizeof err) < 0) {
        finish_job_err(vm, proto_error(ERR_INTERNAL, NULL, "%s", err));
        return;
    }
    vm_set_state(vm, VM_STARTING, NULL);
    job_set_phase(job, "connecting");
    vm_attach_qmp(vm);
}

void vm_launch_incoming(struct vm *vm, vm_launch_fn cb, void *arg)
{
    json_t *problem = vm_check_startable(vm);
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

static void incoming_continue(struct vm *vm)
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
    save_runtime(vm);
}

void vm_set_storage_move(struct vm *vm, json_t *record)
{
    json_decref(vm->storage_move);
    vm->storage_move = record;
    save_runtime(vm);
}

void vm_forget(struct vm *vm)
{
    json_t *err = NULL;
    vm_set_hooks(vm, NULL);
    if (vm_delete(vm, true, &err) < 0) {
        log_error("%s", json_string_value(json_object_get(err, "message")));
        json_decref(err);
    }
}

struct vm *vm_define_in_state(struct agent *a, struct vm_config *cfg, json_t **err)
{
    char *dir = xasprintf("%s/%s", a->vms_dir, cfg->name);
    if (mkdir(dir, 0700) < 0) {
        *err = proto_error(ERR_EXISTS, NULL, "cannot create %s: %s", dir, strerror(errno));
        free(dir);
        return NULL;
    }
    struct vm *vm = vm_define(a, cfg, dir, err);
    if (!vm)
        remove_tree(dir);
    free(dir);
    return vm;
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
    finish_job_err(vm, proto_error(ERR_TIMEOUT, "use `vmove vm stop --force` to power it off",
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

/* ---- delete ----------------------------------------------------------- */

static bool is_disk_path(const struct vm *vm, const char *path)
{
    for (size_t i = 0; i < vm->cfg.n_disks; i++)
        if (!strcmp(vm->cfg.disks[i].path, path))
            return true;
    return false;
}

/* Only files inside the VM's directory belong to vmove; disks attached by
 * path from elsewhere are never deleted. */
static int remove_vm_dir(struct vm *vm, bool keep_disks)
{
    DIR *d = opendir(vm->dir);
    if (!d)
        return errno == ENOENT ? 0 : -1;
    struct dirent *e;
    int rc = 0;
    bool kept = false;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *p = xasprintf("%s/%s", vm->dir, e->d_name);
        if (keep_disks && is_disk_path(vm, p))
            kept = true;
        else if (remove_tree(p) < 0)
            rc = -1;
        free(p);
    }
    closedir(d);
    /* A VM whose files were moved (--config-to) is a link to its directory. */
    char *real = realpath(vm->dir, NULL);
    struct stat st;
    if (!kept && lstat(vm->dir, &st) == 0 && S_ISLNK(st.st_mode)) {
        if (unlink(vm->dir) < 0 || (real && rmdir(real) < 0))
            rc = -1;
    } else if (!kept && rmdir(vm->dir) < 0)
        rc = -1;
    free(real);
    return rc;
}

int vm_delete(struct vm *vm, bool keep_disks, json_t **err)
{
    struct agent *a = vm->agent;
    if (remove_vm_dir(vm, keep_disks) < 0) {
        *err = proto_error(ERR_INTERNAL, NULL, "cannot remove %s completely: %s", vm->dir, strerror(errno));
        return -1;
    }
    journal_event(a->journal, vm->name, "vm.deleted", NULL);
    for (struct vm **p = &a->vms; *p; p = &(*p)->next)
        if (*p == vm) {
            *p = vm->next;
            break;
        }
    vm_free(vm);
    return 0;
}

/* ---- guest channel ---------------------------------------------------- */

struct guest_req {
    struct guest_req *next;
    struct vm *vm;
    char *line;
    char token[32];            /* lines before "pong TOKEN" are stale replies */
    bool synced;
    int timeout_ms;
    vm_done_fn done;
    void *done_arg;
    struct event *timer;
};

static void guest_next(struct vm *vm);

static void guest_done(struct vm *vm, json_t *result, json_t *err)
{
    struct guest_req *g = vm->guest_queue;
    vm->guest_queue = g->next;
    if (vm->guest_bev) {
        bufferevent_free(vm->guest_bev);
        vm->guest_bev = NULL;
    }
    if (g->timer)
        event_free(g->timer);
    g->done(g->done_arg, result, err);
    free(g->line);
    free(g);
    guest_next(vm);
}

static void guest_cancel_all(struct vm *vm, const char *why)
{
    while (vm->guest_queue)
        guest_done(vm, NULL, proto_error(ERR_UNAVAILABLE, NULL, "guest channel: %s", why));
}

/* The guest may still hold a reply meant for a client that went away: a
 * "ping TOKEN" goes first, and lines up to its "pong TOKEN" are dropped. */
static void on_guest_read(struct bufferevent *bev, void *arg)
{
    struct vm *vm = arg;
    size_t n;
    char *line;
    while (vm->guest_queue && (line = evbuffer_readln(bufferevent_get_input(bev), &n, EVBUFFER_EOL_CRLF))) {
        struct guest_req *g = vm->guest_queue;
        if (!g->synced) {
            char expect[48];
            snprintf(expect, sizeof expect, "pong %s", g->token);
            g->synced = !strcmp(line, expect);
            free(line);
            continue;
        }
        guest_done(vm, json_pack("{s:s}", "reply", line), NULL);
        free(line);
        return;
    }
}

static void on_guest_event(struct bufferevent *bev, short what, void *arg)
{
    struct vm *vm = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        guest_done(vm, NULL, proto_error(ERR_UNAVAILABLE, "is the guest program running? see `vmove vm console`",
                                         "guest channel of %s closed before a reply", vm->name));
}

static void on_guest_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct vm *vm = arg;
    guest_done(vm, NULL, proto_error(ERR_TIMEOUT, "is the guest program running? see `vmove vm console`",
                                     "no reply from the guest of %s within %d ms", vm->name,
                                     vm->guest_queue->timeout_ms));
}

static void guest_next(struct vm *vm)
{
    struct guest_req *g = vm->guest_queue;
    if (!g || vm->guest_bev)
        return;
    char *path = qemu_guest_path(vm->dir);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    free(path);
    vm->guest_bev = bufferevent_socket_new(vm->agent->base, -1, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(vm->guest_bev, on_guest_read, NULL, on_guest_event, vm);
    bufferevent_enable(vm->guest_bev, EV_READ | EV_WRITE);
    g->timer = evtimer_new(vm->agent->base, on_guest_timeout, vm);
    struct timeval tv = {g->timeout_ms / 1000, (g->timeout_ms % 1000) * 1000};
    evtimer_add(g->timer, &tv);
    if (bufferevent_socket_connect(vm->guest_bev, (struct sockaddr *)&sun, sizeof sun) < 0) {
        guest_done(vm, NULL, proto_error(ERR_UNAVAILABLE, NULL, "cannot connect to the guest channel of %s",
                                         vm->name));
        return;
    }
    snprintf(g->token, sizeof g->token, "%llx", (unsigned long long)(now_ms() ^ (uintptr_t)g));
    char *sync = xasprintf("ping %s\n%s\n", g->token, g->line);
    bufferevent_write(vm->guest_bev, sync, strlen(sync));
    free(sync);
}

void vm_guest_command(struct vm *vm, const char *line, int timeout_ms, vm_done_fn done, void *arg)
{
    struct guest_req *g = xcalloc(1, sizeof *g);
    g->vm = vm;
    g->line = xstrdup(line);
    g->timeout_ms = timeout_ms;
    g->done = done;
    g->done_arg = arg;
    struct guest_req **p = &vm->guest_queue;
    while (*p)
        p = &(*p)->next;
    *p = g;
    guest_next(vm);
}

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
        finish_job_err(vm, proto_error(ERR_CANCELLED, NULL, "stop of %s cancelled; it keeps running",
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
