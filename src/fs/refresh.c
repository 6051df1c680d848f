/*
 * The daemon's in-memory catalog of the store and how it follows the store:
 * a cheap look at the store folder (fstat of the kept descriptor, compared
 * with the path) at most every BFS_REFRESH_INTERVAL seconds on root
 * operations, and a rescan (bri_catalog_scan with the previous catalog, so
 * unchanged backups cost a few stat calls) when the folder changed. Entries
 * that disappeared or changed get their kernel cache entries invalidated
 * through the notify worker. A store that vanished or cannot be read makes
 * the look fail with -EIO: the view never shows an empty listing because of
 * an error.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bri/log.h"
#include "bri/verify.h"
#include "fs.h"

static double now_real(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Checks that the store folder is still there, the same and readable. */
static int store_look(struct bfs *fs, struct stat *st)
{
	struct stat by_path;

	if (fstat(fs->store->dirfd, st) < 0)
		return -EIO;
	if (st->st_nlink == 0)
		return -EIO; /* removed while mounted */
	if (stat(fs->store->dir, &by_path) < 0)
		return -EIO;
	if (by_path.st_ino != st->st_ino || by_path.st_dev != st->st_dev)
		return -EIO; /* replaced by another folder */
	if (faccessat(fs->store->dirfd, ".", R_OK | X_OK, AT_EACCESS) < 0)
		return -EIO;
	return 0;
}

