#include "migrate/migrate.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/spawn.h"
#include "common/util.h"
#include "core/acl.h"
#include "core/agent.h"
#include "core/audit.h"
#include "api/delegate.h"
#include "core/jobs.h"
#include "core/journal.h"
#include "core/limits.h"
#include "core/peer.h"
#include "migrate/link_probe.h"
#include "migrate/migrate_net.h"
#include "migrate/tuning.h"
#include "migrate/wire.h"
#include "qemu/qemu_tls.h"
#include "vm/vm.h"

#define POLL_MS 250
#define CANCEL_GRACE_MS 5000    /* a failed transfer still running after this: abort_stuck_connections */
#define STALL_MS 10000          /* no bytes moved for this long: the link is gone */
#define RESOLVE_RETRY_MS 2000
#define PREPARE_TIMEOUT_MS 60000
#define FINISH_TIMEOUT_MS 30000

#define RESERVE_RETRY_MS 500

enum phase { PH_PREPARE, PH_TRANSFER, PH_SWITCHOVER, PH_CONFIRM, PH_ROLLBACK, PH_RESOLVE, PH_QUEUED, PH_RESERVING,
             PH_MIRROR };
static const char *phase_names[] = {"prepare", "transfer", "switchover", "confirm", "rollback", "resolving",
                                    "queued", "reserving", "mirror"};

struct migration {
    struct migration *next;
    struct agent *agent;
    struct job *job;
    struct vm *vm;
    char *name;
    char *peer_name;          /* NULL when moving to a bare ADDR:PORT */
    char *peer_addr;
    struct peer_conn *peer;
    struct migrate_tuning tuning;
    enum phase phase;
    struct event *timer;
    uint64_t t_start, t_transfer;
    char dst_ip[64];
    int dst_port;
    /* progress and convergence */
    uint64_t last_transferred, last_progress_ms;
    int64_t last_pass;
    uint64_t pass_start_remaining;
    int passes_not_converging;
    uint64_t outrun_since_ms;     /* dirty rate above the link rate since then */
    uint64_t last_policy_ms;
    int cur_downtime_ms;
    json_t *actions;          /* what the convergence policy did */
    json_t *failure;          /* error to report once rolled back */
    json_t *stats;
    bool transfer_done;       /* QEMU reported completed */
    bool recovering;          /* after a restart: waiting for QMP to decide */
    char local_holder[48];    /* our live-migration slot on this host, once held */
    int refs;                 /* callbacks in flight + 1 while alive */
    bool dead;                /* ended: callbacks still in flight are dropped */
    char *state_path;         /* quick migration: the saved-state file */
    uint64_t t_pause;         /* quick migration: when the guest was paused */
    int nbd_port;             /* shared-nothing: the destination's NBD server */
    bool tls;                 /* the destination decided: TLS streams */
    char dst_name[64];        /* the destination's host name (for TLS hostname checks) */
    bool mirrors_started;
    bool conns_aborted;         /* the last resort of abort_stuck_connections ran */
    uint64_t fail_ms;           /* when fail() stopped a running transfer */
    bool ending_mirrors;      /* switch-over: waiting for the mirror jobs to end */
    int mirror_setup_pending;
    struct link_probe *probe; /* measuring the link before prepare */
};

static void really_free(struct migration *m)
{
    json_decref(m->actions);
    json_decref(m->failure);
    json_decref(m->stats);
    free(m->name);
    free(m->peer_name);
    free(m->peer_addr);
    free(m);
}

static void m_release(struct migration *m)
{
    if (--m->refs == 0)
        really_free(m);
}

/* QMP and peer replies carry a reference to the migration: a reply that
 * arrives (or is failed synchronously by a close) after the migration ended
 * is dropped instead of touching freed memory. */
struct mticket {
    struct migration *m;
    qmp_reply_fn qcb;
    peer_reply_fn pcb;
};

static void abort_stuck_connections(struct migration *m);

static void q_tramp(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct mticket *t = arg;
    struct migration *m = t->m;
    if (!m->dead && err && err->kind == QMP_ERR_TIMEOUT)
        abort_stuck_connections(m);
    if (!m->dead)
        t->qcb(m, ret, err);
    free(t);
    m_release(m);
}

static void p_tramp(void *arg, json_t *result, json_t *error)
{
    struct mticket *t = arg;
    struct migration *m = t->m;
    if (!m->dead)
        t->pcb(m, result, error);
    free(t);
    m_release(m);
}

static struct mticket *ticket(struct migration *m)
{
    struct mticket *t = xcalloc(1, sizeof *t);
    t->m = m;
    m->refs++;
    return t;
}

static int mq_any(struct migration *m, const char *cmd, json_t *args, int fd, int timeout, qmp_reply_fn cb)
{
    if (!m->vm || !m->vm->qmp) {
        json_decref(args);
        return -1;
    }
    if (!cb)
        return qmp_command(m->vm->qmp, cmd, args, timeout, NULL, NULL);
    struct mticket *t = ticket(m);
    t->qcb = cb;
    int rc = fd >= 0 ? qmp_command_fd(m->vm->qmp, cmd, args, fd, timeout, q_tramp, t)
                     : qmp_command(m->vm->qmp, cmd, args, timeout, q_tramp, t);
    if (rc < 0) {
        free(t);
        m->refs--;
    }
    return rc;
}

static int mq(struct migration *m, const char *cmd, json_t *args, int timeout, qmp_reply_fn cb)
{
    return mq_any(m, cmd, args, -1, timeout, cb);
}

static int mqfd(struct migration *m, const char *cmd, json_t *args, int fd, int timeout, qmp_reply_fn cb)
{
    return mq_any(m, cmd, args, fd, timeout, cb);
}

static void mp(struct migration *m, const char *method, json_t *params, int timeout, peer_reply_fn cb)
{
    if (!cb) {
        peer_call(m->peer, method, params, timeout, NULL, NULL);
        return;
    }
    struct mticket *t = ticket(m);
    t->pcb = cb;
    peer_call(m->peer, method, params, timeout, p_tramp, t);
}

static void migration_free(struct migration *m)
{
    if (m->dead)
        return;
    m->dead = true;
    for (struct migration **p = &m->agent->migrations; *p; p = &(*p)->next)
        if (*p == m) {
            *p = m->next;
            break;
        }
    if (m->timer)
        event_free(m->timer);
    if (m->local_holder[0])
        limits_release(m->agent, SLOT_LIVE, m->local_holder);
    limits_dequeue(m->agent, m->job);
    if (m->state_path) {
        unlink(m->state_path);   /* removed after success, and after failure */
        free(m->state_path);
        m->state_path = NULL;
    }
    peer_close(m->peer);        /* pending calls come back through p_tramp and are dropped */
    m->peer = NULL;
    if (m->probe) {
        link_probe_cancel(m->probe);
        m->probe = NULL;
        m->refs--;               /* the probe's reference */
    }
    m_release(m);
}

static const char *dest(const struct migration *m) { return m->peer_name ? m->peer_name : m->peer_addr; }

/* The user the migration runs for ("user:alice"); the destination checks
 * that this user may bring VMs in. */
static const char *user_of(const struct migration *m)
{
    const char *u = json_string_value(json_object_get(m->job->params, "user"));
    return u ? u : "user:root";
}

static void end_mirrors(struct migration *m, bool force);
static char *mirror_node(struct migration *m, const char *disk, const char *what);

static void set_phase(struct migration *m, enum phase ph)
{
    m->phase = ph;
    if (m->vm && m->vm->migration) {
        json_t *rec = json_deep_copy(m->vm->migration);
        json_object_set_new(rec, "phase", json_string(phase_names[ph]));
        vm_set_migration(m->vm, rec);
    }
    job_set_phase(m->job, phase_names[ph]);
}

static void arm_timer(struct migration *m, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(m->timer, &tv);
}

/* ---- ending ----------------------------------------------------------- */

