/* The checkpoint chain of a storage move (see storage/storage_chain.h).
 *
 * A layer is copied with qemu-img convert -B (block/image.h
 * image_copy_layer_async) rather than a byte copy plus rebase -u: the copy
 * is read through the qcow2 driver (a damaged layer fails here, not in the
 * guest), comes out compact, and its backing name is exactly the relative
 * one given, however the source's header spells it; the chain's root is
 * written standalone, so the new directory holds the whole chain.  A
 * memory image is a plain file: cp. */
#include "storage/storage_chain.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/image.h"
#include "common/log.h"
#include "common/spawn.h"
#include "common/util.h"

#define CP_TIMEOUT_MS (10 * 60 * 1000)

struct chain_file {
    char *disk_id, *source, *target, *backing;
    bool vmstate;
    bool created;                    /* we claimed the target (O_EXCL) */
};

struct chain_copy {
    struct event_base *base;
    struct chain_file *files;
    size_t n, next;
    const struct chain_copy_ops *ops;
    void *arg;
    struct image_op *op;             /* the layer copy in flight */
    struct spawn_async *cp;          /* the memory image copy in flight */
};

static char *chain_dup_or_null(const char *s) { return s ? xstrdup(s) : NULL; }

struct chain_copy *chain_copy_new(struct event_base *base, const struct plan_copy *copies, size_t n,
                                  const struct chain_copy_ops *ops, void *arg)
{
    struct chain_copy *cc = xcalloc(1, sizeof *cc);
    cc->base = base;
    cc->ops = ops;
    cc->arg = arg;
    cc->n = n;
    cc->files = xcalloc(n ? n : 1, sizeof *cc->files);
    for (size_t i = 0; i < n; i++)
        cc->files[i] = (struct chain_file){xstrdup(copies[i].disk_id), xstrdup(copies[i].source),
                                           xstrdup(copies[i].target), chain_dup_or_null(copies[i].backing),
                                           copies[i].vmstate, false};
    return cc;
}

struct chain_copy *chain_copy_restore(struct event_base *base, json_t *rec)
{
    struct chain_copy *cc = xcalloc(1, sizeof *cc);
    cc->base = base;
    cc->n = json_array_size(rec);
    cc->next = cc->n;
    cc->files = xcalloc(cc->n ? cc->n : 1, sizeof *cc->files);
    size_t i;
    json_t *j;
    json_array_foreach(rec, i, j) {
        const char *d = json_string_value(json_object_get(j, "disk"));
        const char *s = json_string_value(json_object_get(j, "source"));
        const char *t = json_string_value(json_object_get(j, "target"));
        cc->files[i] = (struct chain_file){xstrdup(d ? d : ""), xstrdup(s ? s : ""), xstrdup(t ? t : ""), NULL,
                                           json_is_true(json_object_get(j, "vmstate")),
                                           json_is_true(json_object_get(j, "created"))};
    }
    return cc;
}

void chain_copy_stop(struct chain_copy *cc)
{
    if (!cc)
        return;
    image_op_cancel(cc->op);
    cc->op = NULL;
    if (cc->cp)
        spawn_async_cancel(cc->cp);
    cc->cp = NULL;
    cc->ops = NULL;   /* nothing is reported any more */
}

void chain_copy_free(struct chain_copy *cc)
{
    if (!cc)
        return;
    chain_copy_stop(cc);
    for (size_t i = 0; i < cc->n; i++) {
        struct chain_file *f = &cc->files[i];
        free(f->disk_id), free(f->source), free(f->target), free(f->backing);
    }
    free(cc->files);
    free(cc);
}

size_t chain_copy_count(const struct chain_copy *cc) { return cc ? cc->n : 0; }

bool chain_copy_running(const struct chain_copy *cc) { return cc && (cc->op || cc->cp); }

json_t *chain_copy_record(const struct chain_copy *cc)
{
    json_t *a = json_array();
    for (size_t i = 0; cc && i < cc->n; i++) {
        const struct chain_file *f = &cc->files[i];
        json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:b, s:b}", "disk", f->disk_id, "source", f->source,
                                           "target", f->target, "vmstate", f->vmstate, "created", f->created));
    }
    return a;
}

static void chain_copy_next(struct chain_copy *cc);

static void chain_finish(struct chain_copy *cc, const char *err)
{
    const struct chain_copy_ops *ops = cc->ops;
    if (ops)
        ops->on_done(cc->arg, err);
}

