/*
 * The retention policy as a pure function: safety backups and unknown files
 * stay, the newest keep_min good backups and the newest good one stay, the
 * newest keep_min of all stay, and of the rest those older than the
 * retention period go. No I/O and no clock: "now" is an argument.
 */
#include "bri/retention.h"

#include <errno.h>
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

int bri_retention_plan(const struct bri_retention_item *items, size_t n, time_t now,
		       const struct bri_retention_rules *rules, enum bri_retention_verdict *verdict)
{
	time_t cutoff;
	struct ranked *r;
	size_t nr = 0;
	int removed = 0;

	if (rules->retention_days < 0 || rules->keep_min < 0)
		return -EINVAL;
	cutoff = now - (time_t)rules->retention_days * 86400;
	r = malloc((n ? n : 1) * sizeof(*r));
	if (!r)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (items[i].kind == BRI_KIND_UNKNOWN) {
			verdict[i] = BRI_KEEP_UNKNOWN;
			continue;
		}
		if (items[i].kind == BRI_KIND_SAFETY) {
			verdict[i] = BRI_KEEP_SAFETY;
			continue;
		}
		r[nr++] = (struct ranked){.index = i, .time = items[i].time, .name = items[i].name};
	}
	qsort(r, nr, sizeof(*r), newest_first);
	/* k ranks among all, good among the good ones seen so far. */
	for (size_t k = 0, good = 0; k < nr; k++) {
		size_t i = r[k].index;
		bool is_good = !items[i].failed;

		if (items[i].time >= cutoff)
			verdict[i] = BRI_KEEP_RECENT;
		else if (is_good && good < (size_t)rules->keep_min)
			verdict[i] = BRI_KEEP_MIN;
		else if (is_good && good == 0)
			verdict[i] = BRI_KEEP_NEWEST_GOOD;
		else if (!is_good && k < (size_t)rules->keep_min)
			verdict[i] = BRI_KEEP_MIN_FAILED;
		else {
			verdict[i] = BRI_REMOVE_EXPIRED;
			removed++;
		}
		if (is_good)
			good++;
	}
	free(r);
	return removed;
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
	}
	return "?";
}
