#include "console/console.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "console/console_internal.h"
#include "core/agent.h"

/* No inline script or style, nothing from elsewhere, no framing, no forms
 * posting anywhere: the page's own files and its own API only. */
#define CSP "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " \
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

void console_headers(struct evhttp_request *req, const char *content_type)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Security-Policy", CSP);
    evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(h, "X-Frame-Options", "DENY");
    evhttp_add_header(h, "Referrer-Policy", "no-referrer");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "Strict-Transport-Security", "max-age=31536000");
    if (content_type)
        evhttp_add_header(h, "Content-Type", content_type);
}

void console_send(struct evhttp_request *req, int code, const char *content_type, const char *body, size_t len)
{
    console_headers(req, content_type);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, body, len);
    evhttp_send_reply(req, code, code < 300 ? "OK" : code < 400 ? "See Other" : "Refused", b);
    evbuffer_free(b);
}

void console_send_error(struct evhttp_request *req, int code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *j = json_pack("{s:{s:s, s:s}}", "error", "code", code == 401 ? "unauthenticated" : "denied", "message",
                          msg);
    char *text = json_dumps(j, JSON_COMPACT);
    console_send(req, code, "application/json", text, strlen(text));
    free(text);
    json_decref(j);
}

void console_peer(struct evhttp_request *req, char *buf, size_t len)
{
    char *addr = NULL;
    ev_uint16_t port = 0;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon)
        evhttp_connection_get_peer(evcon, &addr, &port);
    snprintf(buf, len, "console %s:%u", addr ? addr : "?", (unsigned)port);
}

/* ---- static files ------------------------------------------------------ */

static const char *content_type_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot)
        return "application/octet-stream";
    if (!strcmp(dot, ".html"))
        return "text/html; charset=utf-8";
    if (!strcmp(dot, ".js"))
        return "text/javascript; charset=utf-8";
    if (!strcmp(dot, ".css"))
        return "text/css; charset=utf-8";
    if (!strcmp(dot, ".svg"))
        return "image/svg+xml";
    return "application/octet-stream";
}

/* Only plain names (letters, digits, '-', '_', one level): no path can
 * leave the console's directory. */
static bool plain_name(const char *n)
{
    if (!*n || *n == '.' || strlen(n) > 64)
        return false;
    for (const char *p = n; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '_' || *p == '.'))
            return false;
    return !strstr(n, "..");
}

static void send_file(struct console *c, struct evhttp_request *req, const char *name)
{
    if (!plain_name(name)) {
        console_send_error(req, 404, "no such file");
        return;
    }
    char *path = xasprintf("%s/%s", c->dir, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        log_warn("console: %s: %s", path, fd < 0 ? strerror(errno) : "not a file");
        console_send_error(req, 404, "no such file (is vmoved's --console-dir %s installed?)", c->dir);
        free(path);
        return;
    }
    free(path);
    console_headers(req, content_type_of(name));
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_file(b, fd, 0, st.st_size);   /* takes fd */
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

/* ---- login and session ------------------------------------------------- */

static const char *query_param(struct evhttp_request *req, const char *key, struct evkeyvalq *kv)
{
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    if (!q || evhttp_parse_query_str(q, kv) < 0)
        return NULL;
    return evhttp_find_header(kv, key);
}

static void do_login(struct console *c, struct evhttp_request *req)
{
    struct evkeyvalq kv = {0};
    TAILQ_INIT(&kv);
    const char *t = query_param(req, "t", &kv);
    char why[512], peer[96];
    console_peer(req, peer, sizeof peer);
    struct session *s = t ? session_login(c->agent, &c->sessions, t, peer, why, sizeof why) : NULL;
    if (!t)
        snprintf(why, sizeof why, "no login token in the link");
    evhttp_clear_headers(&kv);
    if (!s) {
        log_warn("console: login from %s refused: %s", peer, why);
        console_send_error(req, 401, "login refused: %s (run `vmove ui login` for a new link)", why);
        return;
    }
    log_info("console: user:%s logged in from %s", s->who.name, peer);
    char cookie[256];
    snprintf(cookie, sizeof cookie, SESSION_COOKIE "=%s; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=%d",
             s->id, SESSION_LIFETIME_S);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Set-Cookie", cookie);
    evhttp_add_header(h, "Location", "/");
    console_send(req, 303, "text/plain; charset=utf-8", "logged in\n", 10);
}

static void send_session(struct console *c, struct evhttp_request *req, const struct session *s)
{
    json_t *j = json_pack("{s:s, s:s, s:s, s:I}", "user", s->who.name, "host", c->agent->name, "csrf", s->csrf,
                          "expires_ms", (json_int_t)s->expires_ms);
    char *text = json_dumps(j, JSON_COMPACT);
    console_send(req, 200, "application/json", text, strlen(text));
    free(text);
    json_decref(j);
}

static void do_logout(struct console *c, struct evhttp_request *req, struct session *s)
{
    log_info("console: user:%s logged out", s->who.name);
    session_end(&c->sessions, s);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Set-Cookie",
                      SESSION_COOKIE "=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
    console_send(req, 200, "application/json", "{}", 2);
}

/* ---- routing ----------------------------------------------------------- */

static bool method_name_ok(const char *m)
{
    if (!*m || strlen(m) > 64)
        return false;
    for (const char *p = m; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || *p == '.' || *p == '-'))
            return false;
    return true;
}

