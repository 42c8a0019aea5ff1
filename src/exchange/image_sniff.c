/* Image header inspection (see exchange/image_sniff.h).  Offsets are those
 * of the published formats: qcow2 (QEMU docs/interop/qcow2.txt), VHD
 * (Microsoft "Virtual Hard Disk Image Format Specification", the footer),
 * VHDX (MS-VHDX: file type identifier), VMDK (VMware "Virtual Disk Format
 * 1.1": SparseExtentHeader and the embedded descriptor). */
#include "exchange/image_sniff.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define QCOW2_INCOMPAT_DATA_FILE (1ULL << 2)
#define QCOW2_EXT_DATA_FILE 0x44415441u   /* "DATA": external data file name */
#define VHD_DIFFERENCING 4u

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void verdict(struct image_sniff *s, bool unsafe, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void verdict(struct image_sniff *s, bool unsafe, const char *fmt, ...)
{
    if (s->why[0])
        return;   /* the first reason is the one told */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof s->why, fmt, ap);
    va_end(ap);
    if (unsafe)
        s->unsafe = true;
    else
        s->truncated = true;
}

static void set_format(struct image_sniff *s, enum sniff_format f, const char *name, const char *qemu_format)
{
    s->format = f;
    s->name = name;
    s->qemu_format = qemu_format;
}

/* The printable start of a string field, for messages. */
static void printable(char *dst, size_t dstlen, const uint8_t *src, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < dstlen; i++)
        dst[k++] = src[i] >= 0x20 && src[i] < 0x7f ? (char)src[i] : '?';
    dst[k] = 0;
}

/* Header extensions: a (type, length) list padded to 8 bytes, ended by
 * type 0.  An external data file is refused whether or not its
 * incompatible-feature bit is set. */
static void qcow2_extensions(const uint8_t *h, size_t n, size_t off, struct image_sniff *s)
{
    for (int guard = 0; guard < 256 && off + 8 <= n; guard++) {
        uint32_t type = be32(h + off), len = be32(h + off + 4);
        if (type == 0)
            return;
        if (type == QCOW2_EXT_DATA_FILE) {
            char name[128];
            printable(name, sizeof name, h + off + 8, off + 8 + len <= n ? len : n - off - 8);
            verdict(s, true, "qcow2 image names an external data file (%s)", name);
            return;
        }
        uint64_t next = off + 8 + (((uint64_t)len + 7) & ~7ULL);
        if (next > n)
            return;
        off = (size_t)next;
    }
}

static void sniff_qcow2(const uint8_t *h, size_t n, uint64_t size, struct image_sniff *s)
{
    set_format(s, SNIFF_QCOW2, "qcow2", "qcow2");
    if (n < 72) {
        verdict(s, false, "qcow2 header is cut short (%zu bytes)", n);
        return;
    }
    uint32_t version = be32(h + 4), cluster_bits = be32(h + 20);
    uint64_t backing_off = be64(h + 8);
    uint32_t backing_len = be32(h + 16);
    s->virtual_size = be64(h + 24);
    if (version != 2 && version != 3) {
        verdict(s, true, "qcow2 version %u is not one vmove reads", version);
        return;
    }
    if (backing_off) {
        char name[128] = "?";
        if (backing_off < n)
            printable(name, sizeof name, h + backing_off, backing_len < n - backing_off ? backing_len : n - backing_off);
        verdict(s, true, "qcow2 image has a backing file (%s): vmove imports only standalone images", name);
    }
    if (be32(h + 32))
        verdict(s, true, "qcow2 image is encrypted");
    if (version == 3 && n >= 104) {
        if (be64(h + 72) & QCOW2_INCOMPAT_DATA_FILE)
            verdict(s, true, "qcow2 image keeps its data in an external data file");
        qcow2_extensions(h, n, be32(h + 100), s);
    } else if (version == 2) {
        qcow2_extensions(h, n, 72, s);
    }
    if (cluster_bits < 9 || cluster_bits > 21) {
        verdict(s, true, "qcow2 cluster size 2^%u is invalid", cluster_bits);
        return;
    }
    /* The tables the header points at must be inside the file. */
    uint64_t cluster = 1ULL << cluster_bits;
    uint64_t l1_end = be64(h + 40) + (uint64_t)be32(h + 36) * 8;
    uint64_t rc_end = be64(h + 48) + (uint64_t)be32(h + 56) * cluster;
    if (l1_end > size || rc_end > size)
        verdict(s, false, "qcow2 image is truncated: its tables end at byte %llu, the file has %llu",
                (unsigned long long)(l1_end > rc_end ? l1_end : rc_end), (unsigned long long)size);
}

/* createType="..." and the extent lines of an embedded descriptor. */
static void vmdk_descriptor(const char *d, const char *base, struct image_sniff *s)
{
    const char *ct = strstr(d, "createType=\"");
    char type[64] = "";
    if (ct)
        sscanf(ct + 12, "%63[^\"]", type);
    if (strcmp(type, "monolithicSparse") && strcmp(type, "streamOptimized")) {
        verdict(s, true, "VMDK createType \"%s\" may name other files: only monolithicSparse and "
                         "streamOptimized are imported", type);
        return;
    }
    const char *p = strstr(d, "parentFileNameHint");
    if (p)
        verdict(s, true, "VMDK image has a parent (parentFileNameHint)");
    for (const char *line = d; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        char access[16], kind[16], file[256];
        unsigned long long sectors;
        if (sscanf(line, "%15s %llu %15s \"%255[^\"]\"", access, &sectors, kind, file) != 4)
            continue;
        if (strcmp(access, "RW") && strcmp(access, "RDONLY") && strcmp(access, "NOACCESS"))
            continue;
        if (strcmp(kind, "SPARSE") || strcmp(file, base))
            verdict(s, true, "VMDK extent names another file (%s %s \"%s\")", access, kind, file);
    }
}

