/* The source side of a migration: queueing, the prepare step and its answer, compression. */
#include "migrate/src.h"

#include <string.h>
#include <time.h>

#include "block/image.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/acl.h"
#include "core/agent.h"
#include "core/audit.h"
#include "core/jobs.h"
#include "core/limits.h"
#include "migrate/check.h"
#include "migrate/link_probe.h"
#include "migrate/wire.h"
#include "vm/vm.h"

/* ---- queueing: a local slot, then a slot at the destination ------------ */

static void on_local_slot(void *arg);
static void send_prepare(struct migration *m);
static enum wire_postcopy postcopy_wanted(const struct migration *m);
static const char *via_of(struct migration *m);
static void on_probe_sink(void *arg, json_t *result, json_t *error);
static void begin_migration(struct migration *m);
static void on_prepared(void *arg, json_t *result, json_t *error);

/* Queued until this host has a free live-migration slot (host/limits.c). */
struct migration *migrate_src_enqueue_migration(struct agent *a, struct job *job, struct vm *vm, const char *peer_name,
                                                const char *peer_addr, const struct migrate_tuning *t)
{
    struct migration *m = migrate_src_migration_new(a, vm, job, peer_name, peer_addr);
    m->tuning = *t;
    m->cur_downtime_ms = t->downtime_ms;
    m->phase = PH_QUEUED;
    limits_enqueue(a, SLOT_LIVE, job, on_local_slot, m);
    /* The queue is served on the next loop turn: only a job that will
     * really wait is shown as queued. */
    int pos = limits_position(a, job);
    if (pos > limits_max(a, SLOT_LIVE) - limits_in_use(a, SLOT_LIVE))
        job_set_waiting(job, pos, a->name);
    return m;
}

/* A user's move must reach the destination while its token lives: the
 * destination binds the token to this job at the first reserve, and only
 * the wait in this host's own queue can outlast it. */
static bool token_expired(const struct migration *m, long long *ago)
{
    json_t *p = m->move_token ? json_loads(json_string_value(json_object_get(m->move_token, "payload")), 0, NULL) : NULL;
    long long exp = json_integer_value(json_object_get(p, "exp"));
    json_decref(p);
    *ago = (long long)time(NULL) - exp;
    return m->move_token && *ago > 0;
}

static void on_local_slot(void *arg)
{
    struct migration *m = arg;
    long long ago;
    limits_job_holder(m->job, m->local_holder, sizeof m->local_holder);   /* released by migration_free */
    if (token_expired(m, &ago)) {
        m->failure = proto_error(ERR_STATE, "move it again (or raise --max-live-migrations on this host)",
                                 "the move of %s waited in host %s's queue until its user's move token expired "
                                 "(%lld s ago); nothing was touched", m->name, m->agent->name, ago);
        m->vm = NULL;
        migrate_src_end_failed(m);
        return;
    }
    m->phase = PH_RESERVING;
    m->t_reserving = now_ms();
    job_set_phase(m->job, "reserving");
    m->peer = peer_connect(m->agent, m->peer_name, m->peer_addr, NULL, NULL);
    migrate_src_reserve(m);
    /* Jobs behind us in the local queue move up one place. */
    for (struct migration *o = m->agent->migrations; o; o = o->next)
        if (o->phase == PH_QUEUED)
            job_set_waiting(o->job, limits_position(o->agent, o->job), o->agent->name);
}

/* A move refused by the destination at its reservation or prepare: the
 * error lists every problem the pre-flight check finds (check.h), not only
 * the first.  The check's items about the VM itself and this move's own
 * slot are left out (the VM is this move's, and busy with it). */
static void on_failure_checked(void *arg, json_t *items)
{
    struct migration *m = arg;
    json_t *problems = json_array();
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) {
        const char *item = json_string_value(json_object_get(it, "item"));
        if (!json_is_true(json_object_get(it, "ok")) && item && strcmp(item, "vm"))
            json_array_append(problems, it);
    }
    json_decref(items);
    if (qmon_owner_alive(&m->owner)) {
        if (m->failure && json_array_size(problems))
            json_object_set(m->failure, "checks", problems);
        migrate_src_end_failed(m);
    }
    json_decref(problems);
    migrate_src_m_release(m);
}

