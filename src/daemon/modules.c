#include "daemon/modules.h"

#include <stddef.h>

#include "cluster/cluster.h"
#include "api/delegate.h"
#include "api/move_token.h"
#include "checkpoint/checkpoint.h"
#include "cluster/drain.h"
#include "common/log.h"
#include "common/spawn.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "core/limits.h"
#include "exchange/export.h"
#include "migrate/incoming.h"
#include "migrate/link_probe.h"
#include "migrate/migrate.h"
#include "server/server.h"
#include "storage/storage_move.h"
#include "vm/vm.h"

struct daemon_module {
    const char *name;
    void (*recover)(struct agent *a);    /* NULL: nothing to recover */
    void (*shutdown)(struct agent *a);   /* NULL: nothing to free */
};

static void probes_stop(struct agent *a) { (void)a; probe_sinks_stop_all(); }
static void helpers_stop_all(struct agent *a) { (void)a; spawn_async_stop_all(); }
static void server_shutdown(struct agent *a)
{
    server_stop(a->server);
    a->server = NULL;
}

static const struct daemon_module modules[] = {
    /* Everything below works on VMs: they are re-attached first and freed last. */
    {"vm inventory", vm_inventory_load, vm_inventory_free},
    {"limits", NULL, limits_free_all},
    /* Freed after every module that owns jobs, so their watchers get an answer. */
    {"jobs", NULL, jobs_free_all},
    /* Helper processes (qemu-img, sha256sum) still running after their
     * modules stopped theirs: killed, and their owners told, so that they
     * free what they hold (an import's request, a vm create's probe). */
    {"helper processes", NULL, helpers_stop_all},
    {"incoming reservations", NULL, incoming_free_reservations},
    {"move tokens bound to incoming jobs", NULL, move_token_free_all},
    {"incoming migrations", incoming_recover, incoming_free_all},
    {"outgoing migrations", migrate_recover, migrate_free_all},
    {"storage moves", storage_recover, storage_free_all},
    {"exports", NULL, export_free_all},
    {"checkpoints", checkpoint_recover, checkpoint_free_all},
    /* Queued moves restart once the running ones are settled. */
    {"queued migrations", migrate_recover_queued, NULL},
    {"link probes", NULL, probes_stop},
    {"drains", NULL, drain_free_all},
    /* Moves this host relays for a user (--from): answered, then freed. */
    {"delegated relays", NULL, delegate_free_all},
    /* Last: jobs that no module adopted were interrupted for good. */
    {"interrupted jobs", jobs_recover, NULL},
    /* The cluster after the VMs are known: it re-arms their fences with the
     * lease of the last run (shut down before the jobs it follows). */
    {"cluster", cluster_recover, cluster_free},
    /* Shut down first: no new requests while the modules go. */
    {"server", NULL, server_shutdown},
};

void modules_recover(struct agent *a)
{
    for (size_t i = 0; i < ARRAY_LEN(modules); i++)
        if (modules[i].recover) {
            log_debug("recover: %s", modules[i].name);
            modules[i].recover(a);
        }
}

void modules_shutdown(struct agent *a)
{
    for (size_t i = ARRAY_LEN(modules); i-- > 0;)
        if (modules[i].shutdown)
            modules[i].shutdown(a);
}
