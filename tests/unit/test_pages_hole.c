/*
 * Unit test of the page store's hole: SQLite never writes the page that
 * holds its pending byte (offset 1 GiB), so every database past 1 GiB has a
 * page its backup never wrote. The page store keeps it as an all-zero id in
 * the manifest (pack.h, page_id_is_hole), and every reader must serve it as
 * zeros. Here the pending byte is moved to 64 KiB (SQLite's test control,
 * before any database is opened in this process), so a small database has
 * the same hole: its backup, plain and encrypted, is read back byte for
 * byte (the metadata's checksum), verified, and scrubbed clean; before the
 * readers knew the hole, verify failed with "page 17 ... is missing".
 */
#include <sqlite3.h>
#include <string.h>

#include "../../src/core/pack.h"
#include "../../src/core/seal.h"
#include "bri/checksum.h"
#include "bri/create.h"
#include "bri/scrub.h"
#include "bri/verify.h"
#include "expect.h"
#include "testutil.h"

#define PENDING_BYTE 0x10000u /* in page 17 of 4 KiB pages */

static char *base;

static int scrub_damage(void *arg, const struct bri_scrub_damage *d)
{
	(void)arg;
	EXPECT_MSG(false, "scrub: %s page %llu: %s", d->backup, (unsigned long long)d->page,
	           d->what);
	return 0;
}

static void test_hole(const char *live, const char *key_file)
{
	struct bri_store_open_opts oo = {.key_file = key_file, .create = true};
	struct bri_create_opts co = {.name = "one"};
	struct bri_scrub_result sres = {0};
	struct bri_verify_result res;
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	struct bri_reader *r = NULL;
	char *dir = tu_fmt("%s/store%s", base, key_file ? "-sealed" : ""), *out = NULL, *meta;
	char hex[BRI_CHECKSUM_HEX_LEN + 1], page[4096], zeros[4096] = {0};
	size_t len;

	EXPECT_EQ_INT(bri_store_open_ex(live, dir, &oo, &s, &err), 0);
	EXPECT_EQ_INT(bri_store_init_format(s, "pages", &err), 0);
	EXPECT_MSG(bri_create(s, &co, NULL, &out, &err) == 0, "create: %s", err.msg);
	free(out);

	/* The page of the pending byte reads as zeros, the bytes as the checksum says. */
	EXPECT_EQ_INT(bri_store_open_reader(s, "one", &r, &err), 0);
	EXPECT(r && r->size > PENDING_BYTE + sizeof(page));
	EXPECT_EQ_INT(bri_reader_pread(r, page, sizeof(page), PENDING_BYTE), (int)sizeof(page));
	EXPECT(memcmp(page, zeros, sizeof(page)) == 0);
	EXPECT_MSG(bri_checksum_reader(r, NULL, hex, &err) == 0, "read back: %s", err.msg);
	bri_reader_close(r);
	EXPECT_EQ_INT(bri_store_sidecar_read(s, "one", BRI_SIDECAR_META, 1 << 20, &meta, &len), 0);
	EXPECT_MSG(meta && strstr(meta, hex) != NULL, "checksum %s not in %s", hex, meta);
	free(meta);

	EXPECT_EQ_INT(bri_verify_backup(s, "one", NULL, &res, &err), 0);
	EXPECT_MSG(res.status == BRI_VERIFY_OK, "verify: %s", res.reason);
	EXPECT_EQ_INT(bri_scrub(s, NULL, scrub_damage, NULL, &sres, &err), 0);
	EXPECT(sres.backups == 1 && sres.backups_bad == 0);
	bri_store_close(s);
	free(dir);
}

int main(void)
{
	char *live, *key;
	uint8_t raw[SEAL_KEY_LEN];

	/* Before any database is opened in this process, as SQLite requires. */
	sqlite3_test_control(SQLITE_TESTCTRL_PENDING_BYTE, PENDING_BYTE);
	base = tu_tmpdir("pages-hole");
	live = tu_fmt("%s/live.db", base);
	tu_make_db(live, "wal", 20, 2000, false); /* about 60 pages */
	test_hole(live, NULL);
	key = tu_fmt("%s/key", base);
	for (size_t i = 0; i < sizeof(raw); i++)
		raw[i] = (uint8_t)(i * 29 + 3);
	tu_write(key, raw, sizeof(raw));
	test_hole(live, key);
	free(key);
	free(live);
	tu_tmpdir_done(base);
	return EXPECT_RESULT();
}
