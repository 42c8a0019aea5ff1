/* Private to src/vm/: what vm.c (the object, its state machine and QMP
 * events), inventory.c (load, define, delete, re-attach), lifecycle.c
 * (start/stop) and guest.c (the guest channel) share.  Never included from
 * another folder; the public contract is vm/vm.h. */
#ifndef VMOVE_VM_INTERNAL_H
#define VMOVE_VM_INTERNAL_H
#include <jansson.h>
#include <stdbool.h>

#include "vm/vm.h"

/* ---- vm.c ---- */
/* Free a VM already unlinked from agent->vms (deferred while a hook runs). */
void vm_free(struct vm *vm);
/* Set *out to the state called name; false (and *out untouched) if none is. */
bool vm_state_parse(const char *name, enum vm_state *out);
/* Write runtime.json. */
void vm_save_runtime(struct vm *vm);
/* How QEMU ended: the shim's record, its description and the log tails. */
json_t *vm_exit_info(struct vm *vm);
/* (Re)connect to QEMU's QMP socket; if that fails, watch for QEMU's exit. */
void vm_attach_qmp(struct vm *vm);
/* Settle the lifecycle job in progress, if any (err is consumed). */
void vm_finish_job_ok(struct vm *vm);
void vm_finish_job_err(struct vm *vm, json_t *err);

/* ---- lifecycle.c: QMP became ready during a start or an incoming launch ---- */
void vm_start_continue(struct vm *vm);
void vm_incoming_continue(struct vm *vm);

/* ---- guest.c ---- */
/* Fail every queued guest command with "guest channel: WHY". */
void vm_guest_cancel_all(struct vm *vm, const char *why);
#endif
