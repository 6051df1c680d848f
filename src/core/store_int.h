/*
 * Internal to the store's files (store.c, store_format.c and the formats):
 * choosing a store's format when it is opened, and what the formats share.
 * Not part of the contract:
 * the names have no bri_ prefix, so libbri does not export them.
 */
#ifndef BRI_STORE_INT_H
#define BRI_STORE_INT_H

#include <stdbool.h>
#include <sys/stat.h>

#include "bri/store.h"

/*
 * Sets s->ops: the format named by the store's store.json, or plain when
 * there is none, and with check_key the key of an encrypted one (s->seal,
 * from s->key_file). Returns 0, or a negative errno with err filled
 * (-EPROTONOSUPPORT for a format this build does not know, -EINVAL for a
 * store.json that cannot be read as one; the key's errors, store_key_for_json).
 */
int store_detect_format(struct bri_store *s, bool check_key, struct bri_err *err);

/*
 * A new key from key_file, its kind from its bytes (seal_bytes_are_raw; a
 * passphrase gets fresh scrypt parameters), as init --key-file makes it.
 * *out: seal_free it.
 */
int store_key_new(const char *key_file, struct bri_seal **out, struct bri_err *err);

/*
 * The SQLite VFS that opens path, a writer's path of a format that writes
 * through a VFS of its own (pages: "/bri-pages/N"), or NULL for a file.
 */
const char *store_path_vfs(const char *path);

/*
 * Makes the store of format ops from now on: writes store.json (atomically,
 * synced), or for plain removes it. Nothing else: what the format needs
 * (ops->init) is made before. Sets s->ops on success. migrate's switch.
 */
int store_format_publish(struct bri_store *s, const struct bri_store_ops *ops, struct bri_err *err);

/* A list of backup names (migrate and purge collect them before changing the folder). */
#define NAME_LIST_MAX (1u << 20)
struct name_list {
	char **v;
	size_t n, cap;
};
/* Adds a copy of name: 0, -ENOMEM, or -EFBIG past NAME_LIST_MAX names. */
int name_list_add(struct name_list *l, const char *name);
bool name_list_has(const struct name_list *l, const char *name);
void name_list_free(struct name_list *l);

/*
 * The formats' sidecar_stat: file of the store folder, never through a
 * symlink. 0 with *st, -ENOENT when it is missing or no regular file, or
 * another negative errno.
 */
int store_stat_file(const struct bri_store *s, const char *file, struct stat *st);

/*
 * The formats' is_leftover: whether fname is a sidecar, spelled NAME +
 * suffix[kind] for some kind, whose backup, NAME + backup_suffix, is missing.
 */
bool store_sidecar_orphan(const struct bri_store *s, const char *fname,
                          const char *const suffix[BRI_SIDECAR_KINDS], const char *backup_suffix);

#endif
