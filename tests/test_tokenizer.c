// Tests of the SentencePiece tokenizer (io/tokenizer.h) and of the datasets
// that encode with it (io/data_tokenize.c), the bytes and words a window's
// targets stand for, and whole-document training samples (io/dataset.c).
// Each test trains a small model on the first 200 KB of tinyshakespeare in
// its own temporary directory (about a second).
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "dataset.h"
#include "rng.h"
#include "tokenizer.h"

#define TMP_DIR_NAME "reformer-test-tokenizer"
#include "tmp_dir.h"

#define ERRLEN 2048

TestSuite(tokenizer, .init = make_tmp_dir, .fini = remove_tmp_dir, .timeout = 120);

static char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    cr_assert_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return buf;
}

// A model of `vocab` pieces trained on the first `bytes` of tinyshakespeare
// (written to tmp_dir/train.txt), saved as tmp_dir/<name>.
static Tokenizer *train_model(const char *name, int vocab, const char *type, size_t bytes) {
    size_t n;
    char *text = read_file("data/tinyshakespeare.txt", &n);
    if (bytes < n) n = bytes;
    write_file(tmp_path(0, "train.txt"), text, n);
    const uint8_t *texts[1] = {(const uint8_t *)text};
    char err[ERRLEN];
    cr_assert_eq(tokenizer_train(texts, &n, 1, vocab, type, 0, tmp_path(1, name), err, sizeof err), 0, "%s", err);
    free(text);
    Tokenizer *t = tokenizer_load(tmp_path(1, name), "tokenizer", err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(tokenizer_vocab_size(t), vocab);
    return t;
}

static void assert_round_trip(const Tokenizer *t, const uint8_t *text, size_t n, const char *what) {
    int32_t *ids = NULL;
    size_t n_ids = 0, cap = 0;
    char err[ERRLEN];
    cr_assert_eq(tokenizer_encode(t, text, n, &ids, &n_ids, &cap, err, sizeof err), 0, "%s", err);
    for (size_t i = 0; i < n_ids; i++) cr_assert(ids[i] >= 0 && ids[i] < tokenizer_vocab_size(t), "%s: id %d", what, ids[i]);
    int *as_int = malloc((n_ids + 1) * sizeof(int));
    for (size_t i = 0; i < n_ids; i++) as_int[i] = ids[i];
    size_t m = tokenizer_decode(t, as_int, n_ids, NULL);
    uint8_t *back = malloc(m + 1);
    cr_assert_eq(tokenizer_decode(t, as_int, n_ids, back), m);
    cr_assert_eq(m, n, "%s: %zu bytes decode to %zu", what, n, m);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(back[i], text[i], "%s: byte %zu is %02x, decoded %02x", what, i, text[i], back[i]);
    free(back);
    free(as_int);
    free(ids);
}

// UTF-8 of code point cp into out; returns its length.
static int utf8(uint32_t cp, uint8_t *out) {
    if (cp < 0x80) return out[0] = (uint8_t)cp, 1;
    if (cp < 0x800) return out[0] = (uint8_t)(0xC0 | cp >> 6), out[1] = (uint8_t)(0x80 | (cp & 63)), 2;
    if (cp < 0x10000)
        return out[0] = (uint8_t)(0xE0 | cp >> 12), out[1] = (uint8_t)(0x80 | (cp >> 6 & 63)),
               out[2] = (uint8_t)(0x80 | (cp & 63)), 3;
    return out[0] = (uint8_t)(0xF0 | cp >> 18), out[1] = (uint8_t)(0x80 | (cp >> 12 & 63)),
           out[2] = (uint8_t)(0x80 | (cp >> 6 & 63)), out[3] = (uint8_t)(0x80 | (cp & 63)), 4;
}

// decode(encode(x)) == x, byte for byte: the training text, random valid
// UTF-8 (every plane, NUL, U+2581 which SentencePiece uses for the space,
// runs of spaces and newlines), random bytes (mostly invalid UTF-8) and the
// edge forms (overlong, surrogate, truncated).
Test(tokenizer, round_trip_any_bytes) {
    const char *types[2] = {"unigram", "bpe"};
    for (int k = 0; k < 2; k++) {
        Tokenizer *t = train_model("m.model", 400, types[k], 100000);
        size_t n;
        char *text = read_file("data/tinyshakespeare.txt", &n);
        assert_round_trip(t, (const uint8_t *)text, 300000, "tinyshakespeare");
        free(text);
        uint8_t buf[40000];
        for (int trial = 0; trial < 20; trial++) {
            size_t len = 0;
            while (len < sizeof buf - 8) {
                uint64_t r = rng_bits64(7, (uint64_t)trial, (uint32_t)len, 0);
                uint32_t pick = (uint32_t)(r % 10), cp;
                if (pick < 4) cp = "the quick brown fox\n  "[r % 22];
                else if (pick == 4) cp = (uint32_t)(r >> 8) % 0x80;  // any ASCII, NUL and controls too
                else if (pick == 5) cp = 0x2581;
                else if (pick == 6) cp = 0x80 + (uint32_t)(r >> 8) % 0x780;
                else if (pick == 7) cp = 0x800 + (uint32_t)(r >> 8) % 0xF800;
                else cp = 0x10000 + (uint32_t)(r >> 8) % 0x100000;
                if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
                len += (size_t)utf8(cp, buf + len);
            }
            assert_round_trip(t, buf, len, "random UTF-8");
            for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)rng_bits64(9, (uint64_t)trial, (uint32_t)i, 0);
            assert_round_trip(t, buf, sizeof buf, "random bytes");
        }
        static const char *edges[] = {"\xC0\xAF", "\xED\xA0\x80", "a\xE2\x96", "\xF4\x90\x80\x80", "\xFF\xFE", "\x80",
                                      "x\xE2\x96\x81y", "\0\0a"};
        static const size_t edge_len[] = {2, 3, 3, 4, 2, 1, 5, 3};
        for (int i = 0; i < 8; i++) assert_round_trip(t, (const uint8_t *)edges[i], edge_len[i], edges[i]);
        tokenizer_free(t);
    }
}

