"""Render experiments/scaling/results.jsonl as the markdown results table."""
import json
import os
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
budget = float(os.environ.get("BUDGET_MIB", "1024"))
print("# Distributed training on one 2-core machine (CPU backend, MPI host path)\n")
print("Command: `experiments/scaling/run.sh` (`build/dist_bench` under `mpirun`, 1 OpenMP thread per rank; "
      "the 1-process rows use `build/reformer bench`).\n")
print("## Scaling: seq_len 16384, d_model 256, 6 layers, 4 heads, 2 hashes, chunk 64, batch 1 per replica\n")
print("| run | ranks | dp x sp | tokens/step | tokens/s | step s | collectives share | peak RSS MiB (max rank) |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    if r["experiment"] == "scaling_1proc_2threads":
        print(f"| 1 process, 2 threads | 1 | 1 x 1 | {r['seq_len'] * r['batch']} | {r['tokens_per_s']:.0f} | "
              f"{r['step_ms'] / 1000:.2f} | - | {r['peak_rss_mb']:.0f} |")
    elif r["experiment"] == "scaling":
        kind = "1 rank, 1 thread" if r["world"] == 1 else ("data parallel" if r["sp"] == 1 else "sequence parallel")
        print(f"| {kind} | {r['world']} | {r['dp']} x {r['sp']} | {r['tokens_per_step']} | {r['tokens_per_s']:.0f} | "
              f"{r['step_ms'] / 1000:.2f} | {100 * r['comm_share']:.1f}% | {r['peak_rss_mb_max_rank']:.0f} |")
print(f"\n## Longest sequence with a training step in {budget:.0f} MiB peak RSS per rank "
      "(d_model 256, 2 layers, 4 heads, 2 hashes, chunk 64)\n")
print("| sp | longest seq_len within budget | its peak RSS MiB (max rank) | next length tried | its peak RSS MiB |")
print("|---|---|---|---|---|")
for sp in (1, 2, 4):
    runs = [r for r in rows if r["experiment"] == f"longest_sp{sp}"]
    fit = [r for r in runs if r["peak_rss_mb_max_rank"] <= budget]
    over = [r for r in runs if r["peak_rss_mb_max_rank"] > budget]
    best = max(fit, key=lambda r: r["seq_len"]) if fit else None
    nxt = min(over, key=lambda r: r["seq_len"]) if over else None
    print(f"| {sp} | {best['seq_len'] if best else 'none'} | {best['peak_rss_mb_max_rank']:.0f} | "
          f"{nxt['seq_len'] if nxt else 'none tried'} | {nxt['peak_rss_mb_max_rank']:.0f} |" if best and nxt else
          f"| {sp} | {best['seq_len'] if best else 'none'} | {best['peak_rss_mb_max_rank'] if best else '-'} | - | - |")
