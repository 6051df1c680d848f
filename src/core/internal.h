/*
 * Functions of the core that are not the library's API: each is used only
 * inside its own module, or only by the core's unit tests, so libbri does
 * not export them (names without the bri_ prefix, as store_int.h and pack.h).
 * Not installed; tests include it as "../../src/core/internal.h".
 */
#ifndef BRI_INTERNAL_H
#define BRI_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <time.h>

#include "bri/catalog.h"
#include "bri/checksum.h"
#include "bri/schedule.h"
#include "bri/store.h"
#include "bri/verify.h"

/* ---- catalog.c ---- */

/* The unknown (not a backup) .db file called name, or NULL. */
struct bri_entry *catalog_find_unknown(const struct bri_catalog *c, const char *name);

/* ---- checksum.c ---- */

/* SHA-256 of len bytes at data as 64 lowercase hex digits + NUL in hex. */
int checksum_buffer(const void *data, size_t len, char hex[BRI_CHECKSUM_HEX_LEN + 1]);

/* ---- schedule.c ---- */

/*
 * The latest run time at or before now; a run is missed when the last run
 * happened before it. For "every" schedules, runs are anchored at last_run.
 */
time_t schedule_prev(const struct bri_schedule *sc, time_t now, time_t last_run);

/* ---- store.c ---- */

/*
 * Removes leftover ".*.tmp" files whose creating process is gone, and what
 * the format calls leftovers (plain: sidecars without their .db). Call with
 * the lock held. Returns the number removed.
 */
int store_sweep(struct bri_store *s);

/* ---- verify.c ---- */

/* Fills f with the identity of the file st (known, dev, inode, size, mtime). */
void verify_file_of(struct bri_verify_file *f, const struct stat *st);

#endif
