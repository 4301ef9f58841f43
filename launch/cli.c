#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef REFORMER_CUDA
#include <dlfcn.h>

#include "backend_cuda.h"
#endif
#ifdef REFORMER_NCCL
#include "dist_nccl.h"
#endif

#include "checkpoint.h"
#include "config_file.h"
#include "dist.h"
#include "run_dir.h"
#include "util.h"

// An error line goes out in one write(2): stderr is unbuffered, and under
// mpirun the launcher's own lines (its banner when a rank fails) would
// otherwise land between the pieces of ours.
static void write_line(const char *prefix, const char *fmt, va_list ap) {
    char line[8192];
    int n = snprintf(line, sizeof line, "%s", prefix);
    if (n < 0 || (size_t)n >= sizeof line) n = 0;
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    n = m < 0 ? n : n + m > (int)sizeof line - 2 ? (int)sizeof line - 2 : n + m;
    line[n++] = '\n';
    for (int off = 0; off < n;) {
        ssize_t w = write(STDERR_FILENO, line + off, (size_t)(n - off));
        if (w <= 0) break;
        off += (int)w;
    }
}

// Under mpirun or srun every rank parses the same arguments and would print
// the same usage error: only rank 0 (or a process started alone) says it.
// Every rank still exits non-zero.
void usage_error(const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    if (dist_env_rank() <= 0) {
        va_start(ap, fmt);
        write_line("reformer: error: ", fmt, ap);
        va_end(ap);
    }
    exit(2);
}

static void say(const char *prefix, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    write_line(prefix, fmt, ap);
    va_end(ap);
}

// A failure while running is this rank's own: it always says so, naming its
// rank when it is not rank 0.
void run_error(const char *msg) {
    fflush(stdout);
    int rank = dist_env_rank();
    char prefix[64];
    if (rank > 0) snprintf(prefix, sizeof prefix, "reformer: rank %d: error: ", rank);
    else snprintf(prefix, sizeof prefix, "reformer: error: ");
    say(prefix, "%s", msg);
    exit(1);
}

// The run's tokenizer into a->tok. A checkpoint's own (stored in it) is used
// as long as the key still names what it was trained with; naming another
// model there is refused (its ids would mean other text). Without a
// checkpoint, config `tokenizer` is loaded and vocab_size follows from it: a
// vocab_size left at its default becomes the model's size, any other value
// must equal it.
static void resolve_tokenizer(Args *a, const Config *ckpt) {
    Config *c = &a->cfg;
    char err[2048];
    Tokenizer *stored = NULL;
    if (ckpt) {
        void *bytes;
        size_t n;
        if (ckpt_read_tokenizer(a->ckpt_path, &bytes, &n, err, sizeof err)) usage_error("%s", err);
        if (bytes) {
            char what[2200];
            snprintf(what, sizeof what, "%s: /tokenizer/spiece_model", a->ckpt_path);
            stored = tokenizer_from_bytes(bytes, n, what, err, sizeof err);
            free(bytes);
            if (!stored) usage_error("%s", err);
            if (tokenizer_vocab_size(stored) != ckpt->vocab_size)
                usage_error("%s: its tokenizer has %d pieces but its model vocab_size=%d (a damaged or edited file)",
                            a->ckpt_path, tokenizer_vocab_size(stored), ckpt->vocab_size);
        }
        if (stored && !strcmp(c->tokenizer, ckpt->tokenizer)) {
            a->tok = stored;
            return;
        }
    }
    if (!strcmp(c->tokenizer, "none")) {
        if (stored)
            usage_error("tokenizer: %s was trained with a tokenizer (%d pieces), so its model reads no bytes; leave "
                        "tokenizer as the checkpoint has it",
                        a->ckpt_path, tokenizer_vocab_size(stored));
        return;
    }
    Tokenizer *tok = tokenizer_load(c->tokenizer, "tokenizer", err, sizeof err);
    if (!tok) usage_error("%s", err);
    const int n = tokenizer_vocab_size(tok);
    if (ckpt) {
        if (n != ckpt->vocab_size)
            usage_error("tokenizer: '%s' has %d pieces, but the model of %s has vocab_size=%d", c->tokenizer, n,
                        a->ckpt_path, ckpt->vocab_size);
        if (stored && tokenizer_identity(stored) != tokenizer_identity(tok))
            usage_error("tokenizer: '%s' is not the tokenizer %s was trained with (its ids would mean other text); "
                        "leave the key as the checkpoint has it",
                        c->tokenizer, a->ckpt_path);
        tokenizer_free(stored);
    } else {
        Config defaults;
        config_defaults(&defaults);
        if (c->vocab_size != defaults.vocab_size && c->vocab_size != n)
            usage_error("vocab_size: %d, but the tokenizer '%s' has %d pieces (leave vocab_size out: it follows from "
                        "the tokenizer)",
                        c->vocab_size, c->tokenizer, n);
        c->vocab_size = n;
    }
    a->tok = tok;
}

