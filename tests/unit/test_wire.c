/* Unit tests for the host-to-host migration messages (src/migrate/wire.c):
 * round trips, missing and mistyped fields, unknown fields, bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/proto.h"
#include "migrate/wire.h"

#include <stdlib.h>
#include <string.h>

/* JSON text in which ' stands for ". */
static json_t *parse(const char *text)
{
    char *s = strdup(text);
    for (char *p = s; *p; p++)
        if (*p == '\'')
            *p = '"';
    json_error_t e;
    json_t *j = json_loads(s, 0, &e);
    if (!j)
        fail_msg("bad test JSON %s: %s", s, e.text);
    free(s);
    return j;
}

static char *dump(const json_t *j) { return json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER); }

static void assert_json(json_t *j, const char *text)
{
    json_t *want = parse(text);
    char *a = dump(j), *b = dump(want);
    assert_string_equal(a, b);
    free(a);
    free(b);
    json_decref(want);
}

/* err is an invalid_argument error with exactly this message; consumed. */
static void assert_invalid(json_t *err, const char *message)
{
    assert_non_null(err);
    assert_string_equal(json_string_value(json_object_get(err, "code")), ERR_INVALID);
    assert_string_equal(json_string_value(json_object_get(err, "message")), message);
    json_decref(err);
}

typedef int (*parse_fn)(json_t *j, void *m, json_t **err);

/* Parsing text fails with message. */
static void expect_reject(parse_fn fn, void *m, const char *text, const char *message)
{
    json_t *j = parse(text), *err = NULL;
    assert_int_equal(fn(j, m, &err), -1);
    assert_invalid(err, message);
    json_decref(j);
}

/* Each parser behind one signature (no casts of function pointers). */
#define WRAP(msg)                                                                  \
    static int p_##msg(json_t *j, void *m, json_t **e) { return wire_##msg##_from_json(j, m, e); }
WRAP(prepare_req)
WRAP(prepare_reply)
WRAP(name_req)
WRAP(finish_reply)
WRAP(resolve_reply)
WRAP(reserve_req)
WRAP(reserve_reply)
WRAP(load_req)
WRAP(recover_reply)

/* ---- prepare ---- */

static void test_prepare_req_roundtrip(void **state)
{
    json_t *cfg = parse("{'name': 'web-1'}"), *tuning = parse("{'channels': 2}"), *storage = parse("{'dir': '/d'}");
    struct wire_prepare_req in = {cfg, tuning, "kvm", "10.0.0.1", 42, false, storage, "user:ann", true, WIRE_POSTCOPY_NO, 0};
    json_t *j = wire_prepare_req_to_json(&in);
    assert_json(j, "{'config': {'name': 'web-1'}, 'tuning': {'channels': 2}, 'accel': 'kvm', 'via': '10.0.0.1',"
                   " 'job': 42, 'quick': false, 'storage': {'dir': '/d'}, 'user': 'user:ann', 'insecure_ok': true}");
    struct wire_prepare_req out;
    json_t *err = NULL;
    assert_int_equal(wire_prepare_req_from_json(j, &out, &err), 0);
    assert_null(err);
    assert_true(json_equal(out.config, cfg));
    assert_true(json_equal(out.tuning, tuning));
    assert_true(json_equal(out.storage, storage));
    assert_string_equal(out.accel, "kvm");
    assert_string_equal(out.via, "10.0.0.1");
    assert_string_equal(out.user, "user:ann");
    assert_int_equal(out.job, 42);
    assert_false(out.quick);
    assert_true(out.insecure_ok);
    assert_int_equal(out.uptime_ms, 0);   /* not sent */
    json_decref(j);
    json_decref(cfg);
    json_decref(tuning);
    json_decref(storage);
}

