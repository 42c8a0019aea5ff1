/* The checkpoint tree as stored in vm.json (pure JSON helpers, no I/O):
 *
 *   "checkpoints": {"current": NAME|null, "list": [
 *       {"name", "parent": NAME|null, "created_ms", "kind": "disk-only",
 *        "state": "ok"|"creating"|"deleting", "job": ID (while not ok),
 *        "disks": {"vda": "/abs/vda.ck1.qcow2", ...}}, ...]}
 *
 * "Now" (the running state) is a child of current.  Private to
 * src/checkpoint/. */
#ifndef VMOVE_CHECKPOINT_MODEL_H
#define VMOVE_CHECKPOINT_MODEL_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

json_t *ckpt_list(json_t *tree);
json_t *ckpt_find(json_t *tree, const char *name);
const char *ckpt_current(json_t *tree);
const char *ckpt_parent(json_t *ck);
const char *ckpt_disk(json_t *ck, const char *disk_id);
/* Checkpoints whose parent is name, plus "now" if name is current. */
size_t ckpt_children(json_t *tree, const char *name, json_t **only_child, bool *now_is_child);
/* Is name current or an ancestor of current (its layers are open in QEMU)? */
bool ckpt_on_current_path(json_t *tree, const char *name);
/* A checkpoint whose state is not "ok", or NULL. */
json_t *ckpt_unsettled(json_t *tree);
/* Structural check of a tree read from vm.json: 0, or -1 with err. */
int ckpt_validate(json_t *tree, char *err, size_t errlen);
#endif
