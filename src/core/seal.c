/*
 * Sealing (seal.h): key files, scrypt through EVP_KDF, AES-256-GCM through
 * EVP with a fresh random nonce per blob, the key check, and the store-level
 * helpers that seal a whole file or one line when the store has a key.
 */
#include "seal.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bri/log.h"

#define SEAL_VERSION 1
#define SEAL_AES_GCM 1
#define CHECK_TEXT   "bri-backup key check 1"
#define CHECK_CTX    "store.json key_check"
#define LINE_PREFIX  "sealed:"

int seal_key_file_read(const char *path, uint8_t **out, size_t *len, struct bri_err *err)
{
	uint8_t *buf = NULL;
	struct stat st;
	size_t got = 0;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return bri_err_set(err, -errno, "cannot read the key file %s: %s", path,
		                   strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = bri_err_set(err, -EINVAL, "the key file %s is not a regular file", path);
		goto out_close;
	}
	if (st.st_mode & 0077)
		bri_log(BRI_LOG_WARN,
		        "the key file %s can be read by other users (mode %03o): chmod 600 it",
		        path, (unsigned)(st.st_mode & 0777));
	buf = malloc(SEAL_KEY_FILE_MAX + 1);
	if (!buf) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_close;
	}
	for (;;) {
		ssize_t n = read(fd, buf + got, SEAL_KEY_FILE_MAX + 1 - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = bri_err_set(err, -errno, "cannot read the key file %s: %s", path,
			                 strerror(errno));
			break;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got > SEAL_KEY_FILE_MAX) {
			rc = bri_err_set(err, -EFBIG,
			                 "the key file %s is over %d bytes (a key file holds 32 "
			                 "random bytes or a passphrase)",
			                 path, SEAL_KEY_FILE_MAX);
			break;
		}
	}
	if (rc == 0 && got == 0)
		rc = bri_err_set(err, -EINVAL, "the key file %s is empty", path);
	if (rc < 0) {
		seal_key_file_free(buf, SEAL_KEY_FILE_MAX + 1);
		buf = NULL;
	}
out_close:
	close(fd);
	*out = buf;
	*len = got;
	return rc;
}

void seal_key_file_free(uint8_t *bytes, size_t len)
{
	if (bytes)
		OPENSSL_cleanse(bytes, len);
	free(bytes);
}

bool seal_bytes_are_raw(const uint8_t *bytes, size_t len)
{
	if (len != SEAL_KEY_LEN)
		return false;
	for (size_t i = 0; i < len; i++)
		if (bytes[i] < 0x20 || bytes[i] > 0x7e)
			return true;
	return false;
}

int seal_params_new(bool passphrase, struct seal_params *p, struct bri_err *err)
{
	memset(p, 0, sizeof(*p));
	p->passphrase = passphrase;
	if (!passphrase)
		return 0;
	p->n = SEAL_SCRYPT_N;
	p->r = SEAL_SCRYPT_R;
	p->p = SEAL_SCRYPT_P;
	if (RAND_bytes(p->salt, sizeof(p->salt)) != 1)
		return bri_err_set(err, -EIO, "no random bytes for the key's salt");
	return 0;
}

static int scrypt(const uint8_t *pass, size_t len, const struct seal_params *p,
                  uint8_t key[SEAL_KEY_LEN])
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, OSSL_KDF_NAME_SCRYPT, NULL);
	EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	uint64_t n = p->n;
	uint32_t r = p->r, par = p->p;
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)pass, len),
	    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)p->salt,
	                                      sizeof(p->salt)),
	    OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
	    OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
	    OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &par),
	    OSSL_PARAM_construct_end(),
	};
	int ok = ctx && EVP_KDF_derive(ctx, key, SEAL_KEY_LEN, params) == 1;

	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
	return ok ? 0 : -EIO;
}

int seal_key_derive(const uint8_t *bytes, size_t len, const struct seal_params *p,
                    struct bri_seal **out, struct bri_err *err)
{
	struct bri_seal *k;

