/* Unit tests for the accelerator choice (src/qemu/accel.c).
 *
 * accel_choose() takes the sysfs module directory and the /dev/kvm path as
 * parameters; the tests point them at a fake module tree (a temp dir with
 * kvm_pvm / kvm_intel / kvm_amd subdirectories) and at fake devices: a
 * nonexistent path (cannot be opened) and a regular file (opens, but the
 * KVM_GET_API_VERSION ioctl fails).
 *
 * A USABLE /dev/kvm cannot be faked: only the real KVM character device
 * answers KVM_GET_API_VERSION with 12.  The tests of the "device usable"
 * branches therefore use the host's real /dev/kvm together with a fake module
 * tree, and are skipped when this machine has no usable /dev/kvm. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/util.h"
#include "qemu/accel.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

struct fixture {
    char *dir;     /* temp root */
    char *mods;    /* fake /sys/module */
    char *missing; /* a device path that does not exist */
    char *regular; /* a regular file posing as /dev/kvm */
};

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof *f);
    f->dir = xstrdup("/tmp/vmove-test-accel.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    f->mods = xasprintf("%s/module", f->dir);
    f->missing = xasprintf("%s/no-such-kvm", f->dir);
    f->regular = xasprintf("%s/fake-kvm", f->dir);
    if (mkdir_p(f->mods, 0755) < 0 || write_file_atomic(f->regular, "", 0, 0600) < 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    remove_tree(f->dir);
    free(f->dir);
    free(f->mods);
    free(f->missing);
    free(f->regular);
    free(f);
    return 0;
}

static void add_module(struct fixture *f, const char *name)
{
    char *p = xasprintf("%s/%s", f->mods, name);
    assert_int_equal(mkdir_p(p, 0755), 0);
    free(p);
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle))
        fail_msg("\"%s\" does not contain \"%s\"", haystack, needle);
}

static void assert_not_contains(const char *haystack, const char *needle)
{
    if (strstr(haystack, needle))
        fail_msg("\"%s\" unexpectedly contains \"%s\"", haystack, needle);
}

/* A poisoned choice, so a test sees whether every field was written. */
static void poison(struct accel_choice *c)
{
    c->kind = (enum accel_kind)99;
    memset(c->reason, 'Z', sizeof c->reason - 1);
    c->reason[sizeof c->reason - 1] = 0;
}

/* ---- accel_setting_parse / names ---- */

static void test_setting_parse_valid(void **state)
{
    enum accel_setting s = ACCEL_TCG;
    assert_int_equal(accel_setting_parse("auto", &s), 0);
    assert_int_equal(s, ACCEL_AUTO);
    assert_int_equal(accel_setting_parse("kvm", &s), 0);
    assert_int_equal(s, ACCEL_KVM);
    assert_int_equal(accel_setting_parse("tcg", &s), 0);
    assert_int_equal(s, ACCEL_TCG);
}

static void test_setting_parse_invalid(void **state)
{
    static const char *const bad[] = { "", "KVM", "Auto", "hvf", "xen", "kvm ", " tcg",
                                       "tcg,thread=multi", "kvm\n", "autox" };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        enum accel_setting s = ACCEL_KVM;
        if (accel_setting_parse(bad[i], &s) != -1)
            fail_msg("accel_setting_parse(\"%s\") accepted", bad[i]);
        assert_int_equal(s, ACCEL_KVM); /* untouched on failure */
    }
}

static void test_names_round_trip(void **state)
{
    static const enum accel_setting all[] = { ACCEL_AUTO, ACCEL_KVM, ACCEL_TCG };
    for (size_t i = 0; i < ARRAY_LEN(all); i++) {
        enum accel_setting back;
        assert_int_equal(accel_setting_parse(accel_setting_name(all[i]), &back), 0);
        assert_int_equal(back, all[i]);
    }
    assert_string_equal(accel_kind_name(ACCEL_KIND_KVM), "kvm");
    assert_string_equal(accel_kind_name(ACCEL_KIND_TCG), "tcg");
}

/* ---- accel_choose with unusable devices ---- */

static void test_tcg_setting(void **state)
{
    struct fixture *f = *state;
    add_module(f, "kvm_intel");
    struct accel_choice c;
    /* tcg wins whatever the device and the modules. */
    const char *devs[] = { f->missing, f->regular };
    for (size_t i = 0; i < ARRAY_LEN(devs); i++) {
        poison(&c);
        accel_choose(ACCEL_TCG, f->mods, devs[i], &c);
        assert_int_equal(c.kind, ACCEL_KIND_TCG);
        assert_contains(c.reason, "tcg");
        assert_not_contains(c.reason, "WARNING");
    }
}

static void test_auto_missing_device(void **state)
{
    struct fixture *f = *state;
    add_module(f, "kvm_intel");
    struct accel_choice c;
    poison(&c);
    accel_choose(ACCEL_AUTO, f->mods, f->missing, &c);
    assert_int_equal(c.kind, ACCEL_KIND_TCG);
    assert_contains(c.reason, "TCG");
    assert_contains(c.reason, f->missing); /* names the device */
    assert_contains(c.reason, "cannot be opened");
    assert_contains(c.reason, "No such file"); /* the errno text */
}

