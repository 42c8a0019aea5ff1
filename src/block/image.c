/* qemu-img create, info, check, convert, commit and rebase (see
 * block/image.h).  Each command is built once (a struct img_cmd) and then
 * run either way: run_sync waits for it, image_op_start hands it to
 * spawn_async, whose one completion (on_op_done) answers every kind. */
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

/* One qemu-img command line; refused (argv[0] NULL) with why set when the
 * arguments are unusable. */
struct img_cmd {
    char *argv[16];
    char size[32];
    int timeout_ms;
    const char *why;
};

static void img_cmd_push(struct img_cmd *c, size_t *n, char *arg) { c->argv[(*n)++] = arg; }

static void img_cmd_create(struct img_cmd *c, const char *path, uint64_t size, const char *backing,
                       const char *backing_fmt, bool unsafe)
{
    *c = (struct img_cmd){.timeout_ms = CREATE_TIMEOUT_MS};
    if (backing && !backing_fmt) {
        c->why = "a backing file needs its format";
        return;
    }
    snprintf(c->size, sizeof c->size, "%llu", (unsigned long long)size);
    size_t n = 0;
    char *head[] = {"qemu-img", "create", "-q", "-f", "qcow2"};
    for (size_t i = 0; i < ARRAY_LEN(head); i++)
        img_cmd_push(c, &n, head[i]);
    if (unsafe)
        img_cmd_push(c, &n, "-u");
    if (backing) {
        img_cmd_push(c, &n, "-b"), img_cmd_push(c, &n, (char *)backing);
        img_cmd_push(c, &n, "-F"), img_cmd_push(c, &n, (char *)backing_fmt);
    }
    img_cmd_push(c, &n, (char *)path);
    if (!backing || size || unsafe)
        img_cmd_push(c, &n, c->size);
}

static void img_cmd_info(struct img_cmd *c, const char *path, const char *format, bool with_chain)
{
    *c = (struct img_cmd){.timeout_ms = INFO_TIMEOUT_MS};
    size_t n = 0;
    img_cmd_push(c, &n, "qemu-img"), img_cmd_push(c, &n, "info"), img_cmd_push(c, &n, "-U");
    if (with_chain)
        img_cmd_push(c, &n, "--backing-chain");
    img_cmd_push(c, &n, "--output=json");
    if (format)
        img_cmd_push(c, &n, "-f"), img_cmd_push(c, &n, (char *)format);
    img_cmd_push(c, &n, (char *)path);
}

static void img_cmd_check(struct img_cmd *c, const char *path, const char *format)
{
    *c = (struct img_cmd){{"qemu-img", "check", "-q", "-f", (char *)format, (char *)path}, "", CHECK_TIMEOUT_MS, NULL};
}

static void img_cmd_convert(struct img_cmd *c, const char *src, const char *src_fmt, const char *dst)
{
    *c = (struct img_cmd){{"qemu-img", "convert", "-q", "-f", (char *)src_fmt, "-O", "qcow2", (char *)src,
                           (char *)dst}, "", CONVERT_TIMEOUT_MS, NULL};
    if (!src_fmt) {
        c->argv[0] = NULL;
        c->why = "the source format must be given (vmove never lets qemu-img probe one)";
    }
}

/* One layer of a chain: only the clusters SRC itself holds are written,
 * DST's backing name is exactly backing (relative: read from DST's
 * directory); without backing DST is SRC flattened, the chain's new root. */
static void img_cmd_copy_layer(struct img_cmd *c, const char *src, const char *dst, const char *backing)
{
    *c = (struct img_cmd){.timeout_ms = CONVERT_TIMEOUT_MS};
    size_t n = 0;
    const char *fixed[] = {"qemu-img", "convert", "-q", "-f", "qcow2", "-O", "qcow2"};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        img_cmd_push(c, &n, (char *)fixed[i]);
    if (backing)
        img_cmd_push(c, &n, "-B"), img_cmd_push(c, &n, (char *)backing), img_cmd_push(c, &n, "-F"),
            img_cmd_push(c, &n, "qcow2");
    img_cmd_push(c, &n, (char *)src), img_cmd_push(c, &n, (char *)dst);
}

/* rc of run_capture, out its output: 0, or -1 with err = output. */
static int finish_run(int rc, char *out, char *err, size_t errlen)
{
    if (rc != 0)
        snprintf(err, errlen, "%s", out && out[0] ? out : "?");
    free(out);
    return rc == 0 ? 0 : -1;
}

static int run_sync(const struct img_cmd *c, char *err, size_t errlen)
{
    if (c->why) {
        snprintf(err, errlen, "%s", c->why);
        return -1;
    }
    char *out = NULL;
    int rc = run_capture((char *const *)c->argv, c->timeout_ms, &out);   /* before out is read */
    return finish_run(rc, out, err, errlen);
}

int image_create(const char *path, uint64_t size, const char *backing, const char *backing_fmt, char *err,
                 size_t errlen)
{
    struct img_cmd c;
    img_cmd_create(&c, path, size, backing, backing_fmt, false);
    return run_sync(&c, err, errlen);
}

int image_create_overlay(const char *path, uint64_t size, const char *backing, const char *backing_fmt, char *err,
                         size_t errlen)
{
    struct img_cmd c;
    img_cmd_create(&c, path, size, backing, backing_fmt, true);
    return run_sync(&c, err, errlen);
}

static void img_cmd_commit(struct img_cmd *c, const char *top, const char *base)
{
    *c = (struct img_cmd){{"qemu-img", "commit", "-q", "-f", "qcow2", "-d", "-b", (char *)base, (char *)top}, "",
                          COMMIT_TIMEOUT_MS, NULL};
}