	if (!p->passphrase && len != SEAL_KEY_LEN)
		return bri_err_set(err, -EINVAL,
		                   "the store's key is a raw key of 32 bytes (store.json: key "
		                   "\"raw\"); the key file has %zu",
		                   len);
	if (p->passphrase) {
		/* A passphrase is a line: one trailing newline is not part of it. */
		if (len > 0 && bytes[len - 1] == '\n')
			len--;
		if (len > 0 && bytes[len - 1] == '\r')
			len--;
		if (len == 0)
			return bri_err_set(err, -EINVAL, "the key file's passphrase is empty");
		if (p->n < 2 || (p->n & (p->n - 1)) || p->n > (1u << 24) || p->r == 0 ||
		    p->r > 64 || p->p == 0 || p->p > 16)
			return bri_err_set(err, -EINVAL,
			                   "store.json's scrypt parameters are out of range "
			                   "(N a power of two up to 2^24, r 1-64, p 1-16)");
	}
	k = OPENSSL_secure_zalloc(sizeof(*k));
	if (!k)
		k = calloc(1, sizeof(*k));
	if (!k)
		return bri_err_set(err, -ENOMEM, "out of memory");
	k->params = *p;
	k->cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	if (!p->passphrase) {
		memcpy(k->key, bytes, SEAL_KEY_LEN);
	} else if (scrypt(bytes, len, p, k->key) < 0) {
		seal_free(k);
		return bri_err_set(err, -EIO, "scrypt (OpenSSL EVP_KDF) failed");
	}
	*out = k;
	return 0;
}

void seal_free(struct bri_seal *k)
{
	if (!k)
		return;
	EVP_CIPHER_free(k->cipher);
	OPENSSL_cleanse(k, sizeof(*k));
	if (CRYPTO_secure_allocated(k))
		OPENSSL_secure_free(k);
	else
		free(k);
}

/*
 * AES-256-GCM of in (len) with the header and ctx as additional data, on c,
 * a context keyed already: only the nonce is set here, which starts a new
 * message (OpenSSL keeps the key's schedule and GCM's hash key). out may
 * be in itself (GCM works in place).
 */
static int gcm_run(EVP_CIPHER_CTX *c, bool enc, const uint8_t hdr[SEAL_HDR_LEN],
                   const uint8_t nonce[SEAL_NONCE_LEN], const void *ctx, size_t ctx_len,
                   const uint8_t *in, size_t len, uint8_t *out, uint8_t tag[SEAL_TAG_LEN])
{
	int n, ok;

	if (len > (size_t)INT32_MAX || ctx_len > (size_t)INT32_MAX)
		return -EFBIG;
	ok = EVP_CipherInit_ex(c, NULL, NULL, NULL, nonce, enc) == 1 &&
	     EVP_CipherUpdate(c, NULL, &n, hdr, SEAL_HDR_LEN) == 1 &&
	     (ctx_len == 0 || EVP_CipherUpdate(c, NULL, &n, ctx, (int)ctx_len) == 1) &&
	     (len == 0 || EVP_CipherUpdate(c, out, &n, in, (int)len) == 1);
	if (ok && !enc)
		ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN, tag) == 1;
	if (ok)
		ok = EVP_CipherFinal_ex(c, out + len, &n) == 1;
	if (ok && enc)
		ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN, tag) == 1;
	return ok ? 0 : enc ? -EIO : -EBADMSG;
}

/* A context for k's key, its schedule made (gcm_run sets each message's nonce), or NULL. */
static EVP_CIPHER_CTX *gcm_keyed(const struct bri_seal *k)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();

	if (c && (EVP_CipherInit_ex(c, k->cipher ? k->cipher : EVP_aes_256_gcm(), NULL, NULL, NULL,
	                            0) != 1 ||
	          EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, SEAL_NONCE_LEN, NULL) != 1 ||
	          EVP_CipherInit_ex(c, NULL, NULL, k->key, NULL, 0) != 1)) {
		EVP_CIPHER_CTX_free(c);
		c = NULL;
	}
	return c;
}

struct seal_ctx {
	const struct bri_seal *k;
	EVP_CIPHER_CTX *evp; /* keyed with k->key (gcm_keyed) */
};

struct seal_ctx *seal_ctx_new(const struct bri_seal *k)
{
	struct seal_ctx *c = calloc(1, sizeof(*c));

	if (c && !(c->evp = gcm_keyed(k))) {
		free(c);
		c = NULL;
	}
	if (c)
		c->k = k;
	return c;
}

void seal_ctx_free(struct seal_ctx *c)
{
	if (!c)
		return;
	EVP_CIPHER_CTX_free(c->evp); /* cleanses the key's schedule */
	free(c);
}

