/* Unit tests for vm.json (src/vm/vm_config.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/util.h"
#include "conf/vm_config.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A complete config, written in canonical order so that it must round-trip
 * byte for byte.  Single quotes stand for double quotes (see parse()). */
static const char *const FULL =
    "{'version': 1, 'name': 'web-1', 'uuid': '0b5e0a9c-3f0e-4d5e-9a7b-2c1d3e4f5a6b',"
    " 'memory_mib': 2048, 'cpus': 2, 'machine': 'pc-q35-7.2', 'cpu_model': 'host',"
    " 'disks': [{'id': 'vda', 'path': '/var/lib/vmove/vms/web-1/root.qcow2', 'bus': 'virtio'},"
    "           {'id': 'vdb', 'path': '/var/lib/vmove/vms/web-1/data.qcow2', 'bus': 'virtio'}],"
    " 'nics': [{'switch': 'br0', 'mac': '52:54:00:12:34:56'},"
    "          {'switch': 'br1', 'mac': '52:54:00:ab:cd:ef'}],"
    " 'boot': {'kind': 'kernel', 'kernel': '/boot/vmlinuz', 'initrd': '/boot/initrd.img',"
    "          'append': 'console=ttyS0 root=/dev/vda'},"
    " 'flags': {'ha': true}}";

static const char *const MINIMAL =
    "{'version': 1, 'name': 'tiny', 'uuid': '11111111-2222-4333-8444-555555555555',"
    " 'memory_mib': 16, 'cpus': 1, 'machine': 'pc',"
    " 'boot': {'kind': 'kernel', 'kernel': '/k'}}";

/* Parses JSON text in which ' stands for " (no escaping noise in tests). */
static json_t *parse(const char *text)
{
    char *s = xstrdup(text);
    for (char *p = s; *p; p++)
        if (*p == '\'')
            *p = '"';
    json_error_t e;
    json_t *j = json_loads(s, JSON_DECODE_ANY, &e);
    if (!j)
        fail_msg("bad test JSON %s: %s", s, e.text);
    free(s);
    return j;
}

static char *dump(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
}

/* Sets (or, with value NULL, deletes) the member at a path such as
 * "disks[1].bus", "boot" or "flags.ha" in root. */
static void set_path(json_t *root, const char *path, json_t *value)
{
    char *copy = xstrdup(path), *save = NULL;
    json_t *cur = root;
    char *tok = strtok_r(copy, ".", &save);
    while (tok) {
        char *next = strtok_r(NULL, ".", &save);
        char *br = strchr(tok, '[');
        long idx = -1;
        if (br) {
            idx = strtol(br + 1, NULL, 10);
            *br = 0;
        }
        if (!next) {
            if (idx >= 0) {
                json_t *arr = json_object_get(cur, tok);
                if (value)
                    json_array_set_new(arr, (size_t)idx, value);
                else
                    json_array_remove(arr, (size_t)idx);
            } else if (value) {
                json_object_set_new(cur, tok, value);
            } else {
                json_object_del(cur, tok);
            }
        } else {
            cur = json_object_get(cur, tok);
            if (idx >= 0)
                cur = json_array_get(cur, (size_t)idx);
            assert_non_null(cur);
        }
        tok = next;
    }
    free(copy);
}

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

/* ------------------------------------------------------------------ */

