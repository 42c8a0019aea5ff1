/* Constrained delegation: a user connected to host A asks A to move a VM
 * from host B to host C.  A relays the request to B with a token the user
 * signed (src/common/token.h); B accepts it only if its own policy lists A as
 * allowed to act for users (resource-based: B decides, no central admin),
 * and only for what the token names: that operation, that VM, from B to C,
 * before it expires, once. */
#ifndef VMOVE_DELEGATE_H
#define VMOVE_DELEGATE_H
#include <stdbool.h>

struct agent;
struct api_req;

/* A request from a host carrying "delegation": check policy and token and,
 * if both allow it, make the request the user's.  false: answered (denied). */
bool delegate_accept(struct api_req *r);
/* vm.move whose "from" is another host: relay it there with the token, and
 * stream that host's job back to the caller. */
void delegate_relay(struct api_req *r);
/* Shutdown: every relay still under way is answered and freed. */
void delegate_free_all(struct agent *a);
/* vm.move-check with "from" naming another host: asks that host to check
 * the move for the user (with the user's delegation token, op
 * "migrate-check"), and answers its items, or its refusal as an item. */
void delegate_relay_check(struct api_req *r);
#endif
