#include "conf/settings.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

void host_settings_defaults(struct host_settings *s)
{
    memset(s, 0, sizeof *s);
    s->accel = ACCEL_AUTO;
    s->max_live_migrations = DEFAULT_MAX_LIVE_MIGRATIONS;
    s->max_storage_migrations = DEFAULT_MAX_STORAGE_MIGRATIONS;
    s->console_port = DEFAULT_CONSOLE_PORT;
}

static int parse_port(json_t *v, const char *key, int *out, char *err, size_t errlen)
{
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65535) {
        snprintf(err, errlen, "%s: expected a TCP port from 1 to 65535", key);
        return -1;
    }
    *out = (int)json_integer_value(v);
    return 0;
}

static int parse_limit(json_t *v, const char *key, int *out, char *err, size_t errlen)
{
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > MAX_SIMULTANEOUS_MIGRATIONS) {
        snprintf(err, errlen, "%s: expected an integer from 1 to %d", key, MAX_SIMULTANEOUS_MIGRATIONS);
        return -1;
    }
    *out = (int)json_integer_value(v);
    return 0;
}

int cidr_parse(const char *s, struct cidr *out)
{
    char ip[64];
    const char *slash = strchr(s, '/');
    int prefix = 32;
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    if (n >= sizeof ip)
        return -1;
    memcpy(ip, s, n);
    ip[n] = 0;
    if (slash) {
        char *end;
        long p = strtol(slash + 1, &end, 10);
        if (*end || end == slash + 1 || p < 0 || p > 32)
            return -1;
        prefix = (int)p;
    }
    struct in_addr a;
    if (inet_pton(AF_INET, ip, &a) != 1)
        return -1;
    uint32_t mask = prefix ? 0xffffffffu << (32 - prefix) : 0;
    out->addr = ntohl(a.s_addr) & mask;
    out->prefix = prefix;
    return 0;
}

void cidr_format(const struct cidr *c, char *buf, size_t len)
{
    struct in_addr a = {htonl(c->addr)};
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a, ip, sizeof ip);
    snprintf(buf, len, "%s/%d", ip, c->prefix);
}

bool cidr_contains(const struct cidr *c, uint32_t addr)
{
    uint32_t mask = c->prefix ? 0xffffffffu << (32 - c->prefix) : 0;
    return (addr & mask) == c->addr;
}

bool settings_migration_allowed(const struct host_settings *s, uint32_t addr)
{
    if (s->migration_any)
        return true;
    for (int i = 0; i < s->n_migration_networks; i++)
        if (cidr_contains(&s->migration_networks[i], addr))
            return true;
    return false;
}

void settings_migration_networks_str(const struct host_settings *s, char *buf, size_t len)
{
    if (s->migration_any) {
        snprintf(buf, len, "any");
        return;
    }
    if (!s->n_migration_networks) {
        snprintf(buf, len, "(none)");
        return;
    }
    size_t off = 0;
    buf[0] = 0;
    for (int i = 0; i < s->n_migration_networks && off < len; i++) {
        char c[32];
        cidr_format(&s->migration_networks[i], c, sizeof c);
        off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? ", " : "", c);
    }
}

const struct peer_entry *settings_find_peer(const struct host_settings *s, const char *name)
{
    for (int i = 0; i < s->n_peers; i++)
        if (!strcmp(s->peers[i].name, name))
            return &s->peers[i];
    return NULL;
}

static int parse_networks(json_t *v, struct host_settings *s, char *err, size_t errlen)
{
    size_t i;
    json_t *e;
    if (!json_is_array(v) || json_array_size(v) > MAX_MIGRATION_NETWORKS) {
        snprintf(err, errlen, "migration_networks: expected an array of up to %d CIDRs or [\"any\"]",
                 MAX_MIGRATION_NETWORKS);
        return -1;
    }
    s->n_migration_networks = 0;
    s->migration_any = false;
    json_array_foreach(v, i, e) {
        const char *t = json_string_value(e);
        if (t && !strcmp(t, "any") && json_array_size(v) == 1) {
            s->migration_any = true;
            continue;
        }
        if (!t || cidr_parse(t, &s->migration_networks[s->n_migration_networks]) < 0) {
            snprintf(err, errlen, "migration_networks[%zu]: \"%s\" is not an IPv4 CIDR such as 10.0.2.0/24 "
                                  "(or use \"any\" alone)", i, t ? t : "?");
            return -1;
        }
        s->n_migration_networks++;
    }
    return 0;
}

