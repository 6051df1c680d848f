/*
 * Unit test of the page store's shared cache of decompressed groups (pack.c,
 * group_get; pack.h, GROUP_CACHE_BYTES): the reads that do not stream
 * through a cursor (SQLite's page reads for verify, restore and export; the
 * mount's small reads). A backup several times the cache's bound is read
 * page by page by four threads at once, in four orders (forward, backward,
 * a stride, a shuffle; two of them sharing a hint, pages_db_read_hinted)
 * beside a fifth warming the cache (pages_db_warm), on a reader's db whose
 * index its loader threads are still building: every page is the
 * byte-for-byte page a streaming read serves (whose SHA-256 is the
 * metadata's), the cache stays within its bounds, and one forward pass
 * decompresses each group once however many of its pages are read. A group
 * damaged on disk fails every read of its pages, from two threads at once,
 * while the other groups are still served; a group that failed is not
 * kept, so with the bit back the same db serves it again. Reads that check
 * nothing (verify's SQLite pages) decompress without zstd's checksum: a
 * damaged group they, or the warmer for them, leave in the cache is never
 * served to a reader that checks. A quick reader (verify) streamed by one
 * thread (the hash) while another reads it page by page (SQLite), forward
 * then backward: the stream warms for the page reads while the reader's
 * warming thread waits; every page is right, the stream's SHA-256 is the
 * metadata's, and a stream that stops before the end (a failed hash)
 * leaves the page reads served and the reader's close prompt.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <string.h>
#include <unistd.h>

#include "../../src/core/pack.h"
#include "bri/checksum.h"
#include "bri/create.h"
#include "expect.h"
#include "testutil.h"

static char *base;

/* Hints kept at once: more than the groups the cache holds (8 MiB of 64 KiB). */
#define HINTS 300

/* The pages of the backup and what the threads share. */
struct pages {
	struct pages_db *db;
	struct manifest m;
	uint64_t *sum;         /* per page: FNV-1a of its bytes as a streaming read served them */
	struct page_hint hint; /* shared by the walkers that read with a hint */
};

struct walker {
	struct pages *pg;
	int order;      /* 0 forward, 1 backward, 2 a stride, 3 a shuffle; 4 warm */
	bool hinted;    /* reads with pg->hint (pages_db_read_hinted) */
	uint64_t first; /* pages first..last only (inclusive) */
	uint64_t last;
	uint64_t wrong;  /* pages served with other bytes */
	uint64_t failed; /* reads that failed */
	int first_rc;    /* the first failure's code */
	pthread_t thread;
};

static uint64_t fnv(const uint8_t *p, size_t len)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

/* The i-th page (of n) a walker of order reads. */
static uint64_t nth(int order, uint64_t i, uint64_t n)
{
	switch (order) {
	case 1:
		return n - 1 - i;
	case 2:
		return (i * 37) % n; /* n is not a multiple of 37: every page once */
	case 3:
		return (i * 7919 + 13) % n; /* another permutation, far jumps */
	default:
		return i;
	}
}

static void *walk(void *arg)
{
	struct walker *w = arg;
	struct pages *pg = w->pg;
	uint32_t ps = pg->m.page_size;
	uint64_t n = w->last - w->first + 1;
	uint8_t *buf = malloc(ps);

	/* The warmer: the groups of every page into the cache, in batches, beside the readers. */
	for (uint64_t i = 0; w->order == 4 && i < n; i += 64)
		pages_db_warm(pg->db, pg->m.ids + (w->first + i) * PAGE_ID_LEN,
		              (size_t)(n - i < 64 ? n - i : 64), ps, false);
	for (uint64_t i = 0; buf && w->order < 4 && i < n; i++) {
		uint64_t pgno = w->first + nth(w->order, i, n);
		const uint8_t *id = pg->m.ids + pgno * PAGE_ID_LEN;
		int rc;

		if (page_id_is_hole(id))
			continue;
		rc = w->hinted ? pages_db_read_hinted(pg->db, &pg->hint, id, ps, CHECK_RAW, buf)
		               : pages_db_read_written(pg->db, id, ps, buf);
		if (rc < 0) {
			if (!w->failed++)
				w->first_rc = rc;
		} else if (fnv(buf, ps) != pg->sum[pgno]) {
			w->wrong++;
		}
	}
	free(buf);
	return NULL;
}

