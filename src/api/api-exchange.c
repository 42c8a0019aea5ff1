/* vm.export and vm.import (src/exchange/). */
#include "api/methods.h"

#include "api/api.h"

#include <stdlib.h>

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

static void on_imported(void *arg, json_t *result, json_t *err)
{
    struct api_req *r = arg;
    if (result)
        api_reply(r, result);
    else
        api_fail(r, err);
}

static void api_vm_import(struct api_req *r)
{
    bool check;
    if (!api_param_str(r, "path", true) || api_param_bool(r, "check", false, &check) < 0)
        return;
    import_submit(r->agent, r->params, on_imported, r);
}

const struct api_method api_exchange_methods[] = {
    {"vm.export", api_vm_export, RIGHT_VM_MANAGE, API_JOB},
    {"vm.import", api_vm_import, RIGHT_VM_MANAGE, 0},
    {NULL, NULL, 0, 0},
};
