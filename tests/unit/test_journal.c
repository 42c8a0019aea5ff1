/* Unit tests for the agent's journal (src/host/journal.c): events, jobs,
 * persistence across close/reopen, and errors on unusable paths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/log.h"
#include "common/util.h"
#include "core/journal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fixture {
    char *dir;
    char *path; /* DIR/journal.db */
    journal_t *j;
};

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof *f);
    f->dir = xstrdup("/tmp/vmove-test-journal.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    f->path = xasprintf("%s/journal.db", f->dir);
    char err[256] = "";
    f->j = journal_open(f->path, err, sizeof err);
    if (!f->j) {
        fprintf(stderr, "journal_open: %s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    journal_close(f->j);
    remove_tree(f->dir);
    free(f->dir);
    free(f->path);
    free(f);
    return 0;
}

static void reopen(struct fixture *f)
{
    journal_close(f->j);
    char err[256] = "";
    f->j = journal_open(f->path, err, sizeof err);
    if (!f->j)
        fail_msg("reopen: %s", err);
}

/* ---- helpers ---- */

static const char *str_at(json_t *arr, size_t i, const char *key)
{
    json_t *o = json_array_get(arr, i);
    assert_non_null(o);
    return json_string_value(json_object_get(o, key));
}

static json_int_t int_at(json_t *arr, size_t i, const char *key)
{
    json_t *o = json_array_get(arr, i);
    assert_non_null(o);
    json_t *v = json_object_get(o, key);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static json_t *job(const char *kind, const char *vm, const char *state)
{
    return json_pack("{s:s, s:s, s:s, s:{s:i}}", "kind", kind, "vm", vm, "state", state,
                     "params", "n", 1);
}

static void add_event(journal_t *j, const char *vm, const char *kind, int n)
{
    json_t *d = json_pack("{s:i}", "n", n);
    assert_int_equal(journal_event(j, vm, kind, d), 0);
    json_decref(d);
}

/* ---- events ---- */

static void test_events_order_and_fields(void **state)
{
    struct fixture *f = *state;
    uint64_t before = wall_ms();
    add_event(f->j, "web-1", "vm.state", 0);
    add_event(f->j, "db-1", "vm.state", 1);
    add_event(f->j, "web-1", "vm.created", 2);
    assert_int_equal(journal_event(f->j, NULL, "host.started", NULL), 0);
    /* NOTE: only objects and arrays are tested as detail: a scalar detail
     * (e.g. a string) is stored as null, because journal_event() dumps it
     * without JSON_ENCODE_ANY (see the report). */
    json_t *s = json_pack("[s, i]", "text detail", 7);
    assert_int_equal(journal_event(f->j, "web-1", "note", s), 0);
    json_decref(s);
    uint64_t after = wall_ms();

    json_t *ev = journal_events(f->j, NULL, 100);
    assert_true(json_is_array(ev));
    assert_int_equal(json_array_size(ev), 5);
    /* Oldest first, ids increasing, timestamps in range. */
    static const char *const kinds[] = { "vm.state", "vm.state", "vm.created", "host.started",
                                         "note" };
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(str_at(ev, i, "kind"), kinds[i]);
        if (i > 0)
            assert_true(int_at(ev, i, "id") > int_at(ev, i - 1, "id"));
        json_int_t ts = int_at(ev, i, "ts_ms");
        assert_true((uint64_t)ts >= before && (uint64_t)ts <= after);
    }
    assert_string_equal(str_at(ev, 0, "vm"), "web-1");
    assert_string_equal(str_at(ev, 1, "vm"), "db-1");
    /* Detail comes back as JSON. */
    json_t *d = json_object_get(json_array_get(ev, 2), "detail");
    assert_int_equal(json_integer_value(json_object_get(d, "n")), 2);
    /* An event without a vm has a null (or no) "vm"; without detail, detail is null. */
    json_t *host = json_array_get(ev, 3);
    json_t *hvm = json_object_get(host, "vm");
    assert_true(hvm == NULL || json_is_null(hvm));
    assert_true(json_is_null(json_object_get(host, "detail")));
    /* An array detail survives too. */
    json_t *arr = json_object_get(json_array_get(ev, 4), "detail");
    assert_true(json_is_array(arr));
    assert_int_equal(json_array_size(arr), 2);
    assert_string_equal(json_string_value(json_array_get(arr, 0)), "text detail");
    json_decref(ev);
}

static void test_events_filter_by_vm(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 6; i++)
        add_event(f->j, i % 2 ? "odd" : "even", "vm.state", i);
    add_event(f->j, NULL, "host.note", 99);

    json_t *ev = journal_events(f->j, "odd", 100);
    assert_int_equal(json_array_size(ev), 3);
    for (size_t i = 0; i < 3; i++) {
        assert_string_equal(str_at(ev, i, "vm"), "odd");
        json_t *d = json_object_get(json_array_get(ev, i), "detail");
        assert_int_equal(json_integer_value(json_object_get(d, "n")), (json_int_t)(2 * i + 1));
    }
    json_decref(ev);

    ev = journal_events(f->j, "nobody", 100);
    assert_true(json_is_array(ev));
    assert_int_equal(json_array_size(ev), 0);
    json_decref(ev);

    ev = journal_events(f->j, NULL, 100);
    assert_int_equal(json_array_size(ev), 7);
    json_decref(ev);
}

static void test_events_limit_keeps_newest(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 10; i++)
        add_event(f->j, i < 5 ? "a" : "b", "vm.state", i);

    /* The newest 3, still oldest first. */
    json_t *ev = journal_events(f->j, NULL, 3);
    assert_int_equal(json_array_size(ev), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *d = json_object_get(json_array_get(ev, i), "detail");
        assert_int_equal(json_integer_value(json_object_get(d, "n")), (json_int_t)(7 + i));
    }
    json_decref(ev);

    /* Limit together with a vm filter: newest 2 of vm "a". */
    ev = journal_events(f->j, "a", 2);
    assert_int_equal(json_array_size(ev), 2);
    json_t *d0 = json_object_get(json_array_get(ev, 0), "detail");
    json_t *d1 = json_object_get(json_array_get(ev, 1), "detail");
    assert_int_equal(json_integer_value(json_object_get(d0, "n")), 3);
    assert_int_equal(json_integer_value(json_object_get(d1, "n")), 4);
    json_decref(ev);

    ev = journal_events(f->j, NULL, 0);
    assert_int_equal(json_array_size(ev), 0);
    json_decref(ev);
}

