// Model and training configuration: every key, its default, and validation.
//
// Keys are set by name (`config_set`) from INI files and `--set key=value`
// alike, so the two can never disagree. Every key (name, type, range or
// choices, default, whether it fixes the parameter layout) is one row of the
// table CONFIG_TABLE in config.c, which everything else here reads. `config_finalize` fills derived values
// (d_head, n_buckets, axial shape) and validates everything, reporting the
// first problem as one line that names the key.
#pragma once

// The chunk length lsh_chunk=0 / local_chunk=0 derive: the largest divisor
// of seq_len up to this.
#define CONFIG_AUTO_CHUNK 64
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "lsh_rules.h"  // LshFactors

#define MAX_LAYERS 256
#define MAX_AXES 4

typedef enum { ATTN_LOCAL = 0, ATTN_LSH = 1 } AttnKind;
typedef enum { ACT_RELU = 0, ACT_GELU = 1 } Activation;
typedef enum { SCHED_RSQRT = 0, SCHED_COSINE = 1, SCHED_CONSTANT = 2 } Schedule;
// fp32: exact fp32 everywhere (the reference). bf16: bf16 matmul operands and
// attention inputs, fp32 accumulation and master weights. tf32: matmuls on
// TF32 tensor cores (operands rounded to 10 mantissa bits inside them, fp32
// accumulation), everything else fp32. bf16 and tf32 need device=cuda.
typedef enum { PRECISION_FP32 = 0, PRECISION_BF16 = 1, PRECISION_TF32 = 2 } Precision;
// "fp32", "bf16", "tf32" (the config value).
const char *precision_name(Precision p);
// How attention runs when sp > 1 (DESIGN.md, Distribution; dist/README.md):
// heads = Ulysses all-to-all around attention (sp divides n_heads);
// sequence = the sequence stays sharded (LSH: distributed sort; local: halo
// of the previous chunk); auto = halo for local layers, Ulysses for LSH
// layers where sp divides n_heads, the distributed sort past the heads.
// image_fit: exact (every image must be H x W), crop (the centred H x W
// window of each), tile (every whole H x W tile, row by row from the top left).
typedef enum { IMAGE_FIT_EXACT = 0, IMAGE_FIT_CROP = 1, IMAGE_FIT_TILE = 2 } ImageFit;
typedef enum { SP_ATTN_AUTO = 0, SP_ATTN_HEADS = 1, SP_ATTN_SEQUENCE = 2 } SpAttention;

