#include "decode.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#include "attention_cpu.h"
#include "backend.h"
#include "lsh_rules.h"
#include "rng.h"
#include "util.h"

#define MAX_HASHES 64

static real *PR(const Decoder *dec, int t) { return (real *)dec->params + dec->layout->tensors[t].offset; }

int decode_layer_hashed(const Config *c, int layer) {
    return c->layer_kind[layer] == ATTN_LSH && config_layer_chunk(c, layer) < c->seq_len;
}

void decoder_init(Decoder *dec, const Config *c, const ParamLayout *layout, const real *params) {
    memset(dec, 0, sizeof *dec);
    dec->cfg = *c;
    dec->layout = layout;
    dec->params = params;
    dec->L = c->seq_len;
    dec->d = c->d_model;
    dec->H = c->n_heads;
    dec->dh = c->d_head;
    dec->HD = c->n_heads * c->d_head;
    dec->R = c->n_hashes;
    dec->nb = c->n_buckets;
    dec->V = c->vocab_size;
    if (dec->R > MAX_HASHES) FATAL("lower n_hashes", "decoding supports at most %d hash rounds, got %d", MAX_HASHES, dec->R);
    const size_t L = (size_t)dec->L, HD = (size_t)dec->HD, H = (size_t)dec->H, R = (size_t)dec->R;
    for (int l = 0; l < c->n_layers; l++) {
        int m = config_layer_chunk(c, l);
        // A local query sees its own and the previous chunk: a ring of 2m rows.
        dec->window[l] = c->layer_kind[l] == ATTN_LOCAL && m < dec->L ? MIN(2 * m, dec->L) : dec->L;
        dec->keys[l] = checked_calloc((size_t)dec->window[l] * HD, sizeof(real));
        dec->values[l] = checked_calloc((size_t)dec->window[l] * HD, sizeof(real));
        if (!decode_layer_hashed(c, l)) continue;
        // The rotations cpu_lsh_hash draws for this layer, at the inference step.
        const size_t width = R * (size_t)(dec->nb / 2), per_head = (size_t)dec->dh * width;
        dec->rotations[l] = checked_calloc(H * per_head, sizeof(real));
        for (size_t h = 0; h < H; h++)
            for (size_t e = 0; e < per_head; e++)
                dec->rotations[l][h * per_head + e] =
                    (real)lsh_rotation_element(c->seed, h, e, INFERENCE_HASH_STEP, (uint32_t)l);
        dec->buckets[l] = checked_calloc(L * H * R, sizeof(uint16_t));
        dec->chain[l] = checked_calloc(L * H * R, sizeof(int));
        dec->last[l] = checked_calloc(H * R * (size_t)dec->nb, sizeof(int));
    }
    const size_t d = (size_t)dec->d, dff = (size_t)c->d_ff;
    real **row_bufs[] = {&dec->x1, &dec->x2, &dec->ln, &dec->f};
    for (size_t i = 0; i < sizeof row_bufs / sizeof row_bufs[0]; i++) *row_bufs[i] = checked_calloc(d, sizeof(real));
    dec->mean = checked_calloc(1, sizeof(real));
    dec->rstd = checked_calloc(1, sizeof(real));
    dec->q = checked_calloc(HD, sizeof(real));
    dec->o = checked_calloc(HD, sizeof(real));
    dec->proj = checked_calloc((size_t)MAX(dec->nb / 2, 1), sizeof(real));
    dec->h = checked_calloc(dff, sizeof(real));
    dec->a = checked_calloc(dff, sizeof(real));
    dec->head_in = checked_calloc(2 * d, sizeof(real));
    dec->head_ln = checked_calloc(2 * d, sizeof(real));
    dec->scores = checked_calloc(L, sizeof(real));
    dec->round_out = checked_calloc(R * (size_t)dec->dh, sizeof(real));
    dec->round_lse = checked_calloc(R, sizeof(real));
    dec->keys_idx = checked_calloc(L, sizeof(int));
    decoder_reset(dec);
}

