/*
 * The inspection engine (include/bri/inspect.h): schema.sql, table CSV, the
 * sqldiff-compatible summary and the per-table diff CSV, each rendered one
 * row at a time by a statement that streams (diffs are joins over the two
 * databases attached read-only, never a changeset held in memory), and the
 * at/TIME lookup over the catalog. It writes no files and knows nothing of
 * FUSE or of the command line.
 */
#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bri/inspect.h"
#include "bri/snapshot.h"
#include "snapshot_sql.h"

/*
 * ---- the row buffer: one rendered row ----
 *
 * A row is a list of segments: literal bytes in the buffer (separators,
 * small values, quotes), and large values left where SQLite holds them
 * (valid until the statement steps again), written out as they are read:
 * a BLOB as hex, a text with its '"' doubled. So a 100 MiB blob costs no
 * 200 MiB of hex. The literal bytes of a row are capped (BRI_RENDER_ROW_MAX
 * or the render's own cap).
 */

/* A value larger than this is a segment of its own, not copied. */
#define BIG_VALUE 4096

enum seg_kind { SEG_BUF, SEG_HEX, SEG_TEXT };

struct seg {
	enum seg_kind kind;       /* what the bytes are */
	const unsigned char *src; /* SEG_HEX, SEG_TEXT: the value's bytes (SQLite's) */
	size_t off;               /* SEG_BUF: where its bytes start in the buffer */
	size_t n;                 /* bytes of src, or of the buffer */
};

struct rowbuf {
	char *p;         /* literal bytes, malloc'd */
	size_t len;      /* bytes in use */
	size_t cap;      /* bytes allocated */
	size_t max;      /* the cap of len (0: BRI_RENDER_ROW_MAX) */
	size_t flushed;  /* bytes of p already in a SEG_BUF segment */
	struct seg *seg; /* the row's segments, malloc'd */
	size_t nseg;     /* segments in use */
	size_t segcap;   /* segments allocated */
	bool toobig;     /* an append went over the cap */
	bool nomem;      /* an allocation failed */
};

static void rb_add(struct rowbuf *b, const void *data, size_t n)
{
	size_t want, max = b->max ? b->max : BRI_RENDER_ROW_MAX;
	char *np;

	if (b->toobig || b->nomem)
		return;
	if (n > max - b->len) {
		b->toobig = true;
		return;
	}
	if (b->len + n > b->cap) {
		want = b->cap ? b->cap : 4096;
		while (want < b->len + n)
			want *= 2;
		if (want > max)
			want = max;
		np = realloc(b->p, want);
		if (!np) {
			b->nomem = true;
			return;
		}
		b->p = np;
		b->cap = want;
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
}

static void rb_push(struct rowbuf *b, struct seg g)
{
	struct seg *ns;

	if (b->toobig || b->nomem)
		return;
	if (b->nseg == b->segcap) {
		size_t want = b->segcap ? 2 * b->segcap : 16;

		/* At most a few per column; SQLite allows 32767 columns. */
		if (want > (1u << 20)) {
			b->toobig = true;
			return;
		}
		ns = realloc(b->seg, want * sizeof(*ns));
		if (!ns) {
			b->nomem = true;
			return;
		}
		b->seg = ns;
		b->segcap = want;
	}
	b->seg[b->nseg++] = g;
}

/* Ends the literal bytes appended since the last segment with a SEG_BUF. */
static void rb_close(struct rowbuf *b)
{
	if (b->len > b->flushed) {
		rb_push(b,
		        (struct seg){.kind = SEG_BUF, .off = b->flushed, .n = b->len - b->flushed});
		b->flushed = b->len;
	}
}

/* A large value as a segment of its own. */
static void rb_big(struct rowbuf *b, enum seg_kind kind, const unsigned char *src, size_t n)
{
	rb_close(b);
	rb_push(b, (struct seg){.kind = kind, .src = src, .n = n});
}

static void rb_reset(struct rowbuf *b)
{
	b->len = 0;
	b->flushed = 0;
	b->nseg = 0;
}

static void rb_str(struct rowbuf *b, const char *s)
{
	rb_add(b, s, strlen(s));
}

/* Whether the shell's CSV mode quotes text s: empty, or a byte it must. */
static bool csv_needs_quote(const unsigned char *s)
{
	if (!*s)
		return true;
	for (; *s; s++)
		if (*s <= ' ' || *s == '"' || *s == '\'' || *s == ',' || *s >= 0x7f)
			return true;
	return false;
}

/* Text s as the sqlite3 shell's CSV mode writes it. */
static void csv_text(struct rowbuf *b, const char *s)
{
	const char *q;

	if (!csv_needs_quote((const unsigned char *)s)) {
		rb_str(b, s);
		return;
	}
	rb_add(b, "\"", 1);
	while ((q = strchr(s, '"'))) {
		rb_add(b, s, (size_t)(q - s) + 1);
		rb_add(b, "\"", 1);
		s = q + 1;
	}
	rb_str(b, s);
	rb_add(b, "\"", 1);
}

/* Column i of st as a CSV field: NULL empty, BLOB as "X'HEX'", else its text. */
static void csv_value(struct rowbuf *b, sqlite3_stmt *st, int i)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p;
	char chunk[512];
	size_t n, k, j;
	bool quoted;

	switch (sqlite3_column_type(st, i)) {
	case SQLITE_NULL:
		return;
	case SQLITE_BLOB:
		p = sqlite3_column_blob(st, i);
		n = (size_t)sqlite3_column_bytes(st, i);
		rb_add(b, "\"X'", 3);
		if (n > BIG_VALUE / 2) {
			rb_big(b, SEG_HEX, p, n);
		} else {
			for (k = 0; k < n;) {
				for (j = 0; j + 2 <= sizeof(chunk) && k < n; k++) {
					chunk[j++] = hex[p[k] >> 4];
					chunk[j++] = hex[p[k] & 15];
				}
				rb_add(b, chunk, j);
			}
		}
		rb_add(b, "'\"", 2);
		return;
	default:
		p = sqlite3_column_text(st, i);
		if (!p) {
			b->nomem = true;
			return;
		}
		/* The shell shows text up to its first NUL byte. */
		n = strlen((const char *)p);
		if (n <= BIG_VALUE) {
			csv_text(b, (const char *)p);
			return;
		}
		quoted = csv_needs_quote(p);
		if (quoted)
			rb_add(b, "\"", 1);
		rb_big(b, SEG_TEXT, p, n); /* unquoted text holds no '"' to double */
		if (quoted)
			rb_add(b, "\"", 1);
	}
}

