/* The source side of a migration: post-copy, its pauses and recovery, and
 * the loss of the VM when it cannot recover.
 *
 * The switch to post-copy is the commit point of "exactly one host runs the
 * guest": from migrate-start-postcopy on, the destination runs it and the
 * source only serves the pages it still lacks.  So, in this order:
 *  1. runtime.json here records "postcopy": true (fsync'd): a restarted
 *     vmoved never resumes the source guest (src-recovery.c);
 *  2. migrate.postcopy: the destination records it too, and will commit and
 *     run the guest as soon as its QEMU reports postcopy-active;
 *  3. migrate-start-postcopy.
 * A failure before 3 leaves an ordinary pre-copy (the marker is withdrawn).
 * After 3 there is no rollback: the move completes, recovers from a pause,
 * or the VM is lost, and the job says so plainly. */
#include "migrate/src.h"
#include "migrate/wire.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/audit.h"
#include "core/jobs.h"
#include "core/journal.h"
#include "vm/vm.h"

#define PC_STALL_MS 5000         /* post-copy: no bytes for this long with pages left: the link is down */
#define RECOVER_RETRY_MS 2000

static const char *const PAUSED_PHASE = "post-copy paused: migration link down, waiting to recover";

static void set_marker(struct migration *m, bool on)
{
    if (!m->vm || !m->vm->migration)
        return;
    json_t *rec = json_deep_copy(m->vm->migration);
    if (on) {
        json_object_set_new(rec, "postcopy", json_true());
        json_object_set_new(rec, "phase", json_string("postcopy"));
    } else {
        json_object_del(rec, "postcopy");
        json_object_set_new(rec, "phase", json_string(migrate_src_phase_names[m->phase]));
    }
    vm_set_migration(m->vm, rec);   /* written atomically, fsync'd */
}

