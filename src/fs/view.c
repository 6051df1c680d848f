/*
 * The view's kinds of node (the root, ctl/, restore/, the backups) and the
 * FUSE low-level operations that dispatch on every module's kinds: lookup,
 * forget, getattr, readlink, readdir(plus), statfs, and the refusal of every
 * change inside the view (EROFS). Each kind is one row {name, mode, spaces,
 * attr, lookup, list, open, render, ...} in its module's table (this file's
 * bfs_kinds, inspectfs.c's bfs_insp_kinds): a new kind is one number, its
 * functions and its row, in one file (fs.h). The inode scheme is inode.c's;
 * open files are file.c's; ctl/ files' own logic (requests, what they
 * render) is ctl.c's and gen.c's; rename (mv into restore/) is
 * restore_dir.c's. Every handler replies exactly once.
 *
 * Listings are served without OPENDIR (FUSE_CAP_NO_OPENDIR_SUPPORT): the
 * kernel caches them, and a listing is built from (inode, offset) at each
 * readdir, where an offset names an entry (its key: a fixed small number,
 * or a backup's store inode number), not a position, so entries that
 * appear or vanish mid-listing never make another entry vanish.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "bri/log.h"
#include "bri/rehearsal.h"
#include "bri/testpoint.h"
#include "bri/verify.h"
#include "fs.h"

#define META_FILE      "meta.json"
#define VERIFY_FILE    "verify"
#define REHEARSAL_FILE "rehearsal"
#define OFFSITE_FILE   "offsite" /* only with -o offsite= */

/* This file's node kinds (fs.h: numbers 1-11 and 24-27 are view.c's; never renumber). */
enum view_kind {
	K_ROOT = BFS_INO_ROOT,           /* the mount's root (FUSE_ROOT_ID) */
	K_CTL_DIR = BFS_INO_CTL,         /* ctl/ */
	K_RESTORE_DIR = BFS_INO_RESTORE, /* restore/ */
	K_LATEST = BFS_INO_LATEST,       /* latest -> the newest backup */
	K_CTL_FILE = 5,                  /* a ctl/ file (fixed, or a version of a readable one) */
	K_REPORT = 6,                    /* restore/NAME.report (fixed: the report's id) */
	K_BACKUP_DIR = 7,                /* a backup's folder (store: NAME.db) */
	K_BACKUP_DB = 8,                 /* NAME/<db file name> (store: NAME.db) */
	K_META = 9,                      /* NAME/meta.json (store: NAME.db.meta) */
	K_VERIFY = 10,                   /* NAME/verify with a result (store: NAME.db.verify) */
	K_VERIFY_NONE = 11,              /* NAME/verify without one (store: NAME.db) */
	/* Rehearsal status, shown when rehearsals are configured (-o rehearse=, checks=). */
	K_REHEARSAL = 24,      /* NAME/rehearsal with a result (store: its REHEARSAL sidecar) */
	K_REHEARSAL_NONE = 25, /* NAME/rehearsal without one, "never" (store: NAME.db) */
	/* Offsite push state, shown with -o offsite=. */
	K_OFFSITE = 26,      /* NAME/offsite with a push state (store: NAME.db.offsite) */
	K_OFFSITE_NONE = 27, /* NAME/offsite before the first push, "pending" (store: NAME.db) */
};

/* Listing keys of the fixed entries; a backup's key is KEY_STORE + its st_ino. */
enum {
	KEY_DOT = 1,
	KEY_DOTDOT = 2,
	KEY_CTL = 3,
	KEY_RESTORE = 4,
	KEY_LATEST = 5,
	KEY_INSP = 6, /* inspect/, diff/, at/: 6, 7, 8 (bfs_insp_root_list) */
	KEY_STORE = 16
};

/* Logs once that a backup is named like a root folder (reachable through bri-backup). */
static void log_shadowed(const char *name)
{
	static atomic_bool warned;

	if (!atomic_exchange(&warned, true))
		bri_log(BRI_LOG_WARN,
		        "a backup is named '%s', as a folder of the mount's root: it is not shown "
		        "in the mount; use bri-backup (e.g. bri-backup restore %s)",
		        name, name);
}

struct bfs *bfs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static const char *const req_names[BFS_REQ_COUNT] = {
    [BFS_REQ_LOOKUP] = "lookup",
    [BFS_REQ_FORGET] = "forget",
    [BFS_REQ_GETATTR] = "getattr",
    [BFS_REQ_SETATTR] = "setattr",
    [BFS_REQ_READLINK] = "readlink",
    [BFS_REQ_OPEN] = "open",
    [BFS_REQ_READ] = "read",
    [BFS_REQ_WRITE] = "write",
    [BFS_REQ_FLUSH] = "flush",
    [BFS_REQ_RELEASE] = "release",
    [BFS_REQ_OPENDIR] = "opendir",
    [BFS_REQ_READDIR] = "readdir",
    [BFS_REQ_READDIRPLUS] = "readdirplus",
    [BFS_REQ_RELEASEDIR] = "releasedir",
    [BFS_REQ_RENAME] = "rename",
    [BFS_REQ_STATFS] = "statfs",
    [BFS_REQ_REFUSED] = "refused",
};

struct bfs *bfs_count(fuse_req_t req, enum bfs_req r)
{
	struct bfs *fs = fuse_req_userdata(req);

	atomic_fetch_add_explicit(&fs->requests[r], 1, memory_order_relaxed);
	return fs;
}

int bfs_requests_render(struct bfs *fs, char **buf, size_t *len)
{
	static const char head[] =
	    "# HELP bri_fuse_requests_total FUSE requests the daemon answered, by kind\n"
	    "# TYPE bri_fuse_requests_total counter\n";
	size_t cap = *len + sizeof(head) + BFS_REQ_COUNT * 64;
	char *p = realloc(*buf, cap);
	size_t pos = *len;

	if (!p)
		return -ENOMEM;
	*buf = p;
	bfs_appendf(p, cap, &pos, "%s", head);
	for (int i = 0; i < BFS_REQ_COUNT; i++)
		bfs_appendf(p, cap, &pos, "bri_fuse_requests_total{op=\"%s\"} %llu\n", req_names[i],
		            (unsigned long long)atomic_load(&fs->requests[i]));
	*len = pos;
	return 0;
}

void bfs_fill_entry(struct bfs *fs, fuse_ino_t ino, mode_t mode, off_t size, time_t t,
                    struct fuse_entry_param *e)
{
	struct stat *st = &e->attr;

	memset(e, 0, sizeof(*e));
	e->ino = ino;
	e->generation = 1;
	st->st_ino = ino;
	st->st_mode = mode;
	st->st_nlink = S_ISDIR(mode) ? 2 : 1;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_size = size;
	st->st_blksize = 4096;
	st->st_blocks = (size + 511) / 512;
	st->st_atim.tv_sec = t;
	st->st_mtim.tv_sec = t;
	st->st_ctim.tv_sec = t;
}

/* ---- backups: inodes derived from their store files ---- */

