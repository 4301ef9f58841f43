#include "evaluate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "cli.h"
#include "decode.h"
#include "rank_batch.h"
#include "util.h"

long eval_window_count(const Dataset *ds, Split split, long max_windows) {
    long total = dataset_eval_windows(ds, split);
    return max_windows > 0 && max_windows < total ? max_windows : total;
}

// The i-th window visited.
static long window_index(long i, long count, long total) {
    return count == total ? i : (long)((double)i * (double)total / (double)count);
}

// "\r  eval validation [=====>     ]  45% 123/270 windows | 3100 tok/s | eta 0:04"
// on a terminal; without one, a plain line at every 10%.
static void show_progress(const char *what, long done, long count, long tokens, double elapsed, int *last_decile) {
    double frac = count > 0 ? (double)done / (double)count : 1;
    char eta[32];
    format_duration(eta, sizeof eta, done > 0 ? elapsed / (double)done * (double)(count - done) : 0);
    if (isatty(STDERR_FILENO)) {
        char bar[31];
        int fill = (int)(frac * 30);
        for (int i = 0; i < 30; i++) bar[i] = i < fill ? '=' : i == fill ? '>' : ' ';
        bar[30] = '\0';
        fprintf(stderr, "\r  eval %s [%s] %3.0f%% %ld/%ld windows | %.0f tok/s | eta %s ", what, bar, frac * 100, done,
                count, elapsed > 0 ? (double)tokens / elapsed : 0, eta);
        if (done == count) fputc('\n', stderr);
    } else if ((int)(frac * 10) > *last_decile || done == count) {
        *last_decile = (int)(frac * 10);
        fprintf(stderr, "  eval %s: %3.0f%% %ld/%ld windows | eta %s\n", what, frac * 100, done, count, eta);
    }
    fflush(stderr);
}

EvalTotals evaluate_split(Model *m, const Dataset *ds, const Dist *d, Split split, long max_windows, int progress) {
    const long total = dataset_eval_windows(ds, split), count = eval_window_count(ds, split, max_windows);
    const int B = m->B, L = m->L;
    const int dp = d ? d->dp : 1, dp_rank = d ? d->dp_rank : 0;
    const int lead = !d || d->rank == 0;
    RankBatch rb;
    rank_batch_init(&rb, m, d);
    // model_forward: each rank's mean over its own targets, summed below as loss * count.
    EvalTotals t = {0};
    // loss * targets, targets, bytes, words; every sequence-parallel rank sees
    // the whole window, so only sp rank 0 counts bytes and words.
    double sums[4] = {0, 0, 0, 0}, t0 = now_seconds(), last_draw = -1;
    const int count_units = !d || d->sp_rank == 0;
    int last_decile = 0;
    // Every rank runs the same number of rounds (sequence-parallel ranks
    // exchange inside the forward); a round covers dp * B windows.
    for (long r0 = 0; r0 < count; r0 += (long)dp * B) {
        long first = r0 + (long)dp_rank * B;
        for (int b = 0; b < B; b++) {
            int *tok = rb.seq_tokens + (size_t)b * L, *tgt = rb.seq_targets + (size_t)b * L;
            if (first + b < count) {
                dataset_eval_window(ds, split, window_index(first + b, count, total), tok, tgt);
                if (count_units) {
                    double bytes, words;
                    dataset_target_units(ds, tok, tgt, L, &bytes, &words);
                    sums[2] += bytes, sums[3] += words;
                }
            } else {  // past the last window: nothing scored
                memset(tok, 0, (size_t)L * sizeof(int));
                for (int i = 0; i < L; i++) tgt[i] = -1;
            }
        }
        rank_batch_slice(&rb);
        LossStats st = model_forward(m, rb.tokens, rb.targets, INFERENCE_HASH_STEP, 0);
        sums[0] += st.loss * (double)st.n_targets;
        sums[1] += (double)st.n_targets;
        t.n_windows = MIN(count, r0 + (long)dp * B);
        double now = now_seconds();
        if (progress && lead && (now - last_draw > 0.1 || t.n_windows == count)) {
            show_progress(split_name(split), t.n_windows, count, t.n_windows * (long)L, now - t0, &last_decile);
            last_draw = now;
        }
    }
    if (d && d->world > 1) dist_allreduce_sum_f64(d, DIST_WORLD, sums, 4);
    t.loss_sum = sums[0];
    t.n_targets = (long)sums[1];
    t.n_bytes = sums[2];
    t.n_words = sums[3];
    t.seconds = now_seconds() - t0;
    rank_batch_free(&rb);
    return t;
}

