/* Typed QMP commands over the asynchronous transport of qemu/qmp.h.
 *
 * One qmon_<command> function per QMP command vmove sends: arguments are
 * typed C values, results are parsed into structs.  The QMP command names
 * appear only in qemu/monitor*.c (and qmp.c's own qmp_capabilities).
 *
 * Contract of every qmon_* command function:
 *  - (q, owner, <arguments>, timeout_ms, cb, arg).  q NULL, or qmp_command
 *    refusing (client closed, bad arguments): returns -1 and cb is never
 *    called.  Otherwise 0, and cb runs exactly once, never synchronously from
 *    inside the qmon_* call -- unless the owner died first (below).
 *  - cb NULL: fire and forget (no owner reference is taken, no timeout hook).
 *  - The callback receives either a result (err NULL) or err (result NULL /
 *    n 0).  err->kind is QMP_ERR_QEMU, _TIMEOUT, _DISCONNECTED, or
 *    _PROTOCOL -- the latter also when QEMU's answer lacks a field vmove needs
 *    or has the wrong type: err->desc then names the command and the field.
 *  - Result structs, their strings and their `raw` JSON are borrowed: valid
 *    during the callback only.  `raw` is QEMU's reply for the rare field a
 *    caller needs that is not parsed here.
 *
 * Owner: the object a reply belongs to (a migration, an incoming migration,
 * a storage move).  A call holds a reference on it while the reply is on its
 * way; a reply arriving after the owner ended (or was muted) is dropped:
 * cb is not called, the reference is still given back.  owner may be NULL
 * (the caller guarantees arg outlives the reply). */
#ifndef VMOVE_QEMU_MONITOR_H
#define VMOVE_QEMU_MONITOR_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qemu/qmp.h"

/* ---- owner references ---------------------------------------------------- */

/* Replaces the three ticket copies (mticket in migrate.c, iticket in
 * incoming.c, sm_call in storage_move.c):
 *  - migration: refs/dead become an embedded qmon_owner; on_timeout is
 *    abort_stuck_connections; peer calls and the link probe hold it with
 *    qmon_owner_ref/unref; migration_free ends it.
 *  - incoming: "aborting" is qmon_owner_mute, incoming_free is _end.
 *  - storage move: pending + released is refs; sm_release is _end; the
 *    per-disk context travels in arg (&sm->disks[i], valid while sm is). */

struct qmon_owner {
    int refs;                        /* replies in flight + 1 while the owner lives */
    bool dead;                       /* replies still in flight are dropped */
    bool ended;                      /* the owner's own reference is gone */
    void *obj;                       /* given to release and on_timeout */
    void (*release)(void *obj);      /* refs reached 0: free obj (may be NULL) */
    /* Optional: a command timed out, called before its callback, only while
     * the owner lives (migrate.c aborts connections stuck on a dead link). */
    void (*on_timeout)(void *obj, const char *command);
};

/* refs = 1 (the owner's own reference), alive. */
void qmon_owner_init(struct qmon_owner *o, void *obj, void (*release)(void *obj));
void qmon_owner_ref(struct qmon_owner *o);
/* Drops a reference; at 0, release(obj).  o may be gone after this. */
void qmon_owner_unref(struct qmon_owner *o);
/* From now on replies are dropped; the owner keeps its reference (an
 * incoming migration that is aborting but not yet freed). */
void qmon_owner_mute(struct qmon_owner *o);
/* The owner ended: mute, then drop its own reference (once; idempotent). */
void qmon_owner_end(struct qmon_owner *o);
bool qmon_owner_alive(const struct qmon_owner *o);

/* ---- callbacks ----------------------------------------------------------- */

/* Commands without a result (cont, stop, blockdev-add, ...). */
typedef void (*qmon_done_fn)(void *arg, const qmp_error_t *err);

/* ---- VM run state (monitor.c) -------------------------------------------- */

struct qmon_status {
    bool running;
    const char *status;   /* "running", "paused", "inmigrate", "postmigrate", ... */
    json_t *raw;
};
typedef void (*qmon_status_fn)(void *arg, const struct qmon_status *st, const qmp_error_t *err);

