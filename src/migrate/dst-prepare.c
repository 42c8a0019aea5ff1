/* Destination: migrate.prepare.  Check that this host can take the VM,
 * define it, launch QEMU waiting for the state and, for shared-nothing, serve
 * the new disks over NBD; answer with where to send it. */
#include "migrate/dst.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "block/image.h"
#include "block/nbd.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/journal.h"
#include "core/limits.h"
#include "migrate/migrate_net.h"
#include "qemu/accel.h"
#include "qemu/qemu_tls.h"
#include "vm/compat.h"
#include "vm/vm.h"

/* Every reason this host cannot take the VM, all at once. */
static json_t *check_incoming(struct agent *a, const struct vm_config *c, const struct wire_prepare_req *msg,
                              char *ip, size_t iplen)
{
    struct compat_host host = {
        .name = a->name,
        .incoming_enabled = a->settings.migration_incoming,
        .drained = a->settings.drained,
        .name_taken = vm_find(a, c->name) != NULL,
        .mem_available_mib = compat_mem_available_mib(),
        .accel = accel_kind_name(a->accel.kind),
        .machines = a->caps.machines,
        .qemu_version = a->caps.qemu_version,
    };
    struct compat_want want = {.src_accel = msg->accel, .copy_storage = msg->storage != NULL};
    json_t *problems = compat_check(c, &host, &want);
    char err[512];
    /* A quick migration's state travels through shared storage, not the network. */
    if (!msg->quick && migrate_net_pick_listen(&a->settings, msg->via, a->name, ip, iplen, err, sizeof err) < 0)
        json_array_append_new(problems, json_string(err));
    if (msg->quick)
        snprintf(ip, iplen, "-");
    if (msg->postcopy == WIRE_POSTCOPY_REQUIRED && !a->settings.allow_postcopy) {
        char *text = xasprintf("post-copy is not allowed on host %s (allow it there: vmove host set --postcopy allow)",
                               a->name);
        json_array_append_new(problems, json_string(text));
        free(text);
    }
    if (msg->postcopy == WIRE_POSTCOPY_REQUIRED && c->ha && a->hooks.before_incoming_commit)
        json_array_append_new(problems, json_string("VM is an HA VM of a cluster: post-copy is not offered for it "
                                                    "(its owner record must move before the guest runs here); "
                                                    "move it without --converge postcopy"));
    return problems;
}

/* An HA VM of a cluster runs only where its owner record says, and the
 * record moves in the commit step before `cont`.  Post-copy commits when
 * QEMU starts running the guest here, with no such step: not offered. */
static bool ha_in_cluster(const struct agent *a, const struct vm *vm)
{
    return vm->cfg.ha && a->hooks.before_incoming_commit;
}

