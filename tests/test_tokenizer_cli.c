// The tokenizer through the program: `reformer tokenize`, training with
// `tokenizer=`, a checkpoint that evaluates and samples with nothing but
// itself, bits per byte against a hand computation, perplexity per word,
// whole-document samples resuming bit for bit, and the refusals.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli_run.h"
#include "dataset.h"
#include "decode.h"
#include "model.h"
#include "tokenizer.h"

TestSuite(tokcli, .init = setup, .fini = teardown, .timeout = 240);

// tmp_dir/text.txt: the first `bytes` of tinyshakespeare; tmp_dir/m.model: a
// unigram model of `vocab` pieces trained on its train split.
static void make_text_and_model(size_t bytes, int vocab) {
    sh("head -c %zu data/tinyshakespeare.txt > '%s/text.txt'", bytes, tmp_dir);
    Run r = run_cli("tokenize --data '%s/text.txt' --vocab %d --out '%s/m.model'", tmp_dir, vocab, tmp_dir);
    cr_assert_eq(r.rc, 0, "tokenize failed: %s", r.err);
    cr_assert(strstr(r.out, "unigram model of"), "%s", r.out);
    run_free(&r);
}

// The number just before `key` in line ("| 123 bytes": key " bytes" gives 123).
static double field_before(const char *line, const char *key) {
    const char *k = strstr(line, key);
    cr_assert_not_null(k, "no '%s' in: %s", key, line);
    const char *p = k;
    while (p > line && p[-1] != ' ') p--;
    return strtod(p, NULL);
}

static const char *line_with(const char *out, const char *prefix) {
    static char line[4096];
    for (const char *p = out; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (!strncmp(p, prefix, strlen(prefix))) {
            snprintf(line, sizeof line, "%.*s", (int)len, p);
            return line;
        }
        p += len + (nl != NULL);
    }
    cr_assert_fail("no line starting '%s' in:\n%s", prefix, out);
    return NULL;
}

// Train with a tokenizer; then, with the .model file and the token cache
// gone, eval and sample from the checkpoint alone. eval's bits per byte is
// checked against a hand computation: the model's summed token losses over
// every validation window (forward passes here, one window at a time) over
// the bytes the scored tokens decode to, which must be the validation text
// minus its first token.
Test(tokcli, checkpoint_carries_the_tokenizer_and_bits_per_byte_by_hand) {
    make_text_and_model(60000, 400);
    char run[512];
    path_in(run, sizeof run, "run");
    train_ok("train %s --set data='%s/text.txt' --set tokenizer='%s/m.model' --set steps=4 --set eval_every=2 "
             "--set eval_windows=4 --set out_dir='%s'",
             TINY_MODEL, tmp_dir, tmp_dir, run);
    sh("mv '%s/m.model' '%s/moved.model' && rm -f '%s'/text.txt.tokens-*", tmp_dir, tmp_dir, tmp_dir);
    Run r = run_cli("eval --ckpt '%s/ckpt_00000004.h5'", run);
    cr_assert_eq(r.rc, 0, "eval failed: %s", r.err);
    const char *line = line_with(r.out, "eval: validation");
    double targets = field_before(line, " targets"), bytes = field_before(line, " bytes"),
           bpb = field_before(line, " bits per byte");

    char ckpt[1024], err[2048];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt_00000004.h5", run);
    Config c;
    long step;
    cr_assert_eq(ckpt_read_config(ckpt, &c, &step, err, sizeof err), 0, "%s", err);
    void *model_bytes;
    size_t n_model;
    cr_assert_eq(ckpt_read_tokenizer(ckpt, &model_bytes, &n_model, err, sizeof err), 0, "%s", err);
    cr_assert_not_null(model_bytes, "the checkpoint holds no tokenizer");
    Tokenizer *tok = tokenizer_from_bytes(model_bytes, n_model, "ckpt", err, sizeof err);
    cr_assert_not_null(tok, "%s", err);
    free(model_bytes);
    c.batch = 1;
    Dataset ds;
    cr_assert_eq(dataset_open_tok(&ds, &c, tok, err, sizeof err), 0, "%s", err);
    Model m;
    model_init(&m, &c, backend_cpu());
    cr_assert_eq(ckpt_load(ckpt, &m, NULL, err, sizeof err), 0, "%s", err);
    const int L = c.seq_len;
    int *x = malloc((size_t)L * sizeof(int)), *y = malloc((size_t)L * sizeof(int));
    double nats = 0, hand_bytes = 0, hand_targets = 0;
    for (long w = 0; w < dataset_eval_windows(&ds, SPLIT_VALIDATION); w++) {
        dataset_eval_window(&ds, SPLIT_VALIDATION, w, x, y);
        LossStats st = model_forward(&m, x, y, INFERENCE_HASH_STEP, 0);
        nats += st.loss * (double)st.n_targets;
        hand_targets += (double)st.n_targets;
        for (int i = 0; i < L; i++)
            if (y[i] >= 0) hand_bytes += (double)tokenizer_decode(tok, &y[i], 1, NULL);
    }
    // The validation split's text: bytes [0.9 n, 0.95 n) of the file; its
    // first token is not a target.
    const double n_text = 60000, val_bytes = llround(n_text * 0.95) - llround(n_text * 0.9);
    int first = ((const uint16_t *)ds.split[SPLIT_VALIDATION].docs[0].data)[0], first_len;
    tokenizer_piece_bytes(tok, first, &first_len);
    cr_assert_eq(hand_bytes, val_bytes - first_len, "decoded target bytes %g, text %g - first token %d", hand_bytes,
                 val_bytes, first_len);
    cr_assert_eq(bytes, hand_bytes, "eval counted %g bytes, by hand %g", bytes, hand_bytes);
    cr_assert_eq(targets, hand_targets);
    cr_assert_lt(hand_targets, hand_bytes * 0.8, "a 400-piece model should average over 1.25 bytes a token");
    const double hand_bpb = nats / hand_bytes / M_LN2;
    // eval prints 4 decimals (rounding <= 5e-5); its forward passes batch two
    // windows where these run one, which moves float32 sums by ~1e-6 relative.
    cr_assert(fabs(bpb - hand_bpb) <= 5e-5 + 1e-5 * hand_bpb, "eval %.6f bits per byte, by hand %.6f", bpb, hand_bpb);
    // Bits per token would be far off: this checks the division is by bytes.
    cr_assert_gt(fabs(nats / hand_targets / M_LN2 - hand_bpb), 0.1);
    free(x), free(y);
    model_free(&m);
    dataset_close(&ds);
    tokenizer_free(tok);
    run_free(&r);

    // sample: the prompt encoded, the tokens decoded to text.
    r = run_cli("sample --ckpt '%s' --prompt 'ROMEO:' --len 24 --seed 3", ckpt);
    cr_assert_eq(r.rc, 0, "sample failed: %s", r.err);
    cr_assert(!strncmp(r.out, "ROMEO:", 6), "%s", r.out);
    cr_assert(strstr(r.err, "sample: 24 tokens"), "%s", r.err);
    cr_assert_gt(strlen(r.out), 6 + 24 / 2, "24 tokens decoded to only %zu bytes", strlen(r.out) - 6);
    run_free(&r);
}