/* The guest's uptime travels as a duration (the clocks need not agree). */
static void test_prepare_req_uptime(void **state)
{
    json_t *cfg = parse("{'name': 'up'}");
    struct wire_prepare_req in = {.config = cfg, .uptime_ms = 86400123};
    json_t *j = wire_prepare_req_to_json(&in), *err = NULL;
    struct wire_prepare_req out;
    assert_int_equal(wire_prepare_req_from_json(j, &out, &err), 0);
    assert_int_equal(out.uptime_ms, 86400123);
    json_decref(j);
    json_decref(cfg);
    struct wire_prepare_req m;
    expect_reject(p_prepare_req, &m, "{'config': {}, 'uptime_ms': -5}",
                  "parameter \"uptime_ms\" must be between 1 and 3153600000000, not -5");
    expect_reject(p_prepare_req, &m, "{'config': {}, 'uptime_ms': 1e3}", "parameter \"uptime_ms\" must be an integer");
    expect_reject(p_prepare_req, &m, "{'config': {}, 'uptime_ms': 4000000000000000}",
                  "parameter \"uptime_ms\" must be between 1 and 3153600000000, not 4000000000000000");
}

static void test_prepare_req_defaults(void **state)
{
    /* Only the config is required; null stands for absent (storage: null). */
    json_t *j = parse("{'config': {}, 'storage': null, 'future': [1]}"), *err = NULL;
    struct wire_prepare_req m;
    assert_int_equal(wire_prepare_req_from_json(j, &m, &err), 0);
    assert_null(m.storage);
    assert_null(m.tuning);
    assert_null(m.accel);
    assert_null(m.user);
    assert_int_equal(m.job, 0);
    assert_false(m.quick);
    assert_false(m.insecure_ok);
    json_decref(j);
}

static void test_prepare_req_rejects(void **state)
{
    struct wire_prepare_req m;
    parse_fn f = p_prepare_req;
    expect_reject(f, &m, "{}", "missing parameter \"config\"");
    expect_reject(f, &m, "{'config': 'x'}", "parameter \"config\" must be an object");
    expect_reject(f, &m, "{'config': {}, 'job': '1'}", "parameter \"job\" must be an integer");
    expect_reject(f, &m, "{'config': {}, 'quick': 1}", "parameter \"quick\" must be true or false");
    expect_reject(f, &m, "{'config': {}, 'accel': 3}", "parameter \"accel\" must be a string");
    expect_reject(f, &m, "{'config': {}, 'storage': []}", "parameter \"storage\" must be an object");
    expect_reject(f, &m, "{'config': {}, 'insecure_ok': 'yes'}", "parameter \"insecure_ok\" must be true or false");
    expect_reject(f, &m, "[]", "the message is not a JSON object");
    json_t *err = NULL;
    assert_int_equal(wire_prepare_req_from_json(NULL, &m, &err), -1);
    assert_invalid(err, "the message is not a JSON object");
}

/* Post-copy: asked for in the request, granted in the reply. */
static void test_prepare_postcopy(void **state)
{
    json_t *cfg = parse("{'name': 'pc'}");
    struct wire_prepare_req in = {.config = cfg, .postcopy = WIRE_POSTCOPY_REQUIRED};
    json_t *j = wire_prepare_req_to_json(&in), *err = NULL;
    assert_string_equal(json_string_value(json_object_get(j, "postcopy")), "required");
    struct wire_prepare_req out;
    assert_int_equal(wire_prepare_req_from_json(j, &out, &err), 0);
    assert_int_equal(out.postcopy, WIRE_POSTCOPY_REQUIRED);
    json_decref(j);
    in.postcopy = WIRE_POSTCOPY_OPTIONAL;
    j = wire_prepare_req_to_json(&in);
    assert_int_equal(wire_prepare_req_from_json(j, &out, &err), 0);
    assert_int_equal(out.postcopy, WIRE_POSTCOPY_OPTIONAL);
    json_decref(j);
    in.postcopy = WIRE_POSTCOPY_NO;   /* not sent at all: an older destination reads the same */
    j = wire_prepare_req_to_json(&in);
    assert_null(json_object_get(j, "postcopy"));
    json_decref(j);
    json_decref(cfg);
    parse_fn f = p_prepare_req;
    expect_reject(f, &out, "{'config': {}, 'postcopy': 'yes'}",
                  "parameter \"postcopy\" must be \"no\", \"optional\" or \"required\"");
    expect_reject(f, &out, "{'config': {}, 'postcopy': true}", "parameter \"postcopy\" must be a string");

    struct wire_prepare_reply rin = {.port = 2, .postcopy = true};
    strcpy(rin.ip, "10.0.0.2");
    strcpy(rin.host, "dst");
    j = wire_prepare_reply_to_json(&rin);
    assert_json(j, "{'ip': '10.0.0.2', 'port': 2, 'tls': false, 'host': 'dst', 'postcopy': true}");
    struct wire_prepare_reply rout;
    assert_int_equal(wire_prepare_reply_from_json(j, &rout, &err), 0);
    assert_true(rout.postcopy);
    json_decref(j);
    expect_reject(p_prepare_reply, &rout, "{'ip': 'x', 'port': 1, 'tls': true, 'host': 'h', 'postcopy': 1}",
                  "reply to migrate.prepare: field \"postcopy\" must be true or false");
}

