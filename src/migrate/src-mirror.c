/* The source side of a migration: shared-nothing: the disk mirrors. */
#include "migrate/src.h"

#include <string.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/jobs.h"
#include "vm/vm.h"

/* ---- shared-nothing: mirror the disks into the destination's NBD exports */

char *migrate_src_mirror_node(struct migration *m, const char *disk, const char *what)
{
    return xasprintf("%s-%s-%lld", what, disk, (long long)m->job->id);
}

static void on_mirror_started(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (err && !m->failure) {
        m->failure = proto_error(ERR_QEMU, NULL, "QEMU could not start mirroring a disk to %s: %s", migrate_src_dest(m),
                                 err->desc);
        migrate_src_rollback(m);
        return;
    }
    if (--m->mirror_setup_pending == 0 && !m->failure)
        migrate_src_arm_timer(m, POLL_MS);
}

static void on_nbd_node(void *arg, json_t *ret, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (err && !m->failure) {
        m->failure = proto_error(ERR_UNAVAILABLE, "check the migration network",
                                 "cannot reach the NBD export on %s: %s", migrate_src_dest(m), err->desc);
        migrate_src_rollback(m);
    }
}

/* One mirror job per disk, write-blocking: once in sync, every guest write
 * completes on both sides, so the copy always converges. */
void migrate_src_start_mirrors(struct migration *m)
{
    migrate_src_set_phase(m, PH_MIRROR);
    m->mirrors_started = true;
    const struct vm_config *c = &m->vm->cfg;
    m->mirror_setup_pending = (int)c->n_disks;
    char port[16];
    snprintf(port, sizeof port, "%d", m->nbd_port);
    for (size_t i = 0; i < c->n_disks; i++) {
        char *node = migrate_src_mirror_node(m, c->disks[i].id, "nbd"), *job = migrate_src_mirror_node(m, c->disks[i].id, "mirror");
        json_t *nbd = json_pack("{s:s, s:s, s:{s:s, s:s, s:s}, s:s}", "driver", "nbd", "node-name", node, "server",
                                "type", "inet", "host", m->dst_ip, "port", port, "export", c->disks[i].id);
        if (m->tls) {
            char *id = xasprintf("vmove-tls-%lld", (long long)m->job->id);
            json_object_set_new(nbd, "tls-creds", json_string(id));
            json_object_set_new(nbd, "tls-hostname", json_string(m->dst_name));
            free(id);
        }
        migrate_src_mq(m, "blockdev-add", nbd, 10000, on_nbd_node);
        migrate_src_mq(m, "blockdev-mirror", json_pack("{s:s, s:s, s:s, s:s, s:s}", "job-id", job, "device", c->disks[i].id,
                                                       "target", node, "sync", "full", "copy-mode", "write-blocking"),
           10000, on_mirror_started);
        free(node);
        free(job);
    }
    if (!c->n_disks)
        migrate_src_arm_timer(m, 0);
}

static json_t *our_mirrors(struct migration *m, json_t *jobs, int *ready)
{
    json_t *mine = json_array();
    char prefix[32];
    snprintf(prefix, sizeof prefix, "-%lld", (long long)m->job->id);
    size_t i;
    json_t *j;
    *ready = 0;
    json_array_foreach(jobs, i, j) {
        const char *dev = json_string_value(json_object_get(j, "device"));
        if (!dev || strncmp(dev, "mirror-", 7) || !strstr(dev, prefix))
            continue;
        *ready += json_is_true(json_object_get(j, "ready"));
        json_array_append_new(mine, json_pack("{s:s, s:O, s:O, s:O}", "job", dev, "offset",
                                              json_object_get(j, "offset"), "len", json_object_get(j, "len"),
                                              "ready", json_object_get(j, "ready")));
    }
    return mine;
}

/* Copying disks that stop moving (or a QEMU that stops answering) means the
 * link is gone: the mirror would wait for TCP to give up, for many minutes,
 * with the guest's writes blocked behind it. */
