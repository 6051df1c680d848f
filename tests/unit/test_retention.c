/*
 * Unit tests of the retention policy (include/bri/retention.h) on synthetic
 * lists with a fixed "now": recent backups kept, expired ones removed, safety
 * backups never removed, the newest keep_min good non-safety backups kept
 * however old, the newest good one always kept, failed ones never counted
 * towards the floor, unknown files (not backups) never touched, order of the
 * input irrelevant, negative rules refused. Pure: no I/O.
 */
#include <errno.h>

#include "bri/cleanup.h"
#include "bri/retention.h"
#include "expect.h"

#define NOW  ((time_t)1760625000)
#define DAY  ((time_t)86400)
#define MAXN 64

static const struct bri_retention_rules defaults = {.retention_days = BRI_DEFAULT_RETENTION_DAYS,
                                                    .keep_min = BRI_DEFAULT_KEEP_MIN};

struct list {
	struct bri_retention_item items[MAXN];
	char names[MAXN][32];
	size_t n;
};

static void add(struct list *l, time_t age, enum bri_kind kind)
{
	size_t i = l->n++;
	snprintf(l->names[i], sizeof(l->names[i]), "b%02zu", i);
	l->items[i].name = l->names[i];
	l->items[i].time = NOW - age;
	l->items[i].kind = kind;
}

/* Runs the plan; returns its result, verdicts in v. */
static int plan(const struct list *l, const struct bri_retention_rules *r,
                enum bri_retention_verdict *v)
{
	for (size_t i = 0; i < MAXN; i++)
		v[i] = (enum bri_retention_verdict)99;
	return bri_retention_plan(l->items, l->n, NOW, r, v);
}

static int count(const enum bri_retention_verdict *v, size_t n, enum bri_retention_verdict which)
{
	int c = 0;
	for (size_t i = 0; i < n; i++)
		c += v[i] == which;
	return c;
}

static void test_defaults(void)
{
	EXPECT_EQ_INT(BRI_DEFAULT_RETENTION_DAYS, 30);
	EXPECT_EQ_INT(BRI_DEFAULT_KEEP_MIN, 7);
}

static void test_all_recent(void)
{
	struct list l = {.n = 0};
	enum bri_retention_verdict v[MAXN];
	for (int i = 0; i < 10; i++)
		add(&l, i * DAY + 60, BRI_KIND_AUTO);
	EXPECT_EQ_INT(plan(&l, &defaults, v), 0);
	for (size_t i = 0; i < l.n; i++)
		EXPECT_MSG(v[i] != BRI_REMOVE_EXPIRED && v[i] != (enum bri_retention_verdict)99,
		           "item %zu verdict %d", i, v[i]);
	/* Fewer than keep_min, all young: nothing removed either. */
	l.n = 3;
	EXPECT_EQ_INT(plan(&l, &defaults, v), 0);
	/* An empty list. */
	EXPECT_EQ_INT(bri_retention_plan(NULL, 0, NOW, &defaults, v), 0);
}

static void test_expired(void)
{
	struct list l = {.n = 0};
	enum bri_retention_verdict v[MAXN];
	for (int i = 0; i < 10; i++)
		add(&l, i * DAY + 60, BRI_KIND_AUTO); /* 0..9 days */
	for (int i = 0; i < 5; i++)
		add(&l, (40 + i) * DAY, BRI_KIND_NAMED); /* 40..44 days */
	EXPECT_EQ_INT(plan(&l, &defaults, v), 5);
	for (size_t i = 0; i < 10; i++)
		EXPECT_EQ_INT(v[i], BRI_KEEP_RECENT);
	for (size_t i = 10; i < 15; i++)
		EXPECT_EQ_INT(v[i], BRI_REMOVE_EXPIRED);

	/* Unknown kind (no metadata): not a backup, never removed. */
	l.items[12].kind = BRI_KIND_UNKNOWN;
	EXPECT_EQ_INT(plan(&l, &defaults, v), 4);
	EXPECT_EQ_INT(v[12], BRI_KEEP_UNKNOWN);

	/* Around the boundary: 30 days - 1 s kept, 30 days + 1 s removed. */
	struct list b = {.n = 0};
	for (int i = 0; i < 7; i++)
		add(&b, i * 60, BRI_KIND_AUTO);
	add(&b, 30 * DAY - 1, BRI_KIND_AUTO);
	add(&b, 30 * DAY + 1, BRI_KIND_AUTO);
	EXPECT_EQ_INT(plan(&b, &defaults, v), 1);
	EXPECT_EQ_INT(v[7], BRI_KEEP_RECENT);
	EXPECT_EQ_INT(v[8], BRI_REMOVE_EXPIRED);
}

