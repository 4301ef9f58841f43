#!/usr/bin/env python3
"""Tables of experiments/lsh_hash from results.jsonl (run.sh) and quality.log
(quality.sh), in markdown, on stdout:  experiments/lsh_hash/table.py"""
import json
import os
import re
import statistics

here = os.path.dirname(os.path.abspath(__file__))
rows = [json.loads(x) for x in open(os.path.join(here, "results.jsonl")) if x.strip()]


def fmt(v, nd=1):
    return "-" if v is None else f"{v:,.{nd}f}"


print("### (a) 2 all-LSH layers: tokens/s against length (every run; median per build and length)\n")
print("| seq_len | build | runs: tokens/s | median tokens/s | vs 4K (same build) | peak RSS MiB | share_hash |")
print("|---|---|---|---|---|---|---|")
flat = [r for r in rows if r["phase"] == "flat"]
med = {}
for b in ("old", "new"):
    for L in sorted({r["seq_len"] for r in flat}):
        rs = [r for r in flat if r["build"] == b and r["seq_len"] == L]
        if rs:
            med[b, L] = statistics.median(r["tokens_per_s"] for r in rs)
for L in sorted({r["seq_len"] for r in flat}):
    for b in ("old", "new"):
        rs = [r for r in flat if r["build"] == b and r["seq_len"] == L]
        if not rs:
            continue
        base = med.get((b, 4096))
        rel = f"{med[b, L] / base:.2f}" if base else "-"
        print(f"| {L:,} | {b} | {', '.join(fmt(r['tokens_per_s']) for r in rs)} | {fmt(med[b, L])} | {rel} | "
              f"{fmt(max(r['peak_rss_mb'] for r in rs))} | {rs[-1].get('share_hash', '-')} |")

print("\n### (b) 4 layers local,lsh, attn_head_group=2, 1,048,576 tokens\n")
print("| build | step s | tokens/s | peak RSS MiB | planned MiB | share_attention | share_hash |")
print("|---|---|---|---|---|---|---|")
for r in (r for r in rows if r["phase"] == "long1m"):
    print(f"| {r['build']} | {r['step_ms'] / 1e3:,.1f} | {fmt(r['tokens_per_s'])} | {fmt(r['peak_rss_mb'])} | "
          f"{fmt(r['planned_mb'])} | {r['share_attention']} | {r.get('share_hash', '-')} |")

print("\n### (c) 16,384 tokens, 6 all-LSH layers, against reformer-pytorch 1.4.4 (fp32, CPU)\n")
print("| implementation | n_buckets | tokens/s | peak RSS MiB |")
print("|---|---|---|---|")
for r in (r for r in rows if r["phase"] == "torch16k"):
    if r["build"] == "reformer-pytorch":
        print(f"| reformer-pytorch 1.4.4 | 256 (bucket_size 64) | {fmt(r['tokens_per_s'])} | {fmt(r['peak_rss_mb'])} |")
    else:
        nb = re.search(r"n_buckets=(\S+)", r["args"])
        print(f"| reformer {r['build']} | {nb.group(1) if nb else 'auto'} | {fmt(r['tokens_per_s'])} | "
              f"{fmt(r['peak_rss_mb'])} |")
