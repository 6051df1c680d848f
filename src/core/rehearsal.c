/*
 * Rehearsal status (include/bri/rehearsal.h): the store's
 * BRI_SIDECAR_REHEARSAL of a backup, a small JSON file written durably
 * under the store's lock, read back by the catalog, and its one-line form.
 */
#include "bri/rehearsal.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bri/catalog.h"
#include "bri/store.h"
#include "json_number.h"

int bri_rehearsal_record(struct bri_store *s, const char *name, const struct bri_rehearsal *r,
                         struct bri_err *err)
{
	char when[40];
	json_object *o;
	int lockfd, rc;

	lockfd = bri_store_lock(s, err);
	if (lockfd < 0)
		return lockfd;
	rc = bri_store_check(s, err);
	if (rc < 0 || !bri_store_has(s, name))
		goto out_unlock; /* removed meanwhile: nothing to tell of */
	o = json_object_new_object();
	if (!o) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_unlock;
	}
	bri_time_utc(r->time, when, sizeof(when));
	json_object_object_add(o, "time", json_object_new_string(when));
	json_object_object_add(o, "result", json_object_new_string(r->ok ? "ok" : "failed"));
	json_object_object_add(o, "reason", json_object_new_string(r->ok ? "" : r->reason));
	json_object_object_add(o, "verify_s", bri_json_double(r->verify_s, 3));
	json_object_object_add(o, "restore_s", bri_json_double(r->restore_s, 3));
	json_object_object_add(o, "checks", json_object_new_int64((int64_t)r->checks));
	json_object_object_add(o, "checks_failed",
	                       json_object_new_int64((int64_t)r->checks_failed));
	rc = bri_json_sidecar_write(s, name, BRI_SIDECAR_REHEARSAL, o, err);
out_unlock:
	bri_store_unlock(lockfd);
	return rc;
}

static double get_double(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return 0;
	if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
		return 0;
	return json_object_get_double(v);
}

static size_t get_count(json_object *o, const char *key)
{
	json_object *v;
	int64_t n;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
		return 0;
	n = json_object_get_int64(v);
	return n > 0 ? (size_t)n : 0;
}

int bri_rehearsal_read(const struct bri_store *s, const char *name, struct bri_rehearsal *out)
{
	json_object *o, *v;
	char *text = NULL;
	size_t len;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = bri_store_sidecar_read(s, name, BRI_SIDECAR_REHEARSAL, BRI_REHEARSAL_MAX_BYTES, &text,
	                            &len);
	if (rc < 0)
		return rc;
	o = json_tokener_parse(text);
	free(text);
	if (!o || !json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, "time", &v) ||
	    !json_object_is_type(v, json_type_string) ||
	    bri_time_parse(json_object_get_string(v), &out->time) < 0) {
		json_object_put(o);
		/* Damaged: it says nothing good. The file's presence dates nothing. */
		memset(out, 0, sizeof(*out));
		snprintf(out->reason, sizeof(out->reason),
		         "the rehearsal status file of %s is damaged", name);
		return -EINVAL;
	}
	out->ok = json_object_object_get_ex(o, "result", &v) &&
	          json_object_is_type(v, json_type_string) &&
	          !strcmp(json_object_get_string(v), "ok");
	if (json_object_object_get_ex(o, "reason", &v) && json_object_is_type(v, json_type_string))
		snprintf(out->reason, sizeof(out->reason), "%s", json_object_get_string(v));
	if (!out->ok && !out->reason[0])
		snprintf(out->reason, sizeof(out->reason), "failed");
	out->verify_s = get_double(o, "verify_s");
	out->restore_s = get_double(o, "restore_s");
	out->checks = get_count(o, "checks");
	out->checks_failed = get_count(o, "checks_failed");
	json_object_put(o);
	return 0;
}

size_t bri_rehearsal_describe(const struct bri_rehearsal *r, char *buf, size_t len)
{
	char when[40] = "", checks[64];
	struct tm tm;
	int n;

	if (!len)
		return 0;
	if (!r->time) {
		n = snprintf(buf, len, "%s\n", r->reason[0] ? r->reason : "never");
		return n < 0 ? 0 : (size_t)n < len ? (size_t)n : len - 1;
	}
	if (localtime_r(&r->time, &tm))
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M", &tm);
	snprintf(checks, sizeof(checks), "%zu check%s", r->checks, r->checks == 1 ? "" : "s");
	if (r->ok)
		n = snprintf(buf, len, "ok %s (restore %.1f s, %s)\n", when, r->restore_s, checks);
	else
		n = snprintf(buf, len, "failed: %s (%s, restore %.1f s, %s)\n", r->reason, when,
		             r->restore_s, checks);
	return n < 0 ? 0 : (size_t)n < len ? (size_t)n : len - 1;
}

const struct bri_entry *bri_rehearsal_newest(const struct bri_catalog *c)
{
	const struct bri_entry *best = NULL;

	for (size_t i = 0; c && i < c->n; i++) {
		const struct bri_entry *e = c->entries[i];

		if (e->rehearsal.time && (!best || e->rehearsal.time > best->rehearsal.time))
			best = e;
	}
	return best;
}

const struct bri_entry *bri_rehearsal_pick(const struct bri_catalog *c)
{
	const struct bri_entry *good = NULL;

	for (size_t i = 0; c && i < c->n; i++) {
		const struct bri_entry *e = c->entries[i];

		if (e->verify.status == BRI_VERIFY_FAILED)
			continue;
		if (e->kind != BRI_KIND_SAFETY)
			return e;
		if (!good)
			good = e;
	}
	return good;
}
