/*
 * The catalog: an in-memory index of the store's backups, newest first,
 * built from one directory scan plus each backup's small .meta and .verify
 * files (never the .db files). A refresh reuses entries whose files did not
 * change, so a store of thousands of backups is re-indexed with stat calls
 * only. Used by list, stats, health, cleanup and the mount.
 */
#ifndef BRI_CATALOG_H
#define BRI_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "bri/meta.h"
#include "bri/store.h"
#include "bri/verify.h"

struct bri_entry {
	char *name;                      /* backup name */
	time_t time;                     /* backup time (meta, else .db mtime) */
	enum bri_kind kind;              /* from meta; by name when meta lacks it */
	struct stat db_st;               /* lstat of NAME.db */
	struct stat meta_st;             /* lstat of NAME.db.meta (zeroed if absent) */
	struct stat verify_st;           /* lstat of NAME.db.verify (zeroed if absent) */
	bool meta_ok;                    /* meta parsed */
	struct bri_meta meta;            /* valid when meta_ok */
	char meta_error[512];            /* why meta is not ok */
	struct bri_verify_result verify; /* last verification */
	uint64_t id;                     /* stable per name while the process lives */
	bool moved;                      /* internal: taken over by a newer scan */
};

struct bri_catalog {
	struct bri_entry **entries; /* newest first */
	struct bri_entry **by_name; /* the same entries sorted by name, for lookups */
	size_t n;                   /* number of entries */
	uint64_t generation;        /* increases whenever the content changes */
};

/*
 * Scans the store. With prev (may be NULL), entries whose three files have
 * the same inode, size and mtime are taken over from prev (and removed from
 * it) instead of re-read. Returns 0 and *out, or a negative errno when the
 * store cannot be read (never an empty catalog because of an error).
 */
int bri_catalog_scan(const struct bri_store *s, struct bri_catalog *prev, struct bri_catalog **out,
		     struct bri_err *err);

void bri_catalog_free(struct bri_catalog *c);

/* The entry called name, or NULL (a binary search). */
struct bri_entry *bri_catalog_find(const struct bri_catalog *c, const char *name);

/* The newest entry that is not a safety backup, else the newest, else NULL. */
struct bri_entry *bri_catalog_newest(const struct bri_catalog *c);

#endif
