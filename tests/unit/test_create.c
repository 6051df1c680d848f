/*
 * Unit tests of taking a backup (include/bri/create.h, with the snapshot
 * module underneath): a consistent copy while another thread keeps writing
 * to the live WAL database, a rollback-journal live database left byte for
 * byte unchanged, -EBUSY and nothing in the store when a writer holds the
 * database exclusively past the busy timeout, a live file that is not
 * SQLite, lock_held, and progress reports. Real SQLite files only.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bri/catalog.h"
#include "bri/checksum.h"
#include "bri/create.h"
#include "bri/meta.h"
#include "bri/store.h"
#include "bri/verify.h"
#include "expect.h"
#include "testutil.h"

static struct bri_op_ctx ctx;

/* Entries of the store folder other than ".lock" and "audit.jsonl". */
static int count_files(const char *dir)
{
	int n = 0;
	DIR *d = opendir(dir);
	struct dirent *de;
	for (de = d ? readdir(d) : NULL; de; de = readdir(d)) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
		    strcmp(de->d_name, ".lock") == 0 || strcmp(de->d_name, "audit.jsonl") == 0)
			continue;
		n++;
	}
	if (d)
		closedir(d);
	return n;
}

/*
 * Checks backup name against itself: its meta parses, its checksum matches,
 * its counts are the backup file's own counts, it verifies ok, and it is not
 * in WAL mode. Returns the backup's row count of memory (or -1).
 */
static int64_t check_consistent(struct bri_store *s, const char *name)
{
	struct bri_err err = {0};
	char *db = bri_store_path(s, name, ".db");
	char *mf = tu_fmt("%s.db.meta", name);
	char *json = NULL;
	size_t len = 0;
	struct bri_meta m;
	int64_t rows = -1;
	memset(&m, 0, sizeof(m));
	EXPECT_EQ_INT(bri_store_read_file(s, mf, BRI_META_MAX_BYTES, &json, &len), 0);
	if (json && bri_meta_parse(json, len, &m, &err) == 0) {
		sqlite3 *b;
		char *uri = tu_fmt("file:%s?immutable=1", db);
		EXPECT(sqlite3_open_v2(uri, &b, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL) ==
		       SQLITE_OK);
		rows = tu_count_rows(b, "memory");
		EXPECT_EQ_INT(bri_meta_rows(&m, "memory"), rows);
		EXPECT_EQ_INT(bri_meta_rows(&m, "videos"), tu_count_rows(b, "videos"));
		sqlite3_close(b);
		free(uri);
		struct bri_verify_result r;
		EXPECT_EQ_INT(bri_verify_file(db, &m, NULL, &ctx, &r), 0);
		EXPECT_MSG(r.status == BRI_VERIFY_OK, "%s: %s", name, r.reason);
		unsigned char *h = (unsigned char *)tu_read(db, NULL);
		EXPECT(h && h[18] == 1 && h[19] == 1);
		free(h);
		EXPECT(m.page_size > 0);
		EXPECT(m.page_count > 0);
		struct stat st;
		EXPECT(stat(db, &st) == 0 && st.st_size == m.page_size * m.page_count);
		bri_meta_free(&m);
	} else {
		EXPECT_MSG(0, "%s: meta unreadable: %s", name, err.msg);
	}
	free(json);
	free(mf);
	free(db);
	return rows;
}

struct writer {
	const char *path;    /* live database */
	atomic_bool stop;    /* set to end the thread */
	atomic_long commits; /* transactions committed */
	int errors;          /* failed statements */
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	sqlite3 *db;
	if (sqlite3_open(w->path, &db) != SQLITE_OK)
		return NULL;
	sqlite3_busy_timeout(db, 5000);
	while (!atomic_load(&w->stop)) {
		if (sqlite3_exec(
		        db,
		        "BEGIN; INSERT INTO memory(video_id, content) VALUES (1, "
		        "hex(randomblob(200))); INSERT INTO memory(video_id, content) VALUES "
		        "(2, 'x'); COMMIT;",
		        NULL, NULL, NULL) == SQLITE_OK)
			atomic_fetch_add(&w->commits, 1);
		else {
			w->errors++;
			sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		}
	}
	sqlite3_close(db);
	return NULL;
}

