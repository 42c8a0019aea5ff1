/* Unit tests for the asynchronous QMP client (src/qemu/qmp.c).
 *
 * The client runs on a libevent loop in the test thread; the fake QMP server
 * of fake_qmp.c runs a per-test script in a second thread. */
#include "common/util.h"
#include "qemu/qmp.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_qmp.h"

#define HUGE_LEN (4u * 1024 * 1024)

/* ---- client-side recording ------------------------------------------- */

struct t;
struct rec {
    struct t *t;
    int calls, seq;
    enum qmp_err_kind kind;
    char cls[64], desc[512];
    json_t *ret;                /* deep copy of the last successful result */
    void (*then)(struct rec *); /* re-entrancy hook, run inside the callback */
};

struct t {
    struct event_base *base;
    struct event *tick;
    qmp_t *q;
    struct fake srv;
    int seq; /* orders callbacks across kinds */
    int ready, closed, closed_seq;
    char reason[512];
    int nevents, event_seq;
    char ev_name[8][32];
    json_t *ev_data[8];
    void (*on_ready_hook)(struct t *);
    void (*on_closed_hook)(struct t *);
    void (*on_event_hook)(struct t *);
    struct rec r[8];
    int chain_rc;
};

static void on_reply(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct rec *r = arg;
    r->calls++;
    r->seq = ++r->t->seq;
    if (err) {
        r->kind = err->kind;
        snprintf(r->cls, sizeof r->cls, "%s", err->cls ? err->cls : "");
        snprintf(r->desc, sizeof r->desc, "%s", err->desc);
    } else {
        r->kind = QMP_ERR_NONE;
        json_decref(r->ret);
        r->ret = json_deep_copy(ret);
    }
    if (r->then)
        r->then(r);
}

static void on_state(void *arg, bool ready, const char *reason)
{
    struct t *t = arg;
    if (ready) {
        t->ready++;
        if (t->on_ready_hook)
            t->on_ready_hook(t);
        return;
    }
    t->closed++;
    t->closed_seq = ++t->seq;
    snprintf(t->reason, sizeof t->reason, "%s", reason);
    if (t->on_closed_hook)
        t->on_closed_hook(t);
}

static void on_event(void *arg, const char *name, json_t *data)
{
    struct t *t = arg;
    if (t->nevents < (int)ARRAY_LEN(t->ev_name)) {
        snprintf(t->ev_name[t->nevents], sizeof t->ev_name[0], "%s", name);
        t->ev_data[t->nevents] = data ? json_deep_copy(data) : NULL;
    }
    t->nevents++;
    t->event_seq = ++t->seq;
    if (t->on_event_hook)
        t->on_event_hook(t);
}

static int cmd(struct t *t, int i, const char *execute, json_t *args, int timeout_ms)
{
    t->r[i].t = t;
    return qmp_command(t->q, execute, args, timeout_ms, on_reply, &t->r[i]);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg) {}

/* Runs the loop until cond holds or ms elapse; the tick keeps it waking up. */
#define RUN_UNTIL(t, cond, ms)                                         \
    do {                                                               \
        uint64_t end_ = now_ms() + (ms);                               \
        while (!(cond) && now_ms() < end_)                             \
            event_base_loop((t)->base, EVLOOP_ONCE);                   \
    } while (0)

static int setup(void **state)
{
    signal(SIGPIPE, SIG_IGN);
    struct t *t = xcalloc(1, sizeof *t);
    t->base = event_base_new();
    t->tick = event_new(t->base, -1, EV_PERSIST, tick_cb, NULL);
    struct timeval tv = {0, 5000};
    event_add(t->tick, &tv);
    t->q = qmp_new(t->base, on_event, on_state, t);
    t->srv.fd = -1;
    *state = t;
    return 0;
}

static void server_join(struct t *t)
{
    if (t->srv.running)
        pthread_join(t->srv.th, NULL);
    t->srv.running = false;
}

static int teardown(void **state)
{
    struct t *t = *state;
    qmp_free(t->q);
    t->q = NULL;
    server_join(t);
    if (t->srv.fd >= 0)
        close(t->srv.fd);
    for (int i = 0; i < t->srv.nfds; i++)
        close(t->srv.fds[i]);
    free(t->srv.rbuf);
    for (size_t i = 0; i < ARRAY_LEN(t->r); i++)
        json_decref(t->r[i].ret);
    for (size_t i = 0; i < ARRAY_LEN(t->ev_data); i++)
        json_decref(t->ev_data[i]);
    event_free(t->tick);
    event_base_free(t->base);
    free(t);
    return 0;
}

/* Starts the fake server on a socketpair and attaches the client to it. */
static void start_server(struct t *t, script_fn script)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    t->srv.fd = sv[1];
    t->srv.script = script;
    assert_int_equal(pthread_create(&t->srv.th, NULL, srv_main, &t->srv), 0);
    t->srv.running = true;
    assert_int_equal(qmp_attach_fd(t->q, sv[0]), 0);
}

