/*
 * The render cache: generated content (ctl/ files, verify, meta.json,
 * restore reports) shared between the opens of one inode. Each open still
 * renders (the content depends on the time and on the catalog, and must be
 * current at open), but a rendering equal to the one the inode's open files
 * already hold is dropped at once and the held one shared: one copy per
 * content version, not one per open. A rendering that differs becomes the
 * inode's current version with a new generation number; the old one stays
 * until its last open closes. A version no open holds is freed, so the
 * cache holds only what open files read.
 *
 * Memory is given back: renderings of BFS_RENDER_MMAP bytes or more live in
 * their own anonymous mapping (munmap'd when freed, never fragmenting the
 * heap), and the heap is trimmed after a large transient rendering is
 * dropped. A rendering over BFS_RENDER_MAX bytes is refused with EFBIG.
 *
 * Locking: render_lock (one mutex of the cache) is a leaf: it is never held
 * while rendering or while taking any other lock.
 */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "fs.h"

#define BUCKETS 256 /* a power of two */

/* One content version of one inode. */
struct bfs_render_node {
	struct bfs_render r;          /* what open files see */
	struct bfs_render_node *next; /* bucket chain (current versions only) */
	struct bfs_render_cache *c;   /* its cache */
	size_t refs;                  /* opens holding it (under c->lock) */
	size_t map_len;               /* bytes mapped, 0: r.buf is malloc'd */
	bool current;                 /* in the table: the inode's newest version */
};

struct bfs_render_cache {
	pthread_mutex_t lock;                   /* render_lock: guards everything below */
	struct bfs_render_node *table[BUCKETS]; /* current versions by inode */
	uint64_t next_gen;                      /* the next generation number */
	size_t bytes;                           /* bytes held by all versions */
	size_t versions;                        /* versions held */
};

static size_t bucket_of(fuse_ino_t ino)
{
	return (size_t)((ino * 0x9E3779B97F4A7C15ull) >> 56) & (BUCKETS - 1);
}

int bfs_render_cache_init(struct bfs *fs)
{
	struct bfs_render_cache *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	c->next_gen = 1;
	fs->renders = c;
	/*
	 * A fixed mmap threshold: glibc otherwise raises it to the size of each
	 * large block freed, and later large blocks (a transient rendering) come
	 * from the heap and stay in the process after free.
	 */
	mallopt(M_MMAP_THRESHOLD, BFS_RENDER_MMAP);
	return 0;
}

void bfs_render_cache_fini(struct bfs *fs)
{
	struct bfs_render_cache *c = fs->renders;

	if (!c)
		return;
	/* Every open was released before: the table is empty. */
	pthread_mutex_destroy(&c->lock);
	free(c);
	fs->renders = NULL;
}

static void node_free(struct bfs_render_node *n)
{
	if (n->map_len)
		munmap(n->r.buf, n->map_len);
	else
		free(n->r.buf);
	free(n);
}

/* Frees a transient rendering; a very large one leaves the heap trimmed. */
static void drop_text(char *buf, size_t len)
{
	free(buf);
	if (len >= BFS_RENDER_TRIM)
		malloc_trim(0);
}

/* A node owning the content of buf (moved to its own mapping when large). */
static struct bfs_render_node *node_new(fuse_ino_t ino, char *buf, size_t len)
{
	struct bfs_render_node *n = calloc(1, sizeof(*n));

	if (!n)
		return NULL;
	n->r.ino = ino;
	n->r.len = len;
	n->r.buf = buf;
	if (len >= BFS_RENDER_MMAP) {
		size_t map_len = len + 1;
		char *m =
		    mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		if (m != MAP_FAILED) {
			memcpy(m, buf, len);
			m[len] = '\0';
			mprotect(m, map_len, PROT_READ);
			n->r.buf = m;
			n->map_len = map_len;
			drop_text(buf, len);
		}
	}
	return n;
}

int bfs_render_intern(struct bfs *fs, fuse_ino_t ino, char *buf, size_t len,
                      const struct bfs_render **out)
{
	struct bfs_render_cache *c = fs->renders;
	struct bfs_render_node *cur, *n, **link;
	size_t b = bucket_of(ino);

	if (len > BFS_RENDER_MAX) {
		drop_text(buf, len);
		return -EFBIG;
	}
	pthread_mutex_lock(&c->lock);
	for (link = &c->table[b]; (cur = *link) && cur->r.ino != ino; link = &cur->next)
		;
	if (cur && cur->r.len == len && !memcmp(cur->r.buf, buf, len)) {
		cur->refs++; /* the same content: share it */
		pthread_mutex_unlock(&c->lock);
		drop_text(buf, len);
		*out = &cur->r;
		return 0;
	}
	pthread_mutex_unlock(&c->lock);

	n = node_new(ino, buf, len); /* outside the lock: may copy megabytes */
	if (!n) {
		drop_text(buf, len);
		return -ENOMEM;
	}
	n->c = c;
	n->refs = 1;
	n->current = true;
	pthread_mutex_lock(&c->lock);
	n->r.gen = c->next_gen++;
	/* Another open may have replaced the current version meanwhile: look again. */
	for (link = &c->table[b]; (cur = *link) && cur->r.ino != ino; link = &cur->next)
		;
	if (cur) {
		*link = cur->next; /* superseded: freed when its last open closes */
		cur->current = false;
		cur->next = NULL;
	}
	n->next = c->table[b];
	c->table[b] = n;
	c->bytes += len;
	c->versions++;
	pthread_mutex_unlock(&c->lock);
	*out = &n->r;
	return 0;
}

const struct bfs_render *bfs_render_get(const struct bfs_render *r)
{
	struct bfs_render_node *n =
	    (struct bfs_render_node *)((char *)r - offsetof(struct bfs_render_node, r));

	pthread_mutex_lock(&n->c->lock);
	n->refs++;
	pthread_mutex_unlock(&n->c->lock);
	return r;
}

void bfs_render_put(const struct bfs_render *r)
{
	struct bfs_render_node *n;
	struct bfs_render_cache *c;
	bool large;

	if (!r)
		return;
	n = (struct bfs_render_node *)((char *)r - offsetof(struct bfs_render_node, r));
	c = n->c;
	pthread_mutex_lock(&c->lock);
	if (--n->refs > 0) {
		pthread_mutex_unlock(&c->lock);
		return;
	}
	if (n->current) {
		struct bfs_render_node **link = &c->table[bucket_of(r->ino)];

		while (*link != n)
			link = &(*link)->next;
		*link = n->next;
	}
	c->bytes -= n->r.len;
	c->versions--;
	pthread_mutex_unlock(&c->lock);
	large = n->r.len >= BFS_RENDER_MMAP;
	node_free(n);
	if (large)
		malloc_trim(0);
}

void bfs_render_stats(struct bfs *fs, size_t *versions, size_t *bytes)
{
	struct bfs_render_cache *c = fs->renders;

	pthread_mutex_lock(&c->lock);
	*versions = c->versions;
	*bytes = c->bytes;
	pthread_mutex_unlock(&c->lock);
}
