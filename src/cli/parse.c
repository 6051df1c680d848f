/*
 * The command table at work: getopt_long's long and short option arrays
 * built from option rows (sized from the rows, nothing fixed), a command's
 * line parsed into struct cli_args, its --help and synopsis printed from
 * its row, and the hidden `bri-backup --completion-table` that prints the
 * whole table, one tab-separated line per command and per option, for bash
 * completion and the man page test.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* -h/--help of every command: implied, never listed in a row. */
static const struct cli_opt help_opt[] = {
    {.name = "help", .short_name = 'h', .help = "show this help"},
    {0},
};

static size_t count(const struct cli_opt *o)
{
	size_t n = 0;

	while (o && o[n].name)
		n++;
	return n;
}

int cli_getopt_init(struct cli_getopt *p, const char *mode, const struct cli_opt *const *lists,
                    size_t nlists)
{
	size_t n = 0, i, j, k = 0;
	char *so;

	memset(p, 0, sizeof(*p));
	for (i = 0; i < nlists; i++)
		n += count(lists[i]);
	p->rows = calloc(n ? n : 1, sizeof(*p->rows));
	p->longopts = calloc(n + 1, sizeof(*p->longopts));
	/* mode, ':' (report a missing argument), and per row a letter and a ':' */
	p->shortopts = so = malloc(strlen(mode) + 1 + 2 * n + 1);
	if (!p->rows || !p->longopts || !so) {
		cli_getopt_free(p);
		return -1;
	}
	so += sprintf(so, "%s:", mode);
	for (i = 0; i < nlists; i++) {
		for (j = 0; lists[i] && lists[i][j].name; j++, k++) {
			const struct cli_opt *o = &lists[i][j];

			p->rows[k] = o;
			p->longopts[k].name = o->name;
			p->longopts[k].has_arg = o->arg ? required_argument : no_argument;
			p->longopts[k].val = o->short_name ? o->short_name : CLI_OPT_LONG + (int)k;
			if (o->short_name) {
				*so++ = (char)o->short_name;
				if (o->arg)
					*so++ = ':';
			}
		}
	}
	*so = '\0';
	p->n = n;
	return 0;
}

void cli_getopt_free(struct cli_getopt *p)
{
	free(p->rows);
	free(p->longopts);
	free(p->shortopts);
	memset(p, 0, sizeof(*p));
}

int cli_getopt_next(struct cli_getopt *p, int argc, char **argv, const struct cli_opt **row)
{
	int opt = getopt_long(argc, argv, p->shortopts, p->longopts, NULL);
	size_t k;

	*row = NULL;
	if (opt == -1 || opt == '?' || opt == ':')
		return opt;
	if (opt >= CLI_OPT_LONG && (size_t)(opt - CLI_OPT_LONG) < p->n) {
		p->last = (size_t)(opt - CLI_OPT_LONG);
		*row = p->rows[p->last];
		return 0;
	}
	for (k = 0; k < p->n; k++) {
		if (p->rows[k]->short_name == opt) {
			p->last = k;
			*row = p->rows[k];
			return 0;
		}
	}
	return '?';
}

/* The exit status of bad usage on this line: 2, or what an option given says. */
static int usage_status(const struct cli_command *cmd, int argc, char **argv)
{
	const struct cli_opt *o;
	int i;

	for (o = cmd->options; o && o->name; o++) {
		if (!o->usage_exit)
			continue;
		for (i = 1; i < argc; i++)
			if (!strncmp(argv[i], "--", 2) && !strcmp(argv[i] + 2, o->name))
				return o->usage_exit;
	}
	return CLI_EXIT_USAGE;
}

int cli_parse(struct cli_globals *g, const struct cli_command *cmd, int argc, char **argv,
              struct cli_args *a)
{
	const struct cli_opt *const lists[] = {cmd->options, help_opt, cli_global_opts};
	const struct cli_opt *row;
	struct cli_getopt p;
	size_t nown = count(cmd->options);
	int opt, rc = -1;

	memset(a, 0, sizeof(*a));
	a->cmd = cmd;
	a->name = argv[0];
	a->values = calloc(nown ? nown : 1, sizeof(*a->values));
	if (!a->values || cli_getopt_init(&p, "", lists, 3) < 0) {
		cli_error("out of memory");
		cli_args_free(a);
		return CLI_EXIT_FAIL;
	}
	/* optind 0 makes GNU getopt start afresh on the command's arguments. */
	optind = 0;
	opterr = 0;
	while (rc < 0 && (opt = cli_getopt_next(&p, argc, argv, &row)) != -1) {
		if (opt) {
			cli_bad_option(argv[0], opt, argv);
			rc = usage_status(cmd, argc, argv);
		} else if (p.last < nown) {
			a->values[p.last] = optarg ? optarg : "";
		} else if (p.last == nown) { /* help_opt */
			cli_command_help(cmd, stdout);
			rc = CLI_EXIT_OK;
		} else if (cli_global_option(g, row, optarg) < 0) {
			rc = usage_status(cmd, argc, argv);
		}
	}
	cli_getopt_free(&p);
	if (rc >= 0) {
		cli_args_free(a);
		return rc;
	}
	a->pos = argv + optind;
	a->npos = argc - optind;
	return -1;
}

void cli_args_free(struct cli_args *a)
{
	free(a->values);
	a->values = NULL;
}

