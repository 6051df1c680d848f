/*
 * Unit tests of verification (include/bri/verify.h): the persisted JSON
 * round trip and its refusal of malformed input, the mount's rendering
 * ("ok", "failed: <reason>", "unverified" first line), and bri_verify_file
 * on real SQLite databases made with the sqlite3 C API: ok when the metadata
 * matches, failed for a wrong checksum, wrong or missing table counts, no
 * metadata, a file that is not SQLite, a truncated file, a missing file. Then
 * bri_verify_backup/bri_verify_load through a real store.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bri/checksum.h"
#include "bri/meta.h"
#include "bri/snapshot.h"
#include "bri/store.h"
#include "bri/verify.h"
#include "expect.h"
#include "testutil.h"

#define NVIDEOS 42
#define NMEMORY 400

static void test_status_names(void)
{
	EXPECT_STREQ(bri_verify_status_name(BRI_VERIFY_OK), "ok");
	EXPECT_STREQ(bri_verify_status_name(BRI_VERIFY_FAILED), "failed");
	EXPECT_STREQ(bri_verify_status_name(BRI_VERIFY_UNVERIFIED), "unverified");
}

static void sample_result(struct bri_verify_result *r, enum bri_verify_status st, const char *why)
{
	memset(r, 0, sizeof(*r));
	r->status = st;
	r->checked = 1760625000;
	bri_time_local(r->checked, r->checked_at, sizeof(r->checked_at));
	strcpy(r->check, "integrity_check");
	r->checksum_ok = st == BRI_VERIFY_OK ? 1 : 0;
	r->integrity_ok = 1;
	r->counts_ok = -1;
	r->duration_s = 1.5;
	snprintf(r->reason, sizeof(r->reason), "%s", why);
}

static void test_json(void)
{
	struct bri_verify_result r, back;
	static const char *reasons[] = {"", "checksum mismatch: expected 0123, got 4567",
	                                "quote \" backslash \\ newline \n tab \t \xc3\xa9"};
	for (size_t i = 0; i < 3; i++) {
		sample_result(&r, i == 0 ? BRI_VERIFY_OK : BRI_VERIFY_FAILED, reasons[i]);
		char *json = NULL;
		size_t len = 0;
		EXPECT_EQ_INT(bri_verify_to_json(&r, &json, &len), 0);
		if (!json)
			continue;
		EXPECT_EQ_INT(len, strlen(json));
		EXPECT(len > 0 && json[len - 1] == '\n');
		memset(&back, 0x5a, sizeof(back));
		int rc = bri_verify_from_json(json, len, &back);
		EXPECT_MSG(rc == 0, "from_json of to_json: %d\n%s", rc, json);
		if (rc == 0) {
			EXPECT_EQ_INT(back.status, r.status);
			EXPECT_EQ_INT(back.checked, r.checked);
			EXPECT_STREQ(back.checked_at, r.checked_at);
			EXPECT_STREQ(back.check, r.check);
			EXPECT_EQ_INT(back.checksum_ok, r.checksum_ok);
			EXPECT_EQ_INT(back.integrity_ok, r.integrity_ok);
			EXPECT_EQ_INT(back.counts_ok, r.counts_ok);
			EXPECT(fabs(back.duration_s - r.duration_s) < 0.01);
			EXPECT_STREQ(back.reason, r.reason);
		}
		free(json);
	}

	/* The spec's keys are there: status, checked_at. */
	sample_result(&r, BRI_VERIFY_OK, "");
	char *json = NULL;
	size_t len = 0;
	EXPECT_EQ_INT(bri_verify_to_json(&r, &json, &len), 0);
	EXPECT(json && strstr(json, "\"status\""));
	EXPECT(json && strstr(json, "\"ok\""));
	EXPECT(json && strstr(json, "\"checked_at\""));
	free(json);

	static const char *bad[] = {"",
	                            "{",
	                            "[]",
	                            "42",
	                            "null",
	                            "{}",
	                            "{\"status\": 5}",
	                            "{\"status\": null}",
	                            "{\"status\": \"bogus\"}",
	                            "{\"status\": [\"ok\"]}",
	                            "{\"status\": \"ok\", \"checked_at\": 12}",
	                            "{\"status\": \"ok\"} junk",
	                            "{\"status\": \"ok\"}}"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&back, 0, sizeof(back));
		int rc = bri_verify_from_json(bad[i], strlen(bad[i]), &back);
		EXPECT_MSG(rc == -EINVAL, "from_json(%s): got %d, expected -EINVAL", bad[i], rc);
	}
	/* Trailing whitespace is fine. */
	const char *ws = "{\"status\": \"unverified\"}\n \t\n";
	EXPECT_EQ_INT(bri_verify_from_json(ws, strlen(ws), &back), 0);
	EXPECT_EQ_INT(back.status, BRI_VERIFY_UNVERIFIED);
	/* Every truncation of a valid one. */
	sample_result(&r, BRI_VERIFY_FAILED, "why");
	json = NULL;
	EXPECT_EQ_INT(bri_verify_to_json(&r, &json, &len), 0);
	if (json) {
		size_t last = (size_t)(strrchr(json, '}') - json);
		for (size_t cut = 0; cut <= last; cut++) {
			int rc = bri_verify_from_json(json, cut, &back);
			EXPECT_MSG(rc == -EINVAL, "from_json truncated to %zu: %d", cut, rc);
		}
	}
	free(json);
}

