#include "common/ratelimit.h"

bool ratelimit_allow(struct ratelimit *r, uint64_t now_ms, int burst, int window_ms, int *suppressed)
{
    if (now_ms - r->window_start_ms >= (uint64_t)window_ms) {
        r->window_start_ms = now_ms;
        r->used = 0;
    }
    if (r->used >= burst) {
        r->suppressed++;
        return false;
    }
    r->used++;
    if (suppressed)
        *suppressed = r->suppressed;
    r->suppressed = 0;
    return true;
}
