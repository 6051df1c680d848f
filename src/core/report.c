/*
 * Stats and health of a store, from its catalog: the seed's keys and
 * thresholds, plus counts by kind and by verification result, unknown .db
 * files (not backups) counted apart, and a critical level when no good
 * backup exists.
 */
#include "bri/report.h"
#include "bri/pin.h"
#include "bri/offsite_watch.h"
#include "bri/rehearsal.h"
#include "bri/schedule.h"

#include "json_number.h"

#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "bri/store.h"
#include <string.h>

void bri_stats_compute(const struct bri_catalog *c, struct bri_stats *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < c->n; i++) {
		const struct bri_entry *e = c->entries[i];

		out->total_backups++;
		out->total_bytes += e->db_st.st_size;
		out->by_kind[e->kind <= BRI_KIND_UNKNOWN ? e->kind : BRI_KIND_UNKNOWN]++;
		if (e->verify.status == BRI_VERIFY_OK)
			out->verified_ok++;
		else if (e->verify.status == BRI_VERIFY_FAILED)
			out->verify_failed++;
		else
			out->unverified++;
		if (e->verify.status != BRI_VERIFY_FAILED)
			out->good++;
	}
	for (size_t i = 0; i < c->nunknown; i++) {
		out->unknown_files++;
		out->unknown_bytes += c->unknown[i]->db_st.st_size;
	}
	out->by_kind[BRI_KIND_UNKNOWN] = out->unknown_files;
	out->total_size_mb = (double)out->total_bytes / (1024.0 * 1024.0);
	if (c->n) {
		const struct bri_entry *newest = c->entries[0], *oldest = c->entries[c->n - 1];

		if (newest->meta_ok)
			snprintf(out->newest_backup, sizeof(out->newest_backup), "%s",
				 newest->meta.backup_time);
		else
			bri_time_local(newest->time, out->newest_backup, sizeof(out->newest_backup));
		if (oldest->meta_ok)
			snprintf(out->oldest_backup, sizeof(out->oldest_backup), "%s",
				 oldest->meta.backup_time);
		else
			bri_time_local(oldest->time, out->oldest_backup, sizeof(out->oldest_backup));
		snprintf(out->newest_name, sizeof(out->newest_name), "%s", newest->name);
	}
}

int bri_stats_usage(struct bri_store *s, struct bri_stats *out, struct bri_err *err)
{
	uint64_t logical = 0, stored = 0;
	int rc = bri_store_usage(s, &logical, &stored, err);

	if (rc < 0)
		return rc;
	snprintf(out->format, sizeof(out->format), "%s", s->ops ? s->ops->format : "plain");
	out->logical_bytes = (int64_t)logical;
	out->stored_bytes = (int64_t)stored;
	out->dedup_ratio = stored ? (double)logical / (double)stored : 0;
	snprintf(out->encryption, sizeof(out->encryption), "%s", s->seal ? "aes-256-gcm" : "none");
	return 0;
}

static json_object *string_or_null(const char *s)
{
	return s[0] ? json_object_new_string(s) : NULL;
}

