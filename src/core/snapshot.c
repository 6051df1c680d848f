/*
 * SQLite's online backup API, both ways: taking a snapshot of the live
 * database into a new file, and restoring a backup into the live database
 * through a connection on it. One sqlite3_backup_step(-1) each: a stepped
 * copy restarts after every foreign commit in WAL mode and may never finish.
 */
#include "bri/snapshot.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bri/log.h"
#include "reader_vfs.h"
#include "snapshot_sql.h"
#include "store_int.h"

/* A negative errno for an SQLite result code. */
static int sqlite_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_CANTOPEN:
		return -ENOENT;
	case SQLITE_NOTADB:
	case SQLITE_CORRUPT:
		return -EIO;
	default:
		return -EIO;
	}
}

/*
 * As sqlite_errno, but a write that failed because the disk is full is
 * -ENOSPC whatever SQLite called it (some paths report SQLITE_IOERR).
 */
static int db_errno(sqlite3 *db, int rc)
{
	int sys = db ? sqlite3_system_errno(db) : 0;

	if ((rc & 0xff) == SQLITE_IOERR && (sys == ENOSPC || sys == EDQUOT))
		return -ENOSPC;
	return sqlite_errno(rc);
}

/*
 * Write combining for the snapshot's temporary file. SQLite writes a copy
 * one page at a time (262,144 pwrite calls of 4 KiB for 1 GiB, the largest
 * cost of a create); this VFS shim, used only for the private temporary file
 * of bri_snapshot_take, gathers consecutive writes of the main database file
 * into one buffer of up to 128 KiB and writes it with one call. Anything else
 * SQLite does to the file (read, size, truncate, sync, lock release, file
 * control, mapping, close) writes the buffer out first, so SQLite always
 * sees its own writes.
 * The first error of a deferred write is kept and returned by every later
 * call and by WC_FCNTL_FLUSH, which bri_snapshot_take checks before it
 * closes the copy: a failed write can never go unnoticed. Journal and WAL
 * files pass straight through.
 */
#define WC_VFS_NAME "bri-write-combine"
#define FD_VFS_NAME "bri-fd-path"
/* The unix VFS writes at most 0x1ffff bytes a call (seekAndWrite masks the length). */
#define WC_BUF_BYTES 0x1ffffu
#define WC_FCNTL_FLUSH 0x62726901 /* private op: write the buffer out, return its result */

struct wc_file {
	sqlite3_file base;  /* methods: wc_methods */
	sqlite3_file *real; /* the underlying file (memory right after this struct) */
	char *buf;          /* pending bytes; NULL for a pass-through file */
	sqlite3_int64 off;  /* file offset of buf[0] */
	size_t len;         /* bytes pending in buf */
	int err;            /* first error of a deferred write, SQLITE_OK if none */
};

static sqlite3_vfs wc_vfs;
static sqlite3_vfs fd_vfs; /* the default VFS with wc_full_pathname, for reading backups */
static sqlite3_vfs *wc_root;
static pthread_once_t wc_once = PTHREAD_ONCE_INIT;
static int wc_registered = SQLITE_ERROR;
static int fd_registered = SQLITE_ERROR;

static int wc_flush(struct wc_file *f)
{
	int rc;

	if (f->err != SQLITE_OK || !f->len)
		return f->err;
	rc = f->real->pMethods->xWrite(f->real, f->buf, (int)f->len, f->off);
	f->len = 0;
	if (rc != SQLITE_OK)
		f->err = rc;
	return rc;
}

static int wc_close(sqlite3_file *file)
{
	struct wc_file *f = (struct wc_file *)file;
	int rc = f->buf ? wc_flush(f) : SQLITE_OK;
	int rc2 = f->real->pMethods->xClose(f->real);

	free(f->buf);
	f->buf = NULL;
	return rc != SQLITE_OK ? rc : rc2;
}

static int wc_read(sqlite3_file *file, void *data, int amt, sqlite3_int64 off)
{
	struct wc_file *f = (struct wc_file *)file;
	int rc = f->buf ? wc_flush(f) : SQLITE_OK;

	return rc != SQLITE_OK ? rc : f->real->pMethods->xRead(f->real, data, amt, off);
}

static int wc_write(sqlite3_file *file, const void *data, int amt, sqlite3_int64 off)
{
	struct wc_file *f = (struct wc_file *)file;
	int rc;

	if (!f->buf)
		return f->real->pMethods->xWrite(f->real, data, amt, off);
	if (f->err != SQLITE_OK)
		return f->err;
	if (f->len && off == f->off + (sqlite3_int64)f->len &&
	    f->len + (size_t)amt <= WC_BUF_BYTES) {
		memcpy(f->buf + f->len, data, (size_t)amt);
		f->len += (size_t)amt;
		return SQLITE_OK;
	}
	rc = wc_flush(f);
	if (rc != SQLITE_OK)
		return rc;
	if ((size_t)amt >= WC_BUF_BYTES)
		return f->real->pMethods->xWrite(f->real, data, amt, off);
	memcpy(f->buf, data, (size_t)amt);
	f->off = off;
	f->len = (size_t)amt;
	return SQLITE_OK;
}