static void test_full_roundtrip(void **state)
{
    json_t *in = parse(FULL);
    struct vm_config c;
    char err[256] = "";
    assert_int_equal(vm_config_from_json(in, &c, err, sizeof err), 0);

    assert_int_equal(c.version, 1);
    assert_string_equal(c.name, "web-1");
    assert_string_equal(c.uuid, "0b5e0a9c-3f0e-4d5e-9a7b-2c1d3e4f5a6b");
    assert_int_equal(c.memory_mib, 2048);
    assert_int_equal(c.cpus, 2);
    assert_string_equal(c.machine, "pc-q35-7.2");
    assert_string_equal(c.cpu_model, "host");
    assert_int_equal(c.n_disks, 2);
    assert_string_equal(c.disks[1].id, "vdb");
    assert_string_equal(c.disks[1].path, "/var/lib/vmove/vms/web-1/data.qcow2");
    assert_int_equal(c.disks[1].bus, VM_DISK_BUS_VIRTIO);
    assert_int_equal(c.n_nics, 2);
    assert_string_equal(c.nics[0].switch_name, "br0");
    assert_string_equal(c.nics[1].mac, "52:54:00:ab:cd:ef");
    assert_int_equal(c.boot.kind, VM_BOOT_KERNEL);
    assert_string_equal(c.boot.kernel, "/boot/vmlinuz");
    assert_string_equal(c.boot.initrd, "/boot/initrd.img");
    assert_string_equal(c.boot.append, "console=ttyS0 root=/dev/vda");
    assert_true(c.ha);

    json_t *out = vm_config_to_json(&c);
    assert_non_null(out);
    char *a = dump(in), *b = dump(out);
    assert_string_equal(a, b);      /* same members, same order */
    free(a);
    free(b);
    json_decref(out);
    json_decref(in);
    vm_config_free(&c);
    assert_true(all_zero(&c, sizeof c));
}

static void test_minimal_defaults(void **state)
{
    json_t *in = parse(MINIMAL);
    struct vm_config c, again;
    char err[256] = "";
    assert_int_equal(vm_config_from_json(in, &c, err, sizeof err), 0);
    assert_null(c.cpu_model);
    assert_int_equal(c.n_disks, 0);
    assert_null(c.disks);
    assert_int_equal(c.n_nics, 0);
    assert_null(c.boot.initrd);
    assert_null(c.boot.append);
    assert_false(c.ha);

    /* The canonical form spells out the defaults, and parses back equal. */
    json_t *out = vm_config_to_json(&c);
    assert_true(json_is_array(json_object_get(out, "disks")));
    assert_true(json_is_array(json_object_get(out, "nics")));
    assert_true(json_is_false(json_object_get(json_object_get(out, "flags"), "ha")));
    assert_null(json_object_get(out, "cpu_model"));
    assert_int_equal(vm_config_from_json(out, &again, err, sizeof err), 0);
    json_t *out2 = vm_config_to_json(&again);
    assert_true(json_equal(out, out2));
    json_decref(out2);
    json_decref(out);
    json_decref(in);
    vm_config_free(&again);
    vm_config_free(&c);
}

/* The checkpoint tree is carried opaquely, round-trips, is copied deeply,
 * and is not written when it is empty (a plain v1 VM). */
static void test_checkpoints_member(void **state)
{
    json_t *in = parse(MINIMAL);
    json_object_set_new(in, "checkpoints", parse("{'current': 'c1', 'list': [{'name': 'c1', 'disks': {}}]}"));
    struct vm_config c, copy;
    char err[256] = "";
    assert_int_equal(vm_config_from_json(in, &c, err, sizeof err), 0);
    assert_int_equal(vm_config_checkpoint_count(&c), 1);
    json_t *out = vm_config_to_json(&c);
    assert_true(json_equal(json_object_get(in, "checkpoints"), json_object_get(out, "checkpoints")));
    vm_config_copy(&copy, &c);
    assert_ptr_not_equal(copy.checkpoints, c.checkpoints);
    json_array_clear(json_object_get(copy.checkpoints, "list"));
    assert_int_equal(vm_config_checkpoint_count(&c), 1);   /* the copy is deep */
    json_t *out2 = vm_config_to_json(&copy);
    assert_null(json_object_get(out2, "checkpoints"));
    json_decref(out2);
    json_decref(out);
    json_decref(in);
    vm_config_free(&copy);
    vm_config_free(&c);
    assert_int_equal(vm_config_checkpoint_count(&c), 0);
}

/* flags.isolation: "keep" round-trips; "stop" is the default and is not
 * written; copies keep it. */
