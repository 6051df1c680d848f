/*
 * audit.jsonl: one JSON line per operation, appended under an flock of the
 * file itself, and pruned of lines older than 90 days by a durable rewrite
 * that streams the file (bounded memory, any size). Past AUDIT_MAX_BYTES the
 * oldest lines go whatever their age, so the file stays bounded; an append
 * that takes it past the cap prunes at once. An appender that finds the file
 * was replaced while it waited reopens it. In an encrypted store each line
 * is sealed on its own ("sealed:" and base64, seal.h), so appending, pruning
 * and following still work line by line; every reader parses a line through
 * parse_line, the one place that opens it.
 */
#include "bri/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bri/log.h"
#include "json_number.h"
#include "seal.h"

#define AUDIT_FILE       "audit.jsonl"
#define AUDIT_MAX_BYTES  (64u << 20) /* past this, the oldest lines go, whatever their age */
#define AUDIT_TRIM_BYTES (32u << 20) /* what such a trim keeps (the newest lines) */
#define AUDIT_CHUNK      (1u << 20)  /* the prune's read and write buffers */
#define AUDIT_LINE_MAX   (64u << 10) /* longer lines are kept unparsed */

/*
 * Opens audit.jsonl for appending and locks it, reopening if it was replaced;
 * -ESTALE when the store folder itself was replaced.
 */
static int open_locked(struct bri_store *s)
{
	/* A store folder replaced while open is written to no more (neither one). */
	if (bri_store_check(s, NULL) < 0)
		return -ESTALE;
	for (int tries = 0; tries < 8; tries++) {
		struct stat a, b;
		int fd = openat(s->dirfd, AUDIT_FILE,
		                O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);

		if (fd < 0)
			return -errno;
		if (flock(fd, LOCK_EX) < 0) {
			close(fd);
			return -errno;
		}
		if (fstat(fd, &a) == 0 &&
		    fstatat(s->dirfd, AUDIT_FILE, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
		    a.st_ino == b.st_ino && a.st_dev == b.st_dev)
			return fd;
		close(fd);
	}
	return -EAGAIN;
}

static int prune_locked(struct bri_store *s, int fd, time_t now, int keep_days);

/* Whether a successful op changes the store's size: its record carries a usage sample. */
static bool records_usage(const char *op)
{
	return !strcmp(op, "create") || !strcmp(op, "create-safety") || !strcmp(op, "delete") ||
	       !strcmp(op, "cleanup");
}

void bri_audit_record(struct bri_store *s, const char *op, const char *name, int result,
                      const char *detail, double duration_s, const struct bri_op_ctx *ctx)
{
	json_object *o = json_object_new_object();
	char local[40], utc[40];
	time_t now = time(NULL);
	const char *text;
	char *line = NULL;
	struct stat st;
	int fd, n;

	if (!o)
		return;
	bri_time_local(now, local, sizeof(local));
	bri_time_utc(now, utc, sizeof(utc));
	json_object_object_add(o, "time", json_object_new_string(local));
	json_object_object_add(o, "time_utc", json_object_new_string(utc));
	json_object_object_add(o, "operation", json_object_new_string(op));
	json_object_object_add(o, "name", json_object_new_string(name ? name : ""));
	json_object_object_add(o, "result",
	                       json_object_new_string(result == 0 ? "ok" : strerror(-result)));
	if (detail)
		json_object_object_add(o, "detail", json_object_new_string(detail));
	if (duration_s >= 0)
		json_object_object_add(o, "duration_s", bri_json_double(duration_s, 3));
	if (result == 0 && records_usage(op)) {
		uint64_t logical, stored;

		/* A sample of the store's size over time (the status page's chart). */
		if (bri_store_usage(s, &logical, &stored, NULL) == 0) {
			json_object_object_add(o, "store_logical_bytes",
			                       json_object_new_int64((int64_t)logical));
			json_object_object_add(o, "store_stored_bytes",
			                       json_object_new_int64((int64_t)stored));
		}
	}
	if (ctx) {
		json_object_object_add(o, "uid", json_object_new_int64(ctx->uid));
		if (ctx->pid)
			json_object_object_add(o, "pid", json_object_new_int64(ctx->pid));
		if (ctx->via)
			json_object_object_add(o, "via", json_object_new_string(ctx->via));
	}
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
	                                             JSON_C_TO_STRING_NOSLASHESCAPE);
	n = -1;
	if (text) {
		char *kept = NULL;
		size_t klen = 0;

		/* As kept on disk: sealed in an encrypted store. */
		if (seal_line(s, AUDIT_FILE, text, strlen(text), &kept, &klen) == 0)
			n = asprintf(&line, "%s\n", kept);
		free(kept);
	}
	json_object_put(o);
	if (n < 0)
		return;

	if (result == 0)
		bri_log(BRI_LOG_INFO, "%s %s: ok%s%s", op, name ? name : "", detail ? ": " : "",
		        detail ? detail : "");
	else
		bri_log(BRI_LOG_WARN, "%s %s: failed: %s", op, name ? name : "",
		        detail ? detail : strerror(-result));

	fd = open_locked(s);
	if (fd < 0) {
		bri_log(BRI_LOG_WARN, "cannot write the audit log in %s: %s", s->dir,
		        fd == -ESTALE ? "the folder was moved or replaced while in use"
		                      : strerror(-fd));
		free(line);
		return;
	}
	if (write(fd, line, (size_t)n) != n)
		bri_log(BRI_LOG_WARN, "cannot append to %s/%s: %s", s->dir, AUDIT_FILE,
		        strerror(errno));
	/* Bounded whether or not cleanups run: prune when it passes its cap. */
	if (fstat(fd, &st) == 0 && st.st_size > (off_t)AUDIT_MAX_BYTES) {
		int rc = prune_locked(s, fd, now, BRI_AUDIT_RETENTION_DAYS);

		if (rc < 0)
			bri_log(BRI_LOG_WARN, "cannot prune %s/%s: %s", s->dir, AUDIT_FILE,
			        strerror(-rc));
	}
	close(fd);
	free(line);
}

