/*
 * The commands of bri-backup (SPEC.md section 3): each parses its own
 * options, calls the core library, prints for a person (or JSON with
 * --json) and returns the exit status: 0 done, 1 the operation failed (a
 * message on stderr says why and what to do), 2 bad usage. All backup logic
 * lives in the core; this file only translates between the command line and
 * it. json-c is used here only to print list, verify, cleanup and create
 * results.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bri/catalog.h"
#include "bri/cleanup.h"
#include "bri/create.h"
#include "bri/meta.h"
#include "bri/metrics.h"
#include "bri/pin.h"
#include "bri/rehearse.h"
#include "bri/report.h"
#include "bri/restore.h"
#include "bri/retention.h"
#include "bri/schedule.h"
#include "bri/store.h"
#include "bri/target.h"
#include "bri/testpoint.h"
#include "bri/verify.h"
#include "cli.h"

/* getopt_long's "stop": help was shown or a usage error printed. */
#define OPT_STOP (-2)

/* Option values of the commands' long options without a short form. */
enum {
	OPT_VERIFY = 0x200,
	OPT_CLEANUP,
	OPT_NO_VERIFY,
	OPT_DRY_RUN,
	OPT_MAX_AGE,
	OPT_MIN_BACKUPS,
	OPT_OUTPUT,
	OPT_FORMAT,
	OPT_REASON,
	OPT_WARN_AGE,
	OPT_CRIT_AGE,
	OPT_WARN_COUNT,
	OPT_CRIT_COUNT,
	OPT_NAGIOS,
	OPT_CHECKS,
	OPT_SCRATCH,
};

static const char help_create[] =
    "Usage: bri-backup [OPTIONS] create [--name NAME] [--verify] [--cleanup]\n"
    "Takes an online backup of the live database and prints its path.\n"
    "\n"
    "  -n, --name NAME  the backup's name: [A-Za-z0-9][A-Za-z0-9._-]*, at most 128\n"
    "                   bytes, not ctl, restore or latest, not taken (default:\n"
    "                   <stem>_backup_YYYYMMDD_HHMMSS)\n"
    "      --verify     verify the new backup; exit 1 if that fails\n"
    "      --cleanup    then remove expired backups (--retention-days, --keep-min)\n"
    "  -h, --help       show this help\n";

static const char help_init[] =
    "Usage: bri-backup [OPTIONS] init [--format plain|pages]\n"
    "Makes the backup store (if missing) of the given format and records it in\n"
    "store.json. plain (the default): one complete .db per backup. pages: each\n"
    "distinct page kept once, compressed, in shared pack files. A store that is\n"
    "already of that format is left as it is; one of another format, or a plain\n"
    "store that holds backups, is refused (converting is migrate's).\n"
    "\n"
    "      --format F  plain or pages (default: plain)\n"
    "  -h, --help      show this help\n";

static const char help_list[] = "Usage: bri-backup [OPTIONS] list\n"
                                "Lists the backups, newest first: name, created, size, kind and\n"
                                "last verification, then the .db files that are not backups (no\n"
                                "usable .meta) as unknown. With --json: an array of objects.\n";

static const char help_verify[] =
    "Usage: bri-backup [OPTIONS] verify [NAME|PATH ...]\n"
    "Verifies backups: SHA-256 against the metadata, PRAGMA integrity_check and\n"
    "row counts. None given: every backup of the store. A PATH (containing '/',\n"
    "or an existing file ending in .db) is checked against PATH.meta without\n"
    "recording the result. Exit 1 if any verification failed.\n";

static const char help_restore[] =
    "Usage: bri-backup [OPTIONS] restore [NAME|PATH] [--no-verify]\n"
    "Restores a backup (none given: the newest) into the live database: verify,\n"
    "safety backup of the live data (pre_restore_safety_*), copy through SQLite,\n"
    "quick_check. A failed verification aborts and changes nothing.\n"
    "\n"
    "      --no-verify  restore without verifying first (faster, risky)\n"
    "  -h, --help       show this help\n";

static const char help_cleanup[] =
    "Usage: bri-backup [OPTIONS] cleanup [--dry-run]\n"
    "Removes backups older than --retention-days (default 30), never a safety\n"
    "backup, never the newest --keep-min (default 7) good ones (last verification\n"
    "not failed), never the newest good one, never a .db that is not a backup,\n"
    "never a pinned one. With --keep-daily and the other calendar tiers (see\n"
    "bri-backup --help), a backup no rule keeps goes. Prints what it removed.\n"
    "\n"
    "  -n, --dry-run    print every backup, kept or would go, and the rule that\n"
    "                   decided (daily 2026-11-29, weekly 2026-W48, keep_min, ...)\n"
    "  -h, --help       show this help\n";

static const char help_delete[] =
    "Usage: bri-backup [OPTIONS] delete NAME\n"
    "Removes the backup NAME (safety backups too; NAME.db is read as\n"
    "NAME when there is no backup called NAME.db).\n";

static const char help_pin[] =
    "Usage: bri-backup [OPTIONS] pin NAME [--reason TEXT]\n"
    "Pins the backup NAME: no cleanup removes it and delete refuses it until it\n"
    "is unpinned. The pin is its own file, NAME.db.pin (time, reason, who); the\n"
    "backup's .meta is not changed. Pinning again replaces the reason.\n"
    "\n"
    "  -r, --reason TEXT  why (one line, at most 1024 bytes), shown by list\n"
    "  -h, --help         show this help\n";

static const char help_unpin[] = "Usage: bri-backup [OPTIONS] unpin NAME\n"
                                 "Removes the pin of backup NAME (exit 1 if not pinned).\n";

static const char help_rehearse[] =
    "Usage: bri-backup [OPTIONS] rehearse [NAME|latest] [--checks FILE] [--scratch DIR]\n"
    "Proves that a backup (none given: the newest) restores: verify, the restore's\n"
    "copy through SQLite into a scratch database in a new folder under DIR ($TMPDIR\n"
    "or /tmp; never the store, never the live database), quick_check, then your\n"
    "checks against that copy, then the copy is removed. Prints how long each step\n"
    "took and each check's result; exit 1 if anything failed.\n"
    "\n"
    "      --checks FILE  SQL statements, each optionally followed on its line by\n"
    "                     \"-- expect VALUE\" (first column of the first row), e.g.\n"
    "                     SELECT count(*) > 0 FROM videos; -- expect 1\n"
    "      --scratch DIR  where the scratch folder is made\n"
    "  -h, --help         show this help\n";

static const char help_stats[] = "Usage: bri-backup [OPTIONS] stats\n"
                                 "Shows the store's statistics (JSON with --json).\n";

static const char help_health[] =
    "Usage: bri-backup [OPTIONS] health [--max-age-hours H] [--min-backups N]\n"
    "Prints ok, or one line per problem, and exits 1 on any: first \"critical:\"\n"
    "when no good backup exists (none, or every one failed verification), then\n"
    "\"warning:\" lines: the newest backup older than H hours (default 24), fewer\n"
    "than N backups (default 7), .db files that are not backups, or a failed\n"
    "verification.\n"
    "\n"
    "      --max-age-hours H  age limit of the newest backup\n"
    "      --min-backups N    least number of backups\n"
    "      --warn-age D       as --max-age-hours, as a duration: 26h, 90m, 2d\n"
    "      --crit-age D       critical when the newest backup is older than D\n"
    "      --warn-count N     as --min-backups\n"
    "      --crit-count N     critical when fewer than N backups exist\n"
    "      --nagios           one line in the Nagios plugin format; exit 0 ok,\n"
    "                         1 warning, 2 critical, 3 unknown (store unreadable,\n"
    "                         bad arguments)\n"
    "  -h, --help             show this help\n";

