/* The etcd v3 JSON gateway's encoding, as etcd 3.4 speaks it: base64 keys
 * and values, int64s as strings, zero values left out, prefix range ends,
 * and the URL lists a user types. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cluster/etcd.h"

static void test_base64_round_trip(void **state)
{
    (void)state;
    static const char *const texts[] = {"", "a", "ab", "abc", "/vmove/v1/c1/owners/", "{\"host\":\"h1\"}"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        char *b = etcd_b64(texts[i]);
        char *back = etcd_unb64(b);
        assert_non_null(back);
        assert_string_equal(back, texts[i]);
        free(b);
        free(back);
    }
    char *b = etcd_b64("/hosts/h1");
    assert_string_equal(b, "L2hvc3RzL2gx");      /* as etcd's own answers spell it */
    free(b);
    assert_null(etcd_unb64("abc"));              /* not a multiple of 4 */
    assert_null(etcd_unb64("!!!!"));
    assert_null(etcd_unb64("AA=="));             /* a NUL byte: no vmove key or value */
}

static void test_prefix_end(void **state)
{
    (void)state;
    char *end = etcd_prefix_end_b64("/p/vms/");
    char *text = etcd_unb64(end);
    assert_string_equal(text, "/p/vms0");
    free(end);
    free(text);
}

static void test_int64_as_strings_and_absent_zeros(void **state)
{
    (void)state;
    json_t *j = json_loads("{\"header\":{\"revision\":\"9007199254740993\"},\"TTL\":\"3\"}", 0, NULL);
    assert_true(etcd_revision(j) == 9007199254740993LL);   /* beyond a double's precision */
    assert_int_equal(etcd_int(json_object_get(j, "TTL")), 3);
    assert_int_equal(etcd_int(json_object_get(j, "ID")), 0);  /* absent: an expired lease */
    assert_false(etcd_txn_succeeded(j));                      /* "succeeded" absent: failed */
    json_decref(j);
}

static void test_kvs(void **state)
{
    (void)state;
    /* key /a = "x" (lease 7); a key that is not text is skipped; value absent = "". */
    json_t *j = json_loads("{\"kvs\":[{\"key\":\"L2E=\",\"value\":\"eA==\",\"create_revision\":\"3\","
                           "\"mod_revision\":\"5\",\"version\":\"2\",\"lease\":\"7\"},"
                           "{\"key\":\"AA==\",\"value\":\"eA==\"},{\"key\":\"L2I=\"}],\"count\":\"3\"}",
                           0, NULL);
    struct etcd_kv *kvs;
    size_t n = etcd_kvs(j, &kvs);
    assert_int_equal(n, 2);
    assert_string_equal(kvs[0].key, "/a");
    assert_string_equal(kvs[0].value, "x");
    assert_int_equal(kvs[0].create_rev, 3);
    assert_int_equal(kvs[0].mod_rev, 5);
    assert_int_equal(kvs[0].lease, 7);
    assert_string_equal(kvs[1].key, "/b");
    assert_string_equal(kvs[1].value, "");
    etcd_kvs_free(kvs, n);
    json_decref(j);
    json_t *none = json_object();
    n = etcd_kvs(none, &kvs);            /* no match: "kvs" left out */
    assert_int_equal(n, 0);
    etcd_kvs_free(kvs, n);
    json_decref(none);
}

static void test_txn_parts(void **state)
{
    (void)state;
    json_t *c = etcd_cmp("/alive/h1", "LEASE", "NOT_EQUAL", 42);
    assert_string_equal(json_string_value(json_object_get(c, "lease")), "42");
    assert_string_equal(json_string_value(json_object_get(c, "result")), "NOT_EQUAL");
    json_decref(c);
    c = etcd_cmp("/o", "MOD", "EQUAL", 5);
    assert_string_equal(json_string_value(json_object_get(c, "mod_revision")), "5");
    json_decref(c);
    json_t *p = etcd_op_put("/k", "v", 0);
    assert_null(json_object_get(json_object_get(p, "request_put"), "lease"));  /* no lease: omitted */
    json_decref(p);
}

static void test_url_lists(void **state)
{
    (void)state;
    char **urls, err[256];
    size_t n;
    assert_int_equal(etcd_urls_parse("https://10.0.0.1:2379,https://10.0.0.2:2379/", &urls, &n, err, sizeof err), 0);
    assert_int_equal(n, 2);
    etcd_urls_free(urls, n);
    static const char *const bad[] = {"", "10.0.0.1:2379", "https://10.0.0.1", "https://:2379",
                                      "https://h:0", "https://h:70000", "ftp://h:1", "https://h:1/v3"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        assert_int_equal(etcd_urls_parse(bad[i], &urls, &n, err, sizeof err), -1);
        assert_true(err[0] != 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64_round_trip), cmocka_unit_test(test_prefix_end),
        cmocka_unit_test(test_int64_as_strings_and_absent_zeros), cmocka_unit_test(test_kvs),
        cmocka_unit_test(test_txn_parts), cmocka_unit_test(test_url_lists),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
