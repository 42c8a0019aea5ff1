/* Making a VM highly available, and the user's hands on its record:
 * `vm set --ha on|off`, a start by hand (the claim), `vm ha-clear`. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "cluster/cluster_internal.h"
#include "cluster/etcd.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "conf/vm_config.h"
#include "core/agent.h"
#include "qemu/qemu_proc.h"
#include "vm/vm.h"

#define CALL_MS 1500

struct ha_op {
    struct agent *a;
    char *vm, *uuid;
    json_t *params;
    cluster_done_fn done;
    void *arg;
    int64_t rev;                /* the owner record's mod_revision as read (0: none) */
    json_t *owner;
};

static void op_end(struct ha_op *op, json_t *result, json_t *error)
{
    op->done(op->arg, result, error);
    free(op->vm);
    free(op->uuid);
    json_decref(op->params);
    json_decref(op->owner);
    free(op);
}

static json_t *not_ready(struct agent *a)
{
    if (!a->cluster)
        return proto_error(ERR_STATE, "`vmove cluster create` or `vmove cluster join` first",
                           "host %s is in no cluster: HA needs one", a->name);
    if (!cluster_lease_fresh(a->cluster))
        return proto_error(ERR_UNAVAILABLE, "see `vmove cluster show`",
                           "host %s has no fresh cluster lease (etcd unreachable?)", a->name);
    return NULL;
}

/* Every disk under one of the cluster's shared directories, or which is not. */
static json_t *check_shared(struct cluster *c, const struct vm *vm)
{
    if (c->n_shared_dirs == 0)
        return proto_error(ERR_STATE, "create the cluster with --shared-dir DIR (storage every member sees)",
                           "cluster %s has no shared storage: an HA VM's disks must be on it", c->name);
    for (size_t i = 0; i < vm->cfg.n_disks; i++) {
        char real[PATH_MAX];
        const char *p = realpath(vm->cfg.disks[i].path, real) ? real : vm->cfg.disks[i].path;
        bool ok = false;
        for (size_t k = 0; k < c->n_shared_dirs && !ok; k++) {
            char dir[PATH_MAX];
            const char *d = realpath(c->shared_dirs[k], dir) ? dir : c->shared_dirs[k];
            size_t n = strlen(d);
            ok = !strncmp(p, d, n) && p[n] == '/';
        }
        if (!ok)
            return proto_error(ERR_INVALID, "move it first: vmove move-storage VM --to DIR (a shared directory)",
                               "disk %s of %s (%s) is not on the cluster's shared storage", vm->cfg.disks[i].id,
                               vm->name, vm->cfg.disks[i].path);
    }
    return NULL;
}

static json_t *check_policy(json_t *p)
{
    json_t *prio = json_object_get(p, "priority");
    const char *ps = json_string_value(prio);
    if (prio && (!ps || (strcmp(ps, "high") && strcmp(ps, "medium") && strcmp(ps, "low") &&
                         strcmp(ps, "manual"))))
        return proto_error(ERR_INVALID, NULL, "priority must be high, medium, low or manual");
    json_t *pref = json_object_get(p, "preferred_hosts");
    size_t i;
    json_t *h;
    if (pref && !json_is_array(pref))
        return proto_error(ERR_INVALID, NULL, "preferred_hosts must be a list of host names");
    json_array_foreach(pref, i, h)
        if (!json_is_string(h) || !valid_name(json_string_value(h)))
            return proto_error(ERR_INVALID, NULL, "preferred_hosts[%zu] is not a host name", i);
    json_t *iso = json_object_get(p, "isolation");
    const char *is = json_string_value(iso);
    if (iso && (!is || (strcmp(is, "stop") && strcmp(is, "keep"))))
        return proto_error(ERR_INVALID, "stop: fenced and restarted elsewhere; keep: never fenced, never "
                           "restarted elsewhere", "isolation must be stop or keep");
    if (iso && !json_is_true(json_object_get(p, "ha")))
        return proto_error(ERR_INVALID, "give it with --ha on", "isolation is a setting of an HA VM");
    return NULL;
}

static void ha_read_owner(struct ha_op *op, etcd_done_fn then)
{
    char *k = cluster_key(op->a->cluster, "owners/%s", op->uuid);
    etcd_post(op->a->cluster->kv_etcd, "/v3/kv/range", etcd_range_body(k, false), CALL_MS, then, op);
    free(k);
}

