/* vm.move: the request side of a live migration.  The migration itself is
 * migrate_submit's (src/migrate/); this file only reads the request, relays
 * it when another host is the source, and answers with the job. */
#include "api/methods.h"

#include <string.h>

#include "api/api.h"
#include "api/delegate.h"
#include "core/acl.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "migrate/migrate.h"

static void vm_move(struct api_req *r)
{
    const char *from = json_string_value(json_object_get(r->params, "from"));
    if (from && strcmp(from, r->agent->name)) {
        delegate_relay(r);
        return;
    }
    const char *name = api_param_str(r, "name", true);
    const char *to = name ? api_param_str(r, "to", true) : NULL;
    bool wait;
    if (!to || api_param_bool(r, "wait", true, &wait) < 0)
        return;
    json_t *err = NULL;
    char who[96];
    principal_describe(&r->who, who, sizeof who);
    struct job *job = migrate_submit(r->agent, name, to, json_object_get(r->params, "tuning"), who, &err);
    if (!job) {
        api_fail(r, err);
        return;
    }
    json_t *by = json_object_get(r->params, "delegated_by");
    if (by)
        json_object_set(job->params, "delegated_by", by);
    api_job_answer(job, r, wait);
}

const struct api_method api_migrate_methods[] = {
    {"vm.move", vm_move, RIGHT_MIGRATE_OUT, 0},
    {NULL, NULL, 0, 0},
};
