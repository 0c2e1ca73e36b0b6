"""Independent NumPy re-implementation of painvrl's synthetic generator (same distributions,
a different random stream) and the Bayes-optimal environment labels of its training clicks:
argmax_e P(e | u, i, items taken), from the generator's true parameters. Their NMI with the
planted labels bounds what any environment inference can reach on such a set.

Usage (needs NumPy): python3 scripts/synthetic_bayes_nmi.py — prints, per family of
`painvrl synth` at its defaults, the mean ± sd over generator seeds 0–2 (docs/method.md)."""
import numpy as np

def unit(rng, n, d):
    x = rng.standard_normal((n, d)); return x / np.linalg.norm(x, axis=1, keepdims=True)

def nmi(a, b):
    ka, kb = a.max() + 1, b.max() + 1
    j = np.zeros((ka, kb))
    np.add.at(j, (a, b), 1); j /= len(a)
    pa, pb = j.sum(1), j.sum(0)
    h = lambda p: -(p[p > 0] * np.log(p[p > 0])).sum()
    nz = j > 0
    mi = (j[nz] * np.log(j[nz] / np.outer(pa, pb)[nz])).sum()
    return mi / ((h(pa) + h(pb)) / 2)

def run(family, seed, users=300, items=400, di=8, dv=8, per_user=5, inv=3.0, var=3.0, spread=0.5, n_envs=2):
    rng = np.random.default_rng(seed)
    prefs, z, v = unit(rng, users, di), unit(rng, items, di), unit(rng, items, dv)
    b = unit(rng, users, dv)
    if family == "exposure": b = np.repeat(unit(rng, 1, dv), users, 0)
    if family == "mix": b = 0.5 * (b + unit(rng, 1, dv))
    s = np.array([var * (1 + spread * (2 * e / (n_envs - 1) - 1)) for e in range(n_envs)])
    base, spur = inv * prefs @ z.T, b @ v.T  # users × items
    truth, bayes = [], []
    for u in range(users):
        taken = np.zeros(items, bool)
        for _ in range(4 * per_user):
            e = rng.integers(n_envs)
            logit = base[u] + s[e] * spur[u]
            g = logit - np.log(-np.log(rng.uniform(np.finfo(float).eps, 1, items)))
            g[taken] = -np.inf
            i = int(np.argmax(g))
            # posterior over environments of this click, with the true parameters
            ll = []
            for f in range(n_envs):
                l = base[u] + s[f] * spur[u]; l = np.where(taken, -np.inf, l)
                m = l.max(); ll.append(l[i] - m - np.log(np.exp(l - m).sum()))
            taken[i] = True
            truth.append(e); bayes.append(int(np.argmax(ll)))
    return nmi(np.array(bayes), np.array(truth)), np.mean(np.array(bayes) == np.array(truth))

for fam in ["affinity", "exposure", "mix"]:
    r = [run(fam, s) for s in range(3)]
    print(fam, "Bayes NMI %.4f ± %.4f, accuracy %.3f" % (np.mean([x[0] for x in r]), np.std([x[0] for x in r], ddof=1), np.mean([x[1] for x in r])))
