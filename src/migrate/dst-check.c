/* Destination: migrate.check, the destination's half of a pre-flight check
 * (`vmove move --check`).  Everything migrate.reserve and migrate.prepare
 * would refuse, all at once, as items of vm/compat.h, each with the command
 * that fixes it on this host.  Nothing is changed, reserved or started. */
#include "migrate/dst.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/limits.h"
#include "core/paths.h"
#include "migrate/migrate_net.h"
#include "qemu/accel.h"
#include "vm/compat.h"
#include "vm/vm.h"

#define ADD compat_preflight_add

static void check_rights(struct agent *a, const struct incoming_check_rights *w, json_t *items)
{
    char fix[256];
    snprintf(fix, sizeof fix, "vmove acl grant host:%s migrate.in", w->source);
    if (w->source_in)
        ADD(items, "rights.host", COMPAT_OK, a->name, NULL, NULL, "host:%s has migrate.in on %s", w->source, a->name);
    else
        ADD(items, "rights.host", COMPAT_PROBLEM, a->name, fix, NULL, "host:%s lacks migrate.in on %s: %s does not "
            "take VMs from it", w->source, a->name, a->name);
    if (w->user_problem)
        ADD(items, "rights.user", COMPAT_PROBLEM, a->name, NULL, "move with this version's `vmove move`, which signs "
            "a token with your --identity", "%s", w->user_problem);
    else if (!w->user)
        ADD(items, "rights.user", COMPAT_OK, a->name, NULL, NULL, "the move runs as host %s itself (root on its local "
            "socket, or a drain): no user right is needed on %s", w->source, a->name);
    else if (w->user_in)
        ADD(items, "rights.user", COMPAT_OK, a->name, NULL, NULL, "%s has migrate.in on %s", w->user, a->name);
    else {
        snprintf(fix, sizeof fix, "vmove acl grant %s migrate.in", w->user);
        ADD(items, "rights.user", COMPAT_PROBLEM, a->name, fix, NULL, "%s lacks migrate.in on %s", w->user, a->name);
    }
}

/* Whether this host takes VMs now: the switch, drain and its slots. */
static void check_switches(struct agent *a, json_t *items)
{
    if (a->settings.migration_incoming)
        ADD(items, "migration.incoming", COMPAT_OK, a->name, NULL, NULL, "incoming migration is on on %s", a->name);
    else
        ADD(items, "migration.incoming", COMPAT_PROBLEM, a->name, "vmove host set --migration-incoming on", NULL,
            "incoming migration is off on %s", a->name);
    if (a->settings.drained)
        ADD(items, "drain", COMPAT_PROBLEM, a->name, "vmove host resume", "or move the VM to another host",
            "host %s is drained: nothing new is placed on it", a->name);
    int used = limits_in_use(a, SLOT_LIVE), max = limits_max(a, SLOT_LIVE);
    if (used >= max)
        ADD(items, "limits", COMPAT_WARNING, a->name, NULL, "it starts when a slot frees (raise the limit with "
            "`vmove host set --max-live-migrations N`)", "%s runs %d of its %d live migrations: the move will wait "
            "in its queue", a->name, used, max);
    else
        ADD(items, "limits", COMPAT_OK, a->name, NULL, NULL, "%s runs %d of its %d live migrations", a->name, used, max);
}

/* `vmove host set --migration-network ...`: the networks this host has, and
 * the one to add (the set replaces the list). */
static void network_fix(const struct host_settings *s, const char *add, char *fix, size_t len)
{
    int n = snprintf(fix, len, "vmove host set");
    for (int i = 0; i < s->n_migration_networks && (size_t)n < len; i++) {
        char c[32];
        cidr_format(&s->migration_networks[i], c, sizeof c);
        n += snprintf(fix + n, len - (size_t)n, " --migration-network %s", c);
    }
    if ((size_t)n < len)
        snprintf(fix + n, len - (size_t)n, " --migration-network %s", add);
}

/* The address this host would listen on; the fix: one of this host's
 * networks among the source's (sent in "networks"). */
