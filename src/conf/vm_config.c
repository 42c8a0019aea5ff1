/* vm.json parsing, validation and serialisation.  Format: docs/VM-JSON.md.
 *
 * Parsing is two-stage: a table-driven pass checks structure (unknown
 * fields, types, enum names, integer ranges) and fills a struct vm_config;
 * vm_config_validate() then runs the semantic checks.  The daemon calls the
 * same vm_config_validate() on configs it builds in C, so both paths give
 * identical messages, always starting with the JSON path of the field. */
#include "conf/vm_config.h"

#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------ */
/* Error messages                                                      */

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
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
#define QUOTE_MAX 64
struct quoted {
    char s[QUOTE_MAX + 16];
};

static struct quoted quote(const char *v)
{
    struct quoted q;
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
        if (n + l > QUOTE_MAX) {
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

/* "string \"2\"", "2.5", "true", "null", "an array", ... for type errors. */
static struct quoted describe(const json_t *v)
{
    struct quoted q;
    switch (json_typeof(v)) {
    case JSON_STRING:
        snprintf(q.s, sizeof q.s, "string %.*s", QUOTE_MAX + 4, quote(json_string_value(v)).s);
        break;
    case JSON_INTEGER:
        snprintf(q.s, sizeof q.s, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        snprintf(q.s, sizeof q.s, "%.17g", json_real_value(v));
        if (strspn(q.s, "-0123456789") == strlen(q.s))
            strcat(q.s, ".0");      /* 2.0 must not read as the integer 2 */
        break;
    case JSON_TRUE: snprintf(q.s, sizeof q.s, "true"); break;
    case JSON_FALSE: snprintf(q.s, sizeof q.s, "false"); break;
    case JSON_NULL: snprintf(q.s, sizeof q.s, "null"); break;
    case JSON_ARRAY: snprintf(q.s, sizeof q.s, "an array"); break;
    case JSON_OBJECT: snprintf(q.s, sizeof q.s, "an object"); break;
    }
    return q;
}

/* ------------------------------------------------------------------ */
/* Value checks shared by the parser and vm_config_validate()          */

static int check_range(const char *path, long long v, long long min, long long max,
                       char *err, size_t errlen)
{
    if (v < min)
        return fail(err, errlen, "%s: %lld is below the minimum of %lld", path, v, min);
    if (v > max)
        return fail(err, errlen, "%s: %lld is above the maximum of %lld", path, v, max);
    return 0;
}

/* NULL means the field was never set; "" is never a useful value and
 * usually a templating mistake, so neither is accepted. */
static int check_present(const char *path, const char *s, char *err, size_t errlen)
{
    if (!s)
        return fail(err, errlen, "%s: missing required field", path);
    if (!*s)
        return fail(err, errlen, "%s: must not be empty", path);
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
        return fail(err, errlen,
                    "%s: %s is not a valid name (expected 1-63 characters from "
                    "A-Z a-z 0-9 . _ -, starting with a letter or digit)",
                    path, quote(s).s);
    return 0;
}

static int check_no_control(const char *path, const char *s, char *err, size_t errlen)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return fail(err, errlen,
                        "%s: %s must not contain a newline or other control character",
                        path, quote(s).s);
    return 0;
}

/* Paths are resolved on whichever host runs the VM, never relative to the
 * daemon's working directory, so they must be absolute. */
static int check_abs_path(const char *path, const char *s, char *err, size_t errlen)
{
    if (check_present(path, s, err, errlen) < 0)
        return -1;
    if (s[0] != '/')
        return fail(err, errlen, "%s: %s is not an absolute path", path, quote(s).s);
    if (strlen(s) >= PATH_MAX)
        return fail(err, errlen, "%s: path is longer than %d bytes", path, PATH_MAX - 1);
    return check_no_control(path, s, err, errlen);
}

static bool is_lower_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
}

/* 8-4-4-4-12 lower-case hex.  Lower-case only, so a UUID has one spelling
 * and can be compared with strcmp() across hosts. */
static int check_uuid(const char *path, const char *s, char *err, size_t errlen)
{
    bool ok = strlen(s) == 36;
    for (int i = 0; ok && i < 36; i++)
        ok = (i == 8 || i == 13 || i == 18 || i == 23) ? s[i] == '-' : is_lower_hex(s[i]);
    if (!ok)
        return fail(err, errlen,
                    "%s: %s is not a valid UUID (expected lower-case RFC 4122 form, "
                    "e.g. \"0b5e0a9c-3f0e-4d5e-9a7b-2c1d3e4f5a6b\")",
                    path, quote(s).s);
    if (strcmp(s, "00000000-0000-0000-0000-000000000000") == 0)
        return fail(err, errlen, "%s: the nil UUID is not allowed", path);
    return 0;
}

static int hexval(char ch)
{
    return ch <= '9' ? ch - '0' : ch - 'a' + 10;
}

/* xx:xx:xx:xx:xx:xx lower-case, unicast.  Any OUI is accepted (imported
 * VMs keep their MACs); vm_generate_mac() uses QEMU's 52:54:00. */
static int check_mac(const char *path, const char *s, char *err, size_t errlen)
{
    bool ok = strlen(s) == 17;
    for (int i = 0; ok && i < 17; i++)
        ok = (i % 3 == 2) ? s[i] == ':' : is_lower_hex(s[i]);
    if (!ok)
        return fail(err, errlen,
                    "%s: %s is not a valid MAC address (expected lower-case "
                    "\"xx:xx:xx:xx:xx:xx\", e.g. \"52:54:00:12:34:56\")",
                    path, quote(s).s);
    if (hexval(s[1]) & 1)
        return fail(err, errlen,
                    "%s: %s is a multicast address (the lowest bit of the first "
                    "octet must be 0)", path, quote(s).s);
    if (strcmp(s, "00:00:00:00:00:00") == 0)
        return fail(err, errlen, "%s: the all-zero MAC address is not allowed", path);
    return 0;
}

/* Kept in enum order: the index is the enum value. */
static const char *const bus_names[] = {[VM_DISK_BUS_VIRTIO] = "virtio"};
static const char *const boot_kind_names[] = {[VM_BOOT_KERNEL] = "kernel", [VM_BOOT_DISK] = "disk"};

static const char *enum_name(const char *const *names, size_t n, unsigned v)
{
    return v < n ? names[v] : NULL;
}

/* ------------------------------------------------------------------ */
/* Table-driven structural parser                                      */

struct field;
typedef int (*field_parser)(const struct field *f, json_t *v, const char *path, void *obj,
                            char *err, size_t errlen);

struct field {
    const char *name;
    json_type type;         /* JSON_TRUE stands for "boolean" */
    bool required;
    field_parser parse;
    size_t off;             /* where parse_str/int/u64/bool store the value */
    long long min, max;     /* for parse_int/parse_u64 */
};

static const char *type_name(json_type t)
{
    switch (t) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean (true or false)";
    default: return "a number";
    }
}