/* The store file a backup kind's inode derives from. */
static enum bfs_file file_of_kind(enum view_kind k)
{
	switch (k) {
	case K_META:
		return BFS_FILE_META;
	case K_VERIFY:
		return BFS_FILE_VERIFY;
	case K_REHEARSAL:
		return BFS_FILE_REHEARSAL;
	case K_OFFSITE:
		return BFS_FILE_OFFSITE;
	default:
		return BFS_FILE_DB;
	}
}

static const struct stat *file_stat(const struct bri_entry *b, enum bfs_file f)
{
	switch (f) {
	case BFS_FILE_META:
		return &b->meta_st;
	case BFS_FILE_VERIFY:
		return &b->verify_st;
	case BFS_FILE_REHEARSAL:
		return &b->rehearsal_st;
	case BFS_FILE_OFFSITE:
		return &b->offsite_st;
	case BFS_FILE_DB:
		break;
	}
	return &b->db_st;
}

/* The inode of backup b's node of kind k (its verify: with or without a result). */
static fuse_ino_t backup_ino(const struct bri_entry *b, enum view_kind k)
{
	if (k == K_VERIFY || k == K_VERIFY_NONE)
		k = b->verify_st.st_ino ? K_VERIFY : K_VERIFY_NONE;
	if (k == K_REHEARSAL || k == K_REHEARSAL_NONE)
		k = b->rehearsal_st.st_ino ? K_REHEARSAL : K_REHEARSAL_NONE;
	if (k == K_OFFSITE || k == K_OFFSITE_NONE)
		k = b->offsite_st.st_ino ? K_OFFSITE : K_OFFSITE_NONE;
	return bfs_ino_store(b, file_stat(b, file_of_kind(k)), k);
}

/* The backup that ino (a backup kind) belongs to now, or NULL; cat_lock held. */
static struct bri_entry *entry_of(struct bfs *fs, fuse_ino_t ino)
{
	enum view_kind k = bfs_ino_kind(ino);
	struct bri_entry *b;

	if (ino & BFS_SPACE_STORE) {
		const struct bfs_fileref *f =
		    bfs_file_by_ino(fs, bfs_ino_index(ino), file_of_kind(k));

		b = f ? f->e : NULL;
	} else {
		uint64_t idx = bfs_ino_index(ino);

		b = idx >= BFS_ID_BASE ? bfs_entry_by_id(fs, idx - BFS_ID_BASE) : NULL;
	}
	/* The number must still be this backup's (a verify result replaced). */
	return b && backup_ino(b, k) == ino ? b : NULL;
}

/* Long lifetimes and the generation of a backup's immutable node. */
static void immutable(const struct bri_entry *b, fuse_ino_t ino, struct fuse_entry_param *e)
{
	enum view_kind k = bfs_ino_kind(ino);

	e->generation = bfs_generation(b->name, file_stat(b, file_of_kind(k)), k);
	e->entry_timeout = BFS_TTL_LONG;
	e->attr_timeout = BFS_TTL_LONG;
}

static int dir_attr(struct bfs *fs, const struct bri_entry *b, fuse_ino_t ino,
                    struct fuse_entry_param *e)
{
	bfs_fill_entry(fs, ino, S_IFDIR | 0700, 4096, b->time, e);
	immutable(b, ino, e);
	return 0;
}

static int db_attr(struct bfs *fs, const struct bri_entry *b, fuse_ino_t ino,
                   struct fuse_entry_param *e)
{
	bfs_fill_entry(fs, ino, S_IFREG | 0400, b->db_st.st_size, b->time, e);
	immutable(b, ino, e);
	return 0;
}

static int meta_attr(struct bfs *fs, const struct bri_entry *b, fuse_ino_t ino,
                     struct fuse_entry_param *e)
{
	if (!b->meta_st.st_ino)
		return -ENOENT;
	bfs_fill_entry(fs, ino, S_IFREG | 0400, b->meta_st.st_size, b->time, e);
	immutable(b, ino, e);
	return 0;
}

static int verify_attr(struct bfs *fs, const struct bri_entry *b, fuse_ino_t ino,
                       struct fuse_entry_param *e)
{
	char *text;
	size_t len;
	int rc;

	rc = bri_verify_render(&b->verify, &text, &len);
	if (rc < 0)
		return rc;
	free(text);
	bfs_fill_entry(fs, ino, S_IFREG | 0400, (off_t)len,
	               b->verify.checked ? b->verify.checked : b->time, e);
	/*
	 * A version's attributes never change: a new result is a new file in
	 * the store, so a new inode, and the name's entry is invalidated then
	 * (bfs_fresh_verify; worker.c holds such invalidations back while a
	 * rename into restore/ holds the folder's lock).
	 */
	immutable(b, ino, e);
	return 0;
}

/*
 * NAME/offsite: the text of the push state the inode is a version of. As
 * verify: a new state (pending, uploaded, failed) is a new file in the
 * store, so a new inode, and the name's entry is invalidated then.
 */
static int offsite_attr(struct bfs *fs, const struct bri_entry *b, fuse_ino_t ino,
                        struct fuse_entry_param *e)
{
	char *text;
	size_t len;
	time_t t;
	int rc;

	rc = bfs_offsite_render(fs, b->name, &b->offsite_st, &text, &len, &t);
	if (rc < 0)
		return rc;
	free(text);
	bfs_fill_entry(fs, ino, S_IFREG | 0400, (off_t)len, t ? t : b->time, e);
	immutable(b, ino, e);
	return 0;
}

/* NAME/rehearsal: the last rehearsal's one line (bri_rehearsal_describe). */
static int rehearsal_attr(struct bfs *fs, const struct bri_entry *b, fuse_ino_t ino,
                          struct fuse_entry_param *e)
{
	char line[BRI_REHEARSAL_REASON_MAX + 128];
	size_t len = bri_rehearsal_describe(&b->rehearsal, line, sizeof(line));

	bfs_fill_entry(fs, ino, S_IFREG | 0400, (off_t)len,
	               b->rehearsal.time ? b->rehearsal.time : b->time, e);
	/* As verify: a new outcome is a new store file, so a new inode, looked up anew. */
	immutable(b, ino, e);
	return 0;
}

static int backup_id_of(struct bfs *fs, fuse_ino_t ino, uint64_t *id);

static int render_rehearsal(struct bfs *fs, fuse_ino_t ino, char **out, size_t *len)
{
	char line[BRI_REHEARSAL_REASON_MAX + 128];
	struct bri_entry *b;
	uint64_t id;

	if (backup_id_of(fs, ino, &id) == 0)
		bfs_fresh_sidecar(fs, id, BRI_SIDECAR_REHEARSAL);
	pthread_rwlock_rdlock(&fs->cat_lock);
	b = entry_of(fs, ino);
	if (b)
		*len = bri_rehearsal_describe(&b->rehearsal, line, sizeof(line));
	pthread_rwlock_unlock(&fs->cat_lock);
	if (!b)
		return -ESTALE; /* a newer outcome has another inode: look it up again */
	*out = strdup(line);
	return *out ? 0 : -ENOMEM;
}

static const struct bfs_kind_ops bfs_kinds[BFS_K_COUNT];

