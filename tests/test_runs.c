// Runs on a cluster (issue 11, cases 1-7): stop signals, SLURM requeue and
// `--resume auto`, divergence, one run per directory (lock), run identity,
// fallback past a damaged newest checkpoint, SWMR readers across a resume.
// Real processes: `reformer` is started as a subprocess (cli_run.h), signalled
// and resumed; a resumed run must equal an uninterrupted one bit for bit.
#include <criterion/criterion.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checkpoint.h"
#include "cli_run.h"
#include "h5_helpers.h"
#include "metrics.h"

TestSuite(runs, .init = setup, .fini = teardown, .timeout = 120);

// Long enough that a signal sent after a few steps arrives mid-run (about
// 10 ms a step), with evaluations in the metrics.
#define LONG_RUN TINY_TRAIN " --set steps=150 --set log_every=50 --set eval_every=40 --set eval_windows=2"

// The child has not ended (without reaping it, unlike cli_run.h's still_running).
static int alive(pid_t pid) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == 0;
}

static int wait_status(pid_t pid) {
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

// Rows in a metrics file (SWMR reader while it is written), -1 if unreadable.
static long metrics_rows_now(const char *path) {
    double v[1];
    return exists(path) ? h5_read_column(path, "step", v, 1) : -1;
}

// Wait (at most 30 s) until the run in the background has written n rows.
static void wait_for_rows(pid_t pid, const char *metrics, long n) {
    for (int i = 0; i < 3000 && alive(pid) && metrics_rows_now(metrics) < n; i++) usleep(10000);
    cr_assert(alive(pid), "the run ended before %ld rows were written", n);
}

// A plain (non-SWMR) HDF5 reader opens the file: the writer closed it.
static int plain_reader_opens(const char *path) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f >= 0) H5Fclose(f);
    return f >= 0;
}

// The training and evaluation rows of two metrics files are identical.
static void assert_same_metrics(const char *a, const char *b) {
    static const char *cols[] = {"step", "loss", "grad_norm", "lr", "/eval/step", "/eval/bits_per_byte"};
    for (size_t i = 0; i < sizeof cols / sizeof cols[0]; i++) {
        static char va[65536], vb[65536];
        long na = metrics_column(a, cols[i], va, sizeof va), nb = metrics_column(b, cols[i], vb, sizeof vb);
        cr_assert_eq(na, nb, "%s: %ld rows in %s, %ld in %s", cols[i], na, a, nb, b);
        cr_assert_str_eq(va, vb, "column %s differs between %s and %s", cols[i], a, b);
    }
}

// The final checkpoint and the metrics of directory x equal those of y.
static void assert_same_run(const char *x, const char *y, int steps) {
    char p[1024], q[1024];
    snprintf(p, sizeof p, "%s/ckpt_%08d.h5", x, steps);
    snprintf(q, sizeof q, "%s/ckpt_%08d.h5", y, steps);
    assert_same_tensors(p, q);
    snprintf(p, sizeof p, "%s/metrics.h5", x);
    snprintf(q, sizeof q, "%s/metrics.h5", y);
    assert_same_metrics(p, q);
}

// ------------------------------------------------------------- 1. signals

