#include "api/move_token.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "common/proto.h"
#include "common/token.h"
#include "common/util.h"
#include "core/acl.h"
#include "core/agent.h"
#include "core/audit.h"
#include "core/journal.h"

/* A binding outlives a waiting source's pauses (it asks again every few
 * seconds; a destination that was unreachable for a while is asked again)
 * but not a source that is gone. */
#define GRANT_IDLE_S (15 * 60)

struct move_grant {
    struct move_grant *next;
    char source[64];
    long long job;
    char vm[128];
    char user[96];            /* "user:NAME" */
    time_t last_used;
};

/* ---- the source: vm.move -------------------------------------------- */

static bool submit_deny(struct api_req *r, const char *vm, const char *msg)
{
    char who[96];
    principal_describe(&r->who, who, sizeof who);
    audit_record(r->agent, who, "move-token", vm, api_req_peer(r), false, msg);
    api_failf(r, ERR_DENIED, "the CLI signs one for every move with your --identity (this version's `vmove move`)",
              "%s", msg);
    return false;
}

/* The payload's scope: what only this move may use it for. */
static bool move_scope_ok(json_t *payload, const char *vm, const char *src, const char *dst_a, const char *dst_b,
                     char *msg, size_t len)
{
    const char *op = json_string_value(json_object_get(payload, "op"));
    const char *tvm = json_string_value(json_object_get(payload, "vm"));
    const char *tsrc = json_string_value(json_object_get(payload, "src"));
    const char *tdst = json_string_value(json_object_get(payload, "dst"));
    if (!op || strcmp(op, "move"))
        snprintf(msg, len, "the token is for \"%s\", not for a move", op ? op : "?");
    else if (!vm || !tvm || strcmp(vm, tvm))
        snprintf(msg, len, "the move token is for VM %s, not %s", tvm ? tvm : "?", vm ? vm : "?");
    else if (!tsrc || strcmp(tsrc, src))
        snprintf(msg, len, "the move token is for a move from %s, not from %s", tsrc ? tsrc : "?", src);
    else if (!tdst || (strcmp(tdst, dst_a) && (!dst_b || strcmp(tdst, dst_b))))
        snprintf(msg, len, "the move token is for a move to %s, not to %s", tdst ? tdst : "?", dst_a);
    else
        return true;
    return false;
}

static json_t *move_token_verify(struct agent *a, json_t *token, const char *presented_by, char *msg, size_t len)
{
    char *ca = xasprintf("%s/ca.crt", a->tls_dir ? a->tls_dir : "");
    json_t *payload = token_verify(token, ca, presented_by, msg, len);
    free(ca);
    return payload;
}

bool move_token_check_submit(struct api_req *r, const char *vm, const char *to, json_t **token)
{
    struct agent *a = r->agent;
    json_t *t = json_object_get(r->params, "move_token");
    char msg[512];
    *token = NULL;
    /* Local root's moves run as this host: a token it sends proves nothing more. */
    if (r->who.kind != PRINCIPAL_USER)
        return true;
    if (!t) {
        snprintf(msg, sizeof msg, "a move for user:%s needs a move token signed by that user, and this request "
                                  "has none", r->who.name);
        return submit_deny(r, vm, msg);
    }
    json_t *payload = move_token_verify(a, t, a->name, msg, sizeof msg);
    bool ok = payload && move_scope_ok(payload, vm, a->name, to, NULL, msg, sizeof msg);
    if (ok && strcmp(json_string_value(json_object_get(payload, "user")), r->who.name)) {
        snprintf(msg, sizeof msg, "the move token is user %s's, but user:%s asks",
                 json_string_value(json_object_get(payload, "user")), r->who.name);
        ok = false;
    }
    json_decref(payload);
    if (!ok)
        return submit_deny(r, vm, msg);
    *token = json_incref(t);
    return true;
}

/* ---- the destination: migrate.reserve, .probe, .prepare ---------------- */

static void grant_prune(struct agent *a, time_t now)
{
    for (struct move_grant **pp = &a->move_grants; *pp;) {
        struct move_grant *g = *pp;
        if (now - g->last_used > GRANT_IDLE_S) {
            *pp = g->next;
            free(g);
        } else
            pp = &g->next;
    }
}

static struct move_grant **grant_find(struct agent *a, const char *source, long long job)
{
    struct move_grant **pp = &a->move_grants;
    while (*pp && ((*pp)->job != job || strcmp((*pp)->source, source)))
        pp = &(*pp)->next;
    return pp;
}

static bool authorize_deny(struct api_req *r, const char *vm, const char *msg)
{
    char host[96];
    snprintf(host, sizeof host, "host:%s", r->who.name);
    audit_record(r->agent, host, r->method, vm, api_req_peer(r), false, msg);
    api_failf(r, ERR_DENIED, NULL, "host %s refuses the move: %s", r->agent->name, msg);
    return false;
}

