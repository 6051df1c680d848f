/*
 * Hooks (include/bri/hook.h): posix_spawn of the program itself (no shell,
 * so no name or reason can inject anything), in a process group of its own,
 * waited for with a deadline; at the deadline the whole group gets SIGKILL.
 */
#include "bri/hook.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bri/common.h"
#include "bri/log.h"

extern char **environ;

#define HOOK_REASON_MAX 2048 /* bytes of BRI_REASON passed on */

/* environ without our four variables, plus them: malloc'd array, strings too. */
static char **hook_env(const char *const vars[4][2])
{
	size_t n = 0, k = 0;
	char **env;

	while (environ && environ[n])
		n++;
	env = calloc(n + 5, sizeof(*env));
	if (!env)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		bool ours = false;

		for (int v = 0; v < 4; v++) {
			size_t l = strlen(vars[v][0]);

			if (!strncmp(environ[i], vars[v][0], l) && environ[i][l] == '=')
				ours = true;
		}
		if (!ours)
			env[k++] = environ[i];
	}
	for (int v = 0; v < 4; v++) {
		char *s = NULL;

		if (asprintf(&s, "%s=%.*s", vars[v][0], HOOK_REASON_MAX, vars[v][1]) < 0)
			s = NULL;
		if (!s) {
			for (size_t j = k - v; j < k; j++)
				free(env[j]);
			free(env);
			return NULL;
		}
		env[k++] = s;
	}
	env[k] = NULL;
	return env;
}

static void free_env(char **env)
{
	size_t n = 0;

	if (!env)
		return;
	while (env[n])
		n++;
	for (size_t i = n - 4; i < n; i++)
		free(env[i]);
	free(env);
}

int bri_hook_run(const struct bri_hooks *h, const char *operation, const char *name, int result,
                 const char *reason)
{
	const char *program = h ? (result == 0 ? h->on_success : h->on_failure) : NULL;
	const char *vars[4][2] = {{"BRI_OPERATION", operation ? operation : ""},
	                          {"BRI_NAME", name ? name : ""},
	                          {"BRI_RESULT", result == 0 ? "ok" : "failed"},
	                          {"BRI_REASON", result == 0 ? "" : (reason ? reason : "")}};
	int timeout_s = h && h->timeout_s > 0 ? h->timeout_s : BRI_HOOK_TIMEOUT_S;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	char *argv[2] = {NULL, NULL};
	char **env = NULL;
	sigset_t none, dfl;
	double deadline;
	pid_t pid;
	int rc, status;

	if (!program || !*program)
		return -ENOENT;
	argv[0] = (char *)program;
	env = hook_env(vars);
	if (!env) {
		bri_log(BRI_LOG_ERR, "hook %s after %s: out of memory", program, operation);
		return -ENOMEM;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, 2, 1);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	sigaddset(&dfl, SIGTERM);
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGHUP);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
	                                    POSIX_SPAWN_SETSIGDEF);
	rc = posix_spawn(&pid, program, &fa, &attr, argv, env);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	free_env(env);
	if (rc != 0) {
		bri_log(BRI_LOG_ERR, "hook %s after %s could not start: %s", program, operation,
		        strerror(rc));
		return -rc;
	}
	deadline = bri_now_mono() + timeout_s;
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			break;
		if (r < 0 && errno != EINTR) {
			bri_log(BRI_LOG_ERR, "hook %s after %s: waitpid: %s", program, operation,
			        strerror(errno));
			return -errno;
		}
		if (bri_now_mono() >= deadline) {
			kill(-pid, SIGKILL);
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			bri_log(BRI_LOG_ERR, "hook %s after %s killed at its timeout (%d s)",
			        program, operation, timeout_s);
			return -ETIMEDOUT;
		}
		struct timespec tick = {0, 10 * 1000 * 1000};
		nanosleep(&tick, NULL);
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		bri_log(BRI_LOG_DEBUG, "hook %s after %s: ok", program, operation);
		return 0;
	}
	if (WIFEXITED(status)) {
		bri_log(BRI_LOG_ERR, "hook %s after %s exited %d", program, operation,
		        WEXITSTATUS(status));
		return WEXITSTATUS(status);
	}
	bri_log(BRI_LOG_ERR, "hook %s after %s killed by signal %d", program, operation,
	        WTERMSIG(status));
	return 128 + WTERMSIG(status);
}