static void apply_source(Config *c, const Source *s) {
    char err[1024];
    if (s->is_file ? config_load_file(c, s->value, err, sizeof err) : config_set_pair(c, s->value, err, sizeof err))
        usage_error("%s", err);
}

// When starting from a checkpoint, its config is the base and fixes the
// model's shape: a source that changes a shape key is refused, naming the key.
static void check_shape_keys(const Config *now, const Config *ckpt, const Source *s) {
    char a[1100], b[1100];
    for (int k = 0; CONFIG_SHAPE_KEYS[k]; k++) {
        config_get(now, CONFIG_SHAPE_KEYS[k], a, sizeof a);
        config_get(ckpt, CONFIG_SHAPE_KEYS[k], b, sizeof b);
        if (strcmp(a, b))
            usage_error("%s: %s=%s %s the checkpoint's %s=%s; a run from a checkpoint keeps the model's shape keys",
                        CONFIG_SHAPE_KEYS[k], CONFIG_SHAPE_KEYS[k], a, s ? "would change" : "differs from",
                        CONFIG_SHAPE_KEYS[k], b);
    }
}

static long parse_long_flag(const char *flag, const char *val, long lo, long hi) {
    char *end;
    errno = 0;
    long n = strtol(val, &end, 10);
    if (end == val || *end || errno || n < lo || n > hi)
        usage_error("%s: '%s' is not an integer in [%ld, %ld]", flag, val, lo, hi);
    return n;
}

static double parse_double_flag(const char *flag, const char *val, double lo, double hi) {
    char *end;
    errno = 0;
    double x = strtod(val, &end);
    if (end == val || *end || errno || !(x >= lo && x <= hi))
        usage_error("%s: '%s' is not a number in [%g, %g]", flag, val, lo, hi);
    return x;
}

static const char *command_name(Command c) {
    return c == CMD_TRAIN ? "train" : c == CMD_BENCH ? "bench" : c == CMD_EVAL ? "eval" : c == CMD_PLAN ? "plan" : "sample";
}

// A flag of another command: say which one it belongs to.
static void wrong_command(const char *flag, const char *owner, Command cmd) {
    usage_error("%s is a %s option, not a %s option (see `reformer %s --help`)", flag, owner, command_name(cmd),
                command_name(cmd));
}

void args_unfinalized_config(const Args *a, Config *c) {
    config_defaults(c);
    if (a->cmd == CMD_BENCH || a->cmd == CMD_PLAN) snprintf(c->data, sizeof c->data, "random");
    for (int i = 0; i < a->n_sources; i++) apply_source(c, &a->sources[i]);
}

