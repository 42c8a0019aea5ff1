/* Unit tests for the convergence policy (src/migrate/policy.c): each mode,
 * the downtime steps, max-duration, outrun detection, and a converging
 * migration left alone.  The policy is pure: every test feeds it polls
 * (statistics and a clock) and checks the action and the carried state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "migrate/policy.h"
#include "migrate/tuning.h"

#define GIB (1024ULL * 1024 * 1024)

/* A poll of a migration to h2: 1 GiB remaining, the link at 100 MB/s, a
 * quiet guest (1 MB/s dirty), first pass, t = 10 s. */
static struct migrate_policy_input poll_of(enum converge_policy mode)
{
    struct migrate_policy_input in;
    memset(&in, 0, sizeof in);
    in.remaining = GIB;
    in.transfer_rate_Bps = 100e6;
    in.dirty_rate_Bps = 1e6;
    in.pass = 1;
    in.now_ms = 10000;
    in.elapsed_ms = 10000;
    in.downtime_limit_ms = TUNING_DEFAULT_DOWNTIME_MS;
    in.dest = "h2";
    in.converge = mode;
    in.max_downtime_ms = TUNING_DEFAULT_MAX_DOWNTIME_MS;
    in.max_duration_s = TUNING_DEFAULT_MAX_DURATION_S;
    return in;
}

/* One poll: the state carries over, and so does a downtime step (as
 * migrate.c sets QEMU's limit). */
static struct policy_action step(struct migrate_policy_input *in)
{
    struct policy_action act = migrate_policy_decide(in);
    in->state = act.state;
    if (act.downtime_ms > 0)
        in->downtime_limit_ms = act.downtime_ms;
    return act;
}

/* The next pass, with the remaining RAM scaled by num/den, 1 s later. */
static struct policy_action next_pass(struct migrate_policy_input *in, uint64_t num, uint64_t den)
{
    in->pass++;
    in->remaining = in->remaining * num / den;
    in->now_ms += 1000;
    in->elapsed_ms += 1000;
    return step(in);
}

static void assert_nothing(const struct policy_action *act)
{
    assert_int_equal(act->downtime_ms, 0);
    assert_false(act->cancel);
    assert_string_equal(act->note, "");
}

static void test_converging_left_alone(void **state)
{
    enum converge_policy modes[] = {CONVERGE_AUTO, CONVERGE_THROTTLE, CONVERGE_DOWNTIME, CONVERGE_CANCEL};
    for (size_t i = 0; i < 4; i++) {
        struct migrate_policy_input in = poll_of(modes[i]);
        in.throttle_pct = 90;
        struct policy_action act = step(&in);
        assert_nothing(&act);
        for (int p = 0; p < 20; p++) {
            act = next_pass(&in, 1, 2);   /* halves at every pass */
            assert_nothing(&act);
            assert_int_equal(act.state.passes_not_converging, 0);
            assert_true(migrate_policy_converging(&act.state));
        }
        assert_int_equal(in.state.last_pass, 21);
        assert_int_equal(in.downtime_limit_ms, TUNING_DEFAULT_DOWNTIME_MS);
    }
}

/* A pass must shrink the remaining RAM by more than 10%; exactly 10% is
 * not converging, and one good pass clears the count. */
static void test_shrink_threshold(void **state)
{
    struct migrate_policy_input in = poll_of(CONVERGE_CANCEL);
    in.remaining = 100000000;    /* every step below divides exactly */
    step(&in);
    for (int p = 0; p < 3; p++) {
        struct policy_action act = next_pass(&in, 89, 100);
        assert_nothing(&act);
        assert_int_equal(act.state.passes_not_converging, 0);
    }
    struct policy_action act = next_pass(&in, 9, 10);
    assert_int_equal(act.state.passes_not_converging, 1);
    act = next_pass(&in, 9, 10);
    assert_int_equal(act.state.passes_not_converging, 2);
    assert_true(migrate_policy_converging(&act.state));
    act = next_pass(&in, 89, 100);
    assert_nothing(&act);
    assert_int_equal(act.state.passes_not_converging, 0);
}

