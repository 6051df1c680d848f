/*
 * Internal to the page store (store_pages.c, pages_read.c, pages_write.c,
 * pack.c): the pages of a store kept once each in shared, immutable pack
 * files, found by their id (a keyed hash, HMAC-SHA-256 with the store's
 * page-id secret).
 *
 * Every piece on disk is a blob framed by a 32-byte header naming its kind,
 * codec (raw or zstd) and sealing (none, or AES-256-GCM in an encrypted
 * store: seal.h, the store's key in s->seal; pack.c says what is sealed). A pack file "pack-<16
 * hex>.pack" is a file header followed by group blobs: up to PACK_GROUP_PAGES pages of one page
 * size, their ids (raw) and then their bytes, compressed together. Groups rather than one page at a
 * time with a trained dictionary: on the sample database (1073 pages of 4 KiB) groups of 16
 * took 1.38 MB, pages with a 110 KB dictionary 1.41 MB plus the dictionary, pages alone 1.53 MB;
 * and groups need no dictionary to train, keep and retrain as the data changes. A read decompresses
 * its page's group (64 KiB), kept in a small cache. A manifest is one blob: page size, page count
 * and one id per page. The index (page id
 * -> pack, blob, slot) is rebuilt from the packs when a store is opened for
 * reading or writing; nothing else is needed to find a page. Each pack ends
 * with a table of its groups (pack_toc.c: offset, length, page size and
 * count, ids; sealed in an encrypted store) and a footer pointing at it,
 * written before the pack is published: a pack is indexed from it with one
 * or two preads at its end. A pack without one (written before TOCs), or
 * with a damaged one (said in the log), is scanned instead: its headers and
 * ids read from start to end, one group after the other (cold, a wait on
 * the disk per group of a pack of large groups). Either way, for readers
 * (pages_db_open_reader) threads of the db's own load the index, smallest
 * pack first (the largest first of all when it has a table), while reads
 * go on: a streaming read finds a page not indexed yet in the group after
 * one it has just read (cursor_chain), else waits for the loaders; and a
 * sequential reader's read-ahead asks the kernel for the groups of the next
 * 16 MiB of the file (pages_db_prefetch), so that the disk works ahead of
 * the decompression. The index trusts a TOC for where a page is, never for
 * what it is: a read checks the group's own ids and bytes. Not part of the
 * contract: names without the bri_ prefix.
 */
#ifndef BRI_PACK_H
#define BRI_PACK_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bri/store.h"

#define PAGE_ID_LEN       32
#define PACK_GROUP_PAGES  16
#define PAGE_SIZE_MIN     512
#define PAGE_SIZE_MAX     65536
#define PAGES_SECRET_FILE "pages.secret"
#define PACK_PREFIX       "pack-"
#define PACK_SUFFIX       ".pack"
#define MANIFEST_SUFFIX   ".manifest"
/* A manifest holds at most this many pages (2^31 pages: SQLite's own limit is lower). */
#define MANIFEST_PAGES_MAX (1u << 31)

/*
 * Whether a manifest's page id is all zeros: a page SQLite never wrote,
 * which reads as zeros and is in no pack. SQLite never writes the page
 * holding its pending byte (offset 1 GiB), so every database past 1 GiB has
 * one. (A keyed hash of 32 zero bytes is as likely as guessing the key.)
 */
bool page_id_is_hole(const uint8_t id[PAGE_ID_LEN]);

struct pack_name;   /* pack.c */
struct seal_ctx;    /* seal.h */
struct write_stage; /* pack.c: the pack writer's stage (pages_db_write_ahead) */
struct toc_build;   /* pack_toc.h */

struct pack_entry {
	uint8_t id[PAGE_ID_LEN];
	uint32_t pack;     /* index into pages_db.packs */
	uint32_t slot;     /* the page's place in its group */
	uint64_t blob_off; /* where the group's blob starts in the pack */
};