static void sniff_vmdk(const uint8_t *h, size_t n, uint64_t size, const char *base, struct image_sniff *s)
{
    set_format(s, SNIFF_VMDK, "vmdk", "vmdk");
    if (n < 512) {
        verdict(s, false, "VMDK header is cut short (%zu bytes)", n);
        return;
    }
    s->virtual_size = le64(h + 12) * 512;
    /* In sectors first: a huge field must not wrap around when scaled. */
    uint64_t doff_s = le64(h + 28), dlen_s = le64(h + 36);
    uint64_t doff = doff_s * 512, dlen = dlen_s * 512;
    if (!doff_s || !dlen_s || doff_s > n / 512 || dlen_s > n / 512 || doff + dlen > n) {
        verdict(s, true, "VMDK descriptor is missing or not within the first %d KiB", IMAGE_SNIFF_HEAD / 1024);
        return;
    }
    if (doff + dlen > size) {
        verdict(s, false, "VMDK image is truncated inside its descriptor");
        return;
    }
    char *d = malloc(dlen + 1);
    if (!d)
        abort();
    memcpy(d, h + doff, dlen);
    d[dlen] = 0;
    vmdk_descriptor(d, base, s);
    free(d);
}

/* A text descriptor begins with a comment line or a version line. */
static bool looks_like_vmdk_text(const uint8_t *h, size_t n)
{
    static const char *starts[] = {"# Disk DescriptorFile", "version=1", "version=2", "version=3"};
    for (size_t i = 0; i < sizeof starts / sizeof *starts; i++)
        if (n >= strlen(starts[i]) && !memcmp(h, starts[i], strlen(starts[i])))
            return true;
    return false;
}

static void sniff_vhd(const uint8_t *footer, struct image_sniff *s)
{
    set_format(s, SNIFF_VHD, "vhd", "vpc");
    s->virtual_size = be64(footer + 48);
    if (be32(footer + 60) == VHD_DIFFERENCING)
        verdict(s, true, "VHD image is a differencing disk: it names a parent file");
}

int image_sniff_mem(const uint8_t *head, size_t head_len, const uint8_t *tail, uint64_t file_size,
                    const char *base, struct image_sniff *out)
{
    *out = (struct image_sniff){0};
    set_format(out, SNIFF_UNKNOWN, "unknown", NULL);
    if (head_len >= 4 && !memcmp(head, "QFI\xfb", 4))
        sniff_qcow2(head, head_len, file_size, out);
    else if (head_len >= 8 && !memcmp(head, "vhdxfile", 8))
        set_format(out, SNIFF_VHDX, "vhdx", "vhdx");
    else if (head_len >= 4 && !memcmp(head, "KDMV", 4))
        sniff_vmdk(head, head_len, file_size, base ? base : "", out);
    else if (head_len >= 4 && !memcmp(head, "QED\0", 4)) {
        set_format(out, SNIFF_QED, "qed", NULL);
        verdict(out, true, "QED images may name backing files and are not imported");
    } else if (head_len >= 4 && !memcmp(head, "COWD", 4)) {
        set_format(out, SNIFF_VMDK_TEXT, "vmdk-cowd", NULL);
        verdict(out, true, "ESX COWD sparse extents are not imported");
    } else if (looks_like_vmdk_text(head, head_len)) {
        set_format(out, SNIFF_VMDK_TEXT, "vmdk-descriptor", NULL);
        verdict(out, true, "a VMDK descriptor file names its extents as other files");
    } else if (tail && !memcmp(tail, "conectix", 8))
        sniff_vhd(tail, out);
    else if (head_len >= 512 && !memcmp(head, "conectix", 8)) {
        /* A dynamic VHD keeps a copy of its footer at the start; the end was cut. */
        sniff_vhd(head, out);
        verdict(out, false, "VHD image is truncated: its footer is missing at the end");
    }
    return 0;
}

int image_sniff_file(const char *path, struct image_sniff *out, char *err, size_t errlen)
{
    *out = (struct image_sniff){0};
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "not a regular file");
        close(fd);
        return -1;
    }
    uint8_t *head = malloc(IMAGE_SNIFF_HEAD);
    uint8_t tail[512];
    if (!head)
        abort();
    ssize_t n = pread(fd, head, IMAGE_SNIFF_HEAD, 0);
    bool has_tail = st.st_size >= 512 && pread(fd, tail, 512, st.st_size - 512) == 512;
    int rc = 0;
    if (n < 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        rc = -1;
    } else {
        const char *base = strrchr(path, '/');
        image_sniff_mem(head, (size_t)n, has_tail ? tail : NULL, (uint64_t)st.st_size, base ? base + 1 : path, out);
    }
    free(head);
    close(fd);
    return rc;
}
