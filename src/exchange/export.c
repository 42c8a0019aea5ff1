/* VM export (see exchange/export.h): the job, the QEMU side of a live
 * point-in-time copy, and the export directory.
 *
 * Over 600 lines because the three share one cleanup rule (a failed or
 * cancelled export leaves no directory and no QEMU node behind); the
 * directory half could move to its own file once a second user needs it. */
#include "exchange/export.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/image.h"
#include "block/job.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "core/journal.h"
#include "core/paths.h"
#include "exchange/manifest.h"
#include "qemu/monitor.h"
#include "vm/vm.h"

#define QMP_TIMEOUT_MS 30000
#define POLL_MS 200
#define CANCEL_WAIT_MS 10000

enum phase { PH_PREPARING, PH_COPYING, PH_FINISHING, PH_CANCELLING };
static const char *phase_names[] = {"preparing", "copying", "finishing", "cancelling"};

struct export_disk {
    char *id, *source, *target;     /* target: in the .partial directory */
    char *node, *file_node, *job_id;
    char *src_node;                 /* the disk's top node in QEMU now */
    uint64_t virtual_size;
    bool node_added, file_added;    /* in QEMU: to delete at the end */
};

struct vm_export {
    struct vm_export *next;
    struct agent *agent;
    struct job *job;
    char *name;                     /* the VM: looked up again at every step */
    char *dir, *partial;            /* DIR and DIR.partial */
    bool live;
    int64_t speed;                  /* bytes/s per disk, 0: unlimited */
    struct export_disk *disks;
    size_t n;
    struct block_jobs tracked;
    bool jobs_started;
    enum phase phase;
    int step;                       /* enum step below */
    bool cleaning;                  /* failed: the cleanup steps run */
    int pending;                    /* replies still due for the current step */
    json_t *failure;                /* the first error; the export is failing */
    struct event *timer;
    uint64_t t_start, t_copy, t_deadline;
    struct vm_config cfg;           /* the config at the export point */
    struct qmon_owner owner;
    /* The helpers, one at a time, in children (the loop never waits): */
    struct image_op *op;            /* qemu-img: preparing's info/create, a stopped VM's convert */
    size_t preparing;               /* the disk being prepared */
    struct manifest_hash *hash;     /* finishing: sha256sum of one file */
    size_t helper_i;                /* the disk converted, or the file hashed */
    json_t *files;                  /* the manifest's entries so far */
};

static struct vm_export *exports;

static void step_next(struct vm_export *x);

/* ---- lifetime ---------------------------------------------------------- */

static void x_free(void *obj)
{
    struct vm_export *x = obj;
    for (size_t i = 0; i < x->n; i++) {
        struct export_disk *d = &x->disks[i];
        free(d->id), free(d->source), free(d->target), free(d->node), free(d->file_node), free(d->job_id);
        free(d->src_node);
    }
    free(x->disks);
    block_jobs_free(&x->tracked);
    vm_config_free(&x->cfg);
    json_decref(x->failure);
    json_decref(x->files);
    free(x->name), free(x->dir), free(x->partial);
    free(x);
}

static void x_release(struct vm_export *x)
{
    for (struct vm_export **p = &exports; *p; p = &(*p)->next)
        if (*p == x) {
            *p = x->next;
            break;
        }
    if (x->timer)
        event_free(x->timer);
    x->timer = NULL;
    x->job = NULL;
    qmon_owner_end(&x->owner);
}

static qmp_t *x_mon(struct vm_export *x)
{
    struct vm *vm = vm_find(x->agent, x->name);
    return vm && (vm->state == VM_RUNNING || vm->state == VM_PAUSED) ? vm->qmp : NULL;
}

static void export_set_phase(struct vm_export *x, enum phase ph)
{
    x->phase = ph;
    if (x->job)
        job_set_phase(x->job, phase_names[ph]);
}

static void arm(struct vm_export *x, int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(x->timer, &tv);
}

