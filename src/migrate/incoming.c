#include "migrate/incoming.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/spawn.h"
#include "common/util.h"
#include "core/acl.h"
#include "core/agent.h"
#include "core/audit.h"
#include "core/journal.h"
#include "core/limits.h"
#include "migrate/link_probe.h"
#include "migrate/migrate_net.h"
#include "migrate/tuning.h"
#include "qemu/qemu_tls.h"
#include "vm/vm.h"

#define MEMORY_OVERHEAD_MIB 128
#define RESERVATION_IDLE_MS 15000     /* a waiting source that stops asking is gone */
#define RESERVATION_GRANT_MS 30000    /* a granted slot unused this long is taken back */

/* A source's place in this host's queue for an incoming slot. */
struct reservation {
    struct reservation *next;
    char source[64];
    json_int_t job;
    char holder[96];
    bool granted;
    uint64_t last_seen_ms;
};

struct incoming {
    struct incoming *next;
    struct agent *agent;
    struct vm *vm;
    char *name;
    char *source;
    json_int_t job;
    struct api_req *req;       /* pending prepare or finish */
    struct api_sink *sink;     /* the source's control connection */
    struct migrate_tuning tuning;
    char ip[64];
    int port;
    bool finish_waiting;       /* finish arrived while QEMU was still loading */
    bool loaded;               /* QEMU reported the incoming migration completed */
    struct event *finish_timer;
    char holder[96];           /* our live-migration slot */
    bool quick;                /* quick migration: the state comes from a file */
    bool tls;                  /* migration and NBD streams use TLS */
    json_t *created_disks;     /* shared-nothing: disk files made here (removed on abort) */
    int refs;                  /* QMP replies in flight + 1 while alive */
    bool dead;                 /* ended: replies still in flight are dropped */
    bool aborting;
    int nbd_port;
    int exports_pending;
};

/* ---- bookkeeping ------------------------------------------------------ */

static struct incoming *find_incoming(struct agent *a, const char *name)
{
    for (struct incoming *in = a->incomings; in; in = in->next)
        if (!strcmp(in->name, name))
            return in;
    return NULL;
}

static void on_conn_closed(void *arg);

static void i_release(struct incoming *in)
{
    if (--in->refs == 0)
        free(in);
}

/* A QMP reply carries a reference to the incoming migration; one arriving
 * (or failed synchronously by a close) after it ended is dropped. */
struct iticket {
    struct incoming *in;
    qmp_reply_fn cb;
};

static void i_tramp(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct iticket *t = arg;
    struct incoming *in = t->in;
    if (!in->dead && !in->aborting)
        t->cb(in, ret, err);
    free(t);
    i_release(in);
}

static int iq_any(struct incoming *in, const char *cmd, json_t *args, int fd, int timeout, qmp_reply_fn cb)
{
    if (!in->vm || !in->vm->qmp) {
        json_decref(args);
        return -1;
    }
    struct iticket *t = xcalloc(1, sizeof *t);
    t->in = in;
    t->cb = cb;
    in->refs++;
    int rc = fd >= 0 ? qmp_command_fd(in->vm->qmp, cmd, args, fd, timeout, i_tramp, t)
                     : qmp_command(in->vm->qmp, cmd, args, timeout, i_tramp, t);
    if (rc < 0) {
        free(t);
        in->refs--;
    }
    return rc;
}

static int iq(struct incoming *in, const char *cmd, json_t *args, int timeout, qmp_reply_fn cb)
{
    return iq_any(in, cmd, args, -1, timeout, cb);
}

static int iqfd(struct incoming *in, const char *cmd, json_t *args, int fd, int timeout, qmp_reply_fn cb)
{
    return iq_any(in, cmd, args, fd, timeout, cb);
}

static void incoming_free(struct incoming *in)
{
    if (in->dead)
        return;
    in->dead = true;
    struct agent *a = in->agent;
    for (struct incoming **p = &a->incomings; *p; p = &(*p)->next)
        if (*p == in) {
            *p = in->next;
            break;
        }
    if (in->sink) {
        api_sink_release(in->sink);
    }
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
    i_release(in);
}

void incoming_free_all(struct agent *a)
{
    while (a->incomings) {
        struct incoming *in = a->incomings;
        if (in->req)
            api_failf(in->req, ERR_UNAVAILABLE, NULL, "vmoved on the destination is shutting down");
        in->req = NULL;
        incoming_free(in);
    }
}

static bool committed(struct vm *vm)
{
    return vm->migration && json_is_true(json_object_get(vm->migration, "committed"));
}

