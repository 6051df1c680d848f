/*
 * Restore reports in the store (include/bri/reports.h): a small JSON-lines
 * file rewritten durably (store_write_sealed: sealed in an encrypted store)
 * under the store's lock. The file is capped; parsing is json-c's, line by
 * line.
 */
#include "bri/reports.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seal.h"

void bri_reports_free(struct bri_report_rec *r, size_t n)
{
	for (size_t i = 0; r && i < n; i++)
		free(r[i].text);
	free(r);
}

/* One line into rec; false when it is not a report. */
static bool parse_line(const char *line, struct bri_report_rec *rec)
{
	enum json_tokener_error jerr;
	json_object *o, *name, *when, *text;
	bool ok = false;

	o = json_tokener_parse_verbose(line, &jerr);
	if (!o)
		return false;
	if (json_object_object_get_ex(o, "name", &name) &&
	    json_object_is_type(name, json_type_string) &&
	    json_object_object_get_ex(o, "time", &when) &&
	    json_object_is_type(when, json_type_int) &&
	    json_object_object_get_ex(o, "text", &text) &&
	    json_object_is_type(text, json_type_string) &&
	    bri_store_check_name(json_object_get_string(name),
	                         (size_t)json_object_get_string_len(name), NULL) == 0) {
		snprintf(rec->name, sizeof(rec->name), "%s", json_object_get_string(name));
		rec->time = (time_t)json_object_get_int64(when);
		rec->len = (size_t)json_object_get_string_len(text);
		if (rec->len > BRI_REPORT_TEXT_MAX)
			rec->len = BRI_REPORT_TEXT_MAX;
		rec->text = strndup(json_object_get_string(text), rec->len);
		ok = rec->text != NULL;
	}
	json_object_put(o);
	return ok;
}

int bri_reports_load(const struct bri_store *s, struct bri_report_rec **out, size_t *n)
{
	struct bri_report_rec *recs;
	char *text = NULL, *line, *save = NULL;
	size_t len = 0, used = 0;
	int rc;

	*out = NULL;
	*n = 0;
	rc = store_read_sealed(s, BRI_REPORTS_FILE, BRI_REPORTS_FILE_MAX, &text, &len);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	recs = calloc(BRI_REPORTS_MAX + 1, sizeof(*recs));
	if (!recs) {
		free(text);
		return -ENOMEM;
	}
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct bri_report_rec rec = {0};

		if (!parse_line(line, &rec))
			continue;
		/* A later line of the same name replaces an earlier one. */
		for (size_t i = 0; i < used; i++) {
			if (!strcmp(recs[i].name, rec.name)) {
				free(recs[i].text);
				memmove(&recs[i], &recs[i + 1], (used - i - 1) * sizeof(*recs));
				used--;
				break;
			}
		}
		if (used == BRI_REPORTS_MAX) {
			free(recs[0].text);
			memmove(&recs[0], &recs[1], (used - 1) * sizeof(*recs));
			used--;
		}
		recs[used++] = rec;
	}
	free(text);
	*out = recs;
	*n = used;
	return 0;
}

/* Appends the JSON line of one report to the growing buffer (*buf, *len). */
static int add_line(char **buf, size_t *len, const char *name, time_t when, const char *text)
{
	json_object *o = json_object_new_object();
	const char *j;
	size_t jl;
	char *nb;

	if (!o)
		return -ENOMEM;
	json_object_object_add(o, "name", json_object_new_string(name));
	json_object_object_add(o, "time", json_object_new_int64((int64_t)when));
	json_object_object_add(o, "text", json_object_new_string(text));
	j = json_object_to_json_string_ext(o,
	                                   JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	jl = j ? strlen(j) : 0;
	nb = j ? realloc(*buf, *len + jl + 2) : NULL;
	if (!nb) {
		json_object_put(o);
		return -ENOMEM;
	}
	memcpy(nb + *len, j, jl);
	nb[*len + jl] = '\n';
	*len += jl + 1;
	nb[*len] = '\0';
	*buf = nb;
	json_object_put(o);
	return 0;
}

int bri_reports_add(struct bri_store *s, const char *name, time_t when, const char *text,
                    struct bri_err *err)
{
	struct bri_report_rec *recs = NULL;
	char *buf = NULL, *cut = NULL;
	size_t n = 0, len = 0;
	int rc;

	rc = bri_reports_load(s, &recs, &n);
	if (rc < 0)
		return bri_err_set(err, rc, "cannot read %s: %s", BRI_REPORTS_FILE, strerror(-rc));
	if (strlen(text) > BRI_REPORT_TEXT_MAX) {
		cut = strndup(text, BRI_REPORT_TEXT_MAX);
		if (!cut) {
			rc = bri_err_set(err, -ENOMEM, "out of memory");
			goto out_free;
		}
		text = cut;
	}
	/* The others (not of this name), newest BRI_REPORTS_MAX - 1, then this one. */
	size_t others = 0;

	for (size_t i = 0; i < n; i++)
		others += strcmp(recs[i].name, name) != 0;
	for (size_t i = 0, seen = 0; i < n; i++) {
		if (!strcmp(recs[i].name, name))
			continue;
		if (others - seen++ >= BRI_REPORTS_MAX)
			continue; /* the oldest beyond the cap */
		rc = add_line(&buf, &len, recs[i].name, recs[i].time, recs[i].text);
		if (rc < 0)
			break;
	}
	if (rc == 0)
		rc = add_line(&buf, &len, name, when, text);
	if (rc < 0) {
		rc = bri_err_set(err, rc, "out of memory");
		goto out_free;
	}
	rc = store_write_sealed(s, BRI_REPORTS_FILE, buf, len, err);
out_free:
	free(buf);
	free(cut);
	bri_reports_free(recs, n);
	return rc;
}