static void test_recover_reply(void **state)
{
    struct wire_recover_reply in = {.port = 40001};
    strcpy(in.ip, "10.0.2.12");
    json_t *j = wire_recover_reply_to_json(&in), *err = NULL;
    assert_json(j, "{'ip': '10.0.2.12', 'port': 40001}");
    struct wire_recover_reply out;
    assert_int_equal(wire_recover_reply_from_json(j, &out, &err), 0);
    assert_string_equal(out.ip, "10.0.2.12");
    assert_int_equal(out.port, 40001);
    json_decref(j);
    parse_fn f = p_recover_reply;
    expect_reject(f, &out, "{'port': 1}", "reply to migrate.recover: missing field \"ip\"");
    expect_reject(f, &out, "{'ip': 'x', 'port': 0}", "reply to migrate.recover: field \"port\" must be between 1 and 65535, not 0");
    /* Nothing to recover: the destination has every page. */
    j = wire_recover_reply_to_json(&(struct wire_recover_reply){.loaded = true});
    assert_json(j, "{'loaded': true}");
    assert_int_equal(wire_recover_reply_from_json(j, &out, &err), 0);
    assert_true(out.loaded);
    json_decref(j);
    expect_reject(f, &out, "{'loaded': false}", "reply to migrate.recover: missing field \"ip\"");
    expect_reject(f, &out, "{'loaded': 'yes'}", "reply to migrate.recover: field \"loaded\" must be true or false");
}

static void test_prepare_reply_roundtrip(void **state)
{
    struct wire_prepare_reply in = {.port = 49152, .tls = true};
    strcpy(in.ip, "10.0.0.2");
    strcpy(in.host, "dst");
    json_t *j = wire_prepare_reply_to_json(&in);
    assert_json(j, "{'ip': '10.0.0.2', 'port': 49152, 'tls': true, 'host': 'dst'}");
    struct wire_prepare_reply out;
    json_t *err = NULL;
    assert_int_equal(wire_prepare_reply_from_json(j, &out, &err), 0);
    assert_string_equal(out.ip, "10.0.0.2");
    assert_string_equal(out.host, "dst");
    assert_int_equal(out.port, 49152);
    assert_true(out.tls);
    assert_int_equal(out.nbd_port, 0);
    assert_null(out.disks);
    assert_false(out.quick);
    wire_prepare_reply_clear(&out);
    json_decref(j);
}

static void test_prepare_reply_shared_nothing(void **state)
{
    json_t *disks = parse("['/d/root.qcow2']");
    struct wire_prepare_reply in = {.port = 1, .tls = false, .nbd_port = 65535, .disks = disks};
    strcpy(in.ip, "10.0.0.2");
    strcpy(in.host, "dst");
    json_t *j = wire_prepare_reply_to_json(&in);
    assert_json(j, "{'ip': '10.0.0.2', 'port': 1, 'tls': false, 'host': 'dst', 'nbd_port': 65535,"
                   " 'disks': ['/d/root.qcow2']}");
    struct wire_prepare_reply out;
    json_t *err = NULL;
    assert_int_equal(wire_prepare_reply_from_json(j, &out, &err), 0);
    assert_int_equal(out.nbd_port, 65535);
    assert_true(json_equal(out.disks, disks));
    json_decref(j);          /* the parsed reply keeps its own reference */
    assert_string_equal(json_string_value(json_array_get(out.disks, 0)), "/d/root.qcow2");
    wire_prepare_reply_clear(&out);
    assert_null(out.disks);
    json_decref(disks);
}

