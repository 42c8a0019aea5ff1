/* Certificate authority and leaf issuing with the OpenSSL 3 EVP/X509 APIs.
 *
 * Everything is written as PEM: certificates as "CERTIFICATE", keys as
 * unencrypted PKCS#8 "PRIVATE KEY", which both OpenSSL (vmoved, vmove) and
 * GnuTLS (QEMU's tls-creds-x509 for migration) read. */
#include "common/pki.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/util.h"

#define CA_DAYS (10 * 365 + 3) /* ten years, leap days included */

/* A CA and leaf being built or loaded; freed together by pki_pair_free. */
struct pki_pair {
    X509 *cert;
    EVP_PKEY *key;
};

static void pki_pair_free(struct pki_pair *p)
{
    X509_free(p->cert);
    EVP_PKEY_free(p->key);
    p->cert = NULL;
    p->key = NULL;
}

__attribute__((format(printf, 3, 4)))
static void pki_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* The most specific OpenSSL reason for the last failure, for messages.
 * Drains the thread's error queue so later calls start clean. */
const char *pki_ossl_reason(void)
{
    unsigned long e, last = 0;
    while ((e = ERR_get_error()) != 0)
        last = e;
    const char *r = last ? ERR_reason_error_string(last) : NULL;
    return r ? r : "unknown OpenSSL error";
}

int pki_check_key_mode(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        pki_set_err(err, errlen, "private key %s: %s", path, strerror(errno));
        return -1;
    }
    /* A key that other users can read is no longer private: refuse rather
     * than silently authenticate with a possibly copied identity. */
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        pki_set_err(err, errlen,
                "private key %s is accessible by group/other (mode %04o): "
                "run `chmod 600 %s` (and consider re-issuing it)",
                path, (unsigned)(st.st_mode & 07777), path);
        return -1;
    }
    return 0;
}

/* ---- PEM files ---------------------------------------------------------- */

static X509 *load_cert(const char *path, char *err, size_t errlen)
{
    BIO *b = BIO_new_file(path, "r");
    if (!b) {
        ERR_clear_error();
        pki_set_err(err, errlen, "cannot open certificate %s: %s", path, strerror(errno));
        return NULL;
    }
    X509 *c = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!c)
        pki_set_err(err, errlen, "%s is not a PEM certificate: %s", path, pki_ossl_reason());
    return c;
}

EVP_PKEY *pki_load_key(const char *path, char *err, size_t errlen)
{
    if (pki_check_key_mode(path, err, errlen) < 0)
        return NULL;
    BIO *b = BIO_new_file(path, "r");
    if (!b) {
        ERR_clear_error();
        pki_set_err(err, errlen, "cannot open private key %s: %s", path, strerror(errno));
        return NULL;
    }
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!k)
        pki_set_err(err, errlen, "%s is not a PEM private key: %s", path, pki_ossl_reason());
    return k;
}

/* Serialise into a malloc'd buffer: either a certificate or a private key. */
static char *to_pem(X509 *cert, EVP_PKEY *key, size_t *len)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return NULL;
    int ok = cert ? PEM_write_bio_X509(b, cert)
                  : PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
    char *out = NULL;
    char *data;
    long n = BIO_get_mem_data(b, &data);
    if (ok && n > 0) {
        out = xmalloc((size_t)n + 1);
        memcpy(out, data, (size_t)n);
        out[n] = 0;
        *len = (size_t)n;
    }
    BIO_free(b);
    return out;
}

static int write_pem(const char *path, X509 *cert, EVP_PKEY *key, char *err, size_t errlen)
{
    size_t len = 0;
    char *pem = to_pem(cert, key, &len);
    if (!pem) {
        pki_set_err(err, errlen, "cannot encode %s: %s", path, pki_ossl_reason());
        return -1;
    }
    int r = write_file_atomic(path, pem, len, key ? 0600 : 0644);
    int saved = errno;
    OPENSSL_cleanse(pem, len);
    free(pem);
    if (r < 0) {
        pki_set_err(err, errlen, "cannot write %s: %s", path, strerror(saved));
        return -1;
    }
    return 0;
}

