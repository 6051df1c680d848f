/*
 * Generated files of the mount: the readable ctl/ files (stats.json,
 * health, log, cleanup's plan, metrics; schedule and progress come from
 * their modules) and restore/X.report. Each is rendered from the in-memory
 * catalog (never by opening backups); a ctl/ file's rendering at lookup is
 * a content version with an inode of its own (view.c), which its opens
 * read. Write-only ctl/ files render as empty.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bri/cleanup.h"
#include "bri/log.h"
#include "bri/text.h"
#include "bri/verify.h"
#include "fs.h"

int bfs_render_report(struct bfs *fs, uint64_t id, char **out, size_t *len)
{
	int rc = -ENOENT;

	pthread_rwlock_rdlock(&fs->cat_lock);
	for (size_t i = 0; i < fs->nreports; i++) {
		if (fs->reports[i].id != id)
			continue;
		*out = malloc(fs->reports[i].len + 1);
		if (!*out) {
			rc = -ENOMEM;
			break;
		}
		memcpy(*out, fs->reports[i].text, fs->reports[i].len);
		(*out)[fs->reports[i].len] = '\0';
		*len = fs->reports[i].len;
		rc = 0;
		break;
	}
	pthread_rwlock_unlock(&fs->cat_lock);
	return rc;
}

void bfs_appendf(char *buf, size_t cap, size_t *pos, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*pos + 1 >= cap)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf + *pos, cap - *pos, fmt, ap);
	va_end(ap);
	if (n > 0)
		*pos = *pos + (size_t)n < cap ? *pos + (size_t)n : cap - 1;
}

#define TEXT_MAX (16u << 20) /* the cleanup plan: a line per backup */

/* cleanup's plan: what a cleanup would remove now, and why (the core's plan). */
int bfs_render_cleanup_plan(struct bfs *fs, char **out, size_t *len)
{
	enum bri_retention_verdict *verdict = NULL;
	struct bri_text t = {.max = TEXT_MAX};
	time_t now = time(NULL);
	const struct bri_catalog *c;
	int n, rc = 0;

	pthread_rwlock_rdlock(&fs->cat_lock);
	c = fs->cat;
	verdict = calloc(c->n + 1, sizeof(*verdict));
	if (!verdict) {
		rc = -ENOMEM;
		goto out_unlock;
	}
	n = bri_cleanup_plan(c, now, &fs->rules, verdict);
	if (n < 0) {
		rc = n;
		goto out_unlock;
	}
	char described[256];

	bri_text_add(&t, "cleanup would remove %d of %zu backups (%s)\n", n, c->n,
	             bri_retention_describe(&fs->rules, described, sizeof(described)));
	for (size_t i = 0; i < c->n; i++) {
		const struct bri_entry *e = c->entries[i];
		char when[40], rule[64];

		bri_time_local(e->time, when, sizeof(when));
		bri_retention_label(verdict[i], e->time, rule, sizeof(rule));
		bri_text_add(&t, "%s\t%s\t%s\t%s: %s\n",
		             bri_retention_removes(verdict[i]) ? "remove" : "keep", e->name, when,
		             rule, bri_retention_reason(verdict[i]));
	}
out_unlock:
	pthread_rwlock_unlock(&fs->cat_lock);
	free(verdict);
	if (rc < 0) {
		bri_text_free(&t);
		return rc;
	}
	return bri_text_finish(&t, out, len);
}
