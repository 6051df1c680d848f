/*
 * The offsite copy as health, metrics and the status page see it
 * (bri/offsite_watch.h): the lag from the store's push states, the warning
 * line past a threshold, the Prometheus gauges. One rendering for the mount,
 * the CLI and Python, so their lines are the same bytes.
 */
#include "bri/offsite_watch.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct newest_arg {
	const struct bri_store *s;
	time_t time;      /* of the newest state seen */
	char remote[600]; /* its remote */
};

static int newest_one(void *arg, const char *name, const struct stat *st)
{
	struct newest_arg *a = arg;
	struct bri_offsite_state state;

	(void)st;
	if (bri_offsite_state_read(a->s, name, &state) == 0 && state.status != BRI_OFFSITE_NONE &&
	    state.remote[0] && (!a->remote[0] || state.time > a->time)) {
		a->time = state.time;
		snprintf(a->remote, sizeof(a->remote), "%s", state.remote);
	}
	return 0;
}

int bri_offsite_watch_read(const struct bri_store *s, const char *remote, double lag_warn_s,
                           const char *last_error, bool refused, time_t now,
                           struct bri_offsite_watch *out, struct bri_err *err)
{
	size_t n;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!remote || !*remote) {
		struct newest_arg a = {.s = s};

		rc = bri_store_list(s, newest_one, &a, err);
		if (rc < 0)
			return rc;
		if (!a.remote[0])
			return 0; /* never pushed: nothing to watch */
		snprintf(out->remote, sizeof(out->remote), "%s", a.remote);
	} else {
		snprintf(out->remote, sizeof(out->remote), "%s", remote);
	}
	n = strlen(out->remote);
	while (n > 5 && out->remote[n - 1] == '/')
		out->remote[--n] = '\0';
	out->lag_warn_s = lag_warn_s > 0 ? lag_warn_s : BRI_OFFSITE_LAG_WARN_DEFAULT_S;
	rc = bri_offsite_lag(s, out->remote, now, &out->lag, err);
	if (rc < 0) {
		out->remote[0] = '\0';
		return rc;
	}
	snprintf(out->why, sizeof(out->why), "%s",
	         last_error && *last_error ? last_error : out->lag.why);
	out->refused = refused || !strncmp(out->lag.why, BRI_OFFSITE_REFUSED_PREFIX,
	                                   strlen(BRI_OFFSITE_REFUSED_PREFIX));
	return 0;
}

bool bri_offsite_watch_line(const struct bri_offsite_watch *w, char *buf, size_t len)
{
	char why[540] = "";

	if (len)
		buf[0] = '\0';
	if (!w || !w->remote[0])
		return false;
	if (w->refused && w->why[0]) { /* waiting would not help: say so now, whatever the lag */
		snprintf(buf, len, "offsite: %.500s", w->why);
		return true;
	}
	if (!(w->lag.lag_s > w->lag_warn_s))
		return false;
	if (w->why[0])
		snprintf(why, sizeof(why), "; last error: %.500s", w->why);
	snprintf(buf, len,
	         "the offsite copy %s lags %.1f hours (more than %.1f): %u backup(s) not "
	         "uploaded%s",
	         w->remote, w->lag.lag_s / 3600, w->lag_warn_s / 3600,
	         w->lag.pending + w->lag.failed, why);
	return true;
}

void bri_offsite_watch_metrics(const struct bri_offsite_watch *w, struct bri_text *t)
{
	if (!w || !w->remote[0])
		return;
	bri_text_add(t,
	             "# HELP bri_offsite_lag_seconds Age of the oldest backup not yet uploaded "
	             "offsite (0: none).\n"
	             "# TYPE bri_offsite_lag_seconds gauge\n"
	             "bri_offsite_lag_seconds %.0f\n"
	             "# HELP bri_offsite_pending_backups Backups not yet uploaded offsite.\n"
	             "# TYPE bri_offsite_pending_backups gauge\n"
	             "bri_offsite_pending_backups %u\n"
	             "# HELP bri_offsite_failed_backups Backups whose last push failed.\n"
	             "# TYPE bri_offsite_failed_backups gauge\n"
	             "bri_offsite_failed_backups %u\n"
	             "# HELP bri_offsite_last_upload_timestamp_seconds When a backup was last "
	             "uploaded offsite (0: never).\n"
	             "# TYPE bri_offsite_last_upload_timestamp_seconds gauge\n"
	             "bri_offsite_last_upload_timestamp_seconds %lld\n",
	             w->lag.lag_s, w->lag.pending + w->lag.failed, w->lag.failed,
	             (long long)w->lag.last_upload);
}
