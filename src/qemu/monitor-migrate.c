/* Typed QMP migration commands (see qemu/monitor.h): migrate and
 * migrate-incoming, their capabilities and parameters, and query-migrate
 * parsed into struct qmon_migrate_stats. */
#include "qemu/monitor.h"

#include <string.h>

#include "common/util.h"
#include "qemu/monitor-internal.h"

/* QEMU's MigrationStatus, in the order of enum qmon_mig_status. */
static const char *const mig_status_names[] = {
    "none", "setup", "cancelling", "cancelled", "active", "postcopy-active", "postcopy-paused",
    "postcopy-recover-setup", "postcopy-recover", "completed", "failed", "colo", "pre-switchover", "device",
    "wait-unplug",
};
_Static_assert(ARRAY_LEN(mig_status_names) == QMON_MIG_UNKNOWN, "one name per migration status");

static const char *const cap_names[] = {
    "events", "multifd", "auto-converge", "return-path", "postcopy-ram", "pause-before-switchover",
    "switchover-ack", "zero-copy-send", "postcopy-preempt", "mapped-ram", "background-snapshot",
};
_Static_assert(ARRAY_LEN(cap_names) == QMON_CAP__COUNT, "one name per capability");

static const char *const compress_names[] = {"none", "zlib", "zstd"};

static enum qmon_mig_status mig_status(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(mig_status_names); i++)
        if (!strcmp(name, mig_status_names[i]))
            return (enum qmon_mig_status)i;
    return QMON_MIG_UNKNOWN;
}

bool qmon_mig_status_active(enum qmon_mig_status s)
{
    return s == QMON_MIG_SETUP || s == QMON_MIG_ACTIVE || s == QMON_MIG_PRE_SWITCHOVER || s == QMON_MIG_DEVICE ||
           s == QMON_MIG_WAIT_UNPLUG || s == QMON_MIG_CANCELLING;
}

bool qmon_mig_status_postcopy(enum qmon_mig_status s)
{
    return s == QMON_MIG_POSTCOPY_ACTIVE || s == QMON_MIG_POSTCOPY_PAUSED || s == QMON_MIG_POSTCOPY_RECOVER_SETUP ||
           s == QMON_MIG_POSTCOPY_RECOVER;
}

/* ---- query-migrate ------------------------------------------------------- */

static void parse_ram(struct qmon_parse *p, json_t *ram, struct qmon_migrate_ram *r)
{
    const char *w = "return.ram";
    r->transferred = qmon_uint(p, ram, w, "transferred", true);
    r->remaining = qmon_uint(p, ram, w, "remaining", true);
    r->total = qmon_uint(p, ram, w, "total", true);
    r->dirty_pages_rate = qmon_uint(p, ram, w, "dirty-pages-rate", false);
    r->page_size = qmon_uint(p, ram, w, "page-size", false);
    r->dirty_sync_count = qmon_uint(p, ram, w, "dirty-sync-count", false);
    r->pages_per_second = qmon_uint(p, ram, w, "pages-per-second", false);
    r->multifd_bytes = qmon_uint(p, ram, w, "multifd-bytes", false);
    r->mbps = qmon_num(p, ram, w, "mbps", false);
}

static void parse_stats(struct qmon_parse *p, json_t *ret, struct qmon_migrate_stats *s)
{
    const char *w = "return";
    const char *st = qmon_str(p, ret, w, "status", false);
    s->status_name = st ? st : "none";
    s->status = mig_status(s->status_name);
    json_t *ram = qmon_parse_ok(p) ? json_object_get(ret, "ram") : NULL;
    s->has_ram = ram != NULL;
    if (ram)
        parse_ram(p, ram, &s->ram);
    s->total_time = qmon_int(p, ret, w, "total-time", false);
    s->expected_downtime = qmon_int(p, ret, w, "expected-downtime", false);
    s->downtime = qmon_int(p, ret, w, "downtime", false);
    s->setup_time = qmon_int(p, ret, w, "setup-time", false);
    s->cpu_throttle_percentage = (int)qmon_int(p, ret, w, "cpu-throttle-percentage", false);
    s->error_desc = qmon_str(p, ret, w, "error-desc", false);
}

static void deliver_stats(const struct qmon_call *c, json_t *ret, const qmp_error_t *err)
{
    qmon_migrate_stats_fn cb = (qmon_migrate_stats_fn)c->cb;
    if (err) {
        cb(c->arg, NULL, err);
        return;
    }
    struct qmon_parse p = {c->command, ""};
    struct qmon_migrate_stats s = {.raw = ret};
    parse_stats(&p, ret, &s);
    qmp_error_t perr = qmon_parse_error(&p);
    if (qmon_parse_ok(&p))
        cb(c->arg, &s, NULL);
    else
        cb(c->arg, NULL, &perr);
}

int qmon_query_migrate(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_migrate_stats_fn cb, void *arg)
{
    struct qmon_cmd cmd = {"query-migrate", NULL, -1, false, timeout_ms};
    return qmon_send(q, o, &cmd, deliver_stats, (qmon_any_fn)cb, arg);
}

