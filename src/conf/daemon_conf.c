#include "conf/daemon_conf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

enum value_kind { VALUE_NAME, VALUE_ADDR, VALUE_PATH, VALUE_BOOL };

struct key {
    const char *name;
    enum value_kind kind;
    size_t offset;     /* of the char * (or bool) in struct daemon_conf */
};

#define KEY(n, k, field) {n, k, offsetof(struct daemon_conf, field)}
static const struct key keys[] = {
    KEY("name", VALUE_NAME, name),         KEY("listen", VALUE_ADDR, listen),
    KEY("tls-dir", VALUE_PATH, tls_dir),   KEY("state-dir", VALUE_PATH, state_dir),
    KEY("socket", VALUE_PATH, socket),     KEY("log-file", VALUE_PATH, log_file),
    KEY("debug", VALUE_BOOL, debug),
};

static const struct key *find_key(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(keys); i++)
        if (!strcmp(keys[i].name, name))
            return &keys[i];
    return NULL;
}

/* "10.0.1.11:7070" or "[::1]:7070": something before the last colon and a
 * port 1..65535 after it.  vmoved's listener checks the address itself. */
static bool valid_addr(const char *v)
{
    const char *colon = strrchr(v, ':');
    if (!colon || colon == v || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1))
        return false;
    long port = strtol(colon + 1, NULL, 10);
    return port >= 1 && port <= 65535 && strlen(colon + 1) <= 5;
}

static int conf_parse_yes_no(const char *v, bool *out)
{
    static const char *const yes[] = {"yes", "true", "on", "1"}, *const no[] = {"no", "false", "off", "0"};
    for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
        if (!strcmp(v, yes[i]))
            return *out = true, 0;
        if (!strcmp(v, no[i]))
            return *out = false, 0;
    }
    return -1;
}

/* Checks `value` for `k`; NULL if fine, else why not. */
static const char *check_value(const struct key *k, const char *value)
{
    bool b;
    switch (k->kind) {
    case VALUE_NAME: return valid_name(value) ? NULL : "not a valid host name (letters, digits, '-', '_', '.')";
    case VALUE_ADDR: return valid_addr(value) ? NULL : "expected ADDR:PORT (port 1..65535)";
    /* The file does not know vmoved's working directory: paths are absolute. */
    case VALUE_PATH: return value[0] == '/' ? NULL : "expected an absolute path";
    case VALUE_BOOL: return conf_parse_yes_no(value, &b) == 0 ? NULL : "expected yes or no";
    }
    return "?";
}

static void store(struct daemon_conf *c, const struct key *k, const char *value)
{
    char *base = (char *)c + k->offset;
    if (k->kind == VALUE_BOOL) {
        conf_parse_yes_no(value, (bool *)base);
        return;
    }
    char **slot = (char **)base;
    free(*slot);
    *slot = xstrdup(value);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = 0;
    return s;
}

/* One line, without its newline.  seen[i]: the line that set keys[i]. */
static int parse_line(const char *file, int lineno, char *line, int *seen, struct daemon_conf *c, char *err,
                      size_t errlen)
{
    char *s = trim(line);
    if (!*s || *s == '#')
        return 0;
    char *eq = strchr(s, '=');
    if (!eq) {
        snprintf(err, errlen, "%s:%d: malformed line (expected key = value)", file, lineno);
        return -1;
    }
    *eq = 0;
    char *key = trim(s), *value = trim(eq + 1);
    const struct key *k = find_key(key);
    if (!*key) {
        snprintf(err, errlen, "%s:%d: malformed line (no key before '=')", file, lineno);
        return -1;
    }
    if (!k) {
        snprintf(err, errlen, "%s:%d: unknown key \"%s\"", file, lineno, key);
        return -1;
    }
    int idx = (int)(k - keys);
    if (seen[idx]) {
        snprintf(err, errlen, "%s:%d: %s is already set on line %d", file, lineno, key, seen[idx]);
        return -1;
    }
    if (!*value) {
        snprintf(err, errlen, "%s:%d: %s needs a value", file, lineno, key);
        return -1;
    }
    const char *why = check_value(k, value);
    if (why) {
        snprintf(err, errlen, "%s:%d: bad value \"%s\" for %s: %s", file, lineno, value, key, why);
        return -1;
    }
    seen[idx] = lineno;
    store(c, k, value);
    return 0;
}

int daemon_conf_parse(const char *file, const char *text, struct daemon_conf *c, char *err, size_t errlen)
{
    int seen[ARRAY_LEN(keys)] = {0};
    char *copy = xstrdup(text), *rest = copy;
    int rc = 0;
    for (int lineno = 1; rest && rc == 0; lineno++) {
        char *nl = strchr(rest, '\n');
        if (nl)
            *nl = 0;
        rc = parse_line(file, lineno, rest, seen, c, err, errlen);
        rest = nl ? nl + 1 : NULL;
    }
    free(copy);
    return rc;
}

int daemon_conf_load(const char *path, bool must_exist, struct daemon_conf *c, char *err, size_t errlen)
{
    char *text;
    size_t len;
    if (read_file(path, &text, &len) < 0) {
        if (errno == ENOENT && !must_exist)
            return 0;
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    int rc;
    if (strlen(text) != len) {
        snprintf(err, errlen, "%s: not a text file (NUL byte at offset %zu)", path, strlen(text));
        rc = -1;
    } else
        rc = daemon_conf_parse(path, text, c, err, errlen);
    free(text);
    return rc;
}

void daemon_conf_free(struct daemon_conf *c)
{
    free(c->name);
    free(c->listen);
    free(c->tls_dir);
    free(c->state_dir);
    free(c->socket);
    free(c->log_file);
    *c = (struct daemon_conf){0};
}
