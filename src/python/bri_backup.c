/*
 * bri_backup: the seed's Python API (SPEC.md section 7) as a CPython
 * extension module over the core. DatabaseBackup(db_path, backup_dir,
 * retention_days) with create/restore/verify/list/cleanup/stats (and
 * health/metrics, the CLI's and the mount's text), and the function
 * verify_all_backups(). It only translates: arguments in, the
 * core's calls with the GIL released for the long ones, Python objects and
 * bri_backup.Error (an OSError with errno and the command line's message)
 * out. It decides nothing about backups itself: what a backup argument
 * means is the core's target resolution (bri_target_resolve), as for
 * bri-backup and the mount.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bri/catalog.h"
#include "bri/cleanup.h"
#include "bri/common.h"
#include "bri/create.h"
#include "bri/log.h"
#include "bri/meta.h"
#include "bri/metrics.h"
#include "bri/offsite_watch.h"
#include "bri/pin.h"
#include "bri/report.h"
#include "bri/restore.h"
#include "bri/retention.h"
#include "bri/schedule.h"
#include "bri/store.h"
#include "bri/target.h"
#include "bri/testpoint.h"
#include "bri/verify.h"

#define DEFAULT_DB "data/bri.db"

static PyObject *BriError;   /* bri_backup.Error, a subclass of OSError */
static PyObject *json_loads; /* json.loads, for the core's JSON renderings */

typedef struct {
	PyObject_HEAD PyObject *db_path; /* str: the live database, as given */
	PyObject *backup_dir;            /* str, or None: "<folder of db_path>/backups" */
	int retention_days;              /* cleanup_old_backups removes older backups */
	int keep_min;                    /* and always keeps this many good ones */
} DatabaseBackupObject;

/* ---- errors ---- */

/*
 * Raises bri_backup.Error(errno, "<what>: <message> (<hint>)"), the words
 * bri-backup prints after "bri-backup: ". Returns NULL.
 */
static PyObject *raise_err_note(const char *what, const struct bri_err *err, int code,
                                const char *note)
{
	char words[sizeof(err->msg) + 128];
	char text[sizeof(words) + 512];
	PyObject *exc;

	if (code == -ENOMEM && !(err && err->msg[0]))
		return PyErr_NoMemory();
	bri_err_text(err, code, words, sizeof(words));
	snprintf(text, sizeof(text), "%s: %s%s", what, words, note ? note : "");
	/* OSError(errno, strerror): sets .errno and .strerror, str() shows both. */
	exc = PyObject_CallFunction(BriError, "is", -code, text);
	if (!exc)
		return NULL;
	PyErr_SetObject(BriError, exc);
	Py_DECREF(exc);
	return NULL;
}

static PyObject *raise_err(const char *what, const struct bri_err *err, int code)
{
	return raise_err_note(what, err, code, NULL);
}

/* ---- paths ---- */

/* Converts a str/bytes/os.PathLike argument to a str object (new reference). */
static PyObject *path_str(PyObject *arg)
{
	PyObject *fs = PyOS_FSPath(arg);
	PyObject *out;

	if (!fs)
		return NULL;
	if (PyBytes_Check(fs)) {
		out = PyUnicode_DecodeFSDefaultAndSize(PyBytes_AS_STRING(fs), PyBytes_GET_SIZE(fs));
		Py_DECREF(fs);
		return out;
	}
	return fs;
}

/*
 * A malloc'd file-system-encoded copy of the str s, or NULL with a Python
 * exception (embedded NUL bytes are refused).
 */
static char *fs_copy(PyObject *s)
{
	PyObject *b = NULL;
	char *out;

	if (!PyUnicode_FSConverter(s, &b))
		return NULL;
	out = strdup(PyBytes_AS_STRING(b));
	Py_DECREF(b);
	if (!out)
		PyErr_NoMemory();
	return out;
}

/* fs_copy of a str/bytes/os.PathLike argument (path_str); NULL with an exception. */
static char *path_copy(PyObject *arg)
{
	PyObject *s = path_str(arg);
	char *out;

	if (!s)
		return NULL;
	out = fs_copy(s);
	Py_DECREF(s);
	return out;
}

/* The store paths of self, malloc'd (dir NULL for the default); -1 with an exception. */
static int self_paths(DatabaseBackupObject *self, char **db, char **dir)
{
	*dir = NULL;
	*db = fs_copy(self->db_path);
	if (!*db)
		return -1;
	if (self->backup_dir != Py_None) {
		*dir = fs_copy(self->backup_dir);
		if (!*dir) {
			free(*db);
			*db = NULL;
			return -1;
		}
	}
	return 0;
}

/*
 * Opens the store for reading: *s NULL and 0 when it does not exist yet.
 * Returns 0 or a negative errno with err filled.
 */
static int open_existing(const char *db, const char *dir, struct bri_store **s, struct bri_err *err)
{
	int r = bri_store_open(db, dir, false, s, err);

	if (r == -ENOENT) {
		*s = NULL;
		memset(err, 0, sizeof(*err));
		return 0;
	}
	return r;
}

/* ---- DatabaseBackup ---- */

