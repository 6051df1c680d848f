/*
 * The ctl/ folder as a table: one row per file, {name, mode, validate, run,
 * render}. A new ctl command is one row here (and its index in fs.h's enum
 * bfs_ctl_op, which the inode scheme numbers). Requests follow sysfs: each
 * write(2) is one request, with or without one trailing newline, and its
 * result is that write's return value (bfs_ctl_write); the reason of a
 * failure goes to the log (ctl/log). Requests are serialised by op_lock here
 * and by the store's lock across processes; the catalog is rescanned before
 * the reply, so a success is visible at once. Readable rows render from the
 * catalog and the daemon's state, never by opening backups. No FUSE replies
 * are sent here: file.c and view.c serve the table.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bri/cleanup.h"
#include "bri/create.h"
#include "bri/log.h"
#include "bri/metrics.h"
#include "bri/offsite_watch.h"
#include "bri/pin.h"
#include "bri/rehearse.h"
#include "bri/statuspage.h"
#include "bri/target.h"
#include "bri/testpoint.h"
#include "bri/verify.h"
#include "fs.h"

/* A printable copy of a request for the log (control characters as '?'). */
static void printable(const char *in, size_t len, char *out, size_t cap)
{
	size_t n = len < cap - 1 ? len : cap - 1;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];

		out[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	out[n] = '\0';
}

struct bri_op_ctx bfs_op_ctx(const struct fuse_ctx *who)
{
	struct bri_op_ctx ctx = bri_op_ctx_self("mount");

	if (who) {
		ctx.uid = who->uid;
		ctx.pid = who->pid;
	}
	return ctx;
}

/* Refuses anything that is not one valid backup name. */
static int check_name(const char *line, size_t len, struct bri_err *err)
{
	if (memchr(line, '\0', len))
		return bri_err_set(err, -EINVAL, "a backup name cannot contain NUL bytes");
	return bri_store_check_name(line, len, err);
}

/* validate of create: a new name, or nothing (an automatic name). */
static int valid_create(const char *req, size_t len, struct bri_err *err)
{
	return len == 0 ? 0 : check_name(req, len, err);
}

/* validate of delete: one backup name. */
static int valid_name(const char *req, size_t len, struct bri_err *err)
{
	return check_name(req, len, err);
}

static bool is_word(const char *req, size_t len, const char *word)
{
	return len == strlen(word) && !memcmp(req, word, len);
}

/* validate of restore: a backup name or "latest" (bri_target_resolve). */
static int valid_target(const char *req, size_t len, struct bri_err *err)
{
	return is_word(req, len, BRI_TARGET_LATEST) ? 0 : check_name(req, len, err);
}

/* validate of verify: a backup name, "latest" or "all". */
static int valid_verify(const char *req, size_t len, struct bri_err *err)
{
	return is_word(req, len, "all") ? 0 : valid_target(req, len, err);
}

/* validate of cleanup: anything. */
static int valid_any(const char *req, size_t len, struct bri_err *err)
{
	(void)req;
	(void)len;
	(void)err;
	return 0;
}

/*
 * The backup name that req (a name or "latest") means now, by the core's
 * one resolution (bri_target_resolve) over the daemon's catalog.
 */
static int resolve_name(struct bfs *fs, const char *req, char *name, struct bri_err *err)
{
	struct bri_target t;
	int rc;

	pthread_rwlock_rdlock(&fs->cat_lock);
	rc = bri_target_resolve(fs->store, fs->cat, req, BRI_TARGET_NAMES_ONLY, &t, err);
	pthread_rwlock_unlock(&fs->cat_lock);
	if (rc < 0)
		return rc;
	snprintf(name, BRI_NAME_MAX + 1, "%s", t.name);
	bri_target_free(&t);
	return 0;
}

static int run_create(struct bfs *fs, const char *line, size_t len, struct bri_op_ctx *ctx,
                      struct bri_err *err)
{
	struct bri_create_opts opts = {.busy_timeout_ms = fs->busy_timeout_ms, .now = time(NULL)};
	char *made = NULL;
	int rc;

