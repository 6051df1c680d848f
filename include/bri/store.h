/*
 * The store: the folder of backups on disk (SPEC.md section 1). Opens and
 * creates it (0700), validates names, builds paths, writes files durably
 * (temporary file, fsync, rename, fsync the folder), holds the cross-process
 * lock and sweeps leftover temporary files. It knows nothing of SQLite or
 * JSON; the operations (create, verify, restore, ...) build on it.
 *
 * How backups are laid out in the folder is the store's format, behind one
 * table of operations (struct bri_store_ops, in the manner of Redis's rio.h):
 * list and stat backups (with their logical size and identity), open a
 * reader (pread), write a new backup (begin, commit, end), remove one, and
 * read, write and remove its sidecars (metadata, verification result, pin,
 * restore report, rehearsal status) by kind. "plain" (SPEC.md section 1,
 * store_plain.c) is the
 * first format and the default; a store records another in store.json. No
 * caller outside a format's own file spells a backup's file names.
 */
#ifndef BRI_STORE_H
#define BRI_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "bri/common.h"

#define BRI_NAME_MAX 128

struct bri_store_ops;

/* What a backup has besides its bytes, each kept by the format as it likes. */
enum bri_sidecar {
	BRI_SIDECAR_META,      /* the metadata JSON (plain: NAME.db.meta) */
	BRI_SIDECAR_VERIFY,    /* the last verification's result (plain: NAME.db.verify) */
	BRI_SIDECAR_PIN,       /* a pin: kept by cleanup (plain: NAME.db.pin) */
	BRI_SIDECAR_REHEARSAL, /* the last rehearsal's outcome (plain: NAME.db.rehearsal) */
	BRI_SIDECAR_OFFSITE,   /* its push state to the offsite copy (plain: NAME.db.offsite) */
	BRI_SIDECAR_KINDS      /* how many kinds there are */
};

struct bri_store {
	const struct bri_store_ops *ops; /* the store's format; set by bri_store_open_ex */
	char *db_path;     /* the live database, absolute */
	char *db_filename; /* its file name, e.g. "bri.db" */
	char *stem;        /* the file name without ".db", e.g. "bri" */
	char *dir;         /* the store folder, absolute */
	int dirfd;         /* O_DIRECTORY descriptor of dir, kept open */
	int lock_timeout_ms; /* how long bri_store_lock waits; 0: bri_default_busy_timeout_ms() */
	char *key_file;        /* the key file given (option or BRI_KEY_FILE); NULL: none */
	struct bri_seal *seal; /* the key of an encrypted store (SPEC.md section 5); NULL: none */
};