/* The same pass seen again (polls are 4 per second) is not a new pass. */
static void test_same_pass_counted_once(void **state)
{
    struct migrate_policy_input in = poll_of(CONVERGE_CANCEL);
    step(&in);
    next_pass(&in, 1, 1);
    for (int i = 0; i < 10; i++) {
        in.now_ms += 250;
        struct policy_action act = step(&in);
        assert_nothing(&act);
        assert_int_equal(act.state.passes_not_converging, 1);
    }
}

static void test_cancel_mode(void **state)
{
    struct migrate_policy_input in = poll_of(CONVERGE_CANCEL);
    step(&in);
    struct policy_action act = next_pass(&in, 1, 1);
    assert_nothing(&act);
    act = next_pass(&in, 1, 1);
    assert_nothing(&act);
    assert_true(migrate_policy_converging(&act.state));
    act = next_pass(&in, 1, 1);   /* the third pass that did not shrink */
    assert_true(act.cancel);
    assert_int_equal(act.downtime_ms, 0);
    assert_string_equal(act.reason,
                        "not converging (the remaining memory stopped shrinking); cancelled by the convergence policy");
    assert_string_equal(act.hint, "retry when the guest is quieter, or use --converge auto");
    assert_int_equal(act.state.last_policy_ms, in.now_ms);
    assert_false(migrate_policy_converging(&act.state));
}

static void test_downtime_steps_to_max(void **state)
{
    struct migrate_policy_input in = poll_of(CONVERGE_DOWNTIME);
    step(&in);
    const int expect[] = {100, 200, 400, 500};
    for (size_t i = 0; i < 4; i++) {
        struct policy_action act = next_pass(&in, 1, 1);
        act = next_pass(&in, 1, 1);
        assert_int_equal(act.downtime_ms, 0);
        act = next_pass(&in, 1, 1);
        assert_int_equal(act.downtime_ms, expect[i]);
        assert_false(act.cancel);
        assert_int_equal(act.state.passes_not_converging, 0);   /* each step gets 3 passes */
    }
    struct policy_action act = next_pass(&in, 1, 1);
    assert_string_equal(act.note, "");
    act = next_pass(&in, 1, 1);
    act = next_pass(&in, 1, 1);
    /* At max-downtime nothing more is done, and nothing is cancelled. */
    assert_nothing(&act);
    assert_int_equal(in.downtime_limit_ms, 500);
    assert_int_equal(act.state.passes_not_converging, 3);
}

static void test_downtime_note(void **state)
{
    struct migrate_policy_input in = poll_of(CONVERGE_DOWNTIME);
    in.downtime_limit_ms = 300;
    step(&in);
    next_pass(&in, 1, 1);
    next_pass(&in, 1, 1);
    struct policy_action act = next_pass(&in, 1, 1);
    assert_int_equal(act.downtime_ms, 500);   /* 600 capped at max-downtime */
    assert_string_equal(act.note, "raised the downtime limit from 300 to 500 ms "
                                  "(the remaining memory stopped shrinking)");
}

/* auto: QEMU's throttle ramps first (30%, then +20 per pass); the policy
 * raises the downtime only once it reaches 50%. */
static void test_auto_waits_for_throttle(void **state)
{
    struct migrate_policy_input in = poll_of(CONVERGE_AUTO);
    step(&in);
    in.throttle_pct = 30;
    for (int p = 0; p < 6; p++) {
        struct policy_action act = next_pass(&in, 1, 1);
        assert_nothing(&act);
    }
    assert_int_equal(in.state.passes_not_converging, 6);
    in.throttle_pct = 50;
    struct policy_action act = next_pass(&in, 1, 1);
    assert_int_equal(act.downtime_ms, 100);
    assert_int_equal(act.state.passes_not_converging, 0);
}

