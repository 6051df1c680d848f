/*
 * The inode scheme of the mount. Inode numbers are a pure function of what a
 * file is: fixed numbers for the root, ctl/, restore/, latest and the ctl/
 * files, and for a backup ((catalog id + BFS_ID_BASE) << BFS_KIND_BITS) |
 * file kind, the catalog id being stable per backup name while the daemon
 * lives. So st_ino is stable for rsync, find and tar, two names of one file
 * never differ, and forget frees nothing. The id -> entry map of the current
 * catalog lives here too. No FUSE requests are answered here.
 */
#include <errno.h>
#include <stdlib.h>

#include "fs.h"

fuse_ino_t bfs_ino(uint64_t id, enum bfs_bkind kind)
{
	return ((id + BFS_ID_BASE) << BFS_KIND_BITS) | (uint64_t)kind;
}

int bfs_node_of(fuse_ino_t ino, struct bfs_node *out)
{
	struct bfs_node n = {0};

	if (ino == BFS_INO_ROOT) {
		n.type = BFS_N_ROOT;
	} else if (ino == BFS_INO_CTL) {
		n.type = BFS_N_CTL;
	} else if (ino == BFS_INO_RESTORE) {
		n.type = BFS_N_RESTORE;
	} else if (ino == BFS_INO_LATEST) {
		n.type = BFS_N_LATEST;
	} else if (ino >= BFS_INO_CTL_FIRST && ino < BFS_INO_CTL_FIRST + BFS_CTL_COUNT) {
		n.type = BFS_N_CTLFILE;
		n.ctl = (int)(ino - BFS_INO_CTL_FIRST);
	} else if ((ino >> BFS_KIND_BITS) >= BFS_ID_BASE) {
		unsigned kind = ino & ((1u << BFS_KIND_BITS) - 1);

		if (kind > BFS_B_REPORT)
			return -ENOENT;
		n.type = BFS_N_BACKUP;
		n.bkind = (enum bfs_bkind)kind;
		n.id = (ino >> BFS_KIND_BITS) - BFS_ID_BASE;
	} else {
		return -ENOENT;
	}
	*out = n;
	return 0;
}

static size_t idmap_slot(uint64_t id, size_t cap)
{
	uint64_t h = id * 0x9E3779B97F4A7C15ull;

	return (size_t)(h >> 17) & (cap - 1);
}

int bfs_idmap_build(struct bfs_idmap *m, const struct bri_catalog *c)
{
	size_t cap = 16;
	uint64_t *keys;
	size_t *vals;

	while (cap < c->n * 2 + 1)
		cap <<= 1;
	keys = calloc(cap, sizeof(*keys));
	if (!keys)
		return -ENOMEM;
	vals = calloc(cap, sizeof(*vals));
	if (!vals) {
		free(keys);
		return -ENOMEM;
	}
	for (size_t i = 0; i < c->n; i++) {
		uint64_t key = c->entries[i]->id + 1;
		size_t s = idmap_slot(key, cap);

		while (keys[s] && keys[s] != key)
			s = (s + 1) & (cap - 1);
		keys[s] = key;
		vals[s] = i;
	}
	m->keys = keys;
	m->vals = vals;
	m->cap = cap;
	return 0;
}

void bfs_idmap_free(struct bfs_idmap *m)
{
	free(m->keys);
	free(m->vals);
	m->keys = NULL;
	m->vals = NULL;
	m->cap = 0;
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
