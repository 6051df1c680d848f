/*
 * Unit tests of the audit log (include/bri/audit.h) and the log ring
 * (include/bri/log.h): every record is one complete JSON line with the
 * documented keys (also when several processes append at once), the newest
 * record per operation is read back, pruning drops only lines older than the
 * retention, and the log keeps the last ring_lines lines, oldest first, at
 * the configured level. In an encrypted store every line is sealed on its
 * own, and pruning, the newest record per operation and following still
 * work (another key reads none of it). Real files in a private temporary
 * folder.
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../src/core/seal.h"
#include "bri/audit.h"
#include "bri/log.h"
#include "bri/store.h"
#include "expect.h"
#include "testutil.h"

#define DAY ((time_t)86400)

static struct bri_op_ctx ctx;

/* Lines of audit.jsonl (-1 if unreadable); *bad: missing final newline; *nojson: not objects. */
static int each_line(struct bri_store *s, int *bad, int *nojson)
{
	char *text = NULL;
	size_t len = 0;
	int n = 0;
	*bad = 0;
	*nojson = 0;
	if (bri_store_read_file(s, "audit.jsonl", 64u << 20, &text, &len) != 0)
		return -1;
	if (len > 0 && text[len - 1] != '\n')
		(*bad)++;
	for (char *p = text, *nl; p < text + len; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(text + len - p));
		if (!nl)
			nl = text + len;
		*nl = '\0';
		json_object *o = json_tokener_parse(p);
		if (!o || !json_object_is_type(o, json_type_object))
			(*nojson)++;
		json_object_put(o);
		n++;
	}
	free(text);
	return n;
}

static void test_records(struct bri_store *s)
{
	EXPECT_EQ_INT(
	    bri_audit_last(s, (const char *const[]){"create"}, 1, &(struct bri_audit_last){0}),
	    -ENOENT);
	time_t t0 = time(NULL);
	bri_audit_record(s, "create", "first", 0, "1.0 MB", 1.25, &ctx);
	bri_audit_record(s, "verify", "first", -EIO, "checksum mismatch", -1, &ctx);
	bri_audit_record(s, "delete", NULL, -ENOENT, NULL, 0.5, NULL);
	bri_audit_record(s, "create", "second \"quoted\"\n", 0, NULL, 2.5, &ctx);

	char *path = bri_store_path(s, "audit.jsonl", "");
	EXPECT_EQ_INT(tu_mode(path), 0600);
	free(path);
	int bad, nojson;
	EXPECT_EQ_INT(each_line(s, &bad, &nojson), 4);
	EXPECT_EQ_INT(bad, 0);
	EXPECT_EQ_INT(nojson, 0);

	/* The first line's keys. */
	char *text = NULL;
	size_t len;
	EXPECT_EQ_INT(bri_store_read_file(s, "audit.jsonl", 1 << 20, &text, &len), 0);
	json_object *o = text ? json_tokener_parse(text) : NULL;
	EXPECT(o != NULL);
	if (o) {
		json_object *v;
		EXPECT(json_object_object_get_ex(o, "time", &v) &&
		       json_object_is_type(v, json_type_string));
		time_t t;
		EXPECT(bri_time_parse(json_object_get_string(v), &t) == 0 && t >= t0 - 1 &&
		       t <= time(NULL) + 1);
		EXPECT(json_object_object_get_ex(o, "operation", &v) &&
		       strcmp(json_object_get_string(v), "create") == 0);
		EXPECT(json_object_object_get_ex(o, "name", &v) &&
		       strcmp(json_object_get_string(v), "first") == 0);
		EXPECT(json_object_object_get_ex(o, "result", &v) &&
		       strcmp(json_object_get_string(v), "ok") == 0);
		EXPECT(json_object_object_get_ex(o, "uid", &v) &&
		       json_object_get_int64(v) == (int64_t)getuid());
		EXPECT(json_object_object_get_ex(o, "pid", &v) &&
		       json_object_get_int64(v) == (int64_t)getpid());
		EXPECT(json_object_object_get_ex(o, "via", &v) &&
		       strcmp(json_object_get_string(v), "cli") == 0);
		json_object_put(o);
	}
	/* A failure is not "ok". */
	char *second = text ? strchr(text, '\n') : NULL;
	o = second ? json_tokener_parse(second + 1) : NULL;
	if (o) {
		json_object *v;
		EXPECT(json_object_object_get_ex(o, "result", &v) &&
		       strcmp(json_object_get_string(v), "ok") != 0);
		json_object_put(o);
	}
	free(text);

	/* The newest record of each operation. */
	const char *ops[] = {"create", "verify", "restore", "delete"};
	struct bri_audit_last last[4];
	EXPECT_EQ_INT(bri_audit_last(s, ops, 4, last), 0);
	EXPECT(last[0].time >= t0 - 1 && last[0].ok);
	EXPECT(last[0].duration_s > 2.4 && last[0].duration_s < 2.6);
	EXPECT(last[1].time >= t0 - 1 && !last[1].ok);
	EXPECT_EQ_INT(last[2].time, 0);
	EXPECT(last[3].time >= t0 - 1 && !last[3].ok);
}

