/* Memory and disk specs of vm.create and vm.set (vm_plan.h). */
#include "api/vm_plan.h"

#include <errno.h>
#include <fcntl.h>
#include <event2/event.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/image.h"
#include "common/units.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/paths.h"
#include "vm/vm.h"

static int check_qcow2(const char *path, json_t *formats, char *err, size_t errlen)
{
    if (access(path, R_OK | W_OK) < 0) {
        snprintf(err, errlen, "disk %s: %s", path, strerror(errno));
        return -1;
    }
    const char *fmt = json_string_value(json_object_get(json_object_get(formats, path), "format"));
    if (!fmt || strcmp(fmt, "qcow2") != 0) {
        snprintf(err, errlen, "disk %s: not a qcow2 image (%s); convert it with qemu-img convert -O qcow2",
                 path, fmt ? fmt : "qemu-img cannot read it");
        return -1;
    }
    return 0;
}

/* ---- learning images without blocking the loop -------------------------- */

struct plan_probe {
    struct event_base *base;
    json_t *paths;
    size_t next;
    char *format;
    json_t *facts;
    vm_plan_facts_fn done;
    void *arg;
};

static void plan_probe_next(struct plan_probe *pp);

static void on_plan_info(void *arg, const struct image_info *info, const char *err)
{
    struct plan_probe *pp = arg;
    const struct image_layer *l = info ? &info->layers[0] : NULL;
    json_t *f = l ? json_pack("{s:s, s:I, s:s*}", "format", l->format, "virtual_size", (json_int_t)l->virtual_size,
                              "backing", l->backing_filename)
                  : json_pack("{s:s}", "error", err ? err : "?");
    json_object_set_new(pp->facts, json_string_value(json_array_get(pp->paths, pp->next)), f);
    pp->next++;
    plan_probe_next(pp);
}

static void plan_probe_next(struct plan_probe *pp)
{
    if (pp->next < json_array_size(pp->paths)) {
        image_info_async(pp->base, json_string_value(json_array_get(pp->paths, pp->next)), pp->format, on_plan_info,
                         pp);
        return;
    }
    pp->done(pp->arg, pp->facts);
    json_decref(pp->paths);
    free(pp->format);
    free(pp);
}

static void on_plan_deferred(evutil_socket_t fd, short what, void *arg) { plan_probe_next(arg); }

void vm_plan_probe(struct agent *a, json_t *paths, const char *format, vm_plan_facts_fn done, void *arg)
{
    struct plan_probe *pp = xcalloc(1, sizeof *pp);
    pp->base = a->base;
    pp->paths = paths;
    pp->format = format ? xstrdup(format) : NULL;
    pp->facts = json_object();
    pp->done = done;
    pp->arg = arg;
    if (json_array_size(paths))
        plan_probe_next(pp);
    else if (event_base_once(a->base, -1, EV_TIMEOUT, on_plan_deferred, pp, &(struct timeval){0, 0}) < 0)
        abort();   /* only on OOM */
}

json_t *vm_plan_attached_paths(struct agent *a, json_t *specs)
{
    json_t *paths = json_array();
    struct path_policy pol;
    paths_policy_init(&pol, &a->settings, a->state_dir);
    size_t i;
    json_t *d;
    json_array_foreach(specs, i, d) {
        const char *spec = json_string_value(d);
        struct path_info pi;
        char why[1024];
        /* A path the policy refuses is never opened: the plan says why. */
        if (spec && spec[0] == '/' && paths_check_file(&pol, DIR_IMAGES, spec, &pi, why, sizeof why) == 0 && access(pi.canonical, R_OK | W_OK) == 0)
            json_array_append_new(paths, json_string(pi.canonical));
    }
    return paths;
}

static bool planned_already(const struct vm_config *taken, const char *path)
{
    for (size_t i = 0; taken && i < taken->n_disks; i++)
        if (taken->disks[i].path && (!strcmp(taken->disks[i].path, path) || paths_same_file(taken->disks[i].path, path)))
            return true;
    return false;
}

