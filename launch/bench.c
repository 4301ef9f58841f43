// reformer bench: warm-up, then timed training steps on synthetic data, then
// one profiled forward-backward for the time shares; one JSON line with
// throughput, memory and the shares.
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "dataset.h"
#include "model.h"
#include "util.h"

// Host synchronisations of the backend, counted (the bench's copy of the table).
static void (*g_real_synchronize)(void);
static long g_syncs;
static void counted_synchronize(void) {
    g_syncs++;
    g_real_synchronize();
}

int cmd_bench(int argc, char **argv) {
    Args a;
    parse_args(&a, argc, argv, CMD_BENCH);
    Config *c = &a.cfg;
    int steps = a.steps_override > 0 ? a.steps_override : 3;
    int warmup = a.warmup_override >= 0 ? a.warmup_override : 1;
    char err[1024];
    Dataset ds;
    if (dataset_open(&ds, c, err, sizeof err)) usage_error("%s", err);
    const Backend *be = pick_backend(c);
    if (preflight(c, be, !a.json, NULL, err, sizeof err)) usage_error("%s", err);
    // The model runs on a copy of the backend whose synchronize is counted:
    // the JSON says how many host synchronisations a timed step made.
    Backend counted = *be;
    g_real_synchronize = be->synchronize;
    counted.synchronize = counted_synchronize;
    Model m;
    model_init(&m, c, &counted);
    int *tokens = checked_calloc((size_t)m.T, sizeof(int)), *targets = checked_calloc((size_t)m.T, sizeof(int));
    // Untimed warm-up steps touch every buffer and warm caches; peak memory
    // is the whole run's, so one timed step alone also measures it.
    for (int s = 1; s <= warmup; s++) {
        dataset_batch(&ds, (uint32_t)s, 0, c->batch, tokens, targets);
        model_forward_backward(&m, tokens, targets, (uint32_t)s);
        model_update(&m, s, lr_at(c, s));
    }
    // Timed steps unprofiled: profiling synchronises the backend around every
    // matmul and attention call (thousands per step on a GPU), which would
    // bias the step time. The forward-backward ends by reading the losses,
    // so the device has finished it when model_forward_backward returns.
    g_syncs = 0;
    double t0 = now_seconds(), fwdbwd = 0;
    LossStats st = {0};
    for (int s = warmup + 1; s <= warmup + steps; s++) {
        dataset_batch(&ds, (uint32_t)s, 0, c->batch, tokens, targets);
        double f0 = now_seconds();
        st = model_forward_backward(&m, tokens, targets, (uint32_t)s);
        fwdbwd += now_seconds() - f0;
        model_update(&m, s, lr_at(c, s));
    }
    m.be->synchronize();  // a GPU may still be running the last update
    double dt = (now_seconds() - t0) / steps;
    const double timed_syncs = (double)g_syncs / steps;
    // The time shares: one more forward-backward, profiled (its time is not
    // in the figures above; no update follows it).
    const int ps = warmup + steps + 1;
    dataset_batch(&ds, (uint32_t)ps, 0, c->batch, tokens, targets);
    memset(m.prof_seconds, 0, sizeof m.prof_seconds);
    m.profile = 1;
    g_syncs = 0;
    model_forward_backward(&m, tokens, targets, (uint32_t)ps);
    m.profile = 0;
    const long profiled_syncs = g_syncs;
    // Device memory at the peak: nothing is allocated during steps, so after
    // them. null for device=cpu.
    size_t held = 0, used = 0, free_bytes = 0;
    char device_planned[32] = "null", device_used[32] = "null";
    if (m.be->device_memory(&held, &used, &free_bytes) == 0) {
        snprintf(device_planned, sizeof device_planned, "%.1f", (double)held / (1024.0 * 1024.0));
        snprintf(device_used, sizeof device_used, "%.1f", (double)used / (1024.0 * 1024.0));
    }
    double prof_total = m.prof_seconds[PROF_TOTAL] > 0 ? m.prof_seconds[PROF_TOTAL] : 1;
    double sh_mm = m.prof_seconds[PROF_MATMUL] / prof_total, sh_at = m.prof_seconds[PROF_ATTENTION] / prof_total;
    printf("{\"tokens_per_s\": %.1f, \"step_ms\": %.2f, \"peak_rss_mb\": %.1f, \"planned_mb\": %.1f, "
           "\"device\": \"%s\", \"precision\": \"%s\", \"device_planned_mb\": %s, \"device_used_mb\": %s, \"params\": %zu, "
           "\"seq_len\": %d, \"batch\": %d, \"d_model\": %d, \"n_layers\": %d, \"n_heads\": %d, \"attn\": \"%s\", "
           "\"attn_layers\": \"%s\", \"n_hashes\": %d, \"reversible\": %d, \"steps\": %d, \"loss\": %.4f, "
           "\"fwdbwd_ms\": %.2f, \"share_matmul\": %.3f, \"share_attention\": %.3f, \"share_other\": %.3f, "
           "\"profiled_fwdbwd_ms\": %.2f, \"timed_syncs_per_step\": %.1f, \"profiled_syncs\": %ld, \"share_hash\": %.3f}\n",
           m.T / dt, dt * 1e3, peak_rss_mib(), (double)m.bytes_planned / (1024.0 * 1024.0), c->device,
           precision_name(c->precision), device_planned, device_used, m.layout.n_params,
           c->seq_len, c->batch, c->d_model, c->n_layers, c->n_heads, c->attn_full ? "full" : "pattern",
           c->attn_layers, c->n_hashes, c->reversible, steps, st.loss, fwdbwd / steps * 1e3, sh_mm, sh_at,
           1 - sh_mm - sh_at, m.prof_seconds[PROF_TOTAL] * 1e3, timed_syncs, profiled_syncs,
           m.prof_seconds[PROF_HASH] / prof_total);  // share_hash: part of share_attention
    free(tokens);
    free(targets);
    free_args(&a);
    model_free(&m);
    dataset_close(&ds);
    return 0;
}

