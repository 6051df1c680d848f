/*
 * The store folder on disk: opening and creating it, backup names, paths,
 * durable writes (temporary file, fsync, rename, fsync the folder), the
 * cross-process flock and the sweep of leftovers. Files inside the store are
 * always created, opened, renamed and removed relative to its descriptor and
 * never through a symlink; bri_store_check tells whether the store's path
 * still names that folder. Opening refuses a symlinked database path or store
 * folder (unless asked to follow) and a store in the database's own folder
 * (unless forced), and makes both folders canonical once.
 */
#include "bri/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bri/create.h"
#include "bri/log.h"
#include "bri/testpoint.h"
#include "seal.h"
#include "store_int.h"
#include "internal.h"

/* mkdir -p of path; the last component gets mode. */
static int make_dirs(const char *path, mode_t mode)
{
	char *copy = strdup(path);
	int rc = 0;

	if (!copy)
		return -ENOMEM;
	for (char *p = copy + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(copy, 0755) < 0 && errno != EEXIST) {
			rc = -errno;
			goto out_free;
		}
		*p = '/';
	}
	if (mkdir(copy, mode) < 0) {
		rc = -errno;
		goto out_free;
	}
	if (chmod(copy, mode) < 0)
		rc = -errno;
out_free:
	free(copy);
	return rc;
}

static char *stem_of(const char *filename)
{
	size_t n = strlen(filename);

	if (n > 3 && strcmp(filename + n - 3, ".db") == 0)
		n -= 3;
	return strndup(filename, n);
}

/* The folder part of the absolute path abs ("/" for "/x"), malloc'd. */
static char *folder_of(const char *abs)
{
	const char *slash = strrchr(abs, '/');

	return strndup(abs, slash == abs ? 1 : (size_t)(slash - abs));
}

/*
 * The live database's path, absolute, with a symlink as last component
 * refused unless follow (then resolved; a dangling one refused). Sets
 * s->db_path and s->db_filename.
 */
static int resolve_db_path(struct bri_store *s, const char *db_path, bool follow,
			   struct bri_err *err)
{
	char *abs = bri_path_absolute(db_path), *real;
	const char *slash;
	struct stat st;

	if (!abs)
		return bri_err_set(err, -ENOMEM, "out of memory");
	s->db_path = abs;
	slash = strrchr(abs, '/');
	if (!slash[1])
		return bri_err_set(err, -EINVAL, "database path '%s' names no file", db_path);
	if (lstat(abs, &st) == 0 && S_ISLNK(st.st_mode)) {
		if (!follow)
			return bri_err_set(err, -ELOOP,
					   "the database path %s is a symbolic link; refusing it, "
					   "since a restore would write wherever it points (give the "
					   "real path, or --follow-symlink / -o follow_symlink to use "
					   "its target)",
					   abs);
		real = realpath(abs, NULL);
		/* -EINVAL, not -ENOENT: callers take -ENOENT for "no store yet". */
		if (!real)
			return bri_err_set(err, -EINVAL,
					   "the database path %s is a symbolic link to nothing "
					   "usable (%s); refusing to create a file through it",
					   abs, strerror(errno));
		free(s->db_path);
		s->db_path = real;
		slash = strrchr(real, '/');
	}
	s->db_filename = strdup(slash + 1);
	if (!s->db_filename)
		return bri_err_set(err, -ENOMEM, "out of memory");
	return 0;
}

/*
 * Makes the folder of s->db_path canonical (realpath) when it exists, so
 * that no symlink is left anywhere in the path SQLite opens with
 * SQLITE_OPEN_NOFOLLOW. Returns 0 or -ENOMEM.
 */
