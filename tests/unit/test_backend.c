/*
 * Unit tests of the store's table of operations (include/bri/store.h,
 * struct bri_store_ops) on the plain format: list, stat, reader,
 * write begin/commit/end, remove and sidecars round trips; a reader of a
 * missing backup; a failed or abandoned write leaves nothing; the format
 * recorded in store.json; and SQLite reading a backup through the reader
 * VFS, from a descriptor and from memory (a reader without one, as a page
 * store's will be). Real files and real SQLite only.
 */
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/core/snapshot_sql.h"
#include "bri/catalog.h"
#include "bri/create.h"
#include "bri/meta.h"
#include "bri/restore.h"
#include "bri/snapshot.h"
#include "bri/store.h"
#include "bri/verify.h"
#include "expect.h"
#include "testutil.h"

static char *base;

/* Entries of the store folder other than ".", "..", and the store's own logs and lock. */
static int count_files(const char *dir)
{
	int n = 0;
	DIR *d = opendir(dir);
	struct dirent *de;
	for (de = d ? readdir(d) : NULL; de; de = readdir(d)) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
		    strcmp(de->d_name, ".lock") == 0 || strcmp(de->d_name, "audit.jsonl") == 0 ||
		    strcmp(de->d_name, "restore_reports.jsonl") == 0)
			continue;
		n++;
	}
	if (d)
		closedir(d);
	return n;
}

struct seen {
	int n;          /* backups listed */
	char name[64];  /* the last one's name */
	struct stat st; /* and its stat */
};

static int count_one(void *arg, const char *name, const struct stat *st)
{
	struct seen *s = arg;
	s->n++;
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->st = *st;
	return 0;
}

/* Writes backup name with content bytes (len) and metadata meta through the interface. */
static int write_backup(struct bri_store *s, const char *name, const char *bytes, size_t len,
                        const char *meta, struct bri_err *err)
{
	struct bri_backup_writer *w = NULL;
	int rc = bri_store_write_begin(s, name, &w, err);
	if (rc < 0)
		return rc;
	if (write(w->fd, bytes, len) != (ssize_t)len)
		TU_DIE("write: %s", strerror(errno));
	rc = bri_store_write_commit(w, meta, strlen(meta), err);
	bri_store_write_end(w);
	return rc;
}

/* A reader of bytes in memory: no descriptor, as a page store's will be. */
struct mem {
	const char *bytes; /* not owned */
	int fail;          /* 0, or the errno every read fails with */
};

static ssize_t mem_pread(struct bri_reader *r, void *buf, size_t len, uint64_t off)
{
	struct mem *m = r->priv;
	if (m->fail)
		return -m->fail;
	if (off >= r->size)
		return 0;
	if (len > r->size - off)
		len = (size_t)(r->size - off);
	memcpy(buf, m->bytes + off, len);
	return (ssize_t)len;
}

static void mem_close(struct bri_reader *r)
{
	(void)r;
}

static void test_empty_and_missing(struct bri_store *s)
{
	struct bri_reader *r = NULL;
	struct bri_err err = {0};
	struct seen seen = {0};
	struct stat st;

	EXPECT_STREQ(s->ops->format, "plain");
	EXPECT_EQ_INT(bri_store_list(s, count_one, &seen, &err), 0);
	EXPECT_EQ_INT(seen.n, 0);
	EXPECT_EQ_INT(bri_store_stat(s, "nope", &st), -ENOENT);
	EXPECT_EQ_INT(bri_store_has(s, "nope"), 0);
	EXPECT_EQ_INT(bri_store_open_reader(s, "nope", &r, &err), -ENOENT);
	EXPECT(r == NULL);
	EXPECT_MSG(strstr(err.msg, "no backup named nope"), "%s", err.msg);
	char *text = NULL;
	size_t len = 0;
	EXPECT_EQ_INT(bri_store_sidecar_read(s, "nope", BRI_SIDECAR_META, 1024, &text, &len),
	              -ENOENT);
	EXPECT_EQ_INT(bri_store_sidecar_stat(s, "nope", BRI_SIDECAR_VERIFY, &st), -ENOENT);
	EXPECT_EQ_INT(bri_store_sidecar_remove(s, "nope", BRI_SIDECAR_VERIFY), 0);
}