void parse_args(Args *a, int argc, char **argv, Command cmd) {
    char err[8192];
    memset(a, 0, sizeof *a);
    a->cmd = cmd;
    a->steps_override = -1;
    a->warmup_override = -1;
    a->temperature = 1.0;
    a->sample_seed = -1;
    a->gen_len = -1;
    a->keep_rows = -1;
    a->sources = checked_calloc((size_t)argc + 2, sizeof(Source));
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        int takes_value = !strcmp(arg, "--config") || !strcmp(arg, "--set") || !strcmp(arg, "--steps") ||
                          !strcmp(arg, "--warmup") || !strcmp(arg, "--resume") || !strcmp(arg, "--ckpt") ||
                          !strcmp(arg, "--data") || !strcmp(arg, "--split") || !strcmp(arg, "--windows") ||
                          !strcmp(arg, "--form") || !strcmp(arg, "--prompt") || !strcmp(arg, "--len") || !strcmp(arg, "--temperature") ||
                          !strcmp(arg, "--top-k") || !strcmp(arg, "--seed") || !strcmp(arg, "--fit") ||
                          !strcmp(arg, "--image") || !strcmp(arg, "--keep-rows") || !strcmp(arg, "--out") ||
                          !strcmp(arg, "--n");
        if (takes_value && i + 1 >= argc) usage_error("%s needs a value", arg);
        const char *val = takes_value ? argv[++i] : NULL;
        if (!strcmp(arg, "--config") || !strcmp(arg, "--set")) {
            a->sources[a->n_sources++] = (Source){.is_file = !strcmp(arg, "--config"), .value = val};
        } else if (!strcmp(arg, "--resume")) {
            if (cmd != CMD_TRAIN) wrong_command(arg, "train", cmd);
            a->resume = val;
        } else if (!strcmp(arg, "--steps") || !strcmp(arg, "--warmup")) {
            if (cmd != CMD_BENCH) {
                if (cmd == CMD_TRAIN) usage_error("%s is a bench option; for train use --set steps=N", arg);
                wrong_command(arg, "bench", cmd);
            }
            if (!strcmp(arg, "--steps")) a->steps_override = (int)parse_long_flag(arg, val, 1, 1000000);
            else a->warmup_override = (int)parse_long_flag(arg, val, 0, 1000000);
        } else if (!strcmp(arg, "--fit")) {
            if (cmd != CMD_PLAN) wrong_command(arg, "plan", cmd);
            a->fit = val;
        } else if (!strcmp(arg, "--json")) {
            if (cmd != CMD_BENCH) wrong_command(arg, "bench", cmd);
            a->json = 1;
        } else if (!strcmp(arg, "--ckpt")) {
            if (cmd != CMD_EVAL && cmd != CMD_SAMPLE) wrong_command(arg, "eval and sample", cmd);
            a->ckpt = val;
        } else if (!strcmp(arg, "--data") || !strcmp(arg, "--split") || !strcmp(arg, "--windows") ||
                   !strcmp(arg, "--form")) {
            if (cmd != CMD_EVAL) wrong_command(arg, "eval", cmd);
            if (!strcmp(arg, "--data")) a->data = val;
            else if (!strcmp(arg, "--form")) {
                if (strcmp(val, "train") && strcmp(val, "decode"))
                    usage_error("--form: '%s' is not train (the training forward) or decode (the decoder, one byte "
                                "at a time)", val);
                a->decode_form = !strcmp(val, "decode");
            }
            else if (!strcmp(arg, "--split")) a->split = val;
            else a->max_windows = parse_long_flag(arg, val, 0, 1L << 40);
        } else if (!strcmp(arg, "--prompt") || !strcmp(arg, "--len") || !strcmp(arg, "--temperature") ||
                   !strcmp(arg, "--top-k") || !strcmp(arg, "--seed") || !strcmp(arg, "--no-cache")) {
            if (cmd != CMD_SAMPLE) wrong_command(arg, "sample", cmd);
            if (!strcmp(arg, "--prompt")) a->prompt = val;
            else if (!strcmp(arg, "--len")) a->gen_len = parse_long_flag(arg, val, 0, 1L << 30);
            else if (!strcmp(arg, "--temperature")) a->temperature = parse_double_flag(arg, val, 0, 100);
            else if (!strcmp(arg, "--top-k")) a->top_k = (int)parse_long_flag(arg, val, 0, 1 << 30);
            else if (!strcmp(arg, "--seed")) a->sample_seed = parse_long_flag(arg, val, 0, 0x7fffffffffffffffL);
            else a->no_cache = 1;
        } else if (!strcmp(arg, "--image") || !strcmp(arg, "--keep-rows") || !strcmp(arg, "--out") ||
                   !strcmp(arg, "--n")) {
            if (cmd != CMD_SAMPLE) wrong_command(arg, "sample", cmd);
            if (!strcmp(arg, "--image")) a->image = val;
            else if (!strcmp(arg, "--out")) a->image_out = val;
            else if (!strcmp(arg, "--keep-rows")) a->keep_rows = parse_long_flag(arg, val, 0, 1L << 30);
            else a->n_completions = (int)parse_long_flag(arg, val, 1, 64);
        } else if (strchr(arg, '=') && arg[0] != '-') {
            a->sources[a->n_sources++] = (Source){.is_file = 0, .value = arg};
        } else {
            usage_error("unknown argument '%s' (see `reformer %s --help`)", arg, command_name(cmd));
        }
    }
    if ((cmd == CMD_EVAL || cmd == CMD_SAMPLE) && !a->ckpt)
        usage_error("%s needs --ckpt FILE (a checkpoint written by reformer train)", command_name(cmd));
    if (cmd == CMD_SAMPLE && a->image) {  // image completion
        if (a->prompt || a->gen_len >= 0 || a->no_cache)
            usage_error("--image completes an image: --prompt, --len and --no-cache are for text");
        if (!a->image_out) usage_error("sample --image needs --out OUT.png (the original and its completions)");
        if (a->keep_rows < 0) usage_error("sample --image needs --keep-rows K (the rows kept from the top)");
    } else if (cmd == CMD_SAMPLE) {
        if (a->image_out || a->keep_rows >= 0 || a->n_completions)
            usage_error("--out, --keep-rows and --n complete an image: give --image IN.png");
        if (!a->prompt) usage_error("sample needs --prompt TEXT (at least one byte to start from) or --image IN.png");
        if (a->gen_len < 0) usage_error("sample needs --len N (bytes to generate)");
    }

    // A directory (or other non-file) named like a checkpoint would pass for
    // the newest one: refuse it up front, for a fresh run and a resume alike.
    if (cmd == CMD_TRAIN && a->resume && strcmp(a->resume, "auto") && ckpt_check_names(a->resume, err, sizeof err))
        usage_error("%s", err);
    if (a->resume && !strcmp(a->resume, "auto")) {
        // --resume auto: the run in out_dir when it holds a checkpoint, else
        // a new run there (a requeued job's command line works both times).
        Config probe;
        config_defaults(&probe);
        for (int i = 0; i < a->n_sources; i++) apply_source(&probe, &a->sources[i]);
        char found[2048];
        long found_step;
        a->resume_auto = 1;
        a->resume = NULL;
        if (ckpt_check_names(probe.out_dir, err, sizeof err)) usage_error("%s", err);
        if (ckpt_find_latest(probe.out_dir, found, sizeof found, &found_step, err, sizeof err) == 0) {
            snprintf(a->resume_dir, sizeof a->resume_dir, "%s", probe.out_dir);
            a->resume = a->resume_dir;
        }
    }
    Config ckpt;
    if (a->resume || a->ckpt) {
        if (a->resume) {
            if (run_dir_probe(a->resume, err, sizeof err)) usage_error("%s", err);
            // The newest checkpoint that is whole, skipping damaged ones.
            CkptState st;
            if (ckpt_find_resumable(a->resume, a->ckpt_path, sizeof a->ckpt_path, &a->ckpt_step, &ckpt, &st,
                                    a->skipped, sizeof a->skipped, err, sizeof err))
                usage_error("--resume: %s", err);
            snprintf(a->ckpt_run_id, sizeof a->ckpt_run_id, "%s", st.run_id);
            char newest[2048];
            if (ckpt_find_latest(a->resume, newest, sizeof newest, &a->newest_step, err, sizeof err))
                a->newest_step = a->ckpt_step;
        } else {
            snprintf(a->ckpt_path, sizeof a->ckpt_path, "%s", a->ckpt);
            if (ckpt_read_config(a->ckpt_path, &ckpt, &a->ckpt_step, err, sizeof err)) usage_error("--ckpt: %s", err);
        }
        a->cfg = ckpt;
        // A resumed run continues where its files are, wherever it was started.
        if (a->resume && config_set(&a->cfg, "out_dir", a->resume, err, sizeof err)) usage_error("--resume: %s", err);
        if (a->data && config_set(&a->cfg, "data", a->data, err, sizeof err)) usage_error("--data: %s", err);
        for (int i = 0; i < a->n_sources; i++) {
            apply_source(&a->cfg, &a->sources[i]);
            check_shape_keys(&a->cfg, &ckpt, &a->sources[i]);
        }
    } else {
        args_unfinalized_config(a, &a->cfg);
    }
    resolve_tokenizer(a, (a->resume || a->ckpt) ? &ckpt : NULL);
    if (cmd == CMD_SAMPLE) {
        // Decoding runs on the CPU (core/decode.c), whatever device trained the model.
        snprintf(a->cfg.device, sizeof a->cfg.device, "cpu");
        a->cfg.precision = PRECISION_FP32;
    }
    if (config_finalize(&a->cfg, err, sizeof err)) usage_error("%s", err);
    if (a->resume || a->ckpt) check_shape_keys(&a->cfg, &ckpt, NULL);
    if (cmd == CMD_TRAIN && ckpt_check_names(a->cfg.out_dir, err, sizeof err)) usage_error("%s", err);
    // Whatever a device needs fails now, before any file is touched: on
    // several ranks (as the launcher says; train checks again after
    // dist_init) the device collectives, then the device itself. (A build
    // without CUDA refuses device=cuda in pick_backend.)