static void end_failed(struct migration *m)
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
    json_object_set_new(err, "vm_host", json_string(m->agent->name));
    json_t *d = json_pack("{s:s, s:O}", "to", dest(m), "error", err);
    journal_event(m->agent->journal, m->name, "migration.failed", d);
    json_decref(d);
    struct job *job = m->job;
    migration_free(m);
    job_fail(job, err);
}

static void end_succeeded(struct migration *m)
{
    json_t *stats = m->stats ? json_incref(m->stats) : json_object();
    json_object_set_new(stats, "total_ms", json_integer((json_int_t)(now_ms() - m->t_start)));
    json_object_set_new(stats, "to", json_string(dest(m)));
    json_object_set_new(stats, "policy_actions", json_incref(m->actions));
    journal_event(m->agent->journal, m->name, "migration.succeeded", stats);
    struct job *job = m->job;
    migration_free(m);
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

static void confirm(struct migration *m)
{
    set_phase(m, PH_CONFIRM);
    if (!qemu_pid_alive(m->vm)) {
        on_source_gone_after_confirm(m, NULL);
        return;
    }
    struct vm_hooks h = {NULL, on_source_gone_after_confirm, m};
    vm_set_hooks(m->vm, &h);
    m->vm->stop_expected = true;
    if (!m->vm->qmp || mq(m, "quit", NULL, 5000, NULL) < 0)
        vm_kill_qemu(m->vm);
}

static void fail(struct migration *m, json_t *error);

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
    qmp_command_oob(m->vm->qmp, "yank", json_pack("{s:[{s:s}]}", "instances", "type", "migration"), 10000,
                    NULL, NULL);
    for (size_t i = 0; m->mirrors_started && i < m->vm->cfg.n_disks; i++) {
        char *node = mirror_node(m, m->vm->cfg.disks[i].id, "nbd");
        qmp_command_oob(m->vm->qmp, "yank", json_pack("{s:[{s:s, s:s}]}", "instances", "type", "block-node",
                                                      "node-name", node), 10000, NULL, NULL);
        free(node);
    }
}

/* ---- rollback: the guest stays here ----------------------------------- */

static void on_resolved_rollback(void *arg, json_t *result, json_t *error)
{
    struct migration *m = arg;
    struct wire_resolve_reply rep;
    json_t *bad = NULL;
    bool committed = wire_resolve_reply_from_json(result, &rep, &bad) == 0 && rep.state == WIRE_RESOLVE_COMMITTED;
    json_decref(bad);
    if (committed && m->transfer_done) {
        /* The destination runs it after all: finish the move instead. */
        log_warn("%s: destination %s reports the VM committed; completing the move", m->name, dest(m));
        confirm(m);
        return;
    }
    if (error)
        log_warn("%s: could not reach %s to abort its side (%s); it aborts by itself when our connection closes",
                 m->name, dest(m), json_string_value(json_object_get(error, "message")));
    end_failed(m);
}

static void on_resume(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (err)
        log_error("%s: resuming the source guest failed: %s", m->name, err->desc);
    mp(m, "migrate.resolve", json_pack("{s:s}", "name", m->name), 10000, on_resolved_rollback);
}

static void on_rollback_status(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct migration *m = arg;
    bool running = !err && json_is_true(json_object_get(ret, "running"));
    if (!running && m->vm && m->vm->qmp && !m->transfer_done)
        mq(m, "cont", NULL, 10000, on_resume);
    else
        on_resume(m, NULL, NULL);
}

static void rollback(struct migration *m)
{
    set_phase(m, PH_ROLLBACK);
    if (m->mirrors_started) {
        yank_links(m);          /* in-flight NBD writes must not hold the cancel */
        end_mirrors(m, true);   /* fire and forget: the source disks stay in use */
    }
    /* A fresh connection: the old one may be what broke. */
    peer_close(m->peer);
    m->peer = peer_connect(m->agent, m->peer_name, m->peer_addr, NULL, NULL);
    if (m->vm && m->vm->qmp && qmp_is_ready(m->vm->qmp))
        mq(m, "query-status", NULL, 10000, on_rollback_status);
    else
        on_resume(m, NULL, NULL);
}

static void fail(struct migration *m, json_t *error)
{
    if (!m->failure)
        m->failure = error;
    else
        json_decref(error);
    log_warn("%s: migration to %s failing: %s", m->name, dest(m),
             json_string_value(json_object_get(m->failure, "message")));
    if (m->phase == PH_TRANSFER && m->vm && m->vm->qmp) {
        /* Stop QEMU's transfer first; the poll sees "cancelled" and rolls
         * back.  A cancel alone can hang while a channel is blocked on a
         * dead link (multifd threads wait for TCP to give up, for minutes):
         * yanking shuts every channel down at once (see yank_links). */
        m->fail_ms = now_ms();
        yank_links(m);
        mq(m, "migrate_cancel", NULL, 10000, NULL);
        return;
    }
    if (m->phase != PH_ROLLBACK)
        rollback(m);
}

/* ---- switchover ------------------------------------------------------- */

static void resolve_ambiguous(struct migration *m);

static void on_resolved(void *arg, json_t *result, json_t *error)
{
    struct migration *m = arg;
    struct wire_resolve_reply rep;
    json_t *bad = NULL;
    if (wire_resolve_reply_from_json(result, &rep, &bad) < 0) {
        json_decref(bad);
        log_warn("%s: cannot reach %s to learn whether it runs the VM; the VM stays paused here; retrying",
                 m->name, dest(m));
        arm_timer(m, RESOLVE_RETRY_MS);
        return;
    }
    if (rep.state == WIRE_RESOLVE_COMMITTED) {
        confirm(m);
        return;
    }
    /* The destination has aborted: run the guest here again. */
    m->transfer_done = false;
    if (!m->failure)
        m->failure = proto_error(ERR_UNAVAILABLE, NULL, "the destination %s did not take over the VM; it runs on %s again",
                                 dest(m), m->agent->name);
    m->phase = PH_ROLLBACK;
    mq(m, "cont", NULL, 10000, on_resume);
}

static void resolve_ambiguous(struct migration *m)
{
    set_phase(m, PH_RESOLVE);
    peer_close(m->peer);
    m->peer = peer_connect(m->agent, m->peer_name, m->peer_addr, NULL, NULL);
    mp(m, "migrate.resolve", json_pack("{s:s}", "name", m->name), 10000, on_resolved);
}

static void on_finished(void *arg, json_t *result, json_t *error)
{
    struct migration *m = arg;
    if (!error) {
        if (m->tuning.quick && m->stats)
            json_object_set_new(m->stats, "pause_ms", json_integer((json_int_t)(now_ms() - m->t_pause)));
        confirm(m);
        return;
    }
    const char *code = json_string_value(json_object_get(error, "code"));
    log_warn("%s: %s answered finish with %s: %s", m->name, dest(m), code ? code : "?",
             json_string_value(json_object_get(error, "message")));
    if (code && (!strcmp(code, ERR_UNAVAILABLE) || !strcmp(code, ERR_TIMEOUT))) {
        /* We do not know whether the destination committed: ask until it answers. */
        resolve_ambiguous(m);
        return;
    }
    m->failure = json_deep_copy(error);
    m->transfer_done = false;
    m->phase = PH_ROLLBACK;
    if (!qemu_pid_alive(m->vm)) {
        vm_set_migration(m->vm, NULL);
        vm_set_state(m->vm, VM_CRASHED, "QEMU exited during the switch-over and the destination refused to finish");
        end_failed(m);
        return;
    }
    mq(m, "cont", NULL, 10000, on_resume);
}

static void send_finish(struct migration *m);

/* QEMU 7.2 reports "completed" a moment before it fills in downtime and
 * total-time: read them again (the answer arrives during the finish call). */
static void on_stats_refresh(void *arg, json_t *info, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (err || !m->stats)
        return;
    json_int_t down = json_integer_value(json_object_get(info, "downtime"));
    json_int_t total = json_integer_value(json_object_get(info, "total-time"));
    if (down > 0)
        json_object_set_new(m->stats, "qemu_downtime_ms", json_integer(down));
    if (total > 0)
        json_object_set_new(m->stats, "qemu_total_ms", json_integer(total));
}