static void finish_server(struct t *t)
{
    server_join(t);
    if (t->srv.err[0])
        fail_msg("%s", t->srv.err);
}

/* Keeps the loop running a little to catch duplicate or late callbacks. */
static void settle(struct t *t, int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    while (now_ms() < end)
        event_base_loop(t->base, EVLOOP_ONCE);
}

/* ---- tests ------------------------------------------------------------ */

static void script_handshake_only(struct fake *f)
{
    srv_handshake(f);
    srv_wait_eof(f);
}

static void test_handshake(void **state)
{
    struct t *t = *state;
    assert_false(qmp_is_ready(t->q));
    start_server(t, script_handshake_only);
    RUN_UNTIL(t, t->ready, WAIT_MS);
    assert_int_equal(t->ready, 1);
    assert_true(qmp_is_ready(t->q));
    assert_int_equal(t->closed, 0);
    qmp_close(t->q, "test done");
    assert_int_equal(t->closed, 1);
    assert_string_equal(t->reason, "test done");
    assert_false(qmp_is_ready(t->q));
    finish_server(t);
}

static void script_success(struct fake *f)
{
    srv_handshake(f);
    json_t *c = srv_expect(f, "human-monitor-command");
    json_t *args = json_object_get(c, "arguments");
    if (c && strcmp(srv_str_or_empty(json_object_get(args, "command-line")), "info") != 0)
        srv_fail(f, "server: arguments not passed through");
    srv_reply(f, c, "\"ok\"");
    json_decref(c);
    c = srv_expect(f, "query-status");
    if (c && json_object_get(c, "arguments"))
        srv_fail(f, "server: NULL args must not produce \"arguments\"");
    srv_reply(f, c, "{\"status\": \"running\", \"running\": true}");
    json_decref(c);
    srv_wait_eof(f);
}

static void test_command_success(void **state)
{
    struct t *t = *state;
    start_server(t, script_success);
    assert_int_equal(cmd(t, 0, "human-monitor-command", json_pack("{s:s}", "command-line", "info"), 0), 0);
    assert_int_equal(cmd(t, 1, "query-status", NULL, 5000), 0);
    RUN_UNTIL(t, t->r[1].calls, WAIT_MS);
    assert_int_equal(t->r[0].calls, 1);
    assert_int_equal(t->r[0].kind, QMP_ERR_NONE);
    assert_string_equal(json_string_value(t->r[0].ret), "ok");
    assert_int_equal(t->r[1].calls, 1);
    assert_int_equal(t->r[1].kind, QMP_ERR_NONE);
    assert_string_equal(json_string_value(json_object_get(t->r[1].ret, "status")), "running");
    assert_true(json_is_true(json_object_get(t->r[1].ret, "running")));
    qmp_close(t->q, "done");
    finish_server(t);
}

/* QEMU offers "oob": the client enables it, and qmp_command_oob goes out as
 * "exec-oob", ahead of an in-band command queued before it. */
static void script_oob(struct fake *f)
{
    srv_send(f, GREETING);
    json_t *caps = srv_expect(f, "qmp_capabilities");
    json_t *enable = json_object_get(json_object_get(caps, "arguments"), "enable");
    if (caps && !(json_array_size(enable) == 1 && !strcmp(srv_str_or_empty(json_array_get(enable, 0)), "oob")))
        srv_fail(f, "server: the client did not enable oob");
    srv_reply(f, caps, "{}");
    json_decref(caps);
    json_t *y = srv_recv(f);
    if (!y || strcmp(srv_str_or_empty(json_object_get(y, "exec-oob")), "yank") || json_object_get(y, "execute"))
        srv_fail(f, "server: expected exec-oob yank first");
    json_t *q = srv_expect(f, "query-status");
    srv_reply(f, y, "{}");     /* out-of-band replies may overtake */
    srv_reply(f, q, "{\"status\": \"running\", \"running\": true}");
    json_decref(y);
    json_decref(q);
    srv_wait_eof(f);
}

static void test_oob(void **state)
{
    struct t *t = *state;
    start_server(t, script_oob);
    RUN_UNTIL(t, t->ready, WAIT_MS);
    assert_true(qmp_oob_enabled(t->q));
    /* Both queued in one loop turn: the OOB command is written first. */
    assert_int_equal(cmd(t, 0, "query-status", NULL, 5000), 0);
    t->r[1].t = t;
    assert_int_equal(qmp_command_oob(t->q, "yank", json_pack("{s:[]}", "instances"), 5000, on_reply, &t->r[1]), 0);
    RUN_UNTIL(t, t->r[0].calls && t->r[1].calls, WAIT_MS);
    assert_int_equal(t->r[1].kind, QMP_ERR_NONE);
    assert_int_equal(t->r[0].kind, QMP_ERR_NONE);
    assert_true(json_is_true(json_object_get(t->r[0].ret, "running")));
    qmp_close(t->q, "done");
    finish_server(t);
}