static void DatabaseBackup_dealloc(DatabaseBackupObject *self)
{
	Py_XDECREF(self->db_path);
	Py_XDECREF(self->backup_dir);
	Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *DatabaseBackup_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
	DatabaseBackupObject *self = (DatabaseBackupObject *)type->tp_alloc(type, 0);

	(void)args;
	(void)kwds;
	if (!self)
		return NULL;
	self->db_path = PyUnicode_FromString(DEFAULT_DB);
	if (!self->db_path) {
		Py_DECREF(self);
		return NULL;
	}
	Py_INCREF(Py_None);
	self->backup_dir = Py_None;
	self->retention_days = BRI_DEFAULT_RETENTION_DAYS;
	self->keep_min = BRI_DEFAULT_KEEP_MIN;
	return (PyObject *)self;
}

static int DatabaseBackup_init(DatabaseBackupObject *self, PyObject *args, PyObject *kwds)
{
	static char *kwlist[] = {"db_path", "backup_dir", "retention_days", NULL};
	PyObject *db = NULL, *dir = Py_None, *db_s, *dir_s, *old;
	int days = BRI_DEFAULT_RETENTION_DAYS;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OOi:DatabaseBackup", kwlist, &db, &dir,
	                                 &days))
		return -1;
	if (days < 0) {
		PyErr_SetString(PyExc_ValueError, "retention_days must not be negative");
		return -1;
	}
	db_s = db ? path_str(db) : PyUnicode_FromString(DEFAULT_DB);
	if (!db_s)
		return -1;
	if (dir == Py_None) {
		Py_INCREF(Py_None);
		dir_s = Py_None;
	} else {
		dir_s = path_str(dir);
		if (!dir_s) {
			Py_DECREF(db_s);
			return -1;
		}
	}
	old = self->db_path;
	self->db_path = db_s;
	Py_XDECREF(old);
	old = self->backup_dir;
	self->backup_dir = dir_s;
	Py_XDECREF(old);
	self->retention_days = days;
	return 0;
}

static PyObject *DatabaseBackup_repr(DatabaseBackupObject *self)
{
	return PyUnicode_FromFormat("DatabaseBackup(db_path=%R, backup_dir=%R, retention_days=%d)",
	                            self->db_path, self->backup_dir, self->retention_days);
}

PyDoc_STRVAR(create_backup_doc,
             "create_backup($self, /, name=None)\n--\n\n"
             "Take a backup of the live database and return the new backup's path (str).\n\n"
             "Without a name the backup is called <stem>_backup_YYYYMMDD_HHMMSS (local\n"
             "time), as the seed names them; with one it is NAME.db in the backup\n"
             "folder (names are [A-Za-z0-9][A-Za-z0-9._-]*, at most 128 bytes). The copy\n"
             "is consistent even while the application writes, is checksummed, and\n"
             "appears complete or not at all. The GIL is released while it runs.\n\n"
             "Raises bri_backup.Error (an OSError): ENOENT when the database does not\n"
             "exist, EEXIST when the name is taken, EINVAL for a bad name, EBUSY when\n"
             "locked, ENOSPC when the disk is full.");

static PyObject *DatabaseBackup_create_backup(DatabaseBackupObject *self, PyObject *args,
                                              PyObject *kwds)
{
	static char *kwlist[] = {"name", NULL};
	const char *name = NULL;
	struct bri_create_opts opts = {0};
	struct bri_op_ctx ctx = bri_op_ctx_self("python");
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	struct stat st;
	char *db, *dir, *new_name = NULL, *path = NULL;
	PyObject *out = NULL;
	int r;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "|z:create_backup", kwlist, &name))
		return NULL;
	if (name && !*name)
		name = NULL;
	if (name && bri_store_check_name(name, strlen(name), &err) < 0) {
		bri_err_wrap(&err, -EINVAL, "invalid backup name '%.64s'", name);
		return raise_err("create", &err, -EINVAL);
	}
	if (self_paths(self, &db, &dir) < 0)
		return NULL;
	opts.name = name;
	opts.kind = name ? BRI_KIND_NAMED : BRI_KIND_AUTO;

	Py_BEGIN_ALLOW_THREADS;
	/* stat only: the live database is never opened outside SQLite. */
	if (stat(db, &st) < 0)
		r = bri_err_set(&err, -errno, "database not found: %s (%s)", db, strerror(errno));
	else if (!S_ISREG(st.st_mode))
		r = bri_err_set(&err, -EINVAL, "%s is not a database file", db);
	else
		r = bri_store_open(db, dir, true, &s, &err);
	if (r == 0) {
		r = bri_create(s, &opts, &ctx, &new_name, &err);
		if (r == 0) {
			path = bri_store_backup_path(s, new_name);
			if (!path)
				r = bri_err_set(&err, -ENOMEM, "out of memory");
		}
		bri_store_close(s);
	}
	Py_END_ALLOW_THREADS;

	if (r < 0)
		raise_err("create", &err, r);
	else
		out = PyUnicode_DecodeFSDefault(path);
	free(path);
	free(new_name);
	free(db);
	free(dir);
	return out;
}

PyDoc_STRVAR(restore_backup_doc,
             "restore_backup($self, /, path=None, verify=True)\n--\n\n"
             "Restore a backup into the live database and return True.\n\n"
             "path is what bri-backup restore accepts: a backup's name, \"latest\" or\n"
             "None (the newest backup), its file (\"data/backups/NAME.db\"), a .db\n"
             "anywhere with its .db.meta beside it, or a copy of the mount's folder\n"
             "(DEST/NAME/bri.db with meta.json, or DEST/NAME).\n"
             "With verify (the default) the backup's checksum, integrity and row\n"
             "counts are checked first and a backup that fails is not restored. The\n"
             "current content is first saved as a safety backup; the copy goes through\n"
             "SQLite into the live file, so open connections see the restored data.\n"
             "The GIL is released while it runs.\n\n"
             "Raises bri_backup.Error (an OSError) when nothing was restored: ENOENT\n"
             "for no such backup, EIO when verification failed, EBUSY when locked.");

