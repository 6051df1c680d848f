/*
 * Unit tests of the SQLite side (include/bri/snapshot.h) called directly:
 * bri_snapshot_take into an empty file (DELETE journal mode, page size and
 * count, row counts sorted by name, source unchanged), snapshot_count_rows,
 * snapshot_check on a sound and a damaged database, and
 * bri_snapshot_restore into an existing and a missing live file and against
 * a writer (-EBUSY, nothing changed); snapshots and backups opened through a
 * store's descriptor after its folder was replaced, and a live database
 * path holding a symlink refused. Real SQLite files only.
 */
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bri/checksum.h"
#include "bri/snapshot.h"
#include "bri/store.h"
#include "../../src/core/snapshot_sql.h"
#include "expect.h"
#include "testutil.h"

static void test_take(const char *base)
{
	struct bri_err err = {0};
	struct bri_op_ctx ctx = bri_op_ctx_self("cli");
	char *src = tu_fmt("%s/src.db", base);
	char *dst = tu_fmt("%s/dst.db", base);
	sqlite3 *db = tu_make_db(src, "wal", 42, 1000, true);
	tu_exec(db, "CREATE TABLE aaa(x); INSERT INTO aaa VALUES (1), (2);"
	            "CREATE TABLE zzz(x);");
	tu_write(dst, "", 0);

	struct bri_snapshot_info info;
	memset(&info, 0, sizeof(info));
	int rc = bri_snapshot_take(src, dst, 1000, &info, &err);
	EXPECT_MSG(rc == 0, "snapshot_take: %d %s", rc, err.msg);
	if (rc == 0) {
		EXPECT_EQ_INT(info.page_size, 4096);
		struct stat st;
		EXPECT(stat(dst, &st) == 0 && st.st_size == info.page_size * info.page_count);
		EXPECT_EQ_INT(info.ntables, 4);
		for (size_t i = 1; i < info.ntables; i++)
			EXPECT_MSG(strcmp(info.tables[i - 1].name, info.tables[i].name) < 0,
			           "tables not sorted by name: %s before %s",
			           info.tables[i - 1].name, info.tables[i].name);
		if (info.ntables == 4) {
			EXPECT_STREQ(info.tables[0].name, "aaa");
			EXPECT_EQ_INT(info.tables[0].rows, 2);
			EXPECT_STREQ(info.tables[1].name, "memory");
			EXPECT_EQ_INT(info.tables[1].rows, 1000);
			EXPECT_STREQ(info.tables[2].name, "videos");
			EXPECT_EQ_INT(info.tables[2].rows, 42);
			EXPECT_STREQ(info.tables[3].name, "zzz");
			EXPECT_EQ_INT(info.tables[3].rows, 0);
		}
		unsigned char *h = (unsigned char *)tu_read(dst, NULL);
		EXPECT(h && h[18] == 1 && h[19] == 1);
		free(h);
		bri_snapshot_info_free(&info);
	}
	/* The source's open connection carries on, in WAL mode. */
	tu_exec(db, "INSERT INTO aaa VALUES (3)");
	EXPECT_EQ_INT(tu_count_rows(db, "aaa"), 3);

	/* count_rows and check on the copy. */
	sqlite3 *copy;
	EXPECT(sqlite3_open_v2(dst, &copy, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
	struct bri_table_count *t = NULL;
	size_t n = 0;
	EXPECT_EQ_INT(snapshot_count_rows(copy, &t, &n, &err), 0);
	EXPECT_EQ_INT(n, 4);
	bri_table_counts_free(t, n);
	EXPECT_EQ_INT(snapshot_check(copy, false, &err), 0);
	EXPECT_EQ_INT(snapshot_check(copy, true, &err), 0);
	sqlite3_close(copy);

	/* A missing source: an error, and no source file is created. */
	char *missing = tu_fmt("%s/missing.db", base);
	char *dst2 = tu_fmt("%s/dst2.db", base);
	tu_write(dst2, "", 0);
	memset(&err, 0, sizeof(err));
	rc = bri_snapshot_take(missing, dst2, 100, &info, &err);
	EXPECT(rc < 0);
	EXPECT(err.msg[0] != '\0');
	EXPECT(!tu_exists(missing));

	/* A damaged copy fails the check with a complaint. */
	size_t len = 0;
	char *bytes = tu_read(dst, &len);
	size_t at = (len / 4096 / 2) * 4096;
	for (size_t i = 0; bytes && i < 4096; i++)
		bytes[at + i] = (char)(i * 7 + 1);
	char *dmg = tu_fmt("%s/damaged.db", base);
	if (bytes)
		tu_write(dmg, bytes, len);
	free(bytes);
	EXPECT(sqlite3_open_v2(dmg, &copy, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
	memset(&err, 0, sizeof(err));
	EXPECT_EQ_INT(snapshot_check(copy, false, &err), -EIO);
	EXPECT(err.msg[0] != '\0');
	sqlite3_close(copy);

	/* Restore: into the live file, and into a missing one (created). */
	char sum[BRI_CHECKSUM_HEX_LEN + 1], after[BRI_CHECKSUM_HEX_LEN + 1];
	EXPECT_EQ_INT(bri_checksum_path(dst, &ctx, sum, &err), 0);
	tu_exec(db, "DELETE FROM memory");
	rc = bri_snapshot_restore(dst, src, base, 1000, &err);
	EXPECT_MSG(rc == 0, "snapshot_restore: %d %s", rc, err.msg);
	EXPECT_EQ_INT(tu_count_rows(db, "memory"), 1000);
	EXPECT_EQ_INT(tu_count_rows(db, "aaa"), 2);
	EXPECT_EQ_INT(bri_checksum_path(dst, &ctx, after, &err), 0);
	EXPECT_STREQ(after, sum); /* the backup is only read */
	char *fresh = tu_fmt("%s/fresh.db", base);
	EXPECT_EQ_INT(bri_snapshot_restore(dst, fresh, base, 1000, &err), 0);
	sqlite3 *f;
	EXPECT(sqlite3_open_v2(fresh, &f, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
	EXPECT_EQ_INT(tu_count_rows(f, "videos"), 42);
	sqlite3_close(f);

	/* Another page size into the WAL live database: rebuilt in scratch, which is left clean. */
	char *scratch = tu_fmt("%s/scratch", base);
	EXPECT(mkdir(scratch, 0700) == 0);
	char *ps = tu_fmt("%s/pagesize.db", base);
	sqlite3 *p8;
	EXPECT(sqlite3_open(ps, &p8) == SQLITE_OK);
	tu_exec(p8, "PRAGMA page_size=8192; CREATE TABLE videos(id INTEGER PRIMARY KEY, title);"
	            "INSERT INTO videos(title) VALUES ('p1'), ('p2');");
	sqlite3_close(p8);
	memset(&err, 0, sizeof(err));
	rc = bri_snapshot_restore(ps, src, scratch, 1000, &err);
	EXPECT_MSG(rc == 0, "restore of another page size: %d %s", rc, err.msg);
	EXPECT_EQ_INT(tu_count_rows(db, "videos"), 2);
	EXPECT(rmdir(scratch) == 0); /* empty again */
	EXPECT_EQ_INT(bri_snapshot_restore(dst, src, base, 1000, &err), 0);
	EXPECT_EQ_INT(tu_count_rows(db, "videos"), 42);
	free(ps);
	free(scratch);

	/* A writer in the way: -EBUSY after the timeout, nothing changed. */
	sqlite3 *w;
	EXPECT(sqlite3_open(src, &w) == SQLITE_OK);
	tu_exec(w, "BEGIN IMMEDIATE; DELETE FROM videos");
	memset(&err, 0, sizeof(err));
	rc = bri_snapshot_restore(dmg, src, base, 200, &err);
	EXPECT_EQ_INT(rc, -EBUSY);
	tu_exec(w, "ROLLBACK");
	sqlite3_close(w);
	EXPECT_EQ_INT(tu_count_rows(db, "videos"), 42);
	EXPECT_EQ_INT(tu_count_rows(db, "memory"), 1000);

	sqlite3_close(db);
	free(fresh);
	free(dmg);
	free(dst2);
	free(missing);
	free(dst);
	free(src);
}

/* Rows of table videos in the backup at path, read through a reader (bri_reader_open_path). */
static int64_t backup_videos(const char *path)
{
	struct bri_err err = {0};
	struct bri_reader *r = NULL;
	sqlite3 *db = NULL;
	int64_t n = -1;
	if (bri_reader_open_path(path, &r, &err) != 0)
		return -1;
	if (snapshot_open_reader(r, &db, &err) == 0) {
		n = tu_count_rows(db, "videos");
		sqlite3_close(db);
	}
	bri_reader_close(r);
	return n;
}

/*
 * A store folder replaced while open (mv store store.old; mkdir store; a
 * planted NAME.db): names from bri_store_fd_path still lead to the folder
 * of the descriptor, for reading a backup and for writing a snapshot, while
 * the store's path leads to the planted file (issue 9 item 10).
 */
static void test_through_the_store_fd(const char *base)
{
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	struct bri_snapshot_info info;
	char *live = tu_fmt("%s/fdlive.db", base);
	char *dir = tu_fmt("%s/fdstore", base);
	char *old = tu_fmt("%s/fdstore.old", base);
	char *in_old = tu_fmt("%s/fdstore.old/b.db", base);
	char *planted = tu_fmt("%s/fdstore/b.db", base);
	tu_make_db(live, "wal", 10, 10, false);
	if (bri_store_open(live, dir, true, &s, &err) != 0)
		TU_DIE("store: %s", err.msg);
	char *fd_b = bri_store_fd_path(s, "b", ".db");
	char *fd_t = bri_store_fd_path(s, "t", ".db");
	char *in_old_t = tu_fmt("%s/fdstore.old/t.db", base);
	char *by_path_t = tu_fmt("%s/fdstore/t.db", base);
	EXPECT(strncmp(fd_b, "/proc/self/fd/", 14) == 0);
	tu_copy(live, planted); /* b.db of the store: 10 videos */
	EXPECT(rename(dir, old) == 0);
	EXPECT(tu_exists(in_old));
	EXPECT(mkdir(dir, 0700) == 0);
	tu_make_db(planted, "delete", 99, 0, false);
	EXPECT_EQ_INT(backup_videos(planted), 99);
	EXPECT_EQ_INT(backup_videos(fd_b), 10);

	/* A snapshot written through the descriptor lands in the old folder only. */
	tu_write(in_old_t, "", 0);
	memset(&info, 0, sizeof(info));
	EXPECT_EQ_INT(bri_snapshot_take(live, fd_t, 1000, &info, &err), 0);
	bri_snapshot_info_free(&info);
	EXPECT_EQ_INT(backup_videos(in_old_t), 10);
	EXPECT(!tu_exists(by_path_t));
	bri_store_close(s);
	free(by_path_t);
	free(in_old_t);
	free(fd_t);
	free(fd_b);
	free(planted);
	free(in_old);
	free(old);
	free(dir);
	free(live);
}

/* SQLITE_OPEN_NOFOLLOW: a live database path holding a symlink is refused, never followed. */
static void test_live_symlink(const char *base)
{
	struct bri_err err = {0};
	struct bri_snapshot_info info;
	char *real = tu_fmt("%s/real.db", base);
	char *link = tu_fmt("%s/link.db", base);
	char *dangling = tu_fmt("%s/dangling.db", base);
	char *nowhere = tu_fmt("%s/nowhere.db", base);
	char *backup = tu_fmt("%s/lbackup.db", base);
	char *dst = tu_fmt("%s/ldst.db", base);
	tu_make_db(real, "wal", 5, 5, false);
	tu_make_db(backup, "delete", 50, 0, false);
	EXPECT(symlink(real, link) == 0);
	EXPECT(symlink(nowhere, dangling) == 0);
	tu_write(dst, "", 0);
	memset(&info, 0, sizeof(info));
	EXPECT_EQ_INT(bri_snapshot_take(link, dst, 1000, &info, &err), -ELOOP);
	EXPECT(strstr(err.msg, "symbolic link") != NULL);
	EXPECT_EQ_INT(bri_snapshot_restore(backup, link, base, 1000, &err), -ELOOP);
	EXPECT_EQ_INT(backup_videos(real), 5);
	EXPECT_EQ_INT(bri_snapshot_restore(backup, dangling, base, 1000, &err), -ELOOP);
	EXPECT(!tu_exists(nowhere));
	free(dst);
	free(backup);
	free(nowhere);
	free(dangling);
	free(link);
	free(real);
}

int main(void)
{
	char *base = tu_tmpdir("snapshot");
	test_take(base);
	test_through_the_store_fd(base);
	test_live_symlink(base);
	tu_tmpdir_done(base);
	return EXPECT_RESULT();
}
