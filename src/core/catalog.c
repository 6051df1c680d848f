/*
 * The in-memory index of a store: one listing of the store (its format's
 * list: for plain, one readdir), a stat of each backup's sidecars, and a
 * read of the metadata, verification result and rehearsal status only for entries that are
 * new or changed since the previous scan. Symlinks and anything that is not a
 * regular file are never indexed, so a planted link cannot expose a file.
 * A .db whose .meta does not parse is not a backup: it goes to the unknown
 * list, apart from the backups, and its .verify is never read.
 */
#include "bri/catalog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bri/log.h"
#include "bri/pin.h"
#include "bri/rehearsal.h"
#include "internal.h"

static atomic_uint_fast64_t next_id = 1;

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static void free_entry(struct bri_entry *e)
{
	if (!e)
		return;
	free(e->name);
	if (e->meta_ok)
		bri_meta_free(&e->meta);
	free(e);
}

/* The identity of a sidecar; zeroed when absent. */
static void stat_sidecar(const struct bri_store *s, const char *name, enum bri_sidecar kind,
                         struct stat *st)
{
	if (bri_store_sidecar_stat(s, name, kind, st) < 0)
		memset(st, 0, sizeof(*st));
}

/* True when s is "_backup_" + YYYYMMDD_HHMMSS, optionally followed by _N. */
static bool auto_suffix(const char *s)
{
	if (strncmp(s, "_backup_", 8) != 0)
		return false;
	s += 8;
	for (int i = 0; i < 15; i++)
		if (i == 8 ? s[i] != '_' : (s[i] < '0' || s[i] > '9'))
			return false;
	s += 15;
	if (*s == '\0')
		return true;
	if (*s++ != '_' || !*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* The kind of a backup whose metadata does not say (the seed's), by its name. */
static enum bri_kind kind_by_name(const char *name)
{
	const char *p;

	if (strncmp(name, "pre_restore_safety", 18) == 0)
		return BRI_KIND_SAFETY;
	for (p = strstr(name, "_backup_"); p; p = strstr(p + 1, "_backup_"))
		if (auto_suffix(p))
			return BRI_KIND_AUTO;
	return BRI_KIND_NAMED;
}

static void load_entry(const struct bri_store *s, struct bri_entry *e)
{
	struct bri_err err = {0};
	char *text;
	size_t len;
	int rc;

	rc = bri_store_sidecar_read(s, e->name, BRI_SIDECAR_META, BRI_META_MAX_BYTES, &text, &len);
	if (rc == 0) {
		e->meta_ok = bri_meta_parse(text, len, &e->meta, &err) == 0;
		if (!e->meta_ok)
			snprintf(e->meta_error, sizeof(e->meta_error), "%s", err.msg);
		free(text);
	} else {
		snprintf(e->meta_error, sizeof(e->meta_error), "metadata %s",
		         rc == -ENOENT ? "missing" : strerror(-rc));
	}
	if (!e->meta_ok) {
		/* Not a backup: never verified as good, whatever a .verify says. */
		e->time = e->db_st.st_mtime;
		e->kind = BRI_KIND_UNKNOWN;
		memset(&e->verify, 0, sizeof(e->verify));
		e->verify.status = BRI_VERIFY_FAILED;
		e->verify.checksum_ok = e->verify.integrity_ok = e->verify.counts_ok = -1;
		snprintf(e->verify.reason, sizeof(e->verify.reason),
		         "not a backup: no usable metadata (%.400s)", e->meta_error);
		return;
	}
	e->time = e->meta.time;
	e->kind = e->meta.kind;
	if (e->kind == BRI_KIND_UNKNOWN)
		e->kind = kind_by_name(e->name);
	bri_verify_load(s, e->name, &e->verify);
	if (e->rehearsal_st.st_ino)
		bri_rehearsal_read(s, e->name, &e->rehearsal);
}

static int by_name(const void *a, const void *b)
{
	return strcmp((*(struct bri_entry *const *)a)->name, (*(struct bri_entry *const *)b)->name);
}

/* The index in c->by_name of the entry called name, a backup or an unknown file, or -1. */
static ssize_t find_any_index(const struct bri_catalog *c, const char *name)
{
	struct bri_entry key = {.name = (char *)name}, *kp = &key, **found;

	if (!c || !c->by_name)
		return -1;
	found = bsearch(&kp, c->by_name, c->n + c->nunknown, sizeof(*c->by_name), by_name);
	return found ? found - c->by_name : -1;
}

/* The entry called name, a backup or an unknown file, or NULL. */
static struct bri_entry *find_any(const struct bri_catalog *c, const char *name)
{
	ssize_t i = find_any_index(c, name);

	return i < 0 ? NULL : c->by_name[i];
}

/*
 * Which entries of prev a scan took over, by their index in prev->by_name
 * (the scan's own record: the entries themselves carry no mark).
 */
struct taken {
	const struct bri_catalog *prev;
	bool *by_name; /* prev->n + prev->nunknown flags, or NULL without prev */
};

/* Whether e (an entry of the new scan) was taken over from prev. */
static bool is_taken(const struct taken *t, const struct bri_entry *e)
{
	ssize_t i = t->by_name ? find_any_index(t->prev, e->name) : -1;

	return i >= 0 && t->prev->by_name[i] == e && t->by_name[i];
}

static void untake(struct taken *t, const struct bri_entry *e)
{
	ssize_t i = t->by_name ? find_any_index(t->prev, e->name) : -1;

	if (i >= 0 && t->prev->by_name[i] == e)
		t->by_name[i] = false;
}

/* Takes the entry called name out of prev when its files are unchanged. */
static struct bri_entry *take_unchanged(struct taken *t, const struct bri_entry *fresh,
                                        uint64_t *id)
{
	ssize_t i = t->by_name ? find_any_index(t->prev, fresh->name) : -1;
	struct bri_entry *old = i >= 0 ? t->prev->by_name[i] : NULL;

	if (!old)
		return NULL;
	if (old->db_st.st_ino == fresh->db_st.st_ino && old->db_st.st_dev == fresh->db_st.st_dev)
		*id = old->id;
	if (t->by_name[i] || !same_file(&old->db_st, &fresh->db_st) ||
	    !same_file(&old->meta_st, &fresh->meta_st) ||
	    !same_file(&old->verify_st, &fresh->verify_st) ||
	    !same_file(&old->rehearsal_st, &fresh->rehearsal_st) ||
	    !same_file(&old->offsite_st, &fresh->offsite_st))
		return NULL;
	t->by_name[i] = true;
	return old;
}

/* Removes the taken entries of list (n of them), keeping the order; the new count. */
static size_t drop_taken(const struct taken *t, struct bri_entry **list, size_t n)
{
	size_t kept = 0;

	for (size_t i = 0; i < n; i++) {
		if (!is_taken(t, list[i]))
			list[kept++] = list[i];
	}
	return kept;
}

/* Drops the entries a newer scan took over from prev (the flags of t are then stale). */
static void forget_taken(struct bri_catalog *prev, const struct taken *t)
{
	size_t n = drop_taken(t, prev->entries, prev->n);

	/* by_name is what is_taken searches: rebuild it only after both lists. */
	prev->nunknown = prev->unknown ? drop_taken(t, prev->unknown, prev->nunknown) : 0;
	prev->n = n;
	if (prev->by_name) {
		if (prev->n)
			memcpy(prev->by_name, prev->entries, prev->n * sizeof(*prev->entries));
		if (prev->nunknown)
			memcpy(prev->by_name + prev->n, prev->unknown,
			       prev->nunknown * sizeof(*prev->unknown));
		if (prev->n + prev->nunknown)
			qsort(prev->by_name, prev->n + prev->nunknown, sizeof(*prev->by_name),
			      by_name);
	}
}

static int newest_first(const void *a, const void *b)
{
	const struct bri_entry *x = *(struct bri_entry *const *)a;
	const struct bri_entry *y = *(struct bri_entry *const *)b;

	if (x->time != y->time)
		return x->time > y->time ? -1 : 1;
	/* Within one second, the file written last is the newer backup. */
	if (x->db_st.st_mtim.tv_sec != y->db_st.st_mtim.tv_sec)
		return x->db_st.st_mtim.tv_sec > y->db_st.st_mtim.tv_sec ? -1 : 1;
	if (x->db_st.st_mtim.tv_nsec != y->db_st.st_mtim.tv_nsec)
		return x->db_st.st_mtim.tv_nsec > y->db_st.st_mtim.tv_nsec ? -1 : 1;
	return -strcmp(x->name, y->name);
}

static int add_entry(struct bri_catalog *c, size_t *cap, struct bri_entry *e)
{
	if (c->n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		struct bri_entry **n = realloc(c->entries, ncap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		c->entries = n;
		*cap = ncap;
	}
	c->entries[c->n++] = e;
	return 0;
}

/* The state of one scan, for scan_one. */
struct scan {
	const struct bri_store *s; /* the store */
	struct bri_catalog *c;     /* being filled */
	struct taken taken;        /* the previous scan (or none) and what this one took over */
	size_t cap;                /* room in c->entries */
	size_t reused;             /* entries taken over from prev */
	struct bri_err *err;       /* why it failed */
};

/* Indexes the backup name of the store (st: its identity); 0 or a negative errno. */
static int scan_one(void *arg, const char *name, const struct stat *st)
{
	struct scan *sc = arg;
	struct bri_entry probe = {0}, *e;
	uint64_t id = 0;

	probe.db_st = *st;
	stat_sidecar(sc->s, name, BRI_SIDECAR_META, &probe.meta_st);
	stat_sidecar(sc->s, name, BRI_SIDECAR_VERIFY, &probe.verify_st);
	stat_sidecar(sc->s, name, BRI_SIDECAR_REHEARSAL, &probe.rehearsal_st);
	stat_sidecar(sc->s, name, BRI_SIDECAR_OFFSITE, &probe.offsite_st);
	probe.name = (char *)name;
	e = take_unchanged(&sc->taken, &probe, &id);
	if (e) {
		sc->reused++;
	} else {
		e = calloc(1, sizeof(*e));
		if (!e || !(e->name = strdup(name))) {
			free(e);
			return bri_err_set(sc->err, -ENOMEM, "out of memory");
		}
		e->db_st = probe.db_st;
		e->meta_st = probe.meta_st;
		e->verify_st = probe.verify_st;
		e->rehearsal_st = probe.rehearsal_st;
		e->offsite_st = probe.offsite_st;
		e->id = id ? id : atomic_fetch_add(&next_id, 1);
		load_entry(sc->s, e);
	}
	e->pinned = bri_pin_exists(sc->s, name);
	if (add_entry(sc->c, &sc->cap, e) < 0) {
		if (is_taken(&sc->taken, e))
			untake(&sc->taken, e);
		else
			free_entry(e);
		return bri_err_set(sc->err, -ENOMEM, "out of memory");
	}
	return 0;
}

int bri_catalog_scan(const struct bri_store *s, struct bri_catalog *prev, struct bri_catalog **out,
                     struct bri_err *err)
{
	struct bri_catalog *c = calloc(1, sizeof(*c));
	struct scan sc = {.s = s, .c = c, .taken = {.prev = prev}, .err = err};
	size_t total;
	int rc = 0;

	if (!c)
		return bri_err_set(err, -ENOMEM, "out of memory");
	if (prev && prev->by_name) {
		sc.taken.by_name = calloc(prev->n + prev->nunknown + 1, sizeof(bool));
		if (!sc.taken.by_name) {
			free(c);
			return bri_err_set(err, -ENOMEM, "out of memory");
		}
	}
	rc = bri_store_list(s, scan_one, &sc, err);
	if (rc < 0)
		goto out_fail;
	/* scan_one appends to entries only; unknown is made and filled below. */
	c->unknown = NULL;
	c->nunknown = 0;
	total = c->n;
	c->by_name = malloc((total ? total : 1) * sizeof(*c->by_name));
	c->unknown = malloc((total ? total : 1) * sizeof(*c->unknown));
	if (!c->by_name || !c->unknown) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_fail;
	}
	/* An empty store has no entries array: memcpy and qsort want non-NULL. */
	if (total) {
		memcpy(c->by_name, c->entries, total * sizeof(*c->entries));
		qsort(c->by_name, total, sizeof(*c->by_name), by_name);
		/* The backups stay in entries; the rest move to unknown. */
		c->n = 0;
		for (size_t i = 0; i < total; i++) {
			if (c->entries[i]->kind == BRI_KIND_UNKNOWN)
				c->unknown[c->nunknown++] = c->entries[i];
			else
				c->entries[c->n++] = c->entries[i];
		}
		qsort(c->entries, c->n, sizeof(*c->entries), newest_first);
		qsort(c->unknown, c->nunknown, sizeof(*c->unknown), newest_first);
	}
	/* Unchanged when every entry was taken over and prev had no others. */
	c->generation = prev ? prev->generation : 0;
	if (!prev || sc.reused != total || prev->n + prev->nunknown != total)
		c->generation++;
	if (prev)
		forget_taken(prev, &sc.taken);
	free(sc.taken.by_name);
	*out = c;
	return 0;
out_fail:
	/* Entries taken over from prev go back to it. */
	for (size_t i = 0; i < c->n; i++) {
		if (is_taken(&sc.taken, c->entries[i]))
			c->entries[i] = NULL;
	}
	free(sc.taken.by_name);
	bri_catalog_free(c);
	return rc;
}

void bri_catalog_free(struct bri_catalog *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		free_entry(c->entries[i]);
	for (size_t i = 0; i < c->nunknown; i++)
		free_entry(c->unknown[i]);
	free(c->entries);
	free(c->unknown);
	free(c->by_name);
	free(c);
}

struct bri_entry *bri_catalog_find(const struct bri_catalog *c, const char *name)
{
	struct bri_entry *e = find_any(c, name);

	return e && e->kind != BRI_KIND_UNKNOWN ? e : NULL;
}

struct bri_entry *catalog_find_unknown(const struct bri_catalog *c, const char *name)
{
	struct bri_entry *e = find_any(c, name);

	return e && e->kind == BRI_KIND_UNKNOWN ? e : NULL;
}

struct bri_entry *bri_catalog_newest(const struct bri_catalog *c)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->entries[i]->kind != BRI_KIND_SAFETY)
			return c->entries[i];
	return c->n ? c->entries[0] : NULL;
}