static void route(struct evhttp_request *req, void *arg)
{
    struct console *c = arg;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    bool get = cmd == EVHTTP_REQ_GET, post = cmd == EVHTTP_REQ_POST;
    if (!path || (!get && !post)) {
        console_send_error(req, 405, "only GET and POST");
        return;
    }
    if (get && !strcmp(path, "/login")) {
        do_login(c, req);
        return;
    }
    if (get && !strcmp(path, "/metrics")) {
        console_metrics(c, req);   /* its own check: a session or a scraper's certificate */
        return;
    }
    struct session *s = session_from_cookie(&c->sessions, evhttp_find_header(evhttp_request_get_input_headers(req),
                                                                             "Cookie"));
    if (!s) {
        if (get && (!strcmp(path, "/") || !strcmp(path, "/index.html"))) {
            static const char page[] = "<!doctype html><title>vmove: log in</title><p>Not logged in. Run "
                                       "<code>vmove ui login</code> and open the link it prints.</p>\n";
            console_send(req, 401, "text/html; charset=utf-8", page, sizeof page - 1);
        } else
            console_send_error(req, 401, "not logged in: run `vmove ui login` and open the link it prints");
        return;
    }
    /* Every POST changes something, or may: it must carry the session's CSRF token. */
    if (post && !session_csrf_ok(s, evhttp_find_header(evhttp_request_get_input_headers(req), "X-CSRF-Token"))) {
        char peer[96];
        console_peer(req, peer, sizeof peer);
        log_warn("console: %s for user:%s without the CSRF token refused (%s)", path, s->who.name, peer);
        console_send_error(req, 403, "refused: the request lacks the session's CSRF token (X-CSRF-Token)");
        return;
    }
    if (get && (!strcmp(path, "/") || !strcmp(path, "/index.html")))
        send_file(c, req, "index.html");
    else if (get && !strncmp(path, "/static/", 8))
        send_file(c, req, path + 8);
    else if (get && !strcmp(path, "/api/session"))
        send_session(c, req, s);
    else if (post && !strcmp(path, "/logout"))
        do_logout(c, req, s);
    else if (post && !strncmp(path, "/api/", 5) && method_name_ok(path + 5))
        console_api_call(c, req, &s->who, path + 5, false);
    else if (get && !strncmp(path, "/api/stream/", 12) && method_name_ok(path + 12))
        console_api_call(c, req, &s->who, path + 12, true);
    else
        console_send_error(req, 404, "no such page: %s", path);
}

/* ---- serving ----------------------------------------------------------- */

static struct bufferevent *new_tls_bev(struct event_base *base, void *arg)
{
    struct console *c = arg;
    SSL *ssl = SSL_new(c->ssl);
    return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
}

