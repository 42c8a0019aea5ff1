/* The transport: accepting, TLS, reading request lines, writing replies
 * and the resource limits of server.h, for the unix socket and TCP alike.
 *
 * Over 600 lines: the limits (caps, timeouts, budgets, back-off) are checked
 * where the bytes arrive and leave, so they stay beside the reads and writes
 * they bound; splitting them out would spread one connection's life over
 * two files. */
#include "server/server.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <arpa/inet.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/ratelimit.h"
#include "common/tls.h"
#include "common/util.h"
#include "core/agent.h"
#include "api/api.h"
#include "console/console.h"

struct server {
    struct agent *agent;
    struct evconnlistener *unix_listener;
    struct evconnlistener *tcp_listener;
    struct conn *conns;          /* open connections, closed on shutdown */
    int n_tcp, n_handshaking;    /* TCP connections, and those not yet authenticated */
    struct event *sweep;         /* once a second: handshake and idle timeouts */
    struct event *resume_accept; /* accept() back-off after EMFILE and friends */
    struct ratelimit refusals;   /* rate of "refused" log lines */
    struct console *console;     /* the web console, served while the host setting says so */
};

static const struct api_sink_ops conn_sink_ops;

struct conn {
    struct api_sink sink;        /* first: the API sees the connection as this */
    struct conn *prev, *next;
    struct server *server;
    int refs;
    bool open;
    bool tls;
    struct agent *agent;
    struct bufferevent *bev;
    struct principal who;
    bool authenticated;
    bool closing;                /* rejected: hang up once the reason is written */
    bool counted_handshake;      /* counted in server->n_handshaking */
    char ip[64];                 /* TCP peers: the address alone, for per-address caps */
    uint64_t opened_ms, last_read_ms;
    uint64_t partial_since_ms;   /* when the unfinished request in the input began to arrive; 0: none */
    size_t searched;             /* input bytes already known to hold no newline */
    void (*close_hook)(void *arg);
    void *close_hook_arg;
    char peer[96];
};

void conn_ref(struct conn *c) { c->refs++; }

void conn_unref(struct conn *c)
{
    if (--c->refs == 0)
        free(c);
}

bool conn_is_open(const struct conn *c) { return c->open; }

/* ---- connection hygiene (docs/SECURITY.md, "Resource limits") ---------- */

static void handshake_done(struct conn *c)
{
    if (c->counted_handshake) {
        c->counted_handshake = false;
        c->server->n_handshaking--;
    }
}

/* Remote parties can cause these lines: a flood must not fill the disk. */
static void log_refusal(struct server *s, const char *fmt, const char *what)
{
    int dropped = 0;
    if (!ratelimit_allow(&s->refusals, now_ms(), 10, 10000, &dropped))
        return;
    if (dropped)
        log_warn("(%d more refusals not logged)", dropped);
    log_warn(fmt, what);
}

static int handshakes_from(const struct server *s, const char *ip)
{
    int n = 0;
    for (const struct conn *c = s->conns; c; c = c->next)
        n += c->counted_handshake && !strcmp(c->ip, ip);
    return n;
}

static int conns_of(const struct server *s, const struct principal *who)
{
    int n = 0;
    for (const struct conn *c = s->conns; c; c = c->next)
        n += c->authenticated && c->who.kind == who->kind && !strcmp(c->who.name, who->name);
    return n;
}

/* Room for one more TCP connection from ip?  Refused ones are closed before
 * any TLS work, so a flood costs a descriptor for a moment, not the loop. */
static bool admit_tcp(struct server *s, const char *ip)
{
    const char *why = NULL;
    if (s->n_tcp >= SERVER_MAX_TCP_CONNS)
        why = "too many connections";
    else if (s->n_handshaking >= SERVER_MAX_HANDSHAKES)
        why = "too many TLS handshakes in progress";
    else if (handshakes_from(s, ip) >= SERVER_MAX_HANDSHAKES_PER_ADDR)
        why = "too many TLS handshakes in progress from one address";
    if (why) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s (%s)", ip, why);
        log_refusal(s, "refusing a TCP connection from %s", msg);
    }
    return !why;
}

static size_t input_buffered(const struct server *s)
{
    size_t n = 0;
    for (const struct conn *c = s->conns; c; c = c->next)
        if (c->bev)
            n += evbuffer_get_length(bufferevent_get_input(c->bev));
    return n;
}