EvalTotals evaluate_dup(Model *m, const Dataset *ds, const Dist *d, long n_seqs) {
    const long per_batch = (long)(d ? d->dp : 1) * m->B;
    const long batches = (n_seqs + per_batch - 1) / per_batch;
    RankBatch rb;
    rank_batch_init(&rb, m, d);
    // model_forward: each rank's mean over its own targets, summed below as loss * count.
    double sums[3] = {0, 0, 0}, t0 = now_seconds();  // loss * targets, targets, correct
    for (long i = 0; i < batches; i++) {
        uint32_t step = DUP_EVAL_STEP + (uint32_t)i;
        rank_batch_draw(&rb, ds, d, step);
        LossStats st = model_forward(m, rb.tokens, rb.targets, step, 0);
        sums[0] += st.loss * (double)st.n_targets;
        sums[1] += (double)st.n_targets;
        sums[2] += (double)llround(st.accuracy * (double)st.n_targets);
    }
    if (d && d->world > 1) dist_allreduce_sum_f64(d, DIST_WORLD, sums, 3);
    rank_batch_free(&rb);
    EvalTotals t = {.loss_sum = sums[0], .n_targets = (long)sums[1], .n_correct = (long)sums[2],
                    .n_windows = batches * per_batch, .seconds = now_seconds() - t0};
    return t;
}

EvalTotals evaluate_split_decode(const Config *c, const ParamLayout *layout, const real *params, const Dataset *ds,
                                 Split split, long max_windows, int progress) {
    const long total = dataset_eval_windows(ds, split), count = eval_window_count(ds, split, max_windows);
    const int L = c->seq_len, V = c->vocab_size;
    double *loss = checked_calloc((size_t)MAX(count, 1), sizeof(double));
    double *units = checked_calloc(2 * (size_t)MAX(count, 1), sizeof(double));  // bytes, words per window
    long *n_targets = checked_calloc((size_t)MAX(count, 1), sizeof(long)), done = 0;
    double t0 = now_seconds(), last_draw = -1;
    int last_decile = 0;
#pragma omp parallel
    {
        Decoder dec;
        decoder_init(&dec, c, layout, params);
        int *tok = checked_calloc((size_t)L, sizeof(int)), *tgt = checked_calloc((size_t)L, sizeof(int));
        real *logits = checked_calloc((size_t)V, sizeof(real));
#pragma omp for schedule(dynamic)
        for (long w = 0; w < count; w++) {
            dataset_eval_window(ds, split, window_index(w, count, total), tok, tgt);
            dataset_target_units(ds, tok, tgt, L, &units[2 * w], &units[2 * w + 1]);
            decoder_reset(&dec);
            double sum = 0;
            long n = 0;
            for (int p = 0; p < L; p++) {
                decoder_step(&dec, tok[p], logits);
                if (tgt[p] < 0) continue;
                double mx = -INFINITY, z = 0;  // cross-entropy of the next byte, in double
                for (int v = 0; v < V; v++) mx = fmax(mx, (double)logits[v]);
                for (int v = 0; v < V; v++) z += exp((double)logits[v] - mx);
                sum += mx + log(z) - (double)logits[tgt[p]];
                n++;
            }
            loss[w] = sum, n_targets[w] = n;
            long finished;
#pragma omp atomic capture
            finished = ++done;
#ifdef _OPENMP
            if (omp_get_thread_num() == 0 || finished == count)
#endif
#pragma omp critical(eval_progress)
            {
                double now = now_seconds();
                if (progress && (now - last_draw > 0.1 || finished == count)) {
                    show_progress(split_name(split), finished, count, finished * (long)L, now - t0, &last_decile);
                    last_draw = now;
                }
            }
        }
        free(tok);
        free(tgt);
        free(logits);
        decoder_free(&dec);
    }
    EvalTotals t = {.n_windows = count};
    for (long w = 0; w < count; w++) {  // window order
        t.loss_sum += loss[w], t.n_targets += n_targets[w];
        t.n_bytes += units[2 * w], t.n_words += units[2 * w + 1];
    }
    free(units);
    t.seconds = now_seconds() - t0;
    free(loss);
    free(n_targets);
    return t;
}