static const char help_metrics[] =
    "Usage: bri-backup [OPTIONS] metrics [--output FILE]\n"
    "Prints the store's metrics in the Prometheus text format: backups by kind,\n"
    "bytes, the newest backup's time and age, verification results, health, and\n"
    "the time, result and duration of the last create, verify, restore and\n"
    "cleanup. With --output, writes FILE atomically (mode 0644) instead, for\n"
    "node_exporter's textfile collector (FILE should end in .prom); a FILE that\n"
    "is a symbolic link is refused.\n"
    "\n"
    "  -o, --output FILE  write FILE instead of standard output\n"
    "  -h, --help         show this help\n";

/*
 * The next option of a command: handles -h/--help (help on stdout), the
 * global options and usage errors itself. Returns the option, -1 at the end,
 * or OPT_STOP with *rc set to the exit status.
 */
static int next_option(struct cli_globals *g, int argc, char **argv, const char *shortopts,
                       const struct option *longopts, const char *help, int *rc)
{
	int opt, r;

	for (;;) {
		opt = getopt_long(argc, argv, shortopts, longopts, NULL);
		switch (opt) {
		case 'h':
			fputs(help, stdout);
			fputs("\nGlobal options (--db, --backup-dir, --json, ...): bri-backup "
			      "--help\n",
			      stdout);
			*rc = CLI_EXIT_OK;
			return OPT_STOP;
		case '?':
		case ':':
			*rc = cli_bad_option(argv[0], opt, argv);
			return OPT_STOP;
		case -1:
			return -1;
		default:
			r = cli_global_option(g, opt, optarg);
			if (r < 0) {
				*rc = CLI_EXIT_USAGE;
				return OPT_STOP;
			}
			if (r == 0)
				return opt;
		}
	}
}

/* Parses a command without options of its own; returns -1 to go on, else the exit status. */
static int parse_plain(struct cli_globals *g, int argc, char **argv, const char *help)
{
	static const struct option own[] = {{"help", no_argument, NULL, 'h'}};
	struct option longopts[32];
	int opt, rc = CLI_EXIT_OK;

	cli_merge_longopts(own, 1, longopts);
	opt = next_option(g, argc, argv, ":hv", longopts, help, &rc);
	if (opt == OPT_STOP)
		return rc;
	if (opt != -1)
		return cli_usage_error(argv[0], "unexpected option");
	return -1;
}

/* A hint for the error code of a failed operation, or "". */
static const char *hint_for(int code)
{
	switch (code) {
	case -EBUSY:
		return "the live database is locked by a writer; stop the writers and retry";
	case -ENOSPC:
		return "the disk is full; free space (e.g. bri-backup cleanup) and retry";
	case -EACCES:
	case -EPERM:
		return "check the permissions of the database and of the backup folder";
	case -EROFS:
		return "the file system is read-only";
	default:
		return "";
	}
}

/* The operation of this command runs now, about backup name (may be NULL). */
static void hook_note(struct cli_globals *g, const char *name)
{
	g->hook_ran = true;
	snprintf(g->hook_name, sizeof(g->hook_name), "%s", name ? name : "");
}

/* Prints "bri-backup: <what>: <err>" and a hint; returns CLI_EXIT_FAIL. */
static int fail(const char *what, const struct bri_err *err, int code)
{
	const char *msg = err && err->msg[0] ? err->msg : strerror(-code);
	const char *hint = hint_for(code);

	cli_progress_done();
	if (*hint && !strstr(msg, hint))
		cli_error("%s: %s (%s)", what, msg, hint);
	else
		cli_error("%s: %s", what, msg);
	return CLI_EXIT_FAIL;
}

/* Checks a backup name given by the user; returns 0 or CLI_EXIT_USAGE (message printed). */
/*
 * A refused name as it may be shown on a terminal: control characters as
 * '?', cut after 64 bytes (a name can be an attacker's escape sequence).
 */
static void printable_name(const char *name, char out[72])
{
	size_t i;

	for (i = 0; i < 64 && name[i]; i++)
		out[i] = ((unsigned char)name[i] < 0x20 || name[i] == 0x7f) ? '?' : name[i];
	strcpy(out + i, name[i] ? "..." : "");
}

static int check_name(const char *command, const char *name)
{
	struct bri_err err = {0};
	char shown[72];

	if (bri_store_check_name(name, strlen(name), &err) == 0)
		return 0;
	printable_name(name, shown);
	return cli_usage_error(command, "invalid backup name '%s': %s", shown,
	                       err.msg[0] ? err.msg
	                                  : "names are [A-Za-z0-9][A-Za-z0-9._-]*, at most "
	                                    "128 bytes, not ctl, restore or latest");
}

/*
 * Opens the store of g. With create false a missing store is not an error:
 * *out is then NULL and 0 is returned. Else returns 0 or CLI_EXIT_FAIL
 * (message printed).
 */
static int open_store(const struct cli_globals *g, bool create, struct bri_store **out)
{
	struct bri_store_open_opts o = {
	    .create = create,
	    .follow_symlink = g->follow_symlink,
	    .force = g->force,
	    .key_file = g->key_file,
	};
	struct bri_err err = {0};
	int r;

	*out = NULL;
	r = bri_store_open_ex(g->db, g->backup_dir, &o, out, &err);
	if (r == -ENOENT && !create) {
		*out = NULL;
		return 0;
	}
	if (r < 0)
		return fail(r == -ELOOP ? "refused" : "cannot open the backup store", &err, r);
	return 0;
}

static void close_store(struct bri_store *s)
{
	if (s)
		bri_store_close(s);
}

/* An empty catalog, for a store that does not exist yet. */
static struct bri_catalog empty_catalog;

/* The catalog of s (the empty one when s is NULL); free with put_catalog. */
static int get_catalog(const struct bri_store *s, struct bri_catalog **out)
{
	struct bri_err err = {0};
	int r;

	if (!s) {
		*out = &empty_catalog;
		return 0;
	}
	r = bri_catalog_scan(s, NULL, out, &err);
	if (r < 0)
		return fail("cannot read the backup store", &err, r);
	return 0;
}

static void put_catalog(struct bri_catalog *c)
{
	if (c && c != &empty_catalog)
		bri_catalog_free(c);
}

/*
 * For the commands that read the store: refuses extra arguments, sets up
 * logging, opens the store and its catalog (both NULL-safe to put back).
 * Returns 0, CLI_EXIT_USAGE or CLI_EXIT_FAIL (message printed).
 */
static int open_catalog(struct cli_globals *g, int argc, char **argv, struct bri_store **s,
                        struct bri_catalog **c)
{
	int rc;

	*s = NULL;
	*c = NULL;
	if (optind < argc) {
		cli_usage_error(argv[0], "unexpected argument '%s'", argv[optind]);
		return CLI_EXIT_USAGE;
	}
	cli_setup_logging(g);
	rc = open_store(g, false, s);
	if (rc)
		return rc;
	rc = get_catalog(*s, c);
	if (rc)
		close_store(*s);
	return rc;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
}

/*
 * What the user means by arg of verify or restore, decided by the core
 * (bri_target_resolve: a name, "latest", "NAME.db", a path into the store,
 * a .db anywhere with its .db.meta, a copy of the mount's NAME/bri.db with
 * meta.json). Fills *t; returns 0, CLI_EXIT_FAIL or CLI_EXIT_USAGE (an
 * invalid name; message printed).
 */
static int resolve_target(const struct bri_store *s, const char *command, const char *arg,
                          struct bri_target *t)
{
	struct bri_err err = {0};
	int r;

