/*
 * Internal contract of the bri-backupfs daemon (src/fs/): the shared state
 * of one mount, the inode scheme, the catalog refresh, generated files, the
 * ctl/ operations, the restore/ drop folder and the worker threads. Nothing
 * here is used outside src/fs/; the core library (include/bri/) knows
 * nothing of FUSE.
 */
#ifndef BFS_FS_H
#define BFS_FS_H

/*
 * THREAD SAFETY NOTES
 *
 * libfuse runs requests on several threads; the notify worker, the
 * background verifier and the scheduler are threads of their own. Locks
 * are taken in this order, never the other way round:
 *
 *   op_lock -> refresh_lock -> cat_lock -> { q_lock, node_lock -> render_lock,
 *                                            progress.lock, sched.lock,
 *                                            rehearsals.lock, log_lock }
 *
 * - op_lock (mutex): one store operation at a time (ctl/ requests, restores,
 *   the background verifier, scheduled backups). Held for seconds; at most
 *   BFS_OP_WAITERS_MAX requests wait for it (op_waiters), others get EBUSY.
 *   Guards nothing in struct bfs by itself: it orders the store's changes.
 * - refresh_lock (mutex): one look at / rescan of the store at a time;
 *   guards last_check, dir_st, dir_scan_real, store_error.
 * - cat_lock (rwlock): guards cat (and each entry's verify, verify_st,
 *   rehearsal, rehearsal_st, offsite_st and db_st, which bfs_fresh_sidecar
 *   and bfs_db_check update in place under the write lock), idmap (with its file index),
 * cat_changed, reports and nreports. Read-locked by every request that looks at a backup; never
 *   held while rendering into the render cache or sending to the kernel.
 * - q_lock (mutex): guards the invalidation queue, q_held, renames, q_pushed,
 *   q_sent, stop, verify_kick. Pushing an invalidation takes only q_lock, so it may be done
 *   under cat_lock; the notify worker sends them holding no lock at all
 *   (a notification sent from a request handler, or while holding a lock a
 *   handler needs, deadlocks the daemon).
 * - node_lock (inode.c) guards the node table; render_lock (render.c) the
 *   render cache. node_lock may take render_lock (a reference to a node's
 *   version); render_lock is a leaf. Renderings are freed outside both.
 * - progress.lock, sched.lock, rehearsals.lock and the core's log_lock are
 *   leaves.
 * - inspectfs.c: live_lock -> spec_lock, taken with no other lock held.
 *   live_lock serialises looking at / taking the live snapshot (held for the
 *   online backup: seconds); spec_lock, a leaf, guards the spec table, the
 *   specs' counted sizes and the snapshots' reference counts. An open
 *   inspection file's stream lock is held while it renders, with no other.
 * - Reading a backup's bytes (file.c, read_reader) takes none of these: a
 *   page store's reader has locks of its own (pages_read.c: ahead_lock, a
 *   leaf, not held while a read-ahead chunk is assembled; assembling takes
 *   cur_lock, a cursor's lock and the store's pages lock, pack.c), and a
 *   read-ahead chunk held for a reply (bri_reader.hold) is pinned, not
 *   locked, until fuse_reply_buf has returned.
 *
 * Fields set once before the session starts (store, se, uid, gid, rules,
 * health, scrub_interval, busy_timeout_ms, start_time, no_opendir, the
 * pointers renders and nodes) are read without a lock.
 */

#define FUSE_USE_VERSION 34

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "bri/audit.h"
#include "bri/catalog.h"
#include "bri/hook.h"
#include "bri/report.h"
#include "bri/restore.h"
#include "bri/retention.h"
#include "bri/schedule.h"
#include "bri/store.h"
#include "bri/verify.h"

/* Cache lifetimes (seconds) for the immutable backup trees. */
#define BFS_TTL_LONG 3600.0
/* Attribute lifetime (seconds) of the root, whose times and link count change. */
#define BFS_TTL_ROOT 0.05
/* Cap on one rendering of a generated file (then EFBIG at open). */
#define BFS_RENDER_MAX (16u << 20)
/* Renderings this large or larger get a mapping of their own (render.c). */
#define BFS_RENDER_MMAP (64u << 10)
/* Dropping a rendering this large trims the heap. */
#define BFS_RENDER_TRIM (1u << 20)
/* Cap on the bytes one open ctl/ file accepts (then EFBIG). */
#define BFS_CTL_MAX 4096
/*
 * Requests that may wait for op_lock at once; more are refused with EBUSY,
 * so that waiting requests never take all of libfuse's worker threads.
 */
#define BFS_OP_WAITERS_MAX 4
/* How often (seconds) root operations look at the store for changes. */
#define BFS_REFRESH_INTERVAL 0.5

/*
 * Node kinds: the low BFS_KIND_BITS bits of every inode number (inode.c
 * documents the id spaces above them). Each module numbers its own kinds
 * and holds their rows {name, mode, attr, lookup, list, open, render, ...}
 * next to their functions: view.c the root, ctl/, restore/ and the backups
 * (1-11, 24-27), inspectfs.c inspect/, diff/ and at/ (12-23). A new kind is one
 * number, its functions and its row, in its module; bfs_kinds_check()
 * refuses, at start, a number that two rows claim. The numbers are part of
 * the inode numbers a copy of the mount remembers: never renumber.
 */
#define BFS_KIND_BITS 5
#define BFS_K_COUNT   (1u << BFS_KIND_BITS)

