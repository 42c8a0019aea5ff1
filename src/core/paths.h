/* The path policy: every path a principal names (a disk, a kernel, a storage
 * move's target, a saved state) is canonicalised and must lie in one of the
 * directories the host's admin allows for its kind (host.json's
 * allowed_dirs).  Files must be regular files and not symbolic links, so a
 * FIFO or a device is refused before anything opens it; files are told apart
 * by device and inode, never by spelling. */
#ifndef VMOVE_PATHS_H
#define VMOVE_PATHS_H
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "conf/settings.h"

/* Allowed for every kind whose list was never set: STATE/images and this. */
#define PATHS_DEFAULT_SHARED "/srv/vmove"

struct path_policy {
    const char *roots[N_DIR_KINDS][MAX_ALLOWED_DIRS];
    size_t n[N_DIR_KINDS];
    char state_images[PATH_MAX];   /* the default root inside the state directory */
};

/* A checked path: its canonical form and identity. */
struct path_info {
    char canonical[PATH_MAX];
    dev_t dev;
    ino_t ino;
};

/* The policy of host settings S for a vmoved with STATE_DIR.  P points into
 * S and into itself: use it in place, do not copy it. */
void paths_policy_init(struct path_policy *p, const struct host_settings *s, const char *state_dir);

/* PATH must be an absolute path to a regular file (not a symlink) inside one
 * of KIND's roots; 0 with *out filled, or -1 with err saying why ("No such
 * file or directory", "is a FIFO, not a regular file", "is outside ...: allow
 * it with `vmove host set --allow-dir KIND=DIR`"), to follow "LABEL PATH: ". */
int paths_check_file(const struct path_policy *p, enum dir_kind kind, const char *path, struct path_info *out,
                     char *err, size_t errlen);
/* DIR must be an existing directory whose canonical form is inside one of
 * KIND's roots. */
int paths_check_dir(const struct path_policy *p, enum dir_kind kind, const char *dir, struct path_info *out,
                    char *err, size_t errlen);

/* Is canonical path PATH ROOT itself or below it (whole components)? */
bool paths_under(const char *path, const char *root);
/* Do A and B name the same file (device and inode)?  False if either is missing. */
bool paths_same_file(const char *a, const char *b);
/* May vmoved unlink PATH, a file it recorded as its own?  Only a regular
 * file (not a symlink) directly in VM_DIR or below one of KIND's roots. */
bool paths_may_remove(const struct path_policy *p, enum dir_kind kind, const char *vm_dir, const char *path);
#endif
