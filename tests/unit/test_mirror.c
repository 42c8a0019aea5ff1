/* Unit tests for the mirror state machine (src/block/mirror.c) against the
 * fake QMP server of fake_qmp.c: the server plays QEMU from a list of
 * exchanges (command, a few argument checks, canned answer) and the test
 * plays the owner.  Storage move: ready -> pivot -> query-block verifies
 * the node; a mirror QEMU refuses (rollback deletes the target nodes, the
 * owner removes the file); shared-nothing: an NBD target cancelled mid-way,
 * and the switch-over's plain cancel of ready mirrors. */
#include "block/mirror.h"

#include <event2/event.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/util.h"
#include "fake_qmp.h"
#include "qemu/qmp.h"

/* ---- the fake QEMU ------------------------------------------------------------ */

struct exchange {
    const char *execute;
    const char *check;            /* "key=value" the arguments must have (string values), or NULL */
    const char *reply;            /* the "return" JSON, or NULL: an error */
};

static void check_arg(struct fake *f, const struct exchange *x, json_t *cmd)
{
    if (!x->check)
        return;
    char key[64];
    const char *eq = strchr(x->check, '=');
    snprintf(key, sizeof key, "%.*s", (int)(eq - x->check), x->check);
    const char *got = json_string_value(json_object_get(json_object_get(cmd, "arguments"), key));
    if (!got || strcmp(got, eq + 1))
        srv_fail(f, "%s: expected %s, got %s=%s", x->execute, x->check, key, got ? got : "(none)");
}

static void script_exchanges(struct fake *f)
{
    const struct exchange *x = f->user;
    srv_handshake(f);
    for (; x->execute && !f->err[0]; x++) {
        json_t *cmd = srv_expect(f, x->execute);
        if (!cmd)
            return;
        check_arg(f, x, cmd);
        if (x->reply)
            srv_reply(f, cmd, x->reply);
        else
            srv_reply_error(f, cmd, "GenericError", "boom");
        json_decref(cmd);
    }
    if (!f->err[0])
        srv_wait_eof(f);
}

/* ---- the owner ------------------------------------------------------------------ */

struct t {
    struct event_base *base;
    qmp_t *q;
    struct fake srv;
    struct qmon_owner owner;
    struct block_mirror *bm;
    char dir[PATH_MAX], source[PATH_MAX + 16], target[PATH_MAX + 16];
    int states, progress, ready, pivoted, done, failed, rolled_back;
    enum block_mirror_fail fail_what;
    bool abort_on_fail, abort_on_progress, finish_on_ready;
};

#define RUN_UNTIL(t, cond, ms)                                         \
    do {                                                               \
        uint64_t end_ = now_ms() + (ms);                               \
        while (!(cond) && now_ms() < end_)                             \
            event_base_loop((t)->base, EVLOOP_ONCE | EVLOOP_NONBLOCK); \
    } while (0)

static qmp_t *t_mon(void *arg) { return ((struct t *)arg)->q; }
static void t_state(void *arg) { ((struct t *)arg)->states++; }

static void t_progress(void *arg)
{
    struct t *t = arg;
    t->progress++;
    if (t->abort_on_progress)
        block_mirror_abort(t->bm);
}

static void t_ready(void *arg)
{
    struct t *t = arg;
    t->ready++;
    if (t->finish_on_ready)
        block_mirror_finish(t->bm);   /* the migration's switch-over, at once */
    else
        block_mirror_pivot(t->bm);    /* what the storage move does */
}

static void t_pivoted(void *arg, struct block_mirror_disk *d) { ((struct t *)arg)->pivoted++; }
static void t_done(void *arg) { ((struct t *)arg)->done++; }

static void t_failed(void *arg, const struct block_mirror_failure *f)
{
    struct t *t = arg;
    t->failed++;
    t->fail_what = f->what;
    if (t->abort_on_fail)
        block_mirror_abort(t->bm);
}

static void t_rolled_back(void *arg, bool timed_out) { ((struct t *)arg)->rolled_back += timed_out ? 100 : 1; }

static const struct block_mirror_ops ops = {
    .mon = t_mon, .on_state = t_state, .on_progress = t_progress, .on_ready = t_ready, .on_pivoted = t_pivoted,
    .on_done = t_done, .on_failed = t_failed, .on_rolled_back = t_rolled_back,
};

static void on_release(void *obj) {}