#define BFS_SPACE_MASK    (3ull << 62)
#define BFS_SPACE_STORE   (1ull << 63)
#define BFS_SPACE_VERSION (1ull << 62)
#define BFS_SPACE_INSPECT (3ull << 62)
/* Fixed-space index base of backups whose store inode numbers do not fit. */
#define BFS_ID_BASE 64

/* The id spaces a kind's inodes may be in (bfs_kind_ops.spaces): 1 << (ino >> 62). */
#define BFS_IN_FIXED   (1u << 0)
#define BFS_IN_VERSION (1u << 1)
#define BFS_IN_STORE   (1u << 2)
#define BFS_IN_INSPECT (1u << 3)

/* The inodes of one node each (their kind's number: view.c). */
enum bfs_fixed_ino {
	BFS_INO_ROOT = 1,
	BFS_INO_CTL = 2,
	BFS_INO_RESTORE = 3,
	BFS_INO_LATEST = 4,
};

/* Which store file of a backup a bfs_fileref names. */
enum bfs_file { BFS_FILE_DB, BFS_FILE_META, BFS_FILE_VERIFY, BFS_FILE_REHEARSAL, BFS_FILE_OFFSITE };

/* A store file of the catalog, found by its inode number. */
struct bfs_fileref {
	uint64_t st_ino;     /* its inode number in the store */
	enum bfs_file which; /* which file of the backup */
	struct bri_entry *e; /* the backup (valid while cat_lock is held) */
};

/* The ctl/ files. */
enum bfs_ctl_op {
	BFS_CTL_CREATE,
	BFS_CTL_VERIFY,
	BFS_CTL_CLEANUP,
	BFS_CTL_DELETE,
	BFS_CTL_RESTORE,
	BFS_CTL_STATS,
	BFS_CTL_HEALTH,
	BFS_CTL_LOG,
	BFS_CTL_SCHEDULE,
	BFS_CTL_METRICS,
	BFS_CTL_PROGRESS,
	BFS_CTL_PIN,
	BFS_CTL_UNPIN,
	BFS_CTL_REHEARSE,
	BFS_CTL_REPORT,
	BFS_CTL_COUNT
};

struct bfs;

/* Flags of a ctl/ row. */
#define BFS_CTL_INVAL    1u /* changes the listing: wait for the kernel's caches before replying */
#define BFS_CTL_OWN_LOCK 2u /* run takes op_lock itself and logs its own failure */
/* How long a removing request waits for its invalidations to be sent (seconds). */
#define BFS_INVAL_WAIT_S 2.0

/* One ctl/ file: a row of ctl.c's table. */
struct bfs_ctl_file {
	const char *name; /* file name in ctl/ */
	mode_t mode;      /* permission bits */
	/* Whether req (len bytes, no newline) is well-formed: 0, or a negative errno with err. */
	int (*validate)(const char *req, size_t len, struct bri_err *err);
	/*
	 * Runs a validated request (req NUL-terminated), holding op_lock unless
	 * BFS_CTL_OWN_LOCK; 0 or a negative errno with err. NULL: no requests.
	 */
	int (*run)(struct bfs *fs, const char *req, size_t len, struct bri_op_ctx *ctx,
	           struct bri_err *err);
	/* The content a read gets, malloc'd; 0 or a negative errno. NULL: empty. */
	int (*render)(struct bfs *fs, char **out, size_t *len);
	unsigned flags; /* BFS_CTL_* */
};

extern const struct bfs_ctl_file bfs_ctl_files[BFS_CTL_COUNT];

/* The id -> catalog index map of one catalog (open addressing), and its files. */
struct bfs_idmap {
	uint64_t *keys;            /* id + 1, 0 = empty slot */
	size_t *vals;              /* index in catalog->entries */
	size_t cap;                /* slots, a power of two */
	struct bfs_fileref *files; /* every store file of the catalog, by st_ino */
	size_t nfiles;             /* entries in files */
};

/* What a restore left in restore/: NAME.report. */
struct bfs_report {
	char name[BRI_NAME_MAX + 1]; /* the backup restored */
	uint64_t id;                 /* its catalog id (inode of the report) */
	time_t time;                 /* when the restore ran */
	char *text;                  /* bri_restore_report_render output */
	size_t len;                  /* bytes in text */
};

/* A queued kernel cache invalidation, sent by the notify worker. */
struct bfs_inval {
	struct bfs_inval *next;       /* queue link */
	fuse_ino_t parent;            /* entry invalidation: parent (0: inode) */
	fuse_ino_t ino;               /* inode invalidation: inode */
	char name[BRI_NAME_MAX + 16]; /* entry invalidation: name */
	bool counted;                 /* held back, and already counted in q_sent */
};