static void test_auto_ramp_parameters(void **state)
{
    struct migrate_tuning t;
    enum converge_policy modes[] = {CONVERGE_AUTO, CONVERGE_THROTTLE, CONVERGE_DOWNTIME, CONVERGE_CANCEL};
    for (size_t i = 0; i < 4; i++) {
        tuning_defaults(&t);
        t.converge = modes[i];
        json_t *p = tuning_qemu_parameters(&t);
        bool ramp = i < 2;
        if (ramp) {
            assert_int_equal(json_integer_value(json_object_get(p, "cpu-throttle-initial")), 30);
            assert_int_equal(json_integer_value(json_object_get(p, "cpu-throttle-increment")), 20);
        } else {
            assert_null(json_object_get(p, "cpu-throttle-initial"));
            assert_null(json_object_get(p, "cpu-throttle-increment"));
        }
        json_decref(p);
        json_t *all = tuning_qemu_capabilities(&t);
        json_t *caps = json_object_get(all, "capabilities");
        json_t *c;
        size_t k;
        int seen = 0;
        json_array_foreach(caps, k, c) {
            if (!strcmp(json_string_value(json_object_get(c, "capability")), "auto-converge")) {
                assert_int_equal(json_is_true(json_object_get(c, "state")), ramp);
                seen++;
            }
        }
        assert_int_equal(seen, 1);
        json_decref(all);
    }
}

/* postcopy: after the first full pass, and only when set up for it. */
static void test_postcopy_mode(void **state)
{
    struct migrate_policy_input in = poll_of(CONVERGE_POSTCOPY);
    in.postcopy_ok = true;
    struct policy_action act = step(&in);
    assert_false(act.postcopy);           /* pass 1: the first full pass is still running */
    assert_nothing(&act);
    act = next_pass(&in, 1, 2);           /* pass 2, converging or not */
    assert_true(act.postcopy);
    assert_false(act.cancel);
    assert_int_equal(act.downtime_ms, 0);
    assert_string_equal(act.note, "switched to post-copy at pass 2 (the first full pass is done): "
                                  "the VM runs on h2 from now on");
    /* Not set up (a destination that does not allow it refuses the move
     * before this): acts as auto, never switches. */
    in = poll_of(CONVERGE_POSTCOPY);
    in.throttle_pct = 50;
    step(&in);
    for (int p = 0; p < 3; p++)
        act = next_pass(&in, 1, 1);
    assert_false(act.postcopy);
    assert_int_equal(act.downtime_ms, 2 * TUNING_DEFAULT_DOWNTIME_MS);
    /* Failing already: no switch. */
    in = poll_of(CONVERGE_POSTCOPY);
    in.postcopy_ok = true;
    in.pass = 3;
    in.failed = true;
    act = step(&in);
    assert_false(act.postcopy);
}

/* auto with post-copy allowed: switches where it would raise the downtime. */
static void test_auto_switches_instead_of_downtime(void **state)
{
    struct migrate_policy_input in = poll_of(CONVERGE_AUTO);
    in.postcopy_ok = true;
    in.throttle_pct = 30;
    step(&in);
    struct policy_action act;
    for (int p = 0; p < 3; p++) {
        act = next_pass(&in, 1, 1);
        assert_false(act.postcopy);       /* converging as far as auto knows: throttle first */
    }
    in.throttle_pct = 50;
    for (int p = 0; p < 3 && !act.postcopy; p++)
        act = next_pass(&in, 1, 1);
    assert_true(act.postcopy);
    assert_int_equal(act.downtime_ms, 0);
    assert_non_null(strstr(act.note, "switched to post-copy at pass"));
    assert_non_null(strstr(act.note, "the remaining memory stopped shrinking"));
    /* A converging guest is left alone, post-copy or not. */
    in = poll_of(CONVERGE_AUTO);
    in.postcopy_ok = true;
    step(&in);
    for (int p = 0; p < 10; p++) {
        act = next_pass(&in, 1, 2);
        assert_false(act.postcopy);
        assert_nothing(&act);
    }
    /* The guest outrunning the link: a switch after 5 s, not a longer pause. */
    in = poll_of(CONVERGE_AUTO);
    in.postcopy_ok = true;
    in.pass = 2;
    in.dirty_rate_Bps = 200e6;
    act = step(&in);
    in.now_ms += 5000;
    act = step(&in);
    assert_true(act.postcopy);
    assert_non_null(strstr(act.note, "faster than the link"));
}

