/* The max-bandwidth that holds the user's limit (rate_cap.h). */
#include "migrate/rate_cap.h"

#include <string.h>

void rate_cap_init(struct rate_cap *c, uint64_t target, int channels)
{
    memset(c, 0, sizeof *c);
    c->target = target;
    c->floor = target / 16 ? target / 16 : 1;
    uint64_t over = channels > 1 ? (uint64_t)channels * RATE_CAP_OVERSHOOT_PER_CHANNEL : 0;
    c->param = target > over + c->floor ? target - over : c->floor;
}

static uint64_t clamp(double v, uint64_t lo, uint64_t hi)
{
    return v < (double)lo ? lo : v > (double)hi ? hi : (uint64_t)v;
}

uint64_t rate_cap_sample(struct rate_cap *c, uint64_t now_ms, uint64_t sent, uint64_t remaining)
{
    if (!c->target)
        return 0;
    if (!c->t0_ms || sent < c->sent0 || now_ms < c->t0_ms) {
        c->t0_ms = now_ms, c->sent0 = sent;
        return 0;
    }
    uint64_t dt = now_ms - c->t0_ms;
    if (dt < RATE_CAP_WINDOW_MS)
        return 0;
    double achieved = (double)(sent - c->sent0) * 1000.0 / (double)dt;
    c->t0_ms = now_ms, c->sent0 = sent;
    double err = (double)c->target - achieved;
    c->over_windows = err < -0.1 * (double)c->target && c->param == c->floor ? c->over_windows + 1 : 0;
    /* Below the limit with little left to send: QEMU ran out of pages, the
     * cap did not hold it back; nothing to learn. */
    if (err > 0 && (double)remaining < (double)c->target * (double)dt / 1000.0)
        return 0;
    /* The overshoot is an amount on top of the cap, so correct by the
     * difference (a ratio would crawl); upward at most a tenth of the limit
     * a window: a pass through zero pages sends little without being held. */
    double step = err > 0 ? (err < 0.1 * (double)c->target ? err : 0.1 * (double)c->target) : err;
    uint64_t next = clamp((double)c->param + 0.8 * step, c->floor, 2 * c->target);
    uint64_t diff = next > c->param ? next - c->param : c->param - next;
    if (diff < c->target / 50)
        return 0;
    c->param = next;
    return next;
}

bool rate_cap_unreachable(const struct rate_cap *c) { return c->over_windows >= 3; }
