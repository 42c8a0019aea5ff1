/* The vmove wire protocol: newline-delimited JSON over a stream (the local
 * unix socket, or TLS between a CLI/peer and vmoved).
 *
 *   request  {"id": 7, "method": "vm.start", "params": {...}}
 *   event    {"id": 7, "event": "progress", "data": {...}}     (0..n, streamed)
 *   reply    {"id": 7, "result": {...}}
 *         or {"id": 7, "error": {"code": "not_found", "message": "...", "hint": "..."}}
 *
 * A request gets exactly one reply; events for it come before the reply.
 * Messages are limited to PROTO_MAX_MESSAGE bytes so that a broken or hostile
 * peer cannot make the daemon buffer without bound. */
#ifndef VMOVE_PROTO_H
#define VMOVE_PROTO_H
#include <jansson.h>
#include <stddef.h>

#define PROTO_MAX_MESSAGE (16u << 20)
#define PROTO_MAX_MESSAGE_TEXT "16 MiB"   /* the same, for messages */
#define VMOVE_DEFAULT_PORT 7070

/* Error codes (the "code" field).  Stable: scripts match on them. */
#define ERR_INVALID      "invalid_argument"
#define ERR_NOT_FOUND    "not_found"
#define ERR_EXISTS       "already_exists"
#define ERR_STATE        "wrong_state"
#define ERR_DENIED       "permission_denied"
#define ERR_UNKNOWN_CMD  "unknown_method"
#define ERR_QEMU         "qemu_error"
#define ERR_INTERNAL     "internal_error"
#define ERR_TIMEOUT      "timeout"
#define ERR_CANCELLED    "cancelled"
#define ERR_UNAVAILABLE  "unavailable"
#define ERR_ABORTED      "aborted"

/* Serialise one message as a single line (compact JSON + '\n').  Caller frees. */
char *proto_encode(const json_t *msg, size_t *len);
/* Build an error object {"code","message","hint"?}. */
json_t *proto_error(const char *code, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Defaults of a move's tuning (vm.move "tuning"), shared by vmoved and the
 * CLI's help so that the two cannot disagree. */
#define TUNING_DEFAULT_DOWNTIME_MS 50
#define TUNING_DEFAULT_MAX_DOWNTIME_MS 500
#define TUNING_DEFAULT_MAX_DURATION_S 600
#define TUNING_DEFAULT_CHANNELS 4
#define TUNING_DEFAULT_MAX_RECOVER_WAIT_S 300
/* How long a move waits for the destination to take it (unreachable, or no free slot) before it fails. */
#define TUNING_DEFAULT_MAX_WAIT_S 600
#endif
