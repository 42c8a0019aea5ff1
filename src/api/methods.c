#include "api/methods.h"

#include <string.h>

const struct api_method *const api_method_tables[] = {
    api_host_methods,    api_peer_methods,    api_vm_methods,      api_job_methods, api_migrate_methods,
    api_migrate_peer_methods, api_drain_methods, api_storage_methods, api_exchange_methods, api_acl_methods,
    api_audit_methods, api_cluster_methods, api_checkpoint_methods, api_vm_config_methods,
    NULL,
};

const struct api_method *api_method_find(const char *name)
{
    for (const struct api_method *const *t = api_method_tables; *t; t++)
        for (const struct api_method *m = *t; m->name; m++)
            if (!strcmp(m->name, name))
                return m;
    return NULL;
}
