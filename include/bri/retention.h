/*
 * The retention policy, pure: a list of backups, a "now" and the rules in,
 * a verdict per backup out. No I/O, so it is tested on synthetic lists.
 */
#ifndef BRI_RETENTION_H
#define BRI_RETENTION_H

#include <stddef.h>
#include <time.h>

#include "bri/meta.h"

#define BRI_DEFAULT_RETENTION_DAYS 30
#define BRI_DEFAULT_KEEP_MIN 7

struct bri_retention_item {
	const char *name;   /* backup name */
	time_t time;        /* backup time */
	enum bri_kind kind; /* safety backups are never removed */
};

struct bri_retention_rules {
	int retention_days; /* remove backups older than this many days */
	int keep_min;       /* always keep this many newest non-safety backups */
};

enum bri_retention_verdict {
	BRI_KEEP_RECENT = 0, /* within the retention period */
	BRI_KEEP_SAFETY,     /* a safety backup */
	BRI_KEEP_MIN,        /* among the newest keep_min */
	BRI_REMOVE_EXPIRED,  /* older than the retention period */
};

/*
 * Fills verdict[i] for items[i] (any order). Returns the number of
 * BRI_REMOVE_EXPIRED verdicts, or -EINVAL for negative rules.
 */
int bri_retention_plan(const struct bri_retention_item *items, size_t n, time_t now,
		       const struct bri_retention_rules *rules, enum bri_retention_verdict *verdict);

/* A short phrase for a verdict, e.g. "older than 30 days". */
const char *bri_retention_reason(enum bri_retention_verdict v);

#endif
