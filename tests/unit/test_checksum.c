/*
 * Unit tests of SHA-256 (include/bri/checksum.h): the FIPS 180-2 known
 * vectors on buffers, files much larger than any read chunk hashed equal to
 * the same bytes in memory, hashing from an fd's current offset, from a pipe,
 * progress reports, and errors for missing files and directories.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bri/checksum.h"
#include "expect.h"
#include "testutil.h"
#include "../../src/core/internal.h"

#define SHA_EMPTY     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SHA_ABC       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA_448       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
#define SHA_MILLION_A "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"

static bool lower_hex64(const char *h)
{
	if (strlen(h) != BRI_CHECKSUM_HEX_LEN)
		return false;
	for (const char *p = h; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

static void test_vectors(void)
{
	char hex[BRI_CHECKSUM_HEX_LEN + 1];
	EXPECT_EQ_INT(checksum_buffer("", 0, hex), 0);
	EXPECT_STREQ(hex, SHA_EMPTY);
	EXPECT_EQ_INT(checksum_buffer("abc", 3, hex), 0);
	EXPECT_STREQ(hex, SHA_ABC);
	const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	EXPECT_EQ_INT(checksum_buffer(m448, strlen(m448), hex), 0);
	EXPECT_STREQ(hex, SHA_448);
	char *million = malloc(1000000);
	memset(million, 'a', 1000000);
	EXPECT_EQ_INT(checksum_buffer(million, 1000000, hex), 0);
	EXPECT_STREQ(hex, SHA_MILLION_A);
	EXPECT(lower_hex64(hex));
	free(million);
	/* Only len bytes count. */
	EXPECT_EQ_INT(checksum_buffer("abcdef", 3, hex), 0);
	EXPECT_STREQ(hex, SHA_ABC);
}

struct progress_log {
	int calls;      /* how many reports */
	uint64_t last;  /* last done */
	uint64_t total; /* total of the last report */
	bool monotonic; /* done never went backwards */
	bool bad_phase; /* a phase other than "checksum" */
	bool over;      /* done > total */
};

static void on_progress(void *arg, const char *phase, uint64_t done, uint64_t total)
{
	struct progress_log *p = arg;
	if (!phase || strcmp(phase, "checksum") != 0)
		p->bad_phase = true;
	if (p->calls > 0 && done < p->last)
		p->monotonic = false;
	if (total && done > total)
		p->over = true;
	p->calls++;
	p->last = done;
	p->total = total;
}

static void test_files(const char *base)
{
	struct bri_op_ctx ctx = bri_op_ctx_self("cli");
	struct bri_err err = {0};
	char hex[BRI_CHECKSUM_HEX_LEN + 1], want[BRI_CHECKSUM_HEX_LEN + 1];

	/* 3 MiB + 17 bytes of varied data: larger than any sensible chunk. */
	size_t n = (3u << 20) + 17;
	unsigned char *data = malloc(n);
	uint32_t x = 12345;
	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		data[i] = (unsigned char)(x >> 16);
	}
	char *path = tu_fmt("%s/big.bin", base);
	tu_write(path, data, n);
	EXPECT_EQ_INT(checksum_buffer(data, n, want), 0);

	memset(hex, 0, sizeof(hex));
	EXPECT_EQ_INT(bri_checksum_path(path, &ctx, hex, &err), 0);
	EXPECT_STREQ(hex, want);

	/* With progress: phase "checksum", done never beyond total, forward only. */
	struct progress_log log = {.monotonic = true};
	ctx.progress = on_progress;
	ctx.progress_arg = &log;
	memset(hex, 0, sizeof(hex));
	EXPECT_EQ_INT(bri_checksum_path(path, &ctx, hex, &err), 0);
	EXPECT_STREQ(hex, want);
	EXPECT(log.calls >= 1);
	EXPECT(!log.bad_phase);
	EXPECT(log.monotonic);
	EXPECT(!log.over);
	EXPECT(log.last <= n);
	ctx.progress = NULL;

	/* bri_checksum_fd hashes from the current offset to EOF. */
	int fd = open(path, O_RDONLY);
	EXPECT(fd >= 0);
	EXPECT_EQ_INT(bri_checksum_fd(fd, n, &ctx, hex, &err), 0);
	EXPECT_STREQ(hex, want);
	EXPECT(lseek(fd, 1000, SEEK_SET) == 1000);
	EXPECT_EQ_INT(checksum_buffer(data + 1000, n - 1000, want), 0);
	EXPECT_EQ_INT(bri_checksum_fd(fd, n - 1000, &ctx, hex, &err), 0);
	EXPECT_STREQ(hex, want);
	/* total 0 (unknown) works the same. */
	EXPECT(lseek(fd, 1000, SEEK_SET) == 1000);
	EXPECT_EQ_INT(bri_checksum_fd(fd, 0, &ctx, hex, &err), 0);
	EXPECT_STREQ(hex, want);
	/* At EOF: the empty hash. */
	EXPECT_EQ_INT(bri_checksum_fd(fd, 0, &ctx, hex, &err), 0);
	EXPECT_STREQ(hex, SHA_EMPTY);
	close(fd);

	/* From a pipe (not seekable, data arriving in pieces). */
	int pfd[2];
	EXPECT(pipe(pfd) == 0);
	pid_t child = fork();
	if (child == 0) {
		close(pfd[0]);
		size_t off = 0;
		while (off < n) {
			size_t piece = n - off < 7777 ? n - off : 7777;
			ssize_t w = write(pfd[1], data + off, piece);
			if (w <= 0)
				_exit(1);
			off += (size_t)w;
		}
		_exit(0);
	}
	close(pfd[1]);
	EXPECT_EQ_INT(checksum_buffer(data, n, want), 0);
	EXPECT_EQ_INT(bri_checksum_fd(pfd[0], 0, &ctx, hex, &err), 0);
	EXPECT_STREQ(hex, want);
	close(pfd[0]);
	waitpid(child, NULL, 0);

	/* An empty file. */
	char *empty = tu_fmt("%s/empty", base);
	tu_write(empty, "", 0);
	EXPECT_EQ_INT(bri_checksum_path(empty, &ctx, hex, &err), 0);
	EXPECT_STREQ(hex, SHA_EMPTY);

	/* Errors: missing file, a directory; err filled. */
	char *missing = tu_fmt("%s/missing", base);
	memset(&err, 0, sizeof(err));
	int rc = bri_checksum_path(missing, &ctx, hex, &err);
	EXPECT_EQ_INT(rc, -ENOENT);
	EXPECT_EQ_INT(err.code, rc);
	EXPECT(err.msg[0] != '\0');
	memset(&err, 0, sizeof(err));
	rc = bri_checksum_path(base, &ctx, hex, &err);
	EXPECT(rc < 0);
	EXPECT_EQ_INT(err.code, rc);
	fd = open(path, O_WRONLY);
	memset(&err, 0, sizeof(err));
	rc = bri_checksum_fd(fd, 0, &ctx, hex, &err);
	EXPECT_MSG(rc == -EBADF, "checksum of a write-only fd: %d", rc);
	close(fd);

	free(missing);
	free(empty);
	free(path);
	free(data);
}

int main(void)
{
	char *base = tu_tmpdir("checksum");
	test_vectors();
	test_files(base);
	tu_tmpdir_done(base);
	return EXPECT_RESULT();
}
