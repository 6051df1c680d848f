/*
 * The mount's backup schedule (-o schedule=daily@02:00, hourly, every=6h):
 * one thread that sleeps until the next run is due, then, holding op_lock
 * as ctl/create does, takes an automatic backup (kind auto) and a cleanup
 * by the mount's retention rules; the core audits both, the log says what
 * happened, and the catalog rescan queues the cache invalidations for the
 * notify worker. "Last run" is the newest backup of kind auto in the
 * catalog, whoever made it (cron, bri-backup, an empty line written to
 * ctl/create), so a run missed while the machine was off runs once at
 * start-up and a backup made elsewhere pushes the next run back. The time
 * arithmetic is the core's (bri/schedule.h); ctl/schedule shows the result.
 * Nothing here answers FUSE requests.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bri/cleanup.h"
#include "bri/create.h"
#include "bri/log.h"
#include "bri/testpoint.h"
#include "fs.h"

/* Seconds before a failed run is tried again, at most (every=N: N when less). */
#define FAIL_RETRY_MAX 300
/* The thread looks at the store at least this often (seconds). */
#define WAKE_MAX 300

int bfs_schedule_setup(struct bfs *fs, const char *spec, struct bri_err *err)
{
	struct bfs_sched *s = &fs->sched;

	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL); /* CLOCK_REALTIME: runs are wall-clock times */
	return bri_schedule_parse(spec, &s->sc, err);
}

/*
 * The newest backup of kind auto dated at or before now: its time (0: none)
 * and name (may be NULL). One dated after now (the clock went back, a store
 * restored from elsewhere) is not the last run, or the schedule would stop
 * until that date: its name goes to future (may be NULL), "" when none.
 */
static time_t last_auto(struct bfs *fs, time_t now, char *name, size_t len, char *future,
                        size_t flen)
{
	time_t t = 0;

	if (name)
		name[0] = '\0';
	if (future)
		future[0] = '\0';
	pthread_rwlock_rdlock(&fs->cat_lock);
	for (size_t i = 0; i < fs->cat->n; i++) {
		const struct bri_entry *e = fs->cat->entries[i];

		if (e->kind != BRI_KIND_AUTO)
			continue;
		if (e->time > now) {
			if (future && !future[0])
				snprintf(future, flen, "%s", e->name);
			continue;
		}
		t = e->time;
		if (name)
			snprintf(name, len, "%s", e->name);
		break;
	}
	pthread_rwlock_unlock(&fs->cat_lock);
	return t;
}

static time_t fail_retry(const struct bri_schedule *sc)
{
	if (sc->kind == BRI_SCHEDULE_EVERY && sc->interval_s < FAIL_RETRY_MAX)
		return sc->interval_s;
	return FAIL_RETRY_MAX;
}

/*
 * When the next run is due (now when it is due already), given the newest
 * auto backup's time last; call with s->lock held. A backup this thread
 * took counts even if a cleanup removed it since (keep_min=0).
 */
static time_t next_run(const struct bfs_sched *s, time_t last, time_t now)
{
	time_t next;

	if (s->last_taken > last && s->last_taken <= now)
		last = s->last_taken;
	if (bri_schedule_due(&s->sc, last, now))
		next = now;
	else
		next = bri_schedule_next(&s->sc, last < now ? last : now);
	/* A failed run (the database missing, the disk full) is retried later, not in a loop. */
	if (s->last_attempt && s->last_result < 0 && next < s->last_attempt + fail_retry(&s->sc))
		next = s->last_attempt + fail_retry(&s->sc);
	return next;
}

