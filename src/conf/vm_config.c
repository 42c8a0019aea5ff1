/* vm.json: serialisation, the file (load and save), lifetime and helpers.
 * Format: docs/VM-JSON.md.
 *
 * Parsing is two-stage: a table-driven pass (vm_config_parse.c) checks
 * structure (unknown fields, types, enum names, integer ranges) and fills a
 * struct vm_config; vm_config_validate() (vm_config_validate.c) then runs
 * the semantic checks.  The daemon calls the same vm_config_validate() on
 * configs it builds in C, so both paths give identical messages, always
 * starting with the JSON path of the field.  What the three files share is
 * in vm_config_internal.h. */
#include "conf/vm_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "common/util.h"
#include "conf/vm_config_internal.h"

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
    const char *bus = vm_config_enum_name(vm_config_bus_names, ARRAY_LEN(vm_config_bus_names), (unsigned)d->bus);
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
    const char *kind = vm_config_enum_name(vm_config_boot_kind_names, ARRAY_LEN(vm_config_boot_kind_names), (unsigned)b->kind);
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
    if (c->ha_keep)      /* the default, stop, is not written: older vm.json stay canonical */
        ok &= set(flags, "isolation", json_string("keep"));
    ok &= set(j, "disks", disks);
    ok &= set(j, "nics", nics);
    json_t *boot = boot_to_json(&c->boot, &ok);   /* not inline: it writes ok */
    ok &= set(j, "boot", boot);
    ok &= set(j, "flags", flags);
    if (vm_config_checkpoint_count(c))   /* none: a plain v1 VM any host runs */
        ok &= set(j, "checkpoints", json_deep_copy(c->checkpoints));
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
        return vm_config_fail(err, errlen, "%s: %s", path, strerror(errno));
    json_error_t je;
    /* Duplicate keys would make the file mean whatever the parser picks. */
    json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    free(buf);
    if (!j)
        return vm_config_fail(err, errlen, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    char inner[512];
    int r = vm_config_from_json(j, out, inner, sizeof inner);
    json_decref(j);
    if (r < 0)
        return vm_config_fail(err, errlen, "%s: %s", path, inner);
    return 0;
}

int vm_config_save(const char *path, const struct vm_config *c, char *err, size_t errlen)
{
    char inner[512];
    if (vm_config_validate(c, inner, sizeof inner) < 0)
        return vm_config_fail(err, errlen, "%s: refusing to save an invalid config: %s", path, inner);
    json_t *j = vm_config_to_json(c);
    if (!j)
        return vm_config_fail(err, errlen, "%s: cannot encode config (a string is not valid UTF-8)", path);
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
        return vm_config_fail(err, errlen, "%s: %s", path, strerror(r < 0 ? saved : errno));
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
    json_decref(c->checkpoints);
    memset(c, 0, sizeof *c);
}

size_t vm_config_checkpoint_count(const struct vm_config *c)
{
    return json_array_size(json_object_get(c->checkpoints, "list"));
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
    dst->checkpoints = src->checkpoints ? json_deep_copy(src->checkpoints) : NULL;
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
