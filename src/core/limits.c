#include "core/limits.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/jobs.h"

struct slot {
    struct slot *next;
    enum slot_kind kind;
    char holder[48];
};

struct waiter {
    struct waiter *next;
    struct agent *agent;
    enum slot_kind kind;
    struct job *job;
    slot_start_fn start;
    void *arg;
};

struct limits {
    struct slot *held;
    struct waiter *queue;        /* FIFO, all kinds */
    struct event *kick_ev;
};

static struct limits *L(struct agent *a)
{
    if (!a->limits) {
        a->limits = xcalloc(1, sizeof *a->limits);
    }
    return a->limits;
}

int limits_max(struct agent *a, enum slot_kind kind)
{
    return kind == SLOT_LIVE ? a->settings.max_live_migrations : a->settings.max_storage_migrations;
}

int limits_in_use(struct agent *a, enum slot_kind kind)
{
    int n = 0;
    for (struct slot *s = L(a)->held; s; s = s->next)
        n += s->kind == kind;
    return n;
}

void limits_job_holder(const struct job *job, char *buf, size_t len)
{
    snprintf(buf, len, "job:%lld", (long long)job->id);
}

static bool take(struct agent *a, enum slot_kind kind, const char *holder)
{
    if (limits_in_use(a, kind) >= limits_max(a, kind))
        return false;
    struct slot *s = xcalloc(1, sizeof *s);
    s->kind = kind;
    snprintf(s->holder, sizeof s->holder, "%s", holder);
    s->next = L(a)->held;
    L(a)->held = s;
    return true;
}

bool limits_try_take(struct agent *a, enum slot_kind kind, const char *holder)
{
    /* Queued local work goes first: FIFO per host. */
    for (struct waiter *w = L(a)->queue; w; w = w->next)
        if (w->kind == kind)
            return false;
    return take(a, kind, holder);
}

/* Start the waiters that now fit, oldest first.  Runs from the event loop so
 * that a start function never runs inside the call that freed the slot. */
static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    struct agent *a = arg;
    struct limits *l = L(a);
    struct waiter **pp = &l->queue;
    bool blocked[SLOT_KINDS] = {false};
    while (*pp) {
        struct waiter *w = *pp;
        char holder[48];
        limits_job_holder(w->job, holder, sizeof holder);
        if (!blocked[w->kind] && take(a, w->kind, holder)) {
            *pp = w->next;
            w->start(w->arg);
            free(w);
            pp = &l->queue;     /* the start may have changed the queue */
            continue;
        }
        blocked[w->kind] = true;   /* FIFO: nobody overtakes the head of a kind */
        pp = &w->next;
    }
}

void limits_kick(struct agent *a)
{
    struct limits *l = L(a);
    if (!l->kick_ev)
        l->kick_ev = event_new(a->base, -1, 0, on_kick, a);
    event_active(l->kick_ev, 0, 0);
}

void limits_enqueue(struct agent *a, enum slot_kind kind, struct job *job, slot_start_fn start, void *arg)
{
    struct waiter *w = xcalloc(1, sizeof *w);
    w->agent = a;
    w->kind = kind;
    w->job = job;
    w->start = start;
    w->arg = arg;
    struct waiter **pp = &L(a)->queue;
    while (*pp)
        pp = &(*pp)->next;
    *pp = w;
    limits_kick(a);
}

void limits_release(struct agent *a, enum slot_kind kind, const char *holder)
{
    for (struct slot **pp = &L(a)->held; *pp; pp = &(*pp)->next)
        if ((*pp)->kind == kind && !strcmp((*pp)->holder, holder)) {
            struct slot *s = *pp;
            *pp = s->next;
            free(s);
            limits_kick(a);
            return;
        }
}

bool limits_dequeue(struct agent *a, struct job *job)
{
    for (struct waiter **pp = &L(a)->queue; *pp; pp = &(*pp)->next)
        if ((*pp)->job == job) {
            struct waiter *w = *pp;
            *pp = w->next;
            free(w);
            return true;
        }
    return false;
}

int limits_position(struct agent *a, struct job *job)
{
    int pos = 0;
    for (struct waiter *w = L(a)->queue; w; w = w->next) {
        pos++;
        if (w->job == job)
            return pos;
    }
    return 0;
}

void limits_free_all(struct agent *a)
{
    struct limits *l = a->limits;
    if (!l)
        return;
    while (l->held) {
        struct slot *s = l->held;
        l->held = s->next;
        free(s);
    }
    while (l->queue) {
        struct waiter *w = l->queue;
        l->queue = w->next;
        free(w);
    }
    if (l->kick_ev)
        event_free(l->kick_ev);
    free(l);
    a->limits = NULL;
}