	if (len) {
		opts.name = line;
		opts.kind = BRI_KIND_NAMED;
	} else {
		opts.kind = BRI_KIND_AUTO;
	}
	bfs_progress_begin(&fs->progress, ctx, "create", opts.name, "ctl/create");
	rc = bri_create(fs->store, &opts, ctx, &made, err);
	bfs_progress_end(&fs->progress, made, rc, err->msg);
	/* the hook hears the backup's name, the automatic one too */
	bfs_hook_async(fs, "create", made ? made : opts.name, rc,
	               rc < 0 ? (err->msg[0] ? err->msg : strerror(-rc)) : NULL);
	if (rc < 0)
		return rc;
	bri_log(BRI_LOG_INFO, "ctl/create: created backup %s", made);
	free(made);
	bfs_offsite_kick(fs);
	return 0;
}

/*
 * Verifies one backup and shows the result at once; -EIO when it failed,
 * -ECANCELED when the daemon was told to stop meanwhile (SIGTERM, SIGINT,
 * the unmount): the verification stops between chunks and records nothing,
 * as the background verifier's does, so the daemon need not wait for it.
 */
static int verify_one(struct bfs *fs, const char *name, const struct bri_op_ctx *ctx,
                      struct bri_err *err)
{
	struct bri_verify_result res = {0};
	struct bri_op_ctx shown = *ctx;
	int rc;

	shown.stop = bfs_stopping;
	shown.stop_arg = fs;
	bfs_progress_begin(&fs->progress, &shown, "verify", name, "ctl/verify");
	rc = bri_verify_backup(fs->store, name, &shown, &res, err);
	bfs_progress_end_verify(&fs->progress, rc, &res, err);
	if (rc < 0)
		return rc;
	pthread_rwlock_wrlock(&fs->cat_lock);
	struct bri_entry *e = bri_catalog_find(fs->cat, name);
	/* Only for the file checked: a newer one of that name is not. */
	if (e && bri_verify_matches(&res, &e->db_st))
		e->verify = res;
	uint64_t id = e ? e->id : 0;
	pthread_rwlock_unlock(&fs->cat_lock);
	if (e)
		bfs_inval_verify(fs, id); /* waited for before the write returns (BFS_CTL_INVAL) */
	if (res.status != BRI_VERIFY_OK)
		return bri_err_set(err, -EIO, "verification of %s failed: %s", name, res.reason);
	bri_log(BRI_LOG_INFO, "ctl/verify: %s ok", name);
	return 0;
}

static int run_verify(struct bfs *fs, const char *line, size_t len, struct bri_op_ctx *ctx,
                      struct bri_err *err)
{
	char **names = NULL, one_name[BRI_NAME_MAX + 1] = "";
	size_t n = 0, total, done = 0;
	int rc = 0;

