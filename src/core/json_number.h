/*
 * Internal to the core: JSON helpers. Numbers with a fixed number of
 * decimals, so that 0.08 is written "0.08" and not "0.080000000000000002",
 * and whole values keep a ".0" (Python's json reads them back as floats, as
 * the seed wrote them); the pretty text of a rendering; a sidecar written
 * from its JSON object.
 */
#ifndef BRI_JSON_NUMBER_H
#define BRI_JSON_NUMBER_H

#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bri/store.h"

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

/*
 * The pretty text of o (spaced, "/" unescaped) and a newline, malloc'd in
 * *out, its length in *len: 0 or -ENOMEM. o is put (freed) either way.
 */
static inline int bri_json_emit(json_object *o, char **out, size_t *len)
{
	const char *text = json_object_to_json_string_ext(
	    o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
	int rc = 0;

	if (!text || asprintf(out, "%s\n", text) < 0)
		rc = -ENOMEM;
	else
		*len = strlen(*out);
	json_object_put(o);
	return rc;
}

/*
 * Writes o (pretty, "/" unescaped) as the sidecar kind of backup name
 * (bri_store_sidecar_write): 0 or a negative errno with err filled. o is put
 * (freed) either way.
 */
static inline int bri_json_sidecar_write(struct bri_store *s, const char *name,
                                         enum bri_sidecar kind, json_object *o, struct bri_err *err)
{
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
	                                                         JSON_C_TO_STRING_NOSLASHESCAPE);
	int rc = text ? bri_store_sidecar_write(s, name, kind, text, strlen(text), err)
	              : bri_err_set(err, -ENOMEM, "out of memory");

	json_object_put(o);
	return rc;
}

#endif
