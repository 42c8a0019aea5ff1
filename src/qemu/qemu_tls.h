/* TLS for QEMU's own streams (migration, NBD): QEMU reads x509 credentials
 * from a directory with fixed file names.  vmoved builds that directory from
 * the host's identity (--tls-dir), so QEMU presents the host certificate and
 * checks the peer's against the cluster CA. */
#ifndef VMOVE_QEMU_TLS_H
#define VMOVE_QEMU_TLS_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Copies ca.crt/host.crt/host.key from tls_dir into out_dir as QEMU's
 * ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem,
 * client-key.pem (keys 0600, dir 0700). */
int qemu_tls_prepare(const char *tls_dir, const char *out_dir, char *err, size_t errlen);
/* Arguments of object-add for a tls-creds-x509 object. */
json_t *qemu_tls_object(const char *id, const char *dir, bool server);
#endif