	if (!is_word(line, len, "all")) {
		rc = resolve_name(fs, line, one_name, err);
		if (rc == 0)
			rc = verify_one(fs, one_name, ctx, err);
		/* the hook hears the backup's name, not "latest"; a stop is no verdict */
		if (rc != -ECANCELED)
			bfs_hook_async(fs, "verify", rc == 0 || one_name[0] ? one_name : line, rc,
			               rc < 0 ? (err->msg[0] ? err->msg : strerror(-rc)) : NULL);
		return rc;
	}
	pthread_rwlock_rdlock(&fs->cat_lock);
	total = fs->cat->n;
	names = calloc(total + 1, sizeof(*names));
	for (size_t i = 0; names && i < fs->cat->n; i++) {
		names[i] = strdup(fs->cat->entries[i]->name);
		if (!names[i])
			break;
		n++;
	}
	pthread_rwlock_unlock(&fs->cat_lock);
	if (!names || n < total)
		rc = bri_err_set(err, -ENOMEM, "out of memory");
	for (; rc == 0 && done < n; done++) {
		struct bri_err one = {0};
		int r;

		/* The daemon stops: the backups after the one stopped are not begun. */
		if (bfs_stopping(fs))
			break;
		r = verify_one(fs, names[done], ctx, &one);
		if (r == -ECANCELED)
			break;
		/* Removed or replaced since the listing: skipped, not a failure. */
		if (r == -ENOENT || r == -ESTALE) {
			bri_log(BRI_LOG_INFO, "ctl/verify all: %s skipped: %s", names[done],
			        one.msg);
			continue;
		}
		if (r < 0) {
			bri_log(BRI_LOG_ERR, "ctl/verify: %s", one.msg);
			if (!err->code)
				*err = one;
		}
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	rc = rc < 0 ? rc : err->code;
	/* A failed verdict found before the stop is still a failure the hook hears. */
	if (rc == 0 && done < n)
		rc = bri_err_set(err, -ECANCELED,
		                 "the daemon is stopping: %zu of %zu backups were not verified "
		                 "(nothing was recorded for them)",
		                 n - done, n);
	if (rc != -ECANCELED)
		bfs_hook_async(fs, "verify", "all", rc,
		               rc < 0 ? (err->msg[0] ? err->msg : strerror(-rc)) : NULL);
	return rc;
}

/* Cleanup by the retention rules (the core holds the store's lock). */
static int run_cleanup(struct bfs *fs, const char *line, size_t len, struct bri_op_ctx *ctx,
                       struct bri_err *err)
{
	struct bri_cleanup_item *items = NULL;
	size_t n = 0;
	int rc;

	(void)line;
	(void)len;
	rc = bri_cleanup(fs->store, &fs->rules, time(NULL), false, ctx, &items, &n, err);
	free(items);
	bfs_hook_async(fs, "cleanup", "", rc < 0 ? rc : 0,
	               rc < 0 ? (err->msg[0] ? err->msg : strerror(-rc)) : NULL);
	if (rc < 0)
		return rc;
	char described[256];

	bri_log(BRI_LOG_INFO, "ctl/cleanup: removed %d backup(s) (%s)", rc,
	        bri_retention_describe(&fs->rules, described, sizeof(described)));
	return 0;
}

static int run_delete(struct bfs *fs, const char *line, size_t len, struct bri_op_ctx *ctx,
                      struct bri_err *err)
{
	int rc;

	(void)len;
	rc = bri_delete(fs->store, line, ctx, err);
	if (rc < 0)
		return rc;
	bri_log(BRI_LOG_INFO, "ctl/delete: deleted backup %s", line);
	return 0;
}

/* validate of pin: "NAME" or "NAME REASON..." (the reason one line of text). */
static int valid_pin(const char *req, size_t len, struct bri_err *err)
{
	const char *sp = memchr(req, ' ', len);

	return check_name(req, sp ? (size_t)(sp - req) : len, err);
}

static int run_pin(struct bfs *fs, const char *line, size_t len, struct bri_op_ctx *ctx,
                   struct bri_err *err)
{
	char name[BRI_NAME_MAX + 1];
	const char *sp = memchr(line, ' ', len);
	size_t n = sp ? (size_t)(sp - line) : len;
	int rc;

	snprintf(name, sizeof(name), "%.*s", (int)n, line);
	rc = bri_pin(fs->store, name, sp ? sp + 1 : NULL, time(NULL), ctx, err);
	if (rc < 0)
		return rc;
	bri_log(BRI_LOG_INFO, "ctl/pin: pinned backup %s", name);
	return 0;
}

static int run_unpin(struct bfs *fs, const char *line, size_t len, struct bri_op_ctx *ctx,
                     struct bri_err *err)
{
	int rc;

