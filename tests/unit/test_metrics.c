/*
 * Unit tests of the metrics module: a real store with backups made by
 * bri_create and a verification, rendered in the Prometheus text format;
 * every sample line is checked for the format (name{labels} value) and the
 * values against what was done.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bri/catalog.h"
#include "bri/create.h"
#include "bri/metrics.h"
#include "bri/verify.h"
#include "expect.h"
#include "testutil.h"

/* The value of the sample line that starts with prefix, or -1. */
static double sample(const char *text, const char *prefix)
{
	size_t n = strlen(prefix);

	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
		if (strncmp(p, prefix, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	}
	return -1;
}

/* Every line is a comment or "name[{labels}] number". */
static void check_format(const char *text)
{
	char *copy = strdup(text), *save = NULL;

	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0)
			continue;
		char *p = line;
		while (isalnum((unsigned char)*p) || *p == '_')
			p++;
		EXPECT_MSG(p > line, "no metric name: %s", line);
		if (*p == '{') {
			p = strchr(p, '}');
			EXPECT_MSG(p != NULL, "unclosed labels: %s", line);
			if (!p)
				continue;
			p++;
		}
		EXPECT_MSG(*p == ' ', "no space before the value: %s", line);
		char *end;
		strtod(p + 1, &end);
		EXPECT_MSG(end != p + 1 && *end == '\0', "value is not a number: %s", line);
	}
	free(copy);
}

int main(void)
{
	char *dir = tu_tmpdir("metrics");
	char *db = tu_fmt("%s/bri.db", dir);
	struct bri_op_ctx ctx = bri_op_ctx_self("test");
	struct bri_health_rules rules = {.max_age_hours = 24, .min_backups = 7};
	struct bri_verify_result res;
	struct bri_err err = {0};
	struct bri_catalog *cat = NULL;
	struct bri_store *s = NULL;
	char *name = NULL, *text = NULL;
	size_t len;

	tu_make_db(db, "wal", 3, 50, false);
	EXPECT_EQ_INT(bri_store_open(db, NULL, true, &s, &err), 0);
	struct bri_create_opts named = {.name = "first"};
	EXPECT_EQ_INT(bri_create(s, &named, &ctx, &name, &err), 0);
	free(name);
	struct bri_create_opts automatic = {0};
	EXPECT_EQ_INT(bri_create(s, &automatic, &ctx, &name, &err), 0);
	EXPECT_EQ_INT(bri_verify_backup(s, name, &ctx, &res, &err), 0);
	free(name);

	EXPECT_EQ_INT(bri_catalog_scan(s, NULL, &cat, &err), 0);
	time_t now = cat->entries[0]->time + 90;
	EXPECT_EQ_INT(bri_metrics_render(s, cat, now, &rules, &text, &len), 0);
	EXPECT_EQ_INT(strlen(text), len);
	check_format(text);
	EXPECT_EQ_INT(sample(text, "bri_backups{kind=\"named\"}"), 1);
	EXPECT_EQ_INT(sample(text, "bri_backups{kind=\"auto\"}"), 1);
	EXPECT_EQ_INT(sample(text, "bri_backups{kind=\"safety\"}"), 0);
	EXPECT_EQ_INT(sample(text, "bri_backup_newest_age_seconds"), 90);
	EXPECT_EQ_INT(sample(text, "bri_backup_bytes"),
		      cat->entries[0]->db_st.st_size + cat->entries[1]->db_st.st_size);
	EXPECT_EQ_INT(sample(text, "bri_backup_verification{result=\"ok\"}"), 1);
	EXPECT_EQ_INT(sample(text, "bri_backup_verification{result=\"unverified\"}"), 1);
	/* Two backups are fewer than seven: a warning. */
	EXPECT_EQ_INT(sample(text, "bri_backup_healthy"), 0);
	EXPECT_EQ_INT(sample(text, "bri_backup_last_run_success{operation=\"create\"}"), 1);
	EXPECT_EQ_INT(sample(text, "bri_backup_last_run_success{operation=\"verify\"}"), 1);
	EXPECT(sample(text, "bri_backup_last_run_duration_seconds{operation=\"create\"}") >= 0);
	EXPECT_EQ_INT(sample(text, "bri_backup_last_run_success{operation=\"restore\"}"), -1);
	free(text);

	/* A failed create shows as the last create's result. */
	struct bri_create_opts taken = {.name = "first"};
	EXPECT_EQ_INT(bri_create(s, &taken, &ctx, &name, &err), -EEXIST);
	EXPECT_EQ_INT(bri_metrics_render(s, cat, now, &rules, &text, &len), 0);
	EXPECT_EQ_INT(sample(text, "bri_backup_last_run_success{operation=\"create\"}"), 0);
	free(text);

	rules.min_backups = 2;
	EXPECT_EQ_INT(bri_metrics_render(s, cat, now, &rules, &text, &len), 0);
	EXPECT_EQ_INT(sample(text, "bri_backup_healthy"), 1);
	free(text);

	bri_catalog_free(cat);
	bri_store_close(s);
	free(db);
	tu_tmpdir_done(dir);
	return EXPECT_RESULT();
}
