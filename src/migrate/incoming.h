/* Destination side of a live migration: the peer methods a source host
 * calls (migrate.prepare, migrate.finish, migrate.resolve) and the recovery
 * of half-done incoming migrations when vmoved restarts.
 *
 * The destination resumes the guest only after the source said "finish",
 * which it says only once QEMU reported the migration completed and the
 * source guest is stopped; and the destination records that commitment in
 * runtime.json before resuming.  An incoming VM that is not committed is
 * killed when its source goes away or asks to resolve it: so the guest runs
 * on exactly one host. */
#ifndef VMOVE_INCOMING_H
#define VMOVE_INCOMING_H
#include "api/api.h"

struct incoming;

void incoming_recover(struct agent *a);
void incoming_free_all(struct agent *a);
void incoming_free_reservations(struct agent *a);
#endif