/* ---- endings --------------------------------------------------------------- */

static void export_end_failed(struct vm_export *x)
{
    /* A helper still writing or reading DIR.partial is gone first. */
    image_op_cancel(x->op);
    manifest_hash_cancel(x->hash);
    x->op = NULL;
    x->hash = NULL;
    if (remove_tree(x->partial) < 0 && path_exists(x->partial))
        log_warn("%s: export: could not remove %s: %s", x->name, x->partial, strerror(errno));
    json_t *err = x->failure ? x->failure : proto_error(ERR_INTERNAL, NULL, "export failed");
    x->failure = NULL;
    journal_event(x->agent->journal, x->name, "vm.export.failed", err);
    struct job *job = x->job;
    x_release(x);
    if (job)
        job_fail(job, err);
    else
        json_decref(err);
}

/* The first failure is the headline; the rollback then runs once. */
static void x_fail(struct vm_export *x, json_t *error)
{
    if (x->failure) {
        json_decref(error);
        return;
    }
    x->failure = error;
    log_warn("%s: export failing: %s", x->name, json_string_value(json_object_get(error, "message")));
    if (x->live && x->pending == 0) {
        evtimer_del(x->timer);
        step_next(x);
    }
}

static void x_failf(struct vm_export *x, const char *code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void x_failf(struct vm_export *x, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    x_fail(x, proto_error(code, NULL, "%s", msg));
}

/* ---- the export directory ------------------------------------------------------ */

static char *target_name(const struct export_disk *d) { return xasprintf("%s.qcow2", d->id); }

/* vm.json as it was at the export point, its disks in DIR. */
static int write_config(struct vm_export *x, char *err, size_t errlen)
{
    struct vm_config c;
    vm_config_copy(&c, &x->cfg);
    for (size_t i = 0; i < c.n_disks; i++) {
        char *base = target_name(&x->disks[i]);
        free(c.disks[i].path);
        c.disks[i].path = xasprintf("%s/%s", x->dir, base);
        free(base);
    }
    char *p = xasprintf("%s/vm.json", x->partial);
    int rc = vm_config_save(p, &c, err, errlen);
    free(p);
    vm_config_free(&c);
    return rc;
}

static int write_manifest(struct vm_export *x, char *err, size_t errlen)
{
    json_t *m = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:I, s:b, s:O}", "manifest_version", MANIFEST_VERSION,
                          "kind", "vmove-export", "vm", x->name, "uuid", x->cfg.uuid, "host", x->agent->name,
                          "accel", accel_kind_name(x->agent->accel.kind), "created_ms", (json_int_t)wall_ms(),
                          "live", x->live, "files", x->files);
    char *text = json_dumps(m, JSON_INDENT(2) | JSON_SORT_KEYS);
    char *p = xasprintf("%s/%s", x->partial, MANIFEST_NAME);
    int rc = write_file_atomic(p, text, strlen(text), 0644);
    if (rc < 0)
        snprintf(err, errlen, "%s: %s", p, strerror(errno));
    free(p);
    free(text);
    json_decref(m);
    return rc;
}

