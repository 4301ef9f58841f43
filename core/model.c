#include "model.h"

#include <math.h>
#include <string.h>

#include "rng.h"
#include "util.h"

// Dropout sites, the last field of a dropout mask's RNG tag.
enum { SITE_ATTN = 0, SITE_FFN = 1 };

static void *plan(Model *m, size_t bytes) {
    m->bytes_planned += bytes;
    return m->be->alloc(bytes);
}
#define PLAN_REAL(m, n) ((real *)plan((m), (size_t)(n) * sizeof(real)))

static real *P(Model *m, int t) { return tensor_ptr(m->params, &m->layout, t); }
static real *G(Model *m, int t) { return tensor_ptr(m->grads, &m->layout, t); }

// 1: layer l runs sequence-sharded (attention_seq.c); 0: on this rank's
// heads of whole sequences (Ulysses), or unsharded when sp = 1.
static int seq_sharded(const Model *m, int l) { return m->seq.sp > 1 && m->cfg.sp_sequence[m->cfg.layer_kind[l]]; }

static AttnShape layer_shape(const Model *m, int l) {
    const Config *c = &m->cfg;
    // Attention sees whole sequences and this rank's n_heads / sp heads
    // (a sequence-sharded layer plans its own shapes: attention_seq.c).
    int heads = c->n_heads / (seq_sharded(m, l) ? 1 : m->seq.sp);
    AttnShape s = {.batch = m->B, .seq_len = m->L, .n_heads = heads, .d_head = c->d_head,
                   .chunk_len = config_layer_chunk(c, l), .n_hashes = 1, .n_buckets = 0,
                   .head_offset = seq_sharded(m, l) ? 0 : m->seq.sp_rank * heads,
                   .bf16 = c->precision == PRECISION_BF16, .tf32 = c->precision == PRECISION_TF32,
                   .reference = c->attn_reference};
    if (c->layer_kind[l] == ATTN_LSH && s.chunk_len < m->L) {
        s.n_hashes = c->n_hashes;
        s.n_buckets = c->n_buckets;
    }
    return s;
}

// --- profiling (only when m->profile: it synchronises the backend) ----------

static double prof_start(Model *m) {
    if (!m->profile) return 0;
    m->be->synchronize();
    return now_seconds();
}
static void prof_stop(Model *m, int what, double t0) {
    if (!m->profile) return;
    m->be->synchronize();
    m->prof_seconds[what] += now_seconds() - t0;
}
#define TIMED(what, ...)                      \
    do {                                      \
        double t0_ = prof_start(m);           \
        __VA_ARGS__;                          \
        prof_stop(m, what, t0_);              \
    } while (0)

static void mm(Model *m, real *C, const real *A, const real *B, int M, int N, int K, int ta, int tb, real beta) {
    if (m->cfg.precision == PRECISION_BF16) TIMED(PROF_MATMUL, m->be->matmul_bf16(C, A, B, M, N, K, ta, tb, beta));
    else if (m->cfg.precision == PRECISION_TF32) TIMED(PROF_MATMUL, m->be->matmul_tf32(C, A, B, M, N, K, ta, tb, beta));
    else TIMED(PROF_MATMUL, m->be->matmul(C, A, B, M, N, K, ta, tb, beta));
}

// --- plan -------------------------------------------------------------------

// Scratch of the three matmuls of a linear layer y[rows, out] = x[rows, in] W:
// forward, dW += x^T dy and dx = dy W^T.
static size_t linear_scratch(const Model *m, int rows, int in, int out) {
    const Backend *be = m->be;
    ScratchOp op = m->cfg.precision == PRECISION_BF16 ? SCRATCH_MATMUL_BF16 : SCRATCH_MATMUL;
    size_t fwd = be->scratch_bytes(op, (size_t)rows, (size_t)out, (size_t)in);
    size_t dw = be->scratch_bytes(op, (size_t)in, (size_t)out, (size_t)rows);
    size_t dx = be->scratch_bytes(op, (size_t)rows, (size_t)in, (size_t)out);
    return MAX(fwd, MAX(dw, dx));
}