/*
 * One line (len bytes, no newline) as a JSON object, opened first in an
 * encrypted store; NULL when it is none (or does not open).
 */
static json_object *parse_line(const struct bri_store *s, const char *line, size_t len)
{
	enum json_tokener_error jerr;
	json_object *o;
	char *text = NULL;
	size_t tlen;

	if (seal_line_open(s, AUDIT_FILE, line, len, &text, &tlen) < 0)
		return NULL;
	/* json-c stores the error through its second argument: never NULL. */
	o = json_tokener_parse_verbose(text, &jerr);
	free(text);
	if (o && !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		o = NULL;
	}
	return o;
}

/* The epoch time of one line, or -1 when it has none. */
static time_t line_time(const struct bri_store *s, const char *line, size_t len)
{
	json_object *o, *v;
	time_t t = -1;

	o = parse_line(s, line, len);
	if (!o)
		return -1;
	if (json_object_object_get_ex(o, "time_utc", &v) &&
	    json_object_is_type(v, json_type_string))
		bri_time_parse(json_object_get_string(v), &t);
	else if (json_object_object_get_ex(o, "time", &v) &&
	         json_object_is_type(v, json_type_string))
		bri_time_parse(json_object_get_string(v), &t);
	json_object_put(o);
	return t;
}

/* A buffered writer into a temporary file of the prune. */
struct out {
	int fd;      /* the temporary file */
	char *buf;   /* AUDIT_CHUNK bytes */
	size_t len;  /* bytes waiting in buf */
	off_t total; /* bytes written through it */
};

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int out_flush(struct out *o)
{
	int rc = write_all(o->fd, o->buf, o->len);

	o->len = 0;
	return rc;
}

static int out_write(struct out *o, const char *p, size_t n)
{
	int rc;

	o->total += (off_t)n;
	if (o->len + n > AUDIT_CHUNK) {
		rc = out_flush(o);
		if (rc < 0)
			return rc;
		if (n > AUDIT_CHUNK)
			return write_all(o->fd, p, n);
	}
	memcpy(o->buf + o->len, p, n);
	o->len += n;
	return 0;
}

