/* Unit tests for the shared helpers (src/common/util.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *make_tmpdir(void)
{
    char *d = xstrdup("/tmp/vmove-test-util.XXXXXX");
    if (!mkdtemp(d))
        fail_msg("mkdtemp: %s", strerror(errno));
    return d;
}

static int setup_dir(void **state)
{
    *state = make_tmpdir();
    return 0;
}

static int teardown_dir(void **state)
{
    char *d = *state;
    remove_tree(d);
    free(d);
    return 0;
}

/* ---- parse_size ---- */

static void test_parse_size_valid(void **state)
{
    static const struct {
        const char *in;
        uint64_t want;
    } cases[] = {
        { "512M", 512ULL << 20 },
        { "1G", 1ULL << 30 },
        { "4k", 4096 },
        { "4K", 4096 },
        { "1024", 1024 },
        { "0", 0 },
        { "2GiB", 2ULL << 30 },
        { "3MB", 3ULL << 20 },
        { "1T", 1ULL << 40 },
        { "16m", 16ULL << 20 },
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        uint64_t v = 12345;
        const char *err = NULL;
        int rc = parse_size(cases[i].in, &v, &err);
        if (rc != 0)
            fail_msg("parse_size(\"%s\") failed: %s", cases[i].in, err ? err : "(no error)");
        if (v != cases[i].want)
            fail_msg("parse_size(\"%s\") = %llu, want %llu", cases[i].in, (unsigned long long)v,
                     (unsigned long long)cases[i].want);
    }
}

static void test_parse_size_invalid(void **state)
{
    static const char *const cases[] = {
        "", "M", "12X", "-1", "1.5G", "99999999999999999999", "1GG", " 1G", "1G ", "G1",
        "17179869184T", /* 2^34 T = 2^74 bytes: overflows after the multiplication */
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        uint64_t v = 777;
        const char *err = NULL;
        int rc = parse_size(cases[i], &v, &err);
        if (rc != -1)
            fail_msg("parse_size(\"%s\") accepted (%llu)", cases[i], (unsigned long long)v);
        if (!err || !*err)
            fail_msg("parse_size(\"%s\") failed without an error message", cases[i]);
        if (v != 777)
            fail_msg("parse_size(\"%s\") wrote *out on failure", cases[i]);
    }
    /* NULL is treated like the empty string. */
    uint64_t v;
    const char *err = NULL;
    assert_int_equal(parse_size(NULL, &v, &err), -1);
    assert_non_null(err);
    assert_true(strlen(err) > 0);
}

/* Each class of bad input gets a message that says what is wrong. */
static void test_parse_size_messages(void **state)
{
    uint64_t v;
    const char *err = NULL;
    assert_int_equal(parse_size("99999999999999999999", &v, &err), -1);
    assert_non_null(strstr(err, "range"));
    err = NULL;
    assert_int_equal(parse_size("12X", &v, &err), -1);
    assert_non_null(strstr(err, "suffix"));
    err = NULL;
    assert_int_equal(parse_size("1GG", &v, &err), -1);
    assert_non_null(strstr(err, "trailing"));
    err = NULL;
    assert_int_equal(parse_size("-1", &v, &err), -1);
    assert_non_null(strstr(err, "digit"));
}

/* ---- format_size ---- */

static void test_format_size(void **state)
{
    static const struct {
        uint64_t in;
        const char *want;
    } cases[] = {
        { 0, "0B" },
        { 1, "1B" },
        { 1023, "1023B" },
        { 1024, "1K" },
        { 1536, "1.5K" },
        { 512ULL << 20, "512M" },
        { 1ULL << 30, "1G" },
        { 3ULL << 29, "1.5G" },
        { 1ULL << 40, "1T" },
        { 2048ULL << 40, "2048T" }, /* T is the largest unit */
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char buf[32];
        format_size(cases[i].in, buf, sizeof buf);
        if (strcmp(buf, cases[i].want) != 0)
            fail_msg("format_size(%llu) = \"%s\", want \"%s\"", (unsigned long long)cases[i].in,
                     buf, cases[i].want);
    }
    /* Exact sizes survive a round trip through parse_size. */
    static const uint64_t exact[] = { 4096, 512ULL << 20, 1ULL << 30, 7ULL << 40 };
    for (size_t i = 0; i < ARRAY_LEN(exact); i++) {
        char buf[32];
        format_size(exact[i], buf, sizeof buf);
        uint64_t back = 0;
        const char *err = NULL;
        assert_int_equal(parse_size(buf, &back, &err), 0);
        assert_int_equal(back, exact[i]);
    }
    /* A short buffer is truncated, never overrun. */
    char small[3] = { 'x', 'x', 'x' };
    format_size(512ULL << 20, small, sizeof small);
    assert_string_equal(small, "51");
}

