/*
 * vmove-guest - workload and self-check program of the vmove test guest.
 *
 * It runs inside the busybox initramfs built by guest/build-initrd.sh (see
 * docs/GUEST.md).  It reads its configuration from the kernel command line,
 * keeps guest RAM and virtio disks busy with content that can be derived
 * again later, answers a UDP echo port, and serves a line protocol on a
 * virtio-serial port so that the host can ask, after a migration, "is
 * everything still exactly what you wrote?".
 *
 * Every byte written is a pure function of (seed, position, generation or
 * sequence number).  Those counters live in guest RAM, so they migrate
 * together with the data they describe, and verify needs no host state.
 *
 * Build: cc -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -O2 -static
 * Host-side checks: vmove-guest --self-test
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAGE_BYTES    4096u       /* mem workload unit (x86 page) */
#define BLOCK_BYTES   4096u       /* disk workload unit */
#define MAX_DISKS     8
#define MARKER_MAX    64
#define MARKER_OFF    64          /* marker offset in every page and block */
#define SLICE_MS      10          /* rate limiter sleep granularity */
#define BURST_S       0.05        /* at most 50 ms of saved-up budget */
#define MEM_CHUNK     64          /* pages rewritten per gate hold */
#define DISK_CHUNK    16          /* blocks written per limiter round */
#define VERIFY_CHUNK  256         /* pages / blocks checked per gate hold */
#define RATE_MAX      (-1)        /* "max": no rate limit */
#define PORT_NAME     "org.vmove.guest.0"
#define LINE_MAX_LEN  1024

#define PAGE_MAGIC    0x47504d56u              /* "VMPG" little endian */
#define BLOCK_MAGIC   0x4b4c4245564f4d56ull    /* "VMOVEBLK" little endian */
#define BLOCK_VERSION 1u
#define GOLDEN        0x9e3779b97f4a7c15ull
#define DOMAIN_MEM    1                        /* keeps mem and disk streams apart */
#define DOMAIN_DISK   2

/* ------------------------------------------------------------------ */
/* Small helpers                                                      */
/* ------------------------------------------------------------------ */

static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logmsg(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One write per line so lines from threads do not interleave. */
    dprintf(STDERR_FILENO, "vmove-guest: %s\n", line);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void *xaligned(size_t bytes)
{
    void *p = aligned_alloc(PAGE_BYTES, bytes);
    if (!p) {
        logmsg("out of memory allocating %zu bytes", bytes);
        exit(1);
    }
    return p;
}

/* splitmix64 finaliser: cheap, well mixed, and trivially re-implementable
 * on the host side should a host tool want to check a block. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t hash4(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
    uint64_t h = mix64(a + GOLDEN);
    h = mix64(h ^ (b + GOLDEN));
    h = mix64(h ^ (c + GOLDEN));
    return mix64(h ^ (d + GOLDEN));
}

/* Fills len bytes with the splitmix64 stream that starts at state. */
static void fill_random(uint8_t *p, size_t len, uint64_t state)
{
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        state += GOLDEN;
        uint64_t z = mix64(state);
        memcpy(p + i, &z, 8);
    }
    if (i < len) {
        state += GOLDEN;
        uint64_t z = mix64(state);
        memcpy(p + i, &z, len - i);
    }
}

/* CRC-32 (IEEE 802.3, as zlib.crc32), table driven. */
static uint32_t crc_table[256];

static void crc32_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_table[n] = c;
    }
}

static uint32_t crc32_buf(const uint8_t *p, size_t len)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < len; i++)
        c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

/* ------------------------------------------------------------------ */
/* Configuration (kernel command line)                                */
/* ------------------------------------------------------------------ */

struct config {
    uint64_t seed;
    uint64_t mem_mib;
    int64_t mem_rate;               /* MiB/s, 0 static, RATE_MAX */
    bool mem_compressible;
    bool mem_touch;                 /* a rewrite changes only the page's generation word */
    char disks[MAX_DISKS][64];
    int ndisks;
    int64_t disk_rate;              /* KiB/s per disk, 0 paused, RATE_MAX */
    bool disk_resume;               /* go on from the blocks an earlier boot wrote */
    int echo_port;                  /* 0: no echo server */
    uint8_t marker[MARKER_MAX];
    size_t marker_len;
    char error[256];                /* first bad key, reported in status */
};