// The largest internal scratch any op of a step asks the backend for: every
// call shape the step makes, each at its largest (full chunks: a partial last
// chunk needs no more, the sizes being monotone).
static size_t scratch_plan(const Model *m) {
    const Backend *be = m->be;
    const Config *c = &m->cfg;
    const int T = m->T, d = m->d, HD = m->HD, V = c->vocab_size, fr = m->ff_rows, hr = m->head_rows;
    size_t need = 0;
    need = MAX(need, linear_scratch(m, T, d, HD));        // q, k, v (qk) projections
    need = MAX(need, linear_scratch(m, T, HD, d));        // attention output projection
    need = MAX(need, linear_scratch(m, fr, d, c->d_ff));  // feed-forward in
    need = MAX(need, linear_scratch(m, fr, c->d_ff, d));  // feed-forward out
    need = MAX(need, linear_scratch(m, hr, 2 * d, V));    // output layer
    // bias and LayerNorm backward
    const int colsum_shapes[][2] = {{T, d}, {fr, c->d_ff}, {fr, d}, {hr, V}, {hr, 2 * d}};
    for (size_t i = 0; i < sizeof colsum_shapes / sizeof colsum_shapes[0]; i++)
        need = MAX(need, be->scratch_bytes(SCRATCH_COLUMN_SUMS, (size_t)colsum_shapes[i][0],
                                           (size_t)colsum_shapes[i][1], 0));
    need = MAX(need, be->scratch_bytes(SCRATCH_EMBEDDING_BACKWARD, (size_t)T, 0, 0));
    need = MAX(need, be->scratch_bytes(SCRATCH_SUM_SQUARES, m->layout.n_params, 0, 0));
    return need;
}

void model_init(Model *m, const Config *c, const Backend *be) {
    memset(m, 0, sizeof *m);
    m->cfg = *c;
    m->be = be;
    if (c->precision == PRECISION_BF16 && !be->matmul_bf16)
        FATAL("use precision=fp32 with this backend", "precision=bf16: the %s backend has no bf16", be->name);
    if (c->precision == PRECISION_TF32 && !be->matmul_tf32)
        FATAL("use precision=fp32 with this backend", "precision=tf32: the %s backend has no tf32", be->name);
    m->B = c->batch;
    m->L = c->seq_len;
    m->seq.sp = c->sp;
    m->L_local = c->seq_len / c->sp;
    m->T = c->batch * m->L_local;
    m->d = c->d_model;
    m->HD = c->n_heads * c->d_head;
    const size_t T = (size_t)m->T, d = (size_t)m->d, HD = (size_t)m->HD, V = (size_t)c->vocab_size;
    param_layout_build(&m->layout, c);
    size_t np = m->layout.n_params;

    m->params = PLAN_REAL(m, np);
    m->grads = PLAN_REAL(m, np);
    m->adam_m = PLAN_REAL(m, np);
    m->adam_v = PLAN_REAL(m, np);
    real *host = checked_calloc(np, sizeof(real));
    param_init_host(&m->layout, host, c->seed);
    be->upload(m->params, host, np * sizeof(real));
    free(host);

    m->x1 = PLAN_REAL(m, T * d);
    m->x2 = PLAN_REAL(m, T * d);
    m->dx1 = PLAN_REAL(m, T * d);
    m->dx2 = PLAN_REAL(m, T * d);
    if (!c->reversible) m->stored = PLAN_REAL(m, (size_t)c->n_layers * 2 * T * d);
    m->tokens = plan(m, T * sizeof(int));
    m->targets = plan(m, T * sizeof(int));

    size_t saved = 0, work = 0;
    int ulysses = 0, sequence = 0;
    for (int l = 0; l < c->n_layers; l++) {
        AttnShape s = layer_shape(m, l);
        int lsh = c->layer_kind[l] == ATTN_LSH;
        if (seq_sharded(m, l)) {  // buckets of my positions [B, H, R, L/sp]; buffers below
            if (lsh) m->buckets[l] = plan(m, (size_t)m->B * s.n_heads * s.n_hashes * m->L_local * sizeof(uint16_t));
            sequence = 1;
            continue;
        }
        ulysses |= c->sp > 1;
        if (lsh && s.n_buckets > 0)
            m->buckets[l] = plan(m, (size_t)m->B * s.n_heads * s.n_hashes * m->L * sizeof(uint16_t));
        saved = MAX(saved, lsh ? lsh_saved_elems(&s) : local_saved_elems(&s));
        work = MAX(work, be->attention_workspace_bytes(&s, lsh));
    }
    if (sequence) {
        if (c->sp_sequence[ATTN_LSH] && config_count_lsh_layers(c) > 0 && !be->lsh_sorted_forward)
            FATAL("use sp dividing n_heads (sp_attention=heads) or device=cpu",
                  "sp=%d: sequence-sharded LSH attention is not yet on the %s backend", c->sp, be->name);
        m->seq_blob = plan(m, seq_attention_layout(&m->seq_attn, NULL, c, be, m->B));
        seq_attention_layout(&m->seq_attn, m->seq_blob, c, be, m->B);
    }
    m->ln_out = PLAN_REAL(m, T * d);
    m->ln_mean = PLAN_REAL(m, T);
    m->ln_rstd = PLAN_REAL(m, T);
    m->q = PLAN_REAL(m, T * HD);
    m->k = PLAN_REAL(m, T * HD);
    m->v = PLAN_REAL(m, T * HD);
    m->attn_o = PLAN_REAL(m, T * HD);
    m->dq = PLAN_REAL(m, T * HD);
    m->dk = PLAN_REAL(m, T * HD);
    m->dv = PLAN_REAL(m, T * HD);
    m->d_attn_o = PLAN_REAL(m, T * HD);
    m->attn_out = PLAN_REAL(m, T * d);
    m->d_block = PLAN_REAL(m, T * d);
    m->d_ln = PLAN_REAL(m, T * d);
    if (saved) m->attn_saved = PLAN_REAL(m, saved);
    if (work) m->attn_work = plan(m, work);

    m->ff_rows = MIN(c->ff_chunk, m->T);
    size_t fr = (size_t)m->ff_rows, dff = (size_t)c->d_ff;
    m->ff_ln = PLAN_REAL(m, fr * d);
    m->ff_mean = PLAN_REAL(m, fr);
    m->ff_rstd = PLAN_REAL(m, fr);
    m->ff_h = PLAN_REAL(m, fr * dff);
    m->ff_a = PLAN_REAL(m, fr * dff);
    m->ff_da = PLAN_REAL(m, fr * dff);
    m->ff_out = PLAN_REAL(m, fr * d);
    m->ff_dln = PLAN_REAL(m, fr * d);

    m->head_rows = MIN(c->loss_chunk, m->T);
    size_t hr = (size_t)m->head_rows;
    m->head_in = PLAN_REAL(m, hr * 2 * d);
    m->head_ln = PLAN_REAL(m, hr * 2 * d);
    m->head_mean = PLAN_REAL(m, hr);
    m->head_rstd = PLAN_REAL(m, hr);
    m->logits = PLAN_REAL(m, hr * V);
    m->d_head_in = PLAN_REAL(m, hr * 2 * d);
    m->d_head_ln = PLAN_REAL(m, hr * 2 * d);
    m->losses = PLAN_REAL(m, T);
    m->correct = plan(m, T * sizeof(int));
    if (ulysses) {
        real **hb[] = {&m->qh, &m->kh, &m->vh, &m->oh, &m->dqh, &m->dkh, &m->dvh, &m->doh, &m->xsend, &m->xrecv};
        for (size_t i = 0; i < sizeof hb / sizeof hb[0]; i++) *hb[i] = PLAN_REAL(m, T * HD);
    }
    m->host_losses = checked_calloc(T, sizeof(real));
    m->host_correct = checked_calloc(T, sizeof(int));

    m->scratch_planned = scratch_plan(m);
    be->reserve_scratch(m->scratch_planned);
    m->bytes_planned += m->scratch_planned;
}

