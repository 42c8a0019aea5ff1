/* The cluster module's own state; only src/cluster/ sees it.
 *
 * Keys, under /vmove/v1/CLUSTER/ (values are JSON):
 *   config                 the cluster: created, TTL, shared directories
 *   members/HOST           a member: its address; maintenance
 *   alive/HOST             with HOST's lease: it is up (deleted by etcd when the lease expires)
 *   load/HOST              with HOST's lease: free memory, VM count
 *   coordinator/LEASEHEX   with the candidate's lease; the lowest create_revision leads
 *   specs/UUID             an HA VM: its vm.json and HA policy
 *   owners/UUID            who runs it: host, lease, state, gen; the fencing token
 *                          is this key's mod_revision
 *   events/UUID/GEN        a failover's timeline and proof
 */
#ifndef VMOVE_CLUSTER_INTERNAL_H
#define VMOVE_CLUSTER_INTERNAL_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cluster/cluster.h"
#include "cluster/etcd.h"

struct agent;
struct event;
struct vm;

enum member_state {
    MEMBER_JOINING,     /* no lease yet, or registering alive/HOST */
    MEMBER_UP,          /* lease renewed, alive/HOST ours */
    MEMBER_SUSPECT,     /* renewals failing; HA guests paused past the pause deadline */
};

struct cluster {
    struct agent *agent;
    char *name;
    char *prefix;                 /* "/vmove/v1/NAME/" */
    char **urls;
    size_t n_urls;
    bool insecure;                /* plain HTTP to etcd: lab only */
    char **shared_dirs;           /* HA disks must lie under one of these */
    size_t n_shared_dirs;
    int ttl_s, keepalive_ms, pause_margin_ms, kill_margin_ms, poll_ms;
    struct etcd *lease_etcd;      /* renewals only: never queued behind other calls */
    struct etcd *kv_etcd;

    /* membership (member.c) */
    enum member_state state;
    int64_t lease;                /* 0: none */
    uint64_t last_renew_sent_ns;  /* CLOCK_MONOTONIC of the last successful renewal's send */
    uint64_t pause_ns, kill_ns;   /* deadlines from that renewal */
    int renewing;                 /* renewals in flight */
    bool registering;
    unsigned ticks;
    bool fence_paused;            /* we paused HA guests and may resume them */
    char *last_error;
    uint64_t last_error_ms;
    struct event *renew_ev, *deadline_ev;
    unsigned lost_renewals;

    /* the coordinator (coord.c) */
    bool campaigning, leader;
    int64_t coord_rev;            /* create_revision of our coordinator key */
    int64_t coord_lease;          /* the lease it was made with */
    char *leader_host;
    struct event *coord_ev;
    bool coord_busy;
    uint64_t coord_next_ms;

    /* owners seen by this host (owner.c) */
    struct event *owner_ev;
    bool owner_busy;
    struct ha_start *starts;      /* assigned VMs being started here */
    json_t *paused_by_fence;      /* names of HA VMs that we paused */
    json_t *member_addrs;         /* {"h2": "IP:PORT"}: members/ as last read */
    uint64_t members_read_ns;     /* CLOCK_MONOTONIC of the last read's send; 0: never */
    bool members_busy;            /* a read of members/ is in flight */
    struct handoff *handoffs;     /* owner records moving here with a live migration */
    bool leaving;
    bool destroying;              /* cluster_destroy runs: callbacks only clean up */
};

/* The full etcd key for a suffix ("alive/h1"): malloc'd. */
char *cluster_key(const struct cluster *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cluster_set_error(struct cluster *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Is the lease renewed and not past the pause deadline? */
bool cluster_lease_fresh(const struct cluster *c);
uint64_t cluster_mono_ns(void);

/* member.c */
void member_start(struct cluster *c);
void member_stop(struct cluster *c);
/* The host's HA VMs with a QEMU: re-arm their shims with kill_ns. */
void member_arm_fences(struct cluster *c);

/* coord.c */
void coord_start(struct cluster *c);
void coord_stop(struct cluster *c);
/* Our lease changed (lost, re-granted): campaign again. */
void coord_reset(struct cluster *c);

/* owner.c */
void owner_start(struct cluster *c);
void owner_stop(struct cluster *c);
/* Is the VM an HA VM of this cluster (flags.ha)? */
bool owner_vm_is_ha(const struct vm *vm);
/* Is it an HA VM that the lease fences (isolation stop)?  A keep VM is
 * never paused or killed for its host's lease, nor armed in its shim. */
bool owner_vm_fenced(const struct vm *vm);
/* agent->hooks.member_addr */
const char *owner_member_addr(struct agent *a, const char *host);
/* Kill every local fenced HA guest now (lease lost); non-HA VMs and
 * isolation-keep VMs are untouched. */
void owner_kill_ha_guests(struct cluster *c, const char *why);
void owner_pause_ha_guests(struct cluster *c);
void owner_resume_ha_guests(struct cluster *c);

/* handoff.c: the owner record follows a live migration between members */
void handoff_install(struct cluster *c);
void handoff_remove(struct cluster *c);

/* cluster.c */
int cluster_save(const struct cluster *c, char *err, size_t errlen);
json_t *cluster_owner_value(const char *vm, const char *host, int64_t lease, const char *state,
                            int64_t gen, const char *reason);
#endif