static int parse_peers(json_t *v, struct host_settings *s, char *err, size_t errlen)
{
    const char *name;
    json_t *addr;
    if (!json_is_object(v) || json_object_size(v) > MAX_PEERS) {
        snprintf(err, errlen, "peers: expected an object {\"HOST\": \"ADDR:PORT\"}");
        return -1;
    }
    s->n_peers = 0;
    json_object_foreach(v, name, addr) {
        if (!valid_name(name) || !json_is_string(addr) || json_string_length(addr) >= sizeof s->peers[0].addr) {
            snprintf(err, errlen, "peers.%s: expected a valid host name mapped to \"ADDR:PORT\"", name);
            return -1;
        }
        snprintf(s->peers[s->n_peers].name, sizeof s->peers[0].name, "%s", name);
        snprintf(s->peers[s->n_peers].addr, sizeof s->peers[0].addr, "%s", json_string_value(addr));
        s->n_peers++;
    }
    return 0;
}

static int parse_delegation(json_t *v, struct host_settings *s, char *err, size_t errlen)
{
    size_t i;
    json_t *e;
    if (!json_is_array(v) || json_array_size(v) > MAX_PEERS) {
        snprintf(err, errlen, "allow_delegation_from: expected a list of host:NAME or group:NAME");
        return -1;
    }
    s->n_delegation_from = 0;
    json_array_foreach(v, i, e) {
        const char *p = json_string_value(e);
        if (p && !strcmp(p, "none") && json_array_size(v) == 1)
            break;
        const char *colon = p ? strchr(p, ':') : NULL;
        if (!colon || (strncmp(p, "host:", 5) && strncmp(p, "group:", 6)) || !valid_name(colon + 1)) {
            snprintf(err, errlen, "allow_delegation_from: \"%s\" is not host:NAME or group:NAME", p ? p : "?");
            return -1;
        }
        snprintf(s->delegation_from[s->n_delegation_from++], sizeof s->delegation_from[0], "%s", p);
    }
    return 0;
}

static const char *const dir_kind_names[N_DIR_KINDS] = {"images", "kernels", "storage", "state"};

int dir_kind_parse(const char *s, enum dir_kind *out)
{
    for (int k = 0; k < N_DIR_KINDS; k++)
        if (!strcmp(s, dir_kind_names[k])) {
            *out = (enum dir_kind)k;
            return 0;
        }
    return -1;
}

const char *dir_kind_name(enum dir_kind k) { return k < N_DIR_KINDS ? dir_kind_names[k] : "?"; }

const char *settings_allowed_dir_problem(const char *dir)
{
    size_t n = strlen(dir);
    if (dir[0] != '/')
        return "not an absolute path";
    if (n >= ALLOWED_DIR_MAX)
        return "longer than 255 characters";
    if (n == 1)
        return "\"/\" would allow every file of the host";
    if (dir[n - 1] == '/')
        return "ends with \"/\"";
    /* Components are compared whole, so the path must be in one spelling. */
    for (const char *c = dir; c; c = strchr(c + 1, '/')) {
        const char *end = strchr(c + 1, '/');
        size_t len = end ? (size_t)(end - c - 1) : strlen(c + 1);
        if (len == 0 || (len == 1 && c[1] == '.') || (len == 2 && c[1] == '.' && c[2] == '.'))
            return "not canonical (\"//\", \".\" or \"..\")";
    }
    return NULL;
}

int settings_allow_dir(struct host_settings *s, enum dir_kind k, const char *dir, char *err, size_t errlen)
{
    struct allowed_dirs *a = &s->allowed[k];
    const char *why = settings_allowed_dir_problem(dir);
    if (why) {
        snprintf(err, errlen, "allowed_dirs.%s: \"%s\" is %s: give an absolute canonical directory", dir_kind_name(k),
                 dir, why);
        return -1;
    }
    a->set = true;
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->dirs[i], dir))
            return 0;
    if (a->n >= MAX_ALLOWED_DIRS) {
        snprintf(err, errlen, "allowed_dirs.%s: at most %d directories", dir_kind_name(k), MAX_ALLOWED_DIRS);
        return -1;
    }
    snprintf(a->dirs[a->n++], sizeof a->dirs[0], "%s", dir);
    return 0;
}

