/*
 * The store folder on disk: opening and creating it, backup names, paths,
 * durable writes (temporary file, fsync, rename, fsync the folder), the
 * cross-process flock and the sweep of leftovers. Files inside the store are
 * always opened relative to its descriptor and never through a symlink.
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bri/create.h"
#include "bri/log.h"
#include "bri/testpoint.h"

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

int bri_store_open(const char *db_path, const char *backup_dir, bool create, struct bri_store **out,
		   struct bri_err *err)
{
	struct bri_store *s;
	char *slash;
	int rc;

	if (!db_path || !*db_path)
		return bri_err_set(err, -EINVAL, "no database path given");
	s = calloc(1, sizeof(*s));
	if (!s)
		return bri_err_set(err, -ENOMEM, "out of memory");
	s->dirfd = -1;
	s->db_path = bri_path_absolute(db_path);
	if (!s->db_path) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	slash = strrchr(s->db_path, '/');
	s->db_filename = strdup(slash + 1);
	s->stem = s->db_filename ? stem_of(s->db_filename) : NULL;
	if (!s->db_filename || !s->stem || !*s->db_filename) {
		rc = bri_err_set(err, -EINVAL, "database path '%s' names no file", db_path);
		goto out_free;
	}
	if (backup_dir && *backup_dir) {
		s->dir = bri_path_absolute(backup_dir);
	} else {
		size_t dlen = (size_t)(slash - s->db_path);

		if (asprintf(&s->dir, "%.*s/backups", (int)dlen, s->db_path) < 0)
			s->dir = NULL;
	}
	if (!s->dir) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	s->dirfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dirfd < 0 && errno == ENOENT && create) {
		rc = make_dirs(s->dir, 0700);
		if (rc < 0 && rc != -EEXIST) {
			bri_err_set(err, rc, "cannot create backup folder %s: %s", s->dir,
				    strerror(-rc));
			goto out_free;
		}
		s->dirfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (s->dirfd < 0) {
		rc = -errno;
		bri_err_set(err, rc, "cannot open backup folder %s: %s%s", s->dir, strerror(errno),
			    errno == ENOENT ? " (no backups have been made yet?)" : "");
		goto out_free;
	}
	*out = s;
	return 0;
out_free:
	bri_store_close(s);
	return rc;
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

bool bri_store_is_live(const struct bri_store *s, const struct stat *st)
{
	struct stat live;

	return stat(s->db_path, &live) == 0 && live.st_dev == st->st_dev &&
	       live.st_ino == st->st_ino;
}

int bri_store_has(const struct bri_store *s, const char *name)
{
	char file[BRI_NAME_MAX + 8];
	struct stat st;

	snprintf(file, sizeof(file), "%s.db", name);
	if (fstatat(s->dirfd, file, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	return S_ISREG(st.st_mode) && !bri_store_is_live(s, &st) ? 1 : 0;
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
	bri_store_sweep(s);
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

int bri_store_tmpfile(struct bri_store *s, const char *name, const char *what, char **tmp_name,
		      struct bri_err *err)
{
	char *path;
	int fd;

	if (asprintf(&path, "%s/.%s.%s.%ld.XXXXXX.tmp", s->dir, name, what, (long)getpid()) < 0)
		return bri_err_set(err, -ENOMEM, "out of memory");
	fd = mkostemps(path, 4, O_CLOEXEC);
	if (fd < 0) {
		int rc = -errno;

		free(path);
		return bri_err_set(err, rc, "cannot create a temporary file in %s: %s", s->dir,
				   strerror(-rc));
	}
	fchmod(fd, 0600);
	*tmp_name = strdup(path + strlen(s->dir) + 1);
	free(path);
	if (!*tmp_name) {
		close(fd);
		return bri_err_set(err, -ENOMEM, "out of memory");
	}
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

/* For "NAME.db.meta" or "NAME.db.verify": whether NAME.db is missing. */
static bool orphan_sidecar(int dirfd, const char *fname)
{
	char db[NAME_MAX + 1];
	const char *suffixes[] = {".db.meta", ".db.verify"};
	struct stat st;

	for (size_t i = 0; i < 2; i++) {
		size_t n = strlen(fname), m = strlen(suffixes[i]);

		if (n <= m || fname[0] == '.' || !ends_with(fname, suffixes[i]))
			continue;
		snprintf(db, sizeof(db), "%.*s.db", (int)(n - m), fname);
		return fstatat(dirfd, db, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT;
	}
	return false;
}

int bri_store_sweep(struct bri_store *s)
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
			remove = orphan_sidecar(s->dirfd, d->d_name);
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
