/* Asynchronous QMP client.  See qmp.h for the contract.
 *
 * Over 600 lines on purpose: one connection's state machine (greeting,
 * capabilities with OOB, queued and in-flight commands with their timeouts,
 * fd passing, re-entrant frees) whose parts share its private struct;
 * split, each part would need the whole struct anyway.
 *
 * Design notes:
 *  - We do our own writes with sendmsg() instead of using a bufferevent,
 *    because getfd/add-fd need SCM_RIGHTS ancillary data attached to the
 *    first byte of a particular command.
 *  - Every command lives in exactly one queue: waitq (handshake not done),
 *    sendq (being written) or flightq (written, awaiting its reply).
 *  - Re-entrancy: every entry point that may run user callbacks holds a
 *    reference (q->depth).  qmp_free() only marks the client dying; the
 *    memory goes away when the outermost hold is released.  Loops that run
 *    callbacks re-check q->gen (bumped on each close) and q->dying after
 *    every callback and stop if anything changed underneath them.
 */
#include "qemu/qmp.h"

#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define QMP_DEFAULT_HANDSHAKE_MS 10000
#define QMP_READ_CHUNK (256 * 1024)
/* A QEMU reply without a newline beyond this is treated as garbage. */
#define QMP_MAX_MESSAGE (64u * 1024 * 1024)
#define QMP_RETRY_MIN_MS 20
#define QMP_RETRY_MAX_MS 250

enum qmp_state { ST_IDLE, ST_CONNECTING, ST_GREETING, ST_CAPS, ST_READY, ST_CLOSED };
enum cmd_queue { CQ_NONE, CQ_WAIT, CQ_SEND, CQ_FLIGHT };

struct qmp_cmd {
    TAILQ_ENTRY(qmp_cmd) link;
    enum cmd_queue where;
    qmp_t *q;
    json_int_t id;
    char *execute;
    uint64_t t_created_ms; /* for the debug log: how long QEMU took */
    char *wire; /* serialized command + "\r\n" */
    size_t len, off;
    int fd; /* to pass with SCM_RIGHTS, or -1 */
    int timeout_ms;
    struct event *timer;
    qmp_reply_fn cb;
    void *cb_arg;
    bool orphan;   /* timed out while partially written: finish writing, then drop */
    bool internal; /* our own qmp_capabilities: never reported to the user */
};
TAILQ_HEAD(cmd_list, qmp_cmd);

struct qmp {
    struct event_base *base;
    qmp_event_fn on_event;
    qmp_state_fn on_state;
    void *arg;

    enum qmp_state state;
    int fd;
    struct event *read_ev, *write_ev;
    struct event *retry_ev, *deadline_ev;
    struct evbuffer *inbuf;
    size_t scan_off; /* bytes of inbuf already known to hold no newline */

    struct cmd_list waitq, sendq, flightq;
    json_int_t next_id;
    int handshake_ms;

    /* qmp_connect_unix state */
    char *path;
    int connect_ms;
    int retry_ms;
    int last_errno;

    bool oob;     /* out-of-band execution negotiated (QEMU offered "oob") */
    unsigned gen; /* bumped on every close: invalidates running loops */
    int depth;    /* active holds (see hold/release) */
    bool dying;   /* qmp_free called; destroy when depth drops to 0 */
};

static void teardown(qmp_t *q, enum qmp_err_kind kind, const char *reason, bool notify);

/* ---- lifetime -------------------------------------------------------- */

static void hold(qmp_t *q) { q->depth++; }

static void cmd_free(struct qmp_cmd *c)
{
    if (c->timer)
        event_free(c->timer);
    if (c->fd >= 0)
        close(c->fd);
    free(c->execute);
    free(c->wire);
    free(c);
}