// SIGTERM, SIGINT or SIGUSR1 mid-run: the step in flight finishes, a
// checkpoint of it is written, metrics.h5 is closed (a plain reader opens
// it), one line says so, the exit status is 75; --resume then finishes the
// run bit for bit as one that was never stopped.
Test(runs, stop_signals_checkpoint_and_resume_bit_for_bit) {
    char ref[512], dir[512], metrics[1024], want[1100];
    path_in(ref, sizeof ref, "ref");
    train_ok("train %s --set out_dir='%s'", LONG_RUN, ref);
    static const int sigs[] = {SIGTERM, SIGINT, SIGUSR1};
    static const char *names[] = {"SIGTERM", "SIGINT", "SIGUSR1"};
    for (int i = 0; i < 3; i++) {
        snprintf(dir, sizeof dir, "%s/%s", tmp_dir, names[i]);
        snprintf(metrics, sizeof metrics, "%s/metrics.h5", dir);
        pid_t pid = spawn_cli(NULL, "train %s --set out_dir='%s'", LONG_RUN, dir);
        wait_for_rows(pid, metrics, 3);
        kill(pid, sigs[i]);
        cr_assert_eq(wait_status(pid), 75, "%s: exit status", names[i]);
        char path[600];
        snprintf(path, sizeof path, "%s/bg.err", tmp_dir);
        char *err = read_all(path);
        long step = -1;
        const char *at = strstr(err, "after step ");
        cr_assert(at && sscanf(at, "after step %ld/", &step) == 1, "%s: no stop line: %s", names[i], err);
        cr_assert_eq(count_lines(err), 1, "%s: not one line: %s", names[i], err);
        snprintf(want, sizeof want, "reformer: stopped by %s after step %ld/150: checkpoint %s/ckpt_%08ld.h5",
                 names[i], step, dir, step);
        cr_assert(!strncmp(err, want, strlen(want)), "%s: expected '%s...', got: %s", names[i], want, err);
        cr_assert(strstr(err, "(exit status 75)"), "%s", err);
        free(err);
        cr_assert(step >= 3 && step < 150, "%s: stopped after step %ld", names[i], step);
        cr_assert(plain_reader_opens(metrics), "%s: metrics.h5 was left open", names[i]);
        cr_assert_eq(metrics_rows_now(metrics), step, "%s: metrics rows", names[i]);
        Run r = run_cli("train --resume '%s'", dir);
        cr_assert_eq(r.rc, 0, "%s: resume failed: %s", names[i], r.err);
        run_free(&r);
        assert_same_run(dir, ref, 150);
    }
}

// A second signal while the first one's checkpoint is being written ends the
// process at once; the previous checkpoint is intact and resumes the run bit
// for bit. (The test hooks: SIGTERM raised during step 5, and the
// writer of checkpoint 5, the stop checkpoint, stalled after /params.)
Test(runs, second_signal_exits_at_once_and_keeps_the_previous_checkpoint) {
    char ref[512], dir[512], p[1024];
    path_in(ref, sizeof ref, "ref");
    path_in(dir, sizeof dir, "b");
    train_ok("train %s --set ckpt_every=2 --set out_dir='%s'", TINY_TRAIN, ref);
    setenv("REFORMER_TEST_TERM_STEP", "5", 1);
    pid_t pid = spawn_cli("REFORMER_TEST_CKPT_STALL=5", "train %s --set ckpt_every=3 --set out_dir='%s'", TINY_TRAIN,
                          dir);
    unsetenv("REFORMER_TEST_TERM_STEP");
    snprintf(p, sizeof p, "%s/ckpt_00000005.h5.tmp", dir);
    for (int i = 0; i < 3000 && !exists(p) && alive(pid); i++) usleep(10000);
    cr_assert(exists(p), "the stop checkpoint (step 5) was never started");
    usleep(200000);
    cr_assert(alive(pid), "the writer is not stalled mid-checkpoint");
    kill(pid, SIGTERM);
    cr_assert_eq(wait_status(pid), 128 + SIGTERM, "the second signal did not end the process at once");
    snprintf(p, sizeof p, "%s/ckpt_00000005.h5", dir);
    cr_assert(!exists(p), "a torn checkpoint appeared under its final name");
    Run r = run_cli("train --resume '%s'", dir);
    cr_assert_eq(r.rc, 0, "resume failed: %s", r.err);
    snprintf(p, sizeof p, "resume: %s/ckpt_00000003.h5 (step 3)", dir);
    cr_assert(strstr(r.out, p), "did not resume from checkpoint 3:\n%s", r.out);
    run_free(&r);
    assert_same_run(dir, ref, 6);
}

// ------------------------------------------------- 2. SLURM: requeue and resume

