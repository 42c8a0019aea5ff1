#include "core/acl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/audit.h"

#define ACL_VERSION 1

struct acl {
    json_t *grants;   /* {"user:alice": ["migrate.out", ...]} */
    json_t *groups;   /* {"ops": ["user:alice", "host:h1"]} */
};

static const char *right_names[] = {"vm.read", "vm.manage", "migrate.out", "migrate.in", "storage.move",
                                    "host.admin"};

const char *right_name(unsigned right)
{
    for (unsigned i = 0; i < ARRAY_LEN(right_names); i++)
        if (right == 1u << i)
            return right_names[i];
    return "?";
}

int right_parse(const char *s, unsigned *out)
{
    for (unsigned i = 0; i < ARRAY_LEN(right_names); i++)
        if (!strcmp(s, right_names[i])) {
            *out = 1u << i;
            return 0;
        }
    return -1;
}

int principal_parse(const char *s, char *kind, size_t kindlen, char *name, size_t namelen)
{
    const char *colon = s ? strchr(s, ':') : NULL;
    if (!colon)
        return -1;
    snprintf(kind, kindlen, "%.*s", (int)(colon - s), s);
    snprintf(name, namelen, "%s", colon + 1);
    if (strcmp(kind, "user") && strcmp(kind, "host") && strcmp(kind, "group"))
        return -1;
    return valid_name(name) ? 0 : -1;
}

static char *acl_path(struct agent *a) { return xasprintf("%s/acl.json", a->state_dir); }

static int validate(json_t *j, char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        if (strcmp(key, "version") && strcmp(key, "grants") && strcmp(key, "groups")) {
            snprintf(err, errlen, "unknown field \"%s\"", key);
            return -1;
        }
    }
    const char *const maps[] = {"grants", "groups"};
    for (size_t i = 0; i < ARRAY_LEN(maps); i++)
        if (json_object_get(j, maps[i]) && !json_is_object(json_object_get(j, maps[i]))) {
            snprintf(err, errlen, "%s: expected an object", maps[i]);
            return -1;
        }
    char kind[16], name[64];
    json_object_foreach(json_object_get(j, "grants"), key, v) {
        size_t i;
        json_t *r;
        unsigned bit;
        if (principal_parse(key, kind, sizeof kind, name, sizeof name) < 0 || !json_is_array(v)) {
            snprintf(err, errlen, "grants: bad principal \"%s\"", key);
            return -1;
        }
        json_array_foreach(v, i, r) if (!json_is_string(r) || right_parse(json_string_value(r), &bit) < 0) {
            snprintf(err, errlen, "grants.%s: unknown right", key);
            return -1;
        }
    }
    json_object_foreach(json_object_get(j, "groups"), key, v) {
        size_t i;
        json_t *m;
        if (!valid_name(key) || !json_is_array(v)) {
            snprintf(err, errlen, "groups: bad group \"%s\"", key);
            return -1;
        }
        /* Members are principal strings: the rest of this file compares
         * them with strcmp (a number here crashed `acl group add`).  A
         * string that names no one is harmless (it never matches) and is
         * kept, so that an existing file still loads. */
        json_array_foreach(v, i, m) {
            if (!json_is_string(m)) {
                snprintf(err, errlen, "groups.%s[%zu]: expected a principal string (user:NAME, host:NAME)", key, i);
                return -1;
            }
        }
    }
    return 0;
}

int acl_load(struct agent *a, char *err, size_t errlen)
{
    a->acl = xcalloc(1, sizeof *a->acl);
    char *path = acl_path(a);
    json_t *j = NULL;
    if (path_exists(path)) {
        json_error_t je;
        j = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
        char sub[256];
        if (!j || !json_is_object(j) || validate(j, sub, sizeof sub) < 0) {
            snprintf(err, errlen, "%s: %s", path, j ? sub : je.text);
            json_decref(j);
            free(path);
            return -1;
        }
    }
    free(path);
    a->acl->grants = json_incref(json_object_get(j, "grants"));
    a->acl->groups = json_incref(json_object_get(j, "groups"));
    if (!a->acl->grants)
        a->acl->grants = json_object();
    if (!a->acl->groups)
        a->acl->groups = json_object();
    json_decref(j);
    return 0;
}

void acl_free(struct agent *a)
{
    if (!a->acl)
        return;
    json_decref(a->acl->grants);
    json_decref(a->acl->groups);
    free(a->acl);
    a->acl = NULL;
}

static int acl_save(struct agent *a, char *err, size_t errlen)
{
    json_t *j = json_pack("{s:i, s:O, s:O}", "version", ACL_VERSION, "grants", a->acl->grants, "groups",
                          a->acl->groups);
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(j);
    char *path = acl_path(a);
    int rc = write_file_atomic(path, text, strlen(text), 0600);
    if (rc < 0)
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    free(path);
    free(text);
    return rc;
}