/* An existing image attached by path: inside the images policy, a regular
 * file (checked before qemu-img opens it: a FIFO would hang it), and not
 * any other VM's disk under another spelling (compared by inode). */
static int plan_attached(struct agent *a, const char *spec, const struct vm_config *taken, json_t *formats,
                         struct vm_plan_disk *out, char *err, size_t errlen)
{
    struct path_policy pol;
    struct path_info pi;
    char why[1024];
    paths_policy_init(&pol, &a->settings, a->state_dir);
    if (paths_check_file(&pol, DIR_IMAGES, spec, &pi, why, sizeof why) < 0) {
        snprintf(err, errlen, "disk %s: %s", spec, why);
        return -1;
    }
    struct vm *owner = vm_find_by_disk_file(a, pi.canonical);
    if (owner) {
        snprintf(err, errlen, "disk %s is already used by VM %s", spec, owner->name);
        return -1;
    }
    if (planned_already(taken, pi.canonical)) {
        snprintf(err, errlen, "disk %s is given twice", spec);
        return -1;
    }
    if (check_qcow2(pi.canonical, formats, err, errlen) < 0)
        return -1;
    out->d->path = xstrdup(pi.canonical);
    return 0;
}

/* PATH,size=SIZE: a new file in an allowed images directory. */
static int plan_new_at(struct agent *a, const char *path, uint64_t size, const struct vm_config *taken,
                       struct vm_plan_disk *out, char *err, size_t errlen)
{
    char *dcopy = xstrdup(path), *bcopy = xstrdup(path);
    const char *dir = dirname(dcopy), *base = basename(bcopy);
    struct path_policy pol;
    struct path_info pi;
    char why[1024];
    struct stat st;
    int rc = -1;
    paths_policy_init(&pol, &a->settings, a->state_dir);
    if (!strcmp(base, ".") || !strcmp(base, "..") || !strcmp(base, "/") || path[strlen(path) - 1] == '/')
        snprintf(err, errlen, "disk %s: name a file, not a directory", path);
    else if (paths_check_dir(&pol, DIR_IMAGES, dir, &pi, why, sizeof why) < 0)
        snprintf(err, errlen, "disk %s: %s", path, why);
    else {
        char *full = xasprintf("%s/%s", pi.canonical, base);
        if (lstat(full, &st) == 0)
            snprintf(err, errlen, "disk %s already exists: give it without size= to use it as is, or another path",
                     path);
        else if (planned_already(taken, full))
            snprintf(err, errlen, "disk %s is given twice", path);
        else {
            out->d->path = full;
            out->new_size = size;
            full = NULL;
            rc = 0;
        }
        free(full);
    }
    free(dcopy);
    free(bcopy);
    return rc;
}

static int plan_size(const char *text, uint64_t *size, char *err, size_t errlen)
{
    const char *why;
    if (units_parse(text, UNIT_DISK, size, &why) < 0) {
        snprintf(err, errlen, "disk size \"%s\": %s", text, why);
        return -1;
    }
    if (*size < (1ULL << 20)) {
        snprintf(err, errlen, "disk size %s is too small (minimum 1M)", text);
        return -1;
    }
    return 0;
}

