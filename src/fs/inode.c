/*
 * The inode scheme of the mount, and the table of inodes the kernel holds.
 *
 * An inode number is 64 bits: the node kind (fs.h: each module's rows)
 * in the low BFS_KIND_BITS bits, and above it one of four id spaces chosen
 * by the top two bits:
 *
 *   00  fixed      (index << 5) | kind     the root (1), ctl/ (2), restore/
 *                                           (3), latest (4), the write-only
 *                                           ctl/ files and ctl/log (index:
 *                                           the ctl file), restore reports
 *                                           (index: the catalog id)
 *   10  store      2^63 | (st_ino << 5) | kind
 *                                           derived from a store file's own
 *                                           inode number: a backup's folder
 *                                           and bri.db from NAME.db, meta.json
 *                                           from NAME.db.meta, verify from
 *                                           NAME.db.verify (NAME.db's with
 *                                           kind VERIFY_NONE when there is no
 *                                           result yet), rehearsal from
 *                                           NAME.db.rehearsal (NAME.db's with
 *                                           kind REHEARSAL_NONE when never
 *                                           rehearsed), offsite from
 *                                           NAME.db.offsite (NAME.db's with
 *                                           kind OFFSITE_NONE before the first
 *                                           push); st_ino < 2^58
 *   01  version    2^62 | (gen << 5) | kind one content version of a generated
 *                                           file (ctl/stats.json, ...): gen is
 *                                           the render cache's generation, so
 *                                           a new content is a new inode
 *   11  inspect    3 * 2^62 | (h << 5) | kind
 *                                           inspect/NAME/..., diff/OLD..NEW/...
 *                                           and at/TIME (inspect/, diff/, at/
 *                                           and their READMEs are fixed): h is
 *                                           a 57-bit hash of what the name
 *                                           means (the backups' names, store
 *                                           inode numbers and mtimes, the
 *                                           table, the TIME text), probed to
 *                                           the next free number on a clash;
 *                                           the generation is a second hash
 *                                           of it (inspectfs.c)
 *
 * So the numbers of a backup's files, and of the inspection files about
 * them, are the same after a remount for the same store content (restic, borg and rsync see them
 * unchanged), and a new result in NAME.db.verify (written to a new file and renamed) is a new
 * inode. The generation (fuse_entry_param.generation) of a store inode is a
 * hash of the backup's name, the kind and the store file's mtime: when the
 * store file system reuses an inode number for another file, the kernel
 * sees another generation and drops what it cached for the old one.
 * Store files whose st_ino does not fit 58 bits fall back to the fixed space
 * by catalog id (stable while the daemon lives), logged once.
 *
 * The node table remembers every inode the kernel was given (lookup and
 * readdirplus replies) with its last attributes, until the kernel forgets
 * it: GETATTR (which the kernel sends for fstat, without the file handle)
 * answers from there when the backup is gone, and a version inode holds its
 * rendering there. No FUSE request is answered here.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bri/log.h"
#include "fs.h"

/* One inode the kernel holds. */
struct bfs_node {
	struct bfs_node *next;           /* hash chain */
	fuse_ino_t ino;                  /* its number */
	uint64_t generation;             /* its generation */
	uint64_t nlookup;                /* lookups and readdirplus entries minus forgets */
	struct stat attr;                /* the attributes last replied */
	const struct bfs_render *render; /* a version inode's content (one reference), or NULL */
	int sub;                         /* a version inode's index (the ctl file) */
};

#define NODE_BUCKETS 4096 /* a power of two */

struct bfs_nodes {
	pthread_mutex_t lock;                 /* node_lock: a leaf, guards everything here */
	struct bfs_node *table[NODE_BUCKETS]; /* by inode number */
	size_t count;                         /* nodes held */
};

static size_t node_bucket(fuse_ino_t ino)
{
	return (size_t)((ino * 0x9E3779B97F4A7C15ull) >> 40) & (NODE_BUCKETS - 1);
}

fuse_ino_t bfs_ino_fixed(uint64_t index, unsigned kind)
{
	return (index << BFS_KIND_BITS) | (fuse_ino_t)kind;
}

fuse_ino_t bfs_ino_version(uint64_t gen, unsigned kind)
{
	return BFS_SPACE_VERSION | ((gen << BFS_KIND_BITS) & ~BFS_SPACE_MASK) | (fuse_ino_t)kind;
}

fuse_ino_t bfs_ino_store(const struct bri_entry *e, const struct stat *st, unsigned kind)
{
	static atomic_bool warned;

	if ((uint64_t)st->st_ino >> (64 - 2 - BFS_KIND_BITS)) {
		if (!atomic_exchange(&warned, true))
			bri_log(BRI_LOG_WARN,
			        "store inode numbers over 2^58: backup inodes are then stable "
			        "only while mounted");
		return bfs_ino_fixed(e->id + BFS_ID_BASE, kind) & ~BFS_SPACE_MASK;
	}
	return BFS_SPACE_STORE | ((uint64_t)st->st_ino << BFS_KIND_BITS) | (fuse_ino_t)kind;
}

