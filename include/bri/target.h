/*
 * What a user means by a backup argument: the one place that decides, for
 * bri-backup, the mount and the Python module alike. A target is a backup
 * of the store (by name, "latest", "NAME.db", or a path into the store) or a
 * database file elsewhere with its metadata beside it (a copy of the store:
 * "X.db" with "X.db.meta"; a copy of the mount: "NAME/bri.db" with
 * "NAME/meta.json"). Verifying a target goes through here too, so that
 * verify and restore accept the same things.
 */
#ifndef BRI_TARGET_H
#define BRI_TARGET_H

#include <stdbool.h>

#include "bri/catalog.h"
#include "bri/common.h"
#include "bri/meta.h"
#include "bri/store.h"
#include "bri/verify.h"

/* The name that means the newest backup (bri_catalog_newest), as the mount's latest link. */
#define BRI_TARGET_LATEST "latest"

/* Resolve only backup names and "latest", never a path (the mount's ctl/ files). */
#define BRI_TARGET_NAMES_ONLY 1u

enum bri_target_kind {
	BRI_TARGET_BACKUP = 1, /* a backup of the store: name */
	BRI_TARGET_FILE = 2,   /* a database file outside the store: path, meta_path */
};

struct bri_target {
	enum bri_target_kind kind;   /* what it is */
	char name[BRI_NAME_MAX + 1]; /* BACKUP: the backup's name; FILE: "" */
	char *path;                  /* FILE: the .db, absolute (malloc'd); BACKUP: NULL */
	char *meta_path;             /* FILE: its metadata file, NULL when none was found */
};

/*
 * Resolves what: NULL or "" (the newest backup), "latest" (the same), a
 * backup name, "NAME.db" for backup NAME, or (unless BRI_TARGET_NAMES_ONLY)
 * a path: one containing '/', or an existing file ending in ".db"; a path to
 * a backup of this store is that backup (so a result is recorded), a
 * directory holding s->db_filename is that file (a copied backup folder of
 * the mount). cat is the catalog to take "latest" from (NULL: scanned now).
 * s may be NULL (no store yet): then only paths resolve.
 * Returns 0 and *out (free with bri_target_free), or -ENOENT (no such
 * backup or file, or no backups for "latest"), -EINVAL (not a valid name,
 * not a regular file, the live database itself) with err filled.
 */
int bri_target_resolve(const struct bri_store *s, const struct bri_catalog *cat, const char *what,
                       unsigned flags, struct bri_target *out, struct bri_err *err);

void bri_target_free(struct bri_target *t);

/*
 * The metadata of a FILE target, from its meta_path. Returns 0 and *meta
 * (bri_meta_free), or a negative errno with why (why_len bytes) saying what
 * is missing or wrong: a verification of the file then fails with it.
 */
int bri_target_load_meta(const struct bri_target *t, struct bri_meta *meta, char *why,
                         size_t why_len);

/*
 * Verifies t: a BACKUP as bri_verify_backup (recorded), a FILE as
 * bri_verify_file against its metadata (nothing recorded). Returns as they
 * do.
 */
int bri_target_verify(struct bri_store *s, const struct bri_target *t, const struct bri_op_ctx *ctx,
                      struct bri_verify_result *res, struct bri_err *err);

#endif