static PyObject *DatabaseBackup_restore_backup(DatabaseBackupObject *self, PyObject *args,
                                               PyObject *kwds)
{
	static char *kwlist[] = {"path", "verify", NULL};
	PyObject *what_obj = Py_None;
	int verify = 1;
	struct bri_restore_opts opts = {0};
	struct bri_restore_report report;
	struct bri_op_ctx ctx = bri_op_ctx_self("python");
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char *db, *dir, *arg = NULL;
	int r;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "|Op:restore_backup", kwlist, &what_obj,
	                                 &verify))
		return NULL;
	if (what_obj != Py_None) {
		arg = path_copy(what_obj);
		if (!arg)
			return NULL;
	}
	if (self_paths(self, &db, &dir) < 0) {
		free(arg);
		return NULL;
	}
	opts.verify = verify;
	memset(&report, 0, sizeof(report));

	Py_BEGIN_ALLOW_THREADS;
	r = bri_store_open(db, dir, true, &s, &err);
	if (r == 0) {
		/* NULL: the newest backup; else resolved by the core, as bri-backup's. */
		r = bri_restore(s, arg, &opts, &ctx, &report, &err);
		bri_store_close(s);
	}
	Py_END_ALLOW_THREADS;

	free(arg);
	free(db);
	free(dir);
	if (r < 0) {
		char note[BRI_NAME_MAX + 80] = "";

		if (report.safety_name[0])
			snprintf(note, sizeof(note),
			         "; the live data before the restore is in the safety backup %s",
			         report.safety_name);
		return raise_err_note("restore", &err, r, note);
	}
	Py_RETURN_TRUE;
}

PyDoc_STRVAR(verify_backup_doc,
             "verify_backup($self, /, path)\n--\n\n"
             "Verify one backup; return True when it is good, False when it is not.\n\n"
             "Checks the SHA-256 checksum against the metadata, PRAGMA integrity_check\n"
             "and the row counts. path is what bri-backup verify accepts: a backup's\n"
             "name, \"latest\", its file, a .db anywhere with its .db.meta beside it,\n"
             "or a copy of the mount's folder (DEST/NAME/bri.db with meta.json, or\n"
             "DEST/NAME). The result of a backup of the store is\n"
             "recorded (list_backups() shows it). The GIL is released while it runs.\n\n"
             "Raises bri_backup.Error (an OSError) when it cannot verify at all: ENOENT\n"
             "for a missing file or no such backup, EINVAL for a bad name, or a\n"
             "shortage of resources (EMFILE, ENOMEM, EBUSY, ...).");

static PyObject *DatabaseBackup_verify_backup(DatabaseBackupObject *self, PyObject *args,
                                              PyObject *kwds)
{
	static char *kwlist[] = {"path", NULL};
	PyObject *what_obj;
	struct bri_verify_result res = {0};
	struct bri_op_ctx ctx = bri_op_ctx_self("python");
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	struct bri_target t;
	char *db, *dir, *arg;
	int r;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:verify_backup", kwlist, &what_obj))
		return NULL;
	arg = path_copy(what_obj);
	if (!arg)
		return NULL;
	if (self_paths(self, &db, &dir) < 0) {
		free(arg);
		return NULL;
	}

	Py_BEGIN_ALLOW_THREADS;
	r = open_existing(db, dir, &s, &err);
	if (r == 0)
		r = bri_target_resolve(s, NULL, arg, 0, &t, &err);
	if (r == 0) {
		r = bri_target_verify(s, &t, &ctx, &res, &err);
		if (r == -ENOENT && !err.msg[0])
			bri_err_set(&err, r, "no backup named %s", t.name);
		bri_target_free(&t);
	}
	if (s)
		bri_store_close(s);
	Py_END_ALLOW_THREADS;

	free(arg);
	free(db);
	free(dir);
	if (r < 0)
		return raise_err("verify", &err, r);
	return PyBool_FromLong(res.status == BRI_VERIFY_OK);
}

/*
 * Opens the store of self (none: *s NULL) and scans its catalog (none:
 * *c NULL), without the GIL. Returns 0, or -1 with an exception.
 */
static int scan(DatabaseBackupObject *self, const char *what, struct bri_store **s,
                struct bri_catalog **c)
{
	struct bri_err err = {0};
	char *db, *dir;
	int r;

	*s = NULL;
	*c = NULL;
	if (self_paths(self, &db, &dir) < 0)
		return -1;
	Py_BEGIN_ALLOW_THREADS;
	r = open_existing(db, dir, s, &err);
	if (r == 0 && *s) {
		r = bri_catalog_scan(*s, NULL, c, &err);
		if (r < 0) {
			bri_store_close(*s);
			*s = NULL;
		}
	}
	Py_END_ALLOW_THREADS;
	free(db);
	free(dir);
	if (r < 0) {
		bri_err_wrap(&err, r, "cannot read the backup store");
		raise_err(what, &err, r);
		return -1;
	}
	return 0;
}

