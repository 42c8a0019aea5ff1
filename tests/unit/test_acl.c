/* Unit tests for the ACL's policy (src/core/acl.c): rights and principals
 * parsed, grants direct and through groups, local root, the denial text,
 * and acl.json refused when malformed.  Each test loads an acl.json from a
 * temporary state directory into a minimal struct agent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/acl.h"
#include "core/agent.h"

struct fixture {
    char dir[64];
    char path[96];
    struct agent agent;
};

static int setup(void **state)
{
    static struct fixture f;
    memset(&f, 0, sizeof f);
    snprintf(f.dir, sizeof f.dir, "/tmp/vmove-test-acl.XXXXXX");
    if (!mkdtemp(f.dir))
        return -1;
    snprintf(f.path, sizeof f.path, "%s/acl.json", f.dir);
    f.agent.state_dir = f.dir;
    f.agent.name = "h2";
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    acl_free(&f->agent);
    unlink(f->path);
    rmdir(f->dir);
    return 0;
}

static int load(struct fixture *f, const char *text, char *err, size_t errlen)
{
    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    acl_free(&f->agent);
    err[0] = '\0';
    return acl_load(&f->agent, err, errlen);
}

static const char POLICY[] =
    "{\"version\": 1,"
    " \"grants\": {\"user:alice\": [\"vm.read\", \"migrate.out\"],"
    "              \"group:ops\": [\"vm.manage\", \"storage.move\"],"
    "              \"group:peers\": [\"migrate.in\"],"
    "              \"host:h9\": []},"
    " \"groups\": {\"ops\": [\"user:bob\", \"user:alice\"], \"peers\": [\"host:h1\", \"group:ops\"]}}";

static void test_rights(void **state)
{
    const char *names[] = {"vm.read", "vm.manage", "migrate.out", "migrate.in", "storage.move", "host.admin"};
    const unsigned bits[] = {RIGHT_VM_READ, RIGHT_VM_MANAGE, RIGHT_MIGRATE_OUT, RIGHT_MIGRATE_IN,
                             RIGHT_STORAGE_MOVE, RIGHT_HOST_ADMIN};
    unsigned all = 0;
    for (size_t i = 0; i < 6; i++) {
        unsigned r = 0;
        assert_int_equal(right_parse(names[i], &r), 0);
        assert_int_equal(r, bits[i]);
        assert_string_equal(right_name(bits[i]), names[i]);
        all |= r;
    }
    assert_int_equal(all, RIGHTS_ALL);
    unsigned r = 12345;
    assert_int_equal(right_parse("vm", &r), -1);
    assert_int_equal(right_parse("VM.READ", &r), -1);
    assert_int_equal(right_parse("", &r), -1);
    assert_int_equal(r, 12345);
    assert_string_equal(right_name(0), "?");
    assert_string_equal(right_name(RIGHT_VM_READ | RIGHT_VM_MANAGE), "?");
    assert_string_equal(right_name(1u << 6), "?");
}

static void test_principals(void **state)
{
    char kind[16], name[64];
    assert_int_equal(principal_parse("user:alice", kind, sizeof kind, name, sizeof name), 0);
    assert_string_equal(kind, "user");
    assert_string_equal(name, "alice");
    assert_int_equal(principal_parse("host:h1.example", kind, sizeof kind, name, sizeof name), 0);
    assert_string_equal(kind, "host");
    assert_string_equal(name, "h1.example");
    assert_int_equal(principal_parse("group:ops-team_2", kind, sizeof kind, name, sizeof name), 0);
    assert_string_equal(kind, "group");
    const char *bad[] = {"alice", "admin:alice", "user:", "user:bad name", "user:-x", ":alice", "User:alice",
                         "user:a:b",
                         "user:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};   /* 64 */
    /* A buffer that holds the whole name: a name is checked after it is
     * copied, so a buffer too short would truncate a long one to a valid name. */
    char big[128];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (principal_parse(bad[i], kind, sizeof kind, big, sizeof big) != -1)
            fail_msg("\"%s\" accepted", bad[i]);
    assert_int_equal(principal_parse("user:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", kind,
                                     sizeof kind, big, sizeof big), 0);   /* 63 */
    assert_int_equal(principal_parse(NULL, kind, sizeof kind, name, sizeof name), -1);
}

static void test_no_file_allows_nothing(void **state)
{
    struct fixture *f = *state;
    char err[256] = "";
    assert_int_equal(acl_load(&f->agent, err, sizeof err), 0);
    for (unsigned r = 1; r <= RIGHT_HOST_ADMIN; r <<= 1)
        assert_false(acl_allows(&f->agent, "user:root", r));
    assert_false(acl_in_group(&f->agent, "ops", "user:alice"));
}

