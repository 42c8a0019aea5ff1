/* Handlers of the host-to-host methods a migration source calls on this
 * (destination) host: migrate.reserve, .unreserve, .prepare, .finish, .load,
 * .resolve, .capacity and .probe.  Each checks who asks (a host, with
 * migrate.in for itself and the user it acts for), reads the message
 * (migrate/wire.h), calls one function of migrate/incoming.h and answers.
 * The source's control connection, held for the whole incoming migration,
 * is owned here: its hang-up is reported to the domain by name. */
#include "api/api.h"
#include "api/move_token.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/proto.h"
#include "common/util.h"
#include "core/acl.h"
#include "core/agent.h"
#include "core/audit.h"
#include "core/paths.h"
#include "migrate/incoming.h"
#include "migrate/wire.h"
#include "vm/vm.h"

/* ---- who may ask ------------------------------------------------------ */

static bool from_host(struct api_req *r)
{
    if (r->who.kind == PRINCIPAL_HOST)
        return true;
    api_failf(r, ERR_DENIED, NULL, "%s is a host-to-host method", r->method);
    return false;
}

/* An incoming migration needs, here: the sending host with migrate.in (we
 * accept VMs from it) and, for a user's move, that user with migrate.in.
 * The user is the one whose signed move token the source forwards
 * (api/move_token.h), never a name the source merely states; a move with no
 * token is the source host's own (local root, a drain) and is checked and
 * audited as host:SRC only.  job: the source's job id (0 for a call that
 * belongs to no job); take: the move's last call with a token. */
static bool incoming_authorized(struct api_req *r, long long job, bool take)
{
    struct agent *a = r->agent;
    const char *vm = json_string_value(json_object_get(r->params, "vm"));
    if (!vm)
        vm = json_string_value(json_object_get(json_object_get(r->params, "config"), "name"));
    char host[96], user[96];
    snprintf(host, sizeof host, "host:%s", r->who.name);
    if (!move_token_authorize(r, vm, job, take, user, sizeof user))
        return false;
    const char *check[] = {host, user};
    for (size_t i = 0; i < 2 && check[i][0]; i++) {
        bool ok = acl_allows(a, check[i], RIGHT_MIGRATE_IN);
        const char *why = ok ? (user[0] ? NULL : "the source host's own move (no user)") : "lacks migrate.in";
        audit_record(a, check[i], r->method, vm, api_req_peer(r), ok, why);
        if (!ok) {
            api_fail(r, acl_denial(a, check[i], RIGHT_MIGRATE_IN));
            return false;
        }
    }
    return true;
}

/* ---- this host's path policy over what a source sends ---------------- */

/* One file of the incoming config; false (and the reason in why) if this
 * host does not allow it. */
static bool incoming_file_ok(struct agent *a, const struct path_policy *pol, enum dir_kind kind, const char *label,
                             const char *path, char *why, size_t whylen)
{
    struct path_info pi;
    char sub[PATH_MAX + 512];
    if (paths_check_file(pol, kind, path, &pi, sub, sizeof sub) < 0) {
        snprintf(why, whylen, "%s %s: %s", label, path, sub);
        return false;
    }
    struct vm *owner = kind == DIR_IMAGES ? vm_find_by_disk_file(a, pi.canonical) : NULL;
    if (owner) {
        snprintf(why, whylen, "disk %s is already used by VM %s", path, owner->name);
        return false;
    }
    return true;
}

/* The destination applies its own policy: the kernel, the initrd and
 * (unless this host makes new disks in a storage directory, shared-nothing)
 * every disk of the config must be files it allows, and the storage
 * directory one it allows for storage. */
static bool incoming_paths_allowed(struct api_req *r, const struct wire_prepare_req *m)
{
    struct agent *a = r->agent;
    struct vm_config cfg;
    char why[PATH_MAX + 1024];
    if (vm_config_from_json(m->config, &cfg, why, sizeof why) < 0)
        return true;   /* incoming_prepare says what is wrong with it */
    struct path_policy pol;
    paths_policy_init(&pol, &a->settings, a->state_dir);
    bool ok = (!cfg.boot.kernel || incoming_file_ok(a, &pol, DIR_KERNELS, "kernel", cfg.boot.kernel, why, sizeof why)) &&
              (!cfg.boot.initrd || incoming_file_ok(a, &pol, DIR_KERNELS, "initrd", cfg.boot.initrd, why, sizeof why));
    for (size_t i = 0; ok && !m->storage && i < cfg.n_disks; i++)
        ok = incoming_file_ok(a, &pol, DIR_IMAGES, "disk", cfg.disks[i].path, why, sizeof why);
    const char *dir = json_string_value(json_object_get(m->storage, "dir"));
    struct path_info pi;
    char sub[PATH_MAX + 512];
    if (ok && dir && paths_check_dir(&pol, DIR_STORAGE, dir, &pi, sub, sizeof sub) < 0) {
        snprintf(why, sizeof why, "storage directory %s: %s", dir, sub);
        ok = false;
    }
    if (!ok)
        api_failf(r, ERR_DENIED, NULL, "host %s refuses VM %s: %s", a->name, cfg.name, why);
    vm_config_free(&cfg);
    return ok;
}

