/* Private to the destination side of a migration (src/migrate/incoming.c
 * and dst-*.c): the incoming migration record and the helpers its files
 * share.  Nothing outside src/migrate/ includes this; the public face is
 * migrate/incoming.h.
 *
 * Lifetime: a struct incoming lives on agent->incomings from prepare until
 * migrate_dst_free(); QMP replies in flight each hold a reference on its
 * qmon owner, so the memory outlives the record and late replies are
 * dropped (an abort mutes the owner, migrate_dst_free ends it). */
#ifndef VMOVE_DST_H
#define VMOVE_DST_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "migrate/incoming.h"
#include "migrate/tuning.h"
#include "qemu/monitor.h"
#include "qemu/qmp.h"

struct vm;
struct event;

/* A source's place in this host's queue for an incoming slot. */
struct reservation {
    struct reservation *next;
    char source[64];
    json_int_t job;
    char holder[96];
    bool granted;
    uint64_t last_seen_ms;
};

struct image_op;

struct incoming {
    struct incoming *next;
    struct agent *agent;
    struct vm *vm;
    char *name;
    char *source;
    json_int_t job;            /* the source's job id */
    struct job *arrival;       /* this host's own job for it ("migrate.incoming"): jobs list shows it */
    uint64_t booted_ms;        /* wall clock here when the guest booted, from the source's uptime; 0: unknown */
    incoming_done_fn done;     /* pending prepare, finish or load; NULL: none */
    void *done_arg;
    struct incoming_watch watch; /* the source's control connection */
    bool watched;              /* watch armed and not yet released */
    struct migrate_tuning tuning;
    char ip[64];
    int port;
    bool finish_waiting;       /* finish arrived while QEMU was still loading */
    bool loaded;               /* QEMU reported the incoming migration completed */
    /* The switch-over here (monotonic ms; 0: not yet), answered to the
     * source as offsets from finish_rx (wire_finish_reply). */
    struct incoming_timeline {
        uint64_t loaded, finish_rx, committed, resumed, announced;
    } tl;
    bool handoff_pending;      /* the cluster is moving the owner record here */
    bool running_logged;       /* post-copy: RESUME seen (migration.incoming.postcopy.running journaled) */
    struct event *finish_timer;
    char holder[96];           /* our live-migration slot */
    bool quick;                /* quick migration: the state comes from a file */
    bool tls;                  /* migration and NBD streams use TLS */
    json_t *created_disks;     /* shared-nothing: disk files made here (removed on abort) */
    json_t *create_sizes;      /* shared-nothing: {id: bytes} of the disks still to make */
    struct image_op *create_op;   /* qemu-img create of created_disks[creating], before QEMU starts */
    size_t creating;
    struct qmon_owner owner;   /* QMP replies in flight; muted by abort, ended by migrate_dst_free */
    int nbd_port;
    /* post-copy (dst-postcopy.c); tuning.postcopy: set up for it */
    bool postcopy_armed;       /* the source is about to switch: commit on postcopy-active */
    char recover_uri[96];      /* the last migrate-recover listener */
};

/* ---- incoming.c: bookkeeping ---- */
struct incoming *migrate_dst_find(struct agent *a, const char *name);
/* refs 1; the last reference frees the record's memory. */
void migrate_dst_owner_init(struct incoming *in);
/* The incoming QEMU's monitor for qmon_* with &in->owner; NULL once the VM
 * is gone (qmon_* then refuse). */
qmp_t *migrate_dst_mon(const struct incoming *in);
/* Forget the incoming (the VM, if still attached, stays).  Releases the
 * watch and the slot; a pending done is the caller's to answer first. */
void migrate_dst_free(struct incoming *in);
/* The arrival's job here: started once the VM is defined; ended with why
 * NULL when the guest runs here, or with why it does not. */
void migrate_dst_arrival_start(struct incoming *in);
void migrate_dst_arrival_end(struct incoming *in, const char *why);
/* Answer the pending request (steals result and error); no-op if none. */
void migrate_dst_answer(struct incoming *in, json_t *result, json_t *error);
/* The error an aborted incoming answers its pending request with. */
json_t *migrate_dst_abort_error(const struct incoming *in, const char *why);
/* Kill the half-received VM and forget it.  Never called once committed. */
void migrate_dst_abort(struct incoming *in, const char *why);
/* fmt has one %s, filled with desc: the reason, for migrate_dst_abort. */
void migrate_dst_fail(struct incoming *in, const char *fmt, const char *desc);
bool migrate_dst_committed(const struct vm *vm);
void migrate_dst_remove_created_disks(json_t *paths);
/* The same for a list vmoved recorded (runtime.json's created_disks, read
 * back after a restart): only regular files in VM_DIR or in a directory the
 * host allows for storage are removed, so a corrupted or planted record
 * cannot make vmoved unlink anything else. */
void migrate_dst_remove_recorded_disks(struct agent *a, const char *vm_dir, json_t *paths);

/* ---- dst-reserve.c: the queue for incoming slots ---- */
void migrate_dst_holder(char *buf, size_t len, const char *source, json_int_t job);
/* Take the reservation out of the queue; true if it held a granted slot,
 * which then moves to the caller. */
bool migrate_dst_take_reservation(struct agent *a, const char *source, json_int_t job);

/* ---- dst-prepare.c ---- */
/* A free TCP port on ip (bound and released), or -1. */
int migrate_dst_free_port(const char *ip);

/* ---- dst-postcopy.c: post-copy on the destination ---- */
/* QEMU's MIGRATION event status st, for an incoming migration in post-copy. */
void migrate_dst_postcopy_event(struct incoming *in, const char *st);
/* QEMU's RESUME in post-copy: the device state is loaded, the guest runs. */
void migrate_dst_postcopy_running(struct incoming *in);
/* The incoming QEMU exited; true if it was running the guest in post-copy
 * (the VM is lost, and recorded so). */
bool migrate_dst_postcopy_gone(struct incoming *in, const char *desc);

/* ---- dst-finish.c: commit and resume ---- */
void migrate_dst_stop_nbd_then_commit(struct incoming *in);
/* Abort unless the load completes within seconds (finish_waiting is set). */
void migrate_dst_wait_loaded(struct incoming *in, int seconds);
#endif
