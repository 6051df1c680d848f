/*
 * The SQLite side of a backup: copying one database into another with the
 * online backup API (sqlite3_backup_step(-1), one step, so a steady writer in
 * WAL mode cannot starve it), setting the copy's journal mode to DELETE, and
 * counting rows. The only module besides verify that talks to SQLite. Its
 * functions that hand out SQLite connections are internal (src/core/
 * snapshot_sql.h): no sqlite3 handle crosses the public API here.
 */
#ifndef BRI_SNAPSHOT_H
#define BRI_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bri/common.h"
#include "bri/meta.h"
#include "bri/store.h"

/* What a copy learned about the database it wrote. */
struct bri_snapshot_info {
	int64_t page_size;              /* bytes per page */
	int64_t page_count;             /* pages */
	struct bri_table_count *tables; /* row count per non-sqlite_ table, malloc'd */
	size_t ntables;                 /* entries in tables */
};

/*
 * Copies the database at src_path (opened read-only; the live database is
 * never changed) into a new database at dst_path (an empty temporary file),
 * waiting up to busy_timeout_ms for locks. The copy ends in journal mode
 * DELETE. Does not fsync. Fills info (free with bri_snapshot_info_free).
 * src_path is opened with SQLITE_OPEN_NOFOLLOW: it must hold no symlink
 * (bri_store_open makes the live database's path canonical). dst_path may be
 * a "/proc/self/fd/N/NAME" path (bri_store_fd_path): it is used as it is,
 * never resolved to the folder's current name.
 */
int bri_snapshot_take(const char *src_path, const char *dst_path, int busy_timeout_ms,
                      struct bri_snapshot_info *info, struct bri_err *err);

/*
 * Copies the backup at backup_path into the live database at live_path
 * through a connection on the live file, as one transaction: other
 * connections see the old or the new content, never a mix. A backup of
 * another page size than a live WAL database is first rebuilt in a temporary
 * file in scratch_dir (removed afterwards). A backup without any table (an
 * empty file is one to SQLite) is refused with -EINVAL. Waits up to
 * busy_timeout_ms for a writer, then fails with -EBUSY ("database is
 * locked") having changed nothing. Creates live_path when absent. Runs
 * PRAGMA quick_check on the result: -EBADMSG when it fails (the content was
 * changed); any other error means nothing was changed. live_path is opened
 * with SQLITE_OPEN_NOFOLLOW (no symlink anywhere in it; -journal and -wal
 * opened with O_NOFOLLOW too).
 */
int bri_snapshot_restore(const char *backup_path, const char *live_path, const char *scratch_dir,
                         int busy_timeout_ms, struct bri_err *err);

/*
 * The same restore in steps, so that a safety copy of the live database can
 * be taken while the restore already holds its write lock (no commit can
 * fall between the two):
 *   begin   opens both sides (rebuilding for the page size as above) and
 *           takes the live database's write lock, waiting up to
 *           busy_timeout_ms (-EBUSY, "database is locked"); copies nothing.
 *           In WAL mode readers go on; in rollback-journal mode the lock is
 *           EXCLUSIVE and readers get SQLITE_BUSY until the end.
 *   save    copies the live database as it is under that lock into dst_path
 *           (an empty temporary file, dst_fd open on it), in journal mode
 *           DELETE, and fills info (free with bri_snapshot_info_free). Reads
 *           through a second read-only connection in WAL mode, and through
 *           the locked connection's own file handle otherwise (never a new
 *           descriptor of the live file). Does not fsync.
 *   commit  copies the backup in and runs quick_check (errors as
 *           bri_snapshot_restore); the lock is released when it returns.
 *   end     frees everything; without a commit nothing was changed.
 * begin returns 0 and *out, or a negative errno with nothing to end.
 */
struct bri_snapshot_restore;

/*
 * begin reads the backup through backup (a store's reader, or
 * bri_reader_open_path; opened with bri_snapshot_open_reader): it must stay
 * open until end.
 */
int bri_snapshot_restore_begin_reader(struct bri_reader *backup, const char *live_path,
                                      const char *scratch_dir, int busy_timeout_ms,
                                      struct bri_snapshot_restore **out, struct bri_err *err);
int bri_snapshot_restore_save(struct bri_snapshot_restore *r, const char *dst_path, int dst_fd,
                              struct bri_snapshot_info *info, struct bri_err *err);
int bri_snapshot_restore_commit(struct bri_snapshot_restore *r, struct bri_err *err);
void bri_snapshot_restore_end(struct bri_snapshot_restore *r);

void bri_snapshot_info_free(struct bri_snapshot_info *info);
void bri_table_counts_free(struct bri_table_count *t, size_t n);

#endif