// Perplexity per word of a PG19 validation book, by hand: eval reports the
// words that start in scored bytes (all but the book's first word) and
// exp(total nats / words).
Test(tokcli, pg19_word_perplexity) {
    char pg[512], run[512];
    path_in(pg, sizeof pg, "pg");
    path_in(run, sizeof run, "run");
    sh("mkdir -p '%s/train' '%s/validation' '%s/test' && head -c 30000 data/tinyshakespeare.txt > '%s/train/1.txt' "
       "&& printf 'Now is the winter\\n of  our discontent\\tmade glorious summer' > '%s/validation/2.txt' "
       "&& printf 'x y' > '%s/test/3.txt'",
       pg, pg, pg, pg, pg, pg);
    train_ok("train %s --set data='%s' --set steps=2 --set eval_every=0 --set out_dir='%s'", TINY_MODEL, pg, run);
    Run r = run_cli("eval --ckpt '%s/ckpt_00000002.h5'", run);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    const char *line = line_with(r.out, "eval: validation");
    double targets = field_before(line, " targets"), loss = field_before(line, " nats"),
           words = field_before(line, " words"), ppl = field_before(line, " perplexity per word");
    // "Now is the winter of our discontent made glorious summer": 10 words, "Now" unscored.
    cr_assert_eq(words, 9, "%s", line);
    double nats = loss * targets;  // loss printed to 4 decimals: nats known to 5e-5 * targets
    double lo = exp((nats - 5e-5 * targets) / words), hi = exp((nats + 5e-5 * targets) / words);
    cr_assert(ppl >= lo * (1 - 1e-6) && ppl <= hi * (1 + 1e-6), "ppl %g not in [%g, %g] (%s)", ppl, lo, hi, line);
    run_free(&r);
}

