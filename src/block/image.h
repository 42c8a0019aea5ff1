/* Disk images on this host: qemu-img create, info, check, convert, commit
 * and rebase.
 *
 * Contract: every function runs qemu-img through common/spawn.h (bounded by
 * a timeout) and never asks QEMU.  The plain functions wait for it: vmoved
 * itself never calls them (the tests and tools do); the *_async ones do
 * not block the loop, and are what vmoved uses for every image (any of
 * them may sit on storage that stalls).  Formats are always given explicitly: qemu-img is never
 * left to probe one (a raw image whose guest wrote a qcow2 header would
 * otherwise be opened as qcow2).  Errors are written to err (a sentence,
 * without the path prefix the caller adds) and the function returns -1. */
#ifndef VMOVE_BLOCK_IMAGE_H
#define VMOVE_BLOCK_IMAGE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* qemu-img create -q -f qcow2 [-b BACKING -F BACKING_FMT] PATH SIZE.
 * backing NULL: a standalone image of size bytes.  With a backing file,
 * backing_fmt is required ("qcow2", "raw"); size 0 then means the backing
 * file's size.  On failure err holds qemu-img's output ("?" if none). */
int image_create(const char *path, uint64_t size, const char *backing, const char *backing_fmt, char *err,
                 size_t errlen);

/* A checkpoint overlay: qemu-img create -q -f qcow2 -u -b BACKING -F
 * BACKING_FMT PATH SIZE.  -u: the backing file is not opened (a running
 * QEMU holds its lock), so size must be given; backing is written as given
 * (a name relative to PATH's directory keeps the chain movable). */
int image_create_overlay(const char *path, uint64_t size, const char *backing, const char *backing_fmt, char *err,
                         size_t errlen);
/* qemu-img commit -q -f qcow2 -d -b BASE TOP: TOP's data into BASE (TOP
 * is left as it is; the caller deletes it).  Never on images QEMU has open. */
int image_commit(const char *top, const char *base, char *err, size_t errlen);
/* qemu-img rebase -q -u -f qcow2 -b BACKING -F qcow2 PATH: only the header
 * changes (the caller guarantees BACKING holds the same data). */
int image_rebase_unsafe(const char *path, const char *backing, char *err, size_t errlen);

/* One image of a chain, top first. */
struct image_layer {
    char *filename;
    char *format;                 /* "qcow2", "raw", ... */
    uint64_t virtual_size;        /* bytes the guest sees */
    uint64_t actual_size;         /* bytes allocated on the host */
    char *backing_filename;       /* NULL at the bottom of the chain */
};

struct image_info {
    struct image_layer *layers;   /* n >= 1 on success; layers[0] is PATH */
    size_t n;
};

/* qemu-img info -U --output=json [--backing-chain] [-f FORMAT] PATH.
 * -U: the image may be open in a running QEMU (read without its lock).
 * format NULL: qemu-img decides (what vm create's check wants to learn);
 * with_chain: every backing file too.  On failure err holds qemu-img's
 * output (or "?"), and info is empty. */
int image_info(const char *path, const char *format, bool with_chain, struct image_info *info, char *err,
               size_t errlen);
void image_info_free(struct image_info *info);
/* ---- without blocking the loop (common/spawn.h) ----
 * Each starts qemu-img in a child and returns at once; done is called
 * exactly once, from the loop (never before the call returns), unless the
 * operation is cancelled first.  err is NULL on success, else qemu-img's
 * output (or "?"), why it timed out, or why it could not run.  At shutdown
 * (spawn_async_stop_all) a pending one ends with an error. */
struct event_base;
struct image_op;
typedef void (*image_done_fn)(void *arg, const char *err);
/* info is freed after done returns (NULL on failure). */
typedef void (*image_info_done_fn)(void *arg, const struct image_info *info, const char *err);
/* Kills qemu-img (gone when this returns, barring a child stuck in the
 * kernel); done is not called.  The caller removes any partial output. */
void image_op_cancel(struct image_op *op);
/* image_info without a chain. */
struct image_op *image_info_async(struct event_base *base, const char *path, const char *format,
                                  image_info_done_fn done, void *arg);
/* image_info, with the backing chain if with_chain. */
struct image_op *image_info_chain_async(struct event_base *base, const char *path, const char *format,
                                        bool with_chain, image_info_done_fn done, void *arg);
/* image_create_overlay, image_commit, image_rebase_unsafe. */
struct image_op *image_create_overlay_async(struct event_base *base, const char *path, uint64_t size,
                                            const char *backing, const char *backing_fmt, image_done_fn done,
                                            void *arg);
struct image_op *image_commit_async(struct event_base *base, const char *top, const char *backing_base,
                                    image_done_fn done, void *arg);
struct image_op *image_rebase_unsafe_async(struct event_base *base, const char *path, const char *backing,
                                           image_done_fn done, void *arg);
/* image_check. */
struct image_op *image_check_async(struct event_base *base, const char *path, const char *format,
                                   image_done_fn done, void *arg);
/* image_create. */
struct image_op *image_create_async(struct event_base *base, const char *path, uint64_t size, const char *backing,
                                    const char *backing_fmt, image_done_fn done, void *arg);
/* image_convert (on failure or cancel DST may exist: the caller's to remove). */
struct image_op *image_convert_async(struct event_base *base, const char *src, const char *src_fmt, const char *dst,
                                     image_done_fn done, void *arg);
/* One frozen qcow2 layer copied for a move: qemu-img convert -q -f qcow2
 * -O qcow2 [-B BACKING -F qcow2] SRC DST.  With backing (a name relative to
 * DST's directory, whose file must already hold the copy of SRC's backing)
 * only the clusters of SRC itself are written; without it DST is SRC with
 * whatever lies below it flattened in.  SRC must be a file nobody writes (a
 * checkpoint's frozen layer).  On failure or cancel DST may be partly
 * written: the caller's to remove. */
struct image_op *image_copy_layer_async(struct event_base *base, const char *src, const char *dst,
                                        const char *backing, image_done_fn done, void *arg);
/* Allocated bytes of the whole chain: what a flattening mirror copies. */
uint64_t image_info_chain_actual(const struct image_info *info);

/* Pure: parse qemu-img info's JSON (an object, or the array of
 * --backing-chain).  -1 if it is neither or lacks filename/format. */
int image_info_parse(const char *json, struct image_info *info);

/* qemu-img convert -q -f SRC_FMT -O qcow2 SRC DST: a standalone qcow2 copy
 * (flattened: backing files, if the source format has them, are read into
 * it).  The caller has checked SRC's header (never probed: src_fmt is
 * required) and created nothing at DST yet; on failure DST may exist and is
 * the caller's to remove.  Bounded by a timeout of ten minutes. */
int image_convert(const char *src, const char *src_fmt, const char *dst, char *err, size_t errlen);

/* qemu-img check -q -f FORMAT PATH: 0 if consistent, -1 with err set
 * (qemu-img's output) otherwise. */
int image_check(const char *path, const char *format, char *err, size_t errlen);
#endif
