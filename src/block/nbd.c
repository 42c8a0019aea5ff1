/* NBD server, exports and client nodes (see block/nbd.h). */
#include "block/nbd.h"

#include <stdlib.h>

#include "common/util.h"

/* One block_nbd_serve in flight.  Its replies go through qmon with no
 * owner (so this context is always freed) and hold the caller's owner
 * themselves: a reply after the owner ended is dropped here. */
struct serve {
    qmp_t *q;
    struct qmon_owner *owner;
    char **nodes;
    size_t n;
    int pending, timeout_ms;
    bool failed;
    block_nbd_serve_fn cb;
    void *arg;
};

static void serve_free(struct serve *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->nodes[i]);
    free(s->nodes);
    struct qmon_owner *o = s->owner;
    free(s);
    if (o)
        qmon_owner_unref(o);
}

static bool owner_alive(const struct serve *s) { return !s->owner || qmon_owner_alive(s->owner); }

/* Called once per reply; the context goes with the last one. */
static void serve_step(struct serve *s, enum block_nbd_step step, const qmp_error_t *err)
{
    if (err && err->kind == QMP_ERR_TIMEOUT && s->owner && owner_alive(s) && s->owner->on_timeout)
        s->owner->on_timeout(s->owner->obj, step == BLOCK_NBD_SERVER ? "nbd-server-start" : "block-export-add");
    if (err && !s->failed && owner_alive(s)) {
        s->failed = true;
        s->cb(s->arg, step, err);
    }
    if (--s->pending > 0)
        return;
    if (!s->failed && owner_alive(s))
        s->cb(s->arg, step, NULL);
    serve_free(s);
}

static void on_export(void *arg, const qmp_error_t *err) { serve_step(arg, BLOCK_NBD_EXPORT, err); }

static void add_exports(struct serve *s)
{
    for (size_t i = 0; i < s->n; i++) {
        char *id = xasprintf("nbd-%s", s->nodes[i]);
        struct qmon_nbd_export e = {.id = id, .node_name = s->nodes[i], .name = s->nodes[i], .writable = true};
        s->pending++;
        if (qmon_block_export_add(s->q, NULL, &e, s->timeout_ms, on_export, s) < 0) {
            qmp_error_t gone = {.kind = QMP_ERR_DISCONNECTED, .desc = "QEMU monitor is not connected"};
            serve_step(s, BLOCK_NBD_EXPORT, &gone);   /* s survives: pending still counts the server */
        }
        free(id);
    }
}

static void on_server(void *arg, const qmp_error_t *err)
{
    struct serve *s = arg;
    if (!err && owner_alive(s))
        add_exports(s);
    serve_step(s, BLOCK_NBD_SERVER, err);
}

int block_nbd_serve(qmp_t *q, struct qmon_owner *o, const char *host, int port, const char *tls_creds,
                    const char *const *nodes, size_t n, int timeout_ms, block_nbd_serve_fn cb, void *arg)
{
    struct serve *s = xcalloc(1, sizeof *s);
    *s = (struct serve){.q = q, .n = n, .pending = 1, .timeout_ms = timeout_ms, .cb = cb, .arg = arg};
    s->nodes = xcalloc(n ? n : 1, sizeof *s->nodes);
    for (size_t i = 0; i < n; i++)
        s->nodes[i] = xstrdup(nodes[i]);
    if (qmon_nbd_server_start(q, NULL, host, port, tls_creds, timeout_ms, on_server, s) < 0) {
        serve_free(s);
        return -1;
    }
    s->owner = o;
    if (o)
        qmon_owner_ref(o);
    return 0;
}

int block_nbd_stop(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_done_fn cb, void *arg)
{
    return qmon_nbd_server_stop(q, o, timeout_ms, cb, arg);
}

int block_nbd_client_add(qmp_t *q, struct qmon_owner *o, const struct block_nbd_client *c, int timeout_ms,
                         qmon_done_fn cb, void *arg)
{
    struct qmon_blockdev b = {.driver = QMON_BLOCKDEV_NBD, .node_name = c->node_name, .host = c->host,
                              .port = c->port, .export_name = c->export_name, .tls_creds = c->tls_creds,
                              .tls_hostname = c->tls_hostname};
    return qmon_blockdev_add(q, o, &b, timeout_ms, cb, arg);
}