/* First line of s (malloc'd, without the newline). */
static char *first_line(const char *s)
{
	size_t n = strcspn(s, "\n");
	char *l = malloc(n + 1);
	memcpy(l, s, n);
	l[n] = '\0';
	return l;
}

static void test_render(void)
{
	struct bri_verify_result r;
	char *out = NULL, *l;
	size_t len = 0;

	sample_result(&r, BRI_VERIFY_OK, "");
	EXPECT_EQ_INT(bri_verify_render(&r, &out, &len), 0);
	EXPECT(out && len == strlen(out) && len > 0 && out[len - 1] == '\n');
	l = first_line(out ? out : "");
	EXPECT_STREQ(l, "ok");
	free(l);
	EXPECT(out && strstr(out, "\nchecked_at: ") != NULL);
	EXPECT(out && strstr(out, r.checked_at) != NULL);
	EXPECT(out && strstr(out, "\ncheck: integrity_check") != NULL);
	free(out);

	sample_result(&r, BRI_VERIFY_FAILED, "checksum mismatch");
	out = NULL;
	EXPECT_EQ_INT(bri_verify_render(&r, &out, &len), 0);
	EXPECT(out && len == strlen(out) && out[len - 1] == '\n');
	l = first_line(out ? out : "");
	EXPECT_STREQ(l, "failed: checksum mismatch");
	free(l);
	free(out);

	/* A reason with a newline still gives one "failed: " first line. */
	sample_result(&r, BRI_VERIFY_FAILED, "line one\nline two");
	out = NULL;
	EXPECT_EQ_INT(bri_verify_render(&r, &out, &len), 0);
	l = first_line(out ? out : "");
	EXPECT(strncmp(l, "failed: line one", 16) == 0);
	free(l);
	free(out);

	memset(&r, 0, sizeof(r));
	r.status = BRI_VERIFY_UNVERIFIED;
	r.checksum_ok = r.integrity_ok = r.counts_ok = -1;
	out = NULL;
	EXPECT_EQ_INT(bri_verify_render(&r, &out, &len), 0);
	EXPECT(out && len == strlen(out) && out[len - 1] == '\n');
	l = first_line(out ? out : "");
	EXPECT_STREQ(l, "unverified");
	free(l);
	free(out);
}

/* A meta describing the database at path as it is now (checksum, counts). */
static void meta_for(const char *path, struct bri_meta *m)
{
	struct bri_err err = {0};
	struct bri_op_ctx ctx = bri_op_ctx_self("cli");
	struct stat st;
	memset(m, 0, sizeof(*m));
	if (stat(path, &st) < 0)
		TU_DIE("stat %s", path);
	m->time = time(NULL);
	bri_time_local(m->time, m->backup_time, sizeof(m->backup_time));
	bri_time_utc(m->time, m->backup_time_utc, sizeof(m->backup_time_utc));
	m->source_db = strdup("data/bri.db");
	m->backup_path = strdup(path);
	m->size_bytes = st.st_size;
	m->size_mb = round((double)st.st_size / 1048576.0 * 100) / 100;
	if (bri_checksum_path(path, &ctx, m->checksum, &err) != 0)
		TU_DIE("checksum %s: %s", path, err.msg);
	m->ntables = 2;
	m->tables = calloc(4, sizeof(*m->tables));
	m->tables[0] = (struct bri_table_count){strdup("videos"), NVIDEOS};
	m->tables[1] = (struct bri_table_count){strdup("memory"), NMEMORY};
	m->kind = BRI_KIND_NAMED;
}

