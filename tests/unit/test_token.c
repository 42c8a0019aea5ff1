/* Delegation token payload checks: every field present, a nonce, a bounded
 * lifetime, no future issue time, not expired, and presented by its relay. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/token.h"

#define NOW 1800000000LL

static json_t *good(void)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "op", "migrate", "vm", "web", "src", "h2",
                     "dst", "h3", "via", "h1", "user", "alice", "nonce", "abcdefghijklmnopqrstuv", "iat",
                     (json_int_t)NOW, "exp", (json_int_t)(NOW + TOKEN_LIFETIME_S));
}

static void expect_refused(json_t *p, const char *presented_by, long long now, const char *why)
{
    char err[256] = "";
    assert_int_equal(token_check_payload(p, "alice", presented_by, now, err, sizeof err), -1);
    if (!strstr(err, why))
        fail_msg("expected \"%s\" in \"%s\"", why, err);
    json_decref(p);
}

static void test_good_token(void **state)
{
    (void)state;
    char err[256] = "";
    json_t *p = good();
    assert_int_equal(token_check_payload(p, "alice", "h1", NOW + 10, err, sizeof err), 0);
    /* Clock skew: issued a little in the future is fine. */
    assert_int_equal(token_check_payload(p, "alice", "h1", NOW - TOKEN_CLOCK_SKEW_S, err, sizeof err), 0);
    json_decref(p);
}

static void test_missing_fields(void **state)
{
    (void)state;
    const char *fields[] = {"op", "vm", "src", "dst", "via", "user", "nonce"};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        json_t *p = good();
        json_object_del(p, fields[i]);
        char why[64];
        snprintf(why, sizeof why, "has no \"%s\"", fields[i]);
        expect_refused(p, "h1", NOW, why);
    }
    json_t *p = good();
    json_object_set_new(p, "nonce", json_integer(7));   /* mistyped */
    expect_refused(p, "h1", NOW, "has no \"nonce\"");
    p = good();
    json_object_del(p, "iat");
    expect_refused(p, "h1", NOW, "no issue time");
    p = good();
    json_object_set_new(p, "exp", json_string("soon"));
    expect_refused(p, "h1", NOW, "no issue time or expiry");
}

static void test_nonce_length(void **state)
{
    (void)state;
    json_t *p = good();
    json_object_set_new(p, "nonce", json_string("short"));
    expect_refused(p, "h1", NOW, "nonce is too short");
}

static void test_lifetime_and_times(void **state)
{
    (void)state;
    json_t *p = good();
    json_object_set_new(p, "exp", json_integer(NOW + 10LL * 365 * 86400));
    expect_refused(p, "h1", NOW, "over the 300 s allowed");
    p = good();
    json_object_set_new(p, "exp", json_integer(NOW - 1));   /* before its issue */
    expect_refused(p, "h1", NOW, "lifetime");
    expect_refused(good(), "h1", NOW - TOKEN_CLOCK_SKEW_S - 5, "in the future");
    expect_refused(good(), "h1", NOW + TOKEN_LIFETIME_S + 1, "expired 1 s ago");
}

static void test_signer_and_relay(void **state)
{
    (void)state;
    char err[256];
    json_t *p = good();
    assert_int_equal(token_check_payload(p, "mallory", "h1", NOW, err, sizeof err), -1);
    assert_non_null(strstr(err, "other than its signer"));
    json_decref(p);
    expect_refused(good(), "h2", NOW, "may be presented by host h1, not by h2");
    expect_refused(good(), NULL, NOW, "not by ?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_token),     cmocka_unit_test(test_missing_fields),
        cmocka_unit_test(test_nonce_length),   cmocka_unit_test(test_lifetime_and_times),
        cmocka_unit_test(test_signer_and_relay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