struct pack_file {
	int fd;
	char *name;        /* relative to the store */
	bool loaded;       /* all its groups are in the index (lock) */
	uint64_t read_end; /* while it loads: the furthest end of a group a cursor read (lock) */
};

/* A decompressed group, kept for the next read. */
struct group_cache {
	uint32_t pack;
	uint64_t blob_off;
	uint32_t page_size;
	uint32_t npages;
	uint8_t *data;     /* npages * page_size bytes (npages 0: an empty slot) */
	size_t data_cap;   /* bytes allocated at data, kept between groups */
	uint64_t used;     /* for LRU (the group as stored is read into a buffer its
	                      cache shares: pages_db.stored, page_cursor.stored) */
	uint8_t codec;     /* CODEC_RAW or CODEC_ZSTD */
	bool guarded;      /* its bytes proved the writer's: a sealed group's GCM tags, or one
	                      zstd frame carrying its content checksum (XXH64), which
	                      decompression checked; its pages need no id recomputed to be
	                      served (see enum check, pack.c) */
	uint32_t checked;  /* bit i: page i found equal to its id */
	uint64_t blob_end; /* where the group's blob ends: the next group of its pack, if any */
	uint8_t ids[PACK_GROUP_PAGES][PAGE_ID_LEN];
};

/*
 * The store's cache of decompressed groups, shared by every read that does
 * not stream through a cursor of its own: SQLite's page reads (verify's
 * integrity_check and row counts, restore, export, diff), the mount's small
 * reads, scrub. A group is found by its place (pack, offset) in a hash
 * table, read and decompressed outside db->lock (a reader of another group
 * goes on meanwhile; one that wants the same group waits for it, so a group
 * is decompressed once while it stays cached), and the least recently used
 * one makes room. Bounded whatever the backup's size: at most
 * GROUP_CACHE_BYTES of decompressed groups (128 full groups of 4 KiB pages,
 * 8 of 64 KiB pages) in at most GROUP_CACHE_SLOTS slots. The size: SQLite
 * reads a table's pages in the file's order (or its reverse), each page of
 * a group soon after the others, so the cache only has to hold the groups
 * of the pages near the reader, plus verify's window warmed ahead of it
 * (pages_read.c, WARM_SPAN_BYTES: at most half the cache even when each
 * page of the window is a group of its own, as a daily churn leaves them).
 * Measured on the bench's 1 GiB backup after 35 days of churn: without
 * warming, caches of 2, 8, 32 and 128 MiB decompressed 4.26, 4.19, 4.18
 * and 4.17 GiB in a verify (a larger cache buys nothing); with it, 8 MiB
 * (and a 256 KiB window) verifies as fast as 32 MiB (and 1 MiB), farm-bench
 * A/B 1.00 over 9 pairs, at a peak 19 MiB lower: fresh memory costs about
 * 2.4 s per GiB on a VM that gives freed memory back to its host.
 */
#define GROUP_CACHE_BYTES (8u << 20)
/* At most this much of the cache is pinned by readers' hints (struct page_hint). */
#define HINT_PINNED_BYTES (GROUP_CACHE_BYTES / 2)
#define GROUP_CACHE_SLOTS 1024
#define GROUP_CACHE_HASH  2048 /* buckets of the cache's hash table (a power of two) */
/* Groups read and decompressed at once into the shared cache (each with a
 * decompressor and a buffer for the group as stored); more readers wait. */
#define GROUP_DECODERS 4
/* Threads loading a reader's index (pages_db_open_reader). */
#define LOADERS 4

/* A slot of the shared cache. */
struct cache_slot {
	struct group_cache g; /* written outside db->lock only while LOADING, by its reader */
	uint32_t pack;        /* the group's place, its key in the hash table (lock) */
	uint64_t off;
	uint8_t state;      /* enum slot_state (pack.c) */
	uint32_t pins;      /* users of g outside db->lock (gc's copy) */
	int32_t hnext;      /* the next slot of its hash bucket, -1 none */
	int32_t prev, next; /* the recency list (most recent first), -1 none */
};