int migrate_dst_free_port(const char *ip)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    inet_pton(AF_INET, ip, &sin.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    socklen_t len = sizeof sin;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0 &&
        getsockname(fd, (struct sockaddr *)&sin, &len) == 0)
        port = ntohs(sin.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static void on_incoming_event(void *arg, const char *name, json_t *data)
{
    struct incoming *in = arg;
    if (!strcmp(name, "MIGRATION")) {
        const char *st = json_string_value(json_object_get(data, "status"));
        log_info("incoming %s: QEMU migration status %s", in->name, st ? st : "?");
        if (st && in->tuning.postcopy)
            migrate_dst_postcopy_event(in, st);
        if (st && !strcmp(st, "failed") && in->vm && !migrate_dst_committed(in->vm))
            migrate_dst_abort(in, "QEMU reported the incoming migration failed");
        else if (st && !strcmp(st, "completed")) {
            /* Remembered: QEMU 7.2 may answer a later query-migrate with a
             * stale status, and the event is the authoritative signal. */
            in->loaded = true;
            in->tl.loaded = now_ms();
            if (in->finish_waiting) {
                in->finish_waiting = false;
                migrate_dst_stop_nbd_then_commit(in);
            }
        }
    } else if (!strcmp(name, "RESUME") && in->tuning.postcopy) {
        migrate_dst_postcopy_running(in);
    }
}

static void on_incoming_gone(void *arg, json_t *exit_info)
{
    struct incoming *in = arg;
    struct vm *vm = in->vm;
    if (vm && migrate_dst_postcopy_gone(in, json_string_value(json_object_get(exit_info, "description"))))
        return;
    if (vm && !migrate_dst_committed(vm)) {
        char *why = xasprintf("the destination QEMU exited (%s)",
                              json_string_value(json_object_get(exit_info, "description")));
        migrate_dst_abort(in, why);
        free(why);
        return;
    }
    in->vm = NULL;
    migrate_dst_free(in);
}

static void on_migrate_incoming(void *arg, const qmp_error_t *err)
{
    struct incoming *in = arg;
    if (err) {
        migrate_dst_fail(in, "migrate-incoming failed: %s", err->desc);
        return;
    }
    log_info("incoming %s: listening on %s:%d for host %s", in->name, in->ip, in->port, in->source);
    struct wire_prepare_reply rep = {.port = in->port, .tls = in->tls, .nbd_port = in->nbd_port,
                                     .disks = in->created_disks, .postcopy = in->tuning.postcopy};
    snprintf(rep.ip, sizeof rep.ip, "%s", in->ip);
    snprintf(rep.host, sizeof rep.host, "%s", in->agent->name);
    migrate_dst_answer(in, wire_prepare_reply_to_json(&rep), NULL);
}

static void listen_for_migration(struct incoming *in)
{
    in->port = migrate_dst_free_port(in->ip);
    char *uri = xasprintf("tcp:%s:%d", in->ip, in->port);
    qmon_migrate_incoming(migrate_dst_mon(in), &in->owner, uri, 10000, on_migrate_incoming, in);
    free(uri);
}

/* ---- shared-nothing: the new disks, served over NBD on the migration network */

static void on_nbd_served(void *arg, enum block_nbd_step failed, const qmp_error_t *err)
{
    struct incoming *in = arg;
    if (err && failed == BLOCK_NBD_SERVER)
        migrate_dst_fail(in, "QEMU could not start its NBD server: %s", err->desc);
    else if (err)
        migrate_dst_fail(in, "QEMU could not export a disk over NBD: %s", err->desc);
    else
        listen_for_migration(in);
}

/* One export per disk, named after its node (the disk id). */
static void start_nbd(struct incoming *in)
{
    in->nbd_port = migrate_dst_free_port(in->ip);
    const struct vm_config *c = &in->vm->cfg;
    const char **nodes = xcalloc(c->n_disks ? c->n_disks : 1, sizeof *nodes);
    for (size_t i = 0; i < c->n_disks; i++)
        nodes[i] = c->disks[i].id;
    block_nbd_serve(migrate_dst_mon(in), &in->owner, in->ip, in->nbd_port, in->tls ? "vmove-tls" : NULL, nodes,
                    c->n_disks, 10000, on_nbd_served, in);
    free(nodes);
}

static void on_params(void *arg, const qmp_error_t *err)
{
    struct incoming *in = arg;
    if (err) {
        migrate_dst_fail(in, "QEMU refused the migration parameters: %s", err->desc);
        return;
    }
    if (in->quick) {
        /* Quick migration: QEMU waits for migrate.load and its state file. */
        struct wire_prepare_reply rep = {.quick = true};
        migrate_dst_answer(in, wire_prepare_reply_to_json(&rep), NULL);
        return;
    }
    if (in->created_disks) {
        start_nbd(in);
        return;
    }
    listen_for_migration(in);
}

static void on_caps(void *arg, const qmp_error_t *err)
{
    struct incoming *in = arg;
    if (err) {
        migrate_dst_fail(in, "QEMU refused the migration capabilities: %s", err->desc);
        return;
    }
    struct qmon_migrate_params p = tuning_qmon_parameters(&in->tuning);
    /* The source must come with a certificate from our CA (verify-peer). */
    p.tls_creds = in->tls ? "vmove-tls" : "";
    qmon_migrate_set_parameters(migrate_dst_mon(in), &in->owner, &p, 10000, on_params, in);
}

static void set_capabilities(struct incoming *in)
{
    struct qmon_cap_state caps[TUNING_N_CAPS];
    size_t n = tuning_qmon_capabilities(&in->tuning, caps);
    qmon_migrate_set_capabilities(migrate_dst_mon(in), &in->owner, caps, n, 10000, on_caps, in);
}

static void on_tls_object(void *arg, const qmp_error_t *err)
{
    struct incoming *in = arg;
    if (err) {
        migrate_dst_fail(in, "QEMU could not load the TLS credentials: %s", err->desc);
        return;
    }
    set_capabilities(in);
}

static void on_launched(struct vm *vm, json_t *error, void *arg)
{
    struct incoming *in = arg;
    if (error) {
        migrate_dst_fail(in, "%s", json_string_value(json_object_get(error, "message")));
        return;
    }
    if (in->tls) {
        struct qmon_tls_creds creds = {"vmove-tls", in->agent->qemu_tls_dir, .server = true, .verify_peer = true};
        qmon_object_add(migrate_dst_mon(in), &in->owner, &creds, 10000, on_tls_object, in);
        return;
    }
    set_capabilities(in);
}

/* Shared-nothing: new disk files in DIR, one per source disk, same virtual
 * size.  A backing chain on the source is copied flattened (the mirror runs
 * with sync=full), so each new file stands alone.  Nothing is created here:
 * only checked, and the config's paths rewritten. */
static int plan_new_disks(struct agent *a, struct vm_config *c, json_t *storage, json_t **created, char *err,
                          size_t errlen)
{
    const char *dir = json_string_value(json_object_get(storage, "dir"));
    if (!dir || dir[0] != '/' || access(dir, W_OK | X_OK) < 0) {
        snprintf(err, errlen, "storage directory %s on host %s is not a writable absolute directory",
                 dir ? dir : "(none)", a->name);
        return -1;
    }
    *created = json_array();
    for (size_t i = 0; i < c->n_disks; i++) {
        const char *base = strrchr(c->disks[i].path, '/');
        char *target = xasprintf("%s/%s", dir, base ? base + 1 : c->disks[i].path);
        if (path_exists(target)) {
            snprintf(err, errlen, "%s already exists on host %s: refusing to overwrite it", target, a->name);
            free(target);
            json_decref(*created);
            *created = NULL;
            return -1;
        }
        free(c->disks[i].path);
        c->disks[i].path = target;
        json_array_append_new(*created, json_string(target));
    }
    return 0;
}

static void create_next_disk(struct incoming *in);

static void on_disk_created(void *arg, const char *err)
{
    struct incoming *in = arg;
    in->create_op = NULL;
    if (err) {
        char msg[1024];
        snprintf(msg, sizeof msg, "cannot create %s: %s",
                 json_string_value(json_array_get(in->created_disks, in->creating)), err);
        migrate_dst_fail(in, "%s", msg);
        return;
    }
    in->creating++;
    create_next_disk(in);
}

/* Shared-nothing: the new disk files, one after the other, each claimed
 * with O_EXCL (a file that appeared since the plan is not ours to format,
 * nor to remove) and formatted by qemu-img in a child the loop does not
 * wait for (the storage may be slow); then QEMU starts.  An abort (the
 * source gone, vmoved stopping) kills the one running. */
static void create_next_disk(struct incoming *in)
{
    size_t n = json_array_size(in->created_disks);
    if (!in->vm)
        return;
    if (in->creating == n) {
        json_decref(in->create_sizes);
        in->create_sizes = NULL;
        vm_launch_incoming(in->vm, on_launched, in);
        return;
    }
    const char *path = json_string_value(json_array_get(in->created_disks, in->creating));
    const char *id = in->vm->cfg.disks[in->creating].id;
    uint64_t size = (uint64_t)json_integer_value(json_object_get(in->create_sizes, id));
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        char msg[1024];
        snprintf(msg, sizeof msg, "cannot create %s: %s", path, strerror(errno));
        while (json_array_size(in->created_disks) > in->creating)   /* not ours: never removed */
            json_array_remove(in->created_disks, in->creating);
        migrate_dst_fail(in, "%s", msg);
        return;
    }
    close(fd);
    in->create_op = image_create_async(in->agent->base, path, size, NULL, NULL, on_disk_created, in);
}

