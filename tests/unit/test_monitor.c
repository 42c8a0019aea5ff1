/* Unit tests for the typed QMP layer (src/qemu/monitor*.c).
 *
 * Each test gives the fake QMP server of fake_qmp.c a list of exchanges:
 * the exact command it must receive (name and arguments) and the canned
 * answer it gives.  The client side checks what the qmon_* callbacks got.
 * The last test runs a few read-only commands against a real QEMU. */
#include "qemu/monitor.h"

#include <event2/event.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/util.h"
#include "fake_qmp.h"
#include "qemu/qmp.h"

/* ---- the fake server's side: a list of exchanges -------------------------- */

#define SILENT "(no reply)"       /* reply: answer nothing (timeouts) */
#define HANG_UP "(hang up)"       /* reply: close the connection */

struct exchange {
    const char *execute;          /* "execute", or "exec-oob" when oob */
    const char *args;             /* the exact "arguments" JSON, NULL: none */
    const char *reply;            /* the "return" JSON, SILENT, HANG_UP, or NULL: error */
    const char *err_class;        /* reply NULL: {"error": {"class": err_class, "desc": "boom"}} */
    bool oob, fd;
};

struct script {
    const struct exchange *x;
    size_t n;
    size_t replies_first;         /* receive this many commands before answering any */
};