/* How bri_store_open_ex treats a missing store, symlinks and a shared folder. */
struct bri_store_open_opts {
	bool create;         /* make a missing store folder (mode 0700) */
	bool follow_symlink; /* accept a database path or store folder that is a symlink */
	bool force;          /* accept a store that is the live database's own folder */
	/* The key file of an encrypted page store (32 random bytes or a passphrase);
	 * NULL: $BRI_KEY_FILE if set. An encrypted store opens only with its key
	 * (-ENOKEY without one, -EKEYREJECTED with another); a key given for a
	 * store.json without encryption is refused (-EINVAL). */
	const char *key_file;
	/* The key is neither checked nor loaded (s->seal stays NULL; a key file
	 * is kept in s->key_file even for a store without encryption): for
	 * migrate, which checks the keys of the store before and after its
	 * switch itself. */
	bool key_later;
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
 * refused with -EINVAL unless o->force. An encrypted store's key is checked
 * here (o->key_file): a missing or wrong key fails before anything is read.
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

/*
 * "<dir>/<name><suffix>", malloc'd; NULL on ENOMEM. For showing, not for
 * opening. For a backup, use bri_store_backup_path instead.
 */
char *bri_store_path(const struct bri_store *s, const char *name, const char *suffix);

/*
 * A path for opening "<name><suffix>" by name where only a path will do
 * (SQLite): "/proc/self/fd/<dirfd>/<name><suffix>", which always means the
 * folder s->dirfd holds, even after the store's path names another folder.
 * name NULL: the folder itself. Falls back to bri_store_path's form when
 * /proc is not mounted. malloc'd; NULL on ENOMEM.
 */
char *bri_store_fd_path(const struct bri_store *s, const char *name, const char *suffix);

/* 1 when the store has a backup file called name (bri_store_stat is 0), else 0. */
int bri_store_has(const struct bri_store *s, const char *name);

/* Whether st describes the live database file. */
bool bri_store_is_live(const struct bri_store *s, const struct stat *st);

/*
 * Takes the store's exclusive lock (flock on ".lock"), waiting for another
 * holder, in this or another process, at most s->lock_timeout_ms (the busy
 * timeout): then -EBUSY, with the holder's pid in err and in the log. A
 * blocking flock cannot be woken, so it polls with LOCK_NB (1 ms, backing
 * off to 50 ms). The holder writes its pid into ".lock". A thread that
 * already holds the lock of s gets it again (a duplicate descriptor: the
 * lock stays until the first one is released). Returns a descriptor for
 * bri_store_unlock, or a negative errno. Holding it, leftover temporary
 * files of dead processes are swept.
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
 * A fresh automatic name "<stem>_backup_YYYYMMDD_HHMMSS" (local time of
 * now), with "_1", "_2", ... appended while taken; or with prefix given,
 * "<prefix>_YYYYMMDD_HHMMSS". Writes into buf (>= BRI_NAME_MAX + 1).
 */
int bri_store_auto_name(const struct bri_store *s, const char *prefix, time_t now, char *buf,
			size_t len);

/* ---- The store's format: one table of operations per format ---- */

/*
 * An open backup, read by offset. Made by bri_store_open_reader (or
 * bri_reader_open_path for a file outside any store); the bytes are the
 * database as served (the mount's NAME/bri.db), whatever the format keeps.
 * Safe to read from several threads at once. Close with bri_reader_close.
 */
struct bri_reader {
	/* Reads up to len bytes at off into buf: the count (short only at the
	 * end of the file), or a negative errno. */
	ssize_t (*pread)(struct bri_reader *r, void *buf, size_t len, uint64_t off);
	void (*close)(struct bri_reader *r); /* frees r and what it holds */
	/* Optional (NULL: none), for a caller that only passes bytes on (the
	 * mount's reply): up to *len bytes at off (*len set to the count) that
	 * the reader holds in memory already checked, without a copy; *data
	 * stays valid until release(r, *ref). 0, or -EAGAIN: not held (pread). */
	int (*hold)(struct bri_reader *r, size_t *len, uint64_t off, const void **data,
	            void **ref);
	void (*release)(struct bri_reader *r, void *ref);
	uint64_t size;                       /* the logical size: bytes of the database as served */
	struct stat st; /* identity of what was opened (st_dev, st_ino, st_mtim;
	                   st_size == size), for tying a verification to it */
	int fd;         /* a descriptor of exactly those bytes (splice, hashing),
	                   owned by the reader, which a caller may take over
	                   (then sets it to -1); -1 when the format has none */
	char *label;    /* what messages call it (plain: the file's path) */
	void *priv;     /* the format's */
	char why[384];  /* the format's words for its last failed read ("" if none;
	                   pages: which page of which backup is damaged) */
	bool quick;     /* set by a caller that checks every byte against the whole
	                   file's checksum itself (verify): the format may skip its
	                   own per-page checks (pages: ids are not recomputed for a
	                   zstd group, whose frame checksum still guards streaming
	                   reads; shorter reads, SQLite's pages, are served
	                   unchecked, not even by the frame checksum) */
	bool every_page; /* set by a caller looking for damage to name (verify after a
	                    checksum mismatch): the format checks every page it
	                    reads by its own strongest means (pages: each page's id
	                    recomputed). Without it, pages are served once their
	                    group passed its frame checksum (pack.c, enum check) */
};

/*
 * A backup being written. The copy is written into fd (or through path, a
 * name SQLite can open for writing) and becomes a backup only with
 * bri_store_write_commit. Both are the format's to keep until the end.
 */
struct bri_backup_writer {
	struct bri_store *s;         /* the store it goes into */
	char name[BRI_NAME_MAX + 1]; /* the backup's name */
	int fd;                      /* the file the copy is written into */
	char *path;                  /* that file, by a name SQLite can open */
	bool committed;              /* bri_store_write_commit succeeded */
	void *priv;                  /* the format's */
};

/*
 * A store format: every operation that knows how backups are laid out.
 * Errors are negative errnos; err, where given, says why.
 */
struct bri_store_ops {
	const char *format; /* its name in store.json, e.g. "plain" */
	/* Calls fn for each backup (the live database excluded), in no order,
	 * with st its logical size and identity; stops at fn's first non-zero
	 * return and returns it. */
	int (*list)(const struct bri_store *s,
	            int (*fn)(void *arg, const char *name, const struct stat *st), void *arg,
	            struct bri_err *err);
	/* The logical size and identity of backup name: 0, or -ENOENT. */
	int (*stat)(const struct bri_store *s, const char *name, struct stat *st);
	int (*open_reader)(const struct bri_store *s, const char *name, struct bri_reader **out,
	                   struct bri_err *err);
	int (*write_begin)(struct bri_store *s, const char *name, struct bri_backup_writer **out,
	                   struct bri_err *err);
	/* For a writer without fd (NULL for formats that always have one): the
	 * logical size and SHA-256 of the copy written so far. */
	int (*write_digest)(struct bri_backup_writer *w, uint64_t *size,
	                    char hex[65], struct bri_err *err);
	/* Stores meta as the metadata and publishes the backup: the commit point. */
	int (*write_commit)(struct bri_backup_writer *w, const char *meta, size_t len,
	                    struct bri_err *err);
	/* Frees w; without a commit, leaves nothing of it in the store. */
	void (*write_end)(struct bri_backup_writer *w);
	/* Removes the backup and all its sidecars, the backup first. */
	int (*remove)(struct bri_store *s, const char *name, struct bri_err *err);
	int (*sidecar_read)(const struct bri_store *s, const char *name, enum bri_sidecar kind,
	                    size_t max, char **out, size_t *len);
	int (*sidecar_write)(struct bri_store *s, const char *name, enum bri_sidecar kind,
	                     const void *data, size_t len, struct bri_err *err);
	int (*sidecar_remove)(struct bri_store *s, const char *name, enum bri_sidecar kind);
	/* lstat-like identity of a sidecar: 0, or -ENOENT when absent. */
	int (*sidecar_stat)(const struct bri_store *s, const char *name, enum bri_sidecar kind,
	                    struct stat *st);
	/* Where a user finds the backup's file (for showing), malloc'd; NULL if none. */
	char *(*backup_path)(const struct bri_store *s, const char *name);
	/* Whether the store entry fname (not a temporary file) is a leftover the
	 * sweep may remove. */
	bool (*is_leftover)(const struct bri_store *s, const char *fname);
	/* Makes what a new store of the format needs besides store.json (NULL: nothing). */
	int (*init)(struct bri_store *s, struct bri_err *err);
	/* Bytes the backups hold as served and bytes the store keeps for them
	 * (NULL: the same, the sum of the backups' sizes). */
	int (*usage)(struct bri_store *s, uint64_t *logical, uint64_t *stored, struct bri_err *err);
	/* For a writer without fd: writes len bytes of the copy at off, verbatim
	 * (whole pages; migrate's byte-for-byte conversion). */
	int (*write_data)(struct bri_backup_writer *w, const void *buf, size_t len, uint64_t off,
	                  struct bri_err *err);
	/* Removes every file of this format from a store of another format (what
	 * an interrupted or finished migrate leaves): each backup's sidecars, then
	 * the backup itself, then the format's shared files. Safe to run again. */
	int (*purge)(struct bri_store *s, struct bri_err *err);
};

/* The plain folder (SPEC.md section 1): one NAME.db per backup. */
extern const struct bri_store_ops bri_store_plain_ops;

/* The page store (SPEC.md section 5, store_pages.c): pages kept once in packs. */
extern const struct bri_store_ops bri_store_pages_ops;

/* The format called name ("plain", "pages"), or NULL when this build has none such. */
const struct bri_store_ops *bri_store_format(const char *name);

/* The operations below call s->ops; see struct bri_store_ops. */
int bri_store_list(const struct bri_store *s,
                   int (*fn)(void *arg, const char *name, const struct stat *st), void *arg,
                   struct bri_err *err);
int bri_store_stat(const struct bri_store *s, const char *name, struct stat *st);
/* 0 and *out, or -ENOENT (no such backup) or another negative errno, err filled. */
int bri_store_open_reader(const struct bri_store *s, const char *name, struct bri_reader **out,
                          struct bri_err *err);
int bri_store_write_begin(struct bri_store *s, const char *name, struct bri_backup_writer **out,
                          struct bri_err *err);
int bri_store_write_commit(struct bri_backup_writer *w, const char *meta, size_t len,
                           struct bri_err *err);
void bri_store_write_end(struct bri_backup_writer *w);
/* Writes len bytes of the writer's copy at off, verbatim (the fd's, or the format's). */
int bri_store_write_data(struct bri_backup_writer *w, const void *buf, size_t len, uint64_t off,
                         struct bri_err *err);
/* The size and SHA-256 of a writer's copy, for a format without fd (w->fd < 0). */
int bri_store_write_digest(struct bri_backup_writer *w, uint64_t *size, char hex[65],
                           struct bri_err *err);
/*
 * Makes the store s one of format (bri_store_format's names): writes what the
 * format needs and store.json (format, version, and the format's parameters),
 * then s->ops is that format. Call with the store's lock. A store already of
 * that format is left as it is (0). A store of another format, or a plain
 * store that holds backups, is refused with -EEXIST: converting is migrate's.
 */
int bri_store_init_format(struct bri_store *s, const char *format, struct bri_err *err);
/* Logical bytes of all backups and bytes the store keeps for them. */
int bri_store_usage(struct bri_store *s, uint64_t *logical, uint64_t *stored,
                    struct bri_err *err);
int bri_store_remove(struct bri_store *s, const char *name, struct bri_err *err);
/* Reads a sidecar whole (NUL-terminated, malloc'd); -ENOENT when absent, -EFBIG over max. */
int bri_store_sidecar_read(const struct bri_store *s, const char *name, enum bri_sidecar kind,
                           size_t max, char **out, size_t *len);
/* Durably writes a sidecar (replacing it); -ESTALE when the store folder was replaced. */
int bri_store_sidecar_write(struct bri_store *s, const char *name, enum bri_sidecar kind,
                            const void *data, size_t len, struct bri_err *err);
/* Removes a sidecar if present (no error when absent). */
int bri_store_sidecar_remove(struct bri_store *s, const char *name, enum bri_sidecar kind);
int bri_store_sidecar_stat(const struct bri_store *s, const char *name, enum bri_sidecar kind,
                           struct stat *st);
/* Where a user finds backup name's file, for showing; malloc'd, NULL on ENOMEM. */
char *bri_store_backup_path(const struct bri_store *s, const char *name);

/* Reads up to len bytes at off: the count, or a negative errno. */
ssize_t bri_reader_pread(struct bri_reader *r, void *buf, size_t len, uint64_t off);
/* Reads exactly len bytes at off: 0, or a negative errno (-EIO past the end). */
int bri_reader_read_full(struct bri_reader *r, void *buf, size_t len, uint64_t off);
void bri_reader_close(struct bri_reader *r);

/*
 * A reader of the regular file at path, outside any store (a copy of a
 * backup given by path). Follows a symlink at path as open(2) does.
 */
int bri_reader_open_path(const char *path, struct bri_reader **out, struct bri_err *err);

#endif