// launch/slurm/reformer.sbatch run by bash as SLURM would, with stand-ins
// for srun (drops its options and runs the command: one rank) and scontrol
// (records its arguments). USR1 to the script (SLURM's --signal=B:USR1@...)
// reaches the rank, which checkpoints and exits 75; the script requeues the
// job. The requeued job (same id, same command) resumes from the
// checkpoint with --resume auto, and the finished run equals one that never
// stopped, bit for bit; started once more it has nothing to do.
// Run the shell command cmd in the background.
static pid_t spawn_sh(const char *cmd) {
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static pid_t spawn_sbatch(const char *args) {
    char cwd[512], cmd[4096];
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    snprintf(cmd, sizeof cmd,
             "cd '%s' && exec env PATH='%s/fakebin':\"$PATH\" SLURM_JOB_ID=4242 SLURM_JOB_NAME=req "
             "SLURM_SUBMIT_DIR='%s' REFORMER='%s/%s' bash '%s/launch/slurm/reformer.sbatch' %s "
             ">>'%s/sbatch.out' 2>&1 </dev/null",
             tmp_dir, tmp_dir, tmp_dir, cwd, bin(), cwd, args, tmp_dir);
    return spawn_sh(cmd);
}

Test(runs, sbatch_requeues_on_usr1_and_the_requeued_job_resumes) {
    char cwd[512], ref[512], run[600], metrics[700], args[2048], p[1024];
    cr_assert_not_null(getcwd(cwd, sizeof cwd));
    path_in(ref, sizeof ref, "ref");
    snprintf(run, sizeof run, "%s/runs/req", tmp_dir);
    snprintf(metrics, sizeof metrics, "%s/metrics.h5", run);
    // The same run in the test's own directory (the script runs in
    // SLURM_SUBMIT_DIR), with the script's one OpenMP thread per rank (the
    // thread count changes the order of float sums).
    snprintf(args, sizeof args, "%s --set data='%s/data/tinyshakespeare.txt'", LONG_RUN, cwd);
    setenv("OMP_NUM_THREADS", "1", 1);
    train_ok("train %s --set out_dir='%s'", args, ref);
    unsetenv("OMP_NUM_THREADS");
    sh("mkdir -p '%s/fakebin' && printf '%%s\\n' '#!/bin/sh' "
       "'while [ $# -gt 0 ]; do case \"$1\" in --*) shift;; *) break;; esac; done' 'exec \"$@\"' "
       ">'%s/fakebin/srun' && printf '%%s\\n' '#!/bin/sh' 'echo \"$@\" >>\"$SLURM_SUBMIT_DIR/scontrol.log\"' "
       ">'%s/fakebin/scontrol' && chmod +x '%s/fakebin/srun' '%s/fakebin/scontrol'",
       tmp_dir, tmp_dir, tmp_dir, tmp_dir, tmp_dir);

    pid_t pid = spawn_sbatch(args);
    wait_for_rows(pid, metrics, 3);
    kill(pid, SIGUSR1);
    int rc = wait_status(pid);
    snprintf(p, sizeof p, "%s/sbatch.out", tmp_dir);
    char *out = read_all(p);
    cr_assert_eq(rc, 0, "the script exited %d:\n%s", rc, out);
    cr_assert(strstr(out, "resume: no checkpoint in runs/req: a new run"), "%s", out);
    cr_assert(strstr(out, "reformer: stopped by SIGUSR1 after step "), "%s", out);
    cr_assert(strstr(out, "requeueing job 4242"), "%s", out);
    free(out);
    snprintf(p, sizeof p, "%s/scontrol.log", tmp_dir);
    out = read_all(p);
    cr_assert_str_eq(out, "requeue 4242\n", "scontrol was not asked to requeue the job");
    free(out);

    // The requeued job: same id, same command.
    cr_assert_eq(wait_status(spawn_sbatch(args)), 0);
    snprintf(p, sizeof p, "%s/sbatch.out", tmp_dir);
    out = read_all(p);
    cr_assert(strstr(out, "resume: runs/req/ckpt_"), "the requeued job did not resume:\n%s", out);
    cr_assert(strstr(out, "done: 150 steps"), "%s", out);
    free(out);
    assert_same_run(run, ref, 150);
    cr_assert_eq(wait_status(spawn_sbatch(args)), 0);
    out = read_all(p);
    cr_assert(strstr(out, "nothing to do"), "%s", out);
    free(out);
    snprintf(p, sizeof p, "%s/scontrol.log", tmp_dir);
    out = read_all(p);
    cr_assert_str_eq(out, "requeue 4242\n", "a finished run was requeued");
    free(out);
}

// ------------------------------------ 6. damaged newest checkpoint: fall back

// Each way of damaging the newest checkpoint (ckpt 4): --resume says it
// skipped that file and why, resumes from ckpt 2, and the finished run equals
// the undamaged one bit for bit (checkpoint 4 rewritten, metrics the same).
// With every checkpoint damaged it stops with one line naming each file and
// leaves the directory as it was.
Test(runs, damaged_newest_checkpoint_falls_back_to_the_newest_valid_one) {
    char base[512];
    path_in(base, sizeof base, "base");
    train_ok("train %s --set steps=4 --set ckpt_every=2 --set out_dir='%s'", TINY_TRAIN, base);
    static const char *cases[][2] = {
        {"truncate", "truncated"},   {"flip", "checksum"},          {"version", "format_version"},
        {"shape", "/params/out/w"},  {"missing", "/optim/m/tok_emb"}, {"nan", "/params/lnf/g"},
        {"text", "not a checkpoint"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[600], ck[700], want[1400];
        snprintf(dir, sizeof dir, "%s/%s", tmp_dir, cases[i][0]);
        sh("cp -r '%s' '%s'", base, dir);
        snprintf(ck, sizeof ck, "%s/ckpt_00000004.h5", dir);
        size_t len;
        unsigned char *bytes = slurp(ck, &len);
        const char *kind = cases[i][0];
        if (!strcmp(kind, "truncate")) cr_assert_eq(truncate(ck, (off_t)len / 2), 0);
        else if (!strcmp(kind, "flip")) bytes[len * 3 / 4] ^= 0x01, spit(ck, bytes, len);
        else if (!strcmp(kind, "version")) ckpt_set_format_version(ck, 99);
        else if (!strcmp(kind, "shape")) ckpt_reshape(ck, "/params/out/w", 64, 7);
        else if (!strcmp(kind, "missing")) ckpt_delete(ck, "/optim/m/tok_emb");
        else if (!strcmp(kind, "nan")) ckpt_poke(ck, "/params/lnf/g", 5, INFINITY);
        else spit(ck, (const unsigned char *)"hello\n", 6);
        free(bytes);
        Run r = run_cli("train --resume '%s'", dir);
        cr_assert_eq(r.rc, 0, "%s: resume failed (%d): %s", kind, r.rc, r.err);
        snprintf(want, sizeof want, "resume: skipped %s: ", ck);
        const char *line = strstr(r.out, want);
        cr_assert(line, "%s: no '%s' line:\n%s", kind, want, r.out);
        const char *eol = strchr(line, '\n');
        cr_assert(eol && strstr(line, cases[i][1]) && strstr(line, cases[i][1]) < eol, "%s: reason not given: %s",
                  kind, line);
        snprintf(want, sizeof want, "resume: %s/ckpt_00000002.h5 (step 2)", dir);
        cr_assert(strstr(r.out, want), "%s: did not resume from checkpoint 2:\n%s", kind, r.out);
        run_free(&r);
        assert_same_run(dir, base, 4);
    }
    // Every checkpoint damaged: one line naming both, nothing changed.
    char dir[600], ck[700];
    snprintf(dir, sizeof dir, "%s/all", tmp_dir);
    sh("cp -r '%s' '%s'", base, dir);
    snprintf(ck, sizeof ck, "%s/ckpt_00000002.h5", dir);
    cr_assert_eq(truncate(ck, 1000), 0);
    snprintf(ck, sizeof ck, "%s/ckpt_00000004.h5", dir);
    spit(ck, (const unsigned char *)"hello\n", 6);
    GroupBytes snap = dir_snapshot(dir);
    Run r = run_cli("train --resume '%s'", dir);
    ASSERT_ONE_LINE_ERROR(&r, "every checkpoint damaged", "no valid checkpoint", "ckpt_00000002.h5: truncated",
                          "ckpt_00000004.h5: not a checkpoint");
    run_free(&r);
    assert_same_snapshot(&snap, dir, "refused resume");
}

// ------------------------------------------------ 4. one run per directory

// `reformer <args>` in the background, its stdout and stderr to
// <tmp_dir>/<name>.out and .err.
static pid_t spawn_named(const char *name, const char *args) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "exec '%s' %s >'%s/%s.out' 2>'%s/%s.err' </dev/null", bin(), args, tmp_dir, name,
             tmp_dir, name);
    return spawn_sh(cmd);
}

