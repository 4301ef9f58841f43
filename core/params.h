// Parameter layout: every tensor of the model is a named slice of one flat
// buffer (llm.c style), so parameters, gradients and both AdamW moments are
// four allocations with the same offsets, and checkpoints can name each tensor.
#pragma once
#include <stddef.h>

#include "config.h"
#include "real.h"

#define MAX_TENSOR_NAME 64

typedef struct {
    char name[MAX_TENSOR_NAME];  // e.g. "layers.3.attn.w_qk"
    int ndim;
    int shape[2];
    size_t offset;               // in elements, into the flat buffer
    size_t size;                 // elements
    int decay;                   // 1: AdamW weight decay applies (weight matrices)
    double init_std;             // < 0: constant init_value instead
    double init_value;
} TensorInfo;

// Offsets (into the tensor table) of one layer's tensors. Absent ones are -1.
typedef struct {
    int ln1_g, ln1_b;
    int w_qk, w_q, w_k, w_v, w_o;  // LSH layers use w_qk; local layers w_q, w_k
    int ln2_g, ln2_b;
    int ff_w1, ff_b1, ff_w2, ff_b2;
} LayerTensors;

typedef struct {
    TensorInfo *tensors;
    int n_tensors;
    size_t n_params;   // total elements
    int tok_emb;       // [vocab, d]
    int axial[MAX_AXES];  // [n_a, d_a]
    LayerTensors layers[MAX_LAYERS];
    int lnf_g, lnf_b;  // [2d]
    int out_w, out_b;  // [2d, vocab], [vocab]
} ParamLayout;

// Build the layout of a finalized config.
void param_layout_build(ParamLayout *p, const Config *c);
void param_layout_free(ParamLayout *p);

// Fill a host buffer of n_params with the initial values, a pure function of
// (seed, tensor, element): identical on every machine and thread count.
void param_init_host(const ParamLayout *p, real *params, unsigned long long seed);
// The same values for tensor t alone, into dst[0 .. its size).
void param_init_tensor(const ParamLayout *p, int t, real *dst, unsigned long long seed);

// Pointer to a tensor inside a flat buffer.
static inline real *tensor_ptr(real *base, const ParamLayout *p, int t) {
    return base + p->tensors[t].offset;
}
