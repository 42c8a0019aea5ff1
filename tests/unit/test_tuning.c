/* Unit tests for the migration tuning (src/migrate/tuning.c): the defaults,
 * every field read from the API's JSON, the values refused (with the text
 * the user sees), the round trip to the destination, and what QEMU is asked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "migrate/tuning.h"

static void assert_defaults(const struct migrate_tuning *t)
{
    assert_int_equal(t->downtime_ms, 50);
    assert_int_equal(t->max_downtime_ms, 500);
    assert_int_equal(t->max_duration_s, 600);
    assert_int_equal(t->channels, 4);
    assert_string_equal(t->compress, "auto");
    assert_int_equal(t->bandwidth, 0);
    assert_int_equal(t->converge, CONVERGE_AUTO);
    assert_false(t->quick);
    assert_string_equal(t->state_dir, "");
    assert_string_equal(t->with_storage, "");
    assert_false(t->keep_source);
}

/* Parses text as the tuning object; returns tuning_from_json's result. */
static int parse(const char *text, struct migrate_tuning *t, char *err, size_t errlen)
{
    json_error_t je;
    json_t *j = json_loads(text, 0, &je);
    assert_non_null(j);
    err[0] = '\0';
    int rc = tuning_from_json(j, t, err, errlen);
    json_decref(j);
    return rc;
}

static void expect_refused(const char *text, const char *msg)
{
    struct migrate_tuning t;
    char err[256];
    assert_int_equal(parse(text, &t, err, sizeof err), -1);
    assert_string_equal(err, msg);
}

static void test_defaults(void **state)
{
    struct migrate_tuning t;
    memset(&t, 0x5a, sizeof t);
    tuning_defaults(&t);
    assert_defaults(&t);
    char err[64] = "";
    memset(&t, 0x5a, sizeof t);
    assert_int_equal(tuning_from_json(NULL, &t, err, sizeof err), 0);
    assert_defaults(&t);
    assert_int_equal(parse("{}", &t, err, sizeof err), 0);
    assert_defaults(&t);
    /* null means "not given" */
    assert_int_equal(parse("{\"downtime_ms\": null, \"bandwidth\": null, \"channels\": null}", &t, err, sizeof err), 0);
    assert_defaults(&t);
    assert_string_equal(err, "");
}

static void test_every_field(void **state)
{
    struct migrate_tuning t;
    char err[256];
    assert_int_equal(parse("{\"downtime_ms\": 80, \"max_downtime_ms\": 900, \"max_duration_s\": 120,"
                           " \"channels\": 8, \"compress\": \"zstd\", \"bandwidth\": 1000000,"
                           " \"converge\": \"downtime\", \"keep_source\": true,"
                           " \"with_storage\": \"/var/lib/vmove/disks\"}", &t, err, sizeof err), 0);
    assert_int_equal(t.downtime_ms, 80);
    assert_int_equal(t.max_downtime_ms, 900);
    assert_int_equal(t.max_duration_s, 120);
    assert_int_equal(t.channels, 8);
    assert_string_equal(t.compress, "zstd");
    assert_int_equal(t.bandwidth, 1000000);
    assert_int_equal(t.converge, CONVERGE_DOWNTIME);
    assert_true(t.keep_source);
    assert_string_equal(t.with_storage, "/var/lib/vmove/disks");
    assert_false(t.quick);

    const char *modes[] = {"auto", "throttle", "downtime", "cancel"};
    const enum converge_policy want[] = {CONVERGE_AUTO, CONVERGE_THROTTLE, CONVERGE_DOWNTIME, CONVERGE_CANCEL};
    for (size_t i = 0; i < 4; i++) {
        char text[64];
        snprintf(text, sizeof text, "{\"converge\": \"%s\"}", modes[i]);
        assert_int_equal(parse(text, &t, err, sizeof err), 0);
        assert_int_equal(t.converge, want[i]);
        assert_string_equal(converge_policy_name(want[i]), modes[i]);
    }
    assert_int_equal(parse("{\"compress\": \"zlib\"}", &t, err, sizeof err), 0);
    assert_string_equal(t.compress, "zlib");
    assert_int_equal(parse("{\"compress\": \"none\", \"channels\": 1}", &t, err, sizeof err), 0);
    assert_string_equal(t.compress, "none");
}

