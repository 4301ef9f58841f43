#!/usr/bin/env python3
"""`make test-hf`: this project against Hugging Face transformers' Reformer.

Runs with the interpreter of .venv-hf (`make setup-hf`). Every test drives the
real commands (`reformer train`, `export-hf`, `import-hf`, `eval`, `sample`)
and compares with transformers' ReformerModelWithLMHead:

- export: per-position log-probabilities of the targets and the gradient of
  the mean loss with respect to every parameter, from build/tests/hf_dump
  (float32 core) and hf_dump_f64 (float64 core), against HF in float32 and
  float64. Hashing layers get this project's bucket ids: HF's random hashing
  (LSHSelfAttention._hash_vectors) is replaced per layer by the ids hf_dump
  reports, offset by round as HF's own are.
- import: a randomly initialised HF model, imported, gives HF's loss under
  `reformer eval`; export(import(x)) is byte-identical to x;
  import(export(ckpt)) holds ckpt's parameters bit for bit; the imported
  checkpoint fine-tunes with `train --resume` and samples.
- every refusal: exit status 2, exactly one line `reformer: error: ...` on
  stderr, nothing written.

Ends with one line `N passed, M failed`; exits 1 if anything failed.
"""
import contextlib
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import types

# One matmul kernel for every run here. float32 gradients of the ReLU models
# (published_enwik8_narrow) pass through ReLU branches: a pre-activation
# within float32 rounding of 0 (a handful of the ~12M in that test's batch)
# takes the other branch than in float64, and one such flip moves a whole
# parameter's gradient by ~1e-3 of its largest entry, on either side. Which
# ones flip depends on the rounding of every matmul, so that check is
# reproducible only with one kernel: OpenBLAS's Haswell (AVX2) kernels, for
# this project's runs and transformers' alike (set before numpy and torch
# load OpenBLAS). Measured on an AVX-512 machine (2026-12-07) with OpenBLAS's
# own choice there (SkylakeX kernels): layers.9.ln2.g off by 2.0e-3 (HF's own
# float32 error 6.6e-5), the same for main before and after that day's
# changes; pinned, it passes; with gelu in place of relu, unpinned, the worst
# tensor is 6.5e-6 (HF's 2.5e-5). An earlier session's failure of the same
# test (layers.0.ff.w1, 3.9e-3, with an 8-lane exp) was most likely a flip too.
os.environ.setdefault("OPENBLAS_CORETYPE", "Haswell")

import numpy as np  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "launch", "hf"))
import reformer_hf  # noqa: E402  (the mapping under test)

import h5py  # noqa: E402
import torch  # noqa: E402
from transformers import ReformerConfig, ReformerModelWithLMHead  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.set_verbosity_error()
torch.set_num_threads(2)

BIN = os.path.join(ROOT, "build", "reformer")
DUMP = {"f32": os.path.join(ROOT, "build", "tests", "hf_dump"),
        "f64": os.path.join(ROOT, "build", "tests", "hf_dump_f64")}
TEXT = os.path.join(ROOT, "data", "tinyshakespeare.txt")
WORK = tempfile.mkdtemp(prefix="reformer-test-hf-")

# Tolerances, with why:
# - float64: both sides compute the same maths in double precision with
#   different summation orders (OpenBLAS/loops vs torch); after a few layers
#   and a softmax, differences stay within ~1e-13 of values of order 1.
#   1e-9 absolute on log-probabilities and 1e-8 on each tensor's gradient
#   relative to its largest entry leave margin and still catch any wrong
#   mask, transpose or order (those give differences of order 1e-2..1).
# - float32: "equal within float32 rounding" is checked against the exact
#   answer (HF in float64): this project's float32 error may be at most
#   F32_FACTOR times transformers' own float32 error on the same input (or
#   a floor of ~100 float32 ulps of the values, for inputs where HF happens
#   to round very well). A plain absolute bound would not do: where every
#   hash round of a query sees only the query itself, both sides combine
#   rounds whose logsumexps are ~-1e5 (the self-mask constant), where the
#   float32 spacing is 2^-7, so that position's attention output is off by
#   up to ~0.4% on either side (measured: 1.6e-4 in log-probabilities with
#   4 rounds, against ~1e-6 elsewhere).
TOL_F64 = (1e-9, 1e-8)
F32_FACTOR = 4.0
F32_FLOOR = (2e-5, 1e-4)  # log-probabilities (absolute), gradients (relative to the tensor's max)

MEASURED = []  # (test, what, value, tolerance) for the closing table


def run(args, env=None, check=True):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=e)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


# ------------------------------------------------------------- helpers

BASE = dict(d_model=32, n_heads=2, d_ff=64, n_layers=4, seq_len=64, batch=2, steps=10, warmup=2, lr=3e-3,
            eval_every=0, ckpt_every=0)


def train(name, **keys):
    """A trained checkpoint: `reformer train` for a few steps."""
    out = os.path.join(WORK, name, "run")
    cfg = dict(BASE)
    cfg.update(keys)
    args = [BIN, "train", "--set", f"out_dir={out}"] + [f"{k}={v}" for k, v in cfg.items()]
    run(args)
    return os.path.join(out, f"ckpt_{cfg['steps']:08d}.h5")


def export(ckpt, out):
    run([BIN, "export-hf", "--ckpt", ckpt, "--out", out])
    return out


def read_dump(path):
    out = {}
    with open(path, "rb") as f:
        while True:
            head = f.read(64 + 4 + 16)
            if not head:
                return out
            name = head[:64].split(b"\0")[0].decode()
            ndim = struct.unpack("<i", head[64:68])[0]
            shape = struct.unpack("<4i", head[68:84])[:ndim]
            n = int(np.prod(shape)) if ndim else 1
            out[name] = np.frombuffer(f.read(8 * n), dtype="<f8").reshape(shape)


def project_pass(ckpt, tokens, targets, step, precision):
    B, L = tokens.shape
    inp = os.path.join(WORK, "dump_in.bin")
    with open(inp, "wb") as f:
        f.write(struct.pack("<iiI", B, L, step))
        f.write(tokens.astype("<i4").tobytes())
        f.write(targets.astype("<i4").tobytes())
    out = os.path.join(WORK, "dump_out.bin")
    run([DUMP[precision], ckpt, inp, out])
    return read_dump(out)


def window_batch(B, L, seed):
    data = np.frombuffer(open(TEXT, "rb").read(), dtype=np.uint8)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(data) - L - 1, size=B)
    tokens = np.stack([data[s:s + L] for s in starts]).astype(np.int64)
    targets = np.stack([data[s + 1:s + L + 1] for s in starts]).astype(np.int64)
    targets[0, -3:] = -1  # unscored targets are left out of the mean on both sides
    return tokens, targets