static void check_args(struct fake *f, const struct exchange *x, json_t *cmd)
{
    json_t *got = json_object_get(cmd, "arguments");
    json_t *want = x->args ? json_loads(x->args, 0, NULL) : NULL;
    if (x->args && !want)
        srv_fail(f, "test bug: bad expected JSON for %s", x->execute);
    else if ((want || got) && !json_equal(want, got)) {
        char *g = got ? json_dumps(got, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
        srv_fail(f, "%s: expected arguments %s, got %s", x->execute, x->args ? x->args : "(none)",
                 g ? g : "(none)");
        free(g);
    }
    json_decref(want);
}

/* Receives one command and checks it against x; NULL on a mismatch. */
static json_t *expect(struct fake *f, const struct exchange *x)
{
    json_t *cmd = srv_recv(f);
    const char *key = x->oob ? "exec-oob" : "execute";
    const char *got = json_string_value(json_object_get(cmd, key));
    if (!got || strcmp(got, x->execute) || !json_object_get(cmd, "id")) {
        srv_fail(f, "expected %s '%s', got '%s'", key, x->execute,
                 cmd ? srv_str_or_empty(json_object_get(cmd, x->oob ? "execute" : "exec-oob")) : "(nothing)");
        json_decref(cmd);
        return NULL;
    }
    check_args(f, x, cmd);
    if (x->fd && f->nfds != 1)
        srv_fail(f, "%s: expected one fd, got %d", x->execute, f->nfds);
    return cmd;
}

static void answer(struct fake *f, const struct exchange *x, json_t *cmd)
{
    if (!x->reply)
        srv_reply_error(f, cmd, x->err_class, "boom");
    else if (!strcmp(x->reply, HANG_UP))
        shutdown(f->fd, SHUT_RDWR);
    else if (strcmp(x->reply, SILENT))
        srv_reply(f, cmd, x->reply);
    json_decref(cmd);
}

static void script_exchanges(struct fake *f)
{
    const struct script *s = f->user;
    json_t *held[16] = {0};
    srv_handshake(f);
    for (size_t i = 0; i < s->n && !f->err[0]; i++) {
        if (i < s->replies_first) {
            held[i] = expect(f, &s->x[i]);
            if (i + 1 == s->replies_first)
                for (size_t k = 0; k <= i; k++)
                    answer(f, &s->x[k], held[k]);
            continue;
        }
        answer(f, &s->x[i], expect(f, &s->x[i]));
    }
    if (!f->err[0] && (s->n == 0 || strcmp(s->x[s->n - 1].reply ? s->x[s->n - 1].reply : "", HANG_UP)))
        srv_wait_eof(f);
}

/* ---- the client's side ---------------------------------------------------- */

struct t {
    struct event_base *base;
    struct event *tick;
    qmp_t *q;
    struct fake srv;
    struct script script;
    int done, errors, released, timeouts;
    enum qmp_err_kind kind;
    char cls[64], desc[256];
    json_t *got;                  /* what a typed callback saw, as JSON */
    struct qmon_owner owner;
};

static void tick_cb(evutil_socket_t fd, short what, void *arg) {}

#define RUN_UNTIL(t, cond, ms)                                         \
    do {                                                               \
        uint64_t end_ = now_ms() + (ms);                               \
        while (!(cond) && now_ms() < end_)                             \
            event_base_loop((t)->base, EVLOOP_ONCE);                   \
    } while (0)

static void on_release(void *obj)
{
    struct t *t = obj;
    t->released++;
}

static void on_owner_timeout(void *obj, const char *command)
{
    struct t *t = obj;
    t->timeouts++;
}

static int setup(void **state)
{
    signal(SIGPIPE, SIG_IGN);
    struct t *t = xcalloc(1, sizeof *t);
    t->base = event_base_new();
    t->tick = event_new(t->base, -1, EV_PERSIST, tick_cb, NULL);
    struct timeval tv = {0, 5000};
    event_add(t->tick, &tv);
    t->q = qmp_new(t->base, NULL, NULL, t);
    t->srv.fd = -1;
    qmon_owner_init(&t->owner, t, on_release);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    struct t *t = *state;
    qmp_free(t->q);
    srv_cleanup(&t->srv);
    json_decref(t->got);
    event_free(t->tick);
    event_base_free(t->base);
    free(t);
    return 0;
}

/* The server answers each command as it comes, or (held > 0) only once the
 * first `held` commands are all in. */
static void start_held(struct t *t, const struct exchange *x, size_t n, size_t held)
{
    t->script = (struct script){x, n, held};
    t->srv.user = &t->script;
    int fd = srv_start_pair(&t->srv, script_exchanges);
    assert_true(fd >= 0);
    assert_int_equal(qmp_attach_fd(t->q, fd), 0);
    /* Before the handshake, commands queue and yank cannot go out of band. */
    RUN_UNTIL(t, qmp_is_ready(t->q) || t->srv.err[0], WAIT_MS);
    assert_true(qmp_is_ready(t->q));
}

static void start(struct t *t, const struct exchange *x, size_t n) { start_held(t, x, n, 0); }

/* Closes the client, joins the server and fails on what it saw. */
static void finish(struct t *t)
{
    qmp_close(t->q, "test done");
    srv_join(&t->srv);
    if (t->srv.err[0])
        fail_msg("%s", t->srv.err);
}

static void record_err(struct t *t, const qmp_error_t *err)
{
    if (!err)
        return;
    t->errors++;
    t->kind = err->kind;
    snprintf(t->cls, sizeof t->cls, "%s", err->cls ? err->cls : "");
    snprintf(t->desc, sizeof t->desc, "%s", err->desc);
}

static void on_done(void *arg, const qmp_error_t *err)
{
    struct t *t = arg;
    t->done++;
    record_err(t, err);
}

/* ---- commands without results: the exact JSON emitted --------------------- */

static void test_commands_emitted(void **state)
{
    struct t *t = *state;
    static const struct exchange x[] = {
        {"yank", "{\"instances\": [{\"type\": \"migration\"}, {\"type\": \"block-node\", "
                 "\"node-name\": \"nbd-vda-7\"}]}", "{}", NULL, true, false},
        {"cont", NULL, "{}", NULL, false, false},
        {"stop", NULL, "{}", NULL, false, false},
        {"system_powerdown", NULL, "{}", NULL, false, false},
        {"migrate_cancel", NULL, "{}", NULL, false, false},
        {"nbd-server-stop", NULL, "{}", NULL, false, false},
        {"migrate", "{\"uri\": \"tcp:10.0.0.2:4444\"}", "{}", NULL, false, false},
        {"migrate-incoming", "{\"uri\": \"fd:vmove-state\"}", "{}", NULL, false, false},
        {"blockdev-del", "{\"node-name\": \"nbd-vda-7\"}", "{}", NULL, false, false},
        {"block-job-cancel", "{\"device\": \"mirror-vda\", \"force\": true}", "{}", NULL, false, false},
        {"block-job-complete", "{\"device\": \"mirror-vda\"}", "{}", NULL, false, false},
        {"block-job-set-speed", "{\"device\": \"mirror-vda\", \"speed\": 0}", "{}", NULL, false, false},
        {"getfd", "{\"fdname\": \"vmove-state\"}", "{}", NULL, false, true},
        {"object-add", "{\"qom-type\": \"tls-creds-x509\", \"id\": \"vmove-tls\", \"dir\": \"/run/tls\", "
                       "\"endpoint\": \"server\", \"verify-peer\": true}", "{}", NULL, false, false},
        {"announce-self", "{\"initial\": 1, \"max\": 200, \"rounds\": 5, \"step\": 50}", "{}", NULL, false, false},
        {"migrate-set-capabilities", "{\"capabilities\": [{\"capability\": \"events\", \"state\": true}, "
                                     "{\"capability\": \"multifd\", \"state\": false}, "
                                     "{\"capability\": \"auto-converge\", \"state\": true}, "
                                     "{\"capability\": \"mapped-ram\", \"state\": true}]}", "{}", NULL, false, false},
        {"migrate-set-parameters", "{\"max-bandwidth\": 125000000, \"downtime-limit\": 50, "
                                   "\"cpu-throttle-initial\": 30, \"cpu-throttle-increment\": 20, "
                                   "\"multifd-channels\": 4, \"multifd-compression\": \"zstd\", \"direct-io\": true, "
                                   "\"tls-creds\": \"vmove-tls-3\", \"tls-hostname\": \"hostb\"}", "{}", NULL, false, false},
        {"migrate-set-parameters", "{\"downtime-limit\": 100}", "{}", NULL, false, false},
        {"migrate-set-parameters", "{\"tls-creds\": \"\"}", "{}", NULL, false, false},
        {"blockdev-add", "{\"driver\": \"file\", \"node-name\": \"vda-file-m9\", \"filename\": \"/d/vda.qcow2\", "
                         "\"discard\": \"unmap\"}", "{}", NULL, false, false},
        {"blockdev-add", "{\"driver\": \"qcow2\", \"node-name\": \"vda-m9\", \"file\": \"vda-file-m9\", "
                         "\"discard\": \"unmap\"}", "{}", NULL, false, false},
        {"blockdev-add", "{\"driver\": \"nbd\", \"node-name\": \"nbd-vda-7\", \"server\": {\"type\": \"inet\", "
                         "\"host\": \"10.0.0.2\", \"port\": \"10809\"}, \"export\": \"vda\", "
                         "\"tls-creds\": \"vmove-tls-7\", \"tls-hostname\": \"hostb\"}", "{}", NULL, false, false},
        {"blockdev-mirror", "{\"job-id\": \"mirror-vda-7\", \"device\": \"vda\", \"target\": \"nbd-vda-7\", "
                            "\"sync\": \"full\", \"copy-mode\": \"write-blocking\"}", "{}", NULL, false, false},
        {"blockdev-mirror", "{\"job-id\": \"mirror-vda\", \"device\": \"vda\", \"target\": \"vda-m9\", "
                            "\"sync\": \"full\", \"copy-mode\": \"write-blocking\", \"auto-finalize\": true, "
                            "\"auto-dismiss\": true, \"speed\": 1048576}", "{}", NULL, false, false},
        {"nbd-server-start", "{\"addr\": {\"type\": \"inet\", \"data\": {\"host\": \"10.0.0.2\", "
                             "\"port\": \"10809\"}}, \"tls-creds\": \"vmove-tls\"}", "{}", NULL, false, false},
        {"nbd-server-start", "{\"addr\": {\"type\": \"inet\", \"data\": {\"host\": \"10.0.0.2\", "
                             "\"port\": \"10810\"}}}", "{}", NULL, false, false},
        {"block-export-add", "{\"type\": \"nbd\", \"id\": \"nbd-vda\", \"node-name\": \"vda\", "
                             "\"writable\": true, \"name\": \"vda\"}", "{}", NULL, false, false},
        {"transaction", "{\"actions\": [{\"type\": \"blockdev-backup\", \"data\": {\"job-id\": \"export-vda\", "
                        "\"device\": \"vda\", \"target\": \"vda-x3\", \"sync\": \"full\", \"auto-dismiss\": false}}, "
                        "{\"type\": \"blockdev-backup\", \"data\": {\"job-id\": \"export-vdb\", \"device\": \"vdb-m2\", "
                        "\"target\": \"vdb-x3\", \"sync\": \"full\", \"auto-dismiss\": false, \"speed\": 1048576}}], "
                        "\"properties\": {\"completion-mode\": \"grouped\"}}", "{}", NULL, false, false},
        {"block-job-dismiss", "{\"id\": \"export-vda\"}", "{}", NULL, false, false},
        {"migrate-start-postcopy", NULL, "{}", NULL, false, false},
        {"migrate", "{\"uri\": \"tcp:10.0.0.2:4445\", \"resume\": true}", "{}", NULL, false, false},
        {"migrate-set-capabilities", "{\"capabilities\": [{\"capability\": \"postcopy-ram\", \"state\": true}, "
                                     "{\"capability\": \"postcopy-preempt\", \"state\": true}]}", "{}", NULL, false, false},
        {"blockdev-add", "{\"driver\": \"qcow2\", \"node-name\": \"vda-ck3\", \"file\": \"vda-file-ck3\", "
                         "\"backing\": null}", "{}", NULL, false, false},
        {"transaction", "{\"actions\": [{\"type\": \"blockdev-snapshot\", \"data\": {\"node\": \"vda\", "
                        "\"overlay\": \"vda-ck3\"}}, {\"type\": \"blockdev-snapshot\", \"data\": "
                        "{\"node\": \"vdb-m2\", \"overlay\": \"vdb-ck3\"}}]}", "{}", NULL, false, false},
        {"block-commit", "{\"job-id\": \"ckdel-vda\", \"device\": \"vda-ck3\", \"top-node\": \"#block12\", "
                         "\"base-node\": \"#block9\", \"backing-file\": \"vda.qcow2\", \"auto-finalize\": false, "
                         "\"speed\": 1048576}", "{}", NULL, false, false},
        {"block-commit", "{\"job-id\": \"ckdel-vda\", \"device\": \"vda-ck3\", \"top-node\": \"vda-ck3\", "
                         "\"base-node\": \"vda\"}", "{}", NULL, false, false},
        {"job-finalize", "{\"id\": \"ckdel-vda\"}", "{}", NULL, false, false},
        {"migrate-set-capabilities", "{\"capabilities\": [{\"capability\": \"background-snapshot\", "
                                     "\"state\": true}]}", "{}", NULL, false, false},
        {"quit", NULL, "{}", NULL, false, false},
    };
    start(t, x, ARRAY_LEN(x));
    qmp_t *q = t->q;
    struct qmon_owner *o = &t->owner;
    int n = 0;
    /* out of band first: it would overtake the commands queued before it */
    struct qmon_yank_instance yi[] = {{QMON_YANK_MIGRATION, NULL}, {QMON_YANK_BLOCK_NODE, "nbd-vda-7"}};
    n += !qmon_yank(q, o, yi, 2, 5000, on_done, t);
    n += !qmon_cont(q, o, 5000, on_done, t);
    n += !qmon_stop(q, o, 5000, on_done, t);
    n += !qmon_system_powerdown(q, o, 5000, on_done, t);
    n += !qmon_migrate_cancel(q, o, 5000, on_done, t);
    n += !qmon_nbd_server_stop(q, o, 5000, on_done, t);
    n += !qmon_migrate(q, o, "tcp:10.0.0.2:4444", 5000, on_done, t);
    n += !qmon_migrate_incoming(q, o, "fd:vmove-state", 5000, on_done, t);
    n += !qmon_blockdev_del(q, o, "nbd-vda-7", 5000, on_done, t);
    n += !qmon_block_job_cancel(q, o, "mirror-vda", true, 5000, on_done, t);
    n += !qmon_block_job_complete(q, o, "mirror-vda", 5000, on_done, t);
    n += !qmon_block_job_set_speed(q, o, "mirror-vda", 0, 5000, on_done, t);
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    n += !qmon_getfd(q, o, "vmove-state", fd, 5000, on_done, t);
    close(fd);
    n += !qmon_object_add(q, o, &(struct qmon_tls_creds){"vmove-tls", "/run/tls", true, true}, 5000, on_done, t);
    n += !qmon_announce_self(q, o, &(struct qmon_announce){1, 200, 5, 50}, 5000, on_done, t);
    struct qmon_cap_state caps[] = {{QMON_CAP_EVENTS, true}, {QMON_CAP_MULTIFD, false},
                                    {QMON_CAP_AUTO_CONVERGE, true}, {QMON_CAP_MAPPED_RAM, true}};
    n += !qmon_migrate_set_capabilities(q, o, caps, 4, 5000, on_done, t);
    struct qmon_migrate_params p = {
        .has_max_bandwidth = true, .max_bandwidth = 125000000, .has_downtime_limit = true, .downtime_limit = 50,
        .has_cpu_throttle_initial = true, .cpu_throttle_initial = 30, .has_cpu_throttle_increment = true,
        .cpu_throttle_increment = 20, .has_multifd_channels = true, .multifd_channels = 4,
        .has_multifd_compression = true, .multifd_compression = QMON_COMPRESS_ZSTD, .has_direct_io = true,
        .direct_io = true, .tls_creds = "vmove-tls-3",
        .tls_hostname = "hostb"};
    n += !qmon_migrate_set_parameters(q, o, &p, 5000, on_done, t);
    n += !qmon_migrate_set_parameters(q, o, &(struct qmon_migrate_params){.has_downtime_limit = true,
                                                                          .downtime_limit = 100}, 5000, on_done, t);
    n += !qmon_migrate_set_parameters(q, o, &(struct qmon_migrate_params){.tls_creds = ""}, 5000, on_done, t);
    n += !qmon_blockdev_add(q, o, &(struct qmon_blockdev){.driver = QMON_BLOCKDEV_FILE, .node_name = "vda-file-m9",
                                                          .discard_unmap = true, .filename = "/d/vda.qcow2"},
                            5000, on_done, t);
    n += !qmon_blockdev_add(q, o, &(struct qmon_blockdev){.driver = QMON_BLOCKDEV_QCOW2, .node_name = "vda-m9",
                                                          .discard_unmap = true, .file = "vda-file-m9"},
                            5000, on_done, t);
    n += !qmon_blockdev_add(q, o, &(struct qmon_blockdev){.driver = QMON_BLOCKDEV_NBD, .node_name = "nbd-vda-7",
                                                          .host = "10.0.0.2", .port = 10809, .export_name = "vda",
                                                          .tls_creds = "vmove-tls-7", .tls_hostname = "hostb"},
                            5000, on_done, t);
    n += !qmon_blockdev_mirror(q, o, &(struct qmon_mirror){.job_id = "mirror-vda-7", .device = "vda",
                                                           .target = "nbd-vda-7", .sync = QMON_SYNC_FULL,
                                                           .write_blocking = true}, 5000, on_done, t);
    n += !qmon_blockdev_mirror(q, o, &(struct qmon_mirror){.job_id = "mirror-vda", .device = "vda",
                                                           .target = "vda-m9", .sync = QMON_SYNC_FULL,
                                                           .write_blocking = true, .has_auto_finalize = true,
                                                           .auto_finalize = true, .has_auto_dismiss = true,
                                                           .auto_dismiss = true, .speed = 1048576},
                               5000, on_done, t);
    n += !qmon_nbd_server_start(q, o, "10.0.0.2", 10809, "vmove-tls", 5000, on_done, t);
    n += !qmon_nbd_server_start(q, o, "10.0.0.2", 10810, NULL, 5000, on_done, t);
    n += !qmon_block_export_add(q, o, &(struct qmon_nbd_export){"nbd-vda", "vda", NULL, true}, 5000, on_done, t);
    struct qmon_backup bk[] = {{"export-vda", "vda", "vda-x3", 0}, {"export-vdb", "vdb-m2", "vdb-x3", 1048576}};
    n += !qmon_backup_transaction(q, o, bk, 2, 5000, on_done, t);
    n += !qmon_block_job_dismiss(q, o, "export-vda", 5000, on_done, t);
    n += !qmon_migrate_start_postcopy(q, o, 5000, on_done, t);
    n += !qmon_migrate_resume(q, o, "tcp:10.0.0.2:4445", 5000, on_done, t);
    struct qmon_cap_state pc[] = {{QMON_CAP_POSTCOPY_RAM, true}, {QMON_CAP_POSTCOPY_PREEMPT, true}};
    n += !qmon_migrate_set_capabilities(q, o, pc, 2, 5000, on_done, t);
    n += !qmon_blockdev_add(q, o, &(struct qmon_blockdev){.driver = QMON_BLOCKDEV_QCOW2, .node_name = "vda-ck3",
                                                          .file = "vda-file-ck3", .no_backing = true},
                            5000, on_done, t);
    struct qmon_snapshot snaps[] = {{"vda", "vda-ck3"}, {"vdb-m2", "vdb-ck3"}};
    n += !qmon_blockdev_snapshot(q, o, snaps, 2, 5000, on_done, t);
    n += !qmon_block_commit(q, o, &(struct qmon_commit){.job_id = "ckdel-vda", .device = "vda-ck3",
                                                        .top_node = "#block12", .base_node = "#block9",
                                                        .backing_file = "vda.qcow2", .has_auto_finalize = true,
                                                        .speed = 1048576}, 5000, on_done, t);
    n += !qmon_block_commit(q, o, &(struct qmon_commit){.job_id = "ckdel-vda", .device = "vda-ck3",
                                                        .top_node = "vda-ck3", .base_node = "vda"}, 5000, on_done, t);
    n += !qmon_job_finalize(q, o, "ckdel-vda", 5000, on_done, t);
    n += !qmon_migrate_set_capabilities(q, o, &(struct qmon_cap_state){QMON_CAP_BACKGROUND_SNAPSHOT, true}, 1, 5000,
                                        on_done, t);
    n += !qmon_quit(q, o, 5000, on_done, t);
    assert_int_equal(n, (int)ARRAY_LEN(x));
    assert_int_equal(t->owner.refs, 1 + n);   /* one reference per reply on its way */
    assert_int_equal(t->done, 0);             /* never synchronously */
    RUN_UNTIL(t, t->done == n || t->srv.err[0], WAIT_MS);
    finish(t);
    assert_int_equal(t->done, n);
    assert_int_equal(t->errors, 0);
    assert_int_equal(t->owner.refs, 1);
    assert_int_equal(t->released, 0);
}

/* Post-copy recovery goes out of band: a destination's vCPU waiting for a
 * page may hold QEMU's big lock, and in-band commands would wait with it. */
static void test_postcopy_recovery_out_of_band(void **state)
{
    struct t *t = *state;
    static const struct exchange x[] = {
        {"migrate-pause", NULL, "{}", NULL, true, false},
        {"migrate-recover", "{\"uri\": \"tcp:10.0.0.2:4445\"}", "{}", NULL, true, false},
    };
    start(t, x, ARRAY_LEN(x));
    assert_int_equal(qmon_migrate_recover(t->q, &t->owner, NULL, 5000, on_done, t), -1);   /* nothing sent */
    assert_int_equal(qmon_migrate_pause(t->q, &t->owner, 5000, on_done, t), 0);
    RUN_UNTIL(t, t->done == 1 || t->srv.err[0], WAIT_MS);
    assert_int_equal(qmon_migrate_recover(t->q, &t->owner, "tcp:10.0.0.2:4445", 5000, on_done, t), 0);
    RUN_UNTIL(t, t->done == 2 || t->srv.err[0], WAIT_MS);
    finish(t);
    assert_int_equal(t->done, 2);
    assert_int_equal(t->errors, 0);
}

/* ---- queries: parsed results ---------------------------------------------- */

static void on_status(void *arg, const struct qmon_status *st, const qmp_error_t *err)
{
    struct t *t = arg;
    t->done++;
    record_err(t, err);
    if (st)
        t->got = json_pack("{s:b, s:s, s:b}", "running", st->running, "status", st->status, "raw",
                           st->raw != NULL);
}

static void test_query_status(void **state)
{
    struct t *t = *state;
    static const struct exchange x[] = {{"query-status", NULL, "{\"running\": false, \"status\": \"inmigrate\"}", NULL, false, false}};
    start(t, x, 1);
    assert_int_equal(qmon_query_status(t->q, &t->owner, 5000, on_status, t), 0);
    RUN_UNTIL(t, t->done, WAIT_MS);
    finish(t);
    assert_int_equal(t->errors, 0);
    assert_false(json_is_true(json_object_get(t->got, "running")));
    assert_string_equal(json_string_value(json_object_get(t->got, "status")), "inmigrate");
    assert_true(json_is_true(json_object_get(t->got, "raw")));
}

#define MIGRATE_ACTIVE                                                                                     \
    "{\"status\": \"active\", \"setup-time\": 12, \"total-time\": 3456, \"expected-downtime\": 300, "      \
    "\"cpu-throttle-percentage\": 40, \"ram\": {\"transferred\": 1000000, \"remaining\": 2000000, "        \
    "\"total\": 4294967296, \"duplicate\": 5, \"normal\": 7, \"normal-bytes\": 28672, "                    \
    "\"dirty-pages-rate\": 1500, \"mbps\": 941.5, \"dirty-sync-count\": 3, \"postcopy-requests\": 0, "     \
    "\"page-size\": 4096, \"multifd-bytes\": 999, \"pages-per-second\": 22000, \"precopy-bytes\": 1, "     \
    "\"downtime-bytes\": 0, \"postcopy-bytes\": 0, \"dirty-sync-missed-zero-copy\": 0}}"

static struct qmon_migrate_stats last_stats;

static void on_stats(void *arg, const struct qmon_migrate_stats *s, const qmp_error_t *err)
{
    struct t *t = arg;
    t->done++;
    record_err(t, err);
    memset(&last_stats, 0, sizeof last_stats);
    if (s) {
        last_stats = *s;
        /* borrowed: copy what the test reads after the callback */
        json_decref(t->got);
        t->got = json_pack("{s:s, s:s?}", "status", s->status_name, "error", s->error_desc);
        last_stats.raw = NULL;
        last_stats.status_name = NULL;
        last_stats.error_desc = NULL;
    }
}

static void test_query_migrate(void **state)
{
    struct t *t = *state;
    static const struct exchange x[] = {
        {"query-migrate", NULL, MIGRATE_ACTIVE, NULL, false, false},
        {"query-migrate", NULL, "{}", NULL, false, false},
        {"query-migrate", NULL, "{\"status\": \"failed\", \"error-desc\": \"Unable to write to socket\"}", NULL, false, false},
        {"query-migrate", NULL, "{\"status\": \"some-future-state\"}", NULL, false, false},
        {"query-migrate", NULL, "{\"status\": \"completed\", \"downtime\": 41, \"total-time\": 5000, "
                                "\"ram\": {\"transferred\": 5, \"remaining\": 0, \"total\": 5}}", NULL, false, false},
    };
    start(t, x, ARRAY_LEN(x));
    assert_int_equal(qmon_query_migrate(t->q, &t->owner, 5000, on_stats, t), 0);
    RUN_UNTIL(t, t->done == 1, WAIT_MS);
    assert_int_equal(t->errors, 0);
    assert_string_equal(json_string_value(json_object_get(t->got, "status")), "active");
    assert_int_equal(last_stats.status, QMON_MIG_ACTIVE);
    assert_true(qmon_mig_status_active(last_stats.status));
    assert_true(last_stats.has_ram);
    assert_int_equal(last_stats.ram.transferred, 1000000);
    assert_int_equal(last_stats.ram.remaining, 2000000);
    assert_int_equal(last_stats.ram.total, 4294967296ull);
    assert_int_equal(last_stats.ram.dirty_pages_rate, 1500);
    assert_int_equal(last_stats.ram.page_size, 4096);
    assert_int_equal(last_stats.ram.dirty_sync_count, 3);
    assert_int_equal(last_stats.ram.pages_per_second, 22000);
    assert_int_equal(last_stats.ram.multifd_bytes, 999);
    assert_true(last_stats.ram.mbps > 941.4 && last_stats.ram.mbps < 941.6);
    assert_int_equal(last_stats.setup_time, 12);
    assert_int_equal(last_stats.total_time, 3456);
    assert_int_equal(last_stats.expected_downtime, 300);
    assert_int_equal(last_stats.downtime, 0);
    assert_int_equal(last_stats.cpu_throttle_percentage, 40);

    /* no migration yet: QEMU answers {} */
    assert_int_equal(qmon_query_migrate(t->q, &t->owner, 5000, on_stats, t), 0);
    RUN_UNTIL(t, t->done == 2, WAIT_MS);
    assert_int_equal(last_stats.status, QMON_MIG_NONE);
    assert_string_equal(json_string_value(json_object_get(t->got, "status")), "none");
    assert_false(last_stats.has_ram);
    assert_false(qmon_mig_status_active(last_stats.status));

    assert_int_equal(qmon_query_migrate(t->q, &t->owner, 5000, on_stats, t), 0);
    RUN_UNTIL(t, t->done == 3, WAIT_MS);
    assert_int_equal(last_stats.status, QMON_MIG_FAILED);
    assert_string_equal(json_string_value(json_object_get(t->got, "error")), "Unable to write to socket");

    /* a status newer than this code: kept by name, not an error */
    assert_int_equal(qmon_query_migrate(t->q, &t->owner, 5000, on_stats, t), 0);
    RUN_UNTIL(t, t->done == 4, WAIT_MS);
    assert_int_equal(t->errors, 0);
    assert_int_equal(last_stats.status, QMON_MIG_UNKNOWN);
    assert_string_equal(json_string_value(json_object_get(t->got, "status")), "some-future-state");

    assert_int_equal(qmon_query_migrate(t->q, &t->owner, 5000, on_stats, t), 0);
    RUN_UNTIL(t, t->done == 5, WAIT_MS);
    finish(t);
    assert_int_equal(t->errors, 0);
    assert_int_equal(last_stats.status, QMON_MIG_COMPLETED);
    assert_int_equal(last_stats.downtime, 41);
    assert_int_equal(last_stats.ram.dirty_sync_count, 0);
}

static void on_jobs(void *arg, const struct qmon_block_job *jobs, size_t n, const qmp_error_t *err)
{
    struct t *t = arg;
    t->done++;
    record_err(t, err);
    json_decref(t->got);
    t->got = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(t->got, json_pack("{s:s, s:s?, s:s, s:I, s:I, s:I, s:b, s:b, s:b, s:s?, s:b}",
                                                "device", jobs[i].device, "type", jobs[i].type, "status",
                                                jobs[i].status, "len", (json_int_t)jobs[i].len, "offset",
                                                (json_int_t)jobs[i].offset, "speed", (json_int_t)jobs[i].speed,
                                                "ready", jobs[i].ready, "busy", jobs[i].busy, "paused",
                                                jobs[i].paused, "error", jobs[i].error, "raw", jobs[i].raw != NULL));
}

static void test_query_block_jobs(void **state)
{
    struct t *t = *state;
    static const struct exchange x[] = {
        {"query-block-jobs", NULL,
         "[{\"auto-finalize\": true, \"io-status\": \"ok\", \"device\": \"mirror-vda\", \"auto-dismiss\": true, "
         "\"busy\": true, \"len\": 1073741824, \"offset\": 536870912, \"status\": \"running\", \"paused\": false, "
         "\"speed\": 0, \"ready\": false, \"type\": \"mirror\", \"actively-synced\": false}, "
         "{\"device\": \"mirror-vdb\", \"type\": \"mirror\", \"len\": 10, \"offset\": 10, \"ready\": true, "
         "\"status\": \"ready\", \"busy\": false, \"paused\": false, \"speed\": 5, \"error\": \"No space\"}]", NULL, false, false},
        {"query-block-jobs", NULL, "[]", NULL, false, false},
    };
    start(t, x, ARRAY_LEN(x));
    assert_int_equal(qmon_query_block_jobs(t->q, &t->owner, 5000, on_jobs, t), 0);
    RUN_UNTIL(t, t->done == 1, WAIT_MS);
    assert_int_equal(t->errors, 0);
    json_t *want = json_loads("[{\"device\": \"mirror-vda\", \"type\": \"mirror\", \"status\": \"running\", "
                              "\"len\": 1073741824, \"offset\": 536870912, \"speed\": 0, \"ready\": false, "
                              "\"busy\": true, \"paused\": false, \"error\": null, \"raw\": true}, "
                              "{\"device\": \"mirror-vdb\", \"type\": \"mirror\", \"status\": \"ready\", "
                              "\"len\": 10, \"offset\": 10, \"speed\": 5, \"ready\": true, \"busy\": false, "
                              "\"paused\": false, \"error\": \"No space\", \"raw\": true}]", 0, NULL);
    assert_true(json_equal(want, t->got));
    json_decref(want);
    assert_int_equal(qmon_query_block_jobs(t->q, &t->owner, 5000, on_jobs, t), 0);
    RUN_UNTIL(t, t->done == 2, WAIT_MS);
    finish(t);
    assert_int_equal(t->errors, 0);
    assert_int_equal(json_array_size(t->got), 0);
}

static void on_block(void *arg, const struct qmon_block_device *devs, size_t n, const qmp_error_t *err)
{
    struct t *t = arg;
    t->done++;
    record_err(t, err);
    json_decref(t->got);
    t->got = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(t->got, json_pack("{s:s, s:s?, s:b, s:s?, s:s?, s:s?, s:b}", "device",
                                                devs[i].device, "qdev", devs[i].qdev, "inserted", devs[i].inserted,
                                                "node", devs[i].node_name, "file", devs[i].file, "drv",
                                                devs[i].drv, "ro", devs[i].ro));
    const struct qmon_block_device *d = qmon_block_by_qdev(devs, n, "vda-dev");
    const struct qmon_block_device *none = qmon_block_by_qdev(devs, n, "da-dev");
    json_array_append_new(t->got, json_string(d && !none ? d->node_name : "(lookup failed)"));
}

static void test_query_block(void **state)
{
    struct t *t = *state;
    static const struct exchange x[] = {
        {"query-block", NULL,
         "[{\"device\": \"\", \"qdev\": \"/machine/peripheral/xvda-dev/virtio-backend\", \"type\": \"unknown\", "
         "\"removable\": false, \"locked\": false, \"inserted\": {\"node-name\": \"xvda\", \"file\": \"/d/x.qcow2\", "
         "\"drv\": \"qcow2\", \"ro\": false}}, "
         "{\"device\": \"\", \"qdev\": \"/machine/peripheral/vda-dev/virtio-backend\", \"type\": \"unknown\", "
         "\"removable\": false, \"locked\": false, \"inserted\": {\"node-name\": \"vda-m17\", "
         "\"file\": \"/new/vda.qcow2\", \"drv\": \"qcow2\", \"ro\": false, \"backing_file_depth\": 0}}, "
         "{\"device\": \"cd0\", \"type\": \"unknown\", \"removable\": true, \"locked\": false}]", NULL, false, false},
    };
    start(t, x, 1);
    assert_int_equal(qmon_query_block(t->q, &t->owner, 5000, on_block, t), 0);
    RUN_UNTIL(t, t->done, WAIT_MS);
    finish(t);
    assert_int_equal(t->errors, 0);
    json_t *want = json_loads(
        "[{\"device\": \"\", \"qdev\": \"/machine/peripheral/xvda-dev/virtio-backend\", \"inserted\": true, "
        "\"node\": \"xvda\", \"file\": \"/d/x.qcow2\", \"drv\": \"qcow2\", \"ro\": false}, "
        "{\"device\": \"\", \"qdev\": \"/machine/peripheral/vda-dev/virtio-backend\", \"inserted\": true, "
        "\"node\": \"vda-m17\", \"file\": \"/new/vda.qcow2\", \"drv\": \"qcow2\", \"ro\": false}, "
        "{\"device\": \"cd0\", \"qdev\": null, \"inserted\": false, \"node\": null, \"file\": null, \"drv\": null, "
        "\"ro\": false}, \"vda-m17\"]", 0, NULL);
    assert_true(json_equal(want, t->got));
    json_decref(want);
}

/* query-block after a live checkpoint: the top's file is a json: name
 * (its backing attached by blockdev-snapshot); the image file is inside,
 * which is what a storage move compares with vm.json. */
static void test_parse_block_json_file(void **state)
{
    json_t *ret = json_loads(
        "[{\"device\": \"\", \"qdev\": \"/machine/peripheral/vda-dev/virtio-backend\", \"inserted\": "
        "{\"node-name\": \"vda-ck5\", \"drv\": \"qcow2\", \"ro\": false, \"file\": \"json:{\\\"backing\\\": "
        "\\\"vda\\\", \\\"driver\\\": \\\"qcow2\\\", \\\"file\\\": {\\\"driver\\\": \\\"file\\\", "
        "\\\"filename\\\": \\\"/d/vda.ck1.qcow2\\\"}}\"}}]", 0, NULL);
    assert_non_null(ret);
    struct qmon_block_device *devs;
    size_t n;
    char err[256];
    assert_int_equal(qmon_parse_block_reply(ret, &devs, &n, err, sizeof err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(devs[0].node_name, "vda-ck5");
    assert_string_equal(devs[0].file, "/d/vda.ck1.qcow2");
    free(devs);
    json_decref(ret);
}

/* query-named-block-nodes: a json: pseudo-filename (an overlay whose
 * backing was attached by blockdev-snapshot) still names its image. */
static void test_parse_named_nodes(void **state)
{
    json_t *ret = json_loads(
        "[{\"node-name\": \"vda-ck3\", \"drv\": \"qcow2\", \"file\": \"json:{\\\"backing\\\": {\\\"driver\\\": "
        "\\\"qcow2\\\"}, \\\"driver\\\": \\\"qcow2\\\", \\\"file\\\": {\\\"driver\\\": \\\"file\\\", "
        "\\\"filename\\\": \\\"/d/vda.ck1.qcow2\\\"}}\", \"backing_file\": \"/d/vda.qcow2\"}, "
        "{\"node-name\": \"vda-ck4\", \"drv\": \"qcow2\", \"file\": \"/d/vda.ck2.qcow2\", \"backing_file\": "
        "\"json:{\\\"driver\\\": \\\"qcow2\\\", \\\"file\\\": {\\\"driver\\\": \\\"file\\\", \\\"filename\\\": "
        "\\\"/d/vda.ck1.qcow2\\\"}}\"}, "
        "{\"node-name\": \"#block1\", \"drv\": \"qcow2\", \"file\": \"/d/vda.qcow2\"}, "
        "{\"node-name\": \"vda-x\", \"drv\": \"qcow2\", \"file\": \"json:{\\\"driver\\\": \\\"nbd\\\"}\"}]",
        0, NULL);
    assert_non_null(ret);
    struct qmon_named_node *nodes;
    size_t n;
    char err[256];
    assert_int_equal(qmon_parse_named_nodes_reply(ret, &nodes, &n, err, sizeof err), 0);
    assert_int_equal(n, 4);
    assert_string_equal(nodes[0].image, "/d/vda.ck1.qcow2");
    assert_string_equal(nodes[0].backing_file, "/d/vda.qcow2");
    assert_string_equal(nodes[1].backing_file, "/d/vda.ck1.qcow2");   /* a json: backing name */
    assert_string_equal(nodes[2].image, "/d/vda.qcow2");
    assert_null(nodes[2].backing_file);
    assert_null(nodes[3].image);   /* no file inside: not a path */
    free(nodes);
    json_decref(ret);
    /* a node without its name is a malformed reply */
    ret = json_loads("[{\"drv\": \"qcow2\", \"file\": \"/x\"}]", 0, NULL);
    assert_int_equal(qmon_parse_named_nodes_reply(ret, &nodes, &n, err, sizeof err), -1);
    assert_non_null(strstr(err, "node-name"));
    free(nodes);
    json_decref(ret);
}

/* ---- error paths ---------------------------------------------------------- */

static void test_qemu_error(void **state)
{
    struct t *t = *state;
    static const struct exchange x[] = {
        {"blockdev-del", "{\"node-name\": \"gone\"}", NULL, "GenericError", false, false},
        {"query-migrate", NULL, NULL, "CommandNotFound", false, false},
    };
    start(t, x, ARRAY_LEN(x));
    assert_int_equal(qmon_blockdev_del(t->q, &t->owner, "gone", 5000, on_done, t), 0);
    RUN_UNTIL(t, t->done == 1, WAIT_MS);
    assert_int_equal(t->kind, QMP_ERR_QEMU);
    assert_string_equal(t->cls, "GenericError");
    assert_string_equal(t->desc, "boom");
    assert_int_equal(qmon_query_migrate(t->q, &t->owner, 5000, on_stats, t), 0);
    RUN_UNTIL(t, t->done == 2, WAIT_MS);
    finish(t);
    assert_int_equal(t->errors, 2);
    assert_int_equal(t->kind, QMP_ERR_QEMU);
    assert_string_equal(t->cls, "CommandNotFound");
    assert_int_equal(t->owner.refs, 1);
}

static void test_timeout_hook(void **state)
{
    struct t *t = *state;
    static const struct exchange x[] = {{"query-migrate", NULL, SILENT, NULL, false, false}, {"cont", NULL, SILENT, NULL, false, false}};
    t->owner.on_timeout = on_owner_timeout;
    start(t, x, ARRAY_LEN(x));
    assert_int_equal(qmon_query_migrate(t->q, &t->owner, 100, on_stats, t), 0);
    assert_int_equal(qmon_cont(t->q, &t->owner, 100, NULL, NULL), 0);   /* fire and forget: no hook */
    RUN_UNTIL(t, t->done, WAIT_MS);
    assert_int_equal(t->kind, QMP_ERR_TIMEOUT);
    RUN_UNTIL(t, false, 300);     /* the fire-and-forget timeout passes too */
    finish(t);
    assert_int_equal(t->done, 1);
    assert_int_equal(t->timeouts, 1);
    assert_int_equal(t->owner.refs, 1);
}

static void test_disconnect(void **state)
{
    struct t *t = *state;
    static const struct exchange x[] = {{"query-block", NULL, HANG_UP, NULL, false, false}};
    start(t, x, 1);
    assert_int_equal(qmon_query_block(t->q, &t->owner, 5000, on_block, t), 0);
    RUN_UNTIL(t, t->done, WAIT_MS);
    finish(t);
    assert_int_equal(t->done, 1);
    assert_int_equal(t->kind, QMP_ERR_DISCONNECTED);
    assert_int_equal(json_array_size(t->got), 1);   /* no devices, just the lookup's miss */
    assert_int_equal(t->owner.refs, 1);
}

/* The owner ends while its replies are on their way: no callback, and the
 * owner is released once, by the last reply. */
static void test_reply_after_owner_died(void **state)
{
    struct t *t = *state;
    static const struct exchange x[] = {
        {"query-status", NULL, "{\"running\": true, \"status\": \"running\"}", NULL, false, false},
        {"block-job-complete", "{\"device\": \"mirror-vda\"}", "{}", NULL, false, false},
        {"stop", NULL, "{}", NULL, false, false},
    };
    start_held(t, x, ARRAY_LEN(x), 3);   /* all three are in before any answer */
    assert_int_equal(qmon_query_status(t->q, &t->owner, 5000, on_status, t), 0);
    assert_int_equal(qmon_block_job_complete(t->q, &t->owner, "mirror-vda", 5000, on_done, t), 0);
    qmon_owner_end(&t->owner);
    qmon_owner_end(&t->owner);     /* idempotent */
    assert_int_equal(t->owner.refs, 2);
    assert_int_equal(t->released, 0);
    assert_false(qmon_owner_alive(&t->owner));
    int stopped = 0;
    assert_int_equal(qmon_stop(t->q, NULL, 5000, on_done, t), 0);   /* no owner: always delivered */
    RUN_UNTIL(t, t->done, WAIT_MS);
    stopped = t->done;
    finish(t);
    assert_int_equal(stopped, 1);
    assert_int_equal(t->done, 1);
    assert_int_equal(t->errors, 0);
    assert_null(t->got);
    assert_int_equal(t->released, 1);
    assert_int_equal(t->owner.refs, 0);
}

/* A muted owner keeps its reference; a close fails the pending reply
 * synchronously, which must not reach the callback either. */
static void test_muted_owner_and_close(void **state)
{
    struct t *t = *state;
    static const struct exchange x[] = {{"query-block-jobs", NULL, SILENT, NULL, false, false}};
    start(t, x, 1);
    assert_int_equal(qmon_query_block_jobs(t->q, &t->owner, 5000, on_jobs, t), 0);
    RUN_UNTIL(t, false, 100);      /* written out before the close */
    qmon_owner_mute(&t->owner);
    finish(t);                     /* qmp_close: DISCONNECTED, dropped */
    assert_int_equal(t->done, 0);
    assert_int_equal(t->owner.refs, 1);
    assert_int_equal(t->released, 0);
    qmon_owner_end(&t->owner);
    assert_int_equal(t->released, 1);
}

static void test_malformed_replies(void **state)
{
    struct t *t = *state;
    static const struct exchange x[] = {
        {"query-migrate", NULL, "{\"status\": \"active\", \"ram\": {\"transferred\": \"lots\", "
                                "\"remaining\": 1, \"total\": 2}}", NULL, false, false},
        {"query-migrate", NULL, "\"active\"", NULL, false, false},
        {"query-migrate", NULL, "{\"status\": \"active\", \"ram\": {\"remaining\": 1, \"total\": 2}}", NULL, false, false},
        {"query-migrate", NULL, "{\"status\": 7}", NULL, false, false},
        {"query-migrate", NULL, "{\"status\": \"active\", \"ram\": {\"transferred\": -1, \"remaining\": 1, "
                                "\"total\": 2}}", NULL, false, false},
        {"query-status", NULL, "{\"status\": \"running\"}", NULL, false, false},
        {"query-block-jobs", NULL, "{}", NULL, false, false},
        {"query-block-jobs", NULL, "[{\"device\": \"j\", \"len\": 1, \"offset\": 0, \"ready\": \"no\"}]", NULL, false, false},
        {"query-block-jobs", NULL, "[17]", NULL, false, false},
        {"query-block", NULL, "[{\"device\": \"\", \"inserted\": {\"node-name\": \"vda\"}}]", NULL, false, false},
        {"query-block", NULL, "[{\"device\": \"\", \"inserted\": []}]", NULL, false, false},
    };
    static const char *const want[] = {
        "query-migrate: malformed reply: return.ram.transferred is not an integer",
        "query-migrate: malformed reply: return is not an object",
        "query-migrate: malformed reply: return.ram.transferred is missing",
        "query-migrate: malformed reply: return.status is not a string",
        "query-migrate: malformed reply: return.ram.transferred is not a non-negative integer",
        "query-status: malformed reply: return.running is missing",
        "query-block-jobs: malformed reply: return is not an array",
        "query-block-jobs: malformed reply: return[0].ready is not a boolean",
        "query-block-jobs: malformed reply: return[0] is not an object",
        "query-block: malformed reply: return[0].inserted.file is missing",
        "query-block: malformed reply: return[0].inserted is not an object",
    };
    start(t, x, ARRAY_LEN(x));
    for (size_t i = 0; i < ARRAY_LEN(x); i++) {
        const char *c = x[i].execute;
        int rc = !strcmp(c, "query-migrate")      ? qmon_query_migrate(t->q, &t->owner, 5000, on_stats, t)
                 : !strcmp(c, "query-status")     ? qmon_query_status(t->q, &t->owner, 5000, on_status, t)
                 : !strcmp(c, "query-block-jobs") ? qmon_query_block_jobs(t->q, &t->owner, 5000, on_jobs, t)
                                                  : qmon_query_block(t->q, &t->owner, 5000, on_block, t);
        assert_int_equal(rc, 0);
        RUN_UNTIL(t, t->done == (int)i + 1, WAIT_MS);
        assert_int_equal(t->done, (int)i + 1);
        assert_int_equal(t->errors, (int)i + 1);
        assert_int_equal(t->kind, QMP_ERR_PROTOCOL);
        assert_string_equal(t->desc, want[i]);
    }
    finish(t);
    assert_null(json_object_get(t->got, "status"));
    assert_int_equal(t->owner.refs, 1);
}

static void test_refused(void **state)
{
    struct t *t = *state;
    assert_int_equal(qmon_cont(NULL, &t->owner, 5000, on_done, t), -1);
    assert_int_equal(qmon_migrate(NULL, &t->owner, "tcp:1.2.3.4:5", 5000, on_done, t), -1);
    /* arguments json_pack cannot build: nothing is sent */
    assert_int_equal(qmon_migrate(t->q, &t->owner, NULL, 5000, on_done, t), -1);
    assert_int_equal(qmon_blockdev_del(t->q, &t->owner, NULL, 5000, on_done, t), -1);
    struct qmon_yank_instance bad = {QMON_YANK_BLOCK_NODE, NULL};
    assert_int_equal(qmon_yank(t->q, &t->owner, &bad, 1, 5000, on_done, t), -1);
    struct qmon_cap_state cap = {QMON_CAP__COUNT, true};
    assert_int_equal(qmon_migrate_set_capabilities(t->q, &t->owner, &cap, 1, 5000, on_done, t), -1);
    assert_int_equal(qmon_getfd(t->q, &t->owner, "x", -1, 5000, on_done, t), -1);
    /* a closed client refuses */
    qmp_close(t->q, "closed");
    assert_int_equal(qmon_query_status(t->q, &t->owner, 5000, on_status, t), -1);
    RUN_UNTIL(t, false, 50);
    assert_int_equal(t->done, 0);
    assert_int_equal(t->owner.refs, 1);
}

/* ---- a real QEMU 10 -------------------------------------------------------- */

static void test_real_qemu(void **state)
{
    struct t *t = *state;
    if (!srv_find_in_path("qemu-system-x86_64"))
        skip();
    char *sock = xasprintf("/tmp/vmove-qmon-real-%d.sock", (int)getpid());
    unlink(sock);
    pid_t pid = srv_spawn_qemu(sock);
    assert_true(pid > 0);
    assert_int_equal(qmp_connect_unix(t->q, sock, 20000), 0);
    assert_int_equal(qmon_query_status(t->q, &t->owner, 10000, on_status, t), 0);
    RUN_UNTIL(t, t->done == 1, 25000);
    assert_int_equal(t->errors, 0);
    assert_non_null(json_string_value(json_object_get(t->got, "status")));
    assert_int_equal(qmon_query_migrate(t->q, &t->owner, 10000, on_stats, t), 0);
    RUN_UNTIL(t, t->done == 2, 10000);
    assert_int_equal(t->errors, 0);
    assert_int_equal(last_stats.status, QMON_MIG_NONE);
    assert_int_equal(qmon_query_block(t->q, &t->owner, 10000, on_block, t), 0);
    RUN_UNTIL(t, t->done == 3, 10000);
    assert_int_equal(t->errors, 0);
    assert_int_equal(json_array_size(t->got), 1);   /* -nodefaults: no devices; the lookup's miss */
    assert_int_equal(qmon_query_block_jobs(t->q, &t->owner, 10000, on_jobs, t), 0);
    RUN_UNTIL(t, t->done == 4, 10000);
    assert_int_equal(t->errors, 0);
    assert_int_equal(qmon_quit(t->q, &t->owner, 10000, NULL, NULL), 0);
    int status = -1;
    for (int waited = 0; waited < 10000 && waitpid(pid, &status, WNOHANG) != pid; waited += 10)
        RUN_UNTIL(t, false, 10);
    if (!WIFEXITED(status)) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    unlink(sock);
    free(sock);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(t->owner.refs, 1);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
#define PLAIN(fn) cmocka_unit_test(fn)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_commands_emitted),
        T(test_postcopy_recovery_out_of_band),
        T(test_query_status),
        T(test_query_migrate),
        T(test_query_block_jobs),
        T(test_query_block),
        T(test_qemu_error),
        T(test_timeout_hook),
        T(test_disconnect),
        T(test_reply_after_owner_died),
        T(test_muted_owner_and_close),
        T(test_malformed_replies),
        T(test_refused),
        T(test_real_qemu),
        PLAIN(test_parse_named_nodes),
        PLAIN(test_parse_block_json_file),
    };
    return cmocka_run_group_tests_name("monitor", tests, NULL, NULL);
}
