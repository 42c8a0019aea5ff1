/* The pre-flight check of a live migration (`vmove move --check`, Hyper-V's
 * Compare-VM): every precondition of the move at once, on this (source)
 * host and, through the destination's migrate.check, on the destination,
 * as a list of items (vm/compat.h), each problem with the command that
 * fixes it and the host it runs on.  Nothing is changed, queued or
 * reserved anywhere. */
#ifndef VMOVE_MIGRATE_CHECK_H
#define VMOVE_MIGRATE_CHECK_H
#include <jansson.h>

struct agent;

struct migrate_check_req {
    const char *vm;
    const char *to;            /* a peer's name, or ADDR:PORT, as vm.move's */
    json_t *tuning;            /* vm.move's tuning (NULL: defaults) */
    const char *user;          /* "user:NAME" for a user's move; NULL: the host's own (local root) */
    json_t *check_token;       /* the user's token for the destination's check (op "move-check"), or NULL */
};

/* items: a new array, owned by the callee. */
typedef void (*migrate_check_fn)(void *arg, json_t *items);

/* Runs the check; done is called exactly once, possibly before this
 * returns (when the destination need not or cannot be asked). */
void migrate_check(struct agent *a, const struct migrate_check_req *q, migrate_check_fn done, void *arg);
#endif