/* Took the owner's read: op->rev / op->owner.  false: answered. */
static bool took_owner(struct ha_op *op, json_t *reply, const char *err)
{
    if (!reply) {
        op_end(op, NULL, proto_error(ERR_UNAVAILABLE, "retry when etcd answers", "%s", err));
        return false;
    }
    struct etcd_kv *kvs;
    size_t n = etcd_kvs(reply, &kvs);
    op->rev = n ? kvs[0].mod_rev : 0;
    op->owner = n ? json_loads(kvs[0].value, 0, NULL) : NULL;
    etcd_kvs_free(kvs, n);
    return true;
}

static const char *owner_host(const struct ha_op *op)
{
    return json_string_value(json_object_get(op->owner, "host")) ?: "";
}

/* ---- vm set --ha ---- */

static bool policy_keep(json_t *policy)
{
    return !strcmp(json_string_value(json_object_get(policy, "isolation")) ?: "", "keep");
}

static void ha_written(void *arg, json_t *reply, const char *err)
{
    struct ha_op *op = arg;
    if (!reply) {
        op_end(op, NULL, proto_error(ERR_UNAVAILABLE, "retry when etcd answers", "%s", err));
        return;
    }
    if (!etcd_txn_succeeded(reply)) {
        op_end(op, NULL, proto_error(ERR_ABORTED, "retry", "the VM's owner record changed meanwhile"));
        return;
    }
    struct vm *vm = vm_find(op->a, op->vm);
    bool on = json_is_true(json_object_get(op->params, "ha"));
    char e[256] = "";
    if (vm) {
        vm->cfg.ha = on;
        vm->cfg.ha_keep = on && policy_keep(json_object_get(op->params, "policy"));
        vm_save_config(vm, e, sizeof e);
        if (qemu_pid_alive(vm))
            qemu_proc_fence_set(vm->dir, vm_config_fenced(&vm->cfg) ? op->a->fence_kill_ns : 0);
    }
    log_info("cluster: VM %s is %s", op->vm, on ? "highly available" : "no longer highly available");
    json_t *res = json_pack("{s:s, s:b}", "vm", op->vm, "ha", on);
    if (json_object_get(op->params, "policy"))
        json_object_update_missing(res, json_object_get(op->params, "policy"));
    op_end(op, res, NULL);
}

static void ha_owner_read(void *arg, json_t *reply, const char *err)
{
    struct ha_op *op = arg;
    if (!took_owner(op, reply, err))
        return;
    struct agent *a = op->a;
    struct cluster *c = a->cluster;
    struct vm *vm = vm_find(a, op->vm);
    bool on = json_is_true(json_object_get(op->params, "ha"));
    if (!c || !vm) {
        op_end(op, NULL, proto_error(ERR_NOT_FOUND, NULL, "VM %s went away", op->vm));
        return;
    }
    if (op->owner && strcmp(owner_host(op), a->name)) {
        op_end(op, NULL, proto_error(ERR_STATE, "change it on that host",
                                     "VM %s belongs to host %s in cluster %s", op->vm, owner_host(op), c->name));
        return;
    }
    char *ok = cluster_key(c, "owners/%s", op->uuid), *sk = cluster_key(c, "specs/%s", op->uuid);
    json_t *cmp = json_pack("[o]", op->rev ? etcd_cmp(ok, "MOD", "EQUAL", op->rev)
                                           : etcd_cmp(ok, "CREATE", "EQUAL", 0));
    json_t *ops = json_array();
    if (on) {
        json_t *cfg = vm_config_to_json(&vm->cfg);
        json_t *flags = json_object_get(cfg, "flags") ?: cfg;
        json_object_set_new(flags, "ha", json_true());
        if (policy_keep(json_object_get(op->params, "policy")))
            json_object_set_new(flags, "isolation", json_string("keep"));
        else
            json_object_del(flags, "isolation");
        json_t *spec = json_pack("{s:o, s:O}", "config", cfg, "ha", json_object_get(op->params, "policy"));
        char *st = json_dumps(spec, JSON_COMPACT);
        json_decref(spec);
        int64_t gen = etcd_int(json_object_get(op->owner, "gen")) + 1;
        json_t *v = cluster_owner_value(vm->name, a->name, c->lease,
                                        qemu_pid_alive(vm) ? "running" : "stopped", gen, "HA enabled here");
        char *vt = json_dumps(v, JSON_COMPACT);
        json_decref(v);
        json_array_append_new(ops, etcd_op_put(sk, st, 0));
        json_array_append_new(ops, etcd_op_put(ok, vt, 0));
        free(st);
        free(vt);
    } else if (op->rev) {
        json_array_append_new(ops, etcd_op_delete(ok, false));
        json_array_append_new(ops, etcd_op_delete(sk, false));
    }
    etcd_post(c->kv_etcd, "/v3/kv/txn", etcd_txn_body(cmp, ops, NULL), CALL_MS, ha_written, op);
    free(ok);
    free(sk);
}

