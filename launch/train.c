// reformer train: the training loop, its progress lines, metrics and
// checkpoints. Under mpirun or srun the ranks form a dp x sp grid (dist/):
// each data-parallel replica trains on its own sequences of the global batch,
// each sequence-parallel rank on a slice of them; gradients are summed over
// every rank, so every rank takes the same optimizer step. Rank 0 alone
// prints, writes metrics.h5 and checkpoints.
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "agree.h"
#include "checkpoint.h"
#include "cli.h"
#include "data_parallel.h"
#include "dataset.h"
#include "evaluate.h"
#include "metrics.h"
#include "model.h"
#include "progress.h"
#include "rank_batch.h"
#include "run_dir.h"
#include "signals.h"
#include "util.h"

// Forward and backward of this rank's part; on a grid, the loss is normalised
// by the global target count and the gradients summed over every rank, so
// they are those of the whole global batch.
static LossStats forward_backward(Model *m, const Dist *d, const RankBatch *rb, uint32_t step) {
    // Dropout masks by global sequence.
    ModelStep st = {.step = step, .train = 1, .backward = 1, .batch_offset = (size_t)d->dp_rank * m->B};
    if (d->world == 1) return model_step(m, rb->tokens, rb->targets, &st);
    st.loss_count = dist_count_targets(d, DIST_WORLD, rb->targets, (size_t)m->T);
    return dist_reduce_step(d, DIST_WORLD, m, model_step(m, rb->tokens, rb->targets, &st));
}

// Periodic evaluation on the validation split (eval_windows of its windows,
// the same ones every time): a line and an /eval row from rank 0. Returns
// bits per byte.
static double periodic_eval(Model *m, const Dataset *ds, const Dist *d, int step, MetricsFile *metrics) {
    const Config *c = &m->cfg;
    EvalTotals t = evaluate_split(m, ds, d, SPLIT_VALIDATION, c->eval_windows, 0);
    double bpb = eval_bits_per_byte(&t);
    if (d->rank == 0) {
        char err[2048];
        char words[64] = "";
        if (eval_reports_words(ds, c)) snprintf(words, sizeof words, " | %.2f ppl/word", eval_word_perplexity(&t));
        printf("eval: step %d/%d | validation | %.4f %s%s | loss %.4f | %ld windows, %ld targets | %.2f s\n", step,
               c->steps, bpb, dataset_bits_unit(ds, 1), words, t.loss_sum / (double)(t.n_targets ? t.n_targets : 1), t.n_windows, t.n_targets,
               t.seconds);
        fflush(stdout);
        EvalRow row = {.step = step, .split = SPLIT_VALIDATION, .bits_per_byte = bpb,
                       .loss = t.loss_sum / (double)(t.n_targets ? t.n_targets : 1), .n_targets = t.n_targets,
                       .n_windows = t.n_windows, .seconds = t.seconds};
        if (metrics_append_eval(metrics, &row, err, sizeof err)) run_error(err);
    }
    return bpb;
}

// Bits per byte of a training step with a tokenizer: the step's mean loss
// times its targets over the bytes they decode to (summed over every rank;
// each holds its own slice of targets).
static double batch_bits_per_byte(const Dataset *ds, const Dist *d, const RankBatch *rb, const Model *m, double loss) {
    double sums[2] = {0, 0}, words;  // targets, bytes
    for (size_t i = 0; i < (size_t)m->T; i++) sums[0] += rb->targets[i] >= 0;
    dataset_target_units(ds, rb->tokens, rb->targets, m->T, &sums[1], &words);
    if (d->world > 1) dist_allreduce_sum_f64(d, DIST_WORLD, sums, 2);
    return sums[1] > 0 ? loss * sums[0] / sums[1] / M_LN2 : 0;
}

