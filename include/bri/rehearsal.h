/*
 * Rehearsal status: the outcome of a backup's last restore rehearsal
 * (bri/rehearse.h runs them), kept in the store as the backup's
 * BRI_SIDECAR_REHEARSAL (plain format: NAME.db.rehearsal; JSON: time,
 * result, reason, durations, checks), never in the .meta, which stays
 * immutable. It survives remounts, is written by whoever rehearsed (the
 * CLI, ctl/rehearse, the mount's schedule) and goes with the backup. The
 * catalog loads it (bri_entry.rehearsal); list, health, metrics and the
 * mount's NAME/rehearsal file show it. Nothing here runs a rehearsal.
 */
#ifndef BRI_REHEARSAL_H
#define BRI_REHEARSAL_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "bri/common.h"

#define BRI_REHEARSAL_MAX_BYTES  4096 /* a status file larger than this is not read */
#define BRI_REHEARSAL_REASON_MAX 480  /* bytes of a failure's reason kept */

struct bri_rehearsal {
	time_t time;                               /* when it ran; 0: never rehearsed */
	bool ok;                                   /* every step and check passed */
	double verify_s, restore_s;                /* durations of verify and restore */
	size_t checks, checks_failed;              /* the user's checks: run, failed */
	char reason[BRI_REHEARSAL_REASON_MAX + 1]; /* why it failed ("" when ok) */
};

struct bri_store;
struct bri_catalog;
struct bri_entry;

/*
 * Records r as backup name's last rehearsal, under the store's lock.
 * Nothing is written (0) when the backup is gone by then (a cleanup ran
 * meanwhile). Returns 0 or a negative errno with err.
 */
int bri_rehearsal_record(struct bri_store *s, const char *name, const struct bri_rehearsal *r,
                         struct bri_err *err);

/*
 * Reads name's last rehearsal into *out: 0; -ENOENT when it was never
 * rehearsed (out->time 0); -EINVAL when the file does not parse (then out
 * says failed, with the reason).
 */
int bri_rehearsal_read(const struct bri_store *s, const char *name, struct bri_rehearsal *out);

/*
 * The one-line form of r, with a newline: "ok 2026-11-30T02:10 (restore
 * 1.3 s, 4 checks)", "failed: REASON (2026-11-30T02:10, restore 1.3 s, 4
 * checks)" or "never" (local time). Returns the length written
 * (cut to fit len).
 */
size_t bri_rehearsal_describe(const struct bri_rehearsal *r, char *buf, size_t len);

/* The backup of c whose rehearsal is the newest, or NULL when none was rehearsed. */
const struct bri_entry *bri_rehearsal_newest(const struct bri_catalog *c);

/*
 * The backup a scheduled rehearsal takes: the newest good one (its last
 * verification did not fail) that is not a safety backup, else the newest
 * good one; NULL when there is none.
 */
const struct bri_entry *bri_rehearsal_pick(const struct bri_catalog *c);

#endif
