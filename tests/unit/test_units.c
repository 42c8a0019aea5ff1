/* Unit tests of the one size/rate parser (src/common/units.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/units.h"

static uint64_t ok(const char *s, enum unit_kind k)
{
    uint64_t v = 0;
    const char *why = NULL;
    if (units_parse(s, k, &v, &why) != 0)
        fail_msg("%s: %s", s, why);
    return v;
}

static void bad(const char *s, enum unit_kind k)
{
    uint64_t v = 12345;
    const char *why = NULL;
    assert_int_equal(units_parse(s, k, &v, &why), -1);
    assert_non_null(why);
    assert_int_equal(v, 12345);   /* untouched on error */
}

static void test_memory(void **state)
{
    (void)state;
    assert_int_equal(ok("1024", UNIT_MEMORY), 1024ULL << 20);   /* bare: MiB */
    assert_int_equal(ok("512M", UNIT_MEMORY), 512ULL << 20);
    assert_int_equal(ok("8G", UNIT_MEMORY), 8ULL << 30);
    assert_int_equal(ok("2GiB", UNIT_MEMORY), 2ULL << 30);
    assert_int_equal(ok("1t", UNIT_MEMORY), 1ULL << 40);
    bad("", UNIT_MEMORY);
    bad("lots", UNIT_MEMORY);
    bad("-1G", UNIT_MEMORY);
    bad("5X", UNIT_MEMORY);
    bad("5Gbit", UNIT_MEMORY);
    bad("99999999999999999999", UNIT_MEMORY);
    bad("18446744073709551615", UNIT_MEMORY);   /* fits in 64 bits, not once in MiB */
}

static void test_disk(void **state)
{
    (void)state;
    assert_int_equal(ok("8G", UNIT_DISK), 8ULL << 30);
    assert_int_equal(ok("4096", UNIT_DISK), 4096);   /* bare: bytes, as qemu-img */
    bad("8G,", UNIT_DISK);
}

static void test_bitrate(void **state)
{
    (void)state;
    assert_int_equal(ok("200", UNIT_BITRATE), 200000000ULL);   /* bare: Mbit/s */
    assert_int_equal(ok("500M", UNIT_BITRATE), 500000000ULL);
    assert_int_equal(ok("1G", UNIT_BITRATE), 1000000000ULL);
    assert_int_equal(ok("1Gbit/s", UNIT_BITRATE), 1000000000ULL);
    assert_int_equal(ok("10Mbps", UNIT_BITRATE), 10000000ULL);
    bad("1GB/s", UNIT_BITRATE);   /* bytes are not bits: refused, not guessed */
    bad("fast", UNIT_BITRATE);
}

static void test_byterate(void **state)
{
    (void)state;
    assert_int_equal(ok("100", UNIT_BYTERATE), 100ULL << 20);   /* bare: MiB/s */
    assert_int_equal(ok("100M", UNIT_BYTERATE), 100ULL << 20);
    assert_int_equal(ok("1GiB/s", UNIT_BYTERATE), 1ULL << 30);
    assert_int_equal(ok("64K", UNIT_BYTERATE), 64ULL << 10);
    bad("1Gbit", UNIT_BYTERATE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_disk),
        cmocka_unit_test(test_bitrate),
        cmocka_unit_test(test_byterate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
