/* Unit tests for the --bandwidth cap under multifd (src/migrate/rate_cap.c):
 * the first max-bandwidth, and the feedback against a model of QEMU 10 that
 * sends a fixed amount on top of its cap (what was measured). */
#include "migrate/rate_cap.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#define MBIT(n) ((uint64_t)(n) * 1000000 / 8)

static void first_cap(void **state)
{
    struct rate_cap c;
    rate_cap_init(&c, MBIT(500), 4);   /* 62.5 MB/s less 4 x 4 MiB/s */
    assert_int_equal(c.param, MBIT(500) - 4 * RATE_CAP_OVERSHOOT_PER_CHANNEL);
    rate_cap_init(&c, MBIT(500), 1);   /* one stream: QEMU counts exactly */
    assert_int_equal(c.param, MBIT(500));
    rate_cap_init(&c, MBIT(100), 4);   /* more overshoot than limit: the floor */
    assert_int_equal(c.param, MBIT(100) / 16);
    rate_cap_init(&c, 0, 4);
    assert_int_equal(rate_cap_sample(&c, 1000, 0, 1 << 30), 0);
}

/* QEMU as measured: it sends its cap plus `over` bytes/s, while pages are left. */
static uint64_t run(struct rate_cap *c, uint64_t over, int seconds, uint64_t remaining)
{
    uint64_t sent = 0, t = 1000, last_rate = 0;
    rate_cap_sample(c, t, sent, remaining);
    for (int i = 0; i < seconds * 4; i++) {
        t += 250;
        last_rate = c->param + over;
        sent += last_rate / 4;
        uint64_t next = rate_cap_sample(c, t, sent, remaining);
        if (next)
            assert_int_equal(next, c->param);
    }
    return last_rate;
}

static void converges_to_the_limit(void **state)
{
    struct rate_cap c;
    /* The model underestimates the overshoot by half: the loop makes up for it. */
    rate_cap_init(&c, MBIT(500), 4);
    uint64_t rate = run(&c, 2 * 4 * RATE_CAP_OVERSHOOT_PER_CHANNEL, 8, 1ULL << 30);
    assert_true(rate > MBIT(500) * 95 / 100 && rate < MBIT(500) * 105 / 100);
    assert_false(rate_cap_unreachable(&c));
    /* It overestimates: the cap goes up again, a tenth of the limit a second at most. */
    rate_cap_init(&c, MBIT(200), 4);
    rate = run(&c, 0, 12, 1ULL << 30);
    assert_true(rate > MBIT(200) * 95 / 100 && rate < MBIT(200) * 105 / 100);
}

static void nothing_learnt_when_out_of_pages(void **state)
{
    struct rate_cap c;
    rate_cap_init(&c, MBIT(500), 4);
    uint64_t before = c.param;
    /* Sending below the limit with almost nothing left: not the cap's doing. */
    uint64_t sent = 0, t = 1000;
    rate_cap_sample(&c, t, sent, 1 << 20);
    for (int i = 0; i < 8; i++) {
        t += 250, sent += 1 << 20;
        assert_int_equal(rate_cap_sample(&c, t, sent, 1 << 20), 0);
    }
    assert_int_equal(c.param, before);
}

static void unreachable_limit_is_said(void **state)
{
    struct rate_cap c;
    rate_cap_init(&c, MBIT(50), 4);   /* 4 channels alone send ~134 Mbit/s */
    run(&c, 4 * RATE_CAP_OVERSHOOT_PER_CHANNEL, 5, 1ULL << 30);
    assert_int_equal(c.param, c.floor);
    assert_true(rate_cap_unreachable(&c));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(first_cap),
        cmocka_unit_test(converges_to_the_limit),
        cmocka_unit_test(nothing_learnt_when_out_of_pages),
        cmocka_unit_test(unreachable_limit_is_said),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
