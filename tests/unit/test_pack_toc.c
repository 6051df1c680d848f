/*
 * Unit tests of a pack's table of contents (src/core/pack_toc.c): its
 * round trip, in the clear and sealed; every flipped bit of it refused (in
 * the clear by its checksum and its checks, sealed by the tag); a TOC sealed
 * with another key, sealed in a store without one or in the clear in a
 * store with one refused; records that do not tile the pack refused; a
 * footer pointing outside the pack, or at something that is not a TOC,
 * refused; a pack without a footer (written before TOCs) told apart from a
 * damaged one (-ENOENT, not -EBADMSG).
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "../../src/core/pack_toc.h"
#include "expect.h"
#include "testutil.h"

static char *base;

static struct bri_seal *test_key(uint8_t fill)
{
	struct seal_params p = {0};
	struct bri_seal *k = NULL;
	struct bri_err err = {0};
	uint8_t bytes[SEAL_KEY_LEN];

	memset(bytes, fill, sizeof(bytes));
	EXPECT_EQ_INT(seal_key_derive(bytes, sizeof(bytes), &p, &k, &err), 0);
	return k;
}

/* A TOC of ngroups groups tiling a pack from PACK_HDR; *end: where they end. */
static void make_build(struct toc_build *b, uint32_t ngroups, uint64_t *end)
{
	uint64_t off = PACK_HDR;

	memset(b, 0, sizeof(*b));
	for (uint32_t g = 0; g < ngroups; g++) {
		uint32_t n = 1 + g % PACK_GROUP_PAGES, len = 4000 + 100 * g;
		uint8_t ids[PACK_GROUP_PAGES * PAGE_ID_LEN];

		for (size_t i = 0; i < sizeof(ids); i++)
			ids[i] = (uint8_t)(g * 31 + i);
		toc_build_add(b, off, len, 4096, n, ids);
		off += len;
	}
	*end = off;
}

static void test_round_trip(const struct bri_seal *k)
{
	struct toc_build b;
	struct pack_toc t;
	const char *why = NULL;
	uint64_t end;
	uint8_t *out;
	size_t len;

	make_build(&b, 40, &end);
	EXPECT_EQ_INT(toc_encode(&b, k, end, &out, &len), 0);
	EXPECT(len > TOC_FOOTER + BLOB_HDR);
	EXPECT(memcmp(out + len - TOC_FOOTER, TOC_MAGIC, 8) == 0);
	EXPECT_EQ_INT(toc_decode(k, out, len - TOC_FOOTER, end, end + len, &t, &why), 0);
	EXPECT(t.n == 40 && t.off == end);
	for (uint32_t g = 0; g < 40 && t.n == 40; g++) {
		EXPECT(t.g[g].npages == 1 + g % PACK_GROUP_PAGES);
		EXPECT(t.g[g].len == 4000 + 100 * g && t.g[g].page_size == 4096);
		EXPECT(g == 0 ? t.g[g].off == PACK_HDR
		              : t.g[g].off == t.g[g - 1].off + t.g[g - 1].len);
		for (size_t i = 0; i < (size_t)t.g[g].npages * PAGE_ID_LEN; i++)
			if (t.g[g].ids[i] != (uint8_t)(g * 31 + i)) {
				EXPECT_MSG(0, "group %u id byte %zu", g, i);
				break;
			}
	}
	toc_free(&t);
	/* Sealed: none of the ids in the clear. */
	if (k)
		EXPECT(memmem(out, len, b.buf + TOC_REC, PAGE_ID_LEN) == NULL);
	/* Every bit of the blob (header, records, ids, checksum or tag) matters. */
	for (size_t at = 0; at < len - TOC_FOOTER; at++)
		for (int bit = 0; bit < 8; bit += (at < BLOB_HDR ? 1 : 3)) {
			out[at] ^= (uint8_t)(1u << bit);
			why = NULL;
			if (toc_decode(k, out, len - TOC_FOOTER, end, end + len, &t, &why) !=
			    -EBADMSG) {
				EXPECT_MSG(0, "%s: bit %d of byte %zu flipped was not refused",
				           k ? "sealed" : "clear", bit, at);
				toc_free(&t);
			} else {
				EXPECT(why != NULL);
			}
			out[at] ^= (uint8_t)(1u << bit);
		}
	/* A TOC said to end elsewhere than at the footer. */
	EXPECT_EQ_INT(toc_decode(k, out, len - TOC_FOOTER, end, end + len + 1, &t, &why), -EBADMSG);
	EXPECT_EQ_INT(toc_decode(k, out, len - TOC_FOOTER - 1, end, end + len - 1, &t, &why),
	              -EBADMSG);
	/* Groups that end before the TOC starts (a gap): they do not add up. */
	EXPECT_EQ_INT(toc_decode(k, out, len - TOC_FOOTER, end + 8, end + 8 + len, &t, &why),
	              -EBADMSG);
	free(out);
	toc_build_free(&b);
}

