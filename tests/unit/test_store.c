/*
 * Unit tests of the store (include/bri/store.h): which backup names are
 * accepted and refused (every byte value, lengths, reserved words), opening
 * and creating the store folder (0700 whatever the umask), durable writes and
 * reads of files (0600), temporary files and publishing by rename, the
 * cross-process lock, the sweep of leftovers of dead processes, and automatic
 * names, symlinked and shared folders refused, a store folder replaced
 * while open. Real files in a private temporary folder; no SQLite involved.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bri/store.h"
#include "expect.h"
#include "testutil.h"
#include "../../src/core/internal.h"

/* Checks that name (len bytes) is refused with code and a reason. */
static void refused(const char *name, size_t len, int code, const char *what)
{
	struct bri_err err = {0};
	int rc = bri_store_check_name(name, len, &err);
	EXPECT_MSG(rc == code, "name %s: got %d, expected %d", what, rc, code);
	EXPECT_MSG(err.code == rc, "name %s: err.code %d != rc %d", what, err.code, rc);
	EXPECT_MSG(err.msg[0] != '\0', "name %s: no reason given", what);
}

static void accepted(const char *name, size_t len, const char *what)
{
	struct bri_err err = {0};
	int rc = bri_store_check_name(name, len, &err);
	EXPECT_MSG(rc == 0, "name %s: got %d (%s), expected accepted", what, rc, err.msg);
}

