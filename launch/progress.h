// Progress inside a long training step (rank 0): the model calls the hook at
// the start of every layer of the forward and of the backward
// (Model.on_layer; core/ does no I/O), and this prints where the step is:
// layer k of N, forward or backward, its elapsed time and an ETA for the step.
//
// On a terminal (stderr) one line rewritten in place, once the step has run
// `after_s` seconds (default 10); otherwise, a plain line at most every
// `every_s` seconds (default 60) once the step has run `after_s`. Short steps
// print nothing. REFORMER_PROGRESS_AFTER_S and REFORMER_PROGRESS_EVERY_S
// replace the defaults (the tests use 0).
#pragma once

typedef struct {
    int n_layers, step, steps;
    int tty;                  // stderr is a terminal: rewrite one line
    double after_s, every_s;
    double t0;                // this step's start
    double t_backward;        // when this step's backward began (0: not yet)
    double last_print;        // when the last line was printed (0: none this step)
    double fwd_s, bwd_s;      // the previous step's forward and backward seconds (0: no previous step)
    int on_screen;            // a rewritten line is showing (clear it before the step line)
} StepProgress;

void progress_init(StepProgress *p, int n_layers, int steps);
void progress_begin_step(StepProgress *p, int step);
// The Model.on_layer hook; ctx is the StepProgress.
void progress_on_layer(void *ctx, int layer, int backward);
// After the step: clears a rewritten line and learns the step's phase times.
void progress_end_step(StepProgress *p);
// The step's fraction done at the start of layer (forward or backward), for
// the ETA: the previous step's forward/backward split, or (first step) a
// backward taken as 3 forwards (recompute, then the backward's two matmuls).
double progress_fraction(const StepProgress *p, int layer, int backward);
