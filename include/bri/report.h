/*
 * Stats and health of a store, computed from a catalog: the seed's keys
 * (total_backups, total_size_mb, newest_backup, oldest_backup) and more, and
 * the seed's health thresholds (newest older than 24 hours, fewer than 7
 * backups) plus failed verifications and unknown .db files (warnings), and
 * no good backup at all (critical); when rehearsals are configured, a failed
 * newest rehearsal (critical) and a stale or missing one (warning); with
 * an offsite copy watched, a remote that lags past its threshold (warning).
 */
#ifndef BRI_REPORT_H
#define BRI_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "bri/catalog.h"

struct bri_offsite_watch;

struct bri_stats {
	size_t total_backups;    /* every backup, safety ones included (no unknown files) */
	int64_t total_bytes;     /* sum of .db sizes */
	double total_size_mb;    /* total_bytes / 2^20 */
	char newest_backup[40];  /* backup_time of the newest, "" if none */
	char oldest_backup[40];  /* backup_time of the oldest, "" if none */
	char newest_name[BRI_NAME_MAX + 1]; /* its name */
	size_t by_kind[4];       /* count per enum bri_kind; [BRI_KIND_UNKNOWN] = unknown_files */
	size_t verified_ok;      /* last verification ok */
	size_t verify_failed;    /* last verification failed */
	size_t unverified;       /* never verified */
	size_t good;             /* backups whose last verification did not fail */
	size_t unknown_files;    /* .db files that are not backups (catalog's unknown) */
	int64_t unknown_bytes;   /* their total size */
	/* Filled by bri_stats_usage (format "" when not): */
	char format[16];         /* the store's format (plain, pages) */
	int64_t logical_bytes;   /* the backups' bytes as served */
	int64_t stored_bytes;    /* bytes the store keeps for them (pages: packs) */
	double dedup_ratio;      /* logical / stored; 0 when nothing is stored */
	char encryption[16];     /* "aes-256-gcm" for an encrypted store, else "none" */
};

struct bri_store;

/* Adds the store's format, logical and stored bytes and dedup ratio to out. */
int bri_stats_usage(struct bri_store *s, struct bri_stats *out, struct bri_err *err);

enum bri_health_level {
	BRI_HEALTH_OK = 0,   /* nothing to report */
	BRI_HEALTH_WARNING,  /* old or few backups, a failed verification, unknown files */
	BRI_HEALTH_CRITICAL, /* no good backup exists (none, or every one failed) */
};

struct bri_health_rules {
	double max_age_hours; /* warn when the newest backup is older (default 24) */
	size_t min_backups;   /* warn when fewer backups exist (default 7) */
	double crit_age_hours; /* critical when the newest is older; 0: no such rule */
	size_t crit_backups;   /* critical when fewer backups exist; 0: no such rule */
	/* Rehearsals (bri/rehearsal.h), when configured: */
	bool rehearse_checked;         /* critical when the newest rehearsal failed */
	double rehearse_max_age_hours; /* warn when the newest is older, or none ran; 0: no rule */
	/* The offsite copy, when one is watched (bri/offsite_watch.h; NULL: none). Read
	 * by the caller, as it reads the catalog; must outlive what is made with the rules. */
	const struct bri_offsite_watch *offsite;
};

/*
 * Sets the health threshold called name from its text, as `bri-backup health
 * --NAME TEXT` takes it; the mount's -o NAME=TEXT and the Python module's
 * health(NAME=...) spell it with '_' for '-' and give it here, so the three
 * faces accept the same values:
 *   max-age-hours H   a number of hours above 0 (warn when the newest is older)
 *   warn-age D        the same as a duration above 0: N seconds, or N with s,
 *                     m, h, d or w (bri_duration_parse), e.g. 26h, 90m, 2d
 *   crit-age D        critical when the newest backup is older than D
 *   min-backups N     warn when fewer backups exist; N a whole number 0..INT_MAX
 *   warn-count N      the same as min-backups
 *   crit-count N      critical when fewer than N backups exist
 *   rehearse-age D    rehearsals are expected: the newest failed is critical,
 *                     older than D or none a warning
 * Returns 0, -ENOENT for a name that is none of these, or -EINVAL with err:
 * "wants a duration such as 26h, 90m or 2d, not 'x'" (the caller puts the
 * name in front as its users spell it: "--warn-age", "-o warn_age=",
 * "warn_age"). Check bri_health_rules_check once all are set.
 */
int bri_health_threshold_set(struct bri_health_rules *rules, const char *name, const char *text,
                             struct bri_err *err);

/*
 * 0, or -EINVAL with err when the rules contradict themselves: a critical age
 * below the warning age ("the critical age (26 hours) must not be below the
 * warning age (48 hours)": the caller puts the name in front).
 */
int bri_health_rules_check(const struct bri_health_rules *rules, struct bri_err *err);

void bri_stats_compute(const struct bri_catalog *c, struct bri_stats *out);

/*
 * The backups of c as a JSON array, newest first, then the .db files that
 * are not backups (kind "unknown"): per entry the seed's list keys
 * (filename, path, created, size_mb, tables), then name, kind, verify ("ok",
 * "failed", "unverified"), verified (true, false, null), size_bytes,
 * checksum, backup_time_utc, verified_at, verify_reason, meta_error,
 * pinned, pin_reason and rehearsal (null, or the last rehearsal's time,
 * result, reason, verify_s, restore_s, checks, checks_failed).
 * `bri-backup --json list` prints it and the Python module's list_backups()
 * returns it. s may be NULL (no store: path null). Pretty, malloc'd; 0 or
 * -ENOMEM.
 */
int bri_list_to_json(const struct bri_store *s, const struct bri_catalog *c, char **out,
                     size_t *len);

/* The stats as pretty JSON (seed keys first), malloc'd. */
int bri_stats_to_json(const struct bri_stats *st, char **out, size_t *len);

/*
 * Health at time now: returns the level. *text (malloc'd, NULL when out of
 * memory) gets "ok\n" or one line per problem, the "critical: ..." ones
 * first, then "warning: ..."; with json, a JSON object instead (status
 * "ok", "warning" or "critical", and the lines in "critical" and "warnings").
 */
enum bri_health_level bri_health_assess(const struct bri_catalog *c, time_t now,
                                        const struct bri_health_rules *rules, bool json,
                                        char **text, size_t *len);

/*
 * One line in the Nagios plugin format for the level, e.g. "BRI-BACKUP
 * WARNING - latest backup is 30.0 hours old (more than 26) | age=108000s;
 * 93600;172800 backups=9;7;3 good=9", malloc'd into *text (NULL when out of
 * memory). The exit status is the level (0 ok, 1 warning, 2 critical).
 */
void bri_health_nagios(const struct bri_catalog *c, time_t now,
                       const struct bri_health_rules *rules, char **text);

/* "ok", "warning" or "critical". */
const char *bri_health_level_name(enum bri_health_level level);

/* As bri_health_assess; returns true when the level is ok. */
bool bri_health_check(const struct bri_catalog *c, time_t now, const struct bri_health_rules *rules,
		      bool json, char **text, size_t *len);

#endif