int settings_disallow_dir(struct host_settings *s, enum dir_kind k, const char *dir, char *err, size_t errlen)
{
    struct allowed_dirs *a = &s->allowed[k];
    for (int i = 0; i < a->n; i++)
        if (!strcmp(a->dirs[i], dir)) {
            memmove(a->dirs[i], a->dirs[i + 1], (size_t)(a->n - i - 1) * sizeof a->dirs[0]);
            a->n--;
            a->set = true;
            return 0;
        }
    snprintf(err, errlen, "allowed_dirs.%s: %s is not in the list", dir_kind_name(k), dir);
    return -1;
}

static int parse_allowed_kind(json_t *v, struct host_settings *s, enum dir_kind k, char *err, size_t errlen)
{
    size_t i;
    json_t *e;
    if (!json_is_array(v) || json_array_size(v) > MAX_ALLOWED_DIRS) {
        snprintf(err, errlen, "allowed_dirs.%s: expected a list of up to %d absolute directories", dir_kind_name(k),
                 MAX_ALLOWED_DIRS);
        return -1;
    }
    s->allowed[k] = (struct allowed_dirs){.set = true};
    json_array_foreach(v, i, e) {
        const char *d = json_string_value(e);
        const char *why = d ? settings_allowed_dir_problem(d) : "not a string";
        if (why) {
            snprintf(err, errlen, "allowed_dirs.%s[%zu]: \"%s\" is %s: give an absolute canonical directory",
                     dir_kind_name(k), i, d ? d : "?", why);
            return -1;
        }
        settings_allow_dir(s, k, d, err, errlen);   /* cannot fail: the list's size was checked */
    }
    return 0;
}

static int parse_allowed(json_t *v, struct host_settings *s, char *err, size_t errlen)
{
    const char *key;
    json_t *list;
    if (!json_is_object(v)) {
        snprintf(err, errlen, "allowed_dirs: expected an object {\"images\": [DIR...], \"kernels\": [...], "
                              "\"storage\": [...], \"state\": [...]}");
        return -1;
    }
    json_object_foreach(v, key, list) {
        enum dir_kind k;
        if (dir_kind_parse(key, &k) < 0) {
            snprintf(err, errlen, "allowed_dirs: unknown kind \"%s\" (images, kernels, storage or state)", key);
            return -1;
        }
        if (parse_allowed_kind(list, s, k, err, errlen) < 0)
            return -1;
    }
    return 0;
}

static json_t *allowed_to_json(const struct host_settings *s)
{
    json_t *o = json_object();
    for (int k = 0; k < N_DIR_KINDS; k++) {
        if (!s->allowed[k].set)
            continue;
        json_t *list = json_array();
        for (int i = 0; i < s->allowed[k].n; i++)
            json_array_append_new(list, json_string(s->allowed[k].dirs[i]));
        json_object_set_new(o, dir_kind_name((enum dir_kind)k), list);
    }
    return o;
}