static void conn_close(struct conn *c);
static void conn_reject(struct conn *c, const char *code, const char *msg);

static void sweep_conn(struct conn *c, uint64_t now)
{
    if (c->tls && !c->authenticated && now - c->opened_ms > SERVER_HANDSHAKE_TIMEOUT_S * 1000ull) {
        log_refusal(c->server, "closing %s: no TLS handshake in time", c->peer);
        conn_close(c);
        return;
    }
    /* Slowloris: a byte now and then keeps the connection from looking
     * idle, so an unfinished request gets a deadline of its own. */
    int limit_s = c->agent->quotas.request_timeout_s;
    if (c->authenticated && !c->closing && c->partial_since_ms && now - c->partial_since_ms > limit_s * 1000ull) {
        char msg[200];
        snprintf(msg, sizeof msg, "request not complete after %d s (%zu bytes and no newline so far): a request "
                 "must arrive within %d s", limit_s, evbuffer_get_length(bufferevent_get_input(c->bev)), limit_s);
        log_refusal(c->server, "closing %s: an unfinished request for too long", c->peer);
        conn_reject(c, ERR_TIMEOUT, msg);
        return;
    }
    /* Idle: nothing read for long, and nothing in flight (a request, a job
     * being watched or a migration holding the connection takes a ref). */
    if (c->authenticated && !c->closing && c->refs == 1 &&
        now - c->last_read_ms > SERVER_IDLE_TIMEOUT_S * 1000ull) {
        log_info("closing idle connection %s", c->peer);
        conn_close(c);
    }
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    uint64_t now = now_ms();
    for (struct conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        sweep_conn(c, now);
    }
    console_sync(s->console);
}

static void on_resume_accept(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    if (s->unix_listener)
        evconnlistener_enable(s->unix_listener);
    if (s->tcp_listener)
        evconnlistener_enable(s->tcp_listener);
}

/* Out of descriptors (or memory): stop accepting for a moment instead of
 * spinning on a listener that is always readable and logging every try. */
static void on_accept_error(struct evconnlistener *l, void *arg)
{
    struct server *s = arg;
    int e = EVUTIL_SOCKET_ERROR();
    char what[160];
    snprintf(what, sizeof what, "%s; pausing for %d ms", strerror(e), SERVER_ACCEPT_BACKOFF_MS);
    log_refusal(s, "accept failed: %s", what);
    if (s->unix_listener)
        evconnlistener_disable(s->unix_listener);
    if (s->tcp_listener)
        evconnlistener_disable(s->tcp_listener);
    struct timeval tv = {0, SERVER_ACCEPT_BACKOFF_MS * 1000};
    evtimer_add(s->resume_accept, &tv);
}

static void conn_close(struct conn *c)
{
    if (!c->open)
        return;
    c->open = false;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->server->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->tls)
        c->server->n_tcp--;
    handshake_done(c);
    if (c->close_hook) {
        void (*hook)(void *) = c->close_hook;
        c->close_hook = NULL;
        hook(c->close_hook_arg);
    }
    if (c->tls) {
        SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
        if (ssl)
            SSL_set_shutdown(ssl, SSL_RECEIVED_SHUTDOWN);
    }
    bufferevent_free(c->bev);
    c->bev = NULL;
    conn_unref(c);
}

void conn_send(struct conn *c, json_t *msg)
{
    if (c->open) {
        size_t len;
        char *line = proto_encode(msg, &len);
        if (line)
            bufferevent_write(c->bev, line, len);
        free(line);
        /* A client that does not read must not make vmoved buffer forever. */
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) > SERVER_OUTPUT_MAX) {
            log_refusal(c->server, "closing %s: it does not read its replies", c->peer);
            json_decref(msg);
            conn_close(c);
            return;
        }
    }
    json_decref(msg);
}

static void conn_on_event(struct bufferevent *bev, short what, void *arg);

static void on_flushed(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        conn_close(c);
}

/* Send an error, then hang up once it has been written.  The request is not
 * read: a refused peer gets nothing but the reason. */
static void conn_reject(struct conn *c, const char *code, const char *msg)
{
    json_t *m = json_pack("{s:n, s:o}", "id", "error", proto_error(code, NULL, "%s", msg));
    conn_send(c, m);
    if (!c->open)
        return;
    c->closing = true;
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_setcb(c->bev, NULL, on_flushed, conn_on_event, c);
    on_flushed(c->bev, c);
}

