/*
 * The small shared pieces of the core: error records (the words and hint
 * shown for one, and which errors are a shortage of resources), the
 * open-files limit, the caller context and time formatting and parsing in
 * the store's formats.
 */
#include "bri/common.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* In parentheses: common.h's analyzer-only macro of that name is not expanded. */
int(bri_err_set)(struct bri_err *err, int code, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return code;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return code;
}

int bri_err_wrap(struct bri_err *err, int code, const char *fmt, ...)
{
	/* sized from the type, not from err, which may be NULL */
	char context[sizeof(((struct bri_err *)0)->msg)];
	char joined[2 * sizeof(context) + 2];
	const char *cause;
	size_t n;
	va_list ap;

	if (!err)
		return code;
	va_start(ap, fmt);
	vsnprintf(context, sizeof(context), fmt, ap);
	va_end(ap);
	cause = err->msg[0] ? err->msg : strerror(code < 0 ? -code : code);
	snprintf(joined, sizeof(joined), "%s: %.*s", context, (int)sizeof(err->msg) - 1, cause);
	n = strlen(joined);
	if (n >= sizeof(err->msg))
		n = sizeof(err->msg) - 1;
	memcpy(err->msg, joined, n);
	err->msg[n] = '\0';
	err->code = code;
	return code;
}

const char *bri_err_hint(int code)
{
	switch (code) {
	case -EBUSY:
		return "the live database is locked by a writer; stop the writers and retry";
	case -ENOSPC:
		return "the disk is full; free space (e.g. bri-backup cleanup) and retry";
	case -EACCES:
	case -EPERM:
		return "check the permissions of the database and of the backup folder";
	case -EROFS:
		return "the file system is read-only";
	default:
		return "";
	}
}

void bri_err_text(const struct bri_err *err, int code, char *buf, size_t len)
{
	const char *msg = err && err->msg[0] ? err->msg : strerror(code < 0 ? -code : code);
	const char *hint = bri_err_hint(code);

	if (!len)
		return;
	if (*hint && !strstr(msg, hint))
		snprintf(buf, len, "%s (%s)", msg, hint);
	else
		snprintf(buf, len, "%s", msg);
}

bool bri_errno_is_resource(int e)
{
	switch (e < 0 ? -e : e) {
	case EMFILE:
	case ENFILE:
	case ENOMEM:
	case ENOSPC:
	case EDQUOT:
	case EAGAIN:
	case EBUSY:
	case EINTR:
	case ENOBUFS:
		return true;
	default:
		return false;
	}
}

long bri_raise_nofile_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			return -errno;
	}
	return rl.rlim_cur == RLIM_INFINITY ? LONG_MAX : (long)rl.rlim_cur;
}

bool bri_op_stopped(const struct bri_op_ctx *ctx)
{
	return ctx && ctx->stop && ctx->stop(ctx->stop_arg);
}

struct bri_op_ctx bri_op_ctx_self(const char *via)
{
	struct bri_op_ctx ctx = {
	    .uid = getuid(),
	    .pid = getpid(),
	    .via = via,
	};
	return ctx;
}

void bri_time_local(time_t t, char *buf, size_t len)
{
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
}

void bri_time_utc(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int parse_digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)(*p)[i]))
			return -EINVAL;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

static int expect_char(const char **p, char c)
{
	if (**p != c)
		return -EINVAL;
	(*p)++;
	return 0;
}

int bri_time_parse(const char *s, time_t *out)
{
	struct tm tm = {0};
	int year, mon, day, hour, min, sec, oh, om;
	const char *p = s;
	time_t t;

	if (!s)
		return -EINVAL;
	if (parse_digits(&p, 4, &year) || expect_char(&p, '-') || parse_digits(&p, 2, &mon) ||
	    expect_char(&p, '-') || parse_digits(&p, 2, &day))
		return -EINVAL;
	if (*p != 'T' && *p != ' ')
		return -EINVAL;
	p++;
	if (parse_digits(&p, 2, &hour) || expect_char(&p, ':') || parse_digits(&p, 2, &min) ||
	    expect_char(&p, ':') || parse_digits(&p, 2, &sec))
		return -EINVAL;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		while (isdigit((unsigned char)*p))
			p++;
	}
	if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
		return -EINVAL;
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	if (*p == '\0') {
		tm.tm_isdst = -1;
		t = mktime(&tm);
	} else if (*p == 'Z' && p[1] == '\0') {
		t = timegm(&tm);
	} else if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1;

		p++;
		if (parse_digits(&p, 2, &oh) || expect_char(&p, ':') || parse_digits(&p, 2, &om) ||
		    *p != '\0' || oh > 23 || om > 59)
			return -EINVAL;
		t = timegm(&tm) - sign * (oh * 3600 + om * 60);
	} else {
		return -EINVAL;
	}
	if (t == (time_t)-1)
		return -EINVAL;
	*out = t;
	return 0;
}

char *bri_path_absolute(const char *path)
{
	char cwd[PATH_MAX], *out;

	if (path[0] == '/')
		return strdup(path);
	if (!getcwd(cwd, sizeof(cwd)))
		return NULL;
	if (asprintf(&out, "%s/%s", cwd, path) < 0)
		return NULL;
	return out;
}

double bri_now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