void model_free(Model *m) {
    const Backend *be = m->be;
    real **bufs[] = {&m->params, &m->grads, &m->adam_m, &m->adam_v, &m->x1, &m->x2, &m->dx1, &m->dx2,
                     &m->stored, &m->ln_out, &m->ln_mean, &m->ln_rstd, &m->q, &m->k, &m->v, &m->attn_o,
                     &m->dq, &m->dk, &m->dv, &m->d_attn_o, &m->attn_out, &m->d_block, &m->d_ln,
                     &m->attn_saved, &m->ff_ln, &m->ff_mean, &m->ff_rstd, &m->ff_h, &m->ff_a, &m->ff_da,
                     &m->ff_out, &m->ff_dln, &m->head_in, &m->head_ln, &m->head_mean, &m->head_rstd,
                     &m->logits, &m->d_head_in, &m->d_head_ln, &m->losses, &m->qh, &m->kh, &m->vh, &m->oh,
                     &m->dqh, &m->dkh, &m->dvh, &m->doh, &m->xsend, &m->xrecv};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (*bufs[i]) be->release(*bufs[i]);
    for (int l = 0; l < MAX_LAYERS; l++)
        if (m->buckets[l]) be->release(m->buckets[l]);
    if (m->attn_work) be->release(m->attn_work);
    if (m->seq_blob) be->release(m->seq_blob);
    be->release(m->tokens);
    be->release(m->targets);
    be->release(m->correct);
    be->release_scratch();
    free(m->host_losses);
    free(m->host_correct);
    param_layout_free(&m->layout);
    memset(m, 0, sizeof *m);
}

// --- sequence-parallel exchange ---------------------------------------------