#ifdef REFORMER_CUDA
    int world = dist_env_world();
    if (cmd == CMD_TRAIN && !strcmp(a->cfg.device, "cuda") && world > 1 &&
        !load_device_collectives(world, err, sizeof err))
        usage_error("%s", err);
#endif
    if (cmd != CMD_PLAN) pick_backend(&a->cfg);  // plan needs no device: it uses the backend's sizing rules
}

void free_args(Args *a) {
    free(a->sources);
    a->sources = NULL;
    tokenizer_free(a->tok);
    a->tok = NULL;
}

static char g_device_desc[512];  // the GPU picked for device=cuda, for describe()

#ifdef REFORMER_CUDA
// The rank of this process among those on its node, from the launcher's
// environment (Open MPI, SLURM, MPICH / Intel MPI, MVAPICH); 0 without one.
static int local_rank_from_env(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID",
                                       "MV2_COMM_WORLD_LOCAL_RANK", NULL};
    for (int i = 0; vars[i]; i++) {
        const char *v = getenv(vars[i]);
        char *end;
        long r = v && *v ? strtol(v, &end, 10) : -1;
        if (r >= 0 && r < 1 << 20 && v && *end == '\0') return (int)r;
    }
    return 0;
}

// The module `name` that make puts next to this program (build/), or NULL
// with the reason in why.
static void *open_module(const char *name, char *why, size_t n) {
    char path[4096];
    ssize_t len = readlink("/proc/self/exe", path, sizeof path - 64);
    if (len <= 0) {
        snprintf(why, n, "cannot find this program's directory (/proc/self/exe)");
        return NULL;
    }
    path[len] = '\0';
    char *slash = strrchr(path, '/');
    snprintf(slash ? slash + 1 : path, sizeof path - (size_t)(slash ? slash + 1 - path : 0), "%s", name);
    void *module = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!module) snprintf(why, n, "%s", dlerror());
    return module;
}

