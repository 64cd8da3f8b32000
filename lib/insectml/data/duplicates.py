"""Duplicates in a data set: found exactly, then grouped, dropped or refused.

Near-duplicates are pairs of 64-bit perceptual hashes (dHash) within a Hamming distance
``d``. :func:`near_pairs` finds every such pair without comparing every hash with every
other (multi-index hashing): the 64 bits are cut into ``d + 1`` disjoint blocks, and by
pigeonhole two hashes within distance ``d`` agree exactly on at least one block. Hashes are
bucketed by each block's value (a numpy sort), only hashes sharing a bucket are compared
(popcount), and a pair is kept from the first block it agrees on, so none is listed twice.
The work grows with the number of candidate pairs, about ``n² / 2^(64 / (d + 1))`` for
random hashes, instead of ``n²``; for the usual ``d`` of a few bits that is near linear.

:func:`equal_pairs` pairs equal keys (file digests: exact duplicates). :func:`resolve`
applies a policy to the clusters the pairs form (union-find):

- ``group``: a cluster spanning several groups merges those groups (every item of them
  takes the smallest group name), so no split can put duplicates on two sides;
- ``drop``: each cluster keeps its first member by name, the others are dropped;
- ``error``: every pair across groups is a problem (the data is refused).

Each merge, drop or duplicate within a group is a warning line naming both files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

POLICIES = ("group", "drop", "error")
HASH_BITS = 64


class UnionFind:
    """Disjoint sets over hashable items (path halving; the smaller root wins, so a set's
    root is its smallest item and results do not depend on the order of unions)."""

    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, x):
        parent = self.parent
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a, b) -> bool:
        """Join the sets of ``a`` and ``b``; False when they were one set already."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        if rb < ra:
            ra, rb = rb, ra
        self.parent[rb] = ra
        return True


def _empty_pairs() -> np.ndarray:
    return np.zeros((0, 3), dtype=np.int64)


def _sorted_pairs(i: np.ndarray, j: np.ndarray, distance: np.ndarray) -> np.ndarray:
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    order = np.lexsort((hi, lo))
    return np.stack([lo[order], hi[order], distance[order]], axis=1).astype(np.int64)


def _blocks(n_blocks: int) -> list[tuple[int, int]]:
    """(shift, width) of ``n_blocks`` disjoint bit blocks covering the 64 bits, widths
    differing by at most one."""
    base, extra = divmod(HASH_BITS, n_blocks)
    blocks, shift = [], 0
    for b in range(n_blocks):
        width = base + (1 if b < extra else 0)
        blocks.append((shift, width))
        shift += width
    return blocks


def _same_key_pairs(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i, j), i < j, with ``key[i] == key[j]``."""
    n = len(key)
    order = np.argsort(key, kind="stable")  # stable: equal keys keep i < j
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    lengths = np.diff(np.r_[starts, n])
    run_end = np.repeat(starts + lengths, lengths)  # exclusive end of each position's run
    positions = np.arange(n)
    first, second = [], []
    # Offset k pairs each position with the one k further on in the same run; the active
    # positions shrink as k passes their run's end, so the work is the number of pairs.
    active = positions[run_end - positions > 1]
    k = 1
    while active.size:
        first.append(order[active])
        second.append(order[active + k])
        k += 1
        active = active[run_end[active] - active > k]
    if not first:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(first), np.concatenate(second)


def near_pairs(hashes: Sequence[int] | np.ndarray, max_distance: int) -> np.ndarray:
    """Every pair of 64-bit ``hashes`` within Hamming distance ``max_distance``, exactly.

    Returns an int64 array of rows ``(i, j, distance)``, ``i < j`` indexing ``hashes``,
    sorted by ``(i, j)``; each pair once.
    """
    h = np.asarray([int(v) for v in hashes] if not isinstance(hashes, np.ndarray) else hashes, dtype=np.uint64)
    d = int(max_distance)
    if d < 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance}")
    if len(h) < 2:
        return _empty_pairs()
    if d >= HASH_BITS:  # every pair qualifies
        i, j = np.triu_indices(len(h), k=1)
        return _sorted_pairs(i, j, np.bitwise_count(h[i] ^ h[j]).astype(np.int64))
    keys = [(h >> np.uint64(shift)) & np.uint64((1 << width) - 1) for shift, width in _blocks(d + 1)]
    found_i, found_j, found_d = [], [], []
    for b, key in enumerate(keys):
        i, j = _same_key_pairs(key)
        distance = np.bitwise_count(h[i] ^ h[j])
        close = distance <= d
        i, j, distance = i[close], j[close], distance[close]
        # a pair agreeing on an earlier block was found there already (checked after the
        # distance, on the few candidates that are close)
        fresh = np.ones(len(i), dtype=bool)
        for earlier in keys[:b]:
            fresh &= earlier[i] != earlier[j]
        found_i.append(i[fresh])
        found_j.append(j[fresh])
        found_d.append(distance[fresh].astype(np.int64))
    return _sorted_pairs(np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_d))


def equal_pairs(keys: Sequence[str]) -> np.ndarray:
    """Exact duplicates by key (a file digest): each item whose key an earlier item has,
    paired with the first item of that key; rows ``(first, later, 0)`` sorted."""
    first: dict[str, int] = {}
    rows = []
    for j, key in enumerate(keys):
        i = first.setdefault(key, j)
        if i != j:
            rows.append((i, j, 0))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def clusters(n: int, pairs: np.ndarray) -> list[int]:
    """The cluster of each of ``n`` items linked by ``pairs`` (union-find): the smallest
    index in its cluster, so an item without duplicates is its own cluster."""
    sets = UnionFind()
    for i, j, _ in pairs.tolist():
        sets.union(i, j)
    return [sets.find(k) for k in range(n)]


@dataclass(frozen=True)
class Resolution:
    """The outcome of a duplicates policy over a data set's items."""

    groups: tuple[str, ...]  # each item's group afterwards (merged under 'group')
    keep: tuple[bool, ...]  # False: dropped under 'drop'
    problems: tuple[str, ...]  # 'error': one per pair across groups
    warnings: tuple[str, ...]  # each merge, drop, and duplicate within one group
    merged: int  # group merges made
    dropped: int  # items dropped


