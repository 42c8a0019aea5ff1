#include "migrate/migrate.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "host/agent.h"
#include "host/jobs.h"
#include "host/journal.h"
#include "host/peer.h"
#include "migrate/migrate_net.h"
#include "migrate/tuning.h"
#include "vm/vm.h"

#define POLL_MS 250
#define STALL_MS 10000          /* no bytes moved for this long: the link is gone */
#define RESOLVE_RETRY_MS 2000
#define PREPARE_TIMEOUT_MS 60000
#define FINISH_TIMEOUT_MS 30000

enum phase { PH_PREPARE, PH_TRANSFER, PH_SWITCHOVER, PH_CONFIRM, PH_ROLLBACK, PH_RESOLVE };
static const char *phase_names[] = {"prepare", "transfer", "switchover", "confirm", "rollback", "resolving"};

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
};

static void migration_free(struct migration *m)
{
    for (struct migration **p = &m->agent->migrations; *p; p = &(*p)->next)
        if (*p == m) {
            *p = m->next;
            break;
        }
    if (m->timer)
        event_free(m->timer);
    peer_close(m->peer);
    json_decref(m->actions);
    json_decref(m->failure);
    json_decref(m->stats);
    free(m->name);
    free(m->peer_name);
    free(m->peer_addr);
    free(m);
}

static const char *dest(const struct migration *m) { return m->peer_name ? m->peer_name : m->peer_addr; }

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
    if (!m->vm->qmp || qmp_command(m->vm->qmp, "quit", NULL, 5000, NULL, NULL) < 0)
        vm_kill_qemu(m->vm);
}

static void fail(struct migration *m, json_t *error);

/* ---- rollback: the guest stays here ----------------------------------- */