/* A fresh token: checked in full, its nonce spent, bound to (source, job). */
static bool bind_token(struct api_req *r, json_t *token, const char *vm, long long job, char *msg, size_t len)
{
    struct agent *a = r->agent;
    json_t *payload = move_token_verify(a, token, r->who.name, msg, len);
    if (!payload)
        return false;
    bool ok = move_scope_ok(payload, vm, r->who.name, a->name, a->listen_addr, msg, len);
    if (ok && journal_token_use(a->journal, json_string_value(json_object_get(payload, "nonce")),
                                json_integer_value(json_object_get(payload, "exp"))) != 0) {
        snprintf(msg, len, "the move token was already used (replay refused)");
        ok = false;
    }
    if (ok) {
        struct move_grant *g = xcalloc(1, sizeof *g);
        snprintf(g->source, sizeof g->source, "%s", r->who.name);
        g->job = job;
        snprintf(g->vm, sizeof g->vm, "%s", vm);
        snprintf(g->user, sizeof g->user, "user:%s", json_string_value(json_object_get(payload, "user")));
        g->last_used = time(NULL);
        g->next = a->move_grants;
        a->move_grants = g;
    }
    json_decref(payload);
    return ok;
}

bool move_token_authorize(struct api_req *r, const char *vm, long long job, bool take, char *user, size_t len)
{
    struct agent *a = r->agent;
    json_t *token = json_object_get(r->params, "move_token");
    const char *named = json_string_value(json_object_get(r->params, "user"));
    char msg[512];
    time_t now = time(NULL);
    *user = 0;
    grant_prune(a, now);
    struct move_grant **pp = grant_find(a, r->who.name, job);
    /* Sources before move tokens call their local root's moves "user:root":
     * that is the host's own move, and gets nothing more than host:SRC. */
    if (named && !strcmp(named, "user:root") && !token && !*pp)
        named = NULL;
    if (!*pp && !token) {
        if (named) {
            /* The source's word for a user is not enough. */
            snprintf(msg, sizeof msg, "host %s names %s but sends no move token signed by that user", r->who.name,
                     named);
            return authorize_deny(r, vm, msg);
        }
        return true;   /* the source host's own move */
    }
    if (!vm || job <= 0) {
        snprintf(msg, sizeof msg, "a move token must come with the VM's name and the source's job id");
        return authorize_deny(r, vm, msg);
    }
    if (!*pp) {
        if (!bind_token(r, token, vm, job, msg, sizeof msg))
            return authorize_deny(r, vm, msg);
        pp = grant_find(a, r->who.name, job);
    }
    struct move_grant *g = *pp;
    if (strcmp(g->vm, vm)) {
        snprintf(msg, sizeof msg, "job %lld of host %s moves VM %s, not %s", job, r->who.name, g->vm, vm);
        return authorize_deny(r, vm, msg);
    }
    if (named && strcmp(named, g->user)) {
        snprintf(msg, sizeof msg, "job %lld of host %s is %s's move, not %s's", job, r->who.name, g->user, named);
        return authorize_deny(r, vm, msg);
    }
    snprintf(user, len, "%s", g->user);
    g->last_used = now;
    if (take) {
        *pp = g->next;
        free(g);
    }
    return true;
}

int move_token_check_user(struct api_req *r, const char *vm, char *user, size_t len, char *why, size_t whylen)
{
    struct agent *a = r->agent;
    json_t *t = json_object_get(r->params, "check_token");
    *user = 0;
    if (!t || json_is_null(t))
        return 0;
    json_t *p = move_token_verify(a, t, r->who.name, why, whylen);
    const char *op = json_string_value(json_object_get(p, "op"));
    const char *tvm = json_string_value(json_object_get(p, "vm"));
    const char *src = json_string_value(json_object_get(p, "src"));
    const char *dst = json_string_value(json_object_get(p, "dst"));
    bool ok = p && op && (!strcmp(op, "move-check") || !strcmp(op, "move")) && tvm && vm && !strcmp(tvm, vm) && src &&
              !strcmp(src, r->who.name) && dst && (!strcmp(dst, a->name) || (a->listen_addr && !strcmp(dst, a->listen_addr)));
    if (p && !ok)
        snprintf(why, whylen, "the check token is not for a check of VM %s from %s to %s", vm ? vm : "?", r->who.name,
                 a->name);
    if (ok)
        snprintf(user, len, "user:%s", json_string_value(json_object_get(p, "user")));
    json_decref(p);
    return ok ? 1 : -1;
}

void move_token_forget(struct agent *a, const char *source, long long job)
{
    struct move_grant **pp = grant_find(a, source, job);
    if (*pp) {
        struct move_grant *g = *pp;
        *pp = g->next;
        free(g);
    }
}

void move_token_free_all(struct agent *a)
{
    while (a->move_grants) {
        struct move_grant *g = a->move_grants;
        a->move_grants = g->next;
        free(g);
    }
}
