/*
 * Backup and rehearsal schedules, pure: parsing "daily@HH:MM", "hourly",
 * "weekly", "monthly" or "every=N{s,m,h,d}"
 * and computing when a run is due, including a run missed while the machine
 * was off. No clock and no I/O: times are arguments, local time is used for
 * daily schedules.
 */
#ifndef BRI_SCHEDULE_H
#define BRI_SCHEDULE_H

#include <stdbool.h>
#include <time.h>

#include "bri/common.h"

enum bri_schedule_kind { BRI_SCHEDULE_NONE = 0, BRI_SCHEDULE_DAILY, BRI_SCHEDULE_EVERY };

struct bri_schedule {
	enum bri_schedule_kind kind; /* none, daily at a time, or every interval */
	int hour, minute;            /* daily: the local time of day */
	long interval_s;             /* every: the interval in seconds (hourly: 3600) */
};

/*
 * Parses spec ("daily@02:00", "daily" meaning 02:00, "hourly", "weekly"
 * meaning every=7d, "monthly" meaning every=30d, "every=6h", "every=90m",
 * "every=3600", "none"). Returns 0, or -EINVAL with the reason.
 */
int bri_schedule_parse(const char *spec, struct bri_schedule *out, struct bri_err *err);

/* The time between two runs of sc in seconds (daily: 86400); 0 for none. */
long bri_schedule_period(const struct bri_schedule *sc);

/*
 * Parses a duration "N" (seconds) or "N{s,m,h,d}" into *out seconds;
 * -EINVAL when malformed or over 10 years.
 */
int bri_duration_parse(const char *s, long *out);

/* The first run time strictly after t. */
time_t bri_schedule_next(const struct bri_schedule *sc, time_t t);

/*
 * Whether a run is due at now, given the last run (0: never): true when a
 * scheduled time has passed since last_run, and when last_run is after now
 * (a clock that went back must not stop the schedule).
 */
bool bri_schedule_due(const struct bri_schedule *sc, time_t last_run, time_t now);

/* Human form of sc ("daily at 02:00", "every 21600 s", "none") into buf. */
void bri_schedule_describe(const struct bri_schedule *sc, char *buf, size_t len);

#endif