static void script_qemu_error(struct fake *f)
{
    srv_handshake(f);
    json_t *c = srv_expect(f, "device_del");
    if (c) {
        char *s = xasprintf("{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": "
                            "\"Device 'foo' not found\"}, \"id\": %lld}\r\n",
                            (long long)json_integer_value(json_object_get(c, "id")));
        srv_send(f, s);
        free(s);
    }
    json_decref(c);
    srv_wait_eof(f);
}

static void test_qemu_error(void **state)
{
    struct t *t = *state;
    start_server(t, script_qemu_error);
    assert_int_equal(cmd(t, 0, "device_del", json_pack("{s:s}", "id", "foo"), 0), 0);
    RUN_UNTIL(t, t->r[0].calls, WAIT_MS);
    assert_int_equal(t->r[0].calls, 1);
    assert_int_equal(t->r[0].kind, QMP_ERR_QEMU);
    assert_string_equal(t->r[0].cls, "DeviceNotFound");
    assert_string_equal(t->r[0].desc, "Device 'foo' not found");
    assert_null(t->r[0].ret);
    assert_true(qmp_is_ready(t->q)); /* a QEMU error does not hurt the connection */
    qmp_close(t->q, "done");
    finish_server(t);
}

static void script_out_of_order(struct fake *f)
{
    srv_handshake(f);
    json_t *a = srv_expect(f, "a"), *b = srv_expect(f, "b"), *c = srv_expect(f, "c");
    srv_reply(f, c, "{\"name\": \"c\"}");
    srv_reply(f, a, "{\"name\": \"a\"}");
    srv_reply(f, b, "{\"name\": \"b\"}");
    json_decref(a);
    json_decref(b);
    json_decref(c);
    srv_wait_eof(f);
}

static void test_out_of_order(void **state)
{
    struct t *t = *state;
    start_server(t, script_out_of_order);
    const char *names[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++)
        assert_int_equal(cmd(t, i, names[i], NULL, 0), 0);
    RUN_UNTIL(t, t->r[0].calls && t->r[1].calls && t->r[2].calls, WAIT_MS);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(t->r[i].calls, 1);
        assert_int_equal(t->r[i].kind, QMP_ERR_NONE);
        assert_string_equal(json_string_value(json_object_get(t->r[i].ret, "name")), names[i]);
    }
    /* delivered in reply order c, a, b */
    assert_true(t->r[2].seq < t->r[0].seq);
    assert_true(t->r[0].seq < t->r[1].seq);
    qmp_close(t->q, "done");
    finish_server(t);
}

static void script_events(struct fake *f)
{
    srv_handshake(f);
    json_t *c = srv_expect(f, "stop");
    srv_send(f, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, \"event\": \"STOP\"}\r\n");
    srv_send(f, "{\"event\": \"MIGRATION\", \"data\": {\"status\": \"active\"}, "
                "\"timestamp\": {\"seconds\": 1, \"microseconds\": 3}}\r\n");
    srv_reply(f, c, "{}");
    json_decref(c);
    srv_wait_eof(f);
}

static void test_events(void **state)
{
    struct t *t = *state;
    start_server(t, script_events);
    assert_int_equal(cmd(t, 0, "stop", NULL, 0), 0);
    RUN_UNTIL(t, t->r[0].calls, WAIT_MS);
    assert_int_equal(t->nevents, 2);
    assert_string_equal(t->ev_name[0], "STOP");
    assert_null(t->ev_data[0]);
    assert_string_equal(t->ev_name[1], "MIGRATION");
    assert_string_equal(json_string_value(json_object_get(t->ev_data[1], "status")), "active");
    assert_true(t->event_seq < t->r[0].seq); /* stream order preserved */
    qmp_close(t->q, "done");
    finish_server(t);
}

static void script_fragmented(struct fake *f)
{
    srv_send_slowly(f, GREETING);
    json_t *caps = srv_expect(f, "qmp_capabilities");
    if (caps) {
        char *s = srv_reply_text(caps, json_object());
        srv_send_slowly(f, s);
        free(s);
    }
    json_decref(caps);
    json_t *c = srv_expect(f, "cont");
    if (c) {
        /* event + reply + first half of an event in one write, rest later */
        char *r = srv_reply_text(c, json_pack("{s:i}", "n", 42));
        char *all = xasprintf("{\"event\": \"E1\"}\r\n%s{\"event\": \"E2\", \"da", r);
        srv_send(f, all);
        usleep(20000);
        srv_send(f, "ta\": {\"x\": 1}}\r\n\r\n{\"event\": \"E3\"}\n");
        free(r);
        free(all);
    }
    json_decref(c);
    srv_wait_eof(f);
}

static void test_fragmented_and_batched(void **state)
{
    struct t *t = *state;
    start_server(t, script_fragmented);
    RUN_UNTIL(t, t->ready, WAIT_MS);
    assert_int_equal(t->ready, 1);
    assert_int_equal(cmd(t, 0, "cont", NULL, 0), 0);
    RUN_UNTIL(t, t->nevents == 3, WAIT_MS);
    assert_int_equal(t->r[0].calls, 1);
    assert_int_equal(json_integer_value(json_object_get(t->r[0].ret, "n")), 42);
    assert_int_equal(t->nevents, 3);
    assert_string_equal(t->ev_name[0], "E1");
    assert_string_equal(t->ev_name[1], "E2");
    assert_int_equal(json_integer_value(json_object_get(t->ev_data[1], "x")), 1);
    assert_string_equal(t->ev_name[2], "E3"); /* bare LF and blank lines accepted */
    assert_int_equal(t->closed, 0);
    qmp_close(t->q, "done");
    finish_server(t);
}

