#!/usr/bin/env python3
"""Read reformer's HDF5 files with h5py, as a user would (tests/test_cli.c).

    h5py_read.py metrics FILE MIN_ROWS     SWMR read: at least MIN_ROWS rows,
                                           steps 1..n, every column as long
    h5py_read.py checkpoint FILE STEP      attributes, /params, /optim, /state

Exits 0 when everything checks, 1 with a message otherwise, 77 when h5py is
not installed.
"""
import sys

try:
    import h5py
except ImportError:
    print("h5py_read: h5py is not installed", file=sys.stderr)
    sys.exit(77)


def fail(msg):
    print(f"h5py_read: {msg}", file=sys.stderr)
    sys.exit(1)


def metrics(path, min_rows):
    with h5py.File(path, "r", swmr=True) as f:
        step = f["step"][()]
        n = len(step)
        if n < min_rows:
            fail(f"{path}: {n} rows, expected at least {min_rows}")
        if list(step) != list(range(1, n + 1)):
            fail(f"{path}: steps are not 1..{n}")
        for name in ("loss", "bits_per_byte", "lr", "grad_norm", "tokens_per_s", "step_ms", "peak_rss_mb"):
            # A reader may see a column one row ahead of another mid-append;
            # never behind what /step shows.
            if len(f[name]) < n:
                fail(f"{path}: column {name} has {len(f[name])} rows, /step has {n}")
        if "eval" not in f or "bits_per_byte" not in f["eval"]:
            fail(f"{path}: no /eval table")
        print(f"h5py_read: {path}: {n} rows, loss {f['loss'][n - 1]:.4f}")


def checkpoint(path, step):
    with h5py.File(path, "r") as f:
        if int(f.attrs["step"]) != step:
            fail(f"{path}: step attribute {f.attrs['step']}, expected {step}")
        if int(f.attrs["format_version"]) < 1:
            fail(f"{path}: bad format_version")
        emb = f["params/tok_emb"]
        vocab, d = int(f.attrs["vocab_size"].decode()), int(f.attrs["d_model"].decode())
        if emb.shape != (vocab, d):
            fail(f"{path}: /params/tok_emb has shape {emb.shape}, expected {(vocab, d)}")
        if f["optim/m/tok_emb"].shape != emb.shape or f["optim/v/tok_emb"].shape != emb.shape:
            fail(f"{path}: AdamW moments do not match /params/tok_emb")
        if int(f["state/step"][()]) != step:
            fail(f"{path}: /state/step is not {step}")
        n_params = sum(x.size for x in _datasets(f["params"]))
        print(f"h5py_read: {path}: step {step}, {n_params} parameters")


def _datasets(group):
    for item in group.values():
        if isinstance(item, h5py.Dataset):
            yield item
        else:
            yield from _datasets(item)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("metrics", "checkpoint"):
        fail(__doc__)
    (metrics if sys.argv[1] == "metrics" else checkpoint)(sys.argv[2], int(sys.argv[3]))
