/*
 * Open files of the view, set up by the open of the node's kind (view.c's
 * table): a backup's .db (the store file, opened on open and closed on
 * release, so no descriptor per inode; read with fuse_reply_data so libfuse
 * can splice; kept in the page cache), generated content (one version held
 * per open, shared through the render cache), ctl/log (read by offset from
 * the log's stream, which only grows, so tail -f sees new lines), and the
 * requests written to ctl/ files: buffered per open file up to BFS_CTL_MAX,
 * run by ctl.c when the line is complete (newline written, or flush), the
 * result returned by that write or by close. Every handler replies once.
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
	char *buf;                       /* the request being written (a writer), else NULL */
	size_t len;                      /* bytes in buf, or in render */
	const struct bfs_render *render; /* generated content, shared (render.c) */
	int ctl;                         /* index in bfs_ctl_files, -1 when not a ctl file */
	bool writer;                     /* opened to write a ctl request */
	bool ran;                        /* a request of this open file ran (one per open) */
	bool log;                        /* ctl/log: reads by offset from the log's stream */
	uint64_t log_epoch;              /* the epoch of the log it reads */
	int refused;          /* errno of a refused request (too long, two lines): spent */
	pthread_mutex_t lock; /* guards buf and len of a writer */
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

void bfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	const struct bfs_kind_ops *k = bfs_kind_of(ino);
	struct bfs_source src = {.fd = -1, .ctl = -1};
	struct bfs *fs = bfs_of(req);
	struct bfs_fh *h;
	int rc;

	if (!k) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	if (!k->open) {
		fuse_reply_err(req, S_ISDIR(k->mode) ? EISDIR : EINVAL);
		return;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	atomic_init(&h->refs, 1);
	pthread_mutex_init(&h->lock, NULL);
	fh_link(h);
	rc = k->open(fs, ino, fi, &src);
	h->fd = src.fd;
	h->render = src.render;
	h->len = src.render ? src.render->len : 0;
	h->ctl = src.ctl;
	h->writer = src.writer;
	h->log = src.log;
	h->log_epoch = src.log_epoch;
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

/*
 * ctl/log: the bytes from off of the log's window in epoch, read now (it
 * only grows within an epoch); an older epoch reads as ended.
 */
static void read_log(fuse_req_t req, uint64_t epoch, size_t size, off_t off)
{
	uint64_t start, now, end;
	char *text;
	size_t len;

	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	bri_log_end(&start, &now);
	if (now != epoch ||
	    bri_log_window(start + (uint64_t)off, &text, &len, &end, &start, &now) < 0) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (now != epoch)
		len = 0; /* moved on meanwhile */
	fuse_reply_buf(req, text, len < size ? len : size);
	free(text);
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
	} else if (h->log && !h->writer) {
		read_log(req, h->log_epoch, size, off);
	} else if (h->writer || !h->render || off < 0 || (size_t)off >= h->len) {
		fuse_reply_buf(req, NULL, 0);
	} else {
		if (size > h->len - (size_t)off)
			size = h->len - (size_t)off;
		fuse_reply_buf(req, h->render->buf + off, size);
	}
	fh_put(h);
}

/*
 * Takes the request buffered in h (a line without its newline) and runs it.
 * Returns 0, or a negative errno.
 */
static int run_pending(struct bfs *fs, struct bfs_fh *h, const struct fuse_ctx *who)
{
	char *line;
	size_t len;

	pthread_mutex_lock(&h->lock);
	line = h->buf;
	len = h->len;
	h->buf = NULL;
	h->len = 0;
	pthread_mutex_unlock(&h->lock);
	if (!line)
		return 0;
	int rc = bfs_ctl_run(fs, h->ctl, line, len, who);
	free(line);
	return rc;
}

void bfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
               struct fuse_file_info *fi)
{
	struct bfs_fh *h = (struct bfs_fh *)(uintptr_t)fi->fh;
	struct bfs *fs = bfs_of(req);
	char *nl, *nb;
	int rc = 0;

	(void)ino;
	(void)off;
	if (!h->writer) {
		fuse_reply_err(req, h->ctl >= 0 ? EBADF : EROFS);
		return;
	}
	pthread_mutex_lock(&h->lock);
	if (h->refused) {
		/*
		 * One write is one request: the rest of a refused request must
		 * not become a request of its own. Reopen to send another.
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
		bri_log(BRI_LOG_ERR, "ctl/%s: one request per open; more lines refused",
		        bfs_ctl_files[h->ctl].name);
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (h->len + size > BFS_CTL_MAX) {
		free(h->buf);
		h->buf = NULL;
		h->len = 0;
		h->refused = EFBIG;
		pthread_mutex_unlock(&h->lock);
		bri_log(BRI_LOG_ERR, "ctl/%s: request longer than %d bytes refused",
		        bfs_ctl_files[h->ctl].name, BFS_CTL_MAX);
		fuse_reply_err(req, EFBIG);
		return;
	}
	nb = realloc(h->buf, h->len + size + 1);
	if (!nb) {
		pthread_mutex_unlock(&h->lock);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	memcpy(nb + h->len, buf, size);
	h->buf = nb;
	h->len += size;
	h->buf[h->len] = '\0';
	nl = memchr(h->buf, '\n', h->len);
	if (nl && nl != h->buf + h->len - 1) {
		free(h->buf);
		h->buf = NULL;
		h->len = 0;
		h->refused = EINVAL;
		pthread_mutex_unlock(&h->lock);
		bri_log(BRI_LOG_ERR, "ctl/%s: more than one line refused (write one name)",
		        bfs_ctl_files[h->ctl].name);
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (nl) {
		h->len--; /* the request is complete: run it now */
		h->buf[h->len] = '\0';
		h->ran = true;
	}
	pthread_mutex_unlock(&h->lock);
	if (nl)
		rc = run_pending(fs, h, fuse_req_ctx(req));
	if (rc < 0)
		fuse_reply_err(req, -rc);
	else
		fuse_reply_write(req, size);
}

void bfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct bfs_fh *h = (struct bfs_fh *)(uintptr_t)fi->fh;
	int rc = 0;

	(void)ino;
	if (h->writer)
		rc = run_pending(bfs_of(req), h, fuse_req_ctx(req));
	fuse_reply_err(req, -rc);
}

void bfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct bfs_fh *h = (struct bfs_fh *)(uintptr_t)fi->fh;

	(void)ino;
	if (h->writer)
		run_pending(bfs_of(req), h, fuse_req_ctx(req));
	fh_put(h);
	fuse_reply_err(req, 0);
}
