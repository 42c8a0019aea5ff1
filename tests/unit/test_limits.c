/* Unit tests for the migration slots and their queue (src/core/limits.c):
 * slots per kind up to the host's limit, the FIFO order of queued work, the
 * start from the event loop (never inside the call), cancel, raised limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#include "core/agent.h"
#include "core/jobs.h"
#include "core/limits.h"

struct fixture {
    struct agent agent;
    struct job jobs[5];
    char started[64];           /* ids of started jobs, in order: "1 3 " */
};

static int setup(void **state)
{
    static struct fixture f;
    memset(&f, 0, sizeof f);
    f.agent.base = event_base_new();
    f.agent.settings.max_live_migrations = 1;
    f.agent.settings.max_storage_migrations = 1;
    for (int i = 0; i < 5; i++)
        f.jobs[i].id = i + 1;
    *state = &f;
    return f.agent.base ? 0 : -1;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    limits_free_all(&f->agent);
    assert_null(f->agent.limits);
    event_base_free(f->agent.base);
    return 0;
}

struct start_arg {
    struct fixture *f;
    struct job *job;
};
static struct start_arg args[5];

static void on_start(void *arg)
{
    struct start_arg *s = arg;
    size_t len = strlen(s->f->started);
    snprintf(s->f->started + len, sizeof s->f->started - len, "%lld ", (long long)s->job->id);
}

static void enqueue(struct fixture *f, enum slot_kind kind, int i)
{
    args[i] = (struct start_arg){f, &f->jobs[i]};
    limits_enqueue(&f->agent, kind, &f->jobs[i], on_start, &args[i]);
}

static void run_loop(struct fixture *f) { event_base_loop(f->agent.base, EVLOOP_NONBLOCK); }

static void release_job(struct fixture *f, enum slot_kind kind, int i)
{
    char holder[48];
    limits_job_holder(&f->jobs[i], holder, sizeof holder);
    limits_release(&f->agent, kind, holder);
}

static void test_holder_name(void **state)
{
    struct fixture *f = *state;
    char holder[48];
    f->jobs[0].id = 1234567890123LL;
    limits_job_holder(&f->jobs[0], holder, sizeof holder);
    assert_string_equal(holder, "job:1234567890123");
}

static void test_slots_per_kind(void **state)
{
    struct fixture *f = *state;
    struct agent *a = &f->agent;
    a->settings.max_live_migrations = 2;
    assert_int_equal(limits_max(a, SLOT_LIVE), 2);
    assert_int_equal(limits_max(a, SLOT_STORAGE), 1);
    assert_true(limits_try_take(a, SLOT_LIVE, "in:web"));
    assert_true(limits_try_take(a, SLOT_LIVE, "in:db"));
    assert_false(limits_try_take(a, SLOT_LIVE, "in:third"));
    assert_int_equal(limits_in_use(a, SLOT_LIVE), 2);
    /* The other kind counts apart. */
    assert_int_equal(limits_in_use(a, SLOT_STORAGE), 0);
    assert_true(limits_try_take(a, SLOT_STORAGE, "in:web"));
    assert_false(limits_try_take(a, SLOT_STORAGE, "in:x"));
    /* Releasing needs the right kind and holder. */
    limits_release(a, SLOT_STORAGE, "in:db");
    limits_release(a, SLOT_LIVE, "in:nobody");
    assert_int_equal(limits_in_use(a, SLOT_LIVE), 2);
    assert_int_equal(limits_in_use(a, SLOT_STORAGE), 1);
    limits_release(a, SLOT_LIVE, "in:web");
    assert_int_equal(limits_in_use(a, SLOT_LIVE), 1);
    assert_true(limits_try_take(a, SLOT_LIVE, "in:third"));
}

static void test_start_from_the_loop(void **state)
{
    struct fixture *f = *state;
    enqueue(f, SLOT_LIVE, 0);
    assert_string_equal(f->started, "");   /* never inside the call */
    assert_int_equal(limits_position(&f->agent, &f->jobs[0]), 1);
    run_loop(f);
    assert_string_equal(f->started, "1 ");
    assert_int_equal(limits_position(&f->agent, &f->jobs[0]), 0);
    assert_int_equal(limits_in_use(&f->agent, SLOT_LIVE), 1);
    /* The slot is the job's. */
    release_job(f, SLOT_LIVE, 0);
    assert_int_equal(limits_in_use(&f->agent, SLOT_LIVE), 0);
}

