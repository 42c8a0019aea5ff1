/* Unit tests for the per-host settings (src/host/settings.c).
 *
 * The settings are being extended (new fields appear over time), so these
 * tests only look at "version" and "accel" and never compare whole JSON
 * documents or whole structs: a new field with a default must not break them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/util.h"
#include "conf/settings.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fixture {
    char *dir;
    char *path; /* DIR/host.json */
};

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof *f);
    f->dir = xstrdup("/tmp/vmove-test-settings.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    f->path = xasprintf("%s/host.json", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    remove_tree(f->dir);
    free(f->dir);
    free(f->path);
    free(f);
    return 0;
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle))
        fail_msg("\"%s\" does not contain \"%s\"", haystack, needle);
}

/* Parses JSON text in which ' stands for ". */
static json_t *parse(const char *text)
{
    char *s = xstrdup(text);
    for (char *p = s; *p; p++)
        if (*p == '\'')
            *p = '"';
    json_error_t e;
    json_t *j = json_loads(s, JSON_DECODE_ANY, &e);
    if (!j)
        fail_msg("bad test JSON %s: %s", s, e.text);
    free(s);
    return j;
}

static void write_text(const char *path, const char *text)
{
    assert_int_equal(write_file_atomic(path, text, strlen(text), 0644), 0);
}

/* Settings that differ from the defaults in the field under test. */
static void poison(struct host_settings *s)
{
    memset(s, 0x5a, sizeof *s);
    s->accel = ACCEL_TCG;
}

/* from_json must fail, and its message must contain `needle`. */
static void expect_from_json_error(const char *text, const char *needle)
{
    json_t *j = parse(text);
    struct host_settings s;
    char err[512] = "";
    int rc = host_settings_from_json(j, &s, err, sizeof err);
    json_decref(j);
    if (rc != -1)
        fail_msg("host_settings_from_json(%s) accepted", text);
    if (!*err)
        fail_msg("host_settings_from_json(%s) failed without a message", text);
    if (!strstr(err, needle))
        fail_msg("error for %s is \"%s\", which does not mention \"%s\"", text, err, needle);
}

/* ---- defaults / to_json ---- */

/* Post-copy is denied unless allowed, and the setting survives a round trip. */
static void test_allow_postcopy(void **state)
{
    struct host_settings s, back;
    char err[512];
    host_settings_defaults(&s);
    assert_false(s.allow_postcopy);
    s.allow_postcopy = true;
    json_t *j = host_settings_to_json(&s);
    assert_true(json_is_true(json_object_get(j, "allow_postcopy")));
    assert_int_equal(host_settings_from_json(j, &back, err, sizeof err), 0);
    assert_true(back.allow_postcopy);
    json_decref(j);
    expect_from_json_error("{\"allow_postcopy\": \"yes\"}", "allow_postcopy");
}

static void test_defaults(void **state)
{
    struct host_settings s;
    poison(&s);
    host_settings_defaults(&s);
    assert_int_equal(s.accel, ACCEL_AUTO);

    json_t *j = host_settings_to_json(&s);
    assert_true(json_is_object(j));
    assert_int_equal(json_integer_value(json_object_get(j, "version")), HOST_SETTINGS_VERSION);
    assert_string_equal(json_string_value(json_object_get(j, "accel")), "auto");
    json_decref(j);
}

static void test_to_json_accel_values(void **state)
{
    static const enum accel_setting all[] = { ACCEL_AUTO, ACCEL_KVM, ACCEL_TCG };
    static const char *const names[] = { "auto", "kvm", "tcg" };
    for (size_t i = 0; i < ARRAY_LEN(all); i++) {
        struct host_settings s;
        host_settings_defaults(&s);
        s.accel = all[i];
        json_t *j = host_settings_to_json(&s);
        assert_string_equal(json_string_value(json_object_get(j, "accel")), names[i]);
        /* And back through from_json. */
        struct host_settings back;
        poison(&back);
        back.accel = all[(i + 1) % ARRAY_LEN(all)];
        char err[256] = "";
        if (host_settings_from_json(j, &back, err, sizeof err) != 0)
            fail_msg("from_json(to_json(accel=%s)): %s", names[i], err);
        assert_int_equal(back.accel, all[i]);
        json_decref(j);
    }
}

