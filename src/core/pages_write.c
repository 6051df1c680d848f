/*
 * The page store's writer (the format: store_pages.c). A new backup is
 * written by SQLite's backup API through the "bri-pages" VFS: its xWrite
 * queues each page for the store worker (a second thread), which hashes it
 * and puts the pages the store lacks into groups, compressed; a third thread
 * (the pack writer's stage: pages_db_write_ahead) seals them in an encrypted
 * store and appends them to a new pack, so the full copy is never written
 * to disk. The whole file's SHA-256 is then taken from the
 * pages read back (SQLite writes page 1 last). Commit: the pack is fsynced
 * and published, then the metadata, then the manifest (rename without
 * replacing): a backup is complete or absent.
 */
#include "bri/store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bri/checksum.h"
#include "bri/testpoint.h"
#include "pack.h"
#include "pages_int.h"
#include "store_int.h"

#define PAGES_VFS_NAME "bri-pages"
#define PAGES_PREFIX   "/bri-pages/"

/*
 * The pages of a copy are stored on a second thread (the store worker):
 * SQLite's copy hands a whole page to pw_put, which queues it and returns;
 * the worker computes its id (a keyed hash of 4 KiB, as much work as SQLite's
 * copy of it) and appends it to the pack if new, while SQLite reads the next
 * pages. The queue holds at most QUEUE_BYTES (QUEUE_SLOTS_MIN pages of the
 * largest size); the worker takes QUEUE_BATCH pages at a time. A page's id
 * is in ids once the worker is done with it: whoever reads ids (pw_page, the
 * digest, the commit) waits for the queue to empty first (pw_drain). The
 * worker's first failure stops it and is returned by the next pw_put, by
 * pw_drain and so by the digest and the commit: nothing is published. On an
 * abandoned copy (pages_write_end) it stops without storing the rest; its
 * unpublished pack is removed as before.
 */
#define QUEUE_BYTES     (4u << 20)
#define QUEUE_SLOTS_MIN 64u
#define QUEUE_BATCH     32u

struct pw_queue {
	pthread_mutex_t lock;
	pthread_cond_t more; /* the worker waits: pages queued, or stop */
	pthread_cond_t room; /* the copy waits: a free slot, or the queue empty */
	pthread_t thread;
	uint32_t slots;      /* pages the queue holds */
	uint8_t *pages;      /* slots * page_size bytes */
	uint64_t *pgno;      /* each slot's page number */
	uint8_t *ids;        /* each slot's id, set by the worker */
	uint64_t head, tail; /* queued: [tail, head) (slot: index % slots); guarded by lock */
	bool busy;           /* the worker holds pages taken from the queue (guarded by lock) */
	bool stop;           /* the worker exits (guarded by lock) */
	bool idle;           /* the worker waits for more (guarded by lock) */
	bool full;           /* the copy waits for room (guarded by lock) */
	bool draining;       /* pw_drain waits: the worker takes less than a batch (lock) */
	int failed;          /* the worker's first failure; err says why (guarded by lock) */
};

struct pages_writer {
	struct pages_db *db;
	uint32_t page_size; /* 0 until the first write */
	uint64_t npages;    /* the file's size in pages */
	uint8_t *ids;       /* npages ids; all zero: never written (reads as zeros);
	                       while the worker runs, guarded by q.lock */
	uint64_t cap;       /* ids allocated */
	uint64_t id;        /* its number in the VFS name */
	struct bri_err err; /* the first failure of a write (the worker's: under q.lock) */
	struct pw_queue q;
	bool queued;    /* q is set up and its worker runs */
	bool no_worker; /* no second thread could be made: pages stored here */
	struct pages_writer *next;
};

static pthread_mutex_t writers_lock = PTHREAD_MUTEX_INITIALIZER;
static struct pages_writer *writers; /* guarded by writers_lock */
static uint64_t next_writer = 1;
static sqlite3_vfs pages_vfs;
static sqlite3_vfs *pages_root;
static pthread_once_t pages_once = PTHREAD_ONCE_INIT;
static int pages_registered = SQLITE_ERROR;

struct pages_file {
	sqlite3_file base;
	struct pages_writer *w; /* the copy; NULL for a journal */
	/* A journal (SQLite's, while it changes the copy's journal mode): in memory. */
	uint8_t *buf;
	size_t len, cap;
};

/* A journal in memory holds at most this much: it only ever holds a few pages. */
#define JOURNAL_MAX (64u << 20)

static int mj_close(sqlite3_file *file)
{
	struct pages_file *f = (struct pages_file *)file;

	free(f->buf);
	f->buf = NULL;
	return SQLITE_OK;
}

