/* vm.json: the versioned, strictly validated description of one VM.
 *
 * Each VM is a directory holding vm.json and (usually) its disks.  The file
 * format is documented in docs/VM-JSON.md; keep the two in step.
 *
 * Every error message names the JSON path of the offending field
 * ("disks[1].bus: ..."), also from vm_config_validate() for configs built in
 * C, so one message style reaches the user whatever the source. */
#ifndef VMOVE_VM_CONFIG_H
#define VMOVE_VM_CONFIG_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VM_CONFIG_VERSION 1

#define VM_MEMORY_MIB_MIN 16
#define VM_MEMORY_MIB_MAX 1048576
#define VM_CPUS_MIN 1
#define VM_CPUS_MAX 256
#define VM_MAX_DISKS 26         /* vda .. vdz */
#define VM_MAX_NICS 8
#define VM_SWITCH_NAME_MAX 15   /* IFNAMSIZ - 1 */

/* Only virtio-blk (virtio-pci) for now; new buses are appended, never
 * renumbered, and get a name in vm_config_validate.c's bus table. */
enum vm_disk_bus { VM_DISK_BUS_VIRTIO = 0 };
enum vm_boot_kind { VM_BOOT_KERNEL = 0, VM_BOOT_DISK };

struct vm_disk {
    char *id;                   /* "vda".."vdz", unique */
    char *path;                 /* absolute path of a qcow2 file, unique */
    enum vm_disk_bus bus;
};

struct vm_nic {
    char *switch_name;          /* Linux bridge on the host: valid_name(), <= 15 chars */
    char mac[18];               /* "52:54:00:xx:xx:xx": lower-case, unicast, unique */
};

struct vm_boot {
    enum vm_boot_kind kind;
    /* kernel: kernel required (absolute path), initrd optional (absolute),
     * append optional (no newline); disk: all NULL. */
    char *kernel, *initrd, *append;
};

struct vm_config {
    int version;                /* == VM_CONFIG_VERSION */
    char *name;                 /* valid_name() */
    char uuid[37];              /* RFC 4122 text form, lower-case */
    uint64_t memory_mib;        /* 16 .. 1048576 */
    int cpus;                   /* 1 .. 256 */
    char *machine;              /* QEMU machine type, e.g. "pc-q35-7.2"; required */
    char *cpu_model;            /* optional, NULL = accelerator default */
    struct vm_disk *disks;
    size_t n_disks;             /* 0..26 */
    struct vm_nic *nics;
    size_t n_nics;              /* 0..8 */
    struct vm_boot boot;
    bool ha;                    /* restart on another host if this host dies (clusters) */
    /* --isolation keep (flags.isolation "keep"; absent: "stop"): an HA VM
     * that is never fenced when its host loses its lease, and for that very
     * reason never restarted elsewhere automatically (docs/CLUSTER.md). */
    bool ha_keep;
    /* The checkpoint tree (src/checkpoint/, docs/CHECKPOINTS.md), NULL when
     * the VM has none.  Opaque here: conf/ checks only that it is an object
     * with a "list" array; it lives in vm.json so that it travels with the
     * VM's config on every move. */
    json_t *checkpoints;
};

/* Strict parse: unknown fields, wrong types and invalid values are errors
 * naming the JSON path, e.g. "memory_mib: 8 is below the minimum of 16".
 * Returns 0, or -1 with *out zeroed (nothing to free) and err filled. */
int vm_config_from_json(json_t *j, struct vm_config *out, char *err, size_t errlen);
/* Canonical form (fixed field order, optional strings omitted when NULL,
 * "disks", "nics" and "flags" always present): from_json(to_json(c)) == c
 * and to_json(from_json(j)) == j for canonical j.  Expects a valid config;
 * returns NULL only if a string is not valid UTF-8. */
json_t *vm_config_to_json(const struct vm_config *c);
/* Read and parse a vm.json file.  Messages start with the file path; JSON
 * syntax errors carry "path:line:column: ". */
int vm_config_load(const char *path, struct vm_config *out, char *err, size_t errlen);
/* Validate, then write pretty-printed canonical JSON atomically, mode 0644. */
int vm_config_save(const char *path, const struct vm_config *c, char *err, size_t errlen);
/* The semantic checks of vm_config_from_json, for a config built in C. */
int vm_config_validate(const struct vm_config *c, char *err, size_t errlen);
/* Is the VM fenced with its host's cluster lease (HA, isolation stop)? */
static inline bool vm_config_fenced(const struct vm_config *c) { return c->ha && !c->ha_keep; }
/* Frees members and zeroes *c; safe on a zeroed config. */
void vm_config_free(struct vm_config *c);
/* Deep copy; *dst is overwritten (not freed).  Returns 0. */
int vm_config_copy(struct vm_config *dst, const struct vm_config *src);
void vm_generate_uuid(char out[37]);    /* random v4 from getrandom() */
void vm_generate_mac(char out[18]);     /* 52:54:00:xx:xx:xx random */
/* How many checkpoints c has (0 without a tree). */
size_t vm_config_checkpoint_count(const struct vm_config *c);
/* NULL if no disk has that id. */
const struct vm_disk *vm_config_find_disk(const struct vm_config *c, const char *id);
#endif
