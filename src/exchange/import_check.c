/* The import plan and its compatibility report (see exchange/import.h).
 * Nothing here writes a file: it reads the source's headers (by
 * exchange/image_sniff.h before qemu-img sees them) and this host's facts.
 *
 * Over 600 lines: one short check per item of the report (machine, CPUs,
 * memory, each disk, each NIC, firmware), each with its question and fix;
 * they read best side by side. */
#include "exchange/import.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/image.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/paths.h"
#include "exchange/image_sniff.h"
#include "exchange/import_internal.h"
#include "exchange/manifest.h"
#include "vm/compat.h"
#include "vm/vm.h"

static const char *const mode_names[] = {"register", "copy", "copy-new-id"};

const char *import_mode_name(enum import_mode m) { return mode_names[m]; }

static int parse_mode(const char *s, enum import_mode *m)
{
    for (size_t i = 0; i < ARRAY_LEN(mode_names); i++)
        if (s && !strcmp(s, mode_names[i])) {
            *m = (enum import_mode)i;
            return 0;
        }
    return -1;
}

/* ---- fixes: how the CLI and --plan put an answer into "answers" ---------------- */

/* A fix with a fixed value: {"flag", "arg", "key", "value"[, "map_key"]}. */
static json_t *fix_value(const char *flag, const char *arg, const char *key, const char *map_key, json_t *value)
{
    json_t *f = json_pack("{s:s, s:s, s:s, s:o}", "flag", flag, "arg", arg, "key", key, "value", value);
    if (map_key)
        json_object_set_new(f, "map_key", json_string(map_key));
    return f;
}

/* A fix the user types a value for: {"flag", "arg", "key", "input"[, "map_key"]}. */
static json_t *fix_input(const char *flag, const char *arg, const char *key, const char *map_key, const char *input)
{
    json_t *f = json_pack("{s:s, s:s, s:s, s:s}", "flag", flag, "arg", arg, "key", key, "input", input);
    if (map_key)
        json_object_set_new(f, "map_key", json_string(map_key));
    return f;
}

static void error_item(struct import_plan *p, const char *code, const char *subject, json_t *value, json_t *fixes,
                       const char *msg)
{
    compat_item(p->errors, code, "error", subject, value, fixes, "%s", msg);
}

/* ---- the source ------------------------------------------------------------------ */