def patch_hashing(model, dump, n_buckets, force="buckets"):
    """Give each hashing layer of HF the project's hashing (HF draws random
    rotations on every forward). force="buckets": HF gets the project's bucket
    ids. force="rotations": HF hashes itself (its own projection, per-factor
    argmax and numbering) with the project's rotations in place of its
    torch.randn draw, and its bucket ids must equal the project's exactly (in
    float64 a near-tie of two projections is ~1e-16 apart: none occurs)."""
    patched = 0
    if isinstance(n_buckets, (list, tuple)):
        n_buckets = int(np.prod(n_buckets))
    for l, layer in enumerate(model.reformer.encoder.layers):
        key = f"buckets.{l}"
        if key not in dump:
            continue
        b = torch.from_numpy(dump[key].astype(np.int64))  # [B, H, R, L]
        R = b.shape[2]
        offset = (torch.arange(R) * n_buckets).view(1, 1, R, 1)
        flat = (b + offset).flatten(start_dim=2)
        attn = layer.attention.self_attention

        def fixed(self, vectors, num_hashes, attention_mask, increase_num_buckets=False, _flat=flat):
            assert num_hashes == _flat.shape[2] // vectors.shape[2]
            return _flat.to(vectors.device)

        def own(self, vectors, num_hashes, attention_mask, increase_num_buckets=False, _flat=flat,
                _rot=dump[f"rotations.{l}"], _orig=type(attn)._hash_vectors):
            randn = torch.randn

            def project_rotations(shape, device=None, dtype=None):
                assert tuple(shape) == _rot.shape, (shape, _rot.shape)
                return torch.from_numpy(_rot).to(device=device, dtype=dtype)
            torch.randn = project_rotations
            try:
                got = _orig(self, vectors, num_hashes, attention_mask, increase_num_buckets)
            finally:
                torch.randn = randn
            assert torch.equal(got.cpu(), _flat), "transformers' buckets differ from the project's"
            return got

        attn._hash_vectors = types.MethodType(fixed if force == "buckets" else own, attn)
        patched += 1
    return patched


def hf_pass(hf_dir, tokens, targets, dump, precision, force="buckets"):
    """HF's per-position log-probabilities of the targets, mean loss and
    gradients (keyed by HF parameter name)."""
    dtype = torch.float64 if precision == "f64" else torch.float32
    model = ReformerModelWithLMHead.from_pretrained(hf_dir).to(dtype)
    model.train()  # HF's reversible backward runs in training mode only; every dropout is 0 here
    for name in ("hidden_dropout_prob", "lsh_attention_probs_dropout_prob", "local_attention_probs_dropout_prob"):
        assert getattr(model.config, name) == 0, name
    patched = patch_hashing(model, dump, model.config.num_buckets, force)
    ids = torch.from_numpy(tokens)
    logits = model(input_ids=ids).logits
    logp = torch.log_softmax(logits, dim=-1)
    tg = torch.from_numpy(np.maximum(targets, 0))
    lp = torch.gather(logp, -1, tg.unsqueeze(-1)).squeeze(-1)
    mask = torch.from_numpy(targets >= 0)
    loss = -(lp * mask).sum() / mask.sum()
    model.zero_grad()
    loss.backward()
    grads = {k: p.grad.detach().double().numpy() for k, p in model.named_parameters() if p.grad is not None}
    return lp.detach().double().numpy() * mask.numpy(), float(loss), grads, patched


def _grad_errors(cfg, grads_proj, grads_hf, ref):
    """Per tensor: max |g - ref| / max |ref|, with g from this project
    (dump, project names) or HF (HF keys); ref = HF float64's gradients."""
    out = {}
    for name, key, how in reformer_hf.tensor_map(cfg):
        r = reformer_hf.from_hf(ref[key], how)
        g = grads_proj["grad." + name] if grads_proj is not None else reformer_hf.from_hf(grads_hf[key], how)
        assert g.shape == r.shape, (name, g.shape, r.shape)
        out[name] = float(np.max(np.abs(g - r))) / max(float(np.max(np.abs(r))), 1e-30)
    return out


def _check_f64(test, cfg, dump, lp_hf, g_hf, what=""):
    """float64: this project against HF directly (TOL_F64)."""
    d64 = float(np.max(np.abs(-dump["losses"] - lp_hf)))
    MEASURED.append((test, f"f64{what} log-prob max |ours - hf|", d64, TOL_F64[0]))
    assert d64 <= TOL_F64[0], f"float64{what} log-probabilities differ by {d64:.3g} > {TOL_F64[0]}"
    e64 = _grad_errors(cfg, dump, None, g_hf)
    worst = max(e64, key=e64.get)
    MEASURED.append((test, f"f64{what} grad max |ours - hf|/max|hf| ({worst})", e64[worst], TOL_F64[1]))
    assert e64[worst] <= TOL_F64[1], f"float64{what} gradient of {worst} differs by {e64[worst]:.3g} > {TOL_F64[1]}"


def compare_export(test, ckpt, hf_dir, expect_hashing, B=2, seed=0, step=1, own_hash=False):
    """float64: this project against HF directly (TOL_F64). float32: both
    against HF in float64 (the exact answer to 1e-12): this project's error
    may be at most F32_FACTOR times HF's own float32 error, or the floor.
    own_hash: also float64 with HF hashing by itself from the project's
    rotations (patch_hashing force="rotations"), not given the buckets."""
    cfg = read_attrs(ckpt)
    tokens, targets = window_batch(B, int(cfg["seq_len"]), seed)
    lp, grads, dumps = {}, {}, {}
    for precision in ("f64", "f32"):
        dump = project_pass(ckpt, tokens, targets, step, precision)
        lp_hf, loss_hf, g_hf, patched = hf_pass(hf_dir, tokens, targets, dump, precision)
        hashing = sum(1 for k in dump if k.startswith("buckets."))
        assert (hashing > 0) == expect_hashing, f"{hashing} hashing layers, expected hashing={expect_hashing}"
        assert patched == hashing
        lp[precision], grads[precision], dumps[precision] = lp_hf, g_hf, dump
    _check_f64(test, cfg, dumps["f64"], lp["f64"], grads["f64"])
    if own_hash:
        lp_own, _, g_own, _ = hf_pass(hf_dir, tokens, targets, dumps["f64"], "f64", force="rotations")
        _check_f64(test, cfg, dumps["f64"], lp_own, g_own, " (HF hashes)")
    # float32, against the float64 answer, next to HF's own float32 error.
    ours = float(np.max(np.abs(-dumps["f32"]["losses"] - lp["f64"])))
    theirs = float(np.max(np.abs(lp["f32"] - lp["f64"])))
    bound = max(F32_FACTOR * theirs, F32_FLOOR[0])
    MEASURED.append((test, f"f32 log-prob max |ours - hf64| (hf32: {theirs:.2g})", ours, bound))
    assert ours <= bound, f"float32 log-probabilities off by {ours:.3g}, HF's float32 by {theirs:.3g}"
    e_ours = _grad_errors(cfg, dumps["f32"], None, grads["f64"])
    e_hf = _grad_errors(cfg, None, grads["f32"], grads["f64"])
    ratio = {n: e_ours[n] / max(F32_FACTOR * e_hf[n], F32_FLOOR[1]) for n in e_ours}
    worst = max(ratio, key=ratio.get)
    bound = max(F32_FACTOR * e_hf[worst], F32_FLOOR[1])
    MEASURED.append((test, f"f32 grad max |ours - hf64|/max|hf64| ({worst}; hf32: {e_hf[worst]:.2g})",
                     e_ours[worst], bound))
    assert ratio[worst] <= 1, f"float32 gradient of {worst} off by {e_ours[worst]:.3g}, HF's by {e_hf[worst]:.3g}"


