// Autoregressive decoding (core/decode.c): the cache against recomputation,
// decoding against the training forward where their attention agrees, and
// the pieces (attention row, hashing, sampling) against direct references.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attention_cpu.h"
#include "backend.h"
#include "decode.h"
#include "model.h"
#include "rng.h"

// A small model with sharp attention (init_std 0.3: the layers matter and
// hash buckets vary) and several chunks: seq_len 64, chunks of 8.
static Config decode_config(const char *pattern, int full, int n_hashes) {
    Config c;
    config_defaults(&c);
    const char *sets[] = {"vocab_size=40", "d_model=24", "d_ff=40", "n_heads=3", "d_head=8", "n_layers=3",
                          "seq_len=64", "axial_shape=8,8", "lsh_chunk=8", "local_chunk=8", "n_buckets=8",
                          "init_std=0.3", "batch=1", "seed=99", NULL};
    char err[256];
    for (int i = 0; sets[i]; i++) cr_assert_eq(config_set_pair(&c, sets[i], err, sizeof err), 0, "%s", err);
    snprintf(c.attn_layers, sizeof c.attn_layers, "%s", pattern);
    c.attn_full = full;
    c.n_hashes = n_hashes;
    cr_assert_eq(config_finalize(&c, err, sizeof err), 0, "%s", err);
    return c;
}

typedef struct {
    Config c;
    ParamLayout layout;
    real *params;
} Weights;

static Weights weights(const Config *c) {
    Weights w = {.c = *c};
    param_layout_build(&w.layout, c);
    w.params = calloc(w.layout.n_params, sizeof(real));
    param_init_host(&w.layout, w.params, c->seed);
    return w;
}
static void weights_free(Weights *w) {
    param_layout_free(&w->layout);
    free(w->params);
}

static void some_tokens(int *tokens, int n, int V, unsigned salt) {
    for (int i = 0; i < n; i++) tokens[i] = (int)((i * 7u + salt + (unsigned)(i * i) * 5u) % (unsigned)V);
}

// Every position's logits from the cache equal those of a recomputation from
// scratch bit for bit: same row operations, keys listed in the same order.
static void expect_cache_exact_config(Config c) {
    const char *pattern = c.attn_layers;
    const int full = c.attn_full, n_hashes = c.n_hashes;
    Weights w = weights(&c);
    const int n = c.seq_len, V = c.vocab_size;
    int tokens[64];
    some_tokens(tokens, n, V, 3);
    Decoder cached, uncached;
    decoder_init(&cached, &c, &w.layout, w.params);
    decoder_init(&uncached, &c, &w.layout, w.params);
    real *a = calloc((size_t)n * V, sizeof(real)), *b = calloc((size_t)n * V, sizeof(real));
    for (int p = 0; p < n; p++) decoder_step(&cached, tokens[p], a + (size_t)p * V);
    decode_logits_uncached(&uncached, tokens, n, b);
    for (int p = 0; p < n; p++)
        cr_assert(memcmp(a + (size_t)p * V, b + (size_t)p * V, V * sizeof(real)) == 0,
                  "%s (full=%d, R=%d): cached logits differ at position %d", pattern, full, n_hashes, p);
    // The logits are not trivially equal: positions differ from each other.
    cr_assert(memcmp(a, a + V, V * sizeof(real)) != 0);
    free(a);
    free(b);
    decoder_free(&cached);
    decoder_free(&uncached);
    weights_free(&w);
}

static void expect_cache_exact(const char *pattern, int full, int n_hashes) {
    expect_cache_exact_config(decode_config(pattern, full, n_hashes));
}

// lsh_form=strict; n_buckets 4 in 64 positions: buckets outgrow the window of 8.
static Config strict_config(const char *pattern, int n_hashes, int n_buckets) {
    Config c = decode_config(pattern, 0, n_hashes);
    c.lsh_strict = 1;
    c.n_buckets = n_buckets;
    char err[256];
    cr_assert_eq(config_finalize(&c, err, sizeof err), 0, "%s", err);
    return c;
}

