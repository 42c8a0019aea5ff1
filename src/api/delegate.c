#include "api/delegate.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/token.h"
#include "common/util.h"
#include "core/acl.h"
#include "core/agent.h"
#include "api/api.h"
#include "core/audit.h"
#include "core/journal.h"
#include "core/peer.h"
#include "vm/compat.h"

#define RELAY_POLL_MS 500

static bool policy_allows(struct agent *a, const char *host)
{
    for (int i = 0; i < a->settings.n_delegation_from; i++) {
        const char *p = a->settings.delegation_from[i];
        if (!strcmp(p, host) || (!strncmp(p, "group:", 6) && acl_in_group(a, p + 6, host)))
            return true;
    }
    return false;
}

static bool deny_fix(struct api_req *r, const char *who, const char *hint, const char *fix, const char *msg)
{
    const char *vm = json_string_value(json_object_get(r->params, "name"));
    audit_record(r->agent, who, r->method, vm, api_req_peer(r), false, msg);
    json_t *err = proto_error(ERR_DENIED, hint, "%s", msg);
    if (fix)   /* the exact command and its host, for a pre-flight check's item */
        json_object_set_new(err, "fix", json_pack("{s:s, s:s}", "command", fix, "host", r->agent->name));
    api_fail(r, err);
    return false;
}

static bool deny(struct api_req *r, const char *who, const char *hint, const char *msg)
{
    return deny_fix(r, who, hint, NULL, msg);
}

/* `vmove host set --allow-delegation-from ...`: the list replaces the old
 * one, so the command names every host already allowed, and the new one. */
static void policy_fix(const struct agent *a, const char *host, char *fix, size_t len)
{
    int n = snprintf(fix, len, "vmove host set");
    for (int i = 0; i < a->settings.n_delegation_from && (size_t)n < len; i++)
        n += snprintf(fix + n, len - (size_t)n, " --allow-delegation-from %s", a->settings.delegation_from[i]);
    if ((size_t)n < len)
        snprintf(fix + n, len - (size_t)n, " --allow-delegation-from %s", host);
}

static bool check_scope(struct api_req *r, json_t *payload, char *msg, size_t len)
{
    const char *vm = json_string_value(json_object_get(r->params, "name"));
    const char *to = json_string_value(json_object_get(r->params, "to"));
    const char *op = json_string_value(json_object_get(payload, "op"));
    const char *tvm = json_string_value(json_object_get(payload, "vm"));
    const char *src = json_string_value(json_object_get(payload, "src"));
    const char *dst = json_string_value(json_object_get(payload, "dst"));
    bool check = !strcmp(r->method, "vm.move-check");   /* a pre-flight check: op "migrate-check" */
    if ((strcmp(r->method, "vm.move") && !check) || !op || strcmp(op, check ? "migrate-check" : "migrate"))
        snprintf(msg, len, "the delegation token is for \"%s\", not for %s", op ? op : "?", r->method);
    else if (!vm || !tvm || strcmp(vm, tvm))
        snprintf(msg, len, "the delegation token is for VM %s, not %s", tvm ? tvm : "?", vm ? vm : "?");
    else if (!src || strcmp(src, r->agent->name))
        snprintf(msg, len, "the delegation token is for a move from %s, not from %s", src ? src : "?", r->agent->name);
    else if (!to || !dst || strcmp(to, dst))
        snprintf(msg, len, "the delegation token is for a move to %s, not to %s", dst ? dst : "?", to ? to : "?");
    else
        return true;
    return false;
}

