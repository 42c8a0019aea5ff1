#include "core/agent.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/spawn.h"
#include "common/util.h"

int agent_save_settings(struct agent *a, char *err, size_t errlen)
{
    char *path = xasprintf("%s/host.json", a->state_dir);
    int rc = host_settings_save(path, &a->settings, err, errlen);
    free(path);
    return rc;
}

void agent_update_accel(struct agent *a)
{
    accel_choose(a->settings.accel, "/sys/module", "/dev/kvm", &a->accel);
    log_info("accelerator: %s", a->accel.reason);
}

void agent_shutdown(struct agent *a)
{
    if (a->stopping)
        return;
    a->stopping = true;
    log_info("shutting down; running VMs keep running");
    event_base_loopexit(a->base, NULL);
}

/* "key=N,key=N": lower limits for the end-to-end tests, which cannot hold
 * 257 jobs or wait 30 s for a slow client.  Not for production use, which
 * is why it is an environment variable and not an option. */
int agent_quotas_init(struct agent_quotas *q, const char *spec, char *err, size_t errlen)
{
    *q = (struct agent_quotas){AGENT_MAX_JOBS, AGENT_MAX_JOBS_PER_PRINCIPAL, AGENT_MAX_STREAMS,
                               AGENT_MAX_STREAMS_PER_PRINCIPAL, AGENT_REQUEST_TIMEOUT_S};
    static const struct { const char *key; size_t off; } keys[] = {
        {"max_jobs", offsetof(struct agent_quotas, max_jobs)},
        {"max_jobs_per_principal", offsetof(struct agent_quotas, max_jobs_per_principal)},
        {"max_streams", offsetof(struct agent_quotas, max_streams)},
        {"max_streams_per_principal", offsetof(struct agent_quotas, max_streams_per_principal)},
        {"request_timeout_s", offsetof(struct agent_quotas, request_timeout_s)},
    };
    char *copy = xstrdup(spec ? spec : ""), *save = NULL;
    int rc = 0;
    for (char *item = strtok_r(copy, ",", &save); item && !rc; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '='), *end = NULL;
        long v = eq ? strtol(eq + 1, &end, 10) : -1;
        size_t i = 0;
        if (eq)
            *eq = 0;
        while (i < ARRAY_LEN(keys) && strcmp(keys[i].key, item))
            i++;
        if (i == ARRAY_LEN(keys) || !end || *end || end == eq + 1 || v < 1 || v > 100000) {
            snprintf(err, errlen, "VMOVE_TEST_LIMITS: bad item \"%s\" (expected KEY=N, N 1..100000, KEY one of "
                     "max_jobs, max_jobs_per_principal, max_streams, max_streams_per_principal, request_timeout_s)",
                     item);
            rc = -1;
        } else
            *(int *)((char *)q + keys[i].off) = (int)v;
    }
    free(copy);
    return rc;
}
