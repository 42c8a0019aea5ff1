/* The cluster as a whole: STATE/cluster.json, create / join / leave, and
 * the views (`cluster show`, `cluster events`).  Membership, the
 * coordinator and owner records are in member.c, coord.c and owner.c. */
#include "cluster/cluster.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cluster/cluster_internal.h"
#include "cluster/etcd.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "qemu/qemu_proc.h"
#include "vm/vm.h"

#define CLUSTER_TTL_DEFAULT 3
#define CLUSTER_CALL_MS 1500

uint64_t cluster_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

char *cluster_key(const struct cluster *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *suffix;
    if (vasprintf(&suffix, fmt, ap) < 0)
        abort();
    va_end(ap);
    char *k = xasprintf("%s%s", c->prefix, suffix);
    free(suffix);
    return k;
}

void cluster_set_error(struct cluster *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg;
    if (vasprintf(&msg, fmt, ap) < 0)
        abort();
    va_end(ap);
    if (!c->last_error || strcmp(c->last_error, msg))
        log_warn("cluster %s: %s", c->name, msg);
    free(c->last_error);
    c->last_error = msg;
    c->last_error_ms = wall_ms();
}

bool cluster_lease_fresh(const struct cluster *c)
{
    return c->state == MEMBER_UP && c->lease && cluster_mono_ns() < c->pause_ns;
}

json_t *cluster_owner_value(const char *vm, const char *host, int64_t lease, const char *state,
                            int64_t gen, const char *reason)
{
    char l[32];
    snprintf(l, sizeof l, "%lld", (long long)lease);
    return json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:s}", "vm", vm, "host", host, "lease", l,
                     "state", state, "gen", (json_int_t)gen, "since_ms", (json_int_t)wall_ms(),
                     "reason", reason ? reason : "");
}

/* ---- STATE/cluster.json ---- */

static char *config_path(const struct agent *a) { return xasprintf("%s/cluster.json", a->state_dir); }

int cluster_save(const struct cluster *c, char *err, size_t errlen)
{
    json_t *urls = json_array(), *dirs = json_array();
    for (size_t i = 0; i < c->n_urls; i++)
        json_array_append_new(urls, json_string(c->urls[i]));
    for (size_t i = 0; i < c->n_shared_dirs; i++)
        json_array_append_new(dirs, json_string(c->shared_dirs[i]));
    json_t *j = json_pack("{s:s, s:o, s:b, s:o, s:i, s:s}", "name", c->name, "etcd", urls,
                          "insecure_http", c->insecure, "shared_dirs", dirs, "ttl_s", c->ttl_s,
                          "lease", "");
    json_object_set_new(j, "lease", json_sprintf("%lld", (long long)c->lease));
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(j);
    char *path = config_path(c->agent);
    int rc = write_file_atomic(path, text, strlen(text), 0600);
    if (rc < 0)
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    free(path);
    free(text);
    return rc;
}

static void cluster_destroy(struct cluster *c)
{
    if (!c)
        return;
    c->destroying = true;
    if (c->agent->cluster == c)
        handoff_remove(c);
    owner_stop(c);
    coord_stop(c);
    member_stop(c);
    etcd_free(c->lease_etcd);
    etcd_free(c->kv_etcd);
    etcd_urls_free(c->urls, c->n_urls);
    for (size_t i = 0; i < c->n_shared_dirs; i++)
        free(c->shared_dirs[i]);
    free(c->shared_dirs);
    json_decref(c->paused_by_fence);
    json_decref(c->member_addrs);
    free(c->name);
    free(c->prefix);
    free(c->last_error);
    free(c->leader_host);
    free(c);
}

const char *cluster_name(const struct agent *a) { return a->cluster ? a->cluster->name : NULL; }

static bool valid_cluster_name(const char *n) { return n && valid_name(n) && strlen(n) <= 32; }

