/* Realizing an import plan (see exchange/import.h): files are created only
 * here, only after every check passed, and removed again on failure. */
#include "exchange/import.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "block/image.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/journal.h"
#include "exchange/import_internal.h"
#include "exchange/manifest.h"
#include "vm/vm.h"

/* A copy-mode import in flight: each disk converted (or copied) into the
 * plan's directory and then checked, each step in a child (minutes for a
 * big disk: the loop goes on serving everyone else). */
struct import_run {
    struct agent *agent;
    struct import_plan *p;
    import_done_fn done;
    void *arg;
    size_t next;                    /* the disk being copied */
    bool checking;                  /* its copy is being checked */
    bool own_disk_dir;
};

/* Every ending: journal, log, and on failure nothing left behind. */
static void import_end(struct agent *a, struct import_plan *p, json_t *vm, json_t *err, import_done_fn done,
                       void *arg)
{
    json_t *detail = json_pack("{s:s, s:s, s:b}", "source", p->src_dir, "mode", import_mode_name(p->mode), "ok",
                               vm != NULL);
    journal_event(a->journal, p->cfg.name, vm ? "vm.imported" : "vm.import.failed", detail);
    json_decref(detail);
    if (vm)
        log_info("%s: imported from %s (%s)", p->cfg.name, p->src_dir, import_mode_name(p->mode));
    done(arg, vm, err);
}

static void run_end(struct import_run *run, json_t *vm, json_t *err)
{
    struct import_plan *p = run->p;
    if (!vm) {
        if (run->own_disk_dir)
            remove_tree(p->disk_dir);
        remove_tree(p->vm_dir);
    }
    import_end(run->agent, p, vm, err, run->done, run->arg);
    free(run);
}

static void copy_next(struct import_run *run);

static void on_copy_step(void *arg, const char *why)
{
    struct import_run *run = arg;
    struct import_plan *p = run->p;
    struct import_disk *d = &p->disks[run->next];
    if (why && !run->checking) {
        run_end(run, NULL, proto_error(ERR_INTERNAL, NULL, "import of %s failed: disk %s: qemu-img convert -f %s %s "
                                       "failed: %s", p->cfg.name, d->id, d->sniff.qemu_format, d->source, why));
        return;
    }
    if (why) {
        run_end(run, NULL, proto_error(ERR_INTERNAL, NULL, "import of %s failed: disk %s: the copy %s fails "
                                       "qemu-img check: %s", p->cfg.name, d->id, d->target, why));
        return;
    }
    if (!run->checking) {
        /* The copy is checked before the VM may use it. */
        run->checking = true;
        image_check_async(run->agent->base, d->target, "qcow2", on_copy_step, run);
        return;
    }
    run->checking = false;
    free(p->cfg.disks[run->next].path);
    p->cfg.disks[run->next].path = xstrdup(d->target);
    run->next++;
    copy_next(run);
}

static void copy_next(struct import_run *run)
{
    struct import_plan *p = run->p;
    if (run->next < p->n) {
        struct import_disk *d = &p->disks[run->next];
        image_convert_async(run->agent->base, d->source, d->sniff.qemu_format, d->target, on_copy_step, run);
        return;
    }
    struct vm_config c;
    json_t *err = NULL;
    vm_config_copy(&c, &p->cfg);
    struct vm *vm = vm_define(run->agent, &c, p->vm_dir, &err);
    vm_config_free(&c);
    run_end(run, vm ? vm_to_json(vm, true) : NULL, err);
}

static void realize_register(struct agent *a, struct import_plan *p, import_done_fn done, void *arg)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->cfg.disks[i].path);
        p->cfg.disks[i].path = xstrdup(p->disks[i].source);
    }
    struct vm_config c;
    json_t *err = NULL;
    vm_config_copy(&c, &p->cfg);
    struct vm *vm = vm_define_in_state(a, &c, &err);
    vm_config_free(&c);
    import_end(a, p, vm ? vm_to_json(vm, true) : NULL, err, done, arg);
}

static void realize_copy(struct agent *a, struct import_plan *p, import_done_fn done, void *arg)
{
    bool own_disk_dir = strcmp(p->disk_dir, p->vm_dir) != 0;
    if (mkdir(p->vm_dir, 0700) < 0) {
        import_end(a, p, NULL, proto_error(ERR_EXISTS, NULL, "cannot create %s: %s", p->vm_dir, strerror(errno)),
                   done, arg);
        return;
    }
    if (own_disk_dir && mkdir(p->disk_dir, 0700) < 0) {
        json_t *err = proto_error(ERR_EXISTS, NULL, "cannot create %s: %s", p->disk_dir, strerror(errno));
        remove_tree(p->vm_dir);
        import_end(a, p, NULL, err, done, arg);
        return;
    }
    struct import_run *run = xcalloc(1, sizeof *run);
    *run = (struct import_run){.agent = a, .p = p, .done = done, .arg = arg, .own_disk_dir = own_disk_dir};
    copy_next(run);
}