	(void)len;
	rc = bri_unpin(fs->store, line, ctx, err);
	if (rc < 0)
		return rc;
	bri_log(BRI_LOG_INFO, "ctl/unpin: unpinned backup %s", line);
	return 0;
}

/* A restore rehearsal of one backup (or latest) with -o checks=FILE. */
static int run_rehearse(struct bfs *fs, const char *line, size_t len, struct bri_op_ctx *ctx,
                        struct bri_err *err)
{
	struct bri_rehearse_report rep;
	char name[BRI_NAME_MAX + 1];
	int rc;

	(void)len;
	rc = resolve_name(fs, line, name, err);
	if (rc < 0) {
		bfs_hook_async(fs, "rehearse", line, rc, err->msg);
		return rc;
	}
	/* Stopped with the daemon (-ECANCELED): no outcome kept, as verify_one. */
	ctx->stop = bfs_stopping;
	ctx->stop_arg = fs;
	bfs_progress_begin(&fs->progress, ctx, "rehearse", name, "ctl/rehearse");
	rc = bri_rehearse(fs->store, name, fs->checks, NULL, ctx, &rep, err);
	bfs_progress_end(&fs->progress, name, rc, err->msg);
	/* the hook hears the backup's name, not "latest"; a stop is no outcome */
	if (rc != -ECANCELED)
		bfs_hook_async(fs, "rehearse", name, rc, rc < 0 ? err->msg : NULL);
	if (rc == 0)
		bri_log(BRI_LOG_INFO,
		        "ctl/rehearse: %s ok (verify %.2f s, restore %.2f s, %zu checks)", name,
		        rep.verify_s, rep.restore_s, rep.nchecks);
	for (size_t i = 0; i < rep.nchecks; i++)
		if (!rep.checks[i].ok)
			bri_log(BRI_LOG_ERR, "ctl/rehearse: %s: check failed: %s -> %s%s%s", name,
			        rep.checks[i].sql,
			        rep.checks[i].error[0] ? rep.checks[i].error : rep.checks[i].got,
			        rep.checks[i].expect[0] ? ", expected " : "", rep.checks[i].expect);
	bri_rehearse_report_free(&rep);
	return rc;
}

struct hook_job {
	struct bri_hooks hooks; /* both programs: program, the job's own copy */
	char *program, *operation, *name, *reason;
	int rc;
};

static void *hook_main(void *arg)
{
	struct hook_job *j = arg;

	/* Not the starting thread's name (bri-verify, bri-rehearse), which it inherits. */
	pthread_setname_np(pthread_self(), "bri-hook");
	bri_hook_run(&j->hooks, j->operation, j->name, j->rc, j->reason);
	free(j->program);
	free(j->operation);
	free(j->name);
	free(j->reason);
	free(j);
	return NULL;
}

void bfs_hook_async(struct bfs *fs, const char *operation, const char *name, int rc,
                    const char *reason)
{
	const char *program = rc == 0 ? fs->hooks.on_success : fs->hooks.on_failure;
	struct hook_job *j;
	pthread_attr_t attr;
	pthread_t t;

	if (!program)
		return;
	j = calloc(1, sizeof(*j));
	if (!j)
		goto out_oom;
	j->program = strdup(program);
	j->hooks = (struct bri_hooks){
	    .on_success = j->program, .on_failure = j->program, .timeout_s = fs->hooks.timeout_s};
	j->rc = rc;
	j->operation = strdup(operation);
	j->name = strdup(name ? name : "");
	j->reason = strdup(reason ? reason : "");
	if (!j->program || !j->operation || !j->name || !j->reason)
		goto out_free;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, hook_main, j) != 0) {
		pthread_attr_destroy(&attr);
		goto out_free;
	}
	pthread_attr_destroy(&attr);
	return;
out_free:
	free(j->program);
	free(j->operation);
	free(j->name);
	free(j->reason);
	free(j);
out_oom:
	bri_log(BRI_LOG_ERR, "hook %s after %s not run: out of resources", program, operation);
}

