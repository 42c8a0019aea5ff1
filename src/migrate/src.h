/* The source side of a live migration, private to src/migrate/src-*.c and
 * migrate.c (the public entry points are migrate/migrate.h).
 *
 * Contract: one struct migration per move leaving this host, on the agent's
 * list from submit to its end.  Every QMP call made for it is a qmon_* on
 * migrate_src_mon(m) with &m->owner, every peer call goes through
 * migrate_src_mp: each holds a reference on the owner, and a reply arriving
 * after the end is dropped.  Functions shared between the files are
 * named migrate_src_*; everything else is static to its file. */
#ifndef VMOVE_MIGRATE_SRC_H
#define VMOVE_MIGRATE_SRC_H
#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/peer.h"
#include "migrate/migrate.h"
#include "migrate/policy.h"
#include "migrate/rate_cap.h"
#include "migrate/tuning.h"
#include "migrate/wire.h"
#include "qemu/monitor.h"
#include "qemu/qmp.h"

#define POLL_MS 250
#define CANCEL_GRACE_MS 5000    /* a failed transfer still running after this: abort_stuck_connections */
#define STALL_MS 10000          /* no bytes moved for this long: the link is gone */
#define RESOLVE_RETRY_MS 2000
#define PREPARE_TIMEOUT_MS 60000
#define FINISH_TIMEOUT_MS 30000

#define RESERVE_RETRY_MS 500

enum phase { PH_PREPARE, PH_TRANSFER, PH_SWITCHOVER, PH_CONFIRM, PH_ROLLBACK, PH_RESOLVE, PH_QUEUED, PH_RESERVING,
             PH_MIRROR, PH_POSTCOPY, PH_POSTCOPY_PAUSED };

struct migration {
    struct migration *next;
    struct agent *agent;
    struct job *job;
    struct vm *vm;
    char *name;
    char *peer_name;          /* NULL when moving to a bare ADDR:PORT */
    char *peer_addr;
    struct peer_conn *peer;
    struct migrate_tuning tuning;
    enum phase phase;
    struct event *timer;
    uint64_t t_start, t_transfer;
    uint64_t t_reserving;     /* when the reservation at the destination began (--max-wait) */
    char dst_ip[64];
    int dst_port;
    /* progress and convergence */
    uint64_t last_transferred, last_progress_ms;
    struct migrate_policy_state policy;
    int cur_downtime_ms;
    json_t *actions;          /* what the convergence policy did */
    struct rate_cap rate_cap; /* --bandwidth: the max-bandwidth that holds it (rate_cap.h) */
    bool rate_cap_said;       /* the limit cannot be held: said once in actions */
    json_t *failure;          /* error to report once rolled back */
    json_t *stats;
    bool transfer_done;       /* QEMU reported completed */
    bool restart_source;      /* the source QEMU died in pre-copy: boot the guest again here */
    bool recovering;          /* after a restart: waiting for QMP to decide */
    char local_holder[48];    /* our live-migration slot on this host, once held */
    struct qmon_owner owner;  /* QMP and peer replies in flight; ended by migration_free */
    char *state_path;         /* quick migration: the saved-state file */
    uint64_t t_pause;         /* quick migration: when the guest was paused */
    int nbd_port;             /* shared-nothing: the destination's NBD server */
    bool tls;                 /* the destination decided: TLS streams */
    char dst_name[64];        /* the destination's host name (for TLS hostname checks) */
    bool mirrors_started;
    bool conns_aborted;         /* the last resort of abort_stuck_connections ran */
    uint64_t fail_ms;           /* when fail() stopped a running transfer */
    struct block_mirror *mirror;   /* shared-nothing: the disk mirrors, once started */
    struct link_probe *probe; /* measuring the link before prepare */
    struct image_op *size_op; /* shared-nothing: qemu-img info of disks[size_next] before prepare */
    size_t size_next;
    json_t *storage_sizes;    /* {id: virtual size} learned so far */
    json_t *move_token;       /* the user's signed move token (api/move_token.h); NULL: this host's own move */
    /* post-copy (src-postcopy.c) */
    bool postcopy_starting;   /* marker written, the destination being armed, QEMU being switched */
    bool postcopy;            /* migrate-start-postcopy done: the destination runs the guest */
    uint64_t t_postcopy;
    uint64_t paused_ms;       /* postcopy-paused since then; 0: not paused */
    uint64_t next_recover_ms;
    bool recover_inflight;    /* migrate.recover / migrate resume on their way */
    bool pause_sent;
    bool recover_reconnect;   /* the last migrate.recover got no answer: a new connection */
    int recoveries;
    /* The switch-over as this host saw it (monotonic ms; 0: not seen): the
     * guest's pause (QEMU's downtime back from its "completed"), that
     * "completed", migrate.finish sent and answered, the pause on the wall
     * clock, and the destination's own steps from its answer
     * (docs/MIGRATION.md, "The switch-over, step by step"). */
    struct {
        uint64_t stop, completed, finish_sent, finish_answered, stop_unix;
        struct wire_finish_reply dst;
    } tl;
};