/* The daemon's options (filled by main.c's fuse_opt table). */
struct bfs_options {
	char *db;           /* the live database (first non-option) */
	char *backup_dir;   /* -o backup_dir= */
	int retention_days; /* -o retention_days= */
	int keep_min;       /* -o keep_min= */
	int keep_hourly, keep_daily, keep_weekly, keep_monthly,
	    keep_yearly;      /* -o keep_daily= ... */
	char *keep_within;    /* -o keep_within= (e.g. 7d, 1y6m) */
	char *on_success;     /* -o on_success=PROGRAM */
	char *on_failure;     /* -o on_failure=PROGRAM */
	int hook_timeout;     /* -o hook_timeout=SECONDS */
	char *checks;         /* -o checks=FILE: ctl/rehearse's checks */
	char *rehearse;       /* -o rehearse= daily, weekly, monthly, every=N, none */
	char *scrub_interval; /* -o scrub_interval= (seconds or s/m/h/d suffix) */
	int busy_timeout_ms;  /* -o busy_timeout= (milliseconds; 0: the core's default) */
	char *log_file;       /* -o log= */
	char *log_level;      /* -o log_level= err|warn|info|debug */
	char *schedule;       /* -o schedule= daily@HH:MM, hourly, every=N{s,m,h,d}, none */
	int follow_symlink;   /* -o follow_symlink: accept a symlinked DB or backup_dir */
	int force;            /* -o force: accept a store in the database's own folder */
	char *store_format;   /* -o store_format=plain|pages: the format of a new store */
	char *key_file;       /* -o key_file=F: an encrypted page store's key */
	char *offsite;        /* -o offsite=s3://BUCKET/PREFIX: push every backup there */
	char *endpoint;       /* -o endpoint=URL: its S3 endpoint (else the aws CLI's) */
	char *off_addr;       /* -o offsite_addressing=path|virtual */
	int off_lock_days;    /* -o offsite_lock_days=N: Object Lock on every upload */
	char *off_retry;      /* -o offsite_retry_max=T: longest wait between attempts */
	char *off_lag_warn;   /* -o offsite_lag_warn=T: ctl/health warns past it */
	int show_help;        /* -h, --help */
	int show_version;     /* -V, --version */
	/* -o max_age_hours=, warn_age=, crit_age=, min_backups=, warn_count=,
	 * crit_count=, rehearse_age=: ctl/health's thresholds, as text, in the order
	 * `bri-backup health` sets them (main.c: setup_health) */
	char *health[7];
};

/*
 * What ctl/progress shows: the operation running now (one at a time: they
 * all hold op_lock) and a summary of the last one. Fed by the core's
 * progress callback, which may run on a thread of the core's own.
 */
struct bfs_progress {
	pthread_mutex_t lock;             /* guards every field below */
	bool active;                      /* an operation runs */
	char op[16];                      /* "create", "verify" or "restore" */
	char name[BRI_NAME_MAX + 1];      /* its backup, "" when not known yet */
	char via[24];                     /* who started it: "ctl/create", "schedule", ... */
	char phase[16];                   /* the core's phase: copy, checksum, restore */
	uint64_t done, total;             /* bytes of the phase (total 0: unknown) */
	double started;                   /* monotonic start of the operation */
	double phase_started;             /* monotonic start of the phase */
	bool have_last;                   /* the fields below describe a finished operation */
	char last_op[16];                 /* its operation */
	char last_name[BRI_NAME_MAX + 1]; /* its backup */
	char last_via[24];                /* who started it */
	int last_result;                  /* 0 or a negative errno */
	char last_error[256];             /* why it failed */
	time_t last_finished;             /* when it ended */
	double last_duration;             /* how long it took (seconds) */
};

/* The backup schedule (-o schedule=) and its thread (schedule.c). */
struct bfs_sched {
	struct bri_schedule sc;           /* the schedule; kind NONE: no thread */
	pthread_mutex_t lock;             /* guards every field below but sc and thread */
	pthread_cond_t cond;              /* wakes the thread to stop */
	bool stop;                        /* the thread must exit */
	bool running;                     /* a scheduled backup is being taken */
	time_t last_taken;                /* backup time of the last scheduled backup, 0: none */
	time_t last_attempt;              /* when the last scheduled run started, 0: never */
	int last_result;                  /* 0 or the negative errno of that run */
	char last_name[BRI_NAME_MAX + 1]; /* the backup it made */
	char last_error[512];             /* why it failed */
	int last_removed;                 /* backups its cleanup removed, -1: cleanup failed */
	pthread_t thread;                 /* the scheduler */
	bool started;                     /* the thread runs (main thread only) */
};

/* Scheduled restore rehearsals (-o rehearse=) and their thread (rehearsal.c). */
struct bfs_rehearsals {
	bool configured;                  /* -o rehearse= or -o checks=: folders show `rehearsal` */
	struct bri_schedule sc;           /* the schedule; kind NONE: no thread */
	pthread_mutex_t lock;             /* guards every field below but thread and started */
	pthread_cond_t cond;              /* wakes the thread to stop */
	bool stop;                        /* the thread must exit */
	bool running;                     /* a scheduled rehearsal runs */
	bool waiting_for_backup;          /* one was due but the store had no good backup */
	time_t last_attempt;              /* when this thread last rehearsed, 0: never */
	int last_result;                  /* 0 or the negative errno of that rehearsal */
	char last_name[BRI_NAME_MAX + 1]; /* the backup it rehearsed */
	char last_error[512];             /* why it failed */
	pthread_t thread;                 /* the rehearsal scheduler */
	bool started;                     /* the thread runs (main thread only) */
};

/*
 * One content version of a generated file (render.c): immutable, shared by
 * the opens that read it. (ino, gen) names it: gen is unique in the daemon
 * and new whenever the inode's content differs from its current version.
 */
struct bfs_render {
	fuse_ino_t ino; /* the generated file */
	uint64_t gen;   /* its content version */
	char *buf;      /* the content (NUL after len); never written once shared */
	size_t len;     /* bytes in buf */
};

