/* The table of every vmove command, and the dispatch of a command line to
 * one of them.  Each entry lives next to its function in cmd-<family>.c. */
#ifndef VMOVE_CLI_CMD_TABLE_H
#define VMOVE_CLI_CMD_TABLE_H
#include <stdio.h>

#include "cli/cli.h"

extern const struct cli_cmd cmd_host_show_entry, cmd_host_set_entry, cmd_host_events_entry,
    cmd_host_drain_entry, cmd_host_resume_entry, cmd_host_pair_entry;
extern const struct cli_cmd cmd_peer_add_entry, cmd_peer_remove_entry, cmd_peer_list_entry;
extern const struct cli_cmd cmd_acl_grant_entry, cmd_acl_revoke_entry, cmd_acl_list_entry, cmd_acl_group_entry,
    cmd_audit_entry;
extern const struct cli_cmd cmd_token_create_entry, cmd_move_entry, cmd_move_storage_entry;
extern const struct cli_cmd cmd_vm_create_entry, cmd_vm_list_entry, cmd_vm_show_entry, cmd_vm_info_entry, cmd_vm_start_entry,
    cmd_vm_stop_entry, cmd_vm_pause_entry, cmd_vm_resume_entry, cmd_vm_delete_entry, cmd_vm_console_entry,
    cmd_vm_guest_entry, cmd_vm_export_entry, cmd_vm_import_entry;
extern const struct cli_cmd cmd_jobs_list_entry, cmd_jobs_show_entry, cmd_jobs_watch_entry, cmd_jobs_cancel_entry;
extern const struct cli_cmd cmd_pki_init_entry, cmd_pki_issue_host_entry, cmd_pki_issue_user_entry;
extern const struct cli_cmd cmd_vm_set_entry, cmd_vm_ha_clear_entry;
extern const struct cli_cmd cmd_cluster_create_entry, cmd_cluster_join_entry, cmd_cluster_leave_entry,
    cmd_cluster_show_entry, cmd_cluster_events_entry;
extern const struct cli_cmd cmd_checkpoint_create_entry, cmd_checkpoint_list_entry, cmd_checkpoint_apply_entry,
    cmd_checkpoint_delete_entry;
extern const struct cli_cmd cmd_ui_login_entry;
extern const struct cli_cmd cmd_help_entry;

/* Every command, in the order `vmove --help` lists them; NULL at the end. */
extern const struct cli_cmd *const cli_cmd_table[];
/* -H, --identity, --json: parsed by vmove-main.c, shown in every help. */
extern const struct cli_flag cli_global_flags[];

/* Help text goes to stdout, or with --json into the final document
 * {"help": TEXT, "ok": true}: print to what cli_help_open returns, then
 * call cli_help_close. */
struct cli_help_buf {
    FILE *f;
    char *text;
    size_t len;
};
FILE *cli_help_open(struct cli *c, struct cli_help_buf *h);
void cli_help_close(struct cli *c, struct cli_help_buf *h);
/* `vmove vm set NAME --memory ...`: the config part of vm set (cmd-vm.c). */
int cli_vm_set_config(struct cli *c, const struct cli_args *a);
/* Run `NOUN [VERB] ARGS...` (argv[0] is the noun); returns the exit code. */
int cli_dispatch(struct cli *c, int argc, char **argv);
#endif
