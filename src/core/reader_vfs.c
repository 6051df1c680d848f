/*
 * A read-only SQLite VFS over a bri_reader, so that SQLite reads a backup
 * through the store's interface whatever its format: xOpen maps the name
 * "/bri-reader/ID" to the reader attached as ID, xRead is the reader's
 * pread, xFileSize its logical size, and the file is immutable (no locks,
 * no journal, no -wal or -shm). SQLite's temporary files (sorting for
 * integrity_check, VACUUM INTO) go to the default VFS. The reader must stay
 * open until every connection that opened it is closed. It is not a VFS for
 * writing: a write is refused with SQLITE_READONLY.
 */
#include "reader_vfs.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define READER_VFS_NAME "bri-reader"
#define READER_PREFIX   "/bri-reader/"

/* A reader that may be opened by name, until detached. */
struct attached {
	uint64_t id;           /* its number in the name */
	struct bri_reader *r;  /* the reader, owned by the caller */
	struct attached *next; /* the next one; the list is guarded by attach_lock */
};

static pthread_mutex_t attach_lock = PTHREAD_MUTEX_INITIALIZER;
static struct attached *attached_list; /* guarded by attach_lock */
static uint64_t next_id = 1;           /* guarded by attach_lock */

static sqlite3_vfs reader_vfs;
static sqlite3_vfs *root_vfs;
static pthread_once_t reader_once = PTHREAD_ONCE_INIT;
static int reader_registered = SQLITE_ERROR;

/* An open file of the VFS: a backup, read through its reader. */
struct reader_file {
	sqlite3_file base;    /* methods: reader_methods */
	struct bri_reader *r; /* the reader, not owned */
};

static int rf_close(sqlite3_file *file)
{
	(void)file;
	return SQLITE_OK;
}

static int rf_read(sqlite3_file *file, void *buf, int amt, sqlite3_int64 off)
{
	struct reader_file *f = (struct reader_file *)file;
	ssize_t n;

	if (off < 0 || amt < 0)
		return SQLITE_IOERR_READ;
	n = f->r->pread(f->r, buf, (size_t)amt, (uint64_t)off);
	if (n < 0) {
		errno = (int)-n; /* what SQLite's sqlite3_system_errno then tells */
		return SQLITE_IOERR_READ;
	}
	if (n < amt) {
		memset((char *)buf + n, 0, (size_t)(amt - n));
		return SQLITE_IOERR_SHORT_READ;
	}
	return SQLITE_OK;
}

static int rf_write(sqlite3_file *file, const void *buf, int amt, sqlite3_int64 off)
{
	(void)file, (void)buf, (void)amt, (void)off;
	return SQLITE_READONLY;
}

static int rf_truncate(sqlite3_file *file, sqlite3_int64 size)
{
	(void)file, (void)size;
	return SQLITE_READONLY;
}

static int rf_sync(sqlite3_file *file, int flags)
{
	(void)file, (void)flags;
	return SQLITE_OK;
}

static int rf_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
	*size = (sqlite3_int64)((struct reader_file *)file)->r->size;
	return SQLITE_OK;
}

static int rf_lock(sqlite3_file *file, int level)
{
	(void)file, (void)level;
	return SQLITE_OK;
}

static int rf_check_reserved(sqlite3_file *file, int *out)
{
	(void)file;
	*out = 0;
	return SQLITE_OK;
}

static int rf_file_control(sqlite3_file *file, int op, void *arg)
{
	(void)file, (void)op, (void)arg;
	return SQLITE_NOTFOUND;
}

static int rf_sector_size(sqlite3_file *file)
{
	(void)file;
	return 4096;
}

static int rf_device_characteristics(sqlite3_file *file)
{
	(void)file;
	return SQLITE_IOCAP_IMMUTABLE;
}

static const sqlite3_io_methods reader_methods = {
    .iVersion = 1,
    .xClose = rf_close,
    .xRead = rf_read,
    .xWrite = rf_write,
    .xTruncate = rf_truncate,
    .xSync = rf_sync,
    .xFileSize = rf_file_size,
    .xLock = rf_lock,
    .xUnlock = rf_lock,
    .xCheckReservedLock = rf_check_reserved,
    .xFileControl = rf_file_control,
    .xSectorSize = rf_sector_size,
    .xDeviceCharacteristics = rf_device_characteristics,
};