// x [T, HD] (my tokens, all heads) -> xh [B, L, HD/sp] (all tokens, my heads).
static void to_heads(Model *m, const real *x, real *xh) {
    const Backend *be = m->be;
    const int sp = m->seq.sp, HDs = m->HD / sp, Ll = m->L_local;
    const size_t block = (size_t)m->T * HDs;
    for (int j = 0; j < sp; j++)  // heads of rank j, my tokens
        be->copy_2d(m->xsend + j * block, HDs, x + (size_t)j * HDs, m->HD, m->T, HDs);
    m->seq.alltoall(m->seq.ctx, m->xsend, m->xrecv, block);
    for (int i = 0; i < sp; i++)  // rank i's positions of every sequence
        for (int b = 0; b < m->B; b++)
            be->copy(xh + ((size_t)b * m->L + (size_t)i * Ll) * HDs, m->xrecv + i * block + (size_t)b * Ll * HDs,
                     (size_t)Ll * HDs * sizeof(real));
}

// The inverse: xh [B, L, HD/sp] -> x [T, HD].
static void to_tokens(Model *m, const real *xh, real *x) {
    const Backend *be = m->be;
    const int sp = m->seq.sp, HDs = m->HD / sp, Ll = m->L_local;
    const size_t block = (size_t)m->T * HDs;
    for (int i = 0; i < sp; i++)
        for (int b = 0; b < m->B; b++)
            be->copy(m->xsend + i * block + (size_t)b * Ll * HDs, xh + ((size_t)b * m->L + (size_t)i * Ll) * HDs,
                     (size_t)Ll * HDs * sizeof(real));
    m->seq.alltoall(m->seq.ctx, m->xsend, m->xrecv, block);
    for (int j = 0; j < sp; j++)
        be->copy_2d(x + (size_t)j * HDs, m->HD, m->xrecv + j * block, HDs, m->T, HDs);
}

// Dropout on local rows [r0, r0 + n) of a [*, d] buffer (x points at row r0),
// masks drawn by global position (batch_offset, sequence shard), so they do
// not depend on how the batch or the sequence is split over ranks.
static void dropout_rows(Model *m, real *x, int r0, int n, uint32_t step, uint32_t tag) {
    const Config *c = &m->cfg;
    const int Ll = m->L_local, d = m->d;
    for (int r = r0; r < r0 + n;) {
        int seg = MIN(r0 + n, (r / Ll + 1) * Ll) - r;  // up to the end of this sequence
        size_t global_row = (m->batch_offset + (size_t)(r / Ll)) * m->L + (size_t)m->seq.sp_rank * Ll + r % Ll;
        m->be->dropout(x + (size_t)(r - r0) * d, (size_t)seg * d, global_row * d, (float)c->dropout, c->seed, step, tag);
        r += seg;
    }
}

// --- blocks -----------------------------------------------------------------

// attn_out = dropout(Attn_l(LN1(x))), keeping the layer's intermediates for
// a backward. hash = 1 draws fresh buckets; 0 reuses the cached ones.
static void attn_block_forward(Model *m, int l, const real *x, uint32_t step, int train, int hash) {
    const Backend *be = m->be;
    const Config *c = &m->cfg;
    const LayerTensors *lt = &m->layout.layers[l];
    const int T = m->T, d = m->d, HD = m->HD;
    AttnShape s = layer_shape(m, l);
    be->layernorm_forward(m->ln_out, m->ln_mean, m->ln_rstd, x, P(m, lt->ln1_g), P(m, lt->ln1_b), T, d,
                          (real)c->ln_eps);
    // With Ulysses sequence parallelism, attention runs on head-sharded whole
    // sequences (qa, ka, va, oa); otherwise on the local buffers directly
    // (sequence-sharded layers: attention_seq.c, exchanging as they go).
    const int sharded = seq_sharded(m, l), shard = m->seq.sp > 1 && !sharded;
    real *qa = shard ? m->qh : m->q, *ka = shard ? m->kh : m->k, *va = shard ? m->vh : m->v;
    real *oa = shard ? m->oh : m->attn_o;
    if (c->layer_kind[l] == ATTN_LSH) {
        mm(m, m->q, m->ln_out, P(m, lt->w_qk), T, HD, d, 0, 0, 0);
        mm(m, m->v, m->ln_out, P(m, lt->w_v), T, HD, d, 0, 0, 0);
        uint16_t *bk = m->buckets[l];
        TIMED(PROF_ATTENTION, {
            if (sharded) {
                seq_lsh_forward(&m->seq_attn, be, &m->seq, oa, m->q, m->v, bk, hash, c->seed, step, (uint32_t)l);
            } else {
                if (shard) to_heads(m, m->q, qa), to_heads(m, m->v, va);
                if (bk && hash) be->lsh_hash(bk, qa, &s, c->seed, step, (uint32_t)l, m->attn_work);
                be->lsh_attention_forward(oa, m->attn_saved, qa, va, bk, &s, m->attn_work);
            }
        });
    } else {
        mm(m, m->q, m->ln_out, P(m, lt->w_q), T, HD, d, 0, 0, 0);
        mm(m, m->k, m->ln_out, P(m, lt->w_k), T, HD, d, 0, 0, 0);
        mm(m, m->v, m->ln_out, P(m, lt->w_v), T, HD, d, 0, 0, 0);
        TIMED(PROF_ATTENTION, {
            if (sharded) {
                seq_local_forward(&m->seq_attn, be, &m->seq, oa, m->q, m->k, m->v);
            } else {
                if (shard) to_heads(m, m->q, qa), to_heads(m, m->k, ka), to_heads(m, m->v, va);
                be->local_attention_forward(oa, m->attn_saved, qa, ka, va, &s, m->attn_work);
            }
        });
    }
    if (shard) TIMED(PROF_ATTENTION, to_tokens(m, oa, m->attn_o));
    mm(m, m->attn_out, m->attn_o, P(m, lt->w_o), T, d, HD, 0, 0, 0);
    if (train) dropout_rows(m, m->attn_out, 0, T, step, rng_tag(RNG_DROPOUT, (uint32_t)l, SITE_ATTN));
}

