/*
 * Internal to the core (verify.c, inspect.c) and its unit tests: the
 * SQLite connections snapshot.c opens on a backup through the reader VFS,
 * and what is run on them. Not part of the contract: the names have no bri_
 * prefix, so libbri does not export them, and no public header shows a
 * sqlite3 handle for them.
 */
#ifndef BRI_SNAPSHOT_SQL_H
#define BRI_SNAPSHOT_SQL_H

#include <stdbool.h>
#include <stddef.h>

#include "bri/common.h"
#include "bri/meta.h"
#include "bri/store.h"

struct sqlite3;

/*
 * Opens the backup that r reads (bri_store_open_reader, bri_reader_open_path)
 * read-only and immutable through the reader VFS: SQLite reads exactly the
 * bytes r serves, of whatever store format, and nothing is written beside
 * them. r must stay open until the connection is closed. Returns 0 and
 * *out (close with sqlite3_close), or a negative errno with err filled.
 */
int snapshot_open_reader(struct bri_reader *r, struct sqlite3 **out, struct bri_err *err);

/*
 * Attaches the backup that r reads to db as schema, through the reader VFS
 * as snapshot_open_reader does (r must stay open until it is detached or
 * db closed). Returns 0 or a negative errno.
 */
int snapshot_attach_reader(struct sqlite3 *db, struct bri_reader *r, const char *schema,
                           struct bri_err *err);

/* Counts rows of every table not named sqlite_* in db, sorted by name. */
int snapshot_count_rows(struct sqlite3 *db, struct bri_table_count **out, size_t *n,
                        struct bri_err *err);

/*
 * Runs "PRAGMA integrity_check" (quick false) or "quick_check" on db. Returns
 * 0 when it says "ok", -EIO with its first complaint in err otherwise.
 */
int snapshot_check(struct sqlite3 *db, bool quick, struct bri_err *err);

#endif
