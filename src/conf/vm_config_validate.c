/* vm.json: the checks of single values shared by the parser and
 * vm_config_validate(), and the semantic validation itself.  Every message
 * starts with the JSON path of the field (docs/VM-JSON.md). */
#include "conf/vm_config.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "conf/vm_config_internal.h"

/* ------------------------------------------------------------------ */
/* Error messages                                                      */

int vm_config_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* A user-supplied string, quoted and escaped for a message.  Cut short so a
 * megabyte of garbage cannot flood a log line; control characters escaped
 * so a value with a newline cannot forge a second log line. */
struct vm_config_quoted vm_config_quote(const char *v)
{
    struct vm_config_quoted q;
    size_t n = 0;
    q.s[n++] = '"';
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\')
            snprintf(esc, sizeof esc, "\\%c", *p);
        else if (*p == '\n')
            snprintf(esc, sizeof esc, "\\n");
        else if (*p < 0x20 || *p == 0x7f)
            snprintf(esc, sizeof esc, "\\u%04x", *p);
        else
            snprintf(esc, sizeof esc, "%c", *p);
        size_t l = strlen(esc);
        if (n + l > VM_CONFIG_QUOTE_MAX) {
            /* Do not leave half a UTF-8 sequence before the ellipsis. */
            while (n > 1 && ((unsigned char)q.s[n - 1] & 0xc0) == 0x80)
                n--;
            if (n > 1 && (unsigned char)q.s[n - 1] >= 0xc0)
                n--;
            memcpy(q.s + n, "...", 3);
            n += 3;
            break;
        }
        memcpy(q.s + n, esc, l);
        n += l;
    }
    q.s[n++] = '"';
    q.s[n] = 0;
    return q;
}

/* ------------------------------------------------------------------ */
/* Value checks shared by the parser and vm_config_validate()          */

int vm_config_check_range(const char *path, long long v, long long min, long long max,
                       char *err, size_t errlen)
{
    if (v < min)
        return vm_config_fail(err, errlen, "%s: %lld is below the minimum of %lld", path, v, min);
    if (v > max)
        return vm_config_fail(err, errlen, "%s: %lld is above the maximum of %lld", path, v, max);
    return 0;
}

/* NULL means the field was never set; "" is never a useful value and
 * usually a templating mistake, so neither is accepted. */
static int check_present(const char *path, const char *s, char *err, size_t errlen)
{
    if (!s)
        return vm_config_fail(err, errlen, "%s: missing required field", path);
    if (!*s)
        return vm_config_fail(err, errlen, "%s: must not be empty", path);
    return 0;
}

/* Names and QEMU tokens (machine, cpu_model) end up on command lines and in
 * file names, so they get the restrictive valid_name() alphabet: no '/',
 * no ',' (QEMU's option separator), no spaces. */
static int check_name(const char *path, const char *s, char *err, size_t errlen)
{
    if (check_present(path, s, err, errlen) < 0)
        return -1;
    if (!valid_name(s))
        return vm_config_fail(err, errlen,
                    "%s: %s is not a valid name (expected 1-63 characters from "
                    "A-Z a-z 0-9 . _ -, starting with a letter or digit)",
                    path, vm_config_quote(s).s);
    return 0;
}

static int check_no_control(const char *path, const char *s, char *err, size_t errlen)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return vm_config_fail(err, errlen,
                        "%s: %s must not contain a newline or other control character",
                        path, vm_config_quote(s).s);
    return 0;
}

/* Paths are resolved on whichever host runs the VM, never relative to the
 * daemon's working directory, so they must be absolute. */
static int check_abs_path(const char *path, const char *s, char *err, size_t errlen)
{
    if (check_present(path, s, err, errlen) < 0)
        return -1;
    if (s[0] != '/')
        return vm_config_fail(err, errlen, "%s: %s is not an absolute path", path, vm_config_quote(s).s);
    if (strlen(s) >= PATH_MAX)
        return vm_config_fail(err, errlen, "%s: path is longer than %d bytes", path, PATH_MAX - 1);
    return check_no_control(path, s, err, errlen);
}

static bool is_lower_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
}

/* 8-4-4-4-12 lower-case hex.  Lower-case only, so a UUID has one spelling
 * and can be compared with strcmp() across hosts. */
int vm_config_check_uuid(const char *path, const char *s, char *err, size_t errlen)
{
    bool ok = strlen(s) == 36;
    for (int i = 0; ok && i < 36; i++)
        ok = (i == 8 || i == 13 || i == 18 || i == 23) ? s[i] == '-' : is_lower_hex(s[i]);
    if (!ok)
        return vm_config_fail(err, errlen,
                    "%s: %s is not a valid UUID (expected lower-case RFC 4122 form, "
                    "e.g. \"0b5e0a9c-3f0e-4d5e-9a7b-2c1d3e4f5a6b\")",
                    path, vm_config_quote(s).s);
    if (strcmp(s, "00000000-0000-0000-0000-000000000000") == 0)
        return vm_config_fail(err, errlen, "%s: the nil UUID is not allowed", path);
    return 0;
}

