/*
 * Scrub (SPEC.md section 5: "scrub reads every pack"): every stored byte of
 * a store checked, not only what one backup reads. In a page store every
 * page of every pack is decompressed and its id recomputed (a keyed hash of
 * its bytes), and every page each manifest names is looked up; a damaged or
 * missing page is reported with the backup(s) and page number that use it,
 * and each pack whose table of contents disagrees with its groups is
 * reported naming the pack.
 * In a plain store every backup's whole file is hashed against its checksum.
 * Read only: nothing is changed, repaired or recorded.
 */
#ifndef BRI_SCRUB_H
#define BRI_SCRUB_H

#include <stdint.h>

#include "bri/common.h"
#include "bri/store.h"

struct bri_scrub_damage {
	const char *backup; /* the backup that uses the page (or the damaged backup);
	                       NULL: a damaged page no backup uses (pack names it) */
	uint64_t page;      /* its page number, 1-based; 0: the whole file (plain) */
	const char *pack;   /* the pack file holding it; NULL when missing or plain */
	const char *what;   /* "damaged (...)", "missing from every pack", ... */
};

struct bri_scrub_result {
	uint64_t packs;       /* pack files read (0 for plain) */
	uint64_t pages;       /* pages checked against their ids (plain: 0) */
	uint64_t pages_bad;   /* of which damaged */
	uint64_t backups;     /* backups looked at */
	uint64_t backups_bad; /* of which with a damaged or missing page (or file) */
	uint64_t bytes;       /* bytes read */
	uint64_t packs_bad;   /* packs whose table of contents is damaged or disagrees
	                         with their groups (page store) */
};

/*
 * Scrubs s: fn is called once for each damaged page of each backup that uses
 * it (stop early by returning non-zero, which bri_scrub returns). Returns 0
 * when the scrub ran (look at res for its verdict), or a negative errno with
 * err filled when it could not.
 */
int bri_scrub(struct bri_store *s, const struct bri_op_ctx *ctx,
              int (*fn)(void *arg, const struct bri_scrub_damage *d), void *arg,
              struct bri_scrub_result *res, struct bri_err *err);

#endif
