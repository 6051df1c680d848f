/*
 * Internal to the store's files (store.c, store_format.c, store_plain.c):
 * choosing a store's format when it is opened. Not part of the contract:
 * the names have no bri_ prefix, so libbri does not export them.
 */
#ifndef BRI_STORE_INT_H
#define BRI_STORE_INT_H

#include "bri/store.h"

/*
 * Sets s->ops: the format named by the store's store.json, or plain when
 * there is none. Returns 0, or a negative errno with err filled
 * (-EPROTONOSUPPORT for a format this build does not know, -EINVAL for a
 * store.json that cannot be read as one).
 */
int store_detect_format(struct bri_store *s, struct bri_err *err);

/*
 * The SQLite VFS that opens path, a writer's path of a format that writes
 * through a VFS of its own (pages: "/bri-pages/N"), or NULL for a file.
 */
const char *store_path_vfs(const char *path);

#endif
