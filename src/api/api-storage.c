/* vm.move-storage: live storage migration (src/storage/storage_move.c). */
#include "api/methods.h"

#include "api/api.h"
#include "common/proto.h"
#include "core/acl.h"
#include "storage/storage_move.h"

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

const struct api_method api_storage_methods[] = {
    {"vm.move-storage", api_vm_move_storage, RIGHT_STORAGE_MOVE, API_JOB},
    {NULL, NULL, 0, 0},
};