static char *huge_string(char c)
{
    char *s = xmalloc(HUGE_LEN + 1);
    memset(s, c, HUGE_LEN);
    s[HUGE_LEN] = 0;
    return s;
}

static void script_huge(struct fake *f)
{
    srv_handshake(f);
    json_t *c = srv_expect(f, "big-in");
    const char *blob = json_string_value(json_object_get(json_object_get(c, "arguments"), "blob"));
    if (c && (!blob || strlen(blob) != HUGE_LEN))
        srv_fail(f, "server: 4 MB argument arrived damaged");
    srv_reply(f, c, "{}");
    json_decref(c);
    c = srv_expect(f, "query-block");
    if (c) {
        char *big = huge_string('y');
        char *s = srv_reply_text(c, json_pack("{s:s}", "data", big));
        srv_send(f, s);
        free(s);
        free(big);
    }
    json_decref(c);
    c = srv_expect(f, "after");
    srv_reply(f, c, "1");
    json_decref(c);
    srv_wait_eof(f);
}

static void test_huge_messages(void **state)
{
    struct t *t = *state;
    start_server(t, script_huge);
    char *big = huge_string('x');
    assert_int_equal(cmd(t, 0, "big-in", json_pack("{s:s}", "blob", big), 0), 0);
    free(big);
    assert_int_equal(cmd(t, 1, "query-block", NULL, 0), 0);
    assert_int_equal(cmd(t, 2, "after", NULL, 0), 0);
    RUN_UNTIL(t, t->r[2].calls, 3 * WAIT_MS);
    assert_int_equal(t->r[0].kind, QMP_ERR_NONE);
    assert_int_equal(t->r[1].calls, 1);
    assert_int_equal(t->r[1].kind, QMP_ERR_NONE);
    assert_int_equal(strlen(json_string_value(json_object_get(t->r[1].ret, "data"))), HUGE_LEN);
    assert_int_equal(t->r[2].calls, 1);
    assert_int_equal(json_integer_value(t->r[2].ret), 1);
    qmp_close(t->q, "done");
    finish_server(t);
}

static void script_malformed(struct fake *f)
{
    srv_handshake(f);
    json_t *a = srv_expect(f, "a"), *b = srv_expect(f, "b");
    srv_send(f, "{\"return\": {}, \"id\": \r\n");
    json_decref(a);
    json_decref(b);
    srv_wait_eof(f);
}

static void test_malformed_json(void **state)
{
    struct t *t = *state;
    start_server(t, script_malformed);
    assert_int_equal(cmd(t, 0, "a", NULL, 0), 0);
    assert_int_equal(cmd(t, 1, "b", NULL, 0), 0);
    RUN_UNTIL(t, t->closed, WAIT_MS);
    settle(t, 50);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(t->r[i].calls, 1);
        assert_int_equal(t->r[i].kind, QMP_ERR_PROTOCOL);
        assert_true(t->r[i].seq < t->closed_seq);
    }
    assert_int_equal(t->closed, 1);
    assert_non_null(strstr(t->reason, "malformed JSON"));
    assert_false(qmp_is_ready(t->q));
    assert_int_equal(cmd(t, 2, "c", NULL, 0), -1); /* closed: refused, no callback */
    finish_server(t);
    assert_int_equal(t->r[2].calls, 0);
}

static void script_eof(struct fake *f)
{
    srv_handshake(f);
    json_t *a = srv_expect(f, "a"), *b = srv_expect(f, "b");
    json_decref(a);
    json_decref(b);
    shutdown(f->fd, SHUT_RDWR); /* "QEMU died" */
}

static void test_eof_mid_command(void **state)
{
    struct t *t = *state;
    start_server(t, script_eof);
    assert_int_equal(cmd(t, 0, "a", NULL, 0), 0);
    assert_int_equal(cmd(t, 1, "b", NULL, 1000), 0);
    RUN_UNTIL(t, t->closed, WAIT_MS);
    settle(t, 1200); /* past b's timeout: it must not fire again */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(t->r[i].calls, 1);
        assert_int_equal(t->r[i].kind, QMP_ERR_DISCONNECTED);
        assert_true(t->r[i].seq < t->closed_seq);
    }
    assert_true(t->r[0].seq < t->r[1].seq);
    assert_int_equal(t->ready, 1);
    assert_int_equal(t->closed, 1);
    finish_server(t);
}

static void script_late_reply(struct fake *f)
{
    srv_handshake(f);
    json_t *a = srv_expect(f, "slow"), *b = srv_expect(f, "fast");
    usleep(300 * 1000);
    srv_reply(f, a, "\"late\"");
    srv_reply(f, b, "\"fine\"");
    json_decref(a);
    json_decref(b);
    srv_wait_eof(f);
}