static void test_concurrent(struct bri_store *s)
{
	int before, bad, nojson;
	before = each_line(s, &bad, &nojson);
	pid_t kids[4];
	for (int k = 0; k < 4; k++) {
		kids[k] = fork();
		if (kids[k] == 0) {
			char detail[600];
			memset(detail, 'a' + k, sizeof(detail) - 1);
			detail[sizeof(detail) - 1] = '\0';
			for (int i = 0; i < 50; i++)
				bri_audit_record(s, "verify", "concurrent", 0, detail, 0.1, &ctx);
			_exit(0);
		}
	}
	for (int k = 0; k < 4; k++)
		waitpid(kids[k], NULL, 0);
	EXPECT_EQ_INT(each_line(s, &bad, &nojson), before + 200);
	EXPECT_EQ_INT(bad, 0);
	EXPECT_EQ_INT(nojson, 0);
}

static void test_prune(struct bri_store *s)
{
	struct bri_err err = {0};
	time_t now = time(NULL);
	char old[40], mid[40], recent[40];
	bri_time_utc(now - 100 * DAY, old, sizeof(old));
	bri_time_utc(now - 10 * DAY, mid, sizeof(mid));
	bri_time_utc(now - 60, recent, sizeof(recent));
	char *text =
	    tu_fmt("{\"time_utc\": \"%s\", \"operation\": \"create\", \"name\": \"old\"}\n"
	           "not json at all\n"
	           "{\"time_utc\": \"%s\", \"operation\": \"create\", \"name\": \"mid\"}\n"
	           "{\"time_utc\": \"%s\", \"operation\": \"delete\", \"name\": \"old2\"}\n"
	           "{\"time_utc\": \"%s\", \"operation\": \"create\", \"name\": \"new\"}\n",
	           old, mid, old, recent);
	EXPECT_EQ_INT(bri_store_write_file(s, "audit.jsonl", text, strlen(text), &err), 0);
	free(text);
	EXPECT_EQ_INT(bri_audit_prune(s, now, BRI_AUDIT_RETENTION_DAYS), 0);
	char *after = NULL;
	size_t len;
	EXPECT_EQ_INT(bri_store_read_file(s, "audit.jsonl", 1 << 20, &after, &len), 0);
	EXPECT(after && !strstr(after, "\"old\"") && !strstr(after, "\"old2\""));
	EXPECT(after && strstr(after, "\"mid\"") && strstr(after, "\"new\""));
	EXPECT(after && strstr(after, "not json at all\n"));
	free(after);
	char *path = bri_store_path(s, "audit.jsonl", "");
	EXPECT_EQ_INT(tu_mode(path), 0600);
	free(path);
	/* Appending still works after the rewrite. */
	bri_audit_record(s, "cleanup", "", 0, NULL, -1, &ctx);
	int bad, nojson;
	EXPECT_EQ_INT(each_line(s, &bad, &nojson), 4);
	EXPECT_EQ_INT(nojson, 1);
}

/*
 * Fills a buffer with as many copies of one audit line (at time t, with
 * name) as fit in cap bytes; returns the bytes used.
 */
static size_t fill_lines(char *buf, size_t cap, time_t t, const char *name)
{
	char when[40], line[400];
	size_t len, used = 0;
	bri_time_utc(t, when, sizeof(when));
	len =
	    (size_t)snprintf(line, sizeof(line),
	                     "{\"time_utc\": \"%s\", \"operation\": \"verify\", \"name\": \"%s\", "
	                     "\"result\": \"ok\", \"detail\": \"%0200d\"}\n",
	                     when, name, 0);
	while (used + len <= cap) {
		memcpy(buf + used, line, len);
		used += len;
	}
	return used;
}

/* Appends n copies of buf (len bytes) to fd: a big file, fast. */
static void write_copies(int fd, const char *buf, size_t len, int n)
{
	for (int i = 0; i < n; i++)
		EXPECT(write(fd, buf, len) == (ssize_t)len);
}

