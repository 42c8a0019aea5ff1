#include "migrate/incoming.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/image.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "core/journal.h"
#include "core/limits.h"
#include "core/paths.h"
#include "migrate/dst.h"
#include "vm/vm.h"

/* ---- bookkeeping ------------------------------------------------------ */

struct incoming *migrate_dst_find(struct agent *a, const char *name)
{
    for (struct incoming *in = a->incomings; in; in = in->next)
        if (!strcmp(in->name, name))
            return in;
    return NULL;
}

static void incoming_release(void *obj) { free(obj); }

void migrate_dst_owner_init(struct incoming *in) { qmon_owner_init(&in->owner, in, incoming_release); }

qmp_t *migrate_dst_mon(const struct incoming *in) { return in->vm ? in->vm->qmp : NULL; }

static void release_watch(struct incoming *in)
{
    if (!in->watched)
        return;
    in->watched = false;
    in->watch.release(in->watch.ctx);
}

/* The source runs the move and can cancel it; here it is only watched. */
static const struct job_ops arrival_ops = {"migrate.incoming", NULL};

void migrate_dst_arrival_start(struct incoming *in)
{
    in->arrival = job_create(in->agent, &arrival_ops, in->name,
                             json_pack("{s:s, s:I, s:s}", "source", in->source, "source_job", in->job, "type",
                                       in->quick ? "quick" : "live"));
    job_set_phase(in->arrival, "receiving");
}

void migrate_dst_arrival_end(struct incoming *in, const char *why)
{
    struct job *j = in->arrival;
    if (!j)
        return;
    in->arrival = NULL;
    if (!why)
        job_succeed(j, json_pack("{s:s, s:I}", "source", in->source, "source_job", in->job));
    else
        job_fail(j, proto_error(ERR_UNAVAILABLE, "the source's job tells how the move ended: `vmove -H SOURCE jobs "
                                "show SOURCE_JOB`", "%s", why));
}

void migrate_dst_free(struct incoming *in)
{
    if (in->owner.ended)
        return;
    migrate_dst_arrival_end(in, "the incoming migration ended before the guest ran here (vmoved stopping, or "
                                "the destination QEMU gone)");
    qmon_owner_mute(&in->owner);
    struct agent *a = in->agent;
    if (in->handoff_pending && a->hooks.cancel_incoming_commit)
        a->hooks.cancel_incoming_commit(a, in);
    in->handoff_pending = false;
    for (struct incoming **p = &a->incomings; *p; p = &(*p)->next)
        if (*p == in) {
            *p = in->next;
            break;
        }
    release_watch(in);
    image_op_cancel(in->create_op);
    in->create_op = NULL;
    json_decref(in->create_sizes);
    in->create_sizes = NULL;
    if (in->vm)
        vm_set_hooks(in->vm, NULL);
    if (in->finish_timer)
        event_free(in->finish_timer);
    if (in->holder[0])
        limits_release(a, SLOT_LIVE, in->holder);
    json_decref(in->created_disks);
    in->created_disks = NULL;
    free(in->name);
    free(in->source);
    qmon_owner_end(&in->owner);   /* in may be gone now */
}

void migrate_dst_answer(struct incoming *in, json_t *result, json_t *error)
{
    incoming_done_fn done = in->done;
    void *arg = in->done_arg;
    in->done = NULL;
    in->done_arg = NULL;
    if (done) {
        done(arg, result, error);
        return;
    }
    json_decref(result);
    json_decref(error);
}

void incoming_free_all(struct agent *a)
{
    while (a->incomings) {
        struct incoming *in = a->incomings;
        if (in->done)
            migrate_dst_answer(in, NULL,
                               proto_error(ERR_UNAVAILABLE, NULL, "vmoved on the destination is shutting down"));
        migrate_dst_free(in);
    }
}

bool migrate_dst_committed(const struct vm *vm)
{
    return vm->migration && json_is_true(json_object_get(vm->migration, "committed"));
}

/* Shared-nothing: the half-copied disks made for an aborted incoming VM. */
void migrate_dst_remove_created_disks(json_t *paths)
{
    size_t i;
    json_t *p;
    json_array_foreach(paths, i, p) {
        if (unlink(json_string_value(p)) == 0)
            log_info("removed half-copied disk %s", json_string_value(p));
    }
}

void migrate_dst_remove_recorded_disks(struct agent *a, const char *vm_dir, json_t *paths)
{
    struct path_policy pol;
    paths_policy_init(&pol, &a->settings, a->state_dir);
    size_t i;
    json_t *p;
    json_array_foreach(paths, i, p) {
        const char *path = json_string_value(p);
        if (!paths_may_remove(&pol, DIR_STORAGE, vm_dir, path))
            log_warn("not removing recorded disk %s: not a regular file in the VM's directory or in a directory "
                     "allowed for storage", path ? path : "?");
        else if (unlink(path) == 0)
            log_info("removed half-copied disk %s", path);
    }
}

