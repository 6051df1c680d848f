/*
 * bri_backup: the seed's Python API (SPEC.md section 7) as a CPython
 * extension module over the core. DatabaseBackup(db_path, backup_dir,
 * retention_days) with create/restore/verify/list/cleanup/stats, and the
 * function verify_all_backups(). It only translates: arguments in, the
 * core's calls with the GIL released for the long ones, Python objects and
 * bri_backup.Error (an OSError with errno and the command line's message)
 * out. It decides nothing about backups itself, except resolving what a
 * path argument means, as bri-backup's commands do.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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
#include "bri/pin.h"
#include "bri/report.h"
#include "bri/restore.h"
#include "bri/retention.h"
#include "bri/store.h"
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

/* The command line's hint for code (bri-backup's fail()). */
static const char *hint_for(int code)
{
	switch (code) {
	case -EBUSY:
		return "the live database is locked by a writer; stop the writers and retry";
	case -ENOSPC:
		return "the disk is full; free space (e.g. bri-backup cleanup) and retry";
	case -EACCES:
	case -EPERM:
		return "check the permissions of the database and of the backup folder";
	case -EROFS:
		return "the file system is read-only";
	default:
		return "";
	}
}

/*
 * Raises bri_backup.Error(errno, "<what>: <message> (<hint>)"), the words
 * bri-backup prints after "bri-backup: ". Returns NULL.
 */
static PyObject *raise_err_note(const char *what, const struct bri_err *err, int code,
                                const char *note)
{
	const char *msg = err && err->msg[0] ? err->msg : strerror(-code);
	const char *hint = hint_for(code);
	char text[sizeof(err->msg) + 512];
	PyObject *exc;

	if (code == -ENOMEM && !(err && err->msg[0]))
		return PyErr_NoMemory();
	if (*hint && !strstr(msg, hint))
		snprintf(text, sizeof(text), "%s: %s (%s)%s", what, msg, hint, note ? note : "");
	else
		snprintf(text, sizeof(text), "%s: %s%s", what, msg, note ? note : "");
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

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
}