// What rank 0 records of the run in its checkpoints: global batch, identity,
// and the newest checkpoint whose loss was sane (kept out of pruning, so a
// diverging run never prunes its last good state away).
typedef struct {
    CkptState st;      // global_batch, run_id, last_sane_step (0: none yet)
    double sane_loss;  // the loss of that checkpoint (NAN: not known)
} RunRecord;

// Checkpoint of `step`, whose training loss was `loss`.
static void save_checkpoint(Model *m, RunRecord *run, long step, double loss, char *path, size_t path_cap) {
    char err[2048];
    double t0 = now_seconds();
    run->st.step = step;
    run->st.loss = loss;
    if (ckpt_loss_is_sane(loss, m->cfg.vocab_size)) {
        run->st.last_sane_step = step;
        run->sane_loss = loss;
    }
    if (ckpt_save_run(m->cfg.out_dir, m, &run->st, m->cfg.keep_ckpts, path, path_cap, err, sizeof err))
        run_error(err);
    struct stat st;
    double mib = stat(path, &st) == 0 ? (double)st.st_size / (1024.0 * 1024.0) : 0;
    printf("checkpoint: %s (%.1f MiB, %.2f s)\n", path, mib, now_seconds() - t0);
    fflush(stdout);
}

// Rank 0, before each checkpoint: a data file rewritten in place under the
// run (dataset_check_unchanged) means the steps since the last checkpoint
// may have trained on other bytes. Stop without writing this one, so the
// last checkpoint, all of whose steps read the data as opened, is the newest.
static void stop_if_data_changed(const Dataset *ds, const Config *c, MetricsFile *metrics, long step) {
    char why[1400], last[1100], msg[4096], err[512];
    if (dataset_check_unchanged(ds, why, sizeof why) == 0) return;
    long last_step;
    char tmp[64];
    int have = ckpt_find_latest(c->out_dir, last, sizeof last, &last_step, tmp, sizeof tmp) == 0;
    if (metrics_close(metrics, err, sizeof err)) { /* the line below is the error that matters */ }
    snprintf(msg, sizeof msg,
             "%s: stopped before the checkpoint of step %ld; %s%s; restore the file and --resume, or write new data "
             "to a new file and rename it over the old one",
             why, step, have ? "the last checkpoint is kept: " : "no checkpoint was written yet",
             have ? last : "");
    run_error(msg);
}

// An error every rank reaches together: rank 0 says it once, every rank
// leaves MPI cleanly and exits with status.
#if defined(__GNUC__)
__attribute__((noreturn))
#endif
static void fail_on_every_rank(Dist *d, int status, const char *msg) {
    fflush(stdout);
    if (d->rank == 0) fprintf(stderr, "reformer: error: %s\n", msg);
    dist_finalize(d);
    exit(status);
}

// A check each rank made for itself (on the files it sees). Failed on every
// rank: rank 0 reports it once; on some: each of those reports it with its
// rank. Either way every rank exits with status.
static void agree_or_fail(Dist *d, int failed, int status, const char *msg) {
    float n_failed = (float)failed;
    if (d->world > 1) dist_allreduce_sum(d, DIST_WORLD, &n_failed, 1);
    if (n_failed == 0) return;
    if (n_failed == (float)d->world) fail_on_every_rank(d, status, msg);
    fflush(stdout);
    if (failed) fprintf(stderr, "reformer: rank %d: error: %s\n", d->rank, msg);
    dist_finalize(d);
    exit(status);
}

