#include "config.h"

#define DEFAULT_CHUNK CONFIG_AUTO_CHUNK
#define MIN_INT(a, b) ((a) < (b) ? (a) : (b))

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const DATA_FORMATS[] = {"auto", "text", "enwik8", "pg19", "tokens", "npz", "png", "dup", "random", NULL};

// Names of the enum-valued keys, in the enum's order (value i is NAMES[i]).
static const char *const ATTN_NAMES[] = {"pattern", "full", NULL};
static const char *const ACTIVATION_NAMES[] = {"relu", "gelu", NULL};
static const char *const SCHEDULE_NAMES[] = {"rsqrt", "cosine", "constant", NULL};
static const char *const PRECISION_NAMES[] = {"fp32", "bf16", "tf32", NULL};  // indexed by Precision
static const char *const DEVICE_NAMES[] = {"cpu", "cuda", NULL};
static const char *const SP_ATTENTION_NAMES[] = {"auto", "heads", "sequence", NULL};  // indexed by SpAttention
static const char *const ATTN_IMPL_NAMES[] = {"fast", "reference", NULL};  // attn_reference 0 / 1
static const char *const LSH_FORM_NAMES[] = {"standard", "strict", NULL};  // lsh_strict 0 / 1
static const char *const IMAGE_FIT_NAMES[] = {"exact", "crop", "tile", NULL};  // indexed by ImageFit
// CHOICE keys store the index as an int.
_Static_assert(sizeof(Activation) == sizeof(int) && sizeof(Schedule) == sizeof(int) &&
                   sizeof(Precision) == sizeof(int) && sizeof(SpAttention) == sizeof(int) && sizeof(ImageFit) == sizeof(int),
               "CHOICE keys write their enum as an int");

typedef enum {
    KEY_INT,     // int in [lo, hi]
    KEY_DOUBLE,  // double in [lo, hi], finite
    KEY_BOOL,    // int 0/1; reads 1/0, true/false, yes/no, on/off
    KEY_U64,     // uint64_t, non-negative decimal
    KEY_STRING,  // char[size], non-empty
    KEY_CHOICE,  // int index into names
    KEY_NAME,    // char[size] holding one of names
    KEY_AXES,    // int[MAX_AXES], 1 to MAX_AXES positive entries; their count in
                 // the int at count_offset (0 = not given: auto); printed with n_axes
    KEY_CUSTOM,  // parsed and printed by codec
} KeyType;

struct KeyRow;
typedef struct {
    int (*parse)(Config *c, const struct KeyRow *k, const char *s, char *err, size_t errlen);
    void (*format)(const Config *c, const struct KeyRow *k, char *buf, size_t cap);
} KeyCodec;

typedef struct KeyRow {
    const char *name;
    KeyType type;
    size_t offset, size;        // the Config field
    size_t count_offset;        // KEY_AXES
    double lo, hi;              // KEY_INT, KEY_DOUBLE bounds (inclusive)
    const char *const *names;   // KEY_CHOICE, KEY_NAME
    const KeyCodec *codec;      // KEY_CUSTOM
    const char *default_text;   // parsed by config_defaults; NULL = all zero (auto)
    int shape;                  // fixes the parameter layout (CONFIG_SHAPE_KEYS)
    const char *doc;            // what the key means (docs/configuration.md)
} KeyRow;

static const KeyCodec SPLIT_FRACTIONS_CODEC, IMAGE_SHAPE_CODEC, N_BUCKETS_CODEC;

#define FIELD(f) .offset = offsetof(Config, f), .size = sizeof(((Config *)0)->f)
#define INT(f, lo_, hi_) .type = KEY_INT, FIELD(f), .lo = (lo_), .hi = (hi_)
#define DOUBLE(f, lo_, hi_) .type = KEY_DOUBLE, FIELD(f), .lo = (lo_), .hi = (hi_)
#define BOOL(f) .type = KEY_BOOL, FIELD(f)
#define U64(f) .type = KEY_U64, FIELD(f)
#define STRING(f) .type = KEY_STRING, FIELD(f)
#define CHOICE(f, names_) .type = KEY_CHOICE, FIELD(f), .names = (names_)
#define NAME(f, names_) .type = KEY_NAME, FIELD(f), .names = (names_)
#define AXES(f) .type = KEY_AXES, FIELD(f), .count_offset = offsetof(Config, f##_set)
#define CUSTOM(codec_) .type = KEY_CUSTOM, .codec = &(codec_)