/* The VM, its tuning and (shared-nothing) its new disk paths, from the
 * request; -1 with *err set if the source sent something invalid. */
static int read_request(struct agent *a, const struct incoming_prepare_req *req, struct vm_config *cfg,
                        struct migrate_tuning *tuning, json_t **created, json_t **err)
{
    char msg[512];
    if (vm_config_from_json(req->msg->config, cfg, msg, sizeof msg) < 0) {
        *err = proto_error(ERR_INVALID, NULL, "the VM configuration sent by %s is invalid: %s", req->source, msg);
        return -1;
    }
    if (tuning_from_json(req->msg->tuning, tuning, msg, sizeof msg) < 0) {
        vm_config_free(cfg);
        *err = proto_error(ERR_INVALID, NULL, "%s", msg);
        return -1;
    }
    *created = NULL;
    if (req->msg->storage && plan_new_disks(a, cfg, req->msg->storage, created, msg, sizeof msg) < 0) {
        vm_config_free(cfg);
        *err = proto_error(ERR_INVALID, NULL, "%s", msg);
        return -1;
    }
    return 0;
}

/* Whether this host takes the VM, and the live slot it needs (taken into
 * holder); -1 with every problem in *err. */
static int admit(struct agent *a, const struct incoming_prepare_req *req, const struct vm_config *cfg,
                 const char *holder, char *ip, size_t iplen, json_t **err)
{
    json_t *problems = check_incoming(a, cfg, req->msg, ip, iplen);
    /* The slot: from a granted reservation, or free right now. */
    bool have_slot = !json_array_size(problems) &&
                     (migrate_dst_take_reservation(a, req->source, req->msg->job) ||
                      limits_try_take(a, SLOT_LIVE, holder));
    if (!json_array_size(problems) && !have_slot) {
        char *text = xasprintf("host %s already runs its maximum of %d live migrations; reserve a slot first",
                               a->name, limits_max(a, SLOT_LIVE));
        json_array_append_new(problems, json_string(text));
        free(text);
    }
    if (!json_array_size(problems)) {
        json_decref(problems);
        return 0;
    }
    char *text = json_dumps(problems, JSON_COMPACT);
    *err = proto_error(ERR_INVALID, "fix these on the destination, then retry", "host %s cannot take VM %s: %s",
                       a->name, cfg->name, text);
    json_object_set_new(*err, "problems", problems);
    free(text);
    return -1;
}