static char *read_named(const char *name, const char *ext) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s.%s", tmp_dir, name, ext);
    return read_all(p);
}

// Two runs started together on one out_dir: exactly one trains; the other
// is refused with one line naming the holder (its pid and host) and writes
// nothing. While the first runs, --resume of the directory is refused too.
// A lock left by a SIGKILLed run does not block the resume that follows.
Test(runs, one_run_per_directory) {
    char dir[512], args[4096], metrics[700], host[256];
    path_in(dir, sizeof dir, "run");
    snprintf(metrics, sizeof metrics, "%s/metrics.h5", dir);
    gethostname(host, sizeof host);
    snprintf(args, sizeof args, "train %s --set steps=400 --set ckpt_every=5 --set out_dir='%s'", LONG_RUN, dir);
    pid_t a = spawn_named("a", args), b = spawn_named("b", args);
    for (int i = 0; i < 3000 && alive(a) && alive(b); i++) usleep(10000);
    // The refused one ends within moments; the other is still training.
    int a_left = !alive(a);
    pid_t winner = a_left ? b : a, loser = a_left ? a : b;
    const char *lname = a_left ? "a" : "b";
    cr_assert(alive(winner), "both runs ended at once");
    int rc = wait_status(loser);
    char *err = read_named(lname, "err");
    cr_assert_eq(rc, 2, "the second run exited %d: %s", rc, err);
    cr_assert_eq(count_lines(err), 1, "%s", err);
    char want[1024];
    snprintf(want, sizeof want, "is in use by another reformer train (pid %ld on host %s since ", (long)winner, host);
    cr_assert(strstr(err, "reformer: error: out_dir: ") && strstr(err, want), "expected '%s' in: %s", want, err);
    free(err);
    wait_for_rows(winner, metrics, 6);
    Run r = run_cli("train --resume '%s'", dir);
    cr_assert_eq(r.rc, 2, "--resume while the run holds the directory: %d %s", r.rc, r.err);
    cr_assert(strstr(r.err, want), "%s", r.err);
    run_free(&r);
    kill(winner, SIGKILL);
    cr_assert_eq(wait_status(winner), 128 + SIGKILL);
    // Dead holder: the lock is gone with it (the file stays).
    snprintf(want, sizeof want, "%s/train.lock", dir);
    cr_assert(exists(want));
    char first[8192];
    snprintf(first, sizeof first, "train --resume auto %s --set steps=400 --set ckpt_every=5 --set out_dir='%s'", LONG_RUN, dir);
    r = run_cli("%s", first);
    cr_assert_eq(r.rc, 0, "after the holder was killed: %d %s", r.rc, r.err);
    run_free(&r);
}