PyDoc_STRVAR(list_backups_doc,
             "list_backups($self, /)\n--\n\n"
             "Return the backups as a list of dicts, newest first.\n\n"
             "Each dict has the seed's keys filename (\"NAME.db\"), size_mb (float),\n"
             "created (local \"YYYY-MM-DDTHH:MM:SS\", for datetime.fromisoformat) and\n"
             "tables ({table: rows}), and also path, name, kind (\"auto\", \"named\",\n"
             "\"safety\"), verified (True, False, or None when never verified), verify\n"
             "(\"ok\", \"failed\", \"unverified\"), size_bytes, checksum, backup_time_utc,\n"
             "verified_at, verify_reason, meta_error, pinned, pin_reason and\n"
             "rehearsal (None, or the last rehearsal's time, result, reason,\n"
             "verify_s, restore_s, checks, checks_failed): the\n"
             "entries of `bri-backup --json list`, rendered by the core. .db files in\n"
             "the folder that are not backups (no usable .meta) come last, with kind\n"
             "\"unknown\". No folder: [].");

static PyObject *DatabaseBackup_list_backups(DatabaseBackupObject *self, PyObject *unused)
{
	struct bri_store *s;
	struct bri_catalog *c;
	char *json = NULL;
	size_t len = 0;
	PyObject *out;
	int r;

	(void)unused;
	if (scan(self, "list", &s, &c) < 0)
		return NULL;
	/* The core's rendering, the same as `bri-backup --json list`. */
	r = bri_list_to_json(s, c, &json, &len);
	if (c)
		bri_catalog_free(c);
	if (s)
		bri_store_close(s);
	if (r < 0)
		return PyErr_NoMemory();
	out = PyObject_CallFunction(json_loads, "s#", json, (Py_ssize_t)len);
	free(json);
	return out;
}

PyDoc_STRVAR(cleanup_old_backups_doc,
             "cleanup_old_backups($self, /)\n--\n\n"
             "Remove backups older than retention_days and return how many went (int).\n\n"
             "Safety backups are never removed, nor .db files that are not backups; the\n"
             "newest 7 good backups and the newest good one always stay, so a pause in\n"
             "backups cannot empty the folder (the policy of `bri-backup cleanup`).");

static PyObject *DatabaseBackup_cleanup_old_backups(DatabaseBackupObject *self, PyObject *unused)
{
	struct bri_retention_rules rules = {
	    .retention_days = self->retention_days,
	    .keep_min = self->keep_min,
	};
	struct bri_cleanup_item *items = NULL;
	struct bri_op_ctx ctx = bri_op_ctx_self("python");
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char *db, *dir;
	size_t n = 0;
	int r;

	(void)unused;
	if (self_paths(self, &db, &dir) < 0)
		return NULL;
	Py_BEGIN_ALLOW_THREADS;
	r = open_existing(db, dir, &s, &err);
	if (r == 0 && s) {
		r = bri_cleanup(s, &rules, time(NULL), false, &ctx, &items, &n, &err);
		free(items);
		bri_store_close(s);
	}
	Py_END_ALLOW_THREADS;
	free(db);
	free(dir);
	if (r < 0)
		return raise_err("cleanup", &err, r);
	return PyLong_FromLong(r);
}

PyDoc_STRVAR(get_backup_stats_doc,
             "get_backup_stats($self, /)\n--\n\n"
             "Return statistics of the backups as a dict.\n\n"
             "The seed's keys total_backups (int), total_size_mb (float), newest_backup\n"
             "and oldest_backup (local \"YYYY-MM-DDTHH:MM:SS\" for\n"
             "datetime.fromisoformat, None when there are no backups), then\n"
             "total_bytes, newest_name, by_kind, verified_ok, verify_failed,\n"
             "unverified, good_backups, unknown_files, unknown_bytes, format,\n"
             "logical_bytes, stored_bytes, dedup_ratio and encryption: the same\n"
             "object as `bri-backup --json stats`, rendered by the core.");

static PyObject *DatabaseBackup_get_backup_stats(DatabaseBackupObject *self, PyObject *unused)
{
	static struct bri_catalog empty;
	struct bri_store *s;
	struct bri_catalog *c;
	struct bri_stats st;
	char *json = NULL;
	size_t len = 0;
	PyObject *out;
	int r;

	(void)unused;
	if (scan(self, "stats", &s, &c) < 0)
		return NULL;
	memset(&st, 0, sizeof(st));
	bri_stats_compute(c ? c : &empty, &st);
	if (s)
		bri_stats_usage(s, &st, NULL); /* format, logical and stored bytes, dedup ratio */
	r = bri_stats_to_json(&st, &json, &len);
	if (c)
		bri_catalog_free(c);
	if (s)
		bri_store_close(s);
	if (r < 0)
		return PyErr_NoMemory();
	out = PyObject_CallFunction(json_loads, "s#", json, (Py_ssize_t)len);
	free(json);
	return out;
}

/*
 * health() and metrics() take the thresholds of `bri-backup health` as
 * keywords, in the order the CLI sets them (a later one of a pair wins:
 * warn_age over max_age_hours, warn_count over min_backups), each checked by
 * the core as the CLI checks its text (bri_health_threshold_set): a value
 * the CLI would refuse raises ValueError, one of the wrong type TypeError.
 */
enum threshold_kind {
	THRESHOLD_HOURS,    /* a number of hours: int or float */
	THRESHOLD_DURATION, /* seconds (int) or the CLI's text: "26h", "90m", "2d" */
	THRESHOLD_COUNT,    /* a whole number (int) */
};