void decoder_free(Decoder *dec) {
    for (int l = 0; l < MAX_LAYERS; l++) {
        free(dec->keys[l]);
        free(dec->values[l]);
        free(dec->rotations[l]);
        free(dec->buckets[l]);
        free(dec->chain[l]);
        free(dec->last[l]);
    }
    real *bufs[] = {dec->x1, dec->x2, dec->ln, dec->f, dec->mean, dec->rstd, dec->q, dec->o,
                    dec->proj, dec->h, dec->a, dec->head_in, dec->head_ln, dec->scores, dec->round_out, dec->round_lse};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(dec->keys_idx);
    memset(dec, 0, sizeof *dec);
}

void decoder_reset(Decoder *dec) {
    dec->n = 0;
    for (int l = 0; l < dec->cfg.n_layers; l++)
        if (dec->last[l])
            for (size_t i = 0; i < (size_t)dec->H * dec->R * dec->nb; i++) dec->last[l][i] = -1;
}

// --- row operations (shared by the cached and the uncached path) -------------

real decode_attend(real *out, real *scores, const real *q, const real *keys, const real *values, size_t ld,
                   const int *keys_idx, int n_keys, int self, int dh, real scale) {
    real mx = -INFINITY;
    for (int t = 0; t < n_keys; t++) {
        int j = keys_idx[t];
        real z = 0;
        const real *kj = keys + (size_t)j * ld;
        for (int e = 0; e < dh; e++) z += q[e] * kj[e];
        z = j == self ? MASK_SELF : scale * z;
        scores[t] = z;
        mx = MAX(mx, z);
    }
    real sum = 0;
    for (int t = 0; t < n_keys; t++) sum += R_EXP(scores[t] - mx);
    real lse = mx + R_LOG(sum);
    for (int e = 0; e < dh; e++) out[e] = 0;
    for (int t = 0; t < n_keys; t++) {
        real p = R_EXP(scores[t] - lse);
        const real *vj = values + (size_t)keys_idx[t] * ld;
        for (int e = 0; e < dh; e++) out[e] += p * vj[e];
    }
    return lse;
}

void decode_hash(uint16_t *buckets, real *proj, const real *qk, const real *rotations, int dh, int R, int nb) {
    const int half = nb / 2, width = R * half;
    for (int r = 0; r < R; r++) {
        for (int j = 0; j < half; j++) {
            real p = 0;
            for (int e = 0; e < dh; e++) p += qk[e] * rotations[(size_t)e * width + (size_t)r * half + j];
            proj[j] = p;
        }
        buckets[r] = (uint16_t)lsh_bucket_of(proj, half);
    }
}

// ln = LN1(x2); q, k, v of one position. LSH layers: q is the shared qk and k
// its normalised key (as training's attention normalises it).
static void project_row(Decoder *dec, int l, const real *x2, real *q, real *k, real *v) {
    const Backend *be = backend_cpu();
    const LayerTensors *lt = &dec->layout->layers[l];
    const int d = dec->d, HD = dec->HD, dh = dec->dh;
    be->layernorm_forward(dec->ln, dec->mean, dec->rstd, x2, PR(dec, lt->ln1_g), PR(dec, lt->ln1_b), 1, d,
                          (real)dec->cfg.ln_eps);
    if (dec->cfg.layer_kind[l] == ATTN_LSH) {
        be->matmul(q, dec->ln, PR(dec, lt->w_qk), 1, HD, d, 0, 0, 0);
        for (int h = 0; h < dec->H; h++) {
            const real *qh = q + (size_t)h * dh;
            real ss = 0;
            for (int e = 0; e < dh; e++) ss += qh[e] * qh[e];
            real inv_norm = 1 / R_SQRT(ss + (real)(dh * KEY_NORM_EPS));
            for (int e = 0; e < dh; e++) k[(size_t)h * dh + e] = qh[e] * inv_norm;
        }
    } else {
        be->matmul(q, dec->ln, PR(dec, lt->w_q), 1, HD, d, 0, 0, 0);
        be->matmul(k, dec->ln, PR(dec, lt->w_k), 1, HD, d, 0, 0, 0);
    }
    be->matmul(v, dec->ln, PR(dec, lt->w_v), 1, HD, d, 0, 0, 0);
}

