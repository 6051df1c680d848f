/*
 * Unit tests of sealing (src/core/seal.c; SPEC.md section 5): a sealed blob
 * opens back to its bytes; one flipped bit anywhere, another key or another
 * context fails (AEAD); two seals of the same bytes differ (fresh nonces);
 * the key check tells the right key from a wrong one; a passphrase is
 * stretched by scrypt (same salt, same key; other salt, other key; the
 * trailing newline not part of it); a key file's kind from its bytes (a
 * 32-character passphrase is not a raw key); sealed lines round trip; a
 * context keyed once seals with a fresh nonce every time and opens in place.
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "../../src/core/seal.h"
#include "expect.h"
#include "testutil.h"

static struct bri_seal *raw_key(uint8_t fill)
{
	struct seal_params p;
	struct bri_seal *k = NULL;
	struct bri_err err = {0};
	uint8_t bytes[SEAL_KEY_LEN];

	memset(bytes, fill, sizeof(bytes));
	bytes[0] = 0; /* not printable: raw */
	EXPECT(seal_bytes_are_raw(bytes, sizeof(bytes)));
	EXPECT_EQ_INT(seal_params_new(false, &p, &err), 0);
	EXPECT_EQ_INT(seal_key_derive(bytes, sizeof(bytes), &p, &k, &err), 0);
	return k;
}

static void test_round_trip_and_tamper(void)
{
	struct bri_seal *k = raw_key(0xa5), *other = raw_key(0x5a);
	const char text[] = "CREATE TABLE memory(id INTEGER PRIMARY KEY, content TEXT)";
	size_t len = sizeof(text) - 1, blen = len + SEAL_OVERHEAD;
	uint8_t blob[sizeof(text) - 1 + SEAL_OVERHEAD], blob2[sizeof(blob)];
	char back[sizeof(text)];
	int failed = 0;

	EXPECT_EQ_INT(seal_data(k, "ctx", 3, text, len, blob), 0);
	EXPECT(memmem(blob, blen, "CREATE", 6) == NULL);
	memset(back, 0, sizeof(back));
	EXPECT_EQ_INT(seal_open(k, "ctx", 3, blob, blen, back), 0);
	EXPECT(memcmp(back, text, len) == 0);
	/* Fresh nonce: the same bytes sealed twice differ. */
	EXPECT_EQ_INT(seal_data(k, "ctx", 3, text, len, blob2), 0);
	EXPECT(memcmp(blob, blob2, blen) != 0);
	/* One flipped bit, anywhere: refused. */
	for (size_t at = 0; at < blen; at++)
		for (int bit = 0; bit < 8; bit++) {
			blob[at] ^= (uint8_t)(1u << bit);
			if (seal_open(k, "ctx", 3, blob, blen, back) != -EBADMSG)
				failed++;
			blob[at] ^= (uint8_t)(1u << bit);
		}
	EXPECT_EQ_INT(failed, 0);
	/* Another key, another context, a truncated blob: refused. */
	EXPECT_EQ_INT(seal_open(other, "ctx", 3, blob, blen, back), -EBADMSG);
	EXPECT_EQ_INT(seal_open(k, "ctz", 3, blob, blen, back), -EBADMSG);
	EXPECT_EQ_INT(seal_open(k, "ctx", 3, blob, blen - 1, back), -EBADMSG);
	EXPECT_EQ_INT(seal_open(k, "ctx", 3, blob, SEAL_OVERHEAD - 1, back), -EBADMSG);
	/* The right key still opens it. */
	EXPECT_EQ_INT(seal_open(k, "ctx", 3, blob, blen, back), 0);
	/* An empty plaintext seals too. */
	EXPECT_EQ_INT(seal_data(k, "", 0, "", 0, blob2), 0);
	EXPECT_EQ_INT(seal_open(k, "", 0, blob2, SEAL_OVERHEAD, back), 0);
	seal_free(k);
	seal_free(other);
}

/*
 * A kept context (seal_ctx): keyed once, then many blobs. Every seal draws a
 * fresh nonce (never one twice, though the context is the same); its blobs
 * and seal_data's open through either; a damaged blob fails and the context
 * then opens the next good one; another key's context opens nothing of k's;
 * a blob opens in place (the plaintext over the ciphertext).
 */
