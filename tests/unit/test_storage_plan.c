/* Unit tests for the plan of a storage move (src/storage/storage_plan.c):
 * all disks to one directory, each disk to its own, and every refusal, all
 * collected in one error.  Real qcow2 images (qemu-img create) in a temporary
 * directory; the VM is a minimal struct vm on the stack. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/proto.h"
#include "common/spawn.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "storage/storage_plan.h"
#include "vm/vm.h"

#define DISK_SIZE (16ULL * 1024 * 1024)

struct fixture {
    char dir[PATH_MAX];          /* canonical: the plan's targets are canonical */
    char src[PATH_MAX + 8], dst1[PATH_MAX + 8], dst2[PATH_MAX + 8];
    char vda[PATH_MAX + 32], vdb[PATH_MAX + 32];
    struct agent agent;
    struct vm_disk disks[2];
    struct vm vm;
    json_t *facts;               /* the last storage_plan_probe's */
};

static void make_dir(const char *p) { assert_int_equal(mkdir(p, 0755), 0); }

static void make_qcow2(const char *path)
{
    char size[32];
    snprintf(size, sizeof size, "%llu", (unsigned long long)DISK_SIZE);
    char *argv[] = {"qemu-img", "create", "-q", "-f", "qcow2", (char *)path, size, NULL};
    char *out = NULL;
    int rc = run_capture(argv, 10000, &out);
    if (rc != 0)
        fail_msg("qemu-img create %s: %d %s", path, rc, out ? out : "");
    free(out);
}

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof *f);
    char tmpl[] = "/tmp/vmove-test-plan.XXXXXX";
    if (!mkdtemp(tmpl) || !realpath(tmpl, f->dir))
        return -1;
    snprintf(f->src, sizeof f->src, "%s/src", f->dir);
    snprintf(f->dst1, sizeof f->dst1, "%s/dst1", f->dir);
    snprintf(f->dst2, sizeof f->dst2, "%s/dst2", f->dir);
    snprintf(f->vda, sizeof f->vda, "%s/vda.qcow2", f->src);
    snprintf(f->vdb, sizeof f->vdb, "%s/vdb.qcow2", f->src);
    make_dir(f->src);
    make_dir(f->dst1);
    make_dir(f->dst2);
    make_qcow2(f->vda);
    make_qcow2(f->vdb);
    f->disks[0] = (struct vm_disk){.id = "vda", .path = f->vda};
    f->disks[1] = (struct vm_disk){.id = "vdb", .path = f->vdb};
    /* The host's policy allows storage moves within the fixture only. */
    char err[256];
    if (settings_allow_dir(&f->agent.settings, DIR_STORAGE, f->dir, err, sizeof err) < 0)
        fail_msg("%s", err);
    f->vm.agent = &f->agent;
    f->vm.name = "web";
    f->vm.dir = f->src;
    f->vm.state = VM_RUNNING;
    f->vm.cfg.disks = f->disks;
    f->vm.cfg.n_disks = 2;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    json_decref(f->facts);
    if (f->agent.base)
        event_base_free(f->agent.base);
    char *argv[] = {"rm", "-rf", f->dir, NULL};
    char *out = NULL;
    run_capture(argv, 10000, &out);
    free(out);
    free(f);
    return 0;
}

