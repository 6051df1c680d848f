/*
 * Offsite copies in S3-compatible object storage (include/bri/offsite.h,
 * SPEC.md section 6): push, list, verify, fetch and prune over the S3
 * client (s3.c). The remote is read through one versioned listing (an
 * index of key -> newest real version, delete markers looked through), so
 * a push that finds everything there uploads nothing, and list and restore
 * are not fooled by a plain DELETE on a locked bucket.
 *
 * A page store's files are named here through pack.h's suffixes (the
 * format's own names): the packs, NAME.manifest and NAME.meta are uploaded
 * as they are on disk. An encrypted page store's are sealed as they are on
 * disk; its NAME.meta is opened (meta_open) with the key that opens the
 * remote's store.json, checked (remote_key) before anything is downloaded.
 *
 * One prefix holds one form of one store: a push first compares the
 * remote's store identity with the store's by content (identity_check:
 * store.json and pages.secret, or no page-store object for plain) and
 * refuses another form or key before uploading anything; pages.secret and
 * store.json go up before any pack, so a remote with packs but without them
 * is of no known store.
 */
#include "bri/offsite.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bri/audit.h"
#include "bri/checksum.h"
#include "bri/log.h"
#include "bri/meta.h"
#include "bri/snapshot.h"
#include "bri/testpoint.h"
#include "json_number.h"
#include "pack.h"
#include "s3.h"
#include "seal.h"

#define OBJECTS_MAX  (1u << 22) /* objects a remote listing may hold */
#define META_SUFFIX  ".meta"    /* pages: NAME.meta */
#define PLAIN_DB     ".db"
#define PLAIN_META   ".db.meta"
#define STORE_JSON   "store.json"
#define PACKS_SUFFIX ".packs"    /* pages: the packs a backup's pages were in when pushed */
#define PACKS_MAX    (16u << 20) /* bytes of a .packs list that are read */
#define FILE_MAX     (BRI_NAME_MAX + 32)
#define UPLOAD_STALE (24 * 3600) /* a multipart upload older than this is abandoned */

struct bri_offsite {
	struct s3_conf conf;
	const volatile int *cancel; /* the caller's abort flag, or NULL */
	struct s3 *s3;
	int lock_days;
	char url[600];
	char *key_file;        /* an encrypted store's key file (absolute), or NULL */
	struct bri_seal *seal; /* the remote copy's key, once its store.json was read */
	bool json_stale;       /* the remote's store.json is this store's identity in other bytes */
};

/* One key of the remote: its newest version that is not a delete marker. */
struct rkey {
	const char *name; /* the key without the prefix (points into objs) */
	const struct s3_obj *obj;
};

/* The remote under the prefix, as one versioned listing. */
struct rindex {
	struct s3_obj *objs; /* every version and delete marker */
	size_t nobjs;
	struct rkey *keys; /* sorted by name */
	size_t nkeys;
};

int bri_offsite_open(const struct bri_offsite_opts *o, struct bri_offsite **out,
                     struct bri_err *err)
{
	const char *remote = o->remote ? o->remote : getenv("BRI_OFFSITE");
	struct bri_offsite *r = calloc(1, sizeof(*r));
	int rc;

	if (!r)
		return bri_err_set(err, -ENOMEM, "out of memory");
	rc = s3_conf_load(&r->conf, remote, o->endpoint, o->addressing, err);
	if (rc < 0) {
		free(r);
		return rc;
	}
	rc = s3_open(&r->conf, o->cancel, &r->s3, err);
	if (rc < 0) {
		s3_conf_free(&r->conf);
		free(r);
		return rc;
	}
	r->lock_days = o->lock_days;
	r->cancel = o->cancel;
	{
		const char *key = o->key_file ? o->key_file : getenv(SEAL_KEY_ENV);

		if (key && *key && !(r->key_file = bri_path_absolute(key))) {
			bri_offsite_close(r);
			return bri_err_set(err, -ENOMEM, "out of memory");
		}
	}
	snprintf(r->url, sizeof(r->url), "s3://%s/%s", r->conf.bucket, r->conf.prefix);
	if (r->url[strlen(r->url) - 1] == '/')
		r->url[strlen(r->url) - 1] = '\0';
	*out = r;
	return 0;
}

void bri_offsite_close(struct bri_offsite *r)
{
	if (!r)
		return;
	s3_close(r->s3);
	s3_conf_free(&r->conf);
	free(r->key_file);
	seal_free(r->seal);
	free(r);
}

const char *bri_offsite_url(const struct bri_offsite *r)
{
	return r->url;
}

/* The full key of file (relative to the prefix), malloc'd. */
static char *rkey_full(const struct bri_offsite *r, const char *file)
{
	char *k = NULL;

	if (asprintf(&k, "%s%s", r->conf.prefix, file) < 0)
		return NULL;
	return k;
}

int bri_offsite_init(struct bri_offsite *r, bool lock, struct bri_err *err)
{
	static const char *const lock_hdr[] = {"x-amz-bucket-object-lock-enabled:true", NULL};
	struct s3_req q = {.method = "PUT", .headers = lock ? lock_hdr : NULL, .out_fd = -1};
	char body[200], what[200];
	struct s3_resp resp;
	int rc;

	if (strcmp(r->conf.region, "us-east-1") != 0 && strstr(r->conf.endpoint, "amazonaws.com")) {
		snprintf(body, sizeof(body),
		         "<CreateBucketConfiguration><LocationConstraint>%s</LocationConstraint>"
		         "</CreateBucketConfiguration>",
		         r->conf.region);
		q.data = body;
		q.len = strlen(body);
	}
	rc = s3_do(r->s3, &q, &resp, err);
	if (rc < 0)
		return rc;
	snprintf(what, sizeof(what), "creating bucket %s at %s", r->conf.bucket, r->conf.endpoint);
	if (resp.status == 409 && resp.body && strstr(resp.body, "BucketAlreadyOwnedByYou"))
		rc = 0;
	else if (resp.status != 200)
		rc = s3_fail(&resp, what, err);
	s3_resp_free(&resp);
	return rc;
}

/* ---- the remote's index ---- */

static int rkey_cmp(const void *a, const void *b)
{
	return strcmp(((const struct rkey *)a)->name, ((const struct rkey *)b)->name);
}

static void rindex_free(struct rindex *x)
{
	s3_objs_free(x->objs, x->nobjs);
	free(x->keys);
	memset(x, 0, sizeof(*x));
}

/*
 * Lists the remote with versions. S3 lists a key's versions newest first;
 * the first that is not a delete marker is the key's data.
 */
