/*
 * Internal to the core: JSON numbers with a fixed number of decimals, so
 * that 0.08 is written "0.08" and not "0.080000000000000002", and whole
 * values keep a ".0" (Python's json reads them back as floats, as the seed
 * wrote them).
 */
#ifndef BRI_JSON_NUMBER_H
#define BRI_JSON_NUMBER_H

#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static inline json_object *bri_json_double(double v, int decimals)
{
	char buf[64];
	size_t n;

	if (!isfinite(v))
		v = 0;
	snprintf(buf, sizeof(buf), "%.*f", decimals, v);
	n = strlen(buf);
	if (strchr(buf, '.')) {
		while (n > 0 && buf[n - 1] == '0' && buf[n - 2] != '.')
			buf[--n] = '\0';
	}
	return json_object_new_double_s(v, buf);
}

#endif