	r = bri_target_resolve(s, NULL, arg, 0, t, &err);
	if (r == 0)
		return 0;
	if (r == -EINVAL || r == -ENAMETOOLONG) {
		if (!strchr(arg, '/') && check_name(command, arg))
			return CLI_EXIT_USAGE;
	}
	/* A name that is no backup is a failed verification / restore, as before. */
	if (r == -ENOENT && !strchr(arg, '/') && strcmp(arg, BRI_TARGET_LATEST) &&
	    bri_store_check_name(arg, strlen(arg), NULL) == 0) {
		memset(t, 0, sizeof(*t));
		t->kind = BRI_TARGET_BACKUP;
		snprintf(t->name, sizeof(t->name), "%s", arg);
		return 0;
	}
	cli_error("%s: %s", command, err.msg[0] ? err.msg : strerror(-r));
	return CLI_EXIT_FAIL;
}

/* Rounds to two decimals, as the seed's size_mb. */
static double mb2(int64_t bytes)
{
	return round((double)bytes / (1024.0 * 1024.0) * 100.0) / 100.0;
}

static json_object *json_str(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

/* Prints a JSON value (pretty) and a newline on stdout, then frees it. */
static void print_json(json_object *o)
{
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
	                                           JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

/*
 * A verification result as JSON: the core's one rendering
 * (bri_verify_result_to_json), the same object Python and the store see.
 * NULL when out of memory.
 */
static json_object *verify_json(const char *name, const char *path,
                                const struct bri_verify_result *r)
{
	json_object *o = NULL;
	char *text = NULL;
	size_t len = 0;

	if (bri_verify_result_to_json(name, path, r, &text, &len) == 0)
		o = json_tokener_parse(text);
	free(text);
	return o;
}

/* ---- create ---- */

/* Runs a cleanup and prints what it removed; out gets its JSON when not NULL. */
static int run_cleanup(struct bri_store *s, const struct cli_globals *g, bool dry_run, FILE *f,
                       json_object **out);

int cli_cmd_create(struct cli_globals *g, int argc, char **argv)
{
	static const struct option own[] = {
	    {"name", required_argument, NULL, 'n'},
	    {"verify", no_argument, NULL, OPT_VERIFY},
	    {"cleanup", no_argument, NULL, OPT_CLEANUP},
	    {"help", no_argument, NULL, 'h'},
	};
	struct option longopts[32];
	struct bri_create_opts opts = {0};
	struct stat st;
	struct bri_verify_result vres = {0};
	struct bri_op_ctx ctx;
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	json_object *out = NULL, *cleaned = NULL;
	const char *name = NULL;
	char *new_name = NULL, *path = NULL;
	bool verify = false, cleanup = false;
	int opt, r, rc = CLI_EXIT_OK;

	cli_merge_longopts(own, 4, longopts);
	for (;;) {
		opt = next_option(g, argc, argv, ":hvn:", longopts, help_create, &rc);
		if (opt == -1)
			break;
		switch (opt) {
		case OPT_STOP:
			return rc;
		case 'n':
			name = optarg;
			break;
		case OPT_VERIFY:
			verify = true;
			break;
		case OPT_CLEANUP:
			cleanup = true;
			break;
		default:
			return cli_usage_error(argv[0], "unexpected option");
		}
	}
	if (optind < argc)
		return cli_usage_error(argv[0], "unexpected argument '%s' (names go after --name)",
		                       argv[optind]);
	/* A refused name is refused before anything is opened or written. */
	if (name && check_name(argv[0], name))
		return CLI_EXIT_USAGE;
	cli_setup_logging(g);
	hook_note(g, name); /* from here on a failure is the create's */
	/* stat only: the live database is never opened outside SQLite. */
	if (stat(g->db, &st) < 0) {
		cli_error("create: database not found: %s (%s); check --db or $BRI_DB", g->db,
		          strerror(errno));
		return CLI_EXIT_FAIL;
	}
	if (!S_ISREG(st.st_mode)) {
		cli_error("create: %s is not a database file; check --db or $BRI_DB", g->db);
		return CLI_EXIT_FAIL;
	}
	rc = open_store(g, true, &s);
	if (rc)
		return rc;

	opts.name = name;
	opts.kind = name ? BRI_KIND_NAMED : BRI_KIND_AUTO;
	opts.now = bri_testpoint_now();
	ctx = cli_progress_ctx(name ? name : "create");
	r = bri_create(s, &opts, &ctx, &new_name, &err);
	cli_progress_done();
	if (r == 0)
		hook_note(g, new_name);
	if (r < 0) {
		rc = fail("create", &err, r);
		goto out_close_store;
	}
	path = bri_store_backup_path(s, new_name);
	if (!path) {
		cli_error("out of memory");
		rc = CLI_EXIT_FAIL;
		goto out_free_name;
	}
	if (g->json) {
		out = json_object_new_object();
		json_object_object_add(out, "name", json_str(new_name));
		json_object_object_add(out, "path", json_str(path));
	} else {
		puts(path);
		fflush(stdout);
	}

	if (verify) {
		ctx = cli_progress_ctx(new_name);
		r = bri_verify_backup(s, new_name, &ctx, &vres, &err);
		cli_progress_done();
		if (r < 0) {
			rc = fail("verify", &err, r);
		} else if (vres.status != BRI_VERIFY_OK) {
			cli_error("verification of %s failed: %s", new_name, vres.reason);
			fprintf(stderr,
			        "The backup is kept; do not rely on it. Retry the backup.\n");
			rc = CLI_EXIT_FAIL;
		} else if (!g->json) {
			fprintf(stderr, "verified %s: ok\n", new_name);
		}
		if (out && r >= 0)
			json_object_object_add(out, "verify", verify_json(new_name, path, &vres));
	}
	if (cleanup) {
		r = run_cleanup(s, g, false, stderr, out ? &cleaned : NULL);
		if (r)
			rc = r;
		if (out && cleaned)
			json_object_object_add(out, "cleanup", cleaned);
	}
	if (out)
		print_json(out);
	free(path);
out_free_name:
	free(new_name);
out_close_store:
	close_store(s);
	return rc;
}

/* ---- list ---- */

/* The backup's time as the seed writes it: the meta's backup_time, else the entry's time. */
static void entry_created(const struct bri_entry *e, char *buf, size_t len)
{
	if (e->meta_ok && e->meta.backup_time[0])
		snprintf(buf, len, "%s", e->meta.backup_time);
	else
		bri_time_local(e->time, buf, len);
}

int cli_cmd_list(struct cli_globals *g, int argc, char **argv)
{
	struct bri_store *s = NULL;
	struct bri_catalog *c = NULL;
	size_t i, width = 4;
	int rc;

	rc = parse_plain(g, argc, argv, help_list);
	if (rc >= 0)
		return rc;
	rc = open_catalog(g, argc, argv, &s, &c);
	if (rc)
		return rc;

	/* The backups newest first, then the .db files that are not backups. */
	if (g->json) {
		/* The core's rendering, the same as Python's list_backups(). */
		char *text = NULL;
		size_t len = 0;

		if (bri_list_to_json(s, c, &text, &len) < 0) {
			cli_error("out of memory");
			rc = CLI_EXIT_FAIL;
		} else {
			fputs(text, stdout);
		}
		free(text);
		goto out_put_catalog;
	}
	if (c->n == 0 && c->nunknown == 0) {
		printf("No backups in %s.\n", s ? s->dir : "the store (it does not exist yet)");
		goto out_put_catalog;
	}
	for (i = 0; i < c->n + c->nunknown; i++) {
		size_t len = strlen(i < c->n ? c->entries[i]->name : c->unknown[i - c->n]->name);

		if (len > width)
			width = len;
	}
	printf("%-*s  %-19s  %10s  %-7s  %s\n", (int)width, "NAME", "CREATED", "SIZE MB", "KIND",
	       "VERIFIED");
	for (i = 0; i < c->n + c->nunknown; i++) {
		const struct bri_entry *e = i < c->n ? c->entries[i] : c->unknown[i - c->n];
		char created[40];

		struct bri_pin pin;
		char pinned[BRI_PIN_REASON_MAX + 32] = "";

		entry_created(e, created, sizeof(created));
		if (e->pinned && bri_pin_read(s, e->name, &pin) == 0 && pin.reason[0])
			snprintf(pinned, sizeof(pinned), "  [pinned: %s]", pin.reason);
		else if (e->pinned)
			snprintf(pinned, sizeof(pinned), "  [pinned]");
		printf("%-*s  %-19s  %10.2f  %-7s  %s%s%s%s\n", (int)width, e->name, created,
		       mb2((int64_t)e->db_st.st_size), bri_kind_name(e->kind),
		       bri_verify_status_name(e->verify.status),
		       e->verify.status == BRI_VERIFY_FAILED ? ": " : "",
		       e->verify.status == BRI_VERIFY_FAILED ? e->verify.reason : "", pinned);
	}
	if (c->nunknown)
		printf("%zu .db file%s marked unknown %s not a backup: never verified as good, "
		       "never removed by cleanup.\n",
		       c->nunknown, c->nunknown == 1 ? "" : "s", c->nunknown == 1 ? "is" : "are");
out_put_catalog:
	put_catalog(c);
	close_store(s);
	return rc;
}

/* ---- verify ---- */

int cli_cmd_verify(struct cli_globals *g, int argc, char **argv)
{
	struct bri_store *s = NULL;
	struct bri_catalog *c = NULL;
	json_object *arr = NULL;
	char **names = NULL, **paths = NULL, **metas = NULL;
	size_t n = 0, i, failed = 0, skipped = 0;
	int rc, r;

	rc = parse_plain(g, argc, argv, help_verify);
	if (rc >= 0)
		return rc;
	cli_setup_logging(g);
	rc = open_store(g, false, &s);
	if (rc)
		return rc;

	/* Resolve every argument first: a bad one verifies nothing. */
	if (optind < argc) {
		n = (size_t)(argc - optind);
		names = calloc(n, sizeof(*names));
		paths = calloc(n, sizeof(*paths));
		metas = calloc(n, sizeof(*metas));
		if (!names || !paths || !metas) {
			cli_error("out of memory");
			rc = CLI_EXIT_FAIL;
			goto out_free_targets;
		}
		for (i = 0; i < n; i++) {
			struct bri_target t;

			rc = resolve_target(s, argv[0], argv[optind + (int)i], &t);
			if (rc)
				goto out_free_targets;
			/* A backup by name, or a file (with the metadata beside it). */
			if (t.kind == BRI_TARGET_FILE) {
				paths[i] = t.path;
				metas[i] = t.meta_path;
			} else {
				names[i] = strdup(t.name);
				if (!names[i]) {
					cli_error("out of memory");
					rc = CLI_EXIT_FAIL;
					goto out_free_targets;
				}
			}
		}
	} else {
		rc = get_catalog(s, &c);
		if (rc)
			goto out_free_targets;
		/* The backups, then the unknown .db files: reported failed, never opened. */
		n = c->n + c->nunknown;
		names = calloc(n ? n : 1, sizeof(*names));
		paths = calloc(n ? n : 1, sizeof(*paths));
		metas = calloc(n ? n : 1, sizeof(*metas));
		if (!names || !paths || !metas) {
			cli_error("out of memory");
			rc = CLI_EXIT_FAIL;
			goto out_free_targets;
		}
		for (i = 0; i < n; i++) {
			names[i] =
			    strdup(i < c->n ? c->entries[i]->name : c->unknown[i - c->n]->name);
			if (!names[i]) {
				cli_error("out of memory");
				rc = CLI_EXIT_FAIL;
				goto out_free_targets;
			}
		}
		if (n == 0 && !g->json)
			printf("No backups to verify.\n");
		bri_testpoint("verify_all_listed");
	}

	if (g->json)
		arr = json_object_new_array();
	hook_note(g, n == 1 && names[0] ? names[0] : NULL);
	for (i = 0; i < n; i++) {
		struct bri_verify_result res = {0};
		struct bri_err err = {0};
		/* A path is shown as the user wrote it. */
		const char *label = paths[i] ? argv[optind + (int)i] : names[i];
		char *where = NULL;

		if (paths[i]) {
			struct bri_target t = {
			    .kind = BRI_TARGET_FILE, .path = paths[i], .meta_path = metas[i]};
			const char *base = strrchr(paths[i], '/');
			struct bri_op_ctx ctx = cli_progress_ctx(base ? base + 1 : paths[i]);

			r = bri_target_verify(s, &t, &ctx, &res, &err);
			cli_progress_done();
		} else if (!s) {
			r = -ENOENT;
			snprintf(err.msg, sizeof(err.msg), "no backup named %s (the store %s)",
			         names[i], "does not exist");
		} else {
			struct bri_op_ctx ctx = cli_progress_ctx(names[i]);

			r = bri_verify_backup(s, names[i], &ctx, &res, &err);
			cli_progress_done();
			if (r == -ENOENT && !err.msg[0])
				snprintf(err.msg, sizeof(err.msg), "no backup named %s", names[i]);
		}
		/*
		 * Verifying all: a backup removed (a cleanup, a delete) or replaced
		 * since the listing is no failure; it is skipped with a note.
		 */
		if (c && (r == -ENOENT || r == -ESTALE)) {
			skipped++;
			if (!g->json)
				printf("%s: skipped: %s\n", label,
				       r == -ENOENT ? "removed since the listing"
				                    : "replaced while it was verified");
			if (arr) {
				json_object *o = json_object_new_object();

				json_object_object_add(o, "name", json_str(names[i]));
				json_object_object_add(o, "status", json_str("skipped"));
				json_object_object_add(o, "reason", json_str(err.msg));
				json_object_array_add(arr, o);
			}
			continue;
		}
		if (r < 0) {
			failed++;
			fail(label, &err, r);
			if (arr) {
				json_object *o = json_object_new_object();

				json_object_object_add(o, "name", json_str(names[i]));
				json_object_object_add(o, "path", json_str(paths[i]));
				json_object_object_add(o, "status", json_str("error"));
				json_object_object_add(
				    o, "reason", json_str(err.msg[0] ? err.msg : strerror(-r)));
				json_object_array_add(arr, o);
			}
			continue;
		}
		if (res.status != BRI_VERIFY_OK && !failed++)
			snprintf(g->hook_reason, sizeof(g->hook_reason), "%s: %s: %s", label,
			         bri_verify_status_name(res.status), res.reason);
		if (arr) {
			where = paths[i] ? strdup(paths[i]) : bri_store_backup_path(s, names[i]);
			json_object_array_add(arr, verify_json(names[i], where, &res));
			free(where);
		} else if (res.status == BRI_VERIFY_OK) {
			printf("%s: ok (%s, %.1f s)\n", label, res.check[0] ? res.check : "checked",
			       res.duration_s);
		} else {
			printf("%s: %s: %s\n", label, bri_verify_status_name(res.status),
			       res.reason);
		}
		fflush(stdout);
	}
	if (arr)
		print_json(arr);
	else if (n > 1 && skipped)
		printf("%zu verified: %zu ok, %zu failed, %zu skipped (gone)\n", n - skipped,
		       n - skipped - failed, failed, skipped);
	else if (n > 1)
		printf("%zu verified: %zu ok, %zu failed\n", n, n - failed, failed);
	rc = failed ? CLI_EXIT_FAIL : CLI_EXIT_OK;
out_free_targets:
	for (i = 0; names && paths && metas && i < n; i++) {
		free(names[i]);
		free(paths[i]);
		free(metas[i]);
	}
	free(names);
	free(paths);
	free(metas);
	put_catalog(c);
	close_store(s);
	return rc;
}

/* ---- restore ---- */

/*
 * The name of the backup a restore without argument takes (the newest that
 * is not a safety backup, as the core chooses), so that the output names it.
 * Returns 0 and *out (malloc'd), or CLI_EXIT_FAIL (message printed).
 */
static int newest_name(const struct bri_store *s, char **out)
{
	struct bri_catalog *c = NULL;
	struct bri_entry *e;
	int rc;

	rc = get_catalog(s, &c);
	if (rc)
		return rc;
	e = bri_catalog_newest(c);
	if (!e) {
		cli_error("restore: there are no backups in %s to restore", s->dir);
		put_catalog(c);
		return CLI_EXIT_FAIL;
	}
	*out = strdup(e->name);
	put_catalog(c);
	if (!*out) {
		cli_error("out of memory");
		return CLI_EXIT_FAIL;
	}
	return 0;
}

int cli_cmd_restore(struct cli_globals *g, int argc, char **argv)
{
	static const struct option own[] = {
	    {"no-verify", no_argument, NULL, OPT_NO_VERIFY},
	    {"help", no_argument, NULL, 'h'},
	};
	struct option longopts[32];
	struct bri_restore_opts opts = {.verify = true};
	struct bri_restore_report report;
	struct bri_op_ctx ctx;
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char *name = NULL, *path = NULL;
	const char *what = NULL;
	int opt, r, rc = CLI_EXIT_OK;

	cli_merge_longopts(own, 2, longopts);
	for (;;) {
		opt = next_option(g, argc, argv, ":hv", longopts, help_restore, &rc);
		if (opt == -1)
			break;
		switch (opt) {
		case OPT_STOP:
			return rc;
		case OPT_NO_VERIFY:
			opts.verify = false;
			break;
		default:
			return cli_usage_error(argv[0], "unexpected option");
		}
	}
	if (argc - optind > 1)
		return cli_usage_error(argv[0], "restore takes one backup, not %d", argc - optind);
	cli_setup_logging(g);
	rc = open_store(g, true, &s);
	if (rc)
		return rc;
	if (optind < argc) {
		struct bri_target t;

		rc = resolve_target(s, argv[0], argv[optind], &t);
		if (rc)
			goto out_close_store;
		if (t.kind == BRI_TARGET_FILE) {
			path = t.path;
			t.path = NULL;
		} else {
			name = strdup(t.name);
		}
		bri_target_free(&t);
		if (!name && !path) {
			cli_error("out of memory");
			rc = CLI_EXIT_FAIL;
			goto out_close_store;
		}
	} else {
		rc = newest_name(s, &name);
		if (rc)
			goto out_close_store;
	}
	what = name ? name : path;

	memset(&report, 0, sizeof(report));
	ctx = cli_progress_ctx(name ? name : "restore");
	hook_note(g, name);
	r = bri_restore(s, what, &opts, &ctx, &report, &err);
	cli_progress_done();
	if (r < 0) {
		rc = fail("restore", &err, r);
		if (report.message[0] && strcmp(report.message, err.msg) != 0)
			fprintf(stderr, "%s\n", report.message);
		if (report.safety_name[0])
			fprintf(stderr,
			        "The live data before the restore is in the safety backup %s.\n",
			        report.safety_name);
		goto out_free_target;
	}
	if (g->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "source", json_str(report.source));
		json_object_object_add(o, "database", json_str(s->db_path));
		json_object_object_add(o, "verified", json_object_new_boolean(report.verified));
		json_object_object_add(
		    o, "verify",
		    report.verified ? json_str(bri_verify_status_name(report.check.status)) : NULL);
		json_object_object_add(o, "safety_backup",
		                       report.safety_name[0] ? json_str(report.safety_name) : NULL);
		json_object_object_add(o, "result", json_str("restored"));
		json_object_object_add(o, "duration_s", json_object_new_double(report.duration_s));
		print_json(o);
	} else {
		printf("restored %s into %s\n", report.source[0] ? report.source : "the backup",
		       s->db_path);
		if (report.safety_name[0])
			printf("safety backup of the previous content: %s\n", report.safety_name);
		if (!report.verified)
			printf("the backup was not verified (--no-verify)\n");
	}
out_free_target:
	free(name);
	free(path);
out_close_store:
	close_store(s);
	return rc;
}

/* ---- cleanup ---- */

static int run_cleanup(struct bri_store *s, const struct cli_globals *g, bool dry_run, FILE *f,
                       json_object **out)
{
	struct bri_retention_rules rules = cli_rules(g);
	struct bri_cleanup_item *items = NULL;
	struct bri_op_ctx ctx = bri_op_ctx_self("cli");
	struct bri_err err = {0};
	json_object *removed = NULL, *kept = NULL;
	char described[256];
	size_t n = 0, i;
	int r;

	r = bri_cleanup(s, &rules, bri_testpoint_now(), dry_run, &ctx, &items, &n, &err);
	if (r < 0)
		return fail("cleanup", &err, r);
	if (out) {
		removed = json_object_new_array();
		kept = json_object_new_array();
	}
	for (i = 0; i < n; i++) {
		char when[40], rule[64];
		const char *why = bri_retention_reason(items[i].verdict);
		bool goes = bri_retention_removes(items[i].verdict);

		bri_time_local(items[i].time, when, sizeof(when));
		bri_retention_label(items[i].verdict, items[i].time, rule, sizeof(rule));
		if (out) {
			json_object *o = json_object_new_object();

			json_object_object_add(o, "name", json_str(items[i].name));
			json_object_object_add(o, "backup_time", json_str(when));
			json_object_object_add(o, "rule", json_str(rule));
			json_object_object_add(o, "reason", json_str(why));
			json_object_array_add(goes ? removed : kept, o);
		} else if (goes) {
			fprintf(f, "%s %s (%s, %s: %s)\n", dry_run ? "would remove" : "removed",
			        items[i].name, when, rule, why);
		} else if (dry_run) {
			fprintf(f, "keep %s (%s, %s: %s)\n", items[i].name, when, rule, why);
		}
	}
	if (out) {
		*out = json_object_new_object();
		json_object_object_add(*out, "dry_run", json_object_new_boolean(dry_run));
		json_object_object_add(*out, "removed", removed);
		json_object_object_add(*out, "kept", kept);
	} else {
		fprintf(f, "%d of %zu backups %s (%s)\n", r, n,
		        dry_run ? "would be removed" : "removed",
		        bri_retention_describe(&rules, described, sizeof(described)));
	}
	free(items);
	return CLI_EXIT_OK;
}

int cli_cmd_cleanup(struct cli_globals *g, int argc, char **argv)
{
	static const struct option own[] = {
	    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
	    {"help", no_argument, NULL, 'h'},
	};
	struct option longopts[32];
	struct bri_store *s = NULL;
	json_object *out = NULL;
	bool dry_run = false;
	int opt, rc = CLI_EXIT_OK;

	cli_merge_longopts(own, 2, longopts);
	for (;;) {
		opt = next_option(g, argc, argv, ":hvn", longopts, help_cleanup, &rc);
		if (opt == -1)
			break;
		switch (opt) {
		case OPT_STOP:
			return rc;
		case 'n':
		case OPT_DRY_RUN:
			dry_run = true;
			break;
		default:
			return cli_usage_error(argv[0], "unexpected option");
		}
	}
	if (optind < argc)
		return cli_usage_error(argv[0], "unexpected argument '%s'", argv[optind]);
	cli_setup_logging(g);
	rc = open_store(g, false, &s);
	if (rc)
		return rc;
	if (!s) {
		if (g->json) {
			out = json_object_new_object();
			json_object_object_add(out, "dry_run", json_object_new_boolean(dry_run));
			json_object_object_add(out, "removed", json_object_new_array());
			json_object_object_add(out, "kept", json_object_new_array());
			print_json(out);
		} else {
			printf("0 of 0 backups %s (no store yet)\n",
			       dry_run ? "would be removed" : "removed");
		}
		return CLI_EXIT_OK;
	}
	if (!dry_run)
		hook_note(g, NULL);
	rc = run_cleanup(s, g, dry_run, stdout, g->json ? &out : NULL);
	if (out)
		print_json(out);
	close_store(s);
	return rc;
}

/* ---- delete ---- */

int cli_cmd_init(struct cli_globals *g, int argc, char **argv)
{
	static const struct option own[] = {
	    {"format", required_argument, NULL, OPT_FORMAT},
	    {"help", no_argument, NULL, 'h'},
	};
	struct option longopts[32];
	struct bri_store *s = NULL;
	struct bri_err err = {0};
	const char *format = "plain";
	int opt, r, lockfd, rc = CLI_EXIT_OK;

	cli_merge_longopts(own, 2, longopts);
	for (;;) {
		opt = next_option(g, argc, argv, ":hv", longopts, help_init, &rc);
		if (opt == -1)
			break;
		if (opt == OPT_STOP)
			return rc;
		if (opt != OPT_FORMAT)
			return cli_usage_error(argv[0], "unexpected option");
		format = optarg;
	}
	if (optind != argc)
		return cli_usage_error(argv[0], "init takes no arguments");
	if (!bri_store_format(format))
		return cli_usage_error(argv[0], "--format is plain or pages");
	cli_setup_logging(g);
	rc = open_store(g, true, &s);
	if (rc)
		return rc;
	lockfd = bri_store_lock(s, &err);
	if (lockfd < 0) {
		rc = fail("init", &err, lockfd);
		goto out_close_store;
	}
	r = bri_store_init_format(s, format, &err);
	bri_store_unlock(lockfd);
	if (r < 0) {
		rc = fail("init", &err, r);
		goto out_close_store;
	}
	printf("%s: a %s store%s\n", s->dir, s->ops->format, s->seal ? " (encrypted)" : "");
out_close_store:
	close_store(s);
	return rc;
}

int cli_cmd_delete(struct cli_globals *g, int argc, char **argv)
{
	struct bri_store *s = NULL;
	struct bri_err err = {0};
	struct bri_op_ctx ctx = bri_op_ctx_self("cli");
	const char *name;
	char *stem = NULL;
	int rc, r;

	rc = parse_plain(g, argc, argv, help_delete);
	if (rc >= 0)
		return rc;
	if (argc - optind != 1)
		return cli_usage_error(argv[0], "delete takes exactly one backup name");
	name = argv[optind];
	if (check_name(argv[0], name))
		return CLI_EXIT_USAGE;
	cli_setup_logging(g);
	rc = open_store(g, false, &s);
	if (rc)
		return rc;
	if (s && bri_store_has(s, name) != 1 && ends_with(name, ".db")) {
		/* "NAME.db", the backup's file name, for the backup NAME. */
		stem = strndup(name, strlen(name) - 3);
		if (stem && bri_store_check_name(stem, strlen(stem), NULL) == 0 &&
		    bri_store_has(s, stem) == 1)
			name = stem;
	}
	if (!s || bri_store_has(s, name) != 1) {
		cli_error("delete: no backup named %s (see bri-backup list)", name);
		rc = CLI_EXIT_FAIL;
		goto out_close_store;
	}
	if (bri_pin_exists(s, name)) {
		cli_error("delete: backup %s is pinned, so it is not deleted; unpin it first "
		          "(bri-backup unpin %s) if you mean to",
		          name, name);
		rc = CLI_EXIT_FAIL;
		goto out_close_store;
	}
	r = bri_delete(s, name, &ctx, &err);
	if (r < 0) {
		rc = fail("delete", &err, r);
		goto out_close_store;
	}
	printf("deleted %s\n", name);
out_close_store:
	free(stem);
	close_store(s);
	return rc;
}

/* ---- rehearse ---- */

int cli_cmd_rehearse(struct cli_globals *g, int argc, char **argv)
{
	static const struct option own[] = {
	    {"checks", required_argument, NULL, OPT_CHECKS},
	    {"scratch", required_argument, NULL, OPT_SCRATCH},
	    {"help", no_argument, NULL, 'h'},
	};
	struct option longopts[32];
	struct bri_rehearse_report rep;
	struct bri_store *s = NULL;
	struct bri_target t = {0};
	struct bri_err err = {0};
	struct bri_op_ctx ctx;
	const char *checks = NULL, *scratch = NULL;
	char *name = NULL;
	int opt, rc = CLI_EXIT_OK, r;

	cli_merge_longopts(own, 3, longopts);
	for (;;) {
		opt = next_option(g, argc, argv, ":hv", longopts, help_rehearse, &rc);
		if (opt == -1)
			break;
		switch (opt) {
		case OPT_STOP:
			return rc;
		case OPT_CHECKS:
			checks = optarg;
			break;
		case OPT_SCRATCH:
			scratch = optarg;
			break;
		default:
			return cli_usage_error(argv[0], "unexpected option");
		}
	}
	if (argc - optind > 1)
		return cli_usage_error(argv[0], "rehearse takes at most one backup name");
	if (optind < argc && strcmp(argv[optind], BRI_TARGET_LATEST) &&
	    check_name(argv[0], argv[optind]))
		return CLI_EXIT_USAGE;
	cli_setup_logging(g);
	rc = open_store(g, false, &s);
	if (rc)
		return rc;
	if (!s) {
		cli_error("rehearse: there is no store yet, so no backup to rehearse");
		return CLI_EXIT_FAIL;
	}
	if (optind < argc && strcmp(argv[optind], BRI_TARGET_LATEST)) {
		r = bri_target_resolve(s, NULL, argv[optind], BRI_TARGET_NAMES_ONLY, &t, &err);
		if (r < 0) {
			rc = fail("rehearse", &err, r);
			goto out_close_store;
		}
		name = strdup(t.name);
		bri_target_free(&t);
		if (!name) {
			cli_error("out of memory");
			rc = CLI_EXIT_FAIL;
			goto out_close_store;
		}
	} else {
		rc = newest_name(s, &name);
		if (rc)
			goto out_close_store;
	}
	hook_note(g, name);
	ctx = cli_progress_ctx(name);
	r = bri_rehearse(s, name, checks, scratch, &ctx, &rep, &err);
	cli_progress_done();
	if (g->json) {
		json_object *o = json_object_new_object(), *arr = json_object_new_array();

		json_object_object_add(o, "name", json_str(name));
		json_object_object_add(o, "ok", json_object_new_boolean(r == 0));
		json_object_object_add(o, "message", json_str(rep.message));
		json_object_object_add(o, "verify",
		                       json_str(bri_verify_status_name(rep.verify.status)));
		json_object_object_add(o, "verify_s", json_object_new_double(rep.verify_s));
		json_object_object_add(o, "restored", json_object_new_boolean(rep.restored));
		json_object_object_add(o, "restore_s", json_object_new_double(rep.restore_s));
		for (size_t i = 0; i < rep.nchecks; i++) {
			const struct bri_rehearse_check *c = &rep.checks[i];
			json_object *x = json_object_new_object();

			json_object_object_add(x, "sql", json_str(c->sql));
			json_object_object_add(x, "expect",
			                       c->expect[0] ? json_str(c->expect) : NULL);
			json_object_object_add(x, "got", c->error[0] ? NULL : json_str(c->got));
			json_object_object_add(x, "error", c->error[0] ? json_str(c->error) : NULL);
			json_object_object_add(x, "ok", json_object_new_boolean(c->ok));
			json_object_object_add(x, "duration_s",
			                       json_object_new_double(c->duration_s));
			json_object_array_add(arr, x);
		}
		json_object_object_add(o, "checks", arr);
		print_json(o);
	} else {
		printf("rehearsal of %s: %s\n", name, r == 0 ? "ok" : "FAILED");
		printf("verify: %s (%.2f s)\n", bri_verify_status_name(rep.verify.status),
		       rep.verify_s);
		if (rep.restored)
			printf("restore: ok, quick_check ok (%.2f s)\n", rep.restore_s);
		for (size_t i = 0; i < rep.nchecks; i++) {
			const struct bri_rehearse_check *c = &rep.checks[i];

			if (c->error[0])
				printf("check %zu: FAILED: %s -> error: %s\n", i + 1, c->sql,
				       c->error);
			else
				printf("check %zu: %s: %s -> %s%s%s (%.3f s)\n", i + 1,
				       c->ok ? "ok" : "FAILED", c->sql, c->got,
				       c->expect[0] ? ", expected " : "", c->expect, c->duration_s);
		}
	}
	if (r < 0)
		rc = fail("rehearse", &err, r);
	bri_rehearse_report_free(&rep);
out_close_store:
	free(name);
	close_store(s);
	return rc;
}

/* ---- pin, unpin ---- */

static int pin_or_unpin(struct cli_globals *g, int argc, char **argv, bool pin)
{
	static const struct option own[] = {
	    {"reason", required_argument, NULL, OPT_REASON},
	    {"help", no_argument, NULL, 'h'},
	};
	struct option longopts[32];
	struct bri_store *s = NULL;
	struct bri_err err = {0};
	struct bri_op_ctx ctx = bri_op_ctx_self("cli");
	const char *name, *reason = NULL;
	int opt, rc = CLI_EXIT_OK, r;

	/* unpin takes only --help */
	cli_merge_longopts(pin ? own : own + 1, pin ? 2 : 1, longopts);
	for (;;) {
		opt = next_option(g, argc, argv, pin ? ":hvr:" : ":hv", longopts,
		                  pin ? help_pin : help_unpin, &rc);
		if (opt == -1)
			break;
		switch (opt) {
		case OPT_STOP:
			return rc;
		case 'r':
		case OPT_REASON:
			reason = optarg;
			break;
		default:
			return cli_usage_error(argv[0], "unexpected option");
		}
	}
	if (argc - optind != 1)
		return cli_usage_error(argv[0], "%s takes exactly one backup name", argv[0]);
	name = argv[optind];
	if (check_name(argv[0], name))
		return CLI_EXIT_USAGE;
	cli_setup_logging(g);
	rc = open_store(g, false, &s);
	if (rc)
		return rc;
	if (!s) {
		cli_error("%s: no backup named %s (there is no store yet)", argv[0], name);
		return CLI_EXIT_FAIL;
	}
	r = pin ? bri_pin(s, name, reason, bri_testpoint_now(), &ctx, &err)
	        : bri_unpin(s, name, &ctx, &err);
	if (r < 0)
		rc = fail(argv[0], &err, r);
	else
		printf("%s %s\n", pin ? "pinned" : "unpinned", name);
	close_store(s);
	return rc;
}

int cli_cmd_pin(struct cli_globals *g, int argc, char **argv)
{
	return pin_or_unpin(g, argc, argv, true);
}

int cli_cmd_unpin(struct cli_globals *g, int argc, char **argv)
{
	return pin_or_unpin(g, argc, argv, false);
}

/* ---- stats ---- */

int cli_cmd_stats(struct cli_globals *g, int argc, char **argv)
{
	struct bri_store *s = NULL;
	struct bri_catalog *c = NULL;
	struct bri_stats st;
	char *json = NULL;
	size_t len = 0;
	int rc;

	rc = parse_plain(g, argc, argv, help_stats);
	if (rc >= 0)
		return rc;
	rc = open_catalog(g, argc, argv, &s, &c);
	if (rc)
		return rc;
	memset(&st, 0, sizeof(st));
	bri_stats_compute(c, &st);
	if (s)
		bri_stats_usage(s, &st, NULL); /* leaves format "" when it cannot tell */
	if (g->json) {
		if (bri_stats_to_json(&st, &json, &len) < 0) {
			cli_error("stats: out of memory");
			rc = CLI_EXIT_FAIL;
			goto out_put_catalog;
		}
		fwrite(json, 1, len, stdout);
		if (len == 0 || json[len - 1] != '\n')
			putchar('\n');
		free(json);
	} else {
		printf("total_backups: %zu\n", st.total_backups);
		printf("total_size_mb: %.2f\n", st.total_size_mb);
		printf("newest_backup: %s%s%s%s\n", st.newest_backup[0] ? st.newest_backup : "-",
		       st.newest_name[0] ? " (" : "", st.newest_name, st.newest_name[0] ? ")" : "");
		printf("oldest_backup: %s\n", st.oldest_backup[0] ? st.oldest_backup : "-");
		printf("by kind: %zu auto, %zu named, %zu safety", st.by_kind[BRI_KIND_AUTO],
		       st.by_kind[BRI_KIND_NAMED], st.by_kind[BRI_KIND_SAFETY]);
		printf("\nverification: %zu ok, %zu failed, %zu unverified (%zu good)\n",
		       st.verified_ok, st.verify_failed, st.unverified, st.good);
		if (st.format[0])
			printf("format: %s; logical %.2f MB, stored %.2f MB, dedup ratio %.2f\n",
			       st.format, mb2(st.logical_bytes), mb2(st.stored_bytes),
			       st.dedup_ratio);
		if (st.unknown_files)
			printf("unknown: %zu .db file%s without usable metadata (%s, %.2f MB)\n",
			       st.unknown_files, st.unknown_files == 1 ? "" : "s",
			       st.unknown_files == 1 ? "not a backup" : "not backups",
			       mb2(st.unknown_bytes));
	}
out_put_catalog:
	put_catalog(c);
	close_store(s);
	return rc;
}

/* ---- health ---- */

/* A whole number of 0 or more for option what, or -1 (message printed). */
static long health_count(const char *cmd, const char *what, const char *arg)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(arg, &end, 10);
	if (errno || end == arg || *end || *arg == '-' || v > INT_MAX) {
		cli_usage_error(cmd, "%s wants a whole number of 0 or more, not '%s'", what, arg);
		return -1;
	}
	return (long)v;
}

