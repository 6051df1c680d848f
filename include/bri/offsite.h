/*
 * Offsite copies of the store in S3-compatible object storage (SPEC.md
 * section 6): AWS S3, Ceph RGW, MinIO, Garage, B2, R2. A remote is
 * "s3://BUCKET/PREFIX"; credentials, region and endpoint follow the aws
 * CLI's conventions (environment, ~/.aws/credentials and ~/.aws/config with
 * AWS_PROFILE; AWS_ENDPOINT_URL) and never appear in a message, a log line
 * or the audit log.
 *
 * Layout on the remote, under PREFIX/: a plain store's backup is NAME.db and
 * NAME.db.meta; a page store's is NAME.manifest, NAME.packs (the pack files
 * its pages are in) and NAME.meta, with those packs (pack-*.pack),
 * pages.secret and store.json beside them (those two first: what the copy
 * is, compared by every push, below).
 * The .meta is always uploaded last: a backup whose .meta is not on the
 * remote is not a backup there (an interrupted push leaves nothing listed).
 * Every object carries its SHA-256 as x-amz-meta-sha256 and was sent with
 * Content-MD5 and x-amz-content-sha256, so the server refused a damaged
 * transfer. Listing reads object versions, so delete markers (a plain
 * DELETE on a versioned, locked bucket) hide nothing.
 *
 * The push state of each local backup (uploaded <time> / pending / failed:
 * <why>) is a sidecar of the store (BRI_SIDECAR_OFFSITE), written by push;
 * the mount's background worker calls bri_offsite_push_one and shows
 * bri_offsite_state_read. Not here: scheduling, retries across hours (the
 * caller's), the mount.
 */
#ifndef BRI_OFFSITE_H
#define BRI_OFFSITE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "bri/common.h"
#include "bri/retention.h"
#include "bri/store.h"

#define BRI_OFFSITE_STATE_MAX 4096 /* bytes of a push-state sidecar that are read */

/* Where the remote is; NULL fields come from the environment (above). */
struct bri_offsite_opts {
	const char *remote;     /* "s3://BUCKET/PREFIX"; NULL: $BRI_OFFSITE */
	const char *endpoint;   /* "http(s)://host[:port]"; NULL: AWS_ENDPOINT_URL, config, AWS */
	const char *addressing; /* "path" or "virtual"; NULL: path for a custom endpoint,
	                           virtual for AWS */
	int lock_days;          /* > 0: uploads get S3 Object Lock COMPLIANCE for so many days */
	const volatile int *cancel; /* NULL, or set non-zero (by another thread) to abort the
	                               transfer in progress and the push: -ECANCELED */
	const char *key_file; /* the key of an encrypted page store's copy (its metadata
	                         is sealed); NULL: $BRI_KEY_FILE if set */
};

struct bri_offsite;

/*
 * Opens the remote described by o (reads credentials; sends nothing yet).
 * 0 and *out (bri_offsite_close), or a negative errno with err saying what
 * is missing; err never holds a secret.
 */
int bri_offsite_open(const struct bri_offsite_opts *o, struct bri_offsite **out,
                     struct bri_err *err);
void bri_offsite_close(struct bri_offsite *r);
/* "s3://BUCKET/PREFIX" (no endpoint, no credentials), for messages. */
const char *bri_offsite_url(const struct bri_offsite *r);

/*
 * Creates the bucket; with lock, with S3 Object Lock enabled (and so
 * versioning). A bucket that exists and is ours is fine (0). 0 or a negative errno.
 */
int bri_offsite_init(struct bri_offsite *r, bool lock, struct bri_err *err);

/* What one push did. */
struct bri_offsite_push_result {
	unsigned pushed;  /* backups uploaded now */
	unsigned present; /* backups already complete on the remote */
	unsigned failed;  /* backups that failed (their state says why) */
	unsigned objects; /* objects uploaded */
	uint64_t bytes;   /* bytes uploaded */
};

