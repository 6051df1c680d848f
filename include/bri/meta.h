/*
 * Backup metadata: the NAME.db.meta JSON file of SPEC.md section 1, its
 * in-memory form, and strict parsing of what may be a hand-edited or
 * damaged file. The seed's keys keep the seed's types; unknown keys are
 * ignored on reading.
 */
#ifndef BRI_META_H
#define BRI_META_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "bri/checksum.h"
#include "bri/common.h"

/* Largest .meta file read (bytes): a bound on hostile input. */
#define BRI_META_MAX_BYTES (4u << 20)

enum bri_kind { BRI_KIND_AUTO = 0, BRI_KIND_NAMED, BRI_KIND_SAFETY, BRI_KIND_UNKNOWN };

/* "auto", "named", "safety" or "unknown". */
const char *bri_kind_name(enum bri_kind kind);
/* The kind named s; BRI_KIND_UNKNOWN when s is NULL or not a kind. */
enum bri_kind bri_kind_parse(const char *s);

struct bri_table_count {
	char *name;   /* table name, malloc'd */
	int64_t rows; /* row count */
};

struct bri_meta {
	char backup_time[40];      /* local time, seed format "YYYY-MM-DDTHH:MM:SS" */
	char backup_time_utc[40];  /* "YYYY-MM-DDTHH:MM:SSZ", "" when absent */
	time_t time;               /* the backup's time as epoch seconds */
	char *source_db;           /* live database path as given, malloc'd */
	char *backup_path;         /* backup file path, malloc'd */
	int64_t size_bytes;        /* size of NAME.db */
	double size_mb;            /* size_bytes / 2^20, rounded to 2 decimals */
	char checksum[BRI_CHECKSUM_HEX_LEN + 1]; /* lowercase hex SHA-256 */
	struct bri_table_count *tables;          /* row counts, malloc'd array */
	size_t ntables;                          /* entries in tables */
	enum bri_kind kind;                      /* BRI_KIND_UNKNOWN when absent */
	int64_t page_size;                       /* 0 when absent */
	int64_t page_count;                      /* 0 when absent */
	double duration_s;                       /* create's duration, 0 when absent */
};

/*
 * Parses len bytes of JSON into out. Requires the seed's keys with their
 * types (backup_time, source_db, backup_path, size_bytes, size_mb, checksum
 * as 64 hex digits, tables as an object of non-negative integers). Returns 0,
 * or -EINVAL with what is wrong in err; out is untouched on failure.
 */
int bri_meta_parse(const char *json, size_t len, struct bri_meta *out, struct bri_err *err);

/*
 * Renders m as pretty JSON with a trailing newline: the seed's keys first,
 * then kind, backup_time_utc, checksum_algorithm, page_size, page_count,
 * duration_s, tool. *out is malloc'd. Returns 0 or -ENOMEM.
 */
int bri_meta_format(const struct bri_meta *m, char **out, size_t *len);

/* Deep copy; returns 0 or -ENOMEM. */
int bri_meta_copy(struct bri_meta *dst, const struct bri_meta *src);

/* Frees what m owns and zeroes it. */
void bri_meta_free(struct bri_meta *m);

/* The row count of table in m, or -1 when m has no such table. */
int64_t bri_meta_rows(const struct bri_meta *m, const char *table);

#endif