// The CUDA backend is the module libreformer_cuda.so next to this program,
// loaded for device=cuda only: linked in, cuBLAS would cost every CPU run
// about 0.1 s and 200 MiB of resident memory at start-up (measured), and
// peak_rss_mb would report it. Picks the GPU of this process's local rank.
static const Backend *load_cuda_backend(void) {
    char msg[8192], why[512];
    void *module = open_module("libreformer_cuda.so", why, sizeof why);
    if (!module) {
        snprintf(msg, sizeof msg, "device=cuda: cannot load the CUDA backend (%s); rebuild with `make`", why);
        run_error(msg);
    }
    int (*select_device)(int, char *, size_t) = (int (*)(int, char *, size_t))dlsym(module, "cuda_select_device");
    const Backend *(*backend)(void) = (const Backend *(*)(void))dlsym(module, "backend_cuda");
    if (!select_device || !backend)
        run_error("device=cuda: libreformer_cuda.so lacks the CUDA backend's functions; rebuild with `make`");
    if (select_device(local_rank_from_env(), why, sizeof why) < 0) {
        snprintf(msg, sizeof msg,
                 "device=cuda: no usable CUDA device (%s); check the driver with nvidia-smi, or use device=cpu", why);
        run_error(msg);
    }
    snprintf(g_device_desc, sizeof g_device_desc, "%s", why);
    return backend();
}
#endif

