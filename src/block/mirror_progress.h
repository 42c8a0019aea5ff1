/* The disk-copy progress of a mirror machine (block/mirror.h) in the one
 * shape that both moves publish: the live storage move (`move-storage`) and
 * the shared-nothing migration (`move --with-storage`) put it in their job
 * progress while the disks copy and, with final set, in their result
 * (`disk_copy`).  docs/JSON.md, "Disk progress", is the contract:
 *
 *   {"disks": [{"id", "size_bytes", "done_bytes", "total_bytes", "rate_Bps",
 *               "eta_s", "ready"}, ...],
 *    "size_bytes", "done_bytes", "total_bytes", "rate_Bps", "eta_s", "percent"}
 *
 * done_bytes and total_bytes are QEMU's job counters (offset and len): what
 * the mirror copied, and that plus what it still has to copy.  QEMU counts
 * only the allocated parts of a disk and every guest rewrite of a part
 * already copied, so total_bytes is not the disk's size; size_bytes is.
 * eta_s is null while no rate is known. */
#ifndef VMOVE_BLOCK_MIRROR_PROGRESS_H
#define VMOVE_BLOCK_MIRROR_PROGRESS_H
#include <jansson.h>
#include <stdbool.h>

#include "block/mirror.h"

/* final: the copy is over (every disk was ready): rates are the averages
 * from the start of each disk's mirror to its ready, and eta_s is 0. */
json_t *block_mirror_progress(struct block_mirror *bm, bool final);
#endif
