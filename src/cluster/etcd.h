/* A client of etcd's v3 JSON gateway (etcd 3.4: POST /v3/..., base64 keys
 * and values, int64s as JSON strings, zero values omitted), over libevent's
 * HTTP client, plain or TLS.
 *
 * Every call carries a deadline (sent as Grpc-Timeout, so that etcd itself
 * answers 504 in time, and enforced locally) and Grpc-Metadata-Hasleader, so
 * that a member cut off from the majority fails fast instead of answering
 * late or from stale state.  A failed call moves the client to the next
 * endpoint: the caller retries on its own schedule (a lease renewal is
 * resent every keepalive interval anyway; a decision is re-made from a fresh
 * read).  Decisions are transactions with compares, so a call that applied
 * but whose answer was lost only makes the retry's compare fail. */
#ifndef VMOVE_ETCD_H
#define VMOVE_ETCD_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
typedef struct ssl_ctx_st SSL_CTX;
struct etcd;
struct etcd_call;

/* reply: the decoded JSON answer (borrowed: freed after the callback); NULL
 * on failure, with err saying what failed (borrowed). */
typedef void (*etcd_done_fn)(void *arg, json_t *reply, const char *err);

/* urls: "http://IP:PORT" or "https://IP:PORT", at least one.  tls: the
 * client context for https (the host's identity; NULL allowed only when
 * every URL is http).  NULL with err on a bad URL. */
struct etcd *etcd_new(struct event_base *base, const char *const *urls, size_t n, SSL_CTX *tls,
                      char *err, size_t errlen);
/* Pending calls are answered with an error ("vmoved is stopping") first;
 * a call made from such a callback is answered the same way at once. */
void etcd_free(struct etcd *e);
/* Check a URL list without connecting ("http://a:1,https://b:2"): 0, or -1
 * with err.  out receives the split list (free with etcd_urls_free). */
int etcd_urls_parse(const char *list, char ***out, size_t *n, char *err, size_t errlen);
void etcd_urls_free(char **urls, size_t n);
const char *etcd_endpoint(const struct etcd *e);   /* the one in use */
bool etcd_is_tls(const struct etcd *e);

/* POST path (e.g. "/v3/kv/range") with body (stolen).  The callback runs
 * exactly once, later (never from inside this call, except while etcd_free
 * runs). */
void etcd_post(struct etcd *e, const char *path, json_t *body, int timeout_ms, etcd_done_fn cb,
               void *arg);

/* ---- building requests ---- */
char *etcd_b64(const char *s);                  /* base64 of a C string */
char *etcd_unb64(const char *s);                /* NULL if not base64 */
/* The range end that makes KEY a prefix ("…/vms/" → "…/vms0"), base64. */
char *etcd_prefix_end_b64(const char *prefix);
json_t *etcd_range_body(const char *key, bool prefix);
/* Transaction parts ({"request_put": ...} etc.); value is a C string. */
json_t *etcd_op_put(const char *key, const char *value, int64_t lease);
json_t *etcd_op_delete(const char *key, bool prefix);
json_t *etcd_op_range(const char *key, bool prefix);
/* Compares: target CREATE/MOD/VERSION/LEASE, result EQUAL/NOT_EQUAL/... */
json_t *etcd_cmp(const char *key, const char *target, const char *result, int64_t value);
json_t *etcd_txn_body(json_t *compares, json_t *success, json_t *failure);   /* all stolen */

/* ---- reading answers ---- */
int64_t etcd_int(json_t *v);                    /* "5", 5, or absent → 0 */
int64_t etcd_revision(json_t *reply);           /* header.revision */
bool etcd_txn_succeeded(json_t *reply);
struct etcd_kv {
    char *key, *value;                          /* decoded */
    int64_t create_rev, mod_rev, version, lease;
};
/* The kvs of a range answer (or of a txn's response_range). */
size_t etcd_kvs(json_t *range_reply, struct etcd_kv **out);
void etcd_kvs_free(struct etcd_kv *kvs, size_t n);
#endif
