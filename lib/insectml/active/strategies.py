"""Which unlabelled samples to label next: the selection strategies, on plain arrays.

Every strategy ranks a pool of n samples and returns the indices of the ``budget`` it
picks, in the order picked (the rank shown to the labeller), with the per-sample scores
it used:

- ``uncertainty``: the margin uncertainty ``1 − (p1 − p2)`` of the two most probable
  classes (1 for a tie, 0 for a certain answer); ties broken by the entropy of the
  probabilities, then by a seeded shuffle. A family whose uncertainty is not a
  probability margin (the detector's boxes) passes its own score.
- ``diversity``: greedy k-center on the embeddings (each pick is the sample farthest
  from everything picked or labelled so far), starting from the labelled set's
  embeddings when given (else from a seeded random sample).
- ``novelty``: ``1 − max cosine similarity`` to the labelled set's prototypes (the
  few-shot gallery); the score the few-shot model's open-set "unknown" thresholds.
- ``hybrid``: the ``3 × budget`` most uncertain (most novel, for the few-shot model),
  then k-center down to ``budget`` among them: uncertain samples that are not all alike.

Embeddings are compared as :func:`prepare_embeddings` makes them: image embeddings
L2-normalised (cosine geometry), engineered features standardised (each feature counts
alike whatever its unit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

STRATEGIES = ("uncertainty", "diversity", "novelty", "hybrid")
HYBRID_FACTOR = 3  # hybrid: k-center over the HYBRID_FACTOR × budget top-ranked samples


@dataclass
class Selection:
    """The picked pool indices (in the order picked) and the scores of every pool sample
    the strategy used (name → array of n; NaN where a score was not computed)."""

    strategy: str
    indices: list[int]
    scores: dict[str, np.ndarray] = field(default_factory=dict)

    def scores_of(self, index: int) -> dict[str, float]:
        """The finite scores of one pool sample, rounded for a JSON file."""
        return {k: round(float(v[index]), 6) for k, v in self.scores.items() if np.isfinite(v[index])}


def margin_uncertainty(probs: np.ndarray) -> np.ndarray:
    """``1 − (p1 − p2)`` per row of class probabilities (``1 − p1`` with one class)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape[1] == 1:
        return 1.0 - probs[:, 0]
    top2 = -np.partition(-probs, 1, axis=1)[:, :2]
    return 1.0 - (top2[:, 0] - top2[:, 1])


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) per row of class probabilities."""
    probs = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return -(probs * np.log(probs)).sum(axis=1)


def novelty(embeddings: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """``1 − max cosine similarity`` of each embedding to the prototypes (rows)."""
    return 1.0 - (_unit(embeddings) @ _unit(prototypes).T).max(axis=1)


def prepare_embeddings(
    embeddings: np.ndarray, labelled: np.ndarray | None = None, kind: str = "l2"
) -> tuple[np.ndarray, np.ndarray | None]:
    """The pool's (and the labelled set's) embeddings as k-center compares them: ``l2``
    rows scaled to unit length; ``standardise`` each column centred and scaled by the
    mean and standard deviation of the pool and labelled set together (a constant column
    is left centred)."""
    x = np.asarray(embeddings, dtype=np.float64)
    ref = None if labelled is None or len(labelled) == 0 else np.asarray(labelled, dtype=np.float64)
    if kind == "l2":
        return _unit(x), None if ref is None else _unit(ref)
    if kind == "standardise":
        both = x if ref is None else np.vstack([x, ref])
        mean, std = both.mean(axis=0), both.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        return (x - mean) / std, None if ref is None else (ref - mean) / std
    raise ValueError(f"unknown embedding kind {kind!r}")


def rank(primary: np.ndarray, secondary: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Pool indices from the highest ``primary`` score down; ties broken by the higher
    ``secondary``, then by a shuffle seeded with ``seed``."""
    primary = np.asarray(primary, dtype=np.float64)
    shuffle = np.random.default_rng(seed).permutation(len(primary))
    secondary = np.zeros(len(primary)) if secondary is None else np.asarray(secondary, dtype=np.float64)
    # lexsort sorts by the last key first; rounding makes float noise a tie
    return np.lexsort((shuffle, -np.round(secondary, 9), -np.round(primary, 9)))


