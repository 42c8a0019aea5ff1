/* Planning a VM's memory and disks from a request, shared by vm.create and
 * vm.set: everything is checked before anything is written, and the new
 * disk files are made only once the whole plan holds (vm_plan_make_disks),
 * so a bad request changes nothing. */
#ifndef VMOVE_API_VM_PLAN_H
#define VMOVE_API_VM_PLAN_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/vm_config.h"

struct agent;

/* One disk to add: d->id is set by the caller; d->path is filled here.
 * *new_size > 0: a qcow2 of that size is to be created at d->path. */
struct vm_plan_disk {
    struct vm_disk *d;
    uint64_t new_size;
};

/* A disk spec of a request:
 *   "8G"              a new qcow2 in the VM's directory (VM_DIR/ID.qcow2);
 *   "/img/x.qcow2"    an existing qcow2 image, used as is;
 *   "/img/x.qcow2,size=8G"  a new qcow2 there (the file must not exist;
 *                     its directory must be allowed for images).
 * taken: paths already planned for this VM (a duplicate is refused).
 * formats: what qemu-img said of each existing image, by canonical path
 * (vm_plan_probe's facts), learnt beforehand without blocking the loop; an
 * image missing from them is refused as unreadable. */
int vm_plan_disk(struct agent *a, const char *spec, const char *vm_dir, const struct vm_config *taken,
                 json_t *formats, struct vm_plan_disk *out, char *err, size_t errlen);
/* qemu-img info (without a chain; format NULL: qemu-img tells which) of
 * each path, one after the other, in children the loop does not wait for
 * (an image may sit on stalled storage): {PATH: {"format", "virtual_size",
 * "backing"?} | {"error": why}} to done(arg, facts), exactly once, from the
 * loop (facts are the callee's; paths is taken).  At shutdown every one
 * ends with an error. */
typedef void (*vm_plan_facts_fn)(void *arg, json_t *facts);
void vm_plan_probe(struct agent *a, json_t *paths, const char *format, vm_plan_facts_fn done, void *arg);
/* The canonical paths of the existing images that disk specs name (inside
 * the images policy, readable and writable): what vm_plan_disk will look
 * up in the facts.  A new array. */
json_t *vm_plan_attached_paths(struct agent *a, json_t *specs);
/* Memory given as an integer (MiB) or a size string ("512M", "1024" = MiB). */
int vm_plan_memory(json_t *mem, uint64_t *mib, char *err, size_t errlen);
/* Create the new disks of plan[0..n), one after the other, each by
 * qemu-img create in a child the loop does not wait for (an images
 * directory may be on slow storage).  done(arg, NULL), or done(arg, why)
 * with those made here removed; exactly once, from the loop (plan stays
 * the caller's and must live until then).  At shutdown it ends with an
 * error. */
typedef void (*vm_plan_made_fn)(void *arg, const char *err);
void vm_plan_make_disks(struct agent *a, struct vm_plan_disk *plan, size_t n, vm_plan_made_fn done, void *arg);
/* Remove the disks vm_plan_make_disks made (undo after a later failure). */
void vm_plan_unmake_disks(struct vm_plan_disk *plan, size_t n);
#endif
