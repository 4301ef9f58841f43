// Datasets: picking the reader, indexing the windows of each split, the
// seeded training cursor and the evaluation walk. The readers (data_*.c)
// only collect documents.
#include "dataset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "data_source.h"
#include "rng.h"
#include "util.h"

static const char *const KIND_NAMES[N_DATA_KINDS] = {"text", "enwik8", "pg19", "tokens", "dup", "random", "npz", "png"};
static const char *const SPLIT_NAMES[N_SPLITS] = {"train", "validation", "test"};

const char *data_kind_name(DataKind k) { return k >= DATA_TEXT && k < N_DATA_KINDS ? KIND_NAMES[k] : "?"; }

const char *split_name(Split s) { return s >= SPLIT_TRAIN && s < N_SPLITS ? SPLIT_NAMES[s] : "?"; }

int split_parse(const char *name, Split *out) {
    for (int s = 0; s < N_SPLITS; s++)
        if (!strcmp(name, SPLIT_NAMES[s])) return *out = (Split)s, 0;
    if (!strcmp(name, "valid") || !strcmp(name, "val")) return *out = SPLIT_VALIDATION, 0;
    return -1;
}

// The RNG stream of training windows. Before the real-data formats existed
// the tag held DataKind's old values (text 0, dup 1, random 2); keeping them
// keeps every dup and random batch, and so the experiments, unchanged.
static uint32_t data_tag(DataKind k) {
    uint32_t stream = k == DATA_DUP ? 1 : k == DATA_RANDOM ? 2 : 0;
    return rng_tag(RNG_DATA, stream, 0);
}

// ------------------------------------------------------------ choosing a reader

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

