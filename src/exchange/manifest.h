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
#include <stddef.h>
#include <stdint.h>

#define MANIFEST_NAME "manifest.json"
#define MANIFEST_VERSION 1

/* sha256 of a file as 64 hex digits; -1 with err (strerror) if unreadable. */
int manifest_sha256_file(const char *path, char hex[65], uint64_t *size, char *err, size_t errlen);
/* One {"path", "size", "sha256"} entry for DIR/NAME; NULL with err. */
json_t *manifest_entry(const char *dir, const char *name, char *err, size_t errlen);
/* Check DIR/NAME against entry; 0 if size and digest match, else -1 with
 * err saying which differs. */
int manifest_check_entry(const char *dir, json_t *entry, char *err, size_t errlen);
/* The entry for NAME in manifest m, or NULL. */
json_t *manifest_find(json_t *m, const char *name);
#endif