/*
 * Uploads backup name of s to r unless the remote has it complete (its
 * .meta there with the same checksum): the backup's objects (plain: NAME.db;
 * pages: the packs the remote lacks and NAME.manifest), then NAME.meta.
 * Before the first upload the backup's state becomes "pending"; then
 * "uploaded <time>" or "failed: <why>". A backup whose bytes do not match
 * its metadata is not uploaded. Adds to *res (may be NULL). Records the push
 * in the audit log. 0 or a negative errno with err.
 */
int bri_offsite_push_one(struct bri_store *s, struct bri_offsite *r, const char *name,
                         const struct bri_op_ctx *ctx, struct bri_offsite_push_result *res,
                         struct bri_err *err);

/*
 * A push first compares the remote's store identity with the store's, by
 * content: a plain store's copy holds no store.json and no page-store
 * object; a page store's copy holds this store's store.json (format,
 * encryption, key kind, KDF parameters, key check) and pages.secret (the
 * page-id secret, sealed under the key when encrypted), uploaded before any
 * pack. A remote holding nothing yet matches. Otherwise (the store was
 * converted or re-keyed since it was pushed there, or the prefix holds
 * another store's copy) nothing is uploaded, every backup not yet uploaded
 * there is marked failed, and the push returns BRI_OFFSITE_EMISMATCH with
 * the difference and what to do (a new prefix) in err.
 */
#define BRI_OFFSITE_EMISMATCH (-EMEDIUMTYPE)

/*
 * Pushes every backup of s the remote lacks (oldest first). 0 when all are
 * there; -EIO when any failed (the count in res, the first reason in err);
 * BRI_OFFSITE_EMISMATCH as above.
 */
int bri_offsite_push(struct bri_store *s, struct bri_offsite *r, const struct bri_op_ctx *ctx,
                     struct bri_offsite_push_result *res, struct bri_err *err);

/* A backup's push state, from its BRI_SIDECAR_OFFSITE. */
enum bri_offsite_status {
	BRI_OFFSITE_NONE = 0, /* never pushed (no state) */
	BRI_OFFSITE_PENDING,  /* a push began and has not ended */
	BRI_OFFSITE_UPLOADED, /* complete on the remote */
	BRI_OFFSITE_FAILED,   /* the last push failed */
};

struct bri_offsite_state {
	enum bri_offsite_status status;
	time_t time;      /* when the state was written */
	char remote[600]; /* the remote ("s3://BUCKET/PREFIX") */
	char why[400];    /* FAILED: the reason */
};

/* Reads name's push state: 0 (NONE when there is none), or a negative errno. */
int bri_offsite_state_read(const struct bri_store *s, const char *name,
                           struct bri_offsite_state *out);
/* Writes name's push state durably (the mount marks a backup pending with it). */
int bri_offsite_state_write(struct bri_store *s, const char *name,
                            const struct bri_offsite_state *st, struct bri_err *err);
/* "uploaded 2026-11-30T23:10:00Z", "pending", "failed: <why>", "" for NONE. Returns buf. */
const char *bri_offsite_state_text(const struct bri_offsite_state *st, char *buf, size_t len);

/* How far the remote lags behind the store, from the push states alone (no network). */
struct bri_offsite_lag {
	unsigned backups;      /* backups in the store (with usable metadata) */
	unsigned uploaded;     /* of those, uploaded to this remote */
	unsigned pending;      /* not uploaded: no state, pending, or uploaded elsewhere */
	unsigned failed;       /* not uploaded: the last push failed */
	time_t oldest_missing; /* backup time of the oldest not uploaded, 0 when none */
	double lag_s;          /* now - oldest_missing, 0 when none */
	time_t last_upload;    /* the latest "uploaded" time, 0 when none */
	char why[400];         /* the oldest not uploaded's last push failure, "" none */
};

/*
 * Reads the push state of every backup of s for remote (a bri_offsite_url,
 * e.g. "s3://BUCKET/PREFIX") at time now into *out: what the mount's
 * metrics and health show. 0, or a negative errno with err.
 */
int bri_offsite_lag(const struct bri_store *s, const char *remote, time_t now,
                    struct bri_offsite_lag *out, struct bri_err *err);