static int mj_read(sqlite3_file *file, void *buf, int amt, sqlite3_int64 off)
{
	struct pages_file *f = (struct pages_file *)file;
	size_t n = 0;

	if (off < 0 || amt < 0)
		return SQLITE_IOERR_READ;
	if ((uint64_t)off < f->len)
		n = f->len - (size_t)off < (size_t)amt ? f->len - (size_t)off : (size_t)amt;
	memcpy(buf, f->buf + (n ? off : 0), n);
	if (n < (size_t)amt) {
		memset((char *)buf + n, 0, (size_t)amt - n);
		return SQLITE_IOERR_SHORT_READ;
	}
	return SQLITE_OK;
}

static int mj_write(sqlite3_file *file, const void *buf, int amt, sqlite3_int64 off)
{
	struct pages_file *f = (struct pages_file *)file;
	size_t end = (size_t)off + (size_t)amt;

	if (off < 0 || amt < 0 || end > JOURNAL_MAX)
		return SQLITE_FULL;
	if (end > f->cap) {
		size_t cap = f->cap ? f->cap : 65536;
		uint8_t *b;

		while (cap < end)
			cap *= 2;
		b = realloc(f->buf, cap);
		if (!b)
			return SQLITE_IOERR_NOMEM;
		f->buf = b;
		f->cap = cap;
	}
	if ((size_t)off > f->len)
		memset(f->buf + f->len, 0, (size_t)off - f->len);
	memcpy(f->buf + off, buf, (size_t)amt);
	if (end > f->len)
		f->len = end;
	return SQLITE_OK;
}

static int mj_truncate(sqlite3_file *file, sqlite3_int64 size)
{
	struct pages_file *f = (struct pages_file *)file;

	if (size >= 0 && (size_t)size < f->len)
		f->len = (size_t)size;
	return SQLITE_OK;
}

static int mj_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
	*size = (sqlite3_int64)((struct pages_file *)file)->len;
	return SQLITE_OK;
}

static int pw_close(sqlite3_file *file)
{
	(void)file;
	return SQLITE_OK;
}

/*
 * Waits until the worker has stored every queued page: 0, or its failure
 * (w->err says why). After it, w->ids can be read on this thread until the
 * next pw_put.
 */
static int pw_drain(struct pages_writer *w)
{
	struct bri_err err = {0};
	int rc;

	if (!w->queued) {
		rc = w->err.code;
	} else {
		pthread_mutex_lock(&w->q.lock);
		w->q.draining = true; /* the worker takes what is queued, even less than a batch */
		pthread_cond_signal(&w->q.more);
		while ((w->q.head != w->q.tail || w->q.busy) && !w->q.failed)
			pthread_cond_wait(&w->q.room, &w->q.lock);
		w->q.draining = false;
		rc = w->q.failed;
		pthread_mutex_unlock(&w->q.lock);
	}
	/* The groups the worker made are in the pack (pages_db_write_ahead): readable. */
	if (rc == 0 && (rc = pages_db_wait_written(w->db, &err)) < 0) {
		if (w->queued)
			pthread_mutex_lock(&w->q.lock);
		if (!w->err.code)
			w->err = err;
		if (w->queued) {
			w->q.failed = rc;
			pthread_mutex_unlock(&w->q.lock);
		}
	}
	return rc;
}

/* Stops the worker (the queued pages it has not taken are dropped) and frees the queue. */
static void pw_stop(struct pages_writer *w)
{
	if (!w->queued)
		return;
	pthread_mutex_lock(&w->q.lock);
	w->q.stop = true;
	pthread_cond_broadcast(&w->q.more);
	pthread_mutex_unlock(&w->q.lock);
	pthread_join(w->q.thread, NULL);
	w->queued = false;
	pthread_cond_destroy(&w->q.room);
	pthread_cond_destroy(&w->q.more);
	pthread_mutex_destroy(&w->q.lock);
	free(w->q.pages);
	free(w->q.pgno);
	free(w->q.ids);
	memset(&w->q, 0, sizeof(w->q));
}

/* Reads page pgno (page_size bytes) of the copy into buf. */
static int pw_page(struct pages_writer *w, uint64_t pgno, uint8_t *buf)
{
	const uint8_t *id;

	if (pw_drain(w) < 0)
		return w->err.code;
	id = w->ids + pgno * PAGE_ID_LEN;
	if (pgno >= w->npages || page_id_is_hole(id)) {
		memset(buf, 0, w->page_size);
		return 0;
	}
	/* Pages this writer wrote or found: zstd's frame checksum guards them. */
	return pages_db_read_written(w->db, id, w->page_size, buf);
}

