/*
 * `bri-backup report [--html FILE]`: the store's status page (the core's
 * statuspage module). Without --html, the text rendering for an 80-column
 * terminal; with --html FILE, the self-contained HTML page, byte for byte
 * what the mount's ctl/report.html serves for the same store and minute
 * (written through a temporary file and a rename; "-" is standard output).
 * The thresholds are health's, the same options (cli_health_parse: --warn-age,
 * --crit-age, ..., --offsite-lag-warn), so both say the same. Its row in the
 * command table (commands.c) declares the options.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bri/catalog.h"
#include "bri/statuspage.h"
#include "bri/store.h"
#include "bri/testpoint.h"
#include "cli.h"

int cli_cmd_report(struct cli_globals *g, const struct cli_args *a)
{
	const char *html = cli_opt(a, "html");
	struct cli_health h;
	struct bri_store *s = NULL;
	struct bri_catalog *c = NULL;
	struct bri_status *st = NULL;
	char *text = NULL;
	size_t len = 0;
	/* bri_testpoint_now: the tests' fixed clock ($BRI_TEST_NOW), else time(NULL). */
	time_t now = bri_testpoint_now();
	int r, rc;

	if (cli_health_parse(a, &h) < 0)
		return CLI_EXIT_USAGE;
	rc = cli_open_catalog(g, a, &s, &c); /* a store not made yet: s NULL, c empty */
	if (rc)
		return rc;
	rc = CLI_EXIT_FAIL;
	cli_health_read(&h, s, now); /* h outlives st */
	r = bri_status_collect(s, c, now, &h.rules, &st);
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
