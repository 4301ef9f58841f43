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

// The plan's need for seq_len = L (0: not a valid config), the rest as c.
static size_t need_at(const Config *c, const MemRules *rules, long L, MemPlan *p) {
    Config t = *c;
    char err[1024];
    t.seq_len = (int)L;
    t.axial_shape_set = 0;  // re-derived for each length (its tables are tiny)
    if (config_finalize(&t, err, sizeof err)) return 0;
    if (!mem_plan_build(p, &t, rules, err, sizeof err)) return 0;
    return mem_plan_need(p, rules);
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
    if (!a.fit) return 0;
    size_t budget = mem_parse_size(a.fit);
    if (!budget) usage_error("--fit: '%s' is not a size (like 16G, 80GiB or 800M)", a.fit);
    // Lengths the config accepts: multiples of both chunk lengths, and with
    // sp > 1 of sp whole chunks (chunk-aligned shards, which the sequence-
    // sharded paths need and which keep sp_attention=auto on one path).
    size_t chunk = (size_t)c->lsh_chunk / gcd((size_t)c->lsh_chunk, (size_t)c->local_chunk) * (size_t)c->local_chunk;
    size_t unit = chunk * (size_t)c->sp;
    long lo = 0, hi = 1;  // lo fits (0: none yet), hi does not
    const long max_k = (1L << 28) / (long)unit;
    static MemPlan q;
    while (hi <= max_k) {
        size_t need = need_at(c, &rules, hi * (long)unit, &q);
        if (!need || need > budget) break;
        lo = hi;
        hi *= 2;
    }
    if (hi > max_k) hi = max_k + 1;
    while (hi - lo > 1) {
        long mid = lo + (hi - lo) / 2;
        size_t need = need_at(c, &rules, mid * (long)unit, &q);
        if (need && need <= budget) lo = mid;
        else hi = mid;
    }
    const double GiB = 1024.0 * 1024.0 * 1024.0;
    if (lo == 0) {
        printf("fit: no seq_len of this model fits in %.2f GiB on %s (batch=%d): its fixed part alone is larger\n",
               (double)budget / GiB, rules.device, c->batch);
        return 1;
    }
    need_at(c, &rules, lo * (long)unit, &q);
    printf("fit: longest seq_len %ld (a multiple of %zu) fits in %.2f GiB%s on %s%s: plans %.2f GiB, %zu bytes per "
           "token, batch=%d%s\n",
           lo * (long)unit, unit, (double)budget / GiB, c->sp > 1 ? " per rank" : "", rules.device,
           strcmp(rules.device, "cuda") ? "" : " (computed)", (double)mem_plan_need(&q, &rules) / GiB,
           q.per_token_bytes, c->batch,
           strcmp(rules.device, "cuda") ? "" : "; leave room for the CUDA context (~0.5 GiB) and other processes");
    return 0;
}
