/*
 * Verification of backups: size and SHA-256 against the metadata, PRAGMA
 * integrity_check, row counts against the metadata. A bad backup is a
 * verdict, never an error of the verifier. Results persist as NAME.db.verify.
 */
#include "bri/verify.h"

#include "json_number.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <json-c/json.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bri/audit.h"
#include "bri/log.h"
#include "bri/snapshot.h"

#define VERIFY_FILE_MAX (64u << 10)
/* Page cache of the connection that checks a backup, in KiB (SQLite's default: 2000). */
#define VERIFY_CACHE_KIB "8192"

static const char *status_names[] = {"unverified", "ok", "failed"};

const char *bri_verify_status_name(enum bri_verify_status s)
{
	return s <= BRI_VERIFY_FAILED ? status_names[s] : "unverified";
}

static void fail(struct bri_verify_result *res, const char *fmt, ...) BRI_PRINTF(2, 3);

/* Records the first reason for failing; later ones are dropped. */
static void fail(struct bri_verify_result *res, const char *fmt, ...)
{
	va_list ap;

	res->status = BRI_VERIFY_FAILED;
	if (res->reason[0])
		return;
	va_start(ap, fmt);
	vsnprintf(res->reason, sizeof(res->reason), fmt, ap);
	va_end(ap);
	for (char *p = res->reason; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

/* Compares the row count of one of SQLite's own tables that the metadata lists. */
static void compare_internal(sqlite3 *db, const struct bri_table_count *want,
			     struct bri_verify_result *res)
{
	char *sql = sqlite3_mprintf("SELECT count(*) FROM \"%w\"", want->name);
	sqlite3_stmt *st = NULL;
	int64_t rows = -1;

	if (sql && sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		rows = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_free(sql);
	if (rows < 0) {
		res->counts_ok = 0;
		fail(res, "table %s of the metadata is missing", want->name);
	} else if (rows != want->rows) {
		res->counts_ok = 0;
		fail(res, "table %s has %lld rows, the metadata says %lld", want->name,
		     (long long)rows, (long long)want->rows);
	}
}

static void compare_counts(sqlite3 *db, const struct bri_meta *meta,
			   const struct bri_table_count *t, size_t n, struct bri_verify_result *res)
{
	res->counts_ok = 1;
	for (size_t i = 0; i < n; i++) {
		int64_t want = bri_meta_rows(meta, t[i].name);

		if (want < 0) {
			res->counts_ok = 0;
			fail(res, "table %s is not in the metadata", t[i].name);
		} else if (want != t[i].rows) {
			res->counts_ok = 0;
			fail(res, "table %s has %lld rows, the metadata says %lld", t[i].name,
			     (long long)t[i].rows, (long long)want);
		}
	}
	for (size_t i = 0; i < meta->ntables; i++) {
		bool found = false;

		/* The seed listed SQLite's own tables too (sqlite_sequence). */
		if (strncmp(meta->tables[i].name, "sqlite_", 7) == 0) {
			compare_internal(db, &meta->tables[i], res);
			continue;
		}
		for (size_t j = 0; j < n && !found; j++)
			found = strcmp(meta->tables[i].name, t[j].name) == 0;
		if (!found) {
			res->counts_ok = 0;
			fail(res, "table %s of the metadata is missing", meta->tables[i].name);
		}
	}
}

/* Opens the backup read-only and runs integrity_check and the row counts. */
static void check_database(const char *db_path, const struct bri_meta *meta,
			   struct bri_verify_result *res)
{
	struct bri_table_count *t = NULL;
	struct bri_err e = {0};
	sqlite3 *db = NULL;
	size_t n = 0;
	int rc;

	rc = bri_snapshot_open_backup(db_path, &db, &e);
	if (rc < 0) {
		res->integrity_ok = 0;
		fail(res, "%s", e.msg);
		goto out_close;
	}
	/* integrity_check revisits pages: with SQLite's default 2 MiB cache it
	 * reads a 1 GiB backup about twice (1.3 s here); 8 MiB halves that. */
	sqlite3_exec(db, "PRAGMA cache_size=-" VERIFY_CACHE_KIB, NULL, NULL, NULL);
	rc = bri_snapshot_check(db, false, &e);
	res->integrity_ok = rc == 0;
	if (rc < 0) {
		fail(res, "%s", e.msg);
		goto out_close;
	}
	if (!meta)
		goto out_close;
	rc = bri_snapshot_count_rows(db, &t, &n, &e);
	if (rc < 0) {
		res->counts_ok = 0;
		fail(res, "cannot count rows: %s", e.msg);
		goto out_close;
	}
	compare_counts(db, meta, t, n, res);
	bri_table_counts_free(t, n);
out_close:
	sqlite3_close(db);
}

/* The SHA-256 of a backup, computed on its own thread. */
struct hash_job {
	const char *path;              /* the file */
	const struct bri_op_ctx *ctx;  /* progress */
	char hex[BRI_CHECKSUM_HEX_LEN + 1]; /* the result */
	struct bri_err err;            /* why it failed */
	int rc;                        /* 0 or a negative errno */
};

static void *hash_thread(void *arg)
{
	struct hash_job *j = arg;

	j->rc = bri_checksum_path(j->path, j->ctx, j->hex, &j->err);
	return NULL;
}

int bri_verify_file(const char *db_path, const struct bri_meta *meta, const char *meta_error,
		    const struct bri_op_ctx *ctx, struct bri_verify_result *res)
{
	struct hash_job job = {.path = db_path, .ctx = ctx};
	double start = bri_now_mono();
	struct bri_verify_result db;
	bool hashing = false;
	pthread_t thread;
	struct stat st;

	memset(res, 0, sizeof(*res));
	res->status = BRI_VERIFY_OK;
	res->checked = time(NULL);
	bri_time_local(res->checked, res->checked_at, sizeof(res->checked_at));
	snprintf(res->check, sizeof(res->check), "integrity_check");
	res->checksum_ok = res->integrity_ok = res->counts_ok = -1;

	if (!meta)
		fail(res, "metadata missing or unreadable: %s", meta_error ? meta_error : "no .meta");
	if (stat(db_path, &st) < 0) {
		fail(res, "cannot read %s: %s", db_path, strerror(errno));
		goto out_done;
	}
	if (meta && st.st_size != meta->size_bytes)
		fail(res, "size is %lld bytes, the metadata says %lld", (long long)st.st_size,
		     (long long)meta->size_bytes);
	/* The hash and the SQLite checks read the file at the same time, on two
	 * threads; the verdict is composed as if they ran one after the other
	 * (checksum first, and no database verdict when the file is unreadable). */
	if (meta)
		hashing = pthread_create(&thread, NULL, hash_thread, &job) == 0;
	if (meta && !hashing)
		hash_thread(&job);
	db = *res;
	db.status = BRI_VERIFY_OK;
	db.reason[0] = '\0';
	check_database(db_path, meta, &db);
	if (hashing)
		pthread_join(thread, NULL);
	if (meta) {
		if (job.rc < 0) {
			res->checksum_ok = 0;
			fail(res, "%s", job.err.msg);
			goto out_done;
		}
		res->checksum_ok = strcmp(job.hex, meta->checksum) == 0;
		if (!res->checksum_ok)
			fail(res, "checksum mismatch: file has %.12s..., the metadata says %.12s...",
			     job.hex, meta->checksum);
	}
	res->integrity_ok = db.integrity_ok;
	res->counts_ok = db.counts_ok;
	if (db.status != BRI_VERIFY_OK)
		fail(res, "%s", db.reason);
out_done:
	res->duration_s = bri_now_mono() - start;
	return 0;
}

int bri_verify_backup(struct bri_store *s, const char *name, const struct bri_op_ctx *ctx,
		      struct bri_verify_result *res, struct bri_err *err)
{
	char meta_file[BRI_NAME_MAX + 16], verify_file[BRI_NAME_MAX + 16];
	struct bri_err merr = {0};
	struct bri_meta meta;
	bool meta_ok = false;
	char *db_path, *text, *json = NULL;
	size_t len;
	int rc;

	rc = bri_store_check_name(name, strlen(name), err);
	if (rc < 0)
		return rc;
	rc = bri_store_check(s, err);
	if (rc < 0)
		return rc;
	if (!bri_store_has(s, name))
		return bri_err_set(err, -ENOENT, "no backup named %s in %s", name, s->dir);
	snprintf(meta_file, sizeof(meta_file), "%s.db.meta", name);
	snprintf(verify_file, sizeof(verify_file), "%s.db.verify", name);
	rc = bri_store_read_file(s, meta_file, BRI_META_MAX_BYTES, &text, &len);
	if (rc == 0) {
		meta_ok = bri_meta_parse(text, len, &meta, &merr) == 0;
		free(text);
	} else {
		bri_err_set(&merr, rc, "%s: %s", meta_file,
		            rc == -ENOENT ? "missing" : strerror(-rc));
	}
	if (!meta_ok) {
		/* Not a backup (SPEC.md section 1): failed, and the .db is neither
		 * opened nor given a .verify; it may be another program's file. */
		memset(res, 0, sizeof(*res));
		res->checked = time(NULL);
		bri_time_local(res->checked, res->checked_at, sizeof(res->checked_at));
		res->checksum_ok = res->integrity_ok = res->counts_ok = -1;
		fail(res, "not a backup: no metadata (%s)", merr.msg);
		bri_audit_record(s, "verify", name, -EIO, res->reason, 0, ctx);
		return 0;
	}
	db_path = bri_store_path(s, name, ".db");
	if (!db_path) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_free_meta;
	}
	rc = bri_verify_file(db_path, meta_ok ? &meta : NULL, merr.msg, ctx, res);
	if (rc < 0) {
		bri_err_set(err, rc, "cannot verify %s: %s", name, strerror(-rc));
		goto out_free_path;
	}
	rc = bri_verify_to_json(res, &json, &len);
	if (rc == 0)
		rc = bri_store_write_file(s, verify_file, json, len, err);
	else
		bri_err_set(err, rc, "out of memory");
	bri_audit_record(s, "verify", name, res->status == BRI_VERIFY_OK ? 0 : -EIO,
			 res->status == BRI_VERIFY_OK ? NULL : res->reason, res->duration_s, ctx);
	free(json);
out_free_path:
	free(db_path);
out_free_meta:
	if (meta_ok)
		bri_meta_free(&meta);
	return rc;
}

int bri_verify_load(const struct bri_store *s, const char *name, struct bri_verify_result *res)
{
	char file[BRI_NAME_MAX + 16], *text;
	size_t len;

	memset(res, 0, sizeof(*res));
	snprintf(file, sizeof(file), "%s.db.verify", name);
	if (bri_store_read_file(s, file, VERIFY_FILE_MAX, &text, &len) < 0)
		return 0;
	if (bri_verify_from_json(text, len, res) < 0)
		memset(res, 0, sizeof(*res));
	free(text);
	return 0;
}

static json_object *tristate(int v)
{
	return v < 0 ? NULL : json_object_new_boolean(v);
}

int bri_verify_to_json(const struct bri_verify_result *res, char **out, size_t *len)
{
	json_object *o = json_object_new_object();
	const char *text;
	int rc = 0;

	if (!o)
		return -ENOMEM;
	json_object_object_add(o, "status", json_object_new_string(bri_verify_status_name(res->status)));
	json_object_object_add(o, "checked_at", json_object_new_string(res->checked_at));
	json_object_object_add(o, "checked_epoch", json_object_new_int64(res->checked));
	json_object_object_add(o, "check", json_object_new_string(res->check));
	json_object_object_add(o, "checksum_ok", tristate(res->checksum_ok));
	json_object_object_add(o, "integrity_ok", tristate(res->integrity_ok));
	json_object_object_add(o, "counts_ok", tristate(res->counts_ok));
	json_object_object_add(o, "duration_s", bri_json_double(res->duration_s, 3));
	json_object_object_add(o, "detail", json_object_new_string(res->reason));
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED);
	if (!text || asprintf(out, "%s\n", text) < 0)
		rc = -ENOMEM;
	else
		*len = strlen(*out);
	json_object_put(o);
	return rc;
}

static int read_tristate(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_boolean))
		return -1;
	return json_object_get_boolean(v) ? 1 : 0;
}

