/* vmove-probe: downtime of a VM as a client sees it.
 *
 * Sends a UDP datagram every INTERVAL to a UDP echo server in the guest (the
 * guest sends every payload back verbatim) and measures, on the replies, how
 * long the client went without an answer.  Runs until --duration elapses,
 * SIGINT/SIGTERM arrives or --stop-file exists, then waits up to DRAIN_MS for
 * the replies still in flight and prints ONE JSON object on stdout:
 *
 *   {"sent":N,"received":N,"lost":N,"duplicates":N,
 *    "max_gap_ms":X,"max_gap_start_ms":X,"tail_gap_ms":X,
 *    "rtt_ms":{"min":X,"avg":X,"p99":X,"max":X},"duration_ms":N}
 *
 *   max_gap_ms        longest time between two consecutive received replies
 *                     (receive times, CLOCK_MONOTONIC); the time before the
 *                     first reply is ignored.
 *   max_gap_start_ms  when that gap began (receive time of the reply before
 *                     it), as an offset from the first datagram sent.
 *   tail_gap_ms       time from the last reply to the end of the run (not part
 *                     of max_gap_ms: a VM that never came back shows up here
 *                     and in "lost").
 *   rtt_ms            round-trip times; p99 comes from a log-linear histogram
 *                     (exact below 2.048 ms, within 0.1 % above).
 *   gaps              the longest gaps of at least 20 ms (at most 16), in
 *                     time order: [{"start_ms":X,"ms":X},...]; start_ms as
 *                     for max_gap_start_ms.  Tells a stall early in a move
 *                     from the switch-over at its end.
 *   duration_ms       time spent sending (first datagram to the stop).
 *   start_unix_ms     the wall-clock time (CLOCK_REALTIME, ms) of the start
 *                     that the *_start_ms values count from: lines the gaps
 *                     up with vmoved's switch-over timeline.
 *   RTT and gap fields are null when too few replies arrived to define them.
 *
 * Each datagram carries a magic, a per-run nonce, a sequence number and the
 * CLOCK_MONOTONIC send time in ns.  Sends are paced by a periodic absolute
 * timerfd, so the schedule does not drift; ticks missed because the process
 * was not scheduled are caught up (at most MAX_BURST datagrams per wakeup).
 *
 * Only libc: builds with `cc -std=c17 -D_GNU_SOURCE -O2 [-static]`.
 *
 * Exit status: 0 on success; 1 if no reply arrived within --wait-first
 * seconds (no JSON then) or if the run ended without any reply (JSON is still
 * printed); 2 on usage or system errors. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define PROBE_MAGIC 0x766d7072u /* "vmpr" */
#define DRAIN_MS 200
#define MAX_BURST 64
#define STOP_FILE_CHECK_NS (10 * 1000000LL)
#define MAX_WAIT_NS (10 * 1000000LL) /* upper bound on one ppoll() */

struct payload {
    uint32_t magic;
    uint32_t nonce;
    uint64_t seq;
    int64_t sent_ns;
    uint64_t pad; /* 32 bytes in all */
};

/* ---- RTT histogram: exact (1 us buckets) below 2048 us, then 1024
 * sub-buckets per power of two. */
#define HIST_EXACT 2048
#define HIST_SUB 1024
#define HIST_MAX_EXP 35 /* values capped at 2^36-1 us, about 19 hours */
#define HIST_BUCKETS (HIST_EXACT + (HIST_MAX_EXP - 10) * HIST_SUB)

static uint64_t hist[HIST_BUCKETS];

static size_t hist_index(uint64_t us)
{
    if (us < HIST_EXACT)
        return (size_t)us;
    if (us >= (1ULL << (HIST_MAX_EXP + 1)))
        us = (1ULL << (HIST_MAX_EXP + 1)) - 1;
    int e = 63 - __builtin_clzll(us); /* 11..35 */
    int shift = e - 10;
    uint64_t mant = us >> shift; /* 1024..2047 */
    return HIST_EXACT + (size_t)(e - 11) * HIST_SUB + (size_t)(mant - HIST_SUB);
}

