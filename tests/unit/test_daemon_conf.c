/* Unit tests for vmoved's configuration file (src/conf/daemon_conf.c):
 * every key, and every error path with the line number it reports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/util.h"
#include "conf/daemon_conf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void assert_contains(const char *haystack, const char *needle)
{
    if (!strstr(haystack, needle))
        fail_msg("\"%s\" does not contain \"%s\"", haystack, needle);
}

/* Parses `text` as file "t.conf"; the error text, or "" on success. */
static const char *parse_err(const char *text, struct daemon_conf *c)
{
    static char err[512];
    err[0] = 0;
    *c = (struct daemon_conf){0};
    int rc = daemon_conf_parse("t.conf", text, c, err, sizeof err);
    assert_int_equal(rc, err[0] ? -1 : 0);
    return err;
}

static void test_every_key(void **state)
{
    struct daemon_conf c;
    const char *err = parse_err("# vmoved.conf\n"
                                "\n"
                                "name = h1\n"
                                "listen=10.0.1.11:7070\n"
                                "  tls-dir =\t/etc/vmove/tls  \n"
                                "state-dir = /srv/vmove\n"
                                "socket = /run/vmove/other.sock\r\n"
                                "log-file = /var/log/vmoved.log\n"
                                "debug = yes\n"
                                "   # indented comment\n",
                                &c);
    assert_string_equal(err, "");
    assert_string_equal(c.name, "h1");
    assert_string_equal(c.listen, "10.0.1.11:7070");
    assert_string_equal(c.tls_dir, "/etc/vmove/tls");
    assert_string_equal(c.state_dir, "/srv/vmove");
    assert_string_equal(c.socket, "/run/vmove/other.sock");
    assert_string_equal(c.log_file, "/var/log/vmoved.log");
    assert_true(c.debug);
    daemon_conf_free(&c);
    assert_null(c.name);
}

static void test_empty_and_comments_only(void **state)
{
    struct daemon_conf c;
    assert_string_equal(parse_err("", &c), "");
    assert_string_equal(parse_err("# all defaults\n#name = h1\n\n", &c), "");
    assert_null(c.name);
    assert_null(c.state_dir);
    assert_false(c.debug);
    /* No newline at the end of the last line. */
    assert_string_equal(parse_err("name = h2", &c), "");
    assert_string_equal(c.name, "h2");
    daemon_conf_free(&c);
}

static void test_bool_words(void **state)
{
    static const char *const yes[] = {"yes", "true", "on", "1"}, *const no[] = {"no", "false", "off", "0"};
    struct daemon_conf c;
    for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
        char text[64];
        snprintf(text, sizeof text, "debug = %s\n", yes[i]);
        assert_string_equal(parse_err(text, &c), "");
        assert_true(c.debug);
        snprintf(text, sizeof text, "debug = %s\n", no[i]);
        assert_string_equal(parse_err(text, &c), "");
        assert_false(c.debug);
    }
}

static void test_ipv6_listen(void **state)
{
    struct daemon_conf c;
    assert_string_equal(parse_err("listen = [::1]:7070\n", &c), "");
    assert_string_equal(c.listen, "[::1]:7070");
    daemon_conf_free(&c);
}