/* Columns [from, from + n) of st as one CSV line, after prefix (NULL: none). */
static void csv_line(struct rowbuf *b, const char *prefix, sqlite3_stmt *st, int from, int n)
{
	if (prefix) {
		rb_str(b, prefix);
		if (n > 0)
			rb_add(b, ",", 1);
	}
	for (int i = 0; i < n; i++) {
		if (i)
			rb_add(b, ",", 1);
		csv_value(b, st, from + i);
	}
	rb_add(b, "\n", 1);
}

/* s (n bytes) as a JSON string. */
static void json_text(struct rowbuf *b, const unsigned char *s, size_t n)
{
	char esc[8];
	size_t from = 0;

	rb_add(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		if (s[i] >= 0x20 && s[i] != '"' && s[i] != '\\')
			continue;
		rb_add(b, s + from, i - from);
		if (s[i] == '"' || s[i] == '\\')
			snprintf(esc, sizeof(esc), "\\%c", s[i]);
		else if (s[i] == '\n')
			snprintf(esc, sizeof(esc), "\\n");
		else
			snprintf(esc, sizeof(esc), "\\u%04x", s[i]);
		rb_str(b, esc);
		from = i + 1;
	}
	rb_add(b, s + from, n - from);
	rb_add(b, "\"", 1);
}

/*
 * Column i of st as a JSON value: null, a number (INTEGER; REAL as SQLite's
 * text of it, null when not finite), a string (TEXT, all of its bytes), or
 * {"hex":"..."} (BLOB).
 */
static void json_value(struct rowbuf *b, sqlite3_stmt *st, int i)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p;
	size_t n;
	double d;

	switch (sqlite3_column_type(st, i)) {
	case SQLITE_NULL:
		rb_str(b, "null");
		return;
	case SQLITE_FLOAT:
		d = sqlite3_column_double(st, i);
		if (!isfinite(d)) {
			rb_str(b, "null");
			return;
		}
		/* fall through */
	case SQLITE_INTEGER:
		rb_str(b, (const char *)sqlite3_column_text(st, i));
		return;
	case SQLITE_BLOB:
		p = sqlite3_column_blob(st, i);
		n = (size_t)sqlite3_column_bytes(st, i);
		rb_str(b, "{\"hex\":\"");
		if (n > BIG_VALUE / 2) {
			rb_big(b, SEG_HEX, p, n);
		} else {
			for (size_t k = 0; k < n; k++) {
				char two[2] = {hex[p[k] >> 4], hex[p[k] & 15]};

				rb_add(b, two, 2);
			}
		}
		rb_str(b, "\"}");
		return;
	default:
		p = sqlite3_column_text(st, i);
		if (!p) {
			b->nomem = true;
			return;
		}
		json_text(b, p, (size_t)sqlite3_column_bytes(st, i));
	}
}

/* Columns [from, from + n) of st as a JSON object with the keys keys. */
static void json_object(struct rowbuf *b, char **keys, sqlite3_stmt *st, int from, int n)
{
	rb_add(b, "{", 1);
	for (int i = 0; i < n; i++) {
		if (i)
			rb_add(b, ",", 1);
		rb_str(b, keys[i]);
		json_value(b, st, from + i);
	}
	rb_add(b, "}", 1);
}

/* ---- renders ---- */

enum render_kind { R_SCHEMA, R_TABLE, R_SUMMARY, R_DIFF };

struct bri_render {
	enum render_kind kind;
	sqlite3 *db;         /* the caller's connection */
	sqlite3_stmt *st;    /* the statement being stepped, or NULL */
	struct rowbuf row;   /* the current row */
	size_t si;           /* the row's segment being handed out */
	size_t spos;         /* bytes (SEG_HEX: hex digits) of it handed out */
	bool half;           /* SEG_TEXT: a '"' was handed out once of twice */
	uint64_t off;        /* bytes handed out or skipped in all */
	bool started;        /* the first row (a header) was rendered */
	bool done;           /* no more rows */
	int failed;          /* the error that stopped the render, or 0 */
	struct bri_err ferr; /* its message */
	int ncols;           /* columns per side (R_TABLE, R_DIFF) */
	char *header;        /* R_DIFF: the header line, malloc'd */
	int phase;           /* R_DIFF: 0 deleted, 1 changed, 2 added */
	char *sql[3];        /* R_DIFF: the statement of each phase (NULL: none) */
	const char *sign[3]; /* R_DIFF: the op of each phase */
	bool json;           /* R_DIFF: JSON lines instead of CSV */
	char **jkeys;        /* R_DIFF: each column's JSON key, "\"name\":", malloc'd */
};

static int sql_fail(struct bri_render *r, int rc, struct bri_err *err, const char *what)
{
	int e = (rc & 0xff) == SQLITE_NOMEM ? -ENOMEM : (rc & 0xff) == SQLITE_BUSY ? -EBUSY : -EIO;

	return bri_err_set(err, e, "%s: %s", what, sqlite3_errmsg(r->db));
}

static struct bri_render *render_new(sqlite3 *db, enum render_kind kind)
{
	struct bri_render *r = calloc(1, sizeof(*r));

	if (r) {
		r->db = db;
		r->kind = kind;
	}
	return r;
}

void bri_render_free(struct bri_render *r)
{
	if (!r)
		return;
	sqlite3_finalize(r->st);
	free(r->row.p);
	free(r->row.seg);
	free(r->header);
	for (int i = 0; r->jkeys && i < r->ncols; i++)
		free(r->jkeys[i]);
	free(r->jkeys);
	for (int i = 0; i < 3; i++)
		sqlite3_free(r->sql[i]);
	free(r);
}

