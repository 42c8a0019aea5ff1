/* Failover clusters on etcd (docs/CLUSTER.md).
 *
 * A member holds an etcd lease and renews it; its HA guests are paused and
 * then killed (by their shims) before that lease can expire unrenewed.  One
 * member, elected through etcd, restarts the HA VMs of a host whose lease is
 * gone on the survivors.  Every change of a VM's owner record is a
 * transaction that compares the record's revision, and the coordinator's own
 * key, so a decision made on stale state fails instead of applying.
 *
 * Every call below that answers through a cluster_done_fn calls it exactly
 * once, possibly before returning; exactly one of result/error is set and
 * the callee owns it. */
#ifndef VMOVE_CLUSTER_H
#define VMOVE_CLUSTER_H
#include <jansson.h>
#include <stdbool.h>

struct agent;
struct vm;

typedef void (*cluster_done_fn)(void *arg, json_t *result, json_t *error);

/* Daemon module: re-join the cluster named in STATE/cluster.json (re-using
 * the lease of the last run if it is still alive, so that restarting vmoved
 * never causes a failover). */
void cluster_recover(struct agent *a);
void cluster_free(struct agent *a);

/* opts: {"ttl_s", "shared_dirs": [..], "insecure_http": bool} (create), or
 * {"insecure_http"} (join). */
void cluster_create(struct agent *a, const char *name, const char *etcd_urls, json_t *opts,
                    cluster_done_fn done, void *arg);
void cluster_join(struct agent *a, const char *name, const char *etcd_urls, json_t *opts,
                  cluster_done_fn done, void *arg);
void cluster_leave(struct agent *a, cluster_done_fn done, void *arg);
void cluster_show(struct agent *a, cluster_done_fn done, void *arg);
void cluster_events(struct agent *a, cluster_done_fn done, void *arg);

/* params: {"ha": bool, "priority": "high"|"medium"|"low"|"manual",
 * "preferred_hosts": [..], "isolation": "stop"|"keep"}. */
void cluster_vm_set_ha(struct agent *a, struct vm *vm, json_t *params, cluster_done_fn done,
                       void *arg);
/* Leave the `error` state: the VM may be placed again. */
void cluster_vm_ha_clear(struct agent *a, const char *vm_name, cluster_done_fn done, void *arg);
/* Before an HA VM is started by hand here: take its owner record (refused
 * while another live member owns it).  Non-HA VMs and hosts outside a
 * cluster: done(result) at once. */
void cluster_vm_claim(struct agent *a, struct vm *vm, cluster_done_fn done, void *arg);
/* The other members as this host last read them from etcd (every 2.5 s):
 * {"h2": "IP:PORT", ...}, a new reference; NULL outside a cluster.  A move
 * to one needs no `peer add`; its certificate must still name it. */
json_t *cluster_member_peers(struct agent *a);
/* The cluster's name, NULL outside one. */
const char *cluster_name(const struct agent *a);
#endif
