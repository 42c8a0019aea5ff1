/* vm.move: the request side of a live migration.  The migration itself is
 * migrate_submit's (src/migrate/); this file only reads the request, relays
 * it when another host is the source, and answers with the job. */
#include "api/methods.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "api/api.h"
#include "api/delegate.h"
#include "api/move_token.h"
#include "common/proto.h"
#include "core/acl.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "core/paths.h"
#include "migrate/migrate.h"

/* A quick migration's --state-dir, where this host writes the VM's memory:
 * a directory this host allows for states.  A missing one is left to the
 * save, which fails there without writing anything. */
static bool state_dir_allowed(struct api_req *r, json_t *tuning)
{
    const char *dir = json_string_value(json_object_get(tuning, "state_dir"));
    struct stat st;
    if (!dir || dir[0] != '/' || lstat(dir, &st) < 0)
        return true;
    struct path_policy pol;
    struct path_info pi;
    char why[PATH_MAX + 512];
    paths_policy_init(&pol, &r->agent->settings, r->agent->state_dir);
    if (paths_check_dir(&pol, DIR_STATE, dir, &pi, why, sizeof why) == 0)
        return true;
    api_failf(r, ERR_DENIED, NULL, "--state-dir %s: %s", dir, why);
    return false;
}

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
    if (!to || api_param_bool(r, "wait", true, &wait) < 0 || !state_dir_allowed(r, json_object_get(r->params, "tuning")))
        return;
    json_t *err = NULL, *token;
    if (!move_token_check_submit(r, name, to, &token))
        return;
    char who[96];
    principal_describe(&r->who, who, sizeof who);
    struct job *job = migrate_submit(r->agent, name, to, json_object_get(r->params, "tuning"), who, token, &err);
    json_decref(token);
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
    {"vm.move", vm_move, RIGHT_MIGRATE_OUT, API_JOB},
    {NULL, NULL, 0, 0},
};
