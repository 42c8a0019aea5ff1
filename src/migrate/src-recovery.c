/* The source side of a migration: recovery after a restart. */
#include "migrate/src.h"

#include <string.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "core/journal.h"
#include "vm/vm.h"

/* ---- recovery after a restart ----------------------------------------- */

static void on_recover_status(void *arg, const struct qmon_migrate_stats *s, const qmp_error_t *err);

void migrate_src_recover_wait_qmp(struct migration *m)
{
    if (m->vm->qmp && qmp_is_ready(m->vm->qmp)) {
        qmon_query_migrate(m->vm->qmp, &m->owner, 10000, on_recover_status, m);
        return;
    }
    migrate_src_arm_timer(m, 100);
}

static void on_recover_status(void *arg, const struct qmon_migrate_stats *s, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (json_is_true(json_object_get(m->vm->migration, "postcopy")) && !(s && qmon_mig_status_active(s->status))) {
        /* Switched to post-copy (or about to) before the restart: the
         * source guest never runs again.  Follow the post-copy to its end. */
        m->recovering = false;
        m->postcopy = true;
        m->t_postcopy = now_ms();
        m->last_progress_ms = now_ms();
        m->failure = NULL;
        log_warn("%s: the migration to %s was in post-copy before the restart: following it", m->name,
                 migrate_src_dest(m));
        if (s && qmon_mig_status_postcopy(s->status)) {
            migrate_src_set_phase(m, PH_POSTCOPY);
            migrate_src_arm_timer(m, 0);
        } else {
            m->transfer_done = s && s->status == QMON_MIG_COMPLETED;
            migrate_src_resolve_ambiguous(m);   /* committed: confirm; otherwise the VM is lost */
        }
        return;
    }
    if (s && qmon_mig_status_active(s->status)) {
        /* The old vmoved left QEMU migrating: stop it, then decide.  Still
         * pre-copy, so a post-copy marker was never acted on: withdrawn. */
        if (json_object_get(m->vm->migration, "postcopy")) {
            json_t *rec = json_deep_copy(m->vm->migration);
            json_object_del(rec, "postcopy");
            vm_set_migration(m->vm, rec);
        }
        qmon_migrate_cancel(migrate_src_mon(m), &m->owner, 10000, NULL, NULL);
        migrate_src_arm_timer(m, 200);      /* recover_wait_qmp asks again */
        return;
    }
    m->recovering = false;
    m->failure = proto_error(ERR_INTERNAL, "check `vmove vm list` on both hosts",
                             "the migration was interrupted by a vmoved restart on %s", m->agent->name);
    if (s && s->status == QMON_MIG_COMPLETED) {
        m->transfer_done = true;
        migrate_src_resolve_ambiguous(m);
    } else
        migrate_src_rollback(m);
}

void migrate_recover(struct agent *a)
{
    VM_FOREACH(a, vm) {
        const char *role = json_string_value(json_object_get(vm->migration, "role"));
        if (!role || strcmp(role, "source"))
            continue;
        json_int_t id = json_integer_value(json_object_get(vm->migration, "job"));
        struct job *job = job_adopt(a, &migrate_src_job_ops, id);
        if (!job)
            job = job_create(a, &migrate_src_job_ops, vm->name, NULL);
        const char *peer = json_string_value(json_object_get(vm->migration, "peer"));
        const char *addr = json_string_value(json_object_get(vm->migration, "addr"));
        struct migration *m = migrate_src_migration_new(a, vm, job, peer, addr ? addr : "");
        log_warn("vm %s: resolving a migration to %s interrupted by a restart", vm->name, migrate_src_dest(m));
        struct vm_hooks h = {NULL, migrate_src_on_src_gone, m};
        vm_set_hooks(vm, &h);
        if (!qemu_pid_alive(vm)) {
            vm_set_migration(vm, NULL);
            vm_set_state(vm, VM_CRASHED, "QEMU exited while vmoved was down, during a migration");
            m->vm = NULL;
            m->failure = proto_error(ERR_QEMU, NULL, "the source QEMU exited while vmoved was down");
            m->peer = peer_connect(a, m->peer_name, m->peer_addr, NULL, NULL);
            migrate_src_mp(m, "migrate.resolve", json_pack("{s:s}", "name", m->name), 10000, migrate_src_on_resolved_rollback);
            continue;
        }
        m->peer = peer_connect(a, m->peer_name, m->peer_addr, NULL, NULL);
        m->recovering = true;
        migrate_src_arm_timer(m, 0);
    }
}

/* Queued migrations survive a restart: they wait again, in their order. */
void migrate_recover_queued(struct agent *a)
{
    static const char *const queued[] = {"queued", NULL};
    json_t *recs = journal_jobs(a->journal, queued, 100000);
    size_t i;
    json_t *rec;
    json_array_foreach(recs, i, rec) {
        const char *kind = json_string_value(json_object_get(rec, "kind"));
        if (!kind || strcmp(kind, "migrate"))
            continue;
        json_int_t id = json_integer_value(json_object_get(rec, "id"));
        const char *to = json_string_value(json_object_get(json_object_get(rec, "params"), "to"));
        struct job *job = job_adopt(a, &migrate_src_job_ops, id);
        if (!job)
            continue;
        struct vm *vm = job->vm ? vm_find(a, job->vm) : NULL;
        struct migrate_tuning t;
        char err[256];
        if (!vm || !to || tuning_from_json(json_object_get(job->params, "tuning"), &t, err, sizeof err) < 0) {
            job_fail(job, proto_error(ERR_STATE, NULL, "queued migration could not be resumed after a restart"));
            continue;
        }
        if (json_is_true(json_object_get(job->params, "user_signed"))) {
            /* Its user's move token was in memory only: resuming it as this
             * host's own move would run it with other rights. */
            job_fail(job, proto_error(ERR_STATE, "move it again", "the queued move of %s was for %s, whose signed "
                                      "move token did not survive vmoved's restart", vm->name,
                                      json_string_value(json_object_get(job->params, "user"))));
            continue;
        }
        /* As the move was resolved: a peer entry, a cluster member, or an
         * address.  The members are not read yet this early after a restart,
         * so a queued move to a member fails here and says so. */
        const char *peer_name = NULL, *peer_addr = NULL;
        json_t *unknown = migrate_src_resolve_target(a, to, &peer_name, &peer_addr);
        if (unknown) {
            job_fail(job, unknown);
            continue;
        }
        log_info("job %lld: queued migration of %s to %s resumes its place in the queue", (long long)id,
                 vm->name, to);
        migrate_src_enqueue_migration(a, job, vm, peer_name, peer_addr, &t);
    }
    json_decref(recs);
}