/* ---- files ---- */

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

static void test_write_read_round_trip(void **state)
{
    const char *dir = *state;
    char *path = xasprintf("%s/data.json", dir);
    const char text[] = "{\"hello\": \"world\"}\n";

    mode_t old = umask(0);
    assert_int_equal(write_file_atomic(path, text, strlen(text), 0640), 0);
    umask(old);

    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0640);
    assert_true(S_ISREG(st.st_mode));
    /* No temporary file left next to it. */
    assert_int_equal(count_entries(dir), 1);

    char *back = NULL;
    size_t len = 0;
    assert_int_equal(read_file(path, &back, &len), 0);
    assert_int_equal(len, strlen(text));
    assert_string_equal(back, text);
    free(back);

    /* Overwrite with shorter content: the old bytes are gone. */
    assert_int_equal(write_file_atomic(path, "x", 1, 0600), 0);
    assert_int_equal(read_file(path, &back, NULL), 0);
    assert_string_equal(back, "x");
    free(back);
    assert_int_equal(count_entries(dir), 1);
    free(path);
}

static void test_write_read_binary_and_large(void **state)
{
    const char *dir = *state;
    char *path = xasprintf("%s/blob", dir);
    size_t n = 100000; /* larger than read_file's first buffer */
    unsigned char *data = xmalloc(n);
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)(i * 7 + 3); /* includes NUL bytes */
    assert_int_equal(write_file_atomic(path, data, n, 0600), 0);

    char *back = NULL;
    size_t len = 0;
    assert_int_equal(read_file(path, &back, &len), 0);
    assert_int_equal(len, n);
    assert_memory_equal(back, data, n);
    assert_int_equal(back[n], 0); /* always NUL-terminated */
    free(back);
    free(data);

    /* Empty file. */
    assert_int_equal(write_file_atomic(path, "", 0, 0600), 0);
    assert_int_equal(read_file(path, &back, &len), 0);
    assert_int_equal(len, 0);
    assert_string_equal(back, "");
    free(back);
    free(path);
}

static void test_write_read_errors(void **state)
{
    const char *dir = *state;
    char *path = xasprintf("%s/no/such/dir/file", dir);
    errno = 0;
    assert_int_equal(write_file_atomic(path, "x", 1, 0600), -1);
    assert_int_equal(errno, ENOENT);
    char *back = (char *)"untouched";
    errno = 0;
    assert_int_equal(read_file(path, &back, NULL), -1);
    assert_int_equal(errno, ENOENT);
    assert_string_equal(back, "untouched");
    free(path);
    /* Nothing left behind in the directory. */
    assert_int_equal(count_entries(dir), 0);
}

