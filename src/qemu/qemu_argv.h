/* The QEMU command line for a VM.  Every device gets a stable id and every
 * block node a stable node-name, because migration (and later mirroring)
 * refers to them: source and destination must build the same machine. */
#ifndef VMOVE_QEMU_ARGV_H
#define VMOVE_QEMU_ARGV_H
#include <stddef.h>

#include "qemu/accel.h"
#include "conf/vm_config.h"

struct qemu_argv_opts {
    const char *qemu_binary;
    const char *vm_dir;          /* sockets and logs live here */
    enum accel_kind accel;
    const char *incoming;        /* NULL, or "defer" for an incoming migration */
    /* Tests only: QEMU's image locks off, so that the cluster's double-run
     * tests see protocol bugs that the locks (one kernel for every test
     * host) would otherwise hide. */
    bool no_image_locking;
};

/* NULL-terminated argv, every string malloc'd; free with qemu_argv_free. */
char **qemu_build_argv(const struct vm_config *c, const struct qemu_argv_opts *o);
void qemu_argv_free(char **argv);
/* Name of the tap device for NIC index i ("vm" + 8 hex of the uuid + "n" + i). */
void qemu_tap_name(const struct vm_config *c, size_t i, char out[16]);
/* Paths of the VM's sockets (malloc'd). */
char *qemu_qmp_path(const char *vm_dir);
char *qemu_console_path(const char *vm_dir);
char *qemu_guest_path(const char *vm_dir);
#endif