static void config_defaults(struct config *c)
{
    memset(c, 0, sizeof *c);
    c->seed = 1;
    c->disk_rate = 1024;
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    if (!*s || *s == '-')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

/* A rate is a non-negative integer or "max". */
static bool parse_rate(const char *s, int64_t *out)
{
    uint64_t v;
    if (strcmp(s, "max") == 0) {
        *out = RATE_MAX;
        return true;
    }
    if (!parse_u64(s, &v) || v > INT64_MAX / 2)
        return false;
    *out = (int64_t)v;
    return true;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool parse_marker(const char *s, struct config *c)
{
    size_t n = strlen(s);
    if (n == 0 || n % 2 || n / 2 > MARKER_MAX)
        return false;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        c->marker[i] = (uint8_t)(hi << 4 | lo);
    }
    c->marker_len = n / 2;
    return true;
}

static bool parse_disks(const char *s, struct config *c)
{
    char tmp[MAX_DISKS * 64];
    snprintf(tmp, sizeof tmp, "%s", s);
    c->ndisks = 0;
    for (char *save, *tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (c->ndisks == MAX_DISKS || strlen(tok) >= sizeof c->disks[0])
            return false;
        snprintf(c->disks[c->ndisks++], sizeof c->disks[0], "%s", tok);
    }
    return c->ndisks > 0;
}

/* Applies one "vmove.KEY=VALUE"; returns false if the value is bad. */
static bool apply_key(struct config *c, const char *key, const char *val)
{
    uint64_t v;
    if (strcmp(key, "seed") == 0)
        return parse_u64(val, &c->seed);
    if (strcmp(key, "disk_resume") == 0) {
        c->disk_resume = strcmp(val, "0") != 0;
        return true;
    }
    if (strcmp(key, "mem") == 0) {
        if (!parse_u64(val, &v) || v > (1u << 20))
            return false;
        c->mem_mib = v;
        return true;
    }
    if (strcmp(key, "mem_rate") == 0)
        return parse_rate(val, &c->mem_rate);
    if (strcmp(key, "mem_pattern") == 0) {
        if (strcmp(val, "random") && strcmp(val, "compressible") && strcmp(val, "touch"))
            return false;
        c->mem_compressible = strcmp(val, "compressible") == 0;
        c->mem_touch = strcmp(val, "touch") == 0;
        return true;
    }
    if (strcmp(key, "disk") == 0)
        return parse_disks(val, c);
    if (strcmp(key, "disk_rate") == 0)
        return parse_rate(val, &c->disk_rate);
    if (strcmp(key, "echo") == 0) {
        if (!parse_u64(val, &v) || v == 0 || v > 65535)
            return false;
        c->echo_port = (int)v;
        return true;
    }
    if (strcmp(key, "marker") == 0)
        return parse_marker(val, c);
    /* Keys consumed by /init (networking), not by this program. */
    return strcmp(key, "ip") == 0 || strcmp(key, "gw") == 0;
}

/* Parses a kernel command line.  Bad values are logged, remembered in
 * c->error and otherwise ignored: a guest that runs with defaults and says
 * what was wrong is easier to debug than one that refuses to start. */
static void parse_cmdline(const char *line, struct config *c)
{
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", line);
    for (char *save, *tok = strtok_r(buf, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save)) {
        if (strncmp(tok, "vmove.", 6) != 0)
            continue;
        char *key = tok + 6, *eq = strchr(key, '=');
        if (!eq) {
            logmsg("cmdline: ignoring %s (no value)", tok);
            continue;
        }
        *eq = '\0';
        if (!apply_key(c, key, eq + 1)) {
            logmsg("cmdline: bad or unknown vmove.%s=%s, ignored", key, eq + 1);
            if (!c->error[0])
                snprintf(c->error, sizeof c->error, "bad vmove.%s=%s", key, eq + 1);
        }
    }
}

/* ------------------------------------------------------------------ */
/* Patterns: memory pages and disk blocks                             */
/* ------------------------------------------------------------------ */

struct pattern {
    uint64_t seed;
    bool compressible;
    bool touch;       /* body fixed at generation 0; rewrites bump the header's generation only */
    uint8_t marker[MARKER_MAX];
    size_t marker_len;
};

/* Page layout: u32 PAGE_MAGIC, u32 generation, u64 page index, then the
 * body; the marker (if any) overwrites bytes [64, 64+len). */
static const char COMPRESSIBLE_TEXT[] =
    "vmove-guest compressible page: the quick brown fox jumps over the lazy dog. ";

static void page_fill(uint8_t *p, const struct pattern *pat, uint64_t idx, uint32_t gen)
{
    uint64_t state = hash4(DOMAIN_MEM, pat->seed, idx, pat->touch ? 0 : gen);
    if (pat->compressible) {
        /* Mostly repeated text so zlib/zstd shrink it a lot, plus eight
         * varying words so no two pages or generations are identical. */
        size_t tl = sizeof COMPRESSIBLE_TEXT - 1;
        for (size_t off = 0; off < PAGE_BYTES; off += tl)
            memcpy(p + off, COMPRESSIBLE_TEXT, off + tl <= PAGE_BYTES ? tl : PAGE_BYTES - off);
        for (size_t k = 0; k < PAGE_BYTES / 512; k++) {
            uint64_t w = mix64(state + k * GOLDEN);
            memcpy(p + k * 512 + 256, &w, 8);
        }
    } else {
        fill_random(p, PAGE_BYTES, state);
    }
    uint32_t magic = PAGE_MAGIC;
    memcpy(p, &magic, 4);
    memcpy(p + 4, &gen, 4);
    memcpy(p + 8, &idx, 8);
    if (pat->marker_len)
        memcpy(p + MARKER_OFF, pat->marker, pat->marker_len);
}

/* Returns 0 if page p is page idx at generation gen; otherwise describes
 * the mismatch in why.  scratch is one page of working space. */
static int page_check(const uint8_t *p, const struct pattern *pat, uint64_t idx, uint32_t gen,
                      uint8_t *scratch, char *why, size_t wlen)
{
    page_fill(scratch, pat, idx, gen);
    if (memcmp(p, scratch, PAGE_BYTES) == 0)
        return 0;
    uint32_t magic, found_gen;
    uint64_t found_idx;
    memcpy(&magic, p, 4);
    memcpy(&found_gen, p + 4, 4);
    memcpy(&found_idx, p + 8, 8);
    size_t off = 0;
    while (off < PAGE_BYTES && p[off] == scratch[off])
        off++;
    if (magic != PAGE_MAGIC)
        snprintf(why, wlen, "mem page %" PRIu64 " expected gen %" PRIu32 ", no page header", idx, gen);
    else if (found_gen != gen || found_idx != idx)
        snprintf(why, wlen, "mem page %" PRIu64 " expected gen %" PRIu32 ", found page %" PRIu64 " gen %" PRIu32,
                 idx, gen, found_idx, found_gen);
    else
        snprintf(why, wlen, "mem page %" PRIu64 " expected gen %" PRIu32 ", content differs at byte %zu",
                 idx, gen, off);
    return -1;
}

/* Block layout (little endian): the header below, a payload derived from
 * (seed, dev, seq) with the marker at [64, 64+len), CRC-32 of bytes
 * [0, 4092) in the last four bytes. */
struct block_header {
    uint64_t magic;
    uint64_t seed;
    uint32_t dev;
    uint32_t version;
    uint64_t block;
    uint64_t seq;
};
_Static_assert(sizeof(struct block_header) == 40, "block header must be packed");
#define BLOCK_CRC_OFF (BLOCK_BYTES - 4)

static void block_build(uint8_t *b, const struct pattern *pat, uint32_t dev, uint64_t block, uint64_t seq)
{
    struct block_header h = { BLOCK_MAGIC, pat->seed, dev, BLOCK_VERSION, block, seq };
    memcpy(b, &h, sizeof h);
    fill_random(b + sizeof h, BLOCK_CRC_OFF - sizeof h, hash4(DOMAIN_DISK, pat->seed, dev, seq));
    if (pat->marker_len)
        memcpy(b + MARKER_OFF, pat->marker, pat->marker_len);
    uint32_t crc = crc32_buf(b, BLOCK_CRC_OFF);
    memcpy(b + BLOCK_CRC_OFF, &crc, 4);
}

/* Returns 0 if b is block `block` of disk `dev` written with seq; otherwise
 * describes the first problem in why.  scratch is one block. */
static int block_check(const uint8_t *b, const struct pattern *pat, const char *name, uint32_t dev,
                       uint64_t block, uint64_t seq, uint8_t *scratch, char *why, size_t wlen)
{
    struct block_header h;
    uint32_t crc;
    memcpy(&h, b, sizeof h);
    memcpy(&crc, b + BLOCK_CRC_OFF, 4);
    const char *what = NULL;
    if (h.magic != BLOCK_MAGIC) {
        snprintf(why, wlen, "disk %s block %" PRIu64 " seq %" PRIu64 ": no block header", name, block, seq);
        return -1;
    }
    if (crc != crc32_buf(b, BLOCK_CRC_OFF))
        what = "bad crc";
    else if (h.seed != pat->seed || h.dev != dev || h.block != block)
        what = "header names another seed/dev/block";
    if (what) {
        snprintf(why, wlen, "disk %s block %" PRIu64 " seq %" PRIu64 ": %s (found dev %" PRIu32
                 " block %" PRIu64 " seq %" PRIu64 ")", name, block, seq, what, h.dev, h.block, h.seq);
        return -1;
    }
    if (h.seq != seq) {
        snprintf(why, wlen, "disk %s block %" PRIu64 " seq %" PRIu64 ": found seq %" PRIu64,
                 name, block, seq, h.seq);
        return -1;
    }
    block_build(scratch, pat, dev, block, seq);
    if (memcmp(b, scratch, BLOCK_BYTES) != 0) {
        snprintf(why, wlen, "disk %s block %" PRIu64 " seq %" PRIu64 ": payload differs",
                 name, block, seq);
        return -1;
    }
    return 0;
}

/* Block 0 is never written (kept free for a label); data blocks are
 * 1..nblocks-1 and sequence number s goes to block 1 + s % (nblocks-1). */
static uint64_t seq_to_block(uint64_t seq, uint64_t nblocks)
{
    return 1 + seq % (nblocks - 1);
}

/* The latest seq written to `block` after `written` completed writes
 * (seqs 0..written-1); false if the block was never written. */
static bool block_latest_seq(uint64_t block, uint64_t nblocks, uint64_t written, uint64_t *seq)
{
    uint64_t ndata = nblocks - 1;
    if (block == 0 || block >= nblocks || written <= block - 1)
        return false;
    uint64_t j = block - 1;
    *seq = j + ndata * ((written - 1 - j) / ndata);
    return true;
}

/* ------------------------------------------------------------------ */
/* Gate: writers hold it per small chunk, verify takes it with         */
/* priority so a writer at "max" rate cannot starve it.               */
/* ------------------------------------------------------------------ */

struct gate {
    pthread_mutex_t mu;
    atomic_int waiters;
};

static void gate_init(struct gate *g)
{
    pthread_mutex_init(&g->mu, NULL);
    atomic_init(&g->waiters, 0);
}

static void gate_enter(struct gate *g)
{
    while (atomic_load(&g->waiters) > 0)
        sleep_ms(1);
    pthread_mutex_lock(&g->mu);
}

static void gate_leave(struct gate *g)
{
    pthread_mutex_unlock(&g->mu);
}

static void gate_enter_priority(struct gate *g)
{
    atomic_fetch_add(&g->waiters, 1);
    pthread_mutex_lock(&g->mu);
}

static void gate_leave_priority(struct gate *g)
{
    pthread_mutex_unlock(&g->mu);
    atomic_fetch_sub(&g->waiters, 1);
}

/* ------------------------------------------------------------------ */
/* Rate limiter: a token bucket refilled from CLOCK_MONOTONIC.         */
/* ------------------------------------------------------------------ */

struct limiter {
    double tokens;
    double last;
};

/* Returns how many units may be done now (at most max) at `rate` in user
 * units per second, where one user unit is units_per_rate work units. */
static uint64_t limiter_take(struct limiter *l, int64_t rate, double units_per_rate, uint64_t max)
{
    double t = now_s(), dt = t - l->last;
    l->last = t;
    if (rate == RATE_MAX)
        return max;
    if (rate <= 0) {
        l->tokens = 0;
        return 0;
    }
    double per_s = (double)rate * units_per_rate;
    double cap = per_s * BURST_S < 1 ? 1 : per_s * BURST_S;
    l->tokens += per_s * dt;
    if (l->tokens > cap)
        l->tokens = cap;
    uint64_t n = (uint64_t)l->tokens;
    if (n > max)
        n = max;
    l->tokens -= (double)n;
    return n;
}

/* ------------------------------------------------------------------ */
/* Global state                                                       */
/* ------------------------------------------------------------------ */

struct disk {
    char name[64];
    char path[160];
    uint32_t index;                 /* position in vmove.disk= list */
    int wfd, rfd;                   /* O_DIRECT|O_DSYNC writer, O_DIRECT reader */
    uint64_t nblocks;
    struct gate gate;               /* held across each write and each verify chunk */
    _Atomic uint64_t written;       /* completed writes == next seq */
    char error[200];                /* sticky first error; under gate */
};

static struct {
    struct config cfg;
    struct pattern pat;
    uint8_t *pages;                 /* mem workload region */
    uint32_t *gens;                 /* per-page generation, also guest RAM */
    uint64_t npages;
    struct gate mem_gate;
    _Atomic int64_t mem_rate;
    _Atomic uint64_t pages_rewritten;
    struct disk disks[MAX_DISKS];
    int ndisks;
    _Atomic int64_t disk_rate;
    _Atomic uint64_t echo_packets;
    char echo_error[160];
} G;

static void pattern_from_config(struct pattern *pat, const struct config *c)
{
    pat->seed = c->seed;
    pat->compressible = c->mem_compressible;
    pat->touch = c->mem_touch;
    memcpy(pat->marker, c->marker, c->marker_len);
    pat->marker_len = c->marker_len;
}

static void lower_priority(void)
{
    /* Workers run at nice 5 so the control channel always gets the CPU
     * promptly, even with a single vCPU and mem_rate=max. */
    setpriority(PRIO_PROCESS, (id_t)gettid(), 5);
}

/* ------------------------------------------------------------------ */
/* mem workload                                                       */
/* ------------------------------------------------------------------ */

static void *map_anon(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        logmsg("mmap %zu bytes: %s", bytes, strerror(errno));
        exit(1);
    }
    return p;
}

