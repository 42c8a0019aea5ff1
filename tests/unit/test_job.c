/* Unit tests for the block job tracker (src/block/job.c): tracked ids take
 * query-block-jobs' values, other owners' jobs are ignored, a job QEMU
 * stops listing is reported gone, tracking twice is one job. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "block/job.h"

static void test_track_update_gone(void **state)
{
    struct block_jobs t = {0};
    assert_int_equal(block_jobs_track(&t, "mirror-vda"), 0);
    assert_int_equal(block_jobs_track(&t, "mirror-vdb"), 1);
    assert_int_equal(block_jobs_track(&t, "mirror-vda"), 0);
    assert_int_equal(t.n, 2);
    const struct block_job_state *a = block_jobs_get(&t, "mirror-vda");
    assert_false(a->listed || a->seen);

    struct qmon_block_job q1[] = {
        {.device = "mirror-vda", .type = "mirror", .status = "running", .len = 100, .offset = 40},
        {.device = "commit-other", .type = "commit", .status = "running", .len = 9, .offset = 1},
        {.device = "mirror-vdb", .type = "mirror", .status = "ready", .len = 50, .offset = 50, .ready = true},
    };
    block_jobs_update(&t, q1, 3);
    a = block_jobs_get(&t, "mirror-vda");
    assert_true(a->listed && a->seen && !a->ready);
    assert_int_equal(a->offset, 40);
    assert_string_equal(a->status, "running");
    assert_true(block_jobs_get(&t, "mirror-vdb")->ready);
    assert_null(block_jobs_get(&t, "commit-other"));
    assert_int_equal(block_jobs_listed(&t), 2);

    struct qmon_block_job q2[] = {{.device = "mirror-vdb", .type = "mirror", .status = "ready", .len = 50,
                                   .offset = 50, .ready = true}};
    block_jobs_update(&t, q2, 1);
    a = block_jobs_get(&t, "mirror-vda");
    assert_false(a->listed);
    assert_true(a->seen);
    assert_int_equal(a->offset, 40);       /* the last known values stay */
    assert_int_equal(block_jobs_listed(&t), 1);

    block_jobs_update(&t, NULL, 0);
    assert_int_equal(block_jobs_listed(&t), 0);
    block_jobs_free(&t);
    assert_int_equal(t.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_track_update_gone)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