/*
 * The FUSE requests the daemon answers, counted by kind, so that what the
 * kernel's caches save is measured: a no-change rsync of the mount makes a
 * bounded number of them. Test-only: ctl/metrics shows them
 * (bri_fuse_requests_total) when $BRI_TEST_REQUESTS is set.
 */
enum bfs_req {
	BFS_REQ_LOOKUP,
	BFS_REQ_FORGET,
	BFS_REQ_GETATTR,
	BFS_REQ_SETATTR,
	BFS_REQ_READLINK,
	BFS_REQ_OPEN,
	BFS_REQ_READ,
	BFS_REQ_WRITE,
	BFS_REQ_FLUSH,
	BFS_REQ_RELEASE,
	BFS_REQ_OPENDIR,
	BFS_REQ_READDIR,
	BFS_REQ_READDIRPLUS,
	BFS_REQ_RELEASEDIR,
	BFS_REQ_RENAME,
	BFS_REQ_STATFS,
	BFS_REQ_REFUSED, /* mknod, mkdir, create, unlink, rmdir, symlink, link */
	BFS_REQ_COUNT
};

struct bfs_render_cache;
struct bfs_nodes;

/* One mount. */
struct bfs {
	struct bri_store *store;          /* the store, opened at start */
	struct fuse_session *se;          /* for notifications */
	uid_t uid;                        /* owner of every file: the mounting user */
	gid_t gid;                        /* its group */
	struct bri_retention_rules rules; /* cleanup policy */
	struct bri_hooks hooks;           /* -o on_success=, on_failure=, hook_timeout= */
	char *checks;                     /* -o checks= (absolute), or NULL */
	struct bri_health_rules health;   /* health thresholds */
	time_t scrub_interval;            /* re-verify after this many seconds; 0: never */
	int busy_timeout_ms;              /* wait for the live database's locks; 0: default */
	time_t start_time;                /* when the daemon started */

	pthread_rwlock_t cat_lock;  /* guards cat (and its entries' verify), idmap, reports */
	struct bri_catalog *cat;    /* current catalog, never NULL after start */
	struct bfs_idmap idmap;     /* id -> index in cat */
	time_t cat_changed;         /* when the catalog last changed (ctl/ file times) */
	struct bfs_report *reports; /* restore reports (the store's, bfs_reports_sync) */
	size_t nreports;            /* entries in reports */
	struct stat reports_st;     /* the store's report file when last loaded */
	bool reports_loaded;        /* reports were loaded once */
	uint64_t report_ids;        /* last id given to a report (its inode) */
	time_t root_mtime;          /* the root's mtime: the last listing change, never back */
	struct bri_audit_cursor audit_cursor; /* ctl/log's place in audit.jsonl (ctl.c's lock) */

	pthread_mutex_t refresh_lock; /* serialises scans; guards the fields below */
	double last_check;            /* monotonic time of the last look at the store */
	struct stat dir_st;           /* the store folder at the last scan */
	double dir_scan_real;         /* wall time of the last scan */
	int store_error;              /* 0, or the negative errno of the last look */

	pthread_mutex_t op_lock; /* serialises ctl/ operations and restores */
	atomic_int op_waiters;   /* requests waiting for op_lock (bounded: BFS_OP_WAITERS_MAX) */
	/*
	 * Set by main once libfuse's loop has returned, before the threads are
	 * stopped: the loop clears the session's exit flag (fuse_session_reset)
	 * as it returns, so bfs_stopping asks both.
	 */
	atomic_bool loop_ended;

	pthread_mutex_t q_lock;            /* guards the queue, q_pushed, q_sent, stop */
	pthread_cond_t q_cond;             /* signalled on queue push and stop */
	pthread_cond_t q_done_cond;        /* signalled when the notify worker drained */
	struct bfs_inval *q_head, *q_tail; /* pending invalidations */
	struct bfs_inval *q_held;          /* entry invalidations held back during renames */
	int renames;                       /* renames into restore/ being answered */
	uint64_t q_pushed;                 /* invalidations queued so far */
	uint64_t q_sent;                   /* invalidations processed so far */
	bool stop;                         /* the workers must exit */
	pthread_cond_t verify_cond;        /* wakes the verifier (under q_lock) */
	bool verify_kick;                  /* something new to verify (under q_lock) */
	pthread_t notify_thread;           /* sends the invalidations (worker.c) */
	pthread_t verify_thread;           /* background verification (worker.c) */
	bool threads_started;              /* both run (main thread only) */

	struct bfs_render_cache *renders; /* generated content shared by opens (render.c) */
	struct bfs_nodes *nodes;          /* the inodes the kernel holds (inode.c) */
	bool no_opendir;                  /* the kernel lists folders without OPENDIR */
	struct bfs_progress progress;     /* ctl/progress (progress.c) */
	struct bfs_sched sched;           /* the backup schedule (schedule.c) */
	atomic_uint_fast64_t requests[BFS_REQ_COUNT]; /* requests answered, by kind */
	struct bfs_rehearsals rehearsals;             /* scheduled rehearsals (rehearsal.c) */
	struct bfs_offsite *offsite; /* -o offsite=: the pusher (offsite.c); NULL: none */
	long offsite_lag_warn_s;     /* -o offsite_lag_warn=, also without offsite= (0: 26 h) */
};

