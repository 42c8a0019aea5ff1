/* The agent's journal: an SQLite database (STATE/journal.db) of state
 * changes and jobs.  It is what a restarted vmoved reads to learn which jobs
 * were in flight, and what `vmove jobs` and the event history show.
 *
 * Writes are synchronous (WAL, synchronous=NORMAL in WAL mode still keeps the
 * database consistent across a crash of vmoved; a power loss can lose the
 * last transactions, never corrupt the file). */
#ifndef VMOVE_JOURNAL_H
#define VMOVE_JOURNAL_H
#include <jansson.h>
#include <stdint.h>

typedef struct journal journal_t;

journal_t *journal_open(const char *path, char *err, size_t errlen);
void journal_close(journal_t *j);

/* An entry in the event history: kind e.g. "vm.state", detail any JSON. */
int journal_event(journal_t *j, const char *vm, const char *kind, json_t *detail);
/* Recent events, newest last; vm may be NULL for all. */
json_t *journal_events(journal_t *j, const char *vm, int limit);

/* Jobs.  The job row is the durable record; `record` holds the whole job as
 * JSON (kind, vm, state, phase, params, progress, error, times). */
int64_t journal_job_insert(journal_t *j, json_t *record);
int journal_job_update(journal_t *j, int64_t id, json_t *record);
json_t *journal_job_get(journal_t *j, int64_t id);
/* Jobs in one of the given states ("running", "queued"...), oldest first; states==NULL for all. */
json_t *journal_jobs(journal_t *j, const char *const *states, int limit);
/* Record a delegation token's nonce: 0 if first use, 1 if seen before. */
int journal_token_use(journal_t *j, const char *nonce, long long exp);
#endif
