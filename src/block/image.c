/* qemu-img create, info and check (see block/image.h). */
#include "block/image.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/spawn.h"
#include "common/util.h"

#define CREATE_TIMEOUT_MS 30000
#define INFO_TIMEOUT_MS 10000
#define CHECK_TIMEOUT_MS 60000
#define CONVERT_TIMEOUT_MS 600000
/* A stopped VM's merge: bounded by the overlay's size on a slow disk. */
#define COMMIT_TIMEOUT_MS 600000

/* rc of run_capture, out its output: 0, or -1 with err = output. */
static int finish_run(int rc, char *out, char *err, size_t errlen)
{
    if (rc != 0)
        snprintf(err, errlen, "%s", out && out[0] ? out : "?");
    free(out);
    return rc == 0 ? 0 : -1;
}

int image_create(const char *path, uint64_t size, const char *backing, const char *backing_fmt, char *err,
                 size_t errlen)
{
    if (backing && !backing_fmt) {
        snprintf(err, errlen, "a backing file needs its format");
        return -1;
    }
    char sz[32];
    snprintf(sz, sizeof sz, "%llu", (unsigned long long)size);
    char *argv[12];
    size_t n = 0;
    argv[n++] = "qemu-img", argv[n++] = "create", argv[n++] = "-q", argv[n++] = "-f", argv[n++] = "qcow2";
    if (backing) {
        argv[n++] = "-b", argv[n++] = (char *)backing, argv[n++] = "-F", argv[n++] = (char *)backing_fmt;
    }
    argv[n++] = (char *)path;
    if (!backing || size)
        argv[n++] = sz;
    argv[n] = NULL;
    char *out = NULL;
    int rc = run_capture(argv, CREATE_TIMEOUT_MS, &out);   /* before out is read */
    return finish_run(rc, out, err, errlen);
}

int image_create_overlay(const char *path, uint64_t size, const char *backing, const char *backing_fmt, char *err,
                         size_t errlen)
{
    char sz[32];
    snprintf(sz, sizeof sz, "%llu", (unsigned long long)size);
    char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", (char *)backing, "-F",
                    (char *)backing_fmt, (char *)path, sz, NULL};
    char *out = NULL;
    int rc = run_capture(argv, CREATE_TIMEOUT_MS, &out);
    return finish_run(rc, out, err, errlen);
}

int image_commit(const char *top, const char *base, char *err, size_t errlen)
{
    char *argv[] = {"qemu-img", "commit", "-q", "-f", "qcow2", "-d", "-b", (char *)base, (char *)top, NULL};
    char *out = NULL;
    int rc = run_capture(argv, COMMIT_TIMEOUT_MS, &out);
    return finish_run(rc, out, err, errlen);
}

int image_rebase_unsafe(const char *path, const char *backing, char *err, size_t errlen)
{
    char *argv[] = {"qemu-img", "rebase", "-q", "-u", "-f", "qcow2", "-b", (char *)backing, "-F", "qcow2",
                    (char *)path, NULL};
    char *out = NULL;
    int rc = run_capture(argv, CREATE_TIMEOUT_MS, &out);
    return finish_run(rc, out, err, errlen);
}

static char *dup_str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? xstrdup(s) : NULL;
}

static int parse_layer(json_t *o, struct image_layer *l)
{
    l->filename = dup_str(o, "filename");
    l->format = dup_str(o, "format");
    l->virtual_size = (uint64_t)json_integer_value(json_object_get(o, "virtual-size"));
    l->actual_size = (uint64_t)json_integer_value(json_object_get(o, "actual-size"));
    l->backing_filename = dup_str(o, "backing-filename");
    return l->filename && l->format ? 0 : -1;
}

int image_info_parse(const char *json, struct image_info *info)
{
    *info = (struct image_info){0};
    json_t *root = json ? json_loads(json, 0, NULL) : NULL;
    json_t *list = json_is_object(root) ? json_pack("[O]", root) : json_incref(root);
    size_t n = json_is_array(list) ? json_array_size(list) : 0;
    int rc = n ? 0 : -1;
    if (n)
        info->layers = xcalloc(n, sizeof *info->layers);
    for (size_t i = 0; i < n && rc == 0; i++) {
        info->n = i + 1;
        rc = parse_layer(json_array_get(list, i), &info->layers[i]);
    }
    json_decref(list);
    json_decref(root);
    if (rc < 0)
        image_info_free(info);
    return rc;
}

