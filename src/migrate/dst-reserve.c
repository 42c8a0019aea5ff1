/* Destination: the queue of sources waiting for an incoming slot, and the
 * quick questions a source (or a drain) asks before it sends a VM. */
#include "migrate/dst.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/limits.h"
#include "migrate/link_probe.h"
#include "migrate/migrate_net.h"
#include "vm/compat.h"

#define RESERVATION_IDLE_MS 15000     /* a waiting source that stops asking is gone */
#define RESERVATION_GRANT_MS 30000    /* a granted slot unused this long is taken back */

/* ---- reservations: the queue for incoming slots ----------------------- */

void migrate_dst_holder(char *buf, size_t len, const char *source, json_int_t job)
{
    snprintf(buf, len, "in:%s:%lld", source, (long long)job);
}

static void expire_reservations(struct agent *a)
{
    uint64_t now = now_ms();
    for (struct reservation **pp = &a->reservations; *pp;) {
        struct reservation *r = *pp;
        uint64_t idle = now - r->last_seen_ms;
        if (idle > (r->granted ? RESERVATION_GRANT_MS : RESERVATION_IDLE_MS)) {
            log_info("reservation of %s by %s expired", r->granted ? "a granted slot" : "a queue place", r->holder);
            if (r->granted)
                limits_release(a, SLOT_LIVE, r->holder);
            *pp = r->next;
            free(r);
            continue;
        }
        pp = &r->next;
    }
}

static struct reservation *find_reservation(struct agent *a, const char *source, json_int_t job)
{
    for (struct reservation *r = a->reservations; r; r = r->next)
        if (r->job == job && !strcmp(r->source, source))
            return r;
    return NULL;
}

bool migrate_dst_take_reservation(struct agent *a, const char *source, json_int_t job)
{
    for (struct reservation **pp = &a->reservations; *pp; pp = &(*pp)->next)
        if ((*pp)->job == job && !strcmp((*pp)->source, source)) {
            struct reservation *r = *pp;
            bool granted = r->granted;
            *pp = r->next;
            free(r);
            return granted;
        }
    return false;
}

void incoming_free_reservations(struct agent *a)
{
    while (a->reservations) {
        struct reservation *r = a->reservations;
        a->reservations = r->next;
        free(r);
    }
}

static struct reservation *queue_place(struct agent *a, const char *source, json_int_t job)
{
    struct reservation *res = find_reservation(a, source, job);
    if (res)
        return res;
    res = xcalloc(1, sizeof *res);
    snprintf(res->source, sizeof res->source, "%s", source);
    res->job = job;
    migrate_dst_holder(res->holder, sizeof res->holder, source, job);
    struct reservation **pp = &a->reservations;
    while (*pp)
        pp = &(*pp)->next;
    *pp = res;
    return res;
}

/* A source asks for an incoming slot: granted now, or its queue position.
 * It asks again until granted; FIFO among the sources waiting here. */
json_t *incoming_reserve(struct agent *a, const char *source, json_int_t job, json_t **err)
{
    if (!a->settings.migration_incoming) {
        *err = proto_error(ERR_DENIED, "enable it there: vmove host set --migration-incoming on",
                           "incoming migration is disabled on host %s", a->name);
        return NULL;
    }
    if (a->settings.drained) {
        *err = proto_error(ERR_STATE, "pick another host, or `vmove host resume` it",
                           "host %s is being drained: nothing new is placed on it", a->name);
        return NULL;
    }
    expire_reservations(a);
    struct reservation *res = queue_place(a, source, job);
    res->last_seen_ms = now_ms();
    int position = 0;
    for (struct reservation *q = a->reservations; q && q != res; q = q->next)
        position += !q->granted;
    if (!res->granted && position == 0 && limits_try_take(a, SLOT_LIVE, res->holder))
        res->granted = true;
    struct wire_reserve_reply rep = {.granted = res->granted, .position = position + 1,
                                     .in_use = limits_in_use(a, SLOT_LIVE), .max = limits_max(a, SLOT_LIVE)};
    snprintf(rep.host, sizeof rep.host, "%s", a->name);
    return wire_reserve_reply_to_json(&rep);
}

void incoming_unreserve(struct agent *a, const char *source, json_int_t job)
{
    char holder[96];
    migrate_dst_holder(holder, sizeof holder, source, job);
    if (migrate_dst_take_reservation(a, source, job))
        limits_release(a, SLOT_LIVE, holder);
}

/* ---- capacity: what a drain asks before choosing destinations --------- */

json_t *incoming_capacity(struct agent *a)
{
    return json_pack("{s:s, s:I, s:b, s:b, s:i, s:i}", "host", a->name, "free_mib",
                     (json_int_t)compat_mem_available_mib(), "incoming", a->settings.migration_incoming, "drained",
                     a->settings.drained, "live_in_use", limits_in_use(a, SLOT_LIVE), "live_max",
                     limits_max(a, SLOT_LIVE));
}

/* ---- link probe: a short-lived sink on the migration address ---------- */

json_t *incoming_probe(struct agent *a, const char *via, json_t **err)
{
    if (!a->settings.migration_incoming) {
        *err = proto_error(ERR_DENIED, NULL, "incoming migration is disabled on host %s", a->name);
        return NULL;
    }
    char ip[64], msg[512];
    if (migrate_net_pick_listen(&a->settings, via, a->name, ip, sizeof ip, msg, sizeof msg) < 0) {
        *err = proto_error(ERR_DENIED, NULL, "%s", msg);
        return NULL;
    }
    int port = 0;
    if (!probe_sink_start(a->base, ip, 5000, &port)) {
        *err = proto_error(ERR_UNAVAILABLE, NULL, "cannot listen on %s for a link probe", ip);
        return NULL;
    }
    return json_pack("{s:s, s:i}", "ip", ip, "port", port);
}
