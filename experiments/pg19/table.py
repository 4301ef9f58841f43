#!/usr/bin/env python3
"""experiments/pg19/results.md's tables, from the logs of run.sh.

    python3 experiments/pg19/table.py [encode|compare|whole ...]
"""
import os
import re
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
LOGS = os.path.join(HERE, "logs")
PG19_TRAIN_BYTES = 11e9  # PG-19's train split as the issue gives it (11 GB)


def read(name):
    path = os.path.join(LOGS, name)
    return open(path).read() if os.path.exists(path) else None


def encode_table():
    log = read("encode.log")
    if not log:
        return
    print("| model | source | MB | tokens | bytes/token | seconds | MB/s | PG-19 train split at this rate (extrapolated) |")
    print("|---|---|---|---|---|---|---|---|")
    head = None
    for line in log.splitlines():
        if line.startswith("== "):
            head = line[3:].split(" ", 1)
            continue
        m = re.match(r"tokenizer: encoded ([0-9.]+) MB into (\d+) tokens \(([0-9.]+) bytes/token\) in ([0-9.]+) s "
                     r"\(([0-9.]+) MB/s\)", line)
        if m and head:
            mb, tokens, bpt, sec, rate = m.groups()
            # Rate from the seconds and bytes (the printed MB/s is rounded).
            r = float(mb) / float(sec)
            hours = PG19_TRAIN_BYTES / 1e6 / r / 3600
            src = "Shakespeare directory (77 documents)" if "shakespeare_pg19" in head[1] else "one 47.7 MB file (the directory 5 times)"
            print(f"| {head[0]} | {src} | {mb} | {tokens} | {bpt} | {sec} | {r:.2f} | {hours:.2f} h on 2 threads |")
    print()


def eval_fields(line):
    return {"bpb": float(re.search(r"([0-9.]+) bits per byte", line).group(1)),
            "ppl": float(re.search(r"([0-9.]+) perplexity per word", line).group(1)),
            "words": int(float(re.search(r"\| ([0-9.]+) words", line).group(1))),
            "bytes": int(float(re.search(r"\| ([0-9.]+) bytes", line).group(1))),
            "targets": int(re.search(r"\| (\d+) targets", line).group(1)),
            "loss": float(re.search(r"loss ([0-9.]+) nats", line).group(1))}


def compare_table():
    rows = []
    for v in ("bytes", "320", "8192"):
        log = read(f"compare_{v}.log")
        if not log:
            continue
        head = re.search(r"== \S+ (\d+) steps \(([0-9.]+) bytes/token\)", log)
        params = re.search(r"reformer: (\d+) params", log)
        if not head or not params:  # not run (yet)
            continue
        params = params.group(1)
        tps = [float(x) for x in re.findall(r"\|\s+(\d+) tok/s \|", log)]
        t = re.search(r"time: ([0-9.]+) s, peak RSS (\d+) KiB", log)
        ev = [l for l in log.splitlines() if l.startswith("eval: validation")]
        final = re.search(r"done: .*", log)
        e = eval_fields(ev[-1]) if ev else None
        steps, bpt = int(head.group(1)), float(head.group(2))
        rows.append((v, int(params), steps, bpt, steps * 4 * 1024 * bpt, statistics.median(tps) if tps else 0,
                     float(t.group(1)) if t else 0, int(t.group(2)) / 1024 if t else 0, e))
    if not rows:
        return
    print("| vocabulary | params | steps | train bytes/token | training bytes seen | median tok/s | wall s (train) "
          "| peak RSS MiB | validation tokens | validation bits per byte | validation perplexity per word |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for v, params, steps, bpt, seen, tps, wall, rss, e in rows:
        name = "bytes (256)" if v == "bytes" else f"SentencePiece {v}"
        ev = f"{e['targets']} | {e['bpb']:.4f} | {e['ppl']:.2f}" if e else "- | - | -"
        print(f"| {name} | {params:,} | {steps} | {bpt:.3f} | {seen:,.0f} | {tps:.0f} | {wall:.0f} | {rss:.0f} | {ev} |")
    print()
    if rows[0][8]:
        w, b = rows[0][8]["words"], rows[0][8]["bytes"]
        print(f"Validation text: {b:,} scored bytes, {w:,} words (the same text for every row; the word count "
              "differs only by the first word of each book, which is never scored).")
        print()


def whole_peak_rss():
    path = os.path.join(HERE, "..", "..", "build", "pg19", "whole", "metrics.h5")
    try:
        import h5py
        with h5py.File(path, "r") as f:
            return float(f["peak_rss_mb"][()].max())
    except (ImportError, OSError, KeyError):
        return 0.0


def whole_table():
    log = read("whole.log")
    if not log:
        return
    steps = [(int(s), float(l), float(t)) for s, l, t in
             re.findall(r"step\s+(\d+)/\d+ \| loss ([0-9.]+) \| .*?\|\s+(\d+) tok/s", log)]
    evals = re.findall(r"eval: step (\d+)/\d+ \| validation \| ([0-9.]+) bpb \| ([0-9.]+) ppl/word \| loss ([0-9.]+)", log)
    t = re.search(r"time: ([0-9.]+) s, peak RSS (\d+) KiB", log)
    info = re.search(r"reformer: .*", log)
    print(f"Model: `{info.group(0)}`" if info else "")
    print()
    if steps:
        # A run stopped by its time limit has no /usr/bin/time line (timeout's
        # TERM reaches time itself): the steps' own times and the peak RSS the
        # run recorded in its metrics.h5 stand in.
        wall = float(t.group(1)) if t else sum(int(ms) for ms in re.findall(r"\|\s+(\d+) ms \|", log)) / 1e3
        rss = int(t.group(2)) / 1024 if t else whole_peak_rss()
        print(f"{len(steps)} steps in {wall:.0f} s ({'wall' if t else 'sum of the step times, evaluations excluded'}); "
              f"median {statistics.median(x[2] for x in steps):.0f} "
              f"tokens/s (131,072 positions a step, padding included); peak RSS "
              f"{rss:.1f} MiB{'' if t else ' (the largest of metrics.h5 peak_rss_mb)'}.")
        print()
        print("| step | training loss (nats per real token) |")
        print("|---|---|")
        for s, l, _ in steps:
            if s == 1 or s % 5 == 0 or s == steps[-1][0]:
                print(f"| {s} | {l:.4f} |")
        print()
    if evals:
        print("| step | validation bits per byte | perplexity per word | loss (nats per token) |")
        print("|---|---|---|---|")
        for s, bpb, ppl, loss in evals:
            print(f"| {s} | {bpb} | {ppl} | {loss} |")
        print()


if __name__ == "__main__":
    import sys
    parts = {"encode": encode_table, "compare": compare_table, "whole": whole_table}
    for name in sys.argv[1:] or list(parts):
        parts[name]()
