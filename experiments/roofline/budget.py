#!/usr/bin/env python3
"""The time budget of cuda/device_check.sh on an H100: the expected seconds
of every part, from this directory's roofline (the FLOPs and bytes of one
training step, roofline.tsv) and the stated rates below, against the part's
limit (`cuda/device_check.sh --limits`). Prints a markdown table.

    experiments/roofline/budget.py [--build-s SECONDS] > experiments/roofline/device_check_budget.md

--build-s: the build's expected seconds (measured elsewhere: see the .md).

Nothing here has run on a GPU: the rates are assumptions, stated with their
source, and every expected time is an estimate. The figure that matters is
the margin of each limit over its estimate (limit / expected), chosen so
that a part 2x slower than expected still ends inside its limit, and the
command's margin over the budget.
"""
import argparse
import csv
import subprocess
import sys
from collections import defaultdict

# H100 SXM (80 GB HBM3) peaks, dense, from NVIDIA's data sheet; the device
# tool's notes (/work/.library/device/KINDS.md) saw a 8192^3 bf16 GEMM at
# 798 TFLOP/s and a device-to-device copy at ~3.0 TB/s.
PEAK = {"bf16": 790e12, "tf32": 395e12, "fp32": 67e12}
HBM = 3.0e12  # bytes/s, the copy seen on the lent H100
# Achieved fractions assumed for this backend's step (the target for
# bf16 is 40% of peak on the step's matmul FLOPs; tf32 the same fraction;
# fp32 SGEMM on CUDA cores reaches ~70% of its peak on large shapes).
MATMUL_EFF = {"bf16": 0.40, "tf32": 0.40, "fp32": 0.70}
# Attention: batched GEMMs of 64x128 blocks (tensor-core path) reach a small
# fraction of peak; the LSH hash is an fp32 SGEMM on CUDA cores (no TF32).
ATTN_EFF = {"bf16": 0.10, "tf32": 0.10, "fp32": 0.30}
ATTN_REFERENCE_SLOWDOWN = 5.0  # the fused fp32 reference kernels against the tensor-core path (assumed)
HASH_RATE = 0.70 * PEAK["fp32"]
OTHER_BW = 0.5 * HBM  # elementwise ops: half the copy bandwidth
LAUNCH_S = 5e-6       # per kernel launch, host side (a step makes ~2 per op call)
SYNC_S = 10e-6        # per synchronisation of the profiled step (2 per matmul/attention call)
INIT_S = 2.0          # CUDA context, cuBLAS handle, parameter init and upload, cudaMalloc+memset of the plan
# device_check's bench: --warmup 1 --steps 2 (long_1m: --steps 1), then 1 profiled forward-backward.
STEPS = {"enwik8_64k": 1 + 2, "long_1m": 1 + 1}


def roofline(path):
    t = defaultdict(lambda: defaultdict(float))
    calls = defaultdict(lambda: defaultdict(int))
    for r in csv.DictReader(open(path), delimiter="\t"):
        m, cat, op = r["model"], r["category"], r["op"]
        key = "hash" if op == "lsh_hash" else cat
        t[m][key + "_gflop"] += float(r["gflop"])
        t[m][key + "_gbyte"] += float(r["gbyte"])
        calls[m][cat] += int(r["calls"])
    return t, calls


