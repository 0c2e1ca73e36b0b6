"""PyTorch-eager reference for the same work painvrl's benches measure, on the same data, shapes
and machine: one UltraGCN training epoch (batch 1024, 50 negatives, 64-d ID + 64-d projected
content, Adam) and full-ranking evaluation (block matmul, -inf on seen items, top-50).

Run with the libtorch venv that scripts/setup-libtorch.sh made (numpy is installed on demand):
    ~/.cache/painvrl/torch-2.13.0/bin/python benches/pytorch_reference.py [--threads 2]
Prints one JSON line of timings in seconds.
"""
import argparse, json, os, subprocess, sys, time

try:
    import numpy as np
except ImportError:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", "numpy"])
    import numpy as np
import torch
import torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "data", "tiktok"))
ap.add_argument("--epochs", type=int, default=3)
args = ap.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)
rng = np.random.default_rng(0)


def pairs(name):
    a = np.loadtxt(os.path.join(args.data, name), dtype=np.int64, ndmin=2)
    return a[:, 0], a[:, 1]


tu, ti = pairs("train.tsv")
feats = []
for m in sorted(f for f in os.listdir(args.data) if f.endswith("_feat.npy")):
    x = np.load(os.path.join(args.data, m)).astype(np.float32)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    feats.append(np.where(n > 0, x / np.maximum(n, 1e-12), x))
x = torch.from_numpy(np.concatenate(feats, 1))
n_users, n_items = int(tu.max()) + 1, x.shape[0]
du = np.bincount(tu, minlength=n_users).astype(np.float32)
di = np.bincount(ti, minlength=n_items).astype(np.float32)
beta_u = torch.from_numpy(np.where(du > 0, np.sqrt(du + 1) / np.maximum(du, 1), 0).astype(np.float32))
beta_i = torch.from_numpy((1 / np.sqrt(di + 1)).astype(np.float32))
seen = [set() for _ in range(n_users)]
for u, i in zip(tu, ti):
    seen[u].add(i)

d_id, d_c, k, bs = 64, 64, 50, 1024
user = torch.nn.Parameter(torch.randn(n_users, d_id + d_c) * 0.01)
item = torch.nn.Parameter(torch.randn(n_items, d_id) * 0.01)
proj = torch.nn.Parameter(torch.empty(x.shape[1], d_c).uniform_(-x.shape[1] ** -0.5, x.shape[1] ** -0.5))
opt = torch.optim.Adam([user, item, proj], lr=5e-3)


def negatives(users):
    out = rng.integers(0, n_items, size=(len(users), k))
    for r, u in enumerate(users):  # resample the (rare) positives
        for c in range(k):
            while out[r, c] in seen[u]:
                out[r, c] = rng.integers(0, n_items)
    return out


def epoch():
    order = rng.permutation(len(tu))
    for s in range(0, len(order), bs):
        p = order[s:s + bs]
        u = torch.from_numpy(tu[p]); i = torch.from_numpy(ti[p]); j = torch.from_numpy(negatives(tu[p]))
        all_items = torch.cat([item, x @ proj], 1)
        pu = user[u]; ep = all_items[i]; en = all_items[j]
        pos = (pu * ep).sum(1); neg = torch.bmm(en, pu.unsqueeze(2)).squeeze(2)
        wp = 1e-6 + beta_u[u] * beta_i[i]; wn = 1e-6 + beta_u[u].unsqueeze(1) * beta_i[j]
        loss = (F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos), weight=wp, reduction="none")
                + 10 * F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg), weight=wn, reduction="none").mean(1)).mean()
        loss = loss + 3e-3 * (pu.square().sum() + ep.square().sum()) / len(p)
        opt.zero_grad(); loss.backward(); opt.step()


def evaluate(block=9308):
    with torch.no_grad():
        all_items = torch.cat([item, x @ proj], 1)
        for s in range(0, n_users, block):
            sc = user[s:s + block] @ all_items.T
            rows = [r for r in range(sc.shape[0]) for _ in seen[s + r]]
            cols = [c for r in range(sc.shape[0]) for c in seen[s + r]]
            sc[rows, cols] = float("-inf")
            sc.topk(50, dim=1).indices.tolist()


epoch()  # warm-up
t = time.perf_counter()
for _ in range(args.epochs):
    epoch()
t_epoch = (time.perf_counter() - t) / args.epochs
evaluate()
t = time.perf_counter()
for _ in range(3):
    evaluate()
t_eval = (time.perf_counter() - t) / 3
print(json.dumps({"torch": torch.__version__, "threads": args.threads, "ultragcn_epoch_s": round(t_epoch, 3), "eval_s": round(t_eval, 3)}))