static int hexval(char ch)
{
    return ch <= '9' ? ch - '0' : ch - 'a' + 10;
}

/* xx:xx:xx:xx:xx:xx lower-case, unicast.  Any OUI is accepted (imported
 * VMs keep their MACs); vm_generate_mac() uses QEMU's 52:54:00. */
int vm_config_check_mac(const char *path, const char *s, char *err, size_t errlen)
{
    bool ok = strlen(s) == 17;
    for (int i = 0; ok && i < 17; i++)
        ok = (i % 3 == 2) ? s[i] == ':' : is_lower_hex(s[i]);
    if (!ok)
        return vm_config_fail(err, errlen,
                    "%s: %s is not a valid MAC address (expected lower-case "
                    "\"xx:xx:xx:xx:xx:xx\", e.g. \"52:54:00:12:34:56\")",
                    path, vm_config_quote(s).s);
    if (hexval(s[1]) & 1)
        return vm_config_fail(err, errlen,
                    "%s: %s is a multicast address (the lowest bit of the first "
                    "octet must be 0)", path, vm_config_quote(s).s);
    if (strcmp(s, "00:00:00:00:00:00") == 0)
        return vm_config_fail(err, errlen, "%s: the all-zero MAC address is not allowed", path);
    return 0;
}

/* Kept in enum order: the index is the enum value. */
const char *const vm_config_bus_names[VM_DISK_BUS_COUNT] = {[VM_DISK_BUS_VIRTIO] = "virtio"};
const char *const vm_config_boot_kind_names[VM_BOOT_KIND_COUNT] = {[VM_BOOT_KERNEL] = "kernel",
                                                                   [VM_BOOT_DISK] = "disk"};

const char *vm_config_enum_name(const char *const *names, size_t n, unsigned v)
{
    return v < n ? names[v] : NULL;
}

/* Version first, before anything else: a newer file may legitimately have
 * fields this reader does not know, and "unknown field" would hide the
 * real problem. */