static void test_safety(void)
{
	struct list l = {.n = 0};
	enum bri_retention_verdict v[MAXN];
	for (int i = 0; i < 10; i++)
		add(&l, i * DAY + 60, BRI_KIND_AUTO);
	add(&l, 1000 * DAY, BRI_KIND_SAFETY);
	add(&l, 40 * DAY, BRI_KIND_SAFETY);
	add(&l, 40 * DAY, BRI_KIND_AUTO);
	add(&l, DAY, BRI_KIND_SAFETY);
	EXPECT_EQ_INT(plan(&l, &defaults, v), 1);
	EXPECT_EQ_INT(v[10], BRI_KEEP_SAFETY);
	EXPECT_EQ_INT(v[11], BRI_KEEP_SAFETY);
	EXPECT_EQ_INT(v[12], BRI_REMOVE_EXPIRED);
	EXPECT(v[13] == BRI_KEEP_SAFETY || v[13] == BRI_KEEP_RECENT);

	/* Only ancient safety backups, keep_min 0, retention 0: all kept. */
	struct list s = {.n = 0};
	for (int i = 0; i < 5; i++)
		add(&s, (500 + i) * DAY, BRI_KIND_SAFETY);
	struct bri_retention_rules zero = {.retention_days = 0, .keep_min = 0};
	EXPECT_EQ_INT(plan(&s, &zero, v), 0);
	for (size_t i = 0; i < s.n; i++)
		EXPECT_EQ_INT(v[i], BRI_KEEP_SAFETY);
}

static void test_keep_min(void)
{
	enum bri_retention_verdict v[MAXN];

	/* Ten expired backups: the newest seven stay, the oldest three go. */
	struct list l = {.n = 0};
	for (int i = 0; i < 10; i++)
		add(&l, (100 + i) * DAY, BRI_KIND_AUTO);
	EXPECT_EQ_INT(plan(&l, &defaults, v), 3);
	EXPECT_EQ_INT(count(v, l.n, BRI_KEEP_MIN), 7);
	EXPECT_EQ_INT(count(v, l.n, BRI_REMOVE_EXPIRED), 3);
	for (size_t i = 0; i < 7; i++)
		EXPECT_EQ_INT(v[i], BRI_KEEP_MIN);
	for (size_t i = 7; i < 10; i++)
		EXPECT_EQ_INT(v[i], BRI_REMOVE_EXPIRED);

	/* Newer safety backups do not count towards keep_min. */
	struct list s = {.n = 0};
	for (int i = 0; i < 3; i++)
		add(&s, (1 + i) * DAY, BRI_KIND_SAFETY);
	for (int i = 0; i < 10; i++)
		add(&s, (100 + i) * DAY, BRI_KIND_AUTO);
	EXPECT_EQ_INT(plan(&s, &defaults, v), 3);
	for (size_t i = 3; i < 10; i++)
		EXPECT_EQ_INT(v[i], BRI_KEEP_MIN);
	for (size_t i = 10; i < 13; i++)
		EXPECT_EQ_INT(v[i], BRI_REMOVE_EXPIRED);

	/* Recent backups count towards keep_min: 3 recent + 4 oldest kept = 7. */
	struct list m = {.n = 0};
	for (int i = 0; i < 3; i++)
		add(&m, i * DAY + 60, BRI_KIND_AUTO);
	for (int i = 0; i < 10; i++)
		add(&m, (100 + i) * DAY, BRI_KIND_NAMED);
	EXPECT_EQ_INT(plan(&m, &defaults, v), 6);
	for (size_t i = 0; i < 3; i++)
		EXPECT(v[i] == BRI_KEEP_RECENT || v[i] == BRI_KEEP_MIN);
	for (size_t i = 3; i < 7; i++)
		EXPECT_EQ_INT(v[i], BRI_KEEP_MIN);
	for (size_t i = 7; i < 13; i++)
		EXPECT_EQ_INT(v[i], BRI_REMOVE_EXPIRED);

	/* keep_min larger than the list: nothing removed. */
	struct list few = {.n = 0};
	for (int i = 0; i < 5; i++)
		add(&few, (100 + i) * DAY, BRI_KIND_AUTO);
	EXPECT_EQ_INT(plan(&few, &defaults, v), 0);
	for (size_t i = 0; i < few.n; i++)
		EXPECT_EQ_INT(v[i], BRI_KEEP_MIN);
	struct bri_retention_rules many = {.retention_days = 30, .keep_min = 1000};
	EXPECT_EQ_INT(plan(&l, &many, v), 0);

	/* keep_min 0: every expired backup goes but the newest good one. */
	struct bri_retention_rules none = {.retention_days = 30, .keep_min = 0};
	EXPECT_EQ_INT(plan(&l, &none, v), 9);
	EXPECT_EQ_INT(v[0], BRI_KEEP_NEWEST_GOOD);
	/* keep_min 1: only the newest stays. */
	struct bri_retention_rules one = {.retention_days = 30, .keep_min = 1};
	EXPECT_EQ_INT(plan(&l, &one, v), 9);
	EXPECT_EQ_INT(v[0], BRI_KEEP_MIN);
}