static void test_timeout_then_late_reply(void **state)
{
    struct t *t = *state;
    start_server(t, script_late_reply);
    uint64_t t0 = now_ms();
    assert_int_equal(cmd(t, 0, "slow", NULL, 100), 0);
    assert_int_equal(cmd(t, 1, "fast", NULL, 0), 0);
    RUN_UNTIL(t, t->r[0].calls, WAIT_MS);
    assert_true(now_ms() - t0 >= 90);
    assert_int_equal(t->r[0].kind, QMP_ERR_TIMEOUT);
    assert_int_equal(t->r[1].calls, 0);
    RUN_UNTIL(t, t->r[1].calls, WAIT_MS);
    settle(t, 50);
    assert_int_equal(t->r[0].calls, 1); /* late reply silently discarded */
    assert_int_equal(t->r[1].calls, 1);
    assert_string_equal(json_string_value(t->r[1].ret), "fine");
    assert_true(qmp_is_ready(t->q));
    assert_int_equal(t->closed, 0);
    qmp_close(t->q, "done");
    finish_server(t);
}

static void script_timeout_while_writing(struct fake *f)
{
    srv_handshake(f);
    usleep(300 * 1000); /* don't read: the client's socket buffer fills up */
    json_t *a = srv_expect(f, "big");
    srv_reply(f, a, "\"discard me\"");
    json_t *b = srv_expect(f, "next");
    srv_reply(f, b, "\"next ok\"");
    json_decref(a);
    json_decref(b);
    srv_wait_eof(f);
}

/* A command that times out half-written must still be sent whole, or the
 * stream would be corrupted for the next command. */
static void test_timeout_while_writing(void **state)
{
    struct t *t = *state;
    start_server(t, script_timeout_while_writing);
    RUN_UNTIL(t, t->ready, WAIT_MS);
    char *big = huge_string('z');
    assert_int_equal(cmd(t, 0, "big", json_pack("{s:s}", "blob", big), 50), 0);
    free(big);
    assert_int_equal(cmd(t, 1, "next", NULL, 0), 0);
    RUN_UNTIL(t, t->r[1].calls, 3 * WAIT_MS);
    assert_int_equal(t->r[0].calls, 1);
    assert_int_equal(t->r[0].kind, QMP_ERR_TIMEOUT);
    assert_int_equal(t->r[1].kind, QMP_ERR_NONE);
    assert_string_equal(json_string_value(t->r[1].ret), "next ok");
    qmp_close(t->q, "done");
    finish_server(t);
}

static void script_stall_then_drain(struct fake *f)
{
    srv_handshake(f);
    usleep(300 * 1000);
    while (srv_fill(f) > 0) /* whatever arrives, until the client hangs up */
        f->rlen = 0;
}

static void free_client(struct rec *r);

/* Timeout of a half-written command whose callback frees the client. */
static void test_free_in_timeout_callback_while_writing(void **state)
{
    struct t *t = *state;
    start_server(t, script_stall_then_drain);
    RUN_UNTIL(t, t->ready, WAIT_MS);
    char *big = huge_string('z');
    t->r[0].then = free_client;
    assert_int_equal(cmd(t, 0, "big", json_pack("{s:s}", "blob", big), 50), 0);
    free(big);
    assert_int_equal(cmd(t, 1, "next", NULL, 0), 0);
    RUN_UNTIL(t, t->r[0].calls, WAIT_MS);
    settle(t, 100);
    assert_null(t->q);
    assert_int_equal(t->r[0].calls, 1);
    assert_int_equal(t->r[0].kind, QMP_ERR_TIMEOUT);
    assert_int_equal(t->r[1].calls, 1);
    assert_int_equal(t->r[1].kind, QMP_ERR_DISCONNECTED);
    assert_int_equal(t->closed, 0);
    finish_server(t);
}

static void script_two_replies_and_event(struct fake *f)
{
    srv_handshake(f);
    json_t *a = srv_expect(f, "a"), *b = srv_expect(f, "b");
    if (a && b) { /* everything in one write: the client must stop mid-buffer */
        char *ra = srv_reply_text(a, json_string("A")), *rb = srv_reply_text(b, json_string("B"));
        char *all = xasprintf("%s{\"event\": \"AFTER\"}\r\n%s", ra, rb);
        srv_send(f, all);
        free(ra);
        free(rb);
        free(all);
    }
    json_decref(a);
    json_decref(b);
    srv_wait_eof(f);
}

static void free_client(struct rec *r)
{
    qmp_free(r->t->q);
    r->t->q = NULL;
}

