/*
 * migrate (include/bri/migrate.h): a store converted in place between its
 * formats, crash-safe. The stages, each a pause point for the tests:
 *
 *   1. migrate.json written (from, to); the target's needs made (pages: the
 *      page-id secret). The store is still of the old format.
 *   2. Each backup copied byte for byte through its reader into a writer of
 *      the new format, checked against the checksum of its metadata, and
 *      committed beside the old one (the formats' file names never clash);
 *      pins and reports copied. A backup the new format already has with the
 *      same checksum (an interrupted run's) is kept; one that differs, or
 *      whose old backup is gone, is removed. ("migrate-converted-one" after
 *      the first, "migrate-converted" after all.)
 *   3. The switch: store.json written (pages) or removed (plain), synced.
 *      Before it the store is of the old format with every backup there;
 *      after it, of the new one with every backup there.
 *      ("migrate-switched")
 *   4. The old format's files purged (its purge op: each backup's sidecars,
 *      then the backup, then shared files), then migrate.json removed.
 *      ("migrate-purged-one" inside the purge)
 *
 * Run again after a kill, it goes on from where the store is: before the
 * switch it redoes stage 2 (keeping what is done), after it stage 4. With
 * the other --to before the switch, it undoes: the store is already of that
 * format, so the partial new format is purged.
 *
 * That is the conversion in place, between two forms without encryption
 * (their file names never clash). One that changes the key (decrypting,
 * encrypting, re-keying) is built beside the store instead and swapped in
 * whole: the same stages and pause points, described below ("Conversions
 * that change the key"). Which one a run is, and every key it needs, is
 * found before anything is written (plan_make).
 */
#include "bri/migrate.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bri/audit.h"
#include "bri/checksum.h"
#include "bri/log.h"
#include "bri/meta.h"
#include "bri/reports.h"
#include "bri/testpoint.h"
#include "seal.h"
#include "store_int.h"

/* A metadata, pin or report is a few kilobytes; this is far more. */
#define SIDECAR_MAX (16u << 20)
#define COPY_CHUNK  (1u << 20)
#define MARKER_MAX  4096

/*
 * The marker's formats: 0, -ENOENT, -EXDEV for the marker of a conversion
 * built beside (beside_marker_read), or -EINVAL for one that cannot be read.
 */
static int marker_read(const struct bri_store *s, const struct bri_store_ops **from,
                       const struct bri_store_ops **to)
{
	json_object *o, *f, *t;
	char *text;
	size_t len;
	int rc;

	rc = bri_store_read_file(s, BRI_MIGRATE_MARKER, MARKER_MAX, &text, &len);
	if (rc < 0)
		return rc;
	o = json_tokener_parse(text);
	free(text);
	rc = -EINVAL;
	if (o && json_object_object_get_ex(o, "beside", &f))
		rc = -EXDEV; /* a conversion built beside (below) */
	else if (o && json_object_object_get_ex(o, "from", &f) &&
	         json_object_object_get_ex(o, "to", &t) &&
	         json_object_is_type(f, json_type_string) &&
	         json_object_is_type(t, json_type_string)) {
		*from = bri_store_format(json_object_get_string(f));
		*to = bri_store_format(json_object_get_string(t));
		if (*from && *to && *from != *to)
			rc = 0;
	}
	json_object_put(o);
	return rc;
}

static int marker_write(struct bri_store *s, const struct bri_store_ops *from,
                        const struct bri_store_ops *to, struct bri_err *err)
{
	char text[128];
	int n = snprintf(text, sizeof(text), "{\n  \"from\": \"%s\",\n  \"to\": \"%s\"\n}\n",
	                 from->format, to->format);

	return bri_store_write_file(s, BRI_MIGRATE_MARKER, text, (size_t)n, err);
}

/* The metadata of name in format ops: 0, or a negative errno. */
static int meta_of(const struct bri_store *s, const struct bri_store_ops *ops, const char *name,
                   struct bri_meta *m)
{
	char *text;
	size_t len;
	int rc;

	rc = ops->sidecar_read(s, name, BRI_SIDECAR_META, SIDECAR_MAX, &text, &len);
	if (rc < 0)
		return rc;
	rc = bri_meta_parse(text, len, m, NULL);
	free(text);
	return rc;
}

/*
 * Pins and rehearsal outcomes follow the backup (its bytes do not
 * change); a verification belongs to the file it checked.
 */
static int copy_sidecars(struct bri_store *s, const struct bri_store_ops *a, struct bri_store *t,
                         const struct bri_store_ops *b, const char *name, struct bri_err *err)
{
	static const enum bri_sidecar kinds[] = {BRI_SIDECAR_PIN, BRI_SIDECAR_REHEARSAL};
	int rc = 0;

	b->sidecar_remove(t, name, BRI_SIDECAR_VERIFY);
	for (size_t i = 0; rc == 0 && i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		char *text;
		size_t len;

		rc = a->sidecar_read(s, name, kinds[i], SIDECAR_MAX, &text, &len);
		if (rc == -ENOENT) {
			rc = b->sidecar_remove(t, name, kinds[i]);
			continue;
		}
		if (rc < 0)
			return bri_err_set(err, rc, "cannot read a sidecar of backup %s: %s", name,
			                   strerror(-rc));
		rc = b->sidecar_write(t, name, kinds[i], text, len, err);
		free(text);
	}
	return rc;
}

