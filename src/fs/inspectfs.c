/*
 * The inspection folders of the view (SPEC.md section 4.1): inspect/NAME/
 * (schema.sql, tables/TABLE.csv), diff/OLD..NEW/ (summary, TABLE.csv) and
 * at/TIME (a symlink to the newest backup made at or before TIME): their
 * kinds' rows (bfs_insp_kinds, at the end) and functions. The bytes are the
 * core's (bri/inspect.h): nothing here formats a row.
 *
 * inspect/, diff/ and at/ list only a README; their entries exist when
 * looked up by name (autofs-style), so no recipe that copies the mount
 * walks into them.
 *
 * Inodes: a looked-up name becomes a spec (what it names: the backups by
 * name and store identity, and the table), interned in a table capped at
 * SPEC_MAX. Its inode is in the inspection id space (inode.c): a 57-bit
 * hash of the spec (space, the sides' names, store inode numbers and
 * mtimes, the table, at/'s TIME text), with the kind in the low bits, so
 * the same store content gives the same numbers after a remount. A hash
 * already taken by another spec (2^-57 odds) probes to the next number; the
 * generation is a second hash of the spec, so a number that comes to name
 * another spec after a remount is another generation to the kernel. A
 * backup deleted and made again under its name is another spec. A `live`
 * side is a snapshot number of this mount: not stable, as the live
 * database is not store content.
 *
 * Sizes are exact at stat: the first stat of a file renders it once,
 * counting (bri_render_count), and keeps the count in its spec (a backup
 * never changes, so the count holds). An open file keeps one render and
 * one connection (struct bfs_stream): a sequential read goes on where the
 * last stopped, a read up to STREAM_BACK (2 MiB) behind it is served from
 * the bytes kept behind the render (reads come out of order), and a read
 * elsewhere starts a new render and skips. Nothing holds a whole output:
 * an open file holds at most STREAM_BACK bytes of it.
 *
 * `live` is an online snapshot of the live database (bri_inspect_live_take)
 * taken at the lookup, kept while the live database's change counter
 * (PRAGMA data_version on a kept connection: the file is never opened
 * outside SQLite, whose POSIX locks a close would drop) is unchanged, and
 * dropped when a newer one replaces it and no open file reads it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "bri/inspect.h"
#include "bri/log.h"
#include "fs.h"

/* This file's node kinds (fs.h: numbers 12-23 are inspectfs.c's; never renumber). */
enum insp_kind {
	K_INSPECT_DIR = 12,  /* inspect/ (lists only its README) */
	K_DIFF_DIR = 13,     /* diff/ (lists only its README) */
	K_AT_DIR = 14,       /* at/ (lists only its README) */
	K_README = 15,       /* inspect/README, diff/README, at/README (index: the folder's kind) */
	K_AT_LINK = 16,      /* at/TIME -> ../NAME */
	K_INSPECT_NAME = 17, /* inspect/NAME/ */
	K_SCHEMA = 18,       /* inspect/NAME/schema.sql */
	K_TABLES_DIR = 19,   /* inspect/NAME/tables/ */
	K_TABLE_CSV = 20,    /* inspect/NAME/tables/TABLE.csv */
	K_DIFF_PAIR = 21,    /* diff/OLD..NEW/ */
	K_DIFF_SUMMARY = 22, /* diff/OLD..NEW/summary */
	K_DIFF_CSV = 23,     /* diff/OLD..NEW/TABLE.csv */
};

/* Most specs a mount interns (then lookups fail with ENFILE). */
#define SPEC_MAX 65536
/*
 * The time of the inspection folders and their READMEs: fixed (the READMEs'
 * text is), so a copy of the mount (restic, rsync) sees them unchanged
 * after a remount. 2026-11-30T00:00:00Z.
 */
#define README_TIME ((time_t)1795996800)
/* Cap on one row's copied bytes in the daemon (its memory bound). */
#define ROW_MAX (8u << 20)

enum spec_space { SPACE_INSPECT, SPACE_DIFF, SPACE_AT };

/* One side of a diff, or an inspected backup. */
struct side {
	char *name;     /* the backup's name, or "live" */
	uint64_t ident; /* its store file's st_ino, or the live snapshot's number */
	int64_t mtime;  /* its store file's mtime (ns), 0 for live */
};

/* What an inspection inode names. Immutable once interned (but size). */
struct spec {
	enum spec_space space;
	struct side a;          /* the backup (inspect), OLD (diff), or the TIME text (at) */
	struct side b;          /* NEW (diff) */
	char *table;            /* TABLE of a TABLE.csv, or NULL */
	struct live_snap *live; /* the snapshot a live side reads (one reference), or NULL */
	uint64_t size;          /* the file's bytes, once counted (guarded by spec_lock) */
	bool sized;             /* size is set (guarded by spec_lock) */
	uint64_t num;           /* its number: the inode's index (spec_hash, then probed) */
	uint64_t gen;           /* its inodes' generation (a second hash, never 0) */
};

/* A snapshot of the live database. */
struct live_snap {
	uint64_t number;           /* its number (a side's ident) */
	char *tmp_name;            /* the file, relative to the store */
	struct bri_reader *reader; /* a reader of it (thread-safe), shared by its connections */
	int refs; /* specs and the current slot holding it (guarded by spec_lock) */
};

static pthread_mutex_t spec_lock = PTHREAD_MUTEX_INITIALIZER;
static struct spec **specs; /* by index (guarded by spec_lock) */
static size_t nspecs, capspecs;
static uint64_t *num_keys;         /* spec numbers + 1, 0: empty (open addressing; spec_lock) */
static uint32_t *num_vals;         /* the index in specs of each key */
static size_t num_cap;             /* slots, a power of two, at least twice nspecs */
static struct live_snap *live_cur; /* the current snapshot (guarded by live_lock) */
static sqlite3 *live_watch;        /* a connection on the live database (live_lock) */
static int64_t live_version;       /* its data_version when live_cur was taken */
static uint64_t live_numbers;      /* last snapshot number given */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;