void import_plan_realize(struct agent *a, struct import_plan *p, import_done_fn done, void *arg)
{
    if (!import_plan_compatible(p)) {
        json_t *err = proto_error(ERR_INVALID, "`vmove vm import PATH --check` lists them with their fixes",
                                  "the import does not fit this host (%zu problem(s))", json_array_size(p->errors));
        json_object_set(err, "report", p->report);
        done(arg, NULL, err);
        return;
    }
    if (p->mode == IMPORT_REGISTER)
        realize_register(a, p, done, arg);
    else
        realize_copy(a, p, done, arg);
}

/* ---- a whole request: learn, plan, realize ------------------------------------------------ */

/* The sums of the manifest's disks, then `qemu-img check` of every qcow2
 * source disk, one after the other, each in a child the loop does not wait
 * for (a big disk, or an image on a stalled filesystem, holds this request,
 * not vmoved); then the plan again, with what was learnt. */
struct import_req {
    struct agent *agent;
    json_t *params;
    json_t *hashes, *paths;         /* to hash, then to check */
    json_t *digests, *verdicts;
    size_t next;                    /* over hashes, then over paths */
    struct import_plan *p;          /* the second plan, while it is realized */
    import_done_fn done;
    void *arg;
};

static void ireq_free(struct import_req *ir)
{
    import_plan_free(ir->p);
    json_decref(ir->params), json_decref(ir->hashes), json_decref(ir->paths);
    json_decref(ir->digests), json_decref(ir->verdicts);
    free(ir);
}

static void on_realized(void *arg, json_t *vm, json_t *err)
{
    struct import_req *ir = arg;
    json_t *res = vm ? json_pack("{s:o, s:O}", "vm", vm, "report", import_plan_report(ir->p)) : NULL;
    ir->done(ir->arg, res, err);
    ireq_free(ir);
}

/* check: the report alone (nothing changes); else the import, refused with
 * the same report when anything does not fit. */
static void ireq_plan(struct import_req *ir)
{
    json_t *err = NULL;
    ir->p = import_plan_make(ir->agent, ir->params, ir->verdicts, ir->digests, &err);
    if (!ir->p || json_is_true(json_object_get(ir->params, "check"))) {
        ir->done(ir->arg, ir->p ? json_incref(import_plan_report(ir->p)) : NULL, err);
        ireq_free(ir);
        return;
    }
    import_plan_realize(ir->agent, ir->p, on_realized, ir);
}

static void ireq_next(struct import_req *ir);

static void on_source_hashed(void *arg, const char *hex, uint64_t size, const char *err)
{
    struct import_req *ir = arg;
    json_object_set_new(ir->digests, json_string_value(json_array_get(ir->hashes, ir->next)),
                        hex ? json_pack("{s:s, s:I}", "sha256", hex, "size", (json_int_t)size) : json_string(err));
    ir->next++;
    ireq_next(ir);
}

static void on_source_checked(void *arg, const char *err)
{
    struct import_req *ir = arg;
    json_object_set_new(ir->verdicts, json_string_value(json_array_get(ir->paths, ir->next - json_array_size(ir->hashes))),
                        err ? json_string(err) : json_null());
    ir->next++;
    ireq_next(ir);
}

static void ireq_next(struct import_req *ir)
{
    size_t nh = json_array_size(ir->hashes);
    if (ir->next < nh)
        manifest_sha256_async(ir->agent->base, json_string_value(json_array_get(ir->hashes, ir->next)),
                              on_source_hashed, ir);
    else if (ir->next - nh < json_array_size(ir->paths))
        image_check_async(ir->agent->base, json_string_value(json_array_get(ir->paths, ir->next - nh)), "qcow2",
                          on_source_checked, ir);
    else
        ireq_plan(ir);
}

void import_submit(struct agent *a, json_t *params, import_done_fn done, void *arg)
{
    json_t *err = NULL;
    /* A first plan without qemu-img or sums says what it must learn. */
    struct import_plan *p = import_plan_make(a, params, NULL, NULL, &err);
    if (!p) {
        done(arg, NULL, err);
        return;
    }
    struct import_req *ir = xcalloc(1, sizeof *ir);
    *ir = (struct import_req){.agent = a, .params = json_incref(params), .done = done, .arg = arg};
    ir->hashes = json_incref(import_plan_pending_hashes(p));
    ir->paths = json_incref(import_plan_pending_checks(p));
    ir->digests = json_object();
    ir->verdicts = json_object();
    import_plan_free(p);
    ireq_next(ir);
}
