/*
 * `bri-backup offsite init|push|list|verify|pull|prune` and the s3:// form
 * of `restore` (SPEC.md section 6): the command line over the core's
 * offsite module (include/bri/offsite.h). Where the remote is comes from
 * --remote / --endpoint / --addressing, else $BRI_OFFSITE,
 * $BRI_OFFSITE_ADDRESSING and the aws CLI's variables and files;
 * credentials only from the environment or ~/.aws, never from argv.
 */
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bri/offsite.h"
#include "bri/restore.h"
#include "bri/store.h"
#include "bri/testpoint.h"
#include "cli.h"

struct offsite_args {
	struct bri_offsite_opts o;
	bool lock, read_data, dry_run;
	int sample_pct;
	int remote_retention_days; /* -1: not given */
};

static int parse_int(const char *opt, const char *arg, int min, int max, int *out)
{
	char *end = NULL;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || end == arg || (*end && strcmp(end, "%") != 0) || v < min || v > max)
		return cli_usage_error("offsite", "%s takes a number from %d to %d, not %s", opt,
		                       min, max, arg);
	*out = (int)v;
	return 0;
}

/* The offsite options of the parsed line. -1 to go on, else an exit status. */
static int parse(const struct cli_args *ca, struct offsite_args *a)
{
	const char *v;

	memset(a, 0, sizeof(*a));
	a->sample_pct = 100;
	a->remote_retention_days = -1;
	a->o.remote = cli_opt(ca, "remote");
	a->o.endpoint = cli_opt(ca, "endpoint");
	a->o.addressing = cli_opt(ca, "addressing");
	if (!a->o.addressing)
		a->o.addressing = getenv("BRI_OFFSITE_ADDRESSING");
	a->lock = cli_flag(ca, "lock");
	a->read_data = cli_flag(ca, "read-data");
	a->dry_run = cli_flag(ca, "dry-run");
	v = cli_opt(ca, "lock-days");
	if (v && parse_int("--lock-days", v, 1, 36500, &a->o.lock_days))
		return CLI_EXIT_USAGE;
	v = cli_opt(ca, "sample");
	if (v) {
		if (parse_int("--sample", v, 1, 100, &a->sample_pct))
			return CLI_EXIT_USAGE;
		a->read_data = true;
	}
	v = cli_opt(ca, "remote-retention-days");
	if (v && parse_int("--remote-retention-days", v, 0, 1000000, &a->remote_retention_days))
		return CLI_EXIT_USAGE;
	return -1;
}

static int open_remote(const struct offsite_args *a, struct bri_offsite **r)
{
	struct bri_err err = {0};

	if (bri_offsite_open(&a->o, r, &err) < 0) {
		cli_error("offsite: %s", err.msg);
		return err.code == -EINVAL && !a->o.remote && !getenv("BRI_OFFSITE")
		           ? CLI_EXIT_USAGE
		           : CLI_EXIT_FAIL;
	}
	return 0;
}

static int open_local(const struct cli_globals *g, bool create, struct bri_store **s)
{
	struct bri_store_open_opts o = {.create = create,
	                                .follow_symlink = g->follow_symlink,
	                                .force = g->force,
	                                .key_file = g->key_file};
	struct bri_err err = {0};

	if (bri_store_open_ex(g->db, g->backup_dir, &o, s, &err) < 0) {
		cli_error("offsite: cannot open the backup store: %s", err.msg);
		return CLI_EXIT_FAIL;
	}
	return 0;
}

static void print_json(json_object *o)
{
	cli_print_json(o);
}

static int do_push(struct cli_globals *g, struct offsite_args *a, struct bri_offsite *r,
                   const char *name)
{
	struct bri_offsite_push_result res = {0};
	struct bri_op_ctx ctx = bri_op_ctx_self("cli");
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	int rc;

	(void)a;
	rc = open_local(g, false, &s);
	if (rc)
		return rc;
	if (name)
		rc = bri_offsite_push_one(s, r, name, &ctx, &res, &err);
	else
		rc = bri_offsite_push(s, r, &ctx, &res, &err);
	bri_store_close(s);
	if (g->json) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "remote", json_object_new_string(bri_offsite_url(r)));
		json_object_object_add(o, "pushed", json_object_new_int((int)res.pushed));
		json_object_object_add(o, "present", json_object_new_int((int)res.present));
		json_object_object_add(o, "failed", json_object_new_int((int)res.failed));
		json_object_object_add(o, "objects", json_object_new_int((int)res.objects));
		json_object_object_add(o, "bytes", json_object_new_int64((int64_t)res.bytes));
		if (rc < 0)
			json_object_object_add(o, "error", json_object_new_string(err.msg));
		print_json(o);
	} else {
		printf(
		    "%s: %u pushed, %u already there, %u failed; %u objects, %llu bytes uploaded\n",
		    bri_offsite_url(r), res.pushed, res.present, res.failed, res.objects,
		    (unsigned long long)res.bytes);
	}
	if (rc < 0) {
		cli_error("offsite push: %s", err.msg);
		return CLI_EXIT_FAIL;
	}
	return CLI_EXIT_OK;
}

