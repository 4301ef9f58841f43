#!/usr/bin/env python3
"""The measurement table of cuda/device_check.sh: each `reformer bench` run
next to the roofline (experiments/roofline/roofline.tsv) and the measured
ceilings (cuda_peak): achieved TFLOP/s of the step's matmuls and attention,
and their fraction of the measured peak of the precision's matrix rate.

  achieved(cat) = roofline FLOPs(cat) / (fwdbwd_s * share(cat))

where fwdbwd_s is the forward+backward time of one step and share(cat) the
fraction of it spent in the category (bench's profiled shares). The step
time also holds the AdamW update. Targets (issue 14, bf16): matmul >= 40%,
attention >= 30% of the bf16 peak.

usage: device_table.py RESULTS.jsonl ROOFLINE.tsv
"""
import json
import sys

PEAK_KEY = {"fp32": "fp32_tflops", "tf32": "tf32_tflops", "bf16": "bf16_tflops"}


def read_roofline(path):
    """{model: {category: (gflop, gbyte)}} from the table's category rows."""
    cats = {}
    with open(path) as f:
        header = None
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            cols = line.rstrip("\n").split("\t")
            if header is None:
                header = cols
                continue
            row = dict(zip(header, cols))
            if row["op"] != "*":
                continue
            cats.setdefault(row["model"], {})[row["category"]] = (float(row["gflop"]), float(row["gbyte"]))
    return cats


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    runs, others, peak = [], [], None
    with open(sys.argv[1]) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            d = json.loads(line)
            if "fp32_tflops" in d:
                peak = d
            elif "impl" in d:
                others.append(d)
            elif "tokens_per_s" in d:
                runs.append(d)
    roof = read_roofline(sys.argv[2])
    if peak:
        print("peak (measured, cuda_peak %dx%dx%d): fp32 %.1f, tf32 %.1f, bf16 %.1f TFLOP/s; copy %.0f GB/s"
              % (peak["n"], peak["n"], peak["n"], peak["fp32_tflops"], peak["tf32_tflops"], peak["bf16_tflops"],
                 peak["copy_gbps"]))
    else:
        print("peak: not measured (fractions of peak left out)")
    print("%-11s %-5s %-4s %9s %8s %9s %9s %7s %9s %7s" % ("model", "prec", "attn", "tokens/s", "step_ms", "dev_MiB",
                                                          "mm_TF/s", "mm_pk", "attn_TF/s", "attn_pk"))
    for r in runs:
        model, prec = r.get("model", "?"), r.get("precision", "?")
        cats = roof.get(model, {})
        fb = r.get("fwdbwd_ms", r["step_ms"]) / 1e3
        pk = peak.get(PEAK_KEY.get(prec, ""), 0) if peak else 0
        cols = []
        for cat, share in (("matmul", r.get("share_matmul", 0)), ("attention", r.get("share_attention", 0))):
            if cat in cats and share > 0:
                tf = cats[cat][0] / (fb * share) / 1e3
                cols += ["%.1f" % tf, "%.0f%%" % (100 * tf / pk) if pk else "-"]
            else:
                cols += ["-", "-"]
        print("%-11s %-5s %-4s %9.0f %8.1f %9s %9s %7s %9s %7s" % (model, prec, r.get("attn_impl", "?")[:4],
                                                                  r["tokens_per_s"], r["step_ms"],
                                                                  r.get("device_used_mb", "-"), *cols))
    if not runs:
        print("(no bench runs)")
    for o in others:  # reformer-pytorch, side by side
        print("%-11s %-5s %-4s %9.0f %8.1f %9s  (%s, torch %s)" % (o.get("model", "?"), o["precision"], "rpt",
                                                               o["tokens_per_s"], o["step_ms"],
                                                               o.get("device_peak_mb", "-"), o["impl"], o["torch"]))


if __name__ == "__main__":
    main()
