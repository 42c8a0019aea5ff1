/* Unit tests for vmove's own image header checks (src/exchange/image_sniff.c):
 * real images made with the installed qemu-img (qcow2, VHDX, VHD fixed and
 * dynamic, monolithicSparse VMDK) are recognised and called safe; images
 * that name other files (a qcow2 backing file or external data file, a
 * "raw" disk whose first sector is a qcow2 header naming /etc/shadow, VMDK
 * descriptors naming host files, a differencing VHD) are unsafe; cut files
 * are truncated; anything else is unknown and has no qemu format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "exchange/image_sniff.h"

#define MIB (1024ULL * 1024)

static char dir[PATH_MAX];

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/vmove-test-sniff.XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* qemu-img create ARGS in dir; returns the image's path (static buffer). */
static const char *make(const char *name, const char *args)
{
    static char path[PATH_MAX + 64];
    char cmd[4 * PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(cmd, sizeof cmd, "cd %s && qemu-img create -q %s >/dev/null", dir, args);
    assert_int_equal(system(cmd), 0);
    return path;
}

static struct image_sniff sniff(const char *path)
{
    struct image_sniff s;
    char err[256] = "";
    assert_int_equal(image_sniff_file(path, &s, err, sizeof err), 0);
    return s;
}

static void test_qcow2_safe(void **state)
{
    struct image_sniff s = sniff(make("a.qcow2", "-f qcow2 a.qcow2 64M"));
    assert_int_equal(s.format, SNIFF_QCOW2);
    assert_string_equal(s.qemu_format, "qcow2");
    assert_int_equal(s.virtual_size, 64 * MIB);
    assert_false(s.unsafe);
    assert_false(s.truncated);
    assert_string_equal(s.why, "");
}

static void test_qcow2_backing_and_data_file(void **state)
{
    make("base.qcow2", "-f qcow2 base.qcow2 16M");
    struct image_sniff s = sniff(make("top.qcow2", "-f qcow2 -b base.qcow2 -F qcow2 top.qcow2"));
    assert_int_equal(s.format, SNIFF_QCOW2);
    assert_true(s.unsafe);
    assert_non_null(strstr(s.why, "backing file (base.qcow2)"));
    s = sniff(make("ext.qcow2", "-f qcow2 -o data_file=ext.data ext.qcow2 16M"));
    assert_true(s.unsafe);
    assert_non_null(strstr(s.why, "data file"));
}

/* The attack of docs/EXPORT-IMPORT.md: a disk that claims to be raw but
 * starts with a qcow2 header naming a host file.  Built by hand: qemu-img
 * is never asked about it. */
static void test_raw_with_qcow2_header(void **state)
{
    uint8_t h[4096] = {0};
    const char *target = "/etc/shadow";
    memcpy(h, "QFI\xfb", 4);
    h[7] = 3;                                  /* version 3 */
    h[15] = 0x80;                              /* backing_file_offset 128 */
    h[19] = (uint8_t)strlen(target);           /* backing_file_size */
    h[23] = 16;                                /* cluster_bits */
    h[28] = 0x40;                              /* size: 1 GiB */
    h[103] = 104;                              /* header_length */
    memcpy(h + 128, target, strlen(target));
    struct image_sniff s;
    assert_int_equal(image_sniff_mem(h, sizeof h, NULL, sizeof h, "evil.raw", &s), 0);
    assert_int_equal(s.format, SNIFF_QCOW2);
    assert_true(s.unsafe);
    assert_non_null(strstr(s.why, "/etc/shadow"));
}

static void test_qcow2_truncated(void **state)
{
    const char *p = make("cut.qcow2", "-f qcow2 cut.qcow2 64M");
    assert_int_equal(truncate(p, 1024), 0);
    struct image_sniff s = sniff(p);
    assert_int_equal(s.format, SNIFF_QCOW2);
    assert_true(s.truncated);
    assert_false(s.unsafe);
    assert_non_null(strstr(s.why, "truncated"));
    assert_int_equal(truncate(p, 40), 0);
    s = sniff(p);
    assert_true(s.truncated);
}

static void test_foreign_formats(void **state)
{
    struct image_sniff s = sniff(make("d.vhdx", "-f vhdx d.vhdx 32M"));
    assert_int_equal(s.format, SNIFF_VHDX);
    assert_string_equal(s.qemu_format, "vhdx");
    assert_false(s.unsafe || s.truncated);
    s = sniff(make("d.vhd", "-f vpc d.vhd 32M"));
    assert_int_equal(s.format, SNIFF_VHD);
    assert_string_equal(s.qemu_format, "vpc");
    assert_true(s.virtual_size >= 32 * MIB - MIB && s.virtual_size <= 33 * MIB);
    assert_false(s.unsafe || s.truncated);
    s = sniff(make("f.vhd", "-f vpc -o subformat=fixed f.vhd 8M"));
    assert_int_equal(s.format, SNIFF_VHD);
    assert_false(s.unsafe || s.truncated);
    s = sniff(make("d.vmdk", "-f vmdk d.vmdk 32M"));
    assert_int_equal(s.format, SNIFF_VMDK);
    assert_string_equal(s.qemu_format, "vmdk");
    assert_int_equal(s.virtual_size, 32 * MIB);
    assert_false(s.unsafe || s.truncated);
}

/* A dynamic VHD whose end was cut keeps its footer copy at the start. */
static void test_vhd_cut_and_differencing(void **state)
{
    const char *p = make("cut.vhd", "-f vpc cut.vhd 32M");
    assert_int_equal(truncate(p, 4096), 0);
    struct image_sniff s = sniff(p);
    assert_int_equal(s.format, SNIFF_VHD);
    assert_true(s.truncated);
    uint8_t footer[512] = {0};
    memcpy(footer, "conectix", 8);
    footer[63] = 4;                            /* disk type: differencing */
    uint8_t head[512] = {0};
    assert_int_equal(image_sniff_mem(head, sizeof head, footer, 1 << 20, "diff.vhd", &s), 0);
    assert_int_equal(s.format, SNIFF_VHD);
    assert_true(s.unsafe);
    assert_non_null(strstr(s.why, "parent"));
}

/* The embedded descriptor of a real sparse VMDK, rewritten in memory. */
static void vmdk_with_descriptor(const char *extent_line, const char *create_type, struct image_sniff *s)
{
    const char *p = make("x.vmdk", "-f vmdk x.vmdk 16M");
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    static uint8_t buf[IMAGE_SNIFF_HEAD];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    char *d = memmem(buf, n, "# Disk DescriptorFile", 21);
    assert_non_null(d);
    size_t room = 10 * 512;
    memset(d, 0, room);
    snprintf(d, room, "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"%s\"\n\n"
             "# Extent description\n%s\n", create_type, extent_line);
    assert_int_equal(image_sniff_mem(buf, n, NULL, n, "x.vmdk", s), 0);
    assert_int_equal(s->format, SNIFF_VMDK);
}

static void test_vmdk_extents(void **state)
{
    struct image_sniff s;
    vmdk_with_descriptor("RW 32768 SPARSE \"x.vmdk\"", "monolithicSparse", &s);
    assert_false(s.unsafe);
    vmdk_with_descriptor("RW 32768 FLAT \"/etc/passwd\" 0", "monolithicSparse", &s);
    assert_true(s.unsafe);
    assert_non_null(strstr(s.why, "/etc/passwd"));
    vmdk_with_descriptor("RW 32768 SPARSE \"x.vmdk\"", "twoGbMaxExtentFlat", &s);
    assert_true(s.unsafe);
    assert_non_null(strstr(s.why, "twoGbMaxExtentFlat"));
    vmdk_with_descriptor("RW 32768 SPARSE \"../other/x.vmdk\"", "streamOptimized", &s);
    assert_true(s.unsafe);
    /* A descriptor file of its own names its extents: always refused. */
    const char *text = "# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\nRW 2048 FLAT \"/etc/passwd\" 0\n";
    assert_int_equal(image_sniff_mem((const uint8_t *)text, strlen(text), NULL, strlen(text), "evil.vmdk", &s), 0);
    assert_int_equal(s.format, SNIFF_VMDK_TEXT);
    assert_true(s.unsafe);
    assert_null(s.qemu_format);
}

static void test_unknown(void **state)
{
    uint8_t zeros[4096] = {0};
    struct image_sniff s;
    assert_int_equal(image_sniff_mem(zeros, sizeof zeros, zeros + 3584, sizeof zeros, "disk.raw", &s), 0);
    assert_int_equal(s.format, SNIFF_UNKNOWN);
    assert_null(s.qemu_format);
    assert_int_equal(image_sniff_mem(zeros, 0, NULL, 0, "empty", &s), 0);
    assert_int_equal(s.format, SNIFF_UNKNOWN);
    char err[256] = "";
    assert_int_equal(image_sniff_file("/nonexistent/x", &s, err, sizeof err), -1);
    assert_true(strlen(err) > 0);
    assert_int_equal(image_sniff_file("/dev/null", &s, err, sizeof err), -1);   /* not a regular file */
    assert_string_equal(err, "not a regular file");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_qcow2_safe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qcow2_backing_and_data_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_with_qcow2_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qcow2_truncated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_formats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vhd_cut_and_differencing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vmdk_extents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
