#include "core/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/ratelimit.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/acl.h"

/* Denials are what a principal with no rights can cause at will: each one
 * is recorded up to a rate, per principal and for all together; what is
 * dropped is counted in the next record.  Allowed actions are never
 * dropped. */
#define DENIAL_SLOTS 64
#define DENIAL_BURST 20            /* per principal and window */
#define DENIAL_BURST_ALL 200       /* all principals together */
#define DENIAL_WINDOW_MS 10000

struct denial_slot {
    char who[96];
    uint64_t last_ms;
    struct ratelimit limit;
};

struct audit_denials {
    struct denial_slot slots[DENIAL_SLOTS];
    struct ratelimit all;
};

static struct denial_slot *slot_for(struct audit_denials *d, const char *who)
{
    struct denial_slot *lru = &d->slots[0];
    for (int i = 0; i < DENIAL_SLOTS; i++) {
        if (!strcmp(d->slots[i].who, who))
            return &d->slots[i];
        if (d->slots[i].last_ms < lru->last_ms)
            lru = &d->slots[i];
    }
    memset(lru, 0, sizeof *lru);
    snprintf(lru->who, sizeof lru->who, "%s", who);
    return lru;
}

/* May this denial be written?  *dropped: how many were not, before it. */
static bool denial_allowed(struct agent *a, const char *who, int *dropped)
{
    if (!a->audit_denials)
        a->audit_denials = xcalloc(1, sizeof *a->audit_denials);
    uint64_t now = now_ms();
    struct denial_slot *s = slot_for(a->audit_denials, who);
    s->last_ms = now;
    int mine = 0, all = 0;
    if (!ratelimit_allow(&s->limit, now, DENIAL_BURST, DENIAL_WINDOW_MS, &mine))
        return false;
    if (!ratelimit_allow(&a->audit_denials->all, now, DENIAL_BURST_ALL, DENIAL_WINDOW_MS, &all))
        return false;
    *dropped = mine + all;
    return true;
}

/* A full log moves to audit.log.1 (replacing the previous one). */
static void rotate_if_full(struct agent *a)
{
    struct stat st;
    if (fstat(a->audit_fd, &st) < 0 || st.st_size < AUDIT_MAX_BYTES)
        return;
    char *path = xasprintf("%s/audit.log", a->state_dir), *old = xasprintf("%s/audit.log.1", a->state_dir);
    if (rename(path, old) == 0) {
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0) {
            close(a->audit_fd);
            a->audit_fd = fd;
            log_info("audit log rotated to %s", old);
        }
    }
    free(path);
    free(old);
}

int audit_open(struct agent *a, char *err, unsigned long errlen)
{
    char *path = xasprintf("%s/audit.log", a->state_dir);
    a->audit_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (a->audit_fd < 0)
        snprintf(err, errlen, "cannot open the audit log %s: %s", path, strerror(errno));
    free(path);
    return a->audit_fd < 0 ? -1 : 0;
}

void audit_close(struct agent *a)
{
    if (a->audit_fd > 0)
        close(a->audit_fd);
    a->audit_fd = -1;
    free(a->audit_denials);
    a->audit_denials = NULL;
}

void audit_record(struct agent *a, const char *who, const char *action, const char *vm, const char *from,
                  bool allowed, const char *reason)
{
    if (a->audit_fd < 0)
        return;
    int dropped = 0;
    if (!allowed && !denial_allowed(a, who, &dropped))
        return;
    json_t *j = json_pack("{s:I, s:s, s:s, s:s, s:s*, s:s*, s:s, s:s*}", "ts_ms", (json_int_t)wall_ms(), "host",
                          a->name, "who", who, "action", action, "vm", vm, "from", from, "verdict",
                          allowed ? "allowed" : "denied", "reason", reason);
    if (dropped)
        json_object_set_new(j, "denials_not_recorded", json_integer(dropped));
    rotate_if_full(a);
    size_t len;
    char *line = proto_encode(j, &len);
    json_decref(j);
    /* One write per record: O_APPEND keeps concurrent records whole. */
    if (line && write(a->audit_fd, line, len) != (ssize_t)len)
        log_error("audit log write failed: %s", strerror(errno));
    free(line);
}

json_t *audit_read(const struct agent *a, long long limit)
{
    char *path = xasprintf("%s/audit.log", a->state_dir), *text = NULL;
    json_t *out = json_array();
    if (read_file(path, &text, NULL) == 0) {
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
            json_t *j = json_loads(line, 0, NULL);
            if (j)
                json_array_append_new(out, j);
        }
        /* A negative limit kept the old loop going forever (the size never
         * drops below 0): it keeps nothing. */
        size_t keep = limit < 0 ? 0 : (size_t)limit;
        while (json_array_size(out) > keep)
            json_array_remove(out, 0);
    }
    free(text);
    free(path);
    return out;
}