/* ---- from_json ---- */

static void test_from_json_valid(void **state)
{
    struct host_settings s;
    char err[256] = "";

    /* Empty object = defaults, whatever the struct held before. */
    json_t *j = parse("{}");
    poison(&s);
    assert_int_equal(host_settings_from_json(j, &s, err, sizeof err), 0);
    assert_int_equal(s.accel, ACCEL_AUTO);
    json_decref(j);

    j = parse("{'version': 1, 'accel': 'kvm'}");
    assert_int_equal(host_settings_from_json(j, &s, err, sizeof err), 0);
    assert_int_equal(s.accel, ACCEL_KVM);
    json_decref(j);

    /* version is optional. */
    j = parse("{'accel': 'tcg'}");
    assert_int_equal(host_settings_from_json(j, &s, err, sizeof err), 0);
    assert_int_equal(s.accel, ACCEL_TCG);
    json_decref(j);
}

static void test_from_json_unknown_field(void **state)
{
    expect_from_json_error("{'accel': 'kvm', 'acel': 'tcg'}", "acel");
    expect_from_json_error("{'frobnicate': true}", "frobnicate");
    expect_from_json_error("{'Accel': 'kvm'}", "Accel"); /* names are case-sensitive */
    expect_from_json_error("{'accel ': 'kvm'}", "accel ");
    expect_from_json_error("{'frobnicate': 1}", "unknown");
}

static void test_from_json_bad_accel(void **state)
{
    static const char *const bad[] = {
        "{'accel': 'hvf'}", "{'accel': 'KVM'}", "{'accel': ''}",  "{'accel': 1}",
        "{'accel': null}",  "{'accel': true}",  "{'accel': ['kvm']}",
    };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        expect_from_json_error(bad[i], "accel");
    /* The message lists the valid values. */
    expect_from_json_error("{'accel': 'hvf'}", "tcg");
}

static void test_from_json_bad_version(void **state)
{
    char text[64];
    snprintf(text, sizeof text, "{'version': %d}", HOST_SETTINGS_VERSION + 1);
    expect_from_json_error(text, "version");
    expect_from_json_error("{'version': 0}", "version");
    expect_from_json_error("{'version': -1}", "version");
    expect_from_json_error("{'version': '1'}", "version");
    expect_from_json_error("{'version': 1.0}", "version");
}

static void test_from_json_not_object(void **state)
{
    expect_from_json_error("[]", "object");
    expect_from_json_error("'accel'", "object");
    expect_from_json_error("null", "object");
    struct host_settings s;
    char err[256] = "";
    assert_int_equal(host_settings_from_json(NULL, &s, err, sizeof err), -1);
    assert_contains(err, "object");
}

/* ---- load / save ---- */

static void test_load_missing_file(void **state)
{
    struct fixture *f = *state;
    struct host_settings s;
    poison(&s);
    char err[256] = "";
    assert_int_equal(host_settings_load(f->path, &s, err, sizeof err), 0);
    assert_int_equal(s.accel, ACCEL_AUTO);
    assert_false(path_exists(f->path)); /* loading does not create it */
}

static void test_save_load_round_trip(void **state)
{
    struct fixture *f = *state;
    static const enum accel_setting all[] = { ACCEL_TCG, ACCEL_KVM, ACCEL_AUTO };
    for (size_t i = 0; i < ARRAY_LEN(all); i++) {
        struct host_settings s;
        host_settings_defaults(&s);
        s.accel = all[i];
        char err[256] = "";
        if (host_settings_save(f->path, &s, err, sizeof err) != 0)
            fail_msg("save: %s", err);

        struct host_settings back;
        poison(&back);
        back.accel = all[(i + 1) % ARRAY_LEN(all)];
        if (host_settings_load(f->path, &back, err, sizeof err) != 0)
            fail_msg("load: %s", err);
        assert_int_equal(back.accel, all[i]);
    }

    /* The file: a JSON object ending in a newline, readable by everyone,
     * holding the version; no temporary file next to it. */
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(read_file(f->path, &text, &len), 0);
    assert_true(len > 2);
    assert_int_equal(text[len - 1], '\n');
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "version")), HOST_SETTINGS_VERSION);
    assert_string_equal(json_string_value(json_object_get(j, "accel")), "auto");
    json_decref(j);
    free(text);
    struct stat st;
    assert_int_equal(stat(f->path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);   /* host.json is root's alone */
    DIR *d = opendir(f->dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "host.json"))
            fail_msg("unexpected file left next to host.json: %s", e->d_name);
    closedir(d);

    /* A file written by hand, with only accel, loads too. */
    write_text(f->path, "{\"accel\": \"tcg\"}\n");
    struct host_settings s;
    char err[256] = "";
    assert_int_equal(host_settings_load(f->path, &s, err, sizeof err), 0);
    assert_int_equal(s.accel, ACCEL_TCG);
}