struct progress_log {
	int calls;      /* reports seen */
	bool bad_total; /* done > total with total known */
};

static void on_progress(void *arg, const char *phase, uint64_t done, uint64_t total)
{
	struct progress_log *p = arg;
	(void)phase;
	p->calls++;
	if (total && done > total)
		p->bad_total = true;
}

static void test_concurrent_writer(const char *base)
{
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char *live = tu_fmt("%s/wal/bri.db", base);
	char *dir = tu_fmt("%s/wal", base);
	EXPECT(mkdir(dir, 0755) == 0);
	tu_make_db(live, "wal", 42, 20000, false);
	EXPECT_EQ_INT(bri_store_open(live, NULL, true, &s, &err), 0);
	if (!s)
		TU_DIE("store: %s", err.msg);

	struct writer w = {.path = live};
	atomic_init(&w.stop, false);
	atomic_init(&w.commits, 0);
	pthread_t th;
	EXPECT(pthread_create(&th, NULL, writer_main, &w) == 0);
	while (atomic_load(&w.commits) < 20)
		usleep(1000);

	struct progress_log pl = {0};
	struct bri_op_ctx pctx = ctx;
	pctx.progress = on_progress;
	pctx.progress_arg = &pl;
	int64_t prev = -1;
	for (int i = 0; i < 3; i++) {
		char name[32], *out = NULL;
		snprintf(name, sizeof(name), "busy%d", i);
		struct bri_create_opts o = {.name = name};
		long before = atomic_load(&w.commits);
		int rc = bri_create(s, &o, i == 0 ? &pctx : &ctx, &out, &err);
		EXPECT_MSG(rc == 0, "create under a writer: %d %s", rc, err.msg);
		free(out);
		if (rc == 0) {
			int64_t rows = check_consistent(s, name);
			/* Each snapshot is a committed state: whole transactions only. */
			EXPECT_MSG(rows >= 0 && (rows - 20000) % 2 == 0,
			           "snapshot holds half a transaction (%lld rows)",
			           (long long)rows);
			EXPECT(rows >= 20000 + 2 * before);
			EXPECT(rows >= prev);
			prev = rows;
		}
	}
	atomic_store(&w.stop, true);
	pthread_join(th, NULL);
	EXPECT_EQ_INT(w.errors, 0);
	EXPECT(atomic_load(&w.commits) > 20);
	EXPECT(pl.calls >= 1);
	EXPECT(!pl.bad_total);

	/* The live database is intact and still in WAL mode. */
	sqlite3 *db;
	EXPECT(sqlite3_open(live, &db) == SQLITE_OK);
	sqlite3_stmt *st;
	EXPECT(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK);
	EXPECT(sqlite3_step(st) == SQLITE_ROW &&
	       strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0);
	sqlite3_finalize(st);
	EXPECT(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK);
	EXPECT(sqlite3_step(st) == SQLITE_ROW &&
	       strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0);
	sqlite3_finalize(st);
	EXPECT_EQ_INT(tu_count_rows(db, "memory"), 20000 + 2 * atomic_load(&w.commits));
	sqlite3_close(db);
	bri_store_close(s);
	free(dir);
	free(live);
}

