"""Render experiments/memory/long.jsonl (long.sh) and ab.jsonl (ab.sh) as long.md."""
import json
import os
import statistics
import sys

here = os.path.dirname(os.path.abspath(__file__))


def load(name):
    path = os.path.join(here, name)
    return [json.loads(l) for l in open(path) if l.strip()] if os.path.exists(path) else []


rows = load("long.jsonl")
print("# Long context: one training step at 1M and 2M tokens (CPU backend, fp32, batch 1)\n")
print("Commands: `experiments/memory/long.sh [BIN] ROW...` (each row one `reformer bench --json --warmup 0 --steps 1`")
print("process under `flock /tmp/reformer-heavy.lock /usr/bin/time -v`; the exact arguments are in the table).")
print("Model: d_model 256, d_ff 1024, 4 heads of 64, layers local,lsh, 2 hashes, chunks 64, axial dims 128,128.")
print("Peak RSS is /usr/bin/time's maximum resident set size; planned is the memory plan (`reformer plan`).")
print("Step times were taken on the 2-core machine shared with other jobs: not throughput figures.\n")
print("| row | seq_len | layers | attn_head_group | peak RSS MiB | planned MiB | RSS bytes/token | step s | loss | arguments |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    g = "all" if "attn_head_group" not in r["args"] else r["args"].split("attn_head_group=")[1].split()[0]
    per = r["time_v_max_rss_mib"] * 2**20 / (r["seq_len"] * r["batch"])
    print(f"| {r['experiment']} | {r['seq_len']} | {r['n_layers']} | {g} | {r['time_v_max_rss_mib']:.0f} | "
          f"{r['planned_mb']:.0f} | {per:.0f} | {r['step_ms'] / 1000:.0f} | {r['loss']:.4f} | `{r['args']}` |")
by = {r["experiment"]: r for r in rows}
print()
for a, b in (("64k_g2", "1m_g2"), ("64k_g4", "1m_g4")):
    if a in by and b in by:
        pa = by[a]["time_v_max_rss_mib"] / by[a]["seq_len"]
        pb = by[b]["time_v_max_rss_mib"] / by[b]["seq_len"]
        print(f"- Peak RSS per token, {a} vs {b}: {pa * 2**20:.0f} vs {pb * 2**20:.0f} bytes ({pa / pb:.3f}x; "
              f"the fixed ~60 MiB of parameters, AdamW moments and the program is spread over 16x fewer tokens at 64K).")
if "64k_g2" in by and "1m_g2" in by:
    a, b = by["64k_g2"], by["1m_g2"]
    marginal = (b["time_v_max_rss_mib"] - a["time_v_max_rss_mib"]) * 2**20 / (b["seq_len"] - a["seq_len"])
    fixed = a["time_v_max_rss_mib"] - marginal * a["seq_len"] / 2**20
    print(f"- Peak RSS between 64k_g2 and 1m_g2: {marginal:.0f} bytes per added token (the plan's per-token rows: "
          f"7832), and {fixed:.0f} MiB that does not grow with length (parameters, gradients, AdamW moments, the "
          f"program, libraries). The per-token part is flat; the ratio of peak RSS per token above is the fixed part "
          f"spread over 16x fewer tokens.")
# Why the two ratio criteria cannot be met with float32 parameters and AdamW at batch 1 (figures from
# `reformer plan` with the model above; the 2-layer peak from attempts.md).
print("- Neither ratio criterion of issue 9 can be met with float32 parameters and AdamW state at batch 1, whatever "
      "the activations do. *Bytes per token*: at 65,536 tokens the plan's per-token rows are 489.5 MiB (7,832 "
      "bytes per token) and the 4-layer model's parameters, gradients and two moments 50.2 MiB (4 x 3,287,296 "
      "floats), so even with no program, no libraries and no other fixed buffer the bytes per token at 64K would be "
      "1.10x those at 1M. *Depth* (16,384 tokens, `attn_head_group` default): 10 more layers hold 7,559,680 more "
      "parameters, 28.8 MiB as float32 alone, 0.11x of the 2-layer step's 252 MiB peak; with their gradients "
      "0.23x, with the moments too 0.46x (measured: 1.58x, attempts.md). Only the parameters themselves fit the "
      "1.15x bound. The activation part, which the criteria are about, is flat in depth and linear in length: "
      "the plan's per-token bytes are 11,681 at 2 layers and 11,761 at 12, and the measured marginal bytes per "
      "token above equal the plan's.")
if "depth_2" in by and "depth_12" in by:
    print(f"- Depth at 16384 tokens: 12 layers / 2 layers peak RSS = "
          f"{by['depth_12']['time_v_max_rss_mib'] / by['depth_2']['time_v_max_rss_mib']:.3f}x (target <= 1.15x).")

ab = load("ab.jsonl")
if ab:
    print("\n## Tokens/s against the build before this change (A/B, one session)\n")
    print("Command: `[OMP_WAIT_POLICY=active] experiments/memory/ab.sh OLD_BIN NEW_BIN` (seq_len 16384, 6 layers, the")
    print("model above, default attn_head_group; `bench --json --warmup 1 --steps 1`, old and new alternating, all six")
    print("runs back to back under the heavy lock, nothing else running). OLD_BIN: `git archive f645fdf` built on its")
    print("own (the build before the memory work); NEW_BIN: this build.\n")
    print("Each session's rows are compared only with each other (the machine's speed differs between sessions by")
    print("more than the effect); a session that ran ab.sh twice under one policy has 6 runs per build there.\n")
    print("| session | OpenMP wait policy | build | runs tokens/s | median |")
    print("|---|---|---|---|---|")
    for session in sorted({r.get("session", "?") for r in ab}):
        for pol in ("default", "active"):
            rs = [r for r in ab if r.get("omp_wait_policy", "default") == pol and r.get("session", "?") == session]
            if not rs:
                continue
            med = {}
            for build in ("old", "new"):
                v = [r["tokens_per_s"] for r in rs if r["build"] == build]
                med[build] = statistics.median(v)
                print(f"| {session} | {pol} | {build} | {', '.join(f'{x:.0f}' for x in v)} | {med[build]:.0f} |")
            print(f"| {session} | {pol} | new / old | | **{med['new'] / med['old']:.3f}** |")
    sessions = sorted({r.get("session", "?") for r in ab})
    speed = {se: statistics.median(r["tokens_per_s"] for r in ab if r.get("session", "?") == se) for se in sessions}
    print("\n- Sessions' median speeds: " + ", ".join(f"{se} ~{speed[se]:,.0f} tok/s" for se in sessions) + ". Within "
          "each session the builds alternate, so each ratio stands on its own; between sessions the machine differed "
          "by more than the effect.")

# ab_ff_chunk.sh: one build, ff_chunk values alternating.
chunk_path = os.path.join(here, "ab_ff_chunk.log")
if os.path.exists(chunk_path):
    runs = {}
    for line in open(chunk_path):
        if line.startswith("ff_chunk="):
            fc, tps, rss = line.split()[:3]
            runs.setdefault(int(fc.split("=")[1]), []).append((float(tps), float(rss)))
    print("- The feed-forward's row chunk (`experiments/memory/ab_ff_chunk.sh build/reformer "
          + " ".join(str(fc) for fc in runs) + "`, one build, alternating, ab_ff_chunk.log): median tokens/s "
          + ", ".join(f"{statistics.median(t for t, _ in v):.0f} at ff_chunk={fc} (peak {max(r for _, r in v):.0f} MiB)"
                      for fc, v in runs.items()) + ".")
    meds = [statistics.median(t for t, _ in v) for v in runs.values()]
    spread = max((max(t for t, _ in v) - min(t for t, _ in v)) / statistics.median(t for t, _ in v) for v in runs.values())
    print(f"  The medians differ by {(max(meds) - min(meds)) / min(meds):.1%}; one setting's runs spread by up to "
          f"{spread:.1%}.")
