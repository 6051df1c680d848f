/*
 * The inspection commands of bri-backup: `diff OLD NEW` (the summary of
 * `sqldiff --primarykey --summary`, or one table's rows that differ, as CSV)
 * and `export NAME --table T | --schema` (a table as CSV, the schema as
 * SQL). They only present what the core's inspection engine renders
 * (include/bri/inspect.h), the same bytes the mount serves. OLD, NEW and NAME
 * are backup names (or NAME.db), `latest`, or `live` (an online snapshot of
 * the live database, taken into a temporary file in the store and removed
 * after; an old backup called live is reached as live.db).
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bri/catalog.h"
#include "bri/checksum.h"
#include "bri/create.h"
#include "bri/inspect.h"
#include "bri/snapshot.h"
#include "bri/store.h"
#include "bri/target.h"
#include "cli.h"

/* A database given by name, open for reading (any store format). */
struct source {
	struct bri_reader *reader; /* the backup or the snapshot, open */
	char *name;                /* the backup's name, "live" for a snapshot, malloc'd */
	char *tmp_name;            /* the snapshot's temporary file in the store, or NULL */
};

static void source_drop(struct bri_store *s, struct source *src)
{
	if (src->tmp_name)
		bri_inspect_live_drop(s, src->tmp_name, src->reader);
	else
		bri_reader_close(src->reader);
	free(src->name);
	memset(src, 0, sizeof(*src));
}

/*
 * Resolves arg (a backup name, "latest" or "live") and opens it. Returns 0, or
 * CLI_EXIT_USAGE / CLI_EXIT_FAIL with the message printed.
 */
static int resolve(struct bri_store *s, const struct bri_catalog *c, const char *command,
                   const char *arg, struct source *src)
{
	struct bri_err err = {0};
	const struct bri_entry *e;
	int rc;

	memset(src, 0, sizeof(*src));
	if (!strcmp(arg, "live")) {
		src->name = strdup("live");
		rc = bri_inspect_live_take(s, bri_default_busy_timeout_ms(), &src->tmp_name,
		                           &src->reader, &err);
		if (rc < 0) {
			cli_error("%s: %s", command, err.msg);
			return CLI_EXIT_FAIL;
		}
		return 0;
	}
	/* A name, latest or NAME.db: the core's one resolution (bri_target_resolve). */
	struct bri_target t;

	rc = bri_target_resolve(s, c, arg, BRI_TARGET_NAMES_ONLY, &t, &err);
	if (rc == -EINVAL || rc == -ENAMETOOLONG)
		return cli_usage_error(command, "invalid backup name: %s", err.msg);
	if (rc < 0 && !strcmp(arg, BRI_TARGET_LATEST)) {
		cli_error("%s: there are no backups in %s", command, s->dir);
		return CLI_EXIT_FAIL;
	}
	e = rc == 0 ? bri_catalog_find(c, t.name) : NULL;
	if (rc == 0)
		bri_target_free(&t);
	if (!e) {
		cli_error("%s: no backup called '%s' in %s", command, arg, s->dir);
		return CLI_EXIT_FAIL;
	}
	src->name = strdup(e->name);
	if (!src->name) {
		cli_error("out of memory");
		return CLI_EXIT_FAIL;
	}
	/* Through the store's reader: diff and export read any store format. */
	rc = bri_store_open_reader(s, e->name, &src->reader, &err);
	if (rc < 0) {
		cli_error("%s: %s", command, err.msg[0] ? err.msg : strerror(-rc));
		return CLI_EXIT_FAIL;
	}
	return 0;
}

/* Copies a render to stdout. Returns 0 or CLI_EXIT_FAIL (message printed). */
static int pour(struct bri_render *r, const char *what)
{
	static char buf[1 << 16];
	struct bri_err err = {0};
	ssize_t n;

	while ((n = bri_render_read(r, buf, sizeof(buf), &err)) > 0) {
		if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
			return CLI_EXIT_FAIL; /* main reports the write error */
	}
	if (n < 0) {
		cli_error("%s: %s", what, err.msg);
		return CLI_EXIT_FAIL;
	}
	return 0;
}

/* Opens the store (it must exist) and its catalog; CLI_EXIT_FAIL when not. */
static int open_all(struct cli_globals *g, const char *command, struct bri_store **s,
                    struct bri_catalog **c)
{
	struct bri_store_open_opts o = {
	    .follow_symlink = g->follow_symlink,
	    .force = g->force,
	    .key_file = g->key_file,
	};
	struct bri_err err = {0};
	int r;