/* Attributes of backup b's node of kind k; cat_lock held. */
static int backup_attr(struct bfs *fs, const struct bri_entry *b, enum view_kind k,
                       struct fuse_entry_param *e)
{
	fuse_ino_t ino = backup_ino(b, k);

	return bfs_kinds[bfs_ino_kind(ino)].entry_attr(fs, b, ino, e);
}

/* The id of the backup of a backup-kind inode, for refreshes; 0 and *id, or -ENOENT. */
static int backup_id_of(struct bfs *fs, fuse_ino_t ino, uint64_t *id)
{
	struct bri_entry *b;

	pthread_rwlock_rdlock(&fs->cat_lock);
	b = entry_of(fs, ino);
	if (b)
		*id = b->id;
	pthread_rwlock_unlock(&fs->cat_lock);
	return b ? 0 : -ENOENT;
}

static int attr_backup(struct bfs *fs, fuse_ino_t ino, struct fuse_entry_param *e)
{
	enum view_kind k = bfs_ino_kind(ino);
	struct bri_entry *b;
	uint64_t id;
	int rc;

	if (backup_id_of(fs, ino, &id) == 0) {
		if (k == K_BACKUP_DB)
			bfs_db_check(fs, id, NULL); /* changed in place: the new size */
		if (k == K_VERIFY || k == K_VERIFY_NONE)
			bfs_fresh_verify(fs, id);
		if (k == K_REHEARSAL || k == K_REHEARSAL_NONE)
			bfs_fresh_sidecar(fs, id, BRI_SIDECAR_REHEARSAL);
		if (k == K_OFFSITE || k == K_OFFSITE_NONE)
			bfs_fresh_sidecar(fs, id, BRI_SIDECAR_OFFSITE);
	}
	pthread_rwlock_rdlock(&fs->cat_lock);
	b = entry_of(fs, ino);
	rc = b ? backup_attr(fs, b, k, e) : -ENOENT;
	pthread_rwlock_unlock(&fs->cat_lock);
	return rc;
}

static int lookup_backup(struct bfs *fs, fuse_ino_t dir, const char *name,
                         struct fuse_entry_param *e, const struct bfs_render **r, int *sub)
{
	enum view_kind k;
	struct bri_entry *b;
	uint64_t id;
	int rc;

	(void)r;
	(void)sub;
	bri_testpoint("lookup_backup"); /* the kernel holds the folder's lock (shared) */
	if (!strcmp(name, fs->store->db_filename))
		k = K_BACKUP_DB;
	else if (!strcmp(name, META_FILE))
		k = K_META;
	else if (!strcmp(name, VERIFY_FILE))
		k = K_VERIFY;
	else if (fs->rehearsals.configured && !strcmp(name, REHEARSAL_FILE))
		k = K_REHEARSAL;
	else if (fs->offsite && !strcmp(name, OFFSITE_FILE))
		k = K_OFFSITE;
	else
		return -ENOENT;
	if (backup_id_of(fs, dir, &id) < 0)
		return -ENOENT;
	if (k == K_BACKUP_DB)
		bfs_db_check(fs, id, NULL);
	/* A result, outcome or push state by another process shows (another inode). */
	for (int pass = 0; pass < 3; pass++) {
		if (k == K_VERIFY)
			bfs_fresh_verify(fs, id);
		if (k == K_REHEARSAL)
			bfs_fresh_sidecar(fs, id, BRI_SIDECAR_REHEARSAL);
		if (k == K_OFFSITE)
			bfs_fresh_sidecar(fs, id, BRI_SIDECAR_OFFSITE);
		pthread_rwlock_rdlock(&fs->cat_lock);
		b = entry_of(fs, dir);
		rc = b ? backup_attr(fs, b, k, e) : -ENOENT;
		pthread_rwlock_unlock(&fs->cat_lock);
		if (rc != -ESTALE)
			break; /* ESTALE: a push state replaced meanwhile; take the new one */
	}
	return rc;
}

static int list_backup(struct bfs *fs, fuse_ino_t dir, off_t after, bfs_list_fn add, void *ctx)
{
	static const enum view_kind kinds[] = {K_BACKUP_DB, K_META, K_VERIFY, K_REHEARSAL,
	                                       K_OFFSITE};
	struct fuse_entry_param e[5], dot;
	const char *names[5];
	bool have[5] = {false, false, false, false, false};
	/* rehearsal and offsite only when configured: the default folder is as SPEC 4 says */
	const bool shown[5] = {true, true, true, fs->rehearsals.configured, fs->offsite != NULL};
	int nkinds = 5;
	struct bri_entry *b;
	uint64_t id;
	int rc;

	rc = bfs_refresh(fs, false); /* a vanished store fails every listing */
	if (rc < 0)
		return rc;
	if (backup_id_of(fs, dir, &id) < 0)
		return -ENOENT;
	bfs_fresh_verify(fs, id);
	if (shown[3])
		bfs_fresh_sidecar(fs, id, BRI_SIDECAR_REHEARSAL);
	if (shown[4])
		bfs_fresh_sidecar(fs, id, BRI_SIDECAR_OFFSITE);
	pthread_rwlock_rdlock(&fs->cat_lock);
	b = entry_of(fs, dir);
	for (int i = 0; b && i < nkinds; i++)
		have[i] = shown[i] && backup_attr(fs, b, kinds[i], &e[i]) == 0;
	pthread_rwlock_unlock(&fs->cat_lock);
	if (!b)
		return -ENOENT;
	names[0] = fs->store->db_filename;
	names[1] = META_FILE;
	names[2] = VERIFY_FILE;
	names[3] = REHEARSAL_FILE;
	names[4] = OFFSITE_FILE;
	memset(&dot, 0, sizeof(dot));
	dot.attr.st_mode = S_IFDIR;
	if (after < KEY_DOT && add(ctx, ".", &dot, NULL, 0, KEY_DOT))
		return 0;
	if (after < KEY_DOTDOT && add(ctx, "..", &dot, NULL, 0, KEY_DOTDOT))
		return 0;
	for (int i = 0; i < nkinds; i++)
		if (have[i] && after < 3 + i && add(ctx, names[i], &e[i], NULL, 0, 3 + i))
			return 0;
	return 0;
}

static int open_backup_db(struct bfs *fs, fuse_ino_t ino, struct fuse_file_info *fi,
                          struct bfs_source *src);

/* meta.json: the store's NAME.db.meta, read at open. */
static int render_meta(struct bfs *fs, fuse_ino_t ino, char **out, size_t *len)
{
	char name[BRI_NAME_MAX + 1];
	struct bri_entry *b;

	pthread_rwlock_rdlock(&fs->cat_lock);
	b = entry_of(fs, ino);
	if (b)
		snprintf(name, sizeof(name), "%s", b->name);
	pthread_rwlock_unlock(&fs->cat_lock);
	if (!b)
		return -ENOENT;
	return bri_store_sidecar_read(fs->store, name, BRI_SIDECAR_META, BRI_META_MAX_BYTES, out,
	                              len);
}