static int canonical_db_folder(struct bri_store *s)
{
	char *folder = folder_of(s->db_path), *real, *path;

	if (!folder)
		return -ENOMEM;
	real = realpath(folder, NULL);
	free(folder);
	if (!real)
		return 0; /* no such folder yet: nothing to open there either */
	if (asprintf(&path, "%s%s%s", real, strcmp(real, "/") ? "/" : "", s->db_filename) < 0) {
		free(real);
		return -ENOMEM;
	}
	free(real);
	free(s->db_path);
	s->db_path = path;
	return 0;
}

/*
 * Opens the store folder dir (absolute) into s: a symlink as last component
 * refused unless follow, created when missing and create, then made
 * canonical. Sets s->dir and s->dirfd.
 */
static int open_store_dir(struct bri_store *s, const char *dir, bool create, bool follow,
			  struct bri_err *err)
{
	int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW);
	struct stat st, by_fd;
	int rc;

	if (!follow && lstat(dir, &st) == 0 && S_ISLNK(st.st_mode))
		return bri_err_set(err, -ELOOP,
				   "the backup folder %s is a symbolic link; refusing it (give "
				   "the real path, or --follow-symlink / -o follow_symlink)",
				   dir);
	s->dirfd = open(dir, flags);
	if (s->dirfd < 0 && errno == ENOENT && create) {
		rc = make_dirs(dir, 0700);
		if (rc < 0 && rc != -EEXIST)
			return bri_err_set(err, rc, "cannot create backup folder %s: %s", dir,
					   strerror(-rc));
		s->dirfd = open(dir, flags);
	}
	if (s->dirfd < 0) {
		rc = -errno;
		return bri_err_set(err, rc, "cannot open backup folder %s: %s%s", dir,
				   strerror(-rc),
				   rc == -ENOENT ? " (no backups have been made yet?)" : "");
	}
	s->dir = realpath(dir, NULL);
	if (!s->dir)
		return bri_err_set(err, -errno, "cannot resolve backup folder %s: %s", dir,
				   strerror(errno));
	/* The canonical name must lead to the folder that was opened. */
	if (fstat(s->dirfd, &by_fd) < 0 || stat(s->dir, &st) < 0 || st.st_dev != by_fd.st_dev ||
	    st.st_ino != by_fd.st_ino)
		return bri_err_set(err, -ESTALE, "the backup folder %s changed while it was opened",
				   dir);
	return 0;
}

int bri_store_open_ex(const char *db_path, const char *backup_dir,
		      const struct bri_store_open_opts *o, struct bri_store **out,
		      struct bri_err *err)
{
	struct stat db_folder, store_st;
	struct bri_store *s;
	char *dir = NULL, *folder;
	const char *key;
	int rc;

	if (!db_path || !*db_path)
		return bri_err_set(err, -EINVAL, "no database path given");
	s = calloc(1, sizeof(*s));
	if (!s)
		return bri_err_set(err, -ENOMEM, "out of memory");
	s->dirfd = -1;
	rc = resolve_db_path(s, db_path, o->follow_symlink, err);
	if (rc < 0)
		goto out_free;
	s->stem = stem_of(s->db_filename);
	if (!s->stem) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	if (backup_dir && *backup_dir) {
		dir = bri_path_absolute(backup_dir);
	} else {
		size_t dlen = (size_t)(strrchr(s->db_path, '/') - s->db_path);

		if (asprintf(&dir, "%.*s/backups", (int)dlen, s->db_path) < 0)
			dir = NULL;
	}
	if (!dir) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	/* A trailing '/' would make a symlink's lstat look at its target. */
	for (size_t n = strlen(dir); n > 1 && dir[n - 1] == '/'; n--)
		dir[n - 1] = '\0';
	rc = open_store_dir(s, dir, o->create, o->follow_symlink, err);
	if (rc < 0)
		goto out_free;
	/* After the store: its folder may have been made just now, with the database's. */
	if (canonical_db_folder(s) < 0) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	folder = folder_of(s->db_path);
	if (!folder) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	if (!o->force && stat(folder, &db_folder) == 0 && fstat(s->dirfd, &store_st) == 0 &&
	    db_folder.st_dev == store_st.st_dev && db_folder.st_ino == store_st.st_ino) {
		rc = bri_err_set(err, -EINVAL,
				 "the backup folder %s is the live database's own folder; refusing "
				 "it, since every other .db there would be taken for a backup "
				 "(use a folder of its own, e.g. %s/backups, or --force / -o force)",
				 s->dir, folder);
		free(folder);
		goto out_free;
	}
	free(folder);
	key = o->key_file && *o->key_file ? o->key_file : getenv(SEAL_KEY_ENV);
	/* Absolute: a daemon changes its folder to / when it detaches. */
	if (key && *key && !(s->key_file = bri_path_absolute(key))) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	rc = store_detect_format(s, !o->key_later, err);
	if (rc < 0)
		goto out_free;
	free(dir);
	*out = s;
	return 0;
out_free:
	free(dir);
	bri_store_close(s);
	return rc;
}

