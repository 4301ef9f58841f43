// Tests of the datasets (io/dataset.c and the readers io/data_*.c) on files
// generated here in a temporary directory: enwik8 (raw and zipped), a PG19
// tree, llm.c token files and plain text. Every byte of the generated data
// tells where it came from, so a window's source offset (and book) is
// recovered from its content and checked against the split it must lie in.
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zip.h>

#include "config.h"
#include "dataset.h"
#include "rng.h"

#define TMP_DIR_NAME "reformer-test-dataset"
#include "tmp_dir.h"

#define ERRLEN 2048
#define MB (1000u * 1000u)

TestSuite(dataset, .init = make_tmp_dir, .fini = remove_tmp_dir, .timeout = 60);

static void make_dir(const char *path) { cr_assert_eq(mkdir(path, 0755), 0, "mkdir %s failed", path); }

static void set(Config *c, const char *key, const char *value) {
    char err[ERRLEN];
    cr_assert_eq(config_set(c, key, value, err, sizeof err), 0, "%s=%s: %s", key, value, err);
}

// Defaults with data, data_format and seq_len set.
static Config config_for(const char *data, const char *format, int seq_len) {
    Config c;
    config_defaults(&c);
    char len[32];
    snprintf(len, sizeof len, "%d", seq_len);
    set(&c, "data", data);
    set(&c, "data_format", format);
    set(&c, "seq_len", len);
    return c;
}

static void open_ok(Dataset *ds, const Config *c) {
    char err[ERRLEN] = "";
    cr_assert_eq(dataset_open(ds, c, err, sizeof err), 0, "dataset_open(%s) failed: %s", c->data, err);
}

// dataset_open fails with one line naming every string in names.
static void open_fails(const Config *c, const char *const *names) {
    Dataset ds;
    char err[ERRLEN] = "";
    cr_assert_eq(dataset_open(&ds, c, err, sizeof err), -1, "dataset_open(%s, %s) was accepted", c->data, c->data_format);
    cr_assert(err[0] && strchr(err, '\n') == NULL, "error is empty or not one line: '%s'", err);
    for (int i = 0; names[i]; i++)
        cr_assert(strstr(err, names[i]) != NULL, "error '%s' does not name '%s'", err, names[i]);
}
#define OPEN_FAILS(c, ...) open_fails(c, (const char *const[]){__VA_ARGS__, NULL})

// ------------------------------------------------------------------ enwik8

// The generated enwik8: 8-byte records, 7 hex digits of the record number
// then '\n', so any 16 consecutive bytes tell their offset.
static uint8_t enwik8_byte(size_t i) {
    size_t rec = i / 8, k = i % 8;
    return k == 7 ? '\n' : (uint8_t)"0123456789abcdef"[(rec >> (4 * (6 - k))) & 0xf];
}

static void write_enwik8(const char *path) {
    uint8_t *buf = malloc(100 * MB);
    cr_assert_not_null(buf);
    for (size_t i = 0; i < 100 * MB; i++) buf[i] = enwik8_byte(i);
    write_file(path, buf, 100 * MB);
    free(buf);
}

// Offset in the generated enwik8 of the window (tok, tgt) of length L >= 16;
// fails unless every token and target matches that offset.
static size_t enwik8_offset(const int *tok, const int *tgt, int L) {
    int nl = 0;
    while (nl < 8 && tok[nl] != '\n') nl++;
    cr_assert_lt(nl, 8, "no record end in the first 8 tokens");
    size_t rec = 0;
    for (int k = 0; k < 7; k++) {
        int ch = tok[nl + 1 + k];
        rec = rec * 16 + (size_t)(ch <= '9' ? ch - '0' : ch - 'a' + 10);
    }
    size_t off = rec * 8 - (size_t)(nl + 1);
    for (int i = 0; i < L; i++) {
        cr_assert_eq(tok[i], enwik8_byte(off + i), "token %d of the window at %zu", i, off);
        cr_assert_eq(tgt[i], enwik8_byte(off + i + 1), "target %d of the window at %zu", i, off);
    }
    return off;
}