static void test_quick(void **state)
{
    struct migrate_tuning t;
    char err[256];
    assert_int_equal(parse("{\"quick\": true, \"state_dir\": \"/srv/state\", \"channels\": 8}", &t, err, sizeof err),
                     0);
    assert_true(t.quick);
    assert_string_equal(t.state_dir, "/srv/state");
    /* mapped-ram: the channels asked for write the state file in parallel,
     * uncompressed whatever was asked. */
    assert_int_equal(t.channels, 8);
    assert_string_equal(t.compress, "none");
    struct qmon_cap_state caps[TUNING_N_CAPS];
    size_t n = tuning_qmon_capabilities(&t, caps);
    bool mapped = false, multifd = false;
    for (size_t i = 0; i < n; i++) {
        mapped |= caps[i].cap == QMON_CAP_MAPPED_RAM && caps[i].on;
        multifd |= caps[i].cap == QMON_CAP_MULTIFD && caps[i].on;
    }
    assert_true(mapped && multifd);
    /* Even a compression asked for explicitly. */
    assert_int_equal(parse("{\"quick\": true, \"compress\": \"zstd\"}", &t, err, sizeof err), 0);
    assert_string_equal(t.compress, "none");
}

/* auto compression needs multifd: with one channel it means none. */
static void test_compress_auto_single_stream(void **state)
{
    struct migrate_tuning t;
    char err[256];
    assert_int_equal(parse("{\"channels\": 1}", &t, err, sizeof err), 0);
    assert_string_equal(t.compress, "none");
    assert_int_equal(parse("{\"channels\": 2}", &t, err, sizeof err), 0);
    assert_string_equal(t.compress, "auto");
}

/* A max-downtime below the target is raised to it, not refused. */
static void test_max_downtime_at_least_target(void **state)
{
    struct migrate_tuning t;
    char err[256];
    assert_int_equal(parse("{\"downtime_ms\": 300, \"max_downtime_ms\": 100}", &t, err, sizeof err), 0);
    assert_int_equal(t.max_downtime_ms, 300);
    assert_int_equal(parse("{\"downtime_ms\": 1000}", &t, err, sizeof err), 0);
    assert_int_equal(t.max_downtime_ms, 1000);
}

static void test_bounds(void **state)
{
    struct migrate_tuning t;
    char err[256];
    assert_int_equal(parse("{\"downtime_ms\": 1, \"max_duration_s\": 86400, \"channels\": 64,"
                           " \"max_downtime_ms\": 600000}", &t, err, sizeof err), 0);
    assert_int_equal(t.downtime_ms, 1);
    assert_int_equal(t.max_duration_s, 86400);
    assert_int_equal(t.channels, 64);
    assert_int_equal(t.max_downtime_ms, 600000);
    expect_refused("{\"downtime_ms\": 0}", "downtime_ms must be an integer from 1 to 60000");
    expect_refused("{\"downtime_ms\": 60001}", "downtime_ms must be an integer from 1 to 60000");
    expect_refused("{\"downtime_ms\": \"50\"}", "downtime_ms must be an integer from 1 to 60000");
    expect_refused("{\"downtime_ms\": 1.5}", "downtime_ms must be an integer from 1 to 60000");
    expect_refused("{\"max_downtime_ms\": 600001}", "max_downtime_ms must be an integer from 1 to 600000");
    expect_refused("{\"max_duration_s\": 0}", "max_duration_s must be an integer from 1 to 86400");
    expect_refused("{\"max_duration_s\": 86401}", "max_duration_s must be an integer from 1 to 86400");
    expect_refused("{\"channels\": 65}", "channels must be an integer from 1 to 64");
    expect_refused("{\"channels\": -1}", "channels must be an integer from 1 to 64");
}