/* offsite.c: -o offsite=, the background push to object storage (SPEC.md 6) */
struct bfs_offsite;
/*
 * Reads the options (remote NULL: no offsite copy, fs->offsite stays NULL);
 * 0, or -EINVAL with why. retry_max_s / lag_warn_s 0: the defaults.
 */
int bfs_offsite_setup(struct bfs *fs, const char *remote, const char *endpoint,
                      const char *addressing, int lock_days, long retry_max_s, long lag_warn_s,
                      struct bri_err *err);
void bfs_offsite_free(struct bfs *fs);
/* Starts / stops the pusher thread (no-ops without offsite). */
int bfs_offsite_start(struct bfs *fs);
void bfs_offsite_stop(struct bfs *fs);
/* A backup was made: push soon. Never waits for the remote. */
void bfs_offsite_kick(struct bfs *fs);
/*
 * NAME/offsite: "uploaded <time>", "pending" or "failed: <why>", and a
 * newline, of the push state whose store file is want (zeroed: none yet),
 * and *t its time (0: none); -ESTALE when the store's state is another now.
 */
int bfs_offsite_render(struct bfs *fs, const char *name, const struct stat *want, char **out,
                       size_t *len, time_t *t);
/*
 * The offsite copy for the health rules (rules.offsite) at time now: true
 * with *w filled. Without -o offsite=, the remote the store last pushed to
 * (`bri-backup offsite push` from cron), as bri-backup health finds it;
 * false when there is none or the store can't be listed.
 */
struct bri_offsite_watch;
bool bfs_offsite_watch(struct bfs *fs, time_t now, struct bri_offsite_watch *w);

/* guard.c */
/*
 * Refuses a mount point that is the store, inside it, an ancestor of it, or
 * the live database's folder or an ancestor of it (canonical paths and
 * st_dev/st_ino): the daemon would wait on its own mount. 0, or a negative
 * errno with the reason in why.
 */
int bfs_check_mountpoint(const char *mountpoint, const char *store_dir, const char *db_path,
                         char *why, size_t why_len);

/*
 * watchdog.c: a child process that aborts the FUSE connection when the
 * daemon dies without unmounting (kill -9), so that no request waits for a
 * dead daemon whose thread is stuck in the kernel. Start after mounting and
 * daemonizing, before any thread; 0 or a negative errno (then no watchdog).
 */
int bfs_watchdog_start(const char *mountpoint);
/* After unmounting: tells the watchdog to exit without aborting, and reaps it. */
void bfs_watchdog_stop(void);

/* sighup.c: SIGHUP reopens the -o log= file; the daemon stays mounted. */
/* Installs the handler (after fuse_set_signal_handlers); 0 or a negative errno. */
int bfs_sighup_install(void);
/* Starts the thread that reopens the log (after daemonizing). */
int bfs_sighup_start(void);
/* Restores SIGHUP's default, stops the thread, closes the pipe. */
void bfs_sighup_remove(void);

/*
 * render.c: the render cache. Lock order: render_lock is a leaf, taken with
 * no other lock held and never held while rendering.
 */
int bfs_render_cache_init(struct bfs *fs);
/* Frees the cache; every rendering was put back before. */
void bfs_render_cache_fini(struct bfs *fs);
/*
 * Takes the fresh rendering buf (len bytes, malloc'd; always consumed) of
 * ino: returns in *out the inode's current version when equal (the fresh one
 * is freed), else a new current version. 0, -EFBIG (over BFS_RENDER_MAX) or
 * -ENOMEM. Give it back with bfs_render_put.
 */
int bfs_render_intern(struct bfs *fs, fuse_ino_t ino, char *buf, size_t len,
                      const struct bfs_render **out);
/* Takes one more reference to r (returned). */
const struct bfs_render *bfs_render_get(const struct bfs_render *r);
/* Drops one reference; frees the version with its last (NULL: nothing). */
void bfs_render_put(const struct bfs_render *r);
/* Versions held now and their bytes (for tests and the log). */
void bfs_render_stats(struct bfs *fs, size_t *versions, size_t *bytes);

/* inode.c: the inode scheme (its header comment) and the node table */
fuse_ino_t bfs_ino_fixed(uint64_t index, unsigned kind);
fuse_ino_t bfs_ino_version(uint64_t gen, unsigned kind);
/* The inode of kind derived from store file st of backup e. */
fuse_ino_t bfs_ino_store(const struct bri_entry *e, const struct stat *st, unsigned kind);
/* The generation of such an inode. */
uint64_t bfs_generation(const char *name, const struct stat *st, unsigned kind);
unsigned bfs_ino_kind(fuse_ino_t ino);
/* The index of a fixed inode, the st_ino of a store one, the gen of a version. */
uint64_t bfs_ino_index(fuse_ino_t ino);
int bfs_nodes_init(struct bfs *fs);
void bfs_nodes_fini(struct bfs *fs);
/*
 * Counts one kernel reference to e->ino (a lookup or readdirplus reply),
 * remembering its attributes; r (consumed, may be NULL) is a version
 * inode's content, sub its index. 0 or -ENOMEM.
 */
int bfs_node_ref(struct bfs *fs, const struct fuse_entry_param *e, const struct bfs_render *r,
                 int sub);
