/*
 * Restore rehearsal (include/bri/rehearse.h): verify, bri_snapshot_restore
 * into <mkdtemp folder>/<db file name> (the restore's own copy path, with
 * its quick_check), the user's checks on that copy, then the folder goes.
 */
#include "bri/rehearse.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bri/audit.h"
#include "bri/create.h"
#include "bri/log.h"
#include "bri/rehearsal.h"
#include "bri/snapshot.h"
#include "bri/testpoint.h"

/* Reads the checks file into checks; 0 or -EINVAL / -errno with err. */
static int load_checks(const char *path, char **text_out, struct bri_err *err)
{
	FILE *f = fopen(path, "re");
	char *text;
	size_t len;

	if (!f)
		return bri_err_set(err, -errno, "cannot read the checks file %s: %s", path,
		                   strerror(errno));
	text = malloc(BRI_REHEARSE_CHECKS_MAX_BYTES + 1);
	if (!text) {
		fclose(f);
		return bri_err_set(err, -ENOMEM, "out of memory");
	}
	len = fread(text, 1, BRI_REHEARSE_CHECKS_MAX_BYTES + 1, f);
	fclose(f);
	if (len > BRI_REHEARSE_CHECKS_MAX_BYTES) {
		free(text);
		return bri_err_set(err, -EFBIG, "the checks file %s is larger than %d bytes", path,
		                   BRI_REHEARSE_CHECKS_MAX_BYTES);
	}
	text[len] = '\0';
	*text_out = text;
	return 0;
}

/* After a statement's end: "-- expect VALUE" on the rest of its line, else "". */
static const char *parse_expect(const char *tail, char *expect, size_t size)
{
	const char *p = tail, *eol;

	expect[0] = '\0';
	while (*p == ' ' || *p == '\t')
		p++;
	eol = strchr(p, '\n');
	if (!eol)
		eol = p + strlen(p);
	if (!strncmp(p, "--", 2)) {
		const char *q = p + 2;

		while (*q == ' ' || *q == '\t')
			q++;
		if (!strncmp(q, "expect", 6) && (q[6] == ' ' || q[6] == '\t')) {
			q += 7;
			while (*q == ' ' || *q == '\t')
				q++;
			size_t n = (size_t)(eol - q);
			while (n && (q[n - 1] == ' ' || q[n - 1] == '\t' || q[n - 1] == '\r'))
				n--;
			snprintf(expect, size, "%.*s", (int)n, q);
		}
		return *eol ? eol + 1 : eol;
	}
	return tail;
}

static int run_checks(sqlite3 *db, const char *text, struct bri_rehearse_report *r,
                      struct bri_err *err)
{
	const char *sql = text;

	while (*sql) {
		struct bri_rehearse_check *c;
		sqlite3_stmt *st = NULL;
		const char *tail = NULL;
		double start;
		int rc;

		/* Blanks and whole-line comments before a statement are not part of it. */
		for (;;) {
			sql += strspn(sql, " \t\r\n");
			if (strncmp(sql, "--", 2))
				break;
			sql += strcspn(sql, "\n");
		}
		if (!*sql)
			break;
		rc = sqlite3_prepare_v2(db, sql, -1, &st, &tail);
		if (rc == SQLITE_OK && !st) /* only comments or blanks left */
			break;
		if (r->nchecks == BRI_REHEARSE_CHECKS_MAX) {
			sqlite3_finalize(st);
			return bri_err_set(err, -E2BIG, "more than %d checks",
			                   BRI_REHEARSE_CHECKS_MAX);
		}
		c = &r->checks[r->nchecks++];
		memset(c, 0, sizeof(*c));
		if (rc != SQLITE_OK) {
			snprintf(c->sql, sizeof(c->sql), "%.*s", (int)strcspn(sql, ";\n"), sql);
			snprintf(c->error, sizeof(c->error), "%s", sqlite3_errmsg(db));
			r->failed++;
			/* A statement that does not parse: skip to after its ';'. */
			const char *semi = strchr(sql, ';');
			sql = semi ? parse_expect(semi + 1, c->expect, sizeof(c->expect))
			           : sql + strlen(sql);
			continue;
		}
		snprintf(c->sql, sizeof(c->sql), "%s", sqlite3_sql(st));
		sql = parse_expect(tail, c->expect, sizeof(c->expect));
		start = bri_now_mono();
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			const unsigned char *v = sqlite3_column_text(st, 0);

			snprintf(c->got, sizeof(c->got), "%s", v ? (const char *)v : "NULL");
		} else if (rc == SQLITE_DONE) {
			snprintf(c->got, sizeof(c->got), "NULL");
		} else {
			snprintf(c->error, sizeof(c->error), "%s", sqlite3_errmsg(db));
		}
		/* read-only connection: a statement that writes fails here */
		while (rc == SQLITE_ROW)
			rc = sqlite3_step(st);
		if (rc != SQLITE_DONE && !c->error[0])
			snprintf(c->error, sizeof(c->error), "%s", sqlite3_errmsg(db));
		c->duration_s = bri_now_mono() - start;
		sqlite3_finalize(st);
		c->ok = !c->error[0] && (!c->expect[0] || !strcmp(c->expect, c->got));
		if (!c->ok)
			r->failed++;
	}
	return 0;
}

static void remove_scratch(const char *dir, const char *file)
{
	const char *suffixes[] = {"", "-journal", "-wal", "-shm"};
	char path[4096];

	for (size_t i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s/%s%s", dir, file, suffixes[i]);
		unlink(path);
	}
	rmdir(dir);
}