static void end_failed_with_checks(struct migration *m)
{
    qmon_owner_ref(&m->owner);   /* until the check answers */
    m->phase = PH_PREPARE;       /* a cancel meanwhile waits for it: the move ends then */
    json_t *tuning = tuning_to_json(&m->tuning);
    struct migrate_check_req q = {m->name, m->peer_name ? m->peer_name : m->peer_addr, tuning,
                                  migrate_src_user_of(m), m->move_token};
    migrate_check(m->agent, &q, on_failure_checked, m);
    json_decref(tuning);
}

/* --max-wait: a reservation that has waited that long fails with the last
 * reason it waited for; the VM was never touched. */
static bool reserve_waited_too_long(struct migration *m, const char *why, bool queued_there)
{
    if (now_ms() - m->t_reserving < (uint64_t)m->tuning.max_wait_s * 1000)
        return false;
    if (queued_there)   /* our place in the destination's queue goes back */
        migrate_src_mp(m, "migrate.unreserve", json_pack("{s:I}", "job", (json_int_t)m->job->id), 5000,
                       migrate_src_on_unreserved);
    m->failure = proto_error(ERR_TIMEOUT, "fix that, then move again (or raise --max-wait)",
                             "host %s did not take the move of %s within --max-wait %d s: %s", migrate_src_dest(m),
                             m->name, m->tuning.max_wait_s, why ? why : "no answer");
    m->vm = NULL;
    migrate_src_end_failed(m);
    return true;
}

static void on_reserved(void *arg, json_t *result, json_t *error)
{
    struct migration *m = arg;
    if (m->phase != PH_RESERVING)
        return;
    if (error) {
        const char *code = json_string_value(json_object_get(error, "code"));
        if (code && (!strcmp(code, ERR_UNAVAILABLE) || !strcmp(code, ERR_TIMEOUT))) {
            /* The destination is unreachable for now: keep our place, say
             * why, and retry until --max-wait. */
            const char *why = json_string_value(json_object_get(error, "message"));
            if (reserve_waited_too_long(m, why, false))
                return;
            job_set_waiting_why(m->job, 0, migrate_src_dest(m), why);
            peer_close(m->peer);
            m->peer = peer_connect(m->agent, m->peer_name, m->peer_addr, NULL, NULL);
            migrate_src_arm_timer(m, 2000);
            return;
        }
        m->failure = json_deep_copy(error);
        m->vm = NULL;           /* never touched */
        end_failed_with_checks(m);
        return;
    }
    struct wire_reserve_reply rep;
    json_t *bad = NULL;
    if (wire_reserve_reply_from_json(result, &rep, &bad) < 0) {
        m->failure = bad;
        /* Granted or not, we cannot tell: give the place back. */
        migrate_src_mp(m, "migrate.unreserve", json_pack("{s:I}", "job", (json_int_t)m->job->id), 5000,
                       migrate_src_on_unreserved);
        m->vm = NULL;
        migrate_src_end_failed(m);
        return;
    }
    if (rep.granted) {
        /* This host must allow sending VMs to that host: the host its
         * certificate proves, not the name its reply states. */
        const char *dst = peer_verified_name(m->peer);
        if (dst && strcmp(dst, rep.host)) {
            m->failure = proto_error(ERR_DENIED, "check the peer's address: vmove peer list",
                                     "the destination's certificate is host %s's, but it calls itself %s", dst,
                                     rep.host);
            migrate_src_mp(m, "migrate.unreserve", json_pack("{s:I}", "job", (json_int_t)m->job->id), 5000,
                           migrate_src_on_unreserved);
            m->vm = NULL;
            migrate_src_end_failed(m);
            return;
        }
        char *p = xasprintf("host:%s", dst ? dst : "?");
        bool ok = dst && acl_allows(m->agent, p, RIGHT_MIGRATE_OUT);
        audit_record(m->agent, p, "migrate.out", m->name, m->peer_addr, ok,
                     ok ? NULL : "destination host lacks migrate.out here");
        if (!ok) {
            m->failure = acl_denial(m->agent, p, RIGHT_MIGRATE_OUT);
            free(p);
            migrate_src_mp(m, "migrate.unreserve", json_pack("{s:I}", "job", (json_int_t)m->job->id), 5000, migrate_src_on_unreserved);
            m->vm = NULL;
            end_failed_with_checks(m);
            return;
        }
        free(p);
        begin_migration(m);
        return;
    }
    char why[128];
    snprintf(why, sizeof why, "host %s has no free live-migration slot (position %d in its queue)",
             migrate_src_dest(m), rep.position);
    if (reserve_waited_too_long(m, why, true))
        return;
    job_set_waiting_why(m->job, rep.position, migrate_src_dest(m), why);
    migrate_src_arm_timer(m, RESERVE_RETRY_MS);
}

