/* A VM as the agent sees it: its configuration (vm.json) plus the runtime
 * state of its QEMU process.
 *
 * State machine (runtime.json keeps the durable part across vmoved restarts):
 *
 *   stopped --start--> starting --QMP ready, cont--> running <--pause/resume--> paused
 *   running|paused --stop--> stopping --QEMU exits--> stopped
 *   starting|running|paused --QEMU exits unexpectedly--> crashed --start--> starting
 *   (a directory whose vm.json does not parse is listed as "broken")
 */
#ifndef VMOVE_VM_H
#define VMOVE_VM_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "qemu/qmp.h"
#include "conf/vm_config.h"

struct agent;
struct vm;
struct job;
struct event;

enum vm_state {
    VM_STOPPED, VM_STARTING, VM_RUNNING, VM_PAUSED, VM_STOPPING, VM_CRASHED, VM_BROKEN,
    VM_MIGRATING,   /* source side: QEMU is sending the VM to another host */
    VM_INCOMING,    /* destination side: QEMU waits for, or receives, the VM */
};

/* Hooks through which the migration code follows a VM's QEMU. */
struct vm_hooks {
    void (*on_event)(void *arg, const char *name, json_t *data);
    /* QEMU exited; exit_info describes how (borrowed). */
    void (*on_gone)(void *arg, json_t *exit_info);
    void *arg;
};
/* Result of vm_launch_incoming: error NULL on success (borrowed otherwise). */
typedef void (*vm_launch_fn)(struct vm *vm, json_t *error, void *arg);

struct guest_req;

struct vm {
    struct vm *next;
    struct agent *agent;
    char *name;
    char *dir;
    struct vm_config cfg;
    char *broken_reason;       /* VM_BROKEN: why vm.json could not be used */
    enum vm_state state;
    pid_t qemu_pid, shim_pid;
    qmp_t *qmp;
    bool stop_expected;        /* the next QEMU exit is wanted (stop, guest poweroff) */
    json_t *last_exit;         /* how QEMU last ended: description, status, log tails */
    uint64_t started_ms;
    struct job *job;           /* lifecycle job in progress (start/stop) */
    struct event *timer;       /* stop timeout / exit-record wait */
    int exit_polls;
    struct vm_hooks hooks;
    vm_launch_fn launch_cb;     /* incoming launch in progress */
    void *launch_arg;
    json_t *migration;          /* persisted in runtime.json while a migration is in flight */
    json_t *storage_move;       /* persisted in runtime.json while a storage move is in flight */
    struct guest_req *guest_queue;
    struct bufferevent *guest_bev;
    int depth;                  /* callbacks into hooks in progress (see vm_free) */
    bool doomed;                /* freed while depth > 0: free when it drops to 0 */
};

const char *vm_state_name(enum vm_state s);
/* Load every VM directory under STATE/vms and re-attach to running QEMUs. */
void vm_inventory_load(struct agent *a);
void vm_inventory_free(struct agent *a);     /* leaves QEMUs running */
struct vm *vm_find(struct agent *a, const char *name);
/* The inventory in name order.  agent->vms belongs to src/vm/: walk it with
 * these, e.g. VM_FOREACH(a, vm) { ... }.  VM_FOREACH_SAFE allows the body
 * to delete or forget vm. */
struct vm *vm_first(struct agent *a);
struct vm *vm_next(const struct vm *vm);
#define VM_FOREACH(a, vm) for (struct vm *vm = vm_first(a); vm; vm = vm_next(vm))
#define VM_FOREACH_SAFE(a, vm, tmp) \
    for (struct vm *vm = vm_first(a), *tmp = vm ? vm_next(vm) : NULL; vm; \
         vm = tmp, tmp = vm ? vm_next(vm) : NULL)
size_t vm_count(struct agent *a);
/* The VM with a disk at exactly this path, or NULL. */
struct vm *vm_find_by_disk_path(struct agent *a, const char *path);
/* The VM one of whose disks is the file PATH names, whatever the spelling
 * (device and inode), or NULL. */
struct vm *vm_find_by_disk_file(struct agent *a, const char *path);

/* cfg is moved into the new VM on success.  Writes vm.json. */
struct vm *vm_define(struct agent *a, struct vm_config *cfg, const char *dir, json_t **err);
json_t *vm_to_json(const struct vm *vm, bool detail);

/* Preflight checks (kernel, disks, switches) first: a problem fails the job. */
void vm_start(struct vm *vm, struct job *job);
void vm_stop(struct vm *vm, struct job *job, bool force, int timeout_s);
/* Completion of an asynchronous VM operation: exactly one of result or
 * error is set, and the callee owns it. */
typedef void (*vm_done_fn)(void *arg, json_t *result, json_t *error);
/* Pause / resume the vCPUs; done gets the VM's record.  An error returned
 * here means done is never called. */
json_t *vm_pause(struct vm *vm, vm_done_fn done, void *arg);
json_t *vm_resume(struct vm *vm, vm_done_fn done, void *arg);
int vm_delete(struct vm *vm, bool keep_disks, json_t **err);
/* One line to the guest program's control channel; replies {"reply": line}. */
void vm_guest_command(struct vm *vm, const char *line, int timeout_ms, vm_done_fn done, void *arg);
/* Start QEMU with -incoming defer (paused, wired to its switches); cb runs
 * once QMP is ready or the launch failed.  State becomes VM_INCOMING. */
void vm_launch_incoming(struct vm *vm, vm_launch_fn cb, void *arg);
void vm_set_hooks(struct vm *vm, const struct vm_hooks *hooks);
void vm_set_state(struct vm *vm, enum vm_state st, const char *why);
/* Replace the persisted migration record (NULL clears it); saved at once. */
void vm_set_migration(struct vm *vm, json_t *record);
/* The same for the storage-move record (src/storage/storage_move.c). */
void vm_set_storage_move(struct vm *vm, json_t *record);
/* Is the VM's QEMU process alive (and really its own)? */
bool qemu_pid_alive(const struct vm *vm);
/* Kill QEMU (SIGKILL) if it is ours and alive. */
void vm_kill_qemu(struct vm *vm);
/* Write vm->cfg to the VM's vm.json (after a change of it in place). */
int vm_save_config(struct vm *vm, char *err, size_t errlen);
/* Remove the VM from the inventory and its directory, keeping disk files. */
void vm_forget(struct vm *vm);
/* Create an in-memory VM from a config, writing vm.json into STATE/vms/NAME. */
struct vm *vm_define_in_state(struct agent *a, struct vm_config *cfg, json_t **err);

/* Cancel the start or graceful stop in progress (a forced stop cannot be undone). */
void vm_cancel_job(struct vm *vm);
/* `vm stop` on a crashed VM: it is stopped now. */
void vm_acknowledge_crash(struct vm *vm);
#endif
