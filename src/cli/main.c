/*
 * bri-backup, the command line of bri-backupfs (SPEC.md section 3): the
 * same operations as the mount, for cron jobs and scripts. This file parses
 * the global options (before the command, or after it), picks the defaults
 * from the environment, sets up logging and dispatches to the command in
 * commands.c. It does no backup work itself.
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

/* Values of the global options that have no short form. */
enum {
	OPT_DB = 0x100,
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
	OPT_KEY_FILE,
};

const struct option cli_global_longopts[] = {
    {"db", required_argument, NULL, OPT_DB},
    {"backup-dir", required_argument, NULL, OPT_BACKUP_DIR},
    {"retention-days", required_argument, NULL, OPT_RETENTION_DAYS},
    {"keep-min", required_argument, NULL, OPT_KEEP_MIN},
    {"keep-hourly", required_argument, NULL, OPT_KEEP_HOURLY},
    {"keep-daily", required_argument, NULL, OPT_KEEP_DAILY},
    {"keep-weekly", required_argument, NULL, OPT_KEEP_WEEKLY},
    {"keep-monthly", required_argument, NULL, OPT_KEEP_MONTHLY},
    {"keep-yearly", required_argument, NULL, OPT_KEEP_YEARLY},
    {"keep-within", required_argument, NULL, OPT_KEEP_WITHIN},
    {"on-success", required_argument, NULL, OPT_ON_SUCCESS},
    {"on-failure", required_argument, NULL, OPT_ON_FAILURE},
    {"hook-timeout", required_argument, NULL, OPT_HOOK_TIMEOUT},
    {"json", no_argument, NULL, OPT_JSON},
    {"follow-symlink", no_argument, NULL, OPT_FOLLOW_SYMLINK},
    {"force", no_argument, NULL, OPT_FORCE},
    {"key-file", required_argument, NULL, OPT_KEY_FILE},
    {"verbose", no_argument, NULL, 'v'},
    {NULL, 0, NULL, 0},
};