static void test_save_error(void **state)
{
    struct fixture *f = *state;
    char *bad = xasprintf("%s/no/such/dir/host.json", f->dir);
    struct host_settings s;
    host_settings_defaults(&s);
    char err[512] = "";
    assert_int_equal(host_settings_save(bad, &s, err, sizeof err), -1);
    assert_contains(err, bad);
    assert_contains(err, strerror(ENOENT));
    free(bad);
}

static void test_load_unknown_field(void **state)
{
    struct fixture *f = *state;
    write_text(f->path, "{\n  \"version\": 1,\n  \"acell\": \"kvm\"\n}\n");
    struct host_settings s;
    char err[512] = "";
    assert_int_equal(host_settings_load(f->path, &s, err, sizeof err), -1);
    assert_contains(err, f->path);
    assert_contains(err, "acell");
}

static void test_load_bad_accel(void **state)
{
    struct fixture *f = *state;
    write_text(f->path, "{\"version\": 1, \"accel\": \"xen\"}\n");
    struct host_settings s;
    char err[512] = "";
    assert_int_equal(host_settings_load(f->path, &s, err, sizeof err), -1);
    assert_contains(err, f->path);
    assert_contains(err, "accel");
}

/* Malformed JSON: "PATH:LINE:COLUMN: message". */
static void expect_syntax_error(struct fixture *f, const char *text, int want_line)
{
    write_text(f->path, text);
    struct host_settings s;
    char err[512] = "";
    assert_int_equal(host_settings_load(f->path, &s, err, sizeof err), -1);
    size_t n = strlen(f->path);
    if (strncmp(err, f->path, n) != 0 || err[n] != ':')
        fail_msg("error does not start with \"%s:\": \"%s\"", f->path, err);
    int line = -1, col = -1, used = 0;
    if (sscanf(err + n, ":%d:%d:%n", &line, &col, &used) != 2 || used == 0)
        fail_msg("error has no LINE:COLUMN after the path: \"%s\"", err);
    if (line != want_line)
        fail_msg("error reports line %d, want %d: \"%s\"", line, want_line, err);
    assert_true(col >= 0);
    assert_true(strlen(err + n + used) > 1); /* and a message */
    print_message("      %s\n", err);
}

static void test_load_malformed_json(void **state)
{
    struct fixture *f = *state;
    /* Trailing comma on line 2, detected at the '}' on line 3. */
    expect_syntax_error(f, "{\n  \"accel\": \"kvm\",\n}\n", 3);
    /* Missing quote on line 3. */
    expect_syntax_error(f, "{\n  \"version\": 1,\n  \"accel\": kvm\n}\n", 3);
    /* Duplicate key on line 3. */
    expect_syntax_error(f, "{\n  \"accel\": \"kvm\",\n  \"accel\": \"tcg\"\n}\n", 3);
    /* Truncated file. */
    expect_syntax_error(f, "{\"accel\": \"kvm\"", 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_allow_postcopy),
        cmocka_unit_test(test_to_json_accel_values),
        cmocka_unit_test(test_from_json_valid),
        cmocka_unit_test(test_from_json_unknown_field),
        cmocka_unit_test(test_from_json_bad_accel),
        cmocka_unit_test(test_from_json_bad_version),
        cmocka_unit_test(test_from_json_not_object),
        cmocka_unit_test_setup_teardown(test_load_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_load_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_unknown_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_bad_accel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_malformed_json, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