static bool has(json_t *rights, unsigned right)
{
    size_t i;
    json_t *r;
    unsigned bit = 0;
    json_array_foreach(rights, i, r) if (right_parse(json_string_value(r), &bit) == 0 && bit == right) return true;
    return false;
}

bool acl_allows(struct agent *a, const char *principal, unsigned right)
{
    if (has(json_object_get(a->acl->grants, principal), right))
        return true;
    /* Through a group the principal belongs to. */
    const char *group;
    json_t *members;
    json_object_foreach(a->acl->groups, group, members) {
        size_t i;
        json_t *m;
        json_array_foreach(members, i, m) {
            if (json_is_string(m) && !strcmp(json_string_value(m), principal)) {
                char *g = xasprintf("group:%s", group);
                bool ok = has(json_object_get(a->acl->grants, g), right);
                free(g);
                if (ok)
                    return true;
            }
        }
    }
    return false;
}

bool acl_allows_who(struct agent *a, const struct principal *who, unsigned right)
{
    if (who->kind == PRINCIPAL_LOCAL_ROOT)
        return true;
    char p[96];
    return acl_allows(a, principal_describe(who, p, sizeof p), right);
}

json_t *acl_denial(struct agent *a, const char *principal, unsigned right)
{
    char hint[256];
    snprintf(hint, sizeof hint, "an admin of host %s can grant it: vmove -H %s acl grant %s %s", a->name, a->name,
             principal, right_name(right));
    json_t *err = proto_error(ERR_DENIED, hint, "permission denied: %s lacks %s on host %s", principal,
                              right_name(right), a->name);
    /* The exact command and its host, for a pre-flight check's item. */
    char fix[256];
    snprintf(fix, sizeof fix, "vmove acl grant %s %s", principal, right_name(right));
    json_object_set_new(err, "fix", json_pack("{s:s, s:s}", "command", fix, "host", a->name));
    return err;
}

/* ---- changes (the API layer validates the parameters first) ----------- */

/* Apply a change to the ACL and persist it; on a write error the ACL is
 * restored, so memory and disk never disagree. */
static json_t *commit_or_restore(struct agent *a, json_t *grants_before, json_t *groups_before)
{
    char err[512];
    if (acl_save(a, err, sizeof err) < 0) {
        json_decref(a->acl->grants);
        json_decref(a->acl->groups);
        a->acl->grants = grants_before;
        a->acl->groups = groups_before;
        return proto_error(ERR_INTERNAL, NULL, "%s", err);
    }
    json_decref(grants_before);
    json_decref(groups_before);
    return NULL;
}

json_t *acl_change(struct agent *a, const char *principal, json_t *rights, bool grant)
{
    json_t *gb = json_deep_copy(a->acl->grants), *grb = json_deep_copy(a->acl->groups);
    json_t *cur = json_object_get(a->acl->grants, principal);
    json_t *next = json_array();
    size_t i;
    json_t *v;
    unsigned bit = 0;
    json_array_foreach(cur, i, v) {
        right_parse(json_string_value(v), &bit);
        if (grant || !has(rights, bit))
            json_array_append(next, v);
    }
    json_array_foreach(rights, i, v) {
        right_parse(json_string_value(v), &bit);
        if (grant && !has(next, bit))
            json_array_append(next, v);
    }
    if (json_array_size(next))
        json_object_set_new(a->acl->grants, principal, next);
    else {
        json_object_del(a->acl->grants, principal);
        json_decref(next);
    }
    return commit_or_restore(a, gb, grb);
}

json_t *acl_group_change(struct agent *a, const char *group, const char *member, bool add)
{
    json_t *gb = json_deep_copy(a->acl->grants), *grb = json_deep_copy(a->acl->groups);
    json_t *members = json_object_get(a->acl->groups, group);
    if (!members) {
        members = json_array();
        json_object_set_new(a->acl->groups, group, members);
    }
    size_t i;
    json_t *v;
    /* acl_load rejects non-string members; checked here too, as everywhere. */
    json_array_foreach(members, i, v) if (json_is_string(v) && !strcmp(json_string_value(v), member)) break;
    if (add && i == json_array_size(members))
        json_array_append_new(members, json_string(member));
    else if (!add && i < json_array_size(members))
        json_array_remove(members, i);
    if (!json_array_size(members))
        json_object_del(a->acl->groups, group);
    return commit_or_restore(a, gb, grb);
}

json_t *acl_to_json(const struct agent *a)
{
    return json_pack("{s:O, s:O}", "grants", a->acl->grants, "groups", a->acl->groups);
}

const char *principal_describe(const struct principal *p, char *buf, size_t len)
{
    static const char *kinds[] = {"user", "user", "host"};
    snprintf(buf, len, "%s:%s", kinds[p->kind], p->name);
    return buf;
}

bool acl_in_group(struct agent *a, const char *group, const char *principal)
{
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(a->acl->groups, group), i, m) if (json_is_string(m) &&
                                                                         !strcmp(json_string_value(m), principal))
        return true;
    return false;
}