/* A connection and the readers it reads through. */
struct conn {
	sqlite3 *db;               /* the connection */
	struct bri_reader *own[2]; /* readers opened for it (closed after it), or NULL */
};

/*
 * The bytes an open file keeps behind its render: the kernel's readahead
 * sends several reads at once and libfuse's threads answer them in any
 * order, so a read may come just behind the last; it is served from here
 * instead of rendering the file again from its start (which made a `cat`
 * of a 200 MB CSV take 5-15 times as long as the render). Larger than the
 * kernel's largest read (FUSE_MAX_MAX_PAGES pages: 1 MiB).
 */
#define STREAM_BACK (2u << 20)

/* An open inspection file. */
struct bfs_stream {
	pthread_mutex_t lock; /* guards the fields below: reads of one open may overlap */
	struct bfs *fs;
	struct spec *sp;        /* what it renders */
	enum insp_kind kind;    /* schema, table CSV, summary or diff CSV */
	struct conn c;          /* the connection its renders read */
	struct live_snap *live; /* the live snapshot it reads (one reference), or NULL */
	struct bri_render *r;   /* the render now, or NULL */
	uint64_t size;          /* the size given at stat */
	char *back;      /* STREAM_BACK bytes, a ring: the byte at offset x is at x % STREAM_BACK */
	size_t back_len; /* how many bytes before the render's offset it holds */
};

static const char readme_inspect[] =
    "inspect/NAME/ shows a backup (NAME: a backup name or `latest`) without restoring it:\n"
    "  inspect/NAME/schema.sql         its schema\n"
    "  inspect/NAME/tables/TABLE.csv   a table as CSV (sqlite3 -csv -header; BLOBs as X'..')\n"
    "Entries exist when looked up by name: cat inspect/latest/tables/videos.csv\n";
static const char readme_diff[] =
    "diff/OLD..NEW/ compares two databases (OLD, NEW: a backup name, `latest` or `live`):\n"
    "  diff/OLD..NEW/summary     as sqldiff --primarykey --summary\n"
    "  diff/OLD..NEW/TABLE.csv   the rows that differ: op + (added), - (deleted),\n"
    "                            ~- then ~+ (a changed row, old then new)\n"
    "Entries exist when looked up by name: cat diff/before_cleanup..live/videos.csv\n";
static const char readme_at[] =
    "at/TIME is a symlink to the newest backup made at or before TIME\n"
    "(2025-10-16T14:30, 2025-10-16T14:30:00, or 2025-10-16 = the end of that day;\n"
    "local time, or UTC with a trailing Z). Entries exist when looked up: ls -l at/2025-10-16\n";

static int bfs_insp_readlink(struct bfs *fs, fuse_ino_t ino, char *buf, size_t size);

/* ---- specs ---- */

static bool side_eq(const struct side *x, const struct side *y)
{
	if (!x->name || !y->name)
		return x->name == y->name;
	return x->ident == y->ident && x->mtime == y->mtime && !strcmp(x->name, y->name);
}

static void live_put_locked(struct live_snap *l, struct bfs *fs)
{
	if (l && --l->refs == 0) {
		bri_inspect_live_drop(fs->store, l->tmp_name, l->reader);
		free(l);
	}
}

/* Spec numbers: 57 bits (inode.c's inspection space), never 0. */
#define NUM_MASK ((1ull << (64 - 2 - BFS_KIND_BITS)) - 1)

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	for (const unsigned char *c = p; n; n--, c++)
		h = (h ^ *c) * 0x100000001b3ull;
	return h;
}

static uint64_t fnv_side(uint64_t h, const struct side *x)
{
	/* The name with its NUL, so that ("ab", "c") and ("a", "bc") differ. */
	h = x->name ? fnv(h, x->name, strlen(x->name) + 1) : fnv(h, "", 0);
	h = fnv(h, &x->ident, sizeof(x->ident));
	return fnv(h, &x->mtime, sizeof(x->mtime));
}

/* A hash of what a spec names, from seed (two seeds: its number and its generation). */
static uint64_t spec_hash(uint64_t seed, enum spec_space space, const struct side *a,
                          const struct side *b, const char *table)
{
	uint32_t sp = (uint32_t)space;
	uint64_t h = fnv(seed, &sp, sizeof(sp));

	h = fnv_side(h, a);
	h = fnv_side(h, b);
	h = table ? fnv(h, table, strlen(table) + 1) : fnv(h, "\xff", 1);
	return h ^ (h >> 29);
}

/* The slot of number num in the map, or of the empty slot where it goes; spec_lock held. */
static size_t num_slot(uint64_t num)
{
	size_t i = (size_t)((num * 0x9E3779B97F4A7C15ull) >> 20) & (num_cap - 1);

	while (num_keys[i] && num_keys[i] != num + 1)
		i = (i + 1) & (num_cap - 1);
	return i;
}

/* Makes room for one more number; 0 or -ENOMEM. spec_lock held. */
static int num_grow(void)
{
	uint64_t *ok = num_keys;
	uint32_t *ov = num_vals;
	size_t ocap = num_cap, cap = num_cap ? num_cap * 2 : 128;

	if ((nspecs + 1) * 2 <= num_cap)
		return 0;
	num_keys = calloc(cap, sizeof(*num_keys));
	num_vals = calloc(cap, sizeof(*num_vals));
	if (!num_keys || !num_vals) {
		free(num_keys);
		free(num_vals);
		num_keys = ok;
		num_vals = ov;
		return -ENOMEM;
	}
	num_cap = cap;
	for (size_t i = 0; i < ocap; i++) {
		if (ok[i]) {
			size_t j = num_slot(ok[i] - 1);

			num_keys[j] = ok[i];
			num_vals[j] = ov[i];
		}
	}
	free(ok);
	free(ov);
	return 0;
}

/* The spec numbered num, or NULL. Specs are never freed while mounted. */
static struct spec *spec_by_num(uint64_t num)
{
	struct spec *sp = NULL;

