/* The source side of a migration: transfer: progress, convergence, QEMU started. */
#include "migrate/src.h"

#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "migrate/migrate_net.h"
#include "vm/vm.h"

/* ---- transfer: progress and convergence ------------------------------- */

static json_t *progress_json(struct migration *m, const struct qmon_migrate_stats *s)
{
    const struct qmon_migrate_ram *ram = &s->ram;
    double total = (double)ram->total;
    double remaining = (double)ram->remaining;
    double rate = ram->mbps * 1e6 / 8;
    double page = (double)ram->page_size;
    double dirty = (double)ram->dirty_pages_rate * (page ? page : 4096);
    json_t *p = json_pack("{s:s, s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:I, s:I, s:I, s:i, s:I}",
        "phase", migrate_src_phase_names[m->phase], "status", s->status_name,
        "ram_total", (json_int_t)total, "ram_remaining", (json_int_t)remaining,
        "bytes_sent", (json_int_t)ram->transferred,
        "percent", total > 0 ? 100.0 * (total - remaining) / total : 0.0, "rate_Bps", rate, "dirty_rate_Bps", dirty,
        "pass", (json_int_t)ram->dirty_sync_count,
        "expected_downtime_ms", (json_int_t)s->expected_downtime,
        "elapsed_ms", (json_int_t)(now_ms() - m->t_start), "downtime_limit_ms", m->cur_downtime_ms,
        "throttle_pct", (json_int_t)s->cpu_throttle_percentage);
    json_object_set_new(p, "eta_s", rate > 0 ? json_real(remaining / rate) : json_null());
    json_object_set_new(p, "converging", json_boolean(migrate_policy_converging(&m->policy)));
    json_object_set_new(p, "policy_actions", json_incref(m->actions));
    return p;
}

/* The policy decides (src/migrate/policy.c); here its decision is carried out. */
static void run_policy(struct migration *m, const struct qmon_migrate_stats *s)
{
    struct migrate_policy_input in = {
        .now_ms = now_ms(), .elapsed_ms = now_ms() - m->t_start, .downtime_limit_ms = m->cur_downtime_ms,
        .failed = m->failure != NULL, .dest = migrate_src_dest(m), .converge = m->tuning.converge,
        .postcopy_ok = m->tuning.postcopy && !m->postcopy_starting, .max_downtime_ms = m->tuning.max_downtime_ms, .max_duration_s = m->tuning.max_duration_s,
        .state = m->policy,
    };
    migrate_policy_read_stats(s->raw, &in);
    struct policy_action act = migrate_policy_decide(&in);
    m->policy = act.state;
    if (act.downtime_ms > 0) {
        log_info("%s: %s", m->name, act.note);
        json_array_append_new(m->actions, json_string(act.note));
        m->cur_downtime_ms = act.downtime_ms;
        struct qmon_migrate_params p = {.has_downtime_limit = true, .downtime_limit = (uint64_t)act.downtime_ms};
        qmon_migrate_set_parameters(migrate_src_mon(m), &m->owner, &p, 5000, NULL, NULL);
    }
    if (act.postcopy)
        migrate_src_start_postcopy(m, act.note);
    if (act.cancel)
        migrate_src_fail(m, proto_error(ERR_TIMEOUT, act.hint, "%s", act.reason));
}

/* --bandwidth: the rate QEMU achieved, once a second, decides its next
 * max-bandwidth (rate_cap.h). */
static void hold_bandwidth(struct migration *m, const struct qmon_migrate_stats *s)
{
    if (m->phase != PH_TRANSFER || !m->tuning.bandwidth)
        return;
    uint64_t next = rate_cap_sample(&m->rate_cap, now_ms(), s->ram.transferred, s->ram.remaining);
    if (next) {
        log_debug("%s: max-bandwidth %llu B/s to hold %llu B/s", m->name, (unsigned long long)next,
                  (unsigned long long)m->tuning.bandwidth);
        struct qmon_migrate_params p = {.has_max_bandwidth = true, .max_bandwidth = next};
        qmon_migrate_set_parameters(migrate_src_mon(m), &m->owner, &p, 5000, NULL, NULL);
    }
    if (rate_cap_unreachable(&m->rate_cap) && !m->rate_cap_said) {
        m->rate_cap_said = true;
        char note[256];
        snprintf(note, sizeof note, "--bandwidth %.0f Mbit/s cannot be held with %d multifd channels (they send "
                 "about %llu Mbit/s at least): use fewer (--parallel)", (double)m->tuning.bandwidth * 8 / 1e6,
                 m->tuning.channels,
                 (unsigned long long)((uint64_t)m->tuning.channels * RATE_CAP_OVERSHOOT_PER_CHANNEL * 8 / 1000000));
        log_warn("%s: %s", m->name, note);
        json_array_append_new(m->actions, json_string(note));
    }
}