def read_attrs(ckpt):
    with h5py.File(ckpt, "r") as f:
        return {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in f.attrs.items()}


def expect_refusal(args, must_contain, absent=(), env=None):
    p = run(args, env=env, check=False)
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert p.returncode == 2, f"exit {p.returncode}, expected 2; stderr: {p.stderr}"
    assert len(lines) == 1 and lines[0].startswith("reformer: error: "), f"not one error line: {p.stderr!r}"
    assert must_contain in lines[0], f"{must_contain!r} not in {lines[0]!r}"
    for path in absent:
        assert not os.path.exists(path), f"{path} was written"
    return lines[0]


# ------------------------------------------------------------- export tests

EXPORT_CASES = [
    # name, train keys, hashing expected
    ("nohash_default_pattern", dict(lsh_chunk=64, local_chunk=64, n_hashes=2), False),
    ("hash_default_pattern_r1", dict(lsh_chunk=16, local_chunk=16, n_buckets=8, n_hashes=1), True),
    ("hash_default_pattern_r2", dict(lsh_chunk=16, local_chunk=16, n_buckets=8, n_hashes=2), True),
    ("hash_default_pattern_r4", dict(lsh_chunk=16, local_chunk=16, n_buckets=8, n_hashes=4), True),
    ("nohash_all_lsh_r2", dict(attn_layers="lsh", n_layers=3, lsh_chunk=64, n_hashes=2), False),
    ("hash_all_lsh_r1", dict(attn_layers="lsh", n_layers=3, lsh_chunk=16, n_buckets=8, n_hashes=1), True),
    ("hash_all_lsh_r2", dict(attn_layers="lsh", n_layers=3, lsh_chunk=16, n_buckets=8, n_hashes=2), True),
    ("hash_all_lsh_r4", dict(attn_layers="lsh", n_layers=3, lsh_chunk=8, n_buckets=16, n_hashes=4), True),
    # trax's enwik8 pattern, one axial axis (a plain position table), ReLU,
    # heads x d_head != d_model, HF's LayerNorm eps
    ("hash_enwik8_pattern_relu_1axis", dict(attn_layers="local,local,lsh,local", lsh_chunk=16, local_chunk=8,
                                            n_buckets=8, n_hashes=2, ff_activation="relu", axial_shape=64,
                                            n_heads=3, d_head=8, ln_eps=1e-12), True),
    ("attn_full", dict(attn="full", n_hashes=2), False),
    # the default model's sizes and derived values (seq_len 512, chunks 64, 16 buckets, 2 rounds)
    ("hash_project_defaults", dict(d_model=128, n_heads=4, d_ff=512, seq_len=512, steps=3), True),
    # factorised buckets (num_buckets a list): 2 and 3 factors, 2 and 4 rounds
    ("hash_factorised_r2", dict(lsh_chunk=8, local_chunk=8, n_buckets="2,4", n_hashes=2), True),
    ("hash_factorised_3_r4", dict(attn_layers="lsh", n_layers=2, lsh_chunk=8, n_buckets="4,2,2", n_hashes=4), True),
    # the automatic count factorised (seq_len 256, chunks 4: 128 buckets > 2 * max(8, 4), so 8 x 16)
    ("hash_auto_factorised", dict(seq_len=256, lsh_chunk=4, local_chunk=16, n_layers=2, steps=3), True),
]


def make_export_test(name, keys, hashing):
    def test():
        ckpt = train(name, **keys)
        hf_dir = export(ckpt, os.path.join(WORK, name, "hf"))
        # HF loads every tensor: nothing missing, nothing unexpected.
        _, info = ReformerModelWithLMHead.from_pretrained(hf_dir, output_loading_info=True)
        assert not any(info.values()), info
        compare_export(name, ckpt, hf_dir, hashing, own_hash=hashing)
    test.__name__ = "export_" + name
    return test


# ------------------------------------------------------------- import tests

def random_hf_model(path, edit_config=None, **over):
    kw = dict(vocab_size=256, hidden_size=32, feed_forward_size=64, num_attention_heads=2, attention_head_size=16,
              attn_layers=["local", "lsh", "local", "lsh"], lsh_attn_chunk_length=64, local_attn_chunk_length=16,
              num_hashes=2, num_buckets=2, axial_pos_shape=[8, 8], axial_pos_embds_dim=[16, 16],
              max_position_embeddings=64, hidden_act="gelu", is_decoder=True, hidden_dropout_prob=0.0,
              lsh_attention_probs_dropout_prob=0.0, local_attention_probs_dropout_prob=0.0)
    kw.update(over)
    torch.manual_seed(1234)
    model = ReformerModelWithLMHead(ReformerConfig(**kw))
    model.save_pretrained(path, safe_serialization=True)
    if edit_config:  # what transformers refuses to build, but a config.json may say
        p = os.path.join(path, "config.json")
        c = json.load(open(p))
        c.update(edit_config)
        json.dump(c, open(p, "w"))
    return model


