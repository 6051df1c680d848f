/*
 * The logging sink of the core and the daemon: stderr or syslog, an optional
 * file, and a bounded ring of recent lines for the mount's ctl/log. One mutex
 * guards the sinks and the ring.
 */
#include "bri/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#define LINE_MAX_BYTES 1024

enum bri_log_level bri_log_current_level = BRI_LOG_WARN;

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
/* Everything below is guarded by log_lock. */
static bool log_to_stderr = true; /* write lines to stderr */
static bool log_to_syslog;        /* write lines to syslog */
static FILE *log_file;            /* append lines here, or NULL */
static char *log_file_path;       /* its path, for bri_log_reopen */
static char **ring;               /* recent lines, ring_cap slots */
static size_t ring_cap;           /* slots in ring */
static size_t ring_next;          /* next slot to write */
static size_t ring_count;         /* filled slots */
static uint64_t ring_end;         /* bytes ever put in the ring: the stream's end offset */
static uint64_t ring_bytes;       /* bytes of the lines the ring holds now */
static uint64_t ring_epoch;       /* times the oldest half was dropped */

static const char *level_names[] = {"error", "warning", "info", "debug"};

int bri_log_init(const struct bri_log_config *cfg)
{
	FILE *f = NULL;
	char **r = NULL;
	char *path = NULL;

	if (cfg->file) {
		path = strdup(cfg->file);
		if (!path)
			return -ENOMEM;
		f = fopen(cfg->file, "ae");
		if (!f) {
			int rc = -errno;

			free(path);
			return rc;
		}
		setvbuf(f, NULL, _IOLBF, 0);
	}
	if (cfg->ring_lines) {
		r = calloc(cfg->ring_lines, sizeof(*r));
		if (!r) {
			if (f)
				fclose(f);
			free(path);
			return -ENOMEM;
		}
	}
	bri_log_shutdown();
	pthread_mutex_lock(&log_lock);
	bri_log_current_level = cfg->level;
	log_to_stderr = cfg->to_stderr;
	log_to_syslog = cfg->to_syslog;
	if (log_to_syslog)
		openlog("bri-backupfs", LOG_PID, LOG_DAEMON);
	log_file = f;
	log_file_path = path;
	ring = r;
	ring_cap = cfg->ring_lines;
	ring_next = ring_count = 0;
	ring_bytes = 0;
	pthread_mutex_unlock(&log_lock);
	return 0;
}

void bri_log_shutdown(void)
{
	pthread_mutex_lock(&log_lock);
	if (log_file)
		fclose(log_file);
	log_file = NULL;
	free(log_file_path);
	log_file_path = NULL;
	if (log_to_syslog)
		closelog();
	log_to_syslog = false;
	for (size_t i = 0; i < ring_cap; i++)
		free(ring[i]);
	free(ring);
	ring = NULL;
	ring_cap = ring_next = ring_count = 0;
	ring_bytes = 0;
	pthread_mutex_unlock(&log_lock);
}

int bri_log_reopen(void)
{
	FILE *f, *old;
	int rc;

	pthread_mutex_lock(&log_lock);
	if (!log_file_path) {
		pthread_mutex_unlock(&log_lock);
		return 0;
	}
	f = fopen(log_file_path, "ae");
	if (!f) {
		rc = -errno; /* keep writing to the old file: no line is lost */
		pthread_mutex_unlock(&log_lock);
		return rc;
	}
	setvbuf(f, NULL, _IOLBF, 0);
	old = log_file;
	log_file = f;
	pthread_mutex_unlock(&log_lock);
	if (old)
		fclose(old);
	return 0;
}

