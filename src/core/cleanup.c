/*
 * Removing backups, by policy (cleanup) or by request (delete), always under
 * the store's lock. The store's format removes the backup before its
 * sidecars (bri_store_remove), so an interrupted removal leaves at most an
 * orphaned metadata file that the next sweep removes, never a backup that
 * looks complete and is not.
 */
#include "bri/cleanup.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bri/audit.h"
#include "bri/catalog.h"
#include "bri/log.h"
#include "bri/pin.h"

static int remove_backup(struct bri_store *s, const char *name, struct bri_err *err)
{
	return bri_store_remove(s, name, err);
}

int bri_cleanup_plan(const struct bri_catalog *c, time_t now,
                     const struct bri_retention_rules *rules, enum bri_retention_verdict *verdict)
{
	struct bri_retention_item *items = calloc(c->n ? c->n : 1, sizeof(*items));
	int rc;

	if (!items)
		return -ENOMEM;
	for (size_t i = 0; i < c->n; i++)
		items[i] = (struct bri_retention_item){
		    .name = c->entries[i]->name,
		    .time = c->entries[i]->time,
		    .kind = c->entries[i]->kind,
		    .failed = c->entries[i]->verify.status == BRI_VERIFY_FAILED,
		    .pinned = c->entries[i]->pinned,
		};
	rc = bri_retention_plan(items, c->n, now, rules, verdict);
	free(items);
	return rc;
}

int bri_cleanup(struct bri_store *s, const struct bri_retention_rules *rules, time_t now,
		bool dry_run, const struct bri_op_ctx *ctx, struct bri_cleanup_item **items,
		size_t *n, struct bri_err *err)
{
	enum bri_retention_verdict *verdict = NULL;
	struct bri_cleanup_item *out = NULL;
	struct bri_catalog *cat = NULL;
	struct bri_err local = {0};
	char detail[128];
	int lockfd, rc, planned, removed = 0;

	if (!err)
		err = &local;
	lockfd = bri_store_lock(s, err);
	if (lockfd < 0)
		return lockfd;
	rc = bri_store_check(s, err);
	if (rc < 0)
		goto out_unlock;
	rc = bri_catalog_scan(s, NULL, &cat, err);
	if (rc < 0)
		goto out_unlock;
	verdict = calloc(cat->n ? cat->n : 1, sizeof(*verdict));
	out = calloc(cat->n ? cat->n : 1, sizeof(*out));
	if (!verdict || !out) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	planned = bri_cleanup_plan(cat, now, rules, verdict);
	if (planned < 0) {
		rc = planned == -ENOMEM
		         ? bri_err_set(err, planned, "out of memory")
		         : bri_err_set(err, planned,
		                       "retention days and keep_min must not be negative");
		goto out_free;
	}
	for (size_t i = 0; i < cat->n; i++) {
		snprintf(out[i].name, sizeof(out[i].name), "%s", cat->entries[i]->name);
		out[i].time = cat->entries[i]->time;
		out[i].verdict = verdict[i];
		if (dry_run || !bri_retention_removes(verdict[i]))
			continue;
		rc = remove_backup(s, out[i].name, err);
		bri_audit_record(s, "cleanup-remove", out[i].name, rc,
				 rc == 0 ? bri_retention_reason(verdict[i]) : err->msg, -1, ctx);
		if (rc < 0)
			goto out_free;
		removed++;
	}
	if (!dry_run) {
		snprintf(detail, sizeof(detail), "removed %d (retention %d days, keep_min %d)",
			 removed, rules->retention_days, rules->keep_min);
		bri_audit_record(s, "cleanup", "", 0, detail, -1, ctx);
		bri_audit_prune(s, now, BRI_AUDIT_RETENTION_DAYS);
	}
	*items = out;
	*n = cat->n;
	out = NULL;
	rc = dry_run ? planned : removed;
out_free:
	free(out);
	free(verdict);
	bri_catalog_free(cat);
out_unlock:
	bri_store_unlock(lockfd);
	return rc;
}

/*
 * 0 when name's .meta parses with the seed's keys, else -EINVAL with why: a
 * .db without one is not a backup (perhaps another program's database in a
 * shared folder), so a request by name does not remove it either.
 */
static int check_is_backup(struct bri_store *s, const char *name, struct bri_err *err)
{
	struct bri_err why = {0};
	struct bri_meta meta;
	char *text = NULL, *path;
	size_t len;
	int rc;

	rc = bri_store_sidecar_read(s, name, BRI_SIDECAR_META, BRI_META_MAX_BYTES, &text, &len);
	if (rc == 0) {
		rc = bri_meta_parse(text, len, &meta, &why);
		free(text);
		if (rc == 0) {
			bri_meta_free(&meta);
			return 0;
		}
	} else {
		bri_err_set(&why, rc, "metadata %s", rc == -ENOENT ? "missing" : strerror(-rc));
	}
	path = bri_store_backup_path(s, name);
	rc = bri_err_set(err, -EINVAL,
	                 "%s is not a backup (no usable metadata: %s), so it is not removed; "
	                 "remove the file yourself if you mean to",
	                 path ? path : name, why.msg);
	free(path);
	return rc;
}

static int delete_backup(struct bri_store *s, const char *name, bool lock_held,
			 const struct bri_op_ctx *ctx, struct bri_err *err)
{
	int lockfd = -1, rc;

	rc = bri_store_check_name(name, strlen(name), err);
	if (rc < 0)
		goto out_audit;
	if (!lock_held) {
		lockfd = bri_store_lock(s, err);
		if (lockfd < 0) {
			rc = lockfd;
			goto out_audit;
		}
	}
	rc = bri_store_check(s, err);
	if (rc == 0 && !bri_store_has(s, name))
		rc = bri_err_set(err, -ENOENT, "no backup named %s in %s", name, s->dir);
	else if (rc == 0)
		rc = check_is_backup(s, name, err);
	if (rc == 0 && bri_pin_exists(s, name))
		rc = bri_err_set(err, -EPERM,
		                 "backup %s is pinned, so it is not deleted; unpin it first "
		                 "(bri-backup unpin %s) if you mean to",
		                 name, name);
	if (rc == 0)
		rc = remove_backup(s, name, err);
	bri_store_unlock(lockfd);
out_audit:
	bri_audit_record(s, "delete", name, rc, rc < 0 && err ? err->msg : NULL, -1, ctx);
	return rc;
}

int bri_delete(struct bri_store *s, const char *name, const struct bri_op_ctx *ctx,
	       struct bri_err *err)
{
	return delete_backup(s, name, false, ctx, err);
}

int bri_delete_locked(struct bri_store *s, const char *name, const struct bri_op_ctx *ctx,
		      struct bri_err *err)
{
	return delete_backup(s, name, true, ctx, err);
}
