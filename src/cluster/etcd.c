#include "cluster/etcd.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct etcd_endpoint {
    char *url, *host;
    int port;
    bool tls;
};

struct etcd {
    struct event_base *base;
    struct etcd_endpoint *eps;
    size_t n, cur;
    SSL_CTX *tls;
    struct etcd_call *calls;         /* in flight, for etcd_free */
    bool closing;                    /* etcd_free: calls fail at once */
    /* Connections of finished calls: freed from the event loop, not from
     * inside their own callbacks.  (libevent's free-on-completion leaks a
     * connection whose request failed.) */
    struct evhttp_connection **dead;
    size_t n_dead;
    struct event *reaper;
};

struct etcd_call {
    struct etcd_call *next, **pprev;
    struct etcd *e;
    size_t ep;
    struct evhttp_connection *conn;
    struct event *later;             /* reports a failure outside etcd_post */
    etcd_done_fn cb;
    void *arg;
    char err[192];
};

static void reap(evutil_socket_t fd, short ev, void *arg);

/* ---- URLs ------------------------------------------------------------------ */

static int parse_url(const char *url, struct etcd_endpoint *ep, char *err, size_t errlen)
{
    const char *rest;
    if (!strncmp(url, "http://", 7)) {
        ep->tls = false;
        rest = url + 7;
    } else if (!strncmp(url, "https://", 8)) {
        ep->tls = true;
        rest = url + 8;
    } else {
        snprintf(err, errlen, "etcd URL %s: must start with http:// or https://", url);
        return -1;
    }
    const char *colon = strrchr(rest, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    size_t hostlen = colon ? (size_t)(colon - rest) : 0;
    if (!colon || hostlen == 0 || hostlen > 253 || !end || (*end && strcmp(end, "/")) || port < 1 ||
        port > 65535) {
        snprintf(err, errlen, "etcd URL %s: expected SCHEME://HOST:PORT", url);
        return -1;
    }
    ep->host = xstrndup(rest, hostlen);
    ep->port = (int)port;
    ep->url = xstrdup(url);
    return 0;
}

int etcd_urls_parse(const char *list, char ***out, size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    if (!list || !*list) {
        snprintf(err, errlen, "no etcd URL given (--etcd URL[,URL...])");
        return -1;
    }
    char *copy = xstrdup(list), *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        struct etcd_endpoint ep = {0};
        if (parse_url(tok, &ep, err, errlen) < 0 || *n >= 16) {
            if (*n >= 16)
                snprintf(err, errlen, "at most 16 etcd URLs");
            free(ep.url);
            free(ep.host);
            etcd_urls_free(*out, *n);
            *out = NULL;
            *n = 0;
            free(copy);
            return -1;
        }
        free(ep.host);
        *out = xrealloc(*out, (*n + 1) * sizeof **out);
        (*out)[(*n)++] = ep.url;
    }
    free(copy);
    if (*n == 0) {
        snprintf(err, errlen, "no etcd URL given (--etcd URL[,URL...])");
        return -1;
    }
    return 0;
}

void etcd_urls_free(char **urls, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(urls[i]);
    free(urls);
}

struct etcd *etcd_new(struct event_base *base, const char *const *urls, size_t n, SSL_CTX *tls,
                      char *err, size_t errlen)
{
    struct etcd *e = xcalloc(1, sizeof *e);
    e->base = base;
    e->reaper = event_new(base, -1, 0, reap, e);
    e->tls = tls;
    e->eps = xcalloc(n ? n : 1, sizeof *e->eps);
    for (size_t i = 0; i < n; i++) {
        if (parse_url(urls[i], &e->eps[e->n], err, errlen) < 0) {
            etcd_free(e);
            return NULL;
        }
        if (e->eps[e->n++].tls && !tls) {
            snprintf(err, errlen, "etcd URL %s is https, but this host has no TLS identity "
                     "(start vmoved with --tls-dir)", urls[i]);
            etcd_free(e);
            return NULL;
        }
    }
    if (e->n == 0) {
        snprintf(err, errlen, "no etcd URL given");
        etcd_free(e);
        return NULL;
    }
    return e;
}

static void reap(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd;
    (void)ev;
    struct etcd *e = arg;
    for (size_t i = 0; i < e->n_dead; i++)
        evhttp_connection_free(e->dead[i]);
    e->n_dead = 0;
}