static void test_rollback_and_busy(const char *base)
{
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char *dir = tu_fmt("%s/rb", base);
	char *live = tu_fmt("%s/rb/bri.db", base);
	EXPECT(mkdir(dir, 0755) == 0);
	tu_make_db(live, "delete", 42, 500, false);
	EXPECT_EQ_INT(bri_store_open(live, NULL, true, &s, &err), 0);
	if (!s)
		TU_DIE("store: %s", err.msg);

	/* The live file is not changed by a backup, not even its header. */
	char before[BRI_CHECKSUM_HEX_LEN + 1], after[BRI_CHECKSUM_HEX_LEN + 1];
	struct stat st0, st1;
	EXPECT_EQ_INT(bri_checksum_path(live, &ctx, before, &err), 0);
	EXPECT(stat(live, &st0) == 0);
	char *out = NULL;
	struct bri_create_opts o = {.name = "plain"};
	EXPECT_EQ_INT(bri_create(s, &o, &ctx, &out, &err), 0);
	free(out);
	check_consistent(s, "plain");
	EXPECT_EQ_INT(bri_checksum_path(live, &ctx, after, &err), 0);
	EXPECT_STREQ(after, before);
	EXPECT(stat(live, &st1) == 0);
	EXPECT(st1.st_mtim.tv_sec == st0.st_mtim.tv_sec &&
	       st1.st_mtim.tv_nsec == st0.st_mtim.tv_nsec);
	char *j = tu_fmt("%s-journal", live), *wal = tu_fmt("%s-wal", live);
	EXPECT(!tu_exists(j));
	EXPECT(!tu_exists(wal));

	/* A writer holding the database exclusively: -EBUSY after the timeout. */
	int files = count_files(s->dir);
	sqlite3 *wdb;
	EXPECT(sqlite3_open(live, &wdb) == SQLITE_OK);
	tu_exec(wdb, "BEGIN EXCLUSIVE; INSERT INTO videos(title) VALUES ('held')");
	o.name = "blocked";
	o.busy_timeout_ms = 300;
	out = NULL;
	double t0 = bri_now_mono();
	int rc = bri_create(s, &o, &ctx, &out, &err);
	double took = bri_now_mono() - t0;
	EXPECT_EQ_INT(rc, -EBUSY);
	EXPECT(out == NULL);
	EXPECT(err.msg[0] != '\0');
	EXPECT_MSG(took >= 0.25 && took < 10, "busy timeout 300 ms took %.3f s", took);
	EXPECT_EQ_INT(bri_store_has(s, "blocked"), 0);
	EXPECT_EQ_INT(count_files(s->dir), files);
	tu_exec(wdb, "ROLLBACK");

	/* Creates are audited, failures too. */
	EXPECT_EQ_INT(tu_audit_count(s->dir, "create", "plain", true), 1);
	EXPECT(tu_audit_count(s->dir, "create", "blocked", false) >= 1);

	/* The writer gone, the same name works. */
	o.busy_timeout_ms = 0;
	EXPECT_EQ_INT(bri_create(s, &o, &ctx, &out, &err), 0);
	free(out);
	sqlite3_close(wdb);

	/* lock_held: the caller holds the store's lock. */
	int lfd = bri_store_lock(s, &err);
	EXPECT(lfd >= 0);
	struct bri_create_opts held = {.name = "held", .lock_held = true};
	out = NULL;
	EXPECT_EQ_INT(bri_create(s, &held, &ctx, &out, &err), 0);
	free(out);
	if (lfd >= 0)
		bri_store_unlock(lfd);
	EXPECT_EQ_INT(bri_store_has(s, "held"), 1);

	/* An empty name means an automatic one. */
	struct bri_create_opts empty = {.name = ""};
	out = NULL;
	EXPECT_EQ_INT(bri_create(s, &empty, &ctx, &out, &err), 0);
	EXPECT(out && strncmp(out, "bri_backup_", 11) == 0);
	free(out);

	/* The caller's time stamps the backup: its automatic name and its meta. */
	struct bri_create_opts dated = {.now = 1700000000};
	char when[64], stem[80];
	out = NULL;
	EXPECT_EQ_INT(bri_create(s, &dated, &ctx, &out, &err), 0);
	bri_time_local(1700000000, when, sizeof(when));
	snprintf(stem, sizeof(stem), "bri_backup_%.4s%.2s%.2s_%.2s%.2s%.2s", when, when + 5,
	         when + 8, when + 11, when + 14, when + 17);
	EXPECT_MSG(out && strcmp(out, stem) == 0, "auto name %s, expected %s", out ? out : "-", stem);
	if (out) {
		char *mp = bri_store_path(s, out, ".db.meta");
		size_t mlen = 0;
		char *mtext = tu_read(mp, &mlen);
		struct bri_meta m = {0};
		EXPECT(mtext && bri_meta_parse(mtext, mlen, &m, &err) == 0);
		EXPECT_EQ_INT(m.time, 1700000000);
		EXPECT_STREQ(m.backup_time, when);
		bri_meta_free(&m);
		free(mtext);
		free(mp);
	}
	free(out);

	free(j);
	free(wal);
	bri_store_close(s);
	free(live);
	free(dir);
}

