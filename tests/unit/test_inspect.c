/*
 * Unit tests of the inspection engine (include/bri/inspect.h) called
 * directly on real SQLite files: schema.sql, table CSV quoting (the shell's
 * rules), BLOB literals, the header of an empty table, reading a render in
 * pieces of any size, skip and count agreeing with a whole read, the row
 * cap (-EFBIG), the diff summary and a diff CSV, at/TIME parsing (local and
 * Z, the end of a day) and the at/ choice over a catalog.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bri/inspect.h"
#include "expect.h"
#include "testutil.h"

/* The whole output of a render, read in pieces of step bytes; malloc'd. */
static char *read_all(struct bri_render *r, size_t step, size_t *len, int *rc_out)
{
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	ssize_t got;
	struct bri_err err = {0};

	for (;;) {
		if (n + step + 1 > cap) {
			cap = 2 * (n + step + 1);
			buf = realloc(buf, cap);
		}
		got = bri_render_read(r, buf + n, step, &err);
		if (got <= 0)
			break;
		n += (size_t)got;
	}
	buf[n] = 0;
	*len = n;
	*rc_out = got < 0 ? (int)got : 0;
	return buf;
}

typedef int (*open_fn)(sqlite3 *db, const char *arg, struct bri_render **out, struct bri_err *err);

static int open_schema(sqlite3 *db, const char *arg, struct bri_render **out, struct bri_err *err)
{
	(void)arg;
	return bri_inspect_schema(db, out, err);
}

static int open_summary(sqlite3 *db, const char *arg, struct bri_render **out, struct bri_err *err)
{
	(void)arg;
	return bri_diff_summary(db, out, err);
}

/*
 * Renders with fn and checks the output is want, read whole, in pieces of
 * 1, 3 and 7 bytes, counted, and after skipping each of a few offsets.
 */
static void check_render(sqlite3 *db, open_fn fn, const char *arg, const char *want)
{
	static const size_t steps[] = {1 << 16, 1, 3, 7};
	size_t wlen = strlen(want), len;
	struct bri_render *r = NULL;
	struct bri_err err = {0};
	uint64_t size = 0;
	int rc;

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		rc = fn(db, arg, &r, &err);
		EXPECT_MSG(rc == 0, "%s: %d %s", arg ? arg : "", rc, err.msg);
		if (rc)
			return;
		char *got = read_all(r, steps[i], &len, &rc);
		EXPECT_EQ_INT(rc, 0);
		EXPECT_EQ_INT(len, wlen);
		EXPECT_MSG(len == wlen && memcmp(got, want, len) == 0, "got [%s] want [%s]", got,
		           want);
		EXPECT_EQ_INT(bri_render_offset(r), wlen);
		free(got);
		bri_render_free(r);
	}
	rc = fn(db, arg, &r, &err);
	EXPECT(rc == 0 && bri_render_count(r, &size, &err) == 0);
	EXPECT_EQ_INT(size, wlen);
	bri_render_free(r);
	for (size_t off = 0; off <= wlen + 2; off += 5) {
		rc = fn(db, arg, &r, &err);
		EXPECT(rc == 0 && bri_render_skip(r, off, &err) == 0);
		char *got = read_all(r, 4, &len, &rc);
		size_t from = off < wlen ? off : wlen;
		EXPECT_MSG(len == wlen - from && memcmp(got, want + from, len) == 0, "skip %zu",
		           off);
		free(got);
		bri_render_free(r);
	}
}

static int open_table(sqlite3 *db, const char *arg, struct bri_render **out, struct bri_err *err)
{
	return bri_inspect_table_csv(db, arg, out, err);
}

static int open_diff(sqlite3 *db, const char *arg, struct bri_render **out, struct bri_err *err)
{
	return bri_diff_table_csv(db, arg, out, err);
}

static int open_json(sqlite3 *db, const char *arg, struct bri_render **out, struct bri_err *err)
{
	return bri_diff_table_json(db, arg, out, err);
}

/*
 * Opens the file at path for inspection through a reader, as the CLI opens a
 * backup (bri_reader_open_path, bri_inspect_open); closes the reader again
 * when it fails. *r must be closed after the connection.
 */
static int open_path(const char *path, struct bri_reader **r, sqlite3 **db, struct bri_err *err)
{
	int rc = bri_reader_open_path(path, r, err);

	if (rc == 0) {
		rc = bri_inspect_open(*r, db, err);
		if (rc < 0) {
			bri_reader_close(*r);
			*r = NULL;
		}
	}
	return rc;
}