static struct bri_verify_result run(const char *path, const struct bri_meta *m, const char *merr)
{
	struct bri_op_ctx ctx = bri_op_ctx_self("cli");
	struct bri_verify_result r;
	memset(&r, 0x5a, sizeof(r));
	int rc = bri_verify_file(path, m, merr, &ctx, &r);
	EXPECT_EQ_INT(rc, 0);
	return r;
}

static void expect_failed(const struct bri_verify_result *r, const char *what)
{
	EXPECT_MSG(r->status == BRI_VERIFY_FAILED, "%s: status %d, expected failed", what,
	           r->status);
	EXPECT_MSG(r->reason[0] != '\0' && memchr(r->reason, '\0', sizeof(r->reason)),
	           "%s: no reason", what);
	EXPECT_MSG(r->checked > 0, "%s: checked not set", what);
}

static void test_verify_file(const char *base)
{
	char *db = tu_fmt("%s/good.db", base);
	tu_make_db(db, "delete", NVIDEOS, NMEMORY, false);
	struct stat before, after;
	EXPECT(stat(db, &before) == 0);
	struct bri_meta m;
	meta_for(db, &m);
	char before_sum[BRI_CHECKSUM_HEX_LEN + 1];
	strcpy(before_sum, m.checksum);

	/* ok when everything matches. */
	time_t t0 = time(NULL);
	struct bri_verify_result r = run(db, &m, NULL);
	EXPECT_EQ_INT(r.status, BRI_VERIFY_OK);
	EXPECT_EQ_INT(r.checksum_ok, 1);
	EXPECT_EQ_INT(r.integrity_ok, 1);
	EXPECT_EQ_INT(r.counts_ok, 1);
	EXPECT_STREQ(r.reason, "");
	EXPECT(r.checked >= t0 - 1 && r.checked <= time(NULL) + 1);
	EXPECT(r.checked_at[0] != '\0');
	EXPECT(strcmp(r.check, "integrity_check") == 0 || strcmp(r.check, "quick_check") == 0);
	EXPECT(r.duration_s >= 0 && r.duration_s < 60);

	/* Verification changes nothing and leaves no journal beside the file. */
	EXPECT(stat(db, &after) == 0);
	EXPECT_EQ_INT(after.st_size, before.st_size);
	EXPECT(after.st_mtim.tv_sec == before.st_mtim.tv_sec &&
	       after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
	char *j = tu_fmt("%s-journal", db), *w = tu_fmt("%s-wal", db), *sh = tu_fmt("%s-shm", db);
	EXPECT(!tu_exists(j));
	EXPECT(!tu_exists(w));
	EXPECT(!tu_exists(sh));
	free(j);
	free(w);
	free(sh);

	/* Wrong checksum. */
	struct bri_meta bad;
	EXPECT_EQ_INT(bri_meta_copy(&bad, &m), 0);
	bad.checksum[10] = bad.checksum[10] == '0' ? '1' : '0';
	r = run(db, &bad, NULL);
	expect_failed(&r, "wrong checksum");
	EXPECT_EQ_INT(r.checksum_ok, 0);
	bri_meta_free(&bad);

	/* Wrong count. */
	EXPECT_EQ_INT(bri_meta_copy(&bad, &m), 0);
	bad.tables[1].rows = NMEMORY + 1;
	r = run(db, &bad, NULL);
	expect_failed(&r, "wrong count");
	EXPECT_EQ_INT(r.counts_ok, 0);
	EXPECT_EQ_INT(r.checksum_ok, 1);
	EXPECT(strstr(r.reason, "memory") != NULL);
	bri_meta_free(&bad);

	/* A table in the metadata that the database lacks. */
	EXPECT_EQ_INT(bri_meta_copy(&bad, &m), 0);
	bad.tables = realloc(bad.tables, 3 * sizeof(*bad.tables));
	bad.tables[2] = (struct bri_table_count){strdup("ghost"), 0};
	bad.ntables = 3;
	r = run(db, &bad, NULL);
	expect_failed(&r, "table missing from database");
	EXPECT_EQ_INT(r.counts_ok, 0);
	bri_meta_free(&bad);

	/* A table in the database that the metadata does not list. */
	EXPECT_EQ_INT(bri_meta_copy(&bad, &m), 0);
	free(bad.tables[1].name);
	bad.ntables = 1;
	r = run(db, &bad, NULL);
	expect_failed(&r, "table missing from metadata");
	EXPECT_EQ_INT(r.counts_ok, 0);
	bri_meta_free(&bad);

	/* No metadata: failed, with the given reason. */
	r = run(db, NULL, "no metadata file good.db.meta");
	expect_failed(&r, "NULL meta");
	EXPECT(strstr(r.reason, "no metadata file good.db.meta") != NULL);
	r = run(db, NULL, NULL);
	expect_failed(&r, "NULL meta, NULL meta_error");

	/* A file that is not SQLite, with metadata matching its bytes. */
	char *txt = tu_fmt("%s/text.db", base);
	char junk[8192];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = "hello world\n"[i % 12];
	tu_write(txt, junk, sizeof(junk));
	struct bri_meta tm;
	meta_for(txt, &tm);
	bri_table_counts_free(tm.tables, tm.ntables);
	tm.tables = NULL;
	tm.ntables = 0;
	r = run(txt, &tm, NULL);
	expect_failed(&r, "not SQLite");
	EXPECT_EQ_INT(r.checksum_ok, 1);
	EXPECT_EQ_INT(r.integrity_ok, 0);
	bri_meta_free(&tm);

	/* A truncated copy: against the original's metadata ... */
	char *tr = tu_fmt("%s/trunc.db", base);
	tu_copy(db, tr);
	EXPECT(truncate(tr, before.st_size / 2) == 0);
	EXPECT_EQ_INT(bri_meta_copy(&bad, &m), 0);
	r = run(tr, &bad, NULL);
	expect_failed(&r, "truncated, original meta");
	EXPECT_EQ_INT(r.checksum_ok, 0);
	bri_meta_free(&bad);
	/* ... and against metadata whose checksum matches the damaged bytes. */
	meta_for(tr, &bad);
	r = run(tr, &bad, NULL);
	expect_failed(&r, "truncated, matching checksum");
	EXPECT_EQ_INT(r.checksum_ok, 1);
	EXPECT(r.integrity_ok == 0 || r.counts_ok == 0);
	bri_meta_free(&bad);

	/*
	 * Damage inside the file, with metadata rewritten to match the damaged
	 * bytes (so only SQLite's own check can tell): a page in the middle of
	 * the memory table overwritten with garbage.
	 */
	char *dmg = tu_fmt("%s/damaged.db", base);
	tu_copy(db, dmg);
	{
		size_t dl = 0;
		char *bytes = tu_read(dmg, &dl);
		size_t page = 4096, at = (dl / page / 2) * page;
		EXPECT(bytes && dl >= 8 * page);
		for (size_t i = 0; bytes && i < page && at + i < dl; i++)
			bytes[at + i] = (char)(0xA5 ^ (i * 31));
		if (bytes)
			tu_write(dmg, bytes, dl);
		free(bytes);
	}
	meta_for(dmg, &bad);
	r = run(dmg, &bad, NULL);
	expect_failed(&r, "damaged page, matching checksum");
	EXPECT_EQ_INT(r.checksum_ok, 1);
	EXPECT(r.integrity_ok == 0 || r.counts_ok == 0);
	bri_meta_free(&bad);
	free(dmg);

	/* A missing file: a failed verification, not an error. */
	char *missing = tu_fmt("%s/missing.db", base);
	r = run(missing, &m, NULL);
	expect_failed(&r, "missing file");
	EXPECT(!tu_exists(missing));

	/*
	 * A backup in WAL mode (what the seed's Python tool made from a WAL
	 * database with the backup API): verifies ok, stays byte for byte the
	 * same, and leaves nothing beside it in the store.
	 */
	char *wal = tu_fmt("%s/walmode.db", base);
	tu_make_db(wal, "wal", NVIDEOS, NMEMORY, false);
	unsigned char *hdr = (unsigned char *)tu_read(wal, NULL);
	EXPECT(hdr && hdr[18] == 2 && hdr[19] == 2);
	free(hdr);
	struct bri_meta wm;
	meta_for(wal, &wm);
	r = run(wal, &wm, NULL);
	EXPECT_MSG(r.status == BRI_VERIFY_OK, "WAL-mode backup: %s", r.reason);
	struct bri_meta wm2;
	meta_for(wal, &wm2);
	EXPECT_STREQ(wm2.checksum, wm.checksum);
	bri_meta_free(&wm2);
	bri_meta_free(&wm);
	char *wal_wal = tu_fmt("%s-wal", wal), *wal_shm = tu_fmt("%s-shm", wal);
	/* Backups are opened immutable: no -wal/-shm appear in the store. */
	EXPECT_MSG(!tu_exists(wal_wal), "verify left %s", wal_wal);
	EXPECT_MSG(!tu_exists(wal_shm), "verify left %s", wal_shm);
	free(wal_wal);
	free(wal_shm);
	free(wal);

	/*
	 * AUTOINCREMENT makes a table sqlite_sequence. Our metadata leaves
	 * sqlite_* tables out; metadata written by the seed's Python tool
	 * (every table of sqlite_master) lists it with its true count. Both
	 * verify ok.
	 */
	char *ai = tu_fmt("%s/autoinc.db", base);
	{
		sqlite3 *adb;
		EXPECT(sqlite3_open(ai, &adb) == SQLITE_OK);
		tu_exec(adb, "CREATE TABLE videos (id INTEGER PRIMARY KEY AUTOINCREMENT, title);"
		             "CREATE TABLE memory (id INTEGER PRIMARY KEY AUTOINCREMENT, content);"
		             "INSERT INTO videos(title) VALUES ('a'), ('b');"
		             "INSERT INTO memory(content) VALUES ('m');");
		sqlite3_close(adb);
	}
	struct bri_meta am;
	meta_for(ai, &am);
	am.tables[0].rows = 2;
	am.tables[1].rows = 1;
	r = run(ai, &am, NULL);
	EXPECT_MSG(r.status == BRI_VERIFY_OK, "AUTOINCREMENT, our metadata: %s", r.reason);
	am.tables = realloc(am.tables, 3 * sizeof(*am.tables));
	am.tables[2] = (struct bri_table_count){strdup("sqlite_sequence"), 2};
	am.ntables = 3;
	r = run(ai, &am, NULL);
	/*
	 * Seed-style metadata lists sqlite_sequence (two AUTOINCREMENT tables):
	 * its true count verifies.
	 */
	EXPECT_MSG(r.status == BRI_VERIFY_OK, "seed-style metadata with sqlite_sequence: %s",
	           r.reason);
	/* A wrong sqlite_sequence count is a mismatch either way. */
	am.tables[2].rows = 7;
	r = run(ai, &am, NULL);
	expect_failed(&r, "wrong sqlite_sequence count");
	bri_meta_free(&am);
	free(ai);

	/* The good file is still good and unchanged. */
	r = run(db, &m, NULL);
	EXPECT_EQ_INT(r.status, BRI_VERIFY_OK);
	struct bri_meta again;
	meta_for(db, &again);
	EXPECT_STREQ(again.checksum, before_sum);
	bri_meta_free(&again);

	bri_meta_free(&m);
	free(missing);
	free(tr);
	free(txt);
	free(db);
}

static void put_backup(struct bri_store *s, const char *src, const char *name, bool with_meta)
{
	struct bri_err err = {0};
	size_t len;
	char *bytes = tu_read(src, &len);
	char *f = tu_fmt("%s.db", name);
	if (!bytes || bri_store_write_file(s, f, bytes, len, &err) != 0)
		TU_DIE("put %s: %s", f, err.msg);
	free(bytes);
	if (with_meta) {
		char *path = bri_store_path(s, name, ".db");
		struct bri_meta m;
		meta_for(path, &m);
		char *json;
		size_t jl;
		char *mf = tu_fmt("%s.db.meta", name);
		if (bri_meta_format(&m, &json, &jl) != 0 ||
		    bri_store_write_file(s, mf, json, jl, &err) != 0)
			TU_DIE("meta %s: %s", mf, err.msg);
		free(json);
		free(mf);
		free(path);
		bri_meta_free(&m);
	}
	free(f);
}

/* A bri_op_ctx stop that says "go on" once, then "stop" (counting in *arg). */
static bool stop_after_one(void *arg)
{
	int *asked = arg;

	return __atomic_add_fetch(asked, 1, __ATOMIC_SEQ_CST) > 1;
}

static void test_store_verify(const char *base)
{
	struct bri_err err = {0};
	struct bri_op_ctx ctx = bri_op_ctx_self("cli");
	struct bri_store *s = NULL;
	char *live = tu_fmt("%s/bri.db", base);
	char *dir = tu_fmt("%s/store", base);
	char *src = tu_fmt("%s/src.db", base);
	tu_make_db(src, "delete", NVIDEOS, NMEMORY, false);
	if (bri_store_open(live, dir, true, &s, &err) != 0)
		TU_DIE("store: %s", err.msg);

	put_backup(s, src, "good", true);
	put_backup(s, src, "nometa", false);
	put_backup(s, src, "badmeta", false);
	EXPECT_EQ_INT(bri_store_write_file(s, "badmeta.db.meta", "{\"backup_time\": ", 16, &err),
	              0);
	put_backup(s, src, "fresh", true);

	struct bri_verify_result r, l;
	/* Never verified: unverified, returns 0. */
	memset(&l, 0x5a, sizeof(l));
	EXPECT_EQ_INT(bri_verify_load(s, "fresh", &l), 0);
	EXPECT_EQ_INT(l.status, BRI_VERIFY_UNVERIFIED);

	/* Asked to stop (after the first question): -ECANCELED, nothing recorded. */
	int asked = 0;
	struct bri_op_ctx stopping = ctx;
	stopping.stop = stop_after_one;
	stopping.stop_arg = &asked;
	EXPECT_EQ_INT(bri_verify_backup(s, "fresh", &stopping, &r, &err), -ECANCELED);
	EXPECT(asked >= 2);
	EXPECT(strstr(err.msg, "stopped") != NULL);
	EXPECT_EQ_INT(r.status, BRI_VERIFY_UNVERIFIED);
	char *fp = bri_store_path(s, "fresh", ".db.verify");
	EXPECT(!tu_exists(fp));
	free(fp);
	EXPECT_EQ_INT(bri_verify_load(s, "fresh", &l), 0);
	EXPECT_EQ_INT(l.status, BRI_VERIFY_UNVERIFIED);

	memset(&r, 0, sizeof(r));
	EXPECT_EQ_INT(bri_verify_backup(s, "good", &ctx, &r, &err), 0);
	EXPECT_EQ_INT(r.status, BRI_VERIFY_OK);
	char *vp = bri_store_path(s, "good", ".db.verify");
	EXPECT(tu_exists(vp));
	EXPECT_EQ_INT(tu_mode(vp), 0600);
	free(vp);
	memset(&l, 0, sizeof(l));
	EXPECT_EQ_INT(bri_verify_load(s, "good", &l), 0);
	EXPECT_EQ_INT(l.status, BRI_VERIFY_OK);
	EXPECT_STREQ(l.checked_at, r.checked_at);
	EXPECT_EQ_INT(l.checked, r.checked);

	/* Without usable metadata it is not a backup: failed ("no metadata"), and
	 * nothing is written beside it (it may be another program's file). */
	memset(&r, 0, sizeof(r));
	EXPECT_EQ_INT(bri_verify_backup(s, "nometa", &ctx, &r, &err), 0);
	EXPECT_EQ_INT(r.status, BRI_VERIFY_FAILED);
	EXPECT(strstr(r.reason, "no metadata") != NULL);
	char *nometa_verify = bri_store_path(s, "nometa", ".db.verify");
	EXPECT(!tu_exists(nometa_verify));
	free(nometa_verify);

	memset(&r, 0, sizeof(r));
	EXPECT_EQ_INT(bri_verify_backup(s, "badmeta", &ctx, &r, &err), 0);
	EXPECT_EQ_INT(r.status, BRI_VERIFY_FAILED);

	/* Names are names: nothing outside the store is verified or written. */
	char *evil = tu_fmt("%s/evil.db", base);
	tu_copy(src, evil);
	memset(&r, 0, sizeof(r));
	int erc = bri_verify_backup(s, "../evil", &ctx, &r, &err);
	EXPECT_MSG(erc == -EINVAL || erc == -ENOENT, "verify of \"../evil\": %d", erc);
	char *evil_verify = tu_fmt("%s/evil.db.verify", base);
	EXPECT(!tu_exists(evil_verify));
	free(evil_verify);
	free(evil);

	/* No such backup. */
	memset(&err, 0, sizeof(err));
	EXPECT_EQ_INT(bri_verify_backup(s, "absent", &ctx, &r, &err), -ENOENT);
	EXPECT_EQ_INT(err.code, -ENOENT);

	/*
	 * A result holds only for the file it checked: the .verify records its
	 * identity, and once good.db is replaced (new inode and mtime) or
	 * changed, the old result reads as unverified. One without an identity
	 * (older versions) reads as unverified too.
	 */
	{
		size_t vlen = 0;
		char *vtext = NULL;
		EXPECT_EQ_INT(bri_store_read_file(s, "good.db.verify", 1 << 16, &vtext, &vlen), 0);
		EXPECT(vtext && strstr(vtext, "\"mtime_ns\"") && strstr(vtext, "\"ino\""));
		free(vtext);
		put_backup(s, src, "good", false); /* the same bytes, a new file */
		memset(&l, 0x5a, sizeof(l));
		EXPECT_EQ_INT(bri_verify_load(s, "good", &l), 0);
		EXPECT_EQ_INT(l.status, BRI_VERIFY_UNVERIFIED);
		EXPECT_EQ_INT(bri_verify_backup(s, "good", &ctx, &r, &err), 0);
		EXPECT_EQ_INT(bri_verify_load(s, "good", &l), 0);
		EXPECT_EQ_INT(l.status, BRI_VERIFY_OK);
		const char *legacy = "{\"status\": \"ok\", \"checked_epoch\": 1760625000}\n";
		EXPECT_EQ_INT(bri_store_write_file(s, "good.db.verify", legacy, strlen(legacy), &err),
		              0);
		EXPECT_EQ_INT(bri_verify_load(s, "good", &l), 0);
		EXPECT_EQ_INT(l.status, BRI_VERIFY_UNVERIFIED);
	}

	/* A damaged .verify reads as unverified. */
	EXPECT_EQ_INT(bri_store_write_file(s, "fresh.db.verify", "{\"status\": ", 11, &err), 0);
	memset(&l, 0x5a, sizeof(l));
	EXPECT_EQ_INT(bri_verify_load(s, "fresh", &l), 0);
	EXPECT_EQ_INT(l.status, BRI_VERIFY_UNVERIFIED);

	/* Verifications are audited. */
	size_t alen = 0;
	char *audit = NULL;
	EXPECT_EQ_INT(bri_store_read_file(s, "audit.jsonl", 1 << 20, &audit, &alen), 0);
	EXPECT(audit && strstr(audit, "verify") && strstr(audit, "good"));
	free(audit);

	bri_store_close(s);
	free(src);
	free(dir);
	free(live);
}

/* Entries of folder dir other than . and .. */
static int entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return n;
}