// x1 += o W_o; x2 += FFN(LN2(x1)): the rest of the block for one position.
static void finish_row(Decoder *dec, int l, real *x1, real *x2, const real *o) {
    const Backend *be = backend_cpu();
    const LayerTensors *lt = &dec->layout->layers[l];
    const int d = dec->d, dff = dec->cfg.d_ff;
    be->matmul(dec->f, o, PR(dec, lt->w_o), 1, d, dec->HD, 0, 0, 0);
    be->axpy(x1, dec->f, 1, (size_t)d);
    be->layernorm_forward(dec->ln, dec->mean, dec->rstd, x1, PR(dec, lt->ln2_g), PR(dec, lt->ln2_b), 1, d,
                          (real)dec->cfg.ln_eps);
    be->matmul(dec->h, dec->ln, PR(dec, lt->ff_w1), 1, dff, d, 0, 0, 0);
    be->bias_forward(dec->h, PR(dec, lt->ff_b1), 1, dff);
    be->activation_forward(dec->a, dec->h, (size_t)dff, dec->cfg.ff_activation);
    be->matmul(dec->f, dec->a, PR(dec, lt->ff_w2), 1, d, dff, 0, 0, 0);
    be->bias_forward(dec->f, PR(dec, lt->ff_b2), 1, d);
    be->axpy(x2, dec->f, 1, (size_t)d);
}

static void embed_row(Decoder *dec, real *x1, real *x2, int token, int pos) {
    const Backend *be = backend_cpu();
    const Config *c = &dec->cfg;
    real *tables[MAX_AXES];
    for (int a = 0; a < c->n_axes; a++) tables[a] = PR(dec, dec->layout->axial[a]);
    be->embedding_forward(x1, &token, PR(dec, dec->layout->tok_emb), 1, dec->d);
    be->axial_forward(x1, tables, c->axial_shape, c->axial_dims, c->n_axes, 1, 1, pos);
    memcpy(x2, x1, (size_t)dec->d * sizeof(real));
}

static void head_row(Decoder *dec, const real *x1, const real *x2, real *logits) {
    const Backend *be = backend_cpu();
    const ParamLayout *p = dec->layout;
    const int d = dec->d;
    be->concat_rows(dec->head_in, x1, x2, 1, d);
    be->layernorm_forward(dec->head_ln, dec->mean, dec->rstd, dec->head_in, PR(dec, p->lnf_g), PR(dec, p->lnf_b), 1,
                          2 * d, (real)dec->cfg.ln_eps);
    be->matmul(logits, dec->head_ln, PR(dec, p->out_w), 1, dec->V, 2 * d, 0, 0, 0);
    be->bias_forward(logits, PR(dec, p->out_b), 1, dec->V);
}

// Where a layer's keys for query position p come from. The cached path reads
// the cache (ring slots, bucket chains); the uncached one whole-prefix arrays,
// scanning every earlier position's buckets. Both list keys by ascending
// position, so both sum in the same order.
typedef struct {
    const real *keys, *values;    // rows of HD
    const uint16_t *buckets;      // [*, H, R] by position (hashed layers)
    const int *chain;             // cached path: [*, H, R] previous position in the bucket
    int window;                   // rows of keys/values: position j lives in row j % window
} KeySource;

static int list_keys(const Decoder *dec, int l, int p, int h, int r, const KeySource *src, int *idx) {
    const Config *c = &dec->cfg;
    int n = 0;
    if (decode_layer_hashed(c, l)) {
        const size_t HR = (size_t)dec->H * dec->R, at = (size_t)h * dec->R + (size_t)r;
        // lsh_form=strict: only the newest window items of the bucket (itself included).
        const int window = c->lsh_strict ? lsh_strict_window(config_layer_chunk(c, l)) : INT_MAX;
        if (src->chain) {
            for (int j = p; j >= 0 && n < window; j = src->chain[(size_t)j * HR + at]) idx[n++] = j;
            for (int i = 0; i < n / 2; i++) {  // the chain runs newest first
                int t = idx[i];
                idx[i] = idx[n - 1 - i];
                idx[n - 1 - i] = t;
            }
        } else {
            uint16_t mine = src->buckets[(size_t)p * HR + at];
            for (int j = 0; j <= p; j++)
                if (src->buckets[(size_t)j * HR + at] == mine) idx[n++] = j;
            if (n > window) {  // keep the newest window, oldest first
                memmove(idx, idx + (n - window), (size_t)window * sizeof(int));
                n = window;
            }
        }
    } else {
        int m = config_layer_chunk(c, l);
        int first = c->layer_kind[l] == ATTN_LOCAL && m < dec->L ? MAX(0, (p / m - 1) * m) : 0;
        for (int j = first; j <= p; j++) idx[n++] = j;
    }
    for (int t = 0; t < n; t++) idx[t] %= src->window;
    return n;
}