// Rank 0 reads and validates the checkpoint (one reader, one message, and
// the file need only be readable where rank 0 runs), then sends parameters
// and AdamW moments to every rank. Returns the checkpoint's step.
static long resume_from_checkpoint(Model *m, const char *path, Dist *d, CkptState *resumed) {
    char err[2048] = "";
    struct {
        int status;
        long step;
    } got = {0, 0};
    if (d->rank == 0) {
        CkptState st = {0};
        long global_batch = (long)d->dp * m->cfg.batch;
        if (ckpt_load(path, m, &st, err, sizeof err)) {
            got.status = 1;
        } else if (st.global_batch != global_batch && st.step > 0) {
            // The global batch decides which windows each step draws: keep it,
            // so a run resumed on another grid continues the same run. A
            // step-0 checkpoint (reformer import-hf) has drawn none yet: a
            // fine-tuning start takes any batch.
            got.status = 2;
            int n = snprintf(err, sizeof err,
                             "batch: %s was trained with a global batch of %ld sequences per step, and dp %d x "
                             "batch %d is %ld; ",
                             path, st.global_batch, d->dp, m->cfg.batch, global_batch);
            if (st.global_batch % d->dp == 0)
                snprintf(err + n, sizeof err - (size_t)n, "set batch=%ld (batch is per data-parallel replica)",
                         st.global_batch / d->dp);
            else
                snprintf(err + n, sizeof err - (size_t)n,
                         "run on a number of data-parallel replicas (ranks / sp) that divides %ld", st.global_batch);
        }
        got.step = st.step;
        *resumed = st;
    }
    dist_bcast(d, DIST_WORLD, &got, sizeof got, 0);
    if (got.status) fail_on_every_rank(d, got.status, err);
    dist_broadcast_training_state(d, DIST_WORLD, m);
    return got.step;
}

// A stop signal reached some rank before step `next`: every rank agreed on it
// (so none waits in a collective). Rank 0 checkpoints the last finished step
// (unless that checkpoint exists) and closes metrics.h5, then every rank
// exits with TRAIN_EXIT_STOPPED once rank 0 is done.
#if defined(__GNUC__)
__attribute__((noreturn))
#endif
static void stop_on_signal(Dist *d, Model *m, const Dataset *ds, MetricsFile *metrics, int sig, long next,
                           long saved_step, RunRecord *run, double loss) {
    const Config *c = &m->cfg;
    if (d->rank == 0) {
        char err[2048], path[2048] = "", what[2400];
        long done = next - 1;
        if (done > saved_step) stop_if_data_changed(ds, c, metrics, done);
        if (done > saved_step) save_checkpoint(m, run, done, loss, path, sizeof path);
        else if (done > 0) ckpt_path(path, sizeof path, c->out_dir, done);
        if (metrics_close(metrics, err, sizeof err)) run_error(err);
        if (done > 0)
            snprintf(what, sizeof what, "after step %ld/%d: checkpoint %s, metrics.h5 closed; continue with "
                     "`reformer train --resume %s`", done, c->steps, path, c->out_dir);
        else
            snprintf(what, sizeof what, "before step 1: nothing to save, metrics.h5 closed");
        fflush(stdout);
        fprintf(stderr, "reformer: stopped by %s %s (exit status %d)\n", stop_signal_name(sig), what,
                TRAIN_EXIT_STOPPED);
        fflush(stderr);
    }
    dist_barrier(d, DIST_WORLD);  // no rank leaves (ending the job) before rank 0 has written
    dist_close_device_collectives(d);
    dist_finalize(d);
    exit(TRAIN_EXIT_STOPPED);
}

// One line: the grid, where its ranks are, and the global batch.
static void describe_grid(const Dist *d, const Config *c) {
    float nodes = d->local_rank == 0;  // one leader per node
    dist_allreduce_sum(d, DIST_WORLD, &nodes, 1);
    if (d->rank == 0)
        printf("grid: %d ranks = dp %d x sp %d | %d node(s), %d ranks on rank 0's node | global batch %d "
               "(dp %d x batch %d) | %d of %d positions per rank%s%s%s%s\n",
               d->world, d->dp, d->sp, (int)nodes, d->local_size, d->dp * c->batch, d->dp, c->batch,
               c->seq_len / d->sp, c->seq_len, d->sp > 1 ? " | attention: local " : "",
               d->sp > 1 ? (c->sp_sequence[ATTN_LOCAL] ? "halo" : "heads") : "", d->sp > 1 ? ", lsh " : "",
               d->sp > 1 ? (c->sp_sequence[ATTN_LSH] ? "sort" : "heads") : "");
}

