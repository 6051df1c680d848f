/*
 * The status page (include/bri/statuspage.h): gathers a store's state at a
 * given minute from its catalog, its audit log and its usage, then renders
 * it as one self-contained HTML page (inline CSS and SVG; no script, no
 * link, no image fetched) or as 80-column text with block characters.
 *
 * Size is bounded by design: the calendar and the per-backup bars cover the
 * last BRI_STATUS_DAYS days; older backups are one mark per day, and the
 * store's size is one sample per day. A bar is a few dozen bytes, so even
 * 10,000 backups inside the window stay under 2 MiB.
 */
#include "bri/statuspage.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bri/audit.h"
#include "bri/offsite_watch.h"
#include "bri/rehearsal.h"
#include "bri/text.h"

#define DAY_S 86400

/* Cap on the restores kept from the audit log (the newest). */
#define RESTORES_MAX 2000

/* ---- gathering ---------------------------------------------------------- */

/* Local midnight of the day i days after (negative: before) the day of t. */
static time_t midnight(time_t t, int days)
{
	struct tm tm;

	localtime_r(&t, &tm);
	tm.tm_hour = 0;
	tm.tm_min = 0;
	tm.tm_sec = 0;
	tm.tm_mday += days;
	tm.tm_isdst = -1;
	return mktime(&tm);
}

static void date_of(time_t t, char *buf, size_t len)
{
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d", &tm);
}

