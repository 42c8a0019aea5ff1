/* What checkpoint.c (create), ckpt_apply.c (apply, list) and ckpt_delete.c
 * share.
 * Private to src/checkpoint/. */
#ifndef VMOVE_CHECKPOINT_INTERNAL_H
#define VMOVE_CHECKPOINT_INTERNAL_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct agent;
struct vm;

/* A deep copy of the VM's tree (an empty one if it has none). */
json_t *ck_tree_copy(const struct vm *vm);
/* vm.json with this tree and the disk paths in paths ({id: path}, may be
 * NULL), written atomically; only then the config in memory changes. */
int ck_save(struct vm *vm, json_t *tree, json_t *paths, char *err, size_t errlen);
/* NULL if vm may start a checkpoint operation now, else the error. */
json_t *ck_busy(struct agent *a, struct vm *vm);
bool ck_vm_live(const struct vm *vm);          /* QEMU runs it (running or paused) */
/* The file name part of path (borrowed). */
const char *ck_base_name(const char *path);
/* Remove a layer file; a failure is logged (the caller notes it). */
int ck_unlink(const char *vm, const char *path);

/* The VM named, or NULL with a not-found error for the client. */
struct vm *ck_find_vm(struct agent *a, const char *name, json_t **err);
/* The VM's checkpoint named (borrowed), or NULL with a not-found error. */
json_t *ck_find(struct vm *vm, const char *name, json_t **err);
/* An overlay on backing_of[id] for each disk (unsafe: without opening the
 * backing file, which QEMU holds), each qemu-img in a child the loop does
 * not wait for (ckpt_overlays.c).  done(arg, made, NULL) with {id: path} of
 * the new files (the callee's reference), or done(arg, NULL, why) with
 * nothing left behind; exactly once, from the loop, unless cancelled.  At
 * shutdown (spawn_async_stop_all) it ends with an error. */
struct ck_overlays;
typedef void (*ck_overlays_fn)(void *arg, json_t *made, const char *err);
struct ck_overlays *ck_make_overlays(struct agent *a, const struct vm *vm, json_t *backing_of, bool unsafe,
                                     ck_overlays_fn done, void *arg);
/* Kills its qemu-img and removes the files made so far; done is not called. */
void ck_overlays_cancel(struct ck_overlays *o);
/* {id: path} of the VM's active layers (a new object). */
json_t *ck_active_paths(const struct vm *vm);

/* Run fn(arg) from the event loop, after the caller has answered its
 * client with the job (a job ending at once would be freed under it). */
void ck_defer(struct agent *a, void (*fn)(void *arg), void *arg);

/* Continue an interrupted delete (ckpt_delete.c), called by recovery. */
void ck_delete_resume(struct agent *a, struct vm *vm, json_t *ck);
void ck_delete_free_all(void);
#endif
