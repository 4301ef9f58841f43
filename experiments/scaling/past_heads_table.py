"""Tables of experiments/scaling/past_heads.sh, and its communication model.

    python3 past_heads_table.py past_heads.jsonl > past_heads.md
    python3 past_heads_table.py --predict past_heads.jsonl   # sp:budget_mib:seq_len lines (the fit)
    python3 past_heads_table.py --predict-plan past_heads.jsonl SP BUDGET_MIB [OVERHEAD_MIB]   # seq_len (the plan)
"""
import json
import math
import os
import re
import subprocess
import sys

BUDGETS_MIB = (1024, 4096)
CHUNK = 64


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                rows.append(json.loads(line))
    return rows


def memory_fit(rows):
    """Per sp: (a, b) of peak RSS MiB = a + b * positions per rank, from two lengths."""
    fits = {}
    for sp in sorted({r["sp"] for r in rows if r["experiment"] == "memory_fit"}):
        pts = sorted((r["seq_len"] // r["sp"], r["peak_rss_mb_max_rank"]) for r in rows
                     if r["experiment"] == "memory_fit" and r["sp"] == sp)
        (x0, y0), (x1, y1) = pts[0], pts[-1]
        b = (y1 - y0) / (x1 - x0)
        fits[sp] = (y0 - b * x0, b)
    return fits


def predicted(fits, sp, budget):
    a, b = fits[sp]
    per_rank = int((budget - a) / b) // CHUNK * CHUNK
    return per_rank * sp


MODEL = ("d_model=256 d_ff=1024 n_heads=4 d_head=64 n_hashes=2 lsh_chunk=64 local_chunk=64 batch=1 "
         "n_layers=4").split()
REFORMER = os.environ.get("REFORMER") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                       "build", "reformer")


