/*
 * Unit tests of the catalog (include/bri/catalog.h), with backups made by
 * bri_create (include/bri/create.h) from a real live database in WAL mode
 * held open by a writer: create's output (modes, DELETE journal mode,
 * checksum, counts, kinds, refused names), then scan newest first, a .db
 * without .meta listed with meta_ok false and its kind by name, temporary
 * and foreign files and symlinks not listed, find/newest, and a rescan with
 * prev that reuses unchanged entries and rereads changed ones.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bri/catalog.h"
#include "bri/checksum.h"
#include "bri/create.h"
#include "bri/store.h"
#include "bri/verify.h"
#include "expect.h"
#include "testutil.h"
#include "../../src/core/internal.h"

static struct bri_op_ctx ctx;
static time_t clock_now; /* the time of the next backup: one second apart, in the past */

static int create(struct bri_store *s, const char *name, enum bri_kind kind, char **out,
                  struct bri_err *err)
{
	struct bri_create_opts o = {.name = name, .kind = kind};
	if (!clock_now)
		clock_now = time(NULL) - 30;
	o.now = clock_now++;
	*out = NULL;
	memset(err, 0, sizeof(*err));
	return bri_create(s, &o, &ctx, out, err);
}

/* Checks one fresh backup's files against the live counts. */
static void check_backup(struct bri_store *s, const char *name, enum bri_kind kind, int64_t videos,
                         int64_t memory)
{
	char *db = bri_store_path(s, name, ".db");
	char *meta = bri_store_path(s, name, ".db.meta");
	EXPECT_EQ_INT(bri_store_has(s, name), 1);
	EXPECT_EQ_INT(tu_mode(db), 0600);
	EXPECT_EQ_INT(tu_mode(meta), 0600);

	/* Readable from read-only media: not WAL (header bytes 18/19 == 1). */
	size_t len = 0;
	unsigned char *h = (unsigned char *)tu_read(db, &len);
	EXPECT(h && len >= 100 && memcmp(h, "SQLite format 3", 16) == 0);
	if (h && len >= 100)
		EXPECT_MSG(h[18] == 1 && h[19] == 1, "%s: header bytes 18/19 = %d/%d (WAL is 2)",
		           name, h[18], h[19]);
	free(h);

	char *json = NULL;
	struct bri_meta m;
	struct bri_err err = {0};
	char *mf = tu_fmt("%s.db.meta", name);
	EXPECT_EQ_INT(bri_store_read_file(s, mf, BRI_META_MAX_BYTES, &json, &len), 0);
	memset(&m, 0, sizeof(m));
	int rc = json ? bri_meta_parse(json, len, &m, &err) : -1;
	EXPECT_MSG(rc == 0, "%s.db.meta: %s", name, err.msg);
	if (rc == 0) {
		char hex[BRI_CHECKSUM_HEX_LEN + 1];
		struct stat st;
		EXPECT_EQ_INT(bri_checksum_path(db, &ctx, hex, &err), 0);
		EXPECT_STREQ(m.checksum, hex);
		EXPECT(stat(db, &st) == 0);
		EXPECT_EQ_INT(m.size_bytes, st.st_size);
		EXPECT_EQ_INT(m.kind, kind);
		EXPECT_EQ_INT(bri_meta_rows(&m, "videos"), videos);
		EXPECT_EQ_INT(bri_meta_rows(&m, "memory"), memory);
		EXPECT_EQ_INT(m.ntables, 2);
		EXPECT(m.backup_path && strstr(m.backup_path, name));
		EXPECT(labs((long)(m.time - time(NULL))) < 60);
		struct bri_verify_result r;
		EXPECT_EQ_INT(bri_verify_file(db, &m, NULL, &ctx, &r), 0);
		EXPECT_MSG(r.status == BRI_VERIFY_OK, "%s: fresh backup does not verify: %s", name,
		           r.reason);
		bri_meta_free(&m);
	}
	free(json);
	free(mf);
	free(db);
	free(meta);
}

static int count_tmp(const char *dir)
{
	int n = 0;
	DIR *d = opendir(dir);
	struct dirent *de;
	for (de = d ? readdir(d) : NULL; de; de = readdir(d)) {
		size_t l = strlen(de->d_name);
		n += l > 4 && strcmp(de->d_name + l - 4, ".tmp") == 0;
	}
	if (d)
		closedir(d);
	return n;
}

