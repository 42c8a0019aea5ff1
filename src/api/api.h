/* Requests arriving at vmoved, and how handlers answer them.  A handler gets
 * an api_req it owns: it must eventually call api_reply or api_fail exactly
 * once (possibly later, from an event callback).  If the client has gone by
 * then, the answer is dropped; the request object stays valid until answered. */
#ifndef VMOVE_API_H
#define VMOVE_API_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/acl.h"

struct agent;
struct vm;

/* A client connection as the transport (src/server/) gives it to the API:
 * the unix socket and the TLS port today, HTTP later.  The API layer only
 * talks to it through these operations, so it never includes server/. */
struct api_sink;
struct api_sink_ops {
    void (*send)(struct api_sink *s, json_t *msg);   /* steals msg; dropped once closed */
    bool (*is_open)(const struct api_sink *s);
    const char *(*peer)(const struct api_sink *s);    /* "IP:PORT" or "unix(pid N, uid N)" */
    void (*ref)(struct api_sink *s);
    void (*unref)(struct api_sink *s);
    /* One hook run when the connection closes (replaces any earlier one;
     * NULL clears it). */
    void (*on_close)(struct api_sink *s, void (*hook)(void *arg), void *arg);
};
struct api_sink {
    const struct api_sink_ops *ops;
};


struct api_req {
    struct agent *agent;
    struct api_sink *sink;
    json_t *id;
    char *method;
    json_t *params;           /* always an object */
    struct principal who;
};

void api_reply(struct api_req *r, json_t *result);
void api_fail(struct api_req *r, json_t *error);
/* Shorthand for api_fail(r, proto_error(code, hint, fmt, ...)). */
void api_failf(struct api_req *r, const char *code, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void api_event(struct api_req *r, const char *event, json_t *data);
bool api_req_connected(const struct api_req *r);
/* The client's address, for logs and the audit record. */
const char *api_req_peer(const struct api_req *r);
/* A new request object, owning a reference to sink (the transport calls it). */
struct api_req *api_req_new(struct agent *a, struct api_sink *sink, json_t *id, const char *method,
                            json_t *params, const struct principal *who);

/* A reference to the request's connection that outlives the request: for a
 * peer whose later calls (or hang-up) belong to the same operation. */
struct api_sink *api_sink_hold(struct api_req *r);
void api_sink_release(struct api_sink *s);
void api_sink_on_close(struct api_sink *s, void (*hook)(void *arg), void *arg);

/* Parameter helpers: on a missing or mistyped parameter they answer the
 * request with an invalid_argument error and return NULL / -1. */
const char *api_param_str(struct api_req *r, const char *key, bool required);
int api_param_int(struct api_req *r, const char *key, long long def, long long *out);
/* The VM named by the "name" parameter, or NULL with the request answered
 * (a missing name, or not_found naming this host). */
struct vm *api_param_vm(struct api_req *r);
int api_param_bool(struct api_req *r, const char *key, bool def, bool *out);
/* A list's "limit" (audit.list, jobs.list, host.events): 1..API_LIMIT_MAX,
 * else answered with invalid_argument and -1.  Unchecked, a negative limit
 * meant "no limit" to SQLite and an endless loop to audit_read, and a huge
 * one wrapped in the cast to int. */
#define API_LIMIT_MAX 10000
int api_limit_check(struct api_req *r, long long limit);

typedef void (*api_handler_fn)(struct api_req *r);
/* Who may call a method at all, before its right is checked.  Hosts and
 * users are different principals: a host's grants let it send or receive
 * VMs, never act as a user.  A host acting for a user presents the user's
 * delegation token and becomes that user for the request. */
enum api_method_flags {
    API_PEER = 1u << 0,      /* host-to-host only (migrate.*): no user may call it */
    API_HOST_OK = 1u << 1,   /* a host may also call it as itself (the handler checks why) */
    API_JOB = 1u << 2,       /* starts a job, and follows it unless "wait" is false: counted in the quotas */
    API_STREAM = 1u << 3,    /* stays open, streaming events (jobs.watch, jobs.follow): counted in the quotas */
};

struct api_method {
    const char *name;
    api_handler_fn fn;
    unsigned right;          /* enum right needed here; 0: the handler checks */
    unsigned flags;          /* enum api_method_flags */
};
/* Dispatches (or answers "unknown method"). Takes ownership of r. */
void api_dispatch(struct api_req *r);

struct job;
/* Reply to r with the job's final record, streaming {"event":"job"} updates
 * until then; a finished job's record comes from the journal. */
void api_job_watch(struct agent *a, int64_t id, struct api_req *r);
/* Reply to r right away with {"job": id} (--no-wait), or watch until done. */
void api_job_answer(struct job *j, struct api_req *r, bool wait);
/* Room under the quotas of struct agent_quotas for what a method of these
 * flags would hold (a job, a stream)?  If not, r is answered "unavailable"
 * with the limit and what to do, and false.  Root's local socket always has. */
bool api_quota_admit(struct api_req *r, unsigned flags);
#endif