static long max_rss_kib(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/*
 * A log past 64 MiB (40 MiB of lines older than 90 days, then 30 MiB of recent
 * ones) is still pruned, by a stream: every old line goes, every recent one
 * stays, in order, and the prune's memory does not grow with the file.
 */
static void test_prune_big(struct bri_store *s)
{
	const size_t cap = 1u << 20;
	time_t now = time(NULL);
	char *buf = malloc(cap);
	char *path = bri_store_path(s, "audit.jsonl", "");
	if (!buf || !path)
		TU_DIE("out of memory");
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	EXPECT(fd >= 0);
	size_t old_len = fill_lines(buf, cap, now - 100 * DAY, "old");
	write_copies(fd, buf, old_len, 40);
	const char *marker =
	    "{\"time_utc\": \"2999-01-01T00:00:00Z\", \"name\": \"first-recent\"}\n";
	EXPECT(write(fd, marker, strlen(marker)) == (ssize_t)strlen(marker));
	size_t new_len = fill_lines(buf, cap, now - 60, "recent");
	write_copies(fd, buf, new_len, 30);
	close(fd);
	EXPECT((off_t)40 * (off_t)old_len + 30 * (off_t)new_len > (off_t)(64u << 20));

	pid_t kid = fork();
	if (kid == 0) {
		long before = max_rss_kib();
		int rc = bri_audit_prune(s, now, BRI_AUDIT_RETENTION_DAYS);
		long grew = max_rss_kib() - before;
		fprintf(stderr, "prune of a 70 MiB log: %d, max RSS grew by %ld KiB\n", rc, grew);
#ifndef __SANITIZE_ADDRESS__
		if (grew > 16 * 1024)
			_exit(2);
#endif
		_exit(rc == 0 ? 0 : 1);
	}
	int status = -1;
	waitpid(kid, &status, 0);
	EXPECT_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "prune: status %d", status);

	struct stat st;
	EXPECT(stat(path, &st) == 0);
	EXPECT_EQ_INT(st.st_size, (off_t)strlen(marker) + 30 * (off_t)new_len);
	fd = open(path, O_RDONLY);
	char head[200] = "";
	EXPECT(fd >= 0 && read(fd, head, sizeof(head) - 1) > 0);
	if (fd >= 0)
		close(fd);
	EXPECT_MSG(strncmp(head, marker, strlen(marker)) == 0, "first line: %.80s", head);
	EXPECT_EQ_INT(tu_mode(path), 0600);
	free(buf);
	free(path);
}

/*
 * More than 64 MiB within the retention: the append that passes the cap
 * drops the oldest lines, so the file stays bounded; the newest lines, the
 * one just written included, are kept whole.
 */
static void test_cap(struct bri_store *s)
{
	const size_t cap = 1u << 20;
	char *buf = malloc(cap);
	char *path = bri_store_path(s, "audit.jsonl", "");
	if (!buf || !path)
		TU_DIE("out of memory");
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	EXPECT(fd >= 0);
	size_t len = fill_lines(buf, cap, time(NULL) - 3600, "recent");
	write_copies(fd, buf, len, 70);
	close(fd);
	bri_audit_record(s, "create", "the-newest", 0, NULL, -1, &ctx);

	struct stat st;
	EXPECT(stat(path, &st) == 0);
	EXPECT_MSG(st.st_size <= (off_t)(64u << 20), "audit.jsonl is %lld bytes",
	           (long long)st.st_size);
	EXPECT(st.st_size > (off_t)(16u << 20)); /* the newest lines, not nothing */
	fd = open(path, O_RDONLY);
	char first = 0, tail[300] = "";
	EXPECT(fd >= 0 && pread(fd, &first, 1, 0) == 1);
	off_t from = st.st_size > 299 ? st.st_size - 299 : 0;
	EXPECT(fd >= 0 && pread(fd, tail, 299, from) > 0);
	if (fd >= 0)
		close(fd);
	EXPECT_MSG(first == '{', "starts with %c: a whole line", first);
	EXPECT(strstr(tail, "\"the-newest\"") != NULL);
	int bad, nojson;
	EXPECT(each_line(s, &bad, &nojson) > 0);
	EXPECT_EQ_INT(bad, 0);
	EXPECT_EQ_INT(nojson, 0);
	free(buf);
	free(path);
}