/* One scheduled run: an automatic backup, then a cleanup. */
static void run_once(struct bfs *fs)
{
	struct bfs_sched *s = &fs->sched;
	struct bri_create_opts opts = {.kind = BRI_KIND_AUTO,
	                               .busy_timeout_ms = fs->busy_timeout_ms};
	struct bri_op_ctx ctx = bri_op_ctx_self("mount");
	struct bri_cleanup_item *items = NULL;
	struct bri_err err = {0}, cerr = {0};
	time_t started = time(NULL), taken = 0;
	const struct bri_entry *e;
	char *made = NULL, described[256];
	int rc, removed = 0;
	size_t n = 0;

	/*
	 * Not bfs_op_lock: the scheduler is not a request holding one of
	 * libfuse's threads, so BFS_OP_WAITERS_MAX does not apply to it.
	 */
	pthread_mutex_lock(&fs->op_lock);
	if (bfs_stopping(fs)) {
		/* SIGTERM came while a request held op_lock: no backup begins now. */
		pthread_mutex_unlock(&fs->op_lock);
		return;
	}
	bfs_progress_begin(&fs->progress, &ctx, "create", NULL, "schedule");
	opts.now = started;
	rc = bri_create(fs->store, &opts, &ctx, &made, &err);
	bfs_progress_end(&fs->progress, made, rc, err.msg);
	ctx.progress = NULL;
	bfs_hook_async(fs, "create", made, rc,
	               rc < 0 ? (err.msg[0] ? err.msg : strerror(-rc)) : NULL);
	if (rc == 0) {
		bri_log(BRI_LOG_INFO, "schedule: created backup %s", made);
		bfs_offsite_kick(fs);
		removed =
		    bri_cleanup(fs->store, &fs->rules, time(NULL), false, &ctx, &items, &n, &cerr);
		free(items);
		bfs_hook_async(fs, "cleanup", "", removed < 0 ? removed : 0,
		               removed < 0 ? (cerr.msg[0] ? cerr.msg : strerror(-removed)) : NULL);
		if (removed < 0)
			bri_log(BRI_LOG_ERR, "schedule: cleanup after %s failed: %s", made,
			        cerr.msg[0] ? cerr.msg : strerror(-removed));
		else
			bri_log(BRI_LOG_INFO, "schedule: cleanup removed %d backup(s) (%s)",
			        removed,
			        bri_retention_describe(&fs->rules, described, sizeof(described)));
	} else {
		bri_log(BRI_LOG_ERR, "schedule: automatic backup failed: %s",
		        err.msg[0] ? err.msg : strerror(-rc));
	}
	/* Show the result at once; the rescan queues the invalidations. */
	bfs_refresh(fs, true);
	if (made) {
		pthread_rwlock_rdlock(&fs->cat_lock);
		e = bri_catalog_find(fs->cat, made);
		if (e)
			taken = e->time;
		pthread_rwlock_unlock(&fs->cat_lock);
	}
	pthread_mutex_unlock(&fs->op_lock);

	pthread_mutex_lock(&s->lock);
	s->running = false;
	s->last_result = rc;
	if (rc == 0) {
		s->last_taken = taken ? taken : started;
		snprintf(s->last_name, sizeof(s->last_name), "%s", made);
		s->last_error[0] = '\0';
		s->last_removed = removed < 0 ? -1 : removed;
	} else {
		snprintf(s->last_error, sizeof(s->last_error), "%s",
		         err.msg[0] ? err.msg : strerror(-rc));
		for (char *c = s->last_error; *c; c++)
			if ((unsigned char)*c < 0x20 || *c == 0x7f)
				*c = ' '; /* one line in ctl/schedule */
	}
	pthread_mutex_unlock(&s->lock);
	free(made);
}

static void *sched_main(void *arg)
{
	struct bfs *fs = arg;
	struct bfs_sched *s = &fs->sched;

	char future[BRI_NAME_MAX + 1], warned[BRI_NAME_MAX + 1] = "";

	for (;;) {
		time_t last, now, next;

		bfs_refresh(fs, false); /* a backup made by another process counts */
		now = time(NULL);
		last = last_auto(fs, now, NULL, 0, future, sizeof(future));
		if (future[0] && strcmp(future, warned) != 0)
			bri_log(BRI_LOG_WARN,
			        "schedule: backup %s is dated in the future (clock went back, or a "
			        "restored store); the schedule runs from now, not from its date",
			        future);
		snprintf(warned, sizeof(warned), "%s", future);
		pthread_mutex_lock(&s->lock);
		next = next_run(s, last, now);
		if (!s->stop && next > now) {
			struct timespec until = {.tv_sec =
			                             next - now > WAKE_MAX ? now + WAKE_MAX : next};

			bri_testpoint("schedule-waits"); /* tests: nothing is due now */
			/* Woken early by stop; either way, look again. */
			pthread_cond_timedwait(&s->cond, &s->lock, &until);
			pthread_mutex_unlock(&s->lock);
			continue;
		}
		if (s->stop || bfs_stopping(fs)) {
			pthread_mutex_unlock(&s->lock);
			break;
		}
		s->running = true;
		s->last_attempt = now;
		pthread_mutex_unlock(&s->lock);
		run_once(fs);
	}
	return NULL;
}