static void destroy(qmp_t *q)
{
    struct cmd_list *lists[] = {&q->waitq, &q->sendq, &q->flightq};
    for (size_t i = 0; i < ARRAY_LEN(lists); i++) {
        struct qmp_cmd *c;
        while ((c = TAILQ_FIRST(lists[i]))) {
            TAILQ_REMOVE(lists[i], c, link);
            cmd_free(c);
        }
    }
    if (q->read_ev)
        event_free(q->read_ev);
    if (q->write_ev)
        event_free(q->write_ev);
    event_free(q->retry_ev);
    event_free(q->deadline_ev);
    evbuffer_free(q->inbuf);
    free(q->path);
    free(q);
}

/* Drops a hold; the last one on a dying client frees it.  Callers must not
 * touch q after release(). */
static void release(qmp_t *q)
{
    if (--q->depth == 0 && q->dying)
        destroy(q);
}

/* ---- command queues -------------------------------------------------- */

static struct cmd_list *queue_of(qmp_t *q, enum cmd_queue where)
{
    switch (where) {
    case CQ_WAIT: return &q->waitq;
    case CQ_SEND: return &q->sendq;
    case CQ_FLIGHT: return &q->flightq;
    case CQ_NONE: break;
    }
    return NULL;
}

static void cmd_unlink(struct qmp_cmd *c)
{
    struct cmd_list *l = queue_of(c->q, c->where);
    if (l)
        TAILQ_REMOVE(l, c, link);
    c->where = CQ_NONE;
}

static void cmd_move(struct qmp_cmd *c, enum cmd_queue to, bool at_head)
{
    cmd_unlink(c);
    struct cmd_list *l = queue_of(c->q, to);
    if (at_head)
        TAILQ_INSERT_HEAD(l, c, link);
    else
        TAILQ_INSERT_TAIL(l, c, link);
    c->where = to;
}

/* Reports the outcome of a command that has already been unlinked, then
 * frees it.  The command is self-contained, so this is safe even if the
 * callback frees q. */
static void cmd_finish(struct qmp_cmd *c, json_t *ret, const qmp_error_t *err)
{
    log_debug("qmp: %s %s after %llu ms%s%s", c->execute, err ? "failed" : "done",
              (unsigned long long)(now_ms() - c->t_created_ms), err ? ": " : "", err ? err->desc : "");
    if (c->timer)
        event_del(c->timer);
    if (c->cb && !c->internal)
        c->cb(c->cb_arg, ret, err);
    cmd_free(c);
}

static void cmd_fail(struct qmp_cmd *c, enum qmp_err_kind kind, const char *desc)
{
    qmp_error_t err = {.kind = kind, .cls = NULL, .desc = desc};
    cmd_finish(c, NULL, &err);
}

static struct qmp_cmd *find_in_flight(qmp_t *q, json_int_t id)
{
    struct qmp_cmd *c;
    TAILQ_FOREACH(c, &q->flightq, link) {
        if (c->id == id)
            return c;
    }
    return NULL;
}

/* ---- writing --------------------------------------------------------- */

static void schedule_write(qmp_t *q)
{
    if (q->fd >= 0 && !TAILQ_EMPTY(&q->sendq))
        event_add(q->write_ev, NULL);
}

/* One sendmsg() of the rest of c; the fd rides on the command's first byte. */
static ssize_t send_chunk(qmp_t *q, struct qmp_cmd *c)
{
    struct iovec iov = {.iov_base = c->wire + c->off, .iov_len = c->len - c->off};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    if (c->fd >= 0) {
        memset(&ctl, 0, sizeof ctl);
        mh.msg_control = ctl.buf;
        mh.msg_controllen = sizeof ctl.buf;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &c->fd, sizeof(int));
    }
    return sendmsg(q->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void sent_completely(struct qmp_cmd *c)
{
    if (c->orphan) {
        cmd_unlink(c);
        cmd_free(c);
        return;
    }
    free(c->wire); /* may be megabytes; no longer needed */
    c->wire = NULL;
    cmd_move(c, CQ_FLIGHT, false);
}

static void flush_sendq(qmp_t *q)
{
    struct qmp_cmd *c;
    while ((c = TAILQ_FIRST(&q->sendq))) {
        ssize_t n = send_chunk(q, c);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            event_add(q->write_ev, NULL);
            return;
        }
        if (n < 0) {
            char *why = xasprintf("QMP write failed: %s", strerror(errno));
            teardown(q, QMP_ERR_DISCONNECTED, why, true);
            free(why);
            return;
        }
        if (c->fd >= 0) { /* the kernel has its own reference now */
            close(c->fd);
            c->fd = -1;
        }
        c->off += (size_t)n;
        if (c->off == c->len)
            sent_completely(c);
    }
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    qmp_t *q = arg;
    hold(q);
    flush_sendq(q);
    release(q);
}

