/*
 * The command table of bri-backup (SPEC.md section 3): one row per command,
 * {name, fn, args, summary, help, options, complete}, in the order --help
 * lists them. The row is all there is to a command's line: parse.c builds
 * getopt_long's arrays from its options, prints its --help and its synopsis,
 * and dumps it for bash completion (bri-backup --completion-table, read by
 * scripts/completion/bri-backup.bash) and for the test that compares
 * man/bri-backup.1 with it. -h/--help and the global options (main.c) are
 * accepted by every command without being listed here.
 *
 * To add a command: write int cli_cmd_NAME(struct cli_globals *,
 * const struct cli_args *) in its own file (read options with cli_opt and
 * cli_flag, positional arguments from a->pos), declare it in cli.h and add
 * its row below. An option row is {long name, short letter or 0, argument
 * as --help shows it or NULL for a flag, help ('\n' continues it on the
 * next line), what its argument completes to}; CLI_OPTIONS ends the list.
 */
#include <stddef.h>

#include "cli.h"

/* Option rows give the fields they need, in order; the rest are 0. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define NAMES_OR_PATHS (CLI_COMPLETE_NAMES | CLI_COMPLETE_LATEST | CLI_COMPLETE_FILE)
#define NAMES_OR_LIVE  (CLI_COMPLETE_NAMES | CLI_COMPLETE_LATEST | CLI_COMPLETE_LIVE)

/* The thresholds health, metrics and report share (status.c: cli_health_parse). */
#define HEALTH_THRESHOLDS                                                                       \
	{"max-age-hours", 0, "H", "warn when the newest backup is older (default 24)"},         \
	    {"min-backups", 0, "N", "warn when fewer backups exist (default 7)"},                \
	    {"warn-age", 0, "D", "as --max-age-hours, as a duration: 26h, 90m, 2d"},             \
	    {"crit-age", 0, "D", "critical when the newest backup is older than D"},             \
	    {"warn-count", 0, "N", "as --min-backups"},                                          \
	    {"crit-count", 0, "N", "critical when fewer than N backups exist"},                  \
	    {"rehearse-age", 0, "D",                                                             \
	     "expect restore rehearsals: the newest one failed is\n"                             \
	     "critical, older than D (e.g. 8d) or none a warning"},                              \
	    {"offsite", 0, "s3://BUCKET/PREFIX|none",                                            \
	     "the offsite copy to watch (default $BRI_OFFSITE, else\n"                           \
	     "the remote the store last pushed to; none: no rule)"},                             \
	{                                                                                       \
		"offsite-lag-warn", 0, "D",                                                     \
		    "warn when the offsite copy lags more than D (26h),\n"                      \
		    "as the mount's -o offsite_lag_warn="                                       \
	}

