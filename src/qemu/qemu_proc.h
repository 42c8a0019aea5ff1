/* Running QEMU processes so that they outlive vmoved.
 *
 * vmoved forks a small supervisor (the "shim"), which starts its own session,
 * forks QEMU and waits for it.  When QEMU exits the shim records the exit
 * status in DIR/qemu.exit.  vmoved can therefore be restarted (or SIGKILLed)
 * while QEMU runs: the shim and QEMU are unaffected, and a later vmoved still
 * learns how QEMU ended, which a plain waitpid() could only tell the parent.
 *
 * Files in the VM directory: qemu.pid (QEMU's pid), qemu.exit (JSON, written
 * by the shim), qemu.log (QEMU's stdout/stderr, appended), fence.deadline
 * and fence.fifo (the cluster fence: see qemu_proc_fence_set). */
#ifndef VMOVE_QEMU_PROC_H
#define VMOVE_QEMU_PROC_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Starts argv (argv[0] is the QEMU binary) under a shim.  The shim's pid is
 * a child of the caller and must be reaped by it. */
int qemu_proc_start(const char *dir, char *const argv[], pid_t *shim_pid, pid_t *qemu_pid,
                    char *err, size_t errlen);
/* Set the time (CLOCK_MONOTONIC, ns; 0 = never) at which the shim SIGKILLs
 * this VM's QEMU, also for a QEMU started later from DIR.  The exit record
 * then says "fenced": true.  0 or -1 (errno). */
int qemu_proc_fence_set(const char *dir, uint64_t deadline_ns);
/* True if pid is alive and is the QEMU of the VM with this uuid (guards
 * against pid reuse after a reboot or a long downtime of vmoved). */
bool qemu_proc_is_ours(pid_t pid, const char *uuid);
/* The shim's exit record, or NULL if QEMU has not exited (yet). */
json_t *qemu_proc_exit_record(const char *dir);
/* Human-readable "exit status 1" / "killed by signal 9 (Killed)". */
char *qemu_proc_describe_exit(json_t *record);
/* The last `bytes` of qemu.log (malloc'd; "" if none). */
char *qemu_proc_log_tail(const char *dir, const char *file, size_t bytes);
#endif
