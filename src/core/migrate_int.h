/*
 * Internal to migrate: what migrate.c (the conversion in place, the plan
 * and the dispatch) and migrate_beside.c (the conversions that change the
 * key, built beside the store) share. Not part of the contract: the names
 * have no bri_ prefix, so libbri does not export them.
 */
#ifndef BRI_MIGRATE_INT_H
#define BRI_MIGRATE_INT_H

#include <limits.h>
#include <stdbool.h>

#include "bri/migrate.h"
#include "bri/store.h"

/* migrate.json holds a few names; this is far more. */
#define MARKER_MAX 4096

/* The marker of a conversion built beside (migrate.json with "beside"). */
struct beside_marker {
	const struct bri_store_ops *from, *to;
	char name[NAME_MAX + 1]; /* the folder beside the store */
	bool after;              /* in the new store: the switch is done */
	bool sealed_from, sealed_to;
};

/* What a run does, found before anything is written (keys included). */
struct plan {
	const struct bri_store_ops *to;
	bool beside;            /* the key changes: built beside */
	bool already;           /* the store is as asked, nothing under way */
	bool undo;              /* before the switch, asked for the store as it is */
	bool after;             /* after the switch: only the old folder is left to go */
	struct beside_marker m; /* when one is there (has_marker) */
	bool has_marker;
	struct bri_seal *now_key; /* opens the store at its path (NULL: not encrypted) */
	struct bri_seal *old_key; /* after the switch: opens the old store beside */
	const char *new_key_file; /* the new store's key file (NULL: not encrypted) */
	struct bri_seal *new_key; /* a fresh key from it */
};

/* migrate.c: stage 2, every backup of a (in s) in b (in t) too; b's others removed. */
int migrate_convert_all(struct bri_store *s, const struct bri_store_ops *a, struct bri_store *t,
                        const struct bri_store_ops *b, const struct bri_op_ctx *ctx,
                        struct bri_migrate_result *res, struct bri_err *err);
/* migrate.c: store.json of the folder dirfd (NULL when there is none: plain). */
int migrate_store_json_at(int dirfd, char **text);

/* migrate_beside.c: the marker of a conversion built beside: 0, -ENOENT, -EXDEV, -EINVAL. */
int migrate_beside_marker_read(const struct bri_store *s, struct beside_marker *m);
/* migrate_beside.c: whether the store can be swapped with a folder beside it (before anything). */
int migrate_beside_possible(const struct bri_store *s, struct bri_err *err);
/* migrate_beside.c: a run of plan p that changes the key (p->beside), from where the store is. */
int migrate_beside_run(struct bri_store *s, struct plan *p, const struct bri_op_ctx *ctx,
                       struct bri_migrate_result *res, struct bri_err *err);

#endif