/* Index of the calendar day holding t: -1 before the window, the last day after it. */
static int day_index(const struct bri_status *st, time_t t)
{
	int lo = 0, hi = BRI_STATUS_DAYS - 1;

	if (t < st->days[0].start)
		return -1;
	while (lo < hi) { /* the last day whose start is <= t */
		int mid = (lo + hi + 1) / 2;

		if (st->days[mid].start <= t)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/* Counts backup e into day d. */
static void day_add(struct bri_status_day *d, const struct bri_entry *e)
{
	d->backups++;
	if (e->verify.status == BRI_VERIFY_OK)
		d->ok++;
	else if (e->verify.status == BRI_VERIFY_FAILED)
		d->failed++;
	else
		d->unverified++;
	d->kinds |= 1u << (e->kind <= BRI_KIND_UNKNOWN ? e->kind : BRI_KIND_UNKNOWN);
	if ((int64_t)e->db_st.st_size > d->max_bytes)
		d->max_bytes = (int64_t)e->db_st.st_size;
	if (e->meta_ok && e->meta.duration_s > d->max_create_s)
		d->max_create_s = e->meta.duration_s;
	if (e->verify.status != BRI_VERIFY_UNVERIFIED && e->verify.duration_s > d->max_verify_s)
		d->max_verify_s = e->verify.duration_s;
	if (e->rehearsal.time) {
		if (e->rehearsal.ok)
			d->rehearsed_ok++;
		else
			d->rehearsed_failed++;
	}
}

/* What the audit scan collects. */
struct scan {
	struct bri_status *st;
	int error;                                /* -ENOMEM when an array could not grow */
	bool rehearsal_from_catalog;              /* st->rehearsal came from a backup's status */
	const struct bri_status_backup **by_name; /* st->recent sorted by name (NULL: none) */
	signed char *pushed; /* per recent backup: 0 no push, 1 the last push ok, -1 it failed */
	size_t restores_cap, usage_cap;
};

static int grow(void **arr, size_t *cap, size_t n, size_t size)
{
	void *p;
	size_t ncap;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 16;
	p = realloc(*arr, ncap * size);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = ncap;
	return 0;
}

/* Keeps the newest usage sample of each day: a later one of the same day replaces it. */
static int add_usage(struct scan *sc, time_t t, int64_t logical, int64_t stored)
{
	struct bri_status *st = sc->st;
	struct bri_status_usage *u;

	if (st->nusage && day_index(st, st->usage[st->nusage - 1].time) == day_index(st, t)) {
		u = &st->usage[st->nusage - 1];
	} else {
		if (grow((void **)&st->usage, &sc->usage_cap, st->nusage, sizeof(*st->usage)) < 0)
			return -ENOMEM;
		u = &st->usage[st->nusage++];
	}
	*u = (struct bri_status_usage){.time = t, .logical = logical, .stored = stored};
	return 0;
}

static int by_name_cmp(const void *a, const void *b)
{
	return strcmp((*(const struct bri_status_backup *const *)a)->name,
	              (*(const struct bri_status_backup *const *)b)->name);
}

/* One offsite push: the offsite facts, and (last one wins) its backup's mark. */
static void offsite_rec(struct scan *sc, const struct bri_audit_rec *r)
{
	struct bri_status_offsite *o = &sc->st->offsite;
	struct bri_status_backup key, *k = &key;
	const struct bri_status_backup **hit;

	o->known = true;
	if (r->ok) {
		o->uploads++;
		o->last_upload = r->time;
		snprintf(o->last_name, sizeof(o->last_name), "%s", r->name);
		snprintf(o->remote, sizeof(o->remote), "%s", r->detail);
	} else {
		o->failures++;
		o->last_failure = r->time;
		snprintf(o->last_error, sizeof(o->last_error), "%s",
		         r->detail[0] ? r->detail : r->result);
	}
	if (!sc->by_name)
		return;
	snprintf(key.name, sizeof(key.name), "%s", r->name);
	hit = bsearch(&k, sc->by_name, sc->st->nrecent, sizeof(*sc->by_name), by_name_cmp);
	if (hit)
		sc->pushed[*hit - sc->st->recent] = r->ok ? 1 : -1;
}

static int scan_rec(void *arg, const struct bri_audit_rec *r)
{
	struct scan *sc = arg;
	struct bri_status *st = sc->st;
	int i = day_index(st, r->time);

	if (i < 0)
		return 0;
	if (!strcmp(r->op, "restore")) {
		struct bri_status_event *ev;

		if (st->nrestores == RESTORES_MAX) { /* keep the newest */
			memmove(st->restores, st->restores + 1,
			        (RESTORES_MAX - 1) * sizeof(*st->restores));
			st->nrestores--;
		}
		if (grow((void **)&st->restores, &sc->restores_cap, st->nrestores,
		         sizeof(*st->restores)) < 0)
			return sc->error = -ENOMEM;
		ev = &st->restores[st->nrestores++];
		snprintf(ev->name, sizeof(ev->name), "%s", r->name);
		ev->time = r->time;
		ev->ok = r->ok;
		ev->duration_s = r->duration_s;
	} else if ((!strcmp(r->op, "create") || !strcmp(r->op, "create-safety")) && !r->ok) {
		st->days[i].failed_creates++;
	} else if (!strcmp(r->op, "offsite-push")) {
		offsite_rec(sc, r);
	} else if (!strcmp(r->op, "rehearse") && !sc->rehearsal_from_catalog) {
		/* No backup kept has a rehearsal status: the audit log's newest record. */
		struct bri_status_rehearsal *h = &st->rehearsal;

		h->known = true;
		snprintf(h->name, sizeof(h->name), "%s", r->name);
		h->time = r->time;
		h->ok = r->ok;
		h->duration_s = r->duration_s;
		snprintf(h->detail, sizeof(h->detail), "%s", r->detail[0] ? r->detail : r->result);
	}
	if (r->store_logical >= 0 && r->store_stored >= 0 &&
	    add_usage(sc, r->time, r->store_logical, r->store_stored) < 0)
		return sc->error = -ENOMEM;
	return 0;
}

static void recent_of(struct bri_status_backup *b, const struct bri_entry *e)
{
	snprintf(b->name, sizeof(b->name), "%s", e->name);
	b->time = e->time;
	b->kind = e->kind;
	b->verify = e->verify.status;
	b->bytes = (int64_t)e->db_st.st_size;
	b->create_s = e->meta_ok && e->meta.duration_s > 0 ? e->meta.duration_s : -1;
	b->verify_s = e->verify.status != BRI_VERIFY_UNVERIFIED ? e->verify.duration_s : -1;
	snprintf(b->reason, sizeof(b->reason), "%.*s", (int)sizeof(b->reason) - 1,
	         e->verify.status == BRI_VERIFY_FAILED ? e->verify.reason : "");
}

/* The days before the window that have backups, oldest first. */
static int collect_history(struct bri_status *st, const struct bri_catalog *c, size_t first)
{
	size_t cap = 0;

	/* entries are newest first: walk from the oldest, a day at a time */
	for (size_t k = c->n; k > first; k--) {
		const struct bri_entry *e = c->entries[k - 1];
		struct bri_status_day *d = st->nhistory ? &st->history[st->nhistory - 1] : NULL;
		char date[12];

		date_of(e->time, date, sizeof(date));
		if (!d || strcmp(d->date, date)) {
			if (grow((void **)&st->history, &cap, st->nhistory, sizeof(*st->history)) <
			    0)
				return -ENOMEM;
			d = &st->history[st->nhistory++];
			memset(d, 0, sizeof(*d));
			memcpy(d->date, date, sizeof(date));
			d->start = midnight(e->time, 0);
		}
		day_add(d, e);
	}
	return 0;
}

/* The newest rehearsal status among the backups kept. */
static void rehearsal_of(struct bri_status *st, const struct bri_catalog *c)
{
	const struct bri_entry *e = bri_rehearsal_newest(c);
	struct bri_status_rehearsal *h = &st->rehearsal;

	if (!e)
		return;
	h->known = true;
	h->status = true;
	snprintf(h->name, sizeof(h->name), "%s", e->name);
	h->time = e->rehearsal.time;
	h->ok = e->rehearsal.ok;
	h->duration_s = e->rehearsal.verify_s + e->rehearsal.restore_s;
	bri_rehearsal_describe(&e->rehearsal, h->detail, sizeof(h->detail));
	h->detail[strcspn(h->detail, "\n")] = '\0';
}

int bri_status_collect_catalog(const char *store_dir, const struct bri_catalog *c, time_t now,
                               const struct bri_health_rules *rules, struct bri_status **out)
{
	struct bri_status *st = calloc(1, sizeof(*st));
	size_t first_old = c->n, nrecent = 0;
	size_t hlen;
	struct tm tm;
	int rc = -ENOMEM;

	if (!st)
		return -ENOMEM;
	now -= now % 60; /* the same minute, the same page */
	st->now = now;
	localtime_r(&now, &tm);
	strftime(st->generated, sizeof(st->generated), "%Y-%m-%d %H:%M", &tm);
	st->rules = *rules;
	st->store_dir = strdup(store_dir ? store_dir : "");
	if (!st->store_dir)
		goto out_free;
	st->level = bri_health_assess(c, now, rules, false, &st->health, &hlen);
	if (!st->health)
		goto out_free;
	bri_stats_compute(c, &st->stats);
	for (int i = 0; i < BRI_STATUS_DAYS; i++) {
		struct bri_status_day *d = &st->days[i];

		d->start = midnight(now, i - (BRI_STATUS_DAYS - 1));
		date_of(d->start, d->date, sizeof(d->date));
	}
	st->window_start = st->days[0].start;

	/* Backups: per day in the window, one bar each; before it, one mark per day. */
	for (size_t k = 0; k < c->n; k++) {
		if (c->entries[k]->time < st->window_start) {
			first_old = k;
			break;
		}
		nrecent++;
	}
	st->recent = calloc(nrecent ? nrecent : 1, sizeof(*st->recent));
	if (!st->recent)
		goto out_free;
	for (size_t k = 0; k < nrecent; k++) { /* oldest first */
		const struct bri_entry *e = c->entries[nrecent - 1 - k];

		recent_of(&st->recent[k], e);
		day_add(&st->days[day_index(st, e->time)], e);
	}
	st->nrecent = nrecent;
	if (collect_history(st, c, first_old) < 0)
		goto out_free;
	rehearsal_of(st, c);
	*out = st;
	return 0;
out_free:
	bri_status_free(st);
	return rc;
}

int bri_status_collect_store(struct bri_status *st, struct bri_store *s)
{
	struct scan sc = {.st = st, .rehearsal_from_catalog = st->rehearsal.known};

	/* The backups of the window by name, for the offsite pushes' marks. */
	if (st->nrecent) {
		sc.by_name = malloc(st->nrecent * sizeof(*sc.by_name));
		sc.pushed = calloc(st->nrecent, 1);
		if (!sc.by_name || !sc.pushed) {
			free(sc.by_name);
			free(sc.pushed);
			return -ENOMEM;
		}
		for (size_t i = 0; i < st->nrecent; i++)
			sc.by_name[i] = &st->recent[i];
		qsort(sc.by_name, st->nrecent, sizeof(*sc.by_name), by_name_cmp);
	}
	/* The audit log: restores, failed creates, the last rehearsal, offsite pushes,
	   size over time. */
	bri_audit_scan(s, st->window_start, scan_rec, &sc);
	for (size_t i = 0; sc.pushed && i < st->nrecent; i++) {
		struct bri_status_day *d = &st->days[day_index(st, st->recent[i].time)];

		if (sc.pushed[i] > 0)
			d->offsite_ok++;
		else if (sc.pushed[i] < 0)
			d->offsite_failed++;
	}
	free(sc.by_name);
	free(sc.pushed);
	if (sc.error)
		return sc.error;
	if (!s->ops || !s->ops->usage) {
		/* A plain store keeps each backup whole: its bytes are the catalog's, no listing.
		 */
		snprintf(st->stats.format, sizeof(st->stats.format), "%s",
		         s->ops ? s->ops->format : "plain");
		st->stats.logical_bytes = st->stats.stored_bytes = st->stats.total_bytes;
		st->stats.dedup_ratio = st->stats.total_bytes ? 1 : 0;
	} else if (bri_stats_usage(s, &st->stats, NULL) < 0) {
		return 0; /* the size now is not known: no sample */
	}
	if (add_usage(&sc, st->now, st->stats.logical_bytes, st->stats.stored_bytes) < 0)
		return -ENOMEM;
	return 0;
}

int bri_status_collect(struct bri_store *s, const struct bri_catalog *c, time_t now,
                       const struct bri_health_rules *rules, struct bri_status **out)
{
	struct bri_status *st;
	int rc = bri_status_collect_catalog(s ? s->dir : "", c, now, rules, &st);

	if (rc < 0)
		return rc;
	if (s) {
		rc = bri_status_collect_store(st, s);
		if (rc < 0) {
			bri_status_free(st);
			return rc;
		}
	}
	*out = st;
	return 0;
}

void bri_status_free(struct bri_status *st)
{
	if (!st)
		return;
	free(st->store_dir);
	free(st->health);
	free(st->recent);
	free(st->history);
	free(st->restores);
	free(st->usage);
	free(st);
}

/* ---- text buffer (bri/text.h) ------------------------------------------ */

/* s with &, <, > and " escaped for HTML text and attributes. */
static void add_esc(struct bri_text *t, const char *s)
{
	for (const char *p = s; *p;) {
		size_t n = strcspn(p, "&<>\"");

		if (n)
			bri_text_add(t, "%.*s", (int)n, p);
		p += n;
		switch (*p) {
		case '&':
			bri_text_add(t, "&amp;");
			break;
		case '<':
			bri_text_add(t, "&lt;");
			break;
		case '>':
			bri_text_add(t, "&gt;");
			break;
		case '"':
			bri_text_add(t, "&quot;");
			break;
		default:
			continue;
		}
		p++;
	}
}

/* ---- words -------------------------------------------------------------- */

static void fmt_bytes(int64_t b, char *buf, size_t len)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double v = (double)b;
	int u = 0;

	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%lld B", (long long)b);
	else
		snprintf(buf, len, "%.*f %s", v < 10 ? 2 : v < 100 ? 1 : 0, v, units[u]);
}

static void fmt_dur(double s, char *buf, size_t len)
{
	if (s < 0)
		snprintf(buf, len, "unknown");
	else if (s < 1)
		snprintf(buf, len, "%.0f ms", s * 1000);
	else if (s < 10)
		snprintf(buf, len, "%.2f s", s);
	else if (s < 120)
		snprintf(buf, len, "%.0f s", s);
	else if (s < 7200)
		snprintf(buf, len, "%.0f min", s / 60);
	else
		snprintf(buf, len, "%.1f h", s / 3600);
}

/* "3 h ago", "2 days ago", "in 5 min" (a time in the future). */
static void fmt_ago(time_t now, time_t t, char *buf, size_t len)
{
	double d = difftime(now, t);
	const char *pre = d < 0 ? "in " : "", *post = d < 0 ? "" : " ago";

	d = fabs(d);
	if (d < 60)
		snprintf(buf, len, "this minute");
	else if (d < 120)
		snprintf(buf, len, "%s%.0f s%s", pre, d, post);
	else if (d < 7200)
		snprintf(buf, len, "%s%.0f min%s", pre, d / 60, post);
	else if (d < 2 * DAY_S)
		snprintf(buf, len, "%s%.1f h%s", pre, d / 3600, post);
	else
		snprintf(buf, len, "%s%.0f days%s", pre, d / DAY_S, post);
}

static void fmt_time(time_t t, char *buf, size_t len)
{
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M", &tm);
}

static void fmt_hours(double h, char *buf, size_t len)
{
	if (h == floor(h))
		snprintf(buf, len, "%.0f h", h);
	else
		snprintf(buf, len, "%.1f h", h);
}

/* The thresholds in effect, as one sentence. */
static void thresholds(const struct bri_health_rules *r, char *buf, size_t len)
{
	char age[32], crit_age[64] = "", crit_n[64] = "", reh_age[96] = "", off[720] = "";

	fmt_hours(r->max_age_hours, age, sizeof(age));
	if (r->crit_age_hours > 0) {
		char h[24];

		fmt_hours(r->crit_age_hours, h, sizeof(h));
		snprintf(crit_age, sizeof(crit_age), ", the newest is older than %s", h);
	}
	if (r->crit_backups > 0)
		snprintf(crit_n, sizeof(crit_n), ", fewer than %zu backups exist", r->crit_backups);
	if (r->rehearse_max_age_hours > 0) {
		char h[24];

		fmt_hours(r->rehearse_max_age_hours, h, sizeof(h));
		snprintf(reh_age, sizeof(reh_age),
		         ", the newest rehearsal is older than %s or none ran", h);
	}
	if (r->offsite && r->offsite->remote[0]) {
		char h[24];

		fmt_hours(r->offsite->lag_warn_s / 3600, h, sizeof(h));
		snprintf(off, sizeof(off), ", the offsite copy %s lags more than %s",
		         r->offsite->remote, h);
	}
	snprintf(buf, len,
	         "warning when the newest backup is older than %s, fewer than %zu backups "
	         "exist, a verification failed%s%s or the store holds .db files that are not "
	         "backups; critical when no good backup exists%s%s%s",
	         age, r->min_backups, reh_age, off, crit_age, crit_n,
	         r->rehearse_checked ? ", the newest rehearsal failed" : "");
}

static const char *verdict_words(enum bri_health_level l)
{
	switch (l) {
	case BRI_HEALTH_OK:
		return "the backups are recent, numerous enough, and none failed verification";
	case BRI_HEALTH_WARNING:
		return "look at the lines below";
	default:
		return "no good backup: act now";
	}
}

/* The status class of a day: failed, unverified, ok, or none. */
static const char *day_class(const struct bri_status_day *d)
{
	if (d->failed || d->failed_creates)
		return "failed";
	if (d->unverified)
		return "unverified";
	if (d->ok)
		return "ok";
	return "none";
}

static const char *verify_class(enum bri_verify_status v)
{
	return v == BRI_VERIFY_OK ? "ok" : v == BRI_VERIFY_FAILED ? "failed" : "unverified";
}

/* ---- HTML --------------------------------------------------------------- */

/*
 * Layout: every chart of the window shares one x scale with the calendar,
 * so a day lines up across them. Words (titles, scales, dates) are HTML
 * around the SVGs, never SVG text, so a text browser (w3m, lynx) reads them
 * in order; the SVGs hold only shapes, and each bar's <title> its details.
 */
#define PAGE_W  960 /* the SVGs' width */
#define PLOT_X  4   /* left edge of plots */
#define PLOT_W  950 /* width of plots */
#define PLOT_T  2   /* top of the plot area */
#define PLOT_H  76  /* height of the plot area */
#define CHART_H (PLOT_T + PLOT_H + 2)

static const char css[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#222;background:#fff;"
    "max-width:980px}"
    "h1{font-size:20px;margin:0 0 2px}"
    "h2{font-size:13px;margin:10px 0 2px}"
    "h2 small{font-weight:normal;color:#555}"
    ".sub{color:#666;margin:0 0 6px}"
    ".verdict{padding:8px 12px;border-radius:6px;margin:6px 0}"
    ".verdict p{margin:0;font-size:18px}"
    ".verdict ul{margin:4px 0 0;padding-left:20px}"
    ".verdict.ok{background:#e8f5e9;border:2px solid #2e7d32}"
    ".verdict.warning{background:#fff8e1;border:2px solid #f9a825}"
    ".verdict.critical{background:#ffebee;border:2px solid #c62828}"
    ".verdict p.thr{color:#555;font-size:12px;margin:4px 0 0}"
    "table.facts{border-collapse:collapse;margin:4px 0}"
    "table.facts th{text-align:left;padding:0 12px 0 0;color:#555;font-weight:normal;"
    "white-space:nowrap;vertical-align:top}"
    "table.facts td{padding:0 16px 0 0}"
    "svg{display:block}"
    ".ax{position:relative;height:15px;width:960px;font-size:11px;color:#555}"
    ".ax span{position:absolute;top:0}"
    ".day.ok,.bar.ok{fill:#2e7d32}"
    ".day.unverified,.bar.unverified{fill:#9e9e9e}"
    ".day.failed,.bar.failed{fill:#c62828}"
    ".day.none{fill:#eee}"
    ".k-auto{fill:#78909c}.k-named{fill:#1565c0}.k-safety{fill:#8e24aa}"
    ".reh.ok{fill:#00897b}.reh.failed{fill:#c62828}"
    ".off.ok{fill:#f9a825}.off.failed{fill:#c62828}"
    ".ser{fill:#5c6bc0}.ser.v{fill:#00897b}"
    ".grid{stroke:#e4e4e4;stroke-width:1}.base{stroke:#aaa;stroke-width:1}"
    ".logical{stroke:#1565c0;fill:none;stroke-width:2}"
    ".stored{stroke:#2e7d32;fill:none;stroke-width:2}"
    ".sample.l{fill:#1565c0}.sample.s{fill:#2e7d32}"
    ".mark{fill:#78909c}.mark.failed{fill:#c62828}"
    ".legend{font-size:12px;color:#555}"
    ".sw{display:inline-block;width:10px;height:10px;margin:0 3px 0 10px;"
    "vertical-align:-1px}";

static double x_at(const struct bri_status *st, time_t t)
{
	double span = difftime(st->now + 60, st->window_start);
	double f = span > 0 ? difftime(t, st->window_start) / span : 0;

	if (f < 0)
		f = 0;
	if (f > 1)
		f = 1;
	return PLOT_X + f * PLOT_W;
}

/* The date row under the window's plots: every 15 days, and today. */
static void axis_days(struct bri_text *t, const struct bri_status *st)
{
	bri_text_add(t, "<div class=\"ax\">");
	for (int i = 0; i + 15 < BRI_STATUS_DAYS; i += 15)
		bri_text_add(t, "<span style=\"left:%.0fpx\">%s</span> ",
		             x_at(st, st->days[i].start), st->days[i].date);
	bri_text_add(t, "<span style=\"right:0\">%s (today)</span></div>\n",
	             st->days[BRI_STATUS_DAYS - 1].date);
}

/* A chart of the window: its title and scale in HTML, then the SVG's frame. */
static void chart_open(struct bri_text *t, const struct bri_status *st, const char *id,
                       const char *title, const char *scale)
{
	bri_text_add(t, "<h2>");
	add_esc(t, title);
	bri_text_add(t, " <small>(");
	add_esc(t, scale);
	bri_text_add(
	    t,
	    ")</small></h2>\n<svg id=\"%s\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
	    "role=\"img\"><path class=\"grid\" d=\"",
	    id, PAGE_W, CHART_H, PAGE_W, CHART_H);
	for (int i = 0; st && i < BRI_STATUS_DAYS; i += 15)
		bri_text_add(t, "M%.1f %dv%d", x_at(st, st->days[i].start), PLOT_T, PLOT_H);
	bri_text_add(t, "\"/><path class=\"base\" d=\"M%d %dh%d\"/>", PLOT_X, PLOT_T + PLOT_H,
	             PLOT_W);
}

static double bar_width(size_t n)
{
	double w = n ? (double)PLOT_W / (double)n * 0.7 : 6;

	return w < 1 ? 1 : w > 6 ? 6 : w;
}

/* Backup sizes: one rect per backup of the window, coloured by its verification. */
static void chart_sizes(struct bri_text *t, const struct bri_status *st)
{
	int64_t max = 1;
	double w = bar_width(st->nrecent);
	char scale[64], sz[32];

	for (size_t i = 0; i < st->nrecent; i++)
		if (st->recent[i].bytes > max)
			max = st->recent[i].bytes;
	fmt_bytes(max, sz, sizeof(sz));
	snprintf(scale, sizeof(scale), "up to %s; red: failed verification", sz);
	chart_open(t, st, "sizes", "Backup size, one bar per backup", scale);
	for (size_t i = 0; i < st->nrecent; i++) {
		const struct bri_status_backup *b = &st->recent[i];
		double h = (double)b->bytes / (double)max * PLOT_H;

		if (h < 1)
			h = 1;
		fmt_bytes(b->bytes, sz, sizeof(sz));
		bri_text_add(
		    t,
		    "<rect class=\"bar %s\" x=\"%.4g\" y=\"%.4g\" width=\"%.3g\" height=\"%.4g\">"
		    "<title>",
		    verify_class(b->verify), x_at(st, b->time) - w / 2, PLOT_T + PLOT_H - h, w, h);
		add_esc(t, b->name);
		bri_text_add(t, " %s%s%s", sz, b->verify == BRI_VERIFY_FAILED ? " failed" : "",
		             b->reason[0] ? ": " : "");
		add_esc(t, b->reason);
		bri_text_add(t, "</title></rect>");
	}
	bri_text_add(t, "</svg>\n");
}

/*
 * Durations of the window, one bar each, as one path (a few bytes a bar):
 * value(i) < 0 means none for item i.
 */
static void chart_durations(struct bri_text *t, const struct bri_status *st, const char *id,
                            const char *title, const char *cls, size_t n,
                            double (*value)(const struct bri_status *, size_t, time_t *))
{
	double max = 0, w = bar_width(n);
	size_t shown = 0;
	char scale[64], d[32];
	time_t when;

	for (size_t i = 0; i < n; i++) {
		double v = value(st, i, &when);

		if (v > max)
			max = v;
	}
	fmt_dur(max, d, sizeof(d));
	snprintf(scale, sizeof(scale), "up to %s", d);
	chart_open(t, st, id, title, max > 0 ? scale : "none recorded");
	bri_text_add(t, "<path class=\"%s\" d=\"", cls);
	for (size_t i = 0; i < n; i++) {
		double v = value(st, i, &when), h;

		if (v < 0 || max <= 0)
			continue;
		h = v / max * PLOT_H;
		if (h < 1)
			h = 1;
		bri_text_add(t, "M%.4g %.4gh%.3gv%.4gh%.3gz", x_at(st, when) - w / 2,
		             PLOT_T + PLOT_H - h, w, h, -w);
		shown++;
	}
	bri_text_add(t, "\" data-bars=\"%zu\"/></svg>\n", shown);
}

static double create_value(const struct bri_status *st, size_t i, time_t *when)
{
	*when = st->recent[i].time;
	return st->recent[i].create_s;
}

static double verify_value(const struct bri_status *st, size_t i, time_t *when)
{
	*when = st->recent[i].time;
	return st->recent[i].verify_s;
}

/* Restores: one rect each (few), red when it failed. */
static void chart_restores(struct bri_text *t, const struct bri_status *st)
{
	double max = 0, w = bar_width(st->nrestores);
	char scale[96], d[32], when[24];

	for (size_t i = 0; i < st->nrestores; i++)
		if (st->restores[i].duration_s > max)
			max = st->restores[i].duration_s;
	fmt_dur(max, d, sizeof(d));
	snprintf(scale, sizeof(scale), "%zu restore%s, up to %s; red: failed", st->nrestores,
	         st->nrestores == 1 ? "" : "s", d);
	chart_open(t, st, "restores", "Restore time, one bar per restore",
	           st->nrestores ? scale : "no restore in 90 days");
	for (size_t i = 0; i < st->nrestores; i++) {
		const struct bri_status_event *e = &st->restores[i];
		double h = max > 0 && e->duration_s > 0 ? e->duration_s / max * PLOT_H : 1;

		if (h < 1)
			h = 1;
		fmt_dur(e->duration_s, d, sizeof(d));
		fmt_time(e->time, when, sizeof(when));
		bri_text_add(t,
		             "<rect class=\"bar restore %s\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
		             "height=\"%.1f\"><title>",
		             e->ok ? "ok" : "failed", x_at(st, e->time) - w / 2,
		             PLOT_T + PLOT_H - h, w, h);
		add_esc(t, e->name);
		bri_text_add(t, " %s %s %s</title></rect>", when, d, e->ok ? "ok" : "failed");
	}
	bri_text_add(t, "</svg>\n");
}

/* The store's logical and stored bytes over the window (a sample a day), and the ratio now. */
static void chart_store(struct bri_text *t, const struct bri_status *st)
{
	int64_t max = 1;
	char scale[200], l[32], s[32], top[32];
	const struct bri_status_usage *now = st->nusage ? &st->usage[st->nusage - 1] : NULL;

	for (size_t i = 0; i < st->nusage; i++)
		if (st->usage[i].logical > max)
			max = st->usage[i].logical;
	fmt_bytes(max, top, sizeof(top));
	if (now) {
		fmt_bytes(now->logical, l, sizeof(l));
		fmt_bytes(now->stored, s, sizeof(s));
		snprintf(scale, sizeof(scale),
		         "blue: logical, now %s; green: stored, now %s; dedup ratio %.2f; up to %s",
		         l, s, now->stored ? (double)now->logical / (double)now->stored : 0, top);
	} else {
		snprintf(scale, sizeof(scale), "not known");
	}
	chart_open(t, st, "store", "Store size over time", scale);
	for (int k = 0; k < 2; k++) {
		bri_text_add(t, "<polyline class=\"%s\" points=\"", k ? "stored" : "logical");
		for (size_t i = 0; i < st->nusage; i++) {
			int64_t v = k ? st->usage[i].stored : st->usage[i].logical;

			bri_text_add(t, "%s%.1f,%.1f", i ? " " : "", x_at(st, st->usage[i].time),
			             PLOT_T + PLOT_H - (double)v / (double)max * PLOT_H);
		}
		bri_text_add(t, "\"/>");
	}
	for (size_t i = 0; i < st->nusage; i++) /* one sample per day */
		for (int k = 0; k < 2; k++)
			bri_text_add(
			    t, "<circle class=\"sample %s\" cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\"/>",
			    k ? "s" : "l", x_at(st, st->usage[i].time),
			    PLOT_T + PLOT_H -
			        (double)(k ? st->usage[i].stored : st->usage[i].logical) /
			            (double)max * PLOT_H);
	bri_text_add(t, "</svg>\n");
}

/* Before the window: one mark per day, its height the day's largest backup. */
static void chart_history(struct bri_text *t, const struct bri_status *st)
{
	int64_t max = 1;
	size_t backups = 0;
	time_t from, to = st->window_start;
	double span, w;
	char top[32], title[96], scale[96];

	if (!st->nhistory)
		return;
	from = st->history[0].start;
	span = difftime(to, from);
	w = bar_width(st->nhistory);
	for (size_t i = 0; i < st->nhistory; i++) {
		backups += st->history[i].backups;
		if (st->history[i].max_bytes > max)
			max = st->history[i].max_bytes;
	}
	fmt_bytes(max, top, sizeof(top));
	snprintf(title, sizeof(title), "Before %s: %zu backups on %zu days", st->days[0].date,
	         backups, st->nhistory);
	snprintf(scale, sizeof(scale), "one mark per day, its largest backup, up to %s", top);
	chart_open(t, NULL, "history", title, scale);
	for (size_t i = 0; i < st->nhistory; i++) {
		const struct bri_status_day *d = &st->history[i];
		double x = PLOT_X + (span > 0 ? difftime(d->start, from) / span : 0) * (PLOT_W - w);
		double h = (double)d->max_bytes / (double)max * PLOT_H;

		if (h < 1)
			h = 1;
		bri_text_add(
		    t,
		    "<rect class=\"mark%s\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\">"
		    "<title>%s: %zu backups</title></rect>",
		    d->failed ? " failed" : "", x, PLOT_T + PLOT_H - h, w, h, d->date, d->backups);
	}
	bri_text_add(t,
	             "</svg>\n<div class=\"ax\"><span style=\"left:%dpx\">%s</span> "
	             "<span style=\"right:0\">%s</span></div>\n",
	             PLOT_X, st->history[0].date, st->history[st->nhistory - 1].date);
}

/* The calendar strip: one cell per day, its colour the worst result, kind marks below. */
static void calendar(struct bri_text *t, const struct bri_status *st)
{
	static const char *const kinds[] = {"auto", "named", "safety"};
	double cw = (double)PLOT_W / BRI_STATUS_DAYS;
	size_t with = 0, bad = 0;

	for (int i = 0; i < BRI_STATUS_DAYS; i++) {
		with += st->days[i].backups > 0;
		bad += !strcmp(day_class(&st->days[i]), "failed");
	}
	bri_text_add(
	    t, "<h2>Last %d days <small>(%zu with a backup, %zu with a failure)</small></h2>\n",
	    BRI_STATUS_DAYS, with, bad);
	bri_text_add(
	    t,
	    "<svg id=\"calendar\" width=\"%d\" height=\"50\" viewBox=\"0 0 %d 50\" role=\"img\">",
	    PAGE_W, PAGE_W);
	for (int i = 0; i < BRI_STATUS_DAYS; i++) {
		const struct bri_status_day *d = &st->days[i];
		double x = PLOT_X + i * cw;

		bri_text_add(
		    t,
		    "<rect class=\"day %s\" data-date=\"%s\" data-backups=\"%zu\" x=\"%.1f\" "
		    "y=\"0\" width=\"%.1f\" height=\"22\"><title>%s: ",
		    day_class(d), d->date, d->backups, x, cw - 1.5, d->date);
		if (!d->backups)
			bri_text_add(t, "no backup");
		else
			bri_text_add(t, "%zu backup%s (%zu ok, %zu failed, %zu unverified)",
			             d->backups, d->backups == 1 ? "" : "s", d->ok, d->failed,
			             d->unverified);
		if (d->failed_creates)
			bri_text_add(t, "; %zu failed create%s", d->failed_creates,
			             d->failed_creates == 1 ? "" : "s");
		bri_text_add(t, "</title></rect>");
		for (int k = 0; k < 3; k++)
			if (d->kinds & (1u << k))
				bri_text_add(
				    t,
				    "<rect class=\"kind k-%s\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" "
				    "height=\"4\"><title>%s</title></rect>",
				    kinds[k], x, 24 + k * 5, cw - 1.5, kinds[k]);
		if (d->rehearsed_ok || d->rehearsed_failed)
			bri_text_add(t,
			             "<rect class=\"reh %s\" x=\"%.1f\" y=\"40\" width=\"%.1f\" "
			             "height=\"4\">"
			             "<title>rehearsed: %zu passed, %zu failed</title></rect>",
			             d->rehearsed_failed ? "failed" : "ok", x, cw - 1.5,
			             d->rehearsed_ok, d->rehearsed_failed);
		if (d->offsite_ok || d->offsite_failed)
			bri_text_add(t,
			             "<rect class=\"off %s\" x=\"%.1f\" y=\"46\" width=\"%.1f\" "
			             "height=\"4\">"
			             "<title>offsite: %zu uploaded, %zu failed</title></rect>",
			             d->offsite_failed ? "failed" : "ok", x, cw - 1.5,
			             d->offsite_ok, d->offsite_failed);
	}
	bri_text_add(t, "</svg>\n");
	axis_days(t, st);
	bri_text_add(
	    t, "<div class=\"legend\">Day: <span class=\"sw\" style=\"background:#2e7d32\"></span>"
	       "verified ok <span class=\"sw\" style=\"background:#9e9e9e\"></span>unverified "
	       "<span class=\"sw\" style=\"background:#c62828\"></span>failed (verify or create) "
	       "<span class=\"sw\" style=\"background:#eee\"></span>none. Below: "
	       "<span class=\"sw\" style=\"background:#78909c\"></span>auto "
	       "<span class=\"sw\" style=\"background:#1565c0\"></span>named "
	       "<span class=\"sw\" style=\"background:#8e24aa\"></span>safety "
	       "<span class=\"sw\" style=\"background:#00897b\"></span>rehearsed "
	       "<span class=\"sw\" style=\"background:#c62828\"></span>rehearsal failed");
	if (st->offsite.known)
		bri_text_add(t, " <span class=\"sw\" style=\"background:#f9a825\"></span>offsite");
	bri_text_add(t, "</div>\n");
}

static void fact(struct bri_text *t, const char *label, const char *value)
{
	bri_text_add(t, "<tr><th>%s</th><td>", label);
	add_esc(t, value);
	bri_text_add(t, "</td></tr>\n");
}

/* One line of the facts: shared by the HTML table and the text. */
struct fact {
	char label[24];  /* what */
	char value[640]; /* its value */
};

/* The facts as lines. */
static void facts_lines(const struct bri_status *st, struct fact lines[10], int *n)
{
	const struct bri_stats *s = &st->stats;
	char a[64], b[64], c[64];
	int k = 0;

	snprintf(lines[k].label, sizeof(lines[k].label), "Backups");
	snprintf(lines[k++].value, sizeof(lines[0].value),
	         "%zu (auto %zu, named %zu, safety %zu)%s", s->total_backups,
	         s->by_kind[BRI_KIND_AUTO], s->by_kind[BRI_KIND_NAMED], s->by_kind[BRI_KIND_SAFETY],
	         s->unknown_files ? "; .db files that are not backups present" : "");
	snprintf(lines[k].label, sizeof(lines[k].label), "Verification");
	snprintf(lines[k++].value, sizeof(lines[0].value), "%zu ok, %zu failed, %zu unverified",
	         s->verified_ok, s->verify_failed, s->unverified);
	if (s->total_backups) {
		const struct bri_status_backup *nb =
		    st->nrecent ? &st->recent[st->nrecent - 1] : NULL;

		snprintf(lines[k].label, sizeof(lines[k].label), "Newest");
		if (nb && !strcmp(nb->name, s->newest_name)) {
			fmt_ago(st->now, nb->time, a, sizeof(a));
			fmt_bytes(nb->bytes, b, sizeof(b));
			snprintf(lines[k++].value, sizeof(lines[0].value), "%s, %s (%s), %s",
			         s->newest_name, s->newest_backup, a, b);
		} else {
			snprintf(lines[k++].value, sizeof(lines[0].value), "%s, %s", s->newest_name,
			         s->newest_backup);
		}
		snprintf(lines[k].label, sizeof(lines[k].label), "Oldest");
		snprintf(lines[k++].value, sizeof(lines[0].value), "%s", s->oldest_backup);
	}
	snprintf(lines[k].label, sizeof(lines[k].label), "Store");
	if (s->format[0]) {
		fmt_bytes(s->logical_bytes, a, sizeof(a));
		fmt_bytes(s->stored_bytes, b, sizeof(b));
		snprintf(lines[k++].value, sizeof(lines[0].value),
		         "%s format; %s logical, %s stored; dedup ratio %.2f", s->format, a, b,
		         s->dedup_ratio);
	} else {
		fmt_bytes(s->total_bytes, a, sizeof(a));
		snprintf(lines[k++].value, sizeof(lines[0].value), "%s", a);
	}
	snprintf(lines[k].label, sizeof(lines[k].label), "Last restore");
	if (st->nrestores) {
		const struct bri_status_event *e = &st->restores[st->nrestores - 1];

		fmt_time(e->time, a, sizeof(a));
		fmt_dur(e->duration_s, b, sizeof(b));
		snprintf(lines[k++].value, sizeof(lines[0].value),
		         "%s at %s: %s, took %s (%zu in %d days)", e->name, a,
		         e->ok ? "ok" : "failed", b, st->nrestores, BRI_STATUS_DAYS);
	} else {
		snprintf(lines[k++].value, sizeof(lines[0].value), "none in %d days",
		         BRI_STATUS_DAYS);
	}
	snprintf(lines[k].label, sizeof(lines[k].label), "Last rehearsal");
	if (st->rehearsal.known) {
		fmt_time(st->rehearsal.time, a, sizeof(a));
		fmt_dur(st->rehearsal.duration_s, c, sizeof(c));
		if (st->rehearsal.status) /* its status says it all */
			snprintf(lines[k++].value, sizeof(lines[0].value), "%s: %s",
			         st->rehearsal.name, st->rehearsal.detail);
		else
			snprintf(lines[k++].value, sizeof(lines[0].value),
			         "%s at %s: %s, took %s (%.120s)", st->rehearsal.name, a,
			         st->rehearsal.ok ? "passed" : "failed", c, st->rehearsal.detail);
	} else {
		snprintf(lines[k++].value, sizeof(lines[0].value), "none in %d days",
		         BRI_STATUS_DAYS);
	}
	if (st->offsite.known) {
		const struct bri_status_offsite *o = &st->offsite;
		char when[24] = "never", fail[400] = "";

		if (o->last_upload)
			fmt_time(o->last_upload, when, sizeof(when));
		if (o->failures) {
			fmt_time(o->last_failure, a, sizeof(a));
			snprintf(fail, sizeof(fail), "; last failure %s: %.200s", a, o->last_error);
		}
		snprintf(lines[k].label, sizeof(lines[k].label), "Offsite");
		if (o->last_upload)
			snprintf(lines[k].value, sizeof(lines[0].value),
			         "last upload %s: %s to %s; ", when, o->last_name, o->remote);
		else
			snprintf(lines[k].value, sizeof(lines[0].value), "no upload yet; ");
		snprintf(lines[k].value + strlen(lines[k].value),
		         sizeof(lines[0].value) - strlen(lines[k].value),
		         "%zu uploaded, %zu failed in %d days%s", o->uploads, o->failures,
		         BRI_STATUS_DAYS, fail);
		k++;
	}
	*n = k;
}

/* The health lines: "critical: x" / "warning: x" / "ok". */
static void health_items(struct bri_text *t, const char *health)
{
	for (const char *p = health; *p;) {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		char line[600];

		snprintf(line, sizeof(line), "%.*s", (int)(n < 599 ? n : 599), p);
		if (strcmp(line, "ok")) {
			bri_text_add(t, "<li>");
			add_esc(t, line);
			bri_text_add(t, "</li>");
		}
		p += n + (nl ? 1 : 0);
	}
}

int bri_status_html(const struct bri_status *st, char **out, size_t *len)
{
	const char *level = bri_health_level_name(st->level);
	char thr[1400];
	struct fact lines[10];
	struct bri_text t = {.max = BRI_STATUS_MAX};
	int n;

	bri_text_add(&t,
	             "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
	             "<meta name=\"viewport\" content=\"width=device-width\">"
	             "<title>bri-backup: %s</title><style>%s</style></head>\n<body>\n",
	             level, css);
	bri_text_add(&t, "<h1>Backups of ");
	add_esc(&t, st->store_dir);
	bri_text_add(&t, "</h1>\n<p class=\"sub\">Status at %s, from the store alone.</p>\n",
	             st->generated);
	bri_text_add(&t,
	             "<div class=\"verdict %s\" id=\"health\"><p><b>Health: %s</b> &mdash; %s</p>",
	             level, level, verdict_words(st->level));
	if (st->level != BRI_HEALTH_OK) {
		bri_text_add(&t, "<ul>");
		health_items(&t, st->health);
		bri_text_add(&t, "</ul>");
	}
	thresholds(&st->rules, thr, sizeof(thr));
	bri_text_add(&t, "<p class=\"thr\">Thresholds: ");
	add_esc(&t, thr);
	bri_text_add(&t, ".</p></div>\n<table class=\"facts\">\n");
	facts_lines(st, lines, &n);
	for (int i = 0; i < n; i++)
		fact(&t, lines[i].label, lines[i].value);
	bri_text_add(&t, "</table>\n");
	calendar(&t, st);
	chart_sizes(&t, st);
	chart_durations(&t, st, "creates", "Create time, one bar per backup that recorded it",
	                "ser", st->nrecent, create_value);
	chart_durations(&t, st, "verifies", "Verify time, each backup's last verification", "ser v",
	                st->nrecent, verify_value);
	chart_restores(&t, st);
	chart_store(&t, st);
	axis_days(&t, st);
	chart_history(&t, st);
	bri_text_add(&t, "</body></html>\n");
	return bri_text_finish(&t, out, len);
}

/* ---- text --------------------------------------------------------------- */

#define TEXT_W   80
#define ROW_DAYS 45 /* days per row of the text charts: two rows cover the window */

/* Columns of n bytes of UTF-8 (code points: no wide characters are written). */
static size_t cols(const char *s, size_t n)
{
	size_t c = 0;

	for (size_t i = 0; i < n; i++)
		c += ((unsigned char)s[i] & 0xc0) != 0x80;
	return c;
}

/*
 * Adds s word-wrapped to TEXT_W columns: the first line after first, the
 * others after indent; a word longer than a line is cut.
 */
static void add_wrapped(struct bri_text *t, const char *first, const char *indent, const char *s)
{
	size_t col = cols(first, strlen(first)), ind = cols(indent, strlen(indent));
	bool bare = true; /* no word on this line yet */
	bool spaced = *first && first[strlen(first) - 1] == ' ';

	bri_text_add(t, "%s", first);
	while (*s) {
		size_t w;

		while (*s == ' ')
			s++;
		if (!*s)
			break;
		w = strcspn(s, " ");
		if (!bare && col + 1 + cols(s, w) > TEXT_W) {
			bri_text_add(t, "\n%s", indent);
			col = ind;
			bare = true;
			spaced = *indent && indent[strlen(indent) - 1] == ' ';
		}
		if (!(bare && spaced)) {
			bri_text_add(t, " ");
			col++;
		}
		/* A word that does not fit a line is cut where the line ends. */
		while (col + cols(s, w) > TEXT_W) {
			size_t fit = 0, c = 0;

			while (fit < w && col + c < TEXT_W) {
				fit++;
				while (fit < w && ((unsigned char)s[fit] & 0xc0) == 0x80)
					fit++;
				c++;
			}
			bri_text_add(t, "%.*s\n%s", (int)fit, s, indent);
			s += fit;
			w -= fit;
			col = ind;
		}
		bri_text_add(t, "%.*s", (int)w, s);
		col += cols(s, w);
		s += w;
		bare = false;
	}
	bri_text_add(t, "\n");
}

static const char *const blocks[] = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};

/* A sparkline of one value per day (two rows of ROW_DAYS), "·" for a day without one. */
static void spark(struct bri_text *t, const struct bri_status *st, const char *title,
                  double (*value)(const struct bri_status_day *), const char *top)
{
	double max = 0;

	for (int i = 0; i < BRI_STATUS_DAYS; i++)
		if (value(&st->days[i]) > max)
			max = value(&st->days[i]);
	bri_text_add(t, "%s (▁..█ up to %s)\n", title, top);
	for (int r = 0; r < BRI_STATUS_DAYS; r += ROW_DAYS) {
		bri_text_add(t, "  %s ", st->days[r].date);
		for (int i = r; i < r + ROW_DAYS && i < BRI_STATUS_DAYS; i++) {
			double v = value(&st->days[i]);
			int b;

			if (v <= 0 || max <= 0) {
				bri_text_add(t, "·");
				continue;
			}
			b = (int)ceil(v / max * 8) - 1;
			bri_text_add(t, "%s", blocks[b < 0 ? 0 : b > 7 ? 7 : b]);
		}
		bri_text_add(t, "\n");
	}
}

static double day_bytes(const struct bri_status_day *d)
{
	return (double)d->max_bytes;
}

static double day_create(const struct bri_status_day *d)
{
	return d->max_create_s;
}

static double day_verify(const struct bri_status_day *d)
{
	return d->max_verify_s;
}

int bri_status_text(const struct bri_status *st, char **out, size_t *len)
{
	char thr[1400], head[64], top[32];
	struct fact lines[10];
	double maxc = 0, maxv = 0;
	int64_t maxb = 0;
	struct bri_text t = {.max = BRI_STATUS_MAX};
	int n;

	add_wrapped(&t, "Backups of ", "  ", st->store_dir);
	bri_text_add(&t, "Status at %s, from the store alone.\n\n", st->generated);
	snprintf(head, sizeof(head), "Health: %s -", bri_health_level_name(st->level));
	add_wrapped(&t, head, "  ", verdict_words(st->level));
	if (st->level != BRI_HEALTH_OK)
		for (const char *p = st->health; *p;) {
			const char *nl = strchr(p, '\n');
			size_t k = nl ? (size_t)(nl - p) : strlen(p);
			char line[600];

			snprintf(line, sizeof(line), "%.*s", (int)(k < 599 ? k : 599), p);
			add_wrapped(&t, "  *", "    ", line);
			p += k + (nl ? 1 : 0);
		}
	thresholds(&st->rules, thr, sizeof(thr));
	add_wrapped(&t, "Thresholds:", "  ", thr);
	bri_text_add(&t, "\n");
	facts_lines(st, lines, &n);
	for (int i = 0; i < n; i++) {
		char label[32];

		snprintf(label, sizeof(label), "%-15.23s", lines[i].label);
		add_wrapped(&t, label, "               ", lines[i].value);
	}

	bri_text_add(&t, "\nLast %d days (█ verified ok, ▒ unverified, ✗ failed, · no backup)\n",
	             BRI_STATUS_DAYS);
	for (int r = 0; r < BRI_STATUS_DAYS; r += ROW_DAYS) {
		bri_text_add(&t, "  %s ", st->days[r].date);
		for (int i = r; i < r + ROW_DAYS && i < BRI_STATUS_DAYS; i++) {
			const char *c = day_class(&st->days[i]);

			bri_text_add(&t, "%s",
			             !strcmp(c, "failed")       ? "✗"
			             : !strcmp(c, "unverified") ? "▒"
			             : !strcmp(c, "ok")         ? "█"
			                                        : "·");
		}
		bri_text_add(&t, "\n");
	}
	for (int i = 0; i < BRI_STATUS_DAYS; i++) {
		if (st->days[i].max_bytes > maxb)
			maxb = st->days[i].max_bytes;
		if (st->days[i].max_create_s > maxc)
			maxc = st->days[i].max_create_s;
		if (st->days[i].max_verify_s > maxv)
			maxv = st->days[i].max_verify_s;
	}
	fmt_bytes(maxb, top, sizeof(top));
	spark(&t, st, "Backup size, the largest of each day", day_bytes, top);
	fmt_dur(maxc, top, sizeof(top));
	spark(&t, st, "Create time, the longest of each day", day_create, top);
	fmt_dur(maxv, top, sizeof(top));
	spark(&t, st, "Verify time, the longest of each day", day_verify, top);
	if (st->nhistory) {
		size_t b = 0;

		for (size_t i = 0; i < st->nhistory; i++)
			b += st->history[i].backups;
		bri_text_add(&t, "Before %s: %zu backups on %zu days, from %s.\n", st->days[0].date,
		             b, st->nhistory, st->history[0].date);
	}
	return bri_text_finish(&t, out, len);
}