/* The kernel forgot nlookup references: the node goes with the last. */
void bfs_node_forget(struct bfs *fs, fuse_ino_t ino, uint64_t nlookup);
/* The attributes last replied for ino; 0, or -ENOENT when the kernel holds none. */
int bfs_node_attr(struct bfs *fs, fuse_ino_t ino, struct stat *st);
/* A new reference to a version inode's content and its index; 0 or -ESTALE. */
int bfs_node_render(struct bfs *fs, fuse_ino_t ino, const struct bfs_render **out, int *sub);
/* Nodes held (tests, logs). */
size_t bfs_nodes_count(struct bfs *fs);
int bfs_idmap_build(struct bfs_idmap *m, const struct bri_catalog *c);
/* Rebuilds the file index after an entry's store file changed; cat_lock held for writing. */
int bfs_idmap_refile(struct bfs *fs);
void bfs_idmap_free(struct bfs_idmap *m);
/* The entry with id in the current catalog, or NULL; call with cat_lock held. */
struct bri_entry *bfs_entry_by_id(struct bfs *fs, uint64_t id);
/* The store file with inode number st_ino that is a backup's which, or NULL; cat_lock held. */
const struct bfs_fileref *bfs_file_by_ino(struct bfs *fs, uint64_t st_ino, enum bfs_file which);
/* The index in idmap.files of the first file after st_ino; cat_lock held. */
size_t bfs_file_after(struct bfs *fs, uint64_t st_ino);

/* refresh.c */
/*
 * Looks at the store when BFS_REFRESH_INTERVAL passed and rescans it when
 * it changed; with force, rescans now. Returns 0, or a negative errno
 * when the store is unreadable or gone (then every root operation fails).
 */
int bfs_refresh(struct bfs *fs, bool force);
/* As bfs_refresh, looking at the store now whatever the interval. */
int bfs_refresh_look(struct bfs *fs);
/*
 * Reloads the verification result of backup id when its .verify file changed
 * (bri-backup verify while mounted): one fstatat, no rescan.
 */
void bfs_fresh_verify(struct bfs *fs, uint64_t id);
/*
 * As bfs_fresh_verify for backup id's sidecar kind (BRI_SIDECAR_VERIFY,
 * _REHEARSAL or _OFFSITE): takes a new file's identity (and for a rehearsal
 * its outcome) into the catalog and queues the invalidation of the name's
 * entry in the backup's folder (another file is another inode).
 */
void bfs_fresh_sidecar(struct bfs *fs, uint64_t id, enum bri_sidecar kind);
/*
 * Checks backup id's .db against the catalog's identity of it (inode, size,
 * mtime, ctime): st is an fstat of it (NULL: fstatat by name now). When it
 * changed in place (an admin's cp over it), records the new identity (the
 * size getattr reports) and queues the invalidation of the inode's kernel
 * attributes and pages. Returns whether it changed. Call without locks.
 */
bool bfs_db_check(struct bfs *fs, uint64_t id, const struct stat *st);
int bfs_catalog_init(struct bfs *fs);
void bfs_catalog_fini(struct bfs *fs);

