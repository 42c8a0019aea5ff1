/* vm.move-storage: live storage migration (src/storage/storage_move.c). */
#include "api/methods.h"

#include "api/api.h"
#include "common/proto.h"
#include "core/acl.h"
#include "storage/storage_move.h"
#include "storage/storage_plan.h"
#include "vm/compat.h"

static void api_vm_move_storage(struct api_req *r)
{
    const char *name = api_param_str(r, "name", true);
    bool wait, keep;
    long long speed;
    if (!name || api_param_bool(r, "wait", true, &wait) < 0 || api_param_bool(r, "keep_source", false, &keep) < 0 ||
        api_param_int(r, "bandwidth", 0, &speed) < 0)
        return;
    json_t *err = NULL;
    struct storage_move *sm = storage_move_create(r->agent, name, r->params, &err);
    if (!sm) {
        api_fail(r, err);
        return;
    }
    api_job_answer(storage_move_job(sm), r, wait);
    storage_move_begin(sm);
}

/* `vmove move-storage --check`: every problem of the plan; nothing changes. */
static void api_vm_move_storage_check(struct api_req *r)
{
    struct vm *vm = api_param_vm(r);
    if (!vm)
        return;
    json_t *items = storage_plan_check(vm, r->params);
    api_reply(r, json_pack("{s:o, s:I}", "items", items, "problems", (json_int_t)compat_preflight_problems(items)));
}

const struct api_method api_storage_methods[] = {
    {"vm.move-storage-check", api_vm_move_storage_check, RIGHT_STORAGE_MOVE, 0},
    {"vm.move-storage", api_vm_move_storage, RIGHT_STORAGE_MOVE, API_JOB},
    {NULL, NULL, 0, 0},
};