/*
 * Runs n walkers over pages first..last at once: walker k in order k % 5
 * (4: the warmer), walkers 1 and 3 sharing a hint.
 */
static void run_walkers(struct pages *pg, struct walker *w, int n, uint64_t first, uint64_t last)
{
	pages_db_hint_init(&pg->hint);
	for (int k = 0; k < n; k++) {
		memset(&w[k], 0, sizeof(w[k]));
		w[k].pg = pg;
		w[k].order = k % 5;
		w[k].hinted = k % 2 == 1;
		w[k].first = first;
		w[k].last = last;
		if (pthread_create(&w[k].thread, NULL, walk, &w[k]) != 0)
			TU_DIE("pthread_create");
	}
	for (int k = 0; k < n; k++)
		pthread_join(w[k].thread, NULL);
	pages_db_hint_release(pg->db, &pg->hint);
}

/*
 * pg->sum for backup name: each page as a streaming read (a cursor, 1 MiB
 * at a time) serves it, whose SHA-256 is the metadata's checksum.
 */
static void reference_sums(struct bri_store *s, const char *name, struct pages *pg)
{
	char hex[BRI_CHECKSUM_HEX_LEN + 1], *meta = NULL;
	size_t len, chunk = 1u << 20;
	struct bri_reader *r = NULL;
	struct bri_err err = {0};
	uint8_t *buf = malloc(chunk);

	EXPECT_EQ_INT(manifest_read(s, name, &pg->m), 0);
	pg->sum = calloc(pg->m.page_count, sizeof(*pg->sum));
	if (!buf || !pg->sum)
		TU_DIE("out of memory");
	EXPECT_EQ_INT(bri_store_open_reader(s, name, &r, &err), 0);
	EXPECT_EQ_INT(bri_checksum_reader(r, NULL, hex, &err), 0);
	EXPECT_EQ_INT(bri_store_sidecar_read(s, name, BRI_SIDECAR_META, 1 << 20, &meta, &len), 0);
	EXPECT_MSG(meta && strstr(meta, hex), "checksum %s not in the metadata", hex);
	free(meta);
	for (uint64_t off = 0; off < r->size; off += chunk) {
		ssize_t n = bri_reader_pread(r, buf, chunk, off);

		EXPECT(n > 0 && n % pg->m.page_size == 0);
		for (ssize_t k = 0; n > 0 && k < n; k += pg->m.page_size)
			pg->sum[(off + (uint64_t)k) / pg->m.page_size] =
			    fnv(buf + k, pg->m.page_size);
		if (n <= 0)
			break;
	}
	bri_reader_close(r);
	free(buf);
}

/* A quick reader's stream (verify's hash), to stop_at bytes (the file's size: a SHA-256). */
struct stream {
	struct bri_reader *r;
	uint64_t stop_at;
	char hex[BRI_CHECKSUM_HEX_LEN + 1];
	int rc;
	pthread_t thread;
};

static void *stream_main(void *arg)
{
	struct stream *st = arg;
	struct bri_err err = {0};
	size_t chunk = 1u << 20;
	uint8_t *buf;

	if (st->stop_at >= st->r->size) {
		st->rc = bri_checksum_reader(st->r, NULL, st->hex, &err);
		return NULL;
	}
	buf = malloc(chunk);
	for (uint64_t off = 0; buf && off < st->stop_at; off += chunk)
		if (bri_reader_pread(st->r, buf, chunk, off) != (ssize_t)chunk)
			st->rc = -EIO;
	free(buf);
	return NULL;
}

/*
 * Backup name through a quick reader: streamed to stop_at bytes on a thread
 * of its own while this one reads every page, forward then backward, as
 * SQLite's integrity_check does. Returns the pages served with other bytes
 * or failed; st holds the stream's result.
 */
