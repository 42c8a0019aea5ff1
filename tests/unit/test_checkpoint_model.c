/* Unit tests for the checkpoint tree (src/checkpoint/ckpt_model.c): who
 * are a checkpoint's children ("now" counts), which checkpoints are on the
 * current path, what is unsettled, and which trees are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <string.h>

#include "checkpoint/ckpt_model.h"

/* c1 -> c2 -> c3, and c2 -> now (c2 applied after c3 was taken). */
static json_t *tree(void)
{
    return json_loads("{\"current\": \"c2\", \"list\": ["
                      "{\"name\": \"c1\", \"parent\": null, \"state\": \"ok\", \"disks\": {\"vda\": \"/d/vda.qcow2\"}},"
                      "{\"name\": \"c2\", \"parent\": \"c1\", \"state\": \"ok\", \"disks\": {\"vda\": \"/d/vda.ck1.qcow2\"}},"
                      "{\"name\": \"c3\", \"parent\": \"c2\", \"state\": \"ok\", \"disks\": {\"vda\": \"/d/vda.ck2.qcow2\"}}]}",
                      0, NULL);
}

static void test_children_and_path(void **state)
{
    json_t *t = tree();
    json_t *x;
    bool now;
    assert_int_equal(ckpt_children(t, "c1", &x, &now), 1);
    assert_false(now);
    assert_string_equal(json_string_value(json_object_get(x, "name")), "c2");
    assert_int_equal(ckpt_children(t, "c2", &x, &now), 2);   /* c3 and now: a merge is refused */
    assert_true(now);
    assert_int_equal(ckpt_children(t, "c3", &x, &now), 0);   /* a leaf */
    assert_true(ckpt_on_current_path(t, "c1"));
    assert_true(ckpt_on_current_path(t, "c2"));
    assert_false(ckpt_on_current_path(t, "c3"));
    assert_string_equal(ckpt_disk(ckpt_find(t, "c2"), "vda"), "/d/vda.ck1.qcow2");
    assert_null(ckpt_disk(ckpt_find(t, "c2"), "vdb"));
    assert_null(ckpt_find(t, "c9"));
    assert_null(ckpt_unsettled(t));
    json_object_set_new(ckpt_find(t, "c3"), "state", json_string("deleting"));
    assert_ptr_equal(ckpt_unsettled(t), ckpt_find(t, "c3"));
    char err[128];
    assert_int_equal(ckpt_validate(t, err, sizeof err), 0);
    json_decref(t);
}

static void test_validate_refuses(void **state)
{
    char err[128];
    json_t *t = tree();
    json_object_set_new(ckpt_find(t, "c2"), "parent", json_string("gone"));
    assert_int_equal(ckpt_validate(t, err, sizeof err), -1);
    assert_non_null(strstr(err, "gone"));
    json_decref(t);
    t = tree();
    json_object_set_new(t, "current", json_string("c7"));
    assert_int_equal(ckpt_validate(t, err, sizeof err), -1);
    json_decref(t);
    t = tree();
    json_object_del(ckpt_find(t, "c1"), "disks");
    assert_int_equal(ckpt_validate(t, err, sizeof err), -1);
    json_decref(t);
    /* A cycle never loops the path walk. */
    t = tree();
    json_object_set_new(ckpt_find(t, "c1"), "parent", json_string("c2"));
    assert_false(ckpt_on_current_path(t, "c3"));
    json_decref(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_children_and_path),
                                       cmocka_unit_test(test_validate_refuses)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
