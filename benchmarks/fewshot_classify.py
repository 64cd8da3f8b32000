#!/usr/bin/env python3
"""Few-shot classification throughput: insectml's gallery nearest neighbour vs scikit-learn
``KNeighborsClassifier(n_neighbors=1, metric="cosine")``.

One run: a 355-class × 3-shot gallery and 100,000 queries of unit-norm 128-d embeddings
(drawn around class centres, float32), classified by both; the predictions are asserted
equal, then queries/second and ours ÷ scikit-learn are printed.

    python benchmarks/fewshot_classify.py [--queries 100000] [--classes 355] [--shots 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=100_000, help="query embeddings (default: 100000)")
    parser.add_argument("--classes", type=int, default=355, help="gallery classes (default: 355)")
    parser.add_argument("--shots", type=int, default=3, help="gallery images per class (default: 3)")
    parser.add_argument("--dim", type=int, default=128, help="embedding size (default: 128)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads, both sides (default: 1)")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import numpy as np
    from insectml.fewshot.gallery import nearest_neighbour
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(0)

    def unit(x):
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    centres = unit(rng.normal(size=(args.classes, args.dim)))
    gallery = unit(
        np.repeat(centres, args.shots, axis=0) + rng.normal(scale=0.06, size=(args.classes * args.shots, args.dim))
    )
    labels = np.repeat(np.arange(args.classes), args.shots)
    truth = rng.integers(args.classes, size=args.queries)
    queries = unit(centres[truth] + rng.normal(scale=0.06, size=(args.queries, args.dim)))

    tic = time.perf_counter()
    knn = KNeighborsClassifier(n_neighbors=1, metric="cosine", algorithm="brute").fit(gallery, labels)
    theirs = knn.predict(queries)
    t_sklearn = time.perf_counter() - tic

    tic = time.perf_counter()
    ours = labels[nearest_neighbour(queries, gallery)]
    t_ours = time.perf_counter() - tic

    agree = float((ours == theirs).mean())
    assert agree == 1.0, f"predictions differ on {(ours != theirs).sum()} of {args.queries} queries"
    print(
        f"{args.queries:,} queries × gallery of {args.classes} classes × {args.shots} shots, {args.dim}-d, {args.threads} thread(s)"
    )
    print(
        f"scikit-learn KNeighborsClassifier(1, cosine): {args.queries / t_sklearn:,.0f} queries/s ({t_sklearn:.2f} s)"
    )
    print(f"insectml nearest_neighbour:                    {args.queries / t_ours:,.0f} queries/s ({t_ours:.2f} s)")
    print(f"same predictions: {agree:.0%}; accuracy {float((ours == truth).mean()):.3f}")
    print(f"ratio ours/scikit-learn: {t_sklearn / t_ours:.1f}× (target ≥ 5×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
