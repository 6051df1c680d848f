/*
 * Unit tests of the page store (src/core/store_pages.c, pack.c; SPEC.md
 * section 5): the manifest's round trip and its damage refused, page ids
 * keyed by the store's secret, identical pages stored once across backups,
 * a backup read back byte for byte (checksum) and verified, a flipped bit in
 * a pack a failed verification naming the backup and page, a create killed
 * before its commit leaving no backup (its published pack freed by the next
 * delete), and delete freeing every page no backup uses. The same again on
 * an encrypted store (raw key): every file but store.json sealed (no known
 * plaintext in the folder), a sealed manifest refused with another key, in
 * the clear, or under another name, and the store refused without its key
 * or with another one, before anything is read. What a group's read checks,
 * sealed (its GCM tags, not zstd's checksum) and not (zstd's checksum).
 */
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/core/pack.h"
#include "../../src/core/seal.h"
#include "bri/checksum.h"
#include "bri/cleanup.h"
#include "bri/create.h"
#include "bri/snapshot.h"
#include "bri/verify.h"
#include "expect.h"
#include "testutil.h"

static char *base;

/* The number of pack files of the store. */
static int count_packs(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (strncmp(e->d_name, PACK_PREFIX, strlen(PACK_PREFIX)) == 0)
			n++;
	closedir(d);
	return n;
}

/* The path of the store's (first) pack, malloc'd. */
static char *first_pack(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char *p = NULL;

	while (d && (e = readdir(d)))
		if (!p && strncmp(e->d_name, PACK_PREFIX, strlen(PACK_PREFIX)) == 0)
			p = tu_fmt("%s/%s", dir, e->d_name);
	if (d)
		closedir(d);
	return p;
}

/* Flips one bit in the middle of the file at path. */
static void flip(const char *path)
{
	int fd = open(path, O_RDWR);
	struct stat st;
	uint8_t b = 0;

	if (fd < 0 || fstat(fd, &st) < 0 || pread(fd, &b, 1, st.st_size / 2) != 1)
		TU_DIE("cannot read %s", path);
	b ^= 0x04;
	if (pwrite(fd, &b, 1, st.st_size / 2) != 1)
		TU_DIE("cannot write %s", path);
	close(fd);
}

static struct bri_seal *test_key(uint8_t fill)
{
	struct seal_params p = {0};
	struct bri_seal *k = NULL;
	struct bri_err err = {0};
	uint8_t bytes[SEAL_KEY_LEN];

	memset(bytes, fill, sizeof(bytes));
	EXPECT_EQ_INT(seal_key_derive(bytes, sizeof(bytes), &p, &k, &err), 0);
	return k;
}

static void test_manifest_sealed(void)
{
	struct manifest m = {.page_size = 1024, .page_count = 2}, back;
	struct bri_seal *k = test_key(3), *other = test_key(4);
	uint8_t ids[2 * PAGE_ID_LEN];
	size_t len, plen;
	void *blob, *pblob;

	memset(ids, 0x42, sizeof(ids));
	m.ids = ids;
	EXPECT_EQ_INT(manifest_encode(k, "daily", &m, &blob, &len), 0);
	EXPECT(memmem(blob, len, ids, PAGE_ID_LEN) == NULL);
	EXPECT_EQ_INT(manifest_decode(k, "daily", blob, len, &back), 0);
	EXPECT(back.page_count == 2 && back.ids && memcmp(back.ids, ids, sizeof(ids)) == 0);
	free(back.ids);
	EXPECT_EQ_INT(manifest_decode(other, "daily", blob, len, &back), -EBADMSG);
	EXPECT_EQ_INT(manifest_decode(k, "weekly", blob, len, &back), -EBADMSG);
	EXPECT_EQ_INT(manifest_decode(NULL, "daily", blob, len, &back), -EBADMSG);
	/* A manifest in the clear planted in an encrypted store: refused. */
	EXPECT_EQ_INT(manifest_encode(NULL, "daily", &m, &pblob, &plen), 0);
	EXPECT_EQ_INT(manifest_decode(k, "daily", pblob, plen, &back), -EBADMSG);
	for (size_t at = 5; at < len; at += 7) {
		((uint8_t *)blob)[at] ^= 0x01;
		EXPECT_MSG(manifest_decode(k, "daily", blob, len, &back) < 0, "flip at %zu", at);
		((uint8_t *)blob)[at] ^= 0x01;
	}
	free(blob);
	free(pblob);
	seal_free(k);
	seal_free(other);
}