void image_info_free(struct image_info *info)
{
    for (size_t i = 0; i < info->n; i++) {
        struct image_layer *l = &info->layers[i];
        free(l->filename), free(l->format), free(l->backing_filename);
    }
    free(info->layers);
    *info = (struct image_info){0};
}

uint64_t image_info_chain_actual(const struct image_info *info)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < info->n; i++)
        sum += info->layers[i].actual_size;
    return sum;
}

int image_info(const char *path, const char *format, bool with_chain, struct image_info *info, char *err,
               size_t errlen)
{
    *info = (struct image_info){0};
    char *argv[10];
    size_t n = 0;
    argv[n++] = "qemu-img", argv[n++] = "info", argv[n++] = "-U";
    if (with_chain)
        argv[n++] = "--backing-chain";
    argv[n++] = "--output=json";
    if (format)
        argv[n++] = "-f", argv[n++] = (char *)format;
    argv[n++] = (char *)path;
    argv[n] = NULL;
    char *out = NULL;
    int rc = run_capture(argv, INFO_TIMEOUT_MS, &out);
    if (rc == 0 && image_info_parse(out, info) == 0) {
        free(out);
        return 0;
    }
    snprintf(err, errlen, "%s", out && out[0] ? out : "?");
    free(out);
    return -1;
}

struct image_info_async {
    struct spawn_async *child;
    image_info_done_fn done;
    void *arg;
};

static void on_info_done(void *arg, int rc, const char *out)
{
    struct image_info_async *q = arg;
    struct image_info info = {0};
    bool ok = rc == 0 && image_info_parse(out, &info) == 0;
    q->done(q->arg, ok ? &info : NULL, ok ? NULL : out && out[0] ? out : "?");
    image_info_free(&info);
    free(q);
}

struct image_info_async *image_info_async(struct event_base *base, const char *path, const char *format,
                                          image_info_done_fn done, void *arg)
{
    char *argv[] = {"qemu-img", "info", "-U", "--output=json", format ? "-f" : (char *)path,
                    format ? (char *)format : NULL, format ? (char *)path : NULL, NULL};
    struct image_info_async *q = xcalloc(1, sizeof *q);
    q->done = done;
    q->arg = arg;
    char *err = NULL;
    q->child = spawn_async(base, argv, INFO_TIMEOUT_MS, on_info_done, q, &err);
    if (!q->child) {
        free(q);
        done(arg, NULL, err);
        free(err);
        return NULL;
    }
    return q;
}

void image_info_async_cancel(struct image_info_async *q)
{
    if (!q)
        return;
    spawn_async_cancel(q->child);
    free(q);
}

struct image_check_async {
    image_check_done_fn done;
    void *arg;
};

static void on_check_done(void *arg, int rc, const char *out)
{
    struct image_check_async *q = arg;
    q->done(q->arg, rc == 0 ? NULL : out && out[0] ? out : "?");
    free(q);
}

void image_check_async(struct event_base *base, const char *path, const char *format, image_check_done_fn done,
                       void *arg)
{
    char *argv[] = {"qemu-img", "check", "-q", "-f", (char *)format, (char *)path, NULL};
    struct image_check_async *q = xcalloc(1, sizeof *q);
    q->done = done;
    q->arg = arg;
    char *err = NULL;
    if (!spawn_async(base, argv, CHECK_TIMEOUT_MS, on_check_done, q, &err)) {
        free(q);
        done(arg, err);
        free(err);
    }
}

int image_check(const char *path, const char *format, char *err, size_t errlen)
{
    char *argv[] = {"qemu-img", "check", "-q", "-f", (char *)format, (char *)path, NULL};
    char *out = NULL;
    int rc = run_capture(argv, CHECK_TIMEOUT_MS, &out);
    return finish_run(rc, out, err, errlen);
}

int image_convert(const char *src, const char *src_fmt, const char *dst, char *err, size_t errlen)
{
    if (!src_fmt) {
        snprintf(err, errlen, "the source format must be given (vmove never lets qemu-img probe one)");
        return -1;
    }
    char *argv[] = {"qemu-img", "convert", "-q", "-f", (char *)src_fmt, "-O", "qcow2", (char *)src, (char *)dst,
                    NULL};
    char *out = NULL;
    int rc = run_capture(argv, CONVERT_TIMEOUT_MS, &out);
    return finish_run(rc, out, err, errlen);
}
