/*
 * A small S3 client on libcurl (src/core/s3.h): AWS Signature Version 4
 * computed here over OpenSSL (curl 7.88's CURLOPT_AWS_SIGV4 neither sends
 * x-amz-content-sha256 nor sorts the query), one request at a time with
 * retries, PUT from memory or a file (multipart beyond one part), GET into a
 * file, listings (ListObjectsV2, ListObjectVersions, multipart uploads) read
 * from their XML by tag. Not a general S3 SDK: only what offsite.c needs.
 */
#include "s3.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bri/log.h"

struct s3 {
	const struct s3_conf *conf;
	const volatile int *cancel; /* non-zero: abort (another thread sets it) */
	CURL *curl;
	char host[512]; /* the Host header of path-style requests (endpoint's host[:port]) */
	char scheme[8]; /* "http" or "https" */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

int s3_open(const struct s3_conf *conf, const volatile int *cancel, struct s3 **out,
            struct bri_err *err)
{
	const char *p = strstr(conf->endpoint, "://");
	struct s3 *c;
	size_t n;

	if (!p)
		return bri_err_set(err, -EINVAL, "endpoint %s has no scheme (http:// or https://)",
		                   conf->endpoint);
	pthread_once(&curl_once, curl_init_once);
	c = calloc(1, sizeof(*c));
	if (!c)
		return bri_err_set(err, -ENOMEM, "out of memory");
	c->conf = conf;
	c->cancel = cancel;
	n = (size_t)(p - conf->endpoint);
	if (n >= sizeof(c->scheme)) {
		free(c);
		return bri_err_set(err, -EINVAL, "endpoint %s: unknown scheme", conf->endpoint);
	}
	memcpy(c->scheme, conf->endpoint, n);
	c->scheme[n] = '\0';
	snprintf(c->host, sizeof(c->host), "%s", p + 3);
	c->host[strcspn(c->host, "/")] = '\0';
	c->curl = curl_easy_init();
	if (!c->curl) {
		free(c);
		return bri_err_set(err, -ENOMEM, "cannot start libcurl");
	}
	*out = c;
	return 0;
}

void s3_close(struct s3 *c)
{
	if (!c)
		return;
	curl_easy_cleanup(c->curl);
	free(c);
}

void s3_resp_free(struct s3_resp *r)
{
	free(r->body);
	r->body = NULL;
	r->body_len = 0;
}

/* ---- encoding and hashing ---- */

char *s3_uri_encode(const char *s, bool keep_slash)
{
	static const char hexd[] = "0123456789ABCDEF";
	size_t n = strlen(s);
	char *out = malloc(3 * n + 1), *o = out;

	if (!out)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' || *p == '~' ||
		    (keep_slash && *p == '/')) {
			*o++ = (char)*p;
		} else {
			*o++ = '%';
			*o++ = hexd[*p >> 4];
			*o++ = hexd[*p & 15];
		}
	}
	*o = '\0';
	return out;
}

static void to_hex(const unsigned char *d, size_t n, char *out)
{
	static const char hexd[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hexd[d[i] >> 4];
		out[2 * i + 1] = hexd[d[i] & 15];
	}
	out[2 * n] = '\0';
}

static void sha256_hex(const void *data, size_t len, char hex[65])
{
	unsigned char d[32];
	unsigned int n = 0;

	EVP_Digest(data, len, d, &n, EVP_sha256(), NULL);
	to_hex(d, 32, hex);
}

static void md5_b64(const void *data, size_t len, char b64[32])
{
	unsigned char d[16];
	unsigned int n = 0;

	EVP_Digest(data, len, d, &n, EVP_md5(), NULL);
	EVP_EncodeBlock((unsigned char *)b64, d, 16);
}

static void hmac256(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
	unsigned int n = 32;

	HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &n);
}

/* ---- XML, read by tag ---- */

char *s3_xml_text(const char *p, const char *end, const char *tag)
{
	char open[80], close[80];
	const char *a, *b;
	char *out, *o;

	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	a = memmem(p, (size_t)(end - p), open, strlen(open));
	if (!a)
		return NULL;
	a += strlen(open);
	b = memmem(a, (size_t)(end - a), close, strlen(close));
	if (!b)
		return NULL;
	out = malloc((size_t)(b - a) + 1);
	if (!out)
		return NULL;
	o = out;
	while (a < b) {
		static const struct {
			const char *ent;
			char c;
		} ents[] = {{"&amp;", '&'},
		            {"&lt;", '<'},
		            {"&gt;", '>'},
		            {"&quot;", '"'},
		            {"&apos;", '\''}};
		bool done = false;

		if (*a == '&')
			for (size_t i = 0; i < sizeof(ents) / sizeof(ents[0]); i++) {
				size_t l = strlen(ents[i].ent);
				if ((size_t)(b - a) >= l && memcmp(a, ents[i].ent, l) == 0) {
					*o++ = ents[i].c;
					a += l;
					done = true;
					break;
				}
			}
		if (!done)
			*o++ = *a++;
	}
	*o = '\0';
	return out;
}