static int render_verify(struct bfs *fs, fuse_ino_t ino, char **out, size_t *len)
{
	struct bri_verify_result res;
	struct bri_entry *b;
	uint64_t id;

	if (backup_id_of(fs, ino, &id) == 0)
		bfs_fresh_verify(fs, id);
	pthread_rwlock_rdlock(&fs->cat_lock);
	b = entry_of(fs, ino);
	if (b)
		res = b->verify;
	pthread_rwlock_unlock(&fs->cat_lock);
	if (!b)
		return -ESTALE; /* a newer result has another inode: look it up again */
	return bri_verify_render(&res, out, len);
}

static int render_offsite(struct bfs *fs, fuse_ino_t ino, char **out, size_t *len)
{
	char name[BRI_NAME_MAX + 1];
	struct bri_entry *b;
	struct stat want;
	uint64_t id;
	time_t t;

	if (backup_id_of(fs, ino, &id) == 0)
		bfs_fresh_sidecar(fs, id, BRI_SIDECAR_OFFSITE);
	pthread_rwlock_rdlock(&fs->cat_lock);
	b = entry_of(fs, ino);
	if (b) {
		snprintf(name, sizeof(name), "%s", b->name);
		want = b->offsite_st;
	}
	pthread_rwlock_unlock(&fs->cat_lock);
	if (!b)
		return -ESTALE; /* a newer state has another inode: look it up again */
	return bfs_offsite_render(fs, name, &want, out, len, &t);
}

/* ---- the root ---- */

static int attr_root(struct bfs *fs, fuse_ino_t ino, struct fuse_entry_param *e)
{
	int rc = bfs_refresh(fs, false);

	if (rc < 0)
		return rc;
	pthread_rwlock_rdlock(&fs->cat_lock);
	bfs_fill_entry(fs, ino, S_IFDIR | 0755, 4096,
	               fs->root_mtime ? fs->root_mtime : fs->start_time, e);
	e->attr.st_nlink = 7 + fs->cat->n;
	pthread_rwlock_unlock(&fs->cat_lock);
	/*
	 * With default_permissions every path walk checks the root, so
	 * attr_timeout 0 costs a round trip per stat: a warm ls -l of
	 * 10,000 backups then takes ten times longer. 50 ms keeps all of
	 * that gain (docs/benchmark.md) and a dead daemon still fails
	 * every access (ENOTCONN) within 50 ms; listings and reads fail
	 * at once either way.
	 */
	e->attr_timeout = BFS_TTL_ROOT;
	return 0;
}

static int attr_fixed_dir(struct bfs *fs, fuse_ino_t ino, struct fuse_entry_param *e)
{
	bfs_fill_entry(fs, ino, S_IFDIR | 0755, 4096, fs->start_time, e);
	e->entry_timeout = BFS_TTL_LONG;
	e->attr_timeout = BFS_TTL_LONG;
	return 0;
}

static int attr_latest(struct bfs *fs, fuse_ino_t ino, struct fuse_entry_param *e)
{
	const struct bri_entry *b;
	int rc = bfs_refresh(fs, false);

	if (rc < 0)
		return rc;
	pthread_rwlock_rdlock(&fs->cat_lock);
	b = bri_catalog_newest(fs->cat);
	if (b)
		bfs_fill_entry(fs, ino, S_IFLNK | 0777, (off_t)strlen(b->name), b->time, e);
	pthread_rwlock_unlock(&fs->cat_lock);
	return b ? 0 : -ENOENT;
}

/* The backup folder named name; refreshes first. */
static int lookup_root(struct bfs *fs, fuse_ino_t dir, const char *name, struct fuse_entry_param *e,
                       const struct bfs_render **r, int *sub)
{
	const struct bri_entry *b;
	int rc;

	(void)dir;
	(void)r;
	(void)sub;
	if (!strcmp(name, "ctl"))
		return attr_fixed_dir(fs, BFS_INO_CTL, e);
	if (!strcmp(name, "restore"))
		return attr_fixed_dir(fs, BFS_INO_RESTORE, e);
	if (bfs_insp_root_name(name))
		return bfs_insp_root_lookup(fs, name, e);
	rc = bfs_refresh(fs, false);
	if (rc < 0)
		return rc;
	if (!strcmp(name, "latest"))
		return attr_latest(fs, BFS_INO_LATEST, e);
	for (int pass = 0; pass < 2; pass++) {
		pthread_rwlock_rdlock(&fs->cat_lock);
		b = bri_catalog_find(fs->cat, name);
		rc = b ? backup_attr(fs, b, K_BACKUP_DIR, e) : -ENOENT;
		pthread_rwlock_unlock(&fs->cat_lock);
		if (rc != -ENOENT || pass)
			break;
		/* Perhaps just made by another process: look at the store now. */
		rc = bfs_refresh_look(fs);
		if (rc < 0)
			break;
	}
	return rc;
}

/* Most backups added per readdir pass under one hold of cat_lock. */
#define LIST_BATCH 64

static int list_root(struct bfs *fs, fuse_ino_t dir, off_t after, bfs_list_fn add, void *ctx)
{
	struct fuse_entry_param e, batch[LIST_BATCH];
	char *names[LIST_BATCH];
	off_t keys[LIST_BATCH];
	size_t n;
	int rc;

	(void)dir;
	rc = bfs_refresh(fs, false);
	if (rc < 0)
		return rc;
	memset(&e, 0, sizeof(e));
	e.attr.st_mode = S_IFDIR;
	if (after < KEY_DOT && add(ctx, ".", &e, NULL, 0, KEY_DOT))
		return 0;
	if (after < KEY_DOTDOT && add(ctx, "..", &e, NULL, 0, KEY_DOTDOT))
		return 0;
	if (after < KEY_CTL && attr_fixed_dir(fs, BFS_INO_CTL, &e) == 0 &&
	    add(ctx, "ctl", &e, NULL, 0, KEY_CTL))
		return 0;
	if (after < KEY_RESTORE && attr_fixed_dir(fs, BFS_INO_RESTORE, &e) == 0 &&
	    add(ctx, "restore", &e, NULL, 0, KEY_RESTORE))
		return 0;
	if (after < KEY_LATEST && attr_latest(fs, BFS_INO_LATEST, &e) == 0 &&
	    add(ctx, "latest", &e, NULL, 0, KEY_LATEST))
		return 0;
	if (bfs_insp_root_list(fs, after, KEY_INSP, add, ctx))
		return 0;
	/* Backups in the order of their store inode numbers, which name them. */
	do {
		uint64_t from = after > KEY_STORE ? (uint64_t)(after - KEY_STORE) : 0;
		bool any = after >= KEY_STORE;

		n = 0;
		pthread_rwlock_rdlock(&fs->cat_lock);
		for (size_t i = any ? bfs_file_after(fs, from) : 0;
		     i < fs->idmap.nfiles && n < LIST_BATCH && rc == 0; i++) {
			const struct bfs_fileref *f = &fs->idmap.files[i];

			if (f->which != BFS_FILE_DB)
				continue;
			if (bfs_insp_root_name(f->e->name)) {
				log_shadowed(f->e->name);
				continue;
			}
			rc = backup_attr(fs, f->e, K_BACKUP_DIR, &batch[n]);
			names[n] = rc == 0 ? strdup(f->e->name) : NULL;
			if (rc == 0 && !names[n])
				rc = -ENOMEM;
			keys[n] = KEY_STORE + (off_t)(f->st_ino & (UINT64_MAX >> 2));
			if (rc == 0)
				n++;
		}
		pthread_rwlock_unlock(&fs->cat_lock);
		for (size_t i = 0; i < n; i++) {
			if (rc == 0 && add(ctx, names[i], &batch[i], NULL, 0, keys[i]))
				rc = 1; /* full */
			after = keys[i];
			free(names[i]);
		}
	} while (n == LIST_BATCH && rc == 0);
	return rc < 0 ? rc : 0;
}