static int pw_read(sqlite3_file *file, void *buf, int amt, sqlite3_int64 off)
{
	struct pages_writer *w = ((struct pages_file *)file)->w;
	uint64_t size = w->npages * w->page_size;
	uint8_t *page = NULL;
	int done = 0;

	if (off < 0 || amt < 0)
		return SQLITE_IOERR_READ;
	if (!w->page_size || (uint64_t)off >= size) {
		memset(buf, 0, (size_t)amt);
		return SQLITE_IOERR_SHORT_READ;
	}
	page = malloc(w->page_size);
	if (!page)
		return SQLITE_IOERR_NOMEM;
	while (done < amt && (uint64_t)(off + done) < size) {
		uint64_t pos = (uint64_t)off + (uint64_t)done, pgno = pos / w->page_size;
		size_t in = (size_t)(pos % w->page_size), n = w->page_size - in;

		if (n > (size_t)(amt - done))
			n = (size_t)(amt - done);
		int rc = pw_page(w, pgno, page);

		if (rc < 0) {
			free(page);
			/* A page the worker could not store for want of space: SQLite
			 * reports a full disk, as for a write that failed here. */
			return rc == -ENOSPC ? SQLITE_FULL : SQLITE_IOERR_READ;
		}
		memcpy((char *)buf + done, page + in, n);
		done += (int)n;
	}
	free(page);
	if (done < amt) {
		memset((char *)buf + done, 0, (size_t)(amt - done));
		return SQLITE_IOERR_SHORT_READ;
	}
	return SQLITE_OK;
}

static int pw_grow(struct pages_writer *w, uint64_t npages)
{
	if (npages > MANIFEST_PAGES_MAX)
		return -EFBIG;
	if (npages > w->cap) {
		uint64_t cap = w->cap ? w->cap : 1024;
		uint8_t *ids;

		while (cap < npages)
			cap *= 2;
		ids = realloc(w->ids, cap * PAGE_ID_LEN);
		if (!ids)
			return -ENOMEM;
		memset(ids + w->cap * PAGE_ID_LEN, 0, (cap - w->cap) * PAGE_ID_LEN);
		w->ids = ids;
		w->cap = cap;
	}
	if (npages > w->npages)
		w->npages = npages;
	return 0;
}

