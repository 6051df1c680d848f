/*
 * The page store format (SPEC.md section 5): a backup NAME is NAME.meta
 * (the same JSON as plain's; checksum the SHA-256 of the database as
 * served), NAME.manifest (page size, count, one page id per page; the
 * commit point) and pages kept once each in shared pack files (pack.c).
 * Sidecars are NAME.verify, NAME.pin and the like. The only file that
 * spells those names. In an encrypted store the names stay (they are the
 * backups' names, which SPEC.md section 5 leaves visible) and every file's
 * content is sealed: packs and manifests by pack.c, the metadata and the
 * sidecars by store_read_sealed/store_write_sealed (seal.h), bound to their
 * file names.
 *
 * A new backup is written by SQLite's backup API through the "bri-pages"
 * VFS: its xWrite queues each page for the store worker (a second thread),
 * which hashes it and appends the pages the store lacks to a new pack, so
 * the full copy is never written to disk. The whole file's SHA-256 is then
 * taken from the pages read back (SQLite writes page 1 last). Commit: the
 * pack is fsynced and published, then the metadata, then the manifest
 * (rename without replacing): a backup is complete or absent. Reading maps
 * an offset to a page, its id to a group in a pack, decompressed and checked
 * (its frame checksum or GCM tags, else the page's id: pack.c, enum check);
 * a sequential reader gets a read-ahead thread of its own (ahead_get).
 * Removing a backup removes its manifest first, then its sidecars, then
 * frees the pages no remaining manifest uses (pages_gc).
 */
#include "bri/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "bri/checksum.h"
#include "bri/log.h"
#include "bri/testpoint.h"
#include "pack.h"
#include "seal.h"
#include "store_int.h"

#define FILE_MAX       (BRI_NAME_MAX + 16)
#define PAGES_VFS_NAME "bri-pages"
#define PAGES_PREFIX   "/bri-pages/"

static const char *const sidecar_suffix[BRI_SIDECAR_KINDS] = {
    [BRI_SIDECAR_META] = ".meta",       [BRI_SIDECAR_VERIFY] = ".verify",
    [BRI_SIDECAR_PIN] = ".pin",         [BRI_SIDECAR_REHEARSAL] = ".rehearsal",
    [BRI_SIDECAR_OFFSITE] = ".offsite",
};

static void sidecar_file(const char *name, enum bri_sidecar kind, char file[FILE_MAX])
{
	snprintf(file, FILE_MAX, "%s%s", name, sidecar_suffix[kind]);
}

static void manifest_file(const char *name, char file[FILE_MAX])
{
	snprintf(file, FILE_MAX, "%s" MANIFEST_SUFFIX, name);
}

static bool backup_name(const char *fname, char name[BRI_NAME_MAX + 1])
{
	size_t n = strlen(fname), m = strlen(MANIFEST_SUFFIX);

	if (n <= m || n - m > BRI_NAME_MAX || strcmp(fname + n - m, MANIFEST_SUFFIX) != 0)
		return false;
	memcpy(name, fname, n - m);
	name[n - m] = '\0';
	return bri_store_check_name(name, n - m, NULL) == 0;
}

