/*
 * Unit tests of target resolution (include/bri/target.h) and of the restore
 * reports kept in the store (include/bri/reports.h), on a real store: a
 * name, "latest" (the newest non-safety backup), "NAME.db", a path into the
 * store, a .db elsewhere with its .db.meta, a copy of the mount (NAME/bri.db
 * with meta.json, and the folder itself), the live database refused, names
 * only for the mount; verification of a mount copy through the same
 * resolution; reports replaced per name, capped at BRI_REPORTS_MAX, and kept
 * by bri_restore.
 */
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bri/create.h"
#include "bri/reports.h"
#include "bri/restore.h"
#include "bri/store.h"
#include "bri/target.h"
#include "expect.h"
#include "testutil.h"

static struct bri_op_ctx ctx;

static void make_backup(struct bri_store *s, const char *name, enum bri_kind kind)
{
	struct bri_err err = {0};
	struct bri_create_opts o = {.name = name, .kind = kind};
	char *out = NULL;

	if (bri_create(s, &o, &ctx, &out, &err) != 0)
		TU_DIE("create %s: %s", name, err.msg);
	free(out);
}

static int resolve(struct bri_store *s, const char *what, unsigned flags, struct bri_target *t)
{
	struct bri_err err = {0};

	memset(t, 0, sizeof(*t));
	return bri_target_resolve(s, NULL, what, flags, t, &err);
}

static void test_resolve(const char *base)
{
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	struct bri_target t;
	char *live = tu_fmt("%s/bri.db", base);
	sqlite3 *db = tu_make_db(live, "wal", 10, 20, true);

	if (bri_store_open(live, NULL, true, &s, &err) != 0)
		TU_DIE("store: %s", err.msg);
	EXPECT_EQ_INT(resolve(s, "latest", 0, &t), -ENOENT); /* no backups yet */
	make_backup(s, "first", BRI_KIND_NAMED);
	sleep(1); /* backup_time has one-second resolution */
	make_backup(s, "second", BRI_KIND_NAMED);
	sleep(1);
	make_backup(s, "pre_restore_safety_20990101_000000", BRI_KIND_SAFETY);

	/* latest and none: the newest that is not a safety backup. */
	EXPECT_EQ_INT(resolve(s, "latest", 0, &t), 0);
	EXPECT(t.kind == BRI_TARGET_BACKUP);
	EXPECT_STREQ(t.name, "second");
	bri_target_free(&t);
	EXPECT_EQ_INT(resolve(s, NULL, 0, &t), 0);
	EXPECT_STREQ(t.name, "second");
	bri_target_free(&t);
	EXPECT_EQ_INT(resolve(s, "latest", BRI_TARGET_NAMES_ONLY, &t), 0);
	EXPECT_STREQ(t.name, "second");
	bri_target_free(&t);

	/* A name, NAME.db, a path into the store. */
	EXPECT_EQ_INT(resolve(s, "first", 0, &t), 0);
	EXPECT_STREQ(t.name, "first");
	bri_target_free(&t);
	EXPECT_EQ_INT(resolve(s, "first.db", 0, &t), 0);
	EXPECT_STREQ(t.name, "first");
	bri_target_free(&t);
	char *in_store = tu_fmt("%s/backups/first.db", base);
	EXPECT_EQ_INT(resolve(s, in_store, 0, &t), 0);
	EXPECT(t.kind == BRI_TARGET_BACKUP);
	EXPECT_STREQ(t.name, "first");
	bri_target_free(&t);

	/* Unknown and invalid names; the mount never resolves paths. */
	EXPECT_EQ_INT(resolve(s, "nope", 0, &t), -ENOENT);
	EXPECT_EQ_INT(resolve(s, "a b", 0, &t), -EINVAL);
	EXPECT_EQ_INT(resolve(s, in_store, BRI_TARGET_NAMES_ONLY, &t), -EINVAL);
	EXPECT_EQ_INT(resolve(s, live, 0, &t), -EINVAL); /* the live database itself */

	/* A copy of the store elsewhere: X.db with X.db.meta. */
	char *off = tu_fmt("%s/offsite", base);
	mkdir(off, 0700);
	char *odb = tu_fmt("%s/x.db", off), *ometa = tu_fmt("%s/x.db.meta", off);
	char *sm = tu_fmt("%s/backups/first.db.meta", base);
	tu_copy(in_store, odb);
	tu_copy(sm, ometa);
	EXPECT_EQ_INT(resolve(s, odb, 0, &t), 0);
	EXPECT(t.kind == BRI_TARGET_FILE);
	EXPECT(t.meta_path && !strcmp(t.meta_path + strlen(t.meta_path) - 9, "x.db.meta"));
	bri_target_free(&t);

	/* A copy of the mount: NAME/bri.db with NAME/meta.json; the folder too. */
	char *mc = tu_fmt("%s/mountcopy", base), *mcn = tu_fmt("%s/mountcopy/first", base);
	mkdir(mc, 0700);
	mkdir(mcn, 0700);
	char *mdb = tu_fmt("%s/bri.db", mcn), *mmeta = tu_fmt("%s/meta.json", mcn);
	tu_copy(in_store, mdb);
	tu_copy(sm, mmeta);
	EXPECT_EQ_INT(resolve(s, mdb, 0, &t), 0);
	EXPECT(t.kind == BRI_TARGET_FILE);
	EXPECT(t.meta_path && !strcmp(t.meta_path + strlen(t.meta_path) - 9, "meta.json"));
	struct bri_verify_result res;
	EXPECT_EQ_INT(bri_target_verify(s, &t, &ctx, &res, &err), 0);
	EXPECT_MSG(res.status == BRI_VERIFY_OK, "mount copy: %s", res.reason);
	bri_target_free(&t);
	EXPECT_EQ_INT(resolve(s, mcn, 0, &t), 0);
	EXPECT(t.kind == BRI_TARGET_FILE && t.path && strstr(t.path, "first/bri.db"));
	bri_target_free(&t);
	/* Without metadata: resolved, and its verification fails saying so. */
	unlink(mmeta);
	EXPECT_EQ_INT(resolve(s, mdb, 0, &t), 0);
	EXPECT(t.meta_path == NULL);
	EXPECT_EQ_INT(bri_target_verify(s, &t, &ctx, &res, &err), 0);
	EXPECT(res.status == BRI_VERIFY_FAILED && strstr(res.reason, "no metadata file"));
	bri_target_free(&t);

	free(in_store);
	free(off);
	free(odb);
	free(ometa);
	free(sm);
	free(mc);
	free(mcn);
	free(mdb);
	free(mmeta);
	sqlite3_close(db);
	bri_store_close(s);
	free(live);
}

