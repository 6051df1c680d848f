/*
 * The plain store format (SPEC.md section 1, the seed's layout): a backup
 * NAME is the complete database NAME.db, with sidecars NAME.db.meta,
 * NAME.db.verify, NAME.db.pin and others beside it, readable without
 * this software. The only file that spells those names. A new backup is a
 * temporary file renamed to NAME.db without replacing anything; that rename
 * is the commit point. Everything is opened relative to the store's
 * descriptor and never through a symlink. Also the reader of a plain file
 * outside any store (bri_reader_open_path).
 */
#include "bri/store.h"
#include "bri/testpoint.h"
#include "store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* NAME.db plus the longest suffix, with room to spare. */
#define FILE_MAX (BRI_NAME_MAX + 16)

static const char *const sidecar_suffix[BRI_SIDECAR_KINDS] = {
    [BRI_SIDECAR_META] = ".db.meta",       [BRI_SIDECAR_VERIFY] = ".db.verify",
    [BRI_SIDECAR_PIN] = ".db.pin",         [BRI_SIDECAR_REHEARSAL] = ".db.rehearsal",
    [BRI_SIDECAR_OFFSITE] = ".db.offsite",
};

/* "NAME.db" into file. */
static void db_file(const char *name, char file[FILE_MAX])
{
	snprintf(file, FILE_MAX, "%s.db", name);
}

/* "NAME<suffix of kind>" into file. */
static void sidecar_file(const char *name, enum bri_sidecar kind, char file[FILE_MAX])
{
	snprintf(file, FILE_MAX, "%s%s", name, sidecar_suffix[kind]);
}

/* The backup name of a directory entry "NAME.db", or false. */
static bool backup_name(const char *fname, char name[BRI_NAME_MAX + 1])
{
	size_t n = strlen(fname);

	if (n <= 3 || n - 3 > BRI_NAME_MAX || strcmp(fname + n - 3, ".db") != 0)
		return false;
	memcpy(name, fname, n - 3);
	name[n - 3] = '\0';
	return bri_store_check_name(name, n - 3, NULL) == 0;
}

static int plain_list(const struct bri_store *s,
                      int (*fn)(void *arg, const char *name, const struct stat *st), void *arg,
                      struct bri_err *err)
{
	char name[BRI_NAME_MAX + 1];
	struct stat live = {0}, st;
	struct dirent *d;
	bool have_live;
	DIR *dir;
	int fd, rc = 0;

	/* A store in the live database's own folder must not list the database. */
	have_live = stat(s->db_path, &live) == 0;
	fd = openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || !(dir = fdopendir(fd))) {
		rc = bri_err_set(err, -errno, "cannot read backup folder %s: %s", s->dir,
		                 strerror(errno));
		if (fd >= 0)
			close(fd);
		return rc;
	}
	for (;;) {
		errno = 0;
		d = readdir(dir);
		if (!d) {
			if (errno)
				rc = bri_err_set(err, -errno, "cannot read backup folder %s: %s",
				                 s->dir, strerror(errno));
			break;
		}
		if (!backup_name(d->d_name, name))
			continue;
		if (fstatat(s->dirfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
		    !S_ISREG(st.st_mode))
			continue;
		if (have_live && st.st_ino == live.st_ino && st.st_dev == live.st_dev)
			continue;
		rc = fn(arg, name, &st);
		if (rc)
			break;
	}
	closedir(dir);
	return rc;
}

