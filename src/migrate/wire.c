#include "migrate/wire.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/proto.h"

/* One message being read: its object, how its errors start, where they go. */
struct reader {
    json_t *j;
    const char *prefix;    /* "" for requests (the api_param_* texts), "reply to X: " for replies */
    const char *noun;      /* "parameter" or "field" */
    json_t **err;
};

static int bad(struct reader *rd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(struct reader *rd, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    *rd->err = proto_error(ERR_INVALID, NULL, "%s%s", rd->prefix, msg);
    return -1;
}

static int start(struct reader *rd, json_t *j, const char *prefix, const char *noun, json_t **err)
{
    *rd = (struct reader){j, prefix, noun, err};
    if (!json_is_object(j))
        return bad(rd, "the message is not a JSON object");
    return 0;
}

/* null counts as absent, as in api_param_*. */
static json_t *get(struct reader *rd, const char *key)
{
    json_t *v = json_object_get(rd->j, key);
    return json_is_null(v) ? NULL : v;
}

static int missing(struct reader *rd, const char *key) { return bad(rd, "missing %s \"%s\"", rd->noun, key); }

static int read_str(struct reader *rd, const char *key, bool required, const char **out)
{
    json_t *v = get(rd, key);
    *out = NULL;
    if (!v)
        return required ? missing(rd, key) : 0;
    if (!json_is_string(v))
        return bad(rd, "%s \"%s\" must be a string", rd->noun, key);
    *out = json_string_value(v);
    return 0;
}

/* A required string copied into buf (replies outlive their JSON). */
static int copy_str(struct reader *rd, const char *key, char *buf, size_t len)
{
    const char *s;
    if (read_str(rd, key, true, &s) < 0)
        return -1;
    if (strlen(s) >= len)
        return bad(rd, "%s \"%s\" is longer than %zu characters", rd->noun, key, len - 1);
    snprintf(buf, len, "%s", s);
    return 0;
}

static int read_int(struct reader *rd, const char *key, bool required, long long def, long long lo,
                    long long hi, long long *out)
{
    json_t *v = get(rd, key);
    *out = def;
    if (!v)
        return required ? missing(rd, key) : 0;
    if (!json_is_integer(v))
        return bad(rd, "%s \"%s\" must be an integer", rd->noun, key);
    long long n = json_integer_value(v);
    if (n < lo || n > hi)
        return bad(rd, "%s \"%s\" must be between %lld and %lld, not %lld", rd->noun, key, lo, hi, n);
    *out = n;
    return 0;
}

static int read_int32(struct reader *rd, const char *key, bool required, int def, int lo, int hi, int *out)
{
    long long n;
    int rc = read_int(rd, key, required, def, lo, hi, &n);
    *out = (int)n;
    return rc;
}

static int read_port(struct reader *rd, const char *key, bool required, int *out)
{
    return read_int32(rd, key, required, 0, 1, 65535, out);
}

static int read_bool(struct reader *rd, const char *key, bool required, bool *out)
{
    json_t *v = get(rd, key);
    *out = false;
    if (!v)
        return required ? missing(rd, key) : 0;
    if (!json_is_boolean(v))
        return bad(rd, "%s \"%s\" must be true or false", rd->noun, key);
    *out = json_is_true(v);
    return 0;
}

static int read_obj(struct reader *rd, const char *key, bool required, json_t **out)
{
    json_t *v = get(rd, key);
    *out = NULL;
    if (!v)
        return required ? missing(rd, key) : 0;
    if (!json_is_object(v))
        return bad(rd, "%s \"%s\" must be an object", rd->noun, key);
    *out = v;
    return 0;
}

static int read_str_array(struct reader *rd, const char *key, json_t **out)
{
    json_t *v = get(rd, key);
    *out = NULL;
    if (!v)
        return 0;
    size_t i;
    json_t *e;
    if (!json_is_array(v))
        return bad(rd, "%s \"%s\" must be an array of strings", rd->noun, key);
    json_array_foreach(v, i, e) if (!json_is_string(e))
        return bad(rd, "%s \"%s\" must be an array of strings", rd->noun, key);
    *out = v;
    return 0;
}




/* ---- migrate.prepare ---------------------------------------------------- */

static const char *const postcopy_names[] = {"no", "optional", "required"};

json_t *wire_prepare_req_to_json(const struct wire_prepare_req *m)
{
    json_t *j = json_pack("{s:O, s:O*, s:s*, s:s*, s:I, s:b, s:O, s:s*, s:b}", "config", m->config, "tuning", m->tuning,
                     "accel", m->accel, "via", m->via, "job", m->job, "quick", m->quick, "storage",
                     m->storage ? m->storage : json_null(), "user", m->user, "insecure_ok", m->insecure_ok);
    if (m->postcopy != WIRE_POSTCOPY_NO)
        json_object_set_new(j, "postcopy", json_string(postcopy_names[m->postcopy]));
    if (m->uptime_ms > 0)
        json_object_set_new(j, "uptime_ms", json_integer(m->uptime_ms));
    return j;
}

int wire_prepare_req_from_json(json_t *j, struct wire_prepare_req *m, json_t **err)
{
    struct reader rd;
    long long job, uptime;
    *m = (struct wire_prepare_req){0};
    if (start(&rd, j, "", "parameter", err) < 0 || read_obj(&rd, "config", true, &m->config) < 0 ||
        read_obj(&rd, "tuning", false, &m->tuning) < 0 || read_str(&rd, "accel", false, &m->accel) < 0 ||
        read_str(&rd, "via", false, &m->via) < 0 || read_int(&rd, "job", false, 0, LLONG_MIN, LLONG_MAX, &job) < 0 ||
        read_bool(&rd, "quick", false, &m->quick) < 0 || read_obj(&rd, "storage", false, &m->storage) < 0 ||
        read_str(&rd, "user", false, &m->user) < 0 || read_bool(&rd, "insecure_ok", false, &m->insecure_ok) < 0 ||
        read_int(&rd, "uptime_ms", false, 0, 1, WIRE_UPTIME_MAX_MS, &uptime) < 0)
        return -1;
    m->job = job;
    m->uptime_ms = uptime;
    const char *pc = NULL;
    if (read_str(&rd, "postcopy", false, &pc) < 0)
        return -1;
    for (int i = 0; pc && i < 3; i++)
        if (!strcmp(pc, postcopy_names[i])) {
            m->postcopy = (enum wire_postcopy)i;
            pc = NULL;
        }
    if (pc)
        return bad(&rd, "parameter \"postcopy\" must be \"no\", \"optional\" or \"required\"");
    return 0;
}

json_t *wire_prepare_reply_to_json(const struct wire_prepare_reply *m)
{
    if (m->quick)
        return json_pack("{s:b}", "quick", true);
    json_t *j = json_pack("{s:s, s:i, s:b, s:s}", "ip", m->ip, "port", m->port, "tls", m->tls, "host", m->host);
    if (m->disks) {
        json_object_set_new(j, "nbd_port", json_integer(m->nbd_port));
        json_object_set(j, "disks", m->disks);
    }
    if (m->postcopy)
        json_object_set_new(j, "postcopy", json_true());
    return j;
}

int wire_prepare_reply_from_json(json_t *j, struct wire_prepare_reply *m, json_t **err)
{
    struct reader rd;
    json_t *disks;
    *m = (struct wire_prepare_reply){0};
    if (start(&rd, j, "reply to migrate.prepare: ", "field", err) < 0 ||
        read_bool(&rd, "quick", false, &m->quick) < 0)
        return -1;
    if (m->quick)
        return 0;
    if (copy_str(&rd, "ip", m->ip, sizeof m->ip) < 0 || read_port(&rd, "port", true, &m->port) < 0 ||
        read_bool(&rd, "tls", true, &m->tls) < 0 || copy_str(&rd, "host", m->host, sizeof m->host) < 0 ||
        read_port(&rd, "nbd_port", false, &m->nbd_port) < 0 || read_str_array(&rd, "disks", &disks) < 0 ||
        read_bool(&rd, "postcopy", false, &m->postcopy) < 0)
        return -1;
    m->disks = json_incref(disks);
    return 0;
}

void wire_prepare_reply_clear(struct wire_prepare_reply *m)
{
    json_decref(m->disks);
    m->disks = NULL;
}

/* ---- migrate.finish, migrate.resolve ------------------------------------ */

int wire_name_req_from_json(json_t *j, struct wire_name_req *m, json_t **err)
{
    struct reader rd;
    *m = (struct wire_name_req){0};
    return start(&rd, j, "", "parameter", err) < 0 ? -1 : read_str(&rd, "name", true, &m->name);
}

json_t *wire_finish_reply_to_json(const struct wire_finish_reply *m)
{
    json_t *j = json_pack("{s:s, s:s}", "state", "running", "host", m->host);
    if (m->has_timeline) {
        json_t *t = json_pack("{s:i, s:i, s:i, s:i, s:i}", "loaded_ms", m->loaded_ms, "committed_ms", m->committed_ms,
                              "resumed_ms", m->resumed_ms, "announced_ms", m->announced_ms, "answered_ms",
                              m->answered_ms);
        json_object_update(j, t);
        json_decref(t);
    }
    return j;
}

int wire_finish_reply_from_json(json_t *j, struct wire_finish_reply *m, json_t **err)
{
    struct reader rd;
    const char *state;
    *m = (struct wire_finish_reply){0};
    if (start(&rd, j, "reply to migrate.finish: ", "field", err) < 0 || read_str(&rd, "state", true, &state) < 0 ||
        copy_str(&rd, "host", m->host, sizeof m->host) < 0)
        return -1;
    if (strcmp(state, "running"))
        return bad(&rd, "field \"state\" must be \"running\", not \"%s\"", state);
    const int lo = -WIRE_TIMELINE_MAX_MS, hi = WIRE_TIMELINE_MAX_MS;
    m->has_timeline = json_object_get(j, "answered_ms") != NULL;
    if (!m->has_timeline)
        return 0;
    return read_int32(&rd, "loaded_ms", true, 0, lo, hi, &m->loaded_ms) < 0 ||
           read_int32(&rd, "committed_ms", true, 0, lo, hi, &m->committed_ms) < 0 ||
           read_int32(&rd, "resumed_ms", true, 0, lo, hi, &m->resumed_ms) < 0 ||
           read_int32(&rd, "announced_ms", true, 0, lo, hi, &m->announced_ms) < 0 ||
           read_int32(&rd, "answered_ms", true, 0, 0, hi, &m->answered_ms) < 0 ? -1 : 0;
}

static const char *const resolve_names[] = {"absent", "committed", "aborted"};

const char *wire_resolve_state_name(enum wire_resolve_state s) { return resolve_names[s]; }

json_t *wire_resolve_reply_to_json(const struct wire_resolve_reply *m)
{
    return json_pack("{s:s, s:s}", "state", wire_resolve_state_name(m->state), "host", m->host);
}

int wire_resolve_reply_from_json(json_t *j, struct wire_resolve_reply *m, json_t **err)
{
    struct reader rd;
    const char *state;
    *m = (struct wire_resolve_reply){0};
    if (start(&rd, j, "reply to migrate.resolve: ", "field", err) < 0 || read_str(&rd, "state", true, &state) < 0 ||
        copy_str(&rd, "host", m->host, sizeof m->host) < 0)
        return -1;
    for (size_t i = 0; i < sizeof resolve_names / sizeof *resolve_names; i++)
        if (!strcmp(state, resolve_names[i])) {
            m->state = (enum wire_resolve_state)i;
            return 0;
        }
    return bad(&rd, "field \"state\" must be absent, committed or aborted, not \"%s\"", state);
}

/* ---- migrate.reserve ---------------------------------------------------- */

json_t *wire_reserve_req_to_json(const struct wire_reserve_req *m)
{
    return json_pack("{s:I, s:s*, s:s*}", "job", m->job, "vm", m->vm, "user", m->user);
}

int wire_reserve_req_from_json(json_t *j, struct wire_reserve_req *m, json_t **err)
{
    struct reader rd;
    long long job;
    *m = (struct wire_reserve_req){0};
    if (start(&rd, j, "", "parameter", err) < 0 || read_int(&rd, "job", false, -1, LLONG_MIN, LLONG_MAX, &job) < 0 ||
        read_str(&rd, "vm", false, &m->vm) < 0 || read_str(&rd, "user", false, &m->user) < 0)
        return -1;
    m->job = job;
    return 0;
}

json_t *wire_reserve_reply_to_json(const struct wire_reserve_reply *m)
{
    return json_pack("{s:b, s:i, s:i, s:i, s:s}", "granted", m->granted, "position", m->position, "in_use",
                     m->in_use, "max", m->max, "host", m->host);
}

int wire_reserve_reply_from_json(json_t *j, struct wire_reserve_reply *m, json_t **err)
{
    struct reader rd;
    *m = (struct wire_reserve_reply){0};
    if (start(&rd, j, "reply to migrate.reserve: ", "field", err) < 0 ||
        read_bool(&rd, "granted", true, &m->granted) < 0 ||
        read_int32(&rd, "position", true, 0, 1, INT_MAX, &m->position) < 0 ||
        read_int32(&rd, "in_use", false, 0, 0, INT_MAX, &m->in_use) < 0 ||
        read_int32(&rd, "max", false, 0, 0, INT_MAX, &m->max) < 0 ||
        copy_str(&rd, "host", m->host, sizeof m->host) < 0)
        return -1;
    return 0;
}

/* ---- migrate.load ------------------------------------------------------- */

json_t *wire_load_req_to_json(const struct wire_load_req *m)
{
    return json_pack("{s:s, s:s}", "name", m->name, "path", m->path);
}

int wire_load_req_from_json(json_t *j, struct wire_load_req *m, json_t **err)
{
    struct reader rd;
    *m = (struct wire_load_req){0};
    if (start(&rd, j, "", "parameter", err) < 0 || read_str(&rd, "name", true, &m->name) < 0 ||
        read_str(&rd, "path", true, &m->path) < 0)
        return -1;
    return 0;
}

/* ---- migrate.recover ---------------------------------------------------- */

json_t *wire_recover_reply_to_json(const struct wire_recover_reply *m)
{
    if (m->loaded)
        return json_pack("{s:b}", "loaded", true);
    return json_pack("{s:s, s:i}", "ip", m->ip, "port", m->port);
}

int wire_recover_reply_from_json(json_t *j, struct wire_recover_reply *m, json_t **err)
{
    struct reader rd;
    *m = (struct wire_recover_reply){0};
    if (start(&rd, j, "reply to migrate.recover: ", "field", err) < 0 || read_bool(&rd, "loaded", false, &m->loaded) < 0)
        return -1;
    if (m->loaded)
        return 0;
    if (copy_str(&rd, "ip", m->ip, sizeof m->ip) < 0 || read_port(&rd, "port", true, &m->port) < 0)
        return -1;
    return 0;
}
