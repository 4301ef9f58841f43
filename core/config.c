#include "config.h"

#define DEFAULT_CHUNK 64
#define MIN_INT(a, b) ((a) < (b) ? (a) : (b))

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const CONFIG_KEYS[] = {
    "vocab_size", "d_model", "d_ff", "n_heads", "d_head", "n_layers", "attn_layers", "attn",
    "lsh_chunk", "local_chunk", "n_hashes", "n_buckets", "axial_shape", "axial_dims",
    "ff_chunk", "loss_chunk", "attn_head_group", "ff_activation", "ln_eps", "dropout", "init_std", "reversible",
    "seq_len", "batch", "sp", "lr", "warmup", "steps", "schedule", "lr_min", "weight_decay",
    "beta1", "beta2", "adam_eps", "clip", "seed", "data", "data_format", "split_fractions",
    "cross_docs", "dup_alphabet", "out_dir", "device", "precision", "log_every", "ckpt_every", "keep_ckpts",
    "eval_every", "eval_windows", NULL};

const char *const DATA_FORMATS[] = {"auto", "text", "enwik8", "pg19", "tokens", "dup", "random", NULL};

// param_layout_build reads exactly these (seq_len through the automatic
// axial shape; attn_layers through the per-layer kind: w_qk or w_q/w_k).
const char *const CONFIG_SHAPE_KEYS[] = {
    "vocab_size", "d_model", "d_ff", "n_heads", "d_head", "n_layers", "attn_layers",
    "seq_len", "axial_shape", "axial_dims", NULL};

void config_defaults(Config *c) {
    memset(c, 0, sizeof *c);
    c->vocab_size = 256;
    c->d_model = 128;
    c->d_ff = 512;
    c->n_heads = 4;
    c->d_head = 0;
    c->n_layers = 4;
    snprintf(c->attn_layers, sizeof c->attn_layers, "local,lsh");
    c->attn_full = 0;
    c->lsh_chunk = 0;    // auto: see config_finalize
    c->local_chunk = 0;
    c->n_hashes = 2;
    c->n_buckets = 0;
    c->n_axes = 2;
    c->ff_chunk = 1024;
    c->loss_chunk = 1024;
    c->ff_activation = ACT_GELU;
    c->ln_eps = 1e-6;  // trax; HF uses 1e-12
    c->dropout = 0.0;
    c->init_std = 0.02;
    c->reversible = 1;
    c->seq_len = 512;
    c->batch = 4;
    c->sp = 1;
    c->lr = 2e-3;
    c->warmup = 50;
    c->steps = 300;
    c->schedule = SCHED_COSINE;
    c->lr_min = 1e-4;
    c->weight_decay = 0.0;
    c->beta1 = 0.9;
    c->beta2 = 0.98;
    c->adam_eps = 1e-9;
    c->clip = 1.0;
    c->seed = 1337;
    snprintf(c->data, sizeof c->data, "data/tinyshakespeare.txt");
    snprintf(c->data_format, sizeof c->data_format, "auto");
    c->split_fractions[0] = 0.9;
    c->split_fractions[1] = 0.05;
    c->split_fractions[2] = 0.05;
    c->cross_docs = 0;
    c->dup_alphabet = 128;
    snprintf(c->out_dir, sizeof c->out_dir, "runs/default");
    snprintf(c->device, sizeof c->device, "cpu");
    c->precision = PRECISION_FP32;
    c->log_every = 1;
    c->ckpt_every = 1000;
    c->keep_ckpts = 3;
    c->eval_every = 100;
    c->eval_windows = 64;
}

static int fail(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int parse_int(const char *key, const char *s, long lo, long hi, int *out, char *err,
                     size_t errlen) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno)
        return fail(err, errlen, "%s: '%s' is not an integer", key, s);
    if (v < lo || v > hi)
        return fail(err, errlen, "%s: %ld is out of range [%ld, %ld]", key, v, lo, hi);
    *out = (int)v;
    return 0;
}

static int parse_double(const char *key, const char *s, double lo, double hi, double *out,
                        char *err, size_t errlen) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno || v != v)
        return fail(err, errlen, "%s: '%s' is not a number", key, s);
    if (v < lo || v > hi) return fail(err, errlen, "%s: %g is out of range [%g, %g]", key, v, lo, hi);
    *out = v;
    return 0;
}