void migrate_src_poll_now(evutil_socket_t fd, short what, void *arg)
{
    struct migration *m = arg;
    if (m->recovering) {
        migrate_src_recover_wait_qmp(m);
        return;
    }
    if (m->phase == PH_RESERVING) {
        migrate_src_reserve(m);
        return;
    }
    if (m->phase == PH_RESOLVE) {
        peer_close(m->peer);
        m->peer = peer_connect(m->agent, m->peer_name, m->peer_addr, NULL, NULL);
        migrate_src_mp(m, "migrate.resolve", json_pack("{s:s}", "name", m->name), 10000, migrate_src_on_resolved);
        return;
    }
    if (m->phase == PH_TRANSFER && m->vm && m->vm->qmp)
        qmon_query_migrate(m->vm->qmp, &m->owner, 10000, migrate_src_on_poll, m);
    if ((m->phase == PH_POSTCOPY || m->phase == PH_POSTCOPY_PAUSED) &&
        qmon_query_migrate(migrate_src_mon(m), &m->owner, 10000, migrate_src_on_postcopy_poll, m) < 0)
        migrate_src_arm_timer(m, POLL_MS);
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
void migrate_src_abort_stuck_connections(struct migration *m)
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
                     migrate_src_dest(m), n, m->dst_ip, ports[i]);
    }
}

void migrate_src_on_poll(void *arg, const struct qmon_migrate_stats *s, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (m->phase != PH_TRANSFER)
        return;
    /* Cancelled, yanked, and still not wound down: a thread waits on a
     * socket yank does not own (a multifd TLS handshake, while QMP still
     * answers). */
    if (m->fail_ms && now_ms() - m->fail_ms > CANCEL_GRACE_MS)
        migrate_src_abort_stuck_connections(m);
    if (err) {
        /* QEMU not answering at all counts as no progress: a migration thread
         * stuck on a dead link can hold the lock the monitor needs. */
        if (err->kind == QMP_ERR_TIMEOUT && !m->failure && now_ms() - m->last_progress_ms > STALL_MS)
            migrate_src_fail(m, proto_error(ERR_UNAVAILABLE, "check the migration network link between the hosts",
                                            "QEMU stopped answering while migrating to %s (%s): the link seems down",
                                            migrate_src_dest(m), err->desc));
        if (m->phase == PH_TRANSFER)
            migrate_src_arm_timer(m, POLL_MS);
        return;
    }
    const char *st = s->status_name;
    if (s->status == QMON_MIG_COMPLETED) {
        migrate_src_switchover(m, s);
        return;
    }
    if (s->status == QMON_MIG_FAILED || s->status == QMON_MIG_CANCELLED || s->status == QMON_MIG_NONE) {
        if (!m->failure) {
            const char *desc = s->error_desc;
            m->failure = proto_error(ERR_QEMU, "the VM keeps running on this host; check the destination and the migration network",
                                     "migration to %s failed: %s", migrate_src_dest(m), desc ? desc : st);
        }
        migrate_src_rollback(m);
        return;
    }
    if (qmon_mig_status_active(s->status)) {
        uint64_t sent = s->ram.transferred;
        if (sent != m->last_transferred || !m->last_progress_ms) {
            m->last_transferred = sent;
            m->last_progress_ms = now_ms();
        } else if (now_ms() - m->last_progress_ms > STALL_MS && s->status != QMON_MIG_CANCELLING) {
            migrate_src_fail(m, proto_error(ERR_UNAVAILABLE, "check the migration network link between the hosts",
                                            "no migration data moved for %d s: the link to %s seems down", STALL_MS / 1000, migrate_src_dest(m)));
        }
        run_policy(m, s);
        hold_bandwidth(m, s);
        if (m->phase == PH_TRANSFER)
            job_set_progress(m->job, progress_json(m, s));
    }
    if (m->phase == PH_TRANSFER)
        migrate_src_arm_timer(m, POLL_MS);
}