int vm_config_check_version(const char *path, long long v, char *err, size_t errlen)
{
    if (v > VM_CONFIG_VERSION)
        return vm_config_fail(err, errlen, "%s: %lld is newer than this vmove supports (%d)", path, v,
                    VM_CONFIG_VERSION);
    if (v < VM_CONFIG_VERSION)
        return vm_config_fail(err, errlen, "%s: %lld is not a valid version (expected %d)", path, v,
                    VM_CONFIG_VERSION);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Semantic validation                                                 */

static int validate_disk(const struct vm_config *c, size_t i, char *err, size_t errlen)
{
    const struct vm_disk *d = &c->disks[i];
    char p[48];
    snprintf(p, sizeof p, "disks[%zu].id", i);
    if (check_present(p, d->id, err, errlen) < 0)
        return -1;
    /* The id is the guest device name, so only what virtio-blk names. */
    if (strlen(d->id) != 3 || strncmp(d->id, "vd", 2) != 0 || d->id[2] < 'a' || d->id[2] > 'z')
        return vm_config_fail(err, errlen, "%s: %s is not a valid disk id (expected \"vda\" .. \"vdz\")",
                    p, vm_config_quote(d->id).s);
    for (size_t k = 0; k < i; k++)
        if (strcmp(c->disks[k].id, d->id) == 0)
            return vm_config_fail(err, errlen, "%s: %s is already used by disks[%zu]", p,
                        vm_config_quote(d->id).s, k);

    snprintf(p, sizeof p, "disks[%zu].path", i);
    if (check_abs_path(p, d->path, err, errlen) < 0)
        return -1;
    /* Two drives on one qcow2 file would corrupt it. */
    for (size_t k = 0; k < i; k++)
        if (strcmp(c->disks[k].path, d->path) == 0)
            return vm_config_fail(err, errlen, "%s: %s is already used by disks[%zu]", p,
                        vm_config_quote(d->path).s, k);

    snprintf(p, sizeof p, "disks[%zu].bus", i);
    if (!vm_config_enum_name(vm_config_bus_names, ARRAY_LEN(vm_config_bus_names), (unsigned)d->bus))
        return vm_config_fail(err, errlen, "%s: invalid value %d", p, (int)d->bus);
    return 0;
}

static int validate_nic(const struct vm_config *c, size_t i, char *err, size_t errlen)
{
    const struct vm_nic *n = &c->nics[i];
    char p[48];
    snprintf(p, sizeof p, "nics[%zu].switch", i);
    if (check_name(p, n->switch_name, err, errlen) < 0)
        return -1;
    if (strlen(n->switch_name) > VM_SWITCH_NAME_MAX)
        return vm_config_fail(err, errlen,
                    "%s: %s is longer than %d characters (the Linux interface name limit)",
                    p, vm_config_quote(n->switch_name).s, VM_SWITCH_NAME_MAX);

    snprintf(p, sizeof p, "nics[%zu].mac", i);
    if (vm_config_check_mac(p, n->mac, err, errlen) < 0)
        return -1;
    for (size_t k = 0; k < i; k++)
        if (strcmp(c->nics[k].mac, n->mac) == 0)
            return vm_config_fail(err, errlen, "%s: %s is already used by nics[%zu]", p, vm_config_quote(n->mac).s, k);
    return 0;
}

static int validate_kernel_boot(const struct vm_boot *b, char *err, size_t errlen)
{
    if (!b->kernel)
        return vm_config_fail(err, errlen, "boot.kernel: required when boot.kind is \"kernel\"");
    if (check_abs_path("boot.kernel", b->kernel, err, errlen) < 0)
        return -1;
    if (b->initrd && check_abs_path("boot.initrd", b->initrd, err, errlen) < 0)
        return -1;
    if (b->append) {
        /* The command line reaches QEMU as one argv element; a newline
         * would be passed to the guest kernel verbatim and is always a
         * mistake.  Omit the field rather than leave it empty. */
        if (check_present("boot.append", b->append, err, errlen) < 0 ||
            check_no_control("boot.append", b->append, err, errlen) < 0)
            return -1;
    }
    return 0;
}

static int validate_boot(const struct vm_config *c, char *err, size_t errlen)
{
    const struct vm_boot *b = &c->boot;
    switch (b->kind) {
    case VM_BOOT_KERNEL:
        return validate_kernel_boot(b, err, errlen);
    case VM_BOOT_DISK: {
        const char *stray = b->kernel ? "kernel" : b->initrd ? "initrd" : b->append ? "append" : NULL;
        if (stray)
            return vm_config_fail(err, errlen, "boot.%s: not allowed when boot.kind is \"disk\"", stray);
        if (c->n_disks == 0)
            return vm_config_fail(err, errlen, "boot.kind: \"disk\" requires at least one disk in \"disks\"");
        return 0;
    }
    }
    return vm_config_fail(err, errlen, "boot.kind: invalid value %d", (int)b->kind);
}

int vm_config_validate(const struct vm_config *c, char *err, size_t errlen)
{
    if (!c)
        return vm_config_fail(err, errlen, "top level: no config");
    if (vm_config_check_version("version", c->version, err, errlen) < 0 ||
        check_name("name", c->name, err, errlen) < 0 ||
        vm_config_check_uuid("uuid", c->uuid, err, errlen) < 0)
        return -1;
    /* Clamp only so a value beyond long long still reads as "too big". */
    long long mem = c->memory_mib > (uint64_t)LLONG_MAX ? LLONG_MAX : (long long)c->memory_mib;
    if (vm_config_check_range("memory_mib", mem, VM_MEMORY_MIB_MIN, VM_MEMORY_MIB_MAX, err, errlen) < 0 ||
        vm_config_check_range("cpus", c->cpus, VM_CPUS_MIN, VM_CPUS_MAX, err, errlen) < 0 ||
        check_name("machine", c->machine, err, errlen) < 0)
        return -1;
    if (c->cpu_model && check_name("cpu_model", c->cpu_model, err, errlen) < 0)
        return -1;

    if (c->n_disks > VM_MAX_DISKS)
        return vm_config_fail(err, errlen, "disks: %zu entries is above the maximum of %d", c->n_disks,
                    VM_MAX_DISKS);
    if (c->n_disks && !c->disks)
        return vm_config_fail(err, errlen, "disks: n_disks is %zu but disks is NULL", c->n_disks);
    for (size_t i = 0; i < c->n_disks; i++)
        if (validate_disk(c, i, err, errlen) < 0)
            return -1;

    if (c->n_nics > VM_MAX_NICS)
        return vm_config_fail(err, errlen, "nics: %zu entries is above the maximum of %d", c->n_nics,
                    VM_MAX_NICS);
    if (c->n_nics && !c->nics)
        return vm_config_fail(err, errlen, "nics: n_nics is %zu but nics is NULL", c->n_nics);
    for (size_t i = 0; i < c->n_nics; i++)
        if (validate_nic(c, i, err, errlen) < 0)
            return -1;
    if (c->ha_keep && !c->ha)
        return vm_config_fail(err, errlen, "flags.isolation: \"keep\" is for an HA VM (flags.ha)");

    return validate_boot(c, err, errlen);
}
