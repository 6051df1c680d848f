/*
 * Where the S3 client's settings come from (src/core/s3.h): the remote
 * "s3://BUCKET/PREFIX", and credentials, region and endpoint the way the
 * aws CLI finds them (environment, then the profile in ~/.aws/credentials
 * and ~/.aws/config). Reads small INI files; never prints a secret, and
 * never says which value was wrong, only which was missing.
 */
#include "s3.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INI_MAX (256u << 10) /* a credentials or config file larger than this is refused */

void s3_conf_free(struct s3_conf *c)
{
	if (c->secret_key)
		OPENSSL_cleanse(c->secret_key, strlen(c->secret_key));
	if (c->session_token)
		OPENSSL_cleanse(c->session_token, strlen(c->session_token));
	free(c->endpoint);
	free(c->region);
	free(c->access_key);
	free(c->secret_key);
	free(c->session_token);
	free(c->bucket);
	free(c->prefix);
	free(c->profile);
	memset(c, 0, sizeof(*c));
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/*
 * The value of key in section of the INI file path, malloc'd; NULL when the
 * file, the section or the key is absent. Sections match "[name]" exactly.
 */
static char *ini_get(const char *path, const char *section, const char *key)
{
	char line[4096], cur[256] = "";
	char *found = NULL;
	size_t total = 0;
	FILE *f;

	if (!path)
		return NULL;
	f = fopen(path, "re");
	if (!f)
		return NULL;
	while (fgets(line, sizeof(line), f)) {
		char *l = trim(line), *eq;

		total += strlen(line);
		if (total > INI_MAX)
			break;
		if (*l == '#' || *l == ';' || !*l)
			continue;
		if (*l == '[') {
			char *e = strchr(l, ']');
			if (e) {
				*e = '\0';
				snprintf(cur, sizeof(cur), "%s", trim(l + 1));
			}
			continue;
		}
		eq = strchr(l, '=');
		if (!eq || strcmp(cur, section) != 0)
			continue;
		*eq = '\0';
		if (strcmp(trim(l), key) == 0) {
			free(found);
			found = strdup(trim(eq + 1));
		}
	}
	OPENSSL_cleanse(line, sizeof(line));
	fclose(f);
	return found;
}

/* "$HOME/.aws/<name>", or the file named by env var var; malloc'd, NULL if neither. */
static char *aws_file(const char *var, const char *name)
{
	const char *v = getenv(var), *home = getenv("HOME");
	char *p = NULL;

	if (v && *v)
		return strdup(v);
	if (!home || !*home || asprintf(&p, "%s/.aws/%s", home, name) < 0)
		return NULL;
	return p;
}

static char *env_dup(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? strdup(v) : NULL;
}

/* The value of key for profile: the credentials file, then the config file. */
static char *profile_get(const char *creds, const char *config, const char *profile,
                         const char *key)
{
	char section[300];
	char *v = ini_get(creds, profile, key);

	if (v)
		return v;
	if (strcmp(profile, "default") == 0)
		snprintf(section, sizeof(section), "default");
	else
		snprintf(section, sizeof(section), "profile %s", profile);
	return ini_get(config, section, key);
}

static int parse_remote(struct s3_conf *c, const char *remote, struct bri_err *err)
{
	const char *p, *slash;
	size_t blen;

	if (!remote || strncmp(remote, "s3://", 5) != 0)
		return bri_err_set(err, -EINVAL,
		                   "the remote is s3://BUCKET/PREFIX (--remote, or BRI_OFFSITE), "
		                   "not %s",
		                   remote ? remote : "(none given)");
	p = remote + 5;
	slash = strchr(p, '/');
	blen = slash ? (size_t)(slash - p) : strlen(p);
	if (blen < 3 || blen > 63)
		return bri_err_set(err, -EINVAL, "%s: a bucket name has 3 to 63 characters",
		                   remote);
	for (size_t i = 0; i < blen; i++)
		if (!(islower((unsigned char)p[i]) || isdigit((unsigned char)p[i]) || p[i] == '-' ||
		      p[i] == '.'))
			return bri_err_set(
			    err, -EINVAL,
			    "%s: a bucket name has only lowercase letters, digits, '-' "
			    "and '.'",
			    remote);
	c->bucket = strndup(p, blen);
	if (slash && slash[1]) {
		size_t n = strlen(slash + 1);
		while (n && slash[n] == '/') /* slash[n] is the last character of the prefix */
			n--;
		if (asprintf(&c->prefix, "%.*s/", (int)n, slash + 1) < 0)
			c->prefix = NULL;
	} else {
		c->prefix = strdup("");
	}
	if (!c->bucket || !c->prefix)
		return bri_err_set(err, -ENOMEM, "out of memory");
	if (strlen(c->prefix) > 512)
		return bri_err_set(err, -EINVAL, "%s: the prefix is too long (512 bytes at most)",
		                   remote);
	return 0;
}

int s3_conf_load(struct s3_conf *c, const char *remote, const char *endpoint,
                 const char *addressing, struct bri_err *err)
{
	char *creds = NULL, *config = NULL;
	int rc;

	memset(c, 0, sizeof(*c));
	rc = parse_remote(c, remote, err);
	if (rc < 0)
		goto out_fail;
	c->profile = env_dup("AWS_PROFILE");
	if (!c->profile)
		c->profile = strdup("default");
	creds = aws_file("AWS_SHARED_CREDENTIALS_FILE", "credentials");
	config = aws_file("AWS_CONFIG_FILE", "config");
	if (!c->profile) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_fail;
	}
	c->access_key = env_dup("AWS_ACCESS_KEY_ID");
	if (c->access_key) {
		c->secret_key = env_dup("AWS_SECRET_ACCESS_KEY");
		c->session_token = env_dup("AWS_SESSION_TOKEN");
	} else {
		c->access_key = profile_get(creds, config, c->profile, "aws_access_key_id");
		c->secret_key = profile_get(creds, config, c->profile, "aws_secret_access_key");
		c->session_token = profile_get(creds, config, c->profile, "aws_session_token");
	}
	if (!c->access_key || !c->secret_key) {
		rc = bri_err_set(
		    err, -EACCES,
		    "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
		    "or put them in the profile [%s] of %s (AWS_PROFILE, "
		    "AWS_SHARED_CREDENTIALS_FILE)",
		    c->profile, creds ? creds : "~/.aws/credentials");
		goto out_fail;
	}
	c->region = env_dup("AWS_REGION");
	if (!c->region)
		c->region = env_dup("AWS_DEFAULT_REGION");
	if (!c->region)
		c->region = profile_get(NULL, config, c->profile, "region");
	if (!c->region)
		c->region = strdup("us-east-1");
	if (endpoint && *endpoint)
		c->endpoint = strdup(endpoint);
	if (!c->endpoint)
		c->endpoint = env_dup("AWS_ENDPOINT_URL_S3");
	if (!c->endpoint)
		c->endpoint = env_dup("AWS_ENDPOINT_URL");
	if (!c->endpoint)
		c->endpoint = profile_get(NULL, config, c->profile, "endpoint_url");
	if (c->endpoint) {
		c->virtual_host = false; /* a custom endpoint: path-style unless told */
	} else {
		if (asprintf(&c->endpoint, "https://s3.%s.amazonaws.com", c->region) < 0)
			c->endpoint = NULL;
		c->virtual_host = true;
	}
	if (!c->region || !c->endpoint) {
		rc = bri_err_set(err, -ENOMEM, "out of memory");
		goto out_fail;
	}
	{
		size_t n = strlen(c->endpoint);
		while (n > 0 && c->endpoint[n - 1] == '/')
			c->endpoint[--n] = '\0';
	}
	if (strncmp(c->endpoint, "http://", 7) != 0 && strncmp(c->endpoint, "https://", 8) != 0) {
		rc = bri_err_set(err, -EINVAL, "the endpoint %s is not an http:// or https:// URL",
		                 c->endpoint);
		goto out_fail;
	}
	if (addressing && *addressing) {
		if (strcmp(addressing, "path") == 0) {
			c->virtual_host = false;
		} else if (strcmp(addressing, "virtual") == 0) {
			c->virtual_host = true;
		} else {
			rc = bri_err_set(err, -EINVAL, "--addressing is path or virtual, not %s",
			                 addressing);
			goto out_fail;
		}
	}
	if (c->virtual_host && strchr(c->bucket, '.')) {
		rc = bri_err_set(err, -EINVAL, "bucket %s has a '.': use --addressing path for it",
		                 c->bucket);
		goto out_fail;
	}
	free(creds);
	free(config);
	return 0;
out_fail:
	free(creds);
	free(config);
	s3_conf_free(c);
	return rc;
}
