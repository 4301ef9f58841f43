// reformer export-hf / import-hf: convert between this project's checkpoints
// and Hugging Face transformers' ReformerModelWithLMHead directories. A
// checkpoint's tokenizer travels as the directory's spiece.model, which
// transformers' ReformerTokenizer reads.
//
// The conversion itself is Python (launch/hf/reformer_hf.py, which holds the
// mapping table) run with the interpreter of the virtual environment that
// `make setup-hf` creates (.venv-hf at the repository root, with torch and
// transformers); the program itself never links or needs Python. This file
// checks what it can in C, with the checkpoint code the other commands use:
// export validates the checkpoint's seal and config before Python reads it;
// import has Python write `<out>.tmp`, then seals it, checks that its config
// finalizes here (so eval, sample and train will accept it) and renames it
// into place, so a refused or failed import leaves no file under <out>.
//
// REFORMER_HF_PYTHON=PATH runs another interpreter (one with torch and
// transformers >= 4.x that still ships Reformer).
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checkpoint.h"
#include "cli.h"
#include "tokenizer.h"

// The repository root: the program is <root>/build/reformer.
static void repo_root(char *out, size_t cap) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) usage_error("export-hf/import-hf: cannot find the program's own path (/proc/self/exe)");
    exe[n] = '\0';
    for (int up = 0; up < 2; up++) {
        char *slash = strrchr(exe, '/');
        if (slash) *slash = '\0';
    }
    snprintf(out, cap, "%s", exe[0] ? exe : "/");
}

// Runs `python reformer_hf.py argv...` and returns its exit status (the
// script prints its own one-line errors).
static int run_python(const char *command, char *const *script_args, int n_args) {
    char root[PATH_MAX], python[PATH_MAX + 32], script[PATH_MAX + 32];
    repo_root(root, sizeof root);
    const char *env = getenv("REFORMER_HF_PYTHON");
    snprintf(python, sizeof python, "%s", env && env[0] ? env : "");
    if (!python[0]) snprintf(python, sizeof python, "%s/.venv-hf/bin/python", root);
    snprintf(script, sizeof script, "%s/launch/hf/reformer_hf.py", root);
    if (access(python, X_OK) != 0)
        usage_error("%s needs the Hugging Face environment (torch, transformers): %s not found; create it with "
                    "`make setup-hf` in %s",
                    command, python, root);
    if (access(script, R_OK) != 0) usage_error("%s: %s is missing (incomplete checkout?)", command, script);
    char **argv = calloc((size_t)n_args + 4, sizeof(char *));
    if (!argv) usage_error("out of memory");
    argv[0] = python;
    argv[1] = script;
    for (int i = 0; i < n_args; i++) argv[2 + i] = script_args[i];
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) usage_error("%s: fork: %s", command, strerror(errno));
    if (pid == 0) {
        execv(python, argv);
        fprintf(stderr, "reformer: error: %s: cannot run %s: %s\n", command, python, strerror(errno));
        _exit(127);
    }
    free(argv);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) usage_error("%s: waitpid: %s", command, strerror(errno));
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    fprintf(stderr, "reformer: error: %s: the converter (%s) was killed by signal %d\n", command, script,
            WTERMSIG(status));
    return 1;
}

// --name VALUE pairs; every flag of names is required.
static void parse_flags(const char *command, int argc, char **argv, const char *const names[2], const char *vals[2]) {
    vals[0] = vals[1] = NULL;
    for (int i = 0; i < argc; i++) {
        int k = !strcmp(argv[i], names[0]) ? 0 : !strcmp(argv[i], names[1]) ? 1 : -1;
        if (k < 0) usage_error("%s: unknown argument '%s' (usage: reformer %s %s X %s Y)", command, argv[i], command,
                               names[0], names[1]);
        if (i + 1 >= argc) usage_error("%s needs a value", argv[i]);
        vals[k] = argv[++i];
    }
    for (int k = 0; k < 2; k++)
        if (!vals[k]) usage_error("%s needs %s (usage: reformer %s %s X %s Y)", command, names[k], command, names[0],
                                  names[1]);
}

