/*
 * libFuzzer target for bri_verify_from_json, the reader of NAME.db.verify
 * files (planted or damaged ones included). Whatever parses must render and
 * round-trip through bri_verify_to_json with the same verdict. Not a unit
 * test: built by scripts/fuzz only.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bri/verify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bri_verify_result r, again;
	char *json = NULL, *text = NULL;
	size_t len = 0, tlen = 0;
	char *buf = malloc(size ? size : 1);

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	if (bri_verify_from_json(buf, size, &r) != 0) {
		free(buf);
		return 0;
	}
	if (r.status > BRI_VERIFY_FAILED)
		abort();
	if (r.status == BRI_VERIFY_FAILED && !r.reason[0])
		abort(); /* a failure always has a reason */
	if (strnlen(r.reason, sizeof(r.reason)) == sizeof(r.reason) ||
	    strnlen(r.checked_at, sizeof(r.checked_at)) == sizeof(r.checked_at) ||
	    strnlen(r.check, sizeof(r.check)) == sizeof(r.check))
		abort();
	if (bri_verify_render(&r, &text, &tlen) != 0 || strlen(text) != tlen)
		abort();
	if (bri_verify_to_json(&r, &json, &len) != 0)
		abort();
	if (bri_verify_from_json(json, len, &again) != 0 || again.status != r.status ||
	    again.checksum_ok != r.checksum_ok || again.integrity_ok != r.integrity_ok ||
	    again.counts_ok != r.counts_ok)
		abort();
	free(json);
	free(text);
	free(buf);
	return 0;
}
