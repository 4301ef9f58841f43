#include "rank_batch.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

void rank_batch_init(RankBatch *rb, const Model *m, const Dist *d) {
    rb->batch = m->B;
    rb->L = m->L;
    rb->L_local = m->L_local;
    rb->sp_rank = d ? d->sp_rank : 0;
    rb->seq_tokens = checked_calloc((size_t)m->B * m->L, sizeof(int));
    rb->seq_targets = checked_calloc((size_t)m->B * m->L, sizeof(int));
    int sliced = m->L_local != m->L;
    rb->tokens = sliced ? checked_calloc((size_t)m->T, sizeof(int)) : rb->seq_tokens;
    rb->targets = sliced ? checked_calloc((size_t)m->T, sizeof(int)) : rb->seq_targets;
}

void rank_batch_free(RankBatch *rb) {
    if (rb->tokens != rb->seq_tokens) free(rb->tokens), free(rb->targets);
    free(rb->seq_tokens);
    free(rb->seq_targets);
}

void rank_batch_slice(RankBatch *rb) {
    if (rb->tokens == rb->seq_tokens) return;
    for (int b = 0; b < rb->batch; b++) {
        size_t src = (size_t)b * rb->L + (size_t)rb->sp_rank * rb->L_local, dst = (size_t)b * rb->L_local;
        memcpy(rb->tokens + dst, rb->seq_tokens + src, (size_t)rb->L_local * sizeof(int));
        memcpy(rb->targets + dst, rb->seq_targets + src, (size_t)rb->L_local * sizeof(int));
    }
}

void rank_batch_draw(RankBatch *rb, const Dataset *ds, const Dist *d, uint32_t step) {
    size_t first = d ? (size_t)d->dp_rank * rb->batch : 0;  // d NULL: one process, as rank_batch_init
    dataset_batch(ds, step, first, rb->batch, rb->seq_tokens, rb->seq_targets);
    rank_batch_slice(rb);
}
