/*
 * The one logging entry point: to stderr or syslog, optionally a file, and a
 * ring of recent lines that the mount serves as ctl/log. Thread-safe. The
 * level is checked before the arguments are evaluated.
 */
#ifndef BRI_LOG_H
#define BRI_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bri/common.h"

enum bri_log_level { BRI_LOG_ERR = 0, BRI_LOG_WARN = 1, BRI_LOG_INFO = 2, BRI_LOG_DEBUG = 3 };

/* Where log lines go. */
struct bri_log_config {
	enum bri_log_level level; /* lines above this level are dropped */
	bool to_stderr;           /* write to stderr */
	bool to_syslog;           /* write to syslog (ident "bri-backupfs") */
	const char *file;         /* append to this file too; NULL: none */
	size_t ring_lines;        /* recent lines kept for bri_log_recent; 0: none */
};

/* Sets the sinks. Default before any call: level WARN, stderr, no ring. */
int bri_log_init(const struct bri_log_config *cfg);
/* Closes the file and syslog and frees the ring. */
void bri_log_shutdown(void);
/*
 * Opens the log file again by its path (after logrotate moved it), then
 * closes the old one. 0 (also when there is no log file), or a negative
 * errno: then lines keep going to the old file.
 */
int bri_log_reopen(void);

extern enum bri_log_level bri_log_current_level;

void bri_log_write(enum bri_log_level level, const char *fmt, ...) BRI_PRINTF(2, 3);
/*
 * As bri_log_write, into the ring of recent lines only (not stderr, syslog
 * or the file): for lines another process logged already, such as the
 * audit records the mount shows in ctl/log.
 */
void bri_log_ring_write(enum bri_log_level level, const char *fmt, ...) BRI_PRINTF(2, 3);

#define bri_log(level, ...)                                                                        \
	do {                                                                                       \
		if ((level) <= bri_log_current_level)                                              \
			bri_log_write((level), __VA_ARGS__);                                       \
	} while (0)

/*
 * The recent lines, oldest first, newline-terminated, as one malloc'd string
 * that the caller frees; *len gets its length. Returns 0 or -ENOMEM.
 */
int bri_log_recent(char **out, size_t *len);

/*
 * The recent lines as a stream that only grows: every line ever logged has
 * a fixed byte offset. Returns the bytes from offset from (from the oldest
 * line held when from is older) as a malloc'd string, *len its length, and
 * in *end the stream's end offset. 0 or -ENOMEM.
 */
int bri_log_since(uint64_t from, char **out, size_t *len, uint64_t *end);

/*
 * As bri_log_since, also giving in *start the offset of the oldest line held
 * and in *epoch how many times the oldest lines were dropped (when the ring
 * is full its oldest half goes at once, so the window moves rarely); start
 * and epoch may be NULL.
 */
int bri_log_window(uint64_t from, char **out, size_t *len, uint64_t *end, uint64_t *start,
                   uint64_t *epoch);

/* The stream's end offset, and (each may be NULL) the window's start and epoch. */
uint64_t bri_log_end(uint64_t *start, uint64_t *epoch);

#endif
