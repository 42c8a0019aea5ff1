#include "api/api.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/acl.h"
#include "core/agent.h"
#include "core/audit.h"
#include "vm/vm.h"
#include "api/delegate.h"
#include "api/methods.h"

struct api_req *api_req_new(struct agent *a, struct api_sink *sink, json_t *id, const char *method,
                            json_t *params, const struct principal *who)
{
    struct api_req *r = xcalloc(1, sizeof *r);
    r->agent = a;
    r->sink = sink;
    sink->ops->ref(sink);
    r->id = json_incref(id);
    r->method = xstrdup(method);
    r->params = json_incref(params);
    r->who = *who;
    return r;
}

struct api_sink *api_sink_hold(struct api_req *r)
{
    r->sink->ops->ref(r->sink);
    return r->sink;
}

void api_sink_release(struct api_sink *s)
{
    if (s) {
        s->ops->on_close(s, NULL, NULL);
        s->ops->unref(s);
    }
}

void api_sink_on_close(struct api_sink *s, void (*hook)(void *arg), void *arg) { s->ops->on_close(s, hook, arg); }

static void req_free(struct api_req *r)
{
    r->sink->ops->unref(r->sink);
    json_decref(r->id);
    json_decref(r->params);
    free(r->method);
    free(r);
}

void api_reply(struct api_req *r, json_t *result)
{
    r->sink->ops->send(r->sink, json_pack("{s:O, s:o}", "id", r->id, "result", result ? result : json_object()));
    req_free(r);
}

void api_fail(struct api_req *r, json_t *error)
{
    const char *code = json_string_value(json_object_get(error, "code"));
    log_info("%s failed: %s: %s", r->method, code ? code : "?",
             json_string_value(json_object_get(error, "message")));
    r->sink->ops->send(r->sink, json_pack("{s:O, s:o}", "id", r->id, "error", error));
    req_free(r);
}

void api_failf(struct api_req *r, const char *code, const char *hint, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    api_fail(r, proto_error(code, hint, "%s", msg));
}

void api_event(struct api_req *r, const char *event, json_t *data)
{
    r->sink->ops->send(r->sink, json_pack("{s:O, s:s, s:o}", "id", r->id, "event", event, "data", data));
}

bool api_req_connected(const struct api_req *r) { return r->sink->ops->is_open(r->sink); }

const char *api_req_peer(const struct api_req *r) { return r->sink->ops->peer(r->sink); }

struct vm *api_param_vm(struct api_req *r)
{
    const char *name = api_param_str(r, "name", true);
    if (!name)
        return NULL;
    struct vm *vm = vm_find(r->agent, name);
    if (!vm)
        api_failf(r, ERR_NOT_FOUND, "`vmove vm list` shows the VMs on this host", "no VM named \"%s\" on host %s",
                  name, r->agent->name);
    return vm;
}

const char *api_param_str(struct api_req *r, const char *key, bool required)
{
    json_t *v = json_object_get(r->params, key);
    if (!v || json_is_null(v)) {
        if (required)
            api_failf(r, ERR_INVALID, NULL, "missing parameter \"%s\"", key);
        return NULL;
    }
    if (!json_is_string(v)) {
        api_failf(r, ERR_INVALID, NULL, "parameter \"%s\" must be a string", key);
        return NULL;
    }
    return json_string_value(v);
}

int api_param_int(struct api_req *r, const char *key, long long def, long long *out)
{
    json_t *v = json_object_get(r->params, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_integer(v)) {
        api_failf(r, ERR_INVALID, NULL, "parameter \"%s\" must be an integer", key);
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

int api_param_bool(struct api_req *r, const char *key, bool def, bool *out)
{
    json_t *v = json_object_get(r->params, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v)) {
        api_failf(r, ERR_INVALID, NULL, "parameter \"%s\" must be true or false", key);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

int api_limit_check(struct api_req *r, long long limit)
{
    if (limit >= 1 && limit <= API_LIMIT_MAX)
        return 0;
    api_failf(r, ERR_INVALID, NULL, "limit must be 1..%d (got %lld)", API_LIMIT_MAX, limit);
    return -1;
}

/* NULL if this kind of principal may call m at all, else why not. */
static const char *principal_mismatch(const struct api_method *m, const struct principal *who)
{
    bool host = who->kind == PRINCIPAL_HOST;
    if ((m->flags & API_PEER) && !host)
        return "a host-to-host method, for hosts only";
    if (!(m->flags & (API_PEER | API_HOST_OK)) && host)
        return "a host may call only host-to-host methods";
    return NULL;
}

void api_dispatch(struct api_req *r)
{
    const struct api_method *m = api_method_find(r->method);
    if (!m) {
        api_failf(r, ERR_UNKNOWN_CMD, "run `vmove --help` for the commands this version knows",
                  "unknown method \"%s\"", r->method);
        return;
    }
    /* A host acting for a user: the token decides who this request is. */
    if (json_object_get(r->params, "delegation") && r->who.kind == PRINCIPAL_HOST && !delegate_accept(r))
        return;
    char who[96];
    principal_describe(&r->who, who, sizeof who);
    const char *vm = json_string_value(json_object_get(r->params, "name"));
    const char *why = principal_mismatch(m, &r->who);
    if (why) {
        audit_record(r->agent, who, r->method, vm, api_req_peer(r), false, why);
        api_failf(r, ERR_DENIED, m->flags & API_PEER ? NULL : "a host acts for a user only with the user's "
                  "delegation token (vmove move ... --from HOST)", "permission denied: %s: %s", who, why);
        return;
    }
    if (m->right && !acl_allows_who(r->agent, &r->who, m->right)) {
        json_t *err = acl_denial(r->agent, who, m->right);
        audit_record(r->agent, who, r->method, vm, api_req_peer(r), false,
                     json_string_value(json_object_get(err, "message")));
        api_fail(r, err);
        return;
    }
    /* Root's own reads on its own host are not decisions worth a record. */
    if (m->right && (m->right != RIGHT_VM_READ || r->who.kind != PRINCIPAL_LOCAL_ROOT))
        audit_record(r->agent, who, r->method, vm, api_req_peer(r), true, NULL);
    if ((m->flags & (API_JOB | API_STREAM)) && !api_quota_admit(r, m->flags))
        return;
    m->fn(r);
}
