/*
 * Unit tests of the schedule module: parsing of the schedule and duration
 * forms, the next run, and "due" after normal operation and after a machine
 * was off across one or many scheduled times. Times are fixed; TZ is set to
 * UTC so daily schedules are exact.
 */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "bri/schedule.h"
#include "expect.h"
#include "../../src/core/internal.h"

/* 2025-10-16T14:30:00Z */
#define T0 ((time_t)1760625000)

static void test_parse(void)
{
	struct bri_schedule sc;
	struct bri_err err = {0};
	long d;

	EXPECT_EQ_INT(bri_schedule_parse("daily@02:00", &sc, &err), 0);
	EXPECT_EQ_INT(sc.kind, BRI_SCHEDULE_DAILY);
	EXPECT_EQ_INT(sc.hour, 2);
	EXPECT_EQ_INT(sc.minute, 0);
	EXPECT_EQ_INT(bri_schedule_parse("daily@23:59", &sc, &err), 0);
	EXPECT_EQ_INT(sc.minute, 59);
	EXPECT_EQ_INT(bri_schedule_parse("hourly", &sc, &err), 0);
	EXPECT_EQ_INT(sc.kind, BRI_SCHEDULE_EVERY);
	EXPECT_EQ_INT(sc.interval_s, 3600);
	EXPECT_EQ_INT(bri_schedule_parse("every=6h", &sc, &err), 0);
	EXPECT_EQ_INT(sc.interval_s, 6 * 3600);
	EXPECT_EQ_INT(bri_schedule_parse("every=90m", &sc, &err), 0);
	EXPECT_EQ_INT(sc.interval_s, 90 * 60);
	EXPECT_EQ_INT(bri_schedule_parse("every=2", &sc, &err), 0);
	EXPECT_EQ_INT(sc.interval_s, 2);
	EXPECT_EQ_INT(bri_schedule_parse("weekly", &sc, &err), 0);
	EXPECT_EQ_INT(sc.kind, BRI_SCHEDULE_EVERY);
	EXPECT_EQ_INT(sc.interval_s, 7 * 86400);
	EXPECT_EQ_INT(bri_schedule_period(&sc), 7 * 86400);
	EXPECT_EQ_INT(bri_schedule_parse("monthly", &sc, &err), 0);
	EXPECT_EQ_INT(sc.interval_s, 30 * 86400);
	EXPECT_EQ_INT(bri_schedule_parse("daily", &sc, &err), 0);
	EXPECT_EQ_INT(bri_schedule_period(&sc), 86400);
	EXPECT_EQ_INT(bri_schedule_parse("none", &sc, &err), 0);
	EXPECT_EQ_INT(sc.kind, BRI_SCHEDULE_NONE);
	EXPECT_EQ_INT(bri_schedule_period(&sc), 0);

	const char *bad[] = {"daily@24:00",  "daily@2:00", "daily@02:60", "daily@",
	                     "weekly@02:00", "yearly",     "every=",      "every=0",
	                     "every=6x",     "every=-1h",  "every=h",     "every=99999999999d",
	                     "daily@02:00 "};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err.msg[0] = '\0';
		EXPECT_MSG(bri_schedule_parse(bad[i], &sc, &err) == -EINVAL, "accepted '%s'",
		           bad[i]);
		EXPECT_MSG(err.msg[0] != '\0', "no reason for '%s'", bad[i]);
	}
	EXPECT_EQ_INT(bri_duration_parse("7d", &d), 0);
	EXPECT_EQ_INT(d, 7 * 86400);
	EXPECT_EQ_INT(bri_duration_parse("30", &d), 0);
	EXPECT_EQ_INT(d, 30);
	EXPECT_EQ_INT(bri_duration_parse("1w", &d), 0);
	EXPECT_EQ_INT(d, 7 * 86400);
	EXPECT_EQ_INT(bri_duration_parse("1.5h", &d), -EINVAL);
	EXPECT_EQ_INT(bri_duration_parse("", &d), -EINVAL);
	EXPECT_EQ_INT(bri_duration_parse("5hh", &d), -EINVAL);
}