static void check_network(struct agent *a, json_t *msg, const char *via, bool quick, char *ip, size_t iplen,
                          json_t *items)
{
    char err[512];
    ip[0] = 0;
    if (quick) {
        ADD(items, "migration.network", COMPAT_OK, a->name, NULL, NULL, "a quick migration's state goes through "
            "shared storage: no migration network is needed");
        return;
    }
    if (migrate_net_pick_listen(&a->settings, via, a->name, ip, iplen, err, sizeof err) == 0) {
        ADD(items, "migration.network", COMPAT_OK, a->name, NULL, NULL, "%s listens for the migration on %s", a->name,
            ip);
        return;
    }
    ip[0] = 0;
    struct cidr nets[MAX_MIGRATION_NETWORKS];
    int n = 0;
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(msg, "networks"), i, v) if (n < MAX_MIGRATION_NETWORKS &&
                                                                  json_is_string(v) &&
                                                                  cidr_parse(json_string_value(v), &nets[n]) == 0) n++;
    char cidr[32], fix[1024];
    if (migrate_net_local_cidr_in(nets, n, cidr, sizeof cidr) == 0) {
        network_fix(&a->settings, cidr, fix, sizeof fix);
        ADD(items, "migration.network", COMPAT_PROBLEM, a->name, fix, NULL, "%s: it cannot listen for the migration",
            err);
    } else
        ADD(items, "migration.network", COMPAT_PROBLEM, a->name, NULL, "allow the network both hosts' migration "
            "addresses are on: vmove host set --migration-network CIDR", "%s: it cannot listen for the migration", err);
}

static void check_engine(struct agent *a, const struct vm_config *c, json_t *msg, const struct wire_prepare_req *m,
                         json_t *items)
{
    const char *mine = accel_kind_name(a->accel.kind);
    char fix[128];
    snprintf(fix, sizeof fix, "vmove host set --accel %s", m->accel ? m->accel : "");
    if (!m->accel || !strcmp(m->accel, mine))
        ADD(items, "accel", COMPAT_OK, a->name, NULL, NULL, "both hosts run %s", mine);
    else
        ADD(items, "accel", COMPAT_PROBLEM, a->name, fix, NULL, "the source runs %s, %s runs %s", m->accel, a->name,
            mine);
    const char *ver = a->caps.qemu_version ? a->caps.qemu_version : "?";
    const char *src_ver = json_string_value(json_object_get(msg, "qemu_version"));
    if (!compat_machine_supported(a->caps.machines, c->machine))
        ADD(items, "qemu", COMPAT_PROBLEM, a->name, NULL, "install a QEMU there that has it (see docs/OPERATIONS.md)",
            "machine type %s is not supported by QEMU %s on %s", c->machine, ver, a->name);
    else if (src_ver && strverscmp(ver, src_ver) < 0)
        ADD(items, "qemu", COMPAT_WARNING, a->name, NULL, "upgrade QEMU there to %s or later", "QEMU %s on %s is older "
            "than the source's %s: it supports machine type %s, but QEMU only promises migration to the same or a "
            "newer version", ver, a->name, src_ver, c->machine);
    else
        ADD(items, "qemu", COMPAT_OK, a->name, NULL, NULL, "QEMU %s on %s runs machine type %s%s%s", ver, a->name,
            c->machine, src_ver ? "; the source has " : "", src_ver ? src_ver : "");
}