/* ---- message handling ------------------------------------------------ */

/* QEMU said something we cannot make sense of: the stream cannot be trusted
 * any more, so drop the connection and fail everything pending. */
static void protocol_error(qmp_t *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void protocol_error(qmp_t *q, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *why = NULL;
    if (vasprintf(&why, fmt, ap) < 0)
        abort();
    va_end(ap);
    log_warn("qmp: %s", why);
    teardown(q, QMP_ERR_PROTOCOL, why, true);
    free(why);
}

static struct qmp_cmd *cmd_create(qmp_t *q, const char *key, const char *execute, json_t *args,
                                  int timeout_ms, qmp_reply_fn cb, void *cb_arg);

static bool greeting_offers_oob(json_t *msg)
{
    json_t *caps = json_object_get(json_object_get(msg, "QMP"), "capabilities"), *c;
    size_t i;
    json_array_foreach(caps, i, c) {
        if (!strcmp(json_string_value(c) ? json_string_value(c) : "", "oob"))
            return true;
    }
    return false;
}

static void handle_greeting(qmp_t *q, json_t *msg)
{
    if (q->state != ST_GREETING) {
        protocol_error(q, "unexpected QMP greeting");
        return;
    }
    q->state = ST_CAPS;
    /* Out-of-band execution lets a command such as yank run while the main
     * loop is blocked (e.g. a migration thread holding the big lock). */
    q->oob = greeting_offers_oob(msg);
    json_t *args = q->oob ? json_pack("{s:[s]}", "enable", "oob") : NULL;
    /* The capabilities command jumps ahead of anything the user queued. */
    struct qmp_cmd *c = cmd_create(q, "execute", "qmp_capabilities", args, 0, NULL, NULL);
    c->internal = true;
    cmd_move(c, CQ_SEND, true);
    schedule_write(q);
}

static void become_ready(qmp_t *q)
{
    q->state = ST_READY;
    event_del(q->deadline_ev);
    struct qmp_cmd *c;
    while ((c = TAILQ_FIRST(&q->waitq)))
        cmd_move(c, CQ_SEND, false);
    schedule_write(q);
    log_debug("qmp: connection ready");
    if (q->on_state)
        q->on_state(q->arg, true, "ready");
}

static void caps_done(qmp_t *q, json_t *error)
{
    if (!error) {
        become_ready(q);
        return;
    }
    const char *desc = json_string_value(json_object_get(error, "desc"));
    protocol_error(q, "qmp_capabilities failed: %s", desc ? desc : "(no description)");
}

static void handle_event(qmp_t *q, json_t *msg)
{
    const char *name = json_string_value(json_object_get(msg, "event"));
    if (!name) {
        protocol_error(q, "QMP event without a name");
        return;
    }
    if (q->on_event)
        q->on_event(q->arg, name, json_object_get(msg, "data"));
}

static void handle_reply(qmp_t *q, json_t *msg)
{
    json_t *id = json_object_get(msg, "id");
    json_t *error = json_object_get(msg, "error");
    if (!json_is_integer(id)) {
        /* We always send an integer id, so QEMU could not parse our command:
         * the stream is out of sync and no pending command can be trusted. */
        const char *desc = json_string_value(json_object_get(error, "desc"));
        protocol_error(q, "QMP reply without a valid id: %s", desc ? desc : "(no error)");
        return;
    }
    struct qmp_cmd *c = find_in_flight(q, json_integer_value(id));
    if (!c) {
        log_debug("qmp: discarding reply for unknown/timed-out id %" JSON_INTEGER_FORMAT,
                  json_integer_value(id));
        return;
    }
    cmd_unlink(c);
    if (c->internal) { /* our qmp_capabilities */
        cmd_free(c);
        caps_done(q, error);
        return;
    }
    if (!error) {
        cmd_finish(c, json_object_get(msg, "return"), NULL);
        return;
    }
    qmp_error_t err = {
        .kind = QMP_ERR_QEMU,
        .cls = json_string_value(json_object_get(error, "class")),
        .desc = json_string_value(json_object_get(error, "desc")),
    };
    if (!err.desc)
        err.desc = "QEMU error without description";
    cmd_finish(c, NULL, &err);
}

static void dispatch_message(qmp_t *q, json_t *msg)
{
    if (!json_is_object(msg))
        protocol_error(q, "QMP message is not a JSON object");
    else if (json_object_get(msg, "QMP"))
        handle_greeting(q, msg);
    else if (q->state == ST_GREETING)
        protocol_error(q, "expected the QMP greeting");
    else if (json_object_get(msg, "event"))
        handle_event(q, msg);
    else if (json_object_get(msg, "return") || json_object_get(msg, "error"))
        handle_reply(q, msg);
    else
        protocol_error(q, "unrecognized QMP message");
}

static bool is_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    }
    return true;
}

