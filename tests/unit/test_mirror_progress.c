/* Unit tests for the one disk-progress object of both moves
 * (src/block/mirror_progress.c): the keys, done never above total, the
 * ETA unknown without a rate, and the final summary's averages. */
#include "block/mirror_progress.h"

#include <event2/event.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "qemu/monitor.h"

static const char *const disk_keys[] = {"id", "size_bytes", "done_bytes", "total_bytes", "rate_Bps", "eta_s",
                                        "ready", NULL};
static const char *const total_keys[] = {"disks", "size_bytes", "done_bytes", "total_bytes", "rate_Bps", "eta_s",
                                         "percent", NULL};

static void has_exactly(json_t *o, const char *const *keys)
{
    size_t n = 0;
    for (; keys[n]; n++)
        assert_non_null(json_object_get(o, keys[n]));
    assert_int_equal(json_object_size(o), n);
}

static void on_release(void *obj) {}

struct fixture {
    struct event_base *base;
    struct qmon_owner owner;
    struct block_mirror *bm;
};

static int setup(void **state)
{
    static struct fixture f;
    memset(&f, 0, sizeof f);
    f.base = event_base_new();
    qmon_owner_init(&f.owner, &f, on_release);
    struct block_mirror_config cfg = {.name = "vm1", .kind = BLOCK_MIRROR_NBD};
    f.bm = block_mirror_new(f.base, &f.owner, &cfg, NULL, &f, 2);
    block_mirror_set_disk(f.bm, 0, "vda", NULL, NULL, "vda", 8 << 20, "nbd-vda", NULL, "mirror-vda");
    block_mirror_set_disk(f.bm, 1, "vdb", NULL, NULL, "vdb", 4 << 20, "nbd-vdb", NULL, "mirror-vdb");
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    block_mirror_free(f->bm);
    event_base_free(f->base);
    return 0;
}

static void while_copying(void **state)
{
    struct fixture *f = *state;
    struct block_mirror_disk *a = block_mirror_disk(f->bm, 0), *b = block_mirror_disk(f->bm, 1);
    a->offset = 1 << 20, a->len = 3 << 20, a->rate = 1 << 20;   /* 2 MiB left at 1 MiB/s */
    b->offset = 0, b->len = 0, b->rate = 0;                    /* not started: no rate yet */
    json_t *p = block_mirror_progress(f->bm, false);
    has_exactly(p, total_keys);
    json_t *da = json_array_get(json_object_get(p, "disks"), 0), *db = json_array_get(json_object_get(p, "disks"), 1);
    has_exactly(da, disk_keys);
    has_exactly(db, disk_keys);
    assert_string_equal(json_string_value(json_object_get(da, "id")), "vda");
    assert_int_equal(json_integer_value(json_object_get(da, "size_bytes")), 8 << 20);
    assert_true(json_real_value(json_object_get(da, "eta_s")) == 2.0);
    assert_true(json_is_null(json_object_get(db, "eta_s")));
    assert_int_equal(json_integer_value(json_object_get(p, "size_bytes")), 12 << 20);
    assert_int_equal(json_integer_value(json_object_get(p, "done_bytes")), 1 << 20);
    assert_int_equal(json_integer_value(json_object_get(p, "total_bytes")), 3 << 20);
    assert_true(json_real_value(json_object_get(p, "eta_s")) == 2.0);
    assert_true(json_real_value(json_object_get(p, "percent")) > 33.3 &&
                json_real_value(json_object_get(p, "percent")) < 33.4);
    assert_false(json_is_true(json_object_get(da, "ready")));
    json_decref(p);
}

static void final_summary(void **state)
{
    struct fixture *f = *state;
    struct block_mirror_disk *a = block_mirror_disk(f->bm, 0), *b = block_mirror_disk(f->bm, 1);
    a->offset = a->len = 4 << 20, a->t_mirror = 1000, a->t_ready = 3000, a->ready = true, a->rate = 5;
    b->offset = b->len = 1 << 20, b->t_mirror = 1000, b->t_ready = 2000, b->ready = true;
    json_t *p = block_mirror_progress(f->bm, true);
    has_exactly(p, total_keys);
    json_t *da = json_array_get(json_object_get(p, "disks"), 0);
    has_exactly(da, disk_keys);
    assert_true(json_real_value(json_object_get(da, "rate_Bps")) == 2.0 * (1 << 20));   /* 4 MiB in 2 s */
    assert_true(json_real_value(json_object_get(da, "eta_s")) == 0.0);
    assert_true(json_real_value(json_object_get(p, "rate_Bps")) == 3.0 * (1 << 20));
    assert_true(json_real_value(json_object_get(p, "percent")) == 100.0);
    json_decref(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(while_copying, setup, teardown),
        cmocka_unit_test_setup_teardown(final_summary, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
