/*
 * Internal interface of bri-backup, the command line: the options shared by
 * every command, the exit statuses, the command table (commands.c) and its
 * machinery (parse.c), the command entry points (backups.c, restore.c,
 * status.c, inspect.c), the helpers they share (util.c) and the terminal
 * progress bar (progress.c). Not a public header: nothing outside src/cli
 * includes it.
 */
#ifndef BRI_CLI_H
#define BRI_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "bri/common.h"
#include "bri/hook.h"
#include "bri/offsite_watch.h"
#include "bri/report.h"
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
 * The command table (commands.c) drives everything about a command's line:
 * getopt_long parsing (main.c builds the option arrays from it), --help,
 * the hidden --completion-table that bash completion reads, and the test
 * that compares man/bri-backup.1's synopsis with it. Adding a command is one
 * row of cli_commands[] plus its function; each option is declared once.
 */

/* What an option's value or a command's positional arguments complete to. */
enum {
	CLI_COMPLETE_NONE = 0,
	CLI_COMPLETE_FILE = 1 << 0,   /* file names (a PATH argument) */
	CLI_COMPLETE_NAMES = 1 << 1,  /* the store's backup names */
	CLI_COMPLETE_LATEST = 1 << 2, /* the word latest */
	CLI_COMPLETE_LIVE = 1 << 3,   /* the word live */
};

/* One option of a command (or a global one). */
struct cli_opt {
	const char *name; /* long name without "--"; NULL ends a list */
	int short_name;   /* its one-letter form, or 0 */
	const char *arg;  /* its argument as --help shows it ("NAME"), NULL: a flag */
	const char *help; /* for --help; '\n' starts a continuation line */
	int complete;     /* CLI_COMPLETE_*: what its argument completes to */
	int usage_exit;   /* given anywhere on the line: bad usage exits with this (0: 2) */
	int id;           /* global options only: which one (main.c) */
};

/*
 * A command's line after parsing: its positional arguments and the value of
 * each of its options (read with cli_opt).
 */
struct cli_args {
	const struct cli_command *cmd;
	const char *name;    /* the command's name, for messages */
	int npos;            /* positional arguments */
	char **pos;          /* ... in order */
	const char **values; /* per cmd->options entry: NULL not given, "" a flag given */
};

/* A command: runs with its parsed line and returns an exit status. */
typedef int (*cli_command_fn)(struct cli_globals *g, const struct cli_args *a);

/* A command's option rows, ended: .options = CLI_OPTIONS({"name", 'n', "NAME", "..."}, ...) */
#define CLI_OPTIONS(...) ((const struct cli_opt[]){__VA_ARGS__, {0}})

/* One row of the command table. */
struct cli_command {
	const char *name;              /* as typed */
	cli_command_fn fn;             /* its implementation */
	const char *args;              /* positional synopsis ("[NAME|PATH ...]"), or "" */
	const char *summary;           /* one line for bri-backup --help */
	const char *help;              /* what bri-backup CMD --help says after the usage line */
	const struct cli_opt *options; /* its own options, ended by {0}; -h/--help is implied */
	int complete; /* CLI_COMPLETE_*: what its positional arguments complete to */
};

/* The commands, in the order --help lists them; ended by a row with name NULL. */
extern const struct cli_command cli_commands[];

/* The options every command accepts too (main.c), ended by {0}. */
extern const struct cli_opt cli_global_opts[];

/*
 * The value of option name (its long name) of the command: the argument
 * given last, "" for a flag given, NULL when not given. Aborts when the
 * command has no such option (a typo in the program, not in the line).
 */
const char *cli_opt(const struct cli_args *a, const char *name);

/* Whether a flag (or any option) was given. */
static inline bool cli_flag(const struct cli_args *a, const char *name)
{
	return cli_opt(a, name) != NULL;
}

