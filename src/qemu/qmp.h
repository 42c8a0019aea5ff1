/* Asynchronous QMP (QEMU Machine Protocol) client on a libevent event_base.
 *
 * One qmp_t talks to one QEMU monitor socket.  Everything is non-blocking:
 * commands are queued and written when the socket is writable, replies are
 * matched to commands by a unique "id", and results arrive via callbacks.
 *
 * Callback guarantees:
 *  - A command accepted by qmp_command*() (return 0) gets its reply callback
 *    exactly once; never synchronously from inside qmp_command*().
 *  - on_state(true) fires once per connection after the greeting and
 *    qmp_capabilities succeeded; on_state(false, reason) fires once when that
 *    connection attempt ends (lost, closed, protocol error, connect or
 *    handshake failure), after all pending commands have been failed.
 *  - Any callback may call qmp_command, qmp_close or qmp_free on the same
 *    qmp_t; freeing is deferred until the dispatch unwinds.
 *
 * QEMU must run its monitor with pretty=off (the default): messages are framed
 * by newlines. */
#ifndef VMOVE_QMP_H
#define VMOVE_QMP_H
#include <jansson.h>
#include <stdbool.h>

struct event_base;
typedef struct qmp qmp_t;

enum qmp_err_kind {
    QMP_ERR_NONE = 0,
    QMP_ERR_QEMU,         /* QEMU answered with {"error": ...} */
    QMP_ERR_TIMEOUT,      /* no reply within the command's timeout */
    QMP_ERR_DISCONNECTED, /* connection closed/lost before the reply */
    QMP_ERR_PROTOCOL,     /* QEMU sent something we cannot understand */
};

typedef struct {
    enum qmp_err_kind kind;
    const char *cls;  /* QEMU error class (e.g. "GenericError") or NULL */
    const char *desc; /* human readable, never NULL */
} qmp_error_t;

/* ret is borrowed (valid during the call), NULL on error; err is NULL on success. */
typedef void (*qmp_reply_fn)(void *arg, json_t *ret, const qmp_error_t *err);
/* An asynchronous QMP event (e.g. "STOP", "MIGRATION", "SHUTDOWN"); data may be NULL. */
typedef void (*qmp_event_fn)(void *arg, const char *name, json_t *data);
/* ready=true once greeting + qmp_capabilities succeeded; ready=false once when
 * the connection is closed/lost (reason given). */
typedef void (*qmp_state_fn)(void *arg, bool ready, const char *reason);

/* on_event and on_state may be NULL. */
qmp_t *qmp_new(struct event_base *base, qmp_event_fn on_event, qmp_state_fn on_state, void *arg);

/* Connected stream socket (takes ownership, even on failure); starts the
 * handshake, bounded by the handshake timeout (default 10 s).  Allowed on a
 * new qmp_t or after the previous connection was closed.  0 or -1. */
int qmp_attach_fd(qmp_t *q, int fd);

/* Asynchronous connect, retrying while the socket file is absent or refuses
 * (QEMU is still starting).  timeout_ms (0 = unlimited) bounds connect plus
 * handshake; failure is reported via on_state(false, reason).  Returns -1
 * only for unusable arguments (path too long, connection already active). */
int qmp_connect_unix(qmp_t *q, const char *path, int timeout_ms);

/* Timeout for greeting + qmp_capabilities after qmp_attach_fd (0 = none). */
void qmp_set_handshake_timeout(qmp_t *q, int timeout_ms);

/* Send {"execute": execute, "arguments": args, "id": N}.  args is stolen
 * (even on failure) and must be an object or NULL.  timeout_ms 0 = none; on
 * expiry cb gets QMP_ERR_TIMEOUT and the connection stays open.  Commands
 * issued before the handshake completes are queued.  cb may be NULL.
 * Returns -1 (cb never called) if the client is closed or arguments are bad. */
int qmp_command(qmp_t *q, const char *execute, json_t *args, int timeout_ms,
                qmp_reply_fn cb, void *cb_arg);

/* Like qmp_command, but executed out of band ("exec-oob") when QEMU offered
 * it: it runs in QEMU's monitor thread even while the main loop is blocked,
 * and it goes ahead of queued commands.  Only for commands QEMU allows out of
 * band (yank, migrate-recover, ...); without OOB it is an ordinary command. */
int qmp_command_oob(qmp_t *q, const char *execute, json_t *args, int timeout_ms, qmp_reply_fn cb,
                    void *cb_arg);
bool qmp_oob_enabled(const qmp_t *q);

/* Like qmp_command, but fd is passed with SCM_RIGHTS along with the command
 * (for getfd / add-fd).  The caller keeps ownership of fd: it is duplicated. */
int qmp_command_fd(qmp_t *q, const char *execute, json_t *args, int fd, int timeout_ms,
                   qmp_reply_fn cb, void *cb_arg);

bool qmp_is_ready(const qmp_t *q);

/* Fails every pending command with QMP_ERR_DISCONNECTED, then
 * on_state(false, reason) once.  No-op if already closed. */
void qmp_close(qmp_t *q, const char *reason);

/* Like qmp_close, but without the state callback; then frees q (deferred if
 * called from inside one of q's callbacks).  NULL is ignored. */
void qmp_free(qmp_t *q);

const char *qmp_err_kind_name(enum qmp_err_kind kind);
#endif
