/* Authorization: each host's ACL maps principals to rights.
 *
 * Principals are user:NAME, host:NAME and group:NAME; a group holds users or
 * hosts.  Root on the local socket acts as user:root with every right on its
 * own host (and only there: another host sees user:root like any user).
 * The ACL lives in STATE/acl.json, written atomically. */
#ifndef VMOVE_ACL_H
#define VMOVE_ACL_H
#include <jansson.h>
#include <stdbool.h>

#include <stddef.h>

struct agent;

/* Who is asking: taken from the verified certificate or SO_PEERCRED, never
 * from a message body. */
enum principal_kind { PRINCIPAL_LOCAL_ROOT, PRINCIPAL_USER, PRINCIPAL_HOST };

struct principal {
    enum principal_kind kind;
    char name[64];
};

/* "user:alice", "host:h1" (local root is "user:root"). */
const char *principal_describe(const struct principal *p, char *buf, size_t len);

enum right {
    RIGHT_VM_READ = 1u << 0,
    RIGHT_VM_MANAGE = 1u << 1,
    RIGHT_MIGRATE_OUT = 1u << 2,
    RIGHT_MIGRATE_IN = 1u << 3,
    RIGHT_STORAGE_MOVE = 1u << 4,
    RIGHT_HOST_ADMIN = 1u << 5,
};
#define RIGHTS_ALL 0x3fu

const char *right_name(unsigned right);
int right_parse(const char *s, unsigned *out);
/* "user:alice" etc.; -1 if malformed. */
int principal_parse(const char *s, char *kind, size_t kindlen, char *name, size_t namelen);

int acl_load(struct agent *a, char *err, size_t errlen);
void acl_free(struct agent *a);
/* Does this principal ("user:alice", "host:h1") hold the right here? */
bool acl_allows(struct agent *a, const char *principal, unsigned right);
bool acl_allows_who(struct agent *a, const struct principal *who, unsigned right);
/* "permission denied: user:alice lacks migrate.in on host h2" as an error
 * object (with a hint naming the grant that fixes it). */
bool acl_in_group(struct agent *a, const char *group, const char *principal);
json_t *acl_denial(struct agent *a, const char *principal, unsigned right);

/* Changes, persisted before they return.  rights: an array of valid right
 * names; principal, group and member already validated.  NULL or an error
 * (the ACL is then unchanged). */
json_t *acl_change(struct agent *a, const char *principal, json_t *rights, bool grant);
json_t *acl_group_change(struct agent *a, const char *group, const char *member, bool add);
/* {"grants": ..., "groups": ...} (new reference). */
json_t *acl_to_json(const struct agent *a);
#endif
