/* Listening sockets and connections of vmoved: the local unix socket (root
 * only, checked with SO_PEERCRED) and, with --listen, a TCP port that speaks
 * TLS 1.3 with mutual authentication (certificates from this host's CA). */
#ifndef VMOVE_SERVER_H
#define VMOVE_SERVER_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

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