/* A backup on the remote: one whose .meta is there and parses. */
struct bri_offsite_backup {
	char name[BRI_NAME_MAX + 1];
	bool pages;           /* a page store's backup (NAME.manifest) */
	char backup_time[40]; /* from its .meta */
	time_t time;          /* the same, as epoch seconds */
	char kind[16];        /* auto, named, safety, "" */
	uint64_t size;        /* size_bytes of its .meta */
	char checksum[65];    /* checksum of its .meta */
	uint64_t stored;      /* bytes of its own objects on the remote */
	bool data_present;    /* NAME.db / NAME.manifest is there too */
};

/*
 * The backups on the remote, newest first (*out malloc'd, free()). Delete
 * markers are looked through: an object counts while any version of it is
 * there. 0 or a negative errno.
 */
int bri_offsite_list(struct bri_offsite *r, struct bri_offsite_backup **out, size_t *n,
                     struct bri_err *err);

/* What verifying one remote backup found. */
struct bri_offsite_check {
	char name[BRI_NAME_MAX + 1];
	bool ok;
	bool read_data;   /* it was downloaded and rehashed */
	char detail[400]; /* "ok: 3 objects, 1.2 MB" or what is wrong */
};

/*
 * Checks remote backups (names NULL / n 0: all): every object there with its
 * size and stored SHA-256 matching what its .meta (and the local record of
 * the packs) says, by HEAD. read_data: downloads and rehashes; sample_pct
 * (1-100) does that for a random subset of the backups (100: all). *out is
 * malloc'd. 0 when all are ok, 1 when any is not, or a negative errno when
 * the remote could not be checked.
 */
int bri_offsite_verify(struct bri_offsite *r, const char *const *names, size_t n, bool read_data,
                       int sample_pct, struct bri_offsite_check **out, size_t *nout,
                       struct bri_err *err);

/*
 * Downloads remote backup name into the folder dir (made by the caller):
 * dir/NAME.db and dir/NAME.db.meta, the .db checked against the remote
 * .meta (size and SHA-256) before 0 is returned. A page store's backup is
 * assembled from its manifest and packs (downloaded into dir/pages/, which
 * the caller removes with dir). *db_path is malloc'd. 0 or a negative
 * errno (-ENOENT: no such backup).
 */
int bri_offsite_fetch(struct bri_offsite *r, const char *name, const char *dir, char **db_path,
                      struct bri_err *err);

/*
 * Downloads remote backup name (bri_offsite_fetch, into a temporary folder
 * of the store) and adds it to s as backup name, under the store's lock;
 * -EEXIST when s has one of that name. Audited. 0 or a negative errno.
 */
int bri_offsite_pull(struct bri_store *s, struct bri_offsite *r, const char *name,
                     const struct bri_op_ctx *ctx, struct bri_err *err);

/*
 * A new empty folder in the store for bri_offsite_fetch (".offsite-fetch-XXXXXX",
 * never listed as a backup), malloc'd; NULL with err on failure. Remove it
 * with bri_offsite_tmpdir_remove.
 */
char *bri_offsite_tmpdir(const struct bri_store *s, struct bri_err *err);
void bri_offsite_tmpdir_remove(const char *dir);

/* What prune decided for one remote backup. */
struct bri_offsite_prune_item {
	char name[BRI_NAME_MAX + 1];
	enum bri_retention_verdict verdict;
	bool removed;     /* its objects were deleted (not a dry run) */
	char detail[200]; /* "locked until ...", the reason it stays, or an error */
};

/*
 * Applies the retention rules to the remote's own list (the newest good
 * remote backup always stays) and deletes what they remove, .meta first,
 * every version of each object (a locked version is refused by the server
 * and stays: its detail says until when). A page store's packs go when no
 * remaining backup's pack list (NAME.packs, uploaded by push) names them
 * and they are more than a day old (*removed_packs counts them); none go
 * while a remaining backup has no list. Aborts multipart uploads under the
 * prefix begun more than a day before now. *out malloc'd. 0, or a negative
 * errno.
 */
int bri_offsite_prune(struct bri_offsite *r, const struct bri_retention_rules *rules, time_t now,
                      bool dry_run, struct bri_offsite_prune_item **out, size_t *n,
                      unsigned *aborted_uploads, unsigned *removed_packs, struct bri_err *err);

#endif