static int prepare(struct bri_render *r, const char *sql, struct bri_err *err)
{
	int rc;

	sqlite3_finalize(r->st);
	r->st = NULL;
	rc = sqlite3_prepare_v2(r->db, sql, -1, &r->st, NULL);
	if (rc != SQLITE_OK)
		return sql_fail(r, rc, err, "cannot read the database");
	return 0;
}

/* Steps r->st: 1 a row, 0 the end, or a negative errno. */
static int step(struct bri_render *r, struct bri_err *err)
{
	int rc = sqlite3_step(r->st);

	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return sql_fail(r, rc, err, "cannot read the database");
}

static int summary_line(struct bri_render *r, const char *table, struct bri_err *err);
static int names_of(sqlite3 *db, const char *sql, char ***names, size_t *n, struct bri_err *err);

/* Renders the next row into r->row: 1 a row, 0 the end, or a negative errno. */
static int next_row(struct bri_render *r, struct bri_err *err)
{
	int rc;

	switch (r->kind) {
	case R_SCHEMA:
		rc = step(r, err);
		if (rc == 1) {
			rb_str(&r->row, (const char *)sqlite3_column_text(r->st, 0));
			rb_add(&r->row, ";\n", 2);
		}
		return rc;
	case R_TABLE:
		if (!r->started) {
			r->started = true;
			for (int i = 0; i < r->ncols; i++) {
				if (i)
					rb_add(&r->row, ",", 1);
				csv_text(&r->row, sqlite3_column_name(r->st, i));
			}
			rb_add(&r->row, "\n", 1);
			return 1;
		}
		rc = step(r, err);
		if (rc == 1)
			csv_line(&r->row, NULL, r->st, 0, r->ncols);
		return rc;
	case R_SUMMARY:
		rc = step(r, err);
		if (rc == 1)
			rc = summary_line(r, (const char *)sqlite3_column_text(r->st, 0), err);
		return rc;
	case R_DIFF:
		if (!r->started) {
			r->started = true;
			if (!r->json)
				rb_str(&r->row, r->header);
			return 1;
		}
		for (;;) {
			if (!r->st) {
				while (r->phase < 3 && !r->sql[r->phase])
					r->phase++;
				if (r->phase == 3)
					return 0;
				rc = prepare(r, r->sql[r->phase], err);
				if (rc < 0)
					return rc;
			}
			rc = step(r, err);
			if (rc < 0)
				return rc;
			if (rc == 1)
				break;
			sqlite3_finalize(r->st);
			r->st = NULL;
			r->phase++;
		}
		if (r->json) {
			rb_str(&r->row, r->phase == 0   ? "{\"op\":\"-\",\"old\":"
			                : r->phase == 1 ? "{\"op\":\"~\",\"old\":"
			                                : "{\"op\":\"+\",\"new\":");
			json_object(&r->row, r->jkeys, r->st, 0, r->ncols);
			if (r->phase == 1) {
				rb_str(&r->row, ",\"new\":");
				json_object(&r->row, r->jkeys, r->st, r->ncols, r->ncols);
			}
			rb_str(&r->row, "}\n");
		} else if (r->phase == 1) {
			csv_line(&r->row, "~-", r->st, 0, r->ncols);
			csv_line(&r->row, "~+", r->st, r->ncols, r->ncols);
		} else {
			csv_line(&r->row, r->sign[r->phase], r->st, 0, r->ncols);
		}
		return 1;
	}
	return 0;
}

/* Makes sure a row with unread bytes is at hand: 1, 0 at the end, or an error. */
static int fill(struct bri_render *r, struct bri_err *err)
{
	size_t max = r->row.max ? r->row.max : (size_t)BRI_RENDER_ROW_MAX;
	int rc;

	if (r->failed) {
		if (err)
			*err = r->ferr;
		return r->failed;
	}
	while (r->si >= r->row.nseg) {
		if (r->done)
			return 0;
		rb_reset(&r->row);
		r->si = 0;
		r->spos = 0;
		r->half = false;
		rc = next_row(r, &r->ferr);
		rb_close(&r->row);
		if (rc == 1 && r->row.nomem)
			rc = bri_err_set(&r->ferr, -ENOMEM, "out of memory");
		if (rc == 1 && r->row.toobig)
			rc =
			    bri_err_set(&r->ferr, -EFBIG,
			                "a row renders to more than %zu bytes (%zu MiB), the limit",
			                max, max >> 20);
		if (rc < 0) {
			r->failed = rc;
			rb_reset(&r->row);
			if (err)
				*err = r->ferr;
			return rc;
		}
		if (rc == 0) {
			r->done = true;
			rb_reset(&r->row);
			sqlite3_finalize(r->st);
			r->st = NULL;
			return 0;
		}
	}
	return 1;
}

/*
 * Hands out up to len bytes of the current row into buf (NULL: drops them)
 * and returns how many.
 */
static size_t emit(struct bri_render *r, char *buf, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t got = 0, n, end;

	while (got < len && r->si < r->row.nseg) {
		const struct seg *g = &r->row.seg[r->si];

		switch (g->kind) {
		case SEG_BUF:
			n = g->n - r->spos;
			if (n > len - got)
				n = len - got;
			if (buf)
				memcpy(buf + got, r->row.p + g->off + r->spos, n);
			r->spos += n;
			got += n;
			end = g->n;
			break;
		case SEG_HEX:
			end = 2 * g->n;
			for (; got < len && r->spos < end; r->spos++, got++)
				if (buf)
					buf[got] = hex[(r->spos & 1) ? g->src[r->spos / 2] & 15
					                             : g->src[r->spos / 2] >> 4];
			break;
		case SEG_TEXT:
		default:
			end = g->n;
			while (got < len && r->spos < end) {
				unsigned char c = g->src[r->spos];

				if (buf)
					buf[got] = (char)c;
				got++;
				if (c == '"' && !r->half) {
					r->half = true; /* once more */
				} else {
					r->half = false;
					r->spos++;
				}
			}
			break;
		}
		if (r->spos >= end) {
			r->si++;
			r->spos = 0;
			r->half = false;
		}
	}
	r->off += got;
	return got;
}