static void test_not_sqlite(const char *base)
{
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char *dir = tu_fmt("%s/junk", base);
	char *live = tu_fmt("%s/junk/bri.db", base);
	EXPECT(mkdir(dir, 0755) == 0);
	char text[4096];
	memset(text, 'z', sizeof(text));
	tu_write(live, text, sizeof(text));
	EXPECT_EQ_INT(bri_store_open(live, NULL, true, &s, &err), 0);
	if (!s)
		TU_DIE("store: %s", err.msg);
	char *out = NULL;
	struct bri_create_opts o = {.name = "x"};
	memset(&err, 0, sizeof(err));
	int rc = bri_create(s, &o, &ctx, &out, &err);
	EXPECT_MSG(rc < 0, "a backup of a non-SQLite file succeeded");
	EXPECT(err.msg[0] != '\0');
	EXPECT_EQ_INT(bri_store_has(s, "x"), 0);
	EXPECT_EQ_INT(count_files(s->dir), 0);
	char *now = tu_read(live, NULL);
	EXPECT(now && memcmp(now, text, sizeof(text)) == 0);
	free(now);
	free(out);
	bri_store_close(s);
	free(live);
	free(dir);
}

/*
 * Table names that need quoting, a WITHOUT ROWID table, a view, an FTS5
 * table (its shadow tables are tables) and a virtual table of a module this
 * process does not have: the backup is taken, counted and verifies ok.
 */
