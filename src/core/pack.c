/*
 * The page store's packs (pack.h): page ids, the index rebuilt from the
 * packs (from each one's table of contents, pack_toc.c, else by reading
 * its groups; for readers by loader threads while reads go on), reading a
 * page (one group decompressed, checked against the ids, kept in a small
 * cache; the kernel asked ahead for a reader's next groups), appending new
 * pages to a new pack that is published (its table of contents written,
 * fsync, rename) before any manifest names its pages, the manifest's blob,
 * and the garbage collection of delete and cleanup.
 *
 * Blob header, 32 bytes, little-endian: "BRIb", version 1, kind (1 group,
 * 2 manifest, 3 a pack's table of contents: pack_toc.c), codec (0 raw,
 * 1 zstd), sealing (0 none, 1 AES-256-GCM), page size, page count, ids
 * length, payload raw length, payload stored length, reserved. A group
 * blob is header, ids, payload; a manifest blob is header, payload. In an
 * encrypted store (s->seal) every blob is sealed (seal.h), after
 * compression: a group's ids and its payload each as a sealed blob of
 * their own (the ids are read alone when a pack without a table of
 * contents is scanned), the manifest's payload as one, a pack's table of
 * contents as one; lengths in the header are the sealed ones (plaintext +
 * SEAL_OVERHEAD). The header stays readable (sizes only) and is bound to
 * each sealed part as additional data, with what the part is ("ids",
 * "pages", "toc", the manifest's file name). A store with a key reads only
 * sealed blobs, a store without one only unsealed blobs.
 */
#include "pack.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
/* ZSTD_d_forceIgnoreChecksum (group_read_with): in libzstd since 1.4.7. */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include "bri/log.h"
#include "bri/testpoint.h"
#include "pack_toc.h"
#include "seal.h"
#include "store_int.h"

/*
 * zstd's fastest kind of level: matches found, literals stored as they are
 * (no Huffman coding), so a group decodes at several GB/s and a page store
 * serves its backups (a cat through the mount, verify, a create's
 * read-back) at about the speed of the disk. Measured on 64 KiB groups
 * (zstd -b, one core): the bench's database (hex text: all the gain is
 * Huffman's) 2.31x at level 3 decoding at 1.7 GB/s, 1.27x at -1 at 7.0
 * GB/s; a database of source and documentation lines 5.6x at level 3
 * (1.8 GB/s), 5.1x at -1 (2.5 GB/s). At level 3 the first cat of a 1 GiB
 * backup through the mount cost the daemon 1.5 s of CPU, 0.8 s of it zstd;
 * the space a page store saves is mostly its dedup (30 daily backups of
 * 1 GiB: 836 MiB at level 3, 1306 MiB at -1). Packs of any level read alike.
 */
#define ZSTD_LEVEL (-1)
/* Index entries at most (2^28 pages: 1 TiB of 4 KiB pages). */
#define ENTRIES_MAX (1u << 28)

static void write_stage_free(struct pages_db *db);

/*
 * zstd at ZSTD_LEVEL with the frame's content checksum on: a damaged
 * manifest fails to decompress (pages are checked against their ids too).
 */
static ZSTD_CCtx *zcctx_new(void)
{
	ZSTD_CCtx *cctx = ZSTD_createCCtx();

	if (cctx) {
		ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, ZSTD_LEVEL);
		ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
	}
	return cctx;
}

/* keep: a context of the caller's made by zcctx_new (NULL: one for this call). */
static size_t zcompress(ZSTD_CCtx *keep, void *dst, size_t cap, const void *src, size_t len)
{
	ZSTD_CCtx *cctx = keep ? keep : zcctx_new();
	size_t n;

	if (!cctx)
		return (size_t)-1; /* an error code for ZSTD_isError */
	n = ZSTD_compress2(cctx, dst, cap, src, len);
	if (!keep)
		ZSTD_freeCCtx(cctx);
	return n;
}

void hdr_encode(const struct blob_hdr *h, uint8_t out[BLOB_HDR])
{
	memset(out, 0, BLOB_HDR);
	memcpy(out, (const uint8_t[4]){'B', 'R', 'I', 'b'}, 4); /* a magic, not a string */
	out[4] = 1;
	out[5] = h->kind;
	out[6] = h->codec;
	out[7] = h->seal;
	put32(out + 8, h->page_size);
	put32(out + 12, h->npages);
	put32(out + 16, h->ids_len);
	put32(out + 20, h->raw_len);
	put32(out + 24, h->stored_len);
}

int hdr_decode(const uint8_t in[BLOB_HDR], struct blob_hdr *h)
{
	uint32_t ovh;

	if (memcmp(in, "BRIb", 4) != 0 || in[4] != 1 || get32(in + 28) != 0)
		return -EBADMSG;
	h->kind = in[5];
	h->codec = in[6];
	h->seal = in[7];
	h->page_size = get32(in + 8);
	h->npages = get32(in + 12);
	h->ids_len = get32(in + 16);
	h->raw_len = get32(in + 20);
	h->stored_len = get32(in + 24);
	if (h->seal != SEAL_NONE && h->seal != SEAL_AES)
		return -EBADMSG;
	ovh = h->seal == SEAL_AES ? SEAL_OVERHEAD : 0;
	if (h->codec != CODEC_RAW && h->codec != CODEC_ZSTD)
		return -EBADMSG;
	if (h->kind == BLOB_GROUP &&
	    (h->npages == 0 || h->npages > PACK_GROUP_PAGES || h->page_size < PAGE_SIZE_MIN ||
	     h->page_size > PAGE_SIZE_MAX || h->ids_len != h->npages * PAGE_ID_LEN + ovh ||
	     h->raw_len != h->npages * h->page_size))
		return -EBADMSG;
	if (h->kind == BLOB_MANIFEST && (h->npages != 0 || h->ids_len != 0))
		return -EBADMSG;
	if (h->kind == BLOB_TOC &&
	    (h->npages == 0 || h->page_size != 0 || h->ids_len != 0 || h->codec != CODEC_RAW))
		return -EBADMSG;
	if (h->kind != BLOB_GROUP && h->kind != BLOB_MANIFEST && h->kind != BLOB_TOC)
		return -EBADMSG;
	if (h->stored_len < ovh || (h->codec == CODEC_RAW && h->raw_len + ovh != h->stored_len))
		return -EBADMSG;
	return 0;
}

/* A blob's sealing must be the store's: sealed with a key, in the clear without. */
int hdr_check_seal(const struct blob_hdr *h, const struct bri_seal *k)
{
	return (h->seal == SEAL_AES) == (k != NULL) ? 0 : -EBADMSG;
}

/* The additional data of a blob's sealed part: its header and what the part is. */
static size_t blob_ctx(const uint8_t hb[BLOB_HDR], const void *what, size_t n, uint8_t *ctx,
                       size_t cap)
{
	if (n > cap - BLOB_HDR)
		n = cap - BLOB_HDR;
	memcpy(ctx, hb, BLOB_HDR);
	memcpy(ctx + BLOB_HDR, what, n); /* bytes of additional data, not a string */
	return BLOB_HDR + n;
}

/*
 * Opens the sealed part in (len bytes) into out (in place: seal.h), or
 * copies it when k is NULL; sc: a cipher context of the caller's for k, or
 * NULL (one made for this call).
 */
static int part_open_with(struct seal_ctx *sc, const struct bri_seal *k, const uint8_t hb[BLOB_HDR],
                          const char *what, const uint8_t *in, size_t len, uint8_t *out)
{
	uint8_t ctx[BLOB_HDR + BRI_NAME_MAX + 32];
	size_t n;

	if (!k) {
		memcpy(out, in, len);
		return 0;
	}
	n = blob_ctx(hb, what, strlen(what), ctx, sizeof(ctx));
	return sc ? seal_open_ctx(sc, ctx, n, in, len, out) : seal_open(k, ctx, n, in, len, out);
}

/* Opens the sealed part in (len bytes) into out, or copies it when k is NULL. */
int part_open(const struct bri_seal *k, const uint8_t hb[BLOB_HDR], const char *what,
              const uint8_t *in, size_t len, uint8_t *out)
{
	return part_open_with(NULL, k, hb, what, in, len, out);
}

/* Seals in (len bytes) into out (len + SEAL_OVERHEAD bytes). */
int part_seal(const struct bri_seal *k, const uint8_t hb[BLOB_HDR], const char *what,
              const uint8_t *in, size_t len, uint8_t *out)
{
	uint8_t ctx[BLOB_HDR + BRI_NAME_MAX + 32];

	return seal_data(k, ctx, blob_ctx(hb, what, strlen(what), ctx, sizeof(ctx)), in, len, out);
}

/* An HMAC-SHA-256 context keyed with the store's secret, copied for each page. */
static EVP_MAC_CTX *mac_new(const uint8_t *key, size_t len)
{
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string("digest", (char *)"SHA256", 0),
	    OSSL_PARAM_construct_end(),
	};
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;

	EVP_MAC_free(mac); /* the context keeps its own reference */
	if (ctx && !EVP_MAC_init(ctx, key, len, params)) {
		EVP_MAC_CTX_free(ctx);
		ctx = NULL;
	}
	return ctx;
}

void page_id(const struct pages_db *db, const void *page, size_t len, uint8_t id[PAGE_ID_LEN])
{
	EVP_MAC_CTX *ctx = db->mac ? EVP_MAC_CTX_dup(db->mac) : NULL;
	unsigned int n = PAGE_ID_LEN;
	size_t out = 0;

	if (ctx && EVP_MAC_update(ctx, page, len) && EVP_MAC_final(ctx, id, &out, PAGE_ID_LEN) &&
	    out == PAGE_ID_LEN) {
		EVP_MAC_CTX_free(ctx);
		return;
	}
	EVP_MAC_CTX_free(ctx);
	HMAC(EVP_sha256(), db->secret, sizeof(db->secret), page, len, id, &n);
}

/*
 * The id of a page with ctx, a context of the store's own that this caller
 * alone uses: re-initialised with the key it holds (HMAC keeps its keyed
 * state: no key schedule, no allocation per page). Falls back to page_id.
 */
static void page_id_with(const struct pages_db *db, void *ctx, const void *page, size_t len,
                         uint8_t id[PAGE_ID_LEN])
{
	size_t out = 0;

	if (ctx && EVP_MAC_init(ctx, NULL, 0, NULL) && EVP_MAC_update(ctx, page, len) &&
	    EVP_MAC_final(ctx, id, &out, PAGE_ID_LEN) && out == PAGE_ID_LEN)
		return;
	page_id(db, page, len, id);
}

ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

int write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static size_t id_hash(const uint8_t id[PAGE_ID_LEN])
{
	uint64_t h;

	memcpy(&h, id, sizeof(h));
	return (size_t)h;
}

static int table_grow(struct pages_db *db)
{
	size_t size = db->table_size ? db->table_size * 2 : 1024;
	uint32_t *t = calloc(size, sizeof(*t));

	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < db->nentries; i++) {
		size_t j = id_hash(db->entries[i].id) & (size - 1);

		while (t[j])
			j = (j + 1) & (size - 1);
		t[j] = (uint32_t)(i + 1);
	}
	free(db->table);
	db->table = t;
	db->table_size = size;
	return 0;
}

bool page_id_is_hole(const uint8_t id[PAGE_ID_LEN])
{
	static const uint8_t zero[PAGE_ID_LEN];

	return memcmp(id, zero, PAGE_ID_LEN) == 0;
}

const struct pack_entry *pages_db_find(struct pages_db *db, const uint8_t id[PAGE_ID_LEN])
{
	if (!db->table_size)
		return NULL;
	for (size_t j = id_hash(id) & (db->table_size - 1);; j = (j + 1) & (db->table_size - 1)) {
		uint32_t e = db->table[j];

		if (!e)
			return NULL;
		if (memcmp(db->entries[e - 1].id, id, PAGE_ID_LEN) == 0)
			return &db->entries[e - 1];
	}
}

