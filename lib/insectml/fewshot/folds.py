"""Which classes a few-shot training task learns from and which it is scored on blind.

Three roles, one per kind of task (``insectml fewshot train``):
- ``val``: no folds plan: train on the base (train) classes with early stopping on episodes
  of the val classes, and fit the temperature on them, as before cross-validation existed;
- ``fold``: ``--folds folds.json --fold i`` (a plan of classes: ``insectml cv plan --unit
  class``): train for a fixed budget on every non-test class outside fold ``i``, then score
  the classes of fold ``i``, never seen in training (``heldout.npz``);
- ``refit``: ``--folds folds.json`` alone: train on every non-test class, score nothing;
  ``insectml fewshot cv`` then calibrates it on its folds' held-out scores.

A held-out fold is scored as the test classes are: its classes' images are cut into support
and query images (as validation cuts novel classes), then 5-way 1-shot and 5-shot episodes
of the model and of the two baselines on the same episodes, nearest-prototype
classification of the queries among the fold's classes (the cosines, for the temperature),
and the open-set scores (for the threshold).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from insectml.cv import fold_masks, load_plan, task_lineage
from insectml.errors import ConfigError
from insectml.fewshot.data import ImageSet, normalisation
from insectml.fewshot.embed import embed, episode_scores
from insectml.fewshot.evaluate import (
    BASELINES,
    EPISODE_SHOTS,
    baseline_embeddings,
    open_set_scores,
    prototype_classification,
)
from insectml.fewshot.validate import support_query
from insectml.fileio import open_atomic

HELDOUT = "heldout.npz"
EMBEDDINGS = ("model", *BASELINES)  # what a held-out fold's episodes are scored for


@dataclass(frozen=True)
class Classes:
    train: list[dict]  # manifest rows to train on
    held: list[dict]  # the val split, or the held-out fold's rows; none in a refit
    role: str  # "val" | "fold" | "refit"
    fold: int | None = None
    plan: dict | None = None

    def lineage(self) -> dict:
        """What lineage.json records of the rows (:func:`insectml.cv.task_lineage`)."""
        return task_lineage(self.role, self.fold, self.plan, "class_fold")


def select_classes(rows: list[dict], source: Path, folds: Path | None = None, fold: int | None = None) -> Classes:
    """The :class:`Classes` of a task; ``source`` names the manifest in errors."""
    if folds is None:
        if fold is not None:
            raise ConfigError("--fold needs --folds, the folds.json of 'insectml cv plan --unit class'")
        chosen = Classes([r for r in rows if r["split"] == "train"], [r for r in rows if r["split"] == "val"], "val")
        if not chosen.train or not chosen.held:
            raise ConfigError(f"{source}: needs base (train) and novel validation (val) classes")
        return chosen
    plan = load_plan(folds)
    if plan.get("unit") != "class":
        raise ConfigError(f"{folds}: folds of groups, not of classes; make it with 'insectml cv plan --unit class'")
    if not plan["k"]:
        raise ConfigError(f"{folds}: the plan has no folds (k = 0: {plan.get('reason')}); train without --folds")
    labels = np.asarray([r["label"] for r in rows])
    split = np.asarray([r["split"] for r in rows])
    train, held = fold_masks(plan, labels, split, fold)
    chosen = Classes(
        [r for r, t in zip(rows, train, strict=True) if t],
        [r for r, h in zip(rows, held, strict=True) if h],
        "refit" if fold is None else "fold",
        fold,
        plan,
    )
    if not chosen.train:
        raise ConfigError(f"{source}: no classes to train on outside fold {fold}")
    if chosen.role == "fold" and not chosen.held:
        raise ConfigError(f"{source}: fold {fold} of {folds} holds no class of this manifest")
    return chosen


def cut_support_query(rows: list[dict], n_support: int, seed: int) -> list[dict]:
    """``rows`` of held-out classes, each class's images cut anew into ``subset`` support
    and query (:func:`~insectml.fewshot.validate.support_query`, seeded), classes in sorted
    order: base classes have no such cut in the manifest."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: r["path"]):
        by_class.setdefault(row["label"], []).append(row)
    return [
        {**member, "subset": "support" if support else "query"}
        for c in sorted(by_class)
        for member, support in support_query(by_class[c], n_support, rng)
    ]


def score_heldout(
    embedder: torch.nn.Module,
    config: dict,
    rows: list[dict],
    root: Path,
    n_support: int,
    episodes: int,
    seed: int,
    device: torch.device,
) -> dict[str, np.ndarray]:
    """The arrays of ``heldout.npz`` for the held-out ``rows``: per-episode accuracies of
    the model and each baseline (``<name>__<metric>``, the same episodes for all), the
    cosines of nearest-prototype classification among the held-out classes with each
    query's class (``cosines``, ``truth``), the open-set scores (``open_known``,
    ``open_unknown``) and the classes."""
    cut = cut_support_query(rows, n_support, seed)
    images = ImageSet(cut, root, [], config["image_size"], False, **normalisation(config))
    embeddings = {"model": embed(embedder, images, device), **baseline_embeddings(config, images, seed, device)}
    labels = [r["label"] for r in cut]
    arrays = {
        f"{name}__{metric}": episode_scores(emb, labels, 5, shots, episodes, seed)
        for name, emb in embeddings.items()
        for metric, shots in EPISODE_SHOTS.items()
    }
    gallery, queries, truth = prototype_classification(embeddings["model"], cut)
    known, unknown, _ = open_set_scores(embeddings["model"], cut, seed)
    return arrays | {
        "classes": np.asarray(gallery.classes),
        "cosines": gallery.similarities(queries).astype(np.float64),
        "truth": truth,
        "open_known": known.astype(np.float64),
        "open_unknown": unknown.astype(np.float64),
    }


def write_heldout(out_dir: Path, chosen: Classes, arrays: dict[str, np.ndarray]) -> Path:
    """``heldout.npz`` of a ``fold`` task (the arrays of :func:`score_heldout` and the
    fold), for ``insectml fewshot cv``."""
    path = Path(out_dir) / HELDOUT
    with open_atomic(path, "wb") as fh:
        np.savez(fh, fold=np.asarray(chosen.fold), **arrays)
    return path
