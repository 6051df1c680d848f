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
#include "bri/snapshot.h"
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

/*
 * The metadata of a .db outside the store: "PATH.meta" (a copy of the store),
 * else "meta.json" beside it (a copy of the mount's view).
 */
static char *find_meta_file(const char *path)
{
	char *meta_path, *slash;

	if (asprintf(&meta_path, "%s.meta", path) < 0)
		return NULL;
	if (access(meta_path, F_OK) == 0)
		return meta_path;
	free(meta_path);
	slash = strrchr(path, '/');
	if (asprintf(&meta_path, "%.*smeta.json", slash ? (int)(slash - path + 1) : 0, path) < 0)
		return NULL;
	if (access(meta_path, F_OK) == 0)
		return meta_path;
	free(meta_path);
	if (asprintf(&meta_path, "%s.meta", path) < 0)
		return NULL;
	return meta_path;
}

static void load_meta_file(const char *path, struct source *src)
{
	struct bri_err e = {0};
	char *meta_path, *text = NULL;
	size_t len = 0;
	FILE *f;

	meta_path = find_meta_file(path);
	if (!meta_path)
		return;
	f = fopen(meta_path, "re");
	if (!f) {
		snprintf(src->meta_error, sizeof(src->meta_error), "%s: %s", meta_path,
			 strerror(errno));
		goto out_free;
	}
	text = malloc(BRI_META_MAX_BYTES + 1);
	if (text)
		len = fread(text, 1, BRI_META_MAX_BYTES + 1, f);
	fclose(f);
	if (!text || len > BRI_META_MAX_BYTES) {
		snprintf(src->meta_error, sizeof(src->meta_error), "%s: too large", meta_path);
		goto out_free;
	}
	src->meta_ok = bri_meta_parse(text, len, &src->meta, &e) == 0;
	if (!src->meta_ok)
		snprintf(src->meta_error, sizeof(src->meta_error), "%s", e.msg);
out_free:
	free(text);
	free(meta_path);
}

/* The metadata of the store's backup src->store_name. */
static void load_store_meta(struct bri_store *s, struct source *src)
{
	struct bri_err e = {0};
	char *text = NULL;
	size_t len = 0;
	int rc;

	rc = bri_store_sidecar_read(s, src->store_name, BRI_SIDECAR_META, BRI_META_MAX_BYTES, &text,
	                            &len);
	if (rc < 0) {
		snprintf(src->meta_error, sizeof(src->meta_error), "metadata of %s: %s",
		         src->store_name, rc == -ENOENT ? "missing" : strerror(-rc));
		return;
	}
	src->meta_ok = bri_meta_parse(text, len, &src->meta, &e) == 0;
	if (!src->meta_ok)
		snprintf(src->meta_error, sizeof(src->meta_error), "%s", e.msg);
	free(text);
}

static bool looks_like_path(const char *what)
{
	size_t n = strlen(what);

	return strchr(what, '/') || (n > 3 && strcmp(what + n - 3, ".db") == 0);
}

static int resolve(struct bri_store *s, const char *what, struct source *src, struct bri_err *err)
{
	struct bri_catalog *cat = NULL;
	struct stat st;
	int rc;

	if (!what || !*what) {
		struct bri_entry *newest;

		rc = bri_catalog_scan(s, NULL, &cat, err);
		if (rc < 0)
			return rc;
		newest = bri_catalog_newest(cat);
		if (!newest) {
			bri_catalog_free(cat);
			return bri_err_set(err, -ENOENT, "there are no backups in %s to restore",
					   s->dir);
		}
		src->store_name = strdup(newest->name);
		bri_catalog_free(cat);
		if (!src->store_name)
			return bri_err_set(err, -ENOMEM, "out of memory");
	} else if (bri_store_check_name(what, strlen(what), NULL) == 0 && bri_store_has(s, what)) {
		src->store_name = strdup(what);
		if (!src->store_name)
			return bri_err_set(err, -ENOMEM, "out of memory");
	} else if (looks_like_path(what)) {
		if (stat(what, &st) < 0)
			return bri_err_set(err, -errno, "cannot restore %s: %s", what,
					   strerror(errno));
		if (!S_ISREG(st.st_mode))
			return bri_err_set(err, -EINVAL, "cannot restore %s: not a regular file",
					   what);
		if (bri_store_is_live(s, &st))
			return bri_err_set(err, -EINVAL,
					   "cannot restore %s: it is the live database itself", what);
		src->path = realpath(what, NULL);
		if (!src->path)
			return bri_err_set(err, -errno, "cannot restore %s: %s", what,
					   strerror(errno));
		load_meta_file(src->path, src);
		return bri_reader_open_path(src->path, &src->reader, err);
	} else {
		return bri_err_set(err, -ENOENT,
				   "no backup named %s in %s (bri-backup list shows them)", what,
				   s->dir);
	}
	/* Read through the store's descriptor: the folder verified is the folder copied. */
	load_store_meta(s, src);
	return bri_store_open_reader(s, src->store_name, &src->reader, err);
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
	scratch = bri_store_fd_path(s, NULL, NULL);
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
	bri_store_unlock(lockfd);
out_report:
	report->result = rc;
	report->duration_s = bri_now_mono() - start;
	snprintf(report->message, sizeof(report->message), "%s",
		 rc == 0 ? "restored" : err->msg);
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