/* The text of tag into buf (truncated), "" when absent. */
static void xml_copy(const char *p, const char *end, const char *tag, char *buf, size_t len)
{
	char *t = s3_xml_text(p, end, tag);

	snprintf(buf, len, "%s", t ? t : "");
	free(t);
}

/* ---- one request ---- */

struct xfer {
	const struct s3_req *q;
	struct s3_resp *r;
	CURL *curl;
	size_t sent; /* bytes of q->data given to curl */
	int werr;    /* an errno writing out_fd, or -EFBIG */
};

static size_t read_cb(char *buf, size_t size, size_t nitems, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nitems, left = x->q->len - x->sent;

	if (n > left)
		n = left;
	memcpy(buf, (const char *)x->q->data + x->sent, n);
	x->sent += n;
	return n;
}

static size_t write_cb(char *buf, size_t size, size_t nitems, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nitems;
	long status = 0;
	char *nb;

	curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
	if (x->q->out_fd >= 0 && status >= 200 && status < 300) {
		for (size_t off = 0; off < n;) {
			ssize_t w = write(x->q->out_fd, buf + off, n - off);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				x->werr = -errno;
				return 0;
			}
			off += (size_t)w;
		}
		return n;
	}
	if (x->r->body_len + n > S3_RESPONSE_MAX) {
		x->werr = -EFBIG;
		return 0;
	}
	nb = realloc(x->r->body, x->r->body_len + n + 1);
	if (!nb) {
		x->werr = -ENOMEM;
		return 0;
	}
	x->r->body = nb;
	memcpy(nb + x->r->body_len, buf, n);
	x->r->body_len += n;
	nb[x->r->body_len] = '\0';
	return n;
}

/* Copies header "name: value" into dst when line is that header. */
static void header_value(const char *line, size_t n, const char *name, char *dst, size_t len)
{
	size_t l = strlen(name);
	const char *v;
	size_t vl;

	if (n <= l + 1 || strncasecmp(line, name, l) != 0 || line[l] != ':')
		return;
	v = line + l + 1;
	vl = n - l - 1;
	while (vl && (*v == ' ' || *v == '"')) {
		v++;
		vl--;
	}
	while (vl &&
	       (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == '"' || v[vl - 1] == ' '))
		vl--;
	if (vl >= len)
		vl = len - 1;
	memcpy(dst, v, vl);
	dst[vl] = '\0';
}

static size_t header_cb(char *buf, size_t size, size_t nitems, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nitems;
	char num[32] = "";

	header_value(buf, n, "ETag", x->r->etag, sizeof(x->r->etag));
	header_value(buf, n, "x-amz-version-id", x->r->version_id, sizeof(x->r->version_id));
	header_value(buf, n, "x-amz-meta-sha256", x->r->sha256, sizeof(x->r->sha256));
	header_value(buf, n, "x-amz-object-lock-retain-until-date", x->r->lock_until,
	             sizeof(x->r->lock_until));
	header_value(buf, n, "Content-Length", num, sizeof(num));
	if (num[0])
		x->r->length = strtoll(num, NULL, 10);
	return n;
}

#define HDRS_MAX 32 /* signed headers of one request */

/* Appends a formatted "name:value" to hdrs (HDRS_MAX): 0, or -ENOMEM when full or out of memory. */
static int add_hdr(char **hdrs, size_t *nh, const char *fmt, ...) BRI_PRINTF(3, 4);
static int add_hdr(char **hdrs, size_t *nh, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*nh >= HDRS_MAX)
		return -ENOMEM;
	va_start(ap, fmt);
	n = vasprintf(&hdrs[*nh], fmt, ap);
	va_end(ap);
	if (n < 0)
		return -ENOMEM;
	(*nh)++;
	return 0;
}

static int hdr_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The signed headers of q as "name:value" lines, sorted: host, the
 * x-amz-* and content-md5 we send. Fills *list (curl headers, sent as
 * "name: value") and the Authorization header.
 */
static int build_headers(struct s3 *c, const struct s3_req *q, const char *host, const char *path,
                         struct curl_slist **list, struct bri_err *err)
{
	const struct s3_conf *cf = c->conf;
	char amz_date[20], day[9], payload[65], md5[32], scope[160], kdate[32], kreg[32], ksvc[32],
	    ksign[32], sig_raw[32], sig[65], creq_hash[65];
	char *hdrs[HDRS_MAX], *canon = NULL, *signed_names = NULL, *tosign = NULL, *auth = NULL;
	size_t nh = 0, canon_len = 0, names_len = 0;
	struct tm tm;
	time_t now = time(NULL);
	int rc = 0;

	gmtime_r(&now, &tm);
	strftime(amz_date, sizeof(amz_date), "%Y%m%dT%H%M%SZ", &tm);
	strftime(day, sizeof(day), "%Y%m%d", &tm);
	sha256_hex(q->data ? q->data : "", q->data ? q->len : 0, payload);