static int parse_list(const char *key, const char *s, int *vals, int *count, char *err,
                      size_t errlen) {
    char buf[256];
    if (strlen(s) >= sizeof buf) return fail(err, errlen, "%s: value too long", key);
    snprintf(buf, sizeof buf, "%s", s);
    int n = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n == MAX_AXES) return fail(err, errlen, "%s: at most %d entries", key, MAX_AXES);
        if (parse_int(key, tok, 1, INT_MAX, &vals[n], err, errlen)) return -1;
        n++;
    }
    if (n == 0) return fail(err, errlen, "%s: empty list", key);
    *count = n;
    return 0;
}

static int parse_string(const char *key, const char *s, char *dst, size_t cap, char *err,
                        size_t errlen) {
    if (strlen(s) >= cap) return fail(err, errlen, "%s: value longer than %zu characters", key, cap - 1);
    if (s[0] == '\0') return fail(err, errlen, "%s: empty value", key);
    snprintf(dst, cap, "%s", s);
    return 0;
}

static int parse_bool(const char *key, const char *s, int *out, char *err, size_t errlen) {
    if (!strcasecmp(s, "1") || !strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on")) *out = 1;
    else if (!strcasecmp(s, "0") || !strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcasecmp(s, "off")) *out = 0;
    else return fail(err, errlen, "%s: '%s' is not a boolean (use 1 or 0)", key, s);
    return 0;
}

// "train,validation,test": three non-negative shares summing to 1 (to 1e-9,
// so decimal fractions like 0.9,0.05,0.05 pass), a positive train share.
static int parse_split_fractions(const char *s, double out[3], char *err, size_t errlen) {
    const char *key = "split_fractions";
    double f[3], sum = 0;
    const char *p = s;
    for (int i = 0; i < 3; i++) {
        char *end;
        errno = 0;
        f[i] = strtod(p, &end);
        if (end == p || errno || f[i] != f[i] || (*end != (i < 2 ? ',' : '\0')))
            return fail(err, errlen, "%s: '%s' is not three comma-separated numbers (train,validation,test)", key, s);
        if (f[i] < 0) return fail(err, errlen, "%s: '%s' has a negative share", key, s);
        sum += f[i];
        p = end + 1;
    }
    if (fabs(sum - 1.0) > 1e-9) return fail(err, errlen, "%s: '%s' sums to %.17g, not 1", key, s, sum);
    if (f[0] <= 0) return fail(err, errlen, "%s: '%s' leaves nothing to train on", key, s);
    memcpy(out, f, sizeof f);
    return 0;
}

#define IS(k) (strcmp(key, (k)) == 0)
#define INT(k, field, lo, hi) if (IS(k)) return parse_int(key, value, lo, hi, &c->field, err, errlen)
#define DBL(k, field, lo, hi) if (IS(k)) return parse_double(key, value, lo, hi, &c->field, err, errlen)

int config_set(Config *c, const char *key, const char *value, char *err, size_t errlen) {
    INT("vocab_size", vocab_size, 2, 1 << 20);
    INT("d_model", d_model, 1, 1 << 16);
    INT("d_ff", d_ff, 1, 1 << 20);
    INT("n_heads", n_heads, 1, 1024);
    INT("d_head", d_head, 0, 1 << 14);
    INT("n_layers", n_layers, 1, MAX_LAYERS);
    INT("lsh_chunk", lsh_chunk, 0, 1 << 20);
    INT("local_chunk", local_chunk, 0, 1 << 20);
    INT("n_hashes", n_hashes, 1, 64);
    INT("n_buckets", n_buckets, 0, 65536);
    INT("ff_chunk", ff_chunk, 1, INT_MAX);
    INT("loss_chunk", loss_chunk, 1, INT_MAX);
    INT("attn_head_group", attn_head_group, 0, 1024);
    INT("seq_len", seq_len, 1, 1 << 28);
    INT("batch", batch, 1, 1 << 20);
    INT("sp", sp, 1, 4096);
    INT("warmup", warmup, 0, INT_MAX);
    INT("steps", steps, 0, INT_MAX);
    INT("dup_alphabet", dup_alphabet, 2, 1 << 20);
    INT("log_every", log_every, 1, INT_MAX);
    INT("ckpt_every", ckpt_every, 0, INT_MAX);
    INT("keep_ckpts", keep_ckpts, 0, INT_MAX);
    INT("eval_every", eval_every, 0, INT_MAX);
    INT("eval_windows", eval_windows, 0, INT_MAX);
    DBL("ln_eps", ln_eps, 1e-30, 1.0);
    DBL("dropout", dropout, 0.0, 0.99);
    DBL("init_std", init_std, 0.0, 10.0);
    DBL("lr", lr, 0.0, 10.0);
    DBL("lr_min", lr_min, 0.0, 10.0);
    DBL("weight_decay", weight_decay, 0.0, 10.0);
    DBL("beta1", beta1, 0.0, 0.999999);
    DBL("beta2", beta2, 0.0, 0.99999999);
    DBL("adam_eps", adam_eps, 1e-30, 1.0);
    DBL("clip", clip, 0.0, 1e30);
    if (IS("reversible")) return parse_bool(key, value, &c->reversible, err, errlen);
    if (IS("cross_docs")) return parse_bool(key, value, &c->cross_docs, err, errlen);
    if (IS("split_fractions")) return parse_split_fractions(value, c->split_fractions, err, errlen);
    if (IS("data_format")) {
        for (int i = 0; DATA_FORMATS[i]; i++)
            if (!strcmp(value, DATA_FORMATS[i])) return snprintf(c->data_format, sizeof c->data_format, "%s", value), 0;
        return fail(err, errlen, "data_format: '%s' is not one of auto, text, enwik8, pg19, tokens, dup, random", value);
    }
    if (IS("attn_layers")) return parse_string(key, value, c->attn_layers, sizeof c->attn_layers, err, errlen);
    if (IS("data")) return parse_string(key, value, c->data, sizeof c->data, err, errlen);
    if (IS("out_dir")) return parse_string(key, value, c->out_dir, sizeof c->out_dir, err, errlen);
    if (IS("attn")) {
        if (!strcmp(value, "full")) c->attn_full = 1;
        else if (!strcmp(value, "pattern")) c->attn_full = 0;
        else return fail(err, errlen, "attn: '%s' is not one of pattern, full", value);
        return 0;
    }
    if (IS("ff_activation")) {
        if (!strcmp(value, "relu")) c->ff_activation = ACT_RELU;
        else if (!strcmp(value, "gelu")) c->ff_activation = ACT_GELU;
        else return fail(err, errlen, "ff_activation: '%s' is not one of relu, gelu", value);
        return 0;
    }
    if (IS("schedule")) {
        if (!strcmp(value, "rsqrt")) c->schedule = SCHED_RSQRT;
        else if (!strcmp(value, "cosine")) c->schedule = SCHED_COSINE;
        else if (!strcmp(value, "constant")) c->schedule = SCHED_CONSTANT;
        else return fail(err, errlen, "schedule: '%s' is not one of rsqrt, cosine, constant", value);
        return 0;
    }
    if (IS("device")) {
        if (strcmp(value, "cpu") && strcmp(value, "cuda"))
            return fail(err, errlen, "device: '%s' is not one of cpu, cuda", value);
        snprintf(c->device, sizeof c->device, "%s", value);
        return 0;
    }
    if (IS("precision")) {
        if (!strcmp(value, "fp32")) c->precision = PRECISION_FP32;
        else if (!strcmp(value, "bf16")) c->precision = PRECISION_BF16;
        else return fail(err, errlen, "precision: '%s' is not one of fp32, bf16", value);
        return 0;
    }
    if (IS("seed")) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(value, &end, 10);
        if (end == value || *end || errno || value[0] == '-')
            return fail(err, errlen, "seed: '%s' is not a non-negative integer", value);
        c->seed = (uint64_t)v;
        return 0;
    }
    if (IS("axial_shape")) {
        int n;
        if (parse_list(key, value, c->axial_shape, &n, err, errlen)) return -1;
        c->axial_shape_set = n;
        return 0;
    }
    if (IS("axial_dims")) {
        int n;
        if (parse_list(key, value, c->axial_dims, &n, err, errlen)) return -1;
        c->axial_dims_set = n;
        return 0;
    }
    return fail(err, errlen, "%s: unknown config key (see `reformer help` for the list)", key);
}