	cli_setup_logging(g);
	r = bri_store_open_ex(g->db, g->backup_dir, &o, s, &err);
	if (r < 0) {
		cli_error("%s: cannot open the backup store: %s", command, err.msg);
		return CLI_EXIT_FAIL;
	}
	r = bri_catalog_scan(*s, NULL, c, &err);
	if (r < 0) {
		cli_error("%s: cannot read the backup store: %s", command, err.msg);
		bri_store_close(*s);
		return CLI_EXIT_FAIL;
	}
	return 0;
}

/*
 * The summary as JSON: {"old": NAME, "new": NAME, "tables": [{"table": T,
 * "status": "compared"|"missing_from_new"|"missing_from_old"|
 * "incompatible_schema", and when compared "changes", "inserts",
 * "deletes", "unchanged"}]}, from the same core counts as the summary.
 */
static int summary_json(sqlite3 *db, const char *old_name, const char *new_name)
{
	static const char *const status[] = {
	    [BRI_DIFF_COMPARED] = "compared",
	    [BRI_DIFF_ONLY_OLD] = "missing_from_new",
	    [BRI_DIFF_ONLY_NEW] = "missing_from_old",
	    [BRI_DIFF_INCOMPATIBLE] = "incompatible_schema",
	};
	json_object *root = json_object_new_object(), *tables = json_object_new_array();
	struct bri_diff_counts dc;
	struct bri_err err = {0};
	char **names = NULL;
	size_t n = 0;
	int rc = 0;

	json_object_object_add(root, "old", json_object_new_string(old_name));
	json_object_object_add(root, "new", json_object_new_string(new_name));
	json_object_object_add(root, "tables", tables);
	if (bri_diff_tables(db, &names, &n, &err) < 0) {
		cli_error("diff: %s", err.msg);
		json_object_put(root);
		return CLI_EXIT_FAIL;
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		json_object *t;

		if (bri_diff_table_counts(db, names[i], &dc, &err) < 0) {
			cli_error("diff: %s", err.msg);
			rc = CLI_EXIT_FAIL;
			break;
		}
		if (dc.state == BRI_DIFF_NEITHER)
			continue;
		t = json_object_new_object();
		json_object_object_add(t, "table", json_object_new_string(names[i]));
		json_object_object_add(t, "status", json_object_new_string(status[dc.state]));
		if (dc.state == BRI_DIFF_COMPARED) {
			json_object_object_add(t, "changes", json_object_new_int64(dc.changes));
			json_object_object_add(t, "inserts", json_object_new_int64(dc.inserts));
			json_object_object_add(t, "deletes", json_object_new_int64(dc.deletes));
			json_object_object_add(t, "unchanged", json_object_new_int64(dc.unchanged));
		}
		json_object_array_add(tables, t);
	}
	bri_inspect_names_free(names, n);
	if (rc == 0)
		printf("%s\n", json_object_to_json_string_ext(
		                   root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(root);
	return rc;
}

int cli_cmd_diff(struct cli_globals *g, const struct cli_args *a)
{
	const char *table = cli_opt(a, "table");
	struct bri_store *s = NULL;
	struct bri_catalog *c = NULL;
	struct source x = {0}, y = {0};
	struct bri_render *r = NULL;
	struct bri_err err = {0};
	sqlite3 *db = NULL;
	int rc;

	if (a->npos != 2)
		return cli_usage_error(a->name, "diff takes two databases: OLD NEW");
	rc = open_all(g, a->name, &s, &c);
	if (rc)
		return rc;
	rc = resolve(s, c, a->name, a->pos[0], &x);
	if (rc == 0)
		rc = resolve(s, c, a->name, a->pos[1], &y);
	if (rc)
		goto out_drop;
	if (bri_diff_open(x.reader, y.reader, &db, &err) < 0) {
		cli_error("diff: %s", err.msg);
		rc = CLI_EXIT_FAIL;
		goto out_drop;
	}
	if (g->json && !table) {
		rc = summary_json(db, x.name, y.name);
		goto out_close;
	}
	if (table ? (g->json ? bri_diff_table_json(db, table, &r, &err)
	                     : bri_diff_table_csv(db, table, &r, &err))
	          : bri_diff_summary(db, &r, &err)) {
		cli_error("diff: %s", err.msg);
		rc = CLI_EXIT_FAIL;
		goto out_close;
	}
	rc = pour(r, "diff");
	bri_render_free(r);
out_close:
	sqlite3_close(db);
out_drop:
	source_drop(s, &x);
	source_drop(s, &y);
	bri_catalog_free(c);
	bri_store_close(s);
	return rc;
}

/*
 * export NAME FILE: the backup as the plain database it serves, into FILE
 * (which must not exist), checked against the metadata's checksum. Made as
 * FILE.tmp and renamed: FILE is complete or absent.
 */
static int export_file(struct cli_globals *g, const char *command, const char *arg,
                       const char *file)
{
	char hex[BRI_CHECKSUM_HEX_LEN + 1], *tmp = NULL, *buf = NULL;
	struct bri_store *s = NULL;
	struct bri_catalog *c = NULL;
	const struct bri_entry *e;
	struct source a = {0};
	struct bri_err err = {0};
	int fd = -1, rc;

	rc = open_all(g, command, &s, &c);
	if (rc)
		return rc;
	rc = resolve(s, c, command, arg, &a);
	if (rc)
		goto out_drop;
	rc = CLI_EXIT_FAIL;
	e = bri_catalog_find(c, a.name);
	if (!a.reader || !e || !e->meta_ok) {
		cli_error("%s: %s has no usable metadata to check the copy against", command, arg);
		goto out_drop;
	}
	if (access(file, F_OK) == 0) {
		cli_error("%s: %s exists; refusing to overwrite it", command, file);
		goto out_drop;
	}
	buf = malloc(1 << 20);
	if (!buf || asprintf(&tmp, "%s.tmp", file) < 0) {
		tmp = NULL;
		cli_error("out of memory");
		goto out_drop;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		cli_error("%s: cannot create %s: %s", command, tmp, strerror(errno));
		goto out_drop;
	}
	for (uint64_t off = 0; off < a.reader->size;) {
		ssize_t n = bri_reader_pread(a.reader, buf, 1 << 20, off);

		if (n <= 0) {
			cli_error("%s: cannot read %s: %s", command, a.name,
			          a.reader->why[0] ? a.reader->why
			                           : strerror(n < 0 ? (int)-n : EIO));
			goto out_unlink;
		}
		for (ssize_t done = 0; done < n;) {
			ssize_t w = write(fd, buf + done, (size_t)(n - done));

			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				cli_error("%s: cannot write %s: %s", command, tmp, strerror(errno));
				goto out_unlink;
			}
			done += w;
		}
		off += (uint64_t)n;
	}
	if (fsync(fd) < 0 || bri_checksum_path(tmp, NULL, hex, &err) < 0) {
		cli_error("%s: cannot write %s: %s", command, tmp,
		          err.msg[0] ? err.msg : strerror(errno));
		goto out_unlink;
	}
	if (strcmp(hex, e->meta.checksum) != 0) {
		cli_error("%s: the copy of %s does not match its checksum; nothing written",
		          command, a.name);
		goto out_unlink;
	}
	if (rename(tmp, file) < 0) {
		cli_error("%s: cannot rename %s to %s: %s", command, tmp, file, strerror(errno));
		goto out_unlink;
	}
	printf("%s\n", file);
	rc = CLI_EXIT_OK;
	goto out_close;
out_unlink:
	unlink(tmp);
out_close:
	close(fd);
out_drop:
	free(tmp);
	free(buf);
	source_drop(s, &a);
	bri_catalog_free(c);
	bri_store_close(s);
	return rc;
}

int cli_cmd_export(struct cli_globals *g, const struct cli_args *a)
{
	const char *table = cli_opt(a, "table");
	bool schema = cli_flag(a, "schema");
	struct bri_store *s = NULL;
	struct bri_catalog *c = NULL;
	struct source src = {0};
	struct bri_render *r = NULL;
	struct bri_err err = {0};
	sqlite3 *db = NULL;
	int rc;

	if (a->npos == 2 && !table && !schema)
		return export_file(g, a->name, a->pos[0], a->pos[1]);
	if (a->npos != 1)
		return cli_usage_error(a->name,
		                       "export takes one backup: NAME (and FILE, or --table "
		                       "T or --schema)");
	if (!table == !schema)
		return cli_usage_error(a->name, "say what to export: FILE, --table T or --schema");
	rc = open_all(g, a->name, &s, &c);
	if (rc)
		return rc;
	rc = resolve(s, c, a->name, a->pos[0], &src);
	if (rc)
		goto out_drop;
	if (bri_inspect_open(src.reader, &db, &err) < 0) {
		cli_error("export: %s", err.msg);
		rc = CLI_EXIT_FAIL;
		goto out_drop;
	}
	if (schema ? bri_inspect_schema(db, &r, &err)
	           : bri_inspect_table_csv(db, table, &r, &err)) {
		cli_error("export: %s", err.msg);
		rc = CLI_EXIT_FAIL;
		goto out_close;
	}
	rc = pour(r, "export");
	bri_render_free(r);
out_close:
	sqlite3_close(db);
out_drop:
	source_drop(s, &src);
	bri_catalog_free(c);
	bri_store_close(s);
	return rc;
}