static bool is_dir(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* PATH is a directory holding vm.json, or a vm.json file.  false after an
 * item saying why not. */
static bool find_source(struct agent *a, struct import_plan *p, const char *path)
{
    char canon[PATH_MAX], msg[PATH_MAX + 256];
    if (path[0] != '/' || !realpath(path, canon)) {
        snprintf(msg, sizeof msg, "%s: %s", path, path[0] != '/' ? "not an absolute path" : strerror(errno));
        error_item(p, "source-missing", "path", json_string(path), NULL, msg);
        return false;
    }
    if (is_dir(canon)) {
        p->src_dir = xstrdup(canon);
        p->config_path = xasprintf("%s/vm.json", canon);
    } else {
        p->config_path = xstrdup(canon);
        p->src_dir = xstrdup(dirname(canon));
    }
    struct path_policy pol;
    struct path_info pi;
    char why[1024];
    paths_policy_init(&pol, &a->settings, a->state_dir);
    if (paths_check_dir(&pol, DIR_IMAGES, p->src_dir, &pi, why, sizeof why) < 0) {
        snprintf(msg, sizeof msg, "import source %s: %s", p->src_dir, why);
        error_item(p, "source-denied", "path", json_string(p->src_dir), NULL, msg);
        return false;
    }
    if (!path_exists(p->config_path)) {
        snprintf(msg, sizeof msg, "%s is not a VM: it holds no vm.json (an export or a VM's directory has one)",
                 path);
        error_item(p, "not-a-vm", "path", json_string(path), NULL, msg);
        return false;
    }
    /* vm.json and manifest.json are read (and parse errors quote them):
     * regular files inside the policy, never a link to a host file. */
    char *manifest = xasprintf("%s/%s", p->src_dir, MANIFEST_NAME);
    const char *files[] = {p->config_path, path_exists(manifest) ? manifest : NULL};
    bool ok = true;
    for (size_t i = 0; i < 2 && ok; i++) {
        if (files[i] && paths_check_file(&pol, DIR_IMAGES, files[i], &pi, why, sizeof why) < 0) {
            snprintf(msg, sizeof msg, "import source %s: %s", files[i], why);
            error_item(p, "source-denied", "path", json_string(files[i]), NULL, msg);
            ok = false;
        }
    }
    free(manifest);
    return ok;
}

/* An export's manifest: vm.json must match it before it is parsed. */
static bool check_manifest(struct import_plan *p)
{
    char *mpath = xasprintf("%s/%s", p->src_dir, MANIFEST_NAME);
    bool ok = true;
    if (path_exists(mpath)) {
        json_error_t je;
        p->manifest = json_load_file(mpath, 0, &je);
        char msg[1024], err[768];
        if (!json_is_object(p->manifest) || !json_is_array(json_object_get(p->manifest, "files"))) {
            snprintf(msg, sizeof msg, "%s: not an export manifest (%s)", mpath, p->manifest ? "no files" : je.text);
            error_item(p, "manifest-invalid", MANIFEST_NAME, NULL, NULL, msg);
            ok = false;
        } else {
            p->kind = "vmove-export";
            json_t *e = manifest_find(p->manifest, basename(p->config_path));
            if (e && manifest_check_entry(p->src_dir, e, err, sizeof err) < 0) {
                snprintf(msg, sizeof msg, "vm.json does not match the export's manifest: %s", err);
                error_item(p, "config-checksum", "vm.json", NULL, NULL, msg);
                ok = false;
            }
        }
    }
    free(mpath);
    return ok;
}

/* ---- answers ------------------------------------------------------------------------ */

static const char *const answer_keys[] = {"name", "memory_mib", "cpus", "machine", "cpu_model", "map_switch",
                                          "drop_nics", "disks", "search_dirs", "discard_saved_state", "mode"};

static json_t *check_answers(json_t *ans)
{
    if (!ans || json_is_null(ans))
        return NULL;
    if (!json_is_object(ans))
        return proto_error(ERR_INVALID, NULL, "answers must be an object");
    const char *k;
    json_t *v;
    json_object_foreach(ans, k, v) {
        bool known = false;
        for (size_t i = 0; i < ARRAY_LEN(answer_keys); i++)
            known |= !strcmp(k, answer_keys[i]);
        if (!known)
            return proto_error(ERR_INVALID, NULL, "answers.%s: unknown answer", k);
    }
    struct { const char *key; int type; } types[] = {
        {"name", JSON_STRING}, {"memory_mib", JSON_INTEGER}, {"cpus", JSON_INTEGER}, {"machine", JSON_STRING},
        {"cpu_model", JSON_STRING}, {"map_switch", JSON_OBJECT}, {"drop_nics", JSON_ARRAY}, {"disks", JSON_OBJECT},
        {"search_dirs", JSON_ARRAY}, {"mode", JSON_STRING}};
    for (size_t i = 0; i < ARRAY_LEN(types); i++) {
        json_t *x = json_object_get(ans, types[i].key);
        if (x && !json_is_null(x) && (int)json_typeof(x) != types[i].type)
            return proto_error(ERR_INVALID, NULL, "answers.%s has the wrong type", types[i].key);
    }
    return NULL;
}

static void set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = v ? xstrdup(v) : NULL;
}

/* --drop-nic: the indexes of the config as given, highest first. */
static void drop_nics(struct import_plan *p, json_t *list)
{
    bool drop[VM_MAX_NICS] = {false};
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        json_int_t k = json_integer_value(v);
        if (!json_is_integer(v) || k < 0 || (size_t)k >= p->cfg.n_nics) {
            char msg[256];
            snprintf(msg, sizeof msg, "--drop-nic %lld: the VM has %zu NIC(s), numbered from 0", (long long)k,
                     p->cfg.n_nics);
            error_item(p, "answer-unused", "drop_nics", json_incref(v), NULL, msg);
            continue;
        }
        drop[k] = true;
    }
    size_t w = 0;
    for (size_t r = 0; r < p->cfg.n_nics; r++) {
        if (drop[r]) {
            free(p->cfg.nics[r].switch_name);
            continue;
        }
        p->cfg.nics[w++] = p->cfg.nics[r];
    }
    p->cfg.n_nics = w;
}

