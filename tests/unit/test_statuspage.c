/*
 * Unit tests of the status page (statuspage.c): a catalog made in memory is
 * put into calendar days in local time across a DST change (90 distinct,
 * consecutive days, each backup in its own day), older backups become one
 * mark per day, a failed verification marks its bar and its day, the same
 * minute gives the same bytes and the next minute other ones, the store
 * folder is escaped in HTML, and the text never passes 80 columns. With a
 * real store, the audit log's create records give the store-size samples.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bri/catalog.h"
#include "bri/create.h"
#include "bri/statuspage.h"
#include "expect.h"
#include "testutil.h"

#define DAY 86400

/* A backup entry made at t, of kind k, with a verification result v. */
static struct bri_entry *entry(const char *name, time_t t, enum bri_kind k,
                               enum bri_verify_status v)
{
	struct bri_entry *e = calloc(1, sizeof(*e));

	e->name = strdup(name);
	e->time = t;
	e->kind = k;
	e->meta_ok = true;
	e->meta.time = t;
	bri_time_local(t, e->meta.backup_time, sizeof(e->meta.backup_time));
	e->meta.size_bytes = 4096 * (1 + (t / DAY) % 5);
	e->meta.duration_s = 0.25;
	e->db_st.st_size = (off_t)e->meta.size_bytes;
	e->verify.status = v;
	e->verify.duration_s = v == BRI_VERIFY_UNVERIFIED ? 0 : 0.5;
	if (v == BRI_VERIFY_FAILED)
		snprintf(e->verify.reason, sizeof(e->verify.reason), "checksum mismatch");
	return e;
}

/* Code points of the longest line of text. */
static size_t widest(const char *text)
{
	size_t w = 0, max = 0;

	for (const char *p = text; *p; p++) {
		if (*p == '\n') {
			max = w > max ? w : max;
			w = 0;
		} else if (((unsigned char)*p & 0xc0) != 0x80) {
			w++;
		}
	}
	return w > max ? w : max;
}

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

static void free_entries(struct bri_catalog *c)
{
	for (size_t i = 0; i < c->n; i++) {
		free(c->entries[i]->name);
		free(c->entries[i]);
	}
	free(c->entries);
}

static void test_days_across_dst(void)
{
	struct bri_health_rules rules = {.max_age_hours = 24, .min_backups = 7};
	struct tm tm = {
	    .tm_year = 2026 - 1900, .tm_mon = 10, .tm_mday = 30, .tm_hour = 12, .tm_isdst = -1};
	struct bri_catalog c = {0};
	struct bri_status *st = NULL, *again = NULL, *later = NULL;
	char *html = NULL, *html2 = NULL, *html3 = NULL, *text = NULL;
	size_t len, len2, len3, tlen;
	char name[64], failed_day[12];
	time_t now;
	int n = 0;

	setenv("TZ", "Europe/Berlin", 1); /* summer time ends on 2026-10-25 */
	tzset();
	now = mktime(&tm);
	/* Noon of each of the last 90 days, a failure 7 days ago, and three old ones. */
	c.entries = calloc(94, sizeof(*c.entries));
	for (int d = 0; d < 90; d++) {
		struct tm day = tm;

		day.tm_mday -= d;
		day.tm_isdst = -1;
		snprintf(name, sizeof(name), "b%02d", d);
		c.entries[n++] = entry(name, mktime(&day), d == 3 ? BRI_KIND_NAMED : BRI_KIND_AUTO,
		                       d == 7 ? BRI_VERIFY_FAILED : BRI_VERIFY_OK);
	}
	c.entries[n++] = entry("old1", now - 120 * DAY, BRI_KIND_AUTO, BRI_VERIFY_OK);
	c.entries[n++] = entry("old2", now - 120 * DAY - 3600, BRI_KIND_AUTO, BRI_VERIFY_OK);
	c.entries[n++] = entry("old3", now - 300 * DAY, BRI_KIND_AUTO, BRI_VERIFY_FAILED);
	c.n = (size_t)n;

	EXPECT_EQ_INT(bri_status_collect_catalog("/srv/a<b>&\"c", &c, now + 7, &rules, &st), 0);
	if (!st)
		return;
	EXPECT_EQ_INT(st->now % 60, 0);
	for (int i = 0; i < BRI_STATUS_DAYS; i++) {
		EXPECT_EQ_INT(st->days[i].backups, 1);
		if (i > 0) {
			long gap = (long)(st->days[i].start - st->days[i - 1].start);

			EXPECT_MSG(gap == DAY || gap == DAY + 3600 || gap == DAY - 3600,
			           "day %d starts %ld s after the one before", i, gap);
			EXPECT(strcmp(st->days[i].date, st->days[i - 1].date) > 0);
		}
	}
	EXPECT_STREQ(st->days[BRI_STATUS_DAYS - 1].date, "2026-11-30");
	EXPECT_STREQ(st->days[0].date, "2026-09-02");
	EXPECT_EQ_INT(st->days[BRI_STATUS_DAYS - 1 - 7].failed, 1);
	EXPECT(st->days[BRI_STATUS_DAYS - 1 - 3].kinds & (1u << BRI_KIND_NAMED));
	EXPECT_EQ_INT(st->nrecent, 90);
	EXPECT_EQ_INT(st->nhistory, 2); /* old1 and old2 share a day */
	if (st->nhistory == 2) {
		EXPECT_EQ_INT(st->history[0].backups, 1);
		EXPECT_EQ_INT(st->history[0].failed, 1);
		EXPECT_EQ_INT(st->history[1].backups, 2);
	}
	EXPECT_EQ_INT(bri_status_html(st, &html, &len), 0);
	EXPECT_EQ_INT(strlen(html), len);
	EXPECT_EQ_INT(count(html, "<rect class=\"day "), 90);
	EXPECT_EQ_INT(count(html, "<rect class=\"bar "), 90);
	EXPECT_EQ_INT(count(html, "<rect class=\"bar failed\""), 1);
	EXPECT_EQ_INT(count(html, "<rect class=\"mark"), 2);
	EXPECT_EQ_INT(count(html, "<rect class=\"mark failed\""), 1);
	snprintf(failed_day, sizeof(failed_day), "%s", st->days[BRI_STATUS_DAYS - 1 - 7].date);
	{
		char *cell = tu_fmt("<rect class=\"day failed\" data-date=\"%s\"", failed_day);

		EXPECT_EQ_INT(count(html, cell), 1);
		free(cell);
	}
	EXPECT(strstr(html, "/srv/a&lt;b&gt;&amp;&quot;c") != NULL);
	EXPECT(strstr(html, "<b>&") == NULL);
	EXPECT(strstr(html, "<script") == NULL);

	/* The same minute, the same page; the next minute, another. */
	EXPECT_EQ_INT(bri_status_collect_catalog("/srv/a<b>&\"c", &c, now + 59 - (now % 60) + 0,
	                                         &rules, &again),
	              0);
	EXPECT_EQ_INT(bri_status_html(again, &html2, &len2), 0);
	EXPECT(len2 == len && memcmp(html, html2, len) == 0);
	EXPECT_EQ_INT(bri_status_collect_catalog("/srv/a<b>&\"c", &c, now + 60, &rules, &later), 0);
	EXPECT_EQ_INT(bri_status_html(later, &html3, &len3), 0);
	EXPECT(len3 != len || memcmp(html, html3, len) != 0);

	EXPECT_EQ_INT(bri_status_text(st, &text, &tlen), 0);
	EXPECT_MSG(widest(text) <= 80, "a line of %zu columns", widest(text));
	EXPECT(strstr(text, "Health: warning - ") != NULL);
	EXPECT_EQ_INT(count(text, "✗"), 2); /* the legend and the day */

	free(html);
	free(html2);
	free(html3);
	free(text);
	bri_status_free(st);
	bri_status_free(again);
	bri_status_free(later);
	free_entries(&c);
}