static void handle_line(struct conn *c, const char *line)
{
    json_error_t je;
    json_t *msg = json_loads(line, JSON_REJECT_DUPLICATES, &je);
    if (!msg || !json_is_object(msg)) {
        char why[300];
        snprintf(why, sizeof why, "malformed request (not a JSON object): %s", msg ? "wrong type" : je.text);
        json_decref(msg);
        conn_reject(c, ERR_INVALID, why);
        return;
    }
    json_t *method = json_object_get(msg, "method");
    json_t *params = json_object_get(msg, "params");
    if (!json_is_string(method) || (params && !json_is_object(params))) {
        json_t *reply = json_pack("{s:O?, s:o}", "id", json_object_get(msg, "id"), "error",
                                  proto_error(ERR_INVALID, NULL, "request needs a string \"method\" and an object \"params\""));
        conn_send(c, reply);
        json_decref(msg);
        return;
    }
    json_t *id = json_object_get(msg, "id");
    json_t *no_params = params ? NULL : json_object();
    struct api_req *r = api_req_new(c->agent, &c->sink, id ? id : json_null(), json_string_value(method),
                                    params ? params : no_params, &c->who);
    json_decref(no_params);
    json_decref(msg);
    api_dispatch(r);
}

/* The next request line, or NULL while none has ended.  Only the bytes that
 * arrived since the last search are searched, so a large request that comes
 * in many small reads costs time in proportion to its size, not its square. */
static char *next_line(struct conn *c, struct evbuffer *in, size_t *n)
{
    size_t len = evbuffer_get_length(in);
    if (c->searched >= len)
        return NULL;
    struct evbuffer_ptr from;
    if (evbuffer_ptr_set(in, &from, c->searched, EVBUFFER_PTR_SET) < 0)
        return NULL;
    struct evbuffer_ptr eol = evbuffer_search_eol(in, &from, NULL, EVBUFFER_EOL_LF);
    if (eol.pos < 0) {
        c->searched = len;
        return NULL;
    }
    c->searched = 0;
    return evbuffer_readln(in, n, EVBUFFER_EOL_LF);
}

static void conn_on_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    c->last_read_ms = now_ms();
    if (evbuffer_get_length(in) > SERVER_INPUT_BUDGET / 4 && input_buffered(c->server) > SERVER_INPUT_BUDGET) {
        conn_reject(c, ERR_UNAVAILABLE, "vmoved is busy: too much unread input from all clients");
        return;
    }
    conn_ref(c);
    bool whole = false;          /* a request ended in this read: what is left began in it */
    while (c->open && !c->closing) {
        size_t n;
        char *line = next_line(c, in, &n);
        if (!line) {
            if (evbuffer_get_length(in) > PROTO_MAX_MESSAGE)
                conn_reject(c, ERR_INVALID, "request too large: over " PROTO_MAX_MESSAGE_TEXT " without a newline "
                            "(one request is one line of at most " PROTO_MAX_MESSAGE_TEXT ")");
            break;
        }
        whole = true;
        if (n > 0)
            handle_line(c, line);
        free(line);
    }
    if (c->open && !evbuffer_get_length(in))
        c->partial_since_ms = 0;
    else if (c->open && (whole || !c->partial_since_ms))
        c->partial_since_ms = c->last_read_ms;
    conn_unref(c);
}

static bool identify_tls_peer(struct conn *c)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    struct tls_identity id;
    if (tls_peer_identity(ssl, &id) < 0) {
        log_warn("refusing %s: certificate carries no vmove identity", c->peer);
        return false;
    }
    c->who.kind = id.role == PKI_ROLE_HOST ? PRINCIPAL_HOST : PRINCIPAL_USER;
    snprintf(c->who.name, sizeof c->who.name, "%s", id.name);
    /* A user certificate named root (issued by an older vmove, or by hand)
     * would be the same principal as local root: refused. */
    if (c->who.kind == PRINCIPAL_USER && !strcmp(id.name, "root")) {
        log_refusal(c->server, "refusing %s: a user certificate named root", c->peer);
        return false;
    }
    handshake_done(c);
    if (conns_of(c->server, &c->who) >= SERVER_MAX_CONNS_PER_PRINCIPAL) {
        char who[96], msg[160];
        principal_describe(&c->who, who, sizeof who);
        snprintf(msg, sizeof msg, "%s has %d connections open, the most one principal may", who,
                 SERVER_MAX_CONNS_PER_PRINCIPAL);
        log_refusal(c->server, "refusing a connection: %s", msg);
        c->authenticated = true;   /* so that the reason is sent, not a handshake timeout */
        conn_reject(c, ERR_UNAVAILABLE, msg);
        return true;               /* handled: it hangs up once the reason is out */
    }
    c->authenticated = true;
    log_info("TLS connection from %s as %s:%s", c->peer,
             id.role == PKI_ROLE_HOST ? "host" : "user", id.name);
    return true;
}

