/* Unit tests for the path policy (src/core/paths.c) and its settings
 * (allowed_dirs in src/conf/settings.c), on a real directory tree. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/util.h"
#include "conf/settings.h"
#include "core/paths.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fixture {
    char root[PATH_MAX];      /* canonical */
    char allowed[PATH_MAX + 16];   /* ROOT/allowed: the images root */
    char outside[PATH_MAX + 16];   /* ROOT/outside */
    char disk[PATH_MAX + 32];      /* ROOT/allowed/disk.qcow2 */
    struct host_settings s;
    struct path_policy pol;
};

static void touch(const char *path)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
}

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof *f);
    char tmpl[] = "/tmp/vmove-test-paths.XXXXXX";
    char err[256];
    if (!mkdtemp(tmpl) || !realpath(tmpl, f->root))
        return -1;
    snprintf(f->allowed, sizeof f->allowed, "%s/allowed", f->root);
    snprintf(f->outside, sizeof f->outside, "%s/outside", f->root);
    snprintf(f->disk, sizeof f->disk, "%s/disk.qcow2", f->allowed);
    if (mkdir(f->allowed, 0700) < 0 || mkdir(f->outside, 0700) < 0)
        return -1;
    touch(f->disk);
    host_settings_defaults(&f->s);
    if (settings_allow_dir(&f->s, DIR_IMAGES, f->allowed, err, sizeof err) < 0)
        return -1;
    paths_policy_init(&f->pol, &f->s, f->root);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    remove_tree(f->root);
    free(f);
    return 0;
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle))
        fail_msg("\"%s\" does not contain \"%s\"", haystack, needle);
}

/* Checks PATH as an image: must fail with a reason containing WANT. */
static void expect_refused(struct fixture *f, const char *path, const char *want)
{
    struct path_info pi;
    char err[PATH_MAX + 512];
    assert_int_equal(paths_check_file(&f->pol, DIR_IMAGES, path, &pi, err, sizeof err), -1);
    assert_contains(err, want);
}

static void test_under_whole_components(void **state)
{
    assert_true(paths_under("/srv/a/b", "/srv/a"));
    assert_true(paths_under("/srv/a", "/srv/a"));
    assert_true(paths_under("/srv/a/b", "/srv/a/"));
    assert_false(paths_under("/srv/ab", "/srv/a"));
    assert_false(paths_under("/srv", "/srv/a"));
    assert_true(paths_under("/anything", "/"));
}

static void test_defaults_and_set_lists(void **state)
{
    struct fixture *f = *state;
    char images[PATH_MAX + 16];
    snprintf(images, sizeof images, "%s/images", f->root);
    /* kernels was never set: the defaults. */
    assert_int_equal(f->pol.n[DIR_KERNELS], 2);
    assert_string_equal(f->pol.roots[DIR_KERNELS][0], images);
    assert_string_equal(f->pol.roots[DIR_KERNELS][1], PATHS_DEFAULT_SHARED);
    /* images was set: exactly the admin's list. */
    assert_int_equal(f->pol.n[DIR_IMAGES], 1);
    assert_string_equal(f->pol.roots[DIR_IMAGES][0], f->allowed);
}

static void test_file_canonical_and_identity(void **state)
{
    struct fixture *f = *state;
    char alias[4][PATH_MAX + 64];
    snprintf(alias[0], sizeof alias[0], "%s//disk.qcow2", f->allowed);
    snprintf(alias[1], sizeof alias[1], "%s/./disk.qcow2", f->allowed);
    snprintf(alias[2], sizeof alias[2], "%s/../allowed/disk.qcow2", f->allowed);
    snprintf(alias[3], sizeof alias[3], "/proc/self/root%s", f->disk);
    struct stat st;
    assert_int_equal(stat(f->disk, &st), 0);
    for (size_t i = 0; i < 4; i++) {
        struct path_info pi;
        char err[PATH_MAX + 512] = "";
        if (paths_check_file(&f->pol, DIR_IMAGES, alias[i], &pi, err, sizeof err) < 0)
            fail_msg("%s: %s", alias[i], err);
        assert_string_equal(pi.canonical, f->disk);
        assert_true(pi.dev == st.st_dev && pi.ino == st.st_ino);
        assert_true(paths_same_file(alias[i], f->disk));
    }
}

