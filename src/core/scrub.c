/*
 * Scrub (include/bri/scrub.h). A page store: every page the packs hold is
 * read through the store's own page reader (its group decompressed, every
 * id recomputed with the store's secret), the damaged ids kept in a sorted
 * list; then every manifest's pages are looked up, and each damaged or
 * missing one is reported with its backup and page number; last, every
 * pack's table of contents is compared with its groups. A plain store:
 * every backup's file hashed against the checksum of its metadata.
 */
#include "bri/scrub.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bri/checksum.h"
#include "bri/meta.h"
#include "pack.h"
#include "pack_toc.h"

/* Metadata is a few kilobytes. */
#define META_MAX (16u << 20)

struct bad_page {
	uint8_t id[PAGE_ID_LEN];
	uint32_t pack;
	bool used; /* a backup uses it */
};

static int id_cmp(const void *a, const void *b)
{
	return memcmp(a, b, PAGE_ID_LEN);
}

struct scrub {
	struct bri_store *s;
	struct pages_db *db;
	struct bad_page *bad;
	size_t nbad;
	struct bri_scrub_result *res;
	int (*fn)(void *arg, const struct bri_scrub_damage *d);
	void *arg;
	const struct bri_op_ctx *ctx;
};

/* Every page of every pack against its id; the damaged ones into sc->bad. */
static int check_packs(struct scrub *sc)
{
	struct pages_db *db = sc->db;

	sc->res->packs = db->npacks;
	if (db->nentries) {
		sc->bad = malloc(db->nentries * sizeof(*sc->bad));
		if (!sc->bad)
			return -ENOMEM;
	}
	for (size_t i = 0; i < db->nentries; i++) {
		int rc = pages_db_check_entry(db, i);

		if (rc < 0 && rc != -EBADMSG && rc != -EPROTONOSUPPORT)
			return rc;
		if (rc < 0) {
			memcpy(sc->bad[sc->nbad].id, db->entries[i].id, PAGE_ID_LEN);
			sc->bad[sc->nbad].used = false;
			sc->bad[sc->nbad++].pack = db->entries[i].pack;
		}
		sc->res->pages++;
		if (sc->ctx && sc->ctx->progress && (i % 4096 == 0 || i + 1 == db->nentries))
			sc->ctx->progress(sc->ctx->progress_arg, "scrub", i + 1, db->nentries);
	}
	sc->res->pages_bad = sc->nbad;
	if (sc->nbad > 1)
		qsort(sc->bad, sc->nbad, sizeof(*sc->bad), id_cmp);
	return 0;
}

/* The pages of one backup's manifest: each damaged or missing one reported. */
static int check_manifest(void *arg, const char *name, const struct stat *st)
{
	struct scrub *sc = arg;
	struct manifest m;
	bool bad_backup = false;
	int rc;

	(void)st;
	sc->res->backups++;
	rc = manifest_read(sc->s, name, &m);
	if (rc < 0) {
		struct bri_scrub_damage d = {.backup = name,
		                             .what = rc == -EBADMSG
		                                         ? "its manifest is damaged"
		                                         : "its manifest cannot be read"};

		sc->res->backups_bad++;
		return rc == -ENOENT ? 0 : sc->fn(sc->arg, &d);
	}
	rc = 0;
	for (uint64_t i = 0; i < m.page_count && rc == 0; i++) {
		const uint8_t *id = m.ids + i * PAGE_ID_LEN;
		struct bri_scrub_damage d = {.backup = name, .page = i + 1};
		const struct pack_entry *e;
		struct bad_page *b;

		if (page_id_is_hole(id))
			continue;
		pthread_mutex_lock(&sc->db->lock);
		e = pages_db_find(sc->db, id);
		pthread_mutex_unlock(&sc->db->lock);
		b = e && sc->nbad ? bsearch(id, sc->bad, sc->nbad, sizeof(*sc->bad), id_cmp) : NULL;
		if (e && !b)
			continue;
		if (b) {
			b->used = true;
			d.pack = sc->db->packs[b->pack].name;
			d.what = pages_damage_words(sc->db);
		} else {
			d.what = "missing: no pack holds a page with its id (a pack's ids or "
			         "framing may be damaged)";
		}
		bad_backup = true;
		rc = sc->fn(sc->arg, &d);
	}
	if (bad_backup)
		sc->res->backups_bad++;
	sc->res->bytes += m.page_count * PAGE_ID_LEN;
	free(m.ids);
	return rc;
}