	if (add_hdr(hdrs, &nh, "host:%s", host) < 0)
		goto out_nomem;
	if (add_hdr(hdrs, &nh, "x-amz-content-sha256:%s", payload) < 0)
		goto out_nomem;
	if (add_hdr(hdrs, &nh, "x-amz-date:%s", amz_date) < 0)
		goto out_nomem;
	if (q->data) {
		md5_b64(q->data, q->len, md5);
		if (add_hdr(hdrs, &nh, "content-md5:%s", md5) < 0)
			goto out_nomem;
	}
	if (cf->session_token)
		if (add_hdr(hdrs, &nh, "x-amz-security-token:%s", cf->session_token) < 0)
			goto out_nomem;
	for (const char *const *h = q->headers; h && *h; h++)
		if (add_hdr(hdrs, &nh, "%s", *h) < 0)
			goto out_nomem;
	qsort(hdrs, nh, sizeof(hdrs[0]), hdr_cmp);

	for (size_t i = 0; i < nh; i++) {
		canon_len += strlen(hdrs[i]) + 1;
		names_len += strcspn(hdrs[i], ":") + 1;
	}
	canon = malloc(canon_len + 1);
	signed_names = malloc(names_len + 1);
	if (!canon || !signed_names) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	canon[0] = signed_names[0] = '\0';
	for (size_t i = 0; i < nh; i++) {
		strcat(canon, hdrs[i]);
		strcat(canon, "\n");
		if (i)
			strcat(signed_names, ";");
		strncat(signed_names, hdrs[i], strcspn(hdrs[i], ":"));
	}
	{
		char *creq = NULL;
		if (asprintf(&creq, "%s\n%s\n%s\n%s\n%s\n%s", q->method, path,
		             q->query ? q->query : "", canon, signed_names, payload) < 0) {
			rc = bri_err_set(err, -ENOMEM, "out of memory");
			goto out_free;
		}
		sha256_hex(creq, strlen(creq), creq_hash);
		free(creq);
	}
	snprintf(scope, sizeof(scope), "%s/%s/s3/aws4_request", day, cf->region);
	if (asprintf(&tosign, "AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date, scope, creq_hash) < 0) {
		tosign = NULL;
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	{
		size_t kl = strlen(cf->secret_key) + 5;
		char *k = malloc(kl);
		if (!k) {
			rc = bri_err_set(err, -ENOMEM, "out of memory");
			goto out_free;
		}
		snprintf(k, kl, "AWS4%s", cf->secret_key);
		hmac256(k, strlen(k), day, (unsigned char *)kdate);
		OPENSSL_cleanse(k, kl);
		free(k);
	}
	hmac256(kdate, 32, cf->region, (unsigned char *)kreg);
	hmac256(kreg, 32, "s3", (unsigned char *)ksvc);
	hmac256(ksvc, 32, "aws4_request", (unsigned char *)ksign);
	hmac256(ksign, 32, tosign, (unsigned char *)sig_raw);
	OPENSSL_cleanse(ksign, sizeof(ksign));
	to_hex((unsigned char *)sig_raw, 32, sig);
	if (asprintf(&auth,
	             "Authorization: AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, "
	             "Signature=%s",
	             cf->access_key, scope, signed_names, sig) < 0) {
		auth = NULL;
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	*list = curl_slist_append(*list, auth);
	for (size_t i = 0; i < nh; i++) {
		char *line = NULL;
		size_t nl = strcspn(hdrs[i], ":");
		if (asprintf(&line, "%.*s: %s", (int)nl, hdrs[i], hdrs[i] + nl + 1) < 0) {
			rc = bri_err_set(err, -ENOMEM, "out of memory");
			goto out_free;
		}
		*list = curl_slist_append(*list, line);
		OPENSSL_cleanse(line, strlen(line));
		free(line);
	}
	*list = curl_slist_append(*list, "Expect:");
	goto out_free;
out_nomem:
	rc = bri_err_set(err, -ENOMEM, "out of memory (or too many headers)");
out_free:
	for (size_t i = 0; i < nh; i++) {
		OPENSSL_cleanse(hdrs[i], strlen(hdrs[i]));
		free(hdrs[i]);
	}
	free(canon);
	free(signed_names);
	free(tosign);
	free(auth);
	return rc;
}

/* curl's progress callback: non-zero aborts the transfer (CURLE_ABORTED_BY_CALLBACK). */
static int cancel_cb(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                     curl_off_t ulnow)
{
	const struct s3 *c = arg;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return c->cancel && *c->cancel;
}

static bool retryable(CURLcode cc, long status)
{
	if (cc != CURLE_OK)
		return cc == CURLE_COULDNT_CONNECT || cc == CURLE_OPERATION_TIMEDOUT ||
		       cc == CURLE_SEND_ERROR || cc == CURLE_RECV_ERROR ||
		       cc == CURLE_GOT_NOTHING || cc == CURLE_PARTIAL_FILE ||
		       cc == CURLE_COULDNT_RESOLVE_HOST;
	return status >= 500 || status == 429;
}

static int curl_errno(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
		return -EHOSTUNREACH;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_ABORTED_BY_CALLBACK:
		return -ECANCELED;
	default:
		return -EIO;
	}
}

/* The upload bandwidth limit in bytes/s: $BRI_S3_MAX_SEND_KBPS KiB/s, 0: none. */
static long max_send_bps(void)
{
	const char *t = getenv("BRI_S3_MAX_SEND_KBPS");
	long n = t ? strtol(t, NULL, 10) : 0;

	return n > 0 && n < (1L << 40) / 1024 ? n * 1024 : 0;
}

/* How many attempts a request gets: S3_TRIES, or $BRI_S3_TRIES (tests: 1). */
static int tries(void)
{
	const char *t = getenv("BRI_S3_TRIES");
	long n = t ? strtol(t, NULL, 10) : 0;

	return n >= 1 && n <= 20 ? (int)n : S3_TRIES;
}

int s3_do(struct s3 *c, const struct s3_req *q, struct s3_resp *r, struct bri_err *err)
{
	const struct s3_conf *cf = c->conf;
	char host[768], *path = NULL, *url = NULL, *ekey = NULL;
	int attempts = tries(), rc = 0;
	CURLcode cc = CURLE_OK;

	memset(r, 0, sizeof(*r));
	ekey = s3_uri_encode(q->key ? q->key : "", true);
	if (!ekey)
		return bri_err_set(err, -ENOMEM, "out of memory");
	if (cf->virtual_host) {
		snprintf(host, sizeof(host), "%s.%s", cf->bucket, c->host);
		rc = asprintf(&path, "/%s", ekey);
	} else {
		snprintf(host, sizeof(host), "%s", c->host);
		rc = q->key ? asprintf(&path, "/%s/%s", cf->bucket, ekey)
		            : asprintf(&path, "/%s", cf->bucket);
	}
	free(ekey);
	if (rc < 0 || asprintf(&url, "%s://%s%s%s%s", c->scheme, host, path, q->query ? "?" : "",
	                       q->query ? q->query : "") < 0) {
		free(path);
		return bri_err_set(err, -ENOMEM, "out of memory");
	}
	for (int attempt = 1;; attempt++) {
		struct curl_slist *hl = NULL;
		struct xfer x = {.q = q, .r = r, .curl = c->curl};
		long status = 0;

		s3_resp_free(r);
		memset(r, 0, sizeof(*r));
		r->length = -1;
		if (q->out_fd >= 0 &&
		    (ftruncate(q->out_fd, 0) < 0 || lseek(q->out_fd, 0, SEEK_SET) < 0)) {
			rc = bri_err_set(err, -errno, "cannot rewind the download file: %s",
			                 strerror(errno));
			break;
		}
		rc = build_headers(c, q, host, path, &hl, err);
		if (rc < 0)
			break;
		curl_easy_reset(c->curl);
		curl_easy_setopt(c->curl, CURLOPT_URL, url);
		curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hl);
		curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, 10L);
		curl_easy_setopt(c->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(c->curl, CURLOPT_LOW_SPEED_TIME, 60L);
		curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, write_cb);
		curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &x);
		curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, header_cb);
		curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, &x);
		curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
		if (max_send_bps() > 0)
			curl_easy_setopt(c->curl, CURLOPT_MAX_SEND_SPEED_LARGE,
			                 (curl_off_t)max_send_bps());
		if (c->cancel) {
			curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, cancel_cb);
			curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, c);
			curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, 0L);
		}
		if (strcmp(q->method, "HEAD") == 0) {
			curl_easy_setopt(c->curl, CURLOPT_NOBODY, 1L);
		} else if (strcmp(q->method, "PUT") == 0) {
			curl_easy_setopt(c->curl, CURLOPT_UPLOAD, 1L);
			curl_easy_setopt(c->curl, CURLOPT_READFUNCTION, read_cb);
			curl_easy_setopt(c->curl, CURLOPT_READDATA, &x);
			curl_easy_setopt(c->curl, CURLOPT_INFILESIZE_LARGE,
			                 (curl_off_t)(q->data ? q->len : 0));
		} else if (strcmp(q->method, "POST") == 0) {
			curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
			curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, q->data ? q->data : "");
			curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE,
			                 (curl_off_t)(q->data ? q->len : 0));
		} else if (strcmp(q->method, "GET") != 0) {
			curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, q->method);
		}
		cc = curl_easy_perform(c->curl);
		curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
		curl_slist_free_all(hl);
		r->status = cc == CURLE_OK ? status : 0;
		if (x.werr) {
			rc = bri_err_set(
			    err, x.werr, "%s %s: %s", q->method, q->key ? q->key : cf->bucket,
			    x.werr == -EFBIG ? "the answer is too large" : strerror(-x.werr));
			break;
		}
		if (!retryable(cc, r->status) || attempt >= attempts || (c->cancel && *c->cancel))
			break;
		bri_log(BRI_LOG_INFO, "offsite: %s %s: %s, trying again (%d of %d)", q->method,
		        q->key ? q->key : cf->bucket,
		        cc != CURLE_OK ? curl_easy_strerror(cc) : "server error", attempt + 1,
		        attempts);
		usleep((useconds_t)(200000u << (attempt - 1)));
	}
	if (rc == 0 && cc != CURLE_OK)
		rc =
		    bri_err_set(err, curl_errno(cc), "%s %s at %s: %s", q->method,
		                q->key ? q->key : cf->bucket, cf->endpoint, curl_easy_strerror(cc));
	free(path);
	free(url);
	if (rc < 0)
		s3_resp_free(r);
	return rc;
}