static bool is_regular_file(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/*
 * What arg of verify_backup or restore_backup means, as bri-backup decides
 * it: a backup of the store s (*name) or a database file elsewhere (*path,
 * absolute). A path contains '/' or is an existing file ending in ".db"; a
 * path into the store is that backup's name, so its result is recorded;
 * "NAME.db" is the backup NAME. s may be NULL (no store yet). Returns 0 with
 * one output set (malloc'd), or a negative errno with err filled. Runs
 * without the GIL.
 */
static int resolve_target(const struct bri_store *s, const char *arg, char **name, char **path,
                          struct bri_err *err)
{
	char *real, *slash, *dir_real;
	bool in_store = false;

	*name = NULL;
	*path = NULL;
	if (strchr(arg, '/') || (ends_with(arg, ".db") && is_regular_file(arg))) {
		real = realpath(arg, NULL);
		if (!real)
			return bri_err_set(err, -errno, "cannot use '%s': %s", arg,
			                   strerror(errno));
		slash = strrchr(real, '/');
		dir_real = s ? realpath(s->dir, NULL) : NULL;
		if (dir_real && slash && ends_with(slash + 1, ".db")) {
			size_t dlen = (size_t)(slash - real);
			size_t blen = strlen(slash + 1) - 3;

			in_store = strlen(dir_real) == dlen && !strncmp(dir_real, real, dlen) &&
			           bri_store_check_name(slash + 1, blen, NULL) == 0;
			if (in_store) {
				*name = strndup(slash + 1, blen);
				in_store = *name && bri_store_has(s, *name) == 1;
				if (!in_store) {
					free(*name);
					*name = NULL;
				}
			}
		}
		free(dir_real);
		free(real);
		if (in_store)
			return 0;
		*path = bri_path_absolute(arg);
		return *path ? 0 : bri_err_set(err, -ENOMEM, "out of memory");
	}
	if (s && ends_with(arg, ".db") && bri_store_has(s, arg) != 1) {
		char *stem = strndup(arg, strlen(arg) - 3);

		if (stem && bri_store_check_name(stem, strlen(stem), NULL) == 0 &&
		    bri_store_has(s, stem) == 1) {
			*name = stem;
			return 0;
		}
		free(stem);
	}
	if (bri_store_check_name(arg, strlen(arg), err) < 0)
		return bri_err_wrap(err, -EINVAL, "invalid backup name");
	if (!s)
		return bri_err_set(err, -ENOENT, "no backup named %s (the store does not exist)",
		                   arg);
	*name = strdup(arg);
	return *name ? 0 : bri_err_set(err, -ENOMEM, "out of memory");
}

/* Reads path (a regular file of at most max bytes) into a malloc'd string. */
static int read_small_file(const char *path, size_t max, char **out, size_t *len)
{
	struct stat st;
	char *buf;
	ssize_t n;
	size_t got = 0;
	int fd, r = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out_close_fd;
	}
	if (!S_ISREG(st.st_mode)) {
		r = -EINVAL;
		goto out_close_fd;
	}
	if ((uint64_t)st.st_size > max) {
		r = -EFBIG;
		goto out_close_fd;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		r = -ENOMEM;
		goto out_close_fd;
	}
	while (got < (size_t)st.st_size) {
		n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			r = -errno;
			free(buf);
			goto out_close_fd;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	*out = buf;
	*len = got;
out_close_fd:
	close(fd);
	return r;
}

/*
 * Verifies a database file outside the store against PATH.meta, as
 * `bri-backup verify PATH` does; nothing is recorded. Returns 0 when it ran
 * (the verdict in res) or a negative errno with err filled.
 */
static int verify_path(const char *path, struct bri_verify_result *res, struct bri_err *err_out)
{
	struct bri_meta meta = {0};
	struct bri_err err = {0};
	struct bri_op_ctx ctx = bri_op_ctx_self("python");
	char meta_error[600] = "";
	char *meta_path, *json = NULL;
	size_t len = 0;
	bool have_meta = false;
	int r;

	if (!is_regular_file(path))
		return bri_err_set(err_out, -ENOENT, "%s is not a regular file", path);
	if (asprintf(&meta_path, "%s.meta", path) < 0)
		return bri_err_set(err_out, -ENOMEM, "out of memory");
	r = read_small_file(meta_path, BRI_META_MAX_BYTES, &json, &len);
	if (r == -ENOENT)
		snprintf(meta_error, sizeof(meta_error), "no metadata file %s", meta_path);
	else if (r < 0)
		snprintf(meta_error, sizeof(meta_error), "cannot read %s: %s", meta_path,
		         strerror(-r));
	else if (bri_meta_parse(json, len, &meta, &err) < 0)
		snprintf(meta_error, sizeof(meta_error), "%s: %s", meta_path,
		         err.msg[0] ? err.msg : "not valid metadata");
	else
		have_meta = true;
	r = bri_verify_file(path, have_meta ? &meta : NULL, have_meta ? NULL : meta_error, &ctx,
	                    res);
	if (r < 0)
		bri_err_set(err_out, r, "cannot verify %s: %s", path, strerror(-r));
	if (have_meta)
		bri_meta_free(&meta);
	free(json);
	free(meta_path);
	return r;
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
             "path is a backup's file (\"data/backups/NAME.db\", or a .db anywhere with\n"
             "its .db.meta beside it) or a backup's name; None means the newest backup.\n"
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
	PyObject *what_obj = Py_None, *what_s = NULL;
	int verify = 1;
	struct bri_restore_opts opts = {0};
	struct bri_restore_report report;
	struct bri_op_ctx ctx = bri_op_ctx_self("python");
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	struct bri_catalog *c = NULL;
	struct bri_entry *e;
	char *db, *dir, *arg = NULL, *name = NULL, *path = NULL;
	int r;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "|Op:restore_backup", kwlist, &what_obj,
	                                 &verify))
		return NULL;
	if (what_obj != Py_None) {
		what_s = path_str(what_obj);
		if (!what_s)
			return NULL;
		arg = fs_copy(what_s);
		Py_DECREF(what_s);
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
		if (arg) {
			r = resolve_target(s, arg, &name, &path, &err);
		} else {
			r = bri_catalog_scan(s, NULL, &c, &err);
			if (r == 0) {
				e = bri_catalog_newest(c);
				if (!e)
					r = bri_err_set(&err, -ENOENT,
					                "there are no backups in %s to restore",
					                s->dir);
				else if (!(name = strdup(e->name)))
					r = bri_err_set(&err, -ENOMEM, "out of memory");
				bri_catalog_free(c);
			}
		}
		if (r == 0)
			r = bri_restore(s, name ? name : path, &opts, &ctx, &report, &err);
		bri_store_close(s);
	}
	Py_END_ALLOW_THREADS;

	free(name);
	free(path);
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
             "and the row counts. path is a backup's file or name, or a .db anywhere\n"
             "with its .db.meta beside it. The result of a backup of the store is\n"
             "recorded (list_backups() shows it). The GIL is released while it runs.\n\n"
             "Raises bri_backup.Error (an OSError) when it cannot verify at all: ENOENT\n"
             "for a missing file or no such backup, EINVAL for a bad name, or a\n"
             "shortage of resources (EMFILE, ENOMEM, EBUSY, ...).");