static void map_switches(struct import_plan *p, json_t *map)
{
    const char *old;
    json_t *v;
    json_object_foreach(map, old, v) {
        bool used = false;
        for (size_t i = 0; i < p->cfg.n_nics; i++)
            if (!strcmp(p->cfg.nics[i].switch_name, old) && json_is_string(v)) {
                set_str(&p->cfg.nics[i].switch_name, json_string_value(v));
                used = true;
            }
        if (!used) {
            char msg[256];
            snprintf(msg, sizeof msg, "--map-switch %s=%s: the VM has no NIC on %s", old,
                     json_is_string(v) ? json_string_value(v) : "?", old);
            error_item(p, "answer-unused", "map_switch", json_string(old), NULL, msg);
        }
    }
}

/* The answers change the config before any check, so the report is about
 * the VM as it would be imported. */
static void apply_answers(struct import_plan *p, json_t *ans)
{
    const char *s;
    if ((s = json_string_value(json_object_get(ans, "name"))))
        set_str(&p->cfg.name, s);
    if ((s = json_string_value(json_object_get(ans, "machine"))))
        set_str(&p->cfg.machine, s);
    if ((s = json_string_value(json_object_get(ans, "cpu_model"))))
        set_str(&p->cfg.cpu_model, s);
    json_t *v;
    if (json_is_integer(v = json_object_get(ans, "memory_mib")))
        p->cfg.memory_mib = (uint64_t)(json_integer_value(v) > 0 ? json_integer_value(v) : 0);
    if (json_is_integer(v = json_object_get(ans, "cpus")))
        p->cfg.cpus = (int)(json_integer_value(v) > 100000 ? 100000 : json_integer_value(v));
    map_switches(p, json_object_get(ans, "map_switch"));
    drop_nics(p, json_object_get(ans, "drop_nics"));
    const char *id;
    json_object_foreach(json_object_get(ans, "disks"), id, v) {
        if (!vm_config_find_disk(&p->cfg, id)) {
            char msg[256];
            snprintf(msg, sizeof msg, "--disk %s=...: the VM has no disk %s", id, id);
            error_item(p, "answer-unused", "disks", json_string(id), NULL, msg);
        }
    }
    if (p->mode == IMPORT_COPY_NEW_ID) {
        vm_generate_uuid(p->cfg.uuid);
        for (size_t i = 0; i < p->cfg.n_nics; i++)
            vm_generate_mac(p->cfg.nics[i].mac);
    }
}

/* ---- disks ------------------------------------------------------------------------------ */

/* Where disk d is: the answer, a file of the same name in the import
 * directory, the config's path, then the same name in each --search-dir. */
static char *locate_disk(struct import_plan *p, const struct vm_disk *d, json_t *ans)
{
    const char *given = json_string_value(json_object_get(json_object_get(ans, "disks"), d->id));
    if (given)
        return path_exists(given) ? xstrdup(given) : NULL;
    /* The import directory's own file first: an export copied elsewhere
     * still names its old directory, and its manifest vouches for these. */
    char *copy = xstrdup(d->path);
    const char *base = basename(copy);
    char *found = xasprintf("%s/%s", p->src_dir, base);
    if (!path_exists(found)) {
        free(found);
        found = path_exists(d->path) ? xstrdup(d->path) : NULL;
    }
    char *cand;
    size_t i;
    json_t *dir;
    json_array_foreach(json_object_get(ans, "search_dirs"), i, dir) {
        if (found || !json_is_string(dir))
            continue;
        cand = xasprintf("%s/%s", json_string_value(dir), base);
        if (path_exists(cand))
            found = cand;
        else
            free(cand);
    }
    free(copy);
    return found;
}

static json_t *disk_missing_fixes(const struct vm_disk *d)
{
    char arg[64];
    snprintf(arg, sizeof arg, "%s=PATH", d->id);
    return json_pack("[o, o]", fix_input("--disk", arg, "disks", d->id, "PATH"),
                     fix_input("--search-dir", "DIR", "search_dirs", NULL, "DIR"));
}

