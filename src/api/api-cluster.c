/* cluster.* and the HA settings of a VM (src/cluster/). */
#include "api/methods.h"

#include <string.h>

#include "api/api.h"
#include "cluster/cluster.h"
#include "common/proto.h"
#include "core/acl.h"
#include "core/agent.h"
#include "vm/vm.h"

/* Every cluster call answers later, from etcd's reply. */
static void cluster_answer(void *arg, json_t *result, json_t *error)
{
    struct api_req *r = arg;
    if (error)
        api_fail(r, error);
    else
        api_reply(r, result);
}

static void cluster_setup_api(struct api_req *r, bool create)
{
    const char *name = api_param_str(r, "cluster", true);
    if (!name)
        return;
    const char *etcd = api_param_str(r, "etcd", true);
    if (!etcd)
        return;
    json_t *opts = json_object();
    static const char *const keys[] = {"ttl_s", "shared_dirs", "insecure_http"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (json_object_get(r->params, keys[i]))
            json_object_set(opts, keys[i], json_object_get(r->params, keys[i]));
    if (create)
        cluster_create(r->agent, name, etcd, opts, cluster_answer, r);
    else
        cluster_join(r->agent, name, etcd, opts, cluster_answer, r);
    json_decref(opts);
}

static void api_cluster_create(struct api_req *r) { cluster_setup_api(r, true); }
static void api_cluster_join(struct api_req *r) { cluster_setup_api(r, false); }
static void api_cluster_leave(struct api_req *r) { cluster_leave(r->agent, cluster_answer, r); }
static void api_cluster_show(struct api_req *r) { cluster_show(r->agent, cluster_answer, r); }
static void api_cluster_events(struct api_req *r) { cluster_events(r->agent, cluster_answer, r); }

static void api_vm_set_ha(struct api_req *r)
{
    struct vm *vm = api_param_vm(r);
    if (!vm)
        return;
    cluster_vm_set_ha(r->agent, vm, r->params, cluster_answer, r);
}

static void api_vm_ha_clear(struct api_req *r)
{
    const char *name = api_param_str(r, "name", true);
    if (name)
        cluster_vm_ha_clear(r->agent, name, cluster_answer, r);
}

const struct api_method api_cluster_methods[] = {
    {"cluster.create", api_cluster_create, RIGHT_HOST_ADMIN, 0},
    {"cluster.join", api_cluster_join, RIGHT_HOST_ADMIN, 0},
    {"cluster.leave", api_cluster_leave, RIGHT_HOST_ADMIN, 0},
    {"cluster.show", api_cluster_show, RIGHT_VM_READ, 0},
    {"cluster.events", api_cluster_events, RIGHT_VM_READ, 0},
    {"vm.set-ha", api_vm_set_ha, RIGHT_VM_MANAGE, 0},
    {"vm.ha-clear", api_vm_ha_clear, RIGHT_VM_MANAGE, 0},
    {NULL, NULL, 0, 0},
};
