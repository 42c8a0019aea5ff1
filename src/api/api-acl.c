/* acl.*: the host's access control list (policy in src/core/acl.c). */
#include "api/methods.h"

#include <string.h>

#include "api/api.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/acl.h"
#include "core/agent.h"
#include "core/audit.h"

#define RIGHT_LIST "vm.read, vm.manage, migrate.out, migrate.in, storage.move, host.admin"

/* A new array of the rights named in list, or NULL (answered). */
static json_t *rights_param(struct api_req *r, json_t *list)
{
    size_t i;
    json_t *v;
    unsigned bit = 0;
    if (!json_is_array(list) || !json_array_size(list)) {
        api_failf(r, ERR_INVALID, NULL, "give at least one right (" RIGHT_LIST ")");
        return NULL;
    }
    json_t *out = json_array();
    json_array_foreach(list, i, v) {
        if (!json_is_string(v) || right_parse(json_string_value(v), &bit) < 0) {
            json_decref(out);
            api_failf(r, ERR_INVALID, NULL, "unknown right \"%s\" (" RIGHT_LIST ")",
                      json_is_string(v) ? json_string_value(v) : "?");
            return NULL;
        }
        json_array_append(out, v);
    }
    return out;
}

static const char *principal_param(struct api_req *r, const char *key)
{
    const char *p = api_param_str(r, key, true);
    char kind[16], name[64];
    if (p && principal_parse(p, kind, sizeof kind, name, sizeof name) < 0) {
        api_failf(r, ERR_INVALID, NULL, "bad principal \"%s\": use user:NAME, host:NAME or group:NAME", p);
        return NULL;
    }
    return p;
}

static void reply_acl(struct api_req *r, json_t *error)
{
    if (error)
        api_fail(r, error);
    else
        api_reply(r, acl_to_json(r->agent));
}

static void acl_change_api(struct api_req *r, bool grant)
{
    const char *p = principal_param(r, "principal");
    json_t *rights = p ? rights_param(r, json_object_get(r->params, "rights")) : NULL;
    if (!rights)
        return;
    char who[96];
    audit_record(r->agent, principal_describe(&r->who, who, sizeof who), grant ? "acl.grant" : "acl.revoke",
                 NULL, "local", true, p);
    json_t *error = acl_change(r->agent, p, rights, grant);
    json_decref(rights);
    reply_acl(r, error);
}

static void api_acl_grant(struct api_req *r) { acl_change_api(r, true); }
static void api_acl_revoke(struct api_req *r) { acl_change_api(r, false); }

static void api_acl_list(struct api_req *r)
{
    json_t *acl = acl_to_json(r->agent);
    json_object_set_new(acl, "host", json_string(r->agent->name));
    api_reply(r, acl);
}

static void acl_group_api(struct api_req *r, bool add)
{
    const char *group = api_param_str(r, "group", true);
    const char *member = group ? principal_param(r, "member") : NULL;
    if (!member)
        return;
    if (!valid_name(group) || !strncmp(member, "group:", 6)) {
        api_failf(r, ERR_INVALID, NULL, "groups hold users or hosts: vmove acl group add GROUP user:NAME|host:NAME");
        return;
    }
    reply_acl(r, acl_group_change(r->agent, group, member, add));
}

static void api_acl_group_add(struct api_req *r) { acl_group_api(r, true); }
static void api_acl_group_remove(struct api_req *r) { acl_group_api(r, false); }

/* The caller's own rights here, so that a client (the console) offers only
 * what would be allowed.  Any principal may ask about itself. */
static void api_acl_whoami(struct api_req *r)
{
    static const unsigned all[] = {RIGHT_VM_READ, RIGHT_VM_MANAGE, RIGHT_MIGRATE_OUT, RIGHT_MIGRATE_IN,
                                   RIGHT_STORAGE_MOVE, RIGHT_HOST_ADMIN};
    json_t *rights = json_array();
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (acl_allows_who(r->agent, &r->who, all[i]))
            json_array_append_new(rights, json_string(right_name(all[i])));
    char who[96];
    api_reply(r, json_pack("{s:s, s:s, s:o}", "principal", principal_describe(&r->who, who, sizeof who), "host",
                           r->agent->name, "rights", rights));
}

const struct api_method api_acl_methods[] = {
    {"acl.whoami", api_acl_whoami, 0, API_HOST_OK},   /* a host too: peer add probes with it */
    {"acl.grant", api_acl_grant, RIGHT_HOST_ADMIN, 0},
    {"acl.revoke", api_acl_revoke, RIGHT_HOST_ADMIN, 0},
    {"acl.list", api_acl_list, RIGHT_HOST_ADMIN, 0},
    {"acl.group-add", api_acl_group_add, RIGHT_HOST_ADMIN, 0},
    {"acl.group-remove", api_acl_group_remove, RIGHT_HOST_ADMIN, 0},
    {NULL, NULL, 0, 0},
};