int s3_fail(const struct s3_resp *r, const char *what, struct bri_err *err)
{
	char code[64] = "", msg[200] = "";
	int e;

	if (r->body) {
		xml_copy(r->body, r->body + r->body_len, "Code", code, sizeof(code));
		xml_copy(r->body, r->body + r->body_len, "Message", msg, sizeof(msg));
	}
	switch (r->status) {
	case 403:
		e = -EACCES;
		break;
	case 404:
		e = -ENOENT;
		break;
	case 507:
		e = -ENOSPC;
		break;
	case 400:
	case 409:
		e = -EINVAL;
		break;
	default:
		e = -EIO;
	}
	return bri_err_set(err, e, "%s: HTTP %ld%s%s%s%s", what, r->status, code[0] ? " " : "",
	                   code, msg[0] ? ": " : "", msg);
}

/* ---- uploads ---- */

static int put_one(struct s3 *c, const char *key, const char *query, const void *data, size_t len,
                   const char *const *headers, struct s3_resp *r, struct bri_err *err)
{
	struct s3_req q = {.method = "PUT",
	                   .key = key,
	                   .query = query,
	                   .headers = headers,
	                   .data = data ? data : "",
	                   .len = len,
	                   .out_fd = -1};
	char what[300];
	int rc = s3_do(c, &q, r, err);

	if (rc < 0)
		return rc;
	if (r->status != 200) {
		snprintf(what, sizeof(what), "upload of %s", key);
		rc = s3_fail(r, what, err);
		s3_resp_free(r);
	}
	return rc;
}