static uint64_t quick_reads(struct bri_store *s, const char *name, struct pages *pg,
                            uint64_t stop_at, struct stream *st)
{
	struct bri_err err = {0};
	uint8_t *buf = malloc(pg->m.page_size);
	uint64_t bad = 0, n = pg->m.page_count;

	memset(st, 0, sizeof(*st));
	EXPECT_EQ_INT(bri_store_open_reader(s, name, &st->r, &err), 0);
	if (!buf || !st->r)
		TU_DIE("cannot read %s", name);
	st->r->quick = true;
	st->stop_at = stop_at;
	if (pthread_create(&st->thread, NULL, stream_main, st) != 0)
		TU_DIE("pthread_create");
	for (uint64_t k = 0; k < 2 * n; k++) {
		uint64_t i = k < n ? k : 2 * n - 1 - k;
		ssize_t got = bri_reader_pread(st->r, buf, pg->m.page_size, i * pg->m.page_size);

		bad += got != (ssize_t)pg->m.page_size || fnv(buf, pg->m.page_size) != pg->sum[i];
	}
	pthread_join(st->thread, NULL);
	bri_reader_close(st->r); /* stops and joins the warming thread, waiting or not */
	free(buf);
	return bad;
}

/* The store's file and offset of page pgno's group, and the group's payload place. */
static void group_of(struct pages *pg, uint64_t pgno, const char *dir, char **path,
                     uint64_t *payload, uint32_t *len)
{
	const struct pack_entry *e;
	uint8_t hb[32];
	int fd;

	pthread_mutex_lock(&pg->db->lock);
	while (pg->db->loading) { /* the loaders' index complete (nothing read into the cache) */
		pg->db->load_waiters++;
		pthread_cond_wait(&pg->db->load_cond, &pg->db->lock);
		pg->db->load_waiters--;
	}
	e = pages_db_find(pg->db, pg->m.ids + pgno * PAGE_ID_LEN);
	EXPECT(e != NULL);
	*path = tu_fmt("%s/%s", dir, e ? pg->db->packs[e->pack].name : "?");
	*payload = e ? e->blob_off : 0;
	pthread_mutex_unlock(&pg->db->lock);
	fd = open(*path, O_RDONLY);
	if (fd < 0 || pread(fd, hb, sizeof(hb), (off_t)*payload) != (ssize_t)sizeof(hb))
		TU_DIE("cannot read %s", *path);
	close(fd);
	/* Blob header (pack.c): ids length at 16, stored payload length at 24. */
	*payload += 32 + (uint32_t)(hb[16] | hb[17] << 8 | hb[18] << 16 | (uint32_t)hb[19] << 24);
	*len = (uint32_t)(hb[24] | hb[25] << 8 | hb[26] << 16 | (uint32_t)hb[27] << 24);
}

static void flip_at(const char *path, uint64_t at)
{
	int fd = open(path, O_RDWR);
	uint8_t b = 0;

	if (fd < 0 || pread(fd, &b, 1, (off_t)at) != 1)
		TU_DIE("cannot read %s", path);
	b ^= 0x10;
	if (pwrite(fd, &b, 1, (off_t)at) != 1)
		TU_DIE("cannot write %s", path);
	close(fd);
}

