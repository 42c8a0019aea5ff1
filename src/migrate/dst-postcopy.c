/* Destination: post-copy.  migrate.postcopy arms the incoming migration
 * (recorded in runtime.json); QEMU's postcopy-active is the moment the guest
 * runs here: committed (recorded first), then `cont`.  migrate.recover
 * listens again (migrate-recover) after the link broke; a VM whose QEMU dies
 * in post-copy is lost, and said so in the journal and the audit log. */
#include "migrate/dst.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/audit.h"
#include "core/journal.h"
#include "migrate/migrate_net.h"
#include "vm/vm.h"

static void set_record(struct incoming *in, const char *key, json_t *v)
{
    json_t *rec = json_deep_copy(in->vm->migration);
    json_object_set_new(rec, key, v);
    vm_set_migration(in->vm, rec);   /* atomic, fsync'd */
}

static void event(struct incoming *in, const char *kind, const char *msg)
{
    json_t *d = json_pack("{s:s, s:s}", "source", in->source, "message", msg);
    journal_event(in->agent->journal, in->name, kind, d);
    json_decref(d);
}

static void lost(struct incoming *in, const char *msg)
{
    char who[96];
    snprintf(who, sizeof who, "host:%s", in->source);
    log_error("incoming %s: %s", in->name, msg);
    migrate_dst_arrival_end(in, msg);
    event(in, "migration.incoming.lost", msg);
    audit_record(in->agent, who, "migrate.postcopy.lost", in->name, in->source, false, msg);
}

static void postcopy_on_cont(void *arg, const qmp_error_t *err)
{
    struct incoming *in = arg;
    if (err)
        log_error("incoming %s: cont in post-copy failed: %s", in->name, err->desc);
    struct qmon_announce ann = {.initial = 1, .max = 200, .rounds = 5, .step = 50};
    qmon_announce_self(migrate_dst_mon(in), &in->owner, &ann, 5000, NULL, NULL);
}

void migrate_dst_postcopy_event(struct incoming *in, const char *st)
{
    if (!in->vm)
        return;
    if (!strcmp(st, "postcopy-active") && !migrate_dst_committed(in->vm)) {
        /* The source stopped its guest and sent the device state: the guest
         * runs here from now on, fetching missing pages from the source. */
        set_record(in, "postcopy", json_true());
        set_record(in, "committed", json_true());
        char msg[256];
        snprintf(msg, sizeof msg, "post-copy from %s: the VM runs here now, with pages still on %s", in->source,
                 in->source);
        log_warn("incoming %s: %s", in->name, msg);
        event(in, "migration.incoming.postcopy", msg);
        qmon_cont(migrate_dst_mon(in), &in->owner, 10000, postcopy_on_cont, in);
    } else if (!strcmp(st, "postcopy-paused")) {
        event(in, "migration.incoming.postcopy.paused", "post-copy paused: the migration link is down; "
                                                        "waiting for the source to recover it");
    } else if (!strcmp(st, "failed") && migrate_dst_committed(in->vm) && !in->loaded) {
        lost(in, "QEMU reported the post-copy failed: the VM lacks pages it can no longer get");
    }
}

/* postcopy-active (the commit) comes when QEMU starts listening for pages,
 * before it has loaded the device state that follows; a stream broken in
 * between fails the incoming migration (QEMU pauses only a running
 * post-copy).  RESUME is the guest actually running here: from then on a
 * cut link pauses and can be recovered.  Journaled so that the job's
 * watchers (and the tests) can tell the two apart. */
void migrate_dst_postcopy_running(struct incoming *in)
{
    /* Committed in post-copy only: a pre-copy finish resumes the guest too. */
    if (!in->vm || !migrate_dst_committed(in->vm) || in->running_logged ||
        !json_is_true(json_object_get(in->vm->migration, "postcopy")))
        return;
    in->running_logged = true;
    log_info("incoming %s: the guest runs here (device state loaded)", in->name);
    event(in, "migration.incoming.postcopy.running", "the guest runs here: a cut link now pauses the post-copy");
}

