/*
 * The page store format (SPEC.md section 5): a backup NAME is NAME.meta
 * (the same JSON as plain's; checksum the SHA-256 of the database as
 * served), NAME.manifest (page size, count, one page id per page; the
 * commit point) and pages kept once each in shared pack files (pack.c).
 * Sidecars are NAME.verify, NAME.pin and the like. The only file that
 * spells those names. In an encrypted store the names stay (they are the
 * backups' names, which SPEC.md section 5 leaves visible) and every file's
 * content is sealed: packs and manifests by pack.c, the metadata and the
 * sidecars by store_read_sealed/store_write_sealed (seal.h), bound to their
 * file names.
 *
 * Here: the names, the listing, the sidecars, removal, purge, init, usage
 * and the ops table. The reader is pages_read.c, the writer pages_write.c
 * (pages_int.h: what they share with this file). Removing a backup removes
 * its manifest first, then its sidecars, then frees the pages no remaining
 * manifest uses (pages_gc).
 */
#include "bri/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "bri/testpoint.h"
#include "pack.h"
#include "pages_int.h"
#include "seal.h"
#include "store_int.h"

static const char *const sidecar_suffix[BRI_SIDECAR_KINDS] = {
    [BRI_SIDECAR_META] = ".meta",       [BRI_SIDECAR_VERIFY] = ".verify",
    [BRI_SIDECAR_PIN] = ".pin",         [BRI_SIDECAR_REHEARSAL] = ".rehearsal",
    [BRI_SIDECAR_OFFSITE] = ".offsite",
};

static void sidecar_file(const char *name, enum bri_sidecar kind, char file[FILE_MAX])
{
	snprintf(file, FILE_MAX, "%s%s", name, sidecar_suffix[kind]);
}

void pages_manifest_file(const char *name, char file[FILE_MAX])
{
	snprintf(file, FILE_MAX, "%s" MANIFEST_SUFFIX, name);
}

static bool backup_name(const char *fname, char name[BRI_NAME_MAX + 1])
{
	size_t n = strlen(fname), m = strlen(MANIFEST_SUFFIX);

	if (n <= m || n - m > BRI_NAME_MAX || strcmp(fname + n - m, MANIFEST_SUFFIX) != 0)
		return false;
	memcpy(name, fname, n - m);
	name[n - m] = '\0';
	return bri_store_check_name(name, n - m, NULL) == 0;
}