int bri_store_open(const char *db_path, const char *backup_dir, bool create, struct bri_store **out,
		   struct bri_err *err)
{
	struct bri_store_open_opts o = {.create = create};

	return bri_store_open_ex(db_path, backup_dir, &o, out, err);
}

int bri_store_check(const struct bri_store *s, struct bri_err *err)
{
	struct stat by_fd, by_path;

	if (fstat(s->dirfd, &by_fd) < 0)
		return bri_err_set(err, -errno, "cannot read backup folder %s: %s", s->dir,
				   strerror(errno));
	if (by_fd.st_nlink > 0 && lstat(s->dir, &by_path) == 0 &&
	    by_path.st_dev == by_fd.st_dev && by_path.st_ino == by_fd.st_ino)
		return 0;
	return bri_err_set(err, -ESTALE,
			   "the backup folder %s was moved, removed or replaced while in use (it "
			   "is no longer the folder opened at the start); refusing to write into "
			   "either (remount, or run again, to use the folder now at that path)",
			   s->dir);
}

void bri_store_close(struct bri_store *s)
{
	if (!s)
		return;
	if (s->dirfd >= 0)
		close(s->dirfd);
	free(s->db_path);
	free(s->db_filename);
	free(s->stem);
	free(s->dir);
	free(s->key_file);
	seal_free(s->seal);
	free(s);
}

static bool name_char_ok(unsigned char c, bool first)
{
	if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
		return true;
	return !first && (c == '.' || c == '_' || c == '-');
}

int bri_store_check_name(const char *name, size_t len, struct bri_err *err)
{
	static const char *reserved[] = {"ctl", "restore", "latest"};

	if (!name || len == 0)
		return bri_err_set(err, -EINVAL, "a backup name cannot be empty");
	if (len > BRI_NAME_MAX)
		return bri_err_set(err, -ENAMETOOLONG,
				   "backup name is %zu bytes long; at most %d are allowed", len,
				   BRI_NAME_MAX);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		if (name_char_ok(c, i == 0))
			continue;
		if (i == 0)
			return bri_err_set(err, -EINVAL,
					   "backup name must start with a letter or digit "
					   "(allowed: A-Z a-z 0-9, then also . _ -)");
		if (c < 0x20 || c == 0x7f)
			return bri_err_set(err, -EINVAL,
					   "backup name contains a control character (byte 0x%02x "
					   "at position %zu)",
					   c, i);
		return bri_err_set(err, -EINVAL,
				   "backup name contains '%c' (byte 0x%02x at position %zu); "
				   "allowed: A-Z a-z 0-9 . _ -",
				   c >= 0x20 && c < 0x7f ? c : '?', c, i);
	}
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if (strlen(reserved[i]) == len && memcmp(reserved[i], name, len) == 0)
			return bri_err_set(err, -EINVAL,
					   "'%s' is reserved by the mount; choose another name",
					   reserved[i]);
	return 0;
}

