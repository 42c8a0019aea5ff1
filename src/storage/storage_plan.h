/* The up-front checks of a storage move: which disks go where, and whether
 * that can work.  Every problem is collected, so the user sees them all at
 * once, and nothing is changed when there is any. */
#ifndef VMOVE_STORAGE_PLAN_H
#define VMOVE_STORAGE_PLAN_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;

struct plan_disk {
    char *id;                 /* "vda" */
    char *source;             /* current path (vm.json) */
    char *target;             /* DIR/basename(source), DIR canonical */
    uint64_t virtual_size;    /* bytes, for qemu-img create */
    char *backing;            /* NULL, or the target's backing: the copied frozen layer under the active one,
                               * by its name in the target directory (the VM has checkpoints) */
};

/* A file of a disk's checkpoint chain copied before the mirror starts
 * (docs/CHECKPOINTS.md, "Moves"), parents before children. */
struct plan_copy {
    char *disk_id;            /* the disk whose chain it belongs to (a memory image: the first disk's) */
    char *source, *target;    /* the frozen file now, and its copy (DIR/basename) */
    char *backing;            /* qcow2: the copy's backing name in DIR (NULL: the chain's root, standalone) */
    bool vmstate;             /* a memory checkpoint's image: copied byte for byte */
};

struct storage_plan {
    struct plan_disk *disks;
    size_t n;
    struct plan_copy *copies;
    size_t n_copies;
};

/* What qemu-img says of each of the VM's disks, learned one after the
 * other by children the loop does not wait for (a disk may sit on stalled
 * storage): {PATH: {"format", "virtual_size", "allocated"} | {"error"}}.
 * done(arg, facts) exactly once, from the loop (facts are the callee's);
 * at shutdown every entry is an error. */
struct agent;
typedef void (*storage_facts_fn)(void *arg, json_t *facts);
void storage_plan_probe(struct agent *a, const struct vm *vm, storage_facts_fn done, void *arg);

/* params: {"to": DIR?, "disks": {ID: DIR|null}?, "config_to": DIR?};
 * facts from storage_plan_probe (a disk missing from them is a problem:
 * the VM changed meanwhile).  Returns NULL with *out filled, or an error
 * object (with a "problems" array) and *out empty. */
json_t *storage_plan_make(struct vm *vm, json_t *params, json_t *facts, struct storage_plan *out);
void storage_plan_free(struct storage_plan *p);
/* The pre-flight check of a storage move (`vmove move-storage --check`):
 * the plan's every problem, and what it would do, as items of vm/compat.h
 * (a new array).  Nothing is changed. */
json_t *storage_plan_check(struct vm *vm, json_t *params, json_t *facts);
#endif
