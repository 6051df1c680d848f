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
 * whole: the same stages and pause points (migrate_beside.c). Which one a
 * run is, and every key it needs, is found before anything is written
 * (plan_make).
 */
#include "bri/migrate.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bri/audit.h"
#include "bri/checksum.h"
#include "bri/meta.h"
#include "bri/testpoint.h"
#include "migrate_int.h"
#include "seal.h"
#include "store_int.h"

/* A metadata, pin or report is a few kilobytes; this is far more. */
#define SIDECAR_MAX (16u << 20)
#define COPY_CHUNK  (1u << 20)

/*
 * The marker's formats: 0, -ENOENT, -EXDEV for the marker of a conversion
 * built beside (migrate_beside_marker_read), or -EINVAL for one that cannot
 * be read.
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
		rc = -EXDEV; /* a conversion built beside (migrate_beside.c) */
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
int migrate_convert_all(struct bri_store *s, const struct bri_store_ops *a, struct bri_store *t,
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

static void plan_free(struct plan *p)
{
	seal_free(p->now_key);
	seal_free(p->old_key);
	seal_free(p->new_key);
}

/* store.json of the folder dirfd (NULL when there is none: plain). */
int migrate_store_json_at(int dirfd, char **text)
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
	rc = migrate_store_json_at(s->dirfd, &now);
	if (rc < 0)
		return bri_err_set(err, rc, "cannot read %s/store.json: %s", s->dir, strerror(-rc));
	sealed_now = json_sealed(now);
	rc = migrate_beside_marker_read(s, &p->m);
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
				rc = migrate_store_json_at(nfd, &old);
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
		rc = migrate_beside_possible(s, err);
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
	rc = migrate_convert_all(s, from, s, to, ctx, res, err);
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
	rc = p.beside ? migrate_beside_run(s, &p, ctx, res, err)
	              : migrate_locked(s, ops, ctx, res, err);
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
