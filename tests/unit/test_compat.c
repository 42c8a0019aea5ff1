/* Unit tests for the host compatibility checks (src/vm/compat.c): each
 * problem alone, all of them at once in their fixed order, and the texts
 * the user reads, word for word. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "conf/vm_config.h"
#include "vm/compat.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const CONFIG =
    "{\"version\": 1, \"name\": \"web-1\", \"uuid\": \"0b5e0a9c-3f0e-4d5e-9a7b-2c1d3e4f5a6b\","
    " \"memory_mib\": 2048, \"cpus\": 2, \"machine\": \"pc-q35-7.2\","
    " \"disks\": [{\"id\": \"vda\", \"path\": \"/vms/web-1/root.qcow2\", \"bus\": \"virtio\"}],"
    " \"nics\": [{\"switch\": \"br0\", \"mac\": \"52:54:00:12:34:56\"}],"
    " \"boot\": {\"kind\": \"kernel\", \"kernel\": \"/boot/vmlinuz\", \"initrd\": \"/boot/initrd.img\"}}";

/* The fake host's filesystem: what is missing. */
static const char *missing_switch;
static const char *missing_path;

static bool fake_switch_exists(const char *name) { return !missing_switch || strcmp(name, missing_switch); }

static int fake_path_access(const char *path, int mode)
{
    return missing_path && !strcmp(path, missing_path) ? ENOENT : 0;
}

static json_t *machines;

static struct compat_host good_host(void)
{
    return (struct compat_host){.name = "dst", .incoming_enabled = true, .mem_available_mib = 4096,
                                .accel = "kvm", .machines = machines, .qemu_version = "7.2.22",
                                .switch_exists = fake_switch_exists, .path_access = fake_path_access};
}

static int setup(void **state)
{
    struct vm_config *c = calloc(1, sizeof *c);
    char err[256];
    json_t *j = json_loads(CONFIG, 0, NULL);
    assert_int_equal(vm_config_from_json(j, c, err, sizeof err), 0);
    json_decref(j);
    machines = json_pack("[s, s]", "pc", "pc-q35-7.2");
    missing_switch = missing_path = NULL;
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    vm_config_free(*state);
    free(*state);
    json_decref(machines);
    return 0;
}

/* The single problem, or NULL: fails the test if there are more. */
static char *only_problem(const struct vm_config *c, const struct compat_host *h, const struct compat_want *w)
{
    json_t *p = compat_check(c, h, w);
    assert_true(json_is_array(p));
    assert_true(json_array_size(p) <= 1);
    char *s = json_array_size(p) ? strdup(json_string_value(json_array_get(p, 0))) : NULL;
    json_decref(p);
    return s;
}

static void expect_problem(const struct vm_config *c, const struct compat_host *h, const struct compat_want *w,
                           const char *text)
{
    char *s = only_problem(c, h, w);
    assert_non_null(s);
    assert_string_equal(s, text);
    free(s);
}

static void test_fits(void **state)
{
    struct compat_host h = good_host();
    struct compat_want w = {.src_accel = "kvm"};
    assert_null(only_problem(*state, &h, &w));
    w.src_accel = NULL;   /* not compared */
    assert_null(only_problem(*state, &h, &w));
}

static void test_disabled(void **state)
{
    struct compat_host h = good_host();
    h.incoming_enabled = false;
    expect_problem(*state, &h, &(struct compat_want){0},
                   "incoming migration is disabled on host dst (enable it there: vmove host set --migration-incoming on)");
}

static void test_drained(void **state)
{
    struct compat_host h = good_host();
    h.drained = true;
    expect_problem(*state, &h, &(struct compat_want){0}, "host dst is being drained: nothing new is placed on it");
}

static void test_name_taken(void **state)
{
    struct compat_host h = good_host();
    h.name_taken = true;
    expect_problem(*state, &h, &(struct compat_want){0}, "a VM named web-1 already exists on host dst");
}