static void test_file_refusals(void **state)
{
    struct fixture *f = *state;
    char p[PATH_MAX + 64], q[PATH_MAX + 64];
    expect_refused(f, "relative.qcow2", "must be an absolute path");
    snprintf(p, sizeof p, "%s/", f->allowed);
    expect_refused(f, p, "does not name a file");
    snprintf(p, sizeof p, "%s/missing/x.qcow2", f->allowed);
    expect_refused(f, p, "No such file or directory");
    snprintf(p, sizeof p, "%s/x.qcow2", f->allowed);
    expect_refused(f, p, "No such file or directory");
    /* A FIFO, a directory, a device: refused before anything opens them. */
    snprintf(p, sizeof p, "%s/fifo", f->allowed);
    assert_int_equal(mkfifo(p, 0600), 0);
    expect_refused(f, p, "is a FIFO, not a regular file");
    snprintf(p, sizeof p, "%s/dir", f->allowed);
    assert_int_equal(mkdir(p, 0700), 0);
    expect_refused(f, p, "is a directory, not a regular file");
    /* A symlink as the last component, even to an allowed file. */
    snprintf(p, sizeof p, "%s/link.qcow2", f->allowed);
    assert_int_equal(symlink(f->disk, p), 0);
    expect_refused(f, p, "is a symbolic link, not a regular file");
    /* Outside: the hint names the kind and the directory to allow. */
    snprintf(p, sizeof p, "%s/other.qcow2", f->outside);
    touch(p);
    snprintf(q, sizeof q, "`vmove host set --allow-dir images=%s`", f->outside);
    expect_refused(f, p, q);
    expect_refused(f, p, "is outside the directories this host allows for images");
    snprintf(p, sizeof p, "%s/../outside/other.qcow2", f->allowed);
    expect_refused(f, p, "is outside");
    expect_refused(f, "/etc/shadow", "--allow-dir images=/etc`");
    /* A directory symlinked into the allowed tree does not carry its target in. */
    snprintf(p, sizeof p, "%s/escape", f->allowed);
    assert_int_equal(symlink(f->outside, p), 0);
    snprintf(q, sizeof q, "%s/escape/other.qcow2", f->allowed);
    expect_refused(f, q, "is outside");
}

static void test_dirs(void **state)
{
    struct fixture *f = *state;
    struct path_info pi;
    char err[PATH_MAX + 512], p[PATH_MAX + 64];
    char err2[256];
    assert_int_equal(settings_allow_dir(&f->s, DIR_STORAGE, f->allowed, err2, sizeof err2), 0);
    paths_policy_init(&f->pol, &f->s, f->root);
    snprintf(p, sizeof p, "%s/./", f->allowed);
    assert_int_equal(paths_check_dir(&f->pol, DIR_STORAGE, p, &pi, err, sizeof err), 0);
    assert_string_equal(pi.canonical, f->allowed);
    assert_int_equal(paths_check_dir(&f->pol, DIR_STORAGE, f->outside, &pi, err, sizeof err), -1);
    assert_contains(err, "--allow-dir storage=");
    assert_int_equal(paths_check_dir(&f->pol, DIR_STORAGE, "/root", &pi, err, sizeof err), -1);
    assert_contains(err, "/root is outside the directories this host allows for storage");
    assert_int_equal(paths_check_dir(&f->pol, DIR_STORAGE, f->disk, &pi, err, sizeof err), -1);
    assert_contains(err, "not a directory");
    snprintf(p, sizeof p, "%s/missing", f->allowed);
    assert_int_equal(paths_check_dir(&f->pol, DIR_STORAGE, p, &pi, err, sizeof err), -1);
    assert_contains(err, "No such file or directory");
}

static void test_may_remove(void **state)
{
    struct fixture *f = *state;
    char p[PATH_MAX + 64], vmdir[PATH_MAX + 32];
    char err[256];
    assert_int_equal(settings_allow_dir(&f->s, DIR_STORAGE, f->allowed, err, sizeof err), 0);
    paths_policy_init(&f->pol, &f->s, f->root);
    snprintf(vmdir, sizeof vmdir, "%s/vm", f->outside);
    assert_int_equal(mkdir(vmdir, 0700), 0);
    snprintf(p, sizeof p, "%s/vda.qcow2", vmdir);
    touch(p);
    assert_true(paths_may_remove(&f->pol, DIR_STORAGE, vmdir, p));
    assert_true(paths_may_remove(&f->pol, DIR_STORAGE, vmdir, f->disk));
    snprintf(p, sizeof p, "%s/victim", f->outside);
    touch(p);
    assert_false(paths_may_remove(&f->pol, DIR_STORAGE, vmdir, p));
    assert_false(paths_may_remove(&f->pol, DIR_STORAGE, NULL, "/etc/passwd"));
    snprintf(p, sizeof p, "%s/vm/../victim", f->outside);
    assert_false(paths_may_remove(&f->pol, DIR_STORAGE, vmdir, p));
    snprintf(p, sizeof p, "%s/link", f->allowed);
    assert_int_equal(symlink("/etc/passwd", p), 0);
    assert_false(paths_may_remove(&f->pol, DIR_STORAGE, vmdir, p));
    assert_false(paths_may_remove(&f->pol, DIR_STORAGE, vmdir, NULL));
}

static void test_same_file(void **state)
{
    struct fixture *f = *state;
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/hard", f->outside);
    assert_int_equal(link(f->disk, p), 0);
    assert_true(paths_same_file(p, f->disk));
    snprintf(p, sizeof p, "%s/other", f->allowed);
    touch(p);
    assert_false(paths_same_file(p, f->disk));
    assert_false(paths_same_file("/no/such/file", "/no/such/file"));
}

