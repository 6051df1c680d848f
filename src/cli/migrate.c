/*
 * bri-backup migrate --to plain|pages [--new-key-file F]: converts the store
 * in place between its formats (SPEC.md section 5), and between encrypted
 * and not, and from one key to another, through the core's bri_migrate_ex,
 * which says how a kill at any point loses nothing and how a second run
 * finishes. The store is opened without checking its key (key_later): the
 * core checks it, before anything is written, knowing which key the store
 * has after an interrupted run's switch. Here: the options, the progress bar,
 * the one-line result (or JSON), and the warning that a decrypted store is
 * in the clear.
 */
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "bri/migrate.h"
#include "bri/store.h"
#include "cli.h"

int cli_cmd_migrate(struct cli_globals *g, const struct cli_args *a)
{
	struct bri_store_open_opts o = {.follow_symlink = g->follow_symlink,
	                                .force = g->force,
	                                .key_file = g->key_file,
	                                .key_later = true};
	const char *new_key = cli_opt(a, "new-key-file");
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
	if (new_key && !*new_key)
		return cli_usage_error(a->name, "--new-key-file needs a file");
	r = bri_migrate_ex(s, to, new_key, &ctx, &res, &err);
	cli_progress_done();
	if (r < 0) {
		cli_error("migrate: %s", err.msg);
		bri_store_close(s);
		return CLI_EXIT_FAIL;
	}
	if (res.sealed_before && !res.sealed_after && !res.already)
		fprintf(stderr,
		        "bri-backup: warning: the backup store %s is NOT encrypted any more: every "
		        "backup, its metadata and the audit log are in the clear on disk\n",
		        s->dir);
	if (res.offsite && !res.already)
		fprintf(stderr,
		        "bri-backup: warning: backups of this store were pushed offsite; that "
		        "copy keeps the old form and key and still restores with them, and "
		        "offsite push (and the mount's -o offsite=) refuses to push the "
		        "converted store into it: push it to a new --remote prefix\n");
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
		json_object_object_add(j, "encrypted", json_object_new_boolean(res.sealed_after));
		puts(json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY |
		                                           JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(j);
	} else if (res.already) {
		printf("%s: already a %s store; nothing to do\n", s->dir, res.to);
	} else if (res.finished) {
		printf("%s: a %s store; finished an interrupted migrate (leftovers removed)\n",
		       s->dir, res.to);
	} else {
		printf("%s: a%s %s store%s; %zu backup(s) converted from %s%s", s->dir,
		       res.sealed_after ? "n encrypted" : "", res.to,
		       res.sealed_before && res.sealed_after ? " with the new key" : "",
		       res.converted + res.kept, res.sealed_before ? "encrypted " : "", res.from);
		if (res.kept)
			printf(" (%zu by an interrupted run)", res.kept);
		putchar('\n');
	}
	bri_store_close(s);
	return CLI_EXIT_OK;
}
