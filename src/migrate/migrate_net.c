#include "migrate/migrate_net.h"
#include "common/spawn.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

unsigned int migrate_net_ip(const char *ip)
{
    struct in_addr a;
    return inet_pton(AF_INET, ip, &a) == 1 ? ntohl(a.s_addr) : 0;
}

/* Calls visit(addr, mask, ctx) for each local IPv4 address (host byte
 * order) until it returns non-zero; returns that value, 0 when none did, or
 * -1 when the addresses cannot be listed.  The one walk over getifaddrs()
 * that the functions below share. */
static int for_each_ipv4(int (*visit)(uint32_t addr, uint32_t mask, void *ctx), void *ctx)
{
    struct ifaddrs *ifs;
    if (getifaddrs(&ifs) < 0)
        return -1;
    int rc = 0;
    for (struct ifaddrs *i = ifs; i && !rc; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET)
            continue;
        uint32_t mask = i->ifa_netmask ? ntohl(((struct sockaddr_in *)i->ifa_netmask)->sin_addr.s_addr) : 0;
        rc = visit(ntohl(((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr), mask, ctx);
    }
    freeifaddrs(ifs);
    return rc;
}

static void format_ipv4(uint32_t addr, char *out, size_t len)
{
    struct in_addr a = {.s_addr = htonl(addr)};
    inet_ntop(AF_INET, &a, out, (socklen_t)len);
}

struct listen_pick {
    const struct host_settings *s;
    char *ip;
    size_t iplen;
};

static int pick_allowed(uint32_t addr, uint32_t mask, void *ctx)
{
    (void)mask;
    struct listen_pick *p = ctx;
    if ((addr >> 24) == 127 && !p->s->n_migration_networks)
        return 0;
    if (!settings_migration_allowed(p->s, addr))
        return 0;
    format_ipv4(addr, p->ip, p->iplen);
    return 1;
}

int migrate_net_pick_listen(const struct host_settings *s, const char *hint_ip, const char *host,
                            char *ip, size_t iplen, char *err, size_t errlen)
{
    if (s->migration_any && hint_ip) {
        snprintf(ip, iplen, "%s", hint_ip);
        return 0;
    }
    struct listen_pick p = {.s = s, .ip = ip, .iplen = iplen};
    int rc = for_each_ipv4(pick_allowed, &p);
    if (rc < 0) {
        snprintf(err, errlen, "cannot list local addresses");
        return -1;
    }
    if (rc == 0) {
        char nets[512];
        settings_migration_networks_str(s, nets, sizeof nets);
        snprintf(err, errlen, "host %s has no address in its allowed migration networks (%s)", host, nets);
        return -1;
    }
    return 0;
}

int migrate_net_route_source(const char *dst_ip, char *ip, size_t iplen)
{
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(9)};
    if (inet_pton(AF_INET, dst_ip, &dst.sin_addr) != 1)
        return -1;
    /* A connected UDP socket sends nothing but makes the kernel pick the route. */
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in local;
    socklen_t len = sizeof local;
    int rc = fd < 0 || connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0 ||
             getsockname(fd, (struct sockaddr *)&local, &len) < 0 ? -1 : 0;
    if (fd >= 0)
        close(fd);
    if (rc == 0)
        inet_ntop(AF_INET, &local.sin_addr, ip, (socklen_t)iplen);
    return rc;
}

int migrate_net_abort_connections(const char *ip, int port, char *err, size_t errlen)
{
    if (!migrate_net_ip(ip) || port <= 0 || port > 65535) {
        snprintf(err, errlen, "bad address %s:%d", ip, port);
        return -1;
    }
    char dport[32];
    snprintf(dport, sizeof dport, ":%d", port);
    /* -K needs the kernel's INET_DIAG_DESTROY (Debian's kernels have it);
     * -H: no header, so each output line is one aborted socket. */
    char *argv[] = {"ss", "-K", "-H", "-t", "dst", (char *)ip, "dport", "=", dport, NULL};
    char *out = NULL;
    int rc = run_capture(argv, 5000, &out);
    int n = 0;
    for (const char *l = out; rc == 0 && l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : "")
        n += *l != '\n';
    if (rc != 0)
        snprintf(err, errlen, "ss -K failed (%d): %s", rc, out ? out : "");
    free(out);
    return rc == 0 ? n : -1;
}

struct network_of {
    uint32_t addr;
    struct cidr *out;
};

static int match_address(uint32_t addr, uint32_t mask, void *ctx)
{
    struct network_of *n = ctx;
    if (addr != n->addr || !mask)
        return 0;
    n->out->prefix = __builtin_popcount(mask);
    n->out->addr = addr & mask;
    return 1;
}

/* The network of a local interface address, as a CIDR; -1 if addr is not one. */
static int iface_network(uint32_t addr, struct cidr *out)
{
    struct network_of n = {.addr = addr, .out = out};
    return for_each_ipv4(match_address, &n) == 1 ? 0 : -1;
}

int migrate_net_iface_cidr(const char *ip, char *out, size_t len)
{
    struct cidr c;
    if (iface_network(migrate_net_ip(ip), &c) < 0)
        return -1;
    cidr_format(&c, out, len);
    return 0;
}

struct cidr_pick {
    const struct cidr *nets;
    int n;
    char *out;
    size_t len;
};

static int pick_in_networks(uint32_t addr, uint32_t mask, void *ctx)
{
    struct cidr_pick *p = ctx;
    if ((addr >> 24) == 127 || !mask)
        return 0;
    for (int k = 0; k < p->n; k++)
        if (cidr_contains(&p->nets[k], addr)) {
            struct cidr c = {.addr = addr & mask, .prefix = __builtin_popcount(mask)};
            cidr_format(&c, p->out, p->len);
            return 1;
        }
    return 0;
}

int migrate_net_local_cidr_in(const struct cidr *nets, int n, char *out, size_t len)
{
    struct cidr_pick p = {.nets = nets, .n = n, .out = out, .len = len};
    return for_each_ipv4(pick_in_networks, &p) == 1 ? 0 : -1;
}