static void test_log(void)
{
	struct bri_log_config cfg = {.level = BRI_LOG_INFO, .to_stderr = false, .ring_lines = 3};
	EXPECT_EQ_INT(bri_log_init(&cfg), 0);
	for (int i = 1; i <= 5; i++)
		bri_log(BRI_LOG_INFO, "line %d", i);
	bri_log(BRI_LOG_DEBUG, "debug is dropped");
	char *out = NULL;
	size_t len = 0;
	EXPECT_EQ_INT(bri_log_recent(&out, &len), 0);
	EXPECT(out && len == strlen(out));
	EXPECT(out && !strstr(out, "line 2") && !strstr(out, "debug is dropped"));
	const char *l3 = out ? strstr(out, "line 3") : NULL;
	const char *l4 = out ? strstr(out, "line 4") : NULL;
	const char *l5 = out ? strstr(out, "line 5") : NULL;
	EXPECT(l3 && l4 && l5 && l3 < l4 && l4 < l5);
	EXPECT(out && len > 0 && out[len - 1] == '\n');
	int lines = 0;
	for (size_t i = 0; out && i < len; i++)
		lines += out[i] == '\n';
	EXPECT_EQ_INT(lines, 3);
	free(out);

	/* The level is checked before the arguments are evaluated. */
	int evaluated = 0;
	bri_log(BRI_LOG_DEBUG, "%d", ++evaluated);
	EXPECT_EQ_INT(evaluated, 0);

	/* A very long line is kept whole or cut, never overflowing. */
	char big[20000];
	memset(big, 'q', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	bri_log(BRI_LOG_WARN, "%s", big);
	out = NULL;
	EXPECT_EQ_INT(bri_log_recent(&out, &len), 0);
	EXPECT(out && len == strlen(out) && strstr(out, "qqqq"));
	free(out);
	bri_log_shutdown();
}

/* bri_audit_follow's callback: collects the lines. */
struct seen {
	char lines[8][1024];
	int n;
};

static void collect(void *arg, const char *text)
{
	struct seen *w = arg;

	if (w->n < 8)
		snprintf(w->lines[w->n], sizeof(w->lines[0]), "%s", text);
	w->n++;
}

/* ctl/log's follower: first call shows what is there, later calls what others add. */
static void test_follow(const char *base)
{
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	struct bri_audit_cursor cur = {0};
	struct bri_op_ctx mount = bri_op_ctx_self("mount");
	struct seen w = {0};
	char *live = tu_fmt("%s/follow.db", base), *dir = tu_fmt("%s/follow-store", base);

	if (bri_store_open(live, dir, true, &s, &err) != 0)
		TU_DIE("store: %s", err.msg);
	EXPECT_EQ_INT(bri_audit_follow(s, &cur, "mount", collect, &w), 0); /* no log yet */
	EXPECT_EQ_INT(w.n, 0);
	bri_audit_record(s, "create", "by_cli", 0, NULL, 1.0, &ctx);
	bri_audit_record(s, "delete", "by_mount", 0, NULL, 0.1, &mount);
	EXPECT_EQ_INT(bri_audit_follow(s, &cur, "mount", collect, &w), 0);
	EXPECT_EQ_INT(w.n, 1); /* the mount's own line is skipped */
	EXPECT_MSG(strstr(w.lines[0], "create by_cli: ok (by cli") != NULL, "%s", w.lines[0]);
	bri_audit_record(s, "verify", "x\x1b[2J", -EIO, "bad\nthing", -1, &ctx);
	EXPECT_EQ_INT(bri_audit_follow(s, &cur, "mount", collect, &w), 0);
	EXPECT_EQ_INT(w.n, 2);
	EXPECT_MSG(strstr(w.lines[1], "verify x?[2J: failed: ") &&
	               strstr(w.lines[1], "bad?thing") && !strchr(w.lines[1], '\n'),
	           "%s", w.lines[1]);
	EXPECT_EQ_INT(bri_audit_follow(s, &cur, "mount", collect, &w), 0); /* nothing new */
	EXPECT_EQ_INT(w.n, 2);
	/* A new follower (a remount) starts with the log's end, every writer's. */
	struct bri_audit_cursor fresh = {0};
	struct seen v = {0};
	EXPECT_EQ_INT(bri_audit_follow(s, &fresh, "mount", collect, &v), 0);
	EXPECT_EQ_INT(v.n, 3);
	bri_store_close(s);
	free(live);
	free(dir);
}

static struct bri_seal *audit_key(uint8_t fill)
{
	struct seal_params p = {0};
	struct bri_seal *k = NULL;
	struct bri_err err = {0};
	uint8_t bytes[SEAL_KEY_LEN];

	memset(bytes, fill, sizeof(bytes));
	if (seal_key_derive(bytes, sizeof(bytes), &p, &k, &err) < 0)
		TU_DIE("key: %s", err.msg);
	return k;
}

/* The audit log of an encrypted store: sealed line by line, still pruned, read and followed. */
static void test_sealed(const char *base)
{
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	struct bri_seal *other = audit_key(2);
	struct bri_audit_cursor cur = {0};
	struct bri_audit_last last = {0};
	struct seen w = {0};
	char *live = tu_fmt("%s/sealed.db", base), *dir = tu_fmt("%s/sealed-store", base);
	char *path = tu_fmt("%s/audit.jsonl", dir), old[40], *json, *line = NULL, *text;
	time_t now = time(NULL);
	size_t n = 0, len = 0;
	int lines = 0;

	if (bri_store_open(live, dir, true, &s, &err) != 0)
		TU_DIE("store: %s", err.msg);
	s->seal = audit_key(1);
	/* A line 100 days old, sealed as the store seals them, then today's. */
	bri_time_utc(now - 100 * DAY, old, sizeof(old));
	json = tu_fmt("{\"time_utc\": \"%s\", \"operation\": \"create\", \"name\": \"old\"}", old);
	EXPECT_EQ_INT(seal_line(s, "audit.jsonl", json, strlen(json), &line, &n), 0);
	text = tu_fmt("%s\n", line);
	EXPECT_EQ_INT(bri_store_write_file(s, "audit.jsonl", text, strlen(text), &err), 0);
	free(text);
	free(line);
	free(json);
	bri_audit_record(s, "create", "sealed_one", 0, "1.0 MB", 1.5, &ctx);
	bri_audit_record(s, "verify", "sealed_one", 0, NULL, 0.5, &ctx);
	text = tu_read(path, &len);
	EXPECT(text && !strstr(text, "create") && !strstr(text, "sealed_one") &&
	       !strstr(text, "time_utc"));
	for (char *p = text; p && *p; p = strchr(p, '\n') + 1, lines++)
		EXPECT(strncmp(p, "sealed:", 7) == 0 && strchr(p, '\n'));
	EXPECT_EQ_INT(lines, 3);
	free(text);
	/* Pruned by the times inside the sealed lines: the old one goes. */
	EXPECT_EQ_INT(bri_audit_prune(s, now, BRI_AUDIT_RETENTION_DAYS), 0);
	text = tu_read(path, &len);
	lines = 0;
	for (char *p = text; p && *p; p = strchr(p, '\n') + 1)
		lines++;
	EXPECT_EQ_INT(lines, 2);
	free(text);
	EXPECT_EQ_INT(bri_audit_last(s, (const char *const[]){"create"}, 1, &last), 0);
	EXPECT(last.ok && last.time >= now - 5 && last.duration_s == 1.5);
	EXPECT_EQ_INT(bri_audit_follow(s, &cur, NULL, collect, &w), 0);
	EXPECT_EQ_INT(w.n, 2);
	EXPECT_MSG(strstr(w.lines[0], "create sealed_one: ok: 1.0 MB") != NULL, "%s", w.lines[0]);
	/* Another key opens none of the lines. */
	seal_free(s->seal);
	s->seal = other;
	memset(&cur, 0, sizeof(cur));
	memset(&w, 0, sizeof(w));
	last = (struct bri_audit_last){0};
	EXPECT_EQ_INT(bri_audit_follow(s, &cur, NULL, collect, &w), 0);
	EXPECT_EQ_INT(w.n, 0);
	EXPECT_EQ_INT(bri_audit_last(s, (const char *const[]){"create"}, 1, &last), 0);
	EXPECT_EQ_INT((long long)last.time, 0);
	bri_store_close(s); /* frees s->seal */
	free(path);
	free(live);
	free(dir);
}

int main(void)
{
	ctx = bri_op_ctx_self("cli");
	char *base = tu_tmpdir("audit");
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char *live = tu_fmt("%s/bri.db", base);
	if (bri_store_open(live, NULL, true, &s, &err) != 0)
		TU_DIE("store: %s", err.msg);
	test_records(s);
	test_concurrent(s);
	test_prune(s);
	test_prune_big(s);
	test_cap(s);
	bri_store_close(s);
	test_log();
	test_follow(base);
	test_sealed(base);
	free(live);
	tu_tmpdir_done(base);
	return EXPECT_RESULT();
}
