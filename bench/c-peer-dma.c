/*
 * c-peer-dma.c: the C peer's DMA map table (see c-peer.c). A vIOMMU guest sends one DMA_MAP
 * per 4 KiB page, hundreds of thousands of them, so maps live in a treap (a randomized
 * balanced search tree) keyed by IOVA, its nodes in one growable array (40 bytes per map)
 * with a free list: O(log n) per map or unmap and no allocation per map. Nothing is mmapped
 * (the peer does no DMA); each map's fd is identified by (st_dev, st_ino) and one descriptor
 * is kept per distinct file, the duplicates closed at once.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "c-peer.h"

/* Node index 0 is "none". */
struct dma_node {
	uint64_t iova, last;		/* inclusive range, so a map may end at 2^64 - 1 */
	uint64_t offset;
	uint32_t left, right, prio;
	int32_t file;			/* index in files[], or -1 when the map carried no fd */
};

struct dma_file {
	dev_t dev;
	ino_t ino;
	int fd;
	uint32_t maps;			/* maps that use it; the fd is closed when none do */
};

static struct dma_node *nodes;
static uint32_t node_cap, node_used, free_list, root, map_count;
uint32_t max_dma_maps = 1u << 20;	/* 4 GiB of guest RAM in 4 KiB pages */
static struct dma_file files[256];
static unsigned nfiles;
static uint32_t rng = 0x9e3779b9u;

static uint32_t next_prio(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

/* Splits tree t into the nodes with iova < key (*l) and the rest (*r). */
static void split(uint32_t t, uint64_t key, uint32_t *l, uint32_t *r)
{
	if (!t) {
		*l = *r = 0;
	} else if (nodes[t].iova < key) {
		split(nodes[t].right, key, &nodes[t].right, r);
		*l = t;
	} else {
		split(nodes[t].left, key, l, &nodes[t].left);
		*r = t;
	}
}

/* Joins two trees where every iova in a is below every iova in b. */
static uint32_t merge(uint32_t a, uint32_t b)
{
	if (!a || !b)
		return a ? a : b;
	if (nodes[a].prio > nodes[b].prio) {
		nodes[a].right = merge(nodes[a].right, b);
		return a;
	}
	nodes[b].left = merge(a, nodes[b].left);
	return b;
}

static uint32_t rightmost(uint32_t t)
{
	while (t && nodes[t].right)
		t = nodes[t].right;
	return t;
}

/* The map with the highest iova <= key: the only one that can overlap a range ending at key. */
static uint32_t last_at_or_below(uint64_t key)
{
	uint32_t t = root, best = 0;

	while (t) {
		if (nodes[t].iova <= key) {
			best = t;
			t = nodes[t].right;
		} else {
			t = nodes[t].left;
		}
	}
	return best;
}

static void file_release(int32_t f)
{
	if (f >= 0 && --files[f].maps == 0) {
		close(files[f].fd);
		files[f].fd = -1;
	}
}

/* Frees every node of tree t (used by unmap, which has already cut t out of the tree). */
static void free_tree(uint32_t t)
{
	while (t) {
		uint32_t right = nodes[t].right;

		free_tree(nodes[t].left);
		file_release(nodes[t].file);
		nodes[t].left = free_list;
		free_list = t;
		map_count--;
		t = right;
	}
}

/* Keeps one fd per backing file. Takes ownership of fd. Returns the file index or -errno. */
static int file_adopt(int fd)
{
	struct stat st;
	unsigned i, empty = nfiles;

	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	for (i = 0; i < nfiles; i++) {
		if (files[i].fd >= 0 && files[i].dev == st.st_dev && files[i].ino == st.st_ino) {
			close(fd);
			files[i].maps++;
			return (int)i;
		}
		if (files[i].fd < 0 && empty == nfiles)
			empty = i;
	}
	if (empty == sizeof(files) / sizeof(files[0])) {
		close(fd);
		return -ENOSPC;
	}
	if (empty == nfiles)
		nfiles++;
	files[empty] = (struct dma_file){ st.st_dev, st.st_ino, fd, 1 };
	return (int)empty;
}

static uint32_t node_alloc(void)
{
	uint32_t n = free_list;

	if (n) {
		free_list = nodes[n].left;
		return n;
	}
	if (node_used + 1 >= node_cap) {
		uint32_t cap = node_cap ? node_cap * 2 : 4096;
		struct dma_node *grown = realloc(nodes, (size_t)cap * sizeof(*nodes));

		if (!grown)
			return 0;
		nodes = grown;
		node_cap = cap;
	}
	return ++node_used;
}

/* DMA_MAP: returns 0 or -errno. Takes ownership of fd (-1 for none). */
int dma_map(uint64_t iova, uint64_t size, uint64_t offset, int fd)
{
	uint64_t last = iova + size - 1;
	uint32_t below, n, l, r;
	int file = -1;

	if (size == 0 || last < iova) {
		if (fd >= 0)
			close(fd);
		return -EINVAL;
	}
	below = last_at_or_below(last);
	if (below && nodes[below].last >= iova) {
		if (fd >= 0)
			close(fd);
		return -EEXIST;
	}
	if (map_count >= max_dma_maps) {
		if (fd >= 0)
			close(fd);
		return -ENOSPC;
	}
	if (fd >= 0 && (file = file_adopt(fd)) < 0)
		return file;
	n = node_alloc();
	if (!n) {
		file_release(file);
		return -ENOMEM;
	}
	nodes[n] = (struct dma_node){ iova, last, offset, 0, 0, next_prio(), file };
	split(root, iova, &l, &r);
	root = merge(merge(l, n), r);
	map_count++;
	return 0;
}

/*
 * DMA_UNMAP of [iova, last]: every map inside goes; a map that straddles either end refuses
 * the whole unmap (EINVAL), as the kernel's type1 backend does. A range holding no map is
 * not an error: QEMU unmaps ranges it never mapped when the guest binds the device.
 */
int dma_unmap(uint64_t iova, uint64_t size)
{
	uint64_t last = iova + size - 1;
	uint32_t l, m, r, edge;

	if (size == 0 || last < iova)
		return -EINVAL;
	split(root, iova, &l, &m);
	if (last == UINT64_MAX)
		r = 0;
	else
		split(m, last + 1, &m, &r);
	edge = rightmost(l);
	if ((edge && nodes[edge].last >= iova) || ((edge = rightmost(m)) && nodes[edge].last > last)) {
		root = merge(merge(l, m), r);
		return -EINVAL;
	}
	free_tree(m);
	root = merge(l, r);
	return 0;
}

void dma_unmap_all(void)
{
	free_tree(root);
	root = 0;
}
