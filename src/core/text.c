/*
 * The growing text buffer with a cap (include/bri/text.h) that the
 * renderings share: metrics, the status page and the mount's ctl/ files
 * each had a copy of it. It grows by doubling from 4 KiB, never past max.
 */
#include "bri/text.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define TEXT_FIRST 4096

void bri_text_add(struct bri_text *t, const char *fmt, ...)
{
	size_t max = t->max ? t->max : BRI_TEXT_MAX;
	va_list ap;
	int n;

	if (t->error)
		return;
	for (;;) {
		size_t room = t->cap - t->len;

		va_start(ap, fmt);
		n = room ? vsnprintf(t->buf + t->len, room, fmt, ap) : vsnprintf(NULL, 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->error = -EINVAL;
			return;
		}
		if ((size_t)n < room) {
			t->len += (size_t)n;
			return;
		}
		size_t ncap = t->cap ? t->cap * 2 : TEXT_FIRST;

		while (ncap < t->len + (size_t)n + 1)
			ncap *= 2;
		if (ncap > max && t->len + (size_t)n + 1 <= max)
			ncap = max; /* the last step: exactly the cap */
		if (ncap > max) {
			t->error = -EFBIG;
			return;
		}
		char *nb = realloc(t->buf, ncap);

		if (!nb) {
			t->error = -ENOMEM;
			return;
		}
		t->buf = nb;
		t->cap = ncap;
	}
}

int bri_text_finish(struct bri_text *t, char **out, size_t *len)
{
	int rc = t->error;

	if (!rc && !t->buf)
		bri_text_add(t, "%s", "");
	rc = t->error;
	if (rc < 0) {
		bri_text_free(t);
		return rc;
	}
	*out = t->buf;
	*len = t->len;
	*t = (struct bri_text){.max = t->max};
	return 0;
}

void bri_text_free(struct bri_text *t)
{
	free(t->buf);
	*t = (struct bri_text){.max = t->max};
}
