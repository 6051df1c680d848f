/*
 * Restore reports kept in the store: restore_reports.jsonl, one JSON object
 * per line {"name", "time", "text"} (the text is bri_restore_report_render's),
 * oldest first, at most BRI_REPORTS_MAX, one per backup name (a newer restore
 * of a name replaces its report). The core's restore adds one for every
 * restore of a store backup, whoever ran it, so the mount's restore/ shows
 * them across remounts. Plain JSON: readable without this software.
 */
#ifndef BRI_REPORTS_H
#define BRI_REPORTS_H

#include <stddef.h>
#include <time.h>

#include "bri/common.h"
#include "bri/store.h"

#define BRI_REPORTS_FILE "restore_reports.jsonl"
#define BRI_REPORTS_MAX  256
/* Cap on one report's text and on the file (then older lines are dropped). */
#define BRI_REPORT_TEXT_MAX  8192
#define BRI_REPORTS_FILE_MAX (BRI_REPORTS_MAX * (BRI_REPORT_TEXT_MAX + 512))

struct bri_report_rec {
	char name[BRI_NAME_MAX + 1]; /* the backup restored */
	time_t time;                 /* when the restore started */
	char *text;                  /* the report (malloc'd, NUL-terminated) */
	size_t len;                  /* bytes in text */
};

/*
 * Adds the report text of a restore of name at when, replacing an older
 * report of that name and dropping the oldest beyond BRI_REPORTS_MAX;
 * written durably. Call holding the store's lock. 0 or a negative errno.
 */
int bri_reports_add(struct bri_store *s, const char *name, time_t when, const char *text,
                    struct bri_err *err);

/*
 * Reads the reports, oldest first, into *out (n of them; free with
 * bri_reports_free). Lines that do not parse are skipped. No file: 0 and
 * none. 0 or a negative errno.
 */
int bri_reports_load(const struct bri_store *s, struct bri_report_rec **out, size_t *n);

void bri_reports_free(struct bri_report_rec *r, size_t n);

#endif
