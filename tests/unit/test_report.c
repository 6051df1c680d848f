/*
 * Unit tests of stats and health (include/bri/report.h) on a real catalog:
 * one backup made by bri_create from a real live database, plus copies of it
 * published with their own metadata at chosen times and kinds, some verified
 * ok, one failing verification. Checks the seed's stats keys, the counts by
 * kind and verification, the JSON forms, and the health thresholds (age of
 * the newest backup, number of backups, failed verifications).
 */
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bri/catalog.h"
#include "bri/create.h"
#include "bri/rehearsal.h"
#include "bri/report.h"
#include "bri/store.h"
#include "bri/verify.h"
#include "expect.h"
#include "testutil.h"
#include "../../src/core/internal.h"

#define HOUR ((time_t)3600)

static struct bri_op_ctx ctx;

static struct bri_catalog *scan(struct bri_store *s, struct bri_catalog *prev)
{
	struct bri_err err = {0};
	struct bri_catalog *c = NULL;
	if (bri_catalog_scan(s, prev, &c, &err) != 0)
		TU_DIE("scan: %s", err.msg);
	bri_catalog_free(prev);
	return c;
}

static int count_lines(const char *t, const char *prefix)
{
	int n = 0;
	size_t pl = strlen(prefix);
	for (const char *p = t; p && *p;) {
		if (strncmp(p, prefix, pl) == 0)
			n++;
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return n;
}

/* Health at now with rules; returns ok, and the number of "warning" lines in *warnings. */
static bool health(const struct bri_catalog *c, time_t now, double hours, size_t min, int *warnings,
                   char **text_out)
{
	struct bri_health_rules r = {.max_age_hours = hours, .min_backups = min};
	char *text = NULL;
	size_t len = 0;
	bool ok = bri_health_check(c, now, &r, false, &text, &len);
	EXPECT(text && len == strlen(text) && len > 0 && text[len - 1] == '\n');
	*warnings = count_lines(text, "warning: ");
	int critical = count_lines(text, "critical: ");
	if (ok)
		EXPECT_STREQ(text, "ok\n");
	else
		EXPECT_MSG(*warnings + critical >= 1 &&
		               count_lines(text, "") == *warnings + critical,
		           "not one warning or critical line per line:\n%s", text ? text : "");
	/* Critical lines come first. */
	if (critical)
		EXPECT(text && strncmp(text, "critical: ", 10) == 0);
	if (text_out)
		*text_out = text;
	else
		free(text);
	return ok;
}

static void test_report(const char *base)
{
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char *live = tu_fmt("%s/bri.db", base);
	tu_make_db(live, "wal", 42, 300, false);
	if (bri_store_open(live, NULL, true, &s, &err) != 0)
		TU_DIE("store: %s", err.msg);

	/* Empty store. */
	struct bri_catalog *c = scan(s, NULL);
	struct bri_stats st;
	memset(&st, 0x5a, sizeof(st));
	bri_stats_compute(c, &st);
	EXPECT_EQ_INT(st.total_backups, 0);
	EXPECT_EQ_INT(st.total_bytes, 0);
	EXPECT(st.total_size_mb == 0);
	EXPECT_STREQ(st.newest_backup, "");
	EXPECT_STREQ(st.oldest_backup, "");
	char *json = NULL;
	size_t len = 0;
	EXPECT_EQ_INT(bri_stats_to_json(&st, &json, &len), 0);
	json_object *o = json ? json_tokener_parse(json) : NULL;
	EXPECT_MSG(o && json_object_is_type(o, json_type_object), "stats JSON: %s",
	           json ? json : "(null)");
	json_object_put(o);
	free(json);
	int w = 0;
	EXPECT(!health(c, time(NULL), 24, 7, &w, NULL));
	EXPECT(w >= 1);
	/* No backup at all: no good backup, critical. */
	{
		struct bri_health_rules r0 = {.max_age_hours = 24, .min_backups = 0};
		char *t0 = NULL;
		size_t l0 = 0;
		EXPECT_EQ_INT(bri_health_assess(c, time(NULL), &r0, false, &t0, &l0),
		              BRI_HEALTH_CRITICAL);
		EXPECT(t0 && strstr(t0, "critical: no good backup"));
		free(t0);
	}

	/* One real backup, six copies at 3-hour steps back. */
	struct bri_create_opts opts = {.name = "base1"};
	char *name = NULL;
	EXPECT_EQ_INT(bri_create(s, &opts, &ctx, &name, &err), 0);
	free(name);
	c = scan(s, c);
	if (c->n != 1)
		TU_DIE("create base1: %zu entries (%s)", c->n, err.msg);
	time_t newest = c->entries[0]->time;
	int64_t size = c->entries[0]->db_st.st_size;
	static const enum bri_kind kinds[] = {BRI_KIND_AUTO,  BRI_KIND_AUTO, BRI_KIND_SAFETY,
	                                      BRI_KIND_NAMED, BRI_KIND_AUTO, BRI_KIND_AUTO};
	for (int i = 0; i < 6; i++) {
		char n[32];
		snprintf(n, sizeof(n), "copy%d", i + 1);
		tu_clone_backup(s, "base1", n, newest - (i + 1) * 3 * HOUR, kinds[i], i == 1);
	}
	const char *verified[] = {"base1", "copy3", "copy4"};
	for (size_t i = 0; i < 3; i++) {
		struct bri_verify_result r;
		EXPECT_EQ_INT(bri_verify_backup(s, verified[i], &ctx, &r, &err), 0);
		EXPECT_EQ_INT(r.status, BRI_VERIFY_OK);
	}
	c = scan(s, c);
	EXPECT_EQ_INT(c->n, 7);

	memset(&st, 0x5a, sizeof(st));
	bri_stats_compute(c, &st);
	char want[40];
	EXPECT_EQ_INT(st.total_backups, 7);
	EXPECT_EQ_INT(st.total_bytes, 7 * size);
	EXPECT(fabs(st.total_size_mb - 7.0 * (double)size / 1048576.0) < 0.01);
	bri_time_local(newest, want, sizeof(want));
	EXPECT_STREQ(st.newest_backup, want);
	EXPECT_STREQ(st.newest_name, "base1");
	bri_time_local(newest - 18 * HOUR, want, sizeof(want));
	EXPECT_STREQ(st.oldest_backup, want);
	EXPECT_EQ_INT(st.by_kind[BRI_KIND_AUTO], 4);
	EXPECT_EQ_INT(st.by_kind[BRI_KIND_NAMED], 2);
	EXPECT_EQ_INT(st.by_kind[BRI_KIND_SAFETY], 1);
	EXPECT_EQ_INT(st.by_kind[BRI_KIND_UNKNOWN], 0);
	EXPECT_EQ_INT(st.verified_ok, 3);
	EXPECT_EQ_INT(st.verify_failed, 0);
	EXPECT_EQ_INT(st.unverified, 4);

	/* JSON: the seed's keys first, with the seed's types. */
	json = NULL;
	EXPECT_EQ_INT(bri_stats_to_json(&st, &json, &len), 0);
	EXPECT(json && len == strlen(json));
	o = json ? json_tokener_parse(json) : NULL;
	EXPECT(o && json_object_is_type(o, json_type_object));
	if (o) {
		json_object *v;
		EXPECT(json_object_object_get_ex(o, "total_backups", &v) &&
		       json_object_is_type(v, json_type_int) && json_object_get_int(v) == 7);
		EXPECT(json_object_object_get_ex(o, "total_size_mb", &v) &&
		       (json_object_is_type(v, json_type_double) ||
		        json_object_is_type(v, json_type_int)));
		EXPECT(json_object_object_get_ex(o, "newest_backup", &v) &&
		       json_object_is_type(v, json_type_string) &&
		       strcmp(json_object_get_string(v), st.newest_backup) == 0);
		EXPECT(json_object_object_get_ex(o, "oldest_backup", &v) &&
		       json_object_is_type(v, json_type_string) &&
		       strcmp(json_object_get_string(v), st.oldest_backup) == 0);
		int i = 0;
		json_object_object_foreach(o, key, val)
		{
			(void)val;
			if (i == 0)
				EXPECT_STREQ(key, "total_backups");
			i++;
		}
		json_object_put(o);
	}
	free(json);

	/* Health: ok within 24 h with 7 backups; each threshold alone warns. */
	EXPECT(health(c, newest + HOUR, 24, 7, &w, NULL));
	EXPECT(health(c, newest + 23 * HOUR, 24, 7, &w, NULL));
	char *text = NULL;
	EXPECT(!health(c, newest + 25 * HOUR, 24, 7, &w, &text));
	EXPECT_EQ_INT(w, 1);
	free(text);
	EXPECT(!health(c, newest + HOUR, 24, 8, &w, NULL));
	EXPECT_EQ_INT(w, 1);
	EXPECT(!health(c, newest + 25 * HOUR, 24, 8, &w, NULL));
	EXPECT_EQ_INT(w, 2);
	/* Thresholds are settable. */
	EXPECT(!health(c, newest + 2 * HOUR, 1, 7, &w, NULL));
	EXPECT(health(c, newest + 48 * HOUR, 72, 2, &w, NULL));

	/* A failed verification warns. */
	struct bri_verify_result r;
	EXPECT_EQ_INT(bri_verify_backup(s, "copy2", &ctx, &r, &err), 0);
	EXPECT_EQ_INT(r.status, BRI_VERIFY_FAILED);
	c = scan(s, c);
	bri_stats_compute(c, &st);
	EXPECT_EQ_INT(st.verified_ok, 3);
	EXPECT_EQ_INT(st.verify_failed, 1);
	EXPECT_EQ_INT(st.unverified, 3);
	text = NULL;
	EXPECT(!health(c, newest + HOUR, 24, 7, &w, &text));
	EXPECT_EQ_INT(w, 1);
	EXPECT_MSG(text && strstr(text, "copy2"),
	           "failed verification warning names no backup:\n%s", text ? text : "");
	free(text);
	EXPECT(!health(c, newest + 25 * HOUR, 24, 8, &w, NULL));
	EXPECT_EQ_INT(w, 3);

	/* The JSON form of health is a JSON object. */
	struct bri_health_rules rules = {.max_age_hours = 24, .min_backups = 7};
	json = NULL;
	bool ok = bri_health_check(c, newest + HOUR, &rules, true, &json, &len);
	EXPECT(!ok);
	o = json ? json_tokener_parse(json) : NULL;
	EXPECT_MSG(o && json_object_is_type(o, json_type_object), "health JSON: %s",
	           json ? json : "(null)");
	json_object_put(o);
	free(json);
	/* One failed of seven is a warning, not critical: six are good. */
	EXPECT_EQ_INT(st.good, 6);
	EXPECT_EQ_INT(bri_health_assess(c, newest + HOUR, &rules, false, &text, &len),
	              BRI_HEALTH_WARNING);
	free(text);

	/* The critical thresholds: the same problem, one line, the worse level. */
	struct bri_health_rules crit = {
	    .max_age_hours = 2, .min_backups = 0, .crit_age_hours = 10, .crit_backups = 0};
	EXPECT_EQ_INT(bri_health_assess(c, newest + 5 * HOUR, &crit, false, &text, &len),
	              BRI_HEALTH_WARNING);
	EXPECT(text && strstr(text, "warning: latest backup is 5.0 hours old (more than 2)"));
	free(text);
	EXPECT_EQ_INT(bri_health_assess(c, newest + 11 * HOUR, &crit, false, &text, &len),
	              BRI_HEALTH_CRITICAL);
	EXPECT(text && strstr(text, "critical: latest backup is 11.0 hours old (more than 10)") &&
	       !strstr(text, "warning: latest backup"));
	free(text);
	crit.crit_backups = 8;
	EXPECT_EQ_INT(bri_health_assess(c, newest + HOUR, &crit, false, &text, &len),
	              BRI_HEALTH_CRITICAL);
	EXPECT(text && strstr(text, "critical: only 7 backups available (fewer than 8)"));
	free(text);
	/* Nagios: one line, the worst problem first, performance data after '|'. */
	bri_health_nagios(c, newest + 11 * HOUR, &crit, &text);
	EXPECT_MSG(
	    text && !strncmp(text, "BRI-BACKUP CRITICAL - latest backup is 11.0 hours old", 53) &&
	        strstr(text, " | age=39600s;7200;36000 backups=7;0;8 good=6\n") &&
	        strchr(text, '\n') == text + strlen(text) - 1,
	    "nagios: %s", text ? text : "(null)");
	free(text);

	/* Rehearsals (bri/rehearsal.h): kept in the store, read by the catalog, judged by health.
	 */
	{
		struct bri_health_rules rh = {
		    .max_age_hours = 1e6, .rehearse_checked = true, .rehearse_max_age_hours = 24};
		struct bri_rehearsal good = {
		    .time = newest, .ok = true, .restore_s = 1.3, .checks = 4};
		struct bri_rehearsal bad = {
		    .time = newest + 2 * HOUR, .ok = false, .checks = 2, .checks_failed = 1};
		struct bri_rehearsal back;
		const struct bri_entry *pick = bri_rehearsal_pick(c), *last;
		char line[600], *one = strdup(c->entries[1]->name),
		                *zero = strdup(c->entries[0]->name);

		EXPECT(pick && pick->kind != BRI_KIND_SAFETY &&
		       pick->verify.status != BRI_VERIFY_FAILED);
		EXPECT(bri_rehearsal_newest(c) == NULL);
		EXPECT_EQ_INT(bri_health_assess(c, newest + HOUR, &rh, false, &text, &len),
		              BRI_HEALTH_WARNING);
		EXPECT_MSG(text && strstr(text, "warning: no restore rehearsal has run (one is "
		                                "expected every 24 hours)"),
		           "%s", text ? text : "");
		free(text);
		EXPECT_EQ_INT(bri_rehearsal_record(s, one, &good, &err), 0);
		EXPECT_EQ_INT(bri_rehearsal_record(s, "nosuch", &good, &err), 0); /* nothing kept */
		EXPECT_EQ_INT(bri_rehearsal_read(s, "nosuch", &back), -ENOENT);
		c = scan(s, c);
		last = bri_rehearsal_newest(c);
		EXPECT(last && !strcmp(last->name, one) && last->rehearsal.ok &&
		       last->rehearsal.time == newest && last->rehearsal.checks == 4);
		bri_rehearsal_describe(&last->rehearsal, line, sizeof(line));
		EXPECT_MSG(!strncmp(line, "ok ", 3) && strstr(line, " (restore 1.3 s, 4 checks)\n"),
		           "%s", line);
		EXPECT_EQ_INT(bri_health_assess(c, newest + HOUR, &rh, false, &text, &len),
		              BRI_HEALTH_WARNING); /* copy2's failed verification */
		EXPECT_MSG(text && !strstr(text, "rehearsal"), "%s", text ? text : "");
		free(text);
		EXPECT_EQ_INT(bri_health_assess(c, newest + 25 * HOUR, &rh, false, &text, &len),
		              BRI_HEALTH_WARNING);
		EXPECT(text && strstr(text, "the last restore rehearsal (") &&
		       strstr(text, ") is 25.0 hours old (more than 24)"));
		free(text);
		/* Not configured: no rehearsal rule at all. */
		EXPECT_EQ_INT(bri_health_assess(c, newest + 25 * HOUR, &rules, false, &text, &len),
		              BRI_HEALTH_WARNING);
		EXPECT(text && !strstr(text, "rehearsal"));
		free(text);
		/* The newest (by its time) failed: critical, first. */
		snprintf(bad.reason, sizeof(bad.reason), "1 of 2 checks failed");
		EXPECT_EQ_INT(bri_rehearsal_record(s, zero, &bad, &err), 0);
		c = scan(s, c);
		last = bri_rehearsal_newest(c);
		EXPECT(last && !strcmp(last->name, zero) && !last->rehearsal.ok);
		bri_rehearsal_describe(&last->rehearsal, line, sizeof(line));
		EXPECT_MSG(!strncmp(line, "failed: 1 of 2 checks failed (", 30) &&
		               strstr(line, ", restore 0.0 s, 2 checks)\n"),
		           "%s", line);
		EXPECT_EQ_INT(bri_health_assess(c, newest + 3 * HOUR, &rh, false, &text, &len),
		              BRI_HEALTH_CRITICAL);
		EXPECT_MSG(text && !strncmp(text, "critical: the last restore rehearsal (", 38) &&
		               strstr(text, ") failed: 1 of 2 checks failed\n"),
		           "%s", text ? text : "");
		free(text);
		/* A damaged status file says nothing good. */
		EXPECT_EQ_INT(bri_store_sidecar_write(s, zero, BRI_SIDECAR_REHEARSAL, "{", 1, &err),
		              0);
		EXPECT_EQ_INT(bri_rehearsal_read(s, zero, &back), -EINVAL);
		EXPECT(back.time == 0 && !back.ok);
		EXPECT_EQ_INT(bri_store_sidecar_remove(s, zero, BRI_SIDECAR_REHEARSAL), 0);
		EXPECT_EQ_INT(bri_store_sidecar_remove(s, one, BRI_SIDECAR_REHEARSAL), 0);
		c = scan(s, c);
		EXPECT(bri_rehearsal_newest(c) == NULL);
		bri_rehearsal_describe(&c->entries[0]->rehearsal, line, sizeof(line));
		EXPECT_STREQ(line, "never\n");
		free(one);
		free(zero);
	}

	/* A .db without metadata is not a backup: counted apart, and a warning. */
	char *stray = bri_store_path(s, "stray", ".db");
	char *base1 = bri_store_path(s, "base1", ".db");
	tu_copy(base1, stray);
	c = scan(s, c);
	EXPECT_EQ_INT(c->n, 7);
	EXPECT_EQ_INT(c->nunknown, 1);
	bri_stats_compute(c, &st);
	EXPECT_EQ_INT(st.total_backups, 7);
	EXPECT_EQ_INT(st.unknown_files, 1);
	EXPECT_EQ_INT(st.by_kind[BRI_KIND_UNKNOWN], 1);
	EXPECT_EQ_INT(st.total_bytes, 7 * size);
	text = NULL;
	EXPECT(!health(c, newest + HOUR, 24, 6, &w, &text));
	EXPECT_EQ_INT(w, 2); /* copy2 failed, and the stray file */
	EXPECT_MSG(text && strstr(text, "warning: 1 .db file in the store is not a backup") &&
	               strstr(text, "stray"),
	           "no warning about the unknown file:\n%s", text ? text : "");
	free(text);
	free(base1);
	free(stray);

	/* Every backup failed its last verification: no good backup, critical. */
	for (size_t i = 0; i < c->n; i++) {
		struct bri_verify_result bad = {.status = BRI_VERIFY_FAILED, .checked = newest};
		char *vj = NULL, vf[BRI_NAME_MAX + 16];
		size_t vl = 0;
		struct stat dbst;
		char *dbp = bri_store_path(s, c->entries[i]->name, ".db");
		EXPECT(dbp && stat(dbp, &dbst) == 0);
		free(dbp);
		verify_file_of(&bad.file, &dbst); /* a result for this very file */
		snprintf(bad.reason, sizeof(bad.reason), "checksum mismatch");
		snprintf(vf, sizeof(vf), "%s.db.verify", c->entries[i]->name);
		EXPECT_EQ_INT(bri_verify_to_json(&bad, &vj, &vl), 0);
		EXPECT_EQ_INT(bri_store_write_file(s, vf, vj, vl, &err), 0);
		free(vj);
	}
	c = scan(s, c);
	bri_stats_compute(c, &st);
	EXPECT_EQ_INT(st.good, 0);
	EXPECT_EQ_INT(st.verify_failed, 7);
	text = NULL;
	EXPECT(!health(c, newest + HOUR, 24, 7, &w, &text));
	EXPECT_MSG(text && strncmp(text, "critical: no good backup exists", 31) == 0,
	           "no critical line:\n%s", text ? text : "");
	free(text);
	EXPECT_EQ_INT(bri_health_assess(c, newest + HOUR, &rules, false, &text, &len),
	              BRI_HEALTH_CRITICAL);
	free(text);
	json = NULL;
	EXPECT_EQ_INT(bri_health_assess(c, newest + HOUR, &rules, true, &json, &len),
	              BRI_HEALTH_CRITICAL);
	o = json ? json_tokener_parse(json) : NULL;
	if (o) {
		json_object *v;
		EXPECT(json_object_object_get_ex(o, "status", &v) &&
		       strcmp(json_object_get_string(v), "critical") == 0);
		EXPECT(json_object_object_get_ex(o, "critical", &v) &&
		       json_object_array_length(v) == 1);
		EXPECT(json_object_object_get_ex(o, "good_backups", &v) &&
		       json_object_get_int(v) == 0);
	}
	EXPECT(o != NULL);
	json_object_put(o);
	free(json);
	EXPECT_STREQ(bri_health_level_name(BRI_HEALTH_CRITICAL), "critical");

	bri_catalog_free(c);
	bri_store_close(s);
	free(live);
}

/* bri_health_threshold_set: the CLI's names, '_' or '-', each value's range. */
static void test_thresholds(void)
{
	struct bri_health_rules r = {.max_age_hours = 24, .min_backups = 7};
	struct bri_err err = {0};

	EXPECT_EQ_INT(bri_health_threshold_set(&r, "warn-age", "26h", &err), 0);
	EXPECT(r.max_age_hours == 26);
	EXPECT_EQ_INT(bri_health_threshold_set(&r, "max_age_hours", "1.5", &err), 0);
	EXPECT(r.max_age_hours == 1.5);
	EXPECT_EQ_INT(bri_health_threshold_set(&r, "crit_age", "2d", &err), 0);
	EXPECT(r.crit_age_hours == 48);
	EXPECT_EQ_INT(bri_health_threshold_set(&r, "warn_count", "3", &err), 0);
	EXPECT_EQ_INT(bri_health_threshold_set(&r, "crit-count", "0", &err), 0);
	EXPECT(r.min_backups == 3 && r.crit_backups == 0);
	EXPECT_EQ_INT(bri_health_threshold_set(&r, "rehearse_age", "90m", &err), 0);
	EXPECT(r.rehearse_checked && r.rehearse_max_age_hours == 1.5);
	EXPECT_EQ_INT(bri_health_rules_check(&r, &err), 0);

	EXPECT_EQ_INT(bri_health_threshold_set(&r, "warn_age", "0", &err), -EINVAL);
	EXPECT_STREQ(err.msg, "wants a duration such as 26h, 90m or 2d, not '0'");
	EXPECT_EQ_INT(bri_health_threshold_set(&r, "max-age-hours", "nan", &err), -EINVAL);
	EXPECT_EQ_INT(bri_health_threshold_set(&r, "crit_count", "2147483648", &err), -EINVAL);
	EXPECT_STREQ(err.msg, "wants a whole number of 0 or more, not '2147483648'");
	EXPECT_EQ_INT(bri_health_threshold_set(&r, "min-backups", "-0", &err), -EINVAL);
	EXPECT_EQ_INT(bri_health_threshold_set(&r, "max_age", "1", &err), -ENOENT);
	EXPECT_EQ_INT(bri_health_threshold_set(&r, "warn__age", "1", &err), -ENOENT);
	EXPECT(r.max_age_hours == 1.5 && r.min_backups == 3); /* a refused value changes nothing */

	EXPECT_EQ_INT(bri_health_threshold_set(&r, "warn_age", "3d", &err), 0);
	EXPECT_EQ_INT(bri_health_rules_check(&r, &err), -EINVAL);
	EXPECT_STREQ(err.msg,
	             "the critical age (48 hours) must not be below the warning age (72 hours)");
	r.crit_age_hours = 0; /* no critical age: no rule to contradict */
	EXPECT_EQ_INT(bri_health_rules_check(&r, &err), 0);
}

int main(void)
{
	test_thresholds();
	ctx = bri_op_ctx_self("cli");
	char *base = tu_tmpdir("report");
	test_report(base);
	tu_tmpdir_done(base);
	return EXPECT_RESULT();
}
