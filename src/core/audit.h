/* The audit log: every authorization decision, allowed or denied, as one
 * JSON line appended to STATE/audit.log (opened O_APPEND, never rewritten). */
#ifndef VMOVE_AUDIT_H
#define VMOVE_AUDIT_H
#include <stdbool.h>

#include <jansson.h>

struct agent;

int audit_open(struct agent *a, char *err, unsigned long errlen);
void audit_close(struct agent *a);
/* who: "user:alice"; action: method or operation; vm may be NULL; from: peer
 * address or "local"; reason: why (for denials) or NULL. */
void audit_record(struct agent *a, const char *who, const char *action, const char *vm, const char *from,
                  bool allowed, const char *reason);

/* The newest `limit` records, oldest first (a new array). */
json_t *audit_read(const struct agent *a, long long limit);
#endif
