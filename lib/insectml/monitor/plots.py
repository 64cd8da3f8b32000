"""The monitor report's figures, reference against served, each written atomically as PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from insectml.fileio import open_atomic

REFERENCE, SERVED = "reference", "served"
COLOURS = {REFERENCE: "#4c72b0", SERVED: "#dd8452"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    fig.tight_layout()
    with open_atomic(Path(path), "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


def _overlaid(ax, ref: np.ndarray, cur: np.ndarray, title: str, bins: int = 20) -> None:
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    both = np.concatenate([ref, cur])
    if both.size == 0:
        return
    low, high = np.percentile(both, [0.5, 99.5])
    edges = np.linspace(low, high, bins + 1) if high > low else bins
    ax.hist(ref, bins=edges, density=True, alpha=0.55, color=COLOURS[REFERENCE], label=f"{REFERENCE} (n={len(ref)})")
    ax.hist(cur, bins=edges, density=True, alpha=0.55, color=COLOURS[SERVED], label=f"{SERVED} (n={len(cur)})")
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)


def feature_histograms(
    reference: np.ndarray, served: np.ndarray, names: Sequence[str], shown: Sequence[str], path: Path
) -> Path:
    """Density histograms of the features ``shown`` (e.g. the most drifted), one panel each."""
    plt = _pyplot()
    cols = min(3, len(shown))
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    index = {n: i for i, n in enumerate(names)}
    for ax, name in zip(axes.flat, shown, strict=False):
        _overlaid(ax, reference[:, index[name]], served[:, index[name]], name)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    return _save(fig, path)


def score_histograms(reference: np.ndarray, served: np.ndarray, path: Path, what: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    _overlaid(ax, reference, served, what)
    ax.set(xlabel=what, ylabel="density")
    ax.legend(fontsize=8)
    return _save(fig, path)


def mix_bars(mix: dict[str, dict[str, float]], path: Path, title: str, top: int = 20) -> Path:
    """Grouped bars of each category's share, reference against served; with more than
    ``top`` categories, the ``top`` whose shares differ most."""
    plt = _pyplot()
    names = sorted(mix, key=lambda c: -abs(mix[c]["served"] - mix[c]["reference"]))[:top]
    names = [c for c in mix if c in names]  # keep the categories' own order
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * len(names) + 2), 3.6))
    for offset, side in ((-0.2, REFERENCE), (0.2, SERVED)):
        ax.bar(x + offset, [mix[c][side] for c in names], width=0.4, color=COLOURS[side], label=side)
    ax.set_xticks(x, names, rotation=45 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center")
    ax.tick_params(labelsize=7)
    ax.set(ylabel="share", title=title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def embedding_map(reference: np.ndarray, served: np.ndarray, path: Path, seed: int = 0, limit: int = 1000) -> Path:
    """Both sets projected on the first two principal components of the two together (the
    reference's own would hide a cluster that only the served set has)."""
    plt = _pyplot()
    rng = np.random.default_rng(seed)
    ref = reference if len(reference) <= limit else reference[rng.choice(len(reference), limit, replace=False)]
    cur = served if len(served) <= limit else served[rng.choice(len(served), limit, replace=False)]
    both = np.vstack([ref, cur])
    centre = both.mean(axis=0)
    _, _, vt = np.linalg.svd(both - centre, full_matrices=False)
    axes2 = vt[:2].T if vt.shape[0] >= 2 else np.eye(ref.shape[1], 2)
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for side, data in ((REFERENCE, ref), (SERVED, cur)):
        xy = (data - centre) @ axes2
        ax.scatter(xy[:, 0], xy[:, 1], s=8, alpha=0.5, color=COLOURS[side], label=f"{side} (n={len(data)})")
    ax.set(xlabel="PC 1", ylabel="PC 2", title="embeddings")
    ax.legend(fontsize=8)
    return _save(fig, path)
