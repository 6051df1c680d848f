/*
 * Internal: the SQLite VFS over a bri_reader (reader_vfs.c), used by
 * snapshot.c's snapshot_open_reader. Not part of the contract: the
 * names have no bri_ prefix, so libbri does not export them.
 */
#ifndef BRI_READER_VFS_H
#define BRI_READER_VFS_H

#include <stddef.h>
#include <stdint.h>

#include "bri/store.h"

/*
 * Makes r openable by SQLite until reader_vfs_detach(*id): writes into
 * uri (len bytes) the URI to open, read-only, with the VFS whose name is
 * returned. Returns NULL when the VFS cannot be registered or out of memory.
 */
const char *reader_vfs_attach(struct bri_reader *r, char *uri, size_t len, uint64_t *id);

/* Forgets the reader attached as id; connections already open keep reading it. */
void reader_vfs_detach(uint64_t id);

#endif
