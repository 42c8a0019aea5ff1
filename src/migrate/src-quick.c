/* The source side of a migration: quick migration. */
#include "migrate/src.h"

#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <unistd.h>

#include "common/proto.h"
#include "common/util.h"
#include "core/jobs.h"
#include "vm/vm.h"

/* ---- quick migration: pause, save to shared storage ------------------- */

static void quick_on_paused(void *arg, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (err) {
        m->failure = proto_error(ERR_QEMU, NULL, "QEMU could not pause the guest: %s", err->desc);
        migrate_src_rollback(m);
        return;
    }
    m->t_pause = now_ms();
    /* Created here (never an existing file), then QEMU writes it itself:
     * "file:" with mapped-ram, the channels in parallel. */
    int fd = open(m->state_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        m->failure = proto_error(ERR_INVALID, "give a shared directory with --state-dir DIR",
                                 "cannot create the state file %s: %s", m->state_path, strerror(errno));
        free(m->state_path);
        m->state_path = NULL;   /* not ours: do not delete it */
        migrate_src_rollback(m);
        return;
    }
    close(fd);
    /* No O_DIRECT (QEMU's direct-io): the destination reads the file right
     * after it is written, and through a cache both hosts share (here, and
     * with NFS's close-to-open) a page-cache write is what it reads fastest;
     * measured in docs/BENCHMARKS.md, "Quick migration". */
    migrate_src_set_capabilities(m);
}

void migrate_src_quick_save(struct migration *m)
{
    const char *dir = m->tuning.state_dir;
    char *copy = NULL;
    if (!dir[0]) {
        if (!m->vm->cfg.n_disks) {
            m->failure = proto_error(ERR_INVALID, "give a shared directory with --state-dir DIR",
                                     "VM %s has no disk on shared storage to save its state next to", m->name);
            migrate_src_rollback(m);
            return;
        }
        copy = xstrdup(m->vm->cfg.disks[0].path);
        dir = dirname(copy);
    }
    if (strchr(dir, ',')) {
        /* QEMU's "file:" URI takes options after a comma. */
        m->failure = proto_error(ERR_INVALID, "give another directory with --state-dir DIR",
                                 "the state directory %s has a comma in its path, which QEMU cannot take", dir);
        free(copy);
        migrate_src_rollback(m);
        return;
    }
    m->state_path = xasprintf("%s/.vmove-%s-%lld.state", dir, m->name, (long long)m->job->id);
    free(copy);
    migrate_src_set_phase(m, PH_TRANSFER);
    qmon_stop(migrate_src_mon(m), &m->owner, 10000, quick_on_paused, m);
}
