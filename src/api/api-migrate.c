/* vm.move: the request side of a live migration.  The migration itself is
 * migrate_submit's (src/migrate/); this file only reads the request, relays
 * it when another host is the source, and answers with the job. */
#include "api/methods.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
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
#include "migrate/check.h"
#include "migrate/migrate.h"
#include "vm/compat.h"

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

/* ---- the pre-flight check: vm.move-check --------------------------------- */

static void check_request(struct api_req *r, const char *name, const char *to, char *who, size_t len,
                          struct migrate_check_req *q)
{
    *q = (struct migrate_check_req){name, to, json_object_get(r->params, "tuning"),
                                    r->who.kind == PRINCIPAL_USER ? principal_describe(&r->who, who, len) : NULL,
                                    json_object_get(r->params, "check_token")};
    if (!q->check_token)   /* a refused move's own token: the check only reads with it */
        q->check_token = json_object_get(r->params, "move_token");
}

static void on_checked(void *arg, json_t *items)
{
    struct api_req *r = arg;
    api_reply(r, json_pack("{s:o, s:I}", "items", items, "problems", (json_int_t)compat_preflight_problems(items)));
}

/* Every precondition of vm.move, on both hosts; nothing changes. */
static void vm_move_check(struct api_req *r)
{
    const char *from = json_string_value(json_object_get(r->params, "from"));
    if (from && strcmp(from, r->agent->name)) {
        delegate_relay_check(r);
        return;
    }
    const char *name = api_param_str(r, "name", true);
    const char *to = name ? api_param_str(r, "to", true) : NULL;
    if (!to)
        return;
    char who[96];
    struct migrate_check_req q;
    check_request(r, name, to, who, sizeof who, &q);
    migrate_check(r->agent, &q, on_checked, r);
}

/* A refused move says everything that stands in its way, not only the
 * first: the check's problems go into the error as "checks". */
struct refused {
    struct api_req *r;
    json_t *err;
};

static void on_refusal_checked(void *arg, json_t *items)
{
    struct refused *f = arg;
    json_t *problems = json_array();
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) if (!json_is_true(json_object_get(it, "ok"))) json_array_append(problems, it);
    json_decref(items);
    json_object_set_new(f->err, "checks", problems);
    api_fail(f->r, f->err);
    free(f);
}

static void fail_with_checks(struct api_req *r, const char *name, const char *to, json_t *err)
{
    struct refused *f = malloc(sizeof *f);
    char who[96];
    struct migrate_check_req q;
    if (!f) {
        api_fail(r, err);
        return;
    }
    *f = (struct refused){r, err};
    check_request(r, name, to, who, sizeof who, &q);
    migrate_check(r->agent, &q, on_refusal_checked, f);
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
        fail_with_checks(r, name, to, err);
        return;
    }
    json_t *by = json_object_get(r->params, "delegated_by");
    if (by)
        json_object_set(job->params, "delegated_by", by);
    api_job_answer(job, r, wait);
}

const struct api_method api_migrate_methods[] = {
    {"vm.move", vm_move, RIGHT_MIGRATE_OUT, API_JOB},
    {"vm.move-check", vm_move_check, RIGHT_MIGRATE_OUT, 0},
    {NULL, NULL, 0, 0},
};