/* The copy of reader r into writer w, and its size and SHA-256 as written. */
static int copy_bytes(struct bri_reader *r, struct bri_backup_writer *w, const char *name,
                      const struct bri_op_ctx *ctx, uint64_t *size,
                      char hex[BRI_CHECKSUM_HEX_LEN + 1], struct bri_err *err)
{
	uint8_t *buf = malloc(COPY_CHUNK);
	uint64_t off = 0;
	int rc = 0;

	if (!buf)
		return bri_err_set(err, -ENOMEM, "out of memory");
	while (off < r->size && rc == 0) {
		ssize_t n = bri_reader_pread(r, buf, COPY_CHUNK, off);

		if (n <= 0) {
			rc = bri_err_set(err, n < 0 ? (int)n : -EIO, "cannot read backup %s: %s",
			                 name,
			                 r->why[0] ? r->why
			                 : n < 0   ? strerror((int)-n)
			                           : "shorter than its size");
			break;
		}
		rc = bri_store_write_data(w, buf, (size_t)n, off, err);
		off += (uint64_t)n;
		if (ctx && ctx->progress)
			ctx->progress(ctx->progress_arg, name, off, r->size);
	}
	free(buf);
	if (rc < 0)
		return rc;
	if (w->fd < 0)
		return bri_store_write_digest(w, size, hex, err);
	*size = off;
	if (lseek(w->fd, 0, SEEK_SET) < 0)
		return bri_err_set(err, -errno, "cannot read back the copy: %s", strerror(errno));
	return bri_checksum_fd(w->fd, off, NULL, hex, err);
}

/*
 * Backup name, of format a in store s, into format b in store t (the same
 * store for a conversion in place; t->ops is b): kept when b has it with the
 * same checksum already. *converted is set when it was copied.
 */
static int convert_one(struct bri_store *s, const struct bri_store_ops *a, struct bri_store *t,
                       const struct bri_store_ops *b, const char *name,
                       const struct bri_op_ctx *ctx, bool *converted, struct bri_err *err)
{
	struct bri_backup_writer *w = NULL;
	struct bri_reader *r = NULL;
	struct bri_meta ma = {0}, mb = {0};
	char hex[BRI_CHECKSUM_HEX_LEN + 1] = "", *json = NULL;
	struct stat st;
	uint64_t size = 0;
	size_t len;
	int rc;

	*converted = false;
	rc = meta_of(s, a, name, &ma);
	if (rc < 0)
		return bri_err_set(err, rc,
		                   "backup %s has no readable metadata; verify it (or delete it) "
		                   "before migrating; nothing was changed by this step",
		                   name);
	if (b->stat(t, name, &st) == 0) {
		bool same = meta_of(t, b, name, &mb) == 0 && strcmp(mb.checksum, ma.checksum) == 0;

		bri_meta_free(&mb);
		if (same)
			goto out_sidecars;
		/* An interrupted run's copy of a backup replaced since: made again. */
		rc = b->remove(t, name, err);
		if (rc < 0)
			goto out_free;
	}
	rc = a->open_reader(s, name, &r, err);
	if (rc < 0)
		goto out_free;
	rc = b->write_begin(t, name, &w, err);
	if (rc < 0)
		goto out_free;
	rc = copy_bytes(r, w, name, ctx, &size, hex, err);
	if (rc < 0)
		goto out_free;
	if (strcmp(hex, ma.checksum) != 0 ||
	    (ma.size_bytes > 0 && size != (uint64_t)ma.size_bytes)) {
		rc = bri_err_set(
		    err, -EBADMSG,
		    "backup %s does not match its checksum (its bytes hash to %.16s..., "
		    "its metadata says %.16s...): it is damaged and was not converted; "
		    "nothing is lost. Run bri-backup verify %s, delete it if it fails, "
		    "and run migrate again",
		    name, hex, ma.checksum, name);
		goto out_free;
	}
	free(ma.backup_path);
	ma.backup_path = b->backup_path(t, name);
	if (!ma.backup_path || bri_meta_format(&ma, &json, &len) < 0) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	rc = b->write_commit(w, json, len, err);
	if (rc < 0)
		goto out_free;
	w->committed = true;
	*converted = true;
out_sidecars:
	rc = copy_sidecars(s, a, t, b, name, err);
out_free:
	if (w)
		b->write_end(w);
	bri_reader_close(r);
	bri_meta_free(&ma);
	free(json);
	return rc;
}

static int add_name(void *arg, const char *name, const struct stat *st)
{
	(void)st;
	return name_list_add(arg, name);
}

/* Stage 2: every backup of a (in s) in b (in t) too; b's backups without one in a removed. */
static int convert_all(struct bri_store *s, const struct bri_store_ops *a, struct bri_store *t,
                       const struct bri_store_ops *b, const struct bri_op_ctx *ctx,
                       struct bri_migrate_result *res, struct bri_err *err)
{
	struct name_list old = {0}, new = {0};
	int rc;

	rc = a->list(s, add_name, &old, err);
	for (size_t i = 0; rc == 0 && i < old.n; i++) {
		struct stat st;
		bool converted;

		if (a->sidecar_stat(s, old.v[i], BRI_SIDECAR_OFFSITE, &st) == 0)
			res->offsite = true;

		rc = convert_one(s, a, t, b, old.v[i], ctx, &converted, err);
		if (rc == 0 && converted)
			res->converted++;
		else if (rc == 0)
			res->kept++;
		if (rc == 0 && i == 0)
			bri_testpoint("migrate-converted-one");
	}
	if (rc == 0)
		rc = b->list(t, add_name, &new, err);
	for (size_t i = 0; rc == 0 && i < new.n; i++)
		if (!name_list_has(&old, new.v[i]))
			rc = b->remove(t, new.v[i], err);
	if (rc == -ENOMEM || rc == -EFBIG)
		bri_err_set(err, rc, "too many backups to list");
	name_list_free(&old);
	name_list_free(&new);
	return rc;
}

