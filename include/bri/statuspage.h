/*
 * The status page of a store: what an operator wants at a glance (is it
 * healthy, which days have a backup and did it verify, how big and how slow
 * the backups are, how the store grows), gathered from the store only (its
 * catalog, the audit log, its usage) at a time `now` that is an argument,
 * then rendered as one self-contained HTML page (inline SVG and CSS, no
 * JavaScript, no external resource: the mount's ctl/report.html and
 * `bri-backup report --html FILE`) or as text for an 80-column terminal
 * (`bri-backup report`). The same store and the same minute give the same
 * bytes: now is taken to the minute, and nothing else varies.
 *
 * Not here: the health rules themselves (report.h), the metrics (metrics.h).
 */
#ifndef BRI_STATUSPAGE_H
#define BRI_STATUSPAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "bri/catalog.h"
#include "bri/report.h"
#include "bri/store.h"

/* Days of the calendar strip and of the per-backup charts (today included). */
#define BRI_STATUS_DAYS 90
/* Cap on a rendered page (bytes); 10,000 backups take well under 2 MiB. */
#define BRI_STATUS_MAX (8u << 20)

/* One day: of the calendar strip, or of the history before it. */
struct bri_status_day {
	time_t start;            /* local midnight that starts it */
	char date[12];           /* "YYYY-MM-DD", local */
	size_t backups;          /* backups made that day that the store keeps */
	size_t ok;               /* of those, verified ok */
	size_t failed;           /* of those, failed their last verification */
	size_t unverified;       /* of those, never verified */
	unsigned kinds;          /* bit (1u << enum bri_kind) for each kind among them */
	size_t failed_creates;   /* creates that failed that day (audit log) */
	size_t rehearsed_ok;     /* backups of the day whose last rehearsal passed */
	size_t rehearsed_failed; /* backups of the day whose last rehearsal failed */
	size_t offsite_ok;       /* backups of the day uploaded offsite (audit log) */
	size_t offsite_failed;   /* backups of the day whose last push failed (audit log) */
	int64_t max_bytes;       /* the largest backup of the day */
	double max_create_s;     /* the longest create of the day (meta's duration_s), 0 if none */
	double max_verify_s;     /* the longest last verification of the day, 0 if none */
};

/* One backup of the calendar's window: one bar in each chart. */
struct bri_status_backup {
	char name[BRI_NAME_MAX + 1];
	time_t time;                   /* its backup time */
	enum bri_kind kind;            /* auto, named, safety */
	enum bri_verify_status verify; /* its last verification */
	int64_t bytes;                 /* its logical size */
	double create_s;               /* create's duration, < 0 when not recorded */
	double verify_s;               /* its last verification's duration, < 0 when none */
	char reason[160];              /* why its verification failed, "" otherwise */
};

/* A restore or a failed create of the window, from the audit log. */
struct bri_status_event {
	char name[BRI_NAME_MAX + 1]; /* the backup (or path) it was about */
	time_t time;                 /* when it was recorded */
	bool ok;                     /* it succeeded */
	double duration_s;           /* how long it took, < 0 when not recorded */
};

/* The store's size at one time (audit records of create, delete, cleanup; and now). */
struct bri_status_usage {
	time_t time;
	int64_t logical; /* the backups' bytes as served */
	int64_t stored;  /* the bytes the store keeps for them */
};

/*
 * The last restore rehearsal: the newest rehearsal status the catalog holds
 * (bri/rehearsal.h, a backup's rehearsal sidecar); when no backup kept has
 * one, the newest rehearse record of the audit log.
 */
struct bri_status_rehearsal {
	bool known;  /* a rehearsal is recorded */
	bool status; /* from a backup's status (detail says it all), not the audit log */
	char name[BRI_NAME_MAX + 1]; /* the backup rehearsed */
	time_t time;                 /* when it ran */
	bool ok;                     /* it passed */
	double duration_s;           /* verify + restore, < 0 when not recorded */
	char detail[256]; /* bri_rehearsal_describe's line, or the audit record's detail */
};

/*
 * The offsite copy (SPEC.md 6), from the audit log's offsite-push records of
 * the window: none when the store was never pushed (the page then says
 * nothing about offsite). How far the remote lags is ctl/metrics' (it needs
 * the remote the mount pushes to; the page reads the store alone).
 */
struct bri_status_offsite {
	bool known;                       /* a push is recorded in the window */
	char remote[256];                 /* where the last successful push went */
	char last_name[BRI_NAME_MAX + 1]; /* the backup it uploaded */
	time_t last_upload;               /* when, 0 when no push succeeded */
	size_t uploads, failures;         /* pushes of the window, by result */
	time_t last_failure;              /* the newest failed push, 0 when none */
	char last_error[256];             /* its reason */
};

struct bri_status {
	time_t now;                    /* the time shown, to the minute */
	char generated[24];            /* now as "YYYY-MM-DD HH:MM", local */
	char *store_dir;               /* the store folder (malloc'd) */
	struct bri_health_rules rules; /* the thresholds in effect */
	enum bri_health_level level;   /* the verdict */
	char *health;                  /* its lines ("ok\n" or one per problem), malloc'd */
	struct bri_stats stats;        /* the stats, with format/logical/stored when known */
	time_t window_start;           /* midnight starting days[0] */
	struct bri_status_day days[BRI_STATUS_DAYS]; /* oldest first; the last is today */
	struct bri_status_backup *recent;            /* backups of the window, oldest first */
	size_t nrecent;
	struct bri_status_day *history; /* days before the window with a backup, oldest first */
	size_t nhistory;
	struct bri_status_event *restores; /* restores of the window, oldest first */
	size_t nrestores;
	struct bri_status_usage *usage; /* samples of the window, oldest first; the last is now */
	size_t nusage;
	struct bri_status_rehearsal rehearsal; /* see above */
	struct bri_status_offsite offsite;     /* see above */
};

/*
 * Gathers the status of store s (catalog c, rules) at now (taken to the
 * minute) into *out (free with bri_status_free): the catalog for backups,
 * the audit log for restores, failed creates, the last rehearsal and the
 * store's size over time, bri_store_usage for its size now. s may be NULL
 * (no store yet). An unreadable audit log leaves those parts empty, never
 * fails the page. 0 or -ENOMEM.
 */
int bri_status_collect(struct bri_store *s, const struct bri_catalog *c, time_t now,
                       const struct bri_health_rules *rules, struct bri_status **out);

/*
 * The same in two steps, for a caller that holds a lock over its catalog:
 * the catalog's part (no I/O; store_dir is only shown), then the store's
 * (the audit log and the usage, without the catalog). 0 or a negative errno.
 */
int bri_status_collect_catalog(const char *store_dir, const struct bri_catalog *c, time_t now,
                               const struct bri_health_rules *rules, struct bri_status **out);
int bri_status_collect_store(struct bri_status *st, struct bri_store *s);

/* The page as HTML, malloc'd (*len bytes, NUL-terminated). 0, -ENOMEM or -EFBIG. */
int bri_status_html(const struct bri_status *st, char **out, size_t *len);

/*
 * The same facts as text for a terminal: at most 80 columns, charts of
 * Unicode block characters, UTF-8. malloc'd; 0, -ENOMEM or -EFBIG.
 */
int bri_status_text(const struct bri_status *st, char **out, size_t *len);

void bri_status_free(struct bri_status *st);

#endif
