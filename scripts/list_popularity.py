"""How popular the items a trained model recommends are: the mean ln(1 + training count) of the
top-K lists of every user with training history, read from `painvrl recommend` (seen items
excluded, as in evaluation). Against an OOD test drawn against popularity (docs/data-format.md)
it tells whether a change in OOD recall goes with recommending less popular items.

Usage: python3 scripts/list_popularity.py DATA_DIR RUN_DIR [RUN_DIR ...] [--k K] [--bin PATH]
(PATH defaults to target/release/painvrl; build it with `cargo build --release`). Prints one
line per run: the mean, the number of distinct items across all lists, and the users ranked."""
import argparse
import math
import os
import subprocess
import sys
import tempfile
from collections import Counter


def training_counts(data_dir):
    """Item → training count, and the users with training history, from DATA_DIR/train.tsv."""
    counts, users = Counter(), set()
    path = os.path.join(data_dir, "train.tsv")
    if not os.path.isfile(path):
        sys.exit(f"{path}: no such file (DATA_DIR must hold train.tsv)")
    with open(path) as f:
        for n, line in enumerate(f, 1):
            fields = line.split()
            if not fields or not fields[0].isdigit():
                continue  # header or blank line
            if len(fields) < 2 or not fields[1].isdigit():
                sys.exit(f"{path}, line {n}: expected 'user<TAB>item', got {line.strip()!r}")
            users.add(int(fields[0]))
            counts[int(fields[1])] += 1
    if not users:
        sys.exit(f"{path}: no interactions")
    return counts, sorted(users)


def list_popularity(binary, run_dir, users_file, counts, k):
    """(mean ln(1 + count) over all recommended items, distinct items, users) of one run."""
    out = subprocess.run(
        [binary, "recommend", "--run", run_dir, "--users", users_file, "--k", str(k)],
        capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{run_dir}: painvrl recommend failed: {out.stderr.strip()}")
    logs, items, users = [], set(), set()
    for line in out.stdout.splitlines()[1:]:  # user, rank, item, score
        user, _, item, _ = line.split("\t")
        logs.append(math.log1p(counts[int(item)]))
        items.add(int(item))
        users.add(int(user))
    return sum(logs) / len(logs), len(items), len(users)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data")
    p.add_argument("runs", nargs="+")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--bin", default="target/release/painvrl")
    a = p.parse_args()
    counts, users = training_counts(a.data)
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
        f.write("\n".join(map(str, users)) + "\n")
        f.flush()
        for run in a.runs:
            mean, distinct, ranked = list_popularity(a.bin, run, f.name, counts, a.k)
            print(f"{run}\tmean ln(1+pop)@{a.k} {mean:.3f}\tdistinct items {distinct}\tusers {ranked}")


if __name__ == "__main__":
    main()
