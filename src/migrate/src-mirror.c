/* The source side of a migration: shared-nothing: the disks are mirrored
 * into the destination's NBD exports by the one mirror machine of
 * block/mirror.h; this file words its reports for the migration. */
#include "migrate/src.h"

#include <string.h>

#include "block/image.h"
#include "block/mirror.h"
#include "block/mirror_progress.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "vm/vm.h"

#define MIRROR_QMP_TIMEOUT_MS 10000

char *migrate_src_mirror_node(struct migration *m, const char *disk, const char *what)
{
    return xasprintf("%s-%s-%lld", what, disk, (long long)m->job->id);
}

static qmp_t *mirror_mon(void *arg) { return migrate_src_mon(arg); }

uint64_t migrate_src_disk_size(struct migration *m, size_t i)
{
    /* Learnt before prepare by a qemu-img child (src-queue.c), never here. */
    json_t *v = json_object_get(m->storage_sizes, m->vm->cfg.disks[i].id);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

/* The disk copy: the same keys as the storage move's (block/mirror_progress.h). */
static void mirror_on_progress(void *arg)
{
    struct migration *m = arg;
    json_t *p = block_mirror_progress(m->mirror, false);
    json_object_set_new(p, "phase", json_string("mirror"));
    json_object_set_new(p, "elapsed_ms", json_integer((json_int_t)(now_ms() - m->t_start)));
    job_set_progress(m->job, p);
}

json_t *migrate_src_mirror_summary(struct migration *m)
{
    return m->mirror ? block_mirror_progress(m->mirror, true) : NULL;
}

/* Disks in sync (and kept so by write-blocking): now the memory. */
static void mirror_on_ready(void *arg)
{
    struct migration *m = arg;
    if (m->phase != PH_MIRROR)
        return;
    log_info("%s: disks in sync with %s; migrating memory", m->name, migrate_src_dest(m));
    m->last_transferred = 0;    /* the stall watch now counts RAM bytes */
    m->last_progress_ms = now_ms();
    migrate_src_set_capabilities(m);
}

/* Switch-over: the mirrors ended, the destination has complete copies. */
static void mirror_on_done(void *arg)
{
    struct migration *m = arg;
    if (m->phase == PH_SWITCHOVER)
        migrate_src_send_finish(m);
}

/* Setting up failed: the first failure is the one reported. */
static void mirror_setup_failed(struct migration *m, json_t *error)
{
    if (m->failure) {
        json_decref(error);
        return;
    }
    m->failure = error;
    migrate_src_rollback(m);
}

static void mirror_on_failed(void *arg, const struct block_mirror_failure *f)
{
    struct migration *m = arg;
    const char *dest = migrate_src_dest(m);
    switch (f->what) {
    case BLOCK_MIRROR_FAIL_TARGET:
        mirror_setup_failed(m, proto_error(ERR_UNAVAILABLE, "check the migration network",
                                    "cannot reach the NBD export on %s: %s", dest, f->desc));
        break;
    case BLOCK_MIRROR_FAIL_STALLED:
        migrate_src_fail(m, proto_error(ERR_UNAVAILABLE, "check the migration network link between the hosts",
                                        "the disk copy to %s made no progress for %d s: the link seems down", dest,
                                        STALL_MS / 1000));
        break;
    case BLOCK_MIRROR_FAIL_VANISHED:
    case BLOCK_MIRROR_FAIL_STOPPED:
        migrate_src_fail(m, proto_error(ERR_QEMU, NULL, "a disk mirror to %s stopped before it was in sync", dest));
        break;
    default:   /* query-block, the source node, blockdev-mirror, no monitor */
        mirror_setup_failed(m, proto_error(ERR_QEMU, NULL, "QEMU could not start mirroring a disk to %s: %s", dest,
                                    f->desc ? f->desc : "its disk nodes are not as expected"));
        break;
    }
}

static const struct block_mirror_ops mirror_ops = {
    .mon = mirror_mon, .on_progress = mirror_on_progress, .on_ready = mirror_on_ready, .on_done = mirror_on_done,
    .on_failed = mirror_on_failed,
};

/* One mirror job per disk, write-blocking: once in sync, every guest write
 * completes on both sides, so the copy always converges. */
void migrate_src_start_mirrors(struct migration *m)
{
    migrate_src_set_phase(m, PH_MIRROR);
    m->mirrors_started = true;
    const struct vm_config *c = &m->vm->cfg;
    char *tls = m->tls ? xasprintf("vmove-tls-%lld", (long long)m->job->id) : NULL;
    struct block_mirror_config cfg = {.name = m->name, .kind = BLOCK_MIRROR_NBD, .timeout_ms = MIRROR_QMP_TIMEOUT_MS,
                                      .stall_ms = STALL_MS, .host = m->dst_ip, .port = m->nbd_port,
                                      .tls_creds = tls, .tls_hostname = m->tls ? m->dst_name : NULL};
    m->mirror = block_mirror_new(m->agent->base, &m->owner, &cfg, &mirror_ops, m, c->n_disks);
    free(tls);
    for (size_t i = 0; i < c->n_disks; i++) {
        char *node = migrate_src_mirror_node(m, c->disks[i].id, "nbd");
        char *job = migrate_src_mirror_node(m, c->disks[i].id, "mirror");
        /* the export is named after the destination's node: the disk id */
        block_mirror_set_disk(m->mirror, i, c->disks[i].id, NULL, NULL, c->disks[i].id, migrate_src_disk_size(m, i),
                              node, NULL, job);
        free(node);
        free(job);
    }
    block_mirror_start(m->mirror);
}

/* Switch-over (force false): the guest is stopped, the ready mirrors are
 * cancelled, which leaves the destination a complete copy, then the
 * migration finishes.  On rollback (force true) the jobs are forced down,
 * fire and forget, and the destination's copies are thrown away. */
void migrate_src_end_mirrors(struct migration *m, bool force)
{
    if (!m->mirror)
        return;
    if (force)
        block_mirror_drop(m->mirror);
    else
        block_mirror_finish(m->mirror);
}
