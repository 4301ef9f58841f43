// reformer train: the training loop, its progress lines, metrics and
// checkpoints.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "cli.h"
#include "dataset.h"
#include "metrics.h"
#include "model.h"
#include "util.h"

// Accuracy of the trained model on fresh duplication-task batches, with the
// config's attention (hash count included).
static double dup_eval(Model *m, const Dataset *ds, int batches, int *tokens, int *targets) {
    double acc = 0;
    for (int i = 0; i < batches; i++) {
        uint32_t step = 0x80000000u + (uint32_t)i;  // never a training step
        dataset_batch(ds, step, 0, m->cfg.batch, tokens, targets);
        acc += model_forward(m, tokens, targets, step, 0).accuracy;
    }
    return acc / batches;
}

static void save_checkpoint(Model *m, long step) {
    char err[2048], path[2048];
    double t0 = now_seconds();
    if (ckpt_save(m->cfg.out_dir, m, step, m->cfg.keep_ckpts, path, sizeof path, err, sizeof err)) run_error(err);
    struct stat st;
    double mib = stat(path, &st) == 0 ? (double)st.st_size / (1024.0 * 1024.0) : 0;
    printf("checkpoint: %s (%.1f MiB, %.2f s)\n", path, mib, now_seconds() - t0);
    fflush(stdout);
}

int cmd_train(int argc, char **argv) {
    Args a;
    parse_args(&a, argc, argv, CMD_TRAIN);
    Config *c = &a.cfg;
    char err[2048];
    Dataset ds;
    if (dataset_open(&ds, c, err, sizeof err)) usage_error("%s", err);
    // A fresh run never writes into another run's checkpoints: pruning and
    // --resume would mix the two.
    char found[2048];
    long found_step;
    if (!a.resume && ckpt_find_latest(c->out_dir, found, sizeof found, &found_step, err, sizeof err) == 0)
        usage_error("out_dir: '%s' already holds checkpoints (newest %s); continue that run with --resume %s, "
                    "or choose another out_dir",
                    c->out_dir, found, c->out_dir);
    make_dirs(c->out_dir);

    Model m;
    model_init(&m, c, pick_backend(c));
    long start = 1;
    if (a.resume) {
        CkptState st;
        if (ckpt_load(a.ckpt_path, &m, &st, err, sizeof err)) run_error(err);
        start = st.step + 1;
    }
    describe(&m);
    if (a.resume) printf("resume: %s (step %ld)\n", a.ckpt_path, start - 1);
    if (a.resume && start > c->steps) {
        printf("nothing to do: the checkpoint is at step %ld and steps=%d (raise it with --set steps=N)\n", start - 1,
               c->steps);
        model_free(&m);
        dataset_close(&ds);
        return 0;
    }
    char path[1100];
    snprintf(path, sizeof path, "%s/metrics.h5", c->out_dir);
    MetricsFile *metrics = metrics_open(path, start - 1, err, sizeof err);
    if (!metrics) run_error(err);
    char data_line[1024];
    dataset_describe(&ds, data_line, sizeof data_line);
    printf("data: %s | metrics: %s\n", data_line, path);
    int *tokens = checked_calloc((size_t)m.T, sizeof(int)), *targets = checked_calloc((size_t)m.T, sizeof(int));
    double t_begin = now_seconds(), tok_total = 0, loss = 0;
    // Everything a step draws (batch, hash rotations, dropout, AdamW's bias
    // correction, the learning rate) is keyed by the global step, so a
    // resumed run continues bit for bit as if it had never stopped.
    for (int step = (int)start; step <= c->steps; step++) {
        dataset_batch(&ds, (uint32_t)step, 0, c->batch, tokens, targets);
        double t0 = now_seconds();
        LossStats st = model_forward_backward(&m, tokens, targets, (uint32_t)step);
        double lr = lr_at(c, step);
        double norm = model_update(&m, step, lr);
        double dt = now_seconds() - t0;
        loss = st.loss;
        if (!isfinite(st.loss) || !isfinite(norm))
            FATAL("lower lr, raise warmup or set clip", "loss or gradient became non-finite at step %d (loss %g, grad norm %g)",
                  step, st.loss, norm);
        tok_total += m.T;
        double tps = m.T / dt, bpb = st.loss / M_LN2;
        MetricsRow row = {.step = step, .loss = st.loss, .bits_per_byte = bpb, .lr = lr, .grad_norm = norm,
                          .tokens_per_s = tps, .step_ms = dt * 1e3, .peak_rss_mb = peak_rss_mib(),
                          .accuracy = st.accuracy};
        if (metrics_append(metrics, &row, err, sizeof err)) run_error(err);
        if (step % c->log_every == 0 || step == c->steps) {
            char eta[32];
            double elapsed = now_seconds() - t_begin;
            format_duration(eta, sizeof eta, elapsed / (step - start + 1) * (c->steps - step));
            printf("step %*d/%d | loss %.4f | bpb %.4f | lr %.2e | norm %7.3f | %6.0f ms | %7.0f tok/s",
                   (int)log10(c->steps) + 1, step, c->steps, st.loss, bpb, lr, norm, dt * 1e3, tps);
            if (ds.kind == DATA_DUP) printf(" | acc %.4f", st.accuracy);
            printf(" | eta %s\n", eta);
            fflush(stdout);
        }
        if (c->ckpt_every > 0 && step % c->ckpt_every == 0 && step != c->steps) save_checkpoint(&m, step);
    }
    save_checkpoint(&m, c->steps);
    if (metrics_close(metrics, err, sizeof err)) run_error(err);
    double total = now_seconds() - t_begin;
    char dur[32];
    format_duration(dur, sizeof dur, total);
    printf("done: %d steps in %s | final loss %.4f (%.4f bpb) | %.0f tok/s | peak RSS %.0f MiB\n", c->steps, dur,
           loss, loss / M_LN2, total > 0 ? tok_total / total : 0, peak_rss_mib());
    if (ds.kind == DATA_DUP) {
        double acc = dup_eval(&m, &ds, 8, tokens, targets);
        printf("eval: duplication accuracy on 8 fresh batches (second copy, n_hashes=%d): %.4f\n", c->n_hashes, acc);
    }
    free(tokens);
    free(targets);
    free_args(&a);
    model_free(&m);
    dataset_close(&ds);
    return 0;
}

