/*
 * The retention policy as a pure function: safety backups stay, the newest
 * keep_min other backups stay, and of the rest those older than the
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
		if (items[i].kind == BRI_KIND_SAFETY) {
			verdict[i] = BRI_KEEP_SAFETY;
			continue;
		}
		r[nr++] = (struct ranked){.index = i, .time = items[i].time, .name = items[i].name};
	}
	qsort(r, nr, sizeof(*r), newest_first);
	for (size_t k = 0; k < nr; k++) {
		size_t i = r[k].index;

		if (items[i].time >= cutoff)
			verdict[i] = BRI_KEEP_RECENT;
		else if (k < (size_t)rules->keep_min)
			verdict[i] = BRI_KEEP_MIN;
		else {
			verdict[i] = BRI_REMOVE_EXPIRED;
			removed++;
		}
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
		return "among the newest kept whatever their age (keep_min)";
	case BRI_REMOVE_EXPIRED:
		return "older than the retention period";
	}
	return "?";
}
