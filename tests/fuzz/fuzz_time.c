/*
 * libFuzzer target for bri_time_parse, which reads backup_time and
 * backup_time_utc out of .meta files (hand-edited ones included). Whatever
 * parses must format as UTC and parse back to the same instant. Not a unit
 * test: built by scripts/fuzz only.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bri/common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), utc[64];
	time_t t, again;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (bri_time_parse(s, &t) == 0 && t > -30610224000 + 86400 && t < 253402300799 - 86400) {
		/* Four-digit years (1000..9999): what the store's formats hold. */
		bri_time_utc(t, utc, sizeof(utc));
		if (bri_time_parse(utc, &again) != 0 || again != t)
			abort();
	}
	free(s);
	return 0;
}
