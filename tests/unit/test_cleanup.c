/*
 * Unit tests of cleanup and delete (include/bri/cleanup.h) on a real store:
 * one backup made by bri_create and copies of it published with their own
 * metadata at chosen ages and kinds. A dry run reports and removes nothing;
 * the real run removes exactly the expired backups beyond keep_min (all
 * three files), never a safety backup, and audits it; delete removes one
 * named backup (safety too) and refuses unknown or invalid names.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bri/catalog.h"
#include "bri/cleanup.h"
#include "bri/create.h"
#include "bri/meta.h"
#include "bri/store.h"
#include "bri/verify.h"
#include "expect.h"
#include "testutil.h"
#include "../../src/core/internal.h"

#define DAY ((time_t)86400)

static struct bri_op_ctx ctx;

static bool has_files(struct bri_store *s, const char *name, bool any)
{
	static const char *sfx[] = {".db", ".db.meta", ".db.verify"};
	int n = 0;
	for (size_t i = 0; i < 3; i++) {
		char *p = bri_store_path(s, name, sfx[i]);
		n += tu_exists(p);
		free(p);
	}
	return any ? n > 0 : n == 3;
}

static void test_cleanup(const char *base)
{
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char *live = tu_fmt("%s/bri.db", base);
	tu_make_db(live, "wal", 42, 100, false);
	if (bri_store_open(live, NULL, true, &s, &err) != 0)
		TU_DIE("store: %s", err.msg);
	struct bri_create_opts o = {.name = "fresh"};
	char *out = NULL;
	if (bri_create(s, &o, &ctx, &out, &err) != 0)
		TU_DIE("create: %s", err.msg);
	free(out);
	time_t now = time(NULL);

	/* fresh (now), day1, old40..old49, safety400: 12 non-safety, keep_min 7. */
	tu_clone_backup(s, "fresh", "day1", now - DAY, BRI_KIND_AUTO, false);
	for (int i = 0; i < 10; i++) {
		char n[16];
		snprintf(n, sizeof(n), "old%d", 40 + i);
		tu_clone_backup(s, "fresh", n, now - (40 + i) * DAY, BRI_KIND_AUTO, false);
	}
	tu_clone_backup(s, "fresh", "pre_restore_safety_old", now - 400 * DAY, BRI_KIND_SAFETY, false);
	/* Every backup verified, so each has its three files. */
	const char *all[] = {"fresh",
	                     "day1",
	                     "old40",
	                     "old41",
	                     "old42",
	                     "old43",
	                     "old44",
	                     "old45",
	                     "old46",
	                     "old47",
	                     "old48",
	                     "old49",
	                     "pre_restore_safety_old"};
	for (size_t i = 0; i < 13; i++) {
		struct bri_verify_result r;
		EXPECT_EQ_INT(bri_verify_backup(s, all[i], &ctx, &r, &err), 0);
	}

	struct bri_retention_rules rules = {.retention_days = 30, .keep_min = 7};
	struct bri_cleanup_item *items = NULL;
	size_t n = 0;

	/* Dry run: says what would go, removes nothing. */
	int rc = bri_cleanup(s, &rules, now, true, &ctx, &items, &n, &err);
	EXPECT_EQ_INT(rc, 5);
	EXPECT_EQ_INT(n, 13);
	int removing = 0;
	for (size_t i = 0; items && i < n; i++) {
		if (i > 0)
			EXPECT_MSG(items[i].time <= items[i - 1].time,
			           "items not newest first at %zu", i);
		bool old = strncmp(items[i].name, "old", 3) == 0 && atoi(items[i].name + 3) >= 45;
		EXPECT_MSG((items[i].verdict == BRI_REMOVE_EXPIRED) == old, "%s: verdict %d",
		           items[i].name, items[i].verdict);
		removing += items[i].verdict == BRI_REMOVE_EXPIRED;
		if (strcmp(items[i].name, "pre_restore_safety_old") == 0)
			EXPECT_EQ_INT(items[i].verdict, BRI_KEEP_SAFETY);
	}
	EXPECT_EQ_INT(removing, 5);
	free(items);
	for (size_t i = 0; i < 13; i++)
		EXPECT_MSG(has_files(s, all[i], false), "dry run removed files of %s", all[i]);

	/* An audit line older than 90 days, dropped by the real cleanup. */
	{
		char old[40];
		bri_time_utc(now - 100 * DAY, old, sizeof(old));
		char *line = tu_fmt("{\"time_utc\":\"%s\",\"operation\":\"create\","
		                    "\"name\":\"ancient\",\"result\":\"ok\"}\n",
		                    old);
		char *ap = bri_store_path(s, "audit.jsonl", "");
		size_t alen = 0;
		char *cur = tu_read(ap, &alen);
		char *both = tu_fmt("%s%s", line, cur ? cur : "");
		tu_write(ap, both, strlen(both));
		EXPECT_EQ_INT(tu_audit_count(s->dir, "create", "ancient", true), 1);
		free(both);
		free(cur);
		free(ap);
		free(line);
	}

	/* For real. */
	items = NULL;
	rc = bri_cleanup(s, &rules, now, false, &ctx, &items, &n, &err);
	EXPECT_EQ_INT(rc, 5);
	free(items);
	for (size_t i = 0; i < 13; i++) {
		bool gone = strncmp(all[i], "old", 3) == 0 && atoi(all[i] + 3) >= 45;
		if (gone)
			EXPECT_MSG(!has_files(s, all[i], true), "%s: files left after cleanup",
			           all[i]);
		else
			EXPECT_MSG(has_files(s, all[i], false), "%s: removed by cleanup", all[i]);
	}
	EXPECT_MSG(tu_audit_count(s->dir, "create", "ancient", true) == 0,
	           "cleanup left an audit line older than 90 days");
	EXPECT(tu_audit_count(s->dir, "verify", "fresh", true) == 1);

	/* Again: nothing more to do. */
	items = NULL;
	EXPECT_EQ_INT(bri_cleanup(s, &rules, now, false, &ctx, &items, &n, &err), 0);
	EXPECT_EQ_INT(n, 8);
	free(items);

	/* .db files without metadata are not backups: never removed, however old,
	 * whatever their name says (SPEC.md section 1). */
	char *fdb = bri_store_path(s, "fresh", ".db");
	char *sa = bri_store_path(s, "pre_restore_safety_20200101_000000", ".db");
	char *aa = bri_store_path(s, "bri_backup_20200101_000000", ".db");
	tu_copy(fdb, sa);
	tu_copy(fdb, aa);
	struct timespec ts[2] = {{now - 400 * DAY, 0}, {now - 400 * DAY, 0}};
	EXPECT(utimensat(AT_FDCWD, sa, ts, 0) == 0);
	EXPECT(utimensat(AT_FDCWD, aa, ts, 0) == 0);
	items = NULL;
	EXPECT_EQ_INT(bri_cleanup(s, &rules, now, false, &ctx, &items, &n, &err), 0);
	EXPECT_EQ_INT(n, 8); /* and not listed among the backups it judged */
	free(items);
	struct bri_retention_rules none = {.retention_days = 0, .keep_min = 0};
	items = NULL;
	EXPECT(bri_cleanup(s, &none, now + 1000 * DAY, true, &ctx, &items, &n, &err) >= 0);
	for (size_t i = 0; items && i < n; i++)
		EXPECT(strcmp(items[i].name, "bri_backup_20200101_000000") != 0 &&
		       strcmp(items[i].name, "pre_restore_safety_20200101_000000") != 0);
	free(items);
	EXPECT_MSG(tu_exists(sa), "cleanup removed a .db that has no metadata");
	EXPECT_MSG(tu_exists(aa), "cleanup removed a .db that has no metadata");
	free(fdb);

	/* Negative rules. */
	struct bri_retention_rules bad = {.retention_days = -1, .keep_min = 7};
	items = NULL;
	EXPECT_EQ_INT(bri_cleanup(s, &bad, now, false, &ctx, &items, &n, &err), -EINVAL);
	free(items);
	EXPECT(has_files(s, "old44", false));

	/* The audit log records the cleanup. */
	char *audit = NULL;
	size_t alen;
	EXPECT_EQ_INT(bri_store_read_file(s, "audit.jsonl", 1 << 20, &audit, &alen), 0);
	EXPECT(audit && strstr(audit, "cleanup"));
	free(audit);

	/* Delete: one named backup, all its files; safety ones too. */
	EXPECT_EQ_INT(bri_delete(s, "old44", &ctx, &err), 0);
	EXPECT(!has_files(s, "old44", true));
	EXPECT_EQ_INT(bri_delete(s, "pre_restore_safety_old", &ctx, &err), 0);
	/* A .db without metadata is not a backup: even a request by name keeps it. */
	memset(&err, 0, sizeof(err));
	EXPECT_EQ_INT(bri_delete(s, "pre_restore_safety_20200101_000000", &ctx, &err), -EINVAL);
	EXPECT(strstr(err.msg, "not a backup") != NULL);
	EXPECT(tu_exists(sa));
	EXPECT(!has_files(s, "pre_restore_safety_old", true));
	memset(&err, 0, sizeof(err));
	EXPECT_EQ_INT(bri_delete(s, "old44", &ctx, &err), -ENOENT);
	EXPECT(err.msg[0] != '\0');
	EXPECT_EQ_INT(bri_delete(s, "../bri", &ctx, &err), -EINVAL);
	EXPECT_EQ_INT(bri_delete(s, "", &ctx, &err), -EINVAL);
	EXPECT(tu_exists(live));
	/* Nor a .db whose .meta lacks the seed's keys. */
	char *od = bri_store_path(s, "orphan", ".db");
	char *om = bri_store_path(s, "orphan", ".db.meta");
	char *fd = bri_store_path(s, "fresh", ".db");
	tu_copy(fd, od);
	tu_write_str(om, "{\"backup_time\": \"2020-01-01T00:00:00\"}\n");
	EXPECT_EQ_INT(bri_delete(s, "orphan", &ctx, &err), -EINVAL);
	EXPECT(tu_exists(od) && tu_exists(om));
	EXPECT(unlink(od) == 0 && unlink(om) == 0 && unlink(sa) == 0 && unlink(aa) == 0);
	free(om);
	free(sa);
	free(aa);
	free(od);
	free(fd);
	/* Deletes and cleanups are audited, failures too. */
	EXPECT(tu_audit_count(s->dir, "delete", "old44", true) == 1);
	EXPECT(tu_audit_count(s->dir, "delete", "old44", false) >= 1);
	EXPECT(tu_audit_count(s->dir, "cleanup", NULL, true) >= 2);

	/* delete_locked with the lock held. */
	int lfd = bri_store_lock(s, &err);
	EXPECT(lfd >= 0);
	EXPECT_EQ_INT(bri_delete_locked(s, "old43", &ctx, &err), 0);
	if (lfd >= 0)
		bri_store_unlock(lfd);
	EXPECT(!has_files(s, "old43", true));
	EXPECT(has_files(s, "fresh", false));

	bri_store_close(s);
	free(live);
}