static void switchover(struct migration *m, json_t *info)
{
    m->transfer_done = true;
    json_t *ram = json_object_get(info, "ram");
    m->stats = json_pack("{s:I, s:I, s:I, s:I, s:i}",
                         "qemu_downtime_ms", json_integer_value(json_object_get(info, "downtime")),
                         "qemu_total_ms", json_integer_value(json_object_get(info, "total-time")),
                         "bytes_sent", json_integer_value(json_object_get(ram, "transferred")),
                         "passes", json_integer_value(json_object_get(ram, "dirty-sync-count")),
                         "downtime_limit_ms", m->cur_downtime_ms);
    json_object_set_new(m->stats, "tuning", tuning_to_json(&m->tuning));
    log_info("%s: transfer to %s completed (QEMU downtime so far %lld ms); switching over", m->name, dest(m),
             (long long)json_integer_value(json_object_get(info, "downtime")));
    set_phase(m, PH_SWITCHOVER);
    if (!json_integer_value(json_object_get(info, "downtime")) || !json_integer_value(json_object_get(info, "total-time")))
        mq(m, "query-migrate", NULL, 5000, on_stats_refresh);
    if (m->mirrors_started) {
        end_mirrors(m, false);
        return;
    }
    send_finish(m);
}

static void send_finish(struct migration *m)
{
    if (m->tuning.quick)
        mp(m, "migrate.load", json_pack("{s:s, s:s}", "name", m->name, "path", m->state_path),
                  300000, on_finished);
    else
        mp(m, "migrate.finish", json_pack("{s:s}", "name", m->name), FINISH_TIMEOUT_MS, on_finished);
}

/* ---- transfer: progress and convergence ------------------------------- */

static json_t *progress_json(struct migration *m, json_t *info)
{
    json_t *ram = json_object_get(info, "ram");
    double total = (double)json_integer_value(json_object_get(ram, "total"));
    double remaining = (double)json_integer_value(json_object_get(ram, "remaining"));
    double rate = json_real_value(json_object_get(ram, "mbps")) * 1e6 / 8;
    double page = (double)json_integer_value(json_object_get(ram, "page-size"));
    double dirty = (double)json_integer_value(json_object_get(ram, "dirty-pages-rate")) * (page ? page : 4096);
    json_t *p = json_pack("{s:s, s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:I, s:I, s:I, s:i, s:I}",
        "phase", phase_names[m->phase], "status", json_string_value(json_object_get(info, "status")),
        "ram_total", (json_int_t)total, "ram_remaining", (json_int_t)remaining,
        "bytes_sent", json_integer_value(json_object_get(ram, "transferred")),
        "percent", total > 0 ? 100.0 * (total - remaining) / total : 0.0, "rate_Bps", rate, "dirty_rate_Bps", dirty,
        "pass", json_integer_value(json_object_get(ram, "dirty-sync-count")),
        "expected_downtime_ms", json_integer_value(json_object_get(info, "expected-downtime")),
        "elapsed_ms", (json_int_t)(now_ms() - m->t_start), "downtime_limit_ms", m->cur_downtime_ms,
        "throttle_pct", json_integer_value(json_object_get(info, "cpu-throttle-percentage")));
    json_object_set_new(p, "eta_s", rate > 0 ? json_real(remaining / rate) : json_null());
    json_object_set_new(p, "converging", json_boolean(m->passes_not_converging < 3 && !m->outrun_since_ms));
    json_object_set_new(p, "policy_actions", json_incref(m->actions));
    return p;
}

static void raise_downtime(struct migration *m, const char *why)
{
    if (m->cur_downtime_ms >= m->tuning.max_downtime_ms)
        return;
    int next = m->cur_downtime_ms * 2;
    if (next > m->tuning.max_downtime_ms)
        next = m->tuning.max_downtime_ms;
    char *msg = xasprintf("raised the downtime limit from %d to %d ms (%s)", m->cur_downtime_ms, next, why);
    log_info("%s: %s", m->name, msg);
    json_array_append_new(m->actions, json_string(msg));
    free(msg);
    m->cur_downtime_ms = next;
    mq(m, "migrate-set-parameters", json_pack("{s:i}", "downtime-limit", next), 5000, NULL);
    m->passes_not_converging = 0;
}

static void apply_policy(struct migration *m, json_t *info, const char *why);

/* Between passes too: on a slow link one pass can take a minute, so the
 * dirty rate is compared with the transfer rate continuously. */
static void check_outrun(struct migration *m, json_t *info)
{
    json_t *ram = json_object_get(info, "ram");
    double rate = json_real_value(json_object_get(ram, "mbps")) * 1e6 / 8;
    double page = (double)json_integer_value(json_object_get(ram, "page-size"));
    double dirty = (double)json_integer_value(json_object_get(ram, "dirty-pages-rate")) * (page ? page : 4096);
    if (json_integer_value(json_object_get(ram, "dirty-sync-count")) < 2 || dirty < 0.9 * rate) {
        m->outrun_since_ms = 0;
        return;
    }
    if (!m->outrun_since_ms)
        m->outrun_since_ms = now_ms();
    if (now_ms() - m->outrun_since_ms >= 5000 && now_ms() - m->last_policy_ms >= 5000) {
        m->passes_not_converging = 3;
        apply_policy(m, info, "the guest dirties memory faster than the link carries it");
    }
}

/* Called at every new pass: is the remaining RAM shrinking? */
static void check_convergence(struct migration *m, json_t *info)
{
    json_t *ram = json_object_get(info, "ram");
    uint64_t remaining = (uint64_t)json_integer_value(json_object_get(ram, "remaining"));
    if (m->pass_start_remaining && remaining * 10 >= m->pass_start_remaining * 9)
        m->passes_not_converging++;
    else
        m->passes_not_converging = 0;
    m->pass_start_remaining = remaining;
    if (m->passes_not_converging >= 3)
        apply_policy(m, info, "the remaining memory stopped shrinking");
}

static void apply_policy(struct migration *m, json_t *info, const char *why)
{
    int throttle = (int)json_integer_value(json_object_get(info, "cpu-throttle-percentage"));
    m->last_policy_ms = now_ms();
    switch (m->tuning.converge) {
    case CONVERGE_CANCEL:
        fail(m, proto_error(ERR_TIMEOUT, "retry when the guest is quieter, or use --converge auto",
                            "not converging (%s); cancelled by the convergence policy", why));
        break;
    case CONVERGE_DOWNTIME:
        raise_downtime(m, why);
        break;
    case CONVERGE_AUTO:
        /* QEMU's auto-converge throttles the vCPUs at each pass; once it
         * throttles hard, or passes are too slow for it to act, accept a
         * longer pause step by step. */
        if (throttle >= 50 || m->outrun_since_ms)
            raise_downtime(m, why);
        break;
    case CONVERGE_THROTTLE:
        break;
    }
}

static void on_poll(void *arg, json_t *info, const qmp_error_t *err);

static void recover_wait_qmp(struct migration *m);
static void reserve(struct migration *m);
static void on_mirror_poll(void *arg, json_t *jobs, const qmp_error_t *err);

static void poll_now(evutil_socket_t fd, short what, void *arg)
{
    struct migration *m = arg;
    if (m->recovering) {
        recover_wait_qmp(m);
        return;
    }
    if (m->phase == PH_RESERVING) {
        reserve(m);
        return;
    }
    if (m->phase == PH_MIRROR || m->ending_mirrors) {
        mq(m, "query-block-jobs", NULL, 10000, on_mirror_poll);
        return;
    }
    if (m->phase == PH_RESOLVE) {
        peer_close(m->peer);
        m->peer = peer_connect(m->agent, m->peer_name, m->peer_addr, NULL, NULL);
        mp(m, "migrate.resolve", json_pack("{s:s}", "name", m->name), 10000, on_resolved);
        return;
    }
    if (m->phase == PH_TRANSFER && m->vm && m->vm->qmp)
        mq(m, "query-migrate", NULL, 10000, on_poll);
}

