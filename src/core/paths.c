#include "core/paths.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void paths_policy_init(struct path_policy *p, const struct host_settings *s, const char *state_dir)
{
    memset(p, 0, sizeof *p);
    if (state_dir)
        snprintf(p->state_images, sizeof p->state_images, "%s/images", state_dir);
    for (int k = 0; k < N_DIR_KINDS; k++) {
        const struct allowed_dirs *a = &s->allowed[k];
        if (!a->set) {
            if (state_dir)
                p->roots[k][p->n[k]++] = p->state_images;
            p->roots[k][p->n[k]++] = PATHS_DEFAULT_SHARED;
            continue;
        }
        for (int i = 0; i < a->n; i++)
            p->roots[k][p->n[k]++] = a->dirs[i];
    }
}

bool paths_under(const char *path, const char *root)
{
    size_t n = strlen(root);
    while (n > 1 && root[n - 1] == '/')
        n--;
    if (n == 1 && root[0] == '/')
        return path[0] == '/';
    return !strncmp(path, root, n) && (path[n] == 0 || path[n] == '/');
}

/* A root is compared in its canonical form now (it may have become a
 * symlink since the admin set it; a missing root allows nothing). */
static bool allowed(const struct path_policy *p, enum dir_kind kind, const char *canonical)
{
    for (size_t i = 0; i < p->n[kind]; i++) {
        char root[PATH_MAX];
        if (realpath(p->roots[kind][i], root) && paths_under(canonical, root))
            return true;
    }
    return false;
}

static void outside(const struct path_policy *p, enum dir_kind kind, const char *canonical, const char *dir,
                    char *err, size_t errlen)
{
    char list[1024] = "";
    size_t len = 0;
    for (size_t i = 0; i < p->n[kind] && len < sizeof list; i++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? ", " : "", p->roots[kind][i]);
    snprintf(err, errlen, "%s is outside the directories this host allows for %s (%s): the host's admin can allow "
             "it with `vmove host set --allow-dir %s=%s`", canonical, dir_kind_name(kind), len ? list : "none",
             dir_kind_name(kind), dir);
}

static const char *file_type(mode_t m)
{
    return S_ISFIFO(m) ? "a FIFO" : S_ISCHR(m) ? "a character device" : S_ISBLK(m) ? "a block device"
         : S_ISDIR(m) ? "a directory" : S_ISSOCK(m) ? "a socket" : S_ISLNK(m) ? "a symbolic link" : "not a file";
}

/* The canonical parent of PATH joined with its last component, which must
 * be a name (not "", "." or ".."). */
static int canonical_file(const char *path, char *out, size_t outlen, char *err, size_t errlen)
{
    if (path[0] != '/') {
        snprintf(err, errlen, "must be an absolute path");
        return -1;
    }
    const char *slash = strrchr(path, '/');
    const char *base = slash + 1;
    if (!*base || !strcmp(base, ".") || !strcmp(base, "..")) {
        snprintf(err, errlen, "does not name a file");
        return -1;
    }
    char parent[PATH_MAX], canon[PATH_MAX];
    size_t n = (size_t)(slash - path);
    if (n >= sizeof parent) {
        snprintf(err, errlen, "%s", strerror(ENAMETOOLONG));
        return -1;
    }
    memcpy(parent, path, n);
    parent[n] = 0;
    if (!realpath(n ? parent : "/", canon)) {
        snprintf(err, errlen, "%s", strerror(errno));
        return -1;
    }
    if ((size_t)snprintf(out, outlen, "%s/%s", strcmp(canon, "/") ? canon : "", base) >= outlen) {
        snprintf(err, errlen, "%s", strerror(ENAMETOOLONG));
        return -1;
    }
    return 0;
}

int paths_check_file(const struct path_policy *p, enum dir_kind kind, const char *path, struct path_info *out,
                     char *err, size_t errlen)
{
    char canon[PATH_MAX];
    if (canonical_file(path, canon, sizeof canon, err, errlen) < 0)
        return -1;
    /* The policy before the file itself: nothing is said about files
     * outside it except that they are outside. */
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", canon);
    *strrchr(dir, '/') = 0;
    if (!allowed(p, kind, canon)) {
        outside(p, kind, canon, dir[0] ? dir : "/", err, errlen);
        return -1;
    }
    struct stat st;
    if (lstat(canon, &st) < 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        return -1;
    }
    /* lstat: a symlink could be re-pointed after this check. */
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s is %s, not a regular file", canon, file_type(st.st_mode));
        return -1;
    }
    snprintf(out->canonical, sizeof out->canonical, "%s", canon);
    out->dev = st.st_dev;
    out->ino = st.st_ino;
    return 0;
}

int paths_check_dir(const struct path_policy *p, enum dir_kind kind, const char *dir, struct path_info *out,
                    char *err, size_t errlen)
{
    char canon[PATH_MAX];
    struct stat st;
    if (dir[0] != '/') {
        snprintf(err, errlen, "must be an absolute path");
        return -1;
    }
    if (!realpath(dir, canon) || stat(canon, &st) < 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        return -1;
    }
    if (!allowed(p, kind, canon)) {
        outside(p, kind, canon, canon, err, errlen);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s is %s, not a directory", canon, file_type(st.st_mode));
        return -1;
    }
    snprintf(out->canonical, sizeof out->canonical, "%s", canon);
    out->dev = st.st_dev;
    out->ino = st.st_ino;
    return 0;
}

bool paths_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

bool paths_may_remove(const struct path_policy *p, enum dir_kind kind, const char *vm_dir, const char *path)
{
    char canon[PATH_MAX], vdir[PATH_MAX], why[64];
    struct stat st;
    if (!path || canonical_file(path, canon, sizeof canon, why, sizeof why) < 0 || lstat(canon, &st) < 0 ||
        !S_ISREG(st.st_mode))
        return false;
    if (vm_dir && realpath(vm_dir, vdir) && paths_under(canon, vdir))
        return true;
    return allowed(p, kind, canon);
}
