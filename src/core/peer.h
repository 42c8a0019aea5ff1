/* Calls from this vmoved to another host's vmoved: the same JSON-lines
 * protocol as the CLI's, over TLS 1.3 with this host's certificate, and the
 * peer's certificate must carry the expected host name. */
#ifndef VMOVE_PEER_H
#define VMOVE_PEER_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct agent;
struct peer_conn;

/* result is borrowed; error is a proto_error object (borrowed) or NULL. */
typedef void (*peer_reply_fn)(void *arg, json_t *result, json_t *error);
/* The connection broke (not called after peer_close). */
typedef void (*peer_closed_fn)(void *arg, const char *reason);

/* addr is "IP:PORT"; expect_name is the host name its certificate must
 * carry (NULL: any host certificate from our CA).  Never NULL: a failure to connect arrives as failed calls. */
struct peer_conn *peer_connect(struct agent *a, const char *expect_name, const char *addr,
                               peer_closed_fn on_closed, void *arg);
/* Queued until connected.  The callback runs exactly once, never inside
 * peer_call.  timeout_ms 0 = none. */
void peer_call(struct peer_conn *p, const char *method, json_t *params, int timeout_ms,
               peer_reply_fn cb, void *arg);
/* Fails pending calls (their callbacks run) and frees the connection. */
void peer_close(struct peer_conn *p);
void peer_set_closed_hook(struct peer_conn *p, peer_closed_fn on_closed, void *arg);
const char *peer_name(const struct peer_conn *p);
/* The host name the peer's verified certificate carries, once connected
 * (NULL before): what rights are checked against, never a name the peer
 * states in a message. */
const char *peer_verified_name(const struct peer_conn *p);

/* Connects to the peer and proves it (the TLS handshake with this host's
 * identity, its certificate naming expect_name), then closes.  cb runs once,
 * from the loop, within about timeout_ms: ok, or why not in words
 * ("connection refused at ...", "the certificate at ... names h3, expected
 * h2"; reason is borrowed).  Never blocks: `peer add` and `peer list` use it. */
typedef void (*peer_probe_fn)(void *arg, bool ok, const char *reason, int64_t took_ms);
void peer_probe(struct agent *a, const char *expect_name, const char *addr, int timeout_ms, peer_probe_fn cb,
                void *arg);
#endif
