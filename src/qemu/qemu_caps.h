/* What the local QEMU can do: version and machine types.  Probed once when
 * vmoved starts (QEMU is not upgraded under a running agent). */
#ifndef VMOVE_QEMU_CAPS_H
#define VMOVE_QEMU_CAPS_H
#include <jansson.h>
#include <stddef.h>

struct qemu_caps {
    char *qemu_binary;        /* "qemu-system-x86_64" */
    char *qemu_version;       /* "10.0.2" */
    char *default_machine;    /* the versioned type "q35" resolves to, e.g. pc-q35-10.0 */
    json_t *machines;         /* array of supported machine type names */
};

/* QEMU 10 is the engine: older ones lack what vmove relies on (the TCG
 * dirty-bitmap fix of 9.0, a filled-in `downtime` at `completed`, mapped-ram,
 * post-copy preemption).  vmoved refuses to start on an older one. */
#define QEMU_MIN_MAJOR 10

/* 0 if version ("10.0.2") is supported; else -1 with a message saying how to
 * install a supported QEMU. */
int qemu_caps_check_version(const char *version, const char *binary, char *err, size_t errlen);
/* Version (refusing an unsupported one) and machine types of binary. */
int qemu_caps_probe(struct qemu_caps *caps, const char *binary, char *err, size_t errlen);
void qemu_caps_free(struct qemu_caps *caps);
#endif