/* Shared-nothing: the half-copied disks made for an aborted incoming VM. */
static void remove_created_disks(json_t *paths)
{
    size_t i;
    json_t *p;
    json_array_foreach(paths, i, p) {
        if (unlink(json_string_value(p)) == 0)
            log_info("removed half-copied disk %s", json_string_value(p));
    }
}

/* Kill the half-received VM and forget it.  Never called once committed. */
static void abort_incoming(struct incoming *in, const char *why)
{
    if (in->dead || in->aborting)
        return;
    in->aborting = true;
    struct vm *vm = in->vm;
    log_warn("incoming migration of %s from %s aborted: %s", in->name, in->source, why);
    json_t *d = json_pack("{s:s, s:s}", "source", in->source, "why", why);
    journal_event(in->agent->journal, in->name, "migration.incoming.aborted", d);
    json_decref(d);
    in->vm = NULL;
    if (vm) {
        vm_set_hooks(vm, NULL);
        vm_kill_qemu(vm);
        vm_forget(vm);
    }
    remove_created_disks(in->created_disks);
    if (in->req)
        api_failf(in->req, ERR_ABORTED, NULL, "incoming migration of %s aborted on host %s: %s",
                  in->name, in->agent->name, why);
    in->req = NULL;
    incoming_free(in);
}

static void on_conn_closed(void *arg)
{
    struct incoming *in = arg;
    api_sink_release(in->sink);
    in->sink = NULL;
    if (in->vm && !committed(in->vm))
        abort_incoming(in, "the source host's control connection closed");
}

/* ---- authorization ------------------------------------------------------ */

/* An incoming migration needs, here: the sending host with migrate.in (we
 * accept VMs from it) and the user it acts for with migrate.in.  The user is
 * the one the source host authenticated; the source vouches for it, which is
 * why it must hold migrate.in itself. */
static bool incoming_authorized(struct api_req *r)
{
    struct agent *a = r->agent;
    const char *vm = json_string_value(json_object_get(r->params, "vm"));
    if (!vm)
        vm = json_string_value(json_object_get(json_object_get(r->params, "config"), "name"));
    char host[96];
    snprintf(host, sizeof host, "host:%s", r->who.name);
    const char *user = json_string_value(json_object_get(r->params, "user"));
    char who[96];
    snprintf(who, sizeof who, "%s", user ? user : "user:?");
    const char *check[] = {host, who};
    for (size_t i = 0; i < 2; i++) {
        bool ok = acl_allows(a, check[i], RIGHT_MIGRATE_IN);
        audit_record(a, check[i], r->method, vm, api_req_peer(r), ok, ok ? NULL : "lacks migrate.in");
        if (!ok) {
            api_fail(r, acl_denial(a, check[i], RIGHT_MIGRATE_IN));
            return false;
        }
    }
    return true;
}

/* ---- reservations: the queue for incoming slots ----------------------- */

static void reservation_holder(char *buf, size_t len, const char *source, json_int_t job)
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

/* Take the reservation out of the queue; its slot (if granted) moves to the caller. */
static bool take_reservation(struct agent *a, const char *source, json_int_t job)
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

/* A source asks for an incoming slot: granted now, or its queue position.
 * It asks again until granted; FIFO among the sources waiting here. */
static void migrate_reserve(struct api_req *r)
{
    struct agent *a = r->agent;
    if (r->who.kind != PRINCIPAL_HOST) {
        api_failf(r, ERR_DENIED, NULL, "%s is a host-to-host method", r->method);
        return;
    }
    long long job;
    if (api_param_int(r, "job", -1, &job) < 0 || !incoming_authorized(r))
        return;
    if (!a->settings.migration_incoming) {
        api_failf(r, ERR_DENIED, "enable it there: vmove host set --migration-incoming on",
                  "incoming migration is disabled on host %s", a->name);
        return;
    }
    if (a->settings.drained) {
        api_failf(r, ERR_STATE, "pick another host, or `vmove host resume` it",
                  "host %s is being drained: nothing new is placed on it", a->name);
        return;
    }
    expire_reservations(a);
    struct reservation *res = find_reservation(a, r->who.name, job);
    if (!res) {
        res = xcalloc(1, sizeof *res);
        snprintf(res->source, sizeof res->source, "%s", r->who.name);
        res->job = job;
        reservation_holder(res->holder, sizeof res->holder, r->who.name, job);
        struct reservation **pp = &a->reservations;
        while (*pp)
            pp = &(*pp)->next;
        *pp = res;
    }
    res->last_seen_ms = now_ms();
    int position = 0;
    for (struct reservation *q = a->reservations; q && q != res; q = q->next)
        position += !q->granted;
    if (!res->granted && position == 0 && limits_try_take(a, SLOT_LIVE, res->holder))
        res->granted = true;
    api_reply(r, json_pack("{s:b, s:i, s:i, s:i, s:s}", "granted", res->granted, "position", position + 1,
                           "in_use", limits_in_use(a, SLOT_LIVE), "max", limits_max(a, SLOT_LIVE), "host", a->name));
}