ssize_t bri_render_read(struct bri_render *r, void *buf, size_t len, struct bri_err *err)
{
	size_t got = 0;
	int rc;

	while (got < len) {
		rc = fill(r, err);
		if (rc < 0)
			return rc;
		if (rc == 0)
			break;
		got += emit(r, (char *)buf + got, len - got);
	}
	return (ssize_t)got;
}

int bri_render_skip(struct bri_render *r, uint64_t want, struct bri_err *err)
{
	int rc;

	while (want > 0) {
		rc = fill(r, err);
		if (rc <= 0)
			return rc;
		want -= emit(r, NULL, want > SIZE_MAX ? SIZE_MAX : (size_t)want);
	}
	return 0;
}

int bri_render_count(struct bri_render *r, uint64_t *size, struct bri_err *err)
{
	uint64_t start = r->off;
	int rc = bri_render_skip(r, UINT64_MAX, err);

	if (rc == 0)
		*size += r->off - start;
	return rc;
}

void bri_render_set_row_max(struct bri_render *r, size_t max)
{
	r->row.max = max && max < BRI_RENDER_ROW_MAX ? max : BRI_RENDER_ROW_MAX;
}

uint64_t bri_render_offset(const struct bri_render *r)
{
	return r->off;
}

/* ---- opening ---- */

int bri_inspect_open(struct bri_reader *r, sqlite3 **out, struct bri_err *err)
{
	sqlite3 *db = NULL;
	int rc = snapshot_open_reader(r, &db, err);

	if (rc < 0)
		return rc;
	/* Reading the schema now makes a file that is no database fail here. */
	rc = sqlite3_exec(db, "SELECT 1 FROM sqlite_schema LIMIT 1", NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		bri_err_set(err, -EINVAL, "%s is not an SQLite database: %s", r->label,
		            sqlite3_errmsg(db));
		sqlite3_close(db);
		return -EINVAL;
	}
	*out = db;
	return 0;
}

int bri_diff_open(struct bri_reader *old, struct bri_reader *new, sqlite3 **out,
                  struct bri_err *err)
{
	sqlite3 *db = NULL;
	int rc = bri_inspect_open(old, &db, err);

	if (rc < 0)
		return rc;
	/* OLD is "main"; "o" names it too, so that queries read alike. */
	rc = snapshot_attach_reader(db, old, "o", err);
	if (rc == 0)
		rc = snapshot_attach_reader(db, new, "n", err);
	if (rc == 0 && sqlite3_exec(db, "SELECT 1 FROM n.sqlite_schema LIMIT 1", NULL, NULL,
	                            NULL) != SQLITE_OK)
		rc = bri_err_set(err, -EINVAL, "%s is not an SQLite database: %s", new->label,
		                 sqlite3_errmsg(db));
	if (rc < 0) {
		sqlite3_close(db);
		return rc;
	}
	*out = db;
	return 0;
}

void bri_inspect_live_drop(struct bri_store *s, char *tmp_name, struct bri_reader *reader)
{
	static const char *const sidecars[] = {"", "-journal", "-wal", "-shm"};
	char file[BRI_NAME_MAX + 96];

	bri_reader_close(reader);
	if (tmp_name && s)
		for (size_t i = 0; i < sizeof(sidecars) / sizeof(sidecars[0]); i++)
			if (snprintf(file, sizeof(file), "%s%s", tmp_name, sidecars[i]) <
			    (int)sizeof(file))
				bri_store_unlink(s, file);
	free(tmp_name);
}

int bri_inspect_live_take(struct bri_store *s, int busy_timeout_ms, char **tmp_name,
                          struct bri_reader **reader, struct bri_err *err)
{
	struct bri_snapshot_info info = {0};
	struct bri_reader *r = NULL;
	char *tmp = NULL, *p = NULL;
	int fd, rc;

	if (s->seal) {
		/* An encrypted store holds nothing in the clear: the copy of the live
		 * database goes beside it (an absolute name, which bri_store_unlink
		 * takes as it is). */
		if (asprintf(&tmp, "%.*s/.bri-live-inspect.XXXXXX.tmp",
		             (int)(strrchr(s->db_path, '/') - s->db_path), s->db_path) < 0)
			return bri_err_set(err, -ENOMEM, "out of memory");
		fd = mkstemps(tmp, 4);
		if (fd < 0) {
			rc = bri_err_set(err, -errno, "cannot make %s: %s", tmp, strerror(errno));
			free(tmp);
			return rc;
		}
	} else {
		fd = bri_store_tmpfile(s, "live", "inspect", &tmp, err);
		if (fd < 0)
			return fd;
	}
	close(fd);
	/* SQLite writes the copy by name: a name through the store's descriptor. */
	p = s->seal ? strdup(tmp) : bri_store_fd_path(s, tmp, NULL);
	if (!p) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_remove;
	}
	rc = bri_snapshot_take(s->db_path, p, busy_timeout_ms, &info, err);
	bri_snapshot_info_free(&info);
	if (rc < 0) {
		bri_err_wrap(err, rc, "cannot take a snapshot of the live database %s", s->db_path);
		goto out_remove;
	}
	rc = bri_reader_open_path(p, &r, err);
	if (rc < 0)
		goto out_remove;
	free(p);
	*tmp_name = tmp;
	*reader = r;
	return 0;
out_remove:
	free(p);
	bri_inspect_live_drop(s, tmp, NULL);
	return rc;
}

/* ---- schema.sql and tables ---- */