/* Whether any file of dir holds needle (len bytes). */
static bool folder_has(const char *dir, const void *needle, size_t len)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	bool found = false;

	while (d && (e = readdir(d)) && !found) {
		char *path = tu_fmt("%s/%s", dir, e->d_name);
		struct stat st;

		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			size_t n = 0;
			char *data = tu_read(path, &n);

			found = memmem(data, n, needle, len) != NULL;
			if (found)
				fprintf(stderr, "found in %s\n", path);
			free(data);
		}
		free(path);
	}
	if (d)
		closedir(d);
	return found;
}

static void test_manifest_round_trip(void)
{
	struct manifest m = {.page_size = 4096, .page_count = 3}, back;
	uint8_t ids[3 * PAGE_ID_LEN];
	size_t len;
	void *blob;

	for (size_t i = 0; i < sizeof(ids); i++)
		ids[i] = (uint8_t)(i * 7);
	m.ids = ids;
	EXPECT_EQ_INT(manifest_encode(NULL, "x", &m, &blob, &len), 0);
	EXPECT_EQ_INT(manifest_decode(NULL, "x", blob, len, &back), 0);
	EXPECT(back.page_size == 4096 && back.page_count == 3);
	EXPECT(back.ids && memcmp(back.ids, ids, sizeof(ids)) == 0);
	free(back.ids);
	/* A flipped bit anywhere after the magic is refused, never a wrong list. */
	for (size_t at = 5; at < len; at += 3) {
		((uint8_t *)blob)[at] ^= 0x10;
		EXPECT_MSG(manifest_decode(NULL, "x", blob, len, &back) < 0, "flip at %zu", at);
		((uint8_t *)blob)[at] ^= 0x10;
	}
	EXPECT_EQ_INT(manifest_decode(NULL, "x", blob, len - 1, &back), -EBADMSG);
	free(blob);
}

static int create_named(struct bri_store *s, const char *name)
{
	struct bri_create_opts o = {.name = name};
	struct bri_err err = {0};
	char *out = NULL;
	int rc = bri_create(s, &o, NULL, &out, &err);

	EXPECT_MSG(rc == 0, "create %s: %s", name, err.msg);
	free(out);
	return rc;
}