/* The headers of a new object: its SHA-256 as metadata, and its lock. */
static void object_headers(const char *hex, const char *lock_until, char sha_h[100],
                           char lock_h[100], const char *h[4])
{
	size_t n = 0;

	snprintf(sha_h, 100, "x-amz-meta-sha256:%s", hex);
	h[n++] = sha_h;
	if (lock_until) {
		snprintf(lock_h, 100, "x-amz-object-lock-retain-until-date:%s", lock_until);
		h[n++] = "x-amz-object-lock-mode:COMPLIANCE";
		h[n++] = lock_h;
	}
	h[n] = NULL;
}

int s3_put_mem(struct s3 *c, const char *key, const void *data, size_t len, const char *lock_until,
               struct bri_err *err)
{
	char hex[65], sha_h[100], lock_h[100];
	const char *h[4];
	struct s3_resp r;
	int rc;

	sha256_hex(data, len, hex);
	object_headers(hex, lock_until, sha_h, lock_h, h);
	rc = put_one(c, key, NULL, data, len, h, &r, err);
	s3_resp_free(&r);
	return rc;
}

static int read_at(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* shorter than it said */
		done += (size_t)n;
	}
	return 0;
}

/* The SHA-256 of size bytes of fd, in hex. */
static int fd_sha256(int fd, uint64_t size, char hex[65], struct bri_err *err)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char d[32];
	size_t cap = 1u << 20;
	char *buf = malloc(cap);
	int rc = 0;

	if (!md || !buf) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_free;
	}
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	for (uint64_t off = 0; off < size;) {
		size_t n = size - off < cap ? (size_t)(size - off) : cap;
		rc = read_at(fd, buf, n, off);
		if (rc < 0) {
			bri_err_set(err, rc, "cannot read what is to be uploaded: %s",
			            strerror(-rc));
			goto out_free;
		}
		EVP_DigestUpdate(md, buf, n);
		off += n;
	}
	EVP_DigestFinal_ex(md, d, NULL);
	to_hex(d, 32, hex);
out_free:
	free(buf);
	EVP_MD_CTX_free(md);
	return rc;
}

static size_t part_size(void)
{
	const char *t = getenv("BRI_S3_PART_MB");
	long mb = t ? strtol(t, NULL, 10) : 0;

	if (mb >= 8 && mb <= 64)
		return (size_t)mb << 20;
	return S3_PART_DEFAULT;
}

static int check_expect(const char *key, const char *expect, const char *hex, struct bri_err *err)
{
	if (!expect || strcmp(expect, hex) == 0)
		return 0;
	return bri_err_set(err, -EIO,
	                   "%s was not uploaded: its SHA-256 %.12s... is not the %.12s... its "
	                   "metadata records (damaged, or changed while read)",
	                   key, hex, expect);
}