/* A decompressor of the shared cache, and its buffer for a group as stored. */
struct group_decoder {
	void *dctx;          /* ZSTD_DCtx, NULL: one per call */
	struct seal_ctx *sc; /* the store's key, keyed once (seal.h); NULL: none, or one per part */
	uint8_t *stored;
	size_t stored_cap;
	bool busy; /* lock */
};

/* The store's pages: secret, packs and index. Thread-safe reads (lock). */
struct pages_db {
	struct bri_store *s;
	uint8_t secret[32];
	void *mac;  /* EVP_MAC_CTX keyed with secret: copied for each page id */
	void *wmac; /* a copy for the writer's thread (pages_db_add), re-initialised per page */
	void *rmac; /* a copy for reads, used under lock */
	void *cctx; /* ZSTD_CCtx of the writer, made at its first group */
	struct pack_file *packs;
	size_t npacks, cap_packs;
	struct pack_entry *entries;
	size_t nentries, cap_entries;
	uint32_t *table; /* open addressing: entry index + 1, 0 empty */
	size_t table_size;
	pthread_mutex_t lock;
	/* The shared cache of decompressed groups (see GROUP_CACHE_BYTES), all under lock. */
	struct cache_slot cache[GROUP_CACHE_SLOTS];
	int32_t cache_hash[GROUP_CACHE_HASH]; /* first slot of each bucket, -1 none */
	int32_t cache_head, cache_tail;       /* the recency list: READY and EMPTY slots */
	uint32_t cache_made;                  /* slots in use so far: cache[0..cache_made) */
	size_t cache_bytes;                   /* bytes allocated at the slots' data */
	size_t hint_pinned;                   /* of them, at slots hints pin (page_hint) */
	struct group_decoder decoder[GROUP_DECODERS];
	pthread_cond_t cache_cond; /* a slot was read, or a decoder freed (with lock) */
	uint64_t cache_reads;      /* groups read into the cache (for tests) */
	/* The pack being written (pages_db_add), -1 when none. */
	int wfd;
	char *wtmp;
	uint32_t wpack;  /* its index in packs */
	uint64_t woff;   /* its size so far */
	uint32_t wpsize; /* page size of the pending group */
	uint32_t wcount; /* pages pending */
	uint64_t wnext;  /* the page number that continues the pending group */
	uint8_t wids[PACK_GROUP_PAGES][PAGE_ID_LEN];
	uint8_t *wbuf;           /* PACK_GROUP_PAGES * PAGE_SIZE_MAX */
	struct toc_build *wtoc;  /* its table of contents so far (pack_toc.h) */
	struct write_stage *wst; /* the groups made, being sealed and written (pack.c) */
	bool write_ahead;        /* wst writes on a thread of its own (pages_db_write_ahead) */
	uint64_t stored_new;     /* bytes appended by this writer */
	/* A reader's index, loaded by a thread of its own (pages_db_open_reader). */
	pthread_t loader[LOADERS];
	int nloaders;             /* threads made (to join) */
	int loaders;              /* of them, running (lock) */
	bool loading;             /* a loader runs (lock) */
	bool load_stop;           /* close: stop now (lock) */
	int load_rc;              /* 0, or why a loader stopped (lock) */
	int load_waiters;         /* readers waiting for a page (lock) */
	pthread_cond_t load_cond; /* groups added, or the loaders ended (with lock) */
	struct pack_name *load;   /* the packs to load, smallest first */
	size_t nload;
	size_t load_next;    /* the first pack not taken yet (lock) */
	size_t load_end;     /* the packs to take end here (lock; the largest, last, may be
	                        taken first) */
	bool load_big_tried; /* a loader looked at the largest pack (lock) */
};