const struct DistNcclOps *load_device_collectives(int world, char *err, size_t errlen) {
#ifdef REFORMER_NCCL
    // A module of its own, not part of libreformer_cuda.so: one GPU needs no
    // NCCL, and NCCL needs the program's MPI side (Makefile, NCCL block).
    static const DistNcclOps *ops;
    if (ops) return ops;
    char why[4096];
    void *module = open_module("libreformer_nccl.so", why, sizeof why);
    const DistNcclOps *(*get_ops)(void) = module ? (const DistNcclOps *(*)(void))dlsym(module, "dist_nccl_ops") : NULL;
    if (!get_ops) {
        snprintf(err, errlen, "device=cuda on %d ranks: cannot load the NCCL collectives (%s); rebuild with `make`",
                 world, module ? "libreformer_nccl.so lacks dist_nccl_ops" : why);
        return NULL;
    }
    return ops = get_ops();
#else
    snprintf(err, errlen,
             "device=cuda on %d ranks needs NCCL, and this build has none (make found no nccl.h and libnccl.so: "
             "install NCCL, or set NCCL_HOME, and rebuild); run one rank per job, or use device=cpu",
             world);
    return NULL;
#endif
}

const Backend *pick_backend(const Config *c) {
    if (strcmp(c->device, "cuda") != 0) return backend_cpu();
#ifdef REFORMER_CUDA
    static const Backend *cuda;  // the device is picked once per process
    if (!cuda) cuda = load_cuda_backend();
    return cuda;
#else
    usage_error("device: 'cuda' backend is not built into this binary (nvcc was not found when it was built; "
                "use device=cpu)");
#endif
}

