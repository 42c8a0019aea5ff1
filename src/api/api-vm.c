/* vm.create, vm.list, vm.show, vm.start, vm.stop, vm.pause, vm.resume,
 * vm.delete, vm.console, vm.guest */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "common/proto.h"
#include "api/methods.h"
#include "api/vm_plan.h"
#include "block/image.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/acl.h"
#include "api/api.h"
#include "core/jobs.h"
#include "core/paths.h"
#include "vm/vm.h"

#define CONSOLE_CHUNK_MAX (256 * 1024)

/* ---- create ----------------------------------------------------------- */

struct create_plan {
    struct vm_config cfg;
    struct vm_plan_disk *disks;    /* new_size 0 = existing file attached by path */
    char *dir;
    struct api_req *r;             /* answered once the new disks exist */
};

static void plan_free(struct create_plan *p)
{
    vm_config_free(&p->cfg);
    free(p->disks);
    free(p->dir);
}

static int plan_disks(struct agent *a, json_t *disks, struct create_plan *p, json_t *formats, char *err,
                      size_t errlen)
{
    size_t n = json_array_size(disks);
    p->cfg.disks = xcalloc(n, sizeof *p->cfg.disks);
    p->disks = xcalloc(n, sizeof *p->disks);
    for (size_t i = 0; i < n; i++) {
        const char *spec = json_string_value(json_array_get(disks, i));
        if (!spec) {
            snprintf(err, errlen, "disks[%zu]: expected a size (10G) or an absolute path", i);
            return -1;
        }
        struct vm_disk *d = &p->cfg.disks[i];
        p->cfg.n_disks = i + 1;
        d->id = xasprintf("vd%c", (char)('a' + i));
        d->bus = VM_DISK_BUS_VIRTIO;
        p->disks[i].d = d;
        if (vm_plan_disk(a, spec, p->dir, &p->cfg, formats, &p->disks[i], err, errlen) < 0)
            return -1;
    }
    return 0;
}

static int plan_nics(json_t *nics, struct create_plan *p, char *err, size_t errlen)
{
    size_t n = json_array_size(nics);
    p->cfg.nics = xcalloc(n, sizeof *p->cfg.nics);
    for (size_t i = 0; i < n; i++) {
        const char *sw = json_string_value(json_array_get(nics, i));
        if (!sw) {
            snprintf(err, errlen, "nics[%zu]: expected a switch name", i);
            return -1;
        }
        p->cfg.n_nics = i + 1;
        p->cfg.nics[i].switch_name = xstrdup(sw);
        vm_generate_mac(p->cfg.nics[i].mac);
    }
    return 0;
}

static int plan_boot(struct api_req *r, struct create_plan *p, char *err, size_t errlen)
{
    const char *kernel = json_string_value(json_object_get(r->params, "kernel"));
    const char *initrd = json_string_value(json_object_get(r->params, "initrd"));
    const char *append = json_string_value(json_object_get(r->params, "append"));
    if (!kernel) {
        if (initrd || append) {
            snprintf(err, errlen, "--initrd and --append need --kernel");
            return -1;
        }
        p->cfg.boot.kind = VM_BOOT_DISK;
        return 0;
    }
    p->cfg.boot.kind = VM_BOOT_KERNEL;
    struct path_policy pol;
    paths_policy_init(&pol, &r->agent->settings, r->agent->state_dir);
    const char *files[] = {kernel, initrd};
    char *canon[2] = {NULL, NULL};
    for (size_t i = 0; i < 2 && files[i]; i++) {
        struct path_info pi;
        char why[1024];
        if (paths_check_file(&pol, DIR_KERNELS, files[i], &pi, why, sizeof why) < 0) {
            snprintf(err, errlen, "%s %s: %s", i ? "initrd" : "kernel", files[i], why);
            free(canon[0]);
            return -1;
        }
        canon[i] = xstrdup(pi.canonical);
    }
    p->cfg.boot.kernel = canon[0];
    p->cfg.boot.initrd = canon[1];
    p->cfg.boot.append = append ? xstrdup(append) : NULL;
    return 0;
}