static void bury(struct etcd *e, struct evhttp_connection *conn)
{
    if (!conn)
        return;
    e->dead = xrealloc(e->dead, (e->n_dead + 1) * sizeof *e->dead);
    e->dead[e->n_dead++] = conn;
    event_active(e->reaper, EV_TIMEOUT, 0);
}

static void call_free(struct etcd_call *c)
{
    *c->pprev = c->next;
    if (c->next)
        c->next->pprev = c->pprev;
    if (c->later)
        event_free(c->later);
    free(c);
}

void etcd_free(struct etcd *e)
{
    if (!e)
        return;
    /* Every caller gets its answer, so that it frees what it holds. */
    e->closing = true;
    while (e->calls) {
        struct etcd_call *c = e->calls;
        if (c->conn)
            evhttp_connection_free(c->conn);     /* drops its request, no callback */
        etcd_done_fn cb = c->cb;
        void *arg = c->arg;
        call_free(c);
        cb(arg, NULL, "vmoved is stopping");
    }
    reap(-1, 0, e);
    free(e->dead);
    event_free(e->reaper);
    for (size_t i = 0; i < e->n; i++) {
        free(e->eps[i].url);
        free(e->eps[i].host);
    }
    free(e->eps);
    free(e);
}

const char *etcd_endpoint(const struct etcd *e) { return e->eps[e->cur].url; }
bool etcd_is_tls(const struct etcd *e) { return e->eps[e->cur].tls; }

/* ---- calls ------------------------------------------------------------------ */

/* The etcd server's certificate must be the cluster CA's and name an etcd
 * member (CN etcd*): a host certificate of the same CA is no etcd. */