static int wc_truncate(sqlite3_file *file, sqlite3_int64 size)
{
	struct wc_file *f = (struct wc_file *)file;
	int rc = f->buf ? wc_flush(f) : SQLITE_OK;

	return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int wc_sync(sqlite3_file *file, int flags)
{
	struct wc_file *f = (struct wc_file *)file;
	int rc = f->buf ? wc_flush(f) : SQLITE_OK;

	return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int wc_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
	struct wc_file *f = (struct wc_file *)file;
	int rc = f->buf ? wc_flush(f) : SQLITE_OK;

	return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize(f->real, size);
}

static int wc_lock(sqlite3_file *file, int level)
{
	struct wc_file *f = (struct wc_file *)file;

	return f->real->pMethods->xLock(f->real, level);
}

static int wc_unlock(sqlite3_file *file, int level)
{
	struct wc_file *f = (struct wc_file *)file;
	int rc = f->buf ? wc_flush(f) : SQLITE_OK;
	int rc2 = f->real->pMethods->xUnlock(f->real, level);

	return rc != SQLITE_OK ? rc : rc2;
}

static int wc_check_reserved(sqlite3_file *file, int *out)
{
	struct wc_file *f = (struct wc_file *)file;

	return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int wc_file_control(sqlite3_file *file, int op, void *arg)
{
	struct wc_file *f = (struct wc_file *)file;
	int rc = f->buf ? wc_flush(f) : SQLITE_OK;

	if (op == WC_FCNTL_FLUSH)
		return rc;
	if (rc != SQLITE_OK)
		return rc;
	return f->real->pMethods->xFileControl(f->real, op, arg);
}

static int wc_sector_size(sqlite3_file *file)
{
	struct wc_file *f = (struct wc_file *)file;

	return f->real->pMethods->xSectorSize(f->real);
}

static int wc_device_characteristics(sqlite3_file *file)
{
	struct wc_file *f = (struct wc_file *)file;

	return f->real->pMethods->xDeviceCharacteristics(f->real);
}

static int wc_shm_map(sqlite3_file *file, int pg, int pgsz, int extend, void volatile **pp)
{
	struct wc_file *f = (struct wc_file *)file;

	if (f->real->pMethods->iVersion < 2)
		return SQLITE_IOERR_SHMMAP;
	return f->real->pMethods->xShmMap(f->real, pg, pgsz, extend, pp);
}

static int wc_shm_lock(sqlite3_file *file, int offset, int n, int flags)
{
	struct wc_file *f = (struct wc_file *)file;

	if (f->real->pMethods->iVersion < 2)
		return SQLITE_IOERR_SHMLOCK;
	return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

static void wc_shm_barrier(sqlite3_file *file)
{
	struct wc_file *f = (struct wc_file *)file;

	if (f->real->pMethods->iVersion >= 2)
		f->real->pMethods->xShmBarrier(f->real);
}

static int wc_shm_unmap(sqlite3_file *file, int delete_flag)
{
	struct wc_file *f = (struct wc_file *)file;

	if (f->real->pMethods->iVersion < 2)
		return SQLITE_OK;
	return f->real->pMethods->xShmUnmap(f->real, delete_flag);
}

static int wc_fetch(sqlite3_file *file, sqlite3_int64 off, int amt, void **pp)
{
	struct wc_file *f = (struct wc_file *)file;
	int rc = f->buf ? wc_flush(f) : SQLITE_OK;

	*pp = NULL;
	if (rc != SQLITE_OK || f->real->pMethods->iVersion < 3)
		return rc;
	return f->real->pMethods->xFetch(f->real, off, amt, pp);
}

static int wc_unfetch(sqlite3_file *file, sqlite3_int64 off, void *p)
{
	struct wc_file *f = (struct wc_file *)file;

	if (f->real->pMethods->iVersion < 3)
		return SQLITE_OK;
	return f->real->pMethods->xUnfetch(f->real, off, p);
}

static const sqlite3_io_methods wc_methods = {
	.iVersion = 3,
	.xClose = wc_close,
	.xRead = wc_read,
	.xWrite = wc_write,
	.xTruncate = wc_truncate,
	.xSync = wc_sync,
	.xFileSize = wc_file_size,
	.xLock = wc_lock,
	.xUnlock = wc_unlock,
	.xCheckReservedLock = wc_check_reserved,
	.xFileControl = wc_file_control,
	.xSectorSize = wc_sector_size,
	.xDeviceCharacteristics = wc_device_characteristics,
	.xShmMap = wc_shm_map,
	.xShmLock = wc_shm_lock,
	.xShmBarrier = wc_shm_barrier,
	.xShmUnmap = wc_shm_unmap,
	.xFetch = wc_fetch,
	.xUnfetch = wc_unfetch,
};

#define WC_REAL_OFFSET ((sizeof(struct wc_file) + 7) & ~(size_t)7)

static int wc_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
		   int *out_flags)
{
	struct wc_file *f = (struct wc_file *)file;
	int rc;

	(void)vfs;
	memset(f, 0, sizeof(*f));
	f->real = (sqlite3_file *)((char *)file + WC_REAL_OFFSET);
	if (flags & SQLITE_OPEN_MAIN_DB) {
		f->buf = malloc(WC_BUF_BYTES);
		if (!f->buf)
			return SQLITE_NOMEM;
	}
	rc = wc_root->xOpen(wc_root, name, f->real, flags, out_flags);
	if (f->real->pMethods) {
		f->base.pMethods = &wc_methods;
	} else {
		free(f->buf);
		f->buf = NULL;
	}
	return rc;
}

/*
 * A name through the store's descriptor ("/proc/self/fd/N/...") stays one:
 * resolving it, as the unix VFS does with symlinks, would turn it back into
 * the store's path, which may name another folder by the time SQLite opens
 * the file (or its -journal and -wal beside it).
 */
static int wc_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
	static const char fd_prefix[] = "/proc/self/fd/";
	size_t len = strlen(name);

	(void)vfs;
	if (strncmp(name, fd_prefix, sizeof(fd_prefix) - 1) != 0)
		return wc_root->xFullPathname(wc_root, name, n, out);
	if (len >= (size_t)n)
		return SQLITE_CANTOPEN;
	memcpy(out, name, len + 1);
	return SQLITE_OK;
}

static void wc_register(void)
{
	wc_root = sqlite3_vfs_find(NULL);
	if (!wc_root)
		return;
	wc_vfs = *wc_root;
	wc_vfs.pNext = NULL;
	wc_vfs.zName = WC_VFS_NAME;
	wc_vfs.szOsFile = (int)(WC_REAL_OFFSET + (size_t)wc_root->szOsFile);
	wc_vfs.xOpen = wc_open;
	wc_vfs.xFullPathname = wc_full_pathname;
	wc_registered = sqlite3_vfs_register(&wc_vfs, 0);
	fd_vfs = *wc_root;
	fd_vfs.pNext = NULL;
	fd_vfs.zName = FD_VFS_NAME;
	fd_vfs.xFullPathname = wc_full_pathname;
	fd_registered = sqlite3_vfs_register(&fd_vfs, 0);
}

/* The write-combining VFS's name, or NULL (the default VFS) if unavailable. */
static const char *wc_vfs_name(void)
{
	pthread_once(&wc_once, wc_register);
	return wc_registered == SQLITE_OK ? WC_VFS_NAME : NULL;
}

/*
 * The VFS for opening path: for a name through a folder's descriptor
 * ("/proc/self/fd/N/..."), the default one that keeps such names as they
 * are (wc_full_pathname); else NULL, the default VFS itself.
 */
static const char *fd_vfs_name(const char *path)
{
	if (strncmp(path, "/proc/self/fd/", 14) != 0)
		return NULL;
	pthread_once(&wc_once, wc_register);
	return fd_registered == SQLITE_OK ? FD_VFS_NAME : NULL;
}

static int open_db_vfs(const char *path, int flags, const char *vfs, int busy_timeout_ms,
		       sqlite3 **out, struct bri_err *err)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, vfs);

	if (rc != SQLITE_OK) {
		bool symlink = db && sqlite3_extended_errcode(db) == SQLITE_CANTOPEN_SYMLINK;
		int e = symlink ? -ELOOP : sqlite_errno(rc), sys = db ? sqlite3_system_errno(db) : 0;

		/* Out of descriptors or memory is no property of the database. */
		if (!symlink &&
		    ((rc & 0xff) == SQLITE_CANTOPEN || (rc & 0xff) == SQLITE_IOERR) &&
		    bri_errno_is_resource(sys))
			e = -sys;
		if (symlink)
			bri_err_set(err, e,
				    "refusing to open database %s: it is, or its path passes "
				    "through, a symbolic link",
				    path);
		else
			bri_err_set(err, e, "cannot open database %s: %s", path,
				    db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		sqlite3_close(db);
		return e;
	}
	sqlite3_busy_timeout(db, busy_timeout_ms);
	sqlite3_extended_result_codes(db, 1);
	*out = db;
	return 0;
}