int bri_inspect_schema(sqlite3 *db, struct bri_render **out, struct bri_err *err)
{
	struct bri_render *r = render_new(db, R_SCHEMA);
	int rc;

	if (!r)
		return bri_err_set(err, -ENOMEM, "out of memory");
	rc = prepare(r, "SELECT sql FROM main.sqlite_schema WHERE sql IS NOT NULL ORDER BY rowid",
	             err);
	if (rc < 0) {
		bri_render_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

void bri_inspect_names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* The names the one-column statement sql returns, in order; capped at 1<<20. */
static int names_of(sqlite3 *db, const char *sql, char ***names, size_t *n, struct bri_err *err)
{
	sqlite3_stmt *st = NULL;
	char **v = NULL, **nv;
	size_t k = 0, cap = 0;
	int rc;

	rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return bri_err_set(err, -EIO, "cannot read the schema: %s", sqlite3_errmsg(db));
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *s = (const char *)sqlite3_column_text(st, 0);

		if (k == cap) {
			cap = cap ? cap * 2 : 16;
			nv = cap > (1u << 20) ? NULL : realloc(v, cap * sizeof(*v));
			if (!nv)
				goto out_nomem;
			v = nv;
		}
		v[k] = strdup(s ? s : "");
		if (!v[k])
			goto out_nomem;
		k++;
	}
	if (rc != SQLITE_DONE) {
		bri_err_set(err, -EIO, "cannot read the schema: %s", sqlite3_errmsg(db));
		sqlite3_finalize(st);
		bri_inspect_names_free(v, k);
		return -EIO;
	}
	sqlite3_finalize(st);
	*names = v;
	*n = k;
	return 0;
out_nomem:
	sqlite3_finalize(st);
	bri_inspect_names_free(v, k);
	return bri_err_set(err, -ENOMEM, "out of memory (or more than a million tables)");
}

int bri_inspect_tables(sqlite3 *db, char ***names, size_t *n, struct bri_err *err)
{
	return names_of(db,
	                "SELECT name FROM main.sqlite_schema WHERE type='table' AND name NOT "
	                "LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name COLLATE BINARY",
	                names, n, err);
}

/* Whether schema holds a table (not a view) called table, by exact name. */
static bool has_table(sqlite3 *db, const char *schema, const char *table)
{
	sqlite3_stmt *st = NULL;
	char *sql = sqlite3_mprintf("SELECT 1 FROM \"%w\".sqlite_schema WHERE type='table' AND "
	                            "name=?1",
	                            schema);
	bool yes = false;

	if (sql && sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
		yes = sqlite3_step(st) == SQLITE_ROW;
	}
	sqlite3_finalize(st);
	sqlite3_free(sql);
	return yes;
}

int bri_inspect_table_csv(sqlite3 *db, const char *table, struct bri_render **out,
                          struct bri_err *err)
{
	struct bri_render *r;
	char *sql;
	int rc;

	if (!has_table(db, "main", table))
		return bri_err_set(err, -ENOENT, "no table called '%s'", table);
	r = render_new(db, R_TABLE);
	sql = sqlite3_mprintf("SELECT * FROM main.\"%w\"", table);
	if (!r || !sql) {
		bri_render_free(r);
		sqlite3_free(sql);
		return bri_err_set(err, -ENOMEM, "out of memory");
	}
	rc = prepare(r, sql, err);
	sqlite3_free(sql);
	if (rc < 0) {
		bri_render_free(r);
		return rc;
	}
	r->ncols = sqlite3_column_count(r->st);
	*out = r;
	return 0;
}

/* ---- the columns and key of a table, as sqldiff --primarykey sees them ---- */

struct cols {
	char **name; /* raw column names: key first (in key order), then the others */
	int n;       /* entries in name */
	int npk;     /* key columns at the front of name */
	bool rowid;  /* the key is the rowid alias name[0], not a column */
	bool ok;     /* false: the rowid is the key but no alias reaches it */
};

static void cols_free(struct cols *c)
{
	for (int i = 0; i < c->n; i++)
		sqlite3_free(c->name[i]);
	sqlite3_free(c->name);
	memset(c, 0, sizeof(*c));
}

/* sqldiff's columnNames() with --primarykey, for schema.table. */
static int cols_read(sqlite3 *db, const char *schema, const char *table, struct cols *c,
                     struct bri_err *err)
{
	static const char *const alias[] = {"rowid", "_rowid_", "oid"};
	sqlite3_stmt *st = NULL;
	char *sql;
	int rc, ntab = 0, npk = 0, k, j;

	memset(c, 0, sizeof(*c));
	sql = sqlite3_mprintf("PRAGMA \"%w\".table_info(%Q)", schema, table);
	if (!sql)
		return bri_err_set(err, -ENOMEM, "out of memory");
	rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	sqlite3_free(sql);
	if (rc != SQLITE_OK)
		return bri_err_set(err, -EIO, "cannot read the columns of %s: %s", table,
		                   sqlite3_errmsg(db));
	while (sqlite3_step(st) == SQLITE_ROW) {
		ntab++;
		if (sqlite3_column_int(st, 5) > 0)
			npk++;
	}
	sqlite3_reset(st);
	c->npk = npk ? npk : 1;
	c->rowid = npk == 0;
	c->n = c->npk + ntab - npk;
	c->name = sqlite3_malloc64(sizeof(char *) * (size_t)(c->n + 1));
	if (!c->name) {
		sqlite3_finalize(st);
		c->n = 0;
		return bri_err_set(err, -ENOMEM, "out of memory");
	}
	memset(c->name, 0, sizeof(char *) * (size_t)(c->n + 1));
	k = c->npk;
	while (sqlite3_step(st) == SQLITE_ROW) {
		int pk = sqlite3_column_int(st, 5);
		char *nm = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(st, 1));

		if (pk > 0 && pk <= c->npk && !c->name[pk - 1])
			c->name[pk - 1] = nm;
		else if (k < c->n)
			c->name[k++] = nm;
		else
			sqlite3_free(nm);
	}
	sqlite3_finalize(st);
	c->ok = true;
	if (c->rowid) {
		for (size_t i = 0; i < sizeof(alias) / sizeof(alias[0]) && !c->name[0]; i++) {
			for (j = 1; j < c->n; j++)
				if (c->name[j] && sqlite3_stricmp(c->name[j], alias[i]) == 0)
					break;
			if (j >= c->n)
				c->name[0] = sqlite3_mprintf("%s", alias[i]);
		}
		c->ok = c->name[0] != NULL;
	}
	for (j = 0; j < c->n; j++)
		if (!c->name[j] && (j > 0 || c->ok))
			return bri_err_set(err, -ENOMEM, "out of memory");
	return 0;
}