int qmon_query_status(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_status_fn cb, void *arg);
int qmon_cont(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_done_fn cb, void *arg);
int qmon_stop(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_done_fn cb, void *arg);
int qmon_quit(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_done_fn cb, void *arg);
int qmon_system_powerdown(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_done_fn cb, void *arg);

/* Passes fd (duplicated; the caller keeps its copy) under fdname. */
int qmon_getfd(qmp_t *q, struct qmon_owner *o, const char *fdname, int fd, int timeout_ms, qmon_done_fn cb,
               void *arg);

/* object-add of a tls-creds-x509 object reading QEMU's PEM files in dir
 * (see qemu/qemu_tls.h); verify_peer: the other end must show a cert of our CA. */
struct qmon_tls_creds {
    const char *id;
    const char *dir;
    bool server;          /* endpoint "server" (destination) or "client" */
    bool verify_peer;
};
int qmon_object_add(qmp_t *q, struct qmon_owner *o, const struct qmon_tls_creds *c, int timeout_ms,
                    qmon_done_fn cb, void *arg);

/* Out of band (it must run while the main loop is blocked on a dead link).
 * One instance per command: yank refuses a whole list if one is gone. */
enum qmon_yank_type { QMON_YANK_MIGRATION, QMON_YANK_BLOCK_NODE, QMON_YANK_CHARDEV };
struct qmon_yank_instance {
    enum qmon_yank_type type;
    const char *name;     /* block-node: node-name; chardev: id; migration: unused */
};
int qmon_yank(qmp_t *q, struct qmon_owner *o, const struct qmon_yank_instance *inst, size_t n, int timeout_ms,
              qmon_done_fn cb, void *arg);

/* Gratuitous ARP/RARP for the guest's NICs after it moved (times in ms). */
struct qmon_announce {
    int initial, max, rounds, step;
};
int qmon_announce_self(qmp_t *q, struct qmon_owner *o, const struct qmon_announce *a, int timeout_ms,
                       qmon_done_fn cb, void *arg);

/* ---- migration (monitor-migrate.c) --------------------------------------- */

enum qmon_mig_status {
    QMON_MIG_NONE, QMON_MIG_SETUP, QMON_MIG_CANCELLING, QMON_MIG_CANCELLED, QMON_MIG_ACTIVE,
    QMON_MIG_POSTCOPY_ACTIVE, QMON_MIG_POSTCOPY_PAUSED, QMON_MIG_POSTCOPY_RECOVER_SETUP,
    QMON_MIG_POSTCOPY_RECOVER, QMON_MIG_COMPLETED, QMON_MIG_FAILED, QMON_MIG_COLO, QMON_MIG_PRE_SWITCHOVER,
    QMON_MIG_DEVICE, QMON_MIG_WAIT_UNPLUG,
    QMON_MIG_UNKNOWN,     /* a status newer than this code: see status_name */
};

struct qmon_migrate_ram {
    uint64_t transferred, remaining, total;
    uint64_t dirty_pages_rate;    /* pages/s */
    uint64_t page_size;           /* 0 if QEMU did not say */
    uint64_t dirty_sync_count;    /* passes over memory so far */
    uint64_t pages_per_second;
    uint64_t multifd_bytes;
    double mbps;                  /* transfer rate, megabits/s */
};

/* Times in ms; absent fields are 0. */
struct qmon_migrate_stats {
    enum qmon_mig_status status;  /* QMON_MIG_NONE when QEMU gave none (no migration yet) */
    const char *status_name;      /* QEMU's word, "none" when absent */
    bool has_ram;
    struct qmon_migrate_ram ram;
    int64_t total_time, expected_downtime, downtime, setup_time;
    int cpu_throttle_percentage;
    const char *error_desc;       /* NULL unless failed */
    json_t *raw;
};
typedef void (*qmon_migrate_stats_fn)(void *arg, const struct qmon_migrate_stats *s, const qmp_error_t *err);

/* Still moving data (setup .. cancelling): neither ended nor idle. */
bool qmon_mig_status_active(enum qmon_mig_status s);
/* In post-copy: active, paused, or recovering from a pause. */
bool qmon_mig_status_postcopy(enum qmon_mig_status s);

int qmon_query_migrate(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_migrate_stats_fn cb, void *arg);
/* The reply parser of qmon_query_migrate alone, without a connection (for
 * tests/fuzz/: a QEMU that lies): 0, or -1 with err naming the field.
 * Strings in *s are borrowed from ret. */
