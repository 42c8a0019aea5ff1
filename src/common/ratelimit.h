/* A fixed-window rate limit, for log lines and audit records that a remote
 * party can cause: at most `burst` events per window; what is dropped is
 * counted, and the next allowed event can say how many were. */
#ifndef VMOVE_RATELIMIT_H
#define VMOVE_RATELIMIT_H
#include <stdbool.h>
#include <stdint.h>

struct ratelimit {
    uint64_t window_start_ms;
    int used;
    int suppressed;
};

/* true: go ahead; *suppressed (if not NULL) then gets the number of events
 * dropped since the last one allowed, and the count restarts. */
bool ratelimit_allow(struct ratelimit *r, uint64_t now_ms, int burst, int window_ms, int *suppressed);
#endif
