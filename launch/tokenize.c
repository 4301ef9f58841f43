// reformer tokenize: train a SentencePiece model (io/tokenizer.h) on the
// train split of a text source: a text file (its train share by
// split_fractions), enwik8, or a PG19 directory's train/ books. Every line of
// the split is a training sentence (at most --max-sentences of them, sampled).
//
//   reformer tokenize --data PATH --vocab N --out FILE.model [--type unigram|bpe]
//                     [--max-sentences N] [--set key=value ...]
//
// The model is then used by `--set tokenizer=FILE.model` for training.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "dataset.h"
#include "tokenizer.h"
#include "util.h"

int cmd_tokenize(int argc, char **argv) {
    const char *data = NULL, *out = NULL, *type = "unigram";
    long vocab = 0, max_sentences = 2000000;
    Config c;
    config_defaults(&c);
    char err[2048];
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (i + 1 >= argc) usage_error("%s needs a value (usage: reformer tokenize --data PATH --vocab N --out FILE.model)", arg);
        const char *val = argv[++i];
        char *end;
        if (!strcmp(arg, "--data")) data = val;
        else if (!strcmp(arg, "--out")) out = val;
        else if (!strcmp(arg, "--type")) type = val;
        else if (!strcmp(arg, "--vocab") || !strcmp(arg, "--max-sentences")) {
            long v = strtol(val, &end, 10);
            if (end == val || *end || v < 0 || v > (1L << 20))
                usage_error("%s: '%s' is not a count in [0, %ld]", arg, val, 1L << 20);
            if (!strcmp(arg, "--vocab")) vocab = v;
            else max_sentences = v;
        } else if (!strcmp(arg, "--set")) {
            const char *eq = strchr(val, '=');
            if (!eq) usage_error("--set: '%s' is not key=value", val);
            char key[128];
            snprintf(key, sizeof key, "%.*s", (int)(eq - val), val);
            if (config_set(&c, key, eq + 1, err, sizeof err)) usage_error("%s", err);
        } else {
            usage_error("tokenize: unknown argument '%s' (usage: reformer tokenize --data PATH --vocab N --out "
                        "FILE.model [--type unigram|bpe] [--max-sentences N])",
                        arg);
        }
    }
    if (!data || !out || vocab == 0)
        usage_error("tokenize needs --data PATH, --vocab N and --out FILE.model");
    if (strcmp(type, "unigram") && strcmp(type, "bpe")) usage_error("--type: '%s' is not unigram or bpe", type);
    if (vocab < 260)
        usage_error("--vocab: %ld is too small: the model holds 256 byte pieces and <unk> besides what it learns "
                    "(give 260 or more)",
                    vocab);
    if (config_set(&c, "data", data, err, sizeof err)) usage_error("--data: %s", err);
    snprintf(c.tokenizer, sizeof c.tokenizer, "none");
    c.seq_len = 1;  // any split with 2 bytes opens
    c.vocab_size = 256;
    Dataset ds;
    if (dataset_open(&ds, &c, err, sizeof err)) usage_error("%s", err);
    if (ds.kind != DATA_TEXT && ds.kind != DATA_ENWIK8 && ds.kind != DATA_PG19)
        usage_error("--data: tokenize reads text, enwik8 or a PG19 directory, not %s data", data_kind_name(ds.kind));
    const DataSplit *s = &ds.split[SPLIT_TRAIN];
    const uint8_t **texts = checked_calloc((size_t)s->n_docs, sizeof *texts);
    size_t *lens = checked_calloc((size_t)s->n_docs, sizeof *lens);
    for (long d = 0; d < s->n_docs; d++) texts[d] = s->docs[d].data, lens[d] = s->docs[d].len;
    double t0 = now_seconds();
    if (tokenizer_train(texts, lens, s->n_docs, (int)vocab, type, max_sentences, out, err, sizeof err))
        usage_error("%s", err);
    Tokenizer *tok = tokenizer_load(out, "--out", err, sizeof err);
    if (!tok) run_error(err);
    printf("tokenize: %s model of %d pieces from the train split of %s (%ld document%s, %.1f MB) in %.1f s -> %s\n",
           type, tokenizer_vocab_size(tok), data, s->n_docs, s->n_docs == 1 ? "" : "s", (double)s->n_tokens / 1e6,
           now_seconds() - t0, out);
    tokenizer_free(tok);
    free(texts);
    free(lens);
    dataset_close(&ds);
    return 0;
}
