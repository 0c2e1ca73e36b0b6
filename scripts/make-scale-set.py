#!/usr/bin/env python3
"""Writes a TikTok-sized dataset of random interactions for speed and memory measurements only
(no planted structure): 36,656 users x 76,085 items, about 660k training interactions with
Zipf-like item popularity, three 128-d f16 modalities. Canonical layout (docs/data-format.md).

Usage: scripts/make-scale-set.py OUT_DIR [--users N] [--items N] [--per-user K] [--seed S]
"""
import argparse, os
import numpy as np

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--users", type=int, default=36656)
p.add_argument("--items", type=int, default=76085)
p.add_argument("--per-user", type=int, default=18, help="training interactions per user (val and test get 1/6 each)")
p.add_argument("--seed", type=int, default=0)
a = p.parse_args()
rng = np.random.default_rng(a.seed)
os.makedirs(a.out, exist_ok=True)
weights = 1.0 / np.arange(1, a.items + 1) ** 0.8
weights /= weights.sum()
perm = rng.permutation(a.items)
n_val = max(1, a.per_user // 6)
per = a.per_user + 2 * n_val
splits = {"train": [], "val": [], "test": []}
draws = rng.choice(a.items, size=(a.users, per), p=weights)  # one CDF for every user
for u in range(a.users):
    items = perm[np.unique(draws[u])]
    rng.shuffle(items)
    cut = len(items) - 2 * n_val
    for name, part in (("train", items[:cut]), ("val", items[cut:cut + n_val]), ("test", items[cut + n_val:])):
        splits[name].extend((u, int(i)) for i in part)
for name, pairs in splits.items():
    with open(os.path.join(a.out, f"{name}.tsv"), "w") as f:
        f.write("".join(f"{u}\t{i}\n" for u, i in pairs))
for m in ("image", "text", "audio"):
    np.save(os.path.join(a.out, f"{m}_feat.npy"), rng.standard_normal((a.items, 128)).astype(np.float16))
print({k: len(v) for k, v in splits.items()})
