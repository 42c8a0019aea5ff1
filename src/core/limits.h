/* Simultaneous-migration limits and the FIFO queue of work beyond them.
 *
 * Each host has a number of slots per kind (live migrations, storage
 * migrations; settings max_live_migrations / max_storage_migrations).  A
 * migration holds a slot on its source and one on its destination.  Work
 * that finds no free slot is not refused: it waits in a FIFO queue per host
 * and kind, and starts by itself when a slot frees or the limit is raised. */
#ifndef VMOVE_LIMITS_H
#define VMOVE_LIMITS_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct agent;
struct job;

enum slot_kind { SLOT_LIVE, SLOT_STORAGE, SLOT_KINDS };

typedef void (*slot_start_fn)(void *arg);

/* Ask for a local slot for this job: start(arg) runs (from the event loop,
 * never inside this call) once one is held.  Until then the job is queued. */
void limits_enqueue(struct agent *a, enum slot_kind kind, struct job *job, slot_start_fn start, void *arg);
/* Take a slot now if one is free (no queueing), e.g. for an incoming migration. */
bool limits_try_take(struct agent *a, enum slot_kind kind, const char *holder);
/* Give a slot back (by job or holder); the next queued job starts. */
void limits_release(struct agent *a, enum slot_kind kind, const char *holder);
/* Remove a queued job (cancel).  true if it was queued. */
bool limits_dequeue(struct agent *a, struct job *job);
/* 1-based position of a queued job, 0 if not queued. */
int limits_position(struct agent *a, struct job *job);
int limits_in_use(struct agent *a, enum slot_kind kind);
int limits_max(struct agent *a, enum slot_kind kind);
/* A limit changed: start whatever now fits. */
void limits_kick(struct agent *a);
/* Holder name of a job ("job:ID"). */
void limits_job_holder(const struct job *job, char *buf, size_t len);
void limits_free_all(struct agent *a);
#endif