static int plan_create(struct api_req *r, const char *name, struct create_plan *p, json_t *formats, char *err,
                       size_t errlen)
{
    struct agent *a = r->agent;
    long long cpus;
    if (api_param_int(r, "cpus", 1, &cpus) < 0)
        return 1; /* already answered */
    p->dir = xasprintf("%s/%s", a->vms_dir, name);
    p->cfg.version = VM_CONFIG_VERSION;
    p->cfg.name = xstrdup(name);
    p->cfg.cpus = (int)(cpus > 100000 ? 100000 : cpus < -1 ? -1 : cpus);
    vm_generate_uuid(p->cfg.uuid);
    const char *machine = json_string_value(json_object_get(r->params, "machine"));
    p->cfg.machine = xstrdup(machine ? machine : a->caps.default_machine);
    p->cfg.ha = json_is_true(json_object_get(r->params, "ha"));
    json_t *iso = json_object_get(r->params, "isolation");
    if (iso && (!json_is_string(iso) || (strcmp(json_string_value(iso), "keep") &&
                                         strcmp(json_string_value(iso), "stop")))) {
        snprintf(err, errlen, "isolation must be \"stop\" or \"keep\"");
        return -1;
    }
    p->cfg.ha_keep = iso && !strcmp(json_string_value(iso), "keep");   /* without ha: refused by the validation */
    json_t *mem = json_object_get(r->params, "memory");
    if (!mem)
        p->cfg.memory_mib = 512;
    else if (vm_plan_memory(mem, &p->cfg.memory_mib, err, errlen) < 0)
        return -1;
    if (plan_boot(r, p, err, errlen) < 0)
        return -1;
    if (plan_disks(a, json_object_get(r->params, "disks"), p, formats, err, errlen) < 0)
        return -1;
    if (plan_nics(json_object_get(r->params, "nics"), p, err, errlen) < 0)
        return -1;
    return vm_config_validate(&p->cfg, err, errlen) < 0 ? -1 : 0;
}

/* The new disks exist (made by qemu-img in children), or not. */
static void on_create_disks(void *arg, const char *why)
{
    struct create_plan *p = arg;
    struct api_req *r = p->r;
    json_t *jerr = NULL;
    struct vm *vm = NULL;
    if (why)
        jerr = proto_error(ERR_INTERNAL, NULL, "%s", why);
    else if (vm_find(r->agent, p->cfg.name))
        jerr = proto_error(ERR_EXISTS, "choose another name or delete the VM first", "VM \"%s\" already exists on "
                           "host %s", p->cfg.name, r->agent->name);
    else
        vm = vm_define(r->agent, &p->cfg, p->dir, &jerr);
    if (!vm) {
        if (!why)
            vm_plan_unmake_disks(p->disks, p->cfg.n_disks);   /* PATH,size= ones live outside p->dir */
        remove_tree(p->dir);
        plan_free(p);
        free(p);
        api_fail(r, jerr);
        return;
    }
    plan_free(p);
    free(p);
    api_reply(r, vm_to_json(vm, true));
}

static void create_with_formats(struct api_req *r, json_t *formats)
{
    struct agent *a = r->agent;
    const char *name = api_param_str(r, "name", true);
    if (!name)
        return;
    if (!valid_name(name)) {
        api_failf(r, ERR_INVALID, NULL,
                  "invalid VM name \"%s\": use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", name);
        return;
    }
    if (a->settings.drained) {
        api_failf(r, ERR_STATE, "`vmove host resume` ends the maintenance", "host %s is drained for maintenance: "
                  "nothing new is placed on it", a->name);
        return;
    }
    if (vm_find(a, name)) {
        api_failf(r, ERR_EXISTS, "choose another name or delete the VM first", "VM \"%s\" already exists on host %s",
                  name, a->name);
        return;
    }
    struct create_plan *p = xcalloc(1, sizeof *p);
    char err[8192];
    int rc = plan_create(r, name, p, formats, err, sizeof err);
    if (rc > 0) {
        plan_free(p);
        free(p);
        return;
    }
    if (rc < 0) {
        plan_free(p);
        free(p);
        api_failf(r, ERR_INVALID, NULL, "%s", err);
        return;
    }
    /* Nothing has been written so far; from here a failure removes the
     * directory (which also keeps a second create of the name out). */
    if (path_exists(p->dir) || mkdir(p->dir, 0700) < 0) {
        api_failf(r, ERR_EXISTS, "remove the stale directory or choose another name",
                  "cannot create %s: %s", p->dir, path_exists(p->dir) ? "it already exists" : strerror(errno));
        plan_free(p);
        free(p);
        return;
    }
    p->r = r;
    vm_plan_make_disks(a, p->disks, p->cfg.n_disks, on_create_disks, p);
}