// ------------------------------------------------------------ 3. divergence

// lr=10 diverges within a few steps (measured: non-finite at step 16 with
// warmup=5). The run stops with one line that says what was set (lr,
// warmup, clip: no "set clip" when clip is set) and names the last
// checkpoint with a sane loss, which pruning (keep_ckpts=3, a checkpoint
// every step) kept; metrics.h5 is closed. eval and sample of a checkpoint
// whose outputs overflow fail with one line instead of printing nan or
// garbage with status 0.
Test(runs, divergence_keeps_the_last_sane_checkpoint_and_says_what_was_set) {
    char dir[512], p[1024];
    path_in(dir, sizeof dir, "div");
    Run r = run_cli("train %s --set steps=300 --set lr=10 --set warmup=5 --set ckpt_every=1 --set keep_ckpts=3 "
                    "--set out_dir='%s'", TINY_TRAIN, dir);
    snprintf(p, sizeof p, "the last checkpoint with a sane loss is %s/ckpt_00000001.h5 (step 1, loss 5.", dir);
    ASSERT_ONE_LINE_ERROR(&r, "lr=10", "became non-finite at step ", "with lr=10, warmup=5, clip=1: lower lr", p);
    cr_assert_eq(r.rc, 1);
    cr_assert(!strstr(r.err, "set clip"), "clip is set, yet: %s", r.err);
    long last = -1;
    cr_assert_eq(sscanf(strstr(r.err, "at step "), "at step %ld", &last), 1);
    run_free(&r);
    snprintf(p, sizeof p, "%s/ckpt_00000001.h5", dir);
    cr_assert(exists(p), "the last sane checkpoint was pruned");
    for (long s = last - 3; s < last; s++) {
        snprintf(p, sizeof p, "%s/ckpt_%08ld.h5", dir, s);
        cr_assert(exists(p), "the newest checkpoints are not kept (step %ld)", s);
    }
    snprintf(p, sizeof p, "%s/ckpt_%08ld.h5", dir, last - 4);
    cr_assert(!exists(p), "keep_ckpts=3 did not prune");
    snprintf(p, sizeof p, "%s/metrics.h5", dir);
    cr_assert(plain_reader_opens(p), "metrics.h5 was left open");
    cr_assert_eq(metrics_rows_now(p), last - 1);
    // The sane checkpoint evaluates; one whose outputs overflow (a token
    // embedding of 3e38, which LayerNorm squares) is refused by eval and sample.
    snprintf(p, sizeof p, "%s/ckpt_00000001.h5", dir);
    r = run_cli("eval --ckpt '%s' --windows 2", p);
    cr_assert_eq(r.rc, 0, "%s", r.err);
    run_free(&r);
    char bad[1100];
    snprintf(bad, sizeof bad, "%s/overflow.h5", tmp_dir);
    sh("cp '%s' '%s'", p, bad);
    for (int i = 0; i < 256; i++) ckpt_poke(bad, "/params/tok_emb", (size_t)i * 32, 3e38f);
    r = run_cli("eval --ckpt '%s' --windows 2", bad);
    // (eval's stderr also has its progress lines: the error is the last line.)
    const char *last_line = r.err + strlen(r.err) - 1;
    while (last_line > r.err && last_line[-1] != '\n') last_line--;
    cr_assert_eq(r.rc, 1, "eval of an overflowing checkpoint exited %d: %s%s", r.rc, r.out, r.err);
    cr_assert(!strncmp(last_line, "reformer: error: ", 17) && strstr(last_line, "overflow.h5") &&
                  strstr(last_line, "not a finite number"),
              "%s", r.err);
    cr_assert(!strstr(r.out, "bits per byte"), "eval printed a result: %s", r.out);
    run_free(&r);
    r = run_cli("sample --ckpt '%s' --prompt 'ROMEO:' --len 20", bad);
    ASSERT_ONE_LINE_ERROR(&r, "sample of an overflowing checkpoint", "overflow.h5", "not a finite number");
    run_free(&r);
}