static json_t *params(const char *fmt, ...)
{
    char text[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    return j;
}

static void on_facts(void *arg, json_t *facts)
{
    struct fixture *f = arg;
    f->facts = facts;
    event_base_loopbreak(f->agent.base);
}

/* What qemu-img says of the VM's disks now, as vmoved learns it before a
 * plan (storage_plan_probe, children answered from the loop). */
static json_t *probe(struct fixture *f)
{
    if (!f->agent.base)
        f->agent.base = event_base_new();
    json_decref(f->facts);
    f->facts = NULL;
    storage_plan_probe(&f->agent, &f->vm, on_facts, f);
    while (!f->facts)
        event_base_dispatch(f->agent.base);
    return f->facts;
}

/* The plan must be refused with exactly these problems (in order). */
static void expect_problems(struct fixture *f, json_t *p, const char *code, const char *const *want)
{
    struct storage_plan plan;
    json_t *err = storage_plan_make(&f->vm, p, probe(f), &plan);
    json_decref(p);
    assert_non_null(err);
    assert_int_equal(plan.n, 0);
    assert_null(plan.disks);
    assert_string_equal(json_string_value(json_object_get(err, "code")), code);
    assert_string_equal(json_string_value(json_object_get(err, "hint")), "nothing was changed");
    json_t *problems = json_object_get(err, "problems");
    size_t n = 0;
    char text[4096] = "";
    size_t len = 0;
    for (; want[n]; n++) {
        assert_string_equal(json_string_value(json_array_get(problems, n)), want[n]);
        len += (size_t)snprintf(text + len, sizeof text - len, "%s%s", n ? "; " : "", want[n]);
    }
    assert_int_equal(json_array_size(problems), n);
    char msg[4200];
    snprintf(msg, sizeof msg, "cannot move the storage of VM web: %s", text);
    assert_string_equal(json_string_value(json_object_get(err, "message")), msg);
    json_decref(err);
}

static void assert_planned(const struct plan_disk *d, const char *id, const char *source, const char *dir)
{
    char target[PATH_MAX + 64];
    snprintf(target, sizeof target, "%s/%s.qcow2", dir, id);
    assert_string_equal(d->id, id);
    assert_string_equal(d->source, source);
    assert_string_equal(d->target, target);
    assert_int_equal(d->virtual_size, DISK_SIZE);
}

static void test_all_to_one_dir(void **state)
{
    struct fixture *f = *state;
    struct storage_plan plan;
    json_t *p = params("{\"to\": \"%s\"}", f->dst1);
    assert_null(storage_plan_make(&f->vm, p, probe(f), &plan));
    json_decref(p);
    assert_int_equal(plan.n, 2);
    assert_planned(&plan.disks[0], "vda", f->vda, f->dst1);
    assert_planned(&plan.disks[1], "vdb", f->vdb, f->dst1);
    storage_plan_free(&plan);
    assert_int_equal(plan.n, 0);
    assert_null(plan.disks);
}

/* A path with "." and ".." and a trailing slash plans the canonical target. */
static void test_target_canonical(void **state)
{
    struct fixture *f = *state;
    struct storage_plan plan;
    json_t *p = params("{\"to\": \"%s/./dst2/../dst1/\"}", f->dir);
    assert_null(storage_plan_make(&f->vm, p, probe(f), &plan));
    json_decref(p);
    assert_int_equal(plan.n, 2);
    assert_planned(&plan.disks[0], "vda", f->vda, f->dst1);
    storage_plan_free(&plan);
}

static void test_each_disk_its_own_place(void **state)
{
    struct fixture *f = *state;
    struct storage_plan plan;
    json_t *p = params("{\"disks\": {\"vdb\": \"%s\", \"vda\": \"%s\"}}", f->dst2, f->dst1);
    assert_null(storage_plan_make(&f->vm, p, probe(f), &plan));
    json_decref(p);
    assert_int_equal(plan.n, 2);
    assert_planned(&plan.disks[0], "vda", f->vda, f->dst1);   /* in the VM's order */
    assert_planned(&plan.disks[1], "vdb", f->vdb, f->dst2);
    storage_plan_free(&plan);

    /* Only the disks named move; null means "to --to". */
    p = params("{\"to\": \"%s\", \"disks\": {\"vdb\": null}}", f->dst2);
    assert_null(storage_plan_make(&f->vm, p, probe(f), &plan));
    json_decref(p);
    assert_int_equal(plan.n, 1);
    assert_planned(&plan.disks[0], "vdb", f->vdb, f->dst2);
    storage_plan_free(&plan);

    /* "disks": null is the same as no selection. */
    p = params("{\"to\": \"%s\", \"disks\": null}", f->dst2);
    assert_null(storage_plan_make(&f->vm, p, probe(f), &plan));
    json_decref(p);
    assert_int_equal(plan.n, 2);
    storage_plan_free(&plan);
}

static void test_bad_ids(void **state)
{
    struct fixture *f = *state;
    char want[2][512];
    snprintf(want[0], sizeof want[0], "VM web has no disk \"vdx\"");
    expect_problems(f, params("{\"disks\": {\"vdx\": \"%s\", \"vda\": \"%s\"}}", f->dst1, f->dst1), ERR_INVALID,
                    (const char *const[]){want[0], NULL});
    expect_problems(f, params("{\"disks\": {\"vda\": null}}"), ERR_INVALID,
                    (const char *const[]){"disk vda: no target directory (give --to DIR or --disk vda=DIR)", NULL});
    expect_problems(f, params("{\"disks\": [\"vda\"], \"to\": \"%s\"}", f->dst1), ERR_INVALID,
                    (const char *const[]){"parameter \"disks\" must be an object {ID: DIR|null}", NULL});
}

static void test_no_target(void **state)
{
    struct fixture *f = *state;
    expect_problems(f, params("{}"), ERR_INVALID, (const char *const[]){"no target directory: give --to DIR", NULL});
}

static void test_same_source_and_destination(void **state)
{
    struct fixture *f = *state;
    char want[2][PATH_MAX + 64];
    snprintf(want[0], sizeof want[0], "disk vda is already in %s", f->src);
    snprintf(want[1], sizeof want[1], "disk vdb is already in %s", f->src);
    expect_problems(f, params("{\"to\": \"%s/../src\"}", f->dst1), ERR_INVALID,
                    (const char *const[]){want[0], want[1], NULL});
}

static void test_bad_directories(void **state)
{
    struct fixture *f = *state;
    char file[PATH_MAX + 16], want[3][PATH_MAX + 96];
    snprintf(file, sizeof file, "%s/plain", f->dir);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(want[0], sizeof want[0], "disk vda: target directory \"relative/dir\" is not an absolute path");
    snprintf(want[1], sizeof want[1], "disk vdb: target directory %s/missing: No such file or directory", f->dir);
    expect_problems(f, params("{\"disks\": {\"vda\": \"relative/dir\", \"vdb\": \"%s/missing\"}}", f->dir),
                    ERR_INVALID, (const char *const[]){want[0], want[1], NULL});
    snprintf(want[0], sizeof want[0], "disk vda: target %s is not a directory", file);
    expect_problems(f, params("{\"disks\": {\"vda\": \"%s\"}}", file), ERR_INVALID,
                    (const char *const[]){want[0], NULL});
}

static void test_target_exists(void **state)
{
    struct fixture *f = *state;
    char path[PATH_MAX + 32], want[PATH_MAX + 96];
    snprintf(path, sizeof path, "%s/vdb.qcow2", f->dst1);
    assert_int_equal(symlink("/nonexistent", path), 0);   /* even a dangling link counts */
    snprintf(want, sizeof want, "disk vdb: target %s already exists", path);
    expect_problems(f, params("{\"to\": \"%s\"}", f->dst1), ERR_INVALID, (const char *const[]){want, NULL});
}

/* Two disks of one name (in two directories) cannot both go to one place. */
static void test_two_disks_one_target(void **state)
{
    struct fixture *f = *state;
    char other[PATH_MAX + 32], want[PATH_MAX + 96];
    snprintf(other, sizeof other, "%s/vda.qcow2", f->dst2);
    make_qcow2(other);
    f->disks[1].path = other;
    snprintf(want, sizeof want, "disk vdb: target %s/vda.qcow2 is also the target of another disk", f->dst1);
    expect_problems(f, params("{\"to\": \"%s\"}", f->dst1), ERR_INVALID, (const char *const[]){want, NULL});
    /* Nor onto another disk's current file: vda into dst2 is vdb's file. */
    snprintf(want, sizeof want, "disk vda: target %s already exists", other);
    expect_problems(f, params("{\"disks\": {\"vda\": \"%s\"}}", f->dst2), ERR_INVALID,
                    (const char *const[]){want, NULL});
}

static void test_not_qcow2(void **state)
{
    struct fixture *f = *state;
    FILE *fp = fopen(f->vdb, "w");
    assert_non_null(fp);
    fputs("not an image\n", fp);
    fclose(fp);
    char want[PATH_MAX + 128];
    snprintf(want, sizeof want, "disk vdb: %s: not a readable qcow2 image (raw)", f->vdb);
    expect_problems(f, params("{\"to\": \"%s\"}", f->dst1), ERR_INVALID, (const char *const[]){want, NULL});
}

/* The VM's state is a wrong_state error, reported with every other problem. */
static void test_state(void **state)
{
    struct fixture *f = *state;
    f->vm.state = VM_STOPPED;
    expect_problems(f, params("{\"disks\": {\"vdz\": \"%s\"}}", f->dst1), ERR_STATE,
                    (const char *const[]){"VM web is stopped: live storage migration moves the disks of a running "
                                          "or paused VM", "VM web has no disk \"vdz\"", NULL});
    f->vm.state = VM_PAUSED;
    static const struct job_ops ops = {"migrate", NULL};
    struct job job = {.id = 7, .ops = &ops, .vm = "web"};
    f->agent.jobs = &job;
    expect_problems(f, params("{\"to\": \"%s\"}", f->dst1), ERR_STATE,
                    (const char *const[]){"VM web is busy with job 7 (migrate)", NULL});
    job.vm = "other";
    f->vm.storage_move = json_object();
    expect_problems(f, params("{\"to\": \"%s\"}", f->dst1), ERR_STATE,
                    (const char *const[]){"VM web still has an unsettled storage move record", NULL});
    json_decref(f->vm.storage_move);
    f->vm.storage_move = NULL;
    f->agent.jobs = NULL;
}

static void test_no_disks(void **state)
{
    struct fixture *f = *state;
    f->vm.cfg.n_disks = 0;
    expect_problems(f, params("{\"to\": \"%s\"}", f->dst1), ERR_INVALID,
                    (const char *const[]){"VM web has no disks", NULL});
}

static void test_config_to(void **state)
{
    struct fixture *f = *state;
    struct storage_plan plan;
    json_t *p = params("{\"to\": \"%s\", \"config_to\": \"%s\"}", f->dst1, f->dst2);
    assert_null(storage_plan_make(&f->vm, p, probe(f), &plan));
    json_decref(p);
    storage_plan_free(&plan);
    expect_problems(f, params("{\"to\": \"%s\", \"config_to\": \"cfg\"}", f->dst1), ERR_INVALID,
                    (const char *const[]){"--config-to cfg: not a writable absolute directory", NULL});
    char taken[PATH_MAX + 16], want[PATH_MAX + 64];
    snprintf(taken, sizeof taken, "%s/web", f->dst2);
    make_dir(taken);
    snprintf(want, sizeof want, "--config-to: %s already exists", taken);
    expect_problems(f, params("{\"to\": \"%s\", \"config_to\": \"%s\"}", f->dst1, f->dst2), ERR_INVALID,
                    (const char *const[]){want, NULL});
}

/* Targets outside the host's storage policy are problems like any other. */
static void test_outside_policy(void **state)
{
    struct fixture *f = *state;
    char want[2][PATH_MAX + 512];
    snprintf(want[0], sizeof want[0], "--config-to: target directory /tmp: /tmp is outside the directories this "
             "host allows for storage (%s): the host's admin can allow it with `vmove host set --allow-dir "
             "storage=/tmp`", f->dir);
    snprintf(want[1], sizeof want[1], "disk vda: target directory /tmp: /tmp is outside the directories this host "
             "allows for storage (%s): the host's admin can allow it with `vmove host set --allow-dir storage=/tmp`",
             f->dir);
    expect_problems(f, params("{\"disks\": {\"vda\": \"/tmp\"}, \"config_to\": \"/tmp\"}"), ERR_INVALID,
                    (const char *const[]){want[0], want[1], NULL});
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_all_to_one_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_target_canonical, setup, teardown),
        cmocka_unit_test_setup_teardown(test_each_disk_its_own_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_ids, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_target, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_source_and_destination, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_directories, setup, teardown),
        cmocka_unit_test_setup_teardown(test_target_exists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_disks_one_target, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_qcow2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_disks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_to, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outside_policy, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
