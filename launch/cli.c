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
#include "util.h"

// Under mpirun or srun every rank parses the same arguments and would print
// the same usage error: only rank 0 (or a process started alone) says it.
// Every rank still exits non-zero.
void usage_error(const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    if (dist_env_rank() <= 0) {
        fprintf(stderr, "reformer: error: ");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
    }
    exit(2);
}

// A failure while running is this rank's own: it always says so, naming its
// rank when it is not rank 0.
void run_error(const char *msg) {
    fflush(stdout);
    int rank = dist_env_rank();
    if (rank > 0) fprintf(stderr, "reformer: rank %d: error: %s\n", rank, msg);
    else fprintf(stderr, "reformer: error: %s\n", msg);
    exit(1);
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
    usage_error("%s is a %s option, not a %s option (see `reformer help`)", flag, owner, command_name(cmd));
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
    a->sources = checked_calloc((size_t)argc + 2, sizeof(Source));
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        int takes_value = !strcmp(arg, "--config") || !strcmp(arg, "--set") || !strcmp(arg, "--steps") ||
                          !strcmp(arg, "--warmup") || !strcmp(arg, "--resume") || !strcmp(arg, "--ckpt") ||
                          !strcmp(arg, "--data") || !strcmp(arg, "--split") || !strcmp(arg, "--windows") ||
                          !strcmp(arg, "--form") || !strcmp(arg, "--prompt") || !strcmp(arg, "--len") || !strcmp(arg, "--temperature") ||
                          !strcmp(arg, "--top-k") || !strcmp(arg, "--seed") || !strcmp(arg, "--fit");
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
        } else if (strchr(arg, '=') && arg[0] != '-') {
            a->sources[a->n_sources++] = (Source){.is_file = 0, .value = arg};
        } else {
            usage_error("unknown argument '%s' (see `reformer help`)", arg);
        }
    }
    if ((cmd == CMD_EVAL || cmd == CMD_SAMPLE) && !a->ckpt)
        usage_error("%s needs --ckpt FILE (a checkpoint written by reformer train)", command_name(cmd));
    if (cmd == CMD_SAMPLE && !a->prompt) usage_error("sample needs --prompt TEXT (may be empty: --prompt '')");
    if (cmd == CMD_SAMPLE && a->gen_len < 0) usage_error("sample needs --len N (bytes to generate)");

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
        if (ckpt_find_latest(probe.out_dir, found, sizeof found, &found_step, err, sizeof err) == 0) {
            snprintf(a->resume_dir, sizeof a->resume_dir, "%s", probe.out_dir);
            a->resume = a->resume_dir;
        }
    }
    Config ckpt;
    if (a->resume || a->ckpt) {
        if (a->resume) {
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
        config_defaults(&a->cfg);
        if (cmd == CMD_BENCH || cmd == CMD_PLAN) snprintf(a->cfg.data, sizeof a->cfg.data, "random");
        for (int i = 0; i < a->n_sources; i++) apply_source(&a->cfg, &a->sources[i]);
    }
    if (cmd == CMD_SAMPLE) {
        // Decoding runs on the CPU (core/decode.c), whatever device trained the model.
        snprintf(a->cfg.device, sizeof a->cfg.device, "cpu");
        a->cfg.precision = PRECISION_FP32;
    }
    if (config_finalize(&a->cfg, err, sizeof err)) usage_error("%s", err);
    if (a->resume || a->ckpt) check_shape_keys(&a->cfg, &ckpt, NULL);
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

// The tightest (limit - usage) of a cgroup and its parents.
static void cgroup_cap(const char *root, const char *rel, const char *limit_name, const char *usage_name,
                       size_t *avail, char *source, size_t n, const char *label) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s%s", root, rel);
    for (;;) {
        char lp[1200], up[1200];
        size_t limit, usage = 0;
        snprintf(lp, sizeof lp, "%s/%s", dir, limit_name);
        snprintf(up, sizeof up, "%s/%s", dir, usage_name);
        // cgroup v1 reports "no limit" as a huge number (page-rounded LONG_MAX).
        if (read_size_file(lp, &limit) && limit < ((size_t)1 << 60)) {
            read_size_file(up, &usage);
            size_t left = limit > usage ? limit - usage : 0;
            if (left < *avail) *avail = left, snprintf(source, n, "%s %s", label, lp);
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
        if (!v) usage_error("REFORMER_MEM_AVAILABLE: '%s' is not a size (like 12G or 800M)", env);
        snprintf(source, n, "REFORMER_MEM_AVAILABLE");
        return v;
    }
    size_t avail = (size_t)-1;
    snprintf(source, n, "unknown");
    FILE *f = fopen("/proc/meminfo", "r");
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
    f = fopen("/proc/self/cgroup", "r");
    if (f) {
        char line[1024];
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\n")] = '\0';
            char *path = strrchr(line, ':');
            if (!path) continue;
            *path++ = '\0';
            if (!strcmp(line, "0:")) {  // v2: "0::/path"
                cgroup_cap("/sys/fs/cgroup", !strcmp(path, "/") ? "" : path, "memory.max", "memory.current", &avail,
                           source, n, "cgroup");
            } else if (strstr(line, ":memory") || strstr(line, ",memory")) {  // v1
                cgroup_cap("/sys/fs/cgroup/memory", !strcmp(path, "/") ? "" : path, "memory.limit_in_bytes",
                           "memory.usage_in_bytes", &avail, source, n, "cgroup");
            }
        }
        fclose(f);
    }
    return avail;
}

int preflight(const Config *c, const Backend *be, int print, char *err, size_t errlen) {
    MemRules rules = mem_rules_backend(be);
    MemPlan plan;
    if (!mem_plan_build(&plan, c, &rules, err, errlen)) return 1;
    if (print) describe(c, &plan);
    size_t need = mem_plan_need(&plan, &rules), avail;
    char source[1300];
    size_t held, used, free_bytes;
    if (be->device_memory(&held, &used, &free_bytes) == 0) {
        avail = free_bytes;
        snprintf(source, sizeof source, "free on the GPU");
    } else {
        avail = host_memory_available(source, sizeof source);
    }
    if (need <= avail) return 0;
    const double GiB = 1024.0 * 1024.0 * 1024.0;
    snprintf(err, errlen,
             "memory: this run plans %.2f GiB on %s (seq_len=%d, batch=%d, sp=%d, %zu bytes per token) but %.2f GiB "
             "is available (%s); lower seq_len or batch, raise sp%s, or see `reformer plan`",
             (double)need / GiB, be->name, c->seq_len, c->batch, c->sp, plan.per_token_bytes, (double)avail / GiB,
             source,
             c->sp == 1 && plan.head_group > 1 ? ", or set attn_head_group=1 (fewer heads per attention pass)" : "");
    return 1;
}