static void test_isolation_flag(void **state)
{
    json_t *in = parse(FULL);
    set_path(in, "flags.isolation", json_string("keep"));
    struct vm_config c, copy;
    char err[256] = "";
    assert_int_equal(vm_config_from_json(in, &c, err, sizeof err), 0);
    assert_true(c.ha && c.ha_keep && !vm_config_fenced(&c));
    json_t *out = vm_config_to_json(&c);
    assert_true(json_equal(in, out));
    vm_config_copy(&copy, &c);
    assert_true(copy.ha_keep);
    json_decref(out);
    vm_config_free(&copy);
    vm_config_free(&c);
    set_path(in, "flags.isolation", json_string("stop"));
    assert_int_equal(vm_config_from_json(in, &c, err, sizeof err), 0);
    assert_true(c.ha && !c.ha_keep && vm_config_fenced(&c));
    out = vm_config_to_json(&c);
    assert_null(json_object_get(json_object_get(out, "flags"), "isolation"));
    json_decref(out);
    vm_config_free(&c);
    json_decref(in);
}

static void test_boot_from_disk(void **state)
{
    json_t *in = parse(FULL);
    set_path(in, "boot", parse("{'kind': 'disk'}"));
    struct vm_config c;
    char err[256] = "";
    assert_int_equal(vm_config_from_json(in, &c, err, sizeof err), 0);
    assert_int_equal(c.boot.kind, VM_BOOT_DISK);
    assert_null(c.boot.kernel);
    json_t *out = vm_config_to_json(&c);
    assert_true(json_equal(in, out));
    json_decref(out);
    json_decref(in);
    vm_config_free(&c);
}

/* One mutation (or two) of FULL, and a substring the error must contain. */
struct err_case {
    const char *path, *value;       /* value: JSON text, NULL = delete */
    const char *path2, *value2;
    const char *expect;
};