/* Reads up to AUDIT_CHUNK bytes; the count, 0 at the end, or a negative errno. */
static ssize_t read_chunk(int fd, char *buf)
{
	ssize_t n;

	do
		n = read(fd, buf, AUDIT_CHUNK);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

/*
 * Copies the complete line (len bytes, its newline included when it has one,
 * line[len] writable) to o unless its time is before cutoff; counts drops.
 */
static int keep_line(const struct bri_store *s, struct out *o, char *line, size_t len,
                     time_t cutoff, size_t *dropped)
{
	size_t body = len && line[len - 1] == '\n' ? len - 1 : len;
	char save = line[body];
	time_t t;

	line[body] = '\0';
	t = line_time(s, line, body);
	line[body] = save;
	if (t >= 0 && t < cutoff) {
		(*dropped)++;
		return 0;
	}
	return out_write(o, line, len);
}

/*
 * Streams the lines of in to o, leaving out those older than cutoff; lines
 * without a time are kept, and so are lines longer than AUDIT_LINE_MAX (copied
 * through unparsed). Memory: one chunk and one line, whatever the file's size.
 */
static int filter_lines(const struct bri_store *s, int in, time_t cutoff, struct out *o,
                        size_t *dropped)
{
	char *chunk = malloc(AUDIT_CHUNK), *line = malloc(AUDIT_LINE_MAX + 1);
	size_t llen = 0;
	bool passing = false; /* copying the rest of an overlong line */
	ssize_t n;
	int rc = 0;

	if (!chunk || !line) {
		rc = -ENOMEM;
		goto out_free;
	}
	while ((n = read_chunk(in, chunk)) > 0) {
		for (char *p = chunk, *end = chunk + n; p < end && rc == 0;) {
			char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t seg = nl ? (size_t)(nl + 1 - p) : (size_t)(end - p);

			if (passing) {
				rc = out_write(o, p, seg);
				passing = !nl;
			} else if (llen + seg > AUDIT_LINE_MAX) {
				rc = out_write(o, line, llen);
				if (rc == 0)
					rc = out_write(o, p, seg);
				llen = 0;
				passing = !nl;
			} else {
				memcpy(line + llen, p, seg);
				llen += seg;
				if (nl) {
					rc = keep_line(s, o, line, llen, cutoff, dropped);
					llen = 0;
				}
			}
			p += seg;
		}
		if (rc < 0)
			goto out_free;
	}
	if (n < 0)
		rc = (int)n;
	else if (llen) /* a last line without its newline */
		rc = keep_line(s, o, line, llen, cutoff, dropped);
out_free:
	free(line);
	free(chunk);
	return rc;
}

/* Copies in from the first line that starts at or after offset from, to o. */
static int copy_tail(int in, off_t from, struct out *o)
{
	char *chunk = malloc(AUDIT_CHUNK);
	bool skipping = from > 0; /* the line cut by from, up to its newline */
	ssize_t n;
	int rc = 0;

	if (!chunk)
		return -ENOMEM;
	/* From the byte before: when it is a newline, from starts a line. */
	if (lseek(in, from > 0 ? from - 1 : 0, SEEK_SET) < 0) {
		rc = -errno;
		goto out_free;
	}
	while (rc == 0 && (n = read_chunk(in, chunk)) > 0) {
		char *p = chunk;

		if (skipping) {
			char *nl = memchr(chunk, '\n', (size_t)n);

			if (!nl)
				continue;
			skipping = false;
			p = nl + 1;
		}
		rc = out_write(o, p, (size_t)(chunk + n - p));
	}
	if (rc == 0 && n < 0)
		rc = (int)n;
out_free:
	free(chunk);
	return rc;
}

/*
 * The prune of audit.jsonl, whose lock the caller holds on fd: drops lines
 * older than keep_days, then, when more than AUDIT_MAX_BYTES remain, the
 * oldest lines down to AUDIT_TRIM_BYTES; rewrites the file durably when
 * anything was dropped. Streams: bounded memory for any size.
 */
static int prune_locked(struct bri_store *s, int fd, time_t now, int keep_days)
{
	time_t cutoff = now - (time_t)keep_days * 86400;
	struct out o = {.fd = -1};
	struct bri_err err = {0};
	char *tmp = NULL, *tmp2 = NULL;
	struct stat a, b;
	size_t dropped = 0;
	int in, fd2 = -1, rc;

	in = openat(s->dirfd, AUDIT_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (in < 0)
		return -errno;
	if (fstat(in, &a) < 0 || fstat(fd, &b) < 0 || a.st_ino != b.st_ino ||
	    a.st_dev != b.st_dev) {
		rc = -EAGAIN; /* replaced since it was locked */
		goto out_close_in;
	}
	o.buf = malloc(AUDIT_CHUNK);
	if (!o.buf) {
		rc = -ENOMEM;
		goto out_close_in;
	}
	o.fd = bri_store_tmpfile(s, AUDIT_FILE, "prune", &tmp, &err);
	if (o.fd < 0) {
		rc = o.fd;
		goto out_free_buf;
	}
	rc = filter_lines(s, in, cutoff, &o, &dropped);
	if (rc == 0)
		rc = out_flush(&o);
	if (rc < 0)
		goto out_remove_tmp;
	if (o.total > (off_t)AUDIT_MAX_BYTES) {
		/* Still too big within the retention: the oldest lines go. */
		struct out o2 = {.buf = o.buf};

		fd2 = bri_store_tmpfile(s, AUDIT_FILE, "trim", &tmp2, &err);
		if (fd2 < 0) {
			rc = fd2;
			goto out_remove_tmp;
		}
		o2.fd = fd2;
		rc = copy_tail(o.fd, o.total - (off_t)AUDIT_TRIM_BYTES, &o2);
		if (rc == 0)
			rc = out_flush(&o2);
		if (rc < 0)
			goto out_remove_tmp2;
		bri_log(BRI_LOG_WARN,
		        "%s/%s: over %u MiB within %d days: dropped its oldest %lld bytes", s->dir,
		        AUDIT_FILE, AUDIT_MAX_BYTES >> 20, keep_days,
		        (long long)(o.total - o2.total));
		unlinkat(s->dirfd, tmp, 0);
		close(o.fd);
		free(tmp);
		o.fd = fd2;
		tmp = tmp2;
		dropped++;
	}
	if (dropped == 0) {
		rc = 0; /* nothing to drop: the file stays as it is */
		goto out_remove_tmp;
	}
	rc = bri_store_publish(s, o.fd, tmp, AUDIT_FILE, false, &err); /* removes tmp on failure */
	goto out_close_tmp;
out_remove_tmp2:
	unlinkat(s->dirfd, tmp2, 0);
	close(fd2);
	free(tmp2);
out_remove_tmp:
	unlinkat(s->dirfd, tmp, 0);
out_close_tmp:
	close(o.fd);
	free(tmp);
out_free_buf:
	free(o.buf);
out_close_in:
	close(in);
	return rc;
}

int bri_audit_prune(struct bri_store *s, time_t now, int keep_days)
{
	int fd, rc;

	fd = open_locked(s);
	if (fd < 0)
		return fd;
	rc = prune_locked(s, fd, now, keep_days);
	close(fd);
	return rc;
}

#define AUDIT_TAIL_BYTES (256u << 10)

/* Fills the slot of the operation of one line, if it is one of ops. */
static void note_line(json_object *o, const char *const *ops, size_t n, struct bri_audit_last *last)
{
	json_object *op, *v;
	time_t t = 0;

	if (!json_object_object_get_ex(o, "operation", &op) ||
	    !json_object_is_type(op, json_type_string))
		return;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(json_object_get_string(op), ops[i]) != 0)
			continue;
		if (json_object_object_get_ex(o, "time_utc", &v) &&
		    json_object_is_type(v, json_type_string))
			bri_time_parse(json_object_get_string(v), &t);
		last[i].time = t;
		last[i].ok = json_object_object_get_ex(o, "result", &v) &&
		             json_object_is_type(v, json_type_string) &&
		             strcmp(json_object_get_string(v), "ok") == 0;
		last[i].duration_s = -1;
		if (json_object_object_get_ex(o, "duration_s", &v) &&
		    (json_object_is_type(v, json_type_double) ||
		     json_object_is_type(v, json_type_int)))
			last[i].duration_s = json_object_get_double(v);
	}
}

