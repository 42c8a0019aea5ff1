#include "core/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/acl.h"

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
}

void audit_record(struct agent *a, const char *who, const char *action, const char *vm, const char *from,
                  bool allowed, const char *reason)
{
    if (a->audit_fd < 0)
        return;
    json_t *j = json_pack("{s:I, s:s, s:s, s:s, s:s*, s:s*, s:s, s:s*}", "ts_ms", (json_int_t)wall_ms(), "host",
                          a->name, "who", who, "action", action, "vm", vm, "from", from, "verdict",
                          allowed ? "allowed" : "denied", "reason", reason);
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
        while ((long long)json_array_size(out) > limit)
            json_array_remove(out, 0);
    }
    free(text);
    free(path);
    return out;
}