/* Column i of c as an SQL name: the rowid alias bare, else quoted. */
static char *col_sql(const struct cols *c, int i)
{
	if (i == 0 && c->rowid)
		return sqlite3_mprintf("%s", c->name[0]);
	return sqlite3_mprintf("\"%w\"", c->name[i]);
}

/* Appends to *sql (sqlite3_str) the join condition of the first npk columns of c. */
static void key_match(sqlite3_str *s, const struct cols *c, const char *sep)
{
	for (int i = 0; i < c->npk; i++) {
		char *k = col_sql(c, i);

		sqlite3_str_appendf(s, "%s A.%s=B.%s", i ? " AND" : sep, k, k);
		sqlite3_free(k);
	}
}

/* ---- the summary ---- */

static bool table_exists(sqlite3 *db, const char *schema, const char *table)
{
	return sqlite3_table_column_metadata(db, schema, table, NULL, NULL, NULL, NULL, NULL,
	                                     NULL) == SQLITE_OK;
}

int bri_diff_table_counts(sqlite3 *db, const char *table, struct bri_diff_counts *out,
                          struct bri_err *err)
{
	struct bri_diff_counts c = {.state = BRI_DIFF_COMPARED};
	struct cols a = {0}, b = {0};
	sqlite3_str *s = NULL;
	sqlite3_stmt *st = NULL;
	char *id = NULL, *sql = NULL;
	int rc, i, n = 0;

	if (!table_exists(db, "n", table)) {
		c.state = table_exists(db, "o", table) ? BRI_DIFF_ONLY_OLD : BRI_DIFF_NEITHER;
		*out = c;
		return 0;
	}
	if (!table_exists(db, "o", table)) {
		c.state = BRI_DIFF_ONLY_NEW;
		*out = c;
		return 0;
	}
	rc = cols_read(db, "o", table, &a, err);
	if (rc == 0)
		rc = cols_read(db, "n", table, &b, err);
	if (rc < 0)
		goto out_free;
	if (a.ok && b.ok)
		for (n = 0; n < a.n; n++)
			if (n >= b.n || sqlite3_stricmp(a.name[n], b.name[n]) != 0)
				break;
	if (!a.ok || !b.ok || a.npk != b.npk || n < a.n) {
		c.state = BRI_DIFF_INCOMPATIBLE;
		goto out_free;
	}
	/* sqldiff's query, term for term. */
	id = sqlite3_mprintf("\"%w\"", table);
	s = sqlite3_str_new(db);
	sqlite3_str_appendall(s, "SELECT 1, count(*)");
	if (a.n == b.npk) {
		sqlite3_str_appendall(s, ", 0\n");
	} else {
		for (i = a.npk; i < a.n; i++) {
			char *col = col_sql(&a, i);

			sqlite3_str_appendf(s, "%sA.%s IS NOT B.%s", i == a.npk ? ", sum(" : " OR ",
			                    col, col);
			sqlite3_free(col);
		}
		sqlite3_str_appendall(s, ")\n");
	}
	sqlite3_str_appendf(s, "  FROM o.%s A, n.%s B\n", id, id);
	key_match(s, &a, " WHERE");
	sqlite3_str_appendf(s,
	                    " UNION ALL\nSELECT 2, count(*), 0\n  FROM o.%s A\n WHERE NOT "
	                    "EXISTS(SELECT 1 FROM n.%s B ",
	                    id, id);
	key_match(s, &a, "WHERE");
	sqlite3_str_appendf(s,
	                    ")\n UNION ALL\nSELECT 3, count(*), 0\n  FROM n.%s B\n WHERE NOT "
	                    "EXISTS(SELECT 1 FROM o.%s A ",
	                    id, id);
	key_match(s, &a, "WHERE");
	sqlite3_str_appendall(s, ")\n ORDER BY 1;\n");
	sql = sqlite3_str_finish(s);
	if (!sql || !id) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK) {
		rc = bri_err_set(err, -EIO, "cannot compare the table %s: %s", table,
		                 sqlite3_errmsg(db));
		goto out_free;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		switch (sqlite3_column_int(st, 0)) {
		case 1:
			c.changes = sqlite3_column_int64(st, 2);
			c.unchanged = sqlite3_column_int64(st, 1) - c.changes;
			break;
		case 2:
			c.deletes = sqlite3_column_int64(st, 1);
			break;
		case 3:
			c.inserts = sqlite3_column_int64(st, 1);
			break;
		}
	}
	if (rc != SQLITE_DONE) {
		rc = bri_err_set(err, (rc & 0xff) == SQLITE_NOMEM ? -ENOMEM : -EIO,
		                 "cannot compare the table %s: %s", table, sqlite3_errmsg(db));
		goto out_free;
	}
	rc = 0;
out_free:
	sqlite3_finalize(st);
	sqlite3_free(sql);
	sqlite3_free(id);
	cols_free(&a);
	cols_free(&b);
	if (rc == 0)
		*out = c;
	return rc;
}

/* The summary's line for one table. */
static int summary_line(struct bri_render *r, const char *table, struct bri_err *err)
{
	struct bri_diff_counts c;
	char line[160];
	int rc = bri_diff_table_counts(r->db, table, &c, err);

	if (rc < 0)
		return rc;
	switch (c.state) {
	case BRI_DIFF_NEITHER:
		return 1; /* a view, or gone: sqldiff prints nothing either */
	case BRI_DIFF_ONLY_OLD:
		snprintf(line, sizeof(line), ": missing from second database\n");
		break;
	case BRI_DIFF_ONLY_NEW:
		snprintf(line, sizeof(line), ": missing from first database\n");
		break;
	case BRI_DIFF_INCOMPATIBLE:
		snprintf(line, sizeof(line), ": incompatible schema\n");
		break;
	case BRI_DIFF_COMPARED:
		snprintf(line, sizeof(line),
		         ": %lld changes, %lld inserts, %lld deletes, %lld unchanged\n",
		         (long long)c.changes, (long long)c.inserts, (long long)c.deletes,
		         (long long)c.unchanged);
		break;
	}
	rb_str(&r->row, table);
	rb_str(&r->row, line);
	return 1;
}

