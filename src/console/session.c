#include "console/session.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/token.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/audit.h"
#include "core/journal.h"

static int random_hex(char out[65])
{
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return -1;
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

static int count(struct session *list)
{
    int n = 0;
    for (; list; list = list->next)
        n++;
    return n;
}

void session_expire(struct session **list)
{
    uint64_t now = wall_ms();
    for (struct session **p = list; *p;) {
        if ((*p)->expires_ms <= now) {
            struct session *s = *p;
            *p = s->next;
            free(s);
        } else
            p = &(*p)->next;
    }
}

struct session *session_from_cookie(struct session **list, const char *hdr)
{
    if (!hdr)
        return NULL;
    session_expire(list);
    /* Cookie: a=b; __Host-vmove=ID; c=d */
    size_t klen = strlen(SESSION_COOKIE);
    for (const char *p = hdr; (p = strstr(p, SESSION_COOKIE "=")); p += klen) {
        if (p != hdr && p[-1] != ' ' && p[-1] != ';')
            continue;
        const char *v = p + klen + 1;
        size_t n = strcspn(v, "; ");
        if (n != 64)
            continue;
        for (struct session *s = *list; s; s = s->next)
            if (CRYPTO_memcmp(s->id, v, 64) == 0)
                return s;
    }
    return NULL;
}

bool session_csrf_ok(const struct session *s, const char *h)
{
    return s && h && strlen(h) == 64 && CRYPTO_memcmp(s->csrf, h, 64) == 0;
}

/* The token's payload if it is a console login for this host, else NULL. */
static json_t *check_token(struct agent *a, const char *token_url, char *why, size_t whylen)
{
    json_t *token = token_from_url(token_url);
    if (!token) {
        snprintf(why, whylen, "the login link is damaged (not a signed login)");
        return NULL;
    }
    char *ca = xasprintf("%s/ca.crt", a->tls_dir);
    /* Presented by the browser to this host: the token names this host. */
    json_t *payload = token_verify(token, ca, a->name, why, whylen);
    free(ca);
    json_decref(token);
    if (!payload)
        return NULL;
    const char *op = json_string_value(json_object_get(payload, "op"));
    const char *src = json_string_value(json_object_get(payload, "src"));
    const char *user = json_string_value(json_object_get(payload, "user"));
    if (!op || strcmp(op, "console.login") || !src || strcmp(src, a->name))
        snprintf(why, whylen, "the token is not a console login for host %s", a->name);
    else if (!user || !strcmp(user, "root") || strlen(user) >= sizeof ((struct principal *)0)->name)
        snprintf(why, whylen, "the token's user is not one the console accepts");
    else if (journal_token_use(a->journal, json_string_value(json_object_get(payload, "nonce")),
                               json_integer_value(json_object_get(payload, "exp"))) != 0)
        snprintf(why, whylen, "this login link was already used: run `vmove ui login` again");
    else
        return payload;
    json_decref(payload);
    return NULL;
}

struct session *session_login(struct agent *a, struct session **list, const char *token_url, const char *peer,
                              char *why, size_t whylen)
{
    session_expire(list);
    json_t *payload = check_token(a, token_url, why, whylen);
    const char *user = json_string_value(json_object_get(payload, "user"));
    char who[96];
    snprintf(who, sizeof who, "user:%s", user ? user : "?");
    if (payload && count(*list) >= SESSION_MAX)
        snprintf(why, whylen, "too many console sessions open on host %s (%d)", a->name, SESSION_MAX);
    struct session *s = NULL;
    if (payload && count(*list) < SESSION_MAX) {
        s = xcalloc(1, sizeof *s);
        if (random_hex(s->id) < 0 || random_hex(s->csrf) < 0) {
            free(s);
            s = NULL;
            snprintf(why, whylen, "no random numbers for a session id");
        } else {
            s->who.kind = PRINCIPAL_USER;
            snprintf(s->who.name, sizeof s->who.name, "%s", user);
            s->expires_ms = wall_ms() + SESSION_LIFETIME_S * 1000ull;
            s->next = *list;
            *list = s;
        }
    }
    audit_record(a, payload ? who : "?", "console.login", NULL, peer, s != NULL, s ? NULL : why);
    json_decref(payload);
    return s;
}

void session_end(struct session **list, struct session *s)
{
    for (struct session **p = list; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            free(s);
            return;
        }
}

void session_free_all(struct session **list)
{
    while (*list) {
        struct session *s = *list;
        *list = s->next;
        free(s);
    }
}
