/* The source side of a migration: switch-over. */
#include "migrate/src.h"
#include "migrate/wire.h"

#include <string.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "vm/vm.h"

/* ---- switchover ------------------------------------------------------- */

void migrate_src_on_resolved(void *arg, json_t *result, json_t *error)
{
    struct migration *m = arg;
    struct wire_resolve_reply rep;
    json_t *bad = NULL;
    if (wire_resolve_reply_from_json(result, &rep, &bad) < 0) {
        json_decref(bad);
        log_warn("%s: cannot reach %s to learn whether it runs the VM; the VM stays paused here; retrying",
                 m->name, migrate_src_dest(m));
        migrate_src_arm_timer(m, RESOLVE_RETRY_MS);
        return;
    }
    if (rep.state == WIRE_RESOLVE_COMMITTED) {
        migrate_src_confirm(m);
        return;
    }
    if (m->postcopy) {
        /* Never resumed here after post-copy: our memory is stale. */
        migrate_src_postcopy_lost(m, "the destination no longer has the VM it ran in post-copy");
        return;
    }
    /* The destination has aborted: run the guest here again. */
    m->transfer_done = false;
    if (!m->failure)
        m->failure = proto_error(ERR_UNAVAILABLE, NULL, "the destination %s did not take over the VM; it runs on %s again",
                                 migrate_src_dest(m), m->agent->name);
    m->phase = PH_ROLLBACK;
    qmon_cont(migrate_src_mon(m), &m->owner, 10000, migrate_src_on_resume, m);
}

void migrate_src_resolve_ambiguous(struct migration *m)
{
    migrate_src_set_phase(m, PH_RESOLVE);
    peer_close(m->peer);
    m->peer = peer_connect(m->agent, m->peer_name, m->peer_addr, NULL, NULL);
    migrate_src_mp(m, "migrate.resolve", json_pack("{s:s}", "name", m->name), 10000, migrate_src_on_resolved);
}

void migrate_src_on_finished(void *arg, json_t *result, json_t *error)
{
    struct migration *m = arg;
    if (!error) {
        m->tl.finish_answered = now_ms();
        json_t *bad = NULL;
        if (!m->tuning.quick && wire_finish_reply_from_json(result, &m->tl.dst, &bad) < 0) {
            /* Only the timeline would miss it: the destination runs the VM. */
            log_warn("%s: %s's answer to finish: %s", m->name, migrate_src_dest(m),
                     json_string_value(json_object_get(bad, "message")));
            m->tl.dst.has_timeline = false;
        }
        json_decref(bad);
        if (m->tuning.quick && m->stats)
            json_object_set_new(m->stats, "pause_ms", json_integer((json_int_t)(now_ms() - m->t_pause)));
        migrate_src_confirm(m);
        return;
    }
    const char *code = json_string_value(json_object_get(error, "code"));
    log_warn("%s: %s answered finish with %s: %s", m->name, migrate_src_dest(m), code ? code : "?",
             json_string_value(json_object_get(error, "message")));
    if (m->postcopy || (code && (!strcmp(code, ERR_UNAVAILABLE) || !strcmp(code, ERR_TIMEOUT)))) {
        /* We do not know whether the destination committed: ask until it answers. */
        migrate_src_resolve_ambiguous(m);
        return;
    }
    m->failure = json_deep_copy(error);
    m->transfer_done = false;
    m->phase = PH_ROLLBACK;
    if (!qemu_pid_alive(m->vm)) {
        vm_set_migration(m->vm, NULL);
        vm_set_state(m->vm, VM_CRASHED, "QEMU exited during the switch-over and the destination refused to finish");
        migrate_src_end_failed(m);
        return;
    }
    qmon_cont(migrate_src_mon(m), &m->owner, 10000, migrate_src_on_resume, m);
}

