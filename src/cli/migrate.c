/*
 * bri-backup migrate --to plain|pages: converts the store in place between
 * its formats (SPEC.md section 5) through the core's bri_migrate, which says
 * how a kill at any point loses nothing and how a second run finishes. Here:
 * the options, the progress bar and the one-line result (or JSON).
 */
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "bri/migrate.h"
#include "bri/store.h"
#include "cli.h"

int cli_cmd_migrate(struct cli_globals *g, const struct cli_args *a)
{
	struct bri_store_open_opts o = {
	    .follow_symlink = g->follow_symlink, .force = g->force, .key_file = g->key_file};
	struct bri_op_ctx ctx = cli_progress_ctx("migrate");
	const char *to = cli_opt(a, "to");
	struct bri_migrate_result res;
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	int r;

	if (a->npos != 0)
		return cli_usage_error(a->name, "migrate takes no arguments");
	if (!to || !bri_store_format(to))
		return cli_usage_error(a->name, "--to is plain or pages");
	cli_setup_logging(g);
	r = bri_store_open_ex(g->db, g->backup_dir, &o, &s, &err);
	if (r < 0) {
		cli_error("migrate: cannot open the backup store: %s", err.msg);
		return CLI_EXIT_FAIL;
	}
	r = bri_migrate(s, to, &ctx, &res, &err);
	cli_progress_done();
	if (r < 0) {
		cli_error("migrate: %s", err.msg);
		bri_store_close(s);
		return CLI_EXIT_FAIL;
	}
	if (g->json) {
		json_object *j = json_object_new_object();

		json_object_object_add(j, "store", json_object_new_string(s->dir));
		json_object_object_add(j, "from", json_object_new_string(res.from));
		json_object_object_add(j, "format", json_object_new_string(res.to));
		json_object_object_add(j, "converted",
		                       json_object_new_int64((int64_t)res.converted));
		json_object_object_add(j, "kept", json_object_new_int64((int64_t)res.kept));
		json_object_object_add(j, "finished", json_object_new_boolean(res.finished));
		json_object_object_add(j, "already", json_object_new_boolean(res.already));
		puts(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY |
		                                           JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(j);
	} else if (res.already) {
		printf("%s: already a %s store; nothing to do\n", s->dir, res.to);
	} else if (res.finished) {
		printf("%s: a %s store; finished an interrupted migrate (leftovers removed)\n",
		       s->dir, res.to);
	} else {
		printf("%s: a %s store; %zu backup(s) converted from %s", s->dir, res.to,
		       res.converted + res.kept, res.from);
		if (res.kept)
			printf(" (%zu by an interrupted run)", res.kept);
		putchar('\n');
	}
	bri_store_close(s);
	return CLI_EXIT_OK;
}
