/*
 * Internal to the packs (pack.c, pack_toc.c, scrub.c): the blob framing
 * both pack.c and the table of contents use, and a pack's table of
 * contents (TOC): where each of its groups is, its page size and count and
 * its page ids, so that a reader indexes a pack with one or two preads at
 * its end instead of reading every group's header and ids (pack_toc.c says
 * why it is a trailer and how it is checked). Not part of the contract:
 * names without the bri_ prefix.
 */
#ifndef BRI_PACK_TOC_H
#define BRI_PACK_TOC_H

#include <endian.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "pack.h"
#include "seal.h"

/* The blob header (pack.c's top comment), its kinds, codecs and sealings. */
#define BLOB_HDR      32
#define BLOB_GROUP    1
#define BLOB_MANIFEST 2
#define BLOB_TOC      3
#define CODEC_RAW     0
#define CODEC_ZSTD    1
#define SEAL_NONE     0
#define SEAL_AES      1
#define PACK_MAGIC    "BRIPACK1"
#define PACK_HDR      16

/* The little-endian fields of headers, tables and footers. */
static inline void put32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

static inline uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return le32toh(v);
}

static inline void put64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

static inline uint64_t get64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return le64toh(v);
}

struct blob_hdr {
	uint8_t kind, codec, seal;
	uint32_t page_size, npages, ids_len, raw_len, stored_len;
};

/* pack.c: the 32-byte header's bytes and back (-EBADMSG: not a header this code wrote). */
void hdr_encode(const struct blob_hdr *h, uint8_t out[BLOB_HDR]);
int hdr_decode(const uint8_t in[BLOB_HDR], struct blob_hdr *h);
/* pack.c: a blob's sealing must be the store's (-EBADMSG otherwise). */
int hdr_check_seal(const struct blob_hdr *h, const struct bri_seal *k);
/* pack.c: a blob's sealed part, bound to its header and to what it is ("ids", "toc"). */
int part_open(const struct bri_seal *k, const uint8_t hb[BLOB_HDR], const char *what,
              const uint8_t *in, size_t len, uint8_t *out);
int part_seal(const struct bri_seal *k, const uint8_t hb[BLOB_HDR], const char *what,
              const uint8_t *in, size_t len, uint8_t *out);
ssize_t pread_full(int fd, void *buf, size_t len, uint64_t off);
int write_full(int fd, const void *buf, size_t len);
/*
 * pack.c: calls fn for each group blob of the pack fd (header and ids, read
 * from the group itself); stops at the end or at the table of contents
 * (0; its offset is put in *toc_at when toc_at is given, which is left as
 * it was when the pack has none), or with -EBADMSG at a damaged frame.
 */
int pack_scan(int fd, const struct bri_seal *k,
              int (*fn)(void *arg, const struct blob_hdr *h, const uint8_t *ids, uint64_t off),
              void *arg, uint64_t *toc_at);

/* The footer: magic, then the TOC blob's offset (little-endian 64 bits). */
#define TOC_FOOTER 16
#define TOC_MAGIC  "BRItoc01"
/* A record: group offset (64 bits), blob length, page size, page count (32 bits each). */
#define TOC_REC 20
/* The TOC's plaintext at most (a pack of 10 GiB of 4 KiB pages: about 90 MB); a
 * larger pack is written without one and scanned. */
#define TOC_MAX (256u << 20)
/* The pack's last bytes read at once to find the footer and, mostly, the TOC. */
#define TOC_TAIL (64u << 10)

/* A pack's TOC being written (pack.c's writer): the records and ids so far. */
struct toc_build {
	uint8_t *buf;
	size_t len, cap;
	uint32_t groups;
	bool dropped; /* out of memory or past TOC_MAX: the pack gets no TOC */
};

/* Adds the group at off (len bytes of blob, npages ids): never fails (see dropped). */
void toc_build_add(struct toc_build *b, uint64_t off, uint32_t len, uint32_t page_size,
                   uint32_t npages, const uint8_t *ids);
void toc_build_free(struct toc_build *b);
/*
 * The trailer of a pack whose groups end at off: the TOC blob (sealed with
 * k when given) and the footer, *len bytes malloc'd at *out. -EINVAL: no
 * TOC to write (dropped, or no group).
 */
int toc_encode(const struct toc_build *b, const struct bri_seal *k, uint64_t off, uint8_t **out,
               size_t *len);

/* A group as the TOC has it. */
struct toc_group {
	uint64_t off;
	uint32_t len, page_size, npages;
	const uint8_t *ids; /* npages ids, into pack_toc.buf */
};

/* A pack's TOC, read and checked. */
struct pack_toc {
	struct toc_group *g;
	size_t n;
	uint64_t off; /* where the TOC blob starts: where the groups end */
	uint8_t *buf; /* the opened plaintext, when it was copied (sealed) */
	uint8_t *mem; /* the bytes read, when the plaintext is read where it is (clear) */
};

/*
 * Decodes the TOC blob at off of a pack of size bytes: blob is its bytes up
 * to the footer (size - off - TOC_FOOTER of them). 0, or -EBADMSG with *why
 * (a static string) saying what does not hold.
 */
int toc_decode(const struct bri_seal *k, const uint8_t *blob, size_t len, uint64_t off,
               uint64_t size, struct pack_toc *t, const char **why);
/*
 * Reads the TOC of the pack fd (one pread of its last TOC_TAIL bytes, a
 * second one when the TOC is larger): 0; -ENOENT when the pack ends without
 * a footer (written before packs had one); -EBADMSG with *why when it is
 * damaged; another negative errno.
 */
int toc_read(int fd, const struct bri_seal *k, struct pack_toc *t, const char **why);
void toc_free(struct pack_toc *t);
/*
 * For scrub: whether the TOC of the pack fd agrees with its groups, each
 * group's own header and ids read at the place the TOC gives. 0: it agrees,
 * or the pack has none (and no TOC blob either). -EBADMSG with *why and *at
 * (the offset of the first group that disagrees, or of the TOC): damaged.
 * Another negative errno: it could not be read.
 */
int toc_check(int fd, const struct bri_seal *k, const char **why, uint64_t *at);

#endif