static bool is_alnum_ascii(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static void test_names(void)
{
	accepted("a", 1, "a");
	accepted("Z", 1, "Z");
	accepted("7", 1, "7");
	accepted("bri_backup_20251016_143000", 26, "auto name");
	accepted("before_update", 13, "before_update");
	accepted("a.b-c_d", 7, "a.b-c_d");
	accepted("a..b", 4, "a..b");
	accepted("x.db", 4, "x.db");
	accepted("ctl1", 4, "ctl1");
	accepted("latest_1", 8, "latest_1");
	accepted("restore.old", 11, "restore.old");
	accepted("0-", 2, "0-");

	refused("", 0, -EINVAL, "empty");
	refused(".", 1, -EINVAL, ".");
	refused("..", 2, -EINVAL, "..");
	refused("a/b", 3, -EINVAL, "a/b");
	refused("/a", 2, -EINVAL, "/a");
	refused("a/", 2, -EINVAL, "a/");
	refused(" x", 2, -EINVAL, "' x'");
	refused("x ", 2, -EINVAL, "'x '");
	refused("a b", 3, -EINVAL, "'a b'");
	refused("-x", 2, -EINVAL, "-x");
	refused("_x", 2, -EINVAL, "_x");
	refused(".x", 2, -EINVAL, ".x");
	refused("ctl", 3, -EINVAL, "ctl");
	refused("restore", 7, -EINVAL, "restore");
	refused("latest", 6, -EINVAL, "latest");
	refused("a\nb", 3, -EINVAL, "a\\nb");
	refused("a\n", 2, -EINVAL, "a\\n (echo without -n)");
	refused("a\0b", 3, -EINVAL, "embedded NUL");
	refused("a\0", 2, -EINVAL, "trailing NUL inside len");
	refused("caf\xc3\xa9", 5, -EINVAL, "UTF-8 cafe");
	refused("\xc3\xa9t\xc3\xa9", 6, -EINVAL, "UTF-8 leading");
	refused("a\tb", 3, -EINVAL, "tab");
	refused("a\x7f", 2, -EINVAL, "DEL");

	/* Only len bytes count: the rest of the buffer is not part of the name. */
	accepted("abc/def", 3, "prefix abc of abc/def");
	accepted("ctl", 2, "prefix ct of ctl");
	accepted("latest", 5, "prefix lates of latest");

	/* 128 bytes accepted, 129 refused as too long. */
	char longname[BRI_NAME_MAX + 2];
	memset(longname, 'a', sizeof(longname));
	longname[BRI_NAME_MAX + 1] = '\0';
	EXPECT_EQ_INT(BRI_NAME_MAX, 128);
	accepted(longname, BRI_NAME_MAX, "128 bytes");
	refused(longname, BRI_NAME_MAX + 1, -ENAMETOOLONG, "129 bytes");
	char huge[4096];
	memset(huge, 'b', sizeof(huge));
	refused(huge, sizeof(huge), -ENAMETOOLONG, "4096 bytes");

	/* Every byte value, alone and as the second character. */
	for (int c = 0; c < 256; c++) {
		char one[1] = {(char)c};
		char two[2] = {'a', (char)c};
		struct bri_err err = {0};
		int rc1 = bri_store_check_name(one, 1, &err);
		bool ok1 = is_alnum_ascii(c);
		EXPECT_MSG((rc1 == 0) == ok1, "1-byte name 0x%02x: got %d, expected %s", c, rc1,
		           ok1 ? "accepted" : "refused");
		if (!ok1)
			EXPECT_MSG(rc1 == -EINVAL, "1-byte name 0x%02x: got %d, expected -EINVAL",
			           c, rc1);
		int rc2 = bri_store_check_name(two, 2, &err);
		bool ok2 = is_alnum_ascii(c) || c == '.' || c == '_' || c == '-';
		EXPECT_MSG((rc2 == 0) == ok2, "name 'a'+0x%02x: got %d, expected %s", c, rc2,
		           ok2 ? "accepted" : "refused");
		if (!ok2)
			EXPECT_MSG(rc2 == -EINVAL, "name 'a'+0x%02x: got %d, expected -EINVAL", c,
			           rc2);
	}

	/* err may be NULL. */
	EXPECT(bri_store_check_name("..", 2, NULL) == -EINVAL);
	EXPECT(bri_store_check_name("ok", 2, NULL) == 0);
}

static void test_open(const char *base)
{
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char *data = tu_fmt("%s/data", base);
	char *db = tu_fmt("%s/data/bri.db", base);
	char *dir = tu_fmt("%s/data/backups", base);
	EXPECT(mkdir(data, 0755) == 0);

	/* Without create, a missing store is an error and nothing is made. */
	int rc = bri_store_open(db, NULL, false, &s, &err);
	EXPECT(rc < 0);
	EXPECT_EQ_INT(err.code, rc);
	EXPECT(err.msg[0] != '\0');
	EXPECT(!tu_exists(dir));

	/* With create under umask 0: the default folder, mode 0700 all the same. */
	mode_t old = umask(0);
	rc = bri_store_open(db, NULL, true, &s, &err);
	umask(old);
	EXPECT_EQ_INT(rc, 0);
	if (rc != 0)
		TU_DIE("bri_store_open: %s", err.msg);
	EXPECT_EQ_INT(tu_mode(dir), 0700);
	EXPECT_STREQ(s->db_path, db);
	EXPECT_STREQ(s->db_filename, "bri.db");
	EXPECT_STREQ(s->stem, "bri");
	EXPECT_STREQ(s->dir, dir);
	EXPECT(s->dirfd >= 0);
	char *p = bri_store_path(s, "x", ".db.meta");
	char *want = tu_fmt("%s/x.db.meta", dir);
	EXPECT_STREQ(p, want);
	free(p);
	free(want);
	bri_store_close(s);

	/* Opening again (no create) works on the existing store. */
	s = NULL;
	rc = bri_store_open(db, NULL, false, &s, &err);
	EXPECT_EQ_INT(rc, 0);
	bri_store_close(s);

	/* A relative database path becomes absolute. */
	char cwd[PATH_MAX];
	EXPECT(getcwd(cwd, sizeof(cwd)) != NULL);
	EXPECT(chdir(base) == 0);
	s = NULL;
	rc = bri_store_open("data/bri.db", NULL, false, &s, &err);
	EXPECT_EQ_INT(rc, 0);
	if (rc == 0) {
		EXPECT_STREQ(s->db_path, db);
		EXPECT_STREQ(s->dir, dir);
		bri_store_close(s);
	}
	EXPECT(chdir(cwd) == 0);

	/* An explicit backup_dir, created 0700 under umask 077 too. */
	char *other = tu_fmt("%s/elsewhere", base);
	old = umask(077);
	s = NULL;
	rc = bri_store_open(db, other, true, &s, &err);
	umask(old);
	EXPECT_EQ_INT(rc, 0);
	if (rc == 0) {
		EXPECT_STREQ(s->dir, other);
		EXPECT_STREQ(s->stem, "bri");
		bri_store_close(s);
	}
	EXPECT_EQ_INT(tu_mode(other), 0700);

	/* A stem for a file not ending in .db is the whole file name. */
	char *plain = tu_fmt("%s/data/plain", base);
	s = NULL;
	rc = bri_store_open(plain, other, false, &s, &err);
	EXPECT_EQ_INT(rc, 0);
	if (rc == 0) {
		EXPECT_STREQ(s->db_filename, "plain");
		EXPECT_STREQ(s->stem, "plain");
		bri_store_close(s);
	}
	/* A backup_dir that is a regular file is refused. */
	char *file = tu_fmt("%s/afile", base);
	tu_write_str(file, "x");
	s = NULL;
	rc = bri_store_open(db, file, true, &s, &err);
	EXPECT(rc < 0);
	if (rc == 0)
		bri_store_close(s);
	free(file);
	free(plain);
	free(other);
	free(data);
	free(db);
	free(dir);
}

static struct bri_store *open_store(const char *base, const char *sub)
{
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char *db = tu_fmt("%s/bri.db", base);
	char *dir = tu_fmt("%s/%s", base, sub);
	if (bri_store_open(db, dir, true, &s, &err) != 0)
		TU_DIE("bri_store_open %s: %s", dir, err.msg);
	free(db);
	free(dir);
	return s;
}

/* Number of entries in the store folder whose name ends with suffix. */
static int count_suffix(const char *dir, const char *suffix)
{
	DIR *d = opendir(dir);
	int n = 0;
	struct dirent *de;
	size_t sl = strlen(suffix);
	if (!d)
		return -1;
	for (de = readdir(d); de; de = readdir(d)) {
		size_t l = strlen(de->d_name);
		if (l >= sl && strcmp(de->d_name + l - sl, suffix) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static void test_files(const char *base)
{
	struct bri_err err = {0};
	mode_t old = umask(0);
	struct bri_store *s = open_store(base, "files");

	/* Binary data with NULs, written durably and read back. */
	char data[1000];
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)(i * 7);
	EXPECT_EQ_INT(bri_store_write_file(s, "one.db.meta", data, sizeof(data), &err), 0);
	char *p = bri_store_path(s, "one", ".db.meta");
	EXPECT_EQ_INT(tu_mode(p), 0600);
	free(p);
	char *buf = NULL;
	size_t len = 0;
	EXPECT_EQ_INT(bri_store_read_file(s, "one.db.meta", 4096, &buf, &len), 0);
	EXPECT_EQ_INT(len, sizeof(data));
	EXPECT(buf && memcmp(buf, data, sizeof(data)) == 0);
	EXPECT(buf && buf[len] == '\0');
	free(buf);

	/* Exactly max bytes is fine, one more is -EFBIG. */
	buf = NULL;
	EXPECT_EQ_INT(bri_store_read_file(s, "one.db.meta", sizeof(data), &buf, &len), 0);
	free(buf);
	buf = NULL;
	EXPECT_EQ_INT(bri_store_read_file(s, "one.db.meta", sizeof(data) - 1, &buf, &len), -EFBIG);
	EXPECT(buf == NULL);

	/* Replacing a file replaces its content; no temporary file stays. */
	EXPECT_EQ_INT(bri_store_write_file(s, "one.db.meta", "new", 3, &err), 0);
	buf = NULL;
	EXPECT_EQ_INT(bri_store_read_file(s, "one.db.meta", 4096, &buf, &len), 0);
	EXPECT_EQ_INT(len, 3);
	EXPECT(buf && strcmp(buf, "new") == 0);
	free(buf);
	EXPECT_EQ_INT(count_suffix(s->dir, ".tmp"), 0);

	/* An empty file. */
	EXPECT_EQ_INT(bri_store_write_file(s, "empty", "", 0, &err), 0);
	buf = NULL;
	EXPECT_EQ_INT(bri_store_read_file(s, "empty", 10, &buf, &len), 0);
	EXPECT_EQ_INT(len, 0);
	EXPECT(buf && buf[0] == '\0');
	free(buf);

	/* Absent -> -ENOENT; a symlink is refused; a directory is refused. */
	buf = NULL;
	EXPECT_EQ_INT(bri_store_read_file(s, "absent", 10, &buf, &len), -ENOENT);
	char *link = bri_store_path(s, "link", ".db.meta");
	EXPECT(symlink("one.db.meta", link) == 0);
	buf = NULL;
	int rc = bri_store_read_file(s, "link.db.meta", 4096, &buf, &len);
	EXPECT_MSG(rc < 0, "read_file followed a symlink (rc %d)", rc);
	if (rc == 0)
		free(buf);
	char *sub = bri_store_path(s, "subdir", ".db");
	EXPECT(mkdir(sub, 0700) == 0);
	buf = NULL;
	rc = bri_store_read_file(s, "subdir.db", 4096, &buf, &len);
	EXPECT(rc < 0);
	if (rc == 0)
		free(buf);

	/* A FIFO is refused at once, not waited on (run in a child with an alarm). */
	char *fifo = bri_store_path(s, "fifo", ".db.meta");
	EXPECT(mkfifo(fifo, 0600) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		alarm(10);
		char *fb = NULL;
		size_t fl;
		_exit(bri_store_read_file(s, "fifo.db.meta", 4096, &fb, &fl) < 0 ? 0 : 1);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	EXPECT_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	           "read_file of a FIFO hung or succeeded");
	free(fifo);

	/* bri_store_has: regular NAME.db only. */
	EXPECT_EQ_INT(bri_store_has(s, "one"), 0);
	EXPECT_EQ_INT(bri_store_write_file(s, "one.db", "SQLite", 6, &err), 0);
	EXPECT_EQ_INT(bri_store_has(s, "one"), 1);
	EXPECT_EQ_INT(bri_store_has(s, "subdir"), 0);
	char *dblink = bri_store_path(s, "dblink", ".db");
	EXPECT(symlink("one.db", dblink) == 0);
	EXPECT_EQ_INT(bri_store_has(s, "dblink"), 0);
	EXPECT_EQ_INT(bri_store_has(s, "nothing"), 0);

	/* unlink: present and absent both succeed. */
	EXPECT_EQ_INT(bri_store_unlink(s, "empty"), 0);
	char *ep = bri_store_path(s, "empty", "");
	EXPECT(!tu_exists(ep));
	EXPECT_EQ_INT(bri_store_unlink(s, "empty"), 0);
	EXPECT_EQ_INT(bri_store_sync(s, &err), 0);

	/* tmpfile: ".NAME.WHAT.PID.XXXXXX.tmp", 0600, then published. */
	char *tmp = NULL;
	int fd = bri_store_tmpfile(s, "two", "create", &tmp, &err);
	EXPECT(fd >= 0);
	if (fd >= 0) {
		char *prefix = tu_fmt(".two.create.%d.", (int)getpid());
		EXPECT_MSG(strncmp(tmp, prefix, strlen(prefix)) == 0, "tmp name %s", tmp);
		EXPECT_MSG(strlen(tmp) > 4 && strcmp(tmp + strlen(tmp) - 4, ".tmp") == 0,
		           "tmp name %s", tmp);
		EXPECT(strchr(tmp, '/') == NULL);
		char *tp = bri_store_path(s, tmp, "");
		EXPECT_EQ_INT(tu_mode(tp), 0600);
		EXPECT_EQ_INT(write(fd, "payload", 7), 7);
		EXPECT_EQ_INT(bri_store_publish(s, fd, tmp, "two.db", true, &err), 0);
		close(fd);
		EXPECT(!tu_exists(tp));
		char *fp = bri_store_path(s, "two", ".db");
		char *got = tu_read(fp, &len);
		EXPECT(got && len == 7 && memcmp(got, "payload", 7) == 0);
		EXPECT_EQ_INT(tu_mode(fp), 0600);
		free(got);
		free(fp);
		free(tp);
		free(prefix);
		free(tmp);
	}

	/* publish with noreplace onto an existing name: -EEXIST, tmp removed, old kept. */
	tmp = NULL;
	fd = bri_store_tmpfile(s, "two", "create", &tmp, &err);
	EXPECT(fd >= 0);
	if (fd >= 0) {
		char *tp = bri_store_path(s, tmp, "");
		EXPECT_EQ_INT(write(fd, "other", 5), 5);
		memset(&err, 0, sizeof(err));
		EXPECT_EQ_INT(bri_store_publish(s, fd, tmp, "two.db", true, &err), -EEXIST);
		EXPECT_EQ_INT(err.code, -EEXIST);
		close(fd);
		EXPECT(!tu_exists(tp));
		char *fp = bri_store_path(s, "two", ".db");
		char *got = tu_read(fp, &len);
		EXPECT(got && len == 7 && memcmp(got, "payload", 7) == 0);
		free(got);
		free(fp);
		free(tp);
		free(tmp);
	}
	/* Without noreplace it replaces; fd -1 skips the fsync. */
	tmp = NULL;
	fd = bri_store_tmpfile(s, "two", "meta", &tmp, &err);
	EXPECT(fd >= 0);
	if (fd >= 0) {
		EXPECT_EQ_INT(write(fd, "third", 5), 5);
		EXPECT_EQ_INT(fsync(fd), 0);
		close(fd);
		EXPECT_EQ_INT(bri_store_publish(s, -1, tmp, "two.db", false, &err), 0);
		char *fp = bri_store_path(s, "two", ".db");
		char *got = tu_read(fp, &len);
		EXPECT(got && len == 5 && memcmp(got, "third", 5) == 0);
		free(got);
		free(fp);
		free(tmp);
	}
	EXPECT_EQ_INT(count_suffix(s->dir, ".tmp"), 0);

	free(ep);
	free(dblink);
	free(sub);
	free(link);
	bri_store_close(s);
	umask(old);
}

/* Can another open file description take the flock on .lock right now? */
static bool lock_free(const struct bri_store *s)
{
	char *p = bri_store_path(s, ".lock", "");
	int fd = open(p, O_RDWR | O_CLOEXEC);
	free(p);
	if (fd < 0)
		return true; /* no lock file: nobody holds it */
	bool free_now = flock(fd, LOCK_EX | LOCK_NB) == 0;
	close(fd);
	return free_now;
}

struct lock_thread {
	struct bri_store *s; /* the store to lock */
	int pipe_w;          /* written when the lock was taken */
};

static void *lock_thread_main(void *arg)
{
	struct lock_thread *lt = arg;
	struct bri_err err = {0};
	int fd = bri_store_lock(lt->s, &err);
	char c = fd >= 0 ? 'L' : 'E';
	if (write(lt->pipe_w, &c, 1) != 1)
		abort();
	if (fd >= 0)
		bri_store_unlock(fd);
	return NULL;
}

/* Waits up to ms for one byte on fd; returns it or 0 on timeout. */
static char wait_byte(int fd, int ms)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	char c = 0;
	if (poll(&pfd, 1, ms) == 1 && read(fd, &c, 1) == 1)
		return c;
	return 0;
}

static void test_lock(const char *base)
{
	struct bri_err err = {0};
	struct bri_store *s = open_store(base, "lock");

	int fd = bri_store_lock(s, &err);
	EXPECT(fd >= 0);
	if (fd < 0) {
		bri_store_close(s);
		return;
	}
	char *lp = bri_store_path(s, ".lock", "");
	EXPECT(tu_exists(lp));
	free(lp);
	EXPECT(!lock_free(s));

	/* A second holder in another process waits until the first unlocks. */
	int pfd[2];
	EXPECT(pipe(pfd) == 0);
	pid_t child = fork();
	if (child == 0) {
		alarm(20);
		close(pfd[0]);
		/* fork shared the parent's lock description: drop it, as exec'd tools would. */
		close(fd);
		struct bri_store *cs = open_store(base, "lock");
		int cfd = bri_store_lock(cs, &err);
		char c = cfd >= 0 ? 'L' : 'E';
		if (write(pfd[1], &c, 1) != 1)
			_exit(2);
		if (cfd >= 0)
			bri_store_unlock(cfd);
		_exit(0);
	}
	close(pfd[1]);
	EXPECT_MSG(wait_byte(pfd[0], 400) == 0, "another process took the lock while held");
	bri_store_unlock(fd);
	EXPECT_EQ_INT(wait_byte(pfd[0], 10000), 'L');
	int status = 0;
	EXPECT(waitpid(child, &status, 0) == child);
	EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(pfd[0]);
	EXPECT(lock_free(s));

	/* Another thread of this process waits too (a second open file description). */
	fd = bri_store_lock(s, &err);
	EXPECT(fd >= 0);
	EXPECT(pipe(pfd) == 0);
	struct bri_store *s2 = open_store(base, "lock");
	struct lock_thread lt = {.s = s2, .pipe_w = pfd[1]};
	pthread_t th;
	EXPECT(pthread_create(&th, NULL, lock_thread_main, &lt) == 0);
	EXPECT_MSG(wait_byte(pfd[0], 400) == 0, "another thread took the lock while held");
	if (fd >= 0)
		bri_store_unlock(fd);
	EXPECT_EQ_INT(wait_byte(pfd[0], 10000), 'L');
	pthread_join(th, NULL);
	close(pfd[0]);
	close(pfd[1]);
	bri_store_close(s2);

	/* Lock, unlock, lock again in a row. */
	for (int i = 0; i < 3; i++) {
		fd = bri_store_lock(s, &err);
		EXPECT(fd >= 0);
		if (fd >= 0)
			bri_store_unlock(fd);
	}
	EXPECT(lock_free(s));
	bri_store_close(s);
}

/*
 * Waits for the lock end at the busy timeout with -EBUSY naming the holder's
 * pid (written into .lock); the holding thread may lock again (reentrant).
 */
static void test_lock_deadline(const char *base)
{
	struct bri_err err = {0};
	struct bri_store *s = open_store(base, "deadline");
	struct bri_store *other = open_store(base, "deadline");
	char pid[32], *lp = bri_store_path(s, ".lock", ""), *text;

	int fd = bri_store_lock(s, &err);
	EXPECT(fd >= 0);
	snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	text = tu_read(lp, NULL);
	EXPECT(text && strcmp(text, pid) == 0);
	free(text);

	/* The same thread again: a second descriptor of the same lock. */
	int again = bri_store_lock(s, &err);
	EXPECT(again >= 0 && again != fd);
	bri_store_unlock(again);
	EXPECT(!lock_free(s));

	/* Another holder (open file description) gives up after its timeout. */
	other->lock_timeout_ms = 200;
	memset(&err, 0, sizeof(err));
	double t0 = bri_now_mono();
	int rc = bri_store_lock(other, &err);
	double took = bri_now_mono() - t0;
	EXPECT_EQ_INT(rc, -EBUSY);
	EXPECT_EQ_INT(err.code, -EBUSY);
	EXPECT_MSG(took >= 0.19 && took < 5, "a 200 ms lock timeout took %.3f s", took);
	snprintf(pid, sizeof(pid), "pid %ld", (long)getpid());
	EXPECT_MSG(strstr(err.msg, pid) != NULL, "no holder pid in: %s", err.msg);

	/* Released: .lock names nobody and the other takes it at once. */
	if (fd >= 0)
		bri_store_unlock(fd);
	text = tu_read(lp, NULL);
	EXPECT(text && text[0] == '\0');
	free(text);
	fd = bri_store_lock(other, &err);
	EXPECT(fd >= 0);
	if (fd >= 0)
		bri_store_unlock(fd);
	free(lp);
	bri_store_close(other);
	bri_store_close(s);
}

/* A pid that existed a moment ago and is now gone (reaped). */
static pid_t dead_pid(void)
{
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	waitpid(p, NULL, 0);
	return p;
}

static void test_sweep(const char *base)
{
	struct bri_err err = {0};
	struct bri_store *s = open_store(base, "sweep");
	int fd = bri_store_lock(s, &err);
	EXPECT(fd >= 0);

	pid_t dead = dead_pid();
	char *dead1 = tu_fmt("%s/.x.create.%d.Ab12Cd.tmp", s->dir, (int)dead);
	char *dead2 = tu_fmt("%s/.a.b.c.meta.%d.zzzzzz.tmp", s->dir, (int)dead);
	char *live1 = tu_fmt("%s/.x.create.%d.Ef34Gh.tmp", s->dir, (int)getpid());
	char *live2 = tu_fmt("%s/.y.create.1.Ij56Kl.tmp", s->dir); /* init: alive */
	char *orphan_meta = tu_fmt("%s/gone.db.meta", s->dir);
	char *orphan_verify = tu_fmt("%s/gone.db.verify", s->dir);
	char *kept_db = tu_fmt("%s/kept.db", s->dir);
	char *kept_meta = tu_fmt("%s/kept.db.meta", s->dir);
	char *kept_verify = tu_fmt("%s/kept.db.verify", s->dir);
	char *other = tu_fmt("%s/notes.txt", s->dir);
	char *audit = tu_fmt("%s/audit.jsonl", s->dir);
	const char *all[] = {dead1,   dead2,     live1,       live2, orphan_meta, orphan_verify,
	                     kept_db, kept_meta, kept_verify, other, audit};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		tu_write_str(all[i], "x");
	char *own = NULL;
	int tfd = bri_store_tmpfile(s, "mine", "create", &own, &err);
	EXPECT(tfd >= 0);

	int n = store_sweep(s);
	EXPECT_EQ_INT(n, 4);
	EXPECT(!tu_exists(dead1));
	EXPECT(!tu_exists(dead2));
	EXPECT(!tu_exists(orphan_meta));
	EXPECT(!tu_exists(orphan_verify));
	EXPECT(tu_exists(live1));
	EXPECT(tu_exists(live2));
	EXPECT(tu_exists(kept_db));
	EXPECT(tu_exists(kept_meta));
	EXPECT(tu_exists(kept_verify));
	EXPECT(tu_exists(other));
	EXPECT(tu_exists(audit));
	if (tfd >= 0) {
		char *op = bri_store_path(s, own, "");
		EXPECT(tu_exists(op));
		free(op);
		close(tfd);
	}
	char *lockp = bri_store_path(s, ".lock", "");
	EXPECT(tu_exists(lockp));
	free(lockp);
	EXPECT_EQ_INT(store_sweep(s), 0);
	if (fd >= 0)
		bri_store_unlock(fd);

	/* Taking the lock sweeps leftovers of dead processes too. */
	tu_write_str(dead1, "x");
	fd = bri_store_lock(s, &err);
	EXPECT(fd >= 0);
	EXPECT_MSG(!tu_exists(dead1), "bri_store_lock did not sweep a dead process's tmp file");
	EXPECT(tu_exists(live1));
	if (fd >= 0)
		bri_store_unlock(fd);

	free(own);
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		free((char *)all[i]);
	bri_store_close(s);
}

static void test_auto_name(const char *base)
{
	struct bri_err err = {0};
	struct bri_store *s = open_store(base, "auto");
	time_t now = 1760625000; /* 2025-10-16 */
	struct tm tm;
	char stamp[32], want[BRI_NAME_MAX + 1], buf[BRI_NAME_MAX + 1];
	localtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%d_%H%M%S", &tm);

	snprintf(want, sizeof(want), "bri_backup_%s", stamp);
	EXPECT_EQ_INT(bri_store_auto_name(s, NULL, now, buf, sizeof(buf)), 0);
	EXPECT_STREQ(buf, want);
	EXPECT_EQ_INT(bri_store_check_name(buf, strlen(buf), NULL), 0);

	char *f = tu_fmt("%s.db", want);
	EXPECT_EQ_INT(bri_store_write_file(s, f, "x", 1, &err), 0);
	free(f);
	snprintf(want, sizeof(want), "bri_backup_%s_1", stamp);
	EXPECT_EQ_INT(bri_store_auto_name(s, NULL, now, buf, sizeof(buf)), 0);
	EXPECT_STREQ(buf, want);

	f = tu_fmt("%s.db", want);
	EXPECT_EQ_INT(bri_store_write_file(s, f, "x", 1, &err), 0);
	free(f);
	snprintf(want, sizeof(want), "bri_backup_%s_2", stamp);
	EXPECT_EQ_INT(bri_store_auto_name(s, NULL, now, buf, sizeof(buf)), 0);
	EXPECT_STREQ(buf, want);

	/* A different second is free again. */
	time_t later = now + 1;
	localtime_r(&later, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%d_%H%M%S", &tm);
	snprintf(want, sizeof(want), "bri_backup_%s", stamp);
	EXPECT_EQ_INT(bri_store_auto_name(s, NULL, later, buf, sizeof(buf)), 0);
	EXPECT_STREQ(buf, want);

	/* With a prefix: "<prefix>_YYYYMMDD_HHMMSS", suffixed the same way. */
	snprintf(want, sizeof(want), "pre_restore_safety_%s", stamp);
	EXPECT_EQ_INT(bri_store_auto_name(s, "pre_restore_safety", later, buf, sizeof(buf)), 0);
	EXPECT_STREQ(buf, want);
	f = tu_fmt("%s.db", want);
	EXPECT_EQ_INT(bri_store_write_file(s, f, "x", 1, &err), 0);
	free(f);
	snprintf(want, sizeof(want), "pre_restore_safety_%s_1", stamp);
	EXPECT_EQ_INT(bri_store_auto_name(s, "pre_restore_safety", later, buf, sizeof(buf)), 0);
	EXPECT_STREQ(buf, want);
	bri_store_close(s);
}

/* Automatic names are valid names whatever the database file is called. */
static void test_auto_name_odd_stems(const char *base)
{
	static const char *files[] = {
	    "my data.db",
	    ".hidden.db",
	    "donn\xc3\xa9"
	    "es.db",
	    "bri.sqlite",
	    "-x.db",
	    "ctl.db",
	    "a\nb.db",
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.db"};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		struct bri_err err = {0};
		struct bri_store *s = NULL;
		char *db = tu_fmt("%s/%s", base, files[i]);
		char *dir = tu_fmt("%s/odd%zu", base, i);
		int rc = bri_store_open(db, dir, true, &s, &err);
		EXPECT_MSG(rc == 0, "open for %s: %s", files[i], err.msg);
		if (rc == 0) {
			char buf[BRI_NAME_MAX + 1], prev[BRI_NAME_MAX + 1] = "";
			/* Three in the same second: three different valid names. */
			for (int k = 0; k < 3; k++) {
				rc = bri_store_auto_name(s, NULL, 1760625000, buf, sizeof(buf));
				EXPECT_MSG(rc == 0, "auto name for %s: %d", files[i], rc);
				if (rc != 0)
					break;
				EXPECT_MSG(bri_store_check_name(buf, strlen(buf), NULL) == 0,
				           "auto name for %s is not a valid name: \"%s\"", files[i],
				           buf);
				EXPECT_MSG(strcmp(buf, prev) != 0, "auto name repeated: %s", buf);
				EXPECT_MSG(strstr(buf, "20251016_") != NULL ||
				               strstr(buf, "20251017_") != NULL,
				           "auto name without its time: %s", buf);
				snprintf(prev, sizeof(prev), "%s", buf);
				char *f = tu_fmt("%s.db", buf);
				EXPECT_EQ_INT(bri_store_write_file(s, f, "x", 1, &err), 0);
				free(f);
			}
			bri_store_close(s);
		}
		free(db);
		free(dir);
	}
}

/* Number of entries of folder dir (without . and ..), -1 when unreadable. */
static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

/*
 * Symlinks at the database's path and the store folder are refused unless
 * followed; folders are made canonical; a store in the database's own folder
 * is refused unless forced.
 */
static void test_open_paths(const char *base)
{
	struct bri_store_open_opts follow = {.create = true, .follow_symlink = true};
	struct bri_store_open_opts plain = {.create = true};
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char *real = tu_fmt("%s/paths", base);
	char *db = tu_fmt("%s/paths/bri.db", base);
	char *alias = tu_fmt("%s/alias", base);
	char *link = tu_fmt("%s/paths/link.db", base);
	char *dangling = tu_fmt("%s/paths/dangling.db", base);
	char *nowhere = tu_fmt("%s/nowhere/x.db", base);
	char *store = tu_fmt("%s/paths/backups", base);
	char *store_link = tu_fmt("%s/store_link", base);
	char *want_db = NULL;
	EXPECT(mkdir(real, 0755) == 0);
	tu_write(db, "x", 1);
	EXPECT(symlink(real, alias) == 0);
	EXPECT(symlink(db, link) == 0);
	EXPECT(symlink(nowhere, dangling) == 0);

	/* A symlink as last component: refused, nothing created. */
	EXPECT_EQ_INT(bri_store_open(link, NULL, true, &s, &err), -ELOOP);
	EXPECT(strstr(err.msg, "symbolic link") != NULL);
	EXPECT(s == NULL);
	EXPECT_EQ_INT(bri_store_open(dangling, NULL, true, &s, &err), -ELOOP);
	EXPECT_EQ_INT(bri_store_open_ex(dangling, NULL, &follow, &s, &err), -EINVAL);
	EXPECT(access(nowhere, F_OK) < 0);
	EXPECT_EQ_INT(count_entries(real), 3); /* bri.db, link.db, dangling.db: no store */

	/* Followed: the target, in a canonical folder. */
	EXPECT_EQ_INT(bri_store_open_ex(link, NULL, &follow, &s, &err), 0);
	if (s) {
		EXPECT_STREQ(s->db_path, db);
		EXPECT_STREQ(s->dir, store);
		bri_store_close(s);
		s = NULL;
	}
	/* A symlink above the file: resolved, not refused. */
	want_db = tu_fmt("%s/alias/bri.db", base);
	EXPECT_EQ_INT(bri_store_open(want_db, NULL, true, &s, &err), 0);
	if (s) {
		EXPECT_STREQ(s->db_path, db);
		EXPECT_STREQ(s->dir, store);
		EXPECT_EQ_INT(bri_store_check(s, &err), 0);
		bri_store_close(s);
		s = NULL;
	}
	/* The store folder as a symlink. */
	EXPECT(symlink(store, store_link) == 0);
	EXPECT_EQ_INT(bri_store_open_ex(db, store_link, &plain, &s, &err), -ELOOP);
	EXPECT(strstr(err.msg, "symbolic link") != NULL);
	EXPECT_EQ_INT(bri_store_open_ex(db, store_link, &follow, &s, &err), 0);
	if (s) {
		EXPECT_STREQ(s->dir, store);
		bri_store_close(s);
		s = NULL;
	}
	/* The database's own folder, however spelled. */
	EXPECT_EQ_INT(bri_store_open(db, real, true, &s, &err), -EINVAL);
	EXPECT(strstr(err.msg, "own folder") != NULL);
	EXPECT_EQ_INT(bri_store_open(db, alias, false, &s, &err), -ELOOP);
	EXPECT_EQ_INT(bri_store_open_ex(db, alias, &follow, &s, &err), -EINVAL);
	struct bri_store_open_opts forced = {.force = true};
	EXPECT_EQ_INT(bri_store_open_ex(db, real, &forced, &s, &err), 0);
	bri_store_close(s);
	s = NULL;
	free(want_db);
	free(store_link);
	free(store);
	free(nowhere);
	free(dangling);
	free(link);
	free(alias);
	free(db);
	free(real);
}

/*
 * A store folder replaced while open: bri_store_check says so, temporary
 * files and durable writes go to the folder of the descriptor or nowhere,
 * never to the new folder at the path.
 */
static void test_replaced(const char *base)
{
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char *db = tu_fmt("%s/repl.db", base);
	char *dir = tu_fmt("%s/repl", base);
	char *old = tu_fmt("%s/repl.old", base);
	char *tmp = NULL;
	tu_write(db, "x", 1);
	if (bri_store_open(db, dir, true, &s, &err) != 0)
		TU_DIE("bri_store_open: %s", err.msg);
	EXPECT_EQ_INT(bri_store_check(s, &err), 0);
	EXPECT(rename(dir, old) == 0);
	EXPECT(mkdir(dir, 0700) == 0);
	EXPECT_EQ_INT(bri_store_check(s, &err), -ESTALE);
	EXPECT(strstr(err.msg, "replaced") != NULL);
	EXPECT_EQ_INT(bri_store_write_file(s, "x.db.meta", "{}", 2, &err), -ESTALE);
	int fd = bri_store_tmpfile(s, "x", "create", &tmp, &err);
	EXPECT(fd >= 0);
	if (fd >= 0) {
		/* The temporary file is in the old folder, and its fd path leads there. */
		char *in_old = tu_fmt("%s/%s", old, tmp);
		char *via_fd = bri_store_fd_path(s, tmp, NULL);
		struct stat a, b;
		EXPECT(stat(in_old, &a) == 0 && stat(via_fd, &b) == 0 && a.st_ino == b.st_ino);
		EXPECT_EQ_INT(bri_store_unlink(s, tmp), 0);
		close(fd);
		free(via_fd);
		free(in_old);
	}
	free(tmp);
	EXPECT_EQ_INT(count_entries(dir), 0);
	EXPECT_EQ_INT(count_entries(old), 0);
	/* Removed while open: the same answer. */
	EXPECT(rmdir(old) == 0);
	EXPECT_EQ_INT(bri_store_check(s, &err), -ESTALE);
	bri_store_close(s);
	free(old);
	free(dir);
	free(db);
}

int main(void)
{
	char *base = tu_tmpdir("store");
	test_open_paths(base);
	test_replaced(base);
	test_names();
	test_open(base);
	test_files(base);
	test_lock(base);
	test_lock_deadline(base);
	test_sweep(base);
	test_auto_name(base);
	test_auto_name_odd_stems(base);
	tu_tmpdir_done(base);
	return EXPECT_RESULT();
}
