/* The source side of a migration: hooks: the source QEMU and the peer connection. */
#include "migrate/src.h"

#include <string.h>

#include "common/log.h"
#include "common/proto.h"
#include "vm/vm.h"

/* ---- hooks: the source QEMU and the peer connection ------------------- */

/* QEMU's MIGRATION event ends the transfer at once: waiting for the next
 * poll would add up to POLL_MS to the time the guest is paused. */
void migrate_src_on_src_event(void *arg, const char *name, json_t *data)
{
    struct migration *m = arg;
    const char *st = json_string_value(json_object_get(data, "status"));
    if (!strcmp(name, "MIGRATION") && st && (m->phase == PH_POSTCOPY || m->phase == PH_POSTCOPY_PAUSED)) {
        qmon_query_migrate(migrate_src_mon(m), &m->owner, 10000, migrate_src_on_postcopy_poll, m);
        return;
    }
    if (strcmp(name, "MIGRATION") || !st || m->phase != PH_TRANSFER)
        return;
    if (!strcmp(st, "completed") || !strcmp(st, "failed") || !strcmp(st, "cancelled"))
        qmon_query_migrate(migrate_src_mon(m), &m->owner, 10000, migrate_src_on_poll, m);
}

void migrate_src_on_src_gone(void *arg, json_t *exit_info)
{
    struct migration *m = arg;
    struct vm *vm = m->vm;
    const char *desc = json_string_value(json_object_get(exit_info, "description"));
    if ((m->postcopy || m->postcopy_starting) && !m->transfer_done) {
        /* It held the pages the destination still lacks. */
        char why[512];
        snprintf(why, sizeof why, "the source QEMU exited during post-copy (%s)", desc ? desc : "?");
        m->vm = NULL;
        vm_set_migration(vm, NULL);
        vm_set_state(vm, VM_CRASHED, "source QEMU exited during post-copy");
        migrate_src_postcopy_lost(m, why);
        return;
    }
    if (m->transfer_done) {
        /* QEMU died after sending everything: the destination holds the
         * only copy of the guest now, so it must run it. */
        log_warn("%s: source QEMU exited during switch-over (%s); asking %s to finish", m->name,
                 desc ? desc : "?", migrate_src_dest(m));
        peer_close(m->peer);
        m->peer = peer_connect(m->agent, m->peer_name, m->peer_addr, NULL, NULL);
        migrate_src_mp(m, "migrate.finish", json_pack("{s:s}", "name", m->name), FINISH_TIMEOUT_MS, migrate_src_on_finished);
        return;
    }
    vm_set_migration(vm, NULL);
    vm_set_state(vm, VM_CRASHED, "source QEMU exited during migration");
    m->vm = NULL;
    /* This is what happened, whatever failure was being rolled back. */
    json_decref(m->failure);
    m->failure = proto_error(ERR_QEMU, "`vmove vm show` has the log tail", "the source QEMU exited during the migration (%s)",
                             desc ? desc : "?");
    m->restart_source = true;
    migrate_src_mp(m, "migrate.resolve", json_pack("{s:s}", "name", m->name), 10000, migrate_src_on_resolved_rollback);
}

void migrate_src_on_peer_closed(void *arg, const char *reason)
{
    struct migration *m = arg;
    if (m->phase == PH_TRANSFER)
        migrate_src_fail(m, proto_error(ERR_UNAVAILABLE, "check that vmoved runs on the destination",
                                        "lost contact with %s during the transfer: %s", migrate_src_dest(m), reason));
}
