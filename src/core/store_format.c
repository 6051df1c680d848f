/*
 * The store's formats: which one a store is (store.json, or plain when there
 * is none), the operations every caller uses (each one call through the
 * store's table of operations), and the reader helpers. What a format does
 * is in its own file (store_plain.c); nothing here knows a file name of a
 * backup.
 *
 * An encrypted page store's store.json says so: "encryption":
 * "aes-256-gcm", "key": "raw" or "passphrase", "kdf" (scrypt's n, r, p and
 * salt, for a passphrase) and "key_check" (a known text sealed with the key,
 * seal.h). Opening one needs the key file (bri_store_open_opts.key_file or
 * $BRI_KEY_FILE); the key is checked before anything else is read (migrate
 * opens with key_later and checks the keys itself, store_key_for_json; a
 * new key, for init or migrate, is made by store_key_new).
 */
#include "bri/store.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "seal.h"
#include "store_int.h"

/* store.json is a few lines; anything larger is not one. */
#define STORE_JSON_MAX (64u << 10)

static const struct bri_store_ops *const formats[] = {
    &bri_store_plain_ops,
    &bri_store_pages_ops,
};

const struct bri_store_ops *bri_store_format(const char *name)
{
	for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++)
		if (strcmp(formats[i]->format, name) == 0)
			return formats[i];
	return NULL;
}

static const char *get_string(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static bool get_u64(json_object *o, const char *key, uint64_t *out)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int) ||
	    json_object_get_int64(v) <= 0)
		return false;
	*out = (uint64_t)json_object_get_int64(v);
	return true;
}

/* The key parameters of an encrypted store's store.json o (dir: for messages). */
static int read_params(const char *dir, json_object *o, struct seal_params *p, struct bri_err *err)
{
	const char *kind = get_string(o, "key"), *salt;
	json_object *kdf;
	uint64_t r = 0, par = 0;

	memset(p, 0, sizeof(*p));
	if (kind && strcmp(kind, "raw") == 0)
		return 0;
	p->passphrase = true;
	if (!kind || strcmp(kind, "passphrase") != 0 ||
	    !json_object_object_get_ex(o, "kdf", &kdf) ||
	    !json_object_is_type(kdf, json_type_object) || !get_string(kdf, "name") ||
	    strcmp(get_string(kdf, "name"), "scrypt") != 0 || !get_u64(kdf, "n", &p->n) ||
	    !get_u64(kdf, "r", &r) || !get_u64(kdf, "p", &par) || r > UINT32_MAX ||
	    par > UINT32_MAX || !(salt = get_string(kdf, "salt")) ||
	    strlen(salt) != 2 * SEAL_SALT_LEN)
		return bri_err_set(
		    err, -EINVAL,
		    "%s/store.json does not say how the store's key is made (\"key\": "
		    "\"raw\", or \"passphrase\" with \"kdf\": scrypt's n, r, p and salt)",
		    dir);
	p->r = (uint32_t)r;
	p->p = (uint32_t)par;
	for (size_t i = 0; i < SEAL_SALT_LEN; i++) {
		char two[3] = {salt[2 * i], salt[2 * i + 1], '\0'}, *end;
		unsigned long b = strtoul(two, &end, 16);

		if (*end || !isxdigit((unsigned char)two[0]))
			return bri_err_set(err, -EINVAL, "%s/store.json: the kdf's salt is not hex",
			                   dir);
		p->salt[i] = (uint8_t)b;
	}
	return 0;
}

/* Reads key_file and makes the key for params p. */
static int load_key(const char *key_file, const struct seal_params *p, struct bri_seal **out,
                    struct bri_err *err)
{
	uint8_t *bytes;
	size_t len;
	int rc;

	rc = seal_key_file_read(key_file, &bytes, &len, err);
	if (rc < 0)
		return rc;
	rc = seal_key_derive(bytes, len, p, out, err);
	seal_key_file_free(bytes, len);
	return rc;
}

/*
 * The key of the encrypted store at dir (for messages) whose store.json is o,
 * from key_file (NULL: none given), checked against its key check.
 */