static int open_db(const char *path, int flags, int busy_timeout_ms, sqlite3 **out,
		   struct bri_err *err)
{
	return open_db_vfs(path, flags, NULL, busy_timeout_ms, out, err);
}

static int exec_sql(sqlite3 *db, const char *sql, const char *what, struct bri_err *err)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK) {
		int e = db_errno(db, rc);

		bri_err_set(err, e, "%s: %s", what, msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return e;
	}
	return 0;
}

static int query_int(sqlite3 *db, const char *sql, int64_t *out, struct bri_err *err)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

	if (rc != SQLITE_OK)
		return bri_err_set(err, sqlite_errno(rc), "%s: %s", sql, sqlite3_errmsg(db));
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (rc != SQLITE_ROW)
		return bri_err_set(err, sqlite_errno(rc), "%s: %s", sql, sqlite3_errstr(rc));
	return 0;
}

/* Fills err for a backup step on dst that returned rc (not SQLITE_DONE/OK). */
static int step_error(sqlite3 *dst, int rc, const char *what, struct bri_err *err)
{
	int e = db_errno(dst, rc);

	if (e == -EBUSY)
		return bri_err_set(err, e, "%s: database is locked (another process holds "
				   "a lock past the busy timeout); nothing was changed",
				   what);
	return bri_err_set(err, e, "%s: %s", what,
			   sqlite3_errcode(dst) != SQLITE_OK ? sqlite3_errmsg(dst)
							     : sqlite3_errstr(rc));
}

