/*
 * Unit tests of the retention policy (include/bri/retention.h) on synthetic
 * lists with a fixed "now": recent backups kept, expired ones removed, safety
 * backups never removed, the newest keep_min good non-safety backups kept
 * however old, the newest good one always kept, failed ones never counted
 * towards the floor, unknown files (not backups) never touched, order of the
 * input irrelevant, negative rules refused. Pure: no I/O.
 *
 * The calendar tiers (keep_hourly/daily/weekly/monthly/yearly, keep_within)
 * on lists dated in local time under a TZ the test sets: restic's documented
 * example, each rule alone and combined, empty periods, an unfilled rule
 * keeping the oldest, ISO week 53, leap days and both DST changes of
 * Europe/Berlin, pins, failed backups never filling a tier.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
	    BRI_KEEP_RECENT,      BRI_KEEP_SAFETY,     BRI_KEEP_MIN,     BRI_REMOVE_EXPIRED,
	    BRI_KEEP_NEWEST_GOOD, BRI_KEEP_MIN_FAILED, BRI_KEEP_UNKNOWN, BRI_KEEP_PINNED,
	    BRI_KEEP_WITHIN,      BRI_KEEP_HOURLY,     BRI_KEEP_DAILY,   BRI_KEEP_WEEKLY,
	    BRI_KEEP_MONTHLY,     BRI_KEEP_YEARLY,     BRI_KEEP_OLDEST,  BRI_REMOVE_NO_RULE};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		const char *r = bri_retention_reason(all[i]);
		EXPECT(r && r[0] != '\0');
		for (size_t j = 0; j < i; j++)
			EXPECT(r && strcmp(r, bri_retention_reason(all[j])) != 0);
	}
}

/* ---- calendar tiers ---- */

static void use_tz(const char *tz)
{
	setenv("TZ", tz, 1);
	tzset();
}

/* Local time y-m-d h:mi under the current TZ (isdst guessed by mktime). */
static time_t local(int y, int mo, int d, int h, int mi)
{
	struct tm tm = {.tm_year = y - 1900,
	                .tm_mon = mo - 1,
	                .tm_mday = d,
	                .tm_hour = h,
	                .tm_min = mi,
	                .tm_isdst = -1};
	return mktime(&tm);
}

static void add_at(struct list *l, time_t t)
{
	size_t i = l->n++;
	snprintf(l->names[i], sizeof(l->names[i]), "b%02zu", i);
	l->items[i] =
	    (struct bri_retention_item){.name = l->names[i], .time = t, .kind = BRI_KIND_AUTO};
}

/* Tiers only: no age rule, no keep_min floor. */
static struct bri_retention_rules tiers(void)
{
	return (struct bri_retention_rules){.retention_days = BRI_RETENTION_DAYS_OFF,
	                                    .keep_min = 0};
}

static const char *label(const struct list *l, const enum bri_retention_verdict *v, size_t i)
{
	static char buf[8][64];
	static int k;
	k = (k + 1) % 8;
	return bri_retention_label(v[i], l->items[i].time, buf[k], sizeof(buf[k]));
}

#define BIG 1200
static struct bri_retention_item big_items[BIG];
static char big_names[BIG][16];
static enum bri_retention_verdict big_v[BIG];

/*
 * restic's documented example: daily backups for years and
 * --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --keep-yearly 75 keep
 * "the most recent 7 daily snapshots, then 4 (remember, 7 dailies already
 * include 1 weekly) last-day-of-the-weeks and 11 or 12 last-day-of-the-
 * months ... and finally 75 last-day-of-the-year snapshots", and since
 * 0.16 the oldest one too when a rule (here yearly) cannot be filled.
 */