static void test_store(const char *live, const char *key_file)
{
	struct bri_store_open_opts oo = {.key_file = key_file};
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	struct bri_verify_result res;
	struct bri_reader *r = NULL;
	struct pages_db *db = NULL;
	char *dir = tu_fmt("%s/store%s", base, key_file ? "-sealed" : ""), *pack, *buf;
	char hex[BRI_CHECKSUM_HEX_LEN + 1], *meta;
	uint64_t logical = 0, stored = 0;
	uint8_t id1[PAGE_ID_LEN], id2[PAGE_ID_LEN];
	size_t len;
	int status;
	pid_t pid;

	oo.create = true;
	EXPECT_EQ_INT(bri_store_open_ex(live, dir, &oo, &s, &err), 0);
	EXPECT_EQ_INT(bri_store_init_format(s, "pages", &err), 0);
	EXPECT(s->ops == &bri_store_pages_ops);
	EXPECT((s->seal != NULL) == (key_file != NULL));
	bri_store_close(s);
	/* Reopened, store.json says pages. */
	oo.create = false;
	EXPECT_EQ_INT(bri_store_open_ex(live, dir, &oo, &s, &err), 0);
	EXPECT(s && s->ops == &bri_store_pages_ops);

	/* Page ids: the same bytes the same id, other bytes another. */
	EXPECT_EQ_INT(pages_db_open(s, &db, &err), 0);
	buf = calloc(1, 4096);
	page_id(db, buf, 4096, id1);
	page_id(db, buf, 4096, id2);
	EXPECT(memcmp(id1, id2, PAGE_ID_LEN) == 0);
	buf[100] = 1;
	page_id(db, buf, 4096, id2);
	EXPECT(memcmp(id1, id2, PAGE_ID_LEN) != 0);
	pages_db_close(db);
	free(buf);

	/* Two backups of the same database: the second stores no page. */
	EXPECT_EQ_INT(create_named(s, "one"), 0);
	EXPECT_EQ_INT(count_packs(dir), 1);
	EXPECT_EQ_INT(create_named(s, "two"), 0);
	EXPECT_EQ_INT(count_packs(dir), 1);
	EXPECT_EQ_INT(bri_store_usage(s, &logical, &stored, &err), 0);
	EXPECT_MSG(logical > stored, "logical %llu stored %llu", (unsigned long long)logical,
	           (unsigned long long)stored);

	/* Read back: the SHA-256 of the bytes served is the metadata's checksum. */
	EXPECT_EQ_INT(bri_store_open_reader(s, "one", &r, &err), 0);
	EXPECT(r && r->fd == -1);
	EXPECT_EQ_INT(bri_checksum_reader(r, NULL, hex, &err), 0);
	bri_reader_close(r);
	EXPECT_EQ_INT(bri_store_sidecar_read(s, "one", BRI_SIDECAR_META, 1 << 20, &meta, &len), 0);
	EXPECT_MSG(strstr(meta, hex) != NULL, "checksum %s not in %s", hex, meta);
	free(meta);
	EXPECT_EQ_INT(bri_verify_backup(s, "one", NULL, &res, &err), 0);
	EXPECT_MSG(res.status == BRI_VERIFY_OK, "%s", res.reason);
	if (key_file) {
		struct bri_store *t = NULL;
		struct bri_store_open_opts none = {0},
		                           wrong = {.key_file = tu_fmt("%s.wrong", key_file)};
		uint8_t other[SEAL_KEY_LEN] = {1};

		/* Known plaintext: none in the folder (SQLite's header, a table, a meta key). */
		EXPECT(!folder_has(dir, "SQLite format 3", 15));
		EXPECT(!folder_has(dir, "CREATE TABLE", 12));
		EXPECT(!folder_has(dir, "memory", 6));
		EXPECT(!folder_has(dir, "checksum", 8));
		EXPECT(!folder_has(dir, hex, strlen(hex)));
		/* Without the key, or with another: refused at open. */
		unsetenv(SEAL_KEY_ENV);
		EXPECT_EQ_INT(bri_store_open_ex(live, dir, &none, &t, &err), -ENOKEY);
		EXPECT_MSG(strstr(err.msg, "encrypted") && strstr(err.msg, "--key-file"), "%s",
		           err.msg);
		tu_write(wrong.key_file, other, sizeof(other));
		EXPECT_EQ_INT(bri_store_open_ex(live, dir, &wrong, &t, &err), -EKEYREJECTED);
		EXPECT_MSG(strstr(err.msg, "does not open"), "%s", err.msg);
		/* BRI_KEY_FILE when no option names one. */
		setenv(SEAL_KEY_ENV, key_file, 1);
		EXPECT_EQ_INT(bri_store_open_ex(live, dir, &none, &t, &err), 0);
		EXPECT(t && t->seal);
		bri_store_close(t);
		unsetenv(SEAL_KEY_ENV);
		free((char *)wrong.key_file);
	}

	/* A flipped bit in the pack: verify fails, naming the backup and the page. */
	pack = first_pack(dir);
	flip(pack);
	EXPECT_EQ_INT(bri_verify_backup(s, "one", NULL, &res, &err), 0);
	EXPECT_EQ_INT(res.status, BRI_VERIFY_FAILED);
	EXPECT_MSG(strstr(res.reason, "backup one") && strstr(res.reason, "page "), "%s",
	           res.reason);
	flip(pack); /* undone */
	EXPECT_EQ_INT(bri_verify_backup(s, "one", NULL, &res, &err), 0);
	EXPECT_MSG(res.status == BRI_VERIFY_OK, "%s", res.reason);
	free(pack);

	/* A create killed after its pack is published, before its manifest
	 * (the child exits without commit or cleanup, as kill -9 would). */
	pid = fork();
	if (pid == 0) {
		struct bri_backup_writer *w = NULL;
		struct bri_snapshot_info info = {0};
		struct bri_err e = {0};
		sqlite3 *ldb;

		/* New content, so the pack has pages of its own. */
		if (sqlite3_open(live, &ldb) != SQLITE_OK)
			_exit(2);
		/* (Content of its own in each run, sealed or not.) */
		sqlite3_exec(ldb,
		             key_file ? "UPDATE memory SET content = 'sealed ' || id"
		                      : "UPDATE memory SET content = 'changed ' || id",
		             NULL, NULL, NULL);
		sqlite3_close(ldb);
		if (bri_store_write_begin(s, "killed", &w, &e) < 0 ||
		    bri_snapshot_take(live, w->path, 5000, &info, &e) < 0)
			_exit(3);
		/* The writer's first member is its pages_db (pages_write.c). */
		if (pages_db_flush(*(struct pages_db **)w->priv, &e) < 0)
			_exit(4);
		_exit(0); /* as kill -9: no commit, no cleanup */
	}
	waitpid(pid, &status, 0);
	EXPECT_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
	EXPECT_EQ_INT(count_packs(dir), 2);
	EXPECT_EQ_INT(bri_store_has(s, "killed"), 0);
	EXPECT_EQ_INT(bri_verify_backup(s, "two", NULL, &res, &err), 0);
	EXPECT_MSG(res.status == BRI_VERIFY_OK, "%s", res.reason);

	/* Delete: the killed create's pack goes with the first delete, all with the last. */
	EXPECT_EQ_INT(bri_delete(s, "one", NULL, &err), 0);
	EXPECT_EQ_INT(count_packs(dir), 1);
	EXPECT_EQ_INT(bri_verify_backup(s, "two", NULL, &res, &err), 0);
	EXPECT_MSG(res.status == BRI_VERIFY_OK, "%s", res.reason);
	EXPECT_EQ_INT(bri_delete(s, "two", NULL, &err), 0);
	EXPECT_EQ_INT(count_packs(dir), 0);
	bri_store_close(s);
	free(dir);
}

