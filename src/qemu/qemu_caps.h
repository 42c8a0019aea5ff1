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

int qemu_caps_probe(struct qemu_caps *caps, const char *binary, char *err, size_t errlen);
void qemu_caps_free(struct qemu_caps *caps);
#endif
