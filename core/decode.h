// Autoregressive decoding: next-token logits one position at a time, with a
// per-layer cache, for `reformer sample`.
//
// Decoding attention (REFORMER.md has only the training form): training LSH
// sorts the whole sequence by bucket and cuts it into chunks, so a query's
// keys depend on where later tokens hash (README, "LSH is causal only given
// its buckets") and no cache of earlier positions could stay valid as the
// text grows. Decoding therefore uses the strictly causal form of the same
// hashing, as trax's predict mode does: in round r a query at position i
// attends to every earlier position j <= i whose round-r bucket equals its
// own (its own key self-masked at -1e5 as in training), with shared-QK keys
// normalised as in training, and the rounds are combined by their
// logsumexps. With lsh_form=strict the training form itself is this causal
// form, restricted to the newest lsh_strict_window(m) items of the bucket
// (core/lsh_rules.h), so decoding computes what training computes. Local layers attend to their own and the previous chunk exactly
// as in training, and full attention (one chunk) to the whole prefix, so a
// model without hashed LSH layers decodes exactly what training computes.
//
// The cache holds, per layer, what later positions need of earlier ones:
// keys and values (a ring of two chunks for local layers), and for hashed LSH
// layers each position's buckets with a per-bucket chain of earlier positions.
// Every position is computed once. decode_logits_uncached recomputes a whole
// prefix from scratch, layer by layer, scanning every earlier position: the
// reference the cache is tested against (bit for bit: both use the same row
// operations in the same order).
//
// Host memory, CPU backend (row operations through backend_cpu()).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "params.h"
#include "real.h"

// The hash rotations of decoding (and evaluation) are those of this step key:
// a fixed draw, never a training step's (steps are < 2^31).
#define INFERENCE_HASH_STEP 0xFFFFFFF0u

typedef struct {
    Config cfg;
    const ParamLayout *layout;
    const real *params;      // host [n_params]
    int L, d, H, dh, HD, R, nb, V;
    int n;                   // positions decoded so far
    // Per layer.
    int window[MAX_LAYERS];  // cached key/value rows: L, or 2 chunks (local layers)
    real *keys[MAX_LAYERS];  // [window, HD]: local keys, or normalised shared-QK keys
    real *values[MAX_LAYERS];   // [window, HD]
    real *rotations[MAX_LAYERS];  // hashed LSH layers: [H, dh, R * nb/2]
    uint16_t *buckets[MAX_LAYERS];  // [L, H, R]
    int *chain[MAX_LAYERS];  // [L, H, R]: previous position in the same bucket, or -1
    int *last[MAX_LAYERS];   // [H, R, nb]: newest position in each bucket, or -1
    // One position's workspace.
    real *x1, *x2, *ln, *mean, *rstd, *q, *o, *h, *a, *f, *head_in, *head_ln;
    real *proj;              // [nb/2]: one round's projections while hashing
    real *scores, *round_out, *round_lse;
    int *keys_idx;           // [L]
} Decoder;

// Hashed LSH layer: its chunk is shorter than the sequence (else it is full
// shared-QK attention and has no buckets).
int decode_layer_hashed(const Config *c, int layer);

// c: finalized; params: host [layout->n_params], kept by pointer.
void decoder_init(Decoder *dec, const Config *c, const ParamLayout *layout, const real *params);
void decoder_free(Decoder *dec);
// Forget every position (start a new text).
void decoder_reset(Decoder *dec);

// Append token at position dec->n (< seq_len) and write the logits of the
// next token to logits [vocab_size].
void decoder_step(Decoder *dec, int token, real *logits);

// Reference without a cache: logits [n, vocab_size] of every position of
// tokens[0..n), computed from scratch layer by layer.
void decode_logits_uncached(Decoder *dec, const int *tokens, int n, real *logits);

// One query's attention over earlier keys (exposed for tests): keys_idx
// [n_keys] ascending positions into keys/values (row stride ld, this head's
// columns at offset 0); self (a position in keys_idx, or -1) gets the logit
// MASK_SELF. out [dh] = softmax(scale * q . k) v; returns the logsumexp.
real decode_attend(real *out, real *scores, const real *q, const real *keys, const real *values, size_t ld,
                   const int *keys_idx, int n_keys, int self, int dh, real scale);

// Round-r buckets of one head's shared-QK row qk [dh] under rotations
// [dh, R * nb/2] (argmax over [p ; -p], first maximum wins, as training hashes).
// proj: scratch [nb/2].
void decode_hash(uint16_t *buckets, real *proj, const real *qk, const real *rotations, int dh, int R, int nb);

// Continue a sequence: the decoder is reset and steps through tokens[0 ..
// n_given), then tokens[n_given .. n_total) are sampled in turn, token n drawn
// from the logits after tokens[n - 1] with the uniform draw
// rng_uniform(seed, n, stream, RNG_SAMPLE) (temperature, top_k as in
// decode_sample): same seed and stream, same tokens. n_total <= seq_len + 1
// (the last token is sampled, never stepped). first_logits (NULL: not
// wanted) receives [vocab_size] logits of token n_given; logits is scratch
// [vocab_size]. Returns 0, or the first position whose logits were not finite
// (a diverged model; tokens from there on are unset).
int decode_continue(Decoder *dec, int *tokens, int n_given, int n_total, uint64_t seed, uint32_t stream,
                    double temperature, int top_k, real *logits, real *first_logits);

// Sample a token from logits [V]: temperature 0 is argmax; top_k > 0 keeps
// the k largest logits. u in [0, 1) is the uniform draw.
int decode_sample(const real *logits, int V, double temperature, int top_k, double u);
