/* One block-commit of one disk, followed to its end: the merge behind
 * `vmove checkpoint delete` on a running VM.
 *
 *   start   the job is adopted if QEMU still lists it (a vmoved restart
 *           mid-merge), else block-commit is sent (auto-finalize off for an
 *           intermediate commit, so the graph changes only on job-finalize)
 *   follow  query-block-jobs every 200 ms through the tracker of
 *           block/job.h: an intermediate job in "pending" is finalized; an
 *           active one in "ready" is reported (on_ready), and the owner
 *           pivots with block_commit_pivot when it has paused the guest
 *   end     the job is no longer listed: on_done.  The tracker cannot say
 *           whether it succeeded (QEMU dismisses it): the owner checks the
 *           graph (is the top still in the chain?).
 *
 * Contract: the owner's qmon_owner guards every reply; block_commit_free
 * stops the polling (safe in callbacks). */
#ifndef VMOVE_BLOCK_COMMIT_H
#define VMOVE_BLOCK_COMMIT_H
#include <stdbool.h>

#include "qemu/monitor.h"

struct event_base;
struct block_commit;

struct block_commit_ops {
    qmp_t *(*mon)(void *arg);                     /* NULL: QEMU is gone */
    void (*on_ready)(void *arg);                  /* active commit: in sync, waiting for a pivot */
    void (*on_done)(void *arg, const char *error);   /* error: QEMU refused a command */
};

struct block_commit_config {
    const char *job_id;
    const char *device, *top_node, *base_node;
    const char *backing_file;                     /* intermediate only (relative name) */
    bool active;
    int64_t speed;                                /* bytes/s, 0: unlimited */
};

struct block_commit *block_commit_new(struct event_base *base, struct qmon_owner *owner,
                                      const struct block_commit_config *cfg, const struct block_commit_ops *ops,
                                      void *arg);
void block_commit_start(struct block_commit *bc);
/* Active commit after on_ready: block-job-complete (the pivot). */
void block_commit_pivot(struct block_commit *bc);
void block_commit_free(struct block_commit *bc);
#endif
