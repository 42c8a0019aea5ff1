/* The audit log: every authorization decision, allowed or denied, as one
 * JSON line appended to STATE/audit.log (opened O_APPEND, never rewritten).
 * Denials are recorded up to a rate per principal (a principal with no
 * rights must not be able to fill the disk); a record says how many denials
 * before it were not recorded ("denials_not_recorded"). */
#ifndef VMOVE_AUDIT_H
#define VMOVE_AUDIT_H
#include <stdbool.h>

#include <jansson.h>

struct agent;

int audit_open(struct agent *a, char *err, unsigned long errlen);
void audit_close(struct agent *a);
/* The log moves to audit.log.1 when it reaches this size. */
#define AUDIT_MAX_BYTES (64L << 20)

/* who: "user:alice"; action: method or operation; vm may be NULL; from: peer
 * address or "local"; reason: why (for denials) or NULL. */
void audit_record(struct agent *a, const char *who, const char *action, const char *vm, const char *from,
                  bool allowed, const char *reason);

/* The newest `limit` records, oldest first (a new array). */
json_t *audit_read(const struct agent *a, long long limit);
#endif
