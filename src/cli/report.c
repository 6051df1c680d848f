/*
 * `bri-backup report [--html FILE]`: the store's status page (the core's
 * statuspage module). Without --html, the text rendering for an 80-column
 * terminal; with --html FILE, the self-contained HTML page, byte for byte
 * what the mount's ctl/report.html serves for the same store and minute
 * (written through a temporary file and a rename; "-" is standard output).
 * The thresholds are health's (--max-age-hours, --min-backups).
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bri/catalog.h"
#include "bri/statuspage.h"
#include "bri/store.h"
#include "bri/testpoint.h"
#include "cli.h"

enum { OPT_HTML = 0x300, OPT_MAX_AGE, OPT_MIN_BACKUPS };

static const char report_help[] =
    "Usage: bri-backup report [--html FILE] [--max-age-hours H] [--min-backups N]\n"
    "The store's status at a glance: the health verdict and its thresholds, a\n"
    "calendar of the last 90 days, backup sizes, create/verify/restore times and\n"
    "the store's size over time. Reads the store only.\n"
    "  --html FILE          write one self-contained HTML page (no script, no external\n"
    "                       resource; the mount's ctl/report.html); - for stdout\n"
    "  --max-age-hours H    warn when the newest backup is older (default 24)\n"
    "  --min-backups N      warn when fewer backups exist (default 7)\n"
    "  -h, --help           show this help\n";

/* A positive number from arg into *out; false when it is not one. */
static bool parse_positive(const char *arg, double *out)
{
	char *end = NULL;
	double v;

	errno = 0;
	v = strtod(arg, &end);
	if (errno || end == arg || *end || !(v > 0) || !isfinite(v))
		return false;
	*out = v;
	return true;
}

int cli_cmd_report(struct cli_globals *g, int argc, char **argv)
{
	static const struct option own[] = {
	    {"html", required_argument, NULL, OPT_HTML},
	    {"max-age-hours", required_argument, NULL, OPT_MAX_AGE},
	    {"min-backups", required_argument, NULL, OPT_MIN_BACKUPS},
	    {"help", no_argument, NULL, 'h'},
	};
	struct bri_health_rules rules = {.max_age_hours = 24, .min_backups = 7};
	struct bri_store_open_opts o = {.follow_symlink = g->follow_symlink, .force = g->force};
	static struct bri_catalog empty; /* a store not made yet */
	struct option longopts[32];
	struct bri_store *s = NULL;
	struct bri_catalog *c = &empty;
	struct bri_status *st = NULL;
	struct bri_err err = {0};
	const char *html = NULL;
	char *text = NULL;
	size_t len = 0;
	double v;
	int opt, r, rc = CLI_EXIT_FAIL;

	cli_merge_longopts(own, 4, longopts);
	while ((opt = getopt_long(argc, argv, ":hv", longopts, NULL)) != -1) {
		switch (opt) {
		case 'h':
			fputs(report_help, stdout);
			return CLI_EXIT_OK;
		case OPT_HTML:
			html = optarg;
			continue;
		case OPT_MAX_AGE:
			if (!parse_positive(optarg, &rules.max_age_hours))
				return cli_usage_error(argv[0],
				                       "--max-age-hours wants a positive number");
			continue;
		case OPT_MIN_BACKUPS:
			if (!parse_positive(optarg, &v) || v != floor(v) || v > 1e9)
				return cli_usage_error(argv[0],
				                       "--min-backups wants a positive integer");
			rules.min_backups = (size_t)v;
			continue;
		case '?':
		case ':':
			return cli_bad_option(argv[0], opt, argv);
		default:
			r = cli_global_option(g, opt, optarg);
			if (r < 0)
				return CLI_EXIT_USAGE;
			if (r == 0)
				return cli_usage_error(argv[0], "unexpected option");
		}
	}
	if (optind < argc)
		return cli_usage_error(argv[0], "unexpected argument '%s'", argv[optind]);
	cli_setup_logging(g);
	r = bri_store_open_ex(g->db, g->backup_dir, &o, &s, &err);
	if (r < 0 && r != -ENOENT) {
		cli_error("report: cannot open the backup store: %s", err.msg);
		return CLI_EXIT_FAIL;
	}
	if (r == 0) {
		r = bri_catalog_scan(s, NULL, &c, &err);
		if (r < 0) {
			cli_error("report: cannot read the backup store: %s", err.msg);
			c = &empty;
			goto out_close_store;
		}
	} else {
		s = NULL;
	}
	/* bri_testpoint_now: the tests' fixed clock ($BRI_TEST_NOW), else time(NULL). */
	r = bri_status_collect(s, c, bri_testpoint_now(), &rules, &st);
	if (r == 0)
		r = html ? bri_status_html(st, &text, &len) : bri_status_text(st, &text, &len);
	if (r < 0) {
		cli_error("report: %s", strerror(-r));
		goto out_free;
	}
	if (!html || !strcmp(html, "-")) {
		if (fwrite(text, 1, len, stdout) == len)
			rc = CLI_EXIT_OK; /* else main reports the write error */
	} else if (cli_write_atomically(html, text, len) < 0) {
		if (errno == ELOOP)
			cli_error("report: refusing to write %s: it is a symbolic link", html);
		else
			cli_error("report: cannot write %s: %s", html, strerror(errno));
	} else {
		rc = CLI_EXIT_OK;
	}
out_free:
	free(text);
	bri_status_free(st);
	if (c != &empty)
		bri_catalog_free(c);
out_close_store:
	if (s)
		bri_store_close(s);
	return rc;
}
