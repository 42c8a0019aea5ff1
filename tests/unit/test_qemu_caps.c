/* The QEMU version gate: vmoved runs on QEMU 10 and refuses older ones with
 * a message that says how to install a supported one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "qemu/qemu_caps.h"

static void test_supported_versions(void **state)
{
    (void)state;
    char err[512] = "";
    assert_int_equal(qemu_caps_check_version("10.0.2", "qemu", err, sizeof err), 0);
    assert_int_equal(qemu_caps_check_version("10.1.0", "qemu", err, sizeof err), 0);
    assert_int_equal(qemu_caps_check_version("11.0.0", "qemu", err, sizeof err), 0);
    assert_string_equal(err, "");
}

static void test_old_versions_refused(void **state)
{
    (void)state;
    const char *old[] = {"7.2.22", "9.2.0", "8.0.0", "1.0"};
    for (size_t i = 0; i < sizeof old / sizeof *old; i++) {
        char err[512] = "";
        assert_int_equal(qemu_caps_check_version(old[i], "/usr/bin/qemu-system-x86_64", err, sizeof err), -1);
        assert_non_null(strstr(err, old[i]));
        assert_non_null(strstr(err, "needs QEMU 10.0 or newer"));
        assert_non_null(strstr(err, "bookworm-backports"));
    }
}

static void test_unknown_version_refused(void **state)
{
    (void)state;
    char err[512];
    assert_int_equal(qemu_caps_check_version("", "qemu", err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown version"));
    assert_int_equal(qemu_caps_check_version(NULL, "qemu", err, sizeof err), -1);
    assert_int_equal(qemu_caps_check_version("unknown", "qemu", err, sizeof err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_supported_versions),
        cmocka_unit_test(test_old_versions_refused),
        cmocka_unit_test(test_unknown_version_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
