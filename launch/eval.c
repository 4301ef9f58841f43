// reformer eval: bits per byte of a checkpoint over a whole dataset split.
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
    if (dataset_open(&ds, &c, err, sizeof err)) usage_error("%s", err);
    if (ds.kind == DATA_DUP || ds.kind == DATA_RANDOM)
        usage_error("data: eval needs a dataset with splits (a text, enwik8, pg19 or tokens source), not '%s'", c.data);
    long count = eval_window_count(&ds, split, a.max_windows);
    if (count == 0) usage_error("data: the %s split of '%s' is empty", split_name(split), c.data);
    Model m;
    model_init(&m, &c, pick_backend(&c));
    if (ckpt_load(a.ckpt_path, &m, NULL, err, sizeof err)) run_error(err);
    char desc[1024];
    dataset_describe(&ds, desc, sizeof desc);
    printf("eval: %s (step %ld) | %s\n", a.ckpt_path, a.ckpt_step, desc);
    fflush(stdout);
    EvalTotals t = evaluate_split(&m, &ds, NULL, split, a.max_windows, 1);
    if (!isfinite(t.loss_sum)) {
        char msg[4096];
        snprintf(msg, sizeof msg,
                 "%s: the loss on the %s split is %g, not a finite number: the model's outputs overflow (a run that "
                 "diverged); evaluate an earlier checkpoint",
                 a.ckpt_path, split_name(split), t.loss_sum);
        run_error(msg);
    }
    char dur[32];
    format_duration(dur, sizeof dur, t.seconds);
    printf("eval: %s | %ld of %ld windows | %ld targets | loss %.4f nats | %.4f bits per byte | %s (%.0f tok/s)\n",
           split_name(split), t.n_windows, dataset_eval_windows(&ds, split), t.n_targets,
           t.n_targets ? t.loss_sum / (double)t.n_targets : 0, eval_bits_per_byte(&t), dur,
           t.seconds > 0 ? (double)t.n_windows * m.L / t.seconds : 0);
    model_free(&m);
    dataset_close(&ds);
    free_args(&a);
    return 0;
}
