/*
 * bri-backup scrub: every stored byte of the store checked (include/bri/
 * scrub.h): in a page store every page of every pack against its id, and
 * every page each backup uses looked up; in a plain store every backup's
 * file against its checksum. Prints each damaged page with its backup and
 * page number; exit 1 when anything is damaged or missing.
 */
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "bri/scrub.h"
#include "bri/store.h"
#include "cli.h"

/* Damage lines printed at most (JSON lists as many); the count is always exact. */
#define SHOWN_MAX 1000

struct shown {
	size_t n;
	json_object *list; /* --json */
};

static int show(void *arg, const struct bri_scrub_damage *d)
{
	struct shown *sh = arg;

	if (sh->list) {
		json_object *j = json_object_new_object();

		json_object_object_add(j, "backup",
		                       d->backup ? json_object_new_string(d->backup) : NULL);
		json_object_object_add(j, "page",
		                       d->page ? json_object_new_int64((int64_t)d->page) : NULL);
		json_object_object_add(j, "pack", d->pack ? json_object_new_string(d->pack) : NULL);
		json_object_object_add(j, "problem", json_object_new_string(d->what));
		if (sh->n < SHOWN_MAX)
			json_object_array_add(sh->list, j);
		else
			json_object_put(j);
	} else if (sh->n < SHOWN_MAX) {
		if (!d->backup)
			printf("%s: %s\n", d->pack, d->what);
		else if (d->page)
			printf("%s: page %" PRIu64 " %s%s%s\n", d->backup, d->page, d->what,
			       d->pack ? " in " : "", d->pack ? d->pack : "");
		else
			printf("%s: %s\n", d->backup, d->what);
	}
	sh->n++;
	return 0;
}

int cli_cmd_scrub(struct cli_globals *g, const struct cli_args *a)
{
	struct bri_store_open_opts o = {
	    .follow_symlink = g->follow_symlink, .force = g->force, .key_file = g->key_file};
	struct bri_op_ctx ctx = cli_progress_ctx("scrub");
	struct bri_scrub_result res;
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	struct shown sh = {0};
	int r;

	if (a->npos != 0)
		return cli_usage_error(a->name, "scrub takes no arguments");
	cli_setup_logging(g);
	r = bri_store_open_ex(g->db, g->backup_dir, &o, &s, &err);
	if (r < 0) {
		cli_error("scrub: cannot open the backup store: %s", err.msg);
		return CLI_EXIT_FAIL;
	}
	if (g->json)
		sh.list = json_object_new_array();
	r = bri_scrub(s, &ctx, show, &sh, &res, &err);
	cli_progress_done();
	if (r < 0) {
		cli_error("scrub: %s", err.msg);
		json_object_put(sh.list);
		bri_store_close(s);
		return CLI_EXIT_FAIL;
	}
	if (g->json) {
		json_object *j = json_object_new_object();

		json_object_object_add(j, "format", json_object_new_string(s->ops->format));
		json_object_object_add(j, "packs", json_object_new_int64((int64_t)res.packs));
		json_object_object_add(j, "pages", json_object_new_int64((int64_t)res.pages));
		json_object_object_add(j, "pages_damaged",
		                       json_object_new_int64((int64_t)res.pages_bad));
		json_object_object_add(j, "backups", json_object_new_int64((int64_t)res.backups));
		json_object_object_add(j, "backups_damaged",
		                       json_object_new_int64((int64_t)res.backups_bad));
		json_object_object_add(j, "packs_damaged",
		                       json_object_new_int64((int64_t)res.packs_bad));
		json_object_object_add(j, "damage", sh.list);
		puts(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY |
		                                           JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(j);
	} else {
		if (sh.n > SHOWN_MAX)
			printf("... and %zu more\n", sh.n - SHOWN_MAX);
		if (s->ops == &bri_store_pages_ops && res.packs_bad)
			printf("scrubbed %" PRIu64 " pack(s), %" PRIu64 " page(s): %" PRIu64
			       " damaged; %" PRIu64 " of %" PRIu64 " backup(s) affected; %" PRIu64
			       " pack(s) with a damaged table of contents\n",
			       res.packs, res.pages, res.pages_bad, res.backups_bad, res.backups,
			       res.packs_bad);
		else if (s->ops == &bri_store_pages_ops)
			printf("scrubbed %" PRIu64 " pack(s), %" PRIu64 " page(s): %" PRIu64
			       " damaged; %" PRIu64 " of %" PRIu64 " backup(s) affected\n",
			       res.packs, res.pages, res.pages_bad, res.backups_bad, res.backups);
		else
			printf("scrubbed %" PRIu64 " backup(s): %" PRIu64 " damaged\n", res.backups,
			       res.backups_bad);
	}
	bri_store_close(s);
	return res.backups_bad || res.pages_bad || res.packs_bad ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