/* gen.c: generated files; *out malloc'd, caller frees. Call without locks. */
int bfs_render_report(struct bfs *fs, uint64_t id, char **out, size_t *len);
/* ctl/cleanup's text: what a cleanup would remove now, and why. */
int bfs_render_cleanup_plan(struct bfs *fs, char **out, size_t *len);
/* Appends to buf (cap bytes, *pos used, NUL-terminated); what does not fit is cut. */
void bfs_appendf(char *buf, size_t cap, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* view.c: the node-kind table and the FUSE operations that dispatch on it */

/* What an open file reads, as a kind's open sets it up (file.c holds it). */
struct bfs_source {
	int fd;                          /* a store file (splice reads), or -1 */
	struct bri_reader *reader;       /* a backup of a format without a file (pages), or NULL */
	const struct bfs_render *render; /* generated content (one reference), or NULL */
	int ctl;                         /* a ctl/ file: its index, else -1 */
	bool writer;                     /* opened to write a ctl/ request */
	bool log;                        /* ctl/log: read by offset from the log's stream */
	uint64_t log_epoch;              /* the log's epoch this open reads */
	struct bfs_stream *stream;       /* an inspection file rendered as read, or NULL */
};

/*
 * Called by a kind's list for each entry, in key order: name, its entry
 * (ino 0 for "." and ".."), r a version's content (consumed) and sub its
 * index, key the entry's offset (a listing resumes after it). Returns
 * nonzero when the reply is full (the entry was not added).
 */
typedef int (*bfs_list_fn)(void *ctx, const char *name, const struct fuse_entry_param *e,
                           const struct bfs_render *r, int sub, off_t key);

/* One kind of node: a row of its module's table. NULL: not that kind of node. */
struct bfs_kind_ops {
	const char *name; /* what it is, for the log (NULL: no such kind) */
	mode_t mode;      /* file type and permission bits (ctl files: per file) */
	unsigned spaces;  /* the id spaces its inodes are in (BFS_IN_*) */
	bool singleton;   /* one node, whose inode number is the kind's number */
	/* Attributes and cache lifetimes of ino; 0 or a negative errno. */
	int (*attr)(struct bfs *fs, fuse_ino_t ino, struct fuse_entry_param *e);
	/* A folder's entry name: fills e, and r and sub for a version inode. */
	int (*lookup)(struct bfs *fs, fuse_ino_t dir, const char *name, struct fuse_entry_param *e,
	              const struct bfs_render **r, int *sub);
	/* A folder's entries whose key is over after, in key order, until add is full. */
	int (*list)(struct bfs *fs, fuse_ino_t dir, off_t after, bfs_list_fn add, void *ctx);
	/* A file's open (fi->flags, fi->direct_io, fi->keep_cache): fills src. */
	int (*open)(struct bfs *fs, fuse_ino_t ino, struct fuse_file_info *fi,
	            struct bfs_source *src);
	/* Generated content of ino (malloc'd), for kinds rendered at open. */
	int (*render)(struct bfs *fs, fuse_ino_t ino, char **out, size_t *len);
	/* A backup's kinds: attributes of ino from backup b (cat_lock held). */
	int (*entry_attr)(struct bfs *fs, const struct bri_entry *b, fuse_ino_t ino,
	                  struct fuse_entry_param *e);
	/* A symlink's target into buf (size bytes); 0 or a negative errno. */
	int (*readlink)(struct bfs *fs, fuse_ino_t ino, char *buf, size_t size);
};

/*
 * Inspection (inspectfs.c): its kinds' rows, the root's folders inspect/,
 * diff/ and at/, and the stream an open inspection file reads (a render
 * kept with the open file: a sequential read renders once, a read
 * elsewhere starts again and skips; the size was counted at stat).
 */
struct bfs_stream;
extern const struct bfs_kind_ops bfs_insp_kinds[BFS_K_COUNT];
/* Whether name is one of the root's inspection folders (a backup so named is not shown). */
bool bfs_insp_root_name(const char *name);
/* The entry of the root's inspection folder name; 0 or -ENOENT. */
int bfs_insp_root_lookup(struct bfs *fs, const char *name, struct fuse_entry_param *e);
/*
 * Adds the root's inspection folders whose key (first_key + 0, 1, 2) is over
 * after, in order; returns nonzero when the reply is full.
 */
int bfs_insp_root_list(struct bfs *fs, off_t after, off_t first_key, bfs_list_fn add, void *ctx);
/* Replies to a read of an open inspection file (exactly once). */
void bfs_stream_read(fuse_req_t req, struct bfs_stream *st, size_t size, off_t off);
void bfs_stream_free(struct bfs_stream *st);
/* Frees the specs and the live snapshot (at unmount). */
void bfs_insp_fini(struct bfs *fs);

/* The row of ino's kind, or NULL (no such kind, or not in that id space). */
const struct bfs_kind_ops *bfs_kind_of(fuse_ino_t ino);
/* 0, or -EINVAL (logged) when two modules' rows claim one kind number. */
int bfs_kinds_check(void);
/*
 * Opens a file rendered at open (the row's render), shared through the
 * render cache by (inode, generation): a row's open.
 */
int bfs_open_generated(struct bfs *fs, fuse_ino_t ino, struct fuse_file_info *fi,
                       struct bfs_source *src);
/* The inodes of backup b's folder and database file, and of restore report id. */
fuse_ino_t bfs_ino_backup_dir(const struct bri_entry *b);
fuse_ino_t bfs_ino_backup_db(const struct bri_entry *b);
fuse_ino_t bfs_ino_report(uint64_t id);
/* Whether ino is a backup's folder. */
bool bfs_ino_is_backup_dir(fuse_ino_t ino);

extern const struct fuse_lowlevel_ops bfs_ops;
/* The struct bfs of a request. */
struct bfs *bfs_of(fuse_req_t req);
/* Counts one request of kind r (the first line of every handler); returns the request's bfs. */
struct bfs *bfs_count(fuse_req_t req, enum bfs_req r);
/* Appends the request counters to buf as Prometheus lines; 0 or -ENOMEM. */
int bfs_requests_render(struct bfs *fs, char **buf, size_t *len);
/* Attributes and cache lifetimes of ino; 0 or a negative errno. */
int bfs_getattr_ino(struct bfs *fs, fuse_ino_t ino, struct fuse_entry_param *e);

/* file.c: open, read, write, flush and release of the view's files */
void bfs_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void bfs_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void bfs_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
               struct fuse_file_info *fi);
void bfs_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void bfs_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
/*
 * Frees the open files the kernel never released (the connection ended while
 * they were open); call after the session loop. Returns how many.
 */
size_t bfs_files_free_unreleased(void);

/* ctl.c: the ctl/ table (bfs_ctl_files) and its requests */
/* Takes op_lock for a request; -EBUSY when too many already wait. */
int bfs_op_lock(struct bfs *fs);
void bfs_op_unlock(struct bfs *fs);
/* The index in bfs_ctl_files of ctl/name, or -ENOENT. */
int bfs_ctl_lookup(const char *name);

/*
 * Runs the hook for operation's result (rc 0 or a negative errno) on a
 * detached thread of its own, so no request waits for it (ctl.c).
 */
void bfs_hook_async(struct bfs *fs, const char *operation, const char *name, int rc,
                    const char *reason);
/*
 * One write(2) to ctl file ctl: one request (buf, size bytes, at most one
 * trailing newline), run now. Returns 0 or a negative errno (the write's
 * result); *refused tells that the request was refused before it ran (too
 * long, two lines, invalid), which spends the open (file.c).
 */
int bfs_ctl_write(struct bfs *fs, int ctl, const char *buf, size_t size, const struct fuse_ctx *who,
                  bool *refused);
/* The content of ctl file ctl (its row's render, else empty), malloc'd. */
int bfs_render_ctl(struct bfs *fs, int ctl, char **out, size_t *len);
/* The audit context of a request by who (NULL: the daemon itself). */
struct bri_op_ctx bfs_op_ctx(const struct fuse_ctx *who);