def k_center(
    points: np.ndarray, k: int, labelled: np.ndarray | None = None, seed: int = 0
) -> tuple[list[int], np.ndarray]:
    """Greedy k-center: ``k`` row indices of ``points``, each the point farthest (L2) from
    the labelled points and the points picked before it; the first is a seeded random
    point when nothing is labelled. Also returns each pick's distance at the time it was
    picked (NaN for a random first pick)."""
    points = np.asarray(points, dtype=np.float64)
    n = len(points)
    k = min(k, n)
    picked: list[int] = []
    gains = np.full(n, np.nan)
    if k == 0:
        return picked, gains
    if labelled is not None and len(labelled):
        nearest = _min_distances(points, np.asarray(labelled, dtype=np.float64))
    else:
        first = int(np.random.default_rng(seed).integers(n))
        picked.append(first)
        nearest = _min_distances(points, points[first : first + 1])
    nearest[picked] = -np.inf
    while len(picked) < k:
        best = int(np.argmax(nearest))
        gains[best] = nearest[best]
        picked.append(best)
        nearest = np.minimum(nearest, _min_distances(points, points[best : best + 1]))
        nearest[picked] = -np.inf
    return picked, gains


def select(
    budget: int,
    strategy: str,
    *,
    uncertainty: np.ndarray | None = None,
    tiebreak: np.ndarray | None = None,
    novelty_scores: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
    labelled: np.ndarray | None = None,
    seed: int = 0,
    tiebreak_name: str = "entropy",
) -> Selection:
    """Pick ``budget`` samples of a pool by ``strategy`` (:data:`STRATEGIES`).

    ``uncertainty`` (higher: less sure) and ``tiebreak`` (:func:`entropy`, or what
    ``tiebreak_name`` says it is) rank for ``uncertainty``; ``novelty_scores`` rank for
    ``novelty``; ``embeddings`` (prepared by :func:`prepare_embeddings`, with ``labelled``
    the labelled set's) drive ``diversity``;
    ``hybrid`` ranks by novelty when given, else by uncertainty, then runs k-center on the
    top ``3 × budget``. The caller passes what its strategy needs (a ValueError otherwise).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}")
    sizes = {len(a) for a in (uncertainty, tiebreak, novelty_scores, embeddings) if a is not None}
    if len(sizes) != 1:
        raise ValueError("select needs pool scores or embeddings, all of one length")
    (n,) = sizes
    budget = max(0, min(int(budget), n))
    scores = {}
    if uncertainty is not None:
        scores["uncertainty"] = np.asarray(uncertainty, dtype=np.float64)
    if tiebreak is not None:
        scores[tiebreak_name] = np.asarray(tiebreak, dtype=np.float64)
    if novelty_scores is not None:
        scores["novelty"] = np.asarray(novelty_scores, dtype=np.float64)

    if strategy == "uncertainty":
        _need(uncertainty, "uncertainty", strategy)
        return Selection(strategy, rank(uncertainty, tiebreak, seed)[:budget].tolist(), scores)
    if strategy == "novelty":
        _need(novelty_scores, "novelty_scores", strategy)
        return Selection(strategy, rank(novelty_scores, uncertainty, seed)[:budget].tolist(), scores)
    _need(embeddings, "embeddings", strategy)
    if strategy == "diversity":
        picked, gains = k_center(embeddings, budget, labelled, seed)
        return Selection(strategy, picked, {**scores, "distance": gains})
    # hybrid
    if novelty_scores is not None:
        order = rank(novelty_scores, uncertainty, seed)
    else:
        _need(uncertainty, "uncertainty or novelty_scores", strategy)
        order = rank(uncertainty, tiebreak, seed)
    top = order[: math.ceil(HYBRID_FACTOR * budget)]
    picked, gains = k_center(np.asarray(embeddings)[top], budget, labelled, seed)
    distance = np.full(n, np.nan)
    distance[top] = gains
    return Selection(strategy, [int(top[i]) for i in picked], {**scores, "distance": distance})


def _need(value, name: str, strategy: str) -> None:
    if value is None:
        raise ValueError(f"strategy {strategy!r} needs {name}")


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _min_distances(points: np.ndarray, centres: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Each point's L2 distance to its nearest centre (centres taken ``chunk`` at a time,
    so a large labelled set costs no points × centres matrix)."""
    norms = (points**2).sum(1)
    best = np.full(len(points), np.inf)
    for start in range(0, len(centres), chunk):
        block = centres[start : start + chunk]
        sq = norms[:, None] - 2 * points @ block.T + (block**2).sum(1)[None, :]
        best = np.minimum(best, sq.min(axis=1))
    return np.sqrt(np.maximum(best, 0.0))
