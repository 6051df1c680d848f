/*
 * The daemon's two worker threads. The notify worker sends the kernel cache
 * invalidations that handlers and the catalog refresh queue: libfuse's
 * fuse_lowlevel_notify_inval_* must never run inside a related request
 * handler or while holding a lock a handler needs, so they are sent only
 * from here, holding nothing. An entry invalidation takes the folder's
 * lock in the kernel; while a rename into restore/ is being answered, the
 * kernel holds the root's, restore/'s and the backup folder's locks, so
 * entry invalidations in those folders are held back until the rename is
 * answered (else the notify thread would sleep in the kernel for the whole
 * restore, and a daemon killed then could never exit: its thread stuck,
 * its /dev/fuse never closed, the rename never answered; what cannot be
 * held back, a request not read yet, is watchdog.c's).
 *
 * The verifier verifies every backup that was never verified and
 * re-verifies ("scrub") those whose last verification is older than
 * scrub_interval, one at a time, in the background, holding the daemon's
 * op_lock for each so that it never races a restore or a request. It is
 * throttled so that it never starves the live application: its thread (and
 * the hashing thread the core starts from it, which inherits this) does
 * I/O at idle priority, and it pauses between backups as long as the last
 * verification took (so at most half the time is spent verifying). Its CPU
 * priority is left alone: it holds op_lock while it verifies, and a request
 * waiting for that lock must not wait for a starved thread longer than the
 * idle I/O class already makes it. Its failed verdicts run the on_failure
 * hook; its good ones run no hook (a ping hook would fire per backup). When
 * the daemon stops it stops too, between chunks of a verification, which
 * then records nothing: unmounting never waits for a whole verification.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bri/log.h"
#include "bri/testpoint.h"
#include "bri/verify.h"
#include "fs.h"

static void push(struct bfs *fs, struct bfs_inval *iv)
{
	pthread_mutex_lock(&fs->q_lock);
	if (fs->stop) {
		pthread_mutex_unlock(&fs->q_lock);
		free(iv);
		return;
	}
	iv->next = NULL;
	if (fs->q_tail)
		fs->q_tail->next = iv;
	else
		fs->q_head = iv;
	fs->q_tail = iv;
	fs->q_pushed++;
	pthread_cond_signal(&fs->q_cond);
	pthread_mutex_unlock(&fs->q_lock);
}

void bfs_inval_entry(struct bfs *fs, fuse_ino_t parent, const char *name)
{
	struct bfs_inval *iv = calloc(1, sizeof(*iv));

	if (!iv || strlen(name) >= sizeof(iv->name)) {
		free(iv);
		return;
	}
	iv->parent = parent;
	strcpy(iv->name, name);
	push(fs, iv);
}

void bfs_inval_inode(struct bfs *fs, fuse_ino_t ino)
{
	struct bfs_inval *iv = calloc(1, sizeof(*iv));

	if (!iv)
		return;
	iv->ino = ino;
	push(fs, iv);
}

void bfs_inval_wait(struct bfs *fs, double timeout_s)
{
	struct timespec deadline;
	uint64_t target;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += (time_t)timeout_s;
	deadline.tv_nsec += (long)((timeout_s - (double)(time_t)timeout_s) * 1e9);
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&fs->q_lock);
	target = fs->q_pushed;
	while (fs->q_sent < target && !fs->stop)
		if (pthread_cond_timedwait(&fs->q_done_cond, &fs->q_lock, &deadline) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&fs->q_lock);
}

void bfs_rename_begin(struct bfs *fs)
{
	pthread_mutex_lock(&fs->q_lock);
	fs->renames++;
	pthread_mutex_unlock(&fs->q_lock);
}

void bfs_rename_end(struct bfs *fs)
{
	pthread_mutex_lock(&fs->q_lock);
	if (--fs->renames == 0 && fs->q_held) {
		/* Sent first, in the order they came. */
		struct bfs_inval *last = fs->q_held;

		while (last->next)
			last = last->next;
		last->next = fs->q_head;
		if (!fs->q_head)
			fs->q_tail = last;
		fs->q_head = fs->q_held;
		fs->q_held = NULL;
		pthread_cond_signal(&fs->q_cond);
	}
	pthread_mutex_unlock(&fs->q_lock);
}

/* Whether a rename being answered holds the kernel's lock of folder dir; q_lock held. */
static bool folder_renaming(struct bfs *fs, fuse_ino_t dir)
{
	return fs->renames > 0 &&
	       (dir == BFS_INO_ROOT || dir == BFS_INO_RESTORE || bfs_ino_is_backup_dir(dir));
}

