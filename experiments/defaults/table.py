#!/usr/bin/env python3
"""The defaults search's table and curves, from experiments/defaults/logs/*.log.

    python3 experiments/defaults/table.py [TAG ...]    # prints the Markdown table; writes curves.png

One row per run (in the order given, else by the log's time): the keys it
changed, steps x tokens per step, tokens processed, the validation bits per
byte (32 windows) at every 100 steps and at the end, the wall time and its
tokens/s, and the load average before it took the lock (other helpers' builds
and tests did not take it). curves.png plots validation bits per byte against
tokens processed (needs python3-matplotlib).
"""
import glob
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def parse(path):
    text = open(path).read()
    cmd = re.search(r"^# command: .*?ckpt_every=0 ?(.*)$", text, re.M).group(1)
    r = {"tag": os.path.basename(path)[:-4], "keys": cmd or "(defaults)"}
    s = re.search(r"seq_len (\d+) \| batch (\d+)", text)
    if not s:
        return None  # still waiting for the lock
    r["seq_len"], r["batch"] = int(s.group(1)), int(s.group(2))
    r["evals"] = [(int(a), float(b)) for a, b in re.findall(r"^eval: step (\d+)/\d+ \| validation \| ([\d.]+) bpb", text, re.M)]
    steps = re.findall(r"^step +(\d+)/(\d+) ", text, re.M)
    r["done_steps"] = int(steps[-1][0]) if steps else 0
    r["steps"] = int(steps[-1][1]) if steps else 0
    w = re.search(r"^# wall: ([\d.]+) s", text, re.M)
    r["wall"] = float(w.group(1)) if w else None
    r["load"] = re.search(r"^# load before: (\S+)", text, re.M).group(1)
    la = re.search(r"^# load after: (\S+)", text, re.M)
    r["load_after"] = la.group(1) if la else "?"
    tps = re.search(r"^done: .*?\| ([\d]+) tok/s", text, re.M)
    r["tok_s"] = int(tps.group(1)) if tps else None
    ms = [int(m) for m in re.findall(r"^step .*?\| +(\d+) ms \|", text, re.M)]
    r["min_ms"] = min(ms) if ms else None
    return r


def fmt_time(s):
    return f"{int(s // 60)}:{int(s % 60):02d}" if s is not None else "-"


def main():
    tags = sys.argv[1:]
    paths = [os.path.join(HERE, "logs", t + ".log") for t in tags] if tags else sorted(
        glob.glob(os.path.join(HERE, "logs", "*.log")), key=os.path.getmtime)
    runs = [r for r in map(parse, paths) if r]
    print("| run | keys changed | steps x tokens | tokens | val bpb @100 | @200 | @300 | final | wall (load before/after) | tok/s | fastest step |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        at = dict(r["evals"])
        tok_step = r["batch"] * r["seq_len"]
        final = r["evals"][-1] if r["evals"] else (0, float("nan"))
        done = "" if r["done_steps"] == r["steps"] else f" (stopped at {r['done_steps']})"
        cells = [f"{at[s]:.3f}" if s in at else "-" for s in (100, 200, 300)]
        print(f"| {r['tag']} | {r['keys']} | {r['steps']} x {tok_step}{done} | {r['done_steps'] * tok_step / 1e6:.2f}M | "
              + " | ".join(cells) + f" | {final[1]:.3f} (step {final[0]}) | {fmt_time(r['wall'])} ({r['load']}/{r['load_after']}) | "
              f"{r['tok_s'] or '-'} | {r['min_ms'] or '-'} ms |")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no matplotlib: curves.png not written)", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in runs:
        tok_step = r["batch"] * r["seq_len"]
        xs = [s * tok_step / 1e6 for s, _ in r["evals"]]
        ax.plot(xs, [b for _, b in r["evals"]], marker=".", label=f"{r['tag']}")
    ax.axhline(2.7, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("validation bits per byte (32 windows)")
    ax.set_ylim(2.0, 5.0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "curves.png"), dpi=110)


if __name__ == "__main__":
    main()