static void test_retention_zero(void)
{
	enum bri_retention_verdict v[MAXN];
	struct list l = {.n = 0};
	add(&l, 3600, BRI_KIND_AUTO);
	add(&l, DAY, BRI_KIND_NAMED);
	add(&l, -3600, BRI_KIND_AUTO); /* an hour in the future: clock skew */
	add(&l, 2 * DAY, BRI_KIND_SAFETY);
	struct bri_retention_rules zero = {.retention_days = 0, .keep_min = 0};
	EXPECT_EQ_INT(plan(&l, &zero, v), 2);
	EXPECT_EQ_INT(v[0], BRI_REMOVE_EXPIRED);
	EXPECT_EQ_INT(v[1], BRI_REMOVE_EXPIRED);
	EXPECT(v[2] != BRI_REMOVE_EXPIRED);
	EXPECT_EQ_INT(v[3], BRI_KEEP_SAFETY);

	/* A future backup is never expired, and is the newest for keep_min. */
	struct bri_retention_rules keep1 = {.retention_days = 0, .keep_min = 1};
	EXPECT_EQ_INT(plan(&l, &keep1, v), 2);
	EXPECT(v[2] != BRI_REMOVE_EXPIRED);
}

static void test_negative(void)
{
	enum bri_retention_verdict v[MAXN];
	struct list l = {.n = 0};
	add(&l, 100 * DAY, BRI_KIND_AUTO);
	struct bri_retention_rules bad1 = {.retention_days = -1, .keep_min = 7};
	struct bri_retention_rules bad2 = {.retention_days = 30, .keep_min = -1};
	struct bri_retention_rules bad3 = {.retention_days = -30, .keep_min = -7};
	EXPECT_EQ_INT(plan(&l, &bad1, v), -EINVAL);
	EXPECT_MSG(v[0] == (enum bri_retention_verdict)99, "verdict written on -EINVAL");
	EXPECT_EQ_INT(plan(&l, &bad2, v), -EINVAL);
	EXPECT_EQ_INT(plan(&l, &bad3, v), -EINVAL);
	EXPECT_EQ_INT(bri_retention_plan(NULL, 0, NOW, &bad1, v), -EINVAL);
}

