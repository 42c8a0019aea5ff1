/* What a disk image file is, from vmove's own reading of its header, before
 * qemu-img or QEMU ever opens it.
 *
 * An image from elsewhere is untrusted: a qcow2 header can name any host
 * file as its backing file or external data file, and a VMDK descriptor can
 * name any host file as an extent (docs/EXPORT-IMPORT.md, "Unsafe images").
 * qemu-img would open those files.  So the format is decided here, from the
 * magic numbers, and the fields that point outside the file are read here;
 * qemu-img is then always run with that explicit format (never probing) and
 * only on images this check called safe.
 *
 * Contract: image_sniff_mem() is pure (buffers in, a verdict out, no I/O);
 * image_sniff_file() reads the first IMAGE_SNIFF_HEAD bytes and the last
 * 512 of a regular file and calls it. */
#ifndef VMOVE_EXCHANGE_IMAGE_SNIFF_H
#define VMOVE_EXCHANGE_IMAGE_SNIFF_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IMAGE_SNIFF_HEAD (1024 * 1024)

enum sniff_format {
    SNIFF_UNKNOWN = 0,   /* no known magic: raw data, or something else */
    SNIFF_QCOW2,
    SNIFF_VHDX,
    SNIFF_VHD,           /* Virtual PC / Hyper-V "vpc" */
    SNIFF_VMDK,          /* a sparse VMDK with its descriptor inside */
    SNIFF_VMDK_TEXT,     /* a VMDK descriptor file: names other files (always unsafe) */
    SNIFF_QED,
};

struct image_sniff {
    enum sniff_format format;
    const char *name;          /* "qcow2", "vhdx", "vhd", "vmdk", "vmdk-descriptor", "qed", "unknown" */
    const char *qemu_format;   /* the -f for qemu-img ("vpc" for VHD); NULL if vmove will not open it */
    uint64_t virtual_size;     /* from the header, 0 if the format keeps it elsewhere */
    bool truncated;            /* the file ends before what its header says it holds */
    bool unsafe;               /* it refers to files outside itself (or may): never open it */
    char why[256];             /* for truncated/unsafe/unsupported: a sentence */
};

/* head: the file's first bytes (up to IMAGE_SNIFF_HEAD); tail: its last 512
 * bytes or NULL if shorter; file_size: its length; base: its file name
 * (a VMDK's own extent must name it).  Returns 0; *out always filled. */
int image_sniff_mem(const uint8_t *head, size_t head_len, const uint8_t *tail, uint64_t file_size,
                    const char *base, struct image_sniff *out);
/* The same for a file (opened O_RDONLY|O_NOFOLLOW|O_NONBLOCK, must be a
 * regular file).  -1 with err if it cannot be read. */
int image_sniff_file(const char *path, struct image_sniff *out, char *err, size_t errlen);
#endif
