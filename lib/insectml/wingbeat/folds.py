"""Which recordings a wingbeat training task learns from and which it predicts blind.

Three roles, one per kind of task (``insectml wingbeat train``):
- ``val``: no folds plan: train on the train split, score the val split (and fit the
  temperature on it), as before cross-validation existed;
- ``fold``: ``--folds folds.json --fold i``: train on every non-test recording outside
  fold ``i``, predict fold ``i`` (its out-of-fold predictions, ``heldout.npz``);
- ``refit``: ``--folds folds.json`` alone: train on every non-test recording, predict
  nothing; ``insectml wingbeat cv`` then calibrates it on its folds' predictions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from insectml.cv import fold_masks, load_plan, task_lineage
from insectml.errors import ConfigError
from insectml.fileio import open_atomic

HELDOUT = "heldout.npz"


@dataclass(frozen=True)
class Rows:
    train: np.ndarray  # mask over the features file's rows
    held: np.ndarray  # mask: the val split or the held-out fold; none in a refit
    role: str  # "val" | "fold" | "refit"
    fold: int | None = None
    plan: dict | None = None

    def lineage(self) -> dict:
        """What lineage.json records of the rows (:func:`insectml.cv.task_lineage`)."""
        return task_lineage(self.role, self.fold, self.plan)


def select_rows(feats: dict, source: Path, folds: Path | None = None, fold: int | None = None) -> Rows:
    """The :class:`Rows` of a task; ``source`` names the features file in errors."""
    split = feats["split"]
    if folds is None:
        if fold is not None:
            raise ConfigError("--fold needs --folds, the folds.json of 'insectml cv plan'")
        rows = Rows(split == "train", split == "val", "val")
        if not rows.train.any() or not rows.held.any():
            raise ConfigError(f"{source}: needs samples in both the train and val splits")
        return rows
    plan = load_plan(folds)
    if not plan["k"]:
        raise ConfigError(f"{folds}: the plan has no folds (k = 0: {plan.get('reason')}); train without --folds")
    train, held = fold_masks(plan, feats["groups"], split, fold)
    rows = Rows(train, held, "refit" if fold is None else "fold", fold, plan)
    if not rows.train.any():
        raise ConfigError(f"{source}: no recordings to train on outside fold {fold}")
    if rows.role == "fold" and not rows.held.any():
        raise ConfigError(f"{source}: fold {fold} of {folds} holds no recording of this features file")
    return rows


def write_heldout(out_dir: Path, feats: dict, rows: Rows, y: np.ndarray, scores: np.ndarray, logits: bool) -> Path:
    """The held-out predictions of a ``fold`` task: ids, labels (indices), groups, the
    model's scores (``logits``, or probabilities) and the fold, for ``insectml wingbeat cv``."""
    path = Path(out_dir) / HELDOUT
    with open_atomic(path, "wb") as fh:
        np.savez(
            fh,
            ids=feats["ids"][rows.held],
            y=y[rows.held],
            groups=feats["groups"][rows.held],
            scores=np.asarray(scores, dtype=np.float64),
            logits=np.asarray(logits),
            fold=np.asarray(rows.fold if rows.fold is not None else -1),
        )
    return path
