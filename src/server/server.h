/* Listening sockets and connections of vmoved: the local unix socket (root
 * only, checked with SO_PEERCRED) and, with --listen, a TCP port that speaks
 * TLS 1.3 with mutual authentication (certificates from this host's CA).
 *
 * Resource limits, so that no client (authenticated or not) can starve the
 * others or the daemon: a TCP connection beyond the caps below is closed
 * before any TLS work; a handshake must finish in time; an idle connection
 * (nothing read, nothing in flight) is closed; a client that does not read
 * its replies is dropped; the input all clients have sent but vmoved has not
 * parsed yet is bounded; accept() backs off when descriptors run out.  The
 * caps keep the TCP side well below systemd's default of 1024 descriptors,
 * so root's local socket, QMP and the peers always have room.  The local
 * socket (root only) is not capped. */
#ifndef VMOVE_SERVER_H
#define VMOVE_SERVER_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define SERVER_MAX_TCP_CONNS 256
#define SERVER_MAX_HANDSHAKES 64
#define SERVER_MAX_HANDSHAKES_PER_ADDR 16
#define SERVER_MAX_CONNS_PER_PRINCIPAL 32
#define SERVER_HANDSHAKE_TIMEOUT_S 10
#define SERVER_IDLE_TIMEOUT_S 300
#define SERVER_OUTPUT_MAX (32u << 20)
#define SERVER_INPUT_BUDGET (64u << 20)
#define SERVER_ACCEPT_BACKOFF_MS 200

struct agent;
struct server;
struct conn;

struct server *server_start(struct agent *a, char *err, size_t errlen);
void server_stop(struct server *s);

void conn_ref(struct conn *c);
void conn_unref(struct conn *c);
bool conn_is_open(const struct conn *c);
/* Queue one message on the connection (dropped if it has closed). */
void conn_send(struct conn *c, json_t *msg);
/* One hook run when the connection closes (replaces any previous one;
 * NULL clears it).  The migration code uses it to notice a vanished peer. */
/* "IP:PORT" or "unix(pid N, uid N)". */
const char *conn_peer(const struct conn *c);
void conn_set_close_hook(struct conn *c, void (*hook)(void *arg), void *arg);
#endif