static bool type_matches(const json_t *v, json_type t)
{
    return t == JSON_TRUE ? json_is_boolean(v) : json_typeof(v) == t;
}

static void *field_ptr(void *obj, const struct field *f)
{
    return (char *)obj + f->off;
}

static int parse_str(const struct field *f, json_t *v, const char *path, void *obj,
                     char *err, size_t errlen)
{
    /* A json_t built in C may hold "\0"; C strings cannot. */
    if (strlen(json_string_value(v)) != json_string_length(v))
        return fail(err, errlen, "%s: must not contain a NUL character", path);
    *(char **)field_ptr(obj, f) = xstrdup(json_string_value(v));
    return 0;
}

static int parse_int(const struct field *f, json_t *v, const char *path, void *obj,
                     char *err, size_t errlen)
{
    json_int_t x = json_integer_value(v);
    if (check_range(path, x, f->min, f->max, err, errlen) < 0)
        return -1;
    *(int *)field_ptr(obj, f) = (int)x;
    return 0;
}

static int parse_u64(const struct field *f, json_t *v, const char *path, void *obj,
                     char *err, size_t errlen)
{
    json_int_t x = json_integer_value(v);
    if (check_range(path, x, f->min, f->max, err, errlen) < 0)
        return -1;
    *(uint64_t *)field_ptr(obj, f) = (uint64_t)x;
    return 0;
}

static int parse_bool(const struct field *f, json_t *v, const char *path, void *obj,
                      char *err, size_t errlen)
{
    *(bool *)field_ptr(obj, f) = json_is_true(v);
    return 0;
}

static int parse_uuid(const struct field *f, json_t *v, const char *path, void *obj,
                      char *err, size_t errlen)
{
    const char *s = json_string_value(v);
    if (check_uuid(path, s, err, errlen) < 0)   /* also guarantees it fits */
        return -1;
    memcpy(((struct vm_config *)obj)->uuid, s, 37);
    return 0;
}