static void test_throttle_mode_never_acts(void **state)
{
    struct migrate_policy_input in = poll_of(CONVERGE_THROTTLE);
    in.throttle_pct = 99;
    step(&in);
    for (int p = 0; p < 6; p++) {
        struct policy_action act = next_pass(&in, 1, 1);
        assert_nothing(&act);
    }
    in.dirty_rate_Bps = 200e6;   /* outrun too */
    for (int i = 0; i < 40; i++) {
        in.now_ms += 1000;
        struct policy_action act = step(&in);
        assert_nothing(&act);
    }
    assert_false(migrate_policy_converging(&in.state));
}

static void test_outrun_detection(void **state)
{
    struct migrate_policy_input in = poll_of(CONVERGE_DOWNTIME);
    in.dirty_rate_Bps = 90e6;    /* 90% of the link: outrun */
    struct policy_action act = step(&in);
    assert_int_equal(act.state.outrun_since_ms, 0);   /* not before the second pass */
    assert_true(migrate_policy_converging(&act.state));
    in.pass = 2;
    in.state.last_pass = 2;      /* the same pass: only the outrun check */
    act = step(&in);
    assert_int_equal(act.state.outrun_since_ms, 10000);
    assert_false(migrate_policy_converging(&act.state));
    in.now_ms = 14999;
    act = step(&in);
    assert_nothing(&act);
    in.now_ms = 15000;
    act = step(&in);
    assert_int_equal(act.downtime_ms, 100);
    assert_string_equal(act.note, "raised the downtime limit from 50 to 100 ms "
                                  "(the guest dirties memory faster than the link carries it)");
    assert_int_equal(act.state.last_policy_ms, 15000);
    /* Still outrun: the next step waits 5 s after this one. */
    in.now_ms = 19999;
    act = step(&in);
    assert_nothing(&act);
    in.now_ms = 20000;
    act = step(&in);
    assert_int_equal(act.downtime_ms, 200);
    /* The guest calms down: outrun is over at once. */
    in.dirty_rate_Bps = 89e6;
    in.now_ms = 30000;
    act = step(&in);
    assert_nothing(&act);
    assert_int_equal(act.state.outrun_since_ms, 0);
}

/* auto with the guest outrunning the link: no waiting for the throttle. */
static void test_auto_outrun_raises(void **state)
{
    struct migrate_policy_input in = poll_of(CONVERGE_AUTO);
    in.pass = 2;
    in.throttle_pct = 0;
    in.dirty_rate_Bps = 150e6;
    step(&in);
    in.now_ms += 5000;
    struct policy_action act = step(&in);
    assert_int_equal(act.downtime_ms, 100);
}

static void test_outrun_cancel_mode(void **state)
{
    struct migrate_policy_input in = poll_of(CONVERGE_CANCEL);
    in.pass = 3;
    in.dirty_rate_Bps = 100e6;
    step(&in);
    in.now_ms += 5000;
    struct policy_action act = step(&in);
    assert_true(act.cancel);
    assert_string_equal(act.reason, "not converging (the guest dirties memory faster than the link carries it); "
                                    "cancelled by the convergence policy");
}

static void test_max_duration(void **state)
{
    enum converge_policy modes[] = {CONVERGE_AUTO, CONVERGE_THROTTLE, CONVERGE_DOWNTIME, CONVERGE_CANCEL};
    for (size_t i = 0; i < 4; i++) {
        struct migrate_policy_input in = poll_of(modes[i]);
        in.max_duration_s = 30;
        in.elapsed_ms = 30000;
        struct policy_action act = step(&in);
        assert_nothing(&act);
        in.elapsed_ms = 30001;
        act = step(&in);
        assert_true(act.cancel);
        assert_string_equal(act.reason, "migration to h2 did not finish within 30 s");
        assert_string_equal(act.hint, "raise --max-duration or use a faster migration network");
    }
}

