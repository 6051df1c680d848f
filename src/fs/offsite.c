/*
 * The mount's offsite copy (SPEC.md section 6, -o offsite=s3://BUCKET/PREFIX):
 * one background thread pushes every backup the remote lacks
 * (bri_offsite_push) at start, after each create (bfs_offsite_kick), and
 * again after a failure with backoff (1 s doubling to offsite_retry_max). A
 * create never waits for it and never fails because of it. What each
 * backup folder's `offsite` file says comes from the push states the core
 * keeps in the store (bri_offsite_state_read); what ctl/health, ctl/metrics
 * and ctl/report.html say of the lag, from the core's offsite watch
 * (bri_offsite_watch_read: the same lines as `bri-backup health`). A push
 * the core refuses because the remote holds another form of the store
 * (BRI_OFFSITE_EMISMATCH) is retried like any failure, but ctl/health says
 * so at once. Not here: S3, credentials (the core's, from the daemon's
 * environment and ~/.aws).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bri/log.h"
#include "bri/offsite.h"
#include "bri/offsite_watch.h"
#include "bri/testpoint.h"
#include "fs.h"

#define RETRY_FIRST_S     1.0
#define RETRY_MAX_DEFAULT 300
#define IDLE_RECHECK_S    3600.0 /* with nothing to do, look again this often */

struct bfs_offsite {
	struct bri_offsite_opts opts; /* where (strings owned here) */
	char url[600];                /* "s3://BUCKET/PREFIX", for states and messages */
	double retry_max_s;           /* longest wait between attempts after failures */
	double lag_warn_s;            /* ctl/health warns when the remote lags more */
	pthread_t thread;             /* the pusher */
	bool started;                 /* the thread runs (main thread only) */
	pthread_mutex_t lock;         /* guards the fields below */
	pthread_cond_t cond;          /* CLOCK_MONOTONIC; signalled on kick and stop */
	bool kick;                    /* a backup was made: push now */
	bool stop;                    /* the thread must exit */
	bool busy;                    /* a push runs now */
	volatile int cancel;          /* set by bfs_offsite_stop: abort the transfer */
	char last_error[512];         /* why the last push failed, "" after a success */
	bool refused; /* the last push was refused: the remote is another form of the store */
};

static char *dup_opt(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

int bfs_offsite_setup(struct bfs *fs, const char *remote, const char *endpoint,
                      const char *addressing, int lock_days, long retry_max_s, long lag_warn_s,
                      struct bri_err *err)
{
	struct bfs_offsite *o;
	size_t n;

	fs->offsite = NULL;
	/* Health watches a cron push even without offsite= (bfs_offsite_watch). */
	fs->offsite_lag_warn_s = lag_warn_s > 0 ? lag_warn_s : 0;
	if (!remote || !*remote)
		return 0;
	if (strncmp(remote, "s3://", 5) != 0 || strlen(remote) < 8)
		return bri_err_set(err, -EINVAL, "offsite= wants s3://BUCKET/PREFIX, not %s",
		                   remote);
	if (addressing && strcmp(addressing, "path") != 0 && strcmp(addressing, "virtual") != 0)
		return bri_err_set(err, -EINVAL, "offsite_addressing= is path or virtual, not %s",
		                   addressing);
	if (lock_days < 0 || retry_max_s < 0 || lag_warn_s < 0)
		return bri_err_set(err, -EINVAL,
		                   "offsite_lock_days=, offsite_retry_max= and "
		                   "offsite_lag_warn= want numbers >= 0");
	o = calloc(1, sizeof(*o));
	if (!o)
		return bri_err_set(err, -ENOMEM, "out of memory");
	o->opts.remote = dup_opt(remote);
	o->opts.endpoint = dup_opt(endpoint);
	o->opts.addressing = dup_opt(addressing);
	o->opts.lock_days = lock_days;
	o->opts.cancel = &o->cancel;
	o->retry_max_s = retry_max_s ? (double)retry_max_s : RETRY_MAX_DEFAULT;
	o->lag_warn_s = lag_warn_s ? (double)lag_warn_s : BRI_OFFSITE_LAG_WARN_DEFAULT_S;
	snprintf(o->url, sizeof(o->url), "%s", remote);
	n = strlen(o->url);
	while (n > 5 && o->url[n - 1] == '/')
		o->url[--n] = '\0';
	pthread_mutex_init(&o->lock, NULL);
	{
		pthread_condattr_t mono;

		pthread_condattr_init(&mono);
		pthread_condattr_setclock(&mono, CLOCK_MONOTONIC);
		pthread_cond_init(&o->cond, &mono);
		pthread_condattr_destroy(&mono);
	}
	fs->offsite = o;
	return 0;
}

void bfs_offsite_free(struct bfs *fs)
{
	struct bfs_offsite *o = fs->offsite;

	if (!o)
		return;
	pthread_mutex_destroy(&o->lock);
	pthread_cond_destroy(&o->cond);
	free((char *)o->opts.remote);
	free((char *)o->opts.endpoint);
	free((char *)o->opts.addressing);
	free(o);
	fs->offsite = NULL;
}

static void deadline_after(struct timespec *ts, double s)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)s;
	ts->tv_nsec += (long)((s - (double)(time_t)s) * 1e9);
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* One attempt: 0 when everything is up there. */
static int push_once(struct bfs *fs, struct bfs_offsite *o, struct bri_err *err)
{
	struct bri_op_ctx ctx = bri_op_ctx_self("mount");
	struct bri_offsite_push_result res = {0};
	struct bri_offsite *r = NULL;
	int rc;

	rc = bri_offsite_open(&o->opts, &r, err);
	if (rc < 0)
		return rc;
	rc = bri_offsite_push(fs->store, r, &ctx, &res, err);
	bri_offsite_close(r);
	if (res.pushed)
		bri_log(BRI_LOG_INFO, "offsite: %u backup(s) uploaded to %s (%llu bytes)",
		        res.pushed, o->url, (unsigned long long)res.bytes);
	return rc;
}

