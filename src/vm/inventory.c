/* The inventory: the VMs of this host (STATE/vms/NAME), loaded at start-up
 * and re-attached to QEMUs that survived a vmoved restart; define, forget
 * and delete.  The list itself (agent->vms) is this file's alone: elsewhere
 * use vm_find, VM_FOREACH (vm_first/vm_next), vm_count. */
#include "vm/vm.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/journal.h"
#include "core/paths.h"
#include "qemu/qemu_proc.h"
#include "vm/vm_internal.h"

/* ---- lookup ----------------------------------------------------------- */

static struct vm *alloc_vm(struct agent *a, const char *name, const char *dir)
{
    struct vm *vm = xcalloc(1, sizeof *vm);
    vm->agent = a;
    vm->name = xstrdup(name);
    vm->dir = xstrdup(dir);
    vm->state = VM_STOPPED;
    /* Keep the list sorted by name: `vm list` reads it in order. */
    struct vm **p = &a->vms;
    while (*p && strcmp((*p)->name, name) < 0)
        p = &(*p)->next;
    vm->next = *p;
    *p = vm;
    return vm;
}

struct vm *vm_find(struct agent *a, const char *name)
{
    for (struct vm *vm = a->vms; vm; vm = vm->next)
        if (!strcmp(vm->name, name))
            return vm;
    return NULL;
}

struct vm *vm_first(struct agent *a) { return a->vms; }
struct vm *vm_next(const struct vm *vm) { return vm->next; }

size_t vm_count(struct agent *a)
{
    size_t n = 0;
    VM_FOREACH(a, vm)
        n++;
    return n;
}

struct vm *vm_find_by_disk_path(struct agent *a, const char *path)
{
    VM_FOREACH(a, vm)
        for (size_t k = 0; k < vm->cfg.n_disks; k++)
            if (!strcmp(vm->cfg.disks[k].path, path))
                return vm;
    return NULL;
}

struct vm *vm_find_by_disk_file(struct agent *a, const char *path)
{
    VM_FOREACH(a, vm)
        for (size_t k = 0; k < vm->cfg.n_disks; k++)
            if (paths_same_file(vm->cfg.disks[k].path, path))
                return vm;
    return NULL;
}

/* ---- load after a (re)start of vmoved --------------------------------- */

static void load_runtime(struct vm *vm)
{
    char *path = xasprintf("%s/runtime.json", vm->dir);
    json_t *rt = json_load_file(path, 0, NULL);
    free(path);
    if (!rt)
        return;
    vm_state_parse(json_string_value(json_object_get(rt, "state")), &vm->state);
    vm->qemu_pid = (pid_t)json_integer_value(json_object_get(rt, "qemu_pid"));
    vm->stop_expected = json_is_true(json_object_get(rt, "stop_expected"));
    vm->started_ms = (uint64_t)json_integer_value(json_object_get(rt, "started_ms"));
    vm->last_exit = json_incref(json_object_get(rt, "last_exit"));
    vm->migration = json_incref(json_object_get(rt, "migration"));
    vm->storage_move = json_incref(json_object_get(rt, "storage_move"));
    json_decref(rt);
}

/* Re-attach after a vmoved restart: the QEMU is either still ours or gone. */
static void reattach(struct vm *vm)
{
    bool was_active = vm->state == VM_STARTING || vm->state == VM_RUNNING ||
                      vm->state == VM_PAUSED || vm->state == VM_STOPPING ||
                      vm->state == VM_MIGRATING || vm->state == VM_INCOMING;
    if (!was_active)
        return;
    if (qemu_proc_is_ours(vm->qemu_pid, vm->cfg.uuid)) {
        log_info("vm %s: re-attaching to QEMU pid %d", vm->name, (int)vm->qemu_pid);
        vm_attach_qmp(vm);
        return;
    }
    json_decref(vm->last_exit);
    vm->last_exit = vm_exit_info(vm);
    const char *desc = json_string_value(json_object_get(vm->last_exit, "description"));
    if (vm->migration)
        return;   /* the migration code resolves it after loading the inventory */
    if (vm->stop_expected)
        vm_set_state(vm, VM_STOPPED, "QEMU exited while vmoved was down (stop requested)");
    else {
        char *why = xasprintf("QEMU exited while vmoved was down: %s", desc);
        vm_set_state(vm, VM_CRASHED, why);
        free(why);
    }
}