/* ---- answering -------------------------------------------------------- */

static void answer(struct api_req *r, json_t *result, json_t *error)
{
    if (error)
        api_fail(r, error);
    else
        api_reply(r, result);
}

/* incoming_done_fn: the request is the argument. */
static void answer_later(void *arg, json_t *result, json_t *error) { answer(arg, result, error); }

/* ---- the source's control connection ---------------------------------- */

/* Held from the moment the incoming migration exists until it ends. */
struct source_link {
    struct agent *agent;
    struct api_req *req;       /* until armed: the prepare request */
    struct api_sink *sink;
    char *vm;
    char *source;
};

static void source_closed(void *arg)
{
    struct source_link *l = arg;
    /* Copies: reporting the loss releases (frees) the link. */
    char *vm = xstrdup(l->vm), *source = xstrdup(l->source);
    incoming_source_lost(l->agent, vm, source);
    free(vm);
    free(source);
}

static void source_arm(void *ctx)
{
    struct source_link *l = ctx;
    l->sink = api_sink_hold(l->req);
    l->req = NULL;
    api_sink_on_close(l->sink, source_closed, l);
}

static void source_link_free(struct source_link *l)
{
    free(l->vm);
    free(l->source);
    free(l);
}

static void source_release(void *ctx)
{
    struct source_link *l = ctx;
    api_sink_release(l->sink);
    source_link_free(l);
}

/* ---- the methods ------------------------------------------------------ */

static void migrate_reserve(struct api_req *r)
{
    struct wire_reserve_req m;
    json_t *err = NULL;
    if (!from_host(r))
        return;
    if (wire_reserve_req_from_json(r->params, &m, &err) < 0) {
        api_fail(r, err);
        return;
    }
    if (!incoming_authorized(r, m.job, false))
        return;
    json_t *res = incoming_reserve(r->agent, r->who.name, m.job, &err);
    answer(r, res, err);
}

/* No rights check: a host only ever gives back its own places. */
static void migrate_unreserve(struct api_req *r)
{
    struct wire_reserve_req m;
    json_t *err = NULL;
    if (!from_host(r))
        return;
    if (wire_reserve_req_from_json(r->params, &m, &err) < 0) {
        api_fail(r, err);
        return;
    }
    incoming_unreserve(r->agent, r->who.name, m.job);
    move_token_forget(r->agent, r->who.name, m.job);
    api_reply(r, json_object());
}

static void migrate_prepare(struct api_req *r)
{
    struct wire_prepare_req m;
    json_t *err = NULL;
    if (!from_host(r))
        return;
    if (wire_prepare_req_from_json(r->params, &m, &err) < 0) {
        api_fail(r, err);
        return;
    }
    if (!incoming_authorized(r, m.job, true))
        return;
    if (!incoming_paths_allowed(r, &m))
        return;
    struct source_link *l = xcalloc(1, sizeof *l);
    l->agent = r->agent;
    l->req = r;
    const char *vm = json_string_value(json_object_get(m.config, "name"));
    l->vm = xstrdup(vm ? vm : "");
    l->source = xstrdup(r->who.name);
    struct incoming_prepare_req req = {r->who.name, &m, {source_arm, source_release, l}};
    /* From here on r belongs to the domain (answer_later), unless it fails now. */
    if (incoming_prepare(r->agent, &req, answer_later, r, &err) < 0) {
        source_link_free(l);
        api_fail(r, err);
    }
}

static void migrate_finish(struct api_req *r)
{
    struct wire_name_req m;
    json_t *err = NULL;
    if (!from_host(r))
        return;
    if (wire_name_req_from_json(r->params, &m, &err) < 0 ||
        incoming_finish(r->agent, r->who.name, m.name, answer_later, r, &err) < 0)
        api_fail(r, err);
}

static void migrate_load(struct api_req *r)
{
    struct wire_load_req m;
    json_t *err = NULL;
    if (!from_host(r))
        return;
    if (wire_load_req_from_json(r->params, &m, &err) < 0 ||
        incoming_load(r->agent, r->who.name, &m, answer_later, r, &err) < 0)
        api_fail(r, err);
}

