/*
 * libFuzzer target for bri_meta_parse, the parser of NAME.db.meta files that
 * may be damaged or hand-edited. Besides "no crash, no leak, no overread"
 * it checks a round trip: whatever parses, formats, and parses again to the
 * same values. Not a unit test: built by scripts/fuzz only.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bri/meta.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bri_meta m, again, copy;
	struct bri_err err = {0};
	char *text = NULL;
	size_t len = 0;

	/* An exact-size heap copy, so ASan sees any read past the end. */
	char *buf = malloc(size ? size : 1);

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	if (bri_meta_parse(buf, size, &m, &err) != 0) {
		if (err.code == 0 || !err.msg[0] || strnlen(err.msg, sizeof(err.msg)) == sizeof(err.msg))
			abort(); /* a failure always says what and why */
		free(buf);
		return 0;
	}
	if (strnlen(m.checksum, sizeof(m.checksum)) != BRI_CHECKSUM_HEX_LEN)
		abort();
	if (bri_meta_format(&m, &text, &len) != 0)
		abort();
	if (bri_meta_parse(text, len, &again, NULL) != 0)
		abort(); /* what we write we can read */
	if (again.size_bytes != m.size_bytes || again.ntables != m.ntables ||
	    strcmp(again.checksum, m.checksum) != 0 || strcmp(again.backup_time, m.backup_time) != 0)
		abort();
	for (size_t i = 0; i < m.ntables; i++)
		if (bri_meta_rows(&again, m.tables[i].name) != m.tables[i].rows)
			abort();
	if (bri_meta_copy(&copy, &m) == 0)
		bri_meta_free(&copy);
	bri_meta_free(&again);
	bri_meta_free(&m);
	free(text);
	free(buf);
	return 0;
}
