// How much does a future token change earlier outputs of LSH attention?
//
// REFORMER.md's scheme sorts items by (round, bucket, position) and cuts the
// sorted order into chunks, so a token that moves to another bucket can shift
// chunk boundaries for earlier positions: a leak of the future through the
// sort. This program measures it: for many (sequence, j), change token j and
// count positions i < j whose loss changed, with fresh hashing (as in
// training) and with the buckets held fixed (the causal reference).
//
// A loss "changed" when it moved by more than LEAK_NATS: lsh_form=strict is
// causal in exact arithmetic, but a later item can move a query to other
// columns of its chunk tile and regroup its float sums (~1e-7 nats), so exact
// inequality alone would count rounding. Both counts are printed.
//
// Usage: build/lsh_leak [key=value ...]           a randomly initialised model
//        build/lsh_leak ckpt=FILE [key=value ...] a trained checkpoint (its config,
//                                                 then the overrides, e.g. seq_len)
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "model.h"

#define LEAK_NATS 1e-5

typedef struct {
    double changed_any, changed_above, mean_abs;
} Leak;

static Leak leak_fraction(Model *m, int freeze, int trials) {
    const int L = m->L;
    int *tok = calloc(L, sizeof(int)), *tgt = calloc(L, sizeof(int));
    real *before = calloc(L, sizeof(real));
    long any = 0, above = 0, total = 0;
    double sum_abs = 0;
    for (int t = 0; t < trials; t++) {
        // Byte-like tokens: printable ASCII, as the text models were trained on.
        for (int i = 0; i < L; i++) tok[i] = 32 + (i * 31 + t * 17 + i * i * 7) % 95, tgt[i] = 32 + (i * 13 + t) % 95;
        int j = L / 4 + (t * 97) % (L / 2);
        m->freeze_buckets = 0;
        model_forward(m, tok, tgt, 1 + t, 0);
        memcpy(before, m->host_losses, L * sizeof(real));
        m->freeze_buckets = freeze;
        tok[j] = 32 + (tok[j] - 32 + 1 + t % 94) % 95;
        model_forward(m, tok, tgt, 1 + t, 0);
        for (int i = 0; i < j; i++) {
            double d = fabs((double)m->host_losses[i] - before[i]);
            any += d != 0;
            above += d > LEAK_NATS;
            sum_abs += d;
            total++;
        }
    }
    free(tok), free(tgt), free(before);
    return (Leak){(double)any / (double)total, (double)above / (double)total, sum_abs / (double)total};
}

int main(int argc, char **argv) {
    Config c;
    config_defaults(&c);
    char err[4096];
    const char *ckpt = NULL;
    int first = 1;
    if (argc > 1 && !strncmp(argv[1], "ckpt=", 5)) ckpt = argv[1] + 5, first = 2;
    if (ckpt) {
        long step;
        if (ckpt_read_config(ckpt, &c, &step, err, sizeof err)) return fprintf(stderr, "%s\n", err), 2;
    } else {
        const char *sets[] = {"vocab_size=256", "d_model=64", "n_heads=4", "n_layers=2", "attn_layers=lsh",
                              "seq_len=1024", "lsh_chunk=32", "n_hashes=2", "batch=1", "init_std=0.1", NULL};
        for (int i = 0; sets[i]; i++) config_set_pair(&c, sets[i], err, sizeof err);
    }
    for (int i = first; i < argc; i++)
        if (config_set_pair(&c, argv[i], err, sizeof err)) return fprintf(stderr, "%s\n", err), 2;
    c.batch = 1;
    c.sp = 1;
    if (config_finalize(&c, err, sizeof err)) return fprintf(stderr, "%s\n", err), 2;
    Model m;
    model_init(&m, &c, backend_cpu());
    if (ckpt && ckpt_load(ckpt, &m, NULL, err, sizeof err)) return fprintf(stderr, "%s\n", err), 2;
    Leak fresh = leak_fraction(&m, 0, 40), frozen = leak_fraction(&m, 1, 40);
    printf("seq_len %d, %d LSH layers of %d, lsh_form %s, n_hashes %d, chunk %d, %d buckets: positions i < j whose "
           "loss moved by > %g nats when token j changed: fresh hashing %.2f%% (moved at all %.2f%%, mean |dloss| "
           "%.2e nats), buckets held fixed %.2f%% (at all %.2f%%)\n",
           c.seq_len, config_count_lsh_layers(&c), c.n_layers, c.lsh_strict ? "strict" : "standard", c.n_hashes,
           c.lsh_chunk, c.n_buckets, LEAK_NATS, 100 * fresh.changed_above, 100 * fresh.changed_any, fresh.mean_abs,
           100 * frozen.changed_above, 100 * frozen.changed_any);
    model_free(&m);
    return 0;
}