/* Allocates and fills npages at generation 0 (which also touches them). */
static void mem_setup(uint64_t npages)
{
    G.npages = npages;
    gate_init(&G.mem_gate);
    if (!npages)
        return;
    G.pages = map_anon(npages * PAGE_BYTES);
    G.gens = map_anon(npages * sizeof *G.gens);
    for (uint64_t i = 0; i < npages; i++)
        page_fill(G.pages + i * PAGE_BYTES, &G.pat, i, 0);
}

static void *mem_writer(void *arg)
{
    (void)arg;
    lower_priority();
    struct limiter lim = { 0, now_s() };
    uint64_t rng = hash4(DOMAIN_MEM, G.pat.seed, (uint64_t)time(NULL), 0xabc);
    for (;;) {
        uint64_t n = limiter_take(&lim, atomic_load(&G.mem_rate), 1048576.0 / PAGE_BYTES, MEM_CHUNK);
        if (n == 0) {
            sleep_ms(SLICE_MS);
            continue;
        }
        /* Random pages, so the dirty set is spread over the whole region
         * like a real workload rather than a sliding window. */
        gate_enter(&G.mem_gate);
        for (uint64_t i = 0; i < n; i++) {
            rng += GOLDEN;
            uint64_t idx = mix64(rng) % G.npages;
            uint32_t gen = ++G.gens[idx];
            if (G.pat.touch)   /* one store dirties the page: the fastest a guest can dirty memory */
                memcpy(G.pages + idx * PAGE_BYTES + 4, &gen, 4);
            else
                page_fill(G.pages + idx * PAGE_BYTES, &G.pat, idx, gen);
        }
        gate_leave(&G.mem_gate);
        atomic_fetch_add(&G.pages_rewritten, n);
    }
    return NULL;
}

