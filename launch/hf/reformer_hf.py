#!/usr/bin/env python3
"""Convert between reformer checkpoints and Hugging Face ReformerModelWithLMHead.

Run by `reformer export-hf` and `reformer import-hf` (launch/hf.c) with the
interpreter of the environment `make setup-hf` creates; not meant to be called
by hand, though it can be:

    reformer_hf.py export CKPT OUT_DIR
    reformer_hf.py import MODEL_DIR OUT_FILE --defaults FILE

The two tables below are the single source of the mapping (README, "Hugging
Face interop", shows them as a table): CONFIG_TO_HF for config keys and
tensor_map() for weights. Anything that one side cannot express is refused
with one line `reformer: error: <key>: <why>` and exit status 2; nothing is
written then.
"""
import json
import math
import os
import shutil
import sys
import tempfile

import numpy as np

# Checkpoint layout (io/checkpoint.c): format version and the user block that
# `reformer import-hf` seals after this script wrote the file.
CKPT_FORMAT_VERSION = 1
SEAL_BYTES = 512


class Refusal(Exception):
    """A config or file one side cannot express: one line, exit status 2."""


def refuse(key, why):
    raise Refusal(f"{key}: {why}")


def one_line(e):
    """An exception's text on one line, short enough for a message."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 300 else text[:297] + "..."


# ----------------------------------------------------------------- config
#
# (project key, HF config field). Keys the two compute with but that change
# no result (ff_chunk <-> chunk_size_feed_forward, loss_chunk <->
# chunk_size_lm_head) are not mapped: HF's chunking asserts that the chunk
# divides the sequence, ours does not need to. Training-only keys (lr,
# batch, ...) have no HF counterpart and keep this build's defaults on import.
CONFIG_TO_HF = [
    ("vocab_size", "vocab_size"),
    ("d_model", "hidden_size"),
    ("d_ff", "feed_forward_size"),
    ("n_heads", "num_attention_heads"),
    ("d_head", "attention_head_size"),
    ("n_layers", "num_hidden_layers (len of attn_layers)"),
    ("attn_layers", "attn_layers (one entry per layer)"),
    ("attn", "full: lsh/local_attn_chunk_length = seq_len"),
    ("lsh_chunk", "lsh_attn_chunk_length"),
    ("local_chunk", "local_attn_chunk_length"),
    ("n_hashes", "num_hashes"),
    ("n_buckets", "num_buckets"),
    ("seq_len", "max_position_embeddings (= prod(axial_pos_shape))"),
    ("axial_shape", "axial_pos_shape (2 axes), or axial_pos_embds=false (1 axis)"),
    ("axial_dims", "axial_pos_embds_dim"),
    ("ff_activation", "hidden_act (relu, gelu)"),
    ("ln_eps", "layer_norm_eps"),
    ("dropout", "hidden_dropout_prob"),
    ("init_std", "initializer_range"),
]


def _ints(text):
    return [int(x) for x in text.split(",")]


def layer_kinds(cfg):
    pattern = cfg["attn_layers"].split(",")
    return [pattern[l % len(pattern)] for l in range(int(cfg["n_layers"]))]


def hf_config_from_project(cfg):
    """Keyword arguments of transformers.ReformerConfig for a finalized config
    (the checkpoint's attribute strings), or Refusal."""
    shape, dims = _ints(cfg["axial_shape"]), _ints(cfg["axial_dims"])
    seq_len = int(cfg["seq_len"])
    if len(shape) > 2:
        refuse("axial_shape", f"{cfg['axial_shape']} has {len(shape)} axes; transformers' AxialPositionEmbeddings "
               "evaluates exactly two (it slices by axial_pos_shape[1]), so only 1 or 2 axes can be exported")
    full = cfg.get("attn", "pattern") == "full"
    lsh_chunk = seq_len if full else int(cfg["lsh_chunk"])
    local_chunk = seq_len if full else int(cfg["local_chunk"])
    act = cfg["ff_activation"]
    if act not in ("relu", "gelu"):
        refuse("ff_activation", f"'{act}' has no transformers counterpart")
    if cfg.get("lsh_form", "standard") != "standard" and "lsh" in cfg["attn_layers"].split(",") and not full:
        refuse("lsh_form", f"{cfg['lsh_form']}: transformers' LSHSelfAttention computes the standard form only")
    kw = dict(
        vocab_size=int(cfg["vocab_size"]),
        hidden_size=int(cfg["d_model"]),
        feed_forward_size=int(cfg["d_ff"]),
        num_attention_heads=int(cfg["n_heads"]),
        attention_head_size=int(cfg["d_head"]),
        attn_layers=layer_kinds(cfg),
        lsh_attn_chunk_length=lsh_chunk,
        local_attn_chunk_length=local_chunk,
        lsh_num_chunks_before=1, lsh_num_chunks_after=0,
        local_num_chunks_before=1, local_num_chunks_after=0,
        num_hashes=int(cfg["n_hashes"]),
        num_buckets=int(cfg["n_buckets"]),
        hash_seed=None,
        max_position_embeddings=seq_len,
        hidden_act=act,
        layer_norm_eps=float(cfg["ln_eps"]),
        hidden_dropout_prob=float(cfg["dropout"]),
        lsh_attention_probs_dropout_prob=0.0,
        local_attention_probs_dropout_prob=0.0,
        initializer_range=float(cfg["init_std"]),
        is_decoder=True,
        tie_word_embeddings=False,
        chunk_size_lm_head=0,
        chunk_size_feed_forward=0,
        architectures=["ReformerModelWithLMHead"],
    )
    if len(shape) == 2:
        kw.update(axial_pos_embds=True, axial_pos_shape=shape, axial_pos_embds_dim=dims)
    else:
        kw.update(axial_pos_embds=False)
    return kw


def _shortest_pattern(kinds):
    for p in range(1, len(kinds) + 1):
        if all(kinds[l] == kinds[l % p] for l in range(len(kinds))):
            return kinds[:p]
    return kinds


def _hf_auto_buckets(seq_len, chunk, max_pos):
    """transformers' LSHSelfAttention._set_num_buckets for num_buckets=None."""
    pow2 = (2 * (seq_len // chunk)).bit_length() - 1
    limit = 2 * max(int((max_pos // chunk) ** 0.5), chunk)
    if 2 ** pow2 > limit:
        return [2 ** (pow2 // 2), 2 ** (pow2 - pow2 // 2)]
    return 2 ** pow2


def _fmt_double(v):
    # The shortest text that reads back to the same double (config_get's rule).
    for prec in (15, 16, 17):
        s = "%.*g" % (prec, v)
        if float(s) == v:
            return s
    return repr(v)


def project_config_from_hf(hc, notes):
    """Project config keys (strings) for a transformers ReformerConfig, or
    Refusal. Things that change nothing at evaluation but cannot be kept
    (attention-probability dropout, a fixed hash seed) go to notes."""
    if not getattr(hc, "is_decoder", False):
        refuse("is_decoder", "false: this framework trains causal language models only (is_decoder=true)")
    for key in ("vocab_size", "hidden_size", "feed_forward_size", "num_attention_heads", "attention_head_size",
                "num_hashes"):
        v = getattr(hc, key, None)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            refuse(key, f"{v!r}: must be a positive integer")
    if getattr(hc, "tie_word_embeddings", False):
        refuse("tie_word_embeddings", "true: the output layer here reads concat(x1, x2), 2 x hidden_size wide, and "
               "has its own weights; a model whose head shares the embedding table cannot be expressed")
    kinds = list(hc.attn_layers)
    for k in kinds:
        if k not in ("lsh", "local"):
            refuse("attn_layers", f"'{k}' is not lsh or local")
    for side in ("lsh", "local"):
        before, after = getattr(hc, f"{side}_num_chunks_before"), getattr(hc, f"{side}_num_chunks_after")
        if side in kinds and (before, after) != (1, 0):
            refuse(f"{side}_num_chunks_before/after", f"{before}/{after}: this framework attends to one chunk "
                   "before and none after (1/0), as a causal language model does")
    act = hc.hidden_act
    if act not in ("relu", "gelu"):
        refuse("hidden_act", f"'{act}': this framework has relu and gelu (the exact erf form, transformers' 'gelu')")
    d = hc.hidden_size
    if hc.axial_pos_embds:
        shape, dims = list(hc.axial_pos_shape), list(hc.axial_pos_embds_dim)
        if len(shape) > 4:
            refuse("axial_pos_shape", f"{shape}: at most 4 axes here")
        if len(shape) != len(dims):
            refuse("axial_pos_embds_dim", f"{dims} has {len(dims)} entries, axial_pos_shape {len(shape)}")
        seq_len = math.prod(shape)
    else:
        seq_len = hc.max_position_embeddings
        shape, dims = [seq_len], [d]
    lsh_chunk, local_chunk = hc.lsh_attn_chunk_length, hc.local_attn_chunk_length
    if "lsh" in kinds and not lsh_chunk:
        refuse("lsh_attn_chunk_length", f"{lsh_chunk}: chunked LSH attention needs a chunk length")
    if "local" in kinds and not local_chunk:
        refuse("local_attn_chunk_length", f"{local_chunk}: local attention needs a chunk length")
    lsh_chunk, local_chunk = lsh_chunk or 64, local_chunk or 64
    nb = hc.num_buckets
    if nb is None:
        nb = _hf_auto_buckets(seq_len, lsh_chunk, hc.max_position_embeddings)
        notes.append(f"num_buckets: not set in the model; transformers would choose {nb} at seq_len={seq_len}, "
                     "so that is used")
    if isinstance(nb, (list, tuple)):
        if len(nb) != 1:
            refuse("num_buckets", f"{list(nb)} is factorised; this framework hashes into one set of buckets per "
                   "round (an int)")
        nb = nb[0]
    if nb % 2:
        refuse("num_buckets", f"{nb} is odd; hashing takes argmax over [xR; -xR] and needs an even count")
    for key in ("lsh_attention_probs_dropout_prob", "local_attention_probs_dropout_prob"):
        if getattr(hc, key, 0):
            notes.append(f"{key}: {getattr(hc, key)} is not applied here (this framework has no dropout on "
                         "attention probabilities); hidden_dropout_prob becomes dropout")
    if getattr(hc, "hash_seed", None) is not None:
        notes.append(f"hash_seed: {hc.hash_seed} is not kept; rotations here are keyed by (seed, step, layer, head)")
    return {
        "vocab_size": str(hc.vocab_size),
        "d_model": str(d),
        "d_ff": str(hc.feed_forward_size),
        "n_heads": str(hc.num_attention_heads),
        "d_head": str(hc.attention_head_size),
        "n_layers": str(len(kinds)),
        "attn_layers": ",".join(_shortest_pattern(kinds)),
        "attn": "pattern",
        "lsh_chunk": str(lsh_chunk),
        "local_chunk": str(local_chunk),
        "n_hashes": str(hc.num_hashes),
        "n_buckets": str(nb),
        "seq_len": str(seq_len),
        "axial_shape": ",".join(map(str, shape)),
        "axial_dims": ",".join(map(str, dims)),
        "ff_activation": act,
        "ln_eps": _fmt_double(float(hc.layer_norm_eps)),
        "dropout": _fmt_double(float(hc.hidden_dropout_prob)),
        "init_std": _fmt_double(float(hc.initializer_range)),
    }


# ---------------------------------------------------------------- tensors
#
# (project tensor name, HF state_dict key, how): "T" = transposed (nn.Linear
# stores [out, in], this project [in, out]); "axial0"/"axial1" = the axial
# table [n_a, d_a] is HF's [n1, 1, d1] / [1, n2, d2]; "" = same shape.

def tensor_map(cfg):
    rows = [("tok_emb", "reformer.embeddings.word_embeddings.weight", "")]
    if len(_ints(cfg["axial_shape"])) == 2:
        rows += [("axial.0", "reformer.embeddings.position_embeddings.weights.0", "axial0"),
                 ("axial.1", "reformer.embeddings.position_embeddings.weights.1", "axial1")]
    else:
        rows += [("axial.0", "reformer.embeddings.position_embeddings.embedding.weight", "")]
    for l, kind in enumerate(layer_kinds(cfg)):
        p, h = f"layers.{l}.", f"reformer.encoder.layers.{l}."
        rows += [(p + "ln1.g", h + "attention.layer_norm.weight", ""),
                 (p + "ln1.b", h + "attention.layer_norm.bias", "")]
        if kind == "lsh":
            rows += [(p + "attn.w_qk", h + "attention.self_attention.query_key.weight", "T")]
        else:
            rows += [(p + "attn.w_q", h + "attention.self_attention.query.weight", "T"),
                     (p + "attn.w_k", h + "attention.self_attention.key.weight", "T")]
        rows += [(p + "attn.w_v", h + "attention.self_attention.value.weight", "T"),
                 (p + "attn.w_o", h + "attention.output.dense.weight", "T"),
                 (p + "ln2.g", h + "feed_forward.layer_norm.weight", ""),
                 (p + "ln2.b", h + "feed_forward.layer_norm.bias", ""),
                 (p + "ff.w1", h + "feed_forward.dense.dense.weight", "T"),
                 (p + "ff.b1", h + "feed_forward.dense.dense.bias", ""),
                 (p + "ff.w2", h + "feed_forward.output.dense.weight", "T"),
                 (p + "ff.b2", h + "feed_forward.output.dense.bias", "")]
    # The final LayerNorm and the output layer see concat(x1, x2): HF's
    # [attn_output, hidden_states], the same order. lm_head.decoder.bias is
    # tied to lm_head.bias.
    rows += [("lnf.g", "reformer.encoder.layer_norm.weight", ""),
             ("lnf.b", "reformer.encoder.layer_norm.bias", ""),
             ("out.w", "lm_head.decoder.weight", "T"),
             ("out.b", "lm_head.bias", "")]
    return rows


def to_hf(x, how):
    if how == "T":
        return np.ascontiguousarray(x.T)
    if how == "axial0":
        return x[:, None, :]
    if how == "axial1":
        return x[None, :, :]
    return x


def from_hf(x, how):
    if how == "T":
        return np.ascontiguousarray(x.T)
    if how in ("axial0", "axial1"):
        return np.ascontiguousarray(x.reshape(x.shape[0] * x.shape[1], x.shape[2]))
    return x


# ------------------------------------------------------------- checkpoints

def _h5path(group, name):
    return f"{group}/{name.replace('.', '/')}"


def read_checkpoint(path):
    """(config dict of strings, {tensor name: float32 array}) of a checkpoint."""
    import h5py
    with h5py.File(path, "r") as f:
        cfg = {}
        for k, v in f.attrs.items():
            cfg[k] = v.decode() if isinstance(v, bytes) else (str(v) if not isinstance(v, str) else v)
        params = {}
        for name, _, _ in tensor_map(cfg):
            p = _h5path("params", name)
            if p not in f:
                refuse("--ckpt", f"{path}: /{p} is missing")
            if f[p].dtype.kind != "f":
                refuse("--ckpt", f"{path}: /{p} holds {f[p].dtype} values, not floating point")
            x = np.asarray(f[p][()], dtype=np.float32)
            if not np.isfinite(x).all():
                refuse("--ckpt", f"{path}: /{p} holds non-finite values")
            params[name] = x
    return cfg, params


def check_no_extra_tensors(path, cfg):
    """Every /params dataset of the checkpoint is one the mapping exports:
    another would be dropped silently."""
    import h5py
    known = {_h5path("params", name) for name, _, _ in tensor_map(cfg)}
    found = []
    with h5py.File(path, "r") as f:
        if "params" in f:
            f["params"].visititems(lambda n, o: found.append("params/" + n) if isinstance(o, h5py.Dataset) else None)
    extra = sorted(set(found) - known)
    if extra:
        refuse("--ckpt", f"{path}: /{extra[0]} is not a tensor of this model's config"
               f"{f' (and {len(extra) - 1} more)' if len(extra) > 1 else ''}; it would not be exported")


def _string_attr(f, key, value):
    import h5py
    raw = value.encode("utf-8")
    # Fixed-length UTF-8, NUL-padded: what io/h5util.c writes and reads.
    t = h5py.string_dtype("utf-8", max(len(raw), 1))
    f.attrs.create(key, np.array(raw, dtype=t))


def write_checkpoint(path, cfg, params, order):
    """A step-0 checkpoint: parameters, zero AdamW moments (a fresh
    optimizer), /state at step 0. The 512-byte user block is left for
    `reformer import-hf` to seal."""
    import h5py
    with h5py.File(path, "w", userblock_size=SEAL_BYTES, libver=("v108", "v108")) as f:
        f.attrs.create("format_version", np.int64(CKPT_FORMAT_VERSION))
        f.attrs.create("step", np.int64(0))
        for k, v in cfg.items():
            _string_attr(f, k, v)
        for group in ("params", "optim/m", "optim/v"):
            for name in order:
                x = params[name] if group == "params" else np.zeros_like(params[name])
                f.create_dataset(_h5path(group, name), data=x.astype("<f4"))
        f.create_dataset("state/step", data=np.int64(0))
        f.create_dataset("state/seed", data=np.uint64(int(cfg["seed"])))
        f.create_dataset("state/data_cursor", data=np.int64(0))
        f.create_dataset("state/global_batch", data=np.int64(int(cfg["batch"])))


# ------------------------------------------------------------- commands

def _transformers():
    """The two classes, with transformers' own warnings off: the commands
    report every problem themselves, in one line."""
    from transformers import ReformerConfig, ReformerModelWithLMHead
    from transformers.utils import logging
    logging.set_verbosity_error()
    return ReformerConfig, ReformerModelWithLMHead


def export(ckpt, out_dir):
    cfg, params = read_checkpoint(ckpt)
    kw = hf_config_from_project(cfg)
    check_no_extra_tensors(ckpt, cfg)
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        refuse("--out", f"{out_dir} exists and is not an empty directory (choose another)")
    import torch
    ReformerConfig, ReformerModelWithLMHead = _transformers()
    hc = ReformerConfig(**kw)
    state = {}
    for name, key, how in tensor_map(cfg):
        state[key] = torch.from_numpy(np.ascontiguousarray(to_hf(params[name], how)))
    state["lm_head.decoder.bias"] = state["lm_head.bias"]
    model = ReformerModelWithLMHead(hc)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:  # the table above is wrong for this transformers version
        raise RuntimeError(f"tensor map out of date: missing {missing}, unexpected {unexpected}")
    import h5py
    with h5py.File(ckpt, "r") as f:  # the run's SentencePiece model, if it had one
        spiece = bytes(np.asarray(f["tokenizer/spiece_model"][()], dtype=np.uint8)) if "tokenizer/spiece_model" in f else None

    def save(d):
        model.save_pretrained(d, safe_serialization=True)
        if spiece is not None:  # what transformers' ReformerTokenizer.from_pretrained(out_dir) reads
            with open(os.path.join(d, "spiece.model"), "wb") as f:
                f.write(spiece)

    umask = os.umask(0)
    os.umask(umask)
    try:
        if os.path.isdir(out_dir):
            # An existing empty directory (perhaps a mount point, which
            # cannot be renamed over): write into it, and empty it again on
            # failure.
            try:
                save(out_dir)
            except BaseException:
                for entry in os.listdir(out_dir):
                    p = os.path.join(out_dir, entry)
                    shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else os.remove(p)
                raise
        else:
            parent = os.path.dirname(os.path.abspath(out_dir))
            os.makedirs(parent, exist_ok=True)
            tmp = tempfile.mkdtemp(prefix=".export-hf-", dir=parent)  # 0700: given the umask's mode below
            try:
                save(tmp)
                os.chmod(tmp, 0o777 & ~umask)
                os.rename(tmp, out_dir)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    except Exception as e:  # a full disk, a read-only place, ...: nothing is left behind
        why = e.strerror if isinstance(e, OSError) and e.strerror else one_line(e)
        refuse("--out", f"cannot write {out_dir}: {why}")
    n = sum(int(np.prod(v.shape)) for v in params.values())
    tok = "; spiece.model for transformers.ReformerTokenizer" if spiece is not None else ""
    print(f"export-hf: {ckpt} -> {out_dir} ({n} parameters, {len(kw['attn_layers'])} layers{tok}; "
          "load with transformers.ReformerModelWithLMHead.from_pretrained)")


FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


def check_weights(model_dir):
    """The weights file before transformers reads it: present, a readable
    safetensors file, and floating point throughout."""
    path = os.path.join(model_dir, "model.safetensors")
    if not os.path.isfile(path):
        if os.path.isfile(os.path.join(model_dir, "pytorch_model.bin")):
            return  # the older format: transformers reads it (and reports it) itself
        refuse("--model", f"{model_dir} has no weights file (model.safetensors)")
    from safetensors import safe_open
    try:
        with safe_open(path, framework="pt") as f:
            for key in f.keys():
                dtype = f.get_slice(key).get_dtype()
                if dtype not in FLOAT_DTYPES:
                    refuse("--model", f"{path}: {key} holds {dtype} values, not floating point")
    except Refusal:
        raise
    except Exception as e:  # truncated, garbage, a header too large to be one
        refuse("--model", f"{path} is not a readable safetensors file ({one_line(e)})")


def import_(model_dir, out, defaults_path, spiece=None):
    config_path = os.path.join(model_dir, "config.json")
    if not os.path.isdir(model_dir) or not os.path.exists(config_path):
        refuse("--model", f"{model_dir} is not a transformers model directory (no config.json)")
    if not os.path.isfile(config_path):
        refuse("--model", f"{config_path} is not a file")
    try:
        with open(config_path, encoding="utf-8") as f:
            raw = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        refuse("--model", f"{config_path} is not valid JSON ({one_line(e)})")
    except OSError as e:
        refuse("--model", f"cannot read {config_path}: {e.strerror}")
    if not isinstance(raw, dict):
        refuse("--model", f"{config_path} is not a JSON object")
    model_type = raw.get("model_type")
    if model_type != "reformer":
        refuse("--model", f"{model_dir}: model_type is '{model_type}', not 'reformer'")
    ReformerConfig, ReformerModelWithLMHead = _transformers()
    try:
        hc = ReformerConfig.from_pretrained(model_dir)
    except Exception as e:
        refuse("--model", f"{config_path}: transformers cannot read it ({one_line(e)})")
    notes = []
    mapped = project_config_from_hf(hc, notes)
    cfg = {}
    with open(defaults_path) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            if k:
                cfg[k] = v
    cfg.update(mapped)
    check_weights(model_dir)
    import torch
    try:
        model, info = ReformerModelWithLMHead.from_pretrained(model_dir, torch_dtype=torch.float32,
                                                              output_loading_info=True)
    except Exception as e:  # a shape that is not config.json's, ...
        refuse("--model", f"{model_dir}: the weights do not fit its config.json ({one_line(e)})")
    if info["missing_keys"]:  # transformers would fill them with random values
        refuse("--model", f"{model_dir}: the weights lack {', '.join(info['missing_keys'][:3])}"
               f"{' ...' if len(info['missing_keys']) > 3 else ''} (a model without the language-model head?)")
    if info["unexpected_keys"]:  # transformers would drop them
        refuse("--model", f"{model_dir}: the weights hold {', '.join(info['unexpected_keys'][:3])}"
               f"{' ...' if len(info['unexpected_keys']) > 3 else ''}, which this model does not use "
               "(another architecture?)")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    params, order = {}, []
    for name, key, how in tensor_map(cfg):
        if key not in state:
            refuse("--model", f"{model_dir}: the weights have no {key}")
        params[name] = from_hf(state[key].to(torch.float32).numpy(), how).astype(np.float32)
        if not np.isfinite(params[name]).all():  # eval, sample and train would refuse the checkpoint
            refuse("--model", f"{model_dir}: {key} holds non-finite values (NaN or Inf)")
        order.append(name)
    if spiece is not None:  # checked by `reformer import-hf` (byte fallback, size)
        cfg["tokenizer"] = spiece
    # Room for the parameters and both AdamW moments (float32), and HDF5's
    # own structures: refused before HDF5 meets a full disk.
    need = 3 * 4 * sum(x.size for x in params.values()) + (1 << 20)
    if spiece is not None:
        need += os.path.getsize(spiece)
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(out)))
    except OSError as e:
        refuse("--out", f"cannot write {out}: {e.strerror}")
    if st.f_bavail * st.f_frsize < need:
        refuse("--out", f"cannot write {out}: {need} bytes needed, {st.f_bavail * st.f_frsize} free on its disk")
    try:
        write_checkpoint(out, cfg, params, order)
        if spiece is not None:
            import h5py
            with open(spiece, "rb") as f:
                raw = np.frombuffer(f.read(), dtype=np.uint8)
            with h5py.File(out, "a") as f:
                f.create_dataset("tokenizer/spiece_model", data=raw)
    except Exception as e:  # the disk filled meanwhile, a read-only place
        why = e.strerror if isinstance(e, OSError) and e.strerror else one_line(e)
        print(f"reformer: error: --out: cannot write {out}: {why}", file=sys.stderr, flush=True)
        # HDF5 would touch the failed file again at interpreter exit (and
        # crash there): leave at once; reformer import-hf removes the file.
        os._exit(2)
    for n in notes:
        print(f"import-hf: note: {n}", file=sys.stderr)


def main(argv):
    try:
        if len(argv) == 3 and argv[0] == "export":
            export(argv[1], argv[2])
        elif len(argv) == 5 and argv[0] == "import" and argv[3] == "--defaults":
            import_(argv[1], argv[2], argv[4])
        elif len(argv) == 7 and argv[0] == "import" and argv[3] == "--defaults" and argv[5] == "--spiece":
            import_(argv[1], argv[2], argv[4], argv[6])
        else:
            print("usage: reformer_hf.py export CKPT OUT_DIR | import MODEL_DIR OUT --defaults FILE [--spiece FILE]",
                  file=sys.stderr)
            return 2
    except Refusal as e:
        print(f"reformer: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001  (a failure no check above foresaw: still one line)
        print(f"reformer: error: {argv[0]}-hf: the converter failed: {type(e).__name__}: {one_line(e)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
