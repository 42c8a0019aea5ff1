/* Export manifests (see exchange/manifest.h). */
#include "exchange/manifest.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <sys/stat.h>

#include "common/spawn.h"
#include "common/util.h"

/* Big disks: sha256sum reads at a few hundred MB/s at least. */
#define HASH_TIMEOUT_MS (3600 * 1000)

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
    return manifest_entry_of(name, hex, size);
}

json_t *manifest_entry_of(const char *name, const char *hex, uint64_t size)
{
    return json_pack("{s:s, s:I, s:s}", "path", name, "size", (json_int_t)size, "sha256", hex);
}

/* A digest against its manifest entry: 0, or -1 with err saying which part
 * differs. */
static int compare_entry(json_t *entry, const char *hex, uint64_t size, char *err, size_t errlen)
{
    const char *name = json_string_value(json_object_get(entry, "path"));
    const char *want = json_string_value(json_object_get(entry, "sha256"));
    json_int_t want_size = json_integer_value(json_object_get(entry, "size"));
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

int manifest_entry_usable(json_t *entry, char *err, size_t errlen)
{
    const char *name = json_string_value(json_object_get(entry, "path"));
    const char *want = json_string_value(json_object_get(entry, "sha256"));
    if (!name || !want || strchr(name, '/')) {
        snprintf(err, errlen, "manifest entry without a plain file name and sha256");
        return -1;
    }
    return 0;
}

int manifest_check_entry(const char *dir, json_t *entry, char *err, size_t errlen)
{
    if (manifest_entry_usable(entry, err, errlen) < 0)
        return -1;
    char *path = xasprintf("%s/%s", dir, json_string_value(json_object_get(entry, "path")));
    char hex[65];
    uint64_t size = 0;
    int rc = manifest_sha256_file(path, hex, &size, err, errlen);
    free(path);
    if (rc < 0)
        return -1;
    return compare_entry(entry, hex, size, err, errlen);
}

int manifest_check_digest(json_t *entry, json_t *digest, char *err, size_t errlen)
{
    if (manifest_entry_usable(entry, err, errlen) < 0)
        return -1;
    const char *hex = json_string_value(json_object_get(digest, "sha256"));
    if (!hex) {
        snprintf(err, errlen, "%s", json_is_string(digest) ? json_string_value(digest)
                                                          : "changed while it was hashed: try again");
        return -1;
    }
    return compare_entry(entry, hex, (uint64_t)json_integer_value(json_object_get(digest, "size")), err, errlen);
}

/* ---- sha256sum in a child ------------------------------------------------ */

struct manifest_hash {
    struct spawn_async *child;
    uint64_t size;
    char *path;
    bool opened;                    /* else the child's error says why */
    manifest_hash_fn done;
    void *arg;
};

static bool is_hex64(const char *s)
{
    for (int i = 0; i < 64; i++)
        if (!strchr("0123456789abcdef", s[i]) || !s[i])
            return false;
    return s[64] == ' ' || s[64] == '\n' || s[64] == 0;
}

static void on_hashed(void *arg, int rc, const char *out)
{
    struct manifest_hash *h = arg;
    char hex[65] = "", err[1024] = "";
    if (rc == 0 && out && strlen(out) >= 64 && is_hex64(out))
        memcpy(hex, out, 64);
    else if (h->opened)
        snprintf(err, sizeof err, "%s: sha256sum failed: %s", h->path, out && out[0] ? out : "?");
    else
        snprintf(err, sizeof err, "%s", out && out[0] ? out : "?");
    h->done(h->arg, hex[0] ? hex : NULL, h->size, hex[0] ? NULL : err);
    free(h->path);
    free(h);
}

struct manifest_hash *manifest_sha256_async(struct event_base *base, const char *path, manifest_hash_fn done,
                                            void *arg)
{
    struct manifest_hash *h = xcalloc(1, sizeof *h);
    h->path = xstrdup(path);
    h->done = done;
    h->arg = arg;
    /* Opened here as before (never through a symlink); the child hashes
     * that very file from its stdin, and the size is the same file's. */
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        char *why = xasprintf("%s: %s", path, strerror(errno));
        h->child = spawn_async_fail(base, why, on_hashed, h);
        free(why);
    } else {
        h->size = (uint64_t)st.st_size;
        h->opened = true;
        char *argv[] = {"sha256sum", NULL};
        h->child = spawn_async_fd(base, argv, fd, HASH_TIMEOUT_MS, on_hashed, h);
    }
    if (fd >= 0)
        close(fd);
    return h;
}

void manifest_hash_cancel(struct manifest_hash *h)
{
    if (!h)
        return;
    spawn_async_cancel(h->child);
    free(h->path);
    free(h);
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
