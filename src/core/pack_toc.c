/*
 * A pack's table of contents (pack_toc.h): for each group its offset, blob
 * length, page size, page count and page ids, in one blob, so that a
 * reader's index (pack.c, load_one) takes a pack's entries from one or two
 * preads at its end instead of reading every group's header and ids one
 * after the other (cold, a wait on the disk per group; sealed, one AES-GCM
 * open per group).
 *
 * Where: a trailer inside the pack, written after its last group and
 * before the pack is fsynced and renamed into place. Packs are immutable
 * and published atomically, so the TOC is atomic with its pack: a pack is
 * never seen without the TOC it was written with, nothing can get out of
 * step, and the folder's other users (rsync, offsite, remove, gc) see the
 * same files as before. A separate file would need its own publication,
 * removal and replication. Layout: the groups, then a blob of kind
 * BLOB_TOC (the 32-byte blob header: codec raw, page size 0, page count
 * the number of groups, no ids, raw length the plaintext's, stored length
 * plus SEAL_OVERHEAD when sealed), then a footer of TOC_FOOTER bytes:
 * TOC_MAGIC and the TOC blob's offset. A pack written before TOCs ends in a
 * group's payload: no footer, and it is scanned as before.
 *
 * The plaintext: one record per group (TOC_REC bytes: offset, blob length,
 * page size, page count) followed by its ids, then a SHA-256 of the blob
 * header and the records. In an encrypted store it is sealed (seal.h) as
 * the groups' ids are, the header bound as additional data with "toc". A
 * store without a key reads only unsealed TOCs, one with a key only sealed
 * ones.
 *
 * Checked before anything of it is used: the footer's offset must lie in
 * the pack and point at a TOC blob header whose blob ends exactly at the
 * footer; the tag (sealed) and the digest; the records must tile the pack
 * exactly, the first group at the pack header's end, each next one where
 * the last ended, the last ending at the TOC; page counts and sizes as a
 * group header allows. A TOC that fails is not used (the caller scans the
 * groups and says so in the log). A TOC is trusted for where the pages
 * are, never for what they are: a read still checks the group's own ids
 * and bytes, so a TOC that passed its checks and lies (only someone who
 * rewrites the pack in the clear can make one) fails reads, never serves
 * wrong bytes; scrub compares every TOC with its groups (toc_check).
 */
#include "pack_toc.h"

#include <endian.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TOC_DIGEST 32

void toc_build_add(struct toc_build *b, uint64_t off, uint32_t len, uint32_t page_size,
                   uint32_t npages, const uint8_t *ids)
{
	size_t need = TOC_REC + (size_t)npages * PAGE_ID_LEN;

	if (b->dropped)
		return;
	if (b->len + need + TOC_DIGEST > TOC_MAX) {
		toc_build_free(b);
		b->dropped = true;
		return;
	}
	if (b->len + need > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 4096;
		uint8_t *p;

		while (cap < b->len + need)
			cap *= 2;
		p = realloc(b->buf, cap);
		if (!p) {
			toc_build_free(b);
			b->dropped = true;
			return;
		}
		b->buf = p;
		b->cap = cap;
	}
	put64(b->buf + b->len, off);
	put32(b->buf + b->len + 8, len);
	put32(b->buf + b->len + 12, page_size);
	put32(b->buf + b->len + 16, npages);
	memcpy(b->buf + b->len + TOC_REC, ids, (size_t)npages * PAGE_ID_LEN);
	b->len += need;
	b->groups++;
}

void toc_build_free(struct toc_build *b)
{
	free(b->buf);
	b->buf = NULL;
	b->len = b->cap = 0;
	b->groups = 0;
}

/* SHA-256 of the blob header and the records. */
static int toc_digest(const uint8_t hb[BLOB_HDR], const uint8_t *rec, size_t len,
                      uint8_t out[TOC_DIGEST])
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned int n = 0;
	int ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) &&
	         EVP_DigestUpdate(md, hb, BLOB_HDR) && EVP_DigestUpdate(md, rec, len) &&
	         EVP_DigestFinal_ex(md, out, &n) && n == TOC_DIGEST;

	EVP_MD_CTX_free(md);
	return ok ? 0 : -EIO;
}