/*
 * A store that is the live database's own folder (--backup-dir set to it):
 * the live database is not a backup. It must not be listed, deleted or
 * cleaned up; a real backup beside it works as usual.
 */
static void test_store_is_db_folder(const char *base)
{
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char *dir = tu_fmt("%s/samedir", base);
	char *live = tu_fmt("%s/samedir/bri.db", base);
	EXPECT(mkdir(dir, 0755) == 0);
	tu_make_db(live, "wal", 42, 10, false);
	struct timespec ts[2] = {{time(NULL) - 400 * DAY, 0}, {time(NULL) - 400 * DAY, 0}};
	EXPECT(utimensat(AT_FDCWD, live, ts, 0) == 0); /* a database not written for a while */
	/* SPEC.md section 1: refused unless forced, with a message saying why. */
	EXPECT_EQ_INT(bri_store_open(live, dir, true, &s, &err), -EINVAL);
	EXPECT(s == NULL);
	EXPECT_MSG(strstr(err.msg, "own folder") != NULL, "message: %s", err.msg);
	struct bri_store_open_opts forced = {.create = true, .force = true};
	if (bri_store_open_ex(live, dir, &forced, &s, &err) != 0)
		TU_DIE("store: %s", err.msg);
	struct bri_create_opts o = {.name = "real"};
	char *out = NULL;
	EXPECT_EQ_INT(bri_create(s, &o, &ctx, &out, &err), 0);
	free(out);

	struct bri_catalog *c = NULL;
	EXPECT_EQ_INT(bri_catalog_scan(s, NULL, &c, &err), 0);
	bool listed = c && bri_catalog_find(c, "bri") != NULL;
	bri_catalog_free(c);
	/*
	 * The live database is never a backup: not listed, not deleted, not
	 * cleaned up, even when the store is its own folder.
	 */
	{
		EXPECT_MSG(!listed, "the live database is listed as a backup");
		int rc = bri_delete(s, "bri", &ctx, &err);
		EXPECT_MSG(rc < 0, "bri_delete removed the live database");
		struct bri_retention_rules none = {.retention_days = 30, .keep_min = 0};
		struct bri_cleanup_item *items = NULL;
		size_t n = 0;
		bri_cleanup(s, &none, time(NULL), false, &ctx, &items, &n, &err);
		free(items);
		EXPECT_MSG(tu_exists(live), "the live database was removed");
	}
	/*
	 * Another program's databases in that folder (issue 9 item 2: "removed
	 * analytics"): no .meta, or one without the seed's keys. Not backups:
	 * cleanup and delete leave them, the catalog lists them as unknown.
	 */
	{
		char *an = tu_fmt("%s/analytics.db", dir), *sl = tu_fmt("%s/seedless.db", dir);
		char *slm = tu_fmt("%s/seedless.db.meta", dir);
		tu_make_db(an, "wal", 5, 10, false);
		tu_make_db(sl, "delete", 6, 10, false);
		tu_write_str(slm, "{\"app\": \"other\", \"version\": 3}\n");
		EXPECT(utimensat(AT_FDCWD, an, ts, 0) == 0);
		EXPECT(utimensat(AT_FDCWD, sl, ts, 0) == 0);
		struct bri_retention_rules none = {.retention_days = 0, .keep_min = 0};
		struct bri_cleanup_item *items = NULL;
		size_t n = 0;
		EXPECT_EQ_INT(bri_cleanup(s, &none, time(NULL) + 10, false, &ctx, &items, &n, &err),
		              0);
		free(items);
		EXPECT_MSG(tu_exists(an) && tu_exists(sl) && tu_exists(slm),
		           "cleanup removed another program's database");
		EXPECT_EQ_INT(bri_delete(s, "analytics", &ctx, &err), -EINVAL);
		EXPECT(tu_exists(an));
		c = NULL;
		EXPECT_EQ_INT(bri_catalog_scan(s, NULL, &c, &err), 0);
		EXPECT(c && c->n == 1 && c->nunknown == 2);
		EXPECT(c && catalog_find_unknown(c, "analytics") &&
		       catalog_find_unknown(c, "seedless"));
		bri_catalog_free(c);
		free(an);
		free(sl);
		free(slm);
	}
	EXPECT_EQ_INT(bri_store_has(s, "real"), 1);
	bri_store_close(s);
	free(live);
	free(dir);
}

int main(void)
{
	ctx = bri_op_ctx_self("cli");
	char *base = tu_tmpdir("cleanup");
	test_cleanup(base);
	test_store_is_db_folder(base);
	tu_tmpdir_done(base);
	return EXPECT_RESULT();
}
