/* Destination: migrate.finish.  Once QEMU has loaded everything, record the
 * commitment, then resume the guest here: the point of no return. */
#include "migrate/dst.h"

#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "block/nbd.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "core/journal.h"
#include "vm/vm.h"

/* t - from in ms, clamped to what the reply may carry; 0 for a step not taken. */
static int tl_offset(uint64_t t, uint64_t from)
{
    if (!t)
        return 0;
    long long d = (long long)t - (long long)from;
    return d < -WIRE_TIMELINE_MAX_MS ? -WIRE_TIMELINE_MAX_MS : d > WIRE_TIMELINE_MAX_MS ? WIRE_TIMELINE_MAX_MS : (int)d;
}

static void finish_done(struct incoming *in)
{
    struct agent *a = in->agent;
    struct vm *vm = in->vm;
    /* The guest's uptime carries on: it did not boot here. */
    vm->started_ms = in->booted_ms ? in->booted_ms : wall_ms();
    vm_set_migration(vm, NULL);
    vm_set_state(vm, VM_RUNNING, "incoming migration finished");
    json_t *d = json_pack("{s:s}", "source", in->source);
    journal_event(a->journal, vm->name, "migration.incoming.finished", d);
    json_decref(d);
    /* Answered after the incoming is gone, as the source may act at once. */
    incoming_done_fn done = in->done;
    void *arg = in->done_arg;
    in->done = NULL;
    struct incoming_timeline tl = in->tl;
    migrate_dst_arrival_end(in, NULL);
    migrate_dst_free(in);
    struct wire_finish_reply rep = {.has_timeline = tl.finish_rx != 0};
    snprintf(rep.host, sizeof rep.host, "%s", a->name);
    if (rep.has_timeline) {
        rep.loaded_ms = tl_offset(tl.loaded, tl.finish_rx);
        rep.committed_ms = tl_offset(tl.committed, tl.finish_rx);
        rep.resumed_ms = tl_offset(tl.resumed, tl.finish_rx);
        rep.announced_ms = tl_offset(tl.announced, tl.finish_rx);
        rep.answered_ms = tl_offset(now_ms(), tl.finish_rx);
    }
    if (done)
        done(arg, wire_finish_reply_to_json(&rep), NULL);
}

static void on_announce(void *arg, const qmp_error_t *err)
{
    struct incoming *in = arg;
    if (err)
        log_warn("announce-self for %s failed: %s", in->name, err->desc);
    in->tl.announced = now_ms();
    finish_done(in);
}

static void on_cont(void *arg, const qmp_error_t *err)
{
    struct incoming *in = arg;
    if (err) {
        /* Committed but cannot run: the VM is lost here; the source still
         * has it paused and resumes it when told so. */
        json_t *rec = json_deep_copy(in->vm->migration);
        json_object_set_new(rec, "committed", json_false());
        vm_set_migration(in->vm, rec);
        migrate_dst_fail(in, "the destination QEMU refused to run the guest: %s", err->desc);
        return;
    }
    in->tl.resumed = now_ms();
    /* Tell the switches where the guest's MACs are now (RARP/GARP). */
    struct qmon_announce ann = {.initial = 1, .max = 200, .rounds = 5, .step = 50};
    qmon_announce_self(migrate_dst_mon(in), &in->owner, &ann, 5000, on_announce, in);
}

static void commit_now(struct incoming *in)
{
    /* The point of no return: recorded before the guest runs here. */
    json_t *rec = json_deep_copy(in->vm->migration);
    json_object_set_new(rec, "committed", json_true());
    vm_set_migration(in->vm, rec);
    in->tl.committed = now_ms();
    if (in->arrival)
        job_set_phase(in->arrival, "committed");
    qmon_cont(migrate_dst_mon(in), &in->owner, 10000, on_cont, in);
}

static void handed_off(void *arg, const char *error)
{
    struct incoming *in = arg;
    in->handoff_pending = false;
    if (error) {
        migrate_dst_abort(in, error);
        return;
    }
    commit_now(in);
}