/* Middle of a bucket, in us. */
static double hist_value(size_t idx)
{
    if (idx < HIST_EXACT)
        return (double)idx;
    size_t k = idx - HIST_EXACT;
    int e = 11 + (int)(k / HIST_SUB);
    uint64_t mant = HIST_SUB + k % HIST_SUB;
    int shift = e - 10;
    uint64_t lo = mant << shift, width = 1ULL << shift;
    return (double)lo + (double)(width - 1) / 2.0;
}

/* ---- sequence numbers already answered (to count duplicates) */
static uint8_t *seen;
static size_t seen_bytes;

static int seen_grow(uint64_t seq)
{
    size_t need = (size_t)(seq / 8) + 1;
    if (need <= seen_bytes)
        return 0;
    size_t n = seen_bytes ? seen_bytes : 4096;
    while (n < need)
        n *= 2;
    uint8_t *p = realloc(seen, n);
    if (!p)
        return -1;
    memset(p + seen_bytes, 0, n - seen_bytes);
    seen = p;
    seen_bytes = n;
    return 0;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static struct timespec ns_to_ts(int64_t ns)
{
    struct timespec ts = { .tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL };
    return ts;
}

static const char *prog = "vmove-probe";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s --target IP:PORT [--interval-us N (1000)] [--duration S]\n"
            "       [--stop-file PATH] [--ready-file PATH] [--wait-first S (30)]\n"
            "Sends UDP datagrams to an echo server and prints the client-visible\n"
            "downtime as one JSON object on stdout.  IP may be IPv4 or [IPv6].\n",
            prog);
}

static bool parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0) || v > 1e9)
        return false;
    *out = v;
    return true;
}

static int parse_target(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[128];
    const char *port_s;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof host)
            return -1;
        memcpy(host, s + 1, (size_t)(close - s - 1));
        host[close - s - 1] = 0;
        port_s = close + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof host)
            return -1;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;
        port_s = colon + 1;
    }
    char *end;
    errno = 0;
    long port = strtol(port_s, &end, 10);
    if (errno || end == port_s || *end || port < 1 || port > 65535)
        return -1;
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *len = sizeof *a4;
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *len = sizeof *a6;
    } else {
        return -1;
    }
    return 0;
}

static bool same_peer(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port &&
           memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
}

static void print_ms_or_null(const char *key, bool have, double ms, bool comma)
{
    if (have)
        printf("\"%s\":%.3f%s", key, ms, comma ? "," : "");
    else
        printf("\"%s\":null%s", key, comma ? "," : "");
}

#define GAP_MIN_NS 20000000LL
#define MAX_GAPS 16

struct gap {
    int64_t at_ns, len_ns;
};

/* Keeps the MAX_GAPS longest gaps: a new one replaces the shortest kept. */
static void record_gap(struct gap *gaps, size_t *n, int64_t at_ns, int64_t len_ns)
{
    if (len_ns < GAP_MIN_NS)
        return;
    if (*n < MAX_GAPS) {
        gaps[(*n)++] = (struct gap){at_ns, len_ns};
        return;
    }
    size_t min = 0;
    for (size_t i = 1; i < *n; i++)
        if (gaps[i].len_ns < gaps[min].len_ns)
            min = i;
    if (len_ns > gaps[min].len_ns)
        gaps[min] = (struct gap){at_ns, len_ns};
}

static int by_start(const void *a, const void *b)
{
    const struct gap *x = a, *y = b;
    return (x->at_ns > y->at_ns) - (x->at_ns < y->at_ns);
}

static void print_gaps(struct gap *gaps, size_t n, int64_t start_ns)
{
    qsort(gaps, n, sizeof *gaps, by_start);
    printf("\"gaps\":[");
    for (size_t i = 0; i < n; i++)
        printf("%s{\"start_ms\":%.3f,\"ms\":%.3f}", i ? "," : "", (double)(gaps[i].at_ns - start_ns) / 1e6,
               (double)gaps[i].len_ns / 1e6);
    printf("],");
}

