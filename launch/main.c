// reformer: the command-line program.
//
//   reformer train [--config FILE] [--set key=value ...] [--resume DIR]
//   reformer bench [--config FILE] [--set key=value ...] [--steps N] [--json]
//   reformer help
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "config.h"
#include "config_file.h"
#include "dataset.h"
#include "metrics.h"
#include "model.h"
#include "util.h"

static void usage_error(const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "reformer: error: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

// A failure while running (a checkpoint or metrics file): same one-line form,
// exit status 1.
static void run_error(const char *msg) {
    fflush(stdout);
    fprintf(stderr, "reformer: error: %s\n", msg);
    exit(1);
}

static void print_help(void) {
    printf("usage:\n"
           "  reformer train [--config FILE] [--set key=value ...] [--resume DIR]\n"
           "  reformer bench [--config FILE] [--set key=value ...] [--steps N] [--warmup N] [--json]\n"
           "  reformer help\n\n"
           "Every config key can be set in an INI file (--config) and overridden with --set.\n"
           "--resume DIR continues the run in DIR from its newest checkpoint, with the\n"
           "checkpoint's config; --config/--set may then change any key but the shape keys.\n"
           "Keys and defaults:\n");
    Config c;
    config_defaults(&c);
    char err[256];
    if (config_finalize(&c, err, sizeof err) == 0) config_print(&c, stdout);
}

typedef struct {
    int is_file;        // --config FILE, else --set / bare key=value
    const char *value;
} Source;

typedef struct {
    Config cfg;
    int steps_override;   // bench --steps
    int warmup_override;  // bench --warmup
    int json;
    const char *resume;   // train --resume DIR
    char resume_path[2048];
    long resume_step;
    Source *sources;      // --config and --set in command-line order
    int n_sources;
} Args;

static void apply_source(Config *c, const Source *s) {
    char err[1024];
    if (s->is_file ? config_load_file(c, s->value, err, sizeof err) : config_set_pair(c, s->value, err, sizeof err))
        usage_error("%s", err);
}

// When resuming, the checkpoint's config is the base and fixes the model's
// shape: a source that changes a shape key is refused, naming the key.
static void check_shape_keys(const Config *now, const Config *ckpt, const Source *s) {
    char a[1100], b[1100];
    for (int k = 0; CONFIG_SHAPE_KEYS[k]; k++) {
        config_get(now, CONFIG_SHAPE_KEYS[k], a, sizeof a);
        config_get(ckpt, CONFIG_SHAPE_KEYS[k], b, sizeof b);
        if (strcmp(a, b))
            usage_error("%s: %s=%s %s the checkpoint's %s=%s; a resumed run keeps the model's shape keys",
                        CONFIG_SHAPE_KEYS[k], CONFIG_SHAPE_KEYS[k], a, s ? "would change" : "differs from",
                        CONFIG_SHAPE_KEYS[k], b);
    }
}

// Parse --config/--set (and command-specific flags) in order: later wins.
static void parse_args(Args *a, int argc, char **argv, int is_bench) {
    char err[1024];
    a->steps_override = -1;
    a->warmup_override = -1;
    a->sources = checked_calloc((size_t)argc + 1, sizeof(Source));
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "--config") || !strcmp(arg, "--set") || !strcmp(arg, "--steps") ||
            !strcmp(arg, "--warmup") || !strcmp(arg, "--resume")) {
            if (i + 1 >= argc) usage_error("%s needs a value", arg);
            const char *val = argv[++i];
            if (!strcmp(arg, "--config") || !strcmp(arg, "--set")) {
                a->sources[a->n_sources++] = (Source){.is_file = !strcmp(arg, "--config"), .value = val};
            } else if (!strcmp(arg, "--resume")) {
                if (is_bench) usage_error("--resume is a train option");
                a->resume = val;
            } else {
                if (!is_bench) usage_error("%s is a bench option; for train use --set steps=N", arg);
                int is_steps = !strcmp(arg, "--steps");
                char *end;
                long n = strtol(val, &end, 10);
                if (*end || n < (is_steps ? 1 : 0) || n > 1000000)
                    usage_error("%s: '%s' is not a %s integer", arg, val, is_steps ? "positive" : "non-negative");
                if (is_steps) a->steps_override = (int)n;
                else a->warmup_override = (int)n;
            }
        } else if (!strcmp(arg, "--json") && is_bench) {
            a->json = 1;
        } else if (strchr(arg, '=') && arg[0] != '-') {
            a->sources[a->n_sources++] = (Source){.is_file = 0, .value = arg};
        } else {
            usage_error("unknown argument '%s' (see `reformer help`)", arg);
        }
    }
    Config ckpt;
    if (a->resume) {
        if (ckpt_find_latest(a->resume, a->resume_path, sizeof a->resume_path, &a->resume_step, err, sizeof err) ||
            ckpt_read_config(a->resume_path, &ckpt, &a->resume_step, err, sizeof err))
            usage_error("--resume: %s", err);
        a->cfg = ckpt;
        // The run continues where its files are, wherever it was started.
        if (config_set(&a->cfg, "out_dir", a->resume, err, sizeof err)) usage_error("--resume: %s", err);
        for (int i = 0; i < a->n_sources; i++) {
            apply_source(&a->cfg, &a->sources[i]);
            check_shape_keys(&a->cfg, &ckpt, &a->sources[i]);
        }
    } else {
        config_defaults(&a->cfg);
        if (is_bench) snprintf(a->cfg.data, sizeof a->cfg.data, "random");
        for (int i = 0; i < a->n_sources; i++) apply_source(&a->cfg, &a->sources[i]);
    }
    if (config_finalize(&a->cfg, err, sizeof err)) usage_error("%s", err);
    if (a->resume) check_shape_keys(&a->cfg, &ckpt, NULL);
    if (strcmp(a->cfg.device, "cpu") != 0)
        usage_error("device: '%s' backend is not built into this binary (use device=cpu)", a->cfg.device);
}