static int parse_bool(json_t *v, const char *key, bool *out, char *err, size_t errlen)
{
    if (!json_is_boolean(v)) {
        snprintf(err, errlen, "%s: expected true or false", key);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

int host_settings_from_json(json_t *j, struct host_settings *s, char *err, size_t errlen)
{
    host_settings_defaults(s);
    if (!json_is_object(j)) {
        snprintf(err, errlen, "host settings must be a JSON object");
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        int rc = 0;
        if (!strcmp(key, "version")) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 ||
                json_integer_value(v) > HOST_SETTINGS_VERSION) {
                snprintf(err, errlen, "version: must be an integer from 1 to %d", HOST_SETTINGS_VERSION);
                rc = -1;
            }
        } else if (!strcmp(key, "accel")) {
            if (!json_is_string(v) || accel_setting_parse(json_string_value(v), &s->accel) < 0) {
                snprintf(err, errlen, "accel: expected \"auto\", \"kvm\" or \"tcg\"");
                rc = -1;
            }
        } else if (!strcmp(key, "migration_incoming"))
            rc = parse_bool(v, key, &s->migration_incoming, err, errlen);
        else if (!strcmp(key, "migration_outgoing"))
            rc = parse_bool(v, key, &s->migration_outgoing, err, errlen);
        else if (!strcmp(key, "migration_networks"))
            rc = parse_networks(v, s, err, errlen);
        else if (!strcmp(key, "peers"))
            rc = parse_peers(v, s, err, errlen);
        else if (!strcmp(key, "max_live_migrations"))
            rc = parse_limit(v, key, &s->max_live_migrations, err, errlen);
        else if (!strcmp(key, "max_storage_migrations"))
            rc = parse_limit(v, key, &s->max_storage_migrations, err, errlen);
        else if (!strcmp(key, "drained"))
            rc = parse_bool(v, key, &s->drained, err, errlen);
        else if (!strcmp(key, "allow_insecure_migration"))
            rc = parse_bool(v, key, &s->allow_insecure_migration, err, errlen);
        else if (!strcmp(key, "allow_delegation_from"))
            rc = parse_delegation(v, s, err, errlen);
        else if (!strcmp(key, "allowed_dirs"))
            rc = parse_allowed(v, s, err, errlen);
        else if (!strcmp(key, "allow_postcopy"))
            rc = parse_bool(v, key, &s->allow_postcopy, err, errlen);
        else if (!strcmp(key, "console"))
            rc = parse_bool(v, key, &s->console, err, errlen);
        else if (!strcmp(key, "console_port"))
            rc = parse_port(v, key, &s->console_port, err, errlen);
        else {
            snprintf(err, errlen, "unknown field \"%s\"", key);
            rc = -1;
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

json_t *host_settings_to_json(const struct host_settings *s)
{
    json_t *nets = json_array();
    if (s->migration_any)
        json_array_append_new(nets, json_string("any"));
    for (int i = 0; i < s->n_migration_networks; i++) {
        char c[32];
        cidr_format(&s->migration_networks[i], c, sizeof c);
        json_array_append_new(nets, json_string(c));
    }
    json_t *peers = json_object();
    for (int i = 0; i < s->n_peers; i++)
        json_object_set_new(peers, s->peers[i].name, json_string(s->peers[i].addr));
    json_t *deleg = json_array();
    for (int i = 0; i < s->n_delegation_from; i++)
        json_array_append_new(deleg, json_string(s->delegation_from[i]));
    json_t *j = json_pack("{s:i, s:s, s:b, s:b, s:o, s:o, s:i, s:i, s:b, s:b, s:o, s:o}", "version", HOST_SETTINGS_VERSION, "accel",
                     accel_setting_name(s->accel), "migration_incoming", s->migration_incoming,
                     "migration_outgoing", s->migration_outgoing, "migration_networks", nets,
                     "peers", peers, "max_live_migrations", s->max_live_migrations,
                     "max_storage_migrations", s->max_storage_migrations, "drained", s->drained,
                     "allow_insecure_migration", s->allow_insecure_migration, "allow_delegation_from", deleg,
                     "allowed_dirs", allowed_to_json(s));
    json_object_set_new(j, "allow_postcopy", json_boolean(s->allow_postcopy));
    json_object_set_new(j, "console", json_boolean(s->console));
    json_object_set_new(j, "console_port", json_integer(s->console_port));
    return j;
}

int host_settings_load(const char *path, struct host_settings *s, char *err, size_t errlen)
{
    host_settings_defaults(s);
    if (!path_exists(path))
        return 0;
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!j) {
        snprintf(err, errlen, "%s:%d:%d: %s", path, je.line, je.column, je.text);
        return -1;
    }
    char sub[256];
    int rc = host_settings_from_json(j, s, sub, sizeof sub);
    json_decref(j);
    if (rc < 0)
        snprintf(err, errlen, "%s: %s", path, sub);
    return rc;
}

int host_settings_save(const char *path, const struct host_settings *s, char *err, size_t errlen)
{
    json_t *j = host_settings_to_json(s);
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(j);
    char *line = xasprintf("%s\n", text);
    free(text);
    int rc = write_file_atomic(path, line, strlen(line), 0600);
    free(line);
    if (rc < 0)
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    return rc;
}

int accel_setting_parse(const char *s, enum accel_setting *out)
{
    if (!strcmp(s, "auto"))
        *out = ACCEL_AUTO;
    else if (!strcmp(s, "kvm"))
        *out = ACCEL_KVM;
    else if (!strcmp(s, "tcg"))
        *out = ACCEL_TCG;
    else
        return -1;
    return 0;
}

const char *accel_setting_name(enum accel_setting s)
{
    return s == ACCEL_KVM ? "kvm" : s == ACCEL_TCG ? "tcg" : "auto";
}