static void check_room(struct agent *a, const struct vm_config *c, json_t *items)
{
    uint64_t avail = compat_mem_available_mib();
    if (avail < c->memory_mib + COMPAT_MEMORY_OVERHEAD_MIB)
        ADD(items, "memory", COMPAT_PROBLEM, a->name, NULL, "free memory there, or pick another host",
            "%s has %llu MiB available; the VM needs %llu MiB (+%d MiB for QEMU)", a->name, (unsigned long long)avail,
            (unsigned long long)c->memory_mib, COMPAT_MEMORY_OVERHEAD_MIB);
    else
        ADD(items, "memory", COMPAT_OK, a->name, NULL, NULL, "%s has %llu MiB available for the VM's %llu MiB", a->name,
            (unsigned long long)avail, (unsigned long long)c->memory_mib);
    if (vm_find(a, c->name))
        ADD(items, "name", COMPAT_PROBLEM, a->name, NULL, "rename or delete the VM there", "a VM named %s already "
            "exists on %s", c->name, a->name);
    json_t *have = compat_host_switches();
    char missing[512] = "";
    size_t len = 0;
    for (size_t i = 0; i < c->n_nics; i++)
        if (!compat_machine_supported(have, c->nics[i].switch_name) && len < sizeof missing)
            len += (size_t)snprintf(missing + len, sizeof missing - len, "%s%s", len ? ", " : "",
                                    c->nics[i].switch_name);
    json_decref(have);
    if (len)
        ADD(items, "switches", COMPAT_PROBLEM, a->name, NULL, "create the bridge there (ip link add NAME type bridge)",
            "switch %s does not exist on %s", missing, a->name);
    else
        ADD(items, "switches", COMPAT_OK, a->name, NULL, NULL, "%zu NIC(s): every switch exists on %s", c->n_nics,
            a->name);
}

/* One file the VM needs here: allowed by the path policy and readable
 * (and writable, for a disk); false with why. */
static bool file_ok(const struct path_policy *pol, enum dir_kind kind, const char *path, int mode, char *why,
                    size_t len, char *fix, size_t fixlen)
{
    struct path_info pi;
    char dir[PATH_MAX];
    fix[0] = 0;
    if (paths_check_file(pol, kind, path, &pi, why, len) < 0) {
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash && strstr(why, "--allow-dir")) {
            *slash = 0;
            snprintf(fix, fixlen, "vmove host set --allow-dir %s=%s", dir_kind_name(kind), dir[0] ? dir : "/");
        }
        return false;
    }
    if (access(pi.canonical, mode) < 0) {
        snprintf(why, len, "%s", strerror(errno));
        return false;
    }
    return true;
}

static void check_files(struct agent *a, const struct vm_config *c, bool copy_storage, json_t *items)
{
    struct path_policy pol;
    paths_policy_init(&pol, &a->settings, a->state_dir);
    char why[PATH_MAX + 512], fix[PATH_MAX + 64];
    size_t bad = 0;
    for (size_t i = 0; i < c->n_disks && !copy_storage; i++)
        if (!file_ok(&pol, DIR_IMAGES, c->disks[i].path, R_OK | W_OK, why, sizeof why, fix, sizeof fix) && ++bad)
            ADD(items, "disks", COMPAT_PROBLEM, a->name, fix[0] ? fix : NULL, fix[0] ? NULL : "live migration needs "
                "the disks on storage both hosts share (or use --with-storage DIR)", "disk %s (%s) on %s: %s",
                c->disks[i].id, c->disks[i].path, a->name, why);
    if (!copy_storage && !bad)
        ADD(items, "disks", COMPAT_OK, a->name, NULL, NULL, "%zu disk(s) visible on %s (shared storage)", c->n_disks,
            a->name);
    const char *boot[][2] = {{"kernel", c->boot.kernel}, {"initrd", c->boot.initrd}};
    for (size_t i = 0; i < 2; i++) {
        if (!boot[i][1])
            continue;
        if (file_ok(&pol, DIR_KERNELS, boot[i][1], R_OK, why, sizeof why, fix, sizeof fix))
            ADD(items, boot[i][0], COMPAT_OK, a->name, NULL, NULL, "%s readable on %s", boot[i][1], a->name);
        else
            ADD(items, boot[i][0], COMPAT_PROBLEM, a->name, fix[0] ? fix : NULL, fix[0] ? NULL : "put it there (the "
                "same path on both hosts)", "%s %s on %s: %s", boot[i][0], boot[i][1], a->name, why);
    }
}

/* Shared-nothing: DIR allowed for storage, writable, free of the new files,
 * with room for what the source's disks hold ("alloc", bytes). */