/*
 * A store folder replaced while open (mv store store.old; mkdir store):
 * verify fails with -ESTALE and writes nothing into either folder (issue 9
 * item 10: it left its temporary .verify in the new folder).
 */
static void test_store_replaced(const char *base)
{
	struct bri_err err = {0};
	struct bri_op_ctx ctx = bri_op_ctx_self("cli");
	struct bri_store *s = NULL;
	struct bri_verify_result r;
	char *live = tu_fmt("%s/repl.db", base);
	char *dir = tu_fmt("%s/repl", base);
	char *old = tu_fmt("%s/repl.old", base);
	char *src = tu_fmt("%s/repl-src.db", base);
	tu_make_db(src, "delete", NVIDEOS, NMEMORY, false);
	if (bri_store_open(live, dir, true, &s, &err) != 0)
		TU_DIE("store: %s", err.msg);
	put_backup(s, src, "good", true);
	EXPECT(rename(dir, old) == 0);
	EXPECT(mkdir(dir, 0700) == 0);
	int before = entries(old);
	memset(&r, 0, sizeof(r));
	EXPECT_EQ_INT(bri_verify_backup(s, "good", &ctx, &r, &err), -ESTALE);
	EXPECT(strstr(err.msg, "replaced") != NULL);
	EXPECT_EQ_INT(entries(dir), 0);
	EXPECT_EQ_INT(entries(old), before);
	bri_store_close(s);
	free(src);
	free(old);
	free(dir);
	free(live);
}