/* The manifest's identity with the backup's logical size, from the manifest's header. */
static int manifest_stat(const struct bri_store *s, const char *name, struct stat *st)
{
	char file[FILE_MAX];
	uint64_t size;
	int rc;

	manifest_file(name, file);
	if (fstatat(s->dirfd, file, st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (!S_ISREG(st->st_mode))
		return -ENOENT;
	rc = manifest_logical_size(s, name, &size);
	if (rc < 0)
		return rc;
	st->st_size = (off_t)size;
	return 0;
}

static int pages_list(const struct bri_store *s,
                      int (*fn)(void *arg, const char *name, const struct stat *st), void *arg,
                      struct bri_err *err)
{
	char name[BRI_NAME_MAX + 1];
	struct dirent *d;
	struct stat st;
	DIR *dir;
	int fd, rc = 0;

	fd = openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(dir = fdopendir(fd))) {
		rc = bri_err_set(err, -errno, "cannot read backup folder %s: %s", s->dir,
		                 strerror(errno));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	for (;;) {
		errno = 0;
		d = readdir(dir);
		if (!d) {
			if (errno)
				rc = bri_err_set(err, -errno, "cannot read backup folder %s: %s",
				                 s->dir, strerror(errno));
			break;
		}
		if (!backup_name(d->d_name, name) || manifest_stat(s, name, &st) < 0)
			continue;
		rc = fn(arg, name, &st);
		if (rc)
			break;
	}
	closedir(dir);
	return rc;
}

static int pages_stat(const struct bri_store *s, const char *name, struct stat *st)
{
	int rc = manifest_stat(s, name, st);

	return rc == -EBADMSG ? -ENOENT : rc;
}

/* ---- reading ---- */

struct pages_reader {
	struct pages_db *db;
	struct manifest m;
	char name[BRI_NAME_MAX + 1];
	pthread_mutex_t cur_lock; /* guards making cur */
	/* For streaming reads, one per concurrent reader (the mount's threads
	 * read ahead in parallel), each made when first needed. */
	struct page_cursor *cur[4];
	/* verify's spill (see spill_get), made at its first read. */
	int spill_fd;              /* an unnamed temporary file, -1 when none (cur_lock) */
	bool spill_tried;          /* guarded by cur_lock */
	uint8_t *chunk;            /* per SPILL_CHUNK of the file: enum chunk_state (cur_lock) */
	uint64_t nchunks;          /* entries at chunk */
	pthread_cond_t spill_cond; /* a chunk's state changed (with cur_lock) */
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
 * verify's spill. verify hashes a backup (one thread, in order, in 1 MiB
 * reads) while SQLite's integrity_check and row counts read it page by
 * page on another thread, in tree order, each page about three times
 * (tables, then indexes, then counts): from the packs, each visit would
 * decompress the page's group again (with a cache bounded whatever the
 * backup's size, about three times the zstd work of the hash). So while a
 * reader is quick (verify: every byte it serves is hashed and compared with
 * the metadata's SHA-256), its bytes are assembled once, a chunk of
 * SPILL_CHUNK at a time, by whichever thread first needs the chunk (the
 * hash and SQLite then decompress different chunks at the same time), into
 * an unnamed temporary file (O_TMPFILE in $TMPDIR or /var/tmp: nothing to
 * clean up, its pages dropped unwritten when it is closed; never for an
 * encrypted store, whose verify reads the packs), and every read,
 * the hash's and SQLite's, is served from that file, as a plain store serves
 * them from its own. A chunk is written once and never changes, so the
 * bytes SQLite checks are the bytes hashed; they were assembled by the same
 * checked path as any read (read_range; pack.c, enum check). Any failure (no
 * temporary folder, a full disk, a damaged group) only takes the chunk out:
 * reads of it go to the packs, and the hash's read reports the damage. A
 * damage search (every_page) never reads from it.
 */
#define SPILL_CHUNK (1u << 20)
#define SPILL_AHEAD 4 /* how far past a busy chunk a thread looks for one to assemble */

static ssize_t read_range(struct bri_reader *r, void *buf, size_t len, uint64_t off, bool report);

enum chunk_state { CHUNK_EMPTY, CHUNK_FILLING, CHUNK_DONE, CHUNK_FAILED };

/* Assembles chunk c into the spill, through dst (the chunk's length) or a buffer of its own: 0,
 * or -1 (the chunk is then left out). */
static int spill_fill(struct bri_reader *r, int fd, uint64_t c, uint8_t *dst)
{
	uint64_t off = c * SPILL_CHUNK;
	size_t len = r->size - off < SPILL_CHUNK ? (size_t)(r->size - off) : SPILL_CHUNK;
	uint8_t *buf = dst ? dst : malloc(len);
	size_t done = 0;
	int rc = -1;

	if (buf && read_range(r, buf, len, off, false) == (ssize_t)len) {
		while (done < len) {
			ssize_t n = pwrite(fd, buf + done, len - done, (off_t)(off + done));

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			done += (size_t)n;
		}
		rc = done == len ? 0 : -1;
	}
	if (buf != dst)
		free(buf);
	return rc;
}

/* Assembles empty chunk c (spill_fill); caller holds cur_lock, released meanwhile. */
static void spill_claim(struct bri_reader *r, struct pages_reader *p, int fd, uint64_t c,
                        uint8_t *dst)
{
	int rc;

	p->chunk[c] = CHUNK_FILLING;
	pthread_mutex_unlock(&p->cur_lock);
	rc = spill_fill(r, fd, c, dst);
	pthread_mutex_lock(&p->cur_lock);
	p->chunk[c] = rc == 0 ? CHUNK_DONE : CHUNK_FAILED;
	pthread_cond_broadcast(&p->spill_cond);
}

/* Bytes off..off+len (within the file) from the spill, assembling its chunks as needed: true, or
 * false. */
static bool spill_get(struct bri_reader *r, struct pages_reader *p, void *buf, size_t len,
                      uint64_t off)
{
	uint64_t first = off / SPILL_CHUNK, last = (off + len - 1) / SPILL_CHUNK;
	bool whole = false; /* buf holds the bytes already */
	const char *dir;
	size_t done = 0;
	int fd;

	if (!len)
		return false;
	pthread_mutex_lock(&p->cur_lock);
	if (!p->spill_tried) {
		p->spill_tried = true;
		p->nchunks = (r->size + SPILL_CHUNK - 1) / SPILL_CHUNK;
		p->chunk = calloc((size_t)p->nchunks, 1);
		dir = getenv("TMPDIR");
		/* Never for an encrypted store: the spill is the backup in the
		 * clear, and nothing of an encrypted store is written in the clear,
		 * not even an unnamed file's blocks on another disk. */
		if (p->chunk && !p->db->s->seal)
			p->spill_fd = open(dir && *dir ? dir : "/var/tmp",
			                   O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (p->spill_fd >= 0)
			bri_testpoint("pages-spill-open");
	}
	fd = p->chunk ? p->spill_fd : -1;
	for (uint64_t c = first; fd >= 0 && c <= last; c++) {
		/* A chunk another thread is assembling: meanwhile, one of the next
		 * few that nobody has started (the two threads then decompress side
		 * by side instead of one waiting for the other). */
		while (p->chunk[c] == CHUNK_FILLING) {
			uint64_t e = c + 1;

			while (e < p->nchunks && e <= c + SPILL_AHEAD && p->chunk[e] != CHUNK_EMPTY)
				e++;
			if (e < p->nchunks && e <= c + SPILL_AHEAD)
				spill_claim(r, p, fd, e, NULL);
			else
				pthread_cond_wait(&p->spill_cond, &p->cur_lock);
		}
		/* The hash reads whole chunks: one it assembles goes straight into its buffer. */
		if (p->chunk[c] == CHUNK_EMPTY) {
			whole = first == last && off == c * SPILL_CHUNK &&
			        (len == SPILL_CHUNK || off + len == r->size);
			spill_claim(r, p, fd, c, whole ? buf : NULL);
		}
		if (p->chunk[c] != CHUNK_DONE)
			fd = -1;
	}
	pthread_mutex_unlock(&p->cur_lock);
	while (fd >= 0 && !whole && done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		done += (size_t)n;
	}
	return fd >= 0;
}

/*
 * Bytes off..off+len (within the file) through the reader's cursors or the
 * store's shared cache: the count, or a negative errno. report: a failure
 * is told in r->why and the log (not by the spill, whose failed chunk the
 * reader's own read then meets and tells).
 */
static ssize_t read_range(struct bri_reader *r, void *buf, size_t len, uint64_t off, bool report)
{
	/* Pages served on their group's frame checksum, unless the caller looks
	 * for damage (pack.c, enum check: the integrity argument). */
	bool quick = !r->every_page;
	int (*read)(struct pages_db *, const uint8_t *, uint32_t, void *) =
	    quick ? pages_db_read_written : pages_db_read;
	struct pages_reader *p = r->priv;
	struct page_cursor *cur = NULL;
	uint32_t ps = p->m.page_size;
	uint8_t *page = NULL;
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
	while (done < len && rc == 0) {
		uint64_t pos = off + done, pgno = pos / ps;
		size_t in = (size_t)(pos % ps), n = ps - in;
		const uint8_t *id = p->m.ids + pgno * PAGE_ID_LEN;

		if (n > len - done)
			n = len - done;
		if (in == 0 && n == ps) {
			rc = cur ? pages_cursor_read(p->db, cur, id, ps, quick, (char *)buf + done)
			         : read(p->db, id, ps, (char *)buf + done);
		} else if (!page && !(page = malloc(ps))) {
			rc = -ENOMEM;
		} else {
			rc = read(p->db, id, ps, page);
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
	free(page);
	if (rc < 0 && !(rc == -ENOMEM && done))
		return rc == -ENOENT ? -EBADMSG : rc;
	return (ssize_t)done;
}

/*
 * Read-ahead of a sequential reader (a cat or a cp through the mount). Its
 * first read of a backup spends its time decompressing (in an encrypted
 * store, also opening) groups, request after request, on one core. At a
 * streaming read (STREAM_MIN) that starts where the reader's latest read
 * ended (a first read at offset 0 too), a thread of the reader's own starts assembling the file
 * ahead of it, in chunks of at least AHEAD_CHUNK bytes (and at least one full group), into a ring
 * of about AHEAD_BYTES, through read_range like any read: every group is checked as for any read
 * (its frame checksum or GCM tags: pack.c, enum check). Whichever thread first needs a chunk
 * assembles it, and a request whose chunk is being assembled assembles a later one meanwhile, so
 * the mount's threads and the read-ahead decompress side by side. A chunk whose assembly failed (a
 * damaged group, no memory) is left out of the ring: the request reads the packs itself
 * (read_range, which names the backup and the page in r->why and the log, and fails the request),
 * exactly as without read-ahead. Bounded: at most AHEAD_STREAMS readers of the process have a
 * read-ahead at once; the thread ends at the end of the file, and close
 * stops and joins it (after the chunk it is assembling, if any). Never for
 * verify (the spill) nor a damage search (every_page).
 */
#define AHEAD_BYTES   (4u << 20)
#define AHEAD_CHUNK   (256u << 10)
#define AHEAD_STREAMS 4

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
	pthread_t thread;
	bool thread_made; /* to join */
	bool running;     /* the thread has not ended */
	bool stop;        /* close: end now */
	size_t chunk;     /* bytes per chunk */
	uint64_t nchunks; /* of the file */
	uint64_t next;    /* the next chunk the thread assembles */
	uint64_t lo;      /* the first chunk of the latest request: earlier ones are done with */
	size_t nslots;
	pthread_cond_t cond; /* a slot, lo, next or stop changed (with ahead_lock) */
	struct ahead_slot slot[];
};

static atomic_int ahead_streams; /* readers with a read-ahead now */

/*
 * Assembles chunk c into s (neither FILLING nor pinned). Caller holds
 * ahead_lock, released meanwhile. worker: the read-ahead's thread.
 */
static void ahead_fill(struct pages_reader *p, struct ahead *a, struct ahead_slot *s, uint64_t c,
                       bool worker)
{
	uint64_t off = c * a->chunk;
	size_t len = a->r->size - off < a->chunk ? (size_t)(a->r->size - off) : a->chunk;
	int state = AHEAD_FAILED;

	s->chunk = c;
	s->state = AHEAD_FILLING;
	if (a->next == c)
		a->next = c + 1;
	pthread_mutex_unlock(&p->ahead_lock);
	if (worker)
		bri_testpoint("pages-ahead-fill");
	if (!s->buf)
		s->buf = malloc(a->chunk);
	if (s->buf && read_range(a->r, s->buf, len, off, false) == (ssize_t)len)
		state = AHEAD_DONE;
	pthread_mutex_lock(&p->ahead_lock);
	s->state = state;
	pthread_cond_broadcast(&a->cond);
}

/* Whether chunk c can be claimed now (in the window, not there, its slot free). */
static bool ahead_claimable(const struct ahead *a, uint64_t c)
{
	const struct ahead_slot *s = &a->slot[c % a->nslots];

	return c < a->nchunks && c < a->lo + a->nslots && s->state != AHEAD_FILLING && !s->pins &&
	       !(s->state != AHEAD_EMPTY && s->chunk == c);
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
		else
			pthread_cond_wait(&a->cond, &p->ahead_lock);
	}
	a->running = false;
	pthread_mutex_unlock(&p->ahead_lock);
	return NULL;
}

/* Starts the read-ahead's thread (ended or never made). Caller holds ahead_lock. */
static void ahead_start(struct pages_reader *p, struct ahead *a)
{
	sigset_t all, old;

	if (a->thread_made) {
		pthread_join(a->thread, NULL); /* it has ended: running is false */
		a->thread_made = false;
	}
	/* No signal for it: the daemon's threads that handle them are elsewhere. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	a->thread_made = pthread_create(&a->thread, NULL, ahead_main, p) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	a->running = a->thread_made;
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
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&p->ahead_lock);
	if (a->thread_made)
		pthread_join(a->thread, NULL);
	for (size_t i = 0; i < a->nslots; i++)
		free(a->slot[i].buf);
	pthread_cond_destroy(&a->cond);
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
	pthread_cond_broadcast(&a->cond);
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
			/* Meanwhile, a later chunk nobody has started. */
			if (s->chunk == c && ahead_claimable(a, a->next))
				ahead_fill(p, a, &a->slot[a->next % a->nslots], a->next, false);
			else
				pthread_cond_wait(&a->cond, &p->ahead_lock);
			continue;
		}
		ahead_fill(p, a, s, c, false); /* not there: this request assembles it */
	}
}

/* Caller holds ahead_lock. */
static void ahead_unpin(struct ahead *a, struct ahead_slot *s)
{
	if (--s->pins == 0)
		pthread_cond_broadcast(&a->cond);
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
	if (r->quick && !r->every_page && spill_get(r, r->priv, buf, len, off))
		return (ssize_t)len;
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
		h->stale = !packs_present(h->db);
		pthread_mutex_unlock(&h->db->lock);
		if (!h->stale)
			break;
	}
	if (!h) {
		h = calloc(1, sizeof(*h));
		rc = h ? pages_db_open((struct bri_store *)s, &h->db, err)
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
		ahead_free(p);
		pthread_mutex_destroy(&p->ahead_lock);
		for (size_t i = 0; i < CURSORS; i++)
			pages_cursor_free(p->cur[i]);
		pthread_mutex_destroy(&p->cur_lock);
		pthread_cond_destroy(&p->spill_cond);
		if (p->spill_fd >= 0)
			close(p->spill_fd);
		free(p->chunk);
		shared_put(p->db);
		free(p->m.ids);
		free(p);
	}
	free(r->label);
	free(r);
}

static int pages_open_reader(const struct bri_store *s, const char *name, struct bri_reader **out,
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
	p->spill_fd = -1;
	pthread_mutex_init(&p->cur_lock, NULL);
	pthread_cond_init(&p->spill_cond, NULL); /* never waited on with a deadline */
	pthread_mutex_init(&p->ahead_lock, NULL);
	r->pread = pages_pread;
	r->hold = pages_hold;
	r->release = pages_release;
	r->close = pages_reader_close;
	snprintf(p->name, sizeof(p->name), "%s", name);
	r->label = bri_store_path(s, name, MANIFEST_SUFFIX);
	manifest_file(name, file);
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

/* ---- writing: the bri-pages VFS ---- */

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

static const uint8_t zero_id[PAGE_ID_LEN];

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
	int rc;

	if (!w->queued)
		return w->err.code;
	pthread_mutex_lock(&w->q.lock);
	w->q.draining = true; /* the worker takes what is queued, even less than a batch */
	pthread_cond_signal(&w->q.more);
	while ((w->q.head != w->q.tail || w->q.busy) && !w->q.failed)
		pthread_cond_wait(&w->q.room, &w->q.lock);
	w->q.draining = false;
	rc = w->q.failed;
	pthread_mutex_unlock(&w->q.lock);
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
	if (pgno >= w->npages || memcmp(id, zero_id, PAGE_ID_LEN) == 0) {
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

static int pw_sync(sqlite3_file *file, int flags);
static int pw_lock(sqlite3_file *file, int level);
static int pw_check_reserved(sqlite3_file *file, int *out);
static int pw_file_control(sqlite3_file *file, int op, void *arg);
static int pw_sector_size(sqlite3_file *file);
static int pw_device_characteristics(sqlite3_file *file);

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

static int pages_write_begin(struct bri_store *s, const char *name, struct bri_backup_writer **out,
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

		if (memcmp(id, zero_id, PAGE_ID_LEN) == 0) {
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

static int pages_write_digest(struct bri_backup_writer *w, uint64_t *size,
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
static int pages_write_data(struct bri_backup_writer *w, const void *buf, size_t len, uint64_t off,
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

static int pages_sidecar_write(struct bri_store *s, const char *name, enum bri_sidecar kind,
                               const void *data, size_t len, struct bri_err *err)
{
	char file[FILE_MAX];

	sidecar_file(name, kind, file);
	return store_write_sealed(s, file, data, len, err);
}

static int pages_sidecar_remove(struct bri_store *s, const char *name, enum bri_sidecar kind)
{
	char file[FILE_MAX];

	sidecar_file(name, kind, file);
	return bri_store_unlink(s, file);
}

/* The pack (fsync, publish), the metadata, then the manifest: the commit point. */
static int pages_write_commit(struct bri_backup_writer *w, const char *meta, size_t len,
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
	manifest_file(w->name, file);
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

static void pages_write_end(struct bri_backup_writer *w)
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

/* The manifest first: an interrupted removal leaves sidecars the sweep removes. */
static int pages_remove(struct bri_store *s, const char *name, struct bri_err *err)
{
	char file[FILE_MAX];
	int rc;

	manifest_file(name, file);
	rc = bri_store_unlink(s, file);
	for (int k = 0; rc == 0 && k < BRI_SIDECAR_KINDS; k++) {
		sidecar_file(name, (enum bri_sidecar)k, file);
		rc = bri_store_unlink(s, file);
	}
	if (rc < 0)
		return bri_err_set(err, rc, "cannot remove %s/%s: %s", s->dir, file, strerror(-rc));
	rc = bri_store_sync(s, err);
	if (rc < 0)
		return rc;
	bri_testpoint("pages-removed");
	return pages_gc(s, err);
}

static int pages_sidecar_read(const struct bri_store *s, const char *name, enum bri_sidecar kind,
                              size_t max, char **out, size_t *len)
{
	char file[FILE_MAX];

	sidecar_file(name, kind, file);
	return store_read_sealed(s, file, max, out, len);
}

static int pages_sidecar_stat(const struct bri_store *s, const char *name, enum bri_sidecar kind,
                              struct stat *st)
{
	char file[FILE_MAX];

	sidecar_file(name, kind, file);
	return store_stat_file(s, file, st);
}

static char *pages_backup_path(const struct bri_store *s, const char *name)
{
	return bri_store_path(s, name, MANIFEST_SUFFIX);
}

/* A metadata, verification result, pin or rehearsal status whose manifest is missing. */
static bool pages_is_leftover(const struct bri_store *s, const char *fname)
{
	return store_sidecar_orphan(s, fname, sidecar_suffix, MANIFEST_SUFFIX);
}

static int add_name(void *arg, const char *name, const struct stat *st)
{
	struct name_list *n = arg;

	(void)st;
	return name_list_add(n, name);
}

/* Each backup's sidecars, then its manifest; then the packs and the secret. */
static int pages_purge(struct bri_store *s, struct bri_err *err)
{
	struct name_list names = {0};
	char file[FILE_MAX];
	int rc;

	rc = pages_list(s, add_name, &names, err);
	for (size_t i = 0; rc == 0 && i < names.n; i++) {
		for (int k = 0; rc == 0 && k < BRI_SIDECAR_KINDS; k++) {
			sidecar_file(names.v[i], (enum bri_sidecar)k, file);
			rc = bri_store_unlink(s, file);
		}
		manifest_file(names.v[i], file);
		if (rc == 0)
			rc = bri_store_unlink(s, file);
		if (rc < 0)
			rc = bri_err_set(err, rc, "cannot remove %s/%s: %s", s->dir, file,
			                 strerror(-rc));
		else if (i == 0)
			bri_testpoint("migrate-purged-one");
	}
	name_list_free(&names);
	if (rc == 0)
		rc = pages_remove_packs(s, err);
	if (rc == 0 && (rc = bri_store_unlink(s, PAGES_SECRET_FILE)) < 0)
		rc = bri_err_set(err, rc, "cannot remove %s/%s: %s", s->dir, PAGES_SECRET_FILE,
		                 strerror(-rc));
	if (rc == 0)
		rc = bri_store_sync(s, err);
	return rc;
}

static int pages_init(struct bri_store *s, struct bri_err *err)
{
	uint8_t secret[32];
	char *old = NULL;
	size_t len = 0;

	/* A secret left by an interrupted init is kept if it opens (sealed as the store is). */
	if (store_read_sealed(s, PAGES_SECRET_FILE, 1024, &old, &len) == 0 && len == 32) {
		free(old);
		return 0;
	}
	free(old);
	if (getrandom(secret, sizeof(secret), 0) != (ssize_t)sizeof(secret))
		return bri_err_set(err, -EIO, "no random bytes for the page-id secret");
	return store_write_sealed(s, PAGES_SECRET_FILE, secret, sizeof(secret), err);
}

static int pages_usage_op(struct bri_store *s, uint64_t *logical, uint64_t *stored,
                          struct bri_err *err)
{
	return pages_usage(s, logical, stored, err);
}

const struct bri_store_ops bri_store_pages_ops = {
    .format = "pages",
    .list = pages_list,
    .stat = pages_stat,
    .open_reader = pages_open_reader,
    .write_begin = pages_write_begin,
    .write_digest = pages_write_digest,
    .write_commit = pages_write_commit,
    .write_end = pages_write_end,
    .remove = pages_remove,
    .sidecar_read = pages_sidecar_read,
    .sidecar_write = pages_sidecar_write,
    .sidecar_remove = pages_sidecar_remove,
    .sidecar_stat = pages_sidecar_stat,
    .backup_path = pages_backup_path,
    .is_leftover = pages_is_leftover,
    .init = pages_init,
    .usage = pages_usage_op,
    .write_data = pages_write_data,
    .purge = pages_purge,
};
