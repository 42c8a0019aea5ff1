/* Private to src/conf/vm_config*.c: the message helpers, value checks and
 * enum name tables shared by the parser (vm_config_parse.c), the semantic
 * validation (vm_config_validate.c) and the serialiser (vm_config.c).
 * Never included from another folder; the contract is conf/vm_config.h. */
#ifndef VMOVE_VM_CONFIG_INTERNAL_H
#define VMOVE_VM_CONFIG_INTERNAL_H
#include <stddef.h>

#include "conf/vm_config.h"

/* Formats into err (if any) and returns -1. */
int vm_config_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A user-supplied string, quoted and escaped for a message, cut short at
 * about VM_CONFIG_QUOTE_MAX bytes: vm_config_quote(s).s */
#define VM_CONFIG_QUOTE_MAX 64
struct vm_config_quoted {
    char s[VM_CONFIG_QUOTE_MAX + 16];
};
struct vm_config_quoted vm_config_quote(const char *v);

/* Value checks: 0, or -1 with a message starting with path. */
int vm_config_check_range(const char *path, long long v, long long min, long long max,
                          char *err, size_t errlen);
int vm_config_check_uuid(const char *path, const char *s, char *err, size_t errlen);
int vm_config_check_mac(const char *path, const char *s, char *err, size_t errlen);
int vm_config_check_version(const char *path, long long v, char *err, size_t errlen);

/* Enum names, in enum order (the index is the value).  A new bus or boot
 * kind raises its count here and gets its name in vm_config_validate.c. */
#define VM_DISK_BUS_COUNT 1
#define VM_BOOT_KIND_COUNT 2
extern const char *const vm_config_bus_names[VM_DISK_BUS_COUNT];
extern const char *const vm_config_boot_kind_names[VM_BOOT_KIND_COUNT];
/* names[v], or NULL if v is out of range. */
const char *vm_config_enum_name(const char *const *names, size_t n, unsigned v);
#endif