static int do_list(struct cli_globals *g, struct bri_offsite *r)
{
	struct bri_offsite_backup *b = NULL;
	struct bri_err err = {0};
	json_object *arr = NULL;
	size_t n = 0;

	if (bri_offsite_list(r, &b, &n, &err) < 0) {
		cli_error("offsite list: %s", err.msg);
		return CLI_EXIT_FAIL;
	}
	if (g->json)
		arr = json_object_new_array();
	for (size_t i = 0; i < n; i++) {
		if (arr) {
			json_object *o = json_object_new_object();
			json_object_object_add(o, "name", json_object_new_string(b[i].name));
			json_object_object_add(o, "backup_time",
			                       json_object_new_string(b[i].backup_time));
			json_object_object_add(o, "kind", json_object_new_string(b[i].kind));
			json_object_object_add(o, "size_bytes",
			                       json_object_new_int64((int64_t)b[i].size));
			json_object_object_add(o, "checksum",
			                       json_object_new_string(b[i].checksum));
			json_object_object_add(
			    o, "format", json_object_new_string(b[i].pages ? "pages" : "plain"));
			json_object_object_add(o, "complete",
			                       json_object_new_boolean(b[i].data_present));
			json_object_array_add(arr, o);
		} else {
			printf("%-40s %s  %12llu bytes  %-6s %s%s\n", b[i].name, b[i].backup_time,
			       (unsigned long long)b[i].size, b[i].kind,
			       b[i].pages ? "pages" : "plain",
			       b[i].data_present ? "" : "  (data missing)");
		}
	}
	if (arr)
		print_json(arr);
	else if (!n)
		printf("no backups on %s\n", bri_offsite_url(r));
	free(b);
	return CLI_EXIT_OK;
}

static int do_verify(struct cli_globals *g, struct offsite_args *a, struct bri_offsite *r, int argc,
                     char **argv)
{
	struct bri_offsite_check *c = NULL;
	struct bri_err err = {0};
	json_object *arr = NULL;
	size_t n = 0;
	int rc;

	rc = bri_offsite_verify(r, (const char *const *)argv, (size_t)argc, a->read_data,
	                        a->sample_pct, &c, &n, &err);
	if (rc < 0) {
		cli_error("offsite verify: %s", err.msg);
		return CLI_EXIT_FAIL;
	}
	if (g->json)
		arr = json_object_new_array();
	for (size_t i = 0; i < n; i++) {
		if (arr) {
			json_object *o = json_object_new_object();
			json_object_object_add(o, "name", json_object_new_string(c[i].name));
			json_object_object_add(o, "status",
			                       json_object_new_string(c[i].ok ? "ok" : "failed"));
			json_object_object_add(o, "read_data",
			                       json_object_new_boolean(c[i].read_data));
			json_object_object_add(o, "detail", json_object_new_string(c[i].detail));
			json_object_array_add(arr, o);
		} else {
			printf("%s: %s%s\n", c[i].name, c[i].ok ? "" : "FAILED: ", c[i].detail);
		}
	}
	if (arr)
		print_json(arr);
	free(c);
	return rc ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}

static int do_pull(struct cli_globals *g, struct bri_offsite *r, const char *name)
{
	struct bri_op_ctx ctx = bri_op_ctx_self("cli");
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	int rc;

	rc = open_local(g, true, &s);
	if (rc)
		return rc;
	rc = bri_offsite_pull(s, r, name, &ctx, &err);
	if (rc == 0)
		printf("pulled %s from %s into %s\n", name, bri_offsite_url(r), s->dir);
	bri_store_close(s);
	if (rc < 0) {
		cli_error("offsite pull: %s", err.msg);
		return CLI_EXIT_FAIL;
	}
	return CLI_EXIT_OK;
}

