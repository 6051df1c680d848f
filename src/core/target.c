/*
 * Target resolution (include/bri/target.h): what a backup argument means, in
 * one place for the CLI, the mount and restore. It reads the store's listing
 * and small metadata files; it never opens a database.
 */
#include "bri/target.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
}

static int set_backup(struct bri_target *out, const char *name, size_t len)
{
	memset(out, 0, sizeof(*out));
	out->kind = BRI_TARGET_BACKUP;
	snprintf(out->name, sizeof(out->name), "%.*s", (int)len, name);
	return 0;
}

/* The newest backup, from cat or a fresh scan. */
static int newest(const struct bri_store *s, const struct bri_catalog *cat, const char *what,
                  struct bri_target *out, struct bri_err *err)
{
	struct bri_catalog *own = NULL;
	const struct bri_entry *e;
	int rc;

	if (!cat && !s)
		return bri_err_set(err, -ENOENT, "%s: there is no backup store yet", what);
	if (!cat) {
		rc = bri_catalog_scan(s, NULL, &own, err);
		if (rc < 0)
			return rc;
		cat = own;
	}
	e = bri_catalog_newest(cat);
	if (e)
		set_backup(out, e->name, strlen(e->name));
	bri_catalog_free(own);
	if (!e)
		return bri_err_set(err, -ENOENT, "%s: there are no backups in %s", what, s->dir);
	return 0;
}

/* Whether name (len bytes) is a backup of the store. */
static bool is_backup(const struct bri_store *s, const char *name, size_t len)
{
	char buf[BRI_NAME_MAX + 1];

	if (!s || bri_store_check_name(name, len, NULL) < 0)
		return false;
	snprintf(buf, sizeof(buf), "%.*s", (int)len, name);
	return bri_store_has(s, buf) == 1;
}

/*
 * Whether NAME.db's stem (len bytes) is a backup file of the store, also
 * one whose name is reserved since (an older backup called live or latest
 * stays reachable as "live.db").
 */
static bool is_backup_stem(const struct bri_store *s, const char *name, size_t len)
{
	char buf[BRI_NAME_MAX + 1];

	if (!s || len == 0 || len > BRI_NAME_MAX || name[0] == '.' || memchr(name, '/', len))
		return false;
	snprintf(buf, sizeof(buf), "%.*s", (int)len, name);
	if (strstr(buf, ".."))
		return false;
	return bri_store_has(s, buf) == 1;
}

/*
 * The metadata file of a .db outside the store: PATH.meta (a copy of the
 * store), else meta.json in its folder (a copy of the mount). NULL when
 * neither exists (or out of memory).
 */
static char *find_meta(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *m = NULL;

	if (asprintf(&m, "%s.meta", path) < 0)
		return NULL;
	if (access(m, F_OK) == 0)
		return m;
	free(m);
	if (asprintf(&m, "%.*smeta.json", slash ? (int)(slash - path + 1) : 0, path) < 0)
		return NULL;
	if (access(m, F_OK) == 0)
		return m;
	free(m);
	return NULL;
}

/* A path into the store folder that names one of its backups: that backup. */
static bool store_backup_of(const struct bri_store *s, const char *real, struct bri_target *out)
{
	const char *slash = strrchr(real, '/');
	char *dir_real = s ? realpath(s->dir, NULL) : NULL;
	bool in_store = false;

	if (dir_real && slash && ends_with(slash + 1, ".db")) {
		size_t dlen = (size_t)(slash - real), blen = strlen(slash + 1) - 3;

		in_store = strlen(dir_real) == dlen && !strncmp(dir_real, real, dlen) &&
		           is_backup(s, slash + 1, blen);
		if (in_store)
			set_backup(out, slash + 1, blen);
	}
	free(dir_real);
	return in_store;
}

static int resolve_path(const struct bri_store *s, const char *what, struct bri_target *out,
                        struct bri_err *err)
{
	char *path = NULL, *real;
	struct stat st;
	int rc = 0;

