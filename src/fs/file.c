/*
 * Open files of the view: a backup's .db (the store file, opened on open and
 * closed on release, so no descriptor per inode; read with fuse_reply_data so
 * libfuse can splice; kept in the page cache), generated content (meta.json,
 * verify, ctl/ reads, restore reports: rendered at open, direct I/O), and the
 * requests written to ctl/ files: each write(2) is one request, run by ctl.c
 * before the write returns, its result that write's return value (sysfs);
 * one request per open, and a refused one spends the open. Every handler
 * replies once.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bri/log.h"
#include "fs.h"

/* An open file. */
struct bfs_fh {
	int fd;                          /* the backup's .db in the store, -1 when none */
	char *buf;                       /* meta.json or a rendering before it is shared */
	size_t len;                      /* bytes in buf, or in render */
	const struct bfs_render *render; /* generated content, shared (render.c) */
	int ctl;                         /* index in bfs_ctl_files, -1 when not a ctl file */
	bool writer;                     /* opened to write a ctl request */
	bool ran;                        /* a request of this open file ran (one per open) */
	int refused;          /* errno of a refused request (too long, two lines, invalid): spent */
	pthread_mutex_t lock; /* guards ran and refused of a writer */
	atomic_int refs;      /* release's reference plus one per reply in flight */
	struct bfs_fh *prev;  /* in open_files (guarded by open_files_lock) */
	struct bfs_fh *next;
};

/*
 * Every open file not yet freed. The kernel sends no RELEASE for a file still
 * open when the connection ends (an abort), and drops a RELEASE still queued
 * when the file system is unmounted: bfs_files_free_unreleased frees those
 * once the session loop has ended.
 */
static pthread_mutex_t open_files_lock = PTHREAD_MUTEX_INITIALIZER;
static struct bfs_fh *open_files; /* guarded by open_files_lock */

static void fh_link(struct bfs_fh *h)
{
	pthread_mutex_lock(&open_files_lock);
	h->prev = NULL;
	h->next = open_files;
	if (open_files)
		open_files->prev = h;
	open_files = h;
	pthread_mutex_unlock(&open_files_lock);
}

/* Frees h, which is no longer in open_files. */
static void fh_destroy(struct bfs_fh *h)
{
	if (h->fd >= 0)
		close(h->fd);
	free(h->buf);
	bfs_render_put(h->render);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

/*
 * Drops a reference to h and frees it with the last one. A read's reply
 * holds one while libfuse writes from h->buf: the reader may close the file
 * as soon as the kernel has the data, and release may then run in another
 * thread before the reply's write call has returned.
 */
static void fh_put(struct bfs_fh *h)
{
	if (!h || atomic_fetch_sub(&h->refs, 1) != 1)
		return;
	pthread_mutex_lock(&open_files_lock);
	if (h->prev)
		h->prev->next = h->next;
	else
		open_files = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&open_files_lock);
	fh_destroy(h);
}

size_t bfs_files_free_unreleased(void)
{
	struct bfs_fh *h, *next;
	size_t n = 0;

	pthread_mutex_lock(&open_files_lock);
	h = open_files;
	open_files = NULL;
	pthread_mutex_unlock(&open_files_lock);
	for (; h; h = next) {
		next = h->next;
		fh_destroy(h);
		n++;
	}
	return n;
}

/*
 * Opens the bytes of backup id (through the store's reader) or reads its
 * metadata, for h: the one place the daemon opens a backup's files. The
 * plain format's reader has a descriptor, kept for splice.
 */
static int open_backup_file(struct bfs *fs, uint64_t id, enum bfs_bkind kind, struct bfs_fh *h)
{
	char name[BRI_NAME_MAX + 1];
	const struct bri_entry *b;
	struct bri_reader *r;
	int rc;

	pthread_rwlock_rdlock(&fs->cat_lock);
	b = bfs_entry_by_id(fs, id);
	if (b)
		snprintf(name, sizeof(name), "%s", b->name);
	pthread_rwlock_unlock(&fs->cat_lock);
	if (!b)
		return -ENOENT;
	if (kind == BFS_B_META)
		return bri_store_sidecar_read(fs->store, name, BRI_SIDECAR_META, BRI_META_MAX_BYTES,
		                              &h->buf, &h->len);
	rc = bri_store_open_reader(fs->store, name, &r, NULL);
	if (rc < 0)
		return rc;
	/* Taken over from the reader. A format without a descriptor will need
	 * reads through the reader (bri_reader_pread): not yet. */
	h->fd = r->fd;
	r->fd = -1;
	bri_reader_close(r);
	return h->fd >= 0 ? 0 : -EOPNOTSUPP;
}

/*
 * Whether the .db just opened changed in place since the catalog saw it
 * (then its cached pages must not be kept: the kernel drops them at this
 * open, and the notify worker invalidates its attributes).
 */
static bool db_changed(struct bfs *fs, uint64_t id, int fd)
{
	struct stat st;

	return fstat(fd, &st) == 0 && bfs_db_check(fs, id, &st);
}

/*
 * Shares the content just rendered into h->buf through the render cache:
 * opens of ino with equal content hold one copy. rc is the renderer's.
 */
static int share_rendering(struct bfs *fs, fuse_ino_t ino, struct bfs_fh *h, int rc)
{
	char *buf = h->buf;

	if (rc < 0)
		return rc;
	h->buf = NULL;
	rc = bfs_render_intern(fs, ino, buf, h->len, &h->render);
	if (rc == -EFBIG)
		bri_log(BRI_LOG_ERR, "inode %lu: rendering of %zu bytes over the cap refused",
		        (unsigned long)ino, h->len);
	return rc;
}

void bfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct bfs *fs = bfs_of(req);
	int acc = fi->flags & O_ACCMODE;
	struct bfs_node n;
	struct bfs_fh *h;
	int rc;

	rc = bfs_node_of(ino, &n);
	if (rc < 0) {
		fuse_reply_err(req, -rc);
		return;
	}
	if (n.type == BFS_N_BACKUP || n.type == BFS_N_CTLFILE) {
		rc = bfs_refresh(fs, false);
		if (rc < 0) {
			fuse_reply_err(req, -rc);
			return;
		}
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	h->fd = -1;
	h->ctl = -1;
	atomic_init(&h->refs, 1);
	pthread_mutex_init(&h->lock, NULL);
	fh_link(h);
	if (n.type == BFS_N_CTLFILE) {
		const struct bfs_ctl_file *c = &bfs_ctl_files[n.ctl];

		h->ctl = n.ctl;
		fi->direct_io = 1;
		fi->nonseekable = 0;
		if (acc != O_RDONLY && !c->run) {
			rc = -EACCES;
		} else if (acc != O_RDONLY) {
			h->writer = true; /* starts with an empty request, reads as empty */
		} else {
			rc = share_rendering(fs, ino, h,
			                     bfs_render_ctl(fs, n.ctl, &h->buf, &h->len));
		}
	} else if (n.type == BFS_N_BACKUP) {
		if (acc != O_RDONLY || (fi->flags & O_TRUNC)) {
			rc = -EROFS;
		} else if (n.bkind == BFS_B_DB || n.bkind == BFS_B_META) {
			rc = open_backup_file(fs, n.id, n.bkind, h);
			if (n.bkind == BFS_B_META)
				rc = share_rendering(fs, ino, h, rc);
			fi->keep_cache = 1;
			if (rc == 0 && n.bkind == BFS_B_DB && db_changed(fs, n.id, h->fd))
				fi->keep_cache = 0;
		} else if (n.bkind == BFS_B_VERIFY) {
			bfs_fresh_verify(fs, n.id);
			rc = share_rendering(fs, ino, h,
			                     bfs_render_verify(fs, n.id, &h->buf, &h->len));
			fi->direct_io = 1;
		} else if (n.bkind == BFS_B_REPORT) {
			rc = share_rendering(fs, ino, h,
			                     bfs_render_report(fs, n.id, &h->buf, &h->len));
			fi->direct_io = 1;
		} else {
			rc = -EISDIR;
		}
	} else {
		rc = -EISDIR;
	}
	if (rc < 0) {
		fh_put(h);
		fuse_reply_err(req, -rc);
		return;
	}
	fi->fh = (uintptr_t)h;
	/* Not delivered (interrupted: -ENOENT; the connection gone): no RELEASE comes. */
	if (fuse_reply_open(req, fi) != 0)
		fh_put(h);
}

void bfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct bfs_fh *h = (struct bfs_fh *)(uintptr_t)fi->fh;

	(void)ino;
	atomic_fetch_add(&h->refs, 1);
	if (h->fd >= 0) {
		struct fuse_bufvec bv = FUSE_BUFVEC_INIT(size);

		bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
		bv.buf[0].fd = h->fd;
		bv.buf[0].pos = off;
		fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
	} else if (h->writer || !h->render || off < 0 || (size_t)off >= h->len) {
		fuse_reply_buf(req, NULL, 0);
	} else {
		if (size > h->len - (size_t)off)
			size = h->len - (size_t)off;
		fuse_reply_buf(req, h->render->buf + off, size);
	}
	fh_put(h);
}

void bfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
               struct fuse_file_info *fi)
{
	struct bfs_fh *h = (struct bfs_fh *)(uintptr_t)fi->fh;
	bool refused = false;
	int rc;

	(void)ino;
	(void)off;
	if (!h->writer) {
		fuse_reply_err(req, h->ctl >= 0 ? EBADF : EROFS);
		return;
	}
	pthread_mutex_lock(&h->lock);
	if (h->refused) {
		/*
		 * A refused request spends the open: the rest of a write the
		 * kernel split must not become a request of its own.
		 */
		rc = h->refused;
		pthread_mutex_unlock(&h->lock);
		bri_log(BRI_LOG_ERR,
		        "ctl/%s: this open's request was refused; reopen to send another",
		        bfs_ctl_files[h->ctl].name);
		fuse_reply_err(req, rc);
		return;
	}
	if (h->ran) {
		pthread_mutex_unlock(&h->lock);
		bri_log(BRI_LOG_ERR, "ctl/%s: one request per open; more writes refused",
		        bfs_ctl_files[h->ctl].name);
		fuse_reply_err(req, EINVAL);
		return;
	}
	h->ran = true;
	pthread_mutex_unlock(&h->lock);
	rc = bfs_ctl_write(bfs_of(req), h->ctl, buf, size, fuse_req_ctx(req), &refused);
	if (refused) {
		pthread_mutex_lock(&h->lock);
		h->refused = -rc;
		pthread_mutex_unlock(&h->lock);
	}
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_write(req, size);
}

void bfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0); /* every request ran at its write */
}

void bfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct bfs_fh *h = (struct bfs_fh *)(uintptr_t)fi->fh;

	(void)ino;
	fh_put(h);
	fuse_reply_err(req, 0);
}