def test_import_random_then_eval():
    """HF's own (random) initialisation, imported: `reformer eval` reports
    HF's loss over the same evaluation windows (no hashing: seq_len 64 within
    the LSH chunk; the local layers are chunked)."""
    d = os.path.join(WORK, "import_eval")
    model = random_hf_model(os.path.join(d, "hf"))
    ckpt = os.path.join(d, "run", "ckpt_00000000.h5")
    run([BIN, "import-hf", "--model", os.path.join(d, "hf"), "--out", ckpt])
    data = os.path.join(d, "text.txt")
    rng = np.random.default_rng(7)
    raw = bytes(rng.integers(32, 127, size=4096, dtype=np.uint8))
    open(data, "wb").write(raw)
    p = run([BIN, "eval", "--ckpt", ckpt, "--data", data, "--set", "split_fractions=0.5,0.25,0.25"])
    m = re.search(r"\| (\d+) targets \| loss ([0-9.]+) nats", p.stdout)
    assert m, p.stdout
    n_targets, loss_ours = int(m.group(1)), float(m.group(2))
    # The validation split is bytes [2048, 3072): windows of 64 tokens,
    # the last one padded (its last target unscored), as README describes.
    val = np.frombuffer(raw[2048:3072], dtype=np.uint8).astype(np.int64)
    L = 64
    total, count = 0.0, 0
    model = model.double().eval()
    with torch.no_grad():
        for w in range(-(-(len(val) - 1) // L)):
            seg = val[w * L: w * L + L + 1]
            toks = np.zeros(L, dtype=np.int64)
            toks[:min(L, len(seg))] = seg[:L]
            tg = seg[1:]
            logp = torch.log_softmax(model(input_ids=torch.from_numpy(toks)[None]).logits[0], -1)
            total -= float(logp[torch.arange(len(tg)), torch.from_numpy(tg)].sum())
            count += len(tg)
    loss_hf = total / count
    assert n_targets == count == len(val) - 1, (n_targets, count)
    diff = abs(loss_ours - loss_hf)
    # eval prints 4 decimals: the bound is half a unit of the last one plus float32 rounding.
    MEASURED.append(("import_random_then_eval", "eval loss |diff| (4 printed decimals)", diff, 6e-5))
    assert diff <= 6e-5, f"reformer eval {loss_ours} vs HF {loss_hf:.6f}"
    # The same windows through hf_dump_f64: exact to float64 rounding.
    toks = np.zeros((1, L), dtype=np.int64)
    toks[0] = val[:L]
    tg = val[1:L + 1][None].copy()
    dump = project_pass(ckpt, toks, tg, 1, "f64")
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.from_numpy(toks)).logits, -1)
    lp = torch.gather(logp, -1, torch.from_numpy(tg)[..., None])[..., 0].numpy()
    d64 = float(np.max(np.abs(-dump["losses"] - lp)))
    MEASURED.append(("import_random_then_eval", "f64 log-prob max |diff|", d64, TOL_F64[0]))
    assert d64 <= TOL_F64[0]


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_export_of_import_is_bit_identical():
    d = os.path.join(WORK, "roundtrip_hf")
    # x: a model saved by transformers itself, with hashing layers and a
    # config that sets every field the exporter writes.
    x = os.path.join(d, "x")
    random_hf_model(x, lsh_attn_chunk_length=16, local_attn_chunk_length=16, num_buckets=8, num_hashes=4,
                    layer_norm_eps=1e-6, hidden_dropout_prob=0.0, initializer_range=0.02, hash_seed=None,
                    chunk_size_lm_head=0, chunk_size_feed_forward=0, tie_word_embeddings=False,
                    lsh_num_chunks_before=1, lsh_num_chunks_after=0, local_num_chunks_before=1,
                    local_num_chunks_after=0, axial_pos_embds=True)
    ckpt = os.path.join(d, "ckpt.h5")
    run([BIN, "import-hf", "--model", x, "--out", ckpt])
    y = export(ckpt, os.path.join(d, "y"))
    for name in ("model.safetensors", "config.json"):
        assert sha(os.path.join(x, name)) == sha(os.path.join(y, name)), f"{name} differs"
    # And once more: import(export(import(x))) is the same checkpoint content.
    ckpt2 = os.path.join(d, "ckpt2.h5")
    run([BIN, "import-hf", "--model", y, "--out", ckpt2])
    with h5py.File(ckpt, "r") as a, h5py.File(ckpt2, "r") as b:
        names = []
        a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
        for n in names:
            assert a[n][()].tobytes() == b[n][()].tobytes(), n
        assert dict(a.attrs) == dict(b.attrs)


def test_import_of_export_keeps_parameters():
    ckpt = train("roundtrip_ckpt", lsh_chunk=16, local_chunk=16, n_buckets=8)
    hf_dir = export(ckpt, os.path.join(WORK, "roundtrip_ckpt", "hf"))
    back = os.path.join(WORK, "roundtrip_ckpt", "back.h5")
    run([BIN, "import-hf", "--model", hf_dir, "--out", back])
    a_cfg, b_cfg = read_attrs(ckpt), read_attrs(back)
    for key, _ in reformer_hf.CONFIG_TO_HF:
        assert a_cfg[key] == b_cfg[key], (key, a_cfg[key], b_cfg[key])
    with h5py.File(ckpt, "r") as a, h5py.File(back, "r") as b:
        for name, _, _ in reformer_hf.tensor_map(a_cfg):
            p = reformer_hf._h5path("params", name)
            assert a[p][()].tobytes() == b[p][()].tobytes(), p
            assert not b[reformer_hf._h5path("optim/m", name)][()].any()  # fresh optimizer state
            assert not b[reformer_hf._h5path("optim/v", name)][()].any()
        assert int(b["state/step"][()]) == 0 and int(b.attrs["step"]) == 0


