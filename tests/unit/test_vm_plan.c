/* Unit tests of the request-side memory parsing of vm.create and vm.set
 * (src/api/vm_plan.c): the daemon validates what any client sends. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "api/vm_plan.h"

static int mem(json_t *v, uint64_t *mib, char *err)
{
    int rc = vm_plan_memory(v, mib, err, 256);
    json_decref(v);
    return rc;
}

static void test_memory_forms(void **state)
{
    (void)state;
    uint64_t mib = 0;
    char err[256] = "";
    assert_int_equal(mem(json_integer(1024), &mib, err), 0);
    assert_int_equal(mib, 1024);
    assert_int_equal(mem(json_string("1024"), &mib, err), 0);   /* a bare number is MiB, as in the CLI */
    assert_int_equal(mib, 1024);
    assert_int_equal(mem(json_string("2G"), &mib, err), 0);
    assert_int_equal(mib, 2048);
}

static void test_memory_refused(void **state)
{
    (void)state;
    uint64_t mib = 77;
    char err[256];
    json_t *bad[] = {json_integer(0), json_integer(-5), json_string("lots"), json_string("1500K"), json_true(),
                     json_string("")};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        assert_int_equal(mem(bad[i], &mib, err), -1);
        assert_true(strstr(err, "memory") != NULL);
        assert_int_equal(mib, 77);   /* untouched */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_forms),
        cmocka_unit_test(test_memory_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