static bool ours(const char *name)
{
	return name && strncmp(name, READER_PREFIX, sizeof(READER_PREFIX) - 1) == 0;
}

/* The reader attached as the id in name, or NULL. */
static struct bri_reader *lookup(const char *name)
{
	const char *digits = name + sizeof(READER_PREFIX) - 1;
	struct bri_reader *r = NULL;
	uint64_t id;
	char *end;

	errno = 0;
	id = strtoull(digits, &end, 10);
	if (errno || end == digits || *end)
		return NULL;
	pthread_mutex_lock(&attach_lock);
	for (struct attached *a = attached_list; a && !r; a = a->next)
		if (a->id == id)
			r = a->r;
	pthread_mutex_unlock(&attach_lock);
	return r;
}

static int rv_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
                   int *out_flags)
{
	struct reader_file *f = (struct reader_file *)file;

	(void)vfs;
	if (!ours(name))
		return root_vfs->xOpen(root_vfs, name, file, flags, out_flags);
	memset(f, 0, sizeof(*f));
	if (!(flags & SQLITE_OPEN_MAIN_DB))
		return SQLITE_CANTOPEN; /* no journal or WAL beside an immutable backup */
	f->r = lookup(name);
	if (!f->r)
		return SQLITE_CANTOPEN;
	f->base.pMethods = &reader_methods;
	if (out_flags)
		*out_flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_MAIN_DB;
	return SQLITE_OK;
}

static int rv_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	(void)vfs;
	if (!ours(name))
		return root_vfs->xAccess(root_vfs, name, flags, out);
	*out = 0; /* no -journal or -wal beside it, and nothing there is writable */
	return SQLITE_OK;
}

static int rv_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
	size_t len = strlen(name);

	(void)vfs;
	if (!ours(name))
		return root_vfs->xFullPathname(root_vfs, name, n, out);
	if (len >= (size_t)n)
		return SQLITE_CANTOPEN;
	memcpy(out, name, len + 1);
	return SQLITE_OK;
}

static void reader_register(void)
{
	root_vfs = sqlite3_vfs_find(NULL);
	if (!root_vfs)
		return;
	reader_vfs = *root_vfs;
	reader_vfs.pNext = NULL;
	reader_vfs.zName = READER_VFS_NAME;
	if ((size_t)reader_vfs.szOsFile < sizeof(struct reader_file))
		reader_vfs.szOsFile = (int)sizeof(struct reader_file);
	reader_vfs.xOpen = rv_open;
	reader_vfs.xAccess = rv_access;
	reader_vfs.xFullPathname = rv_full_pathname;
	reader_registered = sqlite3_vfs_register(&reader_vfs, 0);
}

const char *reader_vfs_attach(struct bri_reader *r, char *uri, size_t len, uint64_t *id)
{
	struct attached *a;

	pthread_once(&reader_once, reader_register);
	if (reader_registered != SQLITE_OK)
		return NULL;
	a = malloc(sizeof(*a));
	if (!a)
		return NULL;
	a->r = r;
	pthread_mutex_lock(&attach_lock);
	a->id = next_id++;
	a->next = attached_list;
	attached_list = a;
	pthread_mutex_unlock(&attach_lock);
	*id = a->id;
	/* vfs= too, so that the URI can also be ATTACHed to another connection. */
	snprintf(uri, len, "file:" READER_PREFIX "%" PRIu64 "?immutable=1&vfs=" READER_VFS_NAME,
	         a->id);
	return READER_VFS_NAME;
}

void reader_vfs_detach(uint64_t id)
{
	struct attached **p, *gone = NULL;

	pthread_mutex_lock(&attach_lock);
	for (p = &attached_list; *p; p = &(*p)->next) {
		if ((*p)->id == id) {
			gone = *p;
			*p = gone->next;
			break;
		}
	}
	pthread_mutex_unlock(&attach_lock);
	free(gone);
}