// THE config keys: the one list that config_set, config_get, config_print,
// config_defaults, checkpoints, `reformer help` and the tests all read. A new
// key is one row here (plus its field in Config, and any rule tying it to other
// keys in config_finalize). Order = the order of `reformer help`.
//
//   X(name,          how it is parsed and stored,          default,  shape key?,
//     "description": one sentence of Markdown, the `meaning` column of
//     docs/configuration.md, which `reformer help config --markdown` generates)
#define CONFIG_TABLE(X)                                                                      \
    X(vocab_size,      INT(vocab_size, 2, 1 << 20),           "256", SHAPE,              \
      "vocabulary size (byte-level text needs at least 256)")                            \
    X(d_model,         INT(d_model, 1, 1 << 16),              "128", SHAPE,              \
      "width of each of the two residual streams")                                       \
    X(d_ff,            INT(d_ff, 1, 1 << 20),                 "512", SHAPE,              \
      "feed-forward hidden units")                                                       \
    X(n_heads,         INT(n_heads, 1, 1024),                 "4", SHAPE,                \
      "attention heads")                                                                 \
    X(d_head,          INT(d_head, 0, 1 << 14),               "0", SHAPE,                \
      "width of one head; 0 = `d_model / n_heads` (which must then divide)")             \
    X(n_layers,        INT(n_layers, 1, MAX_LAYERS),          "4", SHAPE,                \
      "reversible blocks (at most 256)")                                                 \
    X(attn_layers,     STRING(attn_layers),                   "local,lsh", SHAPE,        \
      "per-layer attention pattern of `lsh` and `local`, repeated over the layers")      \
    X(attn,            CHOICE(attn_full, ATTN_NAMES),         "pattern", 0,              \
      "`pattern` uses `attn_layers`; `full` makes every layer attend to the whole "      \
      "causal prefix (the baseline to measure against)")                                 \
    X(lsh_chunk,       INT(lsh_chunk, 0, 1 << 20),            "0", 0,                    \
      "chunk length of LSH layers; 0 = the largest divisor of `seq_len` not above 64, "  \
      "so any length works; a value you set must divide `seq_len` (when shorter than "   \
      "it)")                                                                             \
    X(local_chunk,     INT(local_chunk, 0, 1 << 20),          "0", 0,                    \
      "chunk length of local layers; 0 = automatic as for `lsh_chunk`")                  \
    X(n_hashes,        INT(n_hashes, 1, 64),                  "2", 0,                    \
      "hash rounds of LSH attention")                                                    \
    X(n_buckets,       CUSTOM(N_BUCKETS_CODEC),               "0", 0,                    \
      "buckets per round: one even count, or a list of even factors `f1,f2,...` (at "   \
      "most 4) as transformers' `num_buckets`: each factor hashed with its own f/2 "    \
      "rotation columns, bucket b1 + f1 x b2 + f1 x f2 x b3, so f1 x f2 buckets cost "  \
      "(f1 + f2)/2 columns; at most 65,536 buckets (16-bit ids). 0 = transformers' "    \
      "choice with max length `seq_len`: 2^p, p = floor(log2(2 x `seq_len` / "         \
      "`lsh_chunk`)) (at least 2, at most 2^16), factorised 2^(p/2) x 2^(p - p/2) "     \
      "above 2 x max(sqrt(`seq_len` / `lsh_chunk`), `lsh_chunk`)")                     \
    X(lsh_form,        CHOICE(lsh_strict, LSH_FORM_NAMES),    "standard", 0,             \
      "`standard`: the paper's LSH attention (chunks of the sorted order; causal only "  \
      "given its buckets, see [the caveat](correctness.md)); `strict`: a query "         \
      "attends only to itself and the `lsh_chunk` - 1 newest earlier items of its own "  \
      "bucket in each round, so what it sees depends on earlier positions only and "     \
      "decoding computes exactly the training forward (CPU, unsharded or "               \
      "sequence-parallel on either path; not exportable to transformers)")               \
    X(axial_shape,     AXES(axial_shape),                    NULL, SHAPE,                \
      "axial position-embedding shape, product = `seq_len`; auto (or 0) = the most "     \
      "nearly square two-factor split")                                                  \
    X(axial_dims,      AXES(axial_dims),                     NULL, SHAPE,                \
      "widths of the axial embedding parts, sum = `d_model`; auto (or 0) = an even "     \
      "split")                                                                           \
    X(ff_chunk,        INT(ff_chunk, 1, INT_MAX),             "1024", 0,                 \
      "tokens per feed-forward chunk")                                                   \
    X(loss_chunk,      INT(loss_chunk, 1, INT_MAX),           "1024", 0,                 \
      "tokens per output/loss chunk")                                                    \
    X(attn_head_group, INT(attn_head_group, 0, 1024),          "0", 0,                   \
      "heads per attention pass; 0 = all heads in one pass. Attention runs in "          \
      "`n_heads / attn_head_group` passes over the whole sequence, each holding its "    \
      "q, k, v, o and their gradients at [tokens, group x `d_head`]: smaller groups "    \
      "take less memory per token (see [Memory](memory.md)); on the CPU, a pass with "  \
      "fewer (batch, head) pairs than threads has all threads work on each pair "       \
      "together, so a one-head pass at batch 1 still uses every core. Any `sp`: a "     \
      "rank's pass "                                                                     \
      "holds its `seq_len`/`sp` positions (`sp_attention=heads` passes cover "          \
      "lcm(group, `sp`) heads; the sort's may cover fewer, or stream: `sort_steps`, "   \
      "[Training on many processes](distributed.md))")                                   \
    X(ff_activation,   CHOICE(ff_activation, ACTIVATION_NAMES), "gelu", 0,               \
      "`gelu` or `relu`")                                                                \
    X(ln_eps,          DOUBLE(ln_eps, 1e-30, 1.0),            "1e-6", 0,                  /* trax; HF 1e-12 */ \
      "LayerNorm epsilon")                                                               \
    X(dropout,         DOUBLE(dropout, 0.0, 0.99),            "0", 0,                    \
      "dropout on each block's attention and feed-forward output")                       \
    X(init_std,        DOUBLE(init_std, 0.0, 10.0),           "0.05", 0,                 \
      "standard deviation of the initial linear weights (transformers' "                 \
      "`initializer_range`, 0.02 there: 0.05 leaves the default run's plateau ~50 steps " \
      "sooner; `experiments/defaults/` measured the choice)")                           \
    X(emb_init_std,    DOUBLE(emb_init_std, 0.0, 10.0),       "1", 0,                    \
      "standard deviation of the initial token embedding (trax: 1; transformers: "       \
      "`init_std`); `experiments/defaults/` measured the choice")                       \
    X(axial_init_std,  DOUBLE(axial_init_std, 0.0, 10.0),     "1", 0,                    \
      "standard deviation of the initial axial position tables (transformers' "          \
      "`axial_norm_std`, 1 there and in trax); `experiments/defaults/` measured the choice") \
    X(reversible,      BOOL(reversible),                      "1", 0,                    \
      "1: recompute activations in the backward pass; 0: store them (reference mode)")   \
    X(seq_len,         INT(seq_len, 1, 1 << 28),              "512", SHAPE,              \
      "tokens per sequence")                                                             \
    X(batch,           INT(batch, 1, 1 << 20),                "4", 0,                    \
      "sequences per step per data-parallel replica (the global batch is ranks / `sp` "  \
      "x `batch`)")                                                                      \
    X(sp,              INT(sp, 1, 4096),                      "1", 0,                    \
      "sequence-parallel ranks per replica: each holds `seq_len`/`sp` positions; must "  \
      "divide `seq_len` and the number of ranks, and past `n_heads` give "               \
      "chunk-aligned shards (see [Training on many processes](distributed.md))")         \
    X(sp_attention,    CHOICE(sp_attention, SP_ATTENTION_NAMES), "auto", 0,              \
      "how attention runs with `sp` > 1: `heads` (all-to-all to whole sequences of "     \
      "`n_heads/sp` heads; `sp` divides `n_heads`), `sequence` (the sequence stays "     \
      "sharded: LSH by a distributed sort, local by a halo of the previous chunk), "     \
      "`auto` (halo for local layers, heads for LSH layers where `sp` divides "          \
      "`n_heads` and the heads of a pass, the sort otherwise)")                          \
    X(sort_steps,      INT(sort_steps, -1, INT_MAX),          "0", 0,                    \
      "sequence-sharded LSH (`sp` > 1): 0 = the plan's choice (keep the sort's rows "    \
      "from forward to backward where they fit in what a pass holds at `sp` = 1, else "  \
      "stream them in pieces, about 1.2x the bytes exchanged); N = stream them in N "    \
      "pieces per rank and pass; -1 = keep them, whatever they take (see "               \
      "[Training on many processes](distributed.md))")                                   \
    X(lr,              DOUBLE(lr, 0.0, 10.0),                 "1e-2", 0,                 \
      "peak learning rate, reached at the end of warmup (the default and the betas "     \
      "are trax's recipe for a small Reformer: `experiments/defaults/`)")                                \
    X(warmup,          INT(warmup, 0, INT_MAX),               "50", 0,                   \
      "linear warmup steps")                                                             \
    X(steps,           INT(steps, 0, INT_MAX),                "580", 0,                  \
      "training steps")                                                                  \
    X(schedule,        CHOICE(schedule, SCHEDULE_NAMES),      "cosine", 0,               \
      "after warmup: `cosine` (down to `lr_min` at `steps`), `rsqrt` or `constant`")     \
    X(lr_min,          DOUBLE(lr_min, 0.0, 10.0),             "1e-4", 0,                 \
      "floor of the cosine schedule")                                                    \
    X(weight_decay,    DOUBLE(weight_decay, 0.0, 10.0),       "0", 0,                    \
      "AdamW decoupled weight decay (weight matrices only)")                             \
    X(beta1,           DOUBLE(beta1, 0.0, 0.999999),          "0.86", 0,                 \
      "AdamW first-moment decay")                                                        \
    X(beta2,           DOUBLE(beta2, 0.0, 0.99999999),        "0.92", 0,                 \
      "AdamW second-moment decay")                                                       \
    X(adam_eps,        DOUBLE(adam_eps, 1e-30, 1.0),          "1e-9", 0,                 \
      "AdamW epsilon")                                                                   \
    X(clip,            DOUBLE(clip, 0.0, 1e30),               "1", 0,                    \
      "global gradient-norm clip; 0 = off")                                              \
    X(seed,            U64(seed),                             "1337", 0,                 \
      "seed of initialisation, data order, hashing and dropout")                         \
    X(data,            STRING(data),                          "data/tinyshakespeare.txt", 0,\
      "what to train on: a file, a PG19 directory, `dup` (duplication task) or "         \
      "`random` (random tokens); see [Data](data.md)")                                   \
    X(data_format,     NAME(data_format, DATA_FORMATS),       "auto", 0,                 \
      "`auto`, `text`, `enwik8`, `pg19`, `tokens`, `npz`, `png`, `dup` or `random`; `auto` infers " \
      "it from `data` (see [Data](data.md))")                                            \
    X(split_fractions, CUSTOM(SPLIT_FRACTIONS_CODEC),         "0.9,0.05,0.05", 0,        \
      "train, validation and test shares of a `text` or `tokens` source, cut "           \
      "contiguously in that order: three non-negative numbers summing to 1, train "      \
      "above 0")                                                                         \
    X(cross_docs,      BOOL(cross_docs),                      "0", 0,                    \
      "1: training windows may run across document (PG19 book) boundaries; 0: never")    \
    X(whole_docs,      BOOL(whole_docs),                      "0", 0,                    \
      "1: every training sample is one whole document (a PG19 book, a file) at a random offset in its window, "   \
      "padded left and right (padding is never a target); a longer document is cut to a random `seq_len`+1-token run") \
    X(tokenizer,       STRING(tokenizer),                     "none", 0,                 \
      "a SentencePiece `.model` (made by `reformer tokenize`) that text, enwik8 and pg19 data are encoded with, "  \
      "once, into a token cache beside the data; `vocab_size` follows from it; `none`: bytes") \
    X(word_ppl,        BOOL(word_ppl),                        "0", 0,                    \
      "1: evaluations also report perplexity per word (exp of total nats over whitespace-separated words); always on for pg19") \
    X(image_shape,     CUSTOM(IMAGE_SHAPE_CODEC),             "none", 0,                 \
      "H,W,C of one image (C 1 to 4; 3 = RGB): an image model, one sample one image of seq_len = H*W*C subpixels, " \
      "axial positions over (H, W, C) unless `axial_shape` is set; `none`: a text model") \
    X(image_fit,       CHOICE(image_fit, IMAGE_FIT_NAMES),    "exact", 0,                \
      "PNG images of another size than `image_shape`: `exact` refuses them, `crop` takes the centred H x W " \
      "window, `tile` every whole H x W tile row by row from the top left")               \
    X(dup_alphabet,    INT(dup_alphabet, 2, 1 << 20),         "128", 0,                  \
      "duplication task: symbols are 1 .. `dup_alphabet`-1")                             \
    X(out_dir,         STRING(out_dir),                       "runs/default", 0,         \
      "where `metrics.h5` and the checkpoints are written (created if missing)")         \
    X(device,          NAME(device, DEVICE_NAMES),            "cpu", 0,                  \
      "`cpu` or `cuda` (one GPU per process, picked by the launcher's local rank; see "  \
      "[CUDA](cuda.md))")                                                                \
    X(precision,       CHOICE(precision, PRECISION_NAMES),    "fp32", 0,                 \
      "`fp32` (exact), or with `device=cuda`: `bf16` (matmul operands and attention "    \
      "inputs in bf16, accumulation, parameters and optimizer state in fp32) or "        \
      "`tf32` (matmuls on TF32 tensor cores, everything else fp32); both refused with "  \
      "`device=cpu`")                                                                    \
    X(attn_impl,       CHOICE(attn_reference, ATTN_IMPL_NAMES), "fast", 0,               \
      "CUDA attention: `fast` (batched tensor-core GEMMs over gathered chunk blocks, "   \
      "fp32 softmax) or `reference` (the fused fp32 kernels it is tested against); "     \
      "the CPU ignores it")                                                              \
    X(log_every,       INT(log_every, 1, INT_MAX),            "1", 0,                    \
      "print a progress line every this many steps (metrics.h5 always gets every "       \
      "step)")                                                                           \
    X(ckpt_every,      INT(ckpt_every, 0, INT_MAX),           "1000", 0,                 \
      "write a checkpoint every this many steps; 0 = only the final one (always "        \
      "written)")                                                                        \
    X(keep_ckpts,      INT(keep_ckpts, 0, INT_MAX),           "3", 0,                    \
      "keep the newest this many checkpoints in `out_dir`, deleting older ones after "   \
      "each successful write (never the newest one whose loss was sane, see "            \
      "[Divergence](commands.md#exit-statuses)); 0 = keep all")                          \
    X(eval_every,      INT(eval_every, 0, INT_MAX),           "100", 0,                  \
      "steps between evaluations on the validation split while training; 0 = never")     \
    X(eval_windows,    INT(eval_windows, 0, INT_MAX),         "64", 0,                   \
      "evaluation windows per periodic evaluation; 0 = the whole validation split")      \
    X(watchdog_s,      INT(watchdog_s, 0, INT_MAX),           "600", 0,                  \
      "on several ranks: a rank that waits this many seconds in a collective "           \
      "(all-reduce, broadcast, all-to-all, barrier over MPI) pings the others, and "     \
      "the job stops with one line naming the ranks that did not answer (a stopped "     \
      "rank, a hung file system); 0 = never. Long enough for rank 0's checkpoint "       \
      "writes, which the others wait for")