int qmon_parse_migrate_reply(json_t *ret, struct qmon_migrate_stats *s, char *err, size_t errlen);

/* uri: "tcp:HOST:PORT", "fd:NAME" (see the deprecation note in monitor.c). */
int qmon_migrate(qmp_t *q, struct qmon_owner *o, const char *uri, int timeout_ms, qmon_done_fn cb, void *arg);
int qmon_migrate_incoming(qmp_t *q, struct qmon_owner *o, const char *uri, int timeout_ms, qmon_done_fn cb,
                          void *arg);
int qmon_migrate_cancel(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_done_fn cb, void *arg);
/* Post-copy (needs the postcopy-ram capability on both ends):
 *  - start_postcopy: the source switches to post-copy: the guest will run on
 *    the destination, which fetches the pages it lacks from the source;
 *  - pause: shut the (post-copy) migration's sockets down, on either end:
 *    both sides go to postcopy-paused and keep their halves;
 *  - recover (destination, postcopy-paused): listen on uri for the source to
 *    resume; a second call replaces the listener;
 *  - resume (source, postcopy-paused): `migrate` with resume=true to uri.
 * pause and recover go out of band: on a destination in post-copy a vCPU
 * can hold the big lock while it waits for a page that a cut link will not
 * bring, so in-band commands (query-migrate too) get no answer until the
 * recovery they would start. */
int qmon_migrate_start_postcopy(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_done_fn cb, void *arg);
int qmon_migrate_pause(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_done_fn cb, void *arg);
int qmon_migrate_recover(qmp_t *q, struct qmon_owner *o, const char *uri, int timeout_ms, qmon_done_fn cb,
                         void *arg);
int qmon_migrate_resume(qmp_t *q, struct qmon_owner *o, const char *uri, int timeout_ms, qmon_done_fn cb,
                        void *arg);

enum qmon_capability {
    QMON_CAP_EVENTS, QMON_CAP_MULTIFD, QMON_CAP_AUTO_CONVERGE, QMON_CAP_RETURN_PATH, QMON_CAP_POSTCOPY_RAM,
    QMON_CAP_PAUSE_BEFORE_SWITCHOVER, QMON_CAP_SWITCHOVER_ACK, QMON_CAP_ZERO_COPY_SEND, QMON_CAP_POSTCOPY_PREEMPT,
    QMON_CAP_MAPPED_RAM,      /* fixed offsets in a state file, written by multifd channels in parallel */
    QMON_CAP_BACKGROUND_SNAPSHOT, /* save RAM as of the start while the guest runs (userfaultfd) */
    QMON_CAP__COUNT,
};
struct qmon_cap_state {
    enum qmon_capability cap;
    bool on;
};
int qmon_migrate_set_capabilities(qmp_t *q, struct qmon_owner *o, const struct qmon_cap_state *caps, size_t n,
                                  int timeout_ms, qmon_done_fn cb, void *arg);

enum qmon_multifd_compression { QMON_COMPRESS_NONE, QMON_COMPRESS_ZLIB, QMON_COMPRESS_ZSTD };

/* Only the members whose has_* flag (or non-NULL string) is set are sent:
 * QEMU keeps every other parameter as it is. */
struct qmon_migrate_params {
    bool has_max_bandwidth, has_downtime_limit, has_cpu_throttle_initial, has_cpu_throttle_increment;
    bool has_multifd_channels, has_multifd_compression;
    bool has_direct_io, direct_io;    /* O_DIRECT on a "file:" migration (with mapped-ram) */
    uint64_t max_bandwidth;       /* bytes/s */
    uint64_t downtime_limit;      /* ms */
    int cpu_throttle_initial, cpu_throttle_increment;   /* percent */
    int multifd_channels;
    enum qmon_multifd_compression multifd_compression;
    const char *tls_creds;        /* NULL: unchanged; "": TLS off; else an object-add id */
    const char *tls_hostname;     /* NULL: unchanged */
};
int qmon_migrate_set_parameters(qmp_t *q, struct qmon_owner *o, const struct qmon_migrate_params *p,
                                int timeout_ms, qmon_done_fn cb, void *arg);

/* ---- block devices, jobs, NBD (monitor-block.c) -------------------------- */

