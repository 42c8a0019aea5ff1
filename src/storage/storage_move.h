/* Live storage migration: the `storage.move` job (`vmove move-storage`).
 *
 * Moves the qcow2 disks of a running (or paused) VM to other directories on
 * the same host while the guest keeps running, with QEMU's active mirror.
 *
 * Phases (job phase; the durable part is the VM's runtime.json
 * "storage_move" record):
 *   preparing  target qcow2 files created (O_EXCL, then qemu-img create),
 *              blockdev-add of each target, blockdev-mirror per disk
 *              (sync=full, copy-mode=write-blocking)
 *   mirroring  follow query-block-jobs until every mirror is READY
 *   pivoting   block-job-complete one disk at a time; after each pivot
 *              QEMU's ground truth (query-block) is checked, vm.json is
 *              rewritten and the old nodes are deleted
 *   cleanup    the source files are deleted (unless keep_source)
 * Cancel or failure before a disk pivots: its mirror is cancelled (force),
 * its target nodes deleted and its target file removed; the guest runs on
 * the original file all along.  Details and guarantees: docs/STORAGE.md. */
#ifndef VMOVE_STORAGE_MOVE_H
#define VMOVE_STORAGE_MOVE_H
#include <jansson.h>

struct agent;
struct job;
struct storage_move;

/* A storage move of VM `name` as `vmove move-storage` asks for it (params:
 * "to", "disks", "keep_source", "bandwidth" in MiB/s, "config_to"; see
 * storage_plan.h; facts from storage_plan_probe), with its job; NULL with
 * *err when the request cannot be done (nothing changed then).  The caller
 * answers its client with the job, then calls storage_move_begin(). */
struct storage_move *storage_move_create(struct agent *a, const char *name, json_t *params, json_t *facts,
                                        json_t **err);
struct job *storage_move_job(const struct storage_move *sm);
void storage_move_begin(struct storage_move *sm);

/* After vm_inventory_load: settle storage moves interrupted by a vmoved
 * restart (cancel QEMU's leftover mirrors, delete targets, fail the job). */
void storage_recover(struct agent *a);
/* At shutdown: forget the moves in flight (QEMU keeps mirroring; the next
 * vmoved settles them through storage_recover). */
void storage_free_all(struct agent *a);

#endif