/* The header decides; qemu-img is asked only about an image found safe. */
static void check_image(struct agent *a, struct import_plan *p, struct import_disk *d, const char *subject)
{
    char msg[1536], why[1024];
    if (image_sniff_file(d->source, &d->sniff, why, sizeof why) < 0) {
        snprintf(msg, sizeof msg, "disk %s: %s: %s", d->id, d->source, why);
        error_item(p, "disk-unreadable", subject, json_string(d->source), NULL, msg);
        return;
    }
    const struct image_sniff *s = &d->sniff;
    if (s->unsafe) {
        snprintf(msg, sizeof msg, "disk %s (%s) is unsafe to open: %s", d->id, d->source, s->why);
        error_item(p, "disk-unsafe", subject, json_string(s->name), NULL, msg);
        return;
    }
    if (s->truncated) {
        snprintf(msg, sizeof msg, "disk %s (%s): %s", d->id, d->source, s->why);
        error_item(p, "disk-corrupt", subject, json_string(s->name), NULL, msg);
        return;
    }
    if (!s->qemu_format) {
        snprintf(msg, sizeof msg, "disk %s (%s) is not an image format vmove imports (qcow2, VHDX, VHD, VMDK); raw "
                 "images are never guessed", d->id, d->source);
        error_item(p, "disk-format-unknown", subject, json_string(s->name), NULL, msg);
        return;
    }
    if (s->format != SNIFF_QCOW2) {
        if (p->mode == IMPORT_REGISTER) {
            snprintf(msg, sizeof msg, "disk %s is %s: vmove runs qcow2 only; a copy converts it", d->id, s->name);
            error_item(p, "disk-format", subject, json_string(s->name),
                       json_pack("[o]", fix_value("--mode", "copy", "mode", NULL, json_string("copy"))), msg);
        } else {
            compat_item(p->info, "disk-format", "info", subject, json_string(s->name), NULL,
                        "disk %s is %s: it will be converted to qcow2", d->id, s->name);
        }
        return;
    }
    if (!p->checks) {
        json_array_append_new(p->pending_checks, json_string(d->source));
        return;
    }
    json_t *verdict = json_object_get(p->checks, d->source);
    if (!verdict || json_is_string(verdict)) {
        snprintf(why, sizeof why, "%s", verdict ? json_string_value(verdict) : "changed while it was checked: check again");
        bool locked = strstr(why, "lock") != NULL;
        snprintf(msg, sizeof msg, "disk %s (%s): %s", d->id, d->source,
                 locked ? "in use by another process (its image lock is held)" : why);
        error_item(p, locked ? "disk-in-use" : "disk-corrupt", subject, json_string(d->source), NULL, msg);
    }
    (void)a;
}

static void check_disk(struct agent *a, struct import_plan *p, size_t i, json_t *ans)
{
    const struct vm_disk *vd = &p->cfg.disks[i];
    struct import_disk *d = &p->disks[i];
    char subject[48], msg[PATH_MAX * 2 + 256], why[1024];
    snprintf(subject, sizeof subject, "disks[%zu]", i);
    d->id = xstrdup(vd->id);
    d->source = locate_disk(p, vd, ans);
    if (!d->source) {
        const char *given = json_string_value(json_object_get(json_object_get(ans, "disks"), vd->id));
        snprintf(msg, sizeof msg, "disk %s: %s not found (nor a file of that name in %s)", vd->id,
                 given ? given : vd->path, p->src_dir);
        error_item(p, "disk-missing", subject, json_string(given ? given : vd->path), disk_missing_fixes(vd), msg);
        return;
    }
    struct path_policy pol;
    struct path_info pi;
    paths_policy_init(&pol, &a->settings, a->state_dir);
    if (paths_check_file(&pol, DIR_IMAGES, d->source, &pi, why, sizeof why) < 0) {
        snprintf(msg, sizeof msg, "disk %s %s: %s", vd->id, d->source, why);
        error_item(p, "disk-denied", subject, json_string(d->source), NULL, msg);
        return;
    }
    free(d->source);
    d->source = xstrdup(pi.canonical);
    char *dir = xstrdup(d->source);
    json_t *entry = p->manifest && !strcmp(dirname(dir), p->src_dir) ? manifest_find(p->manifest, basename(d->source))
                                                                       : NULL;
    free(dir);
    /* The sum is learnt in a child (a big disk takes seconds): a first
     * plan asks for it, the second compares. */
    if (entry && !p->checks && manifest_entry_usable(entry, why, sizeof why) == 0)
        json_array_append_new(p->pending_hashes, json_string(d->source));
    else if (entry && p->checks && manifest_check_digest(entry, json_object_get(p->digests, d->source), why,
                                                         sizeof why) < 0) {
        snprintf(msg, sizeof msg, "disk %s does not match the export's manifest: %s", vd->id, why);
        error_item(p, "disk-checksum", subject, json_string(d->source), NULL, msg);
        return;
    }
    struct vm *owner = vm_find_by_disk_file(a, d->source);
    if (owner && p->mode == IMPORT_REGISTER) {
        snprintf(msg, sizeof msg, "disk %s (%s) is already a disk of VM %s on this host", vd->id, d->source,
                 owner->name);
        error_item(p, "disk-in-use", subject, json_string(d->source),
                   json_pack("[o]", fix_value("--mode", "copy-new-id", "mode", NULL, json_string("copy-new-id"))), msg);
        return;
    }
    check_image(a, p, d, subject);
}