json_t *migrate_dst_abort_error(const struct incoming *in, const char *why)
{
    return proto_error(ERR_ABORTED, NULL, "incoming migration of %s aborted on host %s: %s", in->name,
                       in->agent->name, why);
}

void migrate_dst_abort(struct incoming *in, const char *why)
{
    if (!qmon_owner_alive(&in->owner))
        return;
    qmon_owner_mute(&in->owner);   /* aborting: replies from now on are dropped */
    struct vm *vm = in->vm;
    log_warn("incoming migration of %s from %s aborted: %s", in->name, in->source, why);
    migrate_dst_arrival_end(in, why);
    json_t *d = json_pack("{s:s, s:s}", "source", in->source, "why", why);
    journal_event(in->agent->journal, in->name, "migration.incoming.aborted", d);
    json_decref(d);
    in->vm = NULL;
    if (in->create_sizes) {   /* still making the disks: only those claimed so far are ours */
        size_t keep = in->creating + (in->create_op ? 1 : 0);
        while (json_array_size(in->created_disks) > keep)
            json_array_remove(in->created_disks, keep);
    }
    image_op_cancel(in->create_op);   /* killed before its file is removed, so it makes no new one */
    in->create_op = NULL;
    char *vm_dir = vm ? xstrdup(vm->dir) : NULL;
    if (vm) {
        vm_set_hooks(vm, NULL);
        vm_kill_qemu(vm);
        vm_forget(vm);
    }
    migrate_dst_remove_recorded_disks(in->agent, vm_dir, in->created_disks);
    free(vm_dir);
    if (in->done)
        migrate_dst_answer(in, NULL, migrate_dst_abort_error(in, why));
    migrate_dst_free(in);
}

void migrate_dst_fail(struct incoming *in, const char *fmt, const char *desc)
{
    char msg[1024];
    snprintf(msg, sizeof msg, fmt, desc);
    migrate_dst_abort(in, msg);
}

void incoming_source_lost(struct agent *a, const char *vm_name, const char *source)
{
    struct incoming *in = migrate_dst_find(a, vm_name);
    if (!in || !in->watched || strcmp(in->source, source))
        return;
    /* vm_name and source may belong to the watch: not used past here. */
    release_watch(in);
    /* Armed for post-copy: the source may have switched, and it reconnects
     * to recover or finish; killing this half could lose the VM. */
    if (in->vm && !migrate_dst_committed(in->vm) && !in->postcopy_armed)
        migrate_dst_abort(in, "the source host's control connection closed");
}

/* ---- resolve ---------------------------------------------------------- */

/* Only the host a VM is arriving from may ask about (and so abort) its
 * arrival: the incoming object names it, or, after a vmoved restart, the
 * VM's persisted migration record does. */
static bool arriving_from(const struct vm *vm, const struct incoming *in, const char *source)
{
    if (in)
        return !strcmp(in->source, source);
    const char *role = json_string_value(json_object_get(vm->migration, "role"));
    const char *from = json_string_value(json_object_get(vm->migration, "source"));
    return role && !strcmp(role, "incoming") && from && !strcmp(from, source);
}

json_t *incoming_resolve(struct agent *a, const char *source, const char *vm_name, json_t **err)
{
    struct vm *vm = vm_find(a, vm_name);
    struct incoming *in = migrate_dst_find(a, vm_name);
    struct wire_resolve_reply rep = {0};
    const char *role = vm ? json_string_value(json_object_get(vm->migration, "role")) : NULL;
    if (vm && ((role && strcmp(role, "incoming")) || vm->state == VM_MIGRATING)) {
        /* Leaving this host: no other host has anything to resolve here. */
        *err = proto_error(ERR_DENIED, NULL, "VM %s is not arriving on host %s: host %s cannot resolve it",
                           vm_name, a->name, source);
        return NULL;
    }
    if ((in || (vm && vm->state == VM_INCOMING)) && !arriving_from(vm, in, source)) {
        *err = proto_error(ERR_DENIED, NULL, "VM %s is not arriving from host %s", vm_name, source);
        return NULL;
    }
    if (!vm)
        rep.state = WIRE_RESOLVE_ABSENT;
    else if (migrate_dst_committed(vm) || (!vm->migration && vm->state != VM_INCOMING))
        rep.state = WIRE_RESOLVE_COMMITTED;
    else {
        if (in)
            migrate_dst_abort(in, "the source asked to resolve the migration");
        else {
            vm_kill_qemu(vm);
            vm_forget(vm);
        }
        rep.state = WIRE_RESOLVE_ABORTED;
    }
    snprintf(rep.host, sizeof rep.host, "%s", a->name);
    return wire_resolve_reply_to_json(&rep);
}