static void test_free_in_reply_callback(void **state)
{
    struct t *t = *state;
    start_server(t, script_two_replies_and_event);
    t->r[0].then = free_client;
    assert_int_equal(cmd(t, 0, "a", NULL, 1000), 0);
    assert_int_equal(cmd(t, 1, "b", NULL, 1000), 0);
    RUN_UNTIL(t, t->r[0].calls, WAIT_MS);
    settle(t, 1200); /* past the timeouts */
    assert_null(t->q);
    assert_int_equal(t->r[0].calls, 1);
    assert_int_equal(t->r[0].kind, QMP_ERR_NONE);
    assert_int_equal(t->r[1].calls, 1); /* failed by qmp_free, not answered */
    assert_int_equal(t->r[1].kind, QMP_ERR_DISCONNECTED);
    assert_int_equal(t->nevents, 0);
    assert_int_equal(t->closed, 0); /* qmp_free: no state callback */
    finish_server(t);
}

static void close_client_on_event(struct t *t) { qmp_close(t->q, "closed from event"); }

static void test_close_in_event_callback(void **state)
{
    struct t *t = *state;
    start_server(t, script_two_replies_and_event);
    t->on_event_hook = close_client_on_event;
    assert_int_equal(cmd(t, 0, "a", NULL, 0), 0);
    assert_int_equal(cmd(t, 1, "b", NULL, 0), 0);
    RUN_UNTIL(t, t->closed, WAIT_MS);
    settle(t, 50);
    assert_int_equal(t->r[0].kind, QMP_ERR_NONE);
    assert_int_equal(t->r[1].calls, 1);
    assert_int_equal(t->r[1].kind, QMP_ERR_DISCONNECTED);
    assert_int_equal(t->nevents, 1);
    assert_int_equal(t->closed, 1);
    assert_string_equal(t->reason, "closed from event");
    finish_server(t);
}

static void chain_command(struct rec *r)
{
    /* Issue the follow-up from inside the reply callback.  (No cmocka assert
     * here: its longjmp would skip the client's unwinding.) */
    r->t->chain_rc = cmd(r->t, 1, "second", NULL, 0);
}

static void free_on_close(struct t *t)
{
    qmp_free(t->q);
    t->q = NULL;
}

static void script_chain(struct fake *f)
{
    srv_handshake(f);
    json_t *a = srv_expect(f, "first");
    srv_reply(f, a, "1");
    json_t *b = srv_expect(f, "second");
    srv_reply(f, b, "2");
    json_decref(a);
    json_decref(b);
    srv_send(f, "{\"event\": \"SHUTDOWN\", \"data\": {\"guest\": false}}\r\n");
    shutdown(f->fd, SHUT_RDWR);
}

static void test_command_in_callback_free_in_state_callback(void **state)
{
    struct t *t = *state;
    start_server(t, script_chain);
    t->r[0].then = chain_command;
    t->on_closed_hook = free_on_close;
    assert_int_equal(cmd(t, 0, "first", NULL, 0), 0);
    RUN_UNTIL(t, t->closed, WAIT_MS);
    settle(t, 50);
    assert_null(t->q);
    assert_int_equal(t->r[0].calls, 1);
    assert_int_equal(t->chain_rc, 0);
    assert_int_equal(t->r[1].calls, 1);
    assert_int_equal(json_integer_value(t->r[1].ret), 2);
    assert_int_equal(t->nevents, 1);
    assert_string_equal(t->ev_name[0], "SHUTDOWN");
    assert_int_equal(t->closed, 1);
    finish_server(t);
}

static void script_handshake_then_eof(struct fake *f)
{
    srv_handshake(f);
    srv_wait_eof(f);
}

static void free_on_ready(struct t *t)
{
    qmp_free(t->q);
    t->q = NULL;
}

static void test_free_in_ready_callback(void **state)
{
    struct t *t = *state;
    t->on_ready_hook = free_on_ready;
    assert_int_equal(cmd(t, 0, "queued", NULL, 0), 0);
    start_server(t, script_handshake_then_eof);
    RUN_UNTIL(t, t->ready, WAIT_MS);
    settle(t, 50);
    assert_null(t->q);
    assert_int_equal(t->r[0].calls, 1);
    assert_int_equal(t->r[0].kind, QMP_ERR_DISCONNECTED);
    assert_int_equal(t->closed, 0);
    finish_server(t);
}

static void script_queued(struct fake *f)
{
    usleep(100 * 1000); /* slow QEMU: greeting comes late */
    srv_handshake(f); /* fails unless qmp_capabilities is the first thing sent */
    const char *order[] = {"one", "two", "three"};
    for (int i = 0; i < 3; i++) {
        json_t *c = srv_expect(f, order[i]);
        srv_reply(f, c, "{}");
        json_decref(c);
    }
    srv_wait_eof(f);
}

static void test_queued_before_handshake(void **state)
{
    struct t *t = *state;
    assert_int_equal(cmd(t, 0, "one", NULL, 0), 0); /* before any connection */
    assert_int_equal(cmd(t, 1, "two", NULL, 0), 0);
    start_server(t, script_queued);
    assert_int_equal(cmd(t, 2, "three", NULL, 0), 0); /* connected, no greeting yet */
    RUN_UNTIL(t, t->r[2].calls, WAIT_MS);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(t->r[i].calls, 1);
        assert_int_equal(t->r[i].kind, QMP_ERR_NONE);
    }
    qmp_close(t->q, "done");
    finish_server(t);
}

