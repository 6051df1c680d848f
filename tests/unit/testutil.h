/*
 * Helpers shared by the unit tests that touch the disk: a private temporary
 * folder per test (removed at the end unless BRI_TEST_KEEP is set), whole-file
 * read/write, and real SQLite databases made with the sqlite3 C API. No mocks:
 * everything here makes real files that the core then reads.
 */
#ifndef BRI_TEST_UTIL_H
#define BRI_TEST_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <json-c/json.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bri/meta.h"
#include "bri/store.h"

/* Aborts the test program (exit 1) when a setup step fails: not a check. */
#define TU_DIE(...)                                                                                \
	do {                                                                                       \
		fprintf(stderr, "%s:%d: setup failed: ", __FILE__, __LINE__);                      \
		fprintf(stderr, __VA_ARGS__);                                                      \
		fputc('\n', stderr);                                                               \
		exit(1);                                                                           \
	} while (0)

static inline int tu_rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(p);
	return 0;
}

/* Removes the tree at path (no error when absent). */
static inline void tu_rmrf(const char *path)
{
	nftw(path, tu_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh private folder under $TMPDIR (or /tmp), absolute and resolved; malloc'd. */
static inline char *tu_tmpdir(const char *tag)
{
	const char *base = getenv("TMPDIR");
	char tmpl[PATH_MAX], real[PATH_MAX];
	if (!base || !*base)
		base = "/tmp";
	snprintf(tmpl, sizeof(tmpl), "%s/bri-unit-%s-XXXXXX", base, tag);
	if (!mkdtemp(tmpl))
		TU_DIE("mkdtemp %s: %s", tmpl, strerror(errno));
	if (!realpath(tmpl, real))
		TU_DIE("realpath %s: %s", tmpl, strerror(errno));
	return strdup(real);
}

/* Removes a folder made by tu_tmpdir, unless BRI_TEST_KEEP is set; frees dir. */
static inline void tu_tmpdir_done(char *dir)
{
	if (getenv("BRI_TEST_KEEP"))
		fprintf(stderr, "kept %s\n", dir);
	else
		tu_rmrf(dir);
	free(dir);
}

/* snprintf into a malloc'd string. */
static inline char *tu_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline char *tu_fmt(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		TU_DIE("vasprintf");
	va_end(ap);
	return s;
}

/* Writes len bytes to path (created 0644 under the umask, truncated). */
static inline void tu_write(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		TU_DIE("open %s: %s", path, strerror(errno));
	const char *p = data;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0)
			TU_DIE("write %s: %s", path, strerror(errno));
		p += n;
		len -= (size_t)n;
	}
	close(fd);
}

static inline void tu_write_str(const char *path, const char *s)
{
	tu_write(path, s, strlen(s));
}

/* The whole file at path, malloc'd and NUL-terminated; NULL when unreadable. */
static inline char *tu_read(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return NULL;
	}
	char *buf = malloc((size_t)st.st_size + 1);
	size_t got = 0;
	while (buf && got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (buf)
		buf[got] = '\0';
	if (len)
		*len = got;
	return buf;
}

/* Copies the file src to dst. */
static inline void tu_copy(const char *src, const char *dst)
{
	size_t len;
	char *buf = tu_read(src, &len);
	if (!buf)
		TU_DIE("read %s: %s", src, strerror(errno));
	tu_write(dst, buf, len);
	free(buf);
}

static inline bool tu_exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

/* Permission bits of path (lstat), or -1. */
static inline int tu_mode(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0)
		return -1;
	return (int)(st.st_mode & 07777);
}

/* Runs sql on db, dying on error. */
static inline void tu_exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		TU_DIE("sql \"%s\": %s", sql, msg ? msg : "?");
}

/*
 * Makes a real SQLite database at path with tables videos (nvideos rows) and
 * memory (nmemory rows, ~100 bytes each, so the file spans several pages),
 * in journal mode jmode ("wal" or "delete"). Returns the open connection
 * when keep_open, else closes it and returns NULL.
 */
