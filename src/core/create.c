/*
 * Taking a backup: the snapshot goes into a new backup of the store
 * (bri_store_write_begin: for plain, a temporary file in the store), is
 * hashed and counted, and is committed with its metadata
 * (bri_store_write_commit: for plain, the metadata is written durably, then
 * the .db renamed into place without replacing anything and the folder
 * synced). The commit is the commit point: before it there is no backup.
 */
#include "bri/create.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bri/audit.h"
#include "bri/checksum.h"
#include "bri/log.h"
#include "bri/snapshot.h"
#include "bri/testpoint.h"

static int choose_name(struct bri_store *s, const struct bri_create_opts *o, time_t now,
		       char name[BRI_NAME_MAX + 1], struct bri_err *err)
{
	int rc;

	if (o->name && *o->name) {
		/* Names the mount's inspection folders and diff pairs take (SPEC.md 4.1). */
		static const char *const taken[] = {"inspect", "diff", "at", "live"};

		rc = bri_store_check_name(o->name, strlen(o->name), err);
		if (rc < 0)
			return rc;
		if (strstr(o->name, ".."))
			return bri_err_set(err, -EINVAL,
					   "a new backup name may not contain '..' (diff/OLD..NEW "
					   "names two backups)");
		for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++)
			if (!strcmp(o->name, taken[i]))
				return bri_err_set(err, -EINVAL,
						   "'%s' is reserved for new backups (inspect/, diff/ "
						   "and at/ are folders of the mount, live is the live "
						   "database in a diff); choose another name",
						   o->name);
		if (bri_store_has(s, o->name))
			return bri_err_set(err, -EEXIST,
					   "a backup named %s already exists; choose another name "
					   "or delete it first",
					   o->name);
		snprintf(name, BRI_NAME_MAX + 1, "%s", o->name);
		return 0;
	}
	rc = bri_store_auto_name(s, o->kind == BRI_KIND_SAFETY ? "pre_restore_safety" : NULL, now,
				 name, BRI_NAME_MAX + 1);
	if (rc < 0)
		return bri_err_set(err, rc, "cannot make a backup name from %s", s->stem);
	return 0;
}

/* Starts the write-out of the file *arg to disk (sync_file_range, no wait). */
static void *write_out(void *arg)
{
	sync_file_range(*(int *)arg, 0, 0, SYNC_FILE_RANGE_WRITE);
	return NULL;
}

/* Everything after the snapshot: hash, metadata, publish. */
static int finish_backup(struct bri_backup_writer *w, struct bri_meta *meta,
			 const struct bri_op_ctx *ctx, struct bri_err *err)
{
	int fd = w->fd;
	struct stat st;
	pthread_t writer;
	bool writing;
	char *json;
	size_t len;
	int rc;

	if (fd < 0) {
		/* A format without a file (pages): it hashes the logical bytes itself. */
		uint64_t size = 0;

		rc = bri_store_write_digest(w, &size, meta->checksum, err);
		if (rc < 0)
			return rc;
		meta->size_bytes = (int64_t)size;
		meta->size_mb = (double)size / (1024.0 * 1024.0);
		goto out_commit;
	}
	if (fstat(fd, &st) < 0 || lseek(fd, 0, SEEK_SET) < 0)
		return bri_err_set(err, -errno, "cannot read back the backup: %s", strerror(errno));
	meta->size_bytes = st.st_size;
	meta->size_mb = (double)st.st_size / (1024.0 * 1024.0);
	/* A second thread starts writing the copy out while this one hashes it,
	 * so the fsync in bri_store_publish (still the durability point) finds
	 * most of it done. Only a hint: an error there is found again by fsync. */
	writing = pthread_create(&writer, NULL, write_out, &fd) == 0;
	rc = bri_checksum_fd(fd, (uint64_t)st.st_size, ctx, meta->checksum, err);
	if (writing)
		pthread_join(writer, NULL);
	if (rc < 0)
		return rc;
out_commit:
	rc = bri_meta_format(meta, &json, &len);
	if (rc < 0)
		return bri_err_set(err, rc, "out of memory");
	rc = bri_store_write_commit(w, json, len, err);
	free(json);
	return rc;
}

/* A thread that reports the copy's progress from the growing temporary file. */
struct copy_watch {
	pthread_mutex_t lock;          /* guards done */
	pthread_cond_t cond;           /* signalled when done is set */
	bool done;                     /* the copy finished */
	int fd;                        /* the temporary file */
	uint64_t total;                /* the live database's size */
	const struct bri_op_ctx *ctx;  /* where progress goes */
};

