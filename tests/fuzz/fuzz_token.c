/* libFuzzer target: delegation tokens (common/token.h).  The input is a JSON
 * object, checked twice: as a payload by token_check_payload (fixed clock,
 * signer and presenter), and as a whole token by token_verify against a CA
 * file that does not exist, which exercises the token's JSON shape and the
 * certificate parsing before the crypto refuses it.  Every refusal must say
 * why.  The raw input is also read as a console login link's word
 * (token_from_url): what it accepts must come back the same through
 * token_to_url. */
#include <stdlib.h>
#include <string.h>

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

    char *word = malloc(size + 1);
    memcpy(word, data, size);
    word[size] = 0;
    json_t *t = token_from_url(word);
    if (t) {
        char *again = token_to_url(t);
        json_t *t2 = again ? token_from_url(again) : NULL;
        if (!t2 || !json_equal(t, t2))
            abort();                    /* the round trip keeps the token */
        json_decref(t2);
        free(again);
        json_decref(t);
    }
    free(word);
    return 0;
}
