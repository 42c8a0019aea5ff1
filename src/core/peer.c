#include "core/peer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/tls.h"
#include "common/util.h"
#include "core/agent.h"

struct pending {
    struct pending *next;
    struct peer_conn *peer;
    long long id;
    char *line;              /* not yet sent: the whole request */
    peer_reply_fn cb;
    void *arg;
    struct event *timer;
};

struct peer_conn {
    struct agent *agent;
    char *name;
    char *addr;
    struct bufferevent *bev;
    bool connected, broken;
    char verified[64];           /* the host name its certificate proved ("" until connected) */
    char *broken_reason;
    long long next_id;
    struct pending *pending;
    peer_closed_fn on_closed;
    void *arg;
    int holds;               /* > 0 while callbacks run: free later */
    bool free_requested;
    struct event *fail_ev;   /* delivers failures asynchronously */
};

const char *peer_name(const struct peer_conn *p) { return p->name; }

const char *peer_verified_name(const struct peer_conn *p) { return p->verified[0] ? p->verified : NULL; }

static void pending_free(struct pending *q)
{
    if (q->timer)
        event_free(q->timer);
    free(q->line);
    free(q);
}

static void unlink_pending(struct peer_conn *p, struct pending *q)
{
    for (struct pending **pp = &p->pending; *pp; pp = &(*pp)->next)
        if (*pp == q) {
            *pp = q->next;
            return;
        }
}

static void really_free(struct peer_conn *p)
{
    if (p->bev)
        bufferevent_free(p->bev);
    if (p->fail_ev)
        event_free(p->fail_ev);
    free(p->name);
    free(p->addr);
    free(p->broken_reason);
    free(p);
}

static void peer_release(struct peer_conn *p)
{
    if (--p->holds == 0 && p->free_requested)
        really_free(p);
}

static void complete(struct peer_conn *p, struct pending *q, json_t *result, json_t *error)
{
    unlink_pending(p, q);
    p->holds++;
    q->cb(q->arg, result, error);
    pending_free(q);
    peer_release(p);
}

/* Fail every pending call; then tell the owner once. */
static void fail_all(struct peer_conn *p, const char *reason, bool notify)
{
    p->holds++;
    json_t *err = p->connected ? proto_error(ERR_UNAVAILABLE, "check that vmoved runs on the peer and the network "
                                             "between the hosts", "connection to host %s (%s) lost: %s", p->name,
                                             p->addr, reason)
                               : proto_error(ERR_UNAVAILABLE, "check that vmoved runs on the peer and the network "
                                             "between the hosts", "cannot reach host %s: %s", p->name, reason);
    while (p->pending && !p->free_requested)
        complete(p, p->pending, NULL, err);
    json_decref(err);
    if (notify && p->on_closed && !p->free_requested)
        p->on_closed(p->arg, reason);
    peer_release(p);
}

static void mark_broken(struct peer_conn *p, const char *reason)
{
    if (p->broken)
        return;
    p->broken = true;
    p->broken_reason = xstrdup(reason);
    log_warn("peer %s (%s): %s", p->name, p->addr, reason);
    if (p->bev) {
        bufferevent_free(p->bev);
        p->bev = NULL;
    }
    fail_all(p, reason, true);
}

static void peer_on_read(struct bufferevent *bev, void *arg)
{
    struct peer_conn *p = arg;
    p->holds++;
    char *line;
    size_t n;
    while (!p->free_requested && p->bev &&
           (line = evbuffer_readln(bufferevent_get_input(bev), &n, EVBUFFER_EOL_LF))) {
        json_t *msg = json_loads(line, 0, NULL);
        free(line);
        long long id = json_integer_value(json_object_get(msg, "id"));
        if (!msg || json_object_get(msg, "event")) {
            json_decref(msg);
            continue;
        }
        for (struct pending *q = p->pending; q; q = q->next)
            if (q->id == id) {
                complete(p, q, json_object_get(msg, "result"), json_object_get(msg, "error"));
                break;
            }
        json_decref(msg);
    }
    peer_release(p);
}

static void flush_queue(struct peer_conn *p)
{
    for (struct pending *q = p->pending; q; q = q->next)
        if (q->line) {
            bufferevent_write(p->bev, q->line, strlen(q->line));
            free(q->line);
            q->line = NULL;
        }
}

/* The name the peer's certificate carries, read from the chain it sent
 * (its verification failed, so SSL_get0_peer_certificate has none). */