const char *cli_opt(const struct cli_args *a, const char *name)
{
	const struct cli_opt *o;

	for (o = a->cmd->options; o && o->name; o++)
		if (!strcmp(o->name, name))
			return a->values[o - a->cmd->options];
	fprintf(stderr, "bri-backup: internal error: command %s has no option --%s\n", a->cmd->name,
	        name);
	abort();
}

const struct cli_command *cli_command_find(const char *name)
{
	const struct cli_command *c;

	for (c = cli_commands; c->name; c++)
		if (!strcmp(c->name, name))
			return c;
	return NULL;
}

/* Whether args names option --name already (then the synopsis does not repeat it). */
static bool mentions(const char *args, const char *name)
{
	size_t n = strlen(name);
	const char *at;

	for (at = args; (at = strstr(at, "--")) != NULL; at += 2) {
		if (!strncmp(at + 2, name, n) &&
		    (!at[2 + n] || !strchr("abcdefghijklmnopqrstuvwxyz-", at[2 + n])))
			return true;
	}
	return false;
}

void cli_command_synopsis(const struct cli_command *cmd, FILE *f)
{
	const struct cli_opt *o;
	const char *args = cmd->args ? cmd->args : "";

	fprintf(f, "%s%s%s", cmd->name, *args ? " " : "", args);
	for (o = cmd->options; o && o->name; o++) {
		if (mentions(args, o->name))
			continue;
		fprintf(f, " [--%s%s%s]", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
	}
}

/* The width of an option's left column: "  -x, --name ARG" (compact: "  --name ARG"). */
static size_t left_width(const struct cli_opt *o, bool compact)
{
	return (compact && !o->short_name ? 4 : 8) + strlen(o->name) +
	       (o->arg ? 1 + strlen(o->arg) : 0);
}

void cli_print_options(const struct cli_opt *const *lists, size_t nlists, bool compact, FILE *f)
{
	const struct cli_opt *o;
	size_t width = 0, i;

	for (i = 0; i < nlists; i++)
		for (o = lists[i]; o && o->name; o++)
			if (o->help && left_width(o, compact) > width)
				width = left_width(o, compact);
	for (i = 0; i < nlists; i++) {
		for (o = lists[i]; o && o->name; o++) {
			const char *line = o->help, *nl;
			int n;

			if (!o->help) /* hidden */
				continue;
			if (o->short_name)
				n = fprintf(f, "  -%c, --%s", o->short_name, o->name);
			else
				n = fprintf(f, "%s--%s", compact ? "  " : "      ", o->name);
			if (o->arg)
				n += fprintf(f, " %s", o->arg);
			for (; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
				fprintf(f, "%*s%.*s\n", (int)(width + 2) - n, "", (int)(nl - line),
				        line);
				n = 0;
			}
			fprintf(f, "%*s%s\n", (int)(width + 2) - n, "", line);
		}
	}
}

void cli_command_help(const struct cli_command *cmd, FILE *f)
{
	const struct cli_opt *const lists[] = {cmd->options, help_opt};

	fputs("Usage: bri-backup [OPTIONS] ", f);
	cli_command_synopsis(cmd, f);
	fprintf(f, "\n%s\n", cmd->help);
	cli_print_options(lists, 2, false, f);
	fputs("\nGlobal options (--db, --backup-dir, --json, ...): bri-backup --help\n", f);
}

/* What complete (CLI_COMPLETE_*) completes to, as comma-separated words, or "-". */
static void print_complete(int complete, FILE *f)
{
	static const struct {
		int bit;
		const char *word;
	} words[] = {
	    {CLI_COMPLETE_FILE, "file"},
	    {CLI_COMPLETE_NAMES, "names"},
	    {CLI_COMPLETE_LATEST, "latest"},
	    {CLI_COMPLETE_LIVE, "live"},
	};
	const char *sep = "";
	size_t i;

	if (!complete)
		fputc('-', f);
	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		if (complete & words[i].bit) {
			fprintf(f, "%s%s", sep, words[i].word);
			sep = ",";
		}
	}
}

static void print_option_rows(const char *scope, const struct cli_opt *o, FILE *f)
{
	for (; o && o->name; o++) {
		if (!o->help) /* hidden */
			continue;
		fprintf(f, "option\t%s\t--%s\t", scope, o->name);
		if (o->short_name)
			fprintf(f, "-%c", o->short_name);
		else
			fputc('-', f);
		fprintf(f, "\t%s\t", o->arg ? o->arg : "-");
		print_complete(o->complete, f);
		fputc('\n', f);
	}
}

void cli_completion_table(const struct cli_opt *main_opts, FILE *f)
{
	const struct cli_command *c;

	fputs("# bri-backup --completion-table: tab-separated, '-' for none\n"
	      "# command NAME COMPLETES SYNOPSIS\n"
	      "# option SCOPE(main|global|COMMAND) --LONG -SHORT ARG COMPLETES\n",
	      f);
	print_option_rows("main", main_opts, f);
	print_option_rows("global", cli_global_opts, f);
	for (c = cli_commands; c->name; c++) {
		fprintf(f, "command\t%s\t", c->name);
		print_complete(c->complete, f);
		fputc('\t', f);
		cli_command_synopsis(c, f);
		fputc('\n', f);
		print_option_rows(c->name, c->options, f);
		print_option_rows(c->name, help_opt, f);
	}
}