// Backward of attn_block_forward (whose intermediates must be current):
// dx += d/dx of <dy, attn_out>; parameter gradients accumulate.
static void attn_block_backward(Model *m, int l, const real *x, real *dx, const real *dy, uint32_t step) {
    const Backend *be = m->be;
    const Config *c = &m->cfg;
    const LayerTensors *lt = &m->layout.layers[l];
    const int T = m->T, d = m->d, HD = m->HD;
    AttnShape s = layer_shape(m, l);
    be->copy(m->d_block, dy, (size_t)T * d * sizeof(real));
    dropout_rows(m, m->d_block, 0, T, step, rng_tag(RNG_DROPOUT, (uint32_t)l, SITE_ATTN));
    mm(m, G(m, lt->w_o), m->attn_o, m->d_block, HD, d, T, 1, 0, 1);
    mm(m, m->d_attn_o, m->d_block, P(m, lt->w_o), T, HD, d, 0, 1, 0);
    const int sharded = seq_sharded(m, l), shard = m->seq.sp > 1 && !sharded;
    real *qa = shard ? m->qh : m->q, *ka = shard ? m->kh : m->k, *va = shard ? m->vh : m->v;
    real *oa = shard ? m->oh : m->attn_o, *doa = shard ? m->doh : m->d_attn_o;
    real *dqa = shard ? m->dqh : m->dq, *dka = shard ? m->dkh : m->dk, *dva = shard ? m->dvh : m->dv;
    if (c->layer_kind[l] == ATTN_LSH) {
        TIMED(PROF_ATTENTION, {
            if (sharded) {
                seq_lsh_backward(&m->seq_attn, be, &m->seq, m->dq, m->dv, m->d_attn_o, m->attn_o);
            } else {
                if (shard) to_heads(m, m->d_attn_o, doa);
                be->lsh_attention_backward(dqa, dva, doa, oa, m->attn_saved, qa, va, m->buckets[l], &s,
                                           m->attn_work);
                if (shard) to_tokens(m, dqa, m->dq), to_tokens(m, dva, m->dv);
            }
        });
        mm(m, G(m, lt->w_qk), m->ln_out, m->dq, d, HD, T, 1, 0, 1);
        mm(m, G(m, lt->w_v), m->ln_out, m->dv, d, HD, T, 1, 0, 1);
        mm(m, m->d_ln, m->dq, P(m, lt->w_qk), T, d, HD, 0, 1, 0);
        mm(m, m->d_ln, m->dv, P(m, lt->w_v), T, d, HD, 0, 1, 1);
    } else {
        TIMED(PROF_ATTENTION, {
            if (sharded) {
                seq_local_backward(&m->seq_attn, be, &m->seq, m->dq, m->dk, m->dv, m->d_attn_o, m->attn_o, m->q,
                                   m->k, m->v);
            } else {
                if (shard) to_heads(m, m->d_attn_o, doa);
                be->local_attention_backward(dqa, dka, dva, doa, oa, m->attn_saved, qa, ka, va, &s, m->attn_work);
                if (shard) to_tokens(m, dqa, m->dq), to_tokens(m, dka, m->dk), to_tokens(m, dva, m->dv);
            }
        });
        mm(m, G(m, lt->w_q), m->ln_out, m->dq, d, HD, T, 1, 0, 1);
        mm(m, G(m, lt->w_k), m->ln_out, m->dk, d, HD, T, 1, 0, 1);
        mm(m, G(m, lt->w_v), m->ln_out, m->dv, d, HD, T, 1, 0, 1);
        mm(m, m->d_ln, m->dq, P(m, lt->w_q), T, d, HD, 0, 1, 0);
        mm(m, m->d_ln, m->dk, P(m, lt->w_k), T, d, HD, 0, 1, 1);
        mm(m, m->d_ln, m->dv, P(m, lt->w_v), T, d, HD, 0, 1, 1);
    }
    be->layernorm_backward(dx, G(m, lt->ln1_g), G(m, lt->ln1_b), m->d_ln, x, P(m, lt->ln1_g), m->ln_mean,
                           m->ln_rstd, T, d);
}

