/*
 * The commands of bri-backup that make or remove backups: init, create,
 * cleanup, delete, pin and unpin (SPEC.md section 3). Each runs with its
 * line parsed by the command table (commands.c), calls the core and prints
 * for a person, or JSON with --json.
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bri/catalog.h"
#include "bri/cleanup.h"
#include "bri/create.h"
#include "bri/pin.h"
#include "bri/store.h"
#include "bri/testpoint.h"
#include "bri/verify.h"
#include "cli.h"

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
}

/* ---- create ---- */

int cli_cmd_create(struct cli_globals *g, const struct cli_args *a)
{
	struct bri_create_opts opts = {0};
	struct stat st;
	struct bri_verify_result vres = {0};
	struct bri_op_ctx ctx;
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	json_object *out = NULL, *cleaned = NULL;
	const char *name = cli_opt(a, "name");
	char *new_name = NULL, *path = NULL;
	bool verify = cli_flag(a, "verify"), cleanup = cli_flag(a, "cleanup");
	int r, rc = CLI_EXIT_OK;

	if (a->npos > 0)
		return cli_usage_error(a->name, "unexpected argument '%s' (names go after --name)",
		                       a->pos[0]);
	/* A refused name is refused before anything is opened or written. */
	if (name && cli_check_name(a->name, name))
		return CLI_EXIT_USAGE;
	cli_setup_logging(g);
	cli_hook_note(g, name); /* from here on a failure is the create's */
	/* stat only: the live database is never opened outside SQLite. */
	if (stat(g->db, &st) < 0) {
		cli_error("create: database not found: %s (%s); check --db or $BRI_DB", g->db,
		          strerror(errno));
		return CLI_EXIT_FAIL;
	}
	if (!S_ISREG(st.st_mode)) {
		cli_error("create: %s is not a database file; check --db or $BRI_DB", g->db);
		return CLI_EXIT_FAIL;
	}
	rc = cli_open_store(g, true, &s);
	if (rc)
		return rc;

	opts.name = name;
	opts.kind = name ? BRI_KIND_NAMED : BRI_KIND_AUTO;
	opts.now = bri_testpoint_now();
	ctx = cli_progress_ctx(name ? name : "create");
	r = bri_create(s, &opts, &ctx, &new_name, &err);
	cli_progress_done();
	if (r == 0)
		cli_hook_note(g, new_name);
	if (r < 0) {
		rc = cli_fail("create", &err, r);
		goto out_close_store;
	}
	path = bri_store_backup_path(s, new_name);
	if (!path) {
		cli_error("out of memory");
		rc = CLI_EXIT_FAIL;
		goto out_free_name;
	}
	if (g->json) {
		out = json_object_new_object();
		json_object_object_add(out, "name", cli_json_str(new_name));
		json_object_object_add(out, "path", cli_json_str(path));
	} else {
		puts(path);
		fflush(stdout);
	}

	if (verify) {
		ctx = cli_progress_ctx(new_name);
		r = bri_verify_backup(s, new_name, &ctx, &vres, &err);
		cli_progress_done();
		if (r < 0) {
			rc = cli_fail("verify", &err, r);
		} else if (vres.status != BRI_VERIFY_OK) {
			cli_error("verification of %s failed: %s", new_name, vres.reason);
			fprintf(stderr,
			        "The backup is kept; do not rely on it. Retry the backup.\n");
			rc = CLI_EXIT_FAIL;
		} else if (!g->json) {
			fprintf(stderr, "verified %s: ok\n", new_name);
		}
		if (out && r >= 0)
			json_object_object_add(out, "verify",
			                       cli_verify_json(new_name, path, &vres));
	}
	if (cleanup) {
		r = cli_run_cleanup(s, g, false, stderr, out ? &cleaned : NULL);
		if (r)
			rc = r;
		if (out && cleaned)
			json_object_object_add(out, "cleanup", cleaned);
	}
	if (out)
		cli_print_json(out);
	free(path);
out_free_name:
	free(new_name);
out_close_store:
	cli_close_store(s);
	return rc;
}

/* ---- cleanup ---- */

int cli_cmd_cleanup(struct cli_globals *g, const struct cli_args *a)
{
	struct bri_store *s = NULL;
	json_object *out = NULL;
	bool dry_run = cli_flag(a, "dry-run");
	int rc = CLI_EXIT_OK;

	if (a->npos > 0)
		return cli_usage_error(a->name, "unexpected argument '%s'", a->pos[0]);
	cli_setup_logging(g);
	rc = cli_open_store(g, false, &s);
	if (rc)
		return rc;
	if (!s) {
		if (g->json) {
			out = json_object_new_object();
			json_object_object_add(out, "dry_run", json_object_new_boolean(dry_run));
			json_object_object_add(out, "removed", json_object_new_array());
			json_object_object_add(out, "kept", json_object_new_array());
			cli_print_json(out);
		} else {
			printf("0 of 0 backups %s (no store yet)\n",
			       dry_run ? "would be removed" : "removed");
		}
		return CLI_EXIT_OK;
	}
	if (!dry_run)
		cli_hook_note(g, NULL);
	rc = cli_run_cleanup(s, g, dry_run, stdout, g->json ? &out : NULL);
	if (out)
		cli_print_json(out);
	cli_close_store(s);
	return rc;
}

