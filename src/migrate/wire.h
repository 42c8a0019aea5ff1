/* The messages two agents exchange for a migration (docs/PROTOCOL.md's
 * host-to-host methods), as C types.
 *
 * Contract:
 *  - X_to_json(msg) returns a new object with exactly the keys (and key
 *    order) the peer expects; it never fails for a filled-in msg.
 *  - X_from_json(j, &msg, &err) returns 0 and fills msg, or -1 with *err a
 *    new proto_error(ERR_INVALID) naming the missing or mistyped field; it
 *    never crashes on any JSON (NULL included) and ignores unknown keys, so
 *    a newer peer may add fields.
 *  - Pointers in a parsed msg (strings, json_t *) are borrowed from j and
 *    valid while j is; replies copy their strings into the struct, since the
 *    source keeps them past the reply.
 *  - Request errors read exactly as api_param_*'s ("missing parameter
 *    \"name\""): the destination answers with them unchanged. */
#ifndef VMOVE_WIRE_H
#define VMOVE_WIRE_H
#include <jansson.h>
#include <stdbool.h>

#define WIRE_HOST_MAX 256     /* a DNS name fits */
#define WIRE_IP_MAX 64
#define WIRE_UPTIME_MAX_MS (100LL * 365 * 24 * 3600 * 1000)   /* a century: anything longer is a lie */

/* Whether the move may switch to post-copy: no; optional (the destination
 * says in its reply whether it allows it); required (--converge postcopy:
 * a destination that does not allow it refuses the move). */
enum wire_postcopy { WIRE_POSTCOPY_NO, WIRE_POSTCOPY_OPTIONAL, WIRE_POSTCOPY_REQUIRED };

/* migrate.prepare: the VM and how to receive it. */
struct wire_prepare_req {
    json_t *config;        /* object; vm_config_from_json checks its content */
    json_t *tuning;        /* object or NULL; tuning_from_json checks it */
    const char *accel;     /* the source's accelerator, or NULL */
    const char *via;       /* the address the source reaches us on, or NULL */
    json_int_t job;        /* the source's job id (0 if not sent) */
    bool quick;            /* the state comes through a file */
    json_t *storage;       /* shared-nothing: {"dir", "sizes"}; NULL otherwise */
    const char *user;      /* whom the source acts for ("user:NAME"), or NULL */
    bool insecure_ok;      /* the source allows plaintext streams */
    enum wire_postcopy postcopy;   /* "postcopy": "optional" | "required"; absent: no */
    json_int_t uptime_ms;  /* how long the guest has run, as the source sends it; 0: not sent */
};
json_t *wire_prepare_req_to_json(const struct wire_prepare_req *m);
int wire_prepare_req_from_json(json_t *j, struct wire_prepare_req *m, json_t **err);

/* Reply to migrate.prepare: where to send the VM (quick: nothing, the state
 * goes through shared storage). */
struct wire_prepare_reply {
    bool quick;
    char ip[WIRE_IP_MAX];
    int port;              /* 1..65535 */
    bool tls;
    char host[WIRE_HOST_MAX];
    int nbd_port;          /* shared-nothing: 1..65535; 0 otherwise */
    json_t *disks;         /* shared-nothing: the new paths (a reference); NULL otherwise */
    bool postcopy;         /* the destination allows post-copy and set it up (sent only if true) */
};
json_t *wire_prepare_reply_to_json(const struct wire_prepare_reply *m);
int wire_prepare_reply_from_json(json_t *j, struct wire_prepare_reply *m, json_t **err);
void wire_prepare_reply_clear(struct wire_prepare_reply *m);

/* migrate.finish and migrate.resolve: which VM. */
struct wire_name_req {
    const char *name;
};
int wire_name_req_from_json(json_t *j, struct wire_name_req *m, json_t **err);

/* Reply to migrate.finish: the guest runs here now. */
/* The destination's side of the switch-over, each in ms from its receipt of
 * migrate.finish, so that the two hosts' clocks need not agree: QEMU loaded
 * the last state (negative when it was done before the request came), the
 * commitment recorded, the guest resumed, announce-self answered, and the
 * reply sent.  has_timeline is false from a destination that sends none. */
#define WIRE_TIMELINE_MAX_MS 600000
struct wire_finish_reply {
    char host[WIRE_HOST_MAX];
    bool has_timeline;
    int loaded_ms, committed_ms, resumed_ms, announced_ms, answered_ms;
};
json_t *wire_finish_reply_to_json(const struct wire_finish_reply *m);
int wire_finish_reply_from_json(json_t *j, struct wire_finish_reply *m, json_t **err);

/* Reply to migrate.resolve: what became of the VM on the destination. */
enum wire_resolve_state { WIRE_RESOLVE_ABSENT, WIRE_RESOLVE_COMMITTED, WIRE_RESOLVE_ABORTED };
struct wire_resolve_reply {
    enum wire_resolve_state state;
    char host[WIRE_HOST_MAX];
};
json_t *wire_resolve_reply_to_json(const struct wire_resolve_reply *m);
int wire_resolve_reply_from_json(json_t *j, struct wire_resolve_reply *m, json_t **err);
const char *wire_resolve_state_name(enum wire_resolve_state s);

/* migrate.reserve / migrate.unreserve: a place in the destination's queue. */
struct wire_reserve_req {
    json_int_t job;        /* -1 if not sent */
    const char *vm;        /* for the audit record; may be NULL */
    const char *user;
};
json_t *wire_reserve_req_to_json(const struct wire_reserve_req *m);
int wire_reserve_req_from_json(json_t *j, struct wire_reserve_req *m, json_t **err);

struct wire_reserve_reply {
    bool granted;
    int position;          /* 1 = next in line */
    int in_use, max;       /* the destination's live slots */
    char host[WIRE_HOST_MAX];
};
json_t *wire_reserve_reply_to_json(const struct wire_reserve_reply *m);
int wire_reserve_reply_from_json(json_t *j, struct wire_reserve_reply *m, json_t **err);

/* migrate.load (quick migration): the saved state to load. */
struct wire_load_req {
    const char *name;
    const char *path;
};
json_t *wire_load_req_to_json(const struct wire_load_req *m);
int wire_load_req_from_json(json_t *j, struct wire_load_req *m, json_t **err);

/* Reply to migrate.recover: the destination's QEMU listens there for the
 * source to resume a paused post-copy (the request is a wire_name_req). */
struct wire_recover_reply {
    char ip[WIRE_IP_MAX];
    int port;              /* 1..65535 */
    bool loaded;           /* the destination has every page: nothing to recover (no ip, port) */
};
json_t *wire_recover_reply_to_json(const struct wire_recover_reply *m);
int wire_recover_reply_from_json(json_t *j, struct wire_recover_reply *m, json_t **err);
#endif
