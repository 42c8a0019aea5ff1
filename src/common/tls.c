/* TLS contexts for vmoved and the CLI, peer identity and failure reasons.
 *
 * Policy: TLS 1.3 only, both sides present a certificate from the cluster
 * CA, nothing but that CA is trusted, no session resumption. */
#include "common/tls.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/util.h"

__attribute__((format(printf, 3, 4)))
static void tls_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Append to a NUL-terminated buffer, truncating silently. */
__attribute__((format(printf, 3, 4)))
static void appendf(char *buf, size_t len, const char *fmt, ...)
{
    size_t used = strnlen(buf, len);
    if (used + 1 >= len)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, len - used, fmt, ap);
    va_end(ap);
}


/* ---- contexts ------------------------------------------------------------ */

static EVP_PKEY *read_key(const char *path, char *err, size_t errlen)
{
    return pki_load_key(path, err, errlen);
}

/* Our own certificate and key; refuses a key that belongs to another
 * certificate, which otherwise only shows up as every handshake failing. */
static int load_identity(SSL_CTX *ctx, const char *cert_path, const char *key_path, char *err,
                         size_t errlen)
{
    EVP_PKEY *key = read_key(key_path, err, errlen);
    if (!key)
        return -1;
    int r = -1;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
        tls_set_err(err, errlen, "cannot load certificate %s: %s", cert_path, pki_ossl_reason());
    } else if (X509_check_private_key(SSL_CTX_get0_certificate(ctx), key) != 1) {
        ERR_clear_error();
        tls_set_err(err, errlen, "private key %s does not match certificate %s: re-issue both "
                "with `vmove pki issue-host` or `vmove pki issue-user`", key_path, cert_path);
    } else if (SSL_CTX_use_PrivateKey(ctx, key) != 1) {
        tls_set_err(err, errlen, "cannot use private key %s: %s", key_path, pki_ossl_reason());
    } else {
        r = 0;
    }
    EVP_PKEY_free(key);
    return r;
}

/* Trust exactly CA_PATH: no system store, so a certificate from a public CA
 * cannot get in. */
static int load_trust(SSL_CTX *ctx, const char *ca_path, char *err, size_t errlen)
{
    if (SSL_CTX_load_verify_locations(ctx, ca_path, NULL) != 1) {
        tls_set_err(err, errlen, "cannot load CA certificate %s: %s (is the host enrolled? "
                "copy ca.crt from the CA directory)", ca_path, pki_ossl_reason());
        return -1;
    }
    /* Strict RFC 5280 checks: our CA always issues conforming certs. */
    X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), X509_V_FLAG_X509_STRICT);
    return 0;
}

static SSL_CTX *new_ctx(const SSL_METHOD *method, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (!ctx) {
        tls_set_err(err, errlen, "cannot create TLS context: %s", pki_ossl_reason());
        return NULL;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION)) {
        tls_set_err(err, errlen, "this OpenSSL does not support TLS 1.3: %s", pki_ossl_reason());
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* Send only our own certificate, not the CA from the trust store: the
     * peer has ca.crt already, and a foreign CA then fails verification as
     * "unable to get local issuer certificate", which says what happened. */
    SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN);
    return ctx;
}

SSL_CTX *tls_server_ctx(const char *tlsdir, char *err, size_t errlen)
{
    char *ca = xasprintf("%s/ca.crt", tlsdir);
    char *crt = xasprintf("%s/host.crt", tlsdir);
    char *key = xasprintf("%s/host.key", tlsdir);
    SSL_CTX *ctx = new_ctx(TLS_server_method(), err, errlen);
    if (ctx && (load_trust(ctx, ca, err, errlen) < 0 ||
                load_identity(ctx, crt, key, err, errlen) < 0)) {
        SSL_CTX_free(ctx);
        ctx = NULL;
    }
    if (ctx) {
        /* Tell clients which CA we accept (helps them pick a certificate). */
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
        ERR_clear_error();
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        /* No resumption: every connection re-verifies the client
         * certificate, so an expired or replaced one is noticed at once. */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_num_tickets(ctx, 0);
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    }
    free(ca);
    free(crt);
    free(key);
    return ctx;
}

SSL_CTX *tls_client_ctx(const char *ca_path, const char *cert_path, const char *key_path,
                        char *err, size_t errlen)
{
    SSL_CTX *ctx = new_ctx(TLS_client_method(), err, errlen);
    if (ctx && (load_trust(ctx, ca_path, err, errlen) < 0 ||
                load_identity(ctx, cert_path, key_path, err, errlen) < 0)) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (ctx) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    return ctx;
}