int bfs_op_lock(struct bfs *fs)
{
	if (atomic_fetch_add(&fs->op_waiters, 1) >= BFS_OP_WAITERS_MAX) {
		atomic_fetch_sub(&fs->op_waiters, 1);
		bri_log(BRI_LOG_ERR,
		        "request refused with EBUSY (device or resource busy): the mount runs one "
		        "operation at a time (create, verify, cleanup, delete, restore) and %d "
		        "requests already wait for it, the most it lets wait; nothing was done, "
		        "retry when one has finished (ctl/progress shows what runs)",
		        BFS_OP_WAITERS_MAX);
		return -EBUSY;
	}
	pthread_mutex_lock(&fs->op_lock);
	atomic_fetch_sub(&fs->op_waiters, 1);
	return 0;
}

void bfs_op_unlock(struct bfs *fs)
{
	pthread_mutex_unlock(&fs->op_lock);
}

/* run of restore: takes op_lock itself (restore_dir.c), so the row is BFS_CTL_OWN_LOCK. */
static int run_restore(struct bfs *fs, const char *line, size_t len, struct bri_op_ctx *ctx,
                       struct bri_err *err)
{
	(void)len;
	(void)err;
	return bfs_restore_run(fs, line, ctx, "ctl/restore");
}

static int render_stats(struct bfs *fs, char **out, size_t *len)
{
	struct bri_stats st;

	pthread_rwlock_rdlock(&fs->cat_lock);
	bri_stats_compute(fs->cat, &st);
	pthread_rwlock_unlock(&fs->cat_lock);
	/* The format, logical and stored bytes, the dedup ratio (SPEC.md 5). */
	bri_stats_usage(fs->store, &st, NULL);
	return bri_stats_to_json(&st, out, len);
}

/*
 * The health rules with the offsite copy (read from the store outside
 * cat_lock) when -o offsite= is set: what ctl/health, ctl/metrics and
 * ctl/report.html judge by, as `bri-backup health --offsite` does.
 */
static struct bri_health_rules health_rules(struct bfs *fs, time_t now, struct bri_offsite_watch *w)
{
	struct bri_health_rules rules = fs->health;

	rules.offsite = bfs_offsite_watch(fs, now, w) ? w : NULL;
	return rules;
}

static int render_health(struct bfs *fs, char **out, size_t *len)
{
	/* bri_testpoint_now: the tests' fixed clock ($BRI_TEST_NOW), else time(NULL). */
	time_t now = bri_testpoint_now();
	struct bri_offsite_watch w;
	struct bri_health_rules rules = health_rules(fs, now, &w);

	*out = NULL;
	pthread_rwlock_rdlock(&fs->cat_lock);
	bri_health_check(fs->cat, now, &rules, false, out, len);
	pthread_rwlock_unlock(&fs->cat_lock);
	return *out ? 0 : -ENOMEM;
}

static int render_log(struct bfs *fs, char **out, size_t *len)
{
	bfs_audit_follow(fs); /* operations of other processes join the log first */
	return bri_log_recent(out, len);
}

static int render_metrics(struct bfs *fs, char **out, size_t *len)
{
	time_t now = bri_testpoint_now();
	struct bri_offsite_watch w;
	struct bri_health_rules rules = health_rules(fs, now, &w);
	int rc;

	pthread_rwlock_rdlock(&fs->cat_lock);
	rc = bri_metrics_render(fs->store, fs->cat, now, &rules, out, len);
	pthread_rwlock_unlock(&fs->cat_lock);
	/*
	 * Test-only ($BRI_TEST_REQUESTS): the requests the daemon answered. Not
	 * shown otherwise: every request would make a new version of the file.
	 */
	if (rc < 0 || !getenv("BRI_TEST_REQUESTS"))
		return rc;
	rc = bfs_requests_render(fs, out, len);
	if (rc < 0) {
		free(*out);
		*out = NULL;
	}
	return rc;
}

