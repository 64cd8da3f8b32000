"""Join a wingbeat model's fold tasks into its cross-validation result and calibrate its refit.

``insectml wingbeat cv``: the held-out predictions of every fold (``heldout.npz``, one
fold each, together every non-test recording once) → out-of-fold macro-F1 and accuracy
with grouped bootstrap CIs, per-fold scores, the temperature fitted on them → a copy of
the refit model directory holding that temperature (config.json), ``cv.json``, a
reliability diagram, and the CV in its lineage.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from insectml.cv import summarise
from insectml.errors import InputFileError
from insectml.fileio import write_json_atomic
from insectml.wingbeat.folds import HELDOUT

CV_JSON = "cv.json"


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise InputFileError(path, f"{what} not found")
    return json.loads(path.read_text())


def _rows_of(model_dir: Path) -> dict:
    return _read_json(model_dir / "lineage.json", "lineage").get("params", {}).get("rows", {})


def load_heldout(fold_dirs: list[Path], model: str) -> tuple[dict, dict]:
    """The folds' held-out predictions joined (y, scores, groups, fold, logits) and the plan
    they came from (k, fold_seed, reason); every fold of the plan exactly once, all of ``model``."""
    parts, plan = {}, None
    for d in fold_dirs:
        config = _read_json(d / "config.json", "model config")
        if config.get("model") != model:
            raise InputFileError(d, f"is a fold of '{config.get('model')}', not of '{model}'")
        rows = _rows_of(d)
        if rows.get("role") != "fold":
            raise InputFileError(d, "is not a fold task's model (trained without --fold)")
        this = {k: rows.get(k) for k in ("k", "fold_seed", "reason")}
        if plan is not None and this != plan:
            raise InputFileError(d, "comes from another folds plan than the other folds")
        plan = this
        if rows["fold"] in parts:
            raise InputFileError(d, f"fold {rows['fold']} given twice")
        with np.load(d / HELDOUT, allow_pickle=False) as data:
            parts[rows["fold"]] = {k: data[k] for k in data.files}
    missing = sorted(set(range(plan["k"])) - set(parts)) if plan else []
    if missing or plan is None:
        raise InputFileError(fold_dirs[0] if fold_dirs else Path("."), f"folds missing: {missing or 'all'}")
    order = sorted(parts)
    joined = {key: np.concatenate([parts[f][key] for f in order]) for key in ("ids", "y", "groups", "scores")}
    joined["fold"] = np.concatenate([np.full(len(parts[f]["y"]), f) for f in order])
    joined["logits"] = bool(parts[order[0]]["logits"])
    return joined, plan


def cross_validate(refit: Path, fold_dirs: list[Path], out: Path, seed: int) -> dict:
    """Write ``out``: the refit model directory calibrated on its folds' held-out predictions,
    with ``cv.json`` and ``reliability_cv.png``; returns the CV summary."""
    from insectml import stats
    from insectml.cv import RULE

    config = _read_json(refit / "config.json", "model config")
    if _rows_of(refit).get("role") != "refit":
        raise InputFileError(refit, "is not a refit (trained with --folds and without --fold)")
    classes = _read_json(refit / "labels.json", "labels")
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
        lineage = _read_json(staged / "lineage.json", "lineage")
        lineage["cv"] = {k: summary[k] for k in ("k", "fold_seed", "reason", "rule", "per_fold_macro_f1")}
        write_json_atomic(staged / "lineage.json", lineage, indent=2)
        write_json_atomic(staged / CV_JSON, summary, indent=2)
        if out.exists():
            raise InputFileError(out, "exists; give a new output folder")
        staged.rename(out)
    return summary