static void test_unsorted(void)
{
	/* The keep_min case of test_keep_min, shuffled, plus safety and recent. */
	enum bri_retention_verdict v[MAXN];
	static const int ages[] = {105, 2, 109, 100, 500, 103, 1, 107, 101, 108, 106, 102, 104, 0};
	struct list l = {.n = 0};
	for (size_t i = 0; i < sizeof(ages) / sizeof(ages[0]); i++)
		add(&l, ages[i] * DAY + 60,
		    ages[i] == 500 || ages[i] == 1 ? BRI_KIND_SAFETY : BRI_KIND_AUTO);
	/* Non-safety by age: 0, 2 (recent), 100..109; keep_min 7 keeps 0, 2, 100..104. */
	EXPECT_EQ_INT(plan(&l, &defaults, v), 5);
	for (size_t i = 0; i < l.n; i++) {
		int a = ages[i];
		if (a == 500 || a == 1)
			EXPECT_MSG(v[i] == BRI_KEEP_SAFETY || (a == 1 && v[i] == BRI_KEEP_RECENT),
			           "age %d: verdict %d", a, v[i]);
		else if (a < 30)
			EXPECT_MSG(v[i] == BRI_KEEP_RECENT || v[i] == BRI_KEEP_MIN,
			           "age %d: verdict %d", a, v[i]);
		else if (a <= 104)
			EXPECT_MSG(v[i] == BRI_KEEP_MIN, "age %d: verdict %d", a, v[i]);
		else
			EXPECT_MSG(v[i] == BRI_REMOVE_EXPIRED, "age %d: verdict %d", a, v[i]);
	}
	/* The input is not reordered. */
	for (size_t i = 0; i < l.n; i++)
		EXPECT(l.items[i].time == NOW - (ages[i] * DAY + 60));
}

static void test_ties(void)
{
	/* Ten expired backups of the same second: exactly keep_min stay. */
	enum bri_retention_verdict v[MAXN];
	struct list l = {.n = 0};
	for (int i = 0; i < 10; i++)
		add(&l, 100 * DAY, BRI_KIND_AUTO);
	EXPECT_EQ_INT(plan(&l, &defaults, v), 3);
	EXPECT_EQ_INT(count(v, l.n, BRI_KEEP_MIN), 7);
	/* A large list, newest first and oldest first, gives the same counts. */
	struct list big = {.n = 0}, rev = {.n = 0};
	for (int i = 0; i < MAXN; i++)
		add(&big, (time_t)i * DAY / 2 + 3600, i % 9 == 0 ? BRI_KIND_SAFETY : BRI_KIND_AUTO);
	for (int i = MAXN - 1; i >= 0; i--)
		add(&rev, (time_t)i * DAY / 2 + 3600, i % 9 == 0 ? BRI_KIND_SAFETY : BRI_KIND_AUTO);
	enum bri_retention_verdict v2[MAXN];
	int a = plan(&big, &defaults, v);
	int b = plan(&rev, &defaults, v2);
	EXPECT_EQ_INT(a, b);
	/* Ages i/2 days + 1 h: i = 60..63 expired, but 63 is a safety backup: 3 go. */
	EXPECT_EQ_INT(a, 3);
	for (int i = 0; i < MAXN; i++)
		EXPECT_EQ_INT(v[i], v2[MAXN - 1 - i]);
}