int config_set_pair(Config *c, const char *pair, char *err, size_t errlen) {
    const char *eq = strchr(pair, '=');
    if (!eq || eq == pair) return fail(err, errlen, "'%s': expected key=value", pair);
    char key[128];
    size_t klen = (size_t)(eq - pair);
    if (klen >= sizeof key) return fail(err, errlen, "'%.40s...': key too long", pair);
    memcpy(key, pair, klen);
    key[klen] = '\0';
    return config_set(c, key, eq + 1, err, errlen);
}

// Largest divisor of n not above sqrt(n): a near-square axial factorisation.
static int near_square_divisor(int n) {
    int best = 1;
    for (int f = 1; (long)f * f <= n; f++)
        if (n % f == 0) best = f;
    return best;
}

int config_layer_chunk(const Config *c, int layer) {
    if (c->attn_full) return c->seq_len;
    int m = c->layer_kind[layer] == ATTN_LSH ? c->lsh_chunk : c->local_chunk;
    return m >= c->seq_len ? c->seq_len : m;
}

int config_count_lsh_layers(const Config *c) {
    int n = 0;
    for (int l = 0; l < c->n_layers; l++) n += c->layer_kind[l] == ATTN_LSH;
    return n;
}

// Largest divisor of n not above cap: the automatic chunk length, so that
// any seq_len works without padding (a prime length gets chunks of 1).
static int largest_divisor_upto(int n, int cap) {
    for (int f = MIN_INT(cap, n); f > 1; f--)
        if (n % f == 0) return f;
    return 1;
}