static int parse_mac(const struct field *f, json_t *v, const char *path, void *obj,
                     char *err, size_t errlen)
{
    const char *s = json_string_value(v);
    if (check_mac(path, s, err, errlen) < 0)    /* also guarantees it fits */
        return -1;
    memcpy(((struct vm_nic *)obj)->mac, s, 18);
    return 0;
}

/* Looks a string up in an enum name table; the error lists the choices. */
static int parse_enum_name(json_t *v, const char *path, const char *const *names, size_t n,
                           unsigned *out, char *err, size_t errlen)
{
    const char *s = json_string_value(v);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (unsigned)i;
            return 0;
        }
    }
    char expected[128] = "";
    for (size_t i = 0; i < n; i++)
        snprintf(expected + strlen(expected), sizeof expected - strlen(expected), "%s\"%s\"",
                 i == 0 ? "" : i + 1 == n ? " or " : ", ", names[i]);
    return fail(err, errlen, "%s: unknown value %s (expected %s)", path, quote(s).s, expected);
}

static int parse_bus(const struct field *f, json_t *v, const char *path, void *obj,
                     char *err, size_t errlen)
{
    unsigned i = 0;
    if (parse_enum_name(v, path, bus_names, ARRAY_LEN(bus_names), &i, err, errlen) < 0)
        return -1;
    ((struct vm_disk *)obj)->bus = (enum vm_disk_bus)i;
    return 0;
}

static int parse_boot_kind(const struct field *f, json_t *v, const char *path, void *obj,
                           char *err, size_t errlen)
{
    unsigned i = 0;
    if (parse_enum_name(v, path, boot_kind_names, ARRAY_LEN(boot_kind_names), &i, err,
                        errlen) < 0)
        return -1;
    ((struct vm_boot *)obj)->kind = (enum vm_boot_kind)i;
    return 0;
}

/* Case-insensitive Levenshtein distance, for "did you mean" hints.  Field
 * names are short; anything long is not a typo of one. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[33];
    if (la > 32 || lb > 32)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t sub = diag + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            size_t best = up + 1 < row[j - 1] + 1 ? up + 1 : row[j - 1] + 1;
            row[j] = sub < best ? sub : best;
            diag = up;
        }
    }
    return row[lb];
}

static const struct field *find_field(const struct field *tab, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(tab[i].name, name) == 0)
            return &tab[i];
    return NULL;
}

static int unknown_field(const char *where, const char *key, const struct field *tab, size_t n,
                         char *err, size_t errlen)
{
    const char *best = NULL;
    size_t best_d = 3;      /* suggest only within two edits */
    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(key, tab[i].name);
        if (d < best_d && d < strlen(tab[i].name)) {
            best = tab[i].name;
            best_d = d;
        }
    }
    char at[96], hint[64] = "";
    if (*where)
        snprintf(at, sizeof at, "in %s", where);
    else
        snprintf(at, sizeof at, "at top level");
    if (best)
        snprintf(hint, sizeof hint, " (did you mean \"%s\"?)", best);
    return fail(err, errlen, "unknown field %s %s%s", quote(key).s, at, hint);
}

/* Checks object `o` at JSON path `where` ("" = top level) against `tab`:
 * first that every key is known (a typo must not silently drop a setting),
 * then, in table order, presence, type and the field's own parser. */
static int parse_object(json_t *o, const char *where, const struct field *tab, size_t n,
                        void *obj, char *err, size_t errlen)
{
    if (!json_is_object(o))
        return fail(err, errlen, "%s: expected an object, got %s",
                    *where ? where : "top level", describe(o).s);
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        if (!find_field(tab, n, key))
            return unknown_field(where, key, tab, n, err, errlen);
    }
    for (size_t i = 0; i < n; i++) {
        const struct field *f = &tab[i];
        char path[96];
        snprintf(path, sizeof path, "%s%s%s", where, *where ? "." : "", f->name);
        v = json_object_get(o, f->name);
        if (!v) {
            if (f->required)
                return fail(err, errlen, "%s: missing required field", path);
            continue;
        }
        if (!type_matches(v, f->type))
            return fail(err, errlen, "%s: expected %s, got %s", path, type_name(f->type),
                        describe(v).s);
        if (f->parse(f, v, path, obj, err, errlen) < 0)
            return -1;
    }
    return 0;
}