	pthread_mutex_lock(&spec_lock);
	if (num_cap) {
		size_t i = num_slot(num);

		if (num_keys[i])
			sp = specs[num_vals[i]];
	}
	pthread_mutex_unlock(&spec_lock);
	return sp;
}

static struct spec *spec_of(fuse_ino_t ino)
{
	if ((ino & BFS_SPACE_MASK) != BFS_SPACE_INSPECT)
		return NULL;
	return spec_by_num(bfs_ino_index(ino));
}

/*
 * Interns (space, a, b, table): the index of an equal spec, or of a new
 * one that takes over the live snapshot's reference. -ENFILE past SPEC_MAX.
 */
static int64_t spec_intern(struct bfs *fs, enum spec_space space, const struct side *a,
                           const struct side *b, const char *table, struct live_snap *live)
{
	struct spec *sp = NULL;
	int64_t idx = -1;

	pthread_mutex_lock(&spec_lock);
	for (size_t i = 0; i < nspecs; i++) {
		struct spec *x = specs[i];

		if (x->space == space && side_eq(&x->a, a) && side_eq(&x->b, b) &&
		    (x->table && table ? !strcmp(x->table, table) : x->table == table)) {
			idx = (int64_t)i;
			break;
		}
	}
	if (idx >= 0) {
		live_put_locked(live, fs);
		goto out_unlock;
	}
	if (nspecs >= SPEC_MAX) {
		idx = -ENFILE;
		goto out_drop_live;
	}
	if (num_grow() < 0) {
		idx = -ENOMEM;
		goto out_drop_live;
	}
	if (nspecs == capspecs) {
		size_t cap = capspecs ? capspecs * 2 : 64;
		struct spec **n = realloc(specs, cap * sizeof(*n));

		if (!n) {
			idx = -ENOMEM;
			goto out_drop_live;
		}
		specs = n;
		capspecs = cap;
	}
	sp = calloc(1, sizeof(*sp));
	if (!sp) {
		idx = -ENOMEM;
		goto out_drop_live;
	}
	sp->space = space;
	sp->a = *a;
	sp->b = *b;
	sp->a.name = strdup(a->name);
	sp->b.name = b->name ? strdup(b->name) : NULL;
	sp->table = table ? strdup(table) : NULL;
	if (!sp->a.name || (b->name && !sp->b.name) || (table && !sp->table)) {
		free(sp->a.name);
		free(sp->b.name);
		free(sp->table);
		free(sp);
		idx = -ENOMEM;
		goto out_drop_live;
	}
	sp->live = live;
	sp->num = spec_hash(0xcbf29ce484222325ull, space, a, b, table) & NUM_MASK;
	sp->gen = spec_hash(0x84222325cbf29ce4ull, space, a, b, table) | 1;
	for (;;) {
		size_t slot;

		if (!sp->num)
			sp->num = 1;
		slot = num_slot(sp->num);
		if (!num_keys[slot]) {
			num_keys[slot] = sp->num + 1;
			num_vals[slot] = (uint32_t)nspecs;
			break;
		}
		sp->num = (sp->num + 1) & NUM_MASK; /* taken by another spec */
	}
	specs[nspecs] = sp;
	idx = (int64_t)nspecs++;
	goto out_unlock;
out_drop_live:
	live_put_locked(live, fs);
out_unlock:
	pthread_mutex_unlock(&spec_lock);
	return idx;
}

static fuse_ino_t spec_ino(const struct spec *sp, enum insp_kind k)
{
	return BFS_SPACE_INSPECT | (sp->num << BFS_KIND_BITS) | (fuse_ino_t)k;
}

/* The spec at index idx (interned: never freed while mounted). */
static const struct spec *spec_at(int64_t idx)
{
	const struct spec *sp;

	pthread_mutex_lock(&spec_lock);
	sp = specs[idx];
	pthread_mutex_unlock(&spec_lock);
	return sp;
}

void bfs_insp_fini(struct bfs *fs)
{
	pthread_mutex_lock(&live_lock);
	pthread_mutex_lock(&spec_lock);
	for (size_t i = 0; i < nspecs; i++) {
		live_put_locked(specs[i]->live, fs);
		free(specs[i]->a.name);
		free(specs[i]->b.name);
		free(specs[i]->table);
		free(specs[i]);
	}
	free(specs);
	specs = NULL;
	nspecs = capspecs = 0;
	free(num_keys);
	free(num_vals);
	num_keys = NULL;
	num_vals = NULL;
	num_cap = 0;
	live_put_locked(live_cur, fs);
	live_cur = NULL;
	pthread_mutex_unlock(&spec_lock);
	if (live_watch)
		sqlite3_close(live_watch);
	live_watch = NULL;
	pthread_mutex_unlock(&live_lock);
}

/* ---- resolving names ---- */

/* A backup name or `latest` to a side (name copied into buf); 0 or -ENOENT. */
static int resolve_backup(struct bfs *fs, const char *name, struct side *s, char *buf, size_t size,
                          time_t *t)
{
	const struct bri_entry *b;
	int rc = bfs_refresh(fs, false);

	if (rc < 0)
		return rc;
	for (int pass = 0; pass < 2; pass++) {
		pthread_rwlock_rdlock(&fs->cat_lock);
		b = !strcmp(name, "latest") ? bri_catalog_newest(fs->cat)
		                            : bri_catalog_find(fs->cat, name);
		if (b) {
			snprintf(buf, size, "%s", b->name);
			s->name = buf;
			s->ident = (uint64_t)b->db_st.st_ino;
			s->mtime = (int64_t)b->db_st.st_mtim.tv_sec * 1000000000 +
			           b->db_st.st_mtim.tv_nsec;
			if (t)
				*t = b->time;
		}
		pthread_rwlock_unlock(&fs->cat_lock);
		if (b || pass)
			break;
		rc = bfs_refresh_look(fs); /* perhaps just made by another process */
		if (rc < 0)
			return rc;
	}
	return b ? 0 : -ENOENT;
}