static void test_mkdir_p(void **state)
{
    const char *dir = *state;
    char *deep = xasprintf("%s/a/b/c/d", dir);
    assert_int_equal(mkdir_p(deep, 0755), 0);
    struct stat st;
    assert_int_equal(stat(deep, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_true(path_exists(deep));

    /* Existing: fine, and idempotent. */
    assert_int_equal(mkdir_p(deep, 0755), 0);
    assert_int_equal(mkdir_p(dir, 0755), 0);

    /* Trailing slash. */
    char *slash = xasprintf("%s/x/y/", dir);
    assert_int_equal(mkdir_p(slash, 0700), 0);
    char *y = xasprintf("%s/x/y", dir);
    assert_int_equal(stat(y, &st), 0);
    assert_true(S_ISDIR(st.st_mode));

    /* A regular file in the way. */
    char *file = xasprintf("%s/file", dir);
    assert_int_equal(write_file_atomic(file, "x", 1, 0600), 0);
    char *under = xasprintf("%s/file/sub", dir);
    assert_int_equal(mkdir_p(under, 0755), -1);
    assert_false(path_exists(under));

    free(deep);
    free(slash);
    free(y);
    free(file);
    free(under);
}

static void test_remove_tree(void **state)
{
    const char *dir = *state;
    char *top = xasprintf("%s/tree", dir);
    char *deep = xasprintf("%s/tree/a/b", dir);
    assert_int_equal(mkdir_p(deep, 0755), 0);
    char *f1 = xasprintf("%s/tree/f1", dir);
    char *f2 = xasprintf("%s/tree/a/b/f2", dir);
    assert_int_equal(write_file_atomic(f1, "1", 1, 0600), 0);
    assert_int_equal(write_file_atomic(f2, "2", 1, 0600), 0);
    /* A symlink pointing outside is removed, not followed. */
    char *outside = xasprintf("%s/keep", dir);
    assert_int_equal(write_file_atomic(outside, "k", 1, 0600), 0);
    char *link = xasprintf("%s/tree/a/link", dir);
    assert_int_equal(symlink(outside, link), 0);

    assert_int_equal(remove_tree(top), 0);
    assert_false(path_exists(top));
    assert_true(path_exists(outside));

    /* Missing path is not an error; a single file is removed. */
    assert_int_equal(remove_tree(top), 0);
    assert_int_equal(remove_tree(outside), 0);
    assert_false(path_exists(outside));

    free(top);
    free(deep);
    free(f1);
    free(f2);
    free(outside);
    free(link);
}

static void test_remove_tree_refuses(void **state)
{
    errno = 0;
    assert_int_equal(remove_tree("/"), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(remove_tree(""), -1);
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_int_equal(remove_tree(NULL), -1);
    assert_int_equal(errno, EINVAL);
    assert_true(path_exists("/"));
}

/* ---- valid_name ---- */

static void test_valid_name(void **state)
{
    char name[80];
    memset(name, 'a', sizeof name);
    name[63] = 0;
    assert_true(valid_name(name)); /* 63 chars: the maximum */
    name[63] = 'a';
    name[64] = 0;
    assert_false(valid_name(name)); /* 64 chars */

    static const char *const good[] = { "a", "Z", "0", "web-1", "db_2", "a.b.c", "vm-",
                                        "x.", "9lives", "A-_.z" };
    for (size_t i = 0; i < ARRAY_LEN(good); i++)
        if (!valid_name(good[i]))
            fail_msg("valid_name(\"%s\") rejected", good[i]);

    static const char *const bad[] = { "", "-vm", ".hidden", "_x", "a/b", "/", "..", "a b",
                                       "vm\n", "vm!", "ü", "a:b", "a\\b" };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        if (valid_name(bad[i]))
            fail_msg("valid_name(\"%s\") accepted", bad[i]);
    assert_false(valid_name(NULL));
}

static void test_clocks(void **state)
{
    uint64_t a = now_ms();
    usleep(20000);
    uint64_t b = now_ms();
    assert_true(b >= a + 15);
    assert_true(b < a + 5000);
    assert_true(wall_ms() > 1600000000000ULL); /* after 2020 */
}

static void test_xasprintf(void **state)
{
    char *s = xasprintf("%s-%d", "vm", 42);
    assert_string_equal(s, "vm-42");
    free(s);
    char *d = xstrdup("");
    assert_string_equal(d, "");
    free(d);
    void *z = xcalloc(0, 0); /* never NULL */
    assert_non_null(z);
    free(z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_size_valid),
        cmocka_unit_test(test_parse_size_invalid),
        cmocka_unit_test(test_parse_size_messages),
        cmocka_unit_test(test_format_size),
        cmocka_unit_test_setup_teardown(test_write_read_round_trip, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_write_read_binary_and_large, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_write_read_errors, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_mkdir_p, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_remove_tree, setup_dir, teardown_dir),
        cmocka_unit_test(test_remove_tree_refuses),
        cmocka_unit_test(test_valid_name),
        cmocka_unit_test(test_clocks),
        cmocka_unit_test(test_xasprintf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
