/*
 * Restore rehearsal: proof that a backup restores, not hope. Runs the real
 * restore path (verify, copy through SQLite's backup API, quick_check) into
 * a scratch database in a fresh folder outside the store (never the live
 * database), then the user's own checks against that copy: SQL statements,
 * each optionally followed on its line by "-- expect VALUE" (the first
 * column of the first row, as text; "NULL" for none). Reports how long each
 * step took and each check's result, then removes the scratch copy.
 */
#ifndef BRI_REHEARSE_H
#define BRI_REHEARSE_H

#include <stdbool.h>
#include <stddef.h>

#include "bri/common.h"
#include "bri/store.h"
#include "bri/verify.h"

#define BRI_REHEARSE_CHECKS_MAX       256       /* checks in one file */
#define BRI_REHEARSE_CHECKS_MAX_BYTES (1 << 20) /* size of a checks file */

struct bri_rehearse_check {
	char sql[512];     /* the statement (cut for showing) */
	char expect[128];  /* the expected value, "" when none was given */
	char got[128];     /* what it gave (first column of the first row) */
	bool ok;           /* it ran, and gave the expected value if one was given */
	char error[256];   /* why not, when it failed to run */
	double duration_s; /* how long it took */
};

struct bri_rehearse_report {
	char name[BRI_NAME_MAX + 1];       /* the backup rehearsed */
	struct bri_verify_result verify;   /* its verification */
	double verify_s, restore_s;        /* durations of verify and restore */
	bool restored;                     /* the restore (with quick_check) succeeded */
	struct bri_rehearse_check *checks; /* malloc'd */
	size_t nchecks, failed;            /* how many, how many failed */
	char message[512];                 /* "ok" or why it failed */
};

/*
 * Rehearses backup name of store s: the checks file checks_path (NULL:
 * none) is read first (a bad one fails before anything runs); the scratch
 * folder is made with mkdtemp under scratch_parent (NULL: $TMPDIR or /tmp).
 * Returns 0 when every step and check passed, -EIO when a check or the
 * verification failed, another negative errno when the rehearsal could not
 * run; the report is filled either way (free with bri_rehearse_report_free).
 * ctx's stop (bri_op_stopped) is asked within the verification and between
 * the steps: a rehearsal stopped so returns -ECANCELED and keeps no
 * outcome (it says nothing of the backup); its scratch copy is removed.
 */
int bri_rehearse(struct bri_store *s, const char *name, const char *checks_path,
                 const char *scratch_parent, const struct bri_op_ctx *ctx,
                 struct bri_rehearse_report *report, struct bri_err *err);

void bri_rehearse_report_free(struct bri_rehearse_report *r);

#endif
