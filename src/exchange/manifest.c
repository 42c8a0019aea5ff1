/* Export manifests (see exchange/manifest.h). */
#include "exchange/manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"

int manifest_sha256_file(const char *path, char hex[65], uint64_t *size, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        abort();
    size_t bufsz = 1 << 20;
    unsigned char *buf = xmalloc(bufsz);
    uint64_t total = 0;
    ssize_t n;
    while ((n = read(fd, buf, bufsz)) > 0) {
        EVP_DigestUpdate(ctx, buf, (size_t)n);
        total += (uint64_t)n;
    }
    int rc = 0;
    if (n < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        rc = -1;
    } else {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        EVP_DigestFinal_ex(ctx, md, &mdlen);
        for (unsigned i = 0; i < mdlen && i < 32; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
        if (size)
            *size = total;
    }
    EVP_MD_CTX_free(ctx);
    free(buf);
    close(fd);
    return rc;
}

json_t *manifest_entry(const char *dir, const char *name, char *err, size_t errlen)
{
    char *path = xasprintf("%s/%s", dir, name);
    char hex[65];
    uint64_t size = 0;
    int rc = manifest_sha256_file(path, hex, &size, err, errlen);
    free(path);
    if (rc < 0)
        return NULL;
    return json_pack("{s:s, s:I, s:s}", "path", name, "size", (json_int_t)size, "sha256", hex);
}

int manifest_check_entry(const char *dir, json_t *entry, char *err, size_t errlen)
{
    const char *name = json_string_value(json_object_get(entry, "path"));
    const char *want = json_string_value(json_object_get(entry, "sha256"));
    json_int_t want_size = json_integer_value(json_object_get(entry, "size"));
    if (!name || !want || strchr(name, '/')) {
        snprintf(err, errlen, "manifest entry without a plain file name and sha256");
        return -1;
    }
    char *path = xasprintf("%s/%s", dir, name);
    char hex[65];
    uint64_t size = 0;
    int rc = manifest_sha256_file(path, hex, &size, err, errlen);
    free(path);
    if (rc < 0)
        return -1;
    if ((json_int_t)size != want_size) {
        snprintf(err, errlen, "%s has %llu bytes, the manifest says %lld (truncated or changed)", name,
                 (unsigned long long)size, (long long)want_size);
        return -1;
    }
    if (strcmp(hex, want)) {
        snprintf(err, errlen, "%s: sha256 %s differs from the manifest's %s", name, hex, want);
        return -1;
    }
    return 0;
}

json_t *manifest_find(json_t *m, const char *name)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(m, "files"), i, e) {
        const char *p = json_string_value(json_object_get(e, "path"));
        if (p && !strcmp(p, name))
            return e;
    }
    return NULL;
}
