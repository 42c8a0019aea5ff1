/* vm.info (what virsh dominfo + domblklist + domiflist show) and vm.set (a
 * stopped VM's memory, CPUs, disks and NICs; the HA settings are vm.set-ha,
 * api-cluster.c).  A change is planned on a copy of the config, checked
 * whole, and only then are new disks created and vm.json written: a bad
 * request changes nothing. */
#include "api/methods.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "api/api.h"
#include "api/vm_plan.h"
#include "block/image.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/acl.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "qemu/qemu_argv.h"
#include "vm/vm.h"

/* ---- info --------------------------------------------------------------- */

/* facts: vm_plan_probe's, learnt from qemu-img without blocking the loop. */
static json_t *disk_info(const struct vm_disk *d, json_t *facts)
{
    json_t *j = json_pack("{s:s, s:s}", "id", d->id, "path", d->path);
    json_t *f = json_object_get(facts, d->path);
    struct stat st;
    if (stat(d->path, &st) == 0)   /* what the file takes on the host */
        json_object_set_new(j, "allocated_bytes", json_integer((json_int_t)st.st_blocks * 512));
    if (json_object_get(f, "format")) {
        json_object_set(j, "format", json_object_get(f, "format"));
        json_object_set(j, "virtual_bytes", json_object_get(f, "virtual_size"));
        if (json_object_get(f, "backing"))
            json_object_set(j, "backing", json_object_get(f, "backing"));
    } else {
        json_t *why = json_object_get(f, "error");
        json_object_set_new(j, "error", why ? json_incref(why) : json_string("not inspected: the disk changed meanwhile"));
    }
    return j;
}

static json_t *nics_info(const struct vm_config *c)
{
    json_t *list = json_array();
    for (size_t i = 0; i < c->n_nics; i++) {
        char tap[16], id[32];
        qemu_tap_name(c, i, tap);
        snprintf(id, sizeof id, "net%zu", i);
        json_array_append_new(list, json_pack("{s:s, s:s, s:s, s:s}", "id", id, "switch", c->nics[i].switch_name,
                                              "mac", c->nics[i].mac, "tap", tap));
    }
    return list;
}

static json_t *checkpoints_info(const struct vm_config *c)
{
    json_t *names = json_array();
    size_t i;
    json_t *ck;
    json_array_foreach(json_object_get(c->checkpoints, "list"), i, ck)
        json_array_append(names, json_object_get(ck, "name"));
    json_t *cur = json_object_get(c->checkpoints, "current");
    return json_pack("{s:o, s:O}", "list", names, "current", cur ? cur : json_null());
}

static void info_with_facts(void *arg, json_t *facts)
{
    struct api_req *r = arg;
    struct vm *vm = api_param_vm(r);   /* it may have gone meanwhile */
    if (!vm) {
        json_decref(facts);
        return;
    }
    json_t *j = vm_to_json(vm, false);
    json_object_set_new(j, "host", json_string(r->agent->name));
    if (vm->state == VM_BROKEN) {
        json_decref(facts);
        api_reply(r, j);
        return;
    }
    const struct vm_config *c = &vm->cfg;
    json_object_set_new(j, "machine", json_string(c->machine));
    json_object_set_new(j, "accel", json_string(accel_kind_name(r->agent->accel.kind)));
    json_t *disks = json_array();
    for (size_t i = 0; i < c->n_disks; i++)
        json_array_append_new(disks, disk_info(&c->disks[i], facts));
    json_object_set_new(j, "disks", disks);
    json_object_set_new(j, "nics", nics_info(c));
    json_object_set_new(j, "checkpoints", checkpoints_info(c));
    json_decref(facts);
    api_reply(r, j);
}

/* qemu-img info of each disk first, in children the loop does not wait for. */
static void vm_info_api(struct api_req *r)
{
    struct vm *vm = api_param_vm(r);
    if (!vm)
        return;
    json_t *paths = json_array();
    for (size_t i = 0; vm->state != VM_BROKEN && i < vm->cfg.n_disks; i++)
        json_array_append_new(paths, json_string(vm->cfg.disks[i].path));
    vm_plan_probe(r->agent, paths, "qcow2", info_with_facts, r);
}

/* ---- set ---------------------------------------------------------------- */

struct set_plan {
    struct vm_config cfg;          /* the VM's config as it will be */
    struct vm_plan_disk *new_disks;
    size_t n_new;
    json_t *changes;               /* ["memory 512 -> 1024 MiB", ...] for the reply and the audit */
};