static void test_bad_values(void **state)
{
    expect_refused("{\"bandwidth\": -1}", "bandwidth must be a number of bytes per second (0 = unlimited)");
    expect_refused("{\"bandwidth\": \"1G\"}", "bandwidth must be a number of bytes per second (0 = unlimited)");
    expect_refused("{\"compress\": \"lz4\"}", "compress must be auto, none, zstd or zlib");
    expect_refused("{\"converge\": \"fast\"}", "converge must be auto, throttle, downtime, cancel or postcopy");
    expect_refused("{\"converge\": \"\"}", "converge must be auto, throttle, downtime, cancel or postcopy");
    expect_refused("{\"state_dir\": \"relative/dir\"}", "state_dir must be an absolute path");
    expect_refused("{\"with_storage\": \"disks\"}", "--with-storage needs an absolute directory on the destination");
    expect_refused("{\"quick\": true, \"with_storage\": \"/d\"}", "--quick and --with-storage do not go together");
    expect_refused("{\"compress\": \"zstd\", \"channels\": 1}", "compression needs multifd: use --parallel 2 or more");
}

static void test_too_long_paths(void **state)
{
    char text[600], path[300];
    memset(path, 'a', sizeof path);
    path[0] = '/';
    path[sizeof path - 1] = '\0';
    snprintf(text, sizeof text, "{\"state_dir\": \"%s\"}", path);
    expect_refused(text, "state_dir must be an absolute path");
    snprintf(text, sizeof text, "{\"with_storage\": \"%s\"}", path);
    expect_refused(text, "--with-storage needs an absolute directory on the destination");
}

/* The source sends its tuning to the destination: what goes out reads
 * back the same. */
static void test_round_trip(void **state)
{
    struct migrate_tuning t, back;
    char err[256];
    assert_int_equal(parse("{\"downtime_ms\": 70, \"max_downtime_ms\": 700, \"max_duration_s\": 77,"
                           " \"channels\": 3, \"compress\": \"zlib\", \"bandwidth\": 12345,"
                           " \"converge\": \"cancel\", \"with_storage\": \"/x\", \"keep_source\": true}",
                           &t, err, sizeof err), 0);
    json_t *j = tuning_to_json(&t);
    assert_int_equal(tuning_from_json(j, &back, err, sizeof err), 0);
    assert_memory_equal(&t, &back, sizeof t);
    assert_null(json_object_get(j, "quick"));
    json_decref(j);

    assert_int_equal(parse("{\"quick\": true, \"state_dir\": \"/s\"}", &t, err, sizeof err), 0);
    j = tuning_to_json(&t);
    assert_true(json_is_true(json_object_get(j, "quick")));
    assert_string_equal(json_string_value(json_object_get(j, "state_dir")), "/s");
    assert_null(json_object_get(j, "with_storage"));
    assert_null(json_object_get(j, "keep_source"));
    assert_int_equal(tuning_from_json(j, &back, err, sizeof err), 0);
    assert_memory_equal(&t, &back, sizeof t);
    json_decref(j);
}

static bool cap_state(json_t *caps, const char *name)
{
    json_t *list = json_object_get(caps, "capabilities"), *c;
    size_t i;
    json_array_foreach(list, i, c)
        if (!strcmp(json_string_value(json_object_get(c, "capability")), name))
            return json_is_true(json_object_get(c, "state"));
    fail_msg("capability %s not in the list", name);
    return false;
}