/* qemu-img info of every attached disk, one after the other, each in a
 * child the loop does not wait for (vm_plan_probe): an image on a stalled
 * filesystem holds this request (until qemu-img's timeout), not vmoved. */
static void on_create_facts(void *arg, json_t *facts)
{
    struct api_req *r = arg;
    create_with_formats(r, facts);
    json_decref(facts);
}

static void vm_create(struct api_req *r)
{
    vm_plan_probe(r->agent, vm_plan_attached_paths(r->agent, json_object_get(r->params, "disks")), NULL,
                  on_create_facts, r);
}

/* ---- queries ---------------------------------------------------------- */

static void vm_list(struct api_req *r)
{
    json_t *list = json_array();
    VM_FOREACH(r->agent, vm)
        json_array_append_new(list, vm_to_json(vm, false));
    api_reply(r, json_pack("{s:s, s:o}", "host", r->agent->name, "vms", list));
}

static void vm_show(struct api_req *r)
{
    struct vm *vm = api_param_vm(r);
    if (vm)
        api_reply(r, vm_to_json(vm, true));
}

/* ---- lifecycle -------------------------------------------------------- */

static void cancel_vm_job(struct job *j)
{
    struct vm *vm = vm_find(j->agent, j->vm);
    if (vm && vm->job == j)
        vm_cancel_job(vm);
}

static const struct job_ops start_ops = {"vm.start", cancel_vm_job};
static const struct job_ops stop_ops = {"vm.stop", cancel_vm_job};
static const struct job_ops force_stop_ops = {"vm.force-stop", NULL};

static bool check_no_job(struct api_req *r, struct vm *vm)
{
    struct job *j = job_active_for_vm(r->agent, vm->name);
    if (!j)
        return true;
    api_failf(r, ERR_STATE, "wait for it (`vmove jobs watch ID`) or cancel it",
              "VM %s is busy with job %lld (%s)", vm->name, (long long)j->id, j->ops->kind);
    return false;
}

struct start_claim {
    struct api_req *r;
    bool wait;
};

static void start_claimed(void *arg, json_t *result, json_t *error)
{
    struct start_claim *sc = arg;
    struct api_req *r = sc->r;
    bool wait = sc->wait;
    free(sc);
    json_decref(result);
    if (error) {
        api_fail(r, error);
        return;
    }
    struct vm *vm = api_param_vm(r);
    if (!vm)
        return;
    if ((vm->state != VM_STOPPED && vm->state != VM_CRASHED) || !check_no_job(r, vm)) {
        if (vm->state != VM_STOPPED && vm->state != VM_CRASHED)
            api_failf(r, ERR_STATE, NULL, "VM %s is %s, not stopped", vm->name, vm_state_name(vm->state));
        return;
    }
    struct job *job = job_create(r->agent, &start_ops, vm->name, NULL);
    api_job_answer(job, r, wait);
    vm_start(vm, job);
}