/* Loads the secret and the index of every pack of s. */
int pages_db_open(struct bri_store *s, struct pages_db **out, struct bri_err *err);
/*
 * pages_db_open for readers (pages_read.c): returns once the secret is read
 * and the packs are listed; LOADERS threads of the db's own then load their
 * entries, smallest pack first (the newest pages: a daily backup's churn;
 * but the largest first of all when it has a table of contents: loader_main),
 * while reads go on. A read of a page not yet in the index: a
 * cursor's looks in the groups that follow the ones just read
 * (cursor_chain, pack.c); else it waits until the loaders have added it,
 * or have ended (then as pages_db_open's db: a rescan for packs published
 * since, else -ENOENT; or, when the load failed, its error). A pack with a
 * table of contents loads from it (one or two reads at its end); one
 * without is scanned, cold a wait on the disk for every group of a pack of
 * large groups (a header and its ids in each 50 KiB or so): a first read
 * does not wait for all of it, and decompresses while the rest is loaded.
 * Close stops and joins the loaders. Only reads (no pages_db_add, nor
 * entries walked) on such a db.
 */
int pages_db_open_reader(struct bri_store *s, struct pages_db **out, struct bri_err *err);
void pages_db_close(struct pages_db *db);
void page_id(const struct pages_db *db, const void *page, size_t len, uint8_t id[PAGE_ID_LEN]);
/* The entry of id, or NULL. Caller holds db->lock. */
const struct pack_entry *pages_db_find(struct pages_db *db, const uint8_t id[PAGE_ID_LEN]);
/*
 * Reads page id (page_size bytes) into buf, checking its bytes against the
 * id: 0, -ENOENT (no such page), -EBADMSG (damaged: bytes or frame), or
 * another negative errno.
 */
int pages_db_read(struct pages_db *db, const uint8_t id[PAGE_ID_LEN], uint32_t page_size,
                  void *buf);
/*
 * pages_db_read for a writer hashing what it has just written: a zstd group
 * is trusted on its frame's content checksum (ids not recomputed); a raw
 * group is still checked against its ids.
 */
int pages_db_read_written(struct pages_db *db, const uint8_t id[PAGE_ID_LEN], uint32_t page_size,
                          void *buf);
/*
 * A reader's hint for reading pages in turn through the shared cache: the
 * slot of its last page, pinned (never evicted while the hint holds it), and
 * the place after that page there. A page of the pinned group is served
 * without the store's lock or index: its slot cannot change while pinned,
 * and a guarded group (see pack.c, enum check) needs no write to be served.
 * Hints pin at most HINT_PINNED_BYTES of the cache (a hint past it keeps its
 * slot unpinned, found under the lock), and a reader lets go of its pin
 * before it waits for another group: readers that hold pins (the mount's
 * idle open files) never leave the others without a slot to read into.
 * One user at a time (lock, taken with a trylock: the mount's threads may
 * share one reader's hint; a thread that finds it busy reads without it).
 * pages_db_hint_init before use, pages_db_hint_release before the db closes.
 */
struct page_hint {
	pthread_mutex_t lock;
	int32_t slot;  /* the slot of the last page, -1: none (lock) */
	uint32_t next; /* the place after the last page in it (lock) */
	bool pinned;   /* slot is pinned (see HINT_PINNED_BYTES) (lock) */
};
static inline void pages_db_hint_init(struct page_hint *h)
{
	pthread_mutex_init(&h->lock, NULL);
	h->slot = -1;
	h->next = 0;
	h->pinned = false;
}
/* Lets go of the slot h pins and destroys h (no read may be using it). */
void pages_db_hint_release(struct pages_db *db, struct page_hint *h);
/* What a read checks against the ids (pack.c says why each is enough). */
enum check {
	CHECK_NONE, /* nothing: the caller checks (scrub; verify, by the whole file's SHA-256) */
	CHECK_RAW,  /* pages of unguarded groups only (pages_db_read_written) */
	CHECK_ALL,  /* every page read (pages_db_read) */
};
/*
 * pages_db_read, checking as check says, for a reader that reads pages in
 * turn (SQLite's page reads of a backup): a page of the group hint pins is
 * served without the store's lock nor an index lookup (see struct
 * page_hint). CHECK_NONE also decodes without zstd's content checksum
 * (pack.c, group_get).
 */
