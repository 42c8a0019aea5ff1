#include "storage/storage_plan.h"

#include <errno.h>
#include <event2/event.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/proto.h"
#include "block/image.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "core/limits.h"
#include "core/paths.h"
#include "vm/compat.h"
#include "vm/vm.h"

/* Space each target filesystem must have: the allocated size of every
 * source chain that goes there (the mirror copies allocated data only). */
struct fs_need {
    dev_t dev;
    char dir[PATH_MAX];       /* a copy: the caller's string is freed before the space is compared */
    uint64_t need, avail;
};

static void problem(json_t *problems, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(json_t *problems, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_array_append_new(problems, json_string(msg));
}

/* Returns true if the VM's state alone forbids the move. */
static bool check_state(struct vm *vm, json_t *problems)
{
    bool bad = false;
    if (vm->state != VM_RUNNING && vm->state != VM_PAUSED) {
        problem(problems, "VM %s is %s: live storage migration moves the disks of a running or paused VM",
                vm->name, vm_state_name(vm->state));
        bad = true;
    }
    struct job *busy = job_active_for_vm(vm->agent, vm->name);
    if (busy) {
        problem(problems, "VM %s is busy with job %lld (%s)", vm->name, (long long)busy->id, busy->ops->kind);
        bad = true;
    }
    size_t i;
    json_t *ck;
    json_array_foreach(json_object_get(vm->cfg.checkpoints, "list"), i, ck) {
        const char *state = json_string_value(json_object_get(ck, "state"));
        if (state && strcmp(state, "ok")) {
            problem(problems, "checkpoint %s of VM %s is %s: finish it first (run the same `vmove checkpoint "
                    "delete` again)", json_string_value(json_object_get(ck, "name")), vm->name, state);
            bad = true;
        }
    }
    if (!busy && (vm->migration || vm->storage_move)) {
        problem(problems, "VM %s still has an unsettled %s record", vm->name,
                vm->migration ? "migration" : "storage move");
        bad = true;
    }
    return bad;
}

/* What storage_plan_probe learned of path (qemu-img info over the whole
 * backing chain): virtual size of the top image, allocated bytes of the
 * chain (what a flattening mirror copies). */
static int source_info(json_t *facts, const char *path, uint64_t *vsize, uint64_t *alloc, char *err, size_t errlen)
{
    json_t *f = json_object_get(facts, path);
    const char *fmt = json_string_value(json_object_get(f, "format"));
    const char *why = json_string_value(json_object_get(f, "error"));
    if (!f) {
        snprintf(err, errlen, "%s: not inspected (the VM's disks changed meanwhile); retry", path);
        return -1;
    }
    if (!fmt || strcmp(fmt, "qcow2")) {
        snprintf(err, errlen, "%s: not a readable qcow2 image (%s)", path, fmt ? fmt : why ? why : "?");
        return -1;
    }
    *vsize = (uint64_t)json_integer_value(json_object_get(f, "virtual_size"));
    *alloc = (uint64_t)json_integer_value(json_object_get(f, "allocated"));
    return 0;
}

/* ---- learning the sources, without blocking the loop ---------------------- */

struct facts_probe {
    struct event_base *base;
    json_t *paths;             /* the VM's disk paths when the probe began */
    size_t next;
    json_t *facts;
    storage_facts_fn done;
    void *arg;
};

static void probe_next(struct facts_probe *fp);

static void on_source_info(void *arg, const struct image_info *info, const char *err)
{
    struct facts_probe *fp = arg;
    const char *path = json_string_value(json_array_get(fp->paths, fp->next));
    json_t *f = info ? json_pack("{s:s, s:I, s:I}", "format", info->layers[0].format, "virtual_size",
                                 (json_int_t)info->layers[0].virtual_size, "allocated",
                                 (json_int_t)image_info_chain_actual(info))
                     : json_pack("{s:s}", "error", err ? err : "?");
    json_object_set_new(fp->facts, path, f);
    fp->next++;
    probe_next(fp);
}

static void probe_next(struct facts_probe *fp)
{
    if (fp->next < json_array_size(fp->paths)) {
        image_info_chain_async(fp->base, json_string_value(json_array_get(fp->paths, fp->next)), NULL, true,
                               on_source_info, fp);
        return;
    }
    fp->done(fp->arg, fp->facts);
    json_decref(fp->paths);
    free(fp);
}

static void on_probe_deferred(evutil_socket_t fd, short what, void *arg) { probe_next(arg); }

void storage_plan_probe(struct agent *a, const struct vm *vm, storage_facts_fn done, void *arg)
{
    struct facts_probe *fp = xcalloc(1, sizeof *fp);
    fp->base = a->base;
    fp->paths = json_array();
    fp->facts = json_object();
    fp->done = done;
    fp->arg = arg;
    for (size_t i = 0; i < vm->cfg.n_disks; i++)
        json_array_append_new(fp->paths, json_string(vm->cfg.disks[i].path));
    if (json_array_size(fp->paths))
        probe_next(fp);
    else if (event_base_once(a->base, -1, EV_TIMEOUT, on_probe_deferred, fp, &(struct timeval){0, 0}) < 0)
        abort();   /* only on OOM */
}

/* The host's path policy for storage targets (core/paths.h). */
static bool storage_dir_allowed(struct agent *a, const char *dir, const char *what, json_t *problems)
{
    struct path_policy pol;
    struct path_info pi;
    char why[1024];
    paths_policy_init(&pol, &a->settings, a->state_dir);
    if (paths_check_dir(&pol, DIR_STORAGE, dir, &pi, why, sizeof why) == 0)
        return true;
    problem(problems, "%s: target directory %s: %s", what, dir, why);
    return false;
}

/* DIR must exist, be a directory we can create files in; returns its
 * canonical form (malloc'd) or NULL after recording why. */
static char *check_dir(struct agent *agent, const char *dir, const char *id, json_t *problems)
{
    if (dir[0] != '/') {
        problem(problems, "disk %s: target directory \"%s\" is not an absolute path", id, dir);
        return NULL;
    }
    char canon[PATH_MAX];
    struct stat st;
    if (!realpath(dir, canon) || stat(canon, &st) < 0) {
        problem(problems, "disk %s: target directory %s: %s", id, dir, strerror(errno));
        return NULL;
    }
    if (!S_ISDIR(st.st_mode)) {
        problem(problems, "disk %s: target %s is not a directory", id, dir);
        return NULL;
    }
    if (access(canon, W_OK | X_OK) < 0) {
        problem(problems, "disk %s: target directory %s is not writable: %s", id, dir, strerror(errno));
        return NULL;
    }
    char label[96];
    snprintf(label, sizeof label, "disk %s", id);
    if (!storage_dir_allowed(agent, dir, label, problems))
        return NULL;
    return xstrdup(canon);
}

static void add_need(struct fs_need *fs, size_t *nfs, const char *dir, uint64_t need)
{
    struct stat st;
    struct statvfs vfs;
    if (stat(dir, &st) < 0 || statvfs(dir, &vfs) < 0)
        return;
    for (size_t i = 0; i < *nfs; i++)
        if (fs[i].dev == st.st_dev) {
            fs[i].need += need;
            return;
        }
    struct fs_need *f = &fs[(*nfs)++];
    f->dev = st.st_dev;
    snprintf(f->dir, sizeof f->dir, "%s", dir);
    f->need = need;
    f->avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
}

/* Two disks with the same file name in different directories cannot go
 * to one directory; nor may a target be another disk's current file. */
static bool target_taken(const struct storage_plan *p, const struct vm *vm, const char *target)
{
    for (size_t i = 0; i < p->n; i++)
        if (!strcmp(p->disks[i].target, target))
            return true;
    for (size_t i = 0; i < vm->cfg.n_disks; i++)
        if (!strcmp(vm->cfg.disks[i].path, target))
            return true;
    return false;
}

static void plan_copy_free(struct plan_copy *c)
{
    free(c->disk_id), free(c->source), free(c->target), free(c->backing);
}

/* The file name part of path (borrowed). */
static const char *plan_base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* ---- a VM with checkpoints: its chain is copied, not flattened ---------- */

/* The checkpoint named, or NULL. */
static json_t *plan_ck(const struct vm *vm, const char *name)
{
    size_t i;
    json_t *ck;
    json_array_foreach(json_object_get(vm->cfg.checkpoints, "list"), i, ck)
        if (name && !strcmp(json_string_value(json_object_get(ck, "name")), name))
            return ck;
    return NULL;
}

static const char *plan_layer(json_t *ck, const char *disk_id)
{
    return json_string_value(json_object_get(json_object_get(ck, "disks"), disk_id));
}

static bool plan_same_file(const char *a, const char *b)
{
    char ra[PATH_MAX], rb[PATH_MAX];
    return a && b && realpath(a, ra) && realpath(b, rb) && !strcmp(ra, rb);
}

/* Does the qcow2 header of path name below as its backing file (below NULL:
 * no backing)?  *actual gets path's allocated bytes. */
static bool plan_backed_by(const char *path, const char *below, uint64_t *actual, char *err, size_t errlen)
{
    struct image_info info;
    if (image_info(path, "qcow2", false, &info, err, errlen) < 0)
        return false;
    const char *b = info.layers[0].backing_filename;
    *actual = info.layers[0].actual_size;
    char *full = b && b[0] != '/' ? xasprintf("%.*s/%s", (int)(strrchr(path, '/') - path), path, b)
                                  : xstrdup(b ? b : "");
    bool ok = below ? plan_same_file(full, below) : true;
    if (!ok)
        snprintf(err, errlen, "%s has backing file %s, the checkpoint tree says %s", path, b ? b : "none", below);
    free(full);
    image_info_free(&info);
    return ok;
}

static bool plan_target_free(const struct storage_plan *p, const struct vm *vm, const char *target)
{
    struct stat st;
    if (lstat(target, &st) == 0 || target_taken(p, vm, target))
        return false;
    for (size_t i = 0; i < p->n_copies; i++)
        if (!strcmp(p->copies[i].target, target))
            return false;
    return true;
}

static void plan_add_copy(struct storage_plan *p, const char *disk_id, const char *src, const char *dir,
                          const char *backing, bool vmstate)
{
    p->copies = xrealloc(p->copies, (p->n_copies + 1) * sizeof *p->copies);
    p->copies[p->n_copies++] = (struct plan_copy){xstrdup(disk_id), xstrdup(src),
                                                  xasprintf("%s/%s", dir, plan_base_name(src)),
                                                  backing ? xstrdup(plan_base_name(backing)) : NULL, vmstate};
}

/* One checkpoint's layer of disk d (and, for the first disk, its memory
 * image): checked and added to the copies.  -1 after recording why. */
static int plan_ck_files(struct vm *vm, const struct vm_disk *d, const char *dir, json_t *ck,
                         struct storage_plan *p, uint64_t *need, json_t *problems)
{
    const char *name = json_string_value(json_object_get(ck, "name"));
    const char *layer = plan_layer(ck, d->id);
    const char *below = plan_layer(plan_ck(vm, json_string_value(json_object_get(ck, "parent"))), d->id);
    char err[1024];
    uint64_t actual = 0;
    char *target = layer ? xasprintf("%s/%s", dir, plan_base_name(layer)) : NULL;
    int rc = -1;
    if (!layer)
        problem(problems, "disk %s has no layer in checkpoint %s", d->id, name);
    else if (!plan_target_free(p, vm, target))
        problem(problems, "disk %s: checkpoint %s's layer cannot be copied to %s: the name is taken", d->id, name,
                target);
    else if (!plan_backed_by(layer, below, &actual, err, sizeof err))
        problem(problems, "disk %s, checkpoint %s: %s", d->id, name, err);
    else {
        plan_add_copy(p, d->id, layer, dir, below, false);
        *need += actual;
        rc = 0;
    }
    free(target);
    const char *vmstate = json_string_value(json_object_get(ck, "vmstate"));
    if (rc < 0 || !vmstate || strcmp(d->id, vm->cfg.disks[0].id))
        return rc;
    /* The memory image lives next to the first disk: it moves with it. */
    struct stat st;
    target = xasprintf("%s/%s", dir, plan_base_name(vmstate));
    if (stat(vmstate, &st) < 0) {
        problem(problems, "checkpoint %s: its memory image %s: %s", name, vmstate, strerror(errno));
        rc = -1;
    } else if (!plan_target_free(p, vm, target)) {
        problem(problems, "checkpoint %s: its memory image cannot be copied to %s: the name is taken", name, target);
        rc = -1;
    } else {
        plan_add_copy(p, d->id, vmstate, dir, NULL, true);
        *need += (uint64_t)st.st_blocks * 512;
    }
    free(target);
    return rc;
}

/* Disk d of a VM with checkpoints: every checkpoint's frozen layer, parents
 * first, goes to dir; the active layer is then mirrored (sync=top) onto a
 * target backed by the copy of the current checkpoint's layer, *backing.
 * Each header is checked against the tree first: a copy must reproduce the
 * chain QEMU reads.  -1 after recording why. */
static int plan_chain(struct vm *vm, const struct vm_disk *d, const char *dir, struct storage_plan *p,
                      char **backing, uint64_t *need, json_t *problems)
{
    json_t *list = json_object_get(vm->cfg.checkpoints, "list");
    size_t n = json_array_size(list), done = 0, first = p->n_copies;
    bool *emitted = xcalloc(n + 1, sizeof *emitted);
    int rc = 0;
    /* Parents before children, whatever the list's order. */
    for (bool progress = true; rc == 0 && done < n && progress;) {
        progress = false;
        for (size_t i = 0; rc == 0 && i < n; i++) {
            json_t *ck = json_array_get(list, i);
            const char *parent = json_string_value(json_object_get(ck, "parent"));
            bool parent_done = !parent;
            for (size_t k = 0; parent && k < n; k++)
                if (emitted[k] && !strcmp(json_string_value(json_object_get(json_array_get(list, k), "name")), parent))
                    parent_done = true;
            if (emitted[i] || !parent_done)
                continue;
            rc = plan_ck_files(vm, d, dir, ck, p, need, problems);
            emitted[i] = progress = true;
            done++;
        }
    }
    free(emitted);
    const char *cur = plan_layer(plan_ck(vm, json_string_value(json_object_get(vm->cfg.checkpoints, "current"))), d->id);
    char err[1024];
    uint64_t actual = 0;
    if (rc == 0 && done < n) {
        problem(problems, "VM %s: the checkpoint tree has entries without a reachable parent", vm->name);
        rc = -1;
    } else if (rc == 0 && !cur) {
        problem(problems, "disk %s: the checkpoint tree names no current layer", d->id);
        rc = -1;
    } else if (rc == 0 && !plan_backed_by(d->path, cur, &actual, err, sizeof err)) {
        problem(problems, "disk %s: %s", d->id, err);
        rc = -1;
    }
    if (rc < 0) {   /* this disk's copies go: nothing is planned for it */
        while (p->n_copies > first)
            plan_copy_free(&p->copies[--p->n_copies]);
        return -1;
    }
    *need += actual;
    *backing = xstrdup(plan_base_name(cur));
    return 0;
}

/* One disk: where it goes, and whether it can go there. */
static void plan_one(struct vm *vm, const struct vm_disk *d, const char *dir, json_t *facts, struct storage_plan *p,
                     struct fs_need *fs, size_t *nfs, json_t *problems)
{
    char *canon = check_dir(vm->agent, dir, d->id, problems);
    if (!canon)
        return;
    char *src = xstrdup(d->path);
    char *target = xasprintf("%s/%s", canon, basename(src));
    free(src);
    struct stat st;
    char err[1024];
    uint64_t vsize = 0, alloc = 0;
    if (!strcmp(target, d->path))
        problem(problems, "disk %s is already in %s", d->id, canon);
    else if (lstat(target, &st) == 0)
        problem(problems, "disk %s: target %s already exists", d->id, target);
    else if (target_taken(p, vm, target))
        problem(problems, "disk %s: target %s is also the target of another disk", d->id, target);
    else if (source_info(facts, d->path, &vsize, &alloc, err, sizeof err) < 0)
        problem(problems, "disk %s: %s", d->id, err);
    else if (vm_config_checkpoint_count(&vm->cfg) == 0) {
        p->disks[p->n++] = (struct plan_disk){xstrdup(d->id), xstrdup(d->path), target, vsize, NULL};
        add_need(fs, nfs, canon, alloc);
        target = NULL;
    } else {
        char *backing = NULL;
        uint64_t need = 0;
        if (plan_chain(vm, d, canon, p, &backing, &need, problems) == 0) {
            p->disks[p->n++] = (struct plan_disk){xstrdup(d->id), xstrdup(d->path), target, vsize, backing};
            add_need(fs, nfs, canon, need);
            target = NULL;
        }
    }
    free(target);
    free(canon);
}

/* Which disks, and the directory of each. */
static void plan_each_disk(struct vm *vm, json_t *params, json_t *facts, struct storage_plan *p, json_t *problems)
{
    const char *to = json_string_value(json_object_get(params, "to"));
    json_t *sel = json_object_get(params, "disks");
    if (json_is_null(sel))
        sel = NULL;
    const struct vm_config *c = &vm->cfg;
    struct fs_need *fs = xcalloc(c->n_disks + 1, sizeof *fs);
    size_t nfs = 0;
    p->disks = xcalloc(c->n_disks + 1, sizeof *p->disks);
    const char *key;
    json_t *v;
    json_object_foreach(sel, key, v) {
        if (!vm_config_find_disk(c, key))
            problem(problems, "VM %s has no disk \"%s\"", vm->name, key);
        else if (!json_is_string(v) && !to)
            problem(problems, "disk %s: no target directory (give --to DIR or --disk %s=DIR)", key, key);
    }
    if (!sel && !to)
        problem(problems, "no target directory: give --to DIR");
    if (c->n_disks == 0)
        problem(problems, "VM %s has no disks", vm->name);
    for (size_t i = 0; i < c->n_disks; i++) {
        json_t *choice = json_object_get(sel, c->disks[i].id);
        if (sel && !choice)
            continue;
        const char *dir = json_is_string(choice) ? json_string_value(choice) : to;
        if (dir)
            plan_one(vm, &c->disks[i], dir, facts, p, fs, &nfs, problems);
    }
    char a[32], b[32];
    for (size_t i = 0; i < nfs; i++)
        if (fs[i].need > fs[i].avail) {
            format_size(fs[i].need, a, sizeof a);
            format_size(fs[i].avail, b, sizeof b);
            problem(problems, "%s has %s free, the disks moving there need about %s", fs[i].dir, b, a);
        }
    free(fs);
}

/* --config-to DIR: the VM's own directory (vm.json, runtime state, logs and
 * QEMU's sockets) moves to DIR/NAME by rename(), and the inventory entry
 * becomes a symlink to it.  QEMU keeps running: its listening sockets and open
 * logs move with the directory.  A rename needs the same filesystem. */
static void check_config_to(struct vm *vm, const char *dir, json_t *problems)
{
    struct stat sd, sv;
    if (!dir || dir[0] != '/' || stat(dir, &sd) < 0 || !S_ISDIR(sd.st_mode) || access(dir, W_OK | X_OK) < 0) {
        problem(problems, "--config-to %s: not a writable absolute directory", dir ? dir : "?");
        return;
    }
    storage_dir_allowed(vm->agent, dir, "--config-to", problems);
    char *target = xasprintf("%s/%s", dir, vm->name);
    if (path_exists(target))
        problem(problems, "--config-to: %s already exists", target);
    free(target);
    if (stat(vm->dir, &sv) == 0 && sv.st_dev != sd.st_dev)
        problem(problems, "--config-to %s is on another filesystem than the VM's files (%s): the running VM's "
                          "directory can only be renamed within one filesystem", dir, vm->dir);
}

json_t *storage_plan_make(struct vm *vm, json_t *params, json_t *facts, struct storage_plan *out)
{
    memset(out, 0, sizeof *out);
    json_t *problems = json_array();
    bool state_bad = check_state(vm, problems);
    json_t *cto = json_object_get(params, "config_to");
    if (cto && !json_is_null(cto))
        check_config_to(vm, json_string_value(cto), problems);
    json_t *sel = json_object_get(params, "disks");
    if (sel && !json_is_null(sel) && !json_is_object(sel))
        problem(problems, "parameter \"disks\" must be an object {ID: DIR|null}");
    else
        plan_each_disk(vm, params, facts, out, problems);
    if (json_array_size(problems) == 0) {
        json_decref(problems);
        return NULL;
    }
    storage_plan_free(out);
    /* One readable line for people; the array for scripts. */
    char text[4096] = "";
    size_t i, len = 0;
    json_t *pr;
    json_array_foreach(problems, i, pr) if (len < sizeof text)
        len += (size_t)snprintf(text + len, sizeof text - len, "%s%s", i ? "; " : "", json_string_value(pr));
    json_t *err = proto_error(state_bad ? ERR_STATE : ERR_INVALID, "nothing was changed",
                              "cannot move the storage of VM %s: %s", vm->name, text);
    json_object_set_new(err, "problems", problems);
    return err;
}

void storage_plan_free(struct storage_plan *p)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->disks[i].id);
        free(p->disks[i].source);
        free(p->disks[i].target);
        free(p->disks[i].backing);
    }
    free(p->disks);
    for (size_t i = 0; i < p->n_copies; i++)
        plan_copy_free(&p->copies[i]);
    free(p->copies);
    memset(p, 0, sizeof *p);
}

