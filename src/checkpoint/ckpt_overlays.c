/* The new layers of a checkpoint create or apply (see ckpt_internal.h
 * ck_make_overlays): per disk, qemu-img info of the backing file (its size),
 * a file claimed with O_EXCL, then qemu-img create.  Every qemu-img runs in
 * a child the loop does not wait for: the layers may sit on slow shared
 * storage, and the daemon answers others meanwhile. */
#include "checkpoint/ckpt_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/image.h"
#include "common/util.h"
#include "core/agent.h"
#include "vm/vm.h"

struct ck_overlays {
    struct event_base *base;
    size_t n, next;
    char **ids, **actives, **backings;   /* copied: the VM may change meanwhile */
    bool unsafe;
    char *layer;                         /* the file being made for disks[next] */
    json_t *made;                        /* {id: path} so far */
    struct image_op *op;
    ck_overlays_fn done;
    void *arg;
};

/* A new layer file next to the disk's active one: DIR/ID.ckN.qcow2,
 * claimed with O_EXCL so that nothing else's file is ever overwritten. */
static char *claim_layer(const char *active, const char *id, char *err, size_t errlen)
{
    char *dir = xstrdup(active);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    for (int n = 1; n < 100000; n++) {
        char *p = xasprintf("%s/%s.ck%d.qcow2", dir, id, n);
        int fd = open(p, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
        if (fd >= 0) {
            close(fd);
            free(dir);
            return p;
        }
        int e = errno;
        free(p);
        if (e != EEXIST) {
            snprintf(err, errlen, "cannot create a layer in %s: %s", dir, strerror(e));
            free(dir);
            return NULL;
        }
    }
    snprintf(err, errlen, "no free layer name in %s", dir);
    free(dir);
    return NULL;
}

static void overlays_free(struct ck_overlays *o)
{
    for (size_t i = 0; i < o->n; i++)
        free(o->ids[i]), free(o->actives[i]), free(o->backings[i]);
    free(o->ids), free(o->actives), free(o->backings);
    free(o->layer);
    json_decref(o->made);
    free(o);
}

/* Nothing left behind: the layer being made and every one made so far. */
static void remove_made(struct ck_overlays *o)
{
    if (o->layer)
        unlink(o->layer);
    const char *k;
    json_t *v;
    json_object_foreach(o->made, k, v) unlink(json_string_value(v));
}

static void overlays_failed(struct ck_overlays *o, const char *why)
{
    char err[1536];
    snprintf(err, sizeof err, "disk %s: cannot create an overlay on %s: %s", o->ids[o->next],
             o->backings[o->next] ? o->backings[o->next] : "?", why);
    remove_made(o);
    o->done(o->arg, NULL, err);
    overlays_free(o);
}

static void overlay_next(struct ck_overlays *o);

static void on_layer_created(void *arg, const char *err)
{
    struct ck_overlays *o = arg;
    o->op = NULL;
    if (err) {
        overlays_failed(o, err);
        return;
    }
    json_object_set_new(o->made, o->ids[o->next], json_string(o->layer));
    free(o->layer);
    o->layer = NULL;
    o->next++;
    overlay_next(o);
}

static void on_backing_info(void *arg, const struct image_info *info, const char *err)
{
    struct ck_overlays *o = arg;
    o->op = NULL;
    if (!info) {
        overlays_failed(o, err);
        return;
    }
    uint64_t size = info->layers[0].virtual_size;
    char why[512];
    const char *backing = o->backings[o->next];
    o->layer = claim_layer(o->actives[o->next], o->ids[o->next], why, sizeof why);
    if (!o->layer) {
        overlays_failed(o, why);
        return;
    }
    /* -u: a running QEMU holds the backing file's lock, so the size is
     * given; offline qemu-img opens the backing file and takes its own. */
    o->op = o->unsafe ? image_create_overlay_async(o->base, o->layer, size, ck_base_name(backing), "qcow2",
                                                   on_layer_created, o)
                      : image_create_async(o->base, o->layer, 0, ck_base_name(backing), "qcow2", on_layer_created, o);
}

static void overlay_next(struct ck_overlays *o)
{
    if (o->next == o->n) {
        json_t *made = o->made;
        o->made = NULL;
        o->done(o->arg, made, NULL);
        overlays_free(o);
        return;
    }
    const char *b = o->backings[o->next];
    o->op = image_info_async(o->base, b ? b : "", "qcow2", on_backing_info, o);   /* "": qemu-img says why */
}

static void overlay_next_cb(void *arg) { overlay_next(arg); }

struct ck_overlays *ck_make_overlays(struct agent *a, const struct vm *vm, json_t *backing_of, bool unsafe,
                                     ck_overlays_fn done, void *arg)
{
    struct ck_overlays *o = xcalloc(1, sizeof *o);
    o->base = a->base;
    o->n = vm->cfg.n_disks;
    o->ids = xcalloc(o->n ? o->n : 1, sizeof *o->ids);
    o->actives = xcalloc(o->n ? o->n : 1, sizeof *o->actives);
    o->backings = xcalloc(o->n ? o->n : 1, sizeof *o->backings);
    for (size_t i = 0; i < o->n; i++) {
        const struct vm_disk *d = &vm->cfg.disks[i];
        const char *b = json_string_value(json_object_get(backing_of, d->id));
        o->ids[i] = xstrdup(d->id);
        o->actives[i] = xstrdup(d->path);
        o->backings[i] = b ? xstrdup(b) : NULL;
    }
    o->unsafe = unsafe;
    o->made = json_object();
    o->done = done;
    o->arg = arg;
    /* Every step answers from the loop: done never runs before this returns. */
    if (o->n)
        overlay_next(o);
    else
        ck_defer(a, overlay_next_cb, o);
    return o;
}

void ck_overlays_cancel(struct ck_overlays *o)
{
    if (!o)
        return;
    image_op_cancel(o->op);
    remove_made(o);
    overlays_free(o);
}