static int key_of(const char *dir, json_object *o, const char *key_file, struct bri_seal **out,
                  struct bri_err *err)
{
	const char *enc = get_string(o, "encryption");
	struct seal_params p;
	int rc;

	if (!enc || strcmp(enc, "aes-256-gcm") != 0)
		return bri_err_set(err, -EPROTONOSUPPORT,
		                   "the backup store %s is encrypted with \"%.64s\", which this "
		                   "version of bri-backup cannot read",
		                   dir, enc ? enc : "?");
	if (!key_file)
		return bri_err_set(err, -ENOKEY,
		                   "the backup store %s is encrypted; give its key file with "
		                   "--key-file F (the mount: -o key_file=F; or BRI_KEY_FILE=F)",
		                   dir);
	rc = read_params(dir, o, &p, err);
	if (rc < 0)
		return rc;
	rc = load_key(key_file, &p, out, err);
	if (rc == -EINVAL) /* not a key of the store's kind */
		return bri_err_wrap(err, -EKEYREJECTED,
		                    "the key file does not open the encrypted backup store");
	if (rc < 0)
		return rc;
	if (!seal_check_ok(*out, get_string(o, "key_check"))) {
		seal_free(*out);
		*out = NULL;
		return bri_err_set(
		    err, -EKEYREJECTED,
		    "the key file %s does not open the encrypted backup store %s "
		    "(wrong key or passphrase; store.json's key check fails); nothing "
		    "was read or written",
		    key_file, dir);
	}
	return 0;
}

/*
 * The key of the store whose store.json is o: none for a store without
 * encryption (and then no key file may be given), else s->key_file's, checked
 * against the store's key check.
 */
static int open_key(struct bri_store *s, json_object *o, struct bri_err *err)
{
	const char *enc = get_string(o, "encryption");

	if (!enc || strcmp(enc, "none") == 0) {
		if (s->key_file)
			return bri_err_set(
			    err, -EINVAL,
			    "the backup store %s is not encrypted (store.json), but a "
			    "key file was given (%s); refusing, so that nobody believes "
			    "it is (drop --key-file / -o key_file / BRI_KEY_FILE)",
			    s->dir, s->key_file);
		return 0;
	}
	return key_of(s->dir, o, s->key_file, &s->seal, err);
}

int store_key_for_json(const char *where, const char *text, const char *key_file,
                       struct bri_seal **out, struct bri_err *err)
{
	json_object *o = json_tokener_parse(text);
	const char *enc;
	int rc = 0;

	*out = NULL;
	if (!o || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return bri_err_set(err, -EINVAL, "%s/store.json is not a JSON object", where);
	}
	enc = get_string(o, "encryption");
	if (enc && strcmp(enc, "none") != 0)
		rc = key_of(where, o, key_file, out, err);
	json_object_put(o);
	return rc;
}

/*
 * The format store.json names (plain when there is none) into *ops, and the
 * parsed store.json into *json when asked (NULL for plain; json_object_put
 * it). No key is looked at.
 */
static int read_format(const struct bri_store *s, const struct bri_store_ops **ops,
                       json_object **json, struct bri_err *err)
{
	json_object *o = NULL, *v;
	const char *name;
	char *text;
	size_t len;
	int rc;

	if (json)
		*json = NULL;
	rc = bri_store_read_file(s, "store.json", STORE_JSON_MAX, &text, &len);
	if (rc == -ENOENT) {
		*ops = &bri_store_plain_ops; /* the seed's layout needs no store.json */
		return 0;
	}
	if (rc < 0)
		return bri_err_set(err, rc, "cannot read %s/store.json: %s", s->dir,
		                   rc == -EFBIG ? "too large" : strerror(-rc));
	o = json_tokener_parse(text);
	free(text);
	if (!o || !json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, "format", &v) ||
	    !json_object_is_type(v, json_type_string)) {
		json_object_put(o);
		return bri_err_set(err, -EINVAL,
		                   "%s/store.json does not say the store's format (a JSON object "
		                   "with a \"format\" string); refusing to guess",
		                   s->dir);
	}
	name = json_object_get_string(v);
	*ops = bri_store_format(name);
	if (!*ops)
		rc = bri_err_set(err, -EPROTONOSUPPORT,
		                 "the backup store %s has format \"%.64s\", which this version of "
		                 "bri-backup cannot read",
		                 s->dir, name);
	if (rc == 0 && json)
		*json = o;
	else
		json_object_put(o);
	return rc;
}