static int rindex_load(struct bri_offsite *r, struct rindex *x, struct bri_err *err)
{
	size_t plen = strlen(r->conf.prefix);
	const char *prev = NULL;
	size_t n = 0; /* keys taken; a local, so the analyzer sees it start at 0 */
	int rc;

	memset(x, 0, sizeof(*x));
	rc = s3_list(r->s3, r->conf.prefix, true, &x->objs, &x->nobjs, OBJECTS_MAX, err);
	if (rc < 0)
		return bri_err_wrap(err, rc, "cannot list %s", r->url);
	x->keys = calloc(x->nobjs ? x->nobjs : 1, sizeof(*x->keys));
	if (!x->keys) {
		rindex_free(x);
		return bri_err_set(err, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < x->nobjs; i++) {
		const struct s3_obj *o = &x->objs[i];
		const char *name;

		if (o->delete_marker || strncmp(o->key, r->conf.prefix, plen) != 0)
			continue;
		name = o->key + plen;
		if (!*name || strchr(name, '/'))
			continue; /* not ours: a sub-folder */
		if (prev && strcmp(prev, name) == 0)
			continue; /* an older version of the same key */
		prev = name;
		x->keys[n].name = name;
		x->keys[n].obj = o;
		n++;
	}
	x->nkeys = n;
	if (x->nkeys > 1) /* qsort wants a non-NULL array even for none */
		qsort(x->keys, x->nkeys, sizeof(*x->keys), rkey_cmp);
	/* Versions of one key are adjacent in S3's order; after sorting, keep the first seen. */
	{
		size_t w = 0;
		for (size_t i = 0; i < x->nkeys; i++)
			if (!w || strcmp(x->keys[w - 1].name, x->keys[i].name) != 0)
				x->keys[w++] = x->keys[i];
		x->nkeys = w;
	}
	return 0;
}

static const struct s3_obj *rindex_get(const struct rindex *x, const char *name)
{
	struct rkey k = {.name = name}, *f;

	f = bsearch(&k, x->keys, x->nkeys, sizeof(*x->keys), rkey_cmp);
	return f ? f->obj : NULL;
}

/* The version query of o ("versionId=..."), or NULL for an unversioned object. */
static char *version_query(const struct s3_obj *o)
{
	char *e, *q = NULL;

	if (!o || !o->version_id[0] || strcmp(o->version_id, "null") == 0)
		return NULL;
	e = s3_uri_encode(o->version_id, false);
	if (!e || asprintf(&q, "versionId=%s", e) < 0)
		q = NULL;
	free(e);
	return q;
}

/* GETs object o (its version) into memory, at most max bytes. */
static int get_mem(struct bri_offsite *r, const struct s3_obj *o, size_t max, char **out,
                   size_t *len, char sha[65], struct bri_err *err)
{
	char *vq = version_query(o), what[300];
	struct s3_req q = {
	    .method = "GET", .key = o->key, .query = vq, .out_fd = -1, .want_body = true};
	struct s3_resp resp;
	int rc;

	if (o->size > max) {
		free(vq);
		return bri_err_set(err, -EFBIG, "%s is larger than %zu bytes", o->key, max);
	}
	rc = s3_do(r->s3, &q, &resp, err);
	free(vq);
	if (rc < 0)
		return rc;
	snprintf(what, sizeof(what), "downloading %s", o->key);
	if (resp.status != 200) {
		rc = s3_fail(&resp, what, err);
		s3_resp_free(&resp);
		return rc;
	}
	if (!resp.body) {
		resp.body = strdup("");
		if (!resp.body)
			return bri_err_set(err, -ENOMEM, "out of memory");
	}
	if (sha)
		snprintf(sha, 65, "%s", resp.sha256);
	*out = resp.body;
	*len = resp.body_len;
	return 0;
}

/* GETs object o into fd (truncated first). */
static int get_fd(struct bri_offsite *r, const struct s3_obj *o, int fd, char sha[65],
                  struct bri_err *err)
{
	char *vq = version_query(o), what[300];
	struct s3_req q = {.method = "GET", .key = o->key, .query = vq, .out_fd = fd};
	struct s3_resp resp;
	int rc;

	rc = s3_do(r->s3, &q, &resp, err);
	free(vq);
	if (rc < 0)
		return rc;
	snprintf(what, sizeof(what), "downloading %s", o->key);
	if (resp.status != 200)
		rc = s3_fail(&resp, what, err);
	else if (sha)
		snprintf(sha, 65, "%s", resp.sha256);
	s3_resp_free(&resp);
	return rc;
}

static int head(struct bri_offsite *r, const struct s3_obj *o, struct s3_resp *resp,
                struct bri_err *err)
{
	char *vq = version_query(o);
	struct s3_req q = {.method = "HEAD", .key = o->key, .query = vq, .out_fd = -1};
	int rc = s3_do(r->s3, &q, resp, err);

	free(vq);
	return rc;
}

static bool is_pack(const char *f)
{
	size_t n = strlen(f), m = strlen(PACK_SUFFIX);

	return strncmp(f, PACK_PREFIX, strlen(PACK_PREFIX)) == 0 && n > m &&
	       strcmp(f + n - m, PACK_SUFFIX) == 0;
}

/* A backup's pack list on the remote (NAME.packs), sorted. */
struct pack_list {
	char **names;
	size_t n;
};

static void pack_list_free(struct pack_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->names[i]);
	free(l->names);
	memset(l, 0, sizeof(*l));
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool pack_list_has(const struct pack_list *l, const char *name)
{
	return l->n && bsearch(&name, l->names, l->n, sizeof(*l->names), str_cmp) != NULL;
}

static int get_mem(struct bri_offsite *r, const struct s3_obj *o, size_t max, char **out,
                   size_t *len, char sha[65], struct bri_err *err);

/* Reads NAME.packs of the remote: 0, -ENOENT (pushed without one), or < 0 with err. */
static int pack_list_get(struct bri_offsite *r, const struct rindex *x, const char *name,
                         struct pack_list *l, struct bri_err *err);

/* ---- push state ---- */

static const char *const status_word[] = {
    [BRI_OFFSITE_NONE] = "",
    [BRI_OFFSITE_PENDING] = "pending",
    [BRI_OFFSITE_UPLOADED] = "uploaded",
    [BRI_OFFSITE_FAILED] = "failed",
};

int bri_offsite_state_write(struct bri_store *s, const char *name,
                            const struct bri_offsite_state *st, struct bri_err *err)
{
	char when[40];
	json_object *o = json_object_new_object();

	if (!o)
		return bri_err_set(err, -ENOMEM, "out of memory");
	bri_time_utc(st->time, when, sizeof(when));
	json_object_object_add(o, "status", json_object_new_string(status_word[st->status]));
	json_object_object_add(o, "time", json_object_new_string(when));
	json_object_object_add(o, "remote", json_object_new_string(st->remote));
	if (st->status == BRI_OFFSITE_FAILED)
		json_object_object_add(o, "why", json_object_new_string(st->why));
	return bri_json_sidecar_write(s, name, BRI_SIDECAR_OFFSITE, o, err);
}

int bri_offsite_state_read(const struct bri_store *s, const char *name,
                           struct bri_offsite_state *out)
{
	json_object *o, *v;
	char *text = NULL;
	size_t len;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = bri_store_sidecar_read(s, name, BRI_SIDECAR_OFFSITE, BRI_OFFSITE_STATE_MAX, &text,
	                            &len);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	o = json_tokener_parse(text);
	free(text);
	if (!o || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return -EINVAL;
	}
	if (json_object_object_get_ex(o, "status", &v))
		for (int i = BRI_OFFSITE_PENDING; i <= BRI_OFFSITE_FAILED; i++)
			if (strcmp(json_object_get_string(v), status_word[i]) == 0)
				out->status = (enum bri_offsite_status)i;
	if (json_object_object_get_ex(o, "time", &v))
		bri_time_parse(json_object_get_string(v), &out->time);
	if (json_object_object_get_ex(o, "remote", &v))
		snprintf(out->remote, sizeof(out->remote), "%s", json_object_get_string(v));
	if (json_object_object_get_ex(o, "why", &v))
		snprintf(out->why, sizeof(out->why), "%s", json_object_get_string(v));
	json_object_put(o);
	return out->status == BRI_OFFSITE_NONE ? -EINVAL : 0;
}

const char *bri_offsite_state_text(const struct bri_offsite_state *st, char *buf, size_t len)
{
	char when[40];

	switch (st->status) {
	case BRI_OFFSITE_UPLOADED:
		bri_time_utc(st->time, when, sizeof(when));
		snprintf(buf, len, "uploaded %s", when);
		break;
	case BRI_OFFSITE_PENDING:
		snprintf(buf, len, "pending");
		break;
	case BRI_OFFSITE_FAILED:
		snprintf(buf, len, "failed: %s", st->why);
		break;
	default:
		snprintf(buf, len, "%s", "");
	}
	return buf;
}

static void set_state(struct bri_store *s, struct bri_offsite *r, const char *name,
                      enum bri_offsite_status status, const char *why)
{
	struct bri_offsite_state st = {.status = status, .time = bri_testpoint_now()};
	struct bri_err e = {0};

	snprintf(st.remote, sizeof(st.remote), "%s", r->url);
	snprintf(st.why, sizeof(st.why), "%s", why ? why : "");
	if (bri_offsite_state_write(s, name, &st, &e) < 0)
		bri_log(BRI_LOG_WARN, "offsite: cannot record the push state of %s: %s", name,
		        e.msg);
}

static int pack_list_get(struct bri_offsite *r, const struct rindex *x, const char *name,
                         struct pack_list *l, struct bri_err *err)
{
	char file[FILE_MAX], *text = NULL;
	const struct s3_obj *o;
	json_object *arr;
	size_t len = 0;
	int rc;

	memset(l, 0, sizeof(*l));
	snprintf(file, sizeof(file), "%s" PACKS_SUFFIX, name);
	o = rindex_get(x, file);
	if (!o)
		return -ENOENT;
	rc = get_mem(r, o, PACKS_MAX, &text, &len, NULL, err);
	if (rc < 0)
		return rc;
	arr = json_tokener_parse(text);
	free(text);
	if (!arr || !json_object_is_type(arr, json_type_array)) {
		json_object_put(arr);
		return bri_err_set(err, -EINVAL, "%s on %s is not a list of packs", file, r->url);
	}
	l->names = calloc(json_object_array_length(arr) + 1, sizeof(*l->names));
	if (!l->names) {
		json_object_put(arr);
		return bri_err_set(err, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		const char *v = json_object_get_string(json_object_array_get_idx(arr, i));
		if (v && is_pack(v) && !strchr(v, '/')) {
			l->names[l->n] = strdup(v);
			if (!l->names[l->n]) {
				json_object_put(arr);
				pack_list_free(l);
				return bri_err_set(err, -ENOMEM, "out of memory");
			}
			l->n++;
		}
	}
	json_object_put(arr);
	if (l->n > 1)
		qsort(l->names, l->n, sizeof(*l->names), str_cmp);
	return 0;
}

/* ---- push ---- */

static bool is_pages(const struct bri_store *s)
{
	return strcmp(s->ops->format, "pages") == 0;
}

/* ---- the remote's store identity ---- */

#define IDENT_MAX (64u << 10) /* bytes of a store.json or pages.secret that are read */

/* What the remote under the prefix holds of a store's form. */
struct rform {
	const struct s3_obj *json, *secret; /* store.json, pages.secret, or NULL */
	const char *plain_obj;              /* a plain backup's object (NAME.db[.meta]), or NULL */
	const char *page_obj;               /* a page store's pack, manifest or meta, or NULL */
};

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n > m && strcmp(s + n - m, suffix) == 0;
}

static void rform_of(const struct rindex *x, struct rform *f)
{
	memset(f, 0, sizeof(*f));
	f->json = rindex_get(x, STORE_JSON);
	f->secret = rindex_get(x, PAGES_SECRET_FILE);
	for (size_t i = 0; i < x->nkeys; i++) {
		const char *k = x->keys[i].name;

		if (ends_with(k, PLAIN_DB) || ends_with(k, PLAIN_META)) {
			if (!f->plain_obj)
				f->plain_obj = k;
		} else if (is_pack(k) || ends_with(k, MANIFEST_SUFFIX) ||
		           ends_with(k, PACKS_SUFFIX) || ends_with(k, META_SUFFIX)) {
			if (!f->page_obj)
				f->page_obj = k;
		}
	}
}

/* Which part of the store's identity the store.json field key is about. */
static const char *json_field_what(const char *key)
{
	if (strcmp(key, "format") == 0)
		return "format";
	if (strcmp(key, "encryption") == 0)
		return "encryption";
	if (strcmp(key, "key") == 0 || strcmp(key, "kdf") == 0 || strcmp(key, "key_check") == 0)
		return "key";
	return NULL;
}

/*
 * The store.json fields that make a store's identity: its format and its
 * version, how page ids are made and from which secret, and its key. The
 * others (the codec, the group size, any a later version adds) describe how
 * new packs are written, each pack describing itself, so a copy that
 * differs only in them is still this store's.
 */
static const char *const identity_fields[] = {
    "format", "version", "hash", "page_id_secret", "encryption", "key", "kdf", "key_check",
};

/*
 * The first identity field where the store.json texts a (the remote's) and
 * b (the store's) differ, into what (a word of json_field_what, or the
 * field's name); false when they are the same store.
 */
static bool json_differs(const char *a, const char *b, char *what, size_t wlen)
{
	json_object *ja = json_tokener_parse(a), *jb = json_tokener_parse(b);
	bool differ = false;

	snprintf(what, wlen, "contents");
	if (!ja || !jb || !json_object_is_type(ja, json_type_object) ||
	    !json_object_is_type(jb, json_type_object)) {
		differ = true;
		goto out;
	}
	for (size_t i = 0; i < sizeof(identity_fields) / sizeof(identity_fields[0]); i++) {
		const char *k = identity_fields[i];
		json_object *va = NULL, *vb = NULL;
		bool in_a = json_object_object_get_ex(ja, k, &va);
		bool in_b = json_object_object_get_ex(jb, k, &vb);

		if (in_a == in_b && (!in_a || json_object_equal(va, vb)))
			continue;
		snprintf(what, wlen, "%s", json_field_what(k) ? json_field_what(k) : k);
		differ = true;
		break;
	}
out:
	json_object_put(ja);
	json_object_put(jb);
	return differ;
}

/* The remote's store.json field (a string), or "" (for messages). */
static void json_field(const char *text, const char *key, char *out, size_t len)
{
	json_object *o = json_tokener_parse(text), *v;

	out[0] = '\0';
	if (o && json_object_is_type(o, json_type_object) &&
	    json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string))
		snprintf(out, len, "%s", json_object_get_string(v));
	json_object_put(o);
}

