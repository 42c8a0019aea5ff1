/* The one parser of sizes and rates given on a command line or in a
 * request: every size and rate flag of vmove goes through it, so that
 * "512M" means the same thing everywhere (docs/JSON.md, "Units").
 *
 *   UNIT_MEMORY    bytes; a bare number is MiB (virsh and qm take MiB):
 *                  "1024" = "1G" = 1 GiB.  Suffixes K, M, G, T (binary).
 *   UNIT_DISK      bytes; a bare number is bytes (as qemu-img): "8G".
 *   UNIT_BITRATE   bit/s; a bare number is Mbit/s (network links are
 *                  named in bits): "500M" = 500 Mbit/s, "1G" = 1 Gbit/s.
 *                  Suffixes K, M, G, T are decimal; "bit/s", "bps" may follow.
 *   UNIT_BYTERATE  bytes/s; a bare number is MiB/s (disk copies):
 *                  "200M" = 200 MiB/s.  Suffixes binary; "B/s" may follow. */
#ifndef VMOVE_UNITS_H
#define VMOVE_UNITS_H
#include <stdint.h>

enum unit_kind { UNIT_MEMORY, UNIT_DISK, UNIT_BITRATE, UNIT_BYTERATE };

/* 0, or -1 with *why a static sentence naming what is wrong and what to
 * give instead. */
int units_parse(const char *s, enum unit_kind kind, uint64_t *out, const char **why);
/* "MiB", "bytes", "Mbit/s", "MiB/s": what a bare number means. */
const char *units_bare_name(enum unit_kind kind);
#endif