static void script_getfd(struct fake *f)
{
    srv_handshake(f);
    json_t *c = srv_expect(f, "getfd");
    if (c && f->nfds != 1)
        srv_fail(f, "server: expected 1 fd with getfd, got %d", f->nfds);
    if (c && strcmp(srv_str_or_empty(json_object_get(json_object_get(c, "arguments"), "fdname")),
                    "mig") != 0)
        srv_fail(f, "server: getfd arguments lost");
    if (f->nfds == 1) { /* prove it is the caller's pipe */
        if (write(f->fds[0], "hello", 5) != 5)
            srv_fail(f, "server: write to passed fd failed");
        close(f->fds[0]);
        f->nfds = 0;
    }
    srv_reply(f, c, "{}");
    json_decref(c);
    srv_wait_eof(f);
}

static void test_fd_passing(void **state)
{
    struct t *t = *state;
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    start_server(t, script_getfd);
    t->r[0].t = t;
    assert_int_equal(qmp_command_fd(t->q, "getfd", json_pack("{s:s}", "fdname", "mig"), p[1],
                                    WAIT_MS, on_reply, &t->r[0]), 0);
    close(p[1]); /* the client keeps its own duplicate until it is sent */
    RUN_UNTIL(t, t->r[0].calls, WAIT_MS);
    assert_int_equal(t->r[0].kind, QMP_ERR_NONE);
    char buf[16] = {0};
    assert_int_equal(read(p[0], buf, sizeof buf), 5);
    assert_string_equal(buf, "hello");
    /* every write end is closed now: the client did not leak its copy */
    assert_int_equal(read(p[0], buf, sizeof buf), 0);
    close(p[0]);
    qmp_close(t->q, "done");
    finish_server(t);
}

static void script_silent(struct fake *f) { srv_wait_eof(f); }

static void test_handshake_timeout(void **state)
{
    struct t *t = *state;
    qmp_set_handshake_timeout(t->q, 150);
    start_server(t, script_silent);
    assert_int_equal(cmd(t, 0, "queued", NULL, 0), 0);
    RUN_UNTIL(t, t->closed, WAIT_MS);
    assert_int_equal(t->ready, 0);
    assert_int_equal(t->closed, 1);
    assert_non_null(strstr(t->reason, "timed out"));
    assert_int_equal(t->r[0].calls, 1);
    assert_int_equal(t->r[0].kind, QMP_ERR_DISCONNECTED);
    finish_server(t);
}

static void script_unix_late(struct fake *f)
{
    usleep(150 * 1000); /* socket file absent: ENOENT */
    int s = srv_listen_unix(f->listen_path, false);
    usleep(150 * 1000); /* file present, nobody listening: ECONNREFUSED */
    if (listen(s, 4) < 0)
        abort();
    struct pollfd p = {.fd = s, .events = POLLIN};
    if (poll(&p, 1, WAIT_MS) <= 0) {
        srv_fail(f, "server: client never connected");
        close(s);
        return;
    }
    f->fd = accept4(s, NULL, NULL, SOCK_CLOEXEC);
    close(s);
    unlink(f->listen_path);
    srv_handshake(f);
    json_t *c = srv_expect(f, "query-status");
    srv_reply(f, c, "{\"status\": \"paused\"}");
    json_decref(c);
    srv_wait_eof(f);
}

static void test_connect_unix_retry(void **state)
{
    struct t *t = *state;
    char *path = xasprintf("/tmp/vmove-qmp-test-%d.sock", (int)getpid());
    unlink(path);
    t->srv.listen_path = path;
    t->srv.script = script_unix_late;
    assert_int_equal(qmp_connect_unix(t->q, path, WAIT_MS), 0);
    assert_int_equal(cmd(t, 0, "query-status", NULL, 0), 0);
    assert_int_equal(pthread_create(&t->srv.th, NULL, srv_main, &t->srv), 0);
    t->srv.running = true;
    RUN_UNTIL(t, t->r[0].calls, 2 * WAIT_MS);
    assert_int_equal(t->ready, 1);
    assert_int_equal(t->r[0].kind, QMP_ERR_NONE);
    assert_string_equal(json_string_value(json_object_get(t->r[0].ret, "status")), "paused");
    qmp_close(t->q, "done");
    finish_server(t);
    free(path);
}

static void test_connect_unix_timeout(void **state)
{
    struct t *t = *state;
    uint64_t t0 = now_ms();
    assert_int_equal(qmp_connect_unix(t->q, "/tmp/vmove-qmp-test-does-not-exist.sock", 200), 0);
    assert_int_equal(cmd(t, 0, "never", NULL, 0), 0);
    assert_int_equal(t->closed, 0); /* failure is never reported synchronously */
    RUN_UNTIL(t, t->closed, WAIT_MS);
    assert_true(now_ms() - t0 >= 190);
    assert_int_equal(t->closed, 1);
    assert_non_null(strstr(t->reason, "could not connect"));
    assert_int_equal(t->r[0].kind, QMP_ERR_DISCONNECTED);
    settle(t, 50);
    assert_int_equal(t->closed, 1);
}

