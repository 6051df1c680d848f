/*
 * NAME.db.meta: parsing (strict about the seed's keys and their types,
 * bounded in size and depth, ignoring unknown keys) and formatting (the
 * seed's keys first, in the seed's order, then ours).
 */
#include "bri/meta.h"

#include "json_number.h"

#include <ctype.h>
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 8
#define TABLES_MAX 100000

static const char *kind_names[] = {"auto", "named", "safety", "unknown"};

const char *bri_kind_name(enum bri_kind kind)
{
	return kind <= BRI_KIND_UNKNOWN ? kind_names[kind] : "unknown";
}

enum bri_kind bri_kind_parse(const char *s)
{
	for (int k = BRI_KIND_AUTO; s && k < BRI_KIND_UNKNOWN; k++)
		if (strcmp(s, kind_names[k]) == 0)
			return (enum bri_kind)k;
	return BRI_KIND_UNKNOWN;
}

static json_object *parse_object(const char *json, size_t len, struct bri_err *err)
{
	struct json_tokener *tok;
	json_object *obj;
	size_t end;

	if (len > BRI_META_MAX_BYTES) {
		bri_err_set(err, -EINVAL, "metadata is %zu bytes, more than the %u allowed", len,
			    BRI_META_MAX_BYTES);
		return NULL;
	}
	if (len > INT32_MAX) {
		bri_err_set(err, -EINVAL, "metadata too large");
		return NULL;
	}
	tok = json_tokener_new_ex(JSON_MAX_DEPTH);
	if (!tok) {
		bri_err_set(err, -ENOMEM, "out of memory");
		return NULL;
	}
	obj = json_tokener_parse_ex(tok, json, (int)len);
	if (!obj) {
		enum json_tokener_error e = json_tokener_get_error(tok);

		bri_err_set(err, -EINVAL, "metadata is not valid JSON: %s",
			    e == json_tokener_continue ? "unexpected end of input"
						       : json_tokener_error_desc(e));
		json_tokener_free(tok);
		return NULL;
	}
	end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	while (end < len && isspace((unsigned char)json[end]))
		end++;
	if (end != len || memchr(json, '\0', len)) {
		bri_err_set(err, -EINVAL, "metadata has trailing data after the JSON object");
		json_object_put(obj);
		return NULL;
	}
	if (!json_object_is_type(obj, json_type_object)) {
		bri_err_set(err, -EINVAL, "metadata is not a JSON object");
		json_object_put(obj);
		return NULL;
	}
	return obj;
}

static json_object *get_typed(json_object *obj, const char *key, json_type type, bool required,
			      struct bri_err *err)
{
	json_object *v;

	if (!json_object_object_get_ex(obj, key, &v) || json_object_is_type(v, json_type_null)) {
		if (required)
			bri_err_set(err, -EINVAL, "metadata lacks \"%s\"", key);
		return NULL;
	}
	if (type == json_type_double && json_object_is_type(v, json_type_int))
		return v;
	if (!json_object_is_type(v, type)) {
		bri_err_set(err, -EINVAL, "metadata \"%s\" has the wrong type (%s)", key,
			    json_type_to_name(json_object_get_type(v)));
		return NULL;
	}
	return v;
}

static int get_int(json_object *obj, const char *key, bool required, int64_t *out,
		   struct bri_err *err)
{
	json_object *v;

	err->code = 0;
	v = get_typed(obj, key, json_type_int, required, err);
	if (!v)
		return err->code;
	errno = 0;
	*out = json_object_get_int64(v);
	if (errno || *out < 0)
		return bri_err_set(err, -EINVAL, "metadata \"%s\" is out of range", key);
	return 0;
}