int store_detect_format(struct bri_store *s, bool check_key, struct bri_err *err)
{
	json_object *o = NULL;
	int rc = read_format(s, &s->ops, &o, err);

	if (rc == 0 && o && check_key)
		rc = open_key(s, o, err);
	json_object_put(o);
	return rc;
}

/* The store's operations; plain for a store made without bri_store_open_ex. */
static const struct bri_store_ops *ops_of(const struct bri_store *s)
{
	return s->ops ? s->ops : &bri_store_plain_ops;
}

int bri_store_list(const struct bri_store *s,
                   int (*fn)(void *arg, const char *name, const struct stat *st), void *arg,
                   struct bri_err *err)
{
	return ops_of(s)->list(s, fn, arg, err);
}

int bri_store_stat(const struct bri_store *s, const char *name, struct stat *st)
{
	return ops_of(s)->stat(s, name, st);
}

int bri_store_open_reader(const struct bri_store *s, const char *name, struct bri_reader **out,
                          struct bri_err *err)
{
	return ops_of(s)->open_reader(s, name, out, err);
}

int bri_store_write_begin(struct bri_store *s, const char *name, struct bri_backup_writer **out,
                          struct bri_err *err)
{
	const struct bri_store_ops *now = NULL;
	int rc;

	if (s->key_file && !s->seal)
		return bri_err_set(
		    err, -EINVAL,
		    "the backup store %s is not encrypted, but a key file was given "
		    "(%s); refusing to write a backup in the clear (an encrypted store "
		    "is made by init --format pages --key-file F)",
		    s->dir, s->key_file);
	/*
	 * The format on disk now, not the one this process found at open: a
	 * long-lived process (the mount) must not write a backup of the old
	 * format into a store migrate has converted since (it would be invisible).
	 * The format only: the key was checked at open.
	 */
	rc = read_format(s, &now, NULL, err);
	if (rc < 0)
		return rc;
	if (now != ops_of(s))
		return bri_err_set(err, -ESTALE,
		                   "the backup store %s is a %s store now (converted by migrate "
		                   "since this process opened it as %s); nothing was written: "
		                   "reopen the store (restart the mount)",
		                   s->dir, now->format, ops_of(s)->format);
	return ops_of(s)->write_begin(s, name, out, err);
}

int bri_store_write_commit(struct bri_backup_writer *w, const char *meta, size_t len,
                           struct bri_err *err)
{
	int rc = ops_of(w->s)->write_commit(w, meta, len, err);

	if (rc == 0)
		w->committed = true;
	return rc;
}

void bri_store_write_end(struct bri_backup_writer *w)
{
	if (w)
		ops_of(w->s)->write_end(w);
}

int bri_store_write_digest(struct bri_backup_writer *w, uint64_t *size, char hex[65],
                           struct bri_err *err)
{
	if (!ops_of(w->s)->write_digest)
		return bri_err_set(err, -EINVAL, "the store's format writes into a file");
	return ops_of(w->s)->write_digest(w, size, hex, err);
}

int bri_store_write_data(struct bri_backup_writer *w, const void *buf, size_t len, uint64_t off,
                         struct bri_err *err)
{
	const char *p = buf;

