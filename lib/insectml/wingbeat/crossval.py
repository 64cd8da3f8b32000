"""Join a wingbeat model's fold tasks into its cross-validation result and calibrate its refit.

``insectml wingbeat cv``: the held-out predictions of every fold (``heldout.npz``, one
fold each, together every non-test recording once) → out-of-fold macro-F1 and accuracy
with grouped bootstrap CIs, per-fold scores, the temperature fitted on them → a copy of
the refit model directory holding that temperature (config.json), ``cv.json``, a
reliability diagram, and the CV in its lineage.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from insectml.cv import read_folds, read_json, summarise, task_rows
from insectml.errors import InputFileError
from insectml.fileio import write_json_atomic
from insectml.wingbeat.folds import HELDOUT

CV_JSON = "cv.json"


def load_heldout(fold_dirs: list[Path], model: str) -> tuple[dict, dict]:
    """The folds' held-out predictions joined (y, scores, groups, fold, logits) and the plan
    they came from (k, fold_seed, reason); every fold of the plan exactly once, all of ``model``."""
    for d in fold_dirs:
        config = read_json(d / "config.json", "model config")
        if config.get("model") != model:
            raise InputFileError(d, f"is a fold of '{config.get('model')}', not of '{model}'")
    parts, plan = read_folds(fold_dirs, HELDOUT)
    joined = {key: np.concatenate([part[key] for part in parts]) for key in ("ids", "y", "groups", "scores")}
    joined["fold"] = np.concatenate([np.full(len(part["y"]), int(part["fold"])) for part in parts])
    joined["logits"] = bool(parts[0]["logits"])
    return joined, plan


def cross_validate(refit: Path, fold_dirs: list[Path], out: Path, seed: int) -> dict:
    """Write ``out``: the refit model directory calibrated on its folds' held-out predictions,
    with ``cv.json`` and ``reliability_cv.png``; returns the CV summary."""
    from insectml import stats
    from insectml.cv import RULE

    config = read_json(refit / "config.json", "model config")
    if task_rows(refit).get("role") != "refit":
        raise InputFileError(refit, "is not a refit (trained with --folds and without --fold)")
    classes = read_json(refit / "labels.json", "labels")
    held, plan = load_heldout(fold_dirs, config["model"])
    summary = summarise(held["y"], held["scores"], held["groups"], held["fold"], classes, seed, held["logits"])
    summary |= {"model": config["model"], "k": plan["k"], "fold_seed": plan["fold_seed"], "reason": plan["reason"]}
    summary["rule"] = RULE

    out = Path(out)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        staged = Path(tmp) / "model"
        shutil.copytree(refit, staged)
        probs = stats.softmax(held["scores"]) if held["logits"] else held["scores"]
        t = summary["temperature"]
        stats.plot_reliability(
            {
                f"before (ECE {summary['ece_before']:.3f})": (probs, held["y"]),
                f"after T={t:.2f} (ECE {summary['ece_after']:.3f})": (stats.apply_temperature(probs, t), held["y"]),
            },
            staged / "reliability_cv.png",
            f"{config['model']}: out-of-fold predictions ({plan['k']} folds)",
        )
        config |= {"temperature": t, "temperature_fitted_on": f"out-of-fold predictions ({plan['k']} folds)"}
        write_json_atomic(staged / "config.json", config, indent=2)
        lineage = read_json(staged / "lineage.json", "lineage")
        lineage["cv"] = {k: summary[k] for k in ("k", "fold_seed", "reason", "rule", "per_fold_macro_f1")}
        write_json_atomic(staged / "lineage.json", lineage, indent=2)
        write_json_atomic(staged / CV_JSON, summary, indent=2)
        if out.exists():
            raise InputFileError(out, "exists; give a new output folder")
        staged.rename(out)
    return summary
