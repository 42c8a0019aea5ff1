#include "qemu/qemu_tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"

static int copy_as(const char *from_dir, const char *from, const char *to_dir, const char *to, int mode,
                   char *err, size_t errlen)
{
    char *src = xasprintf("%s/%s", from_dir, from), *dst = xasprintf("%s/%s", to_dir, to), *data = NULL;
    size_t len = 0;
    int rc = read_file(src, &data, &len);
    if (rc == 0)
        rc = write_file_atomic(dst, data, len, mode);
    if (rc < 0)
        snprintf(err, errlen, "cannot prepare QEMU's TLS credentials (%s -> %s): %s", src, dst, strerror(errno));
    free(data);
    free(src);
    free(dst);
    return rc;
}

int qemu_tls_prepare(const char *tls_dir, const char *out_dir, char *err, size_t errlen)
{
    if (mkdir_p(out_dir, 0700) < 0 || chmod(out_dir, 0700) < 0) {
        snprintf(err, errlen, "cannot create %s: %s", out_dir, strerror(errno));
        return -1;
    }
    /* The host certificate carries serverAuth and clientAuth: the same
     * identity serves as QEMU's server (destination) and client (source). */
    static const char *map[][3] = {{"ca.crt", "ca-cert.pem", "644"},     {"host.crt", "server-cert.pem", "644"},
                                   {"host.key", "server-key.pem", "600"}, {"host.crt", "client-cert.pem", "644"},
                                   {"host.key", "client-key.pem", "600"}};
    for (size_t i = 0; i < ARRAY_LEN(map); i++)
        if (copy_as(tls_dir, map[i][0], out_dir, map[i][1], (int)strtol(map[i][2], NULL, 8), err, errlen) < 0)
            return -1;
    return 0;
}

json_t *qemu_tls_object(const char *id, const char *dir, bool server)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:b}", "qom-type", "tls-creds-x509", "id", id, "dir", dir, "endpoint",
                     server ? "server" : "client", "verify-peer", true);
}
