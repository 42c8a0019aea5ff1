/* Import of a VM from an export or from a VM's config and disk files
 * (`vmove vm import PATH`), in the Hyper-V style: plan, report, fix,
 * realize (docs/EXPORT-IMPORT.md).
 *
 * One code path builds the plan and its compatibility report: every item
 * that does not fit this host, all at once, each with a stable code, a
 * message and the fixes (flags) that would resolve it.  `check` stops
 * there; an import runs the same checks with the same answers and refuses
 * with that report, or realizes the plan:
 *   register     the VM is defined here with its disks where they are
 *   copy         disks copied (qcow2) or converted (VHDX, VHD, VMDK) into
 *                the target directory, same uuid
 *   copy-new-id  the same with a new uuid and new MAC addresses
 * Nothing is created before every check passed; a failure while copying
 * removes what the import created, so a refused or failed import leaves no
 * file and no VM behind.
 *
 * params: {"path": DIR or DIR/vm.json, "mode", "to": DIR (copy modes),
 *          "check": bool, "answers": {"name", "memory_mib", "cpus",
 *          "machine", "cpu_model", "map_switch": {OLD: NEW}, "drop_nics":
 *          [index], "disks": {ID: PATH}, "search_dirs": [DIR],
 *          "discard_saved_state": bool}} */
#ifndef VMOVE_EXCHANGE_IMPORT_H
#define VMOVE_EXCHANGE_IMPORT_H
#include <jansson.h>

struct agent;
struct import_plan;

/* The plan and its report for params; NULL with *err only when params
 * themselves are unusable (a bad mode, answers of the wrong type).
 * checks: what `qemu-img check` said of each qcow2 source disk, by path
 * (null: sound, a string: its complaint), and digests: the sha256 of each
 * disk an export's manifest lists, by path ({"sha256", "size"}, or a
 * string: why it could not be read), both learnt by the caller without
 * blocking the loop.  checks NULL: a first plan, which lists the disks to
 * check and to hash (import_plan_pending_checks, _pending_hashes) instead
 * of checking them. */
struct import_plan *import_plan_make(struct agent *a, json_t *params, json_t *checks, json_t *digests, json_t **err);
/* The qcow2 source disks a first plan wants checked, and the files it
 * wants hashed (borrowed; empty if none). */
json_t *import_plan_pending_checks(const struct import_plan *p);
json_t *import_plan_pending_hashes(const struct import_plan *p);
/* The report (report_version 1: compatible, incompatibilities, warnings,
 * answers, plan); borrowed. */
json_t *import_plan_report(const struct import_plan *p);
int import_plan_compatible(const struct import_plan *p);
/* Realize a compatible plan: done(arg, vm, NULL) with the new VM's
 * vm_to_json, or done(arg, NULL, err) with nothing left behind; both
 * stolen.  Called exactly once: before this returns for a refusal or a
 * register, else from the loop once every disk is copied and checked
 * (in children, without blocking the loop; at shutdown the copy fails and
 * is removed).  p must live until done. */
typedef void (*import_done_fn)(void *arg, json_t *vm, json_t *err);
void import_plan_realize(struct agent *a, struct import_plan *p, import_done_fn done, void *arg);
void import_plan_free(struct import_plan *p);

/* The whole of a vm.import request (params as above): what a plan must
 * learn first (sums, qemu-img check) learnt without blocking the loop, the
 * plan, then the report (check) or the import.  done(arg, result, NULL),
 * result the report or {"vm", "report"}, or done(arg, NULL, err); both
 * stolen; exactly once, maybe before this returns. */
void import_submit(struct agent *a, json_t *params, import_done_fn done, void *arg);
#endif