/* Stage 4: the other format's files, then the marker. */
static int purge(struct bri_store *s, const struct bri_store_ops *other, struct bri_err *err)
{
	int rc = other->purge ? other->purge(s, err) : 0;

	if (rc == 0 && (rc = bri_store_unlink(s, BRI_MIGRATE_MARKER)) < 0)
		rc = bri_err_set(err, rc, "cannot remove %s/%s: %s", s->dir, BRI_MIGRATE_MARKER,
		                 strerror(-rc));
	if (rc == 0)
		rc = bri_store_sync(s, err);
	return rc;
}

/*
 * ---- Conversions that change the key: built beside, swapped in ----
 *
 * Decrypting (an encrypted page store to plain), encrypting (a store
 * without encryption to an encrypted page store) and re-keying change what
 * every sealed file holds, under the same names (a page store re-keyed is
 * still a page store; audit.jsonl and restore_reports.jsonl are one file in
 * either form). So the new store is built whole in a folder of its own
 * beside the store, ".<store's name>.migrate" in the same parent folder
 * (never in $TMPDIR): every backup read through the old key (in memory:
 * an encrypted reader never spills) and written sealed with the new one (or
 * in the clear, for plain), checked against its checksum; the sidecars, the
 * restore reports and the audit log re-sealed (or opened) line by line; the
 * new store.json (a fresh page-id secret and, for a passphrase, a fresh
 * salt, as init makes them) written there. The switch is one
 * renameat2(RENAME_EXCHANGE) of the two folders: before it the store at
 * its path is the old one, whole, opened by the old key; after it the new
 * one, whole, opened by the new key. Then the old folder's files go and the
 * folder is removed (a file of no format's, the user's, is moved into the
 * store, never removed).
 *
 * The marker (migrate.json, with "beside": the folder's name) is in the old
 * store before the switch ("side": "old") and in the new one after it
 * ("new"). Run again with the same key arguments, migrate goes on from where
 * it was (an interrupted copy kept when it opens with the new key); before
 * the switch, asked for the store as it is (the opposite command), it
 * removes the copy.
 */

struct beside_marker {
	const struct bri_store_ops *from, *to;
	char name[NAME_MAX + 1]; /* the folder beside the store */
	bool after;              /* in the new store: the switch is done */
	bool sealed_from, sealed_to;
};

static bool beside_name_ok(const char *n)
{
	return n[0] == '.' && strcmp(n, ".") != 0 && strcmp(n, "..") != 0 && !strchr(n, '/') &&
	       strlen(n) <= NAME_MAX;
}

/* 0, -ENOENT, -EXDEV for an in-place marker, or -EINVAL. */
static int beside_marker_read(const struct bri_store *s, struct beside_marker *m)
{
	json_object *o, *v;
	const char *from = NULL, *to = NULL, *name = NULL, *side = NULL;
	char *text;
	size_t len;
	int rc;

	rc = bri_store_read_file(s, BRI_MIGRATE_MARKER, MARKER_MAX, &text, &len);
	if (rc < 0)
		return rc;
	o = json_tokener_parse(text);
	free(text);
	if (o && !json_object_object_get_ex(o, "beside", &v)) {
		json_object_put(o);
		return -EXDEV;
	}
	memset(m, 0, sizeof(*m));
	if (o && json_object_object_get_ex(o, "from", &v))
		from = json_object_get_string(v);
	if (o && json_object_object_get_ex(o, "to", &v))
		to = json_object_get_string(v);
	if (o && json_object_object_get_ex(o, "beside", &v))
		name = json_object_get_string(v);
	if (o && json_object_object_get_ex(o, "side", &v))
		side = json_object_get_string(v);
	if (o && json_object_object_get_ex(o, "sealed_from", &v))
		m->sealed_from = json_object_get_boolean(v);
	if (o && json_object_object_get_ex(o, "sealed_to", &v))
		m->sealed_to = json_object_get_boolean(v);
	rc = -EINVAL;
	if (from && to && name && side && (m->from = bri_store_format(from)) &&
	    (m->to = bri_store_format(to)) && beside_name_ok(name) &&
	    (strcmp(side, "old") == 0 || strcmp(side, "new") == 0)) {
		snprintf(m->name, sizeof(m->name), "%s", name);
		m->after = strcmp(side, "new") == 0;
		rc = 0;
	}
	json_object_put(o);
	return rc;
}

static int beside_marker_write(struct bri_store *s, const struct beside_marker *m, bool after,
                               struct bri_err *err)
{
	json_object *o = json_object_new_object();
	const char *text;
	int rc;

	if (!o)
		return bri_err_set(err, -ENOMEM, "out of memory");
	json_object_object_add(o, "from", json_object_new_string(m->from->format));
	json_object_object_add(o, "to", json_object_new_string(m->to->format));
	json_object_object_add(o, "sealed_from", json_object_new_boolean(m->sealed_from));
	json_object_object_add(o, "sealed_to", json_object_new_boolean(m->sealed_to));
	json_object_object_add(o, "beside", json_object_new_string(m->name));
	json_object_object_add(o, "side", json_object_new_string(after ? "new" : "old"));
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
	                                             JSON_C_TO_STRING_NOSLASHESCAPE);
	rc = bri_store_write_file(s, BRI_MIGRATE_MARKER, text, strlen(text), err);
	json_object_put(o);
	return rc;
}

