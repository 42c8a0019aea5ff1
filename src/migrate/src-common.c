/* The source side of a migration: QMP and peer calls that hold the migration, phases, the timer. */
#include "migrate/src.h"

#include <unistd.h>

#include "common/util.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "core/limits.h"
#include "migrate/link_probe.h"
#include "vm/vm.h"

const char *const migrate_src_phase_names[] = {"prepare", "transfer", "switchover", "confirm", "rollback", "resolving",
                                    "queued", "reserving", "mirror"};

static void really_free(struct migration *m)
{
    json_decref(m->actions);
    json_decref(m->failure);
    json_decref(m->stats);
    free(m->name);
    free(m->peer_name);
    free(m->peer_addr);
    free(m);
}

void migrate_src_m_release(struct migration *m)
{
    if (--m->refs == 0)
        really_free(m);
}

/* QMP and peer replies carry a reference to the migration: a reply that
 * arrives (or is failed synchronously by a close) after the migration ended
 * is dropped instead of touching freed memory. */
struct mticket {
    struct migration *m;
    qmp_reply_fn qcb;
    peer_reply_fn pcb;
};

static void q_tramp(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct mticket *t = arg;
    struct migration *m = t->m;
    if (!m->dead && err && err->kind == QMP_ERR_TIMEOUT)
        migrate_src_abort_stuck_connections(m);
    if (!m->dead)
        t->qcb(m, ret, err);
    free(t);
    migrate_src_m_release(m);
}

static void p_tramp(void *arg, json_t *result, json_t *error)
{
    struct mticket *t = arg;
    struct migration *m = t->m;
    if (!m->dead)
        t->pcb(m, result, error);
    free(t);
    migrate_src_m_release(m);
}

static struct mticket *ticket(struct migration *m)
{
    struct mticket *t = xcalloc(1, sizeof *t);
    t->m = m;
    m->refs++;
    return t;
}

static int mq_any(struct migration *m, const char *cmd, json_t *args, int fd, int timeout, qmp_reply_fn cb)
{
    if (!m->vm || !m->vm->qmp) {
        json_decref(args);
        return -1;
    }
    if (!cb)
        return qmp_command(m->vm->qmp, cmd, args, timeout, NULL, NULL);
    struct mticket *t = ticket(m);
    t->qcb = cb;
    int rc = fd >= 0 ? qmp_command_fd(m->vm->qmp, cmd, args, fd, timeout, q_tramp, t)
                     : qmp_command(m->vm->qmp, cmd, args, timeout, q_tramp, t);
    if (rc < 0) {
        free(t);
        m->refs--;
    }
    return rc;
}

int migrate_src_mq(struct migration *m, const char *cmd, json_t *args, int timeout, qmp_reply_fn cb)
{
    return mq_any(m, cmd, args, -1, timeout, cb);
}

int migrate_src_mqfd(struct migration *m, const char *cmd, json_t *args, int fd, int timeout, qmp_reply_fn cb)
{
    return mq_any(m, cmd, args, fd, timeout, cb);
}

void migrate_src_mp(struct migration *m, const char *method, json_t *params, int timeout, peer_reply_fn cb)
{
    if (!cb) {
        peer_call(m->peer, method, params, timeout, NULL, NULL);
        return;
    }
    struct mticket *t = ticket(m);
    t->pcb = cb;
    peer_call(m->peer, method, params, timeout, p_tramp, t);
}

void migrate_src_migration_free(struct migration *m)
{
    if (m->dead)
        return;
    m->dead = true;
    for (struct migration **p = &m->agent->migrations; *p; p = &(*p)->next)
        if (*p == m) {
            *p = m->next;
            break;
        }
    if (m->timer)
        event_free(m->timer);
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
    if (m->probe) {
        link_probe_cancel(m->probe);
        m->probe = NULL;
        m->refs--;               /* the probe's reference */
    }
    migrate_src_m_release(m);
}

const char *migrate_src_dest(const struct migration *m) { return m->peer_name ? m->peer_name : m->peer_addr; }

/* The user the migration runs for ("user:alice"); the destination checks
 * that this user may bring VMs in. */
const char *migrate_src_user_of(const struct migration *m)
{
    const char *u = json_string_value(json_object_get(m->job->params, "user"));
    return u ? u : "user:root";
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
