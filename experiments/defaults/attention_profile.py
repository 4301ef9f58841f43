#!/usr/bin/env python3
"""Where layer 0's local attention looks, in a trained checkpoint: the mean
attention weight at offsets 0..7 (0 = the query itself) and the entropy of
the weights relative to a uniform row, per head, for 60 queries of a
validation window. Recomputed in numpy from the checkpoint (embedding, axial
table, LayerNorm 1, w_q, w_k; chunk 64, one chunk back), so it needs h5py.

    /usr/bin/python3 experiments/defaults/attention_profile.py CKPT
"""
import os
import sys

import h5py
import numpy as np

f = h5py.File(sys.argv[1], "r")
P = lambda n: f["params/" + n][()]  # noqa: E731
text = open(os.path.join(os.path.dirname(__file__), "../../data/tinyshakespeare.txt"), "rb").read()
L, start, chunk = 512, 1003000, 64  # a window of the validation split
toks = np.frombuffer(text[start:start + L], dtype=np.uint8).astype(int)
E, A0, A1 = P("tok_emb"), P("axial/0"), P("axial/1")
n2 = A1.shape[0]
pos = np.concatenate([A0[np.arange(L) // n2], A1[np.arange(L) % n2]], 1)
x = E[toks] + pos


def ln(x, g, b, eps=1e-6):
    m, v = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * g + b


h = ln(x, P("layers/0/ln1/g"), P("layers/0/ln1/b"))
q, k = h @ P("layers/0/attn/w_q"), h @ P("layers/0/attn/w_k")
H = int(f.attrs["n_heads"].decode() if isinstance(f.attrs["n_heads"], bytes) else f.attrs["n_heads"])
dh = q.shape[1] // H
print(f"{sys.argv[1]}: token embedding std {E.std():.3f}, position std {pos.std():.3f}")
for hd in range(H):
    qs, ks = q[:, hd * dh:(hd + 1) * dh], k[:, hd * dh:(hd + 1) * dh]
    mass, ent, rows = np.zeros(8), [], range(200, 260)
    for i in rows:
        c0 = (i // chunk - 1) * chunk
        js = np.arange(c0, i + 1)
        z = qs[i] @ ks[js].T / np.sqrt(dh)
        p = np.exp(z - z.max())
        p /= p.sum()
        for d in range(8):
            mass[d] += p[js == i - d].sum()
        ent.append(-(p * np.log(p)).sum() / np.log(len(js)))
    print(f"head {hd}: weight at offsets 0..7 {np.round(mass / len(rows), 3)}, entropy / uniform's {np.mean(ent):.2f}")
