/*
 * Removing backups: cleanup by the retention policy (with a dry run that
 * says what would go and why) and delete of one named backup. Both hold the
 * store's lock and write the audit log.
 */
#ifndef BRI_CLEANUP_H
#define BRI_CLEANUP_H

#include <stdbool.h>
#include <stddef.h>

#include "bri/catalog.h"
#include "bri/common.h"
#include "bri/retention.h"
#include "bri/store.h"

struct bri_cleanup_item {
	char name[BRI_NAME_MAX + 1];        /* backup name */
	time_t time;                        /* its time */
	enum bri_retention_verdict verdict; /* why it goes or stays */
};

/*
 * The retention plan of catalog c's backups at time now: verdict[i] for
 * c->entries[i] (unknown .db files are not entries, so never in a plan).
 * Good means the last verification did not fail. The one place the CLI,
 * cleanup and the mount's ctl/cleanup get their plan from. Returns the
 * number to remove, -EINVAL for negative rules, or -ENOMEM.
 */
int bri_cleanup_plan(const struct bri_catalog *c, time_t now,
                     const struct bri_retention_rules *rules, enum bri_retention_verdict *verdict);

/*
 * Applies the rules at time now. Fills *items (malloc'd, every backup with its
 * verdict, newest first) and *n; removes the expired ones unless dry_run.
 * Returns the number removed (or that would be), or a negative errno.
 */
int bri_cleanup(struct bri_store *s, const struct bri_retention_rules *rules, time_t now,
		bool dry_run, const struct bri_op_ctx *ctx, struct bri_cleanup_item **items,
		size_t *n, struct bri_err *err);

/*
 * Removes backup name: the .db first (so it stops being a backup at once),
 * then .meta and .verify. A .db whose .meta is missing or does not parse is
 * not a backup and is never removed: -EINVAL, saying so. Returns 0, -ENOENT,
 * -EINVAL or another errno.
 */
int bri_delete(struct bri_store *s, const char *name, const struct bri_op_ctx *ctx,
	       struct bri_err *err);

/* As bri_delete, for a caller that already holds bri_store_lock. */
int bri_delete_locked(struct bri_store *s, const char *name, const struct bri_op_ctx *ctx,
		      struct bri_err *err);

#endif
