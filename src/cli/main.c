/*
 * bri-backup, the command line of bri-backupfs (SPEC.md section 3): the
 * same operations as the mount, for cron jobs and scripts. This file declares
 * and applies the global options (before the command, or after it), picks
 * the defaults from the environment, sets up logging, prints bri-backup
 * --help and dispatches to the command of the table in commands.c. It does
 * no backup work itself.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bri/hook.h"
#include "bri/log.h"
#include "bri/retention.h"
#include "cli.h"

#ifndef BRI_VERSION
#define BRI_VERSION "unknown"
#endif

#define DEFAULT_DB "data/bri.db"
#define STR(x)     #x
#define XSTR(x)    STR(x)

/* Which global option a row of cli_global_opts is (its id). */
enum {
	OPT_DB = 1,
	OPT_BACKUP_DIR,
	OPT_RETENTION_DAYS,
	OPT_KEEP_MIN,
	OPT_JSON,
	OPT_VERSION,
	OPT_FOLLOW_SYMLINK,
	OPT_FORCE,
	OPT_KEEP_HOURLY,
	OPT_KEEP_DAILY,
	OPT_KEEP_WEEKLY,
	OPT_KEEP_MONTHLY,
	OPT_KEEP_YEARLY,
	OPT_KEEP_WITHIN,
	OPT_ON_SUCCESS,
	OPT_ON_FAILURE,
	OPT_HOOK_TIMEOUT,
	OPT_VERBOSE,
	OPT_KEY_FILE,
};

/* Option rows give the fields they need, in order; the rest are 0. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

/*
 * The options every command accepts too, before or after it. Each is
 * declared once here: getopt_long, --help, completion and the man page
 * test all read this table.
 */
const struct cli_opt cli_global_opts[] = {
    {"db", 0, "PATH", "the live database (default $BRI_DB, else " DEFAULT_DB ")", CLI_COMPLETE_FILE,
     .id = OPT_DB},
    {"backup-dir", 0, "DIR",
     "the store (default $BRI_BACKUP_DIR, else the folder\n'backups' beside the database)",
     CLI_COMPLETE_FILE, .id = OPT_BACKUP_DIR},
    {"retention-days", 0, "N",
     "cleanup removes backups older than N days (default " XSTR(BRI_DEFAULT_RETENTION_DAYS) ")",
     .id = OPT_RETENTION_DAYS},
    {"keep-min", 0, "N",
     "cleanup keeps the newest N good backups (default " XSTR(BRI_DEFAULT_KEEP_MIN) ")",
     .id = OPT_KEEP_MIN},
    {"keep-hourly", 0, "N",
     "calendar tiers: keep the newest backup of each of the\nlast N hours (local time)",
     .id = OPT_KEEP_HOURLY},
    {"keep-daily", 0, "N", "... of each of the last N days", .id = OPT_KEEP_DAILY},
    {"keep-weekly", 0, "N", "... of each of the last N ISO weeks", .id = OPT_KEEP_WEEKLY},
    {"keep-monthly", 0, "N", "... of each of the last N months", .id = OPT_KEEP_MONTHLY},
    {"keep-yearly", 0, "N", "... of each of the last N years", .id = OPT_KEEP_YEARLY},
    {"keep-within", 0, "D",
     "keep all backups within D (7d, 36h, 1y6m) of the newest;\n"
     "with tiers, --retention-days applies only if given",
     .id = OPT_KEEP_WITHIN},
    {"on-success", 0, "PROGRAM",
     "run PROGRAM (absolute path, no shell) after a create,\n"
     "verify, restore, cleanup or rehearse that succeeded, with\n"
     "BRI_OPERATION, BRI_NAME, BRI_RESULT, BRI_REASON",
     CLI_COMPLETE_FILE, .id = OPT_ON_SUCCESS},
    {"on-failure", 0, "PROGRAM", "the same, after one that failed", CLI_COMPLETE_FILE,
     .id = OPT_ON_FAILURE},
    {"hook-timeout", 0, "S", "kill a hook's process group after S seconds (30)",
     .id = OPT_HOOK_TIMEOUT},
    {"json", 0, NULL,
     "machine-readable output of list, verify, stats, health\nand more (see bri-backup(1))",
     .id = OPT_JSON},
    {"follow-symlink", 0, NULL,
     "accept a --db or --backup-dir path that is a symbolic\n"
     "link, and use what it points to (refused by default)",
     .id = OPT_FOLLOW_SYMLINK},
    {"force", 0, NULL,
     "accept a --backup-dir that is the database's own folder\n"
     "(refused by default: other .db files there would be\n"
     "taken for backups)",
     .id = OPT_FORCE},
    {"key-file", 0, "F",
     "the key of an encrypted page store: 32 random bytes or\n"
     "a passphrase (default $BRI_KEY_FILE); given to the init\n"
     "of a page store, it makes the store encrypted",
     CLI_COMPLETE_FILE, .id = OPT_KEY_FILE},
    {"verbose", 'v', NULL, "log what happens on stderr (twice: debug)", .id = OPT_VERBOSE},
    {0},
};