void cluster_vm_set_ha(struct agent *a, struct vm *vm, json_t *params, cluster_done_fn done, void *arg)
{
    json_t *err = not_ready(a);
    bool on = json_is_true(json_object_get(params, "ha"));
    if (!err && !json_is_boolean(json_object_get(params, "ha")))
        err = proto_error(ERR_INVALID, NULL, "ha must be true or false");
    if (!err && on)
        err = check_shared(a->cluster, vm);
    json_t *policy = json_object();
    if (!err)
        err = check_policy(params);
    if (err) {
        json_decref(policy);
        done(arg, NULL, err);
        return;
    }
    json_object_set_new(policy, "priority", json_string(json_string_value(json_object_get(params, "priority")) ?: "medium"));
    json_t *pref = json_object_get(params, "preferred_hosts");
    json_object_set_new(policy, "preferred_hosts", pref ? json_incref(pref) : json_array());
    /* Not given: the VM keeps its isolation (`vm create --ha --isolation keep`). */
    const char *iso = json_string_value(json_object_get(params, "isolation"));
    bool keep = on && (iso ? !strcmp(iso, "keep") : vm->cfg.ha_keep);
    json_object_set_new(policy, "isolation", json_string(keep ? "keep" : "stop"));
    /* A double run needs this host unfenced (keep here) while the cluster
     * would restart the VM elsewhere (stop in its spec).  So the side that
     * is safe to change first changes first: going to stop, the local fence
     * is armed before the spec says stop; going to keep, the spec says keep
     * (ha_written) before the fence is lifted.  A failed write leaves the
     * VM fenced and not restarted: safe, and the error says to retry. */
    if (on && vm->cfg.ha && vm->cfg.ha_keep && !keep) {
        char e[256] = "";
        vm->cfg.ha_keep = false;
        if (vm_save_config(vm, e, sizeof e) < 0)
            log_warn("cluster: %s", e);
        if (qemu_pid_alive(vm))
            qemu_proc_fence_set(vm->dir, a->fence_kill_ns);
    }
    struct ha_op *op = xcalloc(1, sizeof *op);
    *op = (struct ha_op){.a = a, .vm = xstrdup(vm->name), .uuid = xstrdup(vm->cfg.uuid), .done = done,
                         .arg = arg};
    op->params = json_pack("{s:b, s:o}", "ha", on, "policy", policy);
    ha_read_owner(op, ha_owner_read);
}

/* ---- a start by hand ---- */

static void claimed(void *arg, json_t *reply, const char *err)
{
    struct ha_op *op = arg;
    if (!reply) {
        op_end(op, NULL, proto_error(ERR_UNAVAILABLE, "retry when etcd answers", "%s", err));
        return;
    }
    if (!etcd_txn_succeeded(reply)) {
        op_end(op, NULL, proto_error(ERR_ABORTED, "retry; `vmove cluster show` says who has it",
                                     "the VM's owner record changed meanwhile"));
        return;
    }
    op_end(op, json_pack("{s:s, s:s}", "vm", op->vm, "owner", op->a->name), NULL);
}

static void claim_owner_read(void *arg, json_t *reply, const char *err)
{
    struct ha_op *op = arg;
    if (!took_owner(op, reply, err))
        return;
    struct cluster *c = op->a->cluster;
    const char *state = json_string_value(json_object_get(op->owner, "state")) ?: "";
    bool mine = !strcmp(owner_host(op), op->a->name);
    if (!c || !op->owner) {
        op_end(op, NULL, proto_error(ERR_STATE, "`vmove vm set NAME --ha on` again",
                                     "HA VM %s has no owner record in the cluster", op->vm));
        return;
    }
    bool idle = !strcmp(state, "stopped") || !strcmp(state, "error") || !strcmp(state, "pending") ||
                !strcmp(state, "start-failed");
    if (!strcmp(state, "isolated") && !mine) {
        op_end(op, NULL, proto_error(ERR_STATE, "only once you know that host is off (powered down, "
                                     "not just cut off): vmove vm ha-clear NAME, then start it",
                                     "HA VM %s (isolation keep) may still run on host %s, which lost its "
                                     "cluster lease: starting it here could run it twice", op->vm,
                                     owner_host(op)));
        return;
    }
    if (!idle && !mine) {
        op_end(op, NULL, proto_error(ERR_STATE, "stop it there, or move it: vmove move NAME --to HOST",
                                     "HA VM %s is %s on host %s", op->vm, state, owner_host(op)));
        return;
    }
    int64_t gen = etcd_int(json_object_get(op->owner, "gen")) + 1;
    json_t *v = cluster_owner_value(op->vm, op->a->name, c->lease, "running", gen, "started by hand");
    char *vt = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    char *ok = cluster_key(c, "owners/%s", op->uuid);
    json_t *cmp = json_pack("[o]", etcd_cmp(ok, "MOD", "EQUAL", op->rev));
    json_t *ops = json_pack("[o]", etcd_op_put(ok, vt, 0));
    etcd_post(c->kv_etcd, "/v3/kv/txn", etcd_txn_body(cmp, ops, NULL), CALL_MS, claimed, op);
    free(vt);
    free(ok);
}