/* Like write_pem for a key, but fails with EEXIST instead of replacing an
 * existing file: link() of a fully written temp file is atomic and
 * exclusive, so two concurrent `pki init`s cannot both win. */
static int write_key_exclusive(const char *path, EVP_PKEY *key, char *err, size_t errlen)
{
    char *tmp = xasprintf("%s.new.%d", path, (int)getpid());
    int r = write_pem(tmp, NULL, key, err, errlen);
    if (r == 0 && link(tmp, path) < 0) {
        if (errno == EEXIST)
            pki_set_err(err, errlen, "CA key %s already exists: refusing to replace a CA", path);
        else
            pki_set_err(err, errlen, "cannot create %s: %s", path, strerror(errno));
        r = -1;
    }
    unlink(tmp);
    free(tmp);
    return r;
}

/* ---- building certificates --------------------------------------------- */

static EVP_PKEY *new_key(enum pki_role role)
{
    /* Users hold Ed25519 keys (small, deterministic signatures for
     * delegation tokens); the CA and hosts hold P-256, which GnuTLS in
     * QEMU supports for migration TLS on every distribution we target. */
    if (role == PKI_ROLE_USER)
        return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

static int set_random_serial(X509 *cert)
{
    unsigned char buf[16];
    if (RAND_bytes(buf, sizeof buf) != 1)
        return -1;
    buf[0] |= 0x01; /* never zero */
    BIGNUM *bn = BN_bin2bn(buf, sizeof buf, NULL);
    ASN1_INTEGER *serial = bn ? BN_to_ASN1_INTEGER(bn, NULL) : NULL;
    int ok = serial && X509_set_serialNumber(cert, serial);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    return ok ? 0 : -1;
}

static int add_name_entry(X509_NAME *n, const char *field, const char *value)
{
    return X509_NAME_add_entry_by_txt(n, field, MBSTRING_UTF8,
                                      (const unsigned char *)value, -1, -1, 0) ? 0 : -1;
}

/* O=vmove, [OU=ou,] CN=cn */
static X509_NAME *make_name(const char *ou, const char *cn)
{
    X509_NAME *n = X509_NAME_new();
    if (!n || add_name_entry(n, "O", "vmove") < 0 || (ou && add_name_entry(n, "OU", ou) < 0) ||
        add_name_entry(n, "CN", cn) < 0) {
        X509_NAME_free(n);
        return NULL;
    }
    return n;
}

/* Add one extension in openssl.cnf syntax ("critical,CA:TRUE"). ISSUER is
 * needed for authorityKeyIdentifier; for the self-signed CA it is CERT. */
static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* A certificate with everything but extensions and signature. */
static X509 *new_cert(X509_NAME *subject, X509_NAME *issuer, EVP_PKEY *pub, int days,
                      long not_before_offset_s)
{
    X509 *c = X509_new();
    if (!c)
        return NULL;
    int ok = X509_set_version(c, X509_VERSION_3) && set_random_serial(c) == 0 &&
             X509_set_subject_name(c, subject) && X509_set_issuer_name(c, issuer) &&
             X509_set_pubkey(c, pub) &&
             X509_time_adj_ex(X509_getm_notBefore(c), 0, not_before_offset_s, NULL) &&
             X509_time_adj_ex(X509_getm_notAfter(c), days, not_before_offset_s, NULL);
    if (!ok) {
        X509_free(c);
        return NULL;
    }
    return c;
}

static int add_ca_exts(X509 *c)
{
    return add_ext(c, c, NID_basic_constraints, "critical,CA:TRUE") == 0 &&
           add_ext(c, c, NID_key_usage, "critical,keyCertSign,cRLSign") == 0 &&
           add_ext(c, c, NID_subject_key_identifier, "hash") == 0 ? 0 : -1;
}

static int add_leaf_exts(X509 *c, X509 *ca, const char *name, enum pki_role role)
{
    int ok = add_ext(c, ca, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
             /* Not critical: QEMU's GnuTLS checks reject a *critical*
              * keyUsage lacking keyEncipherment, which an EC key must not
              * carry (RFC 5480); a non-critical one is merely advisory. */
             add_ext(c, ca, NID_key_usage, "digitalSignature") == 0 &&
             add_ext(c, ca, NID_subject_key_identifier, "hash") == 0 &&
             add_ext(c, ca, NID_authority_key_identifier, "keyid:always") == 0;
    if (ok && role == PKI_ROLE_HOST) {
        char *san = xasprintf("DNS:%s", name);
        ok = add_ext(c, ca, NID_ext_key_usage, "serverAuth,clientAuth") == 0 &&
             add_ext(c, ca, NID_subject_alt_name, san) == 0;
        free(san);
    } else if (ok) {
        ok = add_ext(c, ca, NID_ext_key_usage, "clientAuth") == 0;
    }
    return ok ? 0 : -1;
}

/* ---- CA ------------------------------------------------------------------ */

static int build_ca(const char *cn, struct pki_pair *ca, char *err, size_t errlen)
{
    ca->key = new_key(PKI_ROLE_HOST);
    char *full_cn = xasprintf("vmove CA %s", cn);
    X509_NAME *name = make_name(NULL, full_cn);
    free(full_cn);
    if (ca->key && name)
        ca->cert = new_cert(name, name, ca->key, CA_DAYS, 0);
    X509_NAME_free(name);
    if (!ca->cert || add_ca_exts(ca->cert) < 0 || !X509_sign(ca->cert, ca->key, EVP_sha256())) {
        pki_set_err(err, errlen, "cannot build the CA certificate: %s", pki_ossl_reason());
        pki_pair_free(ca);
        return -1;
    }
    return 0;
}

int pki_init_ca(const char *cadir, const char *cn, char *err, size_t errlen)
{
    if (!cn || !*cn || strlen(cn) > 48) {
        pki_set_err(err, errlen, "CA name must be 1..48 characters");
        return -1;
    }
    char *key_path = xasprintf("%s/ca.key", cadir);
    char *crt_path = xasprintf("%s/ca.crt", cadir);
    struct pki_pair ca = {0};
    int r = -1;
    if (path_exists(key_path)) {
        pki_set_err(err, errlen, "CA key %s already exists: refusing to replace a CA "
                "(every certificate it issued would stop working)", key_path);
        goto out;
    }
    if (mkdir_p(cadir, 0700) < 0 || chmod(cadir, 0700) < 0) {
        pki_set_err(err, errlen, "cannot create CA directory %s: %s", cadir, strerror(errno));
        goto out;
    }
    if (build_ca(cn, &ca, err, errlen) < 0)
        goto out;
    /* Key first and exclusively: it is what marks the directory as a CA. */
    if (write_key_exclusive(key_path, ca.key, err, errlen) < 0)
        goto out;
    if (write_pem(crt_path, ca.cert, NULL, err, errlen) < 0) {
        unlink(key_path);
        goto out;
    }
    r = 0;
out:
    pki_pair_free(&ca);
    free(key_path);
    free(crt_path);
    return r;
}

/* ---- leaves -------------------------------------------------------------- */

static int load_ca(const char *cadir, struct pki_pair *ca, char *err, size_t errlen)
{
    char *key_path = xasprintf("%s/ca.key", cadir);
    char *crt_path = xasprintf("%s/ca.crt", cadir);
    int r = -1;
    if (!path_exists(key_path)) {
        pki_set_err(err, errlen, "CA key %s not found: run `vmove pki init %s` first", key_path, cadir);
        goto out;
    }
    ca->key = pki_load_key(key_path, err, errlen);
    ca->cert = ca->key ? load_cert(crt_path, err, errlen) : NULL;
    if (!ca->cert)
        goto out;
    if (X509_check_private_key(ca->cert, ca->key) != 1) {
        ERR_clear_error();
        pki_set_err(err, errlen, "CA key %s does not match CA certificate %s: restore the "
                "matching pair from backup", key_path, crt_path);
        goto out;
    }
    r = 0;
out:
    if (r < 0)
        pki_pair_free(ca);
    free(key_path);
    free(crt_path);
    return r;
}

static int build_leaf(const struct pki_pair *ca, const char *name, enum pki_role role, int days,
                      long not_before_offset_s, struct pki_pair *leaf, char *err, size_t errlen)
{
    leaf->key = new_key(role);
    X509_NAME *subject = make_name(role == PKI_ROLE_HOST ? "host" : "user", name);
    if (leaf->key && subject)
        leaf->cert = new_cert(subject, X509_get_subject_name(ca->cert), leaf->key, days,
                              not_before_offset_s);
    X509_NAME_free(subject);
    if (!leaf->cert || add_leaf_exts(leaf->cert, ca->cert, name, role) < 0 ||
        !X509_sign(leaf->cert, ca->key, EVP_sha256())) {
        pki_set_err(err, errlen, "cannot build the certificate for %s: %s", name, pki_ossl_reason());
        pki_pair_free(leaf);
        return -1;
    }
    return 0;
}

/* ca.crt, then the key, then the certificate: a reader that finds the
 * certificate finds its key too. */
static int write_leaf(const char *outdir, const char *base, X509 *ca_cert,
                      const struct pki_pair *leaf, char *err, size_t errlen)
{
    char *ca_path = xasprintf("%s/ca.crt", outdir);
    char *key_path = xasprintf("%s/%s.key", outdir, base);
    char *crt_path = xasprintf("%s/%s.crt", outdir, base);
    int r = -1;
    if (write_pem(ca_path, ca_cert, NULL, err, errlen) == 0 &&
        write_pem(key_path, NULL, leaf->key, err, errlen) == 0 &&
        write_pem(crt_path, leaf->cert, NULL, err, errlen) == 0)
        r = 0;
    free(ca_path);
    free(key_path);
    free(crt_path);
    return r;
}

int pki_issue(const char *cadir, const char *name, enum pki_role role, const char *outdir,
              int days, long not_before_offset_s, char *err, size_t errlen)
{
    if (!name || !valid_name(name)) {
        pki_set_err(err, errlen, "invalid name '%s': use 1-63 of [A-Za-z0-9._-], starting "
                "with a letter or digit", name ? name : "");
        return -1;
    }
    if (role != PKI_ROLE_HOST && role != PKI_ROLE_USER) {
        pki_set_err(err, errlen, "invalid certificate role %d", (int)role);
        return -1;
    }
    /* user:root is root on a host's local socket; a certificate must not
     * be able to become that principal anywhere. */
    if (role == PKI_ROLE_USER && !strcmp(name, "root")) {
        pki_set_err(err, errlen, "the user name root is reserved for root on a host's local socket: pick another");
        return -1;
    }
    if (days <= 0) {
        pki_set_err(err, errlen, "certificate validity must be at least 1 day (got %d)", days);
        return -1;
    }
    struct pki_pair ca = {0}, leaf = {0};
    int r = -1;
    if (load_ca(cadir, &ca, err, errlen) < 0)
        return -1;
    if (mkdir_p(outdir, 0700) < 0) {
        pki_set_err(err, errlen, "cannot create %s: %s", outdir, strerror(errno));
        goto out;
    }
    if (build_leaf(&ca, name, role, days, not_before_offset_s, &leaf, err, errlen) < 0)
        goto out;
    r = write_leaf(outdir, role == PKI_ROLE_HOST ? "host" : "user", ca.cert, &leaf, err, errlen);
out:
    pki_pair_free(&leaf);
    pki_pair_free(&ca);
    return r;
}