static const struct {
	const char *name;
	enum threshold_kind kind;
} thresholds[] = {
    {"max_age_hours", THRESHOLD_HOURS},   {"warn_age", THRESHOLD_DURATION},
    {"crit_age", THRESHOLD_DURATION},     {"min_backups", THRESHOLD_COUNT},
    {"warn_count", THRESHOLD_COUNT},      {"crit_count", THRESHOLD_COUNT},
    {"rehearse_age", THRESHOLD_DURATION},
};
#define NTHRESHOLDS (sizeof(thresholds) / sizeof(thresholds[0]))

/*
 * The text the CLI would be given for v, a value of the threshold of kind:
 * a new str, or NULL with TypeError (or ValueError: a str with a NUL in it).
 */
static PyObject *threshold_text(const char *method, const char *name, enum threshold_kind kind,
                                PyObject *v)
{
	static const char *const wants[] = {
	    [THRESHOLD_HOURS] = "a number of hours (int or float)",
	    [THRESHOLD_DURATION] =
	        "a duration: seconds (int) or a str such as '26h', '90m' or '2d'",
	    [THRESHOLD_COUNT] = "a whole number (int)",
	};
	PyObject *n, *text = NULL;
	char buf[64];
	double d;

	if (PyBool_Check(v))
		goto out_type;
	if (PyUnicode_Check(v)) {
		Py_ssize_t len;
		const char *u;

		if (kind != THRESHOLD_DURATION)
			goto out_type;
		u = PyUnicode_AsUTF8AndSize(v, &len);
		if (!u)
			return NULL;
		if (strlen(u) != (size_t)len) {
			PyErr_Format(PyExc_ValueError, "%s: %s must not contain a NUL character",
			             method, name);
			return NULL;
		}
		Py_INCREF(v);
		return v;
	}
	if (kind == THRESHOLD_HOURS && !PyIndex_Check(v)) {
		d = PyFloat_AsDouble(v);
		if (d == -1.0 && PyErr_Occurred()) {
			if (!PyErr_ExceptionMatches(PyExc_TypeError))
				return NULL;
			PyErr_Clear();
			goto out_type;
		}
		snprintf(buf, sizeof(buf), "%.17g", d); /* inf and nan too, which strtod reads */
		return PyUnicode_FromString(buf);
	}
	if (!PyIndex_Check(v))
		goto out_type;
	n = PyNumber_Index(v);
	if (!n)
		return NULL;
	text = PyObject_Str(n); /* "-1" or a huge number: the core refuses it as the CLI does */
	Py_DECREF(n);
	return text;
out_type:
	PyErr_Format(PyExc_TypeError, "%s: %s wants %s, not %.50s", method, name, wants[kind],
	             Py_TYPE(v)->tp_name);
	return NULL;
}

/* Sets the thresholds given (not None) in values into rules; 0, or -1 with an exception. */
static int set_thresholds(const char *method, PyObject *const values[NTHRESHOLDS],
                          struct bri_health_rules *rules)
{
	struct bri_err err = {0};

	for (size_t i = 0; i < NTHRESHOLDS; i++) {
		PyObject *text;
		int r;

		if (!values[i] || values[i] == Py_None)
			continue;
		text = threshold_text(method, thresholds[i].name, thresholds[i].kind, values[i]);
		if (!text)
			return -1;
		r = bri_health_threshold_set(rules, thresholds[i].name, PyUnicode_AsUTF8(text),
		                             &err);
		Py_DECREF(text);
		if (r < 0) {
			PyErr_Format(PyExc_ValueError, "%s: %s %s", method, thresholds[i].name,
			             err.msg);
			return -1;
		}
	}
	if (bri_health_rules_check(rules, &err) < 0) {
		PyErr_Format(PyExc_ValueError, "%s: crit_age: %s", method, err.msg);
		return -1;
	}
	return 0;
}

/*
 * offsite_lag_warn: seconds (0: 26 hours), or the CLI's text ("26h", above
 * 0). Sets *secs; 0, or -1 with an exception.
 */
static int lag_warn_seconds(const char *method, PyObject *v, double *secs)
{
	long s;

	*secs = 0;
	if (!v || v == Py_None)
		return 0;
	if (PyUnicode_Check(v)) {
		Py_ssize_t len;
		const char *u = PyUnicode_AsUTF8AndSize(v, &len);

		if (!u)
			return -1;
		if (strlen(u) != (size_t)len || bri_duration_parse(u, &s) < 0 || s <= 0) {
			PyErr_Format(
			    PyExc_ValueError,
			    "%s: offsite_lag_warn wants a duration such as 26h, 90m or 2d, "
			    "not '%.100s'",
			    method, u);
			return -1;
		}
		*secs = (double)s;
		return 0;
	}
	if (PyBool_Check(v) || !PyNumber_Check(v)) {
		PyErr_Format(PyExc_TypeError,
		             "%s: offsite_lag_warn wants seconds (int or float; 0: 26 hours) or a "
		             "str such as '26h', not %.50s",
		             method, Py_TYPE(v)->tp_name);
		return -1;
	}
	*secs = PyFloat_AsDouble(v);
	if (*secs == -1.0 && PyErr_Occurred())
		return -1;
	if (!(*secs >= 0) || !isfinite(*secs)) {
		PyErr_Format(
		    PyExc_ValueError,
		    "%s: offsite_lag_warn wants seconds of 0 or more (0: 26 hours), not %R", method,
		    v);
		return -1;
	}
	return 0;
}

