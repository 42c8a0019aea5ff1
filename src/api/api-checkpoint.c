/* checkpoint.*: create, list, apply, delete (src/checkpoint/). */
#include "api/methods.h"

#include <stdlib.h>

#include "api/api.h"
#include "checkpoint/checkpoint.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/acl.h"

typedef struct job *(*ck_op_fn)(struct agent *a, const char *vm, const char *name, json_t **err);

static void answer(struct api_req *r, struct job *job, json_t *err, bool wait)
{
    if (!job)
        api_fail(r, err);
    else
        api_job_answer(job, r, wait);
}

static void run_op(struct api_req *r, ck_op_fn fn)
{
    const char *vm = api_param_str(r, "vm", true);
    const char *name = vm ? api_param_str(r, "name", true) : NULL;
    bool wait;
    if (!name || api_param_bool(r, "wait", true, &wait) < 0)
        return;
    json_t *err = NULL;
    struct job *job = fn(r->agent, vm, name, &err);   /* before err is read */
    answer(r, job, err, wait);
}

/* A create answers once its overlays exist (qemu-img ran in children the
 * loop did not wait for): the request waits here, not vmoved. */
struct create_req {
    struct api_req *r;
    bool wait;
};

static void on_create_started(void *arg, struct job *job, json_t *err)
{
    struct create_req *cr = arg;
    answer(cr->r, job, err, cr->wait);
    free(cr);
}

static void api_checkpoint_create(struct api_req *r)
{
    const char *vm = api_param_str(r, "vm", true);
    const char *name = vm ? api_param_str(r, "name", true) : NULL;
    bool wait, memory;
    if (!name || api_param_bool(r, "wait", true, &wait) < 0 || api_param_bool(r, "memory", false, &memory) < 0)
        return;
    json_t *err = NULL;
    struct create_req *cr = xcalloc(1, sizeof *cr);
    cr->r = r, cr->wait = wait;
    if (checkpoint_create(r->agent, vm, name, memory, on_create_started, cr, &err) < 0) {
        free(cr);
        answer(r, NULL, err, wait);
    }
}

static void api_checkpoint_apply(struct api_req *r) { run_op(r, checkpoint_apply); }
static void api_checkpoint_delete(struct api_req *r)
{
    const char *vm = api_param_str(r, "vm", true);
    const char *name = vm ? api_param_str(r, "name", true) : NULL;
    bool wait;
    long long speed;
    if (!name || api_param_bool(r, "wait", true, &wait) < 0 || api_param_int(r, "bandwidth", 0, &speed) < 0)
        return;
    json_t *err = NULL;
    struct job *job = checkpoint_delete(r->agent, vm, name, speed, &err);   /* before err is read */
    answer(r, job, err, wait);
}

static void api_checkpoint_list(struct api_req *r)
{
    const char *vm = api_param_str(r, "vm", true);
    if (!vm)
        return;
    json_t *err = NULL;
    json_t *res = checkpoint_list(r->agent, vm, &err);
    if (res)
        api_reply(r, res);
    else
        api_fail(r, err);
}

const struct api_method api_checkpoint_methods[] = {
    {"checkpoint.create", api_checkpoint_create, RIGHT_VM_MANAGE, API_JOB},
    {"checkpoint.list", api_checkpoint_list, RIGHT_VM_READ, 0},
    {"checkpoint.apply", api_checkpoint_apply, RIGHT_VM_MANAGE, API_JOB},
    {"checkpoint.delete", api_checkpoint_delete, RIGHT_VM_MANAGE, API_JOB},
    {NULL, NULL, 0, 0},
};