static const Backend *pick_backend(const Config *c) {
    (void)c;
    return backend_cpu();
}

static void make_dirs(const char *path) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0755);
            *p = '/';
        }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        usage_error("out_dir: cannot create '%s': %s", path, strerror(errno));
}

static void format_duration(char *buf, size_t n, double seconds) {
    long s = (long)(seconds + 0.5);
    if (s >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
    else snprintf(buf, n, "%ld:%02ld", s / 60, s % 60);
}

static void describe(const Model *m) {
    const Config *c = &m->cfg;
    printf("reformer: %zu params | %d layers (%s%s) | d_model %d | heads %dx%d | seq_len %d | batch %d | "
           "n_hashes %d n_buckets %d | %s | planned %.1f MiB\n",
           m->layout.n_params, c->n_layers, c->attn_full ? "full attention, " : "", c->attn_layers, c->d_model,
           c->n_heads, c->d_head, c->seq_len, c->batch, c->n_hashes, c->n_buckets,
           c->reversible ? "reversible" : "stored activations", (double)m->bytes_planned / (1024.0 * 1024.0));
}

// Accuracy of the trained model on fresh duplication-task batches, with the
// config's attention (hash count included).
static double dup_eval(Model *m, const Dataset *ds, int batches, int *tokens, int *targets) {
    double acc = 0;
    for (int i = 0; i < batches; i++) {
        uint32_t step = 0x80000000u + (uint32_t)i;  // never a training step
        dataset_batch(ds, step, tokens, targets);
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

static int cmd_train(int argc, char **argv) {
    Args a = {0};
    parse_args(&a, argc, argv, 0);
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
        if (ckpt_load(a.resume_path, &m, &st, err, sizeof err)) run_error(err);
        start = st.step + 1;
    }
    describe(&m);
    if (a.resume) printf("resume: %s (step %ld)\n", a.resume_path, start - 1);
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
    printf("data: %s%s | metrics: %s\n", c->data, ds.kind == DATA_TEXT ? "" : " (synthetic)", path);
    int *tokens = checked_calloc((size_t)m.T, sizeof(int)), *targets = checked_calloc((size_t)m.T, sizeof(int));
    double t_begin = now_seconds(), tok_total = 0, loss = 0;
    // Everything a step draws (batch, hash rotations, dropout, AdamW's bias
    // correction, the learning rate) is keyed by the global step, so a
    // resumed run continues bit for bit as if it had never stopped.
    for (int step = (int)start; step <= c->steps; step++) {
        dataset_batch(&ds, (uint32_t)step, tokens, targets);
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
    free(a.sources);
    model_free(&m);
    dataset_close(&ds);
    return 0;
}

static int cmd_bench(int argc, char **argv) {
    Args a = {0};
    parse_args(&a, argc, argv, 1);
    Config *c = &a.cfg;
    int steps = a.steps_override > 0 ? a.steps_override : 3;
    int warmup = a.warmup_override >= 0 ? a.warmup_override : 1;
    char err[1024];
    Dataset ds;
    if (dataset_open(&ds, c, err, sizeof err)) usage_error("%s", err);
    Model m;
    model_init(&m, c, pick_backend(c));
    if (!a.json) describe(&m);
    int *tokens = checked_calloc((size_t)m.T, sizeof(int)), *targets = checked_calloc((size_t)m.T, sizeof(int));
    // Untimed warm-up steps touch every buffer and warm caches; peak memory
    // is the whole run's, so one timed step alone also measures it.
    for (int s = 1; s <= warmup; s++) {
        dataset_batch(&ds, (uint32_t)s, tokens, targets);
        model_forward_backward(&m, tokens, targets, (uint32_t)s);
        model_update(&m, s, lr_at(c, s));
    }
    m.profile = 1;
    memset(m.prof_seconds, 0, sizeof m.prof_seconds);
    double t0 = now_seconds();
    LossStats st = {0};
    for (int s = warmup + 1; s <= warmup + steps; s++) {
        dataset_batch(&ds, (uint32_t)s, tokens, targets);
        st = model_forward_backward(&m, tokens, targets, (uint32_t)s);
        model_update(&m, s, lr_at(c, s));
    }
    double dt = (now_seconds() - t0) / steps;
    double fwdbwd = m.prof_seconds[PROF_TOTAL] > 0 ? m.prof_seconds[PROF_TOTAL] : 1;
    double sh_mm = m.prof_seconds[PROF_MATMUL] / fwdbwd, sh_at = m.prof_seconds[PROF_ATTENTION] / fwdbwd;
    printf("{\"tokens_per_s\": %.1f, \"step_ms\": %.2f, \"peak_rss_mb\": %.1f, \"planned_mb\": %.1f, \"params\": %zu, "
           "\"seq_len\": %d, \"batch\": %d, \"d_model\": %d, \"n_layers\": %d, \"n_heads\": %d, \"attn\": \"%s\", "
           "\"attn_layers\": \"%s\", \"n_hashes\": %d, \"reversible\": %d, \"steps\": %d, \"loss\": %.4f, "
           "\"share_matmul\": %.3f, \"share_attention\": %.3f, \"share_other\": %.3f}\n",
           m.T / dt, dt * 1e3, peak_rss_mib(), (double)m.bytes_planned / (1024.0 * 1024.0), m.layout.n_params,
           c->seq_len, c->batch, c->d_model, c->n_layers, c->n_heads, c->attn_full ? "full" : "pattern",
           c->attn_layers, c->n_hashes, c->reversible, steps, st.loss, sh_mm, sh_at, 1 - sh_mm - sh_at);
    free(tokens);
    free(targets);
    free(a.sources);
    model_free(&m);
    dataset_close(&ds);
    return 0;
}

// libgomp reads its wait policy before main runs. Its default spins idle
// threads for a while after each parallel region, which is fast on an idle
// machine and ruinous when ranks or jobs share cores (mpirun --oversubscribe,
// SLURM steps, CI). Unless the user chose a policy, re-run with a passive one.
static void ensure_passive_openmp_wait(char **argv) {
    if (getenv("OMP_WAIT_POLICY")) return;
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);  // returns only on failure: carry on as we are
}

int main(int argc, char **argv) {
    ensure_passive_openmp_wait(argv);
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        print_help();
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "train")) return cmd_train(argc - 2, argv + 2);
    if (!strcmp(argv[1], "bench")) return cmd_bench(argc - 2, argv + 2);
    usage_error("unknown command '%s' (commands: train, bench, help)", argv[1]);
}
