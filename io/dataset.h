// Training and evaluation data (DESIGN.md, Files; README, "Data").
//
// Sources, chosen by config `data_format` (auto infers it from `data`):
//   text    any file, one byte per token; split into train/validation/test by
//           `split_fractions` (default 0.9,0.05,0.05), contiguously in that order
//   enwik8  the raw 100,000,000-byte file or enwik8.zip (read with libzip):
//           bytes [0, 90M) train, [90M, 95M) validation, [95M, 100M) test
//   pg19    a directory of train/, validation/, test/ holding <book_id>.txt
//           (optional metadata.csv); every book is one document, and training
//           windows never cross a book boundary unless `cross_docs` = 1
//   tokens  a pre-tokenized file in llm.c's format (256 int32 header: magic
//           20240520, version 1, token count; then uint16 tokens), split by
//           `split_fractions` like text
//   npz     downsampled ImageNet (Imagenet32/64): .npz batches whose array
//           `data` is uint8 [N, H*W*C], each row channel-planar (all R, then G,
//           then B); `labels` and others are ignored. A directory: train_*.npz
//           is the train split, val_*.npz validation (test_*.npz test); one
//           file is split by image with `split_fractions`
//   png     a directory of PNG files: train/, validation/, test/ when it has
//           train/, else its *.png split by image with `split_fractions` (in
//           name order); sized to image_shape by `image_fit`
//   dup     the paper's duplication task "0 w 0 w" (synthetic)
//   random  uniform random tokens (benchmarks)
//
// With config `tokenizer` (a SentencePiece .model, io/tokenizer.h) the text
// sources (text, enwik8, pg19) are encoded: each document of each split (the
// same byte documents as without it, so splits hold the same text) becomes a
// run of subword tokens. Encoding happens once, into a token cache file
// (data_tokenize.c) keyed by the model's and the data's identity; a restart,
// another rank or another run with the same model maps the cached tokens.
//
// With config `whole_docs` every training sample is one whole document
// (dataset_batch): see there.
//
// Files are memory-mapped, never read whole (a compressed enwik8.zip is the
// exception: it is inflated once into memory, and so are images, decoded into
// raster order). A split is a list of documents, each a contiguous run of
// tokens.
//
// Images (npz, png; config image_shape = H,W,C): one document is one image of
// L = H*W*C subpixels in raster order (row, column, channel), and one window
// is one whole image: tokens [0, x_0 .. x_{L-2}] (0 starts every image, as
// trax shifts images right), targets [x_0 .. x_{L-1}], every subpixel scored.
// Training draws images uniformly; evaluation walks every image once.
//
// Training draws windows from a seeded, resumable cursor: the window of
// global sequence s at step t is a pure function of (seed, t, s), so a run
// resumes from its step alone and data-parallel replicas (different s) read
// different windows. Evaluation walks a whole split in non-overlapping
// windows, document by document.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "tokenizer.h"

typedef enum { DATA_TEXT = 0, DATA_ENWIK8, DATA_PG19, DATA_TOKENS, DATA_DUP, DATA_RANDOM, DATA_NPZ, DATA_PNG,
               N_DATA_KINDS } DataKind;
typedef enum { SPLIT_TRAIN = 0, SPLIT_VALIDATION = 1, SPLIT_TEST = 2, N_SPLITS = 3 } Split;

typedef struct {
    const void *data;  // uint8_t tokens (bytes), uint16_t (DATA_TOKENS, encoded) or uint32_t (encoded, vocab > 65536)
    size_t len;        // tokens
} DataDoc;

typedef struct {
    DataDoc *docs;
    long n_docs, cap_docs;
    size_t n_tokens;         // sum of document lengths
    size_t *doc_offsets;     // [n_docs + 1] prefix sums of document lengths
    // Training windows: [n_docs + 1] prefix sums of the start positions that
    // leave seq_len + 1 tokens inside the document (len - seq_len each).
    size_t *train_starts;
    // Start positions a training window draws from: train_starts[n_docs], or
    // with cross_docs every position of the concatenated split that leaves
    // seq_len + 1 tokens (n_tokens - seq_len).
    size_t n_train_starts;
    // Evaluation windows: [n_docs + 1] prefix sums of windows per document.
    size_t *eval_prefix;
    long n_eval_windows;
    // whole_docs: the documents a training sample draws from (those with a
    // target: 2 tokens or more).
    long *whole_pick;
    long n_whole_pick;
} DataSplit;

typedef struct {
    DataKind kind;
    char path[1024];
    int token_bytes;         // 1 (bytes), 2 (uint16 tokens) or 4 (uint32 tokens)
    DataSplit split[N_SPLITS];
    int seq_len, vocab_size, dup_alphabet, cross_docs, whole_docs;
    const Tokenizer *tok;    // the text sources' encoder, or NULL (bytes)
    Tokenizer *owned_tok;    // tok when dataset_open loaded it from config `tokenizer`
    char token_cache[2200];  // the token cache file mapped (with tok)
    uint64_t seed;
    // Mappings and buffers to release.
    // Each mapped file with what identified it when opened (stat: device,
    // inode, modification and change times in ns), to detect a rewrite.
    struct DataMap {
        void *addr;
        size_t len;
        char *path;
        unsigned long long dev, ino;
        long long mtime_ns, ctime_ns;
    } *maps;
    long n_maps, cap_maps;
    void *owned;             // inflated enwik8.zip, or every decoded image
    size_t owned_len, owned_cap;  // images: bytes used and allocated in owned
    int image_shape[3];      // H, W, C (image formats)
    ImageFit image_fit;
} Dataset;