// data_format=auto: by name for the synthetic sources, else by what the path
// is (see config `data_format` in the README).
static int detect_kind(const char *path, DataKind *kind, char *err, size_t errlen) {
    if (!strcmp(path, "dup")) return *kind = DATA_DUP, 0;
    if (!strcmp(path, "random")) return *kind = DATA_RANDOM, 0;
    struct stat st;
    if (stat(path, &st) != 0) return data_fail(err, errlen, "data: cannot open '%s': %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) return *kind = data_image_dir_kind(path), 0;
    // Reading a FIFO's first bytes would block, and a pipe cannot be mapped.
    if (!S_ISREG(st.st_mode)) return data_refuse_special("data", path, st.st_mode, err, errlen);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    if (ends_with(path, ".npz")) return *kind = DATA_NPZ, 0;
    if (ends_with(path, ".zip") || (!strcmp(base, "enwik8") && st.st_size == ENWIK8_BYTES)) return *kind = DATA_ENWIK8, 0;
    int32_t magic = 0;
    FILE *f = fopen(path, "rb");
    if (f) {
        if (fread(&magic, sizeof magic, 1, f) != 1) magic = 0;
        fclose(f);
    }
    *kind = magic == LLMC_TOKENS_MAGIC ? DATA_TOKENS : DATA_TEXT;
    return 0;
}

static int parse_kind(const Config *c, DataKind *kind, char *err, size_t errlen) {
    if (!strcmp(c->data_format, "auto")) return detect_kind(c->data, kind, err, errlen);
    for (int k = DATA_TEXT; k < N_DATA_KINDS; k++)
        if (!strcmp(c->data_format, KIND_NAMES[k])) return *kind = (DataKind)k, 0;
    return data_fail(err, errlen, "data_format: '%s' is not a known format", c->data_format);
}

// ------------------------------------------------------------------- indexing

// ceil((len - 1) / L): every token but the first is a target once.
static size_t eval_windows_of(size_t len, int L) {
    return len < 2 ? 0 : (len - 1 + (size_t)L - 1) / (size_t)L;
}

// Prefix sums over the documents of a split: offsets, training starts and
// evaluation windows. An image is one start and one window.
static void index_split(DataSplit *s, int L, int cross_docs, int whole_docs, int images) {
    s->doc_offsets = checked_calloc((size_t)s->n_docs + 1, sizeof *s->doc_offsets);
    s->train_starts = checked_calloc((size_t)s->n_docs + 1, sizeof *s->train_starts);
    s->eval_prefix = checked_calloc((size_t)s->n_docs + 1, sizeof *s->eval_prefix);
    for (long d = 0; d < s->n_docs; d++) {
        size_t len = s->docs[d].len;
        s->doc_offsets[d + 1] = s->doc_offsets[d] + len;
        s->train_starts[d + 1] = s->train_starts[d] + (images ? 1 : len > (size_t)L ? len - (size_t)L : 0);
        s->eval_prefix[d + 1] = s->eval_prefix[d] + (images ? 1 : eval_windows_of(len, L));
    }
    s->n_eval_windows = (long)s->eval_prefix[s->n_docs];
    if (whole_docs) {
        s->whole_pick = checked_calloc((size_t)s->n_docs + 1, sizeof *s->whole_pick);
        for (long d = 0; d < s->n_docs; d++)
            if (s->docs[d].len >= 2) s->whole_pick[s->n_whole_pick++] = d;
    }
    if (cross_docs) s->n_train_starts = s->n_tokens > (size_t)L ? s->n_tokens - (size_t)L : 0;
    else s->n_train_starts = s->train_starts[s->n_docs];
}

static int check_trainable(const Dataset *ds, char *err, size_t errlen) {
    const DataSplit *s = &ds->split[SPLIT_TRAIN];
    if (ds->whole_docs) {
        if (s->n_whole_pick > 0) return 0;
        return data_fail(err, errlen, "data: '%s': whole_docs=1 needs a train document of 2 tokens or more", ds->path);
    }
    if (s->n_train_starts > 0) return 0;
    if (data_kind_is_image(ds->kind))
        return data_fail(err, errlen, "data: '%s': the train split holds no image (raise the train share of "
                         "split_fractions, or add train_*.npz / train/*.png)", ds->path);
    if (ds->kind == DATA_PG19) {
        size_t longest = 0;
        for (long d = 0; d < s->n_docs; d++) longest = MAX(longest, s->docs[d].len);
        return data_fail(err, errlen,
                         "data: '%s': no book in train/ has seq_len+1=%d bytes (%ld books, the longest %zu bytes); "
                         "lower seq_len or set cross_docs=1",
                         ds->path, ds->seq_len + 1, s->n_docs, longest);
    }
    return data_fail(err, errlen,
                     "data: '%s': the train split has %zu tokens, fewer than seq_len+1=%d (lower seq_len or raise "
                     "the train share of split_fractions)",
                     ds->path, s->n_tokens, ds->seq_len + 1);
}

// -------------------------------------------------------------- open / close

int dataset_open(Dataset *ds, const Config *c, char *err, size_t errlen) {
    return dataset_open_tok(ds, c, NULL, err, errlen);
}

// The tokenizer of the run: tok, or config `tokenizer` loaded into
// ds->owned_tok; NULL for none. Its vocabulary must be vocab_size.
static int attach_tokenizer(Dataset *ds, const Config *c, const Tokenizer *tok, char *err, size_t errlen) {
    if (!tok && strcmp(c->tokenizer, "none")) {
        ds->owned_tok = tokenizer_load(c->tokenizer, "tokenizer", err, errlen);
        if (!ds->owned_tok) return -1;
        tok = ds->owned_tok;
    }
    if (!tok) return 0;
    if (ds->kind != DATA_TEXT && ds->kind != DATA_ENWIK8 && ds->kind != DATA_PG19)
        return data_fail(err, errlen,
                         "tokenizer: data_format=%s has no text to encode (a tokenizer applies to text, enwik8 and pg19 "
                         "data); set tokenizer=none",
                         data_kind_name(ds->kind));
    if (tokenizer_vocab_size(tok) != c->vocab_size)
        return data_fail(err, errlen,
                         "vocab_size: %d, but the tokenizer '%s' has %d pieces (leave vocab_size out: it follows from "
                         "the tokenizer)",
                         c->vocab_size, c->tokenizer, tokenizer_vocab_size(tok));
    ds->tok = tok;
    return 0;
}

int dataset_open_tok(Dataset *ds, const Config *c, const Tokenizer *tok, char *err, size_t errlen) {
    memset(ds, 0, sizeof *ds);
    ds->seq_len = c->seq_len;
    ds->vocab_size = c->vocab_size;
    ds->dup_alphabet = c->dup_alphabet;
    ds->cross_docs = c->cross_docs;
    ds->whole_docs = c->whole_docs;
    ds->seed = c->seed;
    ds->token_bytes = 1;
    snprintf(ds->path, sizeof ds->path, "%s", c->data);
    memcpy(ds->image_shape, c->image_shape, sizeof ds->image_shape);
    ds->image_fit = (ImageFit)c->image_fit;
    if (parse_kind(c, &ds->kind, err, errlen)) return -1;
    // An image model reads images only, a text model never (a checkpoint's
    // config brings its image_shape to eval and sample).
    char shape[64];
    config_image_shape_text(c, shape, sizeof shape);
    if (data_kind_is_image(ds->kind) && !config_is_image(c))
        return data_fail(err, errlen, "data: '%s' holds images (%s) but image_shape is none (a text model): set "
                         "image_shape=H,W,C, e.g. 64,64,3 for Imagenet64", c->data, KIND_NAMES[ds->kind]);
    if (data_kind_is_image(ds->kind) && c->whole_docs)
        return data_fail(err, errlen, "whole_docs: images are whole already (one image per window); leave it 0");
    if (!data_kind_is_image(ds->kind) && ds->kind != DATA_RANDOM && config_is_image(c))
        return data_fail(err, errlen, "data: '%s' is %s data, but image_shape=%s makes this an image model: give "
                         "npz or png images, or image_shape=none", c->data, KIND_NAMES[ds->kind], shape);
    if (attach_tokenizer(ds, c, tok, err, errlen)) {
        dataset_close(ds);
        return -1;
    }
    int rc = 0;
    switch (ds->kind) {
    case DATA_RANDOM: return 0;
    case DATA_DUP:
        if (c->seq_len < 4 || c->seq_len % 2)
            return data_fail(err, errlen, "seq_len: the duplication task needs an even seq_len >= 4, got %d", c->seq_len);
        return 0;
    case DATA_TEXT: rc = data_open_text(ds, c, err, errlen); break;
    case DATA_ENWIK8: rc = data_open_enwik8(ds, err, errlen); break;
    case DATA_PG19: rc = data_open_pg19(ds, err, errlen); break;
    case DATA_TOKENS:
        ds->token_bytes = 2;
        rc = data_open_tokens(ds, c, err, errlen);
        break;
    case DATA_NPZ:
    case DATA_PNG: rc = data_open_images(ds, c, err, errlen); break;
    case N_DATA_KINDS: break;
    }
    if (rc == 0 && ds->tok) rc = data_tokenize(ds, c, err, errlen);
    if (rc == 0) {
        for (int s = 0; s < N_SPLITS; s++)
            index_split(&ds->split[s], ds->seq_len, ds->cross_docs, ds->whole_docs, data_kind_is_image(ds->kind));
        rc = check_trainable(ds, err, errlen);
    }
    if (rc) dataset_close(ds);
    return rc;
}

void dataset_close(Dataset *ds) {
    for (long i = 0; i < ds->n_maps; i++) {
        munmap(ds->maps[i].addr, ds->maps[i].len);
        free(ds->maps[i].path);
    }
    free(ds->maps);
    free(ds->owned);
    for (int s = 0; s < N_SPLITS; s++) {
        DataSplit *sp = &ds->split[s];
        free(sp->docs);
        free(sp->doc_offsets);
        free(sp->train_starts);
        free(sp->eval_prefix);
        free(sp->whole_pick);
    }
    tokenizer_free(ds->owned_tok);
    memset(ds, 0, sizeof *ds);
}

// -------------------------------------------------------------------- windows

static inline int token_at(const Dataset *ds, const DataDoc *d, size_t i) {
    return ds->token_bytes == 1   ? ((const uint8_t *)d->data)[i]
           : ds->token_bytes == 2 ? ((const uint16_t *)d->data)[i]
                                  : (int)((const uint32_t *)d->data)[i];
}

// Index of the last entry of prefix[0..n] that is <= x (prefix ascending,
// prefix[0] = 0 <= x < prefix[n]): the document holding item x.
static long find_doc(const size_t *prefix, long n, size_t x) {
    long lo = 0, hi = n;  // prefix[lo] <= x < prefix[hi]
    while (hi - lo > 1) {
        long mid = lo + (hi - lo) / 2;
        if (prefix[mid] <= x) lo = mid;
        else hi = mid;
    }
    return lo;
}

// Tokens [pos, pos + L] of the split's concatenated documents as one window:
// tok = the first L, tgt = the last L. Crosses into the following documents
// when the window runs past the end of one (only with cross_docs).
static void copy_window(const Dataset *ds, const DataSplit *s, size_t pos, int *tok, int *tgt) {
    const int L = ds->seq_len;
    long d = find_doc(s->doc_offsets, s->n_docs, pos);
    size_t i_doc = pos - s->doc_offsets[d];
    for (int i = 0; i <= L; i++) {
        while (i_doc >= s->docs[d].len) d++, i_doc = 0;
        int t = token_at(ds, &s->docs[d], i_doc++);
        if (i < L) tok[i] = t;
        if (i > 0) tgt[i - 1] = t;
    }
}

void image_window(const uint8_t *x, int L, int *tokens, int *targets) {
    tokens[0] = 0;
    for (int i = 0; i < L; i++) {
        if (i + 1 < L) tokens[i + 1] = x[i];
        targets[i] = x[i];
    }
}

// One training window from a uniformly drawn start: every start position
// that leaves seq_len + 1 tokens inside its document (or, with cross_docs,
// inside the split) is equally likely, so long documents are drawn in
// proportion to their length. An image is drawn uniformly.
static void train_window(const Dataset *ds, uint64_t draw, int *tok, int *tgt) {
    const DataSplit *s = &ds->split[SPLIT_TRAIN];
    if (data_kind_is_image(ds->kind)) {
        image_window(s->docs[draw % (uint64_t)s->n_docs].data, ds->seq_len, tok, tgt);
        return;
    }
    size_t start = (size_t)(draw % s->n_train_starts), pos = start;
    if (!ds->cross_docs) {
        long d = find_doc(s->train_starts, s->n_docs, start);
        pos = s->doc_offsets[d] + (start - s->train_starts[d]);
    }
    copy_window(ds, s, pos, tok, tgt);
}

// One whole document in a window (dataset.h, dataset_batch): the document
// drawn by draw_doc, its left padding (or, for a long one, its cut) by
// draw_place.
static void whole_doc_window(const Dataset *ds, uint64_t draw_doc, uint64_t draw_place, int *tok, int *tgt) {
    const DataSplit *s = &ds->split[SPLIT_TRAIN];
    const size_t L = (size_t)ds->seq_len;
    const DataDoc *doc = &s->docs[s->whole_pick[draw_doc % (uint64_t)s->n_whole_pick]];
    // Window position i holds document token i - left (left < 0: a cut).
    long left = doc->len > L + 1 ? -(long)(draw_place % (uint64_t)(doc->len - L))   // a cut: offsets 0 .. len-L-1
                                 : (long)(draw_place % (uint64_t)(L + 2 - doc->len));  // padding: 0 .. L+1-len
    for (size_t i = 0; i < L; i++) {
        long p = (long)i - left;
        int in = p >= 0 && (size_t)p < doc->len, next_in = p + 1 >= 0 && (size_t)(p + 1) < doc->len;
        tok[i] = in ? token_at(ds, doc, (size_t)p) : 0;
        tgt[i] = in && next_in ? token_at(ds, doc, (size_t)p + 1) : -1;
    }
}

static void batch_windows(const Dataset *ds, uint32_t step, size_t first_seq, int n_seq, int *tokens, int *targets) {
    const int L = ds->seq_len;
    const uint32_t tag = data_tag(ds->kind);
    for (int b = 0; b < n_seq; b++) {
        int *tok = tokens + (size_t)b * L, *tgt = targets + (size_t)b * L;
        uint64_t stream = (uint64_t)(first_seq + (size_t)b) << 32;  // per-sequence counter space
        if (ds->kind == DATA_RANDOM) {
            for (int i = 0; i <= L; i++) {
                int t = (int)(rng_bits64(ds->seed, stream | (uint32_t)i, step, tag) % (uint64_t)ds->vocab_size);
                if (i < L) tok[i] = t;
                if (i > 0) tgt[i - 1] = t;
            }
        } else if (ds->kind == DATA_DUP) {
            // "0 w 0 w": w of L/2 - 1 symbols from 1 .. dup_alphabet-1.
            int w = L / 2 - 1;
            tok[0] = 0;
            tok[w + 1] = 0;
            for (int i = 0; i < w; i++) {
                int sym = 1 + (int)(rng_bits64(ds->seed, stream | (uint32_t)i, step, tag) % (uint64_t)(ds->dup_alphabet - 1));
                tok[1 + i] = sym;
                tok[w + 2 + i] = sym;
            }
            for (int i = 0; i < L; i++)
                tgt[i] = i >= dup_first_scored(L) && i <= dup_last_scored(L) ? tok[i + 1] : -1;
        } else if (ds->whole_docs) {
            whole_doc_window(ds, rng_bits64(ds->seed, stream, step, tag), rng_bits64(ds->seed, stream | 1, step, tag),
                             tok, tgt);
        } else {
            train_window(ds, rng_bits64(ds->seed, stream, step, tag), tok, tgt);
        }
    }
}

void dataset_batch(const Dataset *ds, uint32_t step, size_t first_seq, int n_seq, int *tokens, int *targets) {
    sigjmp_buf jump;
    if (sigsetjmp(jump, 0)) data_mapped_read_failed(ds);  // a file shrank under its mapping
    data_guard_begin(&jump);
    batch_windows(ds, step, first_seq, n_seq, tokens, targets);
    data_guard_end();
}

long dataset_eval_windows(const Dataset *ds, Split split) {
    if (split < SPLIT_TRAIN || split >= N_SPLITS) return 0;
    return ds->split[split].n_eval_windows;
}

void dataset_eval_window(const Dataset *ds, Split split, long window, int *tokens, int *targets) {
    const long n = dataset_eval_windows(ds, split);
    if (window < 0 || window >= n)
        FATAL(NULL, "evaluation window %ld of the %s split is out of range [0, %ld)", window, split_name(split), n);
    const DataSplit *s = &ds->split[split];
    const size_t L = (size_t)ds->seq_len;
    long d = find_doc(s->eval_prefix, s->n_docs, (size_t)window);
    const DataDoc *doc = &s->docs[d];
    if (data_kind_is_image(ds->kind)) {  // images live in memory: no mapping to guard
        image_window(doc->data, ds->seq_len, tokens, targets);
        return;
    }
    size_t base = ((size_t)window - s->eval_prefix[d]) * L;
    sigjmp_buf jump;
    if (sigsetjmp(jump, 0)) data_mapped_read_failed(ds);
    data_guard_begin(&jump);
    for (size_t i = 0; i < L; i++) {
        size_t p = base + i;
        tokens[i] = p < doc->len ? token_at(ds, doc, p) : 0;
        targets[i] = p + 1 < doc->len ? token_at(ds, doc, p + 1) : -1;
    }
    data_guard_end();
}

static inline int is_space(uint8_t b) { return b == ' ' || (b >= '\t' && b <= '\r'); }

void dataset_target_units(const Dataset *ds, const int *tokens, const int *targets, long n, double *bytes,
                          double *words) {
    double nb = 0, nw = 0;
    for (long i = 0; i < n; i++) {
        if (targets[i] < 0) continue;
        if (!ds->tok) {  // one byte per token
            nb += 1;
            nw += !is_space((uint8_t)targets[i]) && is_space((uint8_t)tokens[i]);
            continue;
        }
        int len, prev_len;
        const uint8_t *b = tokenizer_piece_bytes(ds->tok, targets[i], &len);
        const uint8_t *prev = tokenizer_piece_bytes(ds->tok, tokens[i], &prev_len);
        int space_before = prev_len == 0 || is_space(prev[prev_len - 1]);
        for (int j = 0; j < len; j++) {
            nw += !is_space(b[j]) && space_before;
            space_before = is_space(b[j]);
        }
        nb += len;
    }
    *bytes = nb;
    *words = nw;
}

void dataset_describe(const Dataset *ds, char *buf, size_t cap) {
    if (ds->kind == DATA_DUP) {
        snprintf(buf, cap, "dup (synthetic: duplication task, symbols 1..%d)", ds->dup_alphabet - 1);
        return;
    }
    if (ds->kind == DATA_RANDOM) {
        snprintf(buf, cap, "random (synthetic: uniform tokens below %d)", ds->vocab_size);
        return;
    }
    int n = snprintf(buf, cap, "%s %s", data_kind_name(ds->kind), ds->path);
    if (data_kind_is_image(ds->kind))
        n += snprintf(buf + n, cap - (size_t)n, " (images %dx%dx%d, one per window)", ds->image_shape[0],
                      ds->image_shape[1], ds->image_shape[2]);
    for (int s = 0; s < N_SPLITS && n >= 0 && (size_t)n < cap; s++) {
        const DataSplit *sp = &ds->split[s];
        n += snprintf(buf + n, cap - (size_t)n, " | %s %ld doc%s %zu tokens", split_name((Split)s), sp->n_docs,
                      sp->n_docs == 1 ? "" : "s", sp->n_tokens);
    }
}
