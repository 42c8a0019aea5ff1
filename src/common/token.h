/* Delegation tokens: a user lets one host act for them at another host, for
 * one operation on one VM between two named hosts, for a short time, once.
 *
 * A token is {"payload": "<canonical JSON>", "sig": "<base64 Ed25519>",
 * "cert": "<the user's certificate, PEM>"}.  The payload string is signed as
 * sent, so no re-serialisation can change what was signed.  Payload fields:
 * op, vm, src, dst, user, iat, exp (seconds), nonce. */
#ifndef VMOVE_TOKEN_H
#define VMOVE_TOKEN_H
#include <jansson.h>
#include <stddef.h>

#define TOKEN_LIFETIME_S 300

/* Signs with the user's Ed25519 key (identity dir: user.key, user.crt). */
json_t *token_create(const char *identity_dir, const char *op, const char *vm, const char *src, const char *dst,
                     char *err, size_t errlen);
/* Checks the certificate against ca_path (chain, validity, OU=user), the
 * signature, and expiry.  Returns the payload (caller frees) or NULL. */
json_t *token_verify(json_t *token, const char *ca_path, char *err, size_t errlen);
#endif