static void test_odd_schema(const char *base)
{
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char *dir = tu_fmt("%s/odd", base);
	char *live = tu_fmt("%s/odd/bri.db", base);
	EXPECT(mkdir(dir, 0755) == 0);
	sqlite3 *db;
	EXPECT(sqlite3_open(live, &db) == SQLITE_OK);
	tu_exec(db,
	        "PRAGMA journal_mode=WAL;"
	        "CREATE TABLE \"my table\"(a); INSERT INTO \"my table\" VALUES (1);"
	        "CREATE TABLE \"we\"\"ird\"(a); INSERT INTO \"we\"\"ird\" VALUES (1), (2);"
	        "CREATE TABLE \"order\"(a);"
	        "CREATE TABLE \"%s%n\"(a); INSERT INTO \"%s%n\" VALUES (1);"
	        "CREATE TABLE \"caf\xc3\xa9\"(a); INSERT INTO \"caf\xc3\xa9\" VALUES (1), (2), (3);"
	        "CREATE TABLE wr(k TEXT PRIMARY KEY, v) WITHOUT ROWID;"
	        "INSERT INTO wr VALUES ('a', 1), ('b', 2);"
	        "CREATE VIEW vw AS SELECT * FROM wr;");
	/* FTS5 is in Debian's SQLite; skip just that part if not. */
	bool fts5 = sqlite3_exec(db,
	                         "CREATE VIRTUAL TABLE ft USING fts5(body);"
	                         "INSERT INTO ft VALUES ('hello world');",
	                         NULL, NULL, NULL) == SQLITE_OK;
	/* As made by an application that had an extension module loaded. */
	tu_exec(db, "PRAGMA writable_schema=ON;"
	            "INSERT INTO sqlite_master VALUES ('table', 'vx', 'vx', 0,"
	            " 'CREATE VIRTUAL TABLE vx USING nosuchmodule(a)');"
	            "PRAGMA writable_schema=OFF;");
	sqlite3_close(db);

	EXPECT_EQ_INT(bri_store_open(live, NULL, true, &s, &err), 0);
	if (!s)
		TU_DIE("store: %s", err.msg);
	struct bri_create_opts o = {.name = "odd"};
	char *out = NULL;
	int rc = bri_create(s, &o, &ctx, &out, &err);
	EXPECT_MSG(rc == 0, "create with an odd schema: %d %s", rc, err.msg);
	free(out);
	if (rc == 0) {
		char *json = NULL;
		size_t len;
		struct bri_meta m;
		memset(&m, 0, sizeof(m));
		EXPECT_EQ_INT(bri_store_read_file(s, "odd.db.meta", 1 << 20, &json, &len), 0);
		EXPECT(json && bri_meta_parse(json, len, &m, &err) == 0);
		EXPECT_EQ_INT(bri_meta_rows(&m, "my table"), 1);
		EXPECT_EQ_INT(bri_meta_rows(&m, "we\"ird"), 2);
		EXPECT_EQ_INT(bri_meta_rows(&m, "order"), 0);
		EXPECT_EQ_INT(bri_meta_rows(&m, "%s%n"), 1);
		EXPECT_EQ_INT(bri_meta_rows(&m, "caf\xc3\xa9"), 3);
		EXPECT_EQ_INT(bri_meta_rows(&m, "wr"), 2);
		EXPECT_EQ_INT(bri_meta_rows(&m, "vw"), -1);
		if (fts5)
			EXPECT_EQ_INT(bri_meta_rows(&m, "ft_content"), 1);
		for (size_t i = 0; i < m.ntables; i++)
			EXPECT_MSG(strncmp(m.tables[i].name, "sqlite_", 7) != 0, "counted %s",
			           m.tables[i].name);
		bri_meta_free(&m);
		free(json);
		struct bri_verify_result r;
		EXPECT_EQ_INT(bri_verify_backup(s, "odd", &ctx, &r, &err), 0);
		EXPECT_MSG(r.status == BRI_VERIFY_OK, "odd schema: %s", r.reason);
	}
	bri_store_close(s);
	free(live);
	free(dir);
}

/*
 * kill -9 of a create at random moments: afterwards (the next lock sweeps)
 * every listed backup is complete and verifies, and no temporary file stays.
 */