// Whole documents as samples with a tokenizer: 2N steps == N steps,
// checkpoint, resume, N steps (losses and final tensors identical).
Test(tokcli, whole_docs_resume_bit_for_bit) {
    char pg[512], a[512], b[512];
    path_in(pg, sizeof pg, "pg");
    path_in(a, sizeof a, "a");
    path_in(b, sizeof b, "b");
    sh("mkdir -p '%s/train' '%s/validation' '%s/test' && for i in 1 2 3 4 5; do tail -c +$((i * 7000)) "
       "data/tinyshakespeare.txt | head -c $((i * 30)) > '%s/train/$i.txt'; done && head -c 200000 "
       "data/tinyshakespeare.txt > '%s/train/9.txt' && head -c 3000 data/tinyshakespeare.txt > '%s/validation/7.txt' "
       "&& head -c 100 data/tinyshakespeare.txt > '%s/test/8.txt'",
       pg, pg, pg, pg, pg, pg, pg);
    Run r = run_cli("tokenize --data '%s' --vocab 400 --out '%s/pg.model' --type bpe", pg, tmp_dir);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    run_free(&r);
    const char *common = "--set whole_docs=1 --set eval_every=0";
    Run ra = run_cli("train %s --set data='%s' --set tokenizer='%s/pg.model' %s --set steps=8 --set ckpt_every=4 "
                     "--set out_dir='%s'",
                     TINY_MODEL, pg, tmp_dir, common, a);
    cr_assert_eq(ra.rc, 0, "%s", ra.err);
    sh("mkdir -p '%s' && cp '%s/ckpt_00000004.h5' '%s/'", b, a, b);
    Run rb = run_cli("train --resume '%s'", b);
    cr_assert_eq(rb.rc, 0, "resume failed: %s", rb.err);
    assert_resume_matches(&ra, &rb, a, b, 8, 4);
    run_free(&ra);
    run_free(&rb);
}

// Bad input: one line, exit 2, nothing trained.
Test(tokcli, refusals) {
    make_text_and_model(60000, 400);
    char bytes_run[512];
    path_in(bytes_run, sizeof bytes_run, "bytes");
    train_ok("train %s --set data='%s/text.txt' --set steps=1 --set eval_every=0 --set out_dir='%s'", TINY_MODEL,
             tmp_dir, bytes_run);
    sh("printf 'not a model' > '%s/bad.model' && head -c 100 '%s/m.model' > '%s/cut.model'", tmp_dir, tmp_dir, tmp_dir);
    struct {
        const char *args, *names[3];
    } cases[] = {
        {"train " TINY_MODEL " --set data='%s/text.txt' --set tokenizer='%s/missing.model' --set out_dir='%s/x'",
         {"tokenizer", "missing.model", "cannot open"}},
        {"train " TINY_MODEL " --set data='%s/text.txt' --set tokenizer='%s/bad.model' --set out_dir='%s/x'",
         {"tokenizer", "bad.model", "not a SentencePiece model"}},
        {"train " TINY_MODEL " --set data='%s/text.txt' --set tokenizer='%s/cut.model' --set out_dir='%s/x'",
         {"tokenizer", "cut.model", "SentencePiece"}},
        {"train " TINY_MODEL " --set data=dup%.0s --set tokenizer='%s/m.model' --set out_dir='%s/x'",
         {"tokenizer", "dup", "tokenizer=none"}},
        {"train " TINY_MODEL " --set data='%s/text.txt' --set tokenizer='%s/m.model' --set vocab_size=300 --set out_dir='%s/x'",
         {"vocab_size: 300", "400 pieces", "m.model"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Run r = run_cli(cases[i].args, tmp_dir, tmp_dir, tmp_dir);
        cr_assert_eq(r.rc, 2, "case %zu: exit %d: %s", i, r.rc, r.err);
        ASSERT_ONE_LINE_ERROR(&r, cases[i].args, cases[i].names[0], cases[i].names[1], cases[i].names[2]);
        char x[600];
        path_in(x, sizeof x, "x/ckpt_00000001.h5");
        cr_assert(!exists(x), "case %zu trained", i);
        run_free(&r);
    }
    // A byte-level checkpoint with a tokenizer: a vocab mismatch.
    Run r = run_cli("eval --ckpt '%s/ckpt_00000001.h5' --set tokenizer='%s/m.model'", bytes_run, tmp_dir);
    cr_assert_eq(r.rc, 2, "%s", r.err);
    ASSERT_ONE_LINE_ERROR(&r, "eval of a byte checkpoint with a tokenizer", "400 pieces", "vocab_size=256",
                          "ckpt_00000001.h5");
    run_free(&r);
    r = run_cli("tokenize --data '%s/text.txt' --vocab 100 --out '%s/small.model'", tmp_dir, tmp_dir);
    cr_assert_eq(r.rc, 2, "%s", r.err);
    ASSERT_ONE_LINE_ERROR(&r, "tokenize --vocab 100", "--vocab", "256 byte pieces");
    run_free(&r);
}