/* ---- jobs ---- */

static void test_job_insert_get_update(void **state)
{
    struct fixture *f = *state;
    json_t *r1 = job("migrate", "web-1", "queued");
    json_t *r2 = job("start", "db-1", "running");
    int64_t id1 = journal_job_insert(f->j, r1);
    int64_t id2 = journal_job_insert(f->j, r2);
    assert_true(id1 > 0);
    assert_true(id2 > id1);

    json_t *g = journal_job_get(f->j, id1);
    assert_non_null(g);
    assert_true(json_equal(g, r1));
    json_decref(g);

    /* Update the record: the whole record is replaced. */
    json_object_set_new(r1, "state", json_string("running"));
    json_object_set_new(r1, "phase", json_string("precopy"));
    json_object_set_new(r1, "progress", json_pack("{s:I, s:I}", "done", (json_int_t)1 << 33,
                                                  "total", (json_int_t)1 << 34));
    assert_int_equal(journal_job_update(f->j, id1, r1), 0);
    g = journal_job_get(f->j, id1);
    assert_true(json_equal(g, r1));
    assert_string_equal(json_string_value(json_object_get(g, "phase")), "precopy");
    json_decref(g);

    /* The other job is untouched. */
    g = journal_job_get(f->j, id2);
    assert_true(json_equal(g, r2));
    json_decref(g);

    /* Unknown id. */
    assert_null(journal_job_get(f->j, id2 + 1000));
    assert_null(journal_job_get(f->j, -1));

    json_decref(r1);
    json_decref(r2);
}

