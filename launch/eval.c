// reformer eval: bits per byte (bits per dim for images) of a checkpoint over a whole dataset split
// (and, for PG19 or with word_ppl=1, perplexity per word), or accuracy on the
// duplication task. A checkpoint trained with a tokenizer encodes the data
// with the tokenizer it stores.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "dataset.h"
#include "evaluate.h"
#include "model.h"
#include "util.h"

// A non-finite loss is an error, not a result (a checkpoint of a run that
// diverged).
static void refuse_non_finite(const EvalTotals *t, const char *ckpt, const char *what) {
    if (isfinite(t->loss_sum)) return;
    char msg[4096];
    snprintf(msg, sizeof msg,
             "%s: the loss on the %s is %g, not a finite number: the model's outputs overflow (a run that "
             "diverged); evaluate an earlier checkpoint",
             ckpt, what, t->loss_sum);
    run_error(msg);
}

// The duplication task: accuracy and loss on the second copy over fresh
// batches (launch/evaluate.h), with this run's attention settings, which
// --set may change from the checkpoint's (n_hashes, lsh_chunk, n_buckets).
static void eval_duplication(Model *m, const Dataset *ds, const Args *a) {
    const Config *c = &m->cfg;
    long n_seqs = a->max_windows > 0 ? a->max_windows : DUP_EVAL_SEQUENCES;
    EvalTotals t = evaluate_dup(m, ds, NULL, n_seqs);
    refuse_non_finite(&t, a->ckpt_path, "duplication task");
    char attn[64];  // what layer 0 (the task's one layer) does
    int chunk = config_layer_chunk(c, 0);
    if (chunk >= c->seq_len) snprintf(attn, sizeof attn, "full attention");
    else if (c->layer_kind[0] == ATTN_LSH) snprintf(attn, sizeof attn, "n_hashes %d, chunk %d", c->n_hashes, chunk);
    else snprintf(attn, sizeof attn, "local, chunk %d", chunk);
    printf("eval: %s (step %ld) | dup | %ld fresh sequences | %s | accuracy %.4f | loss %.4f nats | %ld targets | %.2f s\n",
           a->ckpt_path, a->ckpt_step, t.n_windows, attn, eval_accuracy(&t),
           t.n_targets ? t.loss_sum / (double)t.n_targets : 0, t.n_targets, t.seconds);
}

int cmd_eval(int argc, char **argv) {
    Args a;
    parse_args(&a, argc, argv, CMD_EVAL);
    Config c = a.cfg;
    c.sp = 1;
    Split split = SPLIT_VALIDATION;
    if (a.split && split_parse(a.split, &split))
        usage_error("--split: '%s' is not a split (train, validation or test)", a.split);
    char err[2048];
    Dataset ds;
    if (dataset_open_tok(&ds, &c, a.tok, err, sizeof err)) usage_error("%s", err);
    if (ds.kind == DATA_RANDOM)
        usage_error("data: eval needs a dataset with splits (a text, enwik8, pg19, tokens, npz or png source) or dup, "
                    "not '%s'", c.data);
    if (ds.kind == DATA_DUP && a.decode_form)
        usage_error("--form: the duplication task is scored in training form only (its fresh batches are hashed "
                    "at their own steps); leave --form out");
    if (ds.kind == DATA_DUP && a.split)
        usage_error("--split: the duplication task has no splits; it is scored on fresh batches (--windows N sequences)");
    long count = ds.kind == DATA_DUP ? 0 : eval_window_count(&ds, split, a.max_windows);
    if (ds.kind != DATA_DUP && count == 0) usage_error("data: the %s split of '%s' is empty", split_name(split), c.data);
    Model m;
    model_init(&m, &c, pick_backend(&c));
    if (ckpt_load(a.ckpt_path, &m, NULL, err, sizeof err)) run_error(err);
    if (ds.kind == DATA_DUP) {
        eval_duplication(&m, &ds, &a);
        model_free(&m);
        dataset_close(&ds);
        free_args(&a);
        return 0;
    }
    char desc[1024];
    dataset_describe(&ds, desc, sizeof desc);
    printf("eval: %s (step %ld) | %s | %s form\n", a.ckpt_path, a.ckpt_step, desc, a.decode_form ? "decode" : "train");
    fflush(stdout);
    EvalTotals t;
    if (a.decode_form) {  // the decoder reads host parameters
        real *host = checked_calloc(m.layout.n_params, sizeof(real));
        model_get_params(&m, host);
        t = evaluate_split_decode(&m.cfg, &m.layout, host, &ds, split, a.max_windows, 1);
        free(host);
    } else {
        t = evaluate_split(&m, &ds, NULL, split, a.max_windows, 1);
    }
    char what[64];
    snprintf(what, sizeof what, "%s split", split_name(split));
    refuse_non_finite(&t, a.ckpt_path, what);
    char dur[32];
    format_duration(dur, sizeof dur, t.seconds);
    char words[96] = "";
    if (eval_reports_words(&ds, &c))
        snprintf(words, sizeof words, " | %.0f words | %.3f perplexity per word", t.n_words, eval_word_perplexity(&t));
    // Bits per target: per byte of the decoded text, or per subpixel ("bits per
    // dim") for images, whose targets are subpixels rather than bytes of text.
    char bytes[48] = "";
    if (!data_kind_is_image(ds.kind)) snprintf(bytes, sizeof bytes, " | %.0f bytes", t.n_bytes);
    printf("eval: %s | %s form | %ld of %ld windows | %ld targets | loss %.4f nats | %.4f %s%s%s | %s "
           "(%.0f tok/s)\n",
           split_name(split), a.decode_form ? "decode" : "train", t.n_windows, dataset_eval_windows(&ds, split), t.n_targets,
           t.n_targets ? t.loss_sum / (double)t.n_targets : 0, eval_bits_per_byte(&t), dataset_bits_unit(&ds, 0), bytes,
           words, dur,
           t.seconds > 0 ? (double)t.n_windows * m.L / t.seconds : 0);
    model_free(&m);
    dataset_close(&ds);
    free_args(&a);
    return 0;
}
