// The block geometry of the tensor-core attention path (cuda/attention_gemm.cuh)
// in plain C, host and device: which items a chunk block's key window holds
// and which role each logit plays. tests/test_attention_blocks.c runs the
// whole blocked algorithm on the CPU with these very functions and checks it
// against the CPU reference attention, so the geometry is tested without a GPU.
#pragma once
#include <limits.h>

#ifdef __CUDACC__
#define BLOCK_FN __host__ __device__ static inline
#else
#define BLOCK_FN static inline
#endif

// n items per (batch, head) pair in chunks of m: nc chunks, one block each.
// A block's key window: kw = 2m items (the previous chunk, then its own) when
// there are several chunks, else m (its own).
typedef struct {
    int n, m, nc, kw, lsh;
} BlockGeom;

BLOCK_FN BlockGeom block_geom(int n, int m, int lsh) {
    BlockGeom g;
    g.n = n;
    g.m = m;
    g.nc = n / m;
    g.kw = g.nc > 1 ? 2 * m : m;
    g.lsh = lsh;
    return g;
}

// Item of key u of block c's window, or -1: the previous chunk of chunk 0 is
// the last one for LSH (cyclic, REFORMER.md) and none for local attention.
BLOCK_FN int block_key_item(const BlockGeom *g, int c, int u) {
    if (g->kw == g->m) return c * g->m + u;
    if (u >= g->m) return c * g->m + u - g->m;
    if (c == 0 && !g->lsh) return -1;
    return ((c + g->nc - 1) % g->nc) * g->m + u;
}

// The role of the logit of a query at position qp and a key at kp (INT_MAX:
// no key): 0 masked (key after the query: no weight, no gradient), 1 self
// (LSH: the constant MASK_SELF, a weight but no gradient), 2 plain.
BLOCK_FN int block_logit_role(int lsh, int qp, int kp) { return kp > qp ? 0 : lsh && kp == qp ? 1 : 2; }