int bri_audit_last(const struct bri_store *s, const char *const *ops, size_t n,
                   struct bri_audit_last *last)
{
	struct stat st;
	char *buf, *p, *end;
	off_t from;
	ssize_t got;
	int fd, rc = 0;

	for (size_t i = 0; i < n; i++)
		last[i] = (struct bri_audit_last){.time = 0, .ok = false, .duration_s = -1};
	fd = openat(s->dirfd, AUDIT_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		goto out_close;
	}
	buf = malloc(AUDIT_TAIL_BYTES + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out_close;
	}
	from = st.st_size > (off_t)AUDIT_TAIL_BYTES ? st.st_size - (off_t)AUDIT_TAIL_BYTES : 0;
	got = pread(fd, buf, AUDIT_TAIL_BYTES, from);
	if (got < 0) {
		rc = -errno;
		goto out_free;
	}
	buf[got] = '\0';
	p = buf;
	if (from > 0) { /* the first line is cut */
		p = strchr(buf, '\n');
		p = p ? p + 1 : buf + got;
	}
	/* Oldest first, so later lines overwrite earlier ones. */
	for (; p < buf + got; p = end + 1) {
		json_object *o;

		end = strchr(p, '\n');
		if (!end)
			end = buf + got;
		*end = '\0';
		o = parse_line(s, p, (size_t)(end - p));
		if (o)
			note_line(o, ops, n, last);
		json_object_put(o);
	}
out_free:
	free(buf);
out_close:
	close(fd);
	return rc;
}