int cmd_export_hf(int argc, char **argv) {
    static const char *const names[2] = {"--ckpt", "--out"};
    const char *v[2];
    parse_flags("export-hf", argc, argv, names, v);
    Config c;
    long step;
    char err[2048];
    if (ckpt_read_config(v[0], &c, &step, err, sizeof err)) usage_error("--ckpt: %s", err);
    char *args[] = {"export", (char *)v[0], (char *)v[1]};
    return run_python("export-hf", args, 3);
}

int cmd_import_hf(int argc, char **argv) {
    static const char *const names[2] = {"--model", "--out"};
    const char *v[2];
    parse_flags("import-hf", argc, argv, names, v);
    // --out DIR/ (or an existing directory) names DIR/ckpt_00000000.h5, the
    // file `train --resume DIR` starts a fine-tuning run from.
    struct stat st;
    char out[PATH_MAX];
    size_t n = strlen(v[1]);
    if ((n && v[1][n - 1] == '/') || (stat(v[1], &st) == 0 && S_ISDIR(st.st_mode))) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", v[1]);
        for (size_t k = strlen(dir); k > 1 && dir[k - 1] == '/'; k--) dir[k - 1] = '\0';
        make_dirs(dir);
        ckpt_path(out, sizeof out, dir, 0);
    } else {
        snprintf(out, sizeof out, "%s", v[1]);
    }
    v[1] = out;
    if (stat(v[1], &st) == 0) usage_error("--out: %s already exists (choose another name or remove it)", v[1]);
    char parent[PATH_MAX];
    snprintf(parent, sizeof parent, "%s", v[1]);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        make_dirs(parent);
    }
    // Every key of this build with its default, so the checkpoint holds a
    // complete config (the mapped keys override these).
    char tmp[PATH_MAX + 8], defaults[PATH_MAX + 24], err[2048];
    snprintf(tmp, sizeof tmp, "%s.tmp", v[1]);
    snprintf(defaults, sizeof defaults, "%s.defaults", tmp);
    FILE *f = fopen(defaults, "w");
    if (!f) usage_error("--out: cannot write next to %s: %s", v[1], strerror(errno));
    Config c;
    config_defaults(&c);
    config_print(&c, f);
    if (fclose(f) != 0) usage_error("--out: cannot write %s: %s", defaults, strerror(errno));
    // The model's spiece.model, when it has one this program can use (byte
    // fallback: tokenizer.h), goes into the checkpoint; one it cannot is
    // left out with a note (the checkpoint then reads bytes).
    char spiece[PATH_MAX + 16];
    snprintf(spiece, sizeof spiece, "%s/spiece.model", v[0]);
    int with_spiece = 0;
    if (access(spiece, F_OK) == 0) {
        Tokenizer *tok = tokenizer_load(spiece, "--model", err, sizeof err);
        if (tok) with_spiece = 1;
        else fprintf(stderr, "import-hf: note: %s is not carried into the checkpoint: %s\n", spiece, err);
        tokenizer_free(tok);
    }
    char *args[] = {"import", (char *)v[0], tmp, "--defaults", defaults, "--spiece", spiece};
    int rc = run_python("import-hf", args, with_spiece ? 7 : 5);
    unlink(defaults);
    if (rc != 0) {
        unlink(tmp);
        return rc;
    }
    long step;
    if (ckpt_reseal(tmp, err, sizeof err) || ckpt_read_config(tmp, &c, &step, err, sizeof err)) {
        unlink(tmp);
        usage_error("import-hf: %s cannot be expressed here: %s", v[0], err);
    }
    if (with_spiece) {  // its pieces must be the model's vocabulary
        Tokenizer *tok = tokenizer_load(spiece, "--model", err, sizeof err);
        int pieces = tok ? tokenizer_vocab_size(tok) : -1;
        tokenizer_free(tok);
        if (pieces != c.vocab_size) {
            unlink(tmp);
            usage_error("--model: %s has %d pieces but the model's vocab_size is %d", spiece, pieces, c.vocab_size);
        }
    }
    if (rename(tmp, v[1]) != 0) {
        int e = errno;
        unlink(tmp);
        usage_error("--out: cannot rename %s into place: %s", tmp, strerror(e));
    }
    printf("import-hf: %s -> %s (step 0, fresh optimizer state)\n", v[0], v[1]);
    return 0;
}
