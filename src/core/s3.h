/*
 * Internal to the core's offsite module: a small S3 client on libcurl
 * (s3.c) and where its settings come from (s3_conf.c). Requests are signed
 * with AWS Signature Version 4 computed here over OpenSSL, every body
 * carries its real SHA-256 in x-amz-content-sha256 and its MD5 in
 * Content-MD5, so the server refuses a damaged transfer. Path-style
 * (http://host/bucket/key) or virtual-host (http://bucket.host/key)
 * addressing. It knows nothing of backups. Not part of the contract: the
 * names have no bri_ prefix, so libbri does not export them.
 *
 * Secrets: the secret key and session token live only in struct s3_conf;
 * no message, log line or URL this module makes contains them.
 */
#ifndef BRI_S3_H
#define BRI_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "bri/common.h"

#define S3_PART_MIN     (8u << 20)  /* smallest multipart part we send */
#define S3_PART_MAX     (64u << 20) /* largest */
#define S3_PART_DEFAULT (16u << 20)
#define S3_TRIES        4           /* attempts of one request (or one part) */
#define S3_RESPONSE_MAX (32u << 20) /* a response body kept in memory is refused beyond */

/* Where and as whom: filled by s3_conf_load, freed by s3_conf_free. */
struct s3_conf {
	char *endpoint;      /* "scheme://host[:port]", no trailing slash */
	bool virtual_host;   /* bucket in the host name instead of the path */
	char *region;        /* for signing, e.g. "us-east-1" */
	char *access_key;    /* the access key id (not secret, but not shown either) */
	char *secret_key;    /* secret: never printed */
	char *session_token; /* secret, NULL when none */
	char *bucket;        /* the bucket */
	char *prefix;        /* the key prefix, "" or ending in '/' */
	char *profile;       /* the profile the credentials came from, for messages */
};

/*
 * Parses remote ("s3://BUCKET[/PREFIX]") and reads the credentials, region
 * and endpoint as the aws CLI does: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY
 * / AWS_SESSION_TOKEN, else the profile AWS_PROFILE (default "default") in
 * AWS_SHARED_CREDENTIALS_FILE (~/.aws/credentials) and AWS_CONFIG_FILE
 * (~/.aws/config); region from AWS_REGION, AWS_DEFAULT_REGION, the config
 * (default us-east-1); endpoint from the endpoint argument, AWS_ENDPOINT_URL_S3,
 * AWS_ENDPOINT_URL, the config's endpoint_url, else AWS's own
 * (https://s3.REGION.amazonaws.com, virtual-host addressing). addressing
 * "path", "virtual" or NULL (path for a custom endpoint). 0, or a negative
 * errno with err saying what is missing (never a secret).
 */
int s3_conf_load(struct s3_conf *c, const char *remote, const char *endpoint,
                 const char *addressing, struct bri_err *err);
void s3_conf_free(struct s3_conf *c);

/* A parsed response: status and the headers the offsite module needs. */
struct s3_resp {
	long status; /* HTTP status, 0 when no response came */
	char *body;  /* the body (NUL-terminated), when kept in memory; malloc'd */
	size_t body_len;
	int64_t length;       /* Content-Length, -1 when absent */
	char etag[80];        /* ETag without quotes */
	char version_id[128]; /* x-amz-version-id */
	char sha256[65];      /* x-amz-meta-sha256: what we stored as the object's SHA-256 */
	char lock_until[40];  /* x-amz-object-lock-retain-until-date */
};

void s3_resp_free(struct s3_resp *r);

struct s3;

/*
 * A client for conf (which must outlive it); cancel (may be NULL) set
 * non-zero by another thread aborts the request in progress (-ECANCELED, not
 * retried). 0 and *out, or a negative errno.
 */
int s3_open(const struct s3_conf *conf, const volatile int *cancel, struct s3 **out,
            struct bri_err *err);
void s3_close(struct s3 *c);

/*
 * Extra request headers (lowercase names) and the body of a request: the
 * body is len bytes at data (NULL: none).
 */
struct s3_req {
	const char *method;         /* "GET", "PUT", ... */
	const char *key;            /* object key (full, with the prefix), NULL: the bucket */
	const char *query;          /* canonical query: sorted, encoded, "a=1&b=" ; NULL: none */
	const char *const *headers; /* "name:value" pairs, NULL-terminated; may be NULL */
	const void *data;           /* body */
	size_t len;
	int out_fd;     /* >= 0: a 2xx body is written there instead of kept */
	bool want_body; /* keep the body in r->body (errors always keep theirs) */
};

/*
 * Sends one request, retrying transport errors and 5xx answers (S3_TRIES,
 * with backoff). 0 with *r filled for any HTTP answer (the caller judges
 * the status), or a negative errno (-EHOSTUNREACH, -ETIMEDOUT, ...) with
 * err when none came. With out_fd, a retried GET rewinds it (ftruncate).
 */
int s3_do(struct s3 *c, const struct s3_req *q, struct s3_resp *r, struct bri_err *err);

/* Formats an S3 error answer into err: "<what>: HTTP 403 AccessDenied: msg". */
int s3_fail(const struct s3_resp *r, const char *what, struct bri_err *err);

/*
 * Uploads size bytes of fd (from offset 0) as key: one PUT up to part
 * bytes, else a multipart upload in parts of `part` bytes (each with its
 * own Content-MD5 and SHA-256, retried alone), aborted when it fails. The
 * whole object's SHA-256 is stored as x-amz-meta-sha256 and returned in
 * hex. lock_until (NULL: none) is an ISO time for Object Lock COMPLIANCE.
 * expect (NULL: any) is the SHA-256 (hex) the bytes must have: when they
 * do not, nothing is sent and -EIO returned.
 */
int s3_put_fd(struct s3 *c, const char *key, int fd, uint64_t size, const char *lock_until,
              const char *expect, char hex[65], struct bri_err *err);
/* Uploads a small object from memory (one PUT), the same headers. */
int s3_put_mem(struct s3 *c, const char *key, const void *data, size_t len, const char *lock_until,
               struct bri_err *err);

/* One object (or object version) of a listing. */
struct s3_obj {
	char *key; /* full key */
	uint64_t size;
	char version_id[128]; /* "" for ListObjectsV2 */
	bool delete_marker;
	bool latest;
	char last_modified[40];
};

/*
 * Lists keys right under prefix (delimiter '/': not in sub-folders): ListObjectsV2 following
 * continuation tokens, or with versions ListObjectVersions following key/version markers (newest
 * version of each key first, as S3 orders them). *out is malloc'd (free
 * with s3_objs_free); at most max objects (-EFBIG beyond).
 */
int s3_list(struct s3 *c, const char *prefix, bool versions, struct s3_obj **out, size_t *n,
            size_t max, struct bri_err *err);
void s3_objs_free(struct s3_obj *o, size_t n);

/* Multipart uploads in progress under prefix: keys and upload ids, with when each began. */
struct s3_upload {
	char *key;
	char *upload_id;
	char initiated[40];
};
int s3_list_uploads(struct s3 *c, const char *prefix, struct s3_upload **out, size_t *n,
                    struct bri_err *err);
void s3_uploads_free(struct s3_upload *u, size_t n);
int s3_abort_upload(struct s3 *c, const char *key, const char *upload_id, struct bri_err *err);

/* URI-encodes s (RFC 3986 unreserved kept; '/' kept when keep_slash) into a malloc'd string. */
char *s3_uri_encode(const char *s, bool keep_slash);

/* The text of XML element tag in [p, end), entities decoded, malloc'd; NULL if absent. */
char *s3_xml_text(const char *p, const char *end, const char *tag);

#endif
