/*
 * Unit tests of the common helpers (include/bri/common.h): formatting times
 * as local seed-style and UTC strings, parsing them back (with and without a
 * fraction, "Z", "+HH:MM"/"-HH:MM" offsets, local when no offset), refusing
 * garbage, the error record and the words shown for it, the caller context and the monotonic clock.
 * Time zones are fixed POSIX TZ strings so no tzdata is needed.
 */
#include <errno.h>
#include <unistd.h>

#include "bri/common.h"
#include "expect.h"

#define T0 ((time_t)1760625000) /* 2025-10-16T14:30:00Z */

static void set_tz(const char *tz)
{
	setenv("TZ", tz, 1);
	tzset();
}

static void expect_parse(const char *s, time_t want)
{
	time_t got = (time_t)-12345;
	int rc = bri_time_parse(s, &got);
	EXPECT_MSG(rc == 0, "parse \"%s\": %d", s, rc);
	EXPECT_MSG(got == want, "parse \"%s\": got %lld, expected %lld", s, (long long)got,
	           (long long)want);
}

static void expect_refused(const char *s)
{
	time_t got = (time_t)-12345;
	int rc = bri_time_parse(s, &got);
	EXPECT_MSG(rc == -EINVAL, "parse \"%s\": got %d, expected -EINVAL", s, rc);
	EXPECT_MSG(got == (time_t)-12345, "parse \"%s\": output changed on failure", s);
}

static void test_format(void)
{
	char buf[64];
	set_tz("UTC0");
	bri_time_utc(0, buf, sizeof(buf));
	EXPECT_STREQ(buf, "1970-01-01T00:00:00Z");
	bri_time_utc(T0, buf, sizeof(buf));
	EXPECT_STREQ(buf, "2025-10-16T14:30:00Z");
	bri_time_local(T0, buf, sizeof(buf));
	EXPECT_STREQ(buf, "2025-10-16T14:30:00");

	set_tz("EST5");
	bri_time_local(T0, buf, sizeof(buf));
	EXPECT_STREQ(buf, "2025-10-16T09:30:00");
	bri_time_utc(T0, buf, sizeof(buf));
	EXPECT_STREQ(buf, "2025-10-16T14:30:00Z");

	set_tz("<+0530>-5:30");
	bri_time_local(T0, buf, sizeof(buf));
	EXPECT_STREQ(buf, "2025-10-16T20:00:00");

	/* The documented minimum buffer sizes are enough. */
	char small[21];
	bri_time_utc(T0, small, 21);
	EXPECT_STREQ(small, "2025-10-16T14:30:00Z");
	bri_time_local(T0, small, 20);
	EXPECT_STREQ(small, "2025-10-16T20:00:00");
}

static void test_parse(void)
{
	set_tz("EST5");
	expect_parse("2025-10-16T14:30:00Z", T0);
	expect_parse("2025-10-16T14:30:00.123456Z", T0);
	expect_parse("2025-10-16T14:30:00.5Z", T0);
	expect_parse("2025-10-16T16:30:00+02:00", T0);
	expect_parse("2025-10-16T14:30:00+00:00", T0);
	expect_parse("2025-10-16T09:30:00-05:00", T0);
	expect_parse("2025-10-16T20:00:00.999+05:30", T0);
	/* No offset: local time (EST5 here). */
	expect_parse("2025-10-16T09:30:00", T0);
	expect_parse("2025-10-16T09:30:00.123456", T0);
	set_tz("UTC0");
	expect_parse("2025-10-16T14:30:00", T0);
	expect_parse("1970-01-01T00:00:00Z", 0);
	expect_parse("2000-02-29T12:00:00Z", 951825600);

	/* Round trips through both formats over a range of times. */
	set_tz("<+0530>-5:30");
	for (time_t t = 0; t < (time_t)4000000000LL; t += 86399 * 97 + 13) {
		char buf[64];
		time_t back = 0;
		bri_time_utc(t, buf, sizeof(buf));
		EXPECT_MSG(bri_time_parse(buf, &back) == 0 && back == t, "utc round trip %s", buf);
		bri_time_local(t, buf, sizeof(buf));
		back = 0;
		EXPECT_MSG(bri_time_parse(buf, &back) == 0 && back == t, "local round trip %s",
		           buf);
	}

	/*
	 * A zone with summer time: local times parse back to the same instant
	 * in summer and in winter (the classic tm_isdst = 0 mistake is an hour
	 * off in summer). Checked through formatting, so the repeated autumn
	 * hour is no ambiguity.
	 */
	set_tz("CET-1CEST,M3.5.0,M10.5.0/3");
	expect_parse("2025-07-01T14:00:00", 1751371200); /* 12:00Z, CEST */
	expect_parse("2025-01-15T13:00:00", 1736942400); /* 12:00Z, CET */
	expect_parse("2025-07-01T14:00:00.25", 1751371200);
	for (time_t t = 1735689600; t < 1767225600; t += 1800 + 7) { /* all of 2025 */
		char buf[64], again[64];
		time_t back = 0;
		bri_time_local(t, buf, sizeof(buf));
		EXPECT_MSG(bri_time_parse(buf, &back) == 0, "parse %s", buf);
		bri_time_local(back, again, sizeof(again));
		EXPECT_MSG(strcmp(buf, again) == 0, "CET/CEST: %s parsed to %lld, which is %s", buf,
		           (long long)back, again);
		EXPECT_MSG(back == t || back == t - 3600 || back == t + 3600, "%s: %lld vs %lld",
		           buf, (long long)back, (long long)t);
	}

	expect_refused("");
	expect_refused("garbage");
	expect_refused("2025-10-16");
	expect_refused("2025/10/16T14:30:00");
	expect_refused("2025-10-16T14:30:00Zjunk");
	expect_refused("2025-10-16T14:30:00 trailing");
	expect_refused("2025-10-16T14:30:00+02");
	expect_refused("2025-10-16T14:30:00+0x:00");
	expect_refused("2025-1a-16T14:30:00");
	expect_refused("2025-13-16T14:30:00");
	expect_refused("2025-00-16T14:30:00");
	expect_refused("2025-10-32T14:30:00");
	expect_refused("2025-10-00T14:30:00");
	expect_refused("2025-10-16T25:30:00");
	expect_refused("2025-10-16T14:61:00");
	expect_refused("2025-10-16T14:30:61");
	expect_refused("T14:30:00Z");
	expect_refused("2025-10-16T14:30:00.abcZ");
	expect_refused("-2025-10-16T14:30:00");
	expect_refused(" 2025-10-16T14:30:00");
}