int main(int argc, char **argv)
{
    const char *target = NULL, *stop_file = NULL, *ready_file = NULL;
    double interval_us = 1000, duration_s = 0, wait_first_s = 30;
    bool have_duration = false;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "%s: %s: missing value or unknown option\n", prog, a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--target"))
            target = v;
        else if (!strcmp(a, "--stop-file"))
            stop_file = v;
        else if (!strcmp(a, "--ready-file"))
            ready_file = v;
        else if (!strcmp(a, "--interval-us")) {
            if (!parse_double(v, &interval_us) || interval_us < 10 || interval_us > 60e6) {
                fprintf(stderr, "%s: --interval-us: expected a number from 10 to 60000000\n", prog);
                return 2;
            }
        } else if (!strcmp(a, "--duration")) {
            if (!parse_double(v, &duration_s) || duration_s <= 0) {
                fprintf(stderr, "%s: --duration: expected a positive number of seconds\n", prog);
                return 2;
            }
            have_duration = true;
        } else if (!strcmp(a, "--wait-first")) {
            if (!parse_double(v, &wait_first_s) || wait_first_s <= 0) {
                fprintf(stderr, "%s: --wait-first: expected a positive number of seconds\n", prog);
                return 2;
            }
        } else {
            fprintf(stderr, "%s: unknown option %s\n", prog, a);
            usage(stderr);
            return 2;
        }
    }
    if (!target) {
        fprintf(stderr, "%s: --target IP:PORT is required\n", prog);
        usage(stderr);
        return 2;
    }
    struct sockaddr_storage peer;
    socklen_t peer_len;
    if (parse_target(target, &peer, &peer_len) < 0) {
        fprintf(stderr, "%s: --target %s: expected IPv4:PORT or [IPv6]:PORT\n", prog, target);
        return 2;
    }

    /* SIGINT/SIGTERM through a signalfd: no handler races with ppoll(). */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
        perror("vmove-probe: sigprocmask");
        return 2;
    }
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    /* Unconnected socket: ICMP errors (echo server not up yet) are not
     * reported back as ECONNREFUSED; replies are filtered by source. */
    int sock = socket(peer.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (sfd < 0 || sock < 0 || tfd < 0) {
        perror("vmove-probe: setup");
        return 2;
    }
    int rcvbuf = 1 << 20;
    setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);

    const int64_t interval_ns = (int64_t)(interval_us * 1000.0);
    const int64_t start_ns = mono_ns();
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    const double start_unix_ms = (double)wall.tv_sec * 1e3 + (double)wall.tv_nsec / 1e6 -
                                 (double)(mono_ns() - start_ns) / 1e6;
    const int64_t end_ns = have_duration ? start_ns + (int64_t)(duration_s * 1e9) : INT64_MAX;
    const int64_t first_deadline_ns = start_ns + (int64_t)(wait_first_s * 1e9);
    const uint32_t nonce = (uint32_t)getpid() ^ (uint32_t)start_ns ^ (uint32_t)(start_ns >> 32);

    /* Tick k fires at start + k*interval, whatever the wakeup latency. */
    struct itimerspec its = { .it_value = ns_to_ts(start_ns + interval_ns),
                              .it_interval = ns_to_ts(interval_ns) };
    if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0) {
        perror("vmove-probe: timerfd_settime");
        return 2;
    }

    uint64_t next_seq = 0, sent = 0, received = 0, duplicates = 0, send_errors = 0;
    int64_t rtt_min = INT64_MAX, rtt_max = 0;
    double rtt_sum = 0;
    int64_t first_rx_ns = 0, last_rx_ns = 0, max_gap_ns = -1, max_gap_at_ns = 0;
    struct gap gaps[MAX_GAPS];
    size_t n_gaps = 0;
    int64_t stop_ns = 0, drain_until_ns = 0, next_stop_check_ns = start_ns;
    bool stopping = false, ready_done = false;
    const char *stop_reason = NULL;
    int send_errno = 0;

    for (;;) {
        /* Send the datagrams due: one now at start, then one per tick. */
        uint64_t due = 0;
        if (!stopping) {
            if (next_seq == 0) {
                due = 1;
            } else {
                uint64_t exp;
                if (read(tfd, &exp, sizeof exp) == (ssize_t)sizeof exp)
                    due = exp > MAX_BURST ? MAX_BURST : exp;
            }
        }
        for (uint64_t i = 0; i < due; i++) {
            if (seen_grow(next_seq) < 0) {
                fprintf(stderr, "%s: out of memory\n", prog);
                return 2;
            }
            struct payload p = { .magic = PROBE_MAGIC, .nonce = nonce, .seq = next_seq,
                                 .sent_ns = mono_ns(), .pad = 0 };
            next_seq++;
            ssize_t w = sendto(sock, &p, sizeof p, 0, (struct sockaddr *)&peer, peer_len);
            if (w == (ssize_t)sizeof p) {
                sent++;
            } else {
                send_errors++;
                send_errno = errno;
            }
        }

        /* Collect replies. */
        for (;;) {
            struct payload p;
            struct sockaddr_storage from;
            socklen_t flen = sizeof from;
            unsigned char buf[2048];
            ssize_t r = recvfrom(sock, buf, sizeof buf, 0, (struct sockaddr *)&from, &flen);
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                break; /* EAGAIN, or a transient ICMP error: nothing to read */
            }
            int64_t now = mono_ns();
            if (r != (ssize_t)sizeof p || !same_peer(&from, &peer))
                continue;
            memcpy(&p, buf, sizeof p);
            if (p.magic != PROBE_MAGIC || p.nonce != nonce || p.seq >= next_seq)
                continue;
            uint8_t bit = (uint8_t)(1u << (p.seq % 8));
            if (seen[p.seq / 8] & bit) {
                duplicates++;
                continue;
            }
            seen[p.seq / 8] |= bit;
            received++;
            int64_t rtt = now - p.sent_ns;
            if (rtt < 0)
                rtt = 0;
            if (rtt < rtt_min)
                rtt_min = rtt;
            if (rtt > rtt_max)
                rtt_max = rtt;
            rtt_sum += (double)rtt;
            hist[hist_index((uint64_t)rtt / 1000)]++;
            if (first_rx_ns == 0) {
                first_rx_ns = now;
            } else {
                record_gap(gaps, &n_gaps, last_rx_ns, now - last_rx_ns);
                if (now - last_rx_ns > max_gap_ns) {
                    max_gap_ns = now - last_rx_ns;
                    max_gap_at_ns = last_rx_ns;
                }
            }
            last_rx_ns = now;
            if (!ready_done && ready_file) {
                int fd = open(ready_file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                if (fd < 0)
                    fprintf(stderr, "%s: cannot create ready file %s: %s\n", prog, ready_file,
                            strerror(errno));
                else
                    close(fd);
            }
            ready_done = true;
        }

        /* Stop conditions. */
        struct signalfd_siginfo si;
        bool got_signal = read(sfd, &si, sizeof si) == (ssize_t)sizeof si;
        int64_t now = mono_ns();
        if (stopping) {
            if (got_signal || received >= sent || now >= drain_until_ns)
                break;
        } else {
            if (got_signal)
                stop_reason = si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM";
            else if (now >= end_ns)
                stop_reason = "duration";
            else if (stop_file && now >= next_stop_check_ns) {
                next_stop_check_ns = now + STOP_FILE_CHECK_NS;
                if (access(stop_file, F_OK) == 0)
                    stop_reason = "stop-file";
            }
            if (!stop_reason && first_rx_ns == 0 && now >= first_deadline_ns) {
                fprintf(stderr,
                        "%s: no reply from %s within %g s (%" PRIu64 " datagrams sent%s%s); "
                        "is the UDP echo server running and reachable?\n",
                        prog, target, wait_first_s, sent, send_errors ? "; last send error: " : "",
                        send_errors ? strerror(send_errno) : "");
                return 1;
            }
            if (stop_reason) {
                stopping = true;
                stop_ns = now;
                drain_until_ns = now + DRAIN_MS * 1000000LL;
                struct itimerspec off = { { 0, 0 }, { 0, 0 } };
                timerfd_settime(tfd, 0, &off, NULL);
                if (received >= sent)
                    break;
            }
        }

        /* Sleep until the next tick, a reply, a signal or the next deadline. */
        int64_t wake = stopping ? drain_until_ns : now + MAX_WAIT_NS;
        if (!stopping && end_ns < wake)
            wake = end_ns;
        if (!stopping && first_rx_ns == 0 && first_deadline_ns < wake)
            wake = first_deadline_ns;
        struct timespec to = ns_to_ts(wake > now ? wake - now : 0);
        struct pollfd fds[3] = {
            { .fd = sock, .events = POLLIN },
            { .fd = sfd, .events = POLLIN },
            { .fd = tfd, .events = POLLIN },
        };
        if (ppoll(fds, stopping ? 2 : 3, &to, NULL) < 0 && errno != EINTR) {
            perror("vmove-probe: ppoll");
            return 2;
        }
    }

    uint64_t lost = sent >= received ? sent - received : 0;
    printf("{\"sent\":%" PRIu64 ",\"received\":%" PRIu64 ",\"lost\":%" PRIu64
           ",\"duplicates\":%" PRIu64 ",",
           sent, received, lost, duplicates);
    if (send_errors)
        printf("\"send_errors\":%" PRIu64 ",", send_errors);
    print_ms_or_null("max_gap_ms", max_gap_ns >= 0, (double)max_gap_ns / 1e6, true);
    print_ms_or_null("max_gap_start_ms", max_gap_ns >= 0,
                     (double)(max_gap_at_ns - start_ns) / 1e6, true);
    print_gaps(gaps, n_gaps, start_ns);
    print_ms_or_null("tail_gap_ms", received > 0,
                     (double)((stop_ns > last_rx_ns ? stop_ns : last_rx_ns) - last_rx_ns) / 1e6,
                     true);
    printf("\"rtt_ms\":{");
    bool have_rtt = received > 0;
    double p99_us = 0;
    if (have_rtt) {
        uint64_t rank = (received * 99 + 99) / 100, cum = 0; /* ceil(0.99 n) */
        for (size_t i = 0; i < HIST_BUCKETS; i++) {
            cum += hist[i];
            if (cum >= rank) {
                p99_us = hist_value(i);
                break;
            }
        }
        double lo = (double)rtt_min / 1000, hi = (double)rtt_max / 1000;
        p99_us = p99_us < lo ? lo : p99_us > hi ? hi : p99_us;
    }
    print_ms_or_null("min", have_rtt, (double)rtt_min / 1e6, true);
    print_ms_or_null("avg", have_rtt, have_rtt ? rtt_sum / (double)received / 1e6 : 0, true);
    print_ms_or_null("p99", have_rtt, p99_us / 1e3, true);
    print_ms_or_null("max", have_rtt, (double)rtt_max / 1e6, false);
    printf("},\"duration_ms\":%" PRId64 ",\"interval_us\":%.0f,\"start_unix_ms\":%.3f,\"stopped_by\":\"%s\"}\n",
           (stop_ns - start_ns) / 1000000, interval_us, start_unix_ms, stop_reason ? stop_reason : "?");
    fflush(stdout);
    free(seen);
    close(sock);
    close(tfd);
    close(sfd);
    if (received == 0) {
        fprintf(stderr, "%s: no reply from %s during the whole run\n", prog, target);
        return 1;
    }
    return 0;
}