/*
 * Keeps the outcome in the store (bri/rehearsal.h) for list, health, metrics
 * and the mount. A lack of resources (memory, descriptors, the store's lock
 * held too long) or a stop (ctx's) says nothing of the backup and is not kept.
 */
static void record(struct bri_store *s, const char *name, const struct bri_rehearse_report *r,
                   int rc, time_t began)
{
	struct bri_rehearsal st = {.time = began,
	                           .ok = rc == 0,
	                           .verify_s = r->verify_s,
	                           .restore_s = r->restore_s,
	                           .checks = r->nchecks,
	                           .checks_failed = r->failed};
	struct bri_err err = {0};

	if (rc < 0 && (bri_errno_is_resource(rc) || rc == -ECANCELED))
		return;
	if (rc < 0)
		snprintf(st.reason, sizeof(st.reason), "%.*s", BRI_REHEARSAL_REASON_MAX,
		         r->message);
	if (bri_rehearsal_record(s, name, &st, &err) < 0)
		bri_log(BRI_LOG_WARN, "rehearsal of %s: its outcome was not kept: %s", name,
		        err.msg);
}

int bri_rehearse(struct bri_store *s, const char *name, const char *checks_path,
                 const char *scratch_parent, const struct bri_op_ctx *ctx,
                 struct bri_rehearse_report *r, struct bri_err *err)
{
	char dir[4096], copy[4096 + 256], detail[256];
	struct bri_snapshot_restore *live = NULL;
	struct bri_reader *reader = NULL;
	char *text = NULL;
	struct bri_err local = {0};
	sqlite3 *db = NULL;
	double start, total = bri_now_mono();
	time_t began = bri_testpoint_now();
	int rc;

	if (!err)
		err = &local;
	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	dir[0] = '\0';
	if (checks_path) {
		rc = load_checks(checks_path, &text, err);
		if (rc < 0)
			goto out_report;
	}
	r->checks = calloc(BRI_REHEARSE_CHECKS_MAX, sizeof(*r->checks));
	if (!r->checks) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_report;
	}
	start = bri_now_mono();
	rc = bri_verify_backup(s, name, ctx, &r->verify, err);
	r->verify_s = bri_now_mono() - start;
	if (rc < 0)
		goto out_report;
	if (r->verify.status != BRI_VERIFY_OK) {
		rc =
		    bri_err_set(err, -EIO, "verification of %s failed: %s", name, r->verify.reason);
		goto out_report;
	}
	if (bri_op_stopped(ctx)) {
		rc = bri_err_set(err, -ECANCELED,
		                 "the rehearsal of %s was stopped after its verification; nothing "
		                 "was restored",
		                 name);
		goto out_report;
	}
	if (!scratch_parent) {
		const char *tmpdir = getenv("TMPDIR"); /* read once: the value tested is the one used */

		scratch_parent = tmpdir && *tmpdir ? tmpdir : "/tmp";
	}
	snprintf(dir, sizeof(dir), "%s/bri-rehearse-XXXXXX", scratch_parent);
	if (!mkdtemp(dir)) {
		rc = bri_err_set(err, -errno, "cannot make a scratch folder in %s: %s",
		                 scratch_parent, strerror(errno));
		dir[0] = '\0';
		goto out_report;
	}
	snprintf(copy, sizeof(copy), "%s/%s", dir, s->db_filename);
	/* The restore's own path: the store's reader, the SQLite copy, quick_check. */
	rc = bri_store_open_reader(s, name, &reader, err);
	if (rc < 0)
		goto out_scratch;
	if (ctx && ctx->progress)
		ctx->progress(ctx->progress_arg, "restore", 0, 0);
	start = bri_now_mono();
	rc = bri_snapshot_restore_begin_reader(reader, copy, dir, bri_default_busy_timeout_ms(),
	                                       &live, err);
	if (rc == 0)
		rc = bri_snapshot_restore_commit(live, err);
	bri_snapshot_restore_end(live);
	r->restore_s = bri_now_mono() - start;
	if (rc < 0) {
		bri_err_wrap(err, rc, "restore of %s into the scratch copy failed", name);
		goto out_scratch;
	}
	r->restored = true;
	if (text && bri_op_stopped(ctx)) {
		rc = bri_err_set(err, -ECANCELED,
		                 "the rehearsal of %s was stopped before its checks ran", name);
		goto out_scratch;
	}
	if (text) {
		if (sqlite3_open_v2(copy, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOFOLLOW, NULL) !=
		    SQLITE_OK) {
			rc = bri_err_set(err, -EIO, "cannot open the scratch copy: %s",
			                 db ? sqlite3_errmsg(db) : "out of memory");
			goto out_close;
		}
		rc = run_checks(db, text, r, err);
		if (rc < 0)
			goto out_close;
		if (r->failed)
			rc = bri_err_set(err, -EIO, "%zu of %zu checks failed", r->failed,
			                 r->nchecks);
	}
out_close:
	sqlite3_close(db);
out_scratch:
	remove_scratch(dir, s->db_filename);
out_report:
	if (reader)
		bri_reader_close(reader);
	free(text);
	snprintf(r->message, sizeof(r->message), "%s", rc == 0 ? "ok" : err->msg);
	snprintf(detail, sizeof(detail), "restore %.1f s, %zu checks, %zu failed", r->restore_s,
	         r->nchecks, r->failed);
	bri_audit_record(s, "rehearse", name, rc, rc == 0 ? detail : err->msg,
	                 bri_now_mono() - total, ctx);
	record(s, name, r, rc, began);
	return rc;
}

void bri_rehearse_report_free(struct bri_rehearse_report *r)
{
	free(r->checks);
	r->checks = NULL;
}