/* Issue 9 item 4: the floor counts good backups (last verification not failed). */
static void test_good_floor(void)
{
	enum bri_retention_verdict v[MAXN];

	/* The seven newest failed, three older good, all expired: the good ones stay. */
	struct list l = {.n = 0};
	for (int i = 0; i < 10; i++) {
		add(&l, (100 + i) * DAY, BRI_KIND_AUTO);
		l.items[i].failed = i < 7;
	}
	EXPECT_EQ_INT(plan(&l, &defaults, v), 0);
	for (size_t i = 7; i < 10; i++)
		EXPECT_MSG(v[i] == BRI_KEEP_MIN, "good backup %zu: verdict %d", i, v[i]);
	/* The failed ones among the newest keep_min stay too, for salvage. */
	for (size_t i = 0; i < 7; i++)
		EXPECT_EQ_INT(v[i], BRI_KEEP_MIN_FAILED);

	/* More good ones than keep_min: the newest keep_min good ones stay, the
	 * failed ones beyond the newest keep_min go. */
	struct bri_retention_rules three = {.retention_days = 30, .keep_min = 3};
	struct list m = {.n = 0};
	for (int i = 0; i < 12; i++) {
		add(&m, (100 + i) * DAY, BRI_KIND_NAMED);
		m.items[i].failed = i < 7;
	}
	EXPECT_EQ_INT(plan(&m, &three, v), 6);
	for (size_t i = 0; i < 3; i++)
		EXPECT_EQ_INT(v[i], BRI_KEEP_MIN_FAILED);
	for (size_t i = 3; i < 7; i++)
		EXPECT_EQ_INT(v[i], BRI_REMOVE_EXPIRED);
	for (size_t i = 7; i < 10; i++)
		EXPECT_EQ_INT(v[i], BRI_KEEP_MIN);
	for (size_t i = 10; i < 12; i++)
		EXPECT_EQ_INT(v[i], BRI_REMOVE_EXPIRED);

	/* keep_min 0 still keeps the newest good backup, however old. */
	struct bri_retention_rules none = {.retention_days = 30, .keep_min = 0};
	struct list z = {.n = 0};
	for (int i = 0; i < 5; i++)
		add(&z, (100 + i) * DAY, BRI_KIND_AUTO);
	EXPECT_EQ_INT(plan(&z, &none, v), 4);
	EXPECT_EQ_INT(v[0], BRI_KEEP_NEWEST_GOOD);
	/* ... and when the newest failed, the next good one is the one kept. */
	z.items[0].failed = true;
	z.items[1].failed = true;
	EXPECT_EQ_INT(plan(&z, &none, v), 4);
	EXPECT_EQ_INT(v[0], BRI_REMOVE_EXPIRED);
	EXPECT_EQ_INT(v[1], BRI_REMOVE_EXPIRED);
	EXPECT_EQ_INT(v[2], BRI_KEEP_NEWEST_GOOD);
	/* A recent good backup is the newest good one: the old ones may go. */
	struct list r = {.n = 0};
	add(&r, DAY, BRI_KIND_AUTO);
	add(&r, 100 * DAY, BRI_KIND_AUTO);
	EXPECT_EQ_INT(plan(&r, &none, v), 1);
	EXPECT_EQ_INT(v[0], BRI_KEEP_RECENT);
	EXPECT_EQ_INT(v[1], BRI_REMOVE_EXPIRED);
	/* Retention 0, keep_min 0, every backup old: one good one remains. */
	struct bri_retention_rules zero = {.retention_days = 0, .keep_min = 0};
	EXPECT_EQ_INT(plan(&z, &zero, v), 4);
	EXPECT_EQ_INT(count(v, z.n, BRI_KEEP_NEWEST_GOOD), 1);
	/* All failed: nothing protects them but keep_min. */
	for (size_t i = 0; i < z.n; i++)
		z.items[i].failed = true;
	EXPECT_EQ_INT(plan(&z, &none, v), 5);
	EXPECT_EQ_INT(plan(&z, &defaults, v), 0);

	/* A good safety backup does not stand in for the newest good ordinary one. */
	struct list s = {.n = 0};
	add(&s, DAY, BRI_KIND_SAFETY);
	add(&s, 100 * DAY, BRI_KIND_AUTO);
	add(&s, 101 * DAY, BRI_KIND_AUTO);
	EXPECT_EQ_INT(plan(&s, &none, v), 1);
	EXPECT_EQ_INT(v[1], BRI_KEEP_NEWEST_GOOD);
}

