/* Move tokens: the user on whose behalf a source host sends a VM is proven
 * by the user's own signature, not by the source's word.
 *
 * The CLI signs, with the user's key, a token (src/common/token.h) for every
 * move a certificate user submits: {op: "move", vm, src, dst, via = src,
 * user, iat, exp, nonce}.  The source checks it when the move is submitted
 * and forwards it in migrate.reserve, .probe and .prepare; the destination
 * checks it at the first of those calls (signature, via = the calling host's
 * verified certificate, src = that host, dst = itself, lifetime, nonce) and
 * binds it to the source's job: later calls of that job need no fresh token
 * (a move may wait in the destination's queue for longer than a token
 * lives), and the binding never serves another VM, host or job.
 *
 * A move with no token (root on the source's local socket, a drain, a
 * cluster hand-off) runs as the source host: the destination checks and
 * audits host:SRC only, never a user. */
#ifndef VMOVE_MOVE_TOKEN_H
#define VMOVE_MOVE_TOKEN_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct agent;
struct api_req;

/* At the source, vm.move: a certificate user's move must carry
 * params.move_token for this VM from this host to `to`, signed by that user.
 * true: fine (*token: a new reference, or NULL for a move by local root);
 * false: answered (denied). */
bool move_token_check_submit(struct api_req *r, const char *vm, const char *to, json_t **token);

/* At the destination, a host-to-host call of an incoming move (job: the
 * source's job id; take: the last call of the move, which ends the binding).
 * Fills user with "user:NAME" when a user's token proves it, "" for a move by
 * the source host itself.  false: answered (denied, and audited). */
bool move_token_authorize(struct api_req *r, const char *vm, long long job, bool take, char *user, size_t len);

/* At the destination, migrate.check (a pre-flight check, which changes
 * nothing): the user of params.check_token, a token the user signed with op
 * "move-check" (or the move's own token, op "move", when a refused move is
 * checked) for this VM from the calling host to this one.  1 with user
 * "user:NAME"; 0: no token (the host's own move); -1 with why.  The nonce
 * is not spent: replaying a check token only repeats a read. */
int move_token_check_user(struct api_req *r, const char *vm, char *user, size_t len, char *why, size_t whylen);

/* The source gave its place back: the binding of (source, job) goes. */
void move_token_forget(struct agent *a, const char *source, long long job);
/* Daemon shutdown. */
void move_token_free_all(struct agent *a);
#endif
