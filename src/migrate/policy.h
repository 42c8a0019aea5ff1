/* The convergence policy of a live migration, as a pure function.
 *
 * Contract: migrate_policy_decide reads the statistics of one query-migrate
 * poll, the tuning and the policy's own state, and says what to do; it issues
 * no QMP command, reads no clock and touches nothing else (the caller passes
 * "now", carries the returned state to the next poll, then acts).
 *
 * What it decides, per mode (tuning "converge"):
 *   auto      QEMU's auto-converge throttles the vCPUs by itself (30% at the
 *             first throttled pass, +20% per pass: tuning_qemu_parameters); once
 *             that reaches 50%, or the guest outruns the link, the downtime
 *             limit doubles step by step up to max-downtime.
 *   throttle  QEMU's auto-converge only: the policy never acts.
 *   downtime  the downtime limit doubles up to max-downtime.
 *   cancel    the migration is given up.
 *   postcopy  switch to post-copy once the first full pass is done
 *             (dirty-sync-count >= 2), or as soon as it is not converging.
 * With post-copy set up on both hosts (postcopy_ok), auto switches to
 * post-copy where it would raise the downtime limit; without it, postcopy
 * acts as auto (the caller never lets that happen: the move is refused). 
 * "Not converging": the remaining RAM shrank by less than 10% over each of 3
 * passes, or the dirty rate stayed at 90% or more of the transfer rate for
 * 5 s (from the second pass on; at most one action per 5 s for that).
 * Whatever the mode, a migration still running after max-duration is
 * cancelled.  The policy never raises the throttle itself. */
#ifndef VMOVE_POLICY_H
#define VMOVE_POLICY_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "migrate/tuning.h"

/* The policy's memory between polls; all zero at the start of a transfer. */
struct migrate_policy_state {
    int64_t last_pass;               /* the pass (dirty-sync-count) last seen */
    uint64_t pass_start_remaining;   /* remaining RAM when that pass began */
    int passes_not_converging;
    uint64_t outrun_since_ms;        /* dirty rate above the link rate since then; 0: not */
    uint64_t last_policy_ms;         /* when the policy last acted (or chose not to) */
};

struct migrate_policy_input {
    /* query-migrate */
    uint64_t remaining;              /* ram.remaining, bytes */
    double dirty_rate_Bps;           /* ram.dirty-pages-rate x page size */
    double transfer_rate_Bps;        /* ram.mbps, in bytes/s */
    int64_t pass;                    /* ram.dirty-sync-count */
    int64_t expected_downtime_ms;    /* QEMU's estimate (reported, not decided on) */
    int throttle_pct;                /* cpu-throttle-percentage */
    /* ours */
    uint64_t now_ms;
    uint64_t elapsed_ms;             /* since the migration started */
    int downtime_limit_ms;           /* the limit QEMU has now */
    bool failed;                     /* a failure is already on its way: only the pass
                                      * bookkeeping (and its action) still runs */
    const char *dest;                /* the destination, for the reason text */
    /* tuning */
    enum converge_policy converge;
    bool postcopy_ok;                /* both hosts allow post-copy and QEMU is set up for it */
    int max_downtime_ms;
    int max_duration_s;
    struct migrate_policy_state state;
};

/* What to do, in this order.  Usually one of them or nothing; both only when
 * a downtime step and max-duration fall in the same poll. */
struct policy_action {
    int downtime_ms;                 /* > 0: set QEMU's downtime-limit to this */
    char note[320];                  /* for the log and the job's policy_actions */
    bool postcopy;                   /* switch to post-copy (note says why) */
    bool cancel;                     /* fail the migration (ERR_TIMEOUT) with: */
    const char *hint;
    char reason[512];
    struct migrate_policy_state state;   /* the state to carry to the next poll */
};

/* Fills the query-migrate part of *in from QMP's reply (other fields kept). */
void migrate_policy_read_stats(const json_t *info, struct migrate_policy_input *in);
struct policy_action migrate_policy_decide(const struct migrate_policy_input *in);
/* For the progress report: no sign of not converging. */
bool migrate_policy_converging(const struct migrate_policy_state *s);
#endif
