/*
 * Stats and health of a store, from its catalog: the seed's keys and
 * thresholds, plus counts by kind and by verification result, unknown .db
 * files (not backups) counted apart, and a critical level when no good
 * backup exists.
 */
#include "bri/report.h"

#include "json_number.h"

#include <errno.h>
#include <json-c/json.h>
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
	return 0;
}

static json_object *string_or_null(const char *s)
{
	return s[0] ? json_object_new_string(s) : NULL;
}

static int emit(json_object *o, char **out, size_t *len)
{
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY |
								 JSON_C_TO_STRING_SPACED |
								 JSON_C_TO_STRING_NOSLASHESCAPE);
	int rc = 0;

	if (!text || asprintf(out, "%s\n", text) < 0)
		rc = -ENOMEM;
	else
		*len = strlen(*out);
	json_object_put(o);
	return rc;
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
	}
	return emit(o, out, len);
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

#define HEALTH_LINES 12

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
	if (!c->n)
		snprintf(lines[nlines++], sizeof(lines[0]), "no backups exist");
	else if (age_hours > rules->max_age_hours)
		snprintf(lines[nlines++], sizeof(lines[0]),
			 "latest backup is %.1f hours old (more than %.0f)", age_hours,
			 rules->max_age_hours);
	if (st.total_backups < rules->min_backups)
		snprintf(lines[nlines++], sizeof(lines[0]), "only %zu backups available (fewer than %zu)",
			 st.total_backups, rules->min_backups);
	if (c->nunknown)
		snprintf(lines[nlines++], sizeof(lines[0]),
		         "%zu .db file%s in the store %s (no usable metadata; never "
		         "verified as good, never removed by cleanup), e.g. %.128s.db",
		         c->nunknown, c->nunknown == 1 ? "" : "s",
		         c->nunknown == 1 ? "is not a backup" : "are not backups",
		         c->unknown[0]->name);
	for (size_t i = 0; i < c->n && nlines < HEALTH_LINES; i++) {
		const struct bri_entry *e = c->entries[i];

		if (e->verify.status == BRI_VERIFY_FAILED)
			snprintf(lines[nlines++], sizeof(lines[0]), "backup %s failed verification: %.200s",
				 e->name, e->verify.reason);
	}
	for (size_t i = 0; i < nlines; i++)
		if (line_level[i] > level)
			level = line_level[i];

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
			if (emit(o, text, len) < 0)
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
	*text = malloc(total + 4);
	if (!*text)
		return level;
	if (!nlines)
		pos = (size_t)sprintf(*text, "ok\n");
	for (size_t i = 0; i < nlines; i++)
		pos += (size_t)sprintf(*text + pos, "%s: %s\n",
		                       bri_health_level_name(line_level[i]), lines[i]);
	*len = pos;
	return level;
}

bool bri_health_check(const struct bri_catalog *c, time_t now, const struct bri_health_rules *rules,
                      bool json, char **text, size_t *len)
{
	return bri_health_assess(c, now, rules, json, text, len) == BRI_HEALTH_OK;
}
