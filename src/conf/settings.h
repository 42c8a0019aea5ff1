/* Per-host settings, persisted in STATE/host.json.  Unknown fields are an
 * error: a typo must not silently leave a setting at its default. */
#ifndef VMOVE_SETTINGS_H
#define VMOVE_SETTINGS_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HOST_SETTINGS_VERSION 1
#define MAX_MIGRATION_NETWORKS 16
#define MAX_PEERS 64

struct cidr {
    uint32_t addr;      /* host byte order */
    int prefix;         /* 0..32 */
};

struct peer_entry {
    char name[64];
    char addr[80];      /* "IP:PORT" */
};

/* Kinds of paths a principal may name, each confined to the directories
 * the host's admin allows (core/paths.h applies them). */
enum dir_kind { DIR_IMAGES, DIR_KERNELS, DIR_STORAGE, DIR_STATE, N_DIR_KINDS };
#define MAX_ALLOWED_DIRS 16
#define ALLOWED_DIR_MAX 256
int dir_kind_parse(const char *s, enum dir_kind *out);
const char *dir_kind_name(enum dir_kind k);

/* One kind's list.  Unset (never configured) means core/paths.c's
 * defaults; once set, the list is exactly what the admin gave. */
struct allowed_dirs {
    bool set;
    int n;
    char dirs[MAX_ALLOWED_DIRS][ALLOWED_DIR_MAX];
};

/* The host's accelerator setting (the choice itself is qemu/accel.h's). */
enum accel_setting { ACCEL_AUTO, ACCEL_KVM, ACCEL_TCG };
int accel_setting_parse(const char *s, enum accel_setting *out);
const char *accel_setting_name(enum accel_setting s);

struct host_settings {
    enum accel_setting accel;
    /* Migration is off until enabled, separately for each direction. */
    bool migration_incoming;
    bool migration_outgoing;
    /* Networks that may carry migration traffic.  any=true allows every
     * network (a lab setting that `host show` flags as unsafe). */
    bool migration_any;
    struct cidr migration_networks[MAX_MIGRATION_NETWORKS];
    int n_migration_networks;
    struct peer_entry peers[MAX_PEERS];
    int n_peers;
    /* Simultaneous migrations; a migration counts on both of its hosts. */
    int max_live_migrations;
    int max_storage_migrations;
    /* Being drained for maintenance: nothing new is placed here. */
    bool drained;
    /* Plaintext migration/NBD streams: only when both hosts allow it. */
    bool allow_insecure_migration;
    /* Post-copy splits a moving VM's memory between the two hosts (a dead
     * host or link then loses it): only when both hosts allow it. */
    bool allow_postcopy;
    /* Resource-based constrained delegation: the hosts (host:NAME or
     * group:NAME) this host lets act for users, with a user's token. */
    char delegation_from[MAX_PEERS][96];
    int n_delegation_from;
    /* Where disks, kernels, storage moves and saved states may be. */
    struct allowed_dirs allowed[N_DIR_KINDS];
    /* The web console (docs/CONSOLE.md): off unless enabled; HTTPS with the
     * host's certificate on the --listen address at console_port. */
    bool console;
    int console_port;
};
#define DEFAULT_CONSOLE_PORT 7443

#define DEFAULT_MAX_LIVE_MIGRATIONS 2
#define DEFAULT_MAX_STORAGE_MIGRATIONS 2
#define MAX_SIMULTANEOUS_MIGRATIONS 64

void host_settings_defaults(struct host_settings *s);
int host_settings_from_json(json_t *j, struct host_settings *s, char *err, size_t errlen);
json_t *host_settings_to_json(const struct host_settings *s);
/* Missing file = defaults. */
int host_settings_load(const char *path, struct host_settings *s, char *err, size_t errlen);
int host_settings_save(const char *path, const struct host_settings *s, char *err, size_t errlen);

int cidr_parse(const char *s, struct cidr *out);
void cidr_format(const struct cidr *c, char *buf, size_t len);
bool cidr_contains(const struct cidr *c, uint32_t addr_host_order);
/* Is this IPv4 address (host order) allowed to carry migration traffic? */
bool settings_migration_allowed(const struct host_settings *s, uint32_t addr);
/* "10.1.2.0/24, 10.9.0.0/16" or "any" */
void settings_migration_networks_str(const struct host_settings *s, char *buf, size_t len);
/* An absolute, canonical-looking directory ("/", "//", ".", ".." and a
 * trailing "/" refused); NULL if good, else why. */
const char *settings_allowed_dir_problem(const char *dir);
/* Add or remove DIR in kind K's list (which becomes set); -1 with err. */
int settings_allow_dir(struct host_settings *s, enum dir_kind k, const char *dir, char *err, size_t errlen);
int settings_disallow_dir(struct host_settings *s, enum dir_kind k, const char *dir, char *err, size_t errlen);
const struct peer_entry *settings_find_peer(const struct host_settings *s, const char *name);
#endif
