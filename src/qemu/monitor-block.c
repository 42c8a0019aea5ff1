/* Typed QMP block commands (see qemu/monitor.h): block nodes, mirror jobs,
 * the NBD server and its exports, and query-block / query-block-jobs parsed
 * into structs. */
#include "qemu/monitor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "qemu/monitor-internal.h"

static const char *const sync_names[] = {"full", "top", "none"};

/* ---- nodes --------------------------------------------------------------- */

static json_t *nbd_node(const struct qmon_blockdev *b)
{
    char port[16];
    snprintf(port, sizeof port, "%d", b->port);
    json_t *a = json_pack("{s:s, s:s, s:{s:s, s:s, s:s}}", "driver", "nbd", "node-name", b->node_name, "server",
                          "type", "inet", "host", b->host, "port", port);
    if (a && b->export_name)
        json_object_set_new(a, "export", json_string(b->export_name));
    if (a && b->tls_creds)
        json_object_set_new(a, "tls-creds", json_string(b->tls_creds));
    if (a && b->tls_hostname)
        json_object_set_new(a, "tls-hostname", json_string(b->tls_hostname));
    return a;
}

static json_t *blockdev_json(const struct qmon_blockdev *b)
{
    json_t *a = NULL;
    switch (b->driver) {
    case QMON_BLOCKDEV_FILE:
        a = json_pack("{s:s, s:s, s:s}", "driver", "file", "node-name", b->node_name, "filename", b->filename);
        break;
    case QMON_BLOCKDEV_QCOW2:
        a = json_pack("{s:s, s:s, s:s}", "driver", "qcow2", "node-name", b->node_name, "file", b->file);
        if (a && b->no_backing)
            json_object_set_new(a, "backing", json_null());
        break;
    case QMON_BLOCKDEV_NBD:
        a = nbd_node(b);
        break;
    }
    if (a && b->discard_unmap)
        json_object_set_new(a, "discard", json_string("unmap"));
    return a;
}

int qmon_blockdev_add(qmp_t *q, struct qmon_owner *o, const struct qmon_blockdev *b, int timeout_ms,
                      qmon_done_fn cb, void *arg)
{
    return qmon_send_done(q, o, "blockdev-add", blockdev_json(b), timeout_ms, cb, arg);
}

int qmon_blockdev_del(qmp_t *q, struct qmon_owner *o, const char *node_name, int timeout_ms, qmon_done_fn cb,
                      void *arg)
{
    return qmon_send_done(q, o, "blockdev-del", json_pack("{s:s}", "node-name", node_name), timeout_ms, cb, arg);
}

/* ---- jobs ---------------------------------------------------------------- */

static json_t *mirror_json(const struct qmon_mirror *m)
{
    if ((unsigned)m->sync >= ARRAY_LEN(sync_names))
        return NULL;
    json_t *a = json_pack("{s:s, s:s, s:s, s:s}", "job-id", m->job_id, "device", m->device, "target", m->target,
                          "sync", sync_names[m->sync]);
    if (!a)
        return NULL;
    json_object_set_new(a, "copy-mode", json_string(m->write_blocking ? "write-blocking" : "background"));
    if (m->has_auto_finalize)
        json_object_set_new(a, "auto-finalize", json_boolean(m->auto_finalize));
    if (m->has_auto_dismiss)
        json_object_set_new(a, "auto-dismiss", json_boolean(m->auto_dismiss));
    if (m->speed > 0)
        json_object_set_new(a, "speed", json_integer((json_int_t)m->speed));
    return a;
}

int qmon_blockdev_mirror(qmp_t *q, struct qmon_owner *o, const struct qmon_mirror *m, int timeout_ms,
                         qmon_done_fn cb, void *arg)
{
    return qmon_send_done(q, o, "blockdev-mirror", mirror_json(m), timeout_ms, cb, arg);
}

int qmon_block_job_cancel(qmp_t *q, struct qmon_owner *o, const char *job, bool force, int timeout_ms,
                          qmon_done_fn cb, void *arg)
{
    return qmon_send_done(q, o, "block-job-cancel", json_pack("{s:s, s:b}", "device", job, "force", force),
                          timeout_ms, cb, arg);
}

int qmon_block_job_complete(qmp_t *q, struct qmon_owner *o, const char *job, int timeout_ms, qmon_done_fn cb,
                            void *arg)
{
    return qmon_send_done(q, o, "block-job-complete", json_pack("{s:s}", "device", job), timeout_ms, cb, arg);
}

