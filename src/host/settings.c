#include "host/settings.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

void host_settings_defaults(struct host_settings *s)
{
    memset(s, 0, sizeof *s);
    s->accel = ACCEL_AUTO;
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
        if (!strcmp(key, "version")) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 ||
                json_integer_value(v) > HOST_SETTINGS_VERSION) {
                snprintf(err, errlen, "version: must be an integer from 1 to %d", HOST_SETTINGS_VERSION);
                return -1;
            }
        } else if (!strcmp(key, "accel")) {
            if (!json_is_string(v) || accel_setting_parse(json_string_value(v), &s->accel) < 0) {
                snprintf(err, errlen, "accel: expected \"auto\", \"kvm\" or \"tcg\"");
                return -1;
            }
        } else {
            snprintf(err, errlen, "unknown field \"%s\"", key);
            return -1;
        }
    }
    return 0;
}

json_t *host_settings_to_json(const struct host_settings *s)
{
    return json_pack("{s:i, s:s}", "version", HOST_SETTINGS_VERSION, "accel",
                     accel_setting_name(s->accel));
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
    size_t n = strlen(text);
    char *line = xasprintf("%s\n", text);
    free(text);
    int rc = write_file_atomic(path, line, n + 1, 0644);
    free(line);
    if (rc < 0)
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    return rc;
}