static inline sqlite3 *tu_make_db(const char *path, const char *jmode, int nvideos, int nmemory,
                                  bool keep_open)
{
	sqlite3 *db;
	if (sqlite3_open(path, &db) != SQLITE_OK)
		TU_DIE("sqlite3_open %s", path);
	char *sql = tu_fmt(
	    "PRAGMA journal_mode=%s;"
	    "CREATE TABLE videos (id INTEGER PRIMARY KEY, title TEXT NOT NULL);"
	    "CREATE TABLE memory (id INTEGER PRIMARY KEY, video_id INTEGER, content TEXT);"
	    "CREATE INDEX memory_video ON memory(video_id);"
	    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d)"
	    "  INSERT INTO videos(title) SELECT 'video ' || i FROM n WHERE %d > 0;"
	    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d)"
	    "  INSERT INTO memory(video_id, content) SELECT i %% 7, 'message ' || i || ' ' ||"
	    "  hex(randomblob(40)) FROM n WHERE %d > 0;",
	    jmode, nvideos, nvideos, nmemory, nmemory);
	tu_exec(db, sql);
	free(sql);
	if (keep_open)
		return db;
	sqlite3_close(db);
	return NULL;
}

/*
 * Counts the lines of the audit log (audit.jsonl in store_dir) whose
 * operation is op, whose name is name (NULL: any) and whose result is "ok"
 * (ok) or anything else (!ok).
 */
static inline int tu_audit_count(const char *store_dir, const char *op, const char *name, bool ok)
{
	char *path = tu_fmt("%s/audit.jsonl", store_dir);
	size_t len = 0;
	char *text = tu_read(path, &len);
	int n = 0;
	free(path);
	for (char *p = text, *nl; p && p < text + len; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(text + len - p));
		if (!nl)
			nl = text + len;
		*nl = '\0';
		json_object *o = json_tokener_parse(p), *v;
		const char *vop = NULL, *vname = NULL, *vres = NULL;
		if (o && json_object_object_get_ex(o, "operation", &v))
			vop = json_object_get_string(v);
		if (o && json_object_object_get_ex(o, "name", &v))
			vname = json_object_get_string(v);
		if (o && json_object_object_get_ex(o, "result", &v))
			vres = json_object_get_string(v);
		if (vop && strcmp(vop, op) == 0 && (!name || (vname && strcmp(vname, name) == 0)) &&
		    (vres && strcmp(vres, "ok") == 0) == ok)
			n++;
		json_object_put(o);
	}
	free(text);
	return n;
}

/* Rows of table in db, or -1 when it cannot be counted. */
static inline int64_t tu_count_rows(sqlite3 *db, const char *table)
{
	sqlite3_stmt *st;
	int64_t n = -1;
	char *sql = tu_fmt("SELECT count(*) FROM \"%s\"", table);
	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	free(sql);
	return n;
}

/*
 * Copies backup src of store s as name with backup time t and kind, as a
 * seed-style hand copy would (a wrong checksum with bad_checksum). Dies on
 * failure.
 */
static inline void tu_clone_backup(struct bri_store *s, const char *src, const char *name, time_t t,
                         enum bri_kind kind, bool bad_checksum)
{
	struct bri_err err = {0};
	char *sf = tu_fmt("%s.db", src), *smf = tu_fmt("%s.db.meta", src);
	char *df = tu_fmt("%s.db", name), *dmf = tu_fmt("%s.db.meta", name);
	char *bytes = NULL, *json = NULL;
	size_t len, jlen;
	struct bri_meta m;
	memset(&m, 0, sizeof(m));
	if (bri_store_read_file(s, sf, 1u << 30, &bytes, &len) != 0 ||
	    bri_store_read_file(s, smf, BRI_META_MAX_BYTES, &json, &jlen) != 0 ||
	    bri_meta_parse(json, jlen, &m, &err) != 0)
		TU_DIE("reading %s: %s", src, err.msg);
	free(json);
	m.time = t;
	bri_time_local(t, m.backup_time, sizeof(m.backup_time));
	bri_time_utc(t, m.backup_time_utc, sizeof(m.backup_time_utc));
	free(m.backup_path);
	m.backup_path = bri_store_path(s, name, ".db");
	m.kind = kind;
	if (bad_checksum)
		m.checksum[0] = m.checksum[0] == 'a' ? 'b' : 'a';
	if (bri_store_write_file(s, df, bytes, len, &err) != 0 ||
	    bri_meta_format(&m, &json, &jlen) != 0 ||
	    bri_store_write_file(s, dmf, json, jlen, &err) != 0)
		TU_DIE("writing %s: %s", name, err.msg);
	free(json);
	free(bytes);
	bri_meta_free(&m);
	free(sf);
	free(smf);
	free(df);
	free(dmf);
}

#endif