static bool mirror_stalled(struct migration *m, const qmp_error_t *err, uint64_t copied)
{
    if (err && err->kind != QMP_ERR_TIMEOUT)
        return false;
    if (!err && (copied != m->last_transferred || !m->last_progress_ms)) {
        m->last_transferred = copied;
        m->last_progress_ms = now_ms();
        return false;
    }
    return m->last_progress_ms && now_ms() - m->last_progress_ms > STALL_MS;
}

void migrate_src_on_mirror_poll(void *arg, json_t *jobs, const qmp_error_t *err)
{
    struct migration *m = arg;
    int ready;
    json_t *mine = err ? json_array() : our_mirrors(m, jobs, &ready);
    size_t n = m->vm ? m->vm->cfg.n_disks : 0;
    if (m->ending_mirrors) {
        if (json_array_size(mine) == 0) {
            m->ending_mirrors = false;
            json_decref(mine);
            for (size_t i = 0; i < n; i++) {
                char *node = migrate_src_mirror_node(m, m->vm->cfg.disks[i].id, "nbd");
                migrate_src_mq(m, "blockdev-del", json_pack("{s:s}", "node-name", node), 10000, NULL);
                free(node);
            }
            if (m->phase == PH_SWITCHOVER)
                migrate_src_send_finish(m);
            return;
        }
        json_decref(mine);
        migrate_src_arm_timer(m, 20);
        return;
    }
    if (m->phase != PH_MIRROR) {
        json_decref(mine);
        return;
    }
    if (!err && json_array_size(mine) < n) {
        json_decref(mine);
        migrate_src_fail(m, proto_error(ERR_QEMU, NULL, "a disk mirror to %s stopped before it was in sync", migrate_src_dest(m)));
        return;
    }
    double done = 0, total = 0;
    size_t i;
    json_t *j;
    json_array_foreach(mine, i, j) {
        done += (double)json_integer_value(json_object_get(j, "offset"));
        total += (double)json_integer_value(json_object_get(j, "len"));
    }
    if (mirror_stalled(m, err, (uint64_t)done)) {
        json_decref(mine);
        migrate_src_fail(m, proto_error(ERR_UNAVAILABLE, "check the migration network link between the hosts",
                                        "the disk copy to %s made no progress for %d s: the link seems down", migrate_src_dest(m),
                                        STALL_MS / 1000));
        return;
    }
    job_set_progress(m->job, json_pack("{s:s, s:o, s:f, s:I}", "phase", "mirror", "disks", mine, "percent",
                                       total > 0 ? 100.0 * done / total : 0.0, "elapsed_ms",
                                       (json_int_t)(now_ms() - m->t_start)));
    if (!err && (size_t)ready == n) {
        /* Disks in sync (and kept so): now the memory. */
        log_info("%s: disks in sync with %s; migrating memory", m->name, migrate_src_dest(m));
        m->last_transferred = 0;    /* the stall watch now counts RAM bytes */
        m->last_progress_ms = now_ms();
        migrate_src_mq(m, "migrate-set-capabilities", tuning_qemu_capabilities(&m->tuning), 10000, migrate_src_on_src_caps);
        return;
    }
    migrate_src_arm_timer(m, POLL_MS);
}

/* Switch-over: the guest is stopped, so cancelling a ready mirror leaves the
 * destination a complete copy (QEMU reports it COMPLETED).  On rollback the
 * jobs are forced down and the destination's copies are thrown away. */
void migrate_src_end_mirrors(struct migration *m, bool force)
{
    for (size_t i = 0; m->vm && i < m->vm->cfg.n_disks; i++) {
        char *job = migrate_src_mirror_node(m, m->vm->cfg.disks[i].id, "mirror");
        migrate_src_mq(m, "block-job-cancel", json_pack("{s:s, s:b}", "device", job, "force", force), 10000, NULL);
        free(job);
    }
    if (!force) {
        m->ending_mirrors = true;
        migrate_src_arm_timer(m, 20);
    }
}
