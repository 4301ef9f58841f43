// Running the `reformer` program from a test (test_cli.c, test_runs.c): its
// exit status, stdout, stderr and files. Run from the repository root (as
// `make test` does); the binary is $REFORMER_BIN if set, else build/reformer.
// A suite using this sets .init = setup and .fini = teardown: each test gets
// a fresh tmp_dir.
#pragma once
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "h5_helpers.h"

// A model small enough to train six steps in a fraction of a second.
#define TINY_MODEL                                                                                             \
    "--set seq_len=128 --set d_model=32 --set d_ff=64 --set n_layers=2 --set n_heads=2 --set lsh_chunk=32 " \
    "--set local_chunk=32 --set batch=2"
// The optimizer the tests' expectations were written for (the defaults until
// issue 25 raised lr and lowered the betas): which bytes a model trained six
// steps samples, and how far LSH's two forms differ after 40, depend on it.
#define TINY_OPTIM "--set lr=2e-3 --set beta1=0.9 --set beta2=0.98 "
#define TINY_TRAIN "--set data=data/tinyshakespeare.txt --set steps=6 " TINY_OPTIM TINY_MODEL

static char tmp_dir[256];

static inline const char *bin(void) {
    const char *b = getenv("REFORMER_BIN");
    return b && *b ? b : "build/reformer";
}

static inline void setup(void) {
    cr_assert(access(bin(), X_OK) == 0, "%s is not an executable (run from the repo root after `make`, or set REFORMER_BIN)",
              bin());
    snprintf(tmp_dir, sizeof tmp_dir, "%s/reformer-test-cli.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    cr_assert_not_null(mkdtemp(tmp_dir), "mkdtemp failed");
}

static inline void teardown(void) {
    char cmd[1024];
    // A test may have mounted a small tmpfs at tmp_dir/full (disk-full cases).
    snprintf(cmd, sizeof cmd, "umount '%s/full' 2>/dev/null; rm -rf '%s'", tmp_dir, tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", tmp_dir);
}

static inline char *read_all(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return calloc(1, 1);
    char *buf = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            buf = realloc(buf, cap);
            cr_assert_not_null(buf);
        }
        size_t n = fread(buf + len, 1, 4096, f);
        len += n;
        if (n == 0) break;
    }
    buf[len] = '\0';
    fclose(f);
    return buf;
}

typedef struct {
    int rc;     // exit status; 128 + signal if killed
    char *out;  // stdout
    char *err;  // stderr
} Run;

// Run `reformer <args>` (args is shell text: quote paths with '...').
static inline Run run_cli(const char *fmt, ...) {
    char args[4096], cmd[8192], out_path[512], err_path[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(out_path, sizeof out_path, "%s/stdout", tmp_dir);
    snprintf(err_path, sizeof err_path, "%s/stderr", tmp_dir);
    snprintf(cmd, sizeof cmd, "'%s' %s >'%s' 2>'%s' </dev/null", bin(), args, out_path, err_path);
    int status = system(cmd);
    cr_assert_neq(status, -1, "system() failed for: %s", cmd);
    Run r;
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    r.out = read_all(out_path);
    r.err = read_all(err_path);
    return r;
}

static inline void run_free(Run *r) {
    free(r->out);
    free(r->err);
}

static inline int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

// The run failed with exactly one stderr line "reformer: error: ..." that
// contains every string in names (NULL-terminated).
static inline void assert_one_line_error(const Run *r, const char *what, const char *const *names) {
    cr_assert_neq(r->rc, 0, "%s: exit status 0, expected failure (stdout: %s)", what, r->out);
    cr_assert_lt(r->rc, 128, "%s: killed by signal %d (stderr: %s)", what, r->rc - 128, r->err);
    cr_assert_eq(count_lines(r->err), 1, "%s: stderr is not exactly one line:\n%s", what, r->err);
    cr_assert(!strncmp(r->err, "reformer: error:", 16), "%s: stderr does not start with 'reformer: error:': %s", what,
              r->err);
    for (int i = 0; names[i]; i++)
        cr_assert(strstr(r->err, names[i]) != NULL, "%s: error does not name '%s': %s", what, names[i], r->err);
}

#define ASSERT_ONE_LINE_ERROR(r, what, ...) assert_one_line_error(r, what, (const char *const[]){__VA_ARGS__, NULL})

static inline int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}


// The "loss X" field of every "step i/n | loss X | ..." line, joined by
// spaces into losses; returns the number of step lines.
static inline int step_losses(const char *out, char *losses, size_t cap, int *with_acc) {
    int n = 0;
    losses[0] = '\0';
    if (with_acc) *with_acc = 0;
    for (const char *p = out; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (!strncmp(p, "step ", 5)) {
            char line[1024];
            snprintf(line, sizeof line, "%.*s", (int)len, p);
            const char *l = strstr(line, "| loss ");
            cr_assert_not_null(l, "step line without a loss field: %s", line);
            char value[64];
            cr_assert_eq(sscanf(l + 7, "%63s", value), 1, "%s", line);
            snprintf(losses + strlen(losses), cap - strlen(losses), "%s%s", n ? " " : "", value);
            if (with_acc && strstr(line, "| acc ")) (*with_acc)++;
            n++;
        }
        if (!nl) break;
        p = nl + 1;
    }
    return n;
}