// The encoder cuts long documents after newlines (data_tokenize.c): that is
// the same as encoding each line and its newline in turn, because no piece of
// a `reformer tokenize` model spans a newline.
Test(tokenizer, newline_cuts_do_not_change_ids) {
    Tokenizer *t = train_model("m.model", 600, "unigram", 100000);
    size_t n;
    char *text = read_file("data/tinyshakespeare.txt", &n);
    n = 50000;
    int32_t *whole = NULL, *parts = NULL;
    size_t n_whole = 0, n_parts = 0, c1 = 0, c2 = 0;
    char err[ERRLEN];
    cr_assert_eq(tokenizer_encode(t, (const uint8_t *)text, n, &whole, &n_whole, &c1, err, sizeof err), 0);
    for (size_t b = 0; b < n;) {
        const char *nl = memchr(text + b, '\n', n - b);
        size_t e = nl ? (size_t)(nl - text) + 1 : n;
        cr_assert_eq(tokenizer_encode(t, (const uint8_t *)text + b, e - b, &parts, &n_parts, &c2, err, sizeof err), 0);
        b = e;
    }
    cr_assert_eq(n_parts, n_whole);
    cr_assert_eq(memcmp(parts, whole, n_whole * sizeof *whole), 0);
    cr_assert_lt(n_whole, n / 2, "a 600-piece model should average over 2 bytes a token here (%zu tokens)", n_whole);
    free(whole), free(parts), free(text);
    tokenizer_free(t);
}