// o [HD] = layer l's attention output of the query q at position p.
static void attend_row(Decoder *dec, int l, int p, const real *q, const KeySource *src, real *o) {
    const int dh = dec->dh, HD = dec->HD;
    const int lsh = dec->cfg.layer_kind[l] == ATTN_LSH, R = decode_layer_hashed(&dec->cfg, l) ? dec->R : 1;
    const real scale = lsh ? 1 : 1 / R_SQRT((real)dh);
    for (int h = 0; h < dec->H; h++) {
        const real *qh = q + (size_t)h * dh;
        real *oh = o + (size_t)h * dh;
        for (int r = 0; r < R; r++) {
            int n = list_keys(dec, l, p, h, r, src, dec->keys_idx);
            dec->round_lse[r] = decode_attend(dec->round_out + (size_t)r * dh, dec->scores, qh, src->keys + (size_t)h * dh,
                                              src->values + (size_t)h * dh, (size_t)HD, dec->keys_idx, n,
                                              lsh ? p % src->window : -1, dh, scale);
        }
        // Rounds combined by softmax of their logsumexps (REFORMER.md step 8).
        real mx = -INFINITY, sum = 0, w[MAX_HASHES];
        for (int r = 0; r < R; r++) mx = MAX(mx, dec->round_lse[r]);
        for (int r = 0; r < R; r++) sum += (w[r] = R_EXP(dec->round_lse[r] - mx));
        for (int e = 0; e < dh; e++) oh[e] = 0;
        for (int r = 0; r < R; r++)
            for (int e = 0; e < dh; e++) oh[e] += w[r] / sum * dec->round_out[(size_t)r * dh + e];
    }
}

static void hash_row(Decoder *dec, int l, const real *qk, uint16_t *buckets /* [H, R] */) {
    const size_t per_head = (size_t)dec->dh * dec->R * (dec->nb / 2);
    for (int h = 0; h < dec->H; h++)
        decode_hash(buckets + (size_t)h * dec->R, dec->proj, qk + (size_t)h * dec->dh, dec->rotations[l] + h * per_head,
                    dec->dh, dec->R, dec->nb);
}

// --- cached ------------------------------------------------------------------

void decoder_step(Decoder *dec, int token, real *logits) {
    const int p = dec->n, HD = dec->HD;
    if (p >= dec->L) FATAL("generate fewer tokens", "decoder is full: %d positions (seq_len)", dec->L);
    embed_row(dec, dec->x1, dec->x2, token, p);
    for (int l = 0; l < dec->cfg.n_layers; l++) {
        const int slot = p % dec->window[l];
        real *k = dec->keys[l] + (size_t)slot * HD, *v = dec->values[l] + (size_t)slot * HD;
        project_row(dec, l, dec->x2, dec->q, k, v);
        KeySource src = {.keys = dec->keys[l], .values = dec->values[l], .window = dec->window[l]};
        if (dec->buckets[l]) {
            const size_t HR = (size_t)dec->H * dec->R;
            uint16_t *bk = dec->buckets[l] + (size_t)p * HR;
            hash_row(dec, l, dec->q, bk);
            for (size_t hr = 0; hr < HR; hr++) {  // link p into its bucket's chain
                int *last = dec->last[l] + hr * (size_t)dec->nb + bk[hr];
                dec->chain[l][(size_t)p * HR + hr] = *last;
                *last = p;
            }
            src.buckets = dec->buckets[l];
            src.chain = dec->chain[l];
        }
        attend_row(dec, l, p, dec->q, &src, dec->o);
        finish_row(dec, l, dec->x1, dec->x2, dec->o);
    }
    head_row(dec, dec->x1, dec->x2, logits);
    dec->n = p + 1;
}

// --- uncached reference --------------------------------------------------------