static void test_kept_context(void)
{
	enum { N = 512 };
	struct bri_seal *k = raw_key(0x33), *other = raw_key(0x44);
	struct seal_ctx *c = seal_ctx_new(k), *oc = seal_ctx_new(other);
	const char text[] = "a page's bytes, sealed again and again with one context";
	size_t len = sizeof(text) - 1, blen = len + SEAL_OVERHEAD;
	uint8_t(*blobs)[sizeof(text) - 1 + SEAL_OVERHEAD] = calloc(N, sizeof(*blobs));
	uint8_t once[sizeof(text) - 1 + SEAL_OVERHEAD];
	char back[sizeof(text)];
	int same = 0, bad = 0;

	EXPECT(c != NULL && oc != NULL && blobs != NULL);
	for (int i = 0; i < N; i++)
		EXPECT_EQ_INT(seal_data_ctx(c, "ctx", 3, text, len, blobs[i]), 0);
	/* No two nonces alike (nor ciphertexts): each blob is its own GCM message. */
	for (int i = 0; i < N; i++)
		for (int j = 0; j < i; j++) {
			same += memcmp(blobs[i] + SEAL_HDR_LEN, blobs[j] + SEAL_HDR_LEN,
			               SEAL_NONCE_LEN) == 0;
			same += memcmp(blobs[i] + SEAL_HDR_LEN + SEAL_NONCE_LEN,
			               blobs[j] + SEAL_HDR_LEN + SEAL_NONCE_LEN, len) == 0;
		}
	EXPECT_EQ_INT(same, 0);
	/* Each opens, through the context and without it. */
	for (int i = 0; i < N; i++) {
		memset(back, 0, sizeof(back));
		bad += seal_open_ctx(c, "ctx", 3, blobs[i], blen, back) != 0 ||
		       memcmp(back, text, len) != 0;
		memset(back, 0, sizeof(back));
		bad += seal_open(k, "ctx", 3, blobs[i], blen, back) != 0 ||
		       memcmp(back, text, len) != 0;
	}
	EXPECT_EQ_INT(bad, 0);
	EXPECT_EQ_INT(seal_data(k, "ctx", 3, text, len, once), 0);
	EXPECT_EQ_INT(seal_open_ctx(c, "ctx", 3, once, blen, back), 0);
	EXPECT(memcmp(back, text, len) == 0);
	/* A flipped bit anywhere fails; the context goes on opening good blobs. */
	for (size_t at = 0; at < blen; at++) {
		blobs[0][at] ^= 0x20;
		bad += seal_open_ctx(c, "ctx", 3, blobs[0], blen, back) != -EBADMSG;
		blobs[0][at] ^= 0x20;
		bad += seal_open_ctx(c, "ctx", 3, blobs[1], blen, back) != 0;
	}
	EXPECT_EQ_INT(bad, 0);
	/* Another context (what it is), another key: refused. */
	EXPECT_EQ_INT(seal_open_ctx(c, "ctz", 3, blobs[0], blen, back), -EBADMSG);
	EXPECT_EQ_INT(seal_open_ctx(oc, "ctx", 3, blobs[0], blen, back), -EBADMSG);
	/* In place: the plaintext where the ciphertext was, the rest untouched. */
	EXPECT_EQ_INT(
	    seal_open_ctx(c, "ctx", 3, blobs[2], blen, blobs[2] + SEAL_HDR_LEN + SEAL_NONCE_LEN),
	    0);
	EXPECT(memcmp(blobs[2] + SEAL_HDR_LEN + SEAL_NONCE_LEN, text, len) == 0);
	EXPECT(memcmp(blobs[2], "BRIs", 4) == 0);
	/* Empty plaintexts too. */
	EXPECT_EQ_INT(seal_data_ctx(c, "", 0, "", 0, once), 0);
	EXPECT_EQ_INT(seal_open_ctx(c, "", 0, once, SEAL_OVERHEAD, back), 0);
	seal_ctx_free(c);
	seal_ctx_free(oc);
	free(blobs);
	seal_free(k);
	seal_free(other);
}

static void test_key_check(void)
{
	struct bri_seal *k = raw_key(1), *other = raw_key(2);
	char *check = seal_check_make(k);

	EXPECT(check != NULL);
	EXPECT(seal_check_ok(k, check));
	EXPECT(!seal_check_ok(other, check));
	EXPECT(!seal_check_ok(k, "00"));
	EXPECT(!seal_check_ok(k, NULL));
	check[10] = check[10] == '0' ? '1' : '0';
	EXPECT(!seal_check_ok(k, check));
	free(check);
	seal_free(k);
	seal_free(other);
}