/* The store worker: ids and packs for the queued pages, QUEUE_BATCH at a time. */
static void *pw_worker(void *arg)
{
	struct pages_writer *w = arg;
	struct pw_queue *q = &w->q;
	struct bri_err err = {0};
	bool paused = false;

	pthread_mutex_lock(&q->lock);
	for (;;) {
		uint64_t first = q->tail, n = 0, done = 0;
		int rc = 0;

		while ((q->head == q->tail || (q->head - q->tail < QUEUE_BATCH && !q->draining)) &&
		       !q->stop) {
			q->idle = true;
			pthread_cond_wait(&q->more, &q->lock);
			q->idle = false;
		}
		if (q->stop)
			break;
		n = q->head - q->tail < QUEUE_BATCH ? q->head - q->tail : QUEUE_BATCH;
		q->busy = true;
		pthread_mutex_unlock(&q->lock);
		if (!paused && w->db->wfd >= 0) {
			/* For tests: a pack started, SQLite's copy queueing pages meanwhile
			 * (kill -9, a full disk for the next group). */
			bri_testpoint("pages-worker-queued");
			paused = true;
		}
		/* n >= 1: the wait above ends with pages queued (cppcheck does not see
		 * pthread_cond_wait change q->head). */
		// cppcheck-suppress knownConditionTrueFalse
		for (; done < n && rc == 0; done++) {
			uint32_t k = (uint32_t)((first + done) % q->slots);

			rc = pages_db_add_at(w->db, q->pages + (size_t)k * w->page_size,
			                     w->page_size, q->pgno[k],
			                     q->ids + (size_t)k * PAGE_ID_LEN, &err);
		}
		if (rc < 0)
			done--; /* the failed page has no id */
		pthread_mutex_lock(&q->lock);
		for (uint64_t i = 0; i < done; i++) {
			uint32_t k = (uint32_t)((first + i) % q->slots);

			memcpy(w->ids + q->pgno[k] * PAGE_ID_LEN, q->ids + (size_t)k * PAGE_ID_LEN,
			       PAGE_ID_LEN);
		}
		q->tail = first + done;
		if (rc < 0) {
			if (!err.code)
				bri_err_set(&err, rc, "cannot write the backup's pages: %s",
				            strerror(-rc));
			w->err = err;
			q->failed = rc;
			q->tail = q->head; /* the rest is dropped: the copy fails */
		}
		q->busy = false;
		/* The copy waits for half the queue free (not a wake-up per batch), a
		 * drain for the queue empty: each is woken when that holds. */
		if (q->draining || q->failed || (q->full && q->head - q->tail <= q->slots / 2))
			pthread_cond_broadcast(&q->room);
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

/* Sets up the queue and starts the worker; false: none (pages are stored on this thread). */
static bool pw_start(struct pages_writer *w)
{
	struct pw_queue *q = &w->q;
	uint32_t slots = QUEUE_BYTES / w->page_size;

	if (slots < QUEUE_SLOTS_MIN)
		slots = QUEUE_SLOTS_MIN;
	memset(q, 0, sizeof(*q));
	q->slots = slots;
	q->pages = malloc((size_t)slots * w->page_size);
	q->pgno = malloc(slots * sizeof(*q->pgno));
	q->ids = malloc((size_t)slots * PAGE_ID_LEN);
	if (!q->pages || !q->pgno || !q->ids)
		goto out_free;
	if (pthread_mutex_init(&q->lock, NULL) != 0)
		goto out_free;
	if (pthread_cond_init(&q->more, NULL) != 0)
		goto out_lock;
	if (pthread_cond_init(&q->room, NULL) != 0)
		goto out_more;
	if (pthread_create(&q->thread, NULL, pw_worker, w) != 0)
		goto out_room;
	w->queued = true;
	return true;
out_room:
	pthread_cond_destroy(&q->room);
out_more:
	pthread_cond_destroy(&q->more);
out_lock:
	pthread_mutex_destroy(&q->lock);
out_free:
	free(q->pages);
	free(q->pgno);
	free(q->ids);
	memset(q, 0, sizeof(*q));
	return false;
}

/* Queues whole page pgno for the worker: 0 or its failure (w->err filled). */
static int pw_enqueue(struct pages_writer *w, const uint8_t *page, uint64_t pgno)
{
	struct pw_queue *q = &w->q;
	int rc;

	pthread_mutex_lock(&q->lock);
	if (q->head - q->tail == q->slots) {
		q->full = true;
		while (q->head - q->tail > q->slots / 2 && !q->failed)
			pthread_cond_wait(&q->room, &q->lock);
		q->full = false;
	}
	rc = q->failed;
	if (rc == 0) /* ids may move: under the lock the worker writes them with */
		rc = pw_grow(w, pgno + 1);
	if (rc == 0) {
		uint32_t k = (uint32_t)(q->head % q->slots);

		memcpy(q->pages + (size_t)k * w->page_size, page, w->page_size);
		q->pgno[k] = pgno;
		q->head++;
		/* A whole batch wakes the worker: not a wake-up per page. */
		if (q->idle && q->head - q->tail >= QUEUE_BATCH)
			pthread_cond_signal(&q->more);
	}
	pthread_mutex_unlock(&q->lock);
	return rc;
}

/* Stores amt bytes of the copy at off: 0 or a negative errno, w->err filled. */
static int pw_put(struct pages_writer *w, const void *buf, size_t amt, uint64_t off)
{
	uint8_t *page = NULL;
	size_t done = 0;
	int rc = 0;

	if (!w->page_size) {
		/* SQLite writes the main database in whole pages: the first write's length. */
		if (amt < PAGE_SIZE_MIN || amt > PAGE_SIZE_MAX || (amt & (amt - 1)) || off % amt)
			return bri_err_set(&w->err, -EINVAL, "a page store takes whole pages only");
		w->page_size = (uint32_t)amt;
	}
	while (done < amt && rc == 0) {
		uint64_t pos = off + done, pgno = pos / w->page_size;
		size_t in = (size_t)(pos % w->page_size), n = w->page_size - in;
		const uint8_t *src = (const uint8_t *)buf + done;

		if (n > amt - done)
			n = amt - done;
		if (n == w->page_size && !w->queued && !w->no_worker)
			w->no_worker = !pw_start(w);
		if (n != w->page_size) {
			/* A part of a page: read (the worker done first), change, store it whole.
			 */
			if (!page && !(page = malloc(w->page_size)))
				rc = -ENOMEM;
			if (rc == 0)
				rc = pw_page(w, pgno, page);
			if (rc == 0)
				memcpy(page + in, src, n);
			src = page;
		}
		if (rc == 0 && w->queued) {
			rc = pw_enqueue(w, src, pgno);
		} else if (rc == 0) {
			rc = pw_grow(w, pgno + 1);
			if (rc == 0)
				rc = pages_db_add_at(w->db, src, w->page_size, pgno,
				                     w->ids + pgno * PAGE_ID_LEN, &w->err);
		}
		done += n;
	}
	free(page);
	if (rc < 0) {
		if (w->queued) /* the worker may be filling w->err */
			pthread_mutex_lock(&w->q.lock);
		if (!w->err.code)
			bri_err_set(&w->err, rc, "cannot write the backup's pages: %s",
			            strerror(-rc));
		if (w->queued)
			pthread_mutex_unlock(&w->q.lock);
	}
	return rc;
}

static int pw_write(sqlite3_file *file, const void *buf, int amt, sqlite3_int64 off)
{
	struct pages_writer *w = ((struct pages_file *)file)->w;
	int rc;

	if (off < 0 || amt <= 0)
		return SQLITE_IOERR_WRITE;
	rc = pw_put(w, buf, (size_t)amt, (uint64_t)off);
	if (rc < 0)
		return rc == -ENOSPC ? SQLITE_FULL : SQLITE_IOERR_WRITE;
	return SQLITE_OK;
}

static int pw_truncate(sqlite3_file *file, sqlite3_int64 size)
{
	struct pages_writer *w = ((struct pages_file *)file)->w;

	if (size < 0)
		return SQLITE_IOERR_TRUNCATE;
	if (!w->page_size)
		return size == 0 ? SQLITE_OK : SQLITE_IOERR_TRUNCATE;
	if ((uint64_t)size % w->page_size)
		return SQLITE_IOERR_TRUNCATE;
	if ((uint64_t)size / w->page_size < w->npages)
		w->npages = (uint64_t)size / w->page_size;
	return SQLITE_OK;
}

static int pw_sync(sqlite3_file *file, int flags)
{
	(void)file, (void)flags;
	return SQLITE_OK; /* durable at the commit, when the pack is published */
}

static int pw_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
	struct pages_writer *w = ((struct pages_file *)file)->w;

	*size = (sqlite3_int64)w->npages * (sqlite3_int64)w->page_size;
	return SQLITE_OK;
}

static int pw_lock(sqlite3_file *file, int level)
{
	(void)file, (void)level;
	return SQLITE_OK;
}

static int pw_check_reserved(sqlite3_file *file, int *out)
{
	(void)file;
	*out = 0;
	return SQLITE_OK;
}

static int pw_file_control(sqlite3_file *file, int op, void *arg)
{
	(void)file, (void)op, (void)arg;
	return SQLITE_NOTFOUND;
}

static int pw_sector_size(sqlite3_file *file)
{
	(void)file;
	return 4096;
}

static int pw_device_characteristics(sqlite3_file *file)
{
	(void)file;
	return 0;
}

static const sqlite3_io_methods pages_methods = {
    .iVersion = 1,
    .xClose = pw_close,
    .xRead = pw_read,
    .xWrite = pw_write,
    .xTruncate = pw_truncate,
    .xSync = pw_sync,
    .xFileSize = pw_file_size,
    .xLock = pw_lock,
    .xUnlock = pw_lock,
    .xCheckReservedLock = pw_check_reserved,
    .xFileControl = pw_file_control,
    .xSectorSize = pw_sector_size,
    .xDeviceCharacteristics = pw_device_characteristics,
};

static const sqlite3_io_methods journal_methods = {
    .iVersion = 1,
    .xClose = mj_close,
    .xRead = mj_read,
    .xWrite = mj_write,
    .xTruncate = mj_truncate,
    .xSync = pw_sync,
    .xFileSize = mj_file_size,
    .xLock = pw_lock,
    .xUnlock = pw_lock,
    .xCheckReservedLock = pw_check_reserved,
    .xFileControl = pw_file_control,
    .xSectorSize = pw_sector_size,
    .xDeviceCharacteristics = pw_device_characteristics,
};

static bool ours(const char *name)
{
	return name && strncmp(name, PAGES_PREFIX, sizeof(PAGES_PREFIX) - 1) == 0;
}

static int pv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
                   int *out_flags)
{
	struct pages_file *f = (struct pages_file *)file;
	uint64_t id;
	char *end;

	(void)vfs;
	if (!ours(name))
		return pages_root->xOpen(pages_root, name, file, flags, out_flags);
	memset(f, 0, sizeof(*f));
	if (!(flags & SQLITE_OPEN_MAIN_DB)) {
		/* The journal or (empty) WAL of the copy's journal-mode change: in memory. */
		if (!(flags & (SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_WAL)))
			return SQLITE_CANTOPEN;
		f->base.pMethods = &journal_methods;
		if (out_flags)
			*out_flags = flags;
		return SQLITE_OK;
	}
	id = strtoull(name + sizeof(PAGES_PREFIX) - 1, &end, 10);
	pthread_mutex_lock(&writers_lock);
	for (struct pages_writer *w = writers; w; w = w->next)
		if (w->id == id && !*end)
			f->w = w;
	pthread_mutex_unlock(&writers_lock);
	if (!f->w)
		return SQLITE_CANTOPEN;
	f->base.pMethods = &pages_methods;
	if (out_flags)
		*out_flags = flags;
	return SQLITE_OK;
}