int bri_stats_to_json(const struct bri_stats *st, char **out, size_t *len)
{
	json_object *o = json_object_new_object(), *kinds = json_object_new_object();

	if (!o || !kinds) {
		json_object_put(o);
		json_object_put(kinds);
		return -ENOMEM;
	}
	json_object_object_add(o, "total_backups", json_object_new_int64((int64_t)st->total_backups));
	json_object_object_add(o, "total_size_mb",
			       bri_json_double(st->total_size_mb, 2));
	json_object_object_add(o, "newest_backup", string_or_null(st->newest_backup));
	json_object_object_add(o, "oldest_backup", string_or_null(st->oldest_backup));
	json_object_object_add(o, "total_bytes", json_object_new_int64(st->total_bytes));
	json_object_object_add(o, "newest_name", string_or_null(st->newest_name));
	for (int k = BRI_KIND_AUTO; k <= BRI_KIND_UNKNOWN; k++)
		json_object_object_add(kinds, bri_kind_name((enum bri_kind)k),
				       json_object_new_int64((int64_t)st->by_kind[k]));
	json_object_object_add(o, "by_kind", kinds);
	json_object_object_add(o, "verified_ok", json_object_new_int64((int64_t)st->verified_ok));
	json_object_object_add(o, "verify_failed", json_object_new_int64((int64_t)st->verify_failed));
	json_object_object_add(o, "unverified", json_object_new_int64((int64_t)st->unverified));
	json_object_object_add(o, "good_backups", json_object_new_int64((int64_t)st->good));
	json_object_object_add(o, "unknown_files",
	                       json_object_new_int64((int64_t)st->unknown_files));
	json_object_object_add(o, "unknown_bytes", json_object_new_int64(st->unknown_bytes));
	if (st->format[0]) {
		json_object_object_add(o, "format", json_object_new_string(st->format));
		json_object_object_add(o, "logical_bytes", json_object_new_int64(st->logical_bytes));
		json_object_object_add(o, "stored_bytes", json_object_new_int64(st->stored_bytes));
		json_object_object_add(o, "dedup_ratio",
		                       st->stored_bytes ? bri_json_double(st->dedup_ratio, 2) : NULL);
		json_object_object_add(o, "encryption", json_object_new_string(st->encryption));
	}
	return bri_json_emit(o, out, len);
}

/* The backup's time as the seed writes it: the meta's backup_time, else the entry's time. */
static void entry_created(const struct bri_entry *e, char *buf, size_t len)
{
	if (e->meta_ok && e->meta.backup_time[0])
		snprintf(buf, len, "%s", e->meta.backup_time);
	else
		bri_time_local(e->time, buf, len);
}

/* true (ok), false (failed) or null (never verified). */
static json_object *verified_of(enum bri_verify_status st)
{
	return st == BRI_VERIFY_UNVERIFIED ? NULL : json_object_new_boolean(st == BRI_VERIFY_OK);
}

/* A backup's last rehearsal (list --json), or null when never rehearsed. */
static json_object *rehearsal_json(const struct bri_rehearsal *r)
{
	json_object *o;
	char when[40];

	if (!r->time)
		return NULL;
	o = json_object_new_object();
	if (!o)
		return NULL;
	bri_time_utc(r->time, when, sizeof(when));
	json_object_object_add(o, "time", json_object_new_string(when));
	json_object_object_add(o, "result", json_object_new_string(r->ok ? "ok" : "failed"));
	json_object_object_add(o, "reason", r->ok ? NULL : json_object_new_string(r->reason));
	json_object_object_add(o, "verify_s", bri_json_double(r->verify_s, 3));
	json_object_object_add(o, "restore_s", bri_json_double(r->restore_s, 3));
	json_object_object_add(o, "checks", json_object_new_int64((int64_t)r->checks));
	json_object_object_add(o, "checks_failed",
	                       json_object_new_int64((int64_t)r->checks_failed));
	return o;
}