int cli_cmd_create(struct cli_globals *g, const struct cli_args *a);
int cli_cmd_list(struct cli_globals *g, const struct cli_args *a);
int cli_cmd_verify(struct cli_globals *g, const struct cli_args *a);
int cli_cmd_restore(struct cli_globals *g, const struct cli_args *a);
int cli_cmd_cleanup(struct cli_globals *g, const struct cli_args *a);
int cli_cmd_init(struct cli_globals *g, const struct cli_args *a);
int cli_cmd_delete(struct cli_globals *g, const struct cli_args *a);
int cli_cmd_rehearse(struct cli_globals *g, const struct cli_args *a);
int cli_cmd_pin(struct cli_globals *g, const struct cli_args *a);
int cli_cmd_unpin(struct cli_globals *g, const struct cli_args *a);
int cli_cmd_stats(struct cli_globals *g, const struct cli_args *a);
int cli_cmd_health(struct cli_globals *g, const struct cli_args *a);
int cli_cmd_metrics(struct cli_globals *g, const struct cli_args *a);
int cli_cmd_report(struct cli_globals *g, const struct cli_args *a);
int cli_cmd_diff(struct cli_globals *g, const struct cli_args *a);
int cli_cmd_export(struct cli_globals *g, const struct cli_args *a);
int cli_cmd_migrate(struct cli_globals *g, const struct cli_args *a);
int cli_cmd_scrub(struct cli_globals *g, const struct cli_args *a);
/* offsite.c */
int cli_cmd_offsite(struct cli_globals *g, const struct cli_args *a);
/*
 * restore s3://BUCKET/PREFIX/NAME: downloads the remote backup into a new
 * folder of store s (*dir, remove with bri_offsite_tmpdir_remove) and
 * checks it against its remote .meta; *path is the .db (with its .meta
 * beside it). The copy's key: remote_key, else the store's (NULL: none).
 * 0, or an exit status with the message printed.
 */
int cli_offsite_fetch(const char *url, struct bri_store *s, const char *remote_key, char **dir,
                      char **path);

/*
 * Parses the line of command cmd (argv[0] is its name; global options are
 * accepted among its own) into *a, handling --help and usage errors itself.
 * Returns -1 to run the command (free a with cli_args_free), else the exit
 * status (help shown or usage error printed).
 */
int cli_parse(struct cli_globals *g, const struct cli_command *cmd, int argc, char **argv,
              struct cli_args *a);
void cli_args_free(struct cli_args *a);

/* Prints the --help of cmd on f. */
void cli_command_help(const struct cli_command *cmd, FILE *f);

/* Finds a command by name; NULL when there is none. */
const struct cli_command *cli_command_find(const char *name);

/*
 * getopt_long over option rows: the arrays built from lists of rows (each
 * ended by {0}), sized from them. A long option without a short form gets
 * the value CLI_OPT_LONG + its index.
 */
#define CLI_OPT_LONG 0x100
struct cli_getopt {
	struct option *longopts;
	char *shortopts;
	const struct cli_opt **rows; /* the rows of all lists, in order */
	size_t n;                    /* how many */
	size_t last;                 /* the index in rows of the option cli_getopt_next returned */
};

/* mode: getopt's leading flags ("+": stop at the first argument). 0, or -1 (no memory). */
int cli_getopt_init(struct cli_getopt *p, const char *mode, const struct cli_opt *const *lists,
                    size_t nlists);
void cli_getopt_free(struct cli_getopt *p);

/*
 * The next option: 0 with *row (and p->last) set, -1 at the end, '?' an
 * unknown option or ':' a missing argument (see cli_bad_option).
 */
int cli_getopt_next(struct cli_getopt *p, int argc, char **argv, const struct cli_opt **row);

/*
 * Applies global option o (a row of cli_global_opts) with argument arg to g.
 * Returns 0, or -1 when the argument is bad (the usage error is printed).
 */
int cli_global_option(struct cli_globals *g, const struct cli_opt *o, const char *arg);

/*
 * Prints the option rows of lists as --help shows them (hidden rows, help
 * NULL, left out); compact: options without a short form are not indented
 * to line up with those that have one.
 */
void cli_print_options(const struct cli_opt *const *lists, size_t nlists, bool compact, FILE *f);

/* Prints cmd's synopsis: "NAME ARGS [--opt ARG] ..." (no newline). */
void cli_command_synopsis(const struct cli_command *cmd, FILE *f);

/* Prints the hidden --completion-table (main_opts: the options before a command only). */
void cli_completion_table(const struct cli_opt *main_opts, FILE *f);

/*
 * Reports the getopt_long error opt ('?' unknown option, ':' missing
 * argument) for command (NULL: the program) and returns CLI_EXIT_USAGE.
 */
