/*
 * The catalog: an in-memory index of the store's backups, newest first,
 * built from one listing of the store (bri_store_list: for the plain format
 * one directory scan) plus each backup's small metadata and verify sidecars
 * (never the backups' bytes). A refresh reuses entries whose files did not
 * change, so a store of thousands of backups is re-indexed with stat calls
 * only. Used by list, stats, health, cleanup and the mount.
 *
 * A backup is a NAME.db whose NAME.db.meta parses with the seed's keys
 * (SPEC.md section 1). Any other NAME.db (no .meta, or one that does not
 * parse: another program's database in a shared folder, a damaged backup)
 * is kept apart in `unknown`: it is never among `entries`, so nothing that
 * walks the backups (cleanup, verify all, the mount's folders, latest, the
 * background verifier) can touch it. list, stats and health report it.
 */
#ifndef BRI_CATALOG_H
#define BRI_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "bri/meta.h"
#include "bri/rehearsal.h"
#include "bri/store.h"
#include "bri/verify.h"

struct bri_entry {
	char *name;                      /* backup name */
	time_t time;                     /* backup time (meta, else .db mtime) */
	enum bri_kind kind;              /* from meta; by name when meta lacks it;
	                                    BRI_KIND_UNKNOWN exactly when !meta_ok */
	struct stat db_st;               /* the backup's logical size and identity
	                                    (bri_store_stat; plain: lstat of NAME.db) */
	struct stat meta_st;             /* identity of its metadata (zeroed if absent) */
	struct stat verify_st;           /* identity of its verify result (zeroed if absent) */
	struct stat rehearsal_st;        /* identity of its rehearsal status (zeroed if absent) */
	struct stat offsite_st;          /* identity of its offsite push state (zeroed if absent) */
	bool meta_ok;                    /* meta parsed */
	struct bri_meta meta;            /* valid when meta_ok */
	char meta_error[512];            /* why meta is not ok */
	struct bri_verify_result verify; /* last verification; for an unknown
	                                    entry always failed ("not a backup") */
	uint64_t id;                     /* stable per name while the process lives */
	struct bri_rehearsal rehearsal;  /* its last rehearsal (time 0: never, or damaged) */
	bool pinned;                     /* NAME.db.pin exists (looked up at every scan) */
};

struct bri_catalog {
	struct bri_entry **entries; /* the backups, newest first */
	struct bri_entry **by_name; /* entries and unknown together, sorted by name */
	size_t n;                   /* number of entries (backups) */
	struct bri_entry **unknown; /* .db files that are not backups, newest first */
	size_t nunknown;            /* number of them */
	uint64_t generation;        /* increases whenever the content changes */
};

/*
 * Scans the store. With prev (may be NULL), entries whose files (the .db, its sidecars) have
 * the same inode, size and mtime are taken over from prev (and removed from
 * it) instead of re-read. Returns 0 and *out, or a negative errno when the
 * store cannot be read (never an empty catalog because of an error).
 */
int bri_catalog_scan(const struct bri_store *s, struct bri_catalog *prev, struct bri_catalog **out,
                     struct bri_err *err);

void bri_catalog_free(struct bri_catalog *c);

/* The backup called name, or NULL (a binary search; never an unknown file). */
struct bri_entry *bri_catalog_find(const struct bri_catalog *c, const char *name);

/* The newest backup that is not a safety backup, else the newest, else NULL. */
struct bri_entry *bri_catalog_newest(const struct bri_catalog *c);

#endif