uint64_t bfs_generation(const char *name, const struct stat *st, unsigned kind)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */

	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 0x100000001b3ull;
	h = (h ^ (uint64_t)kind) * 0x100000001b3ull;
	h = (h ^ (uint64_t)st->st_mtim.tv_sec) * 0x100000001b3ull;
	h = (h ^ (uint64_t)st->st_mtim.tv_nsec) * 0x100000001b3ull;
	return h ? h : 1;
}

unsigned bfs_ino_kind(fuse_ino_t ino)
{
	return (unsigned)(ino & ((1u << BFS_KIND_BITS) - 1));
}

uint64_t bfs_ino_index(fuse_ino_t ino)
{
	return (ino & ~BFS_SPACE_MASK) >> BFS_KIND_BITS;
}

int bfs_nodes_init(struct bfs *fs)
{
	struct bfs_nodes *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
	fs->nodes = t;
	return 0;
}

void bfs_nodes_fini(struct bfs *fs)
{
	struct bfs_nodes *t = fs->nodes;

	if (!t)
		return;
	for (size_t b = 0; b < NODE_BUCKETS; b++) {
		struct bfs_node *n = t->table[b], *next;

		for (; n; n = next) {
			next = n->next;
			bfs_render_put(n->render);
			free(n);
		}
	}
	pthread_mutex_destroy(&t->lock);
	free(t);
	fs->nodes = NULL;
}

/* The node of ino, or NULL; node_lock held. */
static struct bfs_node *node_find(struct bfs_nodes *t, fuse_ino_t ino)
{
	struct bfs_node *n = t->table[node_bucket(ino)];

	while (n && n->ino != ino)
		n = n->next;
	return n;
}

int bfs_node_ref(struct bfs *fs, const struct fuse_entry_param *e, const struct bfs_render *r,
                 int sub)
{
	struct bfs_nodes *t = fs->nodes;
	const struct bfs_render *drop = NULL;
	struct bfs_node *n;

	if (e->ino == FUSE_ROOT_ID) {
		bfs_render_put(r);
		return 0;
	}
	pthread_mutex_lock(&t->lock);
	n = node_find(t, e->ino);
	if (!n) {
		n = calloc(1, sizeof(*n));
		if (!n) {
			pthread_mutex_unlock(&t->lock);
			bfs_render_put(r);
			return -ENOMEM;
		}
		n->ino = e->ino;
		n->next = t->table[node_bucket(e->ino)];
		t->table[node_bucket(e->ino)] = n;
		t->count++;
	}
	/*
	 * A reused number (another generation): the kernel drops its old inode
	 * and forgets it with that inode's count, so the counts add up.
	 */
	n->generation = e->generation;
	n->nlookup++;
	n->attr = e->attr;
	n->sub = sub;
	if (r && n->render != r) {
		drop = n->render;
		n->render = r;
	} else {
		drop = r; /* already held */
	}
	pthread_mutex_unlock(&t->lock);
	bfs_render_put(drop);
	return 0;
}

void bfs_node_forget(struct bfs *fs, fuse_ino_t ino, uint64_t nlookup)
{
	struct bfs_nodes *t = fs->nodes;
	struct bfs_node **link, *n;
	const struct bfs_render *drop = NULL;

	pthread_mutex_lock(&t->lock);
	for (link = &t->table[node_bucket(ino)]; (n = *link) && n->ino != ino; link = &n->next)
		;
	if (n) {
		n->nlookup = n->nlookup > nlookup ? n->nlookup - nlookup : 0;
		if (!n->nlookup) {
			*link = n->next;
			t->count--;
			drop = n->render;
			free(n);
		}
	}
	pthread_mutex_unlock(&t->lock);
	bfs_render_put(drop);
}

int bfs_node_attr(struct bfs *fs, fuse_ino_t ino, struct stat *st)
{
	struct bfs_nodes *t = fs->nodes;
	struct bfs_node *n;

	pthread_mutex_lock(&t->lock);
	n = node_find(t, ino);
	if (n)
		*st = n->attr;
	pthread_mutex_unlock(&t->lock);
	return n ? 0 : -ENOENT;
}

