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