static int pv_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	(void)vfs;
	if (!ours(name))
		return pages_root->xAccess(pages_root, name, flags, out);
	*out = 0;
	return SQLITE_OK;
}

static int pv_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
	(void)vfs;
	if (!ours(name))
		return pages_root->xDelete(pages_root, name, sync_dir);
	return SQLITE_OK; /* a journal in memory goes with its close */
}

static int pv_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
	size_t len = strlen(name);

	(void)vfs;
	if (!ours(name))
		return pages_root->xFullPathname(pages_root, name, n, out);
	if (len >= (size_t)n)
		return SQLITE_CANTOPEN;
	memcpy(out, name, len + 1);
	return SQLITE_OK;
}

static void pages_register(void)
{
	pages_root = sqlite3_vfs_find(NULL);
	if (!pages_root)
		return;
	pages_vfs = *pages_root;
	pages_vfs.pNext = NULL;
	pages_vfs.zName = PAGES_VFS_NAME;
	if ((size_t)pages_vfs.szOsFile < sizeof(struct pages_file))
		pages_vfs.szOsFile = (int)sizeof(struct pages_file);
	pages_vfs.xOpen = pv_open;
	pages_vfs.xAccess = pv_access;
	pages_vfs.xDelete = pv_delete;
	pages_vfs.xFullPathname = pv_full_pathname;
	pages_registered = sqlite3_vfs_register(&pages_vfs, 0);
}