/* Checks every page against its generation, a chunk at a time: the writer
 * keeps running between chunks, and each page is consistent whenever the
 * gate is free. */
static int mem_verify(uint64_t *checked, char *why, size_t wlen)
{
    uint8_t *scratch = xaligned(PAGE_BYTES);
    int rc = 0;
    for (uint64_t base = 0; base < G.npages && rc == 0; base += VERIFY_CHUNK) {
        uint64_t end = base + VERIFY_CHUNK < G.npages ? base + VERIFY_CHUNK : G.npages;
        gate_enter_priority(&G.mem_gate);
        for (uint64_t i = base; i < end && rc == 0; i++) {
            rc = page_check(G.pages + i * PAGE_BYTES, &G.pat, i, G.gens[i], scratch, why, wlen);
            if (rc == 0)
                (*checked)++;
        }
        gate_leave_priority(&G.mem_gate);
    }
    free(scratch);
    return rc;
}

/* ------------------------------------------------------------------ */
/* disk workload                                                      */
/* ------------------------------------------------------------------ */

static void disk_set_error(struct disk *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void disk_set_error(struct disk *d, const char *fmt, ...)
{
    if (d->error[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->error, sizeof d->error, fmt, ap);
    va_end(ap);
    logmsg("disk %s: %s", d->name, d->error);
}

static uint64_t device_size(int fd)
{
    struct stat st;
    uint64_t bytes = 0;
    if (fstat(fd, &st) != 0)
        return 0;
    if (S_ISBLK(st.st_mode)) {
        if (ioctl(fd, BLKGETSIZE64, &bytes) != 0)
            return 0;
        return bytes;
    }
    return (uint64_t)st.st_size;
}

/* Opens a disk; "vda" means /dev/vda, a name with a '/' is a path (handy for
 * running on a host against a file).  Waits a while for the device node:
 * virtio_blk may still be probing when we start. */
static void disk_open(struct disk *d, const char *name, uint32_t index)
{
    snprintf(d->name, sizeof d->name, "%s", name);
    snprintf(d->path, sizeof d->path, strchr(name, '/') ? "%s" : "/dev/%s", name);
    d->index = index;
    d->wfd = d->rfd = -1;
    gate_init(&d->gate);
    atomic_init(&d->written, 0);
    for (int tries = 0; tries < 100; tries++) {
        d->wfd = open(d->path, O_RDWR | O_DIRECT | O_DSYNC | O_CLOEXEC);
        if (d->wfd >= 0 || errno != ENOENT)
            break;
        sleep_ms(100);
    }
    if (d->wfd < 0) {
        disk_set_error(d, "open %s: %s", d->path, strerror(errno));
        return;
    }
    d->rfd = open(d->path, O_RDONLY | O_DIRECT | O_CLOEXEC);
    d->nblocks = device_size(d->wfd) / BLOCK_BYTES;
    if (d->rfd < 0)
        disk_set_error(d, "open %s for reading: %s", d->path, strerror(errno));
    else if (d->nblocks < 2)
        disk_set_error(d, "%s is too small (%" PRIu64 " blocks)", d->path, d->nblocks);
}

static bool disk_usable(const struct disk *d)
{
    return d->wfd >= 0 && d->rfd >= 0 && d->nblocks >= 2;
}

/* Writes the next sequence number.  `written` moves only after pwrite()
 * returned, so verify never expects a block the device may not hold. */
static bool disk_write_next(struct disk *d, uint8_t *buf)
{
    bool ok = true;
    gate_enter(&d->gate);
    uint64_t seq = atomic_load(&d->written), blk = seq_to_block(seq, d->nblocks);
    block_build(buf, &G.pat, d->index, blk, seq);
    ssize_t r = pwrite(d->wfd, buf, BLOCK_BYTES, (off_t)(blk * BLOCK_BYTES));
    if (r == (ssize_t)BLOCK_BYTES) {
        atomic_store(&d->written, seq + 1);
    } else {
        disk_set_error(d, "write block %" PRIu64 " seq %" PRIu64 ": %s", blk, seq,
                       r < 0 ? strerror(errno) : "short write");
        ok = false;
    }
    gate_leave(&d->gate);
    return ok;
}

/* After a restart on another host (cluster failover): the disk holds what
 * an earlier boot of this guest wrote.  Every block with a header must be
 * intact; the newest sequence number found is where writing goes on.  The
 * one write that was in flight when the old QEMU died was never
 * acknowledged: it may be torn, and is written again first.  From then on
 * `verify` checks the old blocks too, so an acknowledged write that the
 * restart lost (or a second writer) fails it. */
static void disk_resume(struct disk *d)
{
    uint8_t *buf = xaligned(BLOCK_BYTES), *scratch = xaligned(BLOCK_BYTES);
    uint64_t max = 0, valid = 0, torn = 0;
    bool any = false;
    char why[256];
    for (uint64_t b = 1; b < d->nblocks; b++) {
        if (pread(d->rfd, buf, BLOCK_BYTES, (off_t)(b * BLOCK_BYTES)) != (ssize_t)BLOCK_BYTES) {
            disk_set_error(d, "resume: read block %" PRIu64 ": %s", b, strerror(errno));
            break;
        }
        struct block_header h;
        memcpy(&h, buf, sizeof h);
        if (h.magic != BLOCK_MAGIC)
            continue;
        if (block_check(buf, &G.pat, d->name, d->index, b, h.seq, scratch, why, sizeof why) != 0) {
            torn++;
            continue;
        }
        valid++;
        if (!any || h.seq > max)
            max = h.seq;
        any = true;
    }
    if (any)
        atomic_store(&d->written, max + 1);
    logmsg("disk %s: resumed at seq %" PRIu64 " (%" PRIu64 " intact blocks, %" PRIu64 " torn)",
           d->name, any ? max + 1 : 0, valid, torn);
    if (torn > 1)
        disk_set_error(d, "resume: %" PRIu64 " torn blocks (at most the one in-flight write may be)", torn);
    /* Rewrite the in-flight write's block (torn or not) before anyone verifies. */
    if (any && !d->error[0])
        disk_write_next(d, buf);
    free(buf);
    free(scratch);
}

static void *disk_writer(void *arg)
{
    struct disk *d = arg;
    lower_priority();
    uint8_t *buf = xaligned(BLOCK_BYTES);
    struct limiter lim = { 0, now_s() };
    for (;;) {
        uint64_t n = limiter_take(&lim, atomic_load(&G.disk_rate), 1024.0 / BLOCK_BYTES, DISK_CHUNK);
        if (n == 0) {
            sleep_ms(SLICE_MS);
            continue;
        }
        for (uint64_t i = 0; i < n; i++) {
            if (!disk_write_next(d, buf)) {
                sleep_ms(1000);     /* do not spin on a failing device */
                break;
            }
        }
    }
    return NULL;
}

/* Checks up to VERIFY_CHUNK written blocks from block b on, with the gate
 * held so `written` and the device agree.  Returns 0 to go on, 1 when past
 * the last written block, -1 on a mismatch (described in why). */
static int disk_verify_chunk(struct disk *d, uint64_t b, uint8_t *buf, uint8_t *scratch,
                             uint64_t *checked, char *why, size_t wlen)
{
    uint64_t written = atomic_load(&d->written), ndata = d->nblocks - 1;
    uint64_t limit = 1 + (written < ndata ? written : ndata);
    if (d->error[0]) {
        snprintf(why, wlen, "disk %s: %s", d->name, d->error);
        return -1;
    }
    if (b >= limit)
        return 1;
    uint64_t k = limit - b < VERIFY_CHUNK ? limit - b : VERIFY_CHUNK;
    ssize_t r = pread(d->rfd, buf, k * BLOCK_BYTES, (off_t)(b * BLOCK_BYTES));
    if (r != (ssize_t)(k * BLOCK_BYTES)) {
        snprintf(why, wlen, "disk %s read blocks %" PRIu64 "+%" PRIu64 ": %s", d->name, b, k,
                 r < 0 ? strerror(errno) : "short read");
        return -1;
    }
    for (uint64_t i = 0; i < k; i++) {
        uint64_t seq;
        if (!block_latest_seq(b + i, d->nblocks, written, &seq))
            continue;
        if (block_check(buf + i * BLOCK_BYTES, &G.pat, d->name, d->index, b + i, seq,
                        scratch, why, wlen) != 0)
            return -1;
        (*checked)++;
    }
    return 0;
}

/* Reads back every written block with O_DIRECT (the device, not the page
 * cache) and checks it against the latest seq that went to it. */
static int disk_verify(struct disk *d, uint64_t *checked, char *why, size_t wlen)
{
    if (!disk_usable(d)) {
        snprintf(why, wlen, "disk %s unusable: %s", d->name, d->error);
        return -1;
    }
    uint8_t *buf = xaligned((size_t)VERIFY_CHUNK * BLOCK_BYTES), *scratch = xaligned(BLOCK_BYTES);
    int rc = 0;
    for (uint64_t b = 1; rc == 0; b += VERIFY_CHUNK) {
        gate_enter_priority(&d->gate);
        rc = disk_verify_chunk(d, b, buf, scratch, checked, why, wlen);
        gate_leave_priority(&d->gate);
    }
    free(buf);
    free(scratch);
    return rc > 0 ? 0 : rc;
}

/* ------------------------------------------------------------------ */
/* echo workload                                                      */
/* ------------------------------------------------------------------ */

/* Binds a UDP socket on every address: IPv6 dual stack, IPv4 as fallback. */
static int echo_bind(int port)
{
    int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        int off = 0;
        struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port),
                                   .sin6_addr = IN6ADDR_ANY_INIT };
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
        if (bind(fd, (struct sockaddr *)&a6, sizeof a6) == 0)
            return fd;
        close(fd);
    }
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a4 = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_ANY) };
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a4, sizeof a4) == 0)
        return fd;
    snprintf(G.echo_error, sizeof G.echo_error, "bind udp port %d: %s", port, strerror(errno));
    logmsg("echo: %s", G.echo_error);
    if (fd >= 0)
        close(fd);
    return -1;
}

