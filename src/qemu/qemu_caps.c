#include "qemu/qemu_caps.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/spawn.h"
#include "common/util.h"

static char *parse_version(const char *out)
{
    const char *p = strstr(out, "version ");
    if (!p)
        return xstrdup("unknown");
    p += 8;
    size_t n = strspn(p, "0123456789.");
    return xasprintf("%.*s", (int)n, p);
}

/* `-machine help` lines: "q35                  Standard PC (Q35 + ICH9, 2009) (alias of pc-q35-7.2)" */
static void parse_machines(struct qemu_caps *caps, char *out)
{
    caps->machines = json_array();
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        char name[64];
        if (sscanf(line, "%63s", name) != 1 || !strcmp(name, "Supported"))
            continue;
        json_array_append_new(caps->machines, json_string(name));
        const char *alias = strstr(line, "(alias of ");
        if (!strcmp(name, "q35") && alias) {
            char target[64];
            if (sscanf(alias + 10, "%63[^)]", target) == 1)
                caps->default_machine = xstrdup(target);
        }
    }
    if (!caps->default_machine)
        caps->default_machine = xstrdup("q35");
}

int qemu_caps_check_version(const char *version, const char *binary, char *err, size_t errlen)
{
    int major = version ? atoi(version) : 0;
    if (major >= QEMU_MIN_MAJOR)
        return 0;
    snprintf(err, errlen,
             "%s is QEMU %s; vmoved needs QEMU %d.0 or newer. On Debian 13: apt-get install qemu-system-x86 "
             "qemu-utils. On Debian 12: scripts/install-deps.sh runtime (QEMU from bookworm-backports), or set "
             "VMOVE_QEMU to a supported binary",
             binary, version && *version ? version : "of an unknown version", QEMU_MIN_MAJOR);
    return -1;
}

int qemu_caps_probe(struct qemu_caps *caps, const char *binary, char *err, size_t errlen)
{
    caps->qemu_binary = xstrdup(binary);
    char *out = NULL;
    char *vargv[] = {(char *)binary, "-version", NULL};
    if (run_capture(vargv, 10000, &out) != 0) {
        snprintf(err, errlen, "cannot run %s -version: %s (install qemu-system-x86)", binary, out ? out : "?");
        free(out);
        return -1;
    }
    caps->qemu_version = parse_version(out);
    free(out);
    if (qemu_caps_check_version(caps->qemu_version, binary, err, errlen) < 0)
        return -1;
    char *margv[] = {(char *)binary, "-machine", "help", NULL};
    if (run_capture(margv, 10000, &out) != 0) {
        snprintf(err, errlen, "cannot list machine types of %s: %s", binary, out ? out : "?");
        free(out);
        return -1;
    }
    parse_machines(caps, out);
    free(out);
    return 0;
}

void qemu_caps_free(struct qemu_caps *caps)
{
    free(caps->qemu_binary);
    free(caps->qemu_version);
    free(caps->default_machine);
    json_decref(caps->machines);
    memset(caps, 0, sizeof *caps);
}