static json_object *entry_json(const struct bri_store *s, const struct bri_entry *e)
{
	json_object *o = json_object_new_object(), *tables = json_object_new_object();
	char created[40], filename[BRI_NAME_MAX + 8];
	char *path = s ? bri_store_backup_path(s, e->name) : NULL;
	struct bri_pin pin;

	if (!o || !tables || (s && !path)) {
		json_object_put(o);
		json_object_put(tables);
		free(path);
		return NULL;
	}
	entry_created(e, created, sizeof(created));
	snprintf(filename, sizeof(filename), "%s.db", e->name);
	for (size_t i = 0; e->meta_ok && i < e->meta.ntables; i++)
		json_object_object_add(tables, e->meta.tables[i].name,
		                       json_object_new_int64(e->meta.tables[i].rows));
	/* The seed's list keys first. */
	json_object_object_add(o, "filename", json_object_new_string(filename));
	json_object_object_add(o, "path", path ? json_object_new_string(path) : NULL);
	json_object_object_add(o, "created", json_object_new_string(created));
	json_object_object_add(o, "size_mb",
	                       bri_json_double((double)e->db_st.st_size / 1048576.0, 2));
	json_object_object_add(o, "tables", tables);
	json_object_object_add(o, "name", json_object_new_string(e->name));
	json_object_object_add(o, "kind", json_object_new_string(bri_kind_name(e->kind)));
	json_object_object_add(o, "verify",
	                       json_object_new_string(bri_verify_status_name(e->verify.status)));
	json_object_object_add(o, "verified", verified_of(e->verify.status));
	json_object_object_add(o, "size_bytes", json_object_new_int64((int64_t)e->db_st.st_size));
	json_object_object_add(o, "checksum", e->meta_ok ? string_or_null(e->meta.checksum) : NULL);
	json_object_object_add(o, "backup_time_utc",
	                       e->meta_ok ? string_or_null(e->meta.backup_time_utc) : NULL);
	json_object_object_add(o, "verified_at",
	                       e->verify.checked ? string_or_null(e->verify.checked_at) : NULL);
	json_object_object_add(o, "verify_reason", string_or_null(e->verify.reason));
	json_object_object_add(o, "meta_error", e->meta_ok ? NULL : string_or_null(e->meta_error));
	json_object_object_add(o, "pinned", json_object_new_boolean(e->pinned));
	json_object_object_add(o, "pin_reason",
	                       e->pinned && s && bri_pin_read(s, e->name, &pin) == 0
	                           ? json_object_new_string(pin.reason)
	                           : NULL);
	json_object_object_add(o, "rehearsal", rehearsal_json(&e->rehearsal));
	free(path);
	return o;
}

int bri_list_to_json(const struct bri_store *s, const struct bri_catalog *c, char **out,
                     size_t *len)
{
	json_object *arr = json_object_new_array();

	if (!arr)
		return -ENOMEM;
	/* The backups newest first, then the .db files that are not backups. */
	for (size_t i = 0; c && i < c->n + c->nunknown; i++) {
		json_object *o = entry_json(s, i < c->n ? c->entries[i] : c->unknown[i - c->n]);

		if (!o || json_object_array_add(arr, o) < 0) {
			json_object_put(o);
			json_object_put(arr);
			return -ENOMEM;
		}
	}
	return bri_json_emit(arr, out, len);
}

const char *bri_health_level_name(enum bri_health_level level)
{
	switch (level) {
	case BRI_HEALTH_OK:
		return "ok";
	case BRI_HEALTH_WARNING:
		return "warning";
	case BRI_HEALTH_CRITICAL:
		return "critical";
	}
	return "critical";
}

/* The name with '_' for '-' equals want. */
static bool threshold_is(const char *name, const char *want)
{
	for (; *name && *want; name++, want++)
		if (*name != *want && !(*name == '_' && *want == '-'))
			return false;
	return !*name && !*want;
}

int bri_health_threshold_set(struct bri_health_rules *rules, const char *name, const char *text,
                             struct bri_err *err)
{
	unsigned long count;
	double hours;
	long secs;
	char *end;