int config_finalize(Config *c, char *err, size_t errlen) {
    if (c->lsh_chunk == 0) c->lsh_chunk = largest_divisor_upto(c->seq_len, DEFAULT_CHUNK);
    if (c->local_chunk == 0) c->local_chunk = largest_divisor_upto(c->seq_len, DEFAULT_CHUNK);
    // Heads.
    if (c->d_head == 0) {
        if (c->d_model % c->n_heads)
            return fail(err, errlen, "n_heads: %d heads do not divide d_model=%d (or set d_head)",
                        c->n_heads, c->d_model);
        c->d_head = c->d_model / c->n_heads;
    }
    // Sequence parallelism splits heads and positions evenly.
    if (c->n_heads % c->sp)
        return fail(err, errlen, "sp: %d does not divide n_heads=%d", c->sp, c->n_heads);
    if (c->seq_len % c->sp)
        return fail(err, errlen, "sp: %d does not divide seq_len=%d", c->sp, c->seq_len);
    // Attention passes: groups of heads (the sequence-parallel exchange works
    // on all of a rank's heads at once).
    if (c->attn_head_group > 0 && c->n_heads % c->attn_head_group)
        return fail(err, errlen, "attn_head_group: %d does not divide n_heads=%d", c->attn_head_group, c->n_heads);
    if (c->attn_head_group > 0 && c->sp > 1 && c->attn_head_group != c->n_heads / c->sp)
        return fail(err, errlen, "attn_head_group: with sp=%d attention runs on all %d heads of a rank at once; "
                    "leave it 0", c->sp, c->n_heads / c->sp);
    // Attention pattern, repeated over the layers.
    AttnKind pattern[MAX_LAYERS];
    int n_pattern = 0;
    char buf[sizeof c->attn_layers];
    snprintf(buf, sizeof buf, "%s", c->attn_layers);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (n_pattern == MAX_LAYERS) return fail(err, errlen, "attn_layers: more than %d entries", MAX_LAYERS);
        if (!strcmp(tok, "lsh")) pattern[n_pattern++] = ATTN_LSH;
        else if (!strcmp(tok, "local")) pattern[n_pattern++] = ATTN_LOCAL;
        else return fail(err, errlen, "attn_layers: '%s' is not one of lsh, local", tok);
    }
    if (n_pattern == 0) return fail(err, errlen, "attn_layers: empty pattern");
    for (int l = 0; l < c->n_layers; l++) c->layer_kind[l] = pattern[l % n_pattern];
    int has_lsh = config_count_lsh_layers(c) > 0, has_local = config_count_lsh_layers(c) < c->n_layers;

    // Sequence length against chunking (full attention has no chunks).
    if (!c->attn_full) {
        if (has_lsh && c->seq_len > c->lsh_chunk && c->seq_len % c->lsh_chunk)
            return fail(err, errlen, "lsh_chunk: seq_len=%d is not a multiple of lsh_chunk=%d",
                        c->seq_len, c->lsh_chunk);
        if (has_local && c->seq_len > c->local_chunk && c->seq_len % c->local_chunk)
            return fail(err, errlen, "local_chunk: seq_len=%d is not a multiple of local_chunk=%d",
                        c->seq_len, c->local_chunk);
    }
    // Buckets: a chunk holds about two buckets (REFORMER.md, LSH step 3).
    if (c->n_buckets == 0) {
        int chunks = c->seq_len / c->lsh_chunk;
        int nb = 2;
        while (nb * 2 <= 2 * chunks && nb * 2 <= 65536) nb *= 2;
        c->n_buckets = nb;
    } else if (c->n_buckets % 2 || c->n_buckets < 2) {
        return fail(err, errlen, "n_buckets: %d must be even and at least 2", c->n_buckets);
    }
    // Axial position embeddings.
    if (c->axial_shape_set) c->n_axes = c->axial_shape_set;
    else if (c->axial_dims_set) c->n_axes = c->axial_dims_set;
    else c->n_axes = 2;
    if (c->axial_shape_set && c->axial_dims_set && c->axial_shape_set != c->axial_dims_set)
        return fail(err, errlen, "axial_dims: %d entries but axial_shape has %d", c->axial_dims_set,
                    c->axial_shape_set);
    if (!c->axial_shape_set) {
        if (c->n_axes != 2)
            return fail(err, errlen, "axial_shape: must be given when axial_dims has %d entries", c->n_axes);
        c->axial_shape[0] = near_square_divisor(c->seq_len);
        c->axial_shape[1] = c->seq_len / c->axial_shape[0];
    }
    long prod = 1;
    for (int a = 0; a < c->n_axes; a++) prod *= c->axial_shape[a];
    if (prod != c->seq_len) {
        char shape[128] = "";
        for (int a = 0; a < c->n_axes; a++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%s%d", a ? "x" : "", c->axial_shape[a]);
        return fail(err, errlen, "axial_shape: %s = %ld does not equal seq_len=%d", shape, prod, c->seq_len);
    }
    if (!c->axial_dims_set) {
        int rest = c->d_model;
        for (int a = 0; a < c->n_axes; a++) {
            c->axial_dims[a] = a == c->n_axes - 1 ? rest : c->d_model / c->n_axes;
            rest -= c->axial_dims[a];
        }
    }
    int dsum = 0;
    for (int a = 0; a < c->n_axes; a++) {
        if (c->axial_dims[a] <= 0) return fail(err, errlen, "axial_dims: entries must be positive (d_model=%d too small for %d axes)", c->d_model, c->n_axes);
        dsum += c->axial_dims[a];
    }
    if (dsum != c->d_model)
        return fail(err, errlen, "axial_dims: entries sum to %d, not d_model=%d", dsum, c->d_model);
    if (c->vocab_size < 2) return fail(err, errlen, "vocab_size: must be at least 2");
    if (c->lr_min > c->lr) return fail(err, errlen, "lr_min: %g is above lr=%g", c->lr_min, c->lr);
    // The CPU backend is the fp32 reference: it does not emulate bf16.
    if (c->precision == PRECISION_BF16 && strcmp(c->device, "cuda"))
        return fail(err, errlen, "precision: bf16 needs device=cuda (the %s backend computes in fp32 only)", c->device);
    int dup = !strcmp(c->data_format, "dup") || (!strcmp(c->data_format, "auto") && !strcmp(c->data, "dup"));
    if (dup && c->dup_alphabet > c->vocab_size)
        return fail(err, errlen, "dup_alphabet: %d exceeds vocab_size=%d", c->dup_alphabet, c->vocab_size);
    return 0;
}

