/*
 * The audit log: audit.jsonl in the store, one JSON line per create, verify,
 * restore, cleanup and delete (time, operation, name, result, detail, uid,
 * pid, via). Lines older than 90 days are dropped when the log is rewritten.
 */
#ifndef BRI_AUDIT_H
#define BRI_AUDIT_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "bri/common.h"
#include "bri/store.h"

#define BRI_AUDIT_RETENTION_DAYS 90

/*
 * Appends one line and mirrors it to the log. result is 0 or a negative
 * errno; detail may be NULL; duration_s < 0 means not measured. Failure to
 * write the audit log is logged, not returned: it never fails the operation
 * it records. A successful create, create-safety, delete or cleanup also
 * records the store's logical and stored bytes after it (store_logical_bytes,
 * store_stored_bytes: the status page's store-over-time chart).
 */
void bri_audit_record(struct bri_store *s, const char *op, const char *name, int result,
		      const char *detail, double duration_s, const struct bri_op_ctx *ctx);

/* The last audit record of one operation, as read back by bri_audit_last. */
struct bri_audit_last {
	time_t time;       /* when it was recorded, 0 when never */
	bool ok;           /* its result was ok */
	double duration_s; /* its duration, < 0 when unknown */
};

/*
 * Reads the tail of audit.jsonl and fills last[i] with the newest record of
 * operation ops[i] (n of them). Returns 0 or a negative errno (-ENOENT when
 * there is no audit log yet).
 */
int bri_audit_last(const struct bri_store *s, const char *const *ops, size_t n,
		   struct bri_audit_last *last);

/*
 * One record of audit.jsonl as bri_audit_scan hands it over. The strings
 * live only during the callback.
 */
struct bri_audit_rec {
	time_t time;           /* when it was recorded */
	const char *op;        /* operation: create, create-safety, verify, restore, ... */
	const char *name;      /* the backup it was about, "" when none */
	bool ok;               /* its result was ok */
	const char *result;    /* "ok" or the error's words */
	const char *detail;    /* detail or reason, "" when none */
	double duration_s;     /* how long it took, < 0 when not measured */
	int64_t store_logical; /* the store's logical bytes after it, -1 when not recorded */
	int64_t store_stored;  /* the store's stored bytes after it, -1 when not recorded */
};

/*
 * Calls fn(arg, rec) for each record of audit.jsonl recorded at or after
 * since, oldest first; lines that do not parse are skipped. fn returns 0 to
 * go on, anything else stops the scan (and is returned). Streams the file in
 * bounded memory. 0 (also when there is no audit log) or a negative errno.
 */
int bri_audit_scan(const struct bri_store *s, time_t since,
                   int (*fn)(void *arg, const struct bri_audit_rec *rec), void *arg);

/* A reader's place in audit.jsonl (bri_audit_follow); zero it before the first call. */
struct bri_audit_cursor {
	bool started;     /* a call positioned it */
	uint64_t ino;     /* the file read */
	uint64_t off;     /* bytes of it consumed (whole lines) */
	time_t last_time; /* time of the newest line seen */
};

/* Cap on the bytes one bri_audit_follow call reads (the rest: next call). */
#define BRI_AUDIT_FOLLOW_MAX (1u << 20)
/* The first call shows at most this much of the log's end. */
#define BRI_AUDIT_FIRST_MAX (64u << 10)

/*
 * Calls fn(arg, text) for each record added to audit.jsonl since the cursor,
 * text being one readable line: "TIME OPERATION NAME: ok[: detail] (by VIA,
 * pid P, uid U)" or "...: failed: RESULT[: detail] (...)". Records whose via
 * equals skip_via (may be NULL) are left out, except in the first call,
 * which shows the last BRI_AUDIT_FIRST_MAX bytes of the log whoever wrote
 * them. A file rewritten by pruning is followed by time. 0 (also when there
 * is no audit log yet) or a negative errno.
 */
int bri_audit_follow(const struct bri_store *s, struct bri_audit_cursor *cur,
		     const char *skip_via, void (*fn)(void *arg, const char *text), void *arg);

/*
 * Drops lines older than keep_days from audit.jsonl at time now, and, when
 * more than 64 MiB remain, the oldest lines down to 32 MiB. Streams the file
 * (bounded memory whatever its size); rewrites it durably only when a line
 * goes. Returns 0 or a negative errno. bri_audit_record prunes by itself when
 * an append takes the file past 64 MiB.
 */
int bri_audit_prune(struct bri_store *s, time_t now, int keep_days);

#endif
