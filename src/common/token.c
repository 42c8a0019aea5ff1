#include "common/token.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/pki.h"
#include "common/util.h"

static char *b64(const unsigned char *data, size_t len)
{
    char *out = xmalloc(4 * ((len + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

static unsigned char *unb64(const char *s, size_t *len)
{
    size_t n = strlen(s);
    unsigned char *out = xmalloc(n + 1);
    int r = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
    if (r < 0) {
        free(out);
        return NULL;
    }
    /* EVP_DecodeBlock counts the padding as data. */
    while (n && s[n - 1] == '=') {
        n--;
        r--;
    }
    *len = (size_t)r;
    return out;
}

json_t *token_create(const char *dir, const char *op, const char *vm, const char *src, const char *dst,
                     const char *via, char *err, size_t errlen)
{
    char *keyp = xasprintf("%s/user.key", dir), *crtp = xasprintf("%s/user.crt", dir), *pem = NULL;
    json_t *out = NULL;
    EVP_PKEY *key = NULL;
    X509 *crt = NULL;
    FILE *f = fopen(keyp, "r");
    if (f) {
        key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
    }
    f = fopen(crtp, "r");
    if (f) {
        crt = PEM_read_X509(f, NULL, NULL, NULL);
        fclose(f);
    }
    if (!key || !crt || read_file(crtp, &pem, NULL) < 0) {
        snprintf(err, errlen, "a delegation token is signed with your user key: cannot read %s and %s "
                              "(give --identity DIR, see `vmove pki issue-user`)", keyp, crtp);
        goto out;
    }
    char user[64] = "";
    X509_NAME_get_text_by_NID(X509_get_subject_name(crt), NID_commonName, user, sizeof user);
    unsigned char nonce[16];
    RAND_bytes(nonce, sizeof nonce);
    char *nonce64 = b64(nonce, sizeof nonce);
    time_t now = time(NULL);
    json_t *payload = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:s}", "op", op, "vm", vm, "src", src,
                                "dst", dst, "via", via, "user", user, "iat", (json_int_t)now, "exp",
                                (json_int_t)(now + TOKEN_LIFETIME_S), "nonce", nonce64);
    free(nonce64);
    char *text = json_dumps(payload, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(payload);
    unsigned char sig[64];
    size_t siglen = sizeof sig;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) != 1 ||
        EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)text, strlen(text)) != 1)
        snprintf(err, errlen, "cannot sign the delegation token: the user key must be Ed25519");
    else {
        char *sig64 = b64(sig, siglen);
        out = json_pack("{s:s, s:s, s:s}", "payload", text, "sig", sig64, "cert", pem);
        free(sig64);
    }
    EVP_MD_CTX_free(ctx);
    free(text);
out:
    EVP_PKEY_free(key);
    X509_free(crt);
    free(pem);
    free(keyp);
    free(crtp);
    return out;
}

bool token_identity_is_user(const char *dir)
{
    char *crtp = xasprintf("%s/user.crt", dir), ou[16] = "";
    FILE *f = fopen(crtp, "r");
    free(crtp);
    X509 *crt = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    if (crt)
        X509_NAME_get_text_by_NID(X509_get_subject_name(crt), NID_organizationalUnitName, ou, sizeof ou);
    X509_free(crt);
    return !strcmp(ou, "user");
}

static bool str_field(const json_t *payload, const char *key)
{
    const char *v = json_string_value(json_object_get(payload, key));
    return v && *v;
}

int token_check_payload(const json_t *payload, const char *signer, const char *presented_by, long long now,
                        char *err, size_t errlen)
{
    static const char *const required[] = {"op", "vm", "src", "dst", "via", "user", "nonce"};
    for (size_t i = 0; i < sizeof required / sizeof *required; i++)
        if (!str_field(payload, required[i])) {
            snprintf(err, errlen, "the delegation token has no \"%s\" (make a new one with this version's "
                                  "`vmove token create`)", required[i]);
            return -1;
        }
    json_t *iat = json_object_get(payload, "iat"), *exp = json_object_get(payload, "exp");
    if (!json_is_integer(iat) || !json_is_integer(exp)) {
        snprintf(err, errlen, "the delegation token has no issue time or expiry");
        return -1;
    }
    size_t nonce_len = strlen(json_string_value(json_object_get(payload, "nonce")));
    if (nonce_len < 16 || nonce_len > 128) {
        snprintf(err, errlen, "the delegation token's nonce is too short or too long");
        return -1;
    }
    if (strcmp(json_string_value(json_object_get(payload, "user")), signer)) {
        snprintf(err, errlen, "the token names a user other than its signer");
        return -1;
    }
    long long i = json_integer_value(iat), e = json_integer_value(exp);
    /* Times far from any clock (and from `now`) are refused first: the
     * differences below overflowed (undefined) for extreme values. */
    const long long far = 1LL << 40;
    if (i < -far || i > far || e < -far || e > far) {
        snprintf(err, errlen, "the delegation token's issue time or expiry is not a plausible time");
        return -1;
    }
    if (e < i || e - i > TOKEN_LIFETIME_S) {
        snprintf(err, errlen, "the delegation token's lifetime (%lld s) is over the %d s allowed", e - i,
                 TOKEN_LIFETIME_S);
        return -1;
    }
    if (i > now + TOKEN_CLOCK_SKEW_S) {
        snprintf(err, errlen, "the delegation token was issued %lld s in the future (check the clocks)", i - now);
        return -1;
    }
    if (e < now) {
        snprintf(err, errlen, "the delegation token expired %lld s ago", now - e);
        return -1;
    }
    const char *via = json_string_value(json_object_get(payload, "via"));
    if (!presented_by || strcmp(via, presented_by)) {
        snprintf(err, errlen, "the delegation token may be presented by host %s, not by %s", via,
                 presented_by ? presented_by : "?");
        return -1;
    }
    return 0;
}

