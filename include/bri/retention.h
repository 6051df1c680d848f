/*
 * The retention policy, pure: a list of backups, a "now" and the rules in,
 * a verdict per backup out. No I/O, so it is tested on synthetic lists.
 * A backup is good when its last verification did not fail (unverified
 * counts as good); the keep_min floor counts good backups only, and the
 * newest good backup always stays, so neither a long pause in backups nor a
 * run of failed ones can empty the store of good backups.
 *
 * Calendar tiers (restic's forget policy, as documented from 0.16): each of
 * keep_hourly/daily/weekly/monthly/yearly buckets the good non-safety
 * backups by calendar period in local time (hour; day; ISO week, Monday to
 * Sunday; month; year) and keeps the newest backup of each of the last N
 * periods that have one (empty periods do not count). When a rule cannot be
 * filled (fewer such periods than N), the oldest backup is kept too.
 * keep_within keeps every backup newer than the newest backup minus a
 * calendar duration. Rules are ORed. When any tier is set, retention_days
 * applies only when the caller set it too (BRI_RETENTION_DAYS_OFF if not).
 * Pinned backups are never removed; they still fill the tiers.
 */
#ifndef BRI_RETENTION_H
#define BRI_RETENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "bri/meta.h"

#define BRI_DEFAULT_RETENTION_DAYS 30
#define BRI_DEFAULT_KEEP_MIN       7
#define BRI_RETENTION_DAYS_OFF     (-1) /* retention_days: no age rule at all */

struct bri_retention_item {
	const char *name;   /* backup name */
	time_t time;        /* backup time */
	enum bri_kind kind; /* safety and unknown (not a backup) are never removed */
	bool failed;        /* its last verification failed: not good */
	bool pinned;        /* NAME.db.pin exists: never removed */
};

/* A calendar duration for keep_within, e.g. "1y5m7d2h" (restic's form). */
struct bri_duration {
	int years, months, days, hours;
};

struct bri_retention_rules {
	int retention_days; /* remove backups older than this many days */
	int keep_min;       /* always keep this many newest good non-safety backups */
	/* Calendar tiers; 0 means the rule is not used. */
	int keep_hourly, keep_daily, keep_weekly, keep_monthly, keep_yearly;
	struct bri_duration keep_within; /* all zero: not used */
};

enum bri_retention_verdict {
	BRI_KEEP_RECENT = 0,  /* within the retention period */
	BRI_KEEP_SAFETY,      /* a safety backup */
	BRI_KEEP_MIN,         /* among the newest keep_min good ones */
	BRI_REMOVE_EXPIRED,   /* older than the retention period */
	BRI_KEEP_NEWEST_GOOD, /* the newest good backup (matters when keep_min is 0) */
	BRI_KEEP_MIN_FAILED,  /* failed verification, but among the newest keep_min */
	BRI_KEEP_UNKNOWN,     /* not a backup (no usable metadata): never touched */
	BRI_KEEP_PINNED,      /* pinned (NAME.db.pin) */
	BRI_KEEP_WITHIN,      /* within keep_within of the newest backup */
	BRI_KEEP_HOURLY,      /* newest of its hour, among the last keep_hourly hours */
	BRI_KEEP_DAILY,       /* newest of its day ... */
	BRI_KEEP_WEEKLY,      /* newest of its ISO week ... */
	BRI_KEEP_MONTHLY,     /* newest of its month ... */
	BRI_KEEP_YEARLY,      /* newest of its year ... */
	BRI_KEEP_OLDEST,      /* the oldest backup, kept because a tier is not filled */
	BRI_REMOVE_NO_RULE,   /* kept by no rule (tiers in use, no age rule) */
};

/*
 * Fills verdict[i] for items[i] (any order). Safety and unknown items are
 * kept and count towards nothing. Of the others, ranked newest first: pinned
 * ones stay; those within the retention period stay; those kept by a tier
 * or keep_within stay; the newest keep_min good ones stay; the newest good
 * one stays; the newest keep_min of all stay too (a failed one is kept for
 * salvage, never instead of a good one); the rest go. When several rules
 * keep a backup, the verdict names the first in that order. Returns the
 * number of removals (bri_retention_removes), or -EINVAL for bad rules
 * (negative counts, retention_days below BRI_RETENTION_DAYS_OFF).
 */
int bri_retention_plan(const struct bri_retention_item *items, size_t n, time_t now,
                       const struct bri_retention_rules *rules,
                       enum bri_retention_verdict *verdict);

/* A short phrase for a verdict, e.g. "older than the retention period". */
const char *bri_retention_reason(enum bri_retention_verdict v);

/* True for the verdicts that remove the backup. */
bool bri_retention_removes(enum bri_retention_verdict v);

/* True when any calendar tier or keep_within is set. */
bool bri_retention_has_tiers(const struct bri_retention_rules *r);

/*
 * The rule that decided, with the period for a tier, for a backup of time t
 * (local time): "daily 2026-11-29", "weekly 2026-W48", "monthly 2026-11",
 * "yearly 2026", "hourly 2026-11-29T14", "within", "pinned", "safety",
 * "keep_min", "newest good", "retention_days", "oldest", "expired",
 * "no rule", ... Writes at most size bytes into buf and returns buf.
 */
const char *bri_retention_label(enum bri_retention_verdict v, time_t t, char *buf, size_t size);

/*
 * The rules in words for reports, e.g. "retention 30 days, keep at least 7"
 * or "daily 7, weekly 5, within 2d, keep at least 7". Returns buf.
 */
const char *bri_retention_describe(const struct bri_retention_rules *r, char *buf, size_t size);

/*
 * Parses a keep_within duration: one or more <number><unit> with unit y, m
 * (months), w, d or h, e.g. "1y5m7d2h", "36h", "2w". 0 or -EINVAL.
 */
int bri_calendar_duration_parse(const char *text, struct bri_duration *out);

#endif
