/* vmove: the command-line client of vmoved. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/proto.h"

#define DEFAULT_HOST "unix:/run/vmove/vmoved.sock"

static void usage(FILE *f)
{
    fprintf(f,
        "usage: vmove [-H unix:PATH | -H HOST[:PORT]] [--identity DIR] [--json] COMMAND ...\n"
        "\n"
        "  host show | host events [--vm NAME]\n"
        "  host set [--accel auto|kvm|tcg] [--migration-incoming on|off] [--migration-outgoing on|off]\n"
        "           [--migration-network CIDR|any]...\n"
        "  peer add HOST ADDR:PORT | peer remove HOST | peer list\n"
        "  acl grant|revoke user:NAME|host:NAME|group:NAME RIGHT... | acl list | acl group add|remove GROUP MEMBER\n"
        "  audit [--limit N] | token create VM --from HOST --to HOST\n"
        "  move NAME --to HOST|ADDR:PORT [--downtime MS] [--max-downtime MS] [--max-duration S]\n"
        "           [--parallel N] [--compress none|zstd|zlib] [--bandwidth MBIT] [--probe IP:PORT]\n"
        "           [--converge auto|throttle|downtime|cancel] [--no-wait]\n"
        "           [--quick [--state-dir DIR]] [--with-storage DIR [--keep-source]]\n"
        "  move NAME --from HOST --to HOST [--token-file F]   (delegated: needs --identity)\n"
        "  move-storage NAME [--to DIR] [--disk ID[=DIR]]... [--keep-source] [--bandwidth MIB]\n"
        "           [--config-to DIR] [--no-wait]\n"
        "  vm create NAME [--memory 512M] [--cpus 1] [--disk SIZE|PATH]... [--nic SWITCH]...\n"
        "            [--kernel F [--initrd F] [--append S]] [--machine TYPE] [--ha]\n"
        "  vm list | vm show NAME\n"
        "  vm start NAME [--no-wait] | vm stop NAME [--force] [--timeout S] [--no-wait]\n"
        "  vm pause NAME | vm resume NAME | vm delete NAME [--keep-disks]\n"
        "  vm console NAME [-f] | vm guest NAME COMMAND...\n"
        "  jobs [list [--all]] | jobs show ID | jobs watch ID | jobs cancel ID\n"
        "  pki init CADIR | pki issue-host NAME --ca CADIR --out DIR | pki issue-user NAME --ca CADIR --out DIR\n"
        "\n"
        "  -H TARGET        vmoved to talk to (default $VMOVE_HOST, else %s)\n"
        "  --identity DIR   user certificate for -H HOST (ca.crt, user.crt, user.key; $VMOVE_IDENTITY)\n"
        "  --json           machine-readable output (streams JSON lines while waiting for jobs)\n",
        DEFAULT_HOST);
}

int main(int argc, char **argv)
{
    /* A daemon that hangs up must give an error message, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    struct cli c = {0};
    c.host = getenv("VMOVE_HOST") ? getenv("VMOVE_HOST") : DEFAULT_HOST;
    c.identity = getenv("VMOVE_IDENTITY");
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--json"))
            c.json = true;
        else if ((!strcmp(argv[i], "-H") || !strcmp(argv[i], "--host")) && i + 1 < argc)
            c.host = argv[++i];
        else if (!strcmp(argv[i], "--identity") && i + 1 < argc)
            c.identity = argv[++i];
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "vmove: unknown option %s\n", argv[i]);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    /* --json may also follow the command, as scripts often put it last. */
    for (int k = i; k < argc; k++)
        if (!strcmp(argv[k], "--json")) {
            c.json = true;
            memmove(&argv[k], &argv[k + 1], (size_t)(argc - k) * sizeof *argv);
            argc--;
            k--;
        }
    const char *cmd = argv[i];
    int rc;
    if (!strcmp(cmd, "host"))
        rc = cmd_host(&c, argc - i - 1, argv + i + 1);
    else if (!strcmp(cmd, "vm"))
        rc = cmd_vm(&c, argc - i - 1, argv + i + 1);
    else if (!strcmp(cmd, "jobs"))
        rc = cmd_jobs(&c, argc - i - 1, argv + i + 1);
    else if (!strcmp(cmd, "move"))
        rc = cmd_move(&c, argc - i - 1, argv + i + 1);
    else if (!strcmp(cmd, "move-storage"))
        rc = cmd_move_storage(&c, argc - i - 1, argv + i + 1);
    else if (!strcmp(cmd, "acl"))
        rc = cmd_acl(&c, argc - i - 1, argv + i + 1);
    else if (!strcmp(cmd, "token"))
        rc = cmd_token(&c, argc - i - 1, argv + i + 1);
    else if (!strcmp(cmd, "audit"))
        rc = cmd_audit(&c, argc - i - 1, argv + i + 1);
    else if (!strcmp(cmd, "peer"))
        rc = cmd_peer(&c, argc - i - 1, argv + i + 1);
    else if (!strcmp(cmd, "pki"))
        rc = cmd_pki(&c, argc - i - 1, argv + i + 1);
    else if (!strcmp(cmd, "help")) {
        usage(stdout);
        rc = 0;
    } else {
        cli_error(&c, "unknown command \"%s\"; run `vmove --help` for the list", cmd);
        rc = EXIT_USAGE;
    }
    cli_disconnect(&c);
    return rc;
}