/* ---- init ---- */

int cli_cmd_init(struct cli_globals *g, const struct cli_args *a)
{
	struct bri_store *s = NULL;
	struct bri_err err = {0};
	const char *format = cli_opt(a, "format") ? cli_opt(a, "format") : "plain";
	int r, lockfd, rc = CLI_EXIT_OK;

	if (a->npos != 0)
		return cli_usage_error(a->name, "init takes no arguments");
	if (!bri_store_format(format))
		return cli_usage_error(a->name, "--format is plain or pages");
	cli_setup_logging(g);
	rc = cli_open_store(g, true, &s);
	if (rc)
		return rc;
	lockfd = bri_store_lock(s, &err);
	if (lockfd < 0) {
		rc = cli_fail("init", &err, lockfd);
		goto out_close_store;
	}
	r = bri_store_init_format(s, format, &err);
	bri_store_unlock(lockfd);
	if (r < 0) {
		rc = cli_fail("init", &err, r);
		goto out_close_store;
	}
	printf("%s: a %s store%s\n", s->dir, s->ops->format, s->seal ? " (encrypted)" : "");
out_close_store:
	cli_close_store(s);
	return rc;
}

/* ---- delete ---- */

int cli_cmd_delete(struct cli_globals *g, const struct cli_args *a)
{
	struct bri_store *s = NULL;
	struct bri_err err = {0};
	struct bri_op_ctx ctx = bri_op_ctx_self("cli");
	const char *name;
	char *stem = NULL;
	int rc, r;

	if (a->npos != 1)
		return cli_usage_error(a->name, "delete takes exactly one backup name");
	name = a->pos[0];
	if (cli_check_name(a->name, name))
		return CLI_EXIT_USAGE;
	cli_setup_logging(g);
	rc = cli_open_store(g, false, &s);
	if (rc)
		return rc;
	if (s && bri_store_has(s, name) != 1 && ends_with(name, ".db")) {
		/* "NAME.db", the backup's file name, for the backup NAME. */
		stem = strndup(name, strlen(name) - 3);
		if (stem && bri_store_check_name(stem, strlen(stem), NULL) == 0 &&
		    bri_store_has(s, stem) == 1)
			name = stem;
	}
	if (!s || bri_store_has(s, name) != 1) {
		cli_error("delete: no backup named %s (see bri-backup list)", name);
		rc = CLI_EXIT_FAIL;
		goto out_close_store;
	}
	if (bri_pin_exists(s, name)) {
		cli_error("delete: backup %s is pinned, so it is not deleted; unpin it first "
		          "(bri-backup unpin %s) if you mean to",
		          name, name);
		rc = CLI_EXIT_FAIL;
		goto out_close_store;
	}
	r = bri_delete(s, name, &ctx, &err);
	if (r < 0) {
		rc = cli_fail("delete", &err, r);
		goto out_close_store;
	}
	printf("deleted %s\n", name);
out_close_store:
	free(stem);
	cli_close_store(s);
	return rc;
}

/* ---- pin, unpin ---- */

static int pin_or_unpin(struct cli_globals *g, const struct cli_args *a, bool pin)
{
	struct bri_store *s = NULL;
	struct bri_err err = {0};
	struct bri_op_ctx ctx = bri_op_ctx_self("cli");
	const char *name, *reason = pin ? cli_opt(a, "reason") : NULL;
	int rc = CLI_EXIT_OK, r;

	if (a->npos != 1)
		return cli_usage_error(a->name, "%s takes exactly one backup name", a->name);
	name = a->pos[0];
	if (cli_check_name(a->name, name))
		return CLI_EXIT_USAGE;
	cli_setup_logging(g);
	rc = cli_open_store(g, false, &s);
	if (rc)
		return rc;
	if (!s) {
		cli_error("%s: no backup named %s (there is no store yet)", a->name, name);
		return CLI_EXIT_FAIL;
	}
	r = pin ? bri_pin(s, name, reason, bri_testpoint_now(), &ctx, &err)
	        : bri_unpin(s, name, &ctx, &err);
	if (r < 0)
		rc = cli_fail(a->name, &err, r);
	else
		printf("%s %s\n", pin ? "pinned" : "unpinned", name);
	cli_close_store(s);
	return rc;
}

int cli_cmd_pin(struct cli_globals *g, const struct cli_args *a)
{
	return pin_or_unpin(g, a, true);
}

int cli_cmd_unpin(struct cli_globals *g, const struct cli_args *a)
{
	return pin_or_unpin(g, a, false);
}
