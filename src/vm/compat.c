#include "vm/compat.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"

static uint64_t meminfo_mib(const char *key)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256], fmt[64];
    unsigned long long kb = 0;
    snprintf(fmt, sizeof fmt, "%s: %%llu kB", key);
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, fmt, &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb / 1024;
}

uint64_t compat_mem_available_mib(void) { return meminfo_mib("MemAvailable"); }
uint64_t compat_mem_total_mib(void) { return meminfo_mib("MemTotal"); }

int compat_host_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int cmp_json_str(const void *a, const void *b)
{
    return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

json_t *compat_host_switches(void)
{
    json_t *list = json_array();
    DIR *d = opendir("/sys/class/net");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *p = xasprintf("/sys/class/net/%s/bridge", e->d_name);
        if (path_exists(p))
            json_array_append_new(list, json_string(e->d_name));
        free(p);
    }
    if (d)
        closedir(d);
    size_t n = json_array_size(list);
    json_t **v = xcalloc(n ? n : 1, sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = json_incref(json_array_get(list, i));
    qsort(v, n, sizeof *v, cmp_json_str);
    json_array_clear(list);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, v[i]);
    free(v);
    return list;
}

void compat_item(json_t *items, const char *code, const char *severity, const char *subject, json_t *value,
                 json_t *fixes, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_array_append_new(items, json_pack("{s:s, s:s, s:s, s:o, s:s, s:o}", "code", code, "severity", severity,
                                           "subject", subject ? subject : "", "value", value ? value : json_null(),
                                           "message", msg, "fixes", fixes ? fixes : json_array()));
}

bool compat_machine_supported(json_t *machines, const char *m)
{
    size_t i;
    json_t *v;
    json_array_foreach(machines, i, v) {
        const char *s = json_string_value(v);
        if (s && m && !strcmp(s, m))
            return true;
    }
    return false;
}

static bool real_switch_exists(const char *switch_name)
{
    char *p = xasprintf("/sys/class/net/%s/bridge", switch_name);
    bool ok = path_exists(p);
    free(p);
    return ok;
}

static int real_path_access(const char *path, int mode)
{
    return access(path, mode) < 0 ? errno : 0;
}

static void add_problem(json_t *problems, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_problem(json_t *problems, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    json_array_append_new(problems, json_string(buf));
}

/* Whether this host takes VMs at all, and has room for this one. */
static void check_host(json_t *problems, const struct vm_config *c, const struct compat_host *h)
{
    if (!h->incoming_enabled)
        add_problem(problems, "incoming migration is disabled on host %s "
                    "(enable it there: vmove host set --migration-incoming on)", h->name);
    if (h->drained)
        add_problem(problems, "host %s is being drained: nothing new is placed on it", h->name);
    if (h->name_taken)
        add_problem(problems, "a VM named %s already exists on host %s", c->name, h->name);
    if (h->mem_available_mib < c->memory_mib + COMPAT_MEMORY_OVERHEAD_MIB)
        add_problem(problems, "not enough memory on host %s: the VM needs %llu MiB (+%d MiB overhead), %llu MiB available",
                    h->name, (unsigned long long)c->memory_mib, COMPAT_MEMORY_OVERHEAD_MIB,
                    (unsigned long long)h->mem_available_mib);
}

/* Whether what the VM refers to (switches, disks, kernel) exists here. */
static void check_resources(json_t *problems, const struct vm_config *c, const struct compat_host *h,
                            bool copy_storage)
{
    bool (*switch_exists)(const char *) = h->switch_exists ? h->switch_exists : real_switch_exists;
    int (*path_access)(const char *, int) = h->path_access ? h->path_access : real_path_access;
    for (size_t i = 0; i < c->n_nics; i++)
        if (!switch_exists(c->nics[i].switch_name))
            add_problem(problems, "switch %s does not exist on host %s", c->nics[i].switch_name, h->name);
    for (size_t i = 0; i < c->n_disks && !copy_storage; i++) {
        int e = path_access(c->disks[i].path, R_OK | W_OK);
        if (e)
            add_problem(problems, "disk %s (%s) is not visible on host %s: %s (live migration needs shared storage)",
                        c->disks[i].id, c->disks[i].path, h->name, strerror(e));
    }
    if (c->boot.kind == VM_BOOT_KERNEL && path_access(c->boot.kernel, R_OK))
        add_problem(problems, "kernel %s is not readable on host %s", c->boot.kernel, h->name);
    if (c->boot.initrd && path_access(c->boot.initrd, R_OK))
        add_problem(problems, "initrd %s is not readable on host %s", c->boot.initrd, h->name);
}

json_t *compat_check(const struct vm_config *c, const struct compat_host *h, const struct compat_want *w)
{
    json_t *problems = json_array();
    check_host(problems, c, h);
    check_resources(problems, c, h, w->copy_storage);
    if (w->src_accel && strcmp(w->src_accel, h->accel))
        add_problem(problems, "accelerator mismatch: the source runs %s, host %s runs %s", w->src_accel, h->name,
                    h->accel);
    if (!compat_machine_supported(h->machines, c->machine))
        add_problem(problems, "machine type %s is not supported by QEMU %s on host %s", c->machine,
                    h->qemu_version, h->name);
    return problems;
}

void compat_preflight_add(json_t *list, const char *item, enum compat_status st, const char *host, const char *fix,
                          const char *hint, const char *fmt, ...)
{
    static const char *const names[] = {"ok", "problem", "warning", "unchecked"};
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *it = json_pack("{s:s, s:b, s:s, s:s, s:s}", "item", item, "ok", st != COMPAT_PROBLEM, "status", names[st],
                           "host", host ? host : "", st == COMPAT_OK ? "detail" : "problem", msg);
    if (fix && st != COMPAT_OK)
        json_object_set_new(it, "fix", json_string(fix));
    if (hint && st != COMPAT_OK)
        json_object_set_new(it, "hint", json_string(hint));
    json_array_append_new(list, it);
}

size_t compat_preflight_problems(json_t *list)
{
    size_t i, n = 0;
    json_t *it;
    json_array_foreach(list, i, it) n += !json_is_true(json_object_get(it, "ok"));
    return n;
}
