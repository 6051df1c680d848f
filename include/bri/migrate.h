/*
 * Converting a store in place between its formats (SPEC.md section 5,
 * `bri-backup migrate --to pages|plain`). Every backup is copied byte for
 * byte into the other format beside the old one and checked against its
 * checksum; then the store's format switches in one atomic step (store.json
 * written, or removed for plain); then the old format's files go. A marker,
 * migrate.json, says a conversion is under way until the end. Killed at any
 * point, every backup is complete and verifiable in the format the store
 * then has, and running migrate again finishes the job (or, with the other
 * --to, undoes it). bri_migrate_ex also decrypts, encrypts and re-keys a
 * store (the new store built in a folder beside it, then the two swapped).
 */
#ifndef BRI_MIGRATE_H
#define BRI_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>

#include "bri/common.h"
#include "bri/store.h"

/* The marker of a conversion under way, in the store folder. */
#define BRI_MIGRATE_MARKER "migrate.json"

struct bri_migrate_result {
	char from[16];    /* the store's format before */
	char to[16];      /* and after */
	size_t converted; /* backups copied into the new format by this run */
	size_t kept;      /* already converted by an interrupted run: checked, kept */
	bool finished;    /* an interrupted run's leftovers were removed */
	bool already;     /* the store was of that format, with nothing to finish */
	bool sealed_before; /* the store was encrypted */
	bool sealed_after;  /* and is (with the new key, when one was given) */
	bool offsite;       /* a backup had been pushed offsite: that copy keeps the old form */
};

/*
 * Converts s to the format named to ("plain" or "pages"). Takes the store's
 * lock and refuses (-EBUSY) when another process holds it. A backup that
 * does not match its checksum stops the conversion before the switch
 * (-EBADMSG naming it; nothing is lost). Returns 0 or a negative errno with
 * err filled; res is filled as far as the run got.
 */
int bri_migrate(struct bri_store *s, const char *to, const struct bri_op_ctx *ctx,
                struct bri_migrate_result *res, struct bri_err *err);

/*
 * bri_migrate, changing the key too. s is best opened with key_later
 * (bri_store_open_opts): its s->key_file is the key of the store as it is
 * (an encrypted one: checked here, before anything is written; -ENOKEY
 * without it, -EKEYREJECTED with another) or, for a store without
 * encryption, the key to encrypt it with. new_key_file (to "pages" only):
 * the key of the result, for an encrypted store its new key (re-keying).
 * "plain" of an encrypted store decrypts it. A conversion that changes the
 * key is built in a folder beside the store (".<name>.migrate", same parent)
 * and swapped in by one renameat2(RENAME_EXCHANGE); it is refused (-EXDEV)
 * for a store folder that is a mount point. Run again after a kill with the
 * same key arguments, it finishes; before the switch, asked for the store as
 * it is (e.g. --to pages with only its key), it undoes.
 */
int bri_migrate_ex(struct bri_store *s, const char *to, const char *new_key_file,
                   const struct bri_op_ctx *ctx, struct bri_migrate_result *res,
                   struct bri_err *err);

#endif
