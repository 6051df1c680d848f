/*
 * The commands of bri-backup that check or use backups: verify, restore and
 * rehearse (SPEC.md section 3). Targets are resolved by the core
 * (bri_target_resolve), the same rules as the mount and Python.
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bri/catalog.h"
#include "bri/rehearse.h"
#include "bri/offsite.h"
#include "bri/restore.h"
#include "bri/store.h"
#include "bri/target.h"
#include "bri/testpoint.h"
#include "bri/verify.h"
#include "cli.h"

/* ---- verify ---- */

int cli_cmd_verify(struct cli_globals *g, const struct cli_args *a)
{
	struct bri_store *s = NULL;
	struct bri_catalog *c = NULL;
	json_object *arr = NULL;
	char **names = NULL, **paths = NULL, **metas = NULL;
	size_t n = 0, i, failed = 0, skipped = 0;
	int rc, r;

	cli_setup_logging(g);
	rc = cli_open_store(g, false, &s);
	if (rc)
		return rc;

	/* Resolve every argument first: a bad one verifies nothing. */
	if (a->npos > 0) {
		n = (size_t)a->npos;
		names = calloc(n, sizeof(*names));
		paths = calloc(n, sizeof(*paths));
		metas = calloc(n, sizeof(*metas));
		if (!names || !paths || !metas) {
			cli_error("out of memory");
			rc = CLI_EXIT_FAIL;
			goto out_free_targets;
		}
		for (i = 0; i < n; i++) {
			struct bri_target t;

			rc = cli_resolve_target(s, a->name, a->pos[i], &t);
			if (rc)
				goto out_free_targets;
			/* A backup by name, or a file (with the metadata beside it). */
			if (t.kind == BRI_TARGET_FILE) {
				paths[i] = t.path;
				metas[i] = t.meta_path;
			} else {
				names[i] = strdup(t.name);
				if (!names[i]) {
					cli_error("out of memory");
					rc = CLI_EXIT_FAIL;
					goto out_free_targets;
				}
			}
		}
	} else {
		rc = cli_get_catalog(s, &c);
		if (rc)
			goto out_free_targets;
		/* The backups, then the unknown .db files: reported failed, never opened. */
		n = c->n + c->nunknown;
		names = calloc(n ? n : 1, sizeof(*names));
		paths = calloc(n ? n : 1, sizeof(*paths));
		metas = calloc(n ? n : 1, sizeof(*metas));
		if (!names || !paths || !metas) {
			cli_error("out of memory");
			rc = CLI_EXIT_FAIL;
			goto out_free_targets;
		}
		for (i = 0; i < n; i++) {
			names[i] =
			    strdup(i < c->n ? c->entries[i]->name : c->unknown[i - c->n]->name);
			if (!names[i]) {
				cli_error("out of memory");
				rc = CLI_EXIT_FAIL;
				goto out_free_targets;
			}
		}
		if (n == 0 && !g->json)
			printf("No backups to verify.\n");
		bri_testpoint("verify_all_listed");
	}

	if (g->json)
		arr = json_object_new_array();
	cli_hook_note(g, n == 1 && names[0] ? names[0] : NULL);
	for (i = 0; i < n; i++) {
		struct bri_verify_result res = {0};
		struct bri_err err = {0};
		/* A path is shown as the user wrote it. */
		const char *label = paths[i] ? a->pos[i] : names[i];
		char *where = NULL;

		if (paths[i]) {
			struct bri_target t = {
			    .kind = BRI_TARGET_FILE, .path = paths[i], .meta_path = metas[i]};
			const char *base = strrchr(paths[i], '/');
			struct bri_op_ctx ctx = cli_progress_ctx(base ? base + 1 : paths[i]);

			r = bri_target_verify(s, &t, &ctx, &res, &err);
			cli_progress_done();
		} else if (!s) {
			r = -ENOENT;
			snprintf(err.msg, sizeof(err.msg), "no backup named %s (the store %s)",
			         names[i], "does not exist");
		} else {
			struct bri_op_ctx ctx = cli_progress_ctx(names[i]);

			r = bri_verify_backup(s, names[i], &ctx, &res, &err);
			cli_progress_done();
			if (r == -ENOENT && !err.msg[0])
				snprintf(err.msg, sizeof(err.msg), "no backup named %s", names[i]);
		}
		/*
		 * Verifying all: a backup removed (a cleanup, a delete) or replaced
		 * since the listing is no failure; it is skipped with a note.
		 */
		if (c && (r == -ENOENT || r == -ESTALE)) {
			skipped++;
			if (!g->json)
				printf("%s: skipped: %s\n", label,
				       r == -ENOENT ? "removed since the listing"
				                    : "replaced while it was verified");
			if (arr) {
				json_object *o = json_object_new_object();

				json_object_object_add(o, "name", cli_json_str(names[i]));
				json_object_object_add(o, "status", cli_json_str("skipped"));
				json_object_object_add(o, "reason", cli_json_str(err.msg));
				json_object_array_add(arr, o);
			}
			continue;
		}
		if (r < 0) {
			failed++;
			cli_fail(label, &err, r);
			if (arr) {
				json_object *o = json_object_new_object();

				json_object_object_add(o, "name", cli_json_str(names[i]));
				json_object_object_add(o, "path", cli_json_str(paths[i]));
				json_object_object_add(o, "status", cli_json_str("error"));
				json_object_object_add(
				    o, "reason", cli_json_str(err.msg[0] ? err.msg : strerror(-r)));
				json_object_array_add(arr, o);
			}
			continue;
		}
		if (res.status != BRI_VERIFY_OK && !failed++)
			snprintf(g->hook_reason, sizeof(g->hook_reason), "%s: %s: %s", label,
			         bri_verify_status_name(res.status), res.reason);
		if (arr) {
			where = paths[i] ? strdup(paths[i]) : bri_store_backup_path(s, names[i]);
			json_object_array_add(arr, cli_verify_json(names[i], where, &res));
			free(where);
		} else if (res.status == BRI_VERIFY_OK) {
			printf("%s: ok (%s, %.1f s)\n", label, res.check[0] ? res.check : "checked",
			       res.duration_s);
		} else {
			printf("%s: %s: %s\n", label, bri_verify_status_name(res.status),
			       res.reason);
		}
		fflush(stdout);
	}
	if (arr)
		cli_print_json(arr);
	else if (n > 1 && skipped)
		printf("%zu verified: %zu ok, %zu failed, %zu skipped (gone)\n", n - skipped,
		       n - skipped - failed, failed, skipped);
	else if (n > 1)
		printf("%zu verified: %zu ok, %zu failed\n", n, n - failed, failed);
	rc = failed ? CLI_EXIT_FAIL : CLI_EXIT_OK;
out_free_targets:
	for (i = 0; names && paths && metas && i < n; i++) {
		free(names[i]);
		free(paths[i]);
		free(metas[i]);
	}
	free(names);
	free(paths);
	free(metas);
	cli_put_catalog(c);
	cli_close_store(s);
	return rc;
}

