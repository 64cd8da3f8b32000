"""Seeded, stratified, grouped splits: train/val/test, and k folds.

No group (specimen, recording event) ever lands on two sides. Every class that lives in
at least as many groups as there are sides gets a group on every side whenever some
assignment of the groups allows it, and each side's share of every class (and of all
samples) comes as close to its target fraction as whole groups allow.

How: groups go, largest first, to the side whose targets they fill best; a class's last
unplaced groups are forced onto the sides it still lacks, which is enough when every
group holds one class. When groups hold several classes, a repair pass moves single
groups to fill what the greedy left uncovered. Whatever is still uncovered is settled by a small integer program (HiGHS, via
scipy) over the groups involved, widened until it either finds an assignment or has
proved, over every group the classes are tied to, that none exists. A last pass moves
single groups wherever that brings the sides closer to their targets.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from insectml.errors import ConfigError

SPLITS = ("train", "val", "test")

# Seconds HiGHS may spend on the exact step in all. Deciding whether classes that share
# groups can all reach every side is NP-complete (graph 3-colouring is a special case),
# so some large structures of that kind cannot be settled in any time; they get a clear
# error. Structures that occur (one class per group, or a few classes per group and
# many groups per class) never get here or are settled in well under a second.
MILP_TIME_LIMIT_S = 60.0

# Greedy order: groups within this size ratio of each other count as equally large and
# come in seeded random order, so that seeds give different splits.
_SIZE_BUCKET_RATIO = 1.25


def grouped_split(
    labels: Sequence[str],
    groups: Sequence[str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    require_every_class: bool = True,
    unit: str = "recording",
) -> list[str]:
    """Assign ``train``/``val``/``test`` to each sample, grouped and stratified.

    No group is on two sides. With ``require_every_class`` every class must have at
    least three samples from three groups; each class then gets a group on every side,
    or :class:`ConfigError` names the classes no assignment can place (groups shared
    between classes can make that impossible). Without it (detection, where the label
    is only an image's dominant class) the same is tried and given up quietly where it
    cannot be done. Each side's share of every class and of all samples is as close to
    its fraction as the groups allow. Deterministic for a ``seed``.
    """
    if not 0 < test_fraction < 0.5 or not 0 < val_fraction < 0.5:
        raise ConfigError(f"val/test fractions must be in (0, 0.5); got val={val_fraction}, test={test_fraction}")
    fractions = (1 - val_fraction - test_fraction, val_fraction, test_fraction)
    sides = _assign(labels, groups, fractions, seed, require_every_class, unit, "train/val/test split", SPLITS)
    return [SPLITS[s] for s in sides]


def grouped_kfold(
    labels: Sequence[str],
    groups: Sequence[str],
    k: int,
    seed: int,
    require_every_class: bool = True,
    unit: str = "recording",
) -> list[int]:
    """Assign a fold ``0..k-1`` to each sample, grouped and stratified.

    The same promises as :func:`grouped_split` with ``k`` equal sides: no group in two
    folds, every class (with ``require_every_class``: at least ``k`` samples from ``k``
    groups each) in every fold, folds as equal in every class and overall as the groups
    allow, deterministic for a ``seed``.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 2:
        raise ConfigError(f"the number of folds must be an integer of at least 2; got {k}")
    names = tuple(f"fold {i}" for i in range(k))
    sides = _assign(labels, groups, (1 / k,) * k, seed, require_every_class, unit, f"{k}-fold split", names)
    return sides.tolist()


@dataclass
class _Problem:
    """Groups × classes sample counts, the targets, and the assignment being built."""

    classes: np.ndarray  # class names, sorted
    members: list[np.ndarray]  # per group: the class indices it holds
    counts: list[np.ndarray]  # per group: its samples of each of those classes
    size: np.ndarray  # per group: its samples
    class_groups: list[np.ndarray]  # per class: the group indices holding it
    entry_group: np.ndarray  # the nonzero (group, class) counts, sorted by group ...
    entry_class: np.ndarray
    entry_count: np.ndarray
    group_start: np.ndarray  # ... and where each group's entries start
    weight: np.ndarray  # per class: 1 / its samples, so every class weighs the same
    target: np.ndarray  # classes × sides: samples wanted
    total_target: np.ndarray  # per side: samples wanted
    required: np.ndarray  # per class: must be on every side
    side: np.ndarray  # per group: its side, -1 while unplaced
    filled: np.ndarray  # classes × sides: samples placed
    cover: np.ndarray  # classes × sides: groups placed
    total: np.ndarray  # per side: samples placed
    n_groups_on: np.ndarray  # per side: groups placed

    def place(self, g: int, s: int, sign: int = 1) -> None:
        cs = self.members[g]
        self.filled[cs, s] += sign * self.counts[g]
        self.cover[cs, s] += sign
        self.total[s] += sign * self.size[g]
        self.n_groups_on[s] += sign

    def move(self, g: int, s: int) -> None:
        self.place(g, self.side[g], -1)
        self.place(g, s)
        self.side[g] = s

    def add_cost(self, g: int) -> np.ndarray:
        """Per side: how much adding group ``g`` there changes the squared misfit."""
        cs, x = self.members[g], self.counts[g]
        gap = self.filled[cs] - self.target[cs]
        per_class = ((x * self.weight[cs])[:, None] * (2 * gap + x[:, None])).sum(0)
        overall = self.size[g] * (2 * (self.total - self.total_target) + self.size[g]) / self.total_target.sum()
        return per_class + overall

    def move_costs(self) -> np.ndarray:
        """Groups × sides: how much moving each group alone to each side changes the
        squared misfit (0 on its own side)."""
        here = self.side[self.entry_group]
        gap = self.filled[self.entry_class] - self.target[self.entry_class]
        x = self.entry_count
        step = self.weight[self.entry_class] * x
        per_class = np.add.reduceat(
            2 * step[:, None] * (gap - gap[np.arange(len(x)), here][:, None] + x[:, None]), self.group_start
        )
        total_gap = self.total - self.total_target
        overall = (
            2
            * self.size[:, None]
            * (total_gap[None, :] - total_gap[self.side][:, None] + self.size[:, None])
            / self.total_target.sum()
        )
        cost = per_class + overall
        cost[np.arange(len(self.side)), self.side] = 0
        return cost

    def removable(self, g: int) -> bool:
        """Whether taking ``g`` off its side leaves every class that had that side on it."""
        s, cs = self.side[g], self.members[g]
        return self.n_groups_on[s] > 1 and bool(np.all(self.cover[cs[self.required[cs]], s] > 1))

    def uncovered(self) -> np.ndarray:
        """Required classes missing from some side, as (class, side) rows."""
        return np.argwhere((self.cover == 0) & self.required[:, None])


def _assign(
    labels: Sequence[str],
    groups: Sequence[str],
    fractions: Sequence[float],
    seed: int,
    require_every_class: bool,
    unit: str,
    what: str,
    side_names: Sequence[str],
) -> np.ndarray:
    if len(labels) != len(groups):
        raise ValueError(f"{len(labels)} labels but {len(groups)} groups")
    if len(labels) == 0:
        return np.zeros(0, dtype=int)
    n_sides = len(fractions)
    classes, y = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    group_names, g = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    n_classes, n_groups = len(classes), len(group_names)
    n_per_class = np.bincount(y, minlength=n_classes)

    key, count = np.unique(g.astype(np.int64) * n_classes + y, return_counts=True)
    key_group, key_class = key // n_classes, key % n_classes
    groups_per_class = np.bincount(key_class, minlength=n_classes)
    if require_every_class and np.any(n_per_class < n_sides):
        c = int(np.argmax(n_per_class < n_sides))
        raise ConfigError(f"class '{classes[c]}' has {n_per_class[c]} {unit}(s); a {what} needs at least {n_sides}")
    if require_every_class and np.any(groups_per_class < n_sides):
        c = int(np.argmax(groups_per_class < n_sides))
        raise ConfigError(
            f"class '{classes[c]}' has {unit}s from only {groups_per_class[c]} group(s); "
            f"a grouped {what} needs at least {n_sides}"
        )
    if n_groups < n_sides:
        raise ConfigError(
            f"only {n_groups} groups in the data; a grouped {what} needs at least {n_sides} (use data from more groups)"
        )

    bounds = np.searchsorted(key_group, np.arange(n_groups + 1))
    by_class = np.argsort(key_class, kind="stable")
    class_bounds = np.searchsorted(key_class[by_class], np.arange(n_classes + 1))
    f = np.asarray(fractions, dtype=float)
    p = _Problem(
        classes=classes,
        members=[key_class[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)],
        counts=[count[a:b].astype(float) for a, b in zip(bounds[:-1], bounds[1:], strict=True)],
        size=np.bincount(g, minlength=n_groups).astype(float),
        class_groups=[key_group[by_class[a:b]] for a, b in zip(class_bounds[:-1], class_bounds[1:], strict=True)],
        entry_group=key_group,
        entry_class=key_class,
        entry_count=count.astype(float),
        group_start=bounds[:-1],
        weight=1.0 / n_per_class,
        target=n_per_class[:, None] * f[None, :],
        total_target=len(y) * f,
        required=groups_per_class >= n_sides,
        side=np.full(n_groups, -1),
        filled=np.zeros((n_classes, n_sides)),
        cover=np.zeros((n_classes, n_sides), dtype=np.int64),
        total=np.zeros(n_sides),
        n_groups_on=np.zeros(n_sides, dtype=np.int64),
    )

    rng = np.random.default_rng(seed)
    _greedy(p, rng)
    _repair(p)
    missing = p.uncovered()
    if require_every_class and len(missing):
        _settle_exactly(p, sorted({int(c) for c in missing[:, 0]}), unit, what, side_names)
    _polish(p)
    return p.side[g]


def _greedy(p: _Problem, rng: np.random.Generator) -> None:
    """Place every group, largest first, where it fills the targets best.

    A class whose unplaced groups are no more than the sides it still lacks has its
    group forced onto one of those sides; with one class per group that alone gets
    every class with enough groups onto every side.
    """
    n_sides = p.target.shape[1]
    # outweighs any difference in misfit between two sides (each is at most 6 × the
    # group's size): taking a side from a class that has no other chance to reach it
    forced_cost = 16 * p.total_target.sum()
    bucket = np.floor(np.log(p.size) / np.log(_SIZE_BUCKET_RATIO))
    order = np.lexsort((rng.random(len(p.size)), -bucket))
    unplaced = np.array([len(gs) for gs in p.class_groups])
    unplaced_groups = len(order)
    for g in order:
        cs = p.members[g]
        cost = p.add_cost(g)
        lacking = (p.cover[cs] == 0).sum(1)
        forced = p.required[cs] & (unplaced[cs] <= lacking)
        if forced.any():
            cost += forced_cost * (p.cover[cs[forced]] > 0).sum(0)
        if unplaced_groups <= n_sides - np.count_nonzero(p.n_groups_on):
            cost += forced_cost * (p.n_groups_on > 0)
        s = int(np.argmin(cost))
        p.place(g, s)
        p.side[g] = s
        unplaced[cs] -= 1
        unplaced_groups -= 1


def _repair(p: _Problem) -> None:
    """Fill uncovered (class, side) pairs by moving single groups, best fit first.

    A group is moved only if that uncovers nothing else, so every move is progress.
    """
    while True:
        best = None
        for c, s in p.uncovered():
            for g in p.class_groups[c]:
                if p.side[g] == s or not p.removable(g):
                    continue
                delta = _move_cost(p, g, s)
                if best is None or delta < best[0]:
                    best = (delta, g, s)
        if best is None:
            return
        p.move(best[1], best[2])


def _move_cost(p: _Problem, g: int, s: int) -> float:
    """Change in squared misfit when group ``g`` moves to side ``s``."""
    here = p.side[g]
    p.place(g, here, -1)
    cost = p.add_cost(g)
    p.place(g, here)
    return float(cost[s] - cost[here])


def _polish(p: _Problem, rounds: int = 5) -> None:
    """Move single groups wherever that brings the sides closer to their targets
    without taking any class off a side: all moves are priced at once, then the
    promising ones are made one by one, best first, each priced again before it is made."""
    for _ in range(rounds):
        cost = p.move_costs()
        # a relative margin, so that rounding never makes groups trade places forever
        margin = 1e-9 * (1 + np.abs(cost).max(1))
        best = cost.min(1)
        moved = False
        for g in np.flatnonzero(best < -margin)[np.argsort(best[best < -margin], kind="stable")]:
            if not p.removable(g):
                continue
            here = p.side[g]
            p.place(g, here, -1)
            now = p.add_cost(g)
            p.place(g, here)
            s = int(np.argmin(now))
            if now[s] < now[here] - margin[g]:
                p.move(g, s)
                moved = True
        if not moved:
            return


def _settle_exactly(p: _Problem, missing: list[int], unit: str, what: str, side_names: Sequence[str]) -> None:
    """Re-place the groups of the still-uncovered classes with an integer program.

    The groups of the classes involved are freed and the rest held; when no
    assignment exists, the classes sharing those groups are freed too, until an
    assignment is found or the whole connected set of classes and groups has been
    shown to have none (then :class:`ConfigError`, as when the time runs out).
    """
    deadline = time.monotonic() + MILP_TIME_LIMIT_S
    involved = set(missing)
    while True:
        free = np.unique(np.concatenate([p.class_groups[c] for c in sorted(involved)]))
        touched = {int(c) for g in free for c in p.members[g] if p.required[c]}
        sides, status = _milp(p, free, max(deadline - time.monotonic(), 1.0))
        if sides is not None:
            for g, s in zip(free, sides, strict=True):
                if p.side[g] != s:
                    p.move(g, s)
            return
        named = _name_classes(p, [*missing, *sorted(touched - set(missing))])
        if status != 2:
            raise ConfigError(
                f"{named} could not be placed on every side of a grouped {what} within {MILP_TIME_LIMIT_S:.0f} s "
                f"({len(free)} groups shared by {len(touched)} classes); use {unit}s from more groups, or fewer "
                f"classes per group"
            )
        if touched <= involved:
            raise ConfigError(
                f"{named} cannot all be placed on every side ({', '.join(side_names)}) of a grouped {what}: "
                f"they share {len(free)} groups, and no assignment of those groups gives each of them every side "
                f"without a group on two sides; they need {unit}s from more groups"
            )
        involved = touched


def _name_classes(p: _Problem, cs: Sequence[int], most: int = 5) -> str:
    """``class 'a'`` or ``classes 'a', 'b' and 3 more``."""
    names = [f"'{p.classes[c]}'" for c in cs[:most]]
    more = f" and {len(cs) - most} more" if len(cs) > most else ""
    return f"class{'es' if len(cs) > 1 else ''} {', '.join(names)}{more}"


def _milp(p: _Problem, free: np.ndarray, time_limit: float) -> tuple[np.ndarray | None, int]:
    """Sides for the ``free`` groups, the others held, that put every required class on
    every side: (sides, 0), or (None, status) when there are none (2) or time ran out.

    A pure feasibility problem: HiGHS stops at the first assignment it finds, which
    keeps the answer deterministic; balance is left to the caller's polish (any
    objective, even "move as little as possible", made HiGHS slower by 1000× on shared
    structures near the edge of feasibility).
    """
    from scipy.optimize import LinearConstraint, milp
    from scipy.sparse import coo_array

    n_sides, n_free = p.target.shape[1], len(free)
    ends = np.append(p.group_start[1:], len(p.entry_group))
    entries = np.concatenate([np.arange(p.group_start[g], ends[g]) for g in free])
    local = np.searchsorted(free, p.entry_group[entries])
    classes = p.entry_class[entries]

    cover = p.cover.copy()
    np.subtract.at(cover, (classes, p.side[p.entry_group[entries]]), 1)
    need = (cover[classes] == 0) & p.required[classes][:, None]  # entries × sides: this class lacks that side
    e, s = np.nonzero(need)
    wanted, cover_rows = np.unique(classes[e] * n_sides + s, return_inverse=True)  # one row per lacking pair
    cover_rows = n_free + cover_rows
    rows = np.concatenate([np.repeat(np.arange(n_free), n_sides), cover_rows])
    cols = np.concatenate([np.arange(n_free * n_sides), local[e] * n_sides + s])
    matrix = coo_array((np.ones(len(rows)), (rows, cols)), shape=(n_free + len(wanted), n_free * n_sides))
    lower = np.ones(n_free + len(wanted))
    upper = np.concatenate([np.ones(n_free), np.full(len(wanted), np.inf)])

    result = milp(
        np.zeros(n_free * n_sides),
        integrality=np.ones(n_free * n_sides),
        bounds=(0, 1),
        constraints=LinearConstraint(matrix.tocsr(), lower, upper),
        options={"time_limit": time_limit},
    )
    if result.x is None:
        return None, result.status
    return np.round(result.x).reshape(n_free, n_sides).argmax(1), 0