Test(decode, cache_equals_recomputation_local_lsh) { expect_cache_exact("local,lsh", 0, 2); }
Test(decode, cache_equals_recomputation_all_lsh_4_rounds) { expect_cache_exact("lsh", 0, 4); }
Test(decode, cache_equals_recomputation_full_attention) { expect_cache_exact("local,lsh", 1, 2); }

// Sampling with the cache gives the same bytes as sampling without it.
Test(decode, sampling_with_and_without_cache_gives_the_same_tokens) {
    Config c = decode_config("local,lsh,local", 0, 2);
    Weights w = weights(&c);
    const int V = c.vocab_size, prompt = 5, total = c.seq_len;
    int a[64], b[64];
    some_tokens(a, prompt, V, 11);
    memcpy(b, a, sizeof a);
    Decoder cached, uncached;
    decoder_init(&cached, &c, &w.layout, w.params);
    decoder_init(&uncached, &c, &w.layout, w.params);
    real *logits = calloc(V, sizeof(real)), *all = calloc((size_t)total * V, sizeof(real));
    for (int p = 0; p < total - 1; p++) {
        decoder_step(&cached, a[p], logits);
        double u = rng_uniform(7, (uint64_t)p, 0, rng_tag(RNG_SAMPLE, 0, 0));
        if (p + 1 >= prompt) a[p + 1] = decode_sample(logits, V, 1.0, 0, u);
        if (p + 1 >= prompt) {
            decode_logits_uncached(&uncached, b, p + 1, all);
            b[p + 1] = decode_sample(all + (size_t)p * V, V, 1.0, 0, u);
        }
    }
    cr_assert(memcmp(a, b, sizeof a) == 0, "sampled tokens differ");
    int distinct = 0;  // a real sample, not a constant
    for (int i = prompt + 1; i < total; i++) distinct += a[i] != a[i - 1];
    cr_assert_gt(distinct, 10);
    free(logits);
    free(all);
    decoder_free(&cached);
    decoder_free(&uncached);
    weights_free(&w);
}

// Where decoding's attention is training's (local chunks, full attention),
// the decoder's next-token losses equal the training forward's at every
// position. Tolerance 2e-5 nats: float sums in another order (BLAS on one row
// vs a whole sequence; losses are ~3.7 nats, float epsilon 1.2e-7).
// Worst |decoder loss - training forward loss| over the positions.
static double decode_vs_training(Config c) {
    Weights w = weights(&c);
    const int n = c.seq_len, V = c.vocab_size;
    int tokens[64], targets[64];
    some_tokens(tokens, n, V, 5);
    for (int i = 0; i < n; i++) targets[i] = i + 1 < n ? tokens[i + 1] : -1;
    Model m;
    model_init(&m, &c, backend_cpu());
    model_set_params(&m, w.params);
    model_forward(&m, tokens, targets, INFERENCE_HASH_STEP, 0);
    Decoder dec;
    decoder_init(&dec, &c, &w.layout, w.params);
    real logits[64];
    double worst = 0;
    for (int p = 0; p + 1 < n; p++) {
        decoder_step(&dec, tokens[p], logits);
        double mx = -INFINITY, sum = 0;
        for (int v = 0; v < V; v++) mx = fmax(mx, logits[v]);
        for (int v = 0; v < V; v++) sum += exp(logits[v] - mx);
        double loss = mx + log(sum) - logits[targets[p]];
        worst = fmax(worst, fabs(loss - m.losses[p]));
    }
    decoder_free(&dec);
    model_free(&m);
    weights_free(&w);
    return worst;
}
static void expect_config_matches_training_forward(Config c) {
    double worst = decode_vs_training(c);
    cr_assert_lt(worst, 2e-5, "%s full=%d strict=%d: decoder vs training forward: worst loss difference %g",
                 c.attn_layers, c.attn_full, c.lsh_strict, worst);
}

static void expect_matches_training_forward(const char *pattern, int full) {
    expect_config_matches_training_forward(decode_config(pattern, full, 2));
}

Test(decode, local_layers_decode_as_they_train) { expect_matches_training_forward("local", 0); }
Test(decode, full_attention_decodes_as_it_trains) { expect_matches_training_forward("local,lsh", 1); }