static void test_api_edges(void **state)
{
    struct t *t = *state;
    assert_string_equal(qmp_err_kind_name(QMP_ERR_NONE), "none");
    assert_string_equal(qmp_err_kind_name(QMP_ERR_QEMU), "qemu");
    assert_string_equal(qmp_err_kind_name(QMP_ERR_TIMEOUT), "timeout");
    assert_string_equal(qmp_err_kind_name(QMP_ERR_DISCONNECTED), "disconnected");
    assert_string_equal(qmp_err_kind_name(QMP_ERR_PROTOCOL), "protocol");
    assert_int_equal(cmd(t, 0, "x", json_array(), 0), -1); /* args must be an object */
    assert_int_equal(cmd(t, 0, "", NULL, 0), -1);
    assert_int_equal(qmp_connect_unix(t->q, "/tmp/this-path-is-far-too-long-for-a-unix-socket-"
                                            "address-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                                            "xxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 100), -1);
    qmp_close(t->q, "never connected");
    qmp_close(t->q, "twice");
    assert_int_equal(t->closed, 1);
    assert_string_equal(t->reason, "never connected");
    qmp_free(NULL);
}

/* ---- real QEMU --------------------------------------------------------- */

static int reap(pid_t pid, int ms)
{
    int status;
    for (int waited = 0; waited < ms; waited += 10) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return status;
        usleep(10 * 1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

static void test_real_qemu(void **state)
{
    struct t *t = *state;
    if (!srv_find_in_path("qemu-system-x86_64"))
        skip();
    char *sock = xasprintf("/tmp/vmove-qmp-real-%d.sock", (int)getpid());
    unlink(sock);
    pid_t pid = srv_spawn_qemu(sock);
    assert_true(pid > 0);
    /* connect right away: the retry logic must cover QEMU's start-up */
    assert_int_equal(qmp_connect_unix(t->q, sock, 20000), 0);
    assert_int_equal(cmd(t, 0, "query-version", NULL, 10000), 0);
    assert_int_equal(cmd(t, 1, "query-status", NULL, 10000), 0);
    RUN_UNTIL(t, t->r[1].calls, 25000);
    if (!t->ready)
        fail_msg("no QMP connection to real QEMU: %s", t->reason);
    assert_int_equal(t->r[0].kind, QMP_ERR_NONE);
    json_t *qv = json_object_get(t->r[0].ret, "qemu");
    assert_true(json_integer_value(json_object_get(qv, "major")) >= 2);
    assert_int_equal(t->r[1].kind, QMP_ERR_NONE);
    assert_non_null(json_string_value(json_object_get(t->r[1].ret, "status")));

    /* an unknown command: a real QEMU error class comes back */
    assert_int_equal(cmd(t, 2, "no-such-command", NULL, 10000), 0);
    RUN_UNTIL(t, t->r[2].calls, 10000);
    assert_int_equal(t->r[2].kind, QMP_ERR_QEMU);
    assert_string_equal(t->r[2].cls, "CommandNotFound");

    /* QEMU's monitor offers out-of-band execution, and takes yank that way */
    assert_true(qmp_oob_enabled(t->q));
    t->r[4].t = t;
    assert_int_equal(qmp_command_oob(t->q, "yank", json_pack("{s:[]}", "instances"), 10000, on_reply, &t->r[4]),
                     0);
    RUN_UNTIL(t, t->r[4].calls, 10000);
    assert_int_equal(t->r[4].kind, QMP_ERR_NONE);

    assert_int_equal(cmd(t, 3, "quit", NULL, 10000), 0);
    RUN_UNTIL(t, t->closed, 10000);
    assert_int_equal(t->closed, 1);
    assert_int_equal(t->r[3].calls, 1);
    /* QEMU may exit before or after flushing the quit reply */
    assert_true(t->r[3].kind == QMP_ERR_NONE || t->r[3].kind == QMP_ERR_DISCONNECTED);
    int status = reap(pid, 10000);
    assert_true(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    unlink(sock);
    free(sock);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_handshake),
        T(test_command_success),
        T(test_oob),
        T(test_qemu_error),
        T(test_out_of_order),
        T(test_events),
        T(test_fragmented_and_batched),
        T(test_huge_messages),
        T(test_malformed_json),
        T(test_eof_mid_command),
        T(test_timeout_then_late_reply),
        T(test_timeout_while_writing),
        T(test_free_in_reply_callback),
        T(test_free_in_timeout_callback_while_writing),
        T(test_close_in_event_callback),
        T(test_command_in_callback_free_in_state_callback),
        T(test_free_in_ready_callback),
        T(test_queued_before_handshake),
        T(test_fd_passing),
        T(test_handshake_timeout),
        T(test_connect_unix_retry),
        T(test_connect_unix_timeout),
        T(test_api_edges),
        T(test_real_qemu),
    };
    return cmocka_run_group_tests_name("qmp", tests, NULL, NULL);
}