enum qmon_blockdev_driver { QMON_BLOCKDEV_FILE, QMON_BLOCKDEV_QCOW2, QMON_BLOCKDEV_NBD };
struct qmon_blockdev {
    enum qmon_blockdev_driver driver;
    const char *node_name;
    bool discard_unmap;               /* discard=unmap: pass the guest's discards down */
    const char *filename;             /* file: the path */
    const char *file;                 /* qcow2: node-name of its file node */
    bool no_backing;                  /* qcow2: "backing": null (a snapshot overlay attaches it) */
    const char *host;                 /* nbd: inet server */
    int port;
    const char *export_name;          /* nbd: export (NULL: the default) */
    const char *tls_creds, *tls_hostname;   /* nbd: NULL for none */
};
int qmon_blockdev_add(qmp_t *q, struct qmon_owner *o, const struct qmon_blockdev *b, int timeout_ms,
                      qmon_done_fn cb, void *arg);
int qmon_blockdev_del(qmp_t *q, struct qmon_owner *o, const char *node_name, int timeout_ms, qmon_done_fn cb,
                      void *arg);

enum qmon_mirror_sync { QMON_SYNC_FULL, QMON_SYNC_TOP, QMON_SYNC_NONE };
struct qmon_mirror {
    const char *job_id;
    const char *device;               /* the source node (or device) */
    const char *target;               /* target node-name */
    enum qmon_mirror_sync sync;
    bool write_blocking;              /* copy-mode write-blocking: guest writes reach both sides */
    bool has_auto_finalize, auto_finalize;
    bool has_auto_dismiss, auto_dismiss;
    int64_t speed;                    /* bytes/s; 0: unlimited (not sent) */
};
int qmon_blockdev_mirror(qmp_t *q, struct qmon_owner *o, const struct qmon_mirror *m, int timeout_ms,
                         qmon_done_fn cb, void *arg);
int qmon_block_job_cancel(qmp_t *q, struct qmon_owner *o, const char *job, bool force, int timeout_ms,
                          qmon_done_fn cb, void *arg);
int qmon_block_job_complete(qmp_t *q, struct qmon_owner *o, const char *job, int timeout_ms, qmon_done_fn cb,
                            void *arg);
int qmon_block_job_set_speed(qmp_t *q, struct qmon_owner *o, const char *job, int64_t speed, int timeout_ms,
                             qmon_done_fn cb, void *arg);

/* A point-in-time copy of several disks: one `transaction` of
 * blockdev-backup sync=full actions with completion-mode grouped (one disk
 * failing cancels them all).  Jobs are created with auto-dismiss off, so a
 * finished job stays listed as "concluded" with its error until
 * qmon_block_job_dismiss. */
struct qmon_backup {
    const char *job_id;
    const char *device;               /* the source node (the disk's current top) */
    const char *target;               /* target node-name (a fresh qcow2 node) */
    int64_t speed;                    /* bytes/s; 0: unlimited (not sent) */
};
int qmon_backup_transaction(qmp_t *q, struct qmon_owner *o, const struct qmon_backup *b, size_t n,
                            int timeout_ms, qmon_done_fn cb, void *arg);
int qmon_block_job_dismiss(qmp_t *q, struct qmon_owner *o, const char *job, int timeout_ms, qmon_done_fn cb,
                           void *arg);

struct qmon_block_job {
    const char *device;               /* the job id */
    const char *type;                 /* "mirror", ... */
    const char *status;               /* "running", "ready", "concluded", ... ("" if absent) */
    uint64_t len, offset, speed;
    bool ready, busy, paused;
    const char *error;                /* NULL unless the job failed */
    json_t *raw;
};
typedef void (*qmon_block_jobs_fn)(void *arg, const struct qmon_block_job *jobs, size_t n,
                                   const qmp_error_t *err);
int qmon_query_block_jobs(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_block_jobs_fn cb, void *arg);
/* Its reply parser alone (see qmon_parse_migrate_reply): *jobs is calloc'ed
 * (NULL if none; the caller frees it, also after an error). */
int qmon_parse_block_jobs_reply(json_t *ret, struct qmon_block_job **jobs, size_t *n, char *err, size_t errlen);

/* A block device and the node it uses now: ask QEMU, do not assume (a pivot
 * or a restart changes it). */
