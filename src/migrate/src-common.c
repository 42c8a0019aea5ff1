/* The source side of a migration: QMP and peer calls that hold the migration, phases, the timer. */
#include "migrate/src.h"

#include <unistd.h>

#include "block/image.h"
#include "block/mirror.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "core/limits.h"
#include "migrate/link_probe.h"
#include "vm/vm.h"

const char *const migrate_src_phase_names[] = {"prepare", "transfer", "switchover", "confirm", "rollback", "resolving",
                                    "queued", "reserving", "mirror", "postcopy", "postcopy-paused"};

static void really_free(void *obj)
{
    struct migration *m = obj;
    block_mirror_free(m->mirror);   /* no reply can reach it any more */
    json_decref(m->actions);
    json_decref(m->failure);
    json_decref(m->stats);
    json_decref(m->storage_sizes);
    free(m->name);
    json_decref(m->move_token);
    free(m->peer_name);
    free(m->peer_addr);
    free(m);
}

/* A QMP command that timed out: QEMU may be stuck on a dead link. */
static void on_qmp_timeout(void *obj, const char *command)
{
    migrate_src_abort_stuck_connections(obj);
}

void migrate_src_owner_init(struct migration *m)
{
    qmon_owner_init(&m->owner, m, really_free);
    m->owner.on_timeout = on_qmp_timeout;
}

void migrate_src_m_release(struct migration *m) { qmon_owner_unref(&m->owner); }

qmp_t *migrate_src_mon(const struct migration *m) { return m->vm ? m->vm->qmp : NULL; }

/* Peer replies carry a reference to the migration (its qmon owner, as QMP
 * replies do): a reply that arrives (or is failed synchronously by a close)
 * after the migration ended is dropped instead of touching freed memory. */
struct pticket {
    struct migration *m;
    peer_reply_fn pcb;
};

static void p_tramp(void *arg, json_t *result, json_t *error)
{
    struct pticket *t = arg;
    struct migration *m = t->m;
    if (qmon_owner_alive(&m->owner))
        t->pcb(m, result, error);
    free(t);
    migrate_src_m_release(m);
}

void migrate_src_mp(struct migration *m, const char *method, json_t *params, int timeout, peer_reply_fn cb)
{
    if (!cb) {
        peer_call(m->peer, method, params, timeout, NULL, NULL);
        return;
    }
    struct pticket *t = xcalloc(1, sizeof *t);
    t->m = m;
    t->pcb = cb;
    qmon_owner_ref(&m->owner);
    peer_call(m->peer, method, params, timeout, p_tramp, t);
}

void migrate_src_migration_free(struct migration *m)
{
    if (!qmon_owner_alive(&m->owner))
        return;
    qmon_owner_mute(&m->owner);   /* replies failed by the closes below are dropped */
    for (struct migration **p = &m->agent->migrations; *p; p = &(*p)->next)
        if (*p == m) {
            *p = m->next;
            break;
        }
    if (m->timer)
        event_free(m->timer);
    block_mirror_stop(m->mirror);
    if (m->local_holder[0])
        limits_release(m->agent, SLOT_LIVE, m->local_holder);
    limits_dequeue(m->agent, m->job);
    if (m->state_path) {
        unlink(m->state_path);   /* removed after success, and after failure */
        free(m->state_path);
        m->state_path = NULL;
    }
    peer_close(m->peer);        /* pending calls come back through p_tramp and are dropped */
    m->peer = NULL;
    image_op_cancel(m->size_op);   /* its qemu-img goes with the migration */
    m->size_op = NULL;
    if (m->probe) {
        link_probe_cancel(m->probe);
        m->probe = NULL;
        migrate_src_m_release(m);   /* the probe's reference */
    }
    qmon_owner_end(&m->owner);
}

const char *migrate_src_dest(const struct migration *m) { return m->peer_name ? m->peer_name : m->peer_addr; }

/* The user the migration runs for ("user:alice"); the destination checks
 * that this user may bring VMs in. */
/* The user named to the destination: only one whose token we forward. */
const char *migrate_src_user_of(const struct migration *m)
{
    return m->move_token ? json_string_value(json_object_get(m->job->params, "user")) : NULL;
}

/* The fields that tell the destination whose move it is: the user and the
 * token that proves it, or nothing for this host's own move. */
json_t *migrate_src_with_user(const struct migration *m, json_t *params)
{
    if (m->move_token) {
        json_object_set_new(params, "user", json_string(migrate_src_user_of(m)));
        json_object_set(params, "move_token", m->move_token);
    }
    return params;
}

void migrate_src_set_phase(struct migration *m, enum phase ph)
{
    m->phase = ph;
    if (m->vm && m->vm->migration) {
        json_t *rec = json_deep_copy(m->vm->migration);
        json_object_set_new(rec, "phase", json_string(migrate_src_phase_names[ph]));
        vm_set_migration(m->vm, rec);
    }
    job_set_phase(m->job, migrate_src_phase_names[ph]);
}

void migrate_src_arm_timer(struct migration *m, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(m->timer, &tv);
}
