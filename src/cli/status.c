/*
 * The commands of bri-backup that report on the store: list, stats, health
 * (also in the Nagios plugin format) and metrics (the Prometheus text
 * format, printed or written atomically for node_exporter). They read the
 * catalog and print what the core renders. The health thresholds (health,
 * metrics and report take the same options, cli_health_parse) include the
 * offsite copy's lag, read from the store's push states as the mount does.
 */
#include <errno.h>
#include <fcntl.h>
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
#include "bri/metrics.h"
#include "bri/offsite_watch.h"
#include "bri/pin.h"
#include "bri/rehearsal.h"
#include "bri/report.h"
#include "bri/schedule.h"
#include "bri/store.h"
#include "bri/testpoint.h"
#include "bri/verify.h"
#include "cli.h"

/* ---- list ---- */

/* The backup's time as the seed writes it: the meta's backup_time, else the entry's time. */
static void entry_created(const struct bri_entry *e, char *buf, size_t len)
{
	if (e->meta_ok && e->meta.backup_time[0])
		snprintf(buf, len, "%s", e->meta.backup_time);
	else
		bri_time_local(e->time, buf, len);
}

int cli_cmd_list(struct cli_globals *g, const struct cli_args *a)
{
	struct bri_store *s = NULL;
	struct bri_catalog *c = NULL;
	size_t i, width = 4;
	int rc;

	rc = cli_open_catalog(g, a, &s, &c);
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
		char rehearsal[BRI_REHEARSAL_REASON_MAX + 128] = "";

		if (e->rehearsal.time) {
			char line[sizeof(rehearsal) - 16];
			size_t n = bri_rehearsal_describe(&e->rehearsal, line, sizeof(line));

			if (n)
				line[n - 1] = '\0'; /* the newline */
			snprintf(rehearsal, sizeof(rehearsal), "  [rehearsal %s]", line);
		}
		printf("%-*s  %-19s  %10.2f  %-7s  %s%s%s%s%s\n", (int)width, e->name, created,
		       cli_mb2((int64_t)e->db_st.st_size), bri_kind_name(e->kind),
		       bri_verify_status_name(e->verify.status),
		       e->verify.status == BRI_VERIFY_FAILED ? ": " : "",
		       e->verify.status == BRI_VERIFY_FAILED ? e->verify.reason : "", pinned,
		       rehearsal);
	}
	if (c->nunknown)
		printf("%zu .db file%s marked unknown %s not a backup: never verified as good, "
		       "never removed by cleanup.\n",
		       c->nunknown, c->nunknown == 1 ? "" : "s", c->nunknown == 1 ? "is" : "are");
out_put_catalog:
	cli_put_catalog(c);
	cli_close_store(s);
	return rc;
}

/* ---- stats ---- */

int cli_cmd_stats(struct cli_globals *g, const struct cli_args *a)
{
	struct bri_store *s = NULL;
	struct bri_catalog *c = NULL;
	struct bri_stats st;
	char *json = NULL;
	size_t len = 0;
	int rc;

	rc = cli_open_catalog(g, a, &s, &c);
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
			printf("format: %s%s; logical %.2f MB, stored %.2f MB, dedup ratio %.2f\n",
			       st.format, strcmp(st.encryption, "none") ? ", encrypted" : "",
			       cli_mb2(st.logical_bytes), cli_mb2(st.stored_bytes), st.dedup_ratio);
		if (st.unknown_files)
			printf("unknown: %zu .db file%s without usable metadata (%s, %.2f MB)\n",
			       st.unknown_files, st.unknown_files == 1 ? "" : "s",
			       st.unknown_files == 1 ? "not a backup" : "not backups",
			       cli_mb2(st.unknown_bytes));
	}
out_put_catalog:
	cli_put_catalog(c);
	cli_close_store(s);
	return rc;
}

/* ---- health ---- */

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

/* Sets threshold opt from arg (core: bri_health_threshold_set); 0 or -1 (message printed). */
static int health_option(const char *cmd, const char *opt, const char *arg,
                         struct bri_health_rules *rules)
{
	struct bri_err err = {0};

	if (arg && bri_health_threshold_set(rules, opt, arg, &err) < 0) {
		cli_usage_error(cmd, "--%s %s", opt, err.msg);
		return -1;
	}
	return 0;
}

