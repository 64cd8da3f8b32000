"""What a model looks at, drawn the same way for every family.

The families compute the maps with maintained libraries (captum's Grad-CAM and integrated
gradients, scikit-learn's permutation importance); this package only picks which examples
to show and draws them: a heat map over the input, a per-class grid of correct and wrong
examples, and the most-confused class pairs side by side."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from insectml.fileio import open_atomic


@dataclass
class Example:
    """One input as shown: ``image`` H×W (grey, e.g. a spectrogram) or H×W×3, any range;
    ``heat`` a map (any size, resized onto the image) or None; ``origin="lower"`` for
    spectrograms (low frequencies at the bottom)."""

    image: np.ndarray
    truth: str
    predicted: str
    score: float | None = None
    heat: np.ndarray | None = None
    name: str = ""
    origin: str = "upper"

    @property
    def correct(self) -> bool:
        return self.truth == self.predicted


RESULTS = "explanations.json"


def output_paths(inputs: list[Path], out_dir: Path, force: bool = False) -> list[Path]:
    """``OUT/<stem>_explain.png`` per input (never the input's own name, so explaining into
    the inputs' folder cannot replace one). Two inputs with one stem, or an existing output
    (or ``explanations.json``) without ``force``, are a user error raised before any work."""
    from insectml.errors import ConfigError, InputFileError

    if out_dir.exists() and not out_dir.is_dir():
        raise InputFileError(out_dir, "exists and is not a folder")
    outputs = [out_dir / f"{Path(p).stem}_explain.png" for p in inputs]
    seen: dict[Path, Path] = {}
    for path, out in zip(inputs, outputs, strict=True):
        if out in seen:
            raise ConfigError(f"{path} and {seen[out]} would both be explained in {out.name}: rename one")
        seen[out] = Path(path)
    for out in [*outputs, out_dir / RESULTS]:
        if out.exists() and not force:
            raise InputFileError(out, "exists; give --force to overwrite it")
    return outputs


def normalise_heat(heat: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] (a constant map becomes zeros)."""
    heat = np.nan_to_num(np.asarray(heat, dtype=np.float64))
    low, high = float(heat.min()), float(heat.max())
    return np.zeros_like(heat) if high - low < 1e-12 else (heat - low) / (high - low)


def resize_heat(heat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D map to ``shape`` (rows, columns)."""
    from PIL import Image

    if heat.shape == tuple(shape):
        return heat.astype(np.float64)
    image = Image.fromarray(normalise_heat(heat).astype(np.float32), mode="F")
    return np.asarray(image.resize((shape[1], shape[0]), Image.BILINEAR), dtype=np.float64)


def pick(
    y_true: np.ndarray, y_pred: np.ndarray, confidence: np.ndarray, per_class: int = 2
) -> dict[int, dict[str, list[int]]]:
    """Per true class: the ``per_class`` most confident correct and most confident wrong
    indices (the wrong ones a person most needs to see)."""
    y_true, y_pred, confidence = np.asarray(y_true), np.asarray(y_pred), np.asarray(confidence, dtype=float)
    chosen: dict[int, dict[str, list[int]]] = {}
    for c in np.unique(y_true):
        members = np.flatnonzero(y_true == c)
        order = members[np.argsort(-confidence[members], kind="stable")]
        right = [int(i) for i in order if y_pred[i] == c][:per_class]
        wrong = [int(i) for i in order if y_pred[i] != c][:per_class]
        chosen[int(c)] = {"correct": right, "wrong": wrong}
    return chosen


def confused_pairs(matrix, labels: list[str], top: int = 3, skip: tuple[str, ...] = ()) -> list[tuple[str, str, int]]:
    """The ``top`` off-diagonal cells (truth, predicted, count) with the most samples, rows =
    truth; labels in ``skip`` (e.g. "background") are left out."""
    matrix = np.asarray(matrix)
    cells = [
        (labels[i], labels[j], int(matrix[i, j]))
        for i in range(len(labels))
        for j in range(len(labels))
        if i != j and matrix[i, j] > 0 and labels[i] not in skip and labels[j] not in skip
    ]
    cells.sort(key=lambda cell: (-cell[2], cell[0], cell[1]))
    return cells[:top]


def _show(ax, example: Example, title: str) -> None:
    image = np.asarray(example.image, dtype=np.float64)
    grey = image.ndim == 2
    shown = normalise_heat(image) if grey or image.max() > 1 else image
    ax.imshow(shown, cmap="gray" if grey else None, origin=example.origin, aspect="auto")
    flat = example.heat is None or float(np.ptp(np.asarray(example.heat, dtype=np.float64))) < 1e-12
    if not flat:  # a constant map (nothing raised the score) is no explanation: show the input alone
        heat = resize_heat(np.asarray(example.heat), image.shape[:2])
        ax.imshow(normalise_heat(heat), cmap="jet", alpha=0.45, origin=example.origin, aspect="auto")
    ax.set_title(title, fontsize=7, color="black" if example.correct else "firebrick", parse_math=False)
    ax.set_xticks([])
    ax.set_yticks([])


def _short(name: str, width: int = 24) -> str:
    """Cut in the middle: similar class names often differ only at their ends."""
    if len(name) <= width:
        return name
    head = (width - 1) // 2
    return name[:head] + "…" + name[-(width - 1 - head) :]


def _caption(example: Example) -> str:
    """Two short lines: the truth, then the verdict (long class names cut, never overlapping)."""
    score = "" if example.score is None else f" ({example.score:.2f})"
    verdict = "✓" if example.correct else f"✗ → {_short(example.predicted)}"
    return f"{_short(example.truth)}\n{verdict}{score}"


def _save(fig, path: Path) -> Path:
    with open_atomic(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=80)
    return path


def class_grid(examples: dict[str, dict[str, list[Example]]], path: Path, title: str, per_class: int = 2) -> Path:
    """Rows = true classes (``examples[cls]["correct"|"wrong"]``), columns = up to
    ``per_class`` correct then ``per_class`` wrong examples, each with its explanation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = list(examples)
    cols = 2 * per_class
    fig, axes = plt.subplots(
        max(len(classes), 1), cols, figsize=(2.4 * cols, 2.2 * max(len(classes), 1) + 0.6), squeeze=False
    )
    for ax in axes.ravel():
        ax.axis("off")
    for r, cls in enumerate(classes):
        for kind, offset in (("correct", 0), ("wrong", per_class)):
            for k, example in enumerate(examples[cls].get(kind, [])[:per_class]):
                ax = axes[r, offset + k]
                ax.axis("on")
                _show(ax, example, _caption(example))
    mapped = any(e.heat is not None for kinds in examples.values() for group in kinds.values() for e in group)
    legend = "left: correct · right: wrong" + (" · colour: what the model used" if mapped else "")
    fig.suptitle(f"{title}\n{legend}", fontsize=8, parse_math=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    out = _save(fig, path)
    plt.close(fig)
    return out


def pair_grid(pairs: list[tuple[Example, Example | None]], path: Path, title: str) -> Path:
    """One row per confused pair: a sample of class A taken for B, beside a correctly
    recognised sample of B (what the model thinks B looks like)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(max(len(pairs), 1), 2, figsize=(5.0, 2.4 * max(len(pairs), 1) + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for r, (wrong, reference) in enumerate(pairs):
        axes[r, 0].axis("on")
        _show(axes[r, 0], wrong, f"{_short(wrong.truth)}\ntaken for {_short(wrong.predicted)}")
        if reference is not None:
            axes[r, 1].axis("on")
            _show(axes[r, 1], reference, f"{_short(reference.truth)}\nrecognised")
    fig.suptitle(title, fontsize=9, parse_math=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))
    out = _save(fig, path)
    plt.close(fig)
    return out
