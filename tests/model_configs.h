// Tiny model configs shared by the model tests.
#pragma once
#include <criterion/criterion.h>
#include <stdio.h>

#include "config.h"
#include "gradcheck.h"
#include "model.h"

// A config small enough for full finite differences but with every feature
// on: LSH (2 rounds, several chunks) and local layers, dropout, GELU, uneven
// feed-forward and loss chunks, 2 sequences. init_std 0.5 makes every layer
// matter to the loss: with the default 0.02 the layers' gradients are ~1e-5,
// where finite differences in double only resolve ~1e-10 absolute.
static inline Config tiny_config(const char *pattern, int n_layers) {
    Config c;
    config_defaults(&c);
    const char *sets[] = {"vocab_size=16", "d_model=8", "d_ff=12", "n_heads=2", "d_head=4", "seq_len=16",
                          "lsh_chunk=4", "local_chunk=4", "n_hashes=2", "n_buckets=4", "axial_shape=4,4",
                          "axial_dims=5,3", "batch=2", "dropout=0.1", "ff_chunk=12", "loss_chunk=10",
                          "ff_activation=gelu", "dup_alphabet=8", "init_std=0.5", NULL};
    char err[256];
    for (int i = 0; sets[i]; i++) cr_assert_eq(config_set_pair(&c, sets[i], err, sizeof err), 0, "%s", err);
    snprintf(c.attn_layers, sizeof c.attn_layers, "%s", pattern);
    c.n_layers = n_layers;
    cr_assert_eq(config_finalize(&c, err, sizeof err), 0, "%s", err);
    return c;
}

// Deterministic tokens and targets (a few targets ignored).
static inline void tiny_batch(int *tokens, int *targets, int T, int V, unsigned salt) {
    for (int i = 0; i < T; i++) {
        tokens[i] = (int)((i * 7u + salt * 13u + (unsigned)(i * i) * 3u) % (unsigned)V);
        targets[i] = i % 5 == 3 ? -1 : (int)((i * 11u + salt) % (unsigned)V);
    }
}

// Relative error between the gradients of the reversible backward and the
// stored-activation backward of the same model on the same batch.
static inline double reversible_vs_stored_config(Config a, unsigned salt) {
    Config b = a;
    b.reversible = 0;
    Model ma, mb;
    model_init(&ma, &a, backend_cpu());
    model_init(&mb, &b, backend_cpu());
    int *tokens = calloc(ma.T, sizeof(int)), *targets = calloc(ma.T, sizeof(int));
    tiny_batch(tokens, targets, ma.T, a.vocab_size, salt);
    LossStats la = model_forward_backward(&ma, tokens, targets, 3);
    LossStats lb = model_forward_backward(&mb, tokens, targets, 3);
    cr_assert_eq(la.loss, lb.loss, "forward passes differ");
    double e = rel_err(ma.grads, mb.grads, ma.layout.n_params);
    model_free(&ma);
    model_free(&mb);
    free(tokens);
    free(targets);
    return e;
}
static inline double reversible_vs_stored(const char *pattern, int n_layers, unsigned salt) {
    return reversible_vs_stored_config(tiny_config(pattern, n_layers), salt);
}