/*
 * The current live snapshot (one reference more), taken anew when the live
 * database changed since (its data_version, read through SQLite).
 */
static int live_get(struct bfs *fs, struct live_snap **out)
{
	struct bri_err err = {0};
	struct live_snap *l = NULL;
	sqlite3_stmt *st = NULL;
	int64_t version = -1;
	int rc = 0;

	pthread_mutex_lock(&live_lock);
	if (!live_watch) {
		if (sqlite3_open_v2(fs->store->db_path, &live_watch, SQLITE_OPEN_READONLY, NULL) !=
		    SQLITE_OK) {
			sqlite3_close(live_watch);
			live_watch = NULL;
			rc = -EIO;
			goto out_unlock;
		}
	}
	if (sqlite3_prepare_v2(live_watch, "PRAGMA data_version", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		version = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (version < 0) {
		rc = -EIO;
		goto out_unlock;
	}
	if (!live_cur || version != live_version) {
		l = calloc(1, sizeof(*l));
		if (!l) {
			rc = -ENOMEM;
			goto out_unlock;
		}
		rc = bri_inspect_live_take(fs->store,
		                           fs->busy_timeout_ms ? fs->busy_timeout_ms : 5000,
		                           &l->tmp_name, &l->reader, &err);
		if (rc < 0) {
			bri_log(BRI_LOG_ERR, "diff: live: %s", err.msg);
			free(l);
			goto out_unlock;
		}
		l->number = ++live_numbers;
		l->refs = 1;
		pthread_mutex_lock(&spec_lock);
		/* The older snapshot's specs read nothing now; open files keep theirs. */
		for (size_t i = 0; live_cur && i < nspecs; i++) {
			if (specs[i]->live == live_cur) {
				specs[i]->live = NULL;
				live_put_locked(live_cur, fs);
			}
		}
		live_put_locked(live_cur, fs);
		pthread_mutex_unlock(&spec_lock);
		live_cur = l;
		live_version = version;
	}
	pthread_mutex_lock(&spec_lock);
	live_cur->refs++;
	pthread_mutex_unlock(&spec_lock);
	*out = live_cur;
out_unlock:
	pthread_mutex_unlock(&live_lock);
	return rc;
}

/* sp's live snapshot with one reference more, or NULL. */
static struct live_snap *live_ref(struct spec *sp)
{
	struct live_snap *l;

	pthread_mutex_lock(&spec_lock);
	l = sp->live;
	/* sp's own reference keeps refs >= 1 while sp->live points to it. */
	if (l && l->refs > 0)
		l->refs++;
	else
		l = NULL;
	pthread_mutex_unlock(&spec_lock);
	return l;
}

static void live_unref(struct bfs *fs, struct live_snap *l)
{
	pthread_mutex_lock(&spec_lock);
	live_put_locked(l, fs);
	pthread_mutex_unlock(&spec_lock);
}

/* Whether s is a live side (a backup called "live" has a store mtime). */
static bool side_live(const struct side *s)
{
	return !strcmp(s->name, "live") && !s->mtime;
}

/*
 * A reader of a side: a backup's own (*own, to close), or the live
 * snapshot's (shared; -ESTALE when the spec's snapshot was replaced).
 */
static int side_reader(struct bfs *fs, struct live_snap *live, const struct side *s,
                       struct bri_reader **r, struct bri_reader **own, struct bri_err *err)
{
	if (side_live(s)) {
		if (!live || live->number != s->ident)
			return -ESTALE;
		*r = live->reader;
		return 0;
	}
	int rc = bri_store_open_reader(fs->store, s->name, own, err);

	if (rc == 0)
		*r = *own;
	return rc;
}

/* ---- rendering ---- */

static void conn_close(struct conn *c)
{
	if (c->db)
		sqlite3_close(c->db);
	for (int i = 0; i < 2; i++)
		bri_reader_close(c->own[i]);
	memset(c, 0, sizeof(*c));
}

/* Opens the connection of sp for kind k (live: what live reads, kept by the caller). */
static int render_open(struct bfs *fs, struct spec *sp, struct live_snap *live, enum insp_kind k,
                       struct conn *c, struct bri_err *err)
{
	struct bri_reader *ra = NULL, *rb = NULL;
	int rc;

	memset(c, 0, sizeof(*c));
	rc = side_reader(fs, live, &sp->a, &ra, &c->own[0], err);
	if (rc == 0 && (k == K_DIFF_SUMMARY || k == K_DIFF_CSV)) {
		rc = side_reader(fs, live, &sp->b, &rb, &c->own[1], err);
		if (rc == 0)
			rc = bri_diff_open(ra, rb, &c->db, err);
	} else if (rc == 0) {
		rc = bri_inspect_open(ra, &c->db, err);
	}
	if (rc < 0)
		conn_close(c);
	return rc;
}

static int render_new(sqlite3 *db, const struct spec *sp, enum insp_kind k, struct bri_render **r,
                      struct bri_err *err)
{
	int rc;

	switch (k) {
	case K_SCHEMA:
		rc = bri_inspect_schema(db, r, err);
		break;
	case K_TABLE_CSV:
		rc = bri_inspect_table_csv(db, sp->table, r, err);
		break;
	case K_DIFF_SUMMARY:
		rc = bri_diff_summary(db, r, err);
		break;
	default:
		rc = bri_diff_table_csv(db, sp->table, r, err);
		break;
	}
	if (rc == 0)
		bri_render_set_row_max(*r, ROW_MAX);
	return rc;
}

/* The size of sp's file of kind k: counted once (a render to the end). */
static int spec_size(struct bfs *fs, struct spec *sp, enum insp_kind k, uint64_t *size)
{
	struct bri_err err = {0};
	struct bri_render *r = NULL;
	struct live_snap *live;
	struct conn c;
	uint64_t n = 0;
	bool sized;
	int rc;

	pthread_mutex_lock(&spec_lock);
	sized = sp->sized;
	*size = sp->size;
	pthread_mutex_unlock(&spec_lock);
	if (sized)
		return 0;
	live = live_ref(sp);
	rc = render_open(fs, sp, live, k, &c, &err);
	if (rc < 0) {
		live_unref(fs, live);
		goto out_log;
	}
	rc = render_new(c.db, sp, k, &r, &err);
	if (rc == 0)
		rc = bri_render_count(r, &n, &err);
	bri_render_free(r);
	conn_close(&c);
	live_unref(fs, live);
	if (rc < 0)
		goto out_log;
	pthread_mutex_lock(&spec_lock);
	sp->size = n;
	sp->sized = true;
	pthread_mutex_unlock(&spec_lock);
	*size = n;
	return 0;
out_log:
	if (rc != -ENOENT && rc != -ESTALE)
		bri_log(BRI_LOG_ERR, "inspect %s%s%s: %s", sp->a.name, sp->b.name ? ".." : "",
		        sp->b.name ? sp->b.name : "", err.msg);
	return rc;
}

/* ---- attributes ---- */

static bool is_file_kind(enum insp_kind k)
{
	return k == K_SCHEMA || k == K_TABLE_CSV || k == K_DIFF_SUMMARY || k == K_DIFF_CSV;
}

static int bfs_insp_attr(struct bfs *fs, fuse_ino_t ino, struct fuse_entry_param *e)
{
	enum insp_kind k = bfs_ino_kind(ino);
	struct spec *sp;
	uint64_t size;
	time_t t;
	int rc;

	switch (k) {
	case K_INSPECT_DIR:
	case K_DIFF_DIR:
	case K_AT_DIR:
		bfs_fill_entry(fs, ino, S_IFDIR | 0555, 4096, README_TIME, e);
		e->entry_timeout = BFS_TTL_LONG;
		e->attr_timeout = BFS_TTL_LONG;
		return 0;
	case K_README: {
		uint64_t dir = bfs_ino_index(ino);
		size_t len = dir == K_INSPECT_DIR ? sizeof(readme_inspect) - 1
		             : dir == K_DIFF_DIR  ? sizeof(readme_diff) - 1
		                                  : sizeof(readme_at) - 1;

		bfs_fill_entry(fs, ino, S_IFREG | 0444, (off_t)len, README_TIME, e);
		e->entry_timeout = BFS_TTL_LONG;
		e->attr_timeout = BFS_TTL_LONG;
		return 0;
	}
	default:
		break;
	}
	sp = spec_of(ino);
	if (!sp)
		return -ENOENT;
	if (k == K_AT_LINK) {
		char target[BRI_NAME_MAX + 4];

		rc = bfs_insp_readlink(fs, ino, target, sizeof(target));
		if (rc < 0)
			return rc;
		bfs_fill_entry(fs, ino, S_IFLNK | 0777, (off_t)strlen(target), README_TIME, e);
		e->generation = sp->gen;
		return 0; /* the answer moves with new backups: looked up each time */
	}
	/* The newer side's store file time: the same after a remount (live: now-ish). */
	t = (time_t)((sp->a.mtime > sp->b.mtime ? sp->a.mtime : sp->b.mtime) / 1000000000);
	if (!t)
		t = fs->start_time;
	if (is_file_kind(k)) {
		rc = spec_size(fs, sp, k, &size);
		if (rc < 0)
			return rc;
		bfs_fill_entry(fs, ino, S_IFREG | 0444, (off_t)size, t, e);
	} else {
		bfs_fill_entry(fs, ino, S_IFDIR | 0555, 4096, t, e);
	}
	e->generation = sp->gen;
	/* A spec names immutable backups (or one live snapshot): its files never change. */
	e->attr_timeout = BFS_TTL_LONG;
	return 0;
}

/* ---- lookups ---- */

/* An entry of the spec (space, a, b, table) as kind k. */
static int spec_entry(struct bfs *fs, enum spec_space space, const struct side *a,
                      const struct side *b, const char *table, struct live_snap *live,
                      enum insp_kind k, struct fuse_entry_param *e)
{
	int64_t idx = spec_intern(fs, space, a, b, table, live);

	if (idx < 0) {
		if (idx == -ENFILE)
			bri_log(BRI_LOG_ERR, "inspect: more than %d names looked up; refused",
			        SPEC_MAX);
		return (int)idx;
	}
	return bfs_insp_attr(fs, spec_ino(spec_at(idx), k), e);
}

/* A side of a diff (a backup, `latest` or `live`) into s; buf holds its name. */
static int resolve_side(struct bfs *fs, const char *name, struct side *s, char *buf, size_t size,
                        struct live_snap **live)
{
	if (!strcmp(name, "live")) {
		static atomic_bool warned;
		bool shadowed;
		int rc;

		pthread_rwlock_rdlock(&fs->cat_lock);
		shadowed = bri_catalog_find(fs->cat, "live") != NULL;
		pthread_rwlock_unlock(&fs->cat_lock);
		if (shadowed && !atomic_exchange(&warned, true))
			bri_log(BRI_LOG_WARN,
			        "a backup is named 'live': diff/ reads `live` as the live "
			        "database; use bri-backup for that backup");

		if (*live) { /* live..live: one snapshot */
			s->name = "live";
			s->ident = (*live)->number;
			s->mtime = 0;
			return 0;
		}
		rc = live_get(fs, live);
		if (rc < 0)
			return rc;
		s->name = "live";
		s->ident = (*live)->number;
		s->mtime = 0;
		return 0;
	}
	return resolve_backup(fs, name, s, buf, size, NULL);
}

static int lookup_diff_pair(struct bfs *fs, const char *name, struct fuse_entry_param *e)
{
	char oldn[BRI_NAME_MAX + 1], newn[BRI_NAME_MAX + 1], ba[BRI_NAME_MAX + 1],
	    bb[BRI_NAME_MAX + 1];
	const char *dots = strstr(name, "..");
	struct side a = {0}, b = {0};
	struct live_snap *live = NULL;
	size_t la;
	int rc;

	if (strlen(name) > 255)
		return -ENAMETOOLONG;
	if (!dots || dots == name || !dots[2])
		return -ENOENT;
	la = (size_t)(dots - name);
	if (la > BRI_NAME_MAX || strlen(dots + 2) > BRI_NAME_MAX)
		return -ENOENT;
	memcpy(oldn, name, la);
	oldn[la] = '\0';
	snprintf(newn, sizeof(newn), "%s", dots + 2);
	rc = resolve_side(fs, oldn, &a, ba, sizeof(ba), &live);
	if (rc == 0)
		rc = resolve_side(fs, newn, &b, bb, sizeof(bb), &live);
	if (rc < 0) {
		if (live) {
			pthread_mutex_lock(&spec_lock);
			live_put_locked(live, fs);
			pthread_mutex_unlock(&spec_lock);
		}
		return rc;
	}
	rc = spec_entry(fs, SPACE_DIFF, &a, &b, NULL, live, K_DIFF_PAIR, e);
	if (rc == 0 && (live || !strcmp(oldn, "latest") || !strcmp(newn, "latest")))
		e->entry_timeout = 0; /* `live` and `latest` are looked at again at each lookup */
	return rc;
}

/* "TABLE.csv" -> TABLE in buf; -ENOENT when name is not so. */
static int csv_table(const char *name, char *buf, size_t size)
{
	size_t n = strlen(name);

	if (n <= 4 || strcmp(name + n - 4, ".csv") || n - 4 >= size)
		return -ENOENT;
	memcpy(buf, name, n - 4);
	buf[n - 4] = '\0';
	return 0;
}

/* A child of spec sp (an inspect/NAME or diff pair folder) as kind k. */
static int child_entry(struct bfs *fs, const struct spec *sp, const char *table, enum insp_kind k,
                       struct fuse_entry_param *e)
{
	struct live_snap *live = live_ref((struct spec *)sp);

	return spec_entry(fs, sp->space, &sp->a, &sp->b, table, live, k, e);
}

static int bfs_insp_lookup(struct bfs *fs, fuse_ino_t dir, const char *name,
                           struct fuse_entry_param *e, const struct bfs_render **r, int *sub)
{
	enum insp_kind k = bfs_ino_kind(dir);
	char buf[BRI_NAME_MAX + 1], table[256];
	struct spec *sp = NULL;
	struct side a = {0}, none = {0};
	time_t t;
	int rc;

	(void)r;
	(void)sub;
	if (!strcmp(name, "README") && (k == K_INSPECT_DIR || k == K_DIFF_DIR || k == K_AT_DIR))
		return bfs_insp_attr(fs, bfs_ino_fixed((uint64_t)k, K_README), e);
	switch (k) {
	case K_INSPECT_DIR:
		rc = resolve_backup(fs, name, &a, buf, sizeof(buf), NULL);
		if (rc < 0)
			return rc;
		rc = spec_entry(fs, SPACE_INSPECT, &a, &none, NULL, NULL, K_INSPECT_NAME, e);
		if (rc == 0 && !strcmp(name, "latest"))
			e->entry_timeout = 0; /* moves with each new backup */
		return rc;
	case K_DIFF_DIR:
		return lookup_diff_pair(fs, name, e);
	case K_AT_DIR:
		if (bri_inspect_parse_at(name, &t) < 0)
			return -ENOENT;
		a.name = (char *)name;
		a.ident = 0;
		rc = spec_entry(fs, SPACE_AT, &a, &none, NULL, NULL, K_AT_LINK, e);
		return rc;
	default:
		break;
	}
	sp = spec_of(dir);
	if (!sp)
		return -ENOENT;
	if (k == K_INSPECT_NAME) {
		if (!strcmp(name, "schema.sql"))
			return child_entry(fs, sp, NULL, K_SCHEMA, e);
		if (!strcmp(name, "tables"))
			return child_entry(fs, sp, NULL, K_TABLES_DIR, e);
		return -ENOENT;
	}
	if (k == K_TABLES_DIR) {
		if (csv_table(name, table, sizeof(table)) < 0)
			return -ENOENT;
		return child_entry(fs, sp, table, K_TABLE_CSV, e);
	}
	if (k == K_DIFF_PAIR) {
		if (!strcmp(name, "summary"))
			return child_entry(fs, sp, NULL, K_DIFF_SUMMARY, e);
		if (csv_table(name, table, sizeof(table)) < 0)
			return -ENOENT;
		return child_entry(fs, sp, table, K_DIFF_CSV, e);
	}
	return -ENOENT;
}

/* ---- listings ---- */

static int list_dots(off_t after, bfs_list_fn add, void *ctx)
{
	struct fuse_entry_param dot;

	memset(&dot, 0, sizeof(dot));
	dot.attr.st_mode = S_IFDIR;
	if (after < 1 && add(ctx, ".", &dot, NULL, 0, 1))
		return 1;
	if (after < 2 && add(ctx, "..", &dot, NULL, 0, 2))
		return 1;
	return 0;
}

/* The table names of sp's folder (its tables, or either side's for a diff). */
static int spec_tables(struct bfs *fs, struct spec *sp, char ***names, size_t *n)
{
	struct bri_err err = {0};
	struct live_snap *live = live_ref(sp);
	struct conn c;
	int rc;

	rc =
	    render_open(fs, sp, live, sp->space == SPACE_DIFF ? K_DIFF_CSV : K_TABLE_CSV, &c, &err);
	if (rc == 0) {
		rc = sp->space == SPACE_DIFF ? bri_diff_tables(c.db, names, n, &err)
		                             : bri_inspect_tables(c.db, names, n, &err);
		conn_close(&c);
	}
	live_unref(fs, live); /* after the connection that read it */
	return rc;
}

static int bfs_insp_list(struct bfs *fs, fuse_ino_t dir, off_t after, bfs_list_fn add, void *ctx)
{
	enum insp_kind k = bfs_ino_kind(dir);
	struct fuse_entry_param e;
	struct spec *sp;
	char **names = NULL;
	size_t n = 0;
	int rc;

	if (list_dots(after, add, ctx))
		return 0;
	if (k == K_INSPECT_DIR || k == K_DIFF_DIR || k == K_AT_DIR) {
		if (after < 3 && bfs_insp_attr(fs, bfs_ino_fixed((uint64_t)k, K_README), &e) == 0)
			add(ctx, "README", &e, NULL, 0, 3);
		return 0;
	}
	sp = spec_of(dir);
	if (!sp)
		return -ENOENT;
	if (k == K_INSPECT_NAME) {
		if (after < 3 && child_entry(fs, sp, NULL, K_SCHEMA, &e) == 0 &&
		    add(ctx, "schema.sql", &e, NULL, 0, 3))
			return 0;
		if (after < 4 && child_entry(fs, sp, NULL, K_TABLES_DIR, &e) == 0)
			add(ctx, "tables", &e, NULL, 0, 4);
		return 0;
	}
	if (k == K_DIFF_PAIR && after < 3 && child_entry(fs, sp, NULL, K_DIFF_SUMMARY, &e) == 0 &&
	    add(ctx, "summary", &e, NULL, 0, 3))
		return 0;
	/* The tables of a backup never change: an offset is a position (+ 4). */
	rc = spec_tables(fs, sp, &names, &n);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		char file[260];
		off_t key = 4 + (off_t)i + 1;

		if (key <= after || strlen(names[i]) > 251)
			continue;
		snprintf(file, sizeof(file), "%s.csv", names[i]);
		if (child_entry(fs, sp, names[i], k == K_DIFF_PAIR ? K_DIFF_CSV : K_TABLE_CSV, &e) <
		    0)
			continue;
		if (add(ctx, file, &e, NULL, 0, key))
			break;
	}
	bri_inspect_names_free(names, n);
	return 0;
}

/* ---- at/TIME ---- */

static int bfs_insp_readlink(struct bfs *fs, fuse_ino_t ino, char *buf, size_t size)
{
	struct spec *sp = spec_of(ino);
	const struct bri_entry *b;
	time_t t;
	int rc;

	if (!sp || sp->space != SPACE_AT || bri_inspect_parse_at(sp->a.name, &t) < 0)
		return -ENOENT;
	rc = bfs_refresh_look(fs); /* a backup just made by another process counts */
	if (rc < 0)
		return rc;
	pthread_rwlock_rdlock(&fs->cat_lock);
	b = bri_inspect_at(fs->cat, t);
	if (b)
		snprintf(buf, size, "../%s", b->name);
	pthread_rwlock_unlock(&fs->cat_lock);
	return b ? 0 : -ENOENT;
}

/* ---- open files ---- */

static int bfs_insp_render_readme(struct bfs *fs, fuse_ino_t ino, char **out, size_t *len)
{
	uint64_t dir = bfs_ino_index(ino);
	const char *t = dir == K_INSPECT_DIR ? readme_inspect
	                : dir == K_DIFF_DIR  ? readme_diff
	                                     : readme_at;

	(void)fs;
	*out = strdup(t);
	if (!*out)
		return -ENOMEM;
	*len = strlen(t);
	return 0;
}

static int bfs_insp_open(struct bfs *fs, fuse_ino_t ino, struct fuse_file_info *fi,
                         struct bfs_source *src)
{
	struct bri_err err = {0};
	struct bfs_stream *st;
	struct spec *sp = spec_of(ino);
	uint64_t size;
	int rc;

	if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))
		return -EROFS;
	if (!sp)
		return -ENOENT;
	rc = spec_size(fs, sp, bfs_ino_kind(ino), &size);
	if (rc < 0)
		return rc;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	pthread_mutex_init(&st->lock, NULL);
	st->fs = fs;
	st->sp = sp;
	st->kind = bfs_ino_kind(ino);
	st->size = size;
	st->live = live_ref(sp);
	rc = render_open(fs, sp, st->live, st->kind, &st->c, &err);
	if (rc < 0) {
		bri_log(BRI_LOG_ERR, "inspect %s: %s", sp->a.name, err.msg);
		bfs_stream_free(st);
		return rc;
	}
	src->stream = st;
	fi->keep_cache = 1; /* the content of this inode never changes */
	return 0;
}