/* Adds an entry unless id is known. */
static int index_add(struct pages_db *db, const uint8_t id[PAGE_ID_LEN], uint32_t pack,
                     uint32_t slot, uint64_t blob_off)
{
	struct pack_entry *e;
	size_t j;

	if (pages_db_find(db, id))
		return 0;
	if (db->nentries >= ENTRIES_MAX)
		return -EFBIG;
	if (db->nentries == db->cap_entries) {
		size_t cap = db->cap_entries ? db->cap_entries * 2 : 1024;

		e = realloc(db->entries, cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		db->entries = e;
		db->cap_entries = cap;
	}
	if ((db->nentries + 1) * 2 > db->table_size && table_grow(db) < 0)
		return -ENOMEM;
	e = &db->entries[db->nentries];
	memcpy(e->id, id, PAGE_ID_LEN);
	e->pack = pack;
	e->slot = slot;
	e->blob_off = blob_off;
	j = id_hash(id) & (db->table_size - 1);
	while (db->table[j])
		j = (j + 1) & (db->table_size - 1);
	db->table[j] = (uint32_t)(++db->nentries);
	return 0;
}

static int add_pack(struct pages_db *db, int fd, const char *name, uint32_t *index)
{
	if (db->npacks == db->cap_packs) {
		size_t cap = db->cap_packs ? db->cap_packs * 2 : 16;
		struct pack_file *p = realloc(db->packs, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		db->packs = p;
		db->cap_packs = cap;
	}
	db->packs[db->npacks].fd = fd;
	db->packs[db->npacks].loaded = false;
	db->packs[db->npacks].read_end = 0;
	db->packs[db->npacks].name = strdup(name);
	if (!db->packs[db->npacks].name)
		return -ENOMEM;
	*index = (uint32_t)db->npacks++;
	return 0;
}

/* Whether the pack fd (size bytes) ends with a footer pointing at off. */
static bool footer_points_at(int fd, uint64_t size, uint64_t off)
{
	uint8_t f[TOC_FOOTER];
	uint64_t at;

	if (size < TOC_FOOTER || pread_full(fd, f, TOC_FOOTER, size - TOC_FOOTER) != TOC_FOOTER ||
	    memcmp(f, TOC_MAGIC, 8) != 0)
		return false;
	memcpy(&at, f + 8, 8);
	return le64toh(at) == off;
}

/* pack_toc.h: each group's header and ids, read from the groups themselves. */
int pack_scan(int fd, const struct bri_seal *k,
              int (*fn)(void *arg, const struct blob_hdr *h, const uint8_t *ids, uint64_t off),
              void *arg, uint64_t *toc_at)
{
	uint8_t ids[PACK_GROUP_PAGES * PAGE_ID_LEN];
	/* Read in windows of SCAN_WINDOW while groups are small (scattered single
	 * pages lie close together): a header and its ids are then in the window. */
	enum {
		SCAN_WINDOW = 256 << 10,
		NEED = BLOB_HDR + PACK_GROUP_PAGES * PAGE_ID_LEN + SEAL_OVERHEAD
	};
	uint8_t head[PACK_HDR], *win = malloc(SCAN_WINDOW);
	uint64_t off = PACK_HDR, wstart = 0, wlen = 0, last = 0;
	struct stat st;
	int rc = 0;

	if (!win)
		return -ENOMEM;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out_free;
	}
	if (pread_full(fd, head, PACK_HDR, 0) != PACK_HDR || memcmp(head, PACK_MAGIC, 8) != 0) {
		rc = -EBADMSG;
		goto out_free;
	}
	while (off < (uint64_t)st.st_size && rc == 0) {
		struct blob_hdr h;
		const uint8_t *hb;

		if (off < wstart || off + NEED > wstart + wlen) {
			/* Small groups: a window of them; a large one: its header and ids only
			 * (the payload is never read, cold or warm). */
			ssize_t n =
			    pread_full(fd, win, last > SCAN_WINDOW / 16 ? NEED : SCAN_WINDOW, off);

			if (n < BLOB_HDR) {
				rc = n < 0 ? (int)n : -EBADMSG;
				break;
			}
			wstart = off;
			wlen = (uint64_t)n;
		}
		hb = win + (off - wstart);
		rc = hdr_decode(hb, &h);
		if (rc == 0)
			rc = hdr_check_seal(&h, k);
		if (rc == 0 && h.kind == BLOB_TOC) {
			/* The table of contents follows the last group: the end (not damage). */
			if (toc_at)
				*toc_at = off;
			break;
		}
		if (rc < 0 && footer_points_at(fd, (uint64_t)st.st_size, off)) {
			/* A damaged header where the footer says the table of contents
			 * starts: the groups end here all the same (that table is not used). */
			if (toc_at)
				*toc_at = off;
			rc = 0;
			break;
		}
		if (rc < 0 || h.kind != BLOB_GROUP) {
			rc = rc < 0 ? rc : -EBADMSG;
			break;
		}
		if (off + BLOB_HDR + h.ids_len > wstart + wlen) {
			rc = -EBADMSG; /* the file ends inside the ids */
			break;
		}
		/* Sealed ids are opened (the header bound to them) before anyone sees them. */
		if (k && part_open(k, hb, "ids", hb + BLOB_HDR, h.ids_len, ids) < 0) {
			rc = -EBADMSG;
			break;
		}
		rc = fn(arg, &h, k ? ids : hb + BLOB_HDR, off);
		last = BLOB_HDR + (uint64_t)h.ids_len + h.stored_len;
		off += last;
	}
out_free:
	free(win);
	return rc;
}

/*
 * Entries a loader's thread collects before it adds them to the index under
 * db->lock at once (and wakes the readers waiting for a page, if any): the
 * lock is taken once per 256 pages, not once per group.
 */
#define LOAD_BATCH 256

struct load_arg {
	struct pages_db *db;
	uint32_t pack;
	bool lock;       /* the loader's thread: batch, take db->lock, wake the readers waiting */
	uint32_t nbatch; /* entries in batch */
	struct pack_entry batch[LOAD_BATCH];
};

/* The loader's batch into the index. */
static int load_flush(struct load_arg *a)
{
	struct pages_db *db = a->db;
	int rc = 0;

	pthread_mutex_lock(&db->lock);
	if (db->load_stop)
		rc = -ECANCELED;
	for (uint32_t i = 0; rc == 0 && i < a->nbatch; i++)
		rc = index_add(db, a->batch[i].id, a->pack, a->batch[i].slot, a->batch[i].blob_off);
	a->nbatch = 0;
	if (db->load_waiters)
		pthread_cond_broadcast(&db->load_cond);
	pthread_mutex_unlock(&db->lock);
	bri_testpoint("pages-load-batch");
	return rc;
}

static int load_group(void *arg, const struct blob_hdr *h, const uint8_t *ids, uint64_t off)
{
	struct load_arg *a = arg;
	int rc = 0;

	if (a->lock && a->nbatch + h->npages > LOAD_BATCH)
		rc = load_flush(a);
	for (uint32_t i = 0; rc == 0 && i < h->npages; i++) {
		if (a->lock) {
			struct pack_entry *e = &a->batch[a->nbatch++];

			memcpy(e->id, ids + i * PAGE_ID_LEN, PAGE_ID_LEN);
			e->slot = i;
			e->blob_off = off;
		} else {
			rc = index_add(a->db, ids + i * PAGE_ID_LEN, a->pack, i, off);
		}
	}
	return rc;
}

static bool is_pack_name(const char *n)
{
	size_t len = strlen(n);

	return strncmp(n, PACK_PREFIX, strlen(PACK_PREFIX)) == 0 &&
	       len > strlen(PACK_PREFIX) + strlen(PACK_SUFFIX) &&
	       strcmp(n + len - strlen(PACK_SUFFIX), PACK_SUFFIX) == 0;
}

/* Calls fn for the name of every pack of s. */
static int each_pack(const struct bri_store *s, int (*fn)(void *arg, const char *name), void *arg)
{
	int fd = openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
	struct dirent *d;
	DIR *dir;

	if (fd < 0)
		return -errno;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -errno;
	}
	while ((d = readdir(dir)) && rc == 0)
		if (is_pack_name(d->d_name))
			rc = fn(arg, d->d_name);
	closedir(dir);
	return rc;
}

/*
 * The entries of pack fd from its table of contents (pack_toc.c): 1 when
 * they were added (through load_group, as a scan adds them: batched for a
 * loader's thread); 0 when the pack has none, or a damaged one (said in the
 * log): the caller scans its groups; or a negative errno.
 */
static int load_toc(struct pages_db *db, int fd, const char *name, struct load_arg *a)
{
	const char *why = "cannot be read";
	struct pack_toc t;
	int rc = toc_read(fd, db->s->seal, &t, &why);

	if (rc < 0) {
		if (rc != -ENOENT)
			bri_log(
			    BRI_LOG_WARN,
			    "pack %s/%s: its table of contents is not used (%s); its groups are "
			    "read one by one instead",
			    db->s->dir, name, rc == -EBADMSG ? why : strerror(-rc));
		return 0;
	}
	bri_testpoint("pages-load-toc");
	for (size_t i = 0; rc == 0 && i < t.n; i++) {
		struct blob_hdr h = {.kind = BLOB_GROUP, .npages = t.g[i].npages};

		rc = load_group(a, &h, t.g[i].ids, t.g[i].off);
	}
	toc_free(&t);
	return rc < 0 ? rc : 1;
}

/*
 * Adds pack name to db's index. lock: called by the loader's thread (see
 * pages_db_open_reader), which takes db->lock for each change; else the
 * caller holds it, or is the only user of db.
 */