/* The status page (statuspage.h): the same bytes as `bri-backup report --html` this minute. */
static int render_report(struct bfs *fs, char **out, size_t *len)
{
	time_t now = bri_testpoint_now();
	struct bri_offsite_watch w;
	struct bri_health_rules rules = health_rules(fs, now, &w); /* w outlives st */
	struct bri_status *st = NULL;
	int rc;

	pthread_rwlock_rdlock(&fs->cat_lock);
	rc = bri_status_collect_catalog(fs->store->dir, fs->cat, now, &rules, &st);
	pthread_rwlock_unlock(&fs->cat_lock);
	if (rc < 0)
		return rc;
	/* The audit log and the usage are read outside cat_lock. */
	rc = bri_status_collect_store(st, fs->store);
	if (rc == 0)
		rc = bri_status_html(st, out, len);
	bri_status_free(st);
	return rc;
}

static int render_schedule(struct bfs *fs, char **out, size_t *len)
{
	return bfs_schedule_render(fs, out, len);
}

static int render_progress(struct bfs *fs, char **out, size_t *len)
{
	return bfs_progress_render(&fs->progress, out, len);
}

/*
 * The ctl/ files. A row without run takes no requests (EACCES at open for
 * writing); a row without render reads as empty.
 */
const struct bfs_ctl_file bfs_ctl_files[BFS_CTL_COUNT] = {
    [BFS_CTL_CREATE] = {"create", 0200, valid_create, run_create, NULL, BFS_CTL_INVAL},
    [BFS_CTL_VERIFY] = {"verify", 0200, valid_verify, run_verify, NULL, BFS_CTL_INVAL},
    [BFS_CTL_CLEANUP] = {"cleanup", 0644, valid_any, run_cleanup, bfs_render_cleanup_plan,
                         BFS_CTL_INVAL},
    [BFS_CTL_DELETE] = {"delete", 0200, valid_name, run_delete, NULL, BFS_CTL_INVAL},
    [BFS_CTL_RESTORE] = {"restore", 0200, valid_target, run_restore, NULL,
                         BFS_CTL_OWN_LOCK | BFS_CTL_INVAL},
    [BFS_CTL_STATS] = {"stats.json", 0444, NULL, NULL, render_stats, 0},
    [BFS_CTL_HEALTH] = {"health", 0444, NULL, NULL, render_health, 0},
    [BFS_CTL_LOG] = {"log", 0444, NULL, NULL, render_log, 0},
    [BFS_CTL_SCHEDULE] = {"schedule", 0444, NULL, NULL, render_schedule, 0},
    [BFS_CTL_METRICS] = {"metrics", 0444, NULL, NULL, render_metrics, 0},
    [BFS_CTL_PROGRESS] = {"progress", 0444, NULL, NULL, render_progress, 0},
    [BFS_CTL_PIN] = {"pin", 0200, valid_pin, run_pin, NULL, 0},
    [BFS_CTL_UNPIN] = {"unpin", 0200, valid_name, run_unpin, NULL, 0},
    [BFS_CTL_REHEARSE] = {"rehearse", 0200, valid_target, run_rehearse, NULL, BFS_CTL_INVAL},
    [BFS_CTL_REPORT] = {"report.html", 0444, NULL, NULL, render_report, 0},
};

int bfs_ctl_lookup(const char *name)
{
	for (int i = 0; i < BFS_CTL_COUNT; i++)
		if (!strcmp(name, bfs_ctl_files[i].name))
			return i;
	return -ENOENT;
}

int bfs_render_ctl(struct bfs *fs, int ctl, char **out, size_t *len)
{
	const struct bfs_ctl_file *c = &bfs_ctl_files[ctl];

	if (c->render)
		return c->render(fs, out, len);
	*out = calloc(1, 1);
	if (!*out)
		return -ENOMEM;
	*len = 0;
	return 0;
}

/* Guards fs->audit_cursor: one reader of audit.jsonl at a time (a leaf lock). */
static pthread_mutex_t audit_lock = PTHREAD_MUTEX_INITIALIZER;

static void audit_line(void *arg, const char *text)
{
	(void)arg;
	bri_log_ring_write(BRI_LOG_INFO, "audit: %s", text);
}