static void test_daily(void)
{
	struct bri_schedule sc;

	bri_schedule_parse("daily@02:00", &sc, NULL);
	/* 14:30 on the 16th: next run 02:00 on the 17th. */
	EXPECT_EQ_INT(bri_schedule_next(&sc, T0), T0 + 11 * 3600 + 30 * 60);
	/* Exactly at 02:00: the next is a day later. */
	time_t at2 = T0 + 11 * 3600 + 30 * 60;
	EXPECT_EQ_INT(bri_schedule_next(&sc, at2), at2 + 86400);
	EXPECT_EQ_INT(schedule_prev(&sc, T0, 0), at2 - 86400);
	/* Ran at 02:00 today: not due until tomorrow 02:00. */
	EXPECT(!bri_schedule_due(&sc, at2 - 86400, T0));
	EXPECT(bri_schedule_due(&sc, at2 - 86400, at2));
	/* Never ran: due. Off for three days: due once. */
	EXPECT(bri_schedule_due(&sc, 0, T0));
	EXPECT(bri_schedule_due(&sc, T0 - 3 * 86400, T0));
	/* Ran yesterday at 23:00 (after yesterday's 02:00, before today's): due. */
	EXPECT(bri_schedule_due(&sc, at2 - 86400 - 3 * 3600, T0));
}

static void test_every(void)
{
	struct bri_schedule sc;

	bri_schedule_parse("every=6h", &sc, NULL);
	EXPECT_EQ_INT(bri_schedule_next(&sc, T0), T0 + 6 * 3600);
	EXPECT(!bri_schedule_due(&sc, T0, T0 + 6 * 3600 - 1));
	EXPECT(bri_schedule_due(&sc, T0, T0 + 6 * 3600));
	EXPECT(bri_schedule_due(&sc, T0, T0 + 100 * 3600));
	EXPECT_EQ_INT(schedule_prev(&sc, T0 + 13 * 3600, T0), T0 + 12 * 3600);
	bri_schedule_parse("none", &sc, NULL);
	EXPECT(!bri_schedule_due(&sc, 0, T0));
	EXPECT_EQ_INT(bri_schedule_next(&sc, T0), -1);
}

/* A last run dated in the future (clock went back, restored store) never stops the schedule. */
static void test_future_last_run(void)
{
	struct bri_schedule sc;

	bri_schedule_parse("every=5s", &sc, NULL);
	EXPECT(bri_schedule_due(&sc, T0 + 3600, T0));
	EXPECT(bri_schedule_due(&sc, T0 + 1, T0));
	EXPECT(!bri_schedule_due(&sc, T0, T0));
	EXPECT(!bri_schedule_due(&sc, T0, T0 + 4));
	bri_schedule_parse("daily@02:00", &sc, NULL);
	EXPECT(bri_schedule_due(&sc, T0 + 3 * 86400, T0));
	bri_schedule_parse("hourly", &sc, NULL);
	EXPECT(bri_schedule_due(&sc, T0 + 60, T0));
	bri_schedule_parse("none", &sc, NULL);
	EXPECT(!bri_schedule_due(&sc, T0 + 60, T0));
}

static void test_describe(void)
{
	struct bri_schedule sc;
	char buf[64];

	bri_schedule_parse("daily@02:05", &sc, NULL);
	bri_schedule_describe(&sc, buf, sizeof(buf));
	EXPECT_STREQ(buf, "daily at 02:05");
	bri_schedule_parse("none", &sc, NULL);
	bri_schedule_describe(&sc, buf, sizeof(buf));
	EXPECT_STREQ(buf, "none");
}

int main(void)
{
	setenv("TZ", "UTC", 1);
	tzset();
	test_parse();
	test_daily();
	test_every();
	test_future_last_run();
	test_describe();
	return EXPECT_RESULT();
}