static void vm_start_api(struct api_req *r)
{
    struct vm *vm = api_param_vm(r);
    bool wait;
    if (!vm || api_param_bool(r, "wait", true, &wait) < 0)
        return;
    if (vm->state == VM_BROKEN) {
        api_failf(r, ERR_STATE, "fix or delete the VM", "VM %s is broken: %s", vm->name, vm->broken_reason);
        return;
    }
    if (vm->state != VM_STOPPED && vm->state != VM_CRASHED) {
        api_failf(r, ERR_STATE, NULL, "VM %s is %s, not stopped", vm->name, vm_state_name(vm->state));
        return;
    }
    if (r->agent->settings.drained) {
        api_failf(r, ERR_STATE, "`vmove host resume` ends the maintenance",
                  "host %s is drained for maintenance: no VM is started on it", r->agent->name);
        return;
    }
    if (!check_no_job(r, vm))
        return;
    if (vm->cfg.ha && r->agent->cluster) {
        /* An HA VM runs where its owner record says: take it first. */
        struct start_claim *sc = xcalloc(1, sizeof *sc);
        *sc = (struct start_claim){r, wait};
        cluster_vm_claim(r->agent, vm, start_claimed, sc);
        return;
    }
    struct job *job = job_create(r->agent, &start_ops, vm->name, NULL);
    api_job_answer(job, r, wait);
    vm_start(vm, job);
}

static void vm_stop_api(struct api_req *r)
{
    struct vm *vm = api_param_vm(r);
    bool wait, force;
    long long timeout;
    if (!vm || api_param_bool(r, "wait", true, &wait) < 0 || api_param_bool(r, "force", false, &force) < 0 ||
        api_param_int(r, "timeout", 60, &timeout) < 0)
        return;
    if (timeout < 1 || timeout > 3600) {
        api_failf(r, ERR_INVALID, NULL, "timeout must be between 1 and 3600 seconds");
        return;
    }
    if (vm->state == VM_CRASHED) {
        vm_acknowledge_crash(vm);
        api_reply(r, vm_to_json(vm, false));
        return;
    }
    bool stoppable = vm->state == VM_RUNNING || vm->state == VM_PAUSED ||
                     (force && (vm->state == VM_STOPPING || vm->state == VM_STARTING));
    if (!stoppable) {
        api_failf(r, ERR_STATE, NULL, "VM %s is %s", vm->name, vm_state_name(vm->state));
        return;
    }
    struct job *busy = job_active_for_vm(r->agent, vm->name);
    if (busy && !force) {
        check_no_job(r, vm);
        return;
    }
    if (busy) {
        /* --force wins over a graceful stop or a start in progress. */
        job_mark_cancel_requested(busy);
        vm_cancel_job(vm);
        if (vm->job) {
            job_fail(vm->job, proto_error(ERR_CANCELLED, NULL, "superseded by a forced stop"));
            vm->job = NULL;
        }
    }
    struct job *job = job_create(r->agent, force ? &force_stop_ops : &stop_ops, vm->name,
                                 json_pack("{s:b, s:I}", "force", force, "timeout", (json_int_t)timeout));
    api_job_answer(job, r, wait);
    vm_stop(vm, job, force, (int)timeout);
}

/* A vm_done_fn that answers the request it was given. */
static void answer_done(void *arg, json_t *result, json_t *error)
{
    if (error)
        api_fail(arg, error);
    else
        api_reply(arg, result);
}

static void answer_now_or_later(struct api_req *r, json_t *error)
{
    if (error)
        api_fail(r, error);
}

static void vm_pause_api(struct api_req *r)
{
    struct vm *vm = api_param_vm(r);
    if (!vm)
        return;
    if (vm->state != VM_RUNNING) {
        api_failf(r, ERR_STATE, NULL, "VM %s is %s, not running", vm->name, vm_state_name(vm->state));
        return;
    }
    answer_now_or_later(r, vm_pause(vm, answer_done, r));
}

static void vm_resume_api(struct api_req *r)
{
    struct vm *vm = api_param_vm(r);
    if (!vm)
        return;
    if (vm->state != VM_PAUSED) {
        api_failf(r, ERR_STATE, NULL, "VM %s is %s, not paused", vm->name, vm_state_name(vm->state));
        return;
    }
    answer_now_or_later(r, vm_resume(vm, answer_done, r));
}