static void test_qemu_arguments(void **state)
{
    struct migrate_tuning t;
    tuning_defaults(&t);
    json_t *caps = tuning_qemu_capabilities(&t);
    assert_true(cap_state(caps, "events"));
    assert_true(cap_state(caps, "multifd"));
    assert_true(cap_state(caps, "auto-converge"));
    json_decref(caps);
    json_t *p = tuning_qemu_parameters(&t);
    /* Unlimited is 1 TiB/s: QEMU's own default caps at 128 MiB/s. */
    assert_int_equal(json_integer_value(json_object_get(p, "max-bandwidth")), 1LL << 40);
    assert_int_equal(json_integer_value(json_object_get(p, "downtime-limit")), 50);
    assert_int_equal(json_integer_value(json_object_get(p, "multifd-channels")), 4);
    assert_string_equal(json_string_value(json_object_get(p, "multifd-compression")), "none");   /* auto: none */
    json_decref(p);

    t.channels = 1;
    t.bandwidth = 5000;
    t.converge = CONVERGE_CANCEL;
    caps = tuning_qemu_capabilities(&t);
    assert_false(cap_state(caps, "multifd"));
    assert_false(cap_state(caps, "auto-converge"));
    json_decref(caps);
    p = tuning_qemu_parameters(&t);
    assert_int_equal(json_integer_value(json_object_get(p, "max-bandwidth")), 5000);
    assert_null(json_object_get(p, "multifd-channels"));
    assert_null(json_object_get(p, "multifd-compression"));
    json_decref(p);

    t.channels = 2;
    snprintf(t.compress, sizeof t.compress, "zstd");
    p = tuning_qemu_parameters(&t);
    assert_string_equal(json_string_value(json_object_get(p, "multifd-compression")), "zstd");
    json_decref(p);
}

/* The typed forms (sent through qmon_*) say what the JSON forms say. */
static void check_typed_matches(const struct migrate_tuning *t)
{
    json_t *caps = tuning_qemu_capabilities(t);
    struct qmon_cap_state typed[TUNING_N_CAPS];
    assert_int_equal(tuning_qmon_capabilities(t, typed), TUNING_N_CAPS);
    static const char *const names[] = {"events", "multifd", "auto-converge", "postcopy-ram", "postcopy-preempt",
                                        "mapped-ram"};
    static const enum qmon_capability ids[] = {QMON_CAP_EVENTS, QMON_CAP_MULTIFD, QMON_CAP_AUTO_CONVERGE,
                                               QMON_CAP_POSTCOPY_RAM, QMON_CAP_POSTCOPY_PREEMPT, QMON_CAP_MAPPED_RAM};
    for (size_t i = 0; i < TUNING_N_CAPS; i++) {
        assert_int_equal(typed[i].cap, ids[i]);
        assert_int_equal(typed[i].on, cap_state(caps, names[i]));
    }
    json_decref(caps);
    json_t *p = tuning_qemu_parameters(t);
    struct qmon_migrate_params q = tuning_qmon_parameters(t);
    assert_true(q.has_max_bandwidth && q.has_downtime_limit);
    assert_int_equal(q.max_bandwidth, json_integer_value(json_object_get(p, "max-bandwidth")));
    assert_int_equal(q.downtime_limit, json_integer_value(json_object_get(p, "downtime-limit")));
    assert_int_equal(q.has_cpu_throttle_initial, json_object_get(p, "cpu-throttle-initial") != NULL);
    assert_int_equal(q.cpu_throttle_initial, json_integer_value(json_object_get(p, "cpu-throttle-initial")));
    assert_int_equal(q.has_cpu_throttle_increment, json_object_get(p, "cpu-throttle-increment") != NULL);
    assert_int_equal(q.cpu_throttle_increment, json_integer_value(json_object_get(p, "cpu-throttle-increment")));
    assert_int_equal(q.has_multifd_channels, json_object_get(p, "multifd-channels") != NULL);
    assert_int_equal(q.multifd_channels, json_integer_value(json_object_get(p, "multifd-channels")));
    const char *c = json_string_value(json_object_get(p, "multifd-compression"));
    assert_int_equal(q.has_multifd_compression, c != NULL);
    static const char *const comp[] = {"none", "zlib", "zstd"};
    if (c)
        assert_string_equal(comp[q.multifd_compression], c);
    assert_null(q.tls_creds);
    assert_null(q.tls_hostname);
    json_decref(p);
}

