#!/usr/bin/env python3
"""Near-duplicate search: the old quadratic dHash loop vs insectml's multi-index hashing.

Both search the same 64-bit hashes (random, plus bursts of near-identical frames) for
every pair within Hamming distance ``--bits``, in one run; prints the time of each at
1k, 2k and 4k hashes (the new one best of 5), the ratio old/new, and asserts both find
the same pairs. At ``--large`` hashes (50k) only the new search runs (the old one would
take minutes), then the default duplicates policy (union-find, group merges) on its pairs.

    python benchmarks/duplicates.py [--bits 4] [--large 50000] [--burst 0.1] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))


def old_pairs(values: np.ndarray, bits: int) -> set[tuple[int, int]]:
    """The search of insectml.detector.validate.find_duplicates before multi-index hashing
    (its comparison loop, kept here only to measure against): every hash against every later one."""
    found = set()
    for i in range(len(values) - 1):
        distance = np.array([bin(int(v)).count("1") for v in values[i + 1 :] ^ values[i]])
        for j in np.flatnonzero(distance <= bits) + i + 1:
            found.add((i, int(j)))
    return found


def hashes(n: int, burst: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` random 64-bit hashes, a share ``burst`` of them in bursts of 2-20 frames a few
    bits from their burst's first frame (as consecutive camera frames are)."""
    values = rng.integers(0, np.iinfo(np.uint64).max, size=n, dtype=np.uint64, endpoint=True)
    k = 0
    while k < int(n * burst):
        size = int(rng.integers(2, 21))
        for m in range(1, min(size, n - k)):
            flip = np.uint64(0)
            for b in rng.choice(64, size=int(rng.integers(0, 6)), replace=False):
                flip |= np.uint64(1) << np.uint64(b)
            values[k + m] = values[k] ^ flip
        k += size
    return rng.permutation(values)


def timed(fn, *args, repeats: int = 1):
    """(best time of ``repeats`` calls in s, the result)."""
    best = float("inf")
    for _ in range(repeats):
        tic = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - tic)
    return best, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, default=4, help="Hamming distance of near-duplicates (default: 4)")
    parser.add_argument("--large", type=int, default=50_000, help="hashes for the new search alone (default: 50000)")
    parser.add_argument("--burst", type=float, default=0.1, help="share of hashes in bursts (default: 0.1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from insectml.data.duplicates import near_pairs, resolve

    rng = np.random.default_rng(args.seed)
    print(f"near-duplicate search, dHash distance <= {args.bits}, {args.burst:.0%} of hashes in bursts of 2-20")
    print(f"{'hashes':>8} {'pairs':>8} {'old s':>9} {'new s':>9} {'old/new':>9}")
    for n in (1000, 2000, 4000):
        values = hashes(n, args.burst, rng)
        old_s, old = timed(old_pairs, values, args.bits)
        new_s, new = timed(near_pairs, values, args.bits, repeats=5)
        assert old == {(int(i), int(j)) for i, j, _ in new}, "the two searches disagree"
        print(f"{n:>8} {len(new):>8} {old_s:>9.3f} {new_s:>9.4f} {old_s / new_s:>9.0f}")
    values = hashes(args.large, args.burst, rng)
    new_s, new = timed(near_pairs, values, args.bits, repeats=5)
    print(f"{args.large:>8} {len(new):>8} {'-':>9} {new_s:>9.4f} {'-':>9}")
    names = [f"img_{k:06d}.jpg" for k in range(args.large)]
    groups = [f"event_{k // 5:05d}" for k in range(args.large)]
    policy_s, done = timed(resolve, names, groups, new, "group")
    print(f"group policy on those pairs: {policy_s:.3f} s, {done.merged} group merges, {len(done.warnings)} warnings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