/* A duration (N seconds or N{s,m,h,d}) above 0 in hours, or -1 (message printed). */
static double health_age(const char *cmd, const char *what, const char *arg)
{
	long secs;

	if (bri_duration_parse(arg, &secs) < 0 || secs <= 0) {
		cli_usage_error(cmd, "%s wants a duration such as 26h, 90m or 2d, not '%s'", what,
		                arg);
		return -1;
	}
	return secs / 3600.0;
}

int cli_cmd_health(struct cli_globals *g, int argc, char **argv)
{
	static const struct option own[] = {
	    {"max-age-hours", required_argument, NULL, OPT_MAX_AGE},
	    {"min-backups", required_argument, NULL, OPT_MIN_BACKUPS},
	    {"warn-age", required_argument, NULL, OPT_WARN_AGE},
	    {"crit-age", required_argument, NULL, OPT_CRIT_AGE},
	    {"warn-count", required_argument, NULL, OPT_WARN_COUNT},
	    {"crit-count", required_argument, NULL, OPT_CRIT_COUNT},
	    {"nagios", no_argument, NULL, OPT_NAGIOS},
	    {"help", no_argument, NULL, 'h'},
	};
	struct option longopts[40];
	struct bri_health_rules rules = {.max_age_hours = 24, .min_backups = 7};
	struct bri_store *s = NULL;
	struct bri_catalog *c = NULL;
	char *text = NULL, *end;
	size_t len = 0;
	bool nagios = false;
	int opt, rc = CLI_EXIT_OK;
	double hours;
	long count;

	/* Nagios wants 3 (unknown) for bad arguments too: look for the flag first. */
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--nagios"))
			nagios = true;
#define USAGE(call) return nagios ? (call, CLI_EXIT_NAGIOS_UNKNOWN) : call
	cli_merge_longopts(own, 8, longopts);
	for (;;) {
		opt = next_option(g, argc, argv, ":hv", longopts, help_health, &rc);
		if (opt == -1)
			break;
		switch (opt) {
		case OPT_STOP:
			return nagios && rc == CLI_EXIT_USAGE ? CLI_EXIT_NAGIOS_UNKNOWN : rc;
		case OPT_MAX_AGE:
			errno = 0;
			rules.max_age_hours = strtod(optarg, &end);
			if (errno || end == optarg || *end || !(rules.max_age_hours > 0) ||
			    !isfinite(rules.max_age_hours))
				USAGE(cli_usage_error(argv[0],
				                      "--max-age-hours wants a number of hours "
				                      "above 0, not '%s'",
				                      optarg));
			break;
		case OPT_WARN_AGE:
		case OPT_CRIT_AGE:
			hours = health_age(
			    argv[0], opt == OPT_WARN_AGE ? "--warn-age" : "--crit-age", optarg);
			if (hours < 0)
				return nagios ? CLI_EXIT_NAGIOS_UNKNOWN : CLI_EXIT_USAGE;
			if (opt == OPT_WARN_AGE)
				rules.max_age_hours = hours;
			else
				rules.crit_age_hours = hours;
			break;
		case OPT_MIN_BACKUPS:
		case OPT_WARN_COUNT:
		case OPT_CRIT_COUNT:
			count = health_count(argv[0],
			                     opt == OPT_MIN_BACKUPS  ? "--min-backups"
			                     : opt == OPT_WARN_COUNT ? "--warn-count"
			                                             : "--crit-count",
			                     optarg);
			if (count < 0)
				return nagios ? CLI_EXIT_NAGIOS_UNKNOWN : CLI_EXIT_USAGE;
			if (opt == OPT_CRIT_COUNT)
				rules.crit_backups = (size_t)count;
			else
				rules.min_backups = (size_t)count;
			break;
		case OPT_NAGIOS:
			nagios = true;
			break;
		default:
			USAGE(cli_usage_error(argv[0], "unexpected option"));
		}
	}
#undef USAGE
	if (rules.crit_age_hours > 0 && rules.crit_age_hours < rules.max_age_hours) {
		cli_usage_error(argv[0], "--crit-age must not be below --warn-age");
		return nagios ? CLI_EXIT_NAGIOS_UNKNOWN : CLI_EXIT_USAGE;
	}
	rc = open_catalog(g, argc, argv, &s, &c);
	if (rc) {
		if (!nagios)
			return rc;
		printf("BRI-BACKUP UNKNOWN - cannot read the store (see the error above)\n");
		return CLI_EXIT_NAGIOS_UNKNOWN;
	}
	if (nagios) {
		bri_health_nagios(c, time(NULL), &rules, &text);
		if (!text) {
			printf("BRI-BACKUP UNKNOWN - out of memory\n");
			rc = CLI_EXIT_NAGIOS_UNKNOWN;
		} else {
			fputs(text, stdout);
			rc = (int)bri_health_assess(c, time(NULL), &rules, false, &end, &len);
			free(end);
		}
		free(text);
		goto out_put_catalog;
	}
	rc = bri_health_assess(c, time(NULL), &rules, g->json, &text, &len) == BRI_HEALTH_OK
	         ? CLI_EXIT_OK
	         : CLI_EXIT_FAIL;
	if (text) {
		fwrite(text, 1, len, stdout);
		if (len == 0 || text[len - 1] != '\n')
			putchar('\n');
		free(text);
	}
out_put_catalog:
	put_catalog(c);
	close_store(s);
	return rc;
}