#define STR(st, m, req) {#m, JSON_STRING, req, parse_str, offsetof(st, m), 0, 0}

static const struct field disk_fields[] = {
    STR(struct vm_disk, id, true),
    STR(struct vm_disk, path, true),
    {"bus", JSON_STRING, true, parse_bus, 0, 0, 0},
};

static const struct field nic_fields[] = {
    {"switch", JSON_STRING, true, parse_str, offsetof(struct vm_nic, switch_name), 0, 0},
    {"mac", JSON_STRING, true, parse_mac, 0, 0, 0},
};

static const struct field boot_fields[] = {
    {"kind", JSON_STRING, true, parse_boot_kind, 0, 0, 0},
    STR(struct vm_boot, kernel, false),
    STR(struct vm_boot, initrd, false),
    STR(struct vm_boot, append, false),
};

static const struct field flag_fields[] = {
    {"ha", JSON_TRUE, false, parse_bool, offsetof(struct vm_config, ha), 0, 0},
};

static int parse_disks(const struct field *f, json_t *v, const char *path, void *obj,
                       char *err, size_t errlen)
{
    struct vm_config *c = obj;
    size_t n = json_array_size(v);
    if (n > VM_MAX_DISKS)
        return fail(err, errlen, "%s: %zu entries is above the maximum of %d", path, n,
                    VM_MAX_DISKS);
    if (n == 0)
        return 0;
    c->disks = xcalloc(n, sizeof *c->disks);
    c->n_disks = n;     /* set first: vm_config_free() cleans up a partial parse */
    for (size_t i = 0; i < n; i++) {
        char where[32];
        snprintf(where, sizeof where, "%s[%zu]", path, i);
        if (parse_object(json_array_get(v, i), where, disk_fields, ARRAY_LEN(disk_fields),
                         &c->disks[i], err, errlen) < 0)
            return -1;
    }
    return 0;
}

static int parse_nics(const struct field *f, json_t *v, const char *path, void *obj,
                      char *err, size_t errlen)
{
    struct vm_config *c = obj;
    size_t n = json_array_size(v);
    if (n > VM_MAX_NICS)
        return fail(err, errlen, "%s: %zu entries is above the maximum of %d", path, n,
                    VM_MAX_NICS);
    if (n == 0)
        return 0;
    c->nics = xcalloc(n, sizeof *c->nics);
    c->n_nics = n;
    for (size_t i = 0; i < n; i++) {
        char where[32];
        snprintf(where, sizeof where, "%s[%zu]", path, i);
        if (parse_object(json_array_get(v, i), where, nic_fields, ARRAY_LEN(nic_fields),
                         &c->nics[i], err, errlen) < 0)
            return -1;
    }
    return 0;
}

static int parse_boot(const struct field *f, json_t *v, const char *path, void *obj,
                      char *err, size_t errlen)
{
    return parse_object(v, path, boot_fields, ARRAY_LEN(boot_fields),
                        &((struct vm_config *)obj)->boot, err, errlen);
}

static int parse_flags(const struct field *f, json_t *v, const char *path, void *obj,
                       char *err, size_t errlen)
{
    return parse_object(v, path, flag_fields, ARRAY_LEN(flag_fields), obj, err, errlen);
}

static const struct field config_fields[] = {
    {"version", JSON_INTEGER, true, parse_int, offsetof(struct vm_config, version),
     VM_CONFIG_VERSION, VM_CONFIG_VERSION},
    STR(struct vm_config, name, true),
    {"uuid", JSON_STRING, true, parse_uuid, 0, 0, 0},
    {"memory_mib", JSON_INTEGER, true, parse_u64, offsetof(struct vm_config, memory_mib),
     VM_MEMORY_MIB_MIN, VM_MEMORY_MIB_MAX},
    {"cpus", JSON_INTEGER, true, parse_int, offsetof(struct vm_config, cpus), VM_CPUS_MIN,
     VM_CPUS_MAX},
    STR(struct vm_config, machine, true),
    STR(struct vm_config, cpu_model, false),
    {"disks", JSON_ARRAY, false, parse_disks, 0, 0, 0},
    {"nics", JSON_ARRAY, false, parse_nics, 0, 0, 0},
    {"boot", JSON_OBJECT, true, parse_boot, 0, 0, 0},
    {"flags", JSON_OBJECT, false, parse_flags, 0, 0, 0},
};