def step_seconds(t, calls, prec, reference=False):
    matmul = t["matmul_gflop"] * 1e9 / (MATMUL_EFF[prec] * PEAK[prec])
    attn_rate = ATTN_EFF[prec] * PEAK[prec]
    attn = t["attention_gflop"] * 1e9 / attn_rate * (ATTN_REFERENCE_SLOWDOWN if reference else 1)
    hashing = t["hash_gflop"] * 1e9 / HASH_RATE
    other = (t["other_gbyte"] + t["optimizer_gbyte"]) * 1e9 / OTHER_BW
    launches = 2 * sum(calls.values()) * LAUNCH_S
    return matmul + attn + hashing + other + launches


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-s", type=float, default=60.0)
    args = ap.parse_args()
    t, calls = roofline("experiments/roofline/roofline.tsv")
    out = subprocess.run(["cuda/device_check.sh", "--limits"], capture_output=True, text=True, check=True).stdout
    limits, budget = {}, None
    for line in out.split("\n"):
        if not line.strip():
            continue
        name, v = line.split()
        if name == "budget":
            budget = int(v)
        else:
            limits[name] = int(v)

    def bench(model, prec, reference=False):
        s = step_seconds(t[model], calls[model], prec, reference)
        prof = 2 * (calls[model]["matmul"] + calls[model]["attention"]) * SYNC_S
        n = STEPS[model]
        return INIT_S + n * s + s + prof, f"{n}+1 steps of {s:.2f} s ({prec}{', reference' if reference else ''})"

    expected = {
        "deps": (3.0, "dpkg -x of 39 packages (~26 MB): 7 s and over 10 s in the rehearsals on this loaded 2-core machine"),
        "build": (args.build_s, "--build-s: `make device-check-rehearsal` built everything (sm_80 and sm_90, "
                                "backend_cuda.cu one translation unit) in 136 s on this shared 2-core machine; "
                                "the device builds one architecture on 16 cores"),
        "gpu": (2.0, "CUDA context"),
        "test_cuda": (45.0, "guess: CPU references of every case (the 69632-position and 66000-pair shapes, "
                            "10 whole-model runs of 1 and 20 steps) on 16 cores dominate; not measured"),
        "bench_enwik8_64k_bf16_fast": bench("enwik8_64k", "bf16"),
        "bench_long_1m_bf16_fast": bench("long_1m", "bf16"),
        "peak": (4.0, "3 GEMMs of 1.1 TFLOP x (warm-up + reps) and a copy"),
        "memcheck": (30.0, "guess: sanitizer start with cuBLAS/CUB modules ~15 s, --quick's kernels 100x slower"),
        "bench_enwik8_64k_fp32_fast": bench("enwik8_64k", "fp32"),
        "bench_enwik8_64k_tf32_fast": bench("enwik8_64k", "tf32"),
        "pytorch": (25.0, "guess: import torch ~8 s, model build ~3 s, 1+3 steps of ~1 s at 64K, 8 hashes"),
        "racecheck": (35.0, "guess: as memcheck, racecheck's shared-memory tracking slower"),
        "bench_enwik8_64k_bf16_reference": bench("enwik8_64k", "bf16", reference=True),
    }
    print("# device_check.sh on an H100: expected seconds per part\n")
    print("Command: `experiments/roofline/budget.py --build-s %.0f > experiments/roofline/device_check_budget.md`"
          % args.build_s)
    print("(from roofline.tsv and `cuda/device_check.sh --limits`). **Estimates, not measurements**: no GPU has run")
    print("this project. Rates assumed (budget.py): GEMMs at %s of the H100's dense peaks (bf16 790, tf32 395,"
          % ", ".join(f"{k} {100 * v:.0f}%" for k, v in MATMUL_EFF.items()))
    print("fp32 67 TFLOP/s), attention GEMMs at %s, the LSH hash (fp32 SGEMM) at %.0f TFLOP/s, elementwise ops at"
          % (", ".join(f"{k} {100 * v:.0f}%" for k, v in ATTN_EFF.items()), HASH_RATE / 1e12))
    print("%.1f TB/s, %.0f us per kernel launch, %.0f us per synchronisation of the profiled step, %.0f s of start-up"
          % (OTHER_BW / 1e12, LAUNCH_S * 1e6, SYNC_S * 1e6, INIT_S))
    print("per bench process; the reference attention kernels %.0fx slower than the tensor-core path.\n"
          % ATTN_REFERENCE_SLOWDOWN)
    print("| part | limit s | expected s | limit / expected | how |")
    print("|---|---|---|---|---|")
    tot_l = tot_e = 0.0
    for name, lim in limits.items():
        e, how = expected.get(name, (None, "not estimated"))
        tot_l += lim
        if e is None:
            print(f"| {name} | {lim} | ? | ? | {how} |")
            continue
        tot_e += e
        print(f"| {name} | {lim} | {e:.0f} | {lim / e:.1f} | {how} |")
    print(f"| **total** | **{tot_l:.0f}** | **{tot_e:.0f}** | {tot_l / tot_e:.1f} | budget {budget} s |")
    tight = [n for n, lim in limits.items() if n in expected and lim < 1.5 * expected[n][0]]
    print(f"\nThe limits add up to {tot_l:.0f} s against the budget of {budget} s (BUDGET_S); the device call's")
    print(f"timeout_s 540 leaves {540 - budget} s for the table and the archive after the budget. Expected in all:")
    print(f"{tot_e:.0f} s, {budget - tot_e:.0f} s ({100 * (budget - tot_e) / budget:.0f}%) inside the budget. Limits under")
    print(f"1.5x their estimate: {', '.join(tight) if tight else 'none'}. With a machine start of 1-2 minutes, one")
    print(f"run takes about {(tot_e + 90) / 60:.1f} minutes of the 15-minute lease expected, at most {(540 + 120) / 60:.0f};")
    print("what is left after a full run allows a rerun of the failed parts (PARTS=...) on the warm machine.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