int qmon_block_job_set_speed(qmp_t *q, struct qmon_owner *o, const char *job, int64_t speed, int timeout_ms,
                             qmon_done_fn cb, void *arg)
{
    return qmon_send_done(q, o, "block-job-set-speed",
                          json_pack("{s:s, s:I}", "device", job, "speed", (json_int_t)speed), timeout_ms, cb, arg);
}

static json_t *backup_actions(const struct qmon_backup *b, size_t n)
{
    json_t *actions = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *data = json_pack("{s:s, s:s, s:s, s:s, s:b}", "job-id", b[i].job_id, "device", b[i].device,
                                 "target", b[i].target, "sync", "full", "auto-dismiss", false);
        if (!data) {
            json_decref(actions);
            return NULL;
        }
        if (b[i].speed > 0)
            json_object_set_new(data, "speed", json_integer((json_int_t)b[i].speed));
        json_array_append_new(actions, json_pack("{s:s, s:o}", "type", "blockdev-backup", "data", data));
    }
    return actions;
}

int qmon_backup_transaction(qmp_t *q, struct qmon_owner *o, const struct qmon_backup *b, size_t n,
                            int timeout_ms, qmon_done_fn cb, void *arg)
{
    json_t *actions = n ? backup_actions(b, n) : NULL;
    json_t *args = actions ? json_pack("{s:o, s:{s:s}}", "actions", actions, "properties", "completion-mode",
                                       "grouped")
                           : NULL;
    return qmon_send_done(q, o, "transaction", args, timeout_ms, cb, arg);
}

int qmon_block_job_dismiss(qmp_t *q, struct qmon_owner *o, const char *job, int timeout_ms, qmon_done_fn cb,
                           void *arg)
{
    return qmon_send_done(q, o, "block-job-dismiss", json_pack("{s:s}", "id", job), timeout_ms, cb, arg);
}

int qmon_blockdev_snapshot(qmp_t *q, struct qmon_owner *o, const struct qmon_snapshot *s, size_t n,
                           int timeout_ms, qmon_done_fn cb, void *arg)
{
    json_t *actions = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *a = json_pack("{s:s, s:{s:s, s:s}}", "type", "blockdev-snapshot", "data", "node", s[i].node,
                              "overlay", s[i].overlay);
        if (!a) {
            json_decref(actions);
            return -1;
        }
        json_array_append_new(actions, a);
    }
    return qmon_send_done(q, o, "transaction", json_pack("{s:o}", "actions", actions), timeout_ms, cb, arg);
}

static json_t *commit_json(const struct qmon_commit *c)
{
    json_t *a = json_pack("{s:s, s:s, s:s, s:s}", "job-id", c->job_id, "device", c->device, "top-node", c->top_node,
                          "base-node", c->base_node);
    if (a && c->backing_file)
        json_object_set_new(a, "backing-file", json_string(c->backing_file));
    if (a && c->has_auto_finalize)
        json_object_set_new(a, "auto-finalize", json_boolean(c->auto_finalize));
    if (a && c->speed > 0)
        json_object_set_new(a, "speed", json_integer((json_int_t)c->speed));
    return a;
}

int qmon_block_commit(qmp_t *q, struct qmon_owner *o, const struct qmon_commit *c, int timeout_ms,
                      qmon_done_fn cb, void *arg)
{
    return qmon_send_done(q, o, "block-commit", commit_json(c), timeout_ms, cb, arg);
}

int qmon_job_finalize(qmp_t *q, struct qmon_owner *o, const char *id, int timeout_ms, qmon_done_fn cb, void *arg)
{
    return qmon_send_done(q, o, "job-finalize", json_pack("{s:s}", "id", id), timeout_ms, cb, arg);
}

/* ---- queries: one array of objects, each parsed into a struct ------------ */

typedef void (*parse_item_fn)(struct qmon_parse *p, json_t *item, const char *where, void *out);

/* items: a calloc'ed array of n elements of size sz, NULL if n is 0. */
static void *parse_list(struct qmon_parse *p, json_t *ret, size_t sz, parse_item_fn fn, size_t *n)
{
    *n = 0;
    if (!json_is_array(ret)) {
        snprintf(p->desc, sizeof p->desc, "%s: malformed reply: return is not an array", p->command);
        return NULL;
    }
    size_t len = json_array_size(ret);
    char *items = len ? xcalloc(len, sz) : NULL;
    for (size_t i = 0; i < len && qmon_parse_ok(p); i++) {
        char where[32];
        snprintf(where, sizeof where, "return[%zu]", i);
        fn(p, json_array_get(ret, i), where, items + i * sz);
    }
    *n = len;
    return items;
}