def plan_mib(sp, seq_len):
    """Planned MiB per rank of this build (`reformer plan`, which allocates nothing), 1 OpenMP thread."""
    args = [REFORMER, "plan", "--set", f"sp={sp}", "--set", f"seq_len={seq_len}"]
    for kv in MODEL:
        args += ["--set", kv]
    # 1 thread, as the runs (the plan's workspaces grow with the thread count: 2 here plans 5-9 MiB more)
    out = subprocess.run(args, capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout
    return float(re.search(r"planned need ([0-9.]+) MiB", out).group(1))


def step_overhead(rows, sp):
    """What a measured step holds beyond its plan (process, MPI, transients), MiB: the last `memory_overhead`
    row of this sp (a small step of this build), else the max over the fit rows (an older build's)."""
    own = [r for r in rows if r["experiment"] == "memory_overhead" and r["sp"] == sp]
    if own:
        return own[-1]["peak_mib"] - own[-1]["planned_mb"]
    return max(r["peak_rss_mb_max_rank"] - r.get("planned_mb", 0) for r in rows
               if r["experiment"] == "memory_fit" and r["sp"] == sp)


def plan_predicted(rows, sp, budget, over=None):
    """Longest seq_len (whole chunks per rank) whose plan plus the fit runs' step overhead (or `over` MiB)
    is within budget."""
    over = step_overhead(rows, sp) if over is None else over
    unit = CHUNK * sp
    lo, hi = 1, 1
    while plan_mib(sp, hi * 2 * unit) + over <= budget:
        hi *= 2
    lo, hi = hi, hi * 2  # plan(lo) fits (or lo = 1), plan(hi) does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if plan_mib(sp, mid * unit) + over <= budget:
            lo = mid
        else:
            hi = mid
    return lo * unit


def mib(x):
    return x / 2**20


def counts_table(rows):
    out = ["## Bytes one rank sends per training step, by exchange (counted)", "",
           "seq_len 8192, batch 1, d_model 256, 4 heads of 64, 2 hashes, chunks 64: `counts` rows of "
           "past_heads.jsonl. Mean over the sp ranks, MiB per step (forward, reversible recompute and backward). "
           "Every figure is linear in the positions per rank (seq_len / sp) and, for the all-to-alls, in the "
           "(sp-1)/sp share that leaves a rank; the halo is per chunk and does not grow with the length.", "",
           "| layers | sp | local path | LSH path | Ulysses all-to-all | sort all-to-all-v | halo | "
           "histograms | counts | total | total / Ulysses-only |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    base = {}
    for r in rows:
        if r["experiment"] == "counts" and r["local_path"] == "heads" and r["lsh_path"] == "heads":
            base[(r["attn_layers"], r["n_layers"], r["sp"])] = sum(r["bytes_per_step_rank"].values())
    seen = set()
    for r in rows:
        if r["experiment"] != "counts":
            continue
        local = r["local_path"] if "local" in r["attn_layers"] else "-"
        lsh = r["lsh_path"] if "lsh" in r["attn_layers"] else "-"
        key = (r["attn_layers"], r["n_layers"], r["sp"], local, lsh)
        if key in seen:  # auto took the same paths as another row
            continue
        seen.add(key)
        b = r["bytes_per_step_rank"]
        tot = sum(b.values())
        ref = base.get((r["attn_layers"], r["n_layers"], r["sp"]))
        ratio = f"{tot / ref:.3f}" if ref else "- (sp > heads)"
        out.append(f"| {r['n_layers']} x {r['attn_layers']} | {r['sp']} | {local} | {lsh} | "
                   f"{mib(b['ulysses']):.2f} | {mib(b['sort']):.2f} | {mib(b['halo']):.3f} | "
                   f"{mib(b['histogram']):.3f} | {mib(b['control']):.5f} | {mib(tot):.2f} | {ratio} |")
    return out


def share_table(rows):
    out = ["## Share of the step in collectives (measured; 2 cores)", "",
           "seq_len 8192, 4 layers local,lsh, batch 1, 1 thread per rank, 1 warm-up step then 1 timed step, other jobs sharing the cores. "
           "sp 2 is 2 ranks on 2 cores, the only speed figure that means anything here; sp 4 is 4 ranks on 2 "
           "cores (oversubscribed: its step time and share include ranks waiting for a core).", "",
           "| sp | local path | LSH path | step s | collectives share | MiB sent per rank per step |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        if r["experiment"] != "share":
            continue
        out.append(f"| {r['sp']} | {r['local_path']} | {r['lsh_path']} | "
                   f"{r['step_ms'] / 1e3:.2f} | {100 * r['comm_share']:.1f}% | "
                   f"{mib(sum(r['bytes_per_step_rank'].values())):.1f} |")
    out += ["", "The collectives share counts time inside the exchanges only. The sequence-sharded LSH layer also "
            "packs, sorts and combines rows on the host (single-threaded loops in core/attention_seq.c), which "
            "counts as compute: that is why all-sequence steps are slower at sp 2 although they send fewer bytes "
            "than all-heads. At sp 2, auto (local halo + Ulysses LSH) is both the fastest and the least traffic; the sp 4 "
            "step times (4 ranks on 2 cores, other jobs running) do not rank the paths."]
    return out


def memory_table(rows):
    fits = memory_fit(rows)
    steps = [r for r in rows if r["experiment"] in ("memory_step_1024", "memory_step_4096")]
    out = ["## Longest training step in 1 GiB and 4 GiB peak RSS per rank", "",
           "d_model 256, d_ff 1024, 4 heads of 64, 4 layers local,lsh, 2 hashes, chunks 64, batch 1, "
           "sp_attention=auto (sp 1: unsharded; sp 2, 4: local halo + Ulysses LSH; sp 8: both sequence-sharded). "
           "Each measured row is one real training step (`dist_bench --steps 1 --warmup 0`, forward, reversible "
           "backward and AdamW update) under mpirun, 1 OpenMP thread per rank, every rank under `/usr/bin/time` "
           "(`rank_rss.sh`); the peak is the largest of the ranks' maximum resident set sizes (they agree within "
           "a few MiB). Command per row: `experiments/scaling/past_heads.sh step:SP:BUDGET_MIB` (or "
           "`step:SP:BUDGET_MIB:SEQ_LEN` for a given length), each run under `flock /tmp/reformer-heavy.lock`. "
           "The first length tried is the *plan's prediction*: the longest seq_len (whole 64-position chunks per "
           "rank) whose planned bytes per rank (`reformer plan --set sp=SP`, exactly what `model_init` allocates) "
           "plus this build's measured overhead (`memory_overhead` rows: one step at 1024 positions per rank, "
           "peak RSS minus plan: the process, MPI, OpenBLAS and the step's transients) is within the budget; "
           "over budget, 5% fewer chunks per rank (never needed). The first seven runs (1 GiB rows, then 4 GiB) started "
           "from a plan made with this machine's 2 OpenMP threads (`reformer plan`'s default), whose workspaces are "
           "5-9 MiB per rank larger than those of the 1-thread runs, so they are 2 to 20 chunks per rank short of the "
           "1-thread prediction now in the column (the script now plans with 1 thread); then each 1 GiB row was run "
           "once 1% (at least one chunk) per rank longer, to bracket the longest length. The *fit's prediction* (next column) is the earlier estimate of "
           "this section, an affine fit of two small steps of an older build (below); it is kept for comparison: at "
           "sp 1 it is far short (the older build's bytes per position), at sp 8 x 1 GiB (186880) past a length "
           "measured over budget. "
           "Step seconds are on 2 cores shared by sp ranks and by another engineer's jobs: not a speed figure.", ""]
    over = {}
    for r in rows:
        if r["experiment"] == "memory_overhead":
            over[r["sp"]] = r
    if over:
        out += ["Overhead per rank (`memory_overhead` rows): " + "; ".join(
            f"sp {sp}: {o['peak_mib'] - o['planned_mb']:.1f} MiB ({o['peak_mib']:.1f} peak, {o['planned_mb']:.1f} planned, "
            f"seq_len {o['seq_len']})" for sp, o in sorted(over.items())) + ".", ""]
    out += ["| sp | budget | fit's prediction seq_len | plan's prediction seq_len | seq_len run | positions per rank | planned MiB per rank | "
            "peak RSS MiB per rank (max over ranks) | within budget | step s |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    # the plan's prediction (1 thread) with this build's overhead, for every row
    plan_pred = {(sp, b): plan_predicted(rows, sp, b) for sp in over for b in BUDGETS_MIB}
    for sp in (1, 2, 4, 8):
        for budget in BUDGETS_MIB:
            fit = predicted(fits, sp, budget) if sp in fits else "-"
            mine = [r for r in steps if r["sp"] == sp and r["budget_mib"] == budget]
            if not mine:
                why = ("not measurable here: sp x budget is more than this 24 GiB machine has"
                       if sp * budget > 20480 else "not run (session time)")
                out.append(f"| {sp} | {budget} MiB | {fit} | {plan_pred.get((sp, budget), '-')} | - | - | - | - | {why} | - |")
            for r in mine:
                out.append(f"| {sp} | {budget} MiB | {fit} | {plan_pred.get((sp, budget), '-')} | {r['seq_len']} | {r['seq_len'] // sp} | "
                           f"{r['planned_mb']:.1f} | {r['peak_mib']:.1f} | {'yes' if r['within'] else 'NO'} | "
                           f"{r['step_ms'] / 1e3:.0f} |")
    out += ["", "What the runs show (granularity: the lengths run, in 64-position chunks per rank):", "",
            "| sp | budget | longest measured within budget | shortest measured over budget | measured longest fitting seq_len |",
            "|---|---|---|---|---|"]
    for sp in (1, 2, 4, 8):
        for budget in BUDGETS_MIB:
            mine = [r for r in steps if r["sp"] == sp and r["budget_mib"] == budget]
            if not mine:
                continue
            ok = [r for r in mine if r["within"]]
            bad = [r for r in mine if not r["within"]]
            best = max(ok, key=lambda r: r["seq_len"]) if ok else None
            worst = min(bad, key=lambda r: r["seq_len"]) if bad else None
            cell_ok = f"{best['seq_len']} ({best['peak_mib']:.1f} MiB)" if best else "-"
            cell_bad = f"{worst['seq_len']} ({worst['peak_mib']:.1f} MiB)" if worst else "none run"
            if best and worst and worst["seq_len"] > best["seq_len"]:
                gap = (worst["seq_len"] - best["seq_len"]) // (CHUNK * sp)
                what = (f"at least {best['seq_len']}, less than {worst['seq_len']} "
                        f"({gap} chunk{'s' if gap > 1 else ''} per rank apart)")
            elif best:
                what = (f"at least {best['seq_len']} ({100 * (budget - best['peak_mib']) / budget:.1f}% under the "
                        "budget); no run above it, so not bracketed")
            else:
                what = "no fitting length measured"
            out.append(f"| {sp} | {budget} MiB | {cell_ok} | {cell_bad} | {what} |")
    out += ["", "Every run again: `flock /tmp/reformer-heavy.lock experiments/scaling/past_heads.sh " +
            " ".join(f"step:{r['sp']}:{r['budget_mib']}:{r['seq_len']}" for r in steps) +
            "` (each run takes `/tmp/reformer-heavy.lock` itself; do not wrap the script in the same lock).", ""]
    out += ["### The earlier fit (an older build)", "",
            "Peak RSS per rank of a real training step, affine in the positions per rank, fitted on two measured "
            "lengths (`memory_fit` rows, 1024 and 2048 positions per rank, built before issue 9's memory changes: "
            "at sp 1 and seq_len 51776 that build planned 993 MiB where this one plans about 640 MiB; at sp 2, 4 and 8 the two builds plan within 5% of each other). The longest length "
            "is solved from the fit (whole chunks per rank). At that length the model was then set up with every "
            "buffer touched but no step taken (`memory_plan_*` rows, `dist_bench --plan-only`); its estimate is "
            "that resident size plus the fit runs' own step overhead (their peak minus their planned bytes).", "",
            "| sp | fit: peak MiB = a + b x positions per rank | step overhead MiB | budget | longest seq_len | "
            "positions per rank | planned MiB per rank | resident MiB, set up | estimated step peak MiB |",
            "|---|---|---|---|---|---|---|---|---|"]
    plans = {}
    for r in rows:
        if r["experiment"].startswith("memory_plan_"):
            plans[(r["sp"], int(r["experiment"].split("_")[-1]))] = r
    for sp, (a, b) in sorted(fits.items()):
        overhead = max(r["peak_rss_mb_max_rank"] - r.get("planned_mb", 0) for r in rows
                       if r["experiment"] == "memory_fit" and r["sp"] == sp)
        for budget in BUDGETS_MIB:
            L = predicted(fits, sp, budget)
            p = plans.get((sp, budget))
            if p:
                est = p["planned_mb_max_rank"] + overhead
                cells = [f"{p['planned_mb_max_rank']:.0f}", f"{p['rss_before_step_mb_max_rank']:.0f}",
                         f"{est:.0f} ({'within' if est <= budget else 'OVER'})"]
            else:
                cells = ["-", "-", "fit's prediction only (not set up)"]
            out.append(f"| {sp} | {a:.0f} + {b * 1024:.1f} KiB x positions | {overhead:.0f} | {budget} MiB | {L} | "
                       f"{L // sp} | " + " | ".join(cells) + " |")
    return out


def bandwidth(rows):
    """Largest-message all-to-all busbw (GB/s) per rank count, from bench_collectives lines."""
    bw = {}
    for r in rows:
        if r["experiment"] != "bandwidth":
            continue
        f = r["line"].split()
        # bytes floats check ar_us ar_algbw ar_busbw a2a_us a2a_algbw a2a_busbw
        bw[r["ranks"]] = (int(f[0]), float(f[8]), float(f[5]))
    return bw


# FLOPs per token of a training step of the measured model: forward, the
# reversible recompute of the forward, and a backward of twice the forward.
D, DFF, H, DH, R, M, V = 256, 1024, 4, 64, 2, CHUNK, 256
FWD_LOCAL = 4 * 2 * D * H * DH + H * 4 * (2 * M) * DH
FWD_LSH = 3 * 2 * D * H * DH + R * H * 4 * (2 * M) * DH
FWD_FFN = 2 * 2 * D * DFF
FWD_TOKEN = 2 * FWD_LOCAL + 2 * FWD_LSH + 4 * FWD_FFN + 2 * (2 * D) * V
TRAIN_FLOPS_TOKEN = 4 * FWD_TOKEN


def model_table(rows):
    # Per-token and per-rank coefficients from the counted 4-layer sequence-sharded rows at sp 8.
    ref = [r for r in rows if r["experiment"] == "counts" and r["n_layers"] == 4 and r["sp"] == 8
           and r["lsh_path"] == "sequence" and r["local_path"] == "sequence"]
    if not ref:
        return ["## Communication model", "", "(no counts rows at sp 8 yet)"]
    r = ref[0]
    b = r["bytes_per_step_rank"]
    Ll = r["seq_len"] // r["sp"]
    frac = (r["sp"] - 1) / r["sp"]
    sort_per_token = b["sort"] / (Ll * frac)  # bytes per position per rank, all of it leaving
    halo_per_rank = b["halo"] * r["sp"] / (r["sp"] - 1)  # every rank but the ends sends its halos
    # Histograms: B H R nb ints per call, 2 calls (forward, recompute) per LSH layer, 2 LSH layers; scan + sum.
    def hist_bytes(L, sp):
        chunks = L // M
        nb = 2
        while nb * 2 <= 2 * chunks and nb * 2 <= 65536:
            nb *= 2
        return 2 * 2 * H * R * nb * 4 * (1 + 2 * (sp - 1) / sp)
    measured_hist = hist_bytes(r["seq_len"], r["sp"])
    bw = bandwidth(rows)
    host = max(bw.items())[1][1] if bw else None
    # Messages per step: per LSH layer 6 all-to-all-v and 6 count all-to-alls (sp - 1 peers each), 2 scans
    # (log2 sp rounds each), 3 halo shifts; per local layer 3 shifts; two layers of each. Each collective
    # costs ALPHA, each peer message of an all-to-all BETA more, each scan round ALPHA.
    ALPHA, BETA = 10e-6, 1e-6
    def step(L, sp, gbps):
        per_rank = L / sp
        compute = per_rank * TRAIN_FLOPS_TOKEN / GPU_FLOPS
        volume = sort_per_token * per_rank * (sp - 1) / sp + halo_per_rank + hist_bytes(L, sp)
        calls = 2 * (12 + 2 + 3) + 2 * 3
        latency = calls * ALPHA + 2 * 12 * (sp - 1) * BETA + 2 * 2 * math.log2(sp) * ALPHA
        return compute, volume / (gbps * 1e9) + latency
    out = ["## Communication model: sp = 8 to 1024 (a model, not a measurement)", "",
           f"Inputs. Counted at sp 8 (4 layers, both kinds sequence-sharded, {r['seq_len']} tokens): the sort "
           f"sends {sort_per_token:.0f} bytes per position per rank per step ({sort_per_token / (4 * H * DH):.1f} "
           f"floats per position per head-width, about 9 R per LSH layer), halos {halo_per_rank / 1024:.1f} KiB "
           f"per rank per step (independent of the length), histograms {b['histogram']:.0f} bytes "
           f"(formula: {measured_hist:.0f}). Compute: {TRAIN_FLOPS_TOKEN / 1e6:.1f} MFLOP per token per step "
           f"(forward, recompute and backward of the 4 layers; counted from the shapes), at an assumed sustained "
           f"GPU_FLOPS per GPU. The long-context issue's per-GPU table was not in this worktree, so the GPU rate is "
           f"an assumption, stated next to each table. Collective bandwidth: bench_collectives measured "
           + (f"{host:.2f} GB/s all-to-all busbw on {max(bw)} host ranks here (MPI over shared memory, 2 cores "
              f"shared with other jobs)" if host else "nothing yet") +
           "; GPU fabrics are given as assumptions: 150 GB/s (NVLink-class, within a node) and 25 GB/s per GPU "
           "(one 200 Gb/s InfiniBand port per GPU, across nodes); 10 us per collective call and per scan round, 1 us "
           "per peer message of an all-to-all(-v). No overlap of "
           "communication and compute is assumed (an upper bound on the share).", ""]
    global GPU_FLOPS
    GPU_FLOPS = 100e12
    first_majority = {}
    for L in (1 << 20, 1 << 24):
        out += [f"seq_len {L} ({L >> 20}M tokens), GPU_FLOPS = 100 TFLOP/s (assumed):", "",
                "| sp | positions per rank | compute ms | comm ms at 150 GB/s | share | comm ms at 25 GB/s | share |",
                "|---|---|---|---|---|---|---|"]
        for sp in (8, 16, 32, 64, 128, 256, 512, 1024):
            comp, c150 = step(L, sp, 150)
            _, c25 = step(L, sp, 25)
            for gbps, c in ((150, c150), (25, c25)):
                if c > comp and (L, gbps) not in first_majority:
                    first_majority[(L, gbps)] = sp
            out.append(f"| {sp} | {L // sp} | {comp * 1e3:.2f} | {c150 * 1e3:.2f} | "
                       f"{100 * c150 / (c150 + comp):.0f}% | {c25 * 1e3:.2f} | {100 * c25 / (c25 + comp):.0f}% |")
        out.append("")
    bytes_per_flop = sort_per_token / TRAIN_FLOPS_TOKEN
    def fm(L, g):
        sp = first_majority.get((L, g))
        return f"sp = {sp}" if sp else "beyond sp = 1024"
    out += [f"Reading it: the sort moves {sort_per_token / 1024:.1f} KiB per position per step against "
            f"{TRAIN_FLOPS_TOKEN / 1e6:.1f} MFLOP of compute per position: {1 / bytes_per_flop:.0f} FLOP per byte, "
            "whatever sp. At 100 TFLOP/s per GPU the exchange keeps pace only above about "
            f"{100e12 * bytes_per_flop / 1e9:.0f} GB/s per GPU. Communication is the larger part of the step "
            f"over 25 GB/s from {fm(1 << 20, 25)} (1M tokens) and {fm(1 << 24, 25)} (16M): bandwidth-bound, "
            "for this small model (d_model 256: little compute per byte of q/k/v); over 150 GB/s from "
            f"{fm(1 << 20, 150)} at 1M tokens and {fm(1 << 24, 150)} at 16M, where the per-call and per-peer "
            "latencies (12 all-to-all(-v)s of sp - 1 peers per LSH layer and step) meet the per-rank compute "
            "that shrinks as L/sp. Wider models raise the compute per byte (d_model 1024, d_ff 4096: about 4x), "
            "and so every crossing; overlapping the exchanges with the backward (DESIGN.md) hides up to the "
            "compute time."]
    if host:
        comp, ch = step(1 << 20, 8, host)
        out += ["", f"With the {host:.2f} GB/s bench_collectives measured here (host MPI on 2 shared cores), the "
                f"same model gives {ch:.1f} s of communication per step at 1M tokens and sp 8, against "
                f"{comp * 1e3:.0f} ms of GPU compute: this machine can check the exchanges' correctness and count "
                "their bytes, not time them at scale."]
    return out


def main():
    if sys.argv[1] == "--predict-plan":
        over = eval(sys.argv[5], {}) if len(sys.argv) > 5 else None  # MiB, e.g. "1000.2 - 980.1"
        print(plan_predicted(load(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), over))
        return
    if sys.argv[1] == "--predict":
        rows = load(sys.argv[2])
        fits = memory_fit(rows)
        for sp in sorted(fits):
            for budget in BUDGETS_MIB:
                print(f"{sp}:{budget}:{predicted(fits, sp, budget)}")
        return
    rows = load(sys.argv[1])
    lines = ["# Sequence sharding past the head count (issue 10)", "",
             "Command: `flock /tmp/reformer-heavy.lock experiments/scaling/past_heads.sh` (phases counts, share, "
             "memory, bandwidth; rows in past_heads.jsonl, tables by past_heads_table.py). CPU backend, MPI on "
             "one 2-core machine, 1 OpenMP thread per rank.", "",
             "These are the runs of the build before issue 20 (REFORMER=a build of main at d649d1e regenerates "
             "this file unchanged). Issue 20 gave sp > 1 the workspace of sp = 1; its reruns of the memory, byte "
             "and step-time rows with this script are in one_workspace.md.", ""]
    for part in (counts_table, share_table, memory_table, model_table):
        lines += part(rows) + [""]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
