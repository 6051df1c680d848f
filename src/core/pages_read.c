/*
 * The page store's reader (the format: store_pages.c). Reading maps an
 * offset to a page, its id to a group in a pack, decompressed and checked
 * (its frame checksum or GCM tags, else the page's id: pack.c, enum check);
 * a sequential reader gets a read-ahead thread of its own (ahead_get),
 * which asks the kernel for the packs' bytes of the next 16 MiB of the file
 * (ahead_hint). Other reads (SQLite's pages for verify, restore, export)
 * go through the store's bounded cache of decompressed groups (pack.h,
 * GROUP_CACHE_BYTES). The readers of one store share its pages
 * (shared_get), their index loaded by threads of its own while the first
 * reads go on (pack.h, pages_db_open_reader).
 */
#include "bri/store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bri/log.h"
#include "bri/testpoint.h"
#include "pack.h"
#include "pages_int.h"

struct pages_reader {
	struct pages_db *db;
	struct manifest m;
	char name[BRI_NAME_MAX + 1];
	pthread_mutex_t cur_lock; /* guards making cur */
	/* For streaming reads, one per concurrent reader (the mount's threads
	 * read ahead in parallel), each made when first needed. */
	struct page_cursor *cur[4];
	struct page_hint hint; /* shorter reads: the shared cache's slot of the last page, pinned */
	_Atomic(struct warm *) warm; /* a quick reader's warming thread (see warm_note), or NULL */
	atomic_bool warm_tried;      /* made under cur_lock */
	/* A quick reader's stream (verify's hash) is reading the file: it warms,
	 * and the warming thread waits (see warm_help). Set at its first
	 * streaming read, cleared at the end of the file. */
	atomic_bool streaming;
	/* Read-ahead of a sequential reader (see ahead_get), made at its first
	 * sequential streaming read. */
	pthread_mutex_t ahead_lock; /* a leaf: never held while reading the packs */
	uint64_t last_end;          /* where the latest read ended (ahead_lock) */
	struct ahead *ahead;        /* NULL when none (ahead_lock) */
};

/* A read at least this long streams through a cursor of the reader's (pack.h). */
#define STREAM_MIN (64u << 10)
#define CURSORS    (sizeof(((struct pages_reader *)0)->cur) / sizeof(struct page_cursor *))

/*
 * Warming ahead of a quick reader (verify). SQLite's integrity_check reads
 * the backup page by page in two passes over each table: its tree, leaves
 * from the last to the first, then its rows from the first to the last
 * (with their index entries); a table written in order lies in the file in
 * that order. On SQLite's thread alone, each pass decompresses every group
 * again (the shared cache is bounded, the backup is not) while the other
 * core idles once the hash is done. So a thread of the reader's own reads
 * into the store's shared cache (pages_db_warm) the groups of the next
 * WARM_SPAN_BYTES of pages in the direction the reader goes, up to
 * WARM_BATCH pages at a time. The reader's position follows its reads near
 * the warmed window, and jumps to a read whose group was not in the cache
 * (a new pass, another tree); a read the cache served elsewhere (an index
 * page) leaves it. Only for quick readers (every byte is read, and hashed
 * against the metadata's checksum); a group is checked as for any read
 * (pack.c, enum check), and one that does not read is left out of the
 * cache, so SQLite's own read meets the damage and names it. Bounded: one
 * thread per quick reader, stopped and joined at close, its window well
 * within the cache (GROUP_CACHE_BYTES); it never waits for the reader.
 *
 * While the reader's stream (verify's hash) reads the file, the stream
 * warms instead, a batch between two groups of its own (warm_help), and the
 * thread waits for the stream's end. Three busy threads on two cores made
 * SQLite's thread, the one verify waits for, wait for a core a fifth of its
 * time (0.33 s of a 2.3 s verify, /proc/thread-self/schedstat), and the
 * warming thread, woken late, missed the groups of a third of SQLite's
 * backward pass, which SQLite's thread then decompressed itself. Two busy
 * threads: the hash's own work waits for SQLite's next groups instead.
 */
/*
 * The window: 64 pages of 4 KiB. At most half the shared cache's slots
 * (pack.h, GROUP_CACHE_BYTES) even when each page of it is a group of its
 * own, whatever the page size; a larger window measured no faster.
 */
#define WARM_SPAN_BYTES (256u << 10)
#define WARM_BATCH      64 /* pages per pages_db_warm call */
#define WARM_STEP       64 /* pages between two reads that set the direction */