static void test_sealing(void)
{
	struct bri_seal *k = test_key(7), *other = test_key(8);
	struct toc_build b;
	struct pack_toc t;
	const char *why;
	uint64_t end;
	uint8_t *sealed, *clear;
	size_t slen, clen;

	make_build(&b, 3, &end);
	EXPECT_EQ_INT(toc_encode(&b, k, end, &sealed, &slen), 0);
	EXPECT_EQ_INT(toc_encode(&b, NULL, end, &clear, &clen), 0);
	EXPECT_EQ_INT(toc_decode(other, sealed, slen - TOC_FOOTER, end, end + slen, &t, &why),
	              -EBADMSG);
	EXPECT_EQ_INT(toc_decode(NULL, sealed, slen - TOC_FOOTER, end, end + slen, &t, &why),
	              -EBADMSG);
	EXPECT_EQ_INT(toc_decode(k, clear, clen - TOC_FOOTER, end, end + clen, &t, &why), -EBADMSG);
	free(sealed);
	free(clear);
	toc_build_free(&b);
	/* Nothing to write: no group. */
	memset(&b, 0, sizeof(b));
	EXPECT_EQ_INT(toc_encode(&b, NULL, PACK_HDR, &clear, &clen), -EINVAL);
	seal_free(k);
	seal_free(other);
}

/* Writes a fake pack: its header, end - PACK_HDR bytes of groups, then tail (len bytes). */
static char *write_pack(const char *name, uint64_t end, const uint8_t *tail, size_t len)
{
	char *path = tu_fmt("%s/%s", base, name);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	uint8_t *body = calloc(1, end);

	if (fd < 0 || !body)
		TU_DIE("cannot write %s", path);
	memcpy(body, PACK_MAGIC, 8);
	memset(body + PACK_HDR, 0x5a, end - PACK_HDR);
	if (write(fd, body, end) != (ssize_t)end || write(fd, tail, len) != (ssize_t)len)
		TU_DIE("cannot write %s", path);
	close(fd);
	free(body);
	return path;
}

static int read_toc(const char *path, const char **why)
{
	int fd = open(path, O_RDONLY);
	struct pack_toc t;
	int rc;

	if (fd < 0)
		TU_DIE("cannot open %s", path);
	*why = NULL;
	rc = toc_read(fd, NULL, &t, why);
	if (rc == 0)
		toc_free(&t);
	close(fd);
	return rc;
}

static void test_footer(void)
{
	struct toc_build b;
	const char *why;
	uint64_t end, bad;
	uint8_t *out, *big;
	size_t len;
	char *path;

	/* A TOC larger than the tail read at once: read by a second pread. */
	make_build(&b, 3000, &end);
	EXPECT_EQ_INT(toc_encode(&b, NULL, end, &out, &len), 0);
	EXPECT(len > TOC_TAIL);
	path = write_pack("big.pack", end, out, len);
	EXPECT_EQ_INT(read_toc(path, &why), 0);
	free(path);
	free(out);
	toc_build_free(&b);

	make_build(&b, 5, &end);
	EXPECT_EQ_INT(toc_encode(&b, NULL, end, &out, &len), 0);
	path = write_pack("good.pack", end, out, len);
	EXPECT_EQ_INT(read_toc(path, &why), 0);
	free(path);
	/* The footer's offset past the pack's end, before its header, inside the
	 * footer itself, and at a group instead of the TOC: refused. */
	for (int i = 0; i < 4; i++) {
		uint64_t to[] = {end + len + 4096, 3, end + len - 8, PACK_HDR};

		bad = htole64(to[i]);
		memcpy(out + len - 8, &bad, 8);
		path = write_pack("bad.pack", end, out, len);
		EXPECT_MSG(read_toc(path, &why) == -EBADMSG, "offset %llu",
		           (unsigned long long)to[i]);
		EXPECT(why != NULL);
		free(path);
	}
	bad = htole64(UINT64_MAX - 4);
	memcpy(out + len - 8, &bad, 8);
	path = write_pack("bad.pack", end, out, len);
	EXPECT_EQ_INT(read_toc(path, &why), -EBADMSG);
	free(path);
	/* No footer: a pack written before TOCs. */
	path = write_pack("old.pack", end, out, 0);
	EXPECT_EQ_INT(read_toc(path, &why), -ENOENT);
	free(path);
	/* A pack cut inside its TOC (the footer's magic gone with it). */
	path = write_pack("cut.pack", end, out, len - 3);
	EXPECT_EQ_INT(read_toc(path, &why), -ENOENT);
	free(path);
	big = calloc(1, 8);
	path = write_pack("tiny.pack", PACK_HDR, big, 8);
	EXPECT_EQ_INT(read_toc(path, &why), -ENOENT);
	free(path);
	free(big);
	free(out);
	toc_build_free(&b);
}

int main(void)
{
	struct bri_seal *k;

	base = tu_tmpdir("pack_toc");
	test_round_trip(NULL);
	k = test_key(3);
	test_round_trip(k);
	seal_free(k);
	test_sealing();
	test_footer();
	tu_tmpdir_done(base);
	return EXPECT_RESULT();
}
