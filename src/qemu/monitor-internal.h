/* Shared plumbing of qemu/monitor*.c: sending one command with an owner
 * reference, and reading QEMU's replies defensively.  Not for callers
 * outside src/qemu/monitor*.c. */
#ifndef VMOVE_QEMU_MONITOR_INTERNAL_H
#define VMOVE_QEMU_MONITOR_INTERNAL_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "qemu/monitor.h"
#include "qemu/qmp.h"

/* A typed callback, stored as this exempt type and cast back by its deliver
 * function (calling it through the wrong type would be undefined). */
typedef void (*qmon_any_fn)(void);

struct qmon_call;
/* Parses ret (on success) and calls c->cb with the typed result or err. */
typedef void (*qmon_deliver_fn)(const struct qmon_call *c, json_t *ret, const qmp_error_t *err);

struct qmon_call {
    struct qmon_owner *owner;
    const char *command;
    qmon_deliver_fn deliver;
    qmon_any_fn cb;
    void *arg;
};

struct qmon_cmd {
    const char *command;
    json_t *args;                 /* stolen; NULL for none */
    int fd;                       /* passed with SCM_RIGHTS, or -1 */
    bool oob;
    int timeout_ms;
};

/* Sends cmd; cb NULL: fire and forget.  The qmon_* contract of monitor.h. */
int qmon_send(qmp_t *q, struct qmon_owner *o, const struct qmon_cmd *cmd, qmon_deliver_fn deliver, qmon_any_fn cb,
              void *arg);
/* A command without a result: cb is a qmon_done_fn.  args NULL means
 * json_pack refused them (a NULL string): -1, nothing sent. */
int qmon_send_done(qmp_t *q, struct qmon_owner *o, const char *command, json_t *args, int timeout_ms,
                   qmon_done_fn cb, void *arg);
/* The same, sent out of band (exec-oob; args NULL: none): for commands
 * QEMU runs in its monitor thread even while its main loop is blocked. */
int qmon_send_done_oob(qmp_t *q, struct qmon_owner *o, const char *command, json_t *args, int timeout_ms,
                       qmon_done_fn cb, void *arg);
/* The same for a command without arguments. */
int qmon_send_simple(qmp_t *q, struct qmon_owner *o, const char *command, int timeout_ms, qmon_done_fn cb,
                     void *arg);

/* Reading a reply: the first problem is kept, later reads return zeroes. */
struct qmon_parse {
    const char *command;
    char desc[256];               /* "" while the reply is fine */
};
bool qmon_parse_ok(const struct qmon_parse *p);
/* err as a QMP_ERR_PROTOCOL error naming the command and the field. */
qmp_error_t qmon_parse_error(const struct qmon_parse *p);
/* where names obj in messages ("return", "return.ram", "return[2]"). */
bool qmon_object(struct qmon_parse *p, json_t *obj, const char *where);
int64_t qmon_int(struct qmon_parse *p, json_t *obj, const char *where, const char *key, bool required);
uint64_t qmon_uint(struct qmon_parse *p, json_t *obj, const char *where, const char *key, bool required);
double qmon_num(struct qmon_parse *p, json_t *obj, const char *where, const char *key, bool required);
bool qmon_bool(struct qmon_parse *p, json_t *obj, const char *where, const char *key, bool required);
const char *qmon_str(struct qmon_parse *p, json_t *obj, const char *where, const char *key, bool required);
#endif