void vm_inventory_load(struct agent *a)
{
    DIR *d = opendir(a->vms_dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *dir = xasprintf("%s/%s", a->vms_dir, e->d_name);
        char *cfgpath = xasprintf("%s/vm.json", dir);
        char err[512];
        struct vm_config cfg;
        if (!path_exists(cfgpath)) {
            free(dir);
            free(cfgpath);
            continue;
        }
        struct vm *vm;
        if (vm_config_load(cfgpath, &cfg, err, sizeof err) < 0) {
            vm = alloc_vm(a, e->d_name, dir);
            vm->state = VM_BROKEN;
            vm->broken_reason = xstrdup(err);
            log_error("vm %s: %s", e->d_name, err);
        } else if (strcmp(cfg.name, e->d_name) != 0) {
            vm = alloc_vm(a, e->d_name, dir);
            vm->state = VM_BROKEN;
            vm->broken_reason = xasprintf("%s: name \"%s\" does not match its directory \"%s\"",
                                          cfgpath, cfg.name, e->d_name);
            log_error("vm %s: %s", e->d_name, vm->broken_reason);
            vm_config_free(&cfg);
        } else {
            vm = alloc_vm(a, cfg.name, dir);
            vm->cfg = cfg;
            load_runtime(vm);
            reattach(vm);
        }
        free(dir);
        free(cfgpath);
    }
    closedir(d);
}

void vm_inventory_free(struct agent *a)
{
    while (a->vms) {
        struct vm *vm = a->vms;
        a->vms = vm->next;
        vm_free(vm);
    }
}

struct vm *vm_define(struct agent *a, struct vm_config *cfg, const char *dir, json_t **err)
{
    char msg[512];
    if (vm_config_validate(cfg, msg, sizeof msg) < 0) {
        *err = proto_error(ERR_INVALID, NULL, "%s", msg);
        return NULL;
    }
    char *path = xasprintf("%s/vm.json", dir);
    int rc = vm_config_save(path, cfg, msg, sizeof msg);
    free(path);
    if (rc < 0) {
        *err = proto_error(ERR_INTERNAL, NULL, "%s", msg);
        return NULL;
    }
    struct vm *vm = alloc_vm(a, cfg->name, dir);
    vm->cfg = *cfg;
    memset(cfg, 0, sizeof *cfg);
    vm_save_runtime(vm);
    json_t *detail = json_pack("{s:s}", "uuid", vm->cfg.uuid);
    journal_event(a->journal, vm->name, "vm.defined", detail);
    json_decref(detail);
    return vm;
}

int vm_save_config(struct vm *vm, char *err, size_t errlen)
{
    char *path = xasprintf("%s/vm.json", vm->dir);
    int rc = vm_config_save(path, &vm->cfg, err, errlen);
    free(path);
    return rc;
}

void vm_forget(struct vm *vm)
{
    json_t *err = NULL;
    vm_set_hooks(vm, NULL);
    if (vm_delete(vm, true, &err) < 0) {
        log_error("%s", json_string_value(json_object_get(err, "message")));
        json_decref(err);
    }
}

struct vm *vm_define_in_state(struct agent *a, struct vm_config *cfg, json_t **err)
{
    char *dir = xasprintf("%s/%s", a->vms_dir, cfg->name);
    if (mkdir(dir, 0700) < 0) {
        *err = proto_error(ERR_EXISTS, NULL, "cannot create %s: %s", dir, strerror(errno));
        free(dir);
        return NULL;
    }
    struct vm *vm = vm_define(a, cfg, dir, err);
    if (!vm)
        remove_tree(dir);
    free(dir);
    return vm;
}

/* ---- delete ----------------------------------------------------------- */

static bool is_disk_path(const struct vm *vm, const char *path)
{
    for (size_t i = 0; i < vm->cfg.n_disks; i++)
        if (!strcmp(vm->cfg.disks[i].path, path))
            return true;
    return false;
}

/* Only files inside the VM's directory belong to vmove; disks attached by
 * path from elsewhere are never deleted. */
static int remove_vm_dir(struct vm *vm, bool keep_disks)
{
    DIR *d = opendir(vm->dir);
    if (!d)
        return errno == ENOENT ? 0 : -1;
    struct dirent *e;
    int rc = 0;
    bool kept = false;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *p = xasprintf("%s/%s", vm->dir, e->d_name);
        if (keep_disks && is_disk_path(vm, p))
            kept = true;
        else if (remove_tree(p) < 0)
            rc = -1;
        free(p);
    }
    closedir(d);
    /* A VM whose files were moved (--config-to) is a link to its directory. */
    char *real = realpath(vm->dir, NULL);
    struct stat st;
    if (!kept && lstat(vm->dir, &st) == 0 && S_ISLNK(st.st_mode)) {
        if (unlink(vm->dir) < 0 || (real && rmdir(real) < 0))
            rc = -1;
    } else if (!kept && rmdir(vm->dir) < 0)
        rc = -1;
    free(real);
    return rc;
}

int vm_delete(struct vm *vm, bool keep_disks, json_t **err)
{
    struct agent *a = vm->agent;
    if (remove_vm_dir(vm, keep_disks) < 0) {
        *err = proto_error(ERR_INTERNAL, NULL, "cannot remove %s completely: %s", vm->dir, strerror(errno));
        return -1;
    }
    journal_event(a->journal, vm->name, "vm.deleted", NULL);
    for (struct vm **p = &a->vms; *p; p = &(*p)->next)
        if (*p == vm) {
            *p = vm->next;
            break;
        }
    vm_free(vm);
    return 0;
}