static void *notify_main(void *arg)
{
	struct bfs *fs = arg;

	pthread_mutex_lock(&fs->q_lock);
	while (!fs->stop) {
		struct bfs_inval *iv = fs->q_head;

		if (!iv) {
			pthread_cond_wait(&fs->q_cond, &fs->q_lock);
			continue;
		}
		fs->q_head = iv->next;
		if (!fs->q_head)
			fs->q_tail = NULL;
		if (iv->parent && folder_renaming(fs, iv->parent)) {
			/* Held back (bfs_rename_end queues it again); waiters need not wait. */
			struct bfs_inval **end = &fs->q_held;

			while (*end)
				end = &(*end)->next;
			iv->next = NULL;
			*end = iv;
			if (!iv->counted) {
				iv->counted = true;
				fs->q_sent++;
				pthread_cond_broadcast(&fs->q_done_cond);
			}
			continue;
		}
		pthread_mutex_unlock(&fs->q_lock);
		bri_testpoint("notify_send");
		/* -ENOENT: the kernel does not know it; nothing to do. */
		if (iv->parent)
			fuse_lowlevel_notify_inval_entry(fs->se, iv->parent, iv->name,
			                                 strlen(iv->name));
		else
			fuse_lowlevel_notify_inval_inode(fs->se, iv->ino, 0, 0);
		pthread_mutex_lock(&fs->q_lock);
		if (!iv->counted) {
			fs->q_sent++;
			pthread_cond_broadcast(&fs->q_done_cond);
		}
		free(iv);
	}
	while (fs->q_head) {
		struct bfs_inval *iv = fs->q_head;

		fs->q_head = iv->next;
		free(iv);
	}
	while (fs->q_held) {
		struct bfs_inval *iv = fs->q_held;

		fs->q_held = iv->next;
		free(iv);
	}
	fs->q_tail = NULL;
	pthread_cond_broadcast(&fs->q_done_cond);
	pthread_mutex_unlock(&fs->q_lock);
	return NULL;
}

void bfs_verify_kick(struct bfs *fs)
{
	pthread_mutex_lock(&fs->q_lock);
	fs->verify_kick = true;
	pthread_cond_signal(&fs->verify_cond);
	pthread_mutex_unlock(&fs->q_lock);
}

/*
 * When the verifier last tried each backup, by catalog id: an open-addressing
 * hash, so that choosing the next backup is one pass over the catalog with a
 * constant-time lookup per entry (a list made it O(n^2) over 10,000
 * unverified backups). Attempts older than the retry interval no longer
 * matter and are dropped whenever the table grows.
 */
struct attempts {
	uint64_t *ids; /* id + 1 per slot; 0: empty */
	time_t *when;  /* last attempt of the slot's id */
	size_t cap;    /* slots, a power of two (0: none allocated) */
	size_t used;   /* slots in use */
};

