/*
 * The store: the folder of backups on disk (SPEC.md section 1). Opens and
 * creates it (0700), validates names, builds paths, writes files durably
 * (temporary file, fsync, rename, fsync the folder), holds the cross-process
 * lock and sweeps leftover temporary files. It knows nothing of SQLite or
 * JSON; the operations (create, verify, restore, ...) build on it.
 */
#ifndef BRI_STORE_H
#define BRI_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "bri/common.h"

#define BRI_NAME_MAX 128

struct bri_store {
	char *db_path;     /* the live database, absolute */
	char *db_filename; /* its file name, e.g. "bri.db" */
	char *stem;        /* the file name without ".db", e.g. "bri" */
	char *dir;         /* the store folder, absolute */
	int dirfd;         /* O_DIRECTORY descriptor of dir, kept open */
};

/* How bri_store_open_ex treats a missing store, symlinks and a shared folder. */
struct bri_store_open_opts {
	bool create;         /* make a missing store folder (mode 0700) */
	bool follow_symlink; /* accept a database path or store folder that is a symlink */
	bool force;          /* accept a store that is the live database's own folder */
};

/*
 * Opens the store of the live database db_path. backup_dir NULL means the
 * default, "<folder of db_path>/backups". With o->create, a missing store is
 * made with mode 0700 (whatever the umask).
 * Symlinks: a db_path or backup_dir whose last component is a symlink is
 * refused with -ELOOP unless o->follow_symlink (then the path it points to
 * is used; a dangling one is refused with -EINVAL, nothing is created). The
 * folders are then made canonical (realpath) once: s->db_path is "<canonical
 * folder>/<file name>", s->dir the canonical store, so the live database can
 * be opened with SQLITE_OPEN_NOFOLLOW.
 * A store that is the live database's own folder (same st_dev/st_ino) is
 * refused with -EINVAL unless o->force.
 * Returns 0 and *out (free with bri_store_close), or a negative errno with
 * err filled.
 */
int bri_store_open_ex(const char *db_path, const char *backup_dir,
		      const struct bri_store_open_opts *o, struct bri_store **out,
		      struct bri_err *err);

/* bri_store_open_ex with only create set: symlinks and a shared folder refused. */
int bri_store_open(const char *db_path, const char *backup_dir, bool create, struct bri_store **out,
		   struct bri_err *err);

/*
 * 0 when the store folder at s->dir is still the folder s->dirfd was opened
 * on; -ESTALE with err filled when it was moved, removed or replaced (e.g.
 * "mv store store.old; mkdir store") while open. Operations call it before
 * they write, and write nothing into either folder when it fails.
 */
int bri_store_check(const struct bri_store *s, struct bri_err *err);
void bri_store_close(struct bri_store *s);

/*
 * 0 when name (len bytes, not necessarily NUL-terminated) is a valid backup
 * name: [A-Za-z0-9][A-Za-z0-9._-]*, at most BRI_NAME_MAX bytes, not "ctl",
 * "restore" or "latest". Else -EINVAL (-ENAMETOOLONG when too long) with the
 * reason in err.
 */
int bri_store_check_name(const char *name, size_t len, struct bri_err *err);

/* "<dir>/<name><suffix>", malloc'd; NULL on ENOMEM. For showing, not for opening. */
char *bri_store_path(const struct bri_store *s, const char *name, const char *suffix);

/*
 * A path for opening "<name><suffix>" by name where only a path will do
 * (SQLite): "/proc/self/fd/<dirfd>/<name><suffix>", which always means the
 * folder s->dirfd holds, even after the store's path names another folder.
 * name NULL: the folder itself. Falls back to bri_store_path's form when
 * /proc is not mounted. malloc'd; NULL on ENOMEM.
 */
char *bri_store_fd_path(const struct bri_store *s, const char *name, const char *suffix);

/*
 * 1 when NAME.db exists in the store as a regular file that is not the live
 * database itself (a store in the database's own folder), 0 when not.
 */
int bri_store_has(const struct bri_store *s, const char *name);

/* Whether st describes the live database file. */
bool bri_store_is_live(const struct bri_store *s, const struct stat *st);

/*
 * Takes the store's exclusive lock (flock on ".lock"), waiting for other
 * holders in this or another process. Returns a descriptor for
 * bri_store_unlock, or a negative errno. Holding it, leftover temporary files
 * of dead processes are swept.
 */
int bri_store_lock(struct bri_store *s, struct bri_err *err);
void bri_store_unlock(int lockfd);

/*
 * Creates a temporary file ".NAME.WHAT.PID.XXXXXX.tmp" (mode 0600) in the
 * store, relative to s->dirfd (never through the store's path). Returns its descriptor and sets *tmp_name (malloc'd, relative to the
 * store), or a negative errno.
 */
int bri_store_tmpfile(struct bri_store *s, const char *name, const char *what, char **tmp_name,
		      struct bri_err *err);

/*
 * fsyncs the temporary file fd (if >= 0), renames tmp_name to final_name in
 * the store and fsyncs the folder. With noreplace an existing final_name
 * fails with -EEXIST. On failure tmp_name is removed.
 */
int bri_store_publish(struct bri_store *s, int fd, const char *tmp_name, const char *final_name,
		      bool noreplace, struct bri_err *err);

/*
 * Durably writes len bytes of data as file_name in the store (0600); fails
 * with -ESTALE (bri_store_check) when the store folder was replaced.
 */
int bri_store_write_file(struct bri_store *s, const char *file_name, const void *data, size_t len,
			 struct bri_err *err);

/*
 * Reads the whole file file_name of the store (regular files only, symlinks
 * refused) into a malloc'd NUL-terminated buffer, refusing files over max
 * bytes with -EFBIG. Returns 0 or a negative errno (-ENOENT when absent).
 */
int bri_store_read_file(const struct bri_store *s, const char *file_name, size_t max, char **out,
			size_t *len);

/* Removes file_name from the store if present (no error when absent). */
int bri_store_unlink(struct bri_store *s, const char *file_name);

/* fsyncs the store folder. */
int bri_store_sync(struct bri_store *s, struct bri_err *err);

/*
 * Removes leftover ".*.tmp" files whose creating process is gone, and
 * ".meta"/".verify" files without their ".db". Call with the lock held.
 * Returns the number removed.
 */
int bri_store_sweep(struct bri_store *s);

/*
 * A fresh automatic name "<stem>_backup_YYYYMMDD_HHMMSS" (local time of
 * now), with "_1", "_2", ... appended while taken; or with prefix given,
 * "<prefix>_YYYYMMDD_HHMMSS". Writes into buf (>= BRI_NAME_MAX + 1).
 */
int bri_store_auto_name(const struct bri_store *s, const char *prefix, time_t now, char *buf,
			size_t len);

#endif