char *bri_store_path(const struct bri_store *s, const char *name, const char *suffix)
{
	char *out;

	if (asprintf(&out, "%s/%s%s", s->dir, name, suffix ? suffix : "") < 0)
		return NULL;
	return out;
}

char *bri_store_fd_path(const struct bri_store *s, const char *name, const char *suffix)
{
	char *out;
	int n;

	if (access("/proc/self/fd", X_OK) != 0)
		return name ? bri_store_path(s, name, suffix) : strdup(s->dir);
	if (name)
		n = asprintf(&out, "/proc/self/fd/%d/%s%s", s->dirfd, name, suffix ? suffix : "");
	else
		n = asprintf(&out, "/proc/self/fd/%d", s->dirfd);
	return n < 0 ? NULL : out;
}

bool bri_store_is_live(const struct bri_store *s, const struct stat *st)
{
	struct stat live;

	return stat(s->db_path, &live) == 0 && live.st_dev == st->st_dev &&
	       live.st_ino == st->st_ino;
}

int bri_store_has(const struct bri_store *s, const char *name)
{
	struct stat st;

	return bri_store_stat(s, name, &st) == 0 ? 1 : 0;
}

/* The lock this thread holds (bri_store_lock is reentrant per thread and store). */
static __thread const struct bri_store *held_store;
static __thread int held_fd = -1;
static __thread ino_t held_ino; /* of held_fd's file, so a reused number is not taken */

/* Whether this thread holds the lock of s (and held_fd is still its descriptor). */
static bool holding(const struct bri_store *s)
{
	struct stat st;

	return held_store == s && held_fd >= 0 && fstat(held_fd, &st) == 0 && st.st_ino == held_ino;
}

/* Bounds of the pause between two tries of a busy lock (seconds). */
#define LOCK_POLL_MIN 0.001
#define LOCK_POLL_MAX 0.050

/* The pid the holder wrote into ".lock", or 0 when unknown. */
static long lock_holder(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	long pid;

	if (n <= 0)
		return 0;
	buf[n] = '\0';
	pid = strtol(buf, NULL, 10);
	return pid > 0 ? pid : 0;
}

/* Records this process as the holder: the content of ".lock" is its pid. */
static void lock_record_holder(int fd)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());

	if (ftruncate(fd, 0) == 0 && pwrite(fd, buf, (size_t)n, 0) != n)
		bri_log(BRI_LOG_DEBUG, "cannot record the lock holder: %s", strerror(errno));
}

static int lock_busy(struct bri_store *s, int fd, int timeout_ms, struct bri_err *err)
{
	long holder = lock_holder(fd);
	char who[96];

	if (!holder)
		snprintf(who, sizeof(who), "another process (its pid is not recorded yet)");
	else if (holder == (long)getpid())
		snprintf(who, sizeof(who), "another operation of this process (pid %ld)", holder);
	else
		snprintf(who, sizeof(who), "process %ld", holder);
	bri_err_set(err, -EBUSY,
	            "the backup store %s is locked by %s, still after %d ms (the busy "
	            "timeout); try again when that operation ends%s",
	            s->dir, who, timeout_ms,
	            holder && holder != (long)getpid() ? " (if it is stopped, resume it with "
	                                                 "kill -CONT, or end it)"
	                                               : "");
	bri_log(BRI_LOG_WARN,
	        "store lock %s/.lock: held by pid %ld (0: not known) for more than "
	        "%d ms: giving up with EBUSY",
	        s->dir, holder, timeout_ms);
	return -EBUSY;
}

