/* The audit log: every authorization decision, allowed or denied, as one
 * JSON line appended to STATE/audit.log (opened O_APPEND, never rewritten). */
#ifndef VMOVE_AUDIT_H
#define VMOVE_AUDIT_H
#include <stdbool.h>

#include "api/api.h"

struct agent;

int audit_open(struct agent *a, char *err, unsigned long errlen);
void audit_close(struct agent *a);
/* who: "user:alice"; action: method or operation; vm may be NULL; from: peer
 * address or "local"; reason: why (for denials) or NULL. */
void audit_record(struct agent *a, const char *who, const char *action, const char *vm, const char *from,
                  bool allowed, const char *reason);

extern const struct api_method api_audit_methods[];
#endif