static void commit_and_resume(struct incoming *in)
{
    if (in->finish_timer) {
        event_free(in->finish_timer);
        in->finish_timer = NULL;
    }
    /* An HA VM of a cluster runs where its owner record says: the record
     * moves here before the guest does. */
    struct agent *a = in->agent;
    if (in->vm->cfg.ha && a->hooks.before_incoming_commit) {
        in->handoff_pending = true;
        a->hooks.before_incoming_commit(a, in->vm, in->source, handed_off, in);
    }
    else
        commit_now(in);
}

static void on_nbd_stopped(void *arg, const qmp_error_t *err)
{
    struct incoming *in = arg;
    if (err) {
        migrate_dst_abort(in, err->desc);
        return;
    }
    commit_and_resume(in);
}

/* Shared-nothing: the source's mirrors have ended; no more writes may
 * arrive over NBD once the guest runs here. */
void migrate_dst_stop_nbd_then_commit(struct incoming *in)
{
    if (in->created_disks)
        block_nbd_stop(migrate_dst_mon(in), &in->owner, 10000, on_nbd_stopped, in);
    else
        commit_and_resume(in);
}

static void on_finish_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct incoming *in = arg;
    if (in->vm && migrate_dst_committed(in->vm)) {
        /* Post-copy: the guest runs here already; never killed for being slow. */
        event_free(in->finish_timer);
        in->finish_timer = NULL;
        in->finish_waiting = false;
        migrate_dst_answer(in, NULL, proto_error(ERR_TIMEOUT, NULL, "the post-copy of %s on host %s is still loading",
                                                 in->name, in->agent->name));
        return;
    }
    migrate_dst_abort(in, "the destination QEMU did not finish loading the VM within 30 s");
}

void migrate_dst_wait_loaded(struct incoming *in, int seconds)
{
    in->finish_waiting = true;
    in->finish_timer = evtimer_new(in->agent->base, on_finish_timeout, in);
    struct timeval tv = {seconds, 0};
    evtimer_add(in->finish_timer, &tv);
}

static void on_finish_status(void *arg, const struct qmon_migrate_stats *s, const qmp_error_t *err)
{
    struct incoming *in = arg;
    /* QEMU leaves the status out when there is no migration ("none"): "unknown" below. */
    const char *st = !err && s->status != QMON_MIG_NONE ? s->status_name : NULL;
    enum qmon_mig_status ms = err ? QMON_MIG_NONE : s->status;
    if (in->loaded || ms == QMON_MIG_COMPLETED) {
        migrate_dst_stop_nbd_then_commit(in);
        return;
    }
    if (ms == QMON_MIG_ACTIVE || ms == QMON_MIG_DEVICE || ms == QMON_MIG_SETUP || qmon_mig_status_postcopy(ms)) {
        /* The source has sent everything; QEMU here is still loading the
         * last of it.  Its MIGRATION event says when it is done. */
        migrate_dst_wait_loaded(in, 30);
        return;
    }
    char why[256];
    snprintf(why, sizeof why, "finish asked, but the incoming migration is %s", err ? err->desc : st ? st : "unknown");
    migrate_dst_abort(in, why);
}

int incoming_finish(struct agent *a, const char *source, const char *vm_name, incoming_done_fn done, void *arg,
                    json_t **err)
{
    struct incoming *in = migrate_dst_find(a, vm_name);
    if (!in || !in->vm || in->done || strcmp(in->source, source)) {
        *err = proto_error(ERR_STATE, NULL, "no incoming migration of %s from %s on host %s", vm_name, source,
                           a->name);
        return -1;
    }
    in->done = done;
    in->done_arg = arg;
    in->tl.finish_rx = now_ms();
    qmon_query_migrate(migrate_dst_mon(in), &in->owner, 10000, on_finish_status, in);
    return 0;
}