static void *watch_copy(void *arg)
{
	struct copy_watch *w = arg;
	struct timespec until;
	struct stat st;

	pthread_mutex_lock(&w->lock);
	while (!w->done) {
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 250 * 1000 * 1000;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&w->cond, &w->lock, &until);
		if (!w->done && w->fd >= 0 && fstat(w->fd, &st) == 0)
			w->ctx->progress(w->ctx->progress_arg, "copy", (uint64_t)st.st_size, w->total);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* The snapshot into the temporary file: o->fill, else bri_snapshot_take. */
static int snapshot(const struct bri_create_opts *o, const char *src, const char *dst, int fd,
		    struct bri_snapshot_info *info, struct bri_err *err)
{
	if (o->fill)
		return o->fill(o->fill_arg, dst, fd, info, err);
	return bri_snapshot_take(src, dst, o->busy_timeout_ms, info, err);
}

/* snapshot(), reporting progress when ctx has a progress function. */
static int snapshot_with_progress(const struct bri_create_opts *o, const char *src, const char *dst,
				  int fd, uint64_t total, const struct bri_op_ctx *ctx,
				  struct bri_snapshot_info *info, struct bri_err *err)
{
	struct copy_watch w = {.fd = fd, .total = total, .ctx = ctx};
	pthread_t thread;
	bool watching;
	int rc;

	if (!ctx || !ctx->progress)
		return snapshot(o, src, dst, fd, info, err);
	ctx->progress(ctx->progress_arg, "copy", 0, total);
	pthread_mutex_init(&w.lock, NULL);
	pthread_cond_init(&w.cond, NULL);
	watching = pthread_create(&thread, NULL, watch_copy, &w) == 0;
	rc = snapshot(o, src, dst, fd, info, err);
	if (watching) {
		pthread_mutex_lock(&w.lock);
		w.done = true;
		pthread_cond_signal(&w.cond);
		pthread_mutex_unlock(&w.lock);
		pthread_join(thread, NULL);
	}
	pthread_cond_destroy(&w.cond);
	pthread_mutex_destroy(&w.lock);
	if (rc == 0)
		ctx->progress(ctx->progress_arg, "copy", total, total);
	return rc;
}

int bri_default_busy_timeout_ms(void)
{
	const char *env = getenv("BRI_BUSY_TIMEOUT_MS");
	char *end;
	long v;

	if (!env || !*env)
		return BRI_DEFAULT_BUSY_TIMEOUT_MS;
	v = strtol(env, &end, 10);
	if (*end || v < 0 || v > 24L * 3600 * 1000)
		return BRI_DEFAULT_BUSY_TIMEOUT_MS;
	return (int)v;
}

int bri_create(struct bri_store *s, const struct bri_create_opts *opts,
	       const struct bri_op_ctx *ctx, char **out_name, struct bri_err *err)
{
	struct bri_create_opts o = *opts;
	struct bri_snapshot_info info = {0};
	char name[BRI_NAME_MAX + 1] = "";
	struct bri_meta meta = {0};
	double start = bri_now_mono();
	time_t now = opts->now ? opts->now : time(NULL);
	struct bri_backup_writer *w = NULL;
	struct stat st;
	int lockfd = -1, rc;

	if (!o.busy_timeout_ms)
		o.busy_timeout_ms = bri_default_busy_timeout_ms();
	if (o.name && *o.name) {
		rc = bri_store_check_name(o.name, strlen(o.name), err);
		if (rc < 0)
			goto out_audit;
	}
	if (stat(s->db_path, &st) < 0) {
		rc = bri_err_set(err, -errno, "database not found: %s (%s); check --db", s->db_path,
				 strerror(errno));
		goto out_audit;
	}
	bri_testpoint("create-start");
	if (!o.lock_held) {
		lockfd = bri_store_lock(s, err);
		if (lockfd < 0) {
			rc = lockfd;
			goto out_audit;
		}
	}
	/* A store folder replaced since it was opened gets nothing, not even a temporary file. */
	rc = bri_store_check(s, err);
	if (rc < 0)
		goto out_unlock;
	rc = choose_name(s, &o, now, name, err);
	if (rc < 0)
		goto out_unlock;
	rc = bri_store_write_begin(s, name, &w, err);
	if (rc < 0)
		goto out_unlock;
	rc = snapshot_with_progress(&o, s->db_path, w->path, w->fd, (uint64_t)st.st_size, ctx,
				    &info, err);
	if (rc < 0)
		goto out_end_write;
	bri_testpoint("create-copied");
	/* Replaced while copying: the copy is removed, nothing is published. */
	rc = bri_store_check(s, err);
	if (rc < 0)
		goto out_end_write;

	bri_time_local(now, meta.backup_time, sizeof(meta.backup_time));
	bri_time_utc(now, meta.backup_time_utc, sizeof(meta.backup_time_utc));
	meta.time = now;
	meta.source_db = s->db_path;
	meta.backup_path = bri_store_backup_path(s, name);
	meta.tables = info.tables;
	meta.ntables = info.ntables;
	meta.kind = o.kind == BRI_KIND_SAFETY ? BRI_KIND_SAFETY
		    : (o.name && *o.name)    ? BRI_KIND_NAMED
					     : BRI_KIND_AUTO;
	meta.page_size = info.page_size;
	meta.page_count = info.page_count;
	meta.duration_s = bri_now_mono() - start;
	if (!meta.backup_path) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_end_write;
	}
	/* A stale result of an earlier backup of that name must not describe this one. */
	bri_store_sidecar_remove(s, name, BRI_SIDECAR_VERIFY);
	rc = finish_backup(w, &meta, ctx, err);
	if (rc < 0)
		goto out_end_write;
	*out_name = strdup(name);
	if (!*out_name)
		rc = bri_err_set(err, -ENOMEM, "out of memory");

out_end_write:
	/* Without a commit, nothing of the copy is left in the store. */
	bri_store_write_end(w);
	free(meta.backup_path);
	bri_snapshot_info_free(&info);
out_unlock:
	bri_store_unlock(lockfd);
out_audit:
	if (rc == -ENOSPC && err)
		bri_err_set(err, rc, "no space left for the backup in %s; free space or run cleanup",
			    s->dir);
	bri_audit_record(s, o.kind == BRI_KIND_SAFETY ? "create-safety" : "create",
			 name[0] ? name : (o.name ? o.name : ""), rc,
			 rc < 0 && err ? err->msg : NULL, bri_now_mono() - start, ctx);
	return rc;
}
