/*
 * SHA-256 through OpenSSL's EVP interface: the only user of libcrypto. Files
 * are read in 1 MiB chunks so the SHA-NI code path runs at full speed. A
 * reader without a descriptor (the page store's) is read in 128 KiB chunks:
 * it assembles the bytes in memory, so longer reads save nothing, and
 * between two groups of its stream it warms the cache for verify's SQLite
 * reads (pages_read.c, warm_help), which a 1 MiB hash left waiting.
 */
#include "bri/checksum.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK_BYTES        (1u << 20)
#define READER_CHUNK_BYTES (128u << 10)

static void to_hex(const unsigned char *digest, unsigned len, char *hex)
{
	static const char digits[] = "0123456789abcdef";

	for (unsigned i = 0; i < len; i++) {
		hex[2 * i] = digits[digest[i] >> 4];
		hex[2 * i + 1] = digits[digest[i] & 15];
	}
	hex[2 * len] = '\0';
}

int checksum_buffer(const void *data, size_t len, char hex[BRI_CHECKSUM_HEX_LEN + 1])
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned dlen = 0;

	if (!EVP_Digest(data, len, digest, &dlen, EVP_sha256(), NULL))
		return -EIO;
	to_hex(digest, dlen, hex);
	return 0;
}

/* Reads the next bytes of a source at off: the count (0 at the end) or -errno. */
typedef ssize_t (*next_fn)(void *src, void *buf, size_t len, uint64_t off);

static ssize_t next_of_fd(void *src, void *buf, size_t len, uint64_t off)
{
	ssize_t n;

	(void)off; /* from the descriptor's own offset */
	do
		n = read(*(int *)src, buf, len);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

static ssize_t next_of_reader(void *src, void *buf, size_t len, uint64_t off)
{
	return bri_reader_pread(src, buf, len, off);
}

static int checksum(next_fn next, void *src, uint64_t total, size_t chunk,
                    const struct bri_op_ctx *ctx, char hex[BRI_CHECKSUM_HEX_LEN + 1],
                    struct bri_err *err)
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned dlen = 0;
	uint64_t done = 0;
	EVP_MD_CTX *md;
	char *buf;
	int rc = 0;

	buf = malloc(chunk);
	md = EVP_MD_CTX_new();
	if (!buf || !md) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	if (!EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
		rc = bri_err_set(err, -EIO, "SHA-256 is not available from libcrypto");
		goto out_free;
	}
	for (;;) {
		ssize_t n = next(src, buf, chunk, done);

		if (n < 0) {
			rc = bri_err_set(err, (int)n, "read error while hashing: %s",
					 strerror((int)-n));
			goto out_free;
		}
		if (n == 0)
			break;
		EVP_DigestUpdate(md, buf, (size_t)n);
		done += (uint64_t)n;
		if (bri_op_stopped(ctx)) {
			rc = bri_err_set(err, -ECANCELED, "stopped before the hash was complete");
			goto out_free;
		}
		if (ctx && ctx->progress)
			ctx->progress(ctx->progress_arg, "checksum", done, total);
	}
	EVP_DigestFinal_ex(md, digest, &dlen);
	to_hex(digest, dlen, hex);
out_free:
	EVP_MD_CTX_free(md);
	free(buf);
	return rc;
}

int bri_checksum_fd(int fd, uint64_t total, const struct bri_op_ctx *ctx,
		    char hex[BRI_CHECKSUM_HEX_LEN + 1], struct bri_err *err)
{
	return checksum(next_of_fd, &fd, total, CHUNK_BYTES, ctx, hex, err);
}

int bri_checksum_reader(struct bri_reader *r, const struct bri_op_ctx *ctx,
                        char hex[BRI_CHECKSUM_HEX_LEN + 1], struct bri_err *err)
{
	if (r->fd >= 0)
		posix_fadvise(r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	return checksum(next_of_reader, r, r->size, r->fd >= 0 ? CHUNK_BYTES : READER_CHUNK_BYTES,
	                ctx, hex, err);
}

int bri_checksum_path(const char *path, const struct bri_op_ctx *ctx,
		      char hex[BRI_CHECKSUM_HEX_LEN + 1], struct bri_err *err)
{
	struct stat st;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return bri_err_set(err, -errno, "cannot open %s: %s", path, strerror(errno));
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	rc = fstat(fd, &st);
	rc = bri_checksum_fd(fd, rc == 0 ? (uint64_t)st.st_size : 0, ctx, hex, err);
	close(fd);
	return rc;
}