/* A store folder longer than a line, with no space to break at, still fits 80 columns. */
static void test_text_width(void)
{
	struct bri_health_rules rules = {
	    .max_age_hours = 1.5, .min_backups = 3, .crit_age_hours = 48, .crit_backups = 1};
	struct bri_catalog c = {0};
	struct bri_status *st = NULL;
	char dir[300], *text = NULL;
	size_t len;

	memset(dir, 'x', sizeof(dir) - 1);
	dir[0] = '/';
	dir[sizeof(dir) - 1] = '\0';
	EXPECT_EQ_INT(bri_status_collect_catalog(dir, &c, time(NULL), &rules, &st), 0);
	EXPECT_EQ_INT(bri_status_text(st, &text, &len), 0);
	EXPECT_MSG(widest(text) <= 80, "a line of %zu columns", widest(text));
	EXPECT(strstr(text, "Health: critical") != NULL);
	EXPECT(strstr(text, "older than 1.5 h") != NULL);
	EXPECT(strstr(text, "fewer than 3") != NULL);
	free(text);
	bri_status_free(st);
}

/* With a real store: the audit log's create records give one usage sample a day. */
static void test_usage_from_the_audit_log(void)
{
	char *dir = tu_tmpdir("statuspage");
	char *db = tu_fmt("%s/bri.db", dir);
	struct bri_op_ctx ctx = bri_op_ctx_self("test");
	struct bri_health_rules rules = {.max_age_hours = 24, .min_backups = 7};
	struct bri_catalog *cat = NULL;
	struct bri_status *st = NULL;
	struct bri_store *s = NULL;
	struct bri_err err = {0};
	char *name = NULL, *audit;

	tu_make_db(db, "wal", 3, 50, false);
	EXPECT_EQ_INT(bri_store_open(db, NULL, true, &s, &err), 0);
	for (int i = 0; i < 3; i++) {
		struct bri_create_opts o = {0};

		EXPECT_EQ_INT(bri_create(s, &o, &ctx, &name, &err), 0);
		free(name);
		name = NULL;
	}
	/* A line that is no JSON, and one too long to be a record, are passed over. */
	audit = tu_fmt("%s/audit.jsonl", s->dir);
	{
		FILE *f = fopen(audit, "a");
		char *big = calloc(1, 70000);

		memset(big, 'a', 69999);
		fprintf(f, "not json\n{\"time\":\"%s\",%s\n", "x", big);
		fclose(f);
		free(big);
	}
	EXPECT_EQ_INT(bri_catalog_scan(s, NULL, &cat, &err), 0);
	EXPECT_EQ_INT(bri_status_collect(s, cat, time(NULL), &rules, &st), 0);
	if (st) {
		/* Three creates today and now: one sample of today. */
		EXPECT_EQ_INT(st->nusage, 1);
		EXPECT(st->nusage && st->usage[0].logical == st->stats.logical_bytes);
		EXPECT(st->stats.logical_bytes > 0);
		EXPECT_STREQ(st->stats.format, "plain");
		EXPECT_EQ_INT(st->nrecent, 3);
	}
	bri_status_free(st);
	bri_catalog_free(cat);
	bri_store_close(s);
	free(audit);
	free(db);
	tu_tmpdir_done(dir);
}

int main(void)
{
	test_days_across_dst();
	test_text_width();
	test_usage_from_the_audit_log();
	return EXPECT_RESULT();
}