static const struct err_case err_cases[] = {
    /* types */
    {"cpus", "'2'", NULL, NULL, "cpus: expected an integer, got string \"2\""},
    {"cpus", "2.0", NULL, NULL, "cpus: expected an integer, got 2.0"},
    {"cpu_model", "null", NULL, NULL, "cpu_model: expected a string, got null"},
    {"disks", "{}", NULL, NULL, "disks: expected an array, got an object"},
    {"disks[0]", "'vda'", NULL, NULL, "disks[0]: expected an object, got string \"vda\""},
    {"flags.ha", "'yes'", NULL, NULL, "flags.ha: expected a boolean (true or false), got string \"yes\""},
    /* unknown and missing fields */
    {"cpu", "2", NULL, NULL, "unknown field \"cpu\" at top level (did you mean \"cpus\"?)"},
    {"disks[0].buss", "'virtio'", NULL, NULL, "unknown field \"buss\" in disks[0] (did you mean \"bus\"?)"},
    {"flags.HA", "true", NULL, NULL, "unknown field \"HA\" in flags (did you mean \"ha\"?)"},
    {"nics[0].switch_name", "'br0'", NULL, NULL, "unknown field \"switch_name\" in nics[0]"},
    {"totally_new", "1", NULL, NULL, "unknown field \"totally_new\" at top level"},
    {"uuid", NULL, NULL, NULL, "uuid: missing required field"},
    {"boot", NULL, NULL, NULL, "boot: missing required field"},
    {"nics[1].mac", NULL, NULL, NULL, "nics[1].mac: missing required field"},
    /* version */
    {"version", "2", NULL, NULL, "version: 2 is newer than this vmove supports (1)"},
    {"version", "2", "future_field", "{}", "version: 2 is newer than this vmove supports (1)"},
    {"version", "0", NULL, NULL, "version: 0 is not a valid version (expected 1)"},
    {"version", "'1'", NULL, NULL, "version: expected an integer, got string \"1\""},
    {"version", NULL, NULL, NULL, "version: missing required field"},
    /* ranges */
    {"memory_mib", "8", NULL, NULL, "memory_mib: 8 is below the minimum of 16"},
    {"memory_mib", "-1", NULL, NULL, "memory_mib: -1 is below the minimum of 16"},
    {"memory_mib", "1048577", NULL, NULL, "memory_mib: 1048577 is above the maximum of 1048576"},
    {"cpus", "0", NULL, NULL, "cpus: 0 is below the minimum of 1"},
    {"cpus", "257", NULL, NULL, "cpus: 257 is above the maximum of 256"},
    {"cpus", "4294967297", NULL, NULL, "cpus: 4294967297 is above the maximum of 256"},
    /* strings */
    {"name", "''", NULL, NULL, "name: must not be empty"},
    {"name", "'a/b'", NULL, NULL, "name: \"a/b\" is not a valid name"},
    {"name", "'" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" "'",
     NULL, NULL, "aaa...\" is not a valid name"},
    {"machine", "''", NULL, NULL, "machine: must not be empty"},
    {"machine", "'pc,accel=tcg'", NULL, NULL, "machine: \"pc,accel=tcg\" is not a valid name"},
    {"cpu_model", "''", NULL, NULL, "cpu_model: must not be empty"},
    {"uuid", "'0B5E0A9C-3F0E-4D5E-9A7B-2C1D3E4F5A6B'", NULL, NULL,
     "uuid: \"0B5E0A9C-3F0E-4D5E-9A7B-2C1D3E4F5A6B\" is not a valid UUID"},
    {"uuid", "'0b5e0a9c3f0e4d5e9a7b2c1d3e4f5a6b'", NULL, NULL, "is not a valid UUID"},
    {"uuid", "'00000000-0000-0000-0000-000000000000'", NULL, NULL, "uuid: the nil UUID is not allowed"},
    /* disks */
    {"disks[1].bus", "'scsi'", NULL, NULL, "disks[1].bus: unknown value \"scsi\" (expected \"virtio\")"},
    {"disks[1].id", "'vda'", NULL, NULL, "disks[1].id: \"vda\" is already used by disks[0]"},
    {"disks[0].id", "'sda'", NULL, NULL, "disks[0].id: \"sda\" is not a valid disk id (expected \"vda\" .. \"vdz\")"},
    {"disks[0].id", "''", NULL, NULL, "disks[0].id: must not be empty"},
    {"disks[1].path", "'/var/lib/vmove/vms/web-1/root.qcow2'", NULL, NULL,
     "disks[1].path: \"/var/lib/vmove/vms/web-1/root.qcow2\" is already used by disks[0]"},
    {"disks[0].path", "'root.qcow2'", NULL, NULL, "disks[0].path: \"root.qcow2\" is not an absolute path"},
    {"disks[0].path", "''", NULL, NULL, "disks[0].path: must not be empty"},
    {"disks[0].path", "'/a\\nb'", NULL, NULL, "disks[0].path: \"/a\\nb\" must not contain a newline"},
    /* nics */
    {"nics[1].mac", "'52:54:00:12:34:56'", NULL, NULL, "nics[1].mac: \"52:54:00:12:34:56\" is already used by nics[0]"},
    {"nics[0].mac", "'01:00:5e:00:00:01'", NULL, NULL, "nics[0].mac: \"01:00:5e:00:00:01\" is a multicast address"},
    {"nics[0].mac", "'52:54:00:AB:CD:EF'", NULL, NULL, "nics[0].mac: \"52:54:00:AB:CD:EF\" is not a valid MAC address (expected lower-case"},
    {"nics[0].mac", "'52:54:00:12:34'", NULL, NULL, "is not a valid MAC address"},
    {"nics[0].switch", "'br/0'", NULL, NULL, "nics[0].switch: \"br/0\" is not a valid name"},
    {"nics[0].switch", "''", NULL, NULL, "nics[0].switch: must not be empty"},
    {"nics[0].switch", "'averyverylongbr0'", NULL, NULL,
     "nics[0].switch: \"averyverylongbr0\" is longer than 15 characters"},
    /* boot */
    {"boot.kind", "'cdrom'", NULL, NULL, "boot.kind: unknown value \"cdrom\" (expected \"kernel\" or \"disk\")"},
    {"boot.kernel", "'vmlinuz'", NULL, NULL, "boot.kernel: \"vmlinuz\" is not an absolute path"},
    {"boot.kernel", NULL, NULL, NULL, "boot.kernel: required when boot.kind is \"kernel\""},
    {"boot.initrd", "'initrd.img'", NULL, NULL, "boot.initrd: \"initrd.img\" is not an absolute path"},
    {"boot.append", "'console=ttyS0\\nquiet'", NULL, NULL,
     "boot.append: \"console=ttyS0\\nquiet\" must not contain a newline"},
    {"boot.append", "''", NULL, NULL, "boot.append: must not be empty"},
    {"boot", "{'kind': 'disk'}", "disks", "[]", "boot.kind: \"disk\" requires at least one disk"},
    {"boot", "{'kind': 'disk', 'kernel': '/boot/vmlinuz'}", NULL, NULL,
     "boot.kernel: not allowed when boot.kind is \"disk\""},
    {"boot", "[]", NULL, NULL, "boot: expected an object, got an array"},
    {"checkpoints", "[]", NULL, NULL, "checkpoints: expected an object, got an array"},
    {"checkpoints", "{'current': null}", NULL, NULL, "checkpoints.list: missing or not an array"},
    /* isolation */
    {"flags.isolation", "'fence'", NULL, NULL, "flags.isolation: unknown value \"fence\" (expected \"stop\" or \"keep\")"},
    {"flags.isolation", "true", NULL, NULL, "flags.isolation: expected a string"},
    {"flags.isolation", "'keep'", "flags.ha", "false", "flags.isolation: \"keep\" is for an HA VM (flags.ha)"},
};