static void test_fifo(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 3; i++)
        enqueue(f, SLOT_LIVE, i);
    run_loop(f);
    assert_string_equal(f->started, "1 ");
    assert_int_equal(limits_position(&f->agent, &f->jobs[1]), 1);
    assert_int_equal(limits_position(&f->agent, &f->jobs[2]), 2);
    release_job(f, SLOT_LIVE, 0);
    assert_string_equal(f->started, "1 ");
    run_loop(f);
    assert_string_equal(f->started, "1 2 ");
    assert_int_equal(limits_position(&f->agent, &f->jobs[2]), 1);
    release_job(f, SLOT_LIVE, 1);
    run_loop(f);
    assert_string_equal(f->started, "1 2 3 ");
}

/* A queued job of one kind does not hold back the other kind. */
static void test_fifo_per_kind(void **state)
{
    struct fixture *f = *state;
    assert_true(limits_try_take(&f->agent, SLOT_LIVE, "in:web"));
    enqueue(f, SLOT_LIVE, 0);
    enqueue(f, SLOT_STORAGE, 1);
    run_loop(f);
    assert_string_equal(f->started, "2 ");
    assert_int_equal(limits_position(&f->agent, &f->jobs[0]), 1);
}

/* Between a release and the loop's start of the next job, an incoming
 * migration must not take the slot the queue is waiting for. */
static void test_queue_before_try_take(void **state)
{
    struct fixture *f = *state;
    assert_true(limits_try_take(&f->agent, SLOT_LIVE, "in:web"));
    enqueue(f, SLOT_LIVE, 0);
    run_loop(f);
    limits_release(&f->agent, SLOT_LIVE, "in:web");
    assert_false(limits_try_take(&f->agent, SLOT_LIVE, "in:db"));
    assert_true(limits_try_take(&f->agent, SLOT_STORAGE, "in:db"));
    run_loop(f);
    assert_string_equal(f->started, "1 ");
    assert_false(limits_try_take(&f->agent, SLOT_LIVE, "in:db"));   /* now full */
}

static void test_raised_limit(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 3; i++)
        enqueue(f, SLOT_LIVE, i);
    run_loop(f);
    assert_string_equal(f->started, "1 ");
    f->agent.settings.max_live_migrations = 3;
    run_loop(f);
    assert_string_equal(f->started, "1 ");   /* only a kick looks again */
    limits_kick(&f->agent);
    run_loop(f);
    assert_string_equal(f->started, "1 2 3 ");
    assert_int_equal(limits_in_use(&f->agent, SLOT_LIVE), 3);
}

static void test_dequeue(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 3; i++)
        enqueue(f, SLOT_LIVE, i);
    run_loop(f);
    assert_true(limits_dequeue(&f->agent, &f->jobs[1]));
    assert_false(limits_dequeue(&f->agent, &f->jobs[1]));
    assert_false(limits_dequeue(&f->agent, &f->jobs[0]));   /* started: not queued */
    assert_int_equal(limits_position(&f->agent, &f->jobs[1]), 0);
    assert_int_equal(limits_position(&f->agent, &f->jobs[2]), 1);
    release_job(f, SLOT_LIVE, 0);
    run_loop(f);
    assert_string_equal(f->started, "1 3 ");
}

/* A start that queues more work: the new job waits its turn. */
static struct fixture *chain_f;
static void on_start_chain(void *arg)
{
    on_start(arg);
    enqueue(chain_f, SLOT_STORAGE, 3);
}

static void test_start_changes_queue(void **state)
{
    struct fixture *f = *state;
    chain_f = f;
    args[0] = (struct start_arg){f, &f->jobs[0]};
    limits_enqueue(&f->agent, SLOT_STORAGE, &f->jobs[0], on_start_chain, &args[0]);
    enqueue(f, SLOT_STORAGE, 1);
    run_loop(f);
    assert_string_equal(f->started, "1 ");
    assert_int_equal(limits_position(&f->agent, &f->jobs[1]), 1);
    assert_int_equal(limits_position(&f->agent, &f->jobs[3]), 2);
    release_job(f, SLOT_STORAGE, 0);
    run_loop(f);
    assert_string_equal(f->started, "1 2 ");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_holder_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slots_per_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_from_the_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fifo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fifo_per_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queue_before_try_take, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raised_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dequeue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_changes_queue, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