/* The two files through readers and bri_diff_open; *ro and *rn close after db. */
static int open_diff_paths(const char *a, const char *b, struct bri_reader **ro,
                           struct bri_reader **rn, sqlite3 **db, struct bri_err *err)
{
	int rc;

	*ro = *rn = NULL;
	rc = bri_reader_open_path(a, ro, err);
	if (rc == 0)
		rc = bri_reader_open_path(b, rn, err);
	if (rc == 0)
		rc = bri_diff_open(*ro, *rn, db, err);
	if (rc < 0) {
		bri_reader_close(*ro);
		bri_reader_close(*rn);
		*ro = *rn = NULL;
	}
	return rc;
}

static void test_table_and_schema(const char *base)
{
	char *path = tu_fmt("%s/a.db", base);
	struct bri_err err = {0};
	struct bri_reader *rd = NULL;
	sqlite3 *w = NULL, *db = NULL;
	char **names = NULL;
	size_t n = 0;

	EXPECT(sqlite3_open(path, &w) == SQLITE_OK);
	tu_exec(w, "CREATE TABLE t(a, \"b c\", d);"
	           "CREATE TABLE e(x);"
	           "CREATE INDEX ti ON t(a);"
	           "CREATE VIEW v AS SELECT 1;"
	           "INSERT INTO t VALUES (NULL, '', 'plain');"
	           "INSERT INTO t VALUES ('a b', 'x\"y', 0.1);"
	           "INSERT INTO t VALUES (x'00ff', x'', 1.0);"
	           "INSERT INTO t VALUES ('it''s', 'l1' || char(10) || 'l2', -7);"
	           "INSERT INTO t VALUES ('é', 'a,b', 1e300);");
	sqlite3_close(w);

	EXPECT_EQ_INT(open_path(path, &rd, &db, &err), 0);
	check_render(db, open_schema, NULL,
	             "CREATE TABLE t(a, \"b c\", d);\nCREATE TABLE e(x);\n"
	             "CREATE INDEX ti ON t(a);\nCREATE VIEW v AS SELECT 1;\n");
	check_render(db, open_table, "t",
	             "a,\"b c\",d\n"
	             ",\"\",plain\n"
	             "\"a b\",\"x\"\"y\",0.1\n"
	             "\"X'00FF'\",\"X''\",1.0\n"
	             "\"it's\",\"l1\nl2\",-7\n"
	             "\"\xc3\xa9\",\"a,b\",1.0e+300\n");
	check_render(db, open_table, "e", "x\n");
	struct bri_render *r = NULL;
	EXPECT_EQ_INT(bri_inspect_table_csv(db, "v", &r, &err), -ENOENT);
	EXPECT_EQ_INT(bri_inspect_table_csv(db, "T", &r, &err), -ENOENT);
	EXPECT_EQ_INT(bri_inspect_tables(db, &names, &n, &err), 0);
	EXPECT_EQ_INT(n, 2);
	if (n == 2) {
		EXPECT_STREQ(names[0], "e");
		EXPECT_STREQ(names[1], "t");
	}
	bri_inspect_names_free(names, n);
	sqlite3_close(db);
	bri_reader_close(rd);

	/* Not a database: refused at open. */
	char *junk = tu_fmt("%s/junk.db", base);
	tu_write_str(junk, "this is not an SQLite database, not at all, no no no no no no no");
	EXPECT_EQ_INT(open_path(junk, &rd, &db, &err), -EINVAL);
	EXPECT(strstr(err.msg, "junk.db is not an SQLite database") != NULL);
	free(junk);
	free(path);
}