/* restore_dir.c */
int bfs_restore_lookup(struct bfs *fs, const char *name, struct fuse_entry_param *e);
/*
 * Restores what (a backup name or "latest", resolved by the core) for the
 * caller ctx; the core keeps its report in the store (restore/NAME.report).
 * via ("restore/", "ctl/restore") is shown in ctl/progress. 0 or negative errno.
 */
int bfs_restore_run(struct bfs *fs, const char *what, const struct bri_op_ctx *ctx,
                    const char *via);
void bfs_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                const char *newname, unsigned int flags);
void bfs_reports_free(struct bfs *fs);
/* Loads the store's restore reports into fs->reports when they changed. */
void bfs_reports_sync(struct bfs *fs);

/* audit.c (daemon side): ctl/log shows the audit lines of other processes. */
/* Appends the store's audit lines written since the last call by others to the log. */
void bfs_audit_follow(struct bfs *fs);

/* worker.c */
int bfs_workers_start(struct bfs *fs);
void bfs_workers_stop(struct bfs *fs);
/* Queues the invalidation of entry name in parent / of inode ino. */
void bfs_inval_entry(struct bfs *fs, fuse_ino_t parent, const char *name);
void bfs_inval_inode(struct bfs *fs, fuse_ino_t ino);
/* Queues the invalidation of backup id's verify entry (a new result). */
void bfs_inval_verify(struct bfs *fs, uint64_t id);
/*
 * Waits (at most timeout_s) until everything queued so far was sent (or
 * held back until the renames in flight are answered).
 */
void bfs_inval_wait(struct bfs *fs, double timeout_s);
/*
 * A rename into restore/ is being answered, from its start to after its
 * reply: the kernel holds the root's, restore/'s and the backup folder's
 * locks meanwhile, which an entry invalidation there would wait for.
 */
void bfs_rename_begin(struct bfs *fs);
void bfs_rename_end(struct bfs *fs);

/*
 * Fills e for a node of the mount: inode ino, generation 1, mode, size (and
 * blocks), the mounting user as owner, and t as its three times.
 */
void bfs_fill_entry(struct bfs *fs, fuse_ino_t ino, mode_t mode, off_t size, time_t t,
                    struct fuse_entry_param *e);
/* Tells the background verifier to look for work. */
void bfs_verify_kick(struct bfs *fs);
/*
 * Whether the daemon is stopping (SIGTERM, SIGINT, the unmount: libfuse's
 * session has exited, its loop has returned (loop_ended), or the workers
 * were told to stop). Takes the struct bfs as void * so it is a bri_op_ctx
 * stop function as it is: a long operation given it stops between chunks
 * and records nothing. Cheap.
 */
bool bfs_stopping(void *fs);
/*
 * Puts the calling thread in the idle I/O class (background work: the
 * verifier, scheduled rehearsals); who names it in the log if that fails.
 */
void bfs_io_idle(const char *who);

/* progress.c */
void bfs_progress_init(struct bfs_progress *p);
void bfs_progress_fini(struct bfs_progress *p);
/*
 * Starts showing operation op ("create", "verify", "restore") of backup name
 * (NULL or "": not known yet), started by via, and points ctx's progress
 * callback at p. Call holding op_lock, with a matching bfs_progress_end.
 */
void bfs_progress_begin(struct bfs_progress *p, struct bri_op_ctx *ctx, const char *op,
                        const char *name, const char *via);
/* Ends it: name (NULL: as begun), result 0 or a negative errno, error why. */
void bfs_progress_end(struct bfs_progress *p, const char *name, int result, const char *error);
/* Ends a verification: bri_verify_backup's rc, result and error (failed: -EIO). */
void bfs_progress_end_verify(struct bfs_progress *p, int rc, const struct bri_verify_result *res,
                             const struct bri_err *err);
/* The text of ctl/progress, malloc'd. 0 or -ENOMEM. */
int bfs_progress_render(struct bfs_progress *p, char **out, size_t *len);

/* schedule.c */
/* Parses -o schedule= into fs->sched; 0, or -EINVAL with the reason in err. */
int bfs_schedule_setup(struct bfs *fs, const char *spec, struct bri_err *err);
/* Starts the scheduler thread when a schedule is set; 0 or a negative errno. */
int bfs_schedule_start(struct bfs *fs);
/* Stops it (waits for a backup being taken) and frees its state. */
void bfs_schedule_stop(struct bfs *fs);
/* The text of ctl/schedule, malloc'd. 0 or -ENOMEM. */
int bfs_schedule_render(struct bfs *fs, char **out, size_t *len);

/* rehearsal.c */
/*
 * Parses -o rehearse= into fs->rehearsals (after fs->checks is set) and sets
 * the health rules it implies; 0, or -EINVAL with the reason in err.
 */
int bfs_rehearsals_setup(struct bfs *fs, const char *spec, struct bri_err *err);
/* Starts the rehearsal thread when a schedule is set; 0 or a negative errno. */
int bfs_rehearsals_start(struct bfs *fs);
/* Stops it (waits for a rehearsal running). */
void bfs_rehearsals_stop(struct bfs *fs);
/* Appends ctl/schedule's rehearsal lines to buf (cap bytes, *pos used). */
void bfs_rehearsals_render(struct bfs *fs, char *buf, size_t cap, size_t *pos);

#endif
