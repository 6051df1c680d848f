/*
 * Unit tests of restore (include/bri/restore.h) on a real live database in
 * WAL mode with another connection open on it: a verified restore with its
 * safety backup, the live database staying in WAL mode and the open
 * connection seeing the restored content; a failed verification aborting
 * with nothing changed; --no-verify; the newest backup when none is named;
 * a path to a .db outside the store; an unknown name; a writer holding the
 * database (-EBUSY, "database is locked", live content unchanged); a missing
 * live database created from the backup; and the report's text.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bri/catalog.h"
#include "bri/create.h"
#include "bri/meta.h"
#include "bri/restore.h"
#include "bri/store.h"
#include "expect.h"
#include "testutil.h"

static struct bri_op_ctx ctx;

/* Row count of videos in the database at path, through a fresh connection. */
static int64_t videos_at(const char *path)
{
	sqlite3 *db;
	int64_t n = -1;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK)
		n = tu_count_rows(db, "videos");
	sqlite3_close(db);
	return n;
}

static const char *journal_mode(sqlite3 *db)
{
	static char mode[16];
	sqlite3_stmt *st;
	mode[0] = '\0';
	if (sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		snprintf(mode, sizeof(mode), "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return mode;
}

static size_t count_backups(struct bri_store *s)
{
	struct bri_err err = {0};
	struct bri_catalog *c = NULL;
	size_t n = 0;
	if (bri_catalog_scan(s, NULL, &c, &err) == 0) {
		n = c->n;
		bri_catalog_free(c);
	}
	return n;
}

static char *make_backup(struct bri_store *s, const char *name)
{
	struct bri_err err = {0};
	struct bri_create_opts o = {.name = name};
	char *out = NULL;
	if (bri_create(s, &o, &ctx, &out, &err) != 0)
		TU_DIE("create %s: %s", name ? name : "(auto)", err.msg);
	return out;
}

static int restore(struct bri_store *s, const char *what, bool verify,
                   struct bri_restore_report *rep, struct bri_err *err)
{
	struct bri_restore_opts o = {.verify = verify, .busy_timeout_ms = 300};
	memset(rep, 0, sizeof(*rep));
	memset(err, 0, sizeof(*err));
	return bri_restore(s, what, &o, &ctx, rep, err);
}

static void test_restore(const char *base)
{
	struct bri_err err = {0};
	struct bri_restore_report rep;
	struct bri_store *s = NULL;
	char *live = tu_fmt("%s/bri.db", base);
	sqlite3 *reader = tu_make_db(live, "wal", 42, 300, true);
	if (bri_store_open(live, NULL, true, &s, &err) != 0)
		TU_DIE("store: %s", err.msg);

	free(make_backup(s, "v42"));
	tu_exec(reader, "INSERT INTO videos(title) VALUES ('a'), ('b'), ('c')");
	EXPECT_EQ_INT(tu_count_rows(reader, "videos"), 45);

	/* A verified restore: safety backup of the 45-row state, live back at 42. */
	size_t n0 = count_backups(s);
	int rc = restore(s, "v42", true, &rep, &err);
	EXPECT_MSG(rc == 0, "restore v42: %d %s", rc, err.msg);
	EXPECT_EQ_INT(rep.result, 0);
	EXPECT(rep.verified);
	EXPECT_EQ_INT(rep.check.status, BRI_VERIFY_OK);
	EXPECT_MSG(strncmp(rep.safety_name, "pre_restore_safety_", 19) == 0, "safety name \"%s\"",
	           rep.safety_name);
	EXPECT(strstr(rep.source, "v42") != NULL);
	EXPECT(rep.started > 0);
	EXPECT(rep.message[0] != '\0');
	EXPECT_EQ_INT(tu_count_rows(reader, "videos"), 42);
	EXPECT_EQ_INT(videos_at(live), 42);
	EXPECT_STREQ(journal_mode(reader), "wal");
	EXPECT_EQ_INT(count_backups(s), n0 + 1);
	EXPECT_EQ_INT(bri_store_has(s, "v42"), 1);
	if (rep.safety_name[0]) {
		char *sp = bri_store_path(s, rep.safety_name, ".db");
		EXPECT_EQ_INT(videos_at(sp), 45);
		free(sp);
		struct bri_catalog *c = NULL;
		EXPECT_EQ_INT(bri_catalog_scan(s, NULL, &c, &err), 0);
		struct bri_entry *e = c ? bri_catalog_find(c, rep.safety_name) : NULL;
		EXPECT(e && e->kind == BRI_KIND_SAFETY && e->meta_ok);
		bri_catalog_free(c);
	}
	char *text = NULL;
	size_t len = 0;
	EXPECT_EQ_INT(bri_restore_report_render(&rep, &text, &len), 0);
	EXPECT(text && len == strlen(text) && strstr(text, ": ") && text[len - 1] == '\n');
	EXPECT(text && strstr(text, rep.safety_name));
	free(text);

	/* The reader can keep writing after the restore. */
	tu_exec(reader, "INSERT INTO videos(title) VALUES ('after')");
	EXPECT_EQ_INT(tu_count_rows(reader, "videos"), 43);
	free(make_backup(s, "v43"));

	/* A backup whose verification fails: aborted, nothing changed, no safety backup. */
	char *mf = bri_store_path(s, "v42", ".db.meta");
	size_t ml = 0;
	char *meta = tu_read(mf, &ml);
	char *good_meta = meta ? strdup(meta) : NULL;
	char *ck = meta ? strstr(meta, "\"checksum\"") : NULL;
	char *q = ck ? strchr(ck + 10, '"') : NULL;
	if (q)
		q[1] = q[1] == '0' ? '1' : '0';
	EXPECT_EQ_INT(bri_store_write_file(s, "v42.db.meta", meta, ml, &err), 0);
	size_t n1 = count_backups(s);
	rc = restore(s, "v42", true, &rep, &err);
	EXPECT(rc < 0);
	EXPECT_EQ_INT(rep.result, rc);
	EXPECT(rep.verified);
	EXPECT_EQ_INT(rep.check.status, BRI_VERIFY_FAILED);
	EXPECT_STREQ(rep.safety_name, "");
	EXPECT(err.msg[0] != '\0');
	EXPECT_EQ_INT(tu_count_rows(reader, "videos"), 43);
	EXPECT_EQ_INT(count_backups(s), n1);

	/* The same without verification restores. */
	rc = restore(s, "v42", false, &rep, &err);
	EXPECT_MSG(rc == 0, "restore --no-verify: %d %s", rc, err.msg);
	EXPECT(!rep.verified);
	EXPECT_EQ_INT(tu_count_rows(reader, "videos"), 42);
	EXPECT_EQ_INT(bri_store_write_file(s, "v42.db.meta", good_meta, ml, &err), 0);
	free(meta);
	free(good_meta);
	free(mf);

	/* None named: the newest non-safety backup (v43). */
	rc = restore(s, NULL, true, &rep, &err);
	EXPECT_MSG(rc == 0, "restore newest: %d %s", rc, err.msg);
	EXPECT(strstr(rep.source, "v43") != NULL);
	EXPECT_EQ_INT(tu_count_rows(reader, "videos"), 43);

	/* A path to a .db outside the store (with its .meta beside it). */
	char *off = tu_fmt("%s/offsite", base);
	EXPECT(mkdir(off, 0700) == 0);
	char *src = bri_store_path(s, "v42", ".db");
	char *srcm = bri_store_path(s, "v42", ".db.meta");
	char *dst = tu_fmt("%s/copy.db", off);
	char *dstm = tu_fmt("%s/copy.db.meta", off);
	tu_copy(src, dst);
	tu_copy(srcm, dstm);
	rc = restore(s, dst, true, &rep, &err);
	EXPECT_MSG(rc == 0, "restore by path: %d %s", rc, err.msg);
	EXPECT_EQ_INT(rep.check.status, BRI_VERIFY_OK);
	EXPECT_EQ_INT(tu_count_rows(reader, "videos"), 42);
	EXPECT(tu_exists(dst));

	/*
	 * A backup with another page size (8192; the live WAL database has
	 * 4096): SQLite's backup API cannot change the page size of a WAL
	 * database, so the core rebuilds the backup first; it restores.
	 */
	{
		char *ps = tu_fmt("%s/pagesize.db", off);
		sqlite3 *b;
		EXPECT(sqlite3_open(ps, &b) == SQLITE_OK);
		tu_exec(b, "PRAGMA page_size=8192; CREATE TABLE videos (id INTEGER PRIMARY KEY, "
		           "title TEXT); INSERT INTO videos(title) VALUES ('p1'), ('p2');");
		sqlite3_close(b);
		rc = restore(s, ps, false, &rep, &err);
		int64_t rows = tu_count_rows(reader, "videos");
		if (rc == 0)
			EXPECT_EQ_INT(rows, 2);
		else
			EXPECT_EQ_INT(rows, 42);
		EXPECT_STREQ(journal_mode(reader), "wal");
		EXPECT_MSG(rc == 0, "restore of a backup with another page size: %d %s", rc,
		           err.msg);
		if (rc == 0) {
			/* Put the 42-row content back for the checks below. */
			rc = restore(s, dst, true, &rep, &err);
			EXPECT_EQ_INT(rc, 0);
		}
		free(ps);
	}

	/* Restores and creates are audited, failures too. */
	EXPECT(tu_audit_count(s->dir, "restore", NULL, true) >= 3);
	EXPECT(tu_audit_count(s->dir, "restore", NULL, false) >= 1);
	EXPECT(tu_audit_count(s->dir, "create", "v42", true) == 1);
	EXPECT(tu_audit_count(s->dir, "create", NULL, true) +
	           tu_audit_count(s->dir, "create-safety", NULL, true) >=
	       5); /* the safety backups too */

	/* Unknown names: an error, nothing changed. */
	size_t n2 = count_backups(s);
	rc = restore(s, "nope", true, &rep, &err);
	EXPECT_EQ_INT(rc, -ENOENT);
	rc = restore(s, "../etc/passwd", true, &rep, &err);
	EXPECT(rc < 0);
	EXPECT_EQ_INT(tu_count_rows(reader, "videos"), 42);
	EXPECT_EQ_INT(count_backups(s), n2);

	/* A writer holds the live database: wait, then "database is locked", nothing changed. */
	sqlite3 *writer;
	EXPECT(sqlite3_open(live, &writer) == SQLITE_OK);
	tu_exec(writer, "BEGIN IMMEDIATE; INSERT INTO videos(title) VALUES ('pending')");
	double t0 = bri_now_mono();
	rc = restore(s, "v43", true, &rep, &err);
	double took = bri_now_mono() - t0;
	EXPECT_EQ_INT(rc, -EBUSY);
	EXPECT_MSG(strstr(err.msg, "database is locked") != NULL, "message: %s", err.msg);
	EXPECT_MSG(took >= 0.25 && took < 20, "busy timeout 300 ms took %.3f s", took);
	tu_exec(writer, "COMMIT");
	sqlite3_close(writer);
	EXPECT_EQ_INT(tu_count_rows(reader, "videos"), 43); /* 42 + the writer's row */

	/* A reader inside a read transaction keeps its snapshot; after it, the new content. */
	sqlite3 *snap;
	EXPECT(sqlite3_open(live, &snap) == SQLITE_OK);
	tu_exec(snap, "BEGIN");
	EXPECT_EQ_INT(tu_count_rows(snap, "videos"), 43);
	rc = restore(s, dst, true, &rep, &err); /* the 42-row backup */
	EXPECT_MSG(rc == 0, "restore under an open read transaction: %d %s", rc, err.msg);
	EXPECT_EQ_INT(tu_count_rows(snap, "videos"), 43);
	tu_exec(snap, "COMMIT");
	EXPECT_EQ_INT(tu_count_rows(snap, "videos"), rc == 0 ? 42 : 43);
	EXPECT_EQ_INT(tu_count_rows(reader, "videos"), rc == 0 ? 42 : 43);
	sqlite3_close(snap);
	EXPECT_STREQ(journal_mode(reader), "wal");

	sqlite3_close(reader);

	/* No live database: created from the backup, no safety backup. */
	char *gone = tu_fmt("%s/fresh.db", base);
	struct bri_store *s2 = NULL;
	EXPECT_EQ_INT(bri_store_open(gone, s->dir, false, &s2, &err), 0);
	if (s2) {
		rc = restore(s2, "v43", true, &rep, &err);
		EXPECT_MSG(rc == 0, "restore into a missing database: %d %s", rc, err.msg);
		EXPECT_STREQ(rep.safety_name, "");
		EXPECT_EQ_INT(videos_at(gone), 43);
		bri_store_close(s2);
	}

	free(gone);
	free(dst);
	free(dstm);
	free(src);
	free(srcm);
	free(off);
	bri_store_close(s);
	free(live);
}

/* A live database in rollback-journal mode: restored; a reader's lock makes it wait, then fail. */
static void test_rollback_mode(const char *base)
{
	struct bri_err err = {0};
	struct bri_restore_report rep;
	struct bri_store *s = NULL;
	char *dir = tu_fmt("%s/rb", base);
	char *live = tu_fmt("%s/rb/bri.db", base);
	EXPECT(mkdir(dir, 0755) == 0);
	tu_make_db(live, "delete", 42, 300, false);
	if (bri_store_open(live, NULL, true, &s, &err) != 0)
		TU_DIE("store: %s", err.msg);
	free(make_backup(s, "v42"));
	sqlite3 *db;
	EXPECT(sqlite3_open(live, &db) == SQLITE_OK);
	tu_exec(db, "INSERT INTO videos(title) VALUES ('x')");

	/* A reader holds a shared lock: the restore waits and fails, nothing changed. */
	tu_exec(db, "BEGIN");
	EXPECT_EQ_INT(tu_count_rows(db, "videos"), 43);
	int rc = restore(s, "v42", true, &rep, &err);
	EXPECT_EQ_INT(rc, -EBUSY);
	EXPECT_MSG(strstr(err.msg, "database is locked") != NULL, "message: %s", err.msg);
	tu_exec(db, "COMMIT");
	EXPECT_EQ_INT(tu_count_rows(db, "videos"), 43);

	rc = restore(s, "v42", true, &rep, &err);
	EXPECT_MSG(rc == 0, "restore in rollback mode: %d %s", rc, err.msg);
	EXPECT_EQ_INT(tu_count_rows(db, "videos"), 42);
	EXPECT_STREQ(journal_mode(db), "delete");
	/* The safety backup, read through the restore's own locked file handle:
	 * the 43-row state, complete, and it verifies. */
	EXPECT_MSG(strncmp(rep.safety_name, "pre_restore_safety_", 19) == 0, "safety name \"%s\"",
	           rep.safety_name);
	if (rep.safety_name[0]) {
		struct bri_verify_result vr = {0};
		char *sp = bri_store_path(s, rep.safety_name, ".db");
		EXPECT_EQ_INT(videos_at(sp), 43);
		free(sp);
		EXPECT_EQ_INT(bri_verify_backup(s, rep.safety_name, &ctx, &vr, &err), 0);
		EXPECT_MSG(vr.status == BRI_VERIFY_OK, "safety backup verification: %s", vr.reason);
	}
	sqlite3_stmt *st;
	EXPECT(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK);
	EXPECT(sqlite3_step(st) == SQLITE_ROW &&
	       strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	char *j = tu_fmt("%s-journal", live);
	EXPECT(!tu_exists(j));
	free(j);
	bri_store_close(s);
	free(live);
	free(dir);
}

/*
 * The live database on a full disk (a 2 MiB tmpfs, when this process may
 * mount one): restoring a bigger backup fails, and the live database keeps
 * its old content, intact.
 */
static void test_full_disk(const char *base)
{
	struct bri_err err = {0};
	struct bri_restore_report rep;
	char *mnt = tu_fmt("%s/tiny", base);
	EXPECT(mkdir(mnt, 0755) == 0);
	if (mount("tmpfs", mnt, "tmpfs", 0, "size=2m") != 0) {
		fprintf(stderr, "test_full_disk skipped: cannot mount a tmpfs (%s)\n",
		        strerror(errno));
		free(mnt);
		return;
	}
	char *live = tu_fmt("%s/bri.db", mnt);
	char *big = tu_fmt("%s/big.db", base);
	char *store = tu_fmt("%s/tiny-store", base);
	sqlite3 *db = tu_make_db(live, "wal", 42, 100, true);
	tu_make_db(big, "delete", 42, 40000, false);
	struct bri_store *s = NULL;
	EXPECT_EQ_INT(bri_store_open(live, store, true, &s, &err), 0);
	if (s) {
		int rc = restore(s, big, false, &rep, &err);
		EXPECT_MSG(rc < 0, "restore of 5 MiB onto a 2 MiB disk succeeded");
		EXPECT_EQ_INT(rep.result, rc);
		EXPECT(err.msg[0] != '\0');
		EXPECT_EQ_INT(tu_count_rows(db, "memory"), 100);
		EXPECT_EQ_INT(tu_count_rows(db, "videos"), 42);
		sqlite3_stmt *st;
		EXPECT(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) ==
		       SQLITE_OK);
		EXPECT(sqlite3_step(st) == SQLITE_ROW &&
		       strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0);
		sqlite3_finalize(st);
		/* And it still takes writes. */
		tu_exec(db, "INSERT INTO videos(title) VALUES ('still writable')");
		EXPECT_EQ_INT(tu_count_rows(db, "videos"), 43);
		bri_store_close(s);
	}
	sqlite3_close(db);
	if (umount(mnt) != 0)
		umount2(mnt, MNT_DETACH);
	free(store);
	free(big);
	free(live);
	free(mnt);
}

struct writer {
	const char *path;    /* live database */
	atomic_bool stop;    /* set to end the thread */
	atomic_long commits; /* transactions committed */
	atomic_long errors;  /* failed transactions */
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	sqlite3 *db;
	if (sqlite3_open(w->path, &db) != SQLITE_OK)
		return NULL;
	sqlite3_busy_timeout(db, 10000);
	while (!atomic_load(&w->stop)) {
		if (sqlite3_exec(db, "INSERT INTO memory(video_id, content) VALUES (1, 'w')", NULL,
		                 NULL, NULL) == SQLITE_OK)
			atomic_fetch_add(&w->commits, 1);
		else
			atomic_fetch_add(&w->errors, 1);
		usleep(500);
	}
	sqlite3_close(db);
	return NULL;
}

/*
 * A restore while another thread commits every half millisecond (an
 * application that keeps writing): the restore gets its turn and completes;
 * the writer carries on afterwards on the restored content.
 */
static void test_busy_writer(const char *base)
{
	struct bri_err err = {0};
	struct bri_restore_report rep;
	struct bri_store *s = NULL;
	char *dir = tu_fmt("%s/bw", base);
	char *live = tu_fmt("%s/bw/bri.db", base);
	EXPECT(mkdir(dir, 0755) == 0);
	tu_make_db(live, "wal", 42, 5000, false);
	if (bri_store_open(live, NULL, true, &s, &err) != 0)
		TU_DIE("store: %s", err.msg);
	free(make_backup(s, "base"));
	struct writer w = {.path = live};
	atomic_init(&w.stop, false);
	atomic_init(&w.commits, 0);
	atomic_init(&w.errors, 0);
	pthread_t th;
	EXPECT(pthread_create(&th, NULL, writer_main, &w) == 0);
	while (atomic_load(&w.commits) < 50)
		usleep(1000);
	struct bri_restore_opts o = {.verify = true, .busy_timeout_ms = 10000};
	double t0 = bri_now_mono();
	int rc = bri_restore(s, "base", &o, &ctx, &rep, &err);
	double took = bri_now_mono() - t0;
	long at_restore = atomic_load(&w.commits);
	/* The writer carries on after the restore: wait for its next commits. */
	for (int i = 0; i < 30000 && atomic_load(&w.commits) < at_restore + 10; i++)
		usleep(1000);
	EXPECT_MSG(atomic_load(&w.commits) >= at_restore + 10, "the writer stopped at %ld commits",
	           at_restore);
	atomic_store(&w.stop, true);
	pthread_join(th, NULL);
	fprintf(stderr, "restore under a busy writer: %d after %.3f s, %ld commits\n", rc, took,
	        at_restore);
	EXPECT_MSG(rc == 0, "restore under a busy writer: %d %s (%.3f s)", rc, err.msg, took);
	EXPECT_EQ_INT(atomic_load(&w.errors), 0);
	sqlite3 *db;
	EXPECT(sqlite3_open(live, &db) == SQLITE_OK);
	int64_t rows = tu_count_rows(db, "memory");
	/* The backup's 5000 rows plus what the writer added after the restore. */
	EXPECT_MSG(rows >= 5000 && rows < 5000 + atomic_load(&w.commits),
	           "%lld rows after the restore", (long long)rows);
	sqlite3_stmt *st;
	EXPECT(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK);
	EXPECT(sqlite3_step(st) == SQLITE_ROW &&
	       strcmp((const char *)sqlite3_column_text(st, 0), "ok") == 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	bri_store_close(s);
	free(live);
	free(dir);
}

/*
 * The live database given as the backup to restore (a path that is the live
 * file): must be refused, or be harmless; never damage the live database.
 */
static void test_self_restore(const char *base)
{
	struct bri_err err = {0};
	struct bri_restore_report rep;
	struct bri_store *s = NULL;
	char *dir = tu_fmt("%s/self", base);
	char *live = tu_fmt("%s/self/bri.db", base);
	EXPECT(mkdir(dir, 0755) == 0);
	sqlite3 *db = tu_make_db(live, "wal", 42, 300, true);
	if (bri_store_open(live, NULL, true, &s, &err) != 0)
		TU_DIE("store: %s", err.msg);
	int rc = restore(s, live, false, &rep, &err);
	int64_t after = tu_count_rows(db, "videos");
	sqlite3_stmt *st;
	const char *ic = "";
	if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		ic = (const char *)sqlite3_column_text(st, 0);
	bool intact = after == 42 && ic && strcmp(ic, "ok") == 0;
	sqlite3_finalize(st);
	/*
	 * Restoring the live database onto itself (the backup API would copy the
	 * file onto itself and empty it) is refused with nothing changed.
	 */
	EXPECT_MSG(intact, "restore of the live database onto itself (rc %d): %lld rows", rc,
	           (long long)after);
	EXPECT_MSG(rc == -EINVAL, "rc %d", rc);
	/* Whatever happened, the safety backup holds the old content. */
	if (rep.safety_name[0]) {
		char *sp = bri_store_path(s, rep.safety_name, ".db");
		EXPECT_EQ_INT(videos_at(sp), 42);
		free(sp);
	}
	sqlite3_close(db);
	bri_store_close(s);
	free(live);
	free(dir);
}

int main(void)
{
	ctx = bri_op_ctx_self("cli");
	char *base = tu_tmpdir("restore");
	test_restore(base);
	test_rollback_mode(base);
	test_full_disk(base);
	test_busy_writer(base);
	test_self_restore(base);
	tu_tmpdir_done(base);
	return EXPECT_RESULT();
}