int vm_plan_disk(struct agent *a, const char *spec, const char *vm_dir, const struct vm_config *taken,
                 json_t *formats, struct vm_plan_disk *out, char *err, size_t errlen)
{
    out->new_size = 0;
    if (spec[0] != '/') {
        if (strchr(spec, '/') || strchr(spec, ',')) {
            snprintf(err, errlen, "disk \"%s\": give a size such as 10G, an absolute path to a qcow2 image, or "
                                  "PATH,size=SIZE for a new one", spec);
            return -1;
        }
        if (plan_size(spec, &out->new_size, err, errlen) < 0)
            return -1;
        /* A detached disk's file stays: the new one takes a name beside it. */
        struct stat st;
        char *cand = xasprintf("%s/%s.qcow2", vm_dir, out->d->id);
        for (int n = 1; lstat(cand, &st) == 0 || planned_already(taken, cand); n++) {
            free(cand);
            if (n == 100) {
                snprintf(err, errlen, "too many old disk files named %s-N.qcow2 in %s: remove some", out->d->id, vm_dir);
                return -1;
            }
            cand = xasprintf("%s/%s-%d.qcow2", vm_dir, out->d->id, n);
        }
        out->d->path = cand;
        return 0;
    }
    const char *comma = strchr(spec, ',');
    if (!comma)
        return plan_attached(a, spec, taken, formats, out, err, errlen);
    if (strncmp(comma, ",size=", 6) != 0) {
        snprintf(err, errlen, "disk \"%s\": the only option after the path is size=SIZE (e.g. %.*s,size=8G)", spec,
                 (int)(comma - spec), spec);
        return -1;
    }
    uint64_t size;
    char *path = xstrndup(spec, (size_t)(comma - spec));
    int rc = plan_size(comma + 6, &size, err, errlen) < 0 ? -1 : plan_new_at(a, path, size, taken, out, err, errlen);
    free(path);
    return rc;
}

int vm_plan_memory(json_t *mem, uint64_t *mib, char *err, size_t errlen)
{
    uint64_t bytes;
    const char *why = "expected a size such as 512M or a number of MiB";
    if (json_is_integer(mem) && json_integer_value(mem) > 0)
        bytes = (uint64_t)json_integer_value(mem) << 20;
    else if (!json_is_string(mem) || units_parse(json_string_value(mem), UNIT_MEMORY, &bytes, &why) < 0) {
        snprintf(err, errlen, "memory \"%s\": %s", json_is_string(mem) ? json_string_value(mem) : "?", why);
        return -1;
    } else if (bytes % (1ULL << 20)) {
        snprintf(err, errlen, "memory must be a whole number of MiB");
        return -1;
    }
    *mib = bytes >> 20;
    return 0;
}

struct plan_make {
    struct event_base *base;
    struct vm_plan_disk *plan;
    size_t n, next;
    vm_plan_made_fn done;
    void *arg;
};

static void make_next(struct plan_make *m);

static void on_made(void *arg, const char *err)
{
    struct plan_make *m = arg;
    if (err) {
        char msg[1024];
        snprintf(msg, sizeof msg, "qemu-img create %s failed: %s", m->plan[m->next].d->path, err);
        vm_plan_unmake_disks(m->plan, m->next + 1);   /* this one too: claimed by us */
        m->done(m->arg, msg);
        free(m);
        return;
    }
    m->next++;
    make_next(m);
}

static void make_next(struct plan_make *m)
{
    while (m->next < m->n && !m->plan[m->next].new_size)
        m->next++;
    if (m->next == m->n) {
        m->done(m->arg, NULL);
        free(m);
        return;
    }
    /* Claimed first: a file that appeared since the plan (another request
     * planning the same name meanwhile) is not ours to format or remove. */
    const char *path = m->plan[m->next].d->path;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        char msg[1024];
        snprintf(msg, sizeof msg, "cannot create %s: %s", path, strerror(errno));
        vm_plan_unmake_disks(m->plan, m->next);
        m->done(m->arg, msg);
        free(m);
        return;
    }
    close(fd);
    image_create_async(m->base, path, m->plan[m->next].new_size, NULL, NULL, on_made, m);
}

static void on_make_deferred(evutil_socket_t fd, short what, void *arg) { make_next(arg); }

void vm_plan_make_disks(struct agent *a, struct vm_plan_disk *plan, size_t n, vm_plan_made_fn done, void *arg)
{
    struct plan_make *m = xcalloc(1, sizeof *m);
    *m = (struct plan_make){a->base, plan, n, 0, done, arg};
    /* From the loop even when there is nothing to make: done never runs
     * before this returns. */
    if (event_base_once(a->base, -1, EV_TIMEOUT, on_make_deferred, m, &(struct timeval){0, 0}) < 0)
        abort();   /* only on OOM */
}

void vm_plan_unmake_disks(struct vm_plan_disk *plan, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (plan[i].new_size)
            unlink(plan[i].d->path);
}
