/* libFuzzer target: host.json (conf/settings.h).  Parsed settings must stay
 * within their arrays' bounds, serialise and parse back to the same JSON. */
#include <stdlib.h>

#include "conf/settings.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    json_t *j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    struct host_settings s, s2;
    char err[512] = "", buf[512];
    host_settings_defaults(&s);
    if (host_settings_from_json(j, &s, err, sizeof err) < 0) {
        if (!err[0])
            abort();
        json_decref(j);
        return 0;
    }
    if (s.n_migration_networks < 0 || s.n_migration_networks > MAX_MIGRATION_NETWORKS || s.n_peers < 0 ||
        s.n_peers > MAX_PEERS || s.n_delegation_from < 0 || s.n_delegation_from > MAX_PEERS)
        abort();
    settings_migration_networks_str(&s, buf, sizeof buf);
    settings_migration_allowed(&s, 0x0a000001);
    settings_find_peer(&s, "h2");
    json_t *out = host_settings_to_json(&s);
    host_settings_defaults(&s2);
    if (host_settings_from_json(out, &s2, err, sizeof err) < 0)
        abort();                        /* what we save must load */
    json_t *out2 = host_settings_to_json(&s2);
    if (!json_equal(out, out2))
        abort();
    json_decref(out2);
    json_decref(out);
    json_decref(j);
    return 0;
}