/* The tables sqldiff walks, in its order. */
static const char summary_tables_sql[] = "SELECT name FROM o.sqlite_schema\n"
                                         " WHERE type='table' AND sql NOT LIKE 'CREATE VIRTUAL%'\n"
                                         " UNION\n"
                                         "SELECT name FROM n.sqlite_schema\n"
                                         " WHERE type='table' AND sql NOT LIKE 'CREATE VIRTUAL%'\n"
                                         " ORDER BY name";

int bri_diff_tables(sqlite3 *db, char ***names, size_t *n, struct bri_err *err)
{
	return names_of(db, summary_tables_sql, names, n, err);
}

int bri_diff_summary(sqlite3 *db, struct bri_render **out, struct bri_err *err)
{
	struct bri_render *r = render_new(db, R_SUMMARY);
	int rc;

	if (!r)
		return bri_err_set(err, -ENOMEM, "out of memory");
	rc = prepare(r, summary_tables_sql, err);
	if (rc < 0) {
		bri_render_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

/* ---- the diff of one table ---- */

/* The header line: "op" and the names, as CSV. */
static char *diff_header(char **names, int n)
{
	struct rowbuf b = {0};

	rb_str(&b, "op");
	for (int i = 0; i < n; i++) {
		rb_add(&b, ",", 1);
		csv_text(&b, names[i]);
	}
	rb_add(&b, "\n", 1);
	rb_add(&b, "", 1);
	if (b.nomem || b.toobig) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

/* The CSV header and the JSON keys of a diff's n columns; false on ENOMEM. */
static bool set_columns(struct bri_render *r, char **names, int n)
{
	r->ncols = n;
	r->header = diff_header(names, n);
	r->jkeys = calloc((size_t)n + 1, sizeof(*r->jkeys));
	if (!r->header || !r->jkeys)
		return false;
	for (int i = 0; i < n; i++) {
		struct rowbuf b = {0};

		json_text(&b, (const unsigned char *)names[i], strlen(names[i]));
		rb_add(&b, ":", 2); /* the ':' and a NUL */
		if (b.nomem || b.toobig) {
			free(b.p);
			return false;
		}
		r->jkeys[i] = b.p;
		free(b.seg);
	}
	return true;
}

/* "A.c1, A.c2, ..." (alias A or B) for the columns names. */
static void select_list(sqlite3_str *s, const char *alias, char **names, int n)
{
	for (int i = 0; i < n; i++)
		sqlite3_str_appendf(s, "%s%s.\"%w\"", i ? ", " : "", alias, names[i]);
}

/* The column names of schema.table in table order (PRAGMA table_info). */
static int plain_cols(sqlite3 *db, const char *schema, const char *table, char ***names, size_t *n,
                      struct bri_err *err)
{
	char *sql = sqlite3_mprintf("SELECT name FROM pragma_table_info(%Q, %Q) ORDER BY cid",
	                            table, schema);
	int rc;

	if (!sql)
		return bri_err_set(err, -ENOMEM, "out of memory");
	rc = names_of(db, sql, names, n, err);
	sqlite3_free(sql);
	return rc;
}

/* A table on one side only: all "-" (schema "o") or all "+" (schema "n"). */
static int diff_one_side(struct bri_render *r, const char *schema, const char *table,
                         struct bri_err *err)
{
	char **names = NULL;
	size_t n = 0;
	int rc = plain_cols(r->db, schema, table, &names, &n, err);
	int ph = schema[0] == 'o' ? 0 : 2;
	bool ok;

	if (rc < 0)
		return rc;
	ok = set_columns(r, names, (int)n);
	r->sql[ph] = sqlite3_mprintf("SELECT * FROM \"%w\".\"%w\"", schema, table);
	bri_inspect_names_free(names, n);
	if (!ok || !r->sql[ph])
		return bri_err_set(err, -ENOMEM, "out of memory");
	return 0;
}

int bri_diff_table_csv(sqlite3 *db, const char *table, struct bri_render **out, struct bri_err *err)
{
	struct bri_render *r = render_new(db, R_DIFF);
	struct cols a = {0}, b = {0};
	char **oldn = NULL, **newn = NULL, **shared = NULL, *id = NULL, *key = NULL;
	size_t no = 0, nn = 0, ns = 0;
	bool in_old, in_new, same_key;
	sqlite3_str *s;
	int rc = 0, i, j;

	if (!r)
		return bri_err_set(err, -ENOMEM, "out of memory");
	r->sign[0] = "-";
	r->sign[2] = "+";
	in_old = has_table(db, "o", table);
	in_new = has_table(db, "n", table);
	if (!in_old && !in_new) {
		rc = bri_err_set(err, -ENOENT, "no table called '%s' on either side", table);
		goto out_fail;
	}
	if (!in_old || !in_new) {
		rc = diff_one_side(r, in_old ? "o" : "n", table, err);
		if (rc < 0)
			goto out_fail;
		*out = r;
		return 0;
	}
	rc = plain_cols(db, "o", table, &oldn, &no, err);
	if (rc == 0)
		rc = plain_cols(db, "n", table, &newn, &nn, err);
	if (rc == 0)
		rc = cols_read(db, "o", table, &a, err);
	if (rc == 0)
		rc = cols_read(db, "n", table, &b, err);
	if (rc < 0)
		goto out_free;
	shared = calloc(no + 1, sizeof(*shared));
	if (!shared) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	for (i = 0; i < (int)no; i++)
		for (j = 0; j < (int)nn; j++)
			if (sqlite3_stricmp(oldn[i], newn[j]) == 0) {
				shared[ns++] = oldn[i];
				break;
			}
	/* The key: the declared one when both sides declare the same, else the rowid. */
	same_key = !a.rowid && !b.rowid && a.npk == b.npk;
	for (i = 0; same_key && i < a.npk; i++)
		same_key = sqlite3_stricmp(a.name[i], b.name[i]) == 0;
	id = sqlite3_mprintf("\"%w\"", table);
	s = sqlite3_str_new(db);
	if (same_key) {
		for (i = 0; i < a.npk; i++)
			sqlite3_str_appendf(s, "%sA.\"%w\"=B.\"%w\"", i ? " AND " : "", a.name[i],
			                    a.name[i]);
	} else {
		static const char *const alias[] = {"rowid", "_rowid_", "oid"};
		const char *use = NULL;

		for (size_t k = 0; k < 3 && !use; k++) {
			use = alias[k];
			for (i = 0; i < (int)no && use; i++)
				if (sqlite3_stricmp(oldn[i], alias[k]) == 0)
					use = NULL;
			for (i = 0; i < (int)nn && use; i++)
				if (sqlite3_stricmp(newn[i], alias[k]) == 0)
					use = NULL;
		}
		if (use)
			sqlite3_str_appendf(s, "A.%s=B.%s", use, use);
	}
	key = sqlite3_str_finish(s);
	if (!id || !key) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	if (!*key) {
		rc = bri_err_set(err, -EOPNOTSUPP,
		                 "cannot pair the rows of '%s': no common key and no rowid", table);
		goto out_free;
	}
	if (!set_columns(r, shared, (int)ns)) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	/* Deleted: old rows without a partner. */
	s = sqlite3_str_new(db);
	sqlite3_str_appendall(s, "SELECT ");
	select_list(s, "A", shared, (int)ns);
	if (!ns)
		sqlite3_str_appendall(s, "1");
	sqlite3_str_appendf(s, " FROM o.%s A WHERE NOT EXISTS(SELECT 1 FROM n.%s B WHERE %s)", id,
	                    id, key);
	r->sql[0] = sqlite3_str_finish(s);
	/* Changed: partners that differ in a shared column that is not the key. */
	s = sqlite3_str_new(db);
	sqlite3_str_appendall(s, "SELECT ");
	select_list(s, "A", shared, (int)ns);
	sqlite3_str_appendall(s, ", ");
	select_list(s, "B", shared, (int)ns);
	sqlite3_str_appendf(s, " FROM o.%s A, n.%s B WHERE %s AND (0", id, id, key);
	for (i = 0; i < (int)ns; i++)
		sqlite3_str_appendf(s, " OR A.\"%w\" IS NOT B.\"%w\"", shared[i], shared[i]);
	sqlite3_str_appendall(s, ")");
	r->sql[1] = ns ? sqlite3_str_finish(s) : (sqlite3_free(sqlite3_str_finish(s)), NULL);
	/* Added: new rows without a partner. */
	s = sqlite3_str_new(db);
	sqlite3_str_appendall(s, "SELECT ");
	select_list(s, "B", shared, (int)ns);
	if (!ns)
		sqlite3_str_appendall(s, "1");
	sqlite3_str_appendf(s, " FROM n.%s B WHERE NOT EXISTS(SELECT 1 FROM o.%s A WHERE %s)", id,
	                    id, key);
	r->sql[2] = sqlite3_str_finish(s);
	if (!r->sql[0] || (ns && !r->sql[1]) || !r->sql[2]) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	/* Fail now, not at the first read, when a statement cannot be run. */
	for (i = 0; i < 3; i++) {
		sqlite3_stmt *st = NULL;

		if (!r->sql[i])
			continue;
		if (sqlite3_prepare_v2(db, r->sql[i], -1, &st, NULL) != SQLITE_OK) {
			rc = bri_err_set(err, -EOPNOTSUPP, "cannot compare the rows of '%s': %s",
			                 table, sqlite3_errmsg(db));
			goto out_free;
		}
		sqlite3_finalize(st);
	}
out_free:
	free(shared);
	bri_inspect_names_free(oldn, no);
	bri_inspect_names_free(newn, nn);
	cols_free(&a);
	cols_free(&b);
	sqlite3_free(id);
	sqlite3_free(key);
	if (rc == 0) {
		*out = r;
		return 0;
	}
out_fail:
	bri_render_free(r);
	return rc;
}

int bri_diff_table_json(sqlite3 *db, const char *table, struct bri_render **out,
                        struct bri_err *err)
{
	int rc = bri_diff_table_csv(db, table, out, err);

	if (rc == 0)
		(*out)->json = true;
	return rc;
}

/* ---- at/TIME ---- */

static bool digits(const char *s, int n)
{
	for (int i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

int bri_inspect_parse_at(const char *s, time_t *out)
{
	char full[32];
	size_t n = strlen(s);
	bool z = n > 0 && s[n - 1] == 'Z';

	if (z)
		n--;
	if (n < 10 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' ||
	    !digits(s + 8, 2))
		return -EINVAL;
	if (n == 10) {
		snprintf(full, sizeof(full), "%.10sT23:59:59%s", s, z ? "Z" : "");
	} else if (n == 16 || n == 19) {
		if (s[10] != 'T' || !digits(s + 11, 2) || s[13] != ':' || !digits(s + 14, 2))
			return -EINVAL;
		if (n == 19 && (s[16] != ':' || !digits(s + 17, 2)))
			return -EINVAL;
		snprintf(full, sizeof(full), "%.*s%s%s", (int)n, s, n == 16 ? ":00" : "",
		         z ? "Z" : "");
	} else {
		return -EINVAL;
	}
	return bri_time_parse(full, out);
}

struct bri_entry *bri_inspect_at(const struct bri_catalog *c, time_t t)
{
	struct bri_entry *best = NULL;

	for (size_t i = 0; i < c->n; i++)
		if (c->entries[i]->time <= t && (!best || c->entries[i]->time > best->time))
			best = c->entries[i];
	return best;
}
