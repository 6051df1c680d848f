/*
 * The requests written to ctl/ files: create, verify, cleanup, delete and
 * restore. view.c buffers what a process writes (one line, capped) and calls
 * bfs_ctl_run when the line is complete (its newline arrived, or the file is
 * flushed); the result goes back to the writer as the errno of write or
 * close, and the reason to the log (ctl/log). Requests are serialised by
 * op_lock here and by the store's lock across processes; the catalog is
 * rescanned before the reply, so a success is visible at once.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bri/cleanup.h"
#include "bri/create.h"
#include "bri/log.h"
#include "bri/verify.h"
#include "fs.h"

/* A printable copy of a request for the log (control characters as '?'). */
static void printable(const char *in, size_t len, char *out, size_t cap)
{
	size_t n = len < cap - 1 ? len : cap - 1;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];

		out[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	out[n] = '\0';
}

static struct bri_op_ctx ctx_of(const struct fuse_ctx *who)
{
	struct bri_op_ctx ctx = bri_op_ctx_self("mount");

	if (who) {
		ctx.uid = who->uid;
		ctx.pid = who->pid;
	}
	return ctx;
}

/* Refuses anything that is not one valid backup name. */
static int check_name(const char *line, size_t len, struct bri_err *err)
{
	if (memchr(line, '\0', len))
		return bri_err_set(err, -EINVAL, "a backup name cannot contain NUL bytes");
	return bri_store_check_name(line, len, err);
}

/* Whether a request line is well-formed for ctl file ctl; err says why not. */
static bool valid_request(int ctl, const char *line, size_t len, struct bri_err *err)
{
	switch (ctl) {
	case BFS_CTL_CREATE:
		return len == 0 || check_name(line, len, err) == 0; /* empty: automatic name */
	case BFS_CTL_VERIFY:
		return (len == 3 && !memcmp(line, "all", 3)) || check_name(line, len, err) == 0;
	case BFS_CTL_DELETE:
	case BFS_CTL_RESTORE:
		return check_name(line, len, err) == 0;
	case BFS_CTL_CLEANUP:
		return true; /* anything */
	default:
		bri_err_set(err, -EBADF, "ctl/%s takes no requests", bfs_ctl_files[ctl].name);
		return false;
	}
}

static int do_create(struct bfs *fs, const char *line, size_t len, struct bri_op_ctx *ctx,
                     struct bri_err *err)
{
	struct bri_create_opts opts = {.busy_timeout_ms = fs->busy_timeout_ms, .now = time(NULL)};
	char *made = NULL;
	int rc;

	if (len) {
		opts.name = line;
		opts.kind = BRI_KIND_NAMED;
	} else {
		opts.kind = BRI_KIND_AUTO;
	}
	bfs_progress_begin(&fs->progress, ctx, "create", opts.name, "ctl/create");
	rc = bri_create(fs->store, &opts, ctx, &made, err);
	bfs_progress_end(&fs->progress, made, rc, err->msg);
	if (rc < 0)
		return rc;
	bri_log(BRI_LOG_INFO, "ctl/create: created backup %s", made);
	free(made);
	return 0;
}

/* Verifies one backup and shows the result at once; -EIO when it failed. */
static int verify_one(struct bfs *fs, const char *name, const struct bri_op_ctx *ctx,
                      struct bri_err *err)
{
	struct bri_verify_result res = {0};
	struct bri_op_ctx shown = *ctx;
	int rc;

	bfs_progress_begin(&fs->progress, &shown, "verify", name, "ctl/verify");
	rc = bri_verify_backup(fs->store, name, &shown, &res, err);
	bfs_progress_end_verify(&fs->progress, rc, &res, err);
	if (rc < 0)
		return rc;
	pthread_rwlock_wrlock(&fs->cat_lock);
	struct bri_entry *e = bri_catalog_find(fs->cat, name);
	/* Only for the file checked: a newer one of that name is not. */
	if (e && bri_verify_matches(&res, &e->db_st))
		e->verify = res;
	pthread_rwlock_unlock(&fs->cat_lock);
	if (res.status != BRI_VERIFY_OK)
		return bri_err_set(err, -EIO, "verification of %s failed: %s", name, res.reason);
	bri_log(BRI_LOG_INFO, "ctl/verify: %s ok", name);
	return 0;
}

static int do_verify(struct bfs *fs, const char *line, size_t len, const struct bri_op_ctx *ctx,
                     struct bri_err *err)
{
	char **names = NULL;
	size_t n = 0, total;
	int rc = 0;