void bfs_stream_free(struct bfs_stream *st)
{
	if (!st)
		return;
	bri_render_free(st->r);
	free(st->back);
	conn_close(&st->c);
	if (st->live)
		live_unref(st->fs, st->live);
	pthread_mutex_destroy(&st->lock);
	free(st);
}

/* Renders up to offset until into the ring (fewer at the end); 0 or a negative errno. */
static int stream_pull(struct bfs_stream *st, uint64_t until, struct bri_err *err)
{
	uint64_t end = bri_render_offset(st->r);
	int rc;

	if (until > end + STREAM_BACK) {
		/* Far ahead: what is skipped would leave the ring anyway. */
		rc = bri_render_skip(st->r, until - STREAM_BACK - end, err);
		if (rc < 0)
			return rc;
		st->back_len = 0;
		end = bri_render_offset(st->r);
	}
	while (end < until) {
		size_t at = (size_t)(end % STREAM_BACK), n = STREAM_BACK - at;
		ssize_t got;

		if (n > until - end)
			n = (size_t)(until - end);
		got = bri_render_read(st->r, st->back + at, n, err);
		if (got < 0)
			return (int)got;
		if (got == 0)
			break; /* the end */
		end += (uint64_t)got;
		st->back_len = st->back_len + (size_t)got > STREAM_BACK
		                   ? STREAM_BACK
		                   : st->back_len + (size_t)got;
	}
	return 0;
}

