/* audit.list: the host's audit log (written by src/core/audit.c). */
#include "api/methods.h"

#include "api/api.h"
#include "core/acl.h"
#include "core/audit.h"

static void api_audit_list(struct api_req *r)
{
    long long limit;
    if (api_param_int(r, "limit", 100, &limit) < 0 || api_limit_check(r, limit) < 0)
        return;
    api_reply(r, json_pack("{s:o}", "records", audit_read(r->agent, limit)));
}

const struct api_method api_audit_methods[] = {
    {"audit.list", api_audit_list, RIGHT_HOST_ADMIN, 0},
    {NULL, NULL, 0, 0},
};