void bfs_audit_follow(struct bfs *fs)
{
	pthread_mutex_lock(&audit_lock);
	/* This daemon's own records ("mount") are in the log already. */
	bri_audit_follow(fs->store, &fs->audit_cursor, "mount", audit_line, NULL);
	pthread_mutex_unlock(&audit_lock);
}

/* Logs a refusal or failure of a request to ctl file c. */
static void log_failure(const struct bfs_ctl_file *c, const char *req, size_t len, const char *what,
                        const char *why)
{
	char shown[BRI_NAME_MAX + 8];

	printable(req, len, shown, sizeof(shown));
	bri_log(BRI_LOG_ERR, "ctl/%s '%s' %s: %s", c->name, shown, what, why);
}

/*
 * The requests that are operations, whose run runs the hook with the
 * backup's name (create: the one made; verify, rehearse: latest resolved).
 * restore's is bfs_restore_run's, for mv into restore/ and ctl/restore alike.
 */
static bool ctl_hooked(int ctl)
{
	return ctl == BFS_CTL_CREATE || ctl == BFS_CTL_VERIFY || ctl == BFS_CTL_CLEANUP ||
	       ctl == BFS_CTL_REHEARSE;
}

int bfs_ctl_write(struct bfs *fs, int ctl, const char *buf, size_t size, const struct fuse_ctx *who,
                  bool *refused)
{
	const struct bfs_ctl_file *c = &bfs_ctl_files[ctl];
	struct bri_op_ctx ctx = bfs_op_ctx(who);
	struct bri_err err = {0};
	size_t len = size;
	char *req;
	int rc;

	*refused = true;
	if (!c->run)
		return -EBADF;
	if (size > BFS_CTL_MAX) {
		bri_log(BRI_LOG_ERR, "ctl/%s: request longer than %d bytes refused", c->name,
		        BFS_CTL_MAX);
		return -EFBIG;
	}
	if (len && buf[len - 1] == '\n')
		len--; /* one trailing newline: echo's */
	if (memchr(buf, '\n', len)) {
		bri_log(BRI_LOG_ERR, "ctl/%s: more than one line refused (write one name)",
		        c->name);
		return -EINVAL;
	}
	/* Refuse a bad request before waiting for anything. */
	rc = c->validate(buf, len, &err);
	if (rc < 0) {
		log_failure(c, buf, len, "refused", err.msg);
		return rc;
	}
	*refused = false;
	req = malloc(len + 1);
	if (!req)
		return -ENOMEM;
	memcpy(req, buf, len);
	req[len] = '\0';
	if (c->flags & BFS_CTL_OWN_LOCK) {
		rc = c->run(fs, req, len, &ctx, &err);
	} else {
		rc = bfs_op_lock(fs);
		if (rc == 0) {
			rc = c->run(fs, req, len, &ctx, &err);
			/* Show the result before replying: the caller may look at once. */
			bfs_refresh(fs, true);
			bfs_op_unlock(fs);
		}
	}
	if (rc < 0 && !(c->flags & BFS_CTL_OWN_LOCK))
		log_failure(c, req, len, "failed", err.msg[0] ? err.msg : strerror(-rc));
	/* op_lock refused (too many waiting): the operation's own hook did not run */
	if (rc == -EBUSY && !(c->flags & BFS_CTL_OWN_LOCK) && ctl_hooked(ctl))
		bfs_hook_async(fs, c->name, req, rc, strerror(-rc));
	free(req);
	if (rc < 0)
		return rc;
	/*
	 * A changed listing must reach the kernel's caches before we return: a
	 * removed backup vanishes, a new one (a create, a restore's safety
	 * backup) is listed by the next readdir, which the kernel may otherwise
	 * serve from its cache of the root.
	 */
	if (c->flags & BFS_CTL_INVAL)
		bfs_inval_wait(fs, BFS_INVAL_WAIT_S);
	return 0;
}