/* Copies [off, off + size) of the output, as far as rendered, from the ring; the bytes copied. */
static size_t stream_copy(const struct bfs_stream *st, char *buf, uint64_t off, size_t size)
{
	uint64_t end = bri_render_offset(st->r);
	size_t got = 0;

	while (got < size && off + got < end) {
		size_t at = (size_t)((off + got) % STREAM_BACK), n = STREAM_BACK - at;

		if (n > size - got)
			n = size - got;
		if (n > end - (off + got))
			n = (size_t)(end - (off + got));
		memcpy(buf + got, st->back + at, n);
		got += n;
	}
	return got;
}

void bfs_stream_read(fuse_req_t req, struct bfs_stream *st, size_t size, off_t off)
{
	struct bri_err err = {0};
	char *buf = NULL;
	size_t got = 0;
	int rc = 0;

	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if ((uint64_t)off >= st->size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > st->size - (uint64_t)off)
		size = (size_t)(st->size - (uint64_t)off);
	if (size > STREAM_BACK) {
		fuse_reply_err(req, EINVAL); /* larger than any read the kernel sends */
		return;
	}
	buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&st->lock);
	if (!st->back && !(st->back = malloc(STREAM_BACK)))
		rc = -ENOMEM;
	if (rc == 0 && st->r && bri_render_offset(st->r) - st->back_len > (uint64_t)off) {
		bri_render_free(st->r); /* further behind than the ring: start again */
		st->r = NULL;
	}
	if (rc == 0 && !st->r) {
		st->back_len = 0;
		rc = render_new(st->c.db, st->sp, st->kind, &st->r, &err);
	}
	if (rc == 0)
		rc = stream_pull(st, (uint64_t)off + size, &err);
	if (rc == 0)
		got = stream_copy(st, buf, (uint64_t)off, size);
	if (rc < 0) {
		bri_render_free(st->r);
		st->r = NULL;
	}
	pthread_mutex_unlock(&st->lock);
	if (rc < 0) {
		bri_log(BRI_LOG_ERR, "inspect %s: read: %s", st->sp->a.name, err.msg);
		fuse_reply_err(req, -rc);
	} else {
		fuse_reply_buf(req, buf, got);
	}
	free(buf);
}