static void set_plan_free(struct set_plan *p)
{
    vm_config_free(&p->cfg);
    free(p->new_disks);
    json_decref(p->changes);
}

static void change(struct set_plan *p, const char *fmt, const char *a, const char *b)
{
    char buf[1200];
    snprintf(buf, sizeof buf, fmt, a, b);
    json_array_append_new(p->changes, json_string(buf));
}

static int set_scalars(struct api_req *r, struct set_plan *p, char *err, size_t errlen)
{
    json_t *mem = json_object_get(r->params, "memory"), *cpus = json_object_get(r->params, "cpus");
    char a[32], b[32];
    if (mem) {
        uint64_t mib;
        if (vm_plan_memory(mem, &mib, err, errlen) < 0)
            return -1;
        snprintf(a, sizeof a, "%llu", (unsigned long long)p->cfg.memory_mib);
        snprintf(b, sizeof b, "%llu", (unsigned long long)mib);
        change(p, "memory %s -> %s MiB", a, b);
        p->cfg.memory_mib = mib;
    }
    if (cpus) {
        if (!json_is_integer(cpus) || json_integer_value(cpus) < VM_CPUS_MIN || json_integer_value(cpus) > VM_CPUS_MAX) {
            snprintf(err, errlen, "cpus: expected a whole number from %d to %d", VM_CPUS_MIN, VM_CPUS_MAX);
            return -1;
        }
        snprintf(a, sizeof a, "%d", p->cfg.cpus);
        snprintf(b, sizeof b, "%lld", (long long)json_integer_value(cpus));
        change(p, "cpus %s -> %s", a, b);
        p->cfg.cpus = (int)json_integer_value(cpus);
    }
    return 0;
}

/* A string array parameter into *out (absent: NULL, which acts as empty). */
static int str_list(struct api_req *r, const char *key, json_t **out, char *err, size_t errlen)
{
    json_t *v = json_object_get(r->params, key), *s;
    size_t i;
    bool ok = !v || json_is_array(v);
    json_array_foreach(v, i, s) ok &= json_is_string(s) != 0;
    if (!ok)
        snprintf(err, errlen, "%s: expected an array of strings", key);
    *out = v;
    return ok ? 0 : -1;
}

static int remove_disks(struct set_plan *p, json_t *which, char *err, size_t errlen)
{
    size_t i;
    json_t *w;
    json_array_foreach(which, i, w) {
        const char *key = json_string_value(w);
        size_t k = 0;
        while (k < p->cfg.n_disks && strcmp(p->cfg.disks[k].id, key) && strcmp(p->cfg.disks[k].path, key))
            k++;
        if (k == p->cfg.n_disks) {
            snprintf(err, errlen, "--remove-disk %s: the VM has no disk with that id or path (`vmove vm info` "
                                  "lists them)", key);
            return -1;
        }
        change(p, "disk %s removed (the file stays: %s)", p->cfg.disks[k].id, p->cfg.disks[k].path);
        free(p->cfg.disks[k].id);
        free(p->cfg.disks[k].path);
        memmove(&p->cfg.disks[k], &p->cfg.disks[k + 1], (p->cfg.n_disks - k - 1) * sizeof *p->cfg.disks);
        p->cfg.n_disks--;
    }
    return 0;
}

static char *free_disk_id(const struct vm_config *c)
{
    for (char l = 'a'; l <= 'z'; l++) {
        char id[8];
        snprintf(id, sizeof id, "vd%c", l);
        if (!vm_config_find_disk(c, id))
            return xstrdup(id);
    }
    return NULL;
}

static int add_disks(struct api_req *r, struct vm *vm, struct set_plan *p, json_t *specs, json_t *formats, char *err,
                     size_t errlen)
{
    size_t n = json_array_size(specs);
    if (p->cfg.n_disks + n > VM_MAX_DISKS) {
        snprintf(err, errlen, "a VM has at most %d disks", VM_MAX_DISKS);
        return -1;
    }
    p->cfg.disks = xrealloc(p->cfg.disks, (p->cfg.n_disks + n) * sizeof *p->cfg.disks);
    p->new_disks = xcalloc(n ? n : 1, sizeof *p->new_disks);
    for (size_t i = 0; i < n; i++) {
        struct vm_disk *d = &p->cfg.disks[p->cfg.n_disks];
        *d = (struct vm_disk){.id = free_disk_id(&p->cfg), .bus = VM_DISK_BUS_VIRTIO};
        p->cfg.n_disks++;
        p->new_disks[i].d = NULL;
        struct vm_plan_disk one = {.d = d};
        if (vm_plan_disk(r->agent, json_string_value(json_array_get(specs, i)), vm->dir, &p->cfg, formats, &one, err,
                         errlen) < 0)
            return -1;
        p->new_disks[i].new_size = one.new_size;
        change(p, one.new_size ? "disk %s added: new qcow2 %s" : "disk %s added: %s", d->id, d->path);
        p->n_new = i + 1;
    }
    /* realloc may move the array: point the plan at the final places. */
    for (size_t i = 0; i < p->n_new; i++)
        p->new_disks[i].d = &p->cfg.disks[p->cfg.n_disks - p->n_new + i];
    return 0;
}