static void on_migrate_started(void *arg, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (err) {
        m->failure = proto_error(ERR_QEMU, NULL, "QEMU could not start the migration: %s", err->desc);
        migrate_src_rollback(m);
        return;
    }
    m->t_transfer = now_ms();
    migrate_src_arm_timer(m, POLL_MS);
}

static void on_src_params(void *arg, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (err) {
        m->failure = proto_error(ERR_QEMU, NULL, "QEMU refused the migration parameters: %s", err->desc);
        migrate_src_rollback(m);
        return;
    }
    if (m->job->cancel_requested) {
        m->failure = proto_error(ERR_CANCELLED, NULL, "migration of %s cancelled", m->name);
        migrate_src_rollback(m);
        return;
    }
    migrate_src_set_phase(m, PH_TRANSFER);
    if (m->tuning.quick) {
        char *file = xasprintf("file:%s", m->state_path);
        qmon_migrate(migrate_src_mon(m), &m->owner, file, 10000, on_migrate_started, m);
        free(file);
        return;
    }
    char *uri = xasprintf("tcp:%s:%d", m->dst_ip, m->dst_port);
    qmon_migrate(migrate_src_mon(m), &m->owner, uri, 10000, on_migrate_started, m);
    free(uri);
}

static void on_src_caps(void *arg, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (err) {
        m->failure = proto_error(ERR_QEMU, NULL, "QEMU refused the migration capabilities: %s", err->desc);
        migrate_src_rollback(m);
        return;
    }
    struct qmon_migrate_params p = tuning_qmon_parameters(&m->tuning);
    /* --bandwidth: QEMU's multifd sends more than its max-bandwidth; start
     * below it, the polls correct the rest (rate_cap.h). */
    rate_cap_init(&m->rate_cap, m->tuning.bandwidth, m->tuning.channels);
    if (m->tuning.bandwidth)
        p.max_bandwidth = m->rate_cap.param;
    char *id = m->tls ? xasprintf("vmove-tls-%lld", (long long)m->job->id) : NULL;
    p.tls_creds = m->tls ? id : "";     /* "": TLS off */
    p.tls_hostname = m->tls ? m->dst_name : NULL;
    qmon_migrate_set_parameters(migrate_src_mon(m), &m->owner, &p, 10000, on_src_params, m);
    free(id);
}

static void on_src_params_reset(void *arg, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (err) {
        m->failure = proto_error(ERR_QEMU, NULL, "QEMU refused to reset its migration parameters: %s", err->desc);
        migrate_src_rollback(m);
        return;
    }
    struct qmon_cap_state caps[TUNING_N_CAPS];
    size_t n = tuning_qmon_capabilities(&m->tuning, caps);
    qmon_migrate_set_capabilities(migrate_src_mon(m), &m->owner, caps, n, 10000, on_src_caps, m);
}

/* QEMU keeps migration parameters for the life of the process, and checks a
 * new capability against the parameters it holds, not against those that
 * follow it.  A QEMU that arrived here by a TLS migration still holds that
 * migration's tls-creds (and maybe its multifd compression), so enabling
 * mapped-ram for a quick migration would be refused ("Mapped-ram only
 * available for non-compressed non-TLS multifd migration").  Both are reset
 * first; this move's own values are set after the capabilities. */
void migrate_src_set_capabilities(struct migration *m)
{
    struct qmon_migrate_params reset = {
        .has_multifd_compression = true, .multifd_compression = QMON_COMPRESS_NONE, .tls_creds = "",
    };
    qmon_migrate_set_parameters(migrate_src_mon(m), &m->owner, &reset, 10000, on_src_params_reset, m);
}

/* The route to the destination's migration address must leave through an
 * allowed network of ours too. */
json_t *migrate_src_check_route(struct migration *m)
{
    char src_ip[64];
    if (migrate_net_route_source(m->dst_ip, src_ip, sizeof src_ip) < 0)
        return proto_error(ERR_UNAVAILABLE, NULL, "no route from %s to %s's migration address %s", m->agent->name,
                           migrate_src_dest(m), m->dst_ip);
    if (settings_migration_allowed(&m->agent->settings, migrate_net_ip(src_ip)))
        return NULL;
    char nets[512];
    settings_migration_networks_str(&m->agent->settings, nets, sizeof nets);
    return proto_error(ERR_DENIED, "allow the network with `vmove host set --migration-network CIDR`, or fix the routes",
                       "migration from %s to %s would use %s -> %s, outside %s's allowed migration networks (%s)",
                       m->agent->name, migrate_src_dest(m), src_ip, m->dst_ip, m->agent->name, nets);
}