/* The lowest descriptor number not in use. */
static int lowest_free_fd(void)
{
	int fd = dup(STDERR_FILENO);
	if (fd >= 0)
		close(fd);
	return fd;
}

/*
 * Out of file descriptors (RLIMIT_NOFILE lowered in this process), a good
 * backup's verification cannot run: it is an error of this machine, never a
 * "failed" verdict, and nothing is recorded. At every limit from "no
 * descriptor left" up to enough, verify either fails with a resource error
 * and writes no .verify, or verifies ok.
 */
static void test_resource_errors(const char *base)
{
	struct bri_err err = {0};
	struct bri_op_ctx ctx = bri_op_ctx_self("cli");
	struct bri_store *s = NULL;
	struct rlimit saved, low;
	char *live = tu_fmt("%s/bri.db", base);
	char *dir = tu_fmt("%s/store-rlimit", base);
	char *src = tu_fmt("%s/src-rlimit.db", base);
	tu_make_db(src, "delete", NVIDEOS, NMEMORY, false);
	if (bri_store_open(live, dir, true, &s, &err) != 0)
		TU_DIE("store: %s", err.msg);
	put_backup(s, src, "good", true);
	char *vp = bri_store_path(s, "good", ".db.verify");
	if (getrlimit(RLIMIT_NOFILE, &saved) != 0)
		TU_DIE("getrlimit: %s", strerror(errno));

	int first = lowest_free_fd(), oks = 0, resource = 0;
	for (int extra = 0; extra <= 6; extra++) {
		struct bri_verify_result r;
		memset(&r, 0, sizeof(r));
		memset(&err, 0, sizeof(err));
		unlink(vp);
		low = saved;
		low.rlim_cur = (rlim_t)(first + extra);
		if (setrlimit(RLIMIT_NOFILE, &low) != 0)
			TU_DIE("setrlimit: %s", strerror(errno));
		int rc = bri_verify_backup(s, "good", &ctx, &r, &err);
		setrlimit(RLIMIT_NOFILE, &saved);
		if (rc == 0) {
			EXPECT_MSG(r.status == BRI_VERIFY_OK,
			           "%d free descriptors: a good backup verified %s: %s", extra,
			           bri_verify_status_name(r.status), r.reason);
			oks++;
			continue;
		}
		resource++;
		EXPECT_MSG(rc == -EMFILE || rc == -ENFILE || rc == -ENOMEM,
		           "%d free descriptors: verify returned %d (%s)", extra, rc, err.msg);
		EXPECT_MSG(!tu_exists(vp), "%d free descriptors: a .verify was recorded (rc %d)",
		           extra, rc);
		EXPECT_MSG(r.status != BRI_VERIFY_FAILED, "%d free descriptors: verdict failed: %s",
		           extra, r.reason);
	}
	EXPECT_MSG(resource > 0, "no limit made verification run out of descriptors");
	EXPECT_MSG(oks > 0, "no limit was enough to verify");
	/* With the limit back, it verifies ok and records it. */
	struct bri_verify_result r, l;
	EXPECT_EQ_INT(bri_verify_backup(s, "good", &ctx, &r, &err), 0);
	EXPECT_EQ_INT(r.status, BRI_VERIFY_OK);
	EXPECT_EQ_INT(bri_verify_load(s, "good", &l), 0);
	EXPECT_EQ_INT(l.status, BRI_VERIFY_OK);
	free(vp);
	bri_store_close(s);
	free(src);
	free(dir);
	free(live);
}

int main(void)
{
	char *base = tu_tmpdir("verify");
	test_status_names();
	test_json();
	test_render();
	test_verify_file(base);
	test_store_verify(base);
	test_store_replaced(base);
	test_resource_errors(base);
	tu_tmpdir_done(base);
	return EXPECT_RESULT();
}