static void *echo_server(void *arg)
{
    int fd = *(int *)arg;
    static uint8_t buf[65536];
    for (;;) {
        struct sockaddr_storage from;
        socklen_t flen = sizeof from;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
        if (n < 0) {
            if (errno != EINTR)
                sleep_ms(100);
            continue;
        }
        if (sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, flen) == n)
            atomic_fetch_add(&G.echo_packets, 1);
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Control commands                                                   */
/* ------------------------------------------------------------------ */

static uint64_t uptime_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Appends s as a JSON string; anything unusual becomes '?'. */
static size_t json_str(char *out, size_t n, size_t pos, const char *s)
{
    pos += (size_t)snprintf(out + pos, pos < n ? n - pos : 0, "\"");
    for (; *s && pos + 2 < n; s++)
        out[pos++] = (*s == '"' || *s == '\\' || (unsigned char)*s < 0x20) ? '?' : *s;
    pos += (size_t)snprintf(out + pos, pos < n ? n - pos : 0, "\"");
    return pos;
}

#define APPEND(...) (pos += (size_t)snprintf(out + pos, pos < n ? n - pos : 0, __VA_ARGS__))

static void cmd_status(char *out, size_t n)
{
    size_t pos = 0;
    APPEND("{\"uptime_ms\":%" PRIu64 ",\"seed\":%" PRIu64 ",\"mem_mib\":%" PRIu64
           ",\"mem_rate\":%" PRId64 ",\"mem_pattern\":\"%s\",\"pages_rewritten\":%" PRIu64
           ",\"disk_rate\":%" PRId64 ",\"disk_blocks_written\":{",
           uptime_ms(), G.pat.seed, G.npages / (1048576 / PAGE_BYTES), atomic_load(&G.mem_rate),
           G.pat.touch ? "touch" : G.pat.compressible ? "compressible" : "random", atomic_load(&G.pages_rewritten),
           atomic_load(&G.disk_rate));
    for (int i = 0; i < G.ndisks; i++) {
        APPEND("%s", i ? "," : "");
        pos = json_str(out, n, pos, G.disks[i].name);
        APPEND(":%" PRIu64, atomic_load(&G.disks[i].written));
    }
    APPEND("},\"echo_port\":%d,\"echo_packets\":%" PRIu64, G.cfg.echo_port, atomic_load(&G.echo_packets));
    if (G.cfg.error[0]) {
        APPEND(",\"config_error\":");
        pos = json_str(out, n, pos, G.cfg.error);
    }
    APPEND("}");
}

static void cmd_verify(char *out, size_t n)
{
    char why[400] = "";
    uint64_t pages = 0, blocks = 0;
    if (mem_verify(&pages, why, sizeof why) != 0) {
        snprintf(out, n, "fail %s", why);
        return;
    }
    for (int i = 0; i < G.ndisks; i++) {
        if (disk_verify(&G.disks[i], &blocks, why, sizeof why) != 0) {
            snprintf(out, n, "fail %s", why);
            return;
        }
    }
    snprintf(out, n, "ok mem_pages=%" PRIu64 " disk_blocks=%" PRIu64, pages, blocks);
}

static struct disk *disk_by_name(const char *name)
{
    for (int i = 0; i < G.ndisks; i++)
        if (strcmp(G.disks[i].name, name) == 0)
            return &G.disks[i];
    return NULL;
}

/* Test hook: damages data behind the writers' back so that tests can
 * prove that verify notices.  A later rewrite of the same page or block
 * heals the damage, so stop the writers (rate 0) first. */
static void cmd_corrupt(char *args, char *out, size_t n)
{
    char what[16] = "", name[64] = "";
    uint64_t at;
    if (sscanf(args, "mem %" SCNu64, &at) == 1) {
        if (at >= G.npages) {
            snprintf(out, n, "error no mem page %" PRIu64, at);
            return;
        }
        gate_enter_priority(&G.mem_gate);
        G.pages[at * PAGE_BYTES + 100] ^= 0xff;
        gate_leave_priority(&G.mem_gate);
        snprintf(out, n, "ok");
        return;
    }
    struct disk *d = NULL;
    if (sscanf(args, "%15s %63s %" SCNu64, what, name, &at) != 3 || strcmp(what, "disk") ||
        !(d = disk_by_name(name)) || !disk_usable(d) || at == 0 || at >= d->nblocks) {
        snprintf(out, n, "error usage: corrupt mem PAGE | corrupt disk NAME BLOCK(>=1)");
        return;
    }
    uint8_t *buf = xaligned(BLOCK_BYTES);
    gate_enter_priority(&d->gate);
    off_t off = (off_t)(at * BLOCK_BYTES);
    bool ok = pread(d->rfd, buf, BLOCK_BYTES, off) == (ssize_t)BLOCK_BYTES;
    buf[200] ^= 0xff;               /* payload byte: the CRC no longer matches */
    ok = ok && pwrite(d->wfd, buf, BLOCK_BYTES, off) == (ssize_t)BLOCK_BYTES;
    gate_leave_priority(&d->gate);
    free(buf);
    if (ok)
        snprintf(out, n, "ok");
    else
        snprintf(out, n, "error corrupt disk %s: %s", name, strerror(errno));
}

static void cmd_set_rate(_Atomic int64_t *rate, const char *arg, char *out, size_t n)
{
    int64_t v;
    if (!parse_rate(arg, &v)) {
        snprintf(out, n, "error bad rate: %s", arg);
        return;
    }
    atomic_store(rate, v);
    snprintf(out, n, "ok");
}

/* Executes one command line (without newline); writes the one-line reply
 * to out.  Returns false for blank lines, which get no reply. */
static bool handle_command(char *line, char *out, size_t n)
{
    while (*line == ' ' || *line == '\t')
        line++;
    size_t len = strlen(line);
    while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
        line[--len] = '\0';
    if (!len)
        return false;
    char *arg = line + strcspn(line, " \t");
    if (*arg)
        *arg++ = '\0';
    while (*arg == ' ' || *arg == '\t')
        arg++;
    if (strcmp(line, "ping") == 0 && !*arg)
        snprintf(out, n, "pong");
    else if (strcmp(line, "ping") == 0)
        snprintf(out, n, "pong %s", arg);   /* the token lets a new client resync */
    else if (strcmp(line, "status") == 0)
        cmd_status(out, n);
    else if (strcmp(line, "verify") == 0)
        cmd_verify(out, n);
    else if (strcmp(line, "mem-rate") == 0)
        cmd_set_rate(&G.mem_rate, arg, out, n);
    else if (strcmp(line, "disk-rate") == 0)
        cmd_set_rate(&G.disk_rate, arg, out, n);
    else if (strcmp(line, "corrupt") == 0)
        cmd_corrupt(arg, out, n);
    else if (strcmp(line, "help") == 0)
        snprintf(out, n, "ok commands: ping [TOKEN] status verify mem-rate N|max disk-rate N|max "
                 "corrupt mem PAGE|corrupt disk NAME BLOCK help");
    else
        snprintf(out, n, "error unknown command: %s", line);
    return true;
}

/* ------------------------------------------------------------------ */
/* Control channel                                                    */
/* ------------------------------------------------------------------ */

struct channel {
    char in[LINE_MAX_LEN];
    size_t inlen;
    bool overlong;                  /* discarding the rest of a too long line */
    char out[16384];
    size_t outlen;
};

static void channel_reset(struct channel *ch)
{
    ch->inlen = ch->outlen = 0;
    ch->overlong = false;
}

static void channel_reply(struct channel *ch, const char *reply)
{
    size_t len = strlen(reply);
    if (ch->outlen + len + 1 > sizeof ch->out)
        return;                     /* peer is not reading: drop, never block */
    memcpy(ch->out + ch->outlen, reply, len);
    ch->out[ch->outlen + len] = '\n';
    ch->outlen += len + 1;
}

/* Feeds received bytes in, running each complete line. */
static void channel_feed(struct channel *ch, const char *data, size_t len)
{
    static char reply[8192];
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (c != '\n') {
            if (ch->inlen + 1 < sizeof ch->in)
                ch->in[ch->inlen++] = c;
            else
                ch->overlong = true;
            continue;
        }
        ch->in[ch->inlen] = '\0';
        if (ch->overlong)
            channel_reply(ch, "error line too long");
        else if (handle_command(ch->in, reply, sizeof reply))
            channel_reply(ch, reply);
        ch->inlen = 0;
        ch->overlong = false;
    }
}