static int presented_name(SSL *ssl, char *buf, size_t len)
{
    STACK_OF(X509) *chain = ssl ? SSL_get_peer_cert_chain(ssl) : NULL;
    X509 *leaf = chain && sk_X509_num(chain) > 0 ? sk_X509_value(chain, 0) : NULL;
    if (!leaf)
        return -1;
    return X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, buf, (int)len) > 0 ? 0 : -1;
}

/* The socket's own error: errno from the failed read or connect, else
 * what the kernel still holds for it. */
static int socket_error(struct bufferevent *bev)
{
    int err = EVUTIL_SOCKET_ERROR(), so = 0;
    socklen_t n = sizeof so;
    if (!err && getsockopt(bufferevent_getfd(bev), SOL_SOCKET, SO_ERROR, &so, &n) == 0)
        err = so;
    return err;
}

/* Why the connection failed, in words an administrator acts on
 * ("connection refused at 10.0.0.2:7070", "certificate names h3, expected
 * h2"), not a raw OpenSSL code: it is what a waiting job shows. */
static void peer_failure_words(struct peer_conn *p, struct bufferevent *bev, short what, char *why, size_t len)
{
    snprintf(why, len, p->connected ? "connection closed by %s" : "%s closed the connection during the TLS handshake "
             "(does it trust our CA, and know this host?)", p->addr);
    unsigned long e = bufferevent_get_openssl_error(bev);
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    char cn[128];
    if (e && vr == X509_V_ERR_HOSTNAME_MISMATCH && presented_name(ssl, cn, sizeof cn) == 0)
        snprintf(why, len, "the certificate at %s names %s, expected %s", p->addr, cn, p->name);
    else if (e && vr != X509_V_OK)
        snprintf(why, len, "TLS with %s: %s (is the peer's certificate from our CA, with name %s?)", p->addr,
                 X509_verify_cert_error_string(vr), p->name);
    else if (e && ERR_GET_LIB(e)) {
        char ossl[256];
        ERR_error_string_n(e, ossl, sizeof ossl);
        snprintf(why, len, "TLS with %s failed: %s", p->addr, ossl);
    } else if ((what & BEV_EVENT_ERROR) && socket_error(bev)) {
        /* A bare SSL_get_error code (libevent records SSL_ERROR_SYSCALL
         * so) is the socket's failure. */
        int err = socket_error(bev);
        if (err == ECONNREFUSED)
            snprintf(why, len, "connection refused at %s (is vmoved running there, listening on that port?)", p->addr);
        else if (err == EHOSTUNREACH || err == ENETUNREACH)
            snprintf(why, len, "no route to %s", p->addr);
        else
            snprintf(why, len, "%s: %s", p->addr, evutil_socket_error_to_string(err));
    }
}

static void peer_on_event(struct bufferevent *bev, short what, void *arg)
{
    struct peer_conn *p = arg;
    if (what & BEV_EVENT_CONNECTED) {
        struct tls_identity id;
        if (tls_peer_identity(bufferevent_openssl_get_ssl(bev), &id) < 0 || id.role != PKI_ROLE_HOST) {
            mark_broken(p, "the peer's certificate is not a vmove host certificate");
            return;
        }
        snprintf(p->verified, sizeof p->verified, "%s", id.name);
        p->connected = true;
        flush_queue(p);
        return;
    }
    if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
        char why[512];
        peer_failure_words(p, bev, what, why, sizeof why);
        mark_broken(p, why);
    }
}

static void on_fail_ev(evutil_socket_t fd, short what, void *arg)
{
    struct peer_conn *p = arg;
    fail_all(p, p->broken_reason ? p->broken_reason : "not connected", false);
}

static int parse_addr(const char *addr, struct sockaddr_in *sin)
{
    char ip[64];
    const char *colon = strrchr(addr, ':');
    if (!colon || (size_t)(colon - addr) >= sizeof ip)
        return -1;
    snprintf(ip, sizeof ip, "%.*s", (int)(colon - addr), addr);
    memset(sin, 0, sizeof *sin);
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)atoi(colon + 1));
    return inet_pton(AF_INET, ip, &sin->sin_addr) == 1 && sin->sin_port ? 0 : -1;
}

