/*
 * The daemon's two worker threads. The notify worker sends the kernel cache
 * invalidations that handlers and the catalog refresh queue: libfuse's
 * fuse_lowlevel_notify_inval_* must never run inside a related request
 * handler or while holding a lock a handler needs, so they are sent only
 * from here, holding nothing. The verifier verifies every backup that was
 * never verified and re-verifies ("scrub") those whose last verification is
 * older than scrub_interval, one at a time, in the background, holding the
 * daemon's op_lock for each so that it never races a restore or a request.
 * It is throttled so that it never starves the live application: its
 * thread (and the hashing thread the core starts from it, which inherits
 * this) does I/O at idle priority, and it pauses between backups as long as
 * the last verification took (so at most half the time is spent
 * verifying). Its CPU priority is left alone: it holds op_lock while it
 * verifies, and a request waiting for that lock must not wait for a
 * starved thread longer than the idle I/O class already makes it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bri/log.h"
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
		pthread_mutex_unlock(&fs->q_lock);
		/* -ENOENT: the kernel does not know it; nothing to do. */
		if (iv->parent)
			fuse_lowlevel_notify_inval_entry(fs->se, iv->parent, iv->name,
			                                 strlen(iv->name));
		else
			fuse_lowlevel_notify_inval_inode(fs->se, iv->ino, 0, 0);
		free(iv);
		pthread_mutex_lock(&fs->q_lock);
		fs->q_sent++;
		pthread_cond_broadcast(&fs->q_done_cond);
	}
	while (fs->q_head) {
		struct bfs_inval *iv = fs->q_head;

		fs->q_head = iv->next;
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

/* When the verifier last tried each backup (by catalog id). */
struct attempts {
	uint64_t *ids; /* catalog ids */
	time_t *when;  /* last attempt */
	size_t n, cap; /* used, allocated */
};

static time_t *attempt_slot(struct attempts *a, uint64_t id, bool add)
{
	for (size_t i = 0; i < a->n; i++)
		if (a->ids[i] == id)
			return &a->when[i];
	if (!add)
		return NULL;
	if (a->n == a->cap) {
		size_t ncap = a->cap ? a->cap * 2 : 64;
		uint64_t *ni = realloc(a->ids, ncap * sizeof(*ni));

		if (!ni)
			return NULL;
		a->ids = ni;
		time_t *nw = realloc(a->when, ncap * sizeof(*nw));
		if (!nw)
			return NULL;
		a->when = nw;
		a->cap = ncap;
	}
	a->ids[a->n] = id;
	a->when[a->n] = 0;
	return &a->when[a->n++];
}

/*
 * Picks the next backup to verify, oldest first: never verified ones, then
 * those due for a scrub. Skips backups tried within retry seconds (a store
 * where results cannot be saved must not loop). Copies its name into name.
 */
static bool pick(struct bfs *fs, struct attempts *a, time_t now, char *name, uint64_t *id)
{
	time_t retry =
	    fs->scrub_interval > 0 && fs->scrub_interval < 600 ? fs->scrub_interval : 600;
	bool found = false;

	pthread_rwlock_rdlock(&fs->cat_lock);
	for (int pass = 0; pass < 2 && !found; pass++) {
		for (size_t i = fs->cat->n; i > 0 && !found; i--) {
			const struct bri_entry *e = fs->cat->entries[i - 1];
			time_t *last;

			if (pass == 0 && e->verify.status != BRI_VERIFY_UNVERIFIED)
				continue;
			if (pass == 1 &&
			    (fs->scrub_interval <= 0 || e->verify.status == BRI_VERIFY_UNVERIFIED ||
			     e->verify.checked + fs->scrub_interval > now))
				continue;
			last = attempt_slot(a, e->id, false);
			if (last && *last > now - retry)
				continue;
			strcpy(name, e->name);
			*id = e->id;
			found = true;
		}
	}
	pthread_rwlock_unlock(&fs->cat_lock);
	return found;
}

static bool stopping(struct bfs *fs)
{
	bool stop;

	pthread_mutex_lock(&fs->q_lock);
	stop = fs->stop;
	pthread_mutex_unlock(&fs->q_lock);
	return stop;
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
static void become_background(void)
{
	pid_t tid = (pid_t)syscall(SYS_gettid);

	if (syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, tid,
	            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT) < 0)
		bri_log(BRI_LOG_WARN, "background verifier: cannot set idle I/O priority: %s",
		        strerror(errno));
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

	become_background();
	for (;;) {
		struct bri_op_ctx ctx = bri_op_ctx_self("mount");
		struct bri_verify_result res = {0};
		struct bri_err err = {0};
		time_t now = time(NULL);
		double took;
		time_t *slot;
		uint64_t id;
		int rc;

		if (rest > 0) {
			pause_for(fs, rest);
			rest = 0;
			now = time(NULL);
		}
		if (stopping(fs))
			break;
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
		slot = attempt_slot(&a, id, true);
		if (slot)
			*slot = now;
		/*
		 * Under op_lock: a restore or ctl/verify of the same backup must not
		 * be overwritten by a result computed from the file it replaced.
		 */
		/* Requests go first: the verifier never starves them of op_lock. */
		while (atomic_load(&fs->op_waiters) > 0 && !stopping(fs))
			usleep(10000);
		pthread_mutex_lock(&fs->op_lock);
		took = bri_now_mono();
		bfs_progress_begin(&fs->progress, &ctx, "verify", name, "background");
		rc = bri_verify_backup(fs->store, name, &ctx, &res, &err);
		bfs_progress_end_verify(&fs->progress, rc, &res, &err);
		took = bri_now_mono() - took;
		if (rc == 0) {
			pthread_rwlock_wrlock(&fs->cat_lock);
			struct bri_entry *e = bri_catalog_find(fs->cat, name);
			if (e)
				e->verify = res;
			pthread_rwlock_unlock(&fs->cat_lock);
		}
		pthread_mutex_unlock(&fs->op_lock);
		/* Throttle: rest as long as the work took, so the application gets the disk. */
		rest = took < PAUSE_MIN ? PAUSE_MIN : took > PAUSE_MAX ? PAUSE_MAX : took;
		if (rc < 0) {
			if (rc != -ENOENT)
				bri_log(BRI_LOG_WARN, "background verification of %s: %s", name,
				        err.msg);
			continue;
		}
		if (res.status != BRI_VERIFY_OK)
			bri_log(BRI_LOG_ERR, "background verification of %s failed: %s", name,
			        res.reason);
		bfs_inval_inode(fs, bfs_ino(id, BFS_B_VERIFY));
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
	pthread_join(fs->notify_thread, NULL);
	pthread_join(fs->verify_thread, NULL);
	fs->threads_started = false;
}
