/*
 * The retention policy as a pure function: safety backups, unknown files and
 * pinned backups stay, the calendar tiers (restic's forget policy) and
 * keep_within keep theirs, the newest keep_min good backups and the newest
 * good one stay, the newest keep_min of all stay, and of the rest those
 * older than the retention period (or, with tiers and no age rule, all) go.
 * No I/O and no clock: "now" is an argument; periods are local time (TZ).
 */
#include "bri/retention.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ranked {
	size_t index; /* into the caller's items */
	time_t time;  /* its time */
	const char *name;
};

static int newest_first(const void *a, const void *b)
{
	const struct ranked *x = a, *y = b;

	if (x->time != y->time)
		return x->time > y->time ? -1 : 1;
	return -strcmp(x->name, y->name);
}

enum tier { TIER_HOURLY, TIER_DAILY, TIER_WEEKLY, TIER_MONTHLY, TIER_YEARLY, NTIERS };

static const enum bri_retention_verdict tier_verdict[NTIERS] = {
    BRI_KEEP_HOURLY, BRI_KEEP_DAILY, BRI_KEEP_WEEKLY, BRI_KEEP_MONTHLY, BRI_KEEP_YEARLY};

/* The calendar period of t in local time as a number, e.g. 20261129 for a day. */
static long long period_key(enum tier which, time_t t)
{
	struct tm tm;
	char iso[16];

	if (!localtime_r(&t, &tm))
		return LLONG_MIN;
	long long y = tm.tm_year + 1900LL, m = tm.tm_mon + 1;
	switch (which) {
	case TIER_HOURLY:
		return ((y * 100 + m) * 100 + tm.tm_mday) * 100 + tm.tm_hour;
	case TIER_DAILY:
		return (y * 100 + m) * 100 + tm.tm_mday;
	case TIER_WEEKLY:
		/* ISO 8601 week-based year and week: Monday to Sunday, 01..53 */
		strftime(iso, sizeof(iso), "%G%V", &tm);
		return strtoll(iso, NULL, 10); /* digits only: strftime made them */
	case TIER_MONTHLY:
		return y * 100 + m;
	case TIER_YEARLY:
	case NTIERS:
		break;
	}
	return y;
}

static bool duration_set(const struct bri_duration *d)
{
	return d->years || d->months || d->days || d->hours;
}

bool bri_retention_has_tiers(const struct bri_retention_rules *r)
{
	return r->keep_hourly || r->keep_daily || r->keep_weekly || r->keep_monthly ||
	       r->keep_yearly || duration_set(&r->keep_within);
}

/* newest minus d, in calendar terms in local time (as Go's AddDate, then hours). */
static time_t within_cutoff(time_t newest, const struct bri_duration *d)
{
	struct tm tm;
	time_t t;

	if (!localtime_r(&newest, &tm))
		return newest;
	tm.tm_year -= d->years;
	tm.tm_mon -= d->months;
	tm.tm_mday -= d->days;
	tm.tm_isdst = -1;
	t = mktime(&tm);
	if (t == (time_t)-1)
		return newest;
	return t - (time_t)d->hours * 3600;
}

