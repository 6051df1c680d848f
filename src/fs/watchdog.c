/*
 * The watchdog: a small child process that aborts the mount's FUSE
 * connection (fusectl's /sys/fs/fuse/connections/N/abort, owned by the
 * mounting user) when the daemon dies without saying goodbye (kill -9, a
 * crash). Not the daemon's normal exit, which unmounts first and tells it.
 *
 * Why: the notify worker sends cache invalidations, and an entry
 * invalidation sleeps in the kernel, uninterruptibly, on the folder's lock.
 * A request the daemon has not answered may hold that lock (a lookup, or a
 * rename into restore/ whose request was not read yet: worker.c holds back
 * what it can, but the kernel takes the locks before the daemon sees the
 * request). A daemon killed then cannot exit: its notify thread never
 * wakes, so /dev/fuse is never closed, so the request is never ended, so
 * the lock is never released, and `mv` and `ls` hang until the connection
 * is aborted by hand. The watchdog does that by hand's work: the abort ends
 * every request, the lock goes, the thread wakes, the daemon exits, and the
 * mount answers ENOTCONN until fusermount3 -u, as after any kill.
 *
 * The child is forked before any thread starts, closes every descriptor
 * but its pipe (it must not hold /dev/fuse or the store's lock), and learns
 * of the daemon's death by PR_SET_PDEATHSIG (the main thread's exit: it
 * does not wait for a stuck thread, unlike end of file on the pipe). It
 * checks that the mount is still the one it watches (/proc/self/mountinfo:
 * mount point and device) before aborting. It touches nothing else.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bri/log.h"
#include "fs.h"

static int wd_fd = -1; /* the daemon's end of the pipe, or -1 */
static pid_t wd_pid;   /* the watchdog */

static volatile sig_atomic_t parent_died;

static void on_parent_death(int sig)
{
	(void)sig;
	parent_died = 1;
}

/*
 * Undoes mountinfo's escapes in s, in place: the kernel writes a space, tab,
 * newline and backslash of a path as \040, \011, \012 and \134 (octal).
 */
static void unescape(char *s)
{
	char *out = s;

	for (const char *p = s; *p; p++) {
		if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
		    p[3] >= '0' && p[3] <= '7') {
			*out++ = (char)((p[1] - '0') << 6 | (p[2] - '0') << 3 | (p[3] - '0'));
			p += 3;
		} else {
			*out++ = *p;
		}
	}
	*out = '\0';
}

/* The device (major:minor) of the newest mount at path, from mountinfo; 0 or -ENOENT. */
static int mount_dev(const char *path, unsigned *major, unsigned *minor)
{
	char line[4 * PATH_MAX + 1024]; /* a path escaped: up to 4 bytes a byte */
	int rc = -ENOENT;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	if (!f)
		return -errno;
	/* Each line: id parent major:minor root point ... (names escaped: unescape). */
	while (fgets(line, sizeof(line), f)) {
		char *p = strchr(line, ' '), *end, *point;
		unsigned long ma, mi;

		p = p ? strchr(p + 1, ' ') : NULL;
		if (!p)
			continue;
		ma = strtoul(p + 1, &end, 10);
		if (*end != ':')
			continue;
		mi = strtoul(end + 1, &end, 10);
		if (*end != ' ')
			continue;
		p = strchr(end + 1, ' '); /* after the root */
		if (!p)
			continue;
		point = p + 1;
		end = strchr(point, ' ');
		if (!end)
			continue;
		*end = '\0';
		unescape(point);
		if (!strcmp(point, path)) {
			*major = (unsigned)ma;
			*minor = (unsigned)mi;
			rc = 0; /* the last one is the newest */
		}
	}
	fclose(f);
	return rc;
}

/* The child: waits for the daemon's goodbye or death; aborts the connection on death. */
static void watch(int rd, pid_t parent, const char *path, unsigned major, unsigned minor)
{
	struct sigaction sa;
	char c = 0, abort_path[128];
	ssize_t n;
	unsigned ma = 0, mi = 0;
	int fd;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_parent_death; /* no SA_RESTART: read returns EINTR */
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGINT, SIG_IGN); /* a terminal's ^C is the daemon's to handle */
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	prctl(PR_SET_NAME, "bri-watchdog");
	if (prctl(PR_SET_PDEATHSIG, SIGUSR1) < 0)
		_exit(0);
	if (getppid() != parent)
		parent_died = 1; /* died before the line above */
	while (!parent_died) {
		n = read(rd, &c, 1);
		if (n == 1 && c == 'q')
			_exit(0); /* the daemon unmounted and says goodbye */
		if (n == 0)
			break; /* every end closed without a goodbye: died */
		if (n < 0 && errno != EINTR)
			_exit(0);
	}
	if (mount_dev(path, &ma, &mi) < 0 || ma != major || mi != minor)
		_exit(0); /* unmounted, or another mount there now */
	snprintf(abort_path, sizeof(abort_path), "/sys/fs/fuse/connections/%u/abort",
	         (major << 20) | minor);
	fd = open(abort_path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, "1", 1) < 0) {
			/* nothing more to do */
		}
		close(fd);
	}
	_exit(0);
}

int bfs_watchdog_start(const char *mountpoint)
{
	char path[PATH_MAX];
	unsigned major = 0, minor = 0;
	pid_t parent = getpid(), pid;
	int p[2];

	if (!realpath(mountpoint, path) || mount_dev(path, &major, &minor) < 0) {
		bri_log(BRI_LOG_WARN, "watchdog: cannot find the mount at %s", mountpoint);
		return -ENOENT;
	}
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		int rc = -errno;

		close(p[0]);
		close(p[1]);
		return rc;
	}
	if (pid == 0) {
		/* Only the pipe's read end: never /dev/fuse, the store's lock, the log. */
		int rd = dup2(p[0], 3);
		int null = open("/dev/null", O_RDWR);

		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			dup2(null, 2);
		}
		if (rd != 3)
			_exit(0);
		close_range(4, ~0u, 0);
		watch(3, parent, path, major, minor);
	}
	close(p[0]);
	wd_fd = p[1];
	wd_pid = pid;
	bri_log(BRI_LOG_DEBUG, "watchdog %d watches connection %u", (int)pid,
	        (major << 20) | minor);
	return 0;
}

void bfs_watchdog_stop(void)
{
	if (wd_fd < 0)
		return;
	if (write(wd_fd, "q", 1) < 0)
		bri_log(BRI_LOG_WARN, "watchdog: %s", strerror(errno));
	close(wd_fd);
	wd_fd = -1;
	waitpid(wd_pid, NULL, 0);
}