static void migrate_unreserve(struct api_req *r)
{
    long long job;
    if (r->who.kind != PRINCIPAL_HOST || api_param_int(r, "job", -1, &job) < 0) {
        if (r->who.kind != PRINCIPAL_HOST)
            api_failf(r, ERR_DENIED, NULL, "%s is a host-to-host method", r->method);
        return;
    }
    char holder[96];
    reservation_holder(holder, sizeof holder, r->who.name, job);
    if (take_reservation(r->agent, r->who.name, job))
        limits_release(r->agent, SLOT_LIVE, holder);
    api_reply(r, json_object());
}

/* ---- prepare ---------------------------------------------------------- */

static uint64_t mem_available_mib(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb / 1024;
}

static bool machine_supported(struct agent *a, const char *m)
{
    size_t i;
    json_t *v;
    json_array_foreach(a->caps.machines, i, v) if (!strcmp(json_string_value(v), m)) return true;
    return false;
}

static void add_problem(json_t *problems, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_problem(json_t *problems, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    json_array_append_new(problems, json_string(buf));
}

/* Every reason this host cannot take the VM, all at once. */
static json_t *check_incoming(struct agent *a, const struct vm_config *c, const char *src_accel,
                              const char *via_ip, bool quick, bool copy_storage, char *ip, size_t iplen)
{
    json_t *problems = json_array();
    if (!a->settings.migration_incoming)
        add_problem(problems, "incoming migration is disabled on host %s "
                    "(enable it there: vmove host set --migration-incoming on)", a->name);
    if (a->settings.drained)
        add_problem(problems, "host %s is being drained: nothing new is placed on it", a->name);
    if (vm_find(a, c->name))
        add_problem(problems, "a VM named %s already exists on host %s", c->name, a->name);
    uint64_t avail = mem_available_mib();
    if (avail < c->memory_mib + MEMORY_OVERHEAD_MIB)
        add_problem(problems, "not enough memory on host %s: the VM needs %llu MiB (+%d MiB overhead), %llu MiB available",
                    a->name, (unsigned long long)c->memory_mib, MEMORY_OVERHEAD_MIB, (unsigned long long)avail);
    for (size_t i = 0; i < c->n_nics; i++) {
        char *p = xasprintf("/sys/class/net/%s/bridge", c->nics[i].switch_name);
        if (!path_exists(p))
            add_problem(problems, "switch %s does not exist on host %s", c->nics[i].switch_name, a->name);
        free(p);
    }
    for (size_t i = 0; i < c->n_disks && !copy_storage; i++)
        if (access(c->disks[i].path, R_OK | W_OK) < 0)
            add_problem(problems, "disk %s (%s) is not visible on host %s: %s (live migration needs shared storage)",
                        c->disks[i].id, c->disks[i].path, a->name, strerror(errno));
    if (c->boot.kind == VM_BOOT_KERNEL && access(c->boot.kernel, R_OK) < 0)
        add_problem(problems, "kernel %s is not readable on host %s", c->boot.kernel, a->name);
    if (c->boot.initrd && access(c->boot.initrd, R_OK) < 0)
        add_problem(problems, "initrd %s is not readable on host %s", c->boot.initrd, a->name);
    if (src_accel && strcmp(src_accel, accel_kind_name(a->accel.kind)))
        add_problem(problems, "accelerator mismatch: the source runs %s, host %s runs %s", src_accel, a->name,
                    accel_kind_name(a->accel.kind));
    if (!machine_supported(a, c->machine))
        add_problem(problems, "machine type %s is not supported by QEMU %s on host %s", c->machine,
                    a->caps.qemu_version, a->name);
    char err[512];
    /* A quick migration's state travels through shared storage, not the network. */
    if (!quick && migrate_net_pick_listen(&a->settings, via_ip, a->name, ip, iplen, err, sizeof err) < 0)
        add_problem(problems, "%s", err);
    if (quick)
        snprintf(ip, iplen, "-");
    return problems;
}

static int free_port(const char *ip)
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

static void commit_and_resume(struct incoming *in);
static void stop_nbd_then_commit(struct incoming *in);

static void on_incoming_event(void *arg, const char *name, json_t *data)
{
    struct incoming *in = arg;
    if (!strcmp(name, "MIGRATION")) {
        const char *st = json_string_value(json_object_get(data, "status"));
        log_info("incoming %s: QEMU migration status %s", in->name, st ? st : "?");
        if (st && !strcmp(st, "failed") && in->vm && !committed(in->vm))
            abort_incoming(in, "QEMU reported the incoming migration failed");
        else if (st && !strcmp(st, "completed")) {
            /* Remembered: QEMU 7.2 may answer a later query-migrate with a
             * stale status, and the event is the authoritative signal. */
            in->loaded = true;
            if (in->finish_waiting) {
                in->finish_waiting = false;
                stop_nbd_then_commit(in);
            }
        }
    }
}

static void on_incoming_gone(void *arg, json_t *exit_info)
{
    struct incoming *in = arg;
    struct vm *vm = in->vm;
    if (vm && !committed(vm)) {
        char *why = xasprintf("the destination QEMU exited (%s)",
                              json_string_value(json_object_get(exit_info, "description")));
        abort_incoming(in, why);
        free(why);
        return;
    }
    in->vm = NULL;
    incoming_free(in);
}

static void fail_prepare(struct incoming *in, const char *fmt, const char *desc)
{
    char msg[1024];
    snprintf(msg, sizeof msg, fmt, desc);
    abort_incoming(in, msg);
}

static void on_migrate_incoming(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct incoming *in = arg;
    if (err) {
        fail_prepare(in, "migrate-incoming failed: %s", err->desc);
        return;
    }
    log_info("incoming %s: listening on %s:%d for host %s", in->name, in->ip, in->port, in->source);
    struct api_req *r = in->req;
    in->req = NULL;
    json_t *reply = json_pack("{s:s, s:i, s:b, s:s}", "ip", in->ip, "port", in->port, "tls", in->tls, "host",
                              in->agent->name);
    if (in->created_disks) {
        json_object_set_new(reply, "nbd_port", json_integer(in->nbd_port));
        json_object_set(reply, "disks", in->created_disks);
    }
    api_reply(r, reply);
}

static void listen_for_migration(struct incoming *in)
{
    in->port = free_port(in->ip);
    char *uri = xasprintf("tcp:%s:%d", in->ip, in->port);
    iq(in, "migrate-incoming", json_pack("{s:s}", "uri", uri), 10000, on_migrate_incoming);
    free(uri);
}

/* ---- shared-nothing: the new disks, served over NBD on the migration network */

static void on_export(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct incoming *in = arg;
    if (err) {
        in->exports_pending = -1000;
        fail_prepare(in, "QEMU could not export a disk over NBD: %s", err->desc);
        return;
    }
    if (--in->exports_pending == 0)
        listen_for_migration(in);
}

static void on_nbd_started(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct incoming *in = arg;
    if (err) {
        fail_prepare(in, "QEMU could not start its NBD server: %s", err->desc);
        return;
    }
    const struct vm_config *c = &in->vm->cfg;
    in->exports_pending = (int)c->n_disks;
    for (size_t i = 0; i < c->n_disks; i++) {
        char *id = xasprintf("nbd-%s", c->disks[i].id);
        iq(in, "block-export-add",
                    json_pack("{s:s, s:s, s:s, s:b, s:s}", "type", "nbd", "id", id, "node-name", c->disks[i].id,
                              "writable", true, "name", c->disks[i].id), 10000, on_export);
        free(id);
    }
}

static void start_nbd(struct incoming *in)
{
    in->nbd_port = free_port(in->ip);
    char port[16];
    snprintf(port, sizeof port, "%d", in->nbd_port);
    iq(in, "nbd-server-start",
                /* QEMU 7.2 takes the legacy socket address form here ("data"). */
                json_pack("{s:{s:s, s:{s:s, s:s}}, s:s*}", "addr", "type", "inet", "data", "host", in->ip, "port", port,
                          "tls-creds", in->tls ? "vmove-tls" : NULL),
                10000,
                on_nbd_started);
}

static void on_params(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct incoming *in = arg;
    if (err) {
        fail_prepare(in, "QEMU refused the migration parameters: %s", err->desc);
        return;
    }
    if (in->quick) {
        /* Quick migration: QEMU waits for migrate.load and its state file. */
        struct api_req *r = in->req;
        in->req = NULL;
        api_reply(r, json_pack("{s:b}", "quick", true));
        return;
    }
    if (in->created_disks) {
        start_nbd(in);
        return;
    }
    listen_for_migration(in);
}

static void on_caps(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct incoming *in = arg;
    if (err) {
        fail_prepare(in, "QEMU refused the migration capabilities: %s", err->desc);
        return;
    }
    json_t *params = tuning_qemu_parameters(&in->tuning);
    /* The source must come with a certificate from our CA (verify-peer). */
    json_object_set_new(params, "tls-creds", json_string(in->tls ? "vmove-tls" : ""));
    iq(in, "migrate-set-parameters", params, 10000, on_params);
}

static void on_tls_object(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct incoming *in = arg;
    if (err) {
        fail_prepare(in, "QEMU could not load the TLS credentials: %s", err->desc);
        return;
    }
    iq(in, "migrate-set-capabilities", tuning_qemu_capabilities(&in->tuning), 10000, on_caps);
}

static void on_launched(struct vm *vm, json_t *error, void *arg)
{
    struct incoming *in = arg;
    if (error) {
        fail_prepare(in, "%s", json_string_value(json_object_get(error, "message")));
        return;
    }
    if (in->tls) {
        iq(in, "object-add", qemu_tls_object("vmove-tls", in->agent->qemu_tls_dir, true), 10000, on_tls_object);
        return;
    }
    iq(in, "migrate-set-capabilities", tuning_qemu_capabilities(&in->tuning), 10000, on_caps);
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

static int create_disks(const struct vm_config *c, json_t *storage, json_t *created, char *err, size_t errlen)
{
    json_t *sizes = json_object_get(storage, "sizes");
    for (size_t i = 0; i < c->n_disks; i++) {
        char size[32];
        snprintf(size, sizeof size, "%lld", (long long)json_integer_value(json_object_get(sizes, c->disks[i].id)));
        char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", c->disks[i].path, size, NULL};
        char *out = NULL;
        int rc = run_capture(argv, 30000, &out);
        if (rc != 0) {
            snprintf(err, errlen, "cannot create %s: %s", c->disks[i].path, out ? out : "?");
            free(out);
            remove_created_disks(created);
            return -1;
        }
        free(out);
    }
    return 0;
}

static bool from_host(struct api_req *r)
{
    if (r->who.kind == PRINCIPAL_HOST)
        return true;
    api_failf(r, ERR_DENIED, NULL, "%s is a host-to-host method", r->method);
    return false;
}

static void migrate_prepare(struct api_req *r)
{
    struct agent *a = r->agent;
    if (!from_host(r) || !incoming_authorized(r))
        return;
    struct vm_config cfg;
    struct migrate_tuning tuning;
    char err[512];
    if (vm_config_from_json(json_object_get(r->params, "config"), &cfg, err, sizeof err) < 0) {
        api_failf(r, ERR_INVALID, NULL, "the VM configuration sent by %s is invalid: %s", r->who.name, err);
        return;
    }
    if (tuning_from_json(json_object_get(r->params, "tuning"), &tuning, err, sizeof err) < 0) {
        vm_config_free(&cfg);
        api_failf(r, ERR_INVALID, NULL, "%s", err);
        return;
    }
    json_t *storage = json_object_get(r->params, "storage");
    if (json_is_null(storage))
        storage = NULL;
    json_t *created = NULL;
    if (storage && plan_new_disks(a, &cfg, storage, &created, err, sizeof err) < 0) {
        vm_config_free(&cfg);
        api_failf(r, ERR_INVALID, NULL, "%s", err);
        return;
    }
    char ip[64];
    json_int_t job = json_integer_value(json_object_get(r->params, "job"));
    char holder[96];
    reservation_holder(holder, sizeof holder, r->who.name, job);
    json_t *problems = check_incoming(a, &cfg, json_string_value(json_object_get(r->params, "accel")),
                                      json_string_value(json_object_get(r->params, "via")),
                                      json_is_true(json_object_get(r->params, "quick")), storage != NULL, ip, sizeof ip);
    /* The slot: from a granted reservation, or free right now. */
    bool have_slot = !json_array_size(problems) &&
                     (take_reservation(a, r->who.name, job) || limits_try_take(a, SLOT_LIVE, holder));
    if (!json_array_size(problems) && !have_slot)
        add_problem(problems, "host %s already runs its maximum of %d live migrations; reserve a slot first",
                    a->name, limits_max(a, SLOT_LIVE));
    if (json_array_size(problems)) {
        char *text = json_dumps(problems, JSON_COMPACT);
        json_t *e = proto_error(ERR_INVALID, "fix these on the destination, then retry",
                                "host %s cannot take VM %s: %s", a->name, cfg.name, text);
        json_object_set_new(e, "problems", problems);
        free(text);
        vm_config_free(&cfg);
        json_decref(created);
        api_fail(r, e);
        return;
    }
    if (created && create_disks(&cfg, storage, created, err, sizeof err) < 0) {
        vm_config_free(&cfg);
        json_decref(created);
        limits_release(a, SLOT_LIVE, holder);
        api_failf(r, ERR_INTERNAL, NULL, "%s", err);
        return;
    }
    json_decref(problems);
    json_t *jerr = NULL;
    struct vm *vm = vm_define_in_state(a, &cfg, &jerr);
    vm_config_free(&cfg);
    if (!vm) {
        limits_release(a, SLOT_LIVE, holder);
        remove_created_disks(created);
        json_decref(created);
        api_fail(r, jerr);
        return;
    }
    struct incoming *in = xcalloc(1, sizeof *in);
    in->refs = 1;
    in->agent = a;
    in->vm = vm;
    in->name = xstrdup(vm->name);
    in->source = xstrdup(r->who.name);
    in->job = job;
    in->quick = json_is_true(json_object_get(r->params, "quick"));
    /* Plaintext only when both ends allow it; a quick migration's state goes
     * through shared storage, not the network. */
    in->tls = !in->quick && !(json_is_true(json_object_get(r->params, "insecure_ok")) &&
                              a->settings.allow_insecure_migration);
    in->created_disks = created;
    if (in->quick) {
        in->tuning.channels = 1;   /* a state file is one stream */
        snprintf(in->tuning.compress, sizeof in->tuning.compress, "none");
    }
    snprintf(in->holder, sizeof in->holder, "%s", holder);
    in->tuning = tuning;
    snprintf(in->ip, sizeof in->ip, "%s", ip);
    in->req = r;
    in->sink = api_sink_hold(r);
    api_sink_on_close(in->sink, on_conn_closed, in);
    in->next = a->incomings;
    a->incomings = in;
    vm_set_migration(vm, json_pack("{s:s, s:s, s:I, s:b, s:O*}", "role", "incoming", "source", in->source,
                                   "job", in->job, "committed", false, "created_disks", created));
    struct vm_hooks hooks = {on_incoming_event, on_incoming_gone, in};
    vm_set_hooks(vm, &hooks);
    json_t *d = json_pack("{s:s, s:I}", "source", in->source, "job", in->job);
    journal_event(a->journal, vm->name, "migration.incoming.prepared", d);
    json_decref(d);
    vm_launch_incoming(vm, on_launched, in);
}

/* ---- finish ----------------------------------------------------------- */

static void finish_done(struct incoming *in)
{
    struct vm *vm = in->vm;
    vm->started_ms = wall_ms();
    vm_set_migration(vm, NULL);
    vm_set_state(vm, VM_RUNNING, "incoming migration finished");
    json_t *d = json_pack("{s:s}", "source", in->source);
    journal_event(in->agent->journal, vm->name, "migration.incoming.finished", d);
    json_decref(d);
    struct api_req *r = in->req;
    in->req = NULL;
    incoming_free(in);
    api_reply(r, json_pack("{s:s, s:s}", "state", "running", "host", r->agent->name));
}

static void on_announce(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct incoming *in = arg;
    if (err)
        log_warn("announce-self for %s failed: %s", in->name, err->desc);
    finish_done(in);
}

static void on_cont(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct incoming *in = arg;
    if (err) {
        /* Committed but cannot run: the VM is lost here; the source still
         * has it paused and resumes it when told so. */
        json_t *rec = json_deep_copy(in->vm->migration);
        json_object_set_new(rec, "committed", json_false());
        vm_set_migration(in->vm, rec);
        fail_prepare(in, "the destination QEMU refused to run the guest: %s", err->desc);
        return;
    }
    /* Tell the switches where the guest's MACs are now (RARP/GARP). */
    iq(in, "announce-self",
                json_pack("{s:i, s:i, s:i, s:i}", "initial", 1, "max", 200, "rounds", 5, "step", 50), 5000,
                on_announce);
}

static void commit_and_resume(struct incoming *in)
{
    if (in->finish_timer) {
        event_free(in->finish_timer);
        in->finish_timer = NULL;
    }
    /* The point of no return: recorded before the guest runs here. */
    json_t *rec = json_deep_copy(in->vm->migration);
    json_object_set_new(rec, "committed", json_true());
    vm_set_migration(in->vm, rec);
    iq(in, "cont", NULL, 10000, on_cont);
}

static void on_nbd_stopped(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct incoming *in = arg;
    if (err) {
        abort_incoming(in, err->desc);
        return;
    }
    commit_and_resume(in);
}

/* Shared-nothing: the source's mirrors have ended; no more writes may
 * arrive over NBD once the guest runs here. */
static void stop_nbd_then_commit(struct incoming *in)
{
    if (in->created_disks)
        iq(in, "nbd-server-stop", NULL, 10000, on_nbd_stopped);
    else
        commit_and_resume(in);
}

static void on_finish_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct incoming *in = arg;
    abort_incoming(in, "the destination QEMU did not finish loading the VM within 30 s");
}

static void on_finish_status(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct incoming *in = arg;
    const char *st = json_string_value(json_object_get(ret, "status"));
    if (in->loaded || (!err && st && !strcmp(st, "completed"))) {
        stop_nbd_then_commit(in);
        return;
    }
    if (!err && st && (!strcmp(st, "active") || !strcmp(st, "device") || !strcmp(st, "setup"))) {
        /* The source has sent everything; QEMU here is still loading the
         * last of it.  Its MIGRATION event says when it is done. */
        in->finish_waiting = true;
        in->finish_timer = evtimer_new(in->agent->base, on_finish_timeout, in);
        struct timeval tv = {30, 0};
        evtimer_add(in->finish_timer, &tv);
        return;
    }
    char why[256];
    snprintf(why, sizeof why, "finish asked, but the incoming migration is %s", err ? err->desc : st ? st : "unknown");
    abort_incoming(in, why);
}

static void migrate_finish(struct api_req *r)
{
    if (!from_host(r))
        return;
    const char *name = api_param_str(r, "name", true);
    if (!name)
        return;
    struct incoming *in = find_incoming(r->agent, name);
    if (!in || !in->vm || in->req || strcmp(in->source, r->who.name)) {
        api_failf(r, ERR_STATE, NULL, "no incoming migration of %s from %s on host %s", name, r->who.name,
                  r->agent->name);
        return;
    }
    in->req = r;
    iq(in, "query-migrate", NULL, 10000, on_finish_status);
}

/* ---- capacity: what a drain asks before choosing destinations --------- */

static uint64_t mem_available_mib(void);

/* Free memory and whether this host takes VMs now; for the hosts (and users)
 * that may bring VMs in, without giving them vm.read. */
static void migrate_capacity(struct api_req *r)
{
    struct agent *a = r->agent;
    if (!from_host(r) || !incoming_authorized(r))
        return;
    api_reply(r, json_pack("{s:s, s:I, s:b, s:b, s:i, s:i}", "host", a->name, "free_mib",
                           (json_int_t)mem_available_mib(), "incoming", a->settings.migration_incoming, "drained",
                           a->settings.drained, "live_in_use", limits_in_use(a, SLOT_LIVE), "live_max",
                           limits_max(a, SLOT_LIVE)));
}

/* ---- link probe: a short-lived sink on the migration address ---------- */

static void migrate_probe(struct api_req *r)
{
    struct agent *a = r->agent;
    if (!from_host(r) || !incoming_authorized(r))
        return;
    if (!a->settings.migration_incoming) {
        api_failf(r, ERR_DENIED, NULL, "incoming migration is disabled on host %s", a->name);
        return;
    }
    char ip[64], err[512];
    if (migrate_net_pick_listen(&a->settings, json_string_value(json_object_get(r->params, "via")), a->name, ip,
                                sizeof ip, err, sizeof err) < 0) {
        api_failf(r, ERR_DENIED, NULL, "%s", err);
        return;
    }
    int port = 0;
    if (!probe_sink_start(a->base, ip, 5000, &port)) {
        api_failf(r, ERR_UNAVAILABLE, NULL, "cannot listen on %s for a link probe", ip);
        return;
    }
    api_reply(r, json_pack("{s:s, s:i}", "ip", ip, "port", port));
}

/* ---- quick migration: load the saved state ---------------------------- */

static void on_load_started(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct incoming *in = arg;
    if (err)
        abort_incoming(in, err->desc);
    /* else: the MIGRATION "completed" event commits and resumes (finish path). */
}

static void on_state_fd(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct incoming *in = arg;
    if (err) {
        abort_incoming(in, err->desc);
        return;
    }
    in->finish_waiting = true;
    in->finish_timer = evtimer_new(in->agent->base, on_finish_timeout, in);
    struct timeval tv = {300, 0};
    evtimer_add(in->finish_timer, &tv);
    iq(in, "migrate-incoming", json_pack("{s:s}", "uri", "fd:vmove-state"), 10000,
                on_load_started);
}

/* The source saved the paused guest to a file on shared storage: load it,
 * then commit and resume exactly as `finish` does. */
static void migrate_load(struct api_req *r)
{
    if (!from_host(r))
        return;
    const char *name = api_param_str(r, "name", true);
    const char *path = name ? api_param_str(r, "path", true) : NULL;
    if (!path)
        return;
    struct incoming *in = find_incoming(r->agent, name);
    if (!in || !in->vm || in->req || !in->quick || strcmp(in->source, r->who.name)) {
        api_failf(r, ERR_STATE, NULL, "no quick migration of %s from %s on host %s", name, r->who.name,
                  r->agent->name);
        return;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        in->req = r;
        char why[600];
        snprintf(why, sizeof why, "cannot read the saved state %s on host %s: %s", path, r->agent->name,
                 strerror(errno));
        abort_incoming(in, why);
        return;
    }
    in->req = r;
    iqfd(in, "getfd", json_pack("{s:s}", "fdname", "vmove-state"), fd, 10000, on_state_fd);
    close(fd);
}

/* ---- resolve ---------------------------------------------------------- */

/* The source asks what became of a VM it was sending.  An uncommitted
 * incoming VM is aborted before answering, so the answer stays true. */
static void migrate_resolve(struct api_req *r)
{
    if (!from_host(r))
        return;
    const char *name = api_param_str(r, "name", true);
    if (!name)
        return;
    struct vm *vm = vm_find(r->agent, name);
    struct incoming *in = find_incoming(r->agent, name);
    const char *state;
    if (!vm)
        state = "absent";
    else if (committed(vm) || (!vm->migration && vm->state != VM_INCOMING))
        state = "committed";
    else {
        if (in)
            abort_incoming(in, "the source asked to resolve the migration");
        else {
            vm_kill_qemu(vm);
            vm_forget(vm);
        }
        state = "aborted";
    }
    api_reply(r, json_pack("{s:s, s:s}", "state", state, "host", r->agent->name));
}

/* ---- recovery after a restart of vmoved ------------------------------- */

static void on_recover_cont(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct vm *vm = arg;
    if (err) {
        log_error("vm %s: could not resume the committed incoming VM: %s", vm->name, err->desc);
        return;
    }
    vm->started_ms = wall_ms();
    vm_set_migration(vm, NULL);
    vm_set_state(vm, VM_RUNNING, "committed incoming migration resumed after restart");
}

static void recover_tick(evutil_socket_t fd, short what, void *arg);

struct recover_wait {
    struct agent *agent;
    char *name;
    struct event *ev;
    int tries;
};

static void recover_tick(evutil_socket_t fd, short what, void *arg)
{
    struct recover_wait *w = arg;
    struct vm *vm = vm_find(w->agent, w->name);
    if (vm && vm->qmp && qmp_is_ready(vm->qmp)) {
        qmp_command(vm->qmp, "cont", NULL, 10000, on_recover_cont, vm);
    } else if (vm && ++w->tries < 100) {
        struct timeval tv = {0, 100000};
        evtimer_add(w->ev, &tv);
        return;
    }
    event_free(w->ev);
    free(w->name);
    free(w);
}

void incoming_recover(struct agent *a)
{
    struct vm *next;
    for (struct vm *vm = a->vms; vm; vm = next) {
        next = vm->next;
        const char *role = json_string_value(json_object_get(vm->migration, "role"));
        if (!role || strcmp(role, "incoming"))
            continue;
        bool alive = vm->qemu_pid > 0 && qemu_pid_alive(vm);
        if (committed(vm) && alive) {
            log_warn("vm %s: incoming migration was committed before the restart: resuming it", vm->name);
            struct recover_wait *w = xcalloc(1, sizeof *w);
            w->agent = a;
            w->name = xstrdup(vm->name);
            w->ev = evtimer_new(a->base, recover_tick, w);
            struct timeval tv = {0, 0};
            evtimer_add(w->ev, &tv);
        } else if (committed(vm)) {
            vm_set_migration(vm, NULL);
            vm_set_state(vm, VM_CRASHED, "QEMU exited after the incoming migration was committed");
        } else {
            log_warn("vm %s: uncommitted incoming migration found after restart: aborting it", vm->name);
            json_t *d = json_pack("{s:s}", "why", "vmoved restarted during the incoming migration");
            journal_event(a->journal, vm->name, "migration.incoming.aborted", d);
            json_decref(d);
            json_t *created = json_incref(json_object_get(vm->migration, "created_disks"));
            vm_kill_qemu(vm);
            vm_forget(vm);
            remove_created_disks(created);
            json_decref(created);
        }
    }
}

const struct api_method api_migrate_peer_methods[] = {
    {"migrate.prepare", migrate_prepare, 0},
    {"migrate.finish", migrate_finish, 0},
    {"migrate.resolve", migrate_resolve, 0},
    {"migrate.reserve", migrate_reserve, 0},
    {"migrate.load", migrate_load, 0},
    {"migrate.probe", migrate_probe, 0},
    {"migrate.capacity", migrate_capacity, 0},
    {"migrate.unreserve", migrate_unreserve, 0},
    {NULL, NULL, 0},
};