static void test_restic_example(void)
{
	struct bri_retention_rules r = tiers();
	size_t n = 0, kept = 0, daily = 0, weekly = 0, monthly = 0, yearly = 0, oldest = 0;
	char buf[64];

	use_tz("UTC");
	/* 2024-01-01 .. 2026-11-29 (a Sunday), one backup a day at 03:00 */
	for (time_t t = local(2024, 1, 1, 3, 0); t <= local(2026, 11, 29, 3, 0); t += DAY) {
		snprintf(big_names[n], sizeof(big_names[n]), "d%04zu", n);
		big_items[n] = (struct bri_retention_item){
		    .name = big_names[n], .time = t, .kind = BRI_KIND_AUTO};
		n++;
	}
	r.keep_daily = 7;
	r.keep_weekly = 5;
	r.keep_monthly = 12;
	r.keep_yearly = 75;
	int removed = bri_retention_plan(big_items, n, NOW, &r, big_v);
	for (size_t i = 0; i < n; i++) {
		if (bri_retention_removes(big_v[i]))
			continue;
		kept++;
		daily += big_v[i] == BRI_KEEP_DAILY;
		weekly += big_v[i] == BRI_KEEP_WEEKLY;
		monthly += big_v[i] == BRI_KEEP_MONTHLY;
		yearly += big_v[i] == BRI_KEEP_YEARLY;
		oldest += big_v[i] == BRI_KEEP_OLDEST;
	}
	EXPECT_EQ_INT(daily, 7);
	EXPECT_EQ_INT(weekly, 4);
	EXPECT_EQ_INT(monthly, 11); /* 2026-10 .. 2025-12; 2026-11 is a daily */
	EXPECT_EQ_INT(yearly, 1);   /* 2024-12-31; 2026 and 2025 already kept */
	EXPECT_EQ_INT(oldest, 1);   /* yearly not filled: 2024-01-01 too */
	EXPECT_EQ_INT(kept, 24);
	EXPECT_EQ_INT(removed, (int)(n - 24));
	/* which ones, by their periods */
	for (size_t i = 0; i < n; i++) {
		time_t t = big_items[i].time;
		bri_retention_label(big_v[i], t, buf, sizeof(buf));
		if (t == local(2026, 11, 23, 3, 0))
			EXPECT_STREQ(buf, "daily 2026-11-23");
		if (t == local(2026, 11, 22, 3, 0))
			EXPECT_STREQ(buf, "weekly 2026-W47");
		if (t == local(2026, 11, 1, 3, 0))
			EXPECT_STREQ(buf, "weekly 2026-W44");
		if (t == local(2026, 10, 31, 3, 0))
			EXPECT_STREQ(buf, "monthly 2026-10");
		if (t == local(2026, 2, 28, 3, 0))
			EXPECT_STREQ(buf, "monthly 2026-02");
		if (t == local(2025, 12, 31, 3, 0))
			EXPECT_STREQ(buf, "monthly 2025-12");
		if (t == local(2025, 11, 30, 3, 0))
			EXPECT_STREQ(buf, "no rule");
		if (t == local(2024, 12, 31, 3, 0))
			EXPECT_STREQ(buf, "yearly 2024");
		if (t == local(2024, 1, 1, 3, 0))
			EXPECT_STREQ(buf, "oldest");
		if (t == local(2024, 1, 2, 3, 0))
			EXPECT_STREQ(buf, "no rule");
	}
}

