#!/usr/bin/env python3
"""Raw-pixel baselines for the labelled-subset fine-tuning of Fashion-MNIST.

For seeds 0, 1 and 2 this takes the SAME 1,000 labelled training images (100 per class) that
`nepa finetune --per-class 100 --seed S` takes (`ImageSet::take_per_class` in
crates/nepa/src/data.rs: a SplitMix64 Fisher-Yates shuffle of 0..60000, crates/nepa/src/rng.rs,
then the first 100 images of each class in that order), and fits on their raw pixels (scaled to
[0, 1], flattened to 784 values):

  1. logistic regression: scikit-learn `LogisticRegression` (lbfgs, max_iter 1000; with 10
     classes lbfgs fits the multinomial model), C chosen per seed from a fixed grid by 5-fold
     stratified cross-validation on the 1,000 labelled images only;
  2. k-NN, k = 5, Euclidean distance, uniform votes.

Both are evaluated on the full 10,000-image test set. It prints per-seed accuracies and
mean ± sample sd (ddof = 1) over the seeds, and writes them as JSON with --out.

Not run in CI. Install and run (the venv lives outside the repository):

    python3 -m venv /work/venv-baselines
    /work/venv-baselines/bin/pip install numpy scikit-learn
    /work/venv-baselines/bin/python scripts/pixel-baselines.py \
        --data data/fashion-mnist --out pixel-baselines.json

--data is a folder holding the four idx files (train-images-idx3-ubyte, train-labels-idx1-ubyte,
t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte), as `nepa finetune --data` takes it.
"""

import argparse
import json
import struct
import sys
from pathlib import Path

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

SEEDS = (0, 1, 2)
PER_CLASS = 100
C_GRID = (0.01, 0.1, 1.0, 10.0)
MASK = (1 << 64) - 1

# The first 5 indices of SplitMix64(0).shuffle(0..60000); crates/nepa/src/rng.rs asserts the
# same five numbers, so this script and `nepa finetune` pick the same images.
SEED0_FIRST5 = [14406, 19635, 56127, 29872, 40125]


class SplitMix64:
    """crates/nepa/src/rng.rs, bit for bit (Python ints masked to 64 bits)."""

    def __init__(self, seed: int):
        self.state = seed & MASK

    def next_u64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def next_f64(self) -> float:
        # (u64 >> 11) < 2^53 converts to a double exactly, and the scale is a power of two,
        # so this is the same double as Rust's.
        return (self.next_u64() >> 11) * (1.0 / (1 << 53))

    def below(self, n: int) -> int:
        # Rust: `(next_f64() * n as f64) as usize % n.max(1)`; int() truncates like `as usize`.
        return int(self.next_f64() * float(n)) % max(n, 1)

    def shuffle(self, items: list) -> None:
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]


def read_idx(path: Path, magic: int) -> np.ndarray:
    data = path.read_bytes()
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        sys.exit(f"{path}: magic {found:#x}, expected {magic:#x}")
    ndim = magic & 0xFF
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(folder: Path, prefix: str):
    images = read_idx(folder / f"{prefix}-images-idx3-ubyte", 0x803)
    labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte", 0x801)
    x = images.reshape(len(images), -1).astype(np.float64) / 255.0
    return x, labels.astype(np.int64)


def take_per_class(labels: np.ndarray, per_class: int, seed: int) -> list:
    """`ImageSet::take_per_class`: shuffle 0..n, keep the first `per_class` of each class."""
    order = list(range(len(labels)))
    SplitMix64(seed).shuffle(order)
    counts = {}
    keep = []
    for i in order:
        c = int(labels[i])
        counts[c] = counts.get(c, 0) + 1
        if counts[c] <= per_class:
            keep.append(i)
    return keep


def check_splitmix() -> None:
    order = list(range(60000))
    SplitMix64(0).shuffle(order)
    assert order[:5] == SEED0_FIRST5, f"SplitMix64 port differs from rng.rs: {order[:5]}"


def summary(values: list) -> dict:
    v = np.array(values)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)), "per_seed": [float(x) for x in v]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/fashion-mnist"),
                        help="folder with the four Fashion-MNIST idx files")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()

    check_splitmix()
    x_train, y_train = load(args.data, "train")
    x_test, y_test = load(args.data, "t10k")
    assert len(x_train) == 60000 and len(x_test) == 10000, (len(x_train), len(x_test))

    rows = []
    for seed in SEEDS:
        keep = take_per_class(y_train, PER_CLASS, seed)
        x, y = x_train[keep], y_train[keep]
        assert len(keep) == 10 * PER_CLASS and np.all(np.bincount(y) == PER_CLASS)
        folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
        cv = {
            c: float(cross_val_score(LogisticRegression(C=c, max_iter=1000), x, y, cv=folds).mean())
            for c in C_GRID
        }
        best_c = max(C_GRID, key=lambda c: cv[c])
        lr = LogisticRegression(C=best_c, max_iter=1000).fit(x, y)
        lr_acc = float(lr.score(x_test, y_test))
        knn_acc = float(KNeighborsClassifier(n_neighbors=5).fit(x, y).score(x_test, y_test))
        rows.append({"seed": seed, "first_indices": keep[:5], "logreg_C": best_c,
                     "logreg_cv_accuracy": cv, "logreg": lr_acc, "knn5": knn_acc})
        print(f"seed {seed}: logistic regression (C={best_c:g}, CV {cv[best_c]:.3f}) "
              f"{100 * lr_acc:.2f} %, 5-NN {100 * knn_acc:.2f} %", flush=True)

    lr = summary([r["logreg"] for r in rows])
    knn = summary([r["knn5"] for r in rows])
    for name, s in (("logistic regression", lr), ("5-NN", knn)):
        per_seed = ", ".join(f"{100 * v:.2f}" for v in s["per_seed"])
        print(f"{name}: {100 * s['mean']:.2f} ± {100 * s['sd']:.2f} % (seeds {per_seed})")

    if args.out:
        report = {
            "task": "Fashion-MNIST, 100 labelled training images per class "
                    "(the selection of `nepa finetune --per-class 100 --seed S`), full 10k test set",
            "features": "raw pixels / 255, flattened (784)",
            "seeds": list(SEEDS),
            "logreg": {"model": "LogisticRegression(lbfgs, multinomial, max_iter=1000)",
                       "C": f"per seed, best 5-fold stratified CV accuracy over {list(C_GRID)}",
                       **lr},
            "knn5": {"model": "KNeighborsClassifier(n_neighbors=5), Euclidean, uniform", **knn},
            "sd": "sample standard deviation (ddof=1) over the seeds",
            "per_seed": rows,
            "versions": {"numpy": np.__version__, "scikit-learn": sklearn.__version__,
                         "python": sys.version.split()[0]},
        }
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
