/* Transitional: the untyped QMP calls left in src/migrate/ (src-mirror.c and
 * the NBD part of dst-prepare.c), until they move to the src/block/ layer.
 * Everything else in src/migrate/ uses the typed qmon_* of qemu/monitor.h.
 *
 * A thin shim over struct qmon_owner, with qmon_*'s contract: the reply
 * holds a reference on the owner and is dropped once the owner died; a
 * timeout calls the owner's on_timeout before the callback.  Delete this
 * file with its last caller. */
#ifndef VMOVE_MIGRATE_LEGACY_QMP_H
#define VMOVE_MIGRATE_LEGACY_QMP_H
#include <jansson.h>

#include "qemu/monitor.h"
#include "qemu/qmp.h"

/* q NULL or refused: -1 (args freed), cb never called.  cb NULL: fire and forget. */
int migrate_legacy_qmp(qmp_t *q, struct qmon_owner *o, const char *cmd, json_t *args, int timeout_ms,
                       qmp_reply_fn cb, void *arg);
#endif