/* Runs a whole-database copy from src to dst in one step. */
static int copy_all(sqlite3 *dst, sqlite3 *src, const char *what, struct bri_err *err)
{
	sqlite3_backup *b = sqlite3_backup_init(dst, "main", src, "main");
	int rc;

	if (!b)
		return bri_err_set(err, sqlite_errno(sqlite3_errcode(dst)), "%s: %s", what,
				   sqlite3_errmsg(dst));
	rc = sqlite3_backup_step(b, -1);
	sqlite3_backup_finish(b);
	if (rc != SQLITE_DONE)
		return step_error(dst, rc, what, err);
	return 0;
}

int snapshot_count_rows(sqlite3 *db, struct bri_table_count **out, size_t *n,
			struct bri_err *err)
{
	const char *list = "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE "
			   "'sqlite\\_%' ESCAPE '\\' AND sql NOT LIKE 'CREATE VIRTUAL%' ORDER BY name";
	struct bri_table_count *t = NULL;
	size_t count = 0, cap = 0;
	sqlite3_stmt *st;
	int rc;

	rc = sqlite3_prepare_v2(db, list, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return bri_err_set(err, sqlite_errno(rc), "cannot list tables: %s",
				   sqlite3_errmsg(db));
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		char *sql;
		int64_t rows = 0;

		if (count == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			struct bri_table_count *nt = realloc(t, ncap * sizeof(*t));

			if (!nt) {
				rc = bri_err_set(err, -ENOMEM, "out of memory");
				goto out_fail;
			}
			t = nt;
			cap = ncap;
		}
		sql = sqlite3_mprintf("SELECT count(*) FROM \"%w\"", name);
		if (!sql) {
			rc = bri_err_set(err, -ENOMEM, "out of memory");
			goto out_fail;
		}
		rc = query_int(db, sql, &rows, err);
		sqlite3_free(sql);
		if (rc < 0)
			goto out_fail;
		t[count].name = strdup(name);
		if (!t[count].name) {
			rc = bri_err_set(err, -ENOMEM, "out of memory");
			goto out_fail;
		}
		t[count++].rows = rows;
	}
	if (rc != SQLITE_DONE) {
		rc = bri_err_set(err, sqlite_errno(rc), "cannot list tables: %s",
				 sqlite3_errmsg(db));
		goto out_fail;
	}
	sqlite3_finalize(st);
	*out = t;
	*n = count;
	return 0;
out_fail:
	sqlite3_finalize(st);
	bri_table_counts_free(t, count);
	return rc;
}

int snapshot_check(sqlite3 *db, bool quick, struct bri_err *err)
{
	const char *sql = quick ? "PRAGMA quick_check" : "PRAGMA integrity_check";
	sqlite3_stmt *st;
	int rc, result = 0;

	rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return bri_err_set(err, -EIO, "%s could not run: %s", sql + 7, sqlite3_errmsg(db));
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const char *first = (const char *)sqlite3_column_text(st, 0);

		if (!first || strcmp(first, "ok") != 0)
			result = bri_err_set(err, -EIO, "%s: %s", sql + 7, first ? first : "?");
	} else {
		result = bri_err_set(err, -EIO, "%s could not run: %s", sql + 7,
				     sqlite3_errmsg(db));
	}
	sqlite3_finalize(st);
	return result;
}

/*
 * What a finished copy at dst says about itself: page size and count, row
 * counts. The copy's journal mode becomes DELETE first: a copy of a WAL
 * database says WAL in its header, and readers on read-only media could not
 * open it.
 */
static int describe_copy(sqlite3 *dst, sqlite3 *counted, struct bri_snapshot_info *out,
			 struct bri_err *err)
{
	int rc;

	rc = exec_sql(dst, "PRAGMA journal_mode=DELETE", "setting the backup's journal mode", err);
	if (rc == 0)
		rc = query_int(dst, "PRAGMA page_size", &out->page_size, err);
	if (rc == 0)
		rc = query_int(dst, "PRAGMA page_count", &out->page_count, err);
	if (rc == 0)
		rc = snapshot_count_rows(counted, &out->tables, &out->ntables, err);
	return rc;
}

/*
 * Copies the database of the open connection src into dst_path (an empty
 * temporary file) with the backup API, through the write-combining VFS.
 * Fills info on success only.
 */
