/* vm.move-storage: live storage migration (src/storage/storage_move.c). */
#include "api/methods.h"

#include <stdlib.h>

#include "api/api.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/acl.h"
#include "storage/storage_move.h"
#include "storage/storage_plan.h"
#include "vm/vm.h"
#include "vm/compat.h"

/* The plan needs qemu-img's word on each source disk: learned first, by
 * children the loop does not wait for (storage_plan_probe); the plan is
 * made afresh once they answered, on the VM as it is then. */
struct storage_req {
    struct api_req *r;
    bool wait, check;
};

static void move_with_facts(struct api_req *r, bool wait, json_t *facts)
{
    json_t *err = NULL;
    struct storage_move *sm = storage_move_create(r->agent, json_string_value(json_object_get(r->params, "name")),
                                                  r->params, facts, &err);
    if (!sm) {
        api_fail(r, err);
        return;
    }
    api_job_answer(storage_move_job(sm), r, wait);
    storage_move_begin(sm);
}

/* `vmove move-storage --check`: every problem of the plan; nothing changes. */
static void check_with_facts(struct api_req *r, json_t *facts)
{
    struct vm *vm = api_param_vm(r);   /* it may have gone meanwhile */
    if (!vm)
        return;
    json_t *items = storage_plan_check(vm, r->params, facts);
    api_reply(r, json_pack("{s:o, s:I}", "items", items, "problems", (json_int_t)compat_preflight_problems(items)));
}

static void on_storage_facts(void *arg, json_t *facts)
{
    struct storage_req *sr = arg;
    if (sr->check)
        check_with_facts(sr->r, facts);
    else
        move_with_facts(sr->r, sr->wait, facts);
    json_decref(facts);
    free(sr);
}

static void probe_then(struct api_req *r, bool wait, bool check)
{
    struct vm *vm = vm_find(r->agent, json_string_value(json_object_get(r->params, "name")));
    if (!vm) {   /* answered as before: not found, or the plan's refusal */
        if (check)
            api_param_vm(r);
        else
            move_with_facts(r, wait, NULL);
        return;
    }
    struct storage_req *sr = xcalloc(1, sizeof *sr);
    sr->r = r, sr->wait = wait, sr->check = check;
    storage_plan_probe(r->agent, vm, on_storage_facts, sr);
}

static void api_vm_move_storage(struct api_req *r)
{
    const char *name = api_param_str(r, "name", true);
    bool wait, keep;
    long long speed;
    if (!name || api_param_bool(r, "wait", true, &wait) < 0 || api_param_bool(r, "keep_source", false, &keep) < 0 ||
        api_param_int(r, "bandwidth", 0, &speed) < 0)
        return;
    probe_then(r, wait, false);
}

static void api_vm_move_storage_check(struct api_req *r)
{
    if (api_param_str(r, "name", true))
        probe_then(r, false, true);
}

const struct api_method api_storage_methods[] = {
    {"vm.move-storage-check", api_vm_move_storage_check, RIGHT_STORAGE_MOVE, 0},
    {"vm.move-storage", api_vm_move_storage, RIGHT_STORAGE_MOVE, API_JOB},
    {NULL, NULL, 0, 0},
};