int toc_encode(const struct toc_build *b, const struct bri_seal *k, uint64_t off, uint8_t **out,
               size_t *len)
{
	struct blob_hdr h = {.kind = BLOB_TOC, .codec = CODEC_RAW, .seal = SEAL_NONE};
	size_t raw = b->len + TOC_DIGEST, ovh = k ? SEAL_OVERHEAD : 0;
	uint8_t *t, *plain = NULL;
	int rc;

	if (b->dropped || !b->groups || !b->buf)
		return -EINVAL;
	h.npages = b->groups;
	h.raw_len = (uint32_t)raw;
	h.stored_len = (uint32_t)(raw + ovh);
	if (k)
		h.seal = SEAL_AES;
	t = malloc(BLOB_HDR + raw + ovh + TOC_FOOTER);
	if (!t)
		return -ENOMEM;
	hdr_encode(&h, t);
	/* In the clear, the plaintext is written in place; sealed, beside. */
	if (k) {
		plain = malloc(raw);
		if (!plain) {
			free(t);
			return -ENOMEM;
		}
	}
	{
		uint8_t *p = k ? plain : t + BLOB_HDR;

		memcpy(p, b->buf, b->len);
		rc = toc_digest(t, b->buf, b->len, p + b->len);
		if (rc == 0 && k)
			rc = part_seal(k, t, "toc", plain, raw, t + BLOB_HDR) < 0 ? -EIO : 0;
	}
	free(plain);
	if (rc < 0) {
		free(t);
		return rc;
	}
	memcpy(t + BLOB_HDR + raw + ovh, TOC_MAGIC, 8); /* a magic, not a string */
	put64(t + BLOB_HDR + raw + ovh + 8, off);
	*out = t;
	*len = BLOB_HDR + raw + ovh + TOC_FOOTER;
	return 0;
}

void toc_free(struct pack_toc *t)
{
	free(t->g);
	free(t->buf);
	free(t->mem);
	t->g = NULL;
	t->buf = NULL;
	t->mem = NULL;
	t->n = 0;
}

static int bad(const char **why, const char *what)
{
	if (why)
		*why = what;
	return -EBADMSG;
}

/*
 * toc_decode; borrow: in the clear, the plaintext is read where it is in
 * blob, which the caller keeps while t is used (no copy: a first backup's
 * pack of 1 GiB has a TOC of about 9 MB, and fresh memory costs).
 */
static int decode(const struct bri_seal *k, const uint8_t *blob, size_t len, uint64_t off,
                  uint64_t size, struct pack_toc *t, const char **why, bool borrow)
{
	uint8_t digest[TOC_DIGEST];
	struct blob_hdr h;
	uint64_t at = PACK_HDR;
	size_t pos = 0, body;
	uint8_t *plain;

	memset(t, 0, sizeof(*t));
	if (len < BLOB_HDR || hdr_decode(blob, &h) < 0 || h.kind != BLOB_TOC)
		return bad(why, "its header is damaged");
	if (hdr_check_seal(&h, k) < 0)
		return bad(why,
		           k ? "it is not sealed" : "it is sealed (and this store has no key)");
	if ((uint64_t)BLOB_HDR + h.stored_len != len || off + len + TOC_FOOTER != size)
		return bad(why, "its length does not end at the footer");
	if (h.raw_len < TOC_DIGEST || h.raw_len > TOC_MAX)
		return bad(why, "its length is not one a table of contents has");
	if (borrow && !k) {
		plain = (uint8_t *)blob + BLOB_HDR; /* read only; t->buf stays NULL */
	} else {
		plain = malloc(h.raw_len);
		if (!plain)
			return -ENOMEM;
		t->buf = plain;
	}
	/* The tag (sealed) and the digest before anything of it is read. */
	if (k && part_open(k, blob, "toc", blob + BLOB_HDR, h.stored_len, plain) < 0) {
		toc_free(t);
		return bad(why, "its sealed data failed authentication");
	}
	if (!k && plain != blob + BLOB_HDR)
		memcpy(plain, blob + BLOB_HDR, h.raw_len);
	body = h.raw_len - TOC_DIGEST;
	if (toc_digest(blob, plain, body, digest) < 0 ||
	    memcmp(digest, plain + body, TOC_DIGEST) != 0) {
		toc_free(t);
		return bad(why, "its checksum does not match");
	}
	t->g = calloc(h.npages, sizeof(*t->g));
	if (!t->g) {
		toc_free(t);
		return -ENOMEM;
	}
	t->off = off;
	/* The records tile the pack: from its header's end to the TOC, no gap. */
	for (uint32_t i = 0; i < h.npages; i++) {
		struct toc_group *g = &t->g[i];
		uint32_t ovh = k ? SEAL_OVERHEAD : 0;

		if (body - pos < TOC_REC)
			goto out_bad;
		g->off = get64(plain + pos);
		g->len = get32(plain + pos + 8);
		g->page_size = get32(plain + pos + 12);
		g->npages = get32(plain + pos + 16);
		pos += TOC_REC;
		if (g->off != at || g->npages == 0 || g->npages > PACK_GROUP_PAGES ||
		    g->page_size < PAGE_SIZE_MIN || g->page_size > PAGE_SIZE_MAX ||
		    g->len < BLOB_HDR + g->npages * PAGE_ID_LEN + 2 * ovh ||
		    g->off + g->len > off || body - pos < (size_t)g->npages * PAGE_ID_LEN)
			goto out_bad;
		g->ids = plain + pos;
		pos += (size_t)g->npages * PAGE_ID_LEN;
		at = g->off + g->len;
	}
	if (pos != body || at != off)
		goto out_bad;
	t->n = h.npages;
	return 0;
out_bad:
	toc_free(t);
	return bad(why, "its groups do not add up to the pack");
}

