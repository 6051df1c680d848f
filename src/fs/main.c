/*
 * bri-backupfs: options and startup of the FUSE daemon that serves the
 * backup view of one SQLite database (SPEC.md section 4). One fuse_opt
 * table holds our -o keys; fstab-only keys are dropped; default_permissions
 * is always on. Opens the store, builds the catalog, mounts, daemonises
 * (unless -f), starts the worker threads and runs libfuse's multithreaded
 * loop until unmounted. The file system itself lives in view.c and friends.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "bri/log.h"
#include "bri/schedule.h"
#include "fs.h"

#define DEFAULT_SCRUB "7d"
#define RING_LINES    500
/* retention_days not given: the default, or no age rule when tiers are set */
#define RETENTION_DAYS_UNSET (-1000)

enum { KEY_HELP, KEY_VERSION, KEY_DISCARD };

#define BFS_OPT(t, field, v)                                                                       \
	{                                                                                          \
		t, offsetof(struct bfs_options, field), v                                          \
	}

static const struct fuse_opt bfs_opt_table[] = {
    BFS_OPT("backup_dir=%s", backup_dir, 0),
    BFS_OPT("retention_days=%d", retention_days, 0),
    BFS_OPT("keep_min=%d", keep_min, 0),
    BFS_OPT("keep_hourly=%d", keep_hourly, 0),
    BFS_OPT("keep_daily=%d", keep_daily, 0),
    BFS_OPT("keep_weekly=%d", keep_weekly, 0),
    BFS_OPT("keep_monthly=%d", keep_monthly, 0),
    BFS_OPT("keep_yearly=%d", keep_yearly, 0),
    BFS_OPT("keep_within=%s", keep_within, 0),
    BFS_OPT("on_success=%s", on_success, 0),
    BFS_OPT("on_failure=%s", on_failure, 0),
    BFS_OPT("hook_timeout=%d", hook_timeout, 0),
    BFS_OPT("checks=%s", checks, 0),
    BFS_OPT("rehearse=%s", rehearse, 0),
    BFS_OPT("scrub_interval=%s", scrub_interval, 0),
    BFS_OPT("busy_timeout=%d", busy_timeout_ms, 0),
    BFS_OPT("log=%s", log_file, 0),
    BFS_OPT("log_level=%s", log_level, 0),
    BFS_OPT("max_age_hours=%s", health[0], 0),
    BFS_OPT("warn_age=%s", health[1], 0),
    BFS_OPT("crit_age=%s", health[2], 0),
    BFS_OPT("min_backups=%s", health[3], 0),
    BFS_OPT("warn_count=%s", health[4], 0),
    BFS_OPT("crit_count=%s", health[5], 0),
    BFS_OPT("rehearse_age=%s", health[6], 0),
    BFS_OPT("schedule=%s", schedule, 0),
    BFS_OPT("follow_symlink", follow_symlink, 1),
    BFS_OPT("force", force, 1),
    BFS_OPT("store_format=%s", store_format, 0),
    BFS_OPT("key_file=%s", key_file, 0),
    BFS_OPT("offsite=%s", offsite, 0),
    BFS_OPT("endpoint=%s", endpoint, 0),
    BFS_OPT("offsite_addressing=%s", off_addr, 0),
    BFS_OPT("offsite_lock_days=%d", off_lock_days, 0),
    BFS_OPT("offsite_retry_max=%s", off_retry, 0),
    BFS_OPT("offsite_lag_warn=%s", off_lag_warn, 0),
    FUSE_OPT_KEY("-h", KEY_HELP),
    FUSE_OPT_KEY("--help", KEY_HELP),
    FUSE_OPT_KEY("-V", KEY_VERSION),
    FUSE_OPT_KEY("--version", KEY_VERSION),
    /* fstab-only keys that mount(8) may pass on */
    FUSE_OPT_KEY("noauto", KEY_DISCARD),
    FUSE_OPT_KEY("auto", KEY_DISCARD),
    FUSE_OPT_KEY("user", KEY_DISCARD),
    FUSE_OPT_KEY("nouser", KEY_DISCARD),
    FUSE_OPT_KEY("users", KEY_DISCARD),
    FUSE_OPT_KEY("owner", KEY_DISCARD),
    FUSE_OPT_KEY("group", KEY_DISCARD),
    FUSE_OPT_KEY("_netdev", KEY_DISCARD),
    FUSE_OPT_KEY("nofail", KEY_DISCARD),
    FUSE_OPT_KEY("defaults", KEY_DISCARD),
    FUSE_OPT_KEY("comment=", KEY_DISCARD),
    FUSE_OPT_KEY("x-systemd.", KEY_DISCARD),
    FUSE_OPT_END,
};