int pages_db_read_hinted(struct pages_db *db, struct page_hint *hint, const uint8_t id[PAGE_ID_LEN],
                         uint32_t page_size, enum check check, void *buf);
/*
 * Reads into the shared cache the groups of the pages ids (n of them, of
 * page_size bytes) that are not there nor being read: for a thread that
 * decompresses ahead of a reader (pages_read.c, warm_main). A group that
 * does not read is not kept (its reader meets the damage and tells); a page
 * not indexed yet is skipped. trusted: for a reader reading with CHECK_NONE
 * (decoded as its own reads would be: group_get). Returns the number of
 * groups read.
 */
size_t pages_db_warm(struct pages_db *db, const uint8_t *ids, size_t n, uint32_t page_size,
                     bool trusted);
/*
 * Reads the page of entry i (its group decompressed) and checks it against
 * its id: 0, or -EBADMSG when it is damaged. For scrub: page by page, so
 * one damaged page does not condemn the others of its group.
 */
int pages_db_check_entry(struct pages_db *db, size_t i);
/*
 * What a page that failed its check is, in words for "page N is ...": in an
 * encrypted store its group failed AES-GCM authentication before anything
 * was compared (the bytes changed on disk, or were sealed with another
 * key), else its bytes do not match its id. A static string.
 */
static inline const char *pages_damage_words(const struct pages_db *db)
{
	return db->s->seal ? "damaged (its sealed data failed authentication: changed on disk, or "
	                     "not sealed with this store's key)"
	                   : "damaged (its bytes do not match its id)";
}
/*
 * A reader's own group slots, decompressor and HMAC context, for streaming
 * reads (the hash of verify, a cat through the mount): the group is read
 * and decompressed outside the store's lock and cache, so a second thread
 * reading the same backup (SQLite's integrity_check) neither waits for it
 * nor loses its cached groups to it. CURSOR_SLOTS groups, least recently
 * used out: a backup whose changed pages sit in newer, smaller groups reads
 * an old group, a new one, the old one again; with one slot the old group
 * was decompressed again after every change (a first cat of the 31st daily
 * backup at 1 % churn decompressed 2.9 groups per group of pages served).
 * One user at a time: lock.
 */
#define CURSOR_SLOTS 4
struct page_cursor {
	pthread_mutex_t lock;
	struct group_cache slot[CURSOR_SLOTS];
	uint64_t clock;      /* for LRU (slot[].used) */
	uint32_t last;       /* the slot of the last page read */
	uint32_t hint;       /* the place after that page in its slot */
	uint8_t *stored;     /* the slots' one buffer for a group as stored */
	size_t stored_cap;   /* bytes allocated at stored */
	void *mac;           /* EVP_MAC_CTX */
	void *dctx;          /* ZSTD_DCtx */
	struct seal_ctx *sc; /* the store's key, keyed once (seal.h); NULL: no key */
};
/*
 * Asks the kernel to read the groups of the pages ids (n of them, at most
 * PREFETCH_PAGES, of page_size bytes) into its cache, without waiting
 * (posix_fadvise POSIX_FADV_WILLNEED), so that a reader's later reads of
 * them find them there: the groups' places from the index (one lookup per
 * page), each pack's groups within PREFETCH_GAP of each other as one range.
 * Only a hint: a page not in the index, a pack removed meanwhile, a call the
 * kernel refuses change nothing read. Returns the number of ranges asked for.
 */
