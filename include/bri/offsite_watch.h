/*
 * What health, metrics and the status page say of the store's offsite copy
 * (SPEC.md section 6): how far the remote lags behind the store, read from
 * the push states the store keeps (bri_offsite_lag: no network), and the
 * threshold past which that is a warning. The mount (-o offsite=,
 * offsite_lag_warn=) and `bri-backup health / metrics / report` (--offsite,
 * --offsite-lag-warn) read one with bri_offsite_watch_read and hand it to
 * the health rules (bri_health_rules.offsite), so bri_health_assess,
 * bri_health_nagios, bri_metrics_render and the status page render the same
 * lines for every face. Not here: pushing (bri/offsite.h), the mount's
 * retries.
 */
#ifndef BRI_OFFSITE_WATCH_H
#define BRI_OFFSITE_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "bri/common.h"
#include "bri/offsite.h"
#include "bri/text.h"

#define BRI_OFFSITE_LAG_WARN_DEFAULT_S (26 * 3600) /* the mount's and the CLI's default */

struct bri_offsite_watch {
	char remote[600];           /* "s3://BUCKET/PREFIX", no trailing '/' */
	double lag_warn_s;          /* a warning when the remote lags more */
	struct bri_offsite_lag lag; /* the push states when read */
	char why[400];              /* the last push failure (as a push state holds it), "" none */
	bool refused; /* the remote holds another form of the store (BRI_OFFSITE_EMISMATCH) */
};

/* How the core's refusal (BRI_OFFSITE_EMISMATCH) begins, as a push state records it. */
#define BRI_OFFSITE_REFUSED_PREFIX "refusing to push into "

/*
 * Reads the offsite state of s at time now into *out. remote: the copy to
 * watch (trailing '/' ignored); NULL or "": the remote the store's newest
 * push state names, and when there is none, *out stays zeroed and 0 is
 * returned with out->remote "" (nothing is pushed: nothing to watch).
 * lag_warn_s: the threshold in seconds, 0 for the default. last_error: why
 * the caller's own last push failed (the mount's pusher knows failures no
 * state records, e.g. missing credentials); NULL or "": the failure the
 * store recorded for the oldest backup not uploaded (either is cut to what
 * a push state holds, so every face shows the same words). refused: the
 * caller's last push was refused (BRI_OFFSITE_EMISMATCH); also true when
 * that recorded failure is the core's refusal. 0, or a negative errno with
 * err (the store could not be listed).
 */
int bri_offsite_watch_read(const struct bri_store *s, const char *remote, double lag_warn_s,
                           const char *last_error, bool refused, time_t now,
                           struct bri_offsite_watch *out, struct bri_err *err);

/*
 * The health line without its level, e.g. "the offsite copy s3://b/p lags
 * 27.0 hours (more than 26.0): 1 backup(s) not uploaded; last error: ...",
 * into buf when the lag is past the threshold, or "offsite: <why>" at once,
 * whatever the lag, when the push was refused (waiting would not help):
 * returns true. False (buf "") when neither, or w is NULL or watches nothing.
 */
bool bri_offsite_watch_line(const struct bri_offsite_watch *w, char *buf, size_t len);

/* Appends the bri_offsite_* gauges of the Prometheus text format to t (nothing for NULL). */
void bri_offsite_watch_metrics(const struct bri_offsite_watch *w, struct bri_text *t);

#endif
