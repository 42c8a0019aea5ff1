/* host.drain and host.resume: evacuating a host for maintenance
 * (src/cluster/drain.c). */
#include "api/methods.h"

#include <string.h>

#include "api/api.h"
#include "cluster/drain.h"
#include "common/proto.h"
#include "core/acl.h"
#include "core/agent.h"

/* Both act on the host they are sent to; naming another one is a mistake.
 * false: answered.  A mistyped "host" is answered by api_param_str, which
 * frees r: hence "given" is decided before, never from r after. */
static bool is_local(struct api_req *r)
{
    json_t *v = json_object_get(r->params, "host");
    bool given = v && !json_is_null(v);
    const char *host = given ? api_param_str(r, "host", true) : NULL;
    if (!given)
        return true;
    if (!host)
        return false;
    if (!strcmp(host, r->agent->name))
        return true;
    api_failf(r, ERR_INVALID, "run it against that host: vmove -H HOST host drain HOST",
              "this is host %s, not %s", r->agent->name, host);
    return false;
}

static void api_host_drain(struct api_req *r)
{
    bool wait;
    if (!is_local(r) || api_param_bool(r, "wait", true, &wait) < 0)
        return;
    char user[96];
    json_t *err = NULL;
    principal_describe(&r->who, user, sizeof user);
    struct job *job = drain_create(r->agent, json_object_get(r->params, "to"),
                                   json_object_get(r->params, "tuning"), user, &err);
    if (!job) {
        api_fail(r, err);
        return;
    }
    struct agent *a = r->agent;
    api_job_answer(job, r, wait);
    drain_begin(a);
}

static void api_host_resume(struct api_req *r)
{
    if (!is_local(r))
        return;
    json_t *err = drain_resume(r->agent);
    if (err) {
        api_fail(r, err);
        return;
    }
    api_reply(r, json_pack("{s:s, s:b}", "host", r->agent->name, "drained", false));
}

const struct api_method api_drain_methods[] = {
    {"host.drain", api_host_drain, RIGHT_HOST_ADMIN, API_JOB},
    {"host.resume", api_host_resume, RIGHT_HOST_ADMIN, 0},
    {NULL, NULL, 0, 0},
};