/* ---- the host ---------------------------------------------------------------------------- */

static bool uuid_taken(struct agent *a, const char *uuid)
{
    VM_FOREACH(a, vm)
        if (!strcmp(vm->cfg.uuid, uuid))
            return true;
    return false;
}

static void check_identity(struct agent *a, struct import_plan *p)
{
    char msg[512];
    if (vm_find(a, p->cfg.name)) {
        snprintf(msg, sizeof msg, "a VM named %s already exists on host %s", p->cfg.name, a->name);
        error_item(p, "name-exists", "name", json_string(p->cfg.name),
                   json_pack("[o]", fix_input("--name", "NAME", "name", NULL, "NAME")), msg);
    }
    if (p->mode != IMPORT_COPY_NEW_ID && uuid_taken(a, p->cfg.uuid)) {
        snprintf(msg, sizeof msg, "VM uuid %s is already registered on host %s", p->cfg.uuid, a->name);
        error_item(p, "uuid-exists", "uuid", json_string(p->cfg.uuid),
                   json_pack("[o]", fix_value("--mode", "copy-new-id", "mode", NULL, json_string("copy-new-id"))),
                   msg);
    }
}

static void check_size(struct agent *a, struct import_plan *p)
{
    char msg[512];
    uint64_t total = compat_mem_total_mib();
    uint64_t max = total > COMPAT_MEMORY_OVERHEAD_MIB ? total - COMPAT_MEMORY_OVERHEAD_MIB : 0;
    if (p->cfg.memory_mib > max) {
        snprintf(msg, sizeof msg, "memory %llu MiB exceeds host %s (%llu MiB, %d MiB of it for QEMU itself)",
                 (unsigned long long)p->cfg.memory_mib, a->name, (unsigned long long)total,
                 COMPAT_MEMORY_OVERHEAD_MIB);
        json_t *fix = fix_input("--memory", "MIB", "memory_mib", NULL, "MIB");
        json_object_set_new(fix, "max", json_integer((json_int_t)max));
        error_item(p, "memory-exceeds-host", "memory_mib", json_integer((json_int_t)p->cfg.memory_mib),
                   json_pack("[o]", fix), msg);
    }
    int cpus = compat_host_cpus();
    if (p->cfg.cpus > cpus) {
        snprintf(msg, sizeof msg, "%d vCPUs, but host %s has %d CPUs", p->cfg.cpus, a->name, cpus);
        json_t *fix = fix_input("--cpus", "N", "cpus", NULL, "N");
        json_object_set_new(fix, "max", json_integer(cpus));
        error_item(p, "cpus-exceed-host", "cpus", json_integer(p->cfg.cpus), json_pack("[o]", fix), msg);
    }
}