void make_dirs(const char *path) {
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

void format_duration(char *buf, size_t n, double seconds) {
    long s = (long)(seconds + 0.5);
    if (s >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
    else snprintf(buf, n, "%ld:%02ld", s / 60, s % 60);
}

void describe(const Config *c, const MemPlan *p) {
    printf("reformer: %zu params | %d layers (%s%s) | d_model %d | heads %dx%d | seq_len %d | batch %d | "
           "n_hashes %d n_buckets %d | %s | planned %.1f MiB (%zu bytes per token)\n",
           p->n_params, c->n_layers, c->attn_full ? "full attention, " : "", c->attn_layers, c->d_model,
           c->n_heads, c->d_head, c->seq_len, c->batch, c->n_hashes, c->n_buckets,
           c->reversible ? "reversible" : "stored activations", (double)p->backend_bytes / (1024.0 * 1024.0),
           p->per_token_bytes);
    if (!strcmp(c->device, "cuda"))
        printf("device: cuda %s | precision %s\n", g_device_desc, precision_name(c->precision));
    fflush(stdout);  // before anything large is allocated: an OOM kill must not lose it
}

// A number from a /proc or /sys file ("max" or absent: none).
static int read_size_file(const char *path, size_t *out) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char buf[64] = "";
    int ok = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    if (!ok || !strncmp(buf, "max", 3)) return 0;
    char *end;
    unsigned long long v = strtoull(buf, &end, 10);
    if (end == buf) return 0;
    *out = (size_t)v;
    return 1;
}

// The memory of a cgroup that cannot be reclaimed, from its memory.stat
// (hierarchical: the cgroup and its descendants): anonymous memory, shared
// memory (tmpfs, which drops only to swap), unevictable (mlocked) pages and,
// on v2, the kernel memory charged to it. Clean page cache (written
// checkpoints, staged data) is left out: the kernel reclaims it when a
// process needs the room. 0 when the file is unreadable or names none.
static int cgroup_unreclaimable(const char *stat_path, int v2, size_t *out) {
    static const char *const v2_keys[] = {"anon", "shmem", "unevictable", "kernel_stack", "pagetables",
                                          "slab_unreclaimable", "sock", NULL};
    static const char *const v1_keys[] = {"total_rss", "total_shmem", "total_unevictable", NULL};
    const char *const *keys = v2 ? v2_keys : v1_keys;
    FILE *f = fopen(stat_path, "r");
    if (!f) return 0;
    char line[256], name[128];
    unsigned long long v, sum = 0;
    int found = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "%127s %llu", name, &v) == 2)
            for (int k = 0; keys[k]; k++)
                if (!strcmp(name, keys[k])) sum += v, found = 1;
    fclose(f);
    if (found) *out = (size_t)sum;
    return found;
}

// The tightest (limit - unreclaimable use) of a cgroup and its parents; the
// use is the usage file's figure where memory.stat cannot be read.
static void cgroup_cap(const char *root, const char *rel, int v2, size_t *avail, char *source, size_t n) {
    const char *limit_name = v2 ? "memory.max" : "memory.limit_in_bytes";
    const char *usage_name = v2 ? "memory.current" : "memory.usage_in_bytes";
    char dir[1024];
    snprintf(dir, sizeof dir, "%s%s", root, rel);
    for (;;) {
        char lp[1200], up[1200];
        size_t limit, usage = 0;
        snprintf(lp, sizeof lp, "%s/%s", dir, limit_name);
        // cgroup v1 reports "no limit" as a huge number (page-rounded LONG_MAX).
        if (read_size_file(lp, &limit) && limit < ((size_t)1 << 60)) {
            snprintf(up, sizeof up, "%s/memory.stat", dir);
            if (!cgroup_unreclaimable(up, v2, &usage)) {
                snprintf(up, sizeof up, "%s/%s", dir, usage_name);
                read_size_file(up, &usage);
            }
            size_t left = limit > usage ? limit - usage : 0;
            if (left < *avail) *avail = left, snprintf(source, n, "cgroup %s", lp);
        }
        char *slash = strrchr(dir, '/');
        if (!slash || (size_t)(slash - dir) < strlen(root)) break;
        *slash = '\0';
    }
}