bool delegate_accept(struct api_req *r)
{
    struct agent *a = r->agent;
    char host[96], msg[512], hint[256], fix[MAX_PEERS * 120];
    snprintf(host, sizeof host, "host:%s", r->who.name);
    if (r->who.kind != PRINCIPAL_HOST)
        return deny(r, "?", NULL, "only a host may present a delegation token");
    if (!policy_allows(a, host)) {
        snprintf(msg, sizeof msg, "host %s does not allow %s to act for users", a->name, host);
        snprintf(hint, sizeof hint, "on %s run: vmove host set --allow-delegation-from %s", a->name, host);
        policy_fix(a, host, fix, sizeof fix);
        return deny_fix(r, host, hint, fix, msg);
    }
    char *ca = xasprintf("%s/ca.crt", a->tls_dir);
    /* Bound to the host whose verified certificate presents it. */
    json_t *payload = token_verify(json_object_get(r->params, "delegation"), ca, r->who.name, msg, sizeof msg);
    free(ca);
    if (!payload)
        return deny(r, host, "ask the user for a new token (`vmove move ... --from HOST` makes one)", msg);
    if (!check_scope(r, payload, msg, sizeof msg)) {
        json_decref(payload);
        return deny(r, host, NULL, msg);
    }
    if (journal_token_use(a->journal, json_string_value(json_object_get(payload, "nonce")),
                          json_integer_value(json_object_get(payload, "exp"))) != 0) {
        json_decref(payload);
        return deny(r, host, NULL, "the delegation token was already used (replay refused)");
    }
    r->who.kind = PRINCIPAL_USER;
    snprintf(r->who.name, sizeof r->who.name, "%s", json_string_value(json_object_get(payload, "user")));
    /* Remembered on the job, so that the relaying host may follow it. */
    json_object_set_new(r->params, "delegated_by", json_string(host));
    json_decref(payload);
    json_object_del(r->params, "delegation");
    char who[96];
    snprintf(msg, sizeof msg, "acting for the user, delegated by %s", host);
    audit_record(a, principal_describe(&r->who, who, sizeof who), "delegation", json_string_value(
                 json_object_get(r->params, "name")), api_req_peer(r), true, msg);
    return true;
}

/* ---- relay on the host the user talks to ------------------------------ */

struct relay {
    struct relay *next;
    struct api_req *req;
    struct peer_conn *peer;
    struct event *timer;
    json_int_t job;
    json_t *last;
};
/* Relays under way, so that shutdown ends them.  One agent per process. */
static struct relay *relays;

static void relay_end(struct relay *rl, json_t *result, json_t *error)
{
    for (struct relay **p = &relays; *p; p = &(*p)->next)
        if (*p == rl) {
            *p = rl->next;
            break;
        }
    if (error)
        api_fail(rl->req, json_deep_copy(error));
    else
        api_reply(rl->req, json_incref(result));
    event_free(rl->timer);
    json_decref(rl->last);
    peer_close(rl->peer);
    free(rl);
}

static void on_show(void *arg, json_t *result, json_t *error)
{
    struct relay *rl = arg;
    if (error) {
        relay_end(rl, NULL, error);
        return;
    }
    const char *st = json_string_value(json_object_get(result, "state"));
    if (!rl->last || !json_equal(rl->last, result)) {
        api_event(rl->req, "job", json_incref(result));
        json_decref(rl->last);
        rl->last = json_incref(result);
    }
    if (st && strcmp(st, "running") && strcmp(st, "queued")) {
        relay_end(rl, result, NULL);
        return;
    }
    struct timeval tv = {0, RELAY_POLL_MS * 1000};
    evtimer_add(rl->timer, &tv);
}

void delegate_free_all(struct agent *a)
{
    (void)a;
    json_t *err = proto_error(ERR_UNAVAILABLE, "the move goes on at its source: `vmove -H SOURCE jobs show ID`",
                              "vmoved on the relaying host is shutting down");
    while (relays)
        relay_end(relays, NULL, err);   /* copies err */
    json_decref(err);
}

static void relay_on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct relay *rl = arg;
    if (!api_req_connected(rl->req)) {
        /* The user's client went away (Ctrl-C): the move goes on at its
         * source, and nobody is left to relay its progress to. */
        json_t *err = proto_error(ERR_UNAVAILABLE, NULL, "the client went away");
        relay_end(rl, NULL, err);   /* copies err */
        json_decref(err);
        return;
    }
    peer_call(rl->peer, "jobs.show", json_pack("{s:I}", "id", rl->job), 10000, on_show, rl);
}

static void on_started(void *arg, json_t *result, json_t *error)
{
    struct relay *rl = arg;
    if (error) {
        relay_end(rl, NULL, error);
        return;
    }
    rl->job = json_integer_value(json_object_get(result, "job"));
    relay_on_tick(-1, 0, rl);
}