static void check_switches(struct agent *a, struct import_plan *p)
{
    json_t *here = compat_host_switches();
    char list[512] = "";
    size_t k;
    json_t *v;
    json_array_foreach(here, k, v)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", k ? ", " : "", json_string_value(v));
    for (size_t i = 0; i < p->cfg.n_nics; i++) {
        const char *sw = p->cfg.nics[i].switch_name;
        char path[64 + VM_SWITCH_NAME_MAX];
        snprintf(path, sizeof path, "/sys/class/net/%s/bridge", sw);
        if (path_exists(path))
            continue;
        json_t *fixes = json_array();
        json_array_foreach(here, k, v) {
            char *arg = xasprintf("%s=%s", sw, json_string_value(v));
            json_array_append_new(fixes, fix_value("--map-switch", arg, "map_switch", sw, json_incref(v)));
            free(arg);
        }
        char idx[24], subject[48], msg[1024];
        snprintf(idx, sizeof idx, "%zu", i);
        json_array_append_new(fixes, fix_value("--drop-nic", idx, "drop_nics", NULL, json_integer((json_int_t)i)));
        snprintf(subject, sizeof subject, "nics[%zu].switch", i);
        snprintf(msg, sizeof msg, "switch %s (nics[%zu], %s) does not exist on host %s; switches here: %s", sw, i,
                 p->cfg.nics[i].mac, a->name, list[0] ? list : "none");
        error_item(p, "switch-missing", subject, json_string(sw), fixes, msg);
    }
    json_decref(here);
}

static void check_qemu(struct agent *a, struct import_plan *p)
{
    char msg[512];
    const char *accel = accel_kind_name(a->accel.kind);
    if (!compat_machine_supported(a->caps.machines, p->cfg.machine)) {
        snprintf(msg, sizeof msg, "machine type %s is not supported by QEMU %s on host %s", p->cfg.machine,
                 a->caps.qemu_version, a->name);
        error_item(p, "machine-unsupported", "machine", json_string(p->cfg.machine),
                   json_pack("[o]", fix_value("--machine", a->caps.default_machine, "machine", NULL,
                                              json_string(a->caps.default_machine))), msg);
    }
    if (p->cfg.cpu_model && !strcmp(p->cfg.cpu_model, "host") && strcmp(accel, "kvm")) {
        snprintf(msg, sizeof msg, "cpu model host needs KVM; host %s runs %s", a->name, accel);
        error_item(p, "accel", "cpu_model", json_string(p->cfg.cpu_model),
                   json_pack("[o, o]", fix_value("--cpu-model", "max", "cpu_model", NULL, json_string("max")),
                             fix_value("--cpu-model", "qemu64", "cpu_model", NULL, json_string("qemu64"))), msg);
    }
    const char *src_accel = json_string_value(json_object_get(p->manifest, "accel"));
    if (src_accel && strcmp(src_accel, accel))
        compat_item(p->warnings, "accel", "warning", "accel", json_string(src_accel), NULL,
                    "exported on a host running %s; host %s runs %s (the import boots fresh, so only speed differs)",
                    src_accel, a->name, accel);
    if (p->cfg.boot.kind == VM_BOOT_KERNEL && access(p->cfg.boot.kernel, R_OK) < 0) {
        snprintf(msg, sizeof msg, "kernel %s is not readable on host %s", p->cfg.boot.kernel, a->name);
        error_item(p, "boot-file-missing", "boot.kernel", json_string(p->cfg.boot.kernel), NULL, msg);
    }
    if (p->cfg.boot.initrd && access(p->cfg.boot.initrd, R_OK) < 0) {
        snprintf(msg, sizeof msg, "initrd %s is not readable on host %s", p->cfg.boot.initrd, a->name);
        error_item(p, "boot-file-missing", "boot.initrd", json_string(p->cfg.boot.initrd), NULL, msg);
    }
}

/* Saved memory (an export --memory, a Hyper-V .vmrs): vmove imports boot
 * fresh, so it can only be discarded, and only when the user says so. */