/* Version first, before anything else: a newer file may legitimately have
 * fields this reader does not know, and "unknown field" would hide the
 * real problem. */
static int check_version(const char *path, long long v, char *err, size_t errlen)
{
    if (v > VM_CONFIG_VERSION)
        return fail(err, errlen, "%s: %lld is newer than this vmove supports (%d)", path, v,
                    VM_CONFIG_VERSION);
    if (v < VM_CONFIG_VERSION)
        return fail(err, errlen, "%s: %lld is not a valid version (expected %d)", path, v,
                    VM_CONFIG_VERSION);
    return 0;
}

int vm_config_from_json(json_t *j, struct vm_config *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!j)
        return fail(err, errlen, "top level: no JSON document");
    json_t *ver = json_object_get(j, "version");    /* NULL-safe for non-objects */
    if (json_is_integer(ver) && check_version("version", json_integer_value(ver), err, errlen) < 0)
        return -1;

    struct vm_config tmp = {0};
    if (parse_object(j, "", config_fields, ARRAY_LEN(config_fields), &tmp, err, errlen) < 0 ||
        vm_config_validate(&tmp, err, errlen) < 0) {
        vm_config_free(&tmp);
        return -1;
    }
    *out = tmp;
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
        return fail(err, errlen, "%s: %s is not a valid disk id (expected \"vda\" .. \"vdz\")",
                    p, quote(d->id).s);
    for (size_t k = 0; k < i; k++)
        if (strcmp(c->disks[k].id, d->id) == 0)
            return fail(err, errlen, "%s: %s is already used by disks[%zu]", p,
                        quote(d->id).s, k);

    snprintf(p, sizeof p, "disks[%zu].path", i);
    if (check_abs_path(p, d->path, err, errlen) < 0)
        return -1;
    /* Two drives on one qcow2 file would corrupt it. */
    for (size_t k = 0; k < i; k++)
        if (strcmp(c->disks[k].path, d->path) == 0)
            return fail(err, errlen, "%s: %s is already used by disks[%zu]", p,
                        quote(d->path).s, k);

    snprintf(p, sizeof p, "disks[%zu].bus", i);
    if (!enum_name(bus_names, ARRAY_LEN(bus_names), (unsigned)d->bus))
        return fail(err, errlen, "%s: invalid value %d", p, (int)d->bus);
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
        return fail(err, errlen,
                    "%s: %s is longer than %d characters (the Linux interface name limit)",
                    p, quote(n->switch_name).s, VM_SWITCH_NAME_MAX);

    snprintf(p, sizeof p, "nics[%zu].mac", i);
    if (check_mac(p, n->mac, err, errlen) < 0)
        return -1;
    for (size_t k = 0; k < i; k++)
        if (strcmp(c->nics[k].mac, n->mac) == 0)
            return fail(err, errlen, "%s: %s is already used by nics[%zu]", p, quote(n->mac).s, k);
    return 0;
}

static int validate_kernel_boot(const struct vm_boot *b, char *err, size_t errlen)
{
    if (!b->kernel)
        return fail(err, errlen, "boot.kernel: required when boot.kind is \"kernel\"");
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
            return fail(err, errlen, "boot.%s: not allowed when boot.kind is \"disk\"", stray);
        if (c->n_disks == 0)
            return fail(err, errlen, "boot.kind: \"disk\" requires at least one disk in \"disks\"");
        return 0;
    }
    }
    return fail(err, errlen, "boot.kind: invalid value %d", (int)b->kind);
}