static void test_big_values(const char *base)
{
	char *path = tu_fmt("%s/big.db", base);
	struct bri_render *r = NULL;
	struct bri_err err = {0};
	struct bri_reader *rd = NULL;
	sqlite3 *w = NULL, *db = NULL;
	uint64_t size = 0;
	size_t len;
	char buf[64];
	int rc;

	EXPECT(sqlite3_open(path, &w) == SQLITE_OK);
	/* 33 MiB of blob, 66 MiB as hex: written out as it is read, not built. */
	tu_exec(w, "CREATE TABLE b(x); INSERT INTO b VALUES (1), (zeroblob(33 * 1048576)), (3);"
	           "CREATE TABLE t(x); INSERT INTO t VALUES (replace(hex(zeroblob(3000)), '00', "
	           "'a\"')), (replace(hex(zeroblob(3000)), '00', 'ab'));");
	sqlite3_close(w);
	EXPECT_EQ_INT(open_path(path, &rd, &db, &err), 0);
	EXPECT_EQ_INT(bri_inspect_table_csv(db, "b", &r, &err), 0);
	EXPECT_EQ_INT(bri_render_count(r, &size, &err), 0);
	EXPECT_EQ_INT(size, 2 + 2 + 3 + 66 * 1048576 + 2 + 1 + 2);
	bri_render_free(r);
	EXPECT_EQ_INT(bri_inspect_table_csv(db, "b", &r, &err), 0);
	EXPECT_EQ_INT(bri_render_skip(r, 4 + 3 + 66 * 1048576 - 2, &err), 0);
	EXPECT_EQ_INT(bri_render_read(r, buf, sizeof(buf), &err), 2 + 3 + 2);
	EXPECT(memcmp(buf, "00'\"\n3\n", 7) == 0);
	bri_render_free(r);

	/* Big text: quotes doubled on the way out, in pieces of any size. */
	char *want = malloc(20000), *p = want;
	p += sprintf(p, "x\n\"");
	for (int i = 0; i < 3000; i++)
		p += sprintf(p, "a\"\"");
	p += sprintf(p, "\"\n");
	for (int i = 0; i < 3000; i++)
		p += sprintf(p, "ab");
	p += sprintf(p, "\n");
	for (size_t step = 1; step < 9000; step = step * 3 + 1) {
		EXPECT_EQ_INT(bri_inspect_table_csv(db, "t", &r, &err), 0);
		char *got = read_all(r, step, &len, &rc);
		EXPECT_MSG(len == strlen(want) && memcmp(got, want, len) == 0, "step %zu", step);
		free(got);
		bri_render_free(r);
	}
	for (size_t off = 0; off < strlen(want); off += 997) {
		EXPECT_EQ_INT(bri_inspect_table_csv(db, "t", &r, &err), 0);
		EXPECT_EQ_INT(bri_render_skip(r, off, &err), 0);
		char *got = read_all(r, 4096, &len, &rc);
		EXPECT_MSG(len == strlen(want) - off && memcmp(got, want + off, len) == 0,
		           "skip %zu", off);
		free(got);
		bri_render_free(r);
	}
	free(want);

	/* The cap on a row's literal bytes, as a daemon may lower it. */
	EXPECT_EQ_INT(bri_inspect_table_csv(db, "b", &r, &err), 0);
	bri_render_set_row_max(r, 6);
	EXPECT_EQ_INT(bri_render_read(r, buf, 4, &err), 4); /* "x\n1\n" */
	/* The blob's row: 6 literal bytes ("X' and '"\n) and the hex, not counted. */
	EXPECT_EQ_INT(bri_render_read(r, buf, 4, &err), 4);
	EXPECT(memcmp(buf, "\"X'0", 4) == 0);
	bri_render_free(r);
	EXPECT_EQ_INT(bri_inspect_table_csv(db, "t", &r, &err), 0);
	bri_render_set_row_max(r, 1);
	EXPECT_EQ_INT(bri_render_read(r, buf, 4, &err), -EFBIG);
	EXPECT(strstr(err.msg, "more than 1 bytes") != NULL);
	EXPECT_EQ_INT(bri_render_read(r, buf, 4, &err), -EFBIG);
	bri_render_free(r);
	EXPECT_EQ_INT(bri_inspect_table_csv(db, "t", &r, &err), 0);
	bri_render_set_row_max(r, 1);
	EXPECT_EQ_INT(bri_render_count(r, &size, &err), -EFBIG);
	bri_render_free(r);
	sqlite3_close(db);
	bri_reader_close(rd);
	free(path);
}