// Every evaluation window of split s covers [begin, end) of the file in
// order: window w holds bytes begin + w*L .. and predicts the next byte,
// padded (0, -1) past the end.
static void check_enwik8_eval_tiling(const Dataset *ds, Split s, size_t begin, size_t end, int L) {
    long n = dataset_eval_windows(ds, s);
    cr_assert_eq(n, (long)((end - begin - 1 + (size_t)L - 1) / (size_t)L), "%s: window count", split_name(s));
    int tok[64], tgt[64];
    for (long w = 0; w < n; w++) {
        dataset_eval_window(ds, s, w, tok, tgt);
        for (int i = 0; i < L; i++) {
            size_t p = begin + (size_t)w * (size_t)L + (size_t)i;
            int want_tok = p < end ? enwik8_byte(p) : 0, want_tgt = p + 1 < end ? enwik8_byte(p + 1) : -1;
            if (tok[i] != want_tok || tgt[i] != want_tgt)
                cr_assert_fail("%s window %ld position %d: (%d, %d), expected (%d, %d)", split_name(s), w, i, tok[i],
                               tgt[i], want_tok, want_tgt);
        }
    }
}

Test(dataset, enwik8_raw_standard_split) {
    const int L = 64;
    const char *path = tmp_path(0, "enwik8");
    write_enwik8(path);
    Config c = config_for(path, "auto", L);  // a file named enwik8 of 10^8 bytes
    Dataset ds;
    open_ok(&ds, &c);
    cr_assert_eq(ds.kind, DATA_ENWIK8);
    cr_assert_eq(ds.split[SPLIT_TRAIN].n_tokens, 90 * MB);
    cr_assert_eq(ds.split[SPLIT_VALIDATION].n_tokens, 5 * MB);
    cr_assert_eq(ds.split[SPLIT_TEST].n_tokens, 5 * MB);
    // Training windows and their targets lie inside [0, 90M).
    enum { N_SEQ = 256 };
    static int tok[N_SEQ * 64], tgt[N_SEQ * 64];
    for (uint32_t step = 1; step <= 8; step++) {
        dataset_batch(&ds, step, 0, N_SEQ, tok, tgt);
        for (int b = 0; b < N_SEQ; b++) {
            size_t off = enwik8_offset(tok + b * L, tgt + b * L, L);
            cr_assert_leq(off + (size_t)L, 90 * MB - 1, "training window at %zu reaches past the train split", off);
        }
    }
    check_enwik8_eval_tiling(&ds, SPLIT_VALIDATION, 90 * MB, 95 * MB, L);
    check_enwik8_eval_tiling(&ds, SPLIT_TEST, 95 * MB, 100 * MB, L);
    char line[512];
    dataset_describe(&ds, line, sizeof line);
    cr_assert(strstr(line, "enwik8") && strstr(line, "validation 1 doc 5000000 tokens") && !strchr(line, '\n'),
              "describe: %s", line);
    dataset_close(&ds);

    // Another size is an error with data_format=enwik8, and plain text on auto.
    const char *other = tmp_path(1, "enwik8.txt");
    write_file(other, "not quite enwik8, much shorter", 30);
    c = config_for(other, "enwik8", 8);
    OPEN_FAILS(&c, other, "data_format=text", "100000000");
    const char *short_named = tmp_path(2, "sub");
    make_dir(short_named);
    short_named = tmp_path(2, "sub/enwik8");
    write_file(short_named, "a file named enwik8 that is not it", 34);
    c = config_for(short_named, "auto", 8);
    open_ok(&ds, &c);
    cr_assert_eq(ds.kind, DATA_TEXT);
    dataset_close(&ds);
}

// Zip the file src as the archive dst holding the entry `entry`.
static void write_zip(const char *dst, const char *src, const char *entry) {
    int code;
    zip_t *z = zip_open(dst, ZIP_CREATE | ZIP_TRUNCATE, &code);
    cr_assert_not_null(z, "zip_open(%s) failed: %d", dst, code);
    zip_source_t *s = zip_source_file(z, src, 0, -1);
    cr_assert_not_null(s, "zip_source_file: %s", zip_strerror(z));
    zip_int64_t i = zip_file_add(z, entry, s, ZIP_FL_OVERWRITE);
    cr_assert_geq(i, 0, "zip_file_add: %s", zip_strerror(z));
    // Level 1: the patterned file still compresses well, in a fraction of the time.
    cr_assert_eq(zip_set_file_compression(z, (zip_uint64_t)i, ZIP_CM_DEFLATE, 1), 0, "%s", zip_strerror(z));
    cr_assert_eq(zip_close(z), 0, "zip_close(%s): %s", dst, zip_strerror(z));
}

