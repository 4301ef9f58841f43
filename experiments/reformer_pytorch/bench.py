#!/usr/bin/env python3
"""reformer-pytorch (lucidrains, 1.4.4) on the same model and GPU as
`reformer bench`, for the side-by-side in cuda/device_check.sh.

Training steps on random tokens (AdamW, causal LM loss): one untimed, then
--steps timed; prints one JSON line: tokens/s, step ms, peak device memory.
--precision bf16 runs the step under torch.autocast(bfloat16) (fp32 master
weights, as reformer's bf16); tf32 sets torch's TF32 matmul switches.

Differences from this project's model, stated so the comparison is read
right: reformer-pytorch has no per-layer local/LSH pattern (every layer is
LSH here; --local-heads gives some heads local attention inside each layer)
and uses its own chunking of the feed-forward; the model size (d_model,
d_ff, heads, layers, vocabulary) and the LSH settings (bucket size = chunk,
hash rounds) match.

usage: bench.py --seq-len 65536 --d-model 1024 --d-ff 4096 --heads 8
                --layers 12 --n-hashes 8 --bucket 64 [--precision bf16]
"""
import argparse
import json
import resource
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seq-len", type=int, required=True)
    ap.add_argument("--d-model", type=int, required=True)
    ap.add_argument("--d-ff", type=int, required=True)
    ap.add_argument("--heads", type=int, required=True)
    ap.add_argument("--layers", type=int, required=True)
    ap.add_argument("--n-hashes", type=int, required=True)
    ap.add_argument("--bucket", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--local-heads", type=int, default=0)
    ap.add_argument("--precision", choices=["fp32", "tf32", "bf16"], default="bf16")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()

    from reformer_pytorch import ReformerLM  # carried as a wheel (cuda/device_check.sh)

    dev = torch.device(a.device)
    torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = a.precision == "tf32"
    if a.d_ff % a.d_model:
        raise SystemExit("bench.py: d_ff must be a multiple of d_model (reformer-pytorch's ff_mult)")
    model = ReformerLM(num_tokens=a.vocab, dim=a.d_model, depth=a.layers, heads=a.heads,
                       max_seq_len=a.seq_len, bucket_size=a.bucket, n_hashes=a.n_hashes,
                       ff_mult=a.d_ff // a.d_model, causal=True, n_local_attn_heads=a.local_heads,
                       axial_position_emb=False).to(dev)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator(device="cpu").manual_seed(0)

    def step():
        x = torch.randint(0, a.vocab, (1, a.seq_len + 1), generator=g).to(dev)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            logits = model(x[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, a.vocab).float(), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    step()  # untimed: allocation, autotuning
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / a.steps
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None
    print(json.dumps({"impl": "reformer-pytorch 1.4.4", "torch": torch.__version__, "precision": a.precision,
                      "seq_len": a.seq_len, "d_model": a.d_model, "n_layers": a.layers, "params": params,
                      "tokens_per_s": round(a.seq_len / dt, 1), "step_ms": round(dt * 1e3, 2),
                      "device_peak_mb": round(peak, 1) if peak is not None else None,
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "loss": round(float(loss), 4)}))


if __name__ == "__main__":
    main()