void delegate_relay(struct api_req *r)
{
    struct agent *a = r->agent;
    const char *from = json_string_value(json_object_get(r->params, "from"));
    const struct peer_entry *p = settings_find_peer(&a->settings, from);
    json_t *token = json_object_get(r->params, "delegation");
    if (!p) {
        api_failf(r, ERR_NOT_FOUND, "add it with `vmove peer add HOST ADDR:PORT`", "host %s is not a known peer of %s",
                  from, a->name);
        return;
    }
    if (!token) {
        api_failf(r, ERR_INVALID, "the CLI signs one with --identity DIR",
                  "moving a VM from another host needs a delegation token signed by the user");
        return;
    }
    /* The user's move token (api/move_token.h) goes on to the source, which
     * forwards it to the destination: this host only carries it. */
    struct relay *rl = xcalloc(1, sizeof *rl);
    rl->req = r;
    rl->next = relays;
    relays = rl;
    rl->timer = evtimer_new(a->base, relay_on_tick, rl);
    rl->peer = peer_connect(a, p->name, p->addr, NULL, NULL);
    log_info("relaying a move of %s from %s to %s for the user", json_string_value(json_object_get(r->params, "name")),
             from, json_string_value(json_object_get(r->params, "to")));
    peer_call(rl->peer, "vm.move",
              json_pack("{s:O, s:O, s:O?, s:O, s:b, s:O?}", "name", json_object_get(r->params, "name"), "to",
                        json_object_get(r->params, "to"), "tuning", json_object_get(r->params, "tuning"), "delegation",
                        token, "wait", false, "move_token", json_object_get(r->params, "move_token")),
              30000, on_started, rl);
}

/* ---- a delegated pre-flight check (`vmove move --from B --check`) ------- */

struct relay_check {
    struct api_req *req;
    struct peer_conn *peer;
    char from[64];
};

static void reply_items(struct api_req *r, json_t *items)
{
    api_reply(r, json_pack("{s:o, s:I}", "items", items, "problems", (json_int_t)compat_preflight_problems(items)));
}

/* B's answer: its check (and the destination's), or why B refused to act
 * for the user (its delegation policy, the user's rights there), as items. */
static void on_relay_checked(void *arg, json_t *result, json_t *error)
{
    struct relay_check *rc = arg;
    struct agent *a = rc->req->agent;
    json_t *items = json_array();
    const char *code = json_string_value(json_object_get(error, "code"));
    bool unreachable = code && (!strcmp(code, ERR_UNAVAILABLE) || !strcmp(code, ERR_TIMEOUT));
    if (error) {
        json_t *fix = json_object_get(error, "fix");
        const char *fix_host = json_string_value(json_object_get(fix, "host"));
        compat_preflight_add(items, unreachable ? "peer" : "delegation", COMPAT_PROBLEM,
                             unreachable ? a->name : fix_host ? fix_host : rc->from,
                             json_string_value(json_object_get(fix, "command")),
                             json_string_value(json_object_get(error, "hint")), "%s",
                             json_string_value(json_object_get(error, "message")));
        compat_preflight_add(items, "source", COMPAT_UNCHECKED, rc->from, NULL, "fix the problem above first",
                             "the move from %s: not checked, %s did not act for the user", rc->from, rc->from);
    } else {
        compat_preflight_add(items, "delegation", COMPAT_OK, rc->from, NULL, NULL, "%s lets %s act for the user",
                             rc->from, a->name);
        size_t i;
        json_t *it;
        json_array_foreach(json_object_get(result, "items"), i, it) if (json_is_object(it)) json_array_append(items, it);
    }
    reply_items(rc->req, items);
    peer_close(rc->peer);
    free(rc);
}

void delegate_relay_check(struct api_req *r)
{
    struct agent *a = r->agent;
    const char *from = json_string_value(json_object_get(r->params, "from"));
    const struct peer_entry *p = settings_find_peer(&a->settings, from);
    json_t *token = json_object_get(r->params, "delegation");
    if (!p || !token) {
        json_t *items = json_array();
        if (!p)
            compat_preflight_add(items, "peer", COMPAT_PROBLEM, a->name, NULL, "add it: vmove peer add HOST ADDR:PORT",
                                 "host %s is not a known peer of %s", from, a->name);
        else
            compat_preflight_add(items, "delegation", COMPAT_PROBLEM, a->name, NULL, "the CLI signs one with "
                                 "--identity DIR", "checking a move from another host needs a delegation token "
                                 "signed by the user");
        reply_items(r, items);
        return;
    }
    struct relay_check *rc = xcalloc(1, sizeof *rc);
    rc->req = r;
    snprintf(rc->from, sizeof rc->from, "%s", from);
    rc->peer = peer_connect(a, p->name, p->addr, NULL, NULL);
    peer_call(rc->peer, "vm.move-check",
              json_pack("{s:O, s:O, s:O?, s:O, s:O*}", "name", json_object_get(r->params, "name"), "to",
                        json_object_get(r->params, "to"), "tuning", json_object_get(r->params, "tuning"), "delegation",
                        token, "check_token", json_object_get(r->params, "check_token")),
              30000, on_relay_checked, rc);
}