/* A cluster object for NAME at URLS (not started). */
static struct cluster *cluster_new(struct agent *a, const char *name, char **urls, size_t n,
                                   bool insecure, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++)
        if (!strncmp(urls[i], "http://", 7) && !insecure) {
            snprintf(err, errlen, "%s is plain HTTP: etcd must be reached over TLS with the "
                     "cluster CA's certificates (--insecure-http is for labs only)", urls[i]);
            return NULL;
        }
    struct cluster *c = xcalloc(1, sizeof *c);
    c->agent = a;
    c->name = xstrdup(name);
    c->prefix = xasprintf("/vmove/v1/%s/", name);
    c->urls = urls;
    c->n_urls = n;
    c->insecure = insecure;
    c->ttl_s = CLUSTER_TTL_DEFAULT;
    /* Renewals every 250 ms; with TTL 3 the guests are paused 2.1 s and
     * killed 2.7 s after the last good renewal was sent.  An etcd leader
     * change stops renewals for 1.2-1.6 s here (measured under load), so it
     * costs nothing; the 0.3 s before the lease can expire is for the
     * shim's SIGKILL and reap (milliseconds) and clock-rate error. */
    c->keepalive_ms = 250;
    c->pause_margin_ms = 900;     /* until the first renewal: then 30 % and 10 % of the TTL */
    c->kill_margin_ms = 300;
    c->poll_ms = 200;
    c->paused_by_fence = json_array();
    c->lease_etcd = etcd_new(a->base, (const char *const *)urls, n, a->tls_client, err, errlen);
    c->kv_etcd = c->lease_etcd
                     ? etcd_new(a->base, (const char *const *)urls, n, a->tls_client, err, errlen)
                     : NULL;
    if (!c->kv_etcd) {
        cluster_destroy(c);
        return NULL;
    }
    return c;
}

static void cluster_begin(struct cluster *c)
{
    c->agent->cluster = c;
    handoff_install(c);
    member_start(c);
    owner_start(c);
    coord_start(c);
}

void cluster_recover(struct agent *a)
{
    char *path = config_path(a);
    json_error_t jerr;
    json_t *j = path_exists(path) ? json_load_file(path, 0, &jerr) : NULL;
    if (!j) {
        if (path_exists(path))
            log_error("%s: %s (line %d): not joining any cluster", path, jerr.text, jerr.line);
        free(path);
        return;
    }
    char err[256];
    json_t *urls = json_object_get(j, "etcd");
    char **list = xcalloc(json_array_size(urls) + 1, sizeof *list);
    size_t n = 0;
    for (size_t i = 0; i < json_array_size(urls); i++)
        if (json_is_string(json_array_get(urls, i)))
            list[n++] = xstrdup(json_string_value(json_array_get(urls, i)));
    const char *name = json_string_value(json_object_get(j, "name"));
    struct cluster *c = valid_cluster_name(name)
                            ? cluster_new(a, name, list, n,
                                          json_is_true(json_object_get(j, "insecure_http")), err,
                                          sizeof err)
                            : NULL;
    if (!c) {
        if (!valid_cluster_name(name))
            snprintf(err, sizeof err, "no valid cluster name");
        log_error("%s: %s: not joining any cluster", path, err);
        etcd_urls_free(list, n);
        json_decref(j);
        free(path);
        return;
    }
    json_t *dirs = json_object_get(j, "shared_dirs");
    for (size_t i = 0; i < json_array_size(dirs); i++)
        if (json_is_string(json_array_get(dirs, i))) {
            c->shared_dirs = xrealloc(c->shared_dirs, (c->n_shared_dirs + 1) * sizeof(char *));
            c->shared_dirs[c->n_shared_dirs++] = xstrdup(json_string_value(json_array_get(dirs, i)));
        }
    if (json_integer_value(json_object_get(j, "ttl_s")) >= 2)
        c->ttl_s = (int)json_integer_value(json_object_get(j, "ttl_s"));
    /* The lease of the last run: re-adopted if etcd still has it. */
    c->lease = etcd_int(json_object_get(j, "lease"));
    json_decref(j);
    free(path);
    log_info("cluster %s: re-joining through %s (lease %llx of the last run)", c->name,
             etcd_endpoint(c->kv_etcd), (unsigned long long)c->lease);
    cluster_begin(c);
}

void cluster_free(struct agent *a)
{
    cluster_destroy(a->cluster);
    a->cluster = NULL;
}

/* ---- create / join ---- */

struct setup {
    struct agent *a;
    struct cluster *c;
    bool create;
    cluster_done_fn done;
    void *arg;
};

static json_t *setup_fail(struct setup *s, json_t *error)
{
    cluster_destroy(s->c);
    s->done(s->arg, NULL, error);
    free(s);
    return NULL;
}

