#include "params.h"

#include <stdio.h>
#include <string.h>

#include "rng.h"
#include "util.h"

// Appends a tensor; returns its index. Offsets are rounded up to 16 elements so
// every tensor starts 64-byte aligned (vector loads, coalesced device access).
static int add(ParamLayout *p, int cap, const char *name, int rows, int cols, int decay, double std,
               double value) {
    if (p->n_tensors >= cap) FATAL(NULL, "parameter table overflow (%d tensors)", cap);
    TensorInfo *t = &p->tensors[p->n_tensors];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = cols > 0 ? 2 : 1;
    t->shape[0] = rows;
    t->shape[1] = cols > 0 ? cols : 1;
    t->size = (size_t)rows * (size_t)(cols > 0 ? cols : 1);
    t->offset = (p->n_params + 15) & ~(size_t)15;
    t->decay = decay;
    t->init_std = std;
    t->init_value = value;
    p->n_params = t->offset + t->size;
    return p->n_tensors++;
}

void param_layout_build(ParamLayout *p, const Config *c) {
    memset(p, 0, sizeof *p);
    int cap = 8 + c->n_axes + 14 * c->n_layers;
    p->tensors = checked_calloc((size_t)cap, sizeof(TensorInfo));
    const int d = c->d_model, hd = c->n_heads * c->d_head, V = c->vocab_size;
    const double std = c->init_std;
    char name[MAX_TENSOR_NAME];
    // Embeddings: N(0, emb_init_std) and N(0, axial_init_std); the first
    // LayerNorm of every block removes their common scale, not their ratio.
    p->tok_emb = add(p, cap, "tok_emb", V, d, 0, c->emb_init_std, 0);
    for (int a = 0; a < c->n_axes; a++) {
        snprintf(name, sizeof name, "axial.%d", a);
        p->axial[a] = add(p, cap, name, c->axial_shape[a], c->axial_dims[a], 0, c->axial_init_std, 0);
    }
    for (int l = 0; l < c->n_layers; l++) {
        LayerTensors *L = &p->layers[l];
        int lsh = c->layer_kind[l] == ATTN_LSH;
#define T(field, suffix, rows, cols, decay, s, v)                     \
    snprintf(name, sizeof name, "layers.%d.%s", l, suffix);          \
    L->field = add(p, cap, name, rows, cols, decay, s, v)
        T(ln1_g, "ln1.g", d, 0, 0, -1, 1.0);
        T(ln1_b, "ln1.b", d, 0, 0, -1, 0.0);
        L->w_qk = L->w_q = L->w_k = -1;
        if (lsh) {
            T(w_qk, "attn.w_qk", d, hd, 1, std, 0);
        } else {
            T(w_q, "attn.w_q", d, hd, 1, std, 0);
            T(w_k, "attn.w_k", d, hd, 1, std, 0);
        }
        T(w_v, "attn.w_v", d, hd, 1, std, 0);
        T(w_o, "attn.w_o", hd, d, 1, std, 0);
        T(ln2_g, "ln2.g", d, 0, 0, -1, 1.0);
        T(ln2_b, "ln2.b", d, 0, 0, -1, 0.0);
        T(ff_w1, "ff.w1", d, c->d_ff, 1, std, 0);
        T(ff_b1, "ff.b1", c->d_ff, 0, 0, -1, 0.0);
        T(ff_w2, "ff.w2", c->d_ff, d, 1, std, 0);
        T(ff_b2, "ff.b2", d, 0, 0, -1, 0.0);
#undef T
    }
    p->lnf_g = add(p, cap, "lnf.g", 2 * d, 0, 0, -1, 1.0);
    p->lnf_b = add(p, cap, "lnf.b", 2 * d, 0, 0, -1, 0.0);
    p->out_w = add(p, cap, "out.w", 2 * d, V, 1, std, 0);
    p->out_b = add(p, cap, "out.b", V, 0, 0, -1, 0.0);
}

void param_layout_free(ParamLayout *p) {
    free(p->tensors);
    memset(p, 0, sizeof *p);
}

void param_init_tensor(const ParamLayout *p, int t, real *dst, unsigned long long seed) {
    const TensorInfo *ti = &p->tensors[t];
    for (size_t i = 0; i < ti->size; i++)
        dst[i] = ti->init_std < 0 ? (real)ti->init_value
                                  : (real)(ti->init_std * rng_normal(seed, i, 0, rng_tag(RNG_INIT, (uint32_t)t, 0)));
}

void param_init_host(const ParamLayout *p, real *params, unsigned long long seed) {
    memset(params, 0, p->n_params * sizeof(real));
    for (int t = 0; t < p->n_tensors; t++) param_init_tensor(p, t, params + p->tensors[t].offset, seed);
}