static int verify_chain(X509 *crt, const char *ca_path, char *err, size_t errlen)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok = X509_STORE_load_file(store, ca_path) == 1 && X509_STORE_CTX_init(ctx, store, crt, NULL) == 1 &&
             X509_verify_cert(ctx) == 1;
    if (!ok)
        snprintf(err, errlen, "the token's certificate is not valid here: %s",
                 X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return ok ? 0 : -1;
}

json_t *token_verify(json_t *token, const char *ca_path, const char *presented_by, char *err, size_t errlen)
{
    const char *text = json_string_value(json_object_get(token, "payload"));
    const char *sig64 = json_string_value(json_object_get(token, "sig"));
    const char *pem = json_string_value(json_object_get(token, "cert"));
    if (!text || !sig64 || !pem) {
        snprintf(err, errlen, "malformed delegation token");
        return NULL;
    }
    json_t *payload = NULL;
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *crt = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    size_t siglen = 0;
    unsigned char *sig = unb64(sig64, &siglen);
    char user[64] = "", ou[16] = "";
    if (!crt || !sig) {
        snprintf(err, errlen, "malformed delegation token");
        goto out;
    }
    if (verify_chain(crt, ca_path, err, errlen) < 0)
        goto out;
    X509_NAME_get_text_by_NID(X509_get_subject_name(crt), NID_commonName, user, sizeof user);
    X509_NAME_get_text_by_NID(X509_get_subject_name(crt), NID_organizationalUnitName, ou, sizeof ou);
    if (strcmp(ou, "user")) {
        snprintf(err, errlen, "the token is not signed by a user certificate");
        goto out;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int good = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, X509_get0_pubkey(crt)) == 1 &&
               EVP_DigestVerify(ctx, sig, siglen, (const unsigned char *)text, strlen(text)) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    if (!good) {
        snprintf(err, errlen, "the delegation token's signature does not match (tampered with?)");
        goto out;
    }
    payload = json_loads(text, 0, NULL);
    if (!json_is_object(payload)) {
        snprintf(err, errlen, "malformed delegation token");
        json_decref(payload);
        payload = NULL;
    } else if (token_check_payload(payload, user, presented_by, (long long)time(NULL), err, errlen) < 0) {
        json_decref(payload);
        payload = NULL;
    }
out:
    X509_free(crt);
    free(sig);
    return payload;
}

/* base64url without padding (RFC 4648 section 5): safe in a URL as it is. */
char *token_to_url(const json_t *token)
{
    char *text = json_dumps(token, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        return NULL;
    char *s = b64((const unsigned char *)text, strlen(text));
    free(text);
    size_t n = strlen(s);
    while (n && s[n - 1] == '=')
        s[--n] = 0;
    for (char *p = s; *p; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
    return s;
}

json_t *token_from_url(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 16384)
        return NULL;
    char *std = xmalloc(n + 4);
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!(ch >= 'A' && ch <= 'Z') && !(ch >= 'a' && ch <= 'z') && !(ch >= '0' && ch <= '9') && ch != '-' &&
            ch != '_') {
            free(std);
            return NULL;
        }
        std[i] = ch == '-' ? '+' : ch == '_' ? '/' : ch;
    }
    while (n % 4)
        std[n++] = '=';
    std[n] = 0;
    size_t len;
    unsigned char *raw = unb64(std, &len);
    free(std);
    if (!raw)
        return NULL;
    json_t *t = json_loadb((const char *)raw, len, JSON_REJECT_DUPLICATES, NULL);
    free(raw);
    if (t && !json_is_object(t)) {
        json_decref(t);
        return NULL;
    }
    return t;
}
