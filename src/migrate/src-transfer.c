/* The source side of a migration: transfer: progress, convergence, QEMU started. */
#include "migrate/src.h"

#include <string.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "migrate/migrate_net.h"
#include "vm/vm.h"

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
        "phase", migrate_src_phase_names[m->phase], "status", json_string_value(json_object_get(info, "status")),
        "ram_total", (json_int_t)total, "ram_remaining", (json_int_t)remaining,
        "bytes_sent", json_integer_value(json_object_get(ram, "transferred")),
        "percent", total > 0 ? 100.0 * (total - remaining) / total : 0.0, "rate_Bps", rate, "dirty_rate_Bps", dirty,
        "pass", json_integer_value(json_object_get(ram, "dirty-sync-count")),
        "expected_downtime_ms", json_integer_value(json_object_get(info, "expected-downtime")),
        "elapsed_ms", (json_int_t)(now_ms() - m->t_start), "downtime_limit_ms", m->cur_downtime_ms,
        "throttle_pct", json_integer_value(json_object_get(info, "cpu-throttle-percentage")));
    json_object_set_new(p, "eta_s", rate > 0 ? json_real(remaining / rate) : json_null());
    json_object_set_new(p, "converging", json_boolean(migrate_policy_converging(&m->policy)));
    json_object_set_new(p, "policy_actions", json_incref(m->actions));
    return p;
}

/* The policy decides (src/migrate/policy.c); here its decision is carried out. */
static void run_policy(struct migration *m, json_t *info)
{
    struct migrate_policy_input in = {
        .now_ms = now_ms(), .elapsed_ms = now_ms() - m->t_start, .downtime_limit_ms = m->cur_downtime_ms,
        .failed = m->failure != NULL, .dest = migrate_src_dest(m), .converge = m->tuning.converge,
        .max_downtime_ms = m->tuning.max_downtime_ms, .max_duration_s = m->tuning.max_duration_s,
        .state = m->policy,
    };
    migrate_policy_read_stats(info, &in);
    struct policy_action act = migrate_policy_decide(&in);
    m->policy = act.state;
    if (act.downtime_ms > 0) {
        log_info("%s: %s", m->name, act.note);
        json_array_append_new(m->actions, json_string(act.note));
        m->cur_downtime_ms = act.downtime_ms;
        migrate_src_mq(m, "migrate-set-parameters", json_pack("{s:i}", "downtime-limit", act.downtime_ms), 5000, NULL);
    }
    if (act.cancel)
        migrate_src_fail(m, proto_error(ERR_TIMEOUT, act.hint, "%s", act.reason));
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
    if (m->phase == PH_MIRROR || m->ending_mirrors) {
        migrate_src_mq(m, "query-block-jobs", NULL, 10000, migrate_src_on_mirror_poll);
        return;
    }
    if (m->phase == PH_RESOLVE) {
        peer_close(m->peer);
        m->peer = peer_connect(m->agent, m->peer_name, m->peer_addr, NULL, NULL);
        migrate_src_mp(m, "migrate.resolve", json_pack("{s:s}", "name", m->name), 10000, migrate_src_on_resolved);
        return;
    }
    if (m->phase == PH_TRANSFER && m->vm && m->vm->qmp)
        migrate_src_mq(m, "query-migrate", NULL, 10000, migrate_src_on_poll);
}

bool migrate_src_is_active(const char *st)
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

void migrate_src_on_poll(void *arg, json_t *info, const qmp_error_t *err)
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
    const char *st = json_string_value(json_object_get(info, "status"));
    if (!st)
        st = "none";
    if (!strcmp(st, "completed")) {
        migrate_src_switchover(m, info);
        return;
    }
    if (!strcmp(st, "failed") || !strcmp(st, "cancelled") || !strcmp(st, "none")) {
        if (!m->failure) {
            const char *desc = json_string_value(json_object_get(info, "error-desc"));
            m->failure = proto_error(ERR_QEMU, "the VM keeps running on this host; check the destination and the migration network",
                                     "migration to %s failed: %s", migrate_src_dest(m), desc ? desc : st);
        }
        migrate_src_rollback(m);
        return;
    }
    if (migrate_src_is_active(st)) {
        json_t *ram = json_object_get(info, "ram");
        uint64_t sent = (uint64_t)json_integer_value(json_object_get(ram, "transferred"));
        if (sent != m->last_transferred || !m->last_progress_ms) {
            m->last_transferred = sent;
            m->last_progress_ms = now_ms();
        } else if (now_ms() - m->last_progress_ms > STALL_MS && strcmp(st, "cancelling")) {
            migrate_src_fail(m, proto_error(ERR_UNAVAILABLE, "check the migration network link between the hosts",
                                            "no migration data moved for %d s: the link to %s seems down", STALL_MS / 1000, migrate_src_dest(m)));
        }
        run_policy(m, info);
        if (m->phase == PH_TRANSFER)
            job_set_progress(m->job, progress_json(m, info));
    }
    if (m->phase == PH_TRANSFER)
        migrate_src_arm_timer(m, POLL_MS);
}

static void on_migrate_started(void *arg, json_t *ret, const qmp_error_t *err)
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

static void on_src_params(void *arg, json_t *ret, const qmp_error_t *err)
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
        migrate_src_mq(m, "migrate", json_pack("{s:s}", "uri", "fd:vmove-state"), 10000, on_migrate_started);
        return;
    }
    char *uri = xasprintf("tcp:%s:%d", m->dst_ip, m->dst_port);
    migrate_src_mq(m, "migrate", json_pack("{s:s}", "uri", uri), 10000, on_migrate_started);
    free(uri);
}

void migrate_src_on_src_caps(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (err) {
        m->failure = proto_error(ERR_QEMU, NULL, "QEMU refused the migration capabilities: %s", err->desc);
        migrate_src_rollback(m);
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
    migrate_src_mq(m, "migrate-set-parameters", params, 10000, on_src_params);
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
