/*
 * SHA-256 of files and buffers through OpenSSL's EVP interface (the only
 * user of libcrypto), read in large chunks so SHA-NI runs at full speed.
 */
#ifndef BRI_CHECKSUM_H
#define BRI_CHECKSUM_H

#include <stddef.h>

#include "bri/common.h"
#include "bri/store.h"

#define BRI_CHECKSUM_HEX_LEN 64

/*
 * SHA-256 of everything readable from fd (from its current offset to EOF).
 * Reports progress (phase "checksum") against total bytes when ctx has a
 * progress function. Returns 0 or a negative errno (-ECANCELED when ctx
 * asked it to stop: bri_op_stopped, checked after each chunk).
 */
int bri_checksum_fd(int fd, uint64_t total, const struct bri_op_ctx *ctx,
		    char hex[BRI_CHECKSUM_HEX_LEN + 1], struct bri_err *err);

/* As bri_checksum_fd on all the bytes r reads (a backup of any store format). */
int bri_checksum_reader(struct bri_reader *r, const struct bri_op_ctx *ctx,
			char hex[BRI_CHECKSUM_HEX_LEN + 1], struct bri_err *err);

/* As bri_checksum_fd on the file at path. */
int bri_checksum_path(const char *path, const struct bri_op_ctx *ctx,
		      char hex[BRI_CHECKSUM_HEX_LEN + 1], struct bri_err *err);

#endif
