/*
 * Converting a store in place between its formats (SPEC.md section 5,
 * `bri-backup migrate --to pages|plain`). Every backup is copied byte for
 * byte into the other format beside the old one and checked against its
 * checksum; then the store's format switches in one atomic step (store.json
 * written, or removed for plain); then the old format's files go. A marker,
 * migrate.json, says a conversion is under way until the end. Killed at any
 * point, every backup is complete and verifiable in the format the store
 * then has, and running migrate again finishes the job (or, with the other
 * --to, undoes it).
 */
#ifndef BRI_MIGRATE_H
#define BRI_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>

#include "bri/common.h"
#include "bri/store.h"

/* The marker of a conversion under way, in the store folder. */
#define BRI_MIGRATE_MARKER "migrate.json"

struct bri_migrate_result {
	char from[16];    /* the store's format before */
	char to[16];      /* and after */
	size_t converted; /* backups copied into the new format by this run */
	size_t kept;      /* already converted by an interrupted run: checked, kept */
	bool finished;    /* an interrupted run's leftovers were removed */
	bool already;     /* the store was of that format, with nothing to finish */
};

/*
 * Converts s to the format named to ("plain" or "pages"). Takes the store's
 * lock and refuses (-EBUSY) when another process holds it. A backup that
 * does not match its checksum stops the conversion before the switch
 * (-EBADMSG naming it; nothing is lost). Returns 0 or a negative errno with
 * err filled; res is filled as far as the run got.
 */
int bri_migrate(struct bri_store *s, const char *to, const struct bri_op_ctx *ctx,
                struct bri_migrate_result *res, struct bri_err *err);

#endif