static inline int data_kind_is_image(DataKind k) { return k == DATA_NPZ || k == DATA_PNG; }

// The unit of bits per target: "bits per dim" (images: per subpixel) or
// "bits per byte"; short: "bpd" or "bpb".
static inline const char *dataset_bits_unit(const Dataset *ds, int is_short) {
    return data_kind_is_image(ds->kind) ? (is_short ? "bpd" : "bits per dim") : (is_short ? "bpb" : "bits per byte");
}

// One image [L] as its window: tokens [0, x_0 .. x_{L-2}], targets x.
void image_window(const uint8_t *x, int L, int *tokens, int *targets);

// Open the source named by config `data` in format `data_format`, every
// split at once. Returns 0, or -1 with a one-line message in err naming the
// file (and, for a bad value, the key): a missing, empty or too short file, a
// PG19 directory without books, an enwik8 file of the wrong size, a token
// file with a bad header or a token >= vocab_size.
// With config tokenizer != none, also a missing or corrupt .model file, a
// vocab_size other than the model's, a tokenizer given with a source that is
// not text (dup, random, tokens), or a token cache that cannot be written.
int dataset_open(Dataset *ds, const Config *c, char *err, size_t errlen);
// The same, encoding with tok (not NULL: a checkpoint's tokenizer) instead of
// loading config `tokenizer`; tok must outlive ds.
int dataset_open_tok(Dataset *ds, const Config *c, const Tokenizer *tok, char *err, size_t errlen);
void dataset_close(Dataset *ds);

// Training windows: sequences [first_seq, first_seq + n_seq) of the global
// batch of `step` (data-parallel replica r passes first_seq = r * batch).
// tokens and targets are [n_seq * seq_len]; targets < 0 are not scored (the
// duplication task scores only the second copy).
//
// whole_docs: sample s of step t is one document, drawn uniformly from the
// train split by (seed, t, s), placed in the seq_len + 1 positions of the
// window at a left offset drawn uniformly from [0, seq_len + 1 - n] (n its
// tokens); the positions left and right of it are padding (token 0, target
// -1), so the loss counts its real tokens only, each but its first a target
// exactly once. A document longer than seq_len + 1 tokens is cut: the window
// holds a contiguous run of seq_len + 1 of its tokens from an offset drawn
// uniformly over the document, so over training every part of a long book is
// seen (no padding then).
void dataset_batch(const Dataset *ds, uint32_t step, size_t first_seq, int n_seq, int *tokens, int *targets);

// Evaluation windows of a split, in order: document by document, window w of
// a document covers its tokens [w*L, w*L + L) predicting [w*L + 1, w*L + L + 1);
// the last window of a document is padded (token 0, target -1). Every token
// of a document but its first is a target exactly once. Synthetic sources
// (dup, random) have no splits and 0 windows.
long dataset_eval_windows(const Dataset *ds, Split split);
void dataset_eval_window(const Dataset *ds, Split split, long window, int *tokens, int *targets);

// What the scored targets of a window stand for in text: the bytes they
// decode to, and the whitespace-separated words that start in them (a word
// starts at a byte that is not ASCII whitespace following one that is;
// tokens[i] is the token before targets[i], so its last byte decides). Byte
// sources: one byte per target. Bits per byte and perplexity per word of an
// evaluation are computed from these sums (launch/evaluate.h).
void dataset_target_units(const Dataset *ds, const int *tokens, const int *targets, long n, double *bytes,
                          double *words);

// "train", "validation", "test"; split_parse accepts those (and "valid",
// "val"), returning 0 or -1.
const char *split_name(Split s);
int split_parse(const char *name, Split *out);
// "text", "enwik8", ...
const char *data_kind_name(DataKind k);

// Is every mapped file as it was when opened? A file rewritten in place
// (`cp other data.txt`, `dd conv=notrunc`) keeps its inode but gets a new
// change time (ctime, which no tool can set back) and mtime: a mapping of it
// then reads the new bytes, so training would go on with other data. Returns
// 0, or -1 with a one-line message naming the file in err. A file replaced by
// rename (a new inode at the path) is not a change: the run keeps reading the
// old one, which it still maps.
int dataset_check_unchanged(const Dataset *ds, char *err, size_t errlen);

// One line: format, documents and tokens per split.
void dataset_describe(const Dataset *ds, char *buf, size_t cap);

// Duplication task layout for length L: "0 w 0 w", |w| = L/2 - 1. The scored
// targets are positions [first, last] (predicting the second copy of w).
static inline int dup_first_scored(int L) { return L / 2; }
static inline int dup_last_scored(int L) { return L - 2; }