/* Takes one newline-terminated message of line_len bytes (without the
 * newline) off the input buffer and dispatches it. */
static void consume_line(qmp_t *q, size_t line_len)
{
    const char *line = (const char *)evbuffer_pullup(q->inbuf, (ssize_t)line_len + 1);
    json_t *msg = NULL;
    json_error_t jerr;
    bool blank = is_blank(line, line_len);
    if (!blank)
        msg = json_loadb(line, line_len, 0, &jerr);
    evbuffer_drain(q->inbuf, line_len + 1);
    q->scan_off = 0;
    if (blank)
        return;
    if (!msg) {
        protocol_error(q, "malformed JSON from QEMU: %s", jerr.text);
        return;
    }
    dispatch_message(q, msg);
    json_decref(msg);
}

static void process_input(qmp_t *q)
{
    unsigned gen = q->gen;
    while (q->gen == gen && !q->dying) {
        size_t total = evbuffer_get_length(q->inbuf);
        if (q->scan_off >= total)
            return;
        /* Resume the newline search where the last one stopped, so a
         * multi-megabyte message arriving in chunks is scanned only once. */
        struct evbuffer_ptr start, eol;
        evbuffer_ptr_set(q->inbuf, &start, q->scan_off, EVBUFFER_PTR_SET);
        eol = evbuffer_search(q->inbuf, "\n", 1, &start);
        if (eol.pos < 0) {
            q->scan_off = total;
            if (total > QMP_MAX_MESSAGE)
                protocol_error(q, "QMP message larger than %u bytes", QMP_MAX_MESSAGE);
            return;
        }
        consume_line(q, (size_t)eol.pos);
    }
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    qmp_t *q = arg;
    hold(q);
    int n = evbuffer_read(q->inbuf, fd, QMP_READ_CHUNK);
    if (n > 0) {
        process_input(q);
    } else if (n == 0) {
        teardown(q, QMP_ERR_DISCONNECTED, "QEMU closed the QMP connection", true);
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        char *why = xasprintf("QMP read failed: %s", strerror(errno));
        teardown(q, QMP_ERR_DISCONNECTED, why, true);
        free(why);
    }
    release(q);
}