static void test_diff(const char *base)
{
	char *a = tu_fmt("%s/old.db", base), *b = tu_fmt("%s/new.db", base);
	struct bri_render *r = NULL;
	struct bri_reader *ro = NULL, *rn = NULL;
	struct bri_err err = {0};
	sqlite3 *w = NULL, *db = NULL;

	EXPECT(sqlite3_open(a, &w) == SQLITE_OK);
	tu_exec(w,
	        "CREATE TABLE p(id INTEGER PRIMARY KEY, v);"
	        "INSERT INTO p VALUES (1, 'a'), (2, 'b'), (3, 'c');"
	        "CREATE TABLE np(x, y); INSERT INTO np VALUES (1, 1), (2, 2);"
	        "CREATE TABLE only_old(z); INSERT INTO only_old VALUES ('gone');"
	        "CREATE TABLE rekey(a PRIMARY KEY, b); INSERT INTO rekey VALUES (1, 'x'), (2, 'y');"
	        "CREATE TABLE wr(a PRIMARY KEY, b) WITHOUT ROWID; INSERT INTO wr VALUES (1, 2);");
	sqlite3_close(w);
	EXPECT(sqlite3_open(b, &w) == SQLITE_OK);
	tu_exec(w,
	        "CREATE TABLE p(id INTEGER PRIMARY KEY, v);"
	        "INSERT INTO p VALUES (1, 'a'), (3, 'C'), (4, 'd');"
	        "CREATE TABLE np(x, y); INSERT INTO np VALUES (1, 1), (2, 3);"
	        "CREATE TABLE only_new(z, w); INSERT INTO only_new VALUES ('new', NULL);"
	        "CREATE TABLE rekey(a, b PRIMARY KEY); INSERT INTO rekey VALUES (1, 'x'), (2, 'z');"
	        "CREATE TABLE wr(a, b PRIMARY KEY) WITHOUT ROWID; INSERT INTO wr VALUES (1, 2);"
	        "CREATE TABLE infs(x); INSERT INTO infs VALUES (1e999), (-1e999), (0.5);");
	sqlite3_close(w);

	EXPECT_EQ_INT(open_diff_paths(a, b, &ro, &rn, &db, &err), 0);
	check_render(db, open_summary, NULL,
	             "infs: missing from first database\n"
	             "np: 1 changes, 0 inserts, 0 deletes, 1 unchanged\n"
	             "only_new: missing from first database\n"
	             "only_old: missing from second database\n"
	             "p: 1 changes, 1 inserts, 1 deletes, 1 unchanged\n"
	             "rekey: incompatible schema\n"
	             "wr: incompatible schema\n");
	/* Another key: paired on the rowid; a WITHOUT ROWID table has none. */
	check_render(db, open_diff, "rekey", "op,a,b\n~-,2,y\n~+,2,z\n");
	EXPECT_EQ_INT(bri_diff_table_csv(db, "wr", &r, &err), -EOPNOTSUPP);
	check_render(db, open_diff, "p", "op,id,v\n-,2,b\n~-,3,c\n~+,3,C\n+,4,d\n");
	check_render(db, open_diff, "np", "op,x,y\n~-,2,2\n~+,2,3\n");
	check_render(
	    db, open_json, "p",
	    "{\"op\":\"-\",\"old\":{\"id\":2,\"v\":\"b\"}}\n"
	    "{\"op\":\"~\",\"old\":{\"id\":3,\"v\":\"c\"},\"new\":{\"id\":3,\"v\":\"C\"}}\n"
	    "{\"op\":\"+\",\"new\":{\"id\":4,\"v\":\"d\"}}\n");
	check_render(db, open_diff, "infs", "op,x\n+,Inf\n+,-Inf\n+,0.5\n");
	check_render(db, open_json, "infs",
	             "{\"op\":\"+\",\"new\":{\"x\":null}}\n{\"op\":\"+\",\"new\":{\"x\":null}}\n"
	             "{\"op\":\"+\",\"new\":{\"x\":0.5}}\n");
	check_render(db, open_json, "only_new",
	             "{\"op\":\"+\",\"new\":{\"z\":\"new\",\"w\":null}}\n");
	check_render(db, open_diff, "only_old", "op,z\n-,gone\n");
	check_render(db, open_diff, "only_new", "op,z,w\n+,new,\n");
	EXPECT_EQ_INT(bri_diff_table_csv(db, "nothing", &r, &err), -ENOENT);
	struct bri_diff_counts dc;
	EXPECT_EQ_INT(bri_diff_table_counts(db, "p", &dc, &err), 0);
	EXPECT(dc.state == BRI_DIFF_COMPARED && dc.changes == 1 && dc.inserts == 1 &&
	       dc.deletes == 1 && dc.unchanged == 1);
	EXPECT_EQ_INT(bri_diff_table_counts(db, "only_old", &dc, &err), 0);
	EXPECT_EQ_INT(dc.state, BRI_DIFF_ONLY_OLD);
	EXPECT_EQ_INT(bri_diff_table_counts(db, "only_new", &dc, &err), 0);
	EXPECT_EQ_INT(dc.state, BRI_DIFF_ONLY_NEW);
	EXPECT_EQ_INT(bri_diff_table_counts(db, "nothing", &dc, &err), 0);
	EXPECT_EQ_INT(dc.state, BRI_DIFF_NEITHER);
	char **tn = NULL;
	size_t ntn = 0;
	EXPECT_EQ_INT(bri_diff_tables(db, &tn, &ntn, &err), 0);
	EXPECT_EQ_INT(ntn, 7);
	bri_inspect_names_free(tn, ntn);
	sqlite3_close(db);
	bri_reader_close(ro);
	bri_reader_close(rn);

	/* Not a database on the NEW side. */
	char *junk = tu_fmt("%s/junk2.db", base);
	tu_write_str(junk, "this is not an SQLite database, not at all, no no no no no no no");
	EXPECT(open_diff_paths(a, junk, &ro, &rn, &db, &err) < 0);
	free(junk);
	free(a);
	free(b);
}

