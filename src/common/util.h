/* Small helpers shared by every module: sizes, strings, files. */
#ifndef VMOVE_UTIL_H
#define VMOVE_UTIL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* "512M", "1G", "1024" (bytes), "4K".  Binary units.  Returns 0 or -1 with
 * *err set to a static description. */
int parse_size(const char *s, uint64_t *out, const char **err);
/* 536870912 -> "512M" (exact) or "1.5G" */
void format_size(uint64_t bytes, char *buf, size_t len);

/* malloc/strdup that abort on OOM: a daemon cannot limp on without memory. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t sz);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void *xrealloc(void *p, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Write a whole file atomically: write to PATH.tmp, fsync, rename, fsync dir. */
int write_file_atomic(const char *path, const void *data, size_t len, int mode);
/* Read a whole file; *out is NUL-terminated and malloc'd. */
int read_file(const char *path, char **out, size_t *len);
int mkdir_p(const char *path, int mode);
/* rm -rf, refusing "/" and empty paths. */
int remove_tree(const char *path);
bool path_exists(const char *path);

/* Name of a VM, host, switch: [A-Za-z0-9][A-Za-z0-9._-]{0,62} */
bool valid_name(const char *s);

uint64_t now_ms(void);       /* CLOCK_MONOTONIC */
uint64_t wall_ms(void);      /* CLOCK_REALTIME */
#endif