bool migrate_dst_postcopy_gone(struct incoming *in, const char *desc)
{
    if (in->postcopy_armed && !migrate_dst_committed(in->vm)) {
        /* Between migrate.postcopy and postcopy-active: whether the source
         * had switched is its to say; the abort that follows leaves nothing
         * here, so a source that had not switched resumes its guest. */
        char msg[512];
        snprintf(msg, sizeof msg, "the destination QEMU exited (%s) while %s was switching VM %s to post-copy: if it "
                                  "had switched, the VM is lost (the job on %s says)", desc ? desc : "?", in->source,
                 in->name, in->source);
        lost(in, msg);
        return false;
    }
    if (!in->tuning.postcopy || !migrate_dst_committed(in->vm) || in->loaded)
        return false;
    struct vm *vm = in->vm;
    char msg[512];
    snprintf(msg, sizeof msg, "VM %s is lost: the destination QEMU exited during post-copy from %s (%s)", in->name,
             in->source, desc ? desc : "?");
    lost(in, msg);
    in->vm = NULL;
    vm_set_migration(vm, NULL);
    vm_set_state(vm, VM_CRASHED, "lost: QEMU exited during post-copy (`vm start` boots it from its disks)");
    migrate_dst_free(in);
    return true;
}

#define LOST_STATE "lost in post-copy (`vm start` boots it from its disks)"

static void on_abandoned_gone(void *arg, json_t *exit_info)
{
    vm_set_state(arg, VM_CRASHED, LOST_STATE);
}

/* ---- the peer methods ----------------------------------------------------- */

static struct incoming *find_from(struct agent *a, const char *source, const char *name, json_t **err)
{
    struct incoming *in = migrate_dst_find(a, name);
    if (in && in->vm && !strcmp(in->source, source))
        return in;
    struct vm *vm = vm_find(a, name);
    *err = proto_error(ERR_NOT_FOUND, NULL, "no post-copy of VM %s from %s on host %s%s", name, source, a->name,
                       vm && vm->state == VM_CRASHED ? ": its QEMU is gone, the VM is lost" : "");
    return NULL;
}

json_t *incoming_postcopy(struct agent *a, const char *source, const char *name, json_t **err)
{
    struct incoming *in = find_from(a, source, name, err);
    if (!in)
        return NULL;
    if (!in->tuning.postcopy) {
        *err = proto_error(ERR_DENIED, "allow it on both hosts: vmove host set --postcopy allow",
                           "post-copy was not set up for VM %s on host %s", name, a->name);
        return NULL;
    }
    in->postcopy_armed = true;
    set_record(in, "postcopy", json_true());
    event(in, "migration.incoming.postcopy.armed", "the source is switching to post-copy");
    return json_pack("{s:b}", "armed", true);
}

/* The request is answered exactly once, whatever becomes of the incoming
 * migration meanwhile: the QMP calls are made without an owner, and the
 * incoming is looked up again by name when their answer comes. */
struct recover_call {
    struct agent *agent;
    char *name, *source;
    incoming_done_fn done;
    void *arg;
};

static void recover_answer(struct recover_call *c, json_t *result, json_t *error)
{
    c->done(c->arg, result, error);
    free(c->name);
    free(c->source);
    free(c);
}

static struct incoming *call_incoming(struct recover_call *c)
{
    struct incoming *in = migrate_dst_find(c->agent, c->name);
    if (in && in->vm && !strcmp(in->source, c->source))
        return in;
    recover_answer(c, NULL, proto_error(ERR_NOT_FOUND, NULL, "VM %s on host %s is gone: the VM is lost", c->name,
                                        c->agent->name));
    return NULL;
}

