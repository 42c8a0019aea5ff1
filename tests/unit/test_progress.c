/* The CLI's progress rules (src/cli/progress.c): percent never goes back
 * within a phase, readable times. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "cli/progress.h"

static void monotonic_within_a_phase(void **state)
{
    struct progress pr;
    progress_init(&pr, false);
    assert_true(progress_monotonic(&pr, "transfer", 40.0) == 40.0);
    /* QEMU's percent restarts with a new pass: what is shown does not. */
    assert_true(progress_monotonic(&pr, "transfer", 5.0) == 40.0);
    assert_true(progress_monotonic(&pr, "transfer", 60.5) == 60.5);
    assert_true(progress_monotonic(&pr, "transfer", 130.0) == 100.0);
    /* A new phase has a percent of its own. */
    assert_true(progress_monotonic(&pr, "mirror", 3.0) == 3.0);
}

static void readable_times(void **state)
{
    char buf[64];
    progress_fmt_time(1700000000000LL, buf, sizeof buf);
    assert_int_equal(strlen(buf), strlen("2023-11-14 22:13:20"));
    assert_true(buf[4] == '-' && buf[10] == ' ' && buf[13] == ':');
    assert_string_equal(progress_fmt_time(0, buf, sizeof buf), "-");
    json_t *job = json_pack("{s:I, s:I}", "created_ms", (json_int_t)1700000000000LL, "finished_ms",
                            (json_int_t)1700000002500LL);
    progress_job_times(job, buf, sizeof buf);
    assert_non_null(strstr(buf, ", took 2.50 s"));
    json_object_del(job, "finished_ms");
    progress_job_times(job, buf, sizeof buf);
    assert_non_null(strstr(buf, ", running for "));
    json_decref(job);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(monotonic_within_a_phase),
        cmocka_unit_test(readable_times),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