const char *store_path_vfs(const char *path)
{
	if (!ours(path))
		return NULL;
	pthread_once(&pages_once, pages_register);
	return pages_registered == SQLITE_OK ? PAGES_VFS_NAME : NULL;
}

int pages_write_begin(struct bri_store *s, const char *name, struct bri_backup_writer **out,
                      struct bri_err *err)
{
	struct bri_backup_writer *w = calloc(1, sizeof(*w));
	struct pages_writer *p = calloc(1, sizeof(*p));
	int rc;

	if (!w || !p) {
		free(w);
		free(p);
		return bri_err_set(err, -ENOMEM, "out of memory");
	}
	w->s = s;
	w->fd = -1;
	w->priv = p;
	snprintf(w->name, sizeof(w->name), "%s", name);
	rc = bri_store_check(s, err);
	if (rc < 0)
		goto out_free;
	rc = pages_db_open(s, &p->db, err);
	if (rc < 0)
		goto out_free;
	pages_db_write_ahead(p->db); /* groups sealed and written while the next are made */
	pthread_mutex_lock(&writers_lock);
	p->id = next_writer++;
	p->next = writers;
	writers = p;
	pthread_mutex_unlock(&writers_lock);
	if (asprintf(&w->path, PAGES_PREFIX "%" PRIu64, p->id) < 0) {
		w->path = NULL;
		bri_store_write_end(w);
		return bri_err_set(err, -ENOMEM, "out of memory");
	}
	if (!store_path_vfs(w->path)) {
		bri_store_write_end(w);
		return bri_err_set(err, -ENOMEM, "cannot register the page store's SQLite VFS");
	}
	*out = w;
	return 0;
out_free:
	pages_db_close(p->db);
	free(p);
	free(w);
	return rc;
}

/*
 * The digest's read-back: SHA-256 wants page 1 first, and SQLite writes it
 * last, so the copy's pages are read back once it is done. Two reader
 * threads read (and decompress: the larger cost) alternate batches of
 * DIGEST_BATCH_BYTES (at least PACK_GROUP_PAGES pages), each through its own
 * cursor, into DIGEST_BUFS buffers (batch i in buffer i % DIGEST_BUFS, always
 * the same reader's), while this thread hashes the batches in order.
 */
#define DIGEST_BATCH_BYTES (1u << 20)
#define DIGEST_READERS     2
#define DIGEST_BUFS        4 /* a multiple of DIGEST_READERS */

struct digest_feed {
	struct pages_writer *p;
	size_t batch; /* pages a batch */
	uint8_t *buf[DIGEST_BUFS];
	size_t n[DIGEST_BUFS];  /* pages in a full buffer; 0: the end (or a failure) */
	bool full[DIGEST_BUFS]; /* guarded by lock */
	bool stop;              /* guarded by lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

struct digest_reader {
	struct digest_feed *f;
	struct page_cursor *cur;
	pthread_t thread;
	uint64_t first; /* its first batch; then every DIGEST_READERS-th */
	int rc;         /* its failure (read after the join) */
	uint64_t bad;   /* at this page (0-based) */
};

/* Reads pages [from, from + n) of the copy into buf: the number read, < n on a failure. */
static size_t digest_read(struct pages_writer *p, struct digest_reader *r, uint64_t from, size_t n,
                          uint8_t *buf)
{
	size_t k = 0;

	for (; k < n; k++) {
		const uint8_t *id = p->ids + (from + k) * PAGE_ID_LEN;
		uint8_t *page = buf + k * p->page_size;

		if (page_id_is_hole(id)) {
			memset(page, 0, p->page_size);
		} else if ((r->rc = pages_cursor_read(p->db, r->cur, id, p->page_size, true,
		                                      page)) < 0) {
			r->bad = from + k;
			break;
		}
	}
	return k;
}

