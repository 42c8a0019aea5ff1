/* Unit tests for qemu-img create/info/check (src/block/image.c) on real
 * images made with the installed qemu-img in a temporary directory: a
 * standalone qcow2, a backing chain, a missing file, a raw file read as raw,
 * the parser on its own, and create's refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/image.h"

#define MIB (1024ULL * 1024)

struct fixture {
    char dir[PATH_MAX];
    char base[PATH_MAX + 16], top[PATH_MAX + 16], raw[PATH_MAX + 16];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/vmove-test-image.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->base, sizeof f->base, "%s/base.qcow2", f->dir);
    snprintf(f->top, sizeof f->top, "%s/top.qcow2", f->dir);
    snprintf(f->raw, sizeof f->raw, "%s/disk.raw", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    unlink(f->base), unlink(f->top), unlink(f->raw);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void test_create_and_info(void **state)
{
    struct fixture *f = *state;
    char err[512];
    assert_int_equal(image_create(f->base, 16 * MIB, NULL, NULL, err, sizeof err), 0);
    struct image_info info;
    assert_int_equal(image_info(f->base, "qcow2", false, &info, err, sizeof err), 0);
    assert_int_equal(info.n, 1);
    assert_string_equal(info.layers[0].format, "qcow2");
    assert_string_equal(info.layers[0].filename, f->base);
    assert_int_equal(info.layers[0].virtual_size, 16 * MIB);
    assert_true(info.layers[0].actual_size > 0);
    assert_null(info.layers[0].backing_filename);
    image_info_free(&info);
    assert_int_equal(image_check(f->base, "qcow2", err, sizeof err), 0);
}

static void test_backing_chain(void **state)
{
    struct fixture *f = *state;
    char err[512];
    assert_int_equal(image_create(f->base, 32 * MIB, NULL, NULL, err, sizeof err), 0);
    /* size 0 with a backing file: the backing file's size */
    assert_int_equal(image_create(f->top, 0, f->base, "qcow2", err, sizeof err), 0);
    struct image_info info;
    assert_int_equal(image_info(f->top, NULL, true, &info, err, sizeof err), 0);
    assert_int_equal(info.n, 2);
    assert_string_equal(info.layers[0].filename, f->top);
    assert_string_equal(info.layers[0].backing_filename, f->base);
    assert_string_equal(info.layers[1].filename, f->base);
    assert_null(info.layers[1].backing_filename);
    assert_int_equal(info.layers[0].virtual_size, 32 * MIB);
    assert_int_equal(image_info_chain_actual(&info), info.layers[0].actual_size + info.layers[1].actual_size);
    image_info_free(&info);
    /* without --backing-chain: the top alone */
    assert_int_equal(image_info(f->top, NULL, false, &info, err, sizeof err), 0);
    assert_int_equal(info.n, 1);
    image_info_free(&info);
}

static void test_missing_file(void **state)
{
    struct fixture *f = *state;
    char err[512] = "";
    struct image_info info;
    assert_int_equal(image_info(f->base, NULL, false, &info, err, sizeof err), -1);
    assert_int_equal(info.n, 0);
    assert_non_null(strstr(err, "No such file"));
    image_info_free(&info);   /* harmless on an empty info */
}

/* A raw file whose content looks like a qcow2 header: given explicitly as
 * raw, qemu-img must not probe it. */
static void test_raw_explicit(void **state)
{
    struct fixture *f = *state;
    char err[512];
    assert_int_equal(image_create(f->base, 1 * MIB, NULL, NULL, err, sizeof err), 0);
    int in = open(f->base, O_RDONLY), out = open(f->raw, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    char buf[4096];
    assert_int_equal(read(in, buf, sizeof buf), sizeof buf);
    assert_int_equal(write(out, buf, sizeof buf), sizeof buf);
    assert_int_equal(ftruncate(out, (off_t)(2 * MIB)), 0);
    close(in), close(out);
    struct image_info info;
    assert_int_equal(image_info(f->raw, "raw", false, &info, err, sizeof err), 0);
    assert_string_equal(info.layers[0].format, "raw");
    assert_int_equal(info.layers[0].virtual_size, 2 * MIB);
    image_info_free(&info);
    /* probing would call it qcow2: the reason formats are explicit */
    assert_int_equal(image_info(f->raw, NULL, false, &info, err, sizeof err), 0);
    assert_string_equal(info.layers[0].format, "qcow2");
    image_info_free(&info);
}

static void test_parse(void **state)
{
    struct image_info info;
    assert_int_equal(image_info_parse("{\"filename\": \"/a\", \"format\": \"raw\", \"virtual-size\": 5}", &info), 0);
    assert_int_equal(info.n, 1);
    assert_int_equal(info.layers[0].virtual_size, 5);
    image_info_free(&info);
    assert_int_equal(image_info_parse("[]", &info), -1);
    assert_int_equal(image_info_parse("not json", &info), -1);
    assert_int_equal(image_info_parse(NULL, &info), -1);
    assert_int_equal(image_info_parse("[{\"filename\": \"/a\", \"format\": \"qcow2\"}, {\"format\": \"raw\"}]", &info),
                     -1);
    assert_int_equal(info.n, 0);
}

static void test_create_refusals(void **state)
{
    struct fixture *f = *state;
    char err[512] = "";
    assert_int_equal(image_create(f->top, 0, f->base, NULL, err, sizeof err), -1);   /* no backing format */
    assert_int_equal(access(f->top, F_OK), -1);
    assert_int_equal(image_create("/nonexistent-dir/x.qcow2", MIB, NULL, NULL, err, sizeof err), -1);
    assert_true(strlen(err) > 0);
    assert_int_equal(image_check(f->base, "qcow2", err, sizeof err), -1);      /* missing */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_and_info, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backing_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_explicit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_refusals, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