static void test_memory_bounds(void **state)
{
    struct compat_host h = good_host();
    h.mem_available_mib = 2048 + COMPAT_MEMORY_OVERHEAD_MIB;   /* exactly enough */
    assert_null(only_problem(*state, &h, &(struct compat_want){0}));
    h.mem_available_mib--;
    expect_problem(*state, &h, &(struct compat_want){0},
                   "not enough memory on host dst: the VM needs 2048 MiB (+128 MiB overhead), 2175 MiB available");
}

static void test_switch(void **state)
{
    struct compat_host h = good_host();
    missing_switch = "br0";
    expect_problem(*state, &h, &(struct compat_want){0}, "switch br0 does not exist on host dst");
}

static void test_disk_needs_shared_storage(void **state)
{
    struct compat_host h = good_host();
    missing_path = "/vms/web-1/root.qcow2";
    expect_problem(*state, &h, &(struct compat_want){0},
                   "disk vda (/vms/web-1/root.qcow2) is not visible on host dst: No such file or directory "
                   "(live migration needs shared storage)");
    /* Shared-nothing copies the disks: they need not be visible. */
    assert_null(only_problem(*state, &h, &(struct compat_want){.copy_storage = true}));
}

static void test_kernel_and_initrd(void **state)
{
    struct compat_host h = good_host();
    missing_path = "/boot/vmlinuz";
    expect_problem(*state, &h, &(struct compat_want){0}, "kernel /boot/vmlinuz is not readable on host dst");
    missing_path = "/boot/initrd.img";
    expect_problem(*state, &h, &(struct compat_want){0}, "initrd /boot/initrd.img is not readable on host dst");
}

static void test_accel_mismatch(void **state)
{
    struct compat_host h = good_host();
    expect_problem(*state, &h, &(struct compat_want){.src_accel = "tcg"},
                   "accelerator mismatch: the source runs tcg, host dst runs kvm");
}

static void test_machine(void **state)
{
    struct compat_host h = good_host();
    json_t *few = json_pack("[s]", "pc");
    h.machines = few;
    expect_problem(*state, &h, &(struct compat_want){0},
                   "machine type pc-q35-7.2 is not supported by QEMU 7.2.22 on host dst");
    h.machines = NULL;   /* unknown capabilities: nothing is supported */
    expect_problem(*state, &h, &(struct compat_want){0},
                   "machine type pc-q35-7.2 is not supported by QEMU 7.2.22 on host dst");
    json_decref(few);
}

static void test_all_at_once_in_order(void **state)
{
    struct compat_host h = good_host();
    h.incoming_enabled = false;
    h.drained = true;
    h.name_taken = true;
    h.mem_available_mib = 0;
    h.machines = NULL;
    missing_switch = "br0";
    json_t *p = compat_check(*state, &h, &(struct compat_want){.src_accel = "tcg"});
    const char *starts[] = {"incoming migration is disabled", "host dst is being drained", "a VM named",
                            "not enough memory", "switch br0", "accelerator mismatch", "machine type"};
    assert_int_equal(json_array_size(p), sizeof starts / sizeof *starts);
    for (size_t i = 0; i < sizeof starts / sizeof *starts; i++)
        assert_true(!strncmp(json_string_value(json_array_get(p, i)), starts[i], strlen(starts[i])));
    json_decref(p);
}

static void test_machine_supported(void **state)
{
    assert_true(compat_machine_supported(machines, "pc"));
    assert_false(compat_machine_supported(machines, "virt"));
    json_t *odd = json_pack("[i, s]", 3, "pc");   /* a non-string entry is skipped, not a crash */
    assert_true(compat_machine_supported(odd, "pc"));
    json_decref(odd);
}

static void test_real_probes(void **state)
{
    /* The default probes read the real filesystem: /boot/vmlinuz and
     * /vms/... are not expected here, so at least the disk is reported. */
    struct compat_host h = good_host();
    h.switch_exists = NULL;
    h.path_access = NULL;
    json_t *p = compat_check(*state, &h, &(struct compat_want){0});
    assert_true(json_array_size(p) >= 1);
    json_decref(p);
    assert_true(compat_mem_available_mib() > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disabled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drained, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_taken, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_switch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_needs_shared_storage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kernel_and_initrd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accel_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_machine, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_at_once_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_machine_supported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_real_probes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