static int remove_nics(struct set_plan *p, json_t *which, char *err, size_t errlen)
{
    size_t i;
    json_t *w;
    json_array_foreach(which, i, w) {
        const char *key = json_string_value(w);
        size_t k = 0, hits = 0, at = 0;
        for (; k < p->cfg.n_nics; k++) {
            char id[32];
            snprintf(id, sizeof id, "net%zu", k);
            if (!strcasecmp(p->cfg.nics[k].mac, key) || !strcmp(id, key) || !strcmp(p->cfg.nics[k].switch_name, key)) {
                hits++;
                at = k;
            }
        }
        if (hits != 1) {
            snprintf(err, errlen, hits ? "--remove-nic %s: %zu NICs match; give the MAC" :
                                         "--remove-nic %s: no NIC with that MAC, id or switch (`vmove vm info` lists them)",
                     key, hits);
            return -1;
        }
        change(p, "NIC %s on %s removed", p->cfg.nics[at].mac, p->cfg.nics[at].switch_name);
        free(p->cfg.nics[at].switch_name);
        memmove(&p->cfg.nics[at], &p->cfg.nics[at + 1], (p->cfg.n_nics - at - 1) * sizeof *p->cfg.nics);
        p->cfg.n_nics--;
    }
    return 0;
}

static int add_nics(struct set_plan *p, json_t *switches, char *err, size_t errlen)
{
    size_t n = json_array_size(switches);
    if (p->cfg.n_nics + n > VM_MAX_NICS) {
        snprintf(err, errlen, "a VM has at most %d NICs", VM_MAX_NICS);
        return -1;
    }
    p->cfg.nics = xrealloc(p->cfg.nics, (p->cfg.n_nics + n + 1) * sizeof *p->cfg.nics);
    for (size_t i = 0; i < n; i++) {
        struct vm_nic *nic = &p->cfg.nics[p->cfg.n_nics++];
        nic->switch_name = xstrdup(json_string_value(json_array_get(switches, i)));
        vm_generate_mac(nic->mac);
        change(p, "NIC %s added on %s", nic->mac, nic->switch_name);
    }
    return 0;
}

static int plan_set(struct api_req *r, struct vm *vm, struct set_plan *p, json_t *formats, char *err, size_t errlen)
{
    json_t *rm_disk, *add_disk, *rm_nic, *add_nic;
    if (str_list(r, "remove_disks", &rm_disk, err, errlen) < 0 || str_list(r, "add_disks", &add_disk, err, errlen) < 0 ||
        str_list(r, "remove_nics", &rm_nic, err, errlen) < 0 || str_list(r, "add_nics", &add_nic, err, errlen) < 0)
        return -1;
    vm_config_copy(&p->cfg, &vm->cfg);
    p->changes = json_array();
    if (set_scalars(r, p, err, errlen) < 0 || remove_disks(p, rm_disk, err, errlen) < 0 ||
        add_disks(r, vm, p, add_disk, formats, err, errlen) < 0 || remove_nics(p, rm_nic, err, errlen) < 0 ||
        add_nics(p, add_nic, err, errlen) < 0)
        return -1;
    if (!json_array_size(p->changes)) {
        snprintf(err, errlen, "nothing to change: give --memory, --cpus, --add-disk, --remove-disk, --add-nic or "
                              "--remove-nic");
        return -1;
    }
    return vm_config_validate(&p->cfg, err, errlen);
}

/* Only a VM that is stopped and idle, and one whose checkpoints do not tie
 * its disks and memory to what they were. */