static void *digest_reader(void *arg)
{
	struct digest_reader *r = arg;
	struct digest_feed *f = r->f;
	struct pages_writer *p = f->p;

	for (uint64_t batch = r->first;; batch += DIGEST_READERS) {
		int b = (int)(batch % DIGEST_BUFS);
		uint64_t from = batch * f->batch;
		size_t n = 0, k = 0;
		bool stop;

		pthread_mutex_lock(&f->lock);
		while (f->full[b] && !f->stop)
			pthread_cond_wait(&f->cond, &f->lock);
		stop = f->stop;
		pthread_mutex_unlock(&f->lock);
		if (stop)
			break;
		if (from < p->npages)
			n = p->npages - from < f->batch ? (size_t)(p->npages - from) : f->batch;
		k = digest_read(p, r, from, n, f->buf[b]);
		if (k < n)
			k = 0; /* the failure ends the hash */
		pthread_mutex_lock(&f->lock);
		f->n[b] = k;
		f->full[b] = true;
		pthread_cond_broadcast(&f->cond);
		pthread_mutex_unlock(&f->lock);
		if (k == 0)
			break;
	}
	return NULL;
}

/* Tells the digest's reader threads to stop, and joins the started ones. */
static void digest_readers_stop(struct digest_feed *f, struct digest_reader *r, int started)
{
	pthread_mutex_lock(&f->lock);
	f->stop = true;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
	for (int i = 0; i < started; i++)
		pthread_join(r[i].thread, NULL);
}

