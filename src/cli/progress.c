/*
 * The progress bar of bri-backup: a one-line bar redrawn with '\r' on
 * stderr while a long create, restore or verify runs, fed by the core's
 * bri_op_ctx progress callback. Only when stderr is a terminal; scripts and
 * cron jobs (stderr a pipe or a file) get nothing from here. Redraws are
 * throttled to ten a second so progress never slows the operation.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define BAR_WIDTH         30
#define REDRAW_INTERVAL_S 0.1

/* State of the one bar on screen; the CLI is single-threaded. */
static struct {
	char label[64];   /* what runs, e.g. the backup's name */
	char phase[32];   /* the core's last phase, e.g. "copy" */
	double last_draw; /* bri_now_mono() of the last redraw */
	int last_percent; /* percent shown by the last redraw, -1: none */
	bool drawn;       /* a line is on screen and must be cleared */
} bar = {.last_percent = -1};

static void format_bytes(uint64_t n, char *buf, size_t len)
{
	snprintf(buf, len, "%.1f MB", (double)n / (1024.0 * 1024.0));
}

static void draw(const char *phase, uint64_t done, uint64_t total)
{
	char left[32], right[32], line[256];
	int percent = -1;

	format_bytes(done, left, sizeof(left));
	if (total > 0) {
		char cells[BAR_WIDTH + 1];
		int filled;

		if (done > total)
			done = total;
		percent = (int)(done * 100 / total);
		filled = (int)(done * BAR_WIDTH / total);
		memset(cells, '#', (size_t)filled);
		memset(cells + filled, '-', (size_t)(BAR_WIDTH - filled));
		cells[BAR_WIDTH] = '\0';
		format_bytes(total, right, sizeof(right));
		snprintf(line, sizeof(line), "%s %s [%s] %3d%% %s / %s", bar.label, phase, cells,
		         percent, left, right);
	} else {
		snprintf(line, sizeof(line), "%s %s %s", bar.label, phase, left);
	}
	/* \033[K clears what a longer previous line left behind. */
	fprintf(stderr, "\r%s\033[K", line);
	fflush(stderr);
	bar.drawn = true;
	bar.last_percent = percent;
	bar.last_draw = bri_now_mono();
}

static void on_progress(void *arg, const char *phase, uint64_t done, uint64_t total)
{
	double now = bri_now_mono();
	bool new_phase;

	(void)arg;
	if (!phase)
		phase = "";
	new_phase = strcmp(phase, bar.phase) != 0;
	if (!new_phase && now - bar.last_draw < REDRAW_INTERVAL_S &&
	    !(total > 0 && done >= total && bar.last_percent != 100))
		return;
	snprintf(bar.phase, sizeof(bar.phase), "%s", phase);
	draw(bar.phase, done, total);
}

struct bri_op_ctx cli_progress_ctx(const char *label)
{
	struct bri_op_ctx ctx = bri_op_ctx_self("cli");

	if (!isatty(STDERR_FILENO))
		return ctx;
	snprintf(bar.label, sizeof(bar.label), "%s", label ? label : "");
	bar.phase[0] = '\0';
	bar.last_draw = 0;
	bar.last_percent = -1;
	ctx.progress = on_progress;
	ctx.progress_arg = NULL;
	return ctx;
}

void cli_progress_done(void)
{
	if (!bar.drawn)
		return;
	fputs("\r\033[K", stderr);
	fflush(stderr);
	bar.drawn = false;
}