/*
 * health() and metrics(): the thresholds from keywords (those of `bri-backup
 * health`, above, with offsite and offsite_lag_warn), the catalog and the
 * offsite copy read without the GIL, the core's rendering
 * (bri_health_assess, bri_metrics_render): the same lines as the CLI and
 * the mount's ctl/health and ctl/metrics. Returns a new str, or NULL with an
 * exception.
 */
static PyObject *render_health(DatabaseBackupObject *self, PyObject *args, PyObject *kwds,
                               bool metrics)
{
	/* The first four in the order of old (keyword-only, so order is free). */
	static char *kwlist[] = {"max_age_hours", "min_backups", "offsite",    "offsite_lag_warn",
	                         "warn_age",      "crit_age",    "warn_count", "crit_count",
	                         "rehearse_age",  NULL};
	static struct bri_catalog empty;
	const char *method = metrics ? "metrics" : "health";
	struct bri_health_rules rules = {.max_age_hours = 24, .min_backups = 7};
	PyObject *values[NTHRESHOLDS] = {NULL}, *lag = NULL;
	struct bri_offsite_watch w;
	const char *offsite = NULL;
	double lag_warn = 0;
	struct bri_store *s;
	struct bri_catalog *c;
	char *text = NULL;
	size_t len = 0;
	PyObject *out;
	time_t now;
	int r = 0;

	/* values[] is in the order of thresholds[]: max_age_hours, warn_age, crit_age,
	 * min_backups, warn_count, crit_count, rehearse_age. */
	if (!PyArg_ParseTupleAndKeywords(args, kwds,
	                                 metrics ? "|$OOzOOOOOO:metrics" : "|$OOzOOOOOO:health",
	                                 kwlist, &values[0], &values[3], &offsite, &lag, &values[1],
	                                 &values[2], &values[4], &values[5], &values[6]))
		return NULL;
	if (set_thresholds(method, values, &rules) < 0 ||
	    lag_warn_seconds(method, lag, &lag_warn) < 0)
		return NULL;
	if (!offsite)
		offsite = getenv("BRI_OFFSITE"); /* checked as the CLI checks it */
	if (offsite && *offsite && strcmp(offsite, "none") != 0 &&
	    (strncmp(offsite, "s3://", 5) != 0 || strlen(offsite) < 8)) {
		PyErr_Format(PyExc_ValueError,
		             "%s: offsite wants s3://BUCKET/PREFIX or none, not '%.200s'", method,
		             offsite);
		return NULL;
	}
	if (scan(self, method, &s, &c) < 0)
		return NULL;
	Py_BEGIN_ALLOW_THREADS;
	/* bri_testpoint_now: the tests' fixed clock ($BRI_TEST_NOW), else time(NULL). */
	now = bri_testpoint_now();
	if (s && !(offsite && !strcmp(offsite, "none")) &&
	    bri_offsite_watch_read(s, offsite, lag_warn, NULL, false, now, &w, NULL) == 0 &&
	    w.remote[0])
		rules.offsite = &w;
	if (metrics)
		r = bri_metrics_render(s, c ? c : &empty, now, &rules, &text, &len);
	else
		bri_health_assess(c ? c : &empty, now, &rules, false, &text, &len);
	if (c)
		bri_catalog_free(c);
	if (s)
		bri_store_close(s);
	Py_END_ALLOW_THREADS;
	if (r < 0 || !text)
		return PyErr_NoMemory();
	out = PyUnicode_DecodeUTF8(text, (Py_ssize_t)len, "replace");
	free(text);
	return out;
}

PyDoc_STRVAR(health_doc,
             "health($self, /, *, max_age_hours=24, min_backups=7, offsite=None,\n"
             "       offsite_lag_warn=0, warn_age=None, crit_age=None, warn_count=None,\n"
             "       crit_count=None, rehearse_age=None)\n--\n\n"
             "Return the store's health as text: \"ok\\n\", or one line per problem,\n"
             "\"critical: ...\" lines first, then \"warning: ...\" ones: the bytes\n"
             "`bri-backup health` prints with the same thresholds (--max-age-hours,\n"
             "--warn-age, ...) and the mount's ctl/health shows with -o max_age_hours=,\n"
             "warn_age=, ...; None: the CLI's default (the option not given).\n"
             "max_age_hours: warn when the newest backup is older (hours, above 0).\n"
             "warn_age: the same as a duration, which wins over max_age_hours.\n"
             "crit_age: critical when the newest backup is older (not below warn_age).\n"
             "min_backups, warn_count (which wins): warn when fewer backups exist.\n"
             "crit_count: critical when fewer backups exist.\n"
             "rehearse_age: restore rehearsals are expected: the newest one failed is\n"
             "critical, one older than this or none a warning.\n"
             "A duration is seconds (int) or the CLI's text: \"26h\", \"90m\", \"2d\".\n"
             "offsite: the offsite copy to watch (\"s3://BUCKET/PREFIX\"; None:\n"
             "$BRI_OFFSITE, else the remote the store last pushed to; \"none\": no rule),\n"
             "warned of when it lags more than offsite_lag_warn (seconds, 0: 26 hours,\n"
             "or a duration str). A value the CLI would refuse raises ValueError, one\n"
             "of the wrong type TypeError.");

static PyObject *DatabaseBackup_health(DatabaseBackupObject *self, PyObject *args, PyObject *kwds)
{
	return render_health(self, args, kwds, false);
}

