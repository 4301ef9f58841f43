// The whole model in double precision: every parameter's gradient against
// finite differences, reversible against stored-activation backward, and
// causality of the full stack.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gradcheck.h"
#include "model.h"
#include "model_configs.h"

// The whole model is deeper than one op, so FD error compounds a little:
// eps = 1e-6 in double: measured worst tensor 2.7e-8 (init_std 0.5, see
// model_configs.h); the bound is 1e-7.
#define EPS 1e-6
#define TOL 1e-7

typedef struct {
    Model *m;
    int *tokens, *targets;
} Ctx;
static double loss_f(void *p) {
    Ctx *c = p;
    return model_forward(c->m, c->tokens, c->targets, 5, 1).loss;
}

static void whole_model_gradcheck(Config cfg) {
    Model m;
    model_init(&m, &cfg, backend_cpu());
    int *tokens = calloc(m.T, sizeof(int)), *targets = calloc(m.T, sizeof(int));
    tiny_batch(tokens, targets, m.T, cfg.vocab_size, 1);
    LossStats st = model_forward_backward(&m, tokens, targets, 5);
    cr_assert(st.loss > 1 && st.loss < 10);
    // Finite differences reuse the forward's buckets, as the backward does.
    m.freeze_buckets = 1;
    Ctx c = {&m, tokens, targets};
    double base = loss_f(&c);
    cr_assert_float_eq(base, st.loss, 1e-14, "frozen-bucket forward differs from training forward");
    size_t np = m.layout.n_params;
    real *num = calloc(np, sizeof(real));
    numeric_grad(num, m.params, np, EPS, loss_f, &c);
    double worst = 0;
    for (int t = 0; t < m.layout.n_tensors; t++) {
        const TensorInfo *ti = &m.layout.tensors[t];
        double e = rel_err(m.grads + ti->offset, num + ti->offset, ti->size);
        double gnorm = sqrt(dot_real(num + ti->offset, num + ti->offset, ti->size));
        cr_expect(gnorm > 0 || !strncmp(ti->name, "tok_emb", 7), "%s has no gradient at all", ti->name);
        cr_expect_lt(e, TOL, "%s: relative error %.3g", ti->name, e);
        if (getenv("GRADCHECK_VERBOSE")) cr_log_info("%s %.3g norm %.3g", ti->name, e, gnorm);
        if (e > worst) worst = e;
    }
    cr_log_info("%s: %zu params, worst tensor relative error %.3g", cfg.attn_layers, np, worst);
    free(num);
    free(tokens);
    free(targets);
    model_free(&m);
}

// One reversible block of each kind on its own.
Test(model, gradient_single_lsh_block) { whole_model_gradcheck(tiny_config("lsh", 1)); }
Test(model, gradient_single_local_block) { whole_model_gradcheck(tiny_config("local", 1)); }
Test(model, gradient_lsh_and_local) { whole_model_gradcheck(tiny_config("local,lsh", 4)); }
Test(model, gradient_all_lsh_relu_no_dropout) {
    Config c = tiny_config("lsh", 2);
    c.ff_activation = ACT_RELU;
    c.dropout = 0;
    whole_model_gradcheck(c);
}
Test(model, gradient_full_attention) {
    Config c = tiny_config("local,lsh", 2);
    c.attn_full = 1;
    whole_model_gradcheck(c);
}
Test(model, gradient_stored_activations) {
    Config c = tiny_config("lsh,local", 3);
    c.reversible = 0;
    whole_model_gradcheck(c);
}

// Factorised buckets (n_buckets=2,4: 8 buckets per round from 1 + 2 rotation
// columns; core/lsh_rules.h), reversible and stored.
static Config factorised_config(const char *pattern, int n_layers, const char *n_buckets) {
    Config c = tiny_config(pattern, n_layers);
    char err[256];
    cr_assert_eq(config_set(&c, "n_buckets", n_buckets, err, sizeof err), 0, "%s", err);
    cr_assert_eq(config_finalize(&c, err, sizeof err), 0, "%s", err);
    cr_assert_gt(c.bucket_factors.n, 1);
    return c;
}
Test(model, gradient_factorised_buckets) { whole_model_gradcheck(factorised_config("local,lsh", 2, "2,4")); }
Test(model, gradient_factorised_buckets_stored) {
    Config c = factorised_config("lsh,local", 2, "2,2,2");
    c.reversible = 0;
    whole_model_gradcheck(c);
}

// Attention in passes of one head (attn_head_group=1: weight and gradient
// column slices, per-pass output shares and d LN1 contributions).
Test(model, gradient_head_group_passes) {
    Config c = tiny_config("local,lsh", 2);
    c.attn_head_group = 1;
    whole_model_gradcheck(c);
}
Test(model, gradient_head_group_passes_stored) {
    Config c = tiny_config("lsh,local", 2);
    c.attn_head_group = 1;
    c.reversible = 0;
    whole_model_gradcheck(c);
}

