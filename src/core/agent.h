/* The host agent's state: one `struct agent` per vmoved process. */
#ifndef VMOVE_AGENT_H
#define VMOVE_AGENT_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "conf/settings.h"
#include "qemu/accel.h"
#include "qemu/qemu_caps.h"

struct event_base;
struct agent;
struct event;
struct server;
struct vm;
struct job;
struct incoming;
struct migration;
struct limits;
struct reservation;
struct move_grant;
struct drain;
struct cluster;
struct acl;
struct audit_denials;
typedef struct journal journal_t;
typedef struct ssl_ctx_st SSL_CTX;

/* Calls from lower layers up into the cluster module (src/cluster/), which
 * sets them when the host joins; NULL outside a cluster. */
typedef void (*agent_handoff_done_fn)(void *arg, const char *error);
struct agent_hooks {
    /* An HA VM arriving by live migration from `source` is about to run
     * here: move its owner record to this host first.  done(arg, NULL) to
     * resume it here, done(arg, why) to abort (it stays on the source). */
    void (*before_incoming_commit)(struct agent *a, struct vm *vm, const char *source,
                                   agent_handoff_done_fn done, void *arg);
    /* The incoming migration (arg) went away first: done must not be called. */
    void (*cancel_incoming_commit)(struct agent *a, void *arg);
    /* A cluster member's "IP:PORT" as it registered (NULL if none): moves
     * between members need no `peer add`. */
    const char *(*member_addr)(struct agent *a, const char *host);
};

/* What remote principals may hold on this host (docs/SECURITY.md, "Resource
 * limits"): jobs queued or running that they asked for, streams (a `jobs
 * watch`, a move or start waiting for its job, the console's live pages),
 * in all and per principal; and how long one request may take to arrive.
 * Root on the local socket is counted but never refused.  vmoved-main.c
 * sets the defaults; VMOVE_TEST_LIMITS lowers them for the tests only. */
#define AGENT_MAX_JOBS 256
#define AGENT_MAX_JOBS_PER_PRINCIPAL 32
#define AGENT_MAX_STREAMS 256
#define AGENT_MAX_STREAMS_PER_PRINCIPAL 32
#define AGENT_REQUEST_TIMEOUT_S 30
struct agent_quotas {
    int max_jobs, max_jobs_per_principal;
    int max_streams, max_streams_per_principal;
    int request_timeout_s;
};

struct agent {
    struct event_base *base;
    char *name;               /* host name (from --name, else hostname) */
    char *state_dir;
    char *vms_dir;            /* STATE/vms */
    char *socket_path;
    char *listen_addr;        /* "ADDR:PORT" or NULL */
    char *tls_dir;
    char *qemu_tls_dir;       /* STATE/qemu-tls: QEMU's x509 credentials */
    char *console_dir;        /* the web console's files (--console-dir; docs/CONSOLE.md) */
    SSL_CTX *tls_server;      /* NULL without --tls-dir */
    SSL_CTX *tls_client;      /* for calls to peers, same identity */
    struct server *server;
    journal_t *journal;
    struct host_settings settings;
    struct accel_choice accel;
    struct qemu_caps caps;
    struct agent_quotas quotas;
    struct vm *vms;           /* owned by src/vm/inventory.c, sorted by name: elsewhere use
                                 vm_find, VM_FOREACH/VM_FOREACH_SAFE, vm_count (vm/vm.h) */
    struct job *jobs;         /* active (unfinished) jobs, linked list */
    struct incoming *incomings; /* migrations arriving here */
    struct migration *migrations; /* migrations leaving from here */
    struct limits *limits;    /* slots in use and the queue (host/limits.c) */
    struct reservation *reservations; /* sources queued for an incoming slot here */
    struct move_grant *move_grants; /* users' move tokens bound to incoming jobs (api/move_token.c) */
    struct drain *drains;     /* at most one: this host being evacuated */
    struct cluster *cluster;  /* NULL unless this host is a cluster member (src/cluster/) */
    /* When the shims kill this host's HA guests unless the cluster lease is
     * renewed first (CLOCK_MONOTONIC ns; 0 outside a cluster).  Kept here so
     * that a QEMU started for an HA VM is armed from its first instant. */
    uint64_t fence_kill_ns;
    struct agent_hooks hooks;
    struct acl *acl;          /* STATE/acl.json (host/acl.c) */
    int audit_fd;             /* STATE/audit.log, append-only */
    struct audit_denials *audit_denials; /* the rate of recorded denials (core/audit.c) */
    struct event *sigchld_ev, *sigterm_ev, *sigint_ev, *sighup_ev;
    uint64_t started_ms;
    bool stopping;
    int lock_fd;              /* flock on STATE/vmoved.lock */
};

/* Persist settings (STATE/host.json) and re-derive what depends on them. */
int agent_save_settings(struct agent *a, char *err, size_t errlen);
void agent_update_accel(struct agent *a);
/* The default quotas, then those spec ("max_jobs=3,...", VMOVE_TEST_LIMITS;
 * NULL: none) lowers.  -1 with why in err. */
int agent_quotas_init(struct agent_quotas *q, const char *spec, char *err, size_t errlen);
/* Exit the event loop (SIGTERM).  Running VMs are left running. */
void agent_shutdown(struct agent *a);
#endif