int bri_store_lock(struct bri_store *s, struct bri_err *err)
{
	int timeout_ms =
	    s->lock_timeout_ms > 0 ? s->lock_timeout_ms : bri_default_busy_timeout_ms();
	double deadline = bri_now_mono() + timeout_ms / 1000.0, pause = LOCK_POLL_MIN;
	struct stat st;
	int fd;

	if (holding(s)) {
		fd = fcntl(held_fd, F_DUPFD_CLOEXEC, 0);
		if (fd < 0)
			return bri_err_set(err, -errno, "cannot lock %s/.lock again: %s", s->dir,
			                   strerror(errno));
		return fd;
	}
	fd = openat(s->dirfd, ".lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return bri_err_set(err, -errno, "cannot open the lock file in %s: %s", s->dir,
		                   strerror(errno));
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		double left = deadline - bri_now_mono();
		struct timespec ts;
		int rc = -errno;

		if (rc == -EINTR)
			continue;
		if (rc != -EWOULDBLOCK) {
			close(fd);
			return bri_err_set(err, rc, "cannot lock %s/.lock: %s", s->dir,
			                   strerror(-rc));
		}
		if (left <= 0) {
			rc = lock_busy(s, fd, timeout_ms, err);
			close(fd);
			return rc;
		}
		if (pause > left)
			pause = left;
		ts.tv_sec = (time_t)pause;
		ts.tv_nsec = (long)((pause - (double)ts.tv_sec) * 1e9);
		nanosleep(&ts, NULL);
		pause = pause * 2 > LOCK_POLL_MAX ? LOCK_POLL_MAX : pause * 2;
	}
	lock_record_holder(fd);
	held_store = s;
	held_fd = fd;
	held_ino = fstat(fd, &st) == 0 ? st.st_ino : 0;
	bri_testpoint("store_locked");
	store_sweep(s);
	return fd;
}

void bri_store_unlock(int lockfd)
{
	if (lockfd < 0)
		return;
	if (lockfd == held_fd) {
		/* The last holder: nobody is recorded once it is gone. */
		if (ftruncate(lockfd, 0) < 0)
			bri_log(BRI_LOG_DEBUG, "cannot clear the lock holder: %s", strerror(errno));
		held_store = NULL;
		held_fd = -1;
	}
	close(lockfd);
}

/* Six random characters of [A-Za-z0-9], as mkstemp's XXXXXX. */
static void random_tag(char out[7])
{
	static const char chars[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
	unsigned char bytes[6];
	struct timespec ts;

	if (getrandom(bytes, sizeof(bytes), GRND_NONBLOCK) != (ssize_t)sizeof(bytes)) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		/* No rand(): the clock and the pid are enough for O_EXCL retries. */
		for (size_t i = 0; i < sizeof(bytes); i++)
			bytes[i] = (unsigned char)((unsigned long)ts.tv_nsec >> (i * 5)) ^
				   (unsigned char)((unsigned long)getpid() >> (i * 3)) ^
				   (unsigned char)(ts.tv_sec + (long)i);
	}
	for (size_t i = 0; i < 6; i++)
		out[i] = chars[bytes[i] % (sizeof(chars) - 1)];
	out[6] = '\0';
}

int bri_store_tmpfile(struct bri_store *s, const char *name, const char *what, char **tmp_name,
		      struct bri_err *err)
{
	char *file = NULL, tag[7];
	int fd = -1, rc = -EEXIST;

	/* openat with O_EXCL, relative to the store's descriptor: never a file
	 * in whatever folder the store's path names now. */
	for (int tries = 0; tries < 100 && fd < 0 && rc == -EEXIST; tries++) {
		free(file);
		random_tag(tag);
		if (asprintf(&file, ".%s.%s.%ld.%s.tmp", name, what, (long)getpid(), tag) < 0)
			return bri_err_set(err, -ENOMEM, "out of memory");
		fd = openat(s->dirfd, file, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
			    0600);
		rc = fd < 0 ? -errno : 0;
	}
	if (fd < 0) {
		free(file);
		return bri_err_set(err, rc, "cannot create a temporary file in %s: %s", s->dir,
				   strerror(-rc));
	}
	fchmod(fd, 0600);
	*tmp_name = file;
	return fd;
}

