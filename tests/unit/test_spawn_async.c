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
#include <unistd.h>

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
    r->base = base;
    assert_non_null(spawn_async(base, argv, timeout_ms, on_done, r));
    assert_int_equal(r->calls, 0);   /* never before it returns */
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
    char *argv[] = {"/nonexistent/helper", NULL};
    run(base, argv, 1000, &r);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.rc, -1);
    assert_non_null(strstr(r.out, "cannot run /nonexistent/helper"));
    event_base_free(base);
}

/* The child reads the descriptor given as its stdin. */
static void test_stdin_fd(void **state)
{
    struct event_base *base = event_base_new();
    char path[] = "/tmp/vmove-spawn-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "abc", 3), 3);
    lseek(fd, 0, SEEK_SET);
    struct result r = {.base = base};
    char *argv[] = {"sha256sum", NULL};
    assert_non_null(spawn_async_fd(base, argv, fd, 5000, on_done, &r));
    close(fd);
    unlink(path);
    event_base_dispatch(base);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.rc, 0);
    assert_memory_equal(r.out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", 64);
    event_base_free(base);
}

static void on_tick_break(evutil_socket_t fd, short what, void *arg) { event_base_loopbreak(arg); }

/* A cancelled child is gone when cancel returns: it writes nothing after. */
static void test_cancel_kills(void **state)
{
    struct event_base *base = event_base_new();
    char dir[] = "/tmp/vmove-spawn-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *flag = xasprintf("%s/written", dir);
    char *script = xasprintf("sleep 0.3; touch %s", flag);
    char *argv[] = {"sh", "-c", script, NULL};
    struct result r = {.base = base};
    struct spawn_async *s = spawn_async(base, argv, 5000, on_done, &r);
    struct event *tick = evtimer_new(base, on_tick_break, base);
    struct timeval tv = {0, 50000};
    evtimer_add(tick, &tv);
    event_base_dispatch(base);
    spawn_async_cancel(s);
    usleep(600000);
    assert_int_equal(access(flag, F_OK), -1);
    assert_int_equal(r.calls, 0);
    rmdir(dir);
    event_free(tick);
    free(flag), free(script);
    event_base_free(base);
}

/* Shutdown: every pending child is killed and its owner told, once; what
 * a callback starts then ends the same way without running. */
static int stop_calls;
static char stop_msgs[2][256];
static struct event_base *stop_base;

static void on_stopped(void *arg, int rc, const char *out)
{
    assert_int_equal(rc, -1);
    snprintf(stop_msgs[stop_calls], sizeof stop_msgs[0], "%s", out);
    if (stop_calls++ == 0) {
        char *argv[] = {"sleep", "5", NULL};
        spawn_async(stop_base, argv, 10000, on_stopped, NULL);
    }
}

static void test_stop_all(void **state)
{
    stop_base = event_base_new();
    char *argv[] = {"sleep", "5", NULL};
    spawn_async(stop_base, argv, 10000, on_stopped, NULL);
    uint64_t t = now_ms();
    spawn_async_stop_all();
    assert_true(now_ms() - t < 2000);
    assert_int_equal(stop_calls, 2);
    assert_non_null(strstr(stop_msgs[0], "sleep stopped: vmoved is shutting down"));
    assert_non_null(strstr(stop_msgs[1], "sleep not run: vmoved is shutting down"));
    event_base_free(stop_base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_and_output),
        cmocka_unit_test(test_timeout_kills),
        cmocka_unit_test(test_cannot_start),
        cmocka_unit_test(test_stdin_fd),
        cmocka_unit_test(test_cancel_kills),
        cmocka_unit_test(test_stop_all),   /* last: helpers stay stopped */
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