/* keep_daily alone: the newest of each day; empty days do not count. */
static void test_daily(void)
{
	struct list l = {0};
	enum bri_retention_verdict v[MAXN];
	struct bri_retention_rules r = tiers();

	use_tz("UTC");
	add_at(&l, local(2026, 11, 29, 8, 0));   /* 0 */
	add_at(&l, local(2026, 11, 29, 20, 0));  /* 1: newest of the 29th */
	add_at(&l, local(2026, 11, 28, 23, 59)); /* 2: newest of the 28th */
	add_at(&l, local(2026, 11, 28, 0, 0));   /* 3 */
	add_at(&l, local(2026, 11, 20, 12, 0));  /* 4: days 21..27 are empty */
	add_at(&l, local(2026, 11, 19, 12, 0));  /* 5 */
	add_at(&l, local(2026, 11, 18, 12, 0));  /* 6 */
	r.keep_daily = 3;
	EXPECT_EQ_INT(plan(&l, &r, v), 4);
	EXPECT_STREQ(label(&l, v, 1), "daily 2026-11-29");
	EXPECT_STREQ(label(&l, v, 2), "daily 2026-11-28");
	EXPECT_STREQ(label(&l, v, 4), "daily 2026-11-20");
	EXPECT_STREQ(label(&l, v, 0), "no rule");
	EXPECT_STREQ(label(&l, v, 3), "no rule");
	EXPECT_EQ_INT(v[5], BRI_REMOVE_NO_RULE);
	EXPECT_EQ_INT(v[6], BRI_REMOVE_NO_RULE);
	/* unfilled: 4 days of backups, keep_daily 10: one a day plus the oldest */
	r.keep_daily = 10;
	EXPECT_EQ_INT(plan(&l, &r, v), 2);
	EXPECT_EQ_INT(v[6], BRI_KEEP_DAILY); /* its own day anyway */
	/* the oldest sharing its day with a newer one is kept as "oldest" */
	add_at(&l, local(2026, 11, 18, 6, 0)); /* 7: the oldest */
	EXPECT_EQ_INT(plan(&l, &r, v), 2);
	EXPECT_EQ_INT(v[7], BRI_KEEP_OLDEST);
	EXPECT_EQ_INT(v[0], BRI_REMOVE_NO_RULE);
	EXPECT_EQ_INT(v[3], BRI_REMOVE_NO_RULE);
	/* filled: the oldest goes */
	r.keep_daily = 2;
	EXPECT_EQ_INT(plan(&l, &r, v), 6);
	EXPECT_EQ_INT(v[7], BRI_REMOVE_NO_RULE);
}

static void test_hourly_monthly_yearly(void)
{
	struct list l = {0};
	enum bri_retention_verdict v[MAXN];
	struct bri_retention_rules r = tiers();

	use_tz("UTC");
	add_at(&l, local(2026, 11, 29, 14, 50)); /* 0 */
	add_at(&l, local(2026, 11, 29, 14, 10)); /* 1: same hour */
	add_at(&l, local(2026, 11, 29, 12, 0));  /* 2 */
	add_at(&l, local(2026, 10, 1, 0, 0));    /* 3 */
	add_at(&l, local(2026, 9, 30, 23, 0));   /* 4 */
	add_at(&l, local(2025, 12, 31, 23, 0));  /* 5 */
	add_at(&l, local(2025, 1, 1, 0, 0));     /* 6 */
	add_at(&l, local(2024, 6, 1, 0, 0));     /* 7 */
	r.keep_hourly = 2;
	EXPECT_EQ_INT(plan(&l, &r, v), 6);
	EXPECT_STREQ(label(&l, v, 0), "hourly 2026-11-29T14");
	EXPECT_STREQ(label(&l, v, 2), "hourly 2026-11-29T12");
	r = tiers();
	r.keep_monthly = 3;
	EXPECT_EQ_INT(plan(&l, &r, v), 5);
	EXPECT_STREQ(label(&l, v, 0), "monthly 2026-11");
	EXPECT_STREQ(label(&l, v, 3), "monthly 2026-10");
	EXPECT_STREQ(label(&l, v, 4), "monthly 2026-09");
	r = tiers();
	r.keep_yearly = 2;
	EXPECT_EQ_INT(plan(&l, &r, v), 6);
	EXPECT_STREQ(label(&l, v, 0), "yearly 2026");
	EXPECT_STREQ(label(&l, v, 5), "yearly 2025");
	/* ORed: hourly 1 + yearly 3 (unfilled: the oldest is its own year) */
	r.keep_hourly = 1;
	r.keep_yearly = 3;
	EXPECT_EQ_INT(plan(&l, &r, v), 5);
	EXPECT_STREQ(label(&l, v, 0), "hourly 2026-11-29T14"); /* first rule named */
	EXPECT_STREQ(label(&l, v, 7), "yearly 2024");
}