static void test_round_trip(struct bri_store *s, const char *bytes, size_t len)
{
	struct bri_reader *r = NULL;
	struct bri_err err = {0};
	struct seen seen = {0};
	struct stat st, by_name;
	char *text = NULL, *path;
	size_t tlen = 0;

	EXPECT_EQ_INT(write_backup(s, "b1", bytes, len, "{\"m\":1}\n", &err), 0);
	/* The plain layout: NAME.db and NAME.db.meta, nothing else. */
	path = tu_fmt("%s/b1.db", s->dir);
	EXPECT(tu_exists(path));
	EXPECT_EQ_INT(stat(path, &by_name), 0);
	free(path);
	path = tu_fmt("%s/b1.db.meta", s->dir);
	EXPECT(tu_exists(path));
	free(path);
	EXPECT_EQ_INT(count_files(s->dir), 2);
	path = bri_store_backup_path(s, "b1");
	EXPECT_STREQ(strrchr(path, '/'), "/b1.db");
	free(path);

	EXPECT_EQ_INT(bri_store_list(s, count_one, &seen, &err), 0);
	EXPECT_EQ_INT(seen.n, 1);
	EXPECT_STREQ(seen.name, "b1");
	EXPECT_EQ_INT(seen.st.st_size, (long long)len);
	EXPECT_EQ_INT(bri_store_stat(s, "b1", &st), 0);
	EXPECT_EQ_INT(st.st_size, (long long)len);
	EXPECT(st.st_ino == by_name.st_ino && st.st_dev == by_name.st_dev);
	EXPECT_EQ_INT(bri_store_has(s, "b1"), 1);

	/* The reader: logical size, the identity it opened, the bytes. */
	EXPECT_EQ_INT(bri_store_open_reader(s, "b1", &r, &err), 0);
	if (r) {
		char *buf = malloc(len + 10);
		EXPECT_EQ_INT(r->size, (long long)len);
		EXPECT(r->st.st_ino == by_name.st_ino && r->st.st_dev == by_name.st_dev);
		EXPECT(r->fd >= 0);
		EXPECT_EQ_INT(bri_reader_read_full(r, buf, len, 0), 0);
		EXPECT(memcmp(buf, bytes, len) == 0);
		EXPECT_EQ_INT(bri_reader_pread(r, buf, 10, len - 4), 4);
		EXPECT_EQ_INT(bri_reader_pread(r, buf, 10, len + 100), 0);
		EXPECT_EQ_INT(bri_reader_read_full(r, buf, 10, len - 4), -EIO);
		free(buf);
		bri_reader_close(r);
	}

	/* Sidecars by kind. */
	EXPECT_EQ_INT(bri_store_sidecar_read(s, "b1", BRI_SIDECAR_META, 1024, &text, &tlen), 0);
	EXPECT_STREQ(text, "{\"m\":1}\n");
	free(text);
	EXPECT_EQ_INT(bri_store_sidecar_read(s, "b1", BRI_SIDECAR_META, 3, &text, &tlen), -EFBIG);
	for (int k = BRI_SIDECAR_VERIFY; k < BRI_SIDECAR_KINDS; k++) {
		char *want = tu_fmt("kind %d\n", k);
		EXPECT_EQ_INT(
		    bri_store_sidecar_write(s, "b1", (enum bri_sidecar)k, want, strlen(want), &err),
		    0);
		EXPECT_EQ_INT(bri_store_sidecar_stat(s, "b1", (enum bri_sidecar)k, &st), 0);
		EXPECT_EQ_INT(st.st_size, (long long)strlen(want));
		EXPECT_EQ_INT(
		    bri_store_sidecar_read(s, "b1", (enum bri_sidecar)k, 1024, &text, &tlen), 0);
		EXPECT_STREQ(text, want);
		free(text);
		free(want);
	}
	EXPECT_EQ_INT(count_files(s->dir), 2 + BRI_SIDECAR_KINDS - 1);
	EXPECT_EQ_INT(bri_store_sidecar_remove(s, "b1", BRI_SIDECAR_PIN), 0);
	EXPECT_EQ_INT(bri_store_sidecar_stat(s, "b1", BRI_SIDECAR_PIN, &st), -ENOENT);
	EXPECT_EQ_INT(bri_store_sidecar_read(s, "b1", BRI_SIDECAR_PIN, 1024, &text, &tlen),
	              -ENOENT);
}

static void test_failed_writes_leave_nothing(struct bri_store *s, const char *bytes, size_t len)
{
	struct bri_backup_writer *w = NULL;
	struct bri_err err = {0};
	char *text = NULL;
	size_t tlen = 0;
	int before = count_files(s->dir);

	/* Abandoned: begun, written, never committed. */
	EXPECT_EQ_INT(bri_store_write_begin(s, "b2", &w, &err), 0);
	EXPECT_EQ_INT(count_files(s->dir), before + 1); /* the temporary file */
	if (w) {
		EXPECT(write(w->fd, bytes, len) == (ssize_t)len);
		bri_store_write_end(w);
	}
	EXPECT_EQ_INT(count_files(s->dir), before);
	EXPECT_EQ_INT(bri_store_has(s, "b2"), 0);

	/* A commit that fails (the name is taken) leaves the other backup whole. */
	err.msg[0] = '\0';
	EXPECT_EQ_INT(write_backup(s, "b1", "x", 1, "{\"m\":2}\n", &err), -EEXIST);
	EXPECT_MSG(strstr(err.msg, "already exists"), "%s", err.msg);
	EXPECT_EQ_INT(count_files(s->dir), before);
	EXPECT_EQ_INT(bri_store_sidecar_read(s, "b1", BRI_SIDECAR_META, 1024, &text, &tlen), 0);
	EXPECT_STREQ(text, "{\"m\":1}\n");
	free(text);
}