static void migrate_resolve(struct api_req *r)
{
    struct wire_name_req m;
    json_t *err = NULL;
    if (!from_host(r))
        return;
    if (wire_name_req_from_json(r->params, &m, &err) < 0) {
        api_fail(r, err);
        return;
    }
    json_t *res = incoming_resolve(r->agent, r->who.name, m.name, &err);
    if (!res) {
        /* A host asking about a migration that is not its own. */
        char who[96];
        audit_record(r->agent, principal_describe(&r->who, who, sizeof who), r->method, m.name, api_req_peer(r),
                     false, json_string_value(json_object_get(err, "message")));
    }
    answer(r, res, err);
}

/* Post-copy: only the host the VM arrives from (incoming.c checks the name). */
static void migrate_postcopy(struct api_req *r)
{
    struct wire_name_req m;
    json_t *err = NULL;
    if (!from_host(r))
        return;
    if (wire_name_req_from_json(r->params, &m, &err) < 0) {
        api_fail(r, err);
        return;
    }
    json_t *res = incoming_postcopy(r->agent, r->who.name, m.name, &err);
    char who[96];
    snprintf(who, sizeof who, "host:%s", r->who.name);
    audit_record(r->agent, who, r->method, m.name, api_req_peer(r), res != NULL,
                 res ? NULL : json_string_value(json_object_get(err, "message")));
    answer(r, res, err);
}

static void api_migrate_recover(struct api_req *r)
{
    struct wire_name_req m;
    json_t *err = NULL;
    if (!from_host(r))
        return;
    if (wire_name_req_from_json(r->params, &m, &err) < 0) {
        api_fail(r, err);
        return;
    }
    bool abandon = json_is_true(json_object_get(r->params, "abandon"));
    const char *why = json_string_value(json_object_get(r->params, "why"));
    if (incoming_postcopy_recover(r->agent, r->who.name, m.name, abandon, why, answer_later, r, &err) < 0)
        api_fail(r, err);
}

/* Free memory and whether this host takes VMs now; for the hosts (and users)
 * that may bring VMs in, without giving them vm.read. */
static void migrate_capacity(struct api_req *r)
{
    if (!from_host(r) || !incoming_authorized(r, 0, false))
        return;
    api_reply(r, incoming_capacity(r->agent));
}

static void migrate_probe(struct api_req *r)
{
    json_t *err = NULL;
    json_t *job = json_object_get(r->params, "job");
    if (!from_host(r) || !incoming_authorized(r, json_is_integer(job) ? json_integer_value(job) : 0, false))
        return;
    json_t *res = incoming_probe(r->agent, json_string_value(json_object_get(r->params, "via")), &err);
    answer(r, res, err);
}

/* A pre-flight check (`vmove move --check`): read-only, answered to any
 * host of the CA, since a missing migrate.in is one of the things it
 * reports; the VM's files are checked only for a host that has it. */
static void api_migrate_check(struct api_req *r)
{
    struct agent *a = r->agent;
    if (!from_host(r))
        return;
    const char *vm = json_string_value(json_object_get(r->params, "vm"));
    char host[96], user[96], why[512] = "";
    snprintf(host, sizeof host, "host:%s", r->who.name);
    int proven = move_token_check_user(r, vm, user, sizeof user, why, sizeof why);
    struct incoming_check_rights w = {
        .source = r->who.name,
        .source_in = acl_allows(a, host, RIGHT_MIGRATE_IN),
        .user = proven > 0 ? user : NULL,
        .user_in = proven > 0 && acl_allows(a, user, RIGHT_MIGRATE_IN),
        .user_problem = proven < 0 ? why : NULL,
    };
    audit_record(a, proven > 0 ? user : host, r->method, vm, api_req_peer(r), true,
                 w.source_in ? "a pre-flight check (read-only)" : "a pre-flight check (read-only) by a host without "
                 "migrate.in: the VM's files not checked");
    json_t *err = NULL;
    json_t *res = incoming_check(a, &w, r->params, &err);
    answer(r, res, err);
}

const struct api_method api_migrate_peer_methods[] = {
    {"migrate.check", api_migrate_check, 0, API_PEER},
    {"migrate.prepare", migrate_prepare, 0, API_PEER},
    {"migrate.finish", migrate_finish, 0, API_PEER},
    {"migrate.resolve", migrate_resolve, 0, API_PEER},
    {"migrate.reserve", migrate_reserve, 0, API_PEER},
    {"migrate.load", migrate_load, 0, API_PEER},
    {"migrate.probe", migrate_probe, 0, API_PEER},
    {"migrate.capacity", migrate_capacity, 0, API_PEER},
    {"migrate.unreserve", migrate_unreserve, 0, API_PEER},
    {"migrate.postcopy", migrate_postcopy, 0, API_PEER},
    {"migrate.recover", api_migrate_recover, 0, API_PEER},
    {NULL, NULL, 0, 0},
};