static void test_error_cases(void **state)
{
    for (size_t i = 0; i < ARRAY_LEN(err_cases); i++) {
        const struct err_case *tc = &err_cases[i];
        json_t *in = parse(FULL);
        set_path(in, tc->path, tc->value ? parse(tc->value) : NULL);
        if (tc->path2)
            set_path(in, tc->path2, parse(tc->value2));
        struct vm_config c;
        memset(&c, 0xa5, sizeof c);     /* must come back zeroed */
        char err[256] = "";
        int r = vm_config_from_json(in, &c, err, sizeof err);
        if (r != -1 || !strstr(err, tc->expect))
            fail_msg("case %zu (%s = %s): rc %d, message \"%s\", expected to contain \"%s\"", i,
                     tc->path, tc->value ? tc->value : "<deleted>", r, err, tc->expect);
        assert_true(all_zero(&c, sizeof c));
        json_decref(in);
    }
}

static void test_not_an_object(void **state)
{
    struct vm_config c;
    char err[256] = "";
    json_t *arr = json_array();
    assert_int_equal(vm_config_from_json(arr, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "top level: expected an object, got an array"));
    json_decref(arr);
    assert_int_equal(vm_config_from_json(NULL, &c, err, sizeof err), -1);
    /* A NULL/zero-length error buffer is allowed. */
    assert_int_equal(vm_config_from_json(NULL, &c, NULL, 0), -1);
}

static void test_too_many(void **state)
{
    json_t *in = parse(FULL);
    json_t *disks = json_array(), *nics = json_array();
    for (int i = 0; i < 27; i++)
        json_array_append_new(disks, json_pack("{s:s, s:s, s:s}", "id", "vda", "path", "/d",
                                               "bus", "virtio"));
    for (int i = 0; i < 9; i++)
        json_array_append_new(nics, json_pack("{s:s, s:s}", "switch", "br0", "mac",
                                              "52:54:00:00:00:01"));
    struct vm_config c;
    char err[256] = "";
    json_object_set_new(in, "disks", disks);
    assert_int_equal(vm_config_from_json(in, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "disks: 27 entries is above the maximum of 26"));
    json_object_set_new(in, "disks", json_array());
    json_object_set_new(in, "nics", nics);
    assert_int_equal(vm_config_from_json(in, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "nics: 9 entries is above the maximum of 8"));
    json_decref(in);
}