def test_imported_checkpoint_fine_tunes_and_samples():
    d = os.path.join(WORK, "finetune")
    random_hf_model(os.path.join(d, "hf"), lsh_attn_chunk_length=16, num_buckets=8)
    run_dir = os.path.join(d, "run")
    run([BIN, "import-hf", "--model", os.path.join(d, "hf"), "--out", run_dir + "/"])  # DIR/ckpt_00000000.h5
    # A fine-tuning start: step 0, so the schedule warms up from its start
    # and any batch may be chosen (no batch has been drawn yet).
    p = run([BIN, "train", "--resume", run_dir, "--set", "steps=3", "--set", "batch=3", "--set", "warmup=3",
             "--set", "lr=1e-3", "--set", "eval_every=0"])
    assert "resume: " in p.stdout and "(step 0)" in p.stdout, p.stdout
    first = [x for x in p.stdout.splitlines() if x.startswith("step 1/3")]
    assert first and "lr 3.33e-04" in first[0], p.stdout
    assert os.path.exists(os.path.join(run_dir, "ckpt_00000003.h5"))
    # sample writes the prompt and 20 generated bytes (any bytes: a random model) to stdout.
    s = subprocess.run([BIN, "sample", "--ckpt", os.path.join(run_dir, "ckpt_00000000.h5"), "--prompt", "ROMEO:",
                        "--len", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert s.returncode == 0 and s.stdout.startswith(b"ROMEO:") and len(s.stdout) >= 26, (s.returncode, s.stderr)


def read_token_cache(path):
    """Per document, the ids of a token cache file (io/data_tokenize.c's layout)."""
    raw = open(path, "rb").read()
    assert raw[:8] == b"RFTOKC1\n", path
    width = struct.unpack_from("<I", raw, 16)[0]
    n_docs = struct.unpack_from("<3Q", raw, 24)
    lens = struct.unpack_from(f"<{sum(n_docs)}Q", raw, 48)
    ids = np.frombuffer(raw, dtype="<u2" if width == 2 else "<u4", offset=48 + 8 * sum(n_docs))
    out, at = [], 0
    for n in lens:
        out.append(ids[at:at + n].tolist())
        at += n
    return out


def test_tokenizer_exports_and_imports():
    """A run with a SentencePiece tokenizer: export-hf writes its spiece.model,
    on which transformers' ReformerTokenizer gives the ids the run trained on
    (the token cache), for every book; import-hf carries spiece.model back
    into the checkpoint, which then evaluates with nothing else, exactly as
    the original (same parameters, same tokenizer)."""
    from transformers import ReformerTokenizer
    d = os.path.join(WORK, "tokenizer")
    pg = os.path.join(d, "pg")
    text = open(TEXT, encoding="utf-8").read()
    books = {"train": [text[:40000], text[40000:52000] + "\n« Ça, c'est l'été » — 日本語 ∑ 🙂\n", text[52000:60000]],
             "validation": [text[60000:66000]], "test": [text[66000:68000]]}
    for split, texts in books.items():
        os.makedirs(os.path.join(pg, split))
        for i, t in enumerate(texts):
            with open(os.path.join(pg, split, f"{i + 1}.txt"), "w", encoding="utf-8") as f:
                f.write(t)
    model = os.path.join(d, "m.model")
    run([BIN, "tokenize", "--data", pg, "--vocab", "400", "--out", model])
    ckpt = train("tokenizer", data=pg, tokenizer=model, steps=2)
    caches = [n for n in os.listdir(pg) if n.startswith("tokens-") and n.endswith(".bin")]
    assert len(caches) == 1, caches
    cached = read_token_cache(os.path.join(pg, caches[0]))
    hf_dir = export(ckpt, os.path.join(d, "hf"))
    assert sha(os.path.join(hf_dir, "spiece.model")) == sha(model)
    tok = ReformerTokenizer.from_pretrained(hf_dir)
    docs = [t for split in ("train", "validation", "test") for t in books[split]]
    assert len(cached) == len(docs)
    for i, t in enumerate(docs):
        ids = tok.convert_tokens_to_ids(tok.tokenize(t))
        assert ids == cached[i], f"document {i}: transformers' ids differ from the run's " \
            f"(first difference at {next(k for k in range(min(len(ids), len(cached[i]))) if ids[k] != cached[i][k])})"
    back = os.path.join(d, "back.h5")
    run([BIN, "import-hf", "--model", hf_dir, "--out", back])
    with h5py.File(back, "r") as f:
        assert bytes(f["tokenizer/spiece_model"][()]) == open(model, "rb").read()
    os.rename(model, model + ".moved")
    for n in caches:
        os.unlink(os.path.join(pg, n))
    a = run([BIN, "eval", "--ckpt", ckpt, "--data", pg]).stdout.splitlines()[-1]
    b = run([BIN, "eval", "--ckpt", back, "--data", pg]).stdout.splitlines()[-1]
    got = [re.search(r"\| ([0-9.]+) bits per byte .* ([0-9.]+) perplexity per word", x).groups() for x in (a, b)]
    # Bits per byte to its 4 printed decimals; the perplexity (an exp of ~2e4
    # nats here) to 1e-6 relative: the imported config evaluates in batches of
    # another size, which regroups the float32 sums (~1e-9 relative in nats).
    assert got[0][0] == got[1][0], (a, b)
    assert abs(float(got[0][1]) / float(got[1][1]) - 1) < 1e-6, (a, b)


def test_import_leaves_out_a_spiece_model_without_byte_fallback():
    """A model directory whose spiece.model lacks byte fallback (as
    google/reformer-crime-and-punishment's 320-piece model does) imports with
    a note, without a tokenizer: the checkpoint reads bytes."""
    import sentencepiece as spm
    d = os.path.join(WORK, "no_byte_fallback")
    hf = os.path.join(d, "hf")
    random_hf_model(hf, vocab_size=300)
    spm.SentencePieceTrainer.train(input=TEXT, model_prefix=os.path.join(hf, "spiece"), vocab_size=300,
                                   byte_fallback=False, minloglevel=2, input_sentence_size=20000)
    ckpt = os.path.join(d, "ckpt.h5")
    p = run([BIN, "import-hf", "--model", hf, "--out", ckpt])
    assert "spiece.model is not carried into the checkpoint" in p.stderr and "byte-fallback" in p.stderr, p.stderr
    with h5py.File(ckpt, "r") as f:
        assert "tokenizer" not in f and f.attrs["tokenizer"].decode() == "none"
    e = run([BIN, "eval", "--ckpt", ckpt, "--data", TEXT, "--windows", "2"])
    assert "bits per byte" in e.stdout, e.stdout
# The two published configurations (google/reformer-crime-and-punishment,
# google/reformer-enwik8) built here with transformers' random weights at a
# reduced length (256 and 1024 tokens: 4 LSH chunks each) and, for enwik8, a
# narrower hidden size and feed-forward (256 and 512 instead of 1024 and 4096,
# so the float64 passes fit this machine's time), imported, and compared in
# float64 and float32 with and without the buckets forced. Everything else as published: layer pattern, heads and
# head size, num_buckets, hashes, chunks, axial dimensions, vocabulary.
PUBLISHED = {
    "crime_and_punishment": dict(
        vocab_size=320, hidden_size=256, feed_forward_size=512, num_attention_heads=2, attention_head_size=64,
        attn_layers=["local", "lsh"] * 3, lsh_attn_chunk_length=64, local_attn_chunk_length=64, num_hashes=1,
        num_buckets=[64, 128], axial_pos_shape=[16, 16], axial_pos_embds_dim=[64, 192], max_position_embeddings=256,
        hidden_act="relu", layer_norm_eps=1e-12),
    "enwik8_narrow": dict(
        vocab_size=258, hidden_size=256, feed_forward_size=512, num_attention_heads=8, attention_head_size=128,
        attn_layers=["local", "local", "lsh", "local"] * 3, lsh_attn_chunk_length=256, local_attn_chunk_length=128,
        num_hashes=4, num_buckets=512, axial_pos_shape=[32, 32], axial_pos_embds_dim=[64, 192],
        max_position_embeddings=1024, hidden_act="relu", layer_norm_eps=1e-12),
}


def make_published_test(name, kw):
    def test():
        d = os.path.join(WORK, "published_" + name)
        random_hf_model(os.path.join(d, "hf"), **kw)
        ckpt = os.path.join(d, "ckpt.h5")
        run([BIN, "import-hf", "--model", os.path.join(d, "hf"), "--out", ckpt])
        cfg = read_attrs(ckpt)
        nb = kw["num_buckets"]
        assert cfg["n_buckets"] == (",".join(map(str, nb)) if isinstance(nb, list) else str(nb)), cfg["n_buckets"]
        assert cfg["vocab_size"] == str(kw["vocab_size"])
        compare_export("published_" + name, ckpt, os.path.join(d, "hf"), True, own_hash=True)
        # And back: the export of the import is transformers' own files, byte for byte.
        y = export(ckpt, os.path.join(d, "y"))
        for f in ("model.safetensors", "config.json"):
            assert sha(os.path.join(d, "hf", f)) == sha(os.path.join(y, f)), f"{f} differs"
    test.__name__ = "published_" + name
    return test


def test_import_notes_what_it_cannot_keep():
    """Settings that change nothing at evaluation are imported with a note:
    num_buckets=null (transformers' own choice at that length is written),
    attention-probability dropout, a fixed hash_seed."""
    d = os.path.join(WORK, "import_notes")
    random_hf_model(os.path.join(d, "hf"), num_buckets=None, lsh_attn_chunk_length=16, hidden_dropout_prob=0.2,
                    lsh_attention_probs_dropout_prob=0.1, hash_seed=7)
    out = os.path.join(d, "ckpt.h5")
    p = run([BIN, "import-hf", "--model", os.path.join(d, "hf"), "--out", out])
    notes = [x for x in p.stderr.splitlines() if x.startswith("import-hf: note: ")]
    assert len(notes) == 3, p.stderr
    assert "transformers would choose 8 at seq_len=64" in notes[0], notes
    cfg = read_attrs(out)
    assert (cfg["n_buckets"], cfg["dropout"], cfg["lsh_chunk"], cfg["attn_layers"]) == ("8", "0.2", "16", "local,lsh")


# ------------------------------------------------------------- refusals

def import_refused(d, msg):
    """import-hf of d/hf to d/ckpt.h5 is refused with one line holding msg,
    and leaves no file."""
    out = os.path.join(d, "ckpt.h5")
    expect_refusal([BIN, "import-hf", "--model", os.path.join(d, "hf"), "--out", out], msg,
                   [out, out + ".tmp", out + ".tmp.defaults"])


def unsealed_copy_of(src, dst, edit):
    """The checkpoint src rewritten by h5py to dst (no seal: it loads like one
    written by any HDF5 tool), after edit(file) changed it."""
    with h5py.File(src, "r") as a, h5py.File(dst, "w") as b:
        for k, v in a.attrs.items():  # strings as fixed-length UTF-8, which today's loader reads
            if isinstance(v, bytes):
                reformer_hf._string_attr(b, k, v.decode())
            else:
                b.attrs[k] = v
        for k in a:
            a.copy(k, b)
        edit(b)
    return dst


def refusal_tests():
    tests = []

    def t_export_three_axes():
        ckpt = train("refuse_axes", axial_shape="4,4,4", axial_dims="8,8,16", lsh_chunk=16, local_chunk=16)
        out = os.path.join(WORK, "refuse_axes", "hf")
        expect_refusal([BIN, "export-hf", "--ckpt", ckpt, "--out", out], "axial_shape: 4,4,4 has 3 axes", [out])
    tests.append(t_export_three_axes)

    def t_export_strict_lsh():  # transformers computes the standard LSH form only
        ckpt = train("refuse_strict", lsh_form="strict", lsh_chunk=16, local_chunk=16)
        out = os.path.join(WORK, "refuse_strict", "hf")
        expect_refusal([BIN, "export-hf", "--ckpt", ckpt, "--out", out], "lsh_form: strict", [out])
    tests.append(t_export_strict_lsh)

    shared = {}

    def small_ckpt():  # one trained checkpoint for the export refusals below
        if "ckpt" not in shared:
            shared["ckpt"] = train("refuse_export", lsh_chunk=16, local_chunk=16)
        return shared["ckpt"]

    def t_export_without_environment():  # (import-hf's: tests/test_hf_cli.c)
        out = os.path.join(WORK, "refuse_export", "hf_env")
        expect_refusal([BIN, "export-hf", "--ckpt", small_ckpt(), "--out", out], "make setup-hf", [out],
                       env={"REFORMER_HF_PYTHON": "/nonexistent/python"})
    tests.append(t_export_without_environment)

    def t_export_damaged_checkpoint():
        bad = small_ckpt() + ".bad.h5"
        raw = bytearray(open(small_ckpt(), "rb").read())
        raw[len(raw) // 2] ^= 0xFF
        open(bad, "wb").write(bytes(raw))
        out = os.path.join(WORK, "refuse_export", "hf_damaged")
        expect_refusal([BIN, "export-hf", "--ckpt", bad, "--out", out], "checksum mismatch", [out])
    tests.append(t_export_damaged_checkpoint)

    def unsealed_copy(dst, edit):
        return unsealed_copy_of(small_ckpt(), dst, edit)

    def t_export_non_finite_parameter():
        def nan(f):
            x = f["params/layers/1/ff/w1"][()]
            x[0, 0] = np.nan
            f["params/layers/1/ff/w1"][...] = x
        bad = unsealed_copy(os.path.join(WORK, "refuse_export", "nan.h5"), nan)
        out = os.path.join(WORK, "refuse_export", "hf_nan")
        expect_refusal([BIN, "export-hf", "--ckpt", bad, "--out", out], "/params/layers/1/ff/w1 holds non-finite", [out])
    tests.append(t_export_non_finite_parameter)

    def t_export_missing_tensor():
        bad = unsealed_copy(os.path.join(WORK, "refuse_export", "missing.h5"), lambda f: f.__delitem__("params/out/b"))
        out = os.path.join(WORK, "refuse_export", "hf_missing")
        expect_refusal([BIN, "export-hf", "--ckpt", bad, "--out", out], "/params/out/b is missing", [out])
    tests.append(t_export_missing_tensor)

    def t_export_into_nonempty_dir():
        out = os.path.join(WORK, "refuse_export", "hf_nonempty")
        os.makedirs(out)
        open(os.path.join(out, "keep.txt"), "w").write("mine")
        expect_refusal([BIN, "export-hf", "--ckpt", small_ckpt(), "--out", out], "--out: ")
        assert os.listdir(out) == ["keep.txt"]
    tests.append(t_export_into_nonempty_dir)

    import_cases = [
        ("not_decoder", dict(edit_config=dict(is_decoder=False)), "is_decoder: false"),
        ("odd_bucket_factor", dict(edit_config=dict(num_buckets=[4, 3])), "num_buckets: 3 is odd"),
        ("buckets_past_16_bits", dict(num_buckets=[512, 256], lsh_attn_chunk_length=16),
         "num_buckets: [512, 256] makes 131072 buckets"),
        ("odd_buckets", dict(num_buckets=5, lsh_attn_chunk_length=16), "num_buckets: 5 is odd"),
        ("two_chunks_before", dict(lsh_num_chunks_before=2), "lsh_num_chunks_before/after: 2/0"),
        ("chunk_after", dict(edit_config=dict(local_num_chunks_after=1)), "local_num_chunks_before/after: 1/1"),
        ("activation", dict(hidden_act="gelu_new"), "hidden_act: 'gelu_new'"),
        ("five_axes", dict(edit_config=dict(axial_pos_shape=[2, 2, 2, 2, 4], axial_pos_embds_dim=[8, 8, 8, 4, 4])),
         "axial_pos_shape: [2, 2, 2, 2, 4]: at most 4 axes"),
        ("attention_kind", dict(edit_config=dict(attn_layers=["local", "full"])), "attn_layers: 'full' is not lsh"),
        ("model_type", dict(edit_config=dict(model_type="gpt2")), "model_type is 'gpt2', not 'reformer'"),
        ("length_not_chunk_multiple", dict(axial_pos_shape=[4, 10], max_position_embeddings=40,
                                           lsh_attn_chunk_length=16, local_attn_chunk_length=8),
         "lsh_chunk: seq_len=40 is not a multiple of lsh_chunk=16"),
    ]
    for name, over, msg in import_cases:
        def t(name=name, over=over, msg=msg):
            d = os.path.join(WORK, "refuse_" + name)
            random_hf_model(os.path.join(d, "hf"), **over)
            import_refused(d, msg)
        t.__name__ = "t_import_" + name
        tests.append(t)

    def t_import_without_lm_head():
        # A ReformerModel (no language-model head) saved as the model.
        d = os.path.join(WORK, "refuse_nohead")
        model = random_hf_model(os.path.join(d, "full"))
        model.reformer.save_pretrained(os.path.join(d, "hf"), safe_serialization=True)
        out = os.path.join(d, "ckpt.h5")
        expect_refusal([BIN, "import-hf", "--model", os.path.join(d, "hf"), "--out", out],
                       "the weights lack lm_head.", [out, out + ".tmp"])
    tests.append(t_import_without_lm_head)

    def t_import_not_a_model():
        d = os.path.join(WORK, "refuse_notmodel")
        os.makedirs(d)
        out = os.path.join(d, "ckpt.h5")
        expect_refusal([BIN, "import-hf", "--model", d, "--out", out], "is not a transformers model directory", [out])
    tests.append(t_import_not_a_model)

    def t_import_over_existing_file():
        d = os.path.join(WORK, "refuse_exists")
        random_hf_model(os.path.join(d, "hf"))
        out = os.path.join(d, "ckpt.h5")
        open(out, "w").write("mine")
        expect_refusal([BIN, "import-hf", "--model", os.path.join(d, "hf"), "--out", out], "already exists")
        assert open(out).read() == "mine"
    tests.append(t_import_over_existing_file)
    for t in tests:
        if not t.__name__.startswith("refusal_"):
            t.__name__ = "refusal_" + t.__name__[2:]
    return tests


# ------------------------------------------------------------- issue 21

class Skip(Exception):
    """A test that cannot run here (reported as SKIPPED, not passed)."""


@contextlib.contextmanager
def tmpfs(path, options):
    """A tmpfs mounted at path (made if missing) with options ("size=64k",
    "ro") for the block; Skip where mounting needs root and this is not."""
    os.makedirs(path, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", path], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode != 0:
        raise Skip("cannot mount a tmpfs (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", path], stderr=subprocess.DEVNULL)


def fault_tests():
    """Issue 21, 2.5 and 2.6: every way an import or export can meet bad
    input or a bad place ends with one line `reformer: error: ...` and exit
    status 2, writing nothing (they were Python tracebacks, exit 1, and an
    import of NaN weights succeeded); export makes its directory with the
    umask's mode (it was 0700)."""
    tests = []

    def weights_edit(d, change):
        from safetensors.torch import load_file, save_file
        p = os.path.join(d, "model.safetensors")
        t = load_file(p)
        change(t)
        save_file(t, p, metadata={"format": "pt"})

    def set_config(d, **c):
        p = os.path.join(d, "config.json")
        j = json.load(open(p))
        j.update(c)
        json.dump(j, open(p, "w"))

    def rewrite(d, name, data):
        open(os.path.join(d, name), "wb").write(data)

    def truncate_half(d):
        p = os.path.join(d, "model.safetensors")
        b = open(p, "rb").read()
        open(p, "wb").write(b[: len(b) // 2])

    def huge_header(d):
        p = os.path.join(d, "model.safetensors")
        b = open(p, "rb").read()
        open(p, "wb").write((10 ** 15).to_bytes(8, "little") + b[8:])

    def config_dir(d):
        os.remove(os.path.join(d, "config.json"))
        os.mkdir(os.path.join(d, "config.json"))

    def nan_weight(t):
        t["reformer.encoder.layer_norm.weight"][0] = float("nan")

    def inf_weight(t):
        t["lm_head.decoder.weight"][3, 1] = float("inf")

    def int32_weight(t):
        t["reformer.encoder.layer_norm.weight"] = t["reformer.encoder.layer_norm.weight"].to(torch.int32)

    def extra_tensor(t):
        t["extra.weight"] = torch.zeros(3)

    cases = [
        ("nan", lambda d: weights_edit(d, nan_weight), "reformer.encoder.layer_norm.weight holds non-finite"),
        ("inf", lambda d: weights_edit(d, inf_weight), "lm_head.decoder.weight holds non-finite"),
        ("config_invalid", lambda d: rewrite(d, "config.json", b"{not json"), "config.json is not valid JSON"),
        ("config_empty", lambda d: rewrite(d, "config.json", b""), "config.json is not valid JSON"),
        ("config_not_object", lambda d: rewrite(d, "config.json", b"[1, 2]"), "config.json is not a JSON object"),
        ("config_directory", config_dir, "config.json is not a file"),
        ("weights_missing", lambda d: os.remove(os.path.join(d, "model.safetensors")),
         "has no weights file (model.safetensors)"),
        ("weights_truncated", truncate_half, "model.safetensors is not a readable safetensors file"),
        ("weights_garbage", lambda d: rewrite(d, "model.safetensors", bytes(range(256)) * 20),
         "model.safetensors is not a readable safetensors file"),
        ("weights_huge_header", huge_header, "model.safetensors is not a readable safetensors file"),
        ("shape_mismatch", lambda d: set_config(d, feed_forward_size=48), "the weights do not fit its config.json"),
        ("vocab_0", lambda d: set_config(d, vocab_size=0), "vocab_size: 0: must be a positive integer"),
        ("heads_0", lambda d: set_config(d, num_attention_heads=0), "num_attention_heads: 0: must be a positive"),
        ("tied_embeddings", lambda d: set_config(d, tie_word_embeddings=True), "tie_word_embeddings: true"),
        ("int32_weights", lambda d: weights_edit(d, int32_weight),
         "reformer.encoder.layer_norm.weight holds I32 values, not floating point"),
        ("unexpected_tensor", lambda d: weights_edit(d, extra_tensor), "the weights hold extra.weight"),
    ]
    for name, damage, msg in cases:
        def t(name=name, damage=damage, msg=msg):
            d = os.path.join(WORK, "fault_" + name)
            random_hf_model(os.path.join(d, "hf"))
            damage(os.path.join(d, "hf"))
            import_refused(d, msg)
        t.__name__ = "fault_import_" + name
        tests.append(t)

    def t_import_full_disk():
        d = os.path.join(WORK, "fault_full")
        random_hf_model(os.path.join(d, "hf"))
        with tmpfs(os.path.join(d, "disk"), "size=64k") as disk:
            out = os.path.join(disk, "ckpt.h5")
            expect_refusal([BIN, "import-hf", "--model", os.path.join(d, "hf"), "--out", out], "--out: cannot write",
                           [out, out + ".tmp", out + ".tmp.defaults"])
    tests.append(t_import_full_disk)

    def t_import_read_only_target():
        d = os.path.join(WORK, "fault_import_ro")
        random_hf_model(os.path.join(d, "hf"))
        with tmpfs(os.path.join(d, "ro"), "ro,size=1m") as ro:
            expect_refusal([BIN, "import-hf", "--model", os.path.join(d, "hf"), "--out", os.path.join(ro, "c.h5")],
                           "--out: cannot write")
    tests.append(t_import_read_only_target)

    shared = {}

    def ckpt():
        if "ckpt" not in shared:
            shared["ckpt"] = train("fault_export", lsh_chunk=16, local_chunk=16, steps=2)
        return shared["ckpt"]

    def t_export_directory_mode_follows_umask():
        out = os.path.join(WORK, "fault_export", "hf_mode")
        p = subprocess.run([BIN, "export-hf", "--ckpt", ckpt(), "--out", out], capture_output=True, text=True,
                           umask=0o022)
        assert p.returncode == 0, p.stderr
        mode = os.stat(out).st_mode & 0o777
        assert mode == 0o755, f"{out} has mode {mode:o}, not 755 (umask 022)"
    tests.append(t_export_directory_mode_follows_umask)

    def t_export_into_an_empty_mount_point():
        with tmpfs(os.path.join(WORK, "fault_export", "mnt"), "size=16m") as out:
            run([BIN, "export-hf", "--ckpt", ckpt(), "--out", out])
            assert {"config.json", "model.safetensors"} <= set(os.listdir(out)), os.listdir(out)
            ReformerModelWithLMHead.from_pretrained(out)
    tests.append(t_export_into_an_empty_mount_point)

    def t_export_full_disk():
        with tmpfs(os.path.join(WORK, "fault_export", "full"), "size=64k") as parent:
            out = os.path.join(parent, "hf")
            expect_refusal([BIN, "export-hf", "--ckpt", ckpt(), "--out", out], "--out: cannot write", [out])
            assert os.listdir(parent) == [], f"left behind: {os.listdir(parent)}"
            os.makedirs(out)  # an existing empty directory on the full disk: emptied again
            expect_refusal([BIN, "export-hf", "--ckpt", ckpt(), "--out", out], "--out: cannot write")
            assert os.listdir(out) == [], f"left behind: {os.listdir(out)}"
    tests.append(t_export_full_disk)

    def t_export_read_only_target():
        with tmpfs(os.path.join(WORK, "fault_export", "ro"), "ro,size=1m") as parent:
            expect_refusal([BIN, "export-hf", "--ckpt", ckpt(), "--out", os.path.join(parent, "hf")],
                           "--out: cannot write")
    tests.append(t_export_read_only_target)

    def unsealed_edit(name, edit):
        return unsealed_copy_of(ckpt(), os.path.join(WORK, "fault_export", name), edit)

    def t_export_int32_parameter():
        def to_int(f):
            x = f["params/lnf/g"][()]
            del f["params/lnf/g"]
            f.create_dataset("params/lnf/g", data=x.astype(np.int32))
        bad = unsealed_edit("int32.h5", to_int)
        out = os.path.join(WORK, "fault_export", "hf_int32")
        expect_refusal([BIN, "export-hf", "--ckpt", bad, "--out", out], "/params/lnf/g holds int32 values", [out])
    tests.append(t_export_int32_parameter)

    def t_export_unexpected_tensor():
        bad = unsealed_edit("extra.h5", lambda f: f.create_dataset("params/extra/w", data=np.zeros(3, np.float32)))
        out = os.path.join(WORK, "fault_export", "hf_extra")
        expect_refusal([BIN, "export-hf", "--ckpt", bad, "--out", out], "/params/extra/w is not a tensor", [out])
    tests.append(t_export_unexpected_tensor)
    for t in tests:
        if not t.__name__.startswith("fault_"):
            t.__name__ = "fault_" + t.__name__[2:]
    return tests


def main():
    tests = [make_export_test(*c) for c in EXPORT_CASES]
    tests += [make_published_test(n, kw) for n, kw in PUBLISHED.items()]
    tests += [test_import_random_then_eval, test_export_of_import_is_bit_identical,
              test_import_of_export_keeps_parameters, test_imported_checkpoint_fine_tunes_and_samples,
              test_import_notes_what_it_cannot_keep, test_tokenizer_exports_and_imports,
              test_import_leaves_out_a_spiece_model_without_byte_fallback]
    tests += refusal_tests()
    tests += fault_tests()
    only = sys.argv[1:]
    passed = failed = skipped = 0
    t_all = time.time()
    for t in tests:
        if only and not any(o in t.__name__ for o in only):
            continue
        t0 = time.time()
        try:
            t()
            passed += 1
            print(f"[PASS] {t.__name__} ({time.time() - t0:.1f} s)", flush=True)
        except Skip as e:
            skipped += 1
            print(f"[SKIP] {t.__name__}: {e} (skipped, not passed)", flush=True)
        except Exception as e:  # noqa: BLE001  (a test that raises anything has failed)
            failed += 1
            print(f"[FAIL] {t.__name__}: {type(e).__name__}: {e}", flush=True)
    print("\nmeasured (test | what | value | bound):")
    for test, what, value, tol in MEASURED:
        print(f"  {test} | {what} | {value:.3g} | {tol:g}")
    print(f"test-hf: {time.time() - t_all:.0f} s")
    if failed == 0:
        shutil.rmtree(WORK, ignore_errors=True)
    else:
        print(f"work files kept in {WORK}")
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