static int rename_noreplace(int dirfd, const char *from, const char *to)
{
	if (renameat2(dirfd, from, dirfd, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	/* File systems without RENAME_NOREPLACE: link refuses an existing target. */
	if (linkat(dirfd, from, dirfd, to, 0) < 0)
		return -errno;
	unlinkat(dirfd, from, 0);
	return 0;
}

int bri_store_publish(struct bri_store *s, int fd, const char *tmp_name, const char *final_name,
		      bool noreplace, struct bri_err *err)
{
	int rc;

	if (fd >= 0 && fsync(fd) < 0) {
		rc = -errno;
		bri_err_set(err, rc, "cannot sync %s/%s: %s", s->dir, tmp_name, strerror(-rc));
		goto out_unlink;
	}
	if (noreplace)
		rc = rename_noreplace(s->dirfd, tmp_name, final_name);
	else
		rc = renameat(s->dirfd, tmp_name, s->dirfd, final_name) < 0 ? -errno : 0;
	if (rc < 0) {
		bri_err_set(err, rc, "cannot publish %s/%s: %s", s->dir, final_name,
			    rc == -EEXIST ? "it already exists" : strerror(-rc));
		goto out_unlink;
	}
	return bri_store_sync(s, err);
out_unlink:
	unlinkat(s->dirfd, tmp_name, 0);
	return rc;
}

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int bri_store_write_file(struct bri_store *s, const char *file_name, const void *data, size_t len,
			 struct bri_err *err)
{
	char *tmp;
	int fd, rc;

	rc = bri_store_check(s, err);
	if (rc < 0)
		return rc;
	fd = bri_store_tmpfile(s, file_name, "write", &tmp, err);
	if (fd < 0)
		return fd;
	/* tmp is set whenever a descriptor came back; clang-analyzer cannot see
	 * that bri_err_set returns its (negative) code, hence the NOLINTs. */
	rc = write_all(fd, data, len);
	if (rc < 0) {
		bri_err_set(err, rc, "cannot write %s/%s: %s", s->dir, file_name, strerror(-rc));
		unlinkat(s->dirfd, tmp, 0); // NOLINT(clang-analyzer-core.CallAndMessage)
		goto out_close;
	}
	// NOLINTNEXTLINE(clang-analyzer-core.CallAndMessage)
	rc = bri_store_publish(s, fd, tmp, file_name, false, err);
out_close:
	close(fd);
	free(tmp);
	return rc;
}

int bri_store_read_file(const struct bri_store *s, const char *file_name, size_t max, char **out,
			size_t *len)
{
	struct stat st;
	size_t got = 0;
	char *buf;
	int fd, rc = 0;

	fd = openat(s->dirfd, file_name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return errno == ELOOP ? -EINVAL : -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		goto out_close;
	}
	if ((uint64_t)st.st_size > max) {
		rc = -EFBIG;
		goto out_close;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out_close;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			free(buf);
			goto out_close;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	*out = buf;
	*len = got;
out_close:
	close(fd);
	return rc;
}

int bri_store_unlink(struct bri_store *s, const char *file_name)
{
	if (unlinkat(s->dirfd, file_name, 0) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int bri_store_sync(struct bri_store *s, struct bri_err *err)
{
	if (fsync(s->dirfd) < 0)
		return bri_err_set(err, -errno, "cannot sync folder %s: %s", s->dir,
				   strerror(errno));
	return 0;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The pid in ".NAME.WHAT.PID.XXXXXX.tmp", or 0 when it is not one of ours. */
static pid_t tmp_owner(const char *fname)
{
	char buf[NAME_MAX + 1], *dot;
	long pid;

	if (fname[0] != '.' || strlen(fname) > NAME_MAX)
		return 0;
	strcpy(buf, fname);
	/* SQLite's own files beside a temporary database count as it. */
	for (size_t i = 0; i < 3; i++) {
		const char *sqlite_suffix[] = {"-journal", "-wal", "-shm"};

		if (ends_with(buf, sqlite_suffix[i]))
			buf[strlen(buf) - strlen(sqlite_suffix[i])] = '\0';
	}
	if (!ends_with(buf, ".tmp"))
		return 0;
	buf[strlen(buf) - 4] = '\0';
	dot = strrchr(buf, '.'); /* the XXXXXX */
	if (!dot)
		return 0;
	*dot = '\0';
	dot = strrchr(buf, '.'); /* the pid */
	if (!dot)
		return 0;
	pid = strtol(dot + 1, NULL, 10);
	return pid > 0 ? (pid_t)pid : 0;
}

static bool process_alive(pid_t pid)
{
	return pid == getpid() || kill(pid, 0) == 0 || errno == EPERM;
}

int store_sweep(struct bri_store *s)
{
	int fd = dup(s->dirfd), removed = 0;
	struct dirent *d;
	DIR *dir;

	if (fd < 0)
		return -errno;
	dir = fdopendir(fd);
	if (!dir) {
		close(fd);
		return -errno;
	}
	rewinddir(dir);
	while ((d = readdir(dir))) {
		pid_t owner = tmp_owner(d->d_name);
		bool remove = false;

		if (owner > 0)
			remove = !process_alive(owner);
		else
			remove = s->ops->is_leftover(s, d->d_name);
		if (remove && unlinkat(s->dirfd, d->d_name, 0) == 0) {
			bri_log(BRI_LOG_INFO, "removed leftover %s/%s", s->dir, d->d_name);
			removed++;
		}
	}
	closedir(dir);
	return removed;
}

int bri_store_auto_name(const struct bri_store *s, const char *prefix, time_t now, char *buf,
			size_t len)
{
	char base[BRI_NAME_MAX + 1], stamp[32];
	size_t blen;
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%d_%H%M%S", &tm);
	if (prefix) {
		snprintf(base, sizeof(base), "%s_%s", prefix, stamp);
	} else {
		char stem[64];
		size_t n = 0;

		for (const char *p = s->stem; *p && n < sizeof(stem) - 1; p++) {
			stem[n] = name_char_ok((unsigned char)*p, n == 0) ? *p : '_';
			n++;
		}
		stem[n] = '\0';
		if (n == 0 || !name_char_ok((unsigned char)stem[0], true))
			snprintf(base, sizeof(base), "db%s_backup_%s", stem, stamp);
		else
			snprintf(base, sizeof(base), "%s_backup_%s", stem, stamp);
	}
	blen = strlen(base);
	if (blen + 1 > len)
		return -ENAMETOOLONG;
	strcpy(buf, base);
	for (int i = 1; bri_store_has(s, buf); i++) {
		if ((size_t)snprintf(buf, len, "%s_%d", base, i) >= len)
			return -ENAMETOOLONG;
	}
	return 0;
}

int store_stat_file(const struct bri_store *s, const char *file, struct stat *st)
{
	struct stat got;

	if (fstatat(s->dirfd, file, &got, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (!S_ISREG(got.st_mode))
		return -ENOENT;
	*st = got;
	return 0;
}

bool store_sidecar_orphan(const struct bri_store *s, const char *fname,
                          const char *const suffix[BRI_SIDECAR_KINDS], const char *backup_suffix)
{
	size_t n = strlen(fname);
	char backup[NAME_MAX + 1];
	struct stat st;

	for (int k = 0; k < BRI_SIDECAR_KINDS; k++) {
		size_t m = strlen(suffix[k]);

		if (n <= m || fname[0] == '.' || strcmp(fname + n - m, suffix[k]) != 0)
			continue;
		snprintf(backup, sizeof(backup), "%.*s%s", (int)(n - m), fname, backup_suffix);
		return fstatat(s->dirfd, backup, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT;
	}
	return false;
}