def resolve(
    names: Sequence[str],
    groups: Sequence[str],
    pairs: np.ndarray,
    policy: str,
    digests: Sequence[str] | None = None,
    hash_name: str = "dHash",
) -> Resolution:
    """Apply ``policy`` (group | drop | error) to the duplicate ``pairs`` (rows ``(i, j,
    distance)`` over ``names``/``groups``). A pair whose ``digests`` are equal is named
    identical, any other a near-duplicate at its ``hash_name`` distance."""
    if policy not in POLICIES:
        raise ValueError(f"duplicates policy must be one of {', '.join(POLICIES)}; got {policy!r}")

    def relation(i: int, j: int, distance: int) -> str:
        if digests is not None and digests[i] == digests[j]:
            return f"{names[j]}: identical to {names[i]}"
        return f"{names[j]}: near-duplicate ({hash_name} distance {distance}) of {names[i]}"

    rows = pairs.tolist()
    n = len(names)
    problems: list[str] = []
    warnings: list[str] = []
    if policy == "error":  # every pair, as found
        for i, j, distance in rows:
            if groups[i] == groups[j]:
                warnings.append(f"{relation(i, j, distance)} in the same group")
            else:
                problems.append(f"{relation(i, j, distance)} in another group ({groups[i]}, not {groups[j]})")
        return Resolution(tuple(groups), (True,) * n, tuple(problems), tuple(warnings), 0, 0)

    # Closest pairs first, and only those that join two clusters: one line per duplicate,
    # naming its nearest partner, however large the cluster.
    rows.sort(key=lambda r: (r[2], r[0], r[1]))
    items = UnionFind()
    linked = [(i, j, distance) for i, j, distance in rows if items.union(i, j)]

    if policy == "drop":
        members: dict[int, list[int]] = {}
        for k in range(n):
            members.setdefault(items.find(k), []).append(k)
        kept = {root: min(ks, key=lambda k: names[k]) for root, ks in members.items()}
        partner: dict[int, tuple[int, int]] = {}  # item → (nearest partner, distance)
        for i, j, distance in rows:
            partner.setdefault(i, (j, distance))
            partner.setdefault(j, (i, distance))
        keep = [kept[items.find(k)] == k for k in range(n)]
        for k in sorted((k for k in range(n) if not keep[k]), key=lambda k: names[k]):
            other, distance = partner[k]
            first = kept[items.find(k)]
            warnings.append(f"{relation(other, k, distance)}; dropped, keeping {names[first]}")
        return Resolution(tuple(groups), tuple(keep), (), tuple(warnings), 0, n - sum(keep))

    sets = UnionFind()  # over group names
    merged = 0
    for i, j, distance in linked:
        gi, gj = groups[i], groups[j]
        if gi == gj:
            warnings.append(f"{relation(i, j, distance)} in the same group")
        elif sets.union(gi, gj):
            merged += 1
            a, b = sorted((gi, gj))
            warnings.append(f"{relation(i, j, distance)} in group {gi}; groups {a}, {b} merged")
        else:
            warnings.append(f"{relation(i, j, distance)} in group {gi}; their groups are merged already")
    return Resolution(tuple(sets.find(g) for g in groups), (True,) * n, (), tuple(warnings), merged, 0)