static bool set_allowed(struct api_req *r, struct vm *vm)
{
    struct job *j = job_active_for_vm(r->agent, vm->name);
    if (vm->state != VM_STOPPED)
        api_failf(r, ERR_STATE, vm->state == VM_CRASHED ? "`vmove vm stop NAME` acknowledges the crash" :
                  "stop it first (`vmove vm stop NAME`); --ha works on a running VM",
                  "VM %s is %s: memory, CPUs, disks and NICs change only while it is stopped", vm->name,
                  vm_state_name(vm->state));
    else if (j)
        api_failf(r, ERR_STATE, "wait for it (`vmove jobs watch ID`) or cancel it", "VM %s is busy with job %lld (%s)",
                  vm->name, (long long)j->id, j->ops->kind);
    else if (vm_config_checkpoint_count(&vm->cfg))
        api_failf(r, ERR_STATE, "`vmove checkpoint delete` them first", "VM %s has %zu checkpoint(s), which record "
                  "its disks and memory as they are", vm->name, vm_config_checkpoint_count(&vm->cfg));
    else
        return true;
    return false;
}

/* A planned change whose new disks are being made (qemu-img in children). */
struct set_run {
    struct api_req *r;
    struct set_plan p;
    json_t *before;                /* the config the plan started from */
};

static void set_run_free(struct set_run *run)
{
    set_plan_free(&run->p);
    json_decref(run->before);
    free(run);
}

/* The new disks exist: the change is written, unless the VM changed
 * meanwhile (another request, a start): then nothing is, and the disks
 * made for it go again. */
static void on_set_disks(void *arg, const char *why)
{
    struct set_run *run = arg;
    struct api_req *r = run->r;
    char err[4096] = "";
    if (why) {
        api_failf(r, ERR_INTERNAL, NULL, "%s", why);
        set_run_free(run);
        return;
    }
    struct vm *vm = vm_find(r->agent, json_string_value(json_object_get(r->params, "name")));
    json_t *now = vm ? vm_config_to_json(&vm->cfg) : NULL;
    bool same = now && json_equal(now, run->before);
    json_decref(now);
    if (!vm || !same || vm->state != VM_STOPPED || job_active_for_vm(r->agent, vm->name)) {
        vm_plan_unmake_disks(run->p.new_disks, run->p.n_new);
        api_failf(r, ERR_STATE, "run the same vm set again", "VM %s %s while its new disks were made; nothing "
                  "was changed", json_string_value(json_object_get(r->params, "name")), vm ? "changed" : "went");
        set_run_free(run);
        return;
    }
    struct vm_config old = vm->cfg;
    vm->cfg = run->p.cfg;
    if (vm_save_config(vm, err, sizeof err) < 0) {
        vm->cfg = old;   /* vm.json is written atomically: the old one stands */
        vm_plan_unmake_disks(run->p.new_disks, run->p.n_new);
        api_failf(r, ERR_INTERNAL, NULL, "cannot write the VM's config: %s", err);
        set_run_free(run);
        return;
    }
    run->p.cfg = old;   /* freed with the plan */
    json_t *res = vm_to_json(vm, true);
    json_object_set(res, "changes", run->p.changes);
    set_run_free(run);
    api_reply(r, res);
}

/* The plan, made once qemu-img has answered for the attached images, on
 * the VM as it is then (checked again: it may have changed meanwhile). */
static void set_with_formats(struct api_req *r, json_t *formats)
{
    struct vm *vm = api_param_vm(r);
    if (!vm || !set_allowed(r, vm))
        return;
    struct set_plan p = {0};
    char err[4096] = "";
    if (plan_set(r, vm, &p, formats, err, sizeof err) < 0) {
        api_failf(r, ERR_INVALID, NULL, "%s", err);
        set_plan_free(&p);
        return;
    }
    struct set_run *run = xcalloc(1, sizeof *run);
    run->r = r;
    run->p = p;
    run->before = vm_config_to_json(&vm->cfg);
    vm_plan_make_disks(r->agent, run->p.new_disks, run->p.n_new, on_set_disks, run);
}

static void on_set_formats(void *arg, json_t *formats)
{
    set_with_formats(arg, formats);
    json_decref(formats);
}

/* qemu-img info of each image --add-disk attaches, in children the loop
 * does not wait for (it may sit on stalled storage). */
static void vm_set_api(struct api_req *r)
{
    struct vm *vm = api_param_vm(r);
    if (!vm || !set_allowed(r, vm))
        return;
    json_t *add = json_object_get(r->params, "add_disks");
    vm_plan_probe(r->agent, vm_plan_attached_paths(r->agent, json_is_array(add) ? add : NULL), NULL, on_set_formats, r);
}

const struct api_method api_vm_config_methods[] = {
    {"vm.info", vm_info_api, RIGHT_VM_READ, 0},
    {"vm.set", vm_set_api, RIGHT_VM_MANAGE, 0},
    {NULL, NULL, 0, 0},
};
