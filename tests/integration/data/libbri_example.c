/*
 * The C example of the README: takes a backup of a live database with libbri,
 * verifies it and lists the store, newest first. Build it against the
 * installed library:  cc example.c $(pkg-config --cflags --libs bri)
 * Usage: example [DB] (default data/bri.db, store data/backups).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <bri/catalog.h>
#include <bri/create.h>
#include <bri/store.h>
#include <bri/verify.h>

int main(int argc, char **argv)
{
	const char *db = argc > 1 ? argv[1] : "data/bri.db";
	struct bri_op_ctx ctx = bri_op_ctx_self("example");
	struct bri_create_opts opts = {.name = "from_c", .kind = BRI_KIND_NAMED};
	struct bri_verify_result res;
	struct bri_err err = {0};
	struct bri_store *s;
	struct bri_catalog *c;
	char *name;
	int rc = 1;

	if (bri_store_open(db, NULL, true, &s, &err) < 0) {
		fprintf(stderr, "example: %s\n", err.msg);
		return 1;
	}
	if (bri_create(s, &opts, &ctx, &name, &err) < 0) {
		fprintf(stderr, "example: create: %s\n", err.msg);
		goto out_close_store;
	}
	if (bri_verify_backup(s, name, &ctx, &res, &err) < 0) {
		fprintf(stderr, "example: verify: %s\n", err.msg);
		goto out_free_name;
	}
	printf("%s: %s\n", name, bri_verify_status_name(res.status));
	if (bri_catalog_scan(s, NULL, &c, &err) < 0) {
		fprintf(stderr, "example: %s\n", err.msg);
		goto out_free_name;
	}
	for (size_t i = 0; i < c->n; i++)
		printf("%s %s %lld\n", c->entries[i]->name, c->entries[i]->meta.backup_time,
		       (long long)c->entries[i]->meta.size_bytes);
	bri_catalog_free(c);
	rc = 0;
out_free_name:
	free(name);
out_close_store:
	bri_store_close(s);
	return rc;
}
