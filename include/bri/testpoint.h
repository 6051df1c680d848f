/*
 * Test-only pause points: a way for a test to stop a process at a named
 * place inside an operation, do something racy there (delete a backup, open a
 * file), and let it go on, so that races are reproduced every time instead of
 * now and then. Inert unless the environment variable BRI_TEST_PAUSE_DIR names
 * a folder; then a point P is armed by a file DIR/P. A process reaching an
 * armed point creates DIR/P.reached and waits until DIR/P is removed (at most
 * 60 s), then goes on. Nothing here changes what an operation does.
 */
#ifndef BRI_TESTPOINT_H
#define BRI_TESTPOINT_H

#include <time.h>

/* Pauses at point while it is armed (see above); returns at once otherwise. */
void bri_testpoint(const char *point);

/*
 * The time a new backup is stamped with: time(NULL), or, in tests only, the
 * seconds since the epoch in $BRI_TEST_NOW when it is set to a positive
 * number (so tests give backups distinct times without sleeping).
 */
time_t bri_testpoint_now(void);

#endif
