/*
 * c-peer.h: what the C peer's message loop (c-peer.c) uses of its DMA map table
 * (c-peer-dma.c). Every function returns 0 or a negative errno.
 */
#ifndef C_PEER_H
#define C_PEER_H

#include <stdint.h>

/* Most maps held at once; a DMA_MAP beyond it gets ENOSPC. */
extern uint32_t max_dma_maps;

/* Records [iova, iova + size) backed by fd at offset (fd -1: none). Takes ownership of fd. */
int dma_map(uint64_t iova, uint64_t size, uint64_t offset, int fd);
/* Removes every map inside [iova, iova + size); refuses (EINVAL) a range that cuts one. */
int dma_unmap(uint64_t iova, uint64_t size);
/* Removes every map (DMA_UNMAP with the ALL flag, and when a client leaves). */
void dma_unmap_all(void);

#endif