static int verify_etcd_cert(int ok, X509_STORE_CTX *ctx)
{
    if (!ok || X509_STORE_CTX_get_error_depth(ctx) != 0)
        return ok;
    char cn[128] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(X509_STORE_CTX_get_current_cert(ctx)),
                              NID_commonName, cn, sizeof cn);
    if (strncmp(cn, "etcd", 4) != 0) {
        X509_STORE_CTX_set_error(ctx, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    return 1;
}

static void finish(struct etcd_call *c, json_t *reply, const char *err)
{
    if (!reply && c->e->n > 1 && c->e->cur == c->ep)
        c->e->cur = (c->ep + 1) % c->e->n;   /* next call tries another member */
    etcd_done_fn cb = c->cb;
    void *arg = c->arg;
    bury(c->e, c->conn);
    c->conn = NULL;
    call_free(c);
    cb(arg, reply, err);
}

/* etcd's error bodies: {"error":"...","code":N} for unary calls, or
 * {"error":{"message":"...","http_code":503}} inside a stream. */
static json_t *error_of(json_t *j, int code, char *buf, size_t len)
{
    json_t *errv = json_object_get(j, "error");
    if (!errv && code == 200)
        return j;
    const char *msg = json_is_string(errv) ? json_string_value(errv)
                    : json_string_value(json_object_get(errv, "message"));
    snprintf(buf, len, "etcd answered %d: %s", code, msg ? msg : "no reason given");
    return NULL;
}

static void on_response(struct evhttp_request *req, void *arg)
{
    struct etcd_call *c = arg;
    char buf[256];
    int code = req ? evhttp_request_get_response_code(req) : 0;
    if (code == 0) {
        snprintf(buf, sizeof buf, "etcd %s: %s", c->e->eps[c->ep].url,
                 c->err[0] ? c->err : "no answer (connection failed)");
        finish(c, NULL, buf);
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    json_error_t jerr;
    json_t *j = json_loadb((const char *)evbuffer_pullup(in, (ssize_t)len), len,
                           JSON_DISABLE_EOF_CHECK, &jerr);
    if (!j) {
        snprintf(buf, sizeof buf, "etcd %s answered %d with no JSON", c->e->eps[c->ep].url, code);
        finish(c, NULL, buf);
        return;
    }
    /* A stream (keepalive) wraps its one message in {"result": ...}. */
    json_t *result = json_object_get(j, "result");
    json_t *ok = error_of(result ? result : j, code, buf, sizeof buf);
    if (ok && result && json_object_get(j, "error"))
        ok = error_of(j, code, buf, sizeof buf);
    finish(c, ok, ok ? NULL : buf);
    json_decref(j);
}

static void on_error(enum evhttp_request_error e, void *arg)
{
    struct etcd_call *c = arg;
    const char *what = e == EVREQ_HTTP_TIMEOUT ? "timed out"
                     : e == EVREQ_HTTP_EOF ? "connection closed before an answer"
                     : e == EVREQ_HTTP_INVALID_HEADER ? "bad HTTP answer"
                     : "connection failed";
    snprintf(c->err, sizeof c->err, "%s", what);
}

static void fail_later_cb(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd;
    (void)ev;
    struct etcd_call *c = arg;
    char buf[256];
    snprintf(buf, sizeof buf, "etcd %s: %s", c->e->eps[c->ep].url, c->err);
    finish(c, NULL, buf);
}

static void fail_later(struct etcd_call *c, const char *why)
{
    snprintf(c->err, sizeof c->err, "%s", why);
    if (c->conn) {
        evhttp_connection_free(c->conn);
        c->conn = NULL;
    }
    c->later = evtimer_new(c->e->base, fail_later_cb, c);
    struct timeval now = {0, 0};
    evtimer_add(c->later, &now);
}

static struct evhttp_connection *connect_to(struct etcd *e, const struct etcd_endpoint *ep)
{
    if (!ep->tls)
        return evhttp_connection_base_new(e->base, NULL, ep->host, (unsigned short)ep->port);
    SSL *ssl = SSL_new(e->tls);
    if (!ssl)
        return NULL;
    SSL_set_verify(ssl, SSL_VERIFY_PEER, verify_etcd_cert);
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        e->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    /* Go's TLS stack may close without close_notify once it has answered. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return evhttp_connection_base_bufferevent_new(e->base, NULL, bev, ep->host,
                                                  (unsigned short)ep->port);
}

void etcd_post(struct etcd *e, const char *path, json_t *body, int timeout_ms, etcd_done_fn cb,
               void *arg)
{
    if (e->closing) {        /* a callback of etcd_free asking again */
        json_decref(body);
        cb(arg, NULL, "vmoved is stopping");
        return;
    }
    struct etcd_call *c = xcalloc(1, sizeof *c);
    c->e = e;
    c->ep = e->cur;
    c->cb = cb;
    c->arg = arg;
    c->next = e->calls;
    if (c->next)
        c->next->pprev = &c->next;
    c->pprev = &e->calls;
    e->calls = c;
    const struct etcd_endpoint *ep = &e->eps[c->ep];
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    /* One connection per call: a TLS bufferevent cannot be reconnected by
     * evhttp, and a hung call must not hold up the next one. */
    c->conn = connect_to(e, ep);
    struct evhttp_request *req = c->conn ? evhttp_request_new(on_response, c) : NULL;
    if (!req || !text) {
        free(text);
        fail_later(c, "cannot set up the HTTP request");
        return;
    }
    evhttp_request_set_error_cb(req, on_error);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evhttp_connection_set_timeout_tv(c->conn, &tv);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    char hostport[300], deadline[32];
    snprintf(hostport, sizeof hostport, "%s:%d", ep->host, ep->port);
    /* etcd's own deadline a little shorter than ours, so its 504 arrives. */
    snprintf(deadline, sizeof deadline, "%dm", timeout_ms > 100 ? timeout_ms - 50 : timeout_ms);
    evhttp_add_header(h, "Host", hostport);
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Connection", "close");
    evhttp_add_header(h, "Grpc-Timeout", deadline);
    evhttp_add_header(h, "Grpc-Metadata-Hasleader", "true");
    evbuffer_add(evhttp_request_get_output_buffer(req), text, strlen(text));
    free(text);
    if (evhttp_make_request(c->conn, req, EVHTTP_REQ_POST, path) < 0)
        fail_later(c, "cannot send the HTTP request");   /* req was freed by libevent */
}

/* ---- building requests -------------------------------------------------------- */

static char *b64_bytes(const unsigned char *p, size_t n)
{
    char *out = xmalloc(4 * ((n + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    return out;
}

char *etcd_b64(const char *s) { return b64_bytes((const unsigned char *)s, strlen(s)); }

char *etcd_unb64(const char *s)
{
    size_t n = strlen(s);
    if (n % 4)
        return NULL;
    unsigned char *out = xmalloc(n / 4 * 3 + 1);
    int len = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
    if (len < 0) {
        free(out);
        return NULL;
    }
    /* EVP_DecodeBlock counts the padding as data. */
    if (n >= 1 && s[n - 1] == '=')
        len--;
    if (n >= 2 && s[n - 2] == '=')
        len--;
    out[len] = 0;
    if (memchr(out, 0, (size_t)len)) {   /* vmove's keys and values are text */
        free(out);
        return NULL;
    }
    return (char *)out;
}

char *etcd_prefix_end_b64(const char *prefix)
{
    size_t n = strlen(prefix);
    unsigned char *end = (unsigned char *)xstrdup(prefix);
    if (n)
        end[n - 1]++;
    char *b = b64_bytes(end, n);
    free(end);
    return b;
}

static json_t *key_obj(const char *key, bool prefix)
{
    char *k = etcd_b64(key);
    json_t *o = json_pack("{s:s}", "key", k);
    free(k);
    if (prefix) {
        char *end = etcd_prefix_end_b64(key);
        json_object_set_new(o, "range_end", json_string(end));
        free(end);
    }
    return o;
}

json_t *etcd_range_body(const char *key, bool prefix) { return key_obj(key, prefix); }

json_t *etcd_op_put(const char *key, const char *value, int64_t lease)
{
    json_t *o = key_obj(key, false);
    char *v = etcd_b64(value);
    json_object_set_new(o, "value", json_string(v));
    free(v);
    if (lease)
        json_object_set_new(o, "lease", json_sprintf("%lld", (long long)lease));
    return json_pack("{s:o}", "request_put", o);
}

json_t *etcd_op_delete(const char *key, bool prefix)
{
    return json_pack("{s:o}", "request_delete_range", key_obj(key, prefix));
}

json_t *etcd_op_range(const char *key, bool prefix)
{
    return json_pack("{s:o}", "request_range", key_obj(key, prefix));
}

json_t *etcd_cmp(const char *key, const char *target, const char *result, int64_t value)
{
    json_t *o = key_obj(key, false);
    json_object_set_new(o, "target", json_string(target));
    json_object_set_new(o, "result", json_string(result));
    const char *field = !strcmp(target, "CREATE") ? "create_revision"
                      : !strcmp(target, "MOD") ? "mod_revision"
                      : !strcmp(target, "LEASE") ? "lease" : "version";
    json_object_set_new(o, field, json_sprintf("%lld", (long long)value));
    return o;
}

json_t *etcd_txn_body(json_t *compares, json_t *success, json_t *failure)
{
    return json_pack("{s:o, s:o, s:o}", "compare", compares, "success",
                     success ? success : json_array(), "failure", failure ? failure : json_array());
}

/* ---- reading answers ------------------------------------------------------------ */

int64_t etcd_int(json_t *v)
{
    if (json_is_integer(v))
        return json_integer_value(v);
    if (json_is_string(v))
        return strtoll(json_string_value(v), NULL, 10);
    return 0;
}

int64_t etcd_revision(json_t *reply)
{
    return etcd_int(json_object_get(json_object_get(reply, "header"), "revision"));
}

bool etcd_txn_succeeded(json_t *reply) { return json_is_true(json_object_get(reply, "succeeded")); }

size_t etcd_kvs(json_t *reply, struct etcd_kv **out)
{
    json_t *kvs = json_object_get(reply, "kvs");
    size_t n = json_is_array(kvs) ? json_array_size(kvs) : 0, got = 0;
    *out = xcalloc(n ? n : 1, sizeof **out);
    for (size_t i = 0; i < n; i++) {
        json_t *kv = json_array_get(kvs, i);
        const char *k = json_string_value(json_object_get(kv, "key"));
        const char *v = json_string_value(json_object_get(kv, "value"));
        struct etcd_kv *o = &(*out)[got];
        o->key = k ? etcd_unb64(k) : NULL;
        o->value = v ? etcd_unb64(v) : xstrdup("");
        if (!o->key || !o->value) {        /* not ours: skip it */
            free(o->key);
            free(o->value);
            continue;
        }
        o->create_rev = etcd_int(json_object_get(kv, "create_revision"));
        o->mod_rev = etcd_int(json_object_get(kv, "mod_revision"));
        o->version = etcd_int(json_object_get(kv, "version"));
        o->lease = etcd_int(json_object_get(kv, "lease"));
        got++;
    }
    return got;
}

void etcd_kvs_free(struct etcd_kv *kvs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(kvs[i].key);
        free(kvs[i].value);
    }
    free(kvs);
}