// ff_out = dropout(FFN_l(LN2(y))) for rows [r0, r0 + n) of y (y points at row r0).
static void ffn_chunk_forward(Model *m, int l, const real *y, int r0, int n, uint32_t step, int train) {
    const Backend *be = m->be;
    const Config *c = &m->cfg;
    const LayerTensors *lt = &m->layout.layers[l];
    const int d = m->d, dff = c->d_ff;
    be->layernorm_forward(m->ff_ln, m->ff_mean, m->ff_rstd, y, P(m, lt->ln2_g), P(m, lt->ln2_b), n, d,
                          (real)c->ln_eps);
    mm(m, m->ff_h, m->ff_ln, P(m, lt->ff_w1), n, dff, d, 0, 0, 0);
    be->bias_forward(m->ff_h, P(m, lt->ff_b1), n, dff);
    be->activation_forward(m->ff_a, m->ff_h, (size_t)n * dff, c->ff_activation);
    mm(m, m->ff_out, m->ff_a, P(m, lt->ff_w2), n, d, dff, 0, 0, 0);
    be->bias_forward(m->ff_out, P(m, lt->ff_b2), n, d);
    if (train) dropout_rows(m, m->ff_out, r0, n, step, rng_tag(RNG_DROPOUT, (uint32_t)l, SITE_FFN));
}

// Backward of ffn_chunk_forward for the same rows: dy += d/dy <dout, ff_out>.
// Uses ff_out as scratch.
static void ffn_chunk_backward(Model *m, int l, const real *y, real *dy, const real *dout, int r0, int n,
                               uint32_t step) {
    const Backend *be = m->be;
    const Config *c = &m->cfg;
    const LayerTensors *lt = &m->layout.layers[l];
    const int d = m->d, dff = c->d_ff;
    real *df = m->ff_out;
    be->copy(df, dout, (size_t)n * d * sizeof(real));
    dropout_rows(m, df, r0, n, step, rng_tag(RNG_DROPOUT, (uint32_t)l, SITE_FFN));
    mm(m, G(m, lt->ff_w2), m->ff_a, df, dff, d, n, 1, 0, 1);
    be->bias_backward(G(m, lt->ff_b2), df, n, d);
    mm(m, m->ff_da, df, P(m, lt->ff_w2), n, dff, d, 0, 1, 0);
    be->activation_backward(m->ff_da, m->ff_da, m->ff_h, (size_t)n * dff, c->ff_activation);
    mm(m, G(m, lt->ff_w1), m->ff_ln, m->ff_da, d, dff, n, 1, 0, 1);
    be->bias_backward(G(m, lt->ff_b1), m->ff_da, n, dff);
    mm(m, m->ff_dln, m->ff_da, P(m, lt->ff_w1), n, d, dff, 0, 1, 0);
    be->layernorm_backward(dy, G(m, lt->ln2_g), G(m, lt->ln2_b), m->ff_dln, y, P(m, lt->ln2_g), m->ff_mean,
                           m->ff_rstd, n, d);
}

// --- whole model --------------------------------------------------------------

static void embed(Model *m) {
    const Backend *be = m->be;
    const Config *c = &m->cfg;
    real *tables[MAX_AXES];
    for (int a = 0; a < c->n_axes; a++) tables[a] = P(m, m->layout.axial[a]);
    be->embedding_forward(m->x1, m->tokens, P(m, m->layout.tok_emb), m->T, m->d);
    be->axial_forward(m->x1, tables, c->axial_shape, c->axial_dims, c->n_axes, m->B, m->L_local,
                      m->seq.sp_rank * m->L_local);
    be->copy(m->x2, m->x1, (size_t)m->T * m->d * sizeof(real));
}