/* The commands, in the order --help lists them. */
static const struct {
	const char *name;  /* as typed */
	cli_command_fn fn; /* its implementation */
	const char *args;  /* its synopsis after the name */
	const char *what;  /* one line for --help */
} commands[] = {
    {"init", cli_cmd_init, "[--format plain|pages]",
     "make the backup store, of a format (plain: the default; pages)"},
    {"create", cli_cmd_create, "[--name NAME] [--verify] [--cleanup]",
     "take a backup; prints its path"},
    {"list", cli_cmd_list, "", "list the backups, newest first"},
    {"verify", cli_cmd_verify, "[NAME|PATH ...]",
     "verify backups (none given: all); exit 1 if any failed"},
    {"restore", cli_cmd_restore, "[NAME|PATH] [--no-verify]",
     "restore a backup (none given: the newest) into the live database"},
    {"cleanup", cli_cmd_cleanup, "[--dry-run]", "remove backups older than the retention period"},
    {"delete", cli_cmd_delete, "NAME", "remove one backup (refused when pinned)"},
    {"rehearse", cli_cmd_rehearse, "[NAME|latest] [--checks FILE] [--scratch DIR]",
     "prove a backup restores: restore into a scratch copy, run your checks"},
    {"pin", cli_cmd_pin, "NAME [--reason TEXT]", "keep a backup from every cleanup"},
    {"unpin", cli_cmd_unpin, "NAME", "remove a backup's pin"},
    {"stats", cli_cmd_stats, "", "show the store's statistics"},
    {"health", cli_cmd_health, "[--max-age-hours H] [--min-backups N]",
     "check the store's health; exit 1 on a warning"},
    {"metrics", cli_cmd_metrics, "[--output FILE]",
     "print metrics in the Prometheus text format (or write FILE)"},
    {"diff", cli_cmd_diff, "OLD NEW [--table T] [--summary] [--json]",
     "compare two backups (or 'live'): the sqldiff summary, or one table's changed rows as CSV"},
    {"export", cli_cmd_export, "NAME FILE | NAME --table T | --schema",
     "write a backup as a plain .db FILE, or print a table as CSV, or its schema"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

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

int cli_global_option(struct cli_globals *g, int opt, const char *arg)
{
	int n;

	switch (opt) {
	case OPT_DB:
		if (!*arg) {
			cli_usage_error(NULL, "--db needs a path");
			return -1;
		}
		g->db = arg;
		return 1;
	case OPT_BACKUP_DIR:
		if (!*arg) {
			cli_usage_error(NULL, "--backup-dir needs a folder");
			return -1;
		}
		g->backup_dir = arg;
		return 1;
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
		return 1;
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
		return 1;
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
		return 1;
	case OPT_HOOK_TIMEOUT:
		n = parse_count(arg);
		if (n <= 0) {
			cli_usage_error(
			    NULL, "--hook-timeout wants a number of seconds above 0, not '%s'",
			    arg);
			return -1;
		}
		g->hooks.timeout_s = n;
		return 1;
	case OPT_KEEP_WITHIN:
		if (bri_calendar_duration_parse(arg, &g->tiers.keep_within) < 0) {
			cli_usage_error(NULL,
			                "--keep-within wants a duration such as 7d, 36h or 1y6m, "
			                "not '%s'",
			                arg);
			return -1;
		}
		return 1;
	case OPT_JSON:
		g->json = true;
		return 1;
	case OPT_FOLLOW_SYMLINK:
		g->follow_symlink = true;
		return 1;
	case OPT_FORCE:
		g->force = true;
		return 1;
	case OPT_KEY_FILE:
		if (!*arg) {
			cli_usage_error(NULL, "--key-file needs a file");
			return -1;
		}
		g->key_file = arg;
		return 1;
	case 'v':
		g->verbose++;
		return 1;
	default:
		return 0;
	}
}

void cli_merge_longopts(const struct option *own, int n, struct option *out)
{
	size_t i;

	memcpy(out, own, (size_t)n * sizeof(*own));
	for (i = 0; cli_global_longopts[i].name; i++)
		out[n + i] = cli_global_longopts[i];
	memset(&out[n + i], 0, sizeof(*out));
}

static void usage(FILE *f)
{
	size_t i;

	fputs("Usage: bri-backup [OPTIONS] COMMAND [ARGS]\n"
	      "Backups of a live SQLite database: create, list, verify, restore, clean up.\n"
	      "\n"
	      "Commands:\n",
	      f);
	for (i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %s%s%s\n      %s\n", commands[i].name, *commands[i].args ? " " : "",
		        commands[i].args, commands[i].what);
	fprintf(f,
	        "\n"
	        "Options (before or after the command):\n"
	        "  --db PATH             the live database (default $BRI_DB, else %s)\n"
	        "  --backup-dir DIR      the store (default $BRI_BACKUP_DIR, else the folder\n"
	        "                        'backups' beside the database)\n"
	        "  --retention-days N    cleanup removes backups older than N days (default %d)\n"
	        "  --keep-min N          cleanup keeps the newest N good backups (default %d)\n"
	        "  --keep-hourly N, --keep-daily N, --keep-weekly N, --keep-monthly N,\n"
	        "  --keep-yearly N       calendar tiers: keep the newest backup of each of the\n"
	        "                        last N hours/days/ISO weeks/months/years (local time)\n"
	        "  --keep-within D       keep all backups within D (7d, 36h, 1y6m) of the newest;\n"
	        "                        with tiers, --retention-days applies only if given\n"
	        "  --on-success PROGRAM  run PROGRAM (absolute path, no shell) after a create,\n"
	        "  --on-failure PROGRAM  verify, restore or cleanup that succeeded / failed,\n"
	        "                        with BRI_OPERATION, BRI_NAME, BRI_RESULT, BRI_REASON\n"
	        "  --hook-timeout S      kill a hook's process group after S seconds (30)\n"
	        "  --json                machine-readable output of list, verify, stats, health\n"
	        "  --follow-symlink      accept a --db or --backup-dir path that is a symbolic\n"
	        "                        link, and use what it points to (refused by default)\n"
	        "  --force               accept a --backup-dir that is the database's own folder\n"
	        "                        (refused by default: other .db files there would be\n"
	        "                        taken for backups)\n"
	        "  --key-file F          the key of an encrypted page store: 32 random bytes or\n"
	        "                        a passphrase (default $BRI_KEY_FILE); with init\n"
	        "                        --format pages it makes the store encrypted\n"
	        "  -v, --verbose         log what happens on stderr (twice: debug)\n"
	        "  -h, --help            show this help (after a command: that command's help)\n"
	        "  -V, --version         show the version\n"
	        "\n"
	        "Environment: BRI_DB, BRI_BACKUP_DIR and BRI_KEY_FILE (the defaults above), and\n"
	        "BRI_BUSY_TIMEOUT_MS: how long to wait for a locked database or for the\n"
	        "store's lock held by another process (milliseconds, default 30000).\n"
	        "\n"
	        "Exit status: 0 success, 1 the operation failed, 2 bad usage.\n"
	        "See bri-backup(1).\n",
	        DEFAULT_DB, BRI_DEFAULT_RETENTION_DAYS, BRI_DEFAULT_KEEP_MIN);
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

int main(int argc, char **argv)
{
	static const struct option own[] = {
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	};
	struct option longopts[32];
	struct cli_globals g = {
	    .db = DEFAULT_DB,
	    .retention_days = BRI_DEFAULT_RETENTION_DAYS,
	    .keep_min = BRI_DEFAULT_KEEP_MIN,
	};
	const char *env;
	const char *command;
	size_t i;
	int opt, rc;

	env = getenv("BRI_DB");
	if (env && *env)
		g.db = env;
	env = getenv("BRI_BACKUP_DIR");
	if (env && *env)
		g.backup_dir = env;

	cli_merge_longopts(own, (int)(sizeof(own) / sizeof(own[0])), longopts);
	opterr = 0;
	/* "+": stop at the command; its arguments are its own. */
	for (;;) {
		opt = getopt_long(argc, argv, "+:hVv", longopts, NULL);
		if (opt == -1)
			break;
		switch (opt) {
		case 'h':
			usage(stdout);
			return CLI_EXIT_OK;
		case 'V':
			printf("bri-backup %s\n", BRI_VERSION);
			return CLI_EXIT_OK;
		case '?':
		case ':':
			return cli_bad_option(NULL, opt, argv);
		default:
			rc = cli_global_option(&g, opt, optarg);
			if (rc < 0)
				return CLI_EXIT_USAGE;
			if (rc == 0)
				return cli_usage_error(NULL, "unexpected option");
		}
	}
	if (optind >= argc)
		return cli_usage_error(NULL, "no command given");
	command = argv[optind];
	if (!strcmp(command, "help")) {
		/* "bri-backup help [COMMAND]" is "bri-backup [COMMAND] --help". */
		if (optind + 1 >= argc) {
			usage(stdout);
			return CLI_EXIT_OK;
		}
		command = argv[optind + 1];
		for (i = 0; i < NCOMMANDS; i++) {
			if (!strcmp(command, commands[i].name)) {
				char *help_argv[] = {argv[optind + 1], "--help", NULL};

				optind = 0;
				return commands[i].fn(&g, 2, help_argv);
			}
		}
		return cli_usage_error(NULL, "unknown command '%s'", command);
	}
	for (i = 0; i < NCOMMANDS; i++) {
		if (!strcmp(command, commands[i].name))
			break;
	}
	if (i == NCOMMANDS)
		return cli_usage_error(NULL, "unknown command '%s'", command);

	/* One descriptor per backup being checked or copied: use all we may. */
	bri_raise_nofile_limit();
	argc -= optind;
	argv += optind;
	/* optind 0 makes GNU getopt start afresh on the command's arguments. */
	optind = 0;
	rc = commands[i].fn(&g, argc, argv);
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