int qmon_parse_migrate_reply(json_t *ret, struct qmon_migrate_stats *s, char *err, size_t errlen)
{
    struct qmon_parse p = {"query-migrate", ""};
    *s = (struct qmon_migrate_stats){.raw = ret};
    parse_stats(&p, ret, s);
    snprintf(err, errlen, "%s", p.desc);
    return qmon_parse_ok(&p) ? 0 : -1;
}

/* ---- starting and stopping ----------------------------------------------- */

int qmon_migrate(qmp_t *q, struct qmon_owner *o, const char *uri, int timeout_ms, qmon_done_fn cb, void *arg)
{
    return qmon_send_done(q, o, "migrate", json_pack("{s:s}", "uri", uri), timeout_ms, cb, arg);
}

int qmon_migrate_incoming(qmp_t *q, struct qmon_owner *o, const char *uri, int timeout_ms, qmon_done_fn cb,
                          void *arg)
{
    return qmon_send_done(q, o, "migrate-incoming", json_pack("{s:s}", "uri", uri), timeout_ms, cb, arg);
}

int qmon_migrate_cancel(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_done_fn cb, void *arg)
{
    return qmon_send_simple(q, o, "migrate_cancel", timeout_ms, cb, arg);
}

/* ---- post-copy ----------------------------------------------------------- */

int qmon_migrate_start_postcopy(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_done_fn cb, void *arg)
{
    return qmon_send_simple(q, o, "migrate-start-postcopy", timeout_ms, cb, arg);
}

int qmon_migrate_pause(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_done_fn cb, void *arg)
{
    return qmon_send_done_oob(q, o, "migrate-pause", NULL, timeout_ms, cb, arg);
}

int qmon_migrate_recover(qmp_t *q, struct qmon_owner *o, const char *uri, int timeout_ms, qmon_done_fn cb,
                         void *arg)
{
    json_t *args = json_pack("{s:s}", "uri", uri);
    if (!args)
        return -1;
    return qmon_send_done_oob(q, o, "migrate-recover", args, timeout_ms, cb, arg);
}

int qmon_migrate_resume(qmp_t *q, struct qmon_owner *o, const char *uri, int timeout_ms, qmon_done_fn cb,
                        void *arg)
{
    return qmon_send_done(q, o, "migrate", json_pack("{s:s, s:b}", "uri", uri, "resume", true), timeout_ms, cb,
                          arg);
}

/* ---- capabilities and parameters ----------------------------------------- */

int qmon_migrate_set_capabilities(qmp_t *q, struct qmon_owner *o, const struct qmon_cap_state *caps, size_t n,
                                  int timeout_ms, qmon_done_fn cb, void *arg)
{
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        if ((unsigned)caps[i].cap >= QMON_CAP__COUNT) {
            json_decref(list);
            return -1;
        }
        json_array_append_new(list, json_pack("{s:s, s:b}", "capability", cap_names[caps[i].cap], "state",
                                              caps[i].on));
    }
    return qmon_send_done(q, o, "migrate-set-capabilities", json_pack("{s:o}", "capabilities", list), timeout_ms,
                          cb, arg);
}

static json_t *params_json(const struct qmon_migrate_params *p)
{
    json_t *a = json_object();
    if (p->has_max_bandwidth)
        json_object_set_new(a, "max-bandwidth", json_integer((json_int_t)p->max_bandwidth));
    if (p->has_downtime_limit)
        json_object_set_new(a, "downtime-limit", json_integer((json_int_t)p->downtime_limit));
    if (p->has_cpu_throttle_initial)
        json_object_set_new(a, "cpu-throttle-initial", json_integer(p->cpu_throttle_initial));
    if (p->has_cpu_throttle_increment)
        json_object_set_new(a, "cpu-throttle-increment", json_integer(p->cpu_throttle_increment));
    if (p->has_multifd_channels)
        json_object_set_new(a, "multifd-channels", json_integer(p->multifd_channels));
    if (p->has_multifd_compression) {
        if ((unsigned)p->multifd_compression >= ARRAY_LEN(compress_names)) {
            json_decref(a);
            return NULL;
        }
        json_object_set_new(a, "multifd-compression", json_string(compress_names[p->multifd_compression]));
    }
    if (p->has_direct_io)
        json_object_set_new(a, "direct-io", json_boolean(p->direct_io));
    if (p->tls_creds)
        json_object_set_new(a, "tls-creds", json_string(p->tls_creds));
    if (p->tls_hostname)
        json_object_set_new(a, "tls-hostname", json_string(p->tls_hostname));
    return a;
}

int qmon_migrate_set_parameters(qmp_t *q, struct qmon_owner *o, const struct qmon_migrate_params *p,
                                int timeout_ms, qmon_done_fn cb, void *arg)
{
    return qmon_send_done(q, o, "migrate-set-parameters", params_json(p), timeout_ms, cb, arg);
}
