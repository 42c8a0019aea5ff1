/* One mirror state machine for a set of disks of one running QEMU, shared
 * by the live storage move (into new local qcow2 files, then a pivot) and
 * the shared-nothing migration (into the destination's NBD exports, kept in
 * sync until the switch-over).
 *
 *   block_mirror_start:  [FILE: create the target files (O_EXCL, qemu-img)]
 *                        query-block: each disk's current node (asked,
 *                        never assumed: a pivot or a restart changes it),
 *                        target nodes (FILE: file + qcow2; NBD: nbd client),
 *                        [a disk with a target backing: query-named-block-nodes,
 *                        the named nodes of its chain, closed after the pivot]
 *                        blockdev-mirror sync=full (sync=top onto a target
 *                        with a backing), copy-mode write-blocking
 *   mirroring            query-block-jobs every 250 ms -> on_progress;
 *                        every disk ready -> on_ready (once)
 *   block_mirror_pivot   (FILE) one disk at a time: block-job-complete, then
 *                        query-block says whether the device uses the target
 *                        node -> on_pivoted(disk), old nodes deleted; all
 *                        pivoted -> on_done
 *   block_mirror_finish  (NBD, guest stopped) plain cancel of the ready
 *                        mirrors: QEMU leaves the destination a complete
 *                        copy; once QEMU lists none, the NBD nodes are
 *                        deleted -> on_done
 *   block_mirror_abort   rollback: force cancel (the guest's vCPUs stopped for
 *                        the moment, see mirror.c), query-block adopts pivots
 *                        QEMU made anyway, target nodes deleted ->
 *                        on_rolled_back; the owner removes created files
 *                        (block_mirror_disk_remove) and writes its notes
 *   block_mirror_drop    force cancel, fire and forget (a failed migration:
 *                        the source disks stay in use)
 *
 * Contract:
 *  - Every QMP call is a qmon_* with the owner's struct qmon_owner: a reply
 *    after the owner ended is dropped.  The owner frees the machine with
 *    block_mirror_free from its owner's release (no reply can then still
 *    reach it), and calls block_mirror_stop when it ends (the timer goes).
 *  - Callbacks run from the event loop, never from inside the block_mirror_*
 *    call that caused them, except on_failed from block_mirror_start (a
 *    target that cannot be created, a monitor that refuses at once) and
 *    on_qemu_gone from block_mirror_abort.  A callback may end the owner.
 *  - on_failed is called at most once per phase with what went wrong; the
 *    owner words the message and decides (abort, drop).  After it the
 *    machine does nothing until the owner calls abort or drop.
 *  - The disks are public: the owner reads them (progress, its record) and,
 *    when it restores a machine from its record after a restart, fills them
 *    before block_mirror_recover. */
#ifndef VMOVE_BLOCK_MIRROR_H
#define VMOVE_BLOCK_MIRROR_H
#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qemu/monitor.h"
#include "qemu/qmp.h"

enum block_mirror_target { BLOCK_MIRROR_FILE, BLOCK_MIRROR_NBD };

struct block_mirror;

struct block_mirror_disk {
    struct block_mirror *bm;          /* a reply's arg is the disk: its machine */
    char *id;                         /* the disk id: QEMU's device is <id>-dev */
    char *source;                     /* FILE: the file QEMU must have open now; NBD: NULL (not checked) */
    char *target;                     /* FILE: the new qcow2 file; NBD: NULL */
    char *export_name;                /* NBD: the export on the destination */
    uint64_t vsize;                   /* the disk's virtual size (FILE: the target's, created with it) */
    char *node, *file_node;           /* target nodes (NBD: file_node NULL) */
    char *old_node, *old_file_node;   /* what the device used before the pivot, from query-block */
    char *job_id;                     /* the QEMU block job */
    char *target_backing;             /* FILE: NULL, or the target's backing (a name relative to its directory:
                                       * the copy of the disk's frozen layers, made by the owner): sync=top */
    char **old_chain;                 /* named nodes below old_node in its chain (checkpoint layers), top first:
                                       * closed after the pivot with the old nodes */
    size_t n_old_chain;
    bool created;                     /* FILE: we created the target (O_EXCL) */
    bool file_added, fmt_added;       /* target nodes exist in QEMU */
    bool mirroring;                   /* blockdev-mirror accepted */
    bool ready;
    bool pivot_requested, pivoted;
    bool old_released;                /* QEMU closed the source (blockdev-del ok) */
    uint64_t offset, len, last_offset, last_ms, t_ready, t_pivot, pivot_ms;
    uint64_t t_mirror;                /* when QEMU accepted its blockdev-mirror */
    double rate;                      /* bytes/s, smoothed */
};

enum block_mirror_fail {
    BLOCK_MIRROR_FAIL_CREATE,         /* desc: why the target file could not be made */
    BLOCK_MIRROR_FAIL_NO_MONITOR,     /* QEMU's monitor is not connected */
    BLOCK_MIRROR_FAIL_QUERY,          /* query-block failed (desc) */
    BLOCK_MIRROR_FAIL_SOURCE,         /* FILE: QEMU has another file open (file, may be NULL) */
    BLOCK_MIRROR_FAIL_TARGET,         /* blockdev-add of a target node refused (desc) */
    BLOCK_MIRROR_FAIL_MIRROR,         /* blockdev-mirror refused (desc) */
    BLOCK_MIRROR_FAIL_VANISHED,       /* a job ended before it was complete */
    BLOCK_MIRROR_FAIL_STOPPED,        /* a BLOCK_JOB_COMPLETED/CANCELLED event (desc: error or event) */
    BLOCK_MIRROR_FAIL_STALLED,        /* no progress for stall_ms */
    BLOCK_MIRROR_FAIL_PIVOT_REFUSED,  /* block-job-complete refused (desc) */
    BLOCK_MIRROR_FAIL_PIVOT_NODE,     /* the job ended, the device kept node (may be NULL) */
};

