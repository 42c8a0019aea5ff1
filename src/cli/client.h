/* The CLI's transport to vmoved: a unix socket, or TLS 1.3 with a user
 * certificate over TCP.  It prints nothing: failures come back as text, or
 * as vmoved's error object, and cli.c decides how to show them. */
#ifndef VMOVE_CLI_CLIENT_H
#define VMOVE_CLI_CLIENT_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct client;

/* target: "unix:PATH" or "HOST[:PORT]" (TLS, identity DIR needed).  Sets
 * *local for a unix socket.  NULL with the reason in err. */
/* A network target: "HOST[:PORT]" (the certificate must name HOST) or
 * "NAME@ADDR[:PORT]" (connect to ADDR, the certificate must name NAME).  A
 * bare address is refused: any host of the CA could answer on it. */
int client_parse_target(const char *target, char *name, size_t namelen, char *host, size_t hostlen, char *port,
                        size_t portlen, char *err, size_t errlen);
struct client *client_open(const char *target, const char *identity, bool *local, char *err, size_t errlen);

typedef void (*client_event_fn)(const char *event, json_t *data, void *arg);
/* One request (params is taken over).  The result (caller frees), or NULL:
 * then *error is vmoved's error object (caller frees), or NULL when the
 * connection failed, and err says why. */
json_t *client_request(struct client *cl, const char *method, json_t *params, client_event_fn on_event, void *arg,
                       json_t **error, char *err, size_t errlen);
void client_close(struct client *cl);
#endif
