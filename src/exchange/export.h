/* Export of a VM: the `vm.export` job (`vmove vm export NAME --to DIR`).
 *
 * The export is a directory DIR holding one standalone qcow2 per disk
 * (DIR/ID.qcow2, the whole backing chain flattened), the VM's vm.json with
 * its disk paths pointing there, and manifest.json (docs/EXPORT-IMPORT.md)
 * with the size and sha256 of every file.  It is written into DIR.partial
 * and renamed to DIR only when complete, so DIR exists only as a whole.
 *
 * Running or paused VM (phases):
 *   preparing  the targets are created (qemu-img create, O_EXCL dir), added
 *              to QEMU as block nodes, and QEMU is asked which node each
 *              disk uses now
 *   copying    one `transaction` of blockdev-backup sync=full, one action
 *              per disk, completion-mode grouped: the export point is that
 *              transaction, for every disk at once; later guest writes go
 *              to the VM's disks only (copy-before-write keeps the old data
 *              for the copy).  query-block-jobs gives the progress.
 *   finishing  jobs dismissed, target nodes deleted, vm.json and the
 *              manifest written, DIR.partial renamed to DIR
 * Stopped VM: `qemu-img convert -f qcow2 -O qcow2` per disk, then finishing.
 * Cancel or failure: the backup jobs are cancelled, the nodes deleted and
 * DIR.partial removed; the VM is not touched (its guest never pauses). */
#ifndef VMOVE_EXCHANGE_EXPORT_H
#define VMOVE_EXCHANGE_EXPORT_H
#include <jansson.h>

struct agent;
struct job;
struct vm_export;

/* params: {"name", "to": absolute DIR that does not exist yet, "memory":
 * bool, "bandwidth": bytes/s per disk (0: unlimited; live exports)}.  NULL with *err when it cannot start (nothing was created then). */
struct vm_export *export_create(struct agent *a, json_t *params, json_t **err);
struct job *export_job(const struct vm_export *x);
void export_begin(struct vm_export *x);
/* At shutdown: cancel and forget the exports in flight (their partial
 * directories are removed). */
void export_free_all(struct agent *a);
#endif
