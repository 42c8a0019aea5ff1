/* The console's API bridge: one HTTP request is one API call, answered
 * through an api_sink (src/api/api.h) as the CLI's connection is.  A plain
 * call answers once with JSON; a stream (GET /api/stream/METHOD) turns the
 * call's events into Server-Sent Events and its answer into a last "end"
 * (or "failure") event. */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <sys/queue.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "console/console.h"
#include "console/console_internal.h"
#include "core/agent.h"

struct http_call {
    struct api_sink sink;          /* first: the API sees the call as this */
    struct http_call *prev, *next; /* in console->calls until answered */
    struct console *console;
    struct evhttp_request *req;    /* ours until answered (libevent detaches it if the browser goes) */
    int refs;
    bool stream, answered, browser_gone;
    void (*close_hook)(void *arg);
    void *close_arg;
    char peer[96];
};

static const struct api_sink_ops http_sink_ops;

static struct http_call *call_of(const struct api_sink *s) { return (struct http_call *)s; }

static void call_unref(struct http_call *h)
{
    if (--h->refs == 0)
        free(h);
}

static void unlink_call(struct http_call *h)
{
    struct console *c = h->console;
    if (h->prev)
        h->prev->next = h->next;
    else
        c->calls = h->next;
    if (h->next)
        h->next->prev = h->prev;
    c->n_calls--;
}

static void run_close_hook(struct http_call *h)
{
    if (h->close_hook) {
        void (*hook)(void *) = h->close_hook;
        h->close_hook = NULL;
        hook(h->close_arg);
    }
}

/* The browser hung up: libevent detached the request, which stays ours
 * until answered (evhttp_send_reply* then frees it). */
static void on_browser_gone(struct evhttp_connection *evcon, void *arg)
{
    struct http_call *h = arg;
    h->browser_gone = true;
    h->refs++;
    run_close_hook(h);
    call_unref(h);
}

static int status_of(const char *code)
{
    if (!code)
        return 500;
    if (!strcmp(code, ERR_DENIED))
        return 403;
    if (!strcmp(code, ERR_NOT_FOUND) || !strcmp(code, ERR_UNKNOWN_CMD))
        return 404;
    if (!strcmp(code, ERR_INVALID))
        return 400;
    if (!strcmp(code, ERR_UNAVAILABLE))
        return 503;
    return 409;
}

static void sse_write(struct evhttp_request *req, const char *event, json_t *data)
{
    char *text = json_dumps(data, JSON_COMPACT);
    struct evbuffer *b = evbuffer_new();
    evbuffer_add_printf(b, "event: %s\ndata: %s\n\n", event, text ? text : "null");
    evhttp_send_reply_chunk(req, b);
    evbuffer_free(b);
    free(text);
}

/* The answer: the request's last word, after which it is libevent's again. */
static void call_answer(struct http_call *h, json_t *msg)
{
    json_t *err = json_object_get(msg, "error");
    h->answered = true;
    unlink_call(h);
    struct evhttp_connection *evcon = h->browser_gone ? NULL : evhttp_request_get_connection(h->req);
    if (evcon)
        evhttp_connection_set_closecb(evcon, NULL, NULL);
    if (h->stream) {
        if (!h->browser_gone)
            sse_write(h->req, err ? "failure" : "end", err ? err : json_object_get(msg, "result"));
        evhttp_send_reply_end(h->req);
    } else {
        json_t *body = json_pack("{s:O}", err ? "error" : "result", err ? err : json_object_get(msg, "result"));
        char *text = json_dumps(body, JSON_COMPACT);
        if (h->browser_gone)
            evhttp_send_reply(h->req, 500, "Gone", NULL);   /* frees the detached request */
        else
            console_send(h->req, err ? status_of(json_string_value(json_object_get(err, "code"))) : 200,
                         "application/json", text, strlen(text));
        free(text);
        json_decref(body);
    }
    h->req = NULL;
    run_close_hook(h);   /* the API's view: this connection is closed now */
    call_unref(h);       /* the bridge's own reference */
}

static void http_sink_send(struct api_sink *s, json_t *msg)
{
    struct http_call *h = call_of(s);
    if (!h->answered) {
        if (json_object_get(msg, "event")) {
            if (h->stream && !h->browser_gone)
                sse_write(h->req, json_string_value(json_object_get(msg, "event")), json_object_get(msg, "data"));
        } else
            call_answer(h, msg);
    }
    json_decref(msg);
}

