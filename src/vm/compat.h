/* Can this host run a given VM?  The compatibility checks shared by an
 * incoming migration (and, later, an import): a vm_config against facts
 * about this host, answered as every problem at once, so the user fixes them
 * in one round.
 *
 * Contract: compat_check() reads nothing but its arguments and the two
 * probes in struct compat_host (which default to the real filesystem); it
 * returns a new JSON array of problem strings, empty when the VM fits.  The
 * texts name the host and are what the user sees, word for word. */
#ifndef VMOVE_COMPAT_H
#define VMOVE_COMPAT_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "conf/vm_config.h"

/* Memory QEMU needs beyond the guest's RAM. */
#define COMPAT_MEMORY_OVERHEAD_MIB 128

struct compat_host {
    const char *name;           /* this host, as the messages name it */
    bool incoming_enabled;      /* host.json migration_incoming */
    bool drained;
    bool name_taken;            /* a VM of that name exists here already */
    uint64_t mem_available_mib;
    const char *accel;          /* accelerator this host runs, e.g. "kvm" */
    json_t *machines;           /* array of the machine types QEMU here supports */
    const char *qemu_version;
    /* Probes of this host's filesystem; NULL means the real one.  Tests pass
     * their own so the answer does not depend on the machine they run on. */
    bool (*switch_exists)(const char *switch_name);
    int (*path_access)(const char *path, int mode);   /* 0, or an errno */
};

struct compat_want {
    const char *src_accel;      /* the source's accelerator; NULL: not compared */
    bool copy_storage;          /* shared-nothing: the disks need not be visible here */
};

json_t *compat_check(const struct vm_config *c, const struct compat_host *h, const struct compat_want *w);
/* MemAvailable of /proc/meminfo, in MiB (0 if unreadable). */
uint64_t compat_mem_available_mib(void);
/* Does the JSON array of names hold m? */
bool compat_machine_supported(json_t *machines, const char *m);

/* ---- structured problems (import's compatibility report) ----------------
 * One item: {"code", "severity": "error"|"warning"|"info", "subject",
 * "value", "message", "fixes": [...]} appended to items; value and fixes
 * are stolen (NULL: JSON null / []).  The code is stable (scripts match
 * it), the message is for people. */
void compat_item(json_t *items, const char *code, const char *severity, const char *subject, json_t *value,
                 json_t *fixes, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
/* ---- pre-flight checks (`vmove move --check`, docs/MIGRATION.md) ----------
 * One item: {"item", "ok", "status", "host", "detail" | "problem", "fix"?,
 * "hint"?}.  item: a stable word ("migration.incoming"); status: "ok",
 * "problem" (the operation would fail), "warning" (it would work, but wait
 * or be slow) or "unchecked" (not checked, because of a problem listed
 * too); ok is false exactly for "problem".  host: where the item was checked
 * and where its fix runs.  The text is "detail" for an ok item, "problem"
 * otherwise.  fix: one exact command to run on host (as root there), or
 * absent; hint: words, when no single command fixes it. */
enum compat_status { COMPAT_OK, COMPAT_PROBLEM, COMPAT_WARNING, COMPAT_UNCHECKED };
void compat_preflight_add(json_t *list, const char *item, enum compat_status st, const char *host, const char *fix,
                          const char *hint, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
/* How many items of the list are problems. */
size_t compat_preflight_problems(json_t *list);

/* MemTotal of /proc/meminfo, in MiB (0 if unreadable). */
uint64_t compat_mem_total_mib(void);
/* Online CPUs of this host. */
int compat_host_cpus(void);
/* The Linux bridges of this host (/sys/class/net/ * /bridge), sorted. */
json_t *compat_host_switches(void);
#endif