/* The host's certificate; a client certificate is asked for but optional
 * (a scraper's, for /metrics).  TLS 1.2 or later: browsers and Prometheus. */
static SSL_CTX *console_ssl(struct agent *a)
{
    char *ca = xasprintf("%s/ca.crt", a->tls_dir), *crt = xasprintf("%s/host.crt", a->tls_dir),
         *key = xasprintf("%s/host.key", a->tls_dir);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    bool ok = ctx && SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 &&
              SSL_CTX_use_certificate_chain_file(ctx, crt) == 1 &&
              SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1 && SSL_CTX_check_private_key(ctx) == 1 &&
              SSL_CTX_load_verify_locations(ctx, ca, NULL) == 1;
    if (ok) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
    } else {
        log_error("console: cannot load the host's certificate from %s", a->tls_dir);
        SSL_CTX_free(ctx);
        ctx = NULL;
    }
    ERR_clear_error();
    free(ca);
    free(crt);
    free(key);
    return ctx;
}

static void on_ping(evutil_socket_t fd, short what, void *arg)
{
    struct console *c = arg;
    session_expire(&c->sessions);
    console_api_ping(c);
}

static void stop_serving(struct console *c)
{
    if (!c->http)
        return;
    console_api_end_all(c);
    evhttp_free(c->http);
    c->http = NULL;
    log_info("console: no longer served on %s:%d", c->ip, c->port);
    c->port = 0;
}

static void start_serving(struct console *c, const char *ip, int port)
{
    if (!c->ssl && !(c->ssl = console_ssl(c->agent)))
        return;
    c->http = evhttp_new(c->agent->base);
    evhttp_set_bevcb(c->http, new_tls_bev, c);
    evhttp_set_gencb(c->http, route, c);
    evhttp_set_max_body_size(c->http, CONSOLE_MAX_BODY);
    evhttp_set_max_headers_size(c->http, CONSOLE_MAX_HEADERS);
    evhttp_set_allowed_methods(c->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_timeout(c->http, 60);
    if (!evhttp_bind_socket_with_handle(c->http, ip, (ev_uint16_t)port)) {
        log_error("console: cannot listen on %s:%d: %s (change it with `vmove host set --console-port N`)", ip, port,
                  strerror(errno));
        evhttp_free(c->http);
        c->http = NULL;
        return;
    }
    c->port = port;
    snprintf(c->ip, sizeof c->ip, "%s", ip);
    log_info("console: serving https://%s:%d/", ip, port);
}

void console_sync(struct console *c)
{
    if (!c)
        return;
    struct agent *a = c->agent;
    char ip[64] = "";
    if (a->listen_addr) {
        snprintf(ip, sizeof ip, "%s", a->listen_addr);
        char *colon = strrchr(ip, ':');
        if (colon)
            *colon = 0;
    }
    bool want = a->settings.console && a->tls_server && ip[0];
    if (c->http && (!want || c->port != a->settings.console_port))
        stop_serving(c);
    /* A port that failed to bind is tried again only when the setting changes. */
    static int failed_port;
    if (want && !c->http && failed_port != a->settings.console_port) {
        start_serving(c, ip, a->settings.console_port);
        failed_port = c->http ? 0 : a->settings.console_port;
    }
    if (!want)
        failed_port = 0;
}

struct console *console_new(struct agent *a, const char *dir)
{
    struct console *c = xcalloc(1, sizeof *c);
    c->agent = a;
    c->dir = xstrdup(dir);
    c->ping = event_new(a->base, -1, EV_PERSIST, on_ping, c);
    struct timeval tv = {CONSOLE_PING_S, 0};
    event_add(c->ping, &tv);
    return c;
}

void console_free(struct console *c)
{
    if (!c)
        return;
    stop_serving(c);
    event_free(c->ping);
    session_free_all(&c->sessions);
    if (c->ssl)
        SSL_CTX_free(c->ssl);
    free(c->dir);
    free(c);
}