struct warm {
	pthread_t thread;
	pthread_mutex_t lock; /* a leaf: never held while reading the packs */
	pthread_cond_t cond;  /* want or stop changed (with lock) */
	bool stop;            /* close: end now (lock) */
	bool idle;            /* the thread waits for want to move (lock) */
	bool down;            /* the reader goes from the last page to the first (lock) */
	uint64_t want;        /* the reader's position: its latest read's first page (lock) */
	uint64_t away;        /* the latest read far from the window, + 1 (0: none) (lock) */
	uint64_t lo, hi;      /* pages lo..hi-1 warmed since the last jump (lock) */
	uint64_t span;        /* WARM_SPAN_BYTES in pages */
};

/* The next batch to warm, [*from, *from + n): n, or 0 (far enough ahead). Caller holds w->lock. */
static uint64_t warm_next(struct warm *w, uint64_t npages, uint64_t *from)
{
	uint64_t n;

	if (!w->down) {
		uint64_t end = w->want + w->span < npages ? w->want + w->span : npages;

		if (w->hi >= end)
			return 0;
		n = end - w->hi < WARM_BATCH ? end - w->hi : WARM_BATCH;
		*from = w->hi;
		w->hi += n;
		return n;
	}
	if (!w->lo || w->lo + w->span <= w->want)
		return 0;
	n = w->lo + w->span - w->want; /* to want - span, not past it */
	if (n > w->lo)
		n = w->lo;
	if (n > WARM_BATCH)
		n = WARM_BATCH;
	w->lo -= n;
	*from = w->lo;
	return n;
}

