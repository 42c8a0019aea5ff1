/* Destination: recovery after a restart of vmoved.  A committed incoming VM
 * whose QEMU survived is resumed; an uncommitted one is killed (its source
 * has rolled back or will, when it asks to resolve). */
#include "migrate/dst.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/journal.h"
#include "vm/vm.h"

static void on_recover_cont(void *arg, const qmp_error_t *err)
{
    struct vm *vm = arg;
    if (err) {
        log_error("vm %s: could not resume the committed incoming VM: %s", vm->name, err->desc);
        return;
    }
    vm->started_ms = wall_ms();
    vm_set_migration(vm, NULL);
    vm_set_state(vm, VM_RUNNING, "committed incoming migration resumed after restart");
}

static void recover_tick(evutil_socket_t fd, short what, void *arg);

struct recover_wait {
    struct agent *agent;
    char *name;
    struct event *ev;
    int tries;
};

static void recover_tick(evutil_socket_t fd, short what, void *arg)
{
    struct recover_wait *w = arg;
    struct vm *vm = vm_find(w->agent, w->name);
    if (vm && vm->qmp && qmp_is_ready(vm->qmp)) {
        /* No owner: as before, the VM outlives its monitor's replies. */
        qmon_cont(vm->qmp, NULL, 10000, on_recover_cont, vm);
    } else if (vm && ++w->tries < 100) {
        struct timeval tv = {0, 100000};
        evtimer_add(w->ev, &tv);
        return;
    }
    event_free(w->ev);
    free(w->name);
    free(w);
}

void incoming_recover(struct agent *a)
{
    VM_FOREACH_SAFE(a, vm, next) {
        const char *role = json_string_value(json_object_get(vm->migration, "role"));
        if (!role || strcmp(role, "incoming"))
            continue;
        bool alive = vm->qemu_pid > 0 && qemu_pid_alive(vm);
        if (migrate_dst_committed(vm) && alive) {
            log_warn("vm %s: incoming migration was committed before the restart: resuming it", vm->name);
            struct recover_wait *w = xcalloc(1, sizeof *w);
            w->agent = a;
            w->name = xstrdup(vm->name);
            w->ev = evtimer_new(a->base, recover_tick, w);
            struct timeval tv = {0, 0};
            evtimer_add(w->ev, &tv);
        } else if (migrate_dst_committed(vm)) {
            vm_set_migration(vm, NULL);
            vm_set_state(vm, VM_CRASHED, "QEMU exited after the incoming migration was committed");
        } else {
            log_warn("vm %s: uncommitted incoming migration found after restart: aborting it", vm->name);
            json_t *d = json_pack("{s:s}", "why", "vmoved restarted during the incoming migration");
            journal_event(a->journal, vm->name, "migration.incoming.aborted", d);
            json_decref(d);
            json_t *created = json_incref(json_object_get(vm->migration, "created_disks"));
            char *vm_dir = xstrdup(vm->dir);
            vm_kill_qemu(vm);
            vm_forget(vm);
            migrate_dst_remove_recorded_disks(a, vm_dir, created);
            free(vm_dir);
            json_decref(created);
        }
    }
}