const struct cli_command cli_commands[] = {
    {
        .name = "init",
        .fn = cli_cmd_init,
        .summary = "make the backup store, of a format (plain: the default; pages)",
        .help = "Makes the backup store (if missing) of the given format and records it in\n"
                "store.json. plain (the default): one complete .db per backup. pages: each\n"
                "distinct page kept once, compressed, in shared pack files. A store that is\n"
                "already of that format is left as it is; one of another format, or a plain\n"
                "store that holds backups, is refused (convert it with migrate --to).\n",
        .options = CLI_OPTIONS({"format", 0, "plain|pages", "the store's format (default: plain)"}),
    },
    {
        .name = "create",
        .fn = cli_cmd_create,
        .summary = "take a backup; prints its path",
        .help = "Takes an online backup of the live database and prints its path.\n",
        .options = CLI_OPTIONS(
            {"name", 'n', "NAME",
             "the backup's name: [A-Za-z0-9][A-Za-z0-9._-]*, at most 128\n"
             "bytes, not ctl, restore or latest, not taken (default:\n"
             "<stem>_backup_YYYYMMDD_HHMMSS)"},
            {"verify", 0, NULL, "verify the new backup; exit 1 if that fails"},
            {"cleanup", 0, NULL, "then remove expired backups (--retention-days, --keep-min)"}),
    },
    {
        .name = "list",
        .fn = cli_cmd_list,
        .summary = "list the backups, newest first",
        .help = "Lists the backups, newest first: name, created, size, kind and\n"
                "last verification (then [pinned] and [rehearsal ...] when they are),\n"
                "then the .db files that are not backups (no usable .meta) as unknown.\n"
                "With --json: an array of objects.\n",
    },
    {
        .name = "verify",
        .fn = cli_cmd_verify,
        .args = "[NAME|PATH ...]",
        .summary = "verify backups (none given: all); exit 1 if any failed",
        .help = "Verifies backups: SHA-256 against the metadata, PRAGMA integrity_check and\n"
                "row counts. None given: every backup of the store. A PATH (containing '/',\n"
                "or an existing file ending in .db) is checked against PATH.meta without\n"
                "recording the result. Exit 1 if any verification failed.\n",
        .complete = NAMES_OR_PATHS,
    },
    {
        .name = "restore",
        .fn = cli_cmd_restore,
        .args = "[NAME|PATH|s3://BUCKET/PREFIX/NAME]",
        .summary = "restore a backup (none given: the newest) into the live database",
        .help = "Restores a backup (none given: the newest) into the live database: verify,\n"
                "safety backup of the live data (pre_restore_safety_*), copy through SQLite,\n"
                "quick_check. A failed verification aborts and changes nothing.\n"
                "s3://BUCKET/PREFIX/NAME: the offsite backup NAME, downloaded into the store\n"
                "and checked against its remote .meta first (bri-backup offsite --help).\n",
        .options =
            CLI_OPTIONS({"no-verify", 0, NULL, "restore without verifying first (faster, risky)"},
                        {"remote-key-file", 0, "F",
                         "s3://: the key of a copy pushed under another key than\nthe "
                         "store's (before a re-key)"}),
        .complete = NAMES_OR_PATHS,
    },
    {
        .name = "cleanup",
        .fn = cli_cmd_cleanup,
        .summary = "remove backups older than the retention period",
        .help = "Removes backups older than --retention-days (default 30), never a safety\n"
                "backup, never the newest --keep-min (default 7) good ones (last verification\n"
                "not failed), never the newest good one, never a .db that is not a backup,\n"
                "never a pinned one. With --keep-daily and the other calendar tiers (see\n"
                "bri-backup --help), a backup no rule keeps goes. Prints what it removed.\n",
        .options = CLI_OPTIONS({"dry-run", 'n', NULL,
                                "print every backup, kept or would go, and the rule that\n"
                                "decided (daily 2026-11-29, weekly 2026-W48, keep_min, ...)"}),
    },
    {
        .name = "delete",
        .fn = cli_cmd_delete,
        .args = "NAME",
        .summary = "remove one backup (refused when pinned)",
        .help = "Removes the backup NAME (safety backups too; NAME.db is read as\n"
                "NAME when there is no backup called NAME.db).\n",
        .complete = CLI_COMPLETE_NAMES | CLI_COMPLETE_FILE,
    },
    {
        .name = "rehearse",
        .fn = cli_cmd_rehearse,
        .args = "[NAME|latest]",
        .summary = "prove a backup restores: restore into a scratch copy, run your checks",
        .help = "Proves that a backup (none given: the newest) restores: verify, the restore's\n"
                "copy through SQLite into a scratch database in a new folder under DIR ($TMPDIR\n"
                "or /tmp; never the store, never the live database), quick_check, then your\n"
                "checks against that copy, then the copy is removed. Prints how long each step\n"
                "took and each check's result; exit 1 if anything failed.\n",
        .options = CLI_OPTIONS(
            {"checks", 0, "FILE",
             "SQL statements, each optionally followed on its line by\n"
             "\"-- expect VALUE\" (first column of the first row), e.g.\n"
             "SELECT count(*) > 0 FROM videos; -- expect 1",
             CLI_COMPLETE_FILE},
            {"scratch", 0, "DIR", "where the scratch folder is made", CLI_COMPLETE_FILE}),
        .complete = CLI_COMPLETE_NAMES | CLI_COMPLETE_LATEST,
    },
    {
        .name = "pin",
        .fn = cli_cmd_pin,
        .args = "NAME",
        .summary = "keep a backup from every cleanup",
        .help = "Pins the backup NAME: no cleanup removes it and delete refuses it until it\n"
                "is unpinned. The pin is its own file, NAME.db.pin (time, reason, who); the\n"
                "backup's .meta is not changed. Pinning again replaces the reason.\n",
        .options = CLI_OPTIONS(
            {"reason", 'r', "TEXT", "why (one line, at most 1024 bytes), shown by list"}),
        .complete = CLI_COMPLETE_NAMES,
    },
    {
        .name = "unpin",
        .fn = cli_cmd_unpin,
        .args = "NAME",
        .summary = "remove a backup's pin",
        .help = "Removes the pin of backup NAME (exit 1 if not pinned).\n",
        .complete = CLI_COMPLETE_NAMES,
    },
    {
        .name = "stats",
        .fn = cli_cmd_stats,
        .summary = "show the store's statistics",
        .help = "Shows the store's statistics (JSON with --json).\n",
    },
    {
        .name = "health",
        .fn = cli_cmd_health,
        .summary = "check the store's health; exit 1 on a warning",
        .help = "Prints ok, or one line per problem, and exits 1 on any: first \"critical:\"\n"
                "when no good backup exists (none, or every one failed verification), then\n"
                "\"warning:\" lines: the newest backup older than H hours (default 24), fewer\n"
                "than N backups (default 7), .db files that are not backups, or a failed\n"
                "verification. With --rehearse-age D, restore rehearsals are expected: a\n"
                "\"critical:\" line when the newest one failed, a \"warning:\" line when it is\n"
                "older than D or none ran. The offsite copy (--offsite, else $BRI_OFFSITE, else\n"
                "the remote the store last pushed to): a \"warning:\" line when it lags more\n"
                "than --offsite-lag-warn (default 26h), as the mount's ctl/health says.\n",
        .options = CLI_OPTIONS(HEALTH_THRESHOLDS,
                               {"nagios", 0, NULL,
                                "one line in the Nagios plugin format; exit 0 ok,\n"
                                "1 warning, 2 critical, 3 unknown (store unreadable,\n"
                                "bad arguments)",
                                .usage_exit = CLI_EXIT_NAGIOS_UNKNOWN}),
    },
    {
        .name = "metrics",
        .fn = cli_cmd_metrics,
        .summary = "print metrics in the Prometheus text format (or write FILE)",
        .help = "Prints the store's metrics in the Prometheus text format: backups by kind,\n"
                "bytes, the newest backup's time and age, verification results, health, and\n"
                "the time, result and duration of the last create, verify, restore,\n"
                "cleanup and rehearse, and the newest rehearsal's. With --output, writes\n"
                "FILE atomically (mode 0644) instead, for node_exporter's textfile collector\n"
                "(FILE should end in .prom); a FILE that is a symbolic link is refused.\n"
                "The offsite copy's lag (bri_offsite_*) as health finds it; health's\n"
                "thresholds decide bri_backup_healthy.\n",
        .options = CLI_OPTIONS(
            {"output", 'o', "FILE", "write FILE instead of standard output", CLI_COMPLETE_FILE},
            HEALTH_THRESHOLDS),
    },
    {
        .name = "report",
        .fn = cli_cmd_report,
        .summary = "the status page: text for a terminal, or one self-contained HTML FILE",
        .help = "The store's status at a glance, from the store alone: the health verdict and\n"
                "its thresholds, a calendar of the last 90 days (a backup, its kinds, its\n"
                "verification), backup sizes, create/verify/restore times and the store's size\n"
                "over time. Text for an 80-column terminal, or with --html one page with\n"
                "inline CSS and SVG, no script, no external resource: the bytes of the mount's\n"
                "ctl/report.html for the same store and minute. The thresholds are health's.\n",
        .options = CLI_OPTIONS(
            {"html", 0, "FILE", "write the HTML page to FILE (atomically; - for stdout)",
             CLI_COMPLETE_FILE},
            HEALTH_THRESHOLDS),
    },
    {
        .name = "diff",
        .fn = cli_cmd_diff,
        .args = "OLD NEW",
        .summary = "compare two backups (or 'live'): the sqldiff summary, or one table's "
                   "changed rows as CSV",
        .help = "Compare two databases. OLD and NEW: backup names, 'latest', or 'live' (an\n"
                "online snapshot of the live database, removed afterwards). With --json:\n"
                "the summary as JSON; with --table, the rows as JSON lines:\n"
                "{\"op\":\"-\",\"old\":{...}}, {\"op\":\"~\",\"old\":{...},\"new\":{...}},\n"
                "{\"op\":\"+\",\"new\":{...}}\n",
        .options = CLI_OPTIONS(
            {"table", 0, "T",
             "the rows of table T that differ, as CSV: a header 'op,...',\n"
             "then '-' deleted rows, '~-'/'~+' changed rows (old, new) and\n"
             "'+' added rows"},
            {"summary", 0, NULL, "what `sqldiff --primarykey --summary` prints (the default)"}),
        .complete = NAMES_OR_LIVE,
    },
    {
        .name = "export",
        .fn = cli_cmd_export,
        .args = "NAME FILE | NAME --table T | --schema",
        .summary = "write a backup as a plain .db FILE, or print a table as CSV, or its schema",
        .help = "Write the backup as a plain database FILE (which must not exist; checked\n"
                "against its checksum), or\n"
                "print one table of a backup as CSV (the sqlite3 shell's -csv -header\n"
                "output, with a header always and BLOBs as X'...' literals), or its\n"
                "schema as SQL. NAME: a backup name, 'latest' or 'live'.\n",
        .options = CLI_OPTIONS({"table", 0, "T", "print table T as CSV"},
                               {"schema", 0, NULL, "print the schema as SQL"}),
        .complete = NAMES_OR_LIVE,
    },
    {
        .name = "migrate",
        .fn = cli_cmd_migrate,
        .summary = "convert the store in place to the other format, or change its key",
        .help = "Converts the backup store in place to the other format: each backup is\n"
                "copied byte for byte into the new format and checked against its checksum,\n"
                "then the store switches format in one step, then the old files are removed.\n"
                "Encryption: --to pages --key-file F encrypts a store without encryption\n"
                "with F; --to plain --key-file F decrypts an encrypted one (every file in\n"
                "the clear, with a warning); --to pages --key-file OLD --new-key-file NEW\n"
                "re-keys one (every sealed file sealed again; OLD works until the switch,\n"
                "NEW from it). These build the new store in a folder beside the store and\n"
                "swap the two folders in one step. A missing or wrong key changes nothing.\n"
                "Killed at any point, every backup stays complete; run migrate again with\n"
                "the same options to finish (or, before the switch, ask for the store as it\n"
                "is, e.g. the other --to, to undo). Refused while another process holds the\n"
                "store.\n",
        .options = CLI_OPTIONS({"to", 0, "plain|pages",
                                "plain (one .db per backup) or pages (pages kept once each)"},
                               {"new-key-file", 0, "F",
                                "the encrypted page store's new key (32 random bytes or a "
                                "passphrase)"}),
    },
    {
        .name = "scrub",
        .fn = cli_cmd_scrub,
        .summary = "check every stored byte: every page of every pack",
        .help = "Reads every stored byte of the store. A page store: every page of every pack\n"
                "is decompressed and its id recomputed, and every page of every backup is\n"
                "looked up; each damaged or missing page is printed with the backup(s) and\n"
                "page number that use it. A plain store: every backup's file is hashed\n"
                "against its checksum. Changes nothing. Exit 1 when anything is damaged.\n",
    },
    {
        .name = "offsite",
        .fn = cli_cmd_offsite,
        .args = "init|push|list|verify|pull|prune|status [NAME ...]",
        .summary = "copy backups to S3-compatible object storage and back",
        .help = "Copies the store's backups to S3-compatible object storage (AWS S3, Ceph RGW,\n"
                "MinIO, Garage, B2, R2) and back (SPEC section 6).\n"
                "  init              create the bucket (--lock: with S3 Object Lock)\n"
                "  push [NAME]       upload every backup the remote lacks (or NAME), .meta last\n"
                "  list              the remote's backups, newest first\n"
                "  verify [NAME...]  every object there with its size and stored SHA-256 (HEAD);\n"
                "                    --read-data downloads and rehashes (--sample N%: a part)\n"
                "  pull NAME         download a remote backup into the local store\n"
                "  prune             the retention policy (global --retention-days, --keep-*,\n"
                "                    or --remote-retention-days) on the remote's list; the newest\n"
                "                    good one stays; stale multipart uploads are aborted\n"
                "  status            each local backup's push state, and the lag (no network)\n"
                "Credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN), or\n"
                "the profile AWS_PROFILE of ~/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE) and\n"
                "~/.aws/config; region AWS_REGION. Never on the command line.\n"
                "Restore from the remote: bri-backup restore s3://BUCKET/PREFIX/NAME\n",
        .options = CLI_OPTIONS(
            {"remote", 0, "s3://BUCKET/PREFIX", "the remote (default $BRI_OFFSITE)"},
            {"endpoint", 0, "URL",
             "the S3 endpoint (default $AWS_ENDPOINT_URL, endpoint_url in\n~/.aws/config, "
             "else AWS)"},
            {"addressing", 0, "path|virtual",
             "the bucket in the path (default for a custom endpoint) or\nthe host name "
             "(default for AWS); default $BRI_OFFSITE_ADDRESSING"},
            {"lock", 0, NULL, "init: make the bucket with S3 Object Lock"},
            {"lock-days", 0, "N", "push: Object Lock COMPLIANCE for N days on every upload"},
            {"read-data", 0, NULL, "verify: download and rehash"},
            {"sample", 0, "N%", "verify: download and rehash a random N% of the backups"},
            {"dry-run", 'n', NULL, "prune: say what would go, delete nothing"},
            {"remote-retention-days", 0, "N", "prune: the age rule for the remote"},
            {"remote-key-file", 0, "F",
             "list, verify, pull, prune: the key of a copy pushed under\nanother key "
             "than the store's (before a re-key)"}),
    },
    {0},
};
