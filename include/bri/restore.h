/*
 * Restoring a backup into the live database (SPEC.md section 2, restore):
 * verify, safety backup, copy through SQLite's backup API into a connection
 * on the live file, quick_check. Never copies a file over the database.
 */
#ifndef BRI_RESTORE_H
#define BRI_RESTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "bri/common.h"
#include "bri/store.h"
#include "bri/verify.h"

struct bri_restore_opts {
	bool verify;         /* verify the backup first (default true) */
	int busy_timeout_ms; /* wait for a writer; 0: default */
};

/* What a restore did, for the mount's restore/X.report and the CLI. */
struct bri_restore_report {
	char source[4096];              /* the backup's name or path */
	time_t started;                 /* when it started */
	bool verified;                  /* verification ran */
	struct bri_verify_result check; /* its result, when it ran */
	char safety_name[BRI_NAME_MAX + 1]; /* the safety backup, "" if none */
	int result;                     /* 0 or the negative errno */
	char message[512];              /* "restored" or why it failed */
	double duration_s;              /* how long it took */
};

/*
 * Restores what (a backup name of the store, or a path to a .db file
 * anywhere; NULL: the newest backup). Returns 0 or a negative errno; the
 * report is filled either way.
 */
int bri_restore(struct bri_store *s, const char *what, const struct bri_restore_opts *opts,
		const struct bri_op_ctx *ctx, struct bri_restore_report *report, struct bri_err *err);

/* Text of a report, "key: value" lines, malloc'd. */
int bri_restore_report_render(const struct bri_restore_report *r, char **out, size_t *len);

#endif