int vm_config_validate(const struct vm_config *c, char *err, size_t errlen)
{
    if (!c)
        return fail(err, errlen, "top level: no config");
    if (check_version("version", c->version, err, errlen) < 0 ||
        check_name("name", c->name, err, errlen) < 0 ||
        check_uuid("uuid", c->uuid, err, errlen) < 0)
        return -1;
    /* Clamp only so a value beyond long long still reads as "too big". */
    long long mem = c->memory_mib > (uint64_t)LLONG_MAX ? LLONG_MAX : (long long)c->memory_mib;
    if (check_range("memory_mib", mem, VM_MEMORY_MIB_MIN, VM_MEMORY_MIB_MAX, err, errlen) < 0 ||
        check_range("cpus", c->cpus, VM_CPUS_MIN, VM_CPUS_MAX, err, errlen) < 0 ||
        check_name("machine", c->machine, err, errlen) < 0)
        return -1;
    if (c->cpu_model && check_name("cpu_model", c->cpu_model, err, errlen) < 0)
        return -1;

    if (c->n_disks > VM_MAX_DISKS)
        return fail(err, errlen, "disks: %zu entries is above the maximum of %d", c->n_disks,
                    VM_MAX_DISKS);
    if (c->n_disks && !c->disks)
        return fail(err, errlen, "disks: n_disks is %zu but disks is NULL", c->n_disks);
    for (size_t i = 0; i < c->n_disks; i++)
        if (validate_disk(c, i, err, errlen) < 0)
            return -1;

    if (c->n_nics > VM_MAX_NICS)
        return fail(err, errlen, "nics: %zu entries is above the maximum of %d", c->n_nics,
                    VM_MAX_NICS);
    if (c->n_nics && !c->nics)
        return fail(err, errlen, "nics: n_nics is %zu but nics is NULL", c->n_nics);
    for (size_t i = 0; i < c->n_nics; i++)
        if (validate_nic(c, i, err, errlen) < 0)
            return -1;

    return validate_boot(c, err, errlen);
}

/* ------------------------------------------------------------------ */
/* Serialisation                                                       */

/* Adds v under k; false (and nothing added) if v could not be built, which
 * for json_string() means invalid UTF-8. */
static bool set(json_t *o, const char *k, json_t *v)
{
    return v && json_object_set_new(o, k, v) == 0;
}

static json_t *disk_to_json(const struct vm_disk *d, bool *ok)
{
    json_t *o = json_object();
    const char *bus = enum_name(bus_names, ARRAY_LEN(bus_names), (unsigned)d->bus);
    *ok &= set(o, "id", json_string(d->id));
    *ok &= set(o, "path", json_string(d->path));
    *ok &= set(o, "bus", json_string(bus));
    return o;
}

static json_t *nic_to_json(const struct vm_nic *n, bool *ok)
{
    json_t *o = json_object();
    *ok &= set(o, "switch", json_string(n->switch_name));
    *ok &= set(o, "mac", json_string(n->mac));
    return o;
}

static json_t *boot_to_json(const struct vm_boot *b, bool *ok)
{
    json_t *o = json_object();
    const char *kind = enum_name(boot_kind_names, ARRAY_LEN(boot_kind_names), (unsigned)b->kind);
    *ok &= set(o, "kind", json_string(kind));
    if (b->kernel)
        *ok &= set(o, "kernel", json_string(b->kernel));
    if (b->initrd)
        *ok &= set(o, "initrd", json_string(b->initrd));
    if (b->append)
        *ok &= set(o, "append", json_string(b->append));
    return o;
}

json_t *vm_config_to_json(const struct vm_config *c)
{
    bool ok = true;
    json_t *j = json_object();
    ok &= set(j, "version", json_integer(c->version));
    ok &= set(j, "name", json_string(c->name));
    ok &= set(j, "uuid", json_string(c->uuid));
    ok &= set(j, "memory_mib", json_integer((json_int_t)c->memory_mib));
    ok &= set(j, "cpus", json_integer(c->cpus));
    ok &= set(j, "machine", json_string(c->machine));
    if (c->cpu_model)
        ok &= set(j, "cpu_model", json_string(c->cpu_model));

    json_t *disks = json_array(), *nics = json_array(), *flags = json_object();
    for (size_t i = 0; i < c->n_disks; i++)
        json_array_append_new(disks, disk_to_json(&c->disks[i], &ok));
    for (size_t i = 0; i < c->n_nics; i++)
        json_array_append_new(nics, nic_to_json(&c->nics[i], &ok));
    ok &= set(flags, "ha", json_boolean(c->ha));
    ok &= set(j, "disks", disks);
    ok &= set(j, "nics", nics);
    json_t *boot = boot_to_json(&c->boot, &ok);   /* not inline: it writes ok */
    ok &= set(j, "boot", boot);
    ok &= set(j, "flags", flags);
    if (!ok) {
        json_decref(j);
        return NULL;
    }
    return j;
}

/* ------------------------------------------------------------------ */
/* Files                                                               */

