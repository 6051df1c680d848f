/*
 * Verification of a backup: SHA-256 against the metadata, PRAGMA
 * integrity_check, row counts against the metadata. The result is persisted
 * as NAME.db.verify (JSON) and rendered as the mount's "verify" file. A
 * missing or broken .meta is a failed verification, never a crash.
 */
#ifndef BRI_VERIFY_H
#define BRI_VERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

#include "bri/checksum.h"
#include "bri/common.h"
#include "bri/meta.h"
#include "bri/store.h"

enum bri_verify_status { BRI_VERIFY_UNVERIFIED = 0, BRI_VERIFY_OK, BRI_VERIFY_FAILED };

/* The file a verification checked, as it was when the check began. */
struct bri_verify_file {
	bool known;                            /* recorded (older results lack it) */
	uint64_t dev, ino;                     /* st_dev, st_ino */
	int64_t size;                          /* st_size */
	int64_t mtime_ns;                      /* st_mtim in nanoseconds since the epoch */
	char sha256[BRI_CHECKSUM_HEX_LEN + 1]; /* what hashing found, "" when not hashed */
};

struct bri_verify_result {
	enum bri_verify_status status; /* unverified, ok or failed */
	time_t checked;                /* when it ran (epoch), 0 if never */
	char checked_at[40];           /* the same in local seed format */
	char check[24];                /* "integrity_check" or "quick_check" */
	int checksum_ok;               /* 1 matched, 0 mismatched, -1 not checked */
	int integrity_ok;              /* 1 ok, 0 failed, -1 not checked */
	int counts_ok;                 /* 1 matched, 0 mismatched, -1 not checked */
	double duration_s;             /* how long it took */
	char reason[512];              /* why it failed, "" when ok */
	struct bri_verify_file file;   /* what was checked */
};

/* "ok", "failed" or "unverified". */
const char *bri_verify_status_name(enum bri_verify_status s);

/*
 * Verifies the database file at db_path against meta (NULL when the metadata
 * is missing or broken: then meta_error says why and the result is failed).
 * Never fails itself for a bad backup: the verdict goes into *res, with the
 * identity of the file checked in res->file. Returns a negative errno when
 * it could not run for want of a resource of this machine (EMFILE, ENFILE,
 * ENOMEM, ...; see bri_errno_is_resource): that is no verdict on the backup,
 * res->status is then unverified and res->reason says why.
 */
int bri_verify_file(const char *db_path, const struct bri_meta *meta, const char *meta_error,
		    const struct bri_op_ctx *ctx, struct bri_verify_result *res);

/*
 * Verifies backup name of the store (through its reader: the hash and
 * SQLite read the same open file), persists the result as its verify
 * sidecar (plain: NAME.db.verify),
 * writes the audit log. The result is recorded under the store's lock, and
 * only when NAME.db is still the file that was checked. Returns 0 when it
 * ran and was recorded (look at res->status); -ENOENT when there is no such
 * backup, or it was removed during the verification; -ESTALE when NAME.db
 * was replaced during it (the result is discarded); a resource error
 * (bri_errno_is_resource: nothing recorded, try again later; -EBUSY also
 * when the store's lock stayed busy); -ECANCELED when ctx asked it to stop
 * (bri_op_stopped, asked between chunks: nothing recorded); or another
 * negative errno.
 */
int bri_verify_backup(struct bri_store *s, const char *name, const struct bri_op_ctx *ctx,
		      struct bri_verify_result *res, struct bri_err *err);

/*
 * The persisted result of name: status unverified when there is none, it is
 * unreadable, or it does not describe the current NAME.db (the file it
 * checked was replaced or changed since, or it predates such records).
 * Returns 0.
 */
int bri_verify_load(const struct bri_store *s, const char *name, struct bri_verify_result *res);

/* Whether res describes the file st (dev, inode, size and mtime match). */
bool bri_verify_matches(const struct bri_verify_result *res, const struct stat *st);

/*
 * The one JSON shape of a verification result: status ("ok", "failed",
 * "unverified"), reason ("" when ok), checked_at (local seed time, null when
 * never checked), check (null when none ran), checksum_ok, integrity_ok and
 * counts_ok (true, false, null for not checked) and duration_s.
 * bri_verify_result_to_json puts name and path (null when NULL) first: what
 * `bri-backup --json verify` prints per backup and the Python module
 * returns. bri_verify_to_json is the persisted sidecar: the same keys, then
 * checked_epoch, detail (the reason again, the key SPEC.md section 1 and
 * older readers know) and file (the identity checked). Both malloc'd,
 * pretty, newline-terminated; 0 or -ENOMEM.
 */
int bri_verify_result_to_json(const char *name, const char *path,
                              const struct bri_verify_result *res, char **out, size_t *len);
int bri_verify_to_json(const struct bri_verify_result *res, char **out, size_t *len);
/* Parses persisted JSON (the reason from "reason", else "detail"); -EINVAL when malformed. */
int bri_verify_from_json(const char *json, size_t len, struct bri_verify_result *res);

/*
 * The text of the mount's verify file: first line "ok", "failed: <reason>"
 * or "unverified", then "checked_at: ...", "check: ...", etc. malloc'd.
 */
int bri_verify_render(const struct bri_verify_result *res, char **out, size_t *len);

#endif