Test(tokenizer, missing_corrupt_and_byteless_models_are_one_line_errors) {
    char err[ERRLEN];
    cr_assert_null(tokenizer_load(tmp_path(0, "nope.model"), "tokenizer", err, sizeof err));
    cr_assert(strstr(err, "tokenizer: cannot open") && strstr(err, "nope.model") && !strchr(err, '\n'), "%s", err);
    write_file(tmp_path(0, "bad.model"), "\x0a\x05garbage and more", 18);
    cr_assert_null(tokenizer_load(tmp_path(0, "bad.model"), "tokenizer", err, sizeof err));
    cr_assert(strstr(err, "not a SentencePiece model") && strstr(err, "bad.model") && !strchr(err, '\n'), "%s", err);
    // A truncated real model.
    Tokenizer *t = train_model("m.model", 320, "unigram", 50000);
    size_t n;
    const void *bytes = tokenizer_model_bytes(t, &n);
    write_file(tmp_path(0, "cut.model"), bytes, n / 2);
    cr_assert_null(tokenizer_load(tmp_path(0, "cut.model"), "tokenizer", err, sizeof err));
    cr_assert(strstr(err, "cut.model") && !strchr(err, '\n'), "%s", err);
    // The same bytes from memory give the same model (a checkpoint's copy).
    Tokenizer *u = tokenizer_from_bytes(bytes, n, "ckpt", err, sizeof err);
    cr_assert_not_null(u, "%s", err);
    cr_assert_eq(tokenizer_identity(u), tokenizer_identity(t));
    tokenizer_free(u);
    tokenizer_free(t);
}

static Config text_config(const char *data, const char *model, int seq_len) {
    Config c;
    config_defaults(&c);
    char err[ERRLEN];
    cr_assert_eq(config_set(&c, "data", data, err, sizeof err), 0, "%s", err);
    cr_assert_eq(config_set(&c, "tokenizer", model, err, sizeof err), 0, "%s", err);
    cr_assert_eq(config_set(&c, "out_dir", tmp_path(3, "run"), err, sizeof err), 0, "%s", err);
    c.seq_len = seq_len;
    return c;
}

static int token_of(const Dataset *ds, const DataDoc *d, size_t i) {
    return ds->token_bytes == 2 ? ((const uint16_t *)d->data)[i] : (int)((const uint32_t *)d->data)[i];
}