static const char *get_str(json_object *o, const char *key)
{
	json_object *v;

	if (json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return NULL;
}

/* One record as a readable line into buf; its time into *t. False when it is no record. */
static bool render_record(const struct bri_store *s, const char *line, size_t llen, char *buf,
                          size_t len, const char **via, time_t *t)
{
	json_object *o, *v;
	const char *when, *op, *name, *result, *detail, *by;
	char who[96] = "";
	size_t w = 0;

	o = parse_line(s, line, llen);
	if (!o)
		return false;
	when = get_str(o, "time");
	op = get_str(o, "operation");
	name = get_str(o, "name");
	result = get_str(o, "result");
	detail = get_str(o, "detail");
	by = get_str(o, "via");
	*t = -1;
	if (get_str(o, "time_utc"))
		bri_time_parse(get_str(o, "time_utc"), t);
	else if (when)
		bri_time_parse(when, t);
	if (!op || !result) {
		json_object_put(o);
		return false;
	}
	w += (size_t)snprintf(who + w, sizeof(who) - w, "by %s", by ? by : "?");
	if (json_object_object_get_ex(o, "pid", &v) && w < sizeof(who))
		w += (size_t)snprintf(who + w, sizeof(who) - w, ", pid %lld",
		                      (long long)json_object_get_int64(v));
	if (json_object_object_get_ex(o, "uid", &v) && w < sizeof(who))
		snprintf(who + w, sizeof(who) - w, ", uid %lld",
		         (long long)json_object_get_int64(v));
	snprintf(buf, len, "%s %s %s: %s%s%s%s (%s)", when ? when : "?", op, name ? name : "",
	         strcmp(result, "ok") ? "failed: " : "", result, detail ? ": " : "",
	         detail ? detail : "", who);
	for (char *c = buf; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?'; /* one line, no terminal escapes */
	*via = by && !strcmp(by, "mount") ? "mount" : by && !strcmp(by, "cli") ? "cli" : "";
	json_object_put(o);
	return true;
}

int bri_audit_follow(const struct bri_store *s, struct bri_audit_cursor *cur, const char *skip_via,
                     void (*fn)(void *arg, const char *text), void *arg)
{
	bool first = !cur->started, by_time = false;
	time_t after = cur->last_time;
	uint64_t start;
	struct stat st;
	char *buf, *p, *end;
	ssize_t got;
	size_t want;
	int fd, rc = 0;

	fd = openat(s->dirfd, AUDIT_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno != ENOENT)
			return -errno;
		cur->started = true;
		cur->ino = 0;
		cur->off = 0;
		return 0;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		goto out_close;
	}
	if (first)
		start = (uint64_t)st.st_size > BRI_AUDIT_FIRST_MAX
		            ? (uint64_t)st.st_size - BRI_AUDIT_FIRST_MAX
		            : 0;
	else if (cur->ino != (uint64_t)st.st_ino || (uint64_t)st.st_size < cur->off)
		start = 0; /* rewritten (pruned): the lines after the last seen */
	else
		start = cur->off;
	by_time = !first && start == 0 && cur->ino != (uint64_t)st.st_ino;
	if (!first && (uint64_t)st.st_size < cur->off)
		by_time = true;
	want = (uint64_t)st.st_size - start > BRI_AUDIT_FOLLOW_MAX
	           ? BRI_AUDIT_FOLLOW_MAX
	           : (size_t)((uint64_t)st.st_size - start);
	buf = malloc(want + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out_close;
	}
	got = want ? pread(fd, buf, want, (off_t)start) : 0;
	if (got < 0) {
		rc = -errno;
		free(buf);
		goto out_close;
	}
	buf[got] = '\0';
	p = buf;
	/* The first call may start mid-line: from the next whole line. */
	if (first && start > 0) {
		char *nl = memchr(p, '\n', (size_t)got);

		p = nl ? nl + 1 : buf + got;
	}
	while ((end = memchr(p, '\n', (size_t)(buf + got - p)))) {
		char text[1024];
		const char *via = "";
		time_t t = -1;

		*end = '\0';
		if (render_record(s, p, (size_t)(end - p), text, sizeof(text), &via, &t)) {
			bool shown = !(by_time && t <= after) &&
			             (first || !skip_via || strcmp(via, skip_via));

			if (t > cur->last_time)
				cur->last_time = t;
			if (shown)
				fn(arg, text);
		}
		p = end + 1;
	}
	cur->started = true;
	cur->ino = (uint64_t)st.st_ino;
	cur->off = start + (uint64_t)(p - buf);
	free(buf);
out_close:
	close(fd);
	return rc;
}

/* Hands the record of one line to fn when it is at or after since; fn's value. */
static int scan_line(const struct bri_store *s, const char *line, size_t len, time_t since,
                     int (*fn)(void *arg, const struct bri_audit_rec *rec), void *arg)
{
	struct bri_audit_rec r = {.duration_s = -1, .store_logical = -1, .store_stored = -1};
	const char *when;
	json_object *o, *v;
	int rc = 0;

	o = parse_line(s, line, len); /* opened first in an encrypted store */
	if (!o)
		return 0;
	when = get_str(o, "time_utc");
	if (!when)
		when = get_str(o, "time");
	r.op = get_str(o, "operation");
	r.result = get_str(o, "result");
	if (!when || bri_time_parse(when, &r.time) < 0 || !r.op || !r.result || r.time < since)
		goto out_put;
	r.name = get_str(o, "name");
	r.name = r.name ? r.name : "";
	r.detail = get_str(o, "detail");
	r.detail = r.detail ? r.detail : "";
	r.ok = !strcmp(r.result, "ok");
	if (json_object_object_get_ex(o, "duration_s", &v) &&
	    (json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int)))
		r.duration_s = json_object_get_double(v);
	if (json_object_object_get_ex(o, "store_logical_bytes", &v) &&
	    json_object_is_type(v, json_type_int))
		r.store_logical = json_object_get_int64(v);
	if (json_object_object_get_ex(o, "store_stored_bytes", &v) &&
	    json_object_is_type(v, json_type_int))
		r.store_stored = json_object_get_int64(v);
	rc = fn(arg, &r);
out_put:
	json_object_put(o);
	return rc;
}

