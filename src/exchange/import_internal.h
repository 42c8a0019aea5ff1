/* What import_check.c (the plan) and import.c (realizing it) share.  Not
 * for use outside src/exchange/import*.c. */
#ifndef VMOVE_EXCHANGE_IMPORT_INTERNAL_H
#define VMOVE_EXCHANGE_IMPORT_INTERNAL_H
#include <jansson.h>
#include <stdbool.h>

#include "conf/vm_config.h"
#include "exchange/image_sniff.h"

enum import_mode { IMPORT_REGISTER, IMPORT_COPY, IMPORT_COPY_NEW_ID };
const char *import_mode_name(enum import_mode m);

struct import_disk {
    char *id;
    char *source;                  /* where it was found (canonical), NULL if missing */
    struct image_sniff sniff;      /* its format, from its header */
    char *target;                  /* copy modes: DISK_DIR/ID.qcow2 */
};

struct import_plan {
    char *path;                    /* as given */
    char *src_dir, *config_path;   /* canonical */
    const char *kind;              /* "vmove-export" (a manifest) or "vm-config" */
    enum import_mode mode;
    char *to;                      /* --to DIR or NULL */
    json_t *manifest;
    struct vm_config cfg;          /* answers applied */
    bool cfg_ok;
    struct import_disk *disks;
    size_t n;
    char *vm_dir;                  /* STATE/vms/NAME */
    char *disk_dir;                /* copy modes: --to DIR/NAME, else vm_dir */
    json_t *errors, *warnings, *info;
    json_t *report;
    json_t *checks;                /* qemu-img check's verdicts by path (borrowed), or NULL */
    json_t *digests;               /* sha256 of the manifest's disks by path (borrowed), or NULL */
    json_t *pending_checks;        /* without checks: the paths to check */
    json_t *pending_hashes;        /* without checks: the paths to hash */
};
#endif