Test(dataset, enwik8_zip_gives_the_raw_windows) {
    const int L = 32;
    const char *raw = tmp_path(0, "enwik8"), *zipped = tmp_path(1, "enwik8.zip");
    write_enwik8(raw);
    write_zip(zipped, raw, "enwik8");
    Config cr = config_for(raw, "enwik8", L), cz = config_for(zipped, "auto", L);
    Dataset a, b;
    open_ok(&a, &cr);
    open_ok(&b, &cz);
    cr_assert_eq(b.kind, DATA_ENWIK8);
    for (int s = 0; s < N_SPLITS; s++) {
        cr_assert_eq(b.split[s].n_tokens, a.split[s].n_tokens);
        cr_assert_eq(memcmp(b.split[s].docs[0].data, a.split[s].docs[0].data, a.split[s].n_tokens), 0,
                     "%s split differs between the zip and the raw file", split_name((Split)s));
        cr_assert_eq(dataset_eval_windows(&b, (Split)s), dataset_eval_windows(&a, (Split)s));
    }
    enum { N_SEQ = 64 };
    static int ta[N_SEQ * 32], ga[N_SEQ * 32], tb[N_SEQ * 32], gb[N_SEQ * 32];
    for (uint32_t step = 1; step <= 4; step++) {
        dataset_batch(&a, step, 0, N_SEQ, ta, ga);
        dataset_batch(&b, step, 0, N_SEQ, tb, gb);
        cr_assert_eq(memcmp(ta, tb, sizeof ta), 0, "step %u: tokens differ", step);
        cr_assert_eq(memcmp(ga, gb, sizeof ga), 0, "step %u: targets differ", step);
    }
    dataset_close(&a);
    dataset_close(&b);
    remove(raw);

    // An archive without the entry, and a file that is no archive.
    const char *small = tmp_path(0, "small.txt"), *wrong = tmp_path(2, "wrong.zip");
    write_file(small, "some bytes", 10);
    write_zip(wrong, small, "enwik9");
    Config c = config_for(wrong, "auto", L);
    OPEN_FAILS(&c, wrong, "enwik8");
    c = config_for(small, "enwik8", L);  // not .zip: a raw file of the wrong size
    OPEN_FAILS(&c, small, "data_format=text");
    const char *fake = tmp_path(3, "fake.zip");
    write_file(fake, "PK but not really a zip archive", 31);
    c = config_for(fake, "auto", L);
    OPEN_FAILS(&c, fake, "zip");
    c = config_for(tmp_path(3, "missing.zip"), "auto", L);
    OPEN_FAILS(&c, "missing.zip");
}

// -------------------------------------------------------------------- PG19

typedef struct {
    const char *split, *name;  // file split/name
    size_t len;
} Book;

// Bytes of a book: pseudo-random, seeded by the book's name, so 8 bytes
// already identify the book and the offset.
static void book_bytes(const Book *b, uint8_t *out) {
    uint64_t key = 0;
    for (const char *p = b->name; *p; p++) key = key * 131 + (uint8_t)*p;
    for (size_t i = 0; i < b->len; i++) out[i] = (uint8_t)rng_bits64(key, i, 0, 0xB00C);
}

static void write_pg19(const char *root, const Book *books, int n) {
    make_dir(root);
    char path[1024];
    for (int s = 0; s < N_SPLITS; s++) {
        snprintf(path, sizeof path, "%s/%s", root, split_name((Split)s));
        make_dir(path);
    }
    uint8_t buf[4096];
    for (int i = 0; i < n; i++) {
        cr_assert_leq(books[i].len, sizeof buf);
        book_bytes(&books[i], buf);
        snprintf(path, sizeof path, "%s/%s/%s", root, books[i].split, books[i].name);
        write_file(path, buf, books[i].len);
    }
    snprintf(path, sizeof path, "%s/metadata.csv", root);
    write_file(path, "_id,short_book_title\n1,One\n", 27);
}

// The tree of the PG19 tests; in each split the order is not the id order,
// and book 3 of train is empty.
static const Book PG19_BOOKS[] = {
    {"train", "10.txt", 1000}, {"train", "2.txt", 10},  {"train", "1.txt", 300}, {"train", "3.txt", 0},
    {"train", "9.txt", 33},    {"validation", "7.txt", 65}, {"validation", "5.txt", 200},
    {"validation", "6.txt", 1}, {"validation", "8.txt", 2}, {"test", "4.txt", 100},
};
#define N_PG19_BOOKS (int)(sizeof PG19_BOOKS / sizeof PG19_BOOKS[0])