/* Files in folder dir whose names start with '.' and end in ".tmp". */
static int tmp_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] == '.' && strstr(e->d_name, ".tmp"))
			n++;
	closedir(d);
	return n;
}

static void test_live(const char *base)
{
	char *live = tu_fmt("%s/live/bri.db", base), *dir = tu_fmt("%s/live", base);
	char *tmp = NULL, *got;
	struct bri_reader *rd = NULL;
	struct bri_store *s = NULL;
	struct bri_render *r = NULL;
	struct bri_err err = {0};
	sqlite3 *w = NULL, *db = NULL;
	size_t len;
	int rc;

	mkdir(dir, 0700);
	EXPECT(sqlite3_open(live, &w) == SQLITE_OK);
	tu_exec(w, "PRAGMA journal_mode=WAL; CREATE TABLE t(a); INSERT INTO t VALUES (1), (2);");
	EXPECT_EQ_INT(bri_store_open(live, NULL, true, &s, &err), 0);
	/* A writer keeps its connection open (WAL): the snapshot sees what it committed. */
	EXPECT_EQ_INT(bri_inspect_live_take(s, 1000, &tmp, &rd, &err), 0);
	EXPECT_EQ_INT(tmp_files(s->dir), 1);
	EXPECT_EQ_INT(bri_inspect_open(rd, &db, &err), 0);
	EXPECT_EQ_INT(bri_inspect_table_csv(db, "t", &r, &err), 0);
	got = read_all(r, 100, &len, &rc);
	EXPECT_STREQ(got, "a\n1\n2\n");
	free(got);
	bri_render_free(r);
	sqlite3_close(db);
	bri_inspect_live_drop(s, tmp, rd);
	EXPECT_EQ_INT(tmp_files(s->dir), 0);
	sqlite3_close(w);
	bri_store_close(s);

	/* No live database: an error, and nothing left in the store. */
	s = NULL;
	char *gone = tu_fmt("%s/gone/bri.db", base), *gdir = tu_fmt("%s/gone", base);
	mkdir(gdir, 0700);
	EXPECT_EQ_INT(bri_store_open(gone, NULL, true, &s, &err), 0);
	if (s) {
		tmp = NULL;
		rd = NULL;
		EXPECT(bri_inspect_live_take(s, 100, &tmp, &rd, &err) < 0);
		EXPECT(tmp == NULL && rd == NULL);
		EXPECT(strstr(err.msg, "snapshot of the live database") != NULL);
		EXPECT_EQ_INT(tmp_files(s->dir), 0);
		bri_store_close(s);
	}
	free(gone);
	free(gdir);
	free(live);
	free(dir);
}