/* libevent moves OpenSSL's error queue into the bufferevent: put it back so
 * that tls_failure_reason() sees the whole story. */
static void log_tls_failure(struct conn *c, struct bufferevent *bev)
{
    unsigned long e;
    unsigned long errs[16];
    int n = 0;
    while ((e = bufferevent_get_openssl_error(bev)) && n < 16)
        errs[n++] = e;
    for (int i = n - 1; i >= 0; i--)
        ERR_raise_data(ERR_GET_LIB(errs[i]), ERR_GET_REASON(errs[i]), NULL);
    char why[512];
    tls_failure_reason(bufferevent_openssl_get_ssl(bev), why, sizeof why);
    log_warn("TLS handshake with %s failed: %s", c->peer, why);
}

static void conn_on_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {
        if (!identify_tls_peer(c))
            conn_close(c);
        return;
    }
    if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
        if (c->tls && !c->authenticated)
            log_tls_failure(c, bev);
        conn_close(c);
    }
}

static struct conn *conn_new(struct server *s, struct bufferevent *bev, bool tls, const char *peer)
{
    struct agent *a = s->agent;
    struct conn *c = xcalloc(1, sizeof *c);
    c->sink.ops = &conn_sink_ops;
    c->server = s;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    c->refs = 1;
    c->open = true;
    c->tls = tls;
    c->agent = a;
    c->bev = bev;
    c->opened_ms = c->last_read_ms = now_ms();
    snprintf(c->peer, sizeof c->peer, "%s", peer);
    bufferevent_setcb(bev, conn_on_read, NULL, conn_on_event, c);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    return c;
}

static void on_unix_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                           int len, void *arg)
{
    struct server *s = arg;
    struct ucred cred;
    socklen_t cl = sizeof cred;
    struct bufferevent *bev = bufferevent_socket_new(s->agent->base, fd, BEV_OPT_CLOSE_ON_FREE);
    char peer[96];
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0)
        cred.uid = (uid_t)-1;
    snprintf(peer, sizeof peer, "unix(pid %d, uid %d)", (int)cred.pid, (int)cred.uid);
    struct conn *c = conn_new(s, bev, false, peer);
    if (cred.uid != 0) {
        log_warn("refusing local connection from uid %d: the local socket is for root", (int)cred.uid);
        conn_reject(c, ERR_DENIED, "the local vmoved socket is for root only; "
                                   "connect over TLS with a user certificate (-H HOST --identity DIR)");
        return;
    }
    c->who.kind = PRINCIPAL_LOCAL_ROOT;
    snprintf(c->who.name, sizeof c->who.name, "root");
    c->authenticated = true;
}

static void on_tcp_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                          int len, void *arg)
{
    struct server *s = arg;
    char addr[64] = "?";
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, addr, sizeof addr);
    char peer[96];
    snprintf(peer, sizeof peer, "%s:%d", addr, ntohs(((struct sockaddr_in *)sa)->sin_port));
    if (!admit_tcp(s, addr)) {
        close(fd);
        return;
    }
    SSL *ssl = SSL_new(s->agent->tls_server);
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        s->agent->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        close(fd);
        return;
    }
    struct conn *c = conn_new(s, bev, true, peer);
    snprintf(c->ip, sizeof c->ip, "%s", addr);
    c->counted_handshake = true;
    s->n_tcp++;
    s->n_handshaking++;
}