static void fsync_dir_of(const char *path)
{
    char *copy = xstrdup(path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

static json_t *result_json(struct vm_export *x)
{
    json_t *disks = json_array();
    for (size_t i = 0; i < x->n; i++) {
        char *base = target_name(&x->disks[i]);
        json_array_append_new(disks, json_pack("{s:s, s:s, s:s, s:I}", "id", x->disks[i].id, "from",
                                               x->disks[i].source, "to", base, "virtual_size",
                                               (json_int_t)x->disks[i].virtual_size));
        free(base);
    }
    uint64_t t = now_ms();
    return json_pack("{s:s, s:b, s:o, s:I, s:I, s:s}", "dir", x->dir, "live", x->live, "disks", disks,
                     "total_ms", (json_int_t)(t - x->t_start), "copy_ms",
                     (json_int_t)(x->t_copy ? t - x->t_copy : 0), "manifest", MANIFEST_NAME);
}

/* The manifest written, DIR.partial becomes DIR in one rename. */
static void export_publish(struct vm_export *x)
{
    char err[1024];
    if (write_manifest(x, err, sizeof err) < 0) {
        x->failure = proto_error(ERR_INTERNAL, NULL, "export of %s: %s", x->name, err);
        export_end_failed(x);
        return;
    }
    if (rename(x->partial, x->dir) < 0) {
        x->failure = proto_error(ERR_INTERNAL, "remove it or choose another --to", "export of %s: cannot rename %s "
                                 "to %s: %s", x->name, x->partial, x->dir, strerror(errno));
        export_end_failed(x);
        return;
    }
    fsync_dir_of(x->dir);
    json_t *res = result_json(x);
    journal_event(x->agent->journal, x->name, "vm.export.succeeded", res);
    log_info("%s: exported to %s in %lld ms", x->name, x->dir,
             (long long)json_integer_value(json_object_get(res, "total_ms")));
    struct job *job = x->job;
    x_release(x);
    job_succeed(job, res);
}

/* The manifest's files in order: vm.json, then each disk. */
static char *manifest_file(const struct vm_export *x, size_t i)
{
    return i == 0 ? xstrdup("vm.json") : target_name(&x->disks[i - 1]);
}

static void hash_next(struct vm_export *x);

static void on_file_hashed(void *arg, const char *hex, uint64_t size, const char *err)
{
    struct vm_export *x = arg;
    x->hash = NULL;
    if (!hex) {
        x->failure = proto_error(ERR_INTERNAL, NULL, "export of %s: %s", x->name, err);
        export_end_failed(x);
        return;
    }
    char *name = manifest_file(x, x->helper_i);
    json_array_append_new(x->files, manifest_entry_of(name, hex, size));
    free(name);
    x->helper_i++;
    hash_next(x);
}

/* sha256 of each file in a child: minutes for a big disk, which the loop
 * must not spend. */
static void hash_next(struct vm_export *x)
{
    if (x->helper_i == x->n + 1) {
        export_publish(x);
        return;
    }
    char *name = manifest_file(x, x->helper_i);
    char *path = xasprintf("%s/%s", x->partial, name);
    x->hash = manifest_sha256_async(x->agent->base, path, on_file_hashed, x);
    free(path);
    free(name);
}

/* Every disk copied and QEMU done with the targets: vm.json, the sums of
 * every file, then the rename. */
static void export_finish(struct vm_export *x)
{
    export_set_phase(x, PH_FINISHING);
    char err[1024];
    if (write_config(x, err, sizeof err) < 0) {
        x->failure = proto_error(ERR_INTERNAL, NULL, "export of %s: %s", x->name, err);
        export_end_failed(x);
        return;
    }
    json_decref(x->files);
    x->files = json_array();
    x->helper_i = 0;
    hash_next(x);
}

/* ---- a stopped VM: qemu-img does the copy ---------------------------------------------- */

static void convert_next(struct vm_export *x);

static void on_converted(void *arg, const char *why)
{
    struct vm_export *x = arg;
    x->op = NULL;
    if (why) {
        x->failure = proto_error(ERR_INTERNAL, NULL, "qemu-img convert of disk %s (%s) failed: %s",
                                 x->disks[x->helper_i].id, x->disks[x->helper_i].source, why);
        export_end_failed(x);
        return;
    }
    x->helper_i++;
    convert_next(x);
}

/* One disk after the other, each in a child (a big disk takes minutes). */
static void convert_next(struct vm_export *x)
{
    if (x->helper_i == x->n) {
        export_finish(x);
        return;
    }
    /* The VM's own disk, a chain vmove wrote: convert flattens it. */
    struct export_disk *d = &x->disks[x->helper_i];
    x->op = image_convert_async(x->agent->base, d->source, "qcow2", d->target, on_converted, x);
}

static void export_offline(struct vm_export *x)
{
    if (x->failure) {   /* cancelled before it began */
        export_end_failed(x);
        return;
    }
    export_set_phase(x, PH_COPYING);
    x->t_copy = now_ms();
    x->helper_i = 0;
    convert_next(x);
}

/* ---- a running VM: the QEMU steps --------------------------------------------------------- */

/* In order; step_next() starts the next one once every reply of the
 * current one is in.  A failure goes to ST_CANCEL (jobs running) or
 * ST_DEL_NODES, and ST_DONE then removes DIR.partial. */
enum step { ST_ADD_NODES, ST_FIND_NODES, ST_BACKUP, ST_POLL, ST_CANCEL, ST_DISMISS, ST_DEL_NODES, ST_DONE };

static void on_reply(void *arg, const qmp_error_t *err)
{
    struct vm_export *x = arg;
    x->pending--;
    if (err && !x->failure)
        x_failf(x, ERR_QEMU, "export of %s: QEMU: %s", x->name, err->desc);
    else if (x->pending == 0)
        step_next(x);
}

/* Count a sent command; a refused send is a failure. */
static void export_sent(struct vm_export *x, int rc, const char *what)
{
    if (rc == 0)
        x->pending++;
    else if (!x->failure)
        x->failure = proto_error(ERR_UNAVAILABLE, NULL, "export of %s: cannot send %s: the VM's QEMU monitor is not "
                                 "connected", x->name, what);
}

static void add_nodes(struct vm_export *x, qmp_t *q)
{
    for (size_t i = 0; i < x->n && !x->failure; i++) {
        struct export_disk *d = &x->disks[i];
        struct qmon_blockdev file = {.driver = QMON_BLOCKDEV_FILE, .node_name = d->file_node, .filename = d->target};
        struct qmon_blockdev fmt = {.driver = QMON_BLOCKDEV_QCOW2, .node_name = d->node, .file = d->file_node};
        /* QMP runs commands in order: the qcow2 node finds its file node. */
        export_sent(x, qmon_blockdev_add(q, &x->owner, &file, QMP_TIMEOUT_MS, on_reply, x), "blockdev-add");
        d->file_added = !x->failure;
        export_sent(x, qmon_blockdev_add(q, &x->owner, &fmt, QMP_TIMEOUT_MS, on_reply, x), "blockdev-add");
        d->node_added = !x->failure;
    }
}

/* Each disk's current top node, from QEMU (a storage move renames it). */
static void export_on_block(void *arg, const struct qmon_block_device *devs, size_t n, const qmp_error_t *err)
{
    struct vm_export *x = arg;
    x->pending--;
    if (err && !x->failure)
        x_failf(x, ERR_QEMU, "export of %s: QEMU cannot list its block devices: %s", x->name, err->desc);
    for (size_t i = 0; !err && i < x->n && !x->failure; i++) {
        char *qdev = xasprintf("%s-dev", x->disks[i].id);
        const struct qmon_block_device *b = qmon_block_by_qdev(devs, n, qdev);
        free(qdev);
        if (!b || !b->inserted || !b->node_name)
            x_failf(x, ERR_STATE, "export of %s: QEMU has no node for disk %s", x->name, x->disks[i].id);
        else
            x->disks[i].src_node = xstrdup(b->node_name);
    }
    if (!x->failure && x->pending == 0)
        step_next(x);
}

static void backup(struct vm_export *x, qmp_t *q)
{
    struct qmon_backup *b = xcalloc(x->n, sizeof *b);
    for (size_t i = 0; i < x->n; i++) {
        b[i] = (struct qmon_backup){x->disks[i].job_id, x->disks[i].src_node, x->disks[i].node, x->speed};
        block_jobs_track(&x->tracked, x->disks[i].job_id);
    }
    x->t_copy = now_ms();
    int rc = qmon_backup_transaction(q, &x->owner, b, x->n, QMP_TIMEOUT_MS, on_reply, x);
    free(b);
    export_sent(x, rc, "transaction");
    x->jobs_started = rc == 0;   /* from here the jobs may exist in QEMU: cleanup asks */
    export_set_phase(x, PH_COPYING);
}

static void publish_progress(struct vm_export *x)
{
    json_t *disks = json_array();
    uint64_t done = 0, total = 0;
    for (size_t i = 0; i < x->n; i++) {
        const struct block_job_state *s = block_jobs_get(&x->tracked, x->disks[i].job_id);
        uint64_t len = s && s->len ? s->len : x->disks[i].virtual_size, off = s ? s->offset : 0;
        done += off;
        total += len;
        json_array_append_new(disks, json_pack("{s:s, s:I, s:I, s:s}", "id", x->disks[i].id, "done",
                                               (json_int_t)off, "total", (json_int_t)len, "status",
                                               s && s->status ? s->status : "pending"));
    }
    job_set_progress(x->job, json_pack("{s:s, s:o, s:I, s:I, s:f, s:I}", "phase", phase_names[x->phase], "disks",
                                       disks, "bytes_done", (json_int_t)done, "bytes_total", (json_int_t)total,
                                       "percent", total ? 100.0 * (double)done / (double)total : 0.0,
                                       "elapsed_ms", (json_int_t)(now_ms() - x->t_start)));
}

/* The jobs stay listed ("concluded", with "error" if they failed) until
 * dismissed (auto-dismiss off), so an ending is never missed. */
static void export_on_jobs(void *arg, const struct qmon_block_job *jobs, size_t n, const qmp_error_t *err)
{
    struct vm_export *x = arg;
    x->pending--;
    if (err) {
        if (!x->failure)
            x->failure = proto_error(ERR_QEMU, NULL, "export of %s: query-block-jobs failed: %s", x->name, err->desc);
        x->step = ST_DISMISS;
        step_next(x);
        return;
    }
    block_jobs_update(&x->tracked, jobs, n);
    size_t concluded = 0, listed = 0;
    for (size_t i = 0; i < n; i++) {
        if (!block_jobs_get(&x->tracked, jobs[i].device))
            continue;
        listed++;
        if (strcmp(jobs[i].status, "concluded"))
            continue;
        concluded++;
        if (jobs[i].error && !x->failure)
            x->failure = proto_error(ERR_QEMU, NULL, "export of %s: the copy job %s failed: %s", x->name,
                                     jobs[i].device, jobs[i].error);
    }
    if (!x->failure && listed < x->n)
        x->failure = proto_error(ERR_QEMU, "see qemu.log in the VM directory", "export of %s: QEMU dropped %zu "
                                 "of the %zu copy jobs", x->name, x->n - listed, x->n);
    if (x->phase == PH_COPYING)
        publish_progress(x);
    if (x->failure && x->phase == PH_COPYING) {
        step_next(x);   /* to ST_CANCEL */
    } else if (concluded == listed || (x->failure && now_ms() > x->t_deadline)) {
        x->step = ST_DISMISS;
        step_next(x);
    } else {
        arm(x, POLL_MS);
    }
}

static void cancel_jobs(struct vm_export *x, qmp_t *q)
{
    for (size_t i = 0; i < x->n; i++) {
        const struct block_job_state *s = block_jobs_get(&x->tracked, x->disks[i].job_id);
        if (s && (!s->seen || s->listed) && (!s->status || strcmp(s->status, "concluded")) &&
            qmon_block_job_cancel(q, &x->owner, s->id, true, QMP_TIMEOUT_MS, on_reply, x) == 0)
            x->pending++;
    }
}

static void dismiss_jobs(struct vm_export *x, qmp_t *q)
{
    for (size_t i = 0; i < x->n; i++) {
        const struct block_job_state *s = block_jobs_get(&x->tracked, x->disks[i].job_id);
        if (s && s->listed && qmon_block_job_dismiss(q, &x->owner, s->id, QMP_TIMEOUT_MS, on_reply, x) == 0)
            x->pending++;
    }
    x->jobs_started = false;
}

static void del_nodes(struct vm_export *x, qmp_t *q)
{
    for (size_t i = 0; i < x->n; i++) {
        struct export_disk *d = &x->disks[i];
        if (d->node_added && qmon_blockdev_del(q, &x->owner, d->node, QMP_TIMEOUT_MS, on_reply, x) == 0)
            x->pending++;
        if (d->file_added && qmon_blockdev_del(q, &x->owner, d->file_node, QMP_TIMEOUT_MS, on_reply, x) == 0)
            x->pending++;
        d->node_added = d->file_added = false;
    }
}

/* Replies of the cleanup steps may fail (a job already gone): only the
 * first failure is told, and the cleanup goes on. */
static void step_next(struct vm_export *x)
{
    while (x->pending == 0) {
        qmp_t *q = x_mon(x);
        if (!q && x->step != ST_DONE) {
            /* QEMU is gone: its nodes and jobs went with it. */
            if (!x->failure)
                x->failure = proto_error(ERR_STATE, NULL, "export of %s: the VM stopped during the export",
                                         x->name);
            x->step = ST_DONE;
        }
        if (x->failure && !x->cleaning) {
            x->cleaning = true;
            x->step = x->jobs_started ? ST_CANCEL : ST_DEL_NODES;
            x->t_deadline = now_ms() + CANCEL_WAIT_MS;
            export_set_phase(x, PH_CANCELLING);
        }
        switch (x->step) {
        case ST_ADD_NODES:
            x->step = ST_FIND_NODES;
            add_nodes(x, q);
            break;
        case ST_FIND_NODES:
            x->step = ST_BACKUP;
            export_sent(x, qmon_query_block(q, &x->owner, QMP_TIMEOUT_MS, export_on_block, x), "query-block");
            break;
        case ST_BACKUP:
            x->step = ST_POLL;
            backup(x, q);
            break;
        case ST_POLL:
            export_sent(x, qmon_query_block_jobs(q, &x->owner, QMP_TIMEOUT_MS, export_on_jobs, x), "query-block-jobs");
            if (x->pending == 0)
                continue;
            return;   /* on_jobs decides */
        case ST_CANCEL:
            x->step = ST_POLL;
            cancel_jobs(x, q);
            break;
        case ST_DISMISS:
            x->step = ST_DEL_NODES;
            dismiss_jobs(x, q);
            break;
        case ST_DEL_NODES:
            x->step = ST_DONE;
            del_nodes(x, q);
            break;
        case ST_DONE:
            if (x->failure)
                export_end_failed(x);
            else
                export_finish(x);
            return;
        }
    }
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct vm_export *x = arg;
    if (x->live)
        step_next(x);
    else
        export_offline(x);
}

/* ---- create, begin, cancel -------------------------------------------------------------- */

/* A helper running (convert, sha256sum) is killed and DIR.partial goes
 * now; QEMU's jobs are cancelled through the steps; a stopped VM's export
 * not begun yet ends at its first step. */
static void cancel_export(struct job *job)
{
    for (struct vm_export *x = exports; x; x = x->next)
        if (x->job == job) {
            json_t *e = proto_error(ERR_CANCELLED, NULL, "export of %s cancelled; nothing was written to %s%s",
                                    x->name, x->dir, x->live ? " and the VM runs on" : "");
            if (x->op || x->hash) {
                if (!x->failure)
                    x->failure = e;
                else
                    json_decref(e);
                export_end_failed(x);
            } else if (x->live) {
                x_fail(x, e);
            } else if (!x->failure) {
                x->failure = e;
            } else {
                json_decref(e);
            }
            return;
        }
}

static const struct job_ops export_ops = {"vm.export", cancel_export};

/* --to DIR: absolute, absent, its parent an existing directory the path
 * policy allows for storage. */
static json_t *check_target(struct agent *a, const char *dir)
{
    if (!dir || dir[0] != '/')
        return proto_error(ERR_INVALID, NULL, "--to must be an absolute directory path (got \"%s\")", dir ? dir : "");
    if (path_exists(dir))
        return proto_error(ERR_EXISTS, "choose a new directory: the export creates it", "%s already exists", dir);
    char *partial = xasprintf("%s.partial", dir);
    bool stale = path_exists(partial);
    free(partial);
    if (stale)
        return proto_error(ERR_EXISTS, "another export to it is running, or one was interrupted: remove it",
                           "%s.partial exists", dir);
    char *copy = xstrdup(dir);
    struct path_policy pol;
    struct path_info pi;
    char why[1024];
    paths_policy_init(&pol, &a->settings, a->state_dir);
    int rc = paths_check_dir(&pol, DIR_STORAGE, dirname(copy), &pi, why, sizeof why);
    free(copy);
    if (rc < 0)
        return proto_error(ERR_DENIED, NULL, "export target %s: %s", dir, why);
    return NULL;
}

static json_t *check_vm(struct agent *a, struct vm *vm, const char *name)
{
    if (!vm)
        return proto_error(ERR_NOT_FOUND, "`vmove vm list` shows the VMs on this host", "no VM named \"%s\" on "
                           "host %s", name, a->name);
    struct job *busy = job_active_for_vm(a, vm->name);
    if (busy)
        return proto_error(ERR_STATE, "wait for it or cancel it", "VM %s is busy with job %lld (%s)", vm->name,
                           (long long)busy->id, busy->ops->kind);
    if (vm->migration || vm->storage_move)
        return proto_error(ERR_STATE, NULL, "VM %s has an unsettled %s record", vm->name,
                           vm->migration ? "migration" : "storage move");
    if (vm->state != VM_RUNNING && vm->state != VM_PAUSED && vm->state != VM_STOPPED)
        return proto_error(ERR_STATE, NULL, "VM %s is %s: export takes a running, paused or stopped VM", vm->name,
                           vm_state_name(vm->state));
    if (vm->cfg.n_disks == 0)
        return proto_error(ERR_INVALID, NULL, "VM %s has no disks to export", vm->name);
    return NULL;
}

static void fill_disks(struct vm_export *x, struct vm *vm)
{
    x->n = vm->cfg.n_disks;
    x->disks = xcalloc(x->n, sizeof *x->disks);
    for (size_t i = 0; i < x->n; i++) {
        struct export_disk *d = &x->disks[i];
        const struct vm_disk *vd = &vm->cfg.disks[i];
        d->id = xstrdup(vd->id);
        d->source = xstrdup(vd->path);
        d->target = xasprintf("%s/%s.qcow2", x->partial, vd->id);
        d->node = xasprintf("%s-x%lld", vd->id, (long long)x->job->id);
        d->file_node = xasprintf("%s-file-x%lld", vd->id, (long long)x->job->id);
        d->job_id = xasprintf("export-%s-%lld", vd->id, (long long)x->job->id);
    }
}

/* ---- preparing: each disk's size (and, live, its target) from qemu-img ---- */

static void prepare_next(struct vm_export *x, size_t i);

static void prepare_failed(struct vm_export *x, const char *fmt, const char *what, const char *why)
{
    char msg[2048];
    snprintf(msg, sizeof msg, fmt, what, why);
    if (!x->failure)
        x->failure = proto_error(ERR_INTERNAL, NULL, "export of %s: %s", x->name, msg);
    export_end_failed(x);
}

static void on_target_made(void *arg, const char *err)
{
    struct vm_export *x = arg;
    x->op = NULL;
    struct export_disk *d = &x->disks[x->preparing];
    if (err) {
        prepare_failed(x, "qemu-img create %s failed: %s", d->target, err);
        return;
    }
    prepare_next(x, x->preparing + 1);
}

static void on_source_size(void *arg, const struct image_info *info, const char *err)
{
    struct vm_export *x = arg;
    x->op = NULL;
    struct export_disk *d = &x->disks[x->preparing];
    if (!info) {
        char what[1024];
        snprintf(what, sizeof what, "disk %s (%s)", d->id, d->source);
        prepare_failed(x, "%s: qemu-img info failed: %s", what, err);
        return;
    }
    d->virtual_size = info->layers[0].virtual_size;
    /* Live: QEMU writes into an image created here, of the disk's size. */
    if (x->live)
        x->op = image_create_async(x->agent->base, d->target, d->virtual_size, NULL, NULL, on_target_made, x);
    else
        prepare_next(x, x->preparing + 1);
}

/* qemu-img in children the loop does not wait for, one disk after the
 * other (a cancel or shutdown kills the one running: export_end_failed);
 * then the export's steps. */
static void prepare_next(struct vm_export *x, size_t i)
{
    x->preparing = i;
    if (i == x->n) {
        arm(x, 0);
        return;
    }
    x->op = image_info_async(x->agent->base, x->disks[i].source, "qcow2", on_source_size, x);
}

struct vm_export *export_create(struct agent *a, json_t *params, json_t **err)
{
    const char *name = json_string_value(json_object_get(params, "name"));
    const char *to = json_string_value(json_object_get(params, "to"));
    struct vm *vm = name ? vm_find(a, name) : NULL;
    if ((*err = check_vm(a, vm, name ? name : "")) || (*err = check_target(a, to)))
        return NULL;
    json_t *bw = json_object_get(params, "bandwidth");
    if (bw && (!json_is_integer(bw) || json_integer_value(bw) < 0)) {
        *err = proto_error(ERR_INVALID, NULL, "bandwidth must be a whole number of bytes/s, at least 0");
        return NULL;
    }
    if (json_is_true(json_object_get(params, "memory"))) {
        *err = proto_error(ERR_INVALID, "export without --memory (a crash-consistent copy of the disks); see "
                           "docs/EXPORT-IMPORT.md", "--memory (saved memory in the export) is not supported yet");
        return NULL;
    }
    char *partial = xasprintf("%s.partial", to);
    if (mkdir(partial, 0700) < 0) {
        *err = proto_error(ERR_INTERNAL, NULL, "cannot create %s: %s", partial, strerror(errno));
        free(partial);
        return NULL;
    }
    struct vm_export *x = xcalloc(1, sizeof *x);
    x->agent = a;
    x->name = xstrdup(vm->name);
    x->dir = xstrdup(to);
    x->partial = partial;
    x->live = vm->state != VM_STOPPED;
    x->speed = json_integer_value(json_object_get(params, "bandwidth"));
    x->t_start = now_ms();
    vm_config_copy(&x->cfg, &vm->cfg);
    qmon_owner_init(&x->owner, x, x_free);
    x->job = job_create(a, &export_ops, vm->name, json_pack("{s:s, s:b}", "to", to, "live", x->live));
    fill_disks(x, vm);
    x->timer = evtimer_new(a->base, on_timer, x);
    x->next = exports;
    exports = x;
    return x;
}

struct job *export_job(const struct vm_export *x) { return x->job; }

/* From the event loop, so the client has its job id before anything ends. */
void export_begin(struct vm_export *x)
{
    export_set_phase(x, PH_PREPARING);
    log_info("%s: exporting to %s (%s)", x->name, x->dir, x->live ? "live" : "stopped VM");
    prepare_next(x, 0);
}

void export_free_all(struct agent *a)
{
    (void)a;
    while (exports) {
        struct vm_export *x = exports;
        if (!x->failure)
            x->failure = proto_error(ERR_ABORTED, NULL, "export of %s interrupted: vmoved is stopping", x->name);
        export_end_failed(x);
    }
}
