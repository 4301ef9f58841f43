"""Render experiments/memory/results.jsonl as the markdown results table."""
import json
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]


def find(exp, **kw):
    for r in rows:
        if r["experiment"] == exp and all(r[k] == v for k, v in kw.items()):
            return r
    return None


print("# Peak memory of one training step (CPU backend, float32)\n")
print("Command: `experiments/memory/run.sh` (each row: `build/reformer bench --json --warmup 0 --steps 1 ...`).")
print("Peak RSS is the whole process (getrusage); planned is what the model allocated up front. "
      "d_model 256, d_ff 512, 4 heads, 2 hashes, chunks 64, batch 1. Step times were taken while other jobs "
      "shared the 2 cores: they are not throughput figures (see experiments/throughput).\n")
print("| experiment | seq_len | layers | attention | activations | params | peak RSS MiB | planned MiB | step s |")
print("|---|---|---|---|---|---|---|---|---|")
for r in rows:
    attn = "full" if r["attn"] == "full" else r["attn_layers"]
    acts = "reversible" if r["reversible"] else "stored"
    print(f"| {r['experiment']} | {r['seq_len']} | {r['n_layers']} | {attn} | {acts} | {r['params']} | "
          f"{r['peak_rss_mb']:.0f} | {r['planned_mb']:.0f} | {r['step_ms'] / 1000:.1f} |")

print()
a, b = find("depth", n_layers=2), find("depth", n_layers=12)
if a and b:
    print(f"- Depth, reversible: 12 layers / 2 layers = {b['peak_rss_mb'] / a['peak_rss_mb']:.2f}x peak RSS "
          f"(target <= 1.3x).")
a, b = find("depth_stored", n_layers=2), find("depth_stored", n_layers=12)
if a and b:
    print(f"- Depth, stored activations: 12 layers / 2 layers = {b['peak_rss_mb'] / a['peak_rss_mb']:.2f}x.")
a, b = find("length", seq_len=8192), find("length", seq_len=65536)
if a and b:
    print(f"- Length, reversible LSH/local: 65536 / 8192 tokens = {b['peak_rss_mb'] / a['peak_rss_mb']:.2f}x peak RSS "
          f"for 8x the tokens (target <= 9x).")
a, b = find("length_full", seq_len=8192), find("length_full", seq_len=16384)
if a and b:
    print(f"- Length, full attention: 16384 / 8192 tokens = {b['peak_rss_mb'] / a['peak_rss_mb']:.2f}x peak RSS "
          f"for 2x the tokens.")

full = find("length_full", seq_len=16384)
if full:
    # Not measured: the full-attention baseline's attention tiles alone at 65536
    # tokens (2 tiles of L x L floats per thread, 2 threads) exceed this machine.
    tiles = 2 * 2 * 65536 ** 2 * 4 / 2 ** 30
    print(f"- Full attention at 65536 tokens was not run: its attention tiles alone would take "
          f"{tiles:.0f} GiB (2 threads x 2 tiles x 65536^2 floats, computed from the plan), more than the "
          f"machine's 24 GiB; the reversible LSH/local model trains it in {find('length', seq_len=65536)['peak_rss_mb']:.0f} MiB.")