/* ---- restore ---- */

int cli_cmd_restore(struct cli_globals *g, const struct cli_args *a)
{
	struct bri_restore_opts opts = {.verify = !cli_flag(a, "no-verify")};
	struct bri_restore_report report;
	struct bri_op_ctx ctx;
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char *name = NULL, *path = NULL, *fetch_dir = NULL;
	const char *what = NULL;
	int r, rc = CLI_EXIT_OK;

	if (a->npos > 1)
		return cli_usage_error(a->name, "restore takes one backup, not %d", a->npos);
	if (cli_opt(a, "remote-key-file") && (a->npos < 1 || strncmp(a->pos[0], "s3://", 5) != 0))
		return cli_usage_error(a->name, "--remote-key-file is for restore s3://...");
	cli_setup_logging(g);
	rc = cli_open_store(g, true, &s);
	if (rc)
		return rc;
	if (a->npos > 0 && strncmp(a->pos[0], "s3://", 5) == 0) {
		/* An offsite backup: downloaded and checked first (offsite.c). */
		rc = cli_offsite_fetch(a->pos[0], s, cli_opt(a, "remote-key-file"), &fetch_dir,
		                       &path);
		if (rc)
			goto out_close_store;
	} else if (a->npos > 0) {
		struct bri_target t;

		rc = cli_resolve_target(s, a->name, a->pos[0], &t);
		if (rc)
			goto out_close_store;
		if (t.kind == BRI_TARGET_FILE) {
			path = t.path;
			t.path = NULL;
		} else {
			name = strdup(t.name);
		}
		bri_target_free(&t);
		if (!name && !path) {
			cli_error("out of memory");
			rc = CLI_EXIT_FAIL;
			goto out_close_store;
		}
	} else {
		rc = cli_newest_name(s, &name);
		if (rc)
			goto out_close_store;
	}
	what = name ? name : path;

	memset(&report, 0, sizeof(report));
	ctx = cli_progress_ctx(name ? name : "restore");
	cli_hook_note(g, name);
	r = bri_restore(s, what, &opts, &ctx, &report, &err);
	cli_progress_done();
	if (r < 0) {
		rc = cli_fail("restore", &err, r);
		if (report.message[0] && strcmp(report.message, err.msg) != 0)
			fprintf(stderr, "%s\n", report.message);
		if (report.safety_name[0])
			fprintf(stderr,
			        "The live data before the restore is in the safety backup %s.\n",
			        report.safety_name);
		goto out_free_target;
	}
	if (g->json) {
		json_object *o = json_object_new_object();

		json_object_object_add(o, "source",
		                       cli_json_str(fetch_dir ? a->pos[0] : report.source));
		json_object_object_add(o, "database", cli_json_str(s->db_path));
		json_object_object_add(o, "verified", json_object_new_boolean(report.verified));
		json_object_object_add(
		    o, "verify",
		    report.verified ? cli_json_str(bri_verify_status_name(report.check.status))
		                    : NULL);
		json_object_object_add(o, "safety_backup",
		                       report.safety_name[0] ? cli_json_str(report.safety_name)
		                                             : NULL);
		json_object_object_add(o, "result", cli_json_str("restored"));
		json_object_object_add(o, "duration_s", json_object_new_double(report.duration_s));
		cli_print_json(o);
	} else {
		printf("restored %s into %s\n",
		       fetch_dir ? a->pos[0] : report.source[0] ? report.source : "the backup",
		       s->db_path);
		if (report.safety_name[0])
			printf("safety backup of the previous content: %s\n", report.safety_name);
		if (!report.verified)
			printf("the backup was not verified (--no-verify)\n");
	}
out_free_target:
	free(name);
	free(path);
out_close_store:
	if (fetch_dir) {
		bri_offsite_tmpdir_remove(fetch_dir);
		free(fetch_dir);
	}
	cli_close_store(s);
	return rc;
}