void migrate_src_reserve(struct migration *m)
{
    migrate_src_mp(m, "migrate.reserve",
                   migrate_src_with_user(m, json_pack("{s:I, s:s}", "job", (json_int_t)m->job->id, "vm", m->name)), 10000,
                   on_reserved);
}

/* Shared-nothing: where the destination puts the copies, and their sizes
 * (learned by probe_sizes). */
static json_t *storage_request(struct migration *m)
{
    json_t *sizes = json_object();
    for (size_t i = 0; i < m->vm->cfg.n_disks; i++)
        json_object_set_new(sizes, m->vm->cfg.disks[i].id, json_integer((json_int_t)migrate_src_disk_size(m, i)));
    return json_pack("{s:s, s:o}", "dir", m->tuning.with_storage, "sizes", sizes);
}

static void probe_sizes(struct migration *m);

static void on_disk_size(void *arg, const struct image_info *info, const char *err)
{
    struct migration *m = arg;
    m->size_op = NULL;
    if (!m->vm)
        return;   /* the VM's end is being handled; nothing to prepare */
    /* 0 when qemu-img cannot tell: the destination refuses the size. */
    json_object_set_new(m->storage_sizes, m->vm->cfg.disks[m->size_next].id,
                        json_integer(info ? (json_int_t)info->layers[0].virtual_size : 0));
    m->size_next++;
    probe_sizes(m);
}

/* qemu-img info of each disk, one after the other, in children the loop
 * does not wait for (a disk may sit on stalled storage); then prepare.
 * migrate_src_migration_free kills the one running. */
static void probe_sizes(struct migration *m)
{
    if (m->size_next < m->vm->cfg.n_disks) {
        m->size_op = image_info_async(m->agent->base, m->vm->cfg.disks[m->size_next].path, NULL, on_disk_size, m);
        return;
    }
    send_prepare(m);
}

