#include "migrate/link_probe.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/util.h"

#define CHUNK (1u << 20)
#define WARMUP_MS 100
/* A fast link is known to be fast long before the window ends: stop once
 * these many bytes went through (warm-up, measurement), so a 10 Gbit/s link
 * costs ~40 MiB and ~60 ms instead of 400 ms at full rate, time and CPU the
 * migration itself then has.  At 1.5 Gbit/s the measurement still spans
 * about 180 ms. */
#define WARMUP_BYTES (8ull << 20)
#define MEASURE_BYTES (32ull << 20)

/* ---- destination: the sink --------------------------------------------- */

struct sink_conn {
    struct sink_conn *next;
    struct bufferevent *bev;
};

struct probe_sink {
    struct probe_sink *next;      /* every live sink, to stop them at shutdown */
    struct evconnlistener *listener;
    struct sink_conn *conns;
    struct event *expire;
};

static void sink_read(struct bufferevent *bev, void *arg)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    evbuffer_drain(in, evbuffer_get_length(in));
}

static void sink_event(struct bufferevent *bev, short what, void *arg)
{
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        bufferevent_disable(bev, EV_READ);   /* freed with the sink */
}

static void sink_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
    struct probe_sink *s = arg;
    struct sink_conn *c = xcalloc(1, sizeof *c);
    c->bev = bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(c->bev, sink_read, NULL, sink_event, s);
    /* libevent reads 16 KiB per callback by default: far too little to
     * keep up with a fast link. */
    bufferevent_set_max_single_read(c->bev, 4 * CHUNK);
    bufferevent_enable(c->bev, EV_READ);
    c->next = s->conns;
    s->conns = c;
}

static struct probe_sink *live_sinks;   /* one vmoved per process */

static void sink_expire(evutil_socket_t fd, short what, void *arg) { probe_sink_stop(arg); }

void probe_sinks_stop_all(void)
{
    while (live_sinks)
        probe_sink_stop(live_sinks);
}

struct probe_sink *probe_sink_start(struct event_base *base, const char *ip, int lifetime_ms, int *port)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    if (inet_pton(AF_INET, ip, &sin.sin_addr) != 1)
        return NULL;
    struct probe_sink *s = xcalloc(1, sizeof *s);
    s->listener = evconnlistener_new_bind(base, sink_accept, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 4,
                                          (struct sockaddr *)&sin, sizeof sin);
    if (!s->listener) {
        free(s);
        return NULL;
    }
    socklen_t len = sizeof sin;
    getsockname(evconnlistener_get_fd(s->listener), (struct sockaddr *)&sin, &len);
    *port = ntohs(sin.sin_port);
    s->next = live_sinks;
    live_sinks = s;
    s->expire = evtimer_new(base, sink_expire, s);
    struct timeval tv = {lifetime_ms / 1000, (lifetime_ms % 1000) * 1000};
    evtimer_add(s->expire, &tv);
    return s;
}

void probe_sink_stop(struct probe_sink *s)
{
    if (!s)
        return;
    for (struct probe_sink **pp = &live_sinks; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    while (s->conns) {
        struct sink_conn *c = s->conns;
        s->conns = c->next;
        bufferevent_free(c->bev);
        free(c);
    }
    evconnlistener_free(s->listener);
    event_free(s->expire);
    free(s);
}

/* ---- source: the measurement ------------------------------------------- */

struct link_probe {
    struct bufferevent *bev;
    struct event *timer;
    link_probe_fn done;
    void *arg;
    uint64_t queued, mark_bytes, mark_ms;
    int measure_ms;
    bool warm;
};

static uint64_t sent(struct link_probe *p)
{
    return p->queued - evbuffer_get_length(bufferevent_get_output(p->bev));
}

static void sink_finish(struct link_probe *p, double rate)
{
    link_probe_fn done = p->done;
    void *arg = p->arg;
    link_probe_cancel(p);
    done(arg, rate);
}

static void fill(struct bufferevent *bev, void *arg)
{
    struct link_probe *p = arg;
    static const char zeros[CHUNK];
    struct evbuffer *out = bufferevent_get_output(bev);
    if (p->mark_ms || p->warm) {
        uint64_t enough = p->warm ? p->mark_bytes + MEASURE_BYTES : WARMUP_BYTES;
        if (sent(p) >= enough) {
            /* Ends the current stage now (the timer callback, not here:
             * finishing frees this bufferevent). */
            struct timeval now = {0, 0};
            evtimer_add(p->timer, &now);
        }
    }
    /* By reference: the probe measures the link, not memcpy. */
    while (evbuffer_get_length(out) < 8 * CHUNK) {
        evbuffer_add_reference(out, zeros, sizeof zeros, NULL, NULL);
        p->queued += sizeof zeros;
    }
}

static void probe_on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct link_probe *p = arg;
    if (!p->warm) {
        /* Socket buffers are full now: measure from here. */
        p->warm = true;
        p->mark_bytes = sent(p);
        p->mark_ms = now_ms();
        struct timeval tv = {p->measure_ms / 1000, (p->measure_ms % 1000) * 1000};
        evtimer_add(p->timer, &tv);
        return;
    }
    double secs = (double)(now_ms() - p->mark_ms) / 1000.0;
    sink_finish(p, secs > 0 ? (double)(sent(p) - p->mark_bytes) / secs : -1);
}

static void probe_on_event(struct bufferevent *bev, short what, void *arg)
{
    struct link_probe *p = arg;
    if (what & BEV_EVENT_CONNECTED) {
        p->mark_ms = now_ms();   /* warm-up starts */
        fill(bev, p);
        struct timeval tv = {0, WARMUP_MS * 1000};
        evtimer_add(p->timer, &tv);
    } else if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF))
        sink_finish(p, -1);
}

static void on_start_failed(evutil_socket_t fd, short what, void *arg) { sink_finish(arg, -1); }

struct link_probe *link_probe_run(struct event_base *base, const char *ip, int port, int measure_ms,
                                  link_probe_fn done, void *arg)
{
    struct link_probe *p = xcalloc(1, sizeof *p);
    p->done = done;
    p->arg = arg;
    p->measure_ms = measure_ms;
    p->timer = evtimer_new(base, probe_on_timer, p);
    p->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(p->bev, NULL, fill, probe_on_event, p);
    bufferevent_set_max_single_write(p->bev, 4 * CHUNK);
    bufferevent_enable(p->bev, EV_WRITE);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, ip, &sin.sin_addr) != 1 ||
        bufferevent_socket_connect(p->bev, (struct sockaddr *)&sin, sizeof sin) < 0) {
        event_free(p->timer);
        p->timer = evtimer_new(base, on_start_failed, p);
        struct timeval tv = {0, 0};
        evtimer_add(p->timer, &tv);
    }
    return p;
}

void link_probe_cancel(struct link_probe *p)
{
    if (!p)
        return;
    bufferevent_free(p->bev);
    event_free(p->timer);
    free(p);
}