// ----------------------------------------------------------- 5. run identity

// Every run has an identity, stored in its checkpoints and metrics.h5 and
// kept by --resume. A checkpoint of another run in the directory (copied in
// under its own step, or renamed to another one) is refused rather than
// resumed; --resume writing into a directory of another run is refused; a
// new run into a directory holding another run's metrics.h5 is refused.
// Refused runs change nothing. Writing to an empty directory is allowed.
Test(runs, run_identity_keeps_runs_apart) {
    char a[512], f[512], c[512], m[512], p[1024], q[1024], id_a[CKPT_RUN_ID_LEN], id_f[CKPT_RUN_ID_LEN], err[2048];
    path_in(a, sizeof a, "a");
    path_in(f, sizeof f, "f");
    path_in(c, sizeof c, "c");
    path_in(m, sizeof m, "m");
    train_ok("train %s --set steps=4 --set ckpt_every=2 --set out_dir='%s'", TINY_TRAIN, a);
    train_ok("train %s --set steps=6 --set ckpt_every=2 --set seed=9 --set out_dir='%s'", TINY_TRAIN, f);
    snprintf(p, sizeof p, "%s/ckpt_00000004.h5", a);
    cr_assert_eq(ckpt_read_run_id(p, id_a, sizeof id_a, err, sizeof err), 0, "%s", err);
    snprintf(p, sizeof p, "%s/metrics.h5", a);
    cr_assert_eq(metrics_read_run_id(p, q, sizeof q, err, sizeof err), 0, "%s", err);
    cr_assert(strlen(id_a) == 32 && !strcmp(q, id_a), "checkpoint run_id '%s', metrics run_id '%s'", id_a, q);
    snprintf(p, sizeof p, "%s/ckpt_00000006.h5", f);
    cr_assert_eq(ckpt_read_run_id(p, id_f, sizeof id_f, err, sizeof err), 0, "%s", err);
    cr_assert(strcmp(id_a, id_f), "two runs have the same id %s", id_a);

    // Another run's checkpoint, copied in under its own step.
    sh("cp '%s/ckpt_00000006.h5' '%s/ckpt_00000006.h5'", f, a);
    GroupBytes snap = dir_snapshot(a);
    Run r = run_cli("train --resume '%s' --set steps=8", a);
    ASSERT_ONE_LINE_ERROR(&r, "a foreign checkpoint", "ckpt_00000006.h5", id_f, id_a, "mixes two runs");
    run_free(&r);
    assert_same_snapshot(&snap, a, "foreign checkpoint refused");
    // ... the same without metrics.h5: the run's other checkpoints tell.
    char a2[600];
    snprintf(a2, sizeof a2, "%s/a2", tmp_dir);
    sh("cp -r '%s' '%s' && rm '%s/metrics.h5'", a, a2, a2);
    snap = dir_snapshot(a2);
    r = run_cli("train --resume '%s' --set steps=8", a2);
    ASSERT_ONE_LINE_ERROR(&r, "a foreign checkpoint, no metrics", "ckpt_00000006.h5", "ckpt_00000004.h5", id_f, id_a,
                          "mixes two runs");
    run_free(&r);
    assert_same_snapshot(&snap, a2, "foreign checkpoint refused (no metrics.h5)");
    // ... renamed to another step.
    sh("mv '%s/ckpt_00000006.h5' '%s/ckpt_00000009.h5'", a, a);
    snap = dir_snapshot(a);
    r = run_cli("train --resume '%s' --set steps=12", a);
    ASSERT_ONE_LINE_ERROR(&r, "a renamed checkpoint", "ckpt_00000009.h5 holds step 6");
    run_free(&r);
    assert_same_snapshot(&snap, a, "renamed checkpoint refused");
    sh("rm '%s/ckpt_00000009.h5'", a);

    // --resume a run into another run's directory.
    snap = dir_snapshot(f);
    r = run_cli("train --resume '%s' --set steps=6 --set out_dir='%s'", a, f);
    ASSERT_ONE_LINE_ERROR(&r, "resume into another run's directory", "holds another run", id_f);
    run_free(&r);
    assert_same_snapshot(&snap, f, "resume into another run refused");
    // A new run into a directory holding only another run's metrics.
    sh("mkdir -p '%s' && cp '%s/metrics.h5' '%s/'", m, f, m);
    snap = dir_snapshot(m);
    r = run_cli("train %s --set out_dir='%s'", TINY_TRAIN, m);
    ASSERT_ONE_LINE_ERROR(&r, "new run beside another run's metrics", "holds another run", id_f, "--resume auto");
    run_free(&r);
    assert_same_snapshot(&snap, m, "new run refused");

    // Into an empty directory: the run continues there, under its identity.
    train_ok("train --resume '%s' --set steps=6 --set out_dir='%s'", a, c);
    snprintf(p, sizeof p, "%s/ckpt_00000006.h5", c);
    cr_assert_eq(ckpt_read_run_id(p, q, sizeof q, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(q, id_a);
    snprintf(p, sizeof p, "%s/metrics.h5", c);
    cr_assert_eq(metrics_read_run_id(p, q, sizeof q, err, sizeof err), 0, "%s", err);
    cr_assert_str_eq(q, id_a);
}

// ------------------------------------------------- 7. readers across resume

// Rows of the 1-D dataset ds of an open file, after H5Drefresh (what a SWMR
// reader does to see new rows); values into v (at most cap).
static long refreshed_rows(hid_t ds, double *v, long cap) {
    cr_assert(H5Drefresh(ds) >= 0, "H5Drefresh failed");
    hid_t space = H5Dget_space(ds);
    hsize_t n = 0;
    H5Sget_simple_extent_dims(space, &n, NULL);
    H5Sclose(space);
    if ((long)n <= cap) cr_assert(H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    return (long)n;
}

// A SWMR reader that opened metrics.h5 while the run trained keeps it open
// across a crash (SIGKILL) and the --resume that finishes the run, and then
// sees every step, 1..150, with the resumed run's values: resume continues
// the file in place (main replaced it, leaving the reader on the old file).
Test(runs, swmr_reader_sees_the_resumed_rows) {
    char dir[512], metrics[700];
    path_in(dir, sizeof dir, "live");
    snprintf(metrics, sizeof metrics, "%s/metrics.h5", dir);
    pid_t pid = spawn_cli(NULL, "train %s --set ckpt_every=20 --set out_dir='%s'", LONG_RUN, dir);
    wait_for_rows(pid, metrics, 25);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(metrics, H5F_ACC_RDONLY | H5F_ACC_SWMR_READ, H5P_DEFAULT);
    cr_assert(f >= 0, "a SWMR reader cannot open the file while training runs");
    hid_t ds = H5Dopen2(f, "step", H5P_DEFAULT);
    cr_assert(ds >= 0);
    kill(pid, SIGKILL);  // (a stop signal ends the same way; SIGKILL also leaves rows past the checkpoint)
    cr_assert_eq(wait_status(pid), 128 + SIGKILL);
    static double v[512];
    long stopped = refreshed_rows(ds, v, 512);
    cr_assert(stopped >= 25 && stopped < 150, "%ld rows after the kill", stopped);

    // (The reader holds HDF5's shared file lock, as every reader does: the
    // resume must not be refused for it.)
    Run r = run_cli("train --resume '%s'", dir);
    cr_assert_eq(r.rc, 0, "resume failed: %s", r.err);
    run_free(&r);
    long n = refreshed_rows(ds, v, 512);
    cr_assert_eq(n, 150, "the SWMR reader sees %ld rows after the resume (it saw %ld before)", n, stopped);
    for (long i = 0; i < n; i++) cr_assert_eq(v[i], (double)(i + 1), "row %ld has step %g", i, v[i]);
    hid_t loss = H5Dopen2(f, "loss", H5P_DEFAULT);
    static double lv[512], ref[512];
    cr_assert_eq(refreshed_rows(loss, lv, 512), 150);
    char p[1024];
    snprintf(p, sizeof p, "%s/metrics.h5", dir);
    H5Dclose(loss);
    H5Dclose(ds);
    H5Fclose(f);
    cr_assert_eq(h5_read_column(p, "loss", ref, 512), 150);
    cr_assert(!memcmp(lv, ref, sizeof(double) * 150), "the reader sees other losses than the file holds");
}