/*
 * A multipart upload of size bytes of fd. With expect (the SHA-256 the
 * bytes must have, already in the headers h), the whole object is hashed
 * from the parts as they are sent and the upload is aborted, never
 * completed, when it differs: one read of the file instead of two.
 */
static int multipart(struct s3 *c, const char *key, int fd, uint64_t size, const char *const *h,
                     size_t psize, const char *expect, char hex[65], struct bri_err *err)
{
	EVP_MD_CTX *whole = NULL;
	struct s3_req q = {.method = "POST",
	                   .key = key,
	                   .query = "uploads=",
	                   .headers = h,
	                   .out_fd = -1,
	                   .want_body = true};
	char *upload_id = NULL, *eid = NULL, *query = NULL, *xml = NULL, what[300];
	size_t nparts = (size_t)((size + psize - 1) / psize), xml_len = 0;
	char(*etags)[80] = NULL;
	char *buf = NULL;
	struct s3_resp r;
	int rc;

	snprintf(what, sizeof(what), "starting the multipart upload of %s", key);
	rc = s3_do(c, &q, &r, err);
	if (rc < 0)
		return rc;
	if (r.status != 200) {
		rc = s3_fail(&r, what, err);
		s3_resp_free(&r);
		return rc;
	}
	upload_id = r.body ? s3_xml_text(r.body, r.body + r.body_len, "UploadId") : NULL;
	s3_resp_free(&r);
	if (!upload_id)
		return bri_err_set(err, -EIO, "%s: no UploadId in the answer", what);
	eid = s3_uri_encode(upload_id, false);
	etags = calloc(nparts, sizeof(*etags));
	buf = malloc(psize);
	whole = EVP_MD_CTX_new();
	if (!eid || !etags || !buf || !whole || !EVP_DigestInit_ex(whole, EVP_sha256(), NULL)) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_abort;
	}
	for (size_t i = 0; i < nparts; i++) {
		uint64_t off = (uint64_t)i * psize;
		size_t n = size - off < psize ? (size_t)(size - off) : psize;

		rc = read_at(fd, buf, n, off);
		if (rc < 0) {
			bri_err_set(err, rc, "cannot read part %zu of %s: %s", i + 1, key,
			            strerror(-rc));
			goto out_abort;
		}
		EVP_DigestUpdate(whole, buf, n);
		free(query);
		if (asprintf(&query, "partNumber=%zu&uploadId=%s", i + 1, eid) < 0) {
			query = NULL;
			rc = bri_err_set(err, -ENOMEM, "out of memory");
			goto out_abort;
		}
		rc = put_one(c, key, query, buf, n, NULL, &r, err);
		if (rc < 0)
			goto out_abort;
		snprintf(etags[i], sizeof(etags[i]), "%s", r.etag);
		s3_resp_free(&r);
	}
	{
		unsigned char d[32];
		EVP_DigestFinal_ex(whole, d, NULL);
		to_hex(d, 32, hex);
	}
	rc = check_expect(key, expect, hex, err);
	if (rc < 0)
		goto out_abort; /* changed or damaged while sent: never completed */
	xml_len = 64 + nparts * 160;
	xml = malloc(xml_len);
	if (!xml) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_abort;
	}
	{
		size_t o = (size_t)snprintf(xml, xml_len, "<CompleteMultipartUpload>");
		for (size_t i = 0; i < nparts; i++)
			o += (size_t)snprintf(
			    xml + o, xml_len - o,
			    "<Part><PartNumber>%zu</PartNumber><ETag>\"%s\"</ETag></Part>", i + 1,
			    etags[i]);
		o += (size_t)snprintf(xml + o, xml_len - o, "</CompleteMultipartUpload>");
		free(query);
		if (asprintf(&query, "uploadId=%s", eid) < 0) {
			query = NULL;
			rc = bri_err_set(err, -ENOMEM, "out of memory");
			goto out_abort;
		}
		q = (struct s3_req){.method = "POST",
		                    .key = key,
		                    .query = query,
		                    .data = xml,
		                    .len = o,
		                    .out_fd = -1,
		                    .want_body = true};
	}
	snprintf(what, sizeof(what), "completing the multipart upload of %s", key);
	rc = s3_do(c, &q, &r, err);
	if (rc < 0)
		goto out_abort;
	/* An error can come with status 200 in the body (S3's documented quirk). */
	if (r.status != 200 || (r.body && strstr(r.body, "<Error>"))) {
		rc = s3_fail(&r, what, err);
		if (rc == 0)
			rc = -EIO;
		s3_resp_free(&r);
		goto out_abort;
	}
	s3_resp_free(&r);
	goto out_free;
out_abort : {
	struct bri_err ignored = {0};
	s3_abort_upload(c, key, upload_id, &ignored);
}
out_free:
	EVP_MD_CTX_free(whole);
	free(xml);
	free(buf);
	free(etags);
	free(query);
	free(eid);
	free(upload_id);
	return rc;
}

