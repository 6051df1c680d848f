/*
 * Internal to the page store (store_pages.c, pack.c): the pages of a store
 * kept once each in shared, immutable pack files, found by their id (a
 * keyed hash, HMAC-SHA-256 with the store's page-id secret).
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
 * -> pack, blob, slot) is rebuilt from the packs' headers and ids when a
 * store is opened for reading or writing; nothing else is needed to find a
 * page. Not part of the contract: names without the bri_ prefix.
 */
#ifndef BRI_PACK_H
#define BRI_PACK_H

#include <pthread.h>
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

struct pack_entry {
	uint8_t id[PAGE_ID_LEN];
	uint32_t pack;     /* index into pages_db.packs */
	uint32_t slot;     /* the page's place in its group */
	uint64_t blob_off; /* where the group's blob starts in the pack */
};

struct pack_file {
	int fd;
	char *name; /* relative to the store */
};

/* A decompressed group, kept for the next read. */
struct group_cache {
	uint32_t pack;
	uint64_t blob_off;
	uint32_t page_size;
	uint32_t npages;
	uint8_t *data; /* npages * page_size bytes; NULL: empty slot */
	uint64_t used; /* for LRU */
};

#define GROUP_CACHE_SLOTS 64

/* The store's pages: secret, packs and index. Thread-safe reads (lock). */
struct pages_db {
	struct bri_store *s;
	uint8_t secret[32];
	void *mac; /* EVP_MAC_CTX keyed with secret: copied for each page id */
	struct pack_file *packs;
	size_t npacks, cap_packs;
	struct pack_entry *entries;
	size_t nentries, cap_entries;
	uint32_t *table; /* open addressing: entry index + 1, 0 empty */
	size_t table_size;
	pthread_mutex_t lock;
	struct group_cache cache[GROUP_CACHE_SLOTS];
	uint64_t clock;
	/* The pack being written (pages_db_add), -1 when none. */
	int wfd;
	char *wtmp;
	uint32_t wpack;  /* its index in packs */
	uint64_t woff;   /* its size so far */
	uint32_t wpsize; /* page size of the pending group */
	uint32_t wcount; /* pages pending */
	uint8_t wids[PACK_GROUP_PAGES][PAGE_ID_LEN];
	uint8_t *wbuf;       /* PACK_GROUP_PAGES * PAGE_SIZE_MAX */
	uint64_t stored_new; /* bytes appended by this writer */
};

/* Loads the secret and the index of every pack of s. */
int pages_db_open(struct bri_store *s, struct pages_db **out, struct bri_err *err);
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
/* Stores page (page_size bytes) unless the store has it; sets id. */
int pages_db_add(struct pages_db *db, const void *page, uint32_t page_size, uint8_t id[PAGE_ID_LEN],
                 struct bri_err *err);
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

/* Logical bytes of all backups, bytes of all packs and manifests. */
int pages_usage(struct bri_store *s, uint64_t *logical, uint64_t *stored, struct bri_err *err);

#endif