typedef struct {
    // --- model ---
    int vocab_size;        // 256 bytes + special tokens
    int d_model;           // width of each residual stream
    int d_ff;              // feed-forward hidden units
    int n_heads;
    int d_head;            // 0 = d_model / n_heads
    int n_layers;
    char attn_layers[512]; // repeating pattern, e.g. "local,local,lsh,local"
    int attn_full;         // attn=full: every layer attends to the whole causal prefix
    int lsh_chunk;         // m for LSH layers; 0 = largest divisor of seq_len <= 64
    int local_chunk;       // m for local layers; 0 = likewise
    int n_hashes;          // R
    int n_buckets;         // nb per round (the product of the factors); 0 = auto (power of
                           // two <= 2L/m, factorised as transformers' _set_num_buckets)
    LshFactors bucket_factors;  // n_buckets=f1,f2,...: the factors (core/lsh_rules.h);
                           // finalized: always the list as hashed (one entry unfactorised)
    int lsh_strict;        // lsh_form: standard (0: the paper's chunks of the sorted order) |
                           // strict (1: a query sees only earlier items of its own bucket, core/lsh_rules.h)
    int n_axes;
    int axial_shape[MAX_AXES];  // 0 entries = auto factorisation of seq_len
    int axial_dims[MAX_AXES];   // 0 entries = even split of d_model
    int axial_shape_set, axial_dims_set;
    int ff_chunk;          // tokens per feed-forward chunk
    int loss_chunk;        // tokens per output/loss chunk
    int attn_head_group;   // heads per attention pass (memory: its buffers are [T, group * d_head]); 0 = all
    Activation ff_activation;
    double ln_eps;
    double dropout;        // on each block's output (attention and feed-forward)
    double init_std;       // std of linear weights
    double emb_init_std;   // std of the token embedding
    double axial_init_std; // std of the axial position tables
    int reversible;        // 1: reconstruct activations in backward; 0: store them (reference)
    // --- training ---
    int seq_len;
    int batch;             // sequences per data-parallel replica
    int sp;                // sequence-parallel ranks per replica (divides seq_len)
    SpAttention sp_attention;  // auto | heads | sequence (see SpAttention)
    int sort_steps;            // sequence-sharded LSH: 0 = the plan's schedule; N = stream in N pieces
    double lr;             // peak learning rate (after warmup)
    int warmup;
    int steps;
    Schedule schedule;
    double lr_min;         // floor of the cosine schedule
    double weight_decay;
    double beta1, beta2, adam_eps;
    double clip;           // global gradient-norm clip; 0 = off
    uint64_t seed;
    char data[1024];       // a file or directory, "dup" or "random"
    char data_format[16];  // auto | text | enwik8 | pg19 | tokens | npz | png | dup | random
    int image_shape[3];    // H, W, C of one image (0,0,0: not an image model); seq_len = H*W*C
    int image_fit;         // ImageFit: how PNG files of another size become H x W images
    double split_fractions[3];  // train, validation, test shares (text, tokens)
    int cross_docs;        // 1: training windows may cross document boundaries
    int whole_docs;        // 1: every training sample is one whole document, padded (io/dataset.h)
    char tokenizer[1024];  // a SentencePiece .model encoding text data (io/tokenizer.h), or "none" (bytes)
    int word_ppl;          // 1: evaluations also report perplexity per word (always for pg19)
    int dup_alphabet;      // duplication task: symbols are 1 .. dup_alphabet-1
    char out_dir[1024];
    char device[16];       // cpu | cuda
    Precision precision;   // fp32 | bf16 | tf32 (see Precision)
    int attn_reference;    // attn_impl: fast (0: CUDA attention as tensor-core GEMMs) |
                           // reference (1: the fused fp32 kernels); the CPU ignores it
    int log_every;
    int ckpt_every;        // steps between checkpoints; 0 = only the final one
    int keep_ckpts;        // newest checkpoints kept in out_dir; 0 = all
    int eval_every;        // steps between evaluations while training; 0 = never
    int eval_windows;      // windows per periodic evaluation; 0 = the whole split
    int watchdog_s;        // on several ranks: seconds a rank may wait in a collective
                           // before the job stops naming the silent rank; 0 = never
    // --- derived by config_finalize ---
    AttnKind layer_kind[MAX_LAYERS];
    int sp_sequence[2];    // by AttnKind: 1 = that kind runs sequence-sharded (sp > 1)
} Config;

// Defaults: a small model that trains on the shipped text out of the box.
void config_defaults(Config *c);

// Set one key from its text value. Returns 0, or -1 with a one-line message in
// err naming the key (unknown key, malformed or out-of-range value).
int config_set(Config *c, const char *key, const char *value, char *err, size_t errlen);

// Set from "key=value". Same contract as config_set.
int config_set_pair(Config *c, const char *pair, char *err, size_t errlen);

// Derive and validate. Returns 0, or -1 with a one-line message naming the key.
int config_finalize(Config *c, char *err, size_t errlen);

// Human-readable "key=value" listing of every key, one per line, into out.
void config_print(const Config *c, FILE *out);

// The value of one key as text that config_set reads back to the same value
// (doubles in the shortest form that round-trips exactly): config_print's
// right-hand side, and how checkpoints store the config. Returns 0, or -1 for
// an unknown key.
int config_get(const Config *c, const char *key, char *buf, size_t cap);

// The values data_format accepts, NULL-terminated ("auto" first).
extern const char *const DATA_FORMATS[];

// 1 when image_shape is set: one sample is one image of H*W*C subpixels.
static inline int config_is_image(const Config *c) { return c->image_shape[0] > 0; }
// "HxWxC" (or "none") into buf.
void config_image_shape_text(const Config *c, char *buf, size_t cap);

// Number of LSH layers in the finalized config.
int config_count_lsh_layers(const Config *c);

// Effective chunk length of a layer's attention (L when full attention).
int config_layer_chunk(const Config *c, int layer);

// Every key name, NULL-terminated (for help text and tests).
extern const char *const CONFIG_KEYS[];

// The keys that fix the parameter layout (tensor names and shapes), NULL-
// terminated: a checkpoint only loads into a model that agrees on all of them,
// and a resumed run may not change them. (param_layout_build reads exactly
// these config fields: the SHAPE rows of the table.)
extern const char *const CONFIG_SHAPE_KEYS[];

// 1 when key is one of CONFIG_SHAPE_KEYS, else 0.
int config_key_is_shape(const char *key);

// What a key means: its description column in CONFIG_TABLE (Markdown, one
// sentence or a few), or NULL for an unknown key. docs/configuration.md is
// generated from these (`reformer help config --markdown`).
const char *config_key_doc(const char *key);