static void usage(const char *prog)
{
	printf("usage: %s [FUSE options] [-o OPTION,...] DB MOUNTPOINT\n"
	       "\n"
	       "Serves the backups of the SQLite database DB as a file system at MOUNTPOINT.\n"
	       "\n"
	       "bri-backupfs options:\n"
	       "    -o backup_dir=DIR      the store (default: <folder of DB>/backups)\n"
	       "    -o retention_days=N    ctl/cleanup removes backups older than N days (%d)\n"
	       "    -o keep_min=N          ctl/cleanup keeps the N newest good backups (%d)\n"
	       "    -o keep_hourly=N, keep_daily=N, keep_weekly=N, keep_monthly=N, keep_yearly=N\n"
	       "                           calendar tiers: keep the newest backup of each of the\n"
	       "                           last N hours/days/ISO weeks/months/years that have one\n"
	       "    -o keep_within=D       keep all backups within D (e.g. 7d, 36h, 1y6m) of the\n"
	       "                           newest; with any tier, retention_days applies only\n"
	       "                           when given too\n"
	       "    -o on_success=PROGRAM, on_failure=PROGRAM\n"
	       "                           run PROGRAM (absolute path, no shell) after a create,\n"
	       "                           verify, restore, cleanup or rehearse (ctl/, mv into\n"
	       "                           restore/, scheduled or the background verifier) that\n"
	       "                           succeeded / failed, with BRI_OPERATION, BRI_NAME,\n"
	       "                           BRI_RESULT and BRI_REASON in its environment\n"
	       "    -o hook_timeout=S      kill a hook's process group after S seconds (30)\n"
	       "    -o checks=FILE         the SQL checks of rehearsals (SELECT ...; -- expect 1)\n"
	       "    -o rehearse=WHEN       rehearse a restore of the newest good backup into a\n"
	       "                           scratch copy, with the checks: daily (02:00),\n"
	       "                           daily@HH:MM, weekly, monthly, every=N, or none\n"
	       "                           (default); with this or checks=, each backup folder\n"
	       "                           has a `rehearsal` file and ctl/health fails when the\n"
	       "                           newest rehearsal failed or is two periods old\n"
	       "    -o scrub_interval=T    re-verify backups every T seconds, or with suffix\n"
	       "                           s, m, h, d or w (default %s; 0 disables)\n"
	       "    -o busy_timeout=MS     how long create and restore wait for a writer\n"
	       "                           of the live database, and any request for the\n"
	       "                           store's lock (default 30000)\n"
	       "    -o log=FILE            append log lines to FILE too\n"
	       "    -o log_level=LEVEL     err, warn, info (default) or debug\n"
	       "    -o max_age_hours=H     ctl/health warns when the newest backup is older (24)\n"
	       "    -o min_backups=N       ctl/health warns when fewer backups exist (7)\n"
	       "    -o warn_age=T, warn_count=N\n"
	       "                           the same as max_age_hours (as a duration) and\n"
	       "                           min_backups, as bri-backup health --warn-age ...\n"
	       "    -o crit_age=T          ctl/health is critical when the newest backup is\n"
	       "                           older (not below the warning age)\n"
	       "    -o crit_count=N        ctl/health is critical when fewer backups exist\n"
	       "    -o rehearse_age=T      expect restore rehearsals: the newest one failed is\n"
	       "                           critical, older than T or none a warning (default\n"
	       "                           with rehearse= or checks=: two periods)\n"
	       "    -o schedule=WHEN       take automatic backups, each followed by a cleanup:\n"
	       "                           daily@HH:MM, daily (02:00), hourly, weekly (7 days),\n"
	       "                           monthly (30 days), every=N with suffix s, m, h,\n"
	       "                           d, or none (default); a run missed\n"
	       "                           while the machine was off runs at start-up\n"
	       "    -o follow_symlink      accept a DB or backup_dir path that is a symbolic\n"
	       "                           link and use what it points to (refused by default)\n"
	       "    -o force               accept a backup_dir that is the folder of DB\n"
	       "                           (refused by default)\n"
	       "    -o store_format=F      plain (default) or pages: the format of a new store\n"
	       "                           (an existing store keeps its own; refused if it\n"
	       "                           differs or a plain store already holds backups)\n"
	       "    -o key_file=F          the key of an encrypted page store (32 random bytes\n"
	       "                           or a passphrase; default $BRI_KEY_FILE); with\n"
	       "                           store_format=pages a new store is made encrypted\n"
	       "    -o offsite=s3://BUCKET/PREFIX\n"
	       "                           push every backup there in the background (after\n"
	       "                           each create, retrying with backoff); each backup\n"
	       "                           folder gets an offsite file (uploaded TIME, pending,\n"
	       "                           failed: WHY); credentials as the aws CLI reads them\n"
	       "    -o endpoint=URL        its S3 endpoint (default $AWS_ENDPOINT_URL, ~/.aws)\n"
	       "    -o offsite_addressing=path|virtual    bucket in the path or host name\n"
	       "    -o offsite_lock_days=N Object Lock (COMPLIANCE) on every upload\n"
	       "    -o offsite_retry_max=T longest wait between attempts (default 300 s)\n"
	       "    -o offsite_lag_warn=T  ctl/health warns when the remote lags more (26h)\n"
	       "    -h, --help             this help, then libfuse's\n"
	       "    -V, --version          versions\n"
	       "\n",
	       prog, BRI_DEFAULT_RETENTION_DAYS, BRI_DEFAULT_KEEP_MIN, DEFAULT_SCRUB);
}

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct bfs_options *o = data;

	(void)outargs;
	switch (key) {
	case KEY_HELP:
		o->show_help = 1;
		return 0;
	case KEY_VERSION:
		o->show_version = 1;
		return 0;
	case KEY_DISCARD:
		return 0;
	case FUSE_OPT_KEY_NONOPT:
		if (!o->db) {
			o->db = strdup(arg);
			return o->db ? 0 : -1;
		}
		return 1; /* the mount point, for fuse_parse_cmdline */
	default:
		return 1;
	}
}

