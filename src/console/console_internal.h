/* Shared by console.c (routing, login, static files, metrics) and
 * console_api.c (the API bridge and its Server-Sent Events). */
#ifndef VMOVE_CONSOLE_INTERNAL_H
#define VMOVE_CONSOLE_INTERNAL_H
#include <event2/http.h>
#include <stdbool.h>

#include "console/session.h"
#include "core/acl.h"

struct http_call;

struct console {
    struct agent *agent;
    char *dir;
    struct ssl_ctx_st *ssl;      /* SSL_CTX (OpenSSL's err.h is kept out: ERR_STATE is also proto.h's) */
    struct evhttp *http;
    int port;                    /* bound port, 0: not serving */
    char ip[64];
    struct session *sessions;
    struct http_call *calls;     /* API calls not answered yet, streams among them */
    int n_calls;
    struct event *ping;
};

/* The security headers every answer carries (CSP without inline script). */
void console_headers(struct evhttp_request *req, const char *content_type);
void console_send(struct evhttp_request *req, int code, const char *content_type, const char *body, size_t len);
void console_send_error(struct evhttp_request *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "IP:PORT" of the browser. */
void console_peer(struct evhttp_request *req, char *buf, size_t len);

/* console_api.c */
void console_api_call(struct console *c, struct evhttp_request *req, const struct principal *who,
                      const char *method, bool stream);
void console_api_ping(struct console *c);
void console_api_end_all(struct console *c);

/* console_metrics.c */
void console_metrics(struct console *c, struct evhttp_request *req);
#endif