	if (w->fd < 0) {
		if (!ops_of(w->s)->write_data)
			return bri_err_set(err, -EINVAL, "the store's format takes no raw bytes");
		return ops_of(w->s)->write_data(w, buf, len, off, err);
	}
	while (len > 0) {
		ssize_t n = pwrite(w->fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return bri_err_set(err, -errno, "cannot write the copy of backup %s: %s",
			                   w->name, strerror(errno));
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

/* Counts backups, stopping at the first. */
static int any_backup(void *arg, const char *name, const struct stat *st)
{
	(void)name, (void)st;
	*(bool *)arg = true;
	return 1;
}

static int sum_sizes(void *arg, const char *name, const struct stat *st)
{
	(void)name;
	*(uint64_t *)arg += (uint64_t)st->st_size;
	return 0;
}

int bri_store_usage(struct bri_store *s, uint64_t *logical, uint64_t *stored, struct bri_err *err)
{
	int rc;

	if (ops_of(s)->usage)
		return ops_of(s)->usage(s, logical, stored, err);
	*logical = 0;
	rc = bri_store_list(s, sum_sizes, logical, err);
	*stored = *logical;
	return rc;
}

int store_key_new(const char *key_file, struct bri_seal **out, struct bri_err *err)
{
	struct seal_params p;
	uint8_t *bytes;
	size_t len;
	int rc;

	*out = NULL;
	rc = seal_key_file_read(key_file, &bytes, &len, err);
	if (rc < 0)
		return rc;
	rc = seal_params_new(!seal_bytes_are_raw(bytes, len), &p, err);
	if (rc == 0)
		rc = seal_key_derive(bytes, len, &p, out, err);
	seal_key_file_free(bytes, len);
	return rc;
}

/* store.json's encryption fields for the key k (never the key). */
static void add_encryption(json_object *o, const struct bri_seal *k)
{
	char salt[2 * SEAL_SALT_LEN + 1], *check = seal_check_make(k);

	json_object_object_add(o, "encryption", json_object_new_string("aes-256-gcm"));
	json_object_object_add(o, "key",
	                       json_object_new_string(k->params.passphrase ? "passphrase" : "raw"));
	if (k->params.passphrase) {
		json_object *kdf = json_object_new_object();

		for (size_t i = 0; i < SEAL_SALT_LEN; i++)
			snprintf(salt + 2 * i, 3, "%02x", k->params.salt[i]);
		json_object_object_add(kdf, "name", json_object_new_string("scrypt"));
		json_object_object_add(kdf, "n", json_object_new_int64((int64_t)k->params.n));
		json_object_object_add(kdf, "r", json_object_new_int64(k->params.r));
		json_object_object_add(kdf, "p", json_object_new_int64(k->params.p));
		json_object_object_add(kdf, "salt", json_object_new_string(salt));
		json_object_object_add(o, "kdf", kdf);
	}
	json_object_object_add(o, "key_check", json_object_new_string(check ? check : ""));
	free(check);
}

int bri_store_init_format(struct bri_store *s, const char *format, struct bri_err *err)
{
	const struct bri_store_ops *ops = bri_store_format(format);
	bool has = false;
	int rc;

	if (!ops)
		return bri_err_set(err, -EINVAL, "unknown store format \"%.64s\" (plain or pages)",
		                   format);
	if (s->key_file && ops != &bri_store_pages_ops)
		return bri_err_set(
		    err, -EINVAL,
		    "only a page store is encrypted (--format pages --key-file F); a "
		    "plain store keeps every backup as an ordinary .db");
	if (ops_of(s) == ops)
		return 0; /* an encrypted one was opened with its key; a key for another, refused */
	if (ops_of(s) != &bri_store_plain_ops)
		return bri_err_set(err, -EEXIST,
		                   "the backup store %s is already of format \"%s\"; convert it "
		                   "with bri-backup migrate --to %s",
		                   s->dir, ops_of(s)->format, ops->format);
	rc = bri_store_list(s, any_backup, &has, err);
	if (rc < 0)
		return rc;
	if (has)
		return bri_err_set(err, -EEXIST,
		                   "the backup store %s already holds plain backups; a store's "
		                   "format is chosen when it is made; convert it with "
		                   "bri-backup migrate --to %s",
		                   s->dir, ops->format);
	if (ops == &bri_store_plain_ops)
		return 0; /* plain needs no store.json */
	rc = bri_store_check(s, err);
	if (rc == 0 && s->key_file)
		rc = store_key_new(s->key_file, &s->seal,
		                   err); /* before init: the secret is sealed */
	if (rc == 0 && ops->init)
		rc = ops->init(s, err);
	if (rc == 0)
		rc = store_format_publish(s, ops, err);
	if (rc < 0 && s->key_file) {
		seal_free(s->seal); /* the store stays as it was: without encryption */
		s->seal = NULL;
	}
	return rc;
}

int store_format_publish(struct bri_store *s, const struct bri_store_ops *ops, struct bri_err *err)
{
	json_object *o;
	const char *text;
	int rc;

	if (ops == &bri_store_plain_ops) {
		/* Plain is the store without store.json: its removal is the switch. */
		if (unlinkat(s->dirfd, "store.json", 0) < 0 && errno != ENOENT)
			return bri_err_set(err, -errno, "cannot remove %s/store.json: %s", s->dir,
			                   strerror(errno));
		rc = bri_store_sync(s, err);
		if (rc == 0)
			s->ops = ops;
		return rc;
	}
	o = json_object_new_object();
	if (!o)
		return bri_err_set(err, -ENOMEM, "out of memory");
	json_object_object_add(o, "format", json_object_new_string(ops->format));
	json_object_object_add(o, "version", json_object_new_int(1));
	if (ops == &bri_store_pages_ops) {
		json_object_object_add(o, "hash", json_object_new_string("hmac-sha256"));
		json_object_object_add(o, "page_id_secret", json_object_new_string("pages.secret"));
		json_object_object_add(o, "compression", json_object_new_string("zstd"));
		json_object_object_add(o, "group_pages", json_object_new_int(16));
		if (s->seal)
			add_encryption(o, s->seal);
		else
			json_object_object_add(o, "encryption", json_object_new_string("none"));
	}
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
	                                             JSON_C_TO_STRING_NOSLASHESCAPE);
	/* store.json last: a store is of the new format only when all it needs is there. */
	rc = bri_store_write_file(s, "store.json", text, strlen(text), err);
	json_object_put(o);
	if (rc == 0)
		s->ops = ops;
	return rc;
}

int bri_store_remove(struct bri_store *s, const char *name, struct bri_err *err)
{
	return ops_of(s)->remove(s, name, err);
}

int bri_store_sidecar_read(const struct bri_store *s, const char *name, enum bri_sidecar kind,
                           size_t max, char **out, size_t *len)
{
	return ops_of(s)->sidecar_read(s, name, kind, max, out, len);
}

int bri_store_sidecar_write(struct bri_store *s, const char *name, enum bri_sidecar kind,
                            const void *data, size_t len, struct bri_err *err)
{
	return ops_of(s)->sidecar_write(s, name, kind, data, len, err);
}

int bri_store_sidecar_remove(struct bri_store *s, const char *name, enum bri_sidecar kind)
{
	return ops_of(s)->sidecar_remove(s, name, kind);
}

int bri_store_sidecar_stat(const struct bri_store *s, const char *name, enum bri_sidecar kind,
                           struct stat *st)
{
	return ops_of(s)->sidecar_stat(s, name, kind, st);
}

char *bri_store_backup_path(const struct bri_store *s, const char *name)
{
	return ops_of(s)->backup_path(s, name);
}

ssize_t bri_reader_pread(struct bri_reader *r, void *buf, size_t len, uint64_t off)
{
	return r->pread(r, buf, len, off);
}

int bri_reader_read_full(struct bri_reader *r, void *buf, size_t len, uint64_t off)
{
	char *p = buf;

	while (len > 0) {
		ssize_t n = r->pread(r, p, len, off);

		if (n < 0)
			return (int)n;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

void bri_reader_close(struct bri_reader *r)
{
	if (r)
		r->close(r);
}

int name_list_add(struct name_list *l, const char *name)
{
	if (l->n >= NAME_LIST_MAX)
		return -EFBIG;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		char **v = realloc(l->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n] = strdup(name);
	if (!l->v[l->n])
		return -ENOMEM;
	l->n++;
	return 0;
}

bool name_list_has(const struct name_list *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i], name) == 0)
			return true;
	return false;
}

void name_list_free(struct name_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}
