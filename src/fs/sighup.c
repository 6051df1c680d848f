/*
 * SIGHUP reopens the -o log= file (logrotate's "move, then HUP") instead of
 * unmounting, as libfuse's own handler would. The handler only writes a
 * byte to a pipe (async-signal-safe); a thread of ours reads it and reopens
 * the file outside signal context. Installed after fuse_set_signal_handlers,
 * so that it replaces libfuse's SIGHUP handler; SIGINT and SIGTERM still
 * unmount.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "bri/log.h"
#include "fs.h"

static int hup_pipe[2] = {-1, -1}; /* read end, write end */
static pthread_t hup_thread;
static bool hup_started;

static void on_hup(int sig)
{
	int saved = errno;
	char c = 'h';

	(void)sig;
	if (write(hup_pipe[1], &c, 1) < 0) {
		/* pipe full: a reopen is pending anyway */
	}
	errno = saved;
}

static void *hup_main(void *arg)
{
	(void)arg;
	for (;;) {
		char c;
		ssize_t n = read(hup_pipe[0], &c, 1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || c == 'q')
			return NULL;
		int rc = bri_log_reopen();

		if (rc < 0)
			bri_log(BRI_LOG_ERR, "SIGHUP: cannot reopen the log file: %s",
			        strerror(-rc));
		else
			bri_log(BRI_LOG_INFO, "SIGHUP: log file reopened");
	}
}

int bfs_sighup_install(void)
{
	struct sigaction sa;

	if (pipe2(hup_pipe, O_CLOEXEC) < 0)
		return -errno;
	fcntl(hup_pipe[1], F_SETFL, O_NONBLOCK);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_hup;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGHUP, &sa, NULL) < 0) {
		int rc = -errno;

		close(hup_pipe[0]);
		close(hup_pipe[1]);
		hup_pipe[0] = hup_pipe[1] = -1;
		return rc;
	}
	return 0;
}

int bfs_sighup_start(void)
{
	int rc;

	if (hup_pipe[0] < 0)
		return -EINVAL;
	rc = pthread_create(&hup_thread, NULL, hup_main, NULL);
	if (rc)
		return -rc;
	pthread_setname_np(hup_thread, "bri-sighup");
	hup_started = true;
	return 0;
}

void bfs_sighup_remove(void)
{
	struct sigaction sa;
	char q = 'q';

	if (hup_pipe[0] < 0)
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGHUP, &sa, NULL);
	if (hup_started) {
		fcntl(hup_pipe[1], F_SETFL, 0); /* the stop byte must get through */
		while (write(hup_pipe[1], &q, 1) < 0 && errno == EINTR)
			;
		pthread_join(hup_thread, NULL);
		hup_started = false;
	}
	close(hup_pipe[0]);
	close(hup_pipe[1]);
	hup_pipe[0] = hup_pipe[1] = -1;
}
