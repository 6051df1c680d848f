/*
 * Start-up refusal of a mount point that would make the daemon wait on its
 * own file system. The daemon reaches the store (stat by path, openat of
 * backups) and the live database (SQLite opens it by path) through the VFS:
 * with the mount covering either, its first request calls back into the
 * mount it is serving and every thread blocks in D state, through SIGKILL.
 * So the mount point may not be the store, inside it, an ancestor of it, or
 * the live database's folder or an ancestor of it. Paths are compared
 * canonical (realpath) and by identity (st_dev, st_ino), so bind mounts and
 * symlinks are caught too. Everything here runs before mounting.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fs.h"

/* A folder's canonical path and identity. */
struct place {
	char path[PATH_MAX]; /* realpath */
	dev_t dev;           /* st_dev */
	ino_t ino;           /* st_ino */
};

static int place_of(const char *path, struct place *p)
{
	struct stat st;

	if (!realpath(path, p->path))
		return -errno;
	if (stat(p->path, &st) < 0)
		return -errno;
	p->dev = st.st_dev;
	p->ino = st.st_ino;
	return 0;
}

/*
 * Whether up is below (or at) the folder at canonical path: up equals path
 * or one of its ancestors, by name or by identity.
 */
static bool covers(const struct place *up, const char *path)
{
	char walk[PATH_MAX];
	size_t n = strlen(up->path);

	if (!strcmp(up->path, "/") ||
	    (!strncmp(path, up->path, n) && (path[n] == '\0' || path[n] == '/')))
		return true;
	snprintf(walk, sizeof(walk), "%s", path);
	for (;;) {
		struct stat st;
		char *slash;

		if (stat(walk[0] ? walk : "/", &st) == 0 && st.st_dev == up->dev &&
		    st.st_ino == up->ino)
			return true;
		if (!walk[0])
			return false;
		slash = strrchr(walk, '/');
		if (!slash)
			return false;
		*slash = '\0'; /* "/a/b" -> "/a" -> "" (the root) */
	}
}

int bfs_check_mountpoint(const char *mountpoint, const char *store_dir, const char *db_path,
                         char *why, size_t why_len)
{
	struct place mnt, store, dbdir;
	char folder[PATH_MAX];
	const char *slash;
	int rc;

	rc = place_of(mountpoint, &mnt);
	if (rc < 0) {
		snprintf(why, why_len, "bad mount point %s: %s", mountpoint, strerror(-rc));
		return rc;
	}
	rc = place_of(store_dir, &store);
	if (rc < 0) {
		snprintf(why, why_len, "cannot resolve the store %s: %s", store_dir, strerror(-rc));
		return rc;
	}
	slash = strrchr(db_path, '/');
	if (slash && slash != db_path)
		snprintf(folder, sizeof(folder), "%.*s", (int)(slash - db_path), db_path);
	else
		snprintf(folder, sizeof(folder), "%s", slash ? "/" : ".");
	rc = place_of(folder, &dbdir);
	if (rc < 0) {
		snprintf(why, why_len, "cannot resolve the database's folder %s: %s", folder,
		         strerror(-rc));
		return rc;
	}
	if (mnt.dev == store.dev && mnt.ino == store.ino) {
		snprintf(why, why_len, "the mount point %s is the store %s itself", mnt.path,
		         store.path);
		return -EINVAL;
	}
	if (covers(&store, mnt.path)) {
		snprintf(why, why_len, "the mount point %s is inside the store %s", mnt.path,
		         store.path);
		return -EINVAL;
	}
	if (covers(&mnt, store.path)) {
		snprintf(why, why_len, "the mount point %s would cover the store %s", mnt.path,
		         store.path);
		return -EINVAL;
	}
	if (covers(&mnt, dbdir.path)) {
		snprintf(why, why_len,
		         "the mount point %s would cover the live database's folder %s", mnt.path,
		         dbdir.path);
		return -EINVAL;
	}
	/* The database reached through a symbolic link: its real folder too. */
	if (realpath(db_path, folder)) {
		char *last = strrchr(folder, '/');

		if (last && last != folder)
			*last = '\0';
		else if (last)
			last[1] = '\0';
		if (place_of(folder, &dbdir) == 0 && covers(&mnt, dbdir.path)) {
			snprintf(why, why_len,
			         "the mount point %s would cover the live database's folder %s",
			         mnt.path, dbdir.path);
			return -EINVAL;
		}
	}
	return 0;
}
