/*
 * Verification of backups: size and SHA-256 against the metadata, PRAGMA
 * integrity_check, row counts against the metadata. A bad backup is a
 * verdict, never an error of the verifier. The backup is read through the
 * store's reader (its hash) and SQLite's reader VFS (integrity and counts),
 * so both look at the very bytes of the file opened, whatever the store's
 * format. Results persist as the backup's verify sidecar.
 */
#include "bri/verify.h"

#include "json_number.h"

#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bri/audit.h"
#include "bri/log.h"
#include "bri/snapshot.h"
#include "bri/testpoint.h"
#include "snapshot_sql.h"
#include "internal.h"

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

/*
 * The negative errno when the last error of db was a shortage of resources
 * (memory, descriptors, temporary space), else 0.
 */
static int db_resource_error(sqlite3 *db)
{
	int code = sqlite3_errcode(db) & 0xff, sys = sqlite3_system_errno(db);

	if (code == SQLITE_NOMEM)
		return -ENOMEM;
	if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
		return -EBUSY;
	if ((code == SQLITE_IOERR || code == SQLITE_CANTOPEN || code == SQLITE_FULL) &&
	    bri_errno_is_resource(sys))
		return -sys;
	return 0;
}

/* SQLite's progress handler: non-zero interrupts the statement. */
static int interrupt_when_stopped(void *ctx)
{
	return bri_op_stopped(ctx);
}

/*
 * Opens the backup read-only and runs integrity_check and the row counts.
 * Returns 0 (the verdict in res), or a negative errno when a resource ran
 * out or ctx asked to stop (-ECANCELED; no verdict either way).
 */
static int check_database(struct bri_reader *r, const struct bri_meta *meta,
                          const struct bri_op_ctx *ctx, struct bri_verify_result *res)
{
	struct bri_table_count *t = NULL;
	struct bri_err e = {0};
	sqlite3 *db = NULL;
	size_t n = 0;
	int rc, out = 0;

	rc = snapshot_open_reader(r, &db, &e);
	if (rc < 0) {
		if (bri_errno_is_resource(rc))
			return rc;
		res->integrity_ok = 0;
		fail(res, "%s", e.msg);
		goto out_close;
	}
	/* integrity_check revisits pages: with SQLite's default 2 MiB cache it
	 * reads a 1 GiB backup about twice (1.3 s here); 8 MiB halves that. */
	sqlite3_exec(db, "PRAGMA cache_size=-" VERIFY_CACHE_KIB, NULL, NULL, NULL);
	if (ctx && ctx->stop)
		sqlite3_progress_handler(db, 10000, interrupt_when_stopped, (void *)ctx);
	rc = snapshot_check(db, false, &e);
	if (bri_op_stopped(ctx)) {
		out = -ECANCELED;
		goto out_close;
	}
	if (rc < 0 && (out = db_resource_error(db)) < 0)
		goto out_close;
	res->integrity_ok = rc == 0;
	if (rc < 0) {
		fail(res, "%s", e.msg);
		goto out_close;
	}
	if (!meta)
		goto out_close;
	rc = snapshot_count_rows(db, &t, &n, &e);
	if (rc < 0) {
		out = bri_errno_is_resource(rc) ? rc : db_resource_error(db);
		if (out < 0)
			goto out_close;
		if (bri_op_stopped(ctx)) {
			out = -ECANCELED;
			goto out_close;
		}
		res->counts_ok = 0;
		fail(res, "cannot count rows: %s", e.msg);
		goto out_close;
	}
	compare_counts(db, meta, t, n, res);
	bri_table_counts_free(t, n);
out_close:
	sqlite3_close(db);
	return out;
}

/* The SHA-256 of a backup, computed on its own thread. */
struct hash_job {
	struct bri_reader *r;               /* the backup, open */
	const struct bri_op_ctx *ctx;       /* progress */
	char hex[BRI_CHECKSUM_HEX_LEN + 1]; /* the result */
	struct bri_err err;                 /* why it failed */
	int rc;                             /* 0 or a negative errno */
	atomic_bool db_done;                /* the database check has finished */
};

