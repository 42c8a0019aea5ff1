/* Delegation tokens: a user lets one host act for them at another host, for
 * one operation on one VM between two named hosts, for a short time, once.
 *
 * A token is {"payload": "<canonical JSON>", "sig": "<base64 Ed25519>",
 * "cert": "<the user's certificate, PEM>"}.  The payload string is signed as
 * sent, so no re-serialisation can change what was signed.  Payload fields:
 * op, vm, src, dst, via (the host allowed to present it), user, iat, exp
 * (seconds), nonce.  All are required: a token without a nonce could be
 * replayed, one without an issue time or with a long life could be kept for
 * later, and one not bound to its relaying host could be used by any host
 * that saw it. */
#ifndef VMOVE_TOKEN_H
#define VMOVE_TOKEN_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define TOKEN_LIFETIME_S 300
/* Clocks of the user's machine and the hosts may disagree by this much. */
#define TOKEN_CLOCK_SKEW_S 60

/* Signs with the user's Ed25519 key (identity dir: user.key, user.crt). */
json_t *token_create(const char *identity_dir, const char *op, const char *vm, const char *src, const char *dst,
                     const char *via, char *err, size_t errlen);
/* Whether the identity dir holds a user certificate (OU=user): only a user
 * signs tokens (a host's identity used by the CLI acts as that host). */
bool token_identity_is_user(const char *identity_dir);
/* Checks the certificate against ca_path (chain, validity, OU=user), the
 * signature, every payload field's presence and type, the nonce, the issue
 * time and lifetime (at most TOKEN_LIFETIME_S, give or take the clock skew)
 * and that the token is presented by its `via` host.  Returns the payload
 * (caller frees) or NULL. */
json_t *token_verify(json_t *token, const char *ca_path, const char *presented_by, char *err, size_t errlen);
/* The payload's checks alone (unit tests and token_verify): 0 or -1. */
int token_check_payload(const json_t *payload, const char *signer, const char *presented_by, long long now,
                        char *err, size_t errlen);
/* A token as one URL-safe word (base64url of its JSON, no padding), for the
 * console's one-time login URL (`vmove ui login`), and back (NULL if it is
 * not one).  Callers free / decref. */
char *token_to_url(const json_t *token);
json_t *token_from_url(const char *s);
#endif