static void test_reports(const char *base)
{
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	struct bri_report_rec *r = NULL;
	size_t n = 0;
	char *live = tu_fmt("%s/r.db", base);
	char *dir = tu_fmt("%s/rstore", base);
	sqlite3 *db = tu_make_db(live, "wal", 5, 5, true);

	if (bri_store_open(live, dir, true, &s, &err) != 0)
		TU_DIE("store: %s", err.msg);
	EXPECT_EQ_INT(bri_reports_load(s, &r, &n), 0);
	EXPECT_EQ_INT((int)n, 0);
	bri_reports_free(r, n);
	EXPECT_EQ_INT(bri_reports_add(s, "a", 100, "one\n", &err), 0);
	EXPECT_EQ_INT(bri_reports_add(s, "b", 200, "two\n", &err), 0);
	EXPECT_EQ_INT(bri_reports_add(s, "a", 300, "three\n", &err), 0); /* replaces a's */
	EXPECT_EQ_INT(bri_reports_load(s, &r, &n), 0);
	EXPECT_EQ_INT((int)n, 2);
	if (n == 2) {
		EXPECT_STREQ(r[0].name, "b");
		EXPECT_STREQ(r[1].name, "a");
		EXPECT_STREQ(r[1].text, "three\n");
		EXPECT_EQ_INT((int)r[1].time, 300);
	}
	bri_reports_free(r, n);
	/* Capped: the oldest go. */
	for (int i = 0; i < BRI_REPORTS_MAX + 5; i++) {
		char name[32];

		snprintf(name, sizeof(name), "n%d", i);
		EXPECT_EQ_INT(bri_reports_add(s, name, 1000 + i, "x\n", &err), 0);
	}
	EXPECT_EQ_INT(bri_reports_load(s, &r, &n), 0);
	EXPECT_EQ_INT((int)n, BRI_REPORTS_MAX);
	if (n == BRI_REPORTS_MAX) {
		EXPECT_STREQ(r[n - 1].name, "n260");
		EXPECT_STREQ(r[0].name, "n5");
	}
	bri_reports_free(r, n);

	/* bri_restore keeps its report, also a failed one's. */
	make_backup(s, "kept", BRI_KIND_NAMED);
	struct bri_restore_opts o = {.verify = true, .busy_timeout_ms = 300};
	struct bri_restore_report rep;
	EXPECT_EQ_INT(bri_restore(s, "latest", &o, &ctx, &rep, &err), 0);
	EXPECT_EQ_INT(bri_reports_load(s, &r, &n), 0);
	EXPECT(n > 0 && !strcmp(r[n - 1].name, "kept") && strstr(r[n - 1].text, "result: ok"));
	bri_reports_free(r, n);

	sqlite3_close(db);
	bri_store_close(s);
	free(live);
	free(dir);
}

int main(void)
{
	ctx = bri_op_ctx_self("cli");
	char *base = tu_tmpdir("target");
	test_resolve(base);
	test_reports(base);
	tu_tmpdir_done(base);
	return EXPECT_RESULT();
}
