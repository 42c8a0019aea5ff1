#include "common/proto.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

char *proto_encode(const json_t *msg, size_t *len)
{
    char *body = json_dumps(msg, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (!body)
        return NULL;
    size_t n = strlen(body);
    char *line = xmalloc(n + 2);
    memcpy(line, body, n);
    line[n] = '\n';
    line[n + 1] = 0;
    free(body);
    *len = n + 1;
    return line;
}

json_t *proto_error(const char *code, const char *hint, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    json_t *e = json_pack("{s:s, s:s}", "code", code, "message", msg);
    if (hint && *hint)
        json_object_set_new(e, "hint", json_string(hint));
    return e;
}