int pages_write_digest(struct bri_backup_writer *w, uint64_t *size,
                       char hex[BRI_CHECKSUM_HEX_LEN + 1], struct bri_err *err)
{
	struct pages_writer *p = w->priv;
	struct digest_feed f = {.p = p};
	struct digest_reader r[DIGEST_READERS] = {0};
	unsigned char digest[EVP_MAX_MD_SIZE];
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	size_t bytes;
	int started = 0, rc = 0;
	unsigned dlen = 0;

	pthread_mutex_init(&f.lock, NULL);
	pthread_cond_init(&f.cond, NULL);
	/* Every page stored (or the worker's failure in p->err), the worker gone. */
	pw_drain(p);
	pw_stop(p);
	if (p->err.code) {
		rc = bri_err_set(err, p->err.code, "%s", p->err.msg);
		goto out_free;
	}
	f.batch = p->page_size ? DIGEST_BATCH_BYTES / p->page_size : 1;
	if (f.batch < PACK_GROUP_PAGES)
		f.batch = PACK_GROUP_PAGES;
	bytes = f.batch * (p->page_size ? p->page_size : 1);
	for (int b = 0; b < DIGEST_BUFS; b++)
		if (!(f.buf[b] = malloc(bytes)))
			rc = -ENOMEM;
	for (int i = 0; i < DIGEST_READERS; i++) {
		r[i].f = &f;
		r[i].first = (uint64_t)i;
		if (pages_cursor_new(p->db, &r[i].cur) < 0)
			rc = -ENOMEM;
	}
	/* The logical bytes as served, read back through the pages just written
	 * (in order: through cursors of their own, outside the store's cache). */
	if (rc < 0 || !md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	while (started < DIGEST_READERS &&
	       pthread_create(&r[started].thread, NULL, digest_reader, &r[started]) == 0)
		started++;
	if (started < DIGEST_READERS) {
		/* Not every reader: this thread reads and hashes alone. */
		digest_readers_stop(&f, r, started);
		started = 0;
		r[0].rc = 0;
		for (uint64_t from = 0; from < p->npages && rc == 0; from += f.batch) {
			size_t n =
			    p->npages - from < f.batch ? (size_t)(p->npages - from) : f.batch;

			if (digest_read(p, &r[0], from, n, f.buf[0]) < n)
				break;
			if (!EVP_DigestUpdate(md, f.buf[0], n * p->page_size))
				rc = bri_err_set(err, -EIO, "SHA-256 failed");
		}
	}
	for (uint64_t batch = 0; started; batch++) {
		int b = (int)(batch % DIGEST_BUFS);
		size_t n;

		pthread_mutex_lock(&f.lock);
		while (!f.full[b])
			pthread_cond_wait(&f.cond, &f.lock);
		n = f.n[b];
		pthread_mutex_unlock(&f.lock);
		if (n == 0)
			break;
		if (!EVP_DigestUpdate(md, f.buf[b], n * p->page_size)) {
			rc = bri_err_set(err, -EIO, "SHA-256 failed");
			break;
		}
		pthread_mutex_lock(&f.lock);
		f.full[b] = false;
		pthread_cond_broadcast(&f.cond);
		pthread_mutex_unlock(&f.lock);
	}
	if (started)
		digest_readers_stop(&f, r, started);
	for (int i = 0; i < DIGEST_READERS && rc == 0; i++)
		if (r[i].rc < 0)
			rc = bri_err_set(err, r[i].rc,
			                 "cannot read back page %" PRIu64 " of the new backup",
			                 r[i].bad + 1);
	if (rc == 0 && !EVP_DigestFinal_ex(md, digest, &dlen))
		rc = bri_err_set(err, -EIO, "SHA-256 failed");
	for (unsigned i = 0; rc == 0 && i < dlen; i++)
		sprintf(hex + 2 * i, "%02x", digest[i]);
	*size = p->npages * p->page_size;
out_free:
	for (int i = 0; i < DIGEST_READERS; i++)
		pages_cursor_free(r[i].cur);
	EVP_MD_CTX_free(md);
	for (int b = 0; b < DIGEST_BUFS; b++)
		free(f.buf[b]);
	pthread_cond_destroy(&f.cond);
	pthread_mutex_destroy(&f.lock);
	return rc;
}

/* The database's bytes verbatim: its page size from its header (bytes 16-17). */
int pages_write_data(struct bri_backup_writer *w, const void *buf, size_t len, uint64_t off,
                     struct bri_err *err)
{
	struct pages_writer *p = w->priv;
	const uint8_t *b = buf;
	int rc = 0;

	if (!p->page_size && len > 0) {
		uint32_t ps = off == 0 && len >= 100 ? (uint32_t)(b[16] << 8 | b[17]) : 0;

		if (ps == 1)
			ps = 65536;
		if (ps < PAGE_SIZE_MIN || (ps & (ps - 1)) || len % ps)
			return bri_err_set(err, -EINVAL,
			                   "backup %s is not an SQLite database of whole pages",
			                   w->name);
		rc = pw_put(p, b, ps, 0);
		b += ps, off += ps, len -= ps;
	}
	if (rc == 0 && len > 0)
		rc = pw_put(p, b, len, off);
	if (rc < 0)
		return bri_err_set(err, rc, "%s", p->err.msg);
	return 0;
}

/* The pack (fsync, publish), the metadata, then the manifest: the commit point. */
int pages_write_commit(struct bri_backup_writer *w, const char *meta, size_t len,
                       struct bri_err *err)
{
	struct pages_writer *p = w->priv;
	struct manifest m = {.page_size = p->page_size, .page_count = p->npages, .ids = p->ids};
	char file[FILE_MAX], *tmp = NULL;
	struct stat st;
	size_t mlen;
	void *blob;
	int fd, rc;

	pw_drain(p);
	pw_stop(p);
	if (p->err.code)
		return bri_err_set(err, p->err.code, "%s", p->err.msg);
	pages_manifest_file(w->name, file);
	if (fstatat(w->s->dirfd, file, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return bri_err_set(err, -EEXIST, "cannot publish %s/%s: it already exists",
		                   w->s->dir, file);
	rc = pages_db_flush(p->db, err);
	if (rc < 0)
		return rc;
	bri_testpoint("pages-pack-published");
	rc = manifest_encode(w->s->seal, w->name, &m, &blob, &mlen);
	if (rc < 0)
		return bri_err_set(err, rc, "cannot make the manifest: %s", strerror(-rc));
	fd = bri_store_tmpfile(w->s, w->name, "manifest", &tmp, err);
	if (fd < 0) {
		free(blob);
		return fd;
	}
	rc = 0;
	for (size_t done = 0; done < mlen && rc == 0;) {
		ssize_t n = write(fd, (char *)blob + done, mlen - done);

		if (n < 0 && errno != EINTR)
			rc = bri_err_set(err, -errno, "cannot write the manifest: %s",
			                 strerror(errno));
		else if (n > 0)
			done += (size_t)n;
	}
	free(blob);
	if (rc == 0)
		rc = pages_sidecar_write(w->s, w->name, BRI_SIDECAR_META, meta, len, err);
	if (rc == 0) {
		rc = bri_store_publish(w->s, fd, tmp, file, true, err);
		if (rc < 0)
			pages_sidecar_remove(w->s, w->name, BRI_SIDECAR_META);
	} else {
		bri_store_unlink(w->s, tmp);
	}
	close(fd);
	free(tmp);
	return rc;
}

void pages_write_end(struct bri_backup_writer *w)
{
	struct pages_writer *p = w->priv;

	pthread_mutex_lock(&writers_lock);
	for (struct pages_writer **q = &writers; *q; q = &(*q)->next)
		if (*q == p) {
			*q = p->next;
			break;
		}
	pthread_mutex_unlock(&writers_lock);
	pw_stop(p);
	/* Uncommitted: an unpublished pack goes; a published one holds only pages
	 * no manifest names, freed by the next cleanup. */
	pages_db_close(p->db);
	free(p->ids);
	free(p);
	free(w->path);
	free(w);
}