static bool is_active(const char *st)
{
    return !strcmp(st, "setup") || !strcmp(st, "active") || !strcmp(st, "pre-switchover") ||
           !strcmp(st, "device") || !strcmp(st, "wait-unplug") || !strcmp(st, "cancelling");
}

/* QEMU stopped answering QMP while connected to a destination, or a failed
 * transfer does not wind down: a thread is blocked on a socket to a dead
 * peer, often holding the big QEMU lock, where yank cannot reach (QEMU 7.2
 * does the NBD client's connect and TLS handshake in blockdev-add
 * synchronously, and multifd TLS handshakes at migration setup, which waits
 * for them under the lock).  The VM would hang with it until TCP gives up, which for
 * a blocked read is never.  Aborting our connections to the destination at
 * the kernel wakes the thread with an error, and the move fails cleanly.
 * Not in switch-over: the destination may be taking over. */
static void abort_stuck_connections(struct migration *m)
{
    if (m->conns_aborted || !m->dst_ip[0] ||
        (m->phase != PH_MIRROR && m->phase != PH_TRANSFER && m->phase != PH_ROLLBACK))
        return;
    m->conns_aborted = true;
    int ports[] = {m->dst_port, m->nbd_port};
    for (size_t i = 0; i < 2; i++) {
        if (ports[i] <= 0)
            continue;
        char why[256];
        int n = migrate_net_abort_connections(m->dst_ip, ports[i], why, sizeof why);
        if (n < 0)
            log_error("%s: cannot abort the connections to %s:%d: %s", m->name, m->dst_ip, ports[i], why);
        else
            log_warn("%s: QEMU is stuck on the link to %s: aborted %d connection(s) to %s:%d", m->name,
                     dest(m), n, m->dst_ip, ports[i]);
    }
}

static void on_poll(void *arg, json_t *info, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (m->phase != PH_TRANSFER)
        return;
    /* Cancelled, yanked, and still not wound down: a thread waits on a
     * socket yank does not own (a multifd TLS handshake, while QMP still
     * answers). */
    if (m->fail_ms && now_ms() - m->fail_ms > CANCEL_GRACE_MS)
        abort_stuck_connections(m);
    if (err) {
        /* QEMU not answering at all counts as no progress: a migration thread
         * stuck on a dead link can hold the lock the monitor needs. */
        if (err->kind == QMP_ERR_TIMEOUT && !m->failure && now_ms() - m->last_progress_ms > STALL_MS)
            fail(m, proto_error(ERR_UNAVAILABLE, "check the migration network link between the hosts",
                                "QEMU stopped answering while migrating to %s (%s): the link seems down",
                                dest(m), err->desc));
        if (m->phase == PH_TRANSFER)
            arm_timer(m, POLL_MS);
        return;
    }
    const char *st = json_string_value(json_object_get(info, "status"));
    if (!st)
        st = "none";
    if (!strcmp(st, "completed")) {
        switchover(m, info);
        return;
    }
    if (!strcmp(st, "failed") || !strcmp(st, "cancelled") || !strcmp(st, "none")) {
        if (!m->failure) {
            const char *desc = json_string_value(json_object_get(info, "error-desc"));
            m->failure = proto_error(ERR_QEMU, "the VM keeps running on this host; check the destination and the migration network",
                                     "migration to %s failed: %s", dest(m), desc ? desc : st);
        }
        rollback(m);
        return;
    }
    if (is_active(st)) {
        json_t *ram = json_object_get(info, "ram");
        uint64_t sent = (uint64_t)json_integer_value(json_object_get(ram, "transferred"));
        int64_t pass = json_integer_value(json_object_get(ram, "dirty-sync-count"));
        if (sent != m->last_transferred || !m->last_progress_ms) {
            m->last_transferred = sent;
            m->last_progress_ms = now_ms();
        } else if (now_ms() - m->last_progress_ms > STALL_MS && strcmp(st, "cancelling")) {
            fail(m, proto_error(ERR_UNAVAILABLE, "check the migration network link between the hosts",
                                "no migration data moved for %d s: the link to %s seems down", STALL_MS / 1000, dest(m)));
        }
        if (pass > m->last_pass) {
            m->last_pass = pass;
            check_convergence(m, info);
        }
        if (m->phase == PH_TRANSFER && !m->failure)
            check_outrun(m, info);
        if (now_ms() - m->t_start > (uint64_t)m->tuning.max_duration_s * 1000 && !m->failure)
            fail(m, proto_error(ERR_TIMEOUT, "raise --max-duration or use a faster migration network",
                                "migration to %s did not finish within %d s", dest(m), m->tuning.max_duration_s));
        if (m->phase == PH_TRANSFER)
            job_set_progress(m->job, progress_json(m, info));
    }
    if (m->phase == PH_TRANSFER)
        arm_timer(m, POLL_MS);
}

static void on_migrate_started(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (err) {
        m->failure = proto_error(ERR_QEMU, NULL, "QEMU could not start the migration: %s", err->desc);
        rollback(m);
        return;
    }
    m->t_transfer = now_ms();
    arm_timer(m, POLL_MS);
}

static void on_src_params(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (err) {
        m->failure = proto_error(ERR_QEMU, NULL, "QEMU refused the migration parameters: %s", err->desc);
        rollback(m);
        return;
    }
    if (m->job->cancel_requested) {
        m->failure = proto_error(ERR_CANCELLED, NULL, "migration of %s cancelled", m->name);
        rollback(m);
        return;
    }
    set_phase(m, PH_TRANSFER);
    if (m->tuning.quick) {
        mq(m, "migrate", json_pack("{s:s}", "uri", "fd:vmove-state"), 10000, on_migrate_started);
        return;
    }
    char *uri = xasprintf("tcp:%s:%d", m->dst_ip, m->dst_port);
    mq(m, "migrate", json_pack("{s:s}", "uri", uri), 10000, on_migrate_started);
    free(uri);
}

static void quick_save(struct migration *m);
static void start_mirrors(struct migration *m);

static void on_src_caps(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (err) {
        m->failure = proto_error(ERR_QEMU, NULL, "QEMU refused the migration capabilities: %s", err->desc);
        rollback(m);
        return;
    }
    json_t *params = tuning_qemu_parameters(&m->tuning);
    if (m->tls) {
        char *id = xasprintf("vmove-tls-%lld", (long long)m->job->id);
        json_object_set_new(params, "tls-creds", json_string(id));
        json_object_set_new(params, "tls-hostname", json_string(m->dst_name));
        free(id);
    } else
        json_object_set_new(params, "tls-creds", json_string(""));
    mq(m, "migrate-set-parameters", params, 10000, on_src_params);
}

/* The route to the destination's migration address must leave through an
 * allowed network of ours too. */
static json_t *check_route(struct migration *m)
{
    char src_ip[64];
    if (migrate_net_route_source(m->dst_ip, src_ip, sizeof src_ip) < 0)
        return proto_error(ERR_UNAVAILABLE, NULL, "no route from %s to %s's migration address %s", m->agent->name,
                           dest(m), m->dst_ip);
    if (settings_migration_allowed(&m->agent->settings, migrate_net_ip(src_ip)))
        return NULL;
    char nets[512];
    settings_migration_networks_str(&m->agent->settings, nets, sizeof nets);
    return proto_error(ERR_DENIED, "allow the network with `vmove host set --migration-network CIDR`, or fix the routes",
                       "migration from %s to %s would use %s -> %s, outside %s's allowed migration networks (%s)",
                       m->agent->name, dest(m), src_ip, m->dst_ip, m->agent->name, nets);
}

/* ---- shared-nothing: mirror the disks into the destination's NBD exports */

static char *mirror_node(struct migration *m, const char *disk, const char *what)
{
    return xasprintf("%s-%s-%lld", what, disk, (long long)m->job->id);
}

static void on_mirror_started(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (err && !m->failure) {
        m->failure = proto_error(ERR_QEMU, NULL, "QEMU could not start mirroring a disk to %s: %s", dest(m),
                                 err->desc);
        rollback(m);
        return;
    }
    if (--m->mirror_setup_pending == 0 && !m->failure)
        arm_timer(m, POLL_MS);
}