static void test_killed(const char *base)
{
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char *dir = tu_fmt("%s/kill", base);
	char *live = tu_fmt("%s/kill/bri.db", base);
	EXPECT(mkdir(dir, 0755) == 0);
	tu_make_db(live, "wal", 42, 60000, false);
	if (bri_store_open(live, NULL, true, &s, &err) != 0)
		TU_DIE("store: %s", err.msg);

	/* How long one create takes here. */
	double t0 = bri_now_mono();
	char *out = NULL;
	struct bri_create_opts o = {.name = "timing"};
	EXPECT_EQ_INT(bri_create(s, &o, &ctx, &out, &err), 0);
	free(out);
	double one = bri_now_mono() - t0;
	unsigned seed = 12345;
	int killed = 0;
	for (int i = 0; i < 25; i++) {
		char name[32];
		snprintf(name, sizeof(name), "k%d", i);
		pid_t pid = fork();
		if (pid == 0) {
			struct bri_store *cs = NULL;
			struct bri_err cerr = {0};
			struct bri_create_opts co = {.name = name};
			char *cout = NULL;
			if (bri_store_open(live, NULL, false, &cs, &cerr) != 0)
				_exit(2);
			_exit(bri_create(cs, &co, &ctx, &cout, &cerr) == 0 ? 0 : 1);
		}
		seed = seed * 1103515245u + 12345u;
		useconds_t delay =
		    (useconds_t)((double)(seed >> 8 & 0xffff) / 65535.0 * one * 1.3e6);
		usleep(delay);
		kill(pid, SIGKILL);
		int status = 0;
		waitpid(pid, &status, 0);
		killed += WIFSIGNALED(status);
	}
	int lfd = bri_store_lock(s, &err); /* sweeps what the dead left */
	EXPECT(lfd >= 0);
	if (lfd >= 0)
		bri_store_unlock(lfd);

	struct bri_catalog *c = NULL;
	EXPECT_EQ_INT(bri_catalog_scan(s, NULL, &c, &err), 0);
	for (size_t i = 0; c && i < c->n; i++) {
		struct bri_entry *e = c->entries[i];
		EXPECT_MSG(e->meta_ok, "%s: listed without metadata after kill -9 (%s)", e->name,
		           e->meta_error);
		if (e->meta_ok) {
			char *p = bri_store_path(s, e->name, ".db");
			struct bri_verify_result r;
			EXPECT_EQ_INT(bri_verify_file(p, &e->meta, NULL, &ctx, &r), 0);
			EXPECT_MSG(r.status == BRI_VERIFY_OK, "%s after kill -9: %s", e->name,
			           r.reason);
			free(p);
		}
	}
	fprintf(stderr, "kill -9 test: %d of 25 creates killed, %zu backups complete\n", killed,
	        c ? c->n : 0);
	bri_catalog_free(c);
	DIR *d = opendir(s->dir);
	struct dirent *de;
	for (de = d ? readdir(d) : NULL; de; de = readdir(d)) {
		size_t l = strlen(de->d_name);
		EXPECT_MSG(!(l > 4 && strcmp(de->d_name + l - 4, ".tmp") == 0), "left: %s",
		           de->d_name);
		if (l > 8 && strcmp(de->d_name + l - 8, ".db.meta") == 0) {
			char *dbn = strndup(de->d_name, l - 5); /* NAME.db */
			EXPECT_MSG(faccessat(s->dirfd, dbn, F_OK, AT_SYMLINK_NOFOLLOW) == 0,
			           "orphan metadata left: %s", de->d_name);
			free(dbn);
		}
	}
	if (d)
		closedir(d);
	/* The live database is intact. */
	sqlite3 *db;
	EXPECT(sqlite3_open(live, &db) == SQLITE_OK);
	EXPECT_EQ_INT(tu_count_rows(db, "memory"), 60000);
	sqlite3_close(db);
	bri_store_close(s);
	free(live);
	free(dir);
}

/*
 * A full disk: a store on a 1 MiB tmpfs (mounted only when this process may
 * mount; skipped otherwise) and a live database of several MiB: -ENOSPC,
 * and nothing of the attempt is left in the store.
 */
static void test_enospc(const char *base)
{
	struct bri_err err = {0};
	char *mnt = tu_fmt("%s/tiny", base);
	char *live = tu_fmt("%s/big.db", base);
	EXPECT(mkdir(mnt, 0755) == 0);
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m") != 0) {
		fprintf(stderr, "test_enospc skipped: cannot mount a tmpfs (%s)\n",
		        strerror(errno));
		free(mnt);
		free(live);
		return;
	}
	tu_make_db(live, "wal", 42, 30000, false);
	struct bri_store *s = NULL;
	char *dir = tu_fmt("%s/store", mnt);
	EXPECT_EQ_INT(bri_store_open(live, dir, true, &s, &err), 0);
	if (s) {
		char *out = NULL;
		struct bri_create_opts o = {.name = "full"};
		memset(&err, 0, sizeof(err));
		int rc = bri_create(s, &o, &ctx, &out, &err);
		EXPECT_EQ_INT(rc, -ENOSPC);
		EXPECT(out == NULL);
		EXPECT(err.msg[0] != '\0');
		EXPECT_EQ_INT(bri_store_has(s, "full"), 0);
		EXPECT_EQ_INT(count_files(s->dir), 0);
		struct statvfs vfs;
		EXPECT(statvfs(dir, &vfs) == 0 && vfs.f_bfree * vfs.f_bsize > 900 * 1024);
		/* A small database still fits afterwards. */
		char *small = tu_fmt("%s/small.db", base);
		tu_make_db(small, "delete", 3, 3, false);
		struct bri_store *s2 = NULL;
		EXPECT_EQ_INT(bri_store_open(small, dir, false, &s2, &err), 0);
		if (s2) {
			o.name = "small";
			EXPECT_EQ_INT(bri_create(s2, &o, &ctx, &out, &err), 0);
			free(out);
			bri_store_close(s2);
		}
		free(small);
		bri_store_close(s);
	}
	if (umount(mnt) != 0)
		umount2(mnt, MNT_DETACH);
	free(dir);
	free(mnt);
	free(live);
}

