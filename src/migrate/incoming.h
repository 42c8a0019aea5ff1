/* Destination side of a live migration: what a source host asks of this
 * host (reserve a slot, prepare, finish, load, resolve, capacity, probe) and
 * the recovery of half-done incoming migrations when vmoved restarts.
 *
 * The destination resumes the guest only after the source said "finish",
 * which it says only once QEMU reported the migration completed and the
 * source guest is stopped; and the destination records that commitment in
 * runtime.json before resuming.  An incoming VM that is not committed is
 * killed when its source goes away or asks to resolve it: so the guest runs
 * on exactly one host.
 *
 * Contract of this interface (the API layer, src/api/api-migrate-peer.c,
 * speaks it; nothing here knows requests or connections):
 *  - `source` is the authenticated name of the sending host; whether it and
 *    the user it acts for may migrate here is decided before these calls.
 *  - Synchronous calls return their result (a new object), or NULL with
 *    *err set to a new proto_error.
 *  - Asynchronous calls either fail synchronously (return -1, *err set,
 *    done never called) or return 0 and then call done(arg, result, error)
 *    exactly once, with exactly one of result and error set (both owned by
 *    done).  done may run before the call returns. */
#ifndef VMOVE_INCOMING_H
#define VMOVE_INCOMING_H
#include <jansson.h>
#include <stdbool.h>

#include "migrate/wire.h"

struct agent;
struct incoming;

typedef void (*incoming_done_fn)(void *arg, json_t *result, json_t *error);

/* The source's control connection, which the caller holds: arm(ctx) is
 * called once when the incoming migration comes to exist (from then on the
 * caller reports a hang-up with incoming_source_lost), release(ctx) once
 * when it ends or the hang-up was reported.  If incoming_prepare fails
 * synchronously, neither is called. */
struct incoming_watch {
    void (*arm)(void *ctx);
    void (*release)(void *ctx);
    void *ctx;
};

struct incoming_prepare_req {
    const char *source;
    const struct wire_prepare_req *msg;
    struct incoming_watch watch;
};

/* Define the VM here, launch QEMU waiting for its state, and answer with a
 * wire_prepare_reply (where to send it) once QEMU listens. */
int incoming_prepare(struct agent *a, const struct incoming_prepare_req *req, incoming_done_fn done, void *arg,
                     json_t **err);
/* The source has sent everything: commit, resume the guest here, answer
 * with a wire_finish_reply. */
int incoming_finish(struct agent *a, const char *source, const char *vm_name, incoming_done_fn done, void *arg,
                    json_t **err);
/* Quick migration: load the state file, then commit and resume as finish. */
int incoming_load(struct agent *a, const char *source, const struct wire_load_req *msg, incoming_done_fn done,
                  void *arg, json_t **err);
/* What became of a VM the source was sending (a wire_resolve_reply); an
 * uncommitted incoming VM is aborted first, so the answer stays true. */
/* The source asks whether the VM committed here; an uncommitted arrival is
 * aborted.  Only the host the VM is arriving from may ask: NULL with *err
 * (denied) for any other, and for a VM that is leaving this host. */
json_t *incoming_resolve(struct agent *a, const char *source, const char *vm_name, json_t **err);
/* A place in the queue for an incoming slot (a wire_reserve_reply). */
json_t *incoming_reserve(struct agent *a, const char *source, json_int_t job, json_t **err);
void incoming_unreserve(struct agent *a, const char *source, json_int_t job);
/* Free memory and whether this host takes VMs now. */
json_t *incoming_capacity(struct agent *a);
/* A short-lived sink on the migration address, for the source to measure
 * the link: {"ip", "port"}.  via: the address the source reached us on. */
json_t *incoming_probe(struct agent *a, const char *via, json_t **err);
/* The source's control connection of the incoming migration of vm_name
 * closed: the watch is released, and an uncommitted VM aborted. */
void incoming_source_lost(struct agent *a, const char *vm_name, const char *source);

/* Post-copy (the source host only): migrate.postcopy arms the incoming
 * migration before the source switches (a {"armed": true} reply);
 * migrate.recover, after the link broke, pauses this end if it has not
 * noticed, listens with migrate-recover on an allowed migration address
 * and answers a wire_recover_reply; abandon: the source gave up, the VM is
 * lost, this host's half is killed.  ERR_NOT_FOUND: this half is gone. */
json_t *incoming_postcopy(struct agent *a, const char *source, const char *name, json_t **err);
int incoming_postcopy_recover(struct agent *a, const char *source, const char *name, bool abandon, const char *why,
                              incoming_done_fn done, void *arg, json_t **err);

/* A pre-flight check (migrate.check, `vmove move --check`): what this host
 * would refuse of the move msg describes (a migrate.prepare request, plus
 * "networks": the source's migration networks, "qemu_version": its QEMU's,
 * and in "storage" "alloc": {disk id: bytes the disk holds}), as
 * {"host", "listen_ip"?, "items": [...]} (items of vm/compat.h, each fix a
 * command for this host).  Nothing changes here.  The caller has decided
 * the rights: */
struct incoming_check_rights {
    const char *source;         /* the verified name of the asking host */
    bool source_in;             /* host:SOURCE has migrate.in here (else the VM's files are not checked) */
    const char *user;           /* "user:NAME" proven by the user's token; NULL: the host's own move */
    bool user_in;               /* that user has migrate.in here */
    const char *user_problem;   /* a token that did not verify: why; else NULL */
};
json_t *incoming_check(struct agent *a, const struct incoming_check_rights *w, json_t *msg, json_t **err);

void incoming_recover(struct agent *a);
/* Shutdown: pending requests fail with "unavailable". */
void incoming_free_all(struct agent *a);
void incoming_free_reservations(struct agent *a);
#endif
