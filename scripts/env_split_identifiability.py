"""Can a mixture likelihood find the planted environments of a `painvrl synth` set?

A diagnostic of issue #19's environment inference (docs/method.md, "What a per-click split
needs — session 32"). On one synthetic set it fits, with full-catalogue softmax likelihoods:

1. one shared scoring model s(u, i) = p_u · (x_i W) on every training click (`--dim` factors);
2. with p and W frozen, per-environment gains on every content dimension,
   s_e(u, i) = p_u · ((x_i ⊙ g_e) W) + x_i · a_e, two ways:
   - *supervised*: on the planted labels (`train_env.tsv`), the split an inference would
     reach if its likelihood favoured the planted structure;
   - *mixture*: by the marginal likelihood Σ log ½ Σ_e P(i | u, e), with no labels — what
     an unsupervised inference of this model family optimises (best of `--restarts`).

For each it prints the per-click marginal loss (lower is better), the NMI of the posterior's
argmax labels with the planted ones (arithmetic-mean normalisation, as
scripts/synthetic_bayes_nmi.py) and the ROC-AUC with which |g_1 − g_0| ranks the planted variant
dimensions above the invariant ones. With `--out DIR` it writes two copies of the set whose
`train_env.tsv` holds each fit's labels (`DIR/supervised`, `DIR/mixture`), for
`painvrl train --config … ` with `[envs] strategy = "given"`.

Features are L2-normalised per modality, as `painvrl train` loads them. Runs with the Python of
the libtorch set-up (it has torch, not NumPy):
    ~/.cache/painvrl/torch-2.13.0/bin/python scripts/env_split_identifiability.py DIR [--out OUT]
"""
import argparse
import ast
import json
import math
import shutil
import struct
from collections import Counter
from pathlib import Path

import torch


def read_npy(path):
    """A little-endian float32 .npy file as a tensor (the layout `painvrl synth` writes)."""
    raw = Path(path).read_bytes()
    if raw[:6] != b"\x93NUMPY":
        raise SystemExit(f"{path}: not a .npy file")
    header_len = struct.unpack("<H", raw[8:10])[0]
    header = ast.literal_eval(raw[10:10 + header_len].decode())  # a dict literal by the format's spec
    if header["descr"] != "<f4" or header["fortran_order"]:
        raise SystemExit(f"{path}: expected C-ordered <f4, found {header}")
    return torch.frombuffer(bytearray(raw[10 + header_len:]), dtype=torch.float32).reshape(header["shape"])


def read_pairs(path):
    lines = Path(path).read_text().strip().split("\n")[1:]
    return torch.tensor([[int(x) for x in line.split("\t")] for line in lines])


def nmi(a, b):
    n = len(a)
    ca, cb, cab = Counter(a), Counter(b), Counter(zip(a, b))
    entropy = lambda c: -sum(v / n * math.log(v / n) for v in c.values())
    mi = sum(v / n * math.log(v * n / (ca[x] * cb[y])) for (x, y), v in cab.items())
    return mi / max(1e-12, (entropy(ca) + entropy(cb)) / 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--dim", type=int, default=8)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--restarts", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)

    for name in ["train.tsv", "train_env.tsv", "invariant_dims.json"]:
        if not (args.data / name).is_file():
            raise SystemExit(f"{args.data / name}: missing; this diagnostic needs a `painvrl synth` set")
    parts = [read_npy(p) for p in sorted(args.data.glob("*_feat.npy"))]
    if not parts:
        raise SystemExit(f"{args.data}: no *_feat.npy feature files")
    x = torch.cat([p / p.norm(dim=1, keepdim=True).clamp_min(1e-12) for p in parts], 1)
    train = read_pairs(args.data / "train.tsv")
    planted = torch.tensor([int(v) for v in (args.data / "train_env.tsv").read_text().split()])
    invariant = set(json.loads((args.data / "invariant_dims.json").read_text()))
    if len(train) == 0 or len(train) != len(planted):
        raise SystemExit(f"{args.data / 'train_env.tsv'}: {len(planted)} labels for {len(train)} training clicks")
    users, items = train[:, 0], train[:, 1]
    n_users, (n_items, c), n_envs = int(users.max()) + 1, x.shape, int(planted.max()) + 1

    p = (0.1 * torch.randn(n_users, args.dim)).requires_grad_()
    w = ((torch.rand(c, args.dim) * 2 - 1) / math.sqrt(c)).requires_grad_()

    def log_likelihoods(gains, exposure):
        """[E, clicks]: log P(i | u, e) under a softmax over the whole catalogue."""
        projected = (x[None] * gains[:, None, :]) @ w  # E, items, dim
        scores = torch.einsum("ud,eid->eui", p, projected) + (x @ exposure.T).T[:, None, :]
        return scores[:, users, items] - scores.logsumexp(2)[:, users]

    def fit(params, loss_of, lr):
        opt = torch.optim.Adam(params, lr=lr)
        for _ in range(args.steps):
            loss = loss_of()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return loss.item()

    shared = torch.ones(1, c)
    no_exposure = torch.zeros(1, c)
    base = fit([p, w], lambda: -log_likelihoods(shared, no_exposure).mean(), 1e-2)
    print(f"{args.data}: shared model loss {base:.4f} per click (log {n_items} = {math.log(n_items):.4f})")
    p.requires_grad_(False)
    w.requires_grad_(False)

    def marginal(ll):
        return -(ll.logsumexp(0) - math.log(n_envs)).mean()

    def gain_fit(supervised):
        g = (1 + 0.5 * torch.randn(n_envs, c)).requires_grad_()
        a = torch.zeros(n_envs, c, requires_grad=True)
        if supervised:
            fit([g, a], lambda: -log_likelihoods(g, a).gather(0, planted[None]).mean(), 3e-2)
        else:
            fit([g, a], lambda: marginal(log_likelihoods(g, a)), 3e-2)
        return g.detach(), a.detach()

    fits = {"supervised": gain_fit(True)}
    mixtures = [gain_fit(False) for _ in range(args.restarts)]
    with torch.no_grad():
        fits["mixture"] = min(mixtures, key=lambda ga: marginal(log_likelihoods(*ga)).item())
        for name, (g, a) in fits.items():
            ll = log_likelihoods(g, a)
            labels = ll.argmax(0)
            contrast = (g.max(0).values - g.min(0).values).abs()
            variant = [d for d in range(c) if d not in invariant]
            auc = sum(float(contrast[v] > contrast[i]) + 0.5 * float(contrast[v] == contrast[i])
                      for v in variant for i in invariant) / (len(variant) * len(invariant))
            print(f"  {name:10s} marginal loss {marginal(ll).item():.4f}  NMI {nmi(labels.tolist(), planted.tolist()):.4f}"
                  f"  gain-contrast ROC-AUC {auc:.3f}  sizes {torch.bincount(labels, minlength=n_envs).tolist()}")
            if args.out:
                copy = args.out / name
                copy.mkdir(parents=True, exist_ok=True)
                for f in args.data.iterdir():
                    if f.is_file():
                        shutil.copy(f, copy / f.name)
                (copy / "train_env.tsv").write_text("".join(f"{v}\n" for v in labels.tolist()))


if __name__ == "__main__":
    main()