static void get_list(char *buf, size_t cap, const int *v, int n) {
    buf[0] = '\0';
    for (int i = 0; i < n; i++) snprintf(buf + strlen(buf), cap - strlen(buf), "%s%d", i ? "," : "", v[i]);
}

// Shortest of %.15g, %.16g, %.17g that strtod reads back to v exactly, so a
// printed config (and a checkpoint's) reproduces every double bit for bit
// while defaults still read "0.002", not "0.0020000000000000000".
static void get_double(char *buf, size_t cap, double v) {
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

int config_get(const Config *c, const char *key, char *buf, size_t cap) {
    static const char *acts[] = {"relu", "gelu"}, *scheds[] = {"rsqrt", "cosine", "constant"},
                      *precisions[] = {"fp32", "bf16"};
#define GI(k, v) if (IS(k)) return snprintf(buf, cap, "%d", (v)), 0
#define GD(k, v) if (IS(k)) return get_double(buf, cap, (v)), 0
#define GS(k, v) if (IS(k)) return snprintf(buf, cap, "%s", (v)), 0
    GI("vocab_size", c->vocab_size);
    GI("d_model", c->d_model);
    GI("d_ff", c->d_ff);
    GI("n_heads", c->n_heads);
    GI("d_head", c->d_head);
    GI("n_layers", c->n_layers);
    GS("attn_layers", c->attn_layers);
    GS("attn", c->attn_full ? "full" : "pattern");
    GI("lsh_chunk", c->lsh_chunk);
    GI("local_chunk", c->local_chunk);
    GI("n_hashes", c->n_hashes);
    GI("n_buckets", c->n_buckets);
    if (IS("axial_shape")) return get_list(buf, cap, c->axial_shape, c->n_axes), 0;
    if (IS("axial_dims")) return get_list(buf, cap, c->axial_dims, c->n_axes), 0;
    GI("ff_chunk", c->ff_chunk);
    GI("loss_chunk", c->loss_chunk);
    GI("attn_head_group", c->attn_head_group);
    GS("ff_activation", acts[c->ff_activation]);
    GD("ln_eps", c->ln_eps);
    GD("dropout", c->dropout);
    GD("init_std", c->init_std);
    GI("reversible", c->reversible);
    GI("seq_len", c->seq_len);
    GI("batch", c->batch);
    GI("sp", c->sp);
    GD("lr", c->lr);
    GI("warmup", c->warmup);
    GI("steps", c->steps);
    GS("schedule", scheds[c->schedule]);
    GD("lr_min", c->lr_min);
    GD("weight_decay", c->weight_decay);
    GD("beta1", c->beta1);
    GD("beta2", c->beta2);
    GD("adam_eps", c->adam_eps);
    GD("clip", c->clip);
    if (IS("seed")) return snprintf(buf, cap, "%llu", (unsigned long long)c->seed), 0;
    GS("data", c->data);
    GS("data_format", c->data_format);
    if (IS("split_fractions")) {
        char f[3][32];
        for (int i = 0; i < 3; i++) get_double(f[i], sizeof f[i], c->split_fractions[i]);
        return snprintf(buf, cap, "%s,%s,%s", f[0], f[1], f[2]), 0;
    }
    GI("cross_docs", c->cross_docs);
    GI("dup_alphabet", c->dup_alphabet);
    GS("out_dir", c->out_dir);
    GS("device", c->device);
    GS("precision", precisions[c->precision]);
    GI("log_every", c->log_every);
    GI("ckpt_every", c->ckpt_every);
    GI("keep_ckpts", c->keep_ckpts);
    GI("eval_every", c->eval_every);
    GI("eval_windows", c->eval_windows);
#undef GI
#undef GD
#undef GS
    if (cap) buf[0] = '\0';
    return -1;
}

void config_print(const Config *c, FILE *out) {
    char value[1100];
    for (int i = 0; CONFIG_KEYS[i]; i++) {
        config_get(c, CONFIG_KEYS[i], value, sizeof value);
        fprintf(out, "%s=%s\n", CONFIG_KEYS[i], value);
    }
}