static int do_prune(struct cli_globals *g, struct offsite_args *a, struct bri_offsite *r)
{
	struct bri_retention_rules rules = cli_rules(g);
	struct bri_offsite_prune_item *items = NULL;
	struct bri_err err = {0};
	json_object *arr = NULL;
	unsigned aborted = 0, packs = 0;
	size_t n = 0;

	if (a->remote_retention_days >= 0)
		rules.retention_days = a->remote_retention_days;
	if (bri_offsite_prune(r, &rules, bri_testpoint_now(), a->dry_run, &items, &n, &aborted,
	                      &packs, &err) < 0) {
		cli_error("offsite prune: %s", err.msg);
		return CLI_EXIT_FAIL;
	}
	if (g->json)
		arr = json_object_new_array();
	for (size_t i = 0; i < n; i++) {
		bool removes = bri_retention_removes(items[i].verdict);
		if (arr) {
			json_object *o = json_object_new_object();
			json_object_object_add(o, "name", json_object_new_string(items[i].name));
			json_object_object_add(o, "remove", json_object_new_boolean(removes));
			json_object_object_add(o, "removed",
			                       json_object_new_boolean(items[i].removed));
			json_object_object_add(o, "detail",
			                       json_object_new_string(items[i].detail));
			json_object_array_add(arr, o);
		} else if (removes) {
			printf("%s %s (%s)\n",
			       a->dry_run         ? "would remove"
			       : items[i].removed ? "removed"
			                          : "kept",
			       items[i].name, items[i].detail);
		}
	}
	if (arr) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "backups", arr);
		json_object_object_add(o, "aborted_uploads", json_object_new_int((int)aborted));
		json_object_object_add(o, "removed_packs", json_object_new_int((int)packs));
		print_json(o);
	} else {
		if (aborted)
			printf("%s %u stale multipart upload(s)\n",
			       a->dry_run ? "would abort" : "aborted", aborted);
		if (packs)
			printf("%s %u pack(s) no remaining backup uses\n",
			       a->dry_run ? "would remove" : "removed", packs);
	}
	free(items);
	return CLI_EXIT_OK;
}

struct status_arg {
	const struct bri_store *s;
	json_object *arr;
};

static int status_one(void *arg, const char *name, const struct stat *st)
{
	struct status_arg *a = arg;
	struct bri_offsite_state state;
	char text[600];

	(void)st;
	if (bri_offsite_state_read(a->s, name, &state) < 0)
		state.status = BRI_OFFSITE_NONE;
	bri_offsite_state_text(&state, text, sizeof(text));
	if (a->arr) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "name", json_object_new_string(name));
		json_object_object_add(o, "offsite", json_object_new_string(text));
		json_object_object_add(o, "remote", json_object_new_string(state.remote));
		json_object_array_add(a->arr, o);
	} else {
		printf("%-40s %s%s%s\n", name, text[0] ? text : "not pushed",
		       state.remote[0] ? "  " : "", state.remote);
	}
	return 0;
}

/* offsite status: the push states in the store, and the lag (no network). */
static int do_status(struct cli_globals *g, const struct offsite_args *a)
{
	const char *env = getenv("BRI_OFFSITE");
	const char *given = a->o.remote ? a->o.remote : env;
	struct status_arg sa = {0};
	struct bri_offsite_lag lag = {0};
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char remote[600];
	size_t n;
	int rc;

	if (!given || strncmp(given, "s3://", 5) != 0)
		return cli_usage_error("offsite", "status needs --remote s3://BUCKET/PREFIX "
		                                  "(or BRI_OFFSITE)");
	snprintf(remote, sizeof(remote), "%s", given);
	n = strlen(remote);
	while (n > 5 && remote[n - 1] == '/')
		remote[--n] = '\0';
	rc = open_local(g, false, &s);
	if (rc)
		return rc;
	sa.s = s;
	if (g->json)
		sa.arr = json_object_new_array();
	rc = bri_store_list(s, status_one, &sa, &err);
	if (rc == 0)
		rc = bri_offsite_lag(s, remote, bri_testpoint_now(), &lag, &err);
	bri_store_close(s);
	if (rc < 0) {
		json_object_put(sa.arr);
		cli_error("offsite status: %s", err.msg);
		return CLI_EXIT_FAIL;
	}
	if (sa.arr) {
		json_object *o = json_object_new_object();
		json_object_object_add(o, "remote", json_object_new_string(remote));
		json_object_object_add(o, "backups", json_object_new_int((int)lag.backups));
		json_object_object_add(o, "uploaded", json_object_new_int((int)lag.uploaded));
		json_object_object_add(o, "pending", json_object_new_int((int)lag.pending));
		json_object_object_add(o, "failed", json_object_new_int((int)lag.failed));
		json_object_object_add(o, "lag_seconds", json_object_new_double(lag.lag_s));
		json_object_object_add(o, "last_upload",
		                       json_object_new_int64((int64_t)lag.last_upload));
		json_object_object_add(o, "items", sa.arr);
		print_json(o);
	} else {
		printf("%s: %u of %u backups uploaded, %u pending, %u failed; lag %.0f s\n", remote,
		       lag.uploaded, lag.backups, lag.pending, lag.failed, lag.lag_s);
	}
	return CLI_EXIT_OK;
}