static void parse_job(struct qmon_parse *p, json_t *j, const char *w, void *out)
{
    struct qmon_block_job *b = out;
    b->raw = j;
    b->device = qmon_str(p, j, w, "device", true);
    b->type = qmon_str(p, j, w, "type", false);
    b->status = qmon_str(p, j, w, "status", false);
    if (!b->status)
        b->status = "";
    b->len = qmon_uint(p, j, w, "len", true);
    b->offset = qmon_uint(p, j, w, "offset", true);
    b->speed = qmon_uint(p, j, w, "speed", false);
    b->ready = qmon_bool(p, j, w, "ready", true);
    b->busy = qmon_bool(p, j, w, "busy", false);
    b->paused = qmon_bool(p, j, w, "paused", false);
    b->error = qmon_str(p, j, w, "error", false);
}

/* "json:{...,"file":{"driver":"file","filename":P}}" -> P (borrowed from
 * the parsed object, which the node's raw keeps alive). */
static const char *json_pseudo_image(json_t *node, const char *file, const char *keep_as)
{
    if (!file || strncmp(file, "json:", 5))
        return file;
    json_t *j = json_loads(file + 5, 0, NULL);
    const char *p = json_string_value(json_object_get(json_object_get(j, "file"), "filename"));
    if (!p) {
        json_decref(j);
        return NULL;
    }
    json_object_set_new(node, keep_as, j);   /* keeps p valid with raw */
    return p;
}

static void parse_device(struct qmon_parse *p, json_t *d, const char *w, void *out)
{
    struct qmon_block_device *b = out;
    b->raw = d;
    b->device = qmon_str(p, d, w, "device", true);
    b->qdev = qmon_str(p, d, w, "qdev", false);
    json_t *ins = qmon_parse_ok(p) ? json_object_get(d, "inserted") : NULL;
    if (!ins)
        return;
    char wi[48];
    snprintf(wi, sizeof wi, "%s.inserted", w);
    b->inserted = true;
    b->node_name = qmon_str(p, ins, wi, "node-name", false);
    /* After a live checkpoint the top's name is a json: one (its backing
     * was attached by blockdev-snapshot): the image file is inside. */
    b->file = json_pseudo_image(ins, qmon_str(p, ins, wi, "file", true), "vmove-parsed-file");
    b->drv = qmon_str(p, ins, wi, "drv", false);
    b->ro = qmon_bool(p, ins, wi, "ro", false);
}

static void parse_named_node(struct qmon_parse *p, json_t *j, const char *w, void *out)
{
    struct qmon_named_node *b = out;
    b->raw = j;
    b->node_name = qmon_str(p, j, w, "node-name", true);
    b->drv = qmon_str(p, j, w, "drv", true);
    b->image = json_pseudo_image(j, qmon_str(p, j, w, "file", true), "vmove-parsed-file");
    /* The backing's name is a json: one too when the backing is such an
     * overlay (a checkpoint layer frozen by a later checkpoint). */
    b->backing_file = json_pseudo_image(j, qmon_str(p, j, w, "backing_file", false), "vmove-parsed-backing");
}

static void deliver_named_nodes(const struct qmon_call *c, json_t *ret, const qmp_error_t *err)
{
    qmon_named_nodes_fn cb = (qmon_named_nodes_fn)c->cb;
    if (err) {
        cb(c->arg, NULL, 0, err);
        return;
    }
    struct qmon_parse p = {c->command, ""};
    size_t n;
    struct qmon_named_node *nodes = parse_list(&p, ret, sizeof *nodes, parse_named_node, &n);
    qmp_error_t perr = qmon_parse_error(&p);
    if (qmon_parse_ok(&p))
        cb(c->arg, nodes, n, NULL);
    else
        cb(c->arg, NULL, 0, &perr);
    free(nodes);
}

int qmon_parse_named_nodes_reply(json_t *ret, struct qmon_named_node **nodes, size_t *n, char *err, size_t errlen)
{
    struct qmon_parse p = {"query-named-block-nodes", ""};
    *nodes = parse_list(&p, ret, sizeof **nodes, parse_named_node, n);
    snprintf(err, errlen, "%s", p.desc);
    return qmon_parse_ok(&p) ? 0 : -1;
}

int qmon_query_named_block_nodes(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_named_nodes_fn cb,
                                 void *arg)
{
    struct qmon_cmd cmd = {"query-named-block-nodes", json_pack("{s:b}", "flat", true), -1, false, timeout_ms};
    return qmon_send(q, o, &cmd, deliver_named_nodes, (qmon_any_fn)cb, arg);
}