/* What a run does, found before anything is written (keys included). */
struct plan {
	const struct bri_store_ops *to;
	bool beside;            /* the key changes: built beside */
	bool already;           /* the store is as asked, nothing under way */
	bool undo;              /* before the switch, asked for the store as it is */
	bool after;             /* after the switch: only the old folder is left to go */
	struct beside_marker m; /* when one is there (has_marker) */
	bool has_marker;
	struct bri_seal *now_key; /* opens the store at its path (NULL: not encrypted) */
	struct bri_seal *old_key; /* after the switch: opens the old store beside */
	const char *new_key_file; /* the new store's key file (NULL: not encrypted) */
	struct bri_seal *new_key; /* a fresh key from it */
};

static void plan_free(struct plan *p)
{
	seal_free(p->now_key);
	seal_free(p->old_key);
	seal_free(p->new_key);
}

/* store.json of the folder dirfd (NULL when there is none: plain). */
static int store_json_at(int dirfd, char **text)
{
	struct bri_store tmp = {.dirfd = dirfd, .dir = "."};
	size_t len;
	int rc = bri_store_read_file(&tmp, "store.json", 64u << 10, text, &len);

	if (rc == -ENOENT) {
		*text = NULL;
		rc = 0;
	}
	return rc;
}

static bool json_sealed(const char *text)
{
	json_object *o = text ? json_tokener_parse(text) : NULL, *v;
	bool sealed = o && json_object_object_get_ex(o, "encryption", &v) &&
	              json_object_is_type(v, json_type_string) &&
	              strcmp(json_object_get_string(v), "none") != 0;

	json_object_put(o);
	return sealed;
}

/* The key among files (NULL entries skipped) that opens store.json text, or the first's error. */
static int key_among(const char *where, const char *text, const char *const files[2],
                     struct bri_seal **out, struct bri_err *err)
{
	struct bri_err first = {0};
	int rc = -ENOKEY, rc1 = 0;

	for (int i = 0; i < 2; i++) {
		struct bri_err e = {0};

		if (!files[i])
			continue;
		rc = store_key_for_json(where, text, files[i], out, &e);
		if (rc == 0)
			return 0;
		if (!rc1) {
			rc1 = rc;
			first = e;
		}
	}
	if (!rc1)
		return store_key_for_json(where, text, NULL, out, err); /* -ENOKEY's words */
	if (err)
		*err = first;
	return rc1;
}

/*
 * A store swapped with a folder beside it must be a folder of its own on its
 * parent's file system, and not the live database's folder: checked before
 * anything is written.
 */
