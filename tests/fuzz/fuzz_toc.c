/*
 * libFuzzer target for a pack's table of contents (src/core/pack_toc.c):
 * the input is a whole pack file (in a memfd), read by toc_read (its
 * footer, the tail read at once or a second read, the blob's header, tag or
 * checksum, the records) and compared with its groups by toc_check, with
 * and without a key (the first input byte picks). Besides "no crash, no
 * leak, no overread": whatever decodes tiles the pack exactly, from the
 * pack header's end to the TOC, with page counts and sizes a group may
 * have. Not a unit test: built by scripts/fuzz only.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pack_toc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct bri_seal *key(uint8_t fill)
{
	struct seal_params p = {0};
	struct bri_seal *k = NULL;
	uint8_t bytes[SEAL_KEY_LEN];

	memset(bytes, fill, sizeof(bytes));
	if (seal_key_derive(bytes, sizeof(bytes), &p, &k, NULL) < 0)
		abort();
	return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct bri_seal *k;
	const struct bri_seal *use;
	const char *why = NULL;
	struct pack_toc t;
	uint64_t at, end = PACK_HDR;
	int fd;

	if (!k)
		k = key(7);
	if (size < 1)
		return 0;
	use = data[0] & 1 ? k : NULL;
	fd = memfd_create("fuzz-pack", MFD_CLOEXEC);
	if (fd < 0 || write(fd, data + 1, size - 1) != (ssize_t)(size - 1))
		abort();
	if (toc_read(fd, use, &t, &why) == 0) {
		for (size_t i = 0; i < t.n; i++) {
			if (t.g[i].off != end || !t.g[i].npages ||
			    t.g[i].npages > PACK_GROUP_PAGES || t.g[i].page_size < PAGE_SIZE_MIN ||
			    t.g[i].page_size > PAGE_SIZE_MAX)
				abort();
			end = t.g[i].off + t.g[i].len;
		}
		if (!t.n || end != t.off || t.off + TOC_FOOTER > size - 1)
			abort();
		toc_free(&t);
	}
	(void)toc_check(fd, use, &why, &at);
	close(fd);
	return 0;
}
