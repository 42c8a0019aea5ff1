/* The source side of a migration: ending and rollback. */
#include "migrate/src.h"
#include "migrate/wire.h"

#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "core/journal.h"
#include "vm/vm.h"

/* ---- ending ----------------------------------------------------------- */

void migrate_src_end_failed(struct migration *m)
{
    struct vm *vm = m->vm;
    if (vm) {
        vm_set_hooks(vm, NULL);
        vm_set_migration(vm, NULL);
        if (vm->state == VM_MIGRATING)
            vm_set_state(vm, VM_RUNNING, "migration did not happen; the VM stays here");
    }
    json_t *err = m->failure ? m->failure : proto_error(ERR_INTERNAL, NULL, "migration failed");
    m->failure = NULL;
    if (!json_is_true(json_object_get(err, "vm_lost")))
        json_object_set_new(err, "vm_host", json_string(m->agent->name));
    json_t *d = json_pack("{s:s, s:O}", "to", migrate_src_dest(m), "error", err);
    journal_event(m->agent->journal, m->name, "migration.failed", d);
    json_decref(d);
    struct job *job = m->job;
    migrate_src_migration_free(m);
    job_fail(job, err);
}

static void end_succeeded(struct migration *m)
{
    json_t *stats = m->stats ? json_incref(m->stats) : json_object();
    json_object_set_new(stats, "total_ms", json_integer((json_int_t)(now_ms() - m->t_start)));
    json_object_set_new(stats, "to", json_string(migrate_src_dest(m)));
    json_object_set_new(stats, "policy_actions", json_incref(m->actions));
    json_t *tl = migrate_src_timeline_json(m);
    if (tl)
        json_object_set_new(stats, "switchover", tl);
    journal_event(m->agent->journal, m->name, "migration.succeeded", stats);
    struct job *job = m->job;
    migrate_src_migration_free(m);
    job_succeed(job, stats);
}

/* The destination has the guest: drop ours. */
static void on_source_gone_after_confirm(void *arg, json_t *exit_info)
{
    struct migration *m = arg;
    struct vm *vm = m->vm;
    m->vm = NULL;
    /* Shared-nothing: the destination has its own copies now. */
    for (size_t i = 0; m->tuning.with_storage[0] && !m->tuning.keep_source && i < vm->cfg.n_disks; i++)
        if (unlink(vm->cfg.disks[i].path) == 0)
            log_info("%s: removed source disk %s", m->name, vm->cfg.disks[i].path);
    vm_forget(vm);
    end_succeeded(m);
}

void migrate_src_confirm(struct migration *m)
{
    migrate_src_set_phase(m, PH_CONFIRM);
    if (!qemu_pid_alive(m->vm)) {
        on_source_gone_after_confirm(m, NULL);
        return;
    }
    struct vm_hooks h = {NULL, on_source_gone_after_confirm, m};
    vm_set_hooks(m->vm, &h);
    m->vm->stop_expected = true;
    if (!m->vm->qmp || qmon_quit(m->vm->qmp, &m->owner, 5000, NULL, NULL) < 0)
        vm_kill_qemu(m->vm);
}

/* Abandons every connection this move opened from the source QEMU: the
 * migration channels and the NBD clients of a shared-nothing move.  On a
 * dead link, TCP would hold them for minutes, and with them the big QEMU
 * lock (a multifd TLS handshake during setup; a drain of NBD writes when a
 * mirror is cancelled), so even QMP stops answering.  yank runs out of band
 * in QEMU's monitor thread and shuts the sockets down.  One instance per
 * command: yank refuses a whole list if one instance is already gone. */
static void yank_links(struct migration *m)
{
    if (!m->vm || !m->vm->qmp)
        return;
    struct qmon_yank_instance mig = {QMON_YANK_MIGRATION, NULL};
    qmon_yank(m->vm->qmp, &m->owner, &mig, 1, 10000, NULL, NULL);
    for (size_t i = 0; m->mirrors_started && i < m->vm->cfg.n_disks; i++) {
        char *node = migrate_src_mirror_node(m, m->vm->cfg.disks[i].id, "nbd");
        struct qmon_yank_instance nbd = {QMON_YANK_BLOCK_NODE, node};
        qmon_yank(m->vm->qmp, &m->owner, &nbd, 1, 10000, NULL, NULL);
        free(node);
    }
}

/* ---- rollback: the guest stays here ----------------------------------- */

static const struct job_ops restart_ops = {"vm.start", NULL};

/* The source QEMU died before the transfer completed: QEMU 10.0 does this
 * when a destination dies during a multifd TLS transfer (its teardown sends
 * the TLS goodbye while the channel threads still write; see
 * docs/MIGRATION.md).  The destination never ran the guest (it commits only
 * on our migrate.finish, not sent before "completed") and says so, so the
 * shared disks hold the guest's last state: boot it again here rather than
 * leave it down, and say so in the move's error. */
