/* Per-host settings, persisted in STATE/host.json.  Unknown fields are an
 * error: a typo must not silently leave a setting at its default. */
#ifndef VMOVE_SETTINGS_H
#define VMOVE_SETTINGS_H
#include <jansson.h>
#include <stddef.h>

#include "qemu/accel.h"

#define HOST_SETTINGS_VERSION 1

struct host_settings {
    enum accel_setting accel;
};

void host_settings_defaults(struct host_settings *s);
int host_settings_from_json(json_t *j, struct host_settings *s, char *err, size_t errlen);
json_t *host_settings_to_json(const struct host_settings *s);
/* Missing file = defaults. */
int host_settings_load(const char *path, struct host_settings *s, char *err, size_t errlen);
int host_settings_save(const char *path, const struct host_settings *s, char *err, size_t errlen);
#endif