int toc_decode(const struct bri_seal *k, const uint8_t *blob, size_t len, uint64_t off,
               uint64_t size, struct pack_toc *t, const char **why)
{
	return decode(k, blob, len, off, size, t, why, false);
}

int toc_read(int fd, const struct bri_seal *k, struct pack_toc *t, const char **why)
{
	uint8_t *tail, *blob;
	uint64_t size, off, from;
	size_t n;
	struct stat st;
	ssize_t got;
	int rc;

	memset(t, 0, sizeof(*t));
	if (fstat(fd, &st) < 0)
		return -errno;
	size = (uint64_t)st.st_size;
	if (size < PACK_HDR + BLOB_HDR + TOC_FOOTER)
		return -ENOENT;
	n = size - PACK_HDR < TOC_TAIL ? (size_t)(size - PACK_HDR) : TOC_TAIL;
	from = size - n;
	tail = malloc(n);
	if (!tail)
		return -ENOMEM;
	got = pread_full(fd, tail, n, from);
	if (got != (ssize_t)n) {
		free(tail);
		return got < 0 ? (int)got : -EIO;
	}
	if (memcmp(tail + n - TOC_FOOTER, TOC_MAGIC, 8) != 0) {
		free(tail);
		return -ENOENT;
	}
	off = get64(tail + n - 8);
	if (off < PACK_HDR || off > size - TOC_FOOTER - BLOB_HDR ||
	    size - TOC_FOOTER - off > TOC_MAX + BLOB_HDR + SEAL_OVERHEAD) {
		free(tail);
		return bad(why, "its footer points outside the pack");
	}
	if (off >= from) {
		blob = tail + (off - from);
	} else {
		/* A TOC larger than the tail: a second read, of all of it. */
		free(tail);
		tail = malloc(size - off);
		if (!tail)
			return -ENOMEM;
		got = pread_full(fd, tail, size - off, off);
		if (got != (ssize_t)(size - off)) {
			free(tail);
			return got < 0 ? (int)got : -EIO;
		}
		blob = tail;
	}
	rc = decode(k, blob, size - off - TOC_FOOTER, off, size, t, why, true);
	if (rc == 0 && !k)
		t->mem = tail; /* the plaintext, borrowed: freed with t */
	else
		free(tail);
	return rc;
}

/* pack_scan's callback for toc_check's pack without a footer: nothing to do per group. */
static int no_group(void *arg, const struct blob_hdr *h, const uint8_t *ids, uint64_t off)
{
	(void)arg;
	(void)h;
	(void)ids;
	(void)off;
	return 0;
}

int toc_check(int fd, const struct bri_seal *k, const char **why, uint64_t *at)
{
	uint8_t buf[BLOB_HDR + PACK_GROUP_PAGES * PAGE_ID_LEN + SEAL_OVERHEAD];
	uint8_t ids[PACK_GROUP_PAGES * PAGE_ID_LEN];
	struct pack_toc t;
	int rc;

	*at = 0;
	rc = toc_read(fd, k, &t, why);
	if (rc == -ENOENT) {
		/* No footer: a pack written before TOCs, unless its groups end at a TOC blob. */
		uint64_t toc_at = 0;

		rc = pack_scan(fd, k, no_group, NULL, &toc_at);
		if (rc == 0 && toc_at) {
			*at = toc_at;
			return bad(why, "its footer is damaged");
		}
		return 0; /* a damaged group is its pages' damage, reported with them */
	}
	if (rc < 0)
		return rc;
	for (size_t i = 0; rc == 0 && i < t.n; i++) {
		const struct toc_group *g = &t.g[i];
		size_t ids_len = (size_t)g->npages * PAGE_ID_LEN + (k ? SEAL_OVERHEAD : 0);
		struct blob_hdr h;

		*at = g->off;
		if (pread_full(fd, buf, BLOB_HDR + ids_len, g->off) !=
		        (ssize_t)(BLOB_HDR + ids_len) ||
		    hdr_decode(buf, &h) < 0 || hdr_check_seal(&h, k) < 0 || h.kind != BLOB_GROUP ||
		    h.npages != g->npages || h.page_size != g->page_size || h.ids_len != ids_len ||
		    (uint64_t)BLOB_HDR + h.ids_len + h.stored_len != g->len ||
		    part_open(k, buf, "ids", buf + BLOB_HDR, ids_len, ids) < 0 ||
		    memcmp(ids, g->ids, (size_t)g->npages * PAGE_ID_LEN) != 0)
			rc = bad(why,
			         "its table of contents and its group here disagree (one of them "
			         "is damaged)");
	}
	toc_free(&t);
	return rc;
}
