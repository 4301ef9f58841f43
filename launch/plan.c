// reformer plan: the memory plan of a config, without allocating anything
// (core/memplan.h), for device=cpu (this machine's thread count) or
// device=cuda (core/cuda_sizes.h: no GPU needed); --fit BYTES finds the
// longest seq_len of the same model that fits in BYTES.
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "memplan.h"
#include "util.h"

static size_t gcd(size_t a, size_t b) { return b ? gcd(b, a % b) : a; }

// The need of one process (mem_process_need: what preflight checks) for
// seq_len = L, the other keys as in raw, the unfinalized config, so that the
// keys derived from seq_len (automatic chunk lengths, n_buckets,
// axial_shape) are derived for L as a run at L would. 0: not a valid config.
static size_t need_at(const Config *raw, const MemRules *rules, long L, MemPlan *p) {
    Config t = *raw;
    char err[1024];
    t.seq_len = (int)L;
    t.axial_shape_set = 0;  // re-derived for each length (its tables are tiny)
    memset(t.image_shape, 0, sizeof t.image_shape);  // an image model's length is fixed; the search varies it
    if (config_finalize(&t, err, sizeof err)) return 0;
    if (!mem_plan_build(p, &t, rules, err, sizeof err)) return 0;
    return mem_process_need(p, rules);
}

int cmd_plan(int argc, char **argv) {
    Args a;
    parse_args(&a, argc, argv, CMD_PLAN);
    const Config *c = &a.cfg;
    MemRules rules = strcmp(c->device, "cuda") ? mem_rules_backend(backend_cpu()) : mem_rules_cuda();
    static MemPlan p;  // large: not on the stack
    char err[1024];
    if (!mem_plan_build(&p, c, &rules, err, sizeof err)) usage_error("%s", err);
    mem_plan_print(&p, c, &rules, stdout);
    if (!strcmp(rules.device, "cpu"))
        printf("  with the process itself (%zu MiB per rank, measured): %.1f MiB, what a run checks before it "
               "starts\n", MEM_PROCESS_OVERHEAD >> 20, (double)mem_process_need(&p, &rules) / (1024.0 * 1024.0));
    if (!a.fit) return 0;
    size_t budget = mem_parse_size(a.fit);
    if (!budget)
        usage_error("--fit: '%s' is not a size (like 16G or 16GiB = 16 x 2^30 bytes, 16GB = 16e9 bytes, 800M)", a.fit);
    Config raw;
    args_unfinalized_config(&a, &raw);
    // Lengths the config accepts: multiples of both chunk lengths (the
    // automatic ones are CONFIG_AUTO_CHUNK at such lengths), and with sp > 1
    // of sp whole chunks (chunk-aligned shards, which the sequence-sharded
    // paths need and which keep sp_attention=auto on one path).
    size_t lsh = (size_t)(raw.lsh_chunk ? raw.lsh_chunk : CONFIG_AUTO_CHUNK);
    size_t local = (size_t)(raw.local_chunk ? raw.local_chunk : CONFIG_AUTO_CHUNK);
    size_t chunk = lsh / gcd(lsh, local) * local;
    size_t unit = chunk * (size_t)c->sp;
    long lo = 0, hi = 1;  // lo fits (0: none yet), hi does not
    const long max_k = (1L << 28) / (long)unit;
    static MemPlan q;
    while (hi <= max_k) {
        size_t need = need_at(&raw, &rules, hi * (long)unit, &q);
        if (!need || need > budget) break;
        lo = hi;
        hi *= 2;
    }
    if (hi > max_k) hi = max_k + 1;
    while (hi - lo > 1) {
        long mid = lo + (hi - lo) / 2;
        size_t need = need_at(&raw, &rules, mid * (long)unit, &q);
        if (need && need <= budget) lo = mid;
        else hi = mid;
    }
    const double GiB = 1024.0 * 1024.0 * 1024.0;
    if (lo == 0) {
        printf("fit: no seq_len of this model fits in %.2f GiB on %s (batch=%d): its fixed part alone is larger\n",
               (double)budget / GiB, rules.device, c->batch);
        return 1;
    }
    size_t need = need_at(&raw, &rules, lo * (long)unit, &q);
    char plans[64], fits[64];
    two_sizes(plans, fits, sizeof plans, need, budget);
    if (lo == max_k) {  // the search's own limit, not the budget's
        printf("fit: every seq_len up to %ld, the longest this search tries, fits in %s%s on %s: plans %s there; "
               "%s is not what limits this model's length\n",
               lo * (long)unit, fits, c->sp > 1 ? " per rank" : "", rules.device, plans, a.fit);
        return 0;
    }
    printf("fit: longest seq_len %ld (a multiple of %zu) fits in %s%s on %s%s: plans %s, %zu bytes per "
           "token, batch=%d%s\n",
           lo * (long)unit, unit, fits, c->sp > 1 ? " per rank" : "", rules.device,
           strcmp(rules.device, "cuda") ? "" : " (computed)", plans, q.per_token_bytes, c->batch,
           strcmp(rules.device, "cuda") ? "" : "; leave room for the CUDA context (~0.5 GiB) and other processes");
    return 0;
}
