/* Host drain (evacuation) for maintenance: `vmove host drain`.
 *
 * The host is marked drained (nothing new is placed on it: no incoming
 * migrations, no new or started VMs) until `vmove host resume`.  Every running
 * VM is live-migrated away; each migration is an ordinary queued migrate job,
 * so the per-host limits apply.  Destinations are chosen by free memory
 * (reported by each candidate's host.show), among hosts that accept incoming
 * migrations and are not drained themselves. */
#ifndef VMOVE_DRAIN_H
#define VMOVE_DRAIN_H
#include "api/api.h"

void drain_free_all(struct agent *a);
#endif