static void embed_backward(Model *m) {
    const Backend *be = m->be;
    const Config *c = &m->cfg;
    real *dtables[MAX_AXES];
    for (int a = 0; a < c->n_axes; a++) dtables[a] = G(m, m->layout.axial[a]);
    be->axpy(m->dx1, m->dx2, 1, (size_t)m->T * m->d);  // x1 = x2 = embedding
    be->embedding_backward(G(m, m->layout.tok_emb), m->dx1, m->tokens, m->T, m->d);
    be->axial_backward(dtables, m->dx1, c->axial_shape, c->axial_dims, c->n_axes, m->B, m->L_local,
                       m->seq.sp_rank * m->L_local);
}

// LayerNorm(concat(x1, x2)) -> logits -> cross-entropy, chunk by chunk. With
// backward, each chunk's gradient goes straight into dx1, dx2 and the head's
// parameter gradients, so logits never exist for the whole sequence.
static void loss_head(Model *m, int backward, long n_targets) {
    const Backend *be = m->be;
    const Config *c = &m->cfg;
    const ParamLayout *p = &m->layout;
    const int d = m->d, V = c->vocab_size;
    long count = m->loss_count > 0 ? m->loss_count : n_targets;
    real dscale = backward && count > 0 ? (real)(1.0 / (double)count) : 0;
    for (int r0 = 0; r0 < m->T; r0 += m->head_rows) {
        int n = MIN(m->head_rows, m->T - r0);
        size_t off = (size_t)r0 * d;
        be->concat_rows(m->head_in, m->x1 + off, m->x2 + off, n, d);
        be->layernorm_forward(m->head_ln, m->head_mean, m->head_rstd, m->head_in, P(m, p->lnf_g), P(m, p->lnf_b),
                              n, 2 * d, (real)c->ln_eps);
        mm(m, m->logits, m->head_ln, P(m, p->out_w), n, V, 2 * d, 0, 0, 0);
        be->bias_forward(m->logits, P(m, p->out_b), n, V);
        be->xent_forward_backward(m->logits, m->losses + r0, m->correct + r0, m->targets + r0, n, V, dscale);
        if (!backward) continue;
        mm(m, G(m, p->out_w), m->head_ln, m->logits, 2 * d, V, n, 1, 0, 1);
        be->bias_backward(G(m, p->out_b), m->logits, n, V);
        mm(m, m->d_head_ln, m->logits, P(m, p->out_w), n, 2 * d, V, 0, 1, 0);
        be->zero(m->d_head_in, (size_t)n * 2 * d * sizeof(real));
        be->layernorm_backward(m->d_head_in, G(m, p->lnf_g), G(m, p->lnf_b), m->d_head_ln, m->head_in,
                               P(m, p->lnf_g), m->head_mean, m->head_rstd, n, 2 * d);
        be->split_rows(m->dx1 + off, m->dx2 + off, m->d_head_in, n, d);
    }
}

