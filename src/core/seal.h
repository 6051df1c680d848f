/*
 * Sealing (SPEC.md section 5): what an encrypted page store keeps on disk
 * goes through here. A key is 32 bytes: the key file's own bytes (kind
 * "raw") or a passphrase stretched with scrypt through OpenSSL 3's EVP_KDF
 * (kind "passphrase", with its N, r, p and salt). store.json records the
 * kind and the KDF's parameters, never the key, and a sealed known text (the
 * key check) so a wrong key is refused when the store is opened, before
 * anything is served or written.
 *
 * A sealed blob: "BRIs", version 1, cipher 1 (AES-256-GCM), two zero bytes,
 * a 12-byte nonce (random, fresh for every blob), the ciphertext, the 16-byte
 * tag. The 8 header bytes and the caller's context (what the blob is: a
 * file name, a pack group's header) are the AEAD's additional data, so a
 * blob moved to another place, or any flipped bit, fails to open (-EBADMSG).
 *
 * Store-level helpers: bri-style reads and writes of a whole store file that
 * seal when the store has a key and pass through when it has none, so every
 * sidecar, report and secret goes through one place. Not part of the
 * contract: names without the bri_ prefix.
 */
#ifndef BRI_SEAL_H
#define BRI_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bri/store.h"

#define SEAL_KEY_LEN   32
#define SEAL_SALT_LEN  16
#define SEAL_HDR_LEN   8
#define SEAL_NONCE_LEN 12
#define SEAL_TAG_LEN   16
/* Bytes a sealed blob has beyond its plaintext. */
#define SEAL_OVERHEAD (SEAL_HDR_LEN + SEAL_NONCE_LEN + SEAL_TAG_LEN)
/* A key file holds at most this much (a passphrase is a line, a raw key 32 bytes). */
#define SEAL_KEY_FILE_MAX 4096
/* The environment variable naming the key file when no option does. */
#define SEAL_KEY_ENV "BRI_KEY_FILE"

/* How a store's key is made from its key file. */
struct seal_params {
	bool passphrase; /* false: the file is the 32-byte key itself */
	uint64_t n;      /* scrypt's cost N (a power of two) */
	uint32_t r, p;   /* scrypt's block size and parallelism */
	uint8_t salt[SEAL_SALT_LEN];
};

/* scrypt's cost for a new store: N 2^15, r 8, p 1 (32 MiB, about 0.1 s). */
#define SEAL_SCRYPT_N 32768u
#define SEAL_SCRYPT_R 8u
#define SEAL_SCRYPT_P 1u

/* A store's key, ready to seal and open. */
struct bri_seal {
	uint8_t key[SEAL_KEY_LEN];
	struct seal_params params;
	void *cipher; /* EVP_CIPHER of AES-256-GCM, fetched once (OpenSSL 3's explicit
	                 fetch; NULL: EVP_aes_256_gcm() at each use) */
};

/*
 * Reads a key file (at most SEAL_KEY_FILE_MAX bytes) into a malloc'd buffer
 * (zero it before freeing: seal_key_file_free). A symlink is followed (a
 * key file is the user's to place).
 */
int seal_key_file_read(const char *path, uint8_t **out, size_t *len, struct bri_err *err);
void seal_key_file_free(uint8_t *bytes, size_t len);

/*
 * The kind of key a new store takes from the file's bytes: exactly 32 bytes
 * with at least one that is not printable text are a raw key; anything
 * else is a passphrase (one trailing newline dropped). 32 random bytes are
 * all printable once in about 10^14 tries.
 */
bool seal_bytes_are_raw(const uint8_t *bytes, size_t len);

/*
 * Fresh parameters for a new store: raw, or a passphrase with scrypt's
 * default cost and a random salt.
 */
int seal_params_new(bool passphrase, struct seal_params *p, struct bri_err *err);

/*
 * Makes the key from the file's bytes and the store's parameters: a raw key
 * must be exactly 32 bytes; a passphrase must not be empty. *out is
 * malloc'd (seal_free).
 */
int seal_key_derive(const uint8_t *bytes, size_t len, const struct seal_params *p,
                    struct bri_seal **out, struct bri_err *err);
void seal_free(struct bri_seal *k);

/* Seals len bytes of in into out (len + SEAL_OVERHEAD bytes), bound to ctx. */
int seal_data(const struct bri_seal *k, const void *ctx, size_t ctx_len, const void *in, size_t len,
              void *out);
/*
 * Opens a sealed blob of len bytes into out (len - SEAL_OVERHEAD bytes):
 * 0, or -EBADMSG when it is damaged, was made with another key or for
 * another ctx (nothing is written into out that may be trusted then).
 */
int seal_open(const struct bri_seal *k, const void *ctx, size_t ctx_len, const void *in, size_t len,
              void *out);

/*
 * A cipher context for one thread at a time: AES-256-GCM keyed once with k
 * (the key's schedule and GCM's hash key made here, not per blob), then
 * reused for many blobs, each its own GCM message. Sealing through it draws
 * a fresh random nonce for every blob, as seal_data does: a kept context
 * never reuses a nonce. seal_open_ctx may open in place: out may be
 * in + SEAL_HDR_LEN + SEAL_NONCE_LEN (where the ciphertext starts), so the
 * plaintext takes the ciphertext's place and nothing else is written. Made
 * for readers that open one group after another (pack.c). NULL when out of
 * memory; k must outlive it. seal_ctx_free cleanses the key's schedule.
 */
struct seal_ctx;
struct seal_ctx *seal_ctx_new(const struct bri_seal *k);
void seal_ctx_free(struct seal_ctx *c);
int seal_data_ctx(struct seal_ctx *c, const void *ctx, size_t ctx_len, const void *in, size_t len,
                  void *out);
int seal_open_ctx(struct seal_ctx *c, const void *ctx, size_t ctx_len, const void *in, size_t len,
                  void *out);

/* The key check kept in store.json: a known text sealed, as hex (malloc'd). */
char *seal_check_make(const struct bri_seal *k);
/* Whether k opens the key check hex. */
bool seal_check_ok(const struct bri_seal *k, const char *hex);

/*
 * The key of the store whose store.json holds text (where: the store, for
 * messages), from key_file: 0 with *out NULL for a store without
 * encryption; -ENOKEY without a key file, -EKEYREJECTED with another key
 * (store_format.c). For copies of a store kept elsewhere (offsite).
 */
int store_key_for_json(const char *where, const char *text, const char *key_file,
                       struct bri_seal **out, struct bri_err *err);

/*
 * bri_store_read_file / bri_store_write_file of a store file that is
 * sealed when s has a key (bound to the file's name, so a sealed file
 * renamed does not open). Reading a damaged or foreign sealed file is
 * -EBADMSG. max is the plaintext's cap.
 */
int store_read_sealed(const struct bri_store *s, const char *file, size_t max, char **out,
                      size_t *len);
int store_write_sealed(struct bri_store *s, const char *file, const void *data, size_t len,
                       struct bri_err *err);

/*
 * One line of a store's line file (the audit log) as kept on disk: sealed
 * and in base64 after "sealed:" when s has a key, else as given. line is
 * len bytes without its newline; *out is malloc'd, NUL-terminated, without
 * newline. seal_line_open undoes it: a line that is not sealed is returned
 * as it is only when s has no key (-EBADMSG otherwise).
 */
int seal_line(const struct bri_store *s, const char *what, const char *line, size_t len, char **out,
              size_t *out_len);
int seal_line_open(const struct bri_store *s, const char *what, const char *line, size_t len,
                   char **out, size_t *out_len);

#endif
