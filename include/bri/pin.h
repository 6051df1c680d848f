/*
 * Pins: a backup that no cleanup removes (Barman's "keep"). A pin lives in
 * its own small file, the store's BRI_SIDECAR_PIN of the backup (plain
 * format: NAME.db.pin; JSON: time, reason, by),
 * never in the .meta, so metas stay immutable (the mount's caches and
 * object-locked offsite copies rely on that). delete refuses a pinned
 * backup: unpin it first. Pin and unpin hold the store's lock and write the
 * audit log.
 */
#ifndef BRI_PIN_H
#define BRI_PIN_H

#include <stdbool.h>
#include <time.h>

#include "bri/common.h"
#include "bri/store.h"

/* The pin file's suffix after the backup's name: the one place it is spelled. */
#define BRI_PIN_SUFFIX     ".db.pin"
#define BRI_PIN_REASON_MAX 1024 /* bytes of a pin's reason */
#define BRI_PIN_MAX_BYTES  4096 /* a pin file larger than this is not read */

struct bri_pin {
	time_t time;                         /* when it was pinned */
	char reason[BRI_PIN_REASON_MAX + 1]; /* why (may be empty) */
	char by[64];                         /* who: "uid 1000 via cli" */
};

/*
 * Pins backup name (a backup with usable metadata: -ENOENT / -EINVAL
 * otherwise) with reason (NULL: none; at most BRI_PIN_REASON_MAX bytes, no
 * control characters) at time now. Pinning a pinned backup replaces its
 * reason. 0 or a negative errno with err.
 */
int bri_pin(struct bri_store *s, const char *name, const char *reason, time_t now,
            const struct bri_op_ctx *ctx, struct bri_err *err);

/* Removes name's pin: 0, -ENOENT when it is not pinned, or a negative errno. */
int bri_unpin(struct bri_store *s, const char *name, const struct bri_op_ctx *ctx,
              struct bri_err *err);

/*
 * Reads name's pin into *out: 0, -ENOENT when not pinned, -EINVAL when the
 * file does not parse (it still pins: cleanup goes by the file's presence).
 */
int bri_pin_read(const struct bri_store *s, const char *name, struct bri_pin *out);

/* Whether name is pinned (its pin file exists as a regular file). */
bool bri_pin_exists(const struct bri_store *s, const char *name);

#endif