/* Already failing (a stall, a cancel): no new outrun step, no second
 * cancel for duration; the pass bookkeeping still runs. */
static void test_failed_decides_little(void **state)
{
    struct migrate_policy_input in = poll_of(CONVERGE_DOWNTIME);
    in.failed = true;
    in.pass = 2;
    in.dirty_rate_Bps = 200e6;
    in.elapsed_ms = 1000000;
    step(&in);
    in.now_ms += 10000;
    struct policy_action act = step(&in);
    assert_nothing(&act);
    assert_int_equal(act.state.outrun_since_ms, 0);
    next_pass(&in, 1, 1);
    next_pass(&in, 1, 1);
    act = next_pass(&in, 1, 1);
    assert_int_equal(act.downtime_ms, 100);
    assert_false(act.cancel);
}

/* A downtime step and max-duration in one poll: both, the step first. */
static void test_step_and_duration(void **state)
{
    struct migrate_policy_input in = poll_of(CONVERGE_DOWNTIME);
    step(&in);
    next_pass(&in, 1, 1);
    next_pass(&in, 1, 1);
    in.elapsed_ms = 700000;
    struct policy_action act = next_pass(&in, 1, 1);
    assert_int_equal(act.downtime_ms, 100);
    assert_true(act.cancel);
    assert_string_equal(act.reason, "migration to h2 did not finish within 600 s");
}

static void test_read_stats(void **state)
{
    json_t *info = json_pack("{s:s, s:I, s:i, s:{s:I, s:f, s:I, s:I, s:I}}", "status", "active",
                             "expected-downtime", (json_int_t)42, "cpu-throttle-percentage", 70, "ram",
                             "remaining", (json_int_t)123456789, "mbps", 800.0, "dirty-pages-rate",
                             (json_int_t)1000, "page-size", (json_int_t)8192, "dirty-sync-count", (json_int_t)7);
    struct migrate_policy_input in = poll_of(CONVERGE_AUTO);
    migrate_policy_read_stats(info, &in);
    assert_int_equal(in.remaining, 123456789);
    assert_true(in.transfer_rate_Bps == 100e6);
    assert_true(in.dirty_rate_Bps == 8192000.0);
    assert_int_equal(in.pass, 7);
    assert_int_equal(in.expected_downtime_ms, 42);
    assert_int_equal(in.throttle_pct, 70);
    assert_string_equal(in.dest, "h2");   /* ours kept */
    json_object_del(json_object_get(info, "ram"), "page-size");
    migrate_policy_read_stats(info, &in);
    assert_true(in.dirty_rate_Bps == 4096000.0);   /* QEMU without page-size: 4 KiB */
    json_decref(info);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_converging_left_alone),
        cmocka_unit_test(test_shrink_threshold),
        cmocka_unit_test(test_same_pass_counted_once),
        cmocka_unit_test(test_cancel_mode),
        cmocka_unit_test(test_downtime_steps_to_max),
        cmocka_unit_test(test_downtime_note),
        cmocka_unit_test(test_auto_waits_for_throttle),
        cmocka_unit_test(test_auto_ramp_parameters),
        cmocka_unit_test(test_throttle_mode_never_acts),
        cmocka_unit_test(test_postcopy_mode),
        cmocka_unit_test(test_auto_switches_instead_of_downtime),
        cmocka_unit_test(test_outrun_detection),
        cmocka_unit_test(test_auto_outrun_raises),
        cmocka_unit_test(test_outrun_cancel_mode),
        cmocka_unit_test(test_max_duration),
        cmocka_unit_test(test_failed_decides_little),
        cmocka_unit_test(test_step_and_duration),
        cmocka_unit_test(test_read_stats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
