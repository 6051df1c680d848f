/*
 * Metrics of a store in the Prometheus text exposition format: backup count
 * by kind, total bytes, newest backup's time and age, verification results,
 * health, the time, result and duration of the last create, verify,
 * restore, cleanup and rehearsal, and the newest rehearsal's time and
 * result (bri_backup_rehearsal_*). Served as the mount's ctl/metrics and written by
 * `bri-backup metrics` for node_exporter's textfile collector.
 */
#ifndef BRI_METRICS_H
#define BRI_METRICS_H

#include <stddef.h>
#include <time.h>

#include "bri/catalog.h"
#include "bri/report.h"
#include "bri/store.h"

/*
 * Renders the metrics of store s (catalog c) at time now into a malloc'd
 * text; s may be NULL for a store not made yet. Returns 0 or -ENOMEM.
 */
int bri_metrics_render(const struct bri_store *s, const struct bri_catalog *c, time_t now,
		       const struct bri_health_rules *rules, char **out, size_t *len);

#endif
