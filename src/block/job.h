/* A tracker of QEMU block jobs by id, fed with query-block-jobs answers:
 * for each job an owner started (a mirror now, block-commit later), its
 * last known state and whether QEMU still lists it.
 *
 * Contract: pure bookkeeping, no QMP of its own.  Ids not tracked are
 * ignored (other owners' jobs).  A job QEMU stops listing ended (completed,
 * cancelled or failed, as its events or the owner's next query tell): the
 * tracker only says that it is gone. */
#ifndef VMOVE_BLOCK_JOB_H
#define VMOVE_BLOCK_JOB_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qemu/monitor.h"

struct block_job_state {
    char *id;
    char *type, *status;              /* QEMU's words ("mirror", "ready", ...), NULL until listed */
    uint64_t offset, len;
    bool ready;
    bool listed;                      /* in the last answer */
    bool seen;                        /* in some answer so far */
};

struct block_jobs {
    struct block_job_state *v;
    size_t n;
};

/* Track id (copied); tracking it twice is harmless.  Returns its index. */
size_t block_jobs_track(struct block_jobs *t, const char *id);
/* One query-block-jobs answer: tracked jobs take its values, those absent
 * are marked not listed. */
void block_jobs_update(struct block_jobs *t, const struct qmon_block_job *jobs, size_t n);
/* NULL if id is not tracked. */
const struct block_job_state *block_jobs_get(const struct block_jobs *t, const char *id);
/* How many tracked jobs the last answer listed. */
size_t block_jobs_listed(const struct block_jobs *t);
void block_jobs_free(struct block_jobs *t);
#endif
