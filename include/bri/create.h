/*
 * Taking a backup (SPEC.md section 2, create): snapshot of the live database
 * into a temporary file, checksum, metadata, fsync, publish by rename, fsync
 * the folder. A crash or error at any point leaves no backup or a complete
 * one. Takes the store's lock unless the caller holds it.
 */
#ifndef BRI_CREATE_H
#define BRI_CREATE_H

#include <stdbool.h>
#include <time.h>

#include "bri/common.h"
#include "bri/meta.h"
#include "bri/store.h"

#define BRI_DEFAULT_BUSY_TIMEOUT_MS 30000

/*
 * The busy timeout used when an operation is given 0: $BRI_BUSY_TIMEOUT_MS
 * when set to a number, else BRI_DEFAULT_BUSY_TIMEOUT_MS.
 */
int bri_default_busy_timeout_ms(void);

struct bri_snapshot_info;

struct bri_create_opts {
	const char *name;     /* backup name; NULL or "": automatic name */
	enum bri_kind kind;   /* auto/named by default from name; safety for restore */
	int busy_timeout_ms;  /* wait for locks on the live database; 0: default */
	bool lock_held;       /* the caller already holds bri_store_lock */
	/*
	 * Fills the temporary file (path tmp_path, fd open on it) instead of the
	 * usual snapshot of the live database, and info as bri_snapshot_take
	 * does; NULL: the usual snapshot. Restore uses it to feed the safety
	 * backup from its own locked connection (bri_snapshot_restore_save).
	 */
	int (*fill)(void *arg, const char *tmp_path, int fd, struct bri_snapshot_info *info,
		    struct bri_err *err);
	void *fill_arg; /* passed to fill */
	time_t now; /* the backup's time (auto name, meta); 0: time(NULL) */
};

/*
 * Creates a backup. Returns 0 and sets *out_name (malloc'd) to the new
 * backup's name, or a negative errno: -EINVAL bad name, -EEXIST name taken,
 * -ENOENT no live database, -ENOSPC disk full, -EBUSY locked, -EIO.
 */
int bri_create(struct bri_store *s, const struct bri_create_opts *opts,
	       const struct bri_op_ctx *ctx, char **out_name, struct bri_err *err);

#endif
