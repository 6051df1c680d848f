/*
 * Open files of the view, set up by the open of the node's kind (view.c's
 * table): a backup's .db (the store's reader's descriptor, opened on open and
 * closed on release, so no descriptor per inode; read with fuse_reply_data so
 * libfuse can splice; kept in the page cache), generated content (one
 * version held per open, shared through the render cache), ctl/log (read by
 * offset from the log's stream, which only grows within an epoch, so tail -f
 * sees new lines), and the requests written to ctl/ files: each write(2) is
 * one request, run by ctl.c before the write returns, its result that
 * write's return value (sysfs); one request per open, and a refused one
 * spends the open. Every handler replies once.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bri/log.h"
#include "fs.h"

/* An open file. */
struct bfs_fh {
	int fd;                          /* the backup's .db in the store, -1 when none */
	struct bri_reader *reader;       /* a backup without a file (pages), or NULL */
	char *buf;                       /* meta.json or a rendering before it is shared */
	size_t len;                      /* bytes in buf, or in render */
	const struct bfs_render *render; /* generated content, shared (render.c) */
	int ctl;                         /* index in bfs_ctl_files, -1 when not a ctl file */
	bool writer;                     /* opened to write a ctl request */
	bool ran;                        /* a request of this open file ran (one per open) */
	bool log;                        /* ctl/log: reads by offset from the log's stream */
	uint64_t log_epoch;              /* the epoch of the log it reads */
	struct bfs_stream *stream;       /* an inspection file (inspectfs.c), or NULL */
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
	bri_reader_close(h->reader);
	free(h->buf);
	bfs_render_put(h->render);
	bfs_stream_free(h->stream);
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
	bfs_count(req, BFS_REQ_OPEN);
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
	h->reader = src.reader;
	h->render = src.render;
	h->len = src.render ? src.render->len : 0;
	h->ctl = src.ctl;
	h->writer = src.writer;
	h->log = src.log;
	h->log_epoch = src.log_epoch;
	h->stream = src.stream;
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
	bfs_audit_follow(bfs_of(req)); /* operations of other processes join the log */
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

/*
 * Each worker thread's buffer for reads through a reader, kept between
 * requests (up to READ_BUF_KEEP bytes): a fresh one per request cost a
 * page fault per 4 KiB and an munmap, a fifth of the daemon's time in a
 * first cat of a page-store backup. Freed when its thread ends.
 */
#define READ_BUF_KEEP (1u << 20)

static pthread_key_t read_buf_key;
static pthread_once_t read_buf_once = PTHREAD_ONCE_INIT;

struct read_buf {
	char *p;    /* the buffer */
	size_t cap; /* bytes at p */
};

static void read_buf_free(void *arg)
{
	struct read_buf *b = arg;

	free(b->p);
	free(b);
}

static void read_buf_init(void)
{
	if (pthread_key_create(&read_buf_key, read_buf_free) != 0)
		read_buf_key = (pthread_key_t)-1;
}

/* A buffer of size bytes: the thread's own (*keep set), or a fresh one (NULL: no memory). */
static char *read_buf_get(size_t size, bool *keep)
{
	struct read_buf *b;

	pthread_once(&read_buf_once, read_buf_init);
	*keep = false;
	if (size > READ_BUF_KEEP || read_buf_key == (pthread_key_t)-1)
		return malloc(size);
	b = pthread_getspecific(read_buf_key);
	if (!b) {
		b = calloc(1, sizeof(*b));
		if (!b || pthread_setspecific(read_buf_key, b) != 0) {
			free(b);
			return malloc(size);
		}
	}
	if (!b->p) {
		b->p = malloc(READ_BUF_KEEP);
		if (!b->p)
			return malloc(size);
		b->cap = READ_BUF_KEEP;
	}
	*keep = true;
	return b->p;
}

/* A backup of a format without a file: size bytes at off, through its reader. */
static void read_reader(fuse_req_t req, struct bri_reader *r, size_t size, off_t off)
{
	const void *held;
	void *ref;
	bool keep;
	char *buf;
	ssize_t n;

	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (size > (32u << 20))
		size = 32u << 20; /* the kernel asks for at most max_read; a cap all the same */
	/* Bytes the reader holds already (a page store's read-ahead): replied from there. */
	if (r->hold && r->hold(r, &size, (uint64_t)off, &held, &ref) == 0) {
		fuse_reply_buf(req, held, size);
		r->release(r, ref);
		return;
	}
	buf = read_buf_get(size ? size : 1, &keep);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	n = bri_reader_pread(r, buf, size, (uint64_t)off);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	if (!keep)
		free(buf);
}

void bfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	bfs_count(req, BFS_REQ_READ);
	struct bfs_fh *h = (struct bfs_fh *)(uintptr_t)fi->fh;

	(void)ino;
	atomic_fetch_add(&h->refs, 1);
	if (h->fd >= 0) {
		struct fuse_bufvec bv = FUSE_BUFVEC_INIT(size);

		bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
		bv.buf[0].fd = h->fd;
		bv.buf[0].pos = off;
		fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
	} else if (h->reader) {
		read_reader(req, h->reader, size, off);
	} else if (h->stream) {
		bfs_stream_read(req, h->stream, size, off);
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

void bfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
               struct fuse_file_info *fi)
{
	bfs_count(req, BFS_REQ_WRITE);
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
	bfs_count(req, BFS_REQ_FLUSH);
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0); /* every request ran at its write */
}

void bfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	bfs_count(req, BFS_REQ_RELEASE);
	struct bfs_fh *h = (struct bfs_fh *)(uintptr_t)fi->fh;

	(void)ino;
	fh_put(h);
	fuse_reply_err(req, 0);
}