static void check_storage_dir(struct agent *a, const struct vm_config *c, json_t *storage, json_t *items)
{
    const char *dir = json_string_value(json_object_get(storage, "dir"));
    struct path_policy pol;
    struct path_info pi;
    char why[PATH_MAX + 512], fix[PATH_MAX + 64] = "";
    paths_policy_init(&pol, &a->settings, a->state_dir);
    if (!dir || paths_check_dir(&pol, DIR_STORAGE, dir, &pi, why, sizeof why) < 0) {
        if (dir && strstr(why, "--allow-dir"))
            snprintf(fix, sizeof fix, "vmove host set --allow-dir storage=%s", dir);
        ADD(items, "storage.dir", COMPAT_PROBLEM, a->name, fix[0] ? fix : NULL, fix[0] ? NULL : "create it, or pick "
            "another directory", "storage directory %s on %s: %s", dir ? dir : "(none)", a->name, why);
        return;
    }
    if (access(pi.canonical, W_OK | X_OK) < 0) {
        ADD(items, "storage.dir", COMPAT_PROBLEM, a->name, NULL, "make it writable for vmoved", "storage directory %s "
            "on %s is not writable: %s", dir, a->name, strerror(errno));
        return;
    }
    uint64_t need = 0;
    for (size_t i = 0; i < c->n_disks; i++) {
        const char *base = strrchr(c->disks[i].path, '/');
        char *target = xasprintf("%s/%s", pi.canonical, base ? base + 1 : c->disks[i].path);
        if (path_exists(target))
            ADD(items, "storage.dir", COMPAT_PROBLEM, a->name, NULL, "remove it, or pick another directory",
                "%s already exists on %s: the move does not overwrite it", target, a->name);
        free(target);
        need += (uint64_t)json_integer_value(json_object_get(json_object_get(storage, "alloc"), c->disks[i].id));
    }
    struct statvfs vfs;
    uint64_t avail = statvfs(pi.canonical, &vfs) == 0 ? (uint64_t)vfs.f_bavail * vfs.f_frsize : 0;
    char n[32], f[32];
    format_size(need, n, sizeof n);
    format_size(avail, f, sizeof f);
    if (need > avail)
        ADD(items, "storage.space", COMPAT_PROBLEM, a->name, NULL, "free space there, or pick another directory",
            "%s on %s has %s free; the disks hold about %s", dir, a->name, f, n);
    else
        ADD(items, "storage.space", COMPAT_OK, a->name, NULL, NULL, "%s on %s is writable with %s free for about %s",
            dir, a->name, f, n);
}

/* What the VM itself needs here: gated on the source's migrate.in, since
 * it says which files exist. */
static void check_vm(struct agent *a, const struct incoming_check_rights *w, const struct wire_prepare_req *m,
                     json_t *msg, json_t *items)
{
    struct vm_config cfg;
    char why[512];
    if (vm_config_from_json(m->config, &cfg, why, sizeof why) < 0) {
        ADD(items, "config", COMPAT_PROBLEM, a->name, NULL, NULL, "the VM configuration sent by %s is invalid: %s",
            w->source, why);
        return;
    }
    check_engine(a, &cfg, msg, m, items);
    check_room(a, &cfg, items);
    if (!w->source_in)
        ADD(items, "files", COMPAT_UNCHECKED, a->name, NULL, "fix rights.host first", "the VM's disks and kernel "
            "on %s: not checked for a host without migrate.in here", a->name);
    else if (m->storage)
        check_storage_dir(a, &cfg, m->storage, items);
    if (w->source_in)
        check_files(a, &cfg, m->storage != NULL, items);
    if (m->postcopy == WIRE_POSTCOPY_REQUIRED && !a->settings.allow_postcopy)
        ADD(items, "postcopy", COMPAT_PROBLEM, a->name, "vmove host set --postcopy allow", NULL,
            "post-copy is not allowed on %s", a->name);
    vm_config_free(&cfg);
}

json_t *incoming_check(struct agent *a, const struct incoming_check_rights *w, json_t *msg, json_t **err)
{
    struct wire_prepare_req m;
    if (wire_prepare_req_from_json(msg, &m, err) < 0)
        return NULL;
    json_t *items = json_array();
    char ip[64];
    check_rights(a, w, items);
    check_switches(a, items);
    check_network(a, msg, m.via, m.quick, ip, sizeof ip, items);
    check_vm(a, w, &m, msg, items);
    return json_pack("{s:s, s:s?, s:o}", "host", a->name, "listen_ip", ip[0] ? ip : NULL, "items", items);
}