int bri_retention_plan(const struct bri_retention_item *items, size_t n, time_t now,
                       const struct bri_retention_rules *rules, enum bri_retention_verdict *verdict)
{
	const int counts[NTIERS] = {rules->keep_hourly, rules->keep_daily, rules->keep_weekly,
	                            rules->keep_monthly, rules->keep_yearly};
	const struct bri_duration *w = &rules->keep_within;
	bool age_rule = rules->retention_days != BRI_RETENTION_DAYS_OFF;
	bool within = duration_set(w);
	int left[NTIERS];
	long long last[NTIERS];
	enum bri_retention_verdict *kept_by;
	time_t cutoff, within_from = 0;
	size_t ngood = 0, seen_good = 0;
	struct ranked *r;
	size_t nr = 0;
	int removed = 0;

	if (rules->retention_days < BRI_RETENTION_DAYS_OFF || rules->keep_min < 0 || w->years < 0 ||
	    w->months < 0 || w->days < 0 || w->hours < 0)
		return -EINVAL;
	for (int t = 0; t < NTIERS; t++) {
		if (counts[t] < 0)
			return -EINVAL;
		left[t] = counts[t];
		last[t] = LLONG_MIN;
	}
	/* No age rule and no tier would remove everything past keep_min. */
	if (!age_rule && !bri_retention_has_tiers(rules))
		return -EINVAL;
	cutoff = age_rule ? now - (time_t)rules->retention_days * 86400 : 0;
	r = malloc((n ? n : 1) * sizeof(*r));
	kept_by = malloc((n ? n : 1) * sizeof(*kept_by));
	if (!r || !kept_by) {
		free(r);
		free(kept_by);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		kept_by[i] = BRI_REMOVE_NO_RULE;
		if (items[i].kind == BRI_KIND_UNKNOWN) {
			verdict[i] = BRI_KEEP_UNKNOWN;
			continue;
		}
		if (items[i].kind == BRI_KIND_SAFETY) {
			verdict[i] = BRI_KEEP_SAFETY;
			continue;
		}
		r[nr++] = (struct ranked){.index = i, .time = items[i].time, .name = items[i].name};
		ngood += !items[i].failed;
	}
	if (nr > 1)
		qsort(r, nr, sizeof(*r), newest_first);
	if (within && nr > 0)
		within_from = within_cutoff(r[0].time, w);
	/*
	 * The tiers, restic's way: walk the good backups newest first; a tier
	 * with count left keeps a backup whose period differs from the last one
	 * it kept, and keeps the oldest one too (so a tier that cannot be filled
	 * still reaches back as far as the history goes).
	 */
	for (size_t k = 0; k < nr; k++) {
		size_t i = r[k].index;

		if (items[i].failed)
			continue;
		seen_good++;
		for (int t = 0; t < NTIERS; t++) {
			long long key;

			if (left[t] <= 0)
				continue;
			key = period_key((enum tier)t, items[i].time);
			if (key == last[t] && seen_good != ngood)
				continue;
			if (kept_by[i] == BRI_REMOVE_NO_RULE)
				kept_by[i] = key == last[t] ? BRI_KEEP_OLDEST : tier_verdict[t];
			last[t] = key;
			left[t]--;
		}
	}
	/* k ranks among all, good among the good ones seen so far. */
	for (size_t k = 0, good = 0; k < nr; k++) {
		size_t i = r[k].index;
		bool is_good = !items[i].failed;

		if (items[i].pinned)
			verdict[i] = BRI_KEEP_PINNED;
		else if (age_rule && items[i].time >= cutoff)
			verdict[i] = BRI_KEEP_RECENT;
		else if (within && items[i].time > within_from)
			verdict[i] = BRI_KEEP_WITHIN;
		else if (kept_by[i] != BRI_REMOVE_NO_RULE)
			verdict[i] = kept_by[i];
		else if (is_good && good < (size_t)rules->keep_min)
			verdict[i] = BRI_KEEP_MIN;
		else if (is_good && good == 0)
			verdict[i] = BRI_KEEP_NEWEST_GOOD;
		else if (!is_good && k < (size_t)rules->keep_min)
			verdict[i] = BRI_KEEP_MIN_FAILED;
		else {
			verdict[i] = age_rule ? BRI_REMOVE_EXPIRED : BRI_REMOVE_NO_RULE;
			removed++;
		}
		if (is_good)
			good++;
	}
	free(kept_by);
	free(r);
	return removed;
}

bool bri_retention_removes(enum bri_retention_verdict v)
{
	return v == BRI_REMOVE_EXPIRED || v == BRI_REMOVE_NO_RULE;
}

const char *bri_retention_label(enum bri_retention_verdict v, time_t t, char *buf, size_t size)
{
	static const struct {
		enum bri_retention_verdict v;
		const char *word, *fmt;
	} periods[] = {
	    {BRI_KEEP_HOURLY, "hourly", "%Y-%m-%dT%H"}, {BRI_KEEP_DAILY, "daily", "%Y-%m-%d"},
	    {BRI_KEEP_WEEKLY, "weekly", "%G-W%V"},      {BRI_KEEP_MONTHLY, "monthly", "%Y-%m"},
	    {BRI_KEEP_YEARLY, "yearly", "%Y"},
	};
	const char *word = "?";
	struct tm tm;
	char when[32];

	if (!size)
		return buf;
	for (size_t i = 0; i < sizeof(periods) / sizeof(periods[0]); i++) {
		if (periods[i].v != v)
			continue;
		if (!localtime_r(&t, &tm) || !strftime(when, sizeof(when), periods[i].fmt, &tm))
			snprintf(when, sizeof(when), "?");
		snprintf(buf, size, "%s %s", periods[i].word, when);
		return buf;
	}
	switch (v) {
	case BRI_KEEP_RECENT:
		word = "retention_days";
		break;
	case BRI_KEEP_SAFETY:
		word = "safety";
		break;
	case BRI_KEEP_MIN:
		word = "keep_min";
		break;
	case BRI_REMOVE_EXPIRED:
		word = "expired";
		break;
	case BRI_KEEP_NEWEST_GOOD:
		word = "newest good";
		break;
	case BRI_KEEP_MIN_FAILED:
		word = "keep_min (failed)";
		break;
	case BRI_KEEP_UNKNOWN:
		word = "unknown";
		break;
	case BRI_KEEP_PINNED:
		word = "pinned";
		break;
	case BRI_KEEP_WITHIN:
		word = "within";
		break;
	case BRI_KEEP_OLDEST:
		word = "oldest";
		break;
	case BRI_REMOVE_NO_RULE:
		word = "no rule";
		break;
	default:
		break;
	}
	snprintf(buf, size, "%s", word);
	return buf;
}