static bool http_sink_is_open(const struct api_sink *s) { return !call_of(s)->answered && !call_of(s)->browser_gone; }
static const char *http_sink_peer(const struct api_sink *s) { return call_of(s)->peer; }
static void http_sink_ref(struct api_sink *s) { call_of(s)->refs++; }
static void http_sink_unref(struct api_sink *s) { call_unref(call_of(s)); }
static void http_sink_on_close(struct api_sink *s, void (*hook)(void *arg), void *arg)
{
    call_of(s)->close_hook = hook;
    call_of(s)->close_arg = arg;
}

static const struct api_sink_ops http_sink_ops = {
    .send = http_sink_send, .is_open = http_sink_is_open, .peer = http_sink_peer,
    .ref = http_sink_ref,   .unref = http_sink_unref,     .on_close = http_sink_on_close,
};

/* A POST's body: a JSON object (or nothing: no parameters). */
static json_t *body_params(struct evhttp_request *req, char *why, size_t len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    if (n == 0)
        return json_object();
    const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    if (!ct || strncmp(ct, "application/json", 16)) {
        snprintf(why, len, "the body must be application/json");
        return NULL;
    }
    json_error_t je;
    json_t *p = json_loadb((const char *)evbuffer_pullup(in, (ev_ssize_t)n), n, JSON_REJECT_DUPLICATES, &je);
    if (!p || !json_is_object(p)) {
        snprintf(why, len, "the body must be a JSON object of parameters%s%s", p ? "" : ": ", p ? "" : je.text);
        json_decref(p);
        return NULL;
    }
    return p;
}

/* A stream's parameters come from the query: only "id" (a job). */
static json_t *query_params(struct evhttp_request *req)
{
    json_t *p = json_object();
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq kv;
    TAILQ_INIT(&kv);
    if (q && evhttp_parse_query_str(q, &kv) == 0) {
        const char *id = evhttp_find_header(&kv, "id");
        char *end;
        long long v = id ? strtoll(id, &end, 10) : 0;
        if (id && *id && !*end)
            json_object_set_new(p, "id", json_integer(v));
    }
    evhttp_clear_headers(&kv);
    return p;
}

/* Streams are GETs and so must change nothing: only these read-only calls. */
static bool streamable(const char *method) { return !strcmp(method, "jobs.watch") || !strcmp(method, "jobs.follow"); }

void console_api_call(struct console *c, struct evhttp_request *req, const struct principal *who,
                      const char *method, bool stream)
{
    char why[300];
    if (stream && !streamable(method)) {
        console_send_error(req, 404, "%s cannot be streamed (jobs.watch and jobs.follow can)", method);
        return;
    }
    if (c->n_calls >= CONSOLE_MAX_CALLS) {
        console_send_error(req, 503, "the console has %d calls open, the most it takes", CONSOLE_MAX_CALLS);
        return;
    }
    json_t *params = stream ? query_params(req) : body_params(req, why, sizeof why);
    if (!params) {
        console_send_error(req, 400, "%s: %s", method, why);
        return;
    }
    struct http_call *h = xcalloc(1, sizeof *h);
    h->sink.ops = &http_sink_ops;
    h->console = c;
    h->req = req;
    h->refs = 1;
    h->stream = stream;
    console_peer(req, h->peer, sizeof h->peer);
    h->next = c->calls;
    if (c->calls)
        c->calls->prev = h;
    c->calls = h;
    c->n_calls++;
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_browser_gone, h);
    if (stream) {
        console_headers(req, "text/event-stream");
        evhttp_send_reply_start(req, 200, "OK");
    }
    struct api_req *r = api_req_new(c->agent, &h->sink, json_null(), method, params, who);
    json_decref(params);
    api_dispatch(r);
}

/* A comment line on every open stream: keeps proxies and evhttp's own
 * timeout from closing it, and lets a vanished browser be noticed. */
void console_api_ping(struct console *c)
{
    for (struct http_call *h = c->calls; h; h = h->next)
        if (h->stream && !h->browser_gone) {
            struct evbuffer *b = evbuffer_new();
            evbuffer_add_printf(b, ": ping\n\n");
            evhttp_send_reply_chunk(h->req, b);
            evbuffer_free(b);
        }
}

/* Before the server stops: every call still open is told the console went
 * away, and its request is answered (so that evhttp_free frees nothing of ours). */
void console_api_end_all(struct console *c)
{
    while (c->calls) {
        struct http_call *h = c->calls;
        h->refs++;
        run_close_hook(h);   /* a follower lets go (and may answer, which unlinks it) */
        if (!h->answered) {
            json_t *msg = json_pack("{s:o}", "error", proto_error(ERR_UNAVAILABLE, NULL, "the console stopped"));
            call_answer(h, msg);
            json_decref(msg);
        }
        call_unref(h);
    }
}