/* Each bad text, and the exact message it must give. */
static const struct {
    const char *text, *message;
} bad[] = {
    {"name = h1\nlisten 10.0.0.1:7070\n", "t.conf:2: malformed line (expected key = value)"},
    {"\n\n = h1\n", "t.conf:3: malformed line (no key before '=')"},
    {"# x\nlsten = 10.0.0.1:7070\n", "t.conf:2: unknown key \"lsten\""},
    {"foreground = yes\n", "t.conf:1: unknown key \"foreground\""},
    {"name = h1\n\nname = h2\n", "t.conf:3: name is already set on line 1"},
    {"name =\n", "t.conf:1: name needs a value"},
    {"#\nsocket =   \n", "t.conf:2: socket needs a value"},
    {"name = -h1\n", "t.conf:1: bad value \"-h1\" for name: not a valid host name"},
    {"name = h 1\n", "t.conf:1: bad value \"h 1\" for name"},
    {"listen = 10.0.0.1\n", "t.conf:1: bad value \"10.0.0.1\" for listen: expected ADDR:PORT"},
    {"listen = :7070\n", "t.conf:1: bad value \":7070\" for listen"},
    {"listen = 10.0.0.1:0\n", "t.conf:1: bad value \"10.0.0.1:0\" for listen"},
    {"listen = 10.0.0.1:65536\n", "t.conf:1: bad value \"10.0.0.1:65536\" for listen"},
    {"listen = 10.0.0.1:70x\n", "t.conf:1: bad value \"10.0.0.1:70x\" for listen"},
    {"listen = 10.0.0.1:000007070\n", "t.conf:1: bad value \"10.0.0.1:000007070\" for listen"},
    {"\n\n\n\nstate-dir = var/lib/vmove\n", "t.conf:5: bad value \"var/lib/vmove\" for state-dir: expected an absolute path"},
    {"tls-dir = tls\n", "t.conf:1: bad value \"tls\" for tls-dir: expected an absolute path"},
    {"socket = vmoved.sock\n", "t.conf:1: bad value \"vmoved.sock\" for socket"},
    {"log-file = log\n", "t.conf:1: bad value \"log\" for log-file"},
    {"debug = maybe\n", "t.conf:1: bad value \"maybe\" for debug: expected yes or no"},
};

static void test_every_error_names_file_and_line(void **state)
{
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct daemon_conf c;
        const char *err = parse_err(bad[i].text, &c);
        assert_contains(err, bad[i].message);
        daemon_conf_free(&c);
    }
}

static char *temp_file(const char *text)
{
    char *path = xstrdup("/tmp/vmove-test-daemon-conf.XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_load_file(void **state)
{
    char *path = temp_file("name = h9\nbogus = 1\n");
    struct daemon_conf c = {0};
    char err[512], want[600];
    assert_int_equal(daemon_conf_load(path, false, &c, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:2: unknown key \"bogus\"", path);
    assert_string_equal(err, want);
    daemon_conf_free(&c);
    unlink(path);
    free(path);

    path = temp_file("name = h9\n");
    assert_int_equal(daemon_conf_load(path, true, &c, err, sizeof err), 0);
    assert_string_equal(c.name, "h9");
    daemon_conf_free(&c);
    unlink(path);
    free(path);
}

static void test_missing_file(void **state)
{
    struct daemon_conf c = {0};
    char err[512] = "";
    /* The default file may be absent: vmoved runs on defaults and flags. */
    assert_int_equal(daemon_conf_load("/nonexistent/vmoved.conf", false, &c, err, sizeof err), 0);
    assert_null(c.name);
    /* An explicit --config must exist. */
    assert_int_equal(daemon_conf_load("/nonexistent/vmoved.conf", true, &c, err, sizeof err), -1);
    assert_string_equal(err, "cannot read /nonexistent/vmoved.conf: No such file or directory");
    /* A directory is not a file, whether asked for or not. */
    assert_int_equal(daemon_conf_load("/tmp", false, &c, err, sizeof err), -1);
    assert_contains(err, "cannot read /tmp: ");
}

static void test_nul_byte(void **state)
{
    char *path = xstrdup("/tmp/vmove-test-daemon-conf.XXXXXX");
    int fd = mkstemp(path);
    assert_int_equal(write(fd, "name = h1\n\0x", 12), 12);
    close(fd);
    struct daemon_conf c = {0};
    char err[512], want[600];
    assert_int_equal(daemon_conf_load(path, true, &c, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: not a text file (NUL byte at offset 10)", path);
    assert_string_equal(err, want);
    daemon_conf_free(&c);
    unlink(path);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_key),
        cmocka_unit_test(test_empty_and_comments_only),
        cmocka_unit_test(test_bool_words),
        cmocka_unit_test(test_ipv6_listen),
        cmocka_unit_test(test_every_error_names_file_and_line),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_nul_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