static void setup_answered(void *arg, json_t *reply, const char *err)
{
    struct setup *s = arg;
    struct cluster *c = s->c;
    if (!reply) {
        setup_fail(s, proto_error(ERR_UNAVAILABLE, "check the --etcd URLs and that a majority of "
                                  "the etcd members is up", "%s", err));
        return;
    }
    if (!etcd_txn_succeeded(reply)) {
        if (s->create)
            setup_fail(s, proto_error(ERR_EXISTS, "add this host with `vmove cluster join`",
                                      "cluster %s already exists in this etcd", c->name));
        else
            setup_fail(s, proto_error(ERR_NOT_FOUND, "create it first: vmove cluster create NAME --etcd URL",
                                      "no cluster %s in this etcd", c->name));
        return;
    }
    if (!s->create) {     /* the cluster's settings, from the config read in the txn */
        json_t *resp = json_array_get(json_object_get(reply, "responses"), 1);
        struct etcd_kv *kvs;
        size_t n = etcd_kvs(json_object_get(resp, "response_range"), &kvs);
        json_t *cfg = n ? json_loads(kvs[0].value, 0, NULL) : NULL;
        json_t *dirs = json_object_get(cfg, "shared_dirs");
        for (size_t i = 0; i < json_array_size(dirs); i++) {
            c->shared_dirs = xrealloc(c->shared_dirs, (c->n_shared_dirs + 1) * sizeof(char *));
            c->shared_dirs[c->n_shared_dirs++] = xstrdup(json_string_value(json_array_get(dirs, i)));
        }
        if (json_integer_value(json_object_get(cfg, "ttl_s")) >= 2)
            c->ttl_s = (int)json_integer_value(json_object_get(cfg, "ttl_s"));
        json_decref(cfg);
        etcd_kvs_free(kvs, n);
    }
    char e[256];
    if (cluster_save(c, e, sizeof e) < 0) {
        setup_fail(s, proto_error(ERR_INTERNAL, NULL, "%s", e));
        return;
    }
    json_t *res = json_pack("{s:s, s:s, s:b, s:i}", "cluster", c->name, "host", s->a->name,
                            "created", s->create, "ttl_s", c->ttl_s);
    cluster_begin(c);
    s->done(s->arg, res, NULL);
    free(s);
}

static json_t *member_record(struct agent *a)
{
    return json_pack("{s:s, s:s?, s:I, s:b}", "host", a->name, "addr", a->listen_addr,
                     "joined_ms", (json_int_t)wall_ms(), "maintenance", false);
}

static void cluster_setup(struct agent *a, bool create, const char *name, const char *etcd_urls,
                          json_t *opts, cluster_done_fn done, void *arg)
{
    char err[256];
    if (a->cluster) {
        done(arg, NULL, proto_error(ERR_STATE, "`vmove cluster leave` first",
                                    "host %s is already a member of cluster %s", a->name, a->cluster->name));
        return;
    }
    if (!valid_cluster_name(name)) {
        done(arg, NULL, proto_error(ERR_INVALID, NULL, "bad cluster name: 1-32 of [A-Za-z0-9._-], "
                                    "starting with a letter or digit"));
        return;
    }
    char **urls;
    size_t n;
    if (etcd_urls_parse(etcd_urls, &urls, &n, err, sizeof err) < 0) {
        done(arg, NULL, proto_error(ERR_INVALID, NULL, "%s", err));
        return;
    }
    bool insecure = json_is_true(json_object_get(opts, "insecure_http"));
    struct cluster *c = cluster_new(a, name, urls, n, insecure, err, sizeof err);
    if (!c) {
        etcd_urls_free(urls, n);
        done(arg, NULL, proto_error(ERR_INVALID, NULL, "%s", err));
        return;
    }
    json_t *ttl = json_object_get(opts, "ttl_s");
    if (ttl && (!json_is_integer(ttl) || json_integer_value(ttl) < 2 || json_integer_value(ttl) > 60)) {
        cluster_destroy(c);
        done(arg, NULL, proto_error(ERR_INVALID, "etcd grants at least 2 s", "ttl_s must be 2..60"));
        return;
    }
    if (ttl)
        c->ttl_s = (int)json_integer_value(ttl);
    json_t *dirs = json_object_get(opts, "shared_dirs");
    for (size_t i = 0; i < json_array_size(dirs); i++) {
        const char *d = json_string_value(json_array_get(dirs, i));
        if (!d || d[0] != '/') {
            cluster_destroy(c);
            done(arg, NULL, proto_error(ERR_INVALID, NULL, "a shared directory must be an absolute path"));
            return;
        }
        c->shared_dirs = xrealloc(c->shared_dirs, (c->n_shared_dirs + 1) * sizeof(char *));
        c->shared_dirs[c->n_shared_dirs++] = xstrdup(d);
    }
    struct setup *s = xcalloc(1, sizeof *s);
    *s = (struct setup){a, c, create, done, arg};
    char *cfg_key = cluster_key(c, "config"), *member_key = cluster_key(c, "members/%s", a->name);
    json_t *rec = member_record(a);
    char *member = json_dumps(rec, JSON_COMPACT);
    json_decref(rec);
    json_t *cmp = json_array(), *ok = json_array();
    if (create) {
        json_t *cfg = json_pack("{s:s, s:I, s:i, s:O, s:s}", "name", name, "created_ms",
                                (json_int_t)wall_ms(), "ttl_s", c->ttl_s, "shared_dirs",
                                dirs ? dirs : json_array(), "created_by", a->name);
        char *cfgtext = json_dumps(cfg, JSON_COMPACT);
        json_decref(cfg);
        json_array_append_new(cmp, etcd_cmp(cfg_key, "CREATE", "EQUAL", 0));
        json_array_append_new(ok, etcd_op_put(cfg_key, cfgtext, 0));
        free(cfgtext);
    } else {
        json_array_append_new(cmp, etcd_cmp(cfg_key, "CREATE", "GREATER", 0));
        json_array_append_new(ok, etcd_op_put(member_key, member, 0));
        json_array_append_new(ok, etcd_op_range(cfg_key, false));
    }
    if (create)
        json_array_append_new(ok, etcd_op_put(member_key, member, 0));
    etcd_post(c->kv_etcd, "/v3/kv/txn", etcd_txn_body(cmp, ok, NULL), CLUSTER_CALL_MS,
              setup_answered, s);
    free(member);
    free(cfg_key);
    free(member_key);
}