/* Both slots held: the migration proper starts, and only now is the VM touched. */
static void begin_migration(struct migration *m)
{
    struct agent *a = m->agent;
    struct vm *vm = vm_find(a, m->name);
    if (!vm || vm != m->vm || (vm->state != VM_RUNNING && vm->state != VM_PAUSED)) {
        migrate_src_mp(m, "migrate.unreserve", json_pack("{s:I}", "job", (json_int_t)m->job->id), 5000,
                  migrate_src_on_unreserved);
        m->failure = proto_error(ERR_STATE, NULL, "VM %s is %s now; nothing to migrate", m->name,
                                 vm ? vm_state_name(vm->state) : "gone");
        m->vm = NULL;
        migrate_src_end_failed(m);
        return;
    }
    m->t_start = now_ms();
    job_set_running(m->job);
    vm_set_state(vm, VM_MIGRATING, "live migration started");
    vm_set_migration(vm, json_pack("{s:s, s:I, s:s?, s:s, s:s}", "role", "source", "job", (json_int_t)m->job->id,
                                   "peer", m->peer_name, "addr", m->peer_addr, "phase", "prepare"));
    struct vm_hooks h = {migrate_src_on_src_event, migrate_src_on_src_gone, m};
    vm_set_hooks(vm, &h);
    migrate_src_set_phase(m, PH_PREPARE);
    peer_set_closed_hook(m->peer, migrate_src_on_peer_closed, m);
    if (!strcmp(m->tuning.compress, "auto") && !m->tuning.quick) {
        migrate_src_mp(m, "migrate.probe",
                       migrate_src_with_user(m, json_pack("{s:s, s:s, s:I}", "via", via_of(m), "vm", m->name, "job",
                                                          (json_int_t)m->job->id)), 10000, on_probe_sink);
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
    if (m->tuning.with_storage[0] && !m->storage_sizes) {
        m->storage_sizes = json_object();
        m->size_next = 0;
        probe_sizes(m);
        return;
    }
    if (!strcmp(m->tuning.compress, "auto"))
        snprintf(m->tuning.compress, sizeof m->tuning.compress, "none");
    struct wire_prepare_req msg = {
        .config = vm_config_to_json(&m->vm->cfg),
        .tuning = tuning_to_json(&m->tuning),
        .accel = accel_kind_name(a->accel.kind),
        .via = via_of(m),
        .job = (json_int_t)m->job->id,
        .quick = m->tuning.quick,
        .storage = m->tuning.with_storage[0] ? storage_request(m) : NULL,
        .insecure_ok = a->settings.allow_insecure_migration,
        .postcopy = postcopy_wanted(m),
        /* A duration, not a time: the hosts' clocks need not agree. */
        .uptime_ms = m->vm->started_ms ? (json_int_t)(wall_ms() - m->vm->started_ms) : 0,
    };
    json_t *params = wire_prepare_req_to_json(&msg);
    json_decref(msg.config);
    json_decref(msg.tuning);
    json_decref(msg.storage);
    migrate_src_mp(m, "migrate.prepare", migrate_src_with_user(m, params), PREPARE_TIMEOUT_MS, on_prepared);
}

/* Post-copy: asked for only if this host allows it (the destination checks
 * its own setting). */
static enum wire_postcopy postcopy_wanted(const struct migration *m)
{
    if (!m->agent->settings.allow_postcopy || !tuning_wants_postcopy(&m->tuning))
        return WIRE_POSTCOPY_NO;
    return m->tuning.converge == CONVERGE_POSTCOPY ? WIRE_POSTCOPY_REQUIRED : WIRE_POSTCOPY_OPTIONAL;
}

/* ---- the destination's answer to prepare ------------------------------ */

static void on_src_tls(void *arg, const qmp_error_t *err);

static void on_prepared(void *arg, json_t *result, json_t *error)
{
    struct migration *m = arg;
    if (error) {
        m->failure = json_deep_copy(error);
        end_failed_with_checks(m);       /* nothing was started anywhere */
        return;
    }
    if (m->tuning.quick) {
        migrate_src_quick_save(m);
        return;
    }
    struct wire_prepare_reply rep;
    json_t *problem = NULL;
    if (wire_prepare_reply_from_json(result, &rep, &problem) < 0) {
        m->failure = problem;
        migrate_src_rollback(m);   /* the destination may have prepared: it aborts */
        return;
    }
    snprintf(m->dst_ip, sizeof m->dst_ip, "%s", rep.ip);
    m->dst_port = rep.port;
    m->nbd_port = rep.nbd_port;
    /* Plaintext only if this host allows it too, whatever the reply says: a
     * destination that will not encrypt fails the move instead. */
    bool tls = rep.tls || !m->agent->settings.allow_insecure_migration;
    bool plaintext_offered = !rep.tls && !m->tuning.quick;
    snprintf(m->dst_name, sizeof m->dst_name, "%.*s", (int)sizeof m->dst_name - 1, rep.host);
    /* Post-copy is set up on both ends only if both allow it. */
    bool pc = postcopy_wanted(m) != WIRE_POSTCOPY_NO;
    m->tuning.postcopy = pc && rep.postcopy;
    json_t *pc_problem = NULL;
    if (!m->tuning.postcopy && m->tuning.converge == CONVERGE_POSTCOPY)
        pc_problem = proto_error(ERR_DENIED, "allow it on both hosts: vmove host set --postcopy allow",
                              "host %s did not set up post-copy, which --converge postcopy needs", m->dst_name);
    if (pc && !rep.postcopy)
        json_array_append_new(m->actions, json_string("post-copy not allowed by the destination: pre-copy only"));
    wire_prepare_reply_clear(&rep);
    problem = pc_problem ? pc_problem : migrate_src_check_route(m);
    if (!problem && tls && plaintext_offered)
        problem = proto_error(ERR_DENIED, "allow it on both hosts, or neither: vmove host set --allow-insecure-migration on|off",
                              "host %s offered an unencrypted migration stream, and host %s does not allow one",
                              m->dst_name, m->agent->name);
    if (!problem && m->job->cancel_requested)
        problem = proto_error(ERR_CANCELLED, NULL, "migration of %s cancelled", m->name);
    if (problem) {
        m->failure = problem;
        migrate_src_rollback(m);
        return;
    }
    m->tls = tls;
    if (m->tls) {
        char *id = xasprintf("vmove-tls-%lld", (long long)m->job->id);
        struct qmon_tls_creds creds = {id, m->agent->qemu_tls_dir, .server = false, .verify_peer = true};
        qmon_object_add(migrate_src_mon(m), &m->owner, &creds, 10000, on_src_tls, m);
        free(id);
        return;
    }
    on_src_tls(m, NULL);
}

/* TLS credentials in place (or not needed): disks first, or memory. */
static void on_src_tls(void *arg, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (err) {
        m->failure = proto_error(ERR_QEMU, NULL, "QEMU could not load the TLS credentials: %s", err->desc);
        migrate_src_rollback(m);
        return;
    }
    if (m->tuning.with_storage[0]) {
        migrate_src_start_mirrors(m);
        return;
    }
    migrate_src_set_capabilities(m);
}

/* ---- choosing compression from the measured link ---------------------- */

/* Compression pays where the link, not the CPU, limits the transfer. */
#define COMPRESS_BELOW_BPS (1.5e9 / 8)     /* between 1 GbE (compress) and 10 GbE (do not) */
#define PROBE_MS 300

static void on_link_measured(void *arg, double Bps)
{
    struct migration *m = arg;
    m->probe = NULL;
    if (qmon_owner_alive(&m->owner) && m->phase == PH_PREPARE) {
        const char *choice = Bps > 0 && Bps < COMPRESS_BELOW_BPS && m->tuning.channels > 1 ? "zstd" : "none";
        snprintf(m->tuning.compress, sizeof m->tuning.compress, "%s", choice);
        char *msg = Bps > 0 ? xasprintf("link to %s measured at %.2f Gbit/s: compression %s", migrate_src_dest(m), Bps * 8 / 1e9,
                                        choice)
                            : xasprintf("link to %s could not be measured: compression none", migrate_src_dest(m));
        log_info("%s: %s", m->name, msg);
        json_array_append_new(m->actions, json_string(msg));
        free(msg);
        send_prepare(m);
    }
    migrate_src_m_release(m);
}

static void on_probe_sink(void *arg, json_t *result, json_t *error)
{
    struct migration *m = arg;
    if (error) {
        /* A refusal (rights, disabled, network) is prepare's to report in full. */
        send_prepare(m);
        return;
    }
    qmon_owner_ref(&m->owner);   /* held by the probe until it reports */
    m->probe = link_probe_run(m->agent->base, json_string_value(json_object_get(result, "ip")),
                              (int)json_integer_value(json_object_get(result, "port")), PROBE_MS, on_link_measured, m);
}
