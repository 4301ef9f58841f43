// hf_dump: one forward and backward of a checkpoint's model on given tokens,
// dumped for tests/hf/test_hf.py to compare with Hugging Face transformers.
// Built twice: build/tests/hf_dump (the float core the program uses) and
// build/tests/hf_dump_f64 (the double-precision core of the *_f64 tests,
// reading the float32 checkpoint into doubles).
//
//   hf_dump CKPT IN OUT
//
// IN (little-endian): int32 B, int32 L (= the checkpoint's seq_len),
// uint32 step (keys the hash rotations), int32 tokens[B*L],
// int32 targets[B*L] (< 0: not scored).
// OUT: records of char name[64], int32 ndim, int32 shape[4], then
// prod(shape) float64 values:
//   loss           []          mean cross-entropy over the scored targets
//   losses         [B, L]      -log p(target) per position (0 where unscored)
//   buckets.<l>    [B, H, R, L] bucket ids of LSH layer l (hashing layers only)
//   rotations.<l>  [H, dh, R, W] its hash rotations at this step (W =
//                  lsh_rotation_width: transformers' random_rotations layout)
//   grad.<tensor>  its shape   d loss / d tensor, e.g. grad.layers.0.attn.w_v
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "checkpoint.h"
#include "lsh_rules.h"
#include "model.h"

static void die(const char *msg, const char *arg) {
    fprintf(stderr, "hf_dump: error: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
    exit(1);
}

static void record(FILE *f, const char *name, int ndim, const int *shape, const double *data) {
    char n[64] = {0};
    snprintf(n, sizeof n, "%s", name);
    int s[4] = {1, 1, 1, 1};
    size_t count = 1;
    for (int i = 0; i < ndim; i++) s[i] = shape[i], count *= (size_t)shape[i];
    if (fwrite(n, 1, 64, f) != 64 || fwrite(&ndim, sizeof ndim, 1, f) != 1 || fwrite(s, sizeof(int), 4, f) != 4 ||
        fwrite(data, sizeof(double), count, f) != count)
        die("cannot write the output", name);
}

static double *to_double(const real *x, size_t n) {
    double *d = malloc((n ? n : 1) * sizeof *d);
    if (!d) die("out of memory", NULL);
    for (size_t i = 0; i < n; i++) d[i] = (double)x[i];
    return d;
}

int main(int argc, char **argv) {
    if (argc != 4) die("usage: hf_dump CKPT IN OUT", NULL);
    char err[2048];
    Config c;
    long step_ckpt;
    if (ckpt_read_config(argv[1], &c, &step_ckpt, err, sizeof err)) die(err, NULL);
    FILE *in = fopen(argv[2], "rb");
    if (!in) die("cannot open", argv[2]);
    int B, L;
    uint32_t step;
    if (fread(&B, sizeof B, 1, in) != 1 || fread(&L, sizeof L, 1, in) != 1 || fread(&step, sizeof step, 1, in) != 1)
        die("short input header", argv[2]);
    if (B < 1 || L != c.seq_len) die("input L must equal the checkpoint's seq_len", argv[2]);
    const size_t T = (size_t)B * L;
    int *tokens = malloc(T * sizeof *tokens), *targets = malloc(T * sizeof *targets);
    if (!tokens || !targets) die("out of memory", NULL);
    if (fread(tokens, sizeof *tokens, T, in) != T || fread(targets, sizeof *targets, T, in) != T)
        die("short input", argv[2]);
    fclose(in);
    c.batch = B;
    c.sp = 1;
    if (config_finalize(&c, err, sizeof err)) die(err, NULL);
    Model m;
    model_init(&m, &c, backend_cpu());
    if (ckpt_load(argv[1], &m, NULL, err, sizeof err)) die(err, NULL);
    LossStats st = model_forward_backward(&m, tokens, targets, step);

    FILE *out = fopen(argv[3], "wb");
    if (!out) die("cannot create", argv[3]);
    record(out, "loss", 0, NULL, &st.loss);
    int shape[4] = {B, L};
    double *losses = to_double(m.host_losses, T);
    record(out, "losses", 2, shape, losses);
    free(losses);
    for (int l = 0; l < c.n_layers; l++) {
        if (!m.buckets[l]) continue;
        int bs[4] = {B, c.n_heads, c.n_hashes, L};
        size_t n = (size_t)B * c.n_heads * c.n_hashes * L;
        uint16_t *host = malloc(n * sizeof *host);
        double *d = malloc(n * sizeof *d);
        if (!host || !d) die("out of memory", NULL);
        m.be->download(host, m.buckets[l], n * sizeof *host);
        for (size_t i = 0; i < n; i++) d[i] = host[i];
        char name[64];
        snprintf(name, sizeof name, "buckets.%d", l);
        record(out, name, 4, bs, d);
        free(host);
        free(d);
        // The rotations cpu_lsh_hash drew (element e of head h: [dh, R, W] row-major).
        const int W = lsh_rotation_width(c.n_buckets, c.bucket_factors);
        int rs[4] = {c.n_heads, c.d_head, c.n_hashes, W};
        const size_t per_head = (size_t)c.d_head * c.n_hashes * W;
        double *rot = malloc((size_t)c.n_heads * per_head * sizeof *rot);
        if (!rot) die("out of memory", NULL);
        for (int h = 0; h < c.n_heads; h++)
            for (size_t e = 0; e < per_head; e++)
                rot[h * per_head + e] = lsh_rotation_element(c.seed, (uint64_t)h, e, step, (uint32_t)l);
        snprintf(name, sizeof name, "rotations.%d", l);
        record(out, name, 4, rs, rot);
        free(rot);
    }
    real *grads = malloc(m.layout.n_params * sizeof *grads);
    if (!grads) die("out of memory", NULL);
    model_get_grads(&m, grads);
    for (int t = 0; t < m.layout.n_tensors; t++) {
        const TensorInfo *ti = &m.layout.tensors[t];
        double *d = to_double(grads + ti->offset, ti->size);
        char name[MAX_TENSOR_NAME + 8];  // record() keeps 63 bytes: every layout name fits
        snprintf(name, sizeof name, "grad.%s", ti->name);
        record(out, name, ti->ndim, ti->shape, d);
        free(d);
    }
    if (fclose(out) != 0) die("cannot write", argv[3]);
    free(grads);
    free(tokens);
    free(targets);
    model_free(&m);
    return 0;
}