static size_t attempt_hash(uint64_t id, size_t cap)
{
	return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

/* The slot of id, or of the empty slot where it would go. */
static size_t attempt_find(const struct attempts *a, uint64_t id)
{
	size_t i = attempt_hash(id, a->cap);

	while (a->ids[i] && a->ids[i] != id + 1)
		i = (i + 1) & (a->cap - 1);
	return i;
}

/* When id was last tried, or 0. */
static time_t attempt_last(const struct attempts *a, uint64_t id)
{
	size_t i;

	if (!a->cap)
		return 0;
	i = attempt_find(a, id);
	return a->ids[i] ? a->when[i] : 0;
}

/* Rebuilds the table with room for twice what is still recent (after cutoff). */
static int attempt_rehash(struct attempts *a, time_t cutoff)
{
	size_t live = 0, cap = 64;
	struct attempts n = {0};

	for (size_t i = 0; i < a->cap; i++)
		live += a->ids[i] && a->when[i] > cutoff;
	while (cap < 4 * (live + 1))
		cap *= 2;
	n.ids = calloc(cap, sizeof(*n.ids));
	n.when = calloc(cap, sizeof(*n.when));
	if (!n.ids || !n.when) {
		free(n.ids);
		free(n.when);
		return -ENOMEM;
	}
	n.cap = cap;
	for (size_t i = 0; i < a->cap; i++) {
		if (!a->ids[i] || a->when[i] <= cutoff)
			continue;
		size_t j = attempt_find(&n, a->ids[i] - 1);

		n.ids[j] = a->ids[i];
		n.when[j] = a->when[i];
		n.used++;
	}
	free(a->ids);
	free(a->when);
	*a = n;
	return 0;
}

/* Records that id was tried at now; attempts at or before cutoff may be dropped. */
static void attempt_set(struct attempts *a, uint64_t id, time_t now, time_t cutoff)
{
	size_t i;

	if ((a->used + 1) * 2 > a->cap && attempt_rehash(a, cutoff) < 0)
		return; /* out of memory: the retry interval is not kept this once */
	i = attempt_find(a, id);
	if (!a->ids[i]) {
		a->ids[i] = id + 1;
		a->used++;
	}
	a->when[i] = now;
}

/* How long a backup that could not be verified or recorded waits for another try. */
static time_t retry_interval(const struct bfs *fs)
{
	return fs->scrub_interval > 0 && fs->scrub_interval < 600 ? fs->scrub_interval : 600;
}

/*
 * Picks the next backup to verify, oldest first: never verified ones, then
 * those due for a scrub. Skips backups tried within the retry interval (a
 * store where results cannot be saved must not loop). One pass over the
 * catalog. Copies its name into name.
 */
static bool pick(struct bfs *fs, struct attempts *a, time_t now, char *name, uint64_t *id)
{
	time_t retry = retry_interval(fs);
	const struct bri_entry *scrub = NULL, *found = NULL;

	pthread_rwlock_rdlock(&fs->cat_lock);
	for (size_t i = fs->cat->n; i > 0 && !found; i--) {
		const struct bri_entry *e = fs->cat->entries[i - 1];
		bool unverified = e->verify.status == BRI_VERIFY_UNVERIFIED;

		if (!unverified && (scrub || fs->scrub_interval <= 0 ||
		                    e->verify.checked + fs->scrub_interval > now))
			continue;
		if (attempt_last(a, e->id) > now - retry)
			continue;
		if (unverified)
			found = e;
		else
			scrub = e;
	}
	if (!found)
		found = scrub;
	if (found) {
		strcpy(name, found->name);
		*id = found->id;
	}
	pthread_rwlock_unlock(&fs->cat_lock);
	return found != NULL;
}

static bool stopping(struct bfs *fs)
{
	bool stop;

	pthread_mutex_lock(&fs->q_lock);
	stop = fs->stop;
	pthread_mutex_unlock(&fs->q_lock);
	return stop;
}

bool bfs_stopping(void *arg)
{
	struct bfs *fs = arg;

	/*
	 * libfuse's SIGTERM/SIGINT handler and its loop (at the unmount) set
	 * the session's exit flag at once, and the loop clears it as it
	 * returns (after every request being answered): main then sets
	 * loop_ended, before it stops the threads (fs->stop).
	 */
	return fuse_session_exited(fs->se) || atomic_load(&fs->loop_ended) || stopping(fs);
}

/* linux/ioprio.h's values (glibc has no wrapper). */
#define IOPRIO_CLASS_SHIFT 13
#define IOPRIO_CLASS_IDLE  3
#define IOPRIO_WHO_PROCESS 1
/* Bounds of the pause after each background verification (seconds). */
#define PAUSE_MIN 0.02
#define PAUSE_MAX 60.0

/*
 * Puts the calling thread in the idle I/O class: it gets the disk only when
 * nobody else wants it (honoured by the bfq scheduler, ignored by none and
 * mq-deadline). Per-thread on Linux, inherited by threads started from it.
 */
void bfs_io_idle(const char *who)
{
	pid_t tid = (pid_t)syscall(SYS_gettid);

	if (syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, tid,
	            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT) < 0)
		bri_log(BRI_LOG_WARN, "%s: cannot set idle I/O priority: %s", who, strerror(errno));
}

/* Sleeps seconds, or less when the daemon stops. */
static void pause_for(struct bfs *fs, double seconds)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += (time_t)seconds;
	until.tv_nsec += (long)((seconds - (double)(time_t)seconds) * 1e9);
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&fs->q_lock);
	while (!fs->stop)
		if (pthread_cond_timedwait(&fs->verify_cond, &fs->q_lock, &until) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&fs->q_lock);
}