static PyObject *DatabaseBackup_verify_backup(DatabaseBackupObject *self, PyObject *args,
                                              PyObject *kwds)
{
	static char *kwlist[] = {"path", NULL};
	PyObject *what_obj, *what_s;
	struct bri_verify_result res = {0};
	struct bri_op_ctx ctx = bri_op_ctx_self("python");
	struct bri_err err = {0};
	struct bri_store *s = NULL;
	char *db, *dir, *arg, *name = NULL, *path = NULL;
	int r;

	if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:verify_backup", kwlist, &what_obj))
		return NULL;
	what_s = path_str(what_obj);
	if (!what_s)
		return NULL;
	arg = fs_copy(what_s);
	Py_DECREF(what_s);
	if (!arg)
		return NULL;
	if (self_paths(self, &db, &dir) < 0) {
		free(arg);
		return NULL;
	}

	Py_BEGIN_ALLOW_THREADS;
	r = open_existing(db, dir, &s, &err);
	if (r == 0)
		r = resolve_target(s, arg, &name, &path, &err);
	if (r == 0 && path) {
		r = verify_path(path, &res, &err);
	} else if (r == 0) {
		r = bri_verify_backup(s, name, &ctx, &res, &err);
		if (r == -ENOENT && !err.msg[0])
			bri_err_set(&err, r, "no backup named %s", name);
	}
	if (s)
		bri_store_close(s);
	Py_END_ALLOW_THREADS;

	free(name);
	free(path);
	free(arg);
	free(db);
	free(dir);
	if (r < 0)
		return raise_err("verify", &err, r);
	return PyBool_FromLong(res.status == BRI_VERIFY_OK);
}

/* A str, or None for NULL or "". */
static PyObject *str_or_none(const char *s)
{
	if (!s || !*s)
		Py_RETURN_NONE;
	return PyUnicode_DecodeFSDefault(s);
}

/* d[key] = v, stealing v; -1 (and v released) on failure. */
static int put(PyObject *d, const char *key, PyObject *v)
{
	int r;

	if (!v)
		return -1;
	r = PyDict_SetItemString(d, key, v);
	Py_DECREF(v);
	return r;
}

/* Rounds to two decimals, as the seed's size_mb. */
static double mb2(int64_t bytes)
{
	return round((double)bytes / (1024.0 * 1024.0) * 100.0) / 100.0;
}

/* True (ok), False (failed) or None (never verified). */
static PyObject *verified_of(enum bri_verify_status st)
{
	if (st == BRI_VERIFY_OK)
		Py_RETURN_TRUE;
	if (st == BRI_VERIFY_FAILED)
		Py_RETURN_FALSE;
	Py_RETURN_NONE;
}

