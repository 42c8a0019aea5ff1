/* Every method table of the API, one per family (src/api/api-<family>.c),
 * and the one list of them that dispatch looks methods up in.  Adding a
 * method: a handler and a row in its family's table; a new family: its table
 * here and in methods.c. */
#ifndef VMOVE_API_METHODS_H
#define VMOVE_API_METHODS_H
#include "api/api.h"

extern const struct api_method api_host_methods[];
extern const struct api_method api_peer_methods[];
extern const struct api_method api_vm_methods[];
extern const struct api_method api_job_methods[];
extern const struct api_method api_migrate_methods[];
extern const struct api_method api_migrate_peer_methods[];
extern const struct api_method api_drain_methods[];
extern const struct api_method api_cluster_methods[];
extern const struct api_method api_storage_methods[];
extern const struct api_method api_exchange_methods[];
extern const struct api_method api_acl_methods[];
extern const struct api_method api_audit_methods[];
extern const struct api_method api_checkpoint_methods[];
extern const struct api_method api_vm_config_methods[];

/* NULL-terminated. */
extern const struct api_method *const api_method_tables[];

/* The method's row, or NULL. */
const struct api_method *api_method_find(const char *name);
#endif
