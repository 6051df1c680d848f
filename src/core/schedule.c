/*
 * Schedules as pure time arithmetic: daily runs at a local time of day,
 * interval runs (hourly, weekly: 7 days, monthly: 30 days, every=N)
 * anchored at the last run. Missed runs (the machine was off)
 * show as "due" once, not once per missed slot.
 */
#include "bri/schedule.h"
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DURATION_MAX (10L * 365 * 86400)

int bri_duration_parse(const char *s, long *out)
{
	char *end;
	long v, unit = 1;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case '\0':
	case 's':
		break;
	case 'm':
		unit = 60;
		break;
	case 'h':
		unit = 3600;
		break;
	case 'd':
		unit = 86400;
		break;
	case 'w':
		unit = 7 * 86400;
		break;
	default:
		return -EINVAL;
	}
	if (*end && end[1])
		return -EINVAL;
	if (v > DURATION_MAX / unit)
		return -EINVAL;
	*out = v * unit;
	return 0;
}

int bri_schedule_parse(const char *spec, struct bri_schedule *out, struct bri_err *err)
{
	struct bri_schedule sc = {0};

	if (!spec || !*spec || strcmp(spec, "none") == 0 || strcmp(spec, "off") == 0) {
		*out = sc;
		return 0;
	}
	if (strcmp(spec, "hourly") == 0) {
		sc.kind = BRI_SCHEDULE_EVERY;
		sc.interval_s = 3600;
	} else if (strcmp(spec, "weekly") == 0 || strcmp(spec, "monthly") == 0) {
		sc.kind = BRI_SCHEDULE_EVERY;
		sc.interval_s = (spec[0] == 'w' ? 7L : 30L) * 86400;
	} else if (strcmp(spec, "daily") == 0) {
		sc.kind = BRI_SCHEDULE_DAILY;
		sc.hour = 2;
	} else if (strncmp(spec, "daily@", 6) == 0) {
		const char *t = spec + 6;

		if (!(isdigit((unsigned char)t[0]) && isdigit((unsigned char)t[1]) && t[2] == ':' &&
		      isdigit((unsigned char)t[3]) && isdigit((unsigned char)t[4]) && !t[5]))
			return bri_err_set(
			    err, -EINVAL, "schedule '%s': the time must be HH:MM, e.g. daily@02:00",
			    spec);
		sc.kind = BRI_SCHEDULE_DAILY;
		sc.hour = (t[0] - '0') * 10 + (t[1] - '0');
		sc.minute = (t[3] - '0') * 10 + (t[4] - '0');
		if (sc.hour > 23 || sc.minute > 59)
			return bri_err_set(err, -EINVAL, "schedule '%s': no such time of day",
			                   spec);
	} else if (strncmp(spec, "every=", 6) == 0) {
		sc.kind = BRI_SCHEDULE_EVERY;
		if (bri_duration_parse(spec + 6, &sc.interval_s) < 0 || sc.interval_s < 1)
			return bri_err_set(err, -EINVAL,
			                   "schedule '%s': the interval must be N or N followed by "
			                   "s, m, h or d, e.g. every=6h",
			                   spec);
	} else {
		return bri_err_set(
		    err, -EINVAL,
		    "unknown schedule '%s' (use daily@HH:MM, hourly, weekly, monthly "
		    "or every=6h)",
		    spec);
	}
	*out = sc;
	return 0;
}

long bri_schedule_period(const struct bri_schedule *sc)
{
	switch (sc->kind) {
	case BRI_SCHEDULE_DAILY:
		return 86400;
	case BRI_SCHEDULE_EVERY:
		return sc->interval_s;
	case BRI_SCHEDULE_NONE:
		break;
	}
	return 0;
}

/* The daily run time on the local day of t. */
static time_t daily_on_day_of(const struct bri_schedule *sc, time_t t)
{
	struct tm tm;

	localtime_r(&t, &tm);
	tm.tm_hour = sc->hour;
	tm.tm_min = sc->minute;
	tm.tm_sec = 0;
	tm.tm_isdst = -1;
	return mktime(&tm);
}

time_t bri_schedule_next(const struct bri_schedule *sc, time_t t)
{
	time_t run;

	switch (sc->kind) {
	case BRI_SCHEDULE_DAILY:
		run = daily_on_day_of(sc, t);
		/* Step whole days; 26 h covers DST changes, then snap to the time. */
		while (run <= t)
			run = daily_on_day_of(sc, run + 26 * 3600);
		return run;
	case BRI_SCHEDULE_EVERY:
		return t + sc->interval_s;
	case BRI_SCHEDULE_NONE:
		break;
	}
	return (time_t)-1;
}

time_t schedule_prev(const struct bri_schedule *sc, time_t now, time_t last_run)
{
	time_t run;

	switch (sc->kind) {
	case BRI_SCHEDULE_DAILY:
		run = daily_on_day_of(sc, now);
		if (run > now)
			run = daily_on_day_of(sc, run - 22 * 3600);
		return run;
	case BRI_SCHEDULE_EVERY:
		if (!last_run)
			return now;
		if (now - last_run < sc->interval_s)
			return last_run;
		return last_run + ((now - last_run) / sc->interval_s) * sc->interval_s;
	case BRI_SCHEDULE_NONE:
		break;
	}
	return (time_t)-1;
}

bool bri_schedule_due(const struct bri_schedule *sc, time_t last_run, time_t now)
{
	if (sc->kind == BRI_SCHEDULE_NONE)
		return false;
	/*
	 * A last run in the future (the clock went back, a store restored
	 * from another machine) is no run: due now, rather than never.
	 */
	if (!last_run || last_run > now)
		return true;
	if (sc->kind == BRI_SCHEDULE_EVERY)
		return now - last_run >= sc->interval_s;
	return last_run < schedule_prev(sc, now, last_run);
}

void bri_schedule_describe(const struct bri_schedule *sc, char *buf, size_t len)
{
	switch (sc->kind) {
	case BRI_SCHEDULE_DAILY:
		snprintf(buf, len, "daily at %02d:%02d", sc->hour, sc->minute);
		return;
	case BRI_SCHEDULE_EVERY:
		snprintf(buf, len, "every %ld s", sc->interval_s);
		return;
	case BRI_SCHEDULE_NONE:
		break;
	}
	snprintf(buf, len, "none");
}
