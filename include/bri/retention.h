/*
 * The retention policy, pure: a list of backups, a "now" and the rules in,
 * a verdict per backup out. No I/O, so it is tested on synthetic lists.
 * A backup is good when its last verification did not fail (unverified
 * counts as good); the keep_min floor counts good backups only, and the
 * newest good backup always stays, so neither a long pause in backups nor a
 * run of failed ones can empty the store of good backups.
 */
#ifndef BRI_RETENTION_H
#define BRI_RETENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "bri/meta.h"

#define BRI_DEFAULT_RETENTION_DAYS 30
#define BRI_DEFAULT_KEEP_MIN 7

struct bri_retention_item {
	const char *name;   /* backup name */
	time_t time;        /* backup time */
	enum bri_kind kind; /* safety and unknown (not a backup) are never removed */
	bool failed;        /* its last verification failed: not good */
};

struct bri_retention_rules {
	int retention_days; /* remove backups older than this many days */
	int keep_min;       /* always keep this many newest good non-safety backups */
};

enum bri_retention_verdict {
	BRI_KEEP_RECENT = 0,  /* within the retention period */
	BRI_KEEP_SAFETY,      /* a safety backup */
	BRI_KEEP_MIN,         /* among the newest keep_min good ones */
	BRI_REMOVE_EXPIRED,   /* older than the retention period */
	BRI_KEEP_NEWEST_GOOD, /* the newest good backup (matters when keep_min is 0) */
	BRI_KEEP_MIN_FAILED,  /* failed verification, but among the newest keep_min */
	BRI_KEEP_UNKNOWN,     /* not a backup (no usable metadata): never touched */
};

/*
 * Fills verdict[i] for items[i] (any order). Safety and unknown items are
 * kept and count towards nothing. Of the others, ranked newest first: those
 * within the retention period stay; the newest keep_min good ones stay; the
 * newest good one stays; the newest keep_min of all stay too (a failed one
 * is kept for salvage, never instead of a good one); the rest go. Returns
 * the number of BRI_REMOVE_EXPIRED verdicts, or -EINVAL for negative rules.
 */
int bri_retention_plan(const struct bri_retention_item *items, size_t n, time_t now,
		       const struct bri_retention_rules *rules, enum bri_retention_verdict *verdict);

/* A short phrase for a verdict, e.g. "older than 30 days". */
const char *bri_retention_reason(enum bri_retention_verdict v);

#endif