/* The options only before a command. */
static const struct cli_opt main_opts[] = {
    {"help", 'h', NULL, "show this help (after a command: that command's help)"},
    {"version", 'V', NULL, "show the version"},
    {"completion-table", 0, NULL, NULL}, /* hidden: the table, for bash completion */
    {0},
};

/* The last error printed: the BRI_REASON of a failure hook. */
static char last_error[1024];

void cli_error(const char *fmt, ...)
{
	va_list ap;

	/* Formatted once: the message printed is the hook's BRI_REASON. */
	va_start(ap, fmt);
	vsnprintf(last_error, sizeof(last_error), fmt, ap);
	va_end(ap);
	fprintf(stderr, "bri-backup: %s\n", last_error);
}

int cli_bad_option(const char *command, int opt, char **argv)
{
	const char *arg = optind > 0 ? argv[optind - 1] : "";

	if (opt == ':')
		return cli_usage_error(command, "option '%s' needs an argument", arg);
	if (optopt > 0 && optopt < 0x80 && strncmp(arg, "--", 2) != 0)
		return cli_usage_error(command, "unknown option '-%c'", optopt);
	return cli_usage_error(command, "unknown option '%s'", arg);
}

int cli_usage_error(const char *command, const char *fmt, ...)
{
	va_list ap;

	fputs("bri-backup: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (command)
		fprintf(stderr, "Try 'bri-backup %s --help' for more information.\n", command);
	else
		fputs("Try 'bri-backup --help' for more information.\n", stderr);
	return CLI_EXIT_USAGE;
}

/* Parses a whole non-negative decimal int; -1 when s is not one. */
static int parse_count(const char *s)
{
	char *end;
	long v;

	if (!s || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v > INT_MAX)
		return -1;
	return (int)v;
}

int cli_global_option(struct cli_globals *g, const struct cli_opt *o, const char *arg)
{
	int opt = o->id, n;

	switch (opt) {
	case OPT_DB:
		if (!*arg) {
			cli_usage_error(NULL, "--db needs a path");
			return -1;
		}
		g->db = arg;
		return 0;
	case OPT_BACKUP_DIR:
		if (!*arg) {
			cli_usage_error(NULL, "--backup-dir needs a folder");
			return -1;
		}
		g->backup_dir = arg;
		return 0;
	case OPT_RETENTION_DAYS:
	case OPT_KEEP_MIN:
		n = parse_count(arg);
		if (n < 0) {
			cli_usage_error(NULL, "%s wants a whole number of 0 or more, not '%s'",
			                opt == OPT_KEEP_MIN ? "--keep-min" : "--retention-days",
			                arg);
			return -1;
		}
		if (opt == OPT_KEEP_MIN) {
			g->keep_min = n;
		} else {
			g->retention_days = n;
			g->retention_days_set = true;
		}
		return 0;
	case OPT_KEEP_HOURLY:
	case OPT_KEEP_DAILY:
	case OPT_KEEP_WEEKLY:
	case OPT_KEEP_MONTHLY:
	case OPT_KEEP_YEARLY: {
		static const char *const names[] = {"--keep-hourly", "--keep-daily",
		                                    "--keep-weekly", "--keep-monthly",
		                                    "--keep-yearly"};
		int *slot[] = {&g->tiers.keep_hourly, &g->tiers.keep_daily, &g->tiers.keep_weekly,
		               &g->tiers.keep_monthly, &g->tiers.keep_yearly};

		n = parse_count(arg);
		if (n < 0) {
			cli_usage_error(NULL, "%s wants a whole number of 0 or more, not '%s'",
			                names[opt - OPT_KEEP_HOURLY], arg);
			return -1;
		}
		*slot[opt - OPT_KEEP_HOURLY] = n;
		return 0;
	}
	case OPT_ON_SUCCESS:
	case OPT_ON_FAILURE:
		if (arg[0] != '/') {
			cli_usage_error(NULL,
			                "%s wants the absolute path of a program (run with no "
			                "shell), not '%s'",
			                opt == OPT_ON_SUCCESS ? "--on-success" : "--on-failure",
			                arg);
			return -1;
		}
		if (opt == OPT_ON_SUCCESS)
			g->hooks.on_success = arg;
		else
			g->hooks.on_failure = arg;
		return 0;
	case OPT_HOOK_TIMEOUT:
		n = parse_count(arg);
		if (n <= 0) {
			cli_usage_error(
			    NULL, "--hook-timeout wants a number of seconds above 0, not '%s'",
			    arg);
			return -1;
		}
		g->hooks.timeout_s = n;
		return 0;
	case OPT_KEEP_WITHIN:
		if (bri_calendar_duration_parse(arg, &g->tiers.keep_within) < 0) {
			cli_usage_error(NULL,
			                "--keep-within wants a duration such as 7d, 36h or 1y6m, "
			                "not '%s'",
			                arg);
			return -1;
		}
		return 0;
	case OPT_JSON:
		g->json = true;
		return 0;
	case OPT_FOLLOW_SYMLINK:
		g->follow_symlink = true;
		return 0;
	case OPT_FORCE:
		g->force = true;
		return 0;
	case OPT_KEY_FILE:
		if (!*arg) {
			cli_usage_error(NULL, "--key-file needs a file");
			return -1;
		}
		g->key_file = arg;
		return 0;
	case OPT_VERBOSE:
		g->verbose++;
		return 0;
	default:
		return 0;
	}
}

static void usage(FILE *f)
{
	const struct cli_opt *const lists[] = {cli_global_opts, main_opts};
	const struct cli_command *c;

	fputs("Usage: bri-backup [OPTIONS] COMMAND [ARGS]\n"
	      "Backups of a live SQLite database: create, list, verify, restore, clean up.\n"
	      "\n"
	      "Commands:\n",
	      f);
	for (c = cli_commands; c->name; c++) {
		fputs("  ", f);
		cli_command_synopsis(c, f);
		fprintf(f, "\n      %s\n", c->summary);
	}
	fputs("\nOptions (before or after the command):\n", f);
	cli_print_options(lists, 2, true, f);
	fputs("\n"
	      "Environment: BRI_DB, BRI_BACKUP_DIR and BRI_KEY_FILE (the defaults above), and\n"
	      "BRI_BUSY_TIMEOUT_MS: how long to wait for a locked database or for the\n"
	      "store's lock held by another process (milliseconds, default 30000).\n"
	      "\n"
	      "Exit status: 0 success, 1 the operation failed, 2 bad usage.\n"
	      "See bri-backup(1).\n",
	      f);
}

void cli_setup_logging(const struct cli_globals *g)
{
	struct bri_log_config cfg = {
	    /* The commands report failures themselves: the core's warnings
	     * about the same failures would say it twice. */
	    .level = BRI_LOG_ERR,
	    .to_stderr = true,
	};

	if (g->verbose == 1)
		cfg.level = BRI_LOG_INFO;
	else if (g->verbose > 1)
		cfg.level = BRI_LOG_DEBUG;
	if (bri_log_init(&cfg) < 0)
		cli_error("cannot set up logging; continuing without it");
}

/* Runs command cmd on its line (argv[0] its name); returns the exit status. */
static int run(struct cli_globals *g, const struct cli_command *cmd, int argc, char **argv)
{
	struct cli_args a;
	int rc;

	rc = cli_parse(g, cmd, argc, argv, &a);
	if (rc >= 0)
		return rc;
	rc = cmd->fn(g, &a);
	cli_args_free(&a);
	return rc;
}

int main(int argc, char **argv)
{
	const struct cli_opt *const lists[] = {main_opts, cli_global_opts};
	struct cli_globals g = {
	    .db = DEFAULT_DB,
	    .retention_days = BRI_DEFAULT_RETENTION_DAYS,
	    .keep_min = BRI_DEFAULT_KEEP_MIN,
	};
	const struct cli_command *cmd;
	const struct cli_opt *row;
	struct cli_getopt p;
	const char *env;
	const char *command;
	int opt, rc = -1;

	env = getenv("BRI_DB");
	if (env && *env)
		g.db = env;
	env = getenv("BRI_BACKUP_DIR");
	if (env && *env)
		g.backup_dir = env;

	/* "+": stop at the command; its arguments are its own. */
	if (cli_getopt_init(&p, "+", lists, 2) < 0) {
		cli_error("out of memory");
		return CLI_EXIT_FAIL;
	}
	opterr = 0;
	while (rc < 0 && (opt = cli_getopt_next(&p, argc, argv, &row)) != -1) {
		if (opt) {
			rc = cli_bad_option(NULL, opt, argv);
		} else if (row == &main_opts[0]) {
			usage(stdout);
			rc = CLI_EXIT_OK;
		} else if (row == &main_opts[1]) {
			printf("bri-backup %s\n", BRI_VERSION);
			rc = CLI_EXIT_OK;
		} else if (row == &main_opts[2]) {
			cli_completion_table(main_opts, stdout);
			rc = CLI_EXIT_OK;
		} else if (cli_global_option(&g, row, optarg) < 0) {
			rc = CLI_EXIT_USAGE;
		}
	}
	cli_getopt_free(&p);
	if (rc >= 0)
		return rc;
	if (optind >= argc)
		return cli_usage_error(NULL, "no command given");
	command = argv[optind];
	if (!strcmp(command, "help")) {
		/* "bri-backup help [COMMAND]" is "bri-backup [COMMAND] --help". */
		if (optind + 1 >= argc) {
			usage(stdout);
			return CLI_EXIT_OK;
		}
		cmd = cli_command_find(argv[optind + 1]);
		if (!cmd)
			return cli_usage_error(NULL, "unknown command '%s'", argv[optind + 1]);
		cli_command_help(cmd, stdout);
		return CLI_EXIT_OK;
	}
	cmd = cli_command_find(command);
	if (!cmd)
		return cli_usage_error(NULL, "unknown command '%s'", command);

	/* One descriptor per backup being checked or copied: use all we may. */
	bri_raise_nofile_limit();
	rc = run(&g, cmd, argc - optind, argv + optind);
	/* The operation ran (not --help, not bad usage): tell the hook. */
	if (g.hook_ran && rc != CLI_EXIT_USAGE)
		bri_hook_run(&g.hooks, command, g.hook_name, rc == CLI_EXIT_OK ? 0 : -1,
		             g.hook_reason[0] ? g.hook_reason : last_error);
	bri_log_shutdown();
	/* Output that did not reach its file (disk full, closed pipe) is a failure. */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		cli_error("cannot write the output: %s", strerror(errno));
		if (rc == CLI_EXIT_OK)
			rc = CLI_EXIT_FAIL;
	}
	return rc;
}

struct bri_retention_rules cli_rules(const struct cli_globals *g)
{
	struct bri_retention_rules r = g->tiers;

	r.keep_min = g->keep_min;
	r.retention_days = g->retention_days;
	if (bri_retention_has_tiers(&r) && !g->retention_days_set)
		r.retention_days = BRI_RETENTION_DAYS_OFF;
	return r;
}
