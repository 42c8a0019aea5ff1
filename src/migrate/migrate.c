/* The source side of a migration: start (migrate_submit) and cancel; the rest
 * is in src-*.c (src.h). */
#include "migrate/migrate.h"

#include <string.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "migrate/src.h"
#include "vm/vm.h"

/* ---- start, cancel ----------------------------------------------------- */

static void cancel_migration(struct job *job)
{
    for (struct migration *m = job->agent->migrations; m; m = m->next) {
        if (m->job != job)
            continue;
        if (m->phase == PH_QUEUED || m->phase == PH_RESERVING) {
            /* Not started: the VM was never touched. */
            if (m->phase == PH_RESERVING)
                migrate_src_mp(m, "migrate.unreserve", json_pack("{s:I}", "job", (json_int_t)job->id), 5000,
                          migrate_src_on_unreserved);
            m->failure = proto_error(ERR_CANCELLED, NULL, "queued migration of %s to %s cancelled before it started",
                                     m->name, migrate_src_dest(m));
            m->vm = NULL;
            migrate_src_end_failed(m);
        } else if (m->phase == PH_TRANSFER)
            migrate_src_fail(m, proto_error(ERR_CANCELLED, NULL, "migration of %s to %s cancelled; it keeps running on %s",
                                            m->name, migrate_src_dest(m), m->agent->name));
        else if (m->phase == PH_PREPARE)
            log_info("%s: cancel requested during prepare; rolling back when the destination answers", m->name);
        else
            log_warn("%s: cancel refused: the switch-over has begun", m->name);
        return;
    }
}

const struct job_ops migrate_src_job_ops = {"migrate", cancel_migration};

void migrate_src_on_unreserved(void *arg, json_t *result, json_t *error) {}

struct migration *migrate_src_migration_new(struct agent *a, struct vm *vm, struct job *job, const char *peer_name,
                                            const char *peer_addr)
{
    struct migration *m = xcalloc(1, sizeof *m);
    m->agent = a;
    m->vm = vm;
    m->job = job;
    m->name = xstrdup(vm->name);
    m->peer_name = peer_name ? xstrdup(peer_name) : NULL;
    m->peer_addr = xstrdup(peer_addr);
    migrate_src_owner_init(m);
    m->timer = evtimer_new(a->base, migrate_src_poll_now, m);
    m->t_start = now_ms();
    m->actions = json_array();
    m->next = a->migrations;
    a->migrations = m;
    return m;
}

json_t *migrate_src_resolve_target(struct agent *a, const char *to, const char **name, const char **addr)
{
    const struct peer_entry *p = settings_find_peer(&a->settings, to);
    if (p) {
        *name = p->name;
        *addr = p->addr;
        return NULL;
    }
    if (strchr(to, ':')) {
        *name = NULL;
        *addr = to;
        return NULL;
    }
    /* A member of this host's cluster: its certificate must still name it. */
    const char *member = a->hooks.member_addr ? a->hooks.member_addr(a, to) : NULL;
    if (member) {
        *name = to;
        *addr = member;
        return NULL;
    }
    return proto_error(ERR_NOT_FOUND, "add it with `vmove peer add HOST ADDR:PORT`, or give --to ADDR:PORT",
                       "host %s is not a known peer of %s", to, a->name);
}

struct job *migrate_submit(struct agent *a, const char *name, const char *to, json_t *tuning_json, const char *user,
                           json_t *move_token, json_t **err)
{
    struct vm *vm = vm_find(a, name);
    if (!vm) {
        *err = proto_error(ERR_NOT_FOUND, NULL, "no VM named \"%s\" on host %s", name, a->name);
        return NULL;
    }
    struct migrate_tuning t;
    char msg[512];
    if (tuning_from_json(tuning_json, &t, msg, sizeof msg) < 0) {
        *err = proto_error(ERR_INVALID, NULL, "%s", msg);
        return NULL;
    }
    const char *peer_name = NULL, *peer_addr = NULL;
    if ((*err = migrate_src_resolve_target(a, to, &peer_name, &peer_addr)))
        return NULL;
    if (peer_name && !strcmp(peer_name, a->name))
        *err = proto_error(ERR_INVALID, NULL, "VM %s is already on host %s", name, a->name);
    else if (!a->settings.migration_outgoing)
        *err = proto_error(ERR_DENIED, "enable it: vmove host set --migration-outgoing on",
                           "outgoing migration is disabled on host %s", a->name);
    else if (t.converge == CONVERGE_POSTCOPY && !a->settings.allow_postcopy)
        *err = proto_error(ERR_DENIED, "allow it on both hosts: vmove host set --postcopy allow",
                           "post-copy is not allowed on host %s (a host or link dying during post-copy loses the VM)",
                           a->name);
    else if (!a->tls_client)
        *err = proto_error(ERR_UNAVAILABLE, "start vmoved with --listen and --tls-dir",
                           "host %s has no TLS identity to talk to other hosts", a->name);
    else if (vm->state != VM_RUNNING && vm->state != VM_PAUSED)
        *err = proto_error(ERR_STATE, NULL, "VM %s is %s; live migration moves a running VM", name,
                           vm_state_name(vm->state));
    else if (t.with_storage[0] && vm_config_checkpoint_count(&vm->cfg))
        /* The mirror copies the chain flattened: the checkpoints' frozen
         * layers would not exist on the destination. */
        *err = proto_error(ERR_STATE, "move it on shared storage (without --with-storage), or delete its checkpoints "
                           "first (`vmove checkpoint delete`)", "VM %s has %zu checkpoint(s): a shared-nothing move "
                           "would flatten their chain of disk layers (copying the chain across hosts is not built yet: "
                           "`vmove move-storage` copies it on one host), so it is refused", name,
                           vm_config_checkpoint_count(&vm->cfg));
    else {
        struct job *busy = job_active_for_vm(a, name);
        if (busy)
            *err = proto_error(ERR_STATE, "wait for it or cancel it", "VM %s is busy with job %lld (%s)", name,
                               (long long)busy->id, busy->ops->kind);
    }
    if (*err)
        return NULL;
    json_t *params = json_pack("{s:s, s:o, s:s}", "to", to, "tuning", tuning_to_json(&t), "user", user);
    /* The token itself stays in memory (jobs are shown and journaled); a
     * restart loses it, and the queued move with it (src-recovery.c). */
    if (move_token)
        json_object_set_new(params, "user_signed", json_true());
    struct job *job = job_create_in(a, &migrate_src_job_ops, name, params, JOB_QUEUED);
    struct migration *m = migrate_src_enqueue_migration(a, job, vm, peer_name, peer_addr, &t);
    m->move_token = json_incref(move_token);
    return job;
}

void migrate_free_all(struct agent *a)
{
    while (a->migrations) {
        struct migration *m = a->migrations;
        if (m->vm)
            vm_set_hooks(m->vm, NULL);
        struct job *job = m->job;
        migrate_src_migration_free(m);
        (void)job;   /* jobs_free_all answers its watchers */
    }
}
