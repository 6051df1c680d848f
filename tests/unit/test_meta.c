/*
 * Unit tests of backup metadata (include/bri/meta.h): format -> parse keeps
 * every field; seed-style files (only the seed's keys) parse with kind
 * unknown; unknown keys are ignored; malformed, truncated, mistyped and
 * oversized input is refused with -EINVAL and leaves the output untouched.
 * Pure in-memory tests; json-c is used only to inspect formatted output.
 */
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bri/meta.h"
#include "expect.h"
#include "testutil.h"

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* The seed's keys and a valid value for each, in the seed's order. */
static const char *seed_keys[] = {"backup_time", "source_db", "backup_path", "size_bytes",
                                  "size_mb",     "checksum",  "tables"};
static const char *seed_vals[] = {
    "\"2025-10-16T14:30:00\"",
    "\"data/bri.db\"",
    "\"data/backups/bri_backup_20251016_143000.db\"",
    "10485760",
    "10.0",
    "\"" HEX64 "\"",
    "{\"videos\": 42, \"memory\": 1250, \"video_context\": 3500}",
};
#define NSEED (sizeof(seed_keys) / sizeof(seed_keys[0]))

/*
 * A seed-style JSON object: key skip omitted (NULL: none), key repl given
 * value val, extra (may be NULL) appended as more members. malloc'd.
 */
static char *seed_json(const char *skip, const char *repl, const char *val, const char *extra)
{
	char *out = tu_fmt("{");
	bool first = true;
	for (size_t i = 0; i < NSEED; i++) {
		if (skip && strcmp(skip, seed_keys[i]) == 0)
			continue;
		const char *v = repl && strcmp(repl, seed_keys[i]) == 0 ? val : seed_vals[i];
		char *n = tu_fmt("%s%s\n  \"%s\": %s", out, first ? "" : ",", seed_keys[i], v);
		free(out);
		out = n;
		first = false;
	}
	char *n = tu_fmt("%s%s%s\n}\n", out, extra ? (first ? "" : ",") : "", extra ? extra : "");
	free(out);
	return n;
}

/* A meta whose parse must not touch: recognisable values. */
static void sentinel(struct bri_meta *m)
{
	memset(m, 0, sizeof(*m));
	m->size_bytes = -777;
	m->kind = BRI_KIND_SAFETY;
	strcpy(m->checksum, "sentinel");
}

static bool untouched(const struct bri_meta *m)
{
	return m->size_bytes == -777 && m->kind == BRI_KIND_SAFETY && !m->source_db &&
	       !m->backup_path && !m->tables && m->ntables == 0 &&
	       strcmp(m->checksum, "sentinel") == 0;
}

/* Expects json (len bytes) to be refused with -EINVAL and m untouched. */
static void refused(const char *json, size_t len, const char *what)
{
	struct bri_meta m;
	struct bri_err err = {0};
	sentinel(&m);
	int rc = bri_meta_parse(json, len, &m, &err);
	EXPECT_MSG(rc == -EINVAL, "%s: got %d, expected -EINVAL", what, rc);
	EXPECT_MSG(untouched(&m), "%s: output changed on failure", what);
	if (rc == -EINVAL)
		EXPECT_MSG(err.msg[0] != '\0', "%s: no reason in err", what);
	if (rc == 0)
		bri_meta_free(&m);
}

