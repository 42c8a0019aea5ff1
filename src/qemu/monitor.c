/* Typed QMP commands (see qemu/monitor.h): the owner references, the
 * plumbing every command shares, and the VM-wide commands.  Migration
 * commands are in monitor-migrate.c, block and NBD ones in monitor-block.c.
 *
 * Every command and argument name emitted here was checked against QEMU
 * 10.0.2's query-qmp-schema: all exist and none is marked deprecated.
 * Deprecated in QEMU 10.0 but still relevant to vmove:
 *  - "fd:NAME" migration URIs onto a plain file (deprecated since 9.1; the
 *    schema cannot mark URI forms): vmove's quick migration passes the
 *    state file with getfd and migrates to "fd:vmove-state" on both sides.
 *    The replacement is add-fd into an fdset plus "file:/dev/fdset/N"
 *    (QEMU >= 9.0 for file: with fdsets), which vmove's QEMU 7.2 floor does
 *    not have yet.
 *  - nbd-server-add / nbd-server-remove (deprecated since 5.2): vmove uses
 *    block-export-add already; qmon_block_export_add keeps it that way.
 *  - the zero-blocks migration capability (deprecated since 9.2): not used,
 *    and not offered by enum qmon_capability.
 *  - migrate's blk/inc arguments: removed in QEMU 9.1; vmove never used
 *    them (shared-nothing moves mirror the disks with blockdev-mirror).
 *  - nbd-server-start's "addr" is still the legacy SocketAddressLegacy
 *    form ({"type": "inet", "data": {...}}) in 10.0, not deprecated. */
#include "qemu/monitor.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "qemu/monitor-internal.h"

/* ---- owner references ---------------------------------------------------- */

void qmon_owner_init(struct qmon_owner *o, void *obj, void (*release)(void *obj))
{
    *o = (struct qmon_owner){.refs = 1, .obj = obj, .release = release};
}

void qmon_owner_ref(struct qmon_owner *o) { o->refs++; }

void qmon_owner_unref(struct qmon_owner *o)
{
    if (--o->refs == 0 && o->release)
        o->release(o->obj);
}

void qmon_owner_mute(struct qmon_owner *o) { o->dead = true; }

void qmon_owner_end(struct qmon_owner *o)
{
    o->dead = true;
    if (o->ended)
        return;
    o->ended = true;
    qmon_owner_unref(o);
}

bool qmon_owner_alive(const struct qmon_owner *o) { return !o->dead; }

/* ---- sending ------------------------------------------------------------- */

static bool owner_dead(const struct qmon_owner *o) { return o && o->dead; }

/* Every reply passes here: the owner may have ended while it was on its way
 * (or be ended by a synchronous failure of qmp_close). */
static void tramp(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct qmon_call *c = arg;
    struct qmon_owner *o = c->owner;
    if (!owner_dead(o) && err && err->kind == QMP_ERR_TIMEOUT && o && o->on_timeout)
        o->on_timeout(o->obj, c->command);
    if (!owner_dead(o))       /* on_timeout may have ended it */
        c->deliver(c, ret, err);
    free(c);
    if (o)
        qmon_owner_unref(o);
}

static int send_raw(qmp_t *q, const struct qmon_cmd *cmd, qmp_reply_fn fn, void *fn_arg)
{
    if (cmd->fd >= 0)
        return qmp_command_fd(q, cmd->command, cmd->args, cmd->fd, cmd->timeout_ms, fn, fn_arg);
    if (cmd->oob)
        return qmp_command_oob(q, cmd->command, cmd->args, cmd->timeout_ms, fn, fn_arg);
    return qmp_command(q, cmd->command, cmd->args, cmd->timeout_ms, fn, fn_arg);
}

int qmon_send(qmp_t *q, struct qmon_owner *o, const struct qmon_cmd *cmd, qmon_deliver_fn deliver, qmon_any_fn cb,
              void *arg)
{
    if (!q) {
        json_decref(cmd->args);
        return -1;
    }
    if (!cb)
        return send_raw(q, cmd, NULL, NULL);
    struct qmon_call *c = xcalloc(1, sizeof *c);
    *c = (struct qmon_call){o, cmd->command, deliver, cb, arg};
    if (send_raw(q, cmd, tramp, c) < 0) {
        free(c);
        return -1;
    }
    if (o)
        qmon_owner_ref(o);
    return 0;
}