static void on_nbd_node(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (err && !m->failure) {
        m->failure = proto_error(ERR_UNAVAILABLE, "check the migration network",
                                 "cannot reach the NBD export on %s: %s", dest(m), err->desc);
        rollback(m);
    }
}

/* One mirror job per disk, write-blocking: once in sync, every guest write
 * completes on both sides, so the copy always converges. */
static void start_mirrors(struct migration *m)
{
    set_phase(m, PH_MIRROR);
    m->mirrors_started = true;
    const struct vm_config *c = &m->vm->cfg;
    m->mirror_setup_pending = (int)c->n_disks;
    char port[16];
    snprintf(port, sizeof port, "%d", m->nbd_port);
    for (size_t i = 0; i < c->n_disks; i++) {
        char *node = mirror_node(m, c->disks[i].id, "nbd"), *job = mirror_node(m, c->disks[i].id, "mirror");
        json_t *nbd = json_pack("{s:s, s:s, s:{s:s, s:s, s:s}, s:s}", "driver", "nbd", "node-name", node, "server",
                                "type", "inet", "host", m->dst_ip, "port", port, "export", c->disks[i].id);
        if (m->tls) {
            char *id = xasprintf("vmove-tls-%lld", (long long)m->job->id);
            json_object_set_new(nbd, "tls-creds", json_string(id));
            json_object_set_new(nbd, "tls-hostname", json_string(m->dst_name));
            free(id);
        }
        mq(m, "blockdev-add", nbd, 10000, on_nbd_node);
        mq(m, "blockdev-mirror", json_pack("{s:s, s:s, s:s, s:s, s:s}", "job-id", job, "device", c->disks[i].id,
                                           "target", node, "sync", "full", "copy-mode", "write-blocking"),
           10000, on_mirror_started);
        free(node);
        free(job);
    }
    if (!c->n_disks)
        arm_timer(m, 0);
}

static json_t *our_mirrors(struct migration *m, json_t *jobs, int *ready)
{
    json_t *mine = json_array();
    char prefix[32];
    snprintf(prefix, sizeof prefix, "-%lld", (long long)m->job->id);
    size_t i;
    json_t *j;
    *ready = 0;
    json_array_foreach(jobs, i, j) {
        const char *dev = json_string_value(json_object_get(j, "device"));
        if (!dev || strncmp(dev, "mirror-", 7) || !strstr(dev, prefix))
            continue;
        *ready += json_is_true(json_object_get(j, "ready"));
        json_array_append_new(mine, json_pack("{s:s, s:O, s:O, s:O}", "job", dev, "offset",
                                              json_object_get(j, "offset"), "len", json_object_get(j, "len"),
                                              "ready", json_object_get(j, "ready")));
    }
    return mine;
}

/* Copying disks that stop moving (or a QEMU that stops answering) means the
 * link is gone: the mirror would wait for TCP to give up, for many minutes,
 * with the guest's writes blocked behind it. */
static bool mirror_stalled(struct migration *m, const qmp_error_t *err, uint64_t copied)
{
    if (err && err->kind != QMP_ERR_TIMEOUT)
        return false;
    if (!err && (copied != m->last_transferred || !m->last_progress_ms)) {
        m->last_transferred = copied;
        m->last_progress_ms = now_ms();
        return false;
    }
    return m->last_progress_ms && now_ms() - m->last_progress_ms > STALL_MS;
}

static void on_mirror_poll(void *arg, json_t *jobs, const qmp_error_t *err)
{
    struct migration *m = arg;
    int ready;
    json_t *mine = err ? json_array() : our_mirrors(m, jobs, &ready);
    size_t n = m->vm ? m->vm->cfg.n_disks : 0;
    if (m->ending_mirrors) {
        if (json_array_size(mine) == 0) {
            m->ending_mirrors = false;
            json_decref(mine);
            for (size_t i = 0; i < n; i++) {
                char *node = mirror_node(m, m->vm->cfg.disks[i].id, "nbd");
                mq(m, "blockdev-del", json_pack("{s:s}", "node-name", node), 10000, NULL);
                free(node);
            }
            if (m->phase == PH_SWITCHOVER)
                send_finish(m);
            return;
        }
        json_decref(mine);
        arm_timer(m, 20);
        return;
    }
    if (m->phase != PH_MIRROR) {
        json_decref(mine);
        return;
    }
    if (!err && json_array_size(mine) < n) {
        json_decref(mine);
        fail(m, proto_error(ERR_QEMU, NULL, "a disk mirror to %s stopped before it was in sync", dest(m)));
        return;
    }
    double done = 0, total = 0;
    size_t i;
    json_t *j;
    json_array_foreach(mine, i, j) {
        done += (double)json_integer_value(json_object_get(j, "offset"));
        total += (double)json_integer_value(json_object_get(j, "len"));
    }
    if (mirror_stalled(m, err, (uint64_t)done)) {
        json_decref(mine);
        fail(m, proto_error(ERR_UNAVAILABLE, "check the migration network link between the hosts",
                            "the disk copy to %s made no progress for %d s: the link seems down", dest(m),
                            STALL_MS / 1000));
        return;
    }
    job_set_progress(m->job, json_pack("{s:s, s:o, s:f, s:I}", "phase", "mirror", "disks", mine, "percent",
                                       total > 0 ? 100.0 * done / total : 0.0, "elapsed_ms",
                                       (json_int_t)(now_ms() - m->t_start)));
    if (!err && (size_t)ready == n) {
        /* Disks in sync (and kept so): now the memory. */
        log_info("%s: disks in sync with %s; migrating memory", m->name, dest(m));
        m->last_transferred = 0;    /* the stall watch now counts RAM bytes */
        m->last_progress_ms = now_ms();
        mq(m, "migrate-set-capabilities", tuning_qemu_capabilities(&m->tuning), 10000, on_src_caps);
        return;
    }
    arm_timer(m, POLL_MS);
}

/* Switch-over: the guest is stopped, so cancelling a ready mirror leaves the
 * destination a complete copy (QEMU reports it COMPLETED).  On rollback the
 * jobs are forced down and the destination's copies are thrown away. */
static void end_mirrors(struct migration *m, bool force)
{
    for (size_t i = 0; m->vm && i < m->vm->cfg.n_disks; i++) {
        char *job = mirror_node(m, m->vm->cfg.disks[i].id, "mirror");
        mq(m, "block-job-cancel", json_pack("{s:s, s:b}", "device", job, "force", force), 10000, NULL);
        free(job);
    }
    if (!force) {
        m->ending_mirrors = true;
        arm_timer(m, 20);
    }
}

/* ---- quick migration: pause, save to shared storage ------------------- */

static void on_state_fd(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (err) {
        m->failure = proto_error(ERR_QEMU, NULL, "QEMU could not take the state file: %s", err->desc);
        rollback(m);
        return;
    }
    mq(m, "migrate-set-capabilities", tuning_qemu_capabilities(&m->tuning), 10000, on_src_caps);
}

static void on_paused(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (err) {
        m->failure = proto_error(ERR_QEMU, NULL, "QEMU could not pause the guest: %s", err->desc);
        rollback(m);
        return;
    }
    m->t_pause = now_ms();
    int fd = open(m->state_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        m->failure = proto_error(ERR_INVALID, "give a shared directory with --state-dir DIR",
                                 "cannot create the state file %s: %s", m->state_path, strerror(errno));
        free(m->state_path);
        m->state_path = NULL;   /* not ours: do not delete it */
        rollback(m);
        return;
    }
    mqfd(m, "getfd", json_pack("{s:s}", "fdname", "vmove-state"), fd, 10000, on_state_fd);
    close(fd);
}