static void test_prepare_reply_quick(void **state)
{
    struct wire_prepare_reply in = {.quick = true};
    json_t *j = wire_prepare_reply_to_json(&in);
    assert_json(j, "{'quick': true}");
    struct wire_prepare_reply out;
    json_t *err = NULL;
    assert_int_equal(wire_prepare_reply_from_json(j, &out, &err), 0);
    assert_true(out.quick);
    json_decref(j);
}

static void test_prepare_reply_rejects(void **state)
{
    struct wire_prepare_reply m;
    parse_fn f = p_prepare_reply;
    expect_reject(f, &m, "{'port': 5, 'tls': true, 'host': 'h'}", "reply to migrate.prepare: missing field \"ip\"");
    expect_reject(f, &m, "{'ip': 1, 'port': 5, 'tls': true, 'host': 'h'}",
                  "reply to migrate.prepare: field \"ip\" must be a string");
    expect_reject(f, &m, "{'ip': 'a', 'tls': true, 'host': 'h'}", "reply to migrate.prepare: missing field \"port\"");
    expect_reject(f, &m, "{'ip': 'a', 'port': '5', 'tls': true, 'host': 'h'}",
                  "reply to migrate.prepare: field \"port\" must be an integer");
    expect_reject(f, &m, "{'ip': 'a', 'port': 0, 'tls': true, 'host': 'h'}",
                  "reply to migrate.prepare: field \"port\" must be between 1 and 65535, not 0");
    expect_reject(f, &m, "{'ip': 'a', 'port': -1, 'tls': true, 'host': 'h'}",
                  "reply to migrate.prepare: field \"port\" must be between 1 and 65535, not -1");
    expect_reject(f, &m, "{'ip': 'a', 'port': 65536, 'tls': true, 'host': 'h'}",
                  "reply to migrate.prepare: field \"port\" must be between 1 and 65535, not 65536");
    expect_reject(f, &m, "{'ip': 'a', 'port': 5, 'host': 'h'}", "reply to migrate.prepare: missing field \"tls\"");
    expect_reject(f, &m, "{'ip': 'a', 'port': 5, 'tls': 'yes', 'host': 'h'}",
                  "reply to migrate.prepare: field \"tls\" must be true or false");
    expect_reject(f, &m, "{'ip': 'a', 'port': 5, 'tls': true}", "reply to migrate.prepare: missing field \"host\"");
    expect_reject(f, &m, "{'ip': 'a', 'port': 5, 'tls': true, 'host': 'h', 'nbd_port': 70000}",
                  "reply to migrate.prepare: field \"nbd_port\" must be between 1 and 65535, not 70000");
    expect_reject(f, &m, "{'ip': 'a', 'port': 5, 'tls': true, 'host': 'h', 'disks': ['a', 2]}",
                  "reply to migrate.prepare: field \"disks\" must be an array of strings");
    expect_reject(f, &m, "{'ip': 'a', 'port': 5, 'tls': true, 'host': 'h', 'disks': 'a'}",
                  "reply to migrate.prepare: field \"disks\" must be an array of strings");
    expect_reject(f, &m, "{'quick': 'yes'}", "reply to migrate.prepare: field \"quick\" must be true or false");
    char text[200];
    snprintf(text, sizeof text, "{'ip': '%0*d', 'port': 5, 'tls': true, 'host': 'h'}", WIRE_IP_MAX, 0);
    expect_reject(f, &m, text, "reply to migrate.prepare: field \"ip\" is longer than 63 characters");
    /* Unknown fields are a newer peer's: ignored. */
    json_t *j = parse("{'ip': 'a', 'port': 5, 'tls': true, 'host': 'h', 'new': {'x': 1}}"), *err = NULL;
    assert_int_equal(wire_prepare_reply_from_json(j, &m, &err), 0);
    json_decref(j);
}

/* ---- finish, resolve ---- */