static void chain_on_layer_copied(void *arg, const char *err)
{
    struct chain_copy *cc = arg;
    cc->op = NULL;
    struct chain_file *f = &cc->files[cc->next];
    if (err) {
        char *msg = xasprintf("copying %s to %s failed: %s", f->source, f->target, err);
        chain_finish(cc, msg);
        free(msg);
        return;
    }
    cc->next++;
    chain_copy_next(cc);
}

static void chain_on_file_copied(void *arg, int rc, const char *out)
{
    struct chain_copy *cc = arg;
    cc->cp = NULL;
    chain_on_layer_copied(cc, rc == 0 ? NULL : out && out[0] ? out : "cp failed");
}

/* O_EXCL first: the name is ours before any helper writes it. */
static int chain_claim(struct chain_file *f, char *err, size_t errlen)
{
    int fd = open(f->target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", f->target, strerror(errno));
        return -1;
    }
    close(fd);
    f->created = true;
    return 0;
}

static void chain_copy_next(struct chain_copy *cc)
{
    if (!cc->ops)
        return;
    if (cc->next == cc->n) {
        chain_finish(cc, NULL);
        return;
    }
    struct chain_file *f = &cc->files[cc->next];
    char err[1024];
    int rc = chain_claim(f, err, sizeof err);
    cc->ops->on_state(cc->arg);
    if (cc->ops->on_progress)
        cc->ops->on_progress(cc->arg, cc->next, cc->n, f->source);
    if (rc < 0) {
        cc->cp = spawn_async_fail(cc->base, err, chain_on_file_copied, cc);
        return;
    }
    log_info("copying %s to %s", f->source, f->target);
    if (f->vmstate) {
        char *argv[] = {"cp", "--sparse=always", "--", f->source, f->target, NULL};
        cc->cp = spawn_async(cc->base, argv, CP_TIMEOUT_MS, chain_on_file_copied, cc);
    } else {
        cc->op = image_copy_layer_async(cc->base, f->source, f->target, f->backing, chain_on_layer_copied, cc);
    }
}

void chain_copy_start(struct chain_copy *cc)
{
    cc->next = 0;
    chain_copy_next(cc);
}

void chain_copy_retarget(const struct chain_copy *cc, const char *disk_id, json_t *tree)
{
    size_t i;
    json_t *ck;
    json_array_foreach(json_object_get(tree, "list"), i, ck) {
        json_t *disks = json_object_get(ck, "disks");
        /* Read afresh for each file: a replaced value frees the old string. */
        for (size_t k = 0; cc && k < cc->n; k++) {
            const struct chain_file *f = &cc->files[k];
            json_t *holder = f->vmstate ? ck : disks;
            const char *key = f->vmstate ? "vmstate" : disk_id;
            const char *now = json_string_value(json_object_get(holder, key));
            if (!strcmp(f->disk_id, disk_id) && now && !strcmp(now, f->source))
                json_object_set_new(holder, key, json_string(f->target));
        }
    }
}

static size_t chain_unlink_each(struct chain_file *files, size_t n, const char *disk_id, bool targets,
                          void (*note)(void *arg, const char *msg), void *arg)
{
    size_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        struct chain_file *f = &files[i];
        if ((disk_id && strcmp(f->disk_id, disk_id)) || (targets && !f->created))
            continue;
        const char *path = targets ? f->target : f->source;
        if (unlink(path) < 0 && errno != ENOENT) {
            char *msg = xasprintf("could not delete %s: %s", path, strerror(errno));
            log_warn("%s", msg);
            if (note)
                note(arg, msg);
            free(msg);
            failed++;
        } else if (targets) {
            f->created = false;
        }
    }
    return failed;
}

size_t chain_copy_remove(struct chain_copy *cc, const char *disk_id, void (*note)(void *arg, const char *msg),
                         void *arg)
{
    if (!cc)
        return 0;
    return chain_unlink_each(cc->files, cc->n, disk_id, true, note, arg);
}

size_t chain_copy_unlink_sources(const struct chain_copy *cc, const char *disk_id,
                                 void (*note)(void *arg, const char *msg), void *arg)
{
    if (!cc)
        return 0;
    return chain_unlink_each(cc->files, cc->n, disk_id, false, note, arg);
}
