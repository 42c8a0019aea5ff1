/* libFuzzer target: vmove's own image header checks (exchange/image_sniff.h),
 * which read untrusted files before anything else does.  Any input gets a
 * verdict; an unsafe or truncated one says why; a format vmove would hand
 * to qemu-img is one of the four it converts. */
#include <stdlib.h>
#include <string.h>

#include "exchange/image_sniff.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct image_sniff s;
    const unsigned char *tail = size >= 512 ? data + size - 512 : NULL;
    /* The file is as long as the input, or claims more (a cut read). */
    uint64_t file_size = size + (size ? data[0] % 2 : 0) * 4096;
    image_sniff_mem(data, size, tail, file_size, "x.vmdk", &s);
    if ((s.unsafe || s.truncated) && !s.why[0])
        abort();
    if (!s.name || strlen(s.why) >= sizeof s.why)
        abort();
    if (s.qemu_format && strcmp(s.qemu_format, "qcow2") && strcmp(s.qemu_format, "vhdx") &&
        strcmp(s.qemu_format, "vpc") && strcmp(s.qemu_format, "vmdk"))
        abort();
    if (s.format == SNIFF_VMDK_TEXT && !s.unsafe)
        abort();   /* a descriptor file always names other files */
    return 0;
}