/* The dict of one entry: the keys of `bri-backup --json list`, plus verified. */
static PyObject *entry_dict(const struct bri_store *s, const struct bri_entry *e)
{
	PyObject *d = PyDict_New(), *tables = PyDict_New();
	char created[40], filename[BRI_NAME_MAX + 8];
	char *path = bri_store_backup_path(s, e->name);
	struct bri_pin pin;
	size_t i;

	if (!d || !tables || !path)
		goto out_fail;
	if (e->meta_ok && e->meta.backup_time[0])
		snprintf(created, sizeof(created), "%s", e->meta.backup_time);
	else
		bri_time_local(e->time, created, sizeof(created));
	snprintf(filename, sizeof(filename), "%s.db", e->name);
	for (i = 0; e->meta_ok && i < e->meta.ntables; i++)
		if (put(tables, e->meta.tables[i].name,
		        PyLong_FromLongLong(e->meta.tables[i].rows)))
			goto out_fail;
	if (put(d, "filename", PyUnicode_DecodeFSDefault(filename)) ||
	    put(d, "path", PyUnicode_DecodeFSDefault(path)) ||
	    put(d, "created", PyUnicode_FromString(created)) ||
	    put(d, "size_mb", PyFloat_FromDouble(mb2((int64_t)e->db_st.st_size))))
		goto out_fail;
	if (PyDict_SetItemString(d, "tables", tables))
		goto out_fail;
	if (put(d, "name", PyUnicode_DecodeFSDefault(e->name)) ||
	    put(d, "kind", PyUnicode_FromString(bri_kind_name(e->kind))) ||
	    put(d, "verified", verified_of(e->verify.status)) ||
	    put(d, "verify", PyUnicode_FromString(bri_verify_status_name(e->verify.status))) ||
	    put(d, "size_bytes", PyLong_FromLongLong((long long)e->db_st.st_size)) ||
	    put(d, "checksum", str_or_none(e->meta_ok ? e->meta.checksum : NULL)) ||
	    put(d, "backup_time_utc", str_or_none(e->meta_ok ? e->meta.backup_time_utc : NULL)) ||
	    put(d, "verified_at", str_or_none(e->verify.checked ? e->verify.checked_at : NULL)) ||
	    put(d, "verify_reason", str_or_none(e->verify.reason)) ||
	    put(d, "meta_error", str_or_none(e->meta_ok ? NULL : e->meta_error)) ||
	    put(d, "pinned", PyBool_FromLong(e->pinned)))
		goto out_fail;
	if (e->pinned && bri_pin_read(s, e->name, &pin) == 0) {
		if (put(d, "pin_reason", PyUnicode_FromString(pin.reason)))
			goto out_fail;
	} else if (put(d, "pin_reason", str_or_none(NULL))) {
		goto out_fail;
	}
	Py_DECREF(tables);
	free(path);
	return d;
out_fail:
	if (!PyErr_Occurred())
		PyErr_NoMemory();
	Py_XDECREF(d);
	Py_XDECREF(tables);
	free(path);
	return NULL;
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
             "verified_at, verify_reason, meta_error, pinned and pin_reason: the entries of\n"
             "`bri-backup --json list`. .db files in the folder that are not backups\n"
             "(no usable .meta) come last, with kind \"unknown\". No folder: [].");

static PyObject *DatabaseBackup_list_backups(DatabaseBackupObject *self, PyObject *unused)
{
	struct bri_store *s;
	struct bri_catalog *c;
	PyObject *list, *d;
	size_t i;

	(void)unused;
	if (scan(self, "list", &s, &c) < 0)
		return NULL;
	list = PyList_New(0);
	for (i = 0; list && c && i < c->n + c->nunknown; i++) {
		d = entry_dict(s, i < c->n ? c->entries[i] : c->unknown[i - c->n]);
		if (!d || PyList_Append(list, d) < 0) {
			Py_XDECREF(d);
			Py_CLEAR(list);
			break;
		}
		Py_DECREF(d);
	}
	if (c)
		bri_catalog_free(c);
	if (s)
		bri_store_close(s);
	return list;
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
             "unverified, good_backups, unknown_files and unknown_bytes: the same\n"
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
             "cleanup_old_backups, get_backup_stats, verify_all_backups. Failures raise\n"
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
