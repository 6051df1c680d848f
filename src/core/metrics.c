/*
 * The Prometheus text format of a store's state, from its catalog and the
 * tail of its audit log. Metric names carry the "bri_backup_" prefix and
 * base units (seconds, bytes), as Prometheus conventions ask; the offsite
 * copy's gauges (bri_offsite_*) come last, when the rules watch one.
 */
#include "bri/metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bri/audit.h"
#include "bri/offsite_watch.h"
#include "bri/rehearsal.h"
#include "bri/text.h"

#define TEXT_MAX (1u << 20) /* the metrics text */

static void header(struct bri_text *t, const char *name, const char *type, const char *help)
{
	bri_text_add(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int bri_metrics_render(const struct bri_store *s, const struct bri_catalog *c, time_t now,
                       const struct bri_health_rules *rules, char **out, size_t *len)
{
	static const char *const ops[] = {"create", "verify", "restore", "cleanup", "rehearse"};
	enum { NOPS = sizeof(ops) / sizeof(ops[0]) };
	struct bri_audit_last last[NOPS];
	const struct bri_entry *rehearsed = bri_rehearsal_newest(c);
	struct bri_text t = {.max = TEXT_MAX};
	struct bri_stats st;
	enum bri_health_level level;
	char *health = NULL;
	size_t hlen;

	bri_stats_compute(c, &st);
	if (s)
		bri_audit_last(s, ops, NOPS, last);
	else
		for (size_t i = 0; i < NOPS; i++)
			last[i] = (struct bri_audit_last){.duration_s = -1};
	level = bri_health_assess(c, now, rules, false, &health, &hlen);
	free(health);

	header(&t, "bri_backups", "gauge",
	       "Backups in the store, by kind (unknown: .db files that are not backups).");
	for (int k = BRI_KIND_AUTO; k <= BRI_KIND_UNKNOWN; k++)
		bri_text_add(&t, "bri_backups{kind=\"%s\"} %zu\n", bri_kind_name((enum bri_kind)k),
		             st.by_kind[k]);
	header(&t, "bri_backup_bytes", "gauge", "Total size of the backups' database files.");
	bri_text_add(&t, "bri_backup_bytes %lld\n", (long long)st.total_bytes);
	if (c->n) {
		header(&t, "bri_backup_newest_timestamp_seconds", "gauge",
		       "Time of the newest backup (Unix seconds).");
		bri_text_add(&t, "bri_backup_newest_timestamp_seconds %lld\n",
		             (long long)c->entries[0]->time);
		header(&t, "bri_backup_newest_age_seconds", "gauge", "Age of the newest backup.");
		bri_text_add(&t, "bri_backup_newest_age_seconds %lld\n",
		             (long long)(now - c->entries[0]->time));
	}
	header(&t, "bri_backup_verification", "gauge",
	       "Backups by the result of their last verification.");
	bri_text_add(&t, "bri_backup_verification{result=\"ok\"} %zu\n", st.verified_ok);
	bri_text_add(&t, "bri_backup_verification{result=\"failed\"} %zu\n", st.verify_failed);
	bri_text_add(&t, "bri_backup_verification{result=\"unverified\"} %zu\n", st.unverified);
	header(&t, "bri_backup_good", "gauge",
	       "Good backups: the last verification did not fail (unverified counts).");
	bri_text_add(&t, "bri_backup_good %zu\n", st.good);
	header(&t, "bri_backup_healthy", "gauge",
	       "1 when health is ok, 0 on a warning or critical.");
	bri_text_add(&t, "bri_backup_healthy %d\n", level == BRI_HEALTH_OK ? 1 : 0);
	header(&t, "bri_backup_health", "gauge",
	       "Health level: 1 for the current one of ok, warning, critical (no good backup).");
	for (int l = BRI_HEALTH_OK; l <= BRI_HEALTH_CRITICAL; l++)
		bri_text_add(&t, "bri_backup_health{level=\"%s\"} %d\n",
		             bri_health_level_name((enum bri_health_level)l),
		             level == (enum bri_health_level)l);
	header(&t, "bri_backup_last_run_timestamp_seconds", "gauge",
	       "When the operation last ran (Unix seconds).");
	for (size_t i = 0; i < NOPS; i++)
		if (last[i].time)
			bri_text_add(
			    &t, "bri_backup_last_run_timestamp_seconds{operation=\"%s\"} %lld\n",
			    ops[i], (long long)last[i].time);
	header(&t, "bri_backup_last_run_success", "gauge",
	       "1 when the operation's last run succeeded, else 0.");
	for (size_t i = 0; i < NOPS; i++)
		if (last[i].time)
			bri_text_add(&t, "bri_backup_last_run_success{operation=\"%s\"} %d\n",
			             ops[i], last[i].ok ? 1 : 0);
	header(&t, "bri_backup_last_run_duration_seconds", "gauge",
	       "How long the operation's last run took.");
	for (size_t i = 0; i < NOPS; i++)
		if (last[i].time && last[i].duration_s >= 0)
			bri_text_add(
			    &t, "bri_backup_last_run_duration_seconds{operation=\"%s\"} %.3f\n",
			    ops[i], last[i].duration_s);
	if (rehearsed) {
		const struct bri_rehearsal *r = &rehearsed->rehearsal;

		header(&t, "bri_backup_rehearsal_timestamp_seconds", "gauge",
		       "When the newest restore rehearsal ran (Unix seconds).");
		bri_text_add(&t, "bri_backup_rehearsal_timestamp_seconds %lld\n",
		             (long long)r->time);
		header(&t, "bri_backup_rehearsal_age_seconds", "gauge",
		       "Age of the newest restore rehearsal.");
		bri_text_add(&t, "bri_backup_rehearsal_age_seconds %lld\n",
		             (long long)(now - r->time));
		header(&t, "bri_backup_rehearsal_success", "gauge",
		       "1 when the newest restore rehearsal passed (restore and checks), else 0.");
		bri_text_add(&t, "bri_backup_rehearsal_success %d\n", r->ok ? 1 : 0);
		header(&t, "bri_backup_rehearsal_restore_duration_seconds", "gauge",
		       "How long the newest rehearsal's restore into a scratch copy took.");
		bri_text_add(&t, "bri_backup_rehearsal_restore_duration_seconds %.3f\n",
		             r->restore_s);
		header(&t, "bri_backup_rehearsal_checks", "gauge",
		       "The newest rehearsal's user checks, by result.");
		bri_text_add(&t, "bri_backup_rehearsal_checks{result=\"ok\"} %zu\n",
		             r->checks - r->checks_failed);
		bri_text_add(&t, "bri_backup_rehearsal_checks{result=\"failed\"} %zu\n",
		             r->checks_failed);
	}
	/* The offsite copy's gauges, when one is watched (bri/offsite_watch.h). */
	bri_offsite_watch_metrics(rules->offsite, &t);
	return bri_text_finish(&t, out, len);
}