/* A config built in C, as the daemon does for `vmove create`. */
static void test_validate_c_built(void **state)
{
    struct vm_disk disks[2] = {
        {(char *)"vda", (char *)"/vms/a/root.qcow2", VM_DISK_BUS_VIRTIO},
        {(char *)"vdb", (char *)"/vms/a/data.qcow2", VM_DISK_BUS_VIRTIO},
    };
    struct vm_nic nics[1] = {{(char *)"br0", "52:54:00:01:02:03"}};
    struct vm_config c = {
        .version = VM_CONFIG_VERSION,
        .name = (char *)"a",
        .uuid = "0b5e0a9c-3f0e-4d5e-9a7b-2c1d3e4f5a6b",
        .memory_mib = 512,
        .cpus = 1,
        .machine = (char *)"pc-q35-7.2",
        .disks = disks,
        .n_disks = 2,
        .nics = nics,
        .n_nics = 1,
        .boot = {.kind = VM_BOOT_DISK},
    };
    char err[256] = "";
    assert_int_equal(vm_config_validate(&c, err, sizeof err), 0);

    struct vm_config bad = c;
    bad.memory_mib = 8;
    assert_int_equal(vm_config_validate(&bad, err, sizeof err), -1);
    assert_string_equal(err, "memory_mib: 8 is below the minimum of 16");
    bad.memory_mib = UINT64_MAX;
    assert_int_equal(vm_config_validate(&bad, err, sizeof err), -1);
    assert_non_null(strstr(err, "memory_mib: "));
    assert_non_null(strstr(err, "is above the maximum of 1048576"));

    bad = c;
    bad.name = NULL;
    assert_int_equal(vm_config_validate(&bad, err, sizeof err), -1);
    assert_string_equal(err, "name: missing required field");

    bad = c;
    bad.version = 2;
    assert_int_equal(vm_config_validate(&bad, err, sizeof err), -1);
    assert_string_equal(err, "version: 2 is newer than this vmove supports (1)");

    bad = c;
    disks[1].id = (char *)"vda";
    assert_int_equal(vm_config_validate(&bad, err, sizeof err), -1);
    assert_string_equal(err, "disks[1].id: \"vda\" is already used by disks[0]");
    disks[1].id = (char *)"vdb";

    disks[0].bus = (enum vm_disk_bus)5;
    assert_int_equal(vm_config_validate(&bad, err, sizeof err), -1);
    assert_string_equal(err, "disks[0].bus: invalid value 5");
    disks[0].bus = VM_DISK_BUS_VIRTIO;

    bad.boot.kind = (enum vm_boot_kind)7;
    assert_int_equal(vm_config_validate(&bad, err, sizeof err), -1);
    assert_string_equal(err, "boot.kind: invalid value 7");

    bad = c;
    bad.n_disks = 0;
    assert_int_equal(vm_config_validate(&bad, err, sizeof err), -1);
    assert_non_null(strstr(err, "boot.kind: \"disk\" requires at least one disk"));

    bad = c;
    bad.boot = (struct vm_boot){.kind = VM_BOOT_KERNEL, .kernel = (char *)"/k", .append = (char *)"a\nb"};
    assert_int_equal(vm_config_validate(&bad, err, sizeof err), -1);
    assert_string_equal(err, "boot.append: \"a\\nb\" must not contain a newline or other control character");

    assert_int_equal(vm_config_validate(&c, err, sizeof err), 0);
    assert_int_equal(vm_config_validate(NULL, err, sizeof err), -1);
}