static void restart_source(struct migration *m)
{
    struct vm *vm = vm_find(m->agent, m->name);
    const char *msg = json_string_value(json_object_get(m->failure, "message"));
    if (!vm || vm->state != VM_CRASHED || vm->job) {
        log_warn("%s: not restarting it after its QEMU died: %s", m->name,
                 !vm ? "it is gone" : vm->job ? "it has a job" : "it is no longer crashed");
        return;
    }
    struct job *job = job_create(m->agent, &restart_ops, vm->name, NULL);
    log_warn("%s: its QEMU died during the migration; restarting it here from its disks (job %lld)", m->name,
             (long long)job->id);
    char *text = xasprintf("%s; vmoved restarted it on %s from its disks (job %lld: a cold boot, what was only in "
                           "its memory is lost)", msg ? msg : "the source QEMU exited", m->agent->name,
                           (long long)job->id);
    json_object_set_new(m->failure, "message", json_string(text));
    json_object_set_new(m->failure, "vm_restarted", json_true());
    json_object_set_new(m->failure, "restart_job", json_integer((json_int_t)job->id));
    json_t *d = json_pack("{s:s, s:I}", "reason", text, "job", (json_int_t)job->id);
    journal_event(m->agent->journal, m->name, "migration.source.restarted", d);
    json_decref(d);
    free(text);
    vm_start(vm, job);
}

void migrate_src_on_resolved_rollback(void *arg, json_t *result, json_t *error)
{
    struct migration *m = arg;
    struct wire_resolve_reply rep;
    json_t *bad = NULL;
    bool committed = wire_resolve_reply_from_json(result, &rep, &bad) == 0 && rep.state == WIRE_RESOLVE_COMMITTED;
    json_decref(bad);
    if (committed && m->transfer_done) {
        /* The destination runs it after all: finish the move instead. */
        log_warn("%s: destination %s reports the VM committed; completing the move", m->name, migrate_src_dest(m));
        migrate_src_confirm(m);
        return;
    }
    if (error)
        log_warn("%s: could not reach %s to abort its side (%s); it aborts by itself when our connection closes",
                 m->name, migrate_src_dest(m), json_string_value(json_object_get(error, "message")));
    if (m->restart_source && !committed)
        restart_source(m);
    migrate_src_end_failed(m);
}

void migrate_src_on_resume(void *arg, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (err)
        log_error("%s: resuming the source guest failed: %s", m->name, err->desc);
    migrate_src_mp(m, "migrate.resolve", json_pack("{s:s}", "name", m->name), 10000, migrate_src_on_resolved_rollback);
}

static void on_rollback_status(void *arg, const struct qmon_status *st, const qmp_error_t *err)
{
    struct migration *m = arg;
    bool running = !err && st->running;
    if (!running && m->vm && m->vm->qmp && !m->transfer_done)
        qmon_cont(m->vm->qmp, &m->owner, 10000, migrate_src_on_resume, m);
    else
        migrate_src_on_resume(m, NULL);
}

void migrate_src_rollback(struct migration *m)
{
    migrate_src_set_phase(m, PH_ROLLBACK);
    if (m->mirrors_started) {
        yank_links(m);          /* in-flight NBD writes must not hold the cancel */
        migrate_src_end_mirrors(m, true);   /* fire and forget: the source disks stay in use */
    }
    /* A fresh connection: the old one may be what broke. */
    peer_close(m->peer);
    m->peer = peer_connect(m->agent, m->peer_name, m->peer_addr, NULL, NULL);
    if (m->vm && m->vm->qmp && qmp_is_ready(m->vm->qmp))
        qmon_query_status(m->vm->qmp, &m->owner, 10000, on_rollback_status, m);
    else
        migrate_src_on_resume(m, NULL);
}

void migrate_src_fail(struct migration *m, json_t *error)
{
    if (!m->failure)
        m->failure = error;
    else
        json_decref(error);
    log_warn("%s: migration to %s failing: %s", m->name, migrate_src_dest(m),
             json_string_value(json_object_get(m->failure, "message")));
    if (m->phase == PH_TRANSFER && m->vm && m->vm->qmp) {
        /* Stop QEMU's transfer first; the poll sees "cancelled" and rolls
         * back.  A cancel alone can hang while a channel is blocked on a
         * dead link (multifd threads wait for TCP to give up, for minutes):
         * yanking shuts every channel down at once (see yank_links). */
        m->fail_ms = now_ms();
        yank_links(m);
        qmon_migrate_cancel(m->vm->qmp, &m->owner, 10000, NULL, NULL);
        return;
    }
    if (m->phase != PH_ROLLBACK)
        migrate_src_rollback(m);
}
