/* Unit tests for job subscriptions (src/core/jobs.c): a watcher that stops
 * following a job is never called again, also when it (or another watcher)
 * unsubscribes while the job's watchers are being told of a change, as a
 * client's watch does when vmoved finds its connection closed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/agent.h"
#include "core/jobs.h"
#include "core/journal.h"

struct counts {
    int updates, ended, dropped;
    struct job *job;
    void *drop_on_update;                 /* a watcher's arg to unsubscribe when told */
};

static const struct job_subscriber_ops counting;

static void on_update(void *arg, const struct job *j)
{
    struct counts *c = arg;
    c->updates++;
    if (c->drop_on_update)
        job_unsubscribe(c->job, &counting, c->drop_on_update);
    (void)j;
}
static void on_ended(void *arg, const struct job *j) { ((struct counts *)arg)->ended++; (void)j; }
static void on_dropped(void *arg, json_t *error) { ((struct counts *)arg)->dropped++; json_decref(error); }
static const struct job_subscriber_ops counting = {.update = on_update, .ended = on_ended, .dropped = on_dropped};
static const struct job_ops test_kind = {.kind = "test"};

struct fixture {
    struct agent agent;
    char path[64];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->path, sizeof f->path, "/tmp/vmove-test-jobs-%d.db", (int)getpid());
    char err[256];
    f->agent.journal = journal_open(f->path, err, sizeof err);
    if (!f->agent.journal)
        fail_msg("journal_open: %s", err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    jobs_free_all(&f->agent);
    journal_close(f->agent.journal);
    unlink(f->path);
    free(f);
    return 0;
}

static void test_unsubscribed_watcher_is_not_told(void **state)
{
    struct fixture *f = *state;
    struct job *j = job_create(&f->agent, &test_kind, "vm1", NULL);
    struct counts a = {.job = j}, b = {.job = j};
    job_subscribe(j, &counting, &a);
    job_subscribe(j, &counting, &b);
    job_set_phase(j, "one");
    assert_int_equal(a.updates, 1);
    assert_int_equal(b.updates, 1);
    job_unsubscribe(j, &counting, &a);
    job_unsubscribe(j, &counting, &a);      /* twice: the second finds nothing */
    job_set_phase(j, "two");
    assert_int_equal(a.updates, 1);
    assert_int_equal(b.updates, 2);
    job_succeed(j, NULL);
    assert_int_equal(a.ended, 0);
    assert_int_equal(b.ended, 1);
}

static void test_unsubscribe_while_being_told(void **state)
{
    struct fixture *f = *state;
    struct job *j = job_create(&f->agent, &test_kind, "vm1", NULL);
    /* Subscribed last, told first: a drops b (told after it) and c drops
     * itself, both from inside update(). */
    struct counts b = {.job = j}, c = {.job = j}, a = {.job = j, .drop_on_update = &b};
    c.drop_on_update = &c;
    job_subscribe(j, &counting, &c);
    job_subscribe(j, &counting, &b);
    job_subscribe(j, &counting, &a);
    job_set_phase(j, "one");
    assert_int_equal(a.updates, 1);
    assert_int_equal(b.updates, 0);         /* dropped before its turn */
    assert_int_equal(c.updates, 1);
    a.drop_on_update = NULL;
    job_set_phase(j, "two");
    assert_int_equal(a.updates, 2);
    assert_int_equal(b.updates, 0);
    assert_int_equal(c.updates, 1);
    job_fail(j, json_pack("{s:s}", "message", "test"));
    assert_int_equal(a.ended, 1);
    assert_int_equal(b.ended + c.ended, 0);
}

static void test_shutdown_drops_only_subscribed(void **state)
{
    struct fixture *f = *state;
    struct job *j = job_create(&f->agent, &test_kind, NULL, NULL);
    struct counts a = {.job = j}, b = {.job = j};
    job_subscribe(j, &counting, &a);
    job_subscribe(j, &counting, &b);
    job_unsubscribe(j, &counting, &b);
    jobs_free_all(&f->agent);
    assert_int_equal(a.dropped, 1);
    assert_int_equal(b.dropped, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unsubscribed_watcher_is_not_told, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unsubscribe_while_being_told, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown_drops_only_subscribed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