#define PREFETCH_PAGES 1024
#define PREFETCH_GAP   (128u << 10)
size_t pages_db_prefetch(struct pages_db *db, const uint8_t *ids, size_t n, uint32_t page_size);
int pages_cursor_new(struct pages_db *db, struct page_cursor **out);
void pages_cursor_free(struct page_cursor *c);
/* pages_db_read (quick: as pages_db_read_written) through cursor cur; caller holds cur->lock. */
int pages_cursor_read(struct pages_db *db, struct page_cursor *cur, const uint8_t id[PAGE_ID_LEN],
                      uint32_t page_size, bool quick, void *buf);
/* Stores page (page_size bytes) unless the store has it; sets id. */
int pages_db_add(struct pages_db *db, const void *page, uint32_t page_size, uint8_t id[PAGE_ID_LEN],
                 struct bri_err *err);
/*
 * pages_db_add for page pgno of a file being written: a new page that is not
 * the neighbour (pgno + 1) of the last new one starts a new group, so that
 * groups hold pages a reader reads together.
 */
int pages_db_add_at(struct pages_db *db, const void *page, uint32_t page_size, uint64_t pgno,
                    uint8_t id[PAGE_ID_LEN], struct bri_err *err);
/*
 * From now on the groups of db's new pack are sealed (in an encrypted
 * store) and written by a thread of db's own, in their order, while the
 * caller of pages_db_add_at hashes and compresses the next ones: at most
 * WRITE_STAGE_GROUPS groups wait for it (made, not yet written). A group
 * handed over is indexed at once (a later page with its id is not stored
 * twice), but its bytes are in the pack only once written: a reader of db's
 * own new pages calls pages_db_wait_written first (pages_write.c does, in
 * pw_drain). The thread's first failure (a full disk) fails the next
 * pages_db_add_at that ends a group, pages_db_wait_written and
 * pages_db_flush, with the message a write on the caller's thread gives;
 * the groups after it are not written. Without a thread (none could be
 * made) groups are written by pages_db_add_at's caller, as without this call.
 */
void pages_db_write_ahead(struct pages_db *db);
/* Waits until every group handed to db's writer stage is written: 0 or its failure (err). */
int pages_db_wait_written(struct pages_db *db, struct bri_err *err);
/* Writes out the pending group, fsyncs and publishes the new pack (if any). */
int pages_db_flush(struct pages_db *db, struct bri_err *err);
/* Removes the unpublished pack being written, if any. */
void pages_db_abort(struct pages_db *db);

/* Manifest: page size, count and ids (count * PAGE_ID_LEN bytes, malloc'd). */
struct manifest {
	uint32_t page_size;
	uint64_t page_count;
	uint8_t *ids;
};

/*
 * The manifest blob of backup name; sealed with k (bound to the file name
 * NAME.manifest) when k is given. decode refuses a blob whose sealing is not
 * k's (sealed without a key, in the clear with one): -EBADMSG.
 */
int manifest_encode(const struct bri_seal *k, const char *name, const struct manifest *m,
                    void **out, size_t *len);
int manifest_decode(const struct bri_seal *k, const char *name, const void *data, size_t len,
                    struct manifest *m);
/* The logical size of NAME.manifest's backup from its header alone (no decoding). */
int manifest_logical_size(const struct bri_store *s, const char *name, uint64_t *size);
/* Reads NAME.manifest of s: 0, -ENOENT, -EBADMSG, or another negative errno. */
int manifest_read(const struct bri_store *s, const char *name, struct manifest *m);

/*
 * Frees pages no manifest of s uses: a pack with no used page is removed, a
 * pack at least half garbage is rewritten (its used pages into a new pack,
 * published before the old one is removed). Call with the store's lock.
 */
int pages_gc(struct bri_store *s, struct bri_err *err);

/* Removes every pack of s (migrate away from pages, after every manifest is gone). */
int pages_remove_packs(struct bri_store *s, struct bri_err *err);

/* Logical bytes of all backups, bytes of all packs and manifests. */
int pages_usage(struct bri_store *s, uint64_t *logical, uint64_t *stored, struct bri_err *err);

#endif
