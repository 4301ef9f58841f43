// What every `reformer` command shares: argument parsing into a finalized
// Config (defaults or a checkpoint's config, then --config files and --set
// pairs in command-line order), one-line errors, and small output helpers.
#pragma once
#include <stddef.h>

#include "backend.h"
#include "checkpoint.h"
#include "config.h"
#include "model.h"

typedef enum { CMD_TRAIN, CMD_BENCH, CMD_EVAL, CMD_SAMPLE, CMD_PLAN } Command;

typedef struct {
    int is_file;        // --config FILE, else --set / bare key=value
    const char *value;
} Source;

typedef struct {
    Command cmd;
    Config cfg;              // finalized
    Source *sources;         // --config and --set in command-line order
    int n_sources;
    // train
    const char *resume;      // --resume DIR (for --resume auto: out_dir when it holds a checkpoint, else NULL)
    int resume_auto;         // --resume auto was given
    char resume_dir[1100];   // --resume auto: the out_dir resumed
    // eval, sample
    const char *ckpt;        // --ckpt FILE
    // train --resume, eval, sample: the checkpoint the config came from
    char ckpt_path[2048];
    long ckpt_step;
    char skipped[4096];      // train --resume: newer checkpoints skipped as damaged, one reason per line
    char ckpt_run_id[CKPT_RUN_ID_LEN];  // train --resume: that checkpoint's run identity ("" for older files)
    long newest_step;        // train --resume: the newest checkpoint name in the directory, valid or not
    // bench
    int steps_override;      // --steps N (-1: unset)
    int warmup_override;     // --warmup N (-1: unset)
    int json;                // --json
    // plan
    const char *fit;         // --fit BYTES: the longest seq_len that fits
    // eval
    const char *split;       // --split validation|test (default validation)
    const char *data;        // --data PATH (shorthand for --set data=PATH)
    long max_windows;        // --windows N (0: the whole split)
    int decode_form;         // --form decode (1): score with the decoder, one byte at a time; train (0, default)
    // sample
    const char *prompt;      // --prompt TEXT
    long gen_len;            // --len N
    double temperature;      // --temperature T
    int top_k;               // --top-k K (0: off)
    long sample_seed;        // --seed S (-1: the config's seed)
    int no_cache;            // --no-cache: recompute the prefix for every byte
} Args;

// "reformer: error: <message>" on stderr, exit 2 (bad usage or config).
#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 1, 2)))
#endif
void usage_error(const char *fmt, ...);

// Same form, exit 1: a failure while running (a file that cannot be written).
#if defined(__GNUC__)
__attribute__((noreturn))
#endif
void run_error(const char *msg);

void print_help(void);
// reformer help config [--markdown]: every key, default and meaning (help.c).
int cmd_help_config(int argc, char **argv);

// Parse the arguments after the command name; exits with usage_error on any
// problem. Frees nothing: the Args live as long as the command.
void parse_args(Args *a, int argc, char **argv, Command cmd);
void free_args(Args *a);

const Backend *pick_backend(const Config *c);
// The collectives on device buffers that a GPU backend on world > 1 ranks
// trains with (dist/dist_nccl.h: NCCL, from build/libreformer_nccl.so), or
// NULL with a one-line message (no NCCL in this build, module not loadable).
struct DistNcclOps;
const struct DistNcclOps *load_device_collectives(int world, char *err, size_t errlen);
void make_dirs(const char *path);
// "m:ss" or "h:mm:ss".
void format_duration(char *buf, size_t n, double seconds);
// One line: parameters, layers, sizes, attention, planned memory (from the plan).
void describe(const Config *c, const MemPlan *p);

// Memory this process can get: MemAvailable, capped by the cgroup (v2
// memory.max - memory.current, v1 limit - usage, every level up to the root)
// where one is set; REFORMER_MEM_AVAILABLE=BYTES (e.g. 2G) replaces the
// measurement (tests, or a scheduler's figure). source names what decided it.
size_t host_memory_available(char *source, size_t n);

// Before anything is allocated or written: plan the run on its backend,
// print the summary line (print = 1; flushed), and compare the plan with
// what the process can get (host memory for device=cpu, the device's free
// memory for device=cuda). Returns 0 when it fits, else 1 with the one-line
// message (planned, available, what to change) in err.
int preflight(const Config *c, const Backend *be, int print, char *err, size_t errlen);

int cmd_train(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_eval(int argc, char **argv);
// Hugging Face transformers interop (hf.c, launch/hf/).
int cmd_export_hf(int argc, char **argv);
int cmd_import_hf(int argc, char **argv);
int cmd_plan(int argc, char **argv);