int vm_config_load(const char *path, struct vm_config *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char *buf;
    size_t len;
    if (read_file(path, &buf, &len) < 0)
        return fail(err, errlen, "%s: %s", path, strerror(errno));
    json_error_t je;
    /* Duplicate keys would make the file mean whatever the parser picks. */
    json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    free(buf);
    if (!j)
        return fail(err, errlen, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    char inner[512];
    int r = vm_config_from_json(j, out, inner, sizeof inner);
    json_decref(j);
    if (r < 0)
        return fail(err, errlen, "%s: %s", path, inner);
    return 0;
}

int vm_config_save(const char *path, const struct vm_config *c, char *err, size_t errlen)
{
    char inner[512];
    if (vm_config_validate(c, inner, sizeof inner) < 0)
        return fail(err, errlen, "%s: refusing to save an invalid config: %s", path, inner);
    json_t *j = vm_config_to_json(c);
    if (!j)
        return fail(err, errlen, "%s: cannot encode config (a string is not valid UTF-8)", path);
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (!text)
        abort();    /* only fails on OOM, like xmalloc */
    char *data = xasprintf("%s\n", text);
    free(text);
    int r = write_file_atomic(path, data, strlen(data), 0600);
    int saved = errno;
    free(data);
    /* vm.json names disks, kernels and the guest's command line: root's
     * alone, like everything under the state directory (docs/SECURITY.md). */
    if (r < 0 || chmod(path, 0600) < 0)
        return fail(err, errlen, "%s: %s", path, strerror(r < 0 ? saved : errno));
    return 0;
}

/* ------------------------------------------------------------------ */
/* Lifetime and helpers                                                */

void vm_config_free(struct vm_config *c)
{
    if (!c)
        return;
    free(c->name);
    free(c->machine);
    free(c->cpu_model);
    for (size_t i = 0; i < c->n_disks && c->disks; i++) {
        free(c->disks[i].id);
        free(c->disks[i].path);
    }
    free(c->disks);
    for (size_t i = 0; i < c->n_nics && c->nics; i++)
        free(c->nics[i].switch_name);
    free(c->nics);
    free(c->boot.kernel);
    free(c->boot.initrd);
    free(c->boot.append);
    memset(c, 0, sizeof *c);
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

int vm_config_copy(struct vm_config *dst, const struct vm_config *src)
{
    *dst = *src;    /* scalars and fixed arrays; pointers replaced below */
    dst->name = dup_or_null(src->name);
    dst->machine = dup_or_null(src->machine);
    dst->cpu_model = dup_or_null(src->cpu_model);
    dst->disks = src->n_disks ? xcalloc(src->n_disks, sizeof *dst->disks) : NULL;
    for (size_t i = 0; i < src->n_disks; i++) {
        dst->disks[i] = src->disks[i];
        dst->disks[i].id = dup_or_null(src->disks[i].id);
        dst->disks[i].path = dup_or_null(src->disks[i].path);
    }
    dst->nics = src->n_nics ? xcalloc(src->n_nics, sizeof *dst->nics) : NULL;
    for (size_t i = 0; i < src->n_nics; i++) {
        dst->nics[i] = src->nics[i];
        dst->nics[i].switch_name = dup_or_null(src->nics[i].switch_name);
    }
    dst->boot.kernel = dup_or_null(src->boot.kernel);
    dst->boot.initrd = dup_or_null(src->boot.initrd);
    dst->boot.append = dup_or_null(src->boot.append);
    return 0;
}

/* There is no safe fallback for missing randomness (a predictable UUID or
 * MAC collides across hosts), and getrandom() only fails on kernels older
 * than 3.17, so give up loudly like xmalloc does. */
static void random_bytes(unsigned char *buf, size_t n)
{
    while (n) {
        ssize_t r = getrandom(buf, n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            abort();
        buf += r;
        n -= (size_t)r;
    }
}

void vm_generate_uuid(char out[37])
{
    unsigned char b[16];
    random_bytes(b, sizeof b);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);   /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);   /* RFC 4122 variant */
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
             b[13], b[14], b[15]);
}

void vm_generate_mac(char out[18])
{
    unsigned char b[3];
    random_bytes(b, sizeof b);
    snprintf(out, 18, "52:54:00:%02x:%02x:%02x", b[0], b[1], b[2]);
}

const struct vm_disk *vm_config_find_disk(const struct vm_config *c, const char *id)
{
    if (!c || !id)
        return NULL;
    for (size_t i = 0; i < c->n_disks; i++)
        if (c->disks[i].id && strcmp(c->disks[i].id, id) == 0)
            return &c->disks[i];
    return NULL;
}
