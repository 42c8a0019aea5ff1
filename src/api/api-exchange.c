/* vm.export and vm.import (src/exchange/). */
#include "api/methods.h"

#include "api/api.h"
#include "common/proto.h"
#include "core/acl.h"
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
static void api_vm_import(struct api_req *r)
{
    bool check;
    if (!api_param_str(r, "path", true) || api_param_bool(r, "check", false, &check) < 0)
        return;
    json_t *err = NULL;
    struct import_plan *p = import_plan_make(r->agent, r->params, &err);
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

const struct api_method api_exchange_methods[] = {
    {"vm.export", api_vm_export, RIGHT_VM_MANAGE, 0},
    {"vm.import", api_vm_import, RIGHT_VM_MANAGE, 0},
    {NULL, NULL, 0, 0},
};