// lsh_form=strict: hashed LSH layers decode exactly what training computes
// (same tolerance, same reason), at every position.
Test(decode, strict_lsh_cache_equals_recomputation) { expect_cache_exact_config(strict_config("local,lsh", 2, 4)); }
Test(decode, strict_lsh_cache_equals_recomputation_4_rounds) { expect_cache_exact_config(strict_config("lsh", 4, 8)); }
// The same with factorised buckets (n_buckets=f1,f2,...: the decoder's cache
// and hash follow core/lsh_rules.h's numbering, as training's hash does).
static Config strict_factorised_config(const char *pattern, int n_hashes, const char *n_buckets) {
    Config c = decode_config(pattern, 0, n_hashes);
    c.lsh_strict = 1;
    char err[256];
    cr_assert_eq(config_set(&c, "n_buckets", n_buckets, err, sizeof err), 0, "%s", err);
    cr_assert_eq(config_finalize(&c, err, sizeof err), 0, "%s", err);
    cr_assert_gt(c.bucket_factors.n, 1);
    return c;
}
Test(decode, strict_factorised_lsh_decodes_as_it_trains) {
    expect_config_matches_training_forward(strict_factorised_config("local,lsh", 2, "2,4"));
}
Test(decode, strict_factorised_lsh_decodes_as_it_trains_3_factors_4_rounds) {
    expect_config_matches_training_forward(strict_factorised_config("lsh", 4, "2,2,2"));
}

Test(decode, strict_lsh_decodes_as_it_trains) { expect_config_matches_training_forward(strict_config("local,lsh", 2, 4)); }
Test(decode, strict_lsh_decodes_as_it_trains_4_rounds) {
    expect_config_matches_training_forward(strict_config("lsh", 4, 8));
}
// The standard form does not (the check above can fail): its chunks also
// hold other buckets' items, which decoding never sees.
Test(decode, standard_lsh_does_not_decode_as_it_trains) {
    Config c = decode_config("local,lsh", 0, 2);
    c.n_buckets = 4;
    char err[256];
    cr_assert_eq(config_finalize(&c, err, sizeof err), 0, "%s", err);
    double worst = decode_vs_training(c);
    cr_assert_gt(worst, 1e-3, "standard LSH decoded as it trained (worst difference %g)", worst);
}

// One query's attention against a direct double-precision formula.
Test(decode, attention_row_matches_direct_formula) {
    enum { N = 40, DH = 8 };
    real q[DH], keys[N * DH], values[N * DH], out[DH], scores[N];
    for (int i = 0; i < DH; i++) q[i] = (real)(rng_normal(1, i, 0, 1) * 2);
    for (int i = 0; i < N * DH; i++) keys[i] = (real)rng_normal(2, i, 0, 1), values[i] = (real)rng_normal(3, i, 0, 1);
    int idx[N], n = 0;
    for (int j = 0; j < N; j++)
        if (j % 3 != 1) idx[n++] = j;  // a subset, ascending
    const int self = idx[n - 1];
    real lse = decode_attend(out, scores, q, keys, values, DH, idx, n, self, DH, (real)0.7);
    double z[N], mx = -INFINITY, sum = 0;
    for (int t = 0; t < n; t++) {
        double dot = 0;
        for (int e = 0; e < DH; e++) dot += (double)q[e] * keys[idx[t] * DH + e];
        z[t] = idx[t] == self ? -1e5 : 0.7 * dot;
        mx = fmax(mx, z[t]);
    }
    for (int t = 0; t < n; t++) sum += exp(z[t] - mx);
    double ref_lse = mx + log(sum);
    // float arithmetic over 27 keys of 8 dims: relative error well under 1e-5.
    cr_assert_lt(fabs(lse - ref_lse), 1e-5 * fabs(ref_lse) + 1e-6);
    for (int e = 0; e < DH; e++) {
        double o = 0;
        for (int t = 0; t < n; t++) o += exp(z[t] - ref_lse) * values[idx[t] * DH + e];
        cr_assert_lt(fabs(out[e] - o), 1e-5, "out[%d] = %g, expected %g", e, out[e], o);
    }
}

