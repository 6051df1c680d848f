/*
 * libFuzzer target for what reads an encrypted page store's files
 * (src/core/seal.c, pack.c): manifest_decode with and without the store's
 * key, seal_open and seal_line_open, on damaged or planted bytes. Besides
 * "no crash, no leak, no overread": whatever decodes is a sane manifest that
 * encodes and decodes again to the same ids, and nothing opens with another
 * key. The first input byte picks the key's use. Not a unit test: built by
 * scripts/fuzz only.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pack.h"
#include "seal.h"

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

static void check_manifest(const struct bri_seal *k, const uint8_t *data, size_t size)
{
	struct manifest m, again;
	void *blob = NULL;
	size_t len = 0;

	if (manifest_decode(k, "fuzz", data, size, &m) != 0)
		return;
	if (m.page_count && (m.page_size < PAGE_SIZE_MIN || m.page_size > PAGE_SIZE_MAX ||
	                     (m.page_size & (m.page_size - 1))))
		abort();
	if (manifest_encode(k, "fuzz", &m, &blob, &len) != 0 ||
	    manifest_decode(k, "fuzz", blob, len, &again) != 0 ||
	    again.page_count != m.page_count || again.page_size != m.page_size ||
	    memcmp(again.ids, m.ids, m.page_count * PAGE_ID_LEN) != 0)
		abort();
	free(again.ids);
	free(blob);
	free(m.ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct bri_seal *k, *other;
	struct bri_store s = {0};
	uint8_t *out;
	char *line = NULL;
	size_t n = 0;

	if (!k) {
		k = key(0x5a);
		other = key(0xa5);
	}
	/* A manifest header may declare up to 64 GiB of ids (2^31 pages), which the
	 * decoder allocates once the frame agrees: past 64 MiB, not this target's
	 * business (its inputs are at most 64 KiB). */
	if (size == 0 ||
	    (size >= 25 && ((uint32_t)data[21] | (uint32_t)data[22] << 8 |
	                    (uint32_t)data[23] << 16 | (uint32_t)data[24] << 24) > (64u << 20)))
		return 0;
	check_manifest((data[0] & 1) ? k : NULL, data + 1, size - 1);
	out = malloc(size);
	if (!out)
		return 0;
	if (seal_open(k, "fuzz", 4, data + 1, size - 1, out) == 0 &&
	    seal_open(other, "fuzz", 4, data + 1, size - 1, out) == 0)
		abort(); /* one blob, two keys */
	free(out);
	s.seal = k;
	if (seal_line_open(&s, "audit.jsonl", (const char *)data + 1, size - 1, &line, &n) == 0 &&
	    strlen(line) > n)
		abort();
	free(line);
	return 0;
}