static void deliver_jobs(const struct qmon_call *c, json_t *ret, const qmp_error_t *err)
{
    qmon_block_jobs_fn cb = (qmon_block_jobs_fn)c->cb;
    if (err) {
        cb(c->arg, NULL, 0, err);
        return;
    }
    struct qmon_parse p = {c->command, ""};
    size_t n;
    struct qmon_block_job *jobs = parse_list(&p, ret, sizeof *jobs, parse_job, &n);
    qmp_error_t perr = qmon_parse_error(&p);
    if (qmon_parse_ok(&p))
        cb(c->arg, jobs, n, NULL);
    else
        cb(c->arg, NULL, 0, &perr);
    free(jobs);
}

static void deliver_block(const struct qmon_call *c, json_t *ret, const qmp_error_t *err)
{
    qmon_block_fn cb = (qmon_block_fn)c->cb;
    if (err) {
        cb(c->arg, NULL, 0, err);
        return;
    }
    struct qmon_parse p = {c->command, ""};
    size_t n;
    struct qmon_block_device *devs = parse_list(&p, ret, sizeof *devs, parse_device, &n);
    qmp_error_t perr = qmon_parse_error(&p);
    if (qmon_parse_ok(&p))
        cb(c->arg, devs, n, NULL);
    else
        cb(c->arg, NULL, 0, &perr);
    free(devs);
}

int qmon_parse_block_jobs_reply(json_t *ret, struct qmon_block_job **jobs, size_t *n, char *err, size_t errlen)
{
    struct qmon_parse p = {"query-block-jobs", ""};
    *jobs = parse_list(&p, ret, sizeof **jobs, parse_job, n);
    snprintf(err, errlen, "%s", p.desc);
    return qmon_parse_ok(&p) ? 0 : -1;
}

int qmon_parse_block_reply(json_t *ret, struct qmon_block_device **devs, size_t *n, char *err, size_t errlen)
{
    struct qmon_parse p = {"query-block", ""};
    *devs = parse_list(&p, ret, sizeof **devs, parse_device, n);
    snprintf(err, errlen, "%s", p.desc);
    return qmon_parse_ok(&p) ? 0 : -1;
}

int qmon_query_block_jobs(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_block_jobs_fn cb, void *arg)
{
    struct qmon_cmd cmd = {"query-block-jobs", NULL, -1, false, timeout_ms};
    return qmon_send(q, o, &cmd, deliver_jobs, (qmon_any_fn)cb, arg);
}

int qmon_query_block(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_block_fn cb, void *arg)
{
    struct qmon_cmd cmd = {"query-block", NULL, -1, false, timeout_ms};
    return qmon_send(q, o, &cmd, deliver_block, (qmon_any_fn)cb, arg);
}

/* qdev paths look like /machine/peripheral/<id>/virtio-backend: match a
 * whole component, so "vda-dev" does not find "xvda-dev". */
const struct qmon_block_device *qmon_block_by_qdev(const struct qmon_block_device *devs, size_t n,
                                                   const char *qdev_id)
{
    size_t len = strlen(qdev_id);
    for (size_t i = 0; i < n; i++)
        for (const char *s = devs[i].qdev; s && (s = strstr(s, qdev_id)); s++)
            if (s > devs[i].qdev && s[-1] == '/' && (s[len] == '/' || !s[len]))
                return &devs[i];
    return NULL;
}

/* ---- NBD ----------------------------------------------------------------- */

int qmon_nbd_server_start(qmp_t *q, struct qmon_owner *o, const char *host, int port, const char *tls_creds,
                          int timeout_ms, qmon_done_fn cb, void *arg)
{
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    /* SocketAddressLegacy: QEMU 7.2 to 10.0 take only this form here. */
    json_t *args = json_pack("{s:{s:s, s:{s:s, s:s}}, s:s*}", "addr", "type", "inet", "data", "host", host, "port",
                             p, "tls-creds", tls_creds);
    return qmon_send_done(q, o, "nbd-server-start", args, timeout_ms, cb, arg);
}

int qmon_nbd_server_stop(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_done_fn cb, void *arg)
{
    return qmon_send_simple(q, o, "nbd-server-stop", timeout_ms, cb, arg);
}

int qmon_block_export_add(qmp_t *q, struct qmon_owner *o, const struct qmon_nbd_export *e, int timeout_ms,
                          qmon_done_fn cb, void *arg)
{
    json_t *args = json_pack("{s:s, s:s, s:s, s:b, s:s}", "type", "nbd", "id", e->id, "node-name", e->node_name,
                             "writable", e->writable, "name", e->name ? e->name : e->node_name);
    return qmon_send_done(q, o, "block-export-add", args, timeout_ms, cb, arg);
}