	if (threshold_is(name, "max-age-hours")) {
		errno = 0;
		hours = strtod(text, &end);
		if (errno || end == text || *end || !(hours > 0) || !isfinite(hours))
			return bri_err_set(err, -EINVAL,
			                   "wants a number of hours above 0, not '%.100s'", text);
		rules->max_age_hours = hours;
	} else if (threshold_is(name, "warn-age") || threshold_is(name, "crit-age") ||
	           threshold_is(name, "rehearse-age")) {
		if (bri_duration_parse(text, &secs) < 0 || secs <= 0)
			return bri_err_set(err, -EINVAL,
			                   "wants a duration such as 26h, 90m or 2d, not '%.100s'",
			                   text);
		hours = secs / 3600.0;
		if (name[0] == 'w') {
			rules->max_age_hours = hours;
		} else if (name[1] == 'r') {
			rules->crit_age_hours = hours;
		} else {
			/* rehearsals are expected: a failed newest one, a stale one or none fail */
			rules->rehearse_max_age_hours = hours;
			rules->rehearse_checked = true;
		}
	} else if (threshold_is(name, "min-backups") || threshold_is(name, "warn-count") ||
	           threshold_is(name, "crit-count")) {
		errno = 0;
		count = strtoul(text, &end, 10);
		if (errno || end == text || *end || *text == '-' || count > INT_MAX)
			return bri_err_set(err, -EINVAL,
			                   "wants a whole number of 0 or more, not '%.100s'", text);
		if (name[0] == 'c')
			rules->crit_backups = (size_t)count;
		else
			rules->min_backups = (size_t)count;
	} else {
		return bri_err_set(err, -ENOENT, "is not a health threshold");
	}
	return 0;
}

int bri_health_rules_check(const struct bri_health_rules *rules, struct bri_err *err)
{
	if (rules->crit_age_hours > 0 && rules->crit_age_hours < rules->max_age_hours)
		return bri_err_set(
		    err, -EINVAL,
		    "the critical age (%g hours) must not be below the warning age (%g hours)",
		    rules->crit_age_hours, rules->max_age_hours);
	return 0;
}

#define HEALTH_LINES 12

/*
 * The rehearsal rules: the newest rehearsal failed (critical), is older than
 * the threshold or none ran (warning). Adds at most one line.
 */
static void rehearsal_lines(const struct bri_catalog *c, time_t now,
                            const struct bri_health_rules *rules, char lines[][320],
                            enum bri_health_level *line_level, size_t *nlines)
{
	const struct bri_entry *e = bri_rehearsal_newest(c);
	double age_hours;

	if (!rules->rehearse_checked && rules->rehearse_max_age_hours <= 0)
		return;
	if (!c->n)
		return; /* "no backups exist" says it already */
	if (!e) {
		if (rules->rehearse_max_age_hours <= 0)
			return;
		line_level[*nlines] = BRI_HEALTH_WARNING;
		snprintf(lines[(*nlines)++], 320,
		         "no restore rehearsal has run (one is expected every %g hours)",
		         rules->rehearse_max_age_hours);
		return;
	}
	if (!e->rehearsal.ok) {
		line_level[*nlines] = BRI_HEALTH_CRITICAL;
		snprintf(lines[(*nlines)++], 320, "the last restore rehearsal (%s) failed: %.200s",
		         e->name, e->rehearsal.reason);
		return;
	}
	age_hours = difftime(now, e->rehearsal.time) / 3600.0;
	if (rules->rehearse_max_age_hours > 0 && age_hours > rules->rehearse_max_age_hours) {
		line_level[*nlines] = BRI_HEALTH_WARNING;
		snprintf(lines[(*nlines)++], 320,
		         "the last restore rehearsal (%s) is %.1f hours old (more than %g)",
		         e->name, age_hours, rules->rehearse_max_age_hours);
	}
}

/* health --json's rehearsal keys: the newest one's backup, time, age and result. */
static void add_rehearsal(json_object *o, const struct bri_catalog *c, time_t now)
{
	const struct bri_entry *e = bri_rehearsal_newest(c);
	char when[40];

	if (!e) {
		json_object_object_add(o, "rehearsal", NULL);
		return;
	}
	json_object *r = json_object_new_object();

	if (!r)
		return;
	bri_time_utc(e->rehearsal.time, when, sizeof(when));
	json_object_object_add(r, "name", json_object_new_string(e->name));
	json_object_object_add(r, "time", json_object_new_string(when));
	json_object_object_add(r, "age_hours",
	                       bri_json_double(difftime(now, e->rehearsal.time) / 3600.0, 1));
	json_object_object_add(r, "result",
	                       json_object_new_string(e->rehearsal.ok ? "ok" : "failed"));
	json_object_object_add(r, "reason", string_or_null(e->rehearsal.reason));
	json_object_object_add(o, "rehearsal", r);
}