int s3_put_fd(struct s3 *c, const char *key, int fd, uint64_t size, const char *lock_until,
              const char *expect, char hex[65], struct bri_err *err)
{
	char sha_h[100], lock_h[100];
	size_t psize = part_size();
	const char *h[4];
	struct s3_resp r;
	char *buf;
	int rc;

	if (size > psize) {
		/* Without an expected hash, a first pass finds the one to store. */
		char pre[65];

		if (!expect) {
			rc = fd_sha256(fd, size, pre, err);
			if (rc < 0)
				return rc;
			expect = pre;
		}
		object_headers(expect, lock_until, sha_h, lock_h, h);
		return multipart(c, key, fd, size, h, psize, expect, hex, err);
	}
	buf = malloc(size ? (size_t)size : 1);
	if (!buf)
		return bri_err_set(err, -ENOMEM, "out of memory");
	rc = read_at(fd, buf, (size_t)size, 0);
	if (rc < 0) {
		free(buf);
		return bri_err_set(err, rc, "cannot read %s for uploading: %s", key, strerror(-rc));
	}
	sha256_hex(buf, (size_t)size, hex);
	rc = check_expect(key, expect, hex, err);
	if (rc < 0) {
		free(buf);
		return rc;
	}
	object_headers(hex, lock_until, sha_h, lock_h, h);
	rc = put_one(c, key, NULL, buf, (size_t)size, h, &r, err);
	s3_resp_free(&r);
	free(buf);
	return rc;
}

int s3_abort_upload(struct s3 *c, const char *key, const char *upload_id, struct bri_err *err)
{
	char *eid = s3_uri_encode(upload_id, false), *query = NULL;
	struct s3_req q = {.method = "DELETE", .key = key, .out_fd = -1};
	struct s3_resp r;
	int rc;

	if (!eid || asprintf(&query, "uploadId=%s", eid) < 0) {
		free(eid);
		return bri_err_set(err, -ENOMEM, "out of memory");
	}
	q.query = query;
	rc = s3_do(c, &q, &r, err);
	if (rc == 0 && r.status != 204 && r.status != 200 && r.status != 404)
		rc = s3_fail(&r, "aborting a multipart upload", err);
	s3_resp_free(&r);
	free(query);
	free(eid);
	return rc;
}

/* ---- listings ---- */

void s3_objs_free(struct s3_obj *o, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(o[i].key);
	free(o);
}

void s3_uploads_free(struct s3_upload *u, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(u[i].key);
		free(u[i].upload_id);
	}
	free(u);
}

/* The next element <tag> ... </tag> at or after p: its bounds, or false. */
static bool next_elem(const char *p, const char *end, const char *tag, const char **a,
                      const char **b)
{
	char open[64], close[64];

	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	*a = memmem(p, (size_t)(end - p), open, strlen(open));
	if (!*a)
		return false;
	*b = memmem(*a, (size_t)(end - *a), close, strlen(close));
	if (!*b)
		return false;
	*b += strlen(close);
	return true;
}

static int add_obj(struct s3_obj **out, size_t *n, size_t *cap, size_t max, const char *a,
                   const char *b, bool marker, struct bri_err *err)
{
	struct s3_obj *o;
	char num[32], latest[8];

	if (*n >= max)
		return bri_err_set(err, -EFBIG, "the remote lists more than %zu objects", max);
	if (*n == *cap) {
		size_t nc = *cap ? 2 * *cap : 256;
		o = realloc(*out, nc * sizeof(*o));
		if (!o)
			return bri_err_set(err, -ENOMEM, "out of memory");
		*out = o;
		*cap = nc;
	}
	o = &(*out)[*n];
	memset(o, 0, sizeof(*o));
	o->key = s3_xml_text(a, b, "Key");
	if (!o->key)
		return bri_err_set(err, -EIO, "a listing entry without a key");
	xml_copy(a, b, "Size", num, sizeof(num));
	o->size = strtoull(num, NULL, 10);
	xml_copy(a, b, "VersionId", o->version_id, sizeof(o->version_id));
	xml_copy(a, b, "LastModified", o->last_modified, sizeof(o->last_modified));
	xml_copy(a, b, "IsLatest", latest, sizeof(latest));
	o->latest = strcmp(latest, "true") == 0;
	o->delete_marker = marker;
	(*n)++;
	return 0;
}