static void set_mtime(const char *path, time_t t)
{
	struct timespec ts[2] = {{t, 0}, {t, 0}};
	if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) < 0)
		TU_DIE("utimensat %s", path);
}

static void test_catalog(const char *base)
{
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char *data = tu_fmt("%s/data", base);
	char *live = tu_fmt("%s/data/bri.db", base);
	EXPECT(mkdir(data, 0755) == 0);
	sqlite3 *w = tu_make_db(live, "wal", 42, 300, true);
	if (bri_store_open(live, NULL, true, &s, &err) != 0)
		TU_DIE("store: %s", err.msg);

	/* An empty store: an empty catalog, not an error. */
	struct bri_catalog *c = NULL;
	EXPECT_EQ_INT(bri_catalog_scan(s, NULL, &c, &err), 0);
	if (c) {
		EXPECT_EQ_INT(c->n, 0);
		EXPECT(bri_catalog_newest(c) == NULL);
		EXPECT(bri_catalog_find(c, "x") == NULL);
		bri_catalog_free(c);
	}

	/* Three backups in three different seconds, the live db changing between them. */
	char *n1 = NULL, *n2 = NULL, *n3 = NULL, *nx = NULL;
	EXPECT_EQ_INT(create(s, "first", BRI_KIND_AUTO, &n1, &err), 0);
	EXPECT_STREQ(n1, "first");
	check_backup(s, "first", BRI_KIND_NAMED, 42, 300);
	tu_exec(w, "INSERT INTO videos(title) VALUES ('a'), ('b'), ('c'), ('d'), ('e')");
	EXPECT_EQ_INT(create(s, NULL, BRI_KIND_AUTO, &n2, &err), 0);
	EXPECT_MSG(n2 && strncmp(n2, "bri_backup_", 11) == 0, "auto name %s", n2 ? n2 : "(null)");
	if (n2)
		check_backup(s, n2, BRI_KIND_AUTO, 47, 300);
	tu_exec(w, "DELETE FROM memory WHERE id <= 100");
	EXPECT_EQ_INT(create(s, "third", BRI_KIND_AUTO, &n3, &err), 0);
	check_backup(s, "third", BRI_KIND_NAMED, 47, 200);
	EXPECT_EQ_INT(tu_count_rows(w, "memory"), 200);
	EXPECT_EQ_INT(count_tmp(s->dir), 0);
	EXPECT_EQ_INT(tu_mode(s->dir), 0700);
	if (!n2)
		n2 = strdup("missing");

	/* Refused names and taken names: an error and nothing written. */
	EXPECT_EQ_INT(create(s, "first", BRI_KIND_AUTO, &nx, &err), -EEXIST);
	EXPECT(nx == NULL);
	EXPECT(err.msg[0] != '\0');
	EXPECT_EQ_INT(create(s, "../x", BRI_KIND_AUTO, &nx, &err), -EINVAL);
	EXPECT_EQ_INT(create(s, "ctl", BRI_KIND_AUTO, &nx, &err), -EINVAL);
	EXPECT_EQ_INT(create(s, "a b", BRI_KIND_AUTO, &nx, &err), -EINVAL);
	EXPECT_EQ_INT(count_tmp(s->dir), 0);

	/* No live database: -ENOENT, and no live file is created. */
	{
		struct bri_store *s2 = NULL;
		char *nolive = tu_fmt("%s/data/none.db", base);
		char *dir2 = tu_fmt("%s/other", base);
		EXPECT_EQ_INT(bri_store_open(nolive, dir2, true, &s2, &err), 0);
		if (s2) {
			EXPECT_EQ_INT(create(s2, "x", BRI_KIND_AUTO, &nx, &err), -ENOENT);
			EXPECT_EQ_INT(bri_store_has(s2, "x"), 0);
			EXPECT(!tu_exists(nolive));
			bri_store_close(s2);
		}
		free(nolive);
		free(dir2);
	}

	/* Scan: newest first. */
	c = NULL;
	EXPECT_EQ_INT(bri_catalog_scan(s, NULL, &c, &err), 0);
	if (!c)
		TU_DIE("scan: %s", err.msg);
	EXPECT_EQ_INT(c->n, 3);
	if (c->n == 3) {
		EXPECT_STREQ(c->entries[0]->name, "third");
		EXPECT_STREQ(c->entries[1]->name, n2);
		EXPECT_STREQ(c->entries[2]->name, "first");
		EXPECT(c->entries[0]->time > c->entries[1]->time);
		EXPECT(c->entries[1]->time > c->entries[2]->time);
		for (size_t i = 0; i < 3; i++) {
			struct bri_entry *e = c->entries[i];
			EXPECT(e->meta_ok);
			EXPECT_EQ_INT(e->time, e->meta.time);
			EXPECT(e->db_st.st_size > 0);
			EXPECT_EQ_INT(e->db_st.st_size, e->meta.size_bytes);
			EXPECT(e->meta_st.st_size > 0);
			EXPECT_EQ_INT(e->verify.status, BRI_VERIFY_UNVERIFIED);
			for (size_t j = 0; j < i; j++)
				EXPECT(e->id != c->entries[j]->id);
		}
		EXPECT_EQ_INT(c->entries[0]->kind, BRI_KIND_NAMED);
		EXPECT_EQ_INT(c->entries[1]->kind, BRI_KIND_AUTO);
		EXPECT_EQ_INT(bri_meta_rows(&c->entries[1]->meta, "videos"), 47);
	}
	EXPECT(bri_catalog_find(c, "first") != NULL);
	EXPECT(bri_catalog_find(c, "firs") == NULL);
	EXPECT(bri_catalog_find(c, "nope") == NULL);
	EXPECT(bri_catalog_newest(c) && strcmp(bri_catalog_newest(c)->name, "third") == 0);
	bri_catalog_free(c);

	/* .db files without .meta are not backups: kept apart in unknown (kind
	 * unknown, time from mtime, verification failed), never among entries. */
	char *first_db = bri_store_path(s, "first", ".db");
	char *orphan = bri_store_path(s, "orphan", ".db");
	char *safety = bri_store_path(s, "pre_restore_safety_20250101_000000", ".db");
	char *autob = bri_store_path(s, "bri_backup_20250101_000000", ".db");
	time_t old = time(NULL) - 10 * 86400;
	tu_copy(first_db, orphan);
	tu_copy(first_db, safety);
	tu_copy(first_db, autob);
	set_mtime(orphan, old);
	set_mtime(safety, old - 60);
	set_mtime(autob, old - 120);

	/* The longest valid name is listed; one byte more is not. */
	char n128[BRI_NAME_MAX + 2];
	memset(n128, 'L', sizeof(n128));
	n128[BRI_NAME_MAX] = '\0';
	char *p128 = bri_store_path(s, n128, ".db");
	tu_copy(first_db, p128);
	set_mtime(p128, old - 30);
	n128[BRI_NAME_MAX] = 'L';
	n128[BRI_NAME_MAX + 1] = '\0';
	char *p129 = bri_store_path(s, n128, ".db");
	tu_copy(first_db, p129);
	n128[BRI_NAME_MAX] = '\0';

	/* Things that are not backups. */
	static const char *junk[] = {".x.create.123.abc.tmp",
	                             ".hidden.db",
	                             "notes.txt",
	                             "bad name.db",
	                             "ctl.db",
	                             "latest.db",
	                             "-dash.db",
	                             "ghost.db.meta",
	                             "y.db-journal",
	                             "z.db-wal",
	                             "w.db-shm",
	                             "first.db.bak"};
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		char *p = bri_store_path(s, junk[i], "");
		tu_copy(first_db, p);
		free(p);
	}
	char *dirdb = bri_store_path(s, "dir", ".db");
	EXPECT(mkdir(dirdb, 0700) == 0);
	char *link = bri_store_path(s, "link", ".db");
	EXPECT(symlink("first.db", link) == 0);
	char *link2 = bri_store_path(s, "link2", ".db");
	EXPECT(symlink(first_db, link2) == 0);
	char *linkmeta = bri_store_path(s, "link2", ".db.meta");
	char *first_meta = bri_store_path(s, "first", ".db.meta");
	tu_copy(first_meta, linkmeta);

	c = NULL;
	EXPECT_EQ_INT(bri_catalog_scan(s, NULL, &c, &err), 0);
	if (!c)
		TU_DIE("scan: %s", err.msg);
	EXPECT_EQ_INT(c->n, 3);
	EXPECT_EQ_INT(c->nunknown, 4);
	EXPECT(bri_catalog_find(c, n128) == NULL && catalog_find_unknown(c, n128) != NULL);
	for (size_t i = 0; i < c->n; i++) {
		const char *nm = c->entries[i]->name;
		EXPECT_MSG(strcmp(nm, "third") == 0 || strcmp(nm, n2) == 0 ||
		               strcmp(nm, "first") == 0,
		           "listed a non-backup: \"%s\"", nm);
		EXPECT(c->entries[i]->meta_ok && c->entries[i]->kind != BRI_KIND_UNKNOWN);
		if (i > 0)
			EXPECT_MSG(c->entries[i]->time <= c->entries[i - 1]->time,
			           "not newest first at %zu", i);
	}
	for (size_t i = 0; i < c->nunknown; i++) {
		const struct bri_entry *u = c->unknown[i];
		EXPECT(!u->meta_ok && u->kind == BRI_KIND_UNKNOWN);
		EXPECT_EQ_INT(u->verify.status, BRI_VERIFY_FAILED);
		EXPECT(strstr(u->verify.reason, "not a backup") != NULL);
		if (i > 0)
			EXPECT_MSG(u->time <= c->unknown[i - 1]->time, "unknown not newest first");
	}
	struct bri_entry *e = bri_catalog_find(c, "orphan");
	EXPECT(e == NULL);
	e = catalog_find_unknown(c, "orphan");
	EXPECT(e != NULL);
	if (e) {
		EXPECT(!e->meta_ok);
		EXPECT(e->meta_error[0] != '\0');
		EXPECT_EQ_INT(e->time, old);
		EXPECT_EQ_INT(e->meta_st.st_size, 0);
		EXPECT_EQ_INT(e->kind, BRI_KIND_UNKNOWN);
	}
	/* Whatever the name says: without metadata, not a backup. */
	EXPECT(bri_catalog_find(c, "pre_restore_safety_20250101_000000") == NULL);
	e = catalog_find_unknown(c, "pre_restore_safety_20250101_000000");
	EXPECT(e && e->kind == BRI_KIND_UNKNOWN);
	EXPECT(bri_catalog_find(c, "bri_backup_20250101_000000") == NULL);
	EXPECT(catalog_find_unknown(c, "bri_backup_20250101_000000") != NULL);
	EXPECT(catalog_find_unknown(c, "first") == NULL);
	EXPECT(bri_catalog_find(c, "link") == NULL);
	EXPECT(bri_catalog_find(c, "link2") == NULL);
	EXPECT(bri_catalog_find(c, "dir") == NULL);
	EXPECT(bri_catalog_find(c, "ctl") == NULL);
	EXPECT(bri_catalog_find(c, "ghost") == NULL);
	if (c->nunknown == 4)
		EXPECT_STREQ(c->unknown[3]->name, "bri_backup_20250101_000000");

	/* Rescan with prev: same entries, same ids; prev loses what was taken over. */
	uint64_t id_first = bri_catalog_find(c, "first") ? bri_catalog_find(c, "first")->id : 0;
	uint64_t id_third = bri_catalog_find(c, "third") ? bri_catalog_find(c, "third")->id : 0;
	uint64_t id_orphan =
	    catalog_find_unknown(c, "orphan") ? catalog_find_unknown(c, "orphan")->id : 0;
	struct bri_catalog *c2 = NULL;
	EXPECT_EQ_INT(bri_catalog_scan(s, c, &c2, &err), 0);
	if (!c2)
		TU_DIE("rescan: %s", err.msg);
	EXPECT_EQ_INT(c2->n, 3);
	EXPECT_EQ_INT(c2->nunknown, 4);
	EXPECT_EQ_INT(c2->generation, c->generation);
	EXPECT(bri_catalog_find(c2, "first") && bri_catalog_find(c2, "first")->id == id_first);
	EXPECT(bri_catalog_find(c2, "third") && bri_catalog_find(c2, "third")->id == id_third);
	EXPECT(catalog_find_unknown(c2, "orphan") &&
	       catalog_find_unknown(c2, "orphan")->id == id_orphan);
	bri_catalog_free(c);

	/* A verification changes .verify: the entry is re-read, its id stays. */
	struct bri_verify_result vr;
	EXPECT_EQ_INT(bri_verify_backup(s, "first", &ctx, &vr, &err), 0);
	EXPECT_EQ_INT(vr.status, BRI_VERIFY_OK);
	EXPECT_EQ_INT(bri_verify_backup(s, "orphan", &ctx, &vr, &err), 0);
	EXPECT_EQ_INT(vr.status, BRI_VERIFY_FAILED);
	/* Deleting one backup's files makes it disappear. */
	char *third_db = bri_store_path(s, "third", ".db");
	char *third_meta = bri_store_path(s, "third", ".db.meta");
	EXPECT(unlink(third_db) == 0);
	EXPECT(unlink(third_meta) == 0);
	struct bri_catalog *c3 = NULL;
	EXPECT_EQ_INT(bri_catalog_scan(s, c2, &c3, &err), 0);
	if (!c3)
		TU_DIE("rescan: %s", err.msg);
	EXPECT_EQ_INT(c3->n, 2);
	EXPECT_EQ_INT(c3->nunknown, 4);
	EXPECT(bri_catalog_find(c3, "third") == NULL);
	e = bri_catalog_find(c3, "first");
	EXPECT(e && e->id == id_first && e->verify.status == BRI_VERIFY_OK);
	e = catalog_find_unknown(c3, "orphan");
	EXPECT(e && e->id == id_orphan && e->verify.status == BRI_VERIFY_FAILED);
	/* Its verification wrote nothing beside it. */
	char *orphan_verify = bri_store_path(s, "orphan", ".db.verify");
	EXPECT(!tu_exists(orphan_verify));
	free(orphan_verify);
	EXPECT(c3->generation > c2->generation);
	EXPECT(bri_catalog_newest(c3) && strcmp(bri_catalog_newest(c3)->name, n2) == 0);
	bri_catalog_free(c2);

	/* A safety backup, newest of all: newest() still names the newest non-safety. */
	char *ns = NULL;
	EXPECT_EQ_INT(create(s, "pre_restore_safety_test", BRI_KIND_SAFETY, &ns, &err), 0);
	check_backup(s, "pre_restore_safety_test", BRI_KIND_SAFETY, 47, 200);
	struct bri_catalog *c4 = NULL;
	EXPECT_EQ_INT(bri_catalog_scan(s, c3, &c4, &err), 0);
	bri_catalog_free(c3);
	if (c4) {
		EXPECT_EQ_INT(c4->n, 3);
		EXPECT(c4->n > 0 && strcmp(c4->entries[0]->name, "pre_restore_safety_test") == 0);
		EXPECT(c4->n > 0 && c4->entries[0]->kind == BRI_KIND_SAFETY);
		EXPECT(bri_catalog_newest(c4) && strcmp(bri_catalog_newest(c4)->name, n2) == 0);
		EXPECT(bri_catalog_find(c4, "first") &&
		       bri_catalog_find(c4, "first")->id == id_first);
		bri_catalog_free(c4);
	}

	/* Only safety backups: newest() falls back to the newest of them. */
	{
		struct bri_store *s3 = NULL;
		char *dir3 = tu_fmt("%s/safety-only", base);
		EXPECT_EQ_INT(bri_store_open(live, dir3, true, &s3, &err), 0);
		char *nn = NULL;
		EXPECT_EQ_INT(create(s3, "pre_restore_safety_x", BRI_KIND_SAFETY, &nn, &err), 0);
		struct bri_catalog *c5 = NULL;
		EXPECT_EQ_INT(bri_catalog_scan(s3, NULL, &c5, &err), 0);
		if (c5) {
			EXPECT(bri_catalog_newest(c5) &&
			       strcmp(bri_catalog_newest(c5)->name, "pre_restore_safety_x") == 0);
			bri_catalog_free(c5);
		}
		free(nn);
		free(dir3);
		bri_store_close(s3);
	}

	/* The live database was never changed by any of this, and is still WAL. */
	EXPECT_EQ_INT(tu_count_rows(w, "videos"), 47);
	sqlite3_stmt *st;
	EXPECT(sqlite3_prepare_v2(w, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK);
	EXPECT(sqlite3_step(st) == SQLITE_ROW &&
	       strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0);
	sqlite3_finalize(st);
	sqlite3_close(w);

	free(ns);
	free(p128);
	free(p129);
	free(third_db);
	free(third_meta);
	free(first_meta);
	free(linkmeta);
	free(link2);
	free(link);
	free(dirdb);
	free(autob);
	free(safety);
	free(orphan);
	free(first_db);
	free(n1);
	free(n2);
	free(n3);
	bri_store_close(s);
	free(live);
	free(data);
}

