#!/usr/bin/env python3
"""Tables of experiments/lsh_hash from results.jsonl (run.sh) and quality.log
(quality.sh), in markdown, on stdout:  experiments/lsh_hash/table.py"""
import json
import os
import re
import statistics

here = os.path.dirname(os.path.abspath(__file__))
rows = [json.loads(x) for x in open(os.path.join(here, "results.jsonl")) if x.strip()]


HEAD = """# Factorised LSH buckets (issue 19): measurements

Commands (from the repository root; OLD = main at d649d1e built in its own
worktree, NEW = this branch's build/reformer, both copied to /tmp/i19-bin so
that rebuilding during the runs could not change them):

    experiments/lsh_hash/run.sh OLD NEW flat:4096 flat:16384 torchref   # the rows below
    experiments/lsh_hash/run.sh OLD NEW torch16k:new flat:65536 flatnew:262144 flat:4096 long1m
                                     # torch16k:new's default row ran; the rest was queued, not reached
    experiments/lsh_hash/quality.sh 400 16                              # (d): not reached
    build/roofline --md experiments/roofline/configs.txt    # NEW: experiments/roofline/results.md
    (d649d1e with this roofline.c, unfactorised hash)       # OLD: roofline_d649d1e.md
    experiments/lsh_hash/table.py > experiments/lsh_hash/results.md

Every run holds the heavy-job lock (`flock /tmp/reformer-heavy.lock`), one
run per hold, old and new alternating. The machine (2 cores) was shared with
six other helpers the whole time: their builds and tests do not take the
lock, and the load average stood at 7 to 10 during these runs, so absolute
tokens/s are 3-5x below the same builds' figures on a quiet machine
(experiments/throughput) and vary by tens of percent from run to run.
Shares of the step (share_hash, from `reformer bench`'s profile: the hash's
time over the forward-backward's, a part of share_attention) are less
affected than tokens/s. results.jsonl holds every run.
"""
print(HEAD)


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
print("| implementation | n_buckets | attn_head_group | tokens/s | peak RSS MiB |")
print("|---|---|---|---|---|")
for r in (r for r in rows if r["phase"] == "torch16k"):
    if r["build"] == "reformer-pytorch":
        print(f"| reformer-pytorch 1.4.4 | 256 (bucket_size 64) | - | {fmt(r['tokens_per_s'])} | {fmt(r['peak_rss_mb'])} |")
    else:
        nb = re.search(r"n_buckets=(\S+)", r["args"])
        g = re.search(r"attn_head_group=(\S+)", r["args"])
        print(f"| reformer {r['build']} | {nb.group(1) if nb else 'auto'} | {g.group(1) if g else 'all (4)'} | "
              f"{fmt(r['tokens_per_s'])} | "
              f"{fmt(r['peak_rss_mb'])} |")

print("\n### (d) quality: LSH-4 on GCIDE at length 2048 (quality.sh), validation bits per byte\n")
print("| n_buckets | rotation columns per round | steps | train form bpb | decode form bpb |")
print("|---|---|---|---|---|")
qlog = os.path.join(here, "quality.log")
if os.path.exists(qlog):
    cur, q, steps = None, {}, {}
    for line in open(qlog):
        m = re.match(r"\[n_buckets=(\S+)[\] ]", line)
        if m:
            cur = m.group(1)
        m = re.search(r"steps=(\d+) ", line)
        if m and cur and "train " in line:
            steps[cur] = m.group(1)
        m = re.search(r"\| (train|decode) form .* \| ([0-9.]+) bits per byte", line)
        if m and cur:
            q[cur, m.group(1)] = m.group(2)
    for nb, cols in (("64", "32"), ("8,8", "4 + 4")):
        print(f"| {nb} | {cols} | {steps.get(nb, '-')} | {q.get((nb, 'train'), '-')} | {q.get((nb, 'decode'), '-')} |")

print("\n### (e) computed: the hash's FLOPs per training step (experiments/roofline's counting backend)\n")
print("| model | old: lsh_hash GFLOP (share of step) | new: lsh_hash GFLOP (share of step) |")
print("|---|---|---|")
roof = {}
for build, path in (("old", os.path.join(here, "roofline_d649d1e.md")),
                    ("new", os.path.join(here, "..", "roofline", "results.md"))):
    name = None
    for line in open(path):
        m = re.match(r"## (\S+):", line)
        if m:
            name = m.group(1)
        m = re.match(r"\| attention \| lsh_hash \| \d+ \| ([0-9.]+) \| [0-9.]+ \| [0-9.]+ \| ([0-9.]+%) \|", line)
        if m and name:
            roof[name, build] = f"{float(m.group(1)):,.1f} ({m.group(2)})"
for name in sorted({n for n, _ in roof}):
    print(f"| {name} | {roof.get((name, 'old'), '-')} | {roof.get((name, 'new'), '-')} |")

print("""
### What these runs show, and what is missing

- Hashing per item is now (f1 + f2)/2 columns instead of nb/2 (docs/memory.md,
  "The cost of hashing"); computed for whole steps (e) the hash falls 21x for
  the paper's enwik8 model at 64K and 85x for the 1M-token model.
- (a) At 16,384 tokens the new build spent 0.6% of the step hashing
  (share_hash; 512 buckets as 16 x 32: 24 columns instead of 256) and ran
  1.34x the old build's tokens/s in the one alternated pair that is clean
  (884.7 against 658.3). The 4,096-token pair is not a comparison: there
  both builds hash alike (128 buckets, unfactorised), and the new run
  overlapped this session's own `make test-hf`. The 64K to 1M lengths (and
  so the within-20%-of-4K target), (b) the 1M step and (d) were queued
  behind the lock and did not run before the session's deadline: each run
  waited 10-30 minutes for its turn among seven helpers. run.sh and
  quality.sh take the same phases again (quality.sh resumes a finished
  training run).
- (c) This build at 16K with 6 all-LSH layers (automatic 16 x 32 buckets)
  ran 996.9 tokens/s in 275.4 MiB against reformer-pytorch's 95.1 tokens/s
  in 1,825.5 MiB: 10.5x the tokens/s and 0.15x the peak RSS (target: >= 3x
  and <= 1/8 = 0.125x; the RSS target is missed). Read the speed ratio with
  care: the two runs were 30 minutes apart at load averages of 9-13 on 2
  cores, and torch's two threads suffer more from oversubscription than
  this build's, so the ratio on a quiet machine (issue 19 quotes ~2x) is
  not measured here; nothing beyond the hash was changed to speed the step
  up (the chunked attention kernel, matmul shapes and the sort are as in
  d649d1e).
- The old build's 1M step (4 layers local,lsh, attn_head_group=2) is
  experiments/memory/long.md's row 1m_g2: 1,189 s, 7,933 MiB peak, hashing
  about 2/3 of it.
""")
