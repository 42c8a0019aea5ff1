/* common/spawn.h's asynchronous helper: the loop keeps turning while the
 * child runs, the status and output arrive once, a child that overstays its
 * timeout is killed with a clear error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "common/spawn.h"
#include "common/util.h"

struct result {
    int calls, rc;
    char out[256];
    struct event_base *base;
};

static void on_done(void *arg, int rc, const char *out)
{
    struct result *r = arg;
    r->calls++;
    r->rc = rc;
    snprintf(r->out, sizeof r->out, "%s", out ? out : "");
    event_base_loopbreak(r->base);
}

static int ticks;
static void on_tick(evutil_socket_t fd, short what, void *arg) { ticks++; }

static void run(struct event_base *base, char *const argv[], int timeout_ms, struct result *r)
{
    char *err = NULL;
    r->base = base;
    assert_non_null(spawn_async(base, argv, timeout_ms, on_done, r, &err));
    event_base_dispatch(base);
}

static void test_status_and_output(void **state)
{
    struct event_base *base = event_base_new();
    struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 10000};
    event_add(tick, &tv);
    struct result r = {0};
    char *argv[] = {"sh", "-c", "sleep 0.3; echo hello; exit 3", NULL};
    ticks = 0;
    run(base, argv, 5000, &r);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.rc, 3);
    assert_string_equal(r.out, "hello\n");
    assert_true(ticks >= 10);   /* the loop turned while the child slept */
    event_free(tick);
    event_base_free(base);
}

static void test_timeout_kills(void **state)
{
    struct event_base *base = event_base_new();
    struct result r = {0};
    char *argv[] = {"sleep", "10", NULL};
    uint64_t t = now_ms();
    run(base, argv, 200, &r);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.rc, -1);
    assert_non_null(strstr(r.out, "sleep timed out after 200 ms"));
    assert_true(now_ms() - t < 2000);
    spawn_reap_children();
    event_base_free(base);
}

static void test_cannot_start(void **state)
{
    struct event_base *base = event_base_new();
    struct result r = {0};
    char *err = NULL;
    char *argv[] = {"/nonexistent/helper", NULL};
    assert_null(spawn_async(base, argv, 1000, on_done, &r, &err));
    assert_non_null(strstr(err, "cannot run /nonexistent/helper"));
    assert_int_equal(r.calls, 0);
    free(err);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_and_output),
        cmocka_unit_test(test_timeout_kills),
        cmocka_unit_test(test_cannot_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