/* SQLite reads a backup through the reader VFS: the plain reader and one from memory. */
static void test_vfs(struct bri_store *s, const char *bytes, size_t len)
{
	struct bri_reader *r = NULL;
	struct bri_err err = {0};
	sqlite3 *db = NULL;

	EXPECT_EQ_INT(bri_store_open_reader(s, "b1", &r, &err), 0);
	if (r) {
		EXPECT_EQ_INT(snapshot_open_reader(r, &db, &err), 0);
		EXPECT_EQ_INT(tu_count_rows(db, "videos"), 20);
		EXPECT_EQ_INT(tu_count_rows(db, "memory"), 300);
		EXPECT_EQ_INT(snapshot_check(db, false, &err), 0);
		/* Read-only: nothing is written through it, nothing beside it. */
		EXPECT(sqlite3_exec(db, "DELETE FROM videos", NULL, NULL, NULL) != SQLITE_OK);
		sqlite3_close(db);
		db = NULL;
		bri_reader_close(r);
	}

	struct mem m = {.bytes = bytes};
	struct bri_reader mr = {.pread = mem_pread,
	                        .close = mem_close,
	                        .size = len,
	                        .fd = -1,
	                        .label = "memory",
	                        .priv = &m};
	EXPECT_EQ_INT(snapshot_open_reader(&mr, &db, &err), 0);
	EXPECT_EQ_INT(tu_count_rows(db, "memory"), 300);
	EXPECT_EQ_INT(snapshot_check(db, false, &err), 0);
	sqlite3_close(db);
	db = NULL;

	/* Attached beside another backup (a diff of two backups reads both). */
	EXPECT_EQ_INT(bri_store_open_reader(s, "b1", &r, &err), 0);
	if (r) {
		EXPECT_EQ_INT(snapshot_open_reader(r, &db, &err), 0);
		EXPECT_EQ_INT(snapshot_attach_reader(db, &mr, "other", &err), 0);
		EXPECT_EQ_INT(tu_count_rows(db, "other\".\"memory"), 300);
		sqlite3_close(db);
		db = NULL;
		bri_reader_close(r);
	}

	/* A reader that fails: an error, never a crash or a verdict of "ok". */
	m.fail = EIO;
	int rc = snapshot_open_reader(&mr, &db, &err);
	if (rc == 0) {
		EXPECT(tu_count_rows(db, "memory") < 0);
		sqlite3_close(db);
	}
	EXPECT_EQ_INT(count_files(s->dir), 2 + BRI_SIDECAR_KINDS - 2);
}

/* Create, verify and restore through the interface; the identity recorded is the reader's. */
static void test_create_verify_restore(struct bri_store *s, const char *live)
{
	struct bri_create_opts co = {.name = "v1", .busy_timeout_ms = 1000};
	struct bri_restore_opts ro = {.verify = true, .busy_timeout_ms = 1000};
	struct bri_restore_report rep;
	struct bri_op_ctx ctx = {0};
	struct bri_verify_result res;
	struct bri_err err = {0};
	char *name = NULL;
	struct stat st;

	EXPECT_EQ_INT(bri_create(s, &co, &ctx, &name, &err), 0);
	EXPECT_STREQ(name, "v1");
	free(name);
	EXPECT_EQ_INT(bri_store_stat(s, "v1", &st), 0);
	EXPECT_EQ_INT(bri_verify_backup(s, "v1", &ctx, &res, &err), 0);
	EXPECT_MSG(res.status == BRI_VERIFY_OK, "%s", res.reason);
	EXPECT(bri_verify_matches(&res, &st));
	memset(&res, 0, sizeof(res));
	EXPECT_EQ_INT(bri_verify_load(s, "v1", &res), 0);
	EXPECT_EQ_INT(res.status, BRI_VERIFY_OK);
	/* b1's metadata is no backup's: verify says so. */
	EXPECT_EQ_INT(bri_verify_backup(s, "b1", &ctx, &res, &err), 0);
	EXPECT_EQ_INT(res.status, BRI_VERIFY_FAILED);

	sqlite3 *db;
	if (sqlite3_open(live, &db) != SQLITE_OK)
		TU_DIE("open %s", live);
	tu_exec(db, "DELETE FROM memory");
	sqlite3_close(db);
	EXPECT_EQ_INT(bri_restore(s, "v1", &ro, &ctx, &rep, &err), 0);
	if (sqlite3_open(live, &db) != SQLITE_OK)
		TU_DIE("open %s", live);
	EXPECT_EQ_INT(tu_count_rows(db, "memory"), 300);
	sqlite3_close(db);
	/* The safety backup and v1 go; the store is as the other tests left it. */
	EXPECT_EQ_INT(bri_store_remove(s, "v1", &err), 0);
	EXPECT_EQ_INT(bri_store_remove(s, rep.safety_name, &err), 0);
}