static void log_vwrite(enum bri_log_level level, bool ring_only, const char *fmt, va_list ap)
{
	static const int syslog_levels[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
	char msg[LINE_MAX_BYTES], stamp[32], line[LINE_MAX_BYTES + 64];
	time_t now = time(NULL);
	struct tm tm;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	localtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(line, sizeof(line), "%s %s: %s\n", stamp, level_names[level], msg);

	pthread_mutex_lock(&log_lock);
	if (log_to_stderr && !ring_only)
		fprintf(stderr, "bri: %s: %s\n", level_names[level], msg);
	if (log_to_syslog && !ring_only)
		syslog(syslog_levels[level], "%s", msg);
	if (log_file && !ring_only)
		fputs(line, log_file);
	if (ring_cap) {
		char *copy = strdup(line);

		if (copy) {
			if (ring_count == ring_cap) {
				/*
				 * Full: the oldest half goes at once, so the stream's
				 * window moves (a new epoch) once per half a ring.
				 */
				size_t oldest = ring_next; /* == the oldest slot when full */

				for (size_t i = 0; i < (ring_cap + 1) / 2; i++) {
					size_t s = (oldest + i) % ring_cap;

					ring_bytes -= strlen(ring[s]);
					free(ring[s]);
					ring[s] = NULL;
					ring_count--;
				}
				ring_epoch++;
			}
			ring[ring_next] = copy;
			ring_end += strlen(copy);
			ring_bytes += strlen(copy);
			ring_next = (ring_next + 1) % ring_cap;
			if (ring_count < ring_cap)
				ring_count++;
		}
	}
	pthread_mutex_unlock(&log_lock);
}

void bri_log_write(enum bri_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(level, false, fmt, ap);
	va_end(ap);
}

void bri_log_ring_write(enum bri_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(level, true, fmt, ap);
	va_end(ap);
}

int bri_log_since(uint64_t from, char **out, size_t *len, uint64_t *end)
{
	return bri_log_window(from, out, len, end, NULL, NULL);
}

int bri_log_window(uint64_t from, char **out, size_t *len, uint64_t *end, uint64_t *first,
                   uint64_t *epoch)
{
	size_t start, pos = 0, cap, skip;
	uint64_t at;
	char *buf;

	pthread_mutex_lock(&log_lock);
	cap = ring_cap ? ring_cap : 1;
	start = (ring_next + ring_cap - ring_count) % cap;
	at = ring_end - ring_bytes; /* the offset of the oldest line held */
	skip = from > at ? (size_t)(from - at) : 0;
	if (skip > ring_bytes)
		skip = ring_bytes;
	buf = malloc(ring_bytes - skip + 1);
	if (!buf) {
		pthread_mutex_unlock(&log_lock);
		return -ENOMEM;
	}
	for (size_t i = 0; i < ring_count; i++) {
		const char *l = ring[(start + i) % cap];
		size_t n = strlen(l);

		if (skip >= n) {
			skip -= n;
			continue;
		}
		memcpy(buf + pos, l + skip, n - skip);
		pos += n - skip;
		skip = 0;
	}
	*end = ring_end;
	if (first)
		*first = at;
	if (epoch)
		*epoch = ring_epoch;
	pthread_mutex_unlock(&log_lock);
	buf[pos] = '\0';
	*out = buf;
	*len = pos;
	return 0;
}

uint64_t bri_log_end(uint64_t *start, uint64_t *epoch)
{
	uint64_t end;

	pthread_mutex_lock(&log_lock);
	end = ring_end;
	if (start)
		*start = ring_end - ring_bytes;
	if (epoch)
		*epoch = ring_epoch;
	pthread_mutex_unlock(&log_lock);
	return end;
}

int bri_log_recent(char **out, size_t *len)
{
	size_t total = 0, start, pos = 0, cap;
	char *buf;

	pthread_mutex_lock(&log_lock);
	cap = ring_cap ? ring_cap : 1; /* ring_count is 0 when ring_cap is */
	start = (ring_next + ring_cap - ring_count) % cap;
	for (size_t i = 0; i < ring_count; i++)
		total += strlen(ring[(start + i) % cap]);
	buf = malloc(total + 1);
	if (!buf) {
		pthread_mutex_unlock(&log_lock);
		return -ENOMEM;
	}
	for (size_t i = 0; i < ring_count; i++) {
		const char *l = ring[(start + i) % cap];
		size_t n = strlen(l);

		memcpy(buf + pos, l, n);
		pos += n;
	}
	pthread_mutex_unlock(&log_lock);
	buf[pos] = '\0';
	*out = buf;
	*len = pos;
	return 0;
}
