/*
 * The mount's scheduled restore rehearsals (-o rehearse=daily, weekly,
 * monthly, every=N): one thread that sleeps until a rehearsal is due, then,
 * holding op_lock as ctl/rehearse does, rehearses the newest good backup
 * (bri_rehearsal_pick) with the mount's checks (-o checks=), runs the hook
 * and rescans the catalog so NAME/rehearsal shows the outcome at once (a new
 * outcome is a new inode: the rescan drops the kernel's entry). The
 * core keeps the outcome in the store (bri/rehearsal.h); "last run" is the
 * newest rehearsal the store knows of, whoever ran it (bri-backup rehearse,
 * ctl/rehearse, this thread, another mount), so a remount does not rehearse
 * again and a missed one runs at start-up. The time arithmetic is the
 * core's (bri/schedule.h); ctl/schedule shows the result. Nothing here
 * answers FUSE requests.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bri/log.h"
#include "bri/rehearse.h"
#include "bri/testpoint.h"
#include "fs.h"

/* The thread looks at the store at least this often (seconds). */
#define WAKE_MAX 300

int bfs_rehearsals_setup(struct bfs *fs, const char *spec, struct bri_err *err)
{
	struct bfs_rehearsals *r = &fs->rehearsals;
	long period;
	int rc;

	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL); /* CLOCK_REALTIME: runs are wall-clock times */
	rc = bri_schedule_parse(spec, &r->sc, err);
	if (rc < 0)
		return rc;
	r->configured = r->sc.kind != BRI_SCHEDULE_NONE || fs->checks;
	/* health: a failed newest rehearsal always; a stale one past two periods. */
	fs->health.rehearse_checked = r->configured;
	period = bri_schedule_period(&r->sc);
	if (period > 0)
		fs->health.rehearse_max_age_hours = 2.0 * (double)period / 3600.0;
	return 0;
}

/* The newest rehearsal the catalog knows of: its time (0: none). */
static time_t last_rehearsal(struct bfs *fs)
{
	const struct bri_entry *e;
	time_t t;

	pthread_rwlock_rdlock(&fs->cat_lock);
	e = bri_rehearsal_newest(fs->cat);
	t = e ? e->rehearsal.time : 0;
	pthread_rwlock_unlock(&fs->cat_lock);
	return t;
}

/*
 * When the next rehearsal is due (now when it is due already), given the
 * store's newest one at last; call with r->lock held. One this thread ran
 * counts even when its outcome could not be kept (the store was full).
 */
static time_t next_run(const struct bfs_rehearsals *r, time_t last, time_t now)
{
	if (r->last_attempt > last && r->last_attempt <= now)
		last = r->last_attempt;
	if (bri_schedule_due(&r->sc, last, now))
		return now;
	return bri_schedule_next(&r->sc, last < now ? last : now);
}