/* ---- metrics ---- */

/*
 * Writes len bytes of text to path through a temporary file beside it and a
 * rename, never through a symlink: a symlink at path is refused (ELOOP), the
 * temporary file is made with O_EXCL | O_NOFOLLOW relative to the folder's
 * descriptor, and the rename replaces the name, never a file a link points
 * to. Returns 0, or -1 with errno set.
 */
static int write_atomically(const char *path, const char *text, size_t len)
{
	char *copy = strdup(path), *slash, *tmp = NULL;
	const char *folder = ".", *base;
	int dirfd, fd = -1, rc = -1, saved;
	struct stat st;
	FILE *f;

	if (!copy)
		return -1;
	slash = strrchr(copy, '/');
	base = copy;
	if (slash) {
		*slash = '\0';
		folder = slash == copy ? "/" : copy;
		base = slash + 1;
	}
	if (!*base) {
		errno = EISDIR;
		goto out_free;
	}
	dirfd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		goto out_free;
	if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
		errno = ELOOP;
		goto out_close_dir;
	}
	for (unsigned i = 0; i < 100 && fd < 0; i++) {
		free(tmp);
		if (asprintf(&tmp, ".%s.%ld.%u.tmp", base, (long)getpid(), i) < 0) {
			tmp = NULL;
			goto out_close_dir;
		}
		fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
		if (fd < 0 && errno != EEXIST)
			goto out_close_dir;
	}
	if (fd < 0)
		goto out_close_dir;
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		goto out_unlink;
	}
	fchmod(fd, 0644);
	if (fwrite(text, 1, len, f) != len || fflush(f) != 0 || fsync(fd) != 0) {
		fclose(f);
		goto out_unlink;
	}
	if (fclose(f) != 0 || renameat(dirfd, tmp, dirfd, base) != 0)
		goto out_unlink;
	fsync(dirfd);
	rc = 0;
	goto out_close_dir;