struct par {
	struct bri_store *s; /* shared store handle */
	const char *name;    /* name to create, NULL: automatic */
	int rc;              /* bri_create's result */
	char *out;           /* its name */
};

static void *par_main(void *arg)
{
	struct par *p = arg;
	struct bri_err err = {0};
	struct bri_create_opts o = {.name = p->name};
	p->rc = bri_create(p->s, &o, &ctx, &p->out, &err);
	return NULL;
}

/*
 * Creates at once from several threads on one store handle (as the mount's
 * workers do): automatic names all complete (or are refused cleanly), one
 * explicit name is taken exactly once, and every backup verifies.
 */
static void test_parallel(const char *base)
{
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char *dir = tu_fmt("%s/par", base);
	char *live = tu_fmt("%s/par/bri.db", base);
	EXPECT(mkdir(dir, 0755) == 0);
	tu_make_db(live, "wal", 42, 2000, false);
	if (bri_store_open(live, NULL, true, &s, &err) != 0)
		TU_DIE("store: %s", err.msg);
	enum { N = 6 };
	for (int round = 0; round < 2; round++) {
		struct par p[N];
		pthread_t th[N];
		for (int i = 0; i < N; i++) {
			p[i] = (struct par){.s = s, .name = round == 0 ? NULL : "dup"};
			EXPECT(pthread_create(&th[i], NULL, par_main, &p[i]) == 0);
		}
		int ok = 0;
		for (int i = 0; i < N; i++) {
			pthread_join(th[i], NULL);
			EXPECT_MSG(p[i].rc == 0 || p[i].rc == -EEXIST, "parallel create: %d",
			           p[i].rc);
			if (p[i].rc == 0) {
				ok++;
				for (int j = 0; j < i; j++)
					EXPECT(!p[j].out || strcmp(p[j].out, p[i].out) != 0);
			}
		}
		if (round == 0)
			EXPECT_MSG(ok >= 1, "no parallel automatic create succeeded");
		else
			EXPECT_EQ_INT(ok, 1);
		for (int i = 0; i < N; i++)
			free(p[i].out);
	}
	struct bri_catalog *c = NULL;
	EXPECT_EQ_INT(bri_catalog_scan(s, NULL, &c, &err), 0);
	for (size_t i = 0; c && i < c->n; i++) {
		struct bri_verify_result r;
		EXPECT_EQ_INT(bri_verify_backup(s, c->entries[i]->name, &ctx, &r, &err), 0);
		EXPECT_MSG(r.status == BRI_VERIFY_OK, "%s: %s", c->entries[i]->name, r.reason);
	}
	EXPECT(c && c->n >= 2);
	bri_catalog_free(c);
	bri_store_close(s);
	free(live);
	free(dir);
}

int main(void)
{
	ctx = bri_op_ctx_self("cli");
	char *base = tu_tmpdir("create");
	test_concurrent_writer(base);
	test_rollback_and_busy(base);
	test_not_sqlite(base);
	test_odd_schema(base);
	test_killed(base);
	test_enospc(base);
	test_parallel(base);
	tu_tmpdir_done(base);
	return EXPECT_RESULT();
}
