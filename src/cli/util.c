/*
 * What the commands of bri-backup share: printing a failure with a hint,
 * checking a backup name, opening the store and its catalog, resolving a
 * target through the core, the JSON printing helpers, and the cleanup run
 * that both cleanup and create --cleanup do. No command lives here.
 */
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bri/catalog.h"
#include "bri/cleanup.h"
#include "bri/retention.h"
#include "bri/store.h"
#include "bri/target.h"
#include "bri/testpoint.h"
#include "bri/verify.h"
#include "cli.h"

/* The operation of this command runs now, about backup name (may be NULL). */
void cli_hook_note(struct cli_globals *g, const char *name)
{
	g->hook_ran = true;
	snprintf(g->hook_name, sizeof(g->hook_name), "%s", name ? name : "");
}

/* Prints "bri-backup: <what>: <err>" and a hint; returns CLI_EXIT_FAIL. */
int cli_fail(const char *what, const struct bri_err *err, int code)
{
	char text[sizeof(err->msg) + 128];

	bri_err_text(err, code, text, sizeof(text));
	cli_progress_done();
	cli_error("%s: %s", what, text);
	return CLI_EXIT_FAIL;
}

/*
 * A refused name as it may be shown on a terminal: control characters as
 * '?', cut after 64 bytes (a name can be an attacker's escape sequence).
 */
static void printable_name(const char *name, char out[72])
{
	size_t i;

	for (i = 0; i < 64 && name[i]; i++)
		out[i] = ((unsigned char)name[i] < 0x20 || name[i] == 0x7f) ? '?' : name[i];
	strcpy(out + i, name[i] ? "..." : "");
}

/* Checks a backup name given by the user; returns 0 or CLI_EXIT_USAGE (message printed). */
int cli_check_name(const char *command, const char *name)
{
	struct bri_err err = {0};
	char shown[72];

	if (bri_store_check_name(name, strlen(name), &err) == 0)
		return 0;
	printable_name(name, shown);
	return cli_usage_error(command, "invalid backup name '%s': %s", shown,
	                       err.msg[0] ? err.msg
	                                  : "names are [A-Za-z0-9][A-Za-z0-9._-]*, at most "
	                                    "128 bytes, not ctl, restore or latest");
}

/*
 * Opens the store of g. With create false a missing store is not an error:
 * *out is then NULL and 0 is returned. Else returns 0 or CLI_EXIT_FAIL
 * (message printed).
 */
int cli_open_store(const struct cli_globals *g, bool create, struct bri_store **out)
{
	struct bri_store_open_opts o = {
	    .create = create,
	    .follow_symlink = g->follow_symlink,
	    .force = g->force,
	    .key_file = g->key_file,
	};
	struct bri_err err = {0};
	int r;

	*out = NULL;
	r = bri_store_open_ex(g->db, g->backup_dir, &o, out, &err);
	if (r == -ENOENT && !create) {
		*out = NULL;
		return 0;
	}
	if (r < 0)
		return cli_fail(r == -ELOOP ? "refused" : "cannot open the backup store", &err, r);
	return 0;
}

void cli_close_store(struct bri_store *s)
{
	if (s)
		bri_store_close(s);
}

/* An empty catalog, for a store that does not exist yet. */
static struct bri_catalog empty_catalog;

/* The catalog of s (the empty one when s is NULL); free with put_catalog. */
int cli_get_catalog(const struct bri_store *s, struct bri_catalog **out)
{
	struct bri_err err = {0};
	int r;

	if (!s) {
		*out = &empty_catalog;
		return 0;
	}
	r = bri_catalog_scan(s, NULL, out, &err);
	if (r < 0)
		return cli_fail("cannot read the backup store", &err, r);
	return 0;
}

void cli_put_catalog(struct bri_catalog *c)
{
	if (c && c != &empty_catalog)
		bri_catalog_free(c);
}

/*
 * For the commands that read the store: refuses extra arguments, sets up
 * logging, opens the store and its catalog (both NULL-safe to put back).
 * Returns 0, CLI_EXIT_USAGE or CLI_EXIT_FAIL (message printed).
 */
int cli_open_catalog(struct cli_globals *g, const struct cli_args *a, struct bri_store **s,
                     struct bri_catalog **c)
{
	int rc;

	*s = NULL;
	*c = NULL;
	if (a->npos > 0) {
		cli_usage_error(a->name, "unexpected argument '%s'", a->pos[0]);
		return CLI_EXIT_USAGE;
	}
	cli_setup_logging(g);
	rc = cli_open_store(g, false, s);
	if (rc)
		return rc;
	rc = cli_get_catalog(*s, c);
	if (rc)
		cli_close_store(*s);
	return rc;
}

/*
 * What the user means by arg of verify or restore, decided by the core
 * (bri_target_resolve: a name, "latest", "NAME.db", a path into the store,
 * a .db anywhere with its .db.meta, a copy of the mount's NAME/bri.db with
 * meta.json). Fills *t; returns 0, CLI_EXIT_FAIL or CLI_EXIT_USAGE (an
 * invalid name; message printed).
 */