/* Writes what it can without blocking; false on a hard error. */
static bool channel_flush(struct channel *ch, int fd)
{
    while (ch->outlen) {
        ssize_t w = write(fd, ch->out, ch->outlen);
        if (w < 0)
            return errno == EAGAIN || errno == EINTR;
        memmove(ch->out, ch->out + w, ch->outlen - (size_t)w);
        ch->outlen -= (size_t)w;
    }
    return true;
}

/* Finds /dev/vportNpM whose virtio-serial port name is PORT_NAME. */
static bool find_port(char *path, size_t n)
{
    DIR *dir = opendir("/sys/class/virtio-ports");
    struct dirent *e;
    bool found = false;
    while (dir && !found && (e = readdir(dir))) {
        char fn[300], name[128] = "";
        if (e->d_name[0] == '.')
            continue;
        snprintf(fn, sizeof fn, "/sys/class/virtio-ports/%s/name", e->d_name);
        FILE *f = fopen(fn, "r");
        if (!f)
            continue;
        if (fgets(name, sizeof name, f))
            name[strcspn(name, "\n")] = '\0';
        fclose(f);
        if (strcmp(name, PORT_NAME) == 0) {
            snprintf(path, n, "/dev/%s", e->d_name);
            found = true;
        }
    }
    if (dir)
        closedir(dir);
    return found;
}

/* Serves the virtio-serial port forever.  The host end is a QEMU chardev
 * that comes and goes (agent restarts, migration): with nobody connected
 * the port reads EOF and polls POLLHUP, and write() would block, so the fd
 * is non-blocking and a disconnect just drops the half-read line and the
 * unsent replies (they belong to the old client) and naps briefly. */
