/* What the local QEMU can do: version and machine types.  Probed once when
 * vmoved starts (QEMU is not upgraded under a running agent). */
#ifndef VMOVE_QEMU_CAPS_H
#define VMOVE_QEMU_CAPS_H
#include <stddef.h>

struct host_caps;

int qemu_caps_probe(struct host_caps *caps, const char *binary, char *err, size_t errlen);
void qemu_caps_free(struct host_caps *caps);
#endif