static void *pusher(void *arg)
{
	struct bfs *fs = arg;
	struct bfs_offsite *o = fs->offsite;
	double backoff = 0, wait_s = 0; /* push at once at start */

	pthread_mutex_lock(&o->lock);
	for (;;) {
		struct timespec until;
		struct bri_err err = {0};
		int rc;

		deadline_after(&until, wait_s);
		while (!o->kick && !o->stop &&
		       pthread_cond_timedwait(&o->cond, &o->lock, &until) != ETIMEDOUT)
			;
		if (o->stop)
			break;
		o->kick = false;
		o->busy = true;
		pthread_mutex_unlock(&o->lock);
		rc = push_once(fs, o, &err);
		/*
		 * Each backup's offsite file shows its new state now: a state is a
		 * new store file, so a new inode, and the rescan drops the kernel's
		 * entry of the old one (cached, with the folder's other entries).
		 */
		bfs_refresh(fs, true);
		bfs_inval_wait(fs, BFS_INVAL_WAIT_S);
		bri_testpoint("offsite-shown"); /* tests: the states of this push are shown */
		pthread_mutex_lock(&o->lock);
		o->busy = false;
		o->refused = rc == BRI_OFFSITE_EMISMATCH;
		if (rc < 0) {
			snprintf(o->last_error, sizeof(o->last_error), "%s",
			         err.msg[0] ? err.msg : strerror(-rc));
			backoff = backoff ? backoff * 2 : RETRY_FIRST_S;
			if (backoff > o->retry_max_s)
				backoff = o->retry_max_s;
			wait_s = backoff;
			bri_log(BRI_LOG_WARN, "offsite: %s; trying again in %.0f s", o->last_error,
			        wait_s);
		} else {
			o->last_error[0] = '\0';
			backoff = 0;
			wait_s = IDLE_RECHECK_S;
		}
	}
	pthread_mutex_unlock(&o->lock);
	return NULL;
}

int bfs_offsite_start(struct bfs *fs)
{
	struct bfs_offsite *o = fs->offsite;

	if (!o)
		return 0;
	if (pthread_create(&o->thread, NULL, pusher, fs) != 0)
		return -EAGAIN;
	o->started = true;
	return 0;
}

void bfs_offsite_stop(struct bfs *fs)
{
	struct bfs_offsite *o = fs->offsite;

	if (!o || !o->started)
		return;
	pthread_mutex_lock(&o->lock);
	o->stop = true;
	o->cancel = 1; /* a transfer in progress is aborted: unmounting never waits for one */
	pthread_cond_signal(&o->cond);
	pthread_mutex_unlock(&o->lock);
	pthread_join(o->thread, NULL);
	o->started = false;
}

void bfs_offsite_kick(struct bfs *fs)
{
	struct bfs_offsite *o = fs->offsite;

	if (!o)
		return;
	pthread_mutex_lock(&o->lock);
	o->kick = true;
	pthread_cond_signal(&o->cond);
	pthread_mutex_unlock(&o->lock);
}

/* Whether a and b are one version of a sidecar (replaced by rename, never changed in place). */
static bool same_version(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

int bfs_offsite_render(struct bfs *fs, const char *name, const struct stat *want, char **out,
                       size_t *len, time_t *t)
{
	struct bfs_offsite *o = fs->offsite;
	struct bri_offsite_state st;
	struct stat before, after;
	char text[600];
	int n, rc;

	if (!o)
		return -ENOENT;
	/* The state read is want's when the same file is there before and after. */
	if (bri_store_sidecar_stat(fs->store, name, BRI_SIDECAR_OFFSITE, &before) < 0)
		memset(&before, 0, sizeof(before));
	rc = bri_offsite_state_read(fs->store, name, &st);
	if (bri_store_sidecar_stat(fs->store, name, BRI_SIDECAR_OFFSITE, &after) < 0)
		memset(&after, 0, sizeof(after));
	if (!same_version(&before, &after) || !same_version(&before, want))
		return -ESTALE;
	*t = 0;
	if (rc < 0 || strcmp(st.remote, o->url) != 0 || st.status == BRI_OFFSITE_NONE) {
		snprintf(text, sizeof(text), "pending");
	} else {
		bri_offsite_state_text(&st, text, sizeof(text));
		*t = st.time;
	}
	n = asprintf(out, "%s\n", text);
	if (n < 0)
		return -ENOMEM;
	*len = (size_t)n;
	return 0;
}

bool bfs_offsite_watch(struct bfs *fs, time_t now, struct bri_offsite_watch *w)
{
	struct bfs_offsite *o = fs->offsite;
	char last_error[sizeof(o->last_error)];
	bool refused;

	if (!o) /* the remote the store's push states name, if any */
		return bri_offsite_watch_read(fs->store, NULL, (double)fs->offsite_lag_warn_s, NULL,
		                              false, now, w, NULL) == 0 &&
		       w->remote[0];
	pthread_mutex_lock(&o->lock);
	memcpy(last_error, o->last_error, sizeof(last_error));
	refused = o->refused;
	pthread_mutex_unlock(&o->lock);
	/* The store's own lines say what is wrong with it when it cannot be listed. */
	return bri_offsite_watch_read(fs->store, o->url, o->lag_warn_s, last_error, refused, now, w,
	                              NULL) == 0 &&
	       w->remote[0];
}