static LossStats run(Model *m, const int *tokens, const int *targets, uint32_t step, int train, int backward) {
    const Backend *be = m->be;
    const Config *c = &m->cfg;
    const int T = m->T, d = m->d;
    const size_t Td = (size_t)T * d;
    if (m->seq.sp > 1 && (!m->seq.alltoall || !m->seq.alltoallv || !m->seq.shift || !m->seq.scan_counts))
        FATAL("the launcher must set Model.seq's exchanges", "sp=%d but no sequence-parallel exchange is set",
              m->seq.sp);
    double t_start = prof_start(m);
    long n_targets = 0;
    for (int i = 0; i < T; i++) n_targets += targets[i] >= 0;
    be->upload(m->tokens, tokens, (size_t)T * sizeof(int));
    be->upload(m->targets, targets, (size_t)T * sizeof(int));
    if (backward) be->zero(m->grads, m->layout.n_params * sizeof(real));

    embed(m);
    for (int l = 0; l < c->n_layers; l++) {
        if (m->stored) {
            be->copy(m->stored + (size_t)l * 2 * Td, m->x1, Td * sizeof(real));
            be->copy(m->stored + (size_t)l * 2 * Td + Td, m->x2, Td * sizeof(real));
        }
        attn_block_forward(m, l, m->x2, step, train, !m->freeze_buckets);
        be->axpy(m->x1, m->attn_out, 1, Td);  // y1 = x1 + Attn(LN1(x2))
        for (int r0 = 0; r0 < T; r0 += m->ff_rows) {
            int n = MIN(m->ff_rows, T - r0);
            ffn_chunk_forward(m, l, m->x1 + (size_t)r0 * d, r0, n, step, train);
            be->axpy(m->x2 + (size_t)r0 * d, m->ff_out, 1, (size_t)n * d);  // y2 = x2 + FFN(LN2(y1))
        }
    }
    loss_head(m, backward, n_targets);

    if (backward) {
        for (int l = c->n_layers - 1; l >= 0; l--) {
            const real *in1 = m->stored ? m->stored + (size_t)l * 2 * Td : NULL, *in2 = in1 ? in1 + Td : NULL;
            // Feed-forward half: x2 = y2 - FFN(LN2(y1)); dy1 += FFN'(dy2).
            for (int r0 = 0; r0 < T; r0 += m->ff_rows) {
                int n = MIN(m->ff_rows, T - r0);
                size_t off = (size_t)r0 * d;
                ffn_chunk_forward(m, l, m->x1 + off, r0, n, step, train);
                if (in2) be->copy(m->x2 + off, in2 + off, (size_t)n * d * sizeof(real));
                else be->axpy(m->x2 + off, m->ff_out, -1, (size_t)n * d);
                ffn_chunk_backward(m, l, m->x1 + off, m->dx1 + off, m->dx2 + off, r0, n, step);
            }
            // Attention half, with the forward's buckets: x1 = y1 - Attn(LN1(x2)).
            attn_block_forward(m, l, m->x2, step, train, 0);
            if (in1) be->copy(m->x1, in1, Td * sizeof(real));
            else be->axpy(m->x1, m->attn_out, -1, Td);
            attn_block_backward(m, l, m->x2, m->dx2, m->dx1, step);
        }
        embed_backward(m);
    }

    be->download(m->host_losses, m->losses, (size_t)T * sizeof(real));
    be->download(m->host_correct, m->correct, (size_t)T * sizeof(int));
    double sum = 0;
    long hits = 0;
    for (int i = 0; i < T; i++) {
        sum += m->host_losses[i];
        hits += m->host_correct[i];
    }
    prof_stop(m, PROF_TOTAL, t_start);
    LossStats st = {.loss = n_targets ? sum / (double)n_targets : 0,
                    .accuracy = n_targets ? (double)hits / (double)n_targets : 0,
                    .n_targets = n_targets};
    return st;
}

LossStats model_forward(Model *m, const int *tokens, const int *targets, uint32_t step, int train) {
    return run(m, tokens, targets, step, train, 0);
}

LossStats model_forward_backward(Model *m, const int *tokens, const int *targets, uint32_t step) {
    return run(m, tokens, targets, step, 1, 1);
}

double model_grad_norm(Model *m) { return sqrt(m->be->sum_squares(m->grads, m->layout.n_params)); }

double model_update(Model *m, int t, double lr) {
    const Config *c = &m->cfg;
    double norm = model_grad_norm(m);
    double scale = c->clip > 0 && norm > c->clip ? c->clip / norm : 1.0;
    for (int i = 0; i < m->layout.n_tensors; i++) {
        const TensorInfo *ti = &m->layout.tensors[i];
        m->be->adamw(m->params + ti->offset, m->adam_m + ti->offset, m->adam_v + ti->offset, m->grads + ti->offset,
                     ti->size, (float)lr, (float)c->beta1, (float)c->beta2, (float)c->adam_eps,
                     ti->decay ? (float)c->weight_decay : 0.0f, (float)scale, t);
    }
    return norm;
}

void model_get_params(Model *m, real *host) {
    m->be->download(host, m->params, m->layout.n_params * sizeof(real));
}
void model_set_params(Model *m, const real *host) {
    m->be->upload(m->params, host, m->layout.n_params * sizeof(real));
}
void model_get_grads(Model *m, real *host) {
    m->be->download(host, m->grads, m->layout.n_params * sizeof(real));
}

double lr_at(const Config *c, int step) {
    if (c->warmup > 0 && step <= c->warmup) return c->lr * (double)step / (double)c->warmup;
    switch (c->schedule) {
    case SCHED_CONSTANT: return c->lr;
    case SCHED_RSQRT: return c->lr * sqrt((double)MAX(c->warmup, 1) / (double)step);
    case SCHED_COSINE:
    default: {
        double span = (double)MAX(c->steps - c->warmup, 1);
        double progress = MIN(1.0, MAX(0.0, (double)(step - c->warmup) / span));
        return c->lr_min + (c->lr - c->lr_min) * 0.5 * (1.0 + cos(M_PI * progress));
    }
    }
}