/* ---- ctl/ (the files' own logic is ctl.c's and gen.c's) ---- */

/*
 * ctl/log is a window on the log's stream (bri_log_window) that only grows
 * until the oldest half of the lines is dropped, a new epoch: each epoch is
 * an inode of its own, index BFS_CTL_LOG | epoch << LOG_EPOCH_SHIFT, whose
 * offsets are relative to the epoch's first line.
 */
#define LOG_EPOCH_SHIFT 8

static fuse_ino_t log_ino(uint64_t epoch)
{
	return bfs_ino_fixed((uint64_t)BFS_CTL_LOG | epoch << LOG_EPOCH_SHIFT, K_CTL_FILE);
}

/* Whether ctl file i's content is rendered into versions (a new inode each). */
static bool ctl_versioned(int i)
{
	return bfs_ctl_files[i].render && i != BFS_CTL_LOG;
}

/* The ctl file index of ino (fixed: its index; a version: its node's). */
static int ctl_index(struct bfs *fs, fuse_ino_t ino)
{
	const struct bfs_render *r;
	int sub = -1;

	if (!(ino & BFS_SPACE_VERSION)) {
		uint64_t idx = bfs_ino_index(ino);

		/* ctl/log's index carries the log's epoch above LOG_EPOCH_SHIFT. */
		if ((idx & ((1u << LOG_EPOCH_SHIFT) - 1)) == BFS_CTL_LOG)
			return BFS_CTL_LOG;
		return idx < BFS_CTL_COUNT ? (int)idx : -1;
	}
	if (bfs_node_render(fs, ino, &r, &sub) < 0)
		return -1;
	bfs_render_put(r);
	return sub;
}

/* The ctl files' time: the catalog's last change (stable while nothing changes). */
static time_t ctl_time(struct bfs *fs)
{
	time_t t;

	pthread_rwlock_rdlock(&fs->cat_lock);
	t = fs->cat_changed > fs->start_time ? fs->cat_changed : fs->start_time;
	pthread_rwlock_unlock(&fs->cat_lock);
	return t;
}

/*
 * Entry of ctl file i: a write-only file and ctl/log have a fixed inode; a
 * readable one is rendered now and its content version is its inode.
 */
static int ctl_entry(struct bfs *fs, int i, struct fuse_entry_param *e, const struct bfs_render **r)
{
	const struct bfs_ctl_file *c = &bfs_ctl_files[i];
	fuse_ino_t base = bfs_ino_fixed((uint64_t)i, K_CTL_FILE);
	char *text;
	size_t len;
	int rc;

	*r = NULL;
	if (i == BFS_CTL_LOG) {
		uint64_t start, epoch, end;

		bfs_audit_follow(fs); /* operations of other processes join the log first */
		end = bri_log_end(&start, &epoch);
		bfs_fill_entry(fs, log_ino(epoch), S_IFREG | c->mode, (off_t)(end - start),
		               ctl_time(fs), e);
		return 0; /* grows: attributes looked at each time */
	}
	if (!ctl_versioned(i)) {
		bfs_fill_entry(fs, base, S_IFREG | c->mode, 0, ctl_time(fs), e);
		e->attr_timeout = BFS_TTL_LONG;
		return 0;
	}
	rc = bfs_render_ctl(fs, i, &text, &len);
	if (rc == 0)
		rc = bfs_render_intern(fs, base, text, len, r);
	if (rc != 0) /* 0 or a negative errno: *r is set only on 0 */
		return rc;
	bfs_fill_entry(fs, bfs_ino_version((*r)->gen, K_CTL_FILE), S_IFREG | c->mode,
	               (off_t)(*r)->len, ctl_time(fs), e);
	e->attr_timeout = BFS_TTL_LONG; /* this version never changes */
	return 0;
}

static int attr_ctl_file(struct bfs *fs, fuse_ino_t ino, struct fuse_entry_param *e)
{
	const struct bfs_render *r;
	int i = ctl_index(fs, ino), rc;

	if (i < 0)
		return -ENOENT;
	if (ino & BFS_SPACE_VERSION) {
		bfs_fill_entry(fs, ino, S_IFREG | bfs_ctl_files[i].mode, 0, ctl_time(fs), e);
		rc = bfs_node_attr(fs, ino, &e->attr);
		e->attr_timeout = BFS_TTL_LONG;
		return rc;
	}
	rc = ctl_entry(fs, i, e, &r);
	bfs_render_put(r);
	/* An older epoch of ctl/log: what the node last showed. */
	return rc == 0 && e->ino != ino ? -ESTALE : rc;
}

static int lookup_ctl(struct bfs *fs, fuse_ino_t dir, const char *name, struct fuse_entry_param *e,
                      const struct bfs_render **r, int *sub)
{
	(void)dir;
	for (int i = 0; i < BFS_CTL_COUNT; i++) {
		if (strcmp(name, bfs_ctl_files[i].name))
			continue;
		*sub = i;
		return ctl_entry(fs, i, e, r);
	}
	return -ENOENT;
}

static int list_ctl(struct bfs *fs, fuse_ino_t dir, off_t after, bfs_list_fn add, void *ctx)
{
	struct fuse_entry_param e;
	const struct bfs_render *r;

	(void)dir;
	memset(&e, 0, sizeof(e));
	e.attr.st_mode = S_IFDIR;
	if (after < KEY_DOT && add(ctx, ".", &e, NULL, 0, KEY_DOT))
		return 0;
	if (after < KEY_DOTDOT && add(ctx, "..", &e, NULL, 0, KEY_DOTDOT))
		return 0;
	for (int i = 0; i < BFS_CTL_COUNT; i++) {
		if (after >= KEY_STORE + i)
			continue;
		if (ctl_entry(fs, i, &e, &r) < 0)
			continue;
		if (add(ctx, bfs_ctl_files[i].name, &e, r, i, KEY_STORE + i))
			return 0;
	}
	return 0;
}

static int open_ctl_file(struct bfs *fs, fuse_ino_t ino, struct fuse_file_info *fi,
                         struct bfs_source *src)
{
	int acc = fi->flags & O_ACCMODE;
	int i = ctl_index(fs, ino), sub;
	int rc;

