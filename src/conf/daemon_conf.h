/* vmoved's configuration file, /etc/vmove/vmoved.conf: `key = value` lines
 * and `#` comment lines, one key for each option of vmoved's command line.
 *
 * Pure: it reads text and fills a struct, nothing else.  vmoved-main.c
 * loads the file, lets the command line override it and applies the
 * defaults below to what neither gave.  Every error names the file and the
 * line ("/etc/vmove/vmoved.conf:7: unknown key \"lsten\""), and vmoved does
 * not start on one: a typo must not silently leave a setting at its default. */
#ifndef VMOVE_DAEMON_CONF_H
#define VMOVE_DAEMON_CONF_H
#include <stdbool.h>
#include <stddef.h>

#define DAEMON_CONF_PATH "/etc/vmove/vmoved.conf"
/* Where `vmove` looks without -H (cli.h's DEFAULT_HOST): keep them equal. */
#define DAEMON_DEFAULT_STATE_DIR "/var/lib/vmove"
#define DAEMON_DEFAULT_SOCKET "/run/vmove/vmoved.sock"

/* NULL (or false): not given. */
struct daemon_conf {
    char *name;        /* this host's name */
    char *listen;      /* ADDR:PORT of the TLS port */
    char *tls_dir;
    char *state_dir;
    char *socket;
    char *log_file;
    bool debug;
};

/* Parse `text` (a whole file; `file` names it in errors) into *c, which
 * starts zeroed.  -1 with "FILE:LINE: why" in err. */
int daemon_conf_parse(const char *file, const char *text, struct daemon_conf *c, char *err, size_t errlen);
/* Read and parse `path`.  A missing file is fine (0, *c untouched) unless
 * must_exist: an explicit --config must be there. */
int daemon_conf_load(const char *path, bool must_exist, struct daemon_conf *c, char *err, size_t errlen);
void daemon_conf_free(struct daemon_conf *c);
#endif