/* gcm_run on c's context, or on one made for this call when c is NULL. */
static int gcm(struct seal_ctx *c, const struct bri_seal *k, bool enc,
               const uint8_t hdr[SEAL_HDR_LEN], const uint8_t nonce[SEAL_NONCE_LEN],
               const void *ctx, size_t ctx_len, const uint8_t *in, size_t len, uint8_t *out,
               uint8_t tag[SEAL_TAG_LEN])
{
	EVP_CIPHER_CTX *e = c ? c->evp : gcm_keyed(k);
	int rc;

	if (!e)
		return -ENOMEM;
	rc = gcm_run(e, enc, hdr, nonce, ctx, ctx_len, in, len, out, tag);
	if (!c)
		EVP_CIPHER_CTX_free(e);
	return rc;
}

static int seal_with(struct seal_ctx *c, const struct bri_seal *k, const void *ctx, size_t ctx_len,
                     const void *in, size_t len, void *out)
{
	uint8_t *o = out;

	memcpy(o, (const uint8_t[4]){'B', 'R', 'I', 's'}, 4); /* a magic, not a string */
	o[4] = SEAL_VERSION;
	o[5] = SEAL_AES_GCM;
	o[6] = o[7] = 0;
	/* A fresh random nonce for every blob, whether the context is new or kept. */
	if (RAND_bytes(o + SEAL_HDR_LEN, SEAL_NONCE_LEN) != 1)
		return -EIO;
	return gcm(c, k, true, o, o + SEAL_HDR_LEN, ctx, ctx_len, in, len,
	           o + SEAL_HDR_LEN + SEAL_NONCE_LEN, o + SEAL_HDR_LEN + SEAL_NONCE_LEN + len);
}

static int open_with(struct seal_ctx *c, const struct bri_seal *k, const void *ctx, size_t ctx_len,
                     const void *in, size_t len, void *out)
{
	const uint8_t *i = in;
	uint8_t tag[SEAL_TAG_LEN];
	size_t plen;

	if (len < SEAL_OVERHEAD || memcmp(i, "BRIs", 4) != 0 || i[4] != SEAL_VERSION ||
	    i[5] != SEAL_AES_GCM || i[6] || i[7])
		return -EBADMSG;
	plen = len - SEAL_OVERHEAD;
	memcpy(tag, i + len - SEAL_TAG_LEN, SEAL_TAG_LEN);
	return gcm(c, k, false, i, i + SEAL_HDR_LEN, ctx, ctx_len,
	           i + SEAL_HDR_LEN + SEAL_NONCE_LEN, plen, out, tag);
}

int seal_data(const struct bri_seal *k, const void *ctx, size_t ctx_len, const void *in, size_t len,
              void *out)
{
	return seal_with(NULL, k, ctx, ctx_len, in, len, out);
}

int seal_open(const struct bri_seal *k, const void *ctx, size_t ctx_len, const void *in, size_t len,
              void *out)
{
	return open_with(NULL, k, ctx, ctx_len, in, len, out);
}

int seal_data_ctx(struct seal_ctx *c, const void *ctx, size_t ctx_len, const void *in, size_t len,
                  void *out)
{
	return seal_with(c, c->k, ctx, ctx_len, in, len, out);
}

int seal_open_ctx(struct seal_ctx *c, const void *ctx, size_t ctx_len, const void *in, size_t len,
                  void *out)
{
	return open_with(c, c->k, ctx, ctx_len, in, len, out);
}

char *seal_check_make(const struct bri_seal *k)
{
	uint8_t blob[sizeof(CHECK_TEXT) - 1 + SEAL_OVERHEAD];
	char *hex = malloc(2 * sizeof(blob) + 1);

	if (!hex)
		return NULL;
	if (seal_data(k, CHECK_CTX, strlen(CHECK_CTX), CHECK_TEXT, sizeof(CHECK_TEXT) - 1, blob) <
	    0) {
		free(hex);
		return NULL;
	}
	for (size_t i = 0; i < sizeof(blob); i++)
		snprintf(hex + 2 * i, 3, "%02x", blob[i]);
	return hex;
}

static int unhex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