/* health --json's offsite keys: the remote, its lag and the threshold, the backups not uploaded. */
static void add_offsite(json_object *o, const struct bri_offsite_watch *w)
{
	json_object *r = json_object_new_object();

	if (!r)
		return;
	json_object_object_add(r, "remote", json_object_new_string(w->remote));
	json_object_object_add(r, "lag_seconds", json_object_new_int64((int64_t)w->lag.lag_s));
	json_object_object_add(r, "lag_warn_seconds", json_object_new_int64((int64_t)w->lag_warn_s));
	json_object_object_add(r, "pending", json_object_new_int64(w->lag.pending + w->lag.failed));
	json_object_object_add(r, "failed", json_object_new_int64(w->lag.failed));
	json_object_object_add(r, "last_error", string_or_null(w->why));
	json_object_object_add(r, "refused", json_object_new_boolean(w->refused));
	json_object_object_add(o, "offsite", r);
}

enum bri_health_level bri_health_assess(const struct bri_catalog *c, time_t now,
                                        const struct bri_health_rules *rules, bool json,
                                        char **text, size_t *len)
{
	json_object *o = NULL, *warnings = NULL, *critical = NULL;
	enum bri_health_level level = BRI_HEALTH_OK, line_level[HEALTH_LINES];
	char lines[HEALTH_LINES][320];
	size_t nlines = 0, total = 0, pos = 0;
	struct bri_stats st;
	double age_hours = -1;

	bri_stats_compute(c, &st);
	if (c->n)
		age_hours = difftime(now, c->entries[0]->time) / 3600.0;
	/* Critical first: without a good backup there is nothing to restore. */
	if (!st.good) {
		line_level[nlines] = BRI_HEALTH_CRITICAL;
		if (!c->n)
			snprintf(lines[nlines++], sizeof(lines[0]),
			         "no good backup exists: the store has no backups");
		else
			snprintf(lines[nlines++], sizeof(lines[0]),
			         "no good backup exists: all %zu backups failed their last "
			         "verification",
			         c->n);
	}
	for (size_t i = nlines; i < HEALTH_LINES; i++)
		line_level[i] = BRI_HEALTH_WARNING;
	/* The critical thresholds (--crit-age, --crit-count) */
	if (c->n && rules->crit_age_hours > 0 && age_hours > rules->crit_age_hours) {
		line_level[nlines] = BRI_HEALTH_CRITICAL;
		snprintf(lines[nlines++], sizeof(lines[0]),
		         "latest backup is %.1f hours old (more than %g)", age_hours,
		         rules->crit_age_hours);
	}
	if (c->n && st.total_backups < rules->crit_backups) {
		line_level[nlines] = BRI_HEALTH_CRITICAL;
		snprintf(lines[nlines++], sizeof(lines[0]),
		         "only %zu backups available (fewer than %zu)", st.total_backups,
		         rules->crit_backups);
	}
	bool age_crit = c->n && rules->crit_age_hours > 0 && age_hours > rules->crit_age_hours;
	bool count_crit = c->n && st.total_backups < rules->crit_backups;

	for (size_t i = nlines; i < HEALTH_LINES; i++)
		line_level[i] = BRI_HEALTH_WARNING;
	if (!c->n)
		snprintf(lines[nlines++], sizeof(lines[0]), "no backups exist");
	else if (age_hours > rules->max_age_hours && !age_crit)
		snprintf(lines[nlines++], sizeof(lines[0]),
			 "latest backup is %.1f hours old (more than %g)", age_hours,
			 rules->max_age_hours);
	if (st.total_backups < rules->min_backups && !count_crit)
		snprintf(lines[nlines++], sizeof(lines[0]), "only %zu backups available (fewer than %zu)",
			 st.total_backups, rules->min_backups);

	if (c->nunknown)
		snprintf(lines[nlines++], sizeof(lines[0]),
		         "%zu .db file%s in the store %s (no usable metadata; never "
		         "verified as good, never removed by cleanup), e.g. %.128s.db",
		         c->nunknown, c->nunknown == 1 ? "" : "s",
		         c->nunknown == 1 ? "is not a backup" : "are not backups",
		         c->unknown[0]->name);
	rehearsal_lines(c, now, rules, lines, line_level, &nlines);
	for (size_t i = 0; i < c->n && nlines < HEALTH_LINES; i++) {
		const struct bri_entry *e = c->entries[i];

		if (e->verify.status == BRI_VERIFY_FAILED)
			snprintf(lines[nlines++], sizeof(lines[0]), "backup %s failed verification: %.200s",
				 e->name, e->verify.reason);
	}
	/* The offsite copy's line comes last, a warning (its own buffer: it holds a URL and a reason). */
	char offsite[1200];
	bool off = bri_offsite_watch_line(rules->offsite, offsite, sizeof(offsite));

	if (off && level < BRI_HEALTH_WARNING)
		level = BRI_HEALTH_WARNING;
	for (size_t i = 0; i < nlines; i++)
		if (line_level[i] > level)
			level = line_level[i];
	/* Critical lines first, each level in its order (a stable partition). */
	for (size_t i = 1; i < nlines; i++) {
		for (size_t j = i; j > 0 && line_level[j] > line_level[j - 1]; j--) {
			char tmp[320];
			enum bri_health_level tl = line_level[j];

			memcpy(tmp, lines[j], sizeof(tmp));
			memcpy(lines[j], lines[j - 1], sizeof(tmp));
			memcpy(lines[j - 1], tmp, sizeof(tmp));
			line_level[j] = line_level[j - 1];
			line_level[j - 1] = tl;
		}
	}

	if (json) {
		o = json_object_new_object();
		warnings = json_object_new_array();
		critical = json_object_new_array();
		if (o && warnings && critical) {
			json_object_object_add(
			    o, "status", json_object_new_string(bri_health_level_name(level)));
			for (size_t i = 0; i < nlines; i++)
				json_object_array_add(
				    line_level[i] == BRI_HEALTH_CRITICAL ? critical : warnings,
				    json_object_new_string(lines[i]));
			if (off)
				json_object_array_add(warnings, json_object_new_string(offsite));
			json_object_object_add(o, "critical", critical);
			json_object_object_add(o, "warnings", warnings);
			json_object_object_add(o, "total_backups",
					       json_object_new_int64((int64_t)st.total_backups));
			json_object_object_add(o, "good_backups",
			                       json_object_new_int64((int64_t)st.good));
			json_object_object_add(o, "latest_age_hours",
					       age_hours < 0 ? NULL
							     : bri_json_double(age_hours, 1));
			json_object_object_add(o, "verify_failed",
					       json_object_new_int64((int64_t)st.verify_failed));
			json_object_object_add(o, "unknown_files",
			                       json_object_new_int64((int64_t)st.unknown_files));
			if (rules->rehearse_checked || rules->rehearse_max_age_hours > 0)
				add_rehearsal(o, c, now);
			if (rules->offsite && rules->offsite->remote[0])
				add_offsite(o, rules->offsite);
			if (bri_json_emit(o, text, len) < 0)
				*text = NULL;
		} else {
			json_object_put(o);
			json_object_put(warnings);
			json_object_put(critical);
			*text = NULL;
		}
		return level;
	}
	for (size_t i = 0; i < nlines; i++)
		total += strlen(lines[i]) + 12;
	total += off ? strlen(offsite) + 12 : 0;
	*text = malloc(total + 4);
	if (!*text)
		return level;
	if (!nlines && !off)
		pos = (size_t)sprintf(*text, "ok\n");
	for (size_t i = 0; i < nlines; i++)
		pos += (size_t)sprintf(*text + pos, "%s: %s\n",
		                       bri_health_level_name(line_level[i]), lines[i]);
	if (off)
		pos += (size_t)sprintf(*text + pos, "warning: %s\n", offsite);
	*len = pos;
	return level;
}

