/* manifest.json of an export: what files it holds, their sizes and sha256.
 *
 * {"manifest_version": 1, "kind": "vmove-export", "vm": NAME, "uuid": UUID,
 *  "host": HOST, "created_ms": N, "live": bool,
 *  "files": [{"path": "vm.json", "size": N, "sha256": HEX}, ...]}
 * File paths are names inside the export directory (no '/').  Import checks
 * every listed file against it before it uses any. */
#ifndef VMOVE_EXCHANGE_MANIFEST_H
#define VMOVE_EXCHANGE_MANIFEST_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MANIFEST_NAME "manifest.json"
#define MANIFEST_VERSION 1

/* sha256 of a file as 64 hex digits; -1 with err (strerror) if unreadable. */
int manifest_sha256_file(const char *path, char hex[65], uint64_t *size, char *err, size_t errlen);
/* One {"path", "size", "sha256"} entry for DIR/NAME; NULL with err. */
json_t *manifest_entry(const char *dir, const char *name, char *err, size_t errlen);
/* The same entry from a digest learnt earlier. */
json_t *manifest_entry_of(const char *name, const char *hex, uint64_t size);
/* Check DIR/NAME against entry; 0 if size and digest match, else -1 with
 * err saying which differs. */
int manifest_check_entry(const char *dir, json_t *entry, char *err, size_t errlen);
/* 0 if entry names a plain file and has a digest, else -1 with err. */
int manifest_entry_usable(json_t *entry, char *err, size_t errlen);
/* Check a digest learnt earlier ({"sha256": HEX, "size": N}, or a string:
 * why it could not be learnt) against entry, as manifest_check_entry. */
int manifest_check_digest(json_t *entry, json_t *digest, char *err, size_t errlen);

/* sha256 of a file without blocking the loop: sha256sum in a child
 * (common/spawn.h) reads the file vmoved opened (O_NOFOLLOW), size is that
 * file's.  done(arg, hex, size, NULL) or done(arg, NULL, 0, why), exactly
 * once, from the loop, unless cancelled first. */
struct event_base;
struct manifest_hash;
typedef void (*manifest_hash_fn)(void *arg, const char *hex, uint64_t size, const char *err);
struct manifest_hash *manifest_sha256_async(struct event_base *base, const char *path, manifest_hash_fn done,
                                            void *arg);
/* Kills sha256sum; done is not called. */
void manifest_hash_cancel(struct manifest_hash *h);
/* The entry for NAME in manifest m, or NULL. */
json_t *manifest_find(json_t *m, const char *name);
#endif