static void test_job_without_state(void **state)
{
    /* A record without "state" is stored under state "unknown". */
    struct fixture *f = *state;
    json_t *r = json_pack("{s:s}", "kind", "odd");
    int64_t id = journal_job_insert(f->j, r);
    assert_true(id > 0);
    static const char *const unknown[] = { "unknown", NULL };
    json_t *list = journal_jobs(f->j, unknown, 100);
    assert_int_equal(json_array_size(list), 1);
    assert_true(json_equal(json_array_get(list, 0), r));
    json_decref(list);
    json_decref(r);
}

static void test_jobs_state_filter(void **state)
{
    struct fixture *f = *state;
    static const char *const states[] = { "queued", "running", "done", "failed", "running",
                                          "done", "queued" };
    int64_t ids[ARRAY_LEN(states)];
    for (size_t i = 0; i < ARRAY_LEN(states); i++) {
        char vm[16];
        snprintf(vm, sizeof vm, "vm%zu", i);
        json_t *r = job("migrate", vm, states[i]);
        ids[i] = journal_job_insert(f->j, r);
        assert_true(ids[i] > 0);
        json_decref(r);
    }

    /* All, oldest first. */
    json_t *all = journal_jobs(f->j, NULL, 1000);
    assert_int_equal(json_array_size(all), ARRAY_LEN(states));
    for (size_t i = 0; i < ARRAY_LEN(states); i++)
        assert_string_equal(str_at(all, i, "state"), states[i]);
    json_decref(all);

    /* Live jobs: queued or running, oldest first. */
    static const char *const live[] = { "queued", "running", NULL };
    json_t *l = journal_jobs(f->j, live, 1000);
    assert_int_equal(json_array_size(l), 4);
    assert_string_equal(str_at(l, 0, "vm"), "vm0");
    assert_string_equal(str_at(l, 1, "vm"), "vm1");
    assert_string_equal(str_at(l, 2, "vm"), "vm4");
    assert_string_equal(str_at(l, 3, "vm"), "vm6");
    json_decref(l);

    /* A single state; a state nobody is in; an empty state list. */
    static const char *const failed[] = { "failed", NULL };
    l = journal_jobs(f->j, failed, 1000);
    assert_int_equal(json_array_size(l), 1);
    assert_string_equal(str_at(l, 0, "vm"), "vm3");
    json_decref(l);
    static const char *const none[] = { "paused", NULL };
    l = journal_jobs(f->j, none, 1000);
    assert_int_equal(json_array_size(l), 0);
    json_decref(l);
    static const char *const empty[] = { NULL };
    l = journal_jobs(f->j, empty, 1000);
    assert_int_equal(json_array_size(l), 0);
    json_decref(l);

    /* The filter follows updates: vm1 finishes. */
    json_t *r = journal_job_get(f->j, ids[1]);
    json_object_set_new(r, "state", json_string("done"));
    assert_int_equal(journal_job_update(f->j, ids[1], r), 0);
    json_decref(r);
    l = journal_jobs(f->j, live, 1000);
    assert_int_equal(json_array_size(l), 3);
    assert_string_equal(str_at(l, 0, "vm"), "vm0");
    assert_string_equal(str_at(l, 1, "vm"), "vm4");
    json_decref(l);

    /* Without a filter the limit keeps the newest jobs, oldest first.
     * (NOTE: with a state filter, the limit is applied BEFORE filtering:
     * see the report; not asserted here.) */
    l = journal_jobs(f->j, NULL, 2);
    assert_int_equal(json_array_size(l), 2);
    assert_string_equal(str_at(l, 0, "vm"), "vm5");
    assert_string_equal(str_at(l, 1, "vm"), "vm6");
    json_decref(l);
}