static void deliver_done(const struct qmon_call *c, json_t *ret, const qmp_error_t *err)
{
    ((qmon_done_fn)c->cb)(c->arg, err);
}

int qmon_send_done(qmp_t *q, struct qmon_owner *o, const char *command, json_t *args, int timeout_ms,
                   qmon_done_fn cb, void *arg)
{
    if (!args)
        return -1;
    struct qmon_cmd cmd = {command, args, -1, false, timeout_ms};
    return qmon_send(q, o, &cmd, deliver_done, (qmon_any_fn)cb, arg);
}

int qmon_send_done_oob(qmp_t *q, struct qmon_owner *o, const char *command, json_t *args, int timeout_ms,
                       qmon_done_fn cb, void *arg)
{
    struct qmon_cmd cmd = {command, args, -1, true, timeout_ms};
    return qmon_send(q, o, &cmd, deliver_done, (qmon_any_fn)cb, arg);
}

int qmon_send_simple(qmp_t *q, struct qmon_owner *o, const char *command, int timeout_ms, qmon_done_fn cb,
                     void *arg)
{
    struct qmon_cmd cmd = {command, NULL, -1, false, timeout_ms};
    return qmon_send(q, o, &cmd, deliver_done, (qmon_any_fn)cb, arg);
}

/* ---- reading replies ----------------------------------------------------- */

