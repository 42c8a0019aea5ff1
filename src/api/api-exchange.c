/* vm.export and vm.import (src/exchange/). */
#include "api/methods.h"

#include "api/api.h"

#include <stdlib.h>

#include "block/image.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/acl.h"
#include "core/agent.h"
#include "exchange/export.h"
#include "exchange/import.h"

static void api_vm_export(struct api_req *r)
{
    bool wait, memory;
    if (!api_param_str(r, "name", true) || !api_param_str(r, "to", true) ||
        api_param_bool(r, "wait", true, &wait) < 0 || api_param_bool(r, "memory", false, &memory) < 0)
        return;
    json_t *err = NULL;
    struct vm_export *x = export_create(r->agent, r->params, &err);
    if (!x) {
        api_fail(r, err);
        return;
    }
    api_job_answer(export_job(x), r, wait);
    export_begin(x);
}

/* check: the report alone (nothing changes); else the import, refused with
 * the same report when anything does not fit. */
static void import_with_checks(struct api_req *r, json_t *checks)
{
    bool check = json_is_true(json_object_get(r->params, "check"));
    json_t *err = NULL;
    struct import_plan *p = import_plan_make(r->agent, r->params, checks, &err);
    if (!p) {
        api_fail(r, err);
        return;
    }
    if (check) {
        api_reply(r, json_incref(import_plan_report(p)));
        import_plan_free(p);
        return;
    }
    json_t *vm = import_plan_realize(r->agent, p, &err);
    if (vm)
        api_reply(r, json_pack("{s:o, s:O}", "vm", vm, "report", import_plan_report(p)));
    else
        api_fail(r, err);
    import_plan_free(p);
}

/* `qemu-img check` of every qcow2 source disk, one after the other, each in
 * a child the loop does not wait for (an image on a stalled filesystem holds
 * this request, not vmoved); then the plan again, with the verdicts. */
struct import_checks {
    struct api_req *r;
    json_t *paths, *verdicts;
    size_t next;
};

static void import_check_next(struct import_checks *ic);

static void on_import_check(void *arg, const char *err)
{
    struct import_checks *ic = arg;
    json_object_set_new(ic->verdicts, json_string_value(json_array_get(ic->paths, ic->next)),
                        err ? json_string(err) : json_null());
    ic->next++;
    import_check_next(ic);
}

static void import_check_next(struct import_checks *ic)
{
    if (ic->next < json_array_size(ic->paths)) {
        image_check_async(ic->r->agent->base, json_string_value(json_array_get(ic->paths, ic->next)), "qcow2",
                          on_import_check, ic);
        return;
    }
    import_with_checks(ic->r, ic->verdicts);
    json_decref(ic->paths);
    json_decref(ic->verdicts);
    free(ic);
}

static void api_vm_import(struct api_req *r)
{
    bool check;
    if (!api_param_str(r, "path", true) || api_param_bool(r, "check", false, &check) < 0)
        return;
    json_t *err = NULL;
    /* A first plan without qemu-img says which disks it must check. */
    struct import_plan *p = import_plan_make(r->agent, r->params, NULL, &err);
    if (!p) {
        api_fail(r, err);
        return;
    }
    struct import_checks *ic = xcalloc(1, sizeof *ic);
    ic->r = r;
    ic->paths = json_incref(import_plan_pending_checks(p));
    ic->verdicts = json_object();
    import_plan_free(p);
    import_check_next(ic);
}

const struct api_method api_exchange_methods[] = {
    {"vm.export", api_vm_export, RIGHT_VM_MANAGE, API_JOB},
    {"vm.import", api_vm_import, RIGHT_VM_MANAGE, 0},
    {NULL, NULL, 0, 0},
};