static void test_err_ctx_clock(void)
{
	struct bri_err err = {0};
	EXPECT_EQ_INT(bri_err_set(&err, -ENOENT, "no backup %s", "x"), -ENOENT);
	EXPECT_EQ_INT(err.code, -ENOENT);
	EXPECT_STREQ(err.msg, "no backup x");
	EXPECT_EQ_INT(bri_err_set(NULL, -EIO, "ignored"), -EIO);
	/* A message longer than msg is cut, NUL-terminated. */
	char big[2000];
	memset(big, 'm', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	bri_err_set(&err, -EINVAL, "%s", big);
	EXPECT_EQ_INT(strlen(err.msg), sizeof(err.msg) - 1);

	/* Wrapping keeps the cause after the context, even one that fills msg. */
	bri_err_set(&err, -EIO, "disk %s", "gone");
	EXPECT_EQ_INT(bri_err_wrap(&err, -EPERM, "cannot %s", "restore"), -EPERM);
	EXPECT_EQ_INT(err.code, -EPERM);
	EXPECT_STREQ(err.msg, "cannot restore: disk gone");
	struct bri_err empty = {0};
	bri_err_wrap(&empty, -ENOENT, "no %s", "x");
	EXPECT_STREQ(empty.msg, "no x: No such file or directory");
	bri_err_set(&err, -EINVAL, "%s", big);
	bri_err_wrap(&err, -EINVAL, "ctx");
	EXPECT_EQ_INT(strlen(err.msg), sizeof(err.msg) - 1);
	EXPECT(strncmp(err.msg, "ctx: mmm", 8) == 0);
	EXPECT_EQ_INT(bri_err_wrap(NULL, -EIO, "ignored"), -EIO);

	/* The words shown for a failure: the message and the hint, once. */
	char text[700];
	bri_err_set(&err, -ENOSPC, "writing x");
	bri_err_text(&err, -ENOSPC, text, sizeof(text));
	EXPECT_STREQ(text, "writing x (the disk is full; free space (e.g. bri-backup cleanup) and "
	                   "retry)");
	bri_err_set(&err, -ENOSPC, "writing x (%s)", bri_err_hint(-ENOSPC));
	bri_err_text(&err, -ENOSPC, text, sizeof(text));
	EXPECT_STREQ(text, err.msg);
	bri_err_text(NULL, -EROFS, text, sizeof(text));
	EXPECT_STREQ(text, "Read-only file system (the file system is read-only)");
	bri_err_text(&empty, -ENOENT, text, sizeof(text));
	EXPECT_STREQ(text, empty.msg);
	EXPECT_STREQ(bri_err_hint(-EINVAL), "");
	EXPECT(bri_err_hint(-EPERM) == bri_err_hint(-EACCES));
	bri_err_text(&err, -ENOSPC, text, 8);
	EXPECT_EQ_INT(strlen(text), 7);

	struct bri_op_ctx ctx = bri_op_ctx_self("cli");
	EXPECT_EQ_INT(ctx.uid, getuid());
	EXPECT_EQ_INT(ctx.pid, getpid());
	EXPECT_STREQ(ctx.via, "cli");
	EXPECT(ctx.progress == NULL);

	double a = bri_now_mono();
	usleep(20000);
	double b = bri_now_mono();
	EXPECT(b - a >= 0.015);
	EXPECT(b - a < 5.0);
}

int main(void)
{
	test_format();
	test_parse();
	test_err_ctx_clock();
	return EXPECT_RESULT();
}