static void test_direct_and_group_grants(void **state)
{
    struct fixture *f = *state;
    struct agent *a = &f->agent;
    char err[256];
    assert_int_equal(load(f, POLICY, err, sizeof err), 0);
    /* alice: her own rights and those of ops */
    assert_true(acl_allows(a, "user:alice", RIGHT_VM_READ));
    assert_true(acl_allows(a, "user:alice", RIGHT_MIGRATE_OUT));
    assert_true(acl_allows(a, "user:alice", RIGHT_VM_MANAGE));
    assert_true(acl_allows(a, "user:alice", RIGHT_STORAGE_MOVE));
    assert_false(acl_allows(a, "user:alice", RIGHT_MIGRATE_IN));
    assert_false(acl_allows(a, "user:alice", RIGHT_HOST_ADMIN));
    /* bob: only ops' */
    assert_true(acl_allows(a, "user:bob", RIGHT_VM_MANAGE));
    assert_false(acl_allows(a, "user:bob", RIGHT_VM_READ));
    assert_false(acl_allows(a, "user:bob", RIGHT_MIGRATE_OUT));
    /* a host through its group; a group inside a group is not expanded */
    assert_true(acl_allows(a, "host:h1", RIGHT_MIGRATE_IN));
    assert_false(acl_allows(a, "user:bob", RIGHT_MIGRATE_IN));
    /* an empty grant, an unknown principal, the same name of another kind */
    assert_false(acl_allows(a, "host:h9", RIGHT_VM_READ));
    assert_false(acl_allows(a, "user:carol", RIGHT_VM_READ));
    assert_false(acl_allows(a, "host:alice", RIGHT_VM_READ));
    /* one right at a time */
    assert_false(acl_allows(a, "user:alice", RIGHT_VM_READ | RIGHT_MIGRATE_OUT));

    assert_true(acl_in_group(a, "ops", "user:bob"));
    assert_true(acl_in_group(a, "peers", "host:h1"));
    assert_false(acl_in_group(a, "peers", "user:bob"));
    assert_false(acl_in_group(a, "nope", "user:bob"));
}

static void test_who(void **state)
{
    struct fixture *f = *state;
    char err[256];
    assert_int_equal(load(f, POLICY, err, sizeof err), 0);
    struct principal root = {PRINCIPAL_LOCAL_ROOT, "root"};
    struct principal alice = {PRINCIPAL_USER, "alice"};
    struct principal h1 = {PRINCIPAL_HOST, "h1"};
    struct principal remote_root = {PRINCIPAL_USER, "root"};
    for (unsigned r = 1; r <= RIGHT_HOST_ADMIN; r <<= 1)
        assert_true(acl_allows_who(&f->agent, &root, r));
    assert_false(acl_allows_who(&f->agent, &remote_root, RIGHT_VM_READ));
    assert_true(acl_allows_who(&f->agent, &alice, RIGHT_MIGRATE_OUT));
    assert_false(acl_allows_who(&f->agent, &alice, RIGHT_HOST_ADMIN));
    assert_true(acl_allows_who(&f->agent, &h1, RIGHT_MIGRATE_IN));
    assert_false(acl_allows_who(&f->agent, &h1, RIGHT_MIGRATE_OUT));
}

static void test_denial(void **state)
{
    struct fixture *f = *state;
    json_t *e = acl_denial(&f->agent, "user:alice", RIGHT_MIGRATE_IN);
    assert_string_equal(json_string_value(json_object_get(e, "code")), "permission_denied");
    assert_string_equal(json_string_value(json_object_get(e, "message")),
                        "permission denied: user:alice lacks migrate.in on host h2");
    assert_string_equal(json_string_value(json_object_get(e, "hint")),
                        "an admin of host h2 can grant it: vmove -H h2 acl grant user:alice migrate.in");
    json_decref(e);
}

static void expect_refused(struct fixture *f, const char *text, const char *want_suffix)
{
    char err[512], want[640];
    assert_int_equal(load(f, text, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s: %s", f->path, want_suffix);
    assert_string_equal(err, want);
}

static void test_malformed_refused(void **state)
{
    struct fixture *f = *state;
    expect_refused(f, "{\"version\": 1, \"grant\": {}}", "unknown field \"grant\"");
    expect_refused(f, "{\"grants\": {\"alice\": [\"vm.read\"]}}", "grants: bad principal \"alice\"");
    expect_refused(f, "{\"grants\": {\"user:alice\": \"vm.read\"}}", "grants: bad principal \"user:alice\"");
    expect_refused(f, "{\"grants\": {\"user:alice\": [\"vm.write\"]}}", "grants.user:alice: unknown right");
    expect_refused(f, "{\"grants\": {\"user:alice\": [1]}}", "grants.user:alice: unknown right");
    expect_refused(f, "{\"groups\": {\"bad name\": []}}", "groups: bad group \"bad name\"");
    expect_refused(f, "{\"groups\": {\"ops\": \"user:bob\"}}", "groups: bad group \"ops\"");
    expect_refused(f, "{\"grants\": {}, \"grants\": {}}", "duplicate object key near '\"grants\"'");
    char err[512];
    assert_int_equal(load(f, "[1, 2]", err, sizeof err), -1);
    assert_int_equal(load(f, "{", err, sizeof err), -1);
    assert_non_null(strstr(err, f->path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rights),
        cmocka_unit_test(test_principals),
        cmocka_unit_test_setup_teardown(test_no_file_allows_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_direct_and_group_grants, setup, teardown),
        cmocka_unit_test_setup_teardown(test_who, setup, teardown),
        cmocka_unit_test_setup_teardown(test_denial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