	if (i < 0)
		return -ESTALE;
	rc = bfs_refresh(fs, false);
	if (rc < 0)
		return rc;
	src->ctl = i;
	fi->direct_io = 1;
	if (acc != O_RDONLY) {
		if (!bfs_ctl_files[i].run)
			return -EACCES;
		src->writer = true; /* starts with an empty request, reads as empty */
		return 0;
	}
	if (i == BFS_CTL_LOG) {
		src->log = true;
		src->log_epoch = bfs_ino_index(ino) >> LOG_EPOCH_SHIFT;
		return 0;
	}
	if (!(ino & BFS_SPACE_VERSION))
		return 0; /* write-only: reads as empty */
	/* Exactly the version this inode stands for. */
	return bfs_node_render(fs, ino, &src->render, &sub);
}

/* ---- restore/ ---- */

static int lookup_restore(struct bfs *fs, fuse_ino_t dir, const char *name,
                          struct fuse_entry_param *e, const struct bfs_render **r, int *sub)
{
	(void)dir;
	(void)r;
	(void)sub;
	return bfs_restore_lookup(fs, name, e);
}

/* One entry of restore/: a report's id (its inode's index and its key) and its file name. */
struct report_ent {
	uint64_t id;
	char name[BRI_NAME_MAX + 8];
};

static int report_ent_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct report_ent *)a)->id, y = ((const struct report_ent *)b)->id;

	return x < y ? -1 : x > y;
}

/* Every report the store keeps (at most BRI_REPORTS_MAX), keyed by its id. */
static int list_restore(struct bfs *fs, fuse_ino_t dir, off_t after, bfs_list_fn add, void *ctx)
{
	struct report_ent *ents;
	struct fuse_entry_param e;
	size_t n;

	(void)dir;
	memset(&e, 0, sizeof(e));
	e.attr.st_mode = S_IFDIR;
	if (after < KEY_DOT && add(ctx, ".", &e, NULL, 0, KEY_DOT))
		return 0;
	if (after < KEY_DOTDOT && add(ctx, "..", &e, NULL, 0, KEY_DOTDOT))
		return 0;
	bfs_reports_sync(fs);
	pthread_rwlock_rdlock(&fs->cat_lock);
	n = fs->nreports;
	ents = calloc(n + 1, sizeof(*ents));
	for (size_t i = 0; ents && i < n; i++) {
		ents[i].id = fs->reports[i].id;
		snprintf(ents[i].name, sizeof(ents[i].name), "%s.report", fs->reports[i].name);
	}
	pthread_rwlock_unlock(&fs->cat_lock);
	if (!ents)
		return -ENOMEM;
	qsort(ents, n, sizeof(*ents), report_ent_cmp);
	for (size_t i = 0; i < n; i++) {
		off_t key = KEY_STORE + (off_t)ents[i].id;

		if (after >= key ||
		    bfs_getattr_ino(fs, bfs_ino_fixed(ents[i].id, K_REPORT), &e) < 0)
			continue;
		if (add(ctx, ents[i].name, &e, NULL, 0, key))
			break;
	}
	free(ents);
	return 0;
}

static int render_report(struct bfs *fs, fuse_ino_t ino, char **out, size_t *len)
{
	return bfs_render_report(fs, bfs_ino_index(ino), out, len);
}

static int attr_report(struct bfs *fs, fuse_ino_t ino, struct fuse_entry_param *e)
{
	uint64_t id = bfs_ino_index(ino);
	time_t t = 0;
	char *text;
	size_t len;
	int rc;

	rc = bfs_render_report(fs, id, &text, &len);
	if (rc < 0)
		return rc;
	free(text);
	pthread_rwlock_rdlock(&fs->cat_lock);
	for (size_t i = 0; i < fs->nreports; i++)
		if (fs->reports[i].id == id)
			t = fs->reports[i].time;
	pthread_rwlock_unlock(&fs->cat_lock);
	bfs_fill_entry(fs, ino, S_IFREG | 0444, (off_t)len, t, e);
	return 0;
}

/* latest's target: the newest backup's name. */
static int readlink_latest(struct bfs *fs, fuse_ino_t ino, char *buf, size_t size)
{
	const struct bri_entry *b;
	int rc = bfs_refresh(fs, false);

	(void)ino;
	if (rc < 0)
		return rc;
	pthread_rwlock_rdlock(&fs->cat_lock);
	b = bri_catalog_newest(fs->cat);
	if (b)
		snprintf(buf, size, "%s", b->name);
	pthread_rwlock_unlock(&fs->cat_lock);
	return b ? 0 : -ENOENT;
}

/* ---- the table: one row per kind of this file ---- */

#define STORE_SPACES (BFS_IN_STORE | BFS_IN_FIXED) /* fixed: store inode numbers too large */

static const struct bfs_kind_ops bfs_kinds[BFS_K_COUNT] = {
    [K_ROOT] = {.name = "root",
                .mode = S_IFDIR | 0755,
                .spaces = BFS_IN_FIXED,
                .singleton = true,
                .attr = attr_root,
                .lookup = lookup_root,
                .list = list_root},
    [K_CTL_DIR] = {.name = "ctl/",
                   .mode = S_IFDIR | 0755,
                   .spaces = BFS_IN_FIXED,
                   .singleton = true,
                   .attr = attr_fixed_dir,
                   .lookup = lookup_ctl,
                   .list = list_ctl},
    [K_RESTORE_DIR] = {.name = "restore/",
                       .mode = S_IFDIR | 0755,
                       .spaces = BFS_IN_FIXED,
                       .singleton = true,
                       .attr = attr_fixed_dir,
                       .lookup = lookup_restore,
                       .list = list_restore},
    [K_LATEST] = {.name = "latest",
                  .mode = S_IFLNK | 0777,
                  .spaces = BFS_IN_FIXED,
                  .singleton = true,
                  .attr = attr_latest,
                  .readlink = readlink_latest},
    [K_CTL_FILE] = {.name = "ctl file",
                    .mode = S_IFREG,
                    .spaces = BFS_IN_FIXED | BFS_IN_VERSION,
                    .attr = attr_ctl_file,
                    .open = open_ctl_file},
    [K_REPORT] = {.name = "restore report",
                  .mode = S_IFREG | 0444,
                  .spaces = BFS_IN_FIXED,
                  .attr = attr_report,
                  .open = bfs_open_generated,
                  .render = render_report},
    [K_BACKUP_DIR] = {.name = "backup folder",
                      .mode = S_IFDIR | 0700,
                      .spaces = STORE_SPACES,
                      .attr = attr_backup,
                      .lookup = lookup_backup,
                      .list = list_backup,
                      .entry_attr = dir_attr},
    [K_BACKUP_DB] = {.name = "backup file",
                     .mode = S_IFREG | 0400,
                     .spaces = STORE_SPACES,
                     .attr = attr_backup,
                     .open = open_backup_db,
                     .entry_attr = db_attr},
    [K_META] = {.name = "meta.json",
                .mode = S_IFREG | 0400,
                .spaces = STORE_SPACES,
                .attr = attr_backup,
                .open = bfs_open_generated,
                .render = render_meta,
                .entry_attr = meta_attr},
    [K_VERIFY] = {.name = "verify",
                  .mode = S_IFREG | 0400,
                  .spaces = STORE_SPACES,
                  .attr = attr_backup,
                  .open = bfs_open_generated,
                  .render = render_verify,
                  .entry_attr = verify_attr},
    [K_VERIFY_NONE] = {.name = "verify (no result)",
                       .mode = S_IFREG | 0400,
                       .spaces = STORE_SPACES,
                       .attr = attr_backup,
                       .open = bfs_open_generated,
                       .render = render_verify,
                       .entry_attr = verify_attr},
    [K_REHEARSAL] = {.name = "rehearsal",
                     .mode = S_IFREG | 0400,
                     .spaces = STORE_SPACES,
                     .attr = attr_backup,
                     .open = bfs_open_generated,
                     .render = render_rehearsal,
                     .entry_attr = rehearsal_attr},
    [K_REHEARSAL_NONE] = {.name = "rehearsal (never)",
                          .mode = S_IFREG | 0400,
                          .spaces = STORE_SPACES,
                          .attr = attr_backup,
                          .open = bfs_open_generated,
                          .render = render_rehearsal,
                          .entry_attr = rehearsal_attr},
    [K_OFFSITE] = {.name = "offsite",
                   .mode = S_IFREG | 0400,
                   .spaces = STORE_SPACES,
                   .attr = attr_backup,
                   .open = bfs_open_generated,
                   .render = render_offsite,
                   .entry_attr = offsite_attr},
    [K_OFFSITE_NONE] = {.name = "offsite (pending)",
                        .mode = S_IFREG | 0400,
                        .spaces = STORE_SPACES,
                        .attr = attr_backup,
                        .open = bfs_open_generated,
                        .render = render_offsite,
                        .entry_attr = offsite_attr},
};

