/*
 * SQLite's online backup API, both ways: taking a snapshot of the live
 * database into a new file, and restoring a backup into the live database
 * through a connection on it. One sqlite3_backup_step(-1) each: a stepped
 * copy restarts after every foreign commit in WAL mode and may never finish.
 */
#include "bri/snapshot.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bri/log.h"

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

static int open_db(const char *path, int flags, int busy_timeout_ms, sqlite3 **out,
		   struct bri_err *err)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);

	if (rc != SQLITE_OK) {
		int e = sqlite_errno(rc);

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
	if (rc != SQLITE_DONE) {
		int e = db_errno(dst, rc);

		if (e == -EBUSY)
			return bri_err_set(err, e, "%s: database is locked (another process holds "
					   "a lock past the busy timeout); nothing was changed",
					   what);
		return bri_err_set(err, e, "%s: %s", what,
				   sqlite3_errcode(dst) != SQLITE_OK ? sqlite3_errmsg(dst)
								     : sqlite3_errstr(rc));
	}
	return 0;
}

int bri_snapshot_count_rows(sqlite3 *db, struct bri_table_count **out, size_t *n,
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

int bri_snapshot_check(sqlite3 *db, bool quick, struct bri_err *err)
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

int bri_snapshot_take(const char *src_path, const char *dst_path, int busy_timeout_ms,
		      struct bri_snapshot_info *info, struct bri_err *err)
{
	struct bri_snapshot_info out = {0};
	sqlite3 *src = NULL, *dst = NULL;
	int64_t probe;
	int rc;

	rc = open_db(src_path, SQLITE_OPEN_READONLY, busy_timeout_ms, &src, err);
	if (rc < 0)
		return rc;
	/* Fails early, with SQLite's words, on a file that is not a database. */
	rc = query_int(src, "SELECT count(*) FROM sqlite_schema", &probe, err);
	if (rc < 0) {
		bri_err_set(err, rc, "cannot read the live database %s: %s", src_path,
			    sqlite3_errmsg(src));
		goto out_close_src;
	}
	rc = open_db(dst_path, SQLITE_OPEN_READWRITE, busy_timeout_ms, &dst, err);
	if (rc < 0)
		goto out_close_src;
	/* The copy is a private temporary file until published: no journal, one
	 * fsync by the caller at the end. */
	rc = exec_sql(dst, "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF", "backup file", err);
	if (rc < 0)
		goto out_close_dst;
	rc = copy_all(dst, src, "backup", err);
	if (rc < 0)
		goto out_close_dst;
	/* A copy of a WAL database says WAL in its header: readers on read-only
	 * media could not open it. */
	rc = exec_sql(dst, "PRAGMA journal_mode=DELETE", "setting the backup's journal mode", err);
	if (rc < 0)
		goto out_close_dst;
	rc = query_int(dst, "PRAGMA page_size", &out.page_size, err);
	if (rc == 0)
		rc = query_int(dst, "PRAGMA page_count", &out.page_count, err);
	if (rc == 0)
		rc = bri_snapshot_count_rows(dst, &out.tables, &out.ntables, err);
	if (rc < 0)
		goto out_close_dst;
	*info = out;
out_close_dst:
	if (sqlite3_close(dst) != SQLITE_OK && rc == 0)
		rc = bri_err_set(err, -EIO, "cannot close the backup file");
out_close_src:
	sqlite3_close(src);
	if (rc < 0)
		bri_snapshot_info_free(&out);
	return rc;
}

int bri_snapshot_open_backup(const char *path, sqlite3 **out, struct bri_err *err)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(path);
	char *uri = malloc(3 * n + 32), *p;
	int rc;

	if (!uri)
		return bri_err_set(err, -ENOMEM, "out of memory");
	p = uri + sprintf(uri, "file:");
	for (const unsigned char *c = (const unsigned char *)path; *c; c++) {
		if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
		    strchr("/._~-", *c)) {
			*p++ = (char)*c;
		} else {
			*p++ = '%';
			*p++ = hex[*c >> 4];
			*p++ = hex[*c & 15];
		}
	}
	strcpy(p, "?immutable=1");
	rc = open_db(uri, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, 5000, out, err);
	free(uri);
	if (rc < 0)
		bri_err_set(err, rc, "cannot open %s as SQLite: %s", path,
			    err ? err->msg : "");
	return rc;
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

int bri_snapshot_restore(const char *backup_path, const char *live_path, const char *scratch_dir,
			 int busy_timeout_ms, struct bri_err *err)
{
	sqlite3 *src = NULL, *live = NULL;
	int64_t probe;
	int rc;

	sqlite3 *rebuilt = NULL;
	char *rebuilt_path = NULL;

	rc = bri_snapshot_open_backup(backup_path, &src, err);
	if (rc < 0)
		return rc;
	rc = query_int(src, "SELECT count(*) FROM sqlite_schema", &probe, err);
	if (rc < 0) {
		bri_err_set(err, rc, "cannot read the backup %s: %s", backup_path,
			    sqlite3_errmsg(src));
		goto out_close_src;
	}
	rc = open_db(live_path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, busy_timeout_ms, &live,
		     err);
	if (rc < 0)
		goto out_close_src;
	rc = match_page_size(live, src, scratch_dir, &rebuilt, &rebuilt_path, err);
	if (rc == 0)
		rc = copy_all(live, rebuilt ? rebuilt : src, "restore", err);
	sqlite3_close(rebuilt);
	if (rebuilt_path)
		unlink(rebuilt_path);
	free(rebuilt_path);
	if (rc < 0)
		goto out_close_live;
	rc = bri_snapshot_check(live, true, err);
	if (rc < 0)
		rc = -EBADMSG;
	if (rc < 0)
		bri_log(BRI_LOG_ERR, "restored database %s fails quick_check: %s", live_path,
			err ? err->msg : "");
out_close_live:
	sqlite3_close(live);
out_close_src:
	sqlite3_close(src);
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
