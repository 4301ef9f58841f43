"""Render experiments/throughput/results.jsonl as the markdown results table."""
import json
import platform
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
cpu = "unknown CPU"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
except OSError:
    pass
import os

print("# Training-step throughput (CPU backend, float32)\n")
print(f"Machine: {cpu}, {os.cpu_count()} cores, {platform.system()}. "
      "Command: `experiments/throughput/run.sh`; each row is one `build/reformer bench --json ...` process, "
      "timed steps after an untimed warm-up step.\n")
issue = [r for r in rows if r["experiment"] == "issue_config"]
if issue:
    r = issue[0]
    print("## seq_len 16384, d_model 256, 6 layers (local,lsh), 4 heads, 2 hashes, chunk 64, batch 1\n")
    print("| tokens/s | step s | peak RSS MiB | params | matmul | attention | rest |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {r['tokens_per_s']:.0f} | {r['step_ms'] / 1000:.2f} | {r['peak_rss_mb']:.0f} | {r['params']} | "
          f"{100 * r['share_matmul']:.0f}% | {100 * r['share_attention']:.0f}% | {100 * r['share_other']:.0f}% |\n")
    print("Shares are of the forward+backward time (the AdamW update is in the step time, not in the shares); "
          "'attention' is hashing, sorting and the chunked attention kernels, 'rest' is LayerNorm, embeddings, "
          "activations, loss and copies.\n")
print("## Tokens/s against length: 2 layers, d_model 256, all LSH (2 hashes, chunk 64) vs full attention\n")
print("| seq_len | LSH tokens/s | full tokens/s | LSH peak RSS MiB | full peak RSS MiB |")
print("|---|---|---|---|---|")
lens = sorted({r["seq_len"] for r in rows if r["experiment"].startswith("sweep")})
for L in lens:
    lsh = next((r for r in rows if r["experiment"] == "sweep_lsh" and r["seq_len"] == L), None)
    full = next((r for r in rows if r["experiment"] == "sweep_full" and r["seq_len"] == L), None)
    f = lambda r, k, fmt: (fmt % r[k]) if r else "not run"
    print(f"| {L} | {f(lsh, 'tokens_per_s', '%.0f')} | {f(full, 'tokens_per_s', '%.0f')} | "
          f"{f(lsh, 'peak_rss_mb', '%.0f')} | {f(full, 'peak_rss_mb', '%.0f')} |")
