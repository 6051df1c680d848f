/*
 * A growing text buffer with a cap (curl's dynbuf): printf-style appends,
 * the first failure kept and every later append skipped, so a renderer
 * appends freely and looks once, at the end. For the renderings of the core
 * and the mount (metrics, the status page, ctl/ files); not for bytes that
 * may hold a NUL.
 */
#ifndef BRI_TEXT_H
#define BRI_TEXT_H

#include <stddef.h>

#include "bri/common.h"

#define BRI_TEXT_MAX (1u << 20) /* the cap when max is 0 */

/* Start one as {.max = CAP} (or {0} for BRI_TEXT_MAX); nothing to set up. */
struct bri_text {
	char *buf;  /* the text, NUL-terminated; NULL before the first append */
	size_t len; /* bytes of text, without the NUL */
	size_t cap; /* bytes allocated at buf */
	size_t max; /* the most bytes buf may take; 0: BRI_TEXT_MAX */
	int error;  /* first failure (-ENOMEM, -EFBIG past max, -EINVAL), sticky; 0 if none */
};

/* Appends the formatted text; after a failure (t->error) does nothing. */
void bri_text_add(struct bri_text *t, const char *fmt, ...) BRI_PRINTF(2, 3);

/*
 * Hands the text over: 0 with *out (malloc'd, NUL-terminated, "" when nothing
 * was appended; the caller frees it) and *len; or t->error, the buffer freed
 * and *out untouched. t is empty afterwards either way.
 */
int bri_text_finish(struct bri_text *t, char **out, size_t *len);

/* Frees what t holds (for a renderer that gives up); t is empty afterwards. */
void bri_text_free(struct bri_text *t);

#endif