static int load_one(struct pages_db *db, const char *name, bool lock)
{
	struct load_arg *a;
	struct stat st[2];
	int fd, sfd, rc;

	/* A rescan (no loader runs then): the packs known already are skipped. */
	for (size_t i = 0; !lock && i < db->npacks; i++)
		if (strcmp(db->packs[i].name, name) == 0)
			return 0;

	a = malloc(sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->db = db;
	a->lock = lock;
	a->nbatch = 0;
	fd = openat(db->s->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		free(a);
		return errno == ENOENT ? 0 : -errno; /* removed by a cleanup meanwhile */
	}
	if (lock)
		pthread_mutex_lock(&db->lock);
	rc = add_pack(db, fd, name, &a->pack);
	if (lock)
		pthread_mutex_unlock(&db->lock);
	if (rc < 0) {
		close(fd);
		free(a);
		return rc;
	}
	/* The loader's scan through a descriptor of its own: the kernel's
	 * read-ahead of a file is kept per open file, and readers streaming
	 * through the pack's (cursor reads, which go on meanwhile) would see
	 * their sequential reads mixed with the scan's, and lose it. */
	sfd = lock ? openat(db->s->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
	if (sfd >= 0 && (fstat(sfd, &st[0]) < 0 || fstat(fd, &st[1]) < 0 ||
	                 st[0].st_ino != st[1].st_ino || st[0].st_dev != st[1].st_dev)) {
		close(sfd);
		sfd = -1;
	}
	rc = load_toc(db, sfd >= 0 ? sfd : fd, name, a);
	if (rc == 0)
		rc = pack_scan(sfd >= 0 ? sfd : fd, db->s->seal, load_group, a, NULL);
	else if (rc == 1)
		rc = 0;
	if (sfd >= 0)
		close(sfd);
	if (rc == -EBADMSG) {
		/* Pages before the damage are still found; the damaged ones fail on reading. */
		bri_log(BRI_LOG_WARN, "pack %s/%s is damaged; pages after the damage are missing",
		        db->s->dir, name);
		rc = 0;
	}
	if (lock && rc == 0) /* the pages before a damage included */
		rc = load_flush(a);
	if (lock)
		pthread_mutex_lock(&db->lock);
	db->packs[a->pack].loaded = true;
	if (lock)
		pthread_mutex_unlock(&db->lock);
	free(a);
	return rc;
}

static int load_pack(void *arg, const char *name)
{
	return load_one(arg, name, false);
}

/* The secret and the contexts of a new db, its index empty. */
static int db_new(struct bri_store *s, struct pages_db **out, struct bri_err *err)
{
	struct pages_db *db = calloc(1, sizeof(*db));
	char *secret = NULL;
	size_t len;
	int rc;

	if (!db)
		return bri_err_set(err, -ENOMEM, "out of memory");
	db->s = s;
	db->wfd = -1;
	pthread_mutex_init(&db->lock, NULL);
	pthread_cond_init(&db->load_cond, NULL);              /* never waited on with a deadline */
	pthread_cond_init(&db->cache_cond, NULL);             /* never waited on with a deadline */
	memset(db->cache_hash, 0xff, sizeof(db->cache_hash)); /* -1: empty buckets */
	db->cache_head = db->cache_tail = -1;
	rc = store_read_sealed(s, PAGES_SECRET_FILE, 1024, &secret, &len);
	if (rc < 0 || len != sizeof(db->secret)) {
		rc = bri_err_set(err, rc < 0 ? rc : -EBADMSG,
		                 "cannot read the page store's secret %s/%s: %s", s->dir,
		                 PAGES_SECRET_FILE,
		                 rc == -EBADMSG ? "damaged (it does not open with the store's key)"
		                 : rc < 0       ? strerror(-rc)
		                                : "not 32 bytes");
		free(secret);
		pages_db_close(db);
		return rc;
	}
	memcpy(db->secret, secret, sizeof(db->secret));
	free(secret);
	db->mac = mac_new(db->secret, sizeof(db->secret)); /* NULL: HMAC() each time */
	db->wmac = db->mac ? EVP_MAC_CTX_dup(db->mac) : NULL;
	db->rmac = db->mac ? EVP_MAC_CTX_dup(db->mac) : NULL;
	*out = db;
	return 0;
}

int pages_db_open(struct bri_store *s, struct pages_db **out, struct bri_err *err)
{
	struct pages_db *db;
	int rc = db_new(s, &db, err);

	if (rc < 0)
		return rc;
	rc = each_pack(s, load_pack, db);
	if (rc < 0) {
		bri_err_set(err, rc, "cannot read the packs of %s: %s", s->dir, strerror(-rc));
		pages_db_close(db);
		return rc;
	}
	*out = db;
	return 0;
}

/* A pack to load and its size (the loader's list). */
struct pack_name {
	char *name;
	uint64_t size;
};

struct pack_list {
	const struct bri_store *s;
	struct pack_name *v;
	size_t n, cap;
};

/* Packs at most in a reader's list (each a file of the store's folder). */
#define PACKS_MAX (1u << 20)

static int list_name(void *arg, const char *name)
{
	struct pack_list *l = arg;
	struct stat st;

	if (fstatat(l->s->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct pack_name *v = l->n < PACKS_MAX ? realloc(l->v, cap * sizeof(*v)) : NULL;

		if (!v)
			return l->n < PACKS_MAX ? -ENOMEM : -EFBIG;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n].name = strdup(name);
	if (!l->v[l->n].name)
		return -ENOMEM;
	l->v[l->n++].size = (uint64_t)st.st_size;
	return 0;
}

static int smaller_first(const void *a, const void *b)
{
	const struct pack_name *x = a, *y = b;

	return x->size < y->size ? -1 : x->size > y->size;
}

/* Whether pack name ends with a table of contents' footer (its magic only). */
static bool ends_with_toc(const struct pages_db *db, const char *name)
{
	int fd = openat(db->s->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	uint8_t magic[8];
	struct stat st;
	bool yes;

	if (fd < 0)
		return false;
	yes = fstat(fd, &st) == 0 && st.st_size >= TOC_FOOTER &&
	      pread_full(fd, magic, 8, (uint64_t)st.st_size - TOC_FOOTER) == 8 &&
	      memcmp(magic, TOC_MAGIC, 8) == 0;
	close(fd);
	return yes;
}

/*
 * A loader's thread: takes the packs of the list one at a time, smallest
 * first, until none is left, a loader failed, or close stops them. The
 * small packs (the newest pages: a daily backup's churn, wherever a read
 * starts) load first and side by side; the large ones (a first backup's
 * pages: a scan that waits on the disk for every group's header, cold)
 * last, while the readers already read them (cursor_chain). But the first
 * loader takes the largest pack first when it has a table of contents:
 * one read of its end gives the most pages of any pack, that a first read
 * would otherwise wait for until every small pack is loaded (the bench's
 * first cat, 35 packs: its first MiB after 11 ms rather than 31, medians
 * of 6). Scanned instead, it would compete with the small packs' loads
 * for the disk all along (first MiB 0.41 s rather than 0.13).
 */
static void *loader_main(void *arg)
{
	struct pages_db *db = arg;
	bool first;
	int rc = 0;

	pthread_mutex_lock(&db->lock);
	db->loaders++;
	first = !db->load_big_tried && db->nload > 1;
	db->load_big_tried = true;
	if (first) {
		const char *big = db->load[db->nload - 1].name;
		bool toc;

		pthread_mutex_unlock(&db->lock);
		toc = ends_with_toc(db, big);
		pthread_mutex_lock(&db->lock);
		if (toc && db->load_next < db->load_end && !db->load_stop) {
			db->load_end--; /* taken: the last of the list */
			pthread_mutex_unlock(&db->lock);
			bri_testpoint("pages-load-pack");
			rc = load_one(db, big, true);
			pthread_mutex_lock(&db->lock);
			if (rc < 0 && db->load_rc == 0)
				db->load_rc = rc;
		}
	}
	while (db->load_rc == 0 && !db->load_stop && db->load_next < db->load_end) {
		const char *name = db->load[db->load_next++].name;

		pthread_mutex_unlock(&db->lock);
		bri_testpoint("pages-load-pack");
		rc = load_one(db, name, true);
		pthread_mutex_lock(&db->lock);
		if (rc < 0 && db->load_rc == 0)
			db->load_rc = rc;
	}
	if (rc < 0 && rc != -ECANCELED)
		bri_log(BRI_LOG_WARN, "cannot read the packs of %s: %s", db->s->dir, strerror(-rc));
	if (--db->loaders == 0)
		db->loading = false;
	pthread_cond_broadcast(&db->load_cond);
	pthread_mutex_unlock(&db->lock);
	return NULL;
}

int pages_db_open_reader(struct bri_store *s, struct pages_db **out, struct bri_err *err)
{
	struct pack_list l = {.s = s};
	struct pages_db *db;
	sigset_t all, old;
	int rc = db_new(s, &db, err);

	if (rc < 0)
		return rc;
	rc = each_pack(s, list_name, &l);
	if (rc < 0) {
		for (size_t i = 0; i < l.n; i++)
			free(l.v[i].name);
		free(l.v);
		bri_err_set(err, rc, "cannot read the packs of %s: %s", s->dir, strerror(-rc));
		pages_db_close(db);
		return rc;
	}
	qsort(l.v, l.n, sizeof(l.v[0]), smaller_first);
	db->load = l.v;
	db->nload = db->load_end = l.n;
	db->loading = true;
	/* No signal for them: the daemon's threads that handle them are elsewhere. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (int i = 0; i < LOADERS; i++)
		if (pthread_create(&db->loader[db->nloaders], NULL, loader_main, db) == 0)
			db->nloaders++;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!db->nloaders)
		loader_main(db); /* no thread: loaded here, as pages_db_open does */
	*out = db;
	return 0;
}

/*
 * The entry of a page pages_db_find did not find (caller holds db->lock):
 * while the loader runs, looked up again each time it has added groups;
 * after it, once more after a rescan (a cleanup may have rewritten a pack
 * while the folder was read: its page is in a pack published since).
 * NULL: -ENOENT, or why the load failed (*rc).
 */
static const struct pack_entry *find_late(struct pages_db *db, const uint8_t id[PAGE_ID_LEN],
                                          int *rc)
{
	const struct pack_entry *e = NULL;

	while (!e && db->loading) {
		db->load_waiters++;
		pthread_cond_wait(&db->load_cond, &db->lock);
		db->load_waiters--;
		e = pages_db_find(db, id);
	}
	if (!e && db->load_rc == 0) {
		each_pack(db->s, load_pack, db);
		e = pages_db_find(db, id);
	}
	*rc = e ? 0 : db->load_rc < 0 ? db->load_rc : -ENOENT;
	return e;
}

void pages_db_abort(struct pages_db *db)
{
	if (db->wfd >= 0) {
		/* The pack's descriptor stays in packs (closed with them); only the name goes. */
		bri_store_unlink(db->s, db->wtmp);
		db->wfd = -1;
	}
	free(db->wtmp);
	db->wtmp = NULL;
}

void pages_db_close(struct pages_db *db)
{
	if (!db)
		return;
	if (db->nloaders) {
		pthread_mutex_lock(&db->lock);
		db->load_stop = true;
		pthread_mutex_unlock(&db->lock);
		for (int i = 0; i < db->nloaders; i++)
			pthread_join(db->loader[i], NULL);
	}
	for (size_t i = 0; i < db->nload; i++)
		free(db->load[i].name);
	free(db->load);
	write_stage_free(db); /* before the pack goes: its thread may be writing to it */
	pages_db_abort(db);
	for (size_t i = 0; i < db->npacks; i++) {
		close(db->packs[i].fd);
		free(db->packs[i].name);
	}
	for (uint32_t i = 0; i < db->cache_made; i++)
		free(db->cache[i].g.data);
	for (int i = 0; i < GROUP_DECODERS; i++) {
		free(db->decoder[i].stored);
		ZSTD_freeDCtx(db->decoder[i].dctx);
		seal_ctx_free(db->decoder[i].sc);
	}
	free(db->packs);
	free(db->entries);
	free(db->table);
	free(db->wbuf);
	if (db->wtoc)
		toc_build_free(db->wtoc);
	free(db->wtoc);
	pthread_mutex_destroy(&db->lock);
	pthread_cond_destroy(&db->load_cond);
	pthread_cond_destroy(&db->cache_cond);
	EVP_MAC_CTX_free(db->mac);
	EVP_MAC_CTX_free(db->wmac);
	EVP_MAC_CTX_free(db->rmac);
	ZSTD_freeCCtx(db->cctx);
	memset(db->secret, 0, sizeof(db->secret));
	free(db);
}

/*
 * What a read checks against the ids.
 *
 * The integrity argument for CHECK_RAW (what the mount, restore, export
 * and verify's hash read with): a page is served only from a group whose
 * bytes were checked against what was written. A group is "guarded" when
 * its payload is exactly one zstd frame whose header carries the content
 * checksum (XXH64 of the decompressed bytes, computed by the writer from
 * the very buffer whose pages it had just hashed into their ids):
 * ZSTD_decompressDCtx then fails on any mismatch, and any damage to the
 * frame's structure fails too; a sealed group (an encrypted store) is
 * guarded by its AES-GCM tags, checked over every stored byte, ids and
 * pages, before anything is decompressed (its frame's XXH64 is then not
 * checked: the tag proved the frame is the writer's, byte for byte; a
 * pass over every page for nothing, 0.12 s of a GiB's read measured). A
 * guarded group's pages are served without recomputing their HMAC ids;
 * every other group (raw, stored incompressible;
 * a frame without a checksum, whatever made it) has each page checked
 * against its id. The page's id is always compared with the group's ids
 * read from disk, so a damaged id or index entry is never served either.
 * XXH64 catches accidental damage (a flipped bit, a torn or misplaced
 * write), not a forger: someone who can rewrite the packs can read the
 * page-id secret beside them too (an encrypted store has AES-GCM for
 * that). Whole backups stay covered by the SHA-256 of their metadata
 * (verify), and scrub (CHECK_ALL) recomputes every page's id.
 */
/* enum check: pack.h. */

/*
 * Page slot of cache slot c against its id, as check says: 0, or -EBADMSG.
 * Page by page, so that one damaged page does not condemn its group's others;
 * a page found good is not hashed again while its group stays cached.
 */
static int page_ok(struct pages_db *db, void *mac, struct group_cache *c, uint32_t slot,
                   enum check check)
{
	uint8_t id[PAGE_ID_LEN];

	if (check == CHECK_NONE || (check == CHECK_RAW && c->guarded) ||
	    (c->checked & (1u << slot)))
		return 0;
	page_id_with(db, mac, c->data + (size_t)slot * c->page_size, c->page_size, id);
	if (memcmp(id, c->ids[slot], PAGE_ID_LEN) != 0)
		return -EBADMSG;
	c->checked |= 1u << slot;
	return 0;
}

/* Bytes a group's read asks for first: its header, its ids and the start of
 * its pages (a group of one page, as a day's churn leaves them, whole). */
#define GROUP_FIRST_READ 4096u

/*
 * The group at off of the pack fd, read (into *stored, a buffer of
 * *stored_cap bytes, grown as needed) and decompressed into slot, which is
 * emptied first: its frame checked, and zstd's content checksum when the
 * group is not sealed; not the ids (page_ok). dctx: a ZSTD_DCtx of the
 * caller's, or NULL; sc: a cipher context of the caller's for k (seal.h),
 * or NULL (one made for each part).
 *
 * The blob is read whole into *stored, header, ids and payload in place,
 * in one pread when it fits GROUP_FIRST_READ, else two (the second for the
 * rest). A sealed group's ids and payload are opened (their GCM tags
 * checked: every stored byte authenticated) before anything is
 * decompressed, the payload in place (seal_open_ctx: no second buffer).
 * Then zstd does not check the frame's content checksum (XXH64 of the
 * pages): the tag has proved the frame is the one the writer made, from
 * the pages it had just hashed into their ids, so the checksum adds
 * nothing but a pass over every page. unchecked: the caller serves the
 * pages unchecked (CHECK_NONE: verify's SQLite reads, which the whole
 * file's SHA-256 covers): the checksum is not checked either, and a clear
 * group is then not guarded (another reader of it recomputes its ids).
 */
static int group_read_with(int fd, const struct bri_seal *k, uint64_t off, void *dctx,
                           struct seal_ctx *sc, struct group_cache *slot, uint8_t **stored,
                           size_t *stored_cap, bool unchecked)
{
	uint8_t *z;
	struct blob_hdr h;
	bool guarded = false;
	size_t zlen, len, want;
	ssize_t got;
	uint8_t *b;
	int rc;

	/* Emptied first (its ids are overwritten below); its buffers are kept. */
	slot->npages = 0;
	if (*stored_cap < GROUP_FIRST_READ) {
		b = realloc(*stored, GROUP_FIRST_READ);
		if (!b)
			return -ENOMEM;
		*stored = b;
		*stored_cap = GROUP_FIRST_READ;
	}
	got = pread_full(fd, *stored, GROUP_FIRST_READ, off);
	if (got < BLOB_HDR)
		goto out_empty;
	b = *stored;
	rc = hdr_decode(b, &h);
	if (rc == 0)
		rc = hdr_check_seal(&h, k);
	if (rc < 0 || h.kind != BLOB_GROUP || h.stored_len > 2 * h.raw_len + 1024)
		return rc < 0 ? rc : -EBADMSG;
	/* Buffers of the largest group, made once: no allocation (and no page
	 * faults on fresh memory) per group read. Room for a full group of this
	 * page size at once: groups of 1 to 16 pages then never make the
	 * buffers move (and fault in fresh memory). */
	if (h.raw_len > slot->data_cap) {
		size_t cap = (size_t)PACK_GROUP_PAGES * h.page_size;

		b = realloc(slot->data, cap > h.raw_len ? cap : h.raw_len);
		if (!b)
			return -ENOMEM;
		slot->data = b;
		slot->data_cap = cap > h.raw_len ? cap : h.raw_len;
	}
	len = BLOB_HDR + (size_t)h.ids_len + h.stored_len;
	if (len > *stored_cap) {
		want = BLOB_HDR + PACK_GROUP_PAGES * PAGE_ID_LEN + SEAL_OVERHEAD +
		       (size_t)PACK_GROUP_PAGES * h.page_size + 1024;
		want = want > len ? want : len;
		b = realloc(*stored, want);
		if (!b)
			return -ENOMEM;
		*stored = b;
		*stored_cap = want;
	}
	b = *stored;
	if ((size_t)got < len && pread_full(fd, b + got, len - (size_t)got, off + (uint64_t)got) !=
	                             (ssize_t)(len - (size_t)got))
		goto out_empty;
	z = b + BLOB_HDR + h.ids_len;
	zlen = h.stored_len;
	if (k) {
		/* Sealed: the tags check every byte before anything is decompressed. */
		uint8_t *in = b + BLOB_HDR + h.ids_len;

		z = in + SEAL_HDR_LEN + SEAL_NONCE_LEN;
		zlen = h.stored_len - SEAL_OVERHEAD;
		if (part_open_with(sc, k, b, "ids", b + BLOB_HDR, h.ids_len, (uint8_t *)slot->ids) <
		        0 ||
		    part_open_with(sc, k, b, "pages", in, h.stored_len, z) < 0)
			goto out_empty;
	} else {
		memcpy(slot->ids, b + BLOB_HDR, h.ids_len);
	}
	if (h.codec == CODEC_ZSTD) {
		size_t n;

		/* Refused (a libzstd without it): the checksum is checked. */
		if (dctx && ZSTD_isError(ZSTD_DCtx_setParameter(
		                dctx, ZSTD_d_forceIgnoreChecksum,
		                k || unchecked ? ZSTD_d_ignoreChecksum : ZSTD_d_validateChecksum)))
			unchecked = false;
		n = dctx ? ZSTD_decompressDCtx(dctx, slot->data, h.raw_len, z, zlen)
		         : ZSTD_decompress(slot->data, h.raw_len, z, zlen);
		if (ZSTD_isError(n) || n != h.raw_len)
			goto out_empty;
		/* Guarded (enum check): one frame, the whole payload, whose header
		 * (RFC 8878 3.1.1: magic 28 b5 2f fd, then the descriptor, bit 2 the
		 * Content_Checksum_flag) says its checksum was there to check. */
		guarded = zlen > 5 && get32(z) == ZSTD_MAGICNUMBER && (z[4] & 0x04) &&
		          ZSTD_findFrameCompressedSize(z, zlen) == zlen;
	} else {
		memcpy(slot->data, z, h.raw_len);
	}
	/* A sealed group's tags checked every stored byte (ids and pages): guarded too.
	 * A clear one decompressed unchecked is not: its pages' ids tell. */
	if (k)
		guarded = true;
	else if (unchecked)
		guarded = false;
	slot->blob_off = off;
	slot->blob_end = off + len;
	slot->page_size = h.page_size;
	slot->npages = h.npages;
	slot->codec = h.codec;
	slot->guarded = guarded;
	slot->checked = 0;
	return 0;
out_empty:
	slot->npages = 0;
	return -EBADMSG;
}

/* ---- the shared cache of decompressed groups (pack.h, GROUP_CACHE_BYTES) ---- */

enum slot_state {
	SLOT_EMPTY,   /* no group (made, or its read failed, or its data freed) */
	SLOT_LOADING, /* a thread reads its group outside the lock: wait for it */
	SLOT_READY,   /* holds its group, found through the hash table */
};

static uint32_t cache_bucket(uint32_t pack, uint64_t off)
{
	uint64_t h = (off ^ ((uint64_t)pack << 44)) * 0x9e3779b97f4a7c15ull; /* Fibonacci hashing */

	return (uint32_t)(h >> 40) & (GROUP_CACHE_HASH - 1);
}

static void cache_hash_add(struct pages_db *db, int32_t i)
{
	uint32_t b = cache_bucket(db->cache[i].pack, db->cache[i].off);

	db->cache[i].hnext = db->cache_hash[b];
	db->cache_hash[b] = i;
}

static void cache_hash_remove(struct pages_db *db, int32_t i)
{
	int32_t *q = &db->cache_hash[cache_bucket(db->cache[i].pack, db->cache[i].off)];

	while (*q >= 0 && *q != i)
		q = &db->cache[*q].hnext;
	if (*q == i)
		*q = db->cache[i].hnext;
	db->cache[i].hnext = -1;
}

/* Takes slot i out of the recency list (a LOADING slot is in none). */
static void cache_unlink(struct pages_db *db, int32_t i)
{
	struct cache_slot *c = &db->cache[i];

	if (c->prev >= 0)
		db->cache[c->prev].next = c->next;
	else if (db->cache_head == i)
		db->cache_head = c->next;
	if (c->next >= 0)
		db->cache[c->next].prev = c->prev;
	else if (db->cache_tail == i)
		db->cache_tail = c->prev;
	c->prev = c->next = -1;
}

/* Puts slot i (out of the list) first (front: just used) or last (an empty slot, used next). */
static void cache_link(struct pages_db *db, int32_t i, bool front)
{
	struct cache_slot *c = &db->cache[i];

	if (front) {
		c->prev = -1;
		c->next = db->cache_head;
		if (c->next >= 0)
			db->cache[c->next].prev = i;
		else
			db->cache_tail = i;
		db->cache_head = i;
	} else {
		c->next = -1;
		c->prev = db->cache_tail;
		if (c->prev >= 0)
			db->cache[c->prev].next = i;
		else
			db->cache_head = i;
		db->cache_tail = i;
	}
}

/*
 * A slot for a group to read, out of the list and the hash table: an empty
 * one, else a new one while the cache is under its bounds, else the least
 * recently used one not pinned. -1: none (every slot is pinned or loading).
 */
static int32_t cache_victim(struct pages_db *db)
{
	int32_t i = db->cache_tail;

	if (i >= 0 && db->cache[i].state == SLOT_EMPTY && !db->cache[i].pins) {
		cache_unlink(db, i);
		return i;
	}
	if (db->cache_made < GROUP_CACHE_SLOTS && db->cache_bytes < GROUP_CACHE_BYTES) {
		i = (int32_t)db->cache_made++;
		db->cache[i].hnext = db->cache[i].prev = db->cache[i].next = -1;
		return i;
	}
	while (i >= 0 && db->cache[i].pins)
		i = db->cache[i].prev;
	if (i < 0)
		return -1;
	cache_unlink(db, i);
	if (db->cache[i].state == SLOT_READY)
		cache_hash_remove(db, i);
	return i;
}

/*
 * Frees the data of the least recently used slots (not keep, not pinned)
 * while the cache holds more than GROUP_CACHE_BYTES: a slot grows to its
 * group's page size, so a store whose page size changed could otherwise
 * hold GROUP_CACHE_SLOTS groups of the largest.
 */
static void cache_trim(struct pages_db *db, int32_t keep)
{
	for (int32_t i = db->cache_tail; i >= 0 && db->cache_bytes > GROUP_CACHE_BYTES;) {
		struct cache_slot *c = &db->cache[i];
		int32_t prev = c->prev;

		if (i != keep && !c->pins && c->g.data) {
			if (c->state == SLOT_READY)
				cache_hash_remove(db, i);
			db->cache_bytes -= c->g.data_cap;
			free(c->g.data);
			c->g.data = NULL;
			c->g.data_cap = 0;
			c->g.npages = 0;
			c->state = SLOT_EMPTY;
			cache_unlink(db, i);
			cache_link(db, i, false);
		}
		i = prev;
	}
}

/* The slot of the group at off of pack p (READY or LOADING), or -1. Caller holds db->lock. */
static int32_t cache_lookup(const struct pages_db *db, uint32_t p, uint64_t off)
{
	int32_t i;

	for (i = db->cache_hash[cache_bucket(p, off)]; i >= 0; i = db->cache[i].hnext)
		if (db->cache[i].pack == p && db->cache[i].off == off)
			break;
	return i;
}

/*
 * The group at off of pack p from the shared cache, read into it (group_read_with)
 * if it is not there. Caller holds db->lock, which is released while the
 * group is read and decompressed: other groups are served meanwhile, and a
 * reader of the same group waits for this read instead of making its own.
 * On 0, *out is the group's slot, READY, valid while db->lock is held (or
 * until cache_unpin, pinned). A group that does not read is not kept: a
 * later reader of it tries again (and fails the same way). trusted: for a
 * reader that serves its pages unchecked (CHECK_NONE: verify, whose whole
 * file is hashed against the metadata's SHA-256): zstd's content checksum
 * (XXH64, a fifth of the decoding's time) is not computed either, and the
 * group is kept unguarded, so that another reader of it recomputes its
 * pages' ids (an encrypted store's group stays guarded: its GCM tags were
 * checked over every byte).
 */
static int group_get(struct pages_db *db, uint32_t p, uint64_t off, bool trusted,
                     struct cache_slot **out)
{
	struct group_decoder *d;
	struct cache_slot *c;
	size_t cap;
	int32_t i;
	int fd, rc;

	for (;;) {
		i = cache_lookup(db, p, off);
		if (i >= 0 && db->cache[i].state == SLOT_READY) {
			cache_unlink(db, i);
			cache_link(db, i, true);
			*out = &db->cache[i];
			return 0;
		}
		d = NULL;
		for (int k = 0; i < 0 && !d && k < GROUP_DECODERS; k++)
			if (!db->decoder[k].busy)
				d = &db->decoder[k];
		/* Its read by another thread, no decoder free, or every slot busy: wait. */
		if (i < 0 && d && (i = cache_victim(db)) >= 0)
			break;
		pthread_cond_wait(&db->cache_cond, &db->lock);
	}
	c = &db->cache[i];
	c->state = SLOT_LOADING;
	c->pack = p;
	c->off = off;
	cache_hash_add(db, i);
	d->busy = true;
	if (!d->dctx)
		d->dctx = ZSTD_createDCtx(); /* NULL: ZSTD_decompress makes one each time */
	if (!d->sc && db->s->seal)
		d->sc = seal_ctx_new(db->s->seal); /* NULL: a cipher context per part */
	fd = db->packs[p].fd;                      /* open until db closes */
	cap = c->g.data_cap;
	pthread_mutex_unlock(&db->lock);
	rc = group_read_with(fd, db->s->seal, off, d->dctx, d->sc, &c->g, &d->stored,
	                     &d->stored_cap, trusted);
	pthread_mutex_lock(&db->lock);
	d->busy = false;
	db->cache_bytes += c->g.data_cap - cap;
	db->cache_reads++;
	c->g.pack = p;
	c->g.blob_off = off;
	if (rc < 0) {
		cache_hash_remove(db, i);
		c->g.npages = 0;
		c->state = SLOT_EMPTY;
		cache_link(db, i, false);
	} else {
		c->state = SLOT_READY;
		cache_link(db, i, true);
		cache_trim(db, i);
	}
	pthread_cond_broadcast(&db->cache_cond);
	*out = c;
	return rc;
}

/* Ends a use of slot c outside db->lock (pinned: c->pins++ under it). Caller holds db->lock. */
static void cache_unpin(struct pages_db *db, struct cache_slot *c)
{
	if (--c->pins == 0)
		pthread_cond_broadcast(&db->cache_cond);
}

/*
 * The place of page id in the group of slot k (READY: the caller holds
 * db->lock, or pins k), looked for from place from on: 0, and *slot; or
 * -1 when the group does not hold it.
 */
static int group_find(const struct pages_db *db, int32_t k, uint32_t from,
                      const uint8_t id[PAGE_ID_LEN], uint32_t page_size, uint32_t *slot)
{
	const struct group_cache *g = &db->cache[k].g;

	for (uint32_t j = 0; g->page_size == page_size && j < g->npages; j++) {
		uint32_t i = (from + j) % g->npages;

		if (memcmp(g->ids[i], id, PAGE_ID_LEN) == 0) {
			*slot = i;
			return 0;
		}
	}
	return -1;
}

/* hint (held by the caller) forgets its slot, unpinned. Caller holds db->lock. */
static void hint_unpin(struct pages_db *db, struct page_hint *hint)
{
	if (hint->slot >= 0 && hint->pinned) {
		struct cache_slot *c = &db->cache[hint->slot];

		db->hint_pinned -= c->g.data_cap; /* unchanged while pinned */
		cache_unpin(db, c);
		/* Kept the longest of the unpinned ones: it was used last. */
		if (c->state == SLOT_READY) {
			cache_unlink(db, hint->slot);
			cache_link(db, hint->slot, true);
		}
	}
	hint->slot = -1;
	hint->pinned = false;
}

/* hint (held) names slot k (READY), pinned within HINT_PINNED_BYTES. Caller holds db->lock. */
static void hint_set(struct pages_db *db, struct page_hint *hint, int32_t k)
{
	struct cache_slot *c = &db->cache[k];

	if (hint->slot == k && hint->pinned)
		return;
	hint_unpin(db, hint);
	hint->slot = k;
	if (db->hint_pinned + c->g.data_cap <= HINT_PINNED_BYTES) {
		c->pins++;
		db->hint_pinned += c->g.data_cap;
		hint->pinned = true;
	} else {
		cache_unlink(db, k); /* just used */
		cache_link(db, k, true);
	}
}

void pages_db_hint_release(struct pages_db *db, struct page_hint *hint)
{
	if (db) {
		pthread_mutex_lock(&db->lock);
		hint_unpin(db, hint);
		pthread_mutex_unlock(&db->lock);
	}
	pthread_mutex_destroy(&hint->lock);
}

/*
 * A page of the group hint pins, served without db->lock: 0, or -1 (not
 * there, or it needs a check that writes to the slot: the locked path).
 * Caller holds hint->lock. The pinned slot is READY and nobody changes it.
 */
static int read_pinned(struct pages_db *db, struct page_hint *hint, const uint8_t id[PAGE_ID_LEN],
                       uint32_t page_size, enum check check, void *buf)
{
	const struct group_cache *g;
	uint32_t slot;

	if (!hint->pinned || group_find(db, hint->slot, hint->next, id, page_size, &slot) < 0)
		return -1;
	g = &db->cache[hint->slot].g;
	if (check == CHECK_ALL || (check == CHECK_RAW && !g->guarded))
		return -1;
	memcpy(buf, g->data + (size_t)slot * page_size, page_size);
	hint->next = slot + 1;
	return 0;
}

static int read_page(struct pages_db *db, struct page_hint *hint, const uint8_t id[PAGE_ID_LEN],
                     uint32_t page_size, enum check check, void *buf)
{
	const struct pack_entry *e;
	struct cache_slot *s;
	struct group_cache *c;
	uint32_t slot = 0;
	int rc = 0;

	/* Another thread reads with this hint now: without it. */
	if (hint && pthread_mutex_trylock(&hint->lock) != 0)
		hint = NULL;
	if (hint && read_pinned(db, hint, id, page_size, check, buf) == 0) {
		pthread_mutex_unlock(&hint->lock);
		return 0;
	}
	pthread_mutex_lock(&db->lock);
	/* The pending group of the pack being written. */
	for (uint32_t i = 0; i < db->wcount; i++) {
		if (db->wpsize == page_size && memcmp(db->wids[i], id, PAGE_ID_LEN) == 0) {
			memcpy(buf, db->wbuf + (size_t)i * page_size, page_size);
			goto out_unlock;
		}
	}
	/* A page of the reader's last group: no index lookup (an unpinned slot
	 * may hold another group by now: its ids tell). */
	if (hint && hint->slot >= 0 &&
	    (hint->pinned || db->cache[hint->slot].state == SLOT_READY) &&
	    group_find(db, hint->slot, hint->next, id, page_size, &slot) == 0) {
		s = &db->cache[hint->slot];
	} else {
		/* No pin held while this thread waits (for the index, a slot, a group). */
		if (hint)
			hint_unpin(db, hint);
		e = pages_db_find(db, id);
		if (!e && !(e = find_late(db, id, &rc)))
			goto out_unlock;
		slot = e->slot; /* e moves when a loader grows the index (the lock is let go) */
		rc = group_get(db, e->pack, e->blob_off, check == CHECK_NONE, &s);
	}
	c = &s->g;
	if (rc == 0 && (c->page_size != page_size || slot >= c->npages ||
	                memcmp(c->ids[slot], id, PAGE_ID_LEN) != 0))
		rc = -EBADMSG;
	/* A damaged pack is never served: the page's bytes against its id. */
	if (rc == 0)
		rc = page_ok(db, db->rmac, c, slot, check);
	if (rc == 0)
		memcpy(buf, c->data + (size_t)slot * page_size, page_size);
	if (rc == 0 && hint) {
		hint_set(db, hint, (int32_t)(s - db->cache));
		hint->next = slot + 1;
	}
out_unlock:
	pthread_mutex_unlock(&db->lock);
	if (hint)
		pthread_mutex_unlock(&hint->lock);
	return rc;
}

int pages_db_read(struct pages_db *db, const uint8_t id[PAGE_ID_LEN], uint32_t page_size, void *buf)
{
	return read_page(db, NULL, id, page_size, CHECK_ALL, buf);
}

int pages_db_read_written(struct pages_db *db, const uint8_t id[PAGE_ID_LEN], uint32_t page_size,
                          void *buf)
{
	return read_page(db, NULL, id, page_size, CHECK_RAW, buf);
}

int pages_db_read_hinted(struct pages_db *db, struct page_hint *hint, const uint8_t id[PAGE_ID_LEN],
                         uint32_t page_size, enum check check, void *buf)
{
	return read_page(db, hint, id, page_size, check, buf);
}

size_t pages_db_warm(struct pages_db *db, const uint8_t *ids, size_t n, uint32_t page_size,
                     bool trusted)
{
	int32_t last = -1; /* the slot of the group warmed last */
	size_t read = 0;

	pthread_mutex_lock(&db->lock);
	for (size_t i = 0; i < n; i++) {
		const uint8_t *id = ids + i * PAGE_ID_LEN;
		const struct pack_entry *e;
		struct cache_slot *s;
		uint32_t slot;
		int32_t k;

		/* A page of the group warmed last (neighbours share groups), a hole,
		 * a page not indexed yet (its reader finds it): nothing to do. */
		if (page_id_is_hole(id) ||
		    (last >= 0 && db->cache[last].state == SLOT_READY &&
		     group_find(db, last, 0, id, page_size, &slot) == 0) ||
		    !(e = pages_db_find(db, id)))
			continue;
		k = cache_lookup(db, e->pack, e->blob_off);
		if (k < 0 && group_get(db, e->pack, e->blob_off, trusted, &s) == 0) {
			k = (int32_t)(s - db->cache);
			read++;
		}
		/* Read, being read, or failed (not kept: the reader meets it and tells).
		 * A group there already is kept the longest, as if just read. */
		if (k >= 0 && db->cache[k].state == SLOT_READY) {
			cache_unlink(db, k);
			cache_link(db, k, true);
			last = k;
		}
	}
	pthread_mutex_unlock(&db->lock);
	return read;
}

/* A group to ask the kernel for: pack, its blob's start and (an estimate of) its end. */
struct hint {
	uint32_t pack;
	uint64_t off, end;
};

static int hint_cmp(const void *a, const void *b)
{
	const struct hint *x = a, *y = b;

	if (x->pack != y->pack)
		return x->pack < y->pack ? -1 : 1;
	return x->off < y->off ? -1 : x->off > y->off;
}

/*
 * Where the group of entry e ends: where the next group of its pack starts
 * (entries are added in the packs' order, a group's pages one after the
 * other), else the end of the largest group of its page size (an estimate:
 * a hint may reach a little past the group).
 */
static uint64_t group_end(const struct pages_db *db, const struct pack_entry *e, uint32_t page_size)
{
	size_t i = (size_t)(e - db->entries);

	for (size_t j = i + 1; j < db->nentries && j <= i + PACK_GROUP_PAGES; j++) {
		const struct pack_entry *n = &db->entries[j];

		if (n->pack != e->pack)
			break;
		if (n->blob_off > e->blob_off)
			return n->blob_off;
	}
	return e->blob_off + BLOB_HDR + 2 * SEAL_OVERHEAD +
	       (uint64_t)PACK_GROUP_PAGES * (PAGE_ID_LEN + page_size) + 1024;
}

size_t pages_db_prefetch(struct pages_db *db, const uint8_t *ids, size_t n, uint32_t page_size)
{
	struct hint h[PREFETCH_PAGES];
	int fd[PREFETCH_PAGES];
	size_t nh = 0, asked = 0;
	uint32_t last_pack = 0;
	uint64_t last_off = 0;

	if (n > PREFETCH_PAGES)
		n = PREFETCH_PAGES;
	/* One lookup per page, under the lock once; a page's group once (its
	 * pages are neighbours in the manifest). No rescan for a page not found:
	 * its read looks again. */
	pthread_mutex_lock(&db->lock);
	for (size_t i = 0; i < n; i++) {
		const struct pack_entry *e = pages_db_find(db, ids + i * PAGE_ID_LEN);

		if (!e || (nh && last_pack == e->pack && last_off == e->blob_off))
			continue;
		last_pack = e->pack;
		last_off = e->blob_off;
		h[nh].pack = e->pack;
		h[nh].off = e->blob_off;
		h[nh].end = group_end(db, e, page_size);
		nh++;
	}
	if (nh > 1)
		qsort(h, nh, sizeof(h[0]), hint_cmp);
	for (size_t i = 0; i < nh; i++)
		fd[i] = db->packs[h[i].pack].fd;
	pthread_mutex_unlock(&db->lock);
	/* Groups of a pack close together, one range; each range asked for once.
	 * The descriptors stay open while db does (a pack a cleanup removed
	 * meanwhile included: it is what this db reads). */
	for (size_t i = 0; i < nh;) {
		uint64_t from = h[i].off, to = h[i].end;
		size_t j = i + 1;

		while (j < nh && h[j].pack == h[i].pack && h[j].off <= to + PREFETCH_GAP) {
			if (h[j].end > to)
				to = h[j].end;
			j++;
		}
		/* A hint: whatever it returns, the reads are the same. */
		(void)posix_fadvise(fd[i], (off_t)from, (off_t)(to - from), POSIX_FADV_WILLNEED);
		asked++;
		i = j;
	}
	return asked;
}

int pages_cursor_new(struct pages_db *db, struct page_cursor **out)
{
	struct page_cursor *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	c->mac = db->mac ? EVP_MAC_CTX_dup(db->mac) : NULL;
	c->dctx = ZSTD_createDCtx();
	/* NULL (no key, or no memory): group_read_with makes one per part. */
	c->sc = db->s->seal ? seal_ctx_new(db->s->seal) : NULL;
	*out = c;
	return 0;
}

void pages_cursor_free(struct page_cursor *c)
{
	if (!c)
		return;
	for (int i = 0; i < CURSOR_SLOTS; i++)
		free(c->slot[i].data);
	free(c->stored);
	EVP_MAC_CTX_free(c->mac);
	ZSTD_freeDCtx(c->dctx);
	seal_ctx_free(c->sc);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/*
 * A page not in the index while the loaders run (caller holds db->lock,
 * released meanwhile): most likely in a group that follows, in its pack, a
 * group just read (a backup's pages were written in their order, a group
 * after the other, and a stream reads them in that order). Tried in turn:
 * the group after each group the cursor holds, the most recent first; then,
 * for each pack still loading, the group after the furthest one a cursor
 * has read (pack_file.read_end: the read-ahead and the requests assemble
 * different chunks side by side) and the groups after it, up to CHAIN_HOPS
 * groups read in all. They are read into the cursor's slots like any group
 * and checked as any read is (their ids, read from disk, name the page).
 * Returns the slot holding the page, *slot its place; or NULL: the caller
 * waits for the loaders. So a first read does not wait for the loaders'
 * scan of a pack of large groups (cold, a wait on the disk for each group's
 * header) before it can go on. A group that does not read (past the
 * pack's end, damaged) ends its try: the loaders' index decides then.
 */
#define CHAIN_HOPS  8
#define CHAIN_FRONT 4 /* packs still loading whose read_end is tried */

static struct group_cache *cursor_chain(struct pages_db *db, struct page_cursor *cur,
                                        const uint8_t id[PAGE_ID_LEN], uint32_t page_size,
                                        uint32_t *slot)
{
	struct {
		uint32_t pack;
		uint64_t off, end; /* end: the furthest group end read from it here */
		int fd;
		bool walk; /* a frontier: the groups after it too */
	} next[CURSOR_SLOTS + CHAIN_FRONT];
	uint32_t n = 0, hops = 0, own;
	struct group_cache *found = NULL;

	for (uint32_t i = 0; i < CURSOR_SLOTS; i++) {
		const struct group_cache *g =
		    &cur->slot[(cur->last + CURSOR_SLOTS - i) % CURSOR_SLOTS];
		bool held = false;

		if (!g->npages || g->page_size != page_size || db->packs[g->pack].loaded)
			continue;
		for (uint32_t k = 0; k < CURSOR_SLOTS; k++)
			held |= cur->slot[k].npages && cur->slot[k].pack == g->pack &&
			        cur->slot[k].blob_off == g->blob_end;
		if (held)
			continue; /* read already: its ids did not name the page */
		next[n].pack = g->pack;
		next[n].off = g->blob_end;
		next[n].walk = false;
		next[n++].fd = db->packs[g->pack].fd;
	}
	own = n;
	for (uint32_t p = 0; p < db->npacks && n < own + CHAIN_FRONT; p++) {
		bool dup = false;

		if (db->packs[p].loaded || !db->packs[p].read_end)
			continue;
		for (uint32_t k = 0; k < own; k++)
			dup |= next[k].pack == p && next[k].off == db->packs[p].read_end;
		next[n].pack = p;
		next[n].off = db->packs[p].read_end;
		next[n].walk = true;
		next[n].fd = db->packs[p].fd;
		n += !dup;
	}
	if (!n)
		return NULL;
	pthread_mutex_unlock(&db->lock);
	for (uint32_t i = 0; !found && i < n; i++) {
		uint64_t off = next[i].off;

		next[i].end = 0;
		while (!found && hops < CHAIN_HOPS) {
			struct group_cache *c = &cur->slot[0];

			for (int k = 1; k < CURSOR_SLOTS; k++)
				if (!cur->slot[k].npages ||
				    (c->npages && cur->slot[k].used < c->used))
					c = &cur->slot[k];
			hops++;
			if (group_read_with(next[i].fd, db->s->seal, off, cur->dctx, cur->sc, c,
			                    &cur->stored, &cur->stored_cap, false) < 0)
				break;
			c->pack = next[i].pack;
			c->used = ++cur->clock;
			next[i].end = c->blob_end;
			for (uint32_t j = 0; c->page_size == page_size && j < c->npages; j++)
				if (memcmp(c->ids[j], id, PAGE_ID_LEN) == 0) {
					*slot = j;
					found = c;
					break;
				}
			if (!next[i].walk || c->page_size != page_size)
				break;
			off = c->blob_end;
		}
	}
	pthread_mutex_lock(&db->lock);
	for (uint32_t i = 0; i < n; i++)
		if (next[i].end > db->packs[next[i].pack].read_end)
			db->packs[next[i].pack].read_end = next[i].end;
	return found;
}

int pages_cursor_read(struct pages_db *db, struct page_cursor *cur, const uint8_t id[PAGE_ID_LEN],
                      uint32_t page_size, bool quick, void *buf)
{
	struct group_cache *c;
	const struct pack_entry *e;
	bool loading = false;
	uint32_t pack = 0, slot = 0;
	uint64_t off = 0;
	int fd = -1, rc = 0;

	/* A page of a group the cursor holds (a stream reads its pages in turn):
	 * found by the groups' own ids, without the store's lock or index.
	 * The slot of the last page first, from the place after it: in order,
	 * the first id compared is the page's. */
	for (uint32_t n = 0; n < CURSOR_SLOTS; n++) {
		uint32_t k = (cur->last + n) % CURSOR_SLOTS, from = n ? 0 : cur->hint;
		struct group_cache *g = &cur->slot[k];

		for (uint32_t j = 0; g->npages && g->page_size == page_size && j < g->npages; j++) {
			uint32_t i = (from + j) % g->npages;

			if (memcmp(g->ids[i], id, PAGE_ID_LEN) == 0) {
				g->used = ++cur->clock;
				cur->last = k;
				cur->hint = i + 1;
				rc = page_ok(db, cur->mac, g, i, quick ? CHECK_RAW : CHECK_ALL);
				if (rc == 0)
					memcpy(buf, g->data + (size_t)i * page_size, page_size);
				return rc;
			}
		}
	}
	/* The index under the store's lock; the group read and decompressed outside it. */
	pthread_mutex_lock(&db->lock);
	for (uint32_t i = 0; i < db->wcount; i++) {
		if (db->wpsize == page_size && memcmp(db->wids[i], id, PAGE_ID_LEN) == 0) {
			memcpy(buf, db->wbuf + (size_t)i * page_size, page_size);
			pthread_mutex_unlock(&db->lock);
			return 0;
		}
	}
	e = pages_db_find(db, id);
	if (!e && db->loading && (c = cursor_chain(db, cur, id, page_size, &slot))) {
		pthread_mutex_unlock(&db->lock);
		goto serve;
	}
	if (!e && !(e = pages_db_find(db, id)))
		e = find_late(db, id, &rc);
	if (e) {
		pack = e->pack;
		off = e->blob_off;
		slot = e->slot;
		fd = db->packs[pack].fd; /* open until the store's reader closes */
		loading = !db->packs[pack].loaded;
	}
	pthread_mutex_unlock(&db->lock);
	if (fd < 0)
		return rc;
	c = &cur->slot[0];
	/* The group's slot if held (its ids did not name the page: damage), else
	 * an empty one, else the least recently used. */
	for (int k = 0; k < CURSOR_SLOTS; k++) {
		struct group_cache *g = &cur->slot[k];

		if (g->npages && g->pack == pack && g->blob_off == off) {
			c = g;
			break;
		}
		if (!g->npages || (c->npages && g->used < c->used))
			c = g;
	}
	if (!c->npages || c->pack != pack || c->blob_off != off) {
		rc = group_read_with(fd, db->s->seal, off, cur->dctx, cur->sc, c, &cur->stored,
		                     &cur->stored_cap, false);
		c->pack = pack;
		if (rc == 0 && loading) {
			/* Where cursor_chain goes on from while the pack loads. */
			pthread_mutex_lock(&db->lock);
			if (c->blob_end > db->packs[pack].read_end)
				db->packs[pack].read_end = c->blob_end;
			pthread_mutex_unlock(&db->lock);
		}
	}
serve:
	c->used = ++cur->clock;
	cur->last = (uint32_t)(c - cur->slot);
	cur->hint = slot + 1;
	if (rc == 0 && (c->page_size != page_size || slot >= c->npages ||
	                memcmp(c->ids[slot], id, PAGE_ID_LEN) != 0))
		rc = -EBADMSG;
	if (rc == 0)
		rc = page_ok(db, cur->mac, c, slot, quick ? CHECK_RAW : CHECK_ALL);
	if (rc == 0)
		memcpy(buf, c->data + (size_t)slot * page_size, page_size);
	return rc;
}

int pages_db_check_entry(struct pages_db *db, size_t i)
{
	struct pack_entry e;
	struct cache_slot *s;
	struct group_cache *c;
	int rc;

	pthread_mutex_lock(&db->lock);
	e = db->entries[i]; /* a copy: the lock is let go while the group is read */
	/* The group once (cached), then this one page against its own id. */
	rc = group_get(db, e.pack, e.blob_off, false, &s);
	c = &s->g;
	if (rc == 0 && (e.slot >= c->npages || memcmp(c->ids[e.slot], e.id, PAGE_ID_LEN)))
		rc = -EBADMSG;
	if (rc == 0)
		rc = page_ok(db, db->rmac, c, e.slot, CHECK_ALL);
	pthread_mutex_unlock(&db->lock);
	return rc;
}

/*
 * A group blob as written: header, ids, payload, one buffer, so that it is
 * sealed in place and written with one write. In an encrypted store each
 * part has room for its seal's header and nonce before its plaintext and
 * for its tag after it (seal.h): sealing it writes no byte outside the part.
 */
struct group_out {
	uint8_t *buf;
	size_t cap;         /* bytes allocated at buf, kept from group to group */
	size_t len;         /* the blob's length */
	uint32_t ids_plain; /* the parts' plaintext lengths */
	uint32_t pay_plain;
	int fd; /* the pack it goes to */
};

/* Where a sealed part's plaintext starts in it (seal.h: header, nonce, ciphertext, tag). */
#define PART_PRE (SEAL_HDR_LEN + SEAL_NONCE_LEN)

/*
 * Makes the blob of a group of count pages (ids, bytes) in o, compressed,
 * its parts' plaintext in place for sealing when k is given: 0 or a
 * negative errno.
 */
static int group_make(ZSTD_CCtx *cctx, const struct bri_seal *k, uint32_t page_size, uint32_t count,
                      const uint8_t (*ids)[PAGE_ID_LEN], const uint8_t *pages, struct group_out *o)
{
	size_t raw_len = (size_t)count * page_size, bound = ZSTD_compressBound(raw_len), n;
	size_t ovh = k ? SEAL_OVERHEAD : 0, pre = k ? PART_PRE : 0;
	size_t ids_plain = (size_t)count * PAGE_ID_LEN;
	size_t need = BLOB_HDR + ids_plain + ovh + bound + ovh;
	struct blob_hdr h = {.kind = BLOB_GROUP, .codec = CODEC_ZSTD, .seal = SEAL_NONE};
	uint8_t *z;

	if (ZSTD_isError(bound))
		return -EIO;
	if (o->cap < need) {
		uint8_t *b = realloc(o->buf, need);

		if (!b)
			return -ENOMEM;
		o->buf = b;
		o->cap = need;
	}
	memcpy(o->buf + BLOB_HDR + pre, ids, ids_plain);
	z = o->buf + BLOB_HDR + ids_plain + ovh + pre;
	n = zcompress(cctx, z, bound, pages, raw_len);
	if (ZSTD_isError(n))
		return -EIO;
	if (n >= raw_len) { /* incompressible: stored raw (bound >= raw_len) */
		h.codec = CODEC_RAW;
		memcpy(z, pages, raw_len);
		n = raw_len;
	}
	h.page_size = page_size;
	h.npages = count;
	h.ids_len = (uint32_t)(ids_plain + ovh);
	h.raw_len = (uint32_t)raw_len;
	h.stored_len = (uint32_t)(n + ovh);
	if (k)
		h.seal = SEAL_AES;
	hdr_encode(&h, o->buf);
	o->ids_plain = (uint32_t)ids_plain;
	o->pay_plain = (uint32_t)n;
	o->len = BLOB_HDR + h.ids_len + h.stored_len;
	return 0;
}

/* part_seal through sc, a cipher context of the caller's for k (NULL: one per call). */
static int part_seal_with(struct seal_ctx *sc, const struct bri_seal *k, const uint8_t hb[BLOB_HDR],
                          const char *what, const uint8_t *in, size_t len, uint8_t *out)
{
	uint8_t ctx[BLOB_HDR + BRI_NAME_MAX + 32];
	size_t n = blob_ctx(hb, what, strlen(what), ctx, sizeof(ctx));

	return sc ? seal_data_ctx(sc, ctx, n, in, len, out) : seal_data(k, ctx, n, in, len, out);
}

/*
 * Seals o's parts in place (after compression: sealed bytes do not
 * compress), each with a fresh nonce, when k is given; then appends the
 * blob to o->fd. Nothing of a part that did not seal is written.
 */
static int group_put(struct seal_ctx *sc, const struct bri_seal *k, struct group_out *o)
{
	if (k) {
		uint8_t *ids = o->buf + BLOB_HDR;
		uint8_t *pay = ids + o->ids_plain + SEAL_OVERHEAD;

		if (part_seal_with(sc, k, o->buf, "ids", ids + PART_PRE, o->ids_plain, ids) < 0 ||
		    part_seal_with(sc, k, o->buf, "pages", pay + PART_PRE, o->pay_plain, pay) < 0)
			return -EIO;
	}
	return write_full(o->fd, o->buf, o->len);
}

/*
 * The pack writer's stage (pack.h, pages_db_write_ahead): the groups made
 * by pages_db_add_at's thread, sealed and written in order by a thread of
 * its own. Measured on the bench's 1 GiB database, a create into a page
 * store: the store worker (pages_write.c) hashed, compressed, sealed and
 * wrote every group, the create's critical path, with the other core
 * mostly idle during the copy; sealing added 0.26 s to it (AES-GCM of the
 * compressed bytes), and the writes' copies into the page cache were
 * 0.2-0.4 s more on both sides.
 */
#define WRITE_STAGE_GROUPS 8

struct write_stage {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* a group handed over, one written, or stop (with lock) */
	pthread_t thread;
	bool running;        /* thread was made (to join) */
	bool stop;           /* the thread exits, the groups it has not taken dropped (lock) */
	int failed;          /* the first failure of a group's sealing or write (lock) */
	uint64_t head, tail; /* handed over, not yet written: [tail, head) (lock) */
	struct group_out out[WRITE_STAGE_GROUPS]; /* group i at out[i % WRITE_STAGE_GROUPS] */
	struct seal_ctx *sc; /* the store's key, keyed once; NULL: no key, or one per part */
	const struct bri_seal *k;
};

static void *write_stage_main(void *arg)
{
	struct write_stage *st = arg;

	pthread_mutex_lock(&st->lock);
	for (;;) {
		struct group_out *o;
		int rc = 0;

		while (st->head == st->tail && !st->stop)
			pthread_cond_wait(&st->cond, &st->lock);
		if (st->stop)
			break;
		o = &st->out[st->tail % WRITE_STAGE_GROUPS];
		if (!st->failed) { /* after a failure the pack is not published: nothing more */
			pthread_mutex_unlock(&st->lock);
			if (!st->tail) /* for tests: its first group made, not yet in the pack */
				bri_testpoint("pages-stage-first-group");
			rc = group_put(st->sc, st->k, o);
			pthread_mutex_lock(&st->lock);
		}
		if (rc < 0 && !st->failed)
			st->failed = rc;
		st->tail++;
		pthread_cond_broadcast(&st->cond);
	}
	pthread_mutex_unlock(&st->lock);
	return NULL;
}

/* db's stage, made at its first group (its thread if db->write_ahead): NULL when out of memory. */
static struct write_stage *write_stage_get(struct pages_db *db)
{
	struct write_stage *st = db->wst;

	if (st)
		return st;
	st = calloc(1, sizeof(*st));
	if (!st)
		return NULL;
	st->k = db->s->seal;
	st->sc = st->k ? seal_ctx_new(st->k) : NULL; /* NULL: a context per part */
	pthread_mutex_init(&st->lock, NULL);
	pthread_cond_init(&st->cond, NULL); /* never waited on with a deadline */
	if (db->write_ahead && pthread_create(&st->thread, NULL, write_stage_main, st) == 0)
		st->running = true;
	db->wst = st;
	return st;
}

/* Stops db's stage (the groups not written are dropped) and frees it. */
static void write_stage_free(struct pages_db *db)
{
	struct write_stage *st = db->wst;

	if (!st)
		return;
	if (st->running) {
		pthread_mutex_lock(&st->lock);
		st->stop = true;
		pthread_cond_broadcast(&st->cond);
		pthread_mutex_unlock(&st->lock);
		pthread_join(st->thread, NULL);
	}
	for (int i = 0; i < WRITE_STAGE_GROUPS; i++)
		free(st->out[i].buf);
	seal_ctx_free(st->sc);
	pthread_cond_destroy(&st->cond);
	pthread_mutex_destroy(&st->lock);
	free(st);
	db->wst = NULL;
}

void pages_db_write_ahead(struct pages_db *db)
{
	db->write_ahead = true;
}

/* Waits until st has written every group handed to it: 0 or its first failure. */
static int write_stage_wait(struct write_stage *st)
{
	int rc;

	if (!st || !st->running)
		return 0;
	pthread_mutex_lock(&st->lock);
	if (st->head != st->tail && !st->failed) {
		/* For tests: a reader waits for groups made, not yet written. */
		pthread_mutex_unlock(&st->lock);
		bri_testpoint("pages-wait-written");
		pthread_mutex_lock(&st->lock);
	}
	while (st->head != st->tail && !st->failed)
		pthread_cond_wait(&st->cond, &st->lock);
	rc = st->failed;
	pthread_mutex_unlock(&st->lock);
	return rc;
}

int pages_db_wait_written(struct pages_db *db, struct bri_err *err)
{
	int rc = write_stage_wait(db->wst);

	if (rc < 0)
		return bri_err_set(err, rc, "cannot write a pack in %s: %s", db->s->dir,
		                   strerror(-rc));
	return 0;
}

/*
 * Writes out the pending group into the pack being written: made here, then
 * sealed and written by the stage's thread, or here when it has none.
 * Caller holds the lock.
 */
static int flush_group(struct pages_db *db)
{
	struct write_stage *st;
	struct group_out *o;
	uint64_t off = db->woff;
	int rc = 0;

	if (!db->wcount)
		return 0;
	if (!db->cctx)
		db->cctx = zcctx_new(); /* NULL: one per group */
	if (!(st = write_stage_get(db)))
		return -ENOMEM;
	o = &st->out[0];
	if (st->running) {
		/* A free slot (at most WRITE_STAGE_GROUPS groups wait), or the stage's failure. */
		pthread_mutex_lock(&st->lock);
		while (st->head - st->tail == WRITE_STAGE_GROUPS && !st->failed)
			pthread_cond_wait(&st->cond, &st->lock);
		rc = st->failed;
		o = &st->out[st->head % WRITE_STAGE_GROUPS]; /* the stage's thread leaves it be */
		pthread_mutex_unlock(&st->lock);
	}
	if (rc == 0)
		rc = group_make(db->cctx, db->s->seal, db->wpsize, db->wcount,
		                (const uint8_t(*)[PAGE_ID_LEN])db->wids, db->wbuf, o);
	if (rc < 0)
		return rc;
	o->fd = db->wfd;
	db->woff += o->len;
	db->stored_new += o->len;
	toc_build_add(db->wtoc, off, (uint32_t)o->len, db->wpsize, db->wcount,
	              (const uint8_t *)db->wids);
	if (st->running) {
		pthread_mutex_lock(&st->lock);
		st->head++;
		pthread_cond_broadcast(&st->cond);
		pthread_mutex_unlock(&st->lock);
	} else {
		rc = group_put(st->sc, st->k, o);
		if (rc < 0)
			return rc;
	}
	for (uint32_t i = 0; i < db->wcount; i++) {
		rc = index_add(db, db->wids[i], db->wpack, i, off);
		if (rc < 0)
			return rc;
	}
	db->wcount = 0;
	return 0;
}

/*
 * Appends the pack's table of contents (pack_toc.c) after its last group:
 * before it is fsynced and published, so that it is atomic with its pack.
 * A pack whose TOC could not be made (out of memory, or past TOC_MAX) is
 * published without one, and scanned by its readers; a failed write fails
 * the pack, as a group's would.
 */
static int write_toc(struct pages_db *db)
{
	uint8_t *t;
	size_t len;
	int rc;

	if (!db->wtoc || db->wtoc->dropped) {
		bri_log(BRI_LOG_WARN,
		        "a new pack of %s has no table of contents (too large, or "
		        "out of memory): its readers scan its groups",
		        db->s->dir);
		return 0;
	}
	rc = toc_encode(db->wtoc, db->s->seal, db->woff, &t, &len);
	if (rc < 0)
		return rc == -EINVAL ? 0 : rc;
	rc = write_full(db->wfd, t, len);
	free(t);
	if (rc < 0)
		return rc;
	db->woff += len;
	db->stored_new += len;
	return 0;
}

static int start_pack(struct pages_db *db, struct bri_err *err)
{
	int fd, rc;
	uint8_t head[PACK_HDR] = PACK_MAGIC;

	if (!db->wbuf) {
		db->wbuf = malloc((size_t)PACK_GROUP_PAGES * PAGE_SIZE_MAX);
		if (!db->wbuf)
			return bri_err_set(err, -ENOMEM, "out of memory");
	}
	if (!db->wtoc) {
		db->wtoc = calloc(1, sizeof(*db->wtoc));
		if (!db->wtoc)
			return bri_err_set(err, -ENOMEM, "out of memory");
	}
	toc_build_free(db->wtoc);
	db->wtoc->dropped = false;
	fd = bri_store_tmpfile(db->s, "pages", "pack", &db->wtmp, err);
	if (fd < 0)
		return fd;
	rc = add_pack(db, fd, db->wtmp, &db->wpack);
	if (rc == 0)
		rc = write_full(fd, head, PACK_HDR);
	if (rc < 0) {
		close(fd);
		bri_store_unlink(db->s, db->wtmp);
		free(db->wtmp);
		db->wtmp = NULL;
		return bri_err_set(err, rc, "cannot write a pack in %s: %s", db->s->dir,
		                   strerror(-rc));
	}
	db->wfd = fd;
	db->woff = PACK_HDR;
	return 0;
}

int pages_db_add(struct pages_db *db, const void *page, uint32_t page_size, uint8_t id[PAGE_ID_LEN],
                 struct bri_err *err)
{
	return pages_db_add_at(db, page, page_size, UINT64_MAX, id, err);
}

int pages_db_add_at(struct pages_db *db, const void *page, uint32_t page_size, uint64_t pgno,
                    uint8_t id[PAGE_ID_LEN], struct bri_err *err)
{
	int rc = 0;

	page_id_with(db, db->wmac, page, page_size, id);
	pthread_mutex_lock(&db->lock);
	if (pages_db_find(db, id))
		goto out_unlock;
	for (uint32_t i = 0; i < db->wcount; i++)
		if (db->wpsize == page_size && memcmp(db->wids[i], id, PAGE_ID_LEN) == 0)
			goto out_unlock;
	if (db->wfd < 0) {
		rc = start_pack(db, err);
		if (rc < 0)
			goto out_unlock;
	}
	/*
	 * A group holds neighbours: a new page that does not follow the last one
	 * in its file starts a group of its own. A backup's scattered changes
	 * then cost a reader one page's decompression each, not a group's.
	 */
	if (db->wcount && (db->wpsize != page_size || db->wcount == PACK_GROUP_PAGES ||
	                   (pgno != UINT64_MAX && pgno != db->wnext))) {
		rc = flush_group(db);
		if (rc < 0) {
			bri_err_set(err, rc, "cannot write a pack in %s: %s", db->s->dir,
			            strerror(-rc));
			goto out_unlock;
		}
	}
	db->wpsize = page_size;
	db->wnext = pgno + 1;
	memcpy(db->wids[db->wcount], id, PAGE_ID_LEN);
	memcpy(db->wbuf + (size_t)db->wcount * page_size, page, page_size);
	db->wcount++;
out_unlock:
	pthread_mutex_unlock(&db->lock);
	return rc;
}

int pages_db_flush(struct pages_db *db, struct bri_err *err)
{
	char name[64];
	uint8_t tag[8];
	int rc;

	if (db->wfd < 0)
		return 0;
	pthread_mutex_lock(&db->lock);
	rc = flush_group(db);
	pthread_mutex_unlock(&db->lock);
	if (rc == 0) /* every group in the pack before its table of contents */
		rc = write_stage_wait(db->wst);
	if (rc == 0)
		rc = write_toc(db);
	if (rc < 0)
		return bri_err_set(err, rc, "cannot write a pack in %s: %s", db->s->dir,
		                   strerror(-rc));
	if (getrandom(tag, sizeof(tag), 0) != (ssize_t)sizeof(tag))
		return bri_err_set(err, -EIO, "no random bytes for a pack's name");
	snprintf(name, sizeof(name), PACK_PREFIX "%02x%02x%02x%02x%02x%02x%02x%02x" PACK_SUFFIX,
	         tag[0], tag[1], tag[2], tag[3], tag[4], tag[5], tag[6], tag[7]);
	/* fsync, rename without replacing, fsync the folder: then manifests may name its pages. */
	rc = bri_store_publish(db->s, db->wfd, db->wtmp, name, true, err);
	db->wfd = -1; /* its descriptor stays among the packs, for reading */
	toc_build_free(db->wtoc);
	free(db->wtmp);
	db->wtmp = NULL;
	return rc;
}

/* ---- manifests ---- */

int manifest_encode(const struct bri_seal *k, const char *name, const struct manifest *m,
                    void **out, size_t *len)
{
	size_t raw_len = 12 + (size_t)m->page_count * PAGE_ID_LEN,
	       cap = ZSTD_compressBound(raw_len);
	struct blob_hdr h = {.kind = BLOB_MANIFEST, .codec = CODEC_ZSTD, .seal = SEAL_NONE};
	uint8_t *raw = malloc(raw_len), *blob = malloc(BLOB_HDR + cap + SEAL_OVERHEAD);
	uint64_t count = htole64(m->page_count);
	char file[BRI_NAME_MAX + 16];
	size_t n;
	int rc;

	if (!raw || !blob) {
		free(raw);
		free(blob);
		return -ENOMEM;
	}
	put32(raw, m->page_size);
	memcpy(raw + 4, &count, 8);
	memcpy(raw + 12, m->ids, (size_t)m->page_count * PAGE_ID_LEN);
	n = zcompress(NULL, blob + BLOB_HDR, cap, raw, raw_len);
	free(raw);
	if (ZSTD_isError(n)) {
		free(blob);
		return -EIO;
	}
	h.page_size = m->page_size;
	h.raw_len = (uint32_t)raw_len;
	h.stored_len = (uint32_t)n;
	if (k) {
		uint8_t *z = malloc(n);

		h.seal = SEAL_AES;
		h.stored_len += SEAL_OVERHEAD;
		hdr_encode(&h, blob);
		snprintf(file, sizeof(file), "%s" MANIFEST_SUFFIX, name);
		rc = z ? 0 : -ENOMEM;
		if (rc == 0) {
			memcpy(z, blob + BLOB_HDR, n);
			rc = part_seal(k, blob, file, z, n, blob + BLOB_HDR);
		}
		free(z);
		if (rc < 0) {
			free(blob);
			return rc;
		}
	}
	hdr_encode(&h, blob);
	*out = blob;
	*len = BLOB_HDR + h.stored_len;
	return 0;
}

int manifest_decode(const struct bri_seal *k, const char *name, const void *data, size_t len,
                    struct manifest *m)
{
	char file[BRI_NAME_MAX + 16];
	struct blob_hdr h;
	uint8_t *raw, *opened = NULL;
	const uint8_t *payload = (const uint8_t *)data + BLOB_HDR;
	uint64_t count;
	int rc;

	memset(m, 0, sizeof(*m));
	if (len < BLOB_HDR)
		return -EBADMSG;
	rc = hdr_decode(data, &h);
	if (rc == 0)
		rc = hdr_check_seal(&h, k);
	if (rc < 0)
		return rc;
	if (h.kind != BLOB_MANIFEST || h.stored_len != len - BLOB_HDR || h.raw_len < 12 ||
	    (h.raw_len - 12) % PAGE_ID_LEN != 0 ||
	    (h.raw_len - 12) / PAGE_ID_LEN > MANIFEST_PAGES_MAX)
		return -EBADMSG;
	if (k) {
		/* The tag first: nothing of a damaged or moved manifest is decoded. */
		snprintf(file, sizeof(file), "%s" MANIFEST_SUFFIX, name);
		opened = malloc(h.stored_len - SEAL_OVERHEAD + 1);
		if (!opened)
			return -ENOMEM;
		if (part_open(k, data, file, payload, h.stored_len, opened) < 0) {
			free(opened);
			return -EBADMSG;
		}
		payload = opened;
		h.stored_len -= SEAL_OVERHEAD;
	}
	/* A damaged header or frame is refused before its size is allocated. */
	if (h.codec == CODEC_ZSTD && ZSTD_getFrameContentSize(payload, h.stored_len) != h.raw_len) {
		free(opened);
		return -EBADMSG;
	}
	raw = malloc(h.raw_len);
	if (!raw) {
		free(opened);
		return -ENOMEM;
	}
	if (h.codec == CODEC_ZSTD) {
		size_t n = ZSTD_decompress(raw, h.raw_len, payload, h.stored_len);

		if (ZSTD_isError(n) || n != h.raw_len) {
			free(opened);
			free(raw);
			return -EBADMSG;
		}
	} else {
		memcpy(raw, payload, h.raw_len);
	}
	free(opened);
	m->page_size = get32(raw);
	memcpy(&count, raw + 4, 8);
	m->page_count = le64toh(count);
	if (m->page_count != (h.raw_len - 12) / PAGE_ID_LEN || m->page_size != h.page_size ||
	    (m->page_count && (m->page_size < PAGE_SIZE_MIN || m->page_size > PAGE_SIZE_MAX ||
	                       (m->page_size & (m->page_size - 1))))) {
		free(raw);
		return -EBADMSG;
	}
	m->ids = malloc(m->page_count * PAGE_ID_LEN + 1);
	if (!m->ids) {
		free(raw);
		return -ENOMEM;
	}
	memcpy(m->ids, raw + 12, m->page_count * PAGE_ID_LEN);
	free(raw);
	return 0;
}

int manifest_logical_size(const struct bri_store *s, const char *name, uint64_t *size)
{
	char file[BRI_NAME_MAX + 16];
	uint8_t hb[BLOB_HDR];
	struct blob_hdr h;
	ssize_t n;
	int fd, rc;

	snprintf(file, sizeof(file), "%s" MANIFEST_SUFFIX, name);
	fd = openat(s->dirfd, file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	n = pread_full(fd, hb, BLOB_HDR, 0);
	close(fd);
	if (n < 0)
		return (int)n;
	if (n != BLOB_HDR)
		return -EBADMSG;
	rc = hdr_decode(hb, &h);
	if (rc < 0)
		return rc;
	if (h.kind != BLOB_MANIFEST || h.raw_len < 12 || (h.raw_len - 12) % PAGE_ID_LEN)
		return -EBADMSG;
	*size = (uint64_t)(h.raw_len - 12) / PAGE_ID_LEN * h.page_size;
	return 0;
}

int manifest_read(const struct bri_store *s, const char *name, struct manifest *m)
{
	char file[BRI_NAME_MAX + 16];
	char *data;
	size_t len;
	int rc;

	snprintf(file, sizeof(file), "%s" MANIFEST_SUFFIX, name);
	rc = bri_store_read_file(s, file, 12 + (size_t)MANIFEST_PAGES_MAX / 64, &data, &len);
	if (rc < 0)
		return rc;
	rc = manifest_decode(s->seal, name, data, len, m);
	free(data);
	return rc;
}

/* ---- garbage ---- */

/* The ids every manifest of the store uses: an open-addressed set. */
struct id_set {
	uint8_t (*ids)[PAGE_ID_LEN];
	bool *used;
	size_t size, n;
};

static int set_add(struct id_set *set, const uint8_t *id)
{
	size_t j;

	if ((set->n + 1) * 2 > set->size) {
		struct id_set bigger = {.size = set->size ? set->size * 2 : 4096};

		bigger.ids = malloc(bigger.size * PAGE_ID_LEN);
		bigger.used = calloc(bigger.size, 1);
		if (!bigger.ids || !bigger.used) {
			free(bigger.ids);
			free(bigger.used);
			return -ENOMEM;
		}
		for (size_t i = 0; i < set->size; i++)
			if (set->used[i])
				set_add(&bigger, set->ids[i]);
		free(set->ids);
		free(set->used);
		*set = bigger;
	}
	for (j = id_hash(id) & (set->size - 1); set->used[j]; j = (j + 1) & (set->size - 1))
		if (memcmp(set->ids[j], id, PAGE_ID_LEN) == 0)
			return 0;
	memcpy(set->ids[j], id, PAGE_ID_LEN);
	set->used[j] = true;
	set->n++;
	return 0;
}

static bool set_has(const struct id_set *set, const uint8_t *id)
{
	if (!set->size)
		return false;
	for (size_t j = id_hash(id) & (set->size - 1); set->used[j]; j = (j + 1) & (set->size - 1))
		if (memcmp(set->ids[j], id, PAGE_ID_LEN) == 0)
			return true;
	return false;
}

struct gc_arg {
	struct bri_store *s;
	struct id_set live;
	uint64_t logical;
	/* per pack */
	uint64_t total, used;
	struct pages_db *db; /* for rewriting */
	uint32_t pack;
};

static int manifest_live(void *arg, const char *name, const struct stat *st)
{
	struct gc_arg *g = arg;
	struct manifest m;
	int rc;

	(void)st;
	rc = manifest_read(g->s, name, &m);
	if (rc < 0)
		return rc == -ENOENT ? 0 : rc;
	g->logical += m.page_count * m.page_size;
	for (uint64_t i = 0; i < m.page_count && rc == 0; i++)
		if (!page_id_is_hole(m.ids + i * PAGE_ID_LEN))
			rc = set_add(&g->live, m.ids + i * PAGE_ID_LEN);
	free(m.ids);
	return rc;
}

static int count_group(void *arg, const struct blob_hdr *h, const uint8_t *ids, uint64_t off)
{
	struct gc_arg *g = arg;

	(void)off;
	for (uint32_t i = 0; i < h->npages; i++) {
		g->total++;
		if (set_has(&g->live, ids + i * PAGE_ID_LEN))
			g->used++;
	}
	return 0;
}

/* Copies the used pages of one group into the new pack (db's writer). */
static int copy_group(void *arg, const struct blob_hdr *h, const uint8_t *ids, uint64_t off)
{
	struct gc_arg *g = arg;
	struct cache_slot *s;
	struct group_cache *c;
	uint8_t id[PAGE_ID_LEN];
	int rc;

	for (uint32_t i = 0; i < h->npages; i++)
		if (set_has(&g->live, ids + i * PAGE_ID_LEN))
			break;
		else if (i + 1 == h->npages)
			return 0;
	pthread_mutex_lock(&g->db->lock);
	rc = group_get(g->db, g->pack, off, false, &s);
	c = &s->g;
	/* A damaged page that is used stops the rewrite: verify and scrub report it. */
	for (uint32_t i = 0; i < h->npages && rc == 0; i++)
		if (set_has(&g->live, ids + i * PAGE_ID_LEN))
			rc = page_ok(g->db, g->db->rmac, c, i, CHECK_ALL);
	if (rc == 0)
		s->pins++; /* pages_db_add takes the lock: c stays while it copies */
	pthread_mutex_unlock(&g->db->lock);
	if (rc < 0)
		return rc;
	for (uint32_t i = 0; i < h->npages && rc == 0; i++)
		if (set_has(&g->live, ids + i * PAGE_ID_LEN))
			rc = pages_db_add(g->db, c->data + (size_t)i * c->page_size, c->page_size,
			                  id, NULL);
	pthread_mutex_lock(&g->db->lock);
	cache_unpin(g->db, s);
	pthread_mutex_unlock(&g->db->lock);
	return rc;
}

static int gc_pack(void *arg, const char *name)
{
	struct gc_arg *g = arg;
	int fd = openat(g->s->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), rc;

	if (fd < 0)
		return 0;
	g->total = g->used = 0;
	rc = pack_scan(fd, g->s->seal, count_group, g, NULL);
	if (rc < 0 || g->total == 0 || g->used * 2 > g->total) {
		/* Damaged packs are left for verify to report; mostly used packs stay as they are.
		 */
		close(fd);
		return 0;
	}
	if (g->used > 0) {
		/* The used pages into a fresh pack, published before the old one goes. */
		struct pages_db *db;

		rc = pages_db_open(g->s, &db, NULL);
		if (rc < 0) {
			close(fd);
			return rc;
		}
		/* A fresh db knows every pack, this one too: forget its pages so they are copied.
		 */
		db->nentries = 0;
		memset(db->table, 0, db->table_size * sizeof(*db->table));
		for (size_t i = 0; i < db->npacks; i++)
			if (strcmp(db->packs[i].name, name) == 0)
				g->pack = (uint32_t)i;
		g->db = db;
		rc = pack_scan(db->packs[g->pack].fd, g->s->seal, copy_group, g, NULL);
		if (rc == 0)
			rc = pages_db_flush(db, NULL);
		pages_db_close(db);
		g->db = NULL;
		if (rc < 0) {
			close(fd);
			return rc;
		}
	}
	close(fd);
	if (bri_store_unlink(g->s, name) == 0)
		bri_log(BRI_LOG_INFO, "%s %s/%s (%llu of %llu pages in use)",
		        g->used ? "rewrote" : "removed", g->s->dir, name,
		        (unsigned long long)g->used, (unsigned long long)g->total);
	return 0;
}

int pages_gc(struct bri_store *s, struct bri_err *err)
{
	struct gc_arg g = {.s = s};
	int rc;

	/* Garbage only from committed manifests: a backup being written holds the lock. */
	rc = bri_store_list(s, manifest_live, &g, err);
	if (rc == 0)
		rc = each_pack(s, gc_pack, &g);
	if (rc == 0)
		rc = bri_store_sync(s, err);
	else
		bri_err_set(err, rc, "cannot free unused pages in %s: %s", s->dir, strerror(-rc));
	free(g.live.ids);
	free(g.live.used);
	return rc;
}

struct usage_arg {
	const struct bri_store *s;
	uint64_t stored;
};

static int pack_size(void *arg, const char *name)
{
	struct usage_arg *u = arg;
	struct stat st;

	if (fstatat(u->s->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		u->stored += (uint64_t)st.st_size;
	return 0;
}

struct logical_arg {
	const struct bri_store *s;
	uint64_t logical, manifests;
};

static int logical_of(void *arg, const char *name, const struct stat *st)
{
	struct logical_arg *l = arg;
	char file[BRI_NAME_MAX + 16];
	struct stat mst;

	l->logical += (uint64_t)st->st_size;
	snprintf(file, sizeof(file), "%s" MANIFEST_SUFFIX, name);
	if (fstatat(l->s->dirfd, file, &mst, AT_SYMLINK_NOFOLLOW) == 0)
		l->manifests += (uint64_t)mst.st_size;
	return 0;
}

int pages_usage(struct bri_store *s, uint64_t *logical, uint64_t *stored, struct bri_err *err)
{
	struct usage_arg u = {.s = s};
	struct logical_arg l = {.s = s};
	int rc;

	rc = bri_store_list(s, logical_of, &l, err);
	if (rc == 0)
		rc = each_pack(s, pack_size, &u);
	*logical = l.logical;
	*stored = u.stored + l.manifests; /* packs and manifests */
	return rc;
}

static int list_pack(void *arg, const char *name)
{
	return name_list_add(arg, name);
}

int pages_remove_packs(struct bri_store *s, struct bri_err *err)
{
	struct name_list packs = {0};
	int rc = each_pack(s, list_pack, &packs);

	/* Listed first, removed after: the folder does not change while it is read. */
	for (size_t i = 0; rc == 0 && i < packs.n; i++)
		rc = bri_store_unlink(s, packs.v[i]);
	name_list_free(&packs);

	if (rc < 0)
		return bri_err_set(err, rc, "cannot remove the packs of %s: %s", s->dir,
		                   strerror(-rc));
	return 0;
}