/* Seconds in "N" or N with s, m, h, d or w (the CLI's durations); -1 when malformed. */
static long parse_interval(const char *s)
{
	long v;

	return bri_duration_parse(s, &v) < 0 ? -1 : v;
}

static int parse_level(const char *s, enum bri_log_level *out)
{
	static const char *names[] = {"err", "warn", "info", "debug"};

	for (int i = 0; i < 4; i++) {
		if (!strcmp(s, names[i])) {
			*out = (enum bri_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

/*
 * ctl/health's thresholds from -o max_age_hours= ... rehearse_age=, checked
 * by the core as `bri-backup health` checks --max-age-hours ... (after
 * bfs_rehearsals_setup: rehearse_age= wins over the two periods of
 * rehearse=). 0, or -1 with the message printed.
 */
static int setup_health(struct bfs *fs, const struct bfs_options *o)
{
	static const char *const names[] = {"max_age_hours", "warn_age",   "crit_age",
	                                    "min_backups",   "warn_count", "crit_count",
	                                    "rehearse_age"};
	struct bri_err err = {0};

	_Static_assert(sizeof(names) / sizeof(names[0]) == sizeof(o->health) / sizeof(o->health[0]),
	               "a name for each threshold");
	fs->health.max_age_hours = 24;
	fs->health.min_backups = 7;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (o->health[i] &&
		    bri_health_threshold_set(&fs->health, names[i], o->health[i], &err) < 0) {
			fprintf(stderr, "bri-backupfs: %s %s\n", names[i], err.msg);
			return -1;
		}
	}
	if (bri_health_rules_check(&fs->health, &err) < 0) {
		fprintf(stderr, "bri-backupfs: crit_age: %s\n", err.msg);
		return -1;
	}
	return 0;
}

/* -o offsite= and its companions (offsite.c); 0, or -1 with the message printed. */
static int setup_offsite(struct bfs *fs, const struct bfs_options *o)
{
	long retry = o->off_retry ? parse_interval(o->off_retry) : 0;
	long lag = o->off_lag_warn ? parse_interval(o->off_lag_warn) : 0;
	struct bri_err err = {0};

	if (retry < 0 || lag < 0) {
		fprintf(stderr,
		        "bri-backupfs: offsite_retry_max and offsite_lag_warn want seconds, "
		        "or a number with s, m, h, d or w\n");
		return -1;
	}
	if (bfs_offsite_setup(fs, o->offsite, o->endpoint, o->off_addr, o->off_lock_days, retry,
	                      lag, &err) < 0) {
		fprintf(stderr, "bri-backupfs: %s\n", err.msg);
		return -1;
	}
	return 0;
}

/* "-ofsname=DB" with the characters fuse_opt treats specially escaped. */
static int add_fsname(struct fuse_args *args, const char *db)
{
	size_t len = strlen(db);
	char *opt = malloc(len * 2 + 16);
	char *p;
	int rc;

	if (!opt)
		return -1;
	p = opt + sprintf(opt, "-ofsname=");
	for (size_t i = 0; i < len; i++) {
		if (db[i] == ',' || db[i] == '\\')
			*p++ = '\\';
		*p++ = db[i];
	}
	*p = '\0';
	rc = fuse_opt_add_arg(args, opt);
	free(opt);
	return rc;
}

static void free_options(struct bfs_options *o)
{
	free(o->db);
	free(o->backup_dir);
	free(o->scrub_interval);
	free(o->log_file);
	free(o->log_level);
	free(o->schedule);
	free(o->keep_within);
	free(o->on_success);
	free(o->on_failure);
	free(o->checks);
	free(o->rehearse);
	free(o->store_format);
	free(o->key_file);
	free(o->offsite);
	free(o->endpoint);
	free(o->off_addr);
	free(o->off_retry);
	free(o->off_lag_warn);
	for (size_t i = 0; i < sizeof(o->health) / sizeof(o->health[0]); i++)
		free(o->health[i]);
}

/* Refuses (with a message) a mount point the daemon would wait on: guard.c. */
static int refuse_own_mountpoint(const char *mountpoint, const struct bri_store *s)
{
	char why[3 * PATH_MAX];
	int rc = bfs_check_mountpoint(mountpoint, s->dir, s->db_path, why, sizeof(why));

	if (rc < 0)
		fprintf(stderr, "bri-backupfs: refusing to mount: %s\n", why);
	return rc;
}

/*
 * Started with CAP_SYS_ADMIN as an ambient capability (the hardened unit,
 * scripts/systemd/bri-backupfs.service: mount(2) without the setuid
 * fusermount3), the daemon keeps the capability in its own sets, for
 * umount2(2) at exit, but the programs it runs (the on_success= and
 * on_failure= hooks) must not inherit it. Called after the mount and before
 * any thread starts: capability sets are per thread, and new threads copy
 * this one's. Nothing to do on kernels without ambient capabilities.
 */
static void drop_ambient_caps(void)
{
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		bri_log(BRI_LOG_WARN, "cannot clear the ambient capabilities: %s", strerror(errno));
}

/*
 * The exit status for what libfuse's loop returned: 0 when it ended at the
 * unmount, the signal's number after SIGTERM or SIGINT (the unmount follows:
 * a clean stop too, as systemd's own stop of the service), a negative errno
 * when it failed.
 */
static int loop_exit_status(int rc)
{
	return rc < 0 ? 1 : 0;
}

/*
 * The kernel's open files each hold one descriptor here (a backup open
 * through the mount keeps its .db open until release), and a verification
 * or a create needs a few more: start with the soft limit of open files
 * raised to the hard limit, so that ordinary use never runs out.
 */
static void raise_open_files_limit(void)
{
	long n = bri_raise_nofile_limit();

	if (n < 0)
		bri_log(BRI_LOG_WARN, "cannot raise the limit of open files: %s",
		        strerror((int)-n));
	else
		bri_log(BRI_LOG_DEBUG, "limit of open files: %ld", n);
}

/* -o store_format=F: makes the store one of format F (bri_store_init_format). */
static int init_format(struct bri_store *s, const char *format)
{
	struct bri_err err = {0};
	int lockfd, rc;

	if (!bri_store_format(format)) {
		fprintf(stderr, "bri-backupfs: -o store_format is plain or pages, not %s\n",
		        format);
		return -EINVAL;
	}
	lockfd = bri_store_lock(s, &err);
	if (lockfd < 0) {
		fprintf(stderr, "bri-backupfs: %s\n", err.msg);
		return lockfd;
	}
	rc = bri_store_init_format(s, format, &err);
	bri_store_unlock(lockfd);
	if (rc < 0)
		fprintf(stderr, "bri-backupfs: %s\n", err.msg);
	return rc;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct bfs_options o = {.retention_days = RETENTION_DAYS_UNSET,
	                        .keep_min = BRI_DEFAULT_KEEP_MIN};
	struct fuse_cmdline_opts copts = {0};
	struct bri_store_open_opts sopts = {.create = true};
	struct bri_log_config logcfg = {.level = BRI_LOG_INFO, .ring_lines = RING_LINES};
	struct bri_err err = {0};
	struct bfs fs = {0};
	char *log_path = NULL;
	sigset_t all_signals, old_mask;
	size_t unreleased;
	long scrub;
	int ret = 1, rc;

	if (fuse_opt_parse(&args, &o, bfs_opt_table, opt_proc) < 0) {
		ret = 2;
		goto out_free_args;
	}
	if (o.show_help) {
		usage(argv[0]);
		printf("FUSE options:\n");
		fuse_cmdline_help();
		fuse_lowlevel_help();
		ret = 0;
		goto out_free_args;
	}
	if (o.show_version) {
		printf("bri-backupfs version %s\n", BRI_VERSION);
		printf("libfuse version %s\n", fuse_pkgversion());
		fuse_lowlevel_version();
		ret = 0;
		goto out_free_args;
	}
	if (add_fsname(&args, o.db ? o.db : "bri-backupfs") < 0 ||
	    fuse_opt_add_arg(&args, "-osubtype=bri-backupfs") < 0 ||
	    fuse_opt_add_arg(&args, "-odefault_permissions") < 0)
		goto out_free_args;
	if (fuse_parse_cmdline(&args, &copts) != 0) {
		ret = 2;
		goto out_free_args;
	}
	if (!o.db || !copts.mountpoint) {
		fprintf(stderr, "usage: %s [options] DB MOUNTPOINT (see --help)\n", argv[0]);
		ret = 2;
		goto out_free_cmdline;
	}
	scrub = parse_interval(o.scrub_interval ? o.scrub_interval : DEFAULT_SCRUB);
	if (scrub < 0) {
		fprintf(stderr, "bri-backupfs: scrub_interval wants seconds, or a number with s, "
		                "m, h, d or w\n");
		ret = 2;
		goto out_free_cmdline;
	}
	if (o.keep_within &&
	    bri_calendar_duration_parse(o.keep_within, &fs.rules.keep_within) < 0) {
		fprintf(stderr, "bri-backupfs: keep_within wants a duration such as 7d, 36h or "
		                "1y6m\n");
		ret = 2;
		goto out_free_cmdline;
	}
	if ((o.on_success && o.on_success[0] != '/') || (o.on_failure && o.on_failure[0] != '/') ||
	    o.hook_timeout < 0) {
		fprintf(stderr,
		        "bri-backupfs: on_success and on_failure want the absolute path of "
		        "a program (run with no shell); hook_timeout a number of seconds\n");
		ret = 2;
		goto out_free_cmdline;
	}
	if (o.checks) {
		fs.checks = bri_path_absolute(o.checks);
		if (!fs.checks)
			goto out_free_cmdline;
	}
	fs.hooks.on_success = o.on_success;
	fs.hooks.on_failure = o.on_failure;
	fs.hooks.timeout_s = o.hook_timeout;
	fs.rules.keep_hourly = o.keep_hourly;
	fs.rules.keep_daily = o.keep_daily;
	fs.rules.keep_weekly = o.keep_weekly;
	fs.rules.keep_monthly = o.keep_monthly;
	fs.rules.keep_yearly = o.keep_yearly;
	if (o.retention_days == RETENTION_DAYS_UNSET)
		o.retention_days = bri_retention_has_tiers(&fs.rules) ? BRI_RETENTION_DAYS_OFF
		                                                      : BRI_DEFAULT_RETENTION_DAYS;
	else if (o.retention_days < 0)
		o.retention_days = RETENTION_DAYS_UNSET; /* refused below */
	if (o.busy_timeout_ms < 0 || o.retention_days < BRI_RETENTION_DAYS_OFF ||
	    o.keep_min < 0 || o.keep_hourly < 0 || o.keep_daily < 0 || o.keep_weekly < 0 ||
	    o.keep_monthly < 0 || o.keep_yearly < 0) {
		fprintf(stderr, "bri-backupfs: busy_timeout, retention_days, keep_min and "
		                "keep_hourly..keep_yearly want whole numbers of 0 or more "
		                "(see --help)\n");
		ret = 2;
		goto out_free_cmdline;
	}
	if (bfs_schedule_setup(&fs, o.schedule, &err) < 0) {
		fprintf(stderr, "bri-backupfs: %s\n", err.msg);
		ret = 2;
		goto out_free_cmdline;
	}
	if (bfs_rehearsals_setup(&fs, o.rehearse, &err) < 0) {
		fprintf(stderr, "bri-backupfs: rehearse: %s\n", err.msg);
		ret = 2;
		goto out_free_cmdline;
	}
	if (setup_health(&fs, &o) < 0) {
		ret = 2;
		goto out_free_cmdline;
	}
	if (setup_offsite(&fs, &o) < 0) {
		ret = 2;
		goto out_free_cmdline;
	}
	if (o.log_level && parse_level(o.log_level, &logcfg.level) < 0) {
		fprintf(stderr, "bri-backupfs: log_level must be err, warn, info or debug\n");
		ret = 2;
		goto out_free_cmdline;
	}
	if (copts.debug)
		logcfg.level = BRI_LOG_DEBUG;
	/*
	 * Before anything is created (the log, the store folder): libfuse
	 * refuses the -o options neither table knows here, which is bad usage.
	 */
	fs.se = fuse_session_new(&args, &bfs_ops, sizeof(bfs_ops), &fs);
	if (!fs.se) {
		ret = 2;
		goto out_free_cmdline;
	}
	if (o.log_file) {
		log_path = bri_path_absolute(o.log_file);
		if (!log_path)
			goto out_session;
	}
	logcfg.to_stderr = copts.foreground;
	logcfg.to_syslog = !copts.foreground;
	logcfg.file = log_path;
	if (bri_log_init(&logcfg) < 0) {
		fprintf(stderr, "bri-backupfs: cannot open the log %s\n", log_path);
		goto out_session;
	}

	raise_open_files_limit();
	fs.uid = getuid();
	fs.gid = getgid();
	fs.start_time = time(NULL);
	fs.rules.retention_days = o.retention_days;
	fs.rules.keep_min = o.keep_min;
	fs.scrub_interval = scrub;
	fs.busy_timeout_ms = o.busy_timeout_ms;
	pthread_mutex_init(&fs.op_lock, NULL);
	pthread_mutex_init(&fs.q_lock, NULL);
	pthread_cond_init(&fs.q_cond, NULL);
	/* bfs_inval_wait waits on it with a CLOCK_MONOTONIC deadline. */
	pthread_condattr_t mono;

	pthread_condattr_init(&mono);
	pthread_condattr_setclock(&mono, CLOCK_MONOTONIC);
	pthread_cond_init(&fs.q_done_cond, &mono);
	pthread_condattr_destroy(&mono);
	pthread_cond_init(&fs.verify_cond, NULL);
	bfs_progress_init(&fs.progress);

	sopts.follow_symlink = o.follow_symlink;
	sopts.force = o.force;
	sopts.key_file = o.key_file;
	if (bri_store_open_ex(o.db, o.backup_dir, &sopts, &fs.store, &err) < 0) {
		fprintf(stderr, "bri-backupfs: %s\n", err.msg);
		goto out_log;
	}
	if (bfs_kinds_check() < 0 || bfs_render_cache_init(&fs) < 0 || bfs_nodes_init(&fs) < 0)
		goto out_catalog;
	if (refuse_own_mountpoint(copts.mountpoint, fs.store) < 0) {
		ret = 2;
		goto out_catalog;
	}
	if (o.store_format && init_format(fs.store, o.store_format) < 0)
		goto out_catalog;
	fs.store->lock_timeout_ms = o.busy_timeout_ms; /* every wait for the store's lock too */
	if (bfs_catalog_init(&fs) < 0) {
		fprintf(stderr, "bri-backupfs: cannot read the store %s\n", fs.store->dir);
		goto out_catalog;
	}
	bfs_audit_follow(&fs); /* ctl/log starts with the store's recent operations */
	if (fuse_set_signal_handlers(fs.se) != 0)
		goto out_catalog;
	if (bfs_sighup_install() < 0) /* after libfuse's: SIGHUP reopens the log */
		goto out_signals;
	if (fuse_session_mount(fs.se, copts.mountpoint) != 0)
		goto out_signals;
	drop_ambient_caps();
	bri_log(BRI_LOG_INFO, "serving the backups of %s (store %s) at %s", fs.store->db_path,
	        fs.store->dir, copts.mountpoint);
	if (fuse_daemonize(copts.foreground) != 0)
		goto out_unmount;
	/* Before any thread: a killed daemon's connection is aborted, never left hung. */
	if (bfs_watchdog_start(copts.mountpoint) < 0)
		bri_log(BRI_LOG_WARN, "no watchdog: a killed daemon may leave requests hung");
	/*
	 * Our threads start with every signal blocked (they inherit the mask),
	 * as libfuse's own workers do: SIGTERM/SIGINT must reach the thread
	 * waiting in fuse_session_loop_mt, whose wait the signal interrupts. A
	 * SIGTERM taken by the verifier or the SIGHUP thread instead would set
	 * the exit flag but leave the loop asleep until the next request: no
	 * unmount on SIGTERM.
	 */
	sigfillset(&all_signals);
	pthread_sigmask(SIG_BLOCK, &all_signals, &old_mask);
	if (bfs_workers_start(&fs) < 0) {
		pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
		bri_log(BRI_LOG_ERR, "cannot start the worker threads");
		goto out_unmount;
	}
	if (bfs_sighup_start() < 0)
		bri_log(BRI_LOG_WARN,
		        "cannot start the SIGHUP thread: SIGHUP will not reopen the log");
	rc = bfs_schedule_start(&fs);
	if (rc == 0) {
		rc = bfs_rehearsals_start(&fs);
		if (rc < 0)
			bfs_schedule_stop(&fs);
	}
	if (rc == 0 && bfs_offsite_start(&fs) < 0)
		bri_log(BRI_LOG_ERR, "cannot start the offsite thread: nothing is pushed");
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	if (rc < 0) {
		bri_log(BRI_LOG_ERR, "cannot start the scheduler threads");
		goto out_stop_workers;
	}
	if (copts.singlethread) {
		ret = loop_exit_status(fuse_session_loop(fs.se));
	} else {
		/* libfuse 3.14 warns about its own "unset" (-1) here: use its old default. */
		struct fuse_loop_config lc = {.clone_fd = copts.clone_fd, .max_idle_threads = 10};

		if (copts.max_idle_threads != UINT_MAX)
			lc.max_idle_threads = copts.max_idle_threads;

		ret = loop_exit_status(fuse_session_loop_mt(fs.se, &lc));
	}
	/* What runs on in our threads stops early (bfs_stopping): the loop reset its flag. */
	atomic_store(&fs.loop_ended, true);
	bfs_rehearsals_stop(&fs);
	bfs_schedule_stop(&fs);
	bfs_offsite_stop(&fs);
	unreleased = bfs_files_free_unreleased();
	if (unreleased)
		bri_log(BRI_LOG_INFO, "%zu open file(s) never released by the kernel: freed",
		        unreleased);
	bri_log(BRI_LOG_INFO, "unmounted %s", copts.mountpoint);
out_stop_workers:
	bfs_workers_stop(&fs);
out_unmount:
	fuse_session_unmount(fs.se);
	bfs_watchdog_stop(); /* unmounted: nothing to abort */
out_signals:
	bfs_sighup_remove();
	fuse_remove_signal_handlers(fs.se);
out_catalog:
	bfs_reports_free(&fs);
	if (fs.cat)
		bfs_catalog_fini(&fs);
	bfs_insp_fini(&fs); /* removes the live snapshot: before the store */
	bri_store_close(fs.store);
	bfs_nodes_fini(&fs); /* holds renderings: before the cache */
	bfs_render_cache_fini(&fs);
	bfs_progress_fini(&fs.progress);
out_log:
	bri_log_shutdown();
out_session:
	fuse_session_destroy(fs.se);
out_free_cmdline:
	bfs_offsite_stop(&fs);
	bfs_offsite_free(&fs);
	free(fs.checks);
	free(copts.mountpoint);
	free(log_path);
out_free_args:
	fuse_opt_free_args(&args);
	free_options(&o);
	return ret;
}