static void img_cmd_rebase_unsafe(struct img_cmd *c, const char *path, const char *backing)
{
    *c = (struct img_cmd){{"qemu-img", "rebase", "-q", "-u", "-f", "qcow2", "-b", (char *)backing, "-F", "qcow2",
                           (char *)path}, "", CREATE_TIMEOUT_MS, NULL};
}

int image_commit(const char *top, const char *base, char *err, size_t errlen)
{
    struct img_cmd c;
    img_cmd_commit(&c, top, base);
    return run_sync(&c, err, errlen);
}

int image_rebase_unsafe(const char *path, const char *backing, char *err, size_t errlen)
{
    struct img_cmd c;
    img_cmd_rebase_unsafe(&c, path, backing);
    return run_sync(&c, err, errlen);
}

int image_check(const char *path, const char *format, char *err, size_t errlen)
{
    struct img_cmd c;
    img_cmd_check(&c, path, format);
    return run_sync(&c, err, errlen);
}

int image_convert(const char *src, const char *src_fmt, const char *dst, char *err, size_t errlen)
{
    struct img_cmd c;
    img_cmd_convert(&c, src, src_fmt, dst);
    return run_sync(&c, err, errlen);
}

/* ---- qemu-img info's JSON ------------------------------------------------ */

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
    struct img_cmd c;
    img_cmd_info(&c, path, format, with_chain);
    char *out = NULL;
    int rc = run_capture(c.argv, c.timeout_ms, &out);
    if (rc == 0 && image_info_parse(out, info) == 0) {
        free(out);
        return 0;
    }
    snprintf(err, errlen, "%s", out && out[0] ? out : "?");
    free(out);
    return -1;
}

/* ---- asynchronous -------------------------------------------------------- */

struct image_op {
    struct spawn_async *child;
    image_done_fn done;             /* every kind but info */
    image_info_done_fn info_done;   /* info */
    void *arg;
};

/* The one completion of every asynchronous qemu-img run. */
static void on_op_done(void *arg, int rc, const char *out)
{
    struct image_op *op = arg;
    const char *why = out && out[0] ? out : "?";
    if (op->info_done) {
        struct image_info info = {0};
        bool ok = rc == 0 && image_info_parse(out, &info) == 0;
        op->info_done(op->arg, ok ? &info : NULL, ok ? NULL : why);
        image_info_free(&info);
    } else {
        op->done(op->arg, rc == 0 ? NULL : why);
    }
    free(op);
}

static struct image_op *op_start(struct event_base *base, const struct img_cmd *c, image_done_fn done,
                                 image_info_done_fn info_done, void *arg)
{
    struct image_op *op = xcalloc(1, sizeof *op);
    op->done = done;
    op->info_done = info_done;
    op->arg = arg;
    op->child = c->why ? spawn_async_fail(base, c->why, on_op_done, op)
                       : spawn_async(base, (char *const *)c->argv, c->timeout_ms, on_op_done, op);
    return op;
}

void image_op_cancel(struct image_op *op)
{
    if (!op)
        return;
    spawn_async_cancel(op->child);
    free(op);
}

struct image_op *image_info_async(struct event_base *base, const char *path, const char *format,
                                  image_info_done_fn done, void *arg)
{
    struct img_cmd c;
    img_cmd_info(&c, path, format, false);
    return op_start(base, &c, NULL, done, arg);
}

struct image_op *image_info_chain_async(struct event_base *base, const char *path, const char *format,
                                        bool with_chain, image_info_done_fn done, void *arg)
{
    struct img_cmd c;
    img_cmd_info(&c, path, format, with_chain);
    return op_start(base, &c, NULL, done, arg);
}

struct image_op *image_create_overlay_async(struct event_base *base, const char *path, uint64_t size,
                                            const char *backing, const char *backing_fmt, image_done_fn done,
                                            void *arg)
{
    struct img_cmd c;
    img_cmd_create(&c, path, size, backing, backing_fmt, true);
    return op_start(base, &c, done, NULL, arg);
}

struct image_op *image_commit_async(struct event_base *base, const char *top, const char *backing_base,
                                    image_done_fn done, void *arg)
{
    struct img_cmd c;
    img_cmd_commit(&c, top, backing_base);
    return op_start(base, &c, done, NULL, arg);
}

struct image_op *image_rebase_unsafe_async(struct event_base *base, const char *path, const char *backing,
                                           image_done_fn done, void *arg)
{
    struct img_cmd c;
    img_cmd_rebase_unsafe(&c, path, backing);
    return op_start(base, &c, done, NULL, arg);
}

struct image_op *image_check_async(struct event_base *base, const char *path, const char *format,
                                   image_done_fn done, void *arg)
{
    struct img_cmd c;
    img_cmd_check(&c, path, format);
    return op_start(base, &c, done, NULL, arg);
}

struct image_op *image_create_async(struct event_base *base, const char *path, uint64_t size, const char *backing,
                                    const char *backing_fmt, image_done_fn done, void *arg)
{
    struct img_cmd c;
    img_cmd_create(&c, path, size, backing, backing_fmt, false);
    return op_start(base, &c, done, NULL, arg);
}

struct image_op *image_convert_async(struct event_base *base, const char *src, const char *src_fmt, const char *dst,
                                     image_done_fn done, void *arg)
{
    struct img_cmd c;
    img_cmd_convert(&c, src, src_fmt, dst);
    return op_start(base, &c, done, NULL, arg);
}

struct image_op *image_copy_layer_async(struct event_base *base, const char *src, const char *dst,
                                        const char *backing, image_done_fn done, void *arg)
{
    struct img_cmd c;
    img_cmd_copy_layer(&c, src, dst, backing);
    return op_start(base, &c, done, NULL, arg);
}