void cluster_create(struct agent *a, const char *name, const char *etcd_urls, json_t *opts,
                    cluster_done_fn done, void *arg)
{
    cluster_setup(a, true, name, etcd_urls, opts, done, arg);
}

void cluster_join(struct agent *a, const char *name, const char *etcd_urls, json_t *opts,
                  cluster_done_fn done, void *arg)
{
    cluster_setup(a, false, name, etcd_urls, opts, done, arg);
}

/* ---- leave ---- */

struct leave {
    struct agent *a;
    cluster_done_fn done;
    void *arg;
};

static void left(void *arg, json_t *reply, const char *err)
{
    struct leave *l = arg;
    struct agent *a = l->a;
    struct cluster *c = a->cluster;
    (void)reply;
    (void)err;   /* a lease etcd no longer has, or cannot revoke now, expires on its own */
    if (c->destroying) {     /* vmoved stops: the leave did not finish */
        l->done(l->arg, NULL, proto_error(ERR_UNAVAILABLE, "run it again", "vmoved is stopping"));
        free(l);
        return;
    }
    json_t *res = json_pack("{s:s, s:s, s:b}", "cluster", c->name, "host", a->name, "left", true);
    VM_FOREACH(a, vm)
        qemu_proc_fence_set(vm->dir, 0);
    a->fence_kill_ns = 0;
    char *path = config_path(a);
    unlink(path);
    free(path);
    log_info("left cluster %s", c->name);
    cluster_free(a);
    l->done(l->arg, res, NULL);
    free(l);
}

static void unregistered(void *arg, json_t *reply, const char *err)
{
    struct leave *l = arg;
    struct cluster *c = l->a->cluster;
    if (!reply) {
        c->leaving = false;
        l->done(l->arg, NULL, proto_error(ERR_UNAVAILABLE, "retry when etcd answers", "%s", err));
        free(l);
        return;
    }
    /* Our alive/load/coordinator keys go with the lease. */
    etcd_post(c->lease_etcd, "/v3/lease/revoke",
              json_pack("{s:o}", "ID", json_sprintf("%lld", (long long)c->lease)), 1500, left, l);
}

void cluster_leave(struct agent *a, cluster_done_fn done, void *arg)
{
    struct cluster *c = a->cluster;
    if (!c) {
        done(arg, NULL, proto_error(ERR_STATE, NULL, "host %s is in no cluster", a->name));
        return;
    }
    if (c->leaving) {
        done(arg, NULL, proto_error(ERR_STATE, NULL, "host %s is already leaving", a->name));
        return;
    }
    VM_FOREACH(a, vm)
        if (owner_vm_is_ha(vm)) {
            done(arg, NULL, proto_error(ERR_STATE, "`vmove vm set NAME --ha off`, or move it to another member",
                                        "VM %s is an HA VM of cluster %s on this host", vm->name, c->name));
            return;
        }
    c->leaving = true;
    struct leave *l = xcalloc(1, sizeof *l);
    *l = (struct leave){a, done, arg};
    json_t *ops = json_array();
    char *k = cluster_key(c, "members/%s", a->name);
    json_array_append_new(ops, etcd_op_delete(k, false));
    free(k);
    etcd_post(c->kv_etcd, "/v3/kv/txn", etcd_txn_body(json_array(), ops, NULL), CLUSTER_CALL_MS,
              unregistered, l);
}