struct block_mirror;
struct image_op;
struct job_ops;
extern const char *const migrate_src_phase_names[];
extern const struct job_ops migrate_src_job_ops;   /* the "migrate" job (migrate.c) */

/* src-common.c: QMP and peer calls that hold the migration, phases, the timer */
void migrate_src_arm_timer(struct migration *m, int ms);
const char *migrate_src_dest(const struct migration *m);
/* refs 1, released into free() at the last reference; on_timeout aborts stuck connections. */
void migrate_src_owner_init(struct migration *m);
void migrate_src_m_release(struct migration *m);
void migrate_src_migration_free(struct migration *m);
/* The source QEMU's monitor, NULL once the VM is gone (qmon_* then refuse). */
qmp_t *migrate_src_mon(const struct migration *m);
void migrate_src_mp(struct migration *m, const char *method, json_t *params, int timeout, peer_reply_fn cb);
void migrate_src_set_phase(struct migration *m, enum phase ph);
const char *migrate_src_user_of(const struct migration *m);
/* Adds "user" and "move_token" to params for a user's move; returns params. */
json_t *migrate_src_with_user(const struct migration *m, json_t *params);

/* src-ending.c: ending and rollback */
void migrate_src_confirm(struct migration *m);
void migrate_src_end_failed(struct migration *m);
void migrate_src_fail(struct migration *m, json_t *error);
void migrate_src_on_resolved_rollback(void *arg, json_t *result, json_t *error);
void migrate_src_on_resume(void *arg, const qmp_error_t *err);
void migrate_src_rollback(struct migration *m);

/* src-switchover.c: switch-over */
void migrate_src_on_finished(void *arg, json_t *result, json_t *error);
void migrate_src_on_resolved(void *arg, json_t *result, json_t *error);
void migrate_src_resolve_ambiguous(struct migration *m);
void migrate_src_send_finish(struct migration *m);
void migrate_src_switchover(struct migration *m, const struct qmon_migrate_stats *s);
/* The switch-over timeline for the move's result; NULL when it was not a
 * live pre-copy switch-over with both hosts' steps known. */
json_t *migrate_src_timeline_json(const struct migration *m);

/* src-transfer.c: transfer: progress, convergence, QEMU started */
void migrate_src_abort_stuck_connections(struct migration *m);
json_t *migrate_src_check_route(struct migration *m);
void migrate_src_on_poll(void *arg, const struct qmon_migrate_stats *s, const qmp_error_t *err);
/* migrate-set-capabilities, then -parameters, then migrate. */
void migrate_src_set_capabilities(struct migration *m);
void migrate_src_poll_now(evutil_socket_t fd, short what, void *arg);

/* src-mirror.c: shared-nothing: the disk mirrors */
void migrate_src_end_mirrors(struct migration *m, bool force);
char *migrate_src_mirror_node(struct migration *m, const char *disk, const char *what);
void migrate_src_start_mirrors(struct migration *m);
/* Shared-nothing: disk i's virtual size (qemu-img info; 0 if unknown). */
uint64_t migrate_src_disk_size(struct migration *m, size_t i);
/* The disk copy's final progress for the result (block/mirror_progress.h), NULL without mirrors. */
json_t *migrate_src_mirror_summary(struct migration *m);

/* src-postcopy.c: post-copy, its pauses and recovery, the loss of the VM */
void migrate_src_start_postcopy(struct migration *m, const char *note);
void migrate_src_on_postcopy_poll(void *arg, const struct qmon_migrate_stats *s, const qmp_error_t *err);
/* No way back: the job fails saying the VM is lost; the source QEMU ends. */
void migrate_src_postcopy_lost(struct migration *m, const char *why);

/* src-quick.c: quick migration */
void migrate_src_quick_save(struct migration *m);

/* src-hooks.c: hooks: the source QEMU and the peer connection */
void migrate_src_on_peer_closed(void *arg, const char *reason);
void migrate_src_on_src_event(void *arg, const char *name, json_t *data);
void migrate_src_on_src_gone(void *arg, json_t *exit_info);

/* migrate.c: start and cancel (migrate.h) */
struct migration *migrate_src_migration_new(struct agent *a, struct vm *vm, struct job *job, const char *peer_name, const char *peer_addr);
void migrate_src_on_unreserved(void *arg, json_t *result, json_t *error);
/* Host `to` (a peer's name, a cluster member, or ADDR:PORT) as the name its
 * certificate must carry (NULL for a bare address) and its address; NULL,
 * or the error saying it is unknown. */
json_t *migrate_src_resolve_target(struct agent *a, const char *to, const char **name, const char **addr);

/* src-queue.c: queueing, the prepare step and its answer, compression */
struct migration *migrate_src_enqueue_migration(struct agent *a, struct job *job, struct vm *vm, const char *peer_name, const char *peer_addr, const struct migrate_tuning *t);
void migrate_src_reserve(struct migration *m);

/* src-recovery.c: recovery after a restart */
void migrate_src_recover_wait_qmp(struct migration *m);
#endif