/* ISO weeks run Monday to Sunday; 2020 has a week 53 reaching into 2021. */
static void test_iso_week_53(void)
{
	struct list l = {0};
	enum bri_retention_verdict v[MAXN];
	struct bri_retention_rules r = tiers();

	use_tz("UTC");
	add_at(&l, local(2021, 1, 4, 9, 0));   /* 0: Monday, 2021-W01 */
	add_at(&l, local(2021, 1, 3, 9, 0));   /* 1: Sunday, 2020-W53 */
	add_at(&l, local(2020, 12, 28, 9, 0)); /* 2: Monday, 2020-W53 */
	add_at(&l, local(2020, 12, 27, 9, 0)); /* 3: Sunday, 2020-W52 */
	add_at(&l, local(2020, 12, 21, 9, 0)); /* 4: Monday, 2020-W52 */
	r.keep_weekly = 3;
	EXPECT_EQ_INT(plan(&l, &r, v), 2);
	EXPECT_STREQ(label(&l, v, 0), "weekly 2021-W01");
	EXPECT_STREQ(label(&l, v, 1), "weekly 2020-W53");
	EXPECT_STREQ(label(&l, v, 3), "weekly 2020-W52");
	EXPECT_EQ_INT(v[2], BRI_REMOVE_NO_RULE);
	EXPECT_EQ_INT(v[4], BRI_REMOVE_NO_RULE);
	/* 2026-11-29 is in 2026-W48 */
	char buf[64];
	EXPECT_STREQ(
	    bri_retention_label(BRI_KEEP_WEEKLY, local(2026, 11, 29, 12, 0), buf, sizeof(buf)),
	    "weekly 2026-W48");
}

/* Leap days: their own day and month; keep_within 1y from a 29 February. */
static void test_leap_day(void)
{
	struct list l = {0};
	enum bri_retention_verdict v[MAXN];
	struct bri_retention_rules r = tiers();

	use_tz("UTC");
	add_at(&l, local(2024, 3, 1, 0, 10));   /* 0 */
	add_at(&l, local(2024, 2, 29, 23, 0));  /* 1 */
	add_at(&l, local(2024, 2, 29, 0, 30));  /* 2 */
	add_at(&l, local(2024, 2, 28, 23, 30)); /* 3 */
	r.keep_daily = 3;
	EXPECT_EQ_INT(plan(&l, &r, v), 1);
	EXPECT_STREQ(label(&l, v, 1), "daily 2024-02-29");
	EXPECT_EQ_INT(v[2], BRI_REMOVE_NO_RULE);
	/* within 1y of 2024-02-29 12:00 reaches back to 2023-03-01 12:00
	   (29 February 2023 does not exist; as restic, it rolls over) */
	struct list w = {0};
	r = tiers();
	r.keep_within = (struct bri_duration){.years = 1};
	add_at(&w, local(2024, 2, 29, 12, 0)); /* 0 */
	add_at(&w, local(2023, 3, 1, 13, 0));  /* 1: within */
	add_at(&w, local(2023, 3, 1, 11, 0));  /* 2: not */
	add_at(&w, local(2023, 2, 28, 12, 0)); /* 3: not */
	EXPECT_EQ_INT(plan(&w, &r, v), 2);
	EXPECT_EQ_INT(v[0], BRI_KEEP_WITHIN);
	EXPECT_EQ_INT(v[1], BRI_KEEP_WITHIN);
	EXPECT_EQ_INT(v[2], BRI_REMOVE_NO_RULE);
	EXPECT_EQ_INT(v[3], BRI_REMOVE_NO_RULE);
}

