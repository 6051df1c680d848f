/*
 * Internal interface of bri-backup, the command line: the options shared by
 * every command, the exit statuses, the command entry points (commands.c)
 * and the terminal progress bar (progress.c). Not a public header: nothing
 * outside src/cli includes it.
 */
#ifndef BRI_CLI_H
#define BRI_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include "bri/common.h"
#include "bri/hook.h"
#include "bri/retention.h"
#include "bri/store.h"

/* Exit statuses of SPEC.md section 3. */
#define CLI_EXIT_OK             0
#define CLI_EXIT_FAIL           1
#define CLI_EXIT_USAGE          2
#define CLI_EXIT_NAGIOS_UNKNOWN 3 /* health --nagios: the state is unknown */

/* Global options, filled by main.c before a command runs. */
struct cli_globals {
	const char *db;          /* live database path (--db, $BRI_DB, data/bri.db) */
	const char *backup_dir;  /* store folder (--backup-dir, $BRI_BACKUP_DIR); NULL: default */
	int retention_days;      /* --retention-days, for cleanup */
	int keep_min;            /* --keep-min, for cleanup */
	bool retention_days_set; /* --retention-days was given */
	struct bri_retention_rules tiers; /* --keep-hourly ... --keep-within (only those) */
	struct bri_hooks hooks;           /* --on-success, --on-failure, --hook-timeout */
	bool hook_ran;                    /* set by a command whose operation ran: hooks apply */
	char hook_name[BRI_NAME_MAX + 1]; /* the backup it was about (BRI_NAME) */
	char hook_reason[1024];           /* why it failed, when no error was printed */
	bool json;                        /* --json: machine-readable output */
	bool follow_symlink;  /* --follow-symlink: accept a symlinked --db or --backup-dir */
	bool force;           /* --force: accept a store in the database's own folder */
	const char *key_file; /* --key-file: an encrypted store's key ($BRI_KEY_FILE); NULL: none */
	int verbose;          /* -v count: log level above WARN */
};

/*
 * A command: parses its own arguments (argv[0] is the command's name) and
 * returns an exit status. Global options are accepted after the command too.
 */
typedef int (*cli_command_fn)(struct cli_globals *g, int argc, char **argv);

int cli_cmd_create(struct cli_globals *g, int argc, char **argv);
int cli_cmd_list(struct cli_globals *g, int argc, char **argv);
int cli_cmd_verify(struct cli_globals *g, int argc, char **argv);
int cli_cmd_restore(struct cli_globals *g, int argc, char **argv);
int cli_cmd_cleanup(struct cli_globals *g, int argc, char **argv);
int cli_cmd_init(struct cli_globals *g, int argc, char **argv);
int cli_cmd_delete(struct cli_globals *g, int argc, char **argv);
int cli_cmd_rehearse(struct cli_globals *g, int argc, char **argv);
int cli_cmd_pin(struct cli_globals *g, int argc, char **argv);
int cli_cmd_unpin(struct cli_globals *g, int argc, char **argv);
int cli_cmd_stats(struct cli_globals *g, int argc, char **argv);
int cli_cmd_health(struct cli_globals *g, int argc, char **argv);
int cli_cmd_metrics(struct cli_globals *g, int argc, char **argv);
/* inspect.c */
int cli_cmd_diff(struct cli_globals *g, int argc, char **argv);
int cli_cmd_export(struct cli_globals *g, int argc, char **argv);

/*
 * Handles one global option (the getopt_long value opt with argument arg)
 * for a command parser. Returns 1 when opt was a global option, 0 when not,
 * -1 when its argument is bad (the message has been printed).
 */
int cli_global_option(struct cli_globals *g, int opt, const char *arg);

/*
 * The cleanup rules of the global options: with any calendar tier, the age
 * rule applies only when --retention-days was given.
 */
struct bri_retention_rules cli_rules(const struct cli_globals *g);

/* The long options every command accepts too, ending with a zero entry. */
extern const struct option cli_global_longopts[];

/*
 * Appends the global options to a command's own long options (n entries
 * without the terminator) into out, which holds at least n + 16 entries.
 */
void cli_merge_longopts(const struct option *own, int n, struct option *out);

/*
 * Reports the getopt_long error opt ('?' unknown option, ':' missing
 * argument) for command (NULL: the program) and returns CLI_EXIT_USAGE.
 */
int cli_bad_option(const char *command, int opt, char **argv);

/* Sets up logging to stderr at the level the -v options ask for. */
void cli_setup_logging(const struct cli_globals *g);

/* Prints "bri-backup: <message>" on stderr. */
void cli_error(const char *fmt, ...) BRI_PRINTF(1, 2);

/* Prints the usage error, a pointer to --help, and returns CLI_EXIT_USAGE. */
int cli_usage_error(const char *command, const char *fmt, ...) BRI_PRINTF(2, 3);

/*
 * The progress reporter: when stderr is a terminal, cli_progress_ctx returns
 * a context whose progress callback draws a one-line bar on stderr (label
 * shown before the phase); otherwise a context without a callback.
 * cli_progress_done clears the line again.
 */
struct bri_op_ctx cli_progress_ctx(const char *label);
void cli_progress_done(void);

#endif