size_t host_memory_available(char *source, size_t n) {
    const char *env = getenv("REFORMER_MEM_AVAILABLE");
    if (env && *env) {
        size_t v = mem_parse_size(env);
        if (!v) usage_error("REFORMER_MEM_AVAILABLE: '%s' is not a size (like 12G, 800M or 16GB = 16e9 bytes)", env);
        snprintf(source, n, "REFORMER_MEM_AVAILABLE");
        return v;
    }
    // Test hook: REFORMER_TEST_SYSROOT=DIR reads DIR/proc/meminfo,
    // DIR/proc/self/cgroup and DIR/sys/fs/cgroup/... instead (a fake cgroup tree).
    const char *sysroot = getenv("REFORMER_TEST_SYSROOT");
    if (!sysroot) sysroot = "";
    char path[1024], cg_root[1024];
    size_t avail = (size_t)-1;
    snprintf(source, n, "unknown");
    snprintf(path, sizeof path, "%s/proc/meminfo", sysroot);
    FILE *f = fopen(path, "r");
    if (f) {
        char line[256];
        unsigned long long kb;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
                avail = (size_t)kb * 1024;
                snprintf(source, n, "MemAvailable");
            }
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/proc/self/cgroup", sysroot);
    f = fopen(path, "r");
    if (f) {
        char line[1024];
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\n")] = '\0';
            char *rel = strrchr(line, ':');
            if (!rel) continue;
            *rel++ = '\0';
            if (!strcmp(rel, "/")) rel = "";
            if (!strcmp(line, "0:")) {  // v2: "0::/path"
                snprintf(cg_root, sizeof cg_root, "%s/sys/fs/cgroup", sysroot);
                cgroup_cap(cg_root, rel, 1, &avail, source, n);
            } else if (strstr(line, ":memory") || strstr(line, ",memory")) {  // v1
                snprintf(cg_root, sizeof cg_root, "%s/sys/fs/cgroup/memory", sysroot);
                cgroup_cap(cg_root, rel, 0, &avail, source, n);
            }
        }
        fclose(f);
    }
    return avail;
}

void two_sizes(char *a, char *b, size_t cap, size_t x, size_t y) {
    const double GiB = 1024.0 * 1024.0 * 1024.0;
    for (int digits = 2; digits <= 6; digits++) {
        snprintf(a, cap, "%.*f GiB", digits, (double)x / GiB);
        snprintf(b, cap, "%.*f GiB", digits, (double)y / GiB);
        if (strcmp(a, b)) return;
    }
    snprintf(a, cap, "%zu bytes", x);
    snprintf(b, cap, "%zu bytes", y);
}

int preflight(const Config *c, const Backend *be, int print, const Dist *d, char *err, size_t errlen) {
    MemRules rules = mem_rules_backend(be);
    MemPlan plan;
    if (!mem_plan_build(&plan, c, &rules, err, errlen)) return 1;
    if (print) describe(c, &plan);
    size_t need = mem_process_need(&plan, &rules), avail, total = need;
    char source[1300];
    size_t held, used, free_bytes;
    int node_ranks = 1;
    if (be->device_memory(&held, &used, &free_bytes) == 0) {
        avail = free_bytes;  // one GPU per rank
        snprintf(source, sizeof source, "free on the GPU");
    } else {
        avail = host_memory_available(source, sizeof source);
        // The ranks on one node share its memory: each must fit beside the
        // others (every rank of the node calls this together).
        if (d && d->local_size > 1) {
            double sum[2] = {(double)need, 1};
            dist_allreduce_sum_f64(d, DIST_NODE, sum, 2);
            total = (size_t)sum[0];
            node_ranks = (int)sum[1];
        }
    }
    if (total <= avail) return 0;
    char a[64], b[64], each[96] = "", overhead[64];
    two_sizes(a, b, sizeof a, total, avail);
    snprintf(overhead, sizeof overhead, ", %zu MiB per process", MEM_PROCESS_OVERHEAD >> 20);
    if (node_ranks > 1)
        snprintf(each, sizeof each, "%d ranks on this node, each %.2f GiB, ", node_ranks,
                 (double)need / (1024.0 * 1024.0 * 1024.0));
    snprintf(err, errlen,
             "memory: this run plans %s on %s (%sseq_len=%d, batch=%d, sp=%d, %zu bytes per token%s) but %s "
             "is available (%s); lower seq_len or batch, raise sp%s%s, or see `reformer plan`",
             a, be->name, each, c->seq_len, c->batch, c->sp, plan.per_token_bytes,
             strcmp(rules.device, "cpu") ? "" : overhead, b, source,
             plan.head_group > 1 ? ", or set attn_head_group=1 (fewer heads per attention pass)" : "",
             node_ranks > 1 ? ", or start fewer ranks per node" : "");
    return 1;
}