static void serve_port(void)
{
    static struct channel ch;
    char path[320], buf[4096];
    int fd = -1;
    bool said_waiting = false;
    for (;;) {
        if (fd < 0) {
            if (!find_port(path, sizeof path) ||
                (fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC)) < 0) {
                if (!said_waiting)
                    logmsg("waiting for virtio-serial port %s", PORT_NAME);
                said_waiting = true;
                sleep_ms(500);
                continue;
            }
            logmsg("control channel on %s", path);
            channel_reset(&ch);
        }
        struct pollfd p = { fd, POLLIN | (ch.outlen ? POLLOUT : 0), 0 };
        if (poll(&p, 1, 1000) <= 0)
            continue;
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t r = read(fd, buf, sizeof buf);
            if (r > 0) {
                channel_feed(&ch, buf, (size_t)r);
            } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                channel_reset(&ch);
                if (r < 0) {
                    logmsg("control channel %s: %s, reopening", path, strerror(errno));
                    close(fd);
                    fd = -1;
                }
                sleep_ms(100);
                continue;
            }
        }
        if (!channel_flush(&ch, fd))
            channel_reset(&ch);
    }
}

/* --stdio: the same protocol on stdin/stdout, for tests on the host. */
static void serve_stdio(void)
{
    static struct channel ch;
    char buf[4096];
    ssize_t r;
    while ((r = read(STDIN_FILENO, buf, sizeof buf)) != 0) {
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        channel_feed(&ch, buf, (size_t)r);
        while (ch.outlen) {
            ssize_t w = write(STDOUT_FILENO, ch.out, ch.outlen);
            if (w <= 0)
                return;
            memmove(ch.out, ch.out + w, ch.outlen - (size_t)w);
            ch.outlen -= (size_t)w;
        }
    }
}

/* ------------------------------------------------------------------ */
/* Self test (runs on the host: vmove-guest --self-test)              */
/* ------------------------------------------------------------------ */

static int st_pass, st_fail;

#define CHECK(cond) do {                                                     \
        if (cond) { st_pass++; }                                             \
        else { st_fail++; fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); } \
    } while (0)

static void test_cmdline(void)
{
    struct config c;
    config_defaults(&c);
    parse_cmdline("console=ttyS0 quiet vmove.seed=7 vmove.mem=16 vmove.mem_rate=max "
                  "vmove.mem_pattern=compressible vmove.disk=vda,vdb vmove.disk_rate=0 "
                  "vmove.echo=7777 vmove.marker=DEADbeef vmove.ip=10.0.0.2/24", &c);
    CHECK(c.seed == 7 && c.mem_mib == 16 && c.mem_rate == RATE_MAX && c.mem_compressible);
    CHECK(c.ndisks == 2 && strcmp(c.disks[1], "vdb") == 0 && c.disk_rate == 0);
    CHECK(c.echo_port == 7777 && c.marker_len == 4 && c.marker[0] == 0xde && c.marker[3] == 0xef);
    CHECK(c.error[0] == '\0');
    config_defaults(&c);
    parse_cmdline("vmove.mem=lots vmove.marker=abc vmove.bogus=1", &c);
    CHECK(c.mem_mib == 0 && c.marker_len == 0 && c.seed == 1 && c.disk_rate == 1024);
    CHECK(strcmp(c.error, "bad vmove.mem=lots") == 0);
}

static void test_pages(bool compressible)
{
    struct pattern pat = { .seed = 42, .compressible = compressible, .marker = { 0xca, 0xfe }, .marker_len = 2 };
    uint8_t *p = xaligned(PAGE_BYTES), *q = xaligned(PAGE_BYTES), *s = xaligned(PAGE_BYTES);
    char why[256];
    page_fill(p, &pat, 5, 3);
    CHECK(page_check(p, &pat, 5, 3, s, why, sizeof why) == 0);
    CHECK(page_check(p, &pat, 5, 4, s, why, sizeof why) != 0 &&
          strcmp(why, "mem page 5 expected gen 4, found page 5 gen 3") == 0);
    CHECK(memmem(p, PAGE_BYTES, pat.marker, 2) == p + MARKER_OFF);
    page_fill(q, &pat, 6, 3);
    CHECK(memcmp(p + 16, q + 16, PAGE_BYTES - 16) != 0);    /* pages differ beyond the header */
    p[300] ^= 1;
    CHECK(page_check(p, &pat, 5, 3, s, why, sizeof why) != 0 && strstr(why, "differs at byte 300"));
    if (compressible)
        CHECK(memmem(p, PAGE_BYTES, COMPRESSIBLE_TEXT, sizeof COMPRESSIBLE_TEXT - 1) != NULL);
    free(p);
    free(q);
    free(s);
}

/* touch: a rewrite is one store of the generation; a page that missed it
 * (as after a lost dirty page) fails the check. */
static void test_touch_pages(void)
{
    struct pattern pat = { .seed = 42, .touch = true };
    uint8_t *p = xaligned(PAGE_BYTES), *s = xaligned(PAGE_BYTES);
    char why[256];
    page_fill(p, &pat, 5, 0);
    uint32_t gen = 7;
    memcpy(p + 4, &gen, 4);
    CHECK(page_check(p, &pat, 5, 7, s, why, sizeof why) == 0);
    CHECK(page_check(p, &pat, 5, 8, s, why, sizeof why) != 0 &&
          strcmp(why, "mem page 5 expected gen 8, found page 5 gen 7") == 0);
    p[300] ^= 1;
    CHECK(page_check(p, &pat, 5, 7, s, why, sizeof why) != 0 && strstr(why, "differs at byte 300"));
    free(p);
    free(s);
}

static void test_blocks(void)
{
    struct pattern pat = { .seed = 9, .marker = { 1, 2, 3 }, .marker_len = 3 };
    uint8_t *b = xaligned(BLOCK_BYTES), *s = xaligned(BLOCK_BYTES);
    char why[256];
    block_build(b, &pat, 1, 17, 1234);
    CHECK(block_check(b, &pat, "vdb", 1, 17, 1234, s, why, sizeof why) == 0);
    CHECK(memmem(b, BLOCK_BYTES, pat.marker, 3) == b + MARKER_OFF);
    CHECK(block_check(b, &pat, "vdb", 1, 17, 1235, s, why, sizeof why) != 0 &&
          strcmp(why, "disk vdb block 17 seq 1235: found seq 1234") == 0);
    CHECK(block_check(b, &pat, "vdb", 1, 18, 1234, s, why, sizeof why) != 0 && strstr(why, "another"));
    b[2000] ^= 0x10;
    CHECK(block_check(b, &pat, "vdb", 1, 17, 1234, s, why, sizeof why) != 0 && strstr(why, "bad crc"));
    memset(b, 0, BLOCK_BYTES);
    CHECK(block_check(b, &pat, "vdb", 1, 17, 1234, s, why, sizeof why) != 0 && strstr(why, "no block header"));
    free(b);
    free(s);
}

/* block_latest_seq against a brute-force simulation of the writer. */
static void test_seq_math(void)
{
    enum { NB = 7, WRITES = 40 };
    uint64_t last[NB];
    bool ok = true;
    for (uint64_t written = 0; written <= WRITES; written++) {
        memset(last, 0xff, sizeof last);
        for (uint64_t s = 0; s < written; s++)
            last[seq_to_block(s, NB)] = s;
        for (uint64_t b = 0; b < NB; b++) {
            uint64_t seq = UINT64_MAX;
            bool w = block_latest_seq(b, NB, written, &seq);
            ok = ok && w == (last[b] != UINT64_MAX) && (!w || seq == last[b]);
        }
    }
    CHECK(ok);
    CHECK(seq_to_block(0, NB) == 1 && seq_to_block(5, NB) == 6 && seq_to_block(6, NB) == 1);
}