/*
 * FIFOs where files are expected must not hang a scan (the mount would
 * freeze): run it in a child with an alarm.
 */
static void test_fifos(const char *base)
{
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char *live = tu_fmt("%s/fifo.db", base);
	char *dir = tu_fmt("%s/fifo-store", base);
	if (bri_store_open(live, dir, true, &s, &err) != 0)
		TU_DIE("store: %s", err.msg);
	char *p1 = bri_store_path(s, "pipe", ".db");
	char *p2 = bri_store_path(s, "pipe", ".db.meta");
	char *p3 = bri_store_path(s, "pipe", ".db.verify");
	char *p4 = bri_store_path(s, "fifo", ".db");
	tu_write_str(p1, "not read by the catalog");
	EXPECT(mkfifo(p2, 0600) == 0);
	EXPECT(mkfifo(p3, 0600) == 0);
	EXPECT(mkfifo(p4, 0600) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		alarm(10);
		struct bri_catalog *c = NULL;
		if (bri_catalog_scan(s, NULL, &c, &err) != 0)
			_exit(2);
		if (c->n != 0 || c->nunknown != 1 || strcmp(c->unknown[0]->name, "pipe") != 0)
			_exit(3);
		if (c->unknown[0]->meta_ok || c->unknown[0]->kind != BRI_KIND_UNKNOWN)
			_exit(4);
		bri_catalog_free(c);
		_exit(0);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	EXPECT_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "scan with FIFOs: %s %d",
	           WIFSIGNALED(status) ? "killed by signal (hung?)" : "exit",
	           WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	free(p1);
	free(p2);
	free(p3);
	free(p4);
	free(dir);
	free(live);
	bri_store_close(s);
}

/*
 * Opens of .meta and .verify files, counted while `counting`: the core's
 * openat calls resolve to this definition in the test program (with
 * _FILE_OFFSET_BITS=64 glibc names the symbol openat64, both here and in
 * the core), which counts and then makes the real system call: the files
 * are real, nothing is faked.
 */
static atomic_int meta_opens;
static volatile bool counting;

static bool is_sidecar(const char *path)
{
	size_t l = strlen(path);
	return (l > 5 && strcmp(path + l - 5, ".meta") == 0) ||
	       (l > 7 && strcmp(path + l - 7, ".verify") == 0);
}

static int counted_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	if (counting && is_sidecar(path))
		atomic_fetch_add(&meta_opens, 1);
	return (int)syscall(SYS_openat, dirfd, path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;
	if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {
		va_list ap;
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	return counted_openat(dirfd, path, flags, mode);
}

/*
 * A rescan takes unchanged entries over without opening their files (stat
 * calls only), over 2000 backups, keeping every id; a changed .meta is
 * re-read.
 */
static void test_rescan_reuse(const char *base)
{
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char *live = tu_fmt("%s/many.db", base);
	char *dir = tu_fmt("%s/many-store", base);
	if (bri_store_open(live, dir, true, &s, &err) != 0)
		TU_DIE("store: %s", err.msg);
	enum { N = 2000 };
	struct bri_meta m;
	memset(&m, 0, sizeof(m));
	m.source_db = live;
	strcpy(m.checksum, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	struct bri_table_count t = {"videos", 42};
	m.tables = &t;
	m.ntables = 1;
	m.size_bytes = 4;
	m.kind = BRI_KIND_AUTO;
	time_t t0 = 1760625000;
	for (int i = 0; i < N; i++) {
		char name[32];
		snprintf(name, sizeof(name), "b%04d", i);
		m.time = t0 + i * 60;
		bri_time_local(m.time, m.backup_time, sizeof(m.backup_time));
		bri_time_utc(m.time, m.backup_time_utc, sizeof(m.backup_time_utc));
		char *bp = bri_store_path(s, name, ".db");
		m.backup_path = bp;
		char *json;
		size_t len;
		EXPECT_EQ_INT(bri_meta_format(&m, &json, &len), 0);
		char *file = bri_store_path(s, name, ".db.meta");
		tu_write(file, json, len);
		free(file);
		tu_write(bp, "data", 4);
		free(json);
		free(bp);
	}
	double a = bri_now_mono();
	struct bri_catalog *c1 = NULL, *c2 = NULL, *c3 = NULL;
	EXPECT_EQ_INT(bri_catalog_scan(s, NULL, &c1, &err), 0);
	double b = bri_now_mono();
	if (!c1)
		TU_DIE("scan: %s", err.msg);
	EXPECT_EQ_INT(c1->n, N);
	EXPECT(c1->n == N && strcmp(c1->entries[0]->name, "b1999") == 0);
	for (size_t i = 0; i < c1->n; i++)
		EXPECT_MSG(c1->entries[i]->meta_ok, "%s: %s", c1->entries[i]->name,
		           c1->entries[i]->meta_error);
	uint64_t *ids = calloc(N, sizeof(*ids));
	for (size_t i = 0; i < c1->n; i++)
		ids[i] = c1->entries[i]->id;

	atomic_store(&meta_opens, 0);
	counting = true;
	EXPECT_EQ_INT(bri_catalog_scan(s, c1, &c2, &err), 0);
	counting = false;
	double c = bri_now_mono();
	if (c2) {
		EXPECT_EQ_INT(c2->n, N);
		for (size_t i = 0; i < c2->n && i < N; i++)
			EXPECT_MSG(c2->entries[i]->id == ids[i], "id of %s changed",
			           c2->entries[i]->name);
	}
	EXPECT_MSG(atomic_load(&meta_opens) == 0,
	           "a rescan of unchanged backups opened %d .meta/.verify files",
	           (int)atomic_load(&meta_opens));

	/* A changed .meta is re-read (and only that one); its id stays. */
	char *mp = bri_store_path(s, "b0500", ".db.meta");
	size_t len = 0;
	char *text = tu_read(mp, &len);
	char *at = text ? strstr(text, "\"videos\": 42") : NULL;
	EXPECT(at != NULL);
	if (at)
		memcpy(at, "\"videos\": 24", 12);
	if (text)
		tu_write(mp, text, len);
	free(text);
	atomic_store(&meta_opens, 0);
	counting = true;
	EXPECT_EQ_INT(bri_catalog_scan(s, c2, &c3, &err), 0);
	counting = false;
	EXPECT_MSG(atomic_load(&meta_opens) >= 1 && atomic_load(&meta_opens) <= 2,
	           "%d sidecar opens for one changed backup", (int)atomic_load(&meta_opens));
	if (c3) {
		struct bri_entry *e = bri_catalog_find(c3, "b0500");
		EXPECT(e && bri_meta_rows(&e->meta, "videos") == 24);
		EXPECT(e && e->id == ids[N - 1 - 500]);
	}
	fprintf(stderr, "scan of %d backups: %.3f s, rescan: %.3f s\n", N, b - a, c - b);
	EXPECT_MSG(c - b < 5.0, "rescan of %d unchanged backups took %.3f s", N, c - b);
	bri_catalog_free(c1);
	bri_catalog_free(c2);
	bri_catalog_free(c3);
	free(ids);
	free(mp);
	bri_store_close(s);
	free(dir);
	free(live);
}

int main(void)
{
	ctx = bri_op_ctx_self("cli");
	char *base = tu_tmpdir("catalog");
	test_catalog(base);
	test_fifos(base);
	test_rescan_reuse(base);
	tu_tmpdir_done(base);
	return EXPECT_RESULT();
}