/* One scheduled rehearsal of the newest good backup; false when there is none. */
static bool run_once(struct bfs *fs)
{
	struct bfs_rehearsals *r = &fs->rehearsals;
	struct bri_op_ctx ctx = bri_op_ctx_self("mount");
	struct bri_rehearse_report rep;
	struct bri_err err = {0};
	const struct bri_entry *e;
	char name[BRI_NAME_MAX + 1] = "";
	int rc;

	/* Not bfs_op_lock: no request's thread waits here (BFS_OP_WAITERS_MAX). */
	pthread_mutex_lock(&fs->op_lock);
	if (bfs_stopping(fs)) {
		/* SIGTERM came while a request held op_lock: no rehearsal begins now. */
		pthread_mutex_unlock(&fs->op_lock);
		return true;
	}
	bfs_refresh(fs, true);
	pthread_rwlock_rdlock(&fs->cat_lock);
	e = bri_rehearsal_pick(fs->cat);
	if (e)
		snprintf(name, sizeof(name), "%s", e->name);
	pthread_rwlock_unlock(&fs->cat_lock);
	if (!name[0]) {
		pthread_mutex_unlock(&fs->op_lock);
		return false;
	}
	bri_testpoint("rehearse-starts"); /* tests: a rehearsal is due and about to run */
	/* SIGTERM stops it within its verification: it keeps no outcome. */
	ctx.stop = bfs_stopping;
	ctx.stop_arg = fs;
	bfs_progress_begin(&fs->progress, &ctx, "rehearse", name, "schedule");
	rc = bri_rehearse(fs->store, name, fs->checks, NULL, &ctx, &rep, &err);
	bfs_progress_end(&fs->progress, name, rc, err.msg);
	bfs_refresh(fs, true); /* NAME/rehearsal and NAME/verify show the outcome */
	pthread_mutex_unlock(&fs->op_lock);
	bfs_inval_wait(fs, BFS_INVAL_WAIT_S); /* their cached entries are dropped now */
	if (rc == -ECANCELED) {
		bri_log(BRI_LOG_INFO, "schedule: rehearsal of %s stopped: %s", name, err.msg);
		bri_rehearse_report_free(&rep);
		return true;
	}
	bfs_hook_async(fs, "rehearse", name, rc, rc < 0 ? err.msg : NULL);
	if (rc == 0)
		bri_log(BRI_LOG_INFO,
		        "schedule: rehearsal of %s ok (verify %.2f s, restore %.2f s, %zu checks)",
		        name, rep.verify_s, rep.restore_s, rep.nchecks);
	else
		bri_log(BRI_LOG_ERR, "schedule: rehearsal of %s failed: %s", name,
		        err.msg[0] ? err.msg : strerror(-rc));
	bri_rehearse_report_free(&rep);

	pthread_mutex_lock(&r->lock);
	r->last_result = rc;
	snprintf(r->last_name, sizeof(r->last_name), "%s", name);
	snprintf(r->last_error, sizeof(r->last_error), "%s",
	         rc < 0 ? (err.msg[0] ? err.msg : strerror(-rc)) : "");
	for (char *c = r->last_error; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = ' '; /* one line in ctl/schedule */
	pthread_mutex_unlock(&r->lock);
	return true;
}

static void *rehearsals_main(void *arg)
{
	struct bfs *fs = arg;
	struct bfs_rehearsals *r = &fs->rehearsals;
	bool warned = false;

	bfs_io_idle("scheduled rehearsals"); /* a whole copy: the application goes first */
	for (;;) {
		time_t last, now, next;

		bfs_refresh(fs, false); /* a rehearsal by another process counts */
		now = time(NULL);
		last = last_rehearsal(fs);
		pthread_mutex_lock(&r->lock);
		next = r->waiting_for_backup ? now + WAKE_MAX : next_run(r, last, now);
		r->waiting_for_backup = false;
		if (!r->stop && next > now) {
			struct timespec until = {.tv_sec =
			                             next - now > WAKE_MAX ? now + WAKE_MAX : next};

			bri_testpoint("rehearse-waits"); /* tests: nothing is due now */
			pthread_cond_timedwait(&r->cond, &r->lock, &until);
			pthread_mutex_unlock(&r->lock);
			continue;
		}
		/* The daemon stopping (SIGTERM): no rehearsal begins, even before r->stop. */
		if (r->stop || bfs_stopping(fs)) {
			pthread_mutex_unlock(&r->lock);
			break;
		}
		r->running = true;
		pthread_mutex_unlock(&r->lock);
		bool ran = run_once(fs);

		pthread_mutex_lock(&r->lock);
		r->running = false;
		if (ran) {
			r->last_attempt = now;
			warned = false;
		} else {
			/* Nothing to rehearse yet: look again later, not counted as a run. */
			r->waiting_for_backup = true;
		}
		pthread_mutex_unlock(&r->lock);
		if (!ran && !warned) {
			bri_log(BRI_LOG_WARN, "schedule: a rehearsal is due but the store has no "
			                      "good backup to rehearse yet");
			warned = true;
		}
	}
	return NULL;
}

int bfs_rehearsals_start(struct bfs *fs)
{
	struct bfs_rehearsals *r = &fs->rehearsals;
	char desc[64];
	int rc;

	if (r->sc.kind == BRI_SCHEDULE_NONE)
		return 0;
	rc = pthread_create(&r->thread, NULL, rehearsals_main, fs);
	if (rc)
		return -rc;
	pthread_setname_np(r->thread, "bri-rehearse");
	r->started = true;
	bri_schedule_describe(&r->sc, desc, sizeof(desc));
	bri_log(BRI_LOG_INFO, "schedule: restore rehearsals %s, with %s", desc,
	        fs->checks ? fs->checks : "no checks (-o checks=FILE adds them)");
	return 0;
}

void bfs_rehearsals_stop(struct bfs *fs)
{
	struct bfs_rehearsals *r = &fs->rehearsals;

	if (!r->started)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->thread, NULL); /* after a rehearsal running */
	r->started = false;
}

void bfs_rehearsals_render(struct bfs *fs, char *buf, size_t cap, size_t *pos)
{
	struct bfs_rehearsals *r = &fs->rehearsals;
	const struct bri_entry *e;
	char line[BRI_REHEARSAL_REASON_MAX + 128] = "", name[BRI_NAME_MAX + 1] = "";
	char desc[64], when[40];
	time_t now = time(NULL), last = 0, next;

	pthread_rwlock_rdlock(&fs->cat_lock);
	e = bri_rehearsal_newest(fs->cat);
	if (e) {
		last = e->rehearsal.time;
		snprintf(name, sizeof(name), "%s", e->name);
		bri_rehearsal_describe(&e->rehearsal, line, sizeof(line));
	}
	pthread_rwlock_unlock(&fs->cat_lock);
	bri_schedule_describe(&r->sc, desc, sizeof(desc));
	bfs_appendf(buf, cap, pos, "rehearse: %s\n", desc);
	pthread_mutex_lock(&r->lock);
	if (r->sc.kind == BRI_SCHEDULE_NONE) {
		bfs_appendf(buf, cap, pos,
		            "rehearse_next: none (mount with -o rehearse=daily, weekly, monthly "
		            "or every=7d)\n");
	} else if (r->running) {
		bfs_appendf(buf, cap, pos, "rehearse_next: now (running)\n");
	} else {
		next = next_run(r, last, now);
		bri_time_local(next, when, sizeof(when));
		bfs_appendf(buf, cap, pos, "rehearse_next: %s\n", when);
		bfs_appendf(buf, cap, pos, "rehearse_next_in_s: %lld\n",
		            (long long)(next > now ? next - now : 0));
	}
	pthread_mutex_unlock(&r->lock);
	if (e)
		bfs_appendf(buf, cap, pos, "rehearse_last: %s: %s", name, line);
	else
		bfs_appendf(buf, cap, pos, "rehearse_last: never\n");
}