PyDoc_STRVAR(metrics_doc, "metrics($self, /, *, max_age_hours=24, min_backups=7, offsite=None,\n"
                          "        offsite_lag_warn=0, warn_age=None, crit_age=None,\n"
                          "        warn_count=None, crit_count=None, rehearse_age=None)\n--\n\n"
                          "Return the store's metrics in the Prometheus text format (str), as\n"
                          "`bri-backup metrics` prints and the mount's ctl/metrics shows, the\n"
                          "offsite copy's gauges included; the keywords are health()'s.");

static PyObject *DatabaseBackup_metrics(DatabaseBackupObject *self, PyObject *args, PyObject *kwds)
{
	return render_health(self, args, kwds, true);
}

/*
 * Verifies every backup of self's store (and reports the .db files that are
 * not backups as invalid), as `bri-backup verify` with no argument does.
 * Backups removed or replaced meanwhile are skipped. Fills the counts;
 * returns 0 or -1 with an exception.
 */
static int verify_all(DatabaseBackupObject *self, long *valid, long *invalid)
{
	struct bri_op_ctx ctx = bri_op_ctx_self("python");
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	struct bri_catalog *c = NULL;
	char *db, *dir;
	size_t i;
	int r;

	*valid = 0;
	*invalid = 0;
	if (self_paths(self, &db, &dir) < 0)
		return -1;
	Py_BEGIN_ALLOW_THREADS;
	r = open_existing(db, dir, &s, &err);
	if (r == 0 && s)
		r = bri_catalog_scan(s, NULL, &c, &err);
	for (i = 0; r == 0 && c && i < c->n + c->nunknown; i++) {
		const char *name = i < c->n ? c->entries[i]->name : c->unknown[i - c->n]->name;
		struct bri_verify_result res = {0};
		struct bri_err one = {0};
		int v = bri_verify_backup(s, name, &ctx, &res, &one);

		if (v == -ENOENT || v == -ESTALE)
			continue;
		if (v == 0 && res.status == BRI_VERIFY_OK)
			(*valid)++;
		else
			(*invalid)++;
	}
	if (c)
		bri_catalog_free(c);
	if (s)
		bri_store_close(s);
	Py_END_ALLOW_THREADS;
	free(db);
	free(dir);
	if (r < 0) {
		raise_err("verify", &err, r);
		return -1;
	}
	return 0;
}

PyDoc_STRVAR(verify_all_method_doc,
             "verify_all_backups($self, /)\n--\n\n"
             "Verify every backup; return (valid, invalid), two counts.\n\n"
             "The results are recorded. .db files that are not backups count as\n"
             "invalid; backups removed meanwhile are not counted.");

static PyObject *DatabaseBackup_verify_all_backups(DatabaseBackupObject *self, PyObject *unused)
{
	long valid, invalid;

	(void)unused;
	if (verify_all(self, &valid, &invalid) < 0)
		return NULL;
	return Py_BuildValue("(ll)", valid, invalid);
}

static PyMethodDef DatabaseBackup_methods[] = {
    {"create_backup", (PyCFunction)(void (*)(void))DatabaseBackup_create_backup,
     METH_VARARGS | METH_KEYWORDS, create_backup_doc},
    {"restore_backup", (PyCFunction)(void (*)(void))DatabaseBackup_restore_backup,
     METH_VARARGS | METH_KEYWORDS, restore_backup_doc},
    {"verify_backup", (PyCFunction)(void (*)(void))DatabaseBackup_verify_backup,
     METH_VARARGS | METH_KEYWORDS, verify_backup_doc},
    {"list_backups", (PyCFunction)DatabaseBackup_list_backups, METH_NOARGS, list_backups_doc},
    {"cleanup_old_backups", (PyCFunction)DatabaseBackup_cleanup_old_backups, METH_NOARGS,
     cleanup_old_backups_doc},
    {"get_backup_stats", (PyCFunction)DatabaseBackup_get_backup_stats, METH_NOARGS,
     get_backup_stats_doc},
    {"verify_all_backups", (PyCFunction)DatabaseBackup_verify_all_backups, METH_NOARGS,
     verify_all_method_doc},
    {"health", (PyCFunction)(void (*)(void))DatabaseBackup_health, METH_VARARGS | METH_KEYWORDS,
     health_doc},
    {"metrics", (PyCFunction)(void (*)(void))DatabaseBackup_metrics, METH_VARARGS | METH_KEYWORDS,
     metrics_doc},
    {NULL, NULL, 0, NULL},
};

static PyObject *get_db_path(DatabaseBackupObject *self, void *closure)
{
	(void)closure;
	Py_INCREF(self->db_path);
	return self->db_path;
}

static PyObject *get_backup_dir(DatabaseBackupObject *self, void *closure)
{
	(void)closure;
	Py_INCREF(self->backup_dir);
	return self->backup_dir;
}

static PyObject *get_retention_days(DatabaseBackupObject *self, void *closure)
{
	(void)closure;
	return PyLong_FromLong(self->retention_days);
}

