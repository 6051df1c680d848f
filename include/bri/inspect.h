/*
 * Inspection of backups (SPEC.md section 4.1): a backup's schema.sql, its
 * tables as CSV, the difference of two databases as a summary (byte for
 * byte `sqldiff --primarykey --summary`) and as one CSV per table, and the
 * newest backup made at or before a time (at/TIME). No FUSE and no files
 * written here: the mount and the CLI present what this module renders.
 *
 * Output is pulled, not pushed: a `struct bri_render` produces one file's
 * bytes in order, one row at a time, through bri_render_read. Nothing holds
 * a whole output (or a whole changeset) in memory: one row at a time, whose
 * small parts are copied (at most BRI_RENDER_ROW_MAX bytes, or the render's
 * own cap) and whose large values (over 4 KiB) are written out from
 * SQLite's copy as they are read (a BLOB's hex is never built). So a server
 * of these files:
 *   - learns the exact size at stat with one counting pass
 *     (bri_render_count: renders and drops every row), before any read;
 *   - serves read(offset, len) from a render kept with the open file: a read
 *     at the render's offset goes on where the last one stopped (a sequential
 *     `cat` renders the file once); a read elsewhere starts a new render and
 *     skips to offset (bri_render_skip, which renders without copying).
 * The same database content always renders the same bytes.
 *
 * Rendering reads SQLite connections the caller opened (bri_inspect_open,
 * bri_diff_open) and must outlive every render made from them. A connection
 * and its renders are used by one thread at a time.
 */
#ifndef BRI_INSPECT_H
#define BRI_INSPECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "bri/catalog.h"
#include "bri/common.h"
#include "bri/store.h"

struct sqlite3;

/*
 * The most bytes a row's copied parts (separators, quotes, values up to
 * 4 KiB) may take: 64 MiB. Larger values are not copied, so not counted.
 */
#define BRI_RENDER_ROW_MAX (64u << 20)

/* One output being rendered, read in order. */
struct bri_render;

/*
 * Copies up to len bytes of the output into buf, going on from where the
 * last read or skip stopped. Returns the number of bytes copied (0 only at
 * the end), or a negative errno (-EFBIG: a row over the cap) with
 * err filled; after an error the render only fails.
 */
ssize_t bri_render_read(struct bri_render *r, void *buf, size_t len, struct bri_err *err);

/* Advances by n bytes without copying them (fewer at the end). 0 or a negative errno. */
int bri_render_skip(struct bri_render *r, uint64_t n, struct bri_err *err);

/* Renders the rest of the output, adding its length to *size. 0 or a negative errno. */
int bri_render_count(struct bri_render *r, uint64_t *size, struct bri_err *err);

/*
 * Lowers the cap of a row's copied parts for r to max bytes (0 or more than
 * BRI_RENDER_ROW_MAX: BRI_RENDER_ROW_MAX), e.g. to keep a daemon within its
 * memory bound. Call before the first read.
 */
void bri_render_set_row_max(struct bri_render *r, size_t max);

/* The number of bytes read or skipped so far. */
uint64_t bri_render_offset(const struct bri_render *r);

/* Frees r (NULL is fine); its connection stays open. */
void bri_render_free(struct bri_render *r);

/*
 * Opens the backup that r reads (bri_store_open_reader for a backup of any
 * store format, bri_reader_open_path for a file) read-only for inspection,
 * through the reader VFS (bri_snapshot_open_reader: immutable, no locks,
 * nothing created beside it). The one place inspection opens a backup. r
 * must stay open until the connection is closed. Returns 0 and *out (close
 * with sqlite3_close), or a negative errno (-EINVAL: not an SQLite
 * database).
 */
int bri_inspect_open(struct bri_reader *r, struct sqlite3 **out, struct bri_err *err);

/*
 * `live`: an online snapshot of s's live database (the backup API, as
 * create takes it, waiting up to busy_timeout_ms for a writer) into a
 * temporary file of the store (".live.inspect.PID.XXXXXX.tmp": swept as a
 * leftover if this process dies). The live database is only read. Returns
 * 0, *tmp_name (the file, relative to the store, malloc'd) and *reader (a
 * reader of it, to open with bri_inspect_open or bri_diff_open): give both
 * back with bri_inspect_live_drop once every connection on it is closed.
 * Else a negative errno, and nothing is left behind.
 */
int bri_inspect_live_take(struct bri_store *s, int busy_timeout_ms, char **tmp_name,
                          struct bri_reader **reader, struct bri_err *err);

/* Closes the reader, removes the snapshot (and any SQLite file beside it), frees the name. */
void bri_inspect_live_drop(struct bri_store *s, char *tmp_name, struct bri_reader *reader);

/* schema.sql: every non-NULL sql of sqlite_schema in rowid order, each + ";\n". */
int bri_inspect_schema(struct sqlite3 *db, struct bri_render **out, struct bri_err *err);

/*
 * The tables a tables/ folder lists: every table of sqlite_schema whose name
 * does not start with "sqlite_", sorted by name (byte order). *names is a
 * malloc'd array of malloc'd strings (free with bri_inspect_names_free).
 */