int cli_resolve_target(const struct bri_store *s, const char *command, const char *arg,
                       struct bri_target *t)
{
	struct bri_err err = {0};
	int r;

	r = bri_target_resolve(s, NULL, arg, 0, t, &err);
	if (r == 0)
		return 0;
	if (r == -EINVAL || r == -ENAMETOOLONG) {
		if (!strchr(arg, '/') && cli_check_name(command, arg))
			return CLI_EXIT_USAGE;
	}
	/* A name that is no backup is a failed verification / restore, as before. */
	if (r == -ENOENT && !strchr(arg, '/') && strcmp(arg, BRI_TARGET_LATEST) &&
	    bri_store_check_name(arg, strlen(arg), NULL) == 0) {
		memset(t, 0, sizeof(*t));
		t->kind = BRI_TARGET_BACKUP;
		snprintf(t->name, sizeof(t->name), "%s", arg);
		return 0;
	}
	cli_error("%s: %s", command, err.msg[0] ? err.msg : strerror(-r));
	return CLI_EXIT_FAIL;
}

/* Rounds to two decimals, as the seed's size_mb. */
double cli_mb2(int64_t bytes)
{
	return round((double)bytes / (1024.0 * 1024.0) * 100.0) / 100.0;
}

json_object *cli_json_str(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

/* Prints a JSON value (pretty) and a newline on stdout, then frees it. */
void cli_print_json(json_object *o)
{
	puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
	                                           JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

/*
 * A verification result as JSON: the core's one rendering
 * (bri_verify_result_to_json), the same object Python and the store see.
 * NULL when out of memory.
 */
json_object *cli_verify_json(const char *name, const char *path, const struct bri_verify_result *r)
{
	json_object *o = NULL;
	char *text = NULL;
	size_t len = 0;

	if (bri_verify_result_to_json(name, path, r, &text, &len) == 0)
		o = json_tokener_parse(text);
	free(text);
	return o;
}

/*
 * The name of the backup a restore without argument takes (the newest that
 * is not a safety backup, as the core chooses), so that the output names it.
 * Returns 0 and *out (malloc'd), or CLI_EXIT_FAIL (message printed).
 */
int cli_newest_name(const struct bri_store *s, char **out)
{
	struct bri_catalog *c = NULL;
	struct bri_entry *e;
	int rc;

	rc = cli_get_catalog(s, &c);
	if (rc)
		return rc;
	e = bri_catalog_newest(c);
	if (!e) {
		cli_error("restore: there are no backups in %s to restore", s->dir);
		cli_put_catalog(c);
		return CLI_EXIT_FAIL;
	}
	*out = strdup(e->name);
	cli_put_catalog(c);
	if (!*out) {
		cli_error("out of memory");
		return CLI_EXIT_FAIL;
	}
	return 0;
}

int cli_run_cleanup(struct bri_store *s, const struct cli_globals *g, bool dry_run, FILE *f,
                    json_object **out)
{
	struct bri_retention_rules rules = cli_rules(g);
	struct bri_cleanup_item *items = NULL;
	struct bri_op_ctx ctx = bri_op_ctx_self("cli");
	struct bri_err err = {0};
	json_object *removed = NULL, *kept = NULL;
	char described[256];
	size_t n = 0, i;
	int r;

	r = bri_cleanup(s, &rules, bri_testpoint_now(), dry_run, &ctx, &items, &n, &err);
	if (r < 0)
		return cli_fail("cleanup", &err, r);
	if (out) {
		removed = json_object_new_array();
		kept = json_object_new_array();
	}
	for (i = 0; i < n; i++) {
		char when[40], rule[64];
		const char *why = bri_retention_reason(items[i].verdict);
		bool goes = bri_retention_removes(items[i].verdict);

		bri_time_local(items[i].time, when, sizeof(when));
		bri_retention_label(items[i].verdict, items[i].time, rule, sizeof(rule));
		if (out) {
			json_object *o = json_object_new_object();

			json_object_object_add(o, "name", cli_json_str(items[i].name));
			json_object_object_add(o, "backup_time", cli_json_str(when));
			json_object_object_add(o, "rule", cli_json_str(rule));
			json_object_object_add(o, "reason", cli_json_str(why));
			json_object_array_add(goes ? removed : kept, o);
		} else if (goes) {
			fprintf(f, "%s %s (%s, %s: %s)\n", dry_run ? "would remove" : "removed",
			        items[i].name, when, rule, why);
		} else if (dry_run) {
			fprintf(f, "keep %s (%s, %s: %s)\n", items[i].name, when, rule, why);
		}
	}
	if (out) {
		*out = json_object_new_object();
		json_object_object_add(*out, "dry_run", json_object_new_boolean(dry_run));
		json_object_object_add(*out, "removed", removed);
		json_object_object_add(*out, "kept", kept);
	} else {
		fprintf(f, "%d of %zu backups %s (%s)\n", r, n,
		        dry_run ? "would be removed" : "removed",
		        bri_retention_describe(&rules, described, sizeof(described)));
	}
	free(items);
	return CLI_EXIT_OK;
}