static void vm_delete_api(struct api_req *r)
{
    struct vm *vm = api_param_vm(r);
    bool keep;
    if (!vm || api_param_bool(r, "keep_disks", false, &keep) < 0)
        return;
    if (vm->state != VM_STOPPED && vm->state != VM_CRASHED && vm->state != VM_BROKEN) {
        api_failf(r, ERR_STATE, "stop it first (`vmove vm stop NAME`)", "VM %s is %s", vm->name,
                  vm_state_name(vm->state));
        return;
    }
    if (!check_no_job(r, vm))
        return;
    char *name = xstrdup(vm->name);
    json_t *err = NULL;
    if (vm_delete(vm, keep, &err) < 0)
        api_fail(r, err);
    else
        api_reply(r, json_pack("{s:s, s:b}", "deleted", name, "kept_disks", keep));
    free(name);
}

/* ---- console and guest channel ---------------------------------------- */

/* Console output is raw bytes; JSON strings must be UTF-8.  Keep printable
 * ASCII and control characters a terminal uses, replace the rest. */
static void sanitize(char *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c >= 0x80 || (c < 0x20 && c != '\n' && c != '\r' && c != '\t' && c != 0x1b && c != '\b'))
            buf[i] = '?';
    }
}

static void vm_console(struct api_req *r)
{
    struct vm *vm = api_param_vm(r);
    long long offset, max;
    if (!vm || api_param_int(r, "offset", 0, &offset) < 0 || api_param_int(r, "max", 65536, &max) < 0)
        return;
    if (max <= 0 || max > CONSOLE_CHUNK_MAX)
        max = CONSOLE_CHUNK_MAX;
    char *path = xasprintf("%s/console.log", vm->dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    free(path);
    struct stat st = {0};
    if (fd >= 0)
        fstat(fd, &st);
    if (offset < 0)   /* negative: the last -offset bytes */
        offset = st.st_size + offset < 0 ? 0 : st.st_size + offset;
    if (offset > st.st_size)
        offset = st.st_size;
    char *buf = xmalloc((size_t)max + 1);
    ssize_t n = fd >= 0 ? pread(fd, buf, (size_t)max, offset) : 0;
    if (fd >= 0)
        close(fd);
    if (n < 0)
        n = 0;
    sanitize(buf, (size_t)n);
    buf[n] = 0;
    api_reply(r, json_pack("{s:s%, s:I, s:I, s:s, s:s}", "data", buf, (size_t)n, "offset",
                           (json_int_t)(offset + n), "size", (json_int_t)st.st_size, "state",
                           vm_state_name(vm->state), "dir", vm->dir));
    free(buf);
}

static void vm_guest(struct api_req *r)
{
    struct vm *vm = api_param_vm(r);
    long long timeout;
    if (!vm || api_param_int(r, "timeout_ms", 60000, &timeout) < 0)
        return;
    const char *cmd = api_param_str(r, "command", true);
    if (!cmd)
        return;
    if (strchr(cmd, '\n') || !*cmd) {
        api_failf(r, ERR_INVALID, NULL, "the guest command must be one non-empty line");
        return;
    }
    if (vm->state != VM_RUNNING && vm->state != VM_PAUSED) {
        api_failf(r, ERR_STATE, NULL, "VM %s is %s", vm->name, vm_state_name(vm->state));
        return;
    }
    vm_guest_command(vm, cmd, (int)(timeout < 100 ? 100 : timeout), answer_done, r);
}

const struct api_method api_vm_methods[] = {
    {"vm.create", vm_create, RIGHT_VM_MANAGE, 0},
    {"vm.list", vm_list, RIGHT_VM_READ, 0},
    {"vm.show", vm_show, RIGHT_VM_READ, 0},
    {"vm.start", vm_start_api, RIGHT_VM_MANAGE, API_JOB},
    {"vm.stop", vm_stop_api, RIGHT_VM_MANAGE, API_JOB},
    {"vm.pause", vm_pause_api, RIGHT_VM_MANAGE, 0},
    {"vm.resume", vm_resume_api, RIGHT_VM_MANAGE, 0},
    {"vm.delete", vm_delete_api, RIGHT_VM_MANAGE, 0},
    {"vm.console", vm_console, RIGHT_VM_READ, 0},
    {"vm.guest", vm_guest, RIGHT_VM_MANAGE, 0},
    {NULL, NULL, 0, 0},
};