// The last column is the token SHAPE or 0, pasted (never expanded) below so
// that CONFIG_SHAPE_KEYS is filtered at compile time.
#define IS_SHAPE_SHAPE 1
#define IS_SHAPE_0 0
#define IF_SHAPE_SHAPE(x) x,
#define IF_SHAPE_0(x)

#define ROW(name_, how, default_, shape_, doc_) \
    {.name = #name_, how, .default_text = (default_), .shape = IS_SHAPE_##shape_, .doc = (doc_)},
static const KeyRow KEY_ROWS[] = {CONFIG_TABLE(ROW)};
#define N_KEYS ((int)(sizeof KEY_ROWS / sizeof KEY_ROWS[0]))

#define NAME_OF(name_, how, default_, shape_, doc_) #name_,
const char *const CONFIG_KEYS[] = {CONFIG_TABLE(NAME_OF) NULL};

#define SHAPE_NAME_OF(name_, how, default_, shape_, doc_) IF_SHAPE_##shape_(#name_)
const char *const CONFIG_SHAPE_KEYS[] = {CONFIG_TABLE(SHAPE_NAME_OF) NULL};

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

static int parse_bool(const char *key, const char *s, int *out, char *err, size_t errlen) {
    if (!strcasecmp(s, "1") || !strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on")) *out = 1;
    else if (!strcasecmp(s, "0") || !strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcasecmp(s, "off")) *out = 0;
    else return fail(err, errlen, "%s: '%s' is not a boolean (use 1 or 0)", key, s);
    return 0;
}

static int parse_u64(const char *key, const char *s, uint64_t *out, char *err, size_t errlen) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end || errno || s[0] == '-')
        return fail(err, errlen, "%s: '%s' is not a non-negative integer", key, s);
    *out = (uint64_t)v;
    return 0;
}

