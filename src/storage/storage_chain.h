/* The checkpoint chain of a storage move (docs/CHECKPOINTS.md, "Moves"):
 * before the mirror starts, every frozen layer of each moving disk (and the
 * memory images of memory checkpoints, with the first disk) is copied into
 * the disk's new directory, one file at a time, parents first, without
 * blocking the loop (qemu-img convert -B for a layer, cp for a memory
 * image).  The active layer is then mirrored with sync=top onto a target
 * backed by the copy (block/mirror.h).
 *
 * Contract: a copy's target is claimed with O_EXCL before anything writes
 * it, so every file this module removes is one it created.  The owner
 * persists chain_copy_record whenever on_state is called (a restarted
 * vmoved restores it and removes what was made).  Callbacks run from the
 * loop, never from inside the call that caused them. */
#ifndef VMOVE_STORAGE_CHAIN_H
#define VMOVE_STORAGE_CHAIN_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "storage/storage_plan.h"

struct event_base;
struct chain_copy;

struct chain_copy_ops {
    void (*on_state)(void *arg);                        /* a target was claimed: persist the record */
    void (*on_progress)(void *arg, size_t done, size_t total, const char *current);
    void (*on_done)(void *arg, const char *err);        /* every file copied (err NULL), or why not */
};

struct chain_copy *chain_copy_new(struct event_base *base, const struct plan_copy *copies, size_t n,
                                  const struct chain_copy_ops *ops, void *arg);
/* From a record (chain_copy_record) after a restart: nothing runs. */
struct chain_copy *chain_copy_restore(struct event_base *base, json_t *rec);
void chain_copy_free(struct chain_copy *cc);
size_t chain_copy_count(const struct chain_copy *cc);

void chain_copy_start(struct chain_copy *cc);
/* Kills the helper in flight; on_done is not called afterwards. */
void chain_copy_stop(struct chain_copy *cc);
bool chain_copy_running(const struct chain_copy *cc);

json_t *chain_copy_record(const struct chain_copy *cc);
/* The tree's paths of disk_id (its layers; the memory images copied with
 * it) changed to the copies' (tree: vm.json's "checkpoints", changed in
 * place). */
void chain_copy_retarget(const struct chain_copy *cc, const char *disk_id, json_t *tree);
/* Remove the copies of disk_id (NULL: of every disk) this module created.
 * Returns how many could not be removed; each is logged and, if note is
 * given, told to it. */
size_t chain_copy_remove(struct chain_copy *cc, const char *disk_id, void (*note)(void *arg, const char *msg),
                         void *arg);
/* After the commit: delete the old files of disk_id the copies replace. */
size_t chain_copy_unlink_sources(const struct chain_copy *cc, const char *disk_id,
                                 void (*note)(void *arg, const char *msg), void *arg);
#endif