/* The backup's bytes read through a reader in reads of chunk bytes: 0 and
 * *out (malloc'd, *len bytes), or the first read's negative errno and why. */
static int read_backup(struct bri_store *s, const char *name, size_t chunk, uint8_t **out,
                       size_t *len, char *why, size_t why_len)
{
	struct bri_err err = {0};
	struct bri_reader *r = NULL;
	uint8_t *buf;
	uint64_t off = 0;
	int rc = 0;

	*out = NULL;
	*len = 0;
	if (bri_store_open_reader(s, name, &r, &err) < 0)
		TU_DIE("cannot open backup %s: %s", name, err.msg);
	buf = malloc(r->size ? r->size : 1);
	while (buf && off < r->size && rc == 0) {
		ssize_t n = bri_reader_pread(
		    r, buf + off, r->size - off < chunk ? (size_t)(r->size - off) : chunk, off);

		if (n <= 0)
			rc = n < 0 ? (int)n : -EIO;
		else
			off += (uint64_t)n;
	}
	snprintf(why, why_len, "%s", r->why);
	if (rc == 0) {
		*out = buf;
		*len = (size_t)off;
	} else {
		free(buf);
	}
	bri_reader_close(r);
	return rc;
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/*
 * The group blob that starts nearest after the middle of the pack's bytes
 * (the last one if none does): *ids_len and *stored_len from its header.
 */
static size_t middle_group(const uint8_t *data, size_t len, uint32_t *ids_len, uint32_t *stored_len)
{
	size_t off = 16, found = 0;

	while (off + 32 <= len) {
		EXPECT(memcmp(data + off, "BRIb", 4) == 0 && data[off + 5] == 1);
		found = off;
		*ids_len = get_le32(data + off + 16);
		*stored_len = get_le32(data + off + 24);
		if (off >= len / 2)
			break;
		off += 32 + *ids_len + *stored_len;
	}
	return found;
}

/*
 * What a group's read checks (pack.c, group_read_with): in an encrypted
 * store the GCM tags, over every stored byte, before anything is
 * decompressed, and then not zstd's content checksum (the tag proved the
 * frame is the writer's); without a key, the content checksum. Shown by a
 * group whose frame's checksum is wrong but whose seal is good (made with
 * the store's key, as only the key's holder can): served, byte for byte
 * the backup, and verified; without a key the same damage fails the read and
 * verify, naming the backup and a page. And one flipped bit in a sealed
 * group's stored bytes fails every read of it (streaming, through the
 * cursor, and page by page, through the shared cache) and verify, naming the
 * backup and a page.
 */
static void test_group_checks(const char *live, const char *key_file)
{
	struct bri_store_open_opts oo = {.key_file = key_file, .create = true};
	char *dir = tu_fmt("%s/checks%s", base, key_file ? "-sealed" : ""), *pack, why[384];
	size_t chunks[] = {1 << 20, 128 << 10, 4096}, plen, len, good_len, at;
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	struct bri_verify_result res;
	uint8_t *data, *good, *got;
	uint32_t ids_len = 0, stored_len = 0;

	EXPECT_EQ_INT(bri_store_open_ex(live, dir, &oo, &s, &err), 0);
	EXPECT_EQ_INT(bri_store_init_format(s, "pages", &err), 0);
	EXPECT_EQ_INT(create_named(s, "one"), 0);
	EXPECT_EQ_INT(read_backup(s, "one", 1 << 20, &good, &good_len, why, sizeof(why)), 0);
	pack = first_pack(dir);
	data = (uint8_t *)tu_read(pack, &len);
	at = middle_group(data, len, &ids_len, &stored_len);
	EXPECT(at > 0 && stored_len > SEAL_OVERHEAD + 8);

	/* zstd's content checksum (the frame's last 4 bytes) made wrong. */
	if (key_file) {
		uint8_t ctx[32 + 5], *part = data + at + 32 + ids_len, *frame;

		memcpy(ctx, data + at, 32);
		memcpy(ctx + 32, "pages", 5);
		plen = stored_len - SEAL_OVERHEAD;
		frame = malloc(plen);
		EXPECT_EQ_INT(seal_open(s->seal, ctx, sizeof(ctx), part, stored_len, frame), 0);
		EXPECT(frame[4] & 0x04); /* the frame carries its content checksum */
		frame[plen - 1] ^= 0x01;
		EXPECT_EQ_INT(seal_data(s->seal, ctx, sizeof(ctx), frame, plen, part), 0);
		free(frame);
	} else {
		EXPECT(data[at + 32 + ids_len + 4] & 0x04);
		data[at + 32 + ids_len + stored_len - 1] ^= 0x01;
	}
	tu_write(pack, data, len);
	for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
		int rc = read_backup(s, "one", chunks[i], &got, &plen, why, sizeof(why));

		if (key_file) {
			EXPECT_MSG(rc == 0, "reads of %zu: %d %s", chunks[i], rc, why);
			EXPECT(rc != 0 || (plen == good_len && memcmp(got, good, plen) == 0));
		} else {
			EXPECT_MSG(rc == -EBADMSG, "reads of %zu: %d", chunks[i], rc);
			EXPECT_MSG(strstr(why, "backup one: page "), "%s", why);
		}
		free(got);
	}
	EXPECT_EQ_INT(bri_verify_backup(s, "one", NULL, &res, &err), 0);
	EXPECT_MSG(res.status == (key_file ? BRI_VERIFY_OK : BRI_VERIFY_FAILED), "%s", res.reason);
	if (!key_file)
		EXPECT_MSG(strstr(res.reason, "backup one") && strstr(res.reason, "page "), "%s",
		           res.reason);

	/* A sealed group: one flipped bit in its stored pages fails every read of it. */
	if (key_file) {
		data[at + 32 + ids_len + stored_len / 2] ^= 0x10;
		tu_write(pack, data, len);
		for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
			EXPECT_EQ_INT(
			    read_backup(s, "one", chunks[i], &got, &plen, why, sizeof(why)),
			    -EBADMSG);
			EXPECT_MSG(strstr(why, "backup one: page ") &&
			               strstr(why, "authentication"),
			           "%s", why);
		}
		EXPECT_EQ_INT(bri_verify_backup(s, "one", NULL, &res, &err), 0);
		EXPECT_EQ_INT(res.status, BRI_VERIFY_FAILED);
		EXPECT_MSG(strstr(res.reason, "backup one") && strstr(res.reason, "page "), "%s",
		           res.reason);
	}
	free(data);
	free(good);
	free(pack);
	bri_store_close(s);
	free(dir);
}

int main(void)
{
	char *live;

	base = tu_tmpdir("pages");
	live = tu_fmt("%s/live.db", base);
	tu_make_db(live, "wal", 20, 2000, false);
	test_manifest_round_trip();
	test_manifest_sealed();
	test_store(live, NULL);
	test_group_checks(live, NULL);
	{
		char *key = tu_fmt("%s/key", base);
		uint8_t raw[SEAL_KEY_LEN];

		for (size_t i = 0; i < sizeof(raw); i++)
			raw[i] = (uint8_t)(i * 37 + 1);
		tu_write(key, raw, sizeof(raw));
		test_store(live, key);
		test_group_checks(live, key);
		free(key);
	}
	free(live);
	tu_tmpdir_done(base);
	return EXPECT_RESULT();
}