int bfs_node_render(struct bfs *fs, fuse_ino_t ino, const struct bfs_render **out, int *sub)
{
	struct bfs_nodes *t = fs->nodes;
	struct bfs_node *n;
	int rc = -ESTALE;

	pthread_mutex_lock(&t->lock);
	n = node_find(t, ino);
	if (n && n->render) {
		*out = bfs_render_get(n->render);
		*sub = n->sub;
		rc = 0;
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

size_t bfs_nodes_count(struct bfs *fs)
{
	size_t n;

	pthread_mutex_lock(&fs->nodes->lock);
	n = fs->nodes->count;
	pthread_mutex_unlock(&fs->nodes->lock);
	return n;
}

/* The id -> catalog index map, and the store file -> entry index. */

static size_t idmap_slot(uint64_t id, size_t cap)
{
	uint64_t h = id * 0x9E3779B97F4A7C15ull;

	return (size_t)(h >> 17) & (cap - 1);
}

static int fileref_cmp(const void *a, const void *b)
{
	const struct bfs_fileref *x = a, *y = b;

	return x->st_ino < y->st_ino ? -1 : x->st_ino > y->st_ino;
}

/* Every store file of c's entries, sorted by inode number. */
static int files_build(struct bfs_idmap *m, const struct bri_catalog *c)
{
	struct bfs_fileref *f = calloc(c->n * 5 + 1, sizeof(*f));
	size_t n = 0, ndb = 0;

	if (!f)
		return -ENOMEM;
	for (size_t i = 0; i < c->n; i++) {
		struct bri_entry *e = c->entries[i];

		f[n++] = (struct bfs_fileref){e->db_st.st_ino, BFS_FILE_DB, e};
		ndb++;
		if (e->meta_st.st_ino)
			f[n++] = (struct bfs_fileref){e->meta_st.st_ino, BFS_FILE_META, e};
		if (e->verify_st.st_ino)
			f[n++] = (struct bfs_fileref){e->verify_st.st_ino, BFS_FILE_VERIFY, e};
		if (e->rehearsal_st.st_ino)
			f[n++] =
			    (struct bfs_fileref){e->rehearsal_st.st_ino, BFS_FILE_REHEARSAL, e};
		if (e->offsite_st.st_ino)
			f[n++] = (struct bfs_fileref){e->offsite_st.st_ino, BFS_FILE_OFFSITE, e};
	}
	if (n > 1)
		qsort(f, n, sizeof(*f), fileref_cmp);
	free(m->files);
	m->files = f;
	m->nfiles = n;
	return 0;
}

int bfs_idmap_build(struct bfs_idmap *m, const struct bri_catalog *c)
{
	struct bfs_idmap nm = {0};
	size_t cap = 16;

	while (cap < c->n * 2 + 1)
		cap <<= 1;
	nm.keys = calloc(cap, sizeof(*nm.keys));
	nm.vals = calloc(cap, sizeof(*nm.vals));
	if (!nm.keys || !nm.vals || files_build(&nm, c) < 0) {
		bfs_idmap_free(&nm);
		return -ENOMEM;
	}
	for (size_t i = 0; i < c->n; i++) {
		uint64_t key = c->entries[i]->id + 1;
		size_t s = idmap_slot(key, cap);

		while (nm.keys[s] && nm.keys[s] != key)
			s = (s + 1) & (cap - 1);
		nm.keys[s] = key;
		nm.vals[s] = i;
	}
	nm.cap = cap;
	*m = nm;
	return 0;
}

int bfs_idmap_refile(struct bfs *fs)
{
	return files_build(&fs->idmap, fs->cat);
}

void bfs_idmap_free(struct bfs_idmap *m)
{
	free(m->keys);
	free(m->vals);
	free(m->files);
	memset(m, 0, sizeof(*m));
}

struct bri_entry *bfs_entry_by_id(struct bfs *fs, uint64_t id)
{
	const struct bfs_idmap *m = &fs->idmap;
	uint64_t key = id + 1;
	size_t s;

	if (!m->cap || !fs->cat)
		return NULL;
	s = idmap_slot(key, m->cap);
	while (m->keys[s]) {
		if (m->keys[s] == key)
			return fs->cat->entries[m->vals[s]];
		s = (s + 1) & (m->cap - 1);
	}
	return NULL;
}

const struct bfs_fileref *bfs_file_by_ino(struct bfs *fs, uint64_t st_ino, enum bfs_file which)
{
	const struct bfs_idmap *m = &fs->idmap;
	size_t lo = 0, hi = m->nfiles;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->files[mid].st_ino < st_ino)
			lo = mid + 1;
		else
			hi = mid;
	}
	/*
	 * The same number twice: a file's number freed and taken by another
	 * before the catalog saw both (a rehearsal's new outcome takes the
	 * number of the verify result it replaced, not yet looked at again).
	 */
	for (; lo < m->nfiles && m->files[lo].st_ino == st_ino; lo++)
		if (m->files[lo].which == which)
			return &m->files[lo];
	return NULL;
}

size_t bfs_file_after(struct bfs *fs, uint64_t st_ino)
{
	const struct bfs_idmap *m = &fs->idmap;
	size_t lo = 0, hi = m->nfiles;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (m->files[mid].st_ino <= st_ino)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}
