/*
 * Common types of the bri core: the error record every operation fills, the
 * caller context (who asked, where progress goes) and the small helpers for
 * times in the store's formats. No I/O happens here.
 */
#ifndef BRI_COMMON_H
#define BRI_COMMON_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define BRI_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* What went wrong: a negative errno and a sentence for a person. */
struct bri_err {
	int code;      /* negative errno, 0 when nothing failed */
	char msg[512]; /* what failed and, where useful, what to do */
};

/*
 * Records code and the formatted message in err (err may be NULL) and returns
 * code, so that `return bri_err_set(err, -EINVAL, "...")` reads naturally.
 */
int bri_err_set(struct bri_err *err, int code, const char *fmt, ...) BRI_PRINTF(3, 4);
#ifdef __clang_analyzer__
/* The analyzer sees one file at a time: it is told here that code comes back
 * (else it follows "rc >= 0" paths after a failure that cannot happen). */
#define bri_err_set(err, code, ...) (bri_err_set((err), (code), __VA_ARGS__), (code))
#endif

/*
 * Wraps the cause already in err: err->msg becomes "<formatted context>:
 * <cause>" (the cause being the old message, or strerror(code) when there was
 * none) and err->code becomes code. The context is formatted into a buffer
 * of its own first, so the cause may be any string. Returns code.
 */
int bri_err_wrap(struct bri_err *err, int code, const char *fmt, ...) BRI_PRINTF(3, 4);

/*
 * What a person can do about a failure with negative errno code (a locked
 * database, a full disk, permissions, a read-only file system), or "" when
 * there is nothing general to say. Returns a static string.
 */
const char *bri_err_hint(int code);

/*
 * Formats the words shown for a failure into buf (len bytes, always
 * terminated): err's message (strerror(-code) when err is NULL or empty),
 * then " (<hint>)" from bri_err_hint(code) unless the message already says
 * it. bri-backup and the Python module print these same words.
 */
void bri_err_text(const struct bri_err *err, int code, char *buf, size_t len);

/*
 * Called during long operations; done and total are bytes (total 0: unknown).
 * It may be called from a thread of the core's own while the operation runs,
 * but never twice at the same time.
 */
typedef void (*bri_progress_fn)(void *arg, const char *phase, uint64_t done, uint64_t total);

/* Who asked for an operation and where its progress goes. */
struct bri_op_ctx {
	uid_t uid;                /* caller's uid, for the audit log */
	pid_t pid;                /* caller's pid, 0 when unknown */
	const char *via;          /* "cli" or "mount", for the audit log */
	bri_progress_fn progress; /* may be NULL */
	void *progress_arg;       /* passed to progress */
	/* May be NULL. Asked between chunks of a long read (verify's hash and
	 * database check): true stops the operation with -ECANCELED and it
	 * records nothing. Called from the core's threads, often: keep it cheap. */
	bool (*stop)(void *arg);
	void *stop_arg; /* passed to stop */
};

/* Whether ctx (may be NULL) asks the operation to stop (its stop function). */
bool bri_op_stopped(const struct bri_op_ctx *ctx);

/*
 * Whether errno e (positive or negative) is a shortage of this machine's
 * resources (EMFILE, ENFILE, ENOMEM, ENOSPC, EDQUOT, EAGAIN, EBUSY, EINTR,
 * ENOBUFS), not a property of the file at hand: such an error is retried,
 * never recorded as a verdict on a backup.
 */
bool bri_errno_is_resource(int e);

/*
 * Raises this process's soft limit of open files (RLIMIT_NOFILE) to its
 * hard limit. Returns the new soft limit, or a negative errno.
 */
long bri_raise_nofile_limit(void);

/* A context for the current process (uid, pid, via). */
struct bri_op_ctx bri_op_ctx_self(const char *via);

/* Formats t as local "YYYY-MM-DDTHH:MM:SS" (the seed's backup_time); buf >= 20. */
void bri_time_local(time_t t, char *buf, size_t len);
/* Formats t as UTC "YYYY-MM-DDTHH:MM:SSZ"; buf >= 21. */
void bri_time_utc(time_t t, char *buf, size_t len);
/*
 * Parses "YYYY-MM-DDTHH:MM:SS" with optional fraction and optional "Z" or
 * "+HH:MM" offset; without an offset the time is local. Returns 0 and sets
 * *out, or -EINVAL.
 */
int bri_time_parse(const char *s, time_t *out);

/*
 * An absolute copy of path (a relative one is taken from the current
 * folder, without resolving links), malloc'd; NULL on failure.
 */
char *bri_path_absolute(const char *path);

/* Monotonic seconds, for durations. */
double bri_now_mono(void);

#endif