/* Europe/Berlin: periods are local; a repeated hour is one hour bucket. */
static void test_dst(void)
{
	struct list l = {0};
	enum bri_retention_verdict v[MAXN];
	struct bri_retention_rules r = tiers();
	const time_t fall = 1792887600;   /* 2026-10-25 00:20 UTC = 02:20 CEST */
	const time_t spring = 1774744200; /* 2026-03-29 00:30 UTC = 01:30 CET */

	use_tz("Europe/Berlin");
	/* autumn: 02:20 CEST and, an hour later, 02:20 CET: the same local hour */
	add_at(&l, fall + 3600); /* 0: 02:20 CET */
	add_at(&l, fall);        /* 1: 02:20 CEST */
	add_at(&l, fall - 3600); /* 2: 01:20 CEST */
	r.keep_hourly = 2;
	EXPECT_EQ_INT(plan(&l, &r, v), 1);
	EXPECT_STREQ(label(&l, v, 0), "hourly 2026-10-25T02");
	EXPECT_STREQ(label(&l, v, 2), "hourly 2026-10-25T01");
	EXPECT_EQ_INT(v[1], BRI_REMOVE_NO_RULE);
	/* spring: 01:30 CET then 03:30 CEST, one real hour apart, two buckets */
	struct list s = {0};
	add_at(&s, spring + 3600); /* 0: 03:30 CEST */
	add_at(&s, spring);        /* 1: 01:30 CET */
	r.keep_hourly = 1;
	EXPECT_EQ_INT(plan(&s, &r, v), 1);
	EXPECT_STREQ(label(&s, v, 0), "hourly 2026-03-29T03");
	/* daily buckets are local days: 22:30 UTC on 29 March is 30 March here */
	struct list d = {0};
	r = tiers();
	r.keep_daily = 2;
	add_at(&d, 1774823400); /* 0: 2026-03-29 22:30 UTC = 03-30 00:30 CEST */
	add_at(&d, 1774819800); /* 1: 2026-03-29 21:30 UTC = 03-29 23:30 CEST */
	add_at(&d, 1774776000); /* 2: 2026-03-29 09:20 UTC = 03-29 11:20 CEST */
	EXPECT_EQ_INT(plan(&d, &r, v), 1);
	EXPECT_STREQ(label(&d, v, 0), "daily 2026-03-30");
	EXPECT_STREQ(label(&d, v, 1), "daily 2026-03-29");
	/* keep_within 1d across the spring change is a calendar day (23 hours) */
	struct list w = {0};
	r = tiers();
	r.keep_within = (struct bri_duration){.days = 1};
	add_at(&w, local(2026, 3, 29, 12, 0));  /* 0: CEST */
	add_at(&w, local(2026, 3, 28, 12, 30)); /* 1: CET, 22.5 hours earlier */
	add_at(&w, local(2026, 3, 28, 11, 30)); /* 2: 23.5 hours earlier: out */
	EXPECT_EQ_INT(plan(&w, &r, v), 1);
	EXPECT_EQ_INT(v[1], BRI_KEEP_WITHIN);
	EXPECT_EQ_INT(v[2], BRI_REMOVE_NO_RULE);
	use_tz("UTC");
}

/* keep_within counts back from the newest backup, not from now. */
static void test_within(void)
{
	struct list l = {0};
	enum bri_retention_verdict v[MAXN];
	struct bri_retention_rules r = tiers();

	add(&l, 400 * DAY, BRI_KIND_AUTO); /* the newest, long before now */
	add(&l, 401 * DAY, BRI_KIND_AUTO);
	add(&l, 402 * DAY + 3600, BRI_KIND_AUTO); /* 2d 1h older than the newest */
	r.keep_within = (struct bri_duration){.days = 2};
	EXPECT_EQ_INT(plan(&l, &r, v), 1);
	EXPECT_EQ_INT(v[0], BRI_KEEP_WITHIN);
	EXPECT_EQ_INT(v[1], BRI_KEEP_WITHIN);
	EXPECT_EQ_INT(v[2], BRI_REMOVE_NO_RULE);
	r.keep_within = (struct bri_duration){.days = 2, .hours = 2};
	EXPECT_EQ_INT(plan(&l, &r, v), 0);
}