static void test_commands_and_verify(void)
{
    char out[8192], line[64];
    G.pat = (struct pattern){ .seed = 3 };
    mem_setup(64);
    snprintf(line, sizeof line, "ping");
    CHECK(handle_command(line, out, sizeof out) && strcmp(out, "pong") == 0);
    snprintf(line, sizeof line, "ping 42\r");
    CHECK(handle_command(line, out, sizeof out) && strcmp(out, "pong 42") == 0);
    snprintf(line, sizeof line, "  \r");
    CHECK(!handle_command(line, out, sizeof out));
    snprintf(line, sizeof line, "frobnicate now");
    CHECK(handle_command(line, out, sizeof out) && strcmp(out, "error unknown command: frobnicate") == 0);
    snprintf(line, sizeof line, "mem-rate 12\r");
    CHECK(handle_command(line, out, sizeof out) && strcmp(out, "ok") == 0 && atomic_load(&G.mem_rate) == 12);
    snprintf(line, sizeof line, "disk-rate fast");
    CHECK(handle_command(line, out, sizeof out) && strncmp(out, "error", 5) == 0);
    snprintf(line, sizeof line, "status");
    CHECK(handle_command(line, out, sizeof out) && strstr(out, "\"mem_rate\":12") && out[strlen(out) - 1] == '}');
    G.gens[10] = 2;                 /* as if the writer rewrote page 10 twice */
    page_fill(G.pages + 10 * PAGE_BYTES, &G.pat, 10, 2);
    snprintf(line, sizeof line, "verify");
    CHECK(handle_command(line, out, sizeof out) && strcmp(out, "ok mem_pages=64 disk_blocks=0") == 0);
    snprintf(line, sizeof line, "corrupt mem 33");
    CHECK(handle_command(line, out, sizeof out) && strcmp(out, "ok") == 0);
    snprintf(line, sizeof line, "verify");
    CHECK(handle_command(line, out, sizeof out) &&
          strcmp(out, "fail mem page 33 expected gen 0, content differs at byte 100") == 0);
}

static void test_limiter(void)
{
    struct limiter l = { 0, now_s() - 0.02 };
    /* 20 ms at 1000 units/s gives 20 units; the 50 ms burst cap holds. */
    uint64_t n = limiter_take(&l, 1000, 1.0, 1000);
    CHECK(n >= 19 && n <= 21);
    l.last = now_s() - 10;
    CHECK(limiter_take(&l, 1000, 1.0, 1000) == 50);
    CHECK(limiter_take(&l, 0, 1.0, 1000) == 0);
    CHECK(limiter_take(&l, RATE_MAX, 1.0, 7) == 7);
}

static int self_test(void)
{
    static const uint8_t check_str[] = "123456789";
    CHECK(crc32_buf(check_str, 9) == 0xcbf43926u);
    test_cmdline();
    test_pages(false);
    test_pages(true);
    test_touch_pages();
    test_blocks();
    test_seq_math();
    test_limiter();
    test_commands_and_verify();
    printf("self-test: %d passed, %d failed\n", st_pass, st_fail);
    return st_fail ? 1 : 0;
}

/* ------------------------------------------------------------------ */
/* Startup                                                            */
/* ------------------------------------------------------------------ */

static void start_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    int err = pthread_create(&t, NULL, fn, arg);
    if (err) {
        logmsg("pthread_create: %s", strerror(err));
        exit(1);
    }
    pthread_detach(t);
}

static void read_proc_cmdline(char *buf, size_t n)
{
    buf[0] = '\0';
    FILE *f = fopen("/proc/cmdline", "r");
    if (!f) {
        logmsg("cannot read /proc/cmdline: %s; using defaults", strerror(errno));
        return;
    }
    if (!fgets(buf, (int)n, f))
        buf[0] = '\0';
    fclose(f);
}

static void start_workloads(void)
{
    static int echo_fd;
    mem_setup(G.cfg.mem_mib * (1048576 / PAGE_BYTES));
    if (G.npages)
        start_thread(mem_writer, NULL);
    for (int i = 0; i < G.cfg.ndisks; i++) {
        struct disk *d = &G.disks[G.ndisks++];
        disk_open(d, G.cfg.disks[i], (uint32_t)i);
        if (disk_usable(d) && G.cfg.disk_resume)
            disk_resume(d);
        if (disk_usable(d))
            start_thread(disk_writer, d);
    }
    if (G.cfg.echo_port && (echo_fd = echo_bind(G.cfg.echo_port)) >= 0)
        start_thread(echo_server, &echo_fd);
}

static void announce_ready(bool stdio)
{
    static const char msg[] = "vmove-guest: ready\n";
    int fd = stdio ? -1 : open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);
    if (write(fd >= 0 ? fd : STDERR_FILENO, msg, sizeof msg - 1) < 0)
        return;
    if (fd >= 0)
        close(fd);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: vmove-guest [--stdio] [--cmdline 'vmove.KEY=VAL ...'] | --self-test\n"
            "  default: config from /proc/cmdline, control on virtio-serial port " PORT_NAME "\n"
            "  --stdio: control protocol on stdin/stdout (host testing)\n");
}

int main(int argc, char **argv)
{
    static char cmdline[4096];
    bool stdio = false, have_cmdline = false;
    crc32_init();
    signal(SIGPIPE, SIG_IGN);       /* a vanished peer must never kill us */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--self-test") == 0)
            return self_test();
        if (strcmp(argv[i], "--stdio") == 0) {
            stdio = true;
        } else if (strcmp(argv[i], "--cmdline") == 0 && i + 1 < argc) {
            snprintf(cmdline, sizeof cmdline, "%s", argv[++i]);
            have_cmdline = true;
        } else {
            usage();
            return 2;
        }
    }
    if (!have_cmdline)
        read_proc_cmdline(cmdline, sizeof cmdline);
    config_defaults(&G.cfg);
    parse_cmdline(cmdline, &G.cfg);
    pattern_from_config(&G.pat, &G.cfg);
    atomic_store(&G.mem_rate, G.cfg.mem_rate);
    atomic_store(&G.disk_rate, G.cfg.disk_rate);

    double t0 = now_s();
    start_workloads();
    logmsg("workloads up in %.0f ms: mem %" PRIu64 " MiB, %d disk(s), echo port %d",
           (now_s() - t0) * 1000, G.cfg.mem_mib, G.ndisks, G.cfg.echo_port);
    announce_ready(stdio);
    if (stdio)
        serve_stdio();
    else
        serve_port();
    return 0;
}