static void quick_save(struct migration *m)
{
    const char *dir = m->tuning.state_dir;
    char *copy = NULL;
    if (!dir[0]) {
        if (!m->vm->cfg.n_disks) {
            m->failure = proto_error(ERR_INVALID, "give a shared directory with --state-dir DIR",
                                     "VM %s has no disk on shared storage to save its state next to", m->name);
            rollback(m);
            return;
        }
        copy = xstrdup(m->vm->cfg.disks[0].path);
        dir = dirname(copy);
    }
    m->state_path = xasprintf("%s/.vmove-%s-%lld.state", dir, m->name, (long long)m->job->id);
    free(copy);
    set_phase(m, PH_TRANSFER);
    mq(m, "stop", NULL, 10000, on_paused);
}

static void on_src_tls(void *arg, json_t *ret, const qmp_error_t *err);

static void on_prepared(void *arg, json_t *result, json_t *error)
{
    struct migration *m = arg;
    if (error) {
        m->failure = json_deep_copy(error);
        end_failed(m);       /* nothing was started anywhere */
        return;
    }
    if (m->tuning.quick) {
        quick_save(m);
        return;
    }
    struct wire_prepare_reply rep;
    json_t *problem = NULL;
    if (wire_prepare_reply_from_json(result, &rep, &problem) < 0) {
        m->failure = problem;
        rollback(m);         /* the destination may have prepared: it aborts */
        return;
    }
    snprintf(m->dst_ip, sizeof m->dst_ip, "%s", rep.ip);
    m->dst_port = rep.port;
    m->nbd_port = rep.nbd_port;
    wire_prepare_reply_clear(&rep);
    problem = check_route(m);
    if (!problem && m->job->cancel_requested)
        problem = proto_error(ERR_CANCELLED, NULL, "migration of %s cancelled", m->name);
    if (problem) {
        m->failure = problem;
        rollback(m);
        return;
    }
    m->tls = rep.tls;
    snprintf(m->dst_name, sizeof m->dst_name, "%.*s", (int)sizeof m->dst_name - 1, rep.host);
    if (m->tls) {
        char *id = xasprintf("vmove-tls-%lld", (long long)m->job->id);
        mq(m, "object-add", qemu_tls_object(id, m->agent->qemu_tls_dir, false), 10000, on_src_tls);
        free(id);
        return;
    }
    on_src_tls(m, NULL, NULL);
}

/* TLS credentials in place (or not needed): disks first, or memory. */
static void on_src_tls(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (err) {
        m->failure = proto_error(ERR_QEMU, NULL, "QEMU could not load the TLS credentials: %s", err->desc);
        rollback(m);
        return;
    }
    if (m->tuning.with_storage[0]) {
        start_mirrors(m);
        return;
    }
    mq(m, "migrate-set-capabilities", tuning_qemu_capabilities(&m->tuning), 10000, on_src_caps);
}

/* ---- hooks: the source QEMU and the peer connection ------------------- */

/* QEMU's MIGRATION event ends the transfer at once: waiting for the next
 * poll would add up to POLL_MS to the time the guest is paused. */
static void on_src_event(void *arg, const char *name, json_t *data)
{
    struct migration *m = arg;
    const char *st = json_string_value(json_object_get(data, "status"));
    if (strcmp(name, "MIGRATION") || !st || m->phase != PH_TRANSFER)
        return;
    if (!strcmp(st, "completed") || !strcmp(st, "failed") || !strcmp(st, "cancelled"))
        mq(m, "query-migrate", NULL, 10000, on_poll);
}

static void on_src_gone(void *arg, json_t *exit_info)
{
    struct migration *m = arg;
    struct vm *vm = m->vm;
    const char *desc = json_string_value(json_object_get(exit_info, "description"));
    if (m->transfer_done) {
        /* QEMU died after sending everything: the destination holds the
         * only copy of the guest now, so it must run it. */
        log_warn("%s: source QEMU exited during switch-over (%s); asking %s to finish", m->name,
                 desc ? desc : "?", dest(m));
        peer_close(m->peer);
        m->peer = peer_connect(m->agent, m->peer_name, m->peer_addr, NULL, NULL);
        mp(m, "migrate.finish", json_pack("{s:s}", "name", m->name), FINISH_TIMEOUT_MS, on_finished);
        return;
    }
    vm_set_migration(vm, NULL);
    vm_set_state(vm, VM_CRASHED, "source QEMU exited during migration");
    m->vm = NULL;
    m->failure = proto_error(ERR_QEMU, "`vmove vm show` has the log tail", "the source QEMU exited during the migration (%s)",
                             desc ? desc : "?");
    mp(m, "migrate.resolve", json_pack("{s:s}", "name", m->name), 10000, on_resolved_rollback);
}

static void on_peer_closed(void *arg, const char *reason)
{
    struct migration *m = arg;
    if (m->phase == PH_TRANSFER)
        fail(m, proto_error(ERR_UNAVAILABLE, "check that vmoved runs on the destination",
                            "lost contact with %s during the transfer: %s", dest(m), reason));
}

/* ---- start, cancel, API ----------------------------------------------- */

static void on_unreserved(void *arg, json_t *result, json_t *error);

static void cancel_migration(struct job *job)
{
    for (struct migration *m = job->agent->migrations; m; m = m->next) {
        if (m->job != job)
            continue;
        if (m->phase == PH_QUEUED || m->phase == PH_RESERVING) {
            /* Not started: the VM was never touched. */
            if (m->phase == PH_RESERVING)
                mp(m, "migrate.unreserve", json_pack("{s:I}", "job", (json_int_t)job->id), 5000,
                          on_unreserved);
            m->failure = proto_error(ERR_CANCELLED, NULL, "queued migration of %s to %s cancelled before it started",
                                     m->name, dest(m));
            m->vm = NULL;
            end_failed(m);
        } else if (m->phase == PH_TRANSFER)
            fail(m, proto_error(ERR_CANCELLED, NULL, "migration of %s to %s cancelled; it keeps running on %s",
                                m->name, dest(m), m->agent->name));
        else if (m->phase == PH_PREPARE)
            log_info("%s: cancel requested during prepare; rolling back when the destination answers", m->name);
        else
            log_warn("%s: cancel refused: the switch-over has begun", m->name);
        return;
    }
}

static const struct job_ops migrate_ops = {"migrate", cancel_migration};

static void on_unreserved(void *arg, json_t *result, json_t *error) {}

static struct migration *migration_new(struct agent *a, struct vm *vm, struct job *job, const char *peer_name,
                                       const char *peer_addr)
{
    struct migration *m = xcalloc(1, sizeof *m);
    m->agent = a;
    m->vm = vm;
    m->job = job;
    m->name = xstrdup(vm->name);
    m->peer_name = peer_name ? xstrdup(peer_name) : NULL;
    m->peer_addr = xstrdup(peer_addr);
    m->refs = 1;
    m->timer = evtimer_new(a->base, poll_now, m);
    m->t_start = now_ms();
    m->actions = json_array();
    m->next = a->migrations;
    a->migrations = m;
    return m;
}

static void enqueue_migration(struct agent *a, struct job *job, struct vm *vm, const char *peer_name,
                              const char *peer_addr, const struct migrate_tuning *t);
static void on_local_slot(void *arg);
static void send_prepare(struct migration *m);
static const char *via_of(struct migration *m);
static void on_probe_sink(void *arg, json_t *result, json_t *error);
static void begin_migration(struct migration *m);

static json_t *resolve_target(struct agent *a, const char *to, const char **name, const char **addr)
{
    const struct peer_entry *p = settings_find_peer(&a->settings, to);
    if (p) {
        *name = p->name;
        *addr = p->addr;
        return NULL;
    }
    if (strchr(to, ':')) {
        *name = NULL;
        *addr = to;
        return NULL;
    }
    return proto_error(ERR_NOT_FOUND, "add it with `vmove peer add HOST ADDR:PORT`, or give --to ADDR:PORT",
                       "host %s is not a known peer of %s", to, a->name);
}

