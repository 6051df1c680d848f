/*
 * Internal to the page store's files: what store_pages.c (the format, its
 * names, sidecars and ops table), pages_read.c (the reader) and
 * pages_write.c (the writer) share. Not part of the contract: the names
 * have no bri_ prefix, so libbri does not export them.
 */
#ifndef BRI_PAGES_INT_H
#define BRI_PAGES_INT_H

#include <stddef.h>
#include <stdint.h>

#include "bri/checksum.h"
#include "bri/store.h"

/* A file name of the store folder: a backup's name and a suffix. */
#define FILE_MAX (BRI_NAME_MAX + 16)

/* store_pages.c: NAME.manifest, the file that is backup NAME. */
void pages_manifest_file(const char *name, char file[FILE_MAX]);
/* store_pages.c: bri_store_ops.sidecar_write, backup name's sidecar kind written sealed. */
int pages_sidecar_write(struct bri_store *s, const char *name, enum bri_sidecar kind,
                        const void *data, size_t len, struct bri_err *err);
/* store_pages.c: bri_store_ops.sidecar_remove, backup name's sidecar kind removed. */
int pages_sidecar_remove(struct bri_store *s, const char *name, enum bri_sidecar kind);

/* pages_read.c: bri_store_ops.open_reader, a reader of backup name's manifest and pages. */
int pages_open_reader(const struct bri_store *s, const char *name, struct bri_reader **out,
                      struct bri_err *err);

/* pages_write.c: bri_store_ops.write_begin, a writer through the bri-pages VFS. */
int pages_write_begin(struct bri_store *s, const char *name, struct bri_backup_writer **out,
                      struct bri_err *err);
/* pages_write.c: bri_store_ops.write_digest, the copy's size and SHA-256 from its pages. */
int pages_write_digest(struct bri_backup_writer *w, uint64_t *size,
                       char hex[BRI_CHECKSUM_HEX_LEN + 1], struct bri_err *err);
/* pages_write.c: bri_store_ops.write_data, the database's bytes given verbatim. */
int pages_write_data(struct bri_backup_writer *w, const void *buf, size_t len, uint64_t off,
                     struct bri_err *err);
/* pages_write.c: bri_store_ops.write_commit, the pack, the metadata, then the manifest. */
int pages_write_commit(struct bri_backup_writer *w, const char *meta, size_t len,
                       struct bri_err *err);
/* pages_write.c: bri_store_ops.write_end, the writer closed (uncommitted: its pack goes). */
void pages_write_end(struct bri_backup_writer *w);

#endif