int main(void)
{
	struct bri_store_open_opts oo = {.create = true};
	struct bri_create_opts co = {.name = "big"};
	char *live, *dir, *out = NULL, *pack = NULL;
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	struct pages pg = {0};
	struct walker w[5];
	uint64_t groups = 0, payload = 0, bad, bad_first, bad_last;
	uint32_t plen = 0;
	struct page_hint *hints;
	uint8_t *buf;
	sqlite3 *ldb;

	base = tu_tmpdir("pages-cache");
	live = tu_fmt("%s/live.db", base);
	dir = tu_fmt("%s/store", base);
	/* About 48 MiB of random text (groups compress a little): several times the cache's bound.
	 */
	ldb = tu_make_db(live, "wal", 20, 0, true);
	tu_exec(ldb,
	        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 16000)"
	        " INSERT INTO memory(video_id, content) SELECT i % 7, hex(randomblob(1500))"
	        " FROM n; PRAGMA wal_checkpoint(TRUNCATE);");
	sqlite3_close(ldb);
	EXPECT_EQ_INT(bri_store_open_ex(live, dir, &oo, &s, &err), 0);
	EXPECT_EQ_INT(bri_store_init_format(s, "pages", &err), 0);
	EXPECT_MSG(bri_create(s, &co, NULL, &out, &err) == 0, "create: %s", err.msg);
	free(out);
	reference_sums(s, "big", &pg);
	EXPECT_MSG((uint64_t)pg.m.page_count * pg.m.page_size > GROUP_CACHE_BYTES * 4ull,
	           "backup of %llu bytes", (unsigned long long)pg.m.page_count * pg.m.page_size);
	EXPECT(pg.m.page_count % 37 != 0 && pg.m.page_count % 7919 != 0);

	/* One forward pass on a fresh db: each group decompressed once. */
	EXPECT_EQ_INT(pages_db_open_reader(s, &pg.db, &err), 0);
	run_walkers(&pg, w, 1, 0, pg.m.page_count - 1);
	EXPECT_MSG(w[0].failed == 0 && w[0].wrong == 0, "forward: %llu failed, %llu wrong",
	           (unsigned long long)w[0].failed, (unsigned long long)w[0].wrong);
	pthread_mutex_lock(&pg.db->lock);
	for (uint64_t i = 0; i < pg.m.page_count; i++) {
		const struct pack_entry *e = pages_db_find(pg.db, pg.m.ids + i * PAGE_ID_LEN);
		const struct pack_entry *p =
		    i ? pages_db_find(pg.db, pg.m.ids + (i - 1) * PAGE_ID_LEN) : NULL;

		groups += e && (!p || p->pack != e->pack || p->blob_off != e->blob_off);
	}
	EXPECT_MSG(pg.db->cache_reads == groups, "%llu groups read for %llu groups",
	           (unsigned long long)pg.db->cache_reads, (unsigned long long)groups);
	pthread_mutex_unlock(&pg.db->lock);
	pages_db_close(pg.db);

	/* Four readers at once, four orders (two of them sharing a hint), and a
	 * warmer, on a db still loading its index. */
	EXPECT_EQ_INT(pages_db_open_reader(s, &pg.db, &err), 0);
	run_walkers(&pg, w, 5, 0, pg.m.page_count - 1);
	for (int k = 0; k < 4; k++)
		EXPECT_MSG(w[k].failed == 0 && w[k].wrong == 0,
		           "order %d: %llu failed (%d), %llu wrong", k,
		           (unsigned long long)w[k].failed, w[k].first_rc,
		           (unsigned long long)w[k].wrong);
	pthread_mutex_lock(&pg.db->lock);
	EXPECT_MSG(pg.db->cache_bytes <= GROUP_CACHE_BYTES, "cache holds %zu bytes",
	           pg.db->cache_bytes);
	EXPECT(pg.db->cache_made <= GROUP_CACHE_SLOTS);
	/* The cache was full: it made room (more groups read than it holds). */
	EXPECT_MSG(pg.db->cache_reads > pg.db->cache_made, "%llu reads, %u slots",
	           (unsigned long long)pg.db->cache_reads, pg.db->cache_made);
	pthread_mutex_unlock(&pg.db->lock);
	pages_db_close(pg.db);

	/* Readers that keep their hints (the mount's open files, idle) never
	 * leave the others without a slot: HINTS hints each read a page of a
	 * different group and keep it, more groups than the cache holds; then
	 * each reads its page again, and a read without a hint still gets its
	 * page. Hints pin at most HINT_PINNED_BYTES (else the 129th read
	 * waited for ever for a slot to read into). */
	EXPECT_EQ_INT(pages_db_open_reader(s, &pg.db, &err), 0);
	EXPECT(pg.m.page_count > HINTS * PACK_GROUP_PAGES);
	buf = malloc(pg.m.page_size);
	hints = calloc(HINTS, sizeof(*hints));
	if (!buf || !hints)
		TU_DIE("out of memory");
	for (int round = 0; round < 2; round++)
		for (uint64_t i = 0; i < HINTS; i++) {
			uint64_t pgno =
			    i * PACK_GROUP_PAGES; /* groups hold at most 16 neighbours */
			int rc;

			if (!round)
				pages_db_hint_init(&hints[i]);
			rc = pages_db_read_hinted(pg.db, &hints[i], pg.m.ids + pgno * PAGE_ID_LEN,
			                          pg.m.page_size, CHECK_RAW, buf);
			EXPECT(rc == 0 && fnv(buf, pg.m.page_size) == pg.sum[pgno]);
			pthread_mutex_lock(&pg.db->lock);
			EXPECT(pg.db->hint_pinned <= HINT_PINNED_BYTES);
			pthread_mutex_unlock(&pg.db->lock);
		}
	EXPECT_EQ_INT(pages_db_read_written(pg.db, pg.m.ids + (pg.m.page_count - 1) * PAGE_ID_LEN,
	                                    pg.m.page_size, buf),
	              0);
	for (uint64_t i = 0; i < HINTS; i++)
		pages_db_hint_release(pg.db, &hints[i]);
	pthread_mutex_lock(&pg.db->lock);
	EXPECT(pg.db->hint_pinned == 0);
	for (uint32_t k = 0; k < pg.db->cache_made; k++)
		EXPECT(pg.db->cache[k].pins == 0);
	pthread_mutex_unlock(&pg.db->lock);
	free(hints);
	free(buf);
	pages_db_close(pg.db);

	/* A quick reader, streamed whole and streamed halfway, read page by page meanwhile. */
	for (int whole = 1; whole >= 0; whole--) {
		uint64_t size = (uint64_t)pg.m.page_count * pg.m.page_size;
		struct stream st;
		char *meta = NULL;
		size_t mlen = 0;
		uint64_t wrong = quick_reads(s, "big", &pg, whole ? size : size / 2, &st);

		EXPECT_MSG(wrong == 0 && st.rc == 0, "stream %s: %llu pages wrong, stream %d",
		           whole ? "whole" : "halfway", (unsigned long long)wrong, st.rc);
		EXPECT_EQ_INT(bri_store_sidecar_read(s, "big", BRI_SIDECAR_META, 1 << 20, &meta, &mlen),
		              0);
		EXPECT_MSG(!whole || (meta && strstr(meta, st.hex)), "stream's SHA-256 %s", st.hex);
		free(meta);
	}

	/* A damaged group: its pages fail, from two threads, the others are served. */
	EXPECT_EQ_INT(pages_db_open_reader(s, &pg.db, &err), 0);
	bad = pg.m.page_count / 2;
	group_of(&pg, bad, dir, &pack, &payload, &plen);
	bad_first = bad > 64 ? bad - 64 : 0;
	bad_last = bad + 64 < pg.m.page_count ? bad + 64 : pg.m.page_count - 1;
	flip_at(pack, payload + plen / 2);
	run_walkers(&pg, w, 2, bad_first, bad_last);
	for (int k = 0; k < 2; k++) {
		EXPECT_MSG(w[k].failed >= 1 && w[k].failed <= PACK_GROUP_PAGES && w[k].wrong == 0,
		           "damaged: %llu failed, %llu wrong", (unsigned long long)w[k].failed,
		           (unsigned long long)w[k].wrong);
		EXPECT_EQ_INT(w[k].first_rc, -EBADMSG);
	}
	flip_at(pack, payload + plen / 2); /* back: the same db serves it again */
	run_walkers(&pg, w, 2, bad_first, bad_last);
	for (int k = 0; k < 2; k++)
		EXPECT_MSG(w[k].failed == 0 && w[k].wrong == 0, "repaired: %llu failed, %llu wrong",
		           (unsigned long long)w[k].failed, (unsigned long long)w[k].wrong);
	pages_db_close(pg.db);

	/* Unchecked reads (CHECK_NONE: verify's SQLite pages, which the whole
	 * file's SHA-256 covers) decompress without zstd's content checksum: a
	 * group damaged so that it still decompresses (a flipped byte of its
	 * raw literals: random bytes beside zeros) is served to them with the
	 * damage, and left in the shared cache; a reader that checks never gets
	 * its bytes, whether an unchecked read or the warmer put it there. */
	free(pg.sum);
	free(pg.m.ids);
	if (sqlite3_open(live, &ldb) != SQLITE_OK)
		TU_DIE("cannot open %s", live);
	tu_exec(ldb, "UPDATE memory SET content = randomblob(1500) || zeroblob(1500);"
	             " PRAGMA wal_checkpoint(TRUNCATE);");
	sqlite3_close(ldb);
	co.name = "mixed";
	EXPECT_MSG(bri_create(s, &co, NULL, &out, &err) == 0, "create: %s", err.msg);
	free(out);
	reference_sums(s, "mixed", &pg);
	bad = pg.m.page_count / 2;
	bad_first = bad - 32;
	bad_last = bad + 32;
	for (int warmed = 0; warmed < 2; warmed++) {
		uint64_t none_wrong = 0, none_failed = 0, wrong = 0, failed = 0;

		EXPECT_EQ_INT(pages_db_open_reader(s, &pg.db, &err), 0);
		free(pack);
		group_of(&pg, bad, dir, &pack, &payload, &plen);
		flip_at(pack, payload + plen / 4);
		buf = malloc(pg.m.page_size);
		pages_db_hint_init(&pg.hint);
		if (warmed)
			EXPECT(pages_db_warm(pg.db, pg.m.ids + bad_first * PAGE_ID_LEN,
			                     (size_t)(bad_last - bad_first + 1), pg.m.page_size,
			                     true) > 0);
		for (uint64_t i = bad_first; !warmed && buf && i <= bad_last; i++) {
			int rc = pages_db_read_hinted(pg.db, &pg.hint, pg.m.ids + i * PAGE_ID_LEN,
			                              pg.m.page_size, CHECK_NONE, buf);

			none_failed += rc < 0;
			none_wrong += rc == 0 && fnv(buf, pg.m.page_size) != pg.sum[i];
		}
		if (!warmed)
			EXPECT_MSG(none_failed == 0 && none_wrong >= 1,
			           "unchecked: %llu failed, %llu served damaged",
			           (unsigned long long)none_failed, (unsigned long long)none_wrong);
		for (int hinted = 0; hinted < 2; hinted++)
			for (uint64_t i = bad_first; buf && i <= bad_last; i++) {
				const uint8_t *id = pg.m.ids + i * PAGE_ID_LEN;
				int rc =
				    hinted ? pages_db_read_hinted(pg.db, &pg.hint, id,
				                                  pg.m.page_size, CHECK_RAW, buf)
				           : pages_db_read_written(pg.db, id, pg.m.page_size, buf);

				EXPECT(rc == 0 || rc == -EBADMSG);
				failed += rc < 0;
				wrong += rc == 0 && fnv(buf, pg.m.page_size) != pg.sum[i];
			}
		EXPECT_MSG(wrong == 0 && failed >= 2, "%s: %llu failed, %llu wrong",
		           warmed ? "warmed unchecked" : "read unchecked",
		           (unsigned long long)failed, (unsigned long long)wrong);
		pages_db_hint_release(pg.db, &pg.hint);
		free(buf);
		pages_db_close(pg.db);
		flip_at(pack, payload + plen / 4);
	}

	free(pack);
	free(pg.sum);
	free(pg.m.ids);
	bri_store_close(s);
	free(dir);
	free(live);
	tu_tmpdir_done(base);
	return EXPECT_RESULT();
}