static void test_name_req(void **state)
{
    struct wire_name_req m;
    json_t *j = parse("{'name': 'web-1', 'extra': 1}"), *err = NULL;
    assert_int_equal(wire_name_req_from_json(j, &m, &err), 0);
    assert_string_equal(m.name, "web-1");
    json_decref(j);
    parse_fn f = p_name_req;
    /* The api_param_str texts, word for word. */
    expect_reject(f, &m, "{}", "missing parameter \"name\"");
    expect_reject(f, &m, "{'name': null}", "missing parameter \"name\"");
    expect_reject(f, &m, "{'name': 7}", "parameter \"name\" must be a string");
}

static void test_finish_reply(void **state)
{
    struct wire_finish_reply in = {0}, out;
    strcpy(in.host, "dst");
    json_t *j = wire_finish_reply_to_json(&in), *err = NULL;
    assert_json(j, "{'state': 'running', 'host': 'dst'}");
    assert_int_equal(wire_finish_reply_from_json(j, &out, &err), 0);
    assert_string_equal(out.host, "dst");
    assert_false(out.has_timeline);          /* an older destination: no timeline */
    json_decref(j);
    /* The destination's switch-over timeline, ms from its receipt of the request. */
    in = (struct wire_finish_reply){.has_timeline = true, .loaded_ms = -3, .committed_ms = 1, .resumed_ms = 9,
                                    .announced_ms = 10, .answered_ms = 11};
    strcpy(in.host, "dst");
    j = wire_finish_reply_to_json(&in);
    assert_json(j, "{'state': 'running', 'host': 'dst', 'loaded_ms': -3, 'committed_ms': 1, 'resumed_ms': 9, "
                   "'announced_ms': 10, 'answered_ms': 11}");
    assert_int_equal(wire_finish_reply_from_json(j, &out, &err), 0);
    assert_true(out.has_timeline);
    assert_int_equal(out.loaded_ms, -3);
    assert_int_equal(out.resumed_ms, 9);
    assert_int_equal(out.answered_ms, 11);
    json_decref(j);
    parse_fn f = p_finish_reply;
    expect_reject(f, &out, "{'host': 'dst'}", "reply to migrate.finish: missing field \"state\"");
    expect_reject(f, &out, "{'state': 'paused', 'host': 'dst'}",
                  "reply to migrate.finish: field \"state\" must be \"running\", not \"paused\"");
    expect_reject(f, &out, "{'state': 'running', 'host': true}", "reply to migrate.finish: field \"host\" must be a string");
    expect_reject(f, &out, "{'state': 'running', 'host': 'd', 'answered_ms': 5}",
                  "reply to migrate.finish: missing field \"loaded_ms\"");
    expect_reject(f, &out,
                  "{'state': 'running', 'host': 'd', 'answered_ms': -1, 'loaded_ms': 0, 'committed_ms': 0, "
                  "'resumed_ms': 0, 'announced_ms': 0}",
                  "reply to migrate.finish: field \"answered_ms\" must be between 0 and 600000, not -1");
}

static void test_resolve_reply(void **state)
{
    const char *names[] = {"absent", "committed", "aborted"};
    for (int s = WIRE_RESOLVE_ABSENT; s <= WIRE_RESOLVE_ABORTED; s++) {
        struct wire_resolve_reply in = {.state = (enum wire_resolve_state)s}, out;
        strcpy(in.host, "dst");
        json_t *j = wire_resolve_reply_to_json(&in), *err = NULL;
        assert_string_equal(json_string_value(json_object_get(j, "state")), names[s]);
        assert_int_equal(wire_resolve_reply_from_json(j, &out, &err), 0);
        assert_int_equal(out.state, s);
        assert_string_equal(out.host, "dst");
        json_decref(j);
    }
    struct wire_resolve_reply m;
    parse_fn f = p_resolve_reply;
    expect_reject(f, &m, "{'state': 'gone', 'host': 'dst'}",
                  "reply to migrate.resolve: field \"state\" must be absent, committed or aborted, not \"gone\"");
    expect_reject(f, &m, "{'state': 1, 'host': 'dst'}", "reply to migrate.resolve: field \"state\" must be a string");
    expect_reject(f, &m, "{'state': 'absent'}", "reply to migrate.resolve: missing field \"host\"");
}

/* ---- reserve ---- */