static void *warm_main(void *arg)
{
	struct pages_reader *p = arg;
	struct warm *w = atomic_load(&p->warm);
	uint64_t npages = p->m.page_count;

	pthread_mutex_lock(&w->lock);
	while (!w->stop) {
		uint64_t from = 0, n = atomic_load(&p->streaming) ? 0 : warm_next(w, npages, &from);

		if (!n) {
			w->idle = true;
			pthread_cond_wait(&w->cond, &w->lock);
			w->idle = false;
			continue;
		}
		pthread_mutex_unlock(&w->lock);
		pages_db_warm(p->db, p->m.ids + from * PAGE_ID_LEN, (size_t)n, p->m.page_size,
		              true);
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/*
 * One batch of p's warming, if one is due, on the thread of p's stream
 * (read_range, between two groups of the stream's own).
 */
static void warm_help(struct pages_reader *p)
{
	struct warm *w = atomic_load(&p->warm);
	uint64_t from = 0, n = 0;

	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	if (!w->stop)
		n = warm_next(w, p->m.page_count, &from);
	pthread_mutex_unlock(&w->lock);
	if (n)
		pages_db_warm(p->db, p->m.ids + from * PAGE_ID_LEN, (size_t)n, p->m.page_size,
		              true);
}

/* p's stream has read the file to its end: the warming thread goes on alone. */
static void warm_stream_end(struct pages_reader *p)
{
	struct warm *w = atomic_load(&p->warm);

	if (!w) {
		atomic_store(&p->streaming, false);
		return;
	}
	pthread_mutex_lock(&w->lock); /* the thread sees the change before it waits, or is woken */
	atomic_store(&p->streaming, false);
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

/* Makes p's warming thread (a quick reader's first short read), or leaves p->warm NULL. */
static void warm_start(struct pages_reader *p)
{
	struct warm *w;
	sigset_t all, old;

	pthread_mutex_lock(&p->cur_lock);
	if (atomic_load(&p->warm_tried)) {
		pthread_mutex_unlock(&p->cur_lock);
		return;
	}
	w = calloc(1, sizeof(*w));
	if (w) {
		pthread_mutex_init(&w->lock, NULL);
		pthread_cond_init(&w->cond, NULL); /* never waited on with a deadline */
		w->span = WARM_SPAN_BYTES / p->m.page_size;
		atomic_store(&p->warm, w); /* before the thread, which reads it */
		/* No signal for it: the daemon's threads that handle them are elsewhere. */
		sigfillset(&all);
		pthread_sigmask(SIG_BLOCK, &all, &old);
		if (pthread_create(&w->thread, NULL, warm_main, p) != 0) {
			atomic_store(&p->warm, NULL);
			pthread_cond_destroy(&w->cond);
			pthread_mutex_destroy(&w->lock);
			free(w);
		}
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	atomic_store(&p->warm_tried, true);
	pthread_mutex_unlock(&p->cur_lock);
}

/* Whether pages a and b are a step of a stream apart. */
static bool warm_near(uint64_t a, uint64_t b)
{
	return (a > b ? a - b : b - a) <= WARM_STEP;
}

/*
 * The reader read from page pos. A read near the window moves the stream
 * on; two reads near each other far from it (a new pass, another tree) make
 * it jump there; one read far from it (an index page) leaves it.
 */
static void warm_note(struct pages_reader *p, uint64_t pos)
{
	struct warm *w = atomic_load(&p->warm);
	uint64_t lo, hi;

	pthread_mutex_lock(&w->lock);
	lo = w->lo > w->span ? w->lo - w->span : 0;
	hi = w->hi + w->span;
	if (pos >= lo && pos <= hi) {
		/* The stream goes on: its direction from a step nearby. */
		if (pos != w->want && warm_near(pos, w->want))
			w->down = pos < w->want;
		w->want = pos;
		w->away = 0;
	} else if (w->away && warm_near(pos, w->away - 1)) {
		if (pos != w->away - 1)
			w->down = pos < w->away - 1;
		w->want = w->lo = w->hi = pos; /* a jump: warm from there */
		w->hi++;                       /* pos itself the reader has read */
		w->away = 0;
	} else {
		w->away = pos + 1;
	}
	if (w->idle && !atomic_load(&p->streaming) &&
	    ((!w->down && w->hi < w->want + w->span / 2) ||
	     (w->down && w->lo && w->lo + w->span / 2 > w->want)))
		pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static void warm_free(struct pages_reader *p)
{
	struct warm *w = atomic_load(&p->warm);

	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	free(w);
	atomic_store(&p->warm, NULL);
}

/*
 * Bytes off..off+len (within the file) through the reader's cursors or the
 * store's shared cache: the count, or a negative errno. report: a failure
 * is told in r->why and the log (not by the read-ahead, whose failed chunk
 * the reader's own read then meets and tells).
 */
static ssize_t read_range(struct bri_reader *r, void *buf, size_t len, uint64_t off, bool report)
{
	/* Pages served on their group's frame checksum, unless the caller looks
	 * for damage (pack.c, enum check: the integrity argument); SQLite's
	 * pages of a quick reader (verify) unchecked: the whole file is hashed
	 * against the metadata's SHA-256, and the damage named when it fails. */
	bool quick = !r->every_page;
	enum check check = !quick ? CHECK_ALL : r->quick ? CHECK_NONE : CHECK_RAW;
	struct pages_reader *p = r->priv;
	struct page_cursor *cur = NULL;
	uint32_t ps = p->m.page_size;
	uint8_t *page = NULL;
	bool warm = false, stream;
	size_t done = 0;
	int rc = 0;

	/* A free cursor, or a new one; all busy (or no memory): the shared path. */
	for (size_t i = 0; len >= STREAM_MIN && !cur && i < CURSORS; i++) {
		pthread_mutex_lock(&p->cur_lock);
		if (!p->cur[i])
			pages_cursor_new(p->db, &p->cur[i]);
		cur = p->cur[i];
		pthread_mutex_unlock(&p->cur_lock);
		if (cur && pthread_mutex_trylock(&cur->lock) != 0)
			cur = NULL;
	}
	/* A quick reader's stream (verify's hash) that goes on after this read:
	 * it warms for SQLite's reads (see warm_help). */
	stream = cur && r->quick && quick;
	if (stream && off + len < r->size && !atomic_load(&p->streaming))
		atomic_store(&p->streaming, true);
	while (done < len && rc == 0) {
		uint64_t pos = off + done, pgno = pos / ps;
		size_t in = (size_t)(pos % ps), n = ps - in;
		const uint8_t *id = p->m.ids + pgno * PAGE_ID_LEN;

		if (stream && pgno % PACK_GROUP_PAGES == 0)
			warm_help(p);

		if (n > len - done)
			n = len - done;
		if (page_id_is_hole(id)) {
			memset((char *)buf + done, 0, n); /* never written: zeros, as in a file */
		} else if (in == 0 && n == ps) {
			rc = cur ? pages_cursor_read(p->db, cur, id, ps, quick, (char *)buf + done)
			         : pages_db_read_hinted(p->db, &p->hint, id, ps, check,
			                                (char *)buf + done);
			warm |= !cur;
		} else if (!page && !(page = malloc(ps))) {
			rc = -ENOMEM;
		} else {
			rc = pages_db_read_hinted(p->db, &p->hint, id, ps, check, page);
			warm = true;
			if (rc == 0)
				memcpy((char *)buf + done, page + in, n);
		}
		if (rc == 0) {
			done += n;
		} else if (rc != -ENOMEM && report) {
			snprintf(r->why, sizeof(r->why),
			         "backup %s: page %" PRIu64 " (bytes %" PRIu64 "-%" PRIu64
			         ") is %s in the store's packs",
			         p->name, pgno + 1, pgno * ps, (pgno + 1) * ps - 1,
			         rc == -ENOENT ? "missing" : pages_damage_words(p->db));
			bri_log(BRI_LOG_WARN, "%s/%s", r->label, r->why);
		}
	}
	if (cur)
		pthread_mutex_unlock(&cur->lock);
	if (stream && off + done >= r->size && atomic_load(&p->streaming))
		warm_stream_end(p);
	/* A quick reader's page reads: warming ahead of them (see warm_note). */
	if (warm && r->quick && quick && rc == 0 && !atomic_load(&p->warm_tried))
		warm_start(p);
	if (warm && r->quick && quick && rc == 0 && atomic_load(&p->warm))
		warm_note(p, off / ps);
	free(page);
	if (rc < 0 && !(rc == -ENOMEM && done))
		return rc == -ENOENT ? -EBADMSG : rc;
	return (ssize_t)done;
}

/*
 * Read-ahead of a sequential reader (a cat or a cp through the mount). Its
 * first read of a backup spends its time decompressing (in an encrypted
 * store, also opening) groups, request after request. At a streaming read
 * (STREAM_MIN) that starts where the reader's latest read ended (a first
 * read at offset 0 too), AHEAD_WORKERS threads of the reader's own start
 * assembling the file ahead of it, each a different chunk at a time, in
 * chunks of at least AHEAD_CHUNK bytes (and at least one full group), into
 * a ring of about AHEAD_BYTES, through read_range like any read: every group
 * is checked as for any read (its frame checksum or GCM tags: pack.c, enum
 * check). A request whose chunk is being assembled waits for it, and one
 * whose chunk nobody has started assembles it itself; a request never takes
 * a later chunk meanwhile (it answered late: the requests of a first cat
 * assembled a third of the chunks themselves, each one's reader waiting). A
 * chunk whose assembly failed (a damaged group, no memory) is left out of
 * the ring: the request reads the packs itself (read_range, which names the
 * backup and the page in r->why and the log, and fails the request), exactly
 * as without read-ahead. Bounded: at most AHEAD_STREAMS readers of the
 * process have a read-ahead at once; the threads end at the end of the file,
 * and close stops and joins them (after the chunk each is assembling, if
 * any). Never for verify (quick reads) nor a damage search (every_page).
 *
 * One worker, measured: on this 2-core VM two of them lost to one in first
 * cats of one-pack stores, clear and encrypted (medians of 14 and 7
 * interleaved runs: 1.24 and 1.53 s against 1.14 and 1.23 s), the second
 * thread's decoding competing with the mount's replies, the reader and the
 * index's loader for the cores. Chunks of 1 MiB: while the store's index
 * loads, a worker finds a page not indexed yet by the group after the one
 * it read last (cursor_chain, pack.c), which at a chunk's start another
 * thread may have read; with 256 KiB chunks and two workers a first cat of a one-pack store
 * took 0.95 s of the daemon's CPU against 0.71 s with 1 MiB chunks.
 */
#define AHEAD_BYTES   (4u << 20)
#define AHEAD_CHUNK   (1u << 20)
#define AHEAD_STREAMS 4
#define AHEAD_WORKERS 1

enum ahead_state { AHEAD_EMPTY, AHEAD_FILLING, AHEAD_DONE, AHEAD_FAILED };

struct ahead_slot {
	uint64_t chunk; /* the chunk it holds (state not EMPTY) */
	int state;      /* enum ahead_state */
	int pins;       /* requests copying from it */
	uint8_t *buf;   /* the chunk's bytes, made at its first use */
};

/* All fields guarded by the reader's ahead_lock, but r and the sizes (fixed). */
struct ahead {
	struct bri_reader *r;
	pthread_t thread[AHEAD_WORKERS];
	int made;         /* threads made (to join) */
	int running;      /* of them, not ended */
	bool stop;        /* close: end now */
	size_t chunk;     /* bytes per chunk */
	uint64_t nchunks; /* of the file */
	uint64_t next;    /* the next chunk a worker takes */
	uint64_t lo;      /* the first chunk of the latest request: earlier ones are done with */
	bool hinting;     /* a worker is asking the kernel (ahead_hint): hinted is its own */
	uint64_t hinted;  /* the file's bytes before it were asked of the kernel (hinting's) */
	size_t nslots;
	pthread_cond_t cond; /* a slot's state or pins changed (with ahead_lock): requests */
	int waiting;         /* requests waiting on cond */
	pthread_cond_t work; /* a worker can go on (see ahead_wake; with ahead_lock) */
	int idle;            /* workers waiting on work */
	struct ahead_slot slot[];
};

static atomic_int ahead_streams; /* readers with a read-ahead now */

/*
 * The read-ahead's thread, before it assembles chunk c, makes sure the
 * kernel has been asked for the packs' bytes of the file up to
 * PREFETCH_AHEAD past the chunk (pages_db_prefetch, once the hinted part
 * has shrunk to half of that: a few calls of PREFETCH_PAGES pages each). A
 * cold first read otherwise waits on the disk for each group in turn; the
 * backup's pages of a day's churn sit in that day's pack, so the kernel's
 * own read-ahead of each file, which sees a read here and one there, does
 * not help them. A seek starts again at c. One index lookup per page of the
 * file, under the store's lock a batch at a time; only a hint (see
 * pages_db_prefetch).
 */
#define PREFETCH_AHEAD (16u << 20)

static void ahead_hint(struct pages_reader *p, struct ahead *a, uint64_t c)
{
	uint64_t at = c * a->chunk, want = at + a->chunk + PREFETCH_AHEAD;
	uint32_t ps = p->m.page_size;

	if (want > a->r->size)
		want = a->r->size;
	if (a->hinted < at || a->hinted > want)
		a->hinted = at; /* a seek (chunks are whole pages) */
	if (a->hinted >= at + a->chunk + PREFETCH_AHEAD / 2 && a->hinted < want)
		return;
	while (a->hinted < want) {
		uint64_t n = (want - a->hinted + ps - 1) / ps;

		if (n > PREFETCH_PAGES)
			n = PREFETCH_PAGES;
		pages_db_prefetch(p->db, p->m.ids + a->hinted / ps * PAGE_ID_LEN, (size_t)n, ps);
		a->hinted += n * ps;
	}
}

/* Whether chunk c can be claimed now (in the window, not there, its slot free). */
static bool ahead_claimable(const struct ahead *a, uint64_t c)
{
	const struct ahead_slot *s = &a->slot[c % a->nslots];

	return c < a->nchunks && c < a->lo + a->nslots && s->state != AHEAD_FILLING && !s->pins &&
	       !(s->state != AHEAD_EMPTY && s->chunk == c);
}

/*
 * Wakes an idle worker if one can go on: a chunk to claim, the next one
 * there already (a request assembled it), the end of the file, or close.
 * Workers sleep on a condition of their own, woken one at a time and only
 * then: with a full ring, every request (and every reply's release) used to
 * wake both, for nothing but to find the ring full again. Caller holds
 * ahead_lock.
 */
static void ahead_wake(struct ahead *a)
{
	const struct ahead_slot *s = &a->slot[a->next % a->nslots];

	if (a->idle && (a->stop || a->next >= a->nchunks || ahead_claimable(a, a->next) ||
	                (s->state != AHEAD_EMPTY && s->chunk == a->next)))
		pthread_cond_signal(&a->work);
}

/*
 * Assembles chunk c into s (neither FILLING nor pinned). Caller holds
 * ahead_lock, released meanwhile. worker: a read-ahead thread (not a
 * request). One worker at a time asks the kernel (hinting).
 */
static void ahead_fill(struct pages_reader *p, struct ahead *a, struct ahead_slot *s, uint64_t c,
                       bool worker)
{
	uint64_t off = c * a->chunk;
	size_t len = a->r->size - off < a->chunk ? (size_t)(a->r->size - off) : a->chunk;
	bool hint = worker && !a->hinting;
	int state = AHEAD_FAILED;

	s->chunk = c;
	s->state = AHEAD_FILLING;
	if (a->next == c)
		a->next = c + 1;
	a->hinting |= hint;
	ahead_wake(a); /* the next chunk, for an idle worker */
	pthread_mutex_unlock(&p->ahead_lock);
	if (worker)
		bri_testpoint("pages-ahead-fill");
	if (worker && c == 2)
		bri_testpoint("pages-ahead-chunk-2"); /* one thread, the other going on */
	if (hint)
		ahead_hint(p, a, c);
	if (!s->buf)
		s->buf = malloc(a->chunk);
	if (s->buf && read_range(a->r, s->buf, len, off, false) == (ssize_t)len)
		state = AHEAD_DONE;
	pthread_mutex_lock(&p->ahead_lock);
	if (hint)
		a->hinting = false;
	s->state = state;
	if (a->waiting)
		pthread_cond_broadcast(&a->cond);
	ahead_wake(a);
}

static void *ahead_main(void *arg)
{
	struct pages_reader *p = arg;
	struct ahead *a;

	pthread_mutex_lock(&p->ahead_lock);
	a = p->ahead;
	while (!a->stop && a->next < a->nchunks) {
		uint64_t c = a->next;
		struct ahead_slot *s = &a->slot[c % a->nslots];

		if (s->state != AHEAD_EMPTY && s->chunk == c)
			a->next++; /* a request assembled it, or is assembling it */
		else if (ahead_claimable(a, c))
			ahead_fill(p, a, s, c, true);
		else {
			a->idle++;
			pthread_cond_wait(&a->work, &p->ahead_lock);
			a->idle--;
		}
	}
	a->running--;
	ahead_wake(a); /* the other worker ends too */
	pthread_mutex_unlock(&p->ahead_lock);
	return NULL;
}

/* Starts the read-ahead's threads (all ended, or never made). Caller holds ahead_lock. */
static void ahead_start(struct pages_reader *p, struct ahead *a)
{
	sigset_t all, old;

	/* Ended (running is 0): each let go of ahead_lock for good before it. */
	for (int i = 0; i < a->made; i++)
		pthread_join(a->thread[i], NULL);
	a->made = 0;
	/* No signal for them: the daemon's threads that handle them are elsewhere. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (int i = 0; i < AHEAD_WORKERS; i++)
		if (pthread_create(&a->thread[a->made], NULL, ahead_main, p) == 0)
			a->made++;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	a->running = a->made;
}

/* Bytes per chunk of p's read-ahead: AHEAD_CHUNK, or a full group. */
static size_t ahead_chunk(const struct pages_reader *p)
{
	size_t group = (size_t)PACK_GROUP_PAGES * p->m.page_size;

	return group > AHEAD_CHUNK ? group : AHEAD_CHUNK;
}

/* A read-ahead for r, within AHEAD_STREAMS, or NULL. */
static struct ahead *ahead_new(struct bri_reader *r, const struct pages_reader *p)
{
	size_t chunk = ahead_chunk(p), nslots = AHEAD_BYTES / chunk < 2 ? 2 : AHEAD_BYTES / chunk;
	struct ahead *a;

	if (atomic_fetch_add(&ahead_streams, 1) >= AHEAD_STREAMS) {
		atomic_fetch_sub(&ahead_streams, 1);
		return NULL;
	}
	a = calloc(1, sizeof(*a) + nslots * sizeof(a->slot[0]));
	if (!a) {
		atomic_fetch_sub(&ahead_streams, 1);
		return NULL;
	}
	a->r = r;
	a->chunk = chunk;
	a->nslots = nslots;
	a->nchunks = (r->size + chunk - 1) / chunk;
	pthread_cond_init(&a->cond, NULL); /* never waited on with a deadline */
	pthread_cond_init(&a->work, NULL);
	return a;
}

/* Stops and frees p's read-ahead (close: no request is in flight). */
static void ahead_free(struct pages_reader *p)
{
	struct ahead *a = p->ahead;

	if (!a)
		return;
	pthread_mutex_lock(&p->ahead_lock);
	a->stop = true;
	pthread_cond_broadcast(&a->work);
	pthread_mutex_unlock(&p->ahead_lock);
	for (int i = 0; i < a->made; i++)
		pthread_join(a->thread[i], NULL);
	for (size_t i = 0; i < a->nslots; i++)
		free(a->slot[i].buf);
	pthread_cond_destroy(&a->cond);
	pthread_cond_destroy(&a->work);
	free(a);
	p->ahead = NULL;
	atomic_fetch_sub(&ahead_streams, 1);
}

/*
 * A request for off..off+len (within the file) enters p's read-ahead, made
 * at the reader's first sequential streaming read: the window starts at
 * its first chunk (a seek moves it), the thread is started if it is not
 * running. Returns the read-ahead, or NULL (none; ahead_lock released).
 * single: only for a request within one chunk (else NULL and nothing
 * changes). Caller holds ahead_lock.
 */
static struct ahead *ahead_enter(struct bri_reader *r, struct pages_reader *p, size_t len,
                                 uint64_t off, bool single)
{
	struct ahead *a = p->ahead;
	uint64_t first;
	bool seq;

	if (single && (!a || len < STREAM_MIN || off / a->chunk != (off + len - 1) / a->chunk)) {
		pthread_mutex_unlock(&p->ahead_lock);
		return NULL;
	}
	seq = off == p->last_end;
	p->last_end = off + len;
	/* Not for a read that leaves less than a chunk to read after it (a small file). */
	if (!a && seq && len >= STREAM_MIN && off + len + ahead_chunk(p) < r->size)
		a = p->ahead = ahead_new(r, p);
	if (!a || len < STREAM_MIN) {
		pthread_mutex_unlock(&p->ahead_lock);
		return NULL;
	}
	first = off / a->chunk;
	a->lo = first;
	if (a->next < first || a->next > first + a->nslots)
		a->next = first;
	if (!a->running && seq && a->next < a->nchunks)
		ahead_start(p, a);
	ahead_wake(a);
	return a;
}

/*
 * Chunk c of a, assembled (by this thread if nobody has started it) and
 * pinned: its slot, or NULL (its assembly failed). Caller holds ahead_lock;
 * unpin with ahead_unpin.
 */
static struct ahead_slot *ahead_pin(struct pages_reader *p, struct ahead *a, uint64_t c)
{
	struct ahead_slot *s = &a->slot[c % a->nslots];

	for (;;) {
		if (s->state == AHEAD_DONE && s->chunk == c) {
			s->pins++;
			return s;
		}
		if (s->state == AHEAD_FAILED && s->chunk == c)
			return NULL;
		if (s->state == AHEAD_FILLING || s->pins) {
			a->waiting++;
			pthread_cond_wait(&a->cond, &p->ahead_lock);
			a->waiting--;
			continue;
		}
		ahead_fill(p, a, s, c, false); /* not there: this request assembles it */
	}
}

/* Caller holds ahead_lock. */
static void ahead_unpin(struct ahead *a, struct ahead_slot *s)
{
	if (--s->pins == 0) {
		if (a->waiting)
			pthread_cond_broadcast(&a->cond);
		ahead_wake(a);
	}
}

/*
 * Bytes off..off+len (within the file) through the read-ahead: true, or
 * false (no read-ahead, or a chunk of the range could not be assembled: the
 * caller reads the packs itself).
 */
static bool ahead_get(struct bri_reader *r, struct pages_reader *p, void *buf, size_t len,
                      uint64_t off)
{
	struct ahead_slot *s;
	struct ahead *a;
	bool ok = true;

	pthread_mutex_lock(&p->ahead_lock);
	a = ahead_enter(r, p, len, off, false);
	if (!a)
		return false;
	for (uint64_t c = off / a->chunk; ok && c <= (off + len - 1) / a->chunk; c++) {
		uint64_t from = off > c * a->chunk ? off : c * a->chunk;
		uint64_t to = off + len < (c + 1) * a->chunk ? off + len : (c + 1) * a->chunk;

		s = ahead_pin(p, a, c);
		ok = s != NULL;
		if (!s)
			break;
		pthread_mutex_unlock(&p->ahead_lock);
		memcpy((char *)buf + (from - off), s->buf + (from - c * a->chunk),
		       (size_t)(to - from));
		pthread_mutex_lock(&p->ahead_lock);
		ahead_unpin(a, s);
	}
	pthread_mutex_unlock(&p->ahead_lock);
	return ok;
}

/*
 * bri_reader.hold: a request within one chunk of the read-ahead is served
 * from the chunk itself (the mount replies from it: no copy), pinned until
 * pages_release. 0, or -EAGAIN (then pread: it makes the read-ahead, reads
 * a range over several chunks, or reads the packs itself, reporting damage).
 */
static int pages_hold(struct bri_reader *r, size_t *len, uint64_t off, const void **data,
                      void **ref)
{
	struct pages_reader *p = r->priv;
	struct ahead_slot *s;
	struct ahead *a;

	if (r->quick || r->every_page || off >= r->size)
		return -EAGAIN;
	if (*len > r->size - off)
		*len = (size_t)(r->size - off);
	pthread_mutex_lock(&p->ahead_lock);
	a = ahead_enter(r, p, *len, off, true);
	if (!a)
		return -EAGAIN;
	s = ahead_pin(p, a, off / a->chunk);
	pthread_mutex_unlock(&p->ahead_lock);
	if (!s)
		return -EAGAIN;
	*data = s->buf + (off - s->chunk * a->chunk);
	*ref = s;
	return 0;
}

static void pages_release(struct bri_reader *r, void *ref)
{
	struct pages_reader *p = r->priv;

	pthread_mutex_lock(&p->ahead_lock);
	ahead_unpin(p->ahead, ref);
	pthread_mutex_unlock(&p->ahead_lock);
}

static ssize_t pages_pread(struct bri_reader *r, void *buf, size_t len, uint64_t off)
{
	if (off >= r->size)
		return 0;
	if (len > r->size - off)
		len = (size_t)(r->size - off);
	if (!r->quick && !r->every_page && ahead_get(r, r->priv, buf, len, off))
		return (ssize_t)len;
	return read_range(r, buf, len, off, true);
}

/*
 * The readers of one store share its pages: one index, one group cache and
 * one descriptor per pack for all of them (the mount opens a reader per open
 * file), made by the first and closed with the last. A store whose packs
 * changed under it (a cleanup removed one) gets a fresh one for new readers;
 * the old one goes with its last reader, so a removed pack's space is never
 * held longer than that.
 */
struct shared_db {
	const struct bri_store *s;
	struct pages_db *db;
	int refs;
	bool stale; /* not given to new readers */
	struct shared_db *next;
};

static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static struct shared_db *shared; /* guarded by shared_lock */

/* Whether every pack db knows is still in the store. Caller holds db->lock. */
static bool packs_present(const struct pages_db *db)
{
	struct stat st;

	for (size_t i = 0; i < db->npacks; i++)
		if (fstatat(db->s->dirfd, db->packs[i].name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return false;
	return true;
}

static int shared_get(const struct bri_store *s, struct pages_db **out, struct bri_err *err)
{
	struct shared_db *h;
	int rc = 0;

	pthread_mutex_lock(&shared_lock);
	for (h = shared; h; h = h->next) {
		if (h->s != s || h->stale)
			continue;
		pthread_mutex_lock(&h->db->lock);
		h->stale = h->db->load_rc < 0 || !packs_present(h->db);
		pthread_mutex_unlock(&h->db->lock);
		if (!h->stale)
			break;
	}
	if (!h) {
		h = calloc(1, sizeof(*h));
		rc = h ? pages_db_open_reader((struct bri_store *)s, &h->db, err)
		       : bri_err_set(err, -ENOMEM, "out of memory");
		if (rc < 0) {
			free(h);
			h = NULL;
		} else {
			h->s = s;
			h->next = shared;
			shared = h;
		}
	}
	if (h) {
		h->refs++;
		*out = h->db;
	}
	pthread_mutex_unlock(&shared_lock);
	return rc;
}

static void shared_put(const struct pages_db *db)
{
	struct shared_db **q, *h = NULL;

	if (!db)
		return;
	pthread_mutex_lock(&shared_lock);
	for (q = &shared; *q; q = &(*q)->next)
		if ((*q)->db == db) {
			h = *q;
			if (--h->refs == 0)
				*q = h->next;
			break;
		}
	pthread_mutex_unlock(&shared_lock);
	if (h && h->refs == 0) {
		pages_db_close(h->db);
		free(h);
	}
}

static void pages_reader_close(struct bri_reader *r)
{
	struct pages_reader *p = r->priv;

	if (p) {
		warm_free(p);
		ahead_free(p);
		pthread_mutex_destroy(&p->ahead_lock);
		for (size_t i = 0; i < CURSORS; i++)
			pages_cursor_free(p->cur[i]);
		pthread_mutex_destroy(&p->cur_lock);
		pages_db_hint_release(p->db, &p->hint);
		shared_put(p->db);
		free(p->m.ids);
		free(p);
	}
	free(r->label);
	free(r);
}

int pages_open_reader(const struct bri_store *s, const char *name, struct bri_reader **out,
                      struct bri_err *err)
{
	struct bri_reader *r = calloc(1, sizeof(*r));
	struct pages_reader *p = calloc(1, sizeof(*p));
	char file[FILE_MAX];
	int rc;

	if (!r || !p) {
		free(r);
		free(p);
		return bri_err_set(err, -ENOMEM, "out of memory");
	}
	r->fd = -1;
	r->priv = p;
	pthread_mutex_init(&p->cur_lock, NULL);
	pages_db_hint_init(&p->hint);
	pthread_mutex_init(&p->ahead_lock, NULL);
	r->pread = pages_pread;
	r->hold = pages_hold;
	r->release = pages_release;
	r->close = pages_reader_close;
	snprintf(p->name, sizeof(p->name), "%s", name);
	r->label = bri_store_path(s, name, MANIFEST_SUFFIX);
	pages_manifest_file(name, file);
	if (!r->label) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_close;
	}
	if (fstatat(s->dirfd, file, &r->st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(r->st.st_mode)) {
		rc = bri_err_set(err, -ENOENT, "no backup named %s in %s", name, s->dir);
		goto out_close;
	}
	rc = manifest_read(s, name, &p->m);
	if (rc < 0) {
		rc = bri_err_set(err, rc, "cannot read the manifest of backup %s in %s: %s", name,
		                 s->dir, rc == -EBADMSG ? "damaged" : strerror(-rc));
		goto out_close;
	}
	/* The manifest first, then the packs: the packs its pages are in are published. */
	rc = shared_get(s, &p->db, err);
	if (rc < 0)
		goto out_close;
	r->size = p->m.page_count * p->m.page_size;
	r->st.st_size = (off_t)r->size;
	*out = r;
	return 0;
out_close:
	pages_reader_close(r);
	return rc;
}