/* ---- persistence ---- */

static void test_reopen_keeps_data(void **state)
{
    struct fixture *f = *state;
    add_event(f->j, "web-1", "vm.state", 42);
    json_t *r = job("migrate", "web-1", "running");
    int64_t id = journal_job_insert(f->j, r);
    assert_true(id > 0);

    reopen(f);

    json_t *ev = journal_events(f->j, "web-1", 10);
    assert_int_equal(json_array_size(ev), 1);
    assert_string_equal(str_at(ev, 0, "kind"), "vm.state");
    json_decref(ev);
    json_t *g = journal_job_get(f->j, id);
    assert_non_null(g);
    assert_true(json_equal(g, r));
    json_decref(g);
    static const char *const live[] = { "running", NULL };
    json_t *l = journal_jobs(f->j, live, 100);
    assert_int_equal(json_array_size(l), 1);
    json_decref(l);

    /* New ids continue after the old ones. */
    int64_t id2 = journal_job_insert(f->j, r);
    assert_true(id2 > id);
    json_decref(r);

    /* Twice more, to be sure reopening an existing schema is idempotent. */
    reopen(f);
    reopen(f);
    l = journal_jobs(f->j, NULL, 100);
    assert_int_equal(json_array_size(l), 2);
    json_decref(l);
}

/* ---- errors ---- */

static void expect_open_error(const char *path, const char *what)
{
    char err[512];
    memset(err, 0, sizeof err);
    journal_t *j = journal_open(path, err, sizeof err);
    if (j) {
        journal_close(j);
        fail_msg("journal_open(%s) succeeded (%s)", path, what);
    }
    if (!strstr(err, path))
        fail_msg("error for %s does not name the path: \"%s\"", what, err);
    if (!strstr(err, "journal"))
        fail_msg("error for %s does not say it is the journal: \"%s\"", what, err);
    print_message("      %s -> %s\n", what, err);
}

static void test_open_errors(void **state)
{
    struct fixture *f = *state;

    /* Parent directory missing. */
    char *p1 = xasprintf("%s/no/such/dir/journal.db", f->dir);
    expect_open_error(p1, "missing directory");

    /* Parent is a regular file. */
    char *file = xasprintf("%s/plain", f->dir);
    assert_int_equal(write_file_atomic(file, "x", 1, 0600), 0);
    char *p2 = xasprintf("%s/journal.db", file);
    expect_open_error(p2, "parent is a file");

    /* The path is a directory. */
    char *p3 = xasprintf("%s/adir", f->dir);
    assert_int_equal(mkdir_p(p3, 0755), 0);
    expect_open_error(p3, "path is a directory");

    /* Not an SQLite database. */
    char *p4 = xasprintf("%s/garbage.db", f->dir);
    char junk[4096];
    memset(junk, 'G', sizeof junk);
    assert_int_equal(write_file_atomic(p4, junk, sizeof junk, 0600), 0);
    expect_open_error(p4, "not a database");

    /* Unwritable directory (permissions do not stop root). */
    if (geteuid() != 0) {
        char *ro = xasprintf("%s/ro", f->dir);
        assert_int_equal(mkdir_p(ro, 0555), 0);
        chmod(ro, 0555);
        char *p5 = xasprintf("%s/journal.db", ro);
        expect_open_error(p5, "read-only directory");
        chmod(ro, 0755);
        free(p5);
        free(ro);
    }

    free(p1);
    free(file);
    free(p2);
    free(p3);
    free(p4);
}

int main(void)
{
    /* The journal logs SQL failures; keep test output quiet unless they matter. */
    log_init("test_journal", LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_events_order_and_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_filter_by_vm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_limit_keeps_newest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_insert_get_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_job_without_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jobs_state_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
