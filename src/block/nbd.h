/* NBD for the shared-nothing move: the destination's server and exports,
 * the source's client nodes.
 *
 * Contract: the qmon_* contract (qemu/monitor.h) -- each call returns -1
 * (cb never called) when QEMU's monitor refuses, else cb runs exactly once
 * unless the owner ended first.  Exports are named after the node they
 * serve (export id "nbd-<node>", NBD name "<node>"), which is what the
 * source asks for. */
#ifndef VMOVE_BLOCK_NBD_H
#define VMOVE_BLOCK_NBD_H
#include <stddef.h>

#include "qemu/monitor.h"
#include "qemu/qmp.h"

/* Which step of block_nbd_serve failed. */
enum block_nbd_step { BLOCK_NBD_SERVER, BLOCK_NBD_EXPORT };
typedef void (*block_nbd_serve_fn)(void *arg, enum block_nbd_step failed, const qmp_error_t *err);

/* nbd-server-start on host:port (tls_creds NULL: plain NBD), then one
 * writable export per node.  cb once: err NULL when every export exists,
 * else the first failure (the server is left to the caller's stop). */
int block_nbd_serve(qmp_t *q, struct qmon_owner *o, const char *host, int port, const char *tls_creds,
                    const char *const *nodes, size_t n, int timeout_ms, block_nbd_serve_fn cb, void *arg);
/* nbd-server-stop: the exports go with it. */
int block_nbd_stop(qmp_t *q, struct qmon_owner *o, int timeout_ms, qmon_done_fn cb, void *arg);

/* The client side: a block node reading and writing a remote export. */
struct block_nbd_client {
    const char *node_name;
    const char *host;
    int port;
    const char *export_name;
    const char *tls_creds, *tls_hostname;   /* NULL: plain NBD */
};
int block_nbd_client_add(qmp_t *q, struct qmon_owner *o, const struct block_nbd_client *c, int timeout_ms,
                         qmon_done_fn cb, void *arg);
#endif