// A tokenized text source: its splits are the byte splits encoded (each
// split's tokens decode to that split's bytes); the cache is written once and
// mapped by the next open (whose file is not rewritten), and a changed data
// file or another model gets another cache file.
Test(tokenizer, dataset_encodes_once_into_a_cache) {
    Tokenizer *t = train_model("m.model", 500, "unigram", 100000);
    Config c = text_config(tmp_path(0, "train.txt"), tmp_path(1, "m.model"), 64);
    c.vocab_size = 500;
    char err[ERRLEN];
    Dataset ds;
    cr_assert_eq(dataset_open(&ds, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(ds.token_bytes, 2);
    cr_assert(ds.token_cache[0], "no cache file named");
    size_t n;
    char *text = read_file(tmp_path(0, "train.txt"), &n);
    size_t begin = 0;
    for (int s = 0; s < N_SPLITS; s++) {
        const DataDoc *d = &ds.split[s].docs[0];
        int *ids = malloc(d->len * sizeof(int));
        for (size_t i = 0; i < d->len; i++) ids[i] = token_of(&ds, d, i);
        size_t m = tokenizer_decode(t, ids, d->len, NULL);
        uint8_t *back = malloc(m);
        tokenizer_decode(t, ids, d->len, back);
        cr_assert_eq(memcmp(back, text + begin, m), 0, "split %d does not decode to its bytes", s);
        begin += m;
        free(back), free(ids);
    }
    cr_assert_eq(begin, n, "the splits decode to %zu of %zu bytes", begin, n);
    struct stat st1, st2;
    cr_assert_eq(stat(ds.token_cache, &st1), 0);
    char first[sizeof ds.token_cache];
    snprintf(first, sizeof first, "%s", ds.token_cache);
    size_t tokens = ds.split[SPLIT_TRAIN].n_tokens;
    dataset_close(&ds);
    Dataset again;
    cr_assert_eq(dataset_open(&again, &c, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(again.token_cache, first);
    cr_assert_eq(stat(first, &st2), 0);
    cr_assert(st1.st_mtim.tv_sec == st2.st_mtim.tv_sec && st1.st_mtim.tv_nsec == st2.st_mtim.tv_nsec && st1.st_ino == st2.st_ino,
              "the cache was written again");
    cr_assert_eq(again.split[SPLIT_TRAIN].n_tokens, tokens);
    dataset_close(&again);
    // Another data file: another cache.
    write_file(tmp_path(0, "train.txt"), text, n - 1000);
    Dataset other;
    cr_assert_eq(dataset_open(&other, &c, err, sizeof err), 0, "%s", err);
    cr_assert_str_neq(other.token_cache, first);
    snprintf(first, sizeof first, "%s", other.token_cache);
    dataset_close(&other);
    // A damaged cache is refused in one line naming it.
    write_file(first, "RFTOKC1\nxx", 10);
    cr_assert_neq(dataset_open(&other, &c, err, sizeof err), 0);
    cr_assert(strstr(err, "damaged") && strstr(err, first) && !strchr(err, '\n'), "%s", err);
    free(text);
    tokenizer_free(t);
}

Test(tokenizer, dataset_refuses_vocab_mismatch_and_non_text_sources) {
    Tokenizer *t = train_model("m.model", 320, "unigram", 50000);
    char err[ERRLEN];
    Dataset ds;
    Config c = text_config(tmp_path(0, "train.txt"), tmp_path(1, "m.model"), 64);
    c.vocab_size = 256;
    cr_assert_neq(dataset_open(&ds, &c, err, sizeof err), 0);
    cr_assert(strstr(err, "vocab_size: 256") && strstr(err, "320 pieces") && !strchr(err, '\n'), "%s", err);
    c = text_config("dup", tmp_path(1, "m.model"), 64);
    c.vocab_size = 320;
    cr_assert_neq(dataset_open(&ds, &c, err, sizeof err), 0);
    cr_assert(strstr(err, "tokenizer: data_format=dup") && !strchr(err, '\n'), "%s", err);
    tokenizer_free(t);
}

// Bytes and words of targets, by hand. Bytes "ab  c\nde f": with each byte
// a token, the targets are every byte but the first; words start at 'c', 'd'
// and 'f' (the 'a' that starts the first word is the unscored first token).
Test(tokenizer, target_bytes_and_words_by_hand) {
    Dataset ds;
    memset(&ds, 0, sizeof ds);
    const char *text = "ab  c\nde f";
    int tok[9], tgt[9];
    for (int i = 0; i < 9; i++) tok[i] = (uint8_t)text[i], tgt[i] = (uint8_t)text[i + 1];
    double bytes, words;
    dataset_target_units(&ds, tok, tgt, 9, &bytes, &words);
    cr_assert_eq(bytes, 9);
    cr_assert_eq(words, 3);
    tgt[3] = -1;  // 'c' unscored: its word is not counted, nor its byte
    dataset_target_units(&ds, tok, tgt, 9, &bytes, &words);
    cr_assert_eq(bytes, 8);
    cr_assert_eq(words, 2);
    // With a tokenizer: bytes are the pieces' bytes, words start inside them.
    Tokenizer *t = train_model("m.model", 400, "unigram", 100000);
    ds.tok = t;
    const char *line = "First Citizen:\nBefore we proceed any further, hear me speak.\n";
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    char err[ERRLEN];
    cr_assert_eq(tokenizer_encode(t, (const uint8_t *)line, strlen(line), &ids, &n, &cap, err, sizeof err), 0);
    int *tk = malloc(n * sizeof(int)), *tg = malloc(n * sizeof(int));
    for (size_t i = 0; i + 1 < n; i++) tk[i] = ids[i], tg[i] = ids[i + 1];
    dataset_target_units(&ds, tk, tg, (long)n - 1, &bytes, &words);
    int first_len;
    tokenizer_piece_bytes(t, ids[0], &first_len);
    cr_assert_eq(bytes, (double)(strlen(line) - (size_t)first_len), "bytes %g, first piece %d", bytes, first_len);
    // 10 words; "First" starts in the unscored first token.
    cr_assert_eq(words, 9, "words %g", words);
    free(tk), free(tg), free(ids);
    tokenizer_free(t);
}

// Whole documents as samples on a PG19 directory of books of known lengths:
// every sample is one book, padding is never a target, each real token but a
// book's first is a target exactly once and in order, books longer than the
// window are cut to a contiguous run, and samples are a function of (seed,
// step, sequence) only (a second open gives the same: resumes are exact).
Test(tokenizer, whole_docs_windows) {
    const int L = 64;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/pg", tmp_dir);
    mkdir(dir, 0755);
    const char *splits[3] = {"train", "validation", "test"};
    // Book b (train) holds lengths[b] bytes; byte i of book b is 'A' + b
    // followed by position digits, so a window's book and offset are known.
    const size_t lengths[4] = {10, 40, 65, 300};
    for (int s = 0; s < 3; s++) {
        char sub[1100];
        snprintf(sub, sizeof sub, "%s/%s", dir, splits[s]);
        mkdir(sub, 0755);
        for (int b = 0; b < (s == 0 ? 4 : 1); b++) {
            char path[1200], buf[300];
            for (size_t i = 0; i < lengths[b]; i++) buf[i] = (char)(i == 0 ? 'A' + b : 'a' + (int)((i * 7 + (size_t)b) % 26));
            snprintf(path, sizeof path, "%s/%d.txt", sub, b + 1);
            write_file(path, buf, lengths[b]);
        }
    }
    Config c;
    config_defaults(&c);
    char err[ERRLEN];
    cr_assert_eq(config_set(&c, "data", dir, err, sizeof err), 0);
    c.seq_len = L;
    c.whole_docs = 1;
    Dataset ds, ds2;
    cr_assert_eq(dataset_open(&ds, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(dataset_open(&ds2, &c, err, sizeof err), 0, "%s", err);
    enum { B = 8, STEPS = 60 };
    int tok[B * L], tgt[B * L], tok2[B * L], tgt2[B * L];
    int seen[4] = {0}, lefts_short[64] = {0};
    for (uint32_t step = 1; step <= STEPS; step++) {
        dataset_batch(&ds, step, 0, B, tok, tgt);
        dataset_batch(&ds2, step, 0, B, tok2, tgt2);
        cr_assert_eq(memcmp(tok, tok2, sizeof tok), 0, "step %u: not a function of the step", step);
        cr_assert_eq(memcmp(tgt, tgt2, sizeof tgt), 0);
        for (int b = 0; b < B; b++) {
            const int *x = tok + b * L, *y = tgt + b * L;
            // The book: its first byte (a capital) is in the window unless cut.
            int left = -1, book = -1;
            for (int i = 0; i < L; i++)
                if (x[i] >= 'A' && x[i] <= 'D') left = i, book = x[i] - 'A';
            if (book < 0 || book == 3) {  // a cut: only the 300-byte book is longer than L + 1; no padding
                for (int i = 0; i < L; i++) {
                    cr_assert(x[i] >= 'a' - 32 && y[i] >= 'a', "cut window: padding at %d", i);
                    if (i + 1 < L) cr_assert_eq(y[i], x[i + 1]);
                }
                seen[3]++;
                continue;
            }
            cr_assert_leq(lengths[book], (size_t)L + 1, "book %d of %zu bytes was not cut", book, lengths[book]);
            seen[book]++;
            if (book == 0) lefts_short[left]++;
            int n = (int)lengths[book], targets = 0;
            for (int i = 0; i < L; i++) {
                int in = i >= left && i < left + n, next = i + 1 >= left && i + 1 < left + n;
                if (!in) cr_assert_eq(x[i], 0, "padding token at %d", i);
                if (!(in && next)) cr_assert_eq(y[i], -1, "padding scored at %d (book %d, left %d)", i, book, left);
                else {
                    if (i + 1 < L) cr_assert_eq(y[i], x[i + 1], "target %d is not the next token", i);
                    targets++;
                }
            }
            cr_assert_eq(targets, n - 1, "book %d: %d targets, expected %d", book, targets, n - 1);
        }
    }
    for (int b = 0; b < 4; b++) cr_assert_gt(seen[b], 40, "book %d drawn %d times of %d", b, seen[b], B * STEPS);
    int distinct = 0;
    for (int i = 0; i < 64; i++) distinct += lefts_short[i] > 0;
    cr_assert_gt(distinct, 20, "the 10-byte book's left padding took only %d values", distinct);
    for (int i = L + 2 - 10; i < L; i++) cr_assert_eq(lefts_short[i], 0, "left padding %d leaves no room", i);
    dataset_close(&ds);
    dataset_close(&ds2);
}
