/*
 * Stats and health of a store, computed from a catalog: the seed's keys
 * (total_backups, total_size_mb, newest_backup, oldest_backup) and more, and
 * the seed's health thresholds (newest older than 24 hours, fewer than 7
 * backups) plus failed verifications.
 */
#ifndef BRI_REPORT_H
#define BRI_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "bri/catalog.h"

struct bri_stats {
	size_t total_backups;    /* every backup, safety ones included */
	int64_t total_bytes;     /* sum of .db sizes */
	double total_size_mb;    /* total_bytes / 2^20 */
	char newest_backup[40];  /* backup_time of the newest, "" if none */
	char oldest_backup[40];  /* backup_time of the oldest, "" if none */
	char newest_name[BRI_NAME_MAX + 1]; /* its name */
	size_t by_kind[4];       /* count per enum bri_kind */
	size_t verified_ok;      /* last verification ok */
	size_t verify_failed;    /* last verification failed */
	size_t unverified;       /* never verified */
};

struct bri_health_rules {
	double max_age_hours; /* warn when the newest backup is older (default 24) */
	size_t min_backups;   /* warn when fewer backups exist (default 7) */
};

void bri_stats_compute(const struct bri_catalog *c, struct bri_stats *out);

/* The stats as pretty JSON (seed keys first), malloc'd. */
int bri_stats_to_json(const struct bri_stats *st, char **out, size_t *len);

/*
 * Health at time now: returns true when ok. *text (malloc'd) gets "ok\n" or
 * one "warning: ..." line per problem; with json, a JSON object instead.
 */
bool bri_health_check(const struct bri_catalog *c, time_t now, const struct bri_health_rules *rules,
		      bool json, char **text, size_t *len);

#endif