int bri_audit_scan(const struct bri_store *s, time_t since,
                   int (*fn)(void *arg, const struct bri_audit_rec *rec), void *arg)
{
	char *chunk, *line;
	size_t llen = 0;
	bool skipping = false; /* inside a line longer than AUDIT_LINE_MAX */
	ssize_t n = 0;
	int fd, rc = 0;

	fd = openat(s->dirfd, AUDIT_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	chunk = malloc(AUDIT_CHUNK);
	line = malloc(AUDIT_LINE_MAX + 1);
	if (!chunk || !line) {
		rc = -ENOMEM;
		goto out_free;
	}
	while (rc == 0 && (n = read_chunk(fd, chunk)) > 0) {
		for (char *p = chunk, *end = chunk + n; p < end && rc == 0;) {
			char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t seg = nl ? (size_t)(nl - p) : (size_t)(end - p);

			if (!skipping && llen + seg > AUDIT_LINE_MAX) {
				skipping = true; /* no record is that long: left out */
				llen = 0;
			}
			if (!skipping) {
				memcpy(line + llen, p, seg);
				llen += seg;
			}
			if (nl) {
				if (!skipping && llen) {
					line[llen] = '\0';
					rc = scan_line(s, line, llen, since, fn, arg);
				}
				llen = 0;
				skipping = false;
			}
			p += seg + (nl ? 1 : 0);
		}
	}
	if (rc == 0 && n < 0)
		rc = (int)n;
	if (rc == 0 && llen && !skipping) { /* a last line without its newline */
		line[llen] = '\0';
		rc = scan_line(s, line, llen, since, fn, arg);
	}
out_free:
	free(line);
	free(chunk);
	close(fd);
	return rc;
}