bool bri_health_check(const struct bri_catalog *c, time_t now, const struct bri_health_rules *rules,
                      bool json, char **text, size_t *len)
{
	return bri_health_assess(c, now, rules, json, text, len) == BRI_HEALTH_OK;
}

void bri_health_nagios(const struct bri_catalog *c, time_t now,
                       const struct bri_health_rules *rules, char **text)
{
	static const char *const word[] = {"OK", "WARNING", "CRITICAL"};
	enum bri_health_level level;
	char *lines = NULL, *first, *nl, crit_age[32] = "", crit_n[32] = "";
	size_t len = 0;
	struct bri_stats st;
	long age = -1;

	*text = NULL;
	level = bri_health_assess(c, now, rules, false, &lines, &len);
	if (!lines)
		return;
	bri_stats_compute(c, &st);
	if (c->n)
		age = (long)difftime(now, c->entries[0]->time);
	/* The first line is the worst problem (critical ones come first). */
	first = lines;
	nl = strchr(first, '\n');
	if (nl)
		*nl = '\0';
	if (level != BRI_HEALTH_OK && strchr(first, ':'))
		first = strchr(first, ':') + 2;
	else if (level == BRI_HEALTH_OK)
		first = "";
	if (rules->crit_age_hours > 0)
		snprintf(crit_age, sizeof(crit_age), "%.0f", rules->crit_age_hours * 3600);
	if (rules->crit_backups)
		snprintf(crit_n, sizeof(crit_n), "%zu", rules->crit_backups);
	char head[400];
	if (level == BRI_HEALTH_OK)
		snprintf(head, sizeof(head), "%zu backups, %zu good, newest %.1f hours old",
		         st.total_backups, st.good, age / 3600.0);
	else
		snprintf(head, sizeof(head), "%s", first);
	/* '|' separates the performance data: keep it out of the text */
	for (char *p = head; *p; p++)
		if (*p == '|')
			*p = '/';
	char age_s[32] = "";
	if (age >= 0)
		snprintf(age_s, sizeof(age_s), "%lds", age);
	else
		snprintf(age_s, sizeof(age_s), "U");
	/* With rehearsals configured, the newest one's age (U: none ran). */
	char rehearsal[64] = "";
	if (rules->rehearse_checked || rules->rehearse_max_age_hours > 0) {
		const struct bri_entry *r = bri_rehearsal_newest(c);
		char warn[32] = "";

		if (rules->rehearse_max_age_hours > 0)
			snprintf(warn, sizeof(warn), "%.0f", rules->rehearse_max_age_hours * 3600);
		if (r)
			snprintf(rehearsal, sizeof(rehearsal), " rehearsal_age=%lds;%s",
			         (long)difftime(now, r->rehearsal.time), warn);
		else
			snprintf(rehearsal, sizeof(rehearsal), " rehearsal_age=U;%s", warn);
	}
	/* With an offsite copy watched, its lag and threshold. */
	char offsite[64] = "";
	if (rules->offsite && rules->offsite->remote[0])
		snprintf(offsite, sizeof(offsite), " offsite_lag=%.0fs;%.0f",
		         rules->offsite->lag.lag_s, rules->offsite->lag_warn_s);
	if (asprintf(text, "BRI-BACKUP %s - %s | age=%s;%.0f;%s backups=%zu;%zu;%s good=%zu%s%s\n",
	             word[level], head, age_s, rules->max_age_hours * 3600, crit_age,
	             st.total_backups, rules->min_backups, crit_n, st.good, rehearsal,
	             offsite) < 0)
		*text = NULL;
	free(lines);
}
