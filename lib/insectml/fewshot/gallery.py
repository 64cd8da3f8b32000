"""The gallery: one prototype per class (the re-normalised mean of its support
embeddings), classification by cosine similarity, and an open-set threshold.

Adding a class is adding a row: no retraining. ``gallery.npz`` holds the prototypes and
the embeddings they came from; ``gallery.json`` the class names, image counts and the
threshold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from insectml.errors import InputFileError, UserError

UNKNOWN = "unknown"


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclass
class Gallery:
    classes: list[str]
    prototypes: np.ndarray  # (C, D) float32, unit rows
    counts: list[int]
    threshold: float | None = None  # cosine similarity below which an answer is "unknown"
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_embeddings(cls, embeddings: np.ndarray, labels: list[str]) -> Gallery:
        classes = sorted(set(labels))
        labels_arr = np.asarray(labels)
        protos = np.stack([_normalise(embeddings[labels_arr == c].mean(0)) for c in classes]).astype(np.float32)
        counts = [int((labels_arr == c).sum()) for c in classes]
        return cls(classes, protos, counts)

    def enrol(self, name: str, embeddings: np.ndarray) -> str:
        """Add class ``name`` from its images' embeddings (or replace it); returns 'added' or 'replaced'."""
        if len(embeddings) == 0:
            raise UserError(f"class '{name}': no images to enrol")
        proto = _normalise(embeddings.mean(0)).astype(np.float32)
        if name in self.classes:
            i = self.classes.index(name)
            self.prototypes[i], self.counts[i] = proto, len(embeddings)
            return "replaced"
        self.classes.append(name)
        self.prototypes = np.vstack([self.prototypes, proto[None]])
        self.counts.append(len(embeddings))
        return "added"

    def similarities(self, queries: np.ndarray) -> np.ndarray:
        return queries @ self.prototypes.T

    def classify(self, queries: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` class indices and cosine similarities per query, best first."""
        sims = self.similarities(queries)
        k = min(k, len(self.classes))
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        return top, np.take_along_axis(sims, top, axis=1)

    def answer(self, query: np.ndarray, k: int = 5) -> dict:
        """The served answer for one embedding: top-k classes with scores, or unknown."""
        top, sims = self.classify(query[None], k)
        best = float(sims[0, 0])
        known = self.threshold is None or best >= self.threshold
        return {
            "label": self.classes[int(top[0, 0])] if known else UNKNOWN,
            "score": round(best, 4),
            "threshold": self.threshold,
            "top_k": [
                {"label": self.classes[int(i)], "score": round(float(s), 4)}
                for i, s in zip(top[0], sims[0], strict=True)
            ],
        }

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "gallery.npz", prototypes=self.prototypes)
        (folder / "gallery.json").write_text(
            json.dumps(
                {"classes": self.classes, "counts": self.counts, "threshold": self.threshold, **self.meta}, indent=2
            )
            + "\n"
        )
        return folder

    @classmethod
    def load(cls, folder: Path) -> Gallery:
        for name in ("gallery.npz", "gallery.json"):
            if not (folder / name).is_file():
                raise InputFileError(folder / name, "missing: not a gallery folder")
        info = json.loads((folder / "gallery.json").read_text())
        protos = np.load(folder / "gallery.npz")["prototypes"]
        if protos.shape[0] != len(info["classes"]):
            raise InputFileError(
                folder / "gallery.npz", f"{protos.shape[0]} prototypes for {len(info['classes'])} classes"
            )
        meta = {k: v for k, v in info.items() if k not in ("classes", "counts", "threshold")}
        return cls(list(info["classes"]), protos.astype(np.float32), list(info["counts"]), info.get("threshold"), meta)


def calibrate_threshold(known_scores: np.ndarray, unknown_scores: np.ndarray) -> float:
    """The similarity threshold maximising Youden's J (TPR − FPR) between queries of
    enrolled classes (``known_scores``: best similarity) and of classes not enrolled."""
    candidates = np.unique(np.concatenate([known_scores, unknown_scores]))
    best_i, best_j = 0, -1.0
    for i, t in enumerate(candidates):
        j = float((known_scores >= t).mean() - (unknown_scores >= t).mean())
        if j > best_j:
            best_i, best_j = i, j
    # halfway down to the next lower score: the same split of these scores, with a margin
    return float(candidates[best_i] if best_i == 0 else (candidates[best_i - 1] + candidates[best_i]) / 2)


def nearest_neighbour(queries: np.ndarray, gallery: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Index of the most cosine-similar gallery row for every query (unit rows), in chunks
    of one matrix product each; ties go to the lowest index, as in scikit-learn."""
    out = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        out[start : start + chunk] = np.argmax(queries[start : start + chunk] @ gallery.T, axis=1)
    return out
