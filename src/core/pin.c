/*
 * Pins (include/bri/pin.h): the store's BRI_SIDECAR_PIN of a backup (plain
 * format: NAME.db.pin), a small JSON file written durably under the store's
 * lock. Its presence is what pins; the content (time, reason, who) is for
 * people.
 */
#include "bri/pin.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "bri/audit.h"
#include "bri/catalog.h"
#include "bri/meta.h"
#include "json_number.h"

bool bri_pin_exists(const struct bri_store *s, const char *name)
{
	struct stat st;

	return bri_store_sidecar_stat(s, name, BRI_SIDECAR_PIN, &st) == 0;
}

/* 0 when name is a backup whose .meta parses, else -ENOENT or -EINVAL with why. */
static int check_backup(struct bri_store *s, const char *name, struct bri_err *err)
{
	char *text = NULL;
	struct bri_err why = {0};
	struct bri_meta meta;
	size_t len;
	int rc;

	if (!bri_store_has(s, name))
		return bri_err_set(err, -ENOENT, "no backup named %s in %s", name, s->dir);
	/* The metadata through the store's format (plain: NAME.db.meta; pages: NAME.meta,
	 * sealed in an encrypted store). */
	rc = bri_store_sidecar_read(s, name, BRI_SIDECAR_META, BRI_META_MAX_BYTES, &text, &len);
	if (rc < 0)
		return bri_err_set(err, -EINVAL, "%s in %s is not a backup (its metadata: %s)",
		                   name, s->dir, rc == -ENOENT ? "missing" : strerror(-rc));
	rc = bri_meta_parse(text, len, &meta, &why);
	free(text);
	if (rc < 0)
		return bri_err_set(err, -EINVAL, "%s in %s is not a backup (%s)", name, s->dir,
		                   why.msg);
	bri_meta_free(&meta);
	return 0;
}

static int check_reason(const char *reason, struct bri_err *err)
{
	size_t n = strlen(reason);

	if (n > BRI_PIN_REASON_MAX)
		return bri_err_set(err, -EINVAL, "a pin's reason has at most %d bytes, not %zu",
		                   BRI_PIN_REASON_MAX, n);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)reason[i] < 0x20 || reason[i] == 0x7f)
			return bri_err_set(err, -EINVAL,
			                   "a pin's reason is one line of text, without control "
			                   "characters");
	return 0;
}

int bri_pin(struct bri_store *s, const char *name, const char *reason, time_t now,
            const struct bri_op_ctx *ctx, struct bri_err *err)
{
	char when[40], by[64];
	json_object *o = NULL;
	int lockfd = -1, rc;

	if (!reason)
		reason = "";
	rc = bri_store_check_name(name, strlen(name), err);
	if (rc == 0)
		rc = check_reason(reason, err);
	if (rc < 0)
		goto out_audit;
	lockfd = bri_store_lock(s, err);
	if (lockfd < 0) {
		rc = lockfd;
		goto out_audit;
	}
	rc = bri_store_check(s, err);
	if (rc == 0)
		rc = check_backup(s, name, err);
	if (rc < 0)
		goto out_unlock;
	bri_time_utc(now, when, sizeof(when));
	snprintf(by, sizeof(by), "uid %u via %s", ctx ? (unsigned)ctx->uid : 0u,
	         ctx && ctx->via ? ctx->via : "?");
	o = json_object_new_object();
	if (!o) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_unlock;
	}
	json_object_object_add(o, "time", json_object_new_string(when));
	json_object_object_add(o, "reason", json_object_new_string(reason));
	json_object_object_add(o, "by", json_object_new_string(by));
	rc = bri_json_sidecar_write(s, name, BRI_SIDECAR_PIN, o, err);
out_unlock:
	bri_store_unlock(lockfd);
out_audit:
	bri_audit_record(s, "pin", name, rc, rc < 0 && err ? err->msg : reason, -1, ctx);
	return rc;
}

int bri_unpin(struct bri_store *s, const char *name, const struct bri_op_ctx *ctx,
              struct bri_err *err)
{
	int lockfd = -1, rc;

	rc = bri_store_check_name(name, strlen(name), err);
	if (rc < 0)
		goto out_audit;
	lockfd = bri_store_lock(s, err);
	if (lockfd < 0) {
		rc = lockfd;
		goto out_audit;
	}
	rc = bri_store_check(s, err);
	if (rc < 0)
		goto out_unlock;
	if (!bri_pin_exists(s, name)) {
		rc = bri_err_set(err, -ENOENT, "%s is not pinned", name);
		goto out_unlock;
	}
	rc = bri_store_sidecar_remove(s, name, BRI_SIDECAR_PIN);
	if (rc < 0)
		rc = bri_err_set(err, rc, "cannot remove the pin of %s in %s: %s", name, s->dir,
		                 strerror(-rc));
	else
		rc = bri_store_sync(s, err); /* an unpin that a crash undoes would surprise */
out_unlock:
	bri_store_unlock(lockfd);
out_audit:
	bri_audit_record(s, "unpin", name, rc, rc < 0 && err ? err->msg : NULL, -1, ctx);
	return rc;
}

int bri_pin_read(const struct bri_store *s, const char *name, struct bri_pin *out)
{
	json_object *o, *v;
	char *text = NULL;
	size_t len;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = bri_store_sidecar_read(s, name, BRI_SIDECAR_PIN, BRI_PIN_MAX_BYTES, &text, &len);
	if (rc < 0)
		return rc;
	o = json_tokener_parse(text);
	free(text);
	if (!o || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return -EINVAL;
	}
	if (json_object_object_get_ex(o, "time", &v) && json_object_is_type(v, json_type_string))
		bri_time_parse(json_object_get_string(v), &out->time);
	if (json_object_object_get_ex(o, "reason", &v) && json_object_is_type(v, json_type_string))
		snprintf(out->reason, sizeof(out->reason), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(o, "by", &v) && json_object_is_type(v, json_type_string))
		snprintf(out->by, sizeof(out->by), "%s", json_object_get_string(v));
	json_object_put(o);
	return 0;
}