/* Every module's table of kinds (fs.h). */
static const struct bfs_kind_ops *const kind_tables[] = {bfs_kinds, bfs_insp_kinds};

int bfs_kinds_check(void)
{
	for (unsigned k = 0; k < BFS_K_COUNT; k++) {
		int rows = 0;

		for (size_t t = 0; t < sizeof(kind_tables) / sizeof(kind_tables[0]); t++)
			rows += kind_tables[t][k].name != NULL;
		if (rows > 1 || (k == 0 && rows)) {
			bri_log(BRI_LOG_ERR, "node kind %u has %d rows: renumber the new kind", k,
			        rows);
			return -EINVAL;
		}
	}
	return 0;
}

const struct bfs_kind_ops *bfs_kind_of(fuse_ino_t ino)
{
	unsigned k = bfs_ino_kind(ino);

	for (size_t t = 0; t < sizeof(kind_tables) / sizeof(kind_tables[0]); t++) {
		const struct bfs_kind_ops *row = &kind_tables[t][k];

		if (!row->name)
			continue;
		/* Each kind lives in its id spaces (inode.c). */
		if (!(row->spaces & (1u << (ino >> 62))))
			return NULL;
		if (row->singleton && ino != (fuse_ino_t)k)
			return NULL;
		return row;
	}
	return NULL;
}

fuse_ino_t bfs_ino_backup_dir(const struct bri_entry *b)
{
	return bfs_ino_store(b, &b->db_st, K_BACKUP_DIR);
}

fuse_ino_t bfs_ino_backup_db(const struct bri_entry *b)
{
	return bfs_ino_store(b, &b->db_st, K_BACKUP_DB);
}

fuse_ino_t bfs_ino_report(uint64_t id)
{
	return bfs_ino_fixed(id, K_REPORT);
}

bool bfs_ino_is_backup_dir(fuse_ino_t ino)
{
	return bfs_ino_kind(ino) == K_BACKUP_DIR && bfs_kind_of(ino);
}

/*
 * Opens a backup's bytes through the store's reader: the one place the
 * daemon opens a backup file for reading. The plain format's reader has a
 * descriptor, kept for splice; the kernel may keep the pages unless the
 * file changed in place since the catalog saw it.
 */
static int open_backup_db(struct bfs *fs, fuse_ino_t ino, struct fuse_file_info *fi,
                          struct bfs_source *src)
{
	char name[BRI_NAME_MAX + 1];
	struct bri_reader *r;
	struct bri_entry *b;
	uint64_t id = 0;
	struct stat st;
	int rc;

	rc = bfs_refresh(fs, false);
	if (rc < 0)
		return rc;
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))
		return -EROFS;
	pthread_rwlock_rdlock(&fs->cat_lock);
	b = entry_of(fs, ino);
	if (b) {
		snprintf(name, sizeof(name), "%s", b->name);
		id = b->id;
	}
	pthread_rwlock_unlock(&fs->cat_lock);
	if (!b)
		return -ENOENT;
	rc = bri_store_open_reader(fs->store, name, &r, NULL);
	if (rc < 0)
		return rc;
	fi->keep_cache = 1;
	if (r->fd < 0) {
		/* A format without a file (pages): reads go through the reader,
		 * which assembles the database from its pages. */
		src->reader = r;
		if (bfs_db_check(fs, id, &r->st))
			fi->keep_cache = 0;
		return 0;
	}
	/* Taken over from the reader. */
	src->fd = r->fd;
	r->fd = -1;
	bri_reader_close(r);
	if (fstat(src->fd, &st) == 0 && bfs_db_check(fs, id, &st))
		fi->keep_cache = 0;
	return 0;
}

/* meta.json, verify, a report, a README: see fs.h. */
int bfs_open_generated(struct bfs *fs, fuse_ino_t ino, struct fuse_file_info *fi,
                       struct bfs_source *src)
{
	const struct bfs_kind_ops *k = bfs_kind_of(ino);
	char *text;
	size_t len;
	int rc;

	rc = bfs_refresh(fs, false);
	if (rc < 0)
		return rc;
	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))
		return -EROFS;
	rc = k->render(fs, ino, &text, &len);
	if (rc < 0)
		return rc;
	rc = bfs_render_intern(fs, ino, text, len, &src->render);
	if (rc == -EFBIG)
		bri_log(BRI_LOG_ERR, "inode %lu: rendering of %zu bytes over the cap refused",
		        (unsigned long)ino, len);
	/* A store file's content never changes under its inode: cache it. */
	if (bfs_ino_kind(ino) == K_META)
		fi->keep_cache = 1;
	else
		fi->direct_io = 1;
	return rc;
}

/* ---- the operations ---- */