/* Every key this file knows has its type, when present. */
static bool known_types_ok(json_object *o)
{
	static const struct {
		const char *key;
		json_type type;
	} keys[] = {
		{"status", json_type_string},       {"checked_at", json_type_string},
		{"checked_epoch", json_type_int},   {"check", json_type_string},
		{"checksum_ok", json_type_boolean}, {"integrity_ok", json_type_boolean},
		{"counts_ok", json_type_boolean},   {"duration_s", json_type_double},
		{"detail", json_type_string},
	};
	json_object *v;

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (!json_object_object_get_ex(o, keys[i].key, &v) ||
		    json_object_is_type(v, json_type_null))
			continue;
		if (keys[i].type == json_type_double && json_object_is_type(v, json_type_int))
			continue;
		if (!json_object_is_type(v, keys[i].type))
			return false;
	}
	return true;
}

int bri_verify_from_json(const char *json, size_t len, struct bri_verify_result *res)
{
	struct bri_verify_result r = {0};
	struct json_tokener *tok = json_tokener_new_ex(4);
	json_object *o, *v;
	const char *s;
	int rc = -EINVAL;

	if (!tok)
		return -ENOMEM;
	o = len <= VERIFY_FILE_MAX ? json_tokener_parse_ex(tok, json, (int)len) : NULL;
	if (o) {
		size_t end = json_tokener_get_parse_end(tok);

		while (end < len && (json[end] == ' ' || json[end] == '\n' || json[end] == '\t' ||
				     json[end] == '\r'))
			end++;
		if (end != len) {
			json_object_put(o);
			o = NULL;
		}
	}
	json_tokener_free(tok);
	if (!o || !json_object_is_type(o, json_type_object) || !known_types_ok(o))
		goto out_put;
	if (!json_object_object_get_ex(o, "status", &v) || !json_object_is_type(v, json_type_string))
		goto out_put;
	s = json_object_get_string(v);
	if (strcmp(s, "ok") == 0)
		r.status = BRI_VERIFY_OK;
	else if (strcmp(s, "failed") == 0)
		r.status = BRI_VERIFY_FAILED;
	else if (strcmp(s, "unverified") != 0)
		goto out_put;
	if (json_object_object_get_ex(o, "checked_at", &v) && json_object_is_type(v, json_type_string))
		snprintf(r.checked_at, sizeof(r.checked_at), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(o, "checked_epoch", &v) && json_object_is_type(v, json_type_int))
		r.checked = (time_t)json_object_get_int64(v);
	if (json_object_object_get_ex(o, "check", &v) && json_object_is_type(v, json_type_string))
		snprintf(r.check, sizeof(r.check), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(o, "duration_s", &v) &&
	    (json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int)))
		r.duration_s = json_object_get_double(v);
	if (json_object_object_get_ex(o, "detail", &v) && json_object_is_type(v, json_type_string))
		snprintf(r.reason, sizeof(r.reason), "%s", json_object_get_string(v));
	r.checksum_ok = read_tristate(o, "checksum_ok");
	r.integrity_ok = read_tristate(o, "integrity_ok");
	r.counts_ok = read_tristate(o, "counts_ok");
	if (r.status == BRI_VERIFY_FAILED && !r.reason[0])
		snprintf(r.reason, sizeof(r.reason), "unknown reason");
	*res = r;
	rc = 0;
out_put:
	json_object_put(o);
	return rc;
}

static const char *tristate_word(int v)
{
	return v < 0 ? "not checked" : v ? "ok" : "failed";
}

int bri_verify_render(const struct bri_verify_result *res, char **out, size_t *len)
{
	int n;

	if (res->status == BRI_VERIFY_UNVERIFIED)
		n = asprintf(out, "unverified\n");
	else
		n = asprintf(out,
			     "%s%s%s\nchecked_at: %s\ncheck: %s\nchecksum: %s\nintegrity: %s\n"
			     "row_counts: %s\nduration_s: %.3f\n",
			     res->status == BRI_VERIFY_OK ? "ok" : "failed",
			     res->status == BRI_VERIFY_OK ? "" : ": ",
			     res->status == BRI_VERIFY_OK ? "" : res->reason, res->checked_at,
			     res->check, tristate_word(res->checksum_ok),
			     tristate_word(res->integrity_ok), tristate_word(res->counts_ok),
			     res->duration_s);
	if (n < 0)
		return -ENOMEM;
	*len = (size_t)n;
	return 0;
}