void migrate_src_switchover(struct migration *m, const struct qmon_migrate_stats *s)
{
    m->transfer_done = true;
    /* The pause is QEMU's own figure counted back from its completion: the
     * STOP event reaches vmoved as late as the loop gets to it, which
     * under load was 19 ms after QEMU stopped the guest. */
    m->tl.completed = now_ms();
    uint64_t down = s->downtime > 0 && (uint64_t)s->downtime < m->tl.completed ? (uint64_t)s->downtime : 0;
    m->tl.stop = m->tl.completed - down;
    m->tl.stop_unix = wall_ms() - down;
    m->stats = json_pack("{s:I, s:I, s:I, s:I, s:i}",
                         "qemu_downtime_ms", (json_int_t)s->downtime,
                         "qemu_total_ms", (json_int_t)s->total_time,
                         "bytes_sent", (json_int_t)s->ram.transferred,
                         "passes", (json_int_t)s->ram.dirty_sync_count,
                         "downtime_limit_ms", m->cur_downtime_ms);
    json_object_set_new(m->stats, "tuning", tuning_to_json(&m->tuning));
    if (m->mirrors_started)   /* every mirror is ready now: the copy is over */
        json_object_set_new(m->stats, "disk_copy", migrate_src_mirror_summary(m));
    log_info("%s: transfer to %s completed (QEMU downtime so far %lld ms); switching over", m->name, migrate_src_dest(m),
             (long long)s->downtime);
    /* QEMU >= 9.0 fills in downtime and total-time by the time it reports
     * "completed" (7.2 did so a moment later, and vmove read them again). */
    migrate_src_set_phase(m, PH_SWITCHOVER);
    if (m->mirrors_started) {
        migrate_src_end_mirrors(m, false);
        return;
    }
    migrate_src_send_finish(m);
}

void migrate_src_send_finish(struct migration *m)
{
    if (m->tuning.quick)
        migrate_src_mp(m, "migrate.load", json_pack("{s:s, s:s}", "name", m->name, "path", m->state_path),
                  300000, migrate_src_on_finished);
    else {
        m->tl.finish_sent = now_ms();
        migrate_src_mp(m, "migrate.finish", json_pack("{s:s}", "name", m->name), FINISH_TIMEOUT_MS, migrate_src_on_finished);
    }
}

/* ---- the timeline ------------------------------------------------------ */

struct tl_step {
    const char *event, *host;
    long long at_ms;
};

static void add_step(struct tl_step *steps, int *n, const char *event, const char *host, long long at_ms)
{
    int i = (*n)++;
    /* Kept in time order: the destination may have loaded before it was asked to finish. */
    for (; i > 0 && steps[i - 1].at_ms > at_ms; i--)
        steps[i] = steps[i - 1];
    steps[i] = (struct tl_step){event, host, at_ms};
}

json_t *migrate_src_timeline_json(const struct migration *m)
{
    const struct wire_finish_reply *d = &m->tl.dst;
    if (m->tuning.quick || m->postcopy || !m->tl.completed || !m->tl.finish_answered || !d->has_timeline)
        return NULL;
    /* The destination's steps count from its receipt of finish; that is one
     * way after we sent it, taken as half of the round trip that was not
     * the destination's own work, so the hosts' clocks need not agree. */
    long long rtt = (long long)(m->tl.finish_answered - m->tl.finish_sent);
    long long one_way = rtt > d->answered_ms ? (rtt - d->answered_ms) / 2 : 0;
    long long rx = (long long)(m->tl.finish_sent - m->tl.stop) + one_way;
    const char *src = m->agent->name, *dst = migrate_src_dest(m);
    struct tl_step steps[9];
    int n = 0;
    add_step(steps, &n, "paused", src, 0);
    add_step(steps, &n, "sent", src, (long long)(m->tl.completed - m->tl.stop));
    add_step(steps, &n, "finish-sent", src, (long long)(m->tl.finish_sent - m->tl.stop));
    add_step(steps, &n, "loaded", dst, rx + d->loaded_ms);
    add_step(steps, &n, "committed", dst, rx + d->committed_ms);
    add_step(steps, &n, "resumed", dst, rx + d->resumed_ms);
    add_step(steps, &n, "announced", dst, rx + d->announced_ms);
    add_step(steps, &n, "finish-answered", src, (long long)(m->tl.finish_answered - m->tl.stop));
    json_t *arr = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:s, s:I}", "event", steps[i].event, "host", steps[i].host,
                                             "at_ms", (json_int_t)steps[i].at_ms));
    return json_pack("{s:I, s:I, s:o}", "paused_unix_ms", (json_int_t)m->tl.stop_unix, "one_way_ms",
                     (json_int_t)one_way, "steps", arr);
}
