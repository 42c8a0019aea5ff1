/* Destination: migrate.load, the second half of a quick migration.  The
 * source saved the paused guest to a file on shared storage; QEMU here
 * loads it, and the MIGRATION "completed" event commits and resumes exactly
 * as finish does. */
#include "migrate/dst.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"

#define LOAD_TIMEOUT_S 300

static void dst_on_load_started(void *arg, const qmp_error_t *err)
{
    struct incoming *in = arg;
    if (err)
        migrate_dst_abort(in, err->desc);
    /* else: the MIGRATION "completed" event commits and resumes (finish path). */
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
     * reads it itself ("file:", mapped-ram: the channels in parallel). */
    int fd = strchr(msg->path, ',') ? (errno = EINVAL, -1) : open(msg->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        char why[600];
        snprintf(why, sizeof why, "cannot read the saved state %s on host %s: %s", msg->path, a->name,
                 strerror(errno));
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