/* With tiers, the age rule applies only when given; keep_min always. */
static void test_combined(void)
{
	struct list l = {0};
	enum bri_retention_verdict v[MAXN];
	struct bri_retention_rules r = tiers();

	use_tz("UTC");
	for (int i = 0; i < 20; i++)
		add(&l, i * DAY + 3600, BRI_KIND_AUTO); /* b00 newest .. b19 */
	r.keep_daily = 3;
	EXPECT_EQ_INT(plan(&l, &r, v), 17);
	r.retention_days = 10; /* given too: the last 10 days stay as well */
	EXPECT_EQ_INT(plan(&l, &r, v), 10);
	EXPECT_EQ_INT(v[0], BRI_KEEP_RECENT); /* the age rule is named first */
	EXPECT_EQ_INT(v[10], BRI_REMOVE_EXPIRED);
	r.retention_days = BRI_RETENTION_DAYS_OFF;
	r.keep_min = 5;
	EXPECT_EQ_INT(plan(&l, &r, v), 15);
	EXPECT_EQ_INT(v[3], BRI_KEEP_MIN);
	EXPECT_EQ_INT(v[4], BRI_KEEP_MIN);
	/* a safety backup stays and fills no tier */
	add(&l, 2 * DAY + 60, BRI_KIND_SAFETY);
	EXPECT_EQ_INT(plan(&l, &r, v), 15);
	EXPECT_EQ_INT(v[20], BRI_KEEP_SAFETY);
	/* a pinned backup stays whatever its age */
	l.items[19].pinned = true;
	EXPECT_EQ_INT(plan(&l, &r, v), 14);
	EXPECT_STREQ(label(&l, v, 19), "pinned");
	/* no age rule and no tier: refused, it would remove all but keep_min */
	struct bri_retention_rules none = tiers();
	EXPECT_EQ_INT(plan(&l, &none, v), -EINVAL);
	struct bri_retention_rules neg = tiers();
	neg.keep_weekly = -1;
	EXPECT_EQ_INT(plan(&l, &neg, v), -EINVAL);
}

/* A failed backup never fills a tier: the day's newest good one does. */
static void test_failed_in_tier(void)
{
	struct list l = {0};
	enum bri_retention_verdict v[MAXN];
	struct bri_retention_rules r = tiers();

	use_tz("UTC");
	add_at(&l, local(2026, 11, 29, 20, 0)); /* 0: failed */
	add_at(&l, local(2026, 11, 29, 8, 0));  /* 1: good */
	add_at(&l, local(2026, 11, 28, 8, 0));  /* 2: good */
	l.items[0].failed = true;
	r.keep_daily = 1;
	EXPECT_EQ_INT(plan(&l, &r, v), 2);
	EXPECT_STREQ(label(&l, v, 1), "daily 2026-11-29");
	EXPECT_EQ_INT(v[0], BRI_REMOVE_NO_RULE);
}

static void test_duration_parse(void)
{
	struct bri_duration d;

	EXPECT_EQ_INT(bri_calendar_duration_parse("1y5m7d2h", &d), 0);
	EXPECT(d.years == 1 && d.months == 5 && d.days == 7 && d.hours == 2);
	EXPECT_EQ_INT(bri_calendar_duration_parse("2w", &d), 0);
	EXPECT(d.days == 14 && d.years == 0);
	EXPECT_EQ_INT(bri_calendar_duration_parse("36h", &d), 0);
	EXPECT_EQ_INT(d.hours, 36);
	const char *bad[] = {"", "7", "d", "7x", "-1d", "0d", "1d ", " 1d", "99999999999d"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		EXPECT_MSG(bri_calendar_duration_parse(bad[i], &d) == -EINVAL, "'%s'", bad[i]);
}

static void test_describe(void)
{
	struct bri_retention_rules r = tiers();
	char buf[256];

	r.keep_daily = 7;
	r.keep_weekly = 5;
	r.keep_min = 3;
	r.keep_within = (struct bri_duration){.days = 2};
	EXPECT_STREQ(bri_retention_describe(&r, buf, sizeof(buf)),
	             "daily 7, weekly 5, within 2d, keep at least 3");
	EXPECT_STREQ(bri_retention_describe(&defaults, buf, sizeof(buf)),
	             "retention 30 days, keep at least 7");
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
	test_restic_example();
	test_daily();
	test_hourly_monthly_yearly();
	test_iso_week_53();
	test_leap_day();
	test_dst();
	test_within();
	test_combined();
	test_failed_in_tier();
	test_duration_parse();
	test_describe();
	return EXPECT_RESULT();
}
