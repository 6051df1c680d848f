/*
 * Test-only pause points (include/bri/testpoint.h). The environment is read
 * at each call, so a test arms and disarms points while the process runs; with
 * BRI_TEST_PAUSE_DIR unset a call costs one getenv.
 */
#include "bri/testpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define TESTPOINT_WAIT_MAX_S 60

void bri_testpoint(const char *point)
{
	const char *dir = getenv("BRI_TEST_PAUSE_DIR");
	char armed[PATH_MAX];
	char reached[PATH_MAX];
	struct timespec tick = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
	int fd;

	if (!dir || !dir[0])
		return;
	if (snprintf(armed, sizeof(armed), "%s/%s", dir, point) >= (int)sizeof(armed) ||
	    snprintf(reached, sizeof(reached), "%s/%s.reached", dir, point) >= (int)sizeof(reached))
		return;
	if (access(armed, F_OK) != 0)
		return;
	fd = open(reached, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
	if (fd >= 0)
		close(fd);
	for (int i = 0; i < TESTPOINT_WAIT_MAX_S * 100 && access(armed, F_OK) == 0; i++)
		nanosleep(&tick, NULL);
}

time_t bri_testpoint_now(void)
{
	const char *v = getenv("BRI_TEST_NOW");
	char *end = NULL;
	long long t;

	if (!v || !v[0])
		return time(NULL);
	errno = 0;
	t = strtoll(v, &end, 10);
	if (errno || *end || t <= 0)
		return time(NULL);
	return (time_t)t;
}