// Decoding hashes with the rotations training draws: its buckets equal the
// training hash's (cpu_lsh_hash, one GEMM per block of rows) wherever the
// winning projection beats the runner-up by more than float rounding.
Test(decode, buckets_match_the_training_hash) {
    Config c = decode_config("lsh", 0, 4);
    Weights w = weights(&c);
    Decoder dec;
    decoder_init(&dec, &c, &w.layout, w.params);
    const int L = c.seq_len, H = c.n_heads, dh = c.d_head, R = c.n_hashes, nb = c.n_buckets, half = nb / 2;
    AttnShape s = {.batch = 1, .seq_len = L, .n_heads = H, .d_head = dh, .chunk_len = 8, .n_hashes = R, .n_buckets = nb};
    real *qk = calloc((size_t)L * H * dh, sizeof(real));
    for (int i = 0; i < L * H * dh; i++) qk[i] = (real)rng_normal(5, i, 0, 2);
    uint16_t *train = calloc((size_t)H * R * L, sizeof(uint16_t)), mine[64];
    real proj[64];
    const Backend *be = backend_cpu();
    void *work = calloc(1, be->attention_workspace_bytes(&s, 1));
    be->lsh_hash(train, qk, &s, c.seed, INFERENCE_HASH_STEP, 1, work);
    int agree = 0, total = 0;
    for (int i = 0; i < L; i++)
        for (int h = 0; h < H; h++) {
            const real *x = qk + ((size_t)i * H + h) * dh, *rot = dec.rotations[1] + (size_t)h * dh * R * half;
            decode_hash(mine, proj, x, rot, dh, R, nb);
            for (int r = 0; r < R; r++) {
                double best = -INFINITY, second = -INFINITY;
                for (int j = 0; j < nb; j++) {
                    double p = 0;
                    for (int e = 0; e < dh; e++) p += (double)x[e] * rot[(size_t)e * R * half + r * half + j % half];
                    if (j >= half) p = -p;
                    if (p > best) second = best, best = p;
                    else if (p > second) second = p;
                }
                int same = mine[r] == train[((size_t)h * R + r) * L + i];
                if (best - second > 1e-4) cr_assert(same, "position %d head %d round %d: bucket %d vs %d", i, h, r, mine[r],
                                                     train[((size_t)h * R + r) * L + i]);
                agree += same;
                total++;
            }
        }
    cr_assert_gt(agree, total * 99 / 100);
    free(work);
    free(qk);
    free(train);
    decoder_free(&dec);
    weights_free(&w);
}

Test(decode, sampling_respects_temperature_and_top_k) {
    real logits[6] = {1.0f, 3.0f, 2.5f, -1.0f, 3.0f, 0.0f};
    cr_assert_eq(decode_sample(logits, 6, 0, 0, 0.9), 1, "temperature 0 is argmax (first maximum)");
    cr_assert_eq(decode_sample(logits, 6, 1, 1, 0.9), 1, "top-k 1 is argmax");
    // top-k 3 keeps {1, 4, 2}; frequencies follow their softmax.
    int counts[6] = {0};
    const int draws = 20000;
    for (int i = 0; i < draws; i++) counts[decode_sample(logits, 6, 1, 3, rng_uniform(1, i, 0, 9))]++;
    cr_assert_eq(counts[0] + counts[3] + counts[5], 0, "a token outside the top 3 was drawn");
    double z = 2 * exp(3.0) + exp(2.5);
    // Binomial standard deviation of a frequency over 20000 draws is <= 0.0036:
    // 0.015 is four of them.
    cr_assert_lt(fabs(counts[1] / (double)draws - exp(3.0) / z), 0.015);
    cr_assert_lt(fabs(counts[2] / (double)draws - exp(2.5) / z), 0.015);
    // Temperature 0.5 sharpens: token 2's share drops.
    int sharp = 0;
    for (int i = 0; i < draws; i++) sharp += decode_sample(logits, 6, 0.5, 0, rng_uniform(2, i, 0, 9)) == 2;
    double z2 = 2 * exp(6.0) + exp(5.0) + exp(2.0) + exp(-2.0) + 1;
    cr_assert_lt(fabs(sharp / (double)draws - exp(5.0) / z2), 0.015);
}