void cluster_vm_claim(struct agent *a, struct vm *vm, cluster_done_fn done, void *arg)
{
    if (!a->cluster || !vm->cfg.ha) {
        done(arg, json_object(), NULL);
        return;
    }
    json_t *err = not_ready(a);
    if (err) {
        done(arg, NULL, err);
        return;
    }
    struct ha_op *op = xcalloc(1, sizeof *op);
    *op = (struct ha_op){.a = a, .vm = xstrdup(vm->name), .uuid = xstrdup(vm->cfg.uuid), .done = done,
                         .arg = arg};
    ha_read_owner(op, claim_owner_read);
}

/* ---- vm ha-clear ---- */

static void cleared(void *arg, json_t *reply, const char *err)
{
    struct ha_op *op = arg;
    if (!reply || !etcd_txn_succeeded(reply)) {
        op_end(op, NULL, reply ? proto_error(ERR_ABORTED, "retry", "the VM's owner record changed meanwhile")
                               : proto_error(ERR_UNAVAILABLE, NULL, "%s", err));
        return;
    }
    op_end(op, json_pack("{s:s, s:s}", "vm", op->vm, "state", "pending"), NULL);
}

static void clear_owners_read(void *arg, json_t *reply, const char *err)
{
    struct ha_op *op = arg;
    if (!reply) {
        op_end(op, NULL, proto_error(ERR_UNAVAILABLE, NULL, "%s", err));
        return;
    }
    struct cluster *c = op->a->cluster;
    struct etcd_kv *kvs;
    size_t n = etcd_kvs(reply, &kvs);
    for (size_t i = 0; i < n && !op->rev; i++) {
        json_t *o = json_loads(kvs[i].value, 0, NULL);
        if (!strcmp(json_string_value(json_object_get(o, "vm")) ?: "", op->vm)) {
            op->rev = kvs[i].mod_rev;
            op->owner = o;
            op->uuid = xstrdup(strrchr(kvs[i].key, '/') + 1);
        } else {
            json_decref(o);
        }
    }
    etcd_kvs_free(kvs, n);
    const char *state = json_string_value(json_object_get(op->owner, "state")) ?: "";
    if (!op->rev || !c) {
        op_end(op, NULL, proto_error(ERR_NOT_FOUND, NULL, "no HA VM %s in the cluster", op->vm));
        return;
    }
    bool isolated = !strcmp(state, "isolated");
    if (strcmp(state, "error") && !isolated) {
        op_end(op, NULL, proto_error(ERR_STATE, NULL, "HA VM %s is %s, not in error or isolated", op->vm, state));
        return;
    }
    /* Isolated: the admin's word that its host is off stands in for the
     * fence it opted out of (docs/CLUSTER.md, "Isolation keep"). */
    json_t *v = cluster_owner_value(op->vm, owner_host(op), etcd_int(json_object_get(op->owner, "lease")),
                                    "pending", etcd_int(json_object_get(op->owner, "gen")) + 1,
                                    isolated ? "isolation cleared by hand: its host was declared off"
                                             : "error cleared by hand");
    json_object_set_new(v, "tried", json_array());
    char *vt = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    char *ok = cluster_key(c, "owners/%s", op->uuid);
    json_t *cmp = json_pack("[o]", etcd_cmp(ok, "MOD", "EQUAL", op->rev));
    json_t *ops = json_pack("[o]", etcd_op_put(ok, vt, 0));
    etcd_post(c->kv_etcd, "/v3/kv/txn", etcd_txn_body(cmp, ops, NULL), CALL_MS, cleared, op);
    free(vt);
    free(ok);
}

void cluster_vm_ha_clear(struct agent *a, const char *vm_name, cluster_done_fn done, void *arg)
{
    json_t *err = not_ready(a);
    if (err) {
        done(arg, NULL, err);
        return;
    }
    struct ha_op *op = xcalloc(1, sizeof *op);
    *op = (struct ha_op){.a = a, .vm = xstrdup(vm_name), .done = done, .arg = arg};
    char *k = cluster_key(a->cluster, "owners/");
    etcd_post(a->cluster->kv_etcd, "/v3/kv/range", etcd_range_body(k, true), CALL_MS, clear_owners_read, op);
    free(k);
}