struct job *migrate_submit(struct agent *a, const char *name, const char *to, json_t *tuning_json, const char *user,
                           json_t **err)
{
    struct vm *vm = vm_find(a, name);
    if (!vm) {
        *err = proto_error(ERR_NOT_FOUND, NULL, "no VM named \"%s\" on host %s", name, a->name);
        return NULL;
    }
    struct migrate_tuning t;
    char msg[512];
    if (tuning_from_json(tuning_json, &t, msg, sizeof msg) < 0) {
        *err = proto_error(ERR_INVALID, NULL, "%s", msg);
        return NULL;
    }
    const char *peer_name = NULL, *peer_addr = NULL;
    if ((*err = resolve_target(a, to, &peer_name, &peer_addr)))
        return NULL;
    if (peer_name && !strcmp(peer_name, a->name))
        *err = proto_error(ERR_INVALID, NULL, "VM %s is already on host %s", name, a->name);
    else if (!a->settings.migration_outgoing)
        *err = proto_error(ERR_DENIED, "enable it: vmove host set --migration-outgoing on",
                           "outgoing migration is disabled on host %s", a->name);
    else if (!a->tls_client)
        *err = proto_error(ERR_UNAVAILABLE, "start vmoved with --listen and --tls-dir",
                           "host %s has no TLS identity to talk to other hosts", a->name);
    else if (vm->state != VM_RUNNING && vm->state != VM_PAUSED)
        *err = proto_error(ERR_STATE, NULL, "VM %s is %s; live migration moves a running VM", name,
                           vm_state_name(vm->state));
    else {
        struct job *busy = job_active_for_vm(a, name);
        if (busy)
            *err = proto_error(ERR_STATE, "wait for it or cancel it", "VM %s is busy with job %lld (%s)", name,
                               (long long)busy->id, busy->ops->kind);
    }
    if (*err)
        return NULL;
    json_t *params = json_pack("{s:s, s:o, s:s}", "to", to, "tuning", tuning_to_json(&t), "user", user);
    struct job *job = job_create_in(a, &migrate_ops, name, params, JOB_QUEUED);
    enqueue_migration(a, job, vm, peer_name, peer_addr, &t);
    return job;
}

static void vm_move(struct api_req *r)
{
    const char *from = json_string_value(json_object_get(r->params, "from"));
    if (from && strcmp(from, r->agent->name)) {
        delegate_relay(r);
        return;
    }
    const char *name = api_param_str(r, "name", true);
    const char *to = name ? api_param_str(r, "to", true) : NULL;
    bool wait;
    if (!to || api_param_bool(r, "wait", true, &wait) < 0)
        return;
    json_t *err = NULL;
    char who[96];
    principal_describe(&r->who, who, sizeof who);
    struct job *job = migrate_submit(r->agent, name, to, json_object_get(r->params, "tuning"), who, &err);
    if (!job) {
        api_fail(r, err);
        return;
    }
    json_t *by = json_object_get(r->params, "delegated_by");
    if (by)
        json_object_set(job->params, "delegated_by", by);
    job_answer(job, r, wait);
}

/* ---- queueing: a local slot, then a slot at the destination ------------ */

/* Queued until this host has a free live-migration slot (host/limits.c). */
static void enqueue_migration(struct agent *a, struct job *job, struct vm *vm, const char *peer_name,
                              const char *peer_addr, const struct migrate_tuning *t)
{
    struct migration *m = migration_new(a, vm, job, peer_name, peer_addr);
    m->tuning = *t;
    m->cur_downtime_ms = t->downtime_ms;
    m->phase = PH_QUEUED;
    limits_enqueue(a, SLOT_LIVE, job, on_local_slot, m);
    /* The queue is served on the next loop turn: only a job that will
     * really wait is shown as queued. */
    int pos = limits_position(a, job);
    if (pos > limits_max(a, SLOT_LIVE) - limits_in_use(a, SLOT_LIVE))
        job_set_waiting(job, pos, a->name);
}

static void on_local_slot(void *arg)
{
    struct migration *m = arg;
    limits_job_holder(m->job, m->local_holder, sizeof m->local_holder);
    m->phase = PH_RESERVING;
    job_set_phase(m->job, "reserving");
    m->peer = peer_connect(m->agent, m->peer_name, m->peer_addr, NULL, NULL);
    reserve(m);
    /* Jobs behind us in the local queue move up one place. */
    for (struct migration *o = m->agent->migrations; o; o = o->next)
        if (o->phase == PH_QUEUED)
            job_set_waiting(o->job, limits_position(o->agent, o->job), o->agent->name);
}

static void on_reserved(void *arg, json_t *result, json_t *error)
{
    struct migration *m = arg;
    if (m->phase != PH_RESERVING)
        return;
    if (error) {
        const char *code = json_string_value(json_object_get(error, "code"));
        if (code && (!strcmp(code, ERR_UNAVAILABLE) || !strcmp(code, ERR_TIMEOUT))) {
            /* The destination is unreachable for now: keep our place, retry. */
            job_set_waiting(m->job, 0, dest(m));
            peer_close(m->peer);
            m->peer = peer_connect(m->agent, m->peer_name, m->peer_addr, NULL, NULL);
            arm_timer(m, 2000);
            return;
        }
        m->failure = json_deep_copy(error);
        m->vm = NULL;           /* never touched */
        end_failed(m);
        return;
    }
    struct wire_reserve_reply rep;
    json_t *bad = NULL;
    if (wire_reserve_reply_from_json(result, &rep, &bad) < 0) {
        m->failure = bad;
        /* Granted or not, we cannot tell: give the place back. */
        mp(m, "migrate.unreserve", json_pack("{s:I}", "job", (json_int_t)m->job->id), 5000, on_unreserved);
        m->vm = NULL;
        end_failed(m);
        return;
    }
    if (rep.granted) {
        /* This host must allow sending VMs to that host. */
        const char *dst = rep.host;
        char *p = xasprintf("host:%s", dst ? dst : "?");
        bool ok = dst && acl_allows(m->agent, p, RIGHT_MIGRATE_OUT);
        audit_record(m->agent, p, "migrate.out", m->name, m->peer_addr, ok,
                     ok ? NULL : "destination host lacks migrate.out here");
        if (!ok) {
            m->failure = acl_denial(m->agent, p, RIGHT_MIGRATE_OUT);
            free(p);
            mp(m, "migrate.unreserve", json_pack("{s:I}", "job", (json_int_t)m->job->id), 5000, on_unreserved);
            m->vm = NULL;
            end_failed(m);
            return;
        }
        free(p);
        begin_migration(m);
        return;
    }
    job_set_waiting(m->job, rep.position, dest(m));
    arm_timer(m, RESERVE_RETRY_MS);
}

static void reserve(struct migration *m)
{
    mp(m, "migrate.reserve", json_pack("{s:I, s:s, s:s}", "job", (json_int_t)m->job->id, "vm", m->name, "user",
                                       user_of(m)), 10000, on_reserved);
}

/* Shared-nothing: where the destination puts the copies, and their sizes. */
static json_t *storage_request(struct migration *m)
{
    json_t *sizes = json_object();
    for (size_t i = 0; i < m->vm->cfg.n_disks; i++) {
        char *argv[] = {"qemu-img", "info", "-U", "--output=json", m->vm->cfg.disks[i].path, NULL};
        char *out = NULL;
        json_t *info = run_capture(argv, 10000, &out) == 0 ? json_loads(out, 0, NULL) : NULL;
        json_object_set_new(sizes, m->vm->cfg.disks[i].id,
                            json_integer(json_integer_value(json_object_get(info, "virtual-size"))));
        json_decref(info);
        free(out);
    }
    return json_pack("{s:s, s:o}", "dir", m->tuning.with_storage, "sizes", sizes);
}

