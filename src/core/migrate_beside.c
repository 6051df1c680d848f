/*
 * migrate (include/bri/migrate.h): the conversions that change the key,
 * built beside the store and swapped in. The conversion in place, the plan
 * (plan_make: which one a run is, and its keys) and the dispatch are
 * migrate.c.
 *
 * Decrypting (an encrypted page store to plain), encrypting (a store
 * without encryption to an encrypted page store) and re-keying change what
 * every sealed file holds, under the same names (a page store re-keyed is
 * still a page store; audit.jsonl and restore_reports.jsonl are one file in
 * either form). So the new store is built whole in a folder of its own
 * beside the store, ".<store's name>.migrate" in the same parent folder
 * (never in $TMPDIR): every backup read through the old key (in memory:
 * no reader spills to disk) and written sealed with the new one (or
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

#include "bri/log.h"
#include "bri/reports.h"
#include "bri/testpoint.h"
#include "migrate_int.h"
#include "seal.h"
#include "store_int.h"

static bool beside_name_ok(const char *n)
{
	return n[0] == '.' && strcmp(n, ".") != 0 && strcmp(n, "..") != 0 && !strchr(n, '/') &&
	       strlen(n) <= NAME_MAX;
}

/* 0, -ENOENT, -EXDEV for an in-place marker, or -EINVAL. */
int migrate_beside_marker_read(const struct bri_store *s, struct beside_marker *m)
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

/*
 * A store swapped with a folder beside it must be a folder of its own on its
 * parent's file system, and not the live database's folder: checked before
 * anything is written.
 */
int migrate_beside_possible(const struct bri_store *s, struct bri_err *err)
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
	int rc = migrate_store_json_at(t->dirfd, &text);

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

int migrate_beside_run(struct bri_store *s, struct plan *p, const struct bri_op_ctx *ctx,
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
		rc = migrate_convert_all(s, s->ops, t, p->to, ctx, res, err);
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