static int unix_listen(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sun.sun_path) {
        snprintf(err, errlen, "socket path %s is too long (max %zu bytes)", path, sizeof sun.sun_path - 1);
        return -1;
    }
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    /* A stale socket from a killed vmoved: remove it only if nobody answers. */
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) == 0) {
        snprintf(err, errlen, "another vmoved is already listening on %s", path);
        close(fd);
        return -1;
    }
    unlink(path);
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&sun, sizeof sun);
    umask(old);
    if (rc < 0 || listen(fd, 64) < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int parse_listen_addr(const char *spec, struct sockaddr_in *sin, char *err, size_t errlen)
{
    char host[64];
    const char *colon = strrchr(spec, ':');
    int port = VMOVE_DEFAULT_PORT;
    size_t hl = colon ? (size_t)(colon - spec) : strlen(spec);
    if (hl >= sizeof host)
        hl = sizeof host - 1;
    memcpy(host, spec, hl);
    host[hl] = 0;
    if (colon) {
        char *end;
        long p = strtol(colon + 1, &end, 10);
        if (*end || p <= 0 || p > 65535) {
            snprintf(err, errlen, "--listen %s: bad port", spec);
            return -1;
        }
        port = (int)p;
    }
    memset(sin, 0, sizeof *sin);
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
        snprintf(err, errlen, "--listen %s: expected IPv4-ADDRESS:PORT", spec);
        return -1;
    }
    return 0;
}

struct server *server_start(struct agent *a, char *err, size_t errlen)
{
    struct server *s = xcalloc(1, sizeof *s);
    s->agent = a;
    int fd = unix_listen(a->socket_path, err, errlen);
    if (fd < 0)
        goto fail;
    s->unix_listener = evconnlistener_new(a->base, on_unix_accept, s,
                                          LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
    s->sweep = event_new(a->base, -1, EV_PERSIST, on_sweep, s);
    s->resume_accept = evtimer_new(a->base, on_resume_accept, s);
    struct timeval second = {1, 0};
    if (!s->unix_listener || !s->sweep || !s->resume_accept || event_add(s->sweep, &second) < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", a->socket_path, strerror(errno));
        goto fail;
    }
    evconnlistener_set_error_cb(s->unix_listener, on_accept_error);
    if (a->listen_addr) {
        struct sockaddr_in sin;
        if (parse_listen_addr(a->listen_addr, &sin, err, errlen) < 0)
            goto fail;
        if (!a->tls_server) {
            snprintf(err, errlen, "--listen needs --tls-dir: vmoved speaks only TLS on the network");
            goto fail;
        }
        s->tcp_listener = evconnlistener_new_bind(
            a->base, on_tcp_accept, s,
            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE, 64,
            (struct sockaddr *)&sin, sizeof sin);
        if (!s->tcp_listener) {
            snprintf(err, errlen, "cannot listen on %s: %s", a->listen_addr, strerror(errno));
            goto fail;
        }
        evconnlistener_set_error_cb(s->tcp_listener, on_accept_error);
    }
    s->console = console_new(a, a->console_dir);
    console_sync(s->console);
    return s;
fail:
    server_stop(s);
    return NULL;
}

void server_stop(struct server *s)
{
    if (!s)
        return;
    console_free(s->console);
    while (s->conns)
        conn_close(s->conns);
    if (s->unix_listener) {
        evconnlistener_free(s->unix_listener);
        unlink(s->agent->socket_path);
    }
    if (s->tcp_listener)
        evconnlistener_free(s->tcp_listener);
    if (s->sweep)
        event_free(s->sweep);
    if (s->resume_accept)
        event_free(s->resume_accept);
    free(s);
}

void conn_set_close_hook(struct conn *c, void (*hook)(void *arg), void *arg)
{
    c->close_hook = hook;
    c->close_hook_arg = arg;
}

/* The connection as the API layer sees it (src/api/api.h). */
static struct conn *sink_conn(const struct api_sink *s) { return (struct conn *)s; }
static void sink_send(struct api_sink *s, json_t *msg) { conn_send(sink_conn(s), msg); }
static bool sink_is_open(const struct api_sink *s) { return conn_is_open(sink_conn(s)); }
static const char *sink_peer(const struct api_sink *s) { return conn_peer(sink_conn(s)); }
static void sink_ref(struct api_sink *s) { conn_ref(sink_conn(s)); }
static void sink_unref(struct api_sink *s) { conn_unref(sink_conn(s)); }
static void sink_on_close(struct api_sink *s, void (*hook)(void *arg), void *arg)
{
    conn_set_close_hook(sink_conn(s), hook, arg);
}

static const struct api_sink_ops conn_sink_ops = {
    .send = sink_send,
    .is_open = sink_is_open,
    .peer = sink_peer,
    .ref = sink_ref,
    .unref = sink_unref,
    .on_close = sink_on_close,
};

const char *conn_peer(const struct conn *c) { return c->peer; }