/* ---- the root's inspection folders, and the table: one row per kind of this file ---- */

static const struct {
	const char *name;
	enum insp_kind kind;
} root_dirs[] = {{"inspect", K_INSPECT_DIR}, {"diff", K_DIFF_DIR}, {"at", K_AT_DIR}};

bool bfs_insp_root_name(const char *name)
{
	for (size_t i = 0; i < sizeof(root_dirs) / sizeof(root_dirs[0]); i++)
		if (!strcmp(name, root_dirs[i].name))
			return true;
	return false;
}

int bfs_insp_root_lookup(struct bfs *fs, const char *name, struct fuse_entry_param *e)
{
	for (size_t i = 0; i < sizeof(root_dirs) / sizeof(root_dirs[0]); i++)
		if (!strcmp(name, root_dirs[i].name))
			return bfs_insp_attr(fs, bfs_ino_fixed(0, root_dirs[i].kind), e);
	return -ENOENT;
}

int bfs_insp_root_list(struct bfs *fs, off_t after, off_t first_key, bfs_list_fn add, void *ctx)
{
	struct fuse_entry_param e;

	for (size_t i = 0; i < sizeof(root_dirs) / sizeof(root_dirs[0]); i++) {
		off_t key = first_key + (off_t)i;

		if (after < key &&
		    bfs_insp_attr(fs, bfs_ino_fixed(0, root_dirs[i].kind), &e) == 0 &&
		    add(ctx, root_dirs[i].name, &e, NULL, 0, key))
			return 1;
	}
	return 0;
}