static int take_from(sqlite3 *src, const char *dst_path, int busy_timeout_ms,
		      struct bri_snapshot_info *info, struct bri_err *err)
{
	struct bri_snapshot_info out = {0};
	bool pages = store_path_vfs(dst_path) != NULL, own_txn = false;
	sqlite3 *dst = NULL;
	int rc;

	/* A store format that writes through its own VFS (pages) gets its path there. */
	rc = open_db_vfs(dst_path, SQLITE_OPEN_READWRITE,
			 pages ? store_path_vfs(dst_path) : wc_vfs_name(), busy_timeout_ms, &dst,
			 err);
	if (rc < 0)
		return rc;
	/* The copy is a private temporary file until published: no journal, one
	 * fsync by the caller at the end. */
	rc = exec_sql(dst, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF", "backup file", err);
	/* A VFS without shared memory (pages) reads a WAL header only in exclusive mode. */
	if (rc == 0 && pages)
		rc = exec_sql(dst, "PRAGMA locking_mode=EXCLUSIVE", "backup file", err);
	/*
	 * Pages: the rows are counted on the source, in the read transaction the
	 * copy is taken in (the same snapshot: the backup API keeps a transaction
	 * it finds open), not read back through the copy's VFS page by page.
	 */
	if (rc == 0 && pages && sqlite3_get_autocommit(src)) {
		rc = exec_sql(src, "BEGIN; SELECT count(*) FROM sqlite_schema",
			      "starting the backup's read transaction", err);
		own_txn = rc == 0;
	}
	if (rc < 0)
		goto out_close_dst;
	rc = copy_all(dst, src, "backup", err);
	if (rc < 0)
		goto out_close_dst;
	rc = describe_copy(dst, pages ? src : dst, &out, err);
	if (rc < 0)
		goto out_close_dst;
	/* Every deferred write is in the file, or its error is reported here. */
	rc = sqlite3_file_control(dst, "main", WC_FCNTL_FLUSH, NULL);
	if (rc != SQLITE_OK && rc != SQLITE_NOTFOUND) {
		rc = bri_err_set(err, sqlite_errno(rc), "cannot write the backup file: %s",
				 sqlite3_errstr(rc));
		goto out_close_dst;
	}
	rc = 0;
out_close_dst:
	if (own_txn)
		sqlite3_exec(src, "COMMIT", NULL, NULL, NULL); /* a read transaction: ends */
	if (sqlite3_close(dst) != SQLITE_OK && rc == 0)
		rc = bri_err_set(err, -EIO, "cannot close the backup file");
	/* info is set only on success: a failed close must not hand out tables
	 * that are freed here (the caller would free them again). */
	if (rc == 0)
		*info = out;
	else
		bri_snapshot_info_free(&out);
	return rc;
}

int bri_snapshot_take(const char *src_path, const char *dst_path, int busy_timeout_ms,
		      struct bri_snapshot_info *info, struct bri_err *err)
{
	sqlite3 *src = NULL;
	int64_t probe;
	int rc;

	/* The live database: never through a symlink (the caller's path is canonical). */
	rc = open_db(src_path, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOFOLLOW, busy_timeout_ms, &src,
		     err);
	if (rc < 0)
		return rc;
	/* Fails early, with SQLite's words, on a file that is not a database. */
	rc = query_int(src, "SELECT count(*) FROM sqlite_schema", &probe, err);
	if (rc < 0) {
		bri_err_set(err, rc, "cannot read the live database %s: %s", src_path,
			    sqlite3_errmsg(src));
		goto out_close_src;
	}
	/*
	 * No memory map of the live database (PRAGMA mmap_size), though it made a
	 * tenth of a page-store create: under a map, a read error or a file cut
	 * short by another program is a SIGBUS that kills the process (the
	 * mount, for ctl/create) instead of an error that names the cause.
	 */
	rc = take_from(src, dst_path, busy_timeout_ms, info, err);
out_close_src:
	sqlite3_close(src);
	return rc;
}

int snapshot_open_reader(struct bri_reader *r, sqlite3 **out, struct bri_err *err)
{
	char uri[96];
	const char *vfs;
	uint64_t id;
	int rc;

	vfs = reader_vfs_attach(r, uri, sizeof(uri), &id);
	if (!vfs)
		return bri_err_set(err, -ENOMEM, "cannot open %s as SQLite: no memory for its VFS",
		                   r->label);
	/* SQLite opens the main file within sqlite3_open_v2: the name can go after. */
	rc = open_db_vfs(uri, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, vfs, 5000, out, err);
	reader_vfs_detach(id);
	if (rc < 0)
		bri_err_wrap(err, rc, "cannot open %s as SQLite", r->label);
	return rc;
}

int snapshot_attach_reader(sqlite3 *db, struct bri_reader *r, const char *schema,
			   struct bri_err *err)
{
	char uri[96], *sql;
	uint64_t id;
	int rc;