int bfs_getattr_ino(struct bfs *fs, fuse_ino_t ino, struct fuse_entry_param *e)
{
	const struct bfs_kind_ops *k = bfs_kind_of(ino);

	return k ? k->attr(fs, ino, e) : -ENOENT;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	bfs_count(req, BFS_REQ_LOOKUP);
	const struct bfs_kind_ops *k = bfs_kind_of(parent);
	const struct bfs_render *r = NULL;
	struct bfs *fs = bfs_of(req);
	struct fuse_entry_param e;
	int rc, sub = 0;

	if (!k)
		rc = -ENOENT;
	else if (!k->lookup)
		rc = -ENOTDIR;
	else
		rc = k->lookup(fs, parent, name, &e, &r, &sub);
	if (rc == 0)
		rc = bfs_node_ref(fs, &e, r, sub); /* consumes r */
	else
		bfs_render_put(r);
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else if (fuse_reply_entry(req, &e) < 0)
		bfs_node_forget(fs, e.ino, 1); /* the lookup was interrupted */
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	bfs_count(req, BFS_REQ_FORGET);
	bfs_node_forget(bfs_of(req), ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	bfs_count(req, BFS_REQ_FORGET);
	for (size_t i = 0; i < count; i++)
		bfs_node_forget(bfs_of(req), forgets[i].ino, forgets[i].nlookup);
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	bfs_count(req, BFS_REQ_GETATTR);
	struct bfs *fs = bfs_of(req);
	struct fuse_entry_param e;
	int rc;

	(void)fi;
	rc = bfs_getattr_ino(fs, ino, &e);
	/*
	 * A node answers by its inode until the kernel forgets it: fstat of an
	 * open backup after its deletion, or an older version of a file.
	 */
	if (rc == -ENOENT || rc == -ESTALE) {
		e.attr_timeout = 0;
		if (bfs_node_attr(fs, ino, &e.attr) == 0)
			rc = 0;
	}
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &e.attr, e.attr_timeout);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct bfs *fs = bfs_count(req, BFS_REQ_READLINK);
	const struct bfs_kind_ops *k = bfs_kind_of(ino);
	char buf[BRI_NAME_MAX + 8];
	int rc;

	rc = k && k->readlink ? k->readlink(fs, ino, buf, sizeof(buf)) : -EINVAL;
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_readlink(req, buf);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	bfs_count(req, BFS_REQ_OPENDIR);
	struct bfs *fs = bfs_of(req);
	const struct bfs_kind_ops *k = bfs_kind_of(ino);

	if (!k || !k->list) {
		fuse_reply_err(req, k ? ENOTDIR : ENOENT);
		return;
	}
	if (fs->no_opendir) {
		fuse_reply_err(req, ENOSYS); /* listings need no open: see readdir */
		return;
	}
	fi->fh = 0;
	if (bfs_ino_kind(ino) == K_BACKUP_DIR) {
		/* A backup's names never change: the kernel may keep the listing. */
		fi->cache_readdir = 1;
		fi->keep_cache = 1;
	}
	fuse_reply_open(req, fi);
}

/* One readdir reply being filled. */
struct readdir_ctx {
	fuse_req_t req;
	struct bfs *fs;
	char *buf;   /* the reply */
	size_t size; /* its room */
	size_t pos;  /* bytes used */
	bool plus;   /* readdirplus: entries count as lookups */
};

static int readdir_add(void *arg, const char *name, const struct fuse_entry_param *e,
                       const struct bfs_render *r, int sub, off_t key)
{
	struct readdir_ctx *c = arg;
	bool dot = !e->ino;
	size_t need;

	if (!c->plus) {
		bfs_render_put(r);
		need = fuse_add_direntry(c->req, c->buf + c->pos, c->size - c->pos, name, &e->attr,
		                         key);
		if (need > c->size - c->pos)
			return 1;
		c->pos += need;
		return 0;
	}
	/* The kernel counts a lookup for each entry but "." and "..". */
	if (!dot && bfs_node_ref(c->fs, e, r, sub) < 0)
		return 1;
	if (dot)
		bfs_render_put(r);
	need = fuse_add_direntry_plus(c->req, c->buf + c->pos, c->size - c->pos, name, e, key);
	if (need > c->size - c->pos) {
		if (!dot)
			bfs_node_forget(c->fs, e->ino, 1);
		return 1;
	}
	c->pos += need;
	return 0;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	const struct bfs_kind_ops *k = bfs_kind_of(ino);
	struct readdir_ctx c = {req, bfs_of(req), NULL, size, 0, plus};
	int rc;

	if (!k || !k->list) {
		fuse_reply_err(req, k ? ENOTDIR : ENOENT);
		return;
	}
	c.buf = malloc(size ? size : 1);
	if (!c.buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	rc = k->list(c.fs, ino, off, readdir_add, &c);
	if (rc < 0 && c.pos == 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_buf(req, c.buf, c.pos);
	free(c.buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
	bfs_count(req, BFS_REQ_READDIR);
	(void)fi;
	do_readdir(req, ino, size, off, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
	bfs_count(req, BFS_REQ_READDIRPLUS);
	(void)fi;
	do_readdir(req, ino, size, off, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	bfs_count(req, BFS_REQ_RELEASEDIR);
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
	bfs_count(req, BFS_REQ_SETATTR);
	const int allowed = FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
	                    FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME;
	struct bfs *fs = bfs_of(req);
	enum view_kind k = bfs_ino_kind(ino);
	struct fuse_entry_param e;
	int ctl = -1;
	int rc;

	(void)fi;
	if (!bfs_kind_of(ino)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (k == K_CTL_FILE)
		ctl = ctl_index(fs, ino);
	/* Truncating a ctl/ request file (echo > ctl/create) is a no-op. */
	if (ctl >= 0 && bfs_ctl_files[ctl].run && (to_set & FUSE_SET_ATTR_SIZE) &&
	    attr->st_size == 0 && !(to_set & ~allowed)) {
		rc = bfs_getattr_ino(fs, ino, &e);
		if (rc < 0)
			fuse_reply_err(req, -rc);
		else
			fuse_reply_attr(req, &e.attr, 0);
		return;
	}
	fuse_reply_err(req, k == K_CTL_FILE || k == K_CTL_DIR ? EPERM : EROFS);
}

static void op_refuse_entry(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	bfs_count(req, BFS_REQ_REFUSED);
	(void)parent;
	(void)name;
	(void)mode;
	fuse_reply_err(req, EROFS);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	(void)rdev;
	op_refuse_entry(req, parent, name, mode);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
	(void)fi;
	op_refuse_entry(req, parent, name, mode);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	op_refuse_entry(req, parent, name, 0);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link;
	op_refuse_entry(req, parent, name, 0);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino;
	op_refuse_entry(req, newparent, newname, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	bfs_count(req, BFS_REQ_STATFS);
	struct bfs *fs = bfs_of(req);
	struct statvfs sv;

	(void)ino;
	if (fstatvfs(fs->store->dirfd, &sv) < 0)
		fuse_reply_err(req, errno);
	else
		fuse_reply_statfs(req, &sv);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct bfs *fs = userdata;

	/* Listings without OPENDIR round trips: opendir answers ENOSYS. */
	if (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT)
		fs->no_opendir = true;
	bri_log(BRI_LOG_DEBUG, "kernel %s listing without opendir",
	        fs->no_opendir ? "supports" : "does not support");
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
	if (conn->capable & FUSE_CAP_SPLICE_WRITE)
		conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

const struct fuse_lowlevel_ops bfs_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_refuse_entry,
    .unlink = op_unlink,
    .rmdir = op_unlink,
    .symlink = op_symlink,
    .rename = bfs_rename,
    .link = op_link,
    .open = bfs_open,
    .read = bfs_read,
    .write = bfs_write,
    .flush = bfs_flush,
    .release = bfs_release,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .statfs = op_statfs,
    .create = op_create,
};