int bri_inspect_tables(struct sqlite3 *db, char ***names, size_t *n, struct bri_err *err);
void bri_inspect_names_free(char **names, size_t n);

/*
 * TABLE.csv: a header line (always), then one line per row of `SELECT *`,
 * each value as `sqlite3 -csv` writes it (NULL empty; quoted with "" when
 * empty or holding a control byte, space, '"', '\'', ',', DEL or a byte >=
 * 0x80; REAL as SQLite's text of it; text up to its first NUL byte, as the
 * shell shows it), except a BLOB as its literal X'HEX'. Lines end in "\n".
 * -ENOENT when db has no table called table (exact name).
 */
int bri_inspect_table_csv(struct sqlite3 *db, const char *table, struct bri_render **out,
                          struct bri_err *err);

/*
 * A connection with the two backups that old and new read attached
 * read-only (immutable, through the reader VFS): "o" (OLD) and "n" (NEW).
 * Both readers must stay open until the connection is closed. Returns 0
 * and *out (close with sqlite3_close), or a negative errno. Diff renders
 * read it.
 */
int bri_diff_open(struct bri_reader *old, struct bri_reader *new, struct sqlite3 **out,
                  struct bri_err *err);

/*
 * The summary: byte for byte what `sqldiff --primarykey --summary OLD NEW`
 * prints. One line per table of either side (not virtual), by name:
 * "T: missing from second database", "T: missing from first database",
 * "T: incompatible schema", or "T: C changes, I inserts, D deletes, U
 * unchanged". Rows are paired by declared PRIMARY KEY, else by rowid.
 */
int bri_diff_summary(struct sqlite3 *db, struct bri_render **out, struct bri_err *err);

/* How one table compares, as a summary line says it. */
enum bri_diff_state {
	BRI_DIFF_COMPARED,     /* on both sides, compared: the counts are set */
	BRI_DIFF_ONLY_OLD,     /* "missing from second database" */
	BRI_DIFF_ONLY_NEW,     /* "missing from first database" */
	BRI_DIFF_INCOMPATIBLE, /* "incompatible schema" (other key or columns) */
	BRI_DIFF_NEITHER,      /* no table (e.g. a view) on either side: no line */
};

struct bri_diff_counts {
	enum bri_diff_state state; /* which line */
	int64_t changes;           /* paired rows that differ */
	int64_t inserts;           /* NEW rows without a partner */
	int64_t deletes;           /* OLD rows without a partner */
	int64_t unchanged;         /* paired rows that are the same */
};

/*
 * The tables the summary walks (sqldiff's list: every table of either side
 * that is not virtual, sqlite_ ones too, by name), malloc'd as in
 * bri_inspect_tables.
 */
int bri_diff_tables(struct sqlite3 *db, char ***names, size_t *n, struct bri_err *err);

/* Compares one table as the summary does; 0 and *out, or a negative errno. */
int bri_diff_table_counts(struct sqlite3 *db, const char *table, struct bri_diff_counts *out,
                          struct bri_err *err);

/*
 * TABLE.csv of a diff: header "op" then the columns, then "+" lines (added
 * rows, new values), "-" lines (deleted rows, old values) and, for a changed
 * row, "~-" (old values) then "~+" (new values). Values are written as in
 * bri_inspect_table_csv. Order: deleted rows, then changed, then added, each
 * in the table's scan order. Rows are paired as the summary pairs them; a
 * table whose columns changed shows and compares the columns both sides
 * share (by name, ignoring case, in OLD's order), paired on the declared
 * key when both sides declare the same one, else on the rowid. A table on
 * one side only is all "-" or all "+". -ENOENT when neither side has it;
 * -EOPNOTSUPP when the rows cannot be paired (no shared key, no rowid).
 */
int bri_diff_table_csv(struct sqlite3 *db, const char *table, struct bri_render **out,
                       struct bri_err *err);

/*
 * The same rows as bri_diff_table_csv, in the same order, as JSON lines (no
 * header): {"op":"-","old":{COL:VALUE,...}}, {"op":"~","old":{...},
 * "new":{...}}, {"op":"+","new":{...}}. A value is null, a number (INTEGER;
 * REAL as SQLite writes it, null when not finite), a string (TEXT, every
 * byte, control bytes escaped) or {"hex":"..."} (BLOB).
 */
int bri_diff_table_json(struct sqlite3 *db, const char *table, struct bri_render **out,
                        struct bri_err *err);

/*
 * Parses an at/ time: "YYYY-MM-DDTHH:MM", "YYYY-MM-DDTHH:MM:SS" or
 * "YYYY-MM-DD" (the end of that day, 23:59:59), local time or UTC with a
 * trailing "Z". Returns 0 and *out, or -EINVAL.
 */
int bri_inspect_parse_at(const char *s, time_t *out);

/*
 * The newest backup of c made at or before t (safety backups count: they
 * are points in time too), or NULL when every backup is newer.
 */
struct bri_entry *bri_inspect_at(const struct bri_catalog *c, time_t t);

#endif