	if (!reader_vfs_attach(r, uri, sizeof(uri), &id))
		return bri_err_set(err, -ENOMEM, "cannot open %s as SQLite: no memory for its VFS",
		                   r->label);
	sql = sqlite3_mprintf("ATTACH %Q AS \"%w\"", uri, schema);
	/* SQLite opens the file within ATTACH: the name can go after. */
	rc = sql ? sqlite3_exec(db, sql, NULL, NULL, NULL) : SQLITE_NOMEM;
	reader_vfs_detach(id);
	sqlite3_free(sql);
	if (rc == SQLITE_NOMEM)
		return bri_err_set(err, -ENOMEM, "out of memory");
	if (rc != SQLITE_OK)
		return bri_err_set(err, sqlite_errno(rc), "cannot open %s as SQLite: %s", r->label,
		                   sqlite3_errmsg(db));
	return 0;
}

/*
 * SQLite cannot copy a database of another page size into a WAL database.
 * For such a restore the backup is first copied into a temporary file in
 * scratch_dir and rebuilt (VACUUM) with the live page size; *out is then that
 * copy and *tmp_path its name, to close and remove after use.
 */
static int match_page_size(sqlite3 *live, sqlite3 *src, const char *scratch_dir, sqlite3 **out,
			   char **tmp_path, struct bri_err *err)
{
	int64_t live_ps = 0, src_ps = 0, pages = 0;
	char mode[16] = "", *sql;
	sqlite3 *tmp = NULL;
	sqlite3_stmt *st;
	int rc;

	*out = NULL;
	rc = query_int(live, "PRAGMA page_count", &pages, err);
	if (rc == 0)
		rc = query_int(live, "PRAGMA page_size", &live_ps, err);
	if (rc == 0)
		rc = query_int(src, "PRAGMA page_size", &src_ps, err);
	if (rc < 0 || live_ps == src_ps || pages == 0)
		return rc;
	if (sqlite3_prepare_v2(live, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			snprintf(mode, sizeof(mode), "%s", (const char *)sqlite3_column_text(st, 0));
		sqlite3_finalize(st);
	}
	if (strcmp(mode, "wal") != 0)
		return 0;
	bri_log(BRI_LOG_INFO, "restore: rebuilding the backup with page size %lld (it has %lld)",
		(long long)live_ps, (long long)src_ps);
	if (asprintf(tmp_path, "%s/.restore.pagesize.%ld.XXXXXX.tmp", scratch_dir,
		     (long)getpid()) < 0) {
		*tmp_path = NULL;
		return bri_err_set(err, -ENOMEM, "out of memory");
	}
	rc = mkstemps(*tmp_path, 4);
	if (rc < 0)
		return bri_err_set(err, -errno, "cannot create a temporary file in %s: %s",
				   scratch_dir, strerror(errno));
	close(rc);
	rc = open_db(*tmp_path, SQLITE_OPEN_READWRITE, 5000, &tmp, err);
	if (rc < 0)
		return rc;
	exec_sql(tmp, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF", "restore", NULL);
	rc = copy_all(tmp, src, "restore: copying the backup", err);
	sql = sqlite3_mprintf("PRAGMA page_size=%lld; VACUUM", (long long)live_ps);
	if (rc == 0)
		rc = sql ? exec_sql(tmp, sql, "restore: changing the backup's page size", err)
			 : bri_err_set(err, -ENOMEM, "out of memory");
	sqlite3_free(sql);
	if (rc < 0) {
		sqlite3_close(tmp);
		return rc;
	}
	*out = tmp;
	return 0;
}

/*
 * A restore in progress. After bri_snapshot_restore_begin, the backup handle
 * has run sqlite3_backup_step(b, 0): SQLite then holds the live database's
 * write lock (WAL: the WAL write lock, readers go on; rollback journal: an
 * EXCLUSIVE lock, readers get SQLITE_BUSY) and keeps it until the copy
 * finishes or is abandoned, having copied no page. No commit can happen in
 * between, so the safety copy taken then (bri_snapshot_restore_save) holds
 * every commit acknowledged before the restore.
 */
struct bri_snapshot_restore {
	sqlite3 *src;        /* the backup, opened immutable */
	sqlite3 *rebuilt;    /* the backup rebuilt with the live page size, or NULL */
	char *rebuilt_path;  /* rebuilt's temporary file, removed at the end */
	sqlite3 *live;       /* the connection on the live database */
	sqlite3_backup *b;   /* (rebuilt or src) -> live; NULL once finished */
	char *live_path;     /* the live database */
	int busy_timeout_ms; /* how long one wait for a lock may last */
	double busy_since;   /* monotonic start of the current wait (restore_busy) */
};

/* How often restore_busy tries again (nanoseconds). */
#define RESTORE_BUSY_POLL_NS (1000 * 1000)

/*
 * The busy handler of the restore's connection on the live database.
 * SQLite's own (sqlite3_busy_timeout) sleeps 1, 2, 5, ... then 100 ms
 * between tries; a writer committing back to back holds the lock nearly all
 * the time, and such tries seldom land in one of its gaps. This one tries
 * again every millisecond, up to the busy timeout of each wait.
 */
static int restore_busy(void *arg, int count)
{
	struct bri_snapshot_restore *r = arg;
	struct timespec tick = {.tv_sec = 0, .tv_nsec = RESTORE_BUSY_POLL_NS};
	double now = bri_now_mono();

	if (count == 0)
		r->busy_since = now;
	if ((now - r->busy_since) * 1000.0 >= (double)r->busy_timeout_ms)
		return 0;
	nanosleep(&tick, NULL);
	return 1;
}

void bri_snapshot_restore_end(struct bri_snapshot_restore *r)
{
	if (!r)
		return;
	/* Unfinished: SQLite rolls the destination back, nothing was written. */
	if (r->b)
		sqlite3_backup_finish(r->b);
	sqlite3_close(r->live);
	sqlite3_close(r->rebuilt);
	if (r->rebuilt_path)
		unlink(r->rebuilt_path);
	free(r->rebuilt_path);
	sqlite3_close(r->src);
	free(r->live_path);
	free(r);
}

/*
 * The restore's start once r->src is open (label names it in messages): the
 * checks, the live connection, the page size, the write lock.
 */
static int restore_begin_src(struct bri_snapshot_restore *r, const char *label,
                             const char *scratch_dir, struct bri_err *err)
{
	int64_t tables = -1;
	int rc;

	rc = query_int(r->src, "SELECT count(*) FROM sqlite_schema", &tables, err);
	if (rc < 0)
		return bri_err_set(err, rc, "cannot read the backup %s: %s", label,
		                   sqlite3_errmsg(r->src));
	/* An empty file is a valid empty database to SQLite: never a backup. */
	if (tables == 0)
		return bri_err_set(err, -EINVAL,
		                   "%s holds no tables: refusing to replace the live database with "
		                   "an empty one; nothing was changed",
		                   label);
	/* Never through a symlink: SQLite opens the file, its -journal and -wal
	 * with O_NOFOLLOW and refuses a symlink anywhere in live_path. */
	rc = open_db(r->live_path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOFOLLOW,
	             r->busy_timeout_ms, &r->live, err);
	if (rc < 0)
		return rc;
	sqlite3_busy_handler(r->live, restore_busy, r);
	rc = match_page_size(r->live, r->src, scratch_dir, &r->rebuilt, &r->rebuilt_path, err);
	if (rc < 0)
		return rc;
	r->b = sqlite3_backup_init(r->live, "main", r->rebuilt ? r->rebuilt : r->src, "main");
	if (!r->b)
		return bri_err_set(err, sqlite_errno(sqlite3_errcode(r->live)), "restore: %s",
		                   sqlite3_errmsg(r->live));
	/* Takes the live database's write lock (waiting up to the busy timeout)
	 * and keeps it; copies nothing. */
	rc = sqlite3_backup_step(r->b, 0);
	if (rc != SQLITE_OK)
		return step_error(r->live, rc, "restore", err);
	return 0;
}

int bri_snapshot_restore_begin_reader(struct bri_reader *backup, const char *live_path,
                                      const char *scratch_dir, int busy_timeout_ms,
                                      struct bri_snapshot_restore **out, struct bri_err *err)
{
	struct bri_snapshot_restore *r = calloc(1, sizeof(*r));
	int rc;

	*out = NULL;
	if (!r)
		return bri_err_set(err, -ENOMEM, "out of memory");
	r->busy_timeout_ms = busy_timeout_ms;
	r->live_path = strdup(live_path);
	if (!r->live_path) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_end;
	}
	rc = snapshot_open_reader(backup, &r->src, err);
	if (rc == 0)
		rc = restore_begin_src(r, backup->label, scratch_dir, err);
	if (rc < 0)
		goto out_end;
	*out = r;
	return 0;
out_end:
	bri_snapshot_restore_end(r);
	return rc < 0 ? rc : -EIO; /* never success without *out */
}

/* Bytes of the live file read per call by save_file. */
#define SAVE_CHUNK (1024 * 1024)

/*
 * Copies the live file's bytes into fd through the restore connection's own
 * file handle (xRead), which holds the EXCLUSIVE lock: another connection
 * could not read it, and a new descriptor of the live file, once closed,
 * would drop this process's POSIX locks on it (howtocorrupt.html 2.2). With
 * that lock held and no hot journal (SQLite rolled one back when it took
 * the lock), the file is exactly the last committed database.
 */
static int save_file(struct bri_snapshot_restore *r, int fd, struct bri_err *err)
{
	sqlite3_file *f = NULL;
	sqlite3_int64 size = 0;
	char *buf;
	int rc;

	rc = sqlite3_file_control(r->live, "main", SQLITE_FCNTL_FILE_POINTER, &f);
	if (rc != SQLITE_OK || !f || !f->pMethods)
		return bri_err_set(err, -EIO, "cannot reach the live database's file");
	rc = f->pMethods->xFileSize(f, &size);
	if (rc != SQLITE_OK)
		return bri_err_set(err, -EIO, "cannot size the live database: %s",
				   sqlite3_errstr(rc));
	buf = malloc(SAVE_CHUNK);
	if (!buf)
		return bri_err_set(err, -ENOMEM, "out of memory");
	for (sqlite3_int64 off = 0; off < size;) {
		int n = size - off < SAVE_CHUNK ? (int)(size - off) : SAVE_CHUNK;

		rc = f->pMethods->xRead(f, buf, n, off);
		if (rc != SQLITE_OK) {
			rc = bri_err_set(err, -EIO, "cannot read the live database: %s",
					 sqlite3_errstr(rc));
			goto out_free;
		}
		for (int done = 0; done < n;) {
			ssize_t w = pwrite(fd, buf + done, (size_t)(n - done), off + done);

			if (w < 0) {
				rc = bri_err_set(err, -errno, "cannot write the backup file: %s",
						 strerror(errno));
				goto out_free;
			}
			done += (int)w;
		}
		off += n;
	}
	rc = 0;
out_free:
	free(buf);
	return rc;
}

/* Whether the live file says WAL (header bytes 18 and 19 are 2), read as save_file does. */
static bool live_is_wal(struct bri_snapshot_restore *r)
{
	unsigned char header[20];
	sqlite3_file *f = NULL;
	sqlite3_int64 size = 0;

	if (sqlite3_file_control(r->live, "main", SQLITE_FCNTL_FILE_POINTER, &f) != SQLITE_OK ||
	    !f || !f->pMethods || f->pMethods->xFileSize(f, &size) != SQLITE_OK ||
	    size < (sqlite3_int64)sizeof(header) ||
	    f->pMethods->xRead(f, header, sizeof(header), 0) != SQLITE_OK)
		return false;
	return header[18] == 2 && header[19] == 2;
}

int bri_snapshot_restore_save(struct bri_snapshot_restore *r, const char *dst_path, int dst_fd,
			      struct bri_snapshot_info *info, struct bri_err *err)
{
	struct bri_snapshot_info out = {0};
	sqlite3 *reader = NULL, *dst = NULL;
	int rc;

	if (live_is_wal(r)) {
		/* The WAL write lock leaves readers alone: a second connection
		 * reads the last commit, which no one can follow while it is held. */
		rc = open_db(r->live_path, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOFOLLOW,
			     r->busy_timeout_ms, &reader, err);
		if (rc == 0)
			rc = take_from(reader, dst_path, r->busy_timeout_ms, info, err);
		sqlite3_close(reader);
		return rc;
	}
	/* A format without a file (pages): the backup API from the locked connection itself. */
	if (dst_fd < 0)
		return take_from(r->live, dst_path, r->busy_timeout_ms, info, err);
	rc = save_file(r, dst_fd, err);
	if (rc < 0)
		return rc;
	/* dst_path may name the file through the store's descriptor: kept as it is. */
	rc = open_db_vfs(dst_path, SQLITE_OPEN_READWRITE, fd_vfs_name(dst_path), r->busy_timeout_ms,
			 &dst, err);
	if (rc < 0)
		return rc;
	rc = describe_copy(dst, dst, &out, err);
	if (sqlite3_close(dst) != SQLITE_OK && rc == 0)
		rc = bri_err_set(err, -EIO, "cannot close the backup file");
	if (rc == 0)
		*info = out;
	else
		bri_snapshot_info_free(&out);
	return rc;
}

int bri_snapshot_restore_commit(struct bri_snapshot_restore *r, struct bri_err *err)
{
	int rc;

	rc = sqlite3_backup_step(r->b, -1);
	sqlite3_backup_finish(r->b);
	r->b = NULL;
	if (rc != SQLITE_DONE)
		return step_error(r->live, rc, "restore", err);
	rc = snapshot_check(r->live, true, err);
	if (rc < 0) {
		bri_log(BRI_LOG_ERR, "restored database %s fails quick_check: %s", r->live_path,
			err ? err->msg : "");
		return -EBADMSG;
	}
	return 0;
}

int bri_snapshot_restore(const char *backup_path, const char *live_path, const char *scratch_dir,
			 int busy_timeout_ms, struct bri_err *err)
{
	struct bri_snapshot_restore *r = NULL;
	struct bri_reader *backup = NULL;
	int rc;

	rc = bri_reader_open_path(backup_path, &backup, err);
	if (rc < 0)
		return rc;
	rc = bri_snapshot_restore_begin_reader(backup, live_path, scratch_dir, busy_timeout_ms, &r,
					       err);
	if (rc == 0) {
		rc = bri_snapshot_restore_commit(r, err);
		bri_snapshot_restore_end(r);
	}
	bri_reader_close(backup);
	return rc;
}

void bri_table_counts_free(struct bri_table_count *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(t[i].name);
	free(t);
}

void bri_snapshot_info_free(struct bri_snapshot_info *info)
{
	bri_table_counts_free(info->tables, info->ntables);
	info->tables = NULL;
	info->ntables = 0;
}