static void check_saved_state(struct import_plan *p, json_t *ans)
{
    static const char *const names[] = {"memory.vmstate", "state.vmstate"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        char *f = xasprintf("%s/%s", p->src_dir, names[i]);
        bool has = path_exists(f) || manifest_find(p->manifest, names[i]);
        free(f);
        if (!has)
            continue;
        if (json_is_true(json_object_get(ans, "discard_saved_state"))) {
            compat_item(p->info, "saved-state", "info", "saved_state", json_string(names[i]), NULL,
                        "the saved state %s is discarded: the VM boots fresh", names[i]);
        } else {
            char msg[256];
            snprintf(msg, sizeof msg, "the export holds saved memory (%s), which vmove cannot load into an imported "
                     "VM", names[i]);
            error_item(p, "saved-state", "saved_state", json_string(names[i]),
                       json_pack("[o]", fix_value("--discard-saved-state", "", "discard_saved_state", NULL,
                                                  json_true())), msg);
        }
        return;
    }
}

/* Copy modes: where the files go, which must not exist yet. */
static void plan_targets(struct agent *a, struct import_plan *p)
{
    p->vm_dir = xasprintf("%s/%s", a->vms_dir, p->cfg.name);
    char msg[PATH_MAX + 256];
    if (path_exists(p->vm_dir)) {
        snprintf(msg, sizeof msg, "%s exists already (a VM directory of that name)", p->vm_dir);
        error_item(p, "target-exists", "name", json_string(p->vm_dir),
                   json_pack("[o]", fix_input("--name", "NAME", "name", NULL, "NAME")), msg);
    }
    if (p->mode == IMPORT_REGISTER)
        return;
    p->disk_dir = p->to ? xasprintf("%s/%s", p->to, p->cfg.name) : xstrdup(p->vm_dir);
    if (p->to) {
        struct path_policy pol;
        struct path_info pi;
        char why[1024];
        paths_policy_init(&pol, &a->settings, a->state_dir);
        if (paths_check_dir(&pol, DIR_STORAGE, p->to, &pi, why, sizeof why) < 0) {
            snprintf(msg, sizeof msg, "--to %s: %s", p->to, why);
            error_item(p, "target-denied", "to", json_string(p->to), NULL, msg);
        } else if (path_exists(p->disk_dir)) {
            snprintf(msg, sizeof msg, "target %s exists already", p->disk_dir);
            error_item(p, "target-exists", "to", json_string(p->disk_dir),
                       json_pack("[o]", fix_input("--name", "NAME", "name", NULL, "NAME")), msg);
        }
    }
    for (size_t i = 0; i < p->n; i++)
        p->disks[i].target = xasprintf("%s/%s.qcow2", p->disk_dir, p->disks[i].id);
}

/* ---- the report --------------------------------------------------------------------------- */

static json_t *plan_json(const struct import_plan *p)
{
    json_t *disks = json_array();
    for (size_t i = 0; i < p->n; i++) {
        const struct import_disk *d = &p->disks[i];
        const char *action = p->mode == IMPORT_REGISTER ? "use"
                             : d->sniff.format == SNIFF_QCOW2 ? "copy" : "convert";
        json_array_append_new(disks, json_pack("{s:s, s:s?, s:s?, s:s, s:s?}", "id", d->id, "source", d->source,
                                               "format", d->sniff.name, "action", action, "target", d->target));
    }
    json_t *cfg = p->cfg_ok ? vm_config_to_json(&p->cfg) : json_null();
    return json_pack("{s:s?, s:o, s:o}", "vm_dir", p->vm_dir, "disks", disks, "config", cfg ? cfg : json_null());
}

static void build_report(struct agent *a, struct import_plan *p, json_t *ans)
{
    json_t *answers = json_pack("{s:n, s:n, s:n, s:n, s:n, s:{}, s:[], s:{}, s:[], s:b, s:s}", "name", "memory_mib",
                                "cpus", "machine", "cpu_model", "map_switch", "drop_nics", "disks", "search_dirs",
                                "discard_saved_state", false, "mode", import_mode_name(p->mode));
    if (ans)
        json_object_update_existing(answers, ans);
    json_object_set_new(answers, "mode", json_string(import_mode_name(p->mode)));
    p->report = json_pack("{s:i, s:s, s:s, s:{s:s, s:s, s:s?}, s:s, s:s, s:{s:s?, s:s?}, s:b, s:O, s:O, s:O, s:o, "
                          "s:o}",
                          "report_version", 1, "operation", "import", "mode", import_mode_name(p->mode), "source",
                          "path", p->path, "kind", p->kind, "config", p->config_path, "host", a->name, "qemu",
                          a->caps.qemu_version, "vm", "name", p->cfg_ok ? p->cfg.name : NULL, "uuid",
                          p->cfg_ok ? p->cfg.uuid : NULL, "compatible", json_array_size(p->errors) == 0,
                          "incompatibilities", p->errors, "warnings", p->warnings, "info", p->info, "answers",
                          answers, "plan", plan_json(p));
}

