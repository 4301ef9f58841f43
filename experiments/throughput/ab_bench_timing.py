"""Table of ab_bench_timing.jsonl: tokens/s of the old and new bench per
round, their medians and the new/old ratio of the medians (markdown).
    ab_bench_timing.py ab_bench_timing.jsonl [NOTE] > ab_bench_timing.md"""
import json
import statistics
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print("# reformer bench: unprofiled timed steps (issue 22), CPU A/B\n")
print("Command: `experiments/throughput/ab_bench_timing.sh OLD NEW` (old: `build/reformer` of main d649d1e; new:")
print("this branch's; alternating, each run one process under the heavy lock), then")
print("`experiments/throughput/ab_bench_timing.py ab_bench_timing.jsonl > ab_bench_timing.md`. Model: seq_len 4096,")
print("d_model 256, 6 layers (local,lsh), 4 heads, 2 hashes, chunk 64, batch 1; 1 warm-up, 3 timed steps.")
if len(sys.argv) > 2:
    print(sys.argv[2])
print()
by = {"old": [], "new": []}
print("| round | old tokens/s | new tokens/s | new fwdbwd ms | new profiled fwdbwd ms | new timed syncs/step |")
print("|---|---|---|---|---|---|")
for r in sorted({x["round"] for x in rows}):
    o = [x for x in rows if x["round"] == r and x["build"] == "old"]
    n = [x for x in rows if x["round"] == r and x["build"] == "new"]
    if not o or not n:
        continue
    o, n = o[0], n[0]
    by["old"].append(o["tokens_per_s"])
    by["new"].append(n["tokens_per_s"])
    print(f"| {r} | {o['tokens_per_s']:.1f} | {n['tokens_per_s']:.1f} | {n['fwdbwd_ms']:.0f} | "
          f"{n['profiled_fwdbwd_ms']:.0f} | {n['timed_syncs_per_step']:.2f} |")
mo, mn = statistics.median(by["old"]), statistics.median(by["new"])
print(f"\nmedian tokens/s: old {mo:.1f}, new {mn:.1f}; new/old {mn / mo:.4f} "
      f"(runs: {len(by['old'])} each; spread old {min(by['old']):.1f}-{max(by['old']):.1f}, "
      f"new {min(by['new']):.1f}-{max(by['new']):.1f})")