int s3_list(struct s3 *c, const char *prefix, bool versions, struct s3_obj **out, size_t *n,
            size_t max, struct bri_err *err)
{
	char *eprefix = s3_uri_encode(prefix, false), *token = NULL, *vtoken = NULL, *query = NULL;
	struct s3_obj *objs = NULL;
	size_t count = 0, cap = 0;
	int rc = 0;

	if (!eprefix)
		return bri_err_set(err, -ENOMEM, "out of memory");
	for (;;) {
		struct s3_req q = {.method = "GET", .out_fd = -1, .want_body = true};
		struct s3_resp r;
		const char *p, *end, *a, *b;
		char trunc[8];
		int qr;

		free(query);
		if (versions)
			qr = asprintf(&query, "delimiter=%%2F&%s%s%sprefix=%s%s%s&versions=",
			              token ? "key-marker=" : "", token ? token : "",
			              token ? "&" : "", eprefix,
			              vtoken ? "&version-id-marker=" : "", vtoken ? vtoken : "");
		else
			qr = asprintf(&query, "%s%s%sdelimiter=%%2F&list-type=2&prefix=%s",
			              token ? "continuation-token=" : "", token ? token : "",
			              token ? "&" : "", eprefix);
		if (qr < 0) {
			query = NULL;
			rc = bri_err_set(err, -ENOMEM, "out of memory");
			break;
		}
		q.query = query;
		rc = s3_do(c, &q, &r, err);
		if (rc < 0)
			break;
		if (r.status != 200 || !r.body) {
			char what[300];
			snprintf(what, sizeof(what), "listing s3://%s/%s", c->conf->bucket, prefix);
			rc = s3_fail(&r, what, err);
			s3_resp_free(&r);
			break;
		}
		p = r.body;
		end = r.body + r.body_len;
		if (versions) {
			for (;;) {
				const char *va, *vb, *da, *db;
				bool hv = next_elem(p, end, "Version", &va, &vb);
				bool hd = next_elem(p, end, "DeleteMarker", &da, &db);
				if (!hv && !hd)
					break;
				if (hv && (!hd || va < da)) {
					rc = add_obj(&objs, &count, &cap, max, va, vb, false, err);
					p = vb;
				} else {
					rc = add_obj(&objs, &count, &cap, max, da, db, true, err);
					p = db;
				}
				if (rc < 0)
					break;
			}
		} else {
			while (rc == 0 && next_elem(p, end, "Contents", &a, &b)) {
				rc = add_obj(&objs, &count, &cap, max, a, b, false, err);
				p = b;
			}
		}
		xml_copy(r.body, end, "IsTruncated", trunc, sizeof(trunc));
		free(token);
		free(vtoken);
		token = vtoken = NULL;
		if (rc == 0 && strcmp(trunc, "true") == 0) {
			char *t = s3_xml_text(r.body, end,
			                      versions ? "NextKeyMarker" : "NextContinuationToken");
			char *v = versions ? s3_xml_text(r.body, end, "NextVersionIdMarker") : NULL;
			token = t ? s3_uri_encode(t, false) : NULL;
			vtoken = v ? s3_uri_encode(v, false) : NULL;
			free(t);
			free(v);
			if (!token)
				rc = bri_err_set(err, -EIO, "a truncated listing without a marker");
		}
		s3_resp_free(&r);
		if (rc < 0 || !token)
			break;
	}
	free(query);
	free(token);
	free(vtoken);
	free(eprefix);
	if (rc < 0) {
		s3_objs_free(objs, count);
		return rc;
	}
	*out = objs;
	*n = count;
	return 0;
}

int s3_list_uploads(struct s3 *c, const char *prefix, struct s3_upload **out, size_t *n,
                    struct bri_err *err)
{
	char *eprefix = s3_uri_encode(prefix, false), *query = NULL;
	struct s3_req q = {.method = "GET", .out_fd = -1, .want_body = true};
	struct s3_upload *u = NULL;
	size_t count = 0, cap = 0;
	const char *p, *end, *a, *b;
	struct s3_resp r;
	int rc;

	if (!eprefix || asprintf(&query, "prefix=%s&uploads=", eprefix) < 0) {
		free(eprefix);
		return bri_err_set(err, -ENOMEM, "out of memory");
	}
	free(eprefix);
	q.query = query;
	rc = s3_do(c, &q, &r, err);
	free(query);
	if (rc < 0)
		return rc;
	if (r.status != 200 || !r.body) {
		rc = s3_fail(&r, "listing multipart uploads", err);
		s3_resp_free(&r);
		return rc;
	}
	p = r.body;
	end = r.body + r.body_len;
	while (next_elem(p, end, "Upload", &a, &b)) {
		if (count == cap) {
			size_t nc = cap ? 2 * cap : 16;
			struct s3_upload *nu = realloc(u, nc * sizeof(*nu));
			if (!nu) {
				rc = bri_err_set(err, -ENOMEM, "out of memory");
				break;
			}
			u = nu;
			cap = nc;
		}
		memset(&u[count], 0, sizeof(u[count]));
		u[count].key = s3_xml_text(a, b, "Key");
		u[count].upload_id = s3_xml_text(a, b, "UploadId");
		xml_copy(a, b, "Initiated", u[count].initiated, sizeof(u[count].initiated));
		count++;
		if (!u[count - 1].key || !u[count - 1].upload_id) {
			rc = bri_err_set(err, -EIO, "an upload without key or id in the listing");
			break;
		}
		p = b;
	}
	s3_resp_free(&r);
	if (rc < 0) {
		s3_uploads_free(u, count);
		return rc;
	}
	*out = u;
	*n = count;
	return 0;
}
