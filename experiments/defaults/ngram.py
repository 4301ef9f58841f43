#!/usr/bin/env python3
"""Validation bits per byte of n-gram models of the shipped text (trained on
its train split, add-0.01 smoothing): the levels a byte model passes through.

    python3 experiments/defaults/ngram.py
"""
import collections
import math
import os

text = open(os.path.join(os.path.dirname(__file__), "../../data/tinyshakespeare.txt"), "rb").read()
n = len(text)
train, val = text[:int(n * 0.9)], text[int(n * 0.9):int(n * 0.95)]  # split_fractions 0.9,0.05,0.05


def bits(k, alpha=0.01):
    joint, ctx = collections.Counter(), collections.Counter()
    for i in range(k, len(train)):
        joint[train[i - k:i + 1]] += 1
        ctx[train[i - k:i]] += 1
    total = 0.0
    for i in range(k, len(val)):
        total -= math.log2((joint[val[i - k:i + 1]] + alpha) / (ctx[val[i - k:i]] + alpha * 256))
    return total / (len(val) - k)


for k in range(4):
    print(f"{k} previous bytes: {bits(k):.3f} bits per byte")
