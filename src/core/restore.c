/*
 * Restoring a backup into the live database: resolve what to restore, verify
 * it, take the live database's write lock, take a safety backup of the live
 * database under that lock (so every commit acknowledged before the restore
 * is in it), copy the backup in through SQLite's backup API (one transaction
 * on the live file) and quick_check it. The store's lock is held throughout,
 * so no create or cleanup interleaves.
 */
#include "bri/restore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bri/audit.h"
#include "bri/catalog.h"
#include "bri/cleanup.h"
#include "bri/create.h"
#include "bri/log.h"
#include "bri/reports.h"
#include "bri/snapshot.h"
#include "bri/target.h"
#include "bri/testpoint.h"

/* What is restored: the file, and its metadata when there is some. */
struct source {
	char *path;               /* a file outside the store, else NULL */
	struct bri_reader *reader; /* the backup, open: what is verified and copied in */
	char *store_name;         /* the backup's name when it is in the store */
	bool meta_ok;             /* meta is valid */
	struct bri_meta meta;     /* its metadata */
	char meta_error[512];     /* why there is none */
};

/* The metadata of the store's backup name into meta; false and why in why when there is none. */
static bool load_store_meta(struct bri_store *s, const char *name, struct bri_meta *meta,
                            char *why, size_t why_size)
{
	struct bri_err e = {0};
	char *text = NULL;
	size_t len = 0;
	int rc;

	rc = bri_store_sidecar_read(s, name, BRI_SIDECAR_META, BRI_META_MAX_BYTES, &text, &len);
	if (rc < 0) {
		snprintf(why, why_size, "metadata of %s: %s", name,
		         rc == -ENOENT ? "missing" : strerror(-rc));
		return false;
	}
	rc = bri_meta_parse(text, len, meta, &e);
	free(text);
	if (rc != 0) {
		snprintf(why, why_size, "%s", e.msg);
		return false;
	}
	return true;
}

/* Resolves what (bri_target_resolve) and loads the metadata of a file outside the store. */
static int resolve(struct bri_store *s, const char *what, struct source *src, struct bri_err *err)
{
	struct bri_target t;
	char *name;
	int rc;

	rc = bri_target_resolve(s, NULL, what, 0, &t, err);
	if (rc < 0)
		return rc;
	if (t.kind == BRI_TARGET_FILE) {
		src->path = t.path;
		t.path = NULL;
		src->meta_ok = bri_target_load_meta(&t, &src->meta, src->meta_error,
						    sizeof(src->meta_error)) == 0;
		bri_target_free(&t);
		return bri_reader_open_path(src->path, &src->reader, err);
	}
	name = strdup(t.name);
	bri_target_free(&t);
	if (!name)
		return bri_err_set(err, -ENOMEM, "out of memory");
	src->meta_ok = load_store_meta(s, name, &src->meta, src->meta_error, sizeof(src->meta_error));
	/* Read through the store's descriptor: the folder verified is the folder copied. */
	rc = bri_store_open_reader(s, name, &src->reader, err);
	src->store_name = name; /* also on failure: free_source frees it */
	return rc;
}

static void free_source(struct source *src)
{
	bri_reader_close(src->reader);
	free(src->path);
	free(src->store_name);
	if (src->meta_ok)
		bri_meta_free(&src->meta);
}

/* Verifies the source; for a backup of the store, the result is persisted. */
static int verify_source(struct bri_store *s, struct source *src, const struct bri_op_ctx *ctx,
			 struct bri_restore_report *r, struct bri_err *err)
{
	int rc;

	r->verified = true;
	if (src->store_name)
		rc = bri_verify_backup(s, src->store_name, ctx, &r->check, err);
	else
		rc = bri_verify_file(src->path, src->meta_ok ? &src->meta : NULL, src->meta_error,
				     ctx, &r->check);
	if (rc < 0)
		return rc;
	/* What was verified is what is copied in. */
	if (r->check.file.known && !bri_verify_matches(&r->check, &src->reader->st))
		return bri_err_set(err, -ESTALE,
		                   "backup %s was replaced while it was verified; nothing was "
		                   "changed (run the restore again)",
		                   src->store_name ? src->store_name : src->path);
	if (r->check.status != BRI_VERIFY_OK)
		return bri_err_set(err, -EIO,
				   "backup verification failed: %s; nothing was changed (restore "
				   "with --no-verify only if you know the backup is good)",
				   r->check.reason);
	return 0;
}

/* bri_create's fill for the safety backup: the live database under the restore's lock. */
static int save_safety(void *arg, const char *tmp_path, int fd, struct bri_snapshot_info *info,
		       struct bri_err *err)
{
	return bri_snapshot_restore_save(arg, tmp_path, fd, info, err);
}

static void finish_report(struct bri_restore_report *report, int rc, const struct bri_err *err,
			  double start)
{
	report->result = rc;
	report->duration_s = bri_now_mono() - start;
	snprintf(report->message, sizeof(report->message), "%s",
		 rc == 0 ? "restored" : err->msg);
}