static int parse_tables(json_object *tables, struct bri_meta *m, struct bri_err *err)
{
	size_t n = (size_t)json_object_object_length(tables), i = 0;

	if (n > TABLES_MAX)
		return bri_err_set(err, -EINVAL, "metadata lists too many tables (%zu)", n);
	m->tables = calloc(n ? n : 1, sizeof(*m->tables));
	if (!m->tables)
		return bri_err_set(err, -ENOMEM, "out of memory");
	json_object_object_foreach(tables, key, val)
	{
		int64_t rows;

		if (!json_object_is_type(val, json_type_int))
			return bri_err_set(err, -EINVAL,
					   "metadata row count of table \"%s\" is not an integer",
					   key);
		errno = 0;
		rows = json_object_get_int64(val);
		if (errno || rows < 0)
			return bri_err_set(err, -EINVAL,
					   "metadata row count of table \"%s\" is out of range", key);
		m->tables[i].name = strdup(key);
		if (!m->tables[i].name)
			return bri_err_set(err, -ENOMEM, "out of memory");
		m->tables[i].rows = rows;
		m->ntables = ++i;
	}
	return 0;
}

static int parse_checksum(const char *s, char out[BRI_CHECKSUM_HEX_LEN + 1], struct bri_err *err)
{
	if (strlen(s) != BRI_CHECKSUM_HEX_LEN)
		return bri_err_set(err, -EINVAL, "metadata checksum is not 64 hex digits");
	for (int i = 0; i < BRI_CHECKSUM_HEX_LEN; i++) {
		if (!isxdigit((unsigned char)s[i]))
			return bri_err_set(err, -EINVAL, "metadata checksum is not 64 hex digits");
		out[i] = (char)tolower((unsigned char)s[i]);
	}
	out[BRI_CHECKSUM_HEX_LEN] = '\0';
	return 0;
}

static int copy_string(json_object *obj, const char *key, char **out, struct bri_err *err)
{
	json_object *v = get_typed(obj, key, json_type_string, true, err);

	if (!v)
		return err->code;
	*out = strdup(json_object_get_string(v));
	return *out ? 0 : bri_err_set(err, -ENOMEM, "out of memory");
}

int bri_meta_parse(const char *json, size_t len, struct bri_meta *out, struct bri_err *err)
{
	struct bri_err local = {0};
	struct bri_meta m = {0};
	json_object *obj, *v;
	const char *s;
	int rc;

	if (!err)
		err = &local;
	obj = parse_object(json, len, err);
	if (!obj)
		return err->code;
	err->code = 0;

	v = get_typed(obj, "backup_time", json_type_string, true, err);
	if (!v)
		goto out_fail;
	s = json_object_get_string(v);
	if (strlen(s) >= sizeof(m.backup_time) || bri_time_parse(s, &m.time) < 0) {
		bri_err_set(err, -EINVAL, "metadata backup_time \"%.40s\" is not a time", s);
		goto out_fail;
	}
	strcpy(m.backup_time, s);
	v = get_typed(obj, "backup_time_utc", json_type_string, false, err);
	if (err->code)
		goto out_fail;
	if (v) {
		time_t t;

		s = json_object_get_string(v);
		if (strlen(s) < sizeof(m.backup_time_utc) && bri_time_parse(s, &t) == 0) {
			strcpy(m.backup_time_utc, s);
			m.time = t;
		}
	}
	if (copy_string(obj, "source_db", &m.source_db, err) < 0 ||
	    copy_string(obj, "backup_path", &m.backup_path, err) < 0)
		goto out_fail;
	if (get_int(obj, "size_bytes", true, &m.size_bytes, err) < 0)
		goto out_fail;
	v = get_typed(obj, "size_mb", json_type_double, true, err);
	if (!v)
		goto out_fail;
	m.size_mb = json_object_get_double(v);
	if (!isfinite(m.size_mb) || m.size_mb < 0) {
		bri_err_set(err, -EINVAL, "metadata size_mb is out of range");
		goto out_fail;
	}
	v = get_typed(obj, "checksum", json_type_string, true, err);
	if (!v || parse_checksum(json_object_get_string(v), m.checksum, err) < 0)
		goto out_fail;
	v = get_typed(obj, "tables", json_type_object, true, err);
	if (!v || parse_tables(v, &m, err) < 0)
		goto out_fail;

	v = get_typed(obj, "kind", json_type_string, false, err);
	m.kind = v ? bri_kind_parse(json_object_get_string(v)) : BRI_KIND_UNKNOWN;
	err->code = 0;
	if (get_int(obj, "page_size", false, &m.page_size, err) < 0 ||
	    get_int(obj, "page_count", false, &m.page_count, err) < 0)
		goto out_fail;
	v = get_typed(obj, "duration_s", json_type_double, false, err);
	if (err->code)
		goto out_fail;
	m.duration_s = v ? json_object_get_double(v) : 0;

	json_object_put(obj);
	*out = m;
	return 0;
out_fail:
	rc = err->code ? err->code : -EINVAL;
	json_object_put(obj);
	bri_meta_free(&m);
	return rc;
}