// Test hooks: REFORMER_TEST_DIE_RANK=<r> and REFORMER_TEST_DIE_STEP=<s> make
// rank r SIGKILL itself at the start of step s, as a crashed node would;
// REFORMER_TEST_TERM_STEP=<s> (REFORMER_TEST_TERM_RANK=<r>, default 0) make it
// send itself SIGTERM there instead: a stop signal reaching one rank mid-step.
static void maybe_die_for_test(const Dist *d, int step) {
    const char *r = getenv("REFORMER_TEST_DIE_RANK"), *s = getenv("REFORMER_TEST_DIE_STEP");
    if (r && s && atoi(r) == d->rank && atoi(s) == step) raise(SIGKILL);
    const char *tr = getenv("REFORMER_TEST_TERM_RANK"), *ts = getenv("REFORMER_TEST_TERM_STEP");
    if (ts && atoi(ts) == step && (tr ? atoi(tr) : 0) == d->rank) raise(SIGTERM);
}

int cmd_train(int argc, char **argv) {
    // A stop signal from here on is acted on between steps (signals.h).
    stop_signals_install();
    Args a;
    parse_args(&a, argc, argv, CMD_TRAIN);
    Config *c = &a.cfg;
    char err[2048] = "";
    Dist dist;
    if (dist_init(&dist, &argc, &argv, c->sp, err, sizeof err)) fail_on_every_rank(&dist, 2, err);
    if (dist_agree_config(&dist, c, err, sizeof err)) fail_on_every_rank(&dist, 2, err);  // every rank, one config
    dist_set_watchdog(&dist, c->watchdog_s);
    const int lead = dist.rank == 0;  // prints, writes metrics and checkpoints
    Dataset ds;
    agree_or_fail(&dist, dataset_open_tok(&ds, c, a.tok, err, sizeof err) != 0, 2, err);
    if (dist_agree_data(&dist, &ds, err, sizeof err)) fail_on_every_rank(&dist, 2, err);  // and the same data
    // A fresh run never writes into another run's checkpoints: pruning and
    // --resume would mix the two.
    char found[2048], used_msg[8192] = "";
    long found_step;
    int used = !a.resume && ckpt_find_latest(c->out_dir, found, sizeof found, &found_step, err, sizeof err) == 0;
    // A live run holding the directory (its lock) is the more precise refusal:
    // a fresh run started beside it may see that run's first checkpoint.
    if (used && !(lead && run_dir_lock(c->out_dir, used_msg, sizeof used_msg) != 0))
        snprintf(used_msg, sizeof used_msg,
                 "out_dir: '%s' already holds checkpoints (newest %s); continue that run with --resume %s, "
                 "or choose another out_dir",
                 c->out_dir, found, c->out_dir);
    agree_or_fail(&dist, used, 2, used_msg);
    // The summary line, then the memory check, before any file or buffer
    // (a resumed run prints it once its checkpoint is accepted, below).
    agree_or_fail(&dist, preflight(c, pick_backend(c), lead && !a.resume, &dist, err, sizeof err) != 0, 2, err);
    // One run per directory: rank 0, which writes every file, holds the
    // lock until it exits; then, under the lock, a fresh run checks again
    // that no run started beside it has written a checkpoint meanwhile.
    int locked = 0;
    if (lead) {
        make_dirs(c->out_dir);
        locked = run_dir_lock(c->out_dir, used_msg, sizeof used_msg) == 0;
        if (locked && !a.resume &&
            ckpt_find_latest(c->out_dir, found, sizeof found, &found_step, err, sizeof err) == 0) {
            locked = 0;
            snprintf(used_msg, sizeof used_msg, "out_dir: '%s' already holds checkpoints (newest %s), written by "
                     "a run that started at the same time; choose another out_dir", c->out_dir, found);
        }
        // A resume chose its checkpoint before it held the lock: a run that
        // ended meanwhile may have written a newer one. Then start again.
        if (locked && a.resume &&
            ckpt_find_latest(a.resume, found, sizeof found, &found_step, err, sizeof err) == 0 &&
            found_step != a.newest_step) {
            locked = 0;
            snprintf(used_msg, sizeof used_msg, "--resume: %s was written by a run that ended while this one "
                     "started; run the command again to resume from it", found);
        }
    }
    // The run's identity: the resumed checkpoint's (a new one for files of
    // older builds), else a new one; no directory may hold two runs.
    char run_id[CKPT_RUN_ID_LEN] = "";
    if (lead && locked) {
        if (a.resume) snprintf(run_id, sizeof run_id, "%s", a.ckpt_run_id);
        const int in_place = a.resume && !strcmp(a.resume, c->out_dir);
        if (!a.resume_auto || a.resume)  // --resume auto without a checkpoint starts that run again
            locked = run_dir_check_identity(c->out_dir, run_id, a.resume ? a.ckpt_path : NULL, in_place, used_msg,
                                            sizeof used_msg) == 0;
        if (!run_id[0]) run_id_new(run_id, sizeof run_id);
    }
    dist_bcast(&dist, DIST_WORLD, &locked, sizeof locked, 0);
    if (!locked) fail_on_every_rank(&dist, 2, used_msg);

    Model m;
    model_init(&m, c, pick_backend(c));
    if (dist.world > 1 && strcmp(m.be->name, "cpu") != 0) {
        // Device buffers: gradients, broadcasts and the sequence-parallel
        // exchange go over NCCL (the same module on every rank, so every
        // rank fails here alike or none does).
        const struct DistNcclOps *ops = load_device_collectives(dist.world, err, sizeof err);
        if (!ops) fail_on_every_rank(&dist, 2, err);
        dist_open_device_collectives(&dist, ops);
    }
    if (c->sp > 1) dist_attach_sequence_parallel(&dist, &m);
    // Each layer's gradient sum starts as the backward finishes it (equal
    // bit for bit to one sum after the backward: tests/test_dist.c).
    if (dist.world > 1) dist_attach_grad_buckets(&dist, DIST_WORLD, &m);
    long start = 1;
    const long global_batch = (long)dist.dp * c->batch;
    RunRecord run = {.st = {.global_batch = global_batch, .last_sane_step = 0}, .sane_loss = NAN};
    snprintf(run.st.run_id, sizeof run.st.run_id, "%s", run_id);
    if (a.tok) run.st.tokenizer = tokenizer_model_bytes(a.tok, &run.st.tokenizer_len);  // in every checkpoint
    if (a.resume) {
        CkptState resumed = {0};
        start = resume_from_checkpoint(&m, a.ckpt_path, &dist, &resumed) + 1;
        run.st.last_sane_step = resumed.last_sane_step;
        if (resumed.last_sane_step == resumed.step) run.sane_loss = resumed.loss;
    }
    else if (dist.world > 1) dist_broadcast_parameters(&dist, DIST_WORLD, &m);
    if (lead && a.resume) describe(c, &m.plan);
    if (dist.world > 1) describe_grid(&dist, c);
    if (lead && a.resume) {
        for (const char *line = a.skipped; *line;) {  // damaged newer checkpoints, each with its reason
            const char *nl = strchr(line, '\n');
            int len = nl ? (int)(nl - line) : (int)strlen(line);
            printf("resume: skipped %.*s\n", len, line);
            line += len + (nl != NULL);
        }
        printf("resume: %s (step %ld)\n", a.ckpt_path, start - 1);
    }
    if (lead && a.resume_auto && !a.resume) printf("resume: no checkpoint in %s: a new run\n", c->out_dir);
    if (a.resume && start > c->steps) {
        if (lead)
            printf("nothing to do: the checkpoint is at step %ld and steps=%d (raise it with --set steps=N)\n",
                   start - 1, c->steps);
        model_free(&m);
        dataset_close(&ds);
        dist_close_device_collectives(&dist);
        dist_finalize(&dist);
        return 0;
    }
    char path[1100];
    snprintf(path, sizeof path, "%s/metrics.h5", c->out_dir);
    MetricsFile *metrics = NULL;
    if (lead) {
        metrics = metrics_open_run(path, start - 1, run_id, err, sizeof err);
        if (!metrics) run_error(err);
        char data_line[1024];
        dataset_describe(&ds, data_line, sizeof data_line);
        printf("data: %s | metrics: %s\n", data_line, path);
    }
    RankBatch rb;
    rank_batch_init(&rb, &m, &dist);
    StepProgress progress;  // where a long step is (rank 0 prints it; evaluations are not followed)
    progress_init(&progress, c->n_layers, c->steps);
    const double tokens_per_step = (double)global_batch * c->seq_len;
    double t_begin = now_seconds(), comm_begin = dist_comm_seconds(), tok_total = 0, loss = 0, eval_bpb = -1, loss_bpb = 0;
    // Periodic evaluation needs a validation split (not dup/random, not empty).
    const int can_eval = c->eval_every > 0 && ds.kind != DATA_DUP && ds.kind != DATA_RANDOM &&
                         dataset_eval_windows(&ds, SPLIT_VALIDATION) > 0;
    // Everything a step draws (batch, hash rotations, dropout, AdamW's bias
    // correction, the learning rate) is keyed by the global step, so a
    // resumed run continues bit for bit as if it had never stopped.
    long saved_step = start - 1;  // the newest checkpoint of this run (0: none)
    char ckpt_written[2048];
    for (int step = (int)start; step <= c->steps; step++) {
        // Between steps: did a stop signal reach any rank? (One int all-reduced.)
        int sig = dist_max_int(&dist, DIST_WORLD, stop_signal_received());
        if (sig) stop_on_signal(&dist, &m, &ds, metrics, sig, step, saved_step, &run, loss);
        maybe_die_for_test(&dist, step);
        rank_batch_draw(&rb, &ds, &dist, (uint32_t)step);
        double t0 = now_seconds(), comm0 = dist_comm_seconds();
        if (lead) {
            progress_begin_step(&progress, step);
            m.on_layer = progress_on_layer;
            m.on_layer_ctx = &progress;
        }
        LossStats st = forward_backward(&m, &dist, &rb, (uint32_t)step);
        if (lead) {
            m.on_layer = NULL;
            progress_end_step(&progress);
        }
        double lr = lr_at(c, step);
        double norm = model_update(&m, step, lr);
        double dt = now_seconds() - t0, comm_share = (dist_comm_seconds() - comm0) / dt;
        if (!isfinite(st.loss) || !isfinite(norm)) {  // the same on every rank: grads and loss are reduced
            int n = snprintf(err, sizeof err,
                             "loss or gradient became non-finite at step %d (loss %g, grad norm %g) with lr=%g, "
                             "warmup=%d, clip=%g: lower lr or raise warmup%s",
                             step, st.loss, norm, c->lr, c->warmup, c->clip,
                             c->clip > 0 ? "" : ", or set clip (0: off)");
            if (lead) {
                char sane[1100], sane_loss[64] = "";
                ckpt_path(sane, sizeof sane, c->out_dir, run.st.last_sane_step);
                if (isfinite(run.sane_loss)) snprintf(sane_loss, sizeof sane_loss, ", loss %.4f", run.sane_loss);
                if (run.st.last_sane_step > 0)
                    snprintf(err + n, sizeof err - (size_t)n,
                             "; the last checkpoint with a sane loss is %.1100s (step %ld%s), kept: to go on from it, "
                             "move the newer ones out of the directory and --resume it",
                             sane, run.st.last_sane_step, sane_loss);
                else
                    snprintf(err + n, sizeof err - (size_t)n, "; no checkpoint of this run had a sane loss");
                if (metrics_close(metrics, sane, sizeof sane)) run_error(sane);
            }
            fail_on_every_rank(&dist, 1, err);
        }
        loss = st.loss;
        tok_total += tokens_per_step;
        double tps = tokens_per_step / dt, bpb = st.loss / M_LN2;
        if (ds.tok) bpb = batch_bits_per_byte(&ds, &dist, &rb, &m, st.loss);
        loss_bpb = bpb;
        if (lead) {
            MetricsRow row = {.step = step, .loss = st.loss, .bits_per_byte = bpb, .lr = lr, .grad_norm = norm,
                              .tokens_per_s = tps, .step_ms = dt * 1e3, .peak_rss_mb = peak_rss_mib(),
                              .accuracy = st.accuracy};
            if (metrics_append(metrics, &row, err, sizeof err)) run_error(err);
        }
        if (lead && (step % c->log_every == 0 || step == c->steps)) {
            char eta[32];
            double elapsed = now_seconds() - t_begin;
            format_duration(eta, sizeof eta, elapsed / (step - start + 1) * (c->steps - step));
            printf("step %*d/%d | loss %.4f | %s %.4f | lr %.2e | norm %7.3f | %6.0f ms | %7.0f tok/s",
                   (int)log10(c->steps) + 1, step, c->steps, st.loss, dataset_bits_unit(&ds, 1), bpb, lr, norm, dt * 1e3, tps);
            if (dist.world > 1) printf(" | comm %3.0f%%", 100 * comm_share);
            if (ds.kind == DATA_DUP) printf(" | acc %.4f", st.accuracy);
            printf(" | eta %s\n", eta);
            fflush(stdout);
        }
        if (can_eval && (step % c->eval_every == 0 || step == c->steps))
            eval_bpb = periodic_eval(&m, &ds, &dist, step, metrics);
        if (c->ckpt_every > 0 && step % c->ckpt_every == 0 && step != c->steps) {
            if (lead) {
                stop_if_data_changed(&ds, c, metrics, step);
                save_checkpoint(&m, &run, step, loss, ckpt_written, sizeof ckpt_written);
            }
            saved_step = step;
        }
    }
    if (lead) {
        stop_if_data_changed(&ds, c, metrics, c->steps);
        save_checkpoint(&m, &run, c->steps, loss, ckpt_written, sizeof ckpt_written);
        if (metrics_close(metrics, err, sizeof err)) run_error(err);
    }
    double total = now_seconds() - t_begin, comm_total = dist_comm_seconds() - comm_begin;
    if (lead) {
        char dur[32];
        format_duration(dur, sizeof dur, total);
        printf("done: %d steps in %s | final loss %.4f (%.4f %s) | %.0f tok/s", c->steps, dur, loss, loss_bpb,
               dataset_bits_unit(&ds, 1),
               total > 0 ? tok_total / total : 0);
        if (dist.world > 1) printf(" on %d ranks | comm %.0f%% (rank 0)", dist.world, 100 * comm_total / total);
        if (eval_bpb >= 0) printf(" | validation %.4f %s", eval_bpb, dataset_bits_unit(&ds, 1));
        printf(" | peak RSS %.0f MiB\n", peak_rss_mib());
    }
    if (ds.kind == DATA_DUP) {
        EvalTotals t = evaluate_dup(&m, &ds, &dist, DUP_EVAL_SEQUENCES);
        if (lead)
            printf("eval: duplication accuracy on %ld fresh sequences (second copy, n_hashes=%d): %.4f | loss %.4f\n",
                   t.n_windows, c->n_hashes, eval_accuracy(&t), t.n_targets ? t.loss_sum / (double)t.n_targets : 0);
    }
    rank_batch_free(&rb);
    free_args(&a);
    model_free(&m);
    dataset_close(&ds);
    dist_close_device_collectives(&dist);
    dist_finalize(&dist);
    return 0;
}
