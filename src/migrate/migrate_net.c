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

int migrate_net_pick_listen(const struct host_settings *s, const char *hint_ip, const char *host,
                            char *ip, size_t iplen, char *err, size_t errlen)
{
    if (s->migration_any && hint_ip) {
        snprintf(ip, iplen, "%s", hint_ip);
        return 0;
    }
    struct ifaddrs *ifs, *i;
    if (getifaddrs(&ifs) < 0) {
        snprintf(err, errlen, "cannot list local addresses");
        return -1;
    }
    int found = -1;
    for (i = ifs; i && found < 0; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET)
            continue;
        uint32_t a = ntohl(((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr);
        if ((a >> 24) == 127 && !s->n_migration_networks)
            continue;
        if (settings_migration_allowed(s, a)) {
            inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, ip, (socklen_t)iplen);
            found = 0;
        }
    }
    freeifaddrs(ifs);
    if (found < 0) {
        char nets[512];
        settings_migration_networks_str(s, nets, sizeof nets);
        snprintf(err, errlen, "host %s has no address in its allowed migration networks (%s)", host, nets);
    }
    return found;
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

/* The network of a local interface address, as a CIDR; 0 if addr is not one. */
static int iface_network(uint32_t addr, struct cidr *out)
{
    struct ifaddrs *ifs, *i;
    if (getifaddrs(&ifs) < 0)
        return -1;
    int found = -1;
    for (i = ifs; i && found < 0; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !i->ifa_netmask ||
            ntohl(((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr) != addr)
            continue;
        uint32_t mask = ntohl(((struct sockaddr_in *)i->ifa_netmask)->sin_addr.s_addr);
        out->prefix = __builtin_popcount(mask);
        out->addr = addr & mask;
        found = 0;
    }
    freeifaddrs(ifs);
    return found;
}

int migrate_net_iface_cidr(const char *ip, char *out, size_t len)
{
    struct cidr c;
    if (iface_network(migrate_net_ip(ip), &c) < 0)
        return -1;
    cidr_format(&c, out, len);
    return 0;
}

int migrate_net_local_cidr_in(const struct cidr *nets, int n, char *out, size_t len)
{
    struct ifaddrs *ifs, *i;
    if (getifaddrs(&ifs) < 0)
        return -1;
    int found = -1;
    for (i = ifs; i && found < 0; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET)
            continue;
        uint32_t a = ntohl(((struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr);
        struct cidr c;
        for (int k = 0; k < n && found < 0; k++)
            if ((a >> 24) != 127 && cidr_contains(&nets[k], a) && iface_network(a, &c) == 0) {
                cidr_format(&c, out, len);
                found = 0;
            }
    }
    freeifaddrs(ifs);
    return found;
}