out_unlink:
	saved = errno;
	unlinkat(dirfd, tmp, 0);
	errno = saved;
out_close_dir:
	saved = errno;
	close(dirfd);
	errno = saved;
out_free:
	free(tmp);
	free(copy);
	return rc;
}

int cli_cmd_metrics(struct cli_globals *g, int argc, char **argv)
{
	static const struct option own[] = {
	    {"output", required_argument, NULL, 'o'},
	    {"help", no_argument, NULL, 'h'},
	};
	struct bri_health_rules rules = {.max_age_hours = 24, .min_backups = 7};
	struct option longopts[32];
	struct bri_store *s = NULL;
	struct bri_catalog *c = NULL;
	const char *output = NULL;
	char *text = NULL;
	size_t len = 0;
	int opt, rc = CLI_EXIT_OK;

	cli_merge_longopts(own, 2, longopts);
	for (;;) {
		opt = next_option(g, argc, argv, ":ho:v", longopts, help_metrics, &rc);
		if (opt == -1)
			break;
		switch (opt) {
		case OPT_STOP:
			return rc;
		case 'o':
			output = optarg;
			break;
		default:
			return cli_usage_error(argv[0], "unexpected option");
		}
	}
	rc = open_catalog(g, argc, argv, &s, &c);
	if (rc)
		return rc;
	if (bri_metrics_render(s, c, time(NULL), &rules, &text, &len) < 0) {
		cli_error("metrics: out of memory");
		rc = CLI_EXIT_FAIL;
		goto out_put_catalog;
	}
	if (!output) {
		fwrite(text, 1, len, stdout);
	} else if (write_atomically(output, text, len) < 0) {
		if (errno == ELOOP)
			cli_error("metrics: refusing to write %s: it is a symbolic link (give the "
			          "path of a regular file)",
			          output);
		else
			cli_error("metrics: cannot write %s: %s", output, strerror(errno));
		rc = CLI_EXIT_FAIL;
	}
	free(text);
out_put_catalog:
	put_catalog(c);
	close_store(s);
	return rc;
}
