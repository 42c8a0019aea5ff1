/* Choosing the accelerator.  `auto` uses KVM only where it runs a standard
 * guest: /dev/kvm must be usable and backed by kvm_intel or kvm_amd.  A
 * paravirtual nested KVM (kvm_pvm) also exposes /dev/kvm, but stock guest
 * kernels hang under it, so auto picks TCG there. */
#ifndef VMOVE_ACCEL_H
#define VMOVE_ACCEL_H
#include <stddef.h>

#include "conf/settings.h"

enum accel_kind { ACCEL_KIND_KVM, ACCEL_KIND_TCG };

struct accel_choice {
    enum accel_kind kind;
    char reason[256];
};

const char *accel_kind_name(enum accel_kind k);
/* sysfs_root and dev_kvm are parameters so unit tests can point them at a fake tree. */
void accel_choose(enum accel_setting s, const char *sysfs_module_dir, const char *dev_kvm,
                  struct accel_choice *out);
#endif