int tls_client_expect_host(SSL *ssl, const char *name)
{
    if (!name || !valid_name(name))
        return -1;
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (SSL_set1_host(ssl, name) != 1)
        return -1;
    /* SNI is informational for vmoved, but keeps the ClientHello normal. */
    if (SSL_set_tlsext_host_name(ssl, name) != 1)
        return -1;
    return 0;
}

/* ---- identity ------------------------------------------------------------ */

/* Exactly one NID entry in NAME, as UTF-8 without embedded NULs. */
static int name_field(const X509_NAME *name, int nid, char *buf, size_t len)
{
    int i = X509_NAME_get_index_by_NID(name, nid, -1);
    if (i < 0 || X509_NAME_get_index_by_NID(name, nid, i) >= 0)
        return -1;
    ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, s);
    int r = -1;
    if (n > 0 && (size_t)n < len && !memchr(utf8, 0, (size_t)n)) {
        memcpy(buf, utf8, (size_t)n);
        buf[n] = 0;
        r = 0;
    }
    OPENSSL_free(utf8);
    return r;
}

int tls_peer_identity(SSL *ssl, struct tls_identity *out)
{
    X509 *cert = SSL_get0_peer_certificate(ssl);
    if (!cert || SSL_get_verify_result(ssl) != X509_V_OK)
        return -1;
    const X509_NAME *subj = X509_get_subject_name(cert);
    char org[16], ou[16], cn[sizeof out->name];
    if (name_field(subj, NID_organizationName, org, sizeof org) < 0 || strcmp(org, "vmove") ||
        name_field(subj, NID_organizationalUnitName, ou, sizeof ou) < 0 ||
        name_field(subj, NID_commonName, cn, sizeof cn) < 0 || !valid_name(cn))
        return -1;
    if (!strcmp(ou, "host"))
        out->role = PKI_ROLE_HOST;
    else if (!strcmp(ou, "user"))
        out->role = PKI_ROLE_USER;
    else
        return -1;
    memcpy(out->name, cn, sizeof out->name);
    return 0;
}

/* ---- failure reasons ----------------------------------------------------- */

static const char *verify_hint(long code, int is_server)
{
    switch (code) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
        return is_server ? "the peer's certificate is not signed by this host's CA"
                         : "the server's certificate is not signed by the CA this client "
                           "trusts";
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return "the peer's certificate has expired: issue it a new one with `vmove pki issue-host` or `issue-user`";
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return "the peer's certificate is not valid yet: check both machines' clocks";
    case X509_V_ERR_HOSTNAME_MISMATCH:
        return "the server's certificate was issued to a different host name";
    case X509_V_ERR_INVALID_PURPOSE:
        return "the certificate's extended key usage does not allow this role, e.g. a user "
               "certificate presented by a server";
    default:
        return "compare the peer's certificate with ca.crt";
    }
}

static const char *ssl_hint(int reason)
{
    switch (reason) {
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_HTTP_REQUEST:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
        return "the peer is not speaking TLS";
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
        return "TLS 1.3 is required on both sides";
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        return "the client presented no certificate";
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
        return "the server requires a client certificate";
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
        return "the peer does not trust the CA that signed our certificate";
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
        return "the peer rejected our certificate: its log says why";
    case SSL_R_SSLV3_ALERT_CERTIFICATE_EXPIRED:
        return "the peer says our certificate has expired: re-issue it";
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
        return "the peer closed the connection";
    default:
        return NULL;
    }
}

/* Append the queued OpenSSL errors, skipping repeats and the generic
 * "certificate verify failed" when the verify result was already told. */
static void append_queue(char *buf, size_t len, int verify_told)
{
    unsigned long e, prev = 0;
    while ((e = ERR_get_error()) != 0) {
        int reason = ERR_GET_REASON(e);
        int is_ssl = ERR_GET_LIB(e) == ERR_LIB_SSL;
        if (e == prev || (verify_told && is_ssl && reason == SSL_R_CERTIFICATE_VERIFY_FAILED))
            continue;
        prev = e;
        const char *text = ERR_reason_error_string(e);
        const char *hint = is_ssl ? ssl_hint(reason) : NULL;
        appendf(buf, len, "%s%s", buf[0] ? "; " : "", text ? text : "unknown error");
        if (hint)
            appendf(buf, len, " (%s)", hint);
    }
}

void tls_failure_reason(SSL *ssl, char *buf, size_t len)
{
    if (!buf || !len)
        return;
    buf[0] = 0;
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (vr != X509_V_OK)
        appendf(buf, len, "certificate verify failed: %s (%s)", X509_verify_cert_error_string(vr),
                verify_hint(vr, SSL_is_server(ssl)));
    append_queue(buf, len, vr != X509_V_OK);
    if (!buf[0])
        appendf(buf, len, "the connection was closed during the TLS handshake (the peer may "
                "have rejected our certificate or may not speak TLS 1.3)");
}