/* ---- connection lifecycle ------------------------------------------- */

/* Ends the current connection: fails every pending command with kind, then
 * reports on_state(false) if notify.  Commands are moved to a private list
 * first so that commands queued by callbacks (e.g. after a reconnect from
 * inside a callback) are not failed by mistake. */
static void teardown(qmp_t *q, enum qmp_err_kind kind, const char *reason, bool notify)
{
    if (q->state == ST_CLOSED)
        return;
    hold(q);
    q->state = ST_CLOSED;
    q->gen++;
    /* Freeing the I/O events is fine even from inside their own callback;
     * a later connection gets fresh ones for its fd. */
    if (q->read_ev)
        event_free(q->read_ev);
    if (q->write_ev)
        event_free(q->write_ev);
    q->read_ev = q->write_ev = NULL;
    event_del(q->retry_ev);
    event_del(q->deadline_ev);
    if (q->fd >= 0)
        close(q->fd);
    q->fd = -1;
    evbuffer_drain(q->inbuf, evbuffer_get_length(q->inbuf));
    q->scan_off = 0;
    log_debug("qmp: connection closed: %s", reason);

    struct cmd_list doomed = TAILQ_HEAD_INITIALIZER(doomed);
    struct cmd_list *lists[] = {&q->flightq, &q->sendq, &q->waitq};
    for (size_t i = 0; i < ARRAY_LEN(lists); i++) {
        struct qmp_cmd *c;
        while ((c = TAILQ_FIRST(lists[i]))) {
            cmd_unlink(c);
            TAILQ_INSERT_TAIL(&doomed, c, link);
        }
    }
    /* Roughly issue order: written ones first, then unwritten, then queued. */
    struct qmp_cmd *c;
    while ((c = TAILQ_FIRST(&doomed))) {
        TAILQ_REMOVE(&doomed, c, link);
        if (c->orphan || c->internal)
            cmd_free(c);
        else
            cmd_fail(c, kind, reason);
    }
    if (notify && !q->dying && q->on_state)
        q->on_state(q->arg, false, reason);
    release(q);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    qmp_t *q = arg;
    hold(q);
    char *why;
    if (q->state == ST_CONNECTING)
        why = xasprintf("could not connect to QMP socket %s within %d ms: %s", q->path,
                        q->connect_ms, strerror(q->last_errno));
    else
        why = xasprintf("QMP handshake with QEMU timed out");
    teardown(q, QMP_ERR_DISCONNECTED, why, true);
    free(why);
    release(q);
}

static void on_cmd_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct qmp_cmd *c = arg;
    qmp_t *q = c->q;
    hold(q);
    char *why = xasprintf("QMP command '%s' timed out after %d ms", c->execute, c->timeout_ms);
    qmp_error_t err = {QMP_ERR_TIMEOUT, NULL, why};
    if (c->where == CQ_SEND && c->off > 0) {
        /* Half on the wire: the rest must still be sent to keep the stream
         * framed.  Report now, drop the command when it is fully written.
         * Orphan it before the callback, which may close q (and free c). */
        qmp_reply_fn cb = c->cb;
        void *cb_arg = c->cb_arg;
        c->orphan = true;
        c->cb = NULL;
        if (cb)
            cb(cb_arg, NULL, &err);
    } else {
        cmd_unlink(c);
        cmd_finish(c, NULL, &err);
    }
    free(why);
    release(q);
}

/* The socket is connected: wait for the greeting. */
static void start_session(qmp_t *q, int fd)
{
    q->fd = fd;
    q->state = ST_GREETING;
    q->read_ev = event_new(q->base, fd, EV_READ | EV_PERSIST, on_readable, q);
    q->write_ev = event_new(q->base, fd, EV_WRITE, on_writable, q);
    if (!q->read_ev || !q->write_ev)
        abort();
    event_add(q->read_ev, NULL);
}