void decode_logits_uncached(Decoder *dec, const int *tokens, int n, real *logits) {
    if (n > dec->L) FATAL("use fewer tokens", "%d tokens exceed seq_len %d", n, dec->L);
    const size_t d = (size_t)dec->d, HD = (size_t)dec->HD, HR = (size_t)dec->H * dec->R;
    real *X1 = checked_calloc((size_t)n * d, sizeof(real)), *X2 = checked_calloc((size_t)n * d, sizeof(real));
    real *Q = checked_calloc((size_t)n * HD, sizeof(real)), *K = checked_calloc((size_t)n * HD, sizeof(real));
    real *Vv = checked_calloc((size_t)n * HD, sizeof(real));
    uint16_t *bk = checked_calloc((size_t)n * HR, sizeof(uint16_t));
    for (int p = 0; p < n; p++) embed_row(dec, X1 + p * d, X2 + p * d, tokens[p], p);
    for (int l = 0; l < dec->cfg.n_layers; l++) {
        for (int p = 0; p < n; p++) {
            project_row(dec, l, X2 + p * d, Q + p * HD, K + p * HD, Vv + p * HD);
            if (decode_layer_hashed(&dec->cfg, l)) hash_row(dec, l, Q + p * HD, bk + p * HR);
        }
        KeySource src = {.keys = K, .values = Vv, .buckets = bk, .window = dec->L};
        // Attention of every position first (it reads X2 of all), then the rest.
        real *O = checked_calloc((size_t)n * HD, sizeof(real));
        for (int p = 0; p < n; p++) attend_row(dec, l, p, Q + p * HD, &src, O + p * HD);
        for (int p = 0; p < n; p++) finish_row(dec, l, X1 + p * d, X2 + p * d, O + p * HD);
        free(O);
    }
    for (int p = 0; p < n; p++) head_row(dec, X1 + p * d, X2 + p * d, logits + (size_t)p * dec->V);
    free(X1), free(X2), free(Q), free(K), free(Vv), free(bk);
}

// --- sampling ------------------------------------------------------------------

int decode_continue(Decoder *dec, int *tokens, int n_given, int n_total, uint64_t seed, uint32_t stream,
                    double temperature, int top_k, real *logits, real *first_logits) {
    decoder_reset(dec);
    for (int n = 0; n < n_total; n++) {
        if (n < n_given) {
            if (n + 1 < n_given) decoder_step(dec, tokens[n], logits);  // the logits of a given token are not needed
            continue;
        }
        decoder_step(dec, tokens[n - 1], logits);
        for (int v = 0; v < dec->V; v++)
            if (!isfinite(logits[v])) return n;
        if (n == n_given && first_logits) memcpy(first_logits, logits, (size_t)dec->V * sizeof(real));
        double u = rng_uniform(seed, (uint64_t)n, stream, rng_tag(RNG_SAMPLE, 0, 0));
        tokens[n] = decode_sample(logits, dec->V, temperature, top_k, u);
    }
    return 0;
}

int decode_sample(const real *logits, int V, double temperature, int top_k, double u) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = i;
    if (temperature <= 0 || top_k == 1) return best;
    // The k-th largest logit is the cut-off: keep logits >= it (ties kept).
    double cut = -INFINITY;
    if (top_k > 0 && top_k < V) {
        // Selection by repeated max: k is small in practice (<= V anyway).
        double prev = INFINITY;
        int taken = 0;
        while (taken < top_k) {
            double mx = -INFINITY;
            int count = 0;
            for (int i = 0; i < V; i++)
                if (logits[i] < prev && logits[i] > mx) mx = logits[i];
            for (int i = 0; i < V; i++) count += logits[i] == mx;
            taken += count;
            prev = cut = mx;
        }
    }
    double total = 0, mx = logits[best];
    for (int i = 0; i < V; i++)
        if (logits[i] >= cut) total += exp((logits[i] - mx) / temperature);
    double target = u * total, acc = 0;
    int last = best;
    for (int i = 0; i < V; i++) {
        if (logits[i] < cut) continue;
        acc += exp((logits[i] - mx) / temperature);
        last = i;
        if (acc > target) return i;
    }
    return last;  // u * total rounded up to the sum
}
