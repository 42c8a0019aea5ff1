/* Transitional untyped QMP calls over a qmon owner (see legacy_qmp.h). */
#include "migrate/legacy_qmp.h"

#include <stdlib.h>

#include "common/util.h"

struct legacy_call {
    struct qmon_owner *owner;
    const char *cmd;
    qmp_reply_fn cb;
    void *arg;
};

/* The owner may have died while the reply was on its way (or be ended by a
 * synchronous failure of qmp_close): then the reply is dropped. */
static void legacy_tramp(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct legacy_call *c = arg;
    struct qmon_owner *o = c->owner;
    if (qmon_owner_alive(o) && err && err->kind == QMP_ERR_TIMEOUT && o->on_timeout)
        o->on_timeout(o->obj, c->cmd);
    if (qmon_owner_alive(o))      /* on_timeout may have ended it */
        c->cb(c->arg, ret, err);
    free(c);
    qmon_owner_unref(o);
}

int migrate_legacy_qmp(qmp_t *q, struct qmon_owner *o, const char *cmd, json_t *args, int timeout_ms,
                       qmp_reply_fn cb, void *arg)
{
    if (!q) {
        json_decref(args);
        return -1;
    }
    if (!cb)
        return qmp_command(q, cmd, args, timeout_ms, NULL, NULL);
    struct legacy_call *c = xcalloc(1, sizeof *c);
    *c = (struct legacy_call){o, cmd, cb, arg};
    if (qmp_command(q, cmd, args, timeout_ms, legacy_tramp, c) < 0) {
        free(c);
        return -1;
    }
    qmon_owner_ref(o);
    return 0;
}