static void on_recover_listening(void *arg, const qmp_error_t *err)
{
    struct recover_call *c = arg;
    struct incoming *in = call_incoming(c);
    if (!in)
        return;
    if (err && strstr(err->desc, "paused")) {
        /* "Migrate recover can only be run when postcopy is paused": our
         * migrate-pause has not taken effect yet. */
        recover_answer(c, NULL, proto_error(ERR_STATE, NULL, "post-copy on host %s is pausing; ask again",
                                            in->agent->name));
        return;
    }
    if (err) {
        recover_answer(c, NULL, proto_error(ERR_QEMU, NULL, "migrate-recover on host %s failed: %s", in->agent->name,
                                            err->desc));
        return;
    }
    const char *colon = strrchr(in->recover_uri, ':');
    struct wire_recover_reply rep = {.port = colon ? atoi(colon + 1) : 0};
    snprintf(rep.ip, sizeof rep.ip, "%.*s", colon ? (int)(colon - in->recover_uri - 4) : 0, in->recover_uri + 4);
    log_info("incoming %s: post-copy recovery listening on %s", in->name, in->recover_uri);
    recover_answer(c, wire_recover_reply_to_json(&rep), NULL);
}

/* Out of band only (query-migrate could not tell the state here): a vCPU
 * waiting for a page the cut link will not bring may hold the big lock, so
 * in-band QMP gets no answer until the recovery it would start; the first
 * run of the link-cut test lost its VM that way.  So: pause this end (the
 * source saw the link die; a cut cable tells our socket nothing; an error
 * just means it is paused already), then listen. */
static void on_recover_paused(void *arg, const qmp_error_t *err)
{
    struct recover_call *c = arg;
    struct incoming *in = call_incoming(c);
    if (!in)
        return;
    struct agent *a = in->agent;
    if (err)
        log_info("incoming %s: migrate-pause: %s", in->name, err->desc);
    /* Any allowed migration network: the old address may be what broke. */
    char ip[64], why[512];
    if (migrate_net_pick_listen(&a->settings, in->ip, a->name, ip, sizeof ip, why, sizeof why) < 0) {
        recover_answer(c, NULL, proto_error(ERR_UNAVAILABLE, NULL, "%s", why));
        return;
    }
    int port = migrate_dst_free_port(ip);
    snprintf(in->recover_uri, sizeof in->recover_uri, "tcp:%s:%d", ip, port);
    if (qmon_migrate_recover(migrate_dst_mon(in), NULL, in->recover_uri, 10000, on_recover_listening, c) < 0)
        recover_answer(c, NULL, proto_error(ERR_UNAVAILABLE, NULL, "QEMU on host %s does not answer", a->name));
}

int incoming_postcopy_recover(struct agent *a, const char *source, const char *name, bool abandon, const char *why,
                              incoming_done_fn done, void *arg, json_t **err)
{
    struct incoming *in = find_from(a, source, name, err);
    if (!in)
        return -1;
    if (!in->tuning.postcopy || !migrate_dst_committed(in->vm)) {
        *err = proto_error(ERR_STATE, NULL, "VM %s is not in post-copy on host %s", name, a->name);
        return -1;
    }
    if (abandon) {
        /* The source gave up: its half is gone, so this one can never run. */
        char msg[1024];
        snprintf(msg, sizeof msg, "the source %s gave up the post-copy: %s", source, why ? why : "?");
        lost(in, msg);
        struct vm *vm = in->vm;
        in->vm = NULL;
        struct vm_hooks h = {NULL, on_abandoned_gone, vm};
        vm_set_hooks(vm, &h);
        vm_set_migration(vm, NULL);
        vm_set_state(vm, VM_CRASHED, LOST_STATE);
        vm_kill_qemu(vm);
        migrate_dst_free(in);
        done(arg, json_object(), NULL);
        return 0;
    }
    if (in->loaded) {
        /* Our QEMU got every page (its migration completed) and the cut
         * only kept the source from hearing so: nothing to recover. */
        log_info("incoming %s: the source asks to recover a post-copy that has completed here", in->name);
        done(arg, wire_recover_reply_to_json(&(struct wire_recover_reply){.loaded = true}), NULL);
        return 0;
    }
    struct recover_call *c = xcalloc(1, sizeof *c);
    c->agent = a;
    c->name = xstrdup(name);
    c->source = xstrdup(source);
    c->done = done;
    c->arg = arg;
    if (qmon_migrate_pause(migrate_dst_mon(in), NULL, 5000, on_recover_paused, c) < 0) {
        free(c->name);
        free(c->source);
        free(c);
        *err = proto_error(ERR_UNAVAILABLE, NULL, "QEMU on host %s does not answer", a->name);
        return -1;
    }
    return 0;
}
