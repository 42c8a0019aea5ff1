/* Unit tests for walking the inventory through src/vm/ (inventory.c):
 * vm_first/vm_next, VM_FOREACH, VM_FOREACH_SAFE, vm_count, vm_find and
 * vm_find_by_disk_path, on a hand-built agent whose VMs live on the stack. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/agent.h"
#include "vm/vm.h"

#include <string.h>

struct fixture {
    struct agent agent;
    struct vm vms[3];
    struct vm_disk disks[2];
};

static struct fixture fx;

static int setup(void **state)
{
    memset(&fx, 0, sizeof fx);
    static char *names[] = {"alpha", "beta", "gamma"};
    for (int i = 0; i < 3; i++) {
        fx.vms[i].agent = &fx.agent;
        fx.vms[i].name = names[i];
        fx.vms[i].next = i < 2 ? &fx.vms[i + 1] : NULL;
    }
    fx.agent.vms = &fx.vms[0];
    fx.disks[0] = (struct vm_disk){.id = "vda", .path = "/vms/beta/vda.qcow2"};
    fx.disks[1] = (struct vm_disk){.id = "vdb", .path = "/shared/data.qcow2"};
    fx.vms[1].cfg.disks = fx.disks;
    fx.vms[1].cfg.n_disks = 2;
    return 0;
}

static void test_walk_in_order(void **state)
{
    const char *seen[4] = {0};
    size_t n = 0;
    VM_FOREACH(&fx.agent, vm) {
        assert_true(n < 3);
        seen[n++] = vm->name;
    }
    assert_int_equal(n, 3);
    assert_string_equal(seen[0], "alpha");
    assert_string_equal(seen[1], "beta");
    assert_string_equal(seen[2], "gamma");
    assert_int_equal(vm_count(&fx.agent), 3);
    assert_ptr_equal(vm_first(&fx.agent), &fx.vms[0]);
    assert_ptr_equal(vm_next(&fx.vms[2]), NULL);
}

static void test_empty(void **state)
{
    struct agent a = {0};
    assert_int_equal(vm_count(&a), 0);
    assert_null(vm_first(&a));
    VM_FOREACH(&a, vm)
        fail_msg("visited %s in an empty inventory", vm->name);
    VM_FOREACH_SAFE(&a, vm, next)
        fail_msg("visited %s in an empty inventory", vm->name);
}

/* The body may unlink the VM it is on (vm_forget does) and the walk goes on. */
static void test_safe_walk_survives_unlinking(void **state)
{
    size_t n = 0;
    VM_FOREACH_SAFE(&fx.agent, vm, next) {
        n++;
        if (vm == &fx.vms[1]) {
            fx.vms[0].next = vm->next;
            vm->next = NULL;
        }
    }
    assert_int_equal(n, 3);
    assert_int_equal(vm_count(&fx.agent), 2);
    assert_null(vm_find(&fx.agent, "beta"));
}

static void test_find(void **state)
{
    assert_ptr_equal(vm_find(&fx.agent, "gamma"), &fx.vms[2]);
    assert_null(vm_find(&fx.agent, "delta"));
    assert_ptr_equal(vm_find_by_disk_path(&fx.agent, "/shared/data.qcow2"), &fx.vms[1]);
    assert_null(vm_find_by_disk_path(&fx.agent, "/shared/data"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_walk_in_order, setup),
        cmocka_unit_test_setup(test_empty, setup),
        cmocka_unit_test_setup(test_safe_walk_survives_unlinking, setup),
        cmocka_unit_test_setup(test_find, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