static int parse_string(const char *key, const char *s, char *dst, size_t cap, char *err,
                        size_t errlen) {
    if (strlen(s) >= cap) return fail(err, errlen, "%s: value longer than %zu characters", key, cap - 1);
    if (s[0] == '\0') return fail(err, errlen, "%s: empty value", key);
    snprintf(dst, cap, "%s", s);
    return 0;
}

// The index of s in names, or -1 with "key: 's' is not one of a, b, c".
static int parse_choice(const char *key, const char *s, const char *const *names, char *err, size_t errlen) {
    for (int i = 0; names[i]; i++)
        if (!strcmp(s, names[i])) return i;
    char list[256] = "";
    for (int i = 0; names[i]; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", names[i]);
    fail(err, errlen, "%s: '%s' is not one of %s", key, s, list);
    return -1;
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

static void format_list(char *buf, size_t cap, const int *v, int n) {
    buf[0] = '\0';
    for (int i = 0; i < n; i++) snprintf(buf + strlen(buf), cap - strlen(buf), "%s%d", i ? "," : "", v[i]);
}

// Shortest of %.15g, %.16g, %.17g that strtod reads back to v exactly, so a
// printed config (and a checkpoint's) reproduces every double bit for bit
// while defaults still read "0.002", not "0.0020000000000000000".
static void format_double(char *buf, size_t cap, double v) {
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

// "train,validation,test": three non-negative shares summing to 1 (to 1e-9,
// so decimal fractions like 0.9,0.05,0.05 pass), a positive train share.
static int parse_split_fractions(Config *c, const KeyRow *k, const char *s, char *err, size_t errlen) {
    const char *key = k->name;
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
    memcpy(c->split_fractions, f, sizeof f);
    return 0;
}
static void format_split_fractions(const Config *c, const KeyRow *k, char *buf, size_t cap) {
    (void)k;
    char f[3][32];
    for (int i = 0; i < 3; i++) format_double(f[i], sizeof f[i], c->split_fractions[i]);
    snprintf(buf, cap, "%s,%s,%s", f[0], f[1], f[2]);
}

static const KeyCodec SPLIT_FRACTIONS_CODEC = {parse_split_fractions, format_split_fractions};

// "H,W,C" (three positive integers, C 1 to 4: gray, gray+alpha, RGB, RGBA) or
// "none" (not an image model).
static int parse_image_shape(Config *c, const KeyRow *k, const char *s, char *err, size_t errlen) {
    int v[MAX_AXES] = {0}, n = 0;
    if (!strcmp(s, "none")) {
        memset(c->image_shape, 0, sizeof c->image_shape);
        return 0;
    }
    if (parse_list(k->name, s, v, &n, err, errlen)) return -1;
    if (n != 3) return fail(err, errlen, "%s: '%s' is not H,W,C (three numbers, e.g. 64,64,3) or none", k->name, s);
    if (v[2] > 4) return fail(err, errlen, "%s: %d channels; PNG images have 1 to 4 (3 = RGB)", k->name, v[2]);
    if ((long)v[0] * v[1] * v[2] > (1L << 28)) return fail(err, errlen, "%s: '%s' has over 2^28 subpixels", k->name, s);
    memcpy(c->image_shape, v, sizeof c->image_shape);
    return 0;
}
static void format_image_shape(const Config *c, const KeyRow *k, char *buf, size_t cap) {
    (void)k;
    if (!config_is_image(c)) snprintf(buf, cap, "none");
    else format_list(buf, cap, c->image_shape, 3);
}

static const KeyCodec IMAGE_SHAPE_CODEC = {parse_image_shape, format_image_shape};

void config_image_shape_text(const Config *c, char *buf, size_t cap) {
    if (!config_is_image(c)) snprintf(buf, cap, "none");
    else snprintf(buf, cap, "%dx%dx%d", c->image_shape[0], c->image_shape[1], c->image_shape[2]);
}
// n_buckets: one count (0 = auto) or a list of factors "f1,f2,..." as
// transformers' num_buckets (core/lsh_rules.h): n_buckets holds their product,
// bucket_factors the list. Evenness is config_finalize's check.
static int parse_n_buckets(Config *c, const KeyRow *k, const char *s, char *err, size_t errlen) {
    char buf[256];
    if (strlen(s) >= sizeof buf) return fail(err, errlen, "%s: value too long", k->name);
    snprintf(buf, sizeof buf, "%s", s);
    size_t len = strlen(s);
    if (len && (s[0] == ',' || s[len - 1] == ',' || strstr(s, ",,")))
        return fail(err, errlen, "%s: '%s' has an empty factor", k->name, s);
    LshFactors fs = {0, {0}};
    long prod = 1;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (fs.n == LSH_MAX_FACTORS) return fail(err, errlen, "%s: at most %d factors", k->name, LSH_MAX_FACTORS);
        if (parse_int(k->name, tok, 0, LSH_MAX_BUCKETS, &fs.f[fs.n], err, errlen)) return -1;
        prod *= fs.f[fs.n++];
        if (prod > LSH_MAX_BUCKETS)
            return fail(err, errlen, "%s: '%s' makes more than %d buckets (bucket ids are 16-bit)", k->name, s,
                        LSH_MAX_BUCKETS);
    }
    if (fs.n == 0) return fail(err, errlen, "%s: empty value", k->name);
    if (fs.n > 1 && prod == 0) return fail(err, errlen, "%s: '%s' has a factor 0 (factors are even, >= 2)", k->name, s);
    c->n_buckets = (int)prod;
    if (fs.n == 1) fs.n = 0, fs.f[0] = 0;  // one count: no factor list
    c->bucket_factors = fs;
    return 0;
}
static void format_n_buckets(const Config *c, const KeyRow *k, char *buf, size_t cap) {
    (void)k;
    LshFactors fs = lsh_factors(c->n_buckets, c->bucket_factors);
    if (fs.n > 1) format_list(buf, cap, fs.f, fs.n);
    else snprintf(buf, cap, "%d", c->n_buckets);
}

static const KeyCodec N_BUCKETS_CODEC = {parse_n_buckets, format_n_buckets};

static const KeyRow *find_key(const char *key) {
    for (int i = 0; i < N_KEYS; i++)
        if (!strcmp(KEY_ROWS[i].name, key)) return &KEY_ROWS[i];
    return NULL;
}

// Parse value into row k's field of c; on failure c is unchanged.
static int set_row(Config *c, const KeyRow *k, const char *value, char *err, size_t errlen) {
    void *field = (char *)c + k->offset;
    switch (k->type) {
    case KEY_INT: return parse_int(k->name, value, (long)k->lo, (long)k->hi, field, err, errlen);
    case KEY_DOUBLE: return parse_double(k->name, value, k->lo, k->hi, field, err, errlen);
    case KEY_BOOL: return parse_bool(k->name, value, field, err, errlen);
    case KEY_U64: return parse_u64(k->name, value, field, err, errlen);
    case KEY_STRING: return parse_string(k->name, value, field, k->size, err, errlen);
    case KEY_CHOICE: {
        int i = parse_choice(k->name, value, k->names, err, errlen);
        if (i < 0) return -1;
        *(int *)field = i;
        return 0;
    }
    case KEY_NAME: {
        int i = parse_choice(k->name, value, k->names, err, errlen);
        if (i < 0) return -1;
        return parse_string(k->name, k->names[i], field, k->size, err, errlen);
    }
    case KEY_AXES: {
        int v[MAX_AXES] = {0}, n = 0;
        // 0: automatic, as if not given (the rule of every key whose 0 means auto).
        if (!strcmp(value, "0")) {
            memcpy(field, v, sizeof v);
            *(int *)((char *)c + k->count_offset) = 0;
            return 0;
        }
        if (parse_list(k->name, value, v, &n, err, errlen)) return -1;
        memcpy(field, v, sizeof v);
        *(int *)((char *)c + k->count_offset) = n;
        return 0;
    }
    case KEY_CUSTOM: return k->codec->parse(c, k, value, err, errlen);
    }
    return fail(err, errlen, "%s: key of unknown type", k->name);
}

static void get_row(const Config *c, const KeyRow *k, char *buf, size_t cap) {
    const void *field = (const char *)c + k->offset;
    switch (k->type) {
    case KEY_INT:
    case KEY_BOOL: snprintf(buf, cap, "%d", *(const int *)field); return;
    case KEY_DOUBLE: format_double(buf, cap, *(const double *)field); return;
    case KEY_U64: snprintf(buf, cap, "%llu", (unsigned long long)*(const uint64_t *)field); return;
    case KEY_STRING:
    case KEY_NAME: snprintf(buf, cap, "%s", (const char *)field); return;
    case KEY_CHOICE: snprintf(buf, cap, "%s", k->names[*(const int *)field]); return;
    case KEY_AXES: format_list(buf, cap, field, c->n_axes); return;
    case KEY_CUSTOM: k->codec->format(c, k, buf, cap); return;
    }
}

void config_defaults(Config *c) {
    memset(c, 0, sizeof *c);
    char err[256];
    for (int i = 0; i < N_KEYS; i++) {
        const KeyRow *k = &KEY_ROWS[i];
        if (k->default_text && set_row(c, k, k->default_text, err, sizeof err)) {
            fprintf(stderr, "reformer: internal error: core/config.c: default of %s rejected: %s\n", k->name, err);
            abort();
        }
    }
    c->n_axes = 2;  // the automatic axial split, until config_finalize derives it
}

int config_set(Config *c, const char *key, const char *value, char *err, size_t errlen) {
    const KeyRow *k = find_key(key);
    if (!k) return fail(err, errlen, "%s: unknown config key (see `reformer help` for the list)", key);
    return set_row(c, k, value, err, errlen);
}

int config_get(const Config *c, const char *key, char *buf, size_t cap) {
    const KeyRow *k = find_key(key);
    if (!k) {
        if (cap) buf[0] = '\0';
        return -1;
    }
    get_row(c, k, buf, cap);
    return 0;
}

int config_key_is_shape(const char *key) {
    const KeyRow *k = find_key(key);
    return k && k->shape;
}

const char *config_key_doc(const char *key) {
    const KeyRow *k = find_key(key);
    return k ? k->doc : NULL;
}

void config_print(const Config *c, FILE *out) {
    char value[1100];
    for (int i = 0; i < N_KEYS; i++) {
        get_row(c, &KEY_ROWS[i], value, sizeof value);
        fprintf(out, "%s=%s\n", KEY_ROWS[i].name, value);
    }
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

// The chunk length of layers of one kind (config_layer_chunk by kind).
static int config_layer_chunk_of(const Config *c, AttnKind kind) {
    if (c->attn_full) return c->seq_len;
    int m = kind == ATTN_LSH ? c->lsh_chunk : c->local_chunk;
    return m >= c->seq_len ? c->seq_len : m;
}

// Which path each attention kind takes with sp > 1 (c->sp_sequence). The
// sequence-sharded path needs chunk-aligned shards: a local layer's shard of
// seq_len/sp positions a whole number of local chunks, an LSH layer's slice of
// the sorted order (n_hashes * seq_len/sp items) a whole number of LSH chunks.
static int sp_attention_plan(Config *c, int has_lsh, int has_local, char *err, size_t errlen) {
    c->sp_sequence[ATTN_LOCAL] = c->sp_sequence[ATTN_LSH] = 0;
    if (c->sp == 1) return 0;
    const int shard = c->seq_len / c->sp, heads_ok = c->n_heads % c->sp == 0;
    // Ulysses gives each rank whole heads of a pass: with fewer heads per pass
    // than sp a pass would cover lcm(group, sp) heads; auto sorts those LSH
    // layers instead where their slices are whole chunks.
    const int group = c->attn_head_group > 0 ? c->attn_head_group : c->n_heads;
    const int lsh_m = config_layer_chunk_of(c, ATTN_LSH), local_m = config_layer_chunk_of(c, ATTN_LOCAL);
    const int lsh_rounds = lsh_m < c->seq_len ? c->n_hashes : 1;
    const int kinds[2] = {ATTN_LOCAL, ATTN_LSH}, present[2] = {has_local, has_lsh};
    for (int i = 0; i < 2; i++) {
        int kind = kinds[i], m = kind == ATTN_LSH ? lsh_m : local_m;
        int aligned = m < c->seq_len && ((long)(kind == ATTN_LSH ? lsh_rounds : 1) * shard) % m == 0;
        int seq;
        if (c->sp_attention == SP_ATTN_HEADS) seq = 0;
        else if (c->sp_attention == SP_ATTN_SEQUENCE) seq = 1;
        else seq = kind == ATTN_LOCAL ? aligned || !heads_ok : !heads_ok || (group % c->sp && aligned);  // auto
        c->sp_sequence[kind] = seq;
        if (!present[i]) continue;
        const char *what = kind == ATTN_LSH ? "lsh" : "local";  // the key is <what>_chunk
        if (!seq && !heads_ok)
            return fail(err, errlen, "sp: %d does not divide n_heads=%d (sp_attention=heads shards the heads; "
                        "sp_attention=auto or sequence shards the sequence past the head count)", c->sp, c->n_heads);
        if (seq && !aligned) {
            if (m >= c->seq_len)
                return fail(err, errlen, "sp: %d ranks cannot shard %s attention over one chunk of the whole "
                            "sequence (%s_chunk=%d >= seq_len=%d); use sp dividing n_heads=%d with sp_attention=heads",
                            c->sp, kind == ATTN_LSH ? "LSH" : "local", what, m, c->seq_len, c->n_heads);
            if (kind == ATTN_LSH)
                return fail(err, errlen, "sp: %d ranks give each %d of the %d x %d sorted LSH items, not a multiple of "
                            "lsh_chunk=%d (sequence-sharded attention needs chunk-aligned shards)", c->sp,
                            lsh_rounds * shard, lsh_rounds, c->seq_len, m);
            return fail(err, errlen, "sp: %d ranks give each %d positions, not a multiple of local_chunk=%d "
                        "(sequence-sharded attention needs chunk-aligned shards)", c->sp, shard, m);
        }
        if (seq && kind == ATTN_LSH && !strcmp(c->device, "cuda"))
            return fail(err, errlen, "sp: %d with device=cuda: sequence-sharded LSH attention (sp past n_heads=%d, or "
                        "sp_attention=sequence) is not yet on the GPU; use sp dividing n_heads, or device=cpu",
                        c->sp, c->n_heads);
    }
    return 0;
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
    if (c->seq_len % c->sp)
        return fail(err, errlen, "sp: %d does not divide seq_len=%d", c->sp, c->seq_len);
    if (c->whole_docs && c->cross_docs)
        return fail(err, errlen, "whole_docs: every sample is one document, so cross_docs=1 cannot apply; set one of them");
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
    if (sp_attention_plan(c, has_lsh, has_local, err, errlen)) return -1;
    // Attention passes: groups of heads, at any sp (core/memplan.h, pass_heads).
    if (c->attn_head_group > 0 && c->n_heads % c->attn_head_group)
        return fail(err, errlen, "attn_head_group: %d does not divide n_heads=%d", c->attn_head_group, c->n_heads);
    // Buckets: a chunk holds about two buckets (REFORMER.md, LSH step 3),
    // factorised past transformers' limit (lsh_auto_factors), the maximum
    // length being seq_len.
    if (c->n_buckets == 0) {
        c->bucket_factors = lsh_auto_factors(c->seq_len, c->lsh_chunk, c->seq_len);
        c->n_buckets = 1;
        for (int i = 0; i < c->bucket_factors.n; i++) c->n_buckets *= c->bucket_factors.f[i];
    } else {
        if (c->n_buckets > LSH_MAX_BUCKETS)
            return fail(err, errlen, "n_buckets: %d buckets do not fit the 16-bit bucket ids (at most %d)",
                        c->n_buckets, LSH_MAX_BUCKETS);
        c->bucket_factors = lsh_factors(c->n_buckets, c->bucket_factors);
        const LshFactors *fs = &c->bucket_factors;
        for (int i = 0; i < fs->n; i++)
            if (fs->f[i] % 2 || fs->f[i] < 2) {
                if (fs->n == 1) return fail(err, errlen, "n_buckets: %d must be even and at least 2", c->n_buckets);
                return fail(err, errlen, "n_buckets: factor %d must be even and at least 2", fs->f[i]);
            }
    }
    // Images: one sample is one image, and its axes are the position axes
    // unless axial_shape says otherwise.
    const int *img = c->image_shape;
    if (config_is_image(c) && (long)img[0] * img[1] * img[2] != c->seq_len)
        return fail(err, errlen, "seq_len: %d is not the %dx%dx%d = %ld subpixels of image_shape (one sample is one "
                    "image); set seq_len=%ld", c->seq_len, img[0], img[1], img[2], (long)img[0] * img[1] * img[2],
                    (long)img[0] * img[1] * img[2]);
    if (config_is_image(c) && c->vocab_size < 256)
        return fail(err, errlen, "vocab_size: an image model needs the 256 subpixel values, got %d", c->vocab_size);
    // Axial position embeddings.
    if (c->axial_shape_set) c->n_axes = c->axial_shape_set;
    else if (c->axial_dims_set) c->n_axes = c->axial_dims_set;
    else c->n_axes = config_is_image(c) ? 3 : 2;
    if (c->axial_shape_set && c->axial_dims_set && c->axial_shape_set != c->axial_dims_set)
        return fail(err, errlen, "axial_dims: %d entries but axial_shape has %d", c->axial_dims_set,
                    c->axial_shape_set);
    if (!c->axial_shape_set && config_is_image(c) && c->n_axes == 3) {
        memcpy(c->axial_shape, c->image_shape, 3 * sizeof(int));
    } else if (!c->axial_shape_set) {
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
    if (c->lsh_strict && has_lsh && !strcmp(c->device, "cuda"))
        return fail(err, errlen, "lsh_form: strict is implemented on device=cpu only (the CUDA LSH kernels apply "
                    "the standard chunk mask)");
    // The CPU backend is the fp32 reference: it does not emulate bf16.
    if (c->precision != PRECISION_FP32 && strcmp(c->device, "cuda"))
        return fail(err, errlen, "precision: %s needs device=cuda (the %s backend computes in fp32 only)",
                    precision_name(c->precision), c->device);
    int dup = !strcmp(c->data_format, "dup") || (!strcmp(c->data_format, "auto") && !strcmp(c->data, "dup"));
    if (dup && c->dup_alphabet > c->vocab_size)
        return fail(err, errlen, "dup_alphabet: %d exceeds vocab_size=%d", c->dup_alphabet, c->vocab_size);
    return 0;
}

const char *precision_name(Precision p) { return PRECISION_NAMES[p]; }
