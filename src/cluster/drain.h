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
#include <jansson.h>

struct agent;
struct job;

/* Mark this host drained and create the drain job (to: optional array of
 * "HOST" or "HOST=ADDR:PORT" candidates; user: who asked, passed on to the
 * destinations).  NULL with *err if it cannot start.  The caller answers its
 * client with the job, then calls drain_begin(). */
struct job *drain_create(struct agent *a, json_t *to, json_t *tuning, const char *user, json_t **err);
/* Ask the candidates for their capacity; the migrations follow. */
void drain_begin(struct agent *a);
/* Back in service (`host resume`): NULL, or an error if a drain still runs. */
json_t *drain_resume(struct agent *a);
void drain_free_all(struct agent *a);
#endif
