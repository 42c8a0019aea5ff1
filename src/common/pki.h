/* vmove's private PKI: one CA per cluster, leaf certificates for hosts
 * (vmoved, and QEMU migration TLS) and users (CLI, delegation tokens).
 * See docs/PKI.md for the file layout and the reasons for the key types. */
#ifndef VMOVE_PKI_H
#define VMOVE_PKI_H
#include <stddef.h>

enum pki_role { PKI_ROLE_HOST, PKI_ROLE_USER };

/* Creates CADIR/ca.crt and CADIR/ca.key (0600, dir 0700).  Refuses if
 * ca.key already exists.  ECDSA P-256 CA, CN "vmove CA <cn>",
 * basicConstraints CA:TRUE critical, keyUsage keyCertSign,cRLSign, 10 years.
 * Returns 0, or -1 with a message in err. */
int pki_init_ca(const char *cadir, const char *cn, char *err, size_t errlen);

/* Issues a leaf for NAME (must pass valid_name()).  Writes OUTDIR/ca.crt
 * (copy), and host.crt+host.key (role host) or user.crt+user.key (role
 * user); keys 0600, every file created atomically.
 *   Host: ECDSA P-256, subject O=vmove, OU=host, CN=NAME, SAN DNS:NAME,
 *         EKU serverAuth+clientAuth.
 *   User: Ed25519, subject O=vmove, OU=user, CN=NAME, EKU clientAuth.
 * Valid from now + not_before_offset_s for DAYS days (tests pass a negative
 * offset to get an expired certificate).  Random 128-bit serial.
 * Returns 0, or -1 with a message in err. */
int pki_issue(const char *cadir, const char *name, enum pki_role role, const char *outdir,
              int days, long not_before_offset_s, char *err, size_t errlen);

/* 0 if the private key file at PATH exists and has no group/other
 * permission bits; else -1 with a message (including the chmod to run).
 * Used by everything that loads a private key. */
/* A PEM private key, refused if group/other may access the file. */
struct evp_pkey_st *pki_load_key(const char *path, char *err, size_t errlen);
/* The most specific OpenSSL reason for the last failure (drains the queue). */
const char *pki_ossl_reason(void);
int pki_check_key_mode(const char *path, char *err, size_t errlen);
#endif