const char *bri_retention_describe(const struct bri_retention_rules *r, char *buf, size_t size)
{
	const int counts[NTIERS] = {r->keep_hourly, r->keep_daily, r->keep_weekly, r->keep_monthly,
	                            r->keep_yearly};
	static const char *const words[NTIERS] = {"hourly", "daily", "weekly", "monthly", "yearly"};
	const struct bri_duration *w = &r->keep_within;
	size_t at = 0;

#define ADD(...)                                                                                   \
	do {                                                                                       \
		if (at < size)                                                                     \
			at += (size_t)snprintf(buf + at, size - at, __VA_ARGS__);                  \
	} while (0)
	if (!size)
		return buf;
	buf[0] = '\0';
	for (int t = 0; t < NTIERS; t++)
		if (counts[t])
			ADD("%s %d, ", words[t], counts[t]);
	if (duration_set(w)) {
		ADD("within ");
		if (w->years)
			ADD("%dy", w->years);
		if (w->months)
			ADD("%dm", w->months);
		if (w->days)
			ADD("%dd", w->days);
		if (w->hours)
			ADD("%dh", w->hours);
		ADD(", ");
	}
	if (r->retention_days != BRI_RETENTION_DAYS_OFF)
		ADD("retention %d days, ", r->retention_days);
	ADD("keep at least %d", r->keep_min);
#undef ADD
	return buf;
}

int bri_calendar_duration_parse(const char *text, struct bri_duration *out)
{
	struct bri_duration d = {0};
	const char *p = text;

	if (!text || !*text)
		return -EINVAL;
	while (*p) {
		char *end;
		long v;

		if (*p < '0' || *p > '9')
			return -EINVAL;
		errno = 0;
		v = strtol(p, &end, 10);
		if (errno || v < 0 || v > 100000 || end == p)
			return -EINVAL;
		switch (*end) {
		case 'y':
			d.years += (int)v;
			break;
		case 'm':
			d.months += (int)v;
			break;
		case 'w':
			d.days += (int)v * 7;
			break;
		case 'd':
			d.days += (int)v;
			break;
		case 'h':
			d.hours += (int)v;
			break;
		default:
			return -EINVAL;
		}
		p = end + 1;
	}
	if (!duration_set(&d))
		return -EINVAL;
	*out = d;
	return 0;
}

const char *bri_retention_reason(enum bri_retention_verdict v)
{
	switch (v) {
	case BRI_KEEP_RECENT:
		return "within the retention period";
	case BRI_KEEP_SAFETY:
		return "safety backup, never removed automatically";
	case BRI_KEEP_MIN:
		return "among the newest good ones kept whatever their age (keep_min)";
	case BRI_REMOVE_EXPIRED:
		return "older than the retention period";
	case BRI_KEEP_NEWEST_GOOD:
		return "the newest good backup, never removed";
	case BRI_KEEP_MIN_FAILED:
		return "failed verification but among the newest (keep_min), kept for salvage";
	case BRI_KEEP_UNKNOWN:
		return "not a backup (no usable metadata), never removed";
	case BRI_KEEP_PINNED:
		return "pinned, never removed by cleanup";
	case BRI_KEEP_WITHIN:
		return "within keep_within of the newest backup";
	case BRI_KEEP_HOURLY:
		return "the newest of its hour (keep_hourly)";
	case BRI_KEEP_DAILY:
		return "the newest of its day (keep_daily)";
	case BRI_KEEP_WEEKLY:
		return "the newest of its ISO week (keep_weekly)";
	case BRI_KEEP_MONTHLY:
		return "the newest of its month (keep_monthly)";
	case BRI_KEEP_YEARLY:
		return "the newest of its year (keep_yearly)";
	case BRI_KEEP_OLDEST:
		return "the oldest backup, kept because a calendar rule is not filled";
	case BRI_REMOVE_NO_RULE:
		return "kept by no rule";
	}
	return "?";
}