/* ---- entry --------------------------------------------------------------------------------- */

static void check_config(struct agent *a, struct import_plan *p, json_t *ans)
{
    char err[1024];
    if (vm_config_load(p->config_path, &p->cfg, err, sizeof err) < 0) {
        error_item(p, "config-invalid", "vm.json", NULL, NULL, err);
        return;
    }
    apply_answers(p, ans);
    if (vm_config_validate(&p->cfg, err, sizeof err) < 0) {
        error_item(p, "config-invalid", "vm.json", NULL, NULL, err);
        return;
    }
    p->cfg_ok = true;
    check_identity(a, p);
    check_size(a, p);
    check_switches(a, p);
    check_qemu(a, p);
    check_saved_state(p, ans);
    p->n = p->cfg.n_disks;
    p->disks = xcalloc(p->n ? p->n : 1, sizeof *p->disks);
    for (size_t i = 0; i < p->n; i++)
        check_disk(a, p, i, ans);
    plan_targets(a, p);
}

json_t *import_plan_pending_checks(const struct import_plan *p) { return p->pending_checks; }
json_t *import_plan_pending_hashes(const struct import_plan *p) { return p->pending_hashes; }

struct import_plan *import_plan_make(struct agent *a, json_t *params, json_t *checks, json_t *digests, json_t **err)
{
    const char *path = json_string_value(json_object_get(params, "path"));
    const char *mode = json_string_value(json_object_get(params, "mode"));
    const char *to = json_string_value(json_object_get(params, "to"));
    json_t *ans = json_object_get(params, "answers");
    if (!path) {
        *err = proto_error(ERR_INVALID, NULL, "path: the export or VM directory to import is required");
        return NULL;
    }
    if ((*err = check_answers(ans)))
        return NULL;
    const char *amode = json_string_value(json_object_get(ans, "mode"));
    struct import_plan *p = xcalloc(1, sizeof *p);
    if (parse_mode(amode ? amode : mode ? mode : "register", &p->mode) < 0) {
        *err = proto_error(ERR_INVALID, NULL, "mode \"%s\": use register, copy or copy-new-id", amode ? amode : mode);
        free(p);
        return NULL;
    }
    if (to && to[0] != '/') {
        *err = proto_error(ERR_INVALID, NULL, "--to %s: give an absolute directory", to);
        free(p);
        return NULL;
    }
    if (to && p->mode == IMPORT_REGISTER) {
        *err = proto_error(ERR_INVALID, "use --mode copy or copy-new-id with --to", "--to is for the copy modes: "
                           "register uses the files where they are");
        free(p);
        return NULL;
    }
    p->path = xstrdup(path);
    p->checks = checks;
    p->digests = digests;
    p->pending_checks = json_array();
    p->pending_hashes = json_array();
    p->to = to ? xstrdup(to) : NULL;
    p->kind = "vm-config";
    p->errors = json_array();
    p->warnings = json_array();
    p->info = json_array();
    if (find_source(a, p, path) && check_manifest(p))
        check_config(a, p, ans);
    build_report(a, p, ans);
    return p;
}

json_t *import_plan_report(const struct import_plan *p) { return p->report; }
int import_plan_compatible(const struct import_plan *p) { return json_array_size(p->errors) == 0; }

void import_plan_free(struct import_plan *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        free(p->disks[i].id), free(p->disks[i].source), free(p->disks[i].target);
    free(p->disks);
    vm_config_free(&p->cfg);
    json_decref(p->manifest);
    json_decref(p->pending_checks);
    json_decref(p->pending_hashes);
    json_decref(p->errors), json_decref(p->warnings), json_decref(p->info), json_decref(p->report);
    free(p->path), free(p->to), free(p->src_dir), free(p->config_path), free(p->vm_dir), free(p->disk_dir);
    free(p);
}