static void test_reserve_req(void **state)
{
    struct wire_reserve_req in = {7, "web-1", "user:ann"}, out;
    json_t *j = wire_reserve_req_to_json(&in), *err = NULL;
    assert_json(j, "{'job': 7, 'vm': 'web-1', 'user': 'user:ann'}");
    assert_int_equal(wire_reserve_req_from_json(j, &out, &err), 0);
    assert_int_equal(out.job, 7);
    assert_string_equal(out.vm, "web-1");
    assert_string_equal(out.user, "user:ann");
    json_decref(j);
    j = parse("{}");
    assert_int_equal(wire_reserve_req_from_json(j, &out, &err), 0);
    assert_int_equal(out.job, -1);   /* api_param_int's default, as before */
    assert_null(out.vm);
    json_decref(j);
    expect_reject(p_reserve_req, &out, "{'job': 1.5}", "parameter \"job\" must be an integer");
}

static void test_reserve_reply(void **state)
{
    struct wire_reserve_reply in = {.granted = false, .position = 3, .in_use = 2, .max = 2}, out;
    strcpy(in.host, "dst");
    json_t *j = wire_reserve_reply_to_json(&in), *err = NULL;
    assert_json(j, "{'granted': false, 'position': 3, 'in_use': 2, 'max': 2, 'host': 'dst'}");
    assert_int_equal(wire_reserve_reply_from_json(j, &out, &err), 0);
    assert_false(out.granted);
    assert_int_equal(out.position, 3);
    assert_int_equal(out.in_use, 2);
    assert_int_equal(out.max, 2);
    assert_string_equal(out.host, "dst");
    json_decref(j);
    parse_fn f = p_reserve_reply;
    expect_reject(f, &out, "{'position': 1, 'host': 'h'}", "reply to migrate.reserve: missing field \"granted\"");
    expect_reject(f, &out, "{'granted': true, 'position': 0, 'host': 'h'}",
                  "reply to migrate.reserve: field \"position\" must be between 1 and 2147483647, not 0");
    expect_reject(f, &out, "{'granted': true, 'position': 1, 'in_use': -1, 'host': 'h'}",
                  "reply to migrate.reserve: field \"in_use\" must be between 0 and 2147483647, not -1");
    expect_reject(f, &out, "{'granted': true, 'position': 1}", "reply to migrate.reserve: missing field \"host\"");
}

/* ---- load ---- */

static void test_load_req(void **state)
{
    struct wire_load_req in = {"web-1", "/shared/.vmove-web-1-3.state"}, out;
    json_t *j = wire_load_req_to_json(&in), *err = NULL;
    assert_json(j, "{'name': 'web-1', 'path': '/shared/.vmove-web-1-3.state'}");
    assert_int_equal(wire_load_req_from_json(j, &out, &err), 0);
    assert_string_equal(out.name, "web-1");
    assert_string_equal(out.path, "/shared/.vmove-web-1-3.state");
    json_decref(j);
    parse_fn f = p_load_req;
    /* name is checked before path, as the handler always did. */
    expect_reject(f, &out, "{}", "missing parameter \"name\"");
    expect_reject(f, &out, "{'name': 'web-1'}", "missing parameter \"path\"");
    expect_reject(f, &out, "{'name': 'web-1', 'path': []}", "parameter \"path\" must be a string");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prepare_postcopy), cmocka_unit_test(test_recover_reply),
        cmocka_unit_test(test_prepare_req_roundtrip),   cmocka_unit_test(test_prepare_req_defaults),
        cmocka_unit_test(test_prepare_req_uptime),
        cmocka_unit_test(test_prepare_req_rejects),     cmocka_unit_test(test_prepare_reply_roundtrip),
        cmocka_unit_test(test_prepare_reply_shared_nothing), cmocka_unit_test(test_prepare_reply_quick),
        cmocka_unit_test(test_prepare_reply_rejects),   cmocka_unit_test(test_name_req),
        cmocka_unit_test(test_finish_reply),            cmocka_unit_test(test_resolve_reply),
        cmocka_unit_test(test_reserve_req),             cmocka_unit_test(test_reserve_reply),
        cmocka_unit_test(test_load_req),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
