/*
 * `bri-backup report [--html FILE]`: the store's status page (the core's
 * statuspage module). Without --html, the text rendering for an 80-column
 * terminal; with --html FILE, the self-contained HTML page, byte for byte
 * what the mount's ctl/report.html serves for the same store and minute
 * (written through a temporary file and a rename; "-" is standard output).
 * The thresholds are health's (--max-age-hours, --min-backups). Its row in
 * the command table (commands.c) declares the options.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bri/catalog.h"
#include "bri/statuspage.h"
#include "bri/store.h"
#include "bri/testpoint.h"
#include "cli.h"

/* A number above 0 from arg into *out; false when it is not one. */
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

int cli_cmd_report(struct cli_globals *g, const struct cli_args *a)
{
	struct bri_health_rules rules = {.max_age_hours = 24, .min_backups = 7};
	const char *html = cli_opt(a, "html"), *age = cli_opt(a, "max-age-hours");
	const char *count = cli_opt(a, "min-backups");
	struct bri_store *s = NULL;
	struct bri_catalog *c = NULL;
	struct bri_status *st = NULL;
	char *text = NULL;
	size_t len = 0;
	double v;
	int r, rc;

	if (age && !parse_positive(age, &rules.max_age_hours))
		return cli_usage_error(a->name,
		                       "--max-age-hours wants a number of hours above 0, "
		                       "not '%s'",
		                       age);
	if (count) {
		if (!parse_positive(count, &v) || v != floor(v) || v > 1e9)
			return cli_usage_error(a->name,
			                       "--min-backups wants a whole number above 0, "
			                       "not '%s'",
			                       count);
		rules.min_backups = (size_t)v;
	}
	rc = cli_open_catalog(g, a, &s, &c); /* a store not made yet: s NULL, c empty */
	if (rc)
		return rc;
	rc = CLI_EXIT_FAIL;
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
			cli_error(
			    "report: refusing to write %s: it is a symbolic link (give the path "
			    "of a regular file)",
			    html);
		else
			cli_error("report: cannot write %s: %s", html, strerror(errno));
	} else {
		rc = CLI_EXIT_OK;
	}
out_free:
	free(text);
	bri_status_free(st);
	cli_put_catalog(c);
	cli_close_store(s);
	return rc;
}
