/* Checkpoints: external qcow2 overlays, one per disk per checkpoint
 * (`vmove checkpoint create|list|apply|delete`, docs/CHECKPOINTS.md).
 *
 * The tree lives in vm.json ("checkpoints", see ckpt_model.h) so that it
 * travels with the VM's config on a live migration.  Each checkpoint names
 * its frozen image per disk: the layer that was active when it was taken
 * and has been read-only since.  vm.json's disks[].path stays the active
 * layer, whose backing file is the frozen image of "current".
 *
 *   create  running: overlays made with qemu-img (-u), blockdev-add'ed, and
 *           one transaction of blockdev-snapshot for every disk; stopped:
 *           qemu-img create.  vm.json is written first (state "creating").
 *   apply   QEMU (if running) quits; a fresh overlay on the checkpoint's
 *           frozen images becomes the active layer; the old active layers
 *           are deleted; a VM that ran boots again.
 *   delete  the checkpoint's own layer is merged into its frozen image
 *           (block-commit live: intermediate, or active + pivot with the
 *           vCPUs stopped; qemu-img commit/rebase offline) and deleted.
 *           The tree entry is "deleting" (with the job id) until the
 *           files are gone; a restarted vmoved finishes the merge.
 * Every operation is a job; one at a time per VM. */
#ifndef VMOVE_CHECKPOINT_CHECKPOINT_H
#define VMOVE_CHECKPOINT_CHECKPOINT_H
#include <jansson.h>
#include <stdbool.h>

struct agent;
struct job;

/* The tree of VM name: {"vm", "current", "checkpoints": [...]} with sizes
 * and dates; NULL with *err. */
json_t *checkpoint_list(struct agent *a, const char *vm, json_t **err);
/* -1 with *err when the request is refused at once (nothing changed).
 * Else 0: the job exists (the VM is busy) while the overlays are made,
 * without blocking the loop (qemu-img in children); then, from the loop,
 * started(arg, job, NULL) with the job started (the caller answers with
 * it), or started(arg, NULL, err) with nothing changed (the job failed;
 * err is the callee's).  Also at shutdown, with an error. */
typedef void (*checkpoint_started_fn)(void *arg, struct job *job, json_t *err);
int checkpoint_create(struct agent *a, const char *vm, const char *name, bool memory,
                      checkpoint_started_fn started, void *arg, json_t **err);
struct job *checkpoint_apply(struct agent *a, const char *vm, const char *name, json_t **err);
/* speed: bytes/s of a live merge (QEMU's commit speed), 0 for unlimited. */
struct job *checkpoint_delete(struct agent *a, const char *vm, const char *name, long long speed, json_t **err);

/* After vm_inventory_load: finish deletes and settle creates that a vmoved
 * restart interrupted. */
void checkpoint_recover(struct agent *a);
void checkpoint_free_all(struct agent *a);
#endif