static int mismatch(const struct bri_offsite *r, const char *why, struct bri_err *err)
{
	return bri_err_set(err, BRI_OFFSITE_EMISMATCH,
	                   "refusing to push into %.200s: %s; nothing was uploaded. It holds "
	                   "another form of the store (converted or re-keyed since with "
	                   "bri-backup migrate?) and still restores with its own key: push "
	                   "this store to a new prefix (--remote, the mount's -o offsite=)",
	                   r->url, why);
}

/*
 * Whether the remote x is a copy of s as s is now (see BRI_OFFSITE_EMISMATCH
 * in offsite.h): 0, BRI_OFFSITE_EMISMATCH, or another negative errno.
 */
static int identity_check(const struct bri_store *s, struct bri_offsite *r, const struct rindex *x,
                          struct bri_err *err)
{
	char *mine = NULL, *theirs = NULL, why[300], what[64], enc[64];
	size_t mlen = 0, tlen = 0;
	struct rform f;
	int rc = 0;

	r->json_stale = false;
	rform_of(x, &f);
	if (!is_pages(s)) {
		if (f.json || f.secret || f.page_obj) {
			snprintf(why, sizeof(why),
			         "it holds a page store's copy (%s), but this store is plain",
			         f.json     ? STORE_JSON
			         : f.secret ? PAGES_SECRET_FILE
			                    : f.page_obj);
			return mismatch(r, why, err);
		}
		return 0;
	}
	if (f.plain_obj) {
		snprintf(why, sizeof(why),
		         "it holds a plain store's backups (%.100s), but this "
		         "store is a page store",
		         f.plain_obj);
		return mismatch(r, why, err);
	}
	if ((!f.json || !f.secret) && f.page_obj) {
		snprintf(why, sizeof(why),
		         "it holds page-store objects (%.100s) but no %s, so whose they are cannot "
		         "be told",
		         f.page_obj, f.json ? PAGES_SECRET_FILE : STORE_JSON);
		return mismatch(r, why, err);
	}
	for (int i = 0; i < 2 && rc == 0; i++) {
		const char *file = i ? PAGES_SECRET_FILE : STORE_JSON;
		const struct s3_obj *o = i ? f.secret : f.json;

		if (!o)
			continue; /* uploaded first by the push, before any pack */
		rc = bri_store_read_file(s, file, IDENT_MAX, &mine, &mlen);
		if (rc < 0) {
			rc = bri_err_set(err, rc, "cannot read %s in %s: %s", file, s->dir,
			                 strerror(-rc));
			break;
		}
		rc = get_mem(r, o, IDENT_MAX, &theirs, &tlen, NULL, err);
		if (rc < 0) {
			bri_err_wrap(err, rc, "reading %s of %s", file, r->url);
		} else if (i == 0 && json_differs(theirs, mine, what, sizeof(what))) {
			if (strcmp(what, "format") == 0) {
				json_field(theirs, "format", enc, sizeof(enc));
				snprintf(
				    why, sizeof(why),
				    "its store.json says format \"%.40s\", this store's \"%s\"",
				    enc, s->ops->format);
			} else if (strcmp(what, "encryption") == 0) {
				json_field(theirs, "encryption", enc, sizeof(enc));
				snprintf(why, sizeof(why), "it is %s, this store %s",
				         strcmp(enc, "none") == 0 || !enc[0] ? "not encrypted"
				                                             : "encrypted",
				         s->seal ? "is encrypted" : "is not encrypted");
			} else if (strcmp(what, "key") == 0) {
				snprintf(why, sizeof(why),
				         "it is encrypted under another key (its store.json's key "
				         "check or key derivation differs from this store's)");
			} else {
				snprintf(why, sizeof(why),
				         "its store.json differs from this store's (\"%.40s\")",
				         what);
			}
			rc = mismatch(r, why, err);
		} else if (i == 0 && (tlen != mlen || memcmp(theirs, mine, mlen) != 0)) {
			r->json_stale =
			    true; /* the same store: push_pages_shared uploads it again */
		} else if (i == 1 && (tlen != mlen || memcmp(theirs, mine, mlen) != 0)) {
			snprintf(why, sizeof(why), "its page-id secret (%s) is not this store's",
			         PAGES_SECRET_FILE);
			rc = mismatch(r, why, err);
		}
		free(mine);
		free(theirs);
		mine = theirs = NULL;
	}
	return rc;
}