	if (stat(what, &st) < 0)
		return bri_err_set(err, -errno, "cannot use %s: %s", what, strerror(errno));
	if (S_ISDIR(st.st_mode) && s) {
		/* A backup folder of the mount, copied (rsync -a MOUNT/ DEST/). */
		if (asprintf(&path, "%s/%s", what, s->db_filename) < 0)
			return bri_err_set(err, -ENOMEM, "out of memory");
		if (stat(path, &st) < 0) {
			rc = bri_err_set(err, -ENOENT, "%s is a folder without %s", what,
			                 s->db_filename);
			goto out_free_path;
		}
		what = path;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = bri_err_set(err, -EINVAL, "cannot use %s: not a regular file", what);
		goto out_free_path;
	}
	if (s && bri_store_is_live(s, &st)) {
		rc =
		    bri_err_set(err, -EINVAL, "%s is the live database itself, not a backup", what);
		goto out_free_path;
	}
	real = realpath(what, NULL);
	if (!real) {
		rc = bri_err_set(err, -errno, "cannot use %s: %s", what, strerror(errno));
		goto out_free_path;
	}
	if (store_backup_of(s, real, out)) {
		free(real);
		goto out_free_path;
	}
	memset(out, 0, sizeof(*out));
	out->kind = BRI_TARGET_FILE;
	out->path = real;
	out->meta_path = find_meta(real);
out_free_path:
	free(path);
	return rc;
}

int bri_target_resolve(const struct bri_store *s, const struct bri_catalog *cat, const char *what,
                       unsigned flags, struct bri_target *out, struct bri_err *err)
{
	bool names_only = flags & BRI_TARGET_NAMES_ONLY;
	size_t len;
	int rc;

	if (!what || !*what || !strcmp(what, BRI_TARGET_LATEST))
		return newest(s, cat, what && *what ? what : "the newest backup", out, err);
	len = strlen(what);
	if (!names_only && strchr(what, '/'))
		return resolve_path(s, what, out, err);
	if (is_backup(s, what, len))
		return set_backup(out, what, len);
	/* "NAME.db" for the backup NAME, as the seed's file names read. */
	if (ends_with(what, ".db") && is_backup_stem(s, what, len - 3))
		return set_backup(out, what, len - 3);
	if (!names_only && ends_with(what, ".db") && access(what, F_OK) == 0)
		return resolve_path(s, what, out, err);
	rc = bri_store_check_name(what, len, err);
	if (rc < 0)
		return rc;
	return bri_err_set(err, -ENOENT, "no backup named %s in %s (bri-backup list shows them)",
	                   what, s ? s->dir : "the store (it does not exist yet)");
}

void bri_target_free(struct bri_target *t)
{
	if (!t)
		return;
	free(t->path);
	free(t->meta_path);
	t->path = NULL;
	t->meta_path = NULL;
}

int bri_target_load_meta(const struct bri_target *t, struct bri_meta *meta, char *why,
                         size_t why_len)
{
	struct bri_err e = {0};
	struct stat st;
	char *text = NULL;
	ssize_t n;
	size_t got = 0;
	int fd, rc;

	if (!t->meta_path) {
		snprintf(why, why_len, "no metadata file %s.meta (nor meta.json beside it)",
		         t->path ? t->path : t->name);
		return -ENOENT;
	}
	fd = open(t->meta_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(why, why_len, "cannot read %s: %s", t->meta_path, strerror(errno));
		return rc;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > BRI_META_MAX_BYTES) {
		snprintf(why, why_len, "%s: not a regular file of at most %d bytes", t->meta_path,
		         (int)BRI_META_MAX_BYTES);
		rc = -EINVAL;
		goto out_close;
	}
	text = malloc((size_t)st.st_size + 1);
	if (!text) {
		snprintf(why, why_len, "out of memory");
		rc = -ENOMEM;
		goto out_close;
	}
	while (got < (size_t)st.st_size) {
		n = read(fd, text + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	text[got] = '\0';
	rc = bri_meta_parse(text, got, meta, &e);
	if (rc < 0)
		snprintf(why, why_len, "%s: %s", t->meta_path,
		         e.msg[0] ? e.msg : "not valid metadata");
	free(text);
out_close:
	close(fd);
	return rc;
}

int bri_target_verify(struct bri_store *s, const struct bri_target *t, const struct bri_op_ctx *ctx,
                      struct bri_verify_result *res, struct bri_err *err)
{
	struct bri_meta meta = {0};
	char why[600] = "";
	bool have;
	int rc;

	if (t->kind == BRI_TARGET_BACKUP)
		return bri_verify_backup(s, t->name, ctx, res, err);
	have = bri_target_load_meta(t, &meta, why, sizeof(why)) == 0;
	rc = bri_verify_file(t->path, have ? &meta : NULL, have ? NULL : why, ctx, res);
	if (rc < 0)
		bri_err_set(err, rc, "cannot verify %s: %s", t->path, strerror(-rc));
	if (have)
		bri_meta_free(&meta);
	return rc;
}
