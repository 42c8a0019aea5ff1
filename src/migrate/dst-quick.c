/* Destination: migrate.load, the second half of a quick migration.  The
 * source saved the paused guest to a file on shared storage; QEMU here
 * loads it, and the MIGRATION "completed" event commits and resumes exactly
 * as finish does. */
#include "migrate/dst.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/paths.h"

#define LOAD_TIMEOUT_S 300

static void dst_on_load_started(void *arg, const qmp_error_t *err)
{
    struct incoming *in = arg;
    if (err)
        migrate_dst_abort(in, err->desc);
    /* else: the MIGRATION "completed" event commits and resumes (finish path). */
}


/* The saved state: a regular file (a FIFO would block open()) in a
 * directory this host allows for states, or for images (by default the
 * source saves it next to the VM's first disk).  True, with why, if not. */
static bool state_file_refused(struct agent *a, const char *path, char *why, size_t whylen)
{
    struct path_policy pol;
    struct path_info pi;
    char other[PATH_MAX + 512];
    paths_policy_init(&pol, &a->settings, a->state_dir);
    return paths_check_file(&pol, DIR_STATE, path, &pi, why, whylen) < 0 &&
           paths_check_file(&pol, DIR_IMAGES, path, &pi, other, sizeof other) < 0;
}

int incoming_load(struct agent *a, const char *source, const struct wire_load_req *msg, incoming_done_fn done,
                  void *arg, json_t **err)
{
    struct incoming *in = migrate_dst_find(a, msg->name);
    if (!in || !in->vm || in->done || !in->quick || strcmp(in->source, source)) {
        *err = proto_error(ERR_STATE, NULL, "no quick migration of %s from %s on host %s", msg->name, source,
                           a->name);
        return -1;
    }
    /* Checked here so that the error names the file and the host; QEMU then
     * reads it itself ("file:", mapped-ram: the channels in parallel), and
     * its "file:" URI takes options after a comma. */
    char refused[PATH_MAX + 512];
    bool allowed = !state_file_refused(a, msg->path, refused, sizeof refused);
    if (allowed && strchr(msg->path, ',')) {
        allowed = false;
        snprintf(refused, sizeof refused, "a state file path with a comma, which QEMU cannot take");
    }
    int fd = allowed ? open(msg->path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0) {
        char why[PATH_MAX + 1024];
        snprintf(why, sizeof why, "cannot read the saved state %s on host %s: %s", msg->path, a->name,
                 allowed ? strerror(errno) : refused);
        /* The VM cannot come here any more: it is aborted, and the answer
         * is the one the abort gives. */
        *err = migrate_dst_abort_error(in, why);
        migrate_dst_abort(in, why);
        return -1;
    }
    close(fd);
    in->done = done;
    in->done_arg = arg;
    migrate_dst_wait_loaded(in, LOAD_TIMEOUT_S);
    char *file = xasprintf("file:%s", msg->path);
    qmon_migrate_incoming(migrate_dst_mon(in), &in->owner, file, 10000, dst_on_load_started, in);
    free(file);
    return 0;
}
