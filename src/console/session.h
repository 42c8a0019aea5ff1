/* Console sessions (docs/CONSOLE.md, "Login"): a user's signed one-time
 * login (`vmove ui login`, a token of src/common/token.h with op
 * "console.login" for this host) becomes a session: a random id in a
 * cookie (__Host-vmove: Secure, HttpOnly, SameSite=Strict, Max-Age) and a
 * random CSRF token that every state-changing request must echo in the
 * X-CSRF-Token header.  Sessions are kept in memory only: a restart of
 * vmoved logs everyone out, which is safe.  The session's principal is the
 * token's user, so the host's ACL gives it exactly that user's rights. */
#ifndef VMOVE_CONSOLE_SESSION_H
#define VMOVE_CONSOLE_SESSION_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/acl.h"

#define SESSION_LIFETIME_S 3600
#define SESSION_MAX 256
#define SESSION_COOKIE "__Host-vmove"

struct agent;

struct session {
    struct session *next;
    char id[65];                 /* 32 random bytes, hex */
    char csrf[65];
    struct principal who;
    uint64_t expires_ms;         /* wall clock */
};

/* The session of a Cookie header (NULL: none, unknown or expired). */
struct session *session_from_cookie(struct session **list, const char *cookie_header);
/* Checks a login token (its text from the URL) and opens a session; NULL
 * with why (for the user and the audit log) if refused. */
struct session *session_login(struct agent *a, struct session **list, const char *token_url, const char *peer,
                              char *why, size_t whylen);
bool session_csrf_ok(const struct session *s, const char *header);
void session_end(struct session **list, struct session *s);
void session_expire(struct session **list);
void session_free_all(struct session **list);
#endif