/* The VM is defined here: record the incoming migration and launch QEMU. */
static void start_incoming(struct agent *a, const struct incoming_prepare_req *req, struct vm *vm,
                           const struct migrate_tuning *tuning, json_t *created, const char *holder,
                           const char *ip, incoming_done_fn done, void *arg)
{
    struct incoming *in = xcalloc(1, sizeof *in);
    migrate_dst_owner_init(in);
    in->agent = a;
    in->vm = vm;
    in->name = xstrdup(vm->name);
    in->source = xstrdup(req->source);
    in->job = req->msg->job;
    uint64_t now = wall_ms();
    if (req->msg->uptime_ms > 0 && (uint64_t)req->msg->uptime_ms < now)
        in->booted_ms = now - (uint64_t)req->msg->uptime_ms;
    in->quick = req->msg->quick;
    /* Plaintext only when both ends allow it; a quick migration's state goes
     * through shared storage, not the network. */
    in->tls = !in->quick && !(req->msg->insecure_ok && a->settings.allow_insecure_migration);
    in->created_disks = created;
    if (in->quick) {
        in->tuning.channels = 1;   /* a state file is one stream */
        snprintf(in->tuning.compress, sizeof in->tuning.compress, "none");
    }
    snprintf(in->holder, sizeof in->holder, "%s", holder);
    in->tuning = *tuning;
    /* Post-copy only if both hosts allow it: the source asked, we allow. */
    in->tuning.postcopy = req->msg->postcopy != WIRE_POSTCOPY_NO && a->settings.allow_postcopy && !in->quick &&
                          !created && !ha_in_cluster(a, vm);
    snprintf(in->ip, sizeof in->ip, "%s", ip);
    in->done = done;
    in->done_arg = arg;
    in->watch = req->watch;
    in->watched = true;
    in->watch.arm(in->watch.ctx);
    in->next = a->incomings;
    a->incomings = in;
    vm_set_migration(vm, json_pack("{s:s, s:s, s:I, s:b, s:O*}", "role", "incoming", "source", in->source,
                                   "job", in->job, "committed", false, "created_disks", created));
    struct vm_hooks hooks = {on_incoming_event, on_incoming_gone, in};
    vm_set_hooks(vm, &hooks);
    migrate_dst_arrival_start(in);
    json_t *d = json_pack("{s:s, s:I}", "source", in->source, "job", in->job);
    journal_event(a->journal, vm->name, "migration.incoming.prepared", d);
    json_decref(d);
    if (created) {
        in->create_sizes = json_incref(json_object_get(req->msg->storage, "sizes"));
        create_next_disk(in);
    } else {
        vm_launch_incoming(vm, on_launched, in);
    }
}

int incoming_prepare(struct agent *a, const struct incoming_prepare_req *req, incoming_done_fn done, void *arg,
                     json_t **err)
{
    struct vm_config cfg;
    struct migrate_tuning tuning;
    json_t *created;
    if (read_request(a, req, &cfg, &tuning, &created, err) < 0)
        return -1;
    char ip[64], holder[96];
    migrate_dst_holder(holder, sizeof holder, req->source, req->msg->job);
    if (admit(a, req, &cfg, holder, ip, sizeof ip, err) < 0) {
        vm_config_free(&cfg);
        json_decref(created);
        return -1;
    }
    struct vm *vm = vm_define_in_state(a, &cfg, err);
    vm_config_free(&cfg);
    if (!vm) {
        limits_release(a, SLOT_LIVE, holder);
        json_decref(created);   /* none made yet: they are made once the VM is defined */
        return -1;
    }
    start_incoming(a, req, vm, &tuning, created, holder, ip, done, arg);
    return 0;
}