/* The manifest's identity with the backup's logical size, from the manifest's header. */
static int manifest_stat(const struct bri_store *s, const char *name, struct stat *st)
{
	char file[FILE_MAX];
	uint64_t size;
	int rc;

	pages_manifest_file(name, file);
	if (fstatat(s->dirfd, file, st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (!S_ISREG(st->st_mode))
		return -ENOENT;
	rc = manifest_logical_size(s, name, &size);
	if (rc < 0)
		return rc;
	st->st_size = (off_t)size;
	return 0;
}

static int pages_list(const struct bri_store *s,
                      int (*fn)(void *arg, const char *name, const struct stat *st), void *arg,
                      struct bri_err *err)
{
	char name[BRI_NAME_MAX + 1];
	struct dirent *d;
	struct stat st;
	DIR *dir;
	int fd, rc = 0;

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
		if (!backup_name(d->d_name, name) || manifest_stat(s, name, &st) < 0)
			continue;
		rc = fn(arg, name, &st);
		if (rc)
			break;
	}
	closedir(dir);
	return rc;
}

static int pages_stat(const struct bri_store *s, const char *name, struct stat *st)
{
	int rc = manifest_stat(s, name, st);

	return rc == -EBADMSG ? -ENOENT : rc;
}

int pages_sidecar_write(struct bri_store *s, const char *name, enum bri_sidecar kind,
                        const void *data, size_t len, struct bri_err *err)
{
	char file[FILE_MAX];

	sidecar_file(name, kind, file);
	return store_write_sealed(s, file, data, len, err);
}

int pages_sidecar_remove(struct bri_store *s, const char *name, enum bri_sidecar kind)
{
	char file[FILE_MAX];

	sidecar_file(name, kind, file);
	return bri_store_unlink(s, file);
}

/* The manifest first: an interrupted removal leaves sidecars the sweep removes. */
static int pages_remove(struct bri_store *s, const char *name, struct bri_err *err)
{
	char file[FILE_MAX];
	int rc;

	pages_manifest_file(name, file);
	rc = bri_store_unlink(s, file);
	for (int k = 0; rc == 0 && k < BRI_SIDECAR_KINDS; k++) {
		sidecar_file(name, (enum bri_sidecar)k, file);
		rc = bri_store_unlink(s, file);
	}
	if (rc < 0)
		return bri_err_set(err, rc, "cannot remove %s/%s: %s", s->dir, file, strerror(-rc));
	rc = bri_store_sync(s, err);
	if (rc < 0)
		return rc;
	bri_testpoint("pages-removed");
	return pages_gc(s, err);
}

static int pages_sidecar_read(const struct bri_store *s, const char *name, enum bri_sidecar kind,
                              size_t max, char **out, size_t *len)
{
	char file[FILE_MAX];

	sidecar_file(name, kind, file);
	return store_read_sealed(s, file, max, out, len);
}

static int pages_sidecar_stat(const struct bri_store *s, const char *name, enum bri_sidecar kind,
                              struct stat *st)
{
	char file[FILE_MAX];

	sidecar_file(name, kind, file);
	return store_stat_file(s, file, st);
}

static char *pages_backup_path(const struct bri_store *s, const char *name)
{
	return bri_store_path(s, name, MANIFEST_SUFFIX);
}

/* A metadata, verification result, pin or rehearsal status whose manifest is missing. */
static bool pages_is_leftover(const struct bri_store *s, const char *fname)
{
	return store_sidecar_orphan(s, fname, sidecar_suffix, MANIFEST_SUFFIX);
}

static int add_name(void *arg, const char *name, const struct stat *st)
{
	struct name_list *n = arg;

	(void)st;
	return name_list_add(n, name);
}

/* Each backup's sidecars, then its manifest; then the packs and the secret. */
static int pages_purge(struct bri_store *s, struct bri_err *err)
{
	struct name_list names = {0};
	char file[FILE_MAX];
	int rc;

	rc = pages_list(s, add_name, &names, err);
	for (size_t i = 0; rc == 0 && i < names.n; i++) {
		for (int k = 0; rc == 0 && k < BRI_SIDECAR_KINDS; k++) {
			sidecar_file(names.v[i], (enum bri_sidecar)k, file);
			rc = bri_store_unlink(s, file);
		}
		pages_manifest_file(names.v[i], file);
		if (rc == 0)
			rc = bri_store_unlink(s, file);
		if (rc < 0)
			rc = bri_err_set(err, rc, "cannot remove %s/%s: %s", s->dir, file,
			                 strerror(-rc));
		else if (i == 0)
			bri_testpoint("migrate-purged-one");
	}
	name_list_free(&names);
	if (rc == 0)
		rc = pages_remove_packs(s, err);
	if (rc == 0 && (rc = bri_store_unlink(s, PAGES_SECRET_FILE)) < 0)
		rc = bri_err_set(err, rc, "cannot remove %s/%s: %s", s->dir, PAGES_SECRET_FILE,
		                 strerror(-rc));
	if (rc == 0)
		rc = bri_store_sync(s, err);
	return rc;
}

static int pages_init(struct bri_store *s, struct bri_err *err)
{
	uint8_t secret[32];
	char *old = NULL;
	size_t len = 0;

	/* A secret left by an interrupted init is kept if it opens (sealed as the store is). */
	if (store_read_sealed(s, PAGES_SECRET_FILE, 1024, &old, &len) == 0 && len == 32) {
		free(old);
		return 0;
	}
	free(old);
	if (getrandom(secret, sizeof(secret), 0) != (ssize_t)sizeof(secret))
		return bri_err_set(err, -EIO, "no random bytes for the page-id secret");
	return store_write_sealed(s, PAGES_SECRET_FILE, secret, sizeof(secret), err);
}

static int pages_usage_op(struct bri_store *s, uint64_t *logical, uint64_t *stored,
                          struct bri_err *err)
{
	return pages_usage(s, logical, stored, err);
}

const struct bri_store_ops bri_store_pages_ops = {
    .format = "pages",
    .list = pages_list,
    .stat = pages_stat,
    .open_reader = pages_open_reader,
    .write_begin = pages_write_begin,
    .write_digest = pages_write_digest,
    .write_commit = pages_write_commit,
    .write_end = pages_write_end,
    .remove = pages_remove,
    .sidecar_read = pages_sidecar_read,
    .sidecar_write = pages_sidecar_write,
    .sidecar_remove = pages_sidecar_remove,
    .sidecar_stat = pages_sidecar_stat,
    .backup_path = pages_backup_path,
    .is_leftover = pages_is_leftover,
    .init = pages_init,
    .usage = pages_usage_op,
    .write_data = pages_write_data,
    .purge = pages_purge,
};
