/*
 * The restore/ drop folder: `mv MOUNTPOINT/X MOUNTPOINT/restore/` (a rename
 * from the root into restore/ under the same name) runs the core's
 * safety-backed restore of X and replies with its result; X may be latest
 * (the newest backup, resolved by the core). Each restore leaves
 * restore/NAME.report: the core keeps the newest BRI_REPORTS_MAX reports in
 * the store, so they outlive a remount and include restores by bri-backup.
 * restore/ never holds a directory, so the same mv works again. After the rename the kernel has
 * moved X's dentry into restore/: the notify worker invalidates both names
 * once the reply is sent (never from inside this handler).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bri/log.h"
#include "bri/reports.h"
#include "bri/target.h"
#include "bri/testpoint.h"
#include "fs.h"

#define REPORT_SUFFIX ".report"

/*
 * Follows the store's restore reports (bri_reports_load) when the file
 * changed: a restore by this daemon, by bri-backup, or before a remount.
 * A report keeps its inode while its (name, time) stays.
 */
void bfs_reports_sync(struct bfs *fs)
{
	struct bri_report_rec *recs = NULL;
	struct bfs_report *nr;
	struct stat st;
	size_t n = 0;

	if (fstatat(fs->store->dirfd, BRI_REPORTS_FILE, &st, AT_SYMLINK_NOFOLLOW) < 0)
		memset(&st, 0, sizeof(st));
	pthread_rwlock_rdlock(&fs->cat_lock);
	bool same = st.st_ino == fs->reports_st.st_ino && st.st_size == fs->reports_st.st_size &&
	            st.st_mtim.tv_sec == fs->reports_st.st_mtim.tv_sec &&
	            st.st_mtim.tv_nsec == fs->reports_st.st_mtim.tv_nsec && fs->reports_loaded;
	pthread_rwlock_unlock(&fs->cat_lock);
	if (same)
		return;
	if (st.st_ino && bri_reports_load(fs->store, &recs, &n) < 0)
		return; /* unreadable now: keep what is shown */
	nr = calloc(n + 1, sizeof(*nr));
	if (!nr) {
		bri_reports_free(recs, n);
		return;
	}
	pthread_rwlock_wrlock(&fs->cat_lock);
	for (size_t i = 0; i < n; i++) {
		uint64_t id = 0;

		for (size_t k = 0; k < fs->nreports && !id; k++)
			if (!strcmp(fs->reports[k].name, recs[i].name) &&
			    fs->reports[k].time == recs[i].time)
				id = fs->reports[k].id;
		snprintf(nr[i].name, sizeof(nr[i].name), "%s", recs[i].name);
		nr[i].id = id ? id : ++fs->report_ids;
		nr[i].time = recs[i].time;
		nr[i].text = recs[i].text;
		nr[i].len = recs[i].len;
		recs[i].text = NULL;
	}
	bfs_reports_free(fs);
	fs->reports = nr;
	fs->nreports = n;
	fs->reports_st = st;
	fs->reports_loaded = true;
	pthread_rwlock_unlock(&fs->cat_lock);
	bri_reports_free(recs, n);
}

int bfs_restore_lookup(struct bfs *fs, const char *name, struct fuse_entry_param *e)
{
	size_t len = strlen(name), slen = strlen(REPORT_SUFFIX);
	uint64_t id = 0;
	bool found = false;

	if (len <= slen || strcmp(name + len - slen, REPORT_SUFFIX))
		return -ENOENT;
	bfs_reports_sync(fs);
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
	return bfs_getattr_ino(fs, bfs_ino_report(id), e);
}

int bfs_restore_run(struct bfs *fs, const char *what, const struct bri_op_ctx *who, const char *via)
{
	struct bri_restore_opts opts = {.verify = true, .busy_timeout_ms = fs->busy_timeout_ms};
	struct bri_restore_report report;
	struct bri_op_ctx ctx = *who;
	struct bri_err err = {0};
	struct bri_target t;
	char name[BRI_NAME_MAX + 1];
	int rc;

	/* A name or latest, decided by the core over the daemon's catalog. */
	pthread_rwlock_rdlock(&fs->cat_lock);
	rc = bri_target_resolve(fs->store, fs->cat, what, BRI_TARGET_NAMES_ONLY, &t, &err);
	if (rc == 0 && !bri_catalog_find(fs->cat, t.name))
		rc = bri_err_set(&err, -ENOENT, "no such backup");
	pthread_rwlock_unlock(&fs->cat_lock);
	if (rc < 0) {
		bri_log(BRI_LOG_ERR, "restore %s refused: %s", what, err.msg);
		bfs_hook_async(fs, "restore", what, rc, err.msg);
		return rc;
	}
	snprintf(name, sizeof(name), "%s", t.name);
	bri_target_free(&t);
	memset(&report, 0, sizeof(report));
	rc = bfs_op_lock(fs);
	if (rc < 0) {
		bfs_hook_async(fs, "restore", name, rc, strerror(-rc));
		return rc;
	}
	bfs_progress_begin(&fs->progress, &ctx, "restore", name, via);
	rc = bri_restore(fs->store, name, &opts, &ctx, &report, &err);
	bfs_progress_end(&fs->progress, NULL, rc, err.msg);
	bfs_refresh(fs, true);
	bfs_op_unlock(fs);
	bfs_reports_sync(fs); /* the core kept the report in the store */
	/* Both ways in (mv into restore/, ctl/restore); the name, not "latest". */
	bfs_hook_async(fs, "restore", name, rc,
	               rc < 0 ? (err.msg[0] ? err.msg : strerror(-rc)) : NULL);
	if (rc < 0)
		bri_log(BRI_LOG_ERR, "restore %s%s%s failed: %s", what,
		        strcmp(what, name) ? " = " : "", strcmp(what, name) ? name : "",
		        err.msg[0] ? err.msg : strerror(-rc));
	else
		bri_log(BRI_LOG_INFO, "restore %s%s%s: restored (safety backup %s)", what,
		        strcmp(what, name) ? " = " : "", strcmp(what, name) ? name : "",
		        report.safety_name);
	return rc;
}

void bfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                const char *newname, unsigned int flags)
{
	bfs_count(req, BFS_REQ_RENAME);
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
	struct bri_op_ctx ctx = bfs_op_ctx(fuse_req_ctx(req));

	bfs_rename_begin(fs); /* the kernel holds the folders' locks until the reply */
	rc = bfs_restore_run(fs, name, &ctx, "restore/");
	bri_testpoint("restore_reply");
	fuse_reply_err(req, -rc);
	/* After the reply: the kernel moved X's dentry into restore/. */
	bfs_inval_entry(fs, BFS_INO_RESTORE, name);
	bfs_inval_entry(fs, BFS_INO_ROOT, name);
	bfs_rename_end(fs);
}

void bfs_reports_free(struct bfs *fs)
{
	for (size_t i = 0; i < fs->nreports; i++)
		free(fs->reports[i].text);
	free(fs->reports);
	fs->reports = NULL;
	fs->nreports = 0;
}