static void test_kinds(void)
{
	EXPECT_STREQ(bri_kind_name(BRI_KIND_AUTO), "auto");
	EXPECT_STREQ(bri_kind_name(BRI_KIND_NAMED), "named");
	EXPECT_STREQ(bri_kind_name(BRI_KIND_SAFETY), "safety");
	EXPECT_STREQ(bri_kind_name(BRI_KIND_UNKNOWN), "unknown");
	EXPECT_EQ_INT(bri_kind_parse("auto"), BRI_KIND_AUTO);
	EXPECT_EQ_INT(bri_kind_parse("named"), BRI_KIND_NAMED);
	EXPECT_EQ_INT(bri_kind_parse("safety"), BRI_KIND_SAFETY);
	EXPECT_EQ_INT(bri_kind_parse("unknown"), BRI_KIND_UNKNOWN);
	EXPECT_EQ_INT(bri_kind_parse(NULL), BRI_KIND_UNKNOWN);
	EXPECT_EQ_INT(bri_kind_parse(""), BRI_KIND_UNKNOWN);
	EXPECT_EQ_INT(bri_kind_parse("Safety"), BRI_KIND_UNKNOWN);
	EXPECT_EQ_INT(bri_kind_parse("safety "), BRI_KIND_UNKNOWN);
}