static void test_passphrase(void)
{
	struct bri_err err = {0};
	struct seal_params p, q;
	struct bri_seal *a = NULL, *b = NULL, *c = NULL, *d = NULL;
	const char *pass = "correct horse battery staple 32!"; /* 32 printable bytes */

	EXPECT_EQ_INT((int)strlen(pass), 32);
	EXPECT(!seal_bytes_are_raw((const uint8_t *)pass, 32));
	EXPECT_EQ_INT(seal_params_new(true, &p, &err), 0);
	EXPECT(p.passphrase && p.n == SEAL_SCRYPT_N && p.r == SEAL_SCRYPT_R);
	p.n = 1024; /* quicker; the cost is store.json's to say */
	EXPECT_EQ_INT(seal_key_derive((const uint8_t *)pass, 32, &p, &a, &err), 0);
	/* The line's newline is not part of the passphrase. */
	EXPECT_EQ_INT(seal_key_derive((const uint8_t *)"correct horse battery staple 32!\n", 33, &p,
	                              &b, &err),
	              0);
	EXPECT(a && b && memcmp(a->key, b->key, SEAL_KEY_LEN) == 0);
	/* Not the bytes themselves: stretched. */
	EXPECT(a && memcmp(a->key, pass, SEAL_KEY_LEN) != 0);
	/* Another salt, another key. */
	EXPECT_EQ_INT(seal_params_new(true, &q, &err), 0);
	q.n = 1024;
	EXPECT(memcmp(p.salt, q.salt, SEAL_SALT_LEN) != 0);
	EXPECT_EQ_INT(seal_key_derive((const uint8_t *)pass, 32, &q, &c, &err), 0);
	EXPECT(c && memcmp(a->key, c->key, SEAL_KEY_LEN) != 0);
	/* An empty passphrase, a raw key of the wrong length, absurd costs: refused. */
	EXPECT_EQ_INT(seal_key_derive((const uint8_t *)"\n", 1, &p, &d, &err), -EINVAL);
	q.passphrase = false;
	EXPECT_EQ_INT(seal_key_derive((const uint8_t *)pass, 31, &q, &d, &err), -EINVAL);
	q.passphrase = true;
	q.n = 1000;
	EXPECT_EQ_INT(seal_key_derive((const uint8_t *)pass, 32, &q, &d, &err), -EINVAL);
	EXPECT(d == NULL);
	seal_free(a);
	seal_free(b);
	seal_free(c);
}

static void test_key_file(void)
{
	char *dir = tu_tmpdir("seal"), *path = tu_fmt("%s/key", dir);
	struct bri_err err = {0};
	uint8_t *bytes = NULL, big[SEAL_KEY_FILE_MAX + 1];
	size_t len = 0;

	tu_write_str(path, "a passphrase\n");
	EXPECT_EQ_INT(seal_key_file_read(path, &bytes, &len, &err), 0);
	EXPECT(len == 13 && memcmp(bytes, "a passphrase\n", 13) == 0);
	seal_key_file_free(bytes, len);
	tu_write(path, "", 0);
	EXPECT_EQ_INT(seal_key_file_read(path, &bytes, &len, &err), -EINVAL);
	memset(big, 'x', sizeof(big));
	tu_write(path, big, sizeof(big));
	EXPECT_EQ_INT(seal_key_file_read(path, &bytes, &len, &err), -EFBIG);
	EXPECT(strstr(err.msg, "over") != NULL);
	EXPECT_EQ_INT(seal_key_file_read(dir, &bytes, &len, &err), -EINVAL);
	free(path);
	path = tu_fmt("%s/missing", dir);
	EXPECT_EQ_INT(seal_key_file_read(path, &bytes, &len, &err), -ENOENT);
	free(path);
	tu_tmpdir_done(dir);
}

static void test_lines(void)
{
	struct bri_store plain = {0}, sealed = {0};
	const char *line = "{\"operation\":\"create\",\"name\":\"daily\"}";
	char *out = NULL, *back = NULL;
	size_t n = 0, m = 0;

	sealed.seal = raw_key(7);
	EXPECT_EQ_INT(seal_line(&plain, "audit", line, strlen(line), &out, &n), 0);
	EXPECT_STREQ(out, line);
	free(out);
	EXPECT_EQ_INT(seal_line(&sealed, "audit", line, strlen(line), &out, &n), 0);
	EXPECT(out && strncmp(out, "sealed:", 7) == 0 && !strstr(out, "create") &&
	       !strchr(out, '\n') && strlen(out) == n);
	EXPECT_EQ_INT(seal_line_open(&sealed, "audit", out, n, &back, &m), 0);
	EXPECT_STREQ(back, line);
	EXPECT_EQ_INT((int)m, (int)strlen(line));
	free(back);
	/* Another file's line, a damaged one, one in the clear: refused with a key. */
	EXPECT_EQ_INT(seal_line_open(&sealed, "other", out, n, &back, &m), -EBADMSG);
	out[n / 2] = out[n / 2] == 'A' ? 'B' : 'A';
	EXPECT_EQ_INT(seal_line_open(&sealed, "audit", out, n, &back, &m), -EBADMSG);
	EXPECT_EQ_INT(seal_line_open(&sealed, "audit", line, strlen(line), &back, &m), -EBADMSG);
	free(out);
	seal_free(sealed.seal);
}

int main(void)
{
	test_round_trip_and_tamper();
	test_kept_context();
	test_key_check();
	test_passphrase();
	test_key_file();
	test_lines();
	return EXPECT_RESULT();
}