struct qmon_block_device {
    const char *device;               /* "" for -blockdev/-device disks */
    const char *qdev;                 /* "/machine/peripheral/vda-dev/virtio-backend" or NULL */
    bool inserted;                    /* a medium: the fields below are set */
    const char *node_name;            /* the top node (NULL if QEMU gave none) */
    const char *file;                 /* the top node's filename */
    const char *drv;                  /* its driver: "qcow2", "raw", ... */
    bool ro;
    json_t *raw;
};
typedef void (*qmon_block_fn)(void *arg, const struct qmon_block_device *devs, size_t n, const qmp_error_t *err);
int qmon_query_block(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_block_fn cb, void *arg);
/* Its reply parser alone, as qmon_parse_block_jobs_reply. */
int qmon_parse_block_reply(json_t *ret, struct qmon_block_device **devs, size_t *n, char *err, size_t errlen);
/* The device whose qdev path has the component qdev_id ("vda-dev"), or NULL. */
const struct qmon_block_device *qmon_block_by_qdev(const struct qmon_block_device *devs, size_t n,
                                                   const char *qdev_id);

/* One transaction of blockdev-snapshot actions: every node gets its
 * overlay (added with no_backing) at the same instant, or none does. */
struct qmon_snapshot {
    const char *node;                 /* the current top node of a disk */
    const char *overlay;              /* the new qcow2 node on top of it */
};
int qmon_blockdev_snapshot(qmp_t *q, struct qmon_owner *o, const struct qmon_snapshot *s, size_t n,
                           int timeout_ms, qmon_done_fn cb, void *arg);

/* block-commit by node names.  top_node == device's top: an active commit
 * (READY, then block-job-complete pivots to base_node); otherwise an
 * intermediate one (backing_file rewritten into top's overlay, relative). */
struct qmon_commit {
    const char *job_id;
    const char *device;               /* the disk's top node */
    const char *top_node, *base_node;
    const char *backing_file;         /* NULL: not sent (refused for an active commit) */
    bool has_auto_finalize, auto_finalize;
    int64_t speed;                    /* bytes/s; 0: unlimited (not sent) */
};
int qmon_block_commit(qmp_t *q, struct qmon_owner *o, const struct qmon_commit *c, int timeout_ms,
                      qmon_done_fn cb, void *arg);
/* A job in status "pending" (auto-finalize off) applies its graph change. */
int qmon_job_finalize(qmp_t *q, struct qmon_owner *o, const char *id, int timeout_ms, qmon_done_fn cb,
                      void *arg);

/* query-named-block-nodes (flat): every node, with the image file it reads.
 * image is the path even when QEMU reports a json: pseudo-filename (an
 * overlay whose backing was attached later), NULL if none can be found. */
struct qmon_named_node {
    const char *node_name;
    const char *drv;                  /* "qcow2", "file", ... */
    const char *image;                /* the file of this node's image */
    const char *backing_file;         /* the backing's image file (json: names resolved too), or NULL */
    json_t *raw;
};
typedef void (*qmon_named_nodes_fn)(void *arg, const struct qmon_named_node *nodes, size_t n,
                                    const qmp_error_t *err);
int qmon_query_named_block_nodes(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_named_nodes_fn cb,
                                 void *arg);
/* Its reply parser alone, as qmon_parse_block_jobs_reply. */
int qmon_parse_named_nodes_reply(json_t *ret, struct qmon_named_node **nodes, size_t *n, char *err,
                                 size_t errlen);

/* NBD server on host:port (inet); tls_creds NULL for plain NBD. */
int qmon_nbd_server_start(qmp_t *q, struct qmon_owner *o, const char *host, int port, const char *tls_creds,
                          int timeout_ms, qmon_done_fn cb, void *arg);
int qmon_nbd_server_stop(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_done_fn cb, void *arg);

/* block-export-add of type nbd (nbd-server-add is deprecated). */
struct qmon_nbd_export {
    const char *id;                   /* the export's id */
    const char *node_name;            /* what it serves */
    const char *name;                 /* NBD export name (NULL: node_name) */
    bool writable;
};
int qmon_block_export_add(qmp_t *q, struct qmon_owner *o, const struct qmon_nbd_export *e, int timeout_ms,
                          qmon_done_fn cb, void *arg);
#endif