static void on_resolved_rollback(void *arg, json_t *result, json_t *error)
{
    struct migration *m = arg;
    const char *st = json_string_value(json_object_get(result, "state"));
    if (st && !strcmp(st, "committed") && m->transfer_done) {
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
    peer_call(m->peer, "migrate.resolve", json_pack("{s:s}", "name", m->name), 10000, on_resolved_rollback, m);
}

static void on_rollback_status(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct migration *m = arg;
    bool running = !err && json_is_true(json_object_get(ret, "running"));
    if (!running && m->vm->qmp && !m->transfer_done)
        qmp_command(m->vm->qmp, "cont", NULL, 10000, on_resume, m);
    else
        on_resume(m, NULL, NULL);
}

static void rollback(struct migration *m)
{
    set_phase(m, PH_ROLLBACK);
    /* A fresh connection: the old one may be what broke. */
    peer_close(m->peer);
    m->peer = peer_connect(m->agent, m->peer_name, m->peer_addr, NULL, NULL);
    if (m->vm && m->vm->qmp && qmp_is_ready(m->vm->qmp))
        qmp_command(m->vm->qmp, "query-status", NULL, 10000, on_rollback_status, m);
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
         * yanking the migration shuts every channel down at once. */
        qmp_command(m->vm->qmp, "migrate_cancel", NULL, 10000, NULL, NULL);
        qmp_command(m->vm->qmp, "yank", json_pack("{s:[{s:s}]}", "instances", "type", "migration"), 10000,
                    NULL, NULL);
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
    const char *st = json_string_value(json_object_get(result, "state"));
    if (!st) {
        log_warn("%s: cannot reach %s to learn whether it runs the VM; the VM stays paused here; retrying",
                 m->name, dest(m));
        arm_timer(m, RESOLVE_RETRY_MS);
        return;
    }
    if (!strcmp(st, "committed")) {
        confirm(m);
        return;
    }
    /* The destination has aborted: run the guest here again. */
    m->transfer_done = false;
    if (!m->failure)
        m->failure = proto_error(ERR_UNAVAILABLE, NULL, "the destination %s did not take over the VM; it runs on %s again",
                                 dest(m), m->agent->name);
    m->phase = PH_ROLLBACK;
    qmp_command(m->vm->qmp, "cont", NULL, 10000, on_resume, m);
}

static void resolve_ambiguous(struct migration *m)
{
    set_phase(m, PH_RESOLVE);
    peer_close(m->peer);
    m->peer = peer_connect(m->agent, m->peer_name, m->peer_addr, NULL, NULL);
    peer_call(m->peer, "migrate.resolve", json_pack("{s:s}", "name", m->name), 10000, on_resolved, m);
}

static void on_finished(void *arg, json_t *result, json_t *error)
{
    struct migration *m = arg;
    if (!error) {
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
    qmp_command(m->vm->qmp, "cont", NULL, 10000, on_resume, m);
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
    peer_call(m->peer, "migrate.finish", json_pack("{s:s}", "name", m->name), FINISH_TIMEOUT_MS, on_finished, m);
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
    qmp_command(m->vm->qmp, "migrate-set-parameters", json_pack("{s:i}", "downtime-limit", next), 5000, NULL, NULL);
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

static void poll_now(evutil_socket_t fd, short what, void *arg)
{
    struct migration *m = arg;
    if (m->recovering) {
        recover_wait_qmp(m);
        return;
    }
    if (m->phase == PH_RESOLVE) {
        peer_close(m->peer);
        m->peer = peer_connect(m->agent, m->peer_name, m->peer_addr, NULL, NULL);
        peer_call(m->peer, "migrate.resolve", json_pack("{s:s}", "name", m->name), 10000, on_resolved, m);
        return;
    }
    if (m->phase == PH_TRANSFER && m->vm && m->vm->qmp)
        qmp_command(m->vm->qmp, "query-migrate", NULL, 10000, on_poll, m);
}

static bool is_active(const char *st)
{
    return !strcmp(st, "setup") || !strcmp(st, "active") || !strcmp(st, "pre-switchover") ||
           !strcmp(st, "device") || !strcmp(st, "wait-unplug") || !strcmp(st, "cancelling");
}

static void on_poll(void *arg, json_t *info, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (m->phase != PH_TRANSFER)
        return;
    if (err) {
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
    char *uri = xasprintf("tcp:%s:%d", m->dst_ip, m->dst_port);
    qmp_command(m->vm->qmp, "migrate", json_pack("{s:s}", "uri", uri), 10000, on_migrate_started, m);
    free(uri);
}

static void on_src_caps(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (err) {
        m->failure = proto_error(ERR_QEMU, NULL, "QEMU refused the migration capabilities: %s", err->desc);
        rollback(m);
        return;
    }
    qmp_command(m->vm->qmp, "migrate-set-parameters", tuning_qemu_parameters(&m->tuning), 10000, on_src_params, m);
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

static void on_prepared(void *arg, json_t *result, json_t *error)
{
    struct migration *m = arg;
    if (error) {
        m->failure = json_deep_copy(error);
        end_failed(m);       /* nothing was started anywhere */
        return;
    }
    snprintf(m->dst_ip, sizeof m->dst_ip, "%s", json_string_value(json_object_get(result, "ip")));
    m->dst_port = (int)json_integer_value(json_object_get(result, "port"));
    json_t *problem = check_route(m);
    if (!problem && m->job->cancel_requested)
        problem = proto_error(ERR_CANCELLED, NULL, "migration of %s cancelled", m->name);
    if (problem) {
        m->failure = problem;
        rollback(m);
        return;
    }
    qmp_command(m->vm->qmp, "migrate-set-capabilities", tuning_qemu_capabilities(&m->tuning), 10000, on_src_caps, m);
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
        qmp_command(m->vm->qmp, "query-migrate", NULL, 10000, on_poll, m);
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
        peer_call(m->peer, "migrate.finish", json_pack("{s:s}", "name", m->name), FINISH_TIMEOUT_MS, on_finished, m);
        return;
    }
    vm_set_migration(vm, NULL);
    vm_set_state(vm, VM_CRASHED, "source QEMU exited during migration");
    m->vm = NULL;
    m->failure = proto_error(ERR_QEMU, "`vmove vm show` has the log tail", "the source QEMU exited during the migration (%s)",
                             desc ? desc : "?");
    peer_call(m->peer, "migrate.resolve", json_pack("{s:s}", "name", m->name), 10000, on_resolved_rollback, m);
}

static void on_peer_closed(void *arg, const char *reason)
{
    struct migration *m = arg;
    if (m->phase == PH_TRANSFER)
        fail(m, proto_error(ERR_UNAVAILABLE, "check that vmoved runs on the destination",
                            "lost contact with %s during the transfer: %s", dest(m), reason));
}

/* ---- start, cancel, API ----------------------------------------------- */

static void cancel_migration(struct job *job)
{
    for (struct migration *m = job->agent->migrations; m; m = m->next) {
        if (m->job != job)
            continue;
        if (m->phase == PH_TRANSFER)
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
    m->timer = evtimer_new(a->base, poll_now, m);
    m->t_start = now_ms();
    m->actions = json_array();
    m->next = a->migrations;
    a->migrations = m;
    return m;
}

static int resolve_target(struct api_req *r, const char *to, const char **name, const char **addr)
{
    const struct peer_entry *p = settings_find_peer(&r->agent->settings, to);
    if (p) {
        *name = p->name;
        *addr = p->addr;
        return 0;
    }
    if (strchr(to, ':')) {
        *name = NULL;
        *addr = to;
        return 0;
    }
    api_failf(r, ERR_NOT_FOUND, "add it with `vmove peer add HOST ADDR:PORT`, or give --to ADDR:PORT",
              "host %s is not a known peer of %s", to, r->agent->name);
    return -1;
}

static void vm_move(struct api_req *r)
{
    struct agent *a = r->agent;
    const char *name = api_param_str(r, "name", true);
    const char *to = name ? api_param_str(r, "to", true) : NULL;
    bool wait;
    if (!to || api_param_bool(r, "wait", true, &wait) < 0)
        return;
    struct vm *vm = vm_find(a, name);
    if (!vm) {
        api_failf(r, ERR_NOT_FOUND, NULL, "no VM named \"%s\" on host %s", name, a->name);
        return;
    }
    struct migrate_tuning t;
    char err[512];
    if (tuning_from_json(json_object_get(r->params, "tuning"), &t, err, sizeof err) < 0) {
        api_failf(r, ERR_INVALID, NULL, "%s", err);
        return;
    }
    const char *peer_name, *peer_addr;
    if (resolve_target(r, to, &peer_name, &peer_addr) < 0)
        return;
    if (peer_name && !strcmp(peer_name, a->name)) {
        api_failf(r, ERR_INVALID, NULL, "VM %s is already on host %s", name, a->name);
        return;
    }
    if (!a->settings.migration_outgoing) {
        api_failf(r, ERR_DENIED, "enable it: vmove host set --migration-outgoing on",
                  "outgoing migration is disabled on host %s", a->name);
        return;
    }
    if (!a->tls_client) {
        api_failf(r, ERR_UNAVAILABLE, "start vmoved with --listen and --tls-dir",
                  "host %s has no TLS identity to talk to other hosts", a->name);
        return;
    }
    if (vm->state != VM_RUNNING && vm->state != VM_PAUSED) {
        api_failf(r, ERR_STATE, NULL, "VM %s is %s; live migration moves a running VM", name, vm_state_name(vm->state));
        return;
    }
    struct job *busy = job_active_for_vm(a, name);
    if (busy) {
        api_failf(r, ERR_STATE, NULL, "VM %s is busy with job %lld (%s)", name, (long long)busy->id, busy->ops->kind);
        return;
    }
    json_t *params = json_pack("{s:s, s:o}", "to", to, "tuning", tuning_to_json(&t));
    struct job *job = job_create(a, &migrate_ops, name, params);
    struct migration *m = migration_new(a, vm, job, peer_name, peer_addr);
    m->tuning = t;
    m->cur_downtime_ms = t.downtime_ms;
    job_answer(job, r, wait);

    vm_set_state(vm, VM_MIGRATING, "live migration started");
    vm_set_migration(vm, json_pack("{s:s, s:I, s:s?, s:s, s:s}", "role", "source", "job", (json_int_t)job->id,
                                   "peer", peer_name, "addr", peer_addr, "phase", "prepare"));
    struct vm_hooks h = {on_src_event, on_src_gone, m};
    vm_set_hooks(vm, &h);
    job_set_phase(job, "prepare");
    m->peer = peer_connect(a, peer_name, peer_addr, on_peer_closed, m);
    char via[64];
    snprintf(via, sizeof via, "%.*s", (int)(strrchr(peer_addr, ':') ? strrchr(peer_addr, ':') - peer_addr : 0), peer_addr);
    json_t *cfg = vm_config_to_json(&vm->cfg);
    peer_call(m->peer, "migrate.prepare",
              json_pack("{s:o, s:o, s:s, s:s, s:I}", "config", cfg, "tuning", tuning_to_json(&t), "accel",
                        accel_kind_name(a->accel.kind), "via", via, "job", (json_int_t)job->id),
              PREPARE_TIMEOUT_MS, on_prepared, m);
}

/* ---- recovery after a restart ----------------------------------------- */

static void on_recover_status(void *arg, json_t *info, const qmp_error_t *err);

static void recover_wait_qmp(struct migration *m)
{
    if (m->vm->qmp && qmp_is_ready(m->vm->qmp)) {
        qmp_command(m->vm->qmp, "query-migrate", NULL, 10000, on_recover_status, m);
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
        qmp_command(m->vm->qmp, "migrate_cancel", NULL, 10000, NULL, NULL);
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
            peer_call(m->peer, "migrate.resolve", json_pack("{s:s}", "name", m->name), 10000, on_resolved_rollback, m);
            continue;
        }
        m->peer = peer_connect(a, m->peer_name, m->peer_addr, NULL, NULL);
        m->recovering = true;
        arm_timer(m, 0);
    }
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
    {"vm.move", vm_move, false},
    {NULL, NULL, false},
};