#define INSP_DIR(n)                                                                                \
	{                                                                                          \
		.name = (n), .mode = S_IFDIR | 0555, .spaces = BFS_IN_INSPECT,                     \
		.attr = bfs_insp_attr, .lookup = bfs_insp_lookup, .list = bfs_insp_list            \
	}
#define INSP_FILE(n)                                                                               \
	{                                                                                          \
		.name = (n), .mode = S_IFREG | 0444, .spaces = BFS_IN_INSPECT,                     \
		.attr = bfs_insp_attr, .open = bfs_insp_open                                       \
	}

const struct bfs_kind_ops bfs_insp_kinds[BFS_K_COUNT] = {
    [K_INSPECT_DIR] = {.name = "inspect/",
                       .mode = S_IFDIR | 0555,
                       .spaces = BFS_IN_FIXED,
                       .singleton = true,
                       .attr = bfs_insp_attr,
                       .lookup = bfs_insp_lookup,
                       .list = bfs_insp_list},
    [K_DIFF_DIR] = {.name = "diff/",
                    .mode = S_IFDIR | 0555,
                    .spaces = BFS_IN_FIXED,
                    .singleton = true,
                    .attr = bfs_insp_attr,
                    .lookup = bfs_insp_lookup,
                    .list = bfs_insp_list},
    [K_AT_DIR] = {.name = "at/",
                  .mode = S_IFDIR | 0555,
                  .spaces = BFS_IN_FIXED,
                  .singleton = true,
                  .attr = bfs_insp_attr,
                  .lookup = bfs_insp_lookup,
                  .list = bfs_insp_list},
    [K_README] = {.name = "README",
                  .mode = S_IFREG | 0444,
                  .spaces = BFS_IN_FIXED,
                  .attr = bfs_insp_attr,
                  .open = bfs_open_generated,
                  .render = bfs_insp_render_readme},
    [K_AT_LINK] = {.name = "at/TIME",
                   .mode = S_IFLNK | 0777,
                   .spaces = BFS_IN_INSPECT,
                   .attr = bfs_insp_attr,
                   .readlink = bfs_insp_readlink},
    [K_INSPECT_NAME] = INSP_DIR("inspect/NAME/"),
    [K_SCHEMA] = INSP_FILE("schema.sql"),
    [K_TABLES_DIR] = INSP_DIR("inspect/NAME/tables/"),
    [K_TABLE_CSV] = INSP_FILE("TABLE.csv"),
    [K_DIFF_PAIR] = INSP_DIR("diff/OLD..NEW/"),
    [K_DIFF_SUMMARY] = INSP_FILE("diff summary"),
    [K_DIFF_CSV] = INSP_FILE("diff TABLE.csv"),
};