// The books of a split as the dataset must order them (by numeric id),
// without empty ones.
static int books_in_order(const char *split, const Book **out) {
    int n = 0;
    for (int i = 0; i < N_PG19_BOOKS; i++)
        if (!strcmp(PG19_BOOKS[i].split, split) && PG19_BOOKS[i].len > 0) out[n++] = &PG19_BOOKS[i];
    for (int i = 1; i < n; i++)  // insertion sort by id
        for (int j = i; j > 0 && atoi(out[j - 1]->name) > atoi(out[j]->name); j--) {
            const Book *t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    return n;
}

// The book (index into books) holding window (tok, tgt) whole, or -1.
static int book_of_window(const Book *const *books, int n, const int *tok, const int *tgt, int L) {
    uint8_t buf[4096];
    for (int k = 0; k < n; k++) {
        book_bytes(books[k], buf);
        for (size_t off = 0; off + (size_t)L < books[k]->len; off++) {
            int match = 1;
            for (int i = 0; i < L && match; i++) match = tok[i] == buf[off + i] && tgt[i] == buf[off + i + 1];
            if (match) return k;
        }
    }
    return -1;
}

Test(dataset, pg19_books_windows_and_eval) {
    const int L = 32;
    const char *root = tmp_path(0, "pg19");
    write_pg19(root, PG19_BOOKS, N_PG19_BOOKS);
    Config c = config_for(root, "auto", L);
    Dataset ds;
    open_ok(&ds, &c);
    cr_assert_eq(ds.kind, DATA_PG19);
    for (int s = 0; s < N_SPLITS; s++) {
        const Book *books[16];
        int n = books_in_order(split_name((Split)s), books);
        const DataSplit *sp = &ds.split[s];
        cr_assert_eq(sp->n_docs, n, "%s: %ld documents, expected %d", split_name((Split)s), sp->n_docs, n);
        long want_windows = 0;
        size_t want_targets = 0;
        for (int k = 0; k < n; k++) {
            cr_assert_eq(sp->docs[k].len, books[k]->len, "%s document %d is not %s", split_name((Split)s), k,
                         books[k]->name);
            want_windows += books[k]->len < 2 ? 0 : (long)((books[k]->len - 1 + L - 1) / L);
            want_targets += books[k]->len - 1;
        }
        cr_assert_eq(dataset_eval_windows(&ds, (Split)s), want_windows, "%s: window count", split_name((Split)s));
        // Walk the windows book by book: each covers the next L positions of
        // its book, every byte but a book's first is a target exactly once,
        // and padding is (0, -1).
        int tok[32], tgt[32], k = 0;
        size_t base = 0, targets = 0;
        uint8_t buf[4096];
        for (long w = 0; w < want_windows; w++) {
            while (books[k]->len < 2 || base >= books[k]->len - 1) k++, base = 0;
            book_bytes(books[k], buf);
            dataset_eval_window(&ds, (Split)s, w, tok, tgt);
            for (int i = 0; i < L; i++) {
                size_t p = base + (size_t)i;
                cr_assert_eq(tok[i], p < books[k]->len ? buf[p] : 0, "%s window %ld token %d", split_name((Split)s), w, i);
                cr_assert_eq(tgt[i], p + 1 < books[k]->len ? buf[p + 1] : -1, "%s window %ld target %d",
                             split_name((Split)s), w, i);
                targets += tgt[i] >= 0;
            }
            base += (size_t)L;
        }
        cr_assert_eq(targets, want_targets, "%s: %zu targets, expected %zu", split_name((Split)s), targets, want_targets);
    }
    // Training windows lie whole inside one book, never the short one.
    const Book *train[16];
    int n_train = books_in_order("train", train);
    enum { N_SEQ = 200 };
    static int tok[N_SEQ * 32], tgt[N_SEQ * 32];
    int hits[16] = {0};
    for (uint32_t step = 1; step <= 3; step++) {
        dataset_batch(&ds, step, 0, N_SEQ, tok, tgt);
        for (int b = 0; b < N_SEQ; b++) {
            int k = book_of_window(train, n_train, tok + b * L, tgt + b * L, L);
            cr_assert_geq(k, 0, "step %u sequence %d is not inside any single book", step, b);
            hits[k]++;
        }
    }
    for (int k = 0; k < n_train; k++)
        if (train[k]->len < (size_t)L + 1) cr_assert_eq(hits[k], 0, "%s is too short but was drawn", train[k]->name);
    // Draws follow the books' start counts (10.txt: 968 of 1237 starts); with
    // 600 draws 10.txt is drawn far more than 1.txt (268 starts).
    cr_assert_gt(hits[3], hits[0], "10.txt drawn %d times, 1.txt %d", hits[3], hits[0]);
    dataset_close(&ds);
}

// Books of 40 bytes and windows of 32: a window crosses a boundary only
// with cross_docs.
Test(dataset, pg19_cross_docs) {
    const int L = 32;
    Book books[12];
    char names[12][16];
    for (int i = 0; i < 12; i++) {
        snprintf(names[i], sizeof names[i], "%d.txt", i + 1);
        books[i] = (Book){i < 10 ? "train" : i == 10 ? "validation" : "test", names[i], 40};
    }
    const char *root = tmp_path(0, "pg19x");
    write_pg19(root, books, 12);
    const Book *train[10];
    for (int i = 0; i < 10; i++) train[i] = &books[i];
    // The train split as one stream, in id order.
    uint8_t stream[400];
    for (int i = 0; i < 10; i++) book_bytes(&books[i], stream + 40 * i);
    enum { N_SEQ = 100 };
    static int tok[N_SEQ * 32], tgt[N_SEQ * 32];
    for (int cross = 0; cross <= 1; cross++) {
        Config c = config_for(root, "pg19", L);
        set(&c, "cross_docs", cross ? "1" : "0");
        Dataset ds;
        open_ok(&ds, &c);
        cr_assert_eq(ds.split[SPLIT_TRAIN].n_train_starts, cross ? 400 - 32 : 10 * 8);
        dataset_batch(&ds, 1, 0, N_SEQ, tok, tgt);
        int crossing = 0;
        for (int b = 0; b < N_SEQ; b++) {
            const int *t = tok + b * L, *g = tgt + b * L;
            if (book_of_window(train, 10, t, g, L) >= 0) continue;
            cr_assert(cross, "cross_docs=0: sequence %d is not inside one book", b);
            int found = 0;  // then it must be a run of the concatenated books
            for (int off = 0; off + L < 400 && !found; off++) {
                found = 1;
                for (int i = 0; i < L && found; i++) found = t[i] == stream[off + i] && g[i] == stream[off + i + 1];
            }
            cr_assert(found, "cross_docs=1: sequence %d is not a run of the train split", b);
            crossing++;
        }
        // 288 of the 368 start positions (all but the first 8 of each book)
        // cross a boundary: about 78 of 100 draws, and surely more than 50.
        if (cross) cr_assert_gt(crossing, 50, "only %d of %d windows crossed a book boundary", crossing, N_SEQ);
        dataset_close(&ds);
    }
}

Test(dataset, pg19_errors) {
    const int L = 32;
    // No books in train/ (only an empty one and a non-book file).
    const char *root = tmp_path(0, "nobooks");
    const Book none[] = {{"train", "1.txt", 0}, {"validation", "2.txt", 50}};
    write_pg19(root, none, 2);
    write_file(tmp_path(1, "nobooks/train/README"), "not a book", 10);
    Config c = config_for(root, "auto", L);
    OPEN_FAILS(&c, "nobooks/train", "no books");
    // Books, all shorter than seq_len + 1.
    root = tmp_path(0, "short");
    const Book shorts[] = {{"train", "1.txt", 20}, {"train", "2.txt", 32}};
    write_pg19(root, shorts, 2);
    c = config_for(root, "pg19", L);
    OPEN_FAILS(&c, "short", "seq_len+1=33");
    set(&c, "cross_docs", "1");  // 52 bytes together hold a window
    Dataset ds;
    open_ok(&ds, &c);
    dataset_close(&ds);
    // Not the layout: no validation/.
    root = tmp_path(0, "layout");
    make_dir(root);
    make_dir(tmp_path(1, "layout/train"));
    make_dir(tmp_path(1, "layout/test"));
    write_file(tmp_path(1, "layout/train/1.txt"), "0123456789012345678901234567890123456789", 40);
    c = config_for(root, "auto", L);
    OPEN_FAILS(&c, "layout", "validation", "PG19");
    // A file given as pg19, and a missing directory.
    c = config_for(tmp_path(1, "layout/train/1.txt"), "pg19", L);
    OPEN_FAILS(&c, "1.txt", "not a directory");
    c = config_for(tmp_path(1, "no-such-dir"), "pg19", L);
    OPEN_FAILS(&c, "no-such-dir");
}

// Issue 11, case 10: a FIFO given as data (or as a PG19 book) blocked forever
// in open(). It is refused at once, in every format, with one line naming the
// file and what it is (the suite's timeout fails a test that blocks).
Test(dataset, fifos_are_refused_without_blocking, .timeout = 20) {
    const int L = 32;
    const char *fifo = tmp_path(0, "pipe");
    cr_assert_eq(mkfifo(fifo, 0600), 0, "mkfifo failed");
    const char *formats[] = {"auto", "text", "tokens", "enwik8"};
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        Config c = config_for(fifo, formats[i], L);
        OPEN_FAILS(&c, "pipe", "FIFO");
    }
    const char *root = tmp_path(1, "fifobook");
    const Book books[] = {{"train", "1.txt", 100}, {"validation", "2.txt", 50}};
    write_pg19(root, books, 2);
    cr_assert_eq(mkfifo(tmp_path(2, "fifobook/train/2.txt"), 0600), 0, "mkfifo failed");
    Config c = config_for(root, "auto", L);
    OPEN_FAILS(&c, "fifobook/train/2.txt", "FIFO");
}