static PyGetSetDef DatabaseBackup_getset[] = {
    {"db_path", (getter)get_db_path, NULL, "The live database's path (str), as given.", NULL},
    {"backup_dir", (getter)get_backup_dir, NULL,
     "The backup folder (str), or None for the default \"<folder of db_path>/backups\".", NULL},
    {"retention_days", (getter)get_retention_days, NULL,
     "Backups older than this many days go in cleanup_old_backups() (int).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyDoc_STRVAR(DatabaseBackup_doc,
             "DatabaseBackup(db_path='data/bri.db', backup_dir=None, retention_days=30)\n--\n\n"
             "The backups of one SQLite database, the seed's backup manager.\n\n"
             "db_path is the live database; backup_dir the folder of backups (None:\n"
             "\"backups\" beside the database, i.e. data/backups for the default), made\n"
             "with mode 0700 by the first backup; retention_days the age after which\n"
             "cleanup_old_backups() removes a backup. Relative paths are taken from the\n"
             "current folder at each call. A backup is NAME.db with NAME.db.meta (JSON:\n"
             "time, size, SHA-256, row counts) beside it; bri-backup(1) and the\n"
             "bri-backupfs mount read and write the same folder.\n\n"
             "Methods: create_backup, restore_backup, verify_backup, list_backups,\n"
             "cleanup_old_backups, get_backup_stats, verify_all_backups, and health and\n"
             "metrics (the text of `bri-backup health` and `metrics`, with its thresholds\n"
             "as keywords: warn_age=\"26h\", crit_count=3, ...; a value it refuses raises\n"
             "ValueError). Failures raise\n"
             "bri_backup.Error, an OSError whose errno says what failed and whose\n"
             "message is the one bri-backup prints.");

static PyTypeObject DatabaseBackupType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "bri_backup.DatabaseBackup",
    .tp_basicsize = sizeof(DatabaseBackupObject),
    .tp_dealloc = (destructor)DatabaseBackup_dealloc,
    .tp_repr = (reprfunc)DatabaseBackup_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = DatabaseBackup_doc,
    .tp_methods = DatabaseBackup_methods,
    .tp_getset = DatabaseBackup_getset,
    .tp_init = (initproc)DatabaseBackup_init,
    .tp_new = DatabaseBackup_new,
};

/* ---- module ---- */

PyDoc_STRVAR(verify_all_doc,
             "verify_all_backups(db_path='data/bri.db', backup_dir=None)\n--\n\n"
             "Verify every backup; return (valid, invalid), two counts.\n\n"
             "The seed's module function: DatabaseBackup(db_path, backup_dir)\n"
             ".verify_all_backups(). The results are recorded; .db files that are not\n"
             "backups count as invalid. The GIL is released while it runs.");

static PyObject *bri_verify_all_backups(PyObject *module, PyObject *args, PyObject *kwds)
{
	PyObject *mgr, *out;

	(void)module;
	mgr = PyObject_Call((PyObject *)&DatabaseBackupType, args, kwds);
	if (!mgr)
		return NULL;
	out = DatabaseBackup_verify_all_backups((DatabaseBackupObject *)mgr, NULL);
	Py_DECREF(mgr);
	return out;
}

static PyMethodDef module_methods[] = {
    {"verify_all_backups", (PyCFunction)(void (*)(void))bri_verify_all_backups,
     METH_VARARGS | METH_KEYWORDS, verify_all_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(module_doc,
             "Backups of a live SQLite database: the BRI seed's backup API.\n\n"
             "    from bri_backup import DatabaseBackup, verify_all_backups\n"
             "    mgr = DatabaseBackup()                 # data/bri.db -> data/backups\n"
             "    path = mgr.create_backup(\"before_migration\")\n"
             "    ok = mgr.verify_backup(path)\n"
             "    mgr.restore_backup(path)\n\n"
             "A C extension over libbri, the core of bri-backup(1) and bri-backupfs(8):\n"
             "the three read and write the same backup folder and agree on it.\n"
             "Errors raise bri_backup.Error, a subclass of OSError with errno set.");

static struct PyModuleDef bri_module = {
    PyModuleDef_HEAD_INIT, .m_name = "bri_backup",      .m_doc = module_doc,
    .m_size = -1,          .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit_bri_backup(void)
{
	struct bri_log_config cfg = {.level = BRI_LOG_ERR, .to_stderr = true};
	PyObject *m, *json;

	if (PyType_Ready(&DatabaseBackupType) < 0)
		return NULL;
	json = PyImport_ImportModule("json");
	if (!json)
		return NULL;
	json_loads = PyObject_GetAttrString(json, "loads");
	Py_DECREF(json);
	if (!json_loads)
		return NULL;
	m = PyModule_Create(&bri_module);
	if (!m)
		return NULL;
	BriError = PyErr_NewExceptionWithDoc(
	    "bri_backup.Error",
	    "A backup operation failed: an OSError with errno set (ENOENT, EEXIST,\n"
	    "EINVAL, EBUSY, ENOSPC, EIO, ...) and the message bri-backup prints.",
	    PyExc_OSError, NULL);
	if (!BriError)
		goto out_fail;
	Py_INCREF(BriError);
	if (PyModule_AddObject(m, "Error", BriError) < 0) {
		Py_DECREF(BriError);
		goto out_fail;
	}
	Py_INCREF(&DatabaseBackupType);
	if (PyModule_AddObject(m, "DatabaseBackup", (PyObject *)&DatabaseBackupType) < 0) {
		Py_DECREF(&DatabaseBackupType);
		goto out_fail;
	}
	if (PyModule_AddStringConstant(m, "__version__", BRI_VERSION) < 0)
		goto out_fail;
	/* The core's own warnings would repeat what the exceptions say. */
	bri_log_init(&cfg);
	return m;
out_fail:
	Py_DECREF(m);
	return NULL;
}
