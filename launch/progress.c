#include "progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli.h"
#include "util.h"

static double env_seconds(const char *name, double fallback) {
    const char *s = getenv(name);
    if (!s || !*s) return fallback;
    char *end;
    double v = strtod(s, &end);
    if (*end || v < 0) usage_error("%s: '%s' is not a number of seconds (>= 0)", name, s);
    return v;
}

void progress_init(StepProgress *p, int n_layers, int steps) {
    *p = (StepProgress){.n_layers = n_layers, .steps = steps, .tty = isatty(STDERR_FILENO)};
    p->after_s = env_seconds("REFORMER_PROGRESS_AFTER_S", 10);
    p->every_s = env_seconds("REFORMER_PROGRESS_EVERY_S", 60);
}

void progress_begin_step(StepProgress *p, int step) {
    p->step = step;
    p->t0 = now_seconds();
    p->t_backward = p->last_print = 0;
}

double progress_fraction(const StepProgress *p, int layer, int backward) {
    const double n = p->n_layers;
    double f = p->fwd_s > 0 ? p->fwd_s : 1, b = p->fwd_s > 0 ? p->bwd_s : 3;
    double done = backward ? f + b * (n - 1 - layer) / n : f * layer / n;  // backward runs layer N-1 down to 0
    return done / (f + b);
}

void progress_on_layer(void *ctx, int layer, int backward) {
    StepProgress *p = ctx;
    double now = now_seconds(), elapsed = now - p->t0;
    if (backward && !p->t_backward) p->t_backward = now;
    if (elapsed < p->after_s) return;
    if (!p->tty && p->last_print && now - p->last_print < p->every_s) return;
    p->last_print = now;
    double frac = progress_fraction(p, layer, backward);
    char el[32], eta[32] = "?";
    format_duration(el, sizeof el, elapsed);
    if (frac > 0) format_duration(eta, sizeof eta, elapsed * (1 - frac) / frac);
    fprintf(stderr, "%sstep %d/%d: %s, layer %d/%d | %.0f%% | %s elapsed, step ETA %s%s",
            p->tty ? "\r" : "progress: ", p->step, p->steps, backward ? "backward" : "forward", layer + 1,
            p->n_layers, 100 * frac, el, eta, p->tty ? "\033[K" : "\n");
    fflush(stderr);
    p->on_screen = p->tty;
}

void progress_end_step(StepProgress *p) {
    double now = now_seconds();
    if (p->on_screen) fprintf(stderr, "\r\033[K");
    p->on_screen = 0;
    if (p->t_backward) {
        p->fwd_s = p->t_backward - p->t0;
        p->bwd_s = now - p->t_backward;
    }
}