int bri_meta_format(const struct bri_meta *m, char **out, size_t *len)
{
	json_object *obj = json_object_new_object(), *tables = json_object_new_object();

	if (!obj || !tables) {
		json_object_put(obj);
		json_object_put(tables);
		return -ENOMEM;
	}
	json_object_object_add(obj, "backup_time", json_object_new_string(m->backup_time));
	json_object_object_add(obj, "source_db", json_object_new_string(m->source_db ? m->source_db : ""));
	json_object_object_add(obj, "backup_path",
			       json_object_new_string(m->backup_path ? m->backup_path : ""));
	json_object_object_add(obj, "size_bytes", json_object_new_int64(m->size_bytes));
	json_object_object_add(obj, "size_mb", bri_json_double(m->size_mb, 2));
	json_object_object_add(obj, "checksum", json_object_new_string(m->checksum));
	for (size_t i = 0; i < m->ntables; i++)
		json_object_object_add(tables, m->tables[i].name,
				       json_object_new_int64(m->tables[i].rows));
	json_object_object_add(obj, "tables", tables);
	json_object_object_add(obj, "kind", json_object_new_string(bri_kind_name(m->kind)));
	if (m->backup_time_utc[0])
		json_object_object_add(obj, "backup_time_utc",
				       json_object_new_string(m->backup_time_utc));
	json_object_object_add(obj, "checksum_algorithm", json_object_new_string("sha256"));
	if (m->page_size)
		json_object_object_add(obj, "page_size", json_object_new_int64(m->page_size));
	if (m->page_count)
		json_object_object_add(obj, "page_count", json_object_new_int64(m->page_count));
	json_object_object_add(obj, "duration_s",
			       bri_json_double(m->duration_s, 3));
	json_object_object_add(obj, "tool", json_object_new_string("bri-backupfs " BRI_VERSION));

	return bri_json_emit(obj, out, len);
}

int bri_meta_copy(struct bri_meta *dst, const struct bri_meta *src)
{
	struct bri_meta m = *src;

	m.source_db = src->source_db ? strdup(src->source_db) : NULL;
	m.backup_path = src->backup_path ? strdup(src->backup_path) : NULL;
	m.tables = calloc(src->ntables ? src->ntables : 1, sizeof(*m.tables));
	m.ntables = 0;
	if ((src->source_db && !m.source_db) || (src->backup_path && !m.backup_path) || !m.tables)
		goto out_nomem;
	for (size_t i = 0; i < src->ntables; i++) {
		m.tables[i].name = strdup(src->tables[i].name);
		if (!m.tables[i].name)
			goto out_nomem;
		m.tables[i].rows = src->tables[i].rows;
		m.ntables = i + 1;
	}
	*dst = m;
	return 0;
out_nomem:
	bri_meta_free(&m);
	return -ENOMEM;
}

void bri_meta_free(struct bri_meta *m)
{
	free(m->source_db);
	free(m->backup_path);
	for (size_t i = 0; i < m->ntables; i++)
		free(m->tables[i].name);
	free(m->tables);
	memset(m, 0, sizeof(*m));
}

int64_t bri_meta_rows(const struct bri_meta *m, const char *table)
{
	for (size_t i = 0; i < m->ntables; i++)
		if (strcmp(m->tables[i].name, table) == 0)
			return m->tables[i].rows;
	return -1;
}