// Column name of a metrics file as text ("%.17g" values joined by spaces);
// returns the row count.
static inline long metrics_column(const char *path, const char *name, char *values, size_t cap) {
    double v[4096];
    long n = h5_read_column(path, name, v, 4096);
    cr_assert_geq(n, 0, "cannot read column %s of %s", name, path);
    values[0] = '\0';
    for (long i = 0; i < n && i < 4096; i++)
        snprintf(values + strlen(values), cap - strlen(values), "%s%.17g", i ? " " : "", v[i]);
    return n;
}

static inline void path_in(char *out, size_t cap, const char *sub) { snprintf(out, cap, "%s/%s", tmp_dir, sub); }

static inline void sh(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    cr_assert_eq(system(cmd), 0, "failed: %s", cmd);
}

static inline void train_ok(const char *fmt, ...) {
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    Run r = run_cli("%s", args);
    cr_assert_eq(r.rc, 0, "reformer %s failed (%d): %s", args, r.rc, r.err);
    run_free(&r);
}

// Pointer to the last n space-separated tokens of s.
static inline const char *last_tokens(const char *s, int n) {
    const char *p = s + strlen(s);
    while (p > s) {
        if (p[-1] == ' ' && --n == 0) break;
        p--;
    }
    return p;
}

// /params and /optim of two checkpoints are bit-identical.
static inline void assert_same_tensors(const char *a, const char *b) {
    static const char *groups[] = {"/params", "/optim"};
    for (int g = 0; g < 2; g++) {
        GroupBytes x = h5_group_bytes(a, groups[g]), y = h5_group_bytes(b, groups[g]);
        cr_assert_gt(x.datasets, 0);
        cr_assert(x.len == y.len && !memcmp(x.buf, y.buf, x.len), "%s of %s and %s differ", groups[g], a, b);
        free(x.buf);
        free(y.buf);
    }
}

// A run of `total` steps in dir a (output ra) and a resume in dir b of its
// checkpoint of step total - tail (output rb): the resumed steps have the
// same losses and the final checkpoints bit-identical tensors.
static inline void assert_resume_matches(const Run *ra, const Run *rb, const char *a, const char *b, int total, int tail) {
    char la[4096], lb[4096], p[1024], q[1024];
    cr_assert_eq(step_losses(ra->out, la, sizeof la, NULL), total);
    cr_assert_eq(step_losses(rb->out, lb, sizeof lb, NULL), tail);
    cr_assert_str_eq(last_tokens(la, tail), lb, "losses of the resumed steps differ");
    snprintf(p, sizeof p, "%s/ckpt_%08d.h5", a, total);
    snprintf(q, sizeof q, "%s/ckpt_%08d.h5", b, total);
    assert_same_tensors(p, q);
}

// Every file of a directory (but its lock file), names and bytes, for
// "left untouched" checks.
static inline GroupBytes dir_snapshot(const char *dir) {
    GroupBytes g = {0};
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    cr_assert_geq(n, 0, "cannot list %s", dir);
    for (int i = 0; i < n; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]->d_name);
        struct stat st;
        // train.lock names the last process that held the directory (any
        // train that got past its checks); it holds no run data.
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode) && strcmp(names[i]->d_name, "train.lock")) {
            size_t len;
            unsigned char *b = slurp(p, &len);
            group_bytes_add(&g, names[i]->d_name, strlen(names[i]->d_name) + 1);
            group_bytes_add(&g, b, len);
            free(b);
            g.datasets++;
        }
        free(names[i]);
    }
    free(names);
    return g;
}

static inline void assert_same_snapshot(GroupBytes *before, const char *dir, const char *what) {
    GroupBytes after = dir_snapshot(dir);
    cr_assert(after.datasets == before->datasets && after.len == before->len && !memcmp(after.buf, before->buf, after.len),
              "%s: files in %s were changed, added or removed", what, dir);
    free(after.buf);
    free(before->buf);
}

// Start `reformer <args>` in the background with one extra environment
// assignment (NAME=value, or NULL); stdout and stderr go to files in tmp_dir.
static inline pid_t spawn_cli(const char *env, const char *fmt, ...) {
    char args[4096], cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "exec '%s' %s >'%s/bg.out' 2>'%s/bg.err' </dev/null", bin(), args, tmp_dir, tmp_dir);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        if (env) putenv((char *)env);
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static inline int still_running(pid_t pid) { return waitpid(pid, NULL, WNOHANG) == 0; }