static void test_typed_qemu_arguments(void **state)
{
    struct migrate_tuning t;
    tuning_defaults(&t);
    check_typed_matches(&t);
    t.channels = 1;
    t.bandwidth = 5000;
    t.converge = CONVERGE_CANCEL;
    check_typed_matches(&t);
    t.channels = 2;
    t.converge = CONVERGE_THROTTLE;
    snprintf(t.compress, sizeof t.compress, "zstd");
    check_typed_matches(&t);
    snprintf(t.compress, sizeof t.compress, "zlib");
    check_typed_matches(&t);
    t.channels = 1;
    t.postcopy = true;
    check_typed_matches(&t);
}

/* Post-copy: a single stream (QEMU 10.0 has no post-copy with multifd). */
static void test_postcopy(void **state)
{
    struct migrate_tuning t;
    char err[256];
    assert_int_equal(parse("{\"converge\": \"postcopy\"}", &t, err, sizeof err), 0);
    assert_int_equal(t.converge, CONVERGE_POSTCOPY);
    assert_string_equal(converge_policy_name(t.converge), "postcopy");
    assert_int_equal(t.channels, 1);
    assert_string_equal(t.compress, "none");
    assert_true(tuning_wants_postcopy(&t));
    assert_false(t.postcopy);   /* decided with the destination, later */
    assert_int_equal(t.max_recover_wait_s, TUNING_DEFAULT_MAX_RECOVER_WAIT_S);
    assert_int_equal(parse("{\"converge\": \"postcopy\", \"channels\": 1, \"max_recover_wait_s\": 30}", &t, err,
                           sizeof err), 0);
    assert_int_equal(t.max_recover_wait_s, 30);
    expect_refused("{\"converge\": \"postcopy\", \"channels\": 4}",
                   "--converge postcopy needs a single stream (--parallel 1): QEMU 10.0 does not combine post-copy "
                   "with multifd");
    expect_refused("{\"converge\": \"postcopy\", \"quick\": true}",
                   "--converge postcopy is for live migrations of memory (not --quick or --with-storage)");
    /* auto may use it only with a single stream; the default keeps multifd. */
    assert_int_equal(parse("{}", &t, err, sizeof err), 0);
    assert_false(tuning_wants_postcopy(&t));
    assert_int_equal(parse("{\"channels\": 1}", &t, err, sizeof err), 0);
    assert_true(tuning_wants_postcopy(&t));
    assert_int_equal(parse("{\"converge\": \"cancel\", \"channels\": 1}", &t, err, sizeof err), 0);
    assert_false(tuning_wants_postcopy(&t));
}

/* --max-wait: 600 s unless given, 1 s to 24 h, and it survives the trip to
 * the destination and back (delegated moves carry it in their tuning). */
static void test_max_wait(void **state)
{
    struct migrate_tuning t;
    char err[256];
    assert_int_equal(parse("{}", &t, err, sizeof err), 0);
    assert_int_equal(t.max_wait_s, TUNING_DEFAULT_MAX_WAIT_S);
    assert_int_equal(parse("{\"max_wait_s\": 4}", &t, err, sizeof err), 0);
    assert_int_equal(t.max_wait_s, 4);
    json_t *j = tuning_to_json(&t);
    struct migrate_tuning back;
    assert_int_equal(tuning_from_json(j, &back, err, sizeof err), 0);
    assert_int_equal(back.max_wait_s, 4);
    json_decref(j);
    expect_refused("{\"max_wait_s\": 0}", "max_wait_s must be an integer from 1 to 86400");
    expect_refused("{\"max_wait_s\": 86401}", "max_wait_s must be an integer from 1 to 86400");
    expect_refused("{\"max_wait_s\": \"10m\"}", "max_wait_s must be an integer from 1 to 86400");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_postcopy),
        cmocka_unit_test(test_max_wait),
        cmocka_unit_test(test_every_field),
        cmocka_unit_test(test_quick),
        cmocka_unit_test(test_compress_auto_single_stream),
        cmocka_unit_test(test_max_downtime_at_least_target),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_too_long_paths),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_qemu_arguments),
        cmocka_unit_test(test_typed_qemu_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