bool seal_check_ok(const struct bri_seal *k, const char *hex)
{
	uint8_t blob[sizeof(CHECK_TEXT) - 1 + SEAL_OVERHEAD], text[sizeof(CHECK_TEXT) - 1];

	if (!hex || strlen(hex) != 2 * sizeof(blob))
		return false;
	for (size_t i = 0; i < sizeof(blob); i++) {
		int hi = unhex(hex[2 * i]), lo = unhex(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		blob[i] = (uint8_t)(hi << 4 | lo);
	}
	return seal_open(k, CHECK_CTX, strlen(CHECK_CTX), blob, sizeof(blob), text) == 0 &&
	       memcmp(text, CHECK_TEXT, sizeof(text)) == 0;
}

int store_read_sealed(const struct bri_store *s, const char *file, size_t max, char **out,
                      size_t *len)
{
	char *data, *plain;
	size_t n;
	int rc;

	if (!s->seal)
		return bri_store_read_file(s, file, max, out, len);
	rc = bri_store_read_file(s, file, max + SEAL_OVERHEAD, &data, &n);
	if (rc < 0)
		return rc;
	plain = n >= SEAL_OVERHEAD ? malloc(n - SEAL_OVERHEAD + 1) : NULL;
	if (!plain) {
		free(data);
		return n >= SEAL_OVERHEAD ? -ENOMEM : -EBADMSG;
	}
	rc = seal_open(s->seal, file, strlen(file), data, n, plain);
	free(data);
	if (rc < 0) {
		free(plain);
		return rc;
	}
	plain[n - SEAL_OVERHEAD] = '\0';
	*out = plain;
	*len = n - SEAL_OVERHEAD;
	return 0;
}

int store_write_sealed(struct bri_store *s, const char *file, const void *data, size_t len,
                       struct bri_err *err)
{
	uint8_t *blob;
	int rc;

	if (!s->seal)
		return bri_store_write_file(s, file, data, len, err);
	blob = malloc(len + SEAL_OVERHEAD);
	if (!blob)
		return bri_err_set(err, -ENOMEM, "out of memory");
	rc = seal_data(s->seal, file, strlen(file), data, len, blob);
	if (rc < 0)
		rc = bri_err_set(err, rc, "cannot seal %s/%s: %s", s->dir, file, strerror(-rc));
	else
		rc = bri_store_write_file(s, file, blob, len + SEAL_OVERHEAD, err);
	free(blob);
	return rc;
}

int seal_line(const struct bri_store *s, const char *what, const char *line, size_t len, char **out,
              size_t *out_len)
{
	size_t blen = len + SEAL_OVERHEAD, plen = strlen(LINE_PREFIX);
	uint8_t *blob;
	char *text;
	int n;

	if (!s->seal) {
		text = strndup(line, len);
		if (!text)
			return -ENOMEM;
		*out = text;
		*out_len = len;
		return 0;
	}
	blob = malloc(blen);
	text = malloc(plen + 4 * ((blen + 2) / 3) + 1);
	if (!blob || !text || seal_data(s->seal, what, strlen(what), line, len, blob) < 0) {
		free(blob);
		free(text);
		return -ENOMEM;
	}
	memcpy(text, LINE_PREFIX, plen);
	n = EVP_EncodeBlock((unsigned char *)text + plen, blob, (int)blen);
	free(blob);
	*out = text;
	*out_len = plen + (size_t)n;
	return 0;
}

int seal_line_open(const struct bri_store *s, const char *what, const char *line, size_t len,
                   char **out, size_t *out_len)
{
	size_t plen = strlen(LINE_PREFIX), b64 = len - plen, blen;
	uint8_t *blob;
	char *text;
	int n, rc;

	if (!s->seal) {
		text = strndup(line, len);
		if (!text)
			return -ENOMEM;
		*out = text;
		*out_len = strlen(text);
		return 0;
	}
	if (len < plen || memcmp(line, LINE_PREFIX, plen) != 0 || b64 % 4 || b64 > INT32_MAX)
		return -EBADMSG;
	blob = malloc(b64 / 4 * 3 + 1);
	if (!blob)
		return -ENOMEM;
	n = EVP_DecodeBlock(blob, (const unsigned char *)line + plen, (int)b64);
	if (n < 0) {
		free(blob);
		return -EBADMSG;
	}
	/* EVP_DecodeBlock counts the padding's zero bytes too. */
	blen = (size_t)n;
	if (b64 >= 1 && line[len - 1] == '=')
		blen--;
	if (b64 >= 2 && line[len - 2] == '=')
		blen--;
	text = blen >= SEAL_OVERHEAD ? malloc(blen - SEAL_OVERHEAD + 1) : NULL;
	if (!text) {
		free(blob);
		return blen >= SEAL_OVERHEAD ? -ENOMEM : -EBADMSG;
	}
	rc = seal_open(s->seal, what, strlen(what), blob, blen, text);
	free(blob);
	if (rc < 0) {
		free(text);
		return rc;
	}
	text[blen - SEAL_OVERHEAD] = '\0';
	*out = text;
	*out_len = blen - SEAL_OVERHEAD;
	return 0;
}