/* Both slots held: the migration proper starts, and only now is the VM touched. */
static void begin_migration(struct migration *m)
{
    struct agent *a = m->agent;
    struct vm *vm = vm_find(a, m->name);
    if (!vm || vm != m->vm || (vm->state != VM_RUNNING && vm->state != VM_PAUSED)) {
        mp(m, "migrate.unreserve", json_pack("{s:I}", "job", (json_int_t)m->job->id), 5000,
                  on_unreserved);
        m->failure = proto_error(ERR_STATE, NULL, "VM %s is %s now; nothing to migrate", m->name,
                                 vm ? vm_state_name(vm->state) : "gone");
        m->vm = NULL;
        end_failed(m);
        return;
    }
    m->t_start = now_ms();
    job_set_running(m->job);
    vm_set_state(vm, VM_MIGRATING, "live migration started");
    vm_set_migration(vm, json_pack("{s:s, s:I, s:s?, s:s, s:s}", "role", "source", "job", (json_int_t)m->job->id,
                                   "peer", m->peer_name, "addr", m->peer_addr, "phase", "prepare"));
    struct vm_hooks h = {on_src_event, on_src_gone, m};
    vm_set_hooks(vm, &h);
    set_phase(m, PH_PREPARE);
    peer_set_closed_hook(m->peer, on_peer_closed, m);
    if (!strcmp(m->tuning.compress, "auto") && !m->tuning.quick) {
        mp(m, "migrate.probe", json_pack("{s:s, s:s, s:s, s:I}", "via", via_of(m), "user", user_of(m), "vm", m->name,
                                         "job", (json_int_t)m->job->id), 10000, on_probe_sink);
        return;
    }
    send_prepare(m);
}

static const char *via_of(struct migration *m)
{
    static char via[64];
    const char *colon = strrchr(m->peer_addr, ':');
    snprintf(via, sizeof via, "%.*s", colon ? (int)(colon - m->peer_addr) : 0, m->peer_addr);
    return via;
}

static void send_prepare(struct migration *m)
{
    struct agent *a = m->agent;
    if (!strcmp(m->tuning.compress, "auto"))
        snprintf(m->tuning.compress, sizeof m->tuning.compress, "none");
    json_t *cfg = vm_config_to_json(&m->vm->cfg);
    json_t *storage = m->tuning.with_storage[0] ? storage_request(m) : NULL;
    mp(m, "migrate.prepare",
              json_pack("{s:o, s:o, s:s, s:s, s:I, s:b, s:o, s:s, s:b}", "config", cfg, "tuning", tuning_to_json(&m->tuning),
                        "accel", accel_kind_name(a->accel.kind), "via", via_of(m), "job", (json_int_t)m->job->id, "quick",
                        m->tuning.quick, "storage", storage ? storage : json_null(), "user", user_of(m),
                        "insecure_ok", a->settings.allow_insecure_migration),
              PREPARE_TIMEOUT_MS, on_prepared);
}

/* ---- choosing compression from the measured link ---------------------- */

/* Compression pays where the link, not the CPU, limits the transfer. */
#define COMPRESS_BELOW_BPS (1.5e9 / 8)     /* between 1 GbE (compress) and 10 GbE (do not) */
#define PROBE_MS 300

static void on_link_measured(void *arg, double Bps)
{
    struct migration *m = arg;
    m->probe = NULL;
    if (!m->dead && m->phase == PH_PREPARE) {
        const char *choice = Bps > 0 && Bps < COMPRESS_BELOW_BPS && m->tuning.channels > 1 ? "zstd" : "none";
        snprintf(m->tuning.compress, sizeof m->tuning.compress, "%s", choice);
        char *msg = Bps > 0 ? xasprintf("link to %s measured at %.2f Gbit/s: compression %s", dest(m), Bps * 8 / 1e9,
                                        choice)
                            : xasprintf("link to %s could not be measured: compression none", dest(m));
        log_info("%s: %s", m->name, msg);
        json_array_append_new(m->actions, json_string(msg));
        free(msg);
        send_prepare(m);
    }
    m_release(m);
}

static void on_probe_sink(void *arg, json_t *result, json_t *error)
{
    struct migration *m = arg;
    if (error) {
        /* A refusal (rights, disabled, network) is prepare's to report in full. */
        send_prepare(m);
        return;
    }
    m->refs++;   /* held by the probe until it reports */
    m->probe = link_probe_run(m->agent->base, json_string_value(json_object_get(result, "ip")),
                              (int)json_integer_value(json_object_get(result, "port")), PROBE_MS, on_link_measured, m);
}

/* ---- recovery after a restart ----------------------------------------- */

static void on_recover_status(void *arg, json_t *info, const qmp_error_t *err);

static void recover_wait_qmp(struct migration *m)
{
    if (m->vm->qmp && qmp_is_ready(m->vm->qmp)) {
        mq(m, "query-migrate", NULL, 10000, on_recover_status);
        return;
    }
    arm_timer(m, 100);
}

static void on_recover_status(void *arg, json_t *info, const qmp_error_t *err)
{
    struct migration *m = arg;
    const char *st = json_string_value(json_object_get(info, "status"));
    if (st && is_active(st)) {
        /* The old vmoved left QEMU migrating: stop it, then decide. */
        mq(m, "migrate_cancel", NULL, 10000, NULL);
        arm_timer(m, 200);      /* recover_wait_qmp asks again */
        return;
    }
    m->recovering = false;
    m->failure = proto_error(ERR_INTERNAL, "check `vmove vm list` on both hosts",
                             "the migration was interrupted by a vmoved restart on %s", m->agent->name);
    if (st && !strcmp(st, "completed")) {
        m->transfer_done = true;
        resolve_ambiguous(m);
    } else
        rollback(m);
}

void migrate_recover(struct agent *a)
{
    for (struct vm *vm = a->vms; vm; vm = vm->next) {
        const char *role = json_string_value(json_object_get(vm->migration, "role"));
        if (!role || strcmp(role, "source"))
            continue;
        json_int_t id = json_integer_value(json_object_get(vm->migration, "job"));
        struct job *job = job_adopt(a, &migrate_ops, id);
        if (!job)
            job = job_create(a, &migrate_ops, vm->name, NULL);
        const char *peer = json_string_value(json_object_get(vm->migration, "peer"));
        const char *addr = json_string_value(json_object_get(vm->migration, "addr"));
        struct migration *m = migration_new(a, vm, job, peer, addr ? addr : "");
        log_warn("vm %s: resolving a migration to %s interrupted by a restart", vm->name, dest(m));
        struct vm_hooks h = {NULL, on_src_gone, m};
        vm_set_hooks(vm, &h);
        if (!qemu_pid_alive(vm)) {
            vm_set_migration(vm, NULL);
            vm_set_state(vm, VM_CRASHED, "QEMU exited while vmoved was down, during a migration");
            m->vm = NULL;
            m->failure = proto_error(ERR_QEMU, NULL, "the source QEMU exited while vmoved was down");
            m->peer = peer_connect(a, m->peer_name, m->peer_addr, NULL, NULL);
            mp(m, "migrate.resolve", json_pack("{s:s}", "name", m->name), 10000, on_resolved_rollback);
            continue;
        }
        m->peer = peer_connect(a, m->peer_name, m->peer_addr, NULL, NULL);
        m->recovering = true;
        arm_timer(m, 0);
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
        struct job *job = job_adopt(a, &migrate_ops, id);
        if (!job)
            continue;
        struct vm *vm = job->vm ? vm_find(a, job->vm) : NULL;
        const struct peer_entry *p = to ? settings_find_peer(&a->settings, to) : NULL;
        struct migrate_tuning t;
        char err[256];
        if (!vm || !to || tuning_from_json(json_object_get(job->params, "tuning"), &t, err, sizeof err) < 0) {
            job_fail(job, proto_error(ERR_STATE, NULL, "queued migration could not be resumed after a restart"));
            continue;
        }
        log_info("job %lld: queued migration of %s to %s resumes its place in the queue", (long long)id,
                 vm->name, to);
        enqueue_migration(a, job, vm, p ? p->name : NULL, p ? p->addr : to, &t);
    }
    json_decref(recs);
}

void migrate_free_all(struct agent *a)
{
    while (a->migrations) {
        struct migration *m = a->migrations;
        if (m->vm)
            vm_set_hooks(m->vm, NULL);
        struct job *job = m->job;
        migration_free(m);
        (void)job;   /* jobs_free_all answers its watchers */
    }
}

const struct api_method api_migrate_methods[] = {
    {"vm.move", vm_move, RIGHT_MIGRATE_OUT},
    {NULL, NULL, 0},
};
