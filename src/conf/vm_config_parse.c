/* vm.json: the table-driven structural parser (unknown fields, types, enum
 * names, integer ranges) behind vm_config_from_json(); the semantic checks
 * follow in vm_config_validate() (vm_config_validate.c). */
#include "conf/vm_config.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "conf/vm_config_internal.h"

/* "string \"2\"", "2.5", "true", "null", "an array", ... for type errors. */
static struct vm_config_quoted describe(const json_t *v)
{
    struct vm_config_quoted q;
    switch (json_typeof(v)) {
    case JSON_STRING:
        snprintf(q.s, sizeof q.s, "string %.*s", VM_CONFIG_QUOTE_MAX + 4, vm_config_quote(json_string_value(v)).s);
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
/* Table-driven structural parser                                      */

struct field;
typedef int (*field_parser)(const struct field *f, json_t *v, const char *path, void *obj,
                            char *err, size_t errlen);

struct field {
    const char *name;
    json_type type;         /* JSON_TRUE stands for "boolean" */
    bool required;
    field_parser parse;
    size_t off;             /* where parse_str/int/u64/boolean store the value */
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
        return vm_config_fail(err, errlen, "%s: must not contain a NUL character", path);
    *(char **)field_ptr(obj, f) = xstrdup(json_string_value(v));
    return 0;
}

static int parse_int(const struct field *f, json_t *v, const char *path, void *obj,
                     char *err, size_t errlen)
{
    json_int_t x = json_integer_value(v);
    if (vm_config_check_range(path, x, f->min, f->max, err, errlen) < 0)
        return -1;
    *(int *)field_ptr(obj, f) = (int)x;
    return 0;
}

static int parse_u64(const struct field *f, json_t *v, const char *path, void *obj,
                     char *err, size_t errlen)
{
    json_int_t x = json_integer_value(v);
    if (vm_config_check_range(path, x, f->min, f->max, err, errlen) < 0)
        return -1;
    *(uint64_t *)field_ptr(obj, f) = (uint64_t)x;
    return 0;
}

static int parse_boolean(const struct field *f, json_t *v, const char *path, void *obj,
                      char *err, size_t errlen)
{
    *(bool *)field_ptr(obj, f) = json_is_true(v);
    return 0;
}

static int parse_uuid(const struct field *f, json_t *v, const char *path, void *obj,
                      char *err, size_t errlen)
{
    const char *s = json_string_value(v);
    if (vm_config_check_uuid(path, s, err, errlen) < 0)   /* also guarantees it fits */
        return -1;
    memcpy(((struct vm_config *)obj)->uuid, s, 37);
    return 0;
}

static int parse_mac(const struct field *f, json_t *v, const char *path, void *obj,
                     char *err, size_t errlen)
{
    const char *s = json_string_value(v);
    if (vm_config_check_mac(path, s, err, errlen) < 0)    /* also guarantees it fits */
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
    return vm_config_fail(err, errlen, "%s: unknown value %s (expected %s)", path, vm_config_quote(s).s, expected);
}

static int parse_bus(const struct field *f, json_t *v, const char *path, void *obj,
                     char *err, size_t errlen)
{
    unsigned i = 0;
    if (parse_enum_name(v, path, vm_config_bus_names, ARRAY_LEN(vm_config_bus_names), &i, err, errlen) < 0)
        return -1;
    ((struct vm_disk *)obj)->bus = (enum vm_disk_bus)i;
    return 0;
}

static int parse_boot_kind(const struct field *f, json_t *v, const char *path, void *obj,
                           char *err, size_t errlen)
{
    unsigned i = 0;
    if (parse_enum_name(v, path, vm_config_boot_kind_names, ARRAY_LEN(vm_config_boot_kind_names), &i, err,
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
    return vm_config_fail(err, errlen, "unknown field %s %s%s", vm_config_quote(key).s, at, hint);
}

/* Checks object `o` at JSON path `where` ("" = top level) against `tab`:
 * first that every key is known (a typo must not silently drop a setting),
 * then, in table order, presence, type and the field's own parser. */
static int parse_object(json_t *o, const char *where, const struct field *tab, size_t n,
                        void *obj, char *err, size_t errlen)
{
    if (!json_is_object(o))
        return vm_config_fail(err, errlen, "%s: expected an object, got %s",
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
                return vm_config_fail(err, errlen, "%s: missing required field", path);
            continue;
        }
        if (!type_matches(v, f->type))
            return vm_config_fail(err, errlen, "%s: expected %s, got %s", path, type_name(f->type),
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

static int parse_isolation(const struct field *f, json_t *v, const char *path, void *obj,
                           char *err, size_t errlen)
{
    static const char *const names[] = {"stop", "keep"};
    unsigned i = 0;
    if (parse_enum_name(v, path, names, ARRAY_LEN(names), &i, err, errlen) < 0)
        return -1;
    ((struct vm_config *)obj)->ha_keep = i == 1;
    return 0;
}

static const struct field flag_fields[] = {
    {"ha", JSON_TRUE, false, parse_boolean, offsetof(struct vm_config, ha), 0, 0},
    {"isolation", JSON_STRING, false, parse_isolation, 0, 0, 0},
};

static int parse_disks(const struct field *f, json_t *v, const char *path, void *obj,
                       char *err, size_t errlen)
{
    struct vm_config *c = obj;
    size_t n = json_array_size(v);
    if (n > VM_MAX_DISKS)
        return vm_config_fail(err, errlen, "%s: %zu entries is above the maximum of %d", path, n,
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
        return vm_config_fail(err, errlen, "%s: %zu entries is above the maximum of %d", path, n,
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

/* Kept opaque (src/checkpoint/ owns its meaning): an object whose "list"
 * is an array, so a config without that shape is refused here already. */
static int parse_checkpoints(const struct field *f, json_t *v, const char *path, void *obj,
                             char *err, size_t errlen)
{
    (void)f;
    if (!json_is_array(json_object_get(v, "list")))
        return vm_config_fail(err, errlen, "%s.list: missing or not an array", path);
    ((struct vm_config *)obj)->checkpoints = json_deep_copy(v);
    return 0;
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
    {"checkpoints", JSON_OBJECT, false, parse_checkpoints, 0, 0, 0},
};

int vm_config_from_json(json_t *j, struct vm_config *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!j)
        return vm_config_fail(err, errlen, "top level: no JSON document");
    json_t *ver = json_object_get(j, "version");    /* NULL-safe for non-objects */
    if (json_is_integer(ver) && vm_config_check_version("version", json_integer_value(ver), err, errlen) < 0)
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