static void test_copy_and_find(void **state)
{
    json_t *in = parse(FULL);
    struct vm_config c, d;
    char err[256] = "";
    assert_int_equal(vm_config_from_json(in, &c, err, sizeof err), 0);
    assert_int_equal(vm_config_copy(&d, &c), 0);
    vm_config_free(&c);                 /* the copy must not share memory */
    json_t *out = vm_config_to_json(&d);
    assert_true(json_equal(in, out));

    const struct vm_disk *vdb = vm_config_find_disk(&d, "vdb");
    assert_non_null(vdb);
    assert_string_equal(vdb->path, "/var/lib/vmove/vms/web-1/data.qcow2");
    assert_null(vm_config_find_disk(&d, "vdc"));
    assert_null(vm_config_find_disk(&d, NULL));

    json_decref(out);
    json_decref(in);
    vm_config_free(&d);
}

/* ------------------------------------------------------------------ */
/* Files                                                               */

static int make_tmpdir(void **state)
{
    char *dir = xstrdup("/tmp/test_vm_config.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    *state = dir;
    return 0;
}

static int remove_tmpdir(void **state)
{
    remove_tree(*state);
    free(*state);
    return 0;
}

static char *write_tmp(const char *dir, const char *name, const char *text)
{
    char *path = xasprintf("%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_load_missing(void **state)
{
    struct vm_config c;
    char err[256] = "";
    assert_int_equal(vm_config_load("/nonexistent/vmove/vm.json", &c, err, sizeof err), -1);
    assert_string_equal(err, "/nonexistent/vmove/vm.json: No such file or directory");
    assert_true(all_zero(&c, sizeof c));
}

static void test_load_malformed(void **state)
{
    char *path = write_tmp(*state, "bad.json", "{\n  \"name\": \"x\",\n  oops\n}\n");
    char *expect = xasprintf("%s:3:6: ", path);
    struct vm_config c;
    char err[256] = "";
    assert_int_equal(vm_config_load(path, &c, err, sizeof err), -1);
    if (strncmp(err, expect, strlen(expect)) != 0)
        fail_msg("got \"%s\", expected prefix \"%s\"", err, expect);
    assert_true(all_zero(&c, sizeof c));
    free(expect);
    free(path);

    path = write_tmp(*state, "dup.json", "{\"name\": \"a\", \"name\": \"b\"}");
    assert_int_equal(vm_config_load(path, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, ":1:"));
    assert_non_null(strstr(err, "duplicate object key"));
    free(path);

    path = write_tmp(*state, "empty.json", "");
    assert_int_equal(vm_config_load(path, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "empty.json:1:0: "));
    free(path);
}

static void test_load_invalid_config(void **state)
{
    char *path = write_tmp(*state, "vm.json", "{\"version\": 1, \"memory_mib\": 8}");
    struct vm_config c;
    char err[256] = "";
    assert_int_equal(vm_config_load(path, &c, err, sizeof err), -1);
    char *expect = xasprintf("%s: name: missing required field", path);
    assert_string_equal(err, expect);
    free(expect);
    free(path);
}

static void test_save_load_roundtrip(void **state)
{
    json_t *in = parse(FULL);
    struct vm_config c, back;
    char err[256] = "";
    assert_int_equal(vm_config_from_json(in, &c, err, sizeof err), 0);
    char *path = xasprintf("%s/vm.json", (char *)*state);

    mode_t old = umask(0);              /* root's alone even under a permissive umask */
    int r = vm_config_save(path, &c, err, sizeof err);
    umask(old);
    if (r != 0)
        fail_msg("save: %s", err);

    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    char *text;
    size_t len;
    assert_int_equal(read_file(path, &text, &len), 0);
    assert_true(len > 0 && text[len - 1] == '\n');
    assert_non_null(strstr(text, "{\n  \"version\": 1,\n  \"name\": \"web-1\","));  /* pretty */
    free(text);

    assert_int_equal(vm_config_load(path, &back, err, sizeof err), 0);
    json_t *out = vm_config_to_json(&back);
    char *a = dump(in), *b = dump(out);
    assert_string_equal(a, b);
    free(a);
    free(b);

    /* Nothing but vm.json is left behind (no temporary files). */
    DIR *d = opendir(*state);
    int entries = 0;
    for (struct dirent *e; (e = readdir(d));)
        entries += e->d_name[0] != '.';
    closedir(d);
    assert_int_equal(entries, 1);

    json_decref(out);
    json_decref(in);
    vm_config_free(&back);
    vm_config_free(&c);
    free(path);
}

static void test_save_refuses_invalid(void **state)
{
    json_t *in = parse(MINIMAL);
    struct vm_config c;
    char err[256] = "";
    assert_int_equal(vm_config_from_json(in, &c, err, sizeof err), 0);
    c.cpus = 0;
    char *path = xasprintf("%s/vm.json", (char *)*state);
    assert_int_equal(vm_config_save(path, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "cpus: 0 is below the minimum of 1"));
    assert_false(path_exists(path));
    c.cpus = 1;
    char *nodir = xasprintf("%s/no/such/dir/vm.json", (char *)*state);
    assert_int_equal(vm_config_save(nodir, &c, err, sizeof err), -1);
    assert_non_null(strstr(err, "No such file or directory"));
    free(nodir);
    free(path);
    json_decref(in);
    vm_config_free(&c);
}

/* ------------------------------------------------------------------ */
/* Generators                                                          */

static void test_generate_uuid(void **state)
{
    enum { N = 1000 };
    static char uuids[N][37];
    json_t *in = parse(MINIMAL);
    struct vm_config c;
    char err[256] = "";
    assert_int_equal(vm_config_from_json(in, &c, err, sizeof err), 0);
    for (int i = 0; i < N; i++) {
        vm_generate_uuid(uuids[i]);
        assert_int_equal(strlen(uuids[i]), 36);
        assert_int_equal(uuids[i][14], '4');                      /* version 4 */
        assert_non_null(strchr("89ab", uuids[i][19]));             /* RFC 4122 variant */
        memcpy(c.uuid, uuids[i], 37);
        if (vm_config_validate(&c, err, sizeof err) != 0)
            fail_msg("generated %s: %s", uuids[i], err);
        for (int k = 0; k < i; k++)
            assert_string_not_equal(uuids[i], uuids[k]);
    }
    json_decref(in);
    vm_config_free(&c);
}

static void test_generate_mac(void **state)
{
    enum { N = 32 };
    char macs[N][18];
    json_t *in = parse(FULL);
    struct vm_config c;
    char err[256] = "";
    assert_int_equal(vm_config_from_json(in, &c, err, sizeof err), 0);
    int distinct = 0;
    for (int i = 0; i < N; i++) {
        vm_generate_mac(macs[i]);
        assert_int_equal(strncmp(macs[i], "52:54:00:", 9), 0);
        memcpy(c.nics[0].mac, macs[i], 18);
        if (strcmp(macs[i], c.nics[1].mac) == 0)
            continue;                   /* 1 in 2^24: not the generator's fault */
        if (vm_config_validate(&c, err, sizeof err) != 0)
            fail_msg("generated %s: %s", macs[i], err);
        bool seen = false;
        for (int k = 0; k < i; k++)
            seen |= strcmp(macs[i], macs[k]) == 0;
        distinct += !seen;
    }
    /* Only 24 random bits, so a birthday collision is possible but two of
     * them in 32 draws would mean a broken generator. */
    assert_true(distinct >= N - 2);
    json_decref(in);
    vm_config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_roundtrip),
        cmocka_unit_test(test_minimal_defaults),
        cmocka_unit_test(test_boot_from_disk),
        cmocka_unit_test(test_isolation_flag),
        cmocka_unit_test(test_checkpoints_member),
        cmocka_unit_test(test_error_cases),
        cmocka_unit_test(test_not_an_object),
        cmocka_unit_test(test_too_many),
        cmocka_unit_test(test_validate_c_built),
        cmocka_unit_test(test_copy_and_find),
        cmocka_unit_test(test_load_missing),
        cmocka_unit_test_setup_teardown(test_load_malformed, make_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_load_invalid_config, make_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_save_load_roundtrip, make_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_save_refuses_invalid, make_tmpdir, remove_tmpdir),
        cmocka_unit_test(test_generate_uuid),
        cmocka_unit_test(test_generate_mac),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
