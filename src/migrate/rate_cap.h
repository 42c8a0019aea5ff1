/* Holding `move --bandwidth` with multifd: what vmove gives QEMU as
 * max-bandwidth so that the migration sends at the user's limit.
 *
 * QEMU 10 checks its limit every 100 ms in the migration thread, against
 * the bytes sent so far; with multifd it counts a packet (up to 512 KiB)
 * only once its channel has written it, and the thread hands packets to
 * idle channels without waiting.  When a window's budget is found used up,
 * the packets still in the channels go out on top of it: about one packet
 * per channel per window more than asked, whatever the limit.  Measured
 * with 4 channels: 336 Mbit/s sent for a 200 Mbit/s limit, 635 for 500
 * (docs/MIGRATION.md, "Bandwidth").  So the cap given to QEMU starts at the
 * limit minus that overshoot, and a feedback loop on the rate achieved
 * (QEMU's own byte counter, once a second) corrects what the model missed.
 *
 * Pure functions: samples in, the value to set out (tests/unit/test_rate_cap.c). */
#ifndef VMOVE_MIGRATE_RATE_CAP_H
#define VMOVE_MIGRATE_RATE_CAP_H
#include <stdbool.h>
#include <stdint.h>

/* What each multifd channel sends beyond QEMU's limit, per second: 0.8 of
 * a 512 KiB packet per 100 ms window, as measured (4 channels: +17 MB/s). */
#define RATE_CAP_OVERSHOOT_PER_CHANNEL (4ULL << 20)
/* How long each measurement lasts. */
#define RATE_CAP_WINDOW_MS 1000

struct rate_cap {
    uint64_t target;         /* the user's limit, bytes/s; 0: no limit, nothing to do */
    uint64_t param;          /* QEMU's max-bandwidth now */
    uint64_t floor;          /* the least param given (a 16th of the target) */
    uint64_t t0_ms, sent0;   /* the window being measured */
    int over_windows;        /* windows in a row above the limit with param at its floor */
};

/* The first max-bandwidth for a limit of target bytes/s over `channels`
 * streams (1: no multifd, QEMU counts exactly). */
void rate_cap_init(struct rate_cap *c, uint64_t target, int channels);
/* One statistics sample of the transfer: bytes sent so far and RAM still to
 * send.  Returns the new max-bandwidth to set, or 0 to leave it. */
uint64_t rate_cap_sample(struct rate_cap *c, uint64_t now_ms, uint64_t sent, uint64_t remaining);
/* True once the rate stayed above the limit for 3 windows with the cap at
 * its floor: the channels alone send more than the limit. */
bool rate_cap_unreachable(const struct rate_cap *c);
#endif