	if (!(len == 3 && !memcmp(line, "all", 3)))
		return verify_one(fs, line, ctx, err);
	pthread_rwlock_rdlock(&fs->cat_lock);
	total = fs->cat->n;
	names = calloc(total + 1, sizeof(*names));
	for (size_t i = 0; names && i < fs->cat->n; i++) {
		names[i] = strdup(fs->cat->entries[i]->name);
		if (!names[i])
			break;
		n++;
	}
	pthread_rwlock_unlock(&fs->cat_lock);
	if (!names || n < total)
		rc = bri_err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct bri_err one = {0};
		int r = verify_one(fs, names[i], ctx, &one);

		/* Removed or replaced since the listing: skipped, not a failure. */
		if (r == -ENOENT || r == -ESTALE) {
			bri_log(BRI_LOG_INFO, "ctl/verify all: %s skipped: %s", names[i], one.msg);
			continue;
		}
		if (r < 0) {
			bri_log(BRI_LOG_ERR, "ctl/verify: %s", one.msg);
			if (!err->code)
				*err = one;
		}
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc < 0 ? rc : err->code;
}

/* Cleanup by the retention rules (the core holds the store's lock). */
static int do_cleanup(struct bfs *fs, const struct bri_op_ctx *ctx, struct bri_err *err)
{
	struct bri_cleanup_item *items = NULL;
	size_t n = 0;
	int rc;

	rc = bri_cleanup(fs->store, &fs->rules, time(NULL), false, ctx, &items, &n, err);
	free(items);
	if (rc < 0)
		return rc;
	bri_log(BRI_LOG_INFO, "ctl/cleanup: removed %d backup(s) (retention %d days, keep %d)", rc,
	        fs->rules.retention_days, fs->rules.keep_min);
	return 0;
}

static int do_delete(struct bfs *fs, const char *line, const struct bri_op_ctx *ctx,
                     struct bri_err *err)
{
	int rc;

	rc = bri_delete(fs->store, line, ctx, err);
	if (rc < 0)
		return rc;
	bri_log(BRI_LOG_INFO, "ctl/delete: deleted backup %s", line);
	return 0;
}

int bfs_op_lock(struct bfs *fs)
{
	if (atomic_fetch_add(&fs->op_waiters, 1) >= BFS_OP_WAITERS_MAX) {
		atomic_fetch_sub(&fs->op_waiters, 1);
		bri_log(BRI_LOG_ERR,
		        "request refused with EBUSY (device or resource busy): the mount runs one "
		        "operation at a time (create, verify, cleanup, delete, restore) and %d "
		        "requests already wait for it, the most it lets wait; nothing was done, "
		        "retry when one has finished (ctl/progress shows what runs)",
		        BFS_OP_WAITERS_MAX);
		return -EBUSY;
	}
	pthread_mutex_lock(&fs->op_lock);
	atomic_fetch_sub(&fs->op_waiters, 1);
	return 0;
}

void bfs_op_unlock(struct bfs *fs)
{
	pthread_mutex_unlock(&fs->op_lock);
}

int bfs_ctl_run(struct bfs *fs, int ctl, const char *line, size_t len, const struct fuse_ctx *who)
{
	struct bri_op_ctx ctx = ctx_of(who);
	struct bri_err err = {0};
	char shown[BRI_NAME_MAX + 8];
	int rc;

	/* Refuse a bad name before waiting for anything. */
	if (!valid_request(ctl, line, len, &err)) {
		printable(line, len, shown, sizeof(shown));
		bri_log(BRI_LOG_ERR, "ctl/%s '%s' refused: %s", bfs_ctl_files[ctl].name, shown,
		        err.msg);
		return err.code;
	}
	if (ctl == BFS_CTL_RESTORE)
		return bfs_restore_run(fs, line, who, "ctl/restore");
	rc = bfs_op_lock(fs);
	if (rc < 0)
		return rc;
	switch (ctl) {
	case BFS_CTL_CREATE:
		rc = do_create(fs, line, len, &ctx, &err);
		break;
	case BFS_CTL_VERIFY:
		rc = do_verify(fs, line, len, &ctx, &err);
		break;
	case BFS_CTL_CLEANUP:
		rc = do_cleanup(fs, &ctx, &err);
		break;
	case BFS_CTL_DELETE:
		rc = do_delete(fs, line, &ctx, &err);
		break;
	default:
		rc = -EBADF; /* refused by valid_request */
	}
	/* Show the result before replying: the caller may look at once. */
	bfs_refresh(fs, true);
	bfs_op_unlock(fs);
	if (rc < 0) {
		printable(line, len, shown, sizeof(shown));
		bri_log(BRI_LOG_ERR, "ctl/%s '%s' failed: %s", bfs_ctl_files[ctl].name, shown,
		        err.msg[0] ? err.msg : strerror(-rc));
		return rc;
	}
	/* A removed backup must vanish from the kernel's caches before we return. */
	if (ctl == BFS_CTL_DELETE || ctl == BFS_CTL_CLEANUP)
		bfs_inval_wait(fs, 2.0);
	return 0;
}
