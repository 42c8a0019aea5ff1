#include "qemu/accel.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/util.h"

const char *accel_kind_name(enum accel_kind k) { return k == ACCEL_KIND_KVM ? "kvm" : "tcg"; }

static bool module_loaded(const char *dir, const char *name)
{
    char *p = xasprintf("%s/%s", dir, name);
    bool r = path_exists(p);
    free(p);
    return r;
}

/* /dev/kvm answers KVM_GET_API_VERSION with 12 on every real KVM. */
static bool kvm_device_usable(const char *dev, char *why, size_t len)
{
    int fd = open(dev, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, len, "%s cannot be opened (%m)", dev);
        return false;
    }
    int v = ioctl(fd, KVM_GET_API_VERSION, 0);
    close(fd);
    if (v != KVM_API_VERSION) {
        snprintf(why, len, "%s answers API version %d, not %d", dev, v, KVM_API_VERSION);
        return false;
    }
    return true;
}

void accel_choose(enum accel_setting s, const char *mods, const char *dev, struct accel_choice *out)
{
    char why[160] = "";
    if (s == ACCEL_TCG) {
        out->kind = ACCEL_KIND_TCG;
        snprintf(out->reason, sizeof out->reason, "accel is set to tcg");
        return;
    }
    bool usable = kvm_device_usable(dev, why, sizeof why);
    bool pvm = module_loaded(mods, "kvm_pvm");
    bool hw = module_loaded(mods, "kvm_intel") || module_loaded(mods, "kvm_amd");
    if (s == ACCEL_KVM) {
        out->kind = ACCEL_KIND_KVM;
        snprintf(out->reason, sizeof out->reason, "accel is set to kvm%s%s",
                 !usable ? "; WARNING: " : pvm ? "; WARNING: kvm_pvm is a paravirtual nested KVM, stock guests hang under it" : "",
                 !usable ? why : "");
        return;
    }
    out->kind = ACCEL_KIND_TCG;
    if (!usable)
        snprintf(out->reason, sizeof out->reason, "auto: TCG, because %s", why);
    else if (pvm)
        snprintf(out->reason, sizeof out->reason,
                 "auto: TCG, because /dev/kvm is provided by kvm_pvm, a paravirtual nested KVM "
                 "under which stock guest kernels hang");
    else if (!hw)
        snprintf(out->reason, sizeof out->reason,
                 "auto: TCG, because neither kvm_intel nor kvm_amd is loaded");
    else {
        out->kind = ACCEL_KIND_KVM;
        snprintf(out->reason, sizeof out->reason, "auto: KVM (%s is usable, %s loaded)", dev,
                 module_loaded(mods, "kvm_intel") ? "kvm_intel" : "kvm_amd");
    }
}