static int beside_possible(const struct bri_store *s, struct bri_err *err)
{
	struct stat st_store, st_parent, st_db;
	char *dbdir;
	int parentfd = openat(s->dirfd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;

	if (parentfd < 0)
		return bri_err_set(err, -errno, "cannot open the folder holding %s: %s", s->dir,
		                   strerror(errno));
	if (fstat(s->dirfd, &st_store) < 0 || fstat(parentfd, &st_parent) < 0 ||
	    st_store.st_dev != st_parent.st_dev || st_store.st_ino == st_parent.st_ino)
		rc = bri_err_set(err, -EXDEV,
		                 "the backup store %s is a mount point (or the root of its file "
		                 "system); a migrate that changes the key builds the new store "
		                 "in a folder beside it and swaps the two, so the store must be "
		                 "a folder of its own inside a folder on the same file system; "
		                 "nothing was changed",
		                 s->dir);
	close(parentfd);
	dbdir = strndup(s->db_path, (size_t)(strrchr(s->db_path, '/') - s->db_path));
	if (rc == 0 && dbdir && stat(dbdir[0] ? dbdir : "/", &st_db) == 0 &&
	    st_db.st_dev == st_store.st_dev && st_db.st_ino == st_store.st_ino)
		rc = bri_err_set(err, -EINVAL,
		                 "the backup store %s is the live database's own folder; a "
		                 "migrate that changes the key swaps the store's folder, which "
		                 "would move the live database; nothing was changed",
		                 s->dir);
	free(dbdir);
	return rc;
}

static int plan_make(struct bri_store *s, const struct bri_store_ops *to, const char *new_key_file,
                     struct plan *p, struct bri_err *err)
{
	const char *k = s->key_file, *tk;
	const struct bri_store_ops *dummy_from, *dummy_to;
	char *now = NULL, *old = NULL;
	bool sealed_now, same;
	int rc;

	memset(p, 0, sizeof(*p));
	p->to = to;
	rc = store_json_at(s->dirfd, &now);
	if (rc < 0)
		return bri_err_set(err, rc, "cannot read %s/store.json: %s", s->dir, strerror(-rc));
	sealed_now = json_sealed(now);
	rc = beside_marker_read(s, &p->m);
	p->has_marker = rc == 0;
	if (rc < 0 && rc != -ENOENT && rc != -EXDEV) {
		rc = bri_err_set(err, rc,
		                 "%s/%s cannot be read; remove it only if no migrate is under way",
		                 s->dir, BRI_MIGRATE_MARKER);
		goto out;
	}
	rc = 0;
	if (p->has_marker && p->m.after) {
		/* The new store is in force; the old one beside has only to go. */
		const char *now_files[2] = {new_key_file, k}, *old_files[2] = {k, new_key_file};
		int fd;

		p->beside = p->after = true;
		if (sealed_now && (rc = key_among(s->dir, now, now_files, &p->now_key, err)) < 0)
			goto out;
		fd = openat(s->dirfd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd >= 0) {
			int nfd =
			    openat(fd, p->m.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			close(fd);
			if (nfd >= 0) {
				rc = store_json_at(nfd, &old);
				close(nfd);
				if (rc == 0 && json_sealed(old))
					rc = key_among(p->m.name, old, old_files, &p->old_key, err);
				if (rc < 0) {
					bri_err_wrap(
					    err, rc,
					    "the old store beside (being removed by an "
					    "interrupted migrate) needs its key: run migrate "
					    "again with the same key arguments");
					goto out;
				}
			}
		}
		goto out;
	}
	if (sealed_now) {
		/* Its key first: a wrong or missing one is refused before anything. */
		rc = store_key_for_json(s->dir, now, k, &p->now_key, err);
		if (rc < 0)
			goto out;
		if (new_key_file && to != &bri_store_pages_ops) {
			rc = bri_err_set(err, -EINVAL,
			                 "--new-key-file is for --to pages (a plain store is not "
			                 "encrypted)");
			goto out;
		}
		tk = to == &bri_store_pages_ops ? new_key_file : NULL;
	} else {
		if (k && new_key_file) {
			rc = bri_err_set(err, -EINVAL,
			                 "the backup store %s is not encrypted: give the key to "
			                 "encrypt it with by --key-file F or --new-key-file F, not "
			                 "both",
			                 s->dir);
			goto out;
		}
		tk = new_key_file ? new_key_file : k;
		if (tk && to != &bri_store_pages_ops) {
			rc = bri_err_set(
			    err, -EINVAL,
			    "only a page store is encrypted (migrate --to pages "
			    "--key-file F); the backup store %s is not encrypted, so no "
			    "key file is taken",
			    s->dir);
			goto out;
		}
	}
	same = to == s->ops;
	if (same && tk) {
		struct bri_seal *k2 = NULL;

		/* Re-keyed with the key it has: nothing to do. */
		same = sealed_now && store_key_for_json(s->dir, now, tk, &k2, NULL) == 0;
		seal_free(k2);
	}
	p->new_key_file = tk;
	if (p->has_marker) {
		p->beside = true;
		p->undo = same;
	} else if (marker_read(s, &dummy_from, &dummy_to) != -ENOENT) {
		if (sealed_now || tk) {
			rc = bri_err_set(
			    err, -EALREADY,
			    "the backup store %s has an interrupted migrate (%s); finish "
			    "it (or undo it) first, with migrate --to and no key",
			    s->dir, BRI_MIGRATE_MARKER);
			goto out;
		}
	} else {
		p->already = same && (sealed_now || tk);
		p->beside = !same && (sealed_now || tk);
	}
	if (p->beside && !p->undo)
		rc = beside_possible(s, err);
	/* The new key, made now: an unreadable or unfit key file is refused before anything. */
	if (rc == 0 && p->beside && !p->undo && tk)
		rc = store_key_new(tk, &p->new_key, err);
out:
	free(now);
	free(old);
	if (rc < 0)
		plan_free(p);
	return rc;
}

/* A store object for the folder name beside s (parentfd: their parent), of format ops. */
static int beside_open(const struct bri_store *s, int parentfd, const char *name,
                       struct bri_store **out, struct bri_err *err)
{
	struct bri_store *t = calloc(1, sizeof(*t));
	const char *slash = strrchr(s->dir, '/');

	*out = NULL;
	if (!t) {
		bri_err_set(err, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	t->dirfd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (t->dirfd < 0) {
		int rc = -errno;

		free(t);
		if (rc != -ENOENT)
			bri_err_set(err, rc, "cannot open the folder %s beside %s: %s", name,
			            s->dir, strerror(-rc));
		return rc < 0 ? rc : -EIO;
	}
	t->ops = &bri_store_plain_ops;
	t->lock_timeout_ms = s->lock_timeout_ms;
	if (asprintf(&t->dir, "%.*s/%s", (int)(slash - s->dir), s->dir, name) < 0)
		t->dir = NULL;
	t->db_path = strdup(s->db_path);
	t->db_filename = strdup(s->db_filename);
	t->stem = strdup(s->stem);
	if (!t->dir || !t->db_path || !t->db_filename || !t->stem) {
		bri_store_close(t);
		bri_err_set(err, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	*out = t;
	return 0;
}

/*
 * The folder name beside the store (before the switch: a copy that is only
 * ours) removed with everything in it.
 */
static int beside_wipe(int parentfd, const char *name, const char *dir, struct bri_err *err)
{
	int fd = openat(parentfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	struct dirent *d;
	DIR *dp;
	int rc = 0;

	if (fd < 0)
		return errno == ENOENT ? 0
		                       : bri_err_set(err, -errno, "cannot open %s/%s: %s", dir,
		                                     name, strerror(errno));
	dp = fdopendir(fd);
	if (!dp) {
		close(fd);
		return bri_err_set(err, -errno, "cannot read %s/%s: %s", dir, name,
		                   strerror(errno));
	}
	while (rc == 0 && (d = readdir(dp))) {
		if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
			continue;
		if (unlinkat(dirfd(dp), d->d_name, 0) < 0 && errno != ENOENT)
			rc = bri_err_set(err, -errno, "cannot remove %s/%s/%s: %s", dir, name,
			                 d->d_name, strerror(errno));
	}
	closedir(dp);
	if (rc == 0 && unlinkat(parentfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		rc =
		    bri_err_set(err, -errno, "cannot remove %s/%s: %s", dir, name, strerror(errno));
	if (rc == 0)
		fsync(parentfd);
	return rc;
}

#define AUDIT_FILE_NAME  "audit.jsonl"
#define AUDIT_LINE_LIMIT (1u << 20)

/* restore_reports.jsonl of s into t, opened with s's key and sealed with t's. */
static int convert_reports(struct bri_store *s, struct bri_store *t, struct bri_err *err)
{
	char *text;
	size_t len;
	int rc;

	rc = store_read_sealed(s, BRI_REPORTS_FILE, BRI_REPORTS_FILE_MAX, &text, &len);
	if (rc == -ENOENT)
		return bri_store_unlink(t, BRI_REPORTS_FILE);
	if (rc < 0)
		return bri_err_set(err, rc, "cannot read %s/%s: %s", s->dir, BRI_REPORTS_FILE,
		                   rc == -EBADMSG ? "damaged (its seal does not open)"
		                                  : strerror(-rc));
	rc = store_write_sealed(t, BRI_REPORTS_FILE, text, len, err);
	free(text);
	return rc;
}

/*
 * audit.jsonl of s into t, line by line (each opened with s's key, sealed
 * with t's). A line that does not open (damaged before) cannot be carried:
 * counted in *dropped.
 */
static int convert_audit(struct bri_store *s, struct bri_store *t, size_t *dropped,
                         struct bri_err *err)
{
	int in = openat(s->dirfd, AUDIT_FILE_NAME, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), out = -1;
	char *line = NULL, *tmp = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *f;
	int rc = 0;

	*dropped = 0;
	if (in < 0 && errno == ENOENT)
		return bri_store_unlink(t, AUDIT_FILE_NAME);
	if (in < 0 || !(f = fdopen(in, "r"))) {
		rc = bri_err_set(err, -errno, "cannot read %s/%s: %s", s->dir, AUDIT_FILE_NAME,
		                 strerror(errno));
		if (in >= 0)
			close(in);
		return rc;
	}
	out = bri_store_tmpfile(t, "audit", "migrate", &tmp, err);
	if (out < 0) {
		fclose(f);
		return out;
	}
	while (rc == 0 && (n = getline(&line, &cap, f)) > 0) {
		char *plain = NULL, *kept = NULL;
		size_t plen, klen;

		if (line[n - 1] == '\n')
			line[--n] = '\0';
		if (n == 0)
			continue;
		if ((size_t)n > AUDIT_LINE_LIMIT ||
		    seal_line_open(s, AUDIT_FILE_NAME, line, (size_t)n, &plain, &plen) < 0) {
			(*dropped)++;
			continue;
		}
		if (seal_line(t, AUDIT_FILE_NAME, plain, plen, &kept, &klen) < 0)
			rc = bri_err_set(err, -ENOMEM, "out of memory");
		for (size_t done = 0; rc == 0 && done <= klen;) {
			/* the line, then its newline */
			ssize_t w = done < klen ? write(out, kept + done, klen - done)
			                        : write(out, "\n", 1);

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				rc = bri_err_set(err, w < 0 ? -errno : -EIO,
				                 "cannot write the audit log's copy in %s: %s",
				                 t->dir, strerror(w < 0 ? errno : EIO));
				break;
			}
			done += (size_t)w;
		}
		free(plain);
		free(kept);
	}
	if (rc == 0 && ferror(f))
		rc = bri_err_set(err, -EIO, "cannot read %s/%s", s->dir, AUDIT_FILE_NAME);
	fclose(f);
	free(line);
	if (rc == 0)
		rc = bri_store_publish(t, out, tmp, AUDIT_FILE_NAME, false, err);
	else
		bri_store_unlink(t, tmp);
	close(out);
	free(tmp);
	return rc;
}

/* The store-level files neither format owns, removed from the old store after the switch. */
static const char *const store_files[] = {"store.json", AUDIT_FILE_NAME, BRI_REPORTS_FILE, ".lock"};

/*
 * After the switch: the old store (t, in the folder beside; its format and
 * key) goes: its format's files, then the store's own files, then anything
 * else there (not ours: moved into the store s), then the folder; then the
 * marker.
 */
static int beside_finish(struct bri_store *s, struct bri_store *t, int parentfd, const char *name,
                         struct bri_err *err)
{
	struct dirent *d;
	DIR *dp;
	int rc = 0, fd;

	if (t) {
		rc = t->ops->purge ? t->ops->purge(t, err) : 0;
		for (size_t i = 0; rc == 0 && i < sizeof(store_files) / sizeof(store_files[0]); i++)
			rc = bri_store_unlink(t, store_files[i]);
		fd = rc == 0 ? openat(t->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
		dp = fd >= 0 ? fdopendir(fd) : NULL;
		if (rc == 0 && !dp)
			rc =
			    bri_err_set(err, -errno, "cannot read %s: %s", t->dir, strerror(errno));
		while (rc == 0 && (d = readdir(dp))) {
			size_t n = strlen(d->d_name);

			if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0 ||
			    strcmp(d->d_name, BRI_MIGRATE_MARKER) == 0)
				continue;
			if (d->d_name[0] == '.' && n > 4 &&
			    strcmp(d->d_name + n - 4, ".tmp") == 0) {
				unlinkat(t->dirfd, d->d_name,
				         0); /* work in progress of the old store */
				continue;
			}
			/* Not a file of any format's: the user's, kept in the store. */
			if (renameat2(t->dirfd, d->d_name, s->dirfd, d->d_name, RENAME_NOREPLACE) <
			    0)
				bri_log(BRI_LOG_WARN, "migrate: %s/%s left where it is (%s)",
				        t->dir, d->d_name, strerror(errno));
		}
		if (dp)
			closedir(dp);
		else if (fd >= 0)
			close(fd);
		if (rc == 0)
			rc = bri_store_unlink(t, BRI_MIGRATE_MARKER);
		if (rc == 0 && unlinkat(parentfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
			bri_log(BRI_LOG_WARN, "migrate: the old store's folder %s is kept: %s",
			        t->dir, strerror(errno));
		if (rc == 0)
			fsync(parentfd);
	}
	if (rc == 0 && (rc = bri_store_unlink(s, BRI_MIGRATE_MARKER)) < 0)
		rc = bri_err_set(err, rc, "cannot remove %s/%s: %s", s->dir, BRI_MIGRATE_MARKER,
		                 strerror(-rc));
	if (rc == 0)
		rc = bri_store_sync(s, err);
	return rc;
}

/* Swaps what the two folders are, once renameat2 swapped them at their paths. */
static void swap_stores(struct bri_store *s, struct bri_store *t)
{
	const struct bri_store_ops *ops = s->ops;
	struct bri_seal *seal = s->seal;
	int fd = s->dirfd;

	s->dirfd = t->dirfd;
	s->ops = t->ops;
	s->seal = t->seal;
	t->dirfd = fd;
	t->ops = ops;
	t->seal = seal;
}

/*
 * The new store's copy in t is the one to go on with when it is of format to
 * and opens with the new key (which then takes the copy's parameters), or is
 * empty; else it is wiped.
 */
static int beside_reuse(struct bri_store *t, struct plan *p, bool *reuse)
{
	char *text = NULL;
	int rc = store_json_at(t->dirfd, &text);

	*reuse = false;
	if (rc < 0)
		return 0;
	if (!text) {
		/* No store.json: plain, or a page copy killed before its store.json (the
		 * secret alone). */
		*reuse = p->to == &bri_store_plain_ops;
		return 0;
	}
	if (p->to == &bri_store_pages_ops && p->new_key_file) {
		struct bri_seal *k = NULL;

		if (store_key_for_json(t->dir, text, p->new_key_file, &k, NULL) == 0 && k) {
			seal_free(p->new_key);
			p->new_key = k;
			*reuse = true;
		}
	}
	free(text);
	return 0;
}

static int beside_run(struct bri_store *s, struct plan *p, const struct bri_op_ctx *ctx,
                      struct bri_migrate_result *res, struct bri_err *err)
{
	const char *base = strrchr(s->dir, '/') + 1;
	struct beside_marker m = p->m;
	struct bri_store *t = NULL;
	struct stat st_parent;
	size_t dropped = 0;
	bool reuse;
	int parentfd, rc;

	rc = bri_store_check(s, err);
	if (rc < 0)
		return rc;
	parentfd = openat(s->dirfd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (parentfd < 0)
		return bri_err_set(err, -errno, "cannot open the folder holding %s: %s", s->dir,
		                   strerror(errno));
	if (p->after) {
		res->finished = true;
		seal_free(s->seal);
		s->seal = p->now_key;
		p->now_key = NULL;
		rc = beside_open(s, parentfd, m.name, &t, err);
		if (rc == 0) {
			t->ops = m.from;
			t->seal = p->old_key;
			p->old_key = NULL;
		}
		if (rc == 0 || rc == -ENOENT)
			rc = beside_finish(s, rc == 0 ? t : NULL, parentfd, m.name, err);
		goto out;
	}
	if (p->undo) {
		res->finished = true;
		rc = beside_wipe(parentfd, m.name, s->dir, err);
		if (rc == 0 && (rc = bri_store_unlink(s, BRI_MIGRATE_MARKER)) < 0)
			rc = bri_err_set(err, rc, "cannot remove %s/%s: %s", s->dir,
			                 BRI_MIGRATE_MARKER, strerror(-rc));
		if (rc == 0)
			rc = bri_store_sync(s, err);
		goto out;
	}
	if (!p->has_marker) {
		snprintf(m.name, sizeof(m.name), ".%.*s.migrate", NAME_MAX - 9, base);
		if (fstatat(parentfd, m.name, &st_parent, AT_SYMLINK_NOFOLLOW) == 0) {
			rc =
			    bri_err_set(err, -EEXIST,
			                "%s/../%s exists but no migrate of the store is under way; "
			                "it is not this migrate's to use: move it away and run "
			                "again; nothing was changed",
			                s->dir, m.name);
			goto out;
		}
	}
	m.from = s->ops;
	m.to = p->to;
	m.sealed_from = p->now_key != NULL;
	m.sealed_to = p->new_key_file != NULL;
	/* 1. The marker; the folder beside, with the new store's secret and store.json. */
	rc = beside_marker_write(s, &m, false, err);
	if (rc < 0)
		goto out;
	rc = beside_open(s, parentfd, m.name, &t, err);
	if (rc == 0) {
		rc = beside_reuse(t, p, &reuse);
		if (rc == 0 && !reuse) {
			bri_store_close(t);
			t = NULL;
			rc = beside_wipe(parentfd, m.name, s->dir, err);
			if (rc == 0)
				rc = -ENOENT;
		}
	}
	if (rc == -ENOENT) {
		rc = mkdirat(parentfd, m.name, 0700) < 0 ? -errno : 0;
		if (rc < 0)
			bri_err_set(err, rc, "cannot make %s/../%s: %s", s->dir, m.name,
			            strerror(-rc));
		else
			rc = beside_open(s, parentfd, m.name, &t, err);
	}
	if (rc == 0 && !t) /* beside_open gives a store with 0 */
		rc = bri_err_set(err, -EIO, "cannot open the folder %s beside %s", m.name, s->dir);
	if (rc < 0 || !t)
		goto out;
	seal_free(s->seal); /* the caller's, when it opened the store with its key */
	s->seal = p->now_key;
	p->now_key = NULL;
	t->seal = p->new_key;
	p->new_key = NULL;
	if (p->to->init)
		rc = p->to->init(t, err);
	if (rc == 0 && p->to != &bri_store_plain_ops)
		rc = store_format_publish(t, p->to, err);
	t->ops = p->to;
	/* 2. Every backup, its sidecars, the reports and the audit log. */
	if (rc == 0)
		rc = convert_all(s, s->ops, t, p->to, ctx, res, err);
	if (rc == 0)
		rc = convert_reports(s, t, err);
	if (rc == 0)
		rc = convert_audit(s, t, &dropped, err);
	if (rc < 0)
		goto out;
	if (dropped)
		bri_log(BRI_LOG_WARN,
		        "migrate: %zu line(s) of %s/%s were damaged (they do not open) and "
		        "are not in the converted audit log",
		        dropped, s->dir, AUDIT_FILE_NAME);
	bri_testpoint("migrate-converted");
	rc = beside_marker_write(t, &m, true, err);
	if (rc == 0)
		rc = bri_store_sync(t, err);
	if (rc < 0)
		goto out;
	/* 3. The switch: the two folders swapped in one step. */
	if (renameat2(parentfd, base, parentfd, m.name, RENAME_EXCHANGE) < 0) {
		rc = bri_err_set(err, -errno,
		                 "cannot swap %s with the new store beside it (%s): %s; nothing "
		                 "was switched",
		                 s->dir, m.name, strerror(errno));
		goto out;
	}
	if (fsync(parentfd) < 0) {
		rc = bri_err_set(err, -errno, "cannot sync the folder holding %s: %s", s->dir,
		                 strerror(errno));
		swap_stores(s, t);
		goto out;
	}
	swap_stores(s, t);
	bri_testpoint("migrate-switched");
	/* 4. The old store goes. */
	rc = beside_finish(s, t, parentfd, m.name, err);
out:
	res->sealed_before = m.sealed_from;
	res->sealed_after = m.sealed_to;
	bri_store_close(t);
	close(parentfd);
	return rc;
}

static int migrate_locked(struct bri_store *s, const struct bri_store_ops *to,
                          const struct bri_op_ctx *ctx, struct bri_migrate_result *res,
                          struct bri_err *err)
{
	const struct bri_store_ops *from = s->ops, *mfrom, *mto;
	int rc;

	rc = bri_store_check(s, err);
	if (rc < 0)
		return rc;
	rc = marker_read(s, &mfrom, &mto);
	if (rc < 0 && rc != -ENOENT)
		return bri_err_set(err, rc,
		                   "%s/%s cannot be read; remove it only if no migrate "
		                   "is under way",
		                   s->dir, BRI_MIGRATE_MARKER);
	if (from == to) {
		/* Done, or interrupted after the switch, or undone before it. */
		if (rc == -ENOENT) {
			res->already = true;
			return 0;
		}
		res->finished = true;
		return purge(s, mfrom != to ? mfrom : mto, err);
	}
	rc = marker_write(s, from, to, err);
	if (rc == 0 && to->init)
		rc = to->init(s, err);
	if (rc < 0)
		return rc;
	/* The new format's view of the folder while its backups are written. */
	s->ops = to;
	rc = convert_all(s, from, s, to, ctx, res, err);
	s->ops = from;
	if (rc < 0)
		return rc;
	bri_testpoint("migrate-converted");
	rc = store_format_publish(s, to, err);
	if (rc < 0)
		return rc;
	bri_testpoint("migrate-switched");
	return purge(s, from, err);
}

int bri_migrate_ex(struct bri_store *s, const char *to, const char *new_key_file,
                   const struct bri_op_ctx *ctx, struct bri_migrate_result *res,
                   struct bri_err *err)
{
	const struct bri_store_ops *ops = bri_store_format(to);
	int saved = s->lock_timeout_ms, lockfd, rc;
	double start = bri_now_mono();
	struct plan p;

	memset(res, 0, sizeof(*res));
	if (!ops)
		return bri_err_set(err, -EINVAL, "unknown store format \"%.64s\" (plain or pages)",
		                   to);
	snprintf(res->from, sizeof(res->from), "%s", s->ops->format);
	snprintf(res->to, sizeof(res->to), "%s", ops->format);
	/* The keys before anything: a wrong or missing one changes nothing. */
	rc = plan_make(s, ops, new_key_file, &p, err);
	if (rc < 0)
		return rc;
	if (p.already) {
		res->already = true;
		res->sealed_before = res->sealed_after = p.now_key != NULL;
		plan_free(&p);
		return 0;
	}
	/* Refused at once, not waited for, while another process holds the store. */
	s->lock_timeout_ms = 1;
	lockfd = bri_store_lock(s, err);
	s->lock_timeout_ms = saved;
	if (lockfd < 0) {
		plan_free(&p);
		return lockfd;
	}
	rc = p.beside ? beside_run(s, &p, ctx, res, err) : migrate_locked(s, ops, ctx, res, err);
	bri_store_unlock(lockfd);
	plan_free(&p);
	bri_audit_record(s, "migrate", ops->format, rc, rc < 0 && err ? err->msg : NULL,
	                 bri_now_mono() - start, ctx);
	return rc;
}

int bri_migrate(struct bri_store *s, const char *to, const struct bri_op_ctx *ctx,
                struct bri_migrate_result *res, struct bri_err *err)
{
	return bri_migrate_ex(s, to, NULL, ctx, res, err);
}
