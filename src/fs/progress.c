/*
 * ctl/progress: what the daemon is doing now. Every create, verify and
 * restore (from ctl/, mv into restore/, the scheduler or the background
 * verifier) is begun and ended here, holding op_lock, so one runs at a
 * time; the core reports its phases and bytes through the progress callback
 * of struct bri_op_ctx, possibly from a thread of its own, so the state is
 * guarded by a mutex of its own that nothing else is taken under. When
 * nothing runs, the file says "idle" and summarises the last operation.
 * No FUSE code here: gen.c serves the text.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fs.h"

void bfs_progress_init(struct bfs_progress *p)
{
	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
}

void bfs_progress_fini(struct bfs_progress *p)
{
	pthread_mutex_destroy(&p->lock);
}

/* The core's progress callback: a phase and its bytes. */
static void on_progress(void *arg, const char *phase, uint64_t done, uint64_t total)
{
	struct bfs_progress *p = arg;

	pthread_mutex_lock(&p->lock);
	if (p->active) {
		if (strcmp(p->phase, phase)) {
			snprintf(p->phase, sizeof(p->phase), "%s", phase);
			p->phase_started = bri_now_mono();
		}
		p->done = done;
		p->total = total;
	}
	pthread_mutex_unlock(&p->lock);
}

void bfs_progress_begin(struct bfs_progress *p, struct bri_op_ctx *ctx, const char *op,
                        const char *name, const char *via)
{
	pthread_mutex_lock(&p->lock);
	p->active = true;
	snprintf(p->op, sizeof(p->op), "%s", op);
	snprintf(p->name, sizeof(p->name), "%s", name ? name : "");
	snprintf(p->via, sizeof(p->via), "%s", via);
	snprintf(p->phase, sizeof(p->phase), "starting");
	p->done = p->total = 0;
	p->started = p->phase_started = bri_now_mono();
	pthread_mutex_unlock(&p->lock);
	ctx->progress = on_progress;
	ctx->progress_arg = p;
}

void bfs_progress_end(struct bfs_progress *p, const char *name, int result, const char *error)
{
	pthread_mutex_lock(&p->lock);
	p->have_last = true;
	snprintf(p->last_op, sizeof(p->last_op), "%s", p->op);
	snprintf(p->last_name, sizeof(p->last_name), "%s", name && *name ? name : p->name);
	snprintf(p->last_via, sizeof(p->last_via), "%s", p->via);
	p->last_result = result;
	snprintf(p->last_error, sizeof(p->last_error), "%s",
	         result < 0 ? (error && *error ? error : strerror(-result)) : "");
	for (char *c = p->last_error; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = ' '; /* one line per key */
	p->last_finished = time(NULL);
	p->last_duration = bri_now_mono() - p->started;
	p->active = false;
	pthread_mutex_unlock(&p->lock);
}

void bfs_progress_end_verify(struct bfs_progress *p, int rc, const struct bri_verify_result *res,
                             const struct bri_err *err)
{
	if (rc < 0)
		bfs_progress_end(p, NULL, rc, err->msg);
	else if (res->status != BRI_VERIFY_OK)
		bfs_progress_end(p, NULL, -EIO, res->reason);
	else
		bfs_progress_end(p, NULL, 0, NULL);
}

/* The running operation; call with p->lock held. */
static void render_active(const struct bfs_progress *p, char *buf, size_t cap, size_t *pos)
{
	double now = bri_now_mono();
	double phase_s = now - p->phase_started;

	bfs_appendf(buf, cap, pos, "running: %s%s%s\n", p->op, p->name[0] ? " " : "", p->name);
	bfs_appendf(buf, cap, pos, "operation: %s\n", p->op);
	bfs_appendf(buf, cap, pos, "name: %s\n",
	            p->name[0] ? p->name : "(automatic, not chosen yet)");
	bfs_appendf(buf, cap, pos, "started_by: %s\n", p->via);
	bfs_appendf(buf, cap, pos, "phase: %s\n", p->phase);
	bfs_appendf(buf, cap, pos, "bytes_done: %llu\n", (unsigned long long)p->done);
	bfs_appendf(buf, cap, pos, "bytes_total: %llu\n", (unsigned long long)p->total);
	if (p->total)
		bfs_appendf(buf, cap, pos, "percent: %.1f\n",
		            100.0 * (double)(p->done < p->total ? p->done : p->total) /
		                (double)p->total);
	else
		bfs_appendf(buf, cap, pos, "percent: unknown\n");
	bfs_appendf(buf, cap, pos, "elapsed_s: %.1f\n", now - p->started);
	/* The phase's own rate: create copies, then hashes the same bytes. */
	if (p->total && p->done >= p->total)
		bfs_appendf(buf, cap, pos, "remaining_s: 0\n");
	else if (p->total && p->done && phase_s > 0.1)
		bfs_appendf(buf, cap, pos, "remaining_s: %.1f\n",
		            (double)(p->total - p->done) * phase_s / (double)p->done);
	else
		bfs_appendf(buf, cap, pos, "remaining_s: unknown\n");
}

int bfs_progress_render(struct bfs_progress *p, char **out, size_t *len)
{
	const size_t cap = 2048;
	char *buf = malloc(cap);
	size_t pos = 0;

	if (!buf)
		return -ENOMEM;
	buf[0] = '\0';
	pthread_mutex_lock(&p->lock);
	if (p->active) {
		render_active(p, buf, cap, &pos);
	} else {
		bfs_appendf(buf, cap, &pos, "idle\n");
		if (p->have_last) {
			char when[40];

			bri_time_local(p->last_finished, when, sizeof(when));
			bfs_appendf(buf, cap, &pos, "last_operation: %s\n", p->last_op);
			bfs_appendf(buf, cap, &pos, "last_name: %s\n", p->last_name);
			bfs_appendf(buf, cap, &pos, "last_started_by: %s\n", p->last_via);
			if (p->last_result < 0)
				bfs_appendf(buf, cap, &pos, "last_result: failed: %s\n",
				            p->last_error);
			else
				bfs_appendf(buf, cap, &pos, "last_result: ok\n");
			bfs_appendf(buf, cap, &pos, "last_finished_at: %s\n", when);
			bfs_appendf(buf, cap, &pos, "last_duration_s: %.1f\n", p->last_duration);
		}
	}
	pthread_mutex_unlock(&p->lock);
	*out = buf;
	*len = pos;
	return 0;
}