static int setup(void **state)
{
    signal(SIGPIPE, SIG_IGN);
    struct t *t = xcalloc(1, sizeof *t);
    t->base = event_base_new();
    t->q = qmp_new(t->base, NULL, NULL, t);
    t->srv.fd = -1;
    qmon_owner_init(&t->owner, t, on_release);
    snprintf(t->dir, sizeof t->dir, "/tmp/vmove-test-mirror.XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->source, sizeof t->source, "%s/vda.qcow2", t->dir);
    snprintf(t->target, sizeof t->target, "%s/new.qcow2", t->dir);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct t *t = *state;
    block_mirror_free(t->bm);
    qmp_free(t->q);
    srv_cleanup(&t->srv);
    unlink(t->target);
    rmdir(t->dir);
    event_base_free(t->base);
    free(t);
    return 0;
}

static void start(struct t *t, const struct exchange *x, enum block_mirror_target kind)
{
    t->srv.user = (void *)x;
    int fd = srv_start_pair(&t->srv, script_exchanges);
    assert_true(fd >= 0);
    assert_int_equal(qmp_attach_fd(t->q, fd), 0);
    RUN_UNTIL(t, qmp_is_ready(t->q) || t->srv.err[0], WAIT_MS);
    assert_true(qmp_is_ready(t->q));
    struct block_mirror_config cfg = {.name = "vm1", .kind = kind, .timeout_ms = 2000, .explicit_auto = true,
                                      .host = "10.0.0.2", .port = 10809};
    t->bm = block_mirror_new(t->base, &t->owner, &cfg, &ops, t, 1);
    if (kind == BLOCK_MIRROR_FILE)
        block_mirror_set_disk(t->bm, 0, "vda", t->source, t->target, NULL, 1 << 20, "vda-m1", "vda-file-m1",
                              "mirror-vda");
    else
        block_mirror_set_disk(t->bm, 0, "vda", NULL, NULL, "vda", 0, "nbd-vda-1", NULL, "mirror-vda-1");
    block_mirror_start(t->bm);
}

static void finish(struct t *t)
{
    block_mirror_stop(t->bm);
    qmp_close(t->q, "test done");
    srv_join(&t->srv);
    if (t->srv.err[0])
        fail_msg("%s", t->srv.err);
}

/* query-block's answer: device vda-dev runs on NODE from FILE. */
static char *block_reply(const char *node, const char *file)
{
    return xasprintf("[{\"device\": \"\", \"qdev\": \"/machine/peripheral/vda-dev/virtio-backend\", "
                     "\"inserted\": {\"node-name\": \"%s\", \"file\": \"%s\", \"drv\": \"qcow2\"}}]", node, file);
}

#define JOB(offset, ready) \
    "[{\"device\": \"mirror-vda\", \"type\": \"mirror\", \"len\": 100, \"offset\": " #offset ", \"ready\": " #ready "}]"

static void test_ready_pivot_verify(void **state)
{
    struct t *t = *state;
    char *before = block_reply("vda", t->source), *after = block_reply("vda-m1", t->target);
    const struct exchange x[] = {
        {"query-block", NULL, before},
        {"blockdev-add", "node-name=vda-file-m1", "{}"},
        {"blockdev-add", "node-name=vda-m1", "{}"},
        {"blockdev-mirror", "device=vda", "{}"},          /* the node QEMU named, not assumed */
        {"query-block-jobs", NULL, JOB(100, true)},
        {"block-job-complete", "device=mirror-vda", "{}"},
        {"query-block-jobs", NULL, "[]"},                  /* the job is gone: did the device switch? */
        {"query-block", NULL, after},
        {"blockdev-del", "node-name=vda", "{}"},
        {"blockdev-del", "node-name=vda-file", "{}"},
        {NULL, NULL, NULL},
    };
    start(t, x, BLOCK_MIRROR_FILE);
    RUN_UNTIL(t, t->done || t->failed || t->srv.err[0], 5000);
    finish(t);
    assert_int_equal(t->failed, 0);
    assert_int_equal(t->ready, 1);
    assert_int_equal(t->pivoted, 1);
    assert_int_equal(t->done, 1);
    const struct block_mirror_disk *d = block_mirror_disk(t->bm, 0);
    assert_true(d->created && d->pivoted && d->old_released);
    assert_string_equal(d->old_node, "vda");
    assert_int_equal(access(t->target, F_OK), 0);     /* the target was made with qemu-img */
    free(before), free(after);
}

/* The job ended but QEMU kept the old node: the pivot failed. */
static void test_pivot_not_taken(void **state)
{
    struct t *t = *state;
    char *before = block_reply("vda", t->source);
    const struct exchange x[] = {
        {"query-block", NULL, before},
        {"blockdev-add", NULL, "{}"},
        {"blockdev-add", NULL, "{}"},
        {"blockdev-mirror", NULL, "{}"},
        {"query-block-jobs", NULL, JOB(100, true)},
        {"block-job-complete", NULL, "{}"},
        {"query-block-jobs", NULL, "[]"},
        {"query-block", NULL, before},
        {NULL, NULL, NULL},
    };
    start(t, x, BLOCK_MIRROR_FILE);
    RUN_UNTIL(t, t->done || t->failed || t->srv.err[0], 5000);
    finish(t);
    assert_int_equal(t->failed, 1);
    assert_int_equal(t->fail_what, BLOCK_MIRROR_FAIL_PIVOT_NODE);
    assert_int_equal(t->pivoted, 0);
    free(before);
}

/* QEMU refuses the mirror: rollback deletes the target nodes; the owner
 * removes the file the machine created. */
static void test_mirror_fails_rollback(void **state)
{
    struct t *t = *state;
    t->abort_on_fail = true;
    char *before = block_reply("vda", t->source);
    const struct exchange x[] = {
        {"query-block", NULL, before},
        {"blockdev-add", NULL, "{}"},
        {"blockdev-add", NULL, "{}"},
        {"blockdev-mirror", NULL, NULL},                  /* refused */
        {"query-block-jobs", NULL, "[]"},
        {"query-block", NULL, before},
        {"blockdev-del", "node-name=vda-m1", "{}"},
        {"blockdev-del", "node-name=vda-file-m1", "{}"},
        {NULL, NULL, NULL},
    };
    start(t, x, BLOCK_MIRROR_FILE);
    RUN_UNTIL(t, t->rolled_back || t->srv.err[0], 5000);
    finish(t);
    assert_int_equal(t->failed, 1);
    assert_int_equal(t->fail_what, BLOCK_MIRROR_FAIL_MIRROR);
    assert_int_equal(t->rolled_back, 1);
    const struct block_mirror_disk *d = block_mirror_disk(t->bm, 0);
    assert_false(d->pivoted);
    assert_int_equal(block_mirror_disk_remove(d), 0);
    assert_int_equal(access(t->target, F_OK), -1);
    free(before);
}

/* Shared-nothing: an NBD client node, then a cancel mid-way (force, after
 * lifting the throttle) until QEMU lists the job no more. */
static void test_nbd_cancel_midway(void **state)
{
    struct t *t = *state;
    t->abort_on_progress = true;
    char *before = block_reply("vda", "/somewhere/vda.qcow2");
    const struct exchange x[] = {
        {"query-block", NULL, before},
        {"blockdev-add", "driver=nbd", "{}"},
        {"blockdev-mirror", "target=nbd-vda-1", "{}"},
        {"query-block-jobs", NULL, "[{\"device\": \"mirror-vda-1\", \"len\": 100, \"offset\": 10, \"ready\": false}]"},
        {"query-block-jobs", NULL, "[{\"device\": \"mirror-vda-1\", \"len\": 100, \"offset\": 20, \"ready\": false}]"},
        {"block-job-set-speed", "device=mirror-vda-1", "{}"},
        {"block-job-cancel", "device=mirror-vda-1", "{}"},
        {"query-block-jobs", NULL, "[]"},
        {"query-block", NULL, before},
        {"blockdev-del", "node-name=nbd-vda-1", "{}"},
        {NULL, NULL, NULL},
    };
    start(t, x, BLOCK_MIRROR_NBD);
    RUN_UNTIL(t, t->rolled_back || t->srv.err[0], 5000);
    finish(t);
    assert_int_equal(t->progress, 1);
    assert_int_equal(t->ready, 0);
    assert_int_equal(t->failed, 0);
    assert_int_equal(t->rolled_back, 1);
    assert_int_equal(block_mirror_disk(t->bm, 0)->offset, 10);
    free(before);
}

/* Switch-over: a plain cancel of the ready mirror (QEMU then completes it
 * without a pivot), wait until QEMU lists it no more, drop the NBD node. */
static void test_nbd_finish(void **state)
{
    struct t *t = *state;
    t->finish_on_ready = true;
    char *before = block_reply("vda", "/somewhere/vda.qcow2");
    const char *ready = "[{\"device\": \"mirror-vda-1\", \"len\": 100, \"offset\": 100, \"ready\": true}]";
    const struct exchange x[] = {
        {"query-block", NULL, before},
        {"blockdev-add", "export=vda", "{}"},
        {"blockdev-mirror", "device=vda", "{}"},
        {"query-block-jobs", NULL, ready},
        {"block-job-cancel", "device=mirror-vda-1", "{}"},
        {"query-block-jobs", NULL, ready},                 /* still winding down */
        {"query-block-jobs", NULL, "[]"},
        {"blockdev-del", "node-name=nbd-vda-1", "{}"},
        {NULL, NULL, NULL},
    };
    start(t, x, BLOCK_MIRROR_NBD);
    RUN_UNTIL(t, t->done || t->failed || t->srv.err[0], 5000);
    RUN_UNTIL(t, t->srv.err[0], 100);                   /* the blockdev-del reaches the server */
    finish(t);
    assert_int_equal(t->ready, 1);
    assert_int_equal(t->done, 1);
    assert_int_equal(t->failed, 0);
    assert_int_equal(t->pivoted, 0);
    free(before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ready_pivot_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pivot_not_taken, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mirror_fails_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nbd_cancel_midway, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nbd_finish, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