struct peer_conn *peer_connect(struct agent *a, const char *expect_name, const char *addr,
                               peer_closed_fn on_closed, void *arg)
{
    struct peer_conn *p = xcalloc(1, sizeof *p);
    p->agent = a;
    p->name = xstrdup(expect_name ? expect_name : addr);
    p->addr = xstrdup(addr);
    p->on_closed = on_closed;
    p->arg = arg;
    p->fail_ev = event_new(a->base, -1, 0, on_fail_ev, p);
    struct sockaddr_in sin;
    if (!a->tls_client) {
        p->broken = true;
        p->broken_reason = xstrdup("this host has no TLS identity (start vmoved with --listen and --tls-dir)");
        return p;
    }
    if (parse_addr(addr, &sin) < 0) {
        p->broken = true;
        p->broken_reason = xasprintf("bad peer address \"%s\" (expected IPv4:PORT)", addr);
        return p;
    }
    SSL *ssl = SSL_new(a->tls_client);
    /* A named peer must present a certificate for that name; a bare
     * address only needs a host certificate from our CA. */
    if (expect_name)
        tls_client_expect_host(ssl, expect_name);
    p->bev = bufferevent_openssl_socket_new(a->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                            BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(p->bev, peer_on_read, NULL, peer_on_event, p);
    bufferevent_enable(p->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(p->bev, (struct sockaddr *)&sin, sizeof sin) < 0) {
        bufferevent_free(p->bev);
        p->bev = NULL;
        p->broken = true;
        p->broken_reason = xasprintf("cannot connect to %s: %s", addr, strerror(errno));
    }
    return p;
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct pending *q = arg;
    struct peer_conn *p = q->peer;
    json_t *err = proto_error(ERR_TIMEOUT, NULL, "host %s did not answer in time", p->name);
    complete(p, q, NULL, err);
    json_decref(err);
}

void peer_call(struct peer_conn *p, const char *method, json_t *params, int timeout_ms,
               peer_reply_fn cb, void *arg)
{
    struct pending *q = xcalloc(1, sizeof *q);
    q->peer = p;
    q->id = ++p->next_id;
    q->cb = cb;
    q->arg = arg;
    json_t *req = json_pack("{s:I, s:s, s:o}", "id", (json_int_t)q->id, "method", method, "params",
                            params ? params : json_object());
    size_t len;
    q->line = proto_encode(req, &len);
    json_decref(req);
    struct pending **pp = &p->pending;
    while (*pp)
        pp = &(*pp)->next;
    *pp = q;
    if (timeout_ms > 0) {
        q->timer = evtimer_new(p->agent->base, on_timeout, q);
        struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
        evtimer_add(q->timer, &tv);
    }
    if (p->broken)
        event_active(p->fail_ev, 0, 0);
    else if (p->connected)
        flush_queue(p);
}

void peer_close(struct peer_conn *p)
{
    if (!p || p->free_requested)
        return;
    p->holds++;
    p->on_closed = NULL;
    if (p->bev) {
        bufferevent_free(p->bev);
        p->bev = NULL;
    }
    fail_all(p, "closed", false);
    p->free_requested = true;
    peer_release(p);
}

void peer_set_closed_hook(struct peer_conn *p, peer_closed_fn on_closed, void *arg)
{
    p->on_closed = on_closed;
    p->arg = arg;
}

/* ---- probes (peer add, peer list) ------------------------------------- */

struct probe {
    struct peer_conn *peer;
    peer_probe_fn cb;
    void *arg;
    int timeout_ms;
    uint64_t t0;
};

/* Any answer, even a refusal, comes after the handshake that proved the
 * peer's certificate: connected is what counts.  acl.whoami needs no right
 * and is not audited, so a probe leaves no trace in the peer's audit log. */
static void probe_reply(void *arg, json_t *result, json_t *error)
{
    struct probe *pr = arg;
    bool ok = peer_verified_name(pr->peer) != NULL;
    char why[600] = "";
    const char *code = json_string_value(json_object_get(error, "code"));
    if (!ok && code && !strcmp(code, ERR_TIMEOUT))
        snprintf(why, sizeof why, "no TLS answer from %s within %d s (is the address right, and the port open?)",
                 pr->peer->addr, pr->timeout_ms / 1000);
    else if (!ok)
        snprintf(why, sizeof why, "%s", pr->peer->broken_reason ? pr->peer->broken_reason
                 : json_string_value(json_object_get(error, "message")) ? json_string_value(json_object_get(error, "message"))
                 : "no answer");
    pr->cb(pr->arg, ok, ok ? NULL : why, (int64_t)(now_ms() - pr->t0));
    peer_close(pr->peer);
    free(pr);
}

void peer_probe(struct agent *a, const char *expect_name, const char *addr, int timeout_ms, peer_probe_fn cb,
                void *arg)
{
    struct probe *pr = xcalloc(1, sizeof *pr);
    pr->cb = cb;
    pr->arg = arg;
    pr->timeout_ms = timeout_ms;
    pr->t0 = now_ms();
    pr->peer = peer_connect(a, expect_name, addr, NULL, NULL);
    peer_call(pr->peer, "acl.whoami", NULL, timeout_ms, probe_reply, pr);
}