static void *hash_thread(void *arg)
{
	struct hash_job *j = arg;

	j->rc = bri_checksum_reader(j->r, j->ctx, j->hex, &j->err);
	/* The database check still runs: say so, not "checksum 100%". */
	if (!atomic_load(&j->db_done) && j->ctx && j->ctx->progress)
		j->ctx->progress(j->ctx->progress_arg, "integrity_check", 0, 0);
	return NULL;
}

static int64_t mtime_ns(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

void verify_file_of(struct bri_verify_file *f, const struct stat *st)
{
	f->known = true;
	f->dev = (uint64_t)st->st_dev;
	f->ino = (uint64_t)st->st_ino;
	f->size = (int64_t)st->st_size;
	f->mtime_ns = mtime_ns(st);
}

bool bri_verify_matches(const struct bri_verify_result *res, const struct stat *st)
{
	return res->file.known && res->file.dev == (uint64_t)st->st_dev &&
	       res->file.ino == (uint64_t)st->st_ino && res->file.size == (int64_t)st->st_size &&
	       res->file.mtime_ns == mtime_ns(st);
}

/*
 * After a quick read failed the checksum: the file read again with the
 * format's own per-page checks, so that r->why names the damaged page.
 */
static void find_damage(struct bri_reader *r)
{
	size_t len = 1u << 20;
	char *buf = malloc(len);

	r->quick = false;
	r->every_page = true;
	r->why[0] = '\0';
	for (uint64_t off = 0; buf && off < r->size;) {
		ssize_t n = bri_reader_pread(r, buf, len, off);

		if (n <= 0)
			break;
		off += (uint64_t)n;
	}
	free(buf);
}

/* Makes res "could not verify": no verdict, for a resource error rc. */
static int no_verdict(struct bri_verify_result *res, int rc, const char *what)
{
	res->status = BRI_VERIFY_UNVERIFIED;
	snprintf(res->reason, sizeof(res->reason), "could not verify (%s: %s); nothing recorded",
	         what, strerror(-rc));
	return rc;
}

/*
 * Verifies the backup r reads (NULL when it could not be opened: open_rc
 * and open_msg say why). Returns 0 with the verdict in res, or a negative
 * errno for a resource error (no verdict).
 */
static int verify_reader(struct bri_reader *r, int open_rc, const char *open_msg,
                         const struct bri_meta *meta, const char *meta_error,
                         const struct bri_op_ctx *ctx, struct bri_verify_result *res)
{
	struct hash_job job = {.ctx = ctx, .r = r};
	double start = bri_now_mono();
	struct bri_verify_result db;
	bool hashing = false;
	pthread_t thread;
	int rc;

	memset(res, 0, sizeof(*res));
	res->status = BRI_VERIFY_OK;
	res->checked = time(NULL);
	bri_time_local(res->checked, res->checked_at, sizeof(res->checked_at));
	snprintf(res->check, sizeof(res->check), "integrity_check");
	res->checksum_ok = res->integrity_ok = res->counts_ok = -1;

	if (!r && bri_errno_is_resource(open_rc))
		return no_verdict(res, open_rc, "opening the backup");
	if (!meta)
		fail(res, "metadata missing or unreadable: %s",
		     meta_error ? meta_error : "no .meta");
	if (!r) {
		fail(res, "%s", open_msg);
		goto out;
	}
	/* One reader for the identity, the hash and SQLite: it keeps the file checked. */
	verify_file_of(&res->file, &r->st);
	if (meta && (int64_t)r->size != meta->size_bytes)
		fail(res, "size is %lld bytes, the metadata says %lld", (long long)r->size,
		     (long long)meta->size_bytes);
	/* Every byte is checked against the whole file's checksum: the format's
	 * per-page checks run only to name the damage when it fails. */
	r->quick = meta != NULL;
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
	if (!hashing && ctx && ctx->progress)
		ctx->progress(ctx->progress_arg, "integrity_check", 0, 0);
	bri_testpoint("verify_database_check");
	rc = check_database(r, meta, ctx, &db);
	atomic_store(&job.db_done, true);
	if (hashing)
		pthread_join(thread, NULL);
	bri_testpoint("verify_read_done"); /* the reader still open, every byte read */
	/* Asked to stop: no verdict, even one that was complete. */
	if (rc == -ECANCELED || job.rc == -ECANCELED || bri_op_stopped(ctx))
		return no_verdict(res, -ECANCELED, "stopped");
	if (rc < 0)
		return no_verdict(res, rc, "checking the database");
	if (meta) {
		if (job.rc < 0 && bri_errno_is_resource(job.rc))
			return no_verdict(res, job.rc, "hashing");
		if (job.rc < 0 || strcmp(job.hex, meta->checksum) != 0) {
			if (r->quick)
				find_damage(r);
		}
		if (job.rc < 0) {
			res->checksum_ok = 0;
			/* The format's own words first: which page of which backup is damaged. */
			if (r->why[0])
				fail(res, "%s", r->why);
			fail(res, "%s", job.err.msg);
			goto out;
		}
		snprintf(res->file.sha256, sizeof(res->file.sha256), "%s", job.hex);
		res->checksum_ok = strcmp(job.hex, meta->checksum) == 0;
		if (!res->checksum_ok && r->why[0])
			fail(res, "%s", r->why);
		if (!res->checksum_ok)
			fail(res,
			     "checksum mismatch: file has %.12s..., the metadata says %.12s...",
			     job.hex, meta->checksum);
	}
	res->integrity_ok = db.integrity_ok;
	res->counts_ok = db.counts_ok;
	if (db.status != BRI_VERIFY_OK)
		fail(res, "%s", db.reason);
out:
	res->duration_s = bri_now_mono() - start;
	return 0;
}

int bri_verify_file(const char *db_path, const struct bri_meta *meta, const char *meta_error,
		    const struct bri_op_ctx *ctx, struct bri_verify_result *res)
{
	struct bri_reader *r = NULL;
	struct bri_err e = {0};
	int rc;

	rc = bri_reader_open_path(db_path, &r, &e);
	rc = verify_reader(r, rc, e.msg, meta, meta_error, ctx, res);
	bri_reader_close(r);
	return rc;
}

/*
 * Records res as the backup's verify sidecar under the store's lock, only
 * when the backup is still the file that was checked: a backup deleted, or
 * deleted and created again, during the verification must not get the old
 * result.
 */
static int persist(struct bri_store *s, const char *name, const struct bri_verify_result *res,
                   struct bri_err *err)
{
	char *json = NULL;
	struct stat st;
	size_t len;
	int lockfd, rc;

	rc = bri_verify_to_json(res, &json, &len);
	if (rc < 0)
		return bri_err_set(err, rc, "out of memory");
	bri_testpoint("verify_before_persist");
	lockfd = bri_store_lock(s, err);
	if (lockfd < 0) {
		rc = bri_err_wrap(err, lockfd, "the result of verifying %s was not recorded", name);
		goto out_free;
	}
	rc = bri_store_stat(s, name, &st);
	if (rc < 0) {
		rc = rc == -ENOENT ? bri_err_set(err, -ENOENT,
		                                 "backup %s was removed while it was verified; "
		                                 "its result was discarded",
		                                 name)
		                   : bri_err_set(err, rc, "cannot look at backup %s in %s: %s",
		                                 name, s->dir, strerror(-rc));
		goto out_unlock;
	}
	if (res->file.known && !bri_verify_matches(res, &st)) {
		rc = bri_err_set(err, -ESTALE,
		                 "backup %s was replaced or changed while it was verified; its "
		                 "result was discarded (verify it again)",
		                 name);
		goto out_unlock;
	}
	rc = bri_store_sidecar_write(s, name, BRI_SIDECAR_VERIFY, json, len, err);
out_unlock:
	bri_store_unlock(lockfd);
out_free:
	free(json);
	return rc;
}

int bri_verify_backup(struct bri_store *s, const char *name, const struct bri_op_ctx *ctx,
		      struct bri_verify_result *res, struct bri_err *err)
{
	struct bri_err merr = {0}, rerr = {0};
	struct bri_reader *r = NULL;
	struct bri_meta meta;
	bool meta_ok = false;
	char *text;
	size_t len;
	int rc, open_rc;

	rc = bri_store_check_name(name, strlen(name), err);
	if (rc < 0)
		return rc;
	rc = bri_store_check(s, err);
	if (rc < 0)
		return rc;
	if (!bri_store_has(s, name))
		return bri_err_set(err, -ENOENT, "no backup named %s in %s", name, s->dir);
	rc = bri_store_sidecar_read(s, name, BRI_SIDECAR_META, BRI_META_MAX_BYTES, &text, &len);
	if (rc == 0) {
		meta_ok = bri_meta_parse(text, len, &meta, &merr) == 0;
		free(text);
	} else if (bri_errno_is_resource(rc)) {
		memset(res, 0, sizeof(*res));
		no_verdict(res, rc, "reading the metadata");
		return bri_err_set(err, rc,
		                   "cannot verify %s now: reading its metadata in %s: %s (nothing "
		                   "was recorded; try again later)",
		                   name, s->dir, strerror(-rc));
	} else {
		bri_err_set(&merr, rc, "metadata %s", rc == -ENOENT ? "missing" : strerror(-rc));
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
	/* Through the store's descriptor: the folder checked is the folder recorded into. */
	open_rc = bri_store_open_reader(s, name, &r, &rerr);
	rc = verify_reader(r, open_rc, rerr.msg, &meta, merr.msg, ctx, res);
	bri_reader_close(r);
	if (rc == -ECANCELED) {
		bri_err_set(err, rc,
		            "the verification of %s was stopped before it finished; nothing was "
		            "recorded",
		            name);
		goto out_audit;
	}
	if (rc < 0) {
		bri_err_set(err, rc,
		            "cannot verify %s now: %s (a shortage of this machine, not a fault "
		            "of the backup; nothing was recorded, try again later)",
		            name, strerror(-rc));
		goto out_audit;
	}
	rc = persist(s, name, res, err);
out_audit:
	/* A verification that recorded nothing is audited with its error. */
	if (rc < 0)
		bri_audit_record(s, "verify", name, rc, err ? err->msg : strerror(-rc),
		                 res->duration_s, ctx);
	else
		bri_audit_record(s, "verify", name, res->status == BRI_VERIFY_OK ? 0 : -EIO,
		                 res->status == BRI_VERIFY_OK ? NULL : res->reason, res->duration_s,
		                 ctx);
	if (meta_ok)
		bri_meta_free(&meta);
	return rc;
}

int bri_verify_load(const struct bri_store *s, const char *name, struct bri_verify_result *res)
{
	struct stat st;
	char *text;
	size_t len;

	memset(res, 0, sizeof(*res));
	if (bri_store_sidecar_read(s, name, BRI_SIDECAR_VERIFY, VERIFY_FILE_MAX, &text, &len) < 0)
		return 0;
	if (bri_verify_from_json(text, len, res) < 0)
		memset(res, 0, sizeof(*res));
	free(text);
	/* A result counts only for the file it checked. */
	if (res->status != BRI_VERIFY_UNVERIFIED &&
	    (bri_store_stat(s, name, &st) < 0 || !bri_verify_matches(res, &st)))
		memset(res, 0, sizeof(*res));
	return 0;
}

static json_object *tristate(int v)
{
	return v < 0 ? NULL : json_object_new_boolean(v);
}

static json_object *string_or_null(const char *s)
{
	return s && s[0] ? json_object_new_string(s) : NULL;
}

/*
 * The keys of a verification result that every rendering shares (the CLI's
 * --json, the Python module, the persisted sidecar): status, reason,
 * checked_at, check, checksum_ok, integrity_ok, counts_ok, duration_s.
 */
static void add_result(json_object *o, const struct bri_verify_result *res)
{
	json_object_object_add(o, "status", json_object_new_string(bri_verify_status_name(res->status)));
	json_object_object_add(o, "reason", json_object_new_string(res->reason));
	json_object_object_add(o, "checked_at",
	                       res->checked ? string_or_null(res->checked_at) : NULL);
	json_object_object_add(o, "check", string_or_null(res->check));
	json_object_object_add(o, "checksum_ok", tristate(res->checksum_ok));
	json_object_object_add(o, "integrity_ok", tristate(res->integrity_ok));
	json_object_object_add(o, "counts_ok", tristate(res->counts_ok));
	json_object_object_add(o, "duration_s", bri_json_double(res->duration_s, 3));
}

int bri_verify_to_json(const struct bri_verify_result *res, char **out, size_t *len)
{
	json_object *o = json_object_new_object();

	if (!o)
		return -ENOMEM;
	add_result(o, res);
	json_object_object_add(o, "checked_epoch", json_object_new_int64(res->checked));
	/* The reason under its older name too: SPEC.md's NAME.db.verify, older readers. */
	json_object_object_add(o, "detail", json_object_new_string(res->reason));
	if (res->file.known) {
		json_object *f = json_object_new_object();

		if (!f) {
			json_object_put(o);
			return -ENOMEM;
		}
		json_object_object_add(f, "dev", json_object_new_int64((int64_t)res->file.dev));
		json_object_object_add(f, "ino", json_object_new_int64((int64_t)res->file.ino));
		json_object_object_add(f, "size", json_object_new_int64(res->file.size));
		json_object_object_add(f, "mtime_ns", json_object_new_int64(res->file.mtime_ns));
		if (res->file.sha256[0])
			json_object_object_add(f, "sha256",
			                       json_object_new_string(res->file.sha256));
		json_object_object_add(o, "file", f);
	}
	return bri_json_emit(o, out, len);
}

int bri_verify_result_to_json(const char *name, const char *path,
                              const struct bri_verify_result *res, char **out, size_t *len)
{
	json_object *o = json_object_new_object();

	if (!o)
		return -ENOMEM;
	json_object_object_add(o, "name", string_or_null(name));
	json_object_object_add(o, "path", string_or_null(path));
	add_result(o, res);
	return bri_json_emit(o, out, len);
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
	    {"detail", json_type_string},       {"file", json_type_object},
	    {"reason", json_type_string},
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

/* The "file" object: known only when dev, ino, size and mtime_ns are integers. */
static void read_file_identity(json_object *o, struct bri_verify_file *f)
{
	const char *keys[] = {"dev", "ino", "size", "mtime_ns"};
	int64_t v[4];
	json_object *x;

	for (size_t i = 0; i < 4; i++) {
		if (!json_object_object_get_ex(o, keys[i], &x) ||
		    !json_object_is_type(x, json_type_int))
			return;
		v[i] = json_object_get_int64(x);
	}
	f->dev = (uint64_t)v[0];
	f->ino = (uint64_t)v[1];
	f->size = v[2];
	f->mtime_ns = v[3];
	f->known = true;
	if (json_object_object_get_ex(o, "sha256", &x) &&
	    json_object_is_type(x, json_type_string) &&
	    strlen(json_object_get_string(x)) == BRI_CHECKSUM_HEX_LEN)
		snprintf(f->sha256, sizeof(f->sha256), "%s", json_object_get_string(x));
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
	/* "reason" as every rendering names it; "detail" as results recorded before did. */
	if ((json_object_object_get_ex(o, "reason", &v) &&
	     json_object_is_type(v, json_type_string)) ||
	    (json_object_object_get_ex(o, "detail", &v) &&
	     json_object_is_type(v, json_type_string)))
		snprintf(r.reason, sizeof(r.reason), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(o, "file", &v) && json_object_is_type(v, json_type_object))
		read_file_identity(v, &r.file);
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