int bfs_schedule_start(struct bfs *fs)
{
	struct bfs_sched *s = &fs->sched;
	char desc[64];
	int rc;

	if (s->sc.kind == BRI_SCHEDULE_NONE)
		return 0;
	rc = pthread_create(&s->thread, NULL, sched_main, fs);
	if (rc)
		return -rc;
	pthread_setname_np(s->thread, "bri-schedule");
	s->started = true;
	bri_schedule_describe(&s->sc, desc, sizeof(desc));
	bri_log(BRI_LOG_INFO, "schedule: automatic backups %s, each followed by a cleanup", desc);
	return 0;
}

void bfs_schedule_stop(struct bfs *fs)
{
	struct bfs_sched *s = &fs->sched;

	if (!s->started)
		return;
	pthread_mutex_lock(&s->lock);
	s->stop = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL); /* after a backup being taken */
	s->started = false;
}

int bfs_schedule_render(struct bfs *fs, char **out, size_t *len)
{
	struct bfs_sched *s = &fs->sched;
	char desc[64], when[40], described[256], last_name[BRI_NAME_MAX + 1],
	    future[BRI_NAME_MAX + 1];
	const size_t cap = 2048;
	char *buf = malloc(cap);
	time_t last, now, next;
	size_t pos = 0;

	if (!buf)
		return -ENOMEM;
	buf[0] = '\0';
	now = time(NULL);
	last = last_auto(fs, now, last_name, sizeof(last_name), future, sizeof(future));
	bri_schedule_describe(&s->sc, desc, sizeof(desc));
	bfs_appendf(buf, cap, &pos, "schedule: %s\n", desc);
	pthread_mutex_lock(&s->lock);
	if (s->sc.kind == BRI_SCHEDULE_NONE) {
		bfs_appendf(buf, cap, &pos,
		            "next_run: none (mount with -o schedule=daily@02:00, hourly "
		            "or every=6h)\n");
	} else if (s->running) {
		bfs_appendf(buf, cap, &pos, "next_run: now (running)\n");
	} else {
		next = next_run(s, last, now);
		bri_time_local(next, when, sizeof(when));
		bfs_appendf(buf, cap, &pos, "next_run: %s\n", when);
		bfs_appendf(buf, cap, &pos, "next_run_in_s: %lld\n",
		            (long long)(next > now ? next - now : 0));
	}
	if (last) {
		bri_time_local(last, when, sizeof(when));
		bfs_appendf(buf, cap, &pos, "last_run: %s (%s)\n", when, last_name);
	} else {
		bfs_appendf(buf, cap, &pos, "last_run: never (no backup of kind auto)\n");
	}
	if (future[0])
		bfs_appendf(
		    buf, cap, &pos,
		    "warning: backup %s is dated in the future; not counted as the last run\n",
		    future);
	if (s->sc.kind != BRI_SCHEDULE_NONE)
		bfs_appendf(buf, cap, &pos, "cleanup: after each run (%s)\n",
		            bri_retention_describe(&fs->rules, described, sizeof(described)));
	if (s->last_attempt && s->last_result < 0) {
		bfs_appendf(buf, cap, &pos, "last_scheduled: failed: %s\n", s->last_error);
	} else if (s->last_attempt && s->last_name[0]) {
		bfs_appendf(buf, cap, &pos, "last_scheduled: ok: %s", s->last_name);
		if (s->last_removed < 0)
			bfs_appendf(buf, cap, &pos, ", cleanup failed\n");
		else
			bfs_appendf(buf, cap, &pos, ", cleanup removed %d\n", s->last_removed);
	}
	pthread_mutex_unlock(&s->lock);
	bfs_rehearsals_render(fs, buf, cap, &pos);
	*out = buf;
	*len = pos;
	return 0;
}
