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

static void on_state_fd(void *arg, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (err) {
        m->failure = proto_error(ERR_QEMU, NULL, "QEMU could not take the state file: %s", err->desc);
        migrate_src_rollback(m);
        return;
    }
    migrate_src_set_capabilities(m);
}

static void on_paused(void *arg, const qmp_error_t *err)
{
    struct migration *m = arg;
    if (err) {
        m->failure = proto_error(ERR_QEMU, NULL, "QEMU could not pause the guest: %s", err->desc);
        migrate_src_rollback(m);
        return;
    }
    m->t_pause = now_ms();
    int fd = open(m->state_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        m->failure = proto_error(ERR_INVALID, "give a shared directory with --state-dir DIR",
                                 "cannot create the state file %s: %s", m->state_path, strerror(errno));
        free(m->state_path);
        m->state_path = NULL;   /* not ours: do not delete it */
        migrate_src_rollback(m);
        return;
    }
    qmon_getfd(migrate_src_mon(m), &m->owner, "vmove-state", fd, 10000, on_state_fd, m);
    close(fd);   /* QEMU got its own copy */
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
    m->state_path = xasprintf("%s/.vmove-%s-%lld.state", dir, m->name, (long long)m->job->id);
    free(copy);
    migrate_src_set_phase(m, PH_TRANSFER);
    qmon_stop(migrate_src_mon(m), &m->owner, 10000, on_paused, m);
}