static void *verify_main(void *arg)
{
	struct bfs *fs = arg;
	struct attempts a = {0};
	char name[BRI_NAME_MAX + 1];
	double rest = 0; /* seconds to pause before the next verification */

	bfs_io_idle("background verifier");
	for (;;) {
		struct bri_op_ctx ctx = bri_op_ctx_self("mount");
		struct bri_verify_result res = {0};
		struct bri_err err = {0};
		time_t now = time(NULL);
		double took;
		uint64_t id;
		int rc;

		if (rest > 0) {
			pause_for(fs, rest);
			rest = 0;
			now = time(NULL);
		}
		if (bfs_stopping(fs))
			break;
		bri_testpoint("background_verify");
		if (!pick(fs, &a, now, name, &id)) {
			struct timespec deadline;

			clock_gettime(CLOCK_REALTIME, &deadline);
			deadline.tv_sec += 30;
			pthread_mutex_lock(&fs->q_lock);
			while (!fs->stop && !fs->verify_kick)
				if (pthread_cond_timedwait(&fs->verify_cond, &fs->q_lock,
				                           &deadline) == ETIMEDOUT)
					break;
			fs->verify_kick = false;
			pthread_mutex_unlock(&fs->q_lock);
			continue;
		}
		attempt_set(&a, id, now, now - retry_interval(fs));
		/*
		 * Under op_lock: a restore or ctl/verify of the same backup must not
		 * be overwritten by a result computed from the file it replaced.
		 */
		/* Requests go first: the verifier never starves them of op_lock. */
		while (atomic_load(&fs->op_waiters) > 0 && !bfs_stopping(fs))
			usleep(10000);
		pthread_mutex_lock(&fs->op_lock);
		if (bfs_stopping(fs)) {
			/* Stopped while a request held op_lock: nothing begins now. */
			pthread_mutex_unlock(&fs->op_lock);
			break;
		}
		took = bri_now_mono();
		bfs_progress_begin(&fs->progress, &ctx, "verify", name, "background");
		/* SIGTERM must not wait for a whole verification: unmount comes after. */
		ctx.stop = bfs_stopping;
		ctx.stop_arg = fs;
		rc = bri_verify_backup(fs->store, name, &ctx, &res, &err);
		bfs_progress_end_verify(&fs->progress, rc, &res, &err);
		took = bri_now_mono() - took;
		if (rc == 0) {
			pthread_rwlock_wrlock(&fs->cat_lock);
			struct bri_entry *e = bri_catalog_find(fs->cat, name);
			/* Only for the file checked: a newer one of that name is not. */
			if (e && bri_verify_matches(&res, &e->db_st))
				e->verify = res;
			pthread_rwlock_unlock(&fs->cat_lock);
		}
		pthread_mutex_unlock(&fs->op_lock);
		/* Throttle: rest as long as the work took, so the application gets the disk. */
		rest = took < PAUSE_MIN ? PAUSE_MIN : took > PAUSE_MAX ? PAUSE_MAX : took;
		if (rc == -ECANCELED)
			break; /* the daemon stops: nothing was recorded */
		if (rc < 0) {
			/* Nothing was recorded; it is tried again after the retry interval. */
			if (rc != -ENOENT)
				bri_log(
				    BRI_LOG_WARN,
				    "background verification of %s postponed (retried in %lld s): "
				    "%s",
				    name, (long long)retry_interval(fs), err.msg);
			continue;
		}
		/*
		 * A failed verdict was kept: on_failure hears it (a postponed one is
		 * no verdict). A good one is no event: on_success would ping once per
		 * backup at every scrub; ctl/health and ctl/metrics show it.
		 */
		if (res.status != BRI_VERIFY_OK) {
			bri_log(BRI_LOG_ERR, "background verification of %s failed: %s", name,
			        res.reason);
			bfs_hook_async(fs, "verify", name, -EIO, res.reason);
		}
		bfs_inval_verify(fs, id);
	}
	free(a.ids);
	free(a.when);
	return NULL;
}

int bfs_workers_start(struct bfs *fs)
{
	int rc;

	rc = pthread_create(&fs->notify_thread, NULL, notify_main, fs);
	if (rc)
		return -rc;
	rc = pthread_create(&fs->verify_thread, NULL, verify_main, fs);
	if (rc == 0) {
		pthread_setname_np(fs->notify_thread, "bri-notify");
		pthread_setname_np(fs->verify_thread, "bri-verify");
	}
	if (rc) {
		pthread_mutex_lock(&fs->q_lock);
		fs->stop = true;
		pthread_cond_broadcast(&fs->q_cond);
		pthread_mutex_unlock(&fs->q_lock);
		pthread_join(fs->notify_thread, NULL);
		return -rc;
	}
	fs->threads_started = true;
	return 0;
}

void bfs_workers_stop(struct bfs *fs)
{
	if (!fs->threads_started)
		return;
	pthread_mutex_lock(&fs->q_lock);
	fs->stop = true;
	pthread_cond_broadcast(&fs->q_cond);
	pthread_cond_broadcast(&fs->verify_cond);
	pthread_cond_broadcast(&fs->q_done_cond);
	pthread_mutex_unlock(&fs->q_lock);
	bri_testpoint("workers_stopping"); /* fs->stop is set */
	pthread_join(fs->notify_thread, NULL);
	pthread_join(fs->verify_thread, NULL);
	fs->threads_started = false;
}