// Reversible backward (reconstructing every layer's inputs) against the
// backward that stores them: the same gradients to double rounding.
Test(model, reversible_matches_stored) {
    double e = reversible_vs_stored("local,lsh", 12, 2);
    cr_log_info("12 layers: reversible vs stored gradient relative error %.3g", e);
    cr_expect_lt(e, 1e-12, "%g", e);
}

// Changing input token j leaves every loss at positions < j unchanged.
// Local and full attention: always. LSH: with the bucket assignment held
// fixed; with fresh hashing a future token's bucket can shift the chunk
// boundaries of the sort, which trax and Hugging Face share (see README).
// Returns the (i < j, j) pairs, j = 1, 1 + stride, ..., whose loss i moved
// by more than tol (tol 0: moved at all, bit for bit); the loss at j itself
// must move.
static int earlier_losses_moved(Config cfg, int freeze, double tol, int stride) {
    Model m;
    model_init(&m, &cfg, backend_cpu());
    int *tokens = calloc(m.T, sizeof(int)), *targets = calloc(m.T, sizeof(int));
    tiny_batch(tokens, targets, m.T, cfg.vocab_size, 3);
    for (int i = 0; i < m.T; i++) targets[i] = i % cfg.vocab_size;  // score every position
    real *before = calloc(m.T, sizeof(real));
    int moved = 0;
    for (int j = 1; j < cfg.seq_len; j += stride) {
        m.freeze_buckets = 0;
        model_forward(&m, tokens, targets, 7, 0);
        memcpy(before, m.host_losses, m.T * sizeof(real));
        m.freeze_buckets = freeze;
        int saved = tokens[j];
        tokens[j] = (saved + 5) % cfg.vocab_size;
        model_forward(&m, tokens, targets, 7, 0);
        tokens[j] = saved;
        for (int i = 0; i < j; i++)
            moved += tol > 0 ? fabs(before[i] - m.host_losses[i]) > tol : before[i] != m.host_losses[i];
        cr_assert_neq(memcmp(before + j, m.host_losses + j, sizeof(real)), 0, "loss at %d did not change", j);
    }
    free(before);
    free(tokens);
    free(targets);
    model_free(&m);
    return moved;
}
static void model_causality(Config cfg, int freeze) {
    cr_assert_eq(earlier_losses_moved(cfg, freeze, 0, 3), 0, "a future token moved an earlier loss");
}
Test(model, causal_local) { model_causality(tiny_config("local", 3), 0); }
Test(model, causal_full_attention) {
    Config c = tiny_config("lsh,local", 2);
    c.attn_full = 1;
    model_causality(c, 0);
}
Test(model, causal_lsh_given_buckets) { model_causality(tiny_config("lsh,local", 3), 1); }

// lsh_form=strict: a query's keys are earlier items of its own bucket, so
// the model is causal with fresh hashing too: a changed token moves no
// earlier position's keys. Not bit for bit: a later item can move a query
// to other columns of its chunk tile, which changes the grouping of its sums
// (1e-13 nats in double; one leaked key changes a loss by ~1e-2).
static Config strict_config(const char *pattern, int n_layers) {
    Config c = tiny_config(pattern, n_layers);
    c.lsh_strict = 1;
    return c;
}
Test(model, causal_strict_lsh_with_fresh_buckets) {
    cr_assert_eq(earlier_losses_moved(strict_config("lsh,local", 3), 0, 1e-13, 3), 0);
}
// The standard form fails that check: some earlier loss moves far above rounding.
Test(model, standard_lsh_is_not_causal_with_fresh_buckets) {
    int moved = earlier_losses_moved(tiny_config("lsh,local", 3), 0, 1e-6, 1);
    cr_expect_gt(moved, 0, "no future token moved an earlier loss by more than 1e-6");
    cr_log_info("standard form: %d (earlier position, later token) pairs moved by > 1e-6", moved);
}
Test(model, gradient_strict_lsh) { whole_model_gradcheck(strict_config("local,lsh", 2)); }
Test(model, gradient_strict_lsh_stored) {
    Config c = strict_config("lsh,local", 2);
    c.reversible = 0;
    whole_model_gradcheck(c);
}
Test(model, gradient_strict_lsh_head_group_passes) {
    Config c = strict_config("lsh", 2);
    c.attn_head_group = 1;
    whole_model_gradcheck(c);
}
Test(model, reversible_matches_stored_strict_lsh) {
    double e = reversible_vs_stored_config(strict_config("local,lsh", 12), 2);
    cr_expect_lt(e, 1e-12, "%g", e);
}