static void arm_deadline(qmp_t *q, int ms)
{
    if (ms <= 0)
        return;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(q->deadline_ev, &tv);
}

static bool connect_error_is_transient(int e)
{
    /* Socket file not created yet, or no listener / backlog full yet. */
    return e == ENOENT || e == ECONNREFUSED || e == EAGAIN || e == EINPROGRESS;
}

static void on_retry_connect(evutil_socket_t unused, short what, void *arg)
{
    qmp_t *q = arg;
    hold(q);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", q->path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        log_debug("qmp: connected to %s", q->path);
        start_session(q, fd);
    } else {
        q->last_errno = errno;
        if (fd >= 0)
            close(fd);
        if (fd >= 0 && connect_error_is_transient(q->last_errno)) {
            struct timeval tv = {0, q->retry_ms * 1000};
            event_add(q->retry_ev, &tv);
            q->retry_ms = q->retry_ms * 2 > QMP_RETRY_MAX_MS ? QMP_RETRY_MAX_MS : q->retry_ms * 2;
        } else {
            char *why = xasprintf("cannot connect to QMP socket %s: %s", q->path,
                                  strerror(q->last_errno));
            teardown(q, QMP_ERR_DISCONNECTED, why, true);
            free(why);
        }
    }
    release(q);
}

/* ---- public API ------------------------------------------------------ */

qmp_t *qmp_new(struct event_base *base, qmp_event_fn on_event, qmp_state_fn on_state, void *arg)
{
    qmp_t *q = xcalloc(1, sizeof *q);
    q->base = base;
    q->on_event = on_event;
    q->on_state = on_state;
    q->arg = arg;
    q->state = ST_IDLE;
    q->fd = -1;
    q->next_id = 1;
    q->handshake_ms = QMP_DEFAULT_HANDSHAKE_MS;
    TAILQ_INIT(&q->waitq);
    TAILQ_INIT(&q->sendq);
    TAILQ_INIT(&q->flightq);
    /* read/write events are created per connection in start_session(). */
    q->retry_ev = evtimer_new(base, on_retry_connect, q);
    q->deadline_ev = evtimer_new(base, on_deadline, q);
    q->inbuf = evbuffer_new();
    if (!q->retry_ev || !q->deadline_ev || !q->inbuf)
        abort();
    return q;
}

static bool can_start_connection(const qmp_t *q)
{
    return !q->dying && (q->state == ST_IDLE || q->state == ST_CLOSED);
}

int qmp_attach_fd(qmp_t *q, int fd)
{
    if (fd < 0 || !can_start_connection(q)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
        fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
        close(fd);
        return -1;
    }
    start_session(q, fd);
    arm_deadline(q, q->handshake_ms);
    return 0;
}

int qmp_connect_unix(qmp_t *q, const char *path, int timeout_ms)
{
    struct sockaddr_un sa;
    if (!path || strlen(path) >= sizeof sa.sun_path || !can_start_connection(q))
        return -1;
    free(q->path);
    q->path = xstrdup(path);
    q->connect_ms = timeout_ms;
    q->retry_ms = QMP_RETRY_MIN_MS;
    q->last_errno = ETIMEDOUT;
    q->state = ST_CONNECTING;
    /* First attempt from the loop too, so failures are always asynchronous. */
    struct timeval now = {0, 0};
    event_add(q->retry_ev, &now);
    arm_deadline(q, timeout_ms);
    return 0;
}

void qmp_set_handshake_timeout(qmp_t *q, int timeout_ms)
{
    q->handshake_ms = timeout_ms;
}

