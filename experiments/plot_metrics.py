#!/usr/bin/env python3
"""Plot training curves from one or more reformer metrics files.

    python3 experiments/plot_metrics.py runs/default                 # -> runs/default/metrics.png
    python3 experiments/plot_metrics.py runs/a runs/b -o compare.png  # several runs, one figure

Each argument is a run directory (its metrics.h5) or a metrics.h5 file. The
figure has three panels against the step: loss (nats), bits per byte (with
the periodic evaluations of /eval as markers: validation o, test x), and the
learning rate. A file that is still being written is read as an HDF5 SWMR
reader, so this works while training runs. Needs h5py and matplotlib (Debian:
python3-h5py python3-matplotlib).
"""
import argparse
import os
import sys

import h5py
import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402


def metrics_path(arg):
    return os.path.join(arg, "metrics.h5") if os.path.isdir(arg) else arg


def open_metrics(path):
    # swmr=True reads a file whose writer is running (or was killed); a plain
    # open is the fallback for files in an older format.
    try:
        return h5py.File(path, "r", swmr=True)
    except OSError:
        return h5py.File(path, "r")


def read_columns(path, names):
    with open_metrics(path) as f:
        return {name: f[name][()] for name in names}


def read_evals(path):
    """Evaluation rows by split code (1 validation, 2 test): (steps, bpb)."""
    with open_metrics(path) as f:
        if "eval" not in f:  # format 1: no evaluations
            return {}
        step, split, bpb = (f["eval"][c][()] for c in ("step", "split", "bits_per_byte"))
    out = {}
    for s, code, b in zip(step, split, bpb):
        out.setdefault(int(code), ([], []))
        out[int(code)][0].append(s)
        out[int(code)][1].append(b)
    return out


def smooth(values, window):
    if window <= 1 or len(values) < window:
        return values
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run directories or metrics.h5 files")
    ap.add_argument("-o", "--output", help="PNG to write (default: metrics.png next to the first file)")
    ap.add_argument("--smooth", type=int, default=1, help="moving-average window in steps (default 1: raw)")
    args = ap.parse_args()

    paths = [metrics_path(r) for r in args.runs]
    output = args.output or os.path.join(os.path.dirname(os.path.abspath(paths[0])), "metrics.png")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = [("loss", "loss (nats)"), ("bits_per_byte", "bits per byte"), ("lr", "learning rate")]
    for path in paths:
        try:
            cols = read_columns(path, ["step"] + [p[0] for p in panels])
        except (OSError, KeyError) as e:
            sys.exit(f"plot_metrics: error: {path}: {e}")
        label = os.path.basename(os.path.dirname(os.path.abspath(path))) or path
        for ax, (name, _) in zip(axes, panels):
            y = cols[name] if name == "lr" else smooth(list(cols[name]), args.smooth)
            ax.plot(cols["step"], y, label=f"{label} ({len(cols['step'])} steps)", linewidth=1.2)
        for code, (steps, bpb) in sorted(read_evals(path).items()):
            name = {1: "validation", 2: "test"}.get(code, "train")
            axes[1].plot(steps, bpb, "o" if code == 1 else "x", label=f"{label} {name}", markersize=5)
    for ax, (_, title) in zip(axes, panels):
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    print(f"plot_metrics: wrote {output}")


if __name__ == "__main__":
    main()
