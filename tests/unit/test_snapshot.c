/*
 * Unit tests of the SQLite side (include/bri/snapshot.h) called directly:
 * bri_snapshot_take into an empty file (DELETE journal mode, page size and
 * count, row counts sorted by name, source unchanged), bri_snapshot_count_rows,
 * bri_snapshot_check on a sound and a damaged database, and
 * bri_snapshot_restore into an existing and a missing live file and against
 * a writer (-EBUSY, nothing changed). Real SQLite files only.
 */
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bri/checksum.h"
#include "bri/snapshot.h"
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
	EXPECT_EQ_INT(bri_snapshot_count_rows(copy, &t, &n, &err), 0);
	EXPECT_EQ_INT(n, 4);
	bri_table_counts_free(t, n);
	EXPECT_EQ_INT(bri_snapshot_check(copy, false, &err), 0);
	EXPECT_EQ_INT(bri_snapshot_check(copy, true, &err), 0);
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
	EXPECT_EQ_INT(bri_snapshot_check(copy, false, &err), -EIO);
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

int main(void)
{
	char *base = tu_tmpdir("snapshot");
	test_take(base);
	tu_tmpdir_done(base);
	return EXPECT_RESULT();
}