// ------------------------------------------------------------------ tokens

static void write_tokens(const char *path, int32_t magic, int32_t version, int32_t count, const uint16_t *tokens,
                         size_t n) {
    int32_t header[256] = {magic, version, count};
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(header, sizeof header, 1, f), 1);
    if (n) cr_assert_eq(fwrite(tokens, 2, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

// Token i of the generated files: distinct for i < 50021 (7919 is prime to
// 50021), so a window's first token gives its offset.
static uint16_t token_value(size_t i) { return (uint16_t)((i * 7919) % 50021); }

Test(dataset, tokens_round_trip) {
    const int L = 64;
    enum { N = 10000 };
    static uint16_t tokens[N];
    for (size_t i = 0; i < N; i++) tokens[i] = token_value(i);
    const char *path = tmp_path(0, "tokens.bin");
    write_tokens(path, 20240520, 1, N, tokens, N);
    Config c = config_for(path, "auto", L);
    set(&c, "vocab_size", "50257");
    set(&c, "split_fractions", "0.8,0.1,0.1");
    Dataset ds;
    open_ok(&ds, &c);
    cr_assert_eq(ds.kind, DATA_TOKENS);
    cr_assert_eq(ds.split[SPLIT_TRAIN].n_tokens, 8000);
    cr_assert_eq(ds.split[SPLIT_VALIDATION].n_tokens, 1000);
    cr_assert_eq(ds.split[SPLIT_TEST].n_tokens, 1000);
    // Evaluation windows of the test split read tokens [9000, 10000).
    int tok[64], tgt[64];
    long n = dataset_eval_windows(&ds, SPLIT_TEST);
    cr_assert_eq(n, (999 + L - 1) / L);
    for (long w = 0; w < n; w++) {
        dataset_eval_window(&ds, SPLIT_TEST, w, tok, tgt);
        for (int i = 0; i < L; i++) {
            size_t p = 9000 + (size_t)w * L + (size_t)i;
            cr_assert_eq(tok[i], p < N ? token_value(p) : 0);
            cr_assert_eq(tgt[i], p + 1 < N ? token_value(p + 1) : -1);
        }
    }
    // Training windows: contiguous tokens from [0, 8000).
    enum { N_SEQ = 100 };
    static int bt[N_SEQ * 64], bg[N_SEQ * 64];
    dataset_batch(&ds, 7, 0, N_SEQ, bt, bg);
    for (int b = 0; b < N_SEQ; b++) {
        size_t off = 0;
        while (token_value(off) != bt[b * L]) off++;
        cr_assert_leq(off + (size_t)L, 7999, "window at %zu runs out of the train split", off);
        for (int i = 0; i < L; i++) {
            cr_assert_eq(bt[b * L + i], token_value(off + (size_t)i));
            cr_assert_eq(bg[b * L + i], token_value(off + (size_t)i + 1));
        }
    }
    dataset_close(&ds);
}

Test(dataset, tokens_errors) {
    uint16_t tokens[200];
    for (int i = 0; i < 200; i++) tokens[i] = (uint16_t)i;
    Config c = config_for(tmp_path(0, "tok.bin"), "tokens", 16);
    set(&c, "vocab_size", "1000");
    const char *path = c.data;
    write_tokens(path, 20240521, 1, 200, tokens, 200);
    OPEN_FAILS(&c, path, "magic");
    write_tokens(path, 20240520, 2, 200, tokens, 200);
    OPEN_FAILS(&c, path, "version");
    write_tokens(path, 20240520, 1, 200, tokens, 150);  // truncated
    OPEN_FAILS(&c, path, "200 tokens");
    write_tokens(path, 20240520, 1, 0, tokens, 0);
    OPEN_FAILS(&c, path, "0 tokens");
    write_file(path, "short", 5);
    OPEN_FAILS(&c, path, "header");
    tokens[137] = 1000;  // == vocab_size
    write_tokens(path, 20240520, 1, 200, tokens, 200);
    OPEN_FAILS(&c, path, "index 137", "vocab_size=1000");
    tokens[137] = 999;
    write_tokens(path, 20240520, 1, 200, tokens, 200);
    Dataset ds;
    open_ok(&ds, &c);
    dataset_close(&ds);
}

// -------------------------------------------------------------------- text

Test(dataset, text_split_fractions) {
    const int L = 16;
    uint8_t bytes[1000];
    for (int i = 0; i < 1000; i++) bytes[i] = (uint8_t)rng_bits64(7, (uint64_t)i, 0, 0);
    const char *path = tmp_path(0, "text.txt");
    write_file(path, bytes, sizeof bytes);
    Config c = config_for(path, "auto", L);
    set(&c, "split_fractions", "0.8,0.15,0.05");
    Dataset ds;
    open_ok(&ds, &c);
    cr_assert_eq(ds.kind, DATA_TEXT);
    const size_t begin[] = {0, 800, 950}, end[] = {800, 950, 1000};
    int tok[16], tgt[16];
    for (int s = 0; s < N_SPLITS; s++) {
        cr_assert_eq(ds.split[s].n_tokens, end[s] - begin[s], "%s split size", split_name((Split)s));
        long n = dataset_eval_windows(&ds, (Split)s);
        cr_assert_eq(n, (long)((end[s] - begin[s] - 1 + L - 1) / L));
        for (long w = 0; w < n; w++) {
            dataset_eval_window(&ds, (Split)s, w, tok, tgt);
            for (int i = 0; i < L; i++) {
                size_t p = begin[s] + (size_t)w * L + (size_t)i;
                cr_assert_eq(tok[i], p < end[s] ? bytes[p] : 0);
                cr_assert_eq(tgt[i], p + 1 < end[s] ? bytes[p + 1] : -1);
            }
        }
    }
    dataset_close(&ds);
    // All for training: nothing to evaluate.
    set(&c, "split_fractions", "1,0,0");
    open_ok(&ds, &c);
    cr_assert_eq(ds.split[SPLIT_TRAIN].n_tokens, 1000);
    cr_assert_eq(dataset_eval_windows(&ds, SPLIT_VALIDATION), 0);
    cr_assert_eq(dataset_eval_windows(&ds, SPLIT_TEST), 0);
    dataset_close(&ds);
}

Test(dataset, text_errors) {
    Config c = config_for(tmp_path(0, "missing.txt"), "auto", 16);
    OPEN_FAILS(&c, "data", "missing.txt");
    const char *empty = tmp_path(0, "empty.txt");
    write_file(empty, "", 0);
    c = config_for(empty, "text", 16);
    OPEN_FAILS(&c, empty, "empty");
    const char *small = tmp_path(0, "small.txt");
    write_file(small, "eighteen bytes txt", 18);  // train split: 16 bytes
    c = config_for(small, "auto", 16);
    OPEN_FAILS(&c, small, "seq_len+1=17");
    set(&c, "split_fractions", "1,0,0");  // 18 bytes hold a window of 17
    Dataset ds;
    open_ok(&ds, &c);
    dataset_close(&ds);
    set(&c, "vocab_size", "100");
    OPEN_FAILS(&c, "vocab_size");
    c = config_for(tmp_dir, "text", 16);  // a directory as text
    OPEN_FAILS(&c, tmp_dir, "not a regular file");
}

// ------------------------------------------------------------- determinism

Test(dataset, batches_are_a_function_of_seed_step_and_sequence) {
    const int L = 64;
    Config c = config_for("data/tinyshakespeare.txt", "auto", L);
    Dataset ds;
    open_ok(&ds, &c);
    int a_tok[4 * 64], a_tgt[4 * 64], b_tok[4 * 64], b_tgt[4 * 64];
    dataset_batch(&ds, 5, 0, 4, a_tok, a_tgt);
    dataset_batch(&ds, 5, 0, 4, b_tok, b_tgt);
    cr_assert_eq(memcmp(a_tok, b_tok, sizeof a_tok), 0, "the same batch twice differs");
    // Sequences 2 and 3 alone (a data-parallel replica's share) are rows 2, 3.
    dataset_batch(&ds, 5, 2, 2, b_tok, b_tgt);
    cr_assert_eq(memcmp(a_tok + 2 * L, b_tok, 2 * L * sizeof(int)), 0);
    cr_assert_eq(memcmp(a_tgt + 2 * L, b_tgt, 2 * L * sizeof(int)), 0);
    dataset_batch(&ds, 6, 0, 4, b_tok, b_tgt);
    cr_assert_neq(memcmp(a_tok, b_tok, sizeof a_tok), 0, "steps 5 and 6 gave the same batch");
    dataset_close(&ds);
    // Another seed, other windows; reopening gives the same ones.
    set(&c, "seed", "1");
    open_ok(&ds, &c);
    dataset_batch(&ds, 5, 0, 4, b_tok, b_tgt);
    cr_assert_neq(memcmp(a_tok, b_tok, sizeof a_tok), 0, "seeds 1337 and 1 gave the same batch");
    dataset_close(&ds);
    set(&c, "seed", "1337");
    open_ok(&ds, &c);
    dataset_batch(&ds, 5, 0, 4, b_tok, b_tgt);
    cr_assert_eq(memcmp(a_tok, b_tok, sizeof a_tok), 0, "reopening changed the batch");
    dataset_close(&ds);
}

Test(dataset, synthetic_sources_keep_their_streams) {
    // data=random draws token i of sequence s at step t as
    // rng_bits64(seed, s << 32 | i, t, tag(RNG_DATA, 2, 0)) % vocab_size, as it
    // did before the real-data formats: recorded runs stay reproducible.
    const int L = 16;
    Config c = config_for("random", "auto", L);
    Dataset ds;
    open_ok(&ds, &c);
    cr_assert_eq(ds.kind, DATA_RANDOM);
    cr_assert_eq(dataset_eval_windows(&ds, SPLIT_VALIDATION), 0);
    int tok[3 * 16], tgt[3 * 16];
    dataset_batch(&ds, 9, 4, 3, tok, tgt);
    for (int b = 0; b < 3; b++)
        for (int i = 0; i < L; i++) {
            uint64_t want = rng_bits64(c.seed, (uint64_t)(4 + b) << 32 | (uint32_t)i, 9, rng_tag(RNG_DATA, 2, 0)) % 256;
            cr_assert_eq(tok[b * L + i], (int)want, "random token %d of sequence %d", i, 4 + b);
        }
    dataset_close(&ds);
    // data=dup: "0 w 0 w", the first symbol drawn on stream 1.
    c = config_for("dup", "auto", L);
    open_ok(&ds, &c);
    cr_assert_eq(ds.kind, DATA_DUP);
    dataset_batch(&ds, 9, 4, 1, tok, tgt);
    uint64_t first = 1 + rng_bits64(c.seed, (uint64_t)4 << 32, 9, rng_tag(RNG_DATA, 1, 0)) % 127;
    cr_assert_eq(tok[1], (int)first);
    cr_assert_eq(tok[0], 0);
    cr_assert_eq(tok[L / 2], 0);
    for (int i = 0; i < L / 2 - 1; i++) cr_assert_eq(tok[1 + i], tok[L / 2 + 1 + i]);
    dataset_close(&ds);
    c = config_for("dup", "auto", 15);
    OPEN_FAILS(&c, "seq_len");
}

Test(dataset, split_names) {
    Split s;
    cr_assert(split_parse("train", &s) == 0 && s == SPLIT_TRAIN);
    cr_assert(split_parse("validation", &s) == 0 && s == SPLIT_VALIDATION);
    cr_assert(split_parse("valid", &s) == 0 && s == SPLIT_VALIDATION);
    cr_assert(split_parse("val", &s) == 0 && s == SPLIT_VALIDATION);
    cr_assert(split_parse("test", &s) == 0 && s == SPLIT_TEST);
    cr_assert_eq(split_parse("dev", &s), -1);
    for (int k = 0; k < N_SPLITS; k++) {
        cr_assert_eq(split_parse(split_name((Split)k), &s), 0);
        cr_assert_eq(s, (Split)k);
    }
    cr_assert_str_eq(data_kind_name(DATA_PG19), "pg19");
    cr_assert_str_eq(data_kind_name(DATA_TOKENS), "tokens");
}