static void test_at(void)
{
	time_t t, u;

	setenv("TZ", "UTC", 1);
	tzset();
	EXPECT_EQ_INT(bri_inspect_parse_at("2025-10-16T14:30Z", &t), 0);
	EXPECT_EQ_INT(t, 1760625000);
	EXPECT_EQ_INT(bri_inspect_parse_at("2025-10-16T14:30:07Z", &t), 0);
	EXPECT_EQ_INT(t, 1760625007);
	EXPECT_EQ_INT(bri_inspect_parse_at("2025-10-16Z", &t), 0);
	EXPECT_EQ_INT(t, 1760659199); /* 23:59:59 */
	/* Local time: two hours east of UTC. */
	setenv("TZ", "XST-2", 1);
	tzset();
	EXPECT_EQ_INT(bri_inspect_parse_at("2025-10-16T16:30", &u), 0);
	EXPECT_EQ_INT(u, 1760625000);
	EXPECT_EQ_INT(bri_inspect_parse_at("2025-10-16", &u), 0);
	EXPECT_EQ_INT(u, 1760659199 - 7200);
	static const char *const bad[] = {"",
	                                  "2025",
	                                  "2025-10-16T",
	                                  "2025-10-16T14",
	                                  "2025-10-16 14:30",
	                                  "2025-10-16T14:30:0",
	                                  "2025-1x-16",
	                                  "2025-10-16T14:30:00+02:00",
	                                  "2025-10-16T14:30ZZ",
	                                  "Z",
	                                  "latest"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		EXPECT_MSG(bri_inspect_parse_at(bad[i], &t) == -EINVAL, "'%s'", bad[i]);

	struct bri_entry e[3] = {
	    {.name = "c", .time = 300}, {.name = "b", .time = 200}, {.name = "a", .time = 100}};
	struct bri_entry *list[3] = {&e[0], &e[1], &e[2]};
	struct bri_catalog c = {.entries = list, .n = 3};
	EXPECT(bri_inspect_at(&c, 99) == NULL);
	EXPECT(bri_inspect_at(&c, 100) == &e[2]);
	EXPECT(bri_inspect_at(&c, 250) == &e[1]);
	EXPECT(bri_inspect_at(&c, 300) == &e[0]);
	EXPECT(bri_inspect_at(&c, 1000) == &e[0]);
	setenv("TZ", "UTC", 1);
	tzset();
}

/* A reader of bytes in memory: no descriptor and no path, as a page store's. */
static ssize_t mem_pread(struct bri_reader *r, void *buf, size_t len, uint64_t off)
{
	const char *bytes = r->priv;

	if (off >= r->size)
		return 0;
	if (len > r->size - off)
		len = (size_t)(r->size - off);
	memcpy(buf, bytes + off, len);
	return (ssize_t)len;
}

static void mem_close(struct bri_reader *r)
{
	(void)r;
}

/*
 * Inspection reads backups through readers only: a diff and a table of two
 * databases held in memory (no file to open by name), the same bytes as
 * from their files.
 */
static void test_readers_without_files(const char *base)
{
	char *a = tu_fmt("%s/mem_old.db", base), *b = tu_fmt("%s/mem_new.db", base);
	struct bri_err err = {0};
	sqlite3 *w = NULL, *db = NULL;
	size_t la = 0, lb = 0;
	char *ba, *bb;

	EXPECT(sqlite3_open(a, &w) == SQLITE_OK);
	tu_exec(
	    w,
	    "CREATE TABLE p(id INTEGER PRIMARY KEY, v); INSERT INTO p VALUES (1, 'a'), (2, 'b');");
	sqlite3_close(w);
	EXPECT(sqlite3_open(b, &w) == SQLITE_OK);
	tu_exec(
	    w,
	    "CREATE TABLE p(id INTEGER PRIMARY KEY, v); INSERT INTO p VALUES (1, 'A'), (3, 'c');");
	sqlite3_close(w);
	ba = tu_read(a, &la);
	bb = tu_read(b, &lb);
	/* The files are gone: only the bytes in memory remain. */
	unlink(a);
	unlink(b);
	struct bri_reader ro = {.pread = mem_pread,
	                        .close = mem_close,
	                        .size = la,
	                        .fd = -1,
	                        .label = "old (memory)",
	                        .priv = ba};
	struct bri_reader rn = {.pread = mem_pread,
	                        .close = mem_close,
	                        .size = lb,
	                        .fd = -1,
	                        .label = "new (memory)",
	                        .priv = bb};
	EXPECT_EQ_INT(bri_inspect_open(&rn, &db, &err), 0);
	check_render(db, open_table, "p", "id,v\n1,A\n3,c\n");
	sqlite3_close(db);
	db = NULL;
	EXPECT_EQ_INT(bri_diff_open(&ro, &rn, &db, &err), 0);
	check_render(db, open_summary, NULL, "p: 1 changes, 1 inserts, 1 deletes, 0 unchanged\n");
	check_render(db, open_diff, "p", "op,id,v\n-,2,b\n~-,1,a\n~+,1,A\n+,3,c\n");
	sqlite3_close(db);
	free(ba);
	free(bb);
	free(a);
	free(b);
}

int main(void)
{
	char *base = tu_tmpdir("inspect");

	test_table_and_schema(base);
	test_big_values(base);
	test_diff(base);
	test_live(base);
	test_readers_without_files(base);
	test_at();
	tu_tmpdir_done(base);
	return EXPECT_RESULT();
}