static void reply_bad(struct qmon_parse *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply_bad(struct qmon_parse *p, const char *fmt, ...)
{
    if (p->desc[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->desc, sizeof p->desc, fmt, ap);
    va_end(ap);
}

bool qmon_parse_ok(const struct qmon_parse *p) { return !p->desc[0]; }

qmp_error_t qmon_parse_error(const struct qmon_parse *p)
{
    return (qmp_error_t){QMP_ERR_PROTOCOL, NULL, p->desc};
}

bool qmon_object(struct qmon_parse *p, json_t *obj, const char *where)
{
    if (json_is_object(obj))
        return true;
    reply_bad(p, "%s: malformed reply: %s is not an object", p->command, where);
    return false;
}

/* The member key of obj, NULL if absent (an error if required). */
static json_t *member(struct qmon_parse *p, json_t *obj, const char *where, const char *key, bool required)
{
    if (!qmon_parse_ok(p) || !qmon_object(p, obj, where))
        return NULL;
    json_t *v = json_object_get(obj, key);
    if (!v && required)
        reply_bad(p, "%s: malformed reply: %s.%s is missing", p->command, where, key);
    return v;
}

static void wrong_type(struct qmon_parse *p, const char *where, const char *key, const char *want)
{
    reply_bad(p, "%s: malformed reply: %s.%s is not %s", p->command, where, key, want);
}

int64_t qmon_int(struct qmon_parse *p, json_t *obj, const char *where, const char *key, bool required)
{
    json_t *v = member(p, obj, where, key, required);
    if (v && !json_is_integer(v))
        wrong_type(p, where, key, "an integer");
    return json_is_integer(v) && qmon_parse_ok(p) ? (int64_t)json_integer_value(v) : 0;
}

uint64_t qmon_uint(struct qmon_parse *p, json_t *obj, const char *where, const char *key, bool required)
{
    int64_t n = qmon_int(p, obj, where, key, required);
    if (n < 0)
        wrong_type(p, where, key, "a non-negative integer");
    return n > 0 ? (uint64_t)n : 0;
}

double qmon_num(struct qmon_parse *p, json_t *obj, const char *where, const char *key, bool required)
{
    json_t *v = member(p, obj, where, key, required);
    if (v && !json_is_number(v))
        wrong_type(p, where, key, "a number");
    return json_is_number(v) ? json_number_value(v) : 0;
}

bool qmon_bool(struct qmon_parse *p, json_t *obj, const char *where, const char *key, bool required)
{
    json_t *v = member(p, obj, where, key, required);
    if (v && !json_is_boolean(v))
        wrong_type(p, where, key, "a boolean");
    return json_is_true(v);
}

const char *qmon_str(struct qmon_parse *p, json_t *obj, const char *where, const char *key, bool required)
{
    json_t *v = member(p, obj, where, key, required);
    if (v && !json_is_string(v))
        wrong_type(p, where, key, "a string");
    return json_string_value(v);
}

/* ---- VM run state -------------------------------------------------------- */

static void deliver_status(const struct qmon_call *c, json_t *ret, const qmp_error_t *err)
{
    qmon_status_fn cb = (qmon_status_fn)c->cb;
    if (err) {
        cb(c->arg, NULL, err);
        return;
    }
    struct qmon_parse p = {c->command, ""};
    struct qmon_status st = {.raw = ret};
    st.running = qmon_bool(&p, ret, "return", "running", true);
    st.status = qmon_str(&p, ret, "return", "status", true);
    qmp_error_t perr = qmon_parse_error(&p);
    if (qmon_parse_ok(&p))
        cb(c->arg, &st, NULL);
    else
        cb(c->arg, NULL, &perr);
}

int qmon_query_status(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_status_fn cb, void *arg)
{
    struct qmon_cmd cmd = {"query-status", NULL, -1, false, timeout_ms};
    return qmon_send(q, o, &cmd, deliver_status, (qmon_any_fn)cb, arg);
}

int qmon_cont(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_done_fn cb, void *arg)
{
    return qmon_send_simple(q, o, "cont", timeout_ms, cb, arg);
}

int qmon_stop(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_done_fn cb, void *arg)
{
    return qmon_send_simple(q, o, "stop", timeout_ms, cb, arg);
}

int qmon_quit(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_done_fn cb, void *arg)
{
    return qmon_send_simple(q, o, "quit", timeout_ms, cb, arg);
}

int qmon_system_powerdown(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_done_fn cb, void *arg)
{
    return qmon_send_simple(q, o, "system_powerdown", timeout_ms, cb, arg);
}

int qmon_getfd(qmp_t *q, struct qmon_owner *o, const char *fdname, int fd, int timeout_ms, qmon_done_fn cb,
               void *arg)
{
    json_t *args = json_pack("{s:s}", "fdname", fdname);
    if (fd < 0 || !args) {
        json_decref(args);
        return -1;
    }
    struct qmon_cmd cmd = {"getfd", args, fd, false, timeout_ms};
    return qmon_send(q, o, &cmd, deliver_done, (qmon_any_fn)cb, arg);
}

int qmon_object_add(qmp_t *q, struct qmon_owner *o, const struct qmon_tls_creds *c, int timeout_ms,
                    qmon_done_fn cb, void *arg)
{
    json_t *args = json_pack("{s:s, s:s, s:s, s:s, s:b}", "qom-type", "tls-creds-x509", "id", c->id, "dir", c->dir,
                             "endpoint", c->server ? "server" : "client", "verify-peer", c->verify_peer);
    return qmon_send_done(q, o, "object-add", args, timeout_ms, cb, arg);
}

static json_t *yank_instance(const struct qmon_yank_instance *y)
{
    switch (y->type) {
    case QMON_YANK_MIGRATION:
        return json_pack("{s:s}", "type", "migration");
    case QMON_YANK_BLOCK_NODE:
        return json_pack("{s:s, s:s}", "type", "block-node", "node-name", y->name);
    case QMON_YANK_CHARDEV:
        return json_pack("{s:s, s:s}", "type", "chardev", "id", y->name);
    }
    return NULL;
}

int qmon_yank(qmp_t *q, struct qmon_owner *o, const struct qmon_yank_instance *inst, size_t n, int timeout_ms,
              qmon_done_fn cb, void *arg)
{
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *y = yank_instance(&inst[i]);
        if (!y) {             /* a bad type, or a NULL name json_pack refused */
            json_decref(list);
            return -1;
        }
        json_array_append_new(list, y);
    }
    struct qmon_cmd cmd = {"yank", json_pack("{s:o}", "instances", list), -1, true, timeout_ms};
    return qmon_send(q, o, &cmd, deliver_done, (qmon_any_fn)cb, arg);
}

int qmon_announce_self(qmp_t *q, struct qmon_owner *o, const struct qmon_announce *a, int timeout_ms,
                       qmon_done_fn cb, void *arg)
{
    json_t *args = json_pack("{s:i, s:i, s:i, s:i}", "initial", a->initial, "max", a->max, "rounds", a->rounds,
                             "step", a->step);
    return qmon_send_done(q, o, "announce-self", args, timeout_ms, cb, arg);
}
