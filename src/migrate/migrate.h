/* Source side of a live migration: the `migrate` job.
 *
 * Phases (journaled in the job record and in the VM's runtime.json):
 *   prepare    the destination checks everything and starts QEMU -incoming
 *   transfer   QEMU pre-copies memory; vmove follows progress and applies
 *              the convergence policy
 *   switchover QEMU completed: the source guest is stopped, the destination
 *              is told to finish (commit + resume)
 *   confirm    the destination runs the guest: the source QEMU quits and the
 *              VM leaves this host's inventory
 * Failure or cancel before switchover: the destination aborts, the guest
 * keeps running here.  Lost contact during switchover: the source asks the
 * destination to resolve, and resumes only on "aborted"/"absent". */
#ifndef VMOVE_MIGRATE_H
#define VMOVE_MIGRATE_H
#include <jansson.h>

struct agent;
struct job;

/* After the inventory is loaded: settle migrations interrupted by a restart. */
void migrate_recover(struct agent *a);
/* Queued migrations (not started) take their places in the queue again. */
void migrate_recover_queued(struct agent *a);
void migrate_free_all(struct agent *a);
/* Start (queue) a live migration of VM name to host `to` (peer name or
 * ADDR:PORT) for user ("user:alice").  move_token: the user's signed token
 * (api/move_token.h, checked by the caller), forwarded to the destination,
 * which then checks the user's rights too; NULL: the move runs as this host
 * (local root, a drain), and the destination checks this host only.  NULL
 * with *err on refusal. */
struct job *migrate_submit(struct agent *a, const char *name, const char *to, json_t *tuning, const char *user,
                           json_t *move_token, json_t **err);
#endif