static int plain_stat(const struct bri_store *s, const char *name, struct stat *st)
{
	char file[FILE_MAX];
	struct stat got;

	db_file(name, file);
	if (fstatat(s->dirfd, file, &got, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? -ENOENT : -errno;
	if (!S_ISREG(got.st_mode) || bri_store_is_live(s, &got))
		return -ENOENT;
	*st = got;
	return 0;
}

static ssize_t fd_pread(struct bri_reader *r, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(r->fd, (char *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return done ? (ssize_t)done : -errno;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static void fd_close(struct bri_reader *r)
{
	if (r->fd >= 0)
		close(r->fd);
	free(r->label);
	free(r);
}

/* A reader of the open regular file fd (taken over, closed on failure). */
static int fd_reader(int fd, char *label, struct bri_reader **out, struct bri_err *err)
{
	struct bri_reader *r = calloc(1, sizeof(*r));
	int rc;

	if (!r || !label) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_fail;
	}
	if (fstat(fd, &r->st) < 0) {
		rc = -errno; /* before bri_err_set, which may change errno */
		if (rc >= 0)
			rc = -EIO; /* never success: *out is set only on success */
		bri_err_set(err, rc, "cannot read %s: %s", label, strerror(-rc));
		goto out_fail;
	}
	if (!S_ISREG(r->st.st_mode)) {
		rc = bri_err_set(err, -EINVAL, "cannot read %s: not a regular file", label);
		goto out_fail;
	}
	r->pread = fd_pread;
	r->close = fd_close;
	r->size = (uint64_t)r->st.st_size;
	r->fd = fd;
	r->label = label;
	*out = r;
	return 0;
out_fail:
	free(r);
	free(label);
	close(fd);
	return rc;
}

int bri_reader_open_path(const char *path, struct bri_reader **out, struct bri_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return bri_err_set(err, -errno, "cannot read %s: %s", path, strerror(errno));
	return fd_reader(fd, strdup(path), out, err);
}

static int plain_open_reader(const struct bri_store *s, const char *name, struct bri_reader **out,
                             struct bri_err *err)
{
	struct bri_reader *r;
	char file[FILE_MAX];
	int fd, rc;

	db_file(name, file);
	fd = openat(s->dirfd, file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		rc = -errno;
		if (rc == -ENOENT)
			return bri_err_set(err, rc, "no backup named %s in %s", name, s->dir);
		return bri_err_set(err, rc, "cannot read %s/%s: %s", s->dir, file, strerror(-rc));
	}
	rc = fd_reader(fd, bri_store_path(s, name, ".db"), &r, err);
	if (rc < 0)
		return rc;
	if (bri_store_is_live(s, &r->st)) {
		bri_reader_close(r);
		return bri_err_set(err, -ENOENT, "no backup named %s in %s", name, s->dir);
	}
	*out = r;
	return 0;
}

/* The temporary file's name in the store: what the writer keeps. */
struct plain_writer {
	char *tmp; /* relative to the store */
};

static int plain_write_begin(struct bri_store *s, const char *name, struct bri_backup_writer **out,
                             struct bri_err *err)
{
	struct bri_backup_writer *w = calloc(1, sizeof(*w));
	struct plain_writer *p = calloc(1, sizeof(*p));
	int rc;

	if (!w || !p) {
		free(w);
		free(p);
		return bri_err_set(err, -ENOMEM, "out of memory");
	}
	w->s = s;
	w->priv = p;
	snprintf(w->name, sizeof(w->name), "%s", name);
	/* A store folder replaced since it was opened gets nothing, not even a temporary file. */
	rc = bri_store_check(s, err);
	if (rc < 0)
		goto out_free;
	w->fd = bri_store_tmpfile(s, name, "create", &p->tmp, err);
	if (w->fd < 0) {
		rc = w->fd;
		goto out_free;
	}
	/* SQLite opens the copy by name: a name through the store's descriptor. */
	w->path = bri_store_fd_path(s, p->tmp, NULL);
	if (!w->path) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		bri_store_write_end(w);
		return rc;
	}
	*out = w;
	return 0;
out_free:
	free(p);
	free(w);
	return rc;
}

static int plain_sidecar_write(struct bri_store *s, const char *name, enum bri_sidecar kind,
                               const void *data, size_t len, struct bri_err *err)
{
	char file[FILE_MAX];

	sidecar_file(name, kind, file);
	return bri_store_write_file(s, file, data, len, err);
}

static int plain_sidecar_remove(struct bri_store *s, const char *name, enum bri_sidecar kind)
{
	char file[FILE_MAX];

	sidecar_file(name, kind, file);
	return bri_store_unlink(s, file);
}

/* The metadata first, then the .db's rename: a backup is never without its metadata. */
static int plain_write_commit(struct bri_backup_writer *w, const char *meta, size_t len,
                              struct bri_err *err)
{
	struct plain_writer *p = w->priv;
	char file[FILE_MAX];
	struct stat st;
	int rc;

	/* Never the metadata of an existing backup of that name (noreplace
	 * below refuses its .db, and the metadata would go with it). */
	db_file(w->name, file);
	rc = fstatat(w->s->dirfd, file, &st, AT_SYMLINK_NOFOLLOW) == 0 ? -EEXIST
	     : errno != ENOENT                                         ? -errno
	                                                               : 0;
	if (rc < 0)
		return bri_err_set(err, rc, "cannot publish %s/%s: %s", w->s->dir, file,
		                   rc == -EEXIST ? "it already exists" : strerror(-rc));
	rc = plain_sidecar_write(w->s, w->name, BRI_SIDECAR_META, meta, len, err);
	if (rc < 0)
		return rc;
	bri_testpoint("plain-between-renames"); /* the metadata is there, the .db not yet */
	rc = bri_store_publish(w->s, w->fd, p->tmp, file, true, err);
	if (rc < 0)
		plain_sidecar_remove(w->s, w->name, BRI_SIDECAR_META);
	return rc;
}

static void plain_write_end(struct bri_backup_writer *w)
{
	static const char *const sqlite_files[] = {"-wal", "-shm", "-journal"};
	struct plain_writer *p = w->priv;
	char file[PATH_MAX];

	if (!w->committed && p->tmp) {
		/* The copy and what SQLite may have left beside it. */
		bri_store_unlink(w->s, p->tmp);
		for (size_t i = 0; i < sizeof(sqlite_files) / sizeof(sqlite_files[0]); i++)
			if ((size_t)snprintf(file, sizeof(file), "%s%s", p->tmp, sqlite_files[i]) <
			    sizeof(file))
				bri_store_unlink(w->s, file);
	}
	if (w->fd >= 0)
		close(w->fd);
	free(w->path);
	free(p->tmp);
	free(p);
	free(w);
}

/* The .db goes first: an interrupted removal leaves at most sidecars the sweep removes. */
static int plain_remove(struct bri_store *s, const char *name, struct bri_err *err)
{
	char file[FILE_MAX];
	int rc;

	db_file(name, file);
	rc = bri_store_unlink(s, file);
	for (int k = 0; rc == 0 && k < BRI_SIDECAR_KINDS; k++) {
		sidecar_file(name, (enum bri_sidecar)k, file);
		rc = bri_store_unlink(s, file);
	}
	if (rc < 0)
		return bri_err_set(err, rc, "cannot remove %s/%s: %s", s->dir, file, strerror(-rc));
	return bri_store_sync(s, err);
}

static int plain_sidecar_read(const struct bri_store *s, const char *name, enum bri_sidecar kind,
                              size_t max, char **out, size_t *len)
{
	char file[FILE_MAX];

	sidecar_file(name, kind, file);
	return bri_store_read_file(s, file, max, out, len);
}

static int plain_sidecar_stat(const struct bri_store *s, const char *name, enum bri_sidecar kind,
                              struct stat *st)
{
	char file[FILE_MAX];

	sidecar_file(name, kind, file);
	return store_stat_file(s, file, st);
}

static char *plain_backup_path(const struct bri_store *s, const char *name)
{
	return bri_store_path(s, name, ".db");
}

/*
 * A metadata, verification result, pin, rehearsal status or offsite state
 * whose NAME.db is missing. Any other file is not one (restore reports live
 * in a file of their own, reports.c, and may outlive their backup).
 */
static bool plain_is_leftover(const struct bri_store *s, const char *fname)
{
	return store_sidecar_orphan(s, fname, sidecar_suffix, ".db");
}

static int add_name(void *arg, const char *name, const struct stat *st)
{
	(void)st;
	return name_list_add(arg, name);
}

/* Each backup's sidecars, then its .db (never the live database: the list skips it). */
static int plain_purge(struct bri_store *s, struct bri_err *err)
{
	struct name_list names = {0};
	char file[FILE_MAX];
	int rc;

	rc = plain_list(s, add_name, &names, err);
	for (size_t i = 0; rc == 0 && i < names.n; i++) {
		for (int k = 0; rc == 0 && k < BRI_SIDECAR_KINDS; k++) {
			sidecar_file(names.v[i], (enum bri_sidecar)k, file);
			rc = bri_store_unlink(s, file);
		}
		db_file(names.v[i], file);
		if (rc == 0)
			rc = bri_store_unlink(s, file);
		if (rc < 0)
			rc = bri_err_set(err, rc, "cannot remove %s/%s: %s", s->dir, file,
			                 strerror(-rc));
		else if (i == 0)
			bri_testpoint("migrate-purged-one");
	}
	name_list_free(&names);
	return rc == 0 ? bri_store_sync(s, err) : rc;
}

const struct bri_store_ops bri_store_plain_ops = {
    .format = "plain",
    .list = plain_list,
    .stat = plain_stat,
    .open_reader = plain_open_reader,
    .write_begin = plain_write_begin,
    .write_commit = plain_write_commit,
    .write_end = plain_write_end,
    .remove = plain_remove,
    .sidecar_read = plain_sidecar_read,
    .sidecar_write = plain_sidecar_write,
    .sidecar_remove = plain_sidecar_remove,
    .sidecar_stat = plain_sidecar_stat,
    .backup_path = plain_backup_path,
    .is_leftover = plain_is_leftover,
    .purge = plain_purge,
};