/* Records the report of a restore of backup name (bri_reports_add); a failure is logged only. */
static void keep_report(struct bri_store *s, const char *name,
			const struct bri_restore_report *report)
{
	struct bri_err e = {0};
	char *text = NULL;
	size_t len;

	if (bri_restore_report_render(report, &text, &len) < 0 ||
	    bri_reports_add(s, name, report->started, text, &e) < 0)
		bri_log(BRI_LOG_WARN, "the report of the restore of %s was not kept: %s", name,
			e.msg[0] ? e.msg : "out of memory");
	free(text);
}

int bri_restore(struct bri_store *s, const char *what, const struct bri_restore_opts *opts,
		const struct bri_op_ctx *ctx, struct bri_restore_report *report, struct bri_err *err)
{
	struct bri_restore_opts o = *opts;
	struct bri_err local = {0};
	struct source src = {0};
	double start = bri_now_mono();
	struct bri_snapshot_restore *live = NULL;
	bool live_exists;
	char *scratch;
	struct stat st;
	int lockfd, rc;

	if (!err)
		err = &local;
	memset(report, 0, sizeof(*report));
	report->started = time(NULL);
	snprintf(report->source, sizeof(report->source), "%s", what && *what ? what : "(newest)");
	if (!o.busy_timeout_ms)
		o.busy_timeout_ms = bri_default_busy_timeout_ms();

	lockfd = bri_store_lock(s, err);
	if (lockfd < 0) {
		rc = lockfd;
		goto out_report;
	}
	rc = bri_store_check(s, err);
	if (rc == 0)
		rc = resolve(s, what, &src, err);
	if (rc < 0)
		goto out_unlock;
	snprintf(report->source, sizeof(report->source), "%s",
		 src.store_name ? src.store_name : src.path);
	if (o.verify) {
		rc = verify_source(s, &src, ctx, report, err);
		if (rc < 0)
			goto out_unlock;
	}
	bri_testpoint("restore_verified");
	live_exists = stat(s->db_path, &st) == 0;
	/* From here the live database's write lock is held: no commit can fall
	 * between the safety backup and the restore. */
	/* An encrypted store keeps nothing in the clear, not even for a moment: its
	 * scratch copy (a page size rebuilt) goes beside the live database. */
	scratch = s->seal ? strndup(s->db_path, (size_t)(strrchr(s->db_path, '/') - s->db_path))
			  : bri_store_fd_path(s, NULL, NULL);
	rc = scratch ? bri_snapshot_restore_begin_reader(src.reader, s->db_path, scratch,
							 o.busy_timeout_ms, &live, err)
		     : bri_err_set(err, -ENOMEM, "out of memory");
	free(scratch);
	if (rc < 0)
		goto out_unlock;
	if (live_exists) {
		struct bri_create_opts co = {
			.kind = BRI_KIND_SAFETY,
			.busy_timeout_ms = o.busy_timeout_ms,
			.lock_held = true,
			.fill = save_safety,
			.fill_arg = live,
		};
		char *safety = NULL;

		rc = bri_create(s, &co, ctx, &safety, err);
		if (rc < 0) {
			bri_err_wrap(err, rc, "cannot take the safety backup, so nothing was "
				     "restored");
			goto out_end_restore;
		}
		snprintf(report->safety_name, sizeof(report->safety_name), "%s", safety);
		free(safety);
	}
	bri_testpoint("restore_after_safety");
	if (ctx && ctx->progress)
		ctx->progress(ctx->progress_arg, "restore", 0, 0);
	rc = bri_snapshot_restore_commit(live, err);
	if (rc < 0 && rc != -EBADMSG && report->safety_name[0]) {
		/* The live database is unchanged: its copy is not needed. */
		bri_delete_locked(s, report->safety_name, ctx, NULL);
		report->safety_name[0] = '\0';
	}
out_end_restore:
	bri_snapshot_restore_end(live);
out_unlock:
	if (src.store_name) {
		/* Kept in the store for the mount's restore/NAME.report, under the lock. */
		finish_report(report, rc, err, start);
		keep_report(s, src.store_name, report);
	}
	bri_store_unlock(lockfd);
out_report:
	finish_report(report, rc, err, start);
	bri_audit_record(s, "restore", report->source, rc,
			 rc == 0 ? (report->safety_name[0] ? report->safety_name : NULL)
				 : report->message,
			 report->duration_s, ctx);
	free_source(&src);
	return rc;
}

int bri_restore_report_render(const struct bri_restore_report *r, char **out, size_t *len)
{
	char started[40], verify[600];
	int n;

	bri_time_local(r->started, started, sizeof(started));
	if (!r->verified)
		snprintf(verify, sizeof(verify), "skipped");
	else if (r->check.status == BRI_VERIFY_OK)
		snprintf(verify, sizeof(verify), "ok");
	else
		snprintf(verify, sizeof(verify), "failed: %s", r->check.reason);
	n = asprintf(out,
		     "result: %s\nbackup: %s\nstarted: %s\nverification: %s\nsafety_backup: %s\n"
		     "duration_s: %.3f\nmessage: %s\n",
		     r->result == 0 ? "ok" : "failed", r->source, started, verify,
		     r->safety_name[0] ? r->safety_name : "none", r->duration_s, r->message);
	if (n < 0)
		return -ENOMEM;
	*len = (size_t)n;
	return 0;
}