struct block_mirror_failure {
    enum block_mirror_fail what;
    const struct block_mirror_disk *disk;   /* NULL if not about one disk */
    const char *desc;                 /* QEMU's or qemu-img's words, or NULL */
    const char *file, *node;          /* SOURCE: the file QEMU has open; PIVOT_NODE: the node it uses */
};

struct block_mirror_ops {
    qmp_t *(*mon)(void *arg);                      /* QEMU's monitor now, NULL if none */
    void (*on_state)(void *arg);                   /* disk flags changed: persist them (may be NULL) */
    void (*on_mirroring)(void *arg);               /* every mirror job accepted (may be NULL) */
    void (*on_progress)(void *arg);                /* after each poll while mirroring (may be NULL) */
    void (*on_ready)(void *arg);                   /* every disk in sync (once) */
    void (*on_pivoted)(void *arg, struct block_mirror_disk *d);   /* QEMU runs d from its target now */
    void (*on_done)(void *arg);                    /* pivot: all pivoted; finish: the jobs ended */
    void (*on_failed)(void *arg, const struct block_mirror_failure *f);
    void (*on_rolled_back)(void *arg, bool timed_out);   /* abort is over (timed_out: jobs lingered) */
    /* Checked before each poll and at abort (may be NULL); when true the
     * machine stops and calls on_qemu_gone instead. */
    bool (*qemu_gone)(void *arg);
    void (*on_qemu_gone)(void *arg);
    bool (*guest_running)(void *arg);              /* may be NULL: never pause for a cancel */
};

/* abort: how long QEMU may take to drop the cancelled jobs. */
#define BLOCK_MIRROR_CANCEL_WAIT_MS 60000

struct block_mirror_config {
    const char *name;                 /* the VM, for logs */
    enum block_mirror_target kind;
    int timeout_ms;                   /* per QMP command */
    int64_t speed;                    /* bytes/s, 0: unlimited */
    bool explicit_auto;               /* send auto-finalize/auto-dismiss true */
    int stall_ms;                     /* 0: no stall watch; else fail after this long without progress */
    /* NBD targets */
    const char *host;
    int port;
    const char *tls_creds, *tls_hostname;   /* NULL: plain NBD */
};

/* n disks, to be filled with block_mirror_set_disk (or from a record). */
struct block_mirror *block_mirror_new(struct event_base *base, struct qmon_owner *owner,
                                      const struct block_mirror_config *cfg, const struct block_mirror_ops *ops,
                                      void *arg, size_t n);
/* Stops polling; no callback runs after this.  Idempotent. */
void block_mirror_stop(struct block_mirror *bm);
void block_mirror_free(struct block_mirror *bm);

size_t block_mirror_count(const struct block_mirror *bm);
struct block_mirror_disk *block_mirror_disk(struct block_mirror *bm, size_t i);
/* Strings are copied; source/target/export_name/file_node may be NULL. */
void block_mirror_set_disk(struct block_mirror *bm, size_t i, const char *id, const char *source,
                           const char *target, const char *export_name, uint64_t vsize, const char *node,
                           const char *file_node, const char *job_id);

/* FILE: the target gets backing (relative to the target's directory)
 * instead of being standalone, and only the active layer is mirrored
 * (sync=top): the disk's checkpoint layers were copied by the owner. */
void block_mirror_set_target_backing(struct block_mirror *bm, size_t i, const char *backing);

/* FILE: a disk's durable state, for the owner's record (runtime.json's
 * storage_move.disks[]: id, source, target, node, file_node, old_node,
 * old_file_node, job_id, created, pivot_requested, pivoted), and back after
 * a restart (absent strings become "", absent old nodes NULL). */
json_t *block_mirror_disk_record(const struct block_mirror_disk *d);
void block_mirror_disk_restore(struct block_mirror *bm, size_t i, json_t *rec);

void block_mirror_start(struct block_mirror *bm);
void block_mirror_pivot(struct block_mirror *bm);
void block_mirror_finish(struct block_mirror *bm);
void block_mirror_abort(struct block_mirror *bm);
void block_mirror_drop(struct block_mirror *bm);
/* After a restart: anything that may exist in QEMU is undone as by abort
 * (errors for what does not are harmless; pivots QEMU made are adopted). */
void block_mirror_recover(struct block_mirror *bm);

/* BLOCK_JOB_* events of the VM's QEMU (the owner forwards its hooks). */
void block_mirror_event(struct block_mirror *bm, const char *name, json_t *data);

bool block_mirror_all_ready(const struct block_mirror *bm);
/* Sums over the disks (bytes). */
void block_mirror_totals(const struct block_mirror *bm, uint64_t *done, uint64_t *total);
/* FILE: unlink a target this machine created: 0, or -1 with errno (ENOENT
 * is success). */
int block_mirror_disk_remove(const struct block_mirror_disk *d);
#endif