static struct qmp_cmd *cmd_create(qmp_t *q, const char *key, const char *execute, json_t *args,
                                  int timeout_ms, qmp_reply_fn cb, void *cb_arg)
{
    struct qmp_cmd *c = xcalloc(1, sizeof *c);
    c->q = q;
    c->id = q->next_id++;
    c->execute = xstrdup(execute);
    c->t_created_ms = now_ms();
    c->fd = -1;
    c->timeout_ms = timeout_ms;
    c->cb = cb;
    c->cb_arg = cb_arg;

    json_t *msg = json_pack("{s:s, s:I}", key, execute, "id", (json_int_t)c->id);
    if (args)
        json_object_set_new(msg, "arguments", args);
    char *body = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (!body)
        abort();
    c->wire = xasprintf("%s\r\n", body);
    c->len = strlen(c->wire);
    free(body);

    if (timeout_ms > 0) {
        c->timer = evtimer_new(q->base, on_cmd_timeout, c);
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        evtimer_add(c->timer, &tv);
    }
    return c;
}

int qmp_command_fd(qmp_t *q, const char *execute, json_t *args, int fd, int timeout_ms,
                   qmp_reply_fn cb, void *cb_arg)
{
    if (q->dying || q->state == ST_CLOSED || !execute || !*execute || timeout_ms < 0 ||
        (args && !json_is_object(args))) {
        json_decref(args);
        return -1;
    }
    int dup_fd = -1;
    if (fd >= 0 && (dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
        json_decref(args);
        return -1;
    }
    struct qmp_cmd *c = cmd_create(q, "execute", execute, args, timeout_ms, cb, cb_arg);
    c->fd = dup_fd;
    if (q->state == ST_READY) {
        cmd_move(c, CQ_SEND, false);
        schedule_write(q);
    } else {
        cmd_move(c, CQ_WAIT, false);
    }
    return 0;
}

int qmp_command(qmp_t *q, const char *execute, json_t *args, int timeout_ms, qmp_reply_fn cb,
                void *cb_arg)
{
    return qmp_command_fd(q, execute, args, -1, timeout_ms, cb, cb_arg);
}

int qmp_command_oob(qmp_t *q, const char *execute, json_t *args, int timeout_ms, qmp_reply_fn cb,
                    void *cb_arg)
{
    if (!q->oob || q->state != ST_READY)
        return qmp_command(q, execute, args, timeout_ms, cb, cb_arg);
    if (q->dying || !execute || !*execute || timeout_ms < 0 || (args && !json_is_object(args))) {
        json_decref(args);
        return -1;
    }
    struct qmp_cmd *c = cmd_create(q, "exec-oob", execute, args, timeout_ms, cb, cb_arg);
    /* Ahead of queued in-band commands, but never inside a command that is
     * half written. */
    struct qmp_cmd *head = TAILQ_FIRST(&q->sendq);
    if (head && head->off > 0) {
        cmd_unlink(c);
        TAILQ_INSERT_AFTER(&q->sendq, head, c, link);
        c->where = CQ_SEND;
    } else {
        cmd_move(c, CQ_SEND, true);
    }
    schedule_write(q);
    return 0;
}

bool qmp_oob_enabled(const qmp_t *q)
{
    return q->oob && q->state == ST_READY;
}

bool qmp_is_ready(const qmp_t *q)
{
    return q->state == ST_READY && !q->dying;
}

void qmp_close(qmp_t *q, const char *reason)
{
    if (q->dying)
        return;
    teardown(q, QMP_ERR_DISCONNECTED, reason ? reason : "closed", true);
}

void qmp_free(qmp_t *q)
{
    if (!q || q->dying)
        return;
    hold(q);
    q->dying = true;
    teardown(q, QMP_ERR_DISCONNECTED, "QMP client freed", false);
    release(q);
}

const char *qmp_err_kind_name(enum qmp_err_kind kind)
{
    switch (kind) {
    case QMP_ERR_NONE: return "none";
    case QMP_ERR_QEMU: return "qemu";
    case QMP_ERR_TIMEOUT: return "timeout";
    case QMP_ERR_DISCONNECTED: return "disconnected";
    case QMP_ERR_PROTOCOL: return "protocol";
    }
    return "unknown";
}