int cli_cmd_offsite(struct cli_globals *g, const struct cli_args *ca)
{
	static const char *const subs[] = {"init", "push",  "list",   "verify",
	                                   "pull", "prune", "status", NULL};
	struct offsite_args a;
	struct bri_offsite *r = NULL;
	const char *sub;
	int rc, npos;
	bool known = false;

	rc = parse(ca, &a);
	if (rc >= 0)
		return rc;
	/* An encrypted store's copy: its metadata is sealed. A copy pushed under
	 * another key (before a re-key) is read with its own. */
	a.o.key_file =
	    cli_opt(ca, "remote-key-file") ? cli_opt(ca, "remote-key-file") : g->key_file;
	if (ca->npos < 1)
		return cli_usage_error(ca->name, "which? init, push, list, verify, pull, prune or "
		                                 "status");
	sub = ca->pos[0];
	npos = ca->npos - 1;
	for (size_t i = 0; subs[i]; i++)
		known = known || !strcmp(sub, subs[i]);
	if (!known)
		return cli_usage_error(ca->name, "unknown subcommand %s", sub);
	if (cli_opt(ca, "remote-key-file") &&
	    (!strcmp(sub, "push") || !strcmp(sub, "init") || !strcmp(sub, "status")))
		return cli_usage_error(ca->name,
		                       "--remote-key-file reads a copy pushed under another key "
		                       "(list, verify, pull, prune); a push goes only to a copy "
		                       "of the store as it is");
	if ((!strcmp(sub, "pull") && npos != 1) ||
	    ((!strcmp(sub, "init") || !strcmp(sub, "list") || !strcmp(sub, "prune") ||
	      !strcmp(sub, "status")) &&
	     npos != 0) ||
	    (!strcmp(sub, "push") && npos > 1))
		return cli_usage_error(ca->name, "wrong number of arguments for offsite %s", sub);
	cli_setup_logging(g);
	if (!strcmp(sub, "status"))
		return do_status(g, &a);
	rc = open_remote(&a, &r);
	if (rc)
		return rc;
	if (!strcmp(sub, "init")) {
		struct bri_err err = {0};
		if (bri_offsite_init(r, a.lock, &err) < 0) {
			cli_error("offsite init: %s", err.msg);
			rc = CLI_EXIT_FAIL;
		} else {
			printf("%s is ready%s\n", bri_offsite_url(r),
			       a.lock ? " (Object Lock enabled)" : "");
		}
	} else if (!strcmp(sub, "push")) {
		rc = do_push(g, &a, r, npos ? ca->pos[1] : NULL);
	} else if (!strcmp(sub, "list")) {
		rc = do_list(g, r);
	} else if (!strcmp(sub, "verify")) {
		rc = do_verify(g, &a, r, npos, ca->pos + 1);
	} else if (!strcmp(sub, "pull")) {
		rc = do_pull(g, r, ca->pos[1]);
	} else {
		rc = do_prune(g, &a, r);
	}
	bri_offsite_close(r);
	return rc;
}

int cli_offsite_fetch(const char *url, struct bri_store *s, const char *remote_key, char **dir,
                      char **path)
{
	struct bri_offsite_opts o = {.addressing = getenv("BRI_OFFSITE_ADDRESSING")};
	struct bri_offsite *r = NULL;
	struct bri_err err = {0};
	const char *slash = strrchr(url, '/');
	char *remote;
	int rc;

	*dir = *path = NULL;
	if (!slash || slash < url + 5 || !slash[1]) {
		cli_error("restore: %s: give s3://BUCKET/PREFIX/NAME", url);
		return CLI_EXIT_USAGE;
	}
	remote = strndup(url, (size_t)(slash - url));
	if (!remote) {
		cli_error("out of memory");
		return CLI_EXIT_FAIL;
	}
	o.remote = remote;
	o.key_file = remote_key ? remote_key : s ? s->key_file : NULL;
	rc = bri_offsite_open(&o, &r, &err);
	if (rc == 0) {
		*dir = bri_offsite_tmpdir(s, &err);
		rc = *dir ? bri_offsite_fetch(r, slash + 1, *dir, path, &err) : -EIO;
	}
	bri_offsite_close(r);
	free(remote);
	if (rc < 0) {
		cli_error("restore: %s", err.msg);
		if (*dir) {
			bri_offsite_tmpdir_remove(*dir);
			free(*dir);
			*dir = NULL;
		}
		return CLI_EXIT_FAIL;
	}
	return 0;
}