static void record(struct migration *m, const char *kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void record(struct migration *m, const char *kind, const char *fmt, ...)
{
    char text[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    json_t *d = json_pack("{s:s, s:s}", "to", migrate_src_dest(m), "message", text);
    journal_event(m->agent->journal, m->name, kind, d);
    json_decref(d);
}

/* ---- the loss ----------------------------------------------------------- */

/* The source QEMU of a lost VM ends: its memory is stale (the guest ran on
 * the destination) and the destination wrote the disks, so it must never
 * run the guest again; `vm start` boots the VM from its disks. */
static void on_lost_source_gone(void *arg, json_t *exit_info)
{
    struct vm *vm = arg;
    vm_set_state(vm, VM_CRASHED, "lost during post-copy: the source copy was discarded (`vm start` boots it from its disks)");
}

static void on_abandoned(void *arg, json_t *result, json_t *error)
{
    if (error)
        log_warn("could not tell the destination to drop its half of a lost VM: %s",
                 json_string_value(json_object_get(error, "message")));
    peer_close(arg);
}

void migrate_src_postcopy_lost(struct migration *m, const char *why)
{
    char msg[1024];
    snprintf(msg, sizeof msg, "VM %s is lost: %s. It was running on %s in post-copy, with part of its memory "
                              "still on %s; neither host runs it now", m->name, why, migrate_src_dest(m), m->agent->name);
    log_error("%s: %s", m->name, msg);
    record(m, "migration.postcopy.lost", "%s", msg);
    const char *who = json_string_value(json_object_get(m->job->params, "user"));
    audit_record(m->agent, who ? who : "?", "migrate.postcopy.lost", m->name, migrate_src_dest(m), false, msg);
    /* The destination's half, if it still exists, cannot run on its own
     * either: told over a connection of its own, which outlives the job. */
    struct peer_conn *pc = peer_connect(m->agent, m->peer_name, m->peer_addr, NULL, NULL);
    peer_call(pc, "migrate.recover", json_pack("{s:s, s:b, s:s}", "name", m->name, "abandon", true, "why", msg), 10000,
              on_abandoned, pc);
    struct vm *vm = m->vm;
    m->vm = NULL;
    if (vm) {
        vm_set_migration(vm, NULL);
        vm_set_state(vm, VM_CRASHED, "lost during post-copy");
        if (qemu_pid_alive(vm)) {
            struct vm_hooks h = {NULL, on_lost_source_gone, vm};
            vm_set_hooks(vm, &h);
            vm_kill_qemu(vm);
        } else
            vm_set_hooks(vm, NULL);
    }
    json_decref(m->failure);
    m->failure = proto_error(ERR_UNAVAILABLE, "`vmove vm start` boots it again from its disks (its memory is gone)",
                             "%s", msg);
    json_object_set_new(m->failure, "vm_lost", json_true());
    migrate_src_end_failed(m);
}

/* ---- entering post-copy ------------------------------------------------- */

static void give_up_switch(struct migration *m, const char *why)
{
    m->postcopy_starting = false;
    m->tuning.postcopy = false;   /* no second try: pre-copy goes on as without post-copy */
    set_marker(m, false);
    char *note = xasprintf("did not switch to post-copy (%s); pre-copy goes on", why);
    log_warn("%s: %s", m->name, note);
    json_array_append_new(m->actions, json_string(note));
    free(note);
}

static void on_postcopy_started(void *arg, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (err) {
        give_up_switch(m, err->desc);
        return;
    }
    m->postcopy_starting = false;
    m->postcopy = true;
    m->t_postcopy = now_ms();
    if (m->phase != PH_TRANSFER)
        return;   /* the poll saw it complete already: switching over */
    m->last_progress_ms = now_ms();
    char msg[512];
    snprintf(msg, sizeof msg, "entering post-copy: from now on the VM runs on %s; if %s or the link dies before "
                              "the end, the VM is lost", migrate_src_dest(m), migrate_src_dest(m));
    log_warn("%s: %s", m->name, msg);
    json_array_append_new(m->actions, json_string(msg));
    record(m, "migration.postcopy", "%s", msg);
    migrate_src_set_phase(m, PH_POSTCOPY);   /* the record keeps "postcopy": true */
    migrate_src_arm_timer(m, 0);
}

static void on_destination_armed(void *arg, json_t *result, json_t *error)
{
    struct migration *m = arg;
    if (m->phase != PH_TRANSFER || m->failure) {
        give_up_switch(m, "the migration is ending");
        return;
    }
    if (error) {
        give_up_switch(m, json_string_value(json_object_get(error, "message")));
        return;
    }
    qmon_migrate_start_postcopy(migrate_src_mon(m), &m->owner, 10000, on_postcopy_started, m);
}

void migrate_src_start_postcopy(struct migration *m, const char *note)
{
    if (m->postcopy_starting || m->postcopy || !m->tuning.postcopy)
        return;
    m->postcopy_starting = true;
    log_info("%s: %s", m->name, note);
    json_array_append_new(m->actions, json_string(note));
    set_marker(m, true);        /* 1: before anything can run the guest elsewhere */
    migrate_src_mp(m, "migrate.postcopy", json_pack("{s:s}", "name", m->name), 10000, on_destination_armed);
}

/* ---- in post-copy: progress, pause, recovery ---------------------------- */

static json_t *postcopy_progress(struct migration *m, const struct qmon_migrate_stats *s, const char *phase)
{
    const struct qmon_migrate_ram *ram = &s->ram;
    uint64_t page = ram->page_size ? ram->page_size : 4096;
    json_t *p = json_pack("{s:s, s:s, s:b, s:I, s:I, s:I, s:I, s:f, s:f, s:I, s:I}", "phase", phase, "status",
                          s->status_name, "postcopy", true, "ram_total", (json_int_t)ram->total, "ram_remaining",
                          (json_int_t)ram->remaining, "pages_remaining", (json_int_t)(ram->remaining / page),
                          "bytes_sent", (json_int_t)ram->transferred,
                          "percent", ram->total ? 100.0 * (double)(ram->total - ram->remaining) / (double)ram->total : 0.0,
                          "rate_Bps", ram->mbps * 1e6 / 8, "elapsed_ms", (json_int_t)(now_ms() - m->t_start),
                          "postcopy_ms", (json_int_t)(now_ms() - m->t_postcopy));
    json_object_set(p, "postcopy_requests", json_object_get(json_object_get(s->raw, "ram"), "postcopy-requests"));
    json_object_set_new(p, "runs_on", json_string(migrate_src_dest(m)));
    json_object_set_new(p, "policy_actions", json_incref(m->actions));
    return p;
}

static void on_resumed(void *arg, const qmp_error_t *err)
{
    struct migration *m = arg;
    m->recover_inflight = false;
    if (err)
        log_warn("%s: resuming the post-copy to %s failed: %s; retrying", m->name, migrate_src_dest(m), err->desc);
}

/* The destination's QEMU got every page (its migration completed) and only
 * the end of the stream was cut: ours paused because its return path died
 * before it heard.  Nothing is left to recover: finish as after
 * "completed" (confirm then quits our QEMU, paused or not). */
static void dest_has_every_page(struct migration *m)
{
    char msg[256];
    snprintf(msg, sizeof msg, "post-copy to %s had completed there when the link broke: nothing to recover",
             migrate_src_dest(m));
    log_info("%s: %s", m->name, msg);
    json_array_append_new(m->actions, json_string(msg));
    record(m, "migration.postcopy.completed", "%s", msg);
    m->transfer_done = true;
    m->stats = json_pack("{s:b, s:I, s:i, s:b}", "postcopy", true, "postcopy_ms",
                         (json_int_t)(now_ms() - m->t_postcopy), "postcopy_recoveries", m->recoveries,
                         "completed_while_paused", true);
    json_object_set_new(m->stats, "tuning", tuning_to_json(&m->tuning));
    migrate_src_set_phase(m, PH_SWITCHOVER);
    migrate_src_mp(m, "migrate.finish", json_pack("{s:s}", "name", m->name), FINISH_TIMEOUT_MS,
                   migrate_src_on_finished);
}

static void on_recover_answer(void *arg, json_t *result, json_t *error)
{
    struct migration *m = arg;
    if (error) {
        m->recover_inflight = false;
        const char *code = json_string_value(json_object_get(error, "code"));
        const char *msg = json_string_value(json_object_get(error, "message"));
        if (code && (!strcmp(code, ERR_NOT_FOUND) || !strcmp(code, ERR_ABORTED))) {
            /* The destination's half is gone: nothing can recover it. */
            migrate_src_postcopy_lost(m, msg ? msg : "the destination lost its half");
            return;
        }
        log_warn("%s: %s cannot recover the post-copy yet (%s); retrying", m->name, migrate_src_dest(m),
                 msg ? msg : "?");
        /* No answer at all: the control connection may have died too. */
        m->recover_reconnect = code && (!strcmp(code, ERR_UNAVAILABLE) || !strcmp(code, ERR_TIMEOUT));
        return;
    }
    struct wire_recover_reply rep;
    json_t *bad = NULL;
    if (wire_recover_reply_from_json(result, &rep, &bad) < 0) {
        m->recover_inflight = false;
        log_warn("%s: %s", m->name, json_string_value(json_object_get(bad, "message")));
        json_decref(bad);
        return;
    }
    if (rep.loaded) {
        dest_has_every_page(m);
        return;
    }
    snprintf(m->dst_ip, sizeof m->dst_ip, "%s", rep.ip);
    m->dst_port = rep.port;
    json_t *problem = migrate_src_check_route(m);   /* the new address must be allowed on our side too */
    if (problem) {
        m->recover_inflight = false;
        log_warn("%s: cannot resume the post-copy: %s", m->name, json_string_value(json_object_get(problem, "message")));
        json_decref(problem);
        return;
    }
    char *uri = xasprintf("tcp:%s:%d", rep.ip, rep.port);
    log_info("%s: resuming the post-copy to %s at %s", m->name, migrate_src_dest(m), uri);
    if (qmon_migrate_resume(migrate_src_mon(m), &m->owner, uri, 10000, on_resumed, m) < 0)
        m->recover_inflight = false;
    free(uri);
}

static void paused(struct migration *m)
{
    if (!m->paused_ms) {
        m->paused_ms = now_ms();
        m->next_recover_ms = 0;
        char msg[512];
        snprintf(msg, sizeof msg, "post-copy to %s paused: the migration link is down; both hosts keep their "
                                  "halves of the VM, retrying for up to %d s", migrate_src_dest(m),
                 m->tuning.max_recover_wait_s);
        log_warn("%s: %s", m->name, msg);
        json_array_append_new(m->actions, json_string(msg));
        record(m, "migration.postcopy.paused", "%s", msg);
        m->phase = PH_POSTCOPY_PAUSED;
        job_set_phase(m->job, PAUSED_PHASE);
    }
    if (now_ms() - m->paused_ms > (uint64_t)m->tuning.max_recover_wait_s * 1000) {
        char why[256];
        snprintf(why, sizeof why, "the post-copy migration link to %s did not come back within %d s",
                 migrate_src_dest(m), m->tuning.max_recover_wait_s);
        migrate_src_postcopy_lost(m, why);
        return;
    }
    if (m->recover_inflight || now_ms() < m->next_recover_ms)
        return;
    m->recover_inflight = true;
    m->next_recover_ms = now_ms() + RECOVER_RETRY_MS;
    if (m->recover_reconnect) {
        /* A fresh control connection: the old one died with the link. */
        m->recover_reconnect = false;
        peer_close(m->peer);
        m->peer = peer_connect(m->agent, m->peer_name, m->peer_addr, NULL, NULL);
    }
    migrate_src_mp(m, "migrate.recover", json_pack("{s:s}", "name", m->name), 15000, on_recover_answer);
}

static void recovered(struct migration *m)
{
    if (!m->paused_ms)
        return;
    char msg[256];
    snprintf(msg, sizeof msg, "post-copy to %s resumed after %.1f s", migrate_src_dest(m),
             (double)(now_ms() - m->paused_ms) / 1000);
    log_info("%s: %s", m->name, msg);
    json_array_append_new(m->actions, json_string(msg));
    record(m, "migration.postcopy.resumed", "%s", msg);
    m->paused_ms = 0;
    m->recoveries++;
    m->last_progress_ms = now_ms();
    migrate_src_set_phase(m, PH_POSTCOPY);
}

void migrate_src_on_postcopy_poll(void *arg, const struct qmon_migrate_stats *s, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (m->phase != PH_POSTCOPY && m->phase != PH_POSTCOPY_PAUSED)
        return;
    if (err) {
        /* QEMU busy or stuck: keep asking, within the recovery bound. */
        if (m->paused_ms && now_ms() - m->paused_ms > (uint64_t)m->tuning.max_recover_wait_s * 1000) {
            migrate_src_postcopy_lost(m, "the source QEMU stopped answering while post-copy was paused");
            return;
        }
        migrate_src_arm_timer(m, POLL_MS);
        return;
    }
    switch (s->status) {
    case QMON_MIG_COMPLETED:
        if (m->stats == NULL)
            migrate_src_switchover(m, s);
        if (m->stats) {
            json_object_set_new(m->stats, "postcopy", json_true());
            json_object_set_new(m->stats, "postcopy_ms", json_integer((json_int_t)(now_ms() - m->t_postcopy)));
            json_object_set_new(m->stats, "postcopy_recoveries", json_integer(m->recoveries));
        }
        return;
    case QMON_MIG_POSTCOPY_ACTIVE:
        recovered(m);
        if (s->ram.transferred != m->last_transferred) {
            m->last_transferred = s->ram.transferred;
            m->last_progress_ms = now_ms();
        } else if (s->ram.remaining && now_ms() - m->last_progress_ms > PC_STALL_MS && !m->pause_sent) {
            /* A cut cable: TCP would retry for minutes.  Pause now (both
             * halves stay), then recover over a fresh connection. */
            log_warn("%s: no post-copy data moved for %d s: pausing it to recover", m->name, PC_STALL_MS / 1000);
            m->pause_sent = true;
            qmon_migrate_pause(migrate_src_mon(m), &m->owner, 5000, NULL, NULL);
        }
        job_set_progress(m->job, postcopy_progress(m, s, "postcopy"));
        break;
    case QMON_MIG_POSTCOPY_PAUSED:
        m->pause_sent = false;
        paused(m);
        if (m->phase != PH_POSTCOPY_PAUSED)
            return;   /* lost */
        job_set_progress(m->job, postcopy_progress(m, s, PAUSED_PHASE));
        break;
    case QMON_MIG_ACTIVE:
    case QMON_MIG_DEVICE:
    case QMON_MIG_PRE_SWITCHOVER:
        /* migrate-start-postcopy only asks: QEMU's migration thread
         * switches at its next iteration. */
        break;
    case QMON_MIG_POSTCOPY_RECOVER_SETUP:
    case QMON_MIG_POSTCOPY_RECOVER:
        if (m->paused_ms && now_ms() - m->paused_ms > (uint64_t)m->tuning.max_recover_wait_s * 1000) {
            migrate_src_postcopy_lost(m, "the post-copy could not be resumed in time");
            return;
        }
        break;
    default: {
        char why[256];
        snprintf(why, sizeof why, "the source QEMU's post-copy ended as %s%s%s", s->status_name,
                 s->error_desc ? ": " : "", s->error_desc ? s->error_desc : "");
        migrate_src_postcopy_lost(m, why);
        return;
    }
    }
    migrate_src_arm_timer(m, POLL_MS);
}