/* Unknown files (a .db without usable metadata) are never removed nor counted. */
static void test_unknown(void)
{
	enum bri_retention_verdict v[MAXN];
	struct list l = {.n = 0};
	for (int i = 0; i < 3; i++)
		add(&l, (1000 + i) * DAY, BRI_KIND_UNKNOWN); /* ancient */
	add(&l, 0, BRI_KIND_UNKNOWN);                        /* and the newest of all */
	for (int i = 0; i < 10; i++)
		add(&l, (100 + i) * DAY, BRI_KIND_AUTO);
	EXPECT_EQ_INT(plan(&l, &defaults, v), 3); /* as if they were not there */
	for (size_t i = 0; i < 4; i++)
		EXPECT_EQ_INT(v[i], BRI_KEEP_UNKNOWN);
	for (size_t i = 4; i < 11; i++)
		EXPECT_EQ_INT(v[i], BRI_KEEP_MIN);
	struct bri_retention_rules zero = {.retention_days = 0, .keep_min = 0};
	EXPECT_EQ_INT(plan(&l, &zero, v), 9);
	for (size_t i = 0; i < 4; i++)
		EXPECT_EQ_INT(v[i], BRI_KEEP_UNKNOWN);
	/* Even marked failed. */
	l.items[0].failed = true;
	EXPECT_EQ_INT(plan(&l, &zero, v), 9);
	EXPECT_EQ_INT(v[0], BRI_KEEP_UNKNOWN);
}

/* bri_cleanup_plan over a synthetic catalog: unverified counts as good. */
static void test_cleanup_plan(void)
{
	static const enum bri_verify_status status[] = {BRI_VERIFY_FAILED, BRI_VERIFY_FAILED,
	                                                BRI_VERIFY_UNVERIFIED, BRI_VERIFY_OK,
	                                                BRI_VERIFY_UNVERIFIED};
	struct bri_entry e[5], *list[5];
	char names[5][8];
	enum bri_retention_verdict v[5];
	struct bri_catalog c = {.entries = list, .n = 5};
	memset(e, 0, sizeof(e));
	for (size_t i = 0; i < 5; i++) {
		snprintf(names[i], sizeof(names[i]), "b%zu", i);
		e[i].name = names[i];
		e[i].time = NOW - (time_t)(100 + i) * DAY;
		e[i].kind = BRI_KIND_AUTO;
		e[i].meta_ok = true;
		e[i].verify.status = status[i];
		list[i] = &e[i];
	}
	/* keep_min 2: the two newest good are b2 (unverified) and b3 (ok). */
	struct bri_retention_rules two = {.retention_days = 30, .keep_min = 2};
	EXPECT_EQ_INT(bri_cleanup_plan(&c, NOW, &two, v), 1);
	EXPECT_EQ_INT(v[0], BRI_KEEP_MIN_FAILED);
	EXPECT_EQ_INT(v[1], BRI_KEEP_MIN_FAILED);
	EXPECT_EQ_INT(v[2], BRI_KEEP_MIN);
	EXPECT_EQ_INT(v[3], BRI_KEEP_MIN);
	EXPECT_EQ_INT(v[4], BRI_REMOVE_EXPIRED);
	/* keep_min 0: the newest good one is b2, never verified. */
	struct bri_retention_rules none = {.retention_days = 30, .keep_min = 0};
	EXPECT_EQ_INT(bri_cleanup_plan(&c, NOW, &none, v), 4);
	EXPECT_EQ_INT(v[2], BRI_KEEP_NEWEST_GOOD);
	struct bri_retention_rules bad = {.retention_days = -1, .keep_min = 0};
	EXPECT_EQ_INT(bri_cleanup_plan(&c, NOW, &bad, v), -EINVAL);
}

static void test_reasons(void)
{
	enum bri_retention_verdict all[] = {
	    BRI_KEEP_RECENT,      BRI_KEEP_SAFETY,     BRI_KEEP_MIN,    BRI_REMOVE_EXPIRED,
	    BRI_KEEP_NEWEST_GOOD, BRI_KEEP_MIN_FAILED, BRI_KEEP_UNKNOWN};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		const char *r = bri_retention_reason(all[i]);
		EXPECT(r && r[0] != '\0');
		for (size_t j = 0; j < i; j++)
			EXPECT(r && strcmp(r, bri_retention_reason(all[j])) != 0);
	}
}

int main(void)
{
	test_defaults();
	test_all_recent();
	test_expired();
	test_safety();
	test_keep_min();
	test_retention_zero();
	test_negative();
	test_unsorted();
	test_ties();
	test_good_floor();
	test_unknown();
	test_cleanup_plan();
	test_reasons();
	return EXPECT_RESULT();
}
