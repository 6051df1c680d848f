/*
 * The FUSE low-level operations of the view: lookup, getattr, readlink,
 * opendir/readdir(plus), statfs, and the refusal of every change inside
 * the view (EROFS). Backup trees get long cache lifetimes; the root, ctl/,
 * restore/ and verify files get none. Directory listings are built once at
 * opendir and kept in fi->fh. Open files are file.c's, rename (mv into
 * restore/) restore_dir.c's. Every handler replies exactly once.
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
#include "bri/verify.h"
#include "fs.h"

#define META_FILE   "meta.json"
#define VERIFY_FILE "verify"

/* One name of a listing. */
struct bfs_dirent {
	char *name;                /* entry name */
	struct fuse_entry_param e; /* ino and attributes (for readdirplus) */
};

/* A listing built at opendir. */
struct bfs_dir {
	struct bfs_dirent *ents; /* the names, "." and ".." first */
	size_t n;                /* entries used */
	size_t cap;              /* entries allocated */
};

struct bfs *bfs_of(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static void fill_common(struct bfs *fs, fuse_ino_t ino, mode_t mode, off_t size, time_t t,
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

/* Attributes of a backup's file; call with cat_lock held. */
static int backup_attr(struct bfs *fs, const struct bri_entry *b, enum bfs_bkind kind,
                       struct fuse_entry_param *e)
{
	fuse_ino_t ino = bfs_ino(b->id, kind);
	char *text;
	size_t len;
	time_t t;
	int rc;

	switch (kind) {
	case BFS_B_DIR:
		fill_common(fs, ino, S_IFDIR | 0700, 4096, b->time, e);
		break;
	case BFS_B_DB:
		fill_common(fs, ino, S_IFREG | 0400, b->db_st.st_size, b->time, e);
		break;
	case BFS_B_META:
		if (!b->meta_st.st_ino)
			return -ENOENT;
		fill_common(fs, ino, S_IFREG | 0400, b->meta_st.st_size, b->time, e);
		break;
	case BFS_B_VERIFY:
		rc = bri_verify_render(&b->verify, &text, &len);
		if (rc < 0)
			return rc;
		free(text);
		t = b->verify.checked ? b->verify.checked : b->time;
		fill_common(fs, ino, S_IFREG | 0400, (off_t)len, t, e);
		e->entry_timeout = BFS_TTL_LONG;
		return 0; /* attributes change: attr_timeout 0 */
	default:
		return -ENOENT;
	}
	e->entry_timeout = BFS_TTL_LONG;
	e->attr_timeout = BFS_TTL_LONG;
	return 0;
}

/*
 * Attributes of a ctl/ file. Its time is the catalog's last change (stable
 * while nothing changes, so tar and rsync see an unchanged file); its size
 * is that of the content rendered now.
 */
static int ctl_attr(struct bfs *fs, int ctl, struct fuse_entry_param *e)
{
	const struct bfs_ctl_file *c = &bfs_ctl_files[ctl];
	size_t len = 0;
	time_t t;
	char *text;
	int rc;

	pthread_rwlock_rdlock(&fs->cat_lock);
	t = fs->cat_changed > fs->start_time ? fs->cat_changed : fs->start_time;
	pthread_rwlock_unlock(&fs->cat_lock);
	if (c->render) {
		rc = bfs_render_ctl(fs, ctl, &text, &len);
		if (rc < 0)
			return rc;
		free(text);
	}
	fill_common(fs, BFS_INO_CTL_FIRST + (fuse_ino_t)ctl, S_IFREG | c->mode, (off_t)len, t, e);
	return 0;
}

int bfs_getattr_ino(struct bfs *fs, fuse_ino_t ino, struct fuse_entry_param *e)
{
	const struct bri_entry *b;
	struct bfs_node n;
	char *text;
	size_t len;
	int rc;

	rc = bfs_node_of(ino, &n);
	if (rc < 0)
		return rc;
	switch (n.type) {
	case BFS_N_ROOT:
		pthread_rwlock_rdlock(&fs->cat_lock);
		fill_common(fs, ino, S_IFDIR | 0755, 4096,
		            fs->root_mtime ? fs->root_mtime : fs->start_time, e);
		e->attr.st_nlink = 4 + fs->cat->n;
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
	case BFS_N_CTL:
	case BFS_N_RESTORE:
		/* Fixed attributes; their listings are built at each opendir. */
		fill_common(fs, ino, S_IFDIR | 0755, 4096, fs->start_time, e);
		e->entry_timeout = BFS_TTL_LONG;
		e->attr_timeout = BFS_TTL_LONG;
		return 0;
	case BFS_N_LATEST:
		pthread_rwlock_rdlock(&fs->cat_lock);
		b = bri_catalog_newest(fs->cat);
		if (b)
			fill_common(fs, ino, S_IFLNK | 0777, (off_t)strlen(b->name), b->time, e);
		pthread_rwlock_unlock(&fs->cat_lock);
		return b ? 0 : -ENOENT;
	case BFS_N_CTLFILE:
		return ctl_attr(fs, n.ctl, e);
	case BFS_N_BACKUP:
		if (n.bkind == BFS_B_REPORT) {
			time_t t = 0;

			rc = bfs_render_report(fs, n.id, &text, &len);
			if (rc < 0)
				return rc;
			free(text);
			pthread_rwlock_rdlock(&fs->cat_lock);
			for (size_t i = 0; i < fs->nreports; i++)
				if (fs->reports[i].id == n.id)
					t = fs->reports[i].time;
			pthread_rwlock_unlock(&fs->cat_lock);
			fill_common(fs, ino, S_IFREG | 0444, (off_t)len, t, e);
			return 0;
		}
		if (n.bkind == BFS_B_DB)
			bfs_db_check(fs, n.id, NULL); /* changed in place: the new size */
		pthread_rwlock_rdlock(&fs->cat_lock);
		b = bfs_entry_by_id(fs, n.id);
		rc = b ? backup_attr(fs, b, n.bkind, e) : -ENOENT;
		pthread_rwlock_unlock(&fs->cat_lock);
		return rc;
	}
	return -ENOENT;
}

/* The id of backup name in the current catalog; 0 and *id, or -ENOENT. */
static int backup_id(struct bfs *fs, const char *name, uint64_t *id)
{
	const struct bri_entry *b;

	pthread_rwlock_rdlock(&fs->cat_lock);
	b = bri_catalog_find(fs->cat, name);
	if (b)
		*id = b->id;
	pthread_rwlock_unlock(&fs->cat_lock);
	return b ? 0 : -ENOENT;
}

static int lookup_root(struct bfs *fs, const char *name, struct fuse_entry_param *e)
{
	uint64_t id = 0;
	int rc;

	if (!strcmp(name, "ctl"))
		return bfs_getattr_ino(fs, BFS_INO_CTL, e);
	if (!strcmp(name, "restore"))
		return bfs_getattr_ino(fs, BFS_INO_RESTORE, e);
	rc = bfs_refresh(fs, false);
	if (rc < 0)
		return rc;
	if (!strcmp(name, "latest"))
		return bfs_getattr_ino(fs, BFS_INO_LATEST, e);
	rc = backup_id(fs, name, &id);
	if (rc == -ENOENT) {
		/* Perhaps just made by another process: look at the store now. */
		rc = bfs_refresh_look(fs);
		if (rc == 0)
			rc = backup_id(fs, name, &id);
	}
	if (rc < 0)
		return rc;
	return bfs_getattr_ino(fs, bfs_ino(id, BFS_B_DIR), e);
}

static int lookup_backup(struct bfs *fs, uint64_t id, const char *name, struct fuse_entry_param *e)
{
	enum bfs_bkind kind;

	if (!strcmp(name, fs->store->db_filename))
		kind = BFS_B_DB;
	else if (!strcmp(name, META_FILE))
		kind = BFS_B_META;
	else if (!strcmp(name, VERIFY_FILE))
		kind = BFS_B_VERIFY;
	else
		return -ENOENT;
	return bfs_getattr_ino(fs, bfs_ino(id, kind), e);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct bfs *fs = bfs_of(req);
	struct fuse_entry_param e;
	struct bfs_node n;
	int rc;

	rc = bfs_node_of(parent, &n);
	if (rc < 0)
		goto out_reply;
	switch (n.type) {
	case BFS_N_ROOT:
		rc = lookup_root(fs, name, &e);
		break;
	case BFS_N_CTL:
		rc = -ENOENT;
		for (int i = 0; i < BFS_CTL_COUNT; i++)
			if (!strcmp(name, bfs_ctl_files[i].name))
				rc = bfs_getattr_ino(fs, BFS_INO_CTL_FIRST + (fuse_ino_t)i, &e);
		break;
	case BFS_N_RESTORE:
		rc = bfs_restore_lookup(fs, name, &e);
		break;
	case BFS_N_BACKUP:
		rc = n.bkind == BFS_B_DIR ? lookup_backup(fs, n.id, name, &e) : -ENOTDIR;
		break;
	default:
		rc = -ENOTDIR;
	}
out_reply:
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_entry(req, &e);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	(void)ino;
	(void)nlookup;
	fuse_reply_none(req); /* inodes are computed, nothing to free */
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	(void)count;
	(void)forgets;
	fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct bfs *fs = bfs_of(req);
	struct fuse_entry_param e;
	struct bfs_node n;
	int rc;

	(void)fi;
	rc = bfs_node_of(ino, &n);
	if (rc < 0)
		goto out_reply;
	if (n.type == BFS_N_ROOT || n.type == BFS_N_LATEST || n.type == BFS_N_CTLFILE ||
	    (n.type == BFS_N_BACKUP && n.bkind == BFS_B_VERIFY)) {
		rc = bfs_refresh(fs, false);
		if (rc < 0)
			goto out_reply;
	}
	if (n.type == BFS_N_BACKUP && n.bkind == BFS_B_VERIFY)
		bfs_fresh_verify(fs, n.id);
	rc = bfs_getattr_ino(fs, ino, &e);
out_reply:
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_attr(req, &e.attr, e.attr_timeout);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct bfs *fs = bfs_of(req);
	char target[BRI_NAME_MAX + 1] = "";
	const struct bri_entry *b;
	int rc;

	if (ino != BFS_INO_LATEST) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	rc = bfs_refresh(fs, false);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	pthread_rwlock_rdlock(&fs->cat_lock);
	b = bri_catalog_newest(fs->cat);
	if (b)
		snprintf(target, sizeof(target), "%s", b->name);
	pthread_rwlock_unlock(&fs->cat_lock);
	if (!target[0])
		fuse_reply_err(req, ENOENT);
	else
		fuse_reply_readlink(req, target);
}

/* Adds one name to a listing; e may be NULL for "." and "..". */
static int dir_add(struct bfs_dir *d, const char *name, const struct fuse_entry_param *e,
                   fuse_ino_t ino, mode_t mode)
{
	struct bfs_dirent *de;

	if (d->n == d->cap) {
		size_t ncap = d->cap ? d->cap * 2 : 16;
		struct bfs_dirent *ne = realloc(d->ents, ncap * sizeof(*ne));

		if (!ne)
			return -ENOMEM;
		d->ents = ne;
		d->cap = ncap;
	}
	de = &d->ents[d->n];
	de->name = strdup(name);
	if (!de->name)
		return -ENOMEM;
	if (e) {
		de->e = *e;
	} else {
		memset(&de->e, 0, sizeof(de->e));
		de->e.attr.st_ino = ino;
		de->e.attr.st_mode = mode;
	}
	d->n++;
	return 0;
}

static void dir_free(struct bfs_dir *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++)
		free(d->ents[i].name);
	free(d->ents);
	free(d);
}

static int list_root(struct bfs *fs, struct bfs_dir *d)
{
	struct fuse_entry_param e;
	int rc;

	rc = bfs_refresh(fs, false);
	if (rc < 0)
		return rc;
	rc = dir_add(d, ".", NULL, BFS_INO_ROOT, S_IFDIR);
	if (rc == 0)
		rc = dir_add(d, "..", NULL, BFS_INO_ROOT, S_IFDIR);
	if (rc == 0 && bfs_getattr_ino(fs, BFS_INO_CTL, &e) == 0)
		rc = dir_add(d, "ctl", &e, 0, 0);
	if (rc == 0 && bfs_getattr_ino(fs, BFS_INO_RESTORE, &e) == 0)
		rc = dir_add(d, "restore", &e, 0, 0);
	if (rc == 0 && bfs_getattr_ino(fs, BFS_INO_LATEST, &e) == 0)
		rc = dir_add(d, "latest", &e, 0, 0);
	if (rc < 0)
		return rc;
	pthread_rwlock_rdlock(&fs->cat_lock);
	for (size_t i = 0; i < fs->cat->n && rc == 0; i++) {
		const struct bri_entry *b = fs->cat->entries[i];

		rc = backup_attr(fs, b, BFS_B_DIR, &e);
		if (rc == 0)
			rc = dir_add(d, b->name, &e, 0, 0);
	}
	pthread_rwlock_unlock(&fs->cat_lock);
	return rc;
}

static int list_backup(struct bfs *fs, fuse_ino_t ino, uint64_t id, struct bfs_dir *d)
{
	static const enum bfs_bkind kinds[] = {BFS_B_DB, BFS_B_META, BFS_B_VERIFY};
	const struct bri_entry *b;
	struct fuse_entry_param e;
	int rc;

	bfs_fresh_verify(fs, id);
	rc = dir_add(d, ".", NULL, ino, S_IFDIR);
	if (rc == 0)
		rc = dir_add(d, "..", NULL, BFS_INO_ROOT, S_IFDIR);
	if (rc < 0)
		return rc;
	pthread_rwlock_rdlock(&fs->cat_lock);
	b = bfs_entry_by_id(fs, id);
	if (!b)
		rc = -ENOENT;
	for (size_t i = 0; b && rc == 0 && i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		const char *name = kinds[i] == BFS_B_DB     ? fs->store->db_filename
		                   : kinds[i] == BFS_B_META ? META_FILE
		                                            : VERIFY_FILE;

		if (backup_attr(fs, b, kinds[i], &e) == 0)
			rc = dir_add(d, name, &e, 0, 0);
	}
	pthread_rwlock_unlock(&fs->cat_lock);
	return rc;
}

static int list_ctl(struct bfs *fs, struct bfs_dir *d)
{
	struct fuse_entry_param e;
	int rc;

	rc = dir_add(d, ".", NULL, BFS_INO_CTL, S_IFDIR);
	if (rc == 0)
		rc = dir_add(d, "..", NULL, BFS_INO_ROOT, S_IFDIR);
	for (int i = 0; i < BFS_CTL_COUNT && rc == 0; i++) {
		rc = ctl_attr(fs, i, &e);
		if (rc == 0)
			rc = dir_add(d, bfs_ctl_files[i].name, &e, 0, 0);
	}
	return rc;
}

static int list_restore(struct bfs *fs, struct bfs_dir *d)
{
	uint64_t ids[64];
	char names[64][BRI_NAME_MAX + 8];
	size_t n = 0;
	int rc;

	rc = dir_add(d, ".", NULL, BFS_INO_RESTORE, S_IFDIR);
	if (rc == 0)
		rc = dir_add(d, "..", NULL, BFS_INO_ROOT, S_IFDIR);
	if (rc < 0)
		return rc;
	/* Copy out the names: attributes take the lock again. Newest 64 shown. */
	bfs_reports_sync(fs);
	pthread_rwlock_rdlock(&fs->cat_lock);
	for (size_t i = fs->nreports; i > 0 && n < 64; i--, n++) {
		ids[n] = fs->reports[i - 1].id;
		snprintf(names[n], sizeof(names[n]), "%s.report", fs->reports[i - 1].name);
	}
	pthread_rwlock_unlock(&fs->cat_lock);
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct fuse_entry_param e;

		if (bfs_getattr_ino(fs, bfs_ino(ids[i], BFS_B_REPORT), &e) == 0)
			rc = dir_add(d, names[i], &e, 0, 0);
	}
	return rc;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct bfs *fs = bfs_of(req);
	struct bfs_dir *d;
	struct bfs_node n;
	int rc;

	rc = bfs_node_of(ino, &n);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	/* A vanished store fails every listing, not only the root's. */
	if (n.type == BFS_N_BACKUP) {
		rc = bfs_refresh(fs, false);
		if (rc < 0) {
			fuse_reply_err(req, -rc);
			return;
		}
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	switch (n.type) {
	case BFS_N_ROOT:
		rc = list_root(fs, d);
		break;
	case BFS_N_CTL:
		rc = list_ctl(fs, d);
		break;
	case BFS_N_RESTORE:
		rc = list_restore(fs, d);
		break;
	case BFS_N_BACKUP:
		rc = n.bkind == BFS_B_DIR ? list_backup(fs, ino, n.id, d) : -ENOTDIR;
		break;
	default:
		rc = -ENOTDIR;
	}
	if (rc < 0) {
		dir_free(d);
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uintptr_t)d;
	if (n.type == BFS_N_BACKUP) {
		/* A backup's names never change: the kernel may keep the listing. */
		fi->cache_readdir = 1;
		fi->keep_cache = 1;
	}
	if (fuse_reply_open(req, fi) == -ENOENT)
		dir_free(d); /* the opener was interrupted */
}

static void do_readdir(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi, bool plus)
{
	struct bfs_dir *d = (struct bfs_dir *)(uintptr_t)fi->fh;
	size_t pos = 0;
	char *buf;

	buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	for (size_t i = (size_t)off; i < d->n; i++) {
		struct bfs_dirent *de = &d->ents[i];
		size_t need;

		if (plus)
			need = fuse_add_direntry_plus(req, buf + pos, size - pos, de->name, &de->e,
			                              (off_t)i + 1);
		else
			need = fuse_add_direntry(req, buf + pos, size - pos, de->name, &de->e.attr,
			                         (off_t)i + 1);
		if (need > size - pos)
			break;
		pos += need;
	}
	fuse_reply_buf(req, buf, pos);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
	(void)ino;
	do_readdir(req, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
	(void)ino;
	do_readdir(req, size, off, fi, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	dir_free((struct bfs_dir *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
	const int allowed = FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
	                    FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME;
	struct bfs *fs = bfs_of(req);
	struct fuse_entry_param e;
	struct bfs_node n;
	int rc;

	(void)fi;
	rc = bfs_node_of(ino, &n);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	/* Truncating a ctl/ request file (echo > ctl/create) is a no-op. */
	if (n.type == BFS_N_CTLFILE && bfs_ctl_files[n.ctl].run && (to_set & FUSE_SET_ATTR_SIZE) &&
	    attr->st_size == 0 && !(to_set & ~allowed)) {
		rc = bfs_getattr_ino(fs, ino, &e);
		if (rc < 0)
			fuse_reply_err(req, -rc);
		else
			fuse_reply_attr(req, &e.attr, 0);
		return;
	}
	fuse_reply_err(req, n.type == BFS_N_CTLFILE || n.type == BFS_N_CTL ? EPERM : EROFS);
}

static void op_refuse_entry(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
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
	(void)userdata;
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