static void test_remove_and_sweep(struct bri_store *s)
{
	struct bri_err err = {0};
	struct stat st;
	char *path;
	int lockfd;

	EXPECT_EQ_INT(bri_store_remove(s, "b1", &err), 0);
	EXPECT_EQ_INT(bri_store_stat(s, "b1", &st), -ENOENT);
	EXPECT_EQ_INT(count_files(s->dir), 0);
	EXPECT_EQ_INT(bri_store_remove(s, "b1", &err), 0);

	/* The sweep removes sidecars of no backup, but keeps a file of no kind. */
	EXPECT_EQ_INT(bri_store_sidecar_write(s, "gone", BRI_SIDECAR_META, "{}", 2, &err), 0);
	EXPECT_EQ_INT(bri_store_sidecar_write(s, "gone", BRI_SIDECAR_PIN, "", 0, &err), 0);
	EXPECT_EQ_INT(bri_store_sidecar_write(s, "gone", BRI_SIDECAR_REHEARSAL, "{}", 2, &err), 0);
	path = tu_fmt("%s/gone.db.report", s->dir);
	tu_write_str(path, "r");
	free(path);
	lockfd = bri_store_lock(s, &err);
	EXPECT(lockfd >= 0);
	bri_store_unlock(lockfd);
	EXPECT_EQ_INT(bri_store_sidecar_stat(s, "gone", BRI_SIDECAR_META, &st), -ENOENT);
	EXPECT_EQ_INT(bri_store_sidecar_stat(s, "gone", BRI_SIDECAR_PIN, &st), -ENOENT);
	EXPECT_EQ_INT(bri_store_sidecar_stat(s, "gone", BRI_SIDECAR_REHEARSAL, &st), -ENOENT);
	path = tu_fmt("%s/gone.db.report", s->dir);
	EXPECT_EQ_INT(access(path, F_OK), 0);
	unlink(path);
	free(path);
}

/* store.json: plain or absent is the plain format; others are refused clearly. */
static void test_format(const char *live)
{
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char *dir = tu_fmt("%s/fmt", base), *json = tu_fmt("%s/fmt/store.json", base);

	EXPECT_EQ_INT(bri_store_open(live, dir, true, &s, &err), 0);
	bri_store_close(s);
	s = NULL;
	tu_write_str(json, "{\"format\": \"plain\", \"version\": 1}\n");
	EXPECT_EQ_INT(bri_store_open(live, dir, false, &s, &err), 0);
	EXPECT(s && s->ops == &bri_store_plain_ops);
	bri_store_close(s);
	s = NULL;
	tu_write_str(json, "{\"format\": \"tapes\"}\n");
	EXPECT_EQ_INT(bri_store_open(live, dir, false, &s, &err), -EPROTONOSUPPORT);
	EXPECT_MSG(strstr(err.msg, "\"tapes\""), "%s", err.msg);
	tu_write_str(json, "not json");
	EXPECT_EQ_INT(bri_store_open(live, dir, false, &s, &err), -EINVAL);
	EXPECT(s == NULL);
	EXPECT(bri_store_format("plain") == &bri_store_plain_ops);
	EXPECT(bri_store_format("pages") == &bri_store_pages_ops);
	EXPECT(bri_store_format("nope") == NULL);
	free(json);
	free(dir);
}

int main(void)
{
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char *live, *dir, *bytes;
	size_t len = 0;

	base = tu_tmpdir("backend");
	live = tu_fmt("%s/live.db", base);
	dir = tu_fmt("%s/store", base);
	tu_make_db(live, "delete", 20, 300, false);
	bytes = tu_read(live, &len);
	if (!bytes)
		TU_DIE("read %s", live);
	if (bri_store_open(live, dir, true, &s, &err) != 0)
		TU_DIE("store: %s", err.msg);

	test_empty_and_missing(s);
	test_round_trip(s, bytes, len);
	test_failed_writes_leave_nothing(s, bytes, len);
	test_vfs(s, bytes, len);
	test_create_verify_restore(s, live);
	test_remove_and_sweep(s);
	test_format(live);

	bri_store_close(s);
	free(bytes);
	free(dir);
	free(live);
	tu_tmpdir_done(base);
	return EXPECT_RESULT();
}