int cli_bad_option(const char *command, int opt, char **argv);

/*
 * The cleanup rules of the global options: with any calendar tier, the age
 * rule applies only when --retention-days was given.
 */
struct bri_retention_rules cli_rules(const struct cli_globals *g);

/* ---- helpers the commands share (util.c) ---- */

struct bri_store;
struct bri_catalog;
struct bri_target;
struct bri_verify_result;
struct json_object;

/*
 * Writes len bytes of text to path through a temporary file beside it and a
 * rename, never through a symlink at path (ELOOP). 0, or -1 with errno set
 * (status.c).
 */
int cli_write_atomically(const char *path, const char *text, size_t len);

/*
 * The health thresholds of health, metrics and report (status.c): the
 * options --max-age-hours ... --rehearse-age, --offsite and
 * --offsite-lag-warn of their rows in the table (commands.c).
 */
struct cli_health {
	struct bri_health_rules rules;  /* rules.offsite: &watch when one is watched */
	const char *offsite;            /* --offsite, else $BRI_OFFSITE; NULL: the store's */
	double offsite_lag_warn_s;      /* --offsite-lag-warn; 0: the default (26 h) */
	struct bri_offsite_watch watch; /* the offsite copy, once read */
};
/* Parses a's thresholds into *h: 0, or -1 with the usage message printed. */
int cli_health_parse(const struct cli_args *a, struct cli_health *h);
/* Reads the offsite copy of store s (may be NULL) at now into h->watch and h->rules. */
void cli_health_read(struct cli_health *h, const struct bri_store *s, time_t now);

/* The operation of this command runs now, about backup name (may be NULL). */
void cli_hook_note(struct cli_globals *g, const char *name);

/* Prints "bri-backup: <what>: <err>" and a hint; returns CLI_EXIT_FAIL. */
int cli_fail(const char *what, const struct bri_err *err, int code);

/* Checks a backup name given by the user; returns 0 or CLI_EXIT_USAGE (message printed). */
int cli_check_name(const char *command, const char *name);

/*
 * Opens the store of g. With create false a missing store is not an error:
 * *out is then NULL and 0 is returned. Else returns 0 or CLI_EXIT_FAIL
 * (message printed).
 */
int cli_open_store(const struct cli_globals *g, bool create, struct bri_store **out);
void cli_close_store(struct bri_store *s);

/* The catalog of s (an empty one when s is NULL); free with cli_put_catalog. */
int cli_get_catalog(const struct bri_store *s, struct bri_catalog **out);
void cli_put_catalog(struct bri_catalog *c);

/*
 * For the commands that read the store: refuses positional arguments, sets
 * up logging, opens the store and its catalog (both NULL-safe to put back).
 * Returns 0, CLI_EXIT_USAGE or CLI_EXIT_FAIL (message printed).
 */
int cli_open_catalog(struct cli_globals *g, const struct cli_args *a, struct bri_store **s,
                     struct bri_catalog **c);

/*
 * What the user means by arg of verify or restore, decided by the core
 * (bri_target_resolve). Fills *t; returns 0, CLI_EXIT_FAIL or CLI_EXIT_USAGE
 * (an invalid name; message printed).
 */
int cli_resolve_target(const struct bri_store *s, const char *command, const char *arg,
                       struct bri_target *t);

/*
 * The name of the backup a restore without argument takes (the newest that
 * is not a safety backup), malloc'd into *out; 0 or CLI_EXIT_FAIL (printed).
 */
int cli_newest_name(const struct bri_store *s, char **out);

/* Rounds to two decimals, as the seed's size_mb. */
double cli_mb2(int64_t bytes);

/* A JSON string, or NULL (JSON null) for NULL. */
struct json_object *cli_json_str(const char *s);

/* Prints a JSON value (pretty) and a newline on stdout, then frees it. */
void cli_print_json(struct json_object *o);

/* A verification result as JSON, the core's one rendering; NULL when out of memory. */
struct json_object *cli_verify_json(const char *name, const char *path,
                                    const struct bri_verify_result *r);

/* Runs a cleanup and prints what it removed to f; *out gets its JSON when out is not NULL. */
int cli_run_cleanup(struct bri_store *s, const struct cli_globals *g, bool dry_run, FILE *f,
                    struct json_object **out);

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
