"""PyTorch-eager reference for the same work painvrl's benches measure, on the same data, shapes
and machine: one UltraGCN training epoch (batch 1024, 50 negatives, 64-d ID + 64-d projected
content, Adam), full-ranking evaluation (block matmul, -inf on seen items, top-50), one
mask-learning step (IRMv1 two-half penalty with second-order gradients, MGDA weights, 10
environments x 1024 interactions, 4 negatives) and one batched environment-inference iteration
(E = 10 stacked models, 2 epochs of 10 x 256 interactions, then reassignment of every interaction).

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


def negatives(users, kk=k):
    out = rng.integers(0, n_items, size=(len(users), kk))
    for r, u in enumerate(users):  # resample the (rare) positives
        for c in range(kk):
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
        pos = (pu * ep).sum(1); neg = (en * pu.unsqueeze(1)).sum(2)
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


def mask_step(mu, env_pos):
    m = torch.sigmoid(mu)
    all_items = torch.cat([item, (x * m) @ proj], 1)
    scale = torch.ones((), requires_grad=True)

    def risk(u, i, j):
        pu = user[u]
        sp = (pu * all_items[i]).sum(1) * scale
        sn = (all_items[j] * pu.unsqueeze(1)).sum(2) * scale  # as painvrl_core::ops::row_dots
        return (F.binary_cross_entropy_with_logits(sp, torch.ones_like(sp))
                + F.binary_cross_entropy_with_logits(sn, torch.zeros_like(sn)))

    risks, terms = [], []
    for pos in env_pos:
        p = rng.choice(pos, 1024)
        u = torch.from_numpy(tu[p]); i = torch.from_numpy(ti[p]); j = torch.from_numpy(negatives(tu[p], 4))
        risks.append(risk(u, i, j))
        g_a = torch.autograd.grad(risk(u[:512], i[:512], j[:512]), scale, create_graph=True)[0]
        g_b = torch.autograd.grad(risk(u[512:], i[512:], j[512:]), scale, create_graph=True)[0]
        terms.append(g_a * g_b)
    l_erm, l_irm = torch.stack(risks).mean(), torch.stack(terms).mean()
    g1 = torch.autograd.grad(l_erm, [mu, proj], retain_graph=True)
    g2 = torch.autograd.grad(l_irm, [mu, proj], retain_graph=True)
    n1 = sum((a * a).sum() for a in g1).sqrt().item() or 1.0
    n2 = sum((b * b).sum() for b in g2).sqrt().item() or 1.0
    g11 = 1.0; g22 = 1.0; g12 = sum((a * b).sum() for a, b in zip(g1, g2)).item() / (n1 * n2)
    alpha = min(max((g22 - g12) / max(g11 + g22 - 2 * g12, 1e-12), 0.0), 1.0)
    mask_opt.zero_grad()
    (alpha / n1 * l_erm + (1 - alpha) / n2 * l_irm + 0.1 * mu.square().sum()).backward()
    mask_opt.step()


def env_iteration(labels, e=10, dim=32, bs=256, k=4, epochs=2, min_steps=200, partition_sample=2048):
    c = x.shape[1]
    users = torch.nn.Parameter(torch.randn(1, n_users, dim) * 0.1)
    eproj = torch.nn.Parameter(torch.empty(1, c, dim).uniform_(-c ** -0.5, c ** -0.5))
    gain = torch.nn.Parameter(torch.ones(e, dim))
    exposure = torch.nn.Parameter(torch.zeros(e, c))
    eopt = torch.optim.Adam([users, eproj, gain, exposure], lr=1e-2)

    def scores(u, i):  # u, i: [e, b]
        xi = x[i]
        return (users[0][u] * gain.unsqueeze(1) * (xi @ eproj)).sum(2) + torch.bmm(xi, exposure.unsqueeze(2)).squeeze(2)

    env_pos = [np.flatnonzero(labels == k_) for k_ in range(e)]
    for _ in range(max(max(len(tu) // (bs * e), 1) * epochs, min_steps)):
        p = np.stack([rng.choice(pos, bs) for pos in env_pos])
        u = torch.from_numpy(tu[p]); i = torch.from_numpy(ti[p])
        j = torch.from_numpy(negatives(tu[p].reshape(-1), k).reshape(e, bs * k))
        sp = scores(u, i); sn = scores(u.repeat_interleave(k, 1), j)
        loss = (F.binary_cross_entropy_with_logits(sp, torch.ones_like(sp))
                + F.binary_cross_entropy_with_logits(sn, torch.zeros_like(sn))) * e
        eopt.zero_grad(); loss.backward(); eopt.step()
    with torch.no_grad():
        # each user's log-partition over a sample of the catalogue, then the likeliest environment
        ids = torch.from_numpy(rng.choice(x.shape[0], min(partition_sample, x.shape[0]), replace=False))
        xs = x[ids]
        logits = (users[0].unsqueeze(0) * gain.unsqueeze(1)) @ (xs @ eproj[0]).T + (xs @ exposure.T).T.unsqueeze(1)
        log_z = torch.logsumexp(logits, 2) + np.log(x.shape[0] / len(ids))  # [e, n_users]
        u = torch.from_numpy(tu).expand(e, -1); i = torch.from_numpy(ti).expand(e, -1)
        return (scores(u, i) - log_z.gather(1, u)).argmax(0).numpy()


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
mu = torch.nn.Parameter(torch.zeros(x.shape[1]))
mask_opt = torch.optim.Adam([mu, proj], lr=1e-2)
labels = rng.integers(0, 10, len(tu))
env_pos = [np.flatnonzero(labels == e) for e in range(10)]
mask_step(mu, env_pos)  # warm-up
t = time.perf_counter()
for _ in range(5):
    mask_step(mu, env_pos)
t_mask = (time.perf_counter() - t) / 5
t = time.perf_counter()
env_iteration(labels)
t_env = time.perf_counter() - t
print(json.dumps({"torch": torch.__version__, "threads": args.threads, "ultragcn_epoch_s": round(t_epoch, 3),
                  "eval_s": round(t_eval, 3), "mask_step_s": round(t_mask, 3), "env_iteration_e10_s": round(t_env, 3)}))