/* ---- host.json's allowed_dirs ----------------------------------------- */

static int load_text(const char *text, struct host_settings *s, char *err, size_t errlen)
{
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    int rc = host_settings_from_json(j, s, err, errlen);
    json_decref(j);
    return rc;
}

static void test_settings_round_trip(void **state)
{
    struct host_settings s, back;
    char err[512] = "";
    assert_int_equal(load_text("{\"allowed_dirs\": {\"images\": [\"/srv/images\", \"/data\"], \"state\": []}}", &s,
                               err, sizeof err), 0);
    assert_true(s.allowed[DIR_IMAGES].set);
    assert_int_equal(s.allowed[DIR_IMAGES].n, 2);
    assert_string_equal(s.allowed[DIR_IMAGES].dirs[1], "/data");
    assert_true(s.allowed[DIR_STATE].set);
    assert_int_equal(s.allowed[DIR_STATE].n, 0);
    assert_false(s.allowed[DIR_KERNELS].set);
    json_t *j = host_settings_to_json(&s);
    json_t *ad = json_object_get(j, "allowed_dirs");
    assert_int_equal(json_object_size(ad), 2);   /* unset kinds stay unset */
    assert_int_equal(host_settings_from_json(j, &back, err, sizeof err), 0);
    json_decref(j);
    assert_string_equal(back.allowed[DIR_IMAGES].dirs[0], "/srv/images");
    assert_true(back.allowed[DIR_STATE].set);
    /* An empty list allows nothing (not the defaults). */
    struct path_policy pol;
    paths_policy_init(&pol, &back, "/var/lib/vmove");
    assert_int_equal(pol.n[DIR_STATE], 0);
    assert_int_equal(pol.n[DIR_KERNELS], 2);
}

static void test_settings_errors(void **state)
{
    struct host_settings s;
    char err[512];
    const char *bad[][2] = {
        {"{\"allowed_dirs\": []}", "allowed_dirs: expected an object"},
        {"{\"allowed_dirs\": {\"disks\": []}}", "allowed_dirs: unknown kind \"disks\""},
        {"{\"allowed_dirs\": {\"images\": \"/srv\"}}", "allowed_dirs.images: expected a list"},
        {"{\"allowed_dirs\": {\"images\": [\"/srv\", \"srv\"]}}", "allowed_dirs.images[1]: \"srv\" is not an absolute path"},
        {"{\"allowed_dirs\": {\"kernels\": [\"/\"]}}", "allowed_dirs.kernels[0]: \"/\" is \"/\" would allow every file"},
        {"{\"allowed_dirs\": {\"state\": [\"/srv//x\"]}}", "allowed_dirs.state[0]: \"/srv//x\" is not canonical"},
        {"{\"allowed_dirs\": {\"state\": [\"/srv/../etc\"]}}", "is not canonical"},
        {"{\"allowed_dirs\": {\"state\": [\"/srv/x/\"]}}", "ends with \"/\""},
        {"{\"allowed_dirs\": {\"storage\": [7]}}", "allowed_dirs.storage[0]: \"?\" is not a string"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        assert_int_equal(load_text(bad[i][0], &s, err, sizeof err), -1);
        assert_contains(err, bad[i][1]);
    }
}

static void test_allow_disallow(void **state)
{
    struct host_settings s;
    char err[512];
    host_settings_defaults(&s);
    assert_int_equal(settings_allow_dir(&s, DIR_KERNELS, "/srv/k", err, sizeof err), 0);
    assert_int_equal(settings_allow_dir(&s, DIR_KERNELS, "/srv/k", err, sizeof err), 0);   /* once */
    assert_int_equal(s.allowed[DIR_KERNELS].n, 1);
    assert_int_equal(settings_allow_dir(&s, DIR_KERNELS, "/srv/./k", err, sizeof err), -1);
    assert_contains(err, "allowed_dirs.kernels: \"/srv/./k\" is not canonical");
    assert_int_equal(settings_disallow_dir(&s, DIR_KERNELS, "/srv/other", err, sizeof err), -1);
    assert_contains(err, "/srv/other is not in the list");
    assert_int_equal(settings_disallow_dir(&s, DIR_KERNELS, "/srv/k", err, sizeof err), 0);
    assert_int_equal(s.allowed[DIR_KERNELS].n, 0);
    assert_true(s.allowed[DIR_KERNELS].set);
    enum dir_kind k;
    assert_int_equal(dir_kind_parse("storage", &k), 0);
    assert_int_equal(k, DIR_STORAGE);
    assert_int_equal(dir_kind_parse("disks", &k), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_under_whole_components),
        cmocka_unit_test_setup_teardown(test_defaults_and_set_lists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_canonical_and_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dirs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_may_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_file, setup, teardown),
        cmocka_unit_test(test_settings_round_trip),
        cmocka_unit_test(test_settings_errors),
        cmocka_unit_test(test_allow_disallow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