/*
 * Every pack's table of contents against its groups (pack_toc.c,
 * toc_check): one that disagrees, or is damaged, is damage of that pack,
 * reported naming it (its readers fall back to reading the groups, so no
 * page is lost by it). A pack without one (written before TOCs) is fine.
 */
static int check_tocs(struct scrub *sc)
{
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < sc->db->npacks; i++) {
		struct bri_scrub_damage d = {.pack = sc->db->packs[i].name};
		const char *why = NULL;
		char what[256];
		uint64_t at = 0;
		int r = toc_check(sc->db->packs[i].fd, sc->s->seal, &why, &at);

		if (r == 0)
			continue;
		if (r == -EBADMSG)
			snprintf(what, sizeof(what),
			         "its table of contents is damaged: %s (at byte %llu)", why,
			         (unsigned long long)at);
		else
			snprintf(what, sizeof(what), "its table of contents cannot be checked: %s",
			         strerror(-r));
		d.what = what;
		sc->res->packs_bad++;
		rc = sc->fn(sc->arg, &d);
	}
	return rc;
}

static int scrub_pages(struct bri_store *s, struct scrub *sc, struct bri_err *err)
{
	int rc;

	rc = pages_db_open(s, &sc->db, err);
	if (rc < 0)
		return rc;
	rc = check_packs(sc);
	if (rc < 0) {
		bri_err_set(err, rc, "cannot scrub the packs of %s: %s", s->dir, strerror(-rc));
		goto out_close;
	}
	for (size_t i = 0; i < sc->db->npacks; i++) {
		struct stat st;

		if (fstat(sc->db->packs[i].fd, &st) == 0)
			sc->res->bytes += (uint64_t)st.st_size;
	}
	rc = bri_store_list(s, check_manifest, sc, err);
	/* Damaged pages no backup uses by that id: the id may be what was damaged. */
	for (size_t i = 0; rc == 0 && i < sc->nbad; i++) {
		struct bri_scrub_damage d = {
		    .pack = sc->db->packs[sc->bad[i].pack].name,
		    .what = "a page does not match the id it is stored under, and no backup "
		            "uses that id (the id itself may be the damaged part)"};

		if (!sc->bad[i].used)
			rc = sc->fn(sc->arg, &d);
	}
	if (rc == 0)
		rc = check_tocs(sc);
out_close:
	pages_db_close(sc->db);
	free(sc->bad);
	return rc;
}

/* A plain backup: its whole file against its checksum. */
static int check_file(void *arg, const char *name, const struct stat *st)
{
	struct scrub *sc = arg;
	struct bri_scrub_damage d = {.backup = name};
	char hex[BRI_CHECKSUM_HEX_LEN + 1], *text;
	struct bri_reader *r = NULL;
	struct bri_meta m;
	struct bri_err e = {0};
	size_t len;
	int rc;

	sc->res->backups++;
	rc = bri_store_sidecar_read(sc->s, name, BRI_SIDECAR_META, META_MAX, &text, &len);
	if (rc == 0) {
		rc = bri_meta_parse(text, len, &m, NULL);
		free(text);
	}
	if (rc < 0) {
		d.what = "no readable metadata (no checksum to check it against)";
		goto out_bad;
	}
	rc = bri_store_open_reader(sc->s, name, &r, &e);
	if (rc == 0)
		rc = bri_checksum_reader(r, NULL, hex, &e);
	bri_reader_close(r);
	if (rc == 0)
		sc->res->bytes += (uint64_t)st->st_size;
	d.what = rc < 0 ? "cannot be read" : "does not match its checksum";
	if (rc == 0 && strcmp(hex, m.checksum) == 0) {
		bri_meta_free(&m);
		return 0;
	}
	bri_meta_free(&m);
out_bad:
	sc->res->backups_bad++;
	return sc->fn(sc->arg, &d);
}

int bri_scrub(struct bri_store *s, const struct bri_op_ctx *ctx,
              int (*fn)(void *arg, const struct bri_scrub_damage *d), void *arg,
              struct bri_scrub_result *res, struct bri_err *err)
{
	struct scrub sc = {.s = s, .res = res, .fn = fn, .arg = arg, .ctx = ctx};

	memset(res, 0, sizeof(*res));
	if (s->ops == &bri_store_pages_ops)
		return scrub_pages(s, &sc, err);
	return bri_store_list(s, check_file, &sc, err);
}