/* ---- rehearse ---- */

int cli_cmd_rehearse(struct cli_globals *g, const struct cli_args *a)
{
	struct bri_rehearse_report rep;
	struct bri_store *s = NULL;
	struct bri_target t = {0};
	struct bri_err err = {0};
	struct bri_op_ctx ctx;
	const char *checks = cli_opt(a, "checks"), *scratch = cli_opt(a, "scratch");
	const char *arg = a->npos > 0 ? a->pos[0] : NULL;
	char *name = NULL;
	int rc = CLI_EXIT_OK, r;

	if (a->npos > 1)
		return cli_usage_error(a->name, "rehearse takes at most one backup name");
	if (arg && strcmp(arg, BRI_TARGET_LATEST) && cli_check_name(a->name, arg))
		return CLI_EXIT_USAGE;
	cli_setup_logging(g);
	rc = cli_open_store(g, false, &s);
	if (rc)
		return rc;
	if (!s) {
		cli_error("rehearse: there is no store yet, so no backup to rehearse");
		return CLI_EXIT_FAIL;
	}
	if (arg && strcmp(arg, BRI_TARGET_LATEST)) {
		r = bri_target_resolve(s, NULL, arg, BRI_TARGET_NAMES_ONLY, &t, &err);
		if (r < 0) {
			rc = cli_fail("rehearse", &err, r);
			goto out_close_store;
		}
		name = strdup(t.name);
		bri_target_free(&t);
		if (!name) {
			cli_error("out of memory");
			rc = CLI_EXIT_FAIL;
			goto out_close_store;
		}
	} else {
		rc = cli_newest_name(s, &name);
		if (rc)
			goto out_close_store;
	}
	cli_hook_note(g, name);
	ctx = cli_progress_ctx(name);
	r = bri_rehearse(s, name, checks, scratch, &ctx, &rep, &err);
	cli_progress_done();
	if (g->json) {
		json_object *o = json_object_new_object(), *arr = json_object_new_array();

		json_object_object_add(o, "name", cli_json_str(name));
		json_object_object_add(o, "ok", json_object_new_boolean(r == 0));
		json_object_object_add(o, "message", cli_json_str(rep.message));
		json_object_object_add(o, "verify",
		                       cli_json_str(bri_verify_status_name(rep.verify.status)));
		json_object_object_add(o, "verify_s", json_object_new_double(rep.verify_s));
		json_object_object_add(o, "restored", json_object_new_boolean(rep.restored));
		json_object_object_add(o, "restore_s", json_object_new_double(rep.restore_s));
		for (size_t i = 0; i < rep.nchecks; i++) {
			const struct bri_rehearse_check *c = &rep.checks[i];
			json_object *x = json_object_new_object();

			json_object_object_add(x, "sql", cli_json_str(c->sql));
			json_object_object_add(x, "expect",
			                       c->expect[0] ? cli_json_str(c->expect) : NULL);
			json_object_object_add(x, "got", c->error[0] ? NULL : cli_json_str(c->got));
			json_object_object_add(x, "error",
			                       c->error[0] ? cli_json_str(c->error) : NULL);
			json_object_object_add(x, "ok", json_object_new_boolean(c->ok));
			json_object_object_add(x, "duration_s",
			                       json_object_new_double(c->duration_s));
			json_object_array_add(arr, x);
		}
		json_object_object_add(o, "checks", arr);
		cli_print_json(o);
	} else {
		printf("rehearsal of %s: %s\n", name, r == 0 ? "ok" : "FAILED");
		printf("verify: %s (%.2f s)\n", bri_verify_status_name(rep.verify.status),
		       rep.verify_s);
		if (rep.restored)
			printf("restore: ok, quick_check ok (%.2f s)\n", rep.restore_s);
		for (size_t i = 0; i < rep.nchecks; i++) {
			const struct bri_rehearse_check *c = &rep.checks[i];

			if (c->error[0])
				printf("check %zu: FAILED: %s -> error: %s\n", i + 1, c->sql,
				       c->error);
			else
				printf("check %zu: %s: %s -> %s%s%s (%.3f s)\n", i + 1,
				       c->ok ? "ok" : "FAILED", c->sql, c->got,
				       c->expect[0] ? ", expected " : "", c->expect, c->duration_s);
		}
	}
	if (r < 0)
		rc = cli_fail("rehearse", &err, r);
	bri_rehearse_report_free(&rep);
out_close_store:
	free(name);
	cli_close_store(s);
	return rc;
}