/* A fully populated meta, with awkward strings. */
static void full_meta(struct bri_meta *m)
{
	memset(m, 0, sizeof(*m));
	m->time = 1760625000; /* 2025-10-16T14:30:00Z */
	bri_time_local(m->time, m->backup_time, sizeof(m->backup_time));
	bri_time_utc(m->time, m->backup_time_utc, sizeof(m->backup_time_utc));
	m->source_db = strdup("data/b\"r\\i \xc3\xa9.db");
	m->backup_path = strdup("data/backups/bri_backup_20251016_143000.db");
	m->size_bytes = 10485760;
	m->size_mb = 10.0;
	strcpy(m->checksum, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	m->ntables = 5;
	m->tables = calloc(m->ntables, sizeof(*m->tables));
	m->tables[0] = (struct bri_table_count){strdup("videos"), 42};
	m->tables[1] = (struct bri_table_count){strdup("memory"), 1250};
	m->tables[2] = (struct bri_table_count){strdup("video_context"), 3500};
	m->tables[3] = (struct bri_table_count){strdup("we\"ird \xc3\xbc"), 0};
	m->tables[4] = (struct bri_table_count){strdup("big"), 5000000000LL};
	m->kind = BRI_KIND_NAMED;
	m->page_size = 4096;
	m->page_count = 2560;
	m->duration_s = 1.25;
}

static void expect_same(const struct bri_meta *a, const struct bri_meta *b)
{
	EXPECT_STREQ(a->backup_time, b->backup_time);
	EXPECT_STREQ(a->backup_time_utc, b->backup_time_utc);
	EXPECT_EQ_INT(a->time, b->time);
	EXPECT_STREQ(a->source_db, b->source_db);
	EXPECT_STREQ(a->backup_path, b->backup_path);
	EXPECT_EQ_INT(a->size_bytes, b->size_bytes);
	EXPECT(fabs(a->size_mb - b->size_mb) < 0.005);
	EXPECT_STREQ(a->checksum, b->checksum);
	EXPECT_EQ_INT(a->ntables, b->ntables);
	for (size_t i = 0; i < b->ntables; i++)
		EXPECT_MSG(bri_meta_rows(a, b->tables[i].name) == b->tables[i].rows, "table %s",
		           b->tables[i].name);
	EXPECT_EQ_INT(a->kind, b->kind);
	EXPECT_EQ_INT(a->page_size, b->page_size);
	EXPECT_EQ_INT(a->page_count, b->page_count);
	EXPECT(fabs(a->duration_s - b->duration_s) < 0.001);
}

static void test_round_trip(void)
{
	struct bri_meta m, back;
	struct bri_err err = {0};
	full_meta(&m);
	char *json = NULL;
	size_t len = 0;
	EXPECT_EQ_INT(bri_meta_format(&m, &json, &len), 0);
	if (!json)
		return;
	EXPECT_EQ_INT(len, strlen(json));
	EXPECT(len > 0 && json[len - 1] == '\n');

	memset(&back, 0, sizeof(back));
	int rc = bri_meta_parse(json, len, &back, &err);
	EXPECT_MSG(rc == 0, "parse of formatted meta: %d %s\n%s", rc, err.msg, json);
	if (rc == 0) {
		expect_same(&back, &m);
		bri_meta_free(&back);
	}

	/* The seed's keys first, with the seed's types; the extra keys present. */
	json_object *o = json_tokener_parse(json);
	EXPECT(o && json_object_is_type(o, json_type_object));
	if (o) {
		json_object *v;
		EXPECT(json_object_object_get_ex(o, "backup_time", &v) &&
		       json_object_is_type(v, json_type_string));
		EXPECT(json_object_object_get_ex(o, "source_db", &v) &&
		       json_object_is_type(v, json_type_string));
		EXPECT(json_object_object_get_ex(o, "backup_path", &v) &&
		       json_object_is_type(v, json_type_string));
		EXPECT(json_object_object_get_ex(o, "size_bytes", &v) &&
		       json_object_is_type(v, json_type_int) &&
		       json_object_get_int64(v) == 10485760);
		EXPECT(json_object_object_get_ex(o, "size_mb", &v) &&
		       (json_object_is_type(v, json_type_double) ||
		        json_object_is_type(v, json_type_int)));
		EXPECT(json_object_object_get_ex(o, "checksum", &v) &&
		       json_object_is_type(v, json_type_string));
		EXPECT(json_object_object_get_ex(o, "tables", &v) &&
		       json_object_is_type(v, json_type_object));
		EXPECT(json_object_object_get_ex(o, "kind", &v) &&
		       json_object_is_type(v, json_type_string) &&
		       strcmp(json_object_get_string(v), "named") == 0);
		EXPECT(json_object_object_get_ex(o, "backup_time_utc", &v));
		EXPECT(json_object_object_get_ex(o, "checksum_algorithm", &v));
		/* The first key is backup_time, and every seed key precedes "kind". */
		int i = 0;
		json_object_object_foreach(o, key, val)
		{
			(void)val;
			if (i == 0)
				EXPECT_STREQ(key, "backup_time");
			i++;
		}
		json_object_put(o);
	}
	const char *kind_at = strstr(json, "\"kind\"");
	for (size_t i = 0; i < NSEED; i++) {
		char *k = tu_fmt("\"%s\"", seed_keys[i]);
		const char *at = strstr(json, k);
		EXPECT_MSG(at && kind_at && at < kind_at, "seed key %s not before kind",
		           seed_keys[i]);
		free(k);
	}

	/* Deep copy survives freeing the original; free zeroes. */
	struct bri_meta copy;
	memset(&copy, 0, sizeof(copy));
	EXPECT_EQ_INT(bri_meta_copy(&copy, &m), 0);
	EXPECT(copy.source_db != m.source_db);
	EXPECT(copy.tables != m.tables);
	struct bri_meta again;
	full_meta(&again);
	bri_meta_free(&m);
	EXPECT(m.tables == NULL && m.ntables == 0 && m.source_db == NULL && m.backup_path == NULL);
	expect_same(&copy, &again);
	EXPECT_EQ_INT(bri_meta_rows(&copy, "memory"), 1250);
	EXPECT_EQ_INT(bri_meta_rows(&copy, "big"), 5000000000LL);
	EXPECT_EQ_INT(bri_meta_rows(&copy, "nope"), -1);
	EXPECT_EQ_INT(bri_meta_rows(&copy, "Memory"), -1);
	bri_meta_free(&copy);
	bri_meta_free(&again);
	free(json);

	/* A meta with no tables formats and parses. */
	full_meta(&m);
	for (size_t i = 0; i < m.ntables; i++)
		free(m.tables[i].name);
	free(m.tables);
	m.tables = NULL;
	m.ntables = 0;
	m.kind = BRI_KIND_SAFETY;
	json = NULL;
	EXPECT_EQ_INT(bri_meta_format(&m, &json, &len), 0);
	memset(&back, 0, sizeof(back));
	EXPECT_EQ_INT(bri_meta_parse(json, len, &back, &err), 0);
	EXPECT_EQ_INT(back.ntables, 0);
	EXPECT_EQ_INT(back.kind, BRI_KIND_SAFETY);
	bri_meta_free(&back);
	bri_meta_free(&m);
	free(json);
}

static void test_seed_style(void)
{
	struct bri_meta m;
	struct bri_err err = {0};
	char *json = seed_json(NULL, NULL, NULL, NULL);
	memset(&m, 0, sizeof(m));
	int rc = bri_meta_parse(json, strlen(json), &m, &err);
	EXPECT_MSG(rc == 0, "seed-style meta refused: %s", err.msg);
	if (rc == 0) {
		time_t t;
		EXPECT_EQ_INT(bri_time_parse("2025-10-16T14:30:00", &t), 0);
		EXPECT_STREQ(m.backup_time, "2025-10-16T14:30:00");
		EXPECT_STREQ(m.backup_time_utc, "");
		EXPECT_EQ_INT(m.time, t);
		EXPECT_STREQ(m.source_db, "data/bri.db");
		EXPECT_STREQ(m.backup_path, "data/backups/bri_backup_20251016_143000.db");
		EXPECT_EQ_INT(m.size_bytes, 10485760);
		EXPECT(fabs(m.size_mb - 10.0) < 1e-9);
		EXPECT_STREQ(m.checksum, HEX64);
		EXPECT_EQ_INT(m.ntables, 3);
		EXPECT_EQ_INT(bri_meta_rows(&m, "videos"), 42);
		EXPECT_EQ_INT(bri_meta_rows(&m, "memory"), 1250);
		EXPECT_EQ_INT(bri_meta_rows(&m, "video_context"), 3500);
		EXPECT_EQ_INT(m.kind, BRI_KIND_UNKNOWN);
		EXPECT_EQ_INT(m.page_size, 0);
		EXPECT_EQ_INT(m.page_count, 0);
		EXPECT(m.duration_s == 0);
		bri_meta_free(&m);
	}
	free(json);

	/* Python's json.dump(indent=2) with a microsecond backup_time (datetime.isoformat). */
	json = seed_json(NULL, "backup_time", "\"2025-10-16T14:30:00.123456\"", NULL);
	memset(&m, 0, sizeof(m));
	rc = bri_meta_parse(json, strlen(json), &m, &err);
	EXPECT_MSG(rc == 0, "backup_time with microseconds refused: %s", err.msg);
	if (rc == 0) {
		time_t t;
		EXPECT_EQ_INT(bri_time_parse("2025-10-16T14:30:00", &t), 0);
		EXPECT_EQ_INT(m.time, t);
		bri_meta_free(&m);
	}
	free(json);

	/* Unknown keys of every shape are ignored; trailing whitespace is fine. */
	json =
	    seed_json(NULL, NULL, NULL,
	              "\"zzz\": null, \"foo\": {\"bar\": [1, 2, {\"x\": true}]}, \"n\": 1.5e300, "
	              "\"s\": \"\\u00e9\\n\"");
	char *padded = tu_fmt("  \n%s \n\t ", json);
	memset(&m, 0, sizeof(m));
	rc = bri_meta_parse(padded, strlen(padded), &m, &err);
	EXPECT_MSG(rc == 0, "unknown keys not ignored: %s", err.msg);
	if (rc == 0) {
		EXPECT_EQ_INT(m.size_bytes, 10485760);
		bri_meta_free(&m);
	}
	free(padded);
	free(json);

	/* Known extra keys are read; an unknown kind is "unknown", not an error. */
	json = seed_json(NULL, NULL, NULL,
	                 "\"kind\": \"safety\", \"backup_time_utc\": \"2025-10-16T12:30:00Z\", "
	                 "\"page_size\": 4096, \"page_count\": 3, \"duration_s\": 0.5");
	memset(&m, 0, sizeof(m));
	rc = bri_meta_parse(json, strlen(json), &m, &err);
	EXPECT_EQ_INT(rc, 0);
	if (rc == 0) {
		EXPECT_EQ_INT(m.kind, BRI_KIND_SAFETY);
		EXPECT_STREQ(m.backup_time_utc, "2025-10-16T12:30:00Z");
		EXPECT_EQ_INT(m.page_size, 4096);
		EXPECT_EQ_INT(m.page_count, 3);
		EXPECT(fabs(m.duration_s - 0.5) < 1e-9);
		bri_meta_free(&m);
	}
	free(json);
	json = seed_json(NULL, NULL, NULL, "\"kind\": \"weekly\"");
	memset(&m, 0, sizeof(m));
	rc = bri_meta_parse(json, strlen(json), &m, &err);
	EXPECT_EQ_INT(rc, 0);
	if (rc == 0) {
		EXPECT_EQ_INT(m.kind, BRI_KIND_UNKNOWN);
		bri_meta_free(&m);
	}
	free(json);

	/* Only len bytes are parsed: garbage after len is not seen. */
	json = seed_json(NULL, NULL, NULL, NULL);
	size_t l = strlen(json);
	char *more = tu_fmt("%s{{{garbage", json);
	memset(&m, 0, sizeof(m));
	EXPECT_EQ_INT(bri_meta_parse(more, l, &m, &err), 0);
	bri_meta_free(&m);
	free(more);
	free(json);

	/* Empty tables object. */
	json = seed_json(NULL, "tables", "{}", NULL);
	memset(&m, 0, sizeof(m));
	EXPECT_EQ_INT(bri_meta_parse(json, strlen(json), &m, &err), 0);
	EXPECT_EQ_INT(m.ntables, 0);
	bri_meta_free(&m);
	free(json);
}

static void test_malformed(void)
{
	refused("", 0, "empty");
	refused("   \n", 4, "whitespace");
	refused("[]", 2, "array");
	refused("42", 2, "number");
	refused("\"x\"", 3, "string");
	refused("null", 4, "null");
	refused("true", 4, "true");
	refused("{}", 2, "empty object");
	refused("\0\0\0\0", 4, "NULs");

	/* Every truncation of a valid file. */
	char *json = seed_json(NULL, NULL, NULL, NULL);
	size_t full = strlen(json);
	size_t last = (size_t)(strrchr(json, '}') - json);
	for (size_t cut = 0; cut <= last; cut++) {
		char *what = tu_fmt("truncated to %zu of %zu bytes", cut, full);
		refused(json, cut, what);
		free(what);
	}
	/* Garbage after the object. */
	char *trail = tu_fmt("%s}", json);
	refused(trail, strlen(trail), "trailing }");
	free(trail);
	trail = tu_fmt("%sxyz", json);
	refused(trail, strlen(trail), "trailing garbage");
	free(trail);
	trail = tu_fmt("%s%s", json, json);
	refused(trail, strlen(trail), "two objects");
	free(trail);
	free(json);

	/* Each seed key missing. */
	for (size_t i = 0; i < NSEED; i++) {
		char *what = tu_fmt("missing %s", seed_keys[i]);
		json = seed_json(seed_keys[i], NULL, NULL, NULL);
		refused(json, strlen(json), what);
		free(json);
		free(what);
	}

	/* Wrong types for each seed key. */
	static const struct {
		const char *key, *val;
	} bad[] = {
	    {"backup_time", "123"},
	    {"backup_time", "null"},
	    {"backup_time", "[\"2025-10-16T14:30:00\"]"},
	    {"backup_time", "\"yesterday\""},
	    {"backup_time", "\"\""},
	    {"source_db", "5"},
	    {"source_db", "null"},
	    {"source_db", "{}"},
	    {"backup_path", "{}"},
	    {"backup_path", "true"},
	    {"size_bytes", "\"10485760\""},
	    {"size_bytes", "null"},
	    {"size_bytes", "[1]"},
	    {"size_bytes", "1.5"},
	    {"size_mb", "\"10.0\""},
	    {"size_mb", "null"},
	    {"size_mb", "{}"},
	    {"checksum", "12345"},
	    {"checksum", "null"},
	    {"checksum", "\"\""},
	    {"checksum", "\"" HEX64 "0\""}, /* 65 */
	    {"checksum",
	     "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\""}, /* 63 */
	    {"checksum", "\"g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\""},
	    {"checksum", "\" 123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\""},
	    {"checksum",
	     "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\\u0000\""},
	    {"tables", "[]"},
	    {"tables", "\"videos\""},
	    {"tables", "42"},
	    {"tables", "null"},
	    {"tables", "{\"videos\": \"42\"}"},
	    {"tables", "{\"videos\": -1}"},
	    {"tables", "{\"videos\": 42, \"memory\": -5}"},
	    {"tables", "{\"videos\": 1.5}"},
	    {"tables", "{\"videos\": null}"},
	    {"tables", "{\"videos\": {}}"},
	    {"tables", "{\"videos\": [42]}"},
	    {"size_bytes", "-1"},
	    {"size_mb", "-1.0"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *what = tu_fmt("%s = %s", bad[i].key, bad[i].val);
		json = seed_json(NULL, bad[i].key, bad[i].val, NULL);
		refused(json, strlen(json), what);
		free(json);
		free(what);
	}

	/* Huge input: over BRI_META_MAX_BYTES, though valid JSON. */
	size_t padlen = BRI_META_MAX_BYTES + 16;
	char *pad = malloc(padlen + 1);
	memset(pad, 'x', padlen);
	pad[padlen] = '\0';
	char *extra = tu_fmt("\"pad\": \"%s\"", pad);
	json = seed_json(NULL, NULL, NULL, extra);
	{
		struct bri_meta m;
		struct bri_err err = {0};
		sentinel(&m);
		int rc = bri_meta_parse(json, strlen(json), &m, &err);
		EXPECT_MSG(rc < 0, "input over BRI_META_MAX_BYTES accepted");
		EXPECT(untouched(&m));
		if (rc == 0)
			bri_meta_free(&m);
	}
	free(json);
	free(extra);
	free(pad);

	/* Deep nesting in an unknown key: refused or ignored, never a crash. */
	size_t depth = 100000;
	char *deep = malloc(2 * depth + 1);
	memset(deep, '[', depth);
	memset(deep + depth, ']', depth);
	deep[2 * depth] = '\0';
	extra = tu_fmt("\"deep\": %s", deep);
	json = seed_json(NULL, NULL, NULL, extra);
	{
		struct bri_meta m;
		struct bri_err err = {0};
		memset(&m, 0, sizeof(m));
		if (bri_meta_parse(json, strlen(json), &m, &err) == 0)
			bri_meta_free(&m);
		EXPECT(1);
	}
	free(json);
	free(extra);
	free(deep);
}

/* A NUL byte inside len is not JSON; err may be NULL like everywhere else. */
static void test_odd_calls(void)
{
	char *json = seed_json(NULL, NULL, NULL, NULL);
	size_t l = strlen(json);
	char *with_nul = malloc(l + 2);
	memcpy(with_nul, json, l);
	with_nul[l] = '\0';
	with_nul[l + 1] = ' ';
	refused(with_nul, l + 2, "NUL after the object");
	free(with_nul);

	/*
	 * err NULL: run in a child so that a crash is a failed check, not a dead
	 * test program.
	 */
	pid_t pid = fork();
	if (pid == 0) {
		struct bri_meta m;
		memset(&m, 0, sizeof(m));
		if (bri_meta_parse(json, l, &m, NULL) != 0)
			_exit(2);
		bri_meta_free(&m);
		if (bri_meta_parse("{}", 2, &m, NULL) != -EINVAL)
			_exit(3);
		_exit(0);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	EXPECT_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	           "bri_meta_parse with err NULL: %s %d",
	           WIFSIGNALED(status) ? "killed by signal" : "exit",
	           WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
	free(json);
}

int main(void)
{
	test_kinds();
	test_round_trip();
	test_seed_style();
	test_malformed();
	test_odd_calls();
	return EXPECT_RESULT();
}