static bool ts_equal(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/*
 * Queues invalidations for the entries of old that vanished or changed in
 * cur. A backup's inodes derive from its store files (inode.c): a file
 * replaced is another inode, so the name is invalidated; a file changed in
 * place keeps its inode, whose attributes and pages are invalidated.
 */
static void queue_changes(struct bfs *fs, const struct bri_catalog *old,
                          const struct bri_catalog *cur, bool listed)
{
	for (size_t i = 0; i < old->n; i++) {
		const struct bri_entry *e = old->entries[i];
		const struct bri_entry *ne = bri_catalog_find(cur, e->name);
		fuse_ino_t dir;

		if (!ne || ne->db_st.st_ino != e->db_st.st_ino) {
			/* gone, or replaced by another file: another inode */
			bfs_inval_entry(fs, BFS_INO_ROOT, e->name);
			continue;
		}
		dir = bfs_ino_backup_dir(ne);
		/* A new result, rehearsal outcome or push state: another inode. */
		if (ne->verify_st.st_ino != e->verify_st.st_ino)
			bfs_inval_entry(fs, dir, "verify");
		if (ne->rehearsal_st.st_ino != e->rehearsal_st.st_ino)
			bfs_inval_entry(fs, dir, "rehearsal");
		if (ne->offsite_st.st_ino != e->offsite_st.st_ino)
			bfs_inval_entry(fs, dir, "offsite");
		if (e->db_st.st_size != ne->db_st.st_size ||
		    !ts_equal(&e->db_st.st_mtim, &ne->db_st.st_mtim) ||
		    !ts_equal(&e->db_st.st_ctim, &ne->db_st.st_ctim))
			bfs_inval_inode(fs, bfs_ino_backup_db(ne));
		if (e->meta_st.st_ino != ne->meta_st.st_ino ||
		    e->meta_st.st_size != ne->meta_st.st_size ||
		    !ts_equal(&e->meta_st.st_mtim, &ne->meta_st.st_mtim)) {
			bfs_inval_inode(fs, dir);
			bfs_inval_entry(fs, dir, "meta.json");
		}
	}
	if (!listed)
		return;
	/* The kernel keeps listings (no opendir): drop the root's and ctl/'s. */
	bfs_inval_inode(fs, BFS_INO_ROOT);
	bfs_inval_inode(fs, BFS_INO_CTL);
	bfs_inval_inode(fs, BFS_INO_RESTORE);
}

void bfs_inval_verify(struct bfs *fs, uint64_t id)
{
	/*
	 * The result is a new file in the store, so a new inode: the catalog
	 * takes its identity and the kernel's entry of the name is dropped
	 * (it is cached: a no-change rsync looks nothing up).
	 */
	bfs_fresh_verify(fs, id);
}

/*
 * What the backups listed are (names, not content): their count and the sum
 * of their names' hashes. Taken before a scan, which moves the entries it
 * takes over out of the old catalog (comparing with what is left of it saw
 * a listing change at every rescan that re-read some backups and not all).
 */
struct listing {
	size_t n;
	uint64_t sum;
};

static struct listing listing_of(const struct bri_catalog *c)
{
	struct listing l = {0, 0};

	for (size_t i = 0; c && i < c->n; i++) {
		uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

		for (const unsigned char *p = (const unsigned char *)c->entries[i]->name; *p; p++)
			h = (h ^ *p) * 0x100000001b3ull;
		l.sum += h;
	}
	l.n = c ? c->n : 0;
	return l;
}

/* Rescans; call with refresh_lock held. */
static int rescan(struct bfs *fs, const struct stat *st)
{
	struct bri_catalog *cur = NULL, *old;
	struct bfs_idmap map = {0};
	struct bri_err err = {0};
	struct listing before, after;
	double started = now_real();
	int rc;

	pthread_rwlock_wrlock(&fs->cat_lock);
	old = fs->cat;
	before = listing_of(old);
	rc = bri_catalog_scan(fs->store, old, &cur, &err);
	if (rc < 0) {
		pthread_rwlock_unlock(&fs->cat_lock);
		bri_log(BRI_LOG_ERR, "cannot read the store %s: %s", fs->store->dir, err.msg);
		return -EIO;
	}
	rc = bfs_idmap_build(&map, cur);
	bfs_idmap_free(&fs->idmap);
	if (rc == 0)
		fs->idmap = map;
	if (!old || cur->generation != old->generation)
		fs->cat_changed = time(NULL);
	/*
	 * The root's mtime: the store folder's when the listing changed (a
	 * create, delete, cleanup or safety backup), never going back.
	 */
	after = listing_of(cur);
	if ((!old || before.n != after.n || before.sum != after.sum) &&
	    st->st_mtim.tv_sec > fs->root_mtime)
		fs->root_mtime = st->st_mtim.tv_sec;
	fs->cat = cur;
	if (old) {
		queue_changes(fs, old, cur, cur->generation != old->generation);
		bri_catalog_free(old);
	}
	pthread_rwlock_unlock(&fs->cat_lock);
	if (rc < 0)
		return rc;
	fs->dir_st = *st;
	fs->dir_scan_real = started;
	bfs_verify_kick(fs);
	return 0;
}

static int refresh(struct bfs *fs, bool look_now, bool force)
{
	struct stat st;
	double now = bri_now_mono();
	bool changed;
	int rc;

	pthread_mutex_lock(&fs->refresh_lock);
	if (!force && !look_now && now - fs->last_check < BFS_REFRESH_INTERVAL) {
		rc = fs->store_error;
		goto out_unlock;
	}
	fs->last_check = now;
	rc = store_look(fs, &st);
	if (rc < 0) {
		if (!fs->store_error)
			bri_log(BRI_LOG_ERR, "the store %s is gone or unreadable", fs->store->dir);
		fs->store_error = rc;
		goto out_unlock;
	}
	/*
	 * Folder timestamps are coarse: a change within the tick of the last
	 * scan leaves them equal, so a folder changed shortly before that
	 * scan is looked at again.
	 */
	changed = force || fs->store_error || !fs->cat ||
	          !ts_equal(&st.st_mtim, &fs->dir_st.st_mtim) ||
	          !ts_equal(&st.st_ctim, &fs->dir_st.st_ctim) ||
	          fs->dir_scan_real - (double)fs->dir_st.st_mtim.tv_sec < 2.0;
	if (!changed)
		goto out_unlock;
	rc = rescan(fs, &st);
	fs->store_error = rc;
out_unlock:
	pthread_mutex_unlock(&fs->refresh_lock);
	return rc;
}

int bfs_refresh(struct bfs *fs, bool force)
{
	return refresh(fs, false, force);
}

int bfs_refresh_look(struct bfs *fs)
{
	return refresh(fs, true, false);
}

static bool same_stat(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       ts_equal(&a->st_mtim, &b->st_mtim) && ts_equal(&a->st_ctim, &b->st_ctim);
}

/* The catalog's identity of backup e's sidecar kind, and the name of its file in the folder. */
static struct stat *sidecar_st(struct bri_entry *e, enum bri_sidecar kind, const char **file)
{
	switch (kind) {
	case BRI_SIDECAR_REHEARSAL:
		*file = "rehearsal";
		return &e->rehearsal_st;
	case BRI_SIDECAR_OFFSITE:
		*file = "offsite";
		return &e->offsite_st;
	default:
		*file = "verify";
		return &e->verify_st;
	}
}

void bfs_fresh_sidecar(struct bfs *fs, uint64_t id, enum bri_sidecar kind)
{
	char name[BRI_NAME_MAX + 1];
	struct bri_verify_result res;
	struct bri_rehearsal reh;
	struct stat st, known;
	struct bri_entry *e;
	const char *file;

	pthread_rwlock_rdlock(&fs->cat_lock);
	e = bfs_entry_by_id(fs, id);
	if (e) {
		snprintf(name, sizeof(name), "%s", e->name);
		known = *sidecar_st(e, kind, &file);
	}
	pthread_rwlock_unlock(&fs->cat_lock);
	if (!e)
		return;
	if (bri_store_sidecar_stat(fs->store, name, kind, &st) < 0)
		memset(&st, 0, sizeof(st));
	if (same_stat(&st, &known))
		return;
	if (kind == BRI_SIDECAR_VERIFY)
		bri_verify_load(fs->store, name, &res);
	memset(&reh, 0, sizeof(reh));
	if (kind == BRI_SIDECAR_REHEARSAL && st.st_ino)
		bri_rehearsal_read(fs->store, name, &reh);
	pthread_rwlock_wrlock(&fs->cat_lock);
	e = bfs_entry_by_id(fs, id);
	if (e && !strcmp(e->name, name)) {
		struct stat *mine = sidecar_st(e, kind, &file);
		bool refile = mine->st_ino != st.st_ino;

		if (kind == BRI_SIDECAR_VERIFY)
			e->verify = res;
		if (kind == BRI_SIDECAR_REHEARSAL)
			e->rehearsal = reh;
		*mine = st;
		if (refile && bfs_idmap_refile(fs) < 0)
			bri_log(BRI_LOG_ERR, "out of memory indexing the store's files");
		/* Another inode for the name: the kernel keeps entries (inode.c). */
		if (refile)
			bfs_inval_entry(fs, bfs_ino_backup_dir(e), file);
	}
	pthread_rwlock_unlock(&fs->cat_lock);
}

void bfs_fresh_verify(struct bfs *fs, uint64_t id)
{
	bfs_fresh_sidecar(fs, id, BRI_SIDECAR_VERIFY);
}

bool bfs_db_check(struct bfs *fs, uint64_t id, const struct stat *st)
{
	char name[BRI_NAME_MAX + 1];
	struct stat seen, by_name;
	struct bri_entry *e;
	bool changed = false;

	if (!st) {
		pthread_rwlock_rdlock(&fs->cat_lock);
		e = bfs_entry_by_id(fs, id);
		if (e)
			snprintf(name, sizeof(name), "%s", e->name);
		pthread_rwlock_unlock(&fs->cat_lock);
		if (!e || bri_store_stat(fs->store, name, &by_name) < 0)
			return false; /* gone: the rescan's business */
		st = &by_name;
	}
	pthread_rwlock_rdlock(&fs->cat_lock); /* the common case: unchanged */
	e = bfs_entry_by_id(fs, id);
	changed = e && !same_stat(&e->db_st, st);
	pthread_rwlock_unlock(&fs->cat_lock);
	if (!changed)
		return false;
	changed = false;
	pthread_rwlock_wrlock(&fs->cat_lock);
	e = bfs_entry_by_id(fs, id);
	if (e && !same_stat(&e->db_st, st)) {
		seen = e->db_st;
		snprintf(name, sizeof(name), "%s", e->name);
		bool refile = e->db_st.st_ino != st->st_ino;

		e->db_st = *st;
		changed = true;
		if (refile && bfs_idmap_refile(fs) < 0)
			bri_log(BRI_LOG_ERR, "out of memory indexing the store's files");
	}
	pthread_rwlock_unlock(&fs->cat_lock);
	if (!changed)
		return false;
	bri_log(BRI_LOG_WARN,
	        "backup %s changed in the store (size %lld -> %lld): the kernel's cached copy is "
	        "dropped",
	        name, (long long)seen.st_size, (long long)st->st_size);
	/* Attributes and pages; sent by the notify worker, never from this handler. */
	pthread_rwlock_rdlock(&fs->cat_lock);
	e = bfs_entry_by_id(fs, id);
	if (e)
		bfs_inval_inode(fs, bfs_ino_backup_db(e));
	pthread_rwlock_unlock(&fs->cat_lock);
	return true;
}

int bfs_catalog_init(struct bfs *fs)
{
	pthread_rwlock_init(&fs->cat_lock, NULL);
	pthread_mutex_init(&fs->refresh_lock, NULL);
	fs->last_check = -1e9;
	return bfs_refresh(fs, true);
}

void bfs_catalog_fini(struct bfs *fs)
{
	bfs_idmap_free(&fs->idmap);
	bri_catalog_free(fs->cat);
	fs->cat = NULL;
	pthread_rwlock_destroy(&fs->cat_lock);
	pthread_mutex_destroy(&fs->refresh_lock);
}
