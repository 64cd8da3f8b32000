"""The gallery: one prototype per class (the re-normalised mean of its support
embeddings), classification by cosine similarity, an open-set threshold, and calibrated
probabilities.

Adding a class is adding a row: no retraining. A gallery folder holds two files and
nothing else: ``gallery.npz`` (the prototypes) and ``gallery.json`` (the class names, image
counts, the threshold and the temperature). It is written whole (staged beside, then
renamed), so a reader never sees the prototypes of one version with the names of another,
and only a gallery folder is ever replaced.

Probabilities: the probability of class c for a query is ``softmax(cosine / T)`` over every
class of the gallery, with the temperature T of the embedder (its config.json), fitted by
:func:`fit_cosine_temperature` on nearest-prototype classification of classes the embedder
never trained on (the val classes, or the held-out folds of cross-validation). T = 1 would
make a softmax of numbers in [-1, 1], nearly uniform; useful temperatures are around 0.01 to
0.2. The cosine ``score`` and the open-set threshold are unchanged by it. T is fitted on as
many classes as the val split (or a fold) holds, while a served gallery holds them all:
with more classes the same T spreads more mass over the rest, so served probabilities are
calibrated for that narrower choice, and the evaluation reports the calibration on the test
classes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from insectml.errors import InputFileError, UserError
from insectml.fileio import open_atomic, staged_folder, write_json_atomic

UNKNOWN = "unknown"
FILES = ("gallery.npz", "gallery.json")
# fit_cosine_temperature fits T' of stats.fit_temperature (bounded to [0.05, 20]) on the
# logits cosine / COSINE_SCALE, so T = COSINE_SCALE * T' lies in [0.005, 2]
COSINE_SCALE = 0.1


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@dataclass
class Gallery:
    classes: list[str]
    prototypes: np.ndarray  # (C, D) float32, unit rows
    counts: list[int]
    threshold: float | None = None  # cosine similarity below which an answer is "unknown"
    meta: dict = field(default_factory=dict)
    temperature: float | None = None  # of the probabilities softmax(cosine / T); None: no probabilities

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
        """The served answer for one embedding: top-k classes with their cosine ``score``
        (and, with a temperature, their calibrated ``probability`` among every gallery
        class), or unknown."""
        top, sims = self.classify(query[None], k)
        best = float(sims[0, 0])
        known = self.threshold is None or best >= self.threshold
        top_k = [
            {"label": self.classes[int(i)], "score": round(float(s), 4)} for i, s in zip(top[0], sims[0], strict=True)
        ]
        if self.temperature is not None:
            probs = probabilities(self.similarities(query[None]), self.temperature)[0]
            for entry, i in zip(top_k, top[0], strict=True):
                entry["probability"] = round(float(probs[i]), 6)
        return {
            "label": self.classes[int(top[0, 0])] if known else UNKNOWN,
            "score": round(best, 4),
            "threshold": self.threshold,
            "temperature": self.temperature,
            "top_k": top_k,
        }

    def save(self, folder: Path) -> Path:
        """Write the gallery as the folder ``folder``: made if missing, replaced whole if it
        is a gallery folder (:func:`check_replaceable`); anything else there is refused."""
        folder = Path(folder)
        check_replaceable(folder)
        info = {
            "classes": self.classes,
            "counts": self.counts,
            "threshold": self.threshold,
            "temperature": self.temperature,
            **self.meta,
        }
        # a symlinked gallery is replaced where it lives, not turned into a folder
        with staged_folder(folder.resolve()) as stage:
            with open_atomic(stage / "gallery.npz", "wb") as fh:
                np.savez(fh, prototypes=self.prototypes)
            write_json_atomic(stage / "gallery.json", info)
        return folder

    @classmethod
    def load(cls, folder: Path) -> Gallery:
        for name in FILES:
            if not (folder / name).is_file():
                raise InputFileError(folder / name, "missing: not a gallery folder")
        try:
            info = json.loads((folder / "gallery.json").read_text(encoding="utf-8"))
            classes = list(info["classes"])
        except (ValueError, KeyError, TypeError) as exc:
            raise InputFileError(folder / "gallery.json", f"not a gallery's class list ({exc})") from None
        protos = np.load(folder / "gallery.npz")["prototypes"]
        if protos.shape[0] != len(classes):
            raise InputFileError(folder / "gallery.npz", f"{protos.shape[0]} prototypes for {len(classes)} classes")
        meta = {k: v for k, v in info.items() if k not in ("classes", "counts", "threshold", "temperature")}
        return cls(
            classes,
            protos.astype(np.float32),
            list(info["counts"]),
            info.get("threshold"),
            meta,
            info.get("temperature"),
        )


def is_gallery_folder(folder: Path) -> bool:
    """Whether ``folder`` is a gallery as :meth:`Gallery.save` writes it: ``gallery.npz``
    and a ``gallery.json`` with a class list, and nothing else."""
    folder = Path(folder)
    if not folder.is_dir() or sorted(p.name for p in folder.iterdir()) != sorted(FILES):
        return False
    try:
        info = json.loads((folder / "gallery.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and isinstance(info.get("classes"), list)


def check_replaceable(folder: Path) -> None:
    """Raise :class:`InputFileError` unless a gallery may be written as ``folder``: it does
    not exist, is an empty folder, or is a gallery folder (which is replaced)."""
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return
    if not folder.is_dir():
        raise InputFileError(folder, "exists and is not a folder; not replaced by a gallery")
    if any(folder.iterdir()) and not is_gallery_folder(folder):
        raise InputFileError(
            folder, f"exists and is not a gallery folder ({' and '.join(FILES)} only); not replaced: give a new folder"
        )


def probabilities(similarities: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(cosine / temperature)`` along the last axis (the classes)."""
    from insectml.stats import softmax

    return softmax(np.asarray(similarities, dtype=np.float64) / temperature)


def fit_cosine_temperature(similarities: np.ndarray, truth: np.ndarray) -> float:
    """The temperature T minimising the mean negative log-likelihood of
    ``softmax(cosine / T)`` of the true classes: ``similarities`` (queries × classes)
    and ``truth`` (each query's class index); T in [0.005, 2] (see ``COSINE_SCALE``)."""
    from insectml.stats import fit_temperature

    return COSINE_SCALE * fit_temperature(np.asarray(similarities, dtype=np.float64) / COSINE_SCALE, truth)


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


def prototype_classification(emb: np.ndarray, rows: list[dict]) -> tuple[Gallery, np.ndarray, np.ndarray]:
    """Nearest-prototype classification of ``rows`` (with ``subset`` support/query): the
    gallery of their support images (one prototype per class), the embeddings of their
    query images, and each query's true class index in the gallery."""
    labels = [r["label"] for r in rows]
    support = [i for i, r in enumerate(rows) if r["subset"] == "support"]
    query = [i for i, r in enumerate(rows) if r["subset"] == "query"]
    gallery = Gallery.from_embeddings(emb[support], [labels[i] for i in support])
    truth = np.asarray([gallery.classes.index(labels[i]) for i in query], dtype=np.int64)
    return gallery, emb[query], truth
