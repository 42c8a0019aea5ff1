/* The cluster as seen from any member: `cluster show` (members with their
 * lease age, the coordinator, the HA VMs, from one etcd revision) and
 * `cluster events` (every failover's timeline). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "cluster/cluster_internal.h"
#include "cluster/etcd.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"

#define CLUSTER_CALL_MS 1500

struct view {
    struct agent *a;
    cluster_done_fn done;
    void *arg;
    json_t *out;
    int pending;
};

static json_t *kv_json(const struct etcd_kv *kv)
{
    json_t *j = json_loads(kv->value, 0, NULL);
    return json_is_object(j) ? j : (json_decref(j), json_object());
}

/* The KVs of the i-th range in a txn answer. */
static size_t txn_range(json_t *reply, size_t i, struct etcd_kv **kvs)
{
    json_t *r = json_array_get(json_object_get(reply, "responses"), i);
    return etcd_kvs(json_object_get(r, "response_range"), kvs);
}

static const char *after_last_slash(const char *k)
{
    const char *s = strrchr(k, '/');
    return s ? s + 1 : k;
}

static void view_finish(struct view *v)
{
    if (--v->pending > 0)
        return;
    v->done(v->arg, v->out, NULL);
    free(v);
}

struct ttl_ask {
    struct view *v;
    json_t *member;   /* borrowed from v->out */
};

static void ttl_answered(void *arg, json_t *reply, const char *err)
{
    struct ttl_ask *t = arg;
    (void)err;
    if (reply) {
        int64_t ttl = etcd_int(json_object_get(reply, "TTL"));
        int64_t granted = etcd_int(json_object_get(reply, "grantedTTL"));
        json_object_set_new(t->member, "lease_ttl_left_s", json_integer(ttl));
        if (granted)
            json_object_set_new(t->member, "lease_age_s", json_integer(granted - ttl));
    }
    struct view *v = t->v;
    free(t);
    view_finish(v);
}

static json_t *member_view(struct cluster *c, const struct etcd_kv *m, struct etcd_kv *alive,
                           size_t n_alive, struct etcd_kv *load, size_t n_load, int64_t *lease)
{
    json_t *rec = kv_json(m);
    const char *host = after_last_slash(m->key);
    json_t *mv = json_pack("{s:s, s:s}", "host", host, "state", "down");
    json_object_set(mv, "addr", json_object_get(rec, "addr") ?: json_null());
    *lease = 0;
    for (size_t i = 0; i < n_alive; i++)
        if (!strcmp(after_last_slash(alive[i].key), host)) {
            *lease = alive[i].lease;
            json_object_set_new(mv, "state", json_string("up"));
            json_object_set_new(mv, "lease", json_sprintf("%llx", (unsigned long long)alive[i].lease));
        }
    if (json_is_true(json_object_get(rec, "maintenance")))
        json_object_set_new(mv, "state", json_string("maintenance"));
    for (size_t i = 0; i < n_load; i++)
        if (!strcmp(after_last_slash(load[i].key), host)) {
            json_t *l = kv_json(&load[i]);
            json_object_set(mv, "mem_free_mib", json_object_get(l, "mem_free_mib") ?: json_null());
            json_object_set(mv, "fenced_guests", json_object_get(l, "fenced") ?: json_null());
            json_decref(l);
        }
    if (!strcmp(host, c->agent->name) && c->state != MEMBER_UP)
        json_object_set_new(mv, "state", json_string("fenced"));
    json_decref(rec);
    return mv;
}

/* An HA VM's policy from its spec: priority, isolation, and whether the
 * cluster restarts it by itself when its host is lost (and if not, why). */
static void add_policy(json_t *o, const char *uuid, const struct etcd_kv *specs, size_t n)
{
    json_t *ha = NULL;
    for (size_t i = 0; i < n && !ha; i++)
        if (!strcmp(after_last_slash(specs[i].key), uuid)) {
            json_t *spec = kv_json(&specs[i]);
            ha = json_incref(json_object_get(spec, "ha"));
            json_decref(spec);
        }
    const char *prio = json_string_value(json_object_get(ha, "priority")) ?: "medium";
    const char *iso = json_string_value(json_object_get(ha, "isolation")) ?: "stop";
    json_object_set_new(o, "priority", json_string(prio));
    json_object_set_new(o, "isolation", json_string(iso));
    bool keep = !strcmp(iso, "keep"), manual = !strcmp(prio, "manual");
    json_object_set_new(o, "restart_on_host_loss", json_boolean(!keep && !manual));
    if (keep)
        json_object_set_new(o, "no_restart_why", json_string(
            "isolation keep: its host never fences it, so after that host loses its lease the VM may still "
            "run there; restarting it elsewhere could run it twice"));
    else if (manual)
        json_object_set_new(o, "no_restart_why", json_string("priority manual: started by hand only"));
    json_decref(ha);
}

