/* Which addresses carry migration traffic, checked against each host's
 * allowed migration networks. */
#ifndef VMOVE_MIGRATE_NET_H
#define VMOVE_MIGRATE_NET_H
#include <stddef.h>

#include "conf/settings.h"

/* Destination side: a local IPv4 address inside the allowed networks, to
 * listen on.  With "any", the address the source reached us on (hint) is
 * used.  -1 with err naming the networks if there is none. */
int migrate_net_pick_listen(const struct host_settings *s, const char *hint_ip, const char *host,
                            char *ip, size_t iplen, char *err, size_t errlen);
/* Source side: the local address the kernel would use to reach dst_ip. */
int migrate_net_route_source(const char *dst_ip, char *ip, size_t iplen);
/* Aborts every TCP connection of this network namespace to ip:port, at the
 * kernel (sock_destroy, as `ss -K` does): a thread blocked reading such a
 * socket wakes with ECONNABORTED.  The last resort against a QEMU thread stuck
 * on a dead link where yank does not reach (QEMU 7.2's multifd TLS handshake).
 * The number of connections aborted, or -1 with err set. */
int migrate_net_abort_connections(const char *ip, int port, char *err, size_t errlen);
/* The network (CIDR, "10.0.2.0/24") of local address ip's interface; -1 if
 * ip is not a local address.  For the fixes a pre-flight check suggests. */
int migrate_net_iface_cidr(const char *ip, char *out, size_t len);
/* The network of the first local interface whose address lies in one of
 * nets (another host's migration networks); -1 if none does. */
int migrate_net_local_cidr_in(const struct cidr *nets, int n, char *out, size_t len);
/* Host-order IPv4 of a dotted quad; 0 if invalid. */
unsigned int migrate_net_ip(const char *ip);
#endif
