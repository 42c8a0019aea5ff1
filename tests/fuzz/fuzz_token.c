/* libFuzzer target: delegation tokens (common/token.h).  The input is a JSON
 * object, checked twice: as a payload by token_check_payload (fixed clock,
 * signer and presenter), and as a whole token by token_verify against a CA
 * file that does not exist, which exercises the token's JSON shape and the
 * certificate parsing before the crypto refuses it.  Every refusal must say
 * why. */
#include <stdlib.h>

#include "common/token.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    char err[512] = "";
    if (token_check_payload(j, "alice", "h1", 1100, err, sizeof err) < 0 && !err[0])
        abort();
    err[0] = 0;
    json_t *p = token_verify(j, "/nonexistent/ca.crt", "h1", err, sizeof err);
    if (p)
        abort();                        /* no CA: nothing can verify */
    if (!err[0])
        abort();
    json_decref(j);
    return 0;
}