/* The ISO time lock_days from now, for Object Lock; "" when not locking. */
static void lock_until(const struct bri_offsite *r, char buf[40])
{
	time_t t = bri_testpoint_now() + (time_t)r->lock_days * 86400;
	struct tm tm;

	buf[0] = '\0';
	if (r->lock_days <= 0)
		return;
	gmtime_r(&t, &tm);
	strftime(buf, 40, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Uploads the store file fname (relative to the store) as key fname unless the remote has it. */
static int push_file(struct bri_store *s, struct bri_offsite *r, const struct rindex *x,
                     const char *fname, const char *expect, bool skip_present,
                     struct bri_offsite_push_result *res, struct bri_err *err)
{
	const struct s3_obj *have = rindex_get(x, fname);
	char *key = NULL, hex[65], until[40];
	struct stat st;
	int fd, rc;

	fd = openat(s->dirfd, fname, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return bri_err_set(err, -errno, "cannot open %s in %s: %s", fname, s->dir,
		                   strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return bri_err_set(err, -EINVAL, "%s in %s is not a regular file", fname, s->dir);
	}
	if (skip_present && have && have->size == (uint64_t)st.st_size) {
		close(fd);
		return 0;
	}
	key = rkey_full(r, fname);
	if (!key) {
		close(fd);
		return bri_err_set(err, -ENOMEM, "out of memory");
	}
	lock_until(r, until);
	rc = s3_put_fd(r->s3, key, fd, (uint64_t)st.st_size, until[0] ? until : NULL, expect, hex,
	               err);
	if (rc == 0 && res) {
		res->objects++;
		res->bytes += (uint64_t)st.st_size;
	}
	free(key);
	close(fd);
	return rc;
}

static int read_meta(const struct bri_store *s, const char *name, struct bri_meta *m,
                     struct bri_err *err)
{
	struct bri_err why = {0};
	char *text = NULL;
	size_t len;
	int rc;

	rc = bri_store_sidecar_read(s, name, BRI_SIDECAR_META, BRI_META_MAX_BYTES, &text, &len);
	if (rc < 0)
		return bri_err_set(err, rc, "%s has no readable metadata: %s", name, strerror(-rc));
	rc = bri_meta_parse(text, len, m, &why);
	free(text);
	if (rc < 0)
		return bri_err_set(err, rc, "the metadata of %s does not parse: %s", name, why.msg);
	return 0;
}

/* A page store's packs and store-wide files, uploaded when the remote lacks them. */
/*
 * The packs backup name's pages are in, into packs (a JSON array of file
 * names): its manifest's page ids looked up in the store's index. 0, or a
 * negative errno (then the caller falls back to every pack).
 */
static int backup_packs(struct bri_store *s, const char *name, json_object *packs,
                        struct bri_err *err)
{
	struct pages_db *db = NULL;
	struct manifest m = {0};
	bool *used = NULL;
	int rc;

	rc = manifest_read(s, name, &m);
	if (rc < 0)
		return bri_err_set(err, rc, "cannot read the manifest of %s", name);
	rc = pages_db_open(s, &db, err);
	if (rc < 0)
		goto out_manifest;
	used = calloc(db->npacks + 1, sizeof(*used));
	if (!used) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_db;
	}
	pthread_mutex_lock(&db->lock);
	for (uint64_t i = 0; i < m.page_count; i++) {
		const struct pack_entry *e = pages_db_find(db, m.ids + i * PAGE_ID_LEN);

		if (!e && page_id_is_hole(m.ids + i * PAGE_ID_LEN))
			continue; /* never written: in no pack */
		if (!e) {
			rc = bri_err_set(err, -EBADMSG, "a page of %s is in no pack of the store",
			                 name);
			break;
		}
		used[e->pack] = true;
	}
	pthread_mutex_unlock(&db->lock);
	for (size_t i = 0; rc == 0 && i < db->npacks; i++)
		if (used[i])
			json_object_array_add(packs, json_object_new_string(db->packs[i].name));
	free(used);
out_db:
	pages_db_close(db);
out_manifest:
	free(m.ids);
	return rc;
}

/*
 * A page store's pages.secret and store.json (first: the remote's identity,
 * which identity_check compared, before any pack; a store.json of the same
 * identity in other bytes is replaced by the store's), then the packs of backup
 * name (all of the store's when they cannot be told): uploaded when the
 * remote lacks them; packs gets the pack names.
 */
static int push_pages_shared(struct bri_store *s, struct bri_offsite *r, const struct rindex *x,
                             const char *name, json_object *packs,
                             struct bri_offsite_push_result *res, struct bri_err *err)
{
	struct bri_err why = {0};
	bool all = backup_packs(s, name, packs, &why) < 0;
	int dfd, rc = 0;
	struct dirent *de;
	DIR *d;

	for (int i = 0; i < 2; i++) {
		const char *f = i ? STORE_JSON : PAGES_SECRET_FILE;

		if (rindex_get(x, f) && !(i && r->json_stale))
			continue; /* the same content: identity_check */
		rc = push_file(s, r, x, f, NULL, false, res, err);
		if (rc < 0)
			return rc;
	}
	if (all) {
		bri_log(BRI_LOG_WARN, "offsite: %s: pushing every pack (%s)", name, why.msg);
		while (json_object_array_length(packs))
			json_object_array_del_idx(packs, 0, 1);
	}
	dfd = openat(s->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return bri_err_set(err, -errno, "cannot list %s: %s", s->dir, strerror(errno));
	d = fdopendir(dfd);
	if (!d) {
		close(dfd);
		return bri_err_set(err, -errno, "cannot list %s: %s", s->dir, strerror(errno));
	}
	while (rc == 0 && (de = readdir(d))) {
		bool pack = is_pack(de->d_name);

		if (pack && !all)
			continue; /* its own packs: below */
		if (pack)
			rc = push_file(s, r, x, de->d_name, NULL, true, res, err);
		if (rc == 0 && pack)
			json_object_array_add(packs, json_object_new_string(de->d_name));
	}
	closedir(d);
	for (size_t i = 0; rc == 0 && !all && i < json_object_array_length(packs); i++)
		rc = push_file(s, r, x, json_object_get_string(json_object_array_get_idx(packs, i)),
		               NULL, true, res, err);
	return rc;
}

/*
 * Uploads NAME.packs: the packs the store had when NAME was pushed, all up
 * there now (a superset of those its pages are in): what prune keeps and
 * restore downloads.
 */
static int push_pack_list(struct bri_offsite *r, const char *name, json_object *packs,
                          struct bri_offsite_push_result *res, struct bri_err *err)
{
	const char *text = json_object_to_json_string_ext(packs, JSON_C_TO_STRING_PLAIN);
	char file[FILE_MAX], until[40], *key;
	int rc;

	snprintf(file, sizeof(file), "%s" PACKS_SUFFIX, name);
	key = rkey_full(r, file);
	if (!key)
		return bri_err_set(err, -ENOMEM, "out of memory");
	lock_until(r, until);
	rc = s3_put_mem(r->s3, key, text, strlen(text), until[0] ? until : NULL, err);
	free(key);
	if (rc == 0 && res) {
		res->objects++;
		res->bytes += strlen(text);
	}
	return rc;
}

/* Pushes name against the index x (the remote as listed at the start). */
static int push_backup(struct bri_store *s, struct bri_offsite *r, const struct rindex *x,
                       const char *name, const struct bri_op_ctx *ctx,
                       struct bri_offsite_push_result *res, struct bri_err *err)
{
	char data[FILE_MAX], meta[FILE_MAX];
	double t0 = bri_now_mono();
	struct bri_offsite_state old;
	struct bri_meta m;
	int rc;

	if (is_pages(s)) {
		snprintf(data, sizeof(data), "%s" MANIFEST_SUFFIX, name);
		snprintf(meta, sizeof(meta), "%s" META_SUFFIX, name);
	} else {
		snprintf(data, sizeof(data), "%s" PLAIN_DB, name);
		snprintf(meta, sizeof(meta), "%s" PLAIN_META, name);
	}
	rc = read_meta(s, name, &m, err);
	if (rc < 0)
		return rc;
	if (rindex_get(x, meta) && rindex_get(x, data)) {
		if (res)
			res->present++;
		if (bri_offsite_state_read(s, name, &old) < 0 ||
		    old.status != BRI_OFFSITE_UPLOADED || strcmp(old.remote, r->url) != 0)
			set_state(s, r, name, BRI_OFFSITE_UPLOADED, NULL);
		bri_meta_free(&m);
		return 0;
	}
	set_state(s, r, name, BRI_OFFSITE_PENDING, NULL);
	if (is_pages(s)) {
		json_object *packs = json_object_new_array();

		rc = packs ? push_pages_shared(s, r, x, name, packs, res, err)
		           : bri_err_set(err, -ENOMEM, "out of memory");
		if (rc == 0)
			rc = push_pack_list(r, name, packs, res, err);
		json_object_put(packs);
		if (rc == 0)
			rc = push_file(s, r, x, data, NULL, false, res, err);
	} else {
		rc = push_file(s, r, x, data, m.checksum, false, res, err);
	}
	bri_testpoint("offsite-before-meta");
	if (rc == 0)
		rc = push_file(s, r, x, meta, NULL, false, res, err); /* the commit point: last */
	bri_meta_free(&m);
	if (rc < 0) {
		bri_err_wrap(err, rc, "pushing %s to %s", name, r->url);
		set_state(s, r, name, BRI_OFFSITE_FAILED, err ? err->msg : strerror(-rc));
		if (res)
			res->failed++;
	} else {
		set_state(s, r, name, BRI_OFFSITE_UPLOADED, NULL);
		if (res)
			res->pushed++;
	}
	bri_audit_record(s, "offsite-push", name, rc, rc < 0 && err ? err->msg : r->url,
	                 bri_now_mono() - t0, ctx);
	return rc;
}

int bri_offsite_push_one(struct bri_store *s, struct bri_offsite *r, const char *name,
                         const struct bri_op_ctx *ctx, struct bri_offsite_push_result *res,
                         struct bri_err *err)
{
	struct rindex x;
	int rc;

	rc = bri_store_check_name(name, strlen(name), err);
	if (rc < 0)
		return rc;
	rc = rindex_load(r, &x, err);
	if (rc < 0) {
		set_state(s, r, name, BRI_OFFSITE_FAILED, err ? err->msg : strerror(-rc));
		return rc;
	}
	rc = identity_check(s, r, &x, err);
	if (rc < 0)
		set_state(s, r, name, BRI_OFFSITE_FAILED, err ? err->msg : strerror(-rc));
	else
		rc = push_backup(s, r, &x, name, ctx, res, err);
	rindex_free(&x);
	return rc;
}

struct name_time {
	char name[BRI_NAME_MAX + 1];
	time_t t;
};

struct name_list {
	struct name_time *items;
	size_t n, cap;
};

static int name_time_cmp(const void *x, const void *y)
{
	const struct name_time *a = x, *b = y;

	if (a->t != b->t)
		return a->t < b->t ? -1 : 1;
	return strcmp(a->name, b->name);
}

static int collect(void *arg, const char *name, const struct stat *st)
{
	struct name_list *l = arg;

	if (l->n == l->cap) {
		size_t nc = l->cap ? 2 * l->cap : 64;
		struct name_time *a = realloc(l->items, nc * sizeof(*a));
		if (!a)
			return -ENOMEM;
		l->items = a;
		l->cap = nc;
	}
	snprintf(l->items[l->n].name, sizeof(l->items[l->n].name), "%s", name);
	l->items[l->n].t = st->st_mtime;
	l->n++;
	return 0;
}

int bri_offsite_push(struct bri_store *s, struct bri_offsite *r, const struct bri_op_ctx *ctx,
                     struct bri_offsite_push_result *res, struct bri_err *err)
{
	struct name_list l = {0};
	struct bri_err first = {0};
	struct rindex x;
	int rc, failed = 0;

	rc = bri_store_list(s, collect, &l, err);
	if (rc < 0)
		goto out_free;
	rc = rindex_load(r, &x, err);
	if (rc == 0) {
		rc = identity_check(s, r, &x, err);
		if (rc < 0)
			rindex_free(&x);
	}
	if (rc < 0) {
		/* The remote cannot be listed or is another store's copy: every backup not
		 * up there has failed now. */
		for (size_t i = 0; i < l.n; i++) {
			struct bri_offsite_state st;
			if (bri_offsite_state_read(s, l.items[i].name, &st) == 0 &&
			    st.status == BRI_OFFSITE_UPLOADED && strcmp(st.remote, r->url) == 0)
				continue;
			if (bri_store_sidecar_stat(s, l.items[i].name, BRI_SIDECAR_META,
			                           &(struct stat){0}) == 0) {
				set_state(s, r, l.items[i].name, BRI_OFFSITE_FAILED,
				          err ? err->msg : strerror(-rc));
				if (res)
					res->failed++;
			}
		}
		goto out_free;
	}
	/* Oldest first: an interrupted push leaves the older history complete. */
	if (l.n > 1) /* an empty store has no array: qsort wants one */
		qsort(l.items, l.n, sizeof(*l.items), name_time_cmp);
	for (size_t i = 0; i < l.n; i++) {
		struct bri_err e = {0};
		struct bri_meta m;

		if (read_meta(s, l.items[i].name, &m, &e) < 0)
			continue; /* not a backup (no usable .meta): nothing to send */
		bri_meta_free(&m);
		if (r->cancel && *r->cancel) {
			if (!failed++)
				bri_err_set(&first, -ECANCELED, "the push was cancelled");
			break;
		}
		if (push_backup(s, r, &x, l.items[i].name, ctx, res, &e) < 0) {
			if (!failed++)
				first = e;
			if (e.code == -ECONNREFUSED || e.code == -EHOSTUNREACH || e.code == -EACCES)
				break; /* the remote is down or refuses us: the rest would fail
				          alike */
		}
	}
	rindex_free(&x);
	if (failed)
		rc = bri_err_set(err, first.code ? first.code : -EIO, "%s", first.msg);
out_free:
	free(l.items);
	return rc;
}

/* ---- lag ---- */

struct lag_arg {
	const struct bri_store *s;
	const char *remote;
	struct bri_offsite_lag *out;
};

static int lag_one(void *arg, const char *name, const struct stat *st)
{
	struct lag_arg *a = arg;
	struct bri_offsite_state state;
	struct bri_err e = {0};
	struct bri_meta m;

	(void)st;
	if (read_meta(a->s, name, &m, &e) < 0)
		return 0; /* not a backup */
	a->out->backups++;
	if (bri_offsite_state_read(a->s, name, &state) == 0 &&
	    state.status == BRI_OFFSITE_UPLOADED && strcmp(state.remote, a->remote) == 0) {
		a->out->uploaded++;
		if (state.time > a->out->last_upload)
			a->out->last_upload = state.time;
	} else {
		if (state.status == BRI_OFFSITE_FAILED && strcmp(state.remote, a->remote) == 0)
			a->out->failed++;
		else
			a->out->pending++;
		if (!a->out->oldest_missing || m.time < a->out->oldest_missing) {
			a->out->oldest_missing = m.time;
			snprintf(a->out->why, sizeof(a->out->why), "%s",
			         state.status == BRI_OFFSITE_FAILED &&
			                 strcmp(state.remote, a->remote) == 0
			             ? state.why
			             : "");
		}
	}
	bri_meta_free(&m);
	return 0;
}

int bri_offsite_lag(const struct bri_store *s, const char *remote, time_t now,
                    struct bri_offsite_lag *out, struct bri_err *err)
{
	struct lag_arg a = {.s = s, .remote = remote, .out = out};
	int rc;

	memset(out, 0, sizeof(*out));
	rc = bri_store_list(s, lag_one, &a, err);
	if (rc < 0)
		return rc;
	if (out->oldest_missing && now > out->oldest_missing)
		out->lag_s = difftime(now, out->oldest_missing);
	return 0;
}

/* ---- list ---- */

static int backup_cmp(const void *a, const void *b)
{
	const struct bri_offsite_backup *x = a, *y = b;

	if (x->time != y->time)
		return x->time < y->time ? 1 : -1;
	return strcmp(y->name, x->name);
}

struct sort_ent {
	const struct bri_offsite_backup *b;
	size_t i;
};

static int sort_ent_cmp(const void *x, const void *y)
{
	return backup_cmp(((const struct sort_ent *)x)->b, ((const struct sort_ent *)y)->b);
}

/* The backup name of meta key k ("NAME.db.meta" or "NAME.meta"), or false. */
static bool meta_name(const char *k, char name[BRI_NAME_MAX + 1], bool *pages)
{
	size_t n, lp = strlen(PLAIN_META), lm = strlen(META_SUFFIX);

	if (!k)
		return false;
	n = strlen(k);

	if (n > lp && strcmp(k + n - lp, PLAIN_META) == 0) {
		*pages = false;
		n -= lp;
	} else if (n > lm && strcmp(k + n - lm, META_SUFFIX) == 0) {
		*pages = true;
		n -= lm;
	} else {
		return false;
	}
	if (n > BRI_NAME_MAX)
		return false;
	memcpy(name, k, n);
	name[n] = '\0';
	return bri_store_check_name(name, n, NULL) == 0;
}

static void data_file(const struct bri_offsite_backup *b, char file[FILE_MAX])
{
	snprintf(file, FILE_MAX, "%s%s", b->name, b->pages ? MANIFEST_SUFFIX : PLAIN_DB);
}

static void meta_file(const struct bri_offsite_backup *b, char file[FILE_MAX])
{
	snprintf(file, FILE_MAX, "%s%s", b->name, b->pages ? META_SUFFIX : PLAIN_META);
}

/*
 * Whether the remote's copy is encrypted (its store.json says so) into
 * *sealed, and then its key (r->seal, from r->key_file) checked against its
 * store.json's key check: before anything of it is downloaded. 0 or a
 * negative errno (-EKEYREJECTED: the key file is another key).
 */
static int remote_key(struct bri_offsite *r, const struct rindex *x, bool *sealed,
                      struct bri_err *err)
{
	const struct s3_obj *o = rindex_get(x, STORE_JSON);
	char *conf = NULL, enc[64];
	size_t clen = 0;
	int rc;

	*sealed = false;
	if (!o)
		return 0; /* a plain store's copy, or nothing yet */
	rc = get_mem(r, o, IDENT_MAX, &conf, &clen, NULL, err);
	if (rc < 0)
		return bri_err_wrap(err, rc, "reading the store.json of %s", r->url);
	json_field(conf, "encryption", enc, sizeof(enc));
	*sealed = enc[0] && strcmp(enc, "none") != 0;
	if (*sealed && !r->seal) {
		rc = store_key_for_json(r->url, conf, r->key_file, &r->seal, err);
		if (rc == -EKEYREJECTED)
			bri_err_wrap(err, rc,
			             "the offsite copy %.200s was pushed under another key (give "
			             "the key file it was pushed with)",
			             r->url);
	}
	free(conf);
	return rc;
}

/*
 * A metadata file of the remote (file: its key without the prefix) as text:
 * an encrypted page store's is sealed (bound to its file name), opened with
 * the key that opens the remote's store.json. *text is replaced.
 */
static int meta_open(struct bri_offsite *r, const struct rindex *x, const char *file, char **text,
                     size_t *len, struct bri_err *err)
{
	char *plain;
	int rc;

	if (*len < SEAL_OVERHEAD || memcmp(*text, "BRIs", 4) != 0)
		return 0; /* in the clear */
	if (!r->seal) {
		bool sealed;

		if (!rindex_get(x, STORE_JSON))
			return bri_err_set(err, -EBADMSG,
			                   "%s/%s is sealed, but %s has no store.json to say how",
			                   r->url, file, r->url);
		rc = remote_key(r, x, &sealed, err);
		if (rc < 0)
			return rc;
		if (!r->seal)
			return bri_err_set(err, -EBADMSG,
			                   "%s/%s is sealed, but the store.json of %s says it is "
			                   "not encrypted",
			                   r->url, file, r->url);
	}
	plain = malloc(*len - SEAL_OVERHEAD + 1);
	if (!plain)
		return bri_err_set(err, -ENOMEM, "out of memory");
	if (seal_open(r->seal, file, strlen(file), *text, *len, plain) < 0) {
		free(plain);
		return bri_err_set(err, -EBADMSG, "%s/%s does not open with the store's key",
		                   r->url, file);
	}
	*len -= SEAL_OVERHEAD;
	plain[*len] = '\0';
	free(*text);
	*text = plain;
	return 0;
}

/* The remote's backups from x; metas are downloaded and parsed. *metas (may be NULL) keeps them. */
static int list_backups(struct bri_offsite *r, const struct rindex *x, const char *only,
                        struct bri_offsite_backup **out, size_t *n, struct bri_meta **metas,
                        struct bri_err *err)
{
	struct bri_offsite_backup *b = calloc(x->nkeys ? x->nkeys : 1, sizeof(*b));
	struct bri_meta *ms = calloc(x->nkeys ? x->nkeys : 1, sizeof(*ms));
	size_t count = 0;
	int rc = 0;

	if (!b || !ms) {
		free(b);
		free(ms);
		return bri_err_set(err, -ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < x->nkeys; i++) {
		struct bri_offsite_backup *e = &b[count];
		char file[FILE_MAX], *text = NULL;
		const struct s3_obj *d;
		struct bri_err why = {0};
		size_t len = 0;

		if (!meta_name(x->keys[i].name, e->name, &e->pages) ||
		    (only && strcmp(only, e->name) != 0))
			continue;
		/* "X.db.meta" also ends in ".meta": a page store's backup "X.db" would be
		 * named like that, but names of ours never end in ".db". */
		rc = get_mem(r, x->keys[i].obj, BRI_META_MAX_BYTES + SEAL_OVERHEAD, &text, &len,
		             NULL, err);
		if (rc == 0)
			rc = meta_open(r, x, x->keys[i].name, &text, &len, err);
		if (rc < 0) {
			free(text);
			break;
		}
		if (bri_meta_parse(text, len, &ms[count], &why) < 0) {
			bri_log(BRI_LOG_WARN, "offsite: %s%s does not parse as metadata: %s",
			        r->conf.prefix, x->keys[i].name, why.msg);
			free(text);
			continue;
		}
		free(text);
		snprintf(e->backup_time, sizeof(e->backup_time), "%s", ms[count].backup_time);
		e->time = ms[count].time;
		snprintf(e->kind, sizeof(e->kind), "%s",
		         ms[count].kind == BRI_KIND_UNKNOWN ? "" : bri_kind_name(ms[count].kind));
		e->size = (uint64_t)ms[count].size_bytes;
		snprintf(e->checksum, sizeof(e->checksum), "%s", ms[count].checksum);
		data_file(e, file);
		d = rindex_get(x, file);
		e->data_present = d != NULL;
		e->stored = d ? d->size : 0;
		count++;
	}
	if (rc < 0) {
		for (size_t i = 0; i < count; i++)
			bri_meta_free(&ms[i]);
		free(ms);
		free(b);
		return rc;
	}
	/* Sort both arrays together: an index ordered by qsort, then applied. */
	{
		struct sort_ent *idx = malloc((count ? count : 1) * sizeof(*idx));
		struct bri_offsite_backup *sb = malloc((count ? count : 1) * sizeof(*sb));
		struct bri_meta *sm = malloc((count ? count : 1) * sizeof(*sm));
		if (!sb || !sm || !idx) {
			free(sb);
			free(sm);
			free(idx);
			for (size_t i = 0; i < count; i++)
				bri_meta_free(&ms[i]);
			free(ms);
			free(b);
			return bri_err_set(err, -ENOMEM, "out of memory");
		}
		for (size_t i = 0; i < count; i++) {
			idx[i].b = &b[i];
			idx[i].i = i;
		}
		qsort(idx, count, sizeof(*idx), sort_ent_cmp);
		for (size_t i = 0; i < count; i++) {
			sb[i] = b[idx[i].i];
			sm[i] = ms[idx[i].i];
		}
		free(idx);
		free(b);
		free(ms);
		b = sb;
		ms = sm;
	}
	if (metas) {
		*metas = ms;
	} else {
		for (size_t i = 0; i < count; i++)
			bri_meta_free(&ms[i]);
		free(ms);
	}
	*out = b;
	*n = count;
	return 0;
}

static void metas_free(struct bri_meta *m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		bri_meta_free(&m[i]);
	free(m);
}

int bri_offsite_list(struct bri_offsite *r, struct bri_offsite_backup **out, size_t *n,
                     struct bri_err *err)
{
	struct rindex x;
	int rc = rindex_load(r, &x, err);

	if (rc < 0)
		return rc;
	rc = remote_key(r, &x, &(bool){false}, err);
	if (rc == 0)
		rc = list_backups(r, &x, NULL, out, n, NULL, err);
	rindex_free(&x);
	return rc;
}

/* ---- verify ---- */

/* Hashes fd from its start: hex and size. */
static int hash_fd(int fd, char hex[65], uint64_t *size)
{
	struct bri_err e = {0};
	struct stat st;

	if (fstat(fd, &st) < 0 || lseek(fd, 0, SEEK_SET) < 0)
		return -errno;
	*size = (uint64_t)st.st_size;
	return bri_checksum_fd(fd, *size, NULL, hex, &e) < 0 ? -EIO : 0;
}

/* Downloads o to a temporary file and hashes it. */
static int download_hash(struct bri_offsite *r, const struct s3_obj *o, char hex[65],
                         uint64_t *size, char stored[65], struct bri_err *err)
{
	char tmpl[] = "/tmp/bri-offsite-verify-XXXXXX";
	const char *tmpdir = getenv("TMPDIR");
	char *path = NULL;
	int fd, rc;

	if (tmpdir && *tmpdir && asprintf(&path, "%s/bri-offsite-verify-XXXXXX", tmpdir) < 0)
		path = NULL;
	fd = mkstemp(path ? path : tmpl);
	if (fd < 0) {
		rc = bri_err_set(err, -errno, "cannot make a temporary file: %s", strerror(errno));
		free(path);
		return rc;
	}
	unlink(path ? path : tmpl);
	free(path);
	rc = get_fd(r, o, fd, stored, err);
	if (rc == 0 && hash_fd(fd, hex, size) < 0)
		rc = bri_err_set(err, -EIO, "cannot hash the download of %s", o->key);
	close(fd);
	return rc;
}

/* Checks one object: there, size, and its stored SHA-256 (expect, when known). */
static int check_object(struct bri_offsite *r, const struct rindex *x, const char *file,
                        int64_t want_size, const char *expect, bool read_data, char *detail,
                        size_t dlen, struct bri_err *err)
{
	const struct s3_obj *o = rindex_get(x, file);
	struct s3_resp resp;
	int rc;

	if (!o) {
		snprintf(detail, dlen, "%s is missing on the remote", file);
		return 1;
	}
	rc = head(r, o, &resp, err);
	if (rc < 0)
		return rc;
	s3_resp_free(&resp);
	if (resp.status != 200) {
		snprintf(detail, dlen, "%s: HTTP %ld", file, resp.status);
		return 1;
	}
	if (want_size >= 0 && resp.length != want_size) {
		snprintf(detail, dlen, "%s has %" PRId64 " bytes on the remote, not %" PRId64, file,
		         (int64_t)resp.length, want_size);
		return 1;
	}
	if (!resp.sha256[0]) {
		snprintf(detail, dlen,
		         "%s has no stored SHA-256 on the remote (not uploaded by us)", file);
		return 1;
	}
	if (expect && strcmp(resp.sha256, expect) != 0) {
		snprintf(detail, dlen, "%s: the stored SHA-256 is not the metadata's", file);
		return 1;
	}
	if (read_data) {
		char hex[65], stored[65] = "";
		uint64_t size = 0;

		rc = download_hash(r, o, hex, &size, stored, err);
		if (rc < 0)
			return rc;
		if (strcmp(hex, resp.sha256) != 0 || (expect && strcmp(hex, expect) != 0)) {
			snprintf(detail, dlen, "%s: its bytes do not hash to the stored SHA-256",
			         file);
			return 1;
		}
	}
	return 0;
}

/*
 * A page store's backup, assembled from a download of its manifest and the
 * packs into a temporary folder, against the checksum of its .meta
 * (bri_offsite_fetch): 0, 1 (detail says why), or < 0 when it could not run.
 */
static int check_assembled(struct bri_offsite *r, const char *name, char *detail, size_t dlen,
                           struct bri_err *err)
{
	const char *tmp = getenv("TMPDIR");
	struct bri_err why = {0};
	char *dir = NULL, *db = NULL;
	int rc;

	if (asprintf(&dir, "%s/bri-offsite-verify-XXXXXX", tmp && *tmp ? tmp : "/tmp") < 0)
		return bri_err_set(err, -ENOMEM, "out of memory");
	if (!mkdtemp(dir)) {
		rc =
		    bri_err_set(err, -errno, "cannot make a temporary folder: %s", strerror(errno));
		free(dir);
		return rc;
	}
	rc = bri_offsite_fetch(r, name, dir, &db, &why);
	bri_offsite_tmpdir_remove(dir);
	free(dir);
	free(db);
	if (rc == -ENOMEM)
		return bri_err_set(err, rc, "out of memory");
	if (rc < 0) {
		snprintf(detail, dlen, "%.380s", why.msg);
		return 1;
	}
	return 0;
}

int bri_offsite_verify(struct bri_offsite *r, const char *const *names, size_t n, bool read_data,
                       int sample_pct, struct bri_offsite_check **out, size_t *nout,
                       struct bri_err *err)
{
	struct bri_offsite_backup *b = NULL;
	struct bri_offsite_check *c = NULL;
	struct bri_meta *ms = NULL;
	size_t nb = 0, count = 0;
	unsigned char *pack_seen = NULL; /* per x.keys: 0 not checked, 1 read, 2 by HEAD */
	bool any_bad = false;
	struct rindex x;
	int rc;

	rc = rindex_load(r, &x, err);
	if (rc < 0)
		return rc;
	rc = remote_key(r, &x, &(bool){false}, err);
	if (rc == 0)
		rc = list_backups(r, &x, NULL, &b, &nb, &ms, err);
	if (rc < 0)
		goto out_index;
	pack_seen = calloc(x.nkeys + 1, 1);
	if (!pack_seen) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_list;
	}
	c = calloc((n ? n : nb) + 1, sizeof(*c));
	if (!c) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_list;
	}
	for (size_t i = 0; i < (n ? n : nb); i++) {
		const char *want = n ? names[i] : b[i].name;
		struct bri_offsite_check *k = &c[count++];
		struct bri_offsite_backup *e = NULL;
		char file[FILE_MAX];
		unsigned int coin = 0;
		int bad = 0;

		snprintf(k->name, sizeof(k->name), "%s", want);
		for (size_t j = 0; j < nb; j++)
			if (strcmp(b[j].name, want) == 0)
				e = &b[j];
		if (!e) {
			snprintf(k->detail, sizeof(k->detail), "no backup %s on %.200s", want,
			         r->url);
			any_bad = true;
			continue;
		}
		if (getrandom(&coin, sizeof(coin), 0) < (ssize_t)sizeof(coin))
			coin = (unsigned)i * 2654435761u; /* no entropy: spread by position */
		k->read_data = read_data && (sample_pct >= 100 || (int)(coin % 100) < sample_pct);
		meta_file(e, file);
		bad = check_object(r, &x, file, -1, NULL, k->read_data, k->detail,
		                   sizeof(k->detail), err);
		if (bad == 0) {
			data_file(e, file);
			bad = check_object(r, &x, file,
			                   e->pages ? (int64_t)e->stored : (int64_t)e->size,
			                   e->pages ? NULL : e->checksum, k->read_data, k->detail,
			                   sizeof(k->detail), err);
		}
		if (bad == 0 && e->pages) {
			struct pack_list pl;
			int lr = pack_list_get(r, &x, e->name, &pl, err);

			if (lr < 0 && lr != -ENOENT) {
				rc = lr;
				goto out_list;
			}
			/* The packs are shared: each checked once (again to read its data). */
			for (size_t j = 0; bad == 0 && j < (lr == 0 ? pl.n : x.nkeys); j++) {
				const char *kn = lr == 0 ? pl.names[j] : x.keys[j].name;
				const struct s3_obj *po = rindex_get(&x, kn);
				size_t slot;

				if (!is_pack(kn))
					continue;
				if (!po) {
					snprintf(k->detail, sizeof(k->detail),
					         "%.200s, which its pages are in, is missing on "
					         "the remote",
					         kn);
					bad = 1;
					break;
				}
				slot = (size_t)((const struct rkey *)bsearch(
				                    &(struct rkey){.name = kn}, x.keys, x.nkeys,
				                    sizeof(*x.keys), rkey_cmp) -
				                x.keys);
				if (pack_seen[slot] == 1 || (pack_seen[slot] == 2 && !k->read_data))
					continue; /* checked: ok */
				bad = check_object(r, &x, kn, (int64_t)po->size, NULL, k->read_data,
				                   k->detail, sizeof(k->detail), err);
				if (bad == 0)
					pack_seen[slot] = k->read_data ? 1 : 2;
			}
			if (lr == 0)
				pack_list_free(&pl);
		}
		if (bad == 0 && e->pages && k->read_data)
			bad = check_assembled(r, e->name, k->detail, sizeof(k->detail), err);
		if (bad < 0) {
			rc = bad;
			goto out_list;
		}
		k->ok = bad == 0;
		if (k->ok)
			snprintf(k->detail, sizeof(k->detail), "ok%s: %s, %" PRIu64 " bytes",
			         k->read_data ? " (downloaded and rehashed)" : "", e->backup_time,
			         e->size);
		else
			any_bad = true;
	}
	*out = c;
	*nout = count;
	c = NULL;
	rc = any_bad ? 1 : 0;
out_list:
	free(pack_seen);
	free(c);
	free(b);
	metas_free(ms, nb);
out_index:
	rindex_free(&x);
	return rc;
}

/* ---- fetch ---- */

static int open_new(const char *dir, const char *file, char **path, struct bri_err *err)
{
	int fd;

	if (asprintf(path, "%s/%s", dir, file) < 0) {
		*path = NULL;
		return bri_err_set(err, -ENOMEM, "out of memory");
	}
	fd = open(*path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		int e = errno;
		bri_err_set(err, -e, "cannot create %s: %s", *path, strerror(e));
		free(*path);
		*path = NULL;
		return -e;
	}
	return fd;
}

static int write_all(int fd, const void *p, size_t len)
{
	for (size_t off = 0; off < len;) {
		ssize_t w = write(fd, (const char *)p + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		off += (size_t)w;
	}
	return 0;
}

/* Downloads key file of the remote into dir/file (checked against its stored SHA-256). */
static int fetch_file(struct bri_offsite *r, const struct rindex *x, const char *dir,
                      const char *file, struct bri_err *err)
{
	const struct s3_obj *o = rindex_get(x, file);
	char stored[65] = "", hex[65];
	char *path = NULL;
	uint64_t size;
	int fd, rc;

	if (!o)
		return bri_err_set(err, -ENOENT, "%s is missing on %s", file, r->url);
	fd = open_new(dir, file, &path, err);
	if (fd < 0)
		return fd;
	rc = get_fd(r, o, fd, stored, err);
	if (rc == 0 && hash_fd(fd, hex, &size) < 0)
		rc = bri_err_set(err, -EIO, "cannot hash %s", path);
	if (rc == 0 && stored[0] && strcmp(stored, hex) != 0)
		rc = bri_err_set(err, -EIO, "%s on %s does not hash to its stored SHA-256", file,
		                 r->url);
	close(fd);
	free(path);
	return rc;
}

/* Assembles the page-store backup name (downloaded into dir/pages; sealed: the copy is
 * encrypted) into fd. */
static int assemble_pages(struct bri_offsite *r, const struct rindex *x, const char *dir,
                          const char *name, bool sealed, int fd, struct bri_err *err)
{
	/* The copy's own key; none for one pushed before the store was encrypted (its
	 * key is not looked at: the store's key file, given too, would be refused). */
	struct bri_store_open_opts oo = {.key_file = r->key_file, .key_later = !sealed};
	struct bri_store *ps = NULL;
	struct bri_reader *rd = NULL;
	char *pdir = NULL, *live = NULL, *buf = NULL;
	struct pack_list pl = {0};
	bool have_list = false;
	int rc;

	if (asprintf(&pdir, "%s/pages", dir) < 0 || asprintf(&live, "%s/live.db", dir) < 0) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	if (mkdir(pdir, 0700) < 0) {
		rc = bri_err_set(err, -errno, "cannot make %s: %s", pdir, strerror(errno));
		goto out_free;
	}
	/* Only the packs of its list (a backup pushed without one: every pack). */
	rc = pack_list_get(r, x, name, &pl, err);
	if (rc < 0 && rc != -ENOENT)
		goto out_free;
	have_list = rc == 0;
	for (size_t i = 0; i < x->nkeys; i++) {
		const char *kn = x->keys[i].name;
		bool pack = is_pack(kn) && (!have_list || pack_list_has(&pl, kn));

		if (pack || strcmp(kn, STORE_JSON) == 0 || strcmp(kn, PAGES_SECRET_FILE) == 0) {
			rc = fetch_file(r, x, pdir, kn, err);
			if (rc < 0)
				goto out_free;
		}
	}
	{
		char f[FILE_MAX];
		snprintf(f, sizeof(f), "%s" MANIFEST_SUFFIX, name);
		rc = fetch_file(r, x, pdir, f, err);
		if (rc == 0) {
			snprintf(f, sizeof(f), "%s" META_SUFFIX, name);
			rc = fetch_file(r, x, pdir, f, err);
		}
		if (rc < 0)
			goto out_free;
	}
	rc = bri_store_open_ex(live, pdir, &oo, &ps, err);
	if (rc < 0)
		goto out_free;
	rc = bri_store_open_reader(ps, name, &rd, err);
	if (rc < 0)
		goto out_store;
	buf = malloc(1u << 20);
	if (!buf) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_reader;
	}
	for (uint64_t off = 0; off < rd->size;) {
		size_t n = rd->size - off < (1u << 20) ? (size_t)(rd->size - off) : (1u << 20);
		rc = bri_reader_read_full(rd, buf, n, off);
		if (rc == 0)
			rc = write_all(fd, buf, n);
		if (rc < 0) {
			bri_err_set(err, rc, "cannot assemble %s from the downloaded pages: %s%s%s",
			            name, strerror(-rc), rd->why[0] ? ": " : "", rd->why);
			goto out_reader;
		}
		off += n;
	}
out_reader:
	free(buf);
	bri_reader_close(rd);
out_store:
	bri_store_close(ps);
out_free:
	pack_list_free(&pl);
	free(pdir);
	free(live);
	return rc;
}

int bri_offsite_fetch(struct bri_offsite *r, const char *name, const char *dir, char **db_path,
                      struct bri_err *err)
{
	struct bri_offsite_backup *b = NULL, *e = NULL;
	struct bri_meta *ms = NULL;
	char file[FILE_MAX], hex[65], *path = NULL, *mpath = NULL, *text = NULL;
	size_t nb = 0, len = 0;
	uint64_t size = 0;
	struct rindex x;
	bool sealed = false;
	int fd = -1, mfd = -1, rc;

	rc = bri_store_check_name(name, strlen(name), err);
	if (rc < 0)
		return rc;
	rc = rindex_load(r, &x, err);
	if (rc < 0)
		return rc;
	rc = remote_key(r, &x, &sealed, err); /* a wrong key: refused before any download */
	if (rc < 0)
		goto out_index;
	rc = list_backups(r, &x, name, &b, &nb, &ms, err);
	if (rc < 0)
		goto out_index;
	for (size_t i = 0; i < nb; i++)
		if (strcmp(b[i].name, name) == 0)
			e = &b[i];
	if (!e) {
		rc = bri_err_set(err, -ENOENT, "no backup %s on %s (its .meta is not there)", name,
		                 r->url);
		goto out_list;
	}
	snprintf(file, sizeof(file), "%s" PLAIN_DB, name);
	fd = open_new(dir, file, &path, err);
	if (fd < 0) {
		rc = fd;
		goto out_list;
	}
	if (e->pages) {
		rc = assemble_pages(r, &x, dir, name, sealed, fd, err);
	} else {
		const struct s3_obj *o;
		data_file(e, file);
		o = rindex_get(&x, file);
		rc = o ? get_fd(r, o, fd, NULL, err)
		       : bri_err_set(err, -ENOENT, "%s is missing on %s", file, r->url);
	}
	if (rc < 0)
		goto out_close;
	if (hash_fd(fd, hex, &size) < 0) {
		rc = bri_err_set(err, -EIO, "cannot hash %s", path);
		goto out_close;
	}
	if (strcmp(hex, e->checksum) != 0 || size != e->size) {
		rc = bri_err_set(err, -EIO,
		                 "%s from %s does not match its metadata (%" PRIu64
		                 " bytes, SHA-256 %.12s..., expected %" PRIu64 " bytes, %.12s...)",
		                 name, r->url, size, hex, e->size, e->checksum);
		goto out_close;
	}
	if (fsync(fd) < 0) {
		rc = bri_err_set(err, -errno, "cannot fsync %s: %s", path, strerror(errno));
		goto out_close;
	}
	{
		const struct s3_obj *o;
		meta_file(e, file);
		o = rindex_get(&x, file);
		rc = o ? get_mem(r, o, BRI_META_MAX_BYTES + SEAL_OVERHEAD, &text, &len, NULL, err)
		       : -ENOENT;
		if (rc == 0)
			rc = meta_open(r, &x, file, &text, &len, err);
		if (rc < 0)
			goto out_close;
		snprintf(file, sizeof(file), "%s" PLAIN_META, name);
		mfd = open_new(dir, file, &mpath, err);
		if (mfd < 0) {
			rc = mfd;
			goto out_close;
		}
		rc = write_all(mfd, text, len);
		if (rc == 0 && fsync(mfd) < 0)
			rc = -errno;
		if (rc < 0)
			bri_err_set(err, rc, "cannot write %s: %s", mpath, strerror(-rc));
	}
	if (rc == 0) {
		*db_path = path;
		path = NULL;
	}
out_close:
	if (mfd >= 0)
		close(mfd);
	close(fd);
	free(text);
	free(mpath);
	free(path);
out_list:
	free(b);
	metas_free(ms, nb);
out_index:
	rindex_free(&x);
	return rc;
}

/* ---- prune ---- */

/* Deletes every version of file. 0, 1 when a version is locked (until in detail), or < 0. */
static int delete_all_versions(struct bri_offsite *r, const struct rindex *x, const char *file,
                               char *detail, size_t dlen, struct bri_err *err)
{
	char *key = rkey_full(r, file);
	int locked = 0, rc = 0;

	if (!key)
		return bri_err_set(err, -ENOMEM, "out of memory");
	for (size_t i = 0; rc == 0 && i < x->nobjs; i++) {
		const struct s3_obj *o = &x->objs[i];
		char *vq;
		struct s3_req q = {.method = "DELETE", .key = key, .out_fd = -1};
		struct s3_resp resp;

		if (strcmp(o->key, key) != 0)
			continue;
		vq = version_query(o);
		q.query = vq;
		rc = s3_do(r->s3, &q, &resp, err);
		if (rc == 0 && resp.status == 403 && vq) {
			struct s3_resp h;
			locked = 1;
			if (!o->delete_marker && head(r, o, &h, err) == 0) {
				snprintf(detail, dlen, "locked until %s",
				         h.lock_until[0] ? h.lock_until : "?");
				s3_resp_free(&h);
			}
		} else if (rc == 0 && resp.status != 204 && resp.status != 200 &&
		           resp.status != 404) {
			char what[300];
			snprintf(what, sizeof(what), "deleting %s", key);
			rc = s3_fail(&resp, what, err);
		}
		s3_resp_free(&resp);
		free(vq);
	}
	free(key);
	return rc < 0 ? rc : locked;
}

/* "2026-11-30T23:30:04.843Z" as epoch seconds; 0 when it does not parse. */
static time_t iso_utc(const char *s)
{
	struct tm tm = {0};

	if (!strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
		return 0;
	return timegm(&tm);
}

/*
 * A page store's packs on the remote that no backup's pack list names any
 * more (the lists of every backup that stays, complete or still being
 * pushed), and older than a day (a push in progress uploads its packs before
 * its list): deleted, every version. Nothing when a backup that stays has
 * no list (pushed by an older version: its packs are unknown).
 */
static int prune_packs(struct bri_offsite *r, const struct rindex *x,
                       const struct bri_offsite_backup *b, const struct bri_offsite_prune_item *res,
                       size_t nb, time_t now, bool dry_run, unsigned *removed_packs,
                       struct bri_err *err)
{
	struct pack_list keep = {0};
	size_t cap = 0;
	int rc = 0;

	*removed_packs = 0;
	for (size_t i = 0; i < nb; i++)
		if (b[i].pages && !res[i].removed &&
		    !(dry_run && bri_retention_removes(res[i].verdict))) {
			char file[FILE_MAX];
			snprintf(file, sizeof(file), "%s" PACKS_SUFFIX, b[i].name);
			if (!rindex_get(x, file))
				return 0; /* its packs are unknown: keep them all */
		}
	for (size_t i = 0; rc == 0 && i < x->nkeys; i++) {
		const char *kn = x->keys[i].name;
		size_t n = strlen(kn), m = strlen(PACKS_SUFFIX);
		char name[BRI_NAME_MAX + 1];
		struct pack_list l;
		bool going = false;

		if (n <= m || n - m > BRI_NAME_MAX || strcmp(kn + n - m, PACKS_SUFFIX) != 0)
			continue;
		memcpy(name, kn, n - m);
		name[n - m] = '\0';
		for (size_t j = 0; j < nb; j++)
			if (!strcmp(b[j].name, name) &&
			    (res[j].removed || (dry_run && bri_retention_removes(res[j].verdict))))
				going = true;
		if (going)
			continue;
		rc = pack_list_get(r, x, name, &l, err);
		if (rc == -ENOENT) {
			rc = 0;
			continue;
		}
		if (rc < 0)
			break;
		if (l.n && keep.n + l.n > cap) {
			size_t nc = (keep.n + l.n) * 2;
			char **nn = realloc(keep.names, nc * sizeof(*nn));
			if (!nn) {
				pack_list_free(&l);
				rc = bri_err_set(err, -ENOMEM, "out of memory");
				break;
			}
			keep.names = nn;
			cap = nc;
		}
		if (l.n) {
			memcpy(keep.names + keep.n, l.names, l.n * sizeof(*l.names));
			keep.n += l.n;
		}
		free(l.names); /* the strings moved to keep */
	}
	if (rc == 0 && keep.n)
		qsort(keep.names, keep.n, sizeof(*keep.names), str_cmp);
	for (size_t i = 0; rc == 0 && i < x->nkeys; i++) {
		const char *kn = x->keys[i].name;
		time_t t = iso_utc(x->keys[i].obj->last_modified);
		char detail[200] = "";
		int d = 0;

		if (!is_pack(kn) || pack_list_has(&keep, kn) || !t || now - t <= UPLOAD_STALE)
			continue;
		if (!dry_run)
			d = delete_all_versions(r, x, kn, detail, sizeof(detail), err);
		if (d < 0)
			rc = d;
		else if (d == 0)
			(*removed_packs)++;
	}
	pack_list_free(&keep);
	return rc;
}

int bri_offsite_prune(struct bri_offsite *r, const struct bri_retention_rules *rules, time_t now,
                      bool dry_run, struct bri_offsite_prune_item **out, size_t *n,
                      unsigned *aborted_uploads, unsigned *removed_packs, struct bri_err *err)
{
	struct bri_offsite_backup *b = NULL;
	struct bri_retention_item *items = NULL;
	enum bri_retention_verdict *verdict = NULL;
	struct bri_offsite_prune_item *res = NULL;
	struct s3_upload *up = NULL;
	size_t nb = 0, nup = 0;
	struct rindex x;
	int rc;

	*aborted_uploads = 0;
	rc = rindex_load(r, &x, err);
	if (rc < 0)
		return rc;
	rc = list_backups(r, &x, NULL, &b, &nb, NULL, err);
	if (rc < 0)
		goto out_index;
	items = calloc(nb + 1, sizeof(*items));
	verdict = calloc(nb + 1, sizeof(*verdict));
	res = calloc(nb + 1, sizeof(*res));
	if (!items || !verdict || !res) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	for (size_t i = 0; i < nb; i++) {
		items[i].name = b[i].name;
		items[i].time = b[i].time;
		items[i].kind = b[i].kind[0] ? bri_kind_parse(b[i].kind) : BRI_KIND_AUTO;
		items[i].failed = !b[i].data_present; /* not restorable: not good */
	}
	rc = bri_retention_plan(items, nb, now, rules, verdict);
	if (rc < 0) {
		rc = bri_err_set(err, rc, "the retention rules are not valid");
		goto out_free;
	}
	for (size_t i = 0; i < nb; i++) {
		char file[FILE_MAX];
		int d;

		snprintf(res[i].name, sizeof(res[i].name), "%s", b[i].name);
		res[i].verdict = verdict[i];
		snprintf(res[i].detail, sizeof(res[i].detail), "%s",
		         bri_retention_reason(verdict[i]));
		if (!bri_retention_removes(verdict[i]) || dry_run)
			continue;
		meta_file(&b[i], file); /* the .meta first: then it is no backup on the remote */
		d = delete_all_versions(r, &x, file, res[i].detail, sizeof(res[i].detail), err);
		if (d == 0) {
			data_file(&b[i], file);
			d = delete_all_versions(r, &x, file, res[i].detail, sizeof(res[i].detail),
			                        err);
		}
		if (d == 0 && b[i].pages) {
			snprintf(file, sizeof(file), "%s" PACKS_SUFFIX, b[i].name);
			d = delete_all_versions(r, &x, file, res[i].detail, sizeof(res[i].detail),
			                        err);
		}
		if (d < 0) {
			rc = d;
			goto out_free;
		}
		res[i].removed = d == 0;
	}
	rc = prune_packs(r, &x, b, res, nb, now, dry_run, removed_packs, err);
	if (rc < 0)
		goto out_free;
	rc = s3_list_uploads(r->s3, r->conf.prefix, &up, &nup, err);
	if (rc < 0)
		goto out_free;
	for (size_t i = 0; i < nup; i++) {
		time_t t = iso_utc(up[i].initiated);
		if (t && now - t > UPLOAD_STALE) {
			if (!dry_run) {
				rc = s3_abort_upload(r->s3, up[i].key, up[i].upload_id, err);
				if (rc < 0)
					goto out_free;
			}
			(*aborted_uploads)++;
		}
	}
	*out = res;
	*n = nb;
	res = NULL;
out_free:
	s3_uploads_free(up, nup);
	free(res);
	free(items);
	free(verdict);
	free(b);
out_index:
	rindex_free(&x);
	return rc;
}

/* ---- pull ---- */

/* Removes dir and what fetch put into it (one level, and dir/pages). */
void bri_offsite_tmpdir_remove(const char *dir)
{
	static const char *const subs[] = {"/pages", ""};

	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		char *p = NULL;
		DIR *d;
		struct dirent *de;

		if (asprintf(&p, "%s%s", dir, subs[i]) < 0)
			return;
		d = opendir(p);
		if (d) {
			while ((de = readdir(d)))
				if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
					unlinkat(dirfd(d), de->d_name, 0);
			closedir(d);
		}
		rmdir(p);
		free(p);
	}
}

char *bri_offsite_tmpdir(const struct bri_store *s, struct bri_err *err)
{
	char *dir = NULL;

	/* An encrypted store holds nothing in the clear: the download goes beside the
	 * live database instead. */
	if ((s->seal ? asprintf(&dir, "%.*s/.offsite-fetch-XXXXXX",
	                        (int)(strrchr(s->db_path, '/') - s->db_path), s->db_path)
	             : asprintf(&dir, "%s/.offsite-fetch-XXXXXX", s->dir)) < 0) {
		bri_err_set(err, -ENOMEM, "out of memory");
		return NULL;
	}
	if (!mkdtemp(dir)) {
		bri_err_set(err, -errno, "cannot make a folder in %s: %s", s->dir, strerror(errno));
		free(dir);
		return NULL;
	}
	return dir;
}

/* Copies the file at path into the writer w (its fd, or SQLite's backup API into its path). */
static int pull_copy(const char *path, struct bri_backup_writer *w, char hex[65], uint64_t *size,
                     struct bri_err *err)
{
	struct bri_snapshot_info info = {0};
	int rc;

	if (w->fd >= 0) {
		int in = open(path, O_RDONLY | O_CLOEXEC);
		char *buf = malloc(1u << 20);
		ssize_t n;

		rc = 0;
		if (in < 0 || !buf) {
			rc = bri_err_set(err, in < 0 ? -errno : -ENOMEM, "cannot read %s", path);
			goto out_plain;
		}
		while ((n = read(in, buf, 1u << 20)) > 0) {
			rc = write_all(w->fd, buf, (size_t)n);
			if (rc < 0) {
				bri_err_set(err, rc, "cannot write the pulled backup: %s",
				            strerror(-rc));
				goto out_plain;
			}
		}
		if (n < 0)
			rc = bri_err_set(err, -errno, "cannot read %s: %s", path, strerror(errno));
		if (rc == 0 && hash_fd(w->fd, hex, size) < 0)
			rc = bri_err_set(err, -EIO, "cannot hash the pulled backup");
	out_plain:
		free(buf);
		if (in >= 0)
			close(in);
		return rc;
	}
	rc = bri_snapshot_take(path, w->path, 0, &info, err);
	bri_snapshot_info_free(&info);
	if (rc < 0)
		return rc;
	return bri_store_write_digest(w, size, hex, err);
}

int bri_offsite_pull(struct bri_store *s, struct bri_offsite *r, const char *name,
                     const struct bri_op_ctx *ctx, struct bri_err *err)
{
	struct bri_backup_writer *w = NULL;
	char *dir = NULL, *path = NULL, *mpath = NULL, *text = NULL, *json = NULL, hex[65];
	double t0 = bri_now_mono();
	struct bri_meta m;
	bool have_meta = false;
	uint64_t size = 0;
	size_t len = 0;
	int lockfd = -1, rc;

	rc = bri_store_check_name(name, strlen(name), err);
	if (rc < 0)
		goto out_audit;
	dir = bri_offsite_tmpdir(s, err);
	if (!dir) {
		rc = err ? err->code : -EIO;
		goto out_audit;
	}
	rc = bri_offsite_fetch(r, name, dir, &path, err);
	if (rc < 0)
		goto out_tmp;
	if (asprintf(&mpath, "%s.meta", path) < 0) {
		mpath = NULL;
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_tmp;
	}
	{
		struct bri_err why = {0};
		FILE *f = fopen(mpath, "re");
		text = malloc(BRI_META_MAX_BYTES + 1);
		len = f && text ? fread(text, 1, BRI_META_MAX_BYTES, f) : 0;
		if (f)
			fclose(f);
		rc = text ? bri_meta_parse(text, len, &m, &why) : -ENOMEM;
		if (rc < 0) {
			bri_err_set(err, rc, "the remote metadata of %s: %s", name, why.msg);
			goto out_tmp;
		}
		have_meta = true;
	}
	lockfd = bri_store_lock(s, err);
	if (lockfd < 0) {
		rc = lockfd;
		goto out_tmp;
	}
	if (bri_store_has(s, name)) {
		rc = bri_err_set(err, -EEXIST, "%s is already a backup in %s", name, s->dir);
		goto out_unlock;
	}
	rc = bri_store_write_begin(s, name, &w, err);
	if (rc < 0)
		goto out_unlock;
	rc = pull_copy(path, w, hex, &size, err);
	if (rc < 0)
		goto out_end;
	if (strcmp(hex, m.checksum) == 0 && (int64_t)size == m.size_bytes) {
		rc = bri_store_write_commit(w, text, len, err);
	} else {
		/* The format stored the same database in other bytes: the checksum is the
		 * database as this store serves it, so the metadata says so. */
		snprintf(m.checksum, sizeof(m.checksum), "%s", hex);
		m.size_bytes = (int64_t)size;
		m.size_mb = (double)size / (1024.0 * 1024.0);
		rc = bri_meta_format(&m, &json, &len);
		if (rc < 0)
			bri_err_set(err, rc, "out of memory");
		else
			rc = bri_store_write_commit(w, json, len, err);
	}
out_end:
	bri_store_write_end(w);
out_unlock:
	bri_store_unlock(lockfd);
out_tmp:
	if (have_meta)
		bri_meta_free(&m);
	if (dir)
		bri_offsite_tmpdir_remove(dir);
	free(dir);
	free(path);
	free(mpath);
	free(text);
	free(json);
out_audit:
	bri_audit_record(s, "offsite-pull", name, rc, rc < 0 && err ? err->msg : bri_offsite_url(r),
	                 bri_now_mono() - t0, ctx);
	return rc;
}