int cli_health_parse(const struct cli_args *a, struct cli_health *h)
{
	/* In the order they are checked; a later one of a pair wins (--warn-age). */
	static const char *const limits[] = {"max-age-hours", "warn-age",   "crit-age",
	                                     "min-backups",   "warn-count", "crit-count",
	                                     "rehearse-age"};
	const char *lag = cli_opt(a, "offsite-lag-warn");

	memset(h, 0, sizeof(*h));
	h->rules = (struct bri_health_rules){.max_age_hours = 24, .min_backups = 7};
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++)
		if (health_option(a->name, limits[i], cli_opt(a, limits[i]), &h->rules) < 0)
			return -1;
	if (bri_health_rules_check(&h->rules, NULL) < 0) {
		cli_usage_error(a->name, "--crit-age must not be below --warn-age");
		return -1;
	}
	h->offsite = cli_opt(a, "offsite");
	if (!h->offsite)
		h->offsite = getenv("BRI_OFFSITE");
	if (h->offsite && *h->offsite && strcmp(h->offsite, "none") != 0 &&
	    (strncmp(h->offsite, "s3://", 5) != 0 || strlen(h->offsite) < 8)) {
		cli_usage_error(a->name, "--offsite wants s3://BUCKET/PREFIX or none, not '%s'",
		                h->offsite);
		return -1;
	}
	if (lag) {
		double hours = health_age(a->name, "--offsite-lag-warn", lag);

		if (hours < 0)
			return -1;
		h->offsite_lag_warn_s = hours * 3600;
	}
	return 0;
}

void cli_health_read(struct cli_health *h, const struct bri_store *s, time_t now)
{
	h->rules.offsite = NULL;
	if (!s || (h->offsite && !strcmp(h->offsite, "none")))
		return;
	/* As the mount: a store that cannot be listed says so in its own lines. */
	if (bri_offsite_watch_read(s, h->offsite, h->offsite_lag_warn_s, NULL, false, now,
	                           &h->watch, NULL) == 0 &&
	    h->watch.remote[0])
		h->rules.offsite = &h->watch;
}

int cli_cmd_health(struct cli_globals *g, const struct cli_args *a)
{
	struct cli_health h;
	struct bri_store *s = NULL;
	struct bri_catalog *c = NULL;
	char *text = NULL, *end;
	size_t len = 0;
	bool nagios = cli_flag(a, "nagios");
	/* bri_testpoint_now: the tests' fixed clock ($BRI_TEST_NOW), else time(NULL). */
	time_t now = bri_testpoint_now();
	int rc = CLI_EXIT_OK;

	/* Bad usage: 2, or 3 (unknown) with --nagios, which the table says of it. */
	if (cli_health_parse(a, &h) < 0)
		return nagios ? CLI_EXIT_NAGIOS_UNKNOWN : CLI_EXIT_USAGE;
	rc = cli_open_catalog(g, a, &s, &c);
	if (rc) {
		if (!nagios)
			return rc;
		printf("BRI-BACKUP UNKNOWN - cannot read the store (see the error above)\n");
		return CLI_EXIT_NAGIOS_UNKNOWN;
	}
	cli_health_read(&h, s, now);
	if (nagios) {
		bri_health_nagios(c, now, &h.rules, &text);
		if (!text) {
			printf("BRI-BACKUP UNKNOWN - out of memory\n");
			rc = CLI_EXIT_NAGIOS_UNKNOWN;
		} else {
			fputs(text, stdout);
			rc = (int)bri_health_assess(c, now, &h.rules, false, &end, &len);
			free(end);
		}
		free(text);
		goto out_put_catalog;
	}
	rc = bri_health_assess(c, now, &h.rules, g->json, &text, &len) == BRI_HEALTH_OK
	         ? CLI_EXIT_OK
	         : CLI_EXIT_FAIL;
	if (text) {
		fwrite(text, 1, len, stdout);
		if (len == 0 || text[len - 1] != '\n')
			putchar('\n');
		free(text);
	}
out_put_catalog:
	cli_put_catalog(c);
	cli_close_store(s);
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
int cli_write_atomically(const char *path, const char *text, size_t len)
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

int cli_cmd_metrics(struct cli_globals *g, const struct cli_args *a)
{
	struct cli_health h;
	struct bri_store *s = NULL;
	struct bri_catalog *c = NULL;
	const char *output = cli_opt(a, "output");
	char *text = NULL;
	size_t len = 0;
	time_t now = bri_testpoint_now();
	int rc = CLI_EXIT_OK;

	if (cli_health_parse(a, &h) < 0)
		return CLI_EXIT_USAGE;
	rc = cli_open_catalog(g, a, &s, &c);
	if (rc)
		return rc;
	cli_health_read(&h, s, now);
	if (bri_metrics_render(s, c, now, &h.rules, &text, &len) < 0) {
		cli_error("metrics: out of memory");
		rc = CLI_EXIT_FAIL;
		goto out_put_catalog;
	}
	if (!output) {
		fwrite(text, 1, len, stdout);
	} else if (cli_write_atomically(output, text, len) < 0) {
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
	cli_put_catalog(c);
	cli_close_store(s);
	return rc;
}