static void test_auto_device_not_kvm(void **state)
{
    struct fixture *f = *state;
    add_module(f, "kvm_amd");
    struct accel_choice c;
    poison(&c);
    accel_choose(ACCEL_AUTO, f->mods, f->regular, &c);
    assert_int_equal(c.kind, ACCEL_KIND_TCG);
    assert_contains(c.reason, f->regular);
    /* A regular file opens, but does not answer the KVM ioctl. */
    assert_contains(c.reason, "API version");
}

static void test_auto_unusable_device_beats_modules(void **state)
{
    /* Whatever the modules say, an unusable device means TCG, and the reason
     * is the device, not the modules. */
    struct fixture *f = *state;
    const char *sets[][2] = { { NULL, NULL }, { "kvm_pvm", NULL }, { "kvm_intel", "kvm_amd" } };
    for (size_t i = 0; i < ARRAY_LEN(sets); i++) {
        for (size_t k = 0; k < 2; k++)
            if (sets[i][k])
                add_module(f, sets[i][k]);
        struct accel_choice c;
        poison(&c);
        accel_choose(ACCEL_AUTO, f->mods, f->missing, &c);
        assert_int_equal(c.kind, ACCEL_KIND_TCG);
        assert_contains(c.reason, f->missing);
        assert_not_contains(c.reason, "kvm_pvm");
    }
}

static void test_kvm_setting_unusable_device(void **state)
{
    struct fixture *f = *state;
    add_module(f, "kvm_intel");
    const char *devs[] = { f->missing, f->regular };
    for (size_t i = 0; i < ARRAY_LEN(devs); i++) {
        struct accel_choice c;
        poison(&c);
        accel_choose(ACCEL_KVM, f->mods, devs[i], &c);
        /* The operator asked for kvm: kvm it is, with a warning explaining
         * why QEMU will probably fail. */
        assert_int_equal(c.kind, ACCEL_KIND_KVM);
        assert_contains(c.reason, "kvm");
        assert_contains(c.reason, "WARNING");
        assert_contains(c.reason, devs[i]);
    }
}

static void test_missing_module_dir(void **state)
{
    /* A module directory that does not exist behaves like "no modules". */
    struct fixture *f = *state;
    char *nodir = xasprintf("%s/nonexistent", f->dir);
    struct accel_choice c;
    poison(&c);
    accel_choose(ACCEL_AUTO, nodir, f->missing, &c);
    assert_int_equal(c.kind, ACCEL_KIND_TCG);
    assert_true(strlen(c.reason) > 0 && strlen(c.reason) < sizeof c.reason);
    free(nodir);
}

/* ---- accel_choose with the host's real /dev/kvm (skipped without one) ---- */

static bool real_kvm_usable(void)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return false;
    int v = ioctl(fd, KVM_GET_API_VERSION, 0);
    close(fd);
    return v == KVM_API_VERSION;
}

static void test_real_kvm_branches(void **state)
{
    if (!real_kvm_usable()) {
        print_message("      (no usable /dev/kvm here: usable-device branches not tested)\n");
        skip();
    }
    struct fixture *f = *state;
    struct accel_choice c;

    /* No kvm_intel/kvm_amd. */
    poison(&c);
    accel_choose(ACCEL_AUTO, f->mods, "/dev/kvm", &c);
    assert_int_equal(c.kind, ACCEL_KIND_TCG);
    assert_contains(c.reason, "neither kvm_intel nor kvm_amd");

    /* kvm_amd: KVM. */
    add_module(f, "kvm_amd");
    poison(&c);
    accel_choose(ACCEL_AUTO, f->mods, "/dev/kvm", &c);
    assert_int_equal(c.kind, ACCEL_KIND_KVM);
    assert_contains(c.reason, "kvm_amd");

    /* kvm_pvm next to a hardware module: still TCG under auto. */
    add_module(f, "kvm_pvm");
    poison(&c);
    accel_choose(ACCEL_AUTO, f->mods, "/dev/kvm", &c);
    assert_int_equal(c.kind, ACCEL_KIND_TCG);
    assert_contains(c.reason, "kvm_pvm");

    /* kvm setting with kvm_pvm: KVM with a warning. */
    poison(&c);
    accel_choose(ACCEL_KVM, f->mods, "/dev/kvm", &c);
    assert_int_equal(c.kind, ACCEL_KIND_KVM);
    assert_contains(c.reason, "WARNING");
    assert_contains(c.reason, "kvm_pvm");

    /* kvm setting, kvm_intel only: KVM, no warning. */
    char *pvm = xasprintf("%s/kvm_pvm", f->mods);
    char *amd = xasprintf("%s/kvm_amd", f->mods);
    assert_int_equal(remove_tree(pvm), 0);
    assert_int_equal(remove_tree(amd), 0);
    free(pvm);
    free(amd);
    add_module(f, "kvm_intel");
    poison(&c);
    accel_choose(ACCEL_KVM, f->mods, "/dev/kvm", &c);
    assert_int_equal(c.kind, ACCEL_KIND_KVM);
    assert_not_contains(c.reason, "WARNING");
    poison(&c);
    accel_choose(ACCEL_AUTO, f->mods, "/dev/kvm", &c);
    assert_int_equal(c.kind, ACCEL_KIND_KVM);
    assert_contains(c.reason, "kvm_intel");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_setting_parse_valid),
        cmocka_unit_test(test_setting_parse_invalid),
        cmocka_unit_test(test_names_round_trip),
        cmocka_unit_test_setup_teardown(test_tcg_setting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auto_missing_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auto_device_not_kvm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auto_unusable_device_beats_modules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kvm_setting_unusable_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_module_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_real_kvm_branches, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
