/*
 * The restore/ drop folder: `mv MOUNTPOINT/X MOUNTPOINT/restore/` (a rename
 * from the root into restore/ under the same name) runs the core's
 * safety-backed restore of X and replies with its result. Each restore
 * leaves restore/X.report (bri_restore_report_render); restore/ never holds
 * a directory, so the same mv works again. After the rename the kernel has
 * moved X's dentry into restore/: the notify worker invalidates both names
 * once the reply is sent (never from inside this handler).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bri/log.h"
#include "fs.h"

#define REPORT_SUFFIX ".report"
#define REPORTS_MAX   256

int bfs_restore_lookup(struct bfs *fs, const char *name, struct fuse_entry_param *e)
{
	size_t len = strlen(name), slen = strlen(REPORT_SUFFIX);
	uint64_t id = 0;
	bool found = false;

	if (len <= slen || strcmp(name + len - slen, REPORT_SUFFIX))
		return -ENOENT;
	pthread_rwlock_rdlock(&fs->cat_lock);
	for (size_t i = 0; i < fs->nreports; i++) {
		if (strlen(fs->reports[i].name) == len - slen &&
		    !memcmp(fs->reports[i].name, name, len - slen)) {
			id = fs->reports[i].id;
			found = true;
		}
	}
	pthread_rwlock_unlock(&fs->cat_lock);
	if (!found)
		return -ENOENT;
	return bfs_getattr_ino(fs, bfs_ino_fixed(id, BFS_K_REPORT), e);
}

/* Keeps the report of a restore of name (id), replacing an older one. */
static void keep_report(struct bfs *fs, const char *name, uint64_t id, time_t when, char *text,
                        size_t len)
{
	struct bfs_report *r = NULL;

	pthread_rwlock_wrlock(&fs->cat_lock);
	for (size_t i = 0; i < fs->nreports; i++) {
		if (!strcmp(fs->reports[i].name, name)) {
			/* Move it to the end: reports are kept oldest first. */
			struct bfs_report old = fs->reports[i];

			memmove(&fs->reports[i], &fs->reports[i + 1],
			        (fs->nreports - i - 1) * sizeof(*fs->reports));
			fs->reports[fs->nreports - 1] = old;
			r = &fs->reports[fs->nreports - 1];
			free(r->text);
			break;
		}
	}
	if (!r && fs->nreports == REPORTS_MAX) {
		free(fs->reports[0].text);
		memmove(&fs->reports[0], &fs->reports[1], (REPORTS_MAX - 1) * sizeof(*fs->reports));
		fs->nreports--;
	}
	if (!r) {
		struct bfs_report *nr = realloc(fs->reports, (fs->nreports + 1) * sizeof(*nr));

		if (!nr) {
			pthread_rwlock_unlock(&fs->cat_lock);
			free(text);
			return;
		}
		fs->reports = nr;
		r = &fs->reports[fs->nreports++];
	}
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->id = id;
	r->time = when;
	r->text = text;
	r->len = len;
	pthread_rwlock_unlock(&fs->cat_lock);
}

int bfs_restore_run(struct bfs *fs, const char *name, const struct fuse_ctx *who, const char *via)
{
	struct bri_restore_opts opts = {.verify = true, .busy_timeout_ms = fs->busy_timeout_ms};
	struct bri_restore_report report;
	struct bri_op_ctx ctx = bri_op_ctx_self("mount");
	struct bri_err err = {0};
	const struct bri_entry *b;
	char *text = NULL;
	size_t len = 0;
	uint64_t id = 0;
	int rc;

	if (who) {
		ctx.uid = who->uid;
		ctx.pid = who->pid;
	}
	pthread_rwlock_rdlock(&fs->cat_lock);
	b = bri_catalog_find(fs->cat, name);
	if (b)
		id = b->id;
	pthread_rwlock_unlock(&fs->cat_lock);
	if (!b) {
		bri_log(BRI_LOG_ERR, "restore %s refused: no such backup", name);
		return -ENOENT;
	}
	memset(&report, 0, sizeof(report));
	rc = bfs_op_lock(fs);
	if (rc < 0)
		return rc;
	bfs_progress_begin(&fs->progress, &ctx, "restore", name, via);
	rc = bri_restore(fs->store, name, &opts, &ctx, &report, &err);
	bfs_progress_end(&fs->progress, NULL, rc, err.msg);
	if (bri_restore_report_render(&report, &text, &len) == 0)
		keep_report(fs, name, id, report.started ? report.started : time(NULL), text, len);
	bfs_refresh(fs, true);
	bfs_op_unlock(fs);
	if (rc < 0)
		bri_log(BRI_LOG_ERR, "restore %s failed: %s", name,
		        err.msg[0] ? err.msg : strerror(-rc));
	else
		bri_log(BRI_LOG_INFO, "restore %s: restored (safety backup %s)", name,
		        report.safety_name);
	return rc;
}

void bfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                const char *newname, unsigned int flags)
{
	struct bfs *fs = bfs_of(req);
	int rc;

	if (newparent != BFS_INO_RESTORE) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (flags & ~RENAME_NOREPLACE) {
		fuse_reply_err(req, EINVAL); /* RENAME_EXCHANGE, RENAME_WHITEOUT */
		return;
	}
	if (parent != BFS_INO_ROOT || strcmp(name, newname)) {
		bri_log(BRI_LOG_ERR, "restore/: only `mv MOUNTPOINT/NAME MOUNTPOINT/restore/` "
		                     "restores a backup");
		fuse_reply_err(req, EPERM);
		return;
	}
	rc = bfs_restore_run(fs, name, fuse_req_ctx(req), "restore/");
	fuse_reply_err(req, -rc);
	/* After the reply: the kernel moved X's dentry into restore/. */
	bfs_inval_entry(fs, BFS_INO_RESTORE, name);
	bfs_inval_entry(fs, BFS_INO_ROOT, name);
}

void bfs_reports_free(struct bfs *fs)
{
	for (size_t i = 0; i < fs->nreports; i++)
		free(fs->reports[i].text);
	free(fs->reports);
	fs->reports = NULL;
	fs->nreports = 0;
}