/* A problem's fix, when its words carry one command (the path policy's
 * "`vmove host set --allow-dir KIND=DIR`", core/paths.c). */
static char *fix_in(const char *text)
{
    const char *start = strstr(text, "`vmove ");
    const char *end = start ? strchr(start + 1, '`') : NULL;
    return end ? xasprintf("%.*s", (int)(end - start - 1), start + 1) : NULL;
}

json_t *storage_plan_check(struct vm *vm, json_t *params, json_t *facts)
{
    struct agent *a = vm->agent;
    json_t *items = json_array();
    struct storage_plan plan;
    json_t *err = storage_plan_make(vm, params, facts, &plan);
    size_t i;
    json_t *pr;
    json_array_foreach(json_object_get(err, "problems"), i, pr) {
        const char *text = json_string_value(pr);
        char *fix = fix_in(text);
        bool space = strstr(text, " free, the disks moving there need") != NULL;
        compat_preflight_add(items, space ? "storage.space" : "storage", COMPAT_PROBLEM, a->name, fix,
                             fix ? NULL : space ? "free space there, or pick another directory" : NULL, "%s", text);
        free(fix);
    }
    for (i = 0; !err && i < plan.n; i++) {
        char sz[32];
        format_size(plan.disks[i].virtual_size, sz, sizeof sz);
        compat_preflight_add(items, "storage", COMPAT_OK, a->name, NULL, NULL, "disk %s (%s virtual) goes to %s",
                             plan.disks[i].id, sz, plan.disks[i].target);
    }
    for (i = 0; !err && i < plan.n_copies; i++)
        compat_preflight_add(items, "storage", COMPAT_OK, a->name, NULL, NULL, "%s %s is copied to %s first",
                             plan.copies[i].vmstate ? "memory image" : "checkpoint layer", plan.copies[i].source,
                             plan.copies[i].target);
    if (!err)
        compat_preflight_add(items, "storage.space", COMPAT_OK, a->name, NULL, NULL, "every target directory is "
                             "allowed, writable and has the space the disks need");
    int used = limits_in_use(a, SLOT_STORAGE), max = limits_max(a, SLOT_STORAGE);
    if (used >= max)
        compat_preflight_add(items, "limits", COMPAT_WARNING, a->name, NULL, "it starts when a slot frees", "%s runs "
                             "%d of its %d storage migrations: the move will wait in its queue", a->name, used, max);
    storage_plan_free(&plan);
    json_decref(err);
    return items;
}
