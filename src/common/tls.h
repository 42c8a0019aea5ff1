/* TLS between vmove components: TLS 1.3 only, always mutually
 * authenticated with certificates from the cluster CA (see pki.h). */
#ifndef VMOVE_TLS_H
#define VMOVE_TLS_H
#include <stddef.h>
#include <openssl/ssl.h>

#include "common/pki.h"

/* Server side for vmoved: loads TLSDIR/ca.crt, host.crt, host.key; requires
 * and verifies a client certificate signed by ca.crt; TLS 1.3 only.
 * NULL with a message in err on failure (unreadable files, key/cert
 * mismatch, private key accessible by group/other). */
SSL_CTX *tls_server_ctx(const char *tlsdir, char *err, size_t errlen);

/* Client side: trusts ca_path only; presents cert/key; verifies the server
 * certificate chain.  Same failures as tls_server_ctx. */
SSL_CTX *tls_client_ctx(const char *ca_path, const char *cert_path, const char *key_path,
                        char *err, size_t errlen);

/* Before the handshake on a client SSL: require the server certificate to
 * carry NAME (SAN DNS, CN only if there is no SAN).  Also sets SNI.
 * 0 or -1. */
int tls_client_expect_host(SSL *ssl, const char *name);

struct tls_identity {
    char name[64];
    enum pki_role role;
};

/* After a successful handshake: the verified peer's CN and role (from
 * OU=host/user).  0, or -1 if there is no verified peer certificate or its
 * subject is not a vmove one. */
int tls_peer_identity(SSL *ssl, struct tls_identity *out);

/* A human-readable reason for the last handshake failure on SSL, built from
 * the verify result and the thread's OpenSSL error queue (which it drains),
 * e.g. "certificate verify failed: unable to get local issuer certificate
 * (the peer's certificate is not signed by this host's CA)".  Call it right
 * after the failing SSL_do_handshake/SSL_read on the same thread. */
void tls_failure_reason(SSL *ssl, char *buf, size_t len);
#endif