static void show_answered(void *arg, json_t *reply, const char *err)
{
    struct view *v = arg;
    struct cluster *c = v->a->cluster;
    if (!reply || !c) {
        v->done(v->arg, NULL, proto_error(ERR_UNAVAILABLE, "check that a majority of the etcd "
                                          "members is up", "%s", err ? err : "left the cluster"));
        free(v);
        return;
    }
    struct etcd_kv *members, *alive, *load, *owners, *coord, *specs;
    size_t nm = txn_range(reply, 0, &members), na = txn_range(reply, 1, &alive),
           nl = txn_range(reply, 2, &load), no = txn_range(reply, 3, &owners),
           nc = txn_range(reply, 4, &coord), ns = txn_range(reply, 5, &specs);
    json_t *out = json_pack("{s:s, s:s, s:b, s:i, s:I}", "cluster", c->name, "etcd",
                            etcd_endpoint(c->kv_etcd), "unsafe_plain_http", c->insecure, "ttl_s",
                            c->ttl_s, "revision", (json_int_t)etcd_revision(reply));
    if (c->insecure)
        json_object_set_new(out, "warning", json_string("UNSAFE: etcd is reached over plain HTTP "
                                                        "(lab only): anyone on the network can "
                                                        "read and change the cluster's state"));
    v->out = out;
    v->pending = 1;
    json_t *ms = json_array();
    for (size_t i = 0; i < nm; i++) {
        int64_t lease;
        json_t *mv = member_view(c, &members[i], alive, na, load, nl, &lease);
        json_array_append_new(ms, mv);
        if (lease) {
            struct ttl_ask *t = xcalloc(1, sizeof *t);
            *t = (struct ttl_ask){v, mv};
            v->pending++;
            etcd_post(c->kv_etcd, "/v3/lease/timetolive",
                      json_pack("{s:o}", "ID", json_sprintf("%lld", (long long)lease)),
                      CLUSTER_CALL_MS, ttl_answered, t);
        }
    }
    json_object_set_new(out, "members", ms);
    /* The coordinator: the candidate with the lowest create_revision. */
    const struct etcd_kv *lead = NULL;
    for (size_t i = 0; i < nc; i++)
        if (!lead || coord[i].create_rev < lead->create_rev)
            lead = &coord[i];
    json_t *lj = lead ? kv_json(lead) : NULL;
    json_object_set(out, "coordinator", lj ? json_object_get(lj, "host") ?: json_null() : json_null());
    json_decref(lj);
    json_t *vms = json_array();
    for (size_t i = 0; i < no; i++) {
        json_t *o = kv_json(&owners[i]);
        json_object_set_new(o, "uuid", json_string(after_last_slash(owners[i].key)));
        json_object_set_new(o, "revision", json_integer(owners[i].mod_rev));
        json_object_del(o, "lease");
        add_policy(o, after_last_slash(owners[i].key), specs, ns);
        json_array_append_new(vms, o);
    }
    json_object_set_new(out, "ha_vms", vms);
    etcd_kvs_free(members, nm);
    etcd_kvs_free(alive, na);
    etcd_kvs_free(load, nl);
    etcd_kvs_free(owners, no);
    etcd_kvs_free(coord, nc);
    etcd_kvs_free(specs, ns);
    view_finish(v);
}

static struct view *view_new(struct agent *a, cluster_done_fn done, void *arg)
{
    if (!a->cluster) {
        done(arg, NULL, proto_error(ERR_STATE, "`vmove cluster create` or `vmove cluster join`",
                                    "host %s is in no cluster", a->name));
        return NULL;
    }
    struct view *v = xcalloc(1, sizeof *v);
    *v = (struct view){.a = a, .done = done, .arg = arg};
    return v;
}

void cluster_show(struct agent *a, cluster_done_fn done, void *arg)
{
    struct view *v = view_new(a, done, arg);
    if (!v)
        return;
    struct cluster *c = a->cluster;
    static const char *const parts[] = {"members/", "alive/", "load/", "owners/", "coordinator/", "specs/"};
    json_t *ops = json_array();
    for (size_t i = 0; i < ARRAY_LEN(parts); i++) {
        char *k = cluster_key(c, "%s", parts[i]);
        json_array_append_new(ops, etcd_op_range(k, true));
        free(k);
    }
    /* One transaction: every part from the same revision. */
    etcd_post(c->kv_etcd, "/v3/kv/txn", etcd_txn_body(json_array(), ops, NULL), CLUSTER_CALL_MS,
              show_answered, v);
}

static void events_answered(void *arg, json_t *reply, const char *err)
{
    struct view *v = arg;
    if (!reply) {
        v->done(v->arg, NULL, proto_error(ERR_UNAVAILABLE, NULL, "%s", err));
        free(v);
        return;
    }
    struct etcd_kv *kvs;
    size_t n = etcd_kvs(reply, &kvs);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, kv_json(&kvs[i]));
    etcd_kvs_free(kvs, n);
    v->done(v->arg, json_pack("{s:o}", "events", list), NULL);
    free(v);
}

void cluster_events(struct agent *a, cluster_done_fn done, void *arg)
{
    struct view *v = view_new(a, done, arg);
    if (!v)
        return;
    char *k = cluster_key(a->cluster, "events/");
    etcd_post(a->cluster->kv_etcd, "/v3/kv/range", etcd_range_body(k, true), CLUSTER_CALL_MS,
              events_answered, v);
    free(k);
}
